/* Normalizations: Softmax along one axis (opset 13 semantics) or over the
 * axes from one on (the opset < 13 form), LayerNormalization over the
 * trailing axes, BatchNormalization (inference form) per channel. */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "vmath.h"

/* The row functions are compiled for AVX-512, AVX2 and the baseline and
 * picked at load (target_clones); the sums run in 16 fixed lanes combined
 * in a fixed order, so every clone gives the same bits.  no-trapping-math
 * lets GCC if-convert the selects (results unchanged). */
#define VEC __attribute__((optimize("O3", "tree-vectorize", "no-trapping-math")))
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define LANES 16

/* Softmax of one contiguous row, in place.  A NaN anywhere makes the
 * row NaN (through the sum), as the reference does. */
CLONES VEC static void softmax_row(float *y, int64_t len) {
  float m[LANES], s[LANES];
  for (int k = 0; k < LANES; k++) m[k] = -INFINITY, s[k] = 0.0f;
  int64_t i = 0;
  for (; i + LANES <= len; i += LANES)
    for (int k = 0; k < LANES; k++) m[k] = y[i + k] > m[k] ? y[i + k] : m[k];
  float mx = -INFINITY;
  for (; i < len; i++) mx = y[i] > mx ? y[i] : mx;
  for (int k = 0; k < LANES; k++) mx = m[k] > mx ? m[k] : mx;
  for (i = 0; i + LANES <= len; i += LANES)
    for (int k = 0; k < LANES; k++) {
      float e = dynq_vexp(y[i + k] - mx);
      y[i + k] = e;
      s[k] += e;
    }
  float tail = 0.0f;
  for (; i < len; i++) {
    y[i] = dynq_vexp(y[i] - mx);
    tail += y[i];
  }
  for (int w = LANES / 2; w >= 1; w /= 2) /* pairwise: a fixed order */
    for (int k = 0; k < w; k++) s[k] += s[k + w];
  float inv = 1.0f / (s[0] + tail);
  for (i = 0; i < len; i++) y[i] *= inv;
}

int dynq__run_softmax(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  int rc, ax = 0;
  if ((rc = dynq__op_need_f32(c, x, 0))) return rc;
  if (x->rank == 0) return dynq__op_fail(c, DYNQ_ESHAPE, "input is a scalar");
  if ((rc = dynq__op_norm_axis(c, c->st->softmax.axis, x->rank, 0, &ax))) return rc;
  if ((rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, x->rank, x->dims, out))) return rc;
  int64_t len = x->dims[ax], inner = 1, outer = 1;
  for (int d = ax + 1; d < x->rank; d++) inner *= x->dims[d];
  if (c->st->softmax.flatten) { /* opset < 13: one softmax over [ax, rank) */
    len *= inner;
    inner = 1;
  }
  for (int d = 0; d < ax; d++) outer *= x->dims[d];
  const float *px = x->data;
  float *py = out->data;
  if (inner == 1) { /* the usual case: contiguous rows (in place when donated) */
    if (py != px) memcpy(py, px, sizeof(float) * (size_t)(outer * len));
    for (int64_t o = 0; o < outer; o++) softmax_row(py + o * len, len);
    return 0;
  }
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const float *xs = px + o * len * inner + i;
      float *ys = py + o * len * inner + i;
      float mx = -INFINITY;
      for (int64_t k = 0; k < len; k++) mx = xs[k * inner] > mx ? xs[k * inner] : mx;
      double sum = 0;
      for (int64_t k = 0; k < len; k++) {
        float e = dynq_vexp(xs[k * inner] - mx);
        ys[k * inner] = e;
        sum += e;
      }
      float inv = (float)(1.0 / sum);
      for (int64_t k = 0; k < len; k++) ys[k * inner] *= inv;
    }
  return 0;
}

/* "axis" (default -1) and "flatten" (1: the importer's opset < 13 form). */
int dynq__prep_softmax(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                       char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->softmax.axis = dynq__node_attr_i(n, "axis", -1);
  st->softmax.flatten = dynq__node_attr_i(n, "flatten", 0) != 0;
  return 0;
}
/* ---- LayerNormalization (opset 17): over the axes [axis, rank) ---- */

int dynq__prep_layernorm(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                         char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->norm.axis = dynq__node_attr_i(n, "axis", -1);
  st->norm.eps = dynq__node_attr_f(n, "epsilon", 1e-5f);
  return 0;
}

/* One row of len values: y = (x - mean) / sqrt(var + eps) * scale + bias.
 * Two passes over the row (mean, then the centred sum of squares), in
 * float with 8 partial sums (vectorizable, and accurate to ~1e-7 relative
 * for the row lengths of transformer models). */
static void layernorm_row(const float *x, float *y, int64_t len, const float *scale,
                          const float *bias, float eps, float *ret_mean, float *ret_inv) {
  float s8[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= len; i += 8)
    for (int k = 0; k < 8; k++) s8[k] += x[i + k];
  float s = 0.0f;
  for (; i < len; i++) s += x[i];
  for (int k = 0; k < 8; k++) s += s8[k];
  float mean = s / (float)len;
  float q8[8] = {0};
  for (i = 0; i + 8 <= len; i += 8)
    for (int k = 0; k < 8; k++) {
      float d = x[i + k] - mean;
      q8[k] += d * d;
    }
  float q = 0.0f;
  for (; i < len; i++) q += (x[i] - mean) * (x[i] - mean);
  for (int k = 0; k < 8; k++) q += q8[k];
  float inv = 1.0f / sqrtf(q / (float)len + eps);
  *ret_mean = mean;
  *ret_inv = inv;
  if (bias)
    for (i = 0; i < len; i++) y[i] = (x[i] - mean) * inv * scale[i] + bias[i];
  else
    for (i = 0; i < len; i++) y[i] = (x[i] - mean) * inv * scale[i];
}

int dynq__run_layernorm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                        dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *sc = in[1], *b = in[2];
  int rc, ax = 0;
  char s1[128], s2[128];
  if ((rc = dynq__op_need_f32(c, x, 0)) || (rc = dynq__op_need_f32(c, sc, 1))) return rc;
  if (b && (rc = dynq__op_need_f32(c, b, 2))) return rc;
  if (x->rank == 0) return dynq__op_fail(c, DYNQ_ESHAPE, "X is a scalar");
  if ((rc = dynq__op_norm_axis(c, c->st->norm.axis, x->rank, 0, &ax))) return rc;
  int64_t len = 1, rows = 1;
  for (int d = ax; d < x->rank; d++) len *= x->dims[d];
  for (int d = 0; d < ax; d++) rows *= x->dims[d];
  /* Scale and B: the normalized shape (or any shape of that size: the
   * broadcast of a smaller one is refused, ONNX exporters never emit it) */
  if (dynq__tensor_numel(sc) != len || (b && dynq__tensor_numel(b) != len))
    return dynq__op_fail(c, DYNQ_ESHAPE, "Scale %s / B %s do not match the normalized shape of X %s (axis %d)",
                         dynq__shape_str(s1, sizeof(s1), sc->rank, sc->dims),
                         b ? dynq__shape_str(s2, sizeof(s2), b->rank, b->dims) : "-",
                         dynq__shape_str(s1 + 64, 64, x->rank, x->dims), ax);
  /* Mean and InvStdDev (optional outputs): X's shape with 1 from axis on */
  int want_stats = c->node->n_out > 1;
  int64_t sd[DYNQ_MAX_RANK];
  for (int d = 0; d < x->rank; d++) sd[d] = d < ax ? x->dims[d] : 1;
  for (int k = 1; k < c->node->n_out; k++)
    if (c->node->out[k] >= 0 && (rc = dynq__op_alloc(c, &out[k], DYNQ_DT_F32, x->rank, sd, 0)))
      return rc;
  if ((rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, x->rank, x->dims, out))) return rc;
  const float *px = x->data;
  float *py = out->data;
  if (len == 0) return 0;
  for (int64_t r = 0; r < rows; r++) {
    float mean, inv;
    layernorm_row(px + r * len, py + r * len, len, sc->data, b ? b->data : NULL,
                  c->st->norm.eps, &mean, &inv);
    if (want_stats && c->node->out[1] >= 0) ((float *)out[1].data)[r] = mean;
    if (want_stats && c->node->n_out > 2 && c->node->out[2] >= 0) ((float *)out[2].data)[r] = inv;
  }
  return 0;
}

/* ---- BatchNormalization (inference form): per channel (axis 1) ---- */

int dynq__prep_batchnorm(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                         char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->norm.eps = dynq__node_attr_f(n, "epsilon", 1e-5f);
  return 0;
}

int dynq__run_batchnorm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                        dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  int rc;
  char s[128];
  for (int k = 0; k < 5; k++)
    if ((rc = dynq__op_need_f32(c, in[k], k))) return rc;
  if (x->rank < 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "X has shape %s, expected (N, C, ...)",
                         dynq__shape_str(s, sizeof(s), x->rank, x->dims));
  int64_t C = x->dims[1], inner = 1;
  for (int k = 1; k < 5; k++)
    if (dynq__tensor_numel(in[k]) != C)
      return dynq__op_fail(c, DYNQ_ESHAPE, "input %d has %lld values, X has %lld channels", k,
                           (long long)dynq__tensor_numel(in[k]), (long long)C);
  for (int d = 2; d < x->rank; d++) inner *= x->dims[d];
  if ((rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, x->rank, x->dims, out))) return rc;
  const float *sc = in[1]->data, *bi = in[2]->data, *mu = in[3]->data, *va = in[4]->data;
  const float *px = x->data;
  float *py = out->data;
  float eps = c->st->norm.eps;
  for (int64_t nn = 0; nn < x->dims[0]; nn++)
    for (int64_t ch = 0; ch < C; ch++) {
      /* y = (x - mean) * (scale / sqrt(var + eps)) + B, the folded form
       * ONNX Runtime computes too */
      float a = sc[ch] / sqrtf(va[ch] + eps), b0 = bi[ch] - mu[ch] * a;
      const float *xs = px + (nn * C + ch) * inner;
      float *ys = py + (nn * C + ch) * inner;
      for (int64_t i = 0; i < inner; i++) ys[i] = xs[i] * a + b0;
    }
  return 0;
}
