/*
 * The wire protocol layer shared by dynqd and libdynqclient: the only code
 * that includes msgpack.h.  Three parts:
 *
 *  1. dynq__mp_scan(): an allocation-free pre-scanner.  It finds where the
 *     first msgpack object in a byte stream ends and refuses a frame that
 *     is too big, too deep, or declares more elements than the bytes
 *     present could hold, before msgpack-c ever sees it.
 *  2. A writer (dynq__wbuf_t + dynq__w_*) that appends msgpack to a growable
 *     buffer.
 *  3. A reader: dynq__rpc_parse() (or, in place, dynq__rpc_parse_framed())
 *     decodes one scanned frame into a dynq__rpc_msg_t whose objects are
 *     read through dynq__obj_* accessors (no msgpack types leak out).  Tensors decode into a checked view
 *     (dynq__wtensor_t) pointing into the frame.
 *
 * Nothing here knows the engine's tensors (libdynqclient links only this
 * and the public headers); proto-tensor.h converts to and from them for
 * the daemon, tests and benchmarks.
 *
 * Message shapes (docs/PROTOCOL.md): request [0, msgid, method, params],
 * response [1, msgid, error, result], notification [2, method, params].
 */
#ifndef DYNQ_PROTO_H
#define DYNQ_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "dtypes.h"

#define DYNQ_PROTOCOL_VERSION 1

enum { DYNQ_RPC_REQUEST = 0, DYNQ_RPC_RESPONSE = 1, DYNQ_RPC_NOTIFY = 2 };

/* ---- 1. scanner ---- */

typedef struct dynq__scan_limits {
  size_t max_frame;    /* bytes of one frame */
  int max_depth;       /* nesting of arrays/maps; top level is depth 1 */
  uint64_t max_elems;  /* total array elements + map entries declared */
} dynq__scan_limits_t;

/* Defaults: 64 MiB, 32, 1 << 20. */
extern const dynq__scan_limits_t dynq__scan_limits_default;

/*
 * Scan the object starting at buf[0].  Returns:
 *   0          a complete object of *ret_len bytes (<= max_frame);
 *   -EAGAIN    need more bytes (and nothing seen so far breaks a limit);
 *   DYNQ_ETOOBIG   the object is or would be larger than max_frame;
 *   DYNQ_EDEPTH    nesting deeper than max_depth;
 *   DYNQ_ELIMIT    more declared elements than max_elems;
 *   DYNQ_EPROTO    a byte that is not valid msgpack (0xc1), or a
 *                  declared count that the remaining frame budget cannot
 *                  hold even at one byte per element.
 * Never allocates, never reads past buf[len - 1], O(len) time.
 */
int dynq__mp_scan(const uint8_t *buf, size_t len,
                  const dynq__scan_limits_t *lim, size_t *ret_len);

/* ---- 1b. framer: a byte stream in, complete scanned frames out ----
 *
 * Owns the read buffer of one stream.  The owner reads into
 * dynq__framer_space() (or copies in with dynq__framer_push), commits what
 * arrived, then takes frames with dynq__framer_next() until it says "need
 * more": partial frames wait for their bytes, many frames per read come out
 * one by one.  Every frame passed dynq__mp_scan with the framer's limits,
 * so the buffer never grows beyond max_frame plus one read.
 *
 * A frame handed out stays valid until the next call to _next, _space,
 * _push, _discard or _free (it is consumed by the next _next).  An error
 * is sticky: the stream cannot be resynchronised after a frame that could
 * not be delimited.
 */
typedef struct dynq__framer {
  uint8_t *buf;          /* owned; malloc'd; freed by dynq__framer_free */
  size_t cap;
  size_t off, len;       /* buf[off .. len) holds bytes not handed out */
  size_t frame_len;      /* the frame at buf[off - frame_len] handed out
                            last, consumed lazily */
  size_t keep;           /* capacity kept across an empty buffer */
  dynq__scan_limits_t lim;
  int err;               /* sticky: first scanner/allocation error */
} dynq__framer_t;

/* lim NULL: dynq__scan_limits_default. */
void dynq__framer_init(dynq__framer_t *f, const dynq__scan_limits_t *lim);
void dynq__framer_free(dynq__framer_t *f);
/* Room for at least min bytes at *ret_p (*ret_n >= min, and never more than
 * the current frame may still need plus min): 0 or -ENOMEM / the sticky
 * error.  Moves pending bytes to the front when that makes room. */
int dynq__framer_space(dynq__framer_t *f, size_t min, uint8_t **ret_p, size_t *ret_n);
/* n bytes were written at the pointer _space returned. */
void dynq__framer_commit(dynq__framer_t *f, size_t n);
/* Copy n bytes in: 0 or -ENOMEM / the sticky error. */
int dynq__framer_push(dynq__framer_t *f, const void *p, size_t n);
/* 1 and the next whole frame, 0 when more bytes are needed, or a negative
 * code from dynq__mp_scan (DYNQ_ETOOBIG, DYNQ_EDEPTH, DYNQ_ELIMIT,
 * DYNQ_EPROTO), which sticks. */
int dynq__framer_next(dynq__framer_t *f, const uint8_t **ret_frame, size_t *ret_len);
/* For an owner that can delimit some frames itself, more cheaply than the
 * scan (libdynqclient's decoder of infer answers, which reads every byte
 * of the answer anyway): _peek gives the pending bytes (consuming the
 * frame handed out last; *ret_n 0 when none), and _take hands out their
 * first n bytes as the next frame, as a _next returning 1 would.  The
 * owner vouches that those n bytes are one whole msgpack object within
 * the framer's limits; anything it cannot delimit goes through _next.
 * _peek returns 0, or the sticky error. */
int dynq__framer_peek(dynq__framer_t *f, const uint8_t **ret_p, size_t *ret_n);
void dynq__framer_take(dynq__framer_t *f, size_t n);
/* Give back the frame handed out last (not consumed): the next _next
 * returns it again.  For a reader that must park a request until it can
 * handle it; no-op when no frame is out. */
void dynq__framer_hold(dynq__framer_t *f);
/* Bytes received and not yet handed out as frames. */
size_t dynq__framer_pending(const dynq__framer_t *f);
/* Drop every byte not handed out yet (the rest of a stream being closed);
 * the sticky error stays. */
void dynq__framer_discard(dynq__framer_t *f);

/* ---- 2. writer ---- */

/* Containers open in a writer: a self-counting one (dynq__w_map_begin)
 * and every fixed-count one written inside it, so the writer knows which
 * object is an item of which container.  Deeper than msgpack's own limit
 * (32) is a caller bug: the buffer is poisoned with DYNQ_EINTERNAL. */
#define DYNQ__WBUF_NEST 32

typedef struct dynq__wopen {
  size_t at;         /* self-counting: offset of its 5-byte header;
                        SIZE_MAX for a fixed-count container */
  uint64_t n;        /* self-counting: objects written into it so far;
                        fixed: objects still due */
  int map;           /* map (items are keys and values) or array */
} dynq__wopen_t;

typedef struct dynq__wbuf {
  uint8_t *data;    /* owned; malloc'd; freed by dynq__wbuf_free */
  size_t len, cap;
  int err;          /* sticky: first -ENOMEM; writes after it are no-ops */
  int depth;        /* open[0 .. depth): 0 unless inside a _begin */
  dynq__wopen_t open[DYNQ__WBUF_NEST];
} dynq__wbuf_t;

void dynq__wbuf_init(dynq__wbuf_t *w);
void dynq__wbuf_free(dynq__wbuf_t *w);
void dynq__wbuf_reset(dynq__wbuf_t *w);  /* len = 0, keeps capacity */
/* Room for n more bytes: where they go (w->data + w->len), for a writer
 * that fills them itself and then advances w->len; NULL with w->err set
 * (sticky, -ENOMEM) when the buffer cannot grow. */
uint8_t *dynq__wbuf_reserve(dynq__wbuf_t *w, size_t n);
/* Hand the buffer over: returns data (caller frees), leaves w empty. */
uint8_t *dynq__wbuf_steal(dynq__wbuf_t *w, size_t *ret_len);

void dynq__w_nil(dynq__wbuf_t *w);
void dynq__w_bool(dynq__wbuf_t *w, int v);
void dynq__w_int(dynq__wbuf_t *w, int64_t v);
void dynq__w_uint(dynq__wbuf_t *w, uint64_t v);
void dynq__w_double(dynq__wbuf_t *w, double v);
void dynq__w_str(dynq__wbuf_t *w, const char *s);       /* NULL -> nil */
void dynq__w_strn(dynq__wbuf_t *w, const char *s, size_t n);
void dynq__w_bin(dynq__wbuf_t *w, const void *p, size_t n);
void dynq__w_array(dynq__wbuf_t *w, uint32_t n);
void dynq__w_map(dynq__wbuf_t *w, uint32_t n);

/*
 * Self-counting containers: _begin writes a header whose count is patched
 * by the matching _end, so no caller counts its fields by hand:
 *
 *   dynq__w_map_begin(w);
 *   dynq__w_key(w, "model"); dynq__w_str(w, name);
 *   if (ver > 0) { dynq__w_key(w, "version"); dynq__w_uint(w, ver); }
 *   dynq__w_map_end(w);
 *
 * Any writer call inside (nested _begin/_end pairs, dynq__w_map(n) with its
 * n entries, dynq__w_wtensor, ...) counts as the objects it writes.  _end
 * closes the innermost _begin; a mismatch (unclosed fixed container, odd
 * number of objects in a map, _end of the other kind or with nothing open)
 * poisons the buffer with DYNQ_EINTERNAL rather than emit a corrupt frame.
 * The header takes the shortest encoding when the body is small (so the
 * bytes equal a hand-counted dynq__w_map), else stays map32/array32.
 */
void dynq__w_map_begin(dynq__wbuf_t *w);
void dynq__w_map_end(dynq__wbuf_t *w);
void dynq__w_array_begin(dynq__wbuf_t *w);
void dynq__w_array_end(dynq__wbuf_t *w);
/* A map key: the same bytes as dynq__w_str, named for readability. */
void dynq__w_key(dynq__wbuf_t *w, const char *key);
/* w->err, or DYNQ_EINTERNAL when a _begin is still open: check before
 * sending w. */
int dynq__wbuf_status(const dynq__wbuf_t *w);
/* A tensor as it travels: dtype is a code of dtypes.h (the public
 * DYNQ_FLOAT32...), data points into the frame read or into the caller's
 * memory being written (not owned). */
typedef struct dynq__wtensor {
  int dtype;
  int rank;                      /* 0..DYNQ_MAX_RANK */
  int64_t dims[DYNQ_MAX_RANK];
  const void *data;              /* may be NULL when nbytes is 0 */
  size_t nbytes;                 /* numel * dtype size */
} dynq__wtensor_t;

/* {"dtype": "float32", "shape": [...], "data": bin} (3 entries).  A
 * tensor whose dtype, rank, dims or nbytes do not agree is a caller bug:
 * the buffer is poisoned with DYNQ_EINTERNAL. */
void dynq__w_wtensor(dynq__wbuf_t *w, const dynq__wtensor_t *t);
/* The same up to its data: the caller appends t->nbytes bytes itself
 * (dynq__wbuf_reserve), or sends them from elsewhere (t->data unused). */
void dynq__w_wtensor_head(dynq__wbuf_t *w, const dynq__wtensor_t *t);
/* [0, msgid, method] — caller then writes exactly one params object */
void dynq__w_request_head(dynq__wbuf_t *w, uint32_t msgid, const char *method);
/* [1, msgid, nil] — caller then writes exactly one result object */
void dynq__w_result_head(dynq__wbuf_t *w, uint32_t msgid);
/* [1, msgid, {code, name, message, retryable}, nil] — a whole response */
void dynq__w_error_response(dynq__wbuf_t *w, uint32_t msgid, int code,
                            const char *message);

/* ---- 3. reader ---- */

typedef enum dynq__obj_kind {
  DYNQ_OBJ_NIL, DYNQ_OBJ_BOOL, DYNQ_OBJ_INT, DYNQ_OBJ_FLOAT, DYNQ_OBJ_STR,
  DYNQ_OBJ_BIN, DYNQ_OBJ_ARRAY, DYNQ_OBJ_MAP, DYNQ_OBJ_OTHER
} dynq__obj_kind_t;

/* A borrowed handle into a parsed message; valid while the message is.
 * A NULL p means "absent" and every accessor treats it as absent. */
typedef struct dynq__obj { const void *p; } dynq__obj_t;

dynq__obj_kind_t dynq__obj_kind(dynq__obj_t o);   /* absent -> NIL */
int dynq__obj_is_absent(dynq__obj_t o);
/* Each returns 0 or DYNQ_EPARAMS if the kind is wrong / out of range. */
int dynq__obj_bool(dynq__obj_t o, int *ret);
int dynq__obj_int(dynq__obj_t o, int64_t *ret);      /* int or uint <= INT64_MAX */
int dynq__obj_uint(dynq__obj_t o, uint64_t *ret);    /* a non-negative int, full range */
int dynq__obj_double(dynq__obj_t o, double *ret);    /* float or int */
int dynq__obj_str(dynq__obj_t o, const char **ret_p, size_t *ret_len); /* not NUL-terminated */
/* Copy a string into buf NUL-terminated; DYNQ_EPARAMS if it does not fit
 * or holds a NUL byte. */
int dynq__obj_strcpy(dynq__obj_t o, char *buf, size_t cap);
int dynq__obj_bin(dynq__obj_t o, const void **ret_p, size_t *ret_len);
/* A peer's string (valid UTF-8, as dynq__obj_str gives it) as an error
 * message quotes it, in buf (cap >= 8): at most max of its bytes, cut at a
 * character boundary and then "...", each NUL byte shown as \0 (printed
 * with %s it would end the name early: "linear\0x" named as 'linear').
 * Returns buf. */
const char *dynq__echo(char *buf, size_t cap, const char *s, size_t n, size_t max);
uint32_t dynq__obj_len(dynq__obj_t o);                  /* array/map size, else 0 */
dynq__obj_t dynq__obj_at(dynq__obj_t o, uint32_t i);    /* array element */
dynq__obj_t dynq__obj_key_at(dynq__obj_t o, uint32_t i);  /* map key */
dynq__obj_t dynq__obj_val_at(dynq__obj_t o, uint32_t i);  /* map value */
dynq__obj_t dynq__obj_get(dynq__obj_t map, const char *key); /* absent if none */
/* Several keys of one map in one pass: ret[i] is what dynq__obj_get(map,
 * keys[i].s) would give (the first entry with that key, else absent). */
typedef struct dynq__key { const char *s; size_t n; } dynq__key_t;
#define DYNQ__KEY(lit) {"" lit, sizeof(lit) - 1}
void dynq__obj_lookup(dynq__obj_t map, const dynq__key_t *keys, int n, dynq__obj_t *ret);

typedef struct dynq__tensor_limits {
  int max_rank;          /* <= DYNQ_MAX_RANK */
  int64_t max_elems;     /* per tensor */
} dynq__tensor_limits_t;

/* Check {dtype, shape, data} and view it (lim NULL: DYNQ_MAX_RANK and
 * DYNQ_MAX_ELEMS); data points into the message, valid while it is.
 * Errors: DYNQ_EPARAMS (not a map, missing/ill-typed field), DYNQ_EDTYPE
 * (unknown dtype), DYNQ_ESHAPE (negative dim, rank too big), DYNQ_ELIMIT
 * (too many elements), DYNQ_EDATA (byte length != numel * dtype size).
 * A message naming the field goes into err.  ret_t untouched on failure. */
int dynq__obj_wtensor(dynq__obj_t o, const dynq__tensor_limits_t *lim,
                      dynq__wtensor_t *ret_t, char *err, size_t errlen);

typedef struct dynq__rpc_msg {
  int type;               /* DYNQ_RPC_* */
  uint32_t msgid;         /* requests and responses */
  const char *method;     /* request/notify: NUL-terminated copy, <= 63 chars */
  dynq__obj_t params;     /* request/notify */
  dynq__obj_t error;      /* response: absent or nil when no error */
  dynq__obj_t result;     /* response */
  void *priv;             /* owned: the msgpack zone; dynq__rpc_free() */
} dynq__rpc_msg_t;

/* Parse one frame previously accepted by dynq__mp_scan().  Returns 0 or
 * DYNQ_EPROTO with a message (wrong envelope: not an array of 3 or 4,
 * bad type, msgid not a uint32, method not a short string).  When the
 * envelope is bad but a msgid could be read, *ret_msgid_hint gets it and
 * the function returns DYNQ_EPROTO, so the caller can still answer. */
int dynq__rpc_parse(const uint8_t *buf, size_t len, dynq__rpc_msg_t *ret,
                    int64_t *ret_msgid_hint, char *err, size_t errlen);
void dynq__rpc_free(dynq__rpc_msg_t *m);

/* A reader parses frames in place, for a server that handles each frame
 * before its read buffer moves: no copy of the frame, its msgpack zone
 * kept from one frame to the next, and no second scan of a frame the
 * framer already cut with `scanned` (its limits; NULL: scan again).  The
 * message's objects point into buf, so buf must stay as it is until
 * dynq__rpc_free.  While one message of a reader is alive, another parse
 * on it copies like dynq__rpc_parse (a handler that parses a frame of
 * another connection).  Errors as dynq__rpc_parse. */
typedef struct dynq__rpc_reader dynq__rpc_reader_t;
dynq__rpc_reader_t *dynq__rpc_reader_new(void);  /* NULL: out of memory */
dynq__rpc_reader_t *dynq__rpc_reader_free(dynq__rpc_reader_t *rd);
int dynq__rpc_parse_framed(dynq__rpc_reader_t *rd, const uint8_t *buf, size_t len,
                           const dynq__scan_limits_t *scanned, dynq__rpc_msg_t *ret,
                           int64_t *ret_msgid_hint, char *err, size_t errlen);
/* Cut and parse the next frame of a stream in one pass, for a server
 * whose framer holds buf[0..avail) (dynq__framer_peek): the object is
 * decoded as it is delimited, within lim, so it is not scanned first.
 * -EAGAIN when it did not delimit a whole frame (the bytes end inside it,
 * it breaks a limit or is not msgpack, memory ran out, or a message of rd
 * is alive): the caller then goes through dynq__framer_next and
 * dynq__rpc_parse_framed, which say which.  Otherwise *ret_len is the
 * frame's length (hand it out with dynq__framer_take) and the result is
 * what dynq__rpc_parse_framed gives for that frame. */
int dynq__rpc_parse_next(dynq__rpc_reader_t *rd, const uint8_t *buf, size_t avail,
                         const dynq__scan_limits_t *lim, size_t *ret_len,
                         dynq__rpc_msg_t *ret, int64_t *ret_msgid_hint, char *err,
                         size_t errlen);
/* The message's own copy of its frame bytes (valid while m is). */
const uint8_t *dynq__rpc_frame(const dynq__rpc_msg_t *m, size_t *ret_len);

/* Decode an error object {code, name, message, retryable} from a response
 * into a dynq code (by name when known, else DYNQ_ESERVER) and a message. */
int dynq__rpc_error(dynq__obj_t e, char *msg, size_t msglen);

#endif
