/*
 * The dispatcher: one table of methods with their flags, and the rules
 * every method shares, applied here once:
 *   - admin methods (DYNQD_M_ADMIN) need a peer that passes
 *     dynqd__admin_peer_ok (SO_PEERCRED), checked before anything else;
 *   - params are decoded by the schema (lib/proto/methods.def:
 *     dynq__params_decode) into the method's struct: a map, [map] (for
 *     generic msgpack-RPC clients), nil or [] (absent), each param checked
 *     for kind, presence and bounds; anything else is EPARAMS naming the
 *     param, unless the method ignores params (liveness must answer
 *     whatever it is sent);
 *   - a descriptor that came with a TAKES_FD frame is claimed first and
 *     closed unless the handler took it;
 *   - a DYNQD_M_DEFER handler that returns DYNQD_PENDING has its
 *     connection operation begun here (a reference, in flight, and for
 *     DYNQD_M_HOLD no further frames until it answers); reply.c ends it;
 *   - while start-up loads run, frames of methods that are not
 *     DYNQD_M_LIVE wait in their connection's buffer (a client that asks
 *     for a model right after start sees it loaded, as before).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "dynqd.h"
#include "proto/methods.h"

/* Methods answered while start-up loads run: they need no model. */
#define LIVE_OF(id)                                                          \
  (DYNQ_M_##id == DYNQ_M_ping || DYNQ_M_##id == DYNQ_M_server_info ||       \
           DYNQ_M_##id == DYNQ_M_health_live || DYNQ_M_##id == DYNQ_M_health_ready || \
           DYNQ_M_##id == DYNQ_M_stats                                       \
       ? DYNQD_M_LIVE                                                        \
       : 0)
/* The schema's flags (lib/proto/methods.def) as the daemon acts on them. */
#define FLAGS_OF(mf)                                                         \
  (((mf) & DYNQ_MF_ADMIN ? DYNQD_M_ADMIN : 0) |                              \
   ((mf) & DYNQ_MF_ANY_PARAMS ? DYNQD_M_ANY_PARAMS : 0) |                    \
   ((mf) & (DYNQ_MF_WORKER | DYNQ_MF_OFF_LOOP) ? DYNQD_M_DEFER : 0) |        \
   ((mf) & DYNQ_MF_OFF_LOOP ? DYNQD_M_HOLD : 0) |                            \
   ((mf) & DYNQ_MF_TAKES_FD ? DYNQD_M_TAKES_FD : 0) |                        \
   ((mf) & DYNQ_MF_WORKER ? DYNQD_M_COUNTED : 0))

/* One row per schema method, in its order; the handler of method `id` is
 * dynqd__m_<id> (rpc_*.c). */
static const dynqd_method_t methods[DYNQ_M__COUNT] = {
#define ROW(id, wname, mf) [DYNQ_M_##id] = {wname, FLAGS_OF(mf) | LIVE_OF(id), dynqd__m_##id},
  DYNQ_METHODS(ROW)
#undef ROW
};
#define N_METHODS DYNQ_M__COUNT

const dynqd_method_t *dynqd__methods(int *ret_n) {
  *ret_n = N_METHODS;
  return methods;
}

const dynqd_method_t *dynqd__method_find(const char *name) {
  const dynq__method_t *md = dynq__method_find(name);
  return md != NULL ? &methods[md->id] : NULL;
}

void dynqd__dispatch_req(dynqd_req_t *rq, const dynqd_method_t *me, dynq__obj_t params) {
  char why[256];
  const dynq__method_t *md = &dynq__methods[me - methods];
  /* A descriptor comes with this frame: claim it before anything can
   * fail, so it is never left for the next frame to take. */
  rq->fd = me->flags & DYNQD_M_TAKES_FD ? dynqd__conn_take_fd(rq->conn) : -1;
  if (me->flags & DYNQD_M_ADMIN) {
    int fd = dynqd__conn_fd(rq->conn);
    int (*ok)(int, const char *, char *, size_t) =
        rq->srv->peer_ok ? rq->srv->peer_ok : dynqd__admin_peer_ok;
    if (fd < 0) {
      dynqd__reply_error(rq, DYNQ_EDENIED, "%s: cannot identify the peer", me->name);
      goto out;
    }
    if (!ok(fd, rq->srv->cfg->admin_group, why, sizeof(why))) {
      log_warn("conn %llu: %s refused: %s", (unsigned long long)rq->conn->id, me->name, why);
      dynqd__reply_error(rq, DYNQ_EDENIED, "%s is an admin method: %s", me->name, why);
      goto out;
    }
  }
  /* Answers workers wrote themselves may already be in a client's hands:
   * their bookkeeping first, so no method reports state without them. */
  if (me->fn != dynqd__m_infer) dynqd__conn_direct_settle(rq->srv);
  dynq__params_t p;
  if (dynq__params_decode(md, params, &p, why, sizeof(why)) != 0) {
    /* Requests the workers would run are counted in stats even when
     * refused here. */
    if (me->flags & DYNQD_M_COUNTED) dynqd__stats_count(&rq->srv->stats, NULL, DYNQ_EPARAMS);
    dynqd__reply_error(rq, DYNQ_EPARAMS, "%s", why);
    goto out;
  }
  rq->hold = (me->flags & DYNQD_M_HOLD) != 0;
  if (me->fn(rq, &p) == DYNQD_PENDING) {
    /* The handler kept a deferred copy: count it against the connection
     * until reply.c sends its answer. */
    dynqd__conn_op_begin(rq->conn, rq->hold);
  }
out:
  if (rq->fd >= 0) close(rq->fd);  /* not taken by the handler */
  rq->fd = -1;
}

int dynqd__dispatch(dynqd_server_t *s, dynqd_conn_t *c, const dynq__rpc_msg_t *m) {
  const char *name = m->method ? m->method : "";
  dynqd_req_t rq = {s, c, m->msgid, name, 0, 0, -1};
  /* Nearly every frame is an infer: tried before the table's search. */
  const dynqd_method_t *me = strcmp(name, methods[DYNQ_M_infer].name) == 0
                                 ? &methods[DYNQ_M_infer]
                                 : dynqd__method_find(name);
  if (me == NULL) {
    char list[512];
    size_t used = 0;
    for (int i = 0; i < N_METHODS && used < sizeof(list); i++)
      used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
                               methods[i].name);
    dynqd__reply_error(&rq, DYNQ_ENOMETHOD, "unknown method '%s' (methods: %s)", name, list);
    return 0;
  }
  if (s->starting && !(me->flags & DYNQD_M_LIVE)) return DYNQD_WAIT;
  rq.method = me->name;
  dynqd__dispatch_req(&rq, me, m->params);
  return 0;
}
