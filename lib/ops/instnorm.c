/*
 * InstanceNormalization and LRN.
 *
 * InstanceNormalization(X [N, C, ...], scale [C], B [C]): each (n, c)
 * plane normalized by its own mean and variance, then scaled and shifted
 * per channel.  PyTorch exports GroupNorm as Reshape -> this (with unit
 * scale, zero bias) -> Reshape -> Mul -> Add, so GroupNorm runs here too.
 * Mean and variance accumulate in double over the plane (a plane can hold
 * 10^5 values).
 *
 * LRN(X [N, C, ...]): each value divided by (bias + alpha / size * the sum
 * of squares over the size channels around it)^beta, the window
 * floor((size - 1) / 2) channels below and ceil((size - 1) / 2) above,
 * cut at the edges; the sum and the power in double.
 */
#include "ops.h"

#include <math.h>
#include <stdio.h>

#include "dynq/errors.h"

int dynq__run_instnorm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  int rc;
  for (int k = 0; k < 3; k++)
    if ((rc = dynq__op_need_f32(c, in[k], k))) return rc;
  const dynq__tensor_t *x = in[0], *s = in[1], *b = in[2];
  if (x->rank < 3)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input must be [N, C, D1, ...], has rank %d", x->rank);
  const int64_t N = x->dims[0], C = x->dims[1];
  if (dynq__tensor_numel(s) != C || dynq__tensor_numel(b) != C || s->rank != 1 || b->rank != 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "scale and B must be 1-D of C = %lld values",
                         (long long)C);
  if ((rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, x->rank, x->dims, out))) return rc;
  int64_t plane = 1;
  for (int d = 2; d < x->rank; d++) plane *= x->dims[d];
  const float eps = c->st->norm.eps, *px = x->data, *ps = s->data, *pb = b->data;
  float *py = out->data;
  for (int64_t n = 0; n < N; n++)
    for (int64_t ch = 0; ch < C; ch++) {
      const float *xs = px + (n * C + ch) * plane;
      float *ys = py + (n * C + ch) * plane;
      double sum = 0, sq = 0;
      for (int64_t i = 0; i < plane; i++) sum += xs[i];
      const double mean = plane > 0 ? sum / (double)plane : 0.0;
      for (int64_t i = 0; i < plane; i++) sq += (xs[i] - mean) * (xs[i] - mean);
      const double var = plane > 0 ? sq / (double)plane : 0.0;
      const float k = (float)(ps[ch] / sqrt(var + eps)), m = (float)mean;
      for (int64_t i = 0; i < plane; i++) ys[i] = (xs[i] - m) * k + pb[ch];
    }
  return 0;
}

int dynq__prep_instnorm(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                        char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->norm.eps = dynq__node_attr_f(n, "epsilon", 1e-5f);
  return 0;
}

/* ---- LRN ---- */

int dynq__check_lrn(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  int64_t size = dynq__node_attr_i(n, "size", 0);
  DYNQ_OP_CHECK(size >= 1, "size %lld must be at least 1", (long long)size);
  return 0;
}

int dynq__prep_lrn(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                   char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->lrn.size = dynq__node_attr_i(n, "size", 0);
  st->lrn.alpha = dynq__node_attr_f(n, "alpha", 1e-4f);
  st->lrn.beta = dynq__node_attr_f(n, "beta", 0.75f);
  st->lrn.bias = dynq__node_attr_f(n, "bias", 1.0f);
  return 0;
}

int dynq__run_lrn(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_f32(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  const int64_t size = c->st->lrn.size;
  if (size < 1) return dynq__op_fail(c, DYNQ_EGRAPH, "size %lld must be at least 1", (long long)size);
  if (x->rank < 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input must be [N, C, ...], has rank %d", x->rank);
  /* not in place: each output reads its neighbours' inputs */
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, x->rank, x->dims, 0))) return rc;
  const int64_t N = x->dims[0], C = x->dims[1];
  int64_t plane = 1;
  for (int d = 2; d < x->rank; d++) plane *= x->dims[d];
  const int64_t below = (size - 1) / 2, above = size - 1 - below;
  const double k = (double)c->st->lrn.alpha / (double)size, bias = c->st->lrn.bias,
               beta = c->st->lrn.beta;
  const float *px = x->data;
  float *py = out->data;
  for (int64_t n = 0; n < N; n++)
    for (int64_t ch = 0; ch < C; ch++) {
      const int64_t lo = ch - below < 0 ? 0 : ch - below;
      const int64_t hi = ch > C - 1 - above ? C - 1 : ch + above;
      for (int64_t i = 0; i < plane; i++) {
        double sq = 0;
        for (int64_t j = lo; j <= hi; j++) {
          const double v = px[(n * C + j) * plane + i];
          sq += v * v;
        }
        const int64_t o = (n * C + ch) * plane + i;
        py[o] = (float)(px[o] / pow(bias + k * sq, beta));
      }
    }
  return 0;
}
