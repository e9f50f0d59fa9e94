/*
 * Loading a model off the loop: open, check and warm the file on libuv's
 * thread pool (dynqd__registry_prepare), then swap it in on the loop
 * (dynqd__registry_commit), so the swap stays atomic for every reader and
 * the loop keeps answering everyone (ping and health.live included) while
 * a large model loads.  model.load / model.reload, start-up and SIGHUP all
 * load through here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "dynqd.h"

typedef struct load_op {
  uv_work_t req;
  dynqd_registry_t *reg;
  dynqd_load_cb cb;
  void *arg;
  char name[64], rel[1024];
  dynqd_prepared_t prep;
  int rc;
  char err[768];
} load_op_t;

static void load_work(uv_work_t *req) {  /* a pool thread */
  load_op_t *op = req->data;
  op->rc = dynqd__registry_prepare(op->reg, op->name, op->rel, &op->prep, op->err,
                                   sizeof(op->err));
}

static void load_done(uv_work_t *req, int status) {  /* the loop */
  load_op_t *op = req->data;
  int ver = 0;
  if (status != 0 && op->rc == 0) {
    op->rc = status;
    snprintf(op->err, sizeof(op->err), "%s", uv_strerror(status));
  }
  if (op->rc == 0)
    op->rc = dynqd__registry_commit(op->reg, op->name, op->rel, &op->prep, &ver, op->err,
                                    sizeof(op->err));
  dynqd__prepared_clear(&op->prep);
  dynqd_load_result_t res = {op->name, op->rel, op->rc, ver,
                             op->err[0] ? op->err : dynq_strerror(op->rc)};
  op->cb(op->arg, &res);
  free(op);
}

int dynqd__load_start(uv_loop_t *loop, dynqd_registry_t *r, const char *name,
                      const char *rel, dynqd_load_cb cb, void *arg) {
  if (strlen(name) >= sizeof(((load_op_t *)0)->name) ||
      strlen(rel) >= sizeof(((load_op_t *)0)->rel))
    return DYNQ_EPARAMS;
  load_op_t *op = calloc(1, sizeof(*op));
  if (op == NULL) return -ENOMEM;
  op->req.data = op;
  op->reg = r;
  op->cb = cb;
  op->arg = arg;
  snprintf(op->name, sizeof(op->name), "%s", name);
  snprintf(op->rel, sizeof(op->rel), "%s", rel);
  int rc = uv_queue_work(loop, &op->req, load_work, load_done);
  if (rc != 0) {
    free(op);
    return rc;
  }
  return 0;
}
