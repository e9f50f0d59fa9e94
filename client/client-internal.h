/*
 * Internals of libdynqclient shared by conn.c (socket, framing, request/
 * response matching) and api.c (typed wrappers).  Not installed.
 *
 * Invariants of a dynq_client_t:
 *  - fd >= 0 while the stream is usable; -1 after dynq__client_broken()
 *    (any I/O error, EOF, or a frame we could not delimit).  A broken
 *    client answers every call with DYNQ_ECLOSED.
 *  - rbuf[0 .. frame_len) is the frame handed to the caller by the last
 *    dynq__client_recv(); it stays valid (parsed objects point into it)
 *    until the next send/recv.  rbuf[frame_len .. rlen) is read-ahead.
 */
#ifndef DYNQ_CLIENT_INTERNAL_H
#define DYNQ_CLIENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dynq/dynqclient.h"
#include "proto/proto.h"

/* Largest response frame we accept: a big output tensor fits, a peer
 * declaring 4 GiB does not make us allocate it. */
#define DYNQ__CLIENT_MAX_FRAME ((size_t)1 << 30)
#define DYNQ__CLIENT_ERRMSG 512

struct dynq_client {
  int fd;                    /* owned; -1 once broken/closed */
  uint32_t next_msgid;       /* 1.., skipping 0 (the server's "no id") */
  uint8_t *rbuf;             /* owned; malloc'd; <= MAX_FRAME + one read */
  size_t rlen, rcap;
  size_t frame_len;          /* bytes of rbuf holding the current frame */
  /* Busy-poll before blocking (dynq_client_set_spin): spin_max_us is the
   * caller's budget, spin_cur_us the adapted one (0..spin_max_us),
   * spin_until_ns the end of this call's spin (0: block at once). */
  int spin_max_us, spin_cur_us;
  int spin_idle_calls;       /* calls at budget 0 since the last probe */
  int spin_probe_gap;        /* such calls between probes (adaptive) */
  uint64_t spin_until_ns;
  char errmsg[DYNQ__CLIENT_ERRMSG];
};

/* Record a failure message (printf-style) and return code. */
int dynq__client_fail(dynq_client_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Begin a request frame in w: [0, msgid, method, ...; returns the msgid.
 * The caller then writes exactly one params object. */
uint32_t dynq__client_begin(dynq_client_t *c, dynq__wbuf_t *w,
                            const char *method);

/*
 * Send w (plus extra raw bytes appended on the wire, may be NULL) and wait
 * for the response with this msgid.  On 0, *ret_msg holds the parsed
 * response whose error is nil (free with dynq__rpc_free before the next
 * call) and, when ret_frame is non-NULL, the raw frame bytes.  A server
 * error object becomes its code with the server's message in errmsg.
 */
int dynq__client_call(dynq_client_t *c, dynq__wbuf_t *w, uint32_t msgid,
                      const void *extra, size_t extra_len,
                      dynq__rpc_msg_t *ret_msg, const uint8_t **ret_frame,
                      size_t *ret_frame_len);

/* The same, with pass_fd (>= 0) sent as SCM_RIGHTS with the frame's first
 * byte (shm.register). */
int dynq__client_call_fd(dynq_client_t *c, dynq__wbuf_t *w, uint32_t msgid,
                         const void *extra, size_t extra_len, int pass_fd,
                         dynq__rpc_msg_t *ret_msg, const uint8_t **ret_frame,
                         size_t *ret_frame_len);

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

/* Infer result {outputs, compute_us} -> public struct. */
int dynq__parse_infer_result(dynq_client_t *c, dynq__obj_t result,
                             dynq_infer_result_t *ret);

#endif
