/*
 * Elementwise ops: arithmetic, comparison and logic on two inputs with
 * numpy broadcasting (float32 fast paths, any dtype generically), unary
 * math, Clip, Where, Cast.  Float math beyond + - * / and sqrt goes
 * through vmath.h, so a sigmoid here gives the bits a fused QLinear
 * epilogue or an LSTM gate gives.  ONNX bool travels as uint8 0/1.
 */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "vmath.h"

/* ---- elementwise binary with numpy broadcasting ---- */

/* The op is chosen once per call, not per element (an indirect call per
 * element was most of an Add's cost), so each loop is a plain one. */
enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV };

/* o[i] = a[i * sa] (op) b[i * sb] for i < n; strides 0 or 1, each case
 * its own loop (unit strides vectorize; a scalar operand is read once).
 * o may be a or b (in place): element i is read before it is written. */
#define BINARY_LOOPS(OP)                                                       \
  do {                                                                         \
    if (sa && sb) {                                                            \
      for (int64_t i = 0; i < n; i++) o[i] = a[i] OP b[i];                     \
    } else if (sa) {                                                           \
      const float y = b[0];                                                    \
      for (int64_t i = 0; i < n; i++) o[i] = a[i] OP y;                        \
    } else if (sb) {                                                           \
      const float x = a[0];                                                    \
      for (int64_t i = 0; i < n; i++) o[i] = x OP b[i];                        \
    } else {                                                                   \
      const float r = a[0] OP b[0];                                            \
      for (int64_t i = 0; i < n; i++) o[i] = r;                                \
    }                                                                          \
  } while (0)

static void binary_run(int kind, float *o, const float *a, int64_t sa, const float *b,
                       int64_t sb, int64_t n) {
  if (n <= 0) return;
  switch (kind) {
  case OP_ADD: BINARY_LOOPS(+); break;
  case OP_SUB: BINARY_LOOPS(-); break;
  case OP_MUL: BINARY_LOOPS(*); break;
  default: BINARY_LOOPS(/); break;
  }
}
#undef BINARY_LOOPS

static int binary_f32(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                      dynq__tensor_t *out, int kind) {
  const dynq__tensor_t *a = in[0], *b = in[1];
  int rc;
  /* int64 shape arithmetic and the like: the generic path */
  if (a->dtype != DYNQ_DT_F32 || b->dtype != DYNQ_DT_F32) return dynq__run_binary_any(c, in, out);
  dynq__bcast_t bc;
  if ((rc = dynq__bcast_init(c, 2, in, &bc))) return rc;
  const int r = bc.rank;
  const int64_t n = bc.n, na = dynq__tensor_numel(a), nb = dynq__tensor_numel(b);
  /* In place into an input of the output's shape when the executor offers
   * it: every output element is written from the same index of that
   * input (its strides are the output's), after it was read. */
  if ((rc = dynq__op_out_like(c, c->donor[0] != NULL && na == n ? 0 : 1, DYNQ_DT_F32, r,
                              bc.dims, out)))
    return rc;
  const float *pa = a->data, *pb = b->data;
  float *po = out->data;
  if (n == 0) return 0;
  if ((na == n || na == 1) && (nb == n || nb == 1)) {
    /* same shapes, or a scalar on one side: no index arithmetic */
    binary_run(kind, po, pa, na == n, pb, nb == n, n);
    return 0;
  }
  /* The innermost dimension as a tight loop. */
  const int64_t inner = r > 0 ? bc.dims[r - 1] : 1;
  const int64_t ia = r > 0 ? bc.st[0][r - 1] : 0, ib = r > 0 ? bc.st[1][r - 1] : 0;
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[2] = {0, 0};
  for (int64_t o = 0; o < n; o += inner) {
    binary_run(kind, po + o, pa + off[0], ia, pb + off[1], ib, inner);
    dynq__bcast_next_row(&bc, 2, cnt, off);
  }
  return 0;
}

int dynq__run_add(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return binary_f32(c, in, out, OP_ADD); }
int dynq__run_sub(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return binary_f32(c, in, out, OP_SUB); }
int dynq__run_mul(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return binary_f32(c, in, out, OP_MUL); }
int dynq__run_div(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return binary_f32(c, in, out, OP_DIV); }

/* ---- elementwise unary ---- */

static int unary_f32(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                     dynq__tensor_t *out, int kind) {
  int rc;
  if ((rc = dynq__op_need_f32(c, in[0], 0))) return rc;
  /* in place when the executor offers the input: y[i] depends on x[i] only */
  if ((rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, in[0]->rank, in[0]->dims, out))) return rc;
  const float *x = in[0]->data;
  float *y = out->data;
  int64_t n = dynq__tensor_numel(out);
  switch (kind) {
  case DYNQ_OP_RELU:
    /* On the bits, without a branch: activations change sign at random,
     * and the mispredicted branch (the compiler keeps one even for a
     * ?: select) made Relu ~10 % of a batched Silero chunk.  Kept: values
     * > 0, +inf and NaN of either sign; zeroed: negatives, -inf and -0.0
     * (all as x > 0 ? x : (isnan(x) ? x : 0) would give). */
    for (int64_t i = 0; i < n; i++) {
      uint32_t u;
      memcpy(&u, &x[i], sizeof(u));
      uint32_t keep = (uint32_t)((int32_t)u > 0) | (uint32_t)(u > 0xff800000u);
      u &= 0u - keep;
      memcpy(&y[i], &u, sizeof(u));
    }
    break;
  case DYNQ_OP_SIGMOID:
    dynq__vmath_apply(DYNQ_VMATH_SIGMOID, x, y, n);
    break;
  case DYNQ_OP_TANH:
    dynq__vmath_apply(DYNQ_VMATH_TANH, x, y, n);
    break;
  case DYNQ_OP_ERF:
    dynq__vmath_apply(DYNQ_VMATH_ERF, x, y, n);
    break;
  default:
    if (y != x) memcpy(y, x, (size_t)n * sizeof(float));
  }
  return 0;
}

int dynq__run_relu(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return unary_f32(c, in, out, DYNQ_OP_RELU); }

/* HardSigmoid max(0, min(1, alpha x + beta)); HardSwish x * HardSigmoid
 * with alpha 1/6, beta 1/2 (ONNX's definitions).  NaN propagates. */
int dynq__prep_hard(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                    char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->hard.alpha = dynq__node_attr_f(n, "alpha", 0.2f);
  st->hard.beta = dynq__node_attr_f(n, "beta", 0.5f);
  return 0;
}

static int hard_f32(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out,
                    float alpha, float beta, int swish) {
  int rc;
  if ((rc = dynq__op_need_f32(c, in[0], 0))) return rc;
  if ((rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, in[0]->rank, in[0]->dims, out))) return rc;
  const float *x = in[0]->data;
  float *y = out->data;
  int64_t n = dynq__tensor_numel(out);
  /* the clamps in maxps/minps operand order (NaN stays NaN), and one loop
   * per op: both vectorize */
  if (swish)
    for (int64_t i = 0; i < n; i++) {
      float v = alpha * x[i] + beta;
      v = 0.0f > v ? 0.0f : v;
      v = 1.0f < v ? 1.0f : v;
      y[i] = x[i] * v;
    }
  else
    for (int64_t i = 0; i < n; i++) {
      float v = alpha * x[i] + beta;
      v = 0.0f > v ? 0.0f : v;
      v = 1.0f < v ? 1.0f : v;
      y[i] = v;
    }
  return 0;
}

int dynq__run_hardsigmoid(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                          dynq__tensor_t *out) {
  return hard_f32(c, in, out, c->st->hard.alpha, c->st->hard.beta, 0);
}

int dynq__run_hardswish(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                        dynq__tensor_t *out) {
  return hard_f32(c, in, out, 1.0f / 6.0f, 0.5f, 1);
}
int dynq__run_sigmoid(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return unary_f32(c, in, out, DYNQ_OP_SIGMOID); }
int dynq__run_tanh(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return unary_f32(c, in, out, DYNQ_OP_TANH); }
int dynq__run_erf(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return unary_f32(c, in, out, DYNQ_OP_ERF); }

/* A move instead of a copy when the executor offers the input. */
int dynq__run_identity(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  return dynq__op_reshape_to(c, 0, in[0], in[0]->rank, in[0]->dims, out);
}

/* ---- elementwise binary: arithmetic, comparison, logic ---- */

enum { B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_EQ, B_LT, B_GT, B_GE, B_LE, B_AND, B_OR, B_XOR };

static int binary_kind(int op) {
  switch (op) {
  case DYNQ_OP_ADD: return B_ADD;
  case DYNQ_OP_SUB: return B_SUB;
  case DYNQ_OP_MUL: return B_MUL;
  case DYNQ_OP_DIV: return B_DIV;
  case DYNQ_OP_POW: return B_POW;
  case DYNQ_OP_EQUAL: return B_EQ;
  case DYNQ_OP_LESS: return B_LT;
  case DYNQ_OP_GREATER: return B_GT;
  case DYNQ_OP_GREATER_OR_EQUAL: return B_GE;
  case DYNQ_OP_LESS_OR_EQUAL: return B_LE;
  case DYNQ_OP_AND: return B_AND;
  case DYNQ_OP_XOR: return B_XOR;
  default: return B_OR;
  }
}

/* Float Pow by a scalar exponent the graph uses for magnitudes (2, 0.5)
 * and a few more, without libm pow: x*x is what (float)pow(x, 2) gives
 * bit for bit (the double product of two floats is exact), sqrtf is the
 * correctly rounded root (pow's special cases for -0 and -inf kept).
 * Returns 1 when it wrote out, 0 for other exponents. */
static int pow_fast(const float *x, const dynq__tensor_t *b, float *o, int64_t n) {
  double e = dynq__load_d(b->data, b->dtype, 0);
  if (e == 2.0) {
    for (int64_t i = 0; i < n; i++) o[i] = x[i] * x[i];
  } else if (e == 1.0) {
    for (int64_t i = 0; i < n; i++) o[i] = x[i];
  } else if (e == 3.0) {
    for (int64_t i = 0; i < n; i++) o[i] = (float)((double)x[i] * x[i] * x[i]);
  } else if (e == 0.5) {
    for (int64_t i = 0; i < n; i++) {
      float v = x[i];
      o[i] = v == 0.0f ? 0.0f : v == -INFINITY ? INFINITY : sqrtf(v);
    }
  } else {
    return 0;
  }
  return 1;
}

int dynq__run_binary_any(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                         dynq__tensor_t *out) {
  int rc, kind = binary_kind(c->node->op);
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1))) return rc;
  const dynq__tensor_t *a = in[0], *b = in[1];
  if (kind != B_POW && a->dtype != b->dtype)
    return dynq__op_fail(c, DYNQ_EDTYPE, "inputs are %s and %s; they must match",
                         dynq__dtype_name(a->dtype), dynq__dtype_name(b->dtype));
  if (kind >= B_AND && a->dtype != DYNQ_DT_U8)
    return dynq__op_fail(c, DYNQ_EDTYPE, "inputs must be bool (uint8), are %s",
                         dynq__dtype_name(a->dtype));
  dynq__bcast_t bc;
  if ((rc = dynq__bcast_init(c, 2, in, &bc))) return rc;
  dynq_dtype_t odt = kind >= B_EQ ? DYNQ_DT_U8 : a->dtype;
  const int fl = a->dtype == DYNQ_DT_F32;
  const int64_t na = dynq__tensor_numel(a), nb = dynq__tensor_numel(b);
  /* The float fast paths below read element i of a (and of b unless it
   * is a scalar) before writing element i: they may run in place. */
  const int fast = fl && na == bc.n &&
                   ((kind == B_POW && nb == 1) || (kind <= B_DIV && (nb == bc.n || nb == 1)));
  if (fast) {
    if ((rc = dynq__op_out_like(c, c->donor[0] != NULL || nb == 1 ? 0 : 1, odt, bc.rank,
                                bc.dims, out)))
      return rc;
  } else if ((rc = dynq__op_alloc(c, out, odt, bc.rank, bc.dims, 0))) {
    return rc;
  }
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[2] = {0, 0};
  const void *pa = a->data, *pb = b->data;
  void *po = out->data;
  if (fast && kind == B_POW && pow_fast(pa, b, po, bc.n)) return 0;
  if (fast && kind <= B_DIV) {
    /* same shapes, or a scalar on the right: no index arithmetic */
    const float *x = pa, *y = pb;
    float *o = po;
    const int64_t ys = dynq__tensor_numel(b) == 1 ? 0 : 1;
    switch (kind) {
    case B_ADD: for (int64_t i = 0; i < bc.n; i++) o[i] = x[i] + y[i * ys]; break;
    case B_SUB: for (int64_t i = 0; i < bc.n; i++) o[i] = x[i] - y[i * ys]; break;
    case B_MUL: for (int64_t i = 0; i < bc.n; i++) o[i] = x[i] * y[i * ys]; break;
    default: for (int64_t i = 0; i < bc.n; i++) o[i] = x[i] / y[i * ys]; break;
    }
    return 0;
  }
  for (int64_t i = 0; i < bc.n; i++, dynq__bcast_next(&bc, 2, cnt, off)) {
    if (kind == B_POW) {
      double r = pow(dynq__load_d(pa, a->dtype, off[0]), dynq__load_d(pb, b->dtype, off[1]));
      if (fl) ((float *)po)[i] = (float)r;
      else dynq__store_i(po, odt, i, (r >= -9.2e18 && r <= 9.2e18) ? (int64_t)r : 0);
      continue;
    }
    if (fl) {
      float x = ((const float *)pa)[off[0]], y = ((const float *)pb)[off[1]];
      switch (kind) {
      case B_ADD: ((float *)po)[i] = x + y; break;
      case B_SUB: ((float *)po)[i] = x - y; break;
      case B_MUL: ((float *)po)[i] = x * y; break;
      case B_DIV: ((float *)po)[i] = x / y; break;
      case B_EQ: ((uint8_t *)po)[i] = x == y; break;
      case B_LT: ((uint8_t *)po)[i] = x < y; break;
      case B_GT: ((uint8_t *)po)[i] = x > y; break;
      case B_GE: ((uint8_t *)po)[i] = x >= y; break;
      case B_LE: ((uint8_t *)po)[i] = x <= y; break;
      default: break;
      }
      continue;
    }
    int64_t x = dynq__load_i(pa, a->dtype, off[0]), y = dynq__load_i(pb, b->dtype, off[1]);
    int64_t r = 0;
    switch (kind) {
    /* unsigned arithmetic: int64 overflow wraps instead of being UB */
    case B_ADD: r = (int64_t)((uint64_t)x + (uint64_t)y); break;
    case B_SUB: r = (int64_t)((uint64_t)x - (uint64_t)y); break;
    case B_MUL: r = (int64_t)((uint64_t)x * (uint64_t)y); break;
    case B_DIV:
      if (y == 0 || (y == -1 && x == INT64_MIN)) {
        dynq__tensor_clear(out);
        return dynq__op_fail(c, DYNQ_ENUMERIC, y == 0 ? "integer division by zero"
                                                      : "integer division overflows");
      }
      r = x / y;
      break;
    case B_EQ: r = x == y; break;
    case B_LT: r = x < y; break;
    case B_GT: r = x > y; break;
    case B_GE: r = x >= y; break;
    case B_LE: r = x <= y; break;
    case B_AND: r = (x != 0) & (y != 0); break;
    case B_OR: r = (x != 0) | (y != 0); break;
    case B_XOR: r = (x != 0) ^ (y != 0); break;
    default: break;
    }
    dynq__store_i(po, odt, i, r);
  }
  return 0;
}

/* ---- Where ---- */
/* ---- Where ---- */

int dynq__run_where(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  for (int k = 0; k < 3; k++)
    if ((rc = dynq__op_need_present(c, in[k], k))) return rc;
  if (in[0]->dtype != DYNQ_DT_U8)
    return dynq__op_fail(c, DYNQ_EDTYPE, "condition must be bool (uint8), is %s",
                         dynq__dtype_name(in[0]->dtype));
  if (in[1]->dtype != in[2]->dtype)
    return dynq__op_fail(c, DYNQ_EDTYPE, "X is %s and Y is %s; they must match",
                         dynq__dtype_name(in[1]->dtype), dynq__dtype_name(in[2]->dtype));
  dynq__bcast_t bc;
  if ((rc = dynq__bcast_init(c, 3, in, &bc))) return rc;
  if ((rc = dynq__op_alloc(c, out, in[1]->dtype, bc.rank, bc.dims, 0))) return rc;
  if (bc.n == 0) return 0;
  const size_t es = dynq__dtype_size(in[1]->dtype);
  /* row by row along the last axis, each operand read with its stride
   * there (1, or 0 where it is broadcast) */
  const int last = bc.rank - 1;
  const int64_t len = bc.rank > 0 ? bc.dims[last] : 1;
  const int64_t s0 = last >= 0 ? bc.st[0][last] : 0, s1 = last >= 0 ? bc.st[1][last] : 0,
                s2 = last >= 0 ? bc.st[2][last] : 0;
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[3] = {0, 0, 0};
  char *o = out->data;
  for (int64_t row = 0; row < bc.n / len; row++, o += (size_t)len * es) {
    const uint8_t *cond = (const uint8_t *)in[0]->data + off[0];
    const char *x = (const char *)in[1]->data + (size_t)off[1] * es;
    const char *y = (const char *)in[2]->data + (size_t)off[2] * es;
    if (es == 4) {
      const uint32_t *xv = (const uint32_t *)x, *yv = (const uint32_t *)y;
      for (int64_t k = 0; k < len; k++)
        ((uint32_t *)o)[k] = cond[k * s0] ? xv[k * s1] : yv[k * s2];
    } else {
      for (int64_t k = 0; k < len; k++)
        memcpy(o + (size_t)k * es, cond[k * s0] ? x + (size_t)(k * s1) * es
                                                : y + (size_t)(k * s2) * es, es);
    }
    dynq__bcast_next_row(&bc, 3, cnt, off);
  }
  return 0;
}


/* ---- elementwise unary ---- */

int dynq__run_unary_any(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                         dynq__tensor_t *out) {
  int rc, op = c->node->op;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  int float_only = op == DYNQ_OP_SQRT || op == DYNQ_OP_LOG || op == DYNQ_OP_EXP;
  if (float_only && x->dtype != DYNQ_DT_F32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "input is %s, expected float32", dynq__dtype_name(x->dtype));
  if (op == DYNQ_OP_NOT && x->dtype != DYNQ_DT_U8)
    return dynq__op_fail(c, DYNQ_EDTYPE, "input is %s, expected bool (uint8)", dynq__dtype_name(x->dtype));
  /* in place when offered: element i depends on x[i] only */
  if ((rc = dynq__op_out_like(c, 0, x->dtype, x->rank, x->dims, out))) return rc;
  int64_t n = dynq__tensor_numel(x);
  if (x->dtype == DYNQ_DT_F32) {
    const float *p = x->data;
    float *q = out->data;
    /* one loop per op: the switch is decided once, not per element */
    switch (op) {
    case DYNQ_OP_SQRT: for (int64_t i = 0; i < n; i++) q[i] = sqrtf(p[i]); break;
    case DYNQ_OP_LOG: for (int64_t i = 0; i < n; i++) q[i] = logf(p[i]); break;
    case DYNQ_OP_EXP: for (int64_t i = 0; i < n; i++) q[i] = dynq_vexp(p[i]); break;
    case DYNQ_OP_NEG: for (int64_t i = 0; i < n; i++) q[i] = -p[i]; break;
    default: for (int64_t i = 0; i < n; i++) q[i] = fabsf(p[i]); break;
    }
    return 0;
  }
  for (int64_t i = 0; i < n; i++) {
    int64_t v = dynq__load_i(x->data, x->dtype, i);
    if (op == DYNQ_OP_NOT) v = !v;
    else if (op == DYNQ_OP_NEG) v = (int64_t)(0 - (uint64_t)v);
    else if (v < 0) v = (int64_t)(0 - (uint64_t)v);
    dynq__store_i(out->data, x->dtype, i, v);
  }
  return 0;
}

/* ---- Clip ---- */

int dynq__run_clip(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  if (x->dtype != DYNQ_DT_F32 && !dynq__dt_is_int(x->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  double lo = -INFINITY, hi = INFINITY;
  for (int k = 1; k <= 2; k++) {
    const dynq__tensor_t *b = in[k];
    if (b == NULL) continue;
    if (b->dtype != x->dtype || dynq__tensor_numel(b) != 1)
      return dynq__op_fail(c, DYNQ_ESHAPE, "%s must be a one-element %s tensor",
                           k == 1 ? "min" : "max", dynq__dtype_name(x->dtype));
    double v = dynq__load_d(b->data, b->dtype, 0);
    if (k == 1) lo = v;
    else hi = v;
  }
  if ((rc = dynq__op_alloc(c, out, x->dtype, x->rank, x->dims, 1))) return rc;
  int64_t n = dynq__tensor_numel(x);
  if (x->dtype == DYNQ_DT_F32) {
    const float *p = x->data;
    float *q = out->data;
    float flo = (float)lo, fhi = (float)hi;
    for (int64_t i = 0; i < n; i++) {
      float v = p[i];
      if (v < flo) v = flo;
      if (v > fhi) v = fhi;
      q[i] = v;
    }
    return 0;
  }
  for (int64_t i = 0; i < n; i++) {
    int64_t v = dynq__load_i(x->data, x->dtype, i);
    if (in[1] && v < dynq__load_i(in[1]->data, x->dtype, 0)) v = dynq__load_i(in[1]->data, x->dtype, 0);
    if (in[2] && v > dynq__load_i(in[2]->data, x->dtype, 0)) v = dynq__load_i(in[2]->data, x->dtype, 0);
    dynq__store_i(out->data, x->dtype, i, v);
  }
  return 0;
}

/* ---- Cast ---- */

/* x rounded to the nearest float16 (ties to even), kept as a float:
 * overflow to infinity, half's subnormals below 2^-14. */
static float round_half(float x) {
  float a = fabsf(x);
  if (!(a < INFINITY)) return x; /* NaN, infinities */
  int e;
  frexpf(a, &e);             /* a = m 2^e, m in [0.5, 1) */
  int q = e - 11 < -24 ? -24 : e - 11; /* quantum 2^q: 11 significant bits, or subnormal */
  float r = ldexpf(nearbyintf(ldexpf(a, -q)), q);
  if (r > 65504.0f) r = INFINITY;
  return copysignf(r, x);
}

/* x rounded to the nearest bfloat16 (ties to even: the top 16 bits of a
 * float32, as PyTorch, ONNX Runtime and ONNX's reference since 1.14
 * round), kept as a float; NaN stays NaN, overflow goes to infinity. */
static float round_bf16(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return x;
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  memcpy(&x, &u, sizeof(u));
  return x;
}

int dynq__run_cast(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  int64_t to = c->st->cast.to;
  int to_bool = c->st->cast.to_bool;
  if (to <= 0 || to >= DYNQ_DT__COUNT)
    return dynq__op_fail(c, DYNQ_EUNSUPPORTED, "cannot cast to dtype code %lld", (long long)to);
  dynq_dtype_t dt = (dynq_dtype_t)to;
  int64_t n = dynq__tensor_numel(x);
  if (c->st->cast.half || c->st->cast.bf16) {
    /* to float16 or bfloat16, carried as float32 (the engine has no
     * 16-bit float tensors) */
    if ((rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, x->rank, x->dims, out))) return rc;
    float *py = out->data;
    if (c->st->cast.bf16)
      for (int64_t i = 0; i < n; i++) py[i] = round_bf16((float)dynq__load_d(x->data, x->dtype, i));
    else
      for (int64_t i = 0; i < n; i++) py[i] = round_half((float)dynq__load_d(x->data, x->dtype, i));
    return 0;
  }
  if (!to_bool && dt == x->dtype) {
    /* to its own dtype (Silero casts float to float every chunk): the
     * per-element round trip through double changes no value; a move
     * when the executor offers the input */
    if ((rc = dynq__op_out_like(c, 0, dt, x->rank, x->dims, out))) return rc;
    if (out->data != x->data && n > 0) memcpy(out->data, x->data, (size_t)n * dynq__dtype_size(dt));
    return 0;
  }
  if ((rc = dynq__op_alloc(c, out, dt, x->rank, x->dims, 0))) return rc;
  for (int64_t i = 0; i < n; i++) {
    if (to_bool) {
      ((uint8_t *)out->data)[i] = dynq__load_d(x->data, x->dtype, i) != 0.0;
    } else if (dt == DYNQ_DT_F32) {
      ((float *)out->data)[i] = (float)dynq__load_d(x->data, x->dtype, i);
    } else if (x->dtype == DYNQ_DT_F32) {
      /* float -> int: truncate toward zero; NaN and out-of-range values
       * (undefined in C) saturate instead. */
      float f = ((const float *)x->data)[i];
      int64_t v;
      if (f != f) v = 0;
      else if (f >= 9.2233720368547758e18f) v = INT64_MAX;
      else if (f <= -9.2233720368547758e18f) v = INT64_MIN;
      else v = (int64_t)f;
      dynq__store_i(out->data, dt, i, v);
    } else {
      dynq__store_i(out->data, dt, i, dynq__load_i(x->data, x->dtype, i));
    }
  }
  return 0;
}


int dynq__prep_cast(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                    char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->cast.to = (int)dynq__node_attr_i(n, "to", 0);
  st->cast.half = dynq__node_attr_i(n, "half", 0) != 0;
  st->cast.bf16 = dynq__node_attr_i(n, "bf16", 0) != 0;
  st->cast.to_bool = (int)dynq__node_attr_i(n, "to_bool", 0);
  return 0;
}
