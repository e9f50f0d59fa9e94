/*
 * Answers: the only way a handler answers a request.  A deferred request
 * (dynqd__req_defer) ends its connection operation once its answer is
 * out, so the counting of off-loop work lives here and in dispatch.c, not
 * in every handler.
 *
 * Self-counting maps: dynqd__w_map_open writes a map32 header (msgpack
 * allows the long form for any count) and close patches the count, so a
 * reply whose keys depend on the request cannot be miscounted.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dynq/errors.h"
#include "dynqd.h"

/* A map of this many entries is written as map32 by the packer. */
#define MAP32_MIN 0x10000u

size_t dynqd__w_map_open(dynq__wbuf_t *w) {
  size_t at = w->len;
  dynq__w_map(w, MAP32_MIN);
  return at;
}

void dynqd__w_map_close(dynq__wbuf_t *w, size_t at, uint32_t pairs) {
  if (w->err != 0 || at + 5 > w->len || w->data[at] != 0xdf) return;
  w->data[at + 1] = (uint8_t)(pairs >> 24);
  w->data[at + 2] = (uint8_t)(pairs >> 16);
  w->data[at + 3] = (uint8_t)(pairs >> 8);
  w->data[at + 4] = (uint8_t)pairs;
}

const char *dynqd__kind_name(dynq__obj_kind_t k) {
  static const char *const names[] = {
    [DYNQ_OBJ_NIL] = "nil", [DYNQ_OBJ_BOOL] = "a boolean",
    [DYNQ_OBJ_INT] = "an integer", [DYNQ_OBJ_FLOAT] = "a float",
    [DYNQ_OBJ_STR] = "a string", [DYNQ_OBJ_BIN] = "binary data",
    [DYNQ_OBJ_ARRAY] = "an array", [DYNQ_OBJ_MAP] = "a map",
    [DYNQ_OBJ_OTHER] = "an extension object",
  };
  return (unsigned)k < sizeof(names) / sizeof(names[0]) && names[k] ? names[k] : "?";
}

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

void dynqd__reply_frame(dynqd_req_t *rq, uint8_t *data, size_t len) {
  dynqd__conn_send(rq->conn, data, len);  /* dropped when the conn is closing */
  finish(rq);
}

void dynqd__reply_send(dynqd_req_t *rq, dynq__wbuf_t *w) {
  if (w->err != 0) {
    dynq__wbuf_free(w);
    dynqd__conn_send_error(rq->conn, rq->msgid, -ENOMEM, "out of memory encoding the result");
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
