/*
 * FP32 operators and the op table.  Shapes are computed and checked per
 * request (the batch dimension may vary); every failure names the node.
 * FP32 matrix products go through OpenBLAS, called single-threaded (the
 * daemon sets openblas_set_num_threads(1): several workers call it).
 */
#include "ops.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dynq/errors.h"

int dynq__op_fail(dynq__op_ctx_t *c, int code, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  snprintf(c->err, c->errlen, "node '%s' (%s): %s", c->node->name,
           dynq__op_name(c->node->op), msg);
  return code;
}

int dynq__op_out_like(dynq__op_ctx_t *c, int k, dynq_dtype_t dt, int rank,
                      const int64_t *dims, dynq__tensor_t *out) {
  dynq__tensor_t *d = k >= 0 && k < 3 ? c->donor[k] : NULL;
  int64_t n = dynq__shape_numel(rank, dims);
  if (d != NULL && d->owned && d->dtype == dt && n >= 0 && n == dynq__tensor_numel(d) &&
      rank >= 0 && rank <= DYNQ_MAX_RANK) {
    *out = *d;
    out->rank = rank;
    memset(out->dims, 0, sizeof(out->dims));
    for (int i = 0; i < rank; i++) out->dims[i] = dims[i];
    d->owned = 0; /* a view until the executor clears the slot */
    c->donor[k] = NULL;
    return 0;
  }
  int rc = dynq__tensor_alloc_uninit(out, dt, rank, dims);
  if (rc == DYNQ_ELIMIT) return dynq__op_fail(c, rc, "output too large");
  if (rc != 0) return dynq__op_fail(c, rc, "out of memory");
  return 0;
}

static int need_f32(dynq__op_ctx_t *c, const dynq__tensor_t *t, int idx) {
  if (t->dtype != DYNQ_DT_F32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "input %d is %s, expected float32", idx,
                         dynq__dtype_name(t->dtype));
  return 0;
}

static int alloc_out(dynq__op_ctx_t *c, dynq__tensor_t *o, dynq_dtype_t dt,
                     int rank, const int64_t *dims) {
  int rc = dynq__tensor_alloc(o, dt, rank, dims);
  if (rc == DYNQ_ELIMIT) return dynq__op_fail(c, rc, "output too large");
  if (rc != 0) return dynq__op_fail(c, rc, "out of memory");
  return 0;
}

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

static int run_binary(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                      dynq__tensor_t *out, int kind) {
  const dynq__tensor_t *a = in[0], *b = in[1];
  int rc;
  /* int64 shape arithmetic and the like: the generic path (ops_graph.c) */
  if (a->dtype != DYNQ_DT_F32 || b->dtype != DYNQ_DT_F32) return dynq__run_binary_any(c, in, out);
  if ((rc = need_f32(c, a, 0)) || (rc = need_f32(c, b, 1))) return rc;
  int r = a->rank > b->rank ? a->rank : b->rank;
  int64_t dims[DYNQ_MAX_RANK], sa[DYNQ_MAX_RANK], sb[DYNQ_MAX_RANK];
  /* right-aligned dims; stride 0 where broadcast */
  int64_t ea = 1, eb = 1;
  for (int d = r - 1; d >= 0; d--) {
    int ia = d - (r - a->rank), ib = d - (r - b->rank);
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      char x[128], y[128];
      return dynq__op_fail(c, DYNQ_ESHAPE, "shapes %s and %s do not broadcast",
                           dynq__shape_str(x, sizeof(x), a->rank, a->dims),
                           dynq__shape_str(y, sizeof(y), b->rank, b->dims));
    }
    dims[d] = da == 1 ? db : da;
    sa[d] = da == 1 ? 0 : ea;
    sb[d] = db == 1 ? 0 : eb;
    ea *= da;
    eb *= db;
  }
  int64_t n = dynq__shape_numel(r, dims), na = dynq__tensor_numel(a), nb = dynq__tensor_numel(b);
  /* In place into an input of the output's shape when the executor offers
   * it: every output element is written from the same index of that
   * input (its strides are the output's), after it was read. */
  if ((rc = dynq__op_out_like(c, c->donor[0] != NULL && na == n ? 0 : 1, DYNQ_DT_F32, r, dims, out)))
    return rc;
  const float *pa = a->data, *pb = b->data;
  float *po = out->data;
  if (n == 0) return 0;
  if ((na == n || na == 1) && (nb == n || nb == 1)) {
    /* same shapes, or a scalar on one side: no index arithmetic */
    binary_run(kind, po, pa, na == n, pb, nb == n, n);
    return 0;
  }
  /* Iterate with the innermost dimension as a tight loop. */
  int64_t inner = r > 0 ? dims[r - 1] : 1;
  int64_t ia = r > 0 ? sa[r - 1] : 0, ib = r > 0 ? sb[r - 1] : 0;
  int64_t idx[DYNQ_MAX_RANK] = {0};
  int64_t oa = 0, ob = 0;
  for (int64_t o = 0; o < n; o += inner) {
    binary_run(kind, po + o, pa + oa, ia, pb + ob, ib, inner);
    for (int d = r - 2; d >= 0; d--) {
      idx[d]++;
      oa += sa[d];
      ob += sb[d];
      if (idx[d] < dims[d]) break;
      oa -= sa[d] * dims[d];
      ob -= sb[d] * dims[d];
      idx[d] = 0;
    }
  }
  return 0;
}

static int run_add(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return run_binary(c, in, out, OP_ADD); }
static int run_sub(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return run_binary(c, in, out, OP_SUB); }
static int run_mul(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return run_binary(c, in, out, OP_MUL); }
static int run_div(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return run_binary(c, in, out, OP_DIV); }

/* ---- elementwise unary ---- */

static int run_unary(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                     dynq__tensor_t *out, int kind) {
  int rc;
  if ((rc = need_f32(c, in[0], 0))) return rc;
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
    for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
    break;
  case DYNQ_OP_TANH:
    for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
    break;
  default:
    if (y != x) memcpy(y, x, (size_t)n * sizeof(float));
  }
  return 0;
}

static int run_relu(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return run_unary(c, in, out, DYNQ_OP_RELU); }
static int run_sigmoid(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return run_unary(c, in, out, DYNQ_OP_SIGMOID); }
static int run_tanh(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) { return run_unary(c, in, out, DYNQ_OP_TANH); }

/* A move instead of a copy when the executor offers the input. */
static int run_identity(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                        dynq__tensor_t *out) {
  int rc = dynq__op_out_like(c, 0, in[0]->dtype, in[0]->rank, in[0]->dims, out);
  if (rc == 0 && out->data != in[0]->data && dynq__tensor_nbytes(in[0]))
    memcpy(out->data, in[0]->data, dynq__tensor_nbytes(in[0]));
  return rc;
}

/* ---- Softmax (opset 13: along one axis) ---- */

static int norm_axis(dynq__op_ctx_t *c, int64_t axis, int rank, int allow_end,
                     int *ret) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a > rank - (allow_end ? 0 : 1))
    return dynq__op_fail(c, DYNQ_ESHAPE, "axis %lld out of range for rank %d",
                         (long long)axis, rank);
  *ret = (int)a;
  return 0;
}

static int run_softmax(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  int rc, ax = 0;
  if ((rc = need_f32(c, x, 0))) return rc;
  if (x->rank == 0) return dynq__op_fail(c, DYNQ_ESHAPE, "input is a scalar");
  if ((rc = norm_axis(c, dynq__node_attr_i(c->node, "axis", -1), x->rank, 0, &ax))) return rc;
  if ((rc = alloc_out(c, out, DYNQ_DT_F32, x->rank, x->dims))) return rc;
  int64_t len = x->dims[ax], inner = 1, outer = 1;
  for (int d = ax + 1; d < x->rank; d++) inner *= x->dims[d];
  for (int d = 0; d < ax; d++) outer *= x->dims[d];
  const float *px = x->data;
  float *py = out->data;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const float *xs = px + o * len * inner + i;
      float *ys = py + o * len * inner + i;
      float mx = -INFINITY;
      for (int64_t k = 0; k < len; k++) mx = xs[k * inner] > mx ? xs[k * inner] : mx;
      double sum = 0;
      for (int64_t k = 0; k < len; k++) {
        float e = expf(xs[k * inner] - mx);
        ys[k * inner] = e;
        sum += e;
      }
      float inv = (float)(1.0 / sum);
      for (int64_t k = 0; k < len; k++) ys[k * inner] *= inv;
    }
  return 0;
}

/* ---- Flatten, Reshape ---- */

/* The same bytes under another shape: moved when the executor offers
 * input 0 (x), copied otherwise. */
static int reshape_to(dynq__op_ctx_t *c, const dynq__tensor_t *x, int rank,
                      const int64_t *dims, dynq__tensor_t *out) {
  int rc = dynq__op_out_like(c, 0, x->dtype, rank, dims, out);
  if (rc == 0 && out->data != x->data && dynq__tensor_nbytes(x))
    memcpy(out->data, x->data, dynq__tensor_nbytes(x));
  return rc;
}

static int run_flatten(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  int ax = 0, rc;
  if ((rc = norm_axis(c, dynq__node_attr_i(c->node, "axis", 1), x->rank, 1, &ax))) return rc;
  int64_t d[2] = {1, 1};
  for (int i = 0; i < x->rank; i++) d[i < ax ? 0 : 1] *= x->dims[i];
  return reshape_to(c, x, 2, d, out);
}

static int run_reshape(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *s = in[1];
  char a[128];
  if (s->dtype != DYNQ_DT_I64 || s->rank != 1 || s->dims[0] > DYNQ_MAX_RANK)
    return dynq__op_fail(c, DYNQ_ESHAPE, "shape input must be int64 1-D of at most %d values", DYNQ_MAX_RANK);
  int allowzero = (int)dynq__node_attr_i(c->node, "allowzero", 0);
  int rank = (int)s->dims[0], neg = -1;
  const int64_t *sv = s->data;
  int64_t dims[DYNQ_MAX_RANK], known = 1;
  for (int i = 0; i < rank; i++) {
    int64_t v = sv[i];
    if (v == 0 && !allowzero) {
      if (i >= x->rank) return dynq__op_fail(c, DYNQ_ESHAPE, "shape[%d] = 0 copies a dimension the input lacks", i);
      v = x->dims[i];
    }
    if (v == -1) {
      if (neg >= 0) return dynq__op_fail(c, DYNQ_ESHAPE, "more than one -1 in shape");
      neg = i;
      v = 1;
    } else if (v < 0) {
      return dynq__op_fail(c, DYNQ_ESHAPE, "negative dimension %lld in shape", (long long)v);
    }
    dims[i] = v;
    if (dynq__shape_numel(1, &v) < 0) return dynq__op_fail(c, DYNQ_ESHAPE, "dimension too large");
    known *= v;
    if (known > DYNQ_MAX_ELEMS) return dynq__op_fail(c, DYNQ_ESHAPE, "shape too large");
  }
  int64_t n = dynq__tensor_numel(x);
  if (neg >= 0) {
    if (known == 0 || n % known)
      return dynq__op_fail(c, DYNQ_ESHAPE, "cannot infer -1: %lld elements of %s", (long long)n,
                           dynq__shape_str(a, sizeof(a), x->rank, x->dims));
    dims[neg] = n / known;
    known = n;
  }
  if (known != n)
    return dynq__op_fail(c, DYNQ_ESHAPE, "cannot reshape %s (%lld elements) to %lld elements",
                         dynq__shape_str(a, sizeof(a), x->rank, x->dims), (long long)n, (long long)known);
  return reshape_to(c, x, rank, dims, out);
}

/* ---- MatMul (numpy semantics) and Gemm through OpenBLAS ---- */

/* C[M,N] (+)= alpha * op(A) * op(B); sgemv when M == 1 is faster. */
static void sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb,
                  float beta, float *C, int64_t ldc) {
  if (M == 1 && !ta) {
    /* y = alpha * op(B)^T x: B is K x N (row-major) unless transposed */
    if (!tb)
      cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)N, alpha, B, (int)ldb, A, 1, beta, C, 1);
    else
      cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, alpha, B, (int)ldb, A, 1, beta, C, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* Exposed for qlinear.c's reference path. */
void dynq__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb,
                 float beta, float *C, int64_t ldc);
void dynq__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb,
                 float beta, float *C, int64_t ldc) {
  sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static int run_matmul(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                      dynq__tensor_t *out) {
  const dynq__tensor_t *a = in[0], *b = in[1];
  int rc;
  char x[128], y[128];
  if ((rc = need_f32(c, a, 0)) || (rc = need_f32(c, b, 1))) return rc;
  if (a->rank < 1 || b->rank < 1) return dynq__op_fail(c, DYNQ_ESHAPE, "scalar operand");
  /* promote 1-D operands as numpy does, then drop the added dims */
  int64_t ad[DYNQ_MAX_RANK + 1], bd[DYNQ_MAX_RANK + 1];
  int ar = a->rank, br = b->rank;
  memcpy(ad, a->dims, sizeof(int64_t) * (size_t)ar);
  memcpy(bd, b->dims, sizeof(int64_t) * (size_t)br);
  if (ar == 1) { ad[1] = ad[0]; ad[0] = 1; ar = 2; }
  if (br == 1) { bd[1] = 1; br = 2; }
  int64_t M = ad[ar - 2], K = ad[ar - 1], N = bd[br - 1];
  if (bd[br - 2] != K)
    return dynq__op_fail(c, DYNQ_ESHAPE, "inner dimensions differ: %s x %s",
                         dynq__shape_str(x, sizeof(x), a->rank, a->dims),
                         dynq__shape_str(y, sizeof(y), b->rank, b->dims));
  int r = ar > br ? ar : br;
  if (r > DYNQ_MAX_RANK) return dynq__op_fail(c, DYNQ_ESHAPE, "rank too large");
  int64_t od[DYNQ_MAX_RANK], sa[DYNQ_MAX_RANK] = {0}, sb[DYNQ_MAX_RANK] = {0};
  int64_t batch = 1, ea = M * K, eb = K * N;
  for (int d = r - 3; d >= 0; d--) {
    int ia = d - (r - ar), ib = d - (r - br);
    int64_t da = ia >= 0 ? ad[ia] : 1, db = ib >= 0 ? bd[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return dynq__op_fail(c, DYNQ_ESHAPE, "batch dimensions do not broadcast: %s x %s",
                           dynq__shape_str(x, sizeof(x), a->rank, a->dims),
                           dynq__shape_str(y, sizeof(y), b->rank, b->dims));
    od[d] = da == 1 ? db : da;
    sa[d] = da == 1 ? 0 : ea;
    sb[d] = db == 1 ? 0 : eb;
    ea *= da;
    eb *= db;
    batch *= od[d];
  }
  od[r - 2] = M;
  od[r - 1] = N;
  /* output rank drops promoted dims */
  int64_t fin[DYNQ_MAX_RANK];
  int fr = 0;
  for (int d = 0; d < r - 2; d++) fin[fr++] = od[d];
  if (a->rank > 1) fin[fr++] = M;
  if (b->rank > 1) fin[fr++] = N;
  if ((rc = alloc_out(c, out, DYNQ_DT_F32, fr, fin))) return rc;
  if (M == 0 || N == 0) return 0;
  int64_t idx[DYNQ_MAX_RANK] = {0}, oa = 0, ob = 0;
  for (int64_t bi = 0; bi < batch; bi++) {
    float *C = (float *)out->data + bi * M * N;
    if (K == 0)
      memset(C, 0, sizeof(float) * (size_t)(M * N));
    else
      sgemm(0, 0, M, N, K, 1.0f, (const float *)a->data + oa, K,
            (const float *)b->data + ob, N, 0.0f, C, N);
    for (int d = r - 3; d >= 0; d--) {
      idx[d]++;
      oa += sa[d];
      ob += sb[d];
      if (idx[d] < od[d]) break;
      oa -= sa[d] * od[d];
      ob -= sb[d] * od[d];
      idx[d] = 0;
    }
  }
  return 0;
}

static int run_gemm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                    dynq__tensor_t *out) {
  const dynq__tensor_t *a = in[0], *b = in[1], *cc = in[2];
  int rc;
  char x[128], y[128];
  if ((rc = need_f32(c, a, 0)) || (rc = need_f32(c, b, 1))) return rc;
  if (cc && (rc = need_f32(c, cc, 2))) return rc;
  if (a->rank != 2 || b->rank != 2) return dynq__op_fail(c, DYNQ_ESHAPE, "A and B must be 2-D");
  int ta = (int)dynq__node_attr_i(c->node, "transA", 0);
  int tb = (int)dynq__node_attr_i(c->node, "transB", 0);
  float alpha = dynq__node_attr_f(c->node, "alpha", 1.0f);
  float beta = dynq__node_attr_f(c->node, "beta", 1.0f);
  int64_t M = ta ? a->dims[1] : a->dims[0], K = ta ? a->dims[0] : a->dims[1];
  int64_t Kb = tb ? b->dims[1] : b->dims[0], N = tb ? b->dims[0] : b->dims[1];
  if (K != Kb)
    return dynq__op_fail(c, DYNQ_ESHAPE, "inner dimensions differ: A %s, B %s",
                         dynq__shape_str(x, sizeof(x), 2, a->dims), dynq__shape_str(y, sizeof(y), 2, b->dims));
  /* unidirectional broadcast of C to [M, N], checked before allocating */
  int64_t cm = 1, cn = 1;
  int use_c = cc != NULL && beta != 0.0f;
  if (use_c) {
    if (cc->rank > 2) return dynq__op_fail(c, DYNQ_ESHAPE, "C has rank %d", cc->rank);
    cm = cc->rank == 2 ? cc->dims[0] : 1;
    cn = cc->rank >= 1 ? cc->dims[cc->rank - 1] : 1;
    if ((cm != 1 && cm != M) || (cn != 1 && cn != N))
      return dynq__op_fail(c, DYNQ_ESHAPE, "C %s does not broadcast to [%lld, %lld]",
                           dynq__shape_str(x, sizeof(x), cc->rank, cc->dims), (long long)M, (long long)N);
  }
  int64_t od[2] = {M, N};
  if ((rc = alloc_out(c, out, DYNQ_DT_F32, 2, od))) return rc;
  float *Y = out->data;
  float gbeta = 0.0f;
  if (use_c) {
    const float *pc = cc->data;
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++)
        Y[i * N + j] = beta * pc[(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)];
    gbeta = 1.0f;
  }
  if (M > 0 && N > 0 && K > 0)
    sgemm(ta, tb, M, N, K, alpha, a->data, a->dims[1], b->data, b->dims[1], gbeta, Y, N);
  return 0;
}

/* ---- load-time checks ---- */

static int check_reshape(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  int64_t az = dynq__node_attr_i(n, "allowzero", 0);
  if (az != 0 && az != 1) {
    snprintf(err, errlen, "node '%s' (Reshape): allowzero must be 0 or 1", n->name);
    return DYNQ_EGRAPH;
  }
  return 0;
}

static int check_gemm(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  for (int i = 0; i < 2; i++) {
    int64_t t = dynq__node_attr_i(n, i ? "transB" : "transA", 0);
    if (t != 0 && t != 1) {
      snprintf(err, errlen, "node '%s' (Gemm): %s must be 0 or 1", n->name, i ? "transB" : "transA");
      return DYNQ_EGRAPH;
    }
  }
  return 0;
}

static const dynq__opdef_t optab[DYNQ_OP__COUNT] = {
  [DYNQ_OP_QLINEAR] = {"QLinear", 4, 6, 1, dynq__qlinear_check, dynq__qlinear_run},
  [DYNQ_OP_MATMUL] = {"MatMul", 2, 2, 1, NULL, run_matmul},
  [DYNQ_OP_GEMM] = {"Gemm", 2, 3, 1, check_gemm, run_gemm},
  [DYNQ_OP_ADD] = {"Add", 2, 2, 1, NULL, run_add},
  [DYNQ_OP_SUB] = {"Sub", 2, 2, 1, NULL, run_sub},
  [DYNQ_OP_MUL] = {"Mul", 2, 2, 1, NULL, run_mul},
  [DYNQ_OP_DIV] = {"Div", 2, 2, 1, NULL, run_div},
  [DYNQ_OP_RELU] = {"Relu", 1, 1, 1, NULL, run_relu},
  [DYNQ_OP_SIGMOID] = {"Sigmoid", 1, 1, 1, NULL, run_sigmoid},
  [DYNQ_OP_TANH] = {"Tanh", 1, 1, 1, NULL, run_tanh},
  [DYNQ_OP_SOFTMAX] = {"Softmax", 1, 1, 1, NULL, run_softmax},
  [DYNQ_OP_FLATTEN] = {"Flatten", 1, 1, 1, NULL, run_flatten},
  [DYNQ_OP_RESHAPE] = {"Reshape", 2, 2, 1, check_reshape, run_reshape},
  [DYNQ_OP_IDENTITY] = {"Identity", 1, 1, 1, NULL, run_identity},
};

const dynq__opdef_t *dynq__opdef(int op) {
  if (op <= 0 || op >= DYNQ_OP__COUNT) return NULL;
  if (optab[op].run != NULL) return &optab[op];
  const dynq__opdef_t *d = dynq__opdef_graph(op);
  return d != NULL ? d : dynq__opdef_rnn(op);
}
