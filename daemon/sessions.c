/*
 * Sessions: streaming state kept server-side between infer calls.  A
 * session binds some model inputs to outputs: after each successful call
 * the bound outputs become the next call's bound inputs.  The state
 * machine is drawn in dynqd.h.  A session belongs to an opaque owner
 * token (the rpc layer passes its connection) unless detached.
 *
 * Everything here runs on the loop thread.  A worker running a session's
 * job reads the state tensors through the job's inputs (non-owning views;
 * the session is BUSY so nothing changes them) and leaves the new state in
 * its request's sess_new; the loop swaps it in when the request is back,
 * only on success.  Sessions live in one list, bounded by max_sessions, and
 * an id table beside it: a chunk stream of hundreds of sessions looks one
 * up per request, and walking the list cost ~1.5 % of dynqd's CPU at 400.
 *
 * With batching on for the model, a worker may run several sessions' jobs
 * as one (infer.c): each job's state views are concatenated along their
 * batch axis, and each job gets back its own slice of the new state in
 * sess_new, so nothing here changes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

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
  dynqd__shadow_sess_unref(ss->shadow);
  for (int i = 0; i < ss->n_bind; i++) dynq__tensor_clear(&ss->state[i]);
  free(ss->state);
  free(ss->bind_in);
  free(ss->bind_out);
  free(ss->model_name);
  dynqd__rows_clear(&ss->rows);
  dynq__model_unref(ss->model);
  free(ss);
  return NULL;
}

static void rearm(dynqd_sessions_t *s);

/* ---- id table ---- */

static size_t tab_slot(const dynqd_sessions_t *s, uint64_t id) {
  return (size_t)(id & (s->tab_cap - 1));  /* ids are random */
}

/* Grow to hold n sessions at one per slot; on no memory the old table
 * keeps working with longer chains (or the list is scanned). */
static void tab_reserve(dynqd_sessions_t *s, size_t n) {
  if (s->tab != NULL && n <= s->tab_cap) return;
  size_t cap = s->tab_cap ? s->tab_cap : 64;
  while (cap < n) cap *= 2;
  dynqd_session_t **t = calloc(cap, sizeof(*t));
  if (t == NULL) return;
  free(s->tab);
  s->tab = t;
  s->tab_cap = cap;
  for (dynqd_session_t *ss = s->list; ss; ss = ss->next) {
    size_t i = tab_slot(s, ss->id);
    ss->hnext = t[i];
    t[i] = ss;
  }
}

static void tab_remove(dynqd_sessions_t *s, dynqd_session_t *ss) {
  if (s->tab == NULL) return;
  dynqd_session_t **pp = &s->tab[tab_slot(s, ss->id)];
  while (*pp != NULL && *pp != ss) pp = &(*pp)->hnext;
  if (*pp != NULL) *pp = ss->hnext;
  ss->hnext = NULL;
}

static dynqd_session_t *lookup(dynqd_sessions_t *s, uint64_t id) {
  dynqd_session_t *ss = s->tab ? s->tab[tab_slot(s, id)] : s->list;
  for (; ss; ss = s->tab ? ss->hnext : ss->next)
    if (ss->id == id) return ss;
  return NULL;
}

/* Unlist and drop the list's ref; a running job keeps its own. */
static void session_close(dynqd_sessions_t *s, dynqd_session_t *ss, const char *why) {
  dynqd_session_t **pp = &s->list;
  while (*pp != NULL && *pp != ss) pp = &(*pp)->next;
  if (*pp == NULL) return;
  *pp = ss->next;
  ss->next = NULL;
  tab_remove(s, ss);
  ss->closed = 1;
  s->n--;
  if (ss->peer != NULL) ss->peer->sessions--;
  log_debug("session %llu closed (%s)", (unsigned long long)ss->id, why);
  dynqd__session_unref(ss);
}

static void on_idle_timer(uv_timer_t *t) {
  dynqd_sessions_t *s = t->data;
  uint64_t now = uv_hrtime();
  for (dynqd_session_t *ss = s->list, *n; ss; ss = n) {
    n = ss->next;
    if (!ss->busy && now - ss->last_ns >= ss->idle_ms * 1000000ull)
      session_close(s, ss, "idle timeout");
  }
  rearm(s);
}

/* Start the timer for the earliest idle expiry (busy sessions are re-armed
 * when their job comes back). */
static void rearm(dynqd_sessions_t *s) {
  if (!s->timer_init) {
    if (uv_timer_init(s->loop, &s->timer) != 0) return;
    s->timer.data = s;
    uv_unref((uv_handle_t *)&s->timer);  /* never keeps the loop alive */
    s->timer_init = 1;
  }
  if (uv_is_closing((uv_handle_t *)&s->timer)) return;  /* shutting down */
  uint64_t now = uv_hrtime(), best = UINT64_MAX;
  for (dynqd_session_t *ss = s->list; ss; ss = ss->next) {
    if (ss->busy) continue;
    uint64_t end = ss->last_ns + ss->idle_ms * 1000000ull;
    uint64_t left = end > now ? (end - now + 999999) / 1000000 : 0;
    if (left < best) best = left;
  }
  if (best == UINT64_MAX)
    uv_timer_stop(&s->timer);
  else
    uv_timer_start(&s->timer, on_idle_timer, best, 0);
}

/* ss just became idle (or was used) at last_ns: make sure the timer fires
 * by its expiry.  O(1), unlike rearm(): a timer that fires early (another
 * session was used meanwhile) just rescans and rearms exactly, so the timer
 * may only ever be due at or before the earliest idle expiry.  A full scan
 * per finished chunk cost ~3 % of dynqd's CPU with 400 streams. */
static void arm_for(dynqd_sessions_t *s, const dynqd_session_t *ss) {
  uv_timer_t *t = &s->timer;
  if (!s->timer_init || uv_is_closing((uv_handle_t *)t)) {
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
static int default_output_for(const dynq__model_sig_t *sig, const char *in) {
  size_t n = strlen(in);
  for (int o = 0; o < sig->n_outputs; o++) {
    const char *on = sig->outputs[o].name;
    if (name_is(on, in, n, "N") || name_is(on, in, n, "_out")) return o;
    if (n > 3 && strcmp(in + n - 3, "_in") == 0 && name_is(on, in, n - 3, "_out")) return o;
  }
  return -1;
}

/* A fresh id: 63 random bits (ids travel as msgpack ints read as int64),
 * never 0, never one in use. */
static uint64_t new_id(dynqd_sessions_t *s) {
  static uint64_t fallback;
  for (;;) {
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
      /* No entropy source: still unique, if guessable (logged once). */
      if (fallback == 0) log_warn("getrandom failed: session ids are not random");
      v = uv_hrtime() ^ (++fallback << 32);
    }
    v &= INT64_MAX;
    if (v != 0 && lookup(s, v) == NULL) return v;
  }
}

int dynqd__session_open(dynqd_sessions_t *s, const void *owner, dynqd_peer_t *peer,
                        int uid_cap, const dynqd_model_entry_t *e,
                        const dynqd_session_req_t *rq, dynqd_session_t **ret, char *err,
                        size_t errlen) {
  dynqd_session_t *ss = NULL;
  int rc;
  if (s->n >= max_sessions(s->cfg)) {
    snprintf(err, errlen, "session.open: %d sessions are open (limit max_sessions = %d); "
             "close some first", s->n, max_sessions(s->cfg));
    return DYNQ_ELIMIT;
  }
  if (uid_cap > 0 && peer != NULL && peer->sessions >= uid_cap) {
    snprintf(err, errlen, "session.open: uid %u has %d sessions open (limit "
             "max_sessions_per_uid = %d); close some first", (unsigned)peer->uid,
             peer->sessions, uid_cap);
    return DYNQ_ELIMIT;
  }
  uint64_t idle = idle_cap_ms(s->cfg);
  if (rq->idle_timeout_ms > 0 && (uint64_t)rq->idle_timeout_ms < idle)
    idle = (uint64_t)rq->idle_timeout_ms;  /* the config's value is the cap */

  const dynq__model_sig_t *sig = dynq__model_signature(e->model);
  ss = calloc(1, sizeof(*ss));
  if (ss == NULL) goto oom;
  int cap = sig->n_inputs > 0 ? sig->n_inputs : 1;
  ss->bind_in = calloc((size_t)cap, sizeof(int));
  ss->bind_out = calloc((size_t)cap, sizeof(int));
  ss->state = calloc((size_t)cap, sizeof(*ss->state));
  ss->model_name = strdup(e->name);
  if (!ss->bind_in || !ss->bind_out || !ss->state || !ss->model_name ||
      dynqd__rows_copy(&ss->rows, &e->rows, sig->n_outputs) != 0)
    goto oom;
  ss->model = dynq__model_ref(e->model);
  ss->version = e->version;
  ss->refs = 1;

  if (rq->n_bind >= 0) {
    for (int k = 0; k < rq->n_bind; k++) {
      const char *in = rq->bind_in_names[k], *out = rq->bind_out_names[k];
      int ii = dynq__model_input_index(e->model, in);
      int oi = dynq__model_output_index(e->model, out);
      if (ii < 0) {
        snprintf(err, errlen, "session.open: model '%s' has no input named '%s'", e->name, in);
        rc = DYNQ_ENOINPUT;
        goto fail;
      }
      if (oi < 0) {
        snprintf(err, errlen, "session.open: model '%s' has no output named '%s'", e->name,
                 out);
        rc = DYNQ_EPARAMS;
        goto fail;
      }
      for (int q = 0; q < ss->n_bind; q++) {
        if (ss->bind_in[q] == ii || ss->bind_out[q] == oi) {
          snprintf(err, errlen, "session.open: input '%s' or output '%s' bound twice", in,
                   out);
          rc = DYNQ_EPARAMS;
          goto fail;
        }
      }
      if (ss->n_bind >= cap) {  /* more pairs than inputs: one repeats */
        snprintf(err, errlen, "session.open: input '%s' bound twice", in);
        rc = DYNQ_EPARAMS;
        goto fail;
      }
      if (sig->inputs[ii].dtype != sig->outputs[oi].dtype) {
        snprintf(err, errlen, "session.open: input '%s' is %s but output '%s' is %s", in,
                 dynq__dtype_name(sig->inputs[ii].dtype), out,
                 dynq__dtype_name(sig->outputs[oi].dtype));
        rc = DYNQ_EDTYPE;
        goto fail;
      }
      ss->bind_in[ss->n_bind] = ii;
      ss->bind_out[ss->n_bind] = oi;
      ss->n_bind++;
    }
  } else if (sig->n_state > 0) {
    /* pairs declared at import (dynq-quantize --state IN=OUT); the loader
     * checked they join a graph input to a graph output of its dtype */
    for (int i = 0; i < sig->n_inputs && ss->n_bind < cap; i++) {
      if (sig->inputs[i].state_peer < 0) continue;
      ss->bind_in[ss->n_bind] = i;
      ss->bind_out[ss->n_bind] = sig->inputs[i].state_peer;
      ss->n_bind++;
    }
  } else {
    for (int i = 0; i < sig->n_inputs; i++) {
      const dynq__io_t *v = &sig->inputs[i];
      int oi = default_output_for(sig, v->name);
      if (oi < 0 || sig->outputs[oi].dtype != v->dtype) continue;
      int dup = 0;
      for (int q = 0; q < ss->n_bind; q++) dup |= ss->bind_out[q] == oi;
      if (dup) continue;
      ss->bind_in[ss->n_bind] = i;
      ss->bind_out[ss->n_bind] = oi;
      ss->n_bind++;
    }
    if (ss->n_bind == 0) {
      snprintf(err, errlen, "session.open: model '%s' declares no state pairs and no "
               "input/output names pair up (x -> xN, x -> x_out); pass "
               "params.bindings", e->name);
      rc = DYNQ_EPARAMS;
      goto fail;
    }
  }
  for (int k = 0; k < ss->n_bind; k++) {
    if (sig->inputs[ss->bind_in[k]].rank < 0) {
      snprintf(err, errlen, "session.open: input '%s' has no declared rank, so its "
               "initial state cannot be sized", sig->inputs[ss->bind_in[k]].name);
      rc = DYNQ_ESHAPE;
      goto fail;
    }
  }
  ss->id = new_id(s);
  ss->owner = rq->detached ? NULL : owner;
  ss->peer = peer;
  ss->uid = peer != NULL ? peer->uid : 0;
  if (peer != NULL) peer->sessions++;
  ss->idle_ms = idle;
  ss->last_ns = uv_hrtime();
  ss->next = s->list;
  s->list = ss;
  s->n++;
  tab_reserve(s, (size_t)s->n);  /* rehashes the list, ss included, when it grows */
  if (s->tab != NULL && lookup(s, ss->id) != ss) {
    size_t i = tab_slot(s, ss->id);
    ss->hnext = s->tab[i];
    s->tab[i] = ss;
  }
  log_debug("session %llu on '%s'%s", (unsigned long long)ss->id, e->name,
            rq->detached ? " (detached)" : "");
  arm_for(s, ss);
  *ret = ss;
  return 0;

oom:
  snprintf(err, errlen, "session.open: out of memory");
  rc = -ENOMEM;
fail:
  if (ss != NULL) {
    ss->refs = 1;
    dynqd__session_unref(ss);
  }
  return rc;
}

dynqd_session_t *dynqd__session_find(dynqd_sessions_t *s, const void *owner, uint32_t uid,
                                     uint64_t id) {
  dynqd_session_t *ss = lookup(s, id);
  if (ss != NULL && (ss->owner == owner || (ss->owner == NULL && ss->uid == uid))) return ss;
  return NULL;
}

int dynqd__session_reset(dynqd_sessions_t *s, dynqd_session_t *ss) {
  if (ss->busy) return DYNQ_EBUSY;
  /* Back to "not started": the next call sizes fresh zeros.  A shadow
   * twin cannot follow (its runs may still be pending): it stops. */
  dynqd__shadow_sess_abandon(ss->shadow);
  for (int k = 0; k < ss->n_bind; k++) dynq__tensor_clear(&ss->state[k]);
  memset(ss->state, 0, (size_t)ss->n_bind * sizeof(*ss->state));
  ss->last_ns = uv_hrtime();
  arm_for(s, ss);
  return 0;
}

void dynqd__session_close(dynqd_sessions_t *s, dynqd_session_t *ss, const char *why) {
  session_close(s, ss, why);
  rearm(s);
}

int dynqd__session_binds_input(const dynqd_session_t *ss, int k) {
  for (int q = 0; q < ss->n_bind; q++)
    if (ss->bind_in[q] == k) return 1;
  return 0;
}

int dynqd__session_bind(dynqd_session_t *ss, dynq__tensor_t *inputs, int n_in,
                        dynq__tensor_t **ret_new, char *err, size_t errlen) {
  const dynq__model_sig_t *sig = dynq__model_signature(ss->model);
  /* Batch size for symbolic dims: dim 0 of the first given input. */
  int64_t batch = 1;
  for (int i = 0; i < n_in; i++) {
    if (inputs[i].dtype != DYNQ_DT_INVALID && inputs[i].rank >= 1) {
      batch = inputs[i].dims[0];
      break;
    }
  }
  for (int k = 0; k < ss->n_bind; k++) {
    dynq__tensor_t *st = &ss->state[k];
    if (st->dtype == DYNQ_DT_INVALID) {
      const dynq__io_t *v = &sig->inputs[ss->bind_in[k]];
      int64_t dims[DYNQ_MAX_RANK];
      for (int d = 0; d < v->rank; d++) dims[d] = v->dims[d] < 0 ? batch : v->dims[d];
      int rc = dynq__tensor_alloc(st, v->dtype, v->rank, dims);
      if (rc != 0) {
        snprintf(err, errlen, "cannot allocate the initial state for '%s': %s", v->name,
                 dynq_strerror(rc));
        return rc;
      }
    }
    dynq__tensor_t *in = &inputs[ss->bind_in[k]];
    *in = *st;
    in->owned = 0;  /* a view: the session keeps the state until the swap */
  }
  dynq__tensor_t *nw = calloc((size_t)(ss->n_bind > 0 ? ss->n_bind : 1), sizeof(*nw));
  if (nw == NULL) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  *ret_new = nw;
  ss->refs++;
  ss->busy = 1;
  return 0;
}

void dynqd__session_done(dynqd_sessions_t *s, dynqd_session_t *ss, int ok,
                         dynq__tensor_t *next) {
  ss->busy = 0;
  ss->last_ns = uv_hrtime();
  if (ok && next != NULL && !ss->closed) {
    for (int k = 0; k < ss->n_bind; k++) {
      dynq__tensor_clear(&ss->state[k]);
      ss->state[k] = next[k];
      memset(&next[k], 0, sizeof(next[k]));
    }
  }
  if (!ss->closed) arm_for(s, ss);
}

void dynqd__sessions_owner_gone(dynqd_sessions_t *s, const void *owner) {
  int any = 0;
  for (dynqd_session_t *ss = s->list, *n; ss; ss = n) {
    n = ss->next;
    if (ss->owner == owner) {
      session_close(s, ss, "connection closed");
      any = 1;
    }
  }
  if (any) rearm(s);
}

void dynqd__sessions_free(dynqd_sessions_t *s) {
  while (s->list != NULL) session_close(s, s->list, "exit");
  free(s->tab);
  s->tab = NULL;
  s->tab_cap = 0;
}
