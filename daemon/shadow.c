/*
 * Shadow FP32 telemetry (dynqd.h: "shadow"): a sampled INT8 request is run
 * again on the FP32 path after its answer went out, and the difference is
 * counted per model (relL2 and max-abs histograms, decision changes, an
 * alert threshold).  A service: no connection, no msgpack.
 *
 * Spare capacity only: the sample is taken only while the scheduler has
 * nothing queued, at most DYNQD_SHADOW_PENDING runs wait, and the one
 * shadow thread runs at SCHED_IDLE (nice 19 if that is refused), so the
 * kernel gives it only CPU time no worker wants.  The thread never touches
 * the loop: finished runs wait in `done` until the loop polls.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "dynqd.h"

struct dynqd_shadow_sess {
  atomic_int refs;             /* the session + pending shadow runs */
  atomic_int abandoned;
  int n_bind;
  int *bind_in, *bind_out;     /* owned copies of the session's bindings */
  dynq__tensor_t *state;       /* owned [n_bind]; the shadow thread's alone
                                  (dtype INVALID until the first step) */
};

struct dynqd_shadow_job {
  dynqd_shadow_job_t *next;
  dynqd_shadow_sess_t *twin;   /* one ref, or NULL for a plain request */
  dynqd_mstats_t *ms;          /* loop-owned record; stable pointer */
  dynq__model_t *model;        /* one ref */
  dynq__tensor_t *in, *int8;   /* owned, graph order */
  int n_in, n_out;
  int64_t max_value_bytes;     /* the config's, when submitted */
  int max_run_ms;
  /* the thread's result */
  int status;                  /* 0 compared; else the FP32 run failed */
  double rel_l2, max_abs;      /* largest over the float32 outputs */
  int decision_changed;
};

void dynqd__shadow_sess_unref(dynqd_shadow_sess_t *t) {
  if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1) return;
  for (int k = 0; k < t->n_bind; k++) dynq__tensor_clear(&t->state[k]);
  free(t->state);
  free(t->bind_in);
  free(t->bind_out);
  free(t);
}

int dynqd__shadow_sess_live(const dynqd_shadow_sess_t *t) {
  return t != NULL && !atomic_load(&t->abandoned);
}

void dynqd__shadow_sess_abandon(dynqd_shadow_sess_t *t) {
  if (t != NULL) atomic_store(&t->abandoned, 1);
}

static void job_free(dynqd_shadow_job_t *j) {
  if (j == NULL) return;
  dynqd__shadow_sess_unref(j->twin);
  for (int i = 0; i < j->n_in; i++) dynq__tensor_clear(&j->in[i]);
  for (int i = 0; i < j->n_out; i++) dynq__tensor_clear(&j->int8[i]);
  free(j->in);
  free(j->int8);
  dynq__model_unref(j->model);
  free(j);
}

/* Compare one output: the INT8 answer x against the FP32 run r. */
static void compare(dynqd_shadow_job_t *j, const dynq__tensor_t *x, const dynq__tensor_t *r) {
  if (x->dtype != DYNQ_DT_F32 || r->dtype != DYNQ_DT_F32) return;
  int64_t n = dynq__tensor_numel(x);
  if (n != dynq__tensor_numel(r) || n <= 0) return;
  const float *a = x->data, *b = r->data;
  double d2 = 0, r2 = 0, mx = 0;
  int nan = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)a[i] - (double)b[i];
    if (!isfinite(d)) {
      nan = 1;
      continue;
    }
    d2 += d * d;
    r2 += (double)b[i] * b[i];
    if (fabs(d) > mx) mx = fabs(d);
  }
  double rel = nan ? INFINITY : d2 == 0 ? 0 : r2 > 0 ? sqrt(d2 / r2) : INFINITY;
  if (!(rel <= j->rel_l2)) j->rel_l2 = rel;
  if (nan) mx = INFINITY;
  if (!(mx <= j->max_abs)) j->max_abs = mx;
  /* decisions: arg-max per row of the last axis, or a 0.5 threshold on
   * single values (probabilities) */
  int64_t row = x->rank > 0 ? x->dims[x->rank - 1] : 1;
  if (row > 1) {
    for (int64_t s = 0; s + row <= n; s += row) {
      int64_t ia = s, ib = s;
      for (int64_t i = s + 1; i < s + row; i++) {
        if (a[i] > a[ia]) ia = i;
        if (b[i] > b[ib]) ib = i;
      }
      if (ia != ib) j->decision_changed = 1;
    }
  } else {
    for (int64_t i = 0; i < n; i++)
      if ((a[i] >= 0.5f) != (b[i] >= 0.5f)) j->decision_changed = 1;
  }
}

/* A twin's state into the bound inputs (zeros of the declared shape on
 * its first step, symbolic dims = dim 0 of the first given input, as
 * dynqd__session_bind sizes them). */
static int bind_twin(dynqd_shadow_job_t *j, const dynq__model_sig_t *sig) {
  dynqd_shadow_sess_t *t = j->twin;
  int64_t batch = 1;
  for (int i = 0; i < j->n_in; i++) {
    int bound = 0;
    for (int k = 0; k < t->n_bind; k++) bound |= t->bind_in[k] == i;
    if (!bound && j->in[i].dtype != DYNQ_DT_INVALID && j->in[i].rank >= 1) {
      batch = j->in[i].dims[0];
      break;
    }
  }
  for (int k = 0; k < t->n_bind; k++) {
    if (t->state[k].dtype == DYNQ_DT_INVALID) {
      const dynq__io_t *v = &sig->inputs[t->bind_in[k]];
      int64_t dims[DYNQ_MAX_RANK];
      for (int d = 0; d < v->rank; d++) dims[d] = v->dims[d] < 0 ? batch : v->dims[d];
      if (dynq__tensor_alloc(&t->state[k], v->dtype, v->rank, dims) != 0) return -ENOMEM;
    }
    j->in[t->bind_in[k]] = t->state[k];
    j->in[t->bind_in[k]].owned = 0;
  }
  return 0;
}

static void run_job(dynqd_shadow_job_t *j) {
  const dynq__model_sig_t *sig = dynq__model_signature(j->model);
  dynqd_shadow_sess_t *t = j->twin;
  if (t != NULL && atomic_load(&t->abandoned)) {
    j->status = DYNQ_ECANCELED;
    return;
  }
  dynq__tensor_t *out = calloc((size_t)sig->n_outputs + 1, sizeof(*out));
  char err[256];
  /* the INT8 run's limits: a shadow run must not hold its thread either */
  dynq__run_stop_t stop = {0};
  dynq__run_opts_t o = {.precision = DYNQ_PRECISION_FP32, .threads = 1,
                        .max_value_bytes = j->max_value_bytes};
  if (j->max_run_ms > 0) {
    dynq__run_stop_cap(&stop, j->max_run_ms);
    o.stop = &stop;
  }
  if (out == NULL || (t != NULL && bind_twin(j, sig) != 0)) {
    free(out);
    j->status = -ENOMEM;
    if (t != NULL) atomic_store(&t->abandoned, 1);
    return;
  }
  j->status = dynq__model_run(j->model, &o, j->in, out, err, sizeof(err));
  if (t != NULL) {
    /* the views of the twin's state must not be freed with the inputs */
    for (int k = 0; k < t->n_bind; k++) memset(&j->in[t->bind_in[k]], 0, sizeof(j->in[0]));
    if (j->status != 0) atomic_store(&t->abandoned, 1);
  }
  if (j->status == 0) {
    for (int i = 0; i < sig->n_outputs && i < j->n_out; i++) {
      int bound = 0;
      for (int k = 0; t != NULL && k < t->n_bind; k++) bound |= t->bind_out[k] == i;
      if (!bound) compare(j, &j->int8[i], &out[i]);
    }
    for (int k = 0; t != NULL && k < t->n_bind; k++) {
      dynq__tensor_clear(&t->state[k]);
      t->state[k] = out[t->bind_out[k]];
      memset(&out[t->bind_out[k]], 0, sizeof(out[0]));
    }
    for (int i = 0; i < sig->n_outputs; i++) dynq__tensor_clear(&out[i]);
  }
  free(out);
}

static void *shadow_main(void *arg) {
  dynqd_shadow_t *sh = arg;
  /* idle priority: only CPU time that nothing else wants */
  struct sched_param sp = {0};
  if (sched_setscheduler(0, SCHED_IDLE, &sp) != 0)
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
  pthread_mutex_lock(&sh->mu);
  for (;;) {
    while (!sh->stop && sh->pending == NULL) pthread_cond_wait(&sh->cv, &sh->mu);
    if (sh->stop) break;
    dynqd_shadow_job_t *j = sh->pending;
    sh->pending = j->next;
    sh->n_pending--;
    pthread_mutex_unlock(&sh->mu);
    run_job(j);
    /* the inputs are not needed any more: free them here, off the loop */
    for (int i = 0; i < j->n_in; i++) dynq__tensor_clear(&j->in[i]);
    for (int i = 0; i < j->n_out; i++) dynq__tensor_clear(&j->int8[i]);
    pthread_mutex_lock(&sh->mu);
    j->next = sh->done;
    sh->done = j;
  }
  pthread_mutex_unlock(&sh->mu);
  return NULL;
}

int dynqd__shadow_start(dynqd_shadow_t *sh, const dynqd_config_t *cfg, dynqd_sched_t *sched) {
  memset(sh, 0, sizeof(*sh));
  sh->cfg = cfg;
  sh->sched = sched;
  pthread_mutex_init(&sh->mu, NULL);
  pthread_cond_init(&sh->cv, NULL);
  int rc = pthread_create(&sh->thread, NULL, shadow_main, sh);
  if (rc != 0) return -rc;
  sh->started = 1;
  return 0;
}

void dynqd__shadow_stop(dynqd_shadow_t *sh) {
  if (!sh->started) return;
  pthread_mutex_lock(&sh->mu);
  sh->stop = 1;
  pthread_cond_signal(&sh->cv);
  pthread_mutex_unlock(&sh->mu);
  pthread_join(sh->thread, NULL);
  sh->started = 0;
  for (dynqd_shadow_job_t *j = sh->pending, *n; j != NULL; j = n) {
    n = j->next;
    job_free(j);
  }
  for (dynqd_shadow_job_t *j = sh->done, *n; j != NULL; j = n) {
    n = j->next;
    job_free(j);
  }
  sh->pending = sh->done = NULL;
  pthread_mutex_destroy(&sh->mu);
  pthread_cond_destroy(&sh->cv);
}

double dynqd__shadow_rate(const dynqd_shadow_t *sh, const dynqd_mstats_t *ms) {
  if (ms->shadow.rate_set) return ms->shadow.rate;
  const dynqd_batch_rule_t *r = dynqd__batch_rule(sh->cfg, ms->name);
  if (r != NULL && r->shadow_rate >= 0) return r->shadow_rate;
  return sh->cfg->shadow_rate;
}

int dynqd__shadow_sample(dynqd_shadow_t *sh, dynqd_mstats_t *ms) {
  if (ms == NULL || !sh->started) return 0;
  double rate = dynqd__shadow_rate(sh, ms);
  if (!(rate > 0)) return 0;
  /* deterministic: exactly one request in 1/rate, evenly spaced */
  ms->shadow.acc += rate;
  if (ms->shadow.acc < 1.0 - 1e-9) return 0;
  ms->shadow.acc -= 1.0;
  if (ms->shadow.acc < 0) ms->shadow.acc = 0;
  return 1;
}

dynqd_shadow_sess_t *dynqd__shadow_sess_open(dynqd_shadow_t *sh, dynqd_mstats_t *ms,
                                             int n_bind, const int *bind_in,
                                             const int *bind_out) {
  if (n_bind <= 0 || !dynqd__shadow_sample(sh, ms)) return NULL;
  dynqd_shadow_sess_t *t = calloc(1, sizeof(*t));
  if (t == NULL) return NULL;
  atomic_init(&t->refs, 1);
  atomic_init(&t->abandoned, 0);
  t->n_bind = n_bind;
  t->bind_in = malloc((size_t)n_bind * sizeof(int));
  t->bind_out = malloc((size_t)n_bind * sizeof(int));
  t->state = calloc((size_t)n_bind, sizeof(*t->state));
  if (t->bind_in == NULL || t->bind_out == NULL || t->state == NULL) {
    dynqd__shadow_sess_unref(t);
    return NULL;
  }
  memcpy(t->bind_in, bind_in, (size_t)n_bind * sizeof(int));
  memcpy(t->bind_out, bind_out, (size_t)n_bind * sizeof(int));
  return t;
}

static void submit(dynqd_shadow_t *sh, dynqd_mstats_t *ms, dynq__model_t *m,
                   dynqd_shadow_sess_t *twin, dynq__tensor_t *inputs, int n_in,
                   dynq__tensor_t *int8, int n_out) {
  dynqd_shadow_job_t *j = calloc(1, sizeof(*j));
  if (j != NULL) {
    j->ms = ms;
    j->model = dynq__model_ref(m);
    j->max_value_bytes = dynqd__value_cap(sh->cfg);
    j->max_run_ms = sh->cfg->max_run_ms;
    if (twin != NULL) {
      atomic_fetch_add(&twin->refs, 1);
      j->twin = twin;
    }
  }
  if (j == NULL) {
    dynqd__shadow_sess_abandon(twin);
    for (int i = 0; i < n_in; i++) dynq__tensor_clear(&inputs[i]);
    for (int i = 0; i < n_out; i++) dynq__tensor_clear(&int8[i]);
    free(inputs);
    free(int8);
    ms->shadow.dropped++;
    sh->dropped_total++;
    return;
  }
  j->in = inputs;
  j->n_in = n_in;
  j->int8 = int8;
  j->n_out = n_out;
  /* spare capacity only: anything waiting for a worker, or a shadow run
   * already pending, and this sample is dropped */
  int busy = dynqd__sched_queued(sh->sched) > 0 || sh->sched->plen > 0;
  pthread_mutex_lock(&sh->mu);
  if (busy || sh->n_pending >= DYNQD_SHADOW_PENDING) {
    pthread_mutex_unlock(&sh->mu);
    dynqd__shadow_sess_abandon(twin);
    job_free(j);
    ms->shadow.dropped++;
    sh->dropped_total++;
    return;
  }
  dynqd_shadow_job_t **tail = &sh->pending;
  while (*tail != NULL) tail = &(*tail)->next;
  *tail = j;
  sh->n_pending++;
  pthread_cond_signal(&sh->cv);
  pthread_mutex_unlock(&sh->mu);
}

void dynqd__shadow_submit(dynqd_shadow_t *sh, dynqd_mstats_t *ms, dynq__model_t *m,
                          dynq__tensor_t *inputs, int n_in, dynq__tensor_t *int8, int n_out) {
  submit(sh, ms, m, NULL, inputs, n_in, int8, n_out);
}

void dynqd__shadow_submit_step(dynqd_shadow_t *sh, dynqd_mstats_t *ms, dynq__model_t *m,
                               dynqd_shadow_sess_t *twin, dynq__tensor_t *inputs, int n_in,
                               dynq__tensor_t *int8, int n_out) {
  /* the bound inputs were views of the session's INT8 state: not ours */
  for (int k = 0; k < twin->n_bind; k++)
    if (twin->bind_in[k] < n_in) memset(&inputs[twin->bind_in[k]], 0, sizeof(inputs[0]));
  submit(sh, ms, m, twin, inputs, n_in, int8, n_out);
}

static uint64_t ppm(double v) {
  if (!(v >= 0)) return UINT64_MAX / 2; /* NaN: the top bucket */
  double p = v * 1e6;
  return p > 1e15 ? (uint64_t)1e15 : (uint64_t)(p + 0.5);
}

void dynqd__shadow_collect(dynqd_shadow_t *sh) {
  if (!sh->started) return;
  pthread_mutex_lock(&sh->mu);
  dynqd_shadow_job_t *list = sh->done;
  sh->done = NULL;
  pthread_mutex_unlock(&sh->mu);
  if (list == NULL) return;  /* every loop iteration: no clock read for nothing */
  uint64_t now = uv_hrtime();
  for (dynqd_shadow_job_t *j = list, *n; j != NULL; j = n) {
    n = j->next;
    dynqd_shadow_stats_t *st = &j->ms->shadow;
    if (j->status != 0) {
      st->dropped++;
      sh->dropped_total++;
    } else {
      st->runs++;
      sh->runs_total++;
      dynqd__hist_add(&st->rel_l2_ppm, ppm(j->rel_l2));
      dynqd__hist_add(&st->max_abs_ppm, ppm(j->max_abs));
      if (j->decision_changed) {
        st->decisions_changed++;
        sh->decisions_total++;
      }
      double alert = sh->cfg->shadow_alert;
      if (alert > 0 && !(j->rel_l2 <= alert)) {
        st->alerts++;
        if (now >= st->warn_until_ns)  /* once per window */
          log_warn("model '%s': INT8 answer differs from FP32 by relL2 %.4g (max |d| %.4g), "
                   "above shadow_alert %g; next report in %d s at the earliest",
                   j->ms->name, j->rel_l2, j->max_abs, alert, sh->cfg->shadow_window_s);
        if (now >= st->warn_until_ns || j->rel_l2 > st->warn_value) st->warn_value = j->rel_l2;
        if (now >= st->warn_until_ns)
          st->warn_until_ns = now + (uint64_t)sh->cfg->shadow_window_s * 1000000000ull;
      }
    }
    job_free(j);
  }
}
