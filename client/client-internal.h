/*
 * Internals of libdynqclient shared by conn.c (socket, framing, tickets)
 * and api.c, prod.c, shm.c (typed calls).  Not installed.
 *
 * Invariants of a dynq_client_t:
 *  - fd >= 0 while the stream is usable; -1 once broken (any I/O error,
 *    EOF, a frame we could not delimit, or the server's msgid-0 error).  A
 *    broken client refuses new requests with DYNQ_ECLOSED.
 *  - every request sent and not yet collected has one ticket; an
 *    answer is matched to it by msgid, whatever the order answers come
 *    in; an answer for an unknown msgid (a forgotten ticket) is dropped.
 *  - when the connection breaks, every entry not yet answered is answered
 *    with the connection's error at once, so each ticket completes
 *    exactly once.
 *  - out holds whole requests (each with its ticket) not yet
 *    written, in msgid order; it is written out before the client waits
 *    for anything (dynq_poll finding no answer ready, a wait for an
 *    unanswered ticket, a request sent directly) and once it passes
 *    DYNQ__CLIENT_FLUSH_AT bytes, so a burst of submits costs one write.
 *    Emptied (the requests failed with their tickets) when the
 *    connection breaks.
 */
#ifndef DYNQ_CLIENT_INTERNAL_H
#define DYNQ_CLIENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dynq/dynqclient.h"
#include "methods.h"
#include "proto.h"

/* Largest response frame we accept: a big output tensor fits, a peer
 * declaring 4 GiB does not make us allocate it. */
#define DYNQ__CLIENT_MAX_FRAME ((size_t)1 << 30)
#define DYNQ__CLIENT_ERRMSG 512
/* Queued request bytes that trigger a write without waiting for the
 * caller to wait: a whole burst of 32 requests of 3 KB leaves in one
 * write (at 64 KiB it took two: 0.16 -> 0.125 syscalls per request for
 * 4 connections x 32 in flight, and fewer reads and wake-ups in dynqd). */
#define DYNQ__CLIENT_FLUSH_AT ((size_t)128 << 10)

/* One request in flight or answered and not yet collected (a slot of
 * dynq__tickets_t; the links are slot indices, -1 for none). */
typedef struct dynq__pend {
  uint32_t msgid;
  int live;                  /* a ticket; 0: on the free list */
  int done;                  /* answered (or failed with the connection) */
  int reported;              /* dynq_poll has handed this ticket out */
  int code;                  /* done: 0, or the request's error */
  char *msg;                 /* done with an error: malloc'd message or NULL */
  dynq__rpc_msg_t resp;      /* done with code 0, !has_res: the response (owned) */
  int infer;                 /* sent by dynq_submit_infer: answered in place */
  int has_res;               /* done with code 0 and decoded from the frame as
                                it arrived: res holds it, resp is empty */
  uint64_t deadline_ns;      /* CLOCK_MONOTONIC time it is abandoned at
                                (-ETIMEDOUT); 0: never */
  int timeout_ms;            /* the client timeout it was submitted with */
  dynq_infer_result_t res;   /* owned when has_res */
  int sprev, snext;          /* send order (snext: free list when !live) */
  int dprev, dnext;          /* done and not reported, completion order */
} dynq__pend_t;

/* The tickets of a connection (tickets.c): O(1) by msgid.  n live
 * tickets, n_waiting of them not answered; n <= the connection's
 * max_inflight, slots grow by doubling to it. */
typedef struct dynq__tickets {
  dynq__pend_t *slot;        /* owned; cap entries */
  int32_t *index;            /* owned; mask + 1 buckets: slot, -1 empty,
                                -2 a removed ticket's tombstone */
  uint32_t mask;
  int tombs;                 /* tombstones; < (mask + 1) / 4 */
  int displaced;             /* live tickets not in their home bucket */
  int cap, n, n_waiting;
  int free_head;
  int sent_head, sent_tail;  /* live slots, oldest first */
  int done_head, done_tail;  /* done, not reported, earliest first */
} dynq__tickets_t;

void dynq__tickets_init(dynq__tickets_t *t);
void dynq__tickets_free(dynq__tickets_t *t);   /* the slots only, not what they own */
/* A new ticket (not done): 0 and *ret_p (valid until the next add), or -ENOMEM. */
int dynq__tickets_add(dynq__tickets_t *t, uint32_t msgid, dynq__pend_t **ret_p);
dynq__pend_t *dynq__tickets_find(const dynq__tickets_t *t, uint32_t msgid);
/* Mark p answered: it joins the done list (once). */
void dynq__tickets_done(dynq__tickets_t *t, dynq__pend_t *p);
/* The earliest answered ticket not yet reported, marked reported; NULL if none. */
dynq__pend_t *dynq__tickets_take_done(dynq__tickets_t *t);
/* Forget p (what it owns must be freed first). */
void dynq__tickets_remove(dynq__tickets_t *t, dynq__pend_t *p);
/* Live tickets in send order. */
dynq__pend_t *dynq__tickets_first(const dynq__tickets_t *t);
dynq__pend_t *dynq__tickets_next(const dynq__tickets_t *t, const dynq__pend_t *p);
/* 1 when every invariant holds (O(cap): tests only). */
int dynq__tickets_check(const dynq__tickets_t *t);

struct dynq_client {
  int fd;                    /* owned; -1 once broken/closed */
  uint32_t next_msgid;       /* 1.., skipping 0 (the server's "no id") */
  dynq__framer_t fr;         /* the response stream */
  dynq__wbuf_t out;          /* requests queued, not yet written (see top);
                                owned; capacity kept between requests, freed
                                when a big request left it over 1 MiB */
  dynq__tickets_t tickets;   /* requests sent and not collected; owned;
                                tickets.n <= max_inflight */
  int max_inflight;          /* dynq_client_set_max_inflight */
  int timeout_ms;            /* dynq_client_set_timeout; 0: none */
  int any_deadline;          /* a ticket with a deadline was ever added: poll
                                looks for expired ones before it sleeps */
  /* Busy-poll before blocking (dynq_client_set_spin): spin_max_us is the
   * caller's budget, spin_cur_us the adapted one (0..spin_max_us),
   * spin_until_ns the end of this wait's spin (0: block at once). */
  int spin_max_us, spin_cur_us;
  int spin_idle_calls;       /* calls at budget 0 since the last probe */
  int spin_probe_gap;        /* such calls between probes (adaptive) */
  uint64_t spin_until_ns;
  int broken_code;           /* why fd went -1 (0: closed normally) */
  /* dynq_wait_infer's result while it collects: a ticket answered in
   * place hands its result over here (NULL: the caller wants a response) */
  dynq_infer_result_t *take_res;
  int took_res;              /* the last collect filled *take_res */
  char path[108 + 64];       /* the socket path connected to (a sun_path) */
  char errmsg[DYNQ__CLIENT_ERRMSG];
};

/* A client over fd, a connected stream socket (owned from here on, closed
 * on failure too); path is what dynq_client_path shows.  0 or -ENOMEM.
 * dynq_connect's second half; tests and the fuzz target hand it one end
 * of a socketpair. */
int dynq__client_adopt(int fd, const char *path, dynq_client_t **ret_client);

/* Record a failure message (printf-style) and return code. */
int dynq__client_fail(dynq_client_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The next msgid (1.., skipping 0). */
uint32_t dynq__client_next_id(dynq_client_t *c);

/* A blocking call of a schema method with params p (the method's
 * dynq__p_<id>_t, or NULL for none): 0 and *ret_msg, or the error. */
int dynq__client_rpc(dynq_client_t *c, dynq__method_id_t method, const void *params,
                     dynq__rpc_msg_t *ret_msg);

/* Begin a request frame in w: [0, msgid, method, ...; returns the msgid.
 * The caller then writes exactly one params object. */
uint32_t dynq__client_begin(dynq_client_t *c, dynq__wbuf_t *w,
                            const char *method);

/* Encode a request straight into the send queue: note the mark, write
 * one whole request into c->out (dynq__w_request...), then
 * dynq__client_queue_end: 0 with the ticket msgid registered (the bytes go
 * out with the next flush), or the error (encoding, closed connection,
 * in-flight limit) with the partial request dropped from the queue.
 * infer: the request is an infer whose answer dynq_wait_infer collects,
 * so it is decoded as it arrives. */
size_t dynq__client_queue_mark(const dynq_client_t *c);
int dynq__client_queue_end(dynq_client_t *c, size_t mark, uint32_t msgid, int infer);

/* Send w (plus extra raw bytes, may be NULL; pass_fd >= 0 rides as
 * SCM_RIGHTS with the frame's first byte) as request msgid and register it
 * as in flight.  Reads answers meanwhile when the socket is full, so a
 * long pipeline cannot deadlock against the server's replies.  Queued
 * requests are written first, so the order holds. */
int dynq__client_send(dynq_client_t *c, dynq__wbuf_t *w, uint32_t msgid,
                      const void *extra, size_t extra_len, int pass_fd);

/* Wait for request msgid's answer and forget the ticket.  0 and
 * *ret_msg (the response, error nil; dynq__rpc_free it), or the request's
 * error with its message in errmsg. */
int dynq__client_take(dynq_client_t *c, uint32_t msgid, dynq__rpc_msg_t *ret_msg);

/* take, with the adaptive busy-poll of the blocking calls. */
int dynq__client_take_spin(dynq_client_t *c, uint32_t msgid, dynq__rpc_msg_t *ret_msg);

/* The first (v0) layout of a sized public result: the least a caller's
 * struct may hold (see dynqclient.h on `size`). */
#define DYNQ__MIN_SIZE(type, last) (offsetof(type, last) + sizeof(((type *)0)->last))

/* send + take, with the adaptive busy-poll of the blocking calls. */
int dynq__client_call(dynq_client_t *c, dynq__wbuf_t *w, uint32_t msgid,
                      const void *extra, size_t extra_len,
                      dynq__rpc_msg_t *ret_msg);
int dynq__client_call_fd(dynq_client_t *c, dynq__wbuf_t *w, uint32_t msgid,
                         const void *extra, size_t extra_len, int pass_fd,
                         dynq__rpc_msg_t *ret_msg);

/* The raw msgpack of a response's result (borrowed from m). */
int dynq__result_bytes(const dynq__rpc_msg_t *m, const uint8_t **ret_p, size_t *ret_len);

/* Reply-field readers shared by api.c and prod.c: absent/nil reads as 0 /
 * NULL / "", a wrong type is DYNQ_EPROTO. */
int dynq__get_i64(dynq__obj_t o, int64_t *ret);
int dynq__get_u64(dynq__obj_t o, uint64_t *ret);
int dynq__get_int(dynq__obj_t o, int *ret);
int dynq__get_bool(dynq__obj_t o, int *ret);
int dynq__get_str_dup(dynq__obj_t o, char **ret);
int dynq__get_str_trunc(dynq__obj_t o, char *buf, size_t cap);
int dynq__bad_field(dynq_client_t *c, const char *method, const char *field);

/* Render o as JSON text on f: bin and ext become null, non-finite floats
 * null, map keys that are not strings are rendered as strings.  Depth is
 * bounded by the frame scanner (32). */
void dynq__obj_to_json(dynq__obj_t o, FILE *f);

/* Most inputs or outputs a reply may declare (bounds what is allocated). */
#define DYNQ__CLIENT_MAX_IO 4096

/* An infer result {outputs, compute_us, ...}: the msgpack map at p (at
 * most len bytes; it may be followed by more) decoded into the public
 * struct, in one allocation that dynq_infer_result_free() frees, and
 * *ret_used (may be NULL) its length.  0, or DYNQ_EPROTO / DYNQ_ETOOBIG /
 * -ENOMEM with the reason in err (naming the field or output); bytes that
 * end before the map does are DYNQ_EPROTO too. */
int dynq__decode_infer_result(const uint8_t *p, size_t len, dynq_infer_result_t *ret,
                              size_t *ret_used, char *err, size_t errlen);

/* Free the calling thread's spare result blocks (result.c keeps a few
 * freed ones for the next answers; dynq_close gives them back). */
void dynq__result_spares_drop(void);

/* A cursor over msgpack bytes that passed the frame scanner (rd.c): each
 * read takes one item at p and advances, or returns -1 (wrong type, or
 * not enough bytes before end) leaving p where it was. */
typedef struct dynq__rd {
  const uint8_t *p, *end;
} dynq__rd_t;
/* the next type byte, or -1 */
static inline int dynq__rd_peek(const dynq__rd_t *r) {
  return r->p < r->end ? r->p[0] : -1;
}
/* 1 and taken if nil, else 0 */
static inline int dynq__rd_nil(dynq__rd_t *r) {
  if (dynq__rd_peek(r) != 0xc0) return 0;
  r->p++;
  return 1;
}
/* Array and map headers, and ints: the one-byte forms an answer is made
 * of are read inline, the longer ones by rd.c (the _long readers take
 * every form). */
int dynq__rd_array_long(dynq__rd_t *r, uint32_t *ret_n);
int dynq__rd_map_long(dynq__rd_t *r, uint32_t *ret_n);
int dynq__rd_int_long(dynq__rd_t *r, int64_t *ret);
static inline int dynq__rd_array(dynq__rd_t *r, uint32_t *ret_n) {
  if (r->p < r->end && (r->p[0] & 0xf0) == 0x90) {
    *ret_n = r->p[0] & 0x0fu;
    r->p++;
    return 0;
  }
  return dynq__rd_array_long(r, ret_n);
}
static inline int dynq__rd_map(dynq__rd_t *r, uint32_t *ret_n) {
  if (r->p < r->end && (r->p[0] & 0xf0) == 0x80) {
    *ret_n = r->p[0] & 0x0fu;
    r->p++;
    return 0;
  }
  return dynq__rd_map_long(r, ret_n);
}
/* any int that fits int64 */
static inline int dynq__rd_int(dynq__rd_t *r, int64_t *ret) {
  size_t left = (size_t)(r->end - r->p);
  if (left >= 1 && (r->p[0] <= 0x7f || r->p[0] >= 0xe0)) {
    *ret = (int64_t)(int8_t)r->p[0];
    r->p++;
    return 0;
  }
  if (left >= 3 && r->p[0] == 0xcd) {  /* uint16: dims, msgids, microseconds */
    *ret = (int64_t)((uint32_t)r->p[1] << 8 | r->p[2]);
    r->p += 3;
    return 0;
  }
  return dynq__rd_int_long(r, ret);
}
int dynq__rd_str(dynq__rd_t *r, const char **ret_s, size_t *ret_n); /* valid UTF-8 only */
/* 1 and taken if the next item is the fixstr key (n < 32 bytes of ASCII,
 * so valid UTF-8 as it is), else 0; DYNQ__RD_KEY takes a literal and
 * knows its length at compile time (answers are read key by key). */
static inline int dynq__rd_keyn(dynq__rd_t *r, const char *key, size_t n) {
  if (n < 32 && (size_t)(r->end - r->p) > n && r->p[0] == (0xa0 | n) &&
      memcmp(r->p + 1, key, n) == 0) {
    r->p += 1 + n;
    return 1;
  }
  return 0;
}
#define DYNQ__RD_KEY(r, lit) dynq__rd_keyn((r), (lit), sizeof(lit) - 1)
int dynq__rd_bin(dynq__rd_t *r, const void **ret_p, size_t *ret_n);
int dynq__rd_skip_long(dynq__rd_t *r);
/* one whole object; the fixstr keys and small ints of an answer's
 * timing fields inline */
static inline int dynq__rd_skip(dynq__rd_t *r) {
  size_t left = (size_t)(r->end - r->p), n = 0;
  if (left > 0) {
    unsigned b = r->p[0];
    n = b <= 0x7f || b >= 0xe0 ? 1 : (b & 0xe0) == 0xa0 ? 1 + (b & 0x1f) : b == 0xcd ? 3 : 0;
  }
  if (n > 0 && n <= left) {
    r->p += n;
    return 0;
  }
  return dynq__rd_skip_long(r);
}

/* Inline input data an encoder left out of its buffer, to be sent from
 * the caller's memory (a blocking call, whose inputs stay valid until the
 * request is written): each payload belongs at byte at of the buffer,
 * before the byte now there; at ascending.  Payloads under
 * DYNQ__ENC_REF_MIN bytes, and those past DYNQ__ENC_MAX_REFS, are copied
 * as usual. */
#define DYNQ__ENC_MAX_REFS 16
#define DYNQ__ENC_REF_MIN 512
typedef struct dynq__enc_refs {
  int n;
  struct {
    size_t at;
    const void *data;        /* the caller's, borrowed */
    size_t len;
  } ref[DYNQ__ENC_MAX_REFS];
} dynq__enc_refs_t;

/* Encode an infer request (checks every input first); 0 or the error.
 * refs NULL: every byte into w; else large inline payloads are recorded
 * in *refs instead (w alone is then not the whole request). */
int dynq__encode_infer(dynq_client_t *c, dynq__wbuf_t *w, uint32_t msgid,
                       const char *model, const dynq_tensor_t *inputs, int n_inputs,
                       const dynq_infer_opts_t *opts, dynq__enc_refs_t *refs);

/* dynq__client_queue_end for a request encoded with refs: the queue and
 * the payloads go out at once, in one write (the refs' memory is not
 * kept).  0 with the ticket registered (a write failure fails it, as a
 * later flush would), or the error with the request dropped. */
int dynq__client_send_refs(dynq_client_t *c, size_t mark, uint32_t msgid,
                           const dynq__enc_refs_t *refs);

#endif
