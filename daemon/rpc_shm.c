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

static void reply_region(dynqd_req_t *rq, uint64_t id) {
  dynq__wbuf_t w;
  dynqd__reply_begin(rq, &w);
  dynq__w_map_begin(&w);
  dynq__w_str(&w, "region");
  dynq__w_uint(&w, id);
  dynq__w_map_end(&w);
  dynqd__reply_send(rq, &w);
}

int dynqd__m_shm_register(dynqd_req_t *rq, const dynq__params_t *p) {
  const dynqd_config_t *cfg = rq->srv->cfg;
  int fd = rq->fd;  /* claimed by the dispatcher with the frame */
  uint64_t size = p->shm_register.size;
  if (fd < 0) {
    dynqd__reply_error(rq, DYNQ_EPARAMS,
                       "shm.register: no file descriptor came with the frame (send one "
                       "memfd with SCM_RIGHTS in the same sendmsg as the frame's first "
                       "byte)");
    return 0;
  }
  char err[512] = "";
  uint64_t id;
  dynqd_conn_t *c = rq->conn;
  dynqd_shm_limits_t lim = {
      cfg->max_shm_regions, cfg->max_shm_bytes > 0 ? cfg->max_shm_bytes : DEFAULT_MAX_BYTES,
      cfg->max_shm_regions_total, cfg->max_shm_mapped_total,
      c->admin ? 0 : cfg->max_shm_regions_per_uid, c->admin ? 0 : cfg->max_shm_mapped_per_uid};
  int rc = dynqd__shm_register(&c->shm, &rq->srv->shm, c->peer, fd, size, &lim, &id, err,
                               sizeof(err));
  rq->fd = -1;  /* consumed */
  if (rc != 0) {
    dynqd__reply_error(rq, rc, "%s", err);
    return 0;
  }
  log_debug("conn %llu: shm region %llu", (unsigned long long)rq->conn->id,
            (unsigned long long)id);
  reply_region(rq, id);
  return 0;
}

int dynqd__m_shm_unregister(dynqd_req_t *rq, const dynq__params_t *p) {
  uint64_t id = p->shm_unregister.region;
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
