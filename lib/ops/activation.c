/*
 * Activations and small float ops the exporters emit beyond the core set:
 * the parametrised activations (LeakyRelu, PRelu, Elu, Selu, Celu,
 * ThresholdedRelu), Softplus, Softsign, Mish, Reciprocal, Floor, Ceil,
 * Round, Sign, Sin, Cos, Tan, their inverses and the hyperbolic ones,
 * Shrink, Gelu; IsNaN, IsInf; Mod; LogSoftmax, Hardmax; the variadic Min, Max,
 * Sum and Mean.
 * None of them is on a hot path of the models that use them (one per
 * block at most), so the float math goes through double libm calls: the
 * results are the correctly rounded ones a reference computes.
 */
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dynq/errors.h"

/* ONNX's defaults per op (Selu's are the constants of its definition). */
int dynq__prep_act(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                   char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  float alpha = 1.0f, gamma = 0.0f;
  switch (n->op) {
  case DYNQ_OP_LEAKY_RELU: alpha = 0.01f; break;
  case DYNQ_OP_SHRINK: /* lambd and bias */
    st->act.alpha = dynq__node_attr_f(n, "lambd", 0.5f);
    st->act.gamma = dynq__node_attr_f(n, "bias", 0.0f);
    return 0;
  case DYNQ_OP_GELU: /* alpha 1: the tanh approximation */
    st->act.alpha = dynq__node_attr_i(n, "tanh", 0) != 0;
    return 0;
  case DYNQ_OP_SELU:
    alpha = 1.67326319217681884765625f;
    gamma = 1.05070102214813232421875f;
    break;
  default: break;
  }
  st->act.alpha = dynq__node_attr_f(n, "alpha", alpha);
  st->act.gamma = dynq__node_attr_f(n, "gamma", gamma);
  return 0;
}

/* The Celu attribute must not be 0 (ONNX divides by it); Gelu's "tanh"
 * is a flag; the others take any value. */
int dynq__check_act(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  if (n->op == DYNQ_OP_GELU) {
    int64_t t = dynq__node_attr_i(n, "tanh", 0);
    DYNQ_OP_CHECK(t == 0 || t == 1, "tanh %lld is not 0 or 1", (long long)t);
  }
  if (n->op == DYNQ_OP_CELU && dynq__node_attr_f(n, "alpha", 1.0f) == 0.0f) {
    snprintf(err, errlen, "node '%s' (op Celu): alpha 0 is not allowed (it divides by it)",
             n->name ? n->name : "?");
    return DYNQ_EGRAPH;
  }
  return 0;
}

static double act1(int op, double x, double a, double gm) {
  switch (op) {
  case DYNQ_OP_LEAKY_RELU: return x < 0 ? a * x : x;
  case DYNQ_OP_ELU: return x < 0 ? a * expm1(x) : x;
  case DYNQ_OP_SELU: return x <= 0 ? gm * a * expm1(x) : gm * x;
  case DYNQ_OP_CELU: return x < 0 ? a * expm1(x / a) : x;
  case DYNQ_OP_THRESHOLDED_RELU: return x > a ? x : 0.0;
  /* log(1 + e^x) without overflow: x + log1p(e^-x) for large x */
  case DYNQ_OP_SOFTPLUS: return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
  case DYNQ_OP_SOFTSIGN: return x / (1.0 + fabs(x));
  case DYNQ_OP_MISH: return x * tanh(x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)));
  case DYNQ_OP_RECIPROCAL: return 1.0 / x;
  case DYNQ_OP_FLOOR: return floor(x);
  case DYNQ_OP_CEIL: return ceil(x);
  case DYNQ_OP_ROUND: return nearbyint(x); /* halves to even (the default mode) */
  case DYNQ_OP_SIGN: return x > 0 ? 1.0 : x < 0 ? -1.0 : x; /* 0, -0 and NaN as they are */
  case DYNQ_OP_SIN: return sin(x);
  case DYNQ_OP_COS: return cos(x);
  case DYNQ_OP_TAN: return tan(x);
  case DYNQ_OP_ASIN: return asin(x);
  case DYNQ_OP_ACOS: return acos(x);
  case DYNQ_OP_ATAN: return atan(x);
  case DYNQ_OP_SINH: return sinh(x);
  case DYNQ_OP_COSH: return cosh(x);
  case DYNQ_OP_ASINH: return asinh(x);
  case DYNQ_OP_ACOSH: return acosh(x);
  case DYNQ_OP_ATANH: return atanh(x);
  case DYNQ_OP_SHRINK: return x < -a ? x + gm : x > a ? x - gm : 0.0;
  /* Gelu: x Phi(x), or (a != 0) its tanh approximation */
  case DYNQ_OP_GELU:
    return a != 0 ? 0.5 * x * (1.0 + tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x)))
                  : 0.5 * x * (1.0 + erf(x * 0.70710678118654752440));
  default: return x;
  }
}

int dynq__run_act(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, op = c->node->op;
  const dynq__tensor_t *x = in[0];
  if ((rc = dynq__op_need_present(c, x, 0))) return rc;
  if (op == DYNQ_OP_SIGN && dynq__dt_is_int(x->dtype)) {
    if ((rc = dynq__op_out_like(c, 0, x->dtype, x->rank, x->dims, out))) return rc;
    int64_t n = dynq__tensor_numel(x);
    for (int64_t i = 0; i < n; i++) {
      int64_t v = dynq__load_i(x->data, x->dtype, i);
      dynq__store_i(out->data, x->dtype, i, (v > 0) - (v < 0));
    }
    return 0;
  }
  if ((rc = dynq__op_need_f32(c, x, 0))) return rc;
  /* in place when offered: y[i] depends on x[i] only */
  if ((rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, x->rank, x->dims, out))) return rc;
  const float *p = x->data;
  float *q = out->data;
  const double a = c->st->act.alpha, gm = c->st->act.gamma;
  int64_t n = dynq__tensor_numel(x);
  for (int64_t i = 0; i < n; i++) q[i] = (float)act1(op, p[i], a, gm);
  return 0;
}

/* PRelu(X, slope): slope broadcasts to X (unidirectionally: the output
 * has X's shape). */
int dynq__run_prelu(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_f32(c, in[0], 0)) || (rc = dynq__op_need_f32(c, in[1], 1))) return rc;
  dynq__bcast_t bc;
  if ((rc = dynq__bcast_init(c, 2, in, &bc))) return rc;
  if (bc.n != dynq__tensor_numel(in[0]) || bc.rank != in[0]->rank)
    return dynq__op_fail(c, DYNQ_ESHAPE, "slope (rank %d) does not broadcast to X's shape "
                         "(rank %d)", in[1]->rank, in[0]->rank);
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, in[0]->rank, in[0]->dims, 0))) return rc;
  const float *x = in[0]->data, *s = in[1]->data;
  float *y = out->data;
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[2] = {0, 0};
  for (int64_t i = 0; i < bc.n; i++, dynq__bcast_next(&bc, 2, cnt, off)) {
    float v = x[off[0]];
    y[i] = v < 0 ? v * s[off[1]] : v;
  }
  return 0;
}

/* ---- LogSoftmax: x - max - log(sum e^(x - max)) along one axis, or (the
 * opset < 13 form, "flatten") over the axes from it on ---- */

int dynq__run_logsoftmax(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                         dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  int64_t outer, len, inner;
  int rc = dynq__softmax_geometry(c, x, out, &outer, &len, &inner);
  if (rc) return rc;
  const float *px = x->data;
  float *py = out->data;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const float *xs = px + o * len * inner + i;
      float *ys = py + o * len * inner + i;
      float mx = -INFINITY;
      for (int64_t k = 0; k < len; k++) mx = xs[k * inner] > mx ? xs[k * inner] : mx;
      /* a NaN in the row (or a row all -inf) makes the row NaN, as the
       * reference's */
      double sum = 0;
      for (int64_t k = 0; k < len; k++) sum += exp((double)xs[k * inner] - mx);
      const double lse = mx + log(sum);
      for (int64_t k = 0; k < len; k++) ys[k * inner] = (float)((double)xs[k * inner] - lse);
    }
  return 0;
}

/* ---- Hardmax: 1 at the first largest value along the axis (or, the
 * opset < 13 form, over the axes from it on), 0 elsewhere; a NaN counts
 * as larger than any number (as ArgMax) ---- */

int dynq__run_hardmax(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  int64_t outer, len, inner;
  int rc = dynq__softmax_geometry(c, x, out, &outer, &len, &inner);
  if (rc) return rc;
  const float *px = x->data;
  float *py = out->data; /* may be px: each row is read whole before it is written */
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const int64_t base = o * len * inner + i;
      int64_t best = 0;
      for (int64_t k = 1; k < len && !isnan(px[base + best * inner]); k++) {
        const float v = px[base + k * inner];
        if (isnan(v) || v > px[base + best * inner]) best = k;
      }
      for (int64_t k = 0; k < len; k++) py[base + k * inner] = k == best ? 1.0f : 0.0f;
    }
  return 0;
}

/* ---- IsNaN, IsInf (detect_negative, detect_positive): float32 to bool
 * (uint8) ---- */

int dynq__prep_isinf(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                     char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->isinf.neg = dynq__node_attr_i(n, "detect_negative", 1) != 0;
  st->isinf.pos = dynq__node_attr_i(n, "detect_positive", 1) != 0;
  return 0;
}

int dynq__run_isclass(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  const dynq__tensor_t *x = in[0];
  if ((rc = dynq__op_need_f32(c, x, 0))) return rc;
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_U8, x->rank, x->dims, 0))) return rc;
  const int nan_op = c->node->op == DYNQ_OP_IS_NAN, neg = c->st->isinf.neg, pos = c->st->isinf.pos;
  const float *p = x->data;
  uint8_t *q = out->data;
  const int64_t n = dynq__tensor_numel(x);
  for (int64_t i = 0; i < n; i++)
    q[i] = nan_op ? isnan(p[i]) != 0 : isinf(p[i]) && (p[i] > 0 ? pos : neg);
  return 0;
}

/* ---- Min, Max, Sum, Mean: 1 to DYNQ_BCAST_MAX inputs, numpy broadcasting;
 * float (a NaN operand gives NaN) or integer (Min/Max/Sum) ---- */

int dynq__run_variadic(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  int rc, op = c->node->op, nin = 0;
  const dynq__tensor_t *t[DYNQ_BCAST_MAX];
  for (int k = 0; k < DYNQ_BCAST_MAX && k < c->node->n_in; k++) {
    if ((rc = dynq__op_need_present(c, in[k], k))) return rc;
    if (in[k]->dtype != in[0]->dtype)
      return dynq__op_fail(c, DYNQ_EDTYPE, "input %d is %s, input 0 %s; they must match", k,
                           dynq__dtype_name(in[k]->dtype), dynq__dtype_name(in[0]->dtype));
    t[nin++] = in[k];
  }
  const dynq_dtype_t dt = t[0]->dtype;
  const int fl = dt == DYNQ_DT_F32;
  if (!fl && (!dynq__dt_is_int(dt) || op == DYNQ_OP_MEAN))
    return dynq__op_fail(c, DYNQ_EDTYPE, "input is %s, expected float32%s",
                         dynq__dtype_name(dt), op == DYNQ_OP_MEAN ? "" : " or an integer type");
  dynq__bcast_t bc;
  if ((rc = dynq__bcast_init(c, nin, t, &bc))) return rc;
  if ((rc = dynq__op_alloc(c, out, dt, bc.rank, bc.dims, 0))) return rc;
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[DYNQ_BCAST_MAX] = {0};
  for (int64_t i = 0; i < bc.n; i++, dynq__bcast_next(&bc, nin, cnt, off)) {
    if (fl) {
      float r = ((const float *)t[0]->data)[off[0]];
      for (int k = 1; k < nin; k++) {
        float v = ((const float *)t[k]->data)[off[k]];
        if (op == DYNQ_OP_MIN) r = (v < r || v != v) ? v : r;
        else if (op == DYNQ_OP_MAX) r = (v > r || v != v) ? v : r;
        else r += v;
      }
      ((float *)out->data)[i] = op == DYNQ_OP_MEAN ? r / (float)nin : r;
    } else {
      int64_t r = dynq__load_i(t[0]->data, dt, off[0]);
      for (int k = 1; k < nin; k++) {
        int64_t v = dynq__load_i(t[k]->data, dt, off[k]);
        if (op == DYNQ_OP_MIN) r = v < r ? v : r;
        else if (op == DYNQ_OP_MAX) r = v > r ? v : r;
        else r = (int64_t)((uint64_t)r + (uint64_t)v);
      }
      dynq__store_i(out->data, dt, i, r);
    }
  }
  return 0;
}

/* ---- Mod(A, B): fmod 0, integers: the remainder takes the divisor's sign
 * (Python's %); fmod 1: C's fmod, the dividend's sign (float32 must use
 * it: the importer refuses fmod 0 on floats) ---- */

int dynq__prep_mod(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                   char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->mod.fmod = dynq__node_attr_i(n, "fmod", 0) != 0;
  return 0;
}

int dynq__run_mod(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1)))
    return rc;
  const dynq__tensor_t *a = in[0], *b = in[1];
  if (a->dtype != b->dtype)
    return dynq__op_fail(c, DYNQ_EDTYPE, "inputs are %s and %s; they must match",
                         dynq__dtype_name(a->dtype), dynq__dtype_name(b->dtype));
  const int fl = a->dtype == DYNQ_DT_F32, fm = c->st->mod.fmod;
  if (!fl && !dynq__dt_is_int(a->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(a->dtype));
  if (fl && !fm) return dynq__op_fail(c, DYNQ_EDTYPE, "float32 inputs need fmod = 1");
  dynq__bcast_t bc;
  if ((rc = dynq__bcast_init(c, 2, in, &bc))) return rc;
  if ((rc = dynq__op_alloc(c, out, a->dtype, bc.rank, bc.dims, 0))) return rc;
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[2] = {0, 0};
  for (int64_t i = 0; i < bc.n; i++, dynq__bcast_next(&bc, 2, cnt, off)) {
    if (fl) {
      ((float *)out->data)[i] =
          fmodf(((const float *)a->data)[off[0]], ((const float *)b->data)[off[1]]);
      continue;
    }
    int64_t x = dynq__load_i(a->data, a->dtype, off[0]), y = dynq__load_i(b->data, b->dtype, off[1]);
    if (y == 0) {
      dynq__tensor_clear(out);
      return dynq__op_fail(c, DYNQ_ENUMERIC, "integer modulo by zero");
    }
    int64_t r = y == -1 ? 0 : x % y; /* INT64_MIN % -1 overflows in C */
    if (!fm && r != 0 && ((r < 0) != (y < 0))) r += y;
    dynq__store_i(out->data, a->dtype, i, r);
  }
  return 0;
}
