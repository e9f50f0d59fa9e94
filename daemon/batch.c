/*
 * Dynamic batching (off by default): a worker that picks up a request for
 * a model with max_batch > 1 takes other queued requests for the same
 * model whose inputs differ only in dimension 0, waits up to max_delay_us
 * for more, concatenates them along dimension 0, runs the model once and
 * splits every output back.
 *
 * Why the results are bit-identical to unbatched runs: activations are
 * quantized per row (each row's scale and zero point come from that row
 * only) and the integer GEMM is exact, so a row's result does not depend on
 * its neighbours.  Requests that could break that are never batched:
 * per-tensor models and fp32 precision (m_infer leaves batch_max at 0),
 * sessions and outputs_shm.  If a merged run fails, or an output's first
 * dimension is not the summed batch, every request runs alone instead, so
 * each gets exactly its own answer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dynq/errors.h"
#include "dynqd.h"

void dynqd__batch_config(const dynqd_config_t *cfg, const char *model, int *ret_max,
                         int *ret_delay_us) {
  int mx = cfg->batch_max, dl = cfg->batch_delay_us;
  for (int i = 0; i < cfg->n_batch_rules; i++) {
    if (cfg->batch_rules[i].model != NULL && strcmp(cfg->batch_rules[i].model, model) == 0) {
      mx = cfg->batch_rules[i].max_batch;
      dl = cfg->batch_rules[i].max_delay_us;
    }
  }
  *ret_max = mx > 1 ? mx : 0;
  *ret_delay_us = dl > 0 ? dl : 0;
}

/* b may run in one batch with a (same model and options, same input
 * dtypes and dims except dim 0). */
static int compatible(const dynqd_job_t *a, const dynqd_job_t *b, uint64_t now) {
  if (b->model != a->model || b->precision != a->precision || b->batch_max != a->batch_max)
    return 0;
  if (b->session != NULL || b->out_shm != NULL || b->n_inputs != a->n_inputs) return 0;
  if (atomic_load(&b->conn->dead)) return 0;
  if (b->deadline_ns != 0 && now > b->deadline_ns) return 0;  /* answered alone */
  for (int i = 0; i < a->n_inputs; i++) {
    const dynq__tensor_t *x = &a->inputs[i], *y = &b->inputs[i];
    if (x->dtype != y->dtype || x->rank != y->rank || x->rank < 1) return 0;
    for (int d = 1; d < x->rank; d++)
      if (x->dims[d] != y->dims[d]) return 0;
  }
  return 1;
}

/* Move like jobs from the queue into v[*n..max). p->mu held. */
static void collect(dynqd_pool_t *p, dynqd_job_t **v, int *n, int max) {
  uint64_t now = uv_hrtime();
  dynqd_job_t **pp = &p->qhead, *prev = NULL;
  while (*pp != NULL && *n < max) {
    dynqd_job_t *b = *pp;
    if (compatible(v[0], b, now)) {
      *pp = b->next;
      if (p->qtail == b) p->qtail = prev;
      atomic_fetch_sub_explicit(&p->qlen, 1, memory_order_relaxed);
      b->next = NULL;
      b->queue_us = (int64_t)((now - b->t_queued_ns) / 1000);
      v[(*n)++] = b;
    } else {
      prev = b;
      pp = &b->next;
    }
  }
}

/* Rows [r0, r0 + rows) of t into an owned tensor. */
static int slice_rows(const dynq__tensor_t *t, int64_t r0, int64_t rows, dynq__tensor_t *ret) {
  int64_t dims[DYNQ_MAX_RANK];
  memcpy(dims, t->dims, sizeof(dims));
  dims[0] = rows;
  int rc = dynq__tensor_alloc(ret, t->dtype, t->rank, dims);
  if (rc != 0) return rc;
  size_t row_bytes = t->dims[0] > 0 ? dynq__tensor_nbytes(t) / (size_t)t->dims[0] : 0;
  if (rows > 0 && row_bytes > 0)
    memcpy(ret->data, (const uint8_t *)t->data + (size_t)r0 * row_bytes,
           (size_t)rows * row_bytes);
  return 0;
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Run n >= 2 jobs as one; 0 when every job got its answer, else nonzero
 * and no job was answered (the caller runs them alone). */
static int run_merged(dynqd_job_t **v, int n) {
  dynqd_job_t *a = v[0];
  const dynq__graph_t *g = dynq__model_graph(a->model);
  int ni = a->n_inputs, no = g->n_outputs;
  int rc = -ENOMEM;
  int64_t total = 0;
  dynq__tensor_t *in = calloc((size_t)(ni > 0 ? ni : 1), sizeof(*in));
  dynq__tensor_t *out = calloc((size_t)(no > 0 ? no : 1), sizeof(*out));
  dynq__tensor_t *part = calloc((size_t)n * (size_t)(no > 0 ? no : 1), sizeof(*part));
  if (in == NULL || out == NULL || part == NULL) goto done;
  for (int k = 0; k < n; k++) total += v[k]->inputs[0].dims[0];
  for (int i = 0; i < ni; i++) {
    int64_t dims[DYNQ_MAX_RANK];
    memcpy(dims, a->inputs[i].dims, sizeof(dims));
    int64_t rows_i = 0;
    for (int k = 0; k < n; k++) rows_i += v[k]->inputs[i].dims[0];
    if (rows_i != total) {  /* inputs disagree on the batch: not batchable */
      rc = DYNQ_ESHAPE;
      goto done;
    }
    dims[0] = total;
    rc = dynq__tensor_alloc(&in[i], a->inputs[i].dtype, a->inputs[i].rank, dims);
    if (rc != 0) goto done;
    size_t off = 0;
    for (int k = 0; k < n; k++) {
      size_t nb = dynq__tensor_nbytes(&v[k]->inputs[i]);
      if (nb > 0) memcpy((uint8_t *)in[i].data + off, v[k]->inputs[i].data, nb);
      off += nb;
    }
  }
  dynq__run_opts_t opts = {a->precision, NULL, 1};
  char err[256];
  int64_t t0 = now_us();
  rc = dynq__model_run(a->model, &opts, in, out, err, sizeof(err));
  int64_t us = now_us() - t0;
  if (rc != 0) goto done;
  for (int o = 0; o < no; o++) {
    if (out[o].rank < 1 || out[o].dims[0] != total) {
      rc = DYNQ_ESHAPE;  /* an output without the batch dimension */
      goto done;
    }
  }
  int64_t r0 = 0;
  for (int k = 0; k < n; k++) {
    int64_t rows = v[k]->inputs[0].dims[0];
    for (int o = 0; o < no; o++) {
      rc = slice_rows(&out[o], r0, rows, &part[(size_t)k * no + o]);
      if (rc != 0) goto done;
    }
    r0 += rows;
  }
  for (int k = 0; k < n; k++) {
    v[k]->compute_us = us;
    v[k]->batched = n;
    for (int i = 0; i < ni; i++) dynq__tensor_clear(&v[k]->inputs[i]);
    dynqd__infer_respond(v[k], 0, "", &part[(size_t)k * no]);  /* clears its part */
  }
  rc = 0;

done:
  if (in != NULL)
    for (int i = 0; i < ni; i++) dynq__tensor_clear(&in[i]);
  if (out != NULL)
    for (int o = 0; o < no; o++) dynq__tensor_clear(&out[o]);
  if (part != NULL && rc != 0)
    for (size_t q = 0; q < (size_t)n * (size_t)no; q++) dynq__tensor_clear(&part[q]);
  free(in);
  free(out);
  free(part);
  return rc;
}

void dynqd__batch_run(dynqd_pool_t *p, dynqd_job_t *j) {
  int max = j->batch_max;
  if (max > 256) max = 256;  /* bounds the stack array below */
  dynqd_job_t *v[256];
  int n = 1;
  v[0] = j;
  collect(p, v, &n, max);
  if (n < max && j->batch_delay_us > 0) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)(j->batch_delay_us % 1000000) * 1000;
    until.tv_sec += j->batch_delay_us / 1000000 + until.tv_nsec / 1000000000;
    until.tv_nsec %= 1000000000;
    while (n < max && !p->stop) {
      p->batch_waiters++;
      int w = pthread_cond_timedwait(&p->cv, &p->mu, &until);
      p->batch_waiters--;
      collect(p, v, &n, max);
      if (w == ETIMEDOUT) break;
    }
  }
  /* We may have swallowed a wake-up meant for an idle worker. */
  if (p->qhead != NULL) pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);

  if (n > 1)  /* no longer alone: one thread each, like any concurrent job */
    for (int k = 0; k < n; k++) v[k]->threads = 1;
  if (n == 1 || run_merged(v, n) != 0) {
    for (int k = 0; k < n; k++) dynqd__run_infer(v[k]);
  }
  for (int k = 0; k < n; k++) v[k]->next = k + 1 < n ? v[k + 1] : NULL;
}
