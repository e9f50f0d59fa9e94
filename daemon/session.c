/*
 * Sessions: streaming state kept server-side between infer calls (issue 4).
 * A session binds some model inputs to outputs: after each successful call
 * the bound outputs become the next call's bound inputs.  The state
 * machine is drawn in dynqd.h.
 *
 * Everything here runs on the loop thread.  A worker running a session's
 * job reads the state tensors through the job's inputs (non-owning views;
 * the session is BUSY so nothing changes them) and leaves the new state in
 * job->sess_new; the loop swaps it in when the job is back, only on
 * success.  Sessions live in one server list, bounded by max_sessions, and
 * an id table beside it: a chunk stream of hundreds of sessions looks one
 * up per request, and walking the list cost ~1.5 % of dynqd's CPU at 400.
 *
 * With batching on for the model, a worker may run several sessions' jobs
 * as one (batch.c): each job's state views are concatenated along their
 * batch axis, and each job gets back its own slice of the new state in
 * sess_new, so nothing here changes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "dynqd.h"

#define DEFAULT_IDLE_MS 60000

/* 0 turns sessions off (config.c sets the default). */
static int max_sessions(const dynqd_config_t *cfg) { return cfg->max_sessions; }

static uint64_t idle_cap_ms(const dynqd_config_t *cfg) {
  return cfg->session_idle_timeout_ms > 0 ? (uint64_t)cfg->session_idle_timeout_ms
                                          : DEFAULT_IDLE_MS;
}

dynqd_session_t *dynqd__session_unref(dynqd_session_t *ss) {
  if (ss == NULL || --ss->refs > 0) return NULL;
  for (int i = 0; i < ss->n_bind; i++) dynq__tensor_clear(&ss->state[i]);
  free(ss->state);
  free(ss->bind_in);
  free(ss->bind_out);
  free(ss->model_name);
  dynq__model_unref(ss->model);
  free(ss);
  return NULL;
}

static void rearm(dynqd_server_t *s);

/* ---- id table ---- */

static size_t tab_slot(const dynqd_server_t *s, uint64_t id) {
  return (size_t)(id & (s->sess_tab_cap - 1));  /* ids are sequential */
}

/* Grow to hold n sessions at one per slot; on no memory the old table
 * keeps working with longer chains (or the list is scanned). */
static void tab_reserve(dynqd_server_t *s, size_t n) {
  if (s->sess_tab != NULL && n <= s->sess_tab_cap) return;
  size_t cap = s->sess_tab_cap ? s->sess_tab_cap : 64;
  while (cap < n) cap *= 2;
  dynqd_session_t **t = calloc(cap, sizeof(*t));
  if (t == NULL) return;
  free(s->sess_tab);
  s->sess_tab = t;
  s->sess_tab_cap = cap;
  for (dynqd_session_t *ss = s->sessions; ss; ss = ss->next) {
    size_t i = tab_slot(s, ss->id);
    ss->hnext = t[i];
    t[i] = ss;
  }
}

static void tab_remove(dynqd_server_t *s, dynqd_session_t *ss) {
  if (s->sess_tab == NULL) return;
  dynqd_session_t **pp = &s->sess_tab[tab_slot(s, ss->id)];
  while (*pp != NULL && *pp != ss) pp = &(*pp)->hnext;
  if (*pp != NULL) *pp = ss->hnext;
  ss->hnext = NULL;
}

static dynqd_session_t *lookup(dynqd_server_t *s, uint64_t id) {
  dynqd_session_t *ss = s->sess_tab ? s->sess_tab[tab_slot(s, id)] : s->sessions;
  for (; ss; ss = s->sess_tab ? ss->hnext : ss->next)
    if (ss->id == id) return ss;
  return NULL;
}

/* Unlist and drop the list's ref; a running job keeps its own. */
static void session_close(dynqd_server_t *s, dynqd_session_t *ss, const char *why) {
  dynqd_session_t **pp = &s->sessions;
  while (*pp != NULL && *pp != ss) pp = &(*pp)->next;
  if (*pp == NULL) return;
  *pp = ss->next;
  ss->next = NULL;
  tab_remove(s, ss);
  ss->closed = 1;
  s->n_sessions--;
  log_debug("session %llu closed (%s)", (unsigned long long)ss->id, why);
  dynqd__session_unref(ss);
}

static void on_idle_timer(uv_timer_t *t) {
  dynqd_server_t *s = t->data;
  uint64_t now = uv_hrtime();
  for (dynqd_session_t *ss = s->sessions, *n; ss; ss = n) {
    n = ss->next;
    if (!ss->busy && now - ss->last_ns >= ss->idle_ms * 1000000ull)
      session_close(s, ss, "idle timeout");
  }
  rearm(s);
}

/* Start the timer for the earliest idle expiry (busy sessions are re-armed
 * when their job comes back). */
static void rearm(dynqd_server_t *s) {
  if (!s->session_timer_init) {
    if (uv_timer_init(s->loop, &s->session_timer) != 0) return;
    s->session_timer.data = s;
    uv_unref((uv_handle_t *)&s->session_timer);  /* never keeps the loop alive */
    s->session_timer_init = 1;
  }
  if (uv_is_closing((uv_handle_t *)&s->session_timer)) return;  /* shutting down */
  uint64_t now = uv_hrtime(), best = UINT64_MAX;
  for (dynqd_session_t *ss = s->sessions; ss; ss = ss->next) {
    if (ss->busy) continue;
    uint64_t end = ss->last_ns + ss->idle_ms * 1000000ull;
    uint64_t left = end > now ? (end - now + 999999) / 1000000 : 0;
    if (left < best) best = left;
  }
  if (best == UINT64_MAX)
    uv_timer_stop(&s->session_timer);
  else
    uv_timer_start(&s->session_timer, on_idle_timer, best, 0);
}

/* ss just became idle (or was used) at last_ns: make sure the timer fires
 * by its expiry.  O(1), unlike rearm(): a timer that fires early (another
 * session was used meanwhile) just rescans and rearms exactly, so the timer
 * may only ever be due at or before the earliest idle expiry.  A full scan
 * per finished chunk cost ~3 % of dynqd's CPU with 400 streams. */
static void arm_for(dynqd_server_t *s, const dynqd_session_t *ss) {
  uv_timer_t *t = &s->session_timer;
  if (!s->session_timer_init || uv_is_closing((uv_handle_t *)t)) {
    rearm(s);
    return;
  }
  if (uv_is_active((uv_handle_t *)t) && uv_timer_get_due_in(t) <= ss->idle_ms) return;
  uv_timer_start(t, on_idle_timer, ss->idle_ms, 0);
}

static int name_is(const char *a, const char *stem, size_t sn, const char *suffix) {
  size_t an = strlen(a), fn = strlen(suffix);
  return an == sn + fn && memcmp(a, stem, sn) == 0 && memcmp(a + sn, suffix, fn) == 0;
}

/* Default pairing: in -> inN, in -> in_out, x_in -> x_out. */
static int default_output_for(const dynq__graph_t *g, const char *in) {
  size_t n = strlen(in);
  for (int o = 0; o < g->n_outputs; o++) {
    const char *on = g->values[g->outputs[o]].name;
    if (name_is(on, in, n, "N") || name_is(on, in, n, "_out")) return o;
    if (n > 3 && strcmp(in + n - 3, "_in") == 0 && name_is(on, in, n - 3, "_out")) return o;
  }
  return -1;
}

static int output_index(const dynq__graph_t *g, const char *name) {
  for (int o = 0; o < g->n_outputs; o++)
    if (strcmp(g->values[g->outputs[o]].name, name) == 0) return o;
  return -1;
}

static void reply_session(dynqd_conn_t *c, uint32_t msgid, const dynqd_session_t *ss) {
  const dynq__graph_t *g = dynq__model_graph(ss->model);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, msgid);
  dynq__w_map(&w, 3);
  dynq__w_str(&w, "session");
  dynq__w_uint(&w, ss->id);
  dynq__w_str(&w, "inputs");
  dynq__w_array(&w, (uint32_t)(g->n_inputs - ss->n_bind));
  for (int i = 0; i < g->n_inputs; i++) {
    int bound = 0;
    for (int k = 0; k < ss->n_bind; k++) bound |= ss->bind_in[k] == i;
    if (!bound) dynq__w_str(&w, g->values[g->inputs[i]].name);
  }
  dynq__w_str(&w, "bindings");
  dynq__w_map(&w, (uint32_t)ss->n_bind);
  for (int k = 0; k < ss->n_bind; k++) {
    dynq__w_str(&w, g->values[g->inputs[ss->bind_in[k]]].name);
    dynq__w_str(&w, g->values[g->outputs[ss->bind_out[k]]].name);
  }
  dynqd__conn_send_wbuf(c, &w);
}

void dynqd__m_session_open(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t p) {
  dynqd_server_t *s = c->srv;
  dynqd_session_t *ss = NULL;
  if (dynq__obj_kind(p) == DYNQ_OBJ_ARRAY && dynq__obj_len(p) == 1) p = dynq__obj_at(p, 0);
  char name[128];
  if (dynq__obj_strcpy(dynq__obj_get(p, "model"), name, sizeof(name)) != 0) {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "session.open: params.model must be a model name");
    return;
  }
  const dynqd_model_entry_t *e = dynqd__registry_find(&s->reg, name);
  if (e == NULL) {
    dynqd__conn_send_error(c, msgid, DYNQ_ENOMODEL,
                           "no model named '%s' (models.list shows what is loaded)", name);
    return;
  }
  if (s->n_sessions >= max_sessions(s->cfg)) {
    dynqd__conn_send_error(c, msgid, DYNQ_ELIMIT,
                           "session.open: %d sessions are open (limit max_sessions = %d); "
                           "close some first", s->n_sessions, max_sessions(s->cfg));
    return;
  }
  int detached = 0;
  dynq__obj_t dob = dynq__obj_get(p, "detached");
  if (!dynq__obj_is_absent(dob) && dynq__obj_kind(dob) != DYNQ_OBJ_NIL &&
      dynq__obj_bool(dob, &detached) != 0) {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "session.open: params.detached must be a boolean");
    return;
  }
  uint64_t idle = idle_cap_ms(s->cfg);
  dynq__obj_t io = dynq__obj_get(p, "idle_timeout_ms");
  if (!dynq__obj_is_absent(io) && dynq__obj_kind(io) != DYNQ_OBJ_NIL) {
    int64_t v;
    if (dynq__obj_int(io, &v) != 0 || v <= 0) {
      dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                             "session.open: params.idle_timeout_ms must be a positive "
                             "integer");
      return;
    }
    if ((uint64_t)v < idle) idle = (uint64_t)v;  /* the config's value is the cap */
  }

  const dynq__graph_t *g = dynq__model_graph(e->model);
  ss = calloc(1, sizeof(*ss));
  if (ss == NULL) goto oom;
  int cap = g->n_inputs > 0 ? g->n_inputs : 1;
  ss->bind_in = calloc((size_t)cap, sizeof(int));
  ss->bind_out = calloc((size_t)cap, sizeof(int));
  ss->state = calloc((size_t)cap, sizeof(*ss->state));
  ss->model_name = strdup(e->name);
  if (!ss->bind_in || !ss->bind_out || !ss->state || !ss->model_name) goto oom;
  ss->model = dynq__model_ref(e->model);
  ss->refs = 1;

  dynq__obj_t bo = dynq__obj_get(p, "bindings");
  if (!dynq__obj_is_absent(bo) && dynq__obj_kind(bo) != DYNQ_OBJ_NIL) {
    if (dynq__obj_kind(bo) != DYNQ_OBJ_MAP) {
      dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                             "session.open: params.bindings must map input names to "
                             "output names");
      goto fail;
    }
    uint32_t nb = dynq__obj_len(bo);
    for (uint32_t k = 0; k < nb; k++) {
      char in[128], out[128];
      if (dynq__obj_strcpy(dynq__obj_key_at(bo, k), in, sizeof(in)) != 0 ||
          dynq__obj_strcpy(dynq__obj_val_at(bo, k), out, sizeof(out)) != 0) {
        dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                               "session.open: bindings keys and values must be names");
        goto fail;
      }
      int ii = dynq__model_input_index(e->model, in);
      int oi = output_index(g, out);
      if (ii < 0) {
        dynqd__conn_send_error(c, msgid, DYNQ_ENOINPUT,
                               "session.open: model '%s' has no input named '%s'",
                               e->name, in);
        goto fail;
      }
      if (oi < 0) {
        dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                               "session.open: model '%s' has no output named '%s'",
                               e->name, out);
        goto fail;
      }
      for (int q = 0; q < ss->n_bind; q++) {
        if (ss->bind_in[q] == ii || ss->bind_out[q] == oi) {
          dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                                 "session.open: input '%s' or output '%s' bound twice",
                                 in, out);
          goto fail;
        }
      }
      if (g->values[g->inputs[ii]].dtype != g->values[g->outputs[oi]].dtype) {
        dynqd__conn_send_error(c, msgid, DYNQ_EDTYPE,
                               "session.open: input '%s' is %s but output '%s' is %s",
                               in, dynq__dtype_name(g->values[g->inputs[ii]].dtype), out,
                               dynq__dtype_name(g->values[g->outputs[oi]].dtype));
        goto fail;
      }
      ss->bind_in[ss->n_bind] = ii;
      ss->bind_out[ss->n_bind] = oi;
      ss->n_bind++;
    }
  } else if (g->n_state > 0) {
    /* pairs declared at import (dynq-quantize --state IN=OUT); the loader
     * checked they join a graph input to a graph output of its dtype */
    for (int k = 0; k < g->n_state && ss->n_bind < cap; k++) {
      int ii = -1, oi = -1;
      for (int i = 0; i < g->n_inputs; i++)
        if (g->inputs[i] == g->state[2 * k]) ii = i;
      for (int o = 0; o < g->n_outputs; o++)
        if (g->outputs[o] == g->state[2 * k + 1]) oi = o;
      if (ii < 0 || oi < 0) continue;
      ss->bind_in[ss->n_bind] = ii;
      ss->bind_out[ss->n_bind] = oi;
      ss->n_bind++;
    }
  } else {
    for (int i = 0; i < g->n_inputs; i++) {
      const dynq__value_t *v = &g->values[g->inputs[i]];
      int oi = default_output_for(g, v->name);
      if (oi < 0 || g->values[g->outputs[oi]].dtype != v->dtype) continue;
      int dup = 0;
      for (int q = 0; q < ss->n_bind; q++) dup |= ss->bind_out[q] == oi;
      if (dup) continue;
      ss->bind_in[ss->n_bind] = i;
      ss->bind_out[ss->n_bind] = oi;
      ss->n_bind++;
    }
    if (ss->n_bind == 0) {
      dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                             "session.open: model '%s' declares no state pairs and no "
                             "input/output names pair up (x -> xN, x -> x_out); pass "
                             "params.bindings", e->name);
      goto fail;
    }
  }
  for (int k = 0; k < ss->n_bind; k++) {
    if (g->values[g->inputs[ss->bind_in[k]]].rank < 0) {
      dynqd__conn_send_error(c, msgid, DYNQ_ESHAPE,
                             "session.open: input '%s' has no declared rank, so its "
                             "initial state cannot be sized",
                             g->values[g->inputs[ss->bind_in[k]]].name);
      goto fail;
    }
  }
  ss->id = ++s->next_session_id;
  ss->owner = detached ? NULL : c;
  ss->idle_ms = idle;
  ss->last_ns = uv_hrtime();
  ss->next = s->sessions;
  s->sessions = ss;
  s->n_sessions++;
  tab_reserve(s, (size_t)s->n_sessions);  /* rehashes the list, ss included, when it grows */
  if (s->sess_tab != NULL && lookup(s, ss->id) != ss) {
    size_t i = tab_slot(s, ss->id);
    ss->hnext = s->sess_tab[i];
    s->sess_tab[i] = ss;
  }
  log_debug("conn %llu: session %llu on '%s'%s", (unsigned long long)c->id,
            (unsigned long long)ss->id, e->name, detached ? " (detached)" : "");
  reply_session(c, msgid, ss);
  arm_for(s, ss);
  return;

oom:
  dynqd__conn_send_error(c, msgid, -ENOMEM, "session.open: out of memory");
fail:
  if (ss != NULL) {
    ss->refs = 1;
    dynqd__session_unref(ss);
  }
}

/* {session: id} for this connection (or detached); answers the error. */
static dynqd_session_t *find(dynqd_conn_t *c, uint32_t msgid, const char *method,
                             dynq__obj_t p) {
  if (dynq__obj_kind(p) == DYNQ_OBJ_ARRAY && dynq__obj_len(p) == 1) p = dynq__obj_at(p, 0);
  int64_t id;
  if (dynq__obj_int(dynq__obj_get(p, "session"), &id) != 0 || id < 0) {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "%s: params.session must be a session id", method);
    return NULL;
  }
  dynqd_session_t *ss = lookup(c->srv, (uint64_t)id);
  if (ss != NULL && (ss->owner == NULL || ss->owner == c)) return ss;
  dynqd__conn_send_error(c, msgid, DYNQ_ENOSESSION,
                         "no session %lld (closed, timed out, or opened by another "
                         "connection without detached: true)", (long long)id);
  return NULL;
}

dynqd_session_t *dynqd__session_get(dynqd_conn_t *c, uint32_t msgid, uint64_t id) {
  dynqd_session_t *ss = lookup(c->srv, id);
  if (ss != NULL && (ss->owner == NULL || ss->owner == c)) {
    if (ss->busy) {
      dynqd__conn_send_error(c, msgid, DYNQ_EBUSY,
                             "session %llu is running another request; one request per "
                             "session at a time", (unsigned long long)id);
      return NULL;
    }
    return ss;
  }
  dynqd__conn_send_error(c, msgid, DYNQ_ENOSESSION,
                         "no session %llu (closed, timed out, or opened by another "
                         "connection without detached: true)", (unsigned long long)id);
  return NULL;
}

static void reply_ok(dynqd_conn_t *c, uint32_t msgid, uint64_t id) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, msgid);
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "session");
  dynq__w_uint(&w, id);
  dynqd__conn_send_wbuf(c, &w);
}

void dynqd__m_session_reset(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t p) {
  dynqd_session_t *ss = find(c, msgid, "session.reset", p);
  if (ss == NULL) return;
  if (ss->busy) {
    dynqd__conn_send_error(c, msgid, DYNQ_EBUSY,
                           "session %llu is running a request; reset it after the answer",
                           (unsigned long long)ss->id);
    return;
  }
  /* Back to "not started": the next call sizes fresh zeros. */
  for (int k = 0; k < ss->n_bind; k++) dynq__tensor_clear(&ss->state[k]);
  memset(ss->state, 0, (size_t)ss->n_bind * sizeof(*ss->state));
  ss->last_ns = uv_hrtime();
  reply_ok(c, msgid, ss->id);
  arm_for(c->srv, ss);
}

void dynqd__m_session_close(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t p) {
  dynqd_session_t *ss = find(c, msgid, "session.close", p);
  if (ss == NULL) return;
  uint64_t id = ss->id;
  session_close(c->srv, ss, "session.close");
  reply_ok(c, msgid, id);
  rearm(c->srv);
}

int dynqd__session_bind(dynqd_session_t *ss, dynqd_job_t *j, char *err, size_t errlen) {
  const dynq__graph_t *g = dynq__model_graph(ss->model);
  /* Batch size for symbolic dims: dim 0 of the first given input. */
  int64_t batch = 1;
  for (int i = 0; i < j->n_inputs; i++) {
    if (j->inputs[i].dtype != DYNQ_DT_INVALID && j->inputs[i].rank >= 1) {
      batch = j->inputs[i].dims[0];
      break;
    }
  }
  for (int k = 0; k < ss->n_bind; k++) {
    dynq__tensor_t *st = &ss->state[k];
    if (st->dtype == DYNQ_DT_INVALID) {
      const dynq__value_t *v = &g->values[g->inputs[ss->bind_in[k]]];
      int64_t dims[DYNQ_MAX_RANK];
      for (int d = 0; d < v->rank; d++) dims[d] = v->dims[d] < 0 ? batch : v->dims[d];
      int rc = dynq__tensor_alloc(st, v->dtype, v->rank, dims);
      if (rc != 0) {
        snprintf(err, errlen, "cannot allocate the initial state for '%s': %s", v->name,
                 dynq_strerror(rc));
        return rc;
      }
    }
    dynq__tensor_t *in = &j->inputs[ss->bind_in[k]];
    *in = *st;
    in->owned = 0;  /* a view: the session keeps the state until the swap */
  }
  j->sess_new = calloc((size_t)(ss->n_bind > 0 ? ss->n_bind : 1), sizeof(*j->sess_new));
  if (j->sess_new == NULL) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  j->session = ss;
  ss->refs++;
  ss->busy = 1;
  return 0;
}

void dynqd__session_job_done(dynqd_server_t *s, dynqd_job_t *j) {
  dynqd_session_t *ss = j->session;
  if (ss == NULL) return;
  ss->busy = 0;
  ss->last_ns = uv_hrtime();
  if (j->status == 0 && !j->skipped && j->sess_new != NULL && !ss->closed) {
    for (int k = 0; k < ss->n_bind; k++) {
      dynq__tensor_clear(&ss->state[k]);
      ss->state[k] = j->sess_new[k];
      memset(&j->sess_new[k], 0, sizeof(j->sess_new[k]));
    }
  }
  if (!ss->closed) arm_for(s, ss);
}

void dynqd__sessions_conn_closed(dynqd_conn_t *c) {
  dynqd_server_t *s = c->srv;
  int any = 0;
  for (dynqd_session_t *ss = s->sessions, *n; ss; ss = n) {
    n = ss->next;
    if (ss->owner == c) {
      session_close(s, ss, "connection closed");
      any = 1;
    }
  }
  if (any) rearm(s);
}

void dynqd__sessions_free(dynqd_server_t *s) {
  while (s->sessions != NULL) session_close(s, s->sessions, "exit");
  free(s->sess_tab);
  s->sess_tab = NULL;
  s->sess_tab_cap = 0;
}
