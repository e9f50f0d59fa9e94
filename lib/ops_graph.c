/*
 * Shape and graph operators that exporters emit (Shape, Gather, Slice,
 * Concat, Cast, Where, reductions, If, ...), for float32, int64, int32,
 * int8 and uint8 (ONNX bool travels as uint8 0/1).  Table indexed by
 * dynq_op_t, consulted by dynq__opdef().
 *
 * Everything here runs on shapes that may come from a request, so every
 * index, count and product is range-checked before use and every failure
 * names the node (dynq__op_fail).  Lists the ONNX spec keeps in attributes
 * (axes, perm, pads) arrive as int64 inputs: the importer turns attributes
 * into constant inputs so one run function serves every opset.
 *
 * If: the importer inlines both branches after the IF node as two node
 * ranges (attrs then_nodes, else_nodes); IF outputs a uint8 flag and the
 * executor skips the range not taken.  PHI(flag, then_v, else_v) picks the
 * branch result afterwards, so the graph stays a flat, validated list.
 */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"

static int alloc_out(dynq__op_ctx_t *c, dynq__tensor_t *o, dynq_dtype_t dt, int rank,
                     const int64_t *dims) {
  int rc = dynq__tensor_alloc(o, dt, rank, dims);
  if (rc == DYNQ_ELIMIT) return dynq__op_fail(c, rc, "output too large");
  if (rc != 0) return dynq__op_fail(c, rc, "out of memory");
  return 0;
}

/* For ops that write every output element: no zero-fill. */
static int alloc_out_full(dynq__op_ctx_t *c, dynq__tensor_t *o, dynq_dtype_t dt, int rank,
                          const int64_t *dims) {
  int rc = dynq__tensor_alloc_uninit(o, dt, rank, dims);
  if (rc == DYNQ_ELIMIT) return dynq__op_fail(c, rc, "output too large");
  if (rc != 0) return dynq__op_fail(c, rc, "out of memory");
  return 0;
}

static int need_present(dynq__op_ctx_t *c, const dynq__tensor_t *t, int idx) {
  if (t == NULL) return dynq__op_fail(c, DYNQ_EGRAPH, "input %d is missing", idx);
  if (t->data == NULL && dynq__tensor_numel(t) != 0)
    return dynq__op_fail(c, DYNQ_EGRAPH, "input %d was not computed", idx);
  return 0;
}

static int is_int(dynq_dtype_t dt) {
  return dt == DYNQ_DT_I64 || dt == DYNQ_DT_I32 || dt == DYNQ_DT_I8 || dt == DYNQ_DT_U8;
}

static int64_t load_i(const void *p, dynq_dtype_t dt, int64_t i) {
  switch (dt) {
  case DYNQ_DT_I64: return ((const int64_t *)p)[i];
  case DYNQ_DT_I32: return ((const int32_t *)p)[i];
  case DYNQ_DT_I8: return ((const int8_t *)p)[i];
  case DYNQ_DT_U8: return ((const uint8_t *)p)[i];
  case DYNQ_DT_F32: return (int64_t)((const float *)p)[i];
  default: return 0;
  }
}

static void store_i(void *p, dynq_dtype_t dt, int64_t i, int64_t v) {
  /* Narrowing wraps (two's complement), as numpy and ONNX Runtime do. */
  switch (dt) {
  case DYNQ_DT_I64: ((int64_t *)p)[i] = v; break;
  case DYNQ_DT_I32: ((int32_t *)p)[i] = (int32_t)(uint32_t)(uint64_t)v; break;
  case DYNQ_DT_I8: ((int8_t *)p)[i] = (int8_t)(uint8_t)(uint64_t)v; break;
  case DYNQ_DT_U8: ((uint8_t *)p)[i] = (uint8_t)(uint64_t)v; break;
  case DYNQ_DT_F32: ((float *)p)[i] = (float)v; break;
  default: break;
  }
}

static double load_d(const void *p, dynq_dtype_t dt, int64_t i) {
  if (dt == DYNQ_DT_F32) return ((const float *)p)[i];
  return (double)load_i(p, dt, i);
}

/* An int64 (or int32) 1-D or scalar tensor read into v[0..max). */
static int read_ints(dynq__op_ctx_t *c, const dynq__tensor_t *t, const char *what,
                     int64_t *v, int max, int *ret_n) {
  if (t->dtype != DYNQ_DT_I64 && t->dtype != DYNQ_DT_I32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "%s must be int64, is %s", what,
                         dynq__dtype_name(t->dtype));
  if (t->rank > 1) return dynq__op_fail(c, DYNQ_ESHAPE, "%s must be 1-D, has rank %d", what, t->rank);
  int64_t n = dynq__tensor_numel(t);
  if (n < 0 || n > max)
    return dynq__op_fail(c, DYNQ_ESHAPE, "%s has %lld values; at most %d allowed", what,
                         (long long)n, max);
  for (int64_t i = 0; i < n; i++) v[i] = load_i(t->data, t->dtype, i);
  *ret_n = (int)n;
  return 0;
}

static int norm_axis(dynq__op_ctx_t *c, int64_t axis, int rank, int *ret) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    return dynq__op_fail(c, DYNQ_ESHAPE, "axis %lld out of range for rank %d",
                         (long long)axis, rank);
  *ret = (int)a;
  return 0;
}

/* ---- broadcasting ---- */

typedef struct bcast {
  int rank;
  int64_t dims[DYNQ_MAX_RANK];
  int64_t st[3][DYNQ_MAX_RANK]; /* element strides per input, 0 where broadcast */
  int64_t n;
} bcast_t;

static int bcast_init(dynq__op_ctx_t *c, int nin, const dynq__tensor_t *const *t,
                      bcast_t *b) {
  int r = 0;
  for (int k = 0; k < nin; k++) r = t[k]->rank > r ? t[k]->rank : r;
  b->rank = r;
  for (int d = r - 1; d >= 0; d--) {
    int64_t out = 1;
    for (int k = 0; k < nin; k++) {
      int i = d - (r - t[k]->rank);
      int64_t dk = i >= 0 ? t[k]->dims[i] : 1;
      if (dk == 1) continue;
      if (out != 1 && dk != out) {
        char x[96], y[96];
        return dynq__op_fail(c, DYNQ_ESHAPE, "shapes %s and %s do not broadcast",
                             dynq__shape_str(x, sizeof(x), t[0]->rank, t[0]->dims),
                             dynq__shape_str(y, sizeof(y), t[k]->rank, t[k]->dims));
      }
      out = dk;
    }
    b->dims[d] = out;
  }
  for (int k = 0; k < nin; k++) {
    int64_t e = 1;
    for (int d = r - 1; d >= 0; d--) {
      int i = d - (r - t[k]->rank);
      int64_t dk = i >= 0 ? t[k]->dims[i] : 1;
      b->st[k][d] = dk == 1 ? 0 : e;
      e *= dk;
    }
  }
  b->n = dynq__shape_numel(r, b->dims);
  if (b->n < 0) return dynq__op_fail(c, DYNQ_ELIMIT, "broadcast result too large");
  return 0;
}

/* Advance the multi-index and the input offsets by one output element. */
static inline void bcast_next(const bcast_t *b, int nin, int64_t *cnt, int64_t *off) {
  for (int d = b->rank - 1; d >= 0; d--) {
    cnt[d]++;
    for (int k = 0; k < nin; k++) off[k] += b->st[k][d];
    if (cnt[d] < b->dims[d]) return;
    for (int k = 0; k < nin; k++) off[k] -= b->st[k][d] * b->dims[d];
    cnt[d] = 0;
  }
}

/* ---- elementwise binary: arithmetic, comparison, logic ---- */

enum { B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_EQ, B_LT, B_GT, B_AND, B_OR };

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
  case DYNQ_OP_AND: return B_AND;
  default: return B_OR;
  }
}

/* Float Pow by a scalar exponent the graph uses for magnitudes (2, 0.5)
 * and a few more, without libm pow: x*x is what (float)pow(x, 2) gives
 * bit for bit (the double product of two floats is exact), sqrtf is the
 * correctly rounded root (pow's special cases for -0 and -inf kept).
 * Returns 1 when it wrote out, 0 for other exponents. */
static int pow_fast(const float *x, const dynq__tensor_t *b, float *o, int64_t n) {
  double e = load_d(b->data, b->dtype, 0);
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
  if ((rc = need_present(c, in[0], 0)) || (rc = need_present(c, in[1], 1))) return rc;
  const dynq__tensor_t *a = in[0], *b = in[1];
  if (kind != B_POW && a->dtype != b->dtype)
    return dynq__op_fail(c, DYNQ_EDTYPE, "inputs are %s and %s; they must match",
                         dynq__dtype_name(a->dtype), dynq__dtype_name(b->dtype));
  if ((kind == B_AND || kind == B_OR) && a->dtype != DYNQ_DT_U8)
    return dynq__op_fail(c, DYNQ_EDTYPE, "inputs must be bool (uint8), are %s",
                         dynq__dtype_name(a->dtype));
  bcast_t bc;
  if ((rc = bcast_init(c, 2, in, &bc))) return rc;
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
  } else if ((rc = alloc_out_full(c, out, odt, bc.rank, bc.dims))) {
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
  for (int64_t i = 0; i < bc.n; i++, bcast_next(&bc, 2, cnt, off)) {
    if (kind == B_POW) {
      double r = pow(load_d(pa, a->dtype, off[0]), load_d(pb, b->dtype, off[1]));
      if (fl) ((float *)po)[i] = (float)r;
      else store_i(po, odt, i, (r >= -9.2e18 && r <= 9.2e18) ? (int64_t)r : 0);
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
      default: break;
      }
      continue;
    }
    int64_t x = load_i(pa, a->dtype, off[0]), y = load_i(pb, b->dtype, off[1]);
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
    case B_AND: r = (x != 0) & (y != 0); break;
    case B_OR: r = (x != 0) | (y != 0); break;
    default: break;
    }
    store_i(po, odt, i, r);
  }
  return 0;
}

/* ---- Where ---- */

static int run_where(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  for (int k = 0; k < 3; k++)
    if ((rc = need_present(c, in[k], k))) return rc;
  if (in[0]->dtype != DYNQ_DT_U8)
    return dynq__op_fail(c, DYNQ_EDTYPE, "condition must be bool (uint8), is %s",
                         dynq__dtype_name(in[0]->dtype));
  if (in[1]->dtype != in[2]->dtype)
    return dynq__op_fail(c, DYNQ_EDTYPE, "X is %s and Y is %s; they must match",
                         dynq__dtype_name(in[1]->dtype), dynq__dtype_name(in[2]->dtype));
  bcast_t bc;
  if ((rc = bcast_init(c, 3, in, &bc))) return rc;
  if ((rc = alloc_out_full(c, out, in[1]->dtype, bc.rank, bc.dims))) return rc;
  size_t es = dynq__dtype_size(in[1]->dtype);
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[3] = {0, 0, 0};
  const uint8_t *cond = in[0]->data;
  const char *x = in[1]->data, *y = in[2]->data;
  char *o = out->data;
  for (int64_t i = 0; i < bc.n; i++, bcast_next(&bc, 3, cnt, off)) {
    const char *src = cond[off[0]] ? x + (size_t)off[1] * es : y + (size_t)off[2] * es;
    memcpy(o + (size_t)i * es, src, es);
  }
  return 0;
}

/* ---- Expand ---- */

static int run_expand(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, n;
  int64_t shape[DYNQ_MAX_RANK];
  if ((rc = need_present(c, in[0], 0)) || (rc = need_present(c, in[1], 1))) return rc;
  if ((rc = read_ints(c, in[1], "shape", shape, DYNQ_MAX_RANK, &n))) return rc;
  dynq__tensor_t s = {.dtype = in[0]->dtype, .rank = n};
  for (int i = 0; i < n; i++) {
    if (shape[i] < 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "negative dimension %lld in shape", (long long)shape[i]);
    s.dims[i] = shape[i];
  }
  const dynq__tensor_t *pair[2] = {in[0], &s};
  bcast_t bc;
  if ((rc = bcast_init(c, 2, pair, &bc))) return rc;
  if ((rc = alloc_out_full(c, out, in[0]->dtype, bc.rank, bc.dims))) return rc;
  size_t es = dynq__dtype_size(in[0]->dtype);
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[2] = {0, 0};
  for (int64_t i = 0; i < bc.n; i++, bcast_next(&bc, 2, cnt, off))
    memcpy((char *)out->data + (size_t)i * es, (const char *)in[0]->data + (size_t)off[0] * es, es);
  return 0;
}

/* ---- elementwise unary ---- */

static int run_unary_any(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                         dynq__tensor_t *out) {
  int rc, op = c->node->op;
  if ((rc = need_present(c, in[0], 0))) return rc;
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
    case DYNQ_OP_EXP: for (int64_t i = 0; i < n; i++) q[i] = expf(p[i]); break;
    case DYNQ_OP_NEG: for (int64_t i = 0; i < n; i++) q[i] = -p[i]; break;
    default: for (int64_t i = 0; i < n; i++) q[i] = fabsf(p[i]); break;
    }
    return 0;
  }
  for (int64_t i = 0; i < n; i++) {
    int64_t v = load_i(x->data, x->dtype, i);
    if (op == DYNQ_OP_NOT) v = !v;
    else if (op == DYNQ_OP_NEG) v = (int64_t)(0 - (uint64_t)v);
    else if (v < 0) v = (int64_t)(0 - (uint64_t)v);
    store_i(out->data, x->dtype, i, v);
  }
  return 0;
}

/* ---- Clip ---- */

static int run_clip(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  if (x->dtype != DYNQ_DT_F32 && !is_int(x->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  double lo = -INFINITY, hi = INFINITY;
  for (int k = 1; k <= 2; k++) {
    const dynq__tensor_t *b = in[k];
    if (b == NULL) continue;
    if (b->dtype != x->dtype || dynq__tensor_numel(b) != 1)
      return dynq__op_fail(c, DYNQ_ESHAPE, "%s must be a one-element %s tensor",
                           k == 1 ? "min" : "max", dynq__dtype_name(x->dtype));
    double v = load_d(b->data, b->dtype, 0);
    if (k == 1) lo = v;
    else hi = v;
  }
  if ((rc = alloc_out(c, out, x->dtype, x->rank, x->dims))) return rc;
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
    int64_t v = load_i(x->data, x->dtype, i);
    if (in[1] && v < load_i(in[1]->data, x->dtype, 0)) v = load_i(in[1]->data, x->dtype, 0);
    if (in[2] && v > load_i(in[2]->data, x->dtype, 0)) v = load_i(in[2]->data, x->dtype, 0);
    store_i(out->data, x->dtype, i, v);
  }
  return 0;
}

/* ---- Cast ---- */

static int run_cast(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  int64_t to = dynq__node_attr_i(c->node, "to", 0);
  int to_bool = (int)dynq__node_attr_i(c->node, "to_bool", 0);
  if (to <= 0 || to >= DYNQ_DT__COUNT)
    return dynq__op_fail(c, DYNQ_EUNSUPPORTED, "cannot cast to dtype code %lld", (long long)to);
  dynq_dtype_t dt = (dynq_dtype_t)to;
  int64_t n = dynq__tensor_numel(x);
  if (!to_bool && dt == x->dtype) {
    /* to its own dtype (Silero casts float to float every chunk): the
     * per-element round trip through double changes no value; a move
     * when the executor offers the input */
    if ((rc = dynq__op_out_like(c, 0, dt, x->rank, x->dims, out))) return rc;
    if (out->data != x->data && n > 0) memcpy(out->data, x->data, (size_t)n * dynq__dtype_size(dt));
    return 0;
  }
  if ((rc = alloc_out_full(c, out, dt, x->rank, x->dims))) return rc;
  for (int64_t i = 0; i < n; i++) {
    if (to_bool) {
      ((uint8_t *)out->data)[i] = load_d(x->data, x->dtype, i) != 0.0;
    } else if (dt == DYNQ_DT_F32) {
      ((float *)out->data)[i] = (float)load_d(x->data, x->dtype, i);
    } else if (x->dtype == DYNQ_DT_F32) {
      /* float -> int: truncate toward zero; NaN and out-of-range values
       * (undefined in C) saturate instead. */
      float f = ((const float *)x->data)[i];
      int64_t v;
      if (f != f) v = 0;
      else if (f >= 9.2233720368547758e18f) v = INT64_MAX;
      else if (f <= -9.2233720368547758e18f) v = INT64_MIN;
      else v = (int64_t)f;
      store_i(out->data, dt, i, v);
    } else {
      store_i(out->data, dt, i, load_i(x->data, x->dtype, i));
    }
  }
  return 0;
}

/* ---- Shape, Size, ConstantOfShape, Range ---- */

static int run_shape(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = need_present(c, in[0], 0))) return rc;
  int r = in[0]->rank;
  int64_t start = dynq__node_attr_i(c->node, "start", 0);
  int64_t end = dynq__node_attr_i(c->node, "end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = start < 0 ? 0 : start > r ? r : start;
  end = end < 0 ? 0 : end > r ? r : end;
  int64_t n = end > start ? end - start : 0;
  if ((rc = alloc_out(c, out, DYNQ_DT_I64, 1, &n))) return rc;
  for (int64_t i = 0; i < n; i++) ((int64_t *)out->data)[i] = in[0]->dims[start + i];
  return 0;
}

static int run_size(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = need_present(c, in[0], 0))) return rc;
  if ((rc = alloc_out(c, out, DYNQ_DT_I64, 0, NULL))) return rc;
  *(int64_t *)out->data = dynq__tensor_numel(in[0]);
  return 0;
}

static int run_constant_of_shape(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                                 dynq__tensor_t *out) {
  int rc, n;
  int64_t shape[DYNQ_MAX_RANK];
  if ((rc = need_present(c, in[0], 0))) return rc;
  if ((rc = read_ints(c, in[0], "shape", shape, DYNQ_MAX_RANK, &n))) return rc;
  for (int i = 0; i < n; i++)
    if (shape[i] < 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "negative dimension %lld in shape", (long long)shape[i]);
  if (dynq__shape_numel(n, shape) < 0)
    return dynq__op_fail(c, DYNQ_ELIMIT, "shape has more than %lld elements",
                         (long long)DYNQ_MAX_ELEMS);
  const dynq__tensor_t *v = in[1];
  if (v != NULL && dynq__tensor_numel(v) != 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "value must hold exactly one element");
  dynq_dtype_t dt = v ? v->dtype : DYNQ_DT_F32;
  if ((rc = alloc_out(c, out, dt, n, shape))) return rc;
  if (v != NULL) {
    size_t es = dynq__dtype_size(dt);
    int64_t cnt = dynq__tensor_numel(out);
    for (int64_t i = 0; i < cnt; i++) memcpy((char *)out->data + (size_t)i * es, v->data, es);
  }
  return 0;
}

static int run_range(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  for (int k = 0; k < 3; k++) {
    if ((rc = need_present(c, in[k], k))) return rc;
    if (in[k]->dtype != in[0]->dtype || dynq__tensor_numel(in[k]) != 1)
      return dynq__op_fail(c, DYNQ_ESHAPE, "start, limit and delta must be one-element "
                           "tensors of the same dtype");
  }
  dynq_dtype_t dt = in[0]->dtype;
  int64_t n;
  if (dt == DYNQ_DT_F32) {
    double s = ((const float *)in[0]->data)[0], l = ((const float *)in[1]->data)[0],
           d = ((const float *)in[2]->data)[0];
    if (d == 0 || !isfinite(s) || !isfinite(l) || !isfinite(d))
      return dynq__op_fail(c, DYNQ_ENUMERIC, "delta is zero or a bound is not finite");
    double cnt = ceil((l - s) / d);
    if (cnt > (double)DYNQ_MAX_ELEMS)
      return dynq__op_fail(c, DYNQ_ELIMIT, "range has more than %lld elements", (long long)DYNQ_MAX_ELEMS);
    n = cnt > 0 ? (int64_t)cnt : 0;
    if ((rc = alloc_out(c, out, dt, 1, &n))) return rc;
    /* ONNX defines element i as start + i * delta, not a running sum. */
    float fs = (float)s, fd = (float)d;
    for (int64_t i = 0; i < n; i++) ((float *)out->data)[i] = fs + (float)i * fd;
    return 0;
  }
  if (!is_int(dt)) return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(dt));
  int64_t s = load_i(in[0]->data, dt, 0), l = load_i(in[1]->data, dt, 0), d = load_i(in[2]->data, dt, 0);
  if (d == 0) return dynq__op_fail(c, DYNQ_ENUMERIC, "delta is zero");
  /* The span l - s may overflow int64: compute it in 128 bits. */
  __int128 span = (__int128)l - (__int128)s;
  __int128 cnt = 0;
  if ((span > 0 && d > 0) || (span < 0 && d < 0)) {
    __int128 ad = d > 0 ? (__int128)d : -(__int128)d, as = span > 0 ? span : -span;
    cnt = (as + ad - 1) / ad;
  }
  if (cnt > DYNQ_MAX_ELEMS)
    return dynq__op_fail(c, DYNQ_ELIMIT, "range has more than %lld elements", (long long)DYNQ_MAX_ELEMS);
  n = (int64_t)cnt;
  if ((rc = alloc_out(c, out, dt, 1, &n))) return rc;
  for (int64_t i = 0; i < n; i++) store_i(out->data, dt, i, (int64_t)((__int128)s + (__int128)i * d));
  return 0;
}

/* ---- Gather ---- */

static int run_gather(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, ax = 0;
  if ((rc = need_present(c, in[0], 0)) || (rc = need_present(c, in[1], 1))) return rc;
  const dynq__tensor_t *x = in[0], *idx = in[1];
  if (x->rank < 1) return dynq__op_fail(c, DYNQ_ESHAPE, "data must have rank >= 1");
  if (idx->dtype != DYNQ_DT_I64 && idx->dtype != DYNQ_DT_I32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "indices must be int64 or int32, are %s",
                         dynq__dtype_name(idx->dtype));
  if ((rc = norm_axis(c, dynq__node_attr_i(c->node, "axis", 0), x->rank, &ax))) return rc;
  int orank = x->rank - 1 + idx->rank;
  if (orank > DYNQ_MAX_RANK)
    return dynq__op_fail(c, DYNQ_ESHAPE, "output rank %d exceeds %d", orank, DYNQ_MAX_RANK);
  int64_t dims[DYNQ_MAX_RANK];
  int r = 0;
  for (int d = 0; d < ax; d++) dims[r++] = x->dims[d];
  for (int d = 0; d < idx->rank; d++) dims[r++] = idx->dims[d];
  for (int d = ax + 1; d < x->rank; d++) dims[r++] = x->dims[d];
  int64_t outer = 1, inner = 1, len = x->dims[ax], ni = dynq__tensor_numel(idx);
  for (int d = 0; d < ax; d++) outer *= x->dims[d];
  for (int d = ax + 1; d < x->rank; d++) inner *= x->dims[d];
  for (int64_t j = 0; j < ni; j++) {
    int64_t k = load_i(idx->data, idx->dtype, j);
    if (k < -len || k >= len)
      return dynq__op_fail(c, DYNQ_ESHAPE, "index %lld out of range for axis %d of size %lld",
                           (long long)k, ax, (long long)len);
  }
  if ((rc = alloc_out_full(c, out, x->dtype, orank, dims))) return rc;
  size_t es = dynq__dtype_size(x->dtype), row = (size_t)inner * es;
  char *o = out->data;
  for (int64_t a = 0; a < outer; a++)
    for (int64_t j = 0; j < ni; j++) {
      int64_t k = load_i(idx->data, idx->dtype, j);
      if (k < 0) k += len;
      memcpy(o, (const char *)x->data + ((size_t)(a * len + k)) * row, row);
      o += row;
    }
  return 0;
}

/* ---- Slice ---- */

static int run_slice(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, ns, ne, na, nst;
  for (int k = 0; k < 3; k++)
    if ((rc = need_present(c, in[k], k))) return rc;
  const dynq__tensor_t *x = in[0];
  int64_t starts[DYNQ_MAX_RANK], ends[DYNQ_MAX_RANK], axes[DYNQ_MAX_RANK], steps[DYNQ_MAX_RANK];
  if ((rc = read_ints(c, in[1], "starts", starts, DYNQ_MAX_RANK, &ns)) ||
      (rc = read_ints(c, in[2], "ends", ends, DYNQ_MAX_RANK, &ne)))
    return rc;
  if (ns != ne) return dynq__op_fail(c, DYNQ_ESHAPE, "starts has %d values, ends %d", ns, ne);
  if (in[3] != NULL) {
    if ((rc = read_ints(c, in[3], "axes", axes, DYNQ_MAX_RANK, &na))) return rc;
    if (na != ns) return dynq__op_fail(c, DYNQ_ESHAPE, "axes has %d values, starts %d", na, ns);
  } else {
    for (int i = 0; i < ns; i++) axes[i] = i;
  }
  if (in[4] != NULL) {
    if ((rc = read_ints(c, in[4], "steps", steps, DYNQ_MAX_RANK, &nst))) return rc;
    if (nst != ns) return dynq__op_fail(c, DYNQ_ESHAPE, "steps has %d values, starts %d", nst, ns);
  } else {
    for (int i = 0; i < ns; i++) steps[i] = 1;
  }
  int64_t st[DYNQ_MAX_RANK], sp[DYNQ_MAX_RANK], dims[DYNQ_MAX_RANK];
  int seen[DYNQ_MAX_RANK] = {0};
  for (int d = 0; d < x->rank; d++) {
    st[d] = 0;
    sp[d] = 1;
    dims[d] = x->dims[d];
  }
  for (int i = 0; i < ns; i++) {
    int a = 0;
    if ((rc = norm_axis(c, axes[i], x->rank, &a))) return rc;
    if (seen[a]++) return dynq__op_fail(c, DYNQ_ESHAPE, "axis %d repeated", a);
    int64_t len = x->dims[a], s = starts[i], e = ends[i], step = steps[i];
    if (step == 0) return dynq__op_fail(c, DYNQ_ESHAPE, "step is 0 on axis %d", a);
    /* clamp per the ONNX spec; bounds such as INT64_MAX/INT64_MIN are
     * common, and adding len to a negative value cannot overflow */
    if (s < 0) s += len;
    if (e < 0) e += len;
    if (step > 0) {
      s = s < 0 ? 0 : s > len ? len : s;
      e = e < 0 ? 0 : e > len ? len : e;
    } else {
      s = s < 0 ? 0 : s > len - 1 ? len - 1 : s;
      e = e < -1 ? -1 : e > len - 1 ? len - 1 : e;
    }
    int64_t cnt = 0;
    if (step > 0 && e > s) cnt = (e - s + step - 1) / step;
    if (step < 0 && s > e) cnt = (s - e + (-step) - 1) / (-step);
    st[a] = s;
    sp[a] = step;
    dims[a] = cnt;
  }
  int whole = 1; /* every axis taken whole, in order: a copy (or a move) */
  for (int d = 0; d < x->rank; d++) whole &= st[d] == 0 && sp[d] == 1 && dims[d] == x->dims[d];
  if (whole) {
    if ((rc = dynq__op_out_like(c, 0, x->dtype, x->rank, dims, out))) return rc;
    if (out->data != x->data && dynq__tensor_nbytes(x)) memcpy(out->data, x->data, dynq__tensor_nbytes(x));
    return 0;
  }
  if ((rc = alloc_out_full(c, out, x->dtype, x->rank, dims))) return rc;
  int64_t n = dynq__tensor_numel(out);
  if (n == 0) return 0;
  int64_t xs[DYNQ_MAX_RANK], e = 1;
  for (int d = x->rank - 1; d >= 0; d--) {
    xs[d] = e;
    e *= x->dims[d];
  }
  size_t es = dynq__dtype_size(x->dtype);
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off = 0;
  for (int d = 0; d < x->rank; d++) off += st[d] * xs[d];
  if (x->rank >= 1 && sp[x->rank - 1] == 1) {
    /* Unit step on the last axis: copy whole runs.  Trailing axes taken
     * whole join the run with the axis before them (Silero slices
     * [B, 258, 4] on axis 1: runs of 129 x 4, not 4). */
    int r = x->rank - 1;
    int64_t run = dims[r];
    while (r > 0 && dims[r] == x->dims[r] && sp[r - 1] == 1) {
      r--;
      run *= dims[r];
    }
    for (int64_t i = 0; i < n; i += run) {
      memcpy((char *)out->data + (size_t)i * es, (const char *)x->data + (size_t)off * es,
             (size_t)run * es);
      for (int d = r - 1; d >= 0; d--) {
        cnt[d]++;
        off += sp[d] * xs[d];
        if (cnt[d] < dims[d]) break;
        off -= sp[d] * xs[d] * dims[d];
        cnt[d] = 0;
      }
    }
    return 0;
  }
  for (int64_t i = 0; i < n; i++) {
    memcpy((char *)out->data + (size_t)i * es, (const char *)x->data + (size_t)off * es, es);
    for (int d = x->rank - 1; d >= 0; d--) {
      cnt[d]++;
      off += sp[d] * xs[d];
      if (cnt[d] < dims[d]) break;
      off -= sp[d] * xs[d] * dims[d];
      cnt[d] = 0;
    }
  }
  return 0;
}

/* ---- Concat ---- */

static int run_concat(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, ax = 0, nin = c->node->n_in;
  for (int k = 0; k < nin; k++)
    if ((rc = need_present(c, in[k], k))) return rc;
  const dynq__tensor_t *x0 = in[0];
  if (x0->rank < 1) return dynq__op_fail(c, DYNQ_ESHAPE, "inputs must have rank >= 1");
  if ((rc = norm_axis(c, dynq__node_attr_i(c->node, "axis", 0), x0->rank, &ax))) return rc;
  int64_t dims[DYNQ_MAX_RANK];
  memcpy(dims, x0->dims, sizeof(dims));
  dims[ax] = 0;
  for (int k = 0; k < nin; k++) {
    const dynq__tensor_t *t = in[k];
    if (t->dtype != x0->dtype || t->rank != x0->rank)
      return dynq__op_fail(c, DYNQ_ESHAPE, "input %d is %s rank %d; input 0 is %s rank %d", k,
                           dynq__dtype_name(t->dtype), t->rank, dynq__dtype_name(x0->dtype), x0->rank);
    for (int d = 0; d < t->rank; d++)
      if (d != ax && t->dims[d] != x0->dims[d]) {
        char a[96], b[96];
        return dynq__op_fail(c, DYNQ_ESHAPE, "input %d shape %s does not match input 0 %s off axis %d", k,
                             dynq__shape_str(a, sizeof(a), t->rank, t->dims),
                             dynq__shape_str(b, sizeof(b), x0->rank, x0->dims), ax);
      }
    dims[ax] += t->dims[ax];
    if (dims[ax] > DYNQ_MAX_ELEMS) return dynq__op_fail(c, DYNQ_ELIMIT, "output too large");
  }
  if ((rc = alloc_out_full(c, out, x0->dtype, x0->rank, dims))) return rc;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < ax; d++) outer *= dims[d];
  for (int d = ax + 1; d < x0->rank; d++) inner *= dims[d];
  size_t es = dynq__dtype_size(x0->dtype);
  char *o = out->data;
  for (int64_t a = 0; a < outer; a++)
    for (int k = 0; k < nin; k++) {
      size_t row = (size_t)(in[k]->dims[ax] * inner) * es;
      if (row) memcpy(o, (const char *)in[k]->data + (size_t)a * row, row);
      o += row;
    }
  return 0;
}

/* ---- Squeeze, Unsqueeze ---- */

static int run_squeeze(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, na = 0;
  if ((rc = need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  int64_t axes[DYNQ_MAX_RANK];
  int drop[DYNQ_MAX_RANK] = {0};
  if (in[1] != NULL) {
    if ((rc = read_ints(c, in[1], "axes", axes, DYNQ_MAX_RANK, &na))) return rc;
    for (int i = 0; i < na; i++) {
      int a = 0;
      if ((rc = norm_axis(c, axes[i], x->rank, &a))) return rc;
      if (x->dims[a] != 1)
        return dynq__op_fail(c, DYNQ_ESHAPE, "cannot squeeze axis %d of size %lld", a,
                             (long long)x->dims[a]);
      drop[a] = 1;
    }
  } else {
    for (int d = 0; d < x->rank; d++) drop[d] = x->dims[d] == 1;
  }
  int64_t dims[DYNQ_MAX_RANK];
  int r = 0;
  for (int d = 0; d < x->rank; d++)
    if (!drop[d]) dims[r++] = x->dims[d];
  if ((rc = dynq__op_out_like(c, 0, x->dtype, r, dims, out))) return rc; /* a move if offered */
  if (out->data != x->data && dynq__tensor_nbytes(x)) memcpy(out->data, x->data, dynq__tensor_nbytes(x));
  return 0;
}

static int run_unsqueeze(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, na;
  if ((rc = need_present(c, in[0], 0)) || (rc = need_present(c, in[1], 1))) return rc;
  const dynq__tensor_t *x = in[0];
  int64_t axes[DYNQ_MAX_RANK];
  if ((rc = read_ints(c, in[1], "axes", axes, DYNQ_MAX_RANK, &na))) return rc;
  int r = x->rank + na;
  if (r > DYNQ_MAX_RANK)
    return dynq__op_fail(c, DYNQ_ESHAPE, "output rank %d exceeds %d", r, DYNQ_MAX_RANK);
  int ins[DYNQ_MAX_RANK] = {0};
  for (int i = 0; i < na; i++) {
    int a = 0;
    if ((rc = norm_axis(c, axes[i], r, &a))) return rc;
    if (ins[a]++) return dynq__op_fail(c, DYNQ_ESHAPE, "axis %d repeated", a);
  }
  int64_t dims[DYNQ_MAX_RANK];
  for (int d = 0, k = 0; d < r; d++) dims[d] = ins[d] ? 1 : x->dims[k++];
  if ((rc = dynq__op_out_like(c, 0, x->dtype, r, dims, out))) return rc; /* a move if offered */
  if (out->data != x->data && dynq__tensor_nbytes(x)) memcpy(out->data, x->data, dynq__tensor_nbytes(x));
  return 0;
}

/* ---- Transpose ---- */

static int run_transpose(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, np = 0;
  if ((rc = need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  int64_t perm[DYNQ_MAX_RANK];
  if (in[1] != NULL) {
    if ((rc = read_ints(c, in[1], "perm", perm, DYNQ_MAX_RANK, &np))) return rc;
    if (np != x->rank)
      return dynq__op_fail(c, DYNQ_ESHAPE, "perm has %d values for an input of rank %d", np, x->rank);
  } else {
    for (int d = 0; d < x->rank; d++) perm[d] = x->rank - 1 - d;
  }
  int seen[DYNQ_MAX_RANK] = {0};
  int64_t dims[DYNQ_MAX_RANK], xs[DYNQ_MAX_RANK], ps[DYNQ_MAX_RANK], e = 1;
  for (int d = 0; d < x->rank; d++) {
    if (perm[d] < 0 || perm[d] >= x->rank || seen[perm[d]]++)
      return dynq__op_fail(c, DYNQ_ESHAPE, "perm is not a permutation of 0..%d", x->rank - 1);
  }
  for (int d = x->rank - 1; d >= 0; d--) {
    xs[d] = e;
    e *= x->dims[d];
  }
  for (int d = 0; d < x->rank; d++) {
    dims[d] = x->dims[perm[d]];
    ps[d] = xs[perm[d]];
  }
  if ((rc = alloc_out_full(c, out, x->dtype, x->rank, dims))) return rc;
  int64_t n = dynq__tensor_numel(out), cnt[DYNQ_MAX_RANK] = {0}, off = 0;
  size_t es = dynq__dtype_size(x->dtype);
  for (int64_t i = 0; i < n; i++) {
    memcpy((char *)out->data + (size_t)i * es, (const char *)x->data + (size_t)off * es, es);
    for (int d = x->rank - 1; d >= 0; d--) {
      cnt[d]++;
      off += ps[d];
      if (cnt[d] < dims[d]) break;
      off -= ps[d] * dims[d];
      cnt[d] = 0;
    }
  }
  return 0;
}

/* ---- ReduceMean, ReduceSum ---- */

static int run_reduce(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, na = 0;
  if ((rc = need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  int mean = c->node->op == DYNQ_OP_REDUCE_MEAN;
  if (x->dtype != DYNQ_DT_F32 && (mean || !is_int(x->dtype)))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  int keep = dynq__node_attr_i(c->node, "keepdims", 1) != 0;
  int noop = dynq__node_attr_i(c->node, "noop_with_empty_axes", 0) != 0;
  int64_t axes[DYNQ_MAX_RANK];
  int red[DYNQ_MAX_RANK] = {0};
  if (in[1] != NULL && (rc = read_ints(c, in[1], "axes", axes, DYNQ_MAX_RANK, &na))) return rc;
  if (na == 0 && noop) {
    if ((rc = alloc_out(c, out, x->dtype, x->rank, x->dims))) return rc;
    memcpy(out->data, x->data, dynq__tensor_nbytes(x));
    return 0;
  }
  for (int i = 0; i < na; i++) {
    int a = 0;
    if ((rc = norm_axis(c, axes[i], x->rank, &a))) return rc;
    red[a] = 1;
  }
  if (na == 0)
    for (int d = 0; d < x->rank; d++) red[d] = 1;
  int64_t dims[DYNQ_MAX_RANK], kd[DYNQ_MAX_RANK], ost[DYNQ_MAX_RANK];
  int r = 0;
  for (int d = 0; d < x->rank; d++) {
    kd[d] = red[d] ? 1 : x->dims[d];
    if (keep) dims[r++] = kd[d];
    else if (!red[d]) dims[r++] = x->dims[d];
  }
  if ((rc = alloc_out(c, out, x->dtype, r, dims))) return rc;
  int64_t no = dynq__tensor_numel(out), e = 1;
  for (int d = x->rank - 1; d >= 0; d--) {
    ost[d] = red[d] ? 0 : e;
    e *= kd[d];
  }
  double *acc = calloc((size_t)(no ? no : 1), sizeof(double));
  if (acc == NULL) return dynq__op_fail(c, -ENOMEM, "out of memory");
  int64_t n = dynq__tensor_numel(x), cnt[DYNQ_MAX_RANK] = {0}, off = 0;
  for (int64_t i = 0; i < n; i++) {
    acc[off] += load_d(x->data, x->dtype, i);
    for (int d = x->rank - 1; d >= 0; d--) {
      cnt[d]++;
      off += ost[d];
      if (cnt[d] < x->dims[d]) break;
      off -= ost[d] * x->dims[d];
      cnt[d] = 0;
    }
  }
  double cntr = no > 0 && n > 0 ? (double)n / (double)no : 0;
  for (int64_t i = 0; i < no; i++) {
    double v = acc[i];
    if (mean) v = cntr > 0 ? v / cntr : NAN;
    if (x->dtype == DYNQ_DT_F32) ((float *)out->data)[i] = (float)v;
    else store_i(out->data, x->dtype, i, (int64_t)v);
  }
  free(acc);
  return 0;
}

/* ---- Pad ---- */

enum { PAD_CONSTANT = 0, PAD_REFLECT = 1, PAD_EDGE = 2 };

/* Source index along an axis of length len for output position p (already
 * shifted by the low pad); sets *outside for constant padding. */
static int64_t pad_src(int64_t p, int64_t len, int mode, int *outside) {
  if (p >= 0 && p < len) return p;
  if (mode == PAD_CONSTANT) {
    *outside = 1;
    return 0;
  }
  if (mode == PAD_EDGE) return p < 0 ? 0 : len - 1;
  /* reflect without repeating the edge; period 2(len-1).  One
   * reflection (every pad narrower than the axis, as Silero's) needs no
   * division. */
  if (p < 0 && -p < len) return -p;
  if (p >= len && p <= 2 * (len - 1)) return 2 * (len - 1) - p;
  int64_t per = 2 * (len - 1);
  p = per > 0 ? ((p % per) + per) % per : 0;
  return p >= len ? per - p : p;
}

static int run_pad(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, np, na = 0;
  if ((rc = need_present(c, in[0], 0)) || (rc = need_present(c, in[1], 1))) return rc;
  const dynq__tensor_t *x = in[0];
  int r = x->rank;
  int64_t pads[2 * DYNQ_MAX_RANK], axes[DYNQ_MAX_RANK], lo[DYNQ_MAX_RANK] = {0},
          hi[DYNQ_MAX_RANK] = {0};
  if ((rc = read_ints(c, in[1], "pads", pads, 2 * DYNQ_MAX_RANK, &np))) return rc;
  if (in[3] != NULL) {
    if ((rc = read_ints(c, in[3], "axes", axes, DYNQ_MAX_RANK, &na))) return rc;
  } else {
    na = r;
    for (int d = 0; d < r; d++) axes[d] = d;
  }
  if (np != 2 * na)
    return dynq__op_fail(c, DYNQ_ESHAPE, "pads has %d values; expected %d", np, 2 * na);
  for (int i = 0; i < na; i++) {
    int a = 0;
    if ((rc = norm_axis(c, axes[i], r, &a))) return rc;
    lo[a] = pads[i];
    hi[a] = pads[i + na];
  }
  int mode = (int)dynq__node_attr_i(c->node, "mode", PAD_CONSTANT);
  if (mode < PAD_CONSTANT || mode > PAD_EDGE)
    return dynq__op_fail(c, DYNQ_EUNSUPPORTED, "unknown pad mode %d", mode);
  int64_t dims[DYNQ_MAX_RANK];
  for (int d = 0; d < r; d++) {
    int64_t len = x->dims[d];
    if (lo[d] < -len || hi[d] < -len || lo[d] > DYNQ_MAX_ELEMS || hi[d] > DYNQ_MAX_ELEMS)
      return dynq__op_fail(c, DYNQ_ESHAPE, "pads on axis %d out of range", d);
    dims[d] = len + lo[d] + hi[d];
    if (dims[d] < 0) return dynq__op_fail(c, DYNQ_ESHAPE, "pads remove more than axis %d holds", d);
    if (mode != PAD_CONSTANT && len == 0 && dims[d] > 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "cannot %s-pad empty axis %d",
                           mode == PAD_REFLECT ? "reflect" : "edge", d);
  }
  const dynq__tensor_t *cv = in[2];
  if (cv != NULL && (cv->dtype != x->dtype || dynq__tensor_numel(cv) > 1))
    return dynq__op_fail(c, DYNQ_ESHAPE, "constant_value must be a scalar of the input dtype");
  if ((rc = alloc_out_full(c, out, x->dtype, r, dims))) return rc; /* every row written below */
  int64_t n = dynq__tensor_numel(out), xs[DYNQ_MAX_RANK], e = 1;
  for (int d = r - 1; d >= 0; d--) {
    xs[d] = e;
    e *= x->dims[d];
  }
  size_t es = dynq__dtype_size(x->dtype);
  /* Row by row along the last axis: the outer axes map to one source row
   * (or to the constant), and within a row the unpadded span is one
   * memcpy; only pad elements go through the per-element mapping.  (Silero
   * reflect-pads every chunk; per element this was ~4 % of a served chunk.) */
  int64_t W = r > 0 ? dims[r - 1] : 1, L = r > 0 ? x->dims[r - 1] : 1,
          plo = r > 0 ? lo[r - 1] : 0;
  int64_t rows = W > 0 ? n / W : 0;
  int64_t cnt[DYNQ_MAX_RANK] = {0};
  for (int64_t row = 0; row < rows; row++) {
    int64_t off = 0;
    int outside = 0;
    for (int d = 0; d < r - 1 && !outside; d++) {
      int64_t p = pad_src(cnt[d] - lo[d], x->dims[d], mode, &outside);
      off += p * xs[d];
    }
    char *dst = (char *)out->data + (size_t)(row * W) * es;
    const char *src = (const char *)x->data + (size_t)off * es;
    for (int64_t j = 0; j < W; j++) {
      int64_t p = j - plo;
      if (!outside && p >= 0 && p < L) {
        int64_t end = plo + L < W ? plo + L : W;  /* the rest of the unpadded span */
        memcpy(dst + (size_t)j * es, src + (size_t)p * es, (size_t)(end - j) * es);
        j = end - 1;
        continue;
      }
      int out_j = outside;
      if (!out_j) p = pad_src(p, L, mode, &out_j);
      if (out_j) {
        if (cv != NULL && dynq__tensor_numel(cv) == 1) memcpy(dst + (size_t)j * es, cv->data, es);
        else memset(dst + (size_t)j * es, 0, es);
      } else {
        memcpy(dst + (size_t)j * es, src + (size_t)p * es, es);
      }
    }
    for (int d = r - 2; d >= 0; d--) {
      if (++cnt[d] < dims[d]) break;
      cnt[d] = 0;
    }
  }
  return 0;
}

/* ---- If and Phi ---- */

static int run_if(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = need_present(c, in[0], 0))) return rc;
  if (dynq__tensor_numel(in[0]) != 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "condition must hold exactly one element");
  if ((rc = alloc_out(c, out, DYNQ_DT_U8, 0, NULL))) return rc;
  *(uint8_t *)out->data = load_d(in[0]->data, in[0]->dtype, 0) != 0.0;
  return 0;
}

static int run_phi(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = need_present(c, in[0], 0))) return rc;
  if (in[0]->dtype != DYNQ_DT_U8 || dynq__tensor_numel(in[0]) != 1)
    return dynq__op_fail(c, DYNQ_EDTYPE, "flag must be a one-element bool (uint8)");
  int k = *(const uint8_t *)in[0]->data ? 1 : 2;
  const dynq__tensor_t *src = in[k];
  if (src == NULL || src->dtype == DYNQ_DT_INVALID)
    return dynq__op_fail(c, DYNQ_EGRAPH, "the %s branch did not compute this value",
                         k == 1 ? "then" : "else");
  if ((rc = dynq__op_out_like(c, k, src->dtype, src->rank, src->dims, out))) return rc;
  if (out->data != src->data && dynq__tensor_nbytes(src))
    memcpy(out->data, src->data, dynq__tensor_nbytes(src));
  return 0;
}

/* Load-time: the branch ranges must lie inside the graph after the node. */
static int check_if(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  int64_t idx = n - g->nodes;
  int64_t t = dynq__node_attr_i(n, "then_nodes", -1), e = dynq__node_attr_i(n, "else_nodes", -1);
  if (idx < 0 || idx >= g->n_nodes || t < 0 || e < 0 || t > g->n_nodes || e > g->n_nodes ||
      idx + 1 + t + e > g->n_nodes) {
    snprintf(err, errlen, "node '%s' (If): branch ranges (then_nodes %lld, else_nodes %lld) "
             "do not fit in the graph", n->name ? n->name : "?", (long long)t, (long long)e);
    return DYNQ_EGRAPH;
  }
  return 0;
}

int dynq__if_skip_range(const dynq__node_t *n, const dynq__tensor_t *flag, int64_t *ret_first,
                        int64_t *ret_count) {
  int64_t t = dynq__node_attr_i(n, "then_nodes", 0), e = dynq__node_attr_i(n, "else_nodes", 0);
  int taken = flag->data != NULL && *(const uint8_t *)flag->data != 0;
  *ret_first = taken ? 1 + t : 1;  /* relative to the IF node */
  *ret_count = taken ? e : t;
  return 0;
}

static const dynq__opdef_t graph_optab[DYNQ_OP__COUNT] = {
  [DYNQ_OP_CONSTANT_OF_SHAPE] = {"ConstantOfShape", 1, 2, 1, NULL, run_constant_of_shape},
  [DYNQ_OP_SHAPE] = {"Shape", 1, 1, 1, NULL, run_shape},
  [DYNQ_OP_SIZE] = {"Size", 1, 1, 1, NULL, run_size},
  [DYNQ_OP_GATHER] = {"Gather", 2, 2, 1, NULL, run_gather},
  [DYNQ_OP_SLICE] = {"Slice", 3, 5, 1, NULL, run_slice},
  [DYNQ_OP_CONCAT] = {"Concat", 1, 64, 1, NULL, run_concat},
  [DYNQ_OP_SQUEEZE] = {"Squeeze", 1, 2, 1, NULL, run_squeeze},
  [DYNQ_OP_UNSQUEEZE] = {"Unsqueeze", 2, 2, 1, NULL, run_unsqueeze},
  [DYNQ_OP_TRANSPOSE] = {"Transpose", 1, 2, 1, NULL, run_transpose},
  [DYNQ_OP_CAST] = {"Cast", 1, 1, 1, NULL, run_cast},
  [DYNQ_OP_EQUAL] = {"Equal", 2, 2, 1, NULL, dynq__run_binary_any},
  [DYNQ_OP_NOT] = {"Not", 1, 1, 1, NULL, run_unary_any},
  [DYNQ_OP_WHERE] = {"Where", 3, 3, 1, NULL, run_where},
  [DYNQ_OP_POW] = {"Pow", 2, 2, 1, NULL, dynq__run_binary_any},
  [DYNQ_OP_SQRT] = {"Sqrt", 1, 1, 1, NULL, run_unary_any},
  [DYNQ_OP_NEG] = {"Neg", 1, 1, 1, NULL, run_unary_any},
  [DYNQ_OP_LOG] = {"Log", 1, 1, 1, NULL, run_unary_any},
  [DYNQ_OP_EXP] = {"Exp", 1, 1, 1, NULL, run_unary_any},
  [DYNQ_OP_REDUCE_MEAN] = {"ReduceMean", 1, 2, 1, NULL, run_reduce},
  [DYNQ_OP_REDUCE_SUM] = {"ReduceSum", 1, 2, 1, NULL, run_reduce},
  [DYNQ_OP_PAD] = {"Pad", 2, 4, 1, NULL, run_pad},
  [DYNQ_OP_CLIP] = {"Clip", 1, 3, 1, NULL, run_clip},
  [DYNQ_OP_EXPAND] = {"Expand", 2, 2, 1, NULL, run_expand},
  [DYNQ_OP_IF] = {"If", 1, 1, 1, check_if, run_if},
  [DYNQ_OP_LESS] = {"Less", 2, 2, 1, NULL, dynq__run_binary_any},
  [DYNQ_OP_GREATER] = {"Greater", 2, 2, 1, NULL, dynq__run_binary_any},
  [DYNQ_OP_AND] = {"And", 2, 2, 1, NULL, dynq__run_binary_any},
  [DYNQ_OP_OR] = {"Or", 2, 2, 1, NULL, dynq__run_binary_any},
  [DYNQ_OP_RANGE] = {"Range", 3, 3, 1, NULL, run_range},
  [DYNQ_OP_ABS] = {"Abs", 1, 1, 1, NULL, run_unary_any},
  [DYNQ_OP_PHI] = {"Phi", 3, 3, 1, NULL, run_phi},
};

const dynq__opdef_t *dynq__opdef_graph(int op) {
  if (op <= 0 || op >= DYNQ_OP__COUNT || graph_optab[op].run == NULL) return NULL;
  return &graph_optab[op];
}
