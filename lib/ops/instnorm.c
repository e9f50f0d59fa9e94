/*
 * InstanceNormalization(X [N, C, ...], scale [C], B [C]): each (n, c)
 * plane normalized by its own mean and variance, then scaled and shifted
 * per channel.  PyTorch exports GroupNorm as Reshape -> this (with unit
 * scale, zero bias) -> Reshape -> Mul -> Add, so GroupNorm runs here too.
 * Mean and variance accumulate in double over the plane (a plane can hold
 * 10^5 values).
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
