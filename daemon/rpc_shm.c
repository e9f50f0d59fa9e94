/*
 * Shared-memory methods: shm.register (the memfd comes with the frame,
 * SCM_RIGHTS, queued by the transport) and shm.unregister, and the close
 * hook that drops a connection's regions.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "dynqd.h"

#define DEFAULT_MAX_BYTES ((uint64_t)1 << 30)

static int get_uint(dynq__obj_t o, uint64_t *ret) {
  int64_t v;
  if (dynq__obj_int(o, &v) != 0 || v < 0) return DYNQ_EPARAMS;
  *ret = (uint64_t)v;
  return 0;
}

static void reply_region(dynqd_req_t *rq, uint64_t id) {
  dynq__wbuf_t w;
  dynqd__reply_begin(rq, &w);
  dynq__w_map_begin(&w);
  dynq__w_str(&w, "region");
  dynq__w_uint(&w, id);
  dynq__w_map_end(&w);
  dynqd__reply_send(rq, &w);
}

int dynqd__m_shm_register(dynqd_req_t *rq, dynq__obj_t p) {
  const dynqd_config_t *cfg = rq->srv->cfg;
  /* The fd (if any) belongs to this frame: claim it first so an error
   * below does not leave it to be claimed by the next register. */
  int fd = dynqd__conn_take_fd(rq->conn);
  uint64_t size = 0;
  if (get_uint(dynq__obj_get(p, "size"), &size) != 0 || size == 0) {
    dynqd__reply_error(rq, DYNQ_EPARAMS, "shm.register: params.size must be a positive "
                       "integer (bytes of the region)");
    goto fail;
  }
  if (fd < 0) {
    dynqd__reply_error(rq, DYNQ_EPARAMS,
                       "shm.register: no file descriptor came with the frame (send one "
                       "memfd with SCM_RIGHTS in the same sendmsg as the frame's first "
                       "byte)");
    return 0;
  }
  char err[512] = "";
  uint64_t id;
  uint64_t max_bytes = cfg->max_shm_bytes > 0 ? cfg->max_shm_bytes : DEFAULT_MAX_BYTES;
  int rc = dynqd__shm_register(&rq->conn->shm, &rq->srv->shm, fd, size, cfg->max_shm_regions,
                               max_bytes, &id, err, sizeof(err));
  fd = -1;  /* consumed */
  if (rc != 0) {
    dynqd__reply_error(rq, rc, "%s", err);
    return 0;
  }
  log_debug("conn %llu: shm region %llu", (unsigned long long)rq->conn->id,
            (unsigned long long)id);
  reply_region(rq, id);
  return 0;
fail:
  if (fd >= 0) close(fd);
  return 0;
}

int dynqd__m_shm_unregister(dynqd_req_t *rq, dynq__obj_t p) {
  uint64_t id;
  if (get_uint(dynq__obj_get(p, "region"), &id) != 0) {
    dynqd__reply_error(rq, DYNQ_EPARAMS, "shm.unregister: params.region must be a region id");
    return 0;
  }
  if (dynqd__shm_unregister(&rq->conn->shm, id) != 0) {
    dynqd__reply_error(rq, DYNQ_ENOREGION, "no shared-memory region %llu on this connection",
                       (unsigned long long)id);
    return 0;
  }
  reply_region(rq, id);
  return 0;
}

void dynqd__rpc_shm_conn_closed(void *arg, dynqd_conn_t *c) {
  (void)arg;
  dynqd__shm_set_clear(&c->shm);  /* running requests keep their refs */
}
