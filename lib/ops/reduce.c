/* Reductions over axes: ReduceMean, ReduceSum and the other sums
 * (accumulated in double),
 * ReduceMax, ReduceMin; ArgMax, ArgMin; CumSum; MeanVarianceNormalization
 * (its mean and variance are reductions). */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "kernels/clones.h"

/* What a reduction of x over the axes input keeps: the output shape
 * and, per input axis, the output stride (0 on a reduced axis). */
typedef struct plan {
  int rank, noop;
  int64_t dims[DYNQ_MAX_RANK], ost[DYNQ_MAX_RANK];
  int red[DYNQ_MAX_RANK];  /* per input axis: reduced */
} plan_t;

static int make_plan(dynq__op_ctx_t *c, const dynq__tensor_t *x, const dynq__tensor_t *axes_t,
                     plan_t *p) {
  int rc, na = 0;
  int64_t axes[DYNQ_MAX_RANK], kd[DYNQ_MAX_RANK];
  int red[DYNQ_MAX_RANK] = {0};
  if (axes_t != NULL && (rc = dynq__op_read_ints(c, axes_t, "axes", axes, DYNQ_MAX_RANK, &na)))
    return rc;
  p->noop = na == 0 && c->st->reduce.noop_empty;
  for (int i = 0; i < na; i++) {
    int a = 0;
    if ((rc = dynq__op_norm_axis(c, axes[i], x->rank, 0, &a))) return rc;
    red[a] = 1;
  }
  for (int d = 0; d < x->rank; d++) red[d] |= na == 0;
  memcpy(p->red, red, sizeof(red));
  p->rank = 0;
  for (int d = 0; d < x->rank; d++) {
    kd[d] = red[d] ? 1 : x->dims[d];
    if (c->st->reduce.keepdims) p->dims[p->rank++] = kd[d];
    else if (!red[d]) p->dims[p->rank++] = x->dims[d];
  }
  int64_t e = 1;
  for (int d = x->rank - 1; d >= 0; d--) {
    p->ost[d] = red[d] ? 0 : e;
    e *= kd[d];
  }
  return 0;
}

/* Advance the multi-index cnt over x's dims and the output offset. */
static inline void plan_next(const dynq__tensor_t *x, const plan_t *p, int64_t *cnt,
                             int64_t *off) {
  for (int d = x->rank - 1; d >= 0; d--) {
    cnt[d]++;
    *off += p->ost[d];
    if (cnt[d] < x->dims[d]) return;
    *off -= p->ost[d] * x->dims[d];
    cnt[d] = 0;
  }
}

static int copy_input(dynq__op_ctx_t *c, const dynq__tensor_t *x, dynq__tensor_t *out) {
  int rc = dynq__op_alloc(c, out, x->dtype, x->rank, x->dims, 1);
  if (rc == 0 && dynq__tensor_nbytes(x)) memcpy(out->data, x->data, dynq__tensor_nbytes(x));
  return rc;
}

/* x as [outer, rn, inner] when its reduced axes are one block (axes of
 * size 1 aside): the fast paths' shape.  0 when they are not. */
static int as_block(const dynq__tensor_t *x, const plan_t *p, int64_t *outer, int64_t *rn,
                    int64_t *inner) {
  int stage = 0; /* 0 before the block, 1 in it, 2 after it */
  *outer = *rn = *inner = 1;
  for (int d = 0; d < x->rank; d++) {
    if (x->dims[d] == 1) continue;
    if (p->red[d] ? stage == 2 : stage == 1) stage++;
    if (p->red[d] && stage == 0) stage = 1;
    if (p->red[d] && stage != 1) return 0;
    *(stage == 0 ? outer : stage == 1 ? rn : inner) *= x->dims[d];
  }
  return 1;
}

/* The sums over a block: f(x) (0 itself, 1 |x|, 2 x^2) added in double.
 * Along the last axis in 8 lanes combined in a fixed order, else every
 * output lane by lane in the reduced axes' order: either way a row's sum
 * does not depend on the other rows (merged requests keep their bits).
 * Built per ISA, picked at load. */
#define RED_ROW DYNQ_CLONES DYNQ_VEC_OPT
static inline double fx(float v, int f) {
  double d = v;
  return f == 0 ? d : f == 1 ? fabs(d) : d * d;
}

static inline double sum_last(const float *x, int64_t n, int f) {
  double a[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) a[k] += fx(x[i + k], f);
  double s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
  for (; i < n; i++) s += fx(x[i], f);
  return s;
}

static inline void sum_inner(const float *x, int64_t rn, int64_t inner, double *acc, int f) {
  for (int64_t r = 0; r < rn; r++)
    for (int64_t i = 0; i < inner; i++) acc[i] += fx(x[r * inner + i], f);
}

#define SUM_ROWS(F)                                                                     \
  RED_ROW static void sum_block_##F(const float *x, int64_t outer, int64_t rn,          \
                                    int64_t inner, double *acc) {                       \
    for (int64_t o = 0; o < outer; o++) {                                               \
      if (inner == 1) acc[o] = sum_last(x + o * rn, rn, F);                             \
      else sum_inner(x + o * rn * inner, rn, inner, acc + o * inner, F);                \
    }                                                                                   \
  }
SUM_ROWS(0)
SUM_ROWS(1)
SUM_ROWS(2)

/* ReduceMax / ReduceMin over a block: a NaN propagates. */
static inline float pick(float m, float v, int is_max) {
  return v != v || m != m ? (m != m ? m : v) : (is_max ? (v > m ? v : m) : (v < m ? v : m));
}

RED_ROW static void minmax_block(const float *x, int64_t outer, int64_t rn, int64_t inner,
                                 float *y, int is_max) {
  const float init = is_max ? -INFINITY : INFINITY;
  for (int64_t o = 0; o < outer; o++) {
    const float *xo = x + o * rn * inner;
    if (inner == 1) {
      float m[8];
      for (int k = 0; k < 8; k++) m[k] = init;
      int64_t i = 0;
      for (; i + 8 <= rn; i += 8)
        for (int k = 0; k < 8; k++) m[k] = pick(m[k], xo[i + k], is_max);
      float r = init;
      for (int k = 0; k < 8; k++) r = pick(r, m[k], is_max);
      for (; i < rn; i++) r = pick(r, xo[i], is_max);
      y[o] = r;
    } else {
      float *yo = y + o * inner;
      for (int64_t i = 0; i < inner; i++) yo[i] = init;
      for (int64_t r = 0; r < rn; r++)
        for (int64_t i = 0; i < inner; i++) yo[i] = pick(yo[i], xo[r * inner + i], is_max);
    }
  }
}

/* ---- ReduceMean, ReduceSum, ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare,
 * ReduceLogSum, ReduceLogSumExp: accumulated in double ---- */

int dynq__run_reduce(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  const int op = c->node->op, mean = op == DYNQ_OP_REDUCE_MEAN;
  /* ReduceSum and ReduceProd take integers too (exact in double up to
   * 2^53), the others float32 only */
  const int int_ok = op == DYNQ_OP_REDUCE_SUM || op == DYNQ_OP_REDUCE_PROD;
  if (x->dtype != DYNQ_DT_F32 && (!int_ok || !dynq__dt_is_int(x->dtype)))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  plan_t p;
  if ((rc = make_plan(c, x, c->node->n_in > 1 ? in[1] : NULL, &p))) return rc;
  if (p.noop) return copy_input(c, x, out);
  if ((rc = dynq__op_alloc(c, out, x->dtype, p.rank, p.dims, 1))) return rc;
  int64_t no = dynq__tensor_numel(out);
  double *acc = calloc((size_t)(no ? no : 1), sizeof(double));
  if (acc == NULL) return dynq__op_fail(c, -ENOMEM, "out of memory");
  int64_t n = dynq__tensor_numel(x), cnt[DYNQ_MAX_RANK] = {0}, off = 0, ob, rb, ib;
  if (op == DYNQ_OP_REDUCE_PROD)
    for (int64_t i = 0; i < no; i++) acc[i] = 1.0;
  const int f = op == DYNQ_OP_REDUCE_L1 ? 1
              : op == DYNQ_OP_REDUCE_L2 || op == DYNQ_OP_REDUCE_SUM_SQUARE ? 2
              : op == DYNQ_OP_REDUCE_SUM || mean || op == DYNQ_OP_REDUCE_LOG_SUM ? 0 : -1;
  if (f >= 0 && x->dtype == DYNQ_DT_F32 && n > 0 && as_block(x, &p, &ob, &rb, &ib)) {
    (f == 0 ? sum_block_0 : f == 1 ? sum_block_1 : sum_block_2)(x->data, ob, rb, ib, acc);
  } else {
    for (int64_t i = 0; i < n; i++, plan_next(x, &p, cnt, &off)) {
      const double v = dynq__load_d(x->data, x->dtype, i);
      switch (op) {
      case DYNQ_OP_REDUCE_PROD: acc[off] *= v; break;
      case DYNQ_OP_REDUCE_L1: acc[off] += fabs(v); break;
      case DYNQ_OP_REDUCE_L2:
      case DYNQ_OP_REDUCE_SUM_SQUARE: acc[off] += v * v; break;
      case DYNQ_OP_REDUCE_LOG_SUM_EXP: acc[off] += exp(v); break;
      default: acc[off] += v; break;
      }
    }
  }
  double cntr = no > 0 && n > 0 ? (double)n / (double)no : 0;
  for (int64_t i = 0; i < no; i++) {
    double v = acc[i];
    if (mean) v = cntr > 0 ? v / cntr : NAN;
    else if (op == DYNQ_OP_REDUCE_L2) v = sqrt(v);
    else if (op == DYNQ_OP_REDUCE_LOG_SUM_EXP || op == DYNQ_OP_REDUCE_LOG_SUM) v = log(v);
    if (x->dtype == DYNQ_DT_F32) ((float *)out->data)[i] = (float)v;
    else dynq__store_i(out->data, x->dtype, i, (int64_t)v);
  }
  free(acc);
  return 0;
}

/* ---- MeanVarianceNormalization(X [, axes]): (x - mean) / (std + 1e-9)
 * with mean and (population) variance over the axes, [0, 2, 3] when
 * absent (ONNX's default); both in double ---- */

int dynq__prep_mvn(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                   char *err, size_t errlen) {
  (void)g, (void)n, (void)err, (void)errlen;
  st->reduce.keepdims = 1;
  return 0;
}

int dynq__run_mvn(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_f32(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  int64_t dflt[3] = {0, 2, 3};
  const dynq__tensor_t da = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {3}, .data = dflt};
  const dynq__tensor_t *axes = c->node->n_in > 1 && in[1] != NULL ? in[1] : &da;
  plan_t p;
  if ((rc = make_plan(c, x, axes, &p))) return rc;
  const int64_t no = dynq__shape_numel(p.rank, p.dims), n = dynq__tensor_numel(x);
  double *acc = calloc((size_t)(no > 0 ? 2 * no : 1), sizeof(double));
  if (acc == NULL) return dynq__op_fail(c, -ENOMEM, "out of memory");
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, x->rank, x->dims, 0))) {
    free(acc);
    return rc;
  }
  double *mean = acc, *var = acc + no;
  const float *px = x->data;
  float *py = out->data;
  const double cnt = no > 0 && n > 0 ? (double)n / (double)no : 1.0;
  int64_t ix[DYNQ_MAX_RANK] = {0}, off = 0;
  for (int64_t i = 0; i < n; i++, plan_next(x, &p, ix, &off)) mean[off] += px[i];
  for (int64_t j = 0; j < no; j++) mean[j] /= cnt;
  for (int64_t i = 0; i < n; i++, plan_next(x, &p, ix, &off))
    var[off] += (px[i] - mean[off]) * (px[i] - mean[off]);
  for (int64_t j = 0; j < no; j++) var[j] = sqrt(var[j] / cnt) + 1e-9;
  for (int64_t i = 0; i < n; i++, plan_next(x, &p, ix, &off))
    py[i] = (float)((px[i] - mean[off]) / var[off]);
  free(acc);
  return 0;
}

/* ---- ReduceMax, ReduceMin ---- */

/* NaN propagates, as numpy's maximum.reduce (ONNX's reference) does.  An
 * empty reduction gives -inf / +inf for float32 (ONNX opset 18), the
 * dtype's lowest / highest value for integers. */
int dynq__run_reduce_minmax(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                            dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  const int is_max = c->node->op == DYNQ_OP_REDUCE_MAX;
  if (x->dtype != DYNQ_DT_F32 && !dynq__dt_is_int(x->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  plan_t p;
  if ((rc = make_plan(c, x, c->node->n_in > 1 ? in[1] : NULL, &p))) return rc;
  if (p.noop) return copy_input(c, x, out);
  if ((rc = dynq__op_alloc(c, out, x->dtype, p.rank, p.dims, 1))) return rc;
  int64_t no = dynq__tensor_numel(out), n = dynq__tensor_numel(x);
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off = 0, ob, rb, ib;
  if (x->dtype == DYNQ_DT_F32 && n > 0 && as_block(x, &p, &ob, &rb, &ib)) {
    minmax_block(x->data, ob, rb, ib, out->data, is_max);
    return 0;
  }
  if (x->dtype == DYNQ_DT_F32) {
    const float *xv = x->data;
    float *y = out->data;
    for (int64_t i = 0; i < no; i++) y[i] = is_max ? -INFINITY : INFINITY;
    for (int64_t i = 0; i < n; i++, plan_next(x, &p, cnt, &off)) {
      float v = xv[i], m = y[off];
      if (isnan(v) || (is_max ? v > m : v < m)) y[off] = isnan(m) ? m : v;
    }
    return 0;
  }
  int64_t lo = x->dtype == DYNQ_DT_I64 ? INT64_MIN : x->dtype == DYNQ_DT_I32 ? INT32_MIN
             : x->dtype == DYNQ_DT_I8 ? INT8_MIN : 0;
  int64_t hi = x->dtype == DYNQ_DT_I64 ? INT64_MAX : x->dtype == DYNQ_DT_I32 ? INT32_MAX
             : x->dtype == DYNQ_DT_I8 ? INT8_MAX : UINT8_MAX;
  for (int64_t i = 0; i < no; i++) dynq__store_i(out->data, x->dtype, i, is_max ? lo : hi);
  for (int64_t i = 0; i < n; i++, plan_next(x, &p, cnt, &off)) {
    int64_t v = dynq__load_i(x->data, x->dtype, i), m = dynq__load_i(out->data, x->dtype, off);
    if (is_max ? v > m : v < m) dynq__store_i(out->data, x->dtype, off, v);
  }
  return 0;
}

/* ---- ArgMax, ArgMin ---- */

int dynq__prep_argmax(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                      char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->argmax.axis = dynq__node_attr_i(n, "axis", 0);
  st->argmax.keepdims = dynq__node_attr_i(n, "keepdims", 1) != 0;
  st->argmax.last = dynq__node_attr_i(n, "select_last_index", 0) != 0;
  return 0;
}

/* The first (or with select_last_index the last) index of the largest
 * value (ArgMax) or the smallest (ArgMin); a NaN wins over any number
 * (numpy's argmax and argmin). */
int dynq__run_argmax(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, ax = 0;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  if (x->dtype != DYNQ_DT_F32 && !dynq__dt_is_int(x->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  if (x->rank < 1) return dynq__op_fail(c, DYNQ_ESHAPE, "input must have rank >= 1");
  if ((rc = dynq__op_norm_axis(c, c->st->argmax.axis, x->rank, 0, &ax))) return rc;
  const int64_t len = x->dims[ax];
  if (len == 0) return dynq__op_fail(c, DYNQ_ESHAPE, "axis %d is empty", ax);
  int64_t dims[DYNQ_MAX_RANK];
  int r = 0;
  for (int d = 0; d < x->rank; d++)
    if (d != ax) dims[r++] = x->dims[d];
    else if (c->st->argmax.keepdims) dims[r++] = 1;
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_I64, r, dims, 0))) return rc;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < ax; d++) outer *= x->dims[d];
  for (int d = ax + 1; d < x->rank; d++) inner *= x->dims[d];
  const int last = c->st->argmax.last, mn = c->node->op == DYNQ_OP_ARGMIN;
  int64_t *y = out->data;
  for (int64_t a = 0; a < outer; a++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = a * len * inner + i, best = 0;
      if (x->dtype == DYNQ_DT_F32) {
        const float *xv = (const float *)x->data + base;
        float m = xv[0];
        for (int64_t k = 1; k < len && !(isnan(m) && !last); k++) {
          float v = xv[k * inner];
          int take = isnan(m) ? isnan(v) : (isnan(v) || (mn ? v < m : v > m) || (last && v == m));
          if (take) m = v, best = k;
        }
      } else {
        int64_t m = dynq__load_i(x->data, x->dtype, base);
        for (int64_t k = 1; k < len; k++) {
          int64_t v = dynq__load_i(x->data, x->dtype, base + k * inner);
          if ((mn ? v < m : v > m) || (last && v == m)) m = v, best = k;
        }
      }
      y[a * inner + i] = best;
    }
  return 0;
}

/* ---- CumSum ---- */

int dynq__prep_cumsum(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                      char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->cumsum.exclusive = dynq__node_attr_i(n, "exclusive", 0) != 0;
  st->cumsum.reverse = dynq__node_attr_i(n, "reverse", 0) != 0;
  return 0;
}

/* Sums in the element type, in order along the axis (numpy's cumsum,
 * ONNX's reference); integers wrap as the dtype does. */
int dynq__run_cumsum(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, ax = 0, na = 0;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1)))
    return rc;
  const dynq__tensor_t *x = in[0];
  if (x->dtype != DYNQ_DT_F32 && !dynq__dt_is_int(x->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  int64_t axv[1];
  if ((rc = dynq__op_read_ints(c, in[1], "axis", axv, 1, &na))) return rc;
  if (na != 1) return dynq__op_fail(c, DYNQ_ESHAPE, "axis must hold one value");
  if (x->rank < 1) return dynq__op_fail(c, DYNQ_ESHAPE, "input must have rank >= 1");
  if ((rc = dynq__op_norm_axis(c, axv[0], x->rank, 0, &ax))) return rc;
  if ((rc = dynq__op_alloc(c, out, x->dtype, x->rank, x->dims, 0))) return rc;
  const int64_t len = x->dims[ax];
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < ax; d++) outer *= x->dims[d];
  for (int d = ax + 1; d < x->rank; d++) inner *= x->dims[d];
  const int ex = c->st->cumsum.exclusive, rev = c->st->cumsum.reverse;
  for (int64_t a = 0; a < outer; a++)
    for (int64_t i = 0; i < inner; i++) {
      float fs = 0.0f;
      int64_t is = 0;
      for (int64_t j = 0; j < len; j++) {
        int64_t k = rev ? len - 1 - j : j, at = (a * len + k) * inner + i;
        if (x->dtype == DYNQ_DT_F32) {
          float v = ((const float *)x->data)[at];
          if (!ex) fs += v;
          ((float *)out->data)[at] = fs;
          if (ex) fs += v;
        } else {
          int64_t v = dynq__load_i(x->data, x->dtype, at);
          if (!ex) is = (int64_t)((uint64_t)is + (uint64_t)v);
          dynq__store_i(out->data, x->dtype, at, is);
          if (ex) is = (int64_t)((uint64_t)is + (uint64_t)v);
        }
      }
    }
  return 0;
}

int dynq__prep_reduce(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                      char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->reduce.keepdims = dynq__node_attr_i(n, "keepdims", 1) != 0;
  st->reduce.noop_empty = dynq__node_attr_i(n, "noop_with_empty_axes", 0) != 0;
  return 0;
}
