/*
 * The dispatcher: one table of methods with their flags, and the rules
 * every method shares, applied here once:
 *   - admin methods (DYNQD_M_ADMIN) need a peer that passes
 *     dynqd__admin_peer_ok (SO_PEERCRED), checked before anything else;
 *   - params are a map, [map] (for generic msgpack-RPC clients), nil or []
 *     (absent); anything else is EPARAMS naming what was given, unless the
 *     method ignores params (liveness must answer whatever it is sent);
 *   - a DYNQD_M_DEFER handler that returns DYNQD_PENDING has its
 *     connection operation begun here (a reference, in flight, and for
 *     DYNQD_M_HOLD no further frames until it answers); reply.c ends it;
 *   - while start-up loads run, frames of methods that are not
 *     DYNQD_M_LIVE wait in their connection's buffer (a client that asks
 *     for a model right after start sees it loaded, as before).
 */
#include <stdio.h>
#include <string.h>

#include "dynq/errors.h"
#include "dynqd.h"

enum {
  LIVE = DYNQD_M_LIVE,
  ANY = DYNQD_M_ANY_PARAMS,
  ADMIN = DYNQD_M_ADMIN,
  DEFER = DYNQD_M_DEFER,
  HOLD = DYNQD_M_HOLD,
};

static const dynqd_method_t methods[] = {
  {"ping", LIVE, dynqd__m_ping},
  {"server.info", LIVE, dynqd__m_server_info},
  {"models.list", 0, dynqd__m_models_list},
  {"model.info", 0, dynqd__m_model_info},
  {"infer", DEFER, dynqd__m_infer},
  {"health.live", LIVE | ANY, dynqd__m_health_live},
  {"health.ready", LIVE | ANY, dynqd__m_health_ready},
  {"stats", LIVE | ANY, dynqd__m_stats},
  {"session.open", 0, dynqd__m_session_open},
  {"session.reset", 0, dynqd__m_session_reset},
  {"session.close", 0, dynqd__m_session_close},
  {"shm.register", 0, dynqd__m_shm_register},
  {"shm.unregister", 0, dynqd__m_shm_unregister},
  {"model.load", ADMIN | DEFER | HOLD, dynqd__m_model_load},
  {"model.unload", ADMIN, dynqd__m_model_unload},
  {"model.reload", ADMIN | DEFER | HOLD, dynqd__m_model_reload},
};
#define N_METHODS ((int)(sizeof(methods) / sizeof(methods[0])))

const dynqd_method_t *dynqd__methods(int *ret_n) {
  *ret_n = N_METHODS;
  return methods;
}

const dynqd_method_t *dynqd__method_find(const char *name) {
  for (int i = 0; i < N_METHODS; i++)
    if (strcmp(name, methods[i].name) == 0) return &methods[i];
  return NULL;
}

int dynqd__params_norm(dynq__obj_t p, dynq__obj_t *ret, char *why, size_t whylen) {
  dynq__obj_kind_t k = dynq__obj_kind(p);
  dynq__obj_t none = {NULL};
  if (k == DYNQ_OBJ_NIL) {  /* absent reads as nil too */
    *ret = none;
    return 0;
  }
  if (k == DYNQ_OBJ_MAP) {
    *ret = p;
    return 0;
  }
  if (k == DYNQ_OBJ_ARRAY) {
    uint32_t n = dynq__obj_len(p);
    if (n == 0) {
      *ret = none;
      return 0;
    }
    dynq__obj_t e = dynq__obj_at(p, 0);
    if (n == 1 && dynq__obj_kind(e) == DYNQ_OBJ_MAP) {
      *ret = e;
      return 0;
    }
  }
  snprintf(why, whylen, "params must be a map (or an array holding one map), got %s",
           dynqd__kind_name(k));
  return DYNQ_EPARAMS;
}

void dynqd__dispatch_req(dynqd_req_t *rq, const dynqd_method_t *me, dynq__obj_t params) {
  char why[256];
  if (me->flags & DYNQD_M_ADMIN) {
    int fd = dynqd__conn_fd(rq->conn);
    if (fd < 0) {
      dynqd__reply_error(rq, DYNQ_EDENIED, "%s: cannot identify the peer", me->name);
      return;
    }
    int (*ok)(int, const char *, char *, size_t) =
        rq->srv->peer_ok ? rq->srv->peer_ok : dynqd__admin_peer_ok;
    if (!ok(fd, rq->srv->cfg->admin_group, why, sizeof(why))) {
      log_warn("conn %llu: %s refused: %s", (unsigned long long)rq->conn->id, me->name, why);
      dynqd__reply_error(rq, DYNQ_EDENIED, "%s is an admin method: %s", me->name, why);
      return;
    }
  }
  dynq__obj_t p = {NULL};
  if (!(me->flags & DYNQD_M_ANY_PARAMS) && dynqd__params_norm(params, &p, why, sizeof(why))) {
    dynqd__reply_error(rq, DYNQ_EPARAMS, "%s: %s", me->name, why);
    return;
  }
  rq->hold = (me->flags & DYNQD_M_HOLD) != 0;
  if (me->fn(rq, p) == DYNQD_PENDING) {
    /* The handler kept a deferred copy: count it against the connection
     * until reply.c sends its answer. */
    dynqd__conn_op_begin(rq->conn, rq->hold);
  }
}

int dynqd__dispatch(dynqd_server_t *s, dynqd_conn_t *c, const dynq__rpc_msg_t *m) {
  const char *name = m->method ? m->method : "";
  dynqd_req_t rq = {s, c, m->msgid, name, 0, 0};
  const dynqd_method_t *me = dynqd__method_find(name);
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
