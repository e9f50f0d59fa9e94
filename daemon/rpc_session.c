/*
 * Session methods: session.open, session.reset, session.close, and the
 * close hook that closes a connection's (non-detached) sessions.  The
 * connection is the sessions' owner token.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "dynqd.h"

#define MAX_BINDINGS 256  /* more pairs than any model has inputs */

static void reply_session(dynqd_req_t *rq, const dynqd_session_t *ss, int full) {
  dynq__wbuf_t w;
  dynqd__reply_begin(rq, &w);
  dynq__w_map_begin(&w);
  dynq__w_str(&w, "session");
  dynq__w_uint(&w, ss->id);
  if (full) {
    const dynq__model_sig_t *g = dynq__model_signature(ss->model);
    dynq__w_str(&w, "inputs");
    dynq__w_array(&w, (uint32_t)(g->n_inputs - ss->n_bind));
    for (int i = 0; i < g->n_inputs; i++)
      if (!dynqd__session_binds_input(ss, i)) dynq__w_str(&w, g->inputs[i].name);
    dynq__w_str(&w, "bindings");
    dynq__w_map(&w, (uint32_t)ss->n_bind);
    for (int k = 0; k < ss->n_bind; k++) {
      dynq__w_str(&w, g->inputs[ss->bind_in[k]].name);
      dynq__w_str(&w, g->outputs[ss->bind_out[k]].name);
    }
  }
  dynq__w_map_end(&w);
  dynqd__reply_send(rq, &w);
}

int dynqd__m_session_open(dynqd_req_t *rq, const dynq__params_t *p) {
  dynqd_server_t *s = rq->srv;
  const dynq__p_session_open_t *q = &p->session_open;
  char name[128];
  dynq__pstr_copy(q->model, name, sizeof(name));  /* the schema bounds it: <= 127, no NUL */
  const dynqd_model_entry_t *e = dynqd__registry_find(&s->reg, name);
  if (e == NULL) {
    dynqd__reply_error(rq, DYNQ_ENOMODEL,
                       "no model named '%s' (models.list shows what is loaded)", name);
    return 0;
  }
  if (s->sessions.n >= s->cfg->max_sessions) {
    dynqd__reply_error(rq, DYNQ_ELIMIT,
                       "session.open: %d sessions are open (limit max_sessions = %d); "
                       "close some first", s->sessions.n, s->cfg->max_sessions);
    return 0;
  }
  dynqd_session_req_t sr = {0, 0, -1, NULL, NULL};
  if (q->has_detached) sr.detached = q->detached;
  if (q->has_idle_timeout_ms) sr.idle_timeout_ms = (int64_t)q->idle_timeout_ms;
  /* bindings {input: output}: names copied out of the frame */
  char (*names)[2][128] = NULL;
  const char **in_names = NULL, **out_names = NULL;
  if (q->has_bindings) {
    dynq__obj_t bo = q->bindings.obj;
    uint32_t nb = dynq__obj_len(bo);
    if (nb > MAX_BINDINGS) {
      dynqd__reply_error(rq, DYNQ_EPARAMS, "session.open: more than %d bindings",
                         MAX_BINDINGS);
      return 0;
    }
    names = calloc(nb ? nb : 1, sizeof(*names));
    in_names = calloc(nb ? nb : 1, sizeof(*in_names));
    out_names = calloc(nb ? nb : 1, sizeof(*out_names));
    if (names == NULL || in_names == NULL || out_names == NULL) {
      dynqd__reply_error(rq, -ENOMEM, "session.open: out of memory");
      goto out;
    }
    for (uint32_t k = 0; k < nb; k++) {
      if (dynq__obj_strcpy(dynq__obj_key_at(bo, k), names[k][0], sizeof(names[k][0])) != 0 ||
          dynq__obj_strcpy(dynq__obj_val_at(bo, k), names[k][1], sizeof(names[k][1])) != 0) {
        dynqd__reply_error(rq, DYNQ_EPARAMS,
                           "session.open: bindings keys and values must be names");
        goto out;
      }
      in_names[k] = names[k][0];
      out_names[k] = names[k][1];
    }
    sr.n_bind = (int)nb;
    sr.bind_in_names = in_names;
    sr.bind_out_names = out_names;
  }
  char err[512] = "";
  dynqd_session_t *ss;
  dynqd_conn_t *c = rq->conn;
  int rc = dynqd__session_open(&s->sessions, c, c->peer, c->admin ? 0 : s->cfg->max_sessions_per_uid,
                               e, &sr, &ss, err, sizeof(err));
  if (rc != 0) {
    dynqd__reply_error(rq, rc, "%s", err);
  } else {
    /* shadow telemetry samples whole sessions (docs/DAEMON.md) */
    ss->shadow = dynqd__shadow_sess_open(&s->shadow, dynqd__stats_model(&s->stats, ss->model_name),
                                         ss->n_bind, ss->bind_in, ss->bind_out);
    reply_session(rq, ss, 1);
  }
out:
  free(names);
  free(in_names);
  free(out_names);
  return 0;
}

/* {session: id} of this connection (or detached); NULL after answering. */
static dynqd_session_t *find(dynqd_req_t *rq, uint64_t id) {
  dynqd_session_t *ss = dynqd__session_find(&rq->srv->sessions, rq->conn, rq->conn->uid, id);
  if (ss == NULL)
    dynqd__reply_error(rq, DYNQ_ENOSESSION,
                       "no session %llu (closed, timed out, opened by another "
                       "connection without detached: true, or by another uid)",
                       (unsigned long long)id);
  return ss;
}

int dynqd__m_session_reset(dynqd_req_t *rq, const dynq__params_t *p) {
  dynqd_session_t *ss = find(rq, p->session_reset.session);
  if (ss == NULL) return 0;
  if (dynqd__session_reset(&rq->srv->sessions, ss) != 0) {
    dynqd__reply_error(rq, DYNQ_EBUSY,
                       "session %llu is running a request; reset it after the answer",
                       (unsigned long long)ss->id);
    return 0;
  }
  reply_session(rq, ss, 0);
  return 0;
}

int dynqd__m_session_close(dynqd_req_t *rq, const dynq__params_t *p) {
  dynqd_session_t *ss = find(rq, p->session_close.session);
  if (ss == NULL) return 0;
  dynqd_session_t copy = *ss;  /* for the answer: closing may free it */
  copy.n_bind = 0;
  dynqd__session_close(&rq->srv->sessions, ss, "session.close");
  reply_session(rq, &copy, 0);
  return 0;
}

void dynqd__rpc_session_conn_closed(void *arg, dynqd_conn_t *c) {
  dynqd_server_t *s = arg;
  dynqd__sessions_owner_gone(&s->sessions, c);  /* detached ones live on */
}
