/*
 * The msgpack writer and reader of the wire protocol (docs/PROTOCOL.md).
 * This file and scan.c are the only code that sees msgpack-c; everything
 * leaves here as plain C values, dynq__obj_t handles or owned tensors.
 *
 * Writer: a msgpack_packer whose write callback appends to a dynq__wbuf_t
 * (capacity doubles; the first failure sticks in w->err and turns every
 * later write into a no-op, so callers check once at the end).
 *
 * Reader: dynq__rpc_parse() copies the frame into memory the message owns
 * (the objects point into the input bytes, and the caller's read buffer
 * moves on), re-scans it with the frame itself as the budget so that no
 * declared size reaches an allocator unchecked, decodes it (decode_tree:
 * msgpack-c's object structs, built by our own one-pass decoder) and
 * validates the envelope.  A dynq__obj_t wraps a const msgpack_object *
 * living in the message's arena.  dynq__rpc_parse_framed() does the same
 * in place for a server that is done with a frame before its buffer
 * moves: no copy, no new arena per frame (a reader's first chunk is
 * reused), and no re-scan when the framer's limits already gave those
 * guarantees (the framer cut exactly this object, so every count and
 * length in it fits in its bytes).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include <dynq/errors.h>

#include "proto.h"
#include "utf8.h"

/* ---- writer ---- */

void dynq__wbuf_init(dynq__wbuf_t *w) {
  w->data = NULL;
  w->len = 0;
  w->cap = 0;
  w->err = 0;
  w->depth = 0;
}

void dynq__wbuf_free(dynq__wbuf_t *w) {
  if (w == NULL) return;
  free(w->data);
  dynq__wbuf_init(w);
}

void dynq__wbuf_reset(dynq__wbuf_t *w) {
  w->len = 0;
  w->err = 0;
  w->depth = 0;
}

int dynq__wbuf_status(const dynq__wbuf_t *w) {
  if (w->err) return w->err;
  return w->depth != 0 ? DYNQ_EINTERNAL : 0;
}

uint8_t *dynq__wbuf_steal(dynq__wbuf_t *w, size_t *ret_len) {
  uint8_t *p = w->data;
  if (ret_len != NULL) *ret_len = w->len;
  dynq__wbuf_init(w);
  return p;
}

uint8_t *dynq__wbuf_reserve(dynq__wbuf_t *w, size_t n) {
  if (w->err) return NULL;
  if (n > w->cap - w->len) {
    size_t cap = w->cap ? w->cap : 256;
    while (cap - w->len < n) {
      if (cap > SIZE_MAX / 2) goto nomem;
      cap *= 2;
    }
    uint8_t *d = realloc(w->data, cap);
    if (d == NULL) goto nomem;
    w->data = d;
    w->cap = cap;
  }
  return w->data + w->len;
nomem:
  w->err = -ENOMEM;
  return NULL;
}

static int wbuf_append(dynq__wbuf_t *w, const void *p, size_t n) {
  uint8_t *dst = dynq__wbuf_reserve(w, n);
  if (dst == NULL) return -1;
  if (n > 0) memcpy(dst, p, n);
  w->len += n;
  return 0;
}

static int packer_write(void *data, const char *buf, size_t len) {
  return wbuf_append(data, buf, len);
}

/* A packer is two pointers: building one per call keeps dynq__wbuf_t free
 * of msgpack types. */
#define PACKER(pk, w)   \
  msgpack_packer pk;    \
  msgpack_packer_init(&pk, (w), packer_write)

/* ---- container tracking for the self-counting _begin/_end ----
 *
 * Only done inside a _begin (depth > 0), so plain writers pay one test.
 * open[depth - 1] is the innermost open container: a self-counting one
 * counts the objects written into it, a fixed one counts down the objects
 * still due and is dropped when the last one starts (a container is one
 * object of its parent, noted when its header is written). */

static void poison(dynq__wbuf_t *w) {
  if (!w->err) w->err = DYNQ_EINTERNAL;
}

static void note_item(dynq__wbuf_t *w) {
  if (w->depth == 0) return;
  dynq__wopen_t *o = &w->open[w->depth - 1];
  if (o->at != SIZE_MAX)
    o->n++;
  else if (--o->n == 0)
    w->depth--;
}

static void push_open(dynq__wbuf_t *w, size_t at, uint64_t n, int map) {
  if (w->depth >= DYNQ__WBUF_NEST) {
    poison(w);
    return;
  }
  w->open[w->depth].at = at;
  w->open[w->depth].n = n;
  w->open[w->depth].map = map;
  w->depth++;
}

/* A fixed-count container header was written: track it when inside a
 * self-counting one. */
static void fixed_open(dynq__wbuf_t *w, uint32_t n, int map) {
  if (w->depth > 0 && n > 0) push_open(w, SIZE_MAX, map ? 2 * (uint64_t)n : n, map);
}

/* Shortest header bytes for a map/array of n items into h; its length. */
static size_t container_header(uint8_t *h, uint32_t n, int map) {
  if (n < 16) {
    h[0] = (uint8_t)((map ? 0x80 : 0x90) | n);
    return 1;
  }
  if (n <= 0xffff) {
    h[0] = map ? 0xde : 0xdc;
    h[1] = (uint8_t)(n >> 8);
    h[2] = (uint8_t)n;
    return 3;
  }
  h[0] = map ? 0xdf : 0xdd;
  h[1] = (uint8_t)(n >> 24);
  h[2] = (uint8_t)(n >> 16);
  h[3] = (uint8_t)(n >> 8);
  h[4] = (uint8_t)n;
  return 5;
}

/* Bodies up to this size are moved to sit behind the shortest header, so
 * small replies are byte for byte what a hand-counted header gives; larger
 * ones (tensor payloads) keep the 5-byte header rather than be copied. */
#define COMPACT_MAX ((size_t)64 << 10)

static void begin(dynq__wbuf_t *w, int map) {
  static const uint8_t hdr32[2][5] = {{0xdd, 0, 0, 0, 0}, {0xdf, 0, 0, 0, 0}};
  note_item(w);
  size_t at = w->len;
  if (wbuf_append(w, hdr32[map], 5) < 0) at = 0;  /* err is sticky now */
  push_open(w, at, 0, map);
}

static void end(dynq__wbuf_t *w, int map) {
  if (w->depth == 0) {
    poison(w);
    return;
  }
  dynq__wopen_t o = w->open[w->depth - 1];
  if (o.at == SIZE_MAX || o.map != map || (map && o.n % 2 != 0)) {
    /* an unfinished fixed container, the other kind, or a key without
     * its value: give up on this buffer */
    poison(w);
    return;
  }
  w->depth--;
  uint64_t items = map ? o.n / 2 : o.n;
  if (items > UINT32_MAX) {
    if (!w->err) w->err = DYNQ_ETOOBIG;
    return;
  }
  if (w->err) return;
  uint8_t h[5];
  size_t hl = container_header(h, (uint32_t)items, map);
  size_t body = w->len - o.at - 5;
  if (hl < 5 && body <= COMPACT_MAX) {
    memmove(w->data + o.at + hl, w->data + o.at + 5, body);
    memcpy(w->data + o.at, h, hl);
    w->len -= 5 - hl;
  } else {
    h[0] = map ? 0xdf : 0xdd;
    h[1] = (uint8_t)(items >> 24);
    h[2] = (uint8_t)(items >> 16);
    h[3] = (uint8_t)(items >> 8);
    h[4] = (uint8_t)items;
    memcpy(w->data + o.at, h, 5);
  }
}

void dynq__w_map_begin(dynq__wbuf_t *w) { begin(w, 1); }
void dynq__w_map_end(dynq__wbuf_t *w) { end(w, 1); }
void dynq__w_array_begin(dynq__wbuf_t *w) { begin(w, 0); }
void dynq__w_array_end(dynq__wbuf_t *w) { end(w, 0); }

/* msgpack lengths are 32-bit; longer data cannot be encoded at all. */
static int too_long(dynq__wbuf_t *w, size_t n) {
  if (n <= UINT32_MAX) return 0;
  if (!w->err) w->err = DYNQ_ETOOBIG;
  return 1;
}

void dynq__w_nil(dynq__wbuf_t *w) {
  PACKER(pk, w);
  note_item(w);
  msgpack_pack_nil(&pk);
}

void dynq__w_bool(dynq__wbuf_t *w, int v) {
  PACKER(pk, w);
  note_item(w);
  if (v) msgpack_pack_true(&pk);
  else msgpack_pack_false(&pk);
}

void dynq__w_int(dynq__wbuf_t *w, int64_t v) {
  PACKER(pk, w);
  note_item(w);
  msgpack_pack_int64(&pk, v);
}

void dynq__w_uint(dynq__wbuf_t *w, uint64_t v) {
  PACKER(pk, w);
  note_item(w);
  msgpack_pack_uint64(&pk, v);
}

void dynq__w_double(dynq__wbuf_t *w, double v) {
  PACKER(pk, w);
  note_item(w);
  msgpack_pack_double(&pk, v);
}

void dynq__w_str(dynq__wbuf_t *w, const char *s) {
  if (s == NULL) dynq__w_nil(w);
  else dynq__w_strn(w, s, strlen(s));
}

void dynq__w_key(dynq__wbuf_t *w, const char *key) { dynq__w_str(w, key); }

void dynq__w_strn(dynq__wbuf_t *w, const char *s, size_t n) {
  PACKER(pk, w);
  note_item(w);
  if (too_long(w, n)) return;
  if (msgpack_pack_str(&pk, n) == 0 && n > 0) msgpack_pack_str_body(&pk, s, n);
}

void dynq__w_bin(dynq__wbuf_t *w, const void *p, size_t n) {
  PACKER(pk, w);
  note_item(w);
  if (too_long(w, n)) return;
  if (msgpack_pack_bin(&pk, n) == 0 && n > 0) msgpack_pack_bin_body(&pk, p, n);
}

void dynq__w_array(dynq__wbuf_t *w, uint32_t n) {
  PACKER(pk, w);
  note_item(w);
  msgpack_pack_array(&pk, n);
  fixed_open(w, n, 0);
}

void dynq__w_map(dynq__wbuf_t *w, uint32_t n) {
  PACKER(pk, w);
  note_item(w);
  msgpack_pack_map(&pk, n);
  fixed_open(w, n, 1);
}

/* Everything of t but its data bytes; 0, or -1 when w failed (a tensor
 * whose fields disagree poisons it).  with_data: t->data must be there. */
static int wtensor_head(dynq__wbuf_t *w, const dynq__wtensor_t *t, int with_data) {
  int64_t numel = t != NULL ? dynq__dt_numel(t->rank, t->dims) : -1;
  size_t esz = t != NULL ? dynq__dt_size(t->dtype) : 0;
  if (numel < 0 || esz == 0 || t->nbytes != (size_t)numel * esz ||
      (with_data && t->nbytes > 0 && t->data == NULL)) {
    /* A caller bug, not peer data: poison the buffer rather than emit a
     * frame the other side would reject with a confusing message. */
    if (!w->err) w->err = DYNQ_EINTERNAL;
    return -1;
  }
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype");
  dynq__w_str(w, dynq__dt_name(t->dtype));
  dynq__w_str(w, "shape");
  dynq__w_array(w, (uint32_t)t->rank);
  for (int i = 0; i < t->rank; i++) dynq__w_int(w, t->dims[i]);
  dynq__w_str(w, "data");
  PACKER(pk, w);
  note_item(w);
  if (too_long(w, t->nbytes)) return -1;
  return msgpack_pack_bin(&pk, t->nbytes) == 0 ? 0 : -1;
}

void dynq__w_wtensor(dynq__wbuf_t *w, const dynq__wtensor_t *t) {
  if (wtensor_head(w, t, 1) == 0 && t->nbytes > 0) {
    PACKER(pk, w);
    msgpack_pack_bin_body(&pk, t->data, t->nbytes);
  }
}

void dynq__w_wtensor_head(dynq__wbuf_t *w, const dynq__wtensor_t *t) {
  (void)wtensor_head(w, t, 0);
}

void dynq__w_request_head(dynq__wbuf_t *w, uint32_t msgid, const char *method) {
  dynq__w_array(w, 4);
  dynq__w_uint(w, DYNQ_RPC_REQUEST);
  dynq__w_uint(w, msgid);
  dynq__w_str(w, method);
}

void dynq__w_result_head(dynq__wbuf_t *w, uint32_t msgid) {
  dynq__w_array(w, 4);
  dynq__w_uint(w, DYNQ_RPC_RESPONSE);
  dynq__w_uint(w, msgid);
  dynq__w_nil(w);
}

void dynq__w_error_response(dynq__wbuf_t *w, uint32_t msgid, int code,
                            const char *message) {
  dynq__w_array(w, 4);
  dynq__w_uint(w, DYNQ_RPC_RESPONSE);
  dynq__w_uint(w, msgid);
  dynq__w_map(w, 4);
  dynq__w_str(w, "code");
  dynq__w_int(w, code);
  dynq__w_str(w, "name");
  dynq__w_str(w, dynq_err_name(code));
  dynq__w_str(w, "message");
  dynq__w_str(w, message != NULL && message[0] ? message : dynq_strerror(code));
  dynq__w_str(w, "retryable");
  dynq__w_bool(w, dynq_err_retryable(code));
  dynq__w_nil(w);
}

/* ---- reader: object accessors ---- */

#define OBJ(o) ((const msgpack_object *)(o).p)

static dynq__obj_t mkobj(const msgpack_object *p) {
  dynq__obj_t o = {p};
  return o;
}

int dynq__obj_is_absent(dynq__obj_t o) { return o.p == NULL; }

/* Inlined into every accessor below: they run per request on the
 * daemon's loop, a call each was a measurable share of decoding. */
static inline dynq__obj_kind_t kind_of(dynq__obj_t o) {
  if (o.p == NULL) return DYNQ_OBJ_NIL;
  switch (OBJ(o)->type) {
  case MSGPACK_OBJECT_NIL: return DYNQ_OBJ_NIL;
  case MSGPACK_OBJECT_BOOLEAN: return DYNQ_OBJ_BOOL;
  case MSGPACK_OBJECT_POSITIVE_INTEGER:
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: return DYNQ_OBJ_INT;
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: return DYNQ_OBJ_FLOAT;
  case MSGPACK_OBJECT_STR: return DYNQ_OBJ_STR;
  case MSGPACK_OBJECT_BIN: return DYNQ_OBJ_BIN;
  case MSGPACK_OBJECT_ARRAY: return DYNQ_OBJ_ARRAY;
  case MSGPACK_OBJECT_MAP: return DYNQ_OBJ_MAP;
  default: return DYNQ_OBJ_OTHER;
  }
}

dynq__obj_kind_t dynq__obj_kind(dynq__obj_t o) { return kind_of(o); }

int dynq__obj_bool(dynq__obj_t o, int *ret) {
  if (kind_of(o) != DYNQ_OBJ_BOOL) return DYNQ_EPARAMS;
  *ret = OBJ(o)->via.boolean ? 1 : 0;
  return 0;
}

int dynq__obj_int(dynq__obj_t o, int64_t *ret) {
  if (o.p == NULL) return DYNQ_EPARAMS;
  if (OBJ(o)->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
    if (OBJ(o)->via.u64 > (uint64_t)INT64_MAX) return DYNQ_EPARAMS;
    *ret = (int64_t)OBJ(o)->via.u64;
    return 0;
  }
  if (OBJ(o)->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
    *ret = OBJ(o)->via.i64;
    return 0;
  }
  return DYNQ_EPARAMS;
}

int dynq__obj_uint(dynq__obj_t o, uint64_t *ret) {
  if (o.p == NULL || OBJ(o)->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return DYNQ_EPARAMS;
  *ret = OBJ(o)->via.u64;
  return 0;
}

int dynq__obj_double(dynq__obj_t o, double *ret) {
  switch (kind_of(o)) {
  case DYNQ_OBJ_FLOAT:
    *ret = OBJ(o)->via.f64;
    return 0;
  case DYNQ_OBJ_INT:
    *ret = OBJ(o)->type == MSGPACK_OBJECT_POSITIVE_INTEGER
               ? (double)OBJ(o)->via.u64 : (double)OBJ(o)->via.i64;
    return 0;
  default:
    return DYNQ_EPARAMS;
  }
}

int dynq__obj_str(dynq__obj_t o, const char **ret_p, size_t *ret_len) {
  if (kind_of(o) != DYNQ_OBJ_STR) return DYNQ_EPARAMS;
  /* Text we may echo (errors name what was wrong) must be valid UTF-8, or
   * a strict peer cannot decode our answer: refused at the boundary. */
  if (!dynq__utf8_valid(OBJ(o)->via.str.ptr, OBJ(o)->via.str.size)) return DYNQ_EPARAMS;
  /* An empty string may carry a NULL pointer; callers get "" instead. */
  *ret_p = OBJ(o)->via.str.size ? OBJ(o)->via.str.ptr : "";
  *ret_len = OBJ(o)->via.str.size;
  return 0;
}

int dynq__obj_strcpy(dynq__obj_t o, char *buf, size_t cap) {
  const char *s;
  size_t n;
  if (dynq__obj_str(o, &s, &n) < 0) return DYNQ_EPARAMS;
  if (n >= cap || memchr(s, '\0', n) != NULL) return DYNQ_EPARAMS;
  memcpy(buf, s, n);
  buf[n] = '\0';
  return 0;
}

const char *dynq__echo(char *buf, size_t cap, const char *s, size_t n, size_t max) {
  size_t keep = n > max ? dynq__utf8_valid_prefix(s, max) : n;
  size_t room = cap - 4;  /* "..." and the terminator */
  size_t o = 0, i = 0;
  for (; i < keep; i++) {
    size_t need = s[i] == '\0' ? 2 : 1;
    if (need > room - o) break;
    if (s[i] == '\0') {
      buf[o++] = '\\';
      buf[o++] = '0';
    } else {
      buf[o++] = s[i];
    }
  }
  if (i < keep) o = dynq__utf8_valid_prefix(buf, o);  /* cut by cap: whole chars */
  if (i < n) {
    memcpy(buf + o, "...", 3);
    o += 3;
  }
  buf[o] = '\0';
  return buf;
}

int dynq__obj_bin(dynq__obj_t o, const void **ret_p, size_t *ret_len) {
  if (kind_of(o) != DYNQ_OBJ_BIN) return DYNQ_EPARAMS;
  *ret_p = OBJ(o)->via.bin.size ? (const void *)OBJ(o)->via.bin.ptr : "";
  *ret_len = OBJ(o)->via.bin.size;
  return 0;
}

uint32_t dynq__obj_len(dynq__obj_t o) {
  switch (kind_of(o)) {
  case DYNQ_OBJ_ARRAY: return OBJ(o)->via.array.size;
  case DYNQ_OBJ_MAP: return OBJ(o)->via.map.size;
  default: return 0;
  }
}

dynq__obj_t dynq__obj_at(dynq__obj_t o, uint32_t i) {
  if (kind_of(o) != DYNQ_OBJ_ARRAY || i >= OBJ(o)->via.array.size)
    return mkobj(NULL);
  return mkobj(&OBJ(o)->via.array.ptr[i]);
}

dynq__obj_t dynq__obj_key_at(dynq__obj_t o, uint32_t i) {
  if (kind_of(o) != DYNQ_OBJ_MAP || i >= OBJ(o)->via.map.size)
    return mkobj(NULL);
  return mkobj(&OBJ(o)->via.map.ptr[i].key);
}

dynq__obj_t dynq__obj_val_at(dynq__obj_t o, uint32_t i) {
  if (kind_of(o) != DYNQ_OBJ_MAP || i >= OBJ(o)->via.map.size)
    return mkobj(NULL);
  return mkobj(&OBJ(o)->via.map.ptr[i].val);
}

dynq__obj_t dynq__obj_get(dynq__obj_t map, const char *key) {
  dynq__obj_t v = {NULL};
  if (key != NULL) {
    dynq__key_t k = {key, strlen(key)};
    dynq__obj_lookup(map, &k, 1, &v);
  }
  return v;
}

void dynq__obj_lookup(dynq__obj_t map, const dynq__key_t *keys, int n, dynq__obj_t *ret) {
  for (int j = 0; j < n; j++) ret[j] = mkobj(NULL);
  if (kind_of(map) != DYNQ_OBJ_MAP || n <= 0) return;
  const msgpack_object_map *m = &OBJ(map)->via.map;
  int left = n;
  /* First match wins; non-string keys never match.  One pass over the
   * map whatever n is: as many dynq__obj_get calls would each walk it. */
  for (uint32_t i = 0; i < m->size && left > 0; i++) {
    const msgpack_object *k = &m->ptr[i].key;
    if (k->type != MSGPACK_OBJECT_STR) continue;
    for (int j = 0; j < n; j++) {
      if (ret[j].p != NULL || keys[j].n != k->via.str.size ||
          (keys[j].n > 0 && memcmp(k->via.str.ptr, keys[j].s, keys[j].n) != 0))
        continue;
      ret[j] = mkobj(&m->ptr[i].val);
      left--;
      /* the same key twice in keys[]: each gets this first match */
    }
  }
}

/* ---- reader: tensors ---- */

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int fail(int code, char *err, size_t errlen, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

int dynq__obj_wtensor(dynq__obj_t o, const dynq__tensor_limits_t *lim,
                      dynq__wtensor_t *ret_t, char *err, size_t errlen) {
  int max_rank = DYNQ_MAX_RANK;
  int64_t max_elems = DYNQ_MAX_ELEMS;
  int64_t dims[DYNQ_MAX_RANK];
  const void *data;
  size_t nbytes;

  if (lim != NULL) {
    if (lim->max_rank < max_rank) max_rank = lim->max_rank;
    if (lim->max_elems < max_elems) max_elems = lim->max_elems;
  }
  if (kind_of(o) != DYNQ_OBJ_MAP)
    return fail(DYNQ_EPARAMS, err, errlen, "tensor is not a map");

  static const dynq__key_t keys[3] = {DYNQ__KEY("dtype"), DYNQ__KEY("shape"),
                                      DYNQ__KEY("data")};
  dynq__obj_t fv[3];
  dynq__obj_lookup(o, keys, 3, fv);
  dynq__obj_t f = fv[0];
  if (kind_of(f) != DYNQ_OBJ_STR)
    return fail(DYNQ_EPARAMS, err, errlen,
                "tensor field 'dtype' is %s", f.p ? "not a string" : "missing");
  const char *dts;
  size_t dtn;
  /* dynq__obj_str refuses text that is not UTF-8: never echo it */
  if (dynq__obj_str(f, &dts, &dtn) != 0)
    return fail(DYNQ_EPARAMS, err, errlen, "tensor field 'dtype' is not valid UTF-8");
  int dt = dynq__dt_parsen(dts, dtn);
  if (dt == 0) {
    char shown[72];
    return fail(DYNQ_EDTYPE, err, errlen, "unknown tensor dtype '%s'",
                dynq__echo(shown, sizeof shown, dts, dtn, 32));
  }

  f = fv[1];
  if (kind_of(f) != DYNQ_OBJ_ARRAY)
    return fail(DYNQ_EPARAMS, err, errlen,
                "tensor field 'shape' is %s", f.p ? "not an array" : "missing");
  uint32_t rank = dynq__obj_len(f);
  if (rank > (uint32_t)(max_rank < 0 ? 0 : max_rank))
    return fail(DYNQ_ESHAPE, err, errlen,
                "tensor rank %" PRIu32 " exceeds the limit of %d", rank, max_rank);
  for (uint32_t i = 0; i < rank; i++) {
    if (dynq__obj_int(dynq__obj_at(f, i), &dims[i]) < 0)
      return fail(DYNQ_EPARAMS, err, errlen,
                  "tensor shape[%" PRIu32 "] is not an integer in int64 range", i);
    if (dims[i] < 0)
      return fail(DYNQ_ESHAPE, err, errlen,
                  "tensor shape[%" PRIu32 "] is negative (%" PRId64 ")", i, dims[i]);
  }
  int64_t numel = dynq__dt_numel((int)rank, dims);
  if (numel < 0 || numel > max_elems)
    return fail(DYNQ_ELIMIT, err, errlen,
                "tensor has more than %" PRId64 " elements", max_elems);

  f = fv[2];
  if (dynq__obj_bin(f, &data, &nbytes) < 0)
    return fail(DYNQ_EPARAMS, err, errlen,
                "tensor field 'data' is %s", f.p ? "not bin" : "missing");
  /* numel <= 2^31 and sizes <= 8: the product fits in 64 bits. */
  uint64_t want = (uint64_t)numel * dynq__dt_size(dt);
  if ((uint64_t)nbytes != want)
    return fail(DYNQ_EDATA, err, errlen,
                "tensor data has %zu bytes, shape and dtype need %" PRIu64,
                nbytes, want);

  dynq__wtensor_t t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = (int)rank;
  memcpy(t.dims, dims, rank * sizeof(dims[0]));
  t.data = data;
  t.nbytes = nbytes;
  *ret_t = t;
  return 0;
}

/* ---- reader: envelope ---- */

/* Open containers the decoder tracks (msgpack-c's unpacker has the same
 * fixed stack; the scan in parse_into holds frames to it). */
#define MSGPACK_MAX_DEPTH 32

/* ---- reader: the object tree ----
 *
 * The objects are msgpack-c's structs (the accessors above read them), but
 * built by our own decoder: one pass over a frame the scanner accepted,
 * no recursion and no callback per object, each container's items in one
 * block of an arena a reader keeps from frame to frame.  Strings, bins
 * and exts point into the frame, as msgpack_unpack's do.  Integers follow
 * msgpack-c: a signed encoding of a value >= 0 is a POSITIVE_INTEGER. */

/* Objects in the chunk an arena keeps across frames. */
#define ARENA_KEEP 256
/* Largest chunk grown by doubling; a bigger container gets its own. */
#define ARENA_GROW_MAX ((size_t)64 << 10)

typedef struct arena_chunk {
  struct arena_chunk *next;  /* older chunk */
  size_t cap, used;          /* objects */
  msgpack_object o[];
} arena_chunk_t;

typedef struct arena {
  arena_chunk_t *head;       /* owned list, newest first */
} arena_t;

_Static_assert(sizeof(msgpack_object_kv) == 2 * sizeof(msgpack_object),
               "a map's entries are decoded as 2n consecutive objects");

/* Forget every object; keep the first small chunk for the next frame. */
static void arena_reset(arena_t *a) {
  arena_chunk_t *keep = NULL;
  for (arena_chunk_t *c = a->head, *n; c != NULL; c = n) {
    n = c->next;
    if (n == NULL && c->cap == ARENA_KEEP) keep = c;
    else free(c);
  }
  if (keep != NULL) {
    keep->used = 0;
    keep->next = NULL;
  }
  a->head = keep;
}

static void arena_free(arena_t *a) {
  for (arena_chunk_t *c = a->head, *n; c != NULL; c = n) {
    n = c->next;
    free(c);
  }
  a->head = NULL;
}

/* n > 0 consecutive objects, or NULL when out of memory. */
static msgpack_object *arena_alloc(arena_t *a, size_t n) {
  arena_chunk_t *c = a->head;
  if (c == NULL || c->cap - c->used < n) {
    size_t cap = c == NULL ? ARENA_KEEP : c->cap * 2;
    if (cap > ARENA_GROW_MAX) cap = ARENA_GROW_MAX;
    if (cap < n) cap = n;
    if (cap > (SIZE_MAX - sizeof(arena_chunk_t)) / sizeof(msgpack_object)) return NULL;
    arena_chunk_t *nc = malloc(sizeof(*nc) + cap * sizeof(msgpack_object));
    if (nc == NULL) return NULL;
    nc->cap = cap;
    nc->used = 0;
    nc->next = c;
    a->head = c = nc;
  }
  msgpack_object *o = c->o + c->used;
  c->used += n;
  return o;
}

static uint64_t be_uint(const uint8_t *p, unsigned w) {
  uint64_t v = 0;
  for (unsigned i = 0; i < w; i++) v = (v << 8) | p[i];
  return v;
}

static void set_int(msgpack_object *o, int64_t v) {
  if (v >= 0) {
    o->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
    o->via.u64 = (uint64_t)v;
  } else {
    o->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
    o->via.i64 = v;
  }
}

/* The first object at buf[0..len) into *root, its containers' items in
 * a; *ret_used its bytes.  With lim, the scanner's limits hold too: at
 * most max_frame bytes, max_depth open containers (an empty one counts
 * where it would open) and max_elems declared elements.  0, -EAGAIN (the
 * bytes end inside it), -ENOMEM, or DYNQ_EPROTO (a bad byte, a count the
 * bytes left cannot hold, nesting over MSGPACK_MAX_DEPTH or a limit).
 * Never reads past buf[len - 1]. */
static int decode_tree(arena_t *a, const uint8_t *buf, size_t len,
                       const dynq__scan_limits_t *lim, size_t *ret_used,
                       msgpack_object *root) {
  /* The innermost open container's next slot and items due are o and
   * left (the root is one item of none); st[] keeps the outer ones. */
  struct { msgpack_object *slot; uint64_t left; } st[MSGPACK_MAX_DEPTH];
  int depth = 0;
  uint64_t left = 1;
  int max_depth = MSGPACK_MAX_DEPTH;
  uint64_t elems = 0, max_elems = UINT64_MAX;
  if (lim != NULL) {
    if (lim->max_depth < max_depth) max_depth = lim->max_depth;
    max_elems = lim->max_elems;
    if (len > lim->max_frame) len = lim->max_frame;  /* more is never needed */
  }
  size_t pos = 0;
  msgpack_object *o = root;
  for (;;) {
    if (pos >= len) return -EAGAIN;
    uint8_t b = buf[pos++];
    size_t avail = len - pos;
    uint64_t n = 0;       /* payload bytes, or items of a container */
    int map = -1;         /* a container: 1 map, 0 array */
    unsigned w = 0;       /* width of a length/count/value field */
#define NEED(k) do { if (avail < (k)) return -EAGAIN; } while (0)
    if (b <= 0x7f) {
      o->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
      o->via.u64 = b;
    } else if (b >= 0xe0) {
      o->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
      o->via.i64 = (int8_t)b;
    } else if (b <= 0x8f) {
      map = 1;
      n = b & 0x0f;
    } else if (b <= 0x9f) {
      map = 0;
      n = b & 0x0f;
    } else if (b <= 0xbf) {
      n = b & 0x1f;
      NEED(n);
      o->type = MSGPACK_OBJECT_STR;
      o->via.str.size = (uint32_t)n;
      o->via.str.ptr = (const char *)buf + pos;
      pos += n;
    } else {
      switch (b) {
      case 0xc0:
        o->type = MSGPACK_OBJECT_NIL;
        break;
      case 0xc2:
      case 0xc3:
        o->type = MSGPACK_OBJECT_BOOLEAN;
        o->via.boolean = b == 0xc3;
        break;
      case 0xc4: case 0xc5: case 0xc6:  /* bin 8/16/32 */
      case 0xd9: case 0xda: case 0xdb:  /* str 8/16/32 */
        w = b <= 0xc6 ? 1u << (b - 0xc4) : 1u << (b - 0xd9);
        NEED(w);
        n = be_uint(buf + pos, w);
        pos += w;
        avail -= w;
        NEED(n);
        if (b <= 0xc6) {
          o->type = MSGPACK_OBJECT_BIN;
          o->via.bin.size = (uint32_t)n;
          o->via.bin.ptr = (const char *)buf + pos;
        } else {
          o->type = MSGPACK_OBJECT_STR;
          o->via.str.size = (uint32_t)n;
          o->via.str.ptr = (const char *)buf + pos;
        }
        pos += n;
        break;
      case 0xc7: case 0xc8: case 0xc9:  /* ext 8/16/32: length, type, data */
      case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:  /* fixext */
        if (b <= 0xc9) {
          w = 1u << (b - 0xc7);
          NEED(w);
          n = be_uint(buf + pos, w);
          pos += w;
          avail -= w;
        } else {
          n = (uint64_t)1 << (b - 0xd4);
        }
        NEED(n + 1);
        o->type = MSGPACK_OBJECT_EXT;
        o->via.ext.type = (int8_t)buf[pos];
        o->via.ext.size = (uint32_t)n;
        o->via.ext.ptr = (const char *)buf + pos + 1;
        pos += n + 1;
        break;
      case 0xca: {  /* float 32 */
        NEED(4);
        uint32_t u = (uint32_t)be_uint(buf + pos, 4);
        float f;
        memcpy(&f, &u, sizeof f);
        o->type = MSGPACK_OBJECT_FLOAT32;
        o->via.f64 = f;
        pos += 4;
        break;
      }
      case 0xcb: {  /* float 64 */
        NEED(8);
        uint64_t u = be_uint(buf + pos, 8);
        double d;
        memcpy(&d, &u, sizeof d);
        o->type = MSGPACK_OBJECT_FLOAT64;
        o->via.f64 = d;
        pos += 8;
        break;
      }
      case 0xcc: case 0xcd: case 0xce: case 0xcf:  /* uint 8..64 */
        w = 1u << (b - 0xcc);
        NEED(w);
        o->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
        o->via.u64 = be_uint(buf + pos, w);
        pos += w;
        break;
      case 0xd0: case 0xd1: case 0xd2: case 0xd3: {  /* int 8..64 */
        w = 1u << (b - 0xd0);
        NEED(w);
        uint64_t u = be_uint(buf + pos, w);
        unsigned sh = 64 - 8 * w;  /* sign-extend from w bytes */
        set_int(o, (int64_t)(u << sh) >> sh);
        pos += w;
        break;
      }
      case 0xdc: case 0xdd:  /* array 16/32 */
      case 0xde: case 0xdf:  /* map 16/32 */
        map = b >= 0xde;
        w = (b & 1) ? 4 : 2;
        NEED(w);
        n = be_uint(buf + pos, w);
        pos += w;
        avail -= w;
        break;
      default:  /* 0xc1: never used */
        return DYNQ_EPROTO;
      }
    }
#undef NEED
    if (map >= 0) {
      uint64_t items = map ? 2 * n : n;
      if (depth >= max_depth || n > max_elems - elems) return DYNQ_EPROTO;
      elems += n;
      /* Each item takes a byte at least: no allocation beyond the bytes. */
      if (items > avail) return -EAGAIN;
      msgpack_object *v = NULL;
      if (items > 0 && (v = arena_alloc(a, (size_t)items)) == NULL) return -ENOMEM;
      if (map) {
        o->type = MSGPACK_OBJECT_MAP;
        o->via.map.size = (uint32_t)n;
        o->via.map.ptr = (msgpack_object_kv *)v;
      } else {
        o->type = MSGPACK_OBJECT_ARRAY;
        o->via.array.size = (uint32_t)n;
        o->via.array.ptr = v;
      }
      if (items > 0) {
        st[depth].slot = o;
        st[depth].left = left;
        depth++;
        o = v;
        left = items;
        continue;
      }
    }
    /* o is complete: the next item of its container, or close it (it is
     * then a complete item of its own container). */
    while (--left == 0) {
      if (depth == 0) {
        *ret_used = pos;
        return 0;
      }
      depth--;
      o = st[depth].slot;
      left = st[depth].left;
    }
    o++;
  }
}

typedef struct rpc_priv {
  arena_t arena;        /* owned: the objects of the tree */
  msgpack_object root;
  char method[64];
  int reader;           /* a dynq__rpc_reader_t's: kept, not freed */
  int busy;             /* reader: a message parsed by it is alive */
  const uint8_t *view;  /* reader: the caller's frame the objects point into */
  size_t len;           /* bytes of frame */
  uint8_t frame[];      /* our copy of the frame: objects point into it */
} rpc_priv_t;

struct dynq__rpc_reader {
  rpc_priv_t p;         /* frame[] unused: the reader parses in place */
};

static void priv_free(rpc_priv_t *p) {
  if (p == NULL) return;
  if (p->reader) {  /* the arena's first chunk stays for the next frame */
    arena_reset(&p->arena);
    p->busy = 0;
    p->view = NULL;
    return;
  }
  arena_free(&p->arena);
  free(p);
}

static int is_uint32(const msgpack_object *o) {
  return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= UINT32_MAX;
}

/* A method name: 1..63 bytes, no NUL. */
static int get_method(const msgpack_object *o, char *buf, char *err,
                      size_t errlen) {
  if (o->type != MSGPACK_OBJECT_STR)
    return fail(DYNQ_EPROTO, err, errlen, "method is not a string");
  if (o->via.str.size == 0)
    return fail(DYNQ_EPROTO, err, errlen, "method is empty");
  if (o->via.str.size > 63)
    return fail(DYNQ_EPROTO, err, errlen,
                "method is %" PRIu32 " bytes long (at most 63)", o->via.str.size);
  if (memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL)
    return fail(DYNQ_EPROTO, err, errlen, "method holds a NUL byte");
  if (!dynq__utf8_valid(o->via.str.ptr, o->via.str.size))
    return fail(DYNQ_EPARAMS, err, errlen, "method is not valid UTF-8");
  memcpy(buf, o->via.str.ptr, o->via.str.size);
  buf[o->via.str.size] = '\0';
  return 0;
}

/* params: a map, nil, or (generic msgpack-RPC clients) an array of one map
 * or an empty array; anything else is left for the method to refuse. */
static dynq__obj_t unwrap_params(const msgpack_object *o) {
  if (o->type == MSGPACK_OBJECT_ARRAY) {
    if (o->via.array.size == 0) return mkobj(NULL);
    if (o->via.array.size == 1 && o->via.array.ptr[0].type == MSGPACK_OBJECT_MAP)
      return mkobj(&o->via.array.ptr[0]);
  }
  return mkobj(o);
}

/* Check buf[0..len) as one whole msgpack object within msgpack-c's
 * limits, unpack it into p (whose frame is at data) and validate the
 * envelope; p is freed on failure. */
static int parse_into(rpc_priv_t *p, const uint8_t *data, size_t len, int scanned,
                      dynq__rpc_msg_t *ret, int64_t *ret_msgid_hint, char *err,
                      size_t errlen);
static int envelope(rpc_priv_t *p, dynq__rpc_msg_t *ret, int64_t *ret_msgid_hint,
                    char *err, size_t errlen);

int dynq__rpc_parse(const uint8_t *buf, size_t len, dynq__rpc_msg_t *ret,
                    int64_t *ret_msgid_hint, char *err, size_t errlen) {
  if (ret_msgid_hint != NULL) *ret_msgid_hint = -1;
  if (err != NULL && errlen > 0) err[0] = '\0';
  if (len > SIZE_MAX - sizeof(rpc_priv_t))
    return fail(-ENOMEM, err, errlen, "message too large to copy");
  rpc_priv_t *p = malloc(sizeof *p + len);
  if (p == NULL) return fail(-ENOMEM, err, errlen, "out of memory");
  p->arena.head = NULL;
  p->reader = 0;
  p->busy = 0;
  p->view = NULL;
  memcpy(p->frame, buf, len);
  return parse_into(p, p->frame, len, 0, ret, ret_msgid_hint, err, errlen);
}

dynq__rpc_reader_t *dynq__rpc_reader_new(void) {
  dynq__rpc_reader_t *rd = calloc(1, sizeof(*rd));
  if (rd == NULL) return NULL;
  rd->p.reader = 1;
  return rd;
}

dynq__rpc_reader_t *dynq__rpc_reader_free(dynq__rpc_reader_t *rd) {
  if (rd == NULL) return NULL;
  arena_free(&rd->p.arena);
  free(rd);
  return NULL;
}

int dynq__rpc_parse_framed(dynq__rpc_reader_t *rd, const uint8_t *buf, size_t len,
                           const dynq__scan_limits_t *scanned, dynq__rpc_msg_t *ret,
                           int64_t *ret_msgid_hint, char *err, size_t errlen) {
  if (rd == NULL || rd->p.busy)  /* a message of it is still alive: copy */
    return dynq__rpc_parse(buf, len, ret, ret_msgid_hint, err, errlen);
  if (ret_msgid_hint != NULL) *ret_msgid_hint = -1;
  if (err != NULL && errlen > 0) err[0] = '\0';
  /* A frame the framer cut with these limits is one whole object whose
   * every declared count and length fits in its own bytes: what the
   * re-scan checks, except a nesting above msgpack-c's stack. */
  int ok = scanned != NULL && scanned->max_depth <= MSGPACK_MAX_DEPTH &&
           len <= scanned->max_frame;
  rd->p.busy = 1;
  rd->p.view = buf;
  return parse_into(&rd->p, buf, len, ok, ret, ret_msgid_hint, err, errlen);
}

int dynq__rpc_parse_next(dynq__rpc_reader_t *rd, const uint8_t *buf, size_t avail,
                         const dynq__scan_limits_t *lim, size_t *ret_len,
                         dynq__rpc_msg_t *ret, int64_t *ret_msgid_hint, char *err,
                         size_t errlen) {
  if (rd == NULL || rd->p.busy || avail == 0) return -EAGAIN;
  rpc_priv_t *p = &rd->p;
  size_t used = 0;
  arena_reset(&p->arena);
  if (decode_tree(&p->arena, buf, avail, lim, &used, &p->root) != 0) {
    arena_reset(&p->arena);
    return -EAGAIN;  /* the framer's scan says why, or waits for more */
  }
  if (ret_msgid_hint != NULL) *ret_msgid_hint = -1;
  if (err != NULL && errlen > 0) err[0] = '\0';
  *ret_len = used;
  p->method[0] = '\0';
  p->len = used;
  p->busy = 1;
  p->view = buf;
  return envelope(p, ret, ret_msgid_hint, err, errlen);
}

static int parse_into(rpc_priv_t *p, const uint8_t *data, size_t len, int scanned,
                      dynq__rpc_msg_t *ret, int64_t *ret_msgid_hint, char *err,
                      size_t errlen) {
  size_t used = len;
  int rc = 0;

  p->method[0] = '\0';
  p->len = len;
  /* Re-scan with this frame as the budget: whatever the caller's limits,
   * the frame is one whole object and nesting stays within the decoder's
   * stack (the decoder checks both again; the scan's verdicts give the
   * precise errors). */
  dynq__scan_limits_t lim = {len, MSGPACK_MAX_DEPTH, UINT64_MAX};
  if (!scanned) rc = dynq__mp_scan(data, len, &lim, &used);
  if (rc == DYNQ_EDEPTH) {
    rc = fail(DYNQ_EPROTO, err, errlen,
              "message nesting deeper than %d", MSGPACK_MAX_DEPTH);
    goto fail;
  }
  if (rc < 0 || used != len) {
    /* With the frame itself as the budget, ETOOBIG and a count the budget
     * cannot hold both mean bytes are missing. */
    rc = fail(DYNQ_EPROTO, err, errlen, "%s",
              rc == -EAGAIN || rc == DYNQ_ETOOBIG ? "message is truncated"
              : rc < 0 ? "message is not valid msgpack (bad byte or a count "
                         "larger than the frame)"
                       : "trailing bytes after the message");
    goto fail;
  }

  arena_reset(&p->arena);
  rc = decode_tree(&p->arena, data, len, NULL, &used, &p->root);
  if (rc == -ENOMEM) {
    rc = fail(-ENOMEM, err, errlen, "out of memory decoding the message");
    goto fail;
  }
  if (rc != 0 || used != len) {
    rc = fail(DYNQ_EPROTO, err, errlen, "message is not valid msgpack");
    goto fail;
  }
  return envelope(p, ret, ret_msgid_hint, err, errlen);

fail:
  priv_free(p);
  return rc;
}

/* p->root decoded: check it as a message into *ret; p freed on failure. */
static int envelope(rpc_priv_t *p, dynq__rpc_msg_t *ret, int64_t *ret_msgid_hint,
                    char *err, size_t errlen) {
  int rc;

  const msgpack_object *root = &p->root;
  if (root->type != MSGPACK_OBJECT_ARRAY) {
    rc = fail(DYNQ_EPROTO, err, errlen, "message is not an array");
    goto fail;
  }
  uint32_t n = root->via.array.size;
  const msgpack_object *a = root->via.array.ptr;
  if (n < 1 || a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 > 2) {
    rc = fail(DYNQ_EPROTO, err, errlen,
              "message type is not 0, 1 or 2 (request, response, notification)");
    goto fail;
  }
  int type = (int)a[0].via.u64;
  /* Read the msgid before judging the rest, so that the caller can still
   * answer a request whose other fields are wrong. */
  if (type != DYNQ_RPC_NOTIFY && n >= 2 && is_uint32(&a[1]) &&
      ret_msgid_hint != NULL)
    *ret_msgid_hint = (int64_t)a[1].via.u64;

  uint32_t want = type == DYNQ_RPC_NOTIFY ? 3 : 4;
  if (n != want) {
    rc = fail(DYNQ_EPROTO, err, errlen,
              "%s must be an array of %" PRIu32 " elements, got %" PRIu32,
              type == DYNQ_RPC_REQUEST ? "request"
              : type == DYNQ_RPC_RESPONSE ? "response" : "notification",
              want, n);
    goto fail;
  }

  dynq__rpc_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = type;
  if (type != DYNQ_RPC_NOTIFY) {
    if (!is_uint32(&a[1])) {
      rc = fail(DYNQ_EPROTO, err, errlen, "msgid is not an integer in 0..2^32-1");
      goto fail;
    }
    m.msgid = (uint32_t)a[1].via.u64;
  }
  switch (type) {
  case DYNQ_RPC_REQUEST:
  case DYNQ_RPC_NOTIFY: {
    const msgpack_object *meth = type == DYNQ_RPC_REQUEST ? &a[2] : &a[1];
    rc = get_method(meth, p->method, err, errlen);
    if (rc < 0) goto fail;
    m.method = p->method;
    m.params = unwrap_params(type == DYNQ_RPC_REQUEST ? &a[3] : &a[2]);
    break;
  }
  default:
    m.error = a[2].type == MSGPACK_OBJECT_NIL ? mkobj(NULL) : mkobj(&a[2]);
    m.result = mkobj(&a[3]);
    break;
  }
  m.priv = p;
  *ret = m;
  return 0;

fail:
  priv_free(p);
  return rc;
}

const uint8_t *dynq__rpc_frame(const dynq__rpc_msg_t *m, size_t *ret_len) {
  const rpc_priv_t *p = m != NULL ? m->priv : NULL;
  if (p == NULL) {
    *ret_len = 0;
    return NULL;
  }
  *ret_len = p->len;
  return p->reader ? p->view : p->frame;
}

void dynq__rpc_free(dynq__rpc_msg_t *m) {
  if (m == NULL) return;
  priv_free(m->priv);
  memset(m, 0, sizeof *m);
}

static void copy_msg(char *msg, size_t msglen, const char *s, size_t n) {
  if (msg == NULL || msglen == 0) return;
  if (n >= msglen) n = msglen - 1;
  memcpy(msg, s, n);
  msg[n] = '\0';
}

/* Whether name looks like an errno name: "E" then upper-case letters or
 * digits ("ENOMEM", "E2BIG"). */
static int errno_style(const char *s, size_t n) {
  if (n < 2 || s[0] != 'E') return 0;
  for (size_t i = 1; i < n; i++)
    if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
      return 0;
  return 1;
}

int dynq__rpc_error(dynq__obj_t e, char *msg, size_t msglen) {
  const char *s;
  size_t n;
  char name[32];

  copy_msg(msg, msglen, "", 0);
  switch (kind_of(e)) {
  case DYNQ_OBJ_NIL:
    return 0;  /* no error */
  case DYNQ_OBJ_STR:
    /* Generic msgpack-RPC servers send a bare string (refused by
     * dynq__obj_str when it is not UTF-8: found by fuzz-scan-rpc). */
    if (dynq__obj_str(e, &s, &n) != 0) {
      s = "server sent an error string that is not valid UTF-8";
      n = strlen(s);
    }
    copy_msg(msg, msglen, s, n);
    return DYNQ_ESERVER;
  case DYNQ_OBJ_MAP:
    break;
  default:
    copy_msg(msg, msglen, "server sent an error that is not a map",
             strlen("server sent an error that is not a map"));
    return DYNQ_ESERVER;
  }

  int code = DYNQ_ESERVER;
  dynq__obj_t fname = dynq__obj_get(e, "name");
  if (dynq__obj_strcpy(fname, name, sizeof name) == 0) {
    int c = dynq_err_from_name(name);
    int64_t wire;
    if (c < 0) {
      code = c;
    } else if (errno_style(name, strlen(name)) &&
               dynq__obj_int(dynq__obj_get(e, "code"), &wire) == 0 &&
               wire < 0 && wire >= -4095) {
      code = (int)wire;
    }
  }

  /* Best words for a human: the server's, else ours for a code we know,
   * else the unknown name itself. */
  if (dynq__obj_str(dynq__obj_get(e, "message"), &s, &n) == 0 && n > 0)
    copy_msg(msg, msglen, s, n);
  else if (code == DYNQ_ESERVER && dynq__obj_str(fname, &s, &n) == 0 && n > 0)
    copy_msg(msg, msglen, s, n);
  else {
    /* One call: for an errno glibc has no text for, strerror() formats
     * into a buffer that its next call frees (found by fuzz-scan-rpc). */
    const char *text = dynq_strerror(code);
    copy_msg(msg, msglen, text, strlen(text));
  }
  return code;
}
