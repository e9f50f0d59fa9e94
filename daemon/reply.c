/*
 * Answers: the only way a handler answers a request.  A deferred request
 * (dynqd__req_defer) ends its connection operation once its answer is
 * out, so the counting of off-loop work lives here and in dispatch.c, not
 * in every handler.
 * Replies count their maps themselves (dynq__w_map_begin/_end): a writer
 * whose count is off fails dynq__wbuf_status and is answered EINTERNAL
 * rather than sent corrupt.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dynq/errors.h"
#include "dynqd.h"

int dynqd__req_defer(const dynqd_req_t *rq, dynqd_req_t *ret) {
  *ret = *rq;
  ret->deferred = 1;
  return DYNQD_PENDING;
}

static void finish(dynqd_req_t *rq) {
  if (rq->deferred) {
    rq->deferred = 0;
    dynqd__conn_op_end(rq->conn, rq->hold);
  }
}

void dynqd__reply_begin(const dynqd_req_t *rq, dynq__wbuf_t *w) {
  dynq__wbuf_init(w);
  dynq__w_result_head(w, rq->msgid);
}

void dynqd__reply_done(dynqd_req_t *rq) { finish(rq); }

void dynqd__reply_frame(dynqd_req_t *rq, uint8_t *data, size_t len) {
  dynqd__conn_send(rq->conn, data, len);  /* dropped when the conn is closing */
  finish(rq);
}

void dynqd__reply_send(dynqd_req_t *rq, dynq__wbuf_t *w) {
  int st = dynq__wbuf_status(w);
  if (st != 0) {
    dynq__wbuf_free(w);
    dynqd__conn_send_error(rq->conn, rq->msgid, st,
                           st == -ENOMEM ? "out of memory encoding the result"
                                         : "internal error encoding the result");
  } else {
    size_t len;
    uint8_t *data = dynq__wbuf_steal(w, &len);
    dynqd__conn_send(rq->conn, data, len);
  }
  finish(rq);
}

void dynqd__reply_error(dynqd_req_t *rq, int code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  dynqd__conn_send_error(rq->conn, rq->msgid, code, "%s", msg);
  finish(rq);
}
