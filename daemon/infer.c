/*
 * Running infer requests on a worker: alone, or merged with like requests
 * (dynamic batching: the scheduler forms the batch, this file merges and
 * splits the tensors), and the batch-axis rule.
 *
 * Merging: requests for the same model whose inputs differ only along
 * their batch axis are concatenated along those axes, run once, and every
 * output is split back along its own axis.  Session requests batch too:
 * each session's state is one slice of the merged state input, and its
 * slice of the new state goes back to it.
 *
 * The batch axis of each input and output (dynqd__batch_axes, on the loop:
 * once per model version for plain requests, the registry's plan; per
 * request for a session's):
 *   1. `[batch.MODEL] axes = NAME:AXIS,...` when the name is listed;
 *   2. an input: its first dimension declared symbolic (-1), else 0
 *      (Silero: input[batch, samples] -> 0, state[2, batch, 128] -> 1);
 *   3. an output bound to a session input: that input's axis (the state
 *      it becomes must split the way it was merged);
 *   4. another output: its only symbolic dimension, or 0 when it declares
 *      none or no rank; with several symbolic dims it is ambiguous, and
 *      the request is not batched unless every input batches on axis 0.
 * A listed name that the model lacks, or an axis past a declared rank, is
 * refused (EPARAMS naming the key): a wrong axis would split wrong rows.
 *
 * Why the results are bit-identical to unbatched runs: activations are
 * quantized per row (each row's scale and zero point come from that row
 * only; per-patch for Conv) and the integer GEMM is exact, so a row's
 * result does not depend on its neighbours (tests/test-batch.c compares
 * the bits, Silero included), provided the model does not look across the
 * axis: the row check (rowcheck.c) measures that at load, and a model
 * that fails it is never merged.  Requests that could break that are never
 * batched: per-tensor models, fp32 precision and outputs_shm (the decoder
 * leaves axes NULL).  If a merged run fails, or an output's size along
 * its axis is not the summed batch, every request runs alone instead, so
 * each gets exactly its own answer.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dynq/errors.h"
#include "dynqd.h"

static int first_symbolic(const dynq__io_t *v) {
  for (int d = 0; d < v->rank; d++)
    if (v->dims[d] < 0) return d;
  return -1;
}

int dynqd__batch_axes(const dynq__model_sig_t *sig, const dynqd_batch_rule_t *rule,
                      const dynqd_session_t *ss, int8_t *axes, char *err, size_t errlen) {
  int ni = sig->n_inputs, no = sig->n_outputs;
  for (int k = 0; k < ni + no; k++) axes[k] = -1;
  /* 1. the config's names */
  for (int a = 0; rule != NULL && a < rule->n_axes; a++) {
    int hit = -1;
    for (int k = 0; k < ni + no && hit < 0; k++) {
      const dynq__io_t *v = k < ni ? &sig->inputs[k] : &sig->outputs[k - ni];
      if (strcmp(v->name, rule->axis_names[a]) == 0) hit = k;
    }
    if (hit < 0) {
      snprintf(err, errlen, "[batch.%s] axes names '%.64s', which is neither an input nor "
               "an output of the model", rule->model, rule->axis_names[a]);
      return DYNQ_EPARAMS;
    }
    const dynq__io_t *v = hit < ni ? &sig->inputs[hit] : &sig->outputs[hit - ni];
    if (v->rank >= 0 && rule->axis_vals[a] >= (v->rank > 0 ? v->rank : 1)) {
      snprintf(err, errlen, "[batch.%s] axes gives '%.64s' axis %d, but it has rank %d",
               rule->model, v->name, rule->axis_vals[a], v->rank);
      return DYNQ_EPARAMS;
    }
    axes[hit] = (int8_t)rule->axis_vals[a];
  }
  /* 2. inputs: first symbolic dim, else 0 */
  int all_zero = 1;
  for (int i = 0; i < ni; i++) {
    if (axes[i] < 0) {
      int d = first_symbolic(&sig->inputs[i]);
      axes[i] = (int8_t)(d < 0 ? 0 : d);
    }
    all_zero &= axes[i] == 0;
  }
  /* 3. outputs bound to a session input: that input's axis */
  for (int k = 0; ss != NULL && k < ss->n_bind; k++)
    if (axes[ni + ss->bind_out[k]] < 0) axes[ni + ss->bind_out[k]] = axes[ss->bind_in[k]];
  /* 4. other outputs: the only symbolic dim */
  for (int o = 0; o < no; o++) {
    if (axes[ni + o] >= 0) continue;
    const dynq__io_t *v = &sig->outputs[o];
    int d = first_symbolic(v), more = 0;
    for (int e = d + 1; d >= 0 && e < v->rank; e++) more |= v->dims[e] < 0;
    if (more && !all_zero) {
      snprintf(err, errlen, "output '%.64s' declares several symbolic dimensions, so its "
               "batch axis is ambiguous (set [batch.MODEL] axes)", v->name);
      return DYNQ_ESHAPE;  /* not a request error: the caller runs it unbatched */
    }
    axes[ni + o] = (int8_t)(d < 0 || more ? 0 : d);
  }
  return 0;
}

/* Rows of a request along the batch axes: every input must agree; -1 if not. */
static int64_t job_rows(const dynqd_infer_t *j) {
  int64_t rows = -1;
  for (int i = 0; i < j->n_inputs; i++) {
    const dynq__tensor_t *x = &j->inputs[i];
    if (x->rank <= j->axes[i]) return -1;
    int64_t r = x->dims[j->axes[i]];
    if (rows >= 0 && r != rows) return -1;
    rows = r;
  }
  return rows;
}

/* b may run in one batch with a (same model, options and axes, same input
 * dtypes and dims except along the batch axis). */
int dynqd__infer_compatible(const dynqd_infer_t *a, const dynqd_infer_t *b) {
  if (b->model != a->model || b->precision != a->precision ||
      b->job.batch_max != a->job.batch_max || a->axes == NULL)
    return 0;
  if (b->out_shm != NULL || b->n_inputs != a->n_inputs || b->axes == NULL) return 0;
  int n_ax = a->n_inputs + dynq__model_signature(a->model)->n_outputs;
  /* a few bytes, compared per queued candidate: no libc call */
  for (int k = 0; k < n_ax; k++)
    if (a->axes[k] != b->axes[k]) return 0;
  if (job_rows(b) < 0) return 0;
  for (int i = 0; i < a->n_inputs; i++) {
    const dynq__tensor_t *x = &a->inputs[i], *y = &b->inputs[i];
    if (x->dtype != y->dtype || x->rank != y->rank) return 0;
    for (int d = 0; d < x->rank; d++)
      if (d != a->axes[i] && x->dims[d] != y->dims[d]) return 0;
  }
  return 1;
}

/* Rows [r0, r0 + rows) of t along axis into an owned tensor. */
static int slice_rows(const dynq__tensor_t *t, int axis, int64_t r0, int64_t rows,
                      dynq__tensor_t *ret) {
  int64_t dims[DYNQ_MAX_RANK];
  memcpy(dims, t->dims, sizeof(dims));
  dims[axis] = rows;
  int rc = dynq__tensor_alloc_uninit(ret, t->dtype, t->rank, dims);
  if (rc != 0) return rc;
  size_t outer, inner;
  dynqd__split_shape(t, axis, &outer, &inner);
  size_t chunk = (size_t)rows * inner, total = (size_t)t->dims[axis] * inner;
  if (chunk == 0) return 0;
  for (size_t o = 0; o < outer; o++)
    memcpy((uint8_t *)ret->data + o * chunk,
           (const uint8_t *)t->data + o * total + (size_t)r0 * inner, chunk);
  return 0;
}

/* Write outputs redirected by outputs_shm into their regions; 0 or an
 * error code with msg set (then nothing is promised about the region). */
static int write_shm_outputs(const dynqd_infer_t *x, char *msg, size_t msglen) {
  const dynq__model_sig_t *sig = dynq__model_signature(x->model);
  for (int i = 0; i < sig->n_outputs; i++) {
    const dynqd_shm_ref_t *r = &x->out_shm[i];
    if (r->region == NULL) continue;
    size_t nb = dynq__tensor_nbytes(&x->out[i]);
    if (r->size != nb) {
      snprintf(msg, msglen, "output '%s' is %zu bytes but its outputs_shm reference "
               "holds %llu", sig->outputs[i].name, nb,
               (unsigned long long)r->size);
      return DYNQ_EDATA;
    }
  }
  for (int i = 0; i < sig->n_outputs; i++) {
    const dynqd_shm_ref_t *r = &x->out_shm[i];
    if (r->region != NULL && r->size > 0)
      memcpy(r->region->base + r->offset, x->out[i].data, (size_t)r->size);
  }
  return 0;
}

static void clear_out(dynqd_infer_t *x) {
  if (x->out == NULL) return;
  int no = dynq__model_signature(x->model)->n_outputs;
  for (int i = 0; i < no; i++) dynq__tensor_clear(&x->out[i]);
  if (!x->out_borrowed) free(x->out);
  x->out = NULL;
  x->out_borrowed = 0;
}

/* The run's result: x->out (when rc == 0) goes to the shm regions asked
 * for; status and err say how it went. */
static void finish(dynqd_infer_t *x, int rc, const char *err) {
  if (rc == 0 && x->out_shm != NULL)
    rc = write_shm_outputs(x, x->err, sizeof(x->err));
  else if (rc != 0)
    snprintf(x->err, sizeof(x->err), "%s", err && err[0] ? err : dynq_strerror(rc));
  x->status = rc;
  if (rc != 0) clear_out(x);
}

/* The inputs are no longer needed (unless a shadow run will read them):
 * give the memory of those that own theirs back early.  Views (into the
 * request's block, a session's state, shm) are left for the loop to
 * clear: the worker writing into the inputs array would share cache lines
 * with what the loop allocates next to it. */
static void release_inputs(dynqd_infer_t *x) {
  for (int i = 0; i < x->n_inputs && !x->keep_inputs; i++)
    if (x->inputs[i].owned) dynq__tensor_clear(&x->inputs[i]);
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* When x's run must stop (dynq__run_opts_t.stop): after cap_ms (0: never),
 * and for a request run alone (own) at its deadline or once its
 * connection is gone.  NULL when nothing applies. */
static const dynq__run_stop_t *stop_init(dynq__run_stop_t *s, const dynqd_infer_t *x, int own,
                                         int64_t cap_ms) {
  memset(s, 0, sizeof(*s));
  if (own) {
    s->cancel = x->job.cancel;
    s->deadline_ns = x->job.deadline_ns;
  }
  if (s->cancel == NULL && s->deadline_ns == 0 && cap_ms <= 0) return NULL;
  dynq__run_stop_cap(s, cap_ms);
  return s;
}

/*
 * Runs on the loop.  The loop runs a request itself only when its model's
 * measured cost per input element predicts a few tens of microseconds
 * (inline_max_us), and every connection waits while it does.  A model
 * whose cost does not follow its input's size (a Range or an Expand sized
 * by an input's value, an Einsum over many axes) can make a 4-byte
 * request run for as long as max_run_ms allows.  So a run on the loop
 * gets caps of its own: LOOP_CAP_FACTOR times its predicted time (at
 * least LOOP_CAP_MIN_MS; the stop clock ticks every few ms) and
 * LOOP_VALUE_BYTES per request for any one value it computes (writing
 * that many bytes alone takes far longer than the prediction).  A run
 * over either stops with ELIMIT, and instead of being answered is marked
 * job.requeue: its inputs and session are as they were, and the
 * scheduler hands it to a worker, which runs it under the config's own
 * limits (an ELIMIT there is the request's answer).
 */
#define LOOP_CAP_MIN_MS 2
#define LOOP_CAP_FACTOR 20
#define LOOP_VALUE_BYTES ((int64_t)4 << 20)

/* The run-time cap (ms, 0: none) and value cap (bytes) for a run of n
 * requests predicted to cost cost_ns in all; on_loop: the loop runs it. */
static void run_caps(const dynqd_infer_t *x, int on_loop, int64_t cost_ns, int n,
                     int64_t *cap_ms, int64_t *value_bytes) {
  *cap_ms = x->max_run_ms;
  *value_bytes = x->max_value_bytes;
  if (!on_loop) return;
  int64_t ms = cost_ns > 0 ? (cost_ns * LOOP_CAP_FACTOR + 999999) / 1000000 : 0;
  if (ms < LOOP_CAP_MIN_MS) ms = LOOP_CAP_MIN_MS;
  if (*cap_ms <= 0 || ms < *cap_ms) *cap_ms = ms;
  int64_t b = LOOP_VALUE_BYTES * (n > 0 ? n : 1);
  if (*value_bytes <= 0 || b < *value_bytes) *value_bytes = b;
}

static void finish(dynqd_infer_t *x, int rc, const char *err);

/* Rows [r0, r0 + rows) of t along axis as a view into t, when they are
 * contiguous there (nothing before the axis but ones); 0 or -1. */
static int view_rows(const dynq__tensor_t *t, int axis, int64_t r0, int64_t rows,
                     dynq__tensor_t *ret) {
  size_t outer, inner;
  dynqd__split_shape(t, axis, &outer, &inner);
  if (outer != 1) return -1;
  memset(ret, 0, sizeof(*ret));
  ret->dtype = t->dtype;
  ret->rank = t->rank;
  memcpy(ret->dims, t->dims, sizeof(ret->dims));
  ret->dims[axis] = rows;
  ret->data = (uint8_t *)t->data + (size_t)r0 * inner;
  ret->owned = 0;
  return 0;
}

/* A thread's memory for merged runs, kept from one batch to the next and
 * freed when the thread ends.  Allocated and freed per batch, the merged
 * inputs (tens of KiB) and the small arrays made malloc consolidate its
 * free lists at every batch, and every copy went to cold memory. */
typedef struct scratch {
  uint8_t *buf;          /* owned (dynq__aligned_alloc): merged inputs */
  size_t cap;            /* bytes at buf; at most SCRATCH_KEEP between runs */
  dynq__tensor_t *t;     /* owned (malloc): in, out, then the requests'
                            output tensors, which they borrow until encoded */
  size_t t_cap;          /* tensors at t */
  int64_t *rows;         /* owned (malloc): rows of each request */
  size_t rows_cap;
} scratch_t;

/* Merged inputs larger than this get memory of their own per run. */
#define SCRATCH_KEEP ((size_t)1 << 20)

static pthread_key_t scratch_key;
static int scratch_ok;  /* the key exists */
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
  scratch_t *sc = p;
  dynq__aligned_free(sc->buf);
  free(sc->t);
  free(sc->rows);
  free(sc);
}

static void scratch_key_make(void) {
  scratch_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
}

/* This thread's scratch with room for n_t tensors and n rows; NULL when
 * out of memory (the batch then runs request by request). */
static scratch_t *scratch_get(size_t n_t, size_t n) {
  pthread_once(&scratch_once, scratch_key_make);
  if (!scratch_ok) return NULL;
  scratch_t *sc = pthread_getspecific(scratch_key);
  if (sc == NULL) {
    if ((sc = calloc(1, sizeof(*sc))) == NULL) return NULL;
    if (pthread_setspecific(scratch_key, sc) != 0) {
      free(sc);
      return NULL;
    }
  }
  if (n_t > sc->t_cap) {
    dynq__tensor_t *t = realloc(sc->t, n_t * sizeof(*t));
    if (t == NULL) return NULL;
    sc->t = t;
    sc->t_cap = n_t;
  }
  if (n > sc->rows_cap) {
    int64_t *r = realloc(sc->rows, n * sizeof(*r));
    if (r == NULL) return NULL;
    sc->rows = r;
    sc->rows_cap = n;
  }
  memset(sc->t, 0, n_t * sizeof(*sc->t));
  return sc;
}

/* Room for n bytes of merged inputs (DYNQ_ALIGN-aligned), or NULL. */
static uint8_t *scratch_bytes(scratch_t *sc, size_t n) {
  if (n > sc->cap) {
    uint8_t *b = dynq__aligned_alloc(n);
    if (b == NULL) return NULL;
    dynq__aligned_free(sc->buf);
    sc->buf = b;
    sc->cap = n;
  }
  return sc->buf;
}

static size_t align_up(size_t n) { return (n + DYNQ_ALIGN - 1) & ~(size_t)(DYNQ_ALIGN - 1); }

/* Where input i of the batch v[0..n) already lies merged: when it batches
 * on a leading axis (nothing before it but ones) and each request's rows
 * begin where the previous one's end (the loop decodes requests into
 * consecutive space), their bytes are the merged tensor's.  NULL: to be
 * copied together. */
static const uint8_t *adjacent(dynqd_infer_t *const *v, int n, int i, int axis,
                               const int64_t *rows) {
  size_t outer, inner;
  dynqd__split_shape(&v[0]->inputs[i], axis, &outer, &inner);
  if (outer != 1) return NULL;
  const uint8_t *first = NULL, *next = NULL;
  for (int k = 0; k < n; k++) {
    size_t len = (size_t)rows[k] * inner;
    const uint8_t *d = v[k]->inputs[i].data;
    if (len == 0) continue;  /* adds nothing; its data may be NULL */
    if (next != NULL && d != next) return NULL;
    if (first == NULL) first = d;
    next = d + len;
  }
  return first;
}

int dynqd__infer_run_merged(dynqd_infer_t **v, int n, dynq__tensor_t **ret_keep) {
  dynqd_infer_t *a = v[0];
  int ni = a->n_inputs, no = dynq__model_signature(a->model)->n_outputs;
  const int8_t *ax = a->axes;
  int rc = -ENOMEM;
  int64_t total = 0;
  *ret_keep = NULL;
  scratch_t *sc = scratch_get((size_t)ni + (size_t)no + (size_t)n * (size_t)no, (size_t)n);
  if (sc == NULL) return -ENOMEM;
  dynq__tensor_t *in = sc->t, *out = in + ni, *part = out + no;
  int64_t *rows = sc->rows;
  for (int k = 0; k < n; k++) {
    rows[k] = job_rows(v[k]);
    if (rows[k] < 0) return DYNQ_ESHAPE;  /* its inputs disagree on the batch */
    total += rows[k];
  }
  /* Each merged input is a view: of the requests' own bytes where they
   * lie back to back in batch order, else of their copies side by side
   * in the scratch buffer. */
  size_t bytes = 0;
  int copied = 0;
  for (int i = 0; i < ni; i++) {
    in[i].dtype = a->inputs[i].dtype;
    in[i].rank = a->inputs[i].rank;
    memcpy(in[i].dims, a->inputs[i].dims, sizeof(in[i].dims));
    in[i].dims[ax[i]] = total;
    in[i].owned = 0;
    in[i].data = (void *)adjacent(v, n, i, ax[i], rows);  /* only read */
    if (in[i].data == NULL) {
      bytes += align_up(dynq__tensor_nbytes(&in[i]));
      copied++;
    }
  }
  uint8_t *dst = copied ? scratch_bytes(sc, bytes > 0 ? bytes : 1) : NULL;
  if (copied && dst == NULL) return -ENOMEM;
  for (int i = 0; i < ni; i++) {
    if (in[i].data != NULL) continue;
    in[i].data = dst;
    size_t outer, inner;
    dynqd__split_shape(&in[i], ax[i], &outer, &inner);
    uint8_t *p = dst;
    for (size_t o = 0; o < outer; o++) {
      for (int k = 0; k < n; k++) {
        size_t chunk = (size_t)rows[k] * inner;
        if (chunk > 0) memcpy(p, (const uint8_t *)v[k]->inputs[i].data + o * chunk, chunk);
        p += chunk;
      }
    }
    dst += align_up(dynq__tensor_nbytes(&in[i]));
  }
  /* A batch that started alone may split its GEMMs (v[0]'s threads, set
   * by the scheduler for the whole batch) like a lone request. */
  dynq__run_result_t res = {0};
  /* A merged run stops only at the run-time cap: one request's deadline
   * or closed connection does not end the others' answers. */
  dynq__run_stop_t stop;
  int64_t cap_ms, value_bytes, cost = 0;
  for (int k = 0; k < n; k++) cost += v[k]->job.cost_ns;
  run_caps(a, a->job.on_loop, cost, n, &cap_ms, &value_bytes);
  dynq__run_opts_t opts = {.precision = a->precision,
                           .threads = a->job.threads > 1 ? a->job.threads : 1,
                           .result = &res,
                           .max_value_bytes = value_bytes,
                           .stop = stop_init(&stop, a, 0, cap_ms)};
  char err[256];
  int64_t t0 = now_us();
  rc = dynq__model_run(a->model, &opts, in, out, err, sizeof(err));
  int64_t us = now_us() - t0;
  int threads = res.splits > 0 ? opts.threads : 1;
  if (sc->cap > SCRATCH_KEEP) {  /* a rare big batch: not kept */
    dynq__aligned_free(sc->buf);
    sc->buf = NULL;
    sc->cap = 0;
  }
  if (rc == DYNQ_ELIMIT && a->job.on_loop)
    for (int k = 0; k < n; k++) v[k]->job.requeue = 1;  /* none was touched */
  if (rc != 0) return rc;  /* the run left out empty */
  for (int o = 0; o < no; o++) {
    if (out[o].rank <= ax[ni + o] || out[o].dims[ax[ni + o]] != total) {
      rc = DYNQ_ESHAPE;  /* an output without the batch along its axis */
      goto fail;
    }
  }
  int views = 0;  /* outputs some request sees through a view */
  int64_t r0 = 0;
  for (int k = 0; k < n; k++) {
    /* A plain request's outputs are only encoded, before the caller
     * frees the merged ones: a view saves a copy.  A session keeps its
     * state, a shadowed request its outputs: their own copies. */
    int plain = v[k]->session == NULL && !v[k]->keep_inputs && v[k]->out_shm == NULL;
    for (int o = 0; o < no; o++) {
      dynq__tensor_t *d = &part[(size_t)k * no + o];
      if (plain && view_rows(&out[o], ax[ni + o], r0, rows[k], d) == 0) {
        views = 1;
        continue;
      }
      rc = slice_rows(&out[o], ax[ni + o], r0, rows[k], d);
      if (rc != 0) goto fail;
    }
    r0 += rows[k];
  }
  for (int k = 0; k < n; k++) {
    v[k]->compute_us = us;
    v[k]->batched = n;
    v[k]->job.threads = threads;
    v[k]->merge_copied = copied;
    release_inputs(v[k]);
    v[k]->out = &part[(size_t)k * no];  /* borrowed until dynqd__infer_out_done */
    v[k]->out_borrowed = 1;
    finish(v[k], 0, "");
  }
  if (views) {  /* the caller frees them once the answers are encoded */
    *ret_keep = out;
    return 0;
  }
  for (int o = 0; o < no; o++) dynq__tensor_clear(&out[o]);
  return 0;

fail:
  for (int o = 0; o < no; o++) dynq__tensor_clear(&out[o]);
  for (size_t q = 0; q < (size_t)n * (size_t)no; q++) dynq__tensor_clear(&part[q]);
  return rc;
}

void dynqd__infer_keep_free(const dynq__model_t *model, dynq__tensor_t *keep) {
  if (keep == NULL) return;
  for (int o = 0; o < dynq__model_signature(model)->n_outputs; o++)
    dynq__tensor_clear(&keep[o]);
}

void dynqd__infer_out_done(dynqd_infer_t *x) { clear_out(x); }

void dynqd__infer_run(dynqd_infer_t *x) {
  int no = dynq__model_signature(x->model)->n_outputs;
  x->out = calloc((size_t)(no > 0 ? no : 1), sizeof(*x->out));
  if (x->out == NULL) {
    finish(x, -ENOMEM, "out of memory running the model");
    return;
  }
  dynq__run_result_t res = {0};
  dynq__run_stop_t stop;
  int64_t cap_ms, value_bytes;
  run_caps(x, x->job.on_loop, x->job.cost_ns, 1, &cap_ms, &value_bytes);
  dynq__run_opts_t opts = {.precision = x->precision,
                           .threads = x->job.threads > 1 ? x->job.threads : 1,
                           .result = &res,
                           .max_value_bytes = value_bytes,
                           .stop = stop_init(&stop, x, 1, cap_ms)};
  char err[512] = "";
  int64_t t0 = now_us();
  int rc = dynq__model_run(x->model, &opts, x->inputs, x->out, err, sizeof(err));
  if (rc == DYNQ_ELIMIT && x->job.on_loop) {
    clear_out(x);  /* the run left its outputs empty: only the array */
    x->job.requeue = 1;
    return;
  }
  x->compute_us = now_us() - t0;
  x->batched = 1;
  /* Allowed to split but nothing was large enough: it ran on one thread
   * (what "threads" in the answer and the inline cost estimate need). */
  if (res.splits == 0) x->job.threads = 1;
  release_inputs(x);
  finish(x, rc, err);
}

void dynqd__infer_take_state(dynqd_infer_t *x) {
  dynqd_session_t *ss = x->session;
  if (ss == NULL || x->sess_new == NULL || x->status != 0 || x->out == NULL) return;
  for (int k = 0; k < ss->n_bind; k++) {
    x->sess_new[k] = x->out[ss->bind_out[k]];
    memset(&x->out[ss->bind_out[k]], 0, sizeof(x->out[0]));
  }
}

void dynqd__infer_free(dynqd_infer_t *x) {
  if (x == NULL) return;
  dynqd__infer_clear(x);
  free(x);
}

void dynqd__infer_clear(dynqd_infer_t *x) {
  for (int i = 0; i < x->n_inputs; i++) dynq__tensor_clear(&x->inputs[i]);
  free(x->inputs);
  clear_out(x);
  if (x->sess_new != NULL && x->session != NULL)
    for (int i = 0; i < x->session->n_bind; i++) dynq__tensor_clear(&x->sess_new[i]);
  free(x->sess_new);
  dynqd__session_unref(x->session);
  dynqd__shm_refs_clear(&x->shm);
  free(x->out_shm);
  free(x->axes);
  dynq__model_unref(x->model);
  memset(x, 0, sizeof(*x));
}
