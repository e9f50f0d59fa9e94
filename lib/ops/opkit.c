/* The op kit's out-of-line helpers (opkit.h), the OpenBLAS entry every
 * FP32 matrix product goes through, and the fused-activation epilogue. */
#include "opkit.h"

#include <cblas.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "dynq/errors.h"
#include "kernels/clones.h"
#include "kernels/sgemm.h"
#include "parallel.h"
#include "vmath.h"

int dynq__op_fail(dynq__op_ctx_t *c, int code, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  snprintf(c->err, c->errlen, "node '%s' (%s): %s", c->node->name ? c->node->name : "?",
           dynq__op_name(c->node->op), msg);
  return code;
}

int dynq__op_check_bytes(dynq__op_ctx_t *c, int64_t n, int64_t es, const char *what) {
  if (c->max_bytes <= 0 || es <= 0 || n <= c->max_bytes / es) return 0;
  return dynq__op_fail(c, DYNQ_ELIMIT, "%s of %lld elements (%lld bytes) is over the limit of "
                       "%lld bytes", what, (long long)n, (long long)(n * es),
                       (long long)c->max_bytes);
}

uint64_t dynq__run_clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void dynq__run_stop_cap(dynq__run_stop_t *s, int64_t ms) {
  s->start_ns = dynq__run_clock_ns();
  s->limit_ns = ms > 0 ? s->start_ns + (uint64_t)ms * 1000000u : 0;
  s->limit_ms = ms > 0 ? ms : 0;
}

static uint64_t coarse_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int dynq__run_stop_due(const dynq__run_stop_t *s) {
  if (s == NULL) return 0;
  if (s->cancel != NULL && atomic_load_explicit(s->cancel, memory_order_relaxed))
    return DYNQ_ECANCELED;
  if (s->deadline_ns == 0 && s->limit_ns == 0) return 0;
  uint64_t now = coarse_ns();
  if (s->deadline_ns != 0 && now >= s->deadline_ns) return DYNQ_EDEADLINE;
  if (s->limit_ns != 0 && now >= s->limit_ns) return DYNQ_ELIMIT;
  return 0;
}

static int stopped(dynq__op_ctx_t *c, int code, const char *where) {
  const dynq__run_stop_t *s = c->stop;
  uint64_t now = coarse_ns();
  long long ran = s != NULL && s->start_ns != 0 && now > s->start_ns
                      ? (long long)((now - s->start_ns) / 1000000u) : 0;
  if (code == DYNQ_ECANCELED)
    return dynq__op_fail(c, code, "run stopped after %lld ms%s: the request was canceled", ran,
                         where);
  if (code == DYNQ_EDEADLINE)
    return dynq__op_fail(c, code, "run stopped after %lld ms%s: the request's deadline passed "
                         "while it ran", ran, where);
  return dynq__op_fail(c, code, "run stopped after %lld ms%s: runs are limited to %lld ms "
                       "(max_run_ms)", ran, where, s != NULL ? (long long)s->limit_ms : 0LL);
}

int dynq__op_stopped(dynq__op_ctx_t *c, int code) { return stopped(c, code, ""); }

int dynq__op_stop_before(dynq__op_ctx_t *c) {
  int code = dynq__run_stop_due(c->stop);
  return code ? stopped(c, code, ", before this node") : 0;
}

int dynq__op_stop_check(dynq__op_ctx_t *c) {
  int code = dynq__run_stop_due(c->stop);
  return code ? dynq__op_stopped(c, code) : 0;
}

int dynq__op_alloc(dynq__op_ctx_t *c, dynq__tensor_t *out, dynq_dtype_t dt, int rank,
                   const int64_t *dims, int zero) {
  int rc = dynq__op_check_bytes(c, dynq__shape_numel(rank, dims),
                                (int64_t)dynq__dtype_size(dt), "an output");
  if (rc) return rc;
  rc = zero ? dynq__tensor_alloc(out, dt, rank, dims)
           : dynq__tensor_alloc_uninit(out, dt, rank, dims);
  if (rc == DYNQ_ELIMIT) return dynq__op_fail(c, rc, "output too large");
  if (rc != 0) return dynq__op_fail(c, rc, "out of memory");
  return 0;
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
  return dynq__op_alloc(c, out, dt, rank, dims, 0);
}

int dynq__op_reshape_to(dynq__op_ctx_t *c, int k, const dynq__tensor_t *x, int rank,
                        const int64_t *dims, dynq__tensor_t *out) {
  int rc = dynq__op_out_like(c, k, x->dtype, rank, dims, out);
  if (rc == 0 && out->data != x->data && dynq__tensor_nbytes(x))
    memcpy(out->data, x->data, dynq__tensor_nbytes(x));
  return rc;
}

void dynq__op_note_quant(dynq__op_ctx_t *c, int64_t rows, int64_t K, int64_t N,
                         const float *scales, int64_t n) {
  dynq__layer_quant_t *q = c->lq;
  if (q == NULL) return;
  q->rows += rows;
  q->macs += rows * K * N;
  for (int64_t i = 0; scales != NULL && i < n; i++) {
    float s = scales[i];
    if (s == 1.0f) q->const_rows++;
    if (q->scale_max == 0.0f || s < q->scale_min) q->scale_min = s;
    if (s > q->scale_max) q->scale_max = s;
  }
}

int dynq__op_need_f32(dynq__op_ctx_t *c, const dynq__tensor_t *t, int idx) {
  if (t->dtype != DYNQ_DT_F32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "input %d is %s, expected float32", idx,
                         dynq__dtype_name(t->dtype));
  return 0;
}

int dynq__op_need_present(dynq__op_ctx_t *c, const dynq__tensor_t *t, int idx) {
  if (t == NULL) return dynq__op_fail(c, DYNQ_EGRAPH, "input %d is missing", idx);
  if (t->data == NULL && dynq__tensor_numel(t) != 0)
    return dynq__op_fail(c, DYNQ_EGRAPH, "input %d was not computed", idx);
  return 0;
}

int dynq__op_norm_axis(dynq__op_ctx_t *c, int64_t axis, int rank, int allow_end, int *ret) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a > rank - (allow_end ? 0 : 1))
    return dynq__op_fail(c, DYNQ_ESHAPE, "axis %lld out of range for rank %d",
                         (long long)axis, rank);
  *ret = (int)a;
  return 0;
}

int dynq__op_read_ints(dynq__op_ctx_t *c, const dynq__tensor_t *t, const char *what,
                       int64_t *v, int max, int *ret_n) {
  if (t->dtype != DYNQ_DT_I64 && t->dtype != DYNQ_DT_I32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "%s must be int64, is %s", what,
                         dynq__dtype_name(t->dtype));
  if (t->rank > 1) return dynq__op_fail(c, DYNQ_ESHAPE, "%s must be 1-D, has rank %d", what, t->rank);
  int64_t n = dynq__tensor_numel(t);
  if (n < 0 || n > max)
    return dynq__op_fail(c, DYNQ_ESHAPE, "%s has %lld values; at most %d allowed", what,
                         (long long)n, max);
  for (int64_t i = 0; i < n; i++) v[i] = dynq__load_i(t->data, t->dtype, i);
  *ret_n = (int)n;
  return 0;
}

int dynq__bcast_shapes(dynq__bcast_t *b, int nin, const int *ranks,
                       const int64_t *const *dims, int *ret_bad) {
  int r = 0;
  for (int k = 0; k < nin; k++) r = ranks[k] > r ? ranks[k] : r;
  b->rank = r;
  for (int d = r - 1; d >= 0; d--) {
    int64_t out = 1;
    for (int k = 0; k < nin; k++) {
      int i = d - (r - ranks[k]);
      int64_t dk = i >= 0 ? dims[k][i] : 1;
      if (dk == 1) continue;
      if (out != 1 && dk != out) {
        if (ret_bad) *ret_bad = k;
        return DYNQ_ESHAPE;
      }
      out = dk;
    }
    b->dims[d] = out;
  }
  for (int k = 0; k < nin; k++) {
    int64_t e = 1;
    for (int d = r - 1; d >= 0; d--) {
      int i = d - (r - ranks[k]);
      int64_t dk = i >= 0 ? dims[k][i] : 1;
      b->st[k][d] = dk == 1 ? 0 : e;
      e *= dk;
    }
  }
  b->n = dynq__shape_numel(r, b->dims);
  return b->n < 0 ? DYNQ_ELIMIT : 0;
}

int dynq__bcast_init(dynq__op_ctx_t *c, int nin, const dynq__tensor_t *const *t,
                     dynq__bcast_t *b) {
  int ranks[DYNQ_BCAST_MAX], bad = 0;
  const int64_t *dims[DYNQ_BCAST_MAX];
  for (int k = 0; k < nin; k++) {
    ranks[k] = t[k]->rank;
    dims[k] = t[k]->dims;
  }
  int rc = dynq__bcast_shapes(b, nin, ranks, dims, &bad);
  if (rc == DYNQ_ESHAPE) {
    char x[96], y[96];
    return dynq__op_fail(c, rc, "shapes %s and %s do not broadcast",
                         dynq__shape_str(x, sizeof(x), t[0]->rank, t[0]->dims),
                         dynq__shape_str(y, sizeof(y), t[bad]->rank, t[bad]->dims));
  }
  if (rc != 0) return dynq__op_fail(c, rc, "broadcast result too large");
  return 0;
}

/* The activations over one row, compiled for AVX-512, AVX2 and the
 * baseline and picked at load (target_clones): the same IEEE operations
 * in the same order in every clone (-ffp-contract=off), so the same bits
 * on every kernel, split and CPU.  no-trapping-math lets GCC if-convert
 * the selects. */
#define ACT_VEC DYNQ_VEC_OPT
#define ACT_CLONES DYNQ_CLONES

/* GELU (erf form) for both paths: erf(z) = z P(z^2) / Q(z^2) on
 * |z| < 3.92 (degrees 5 and 5, coefficients fitted for this file by
 * reweighted least squares toward minimax: 1.6e-8 in double, 3.4e-7 in
 * float arithmetic), +-1 beyond (float erf rounds to +-1 there).  Within
 * 1e-6 absolute of the exact GELU (dynq_verf's form, which the Erf op
 * keeps: 1.6e-7) at a third of its cost: dynq_verf computes both of its
 * branches, an exp and a division for every value, and as the epilogue of
 * an FP32 layer of 3072 columns it cost 17 % of the GEMM it followed
 * (BERT-base, seq 128, batch 8: 45 of 1100 ms); on the INT8 path the
 * input carries quantization noise around 1e-2 relative.  NaN stays NaN,
 * +inf gives +inf, -inf NaN, as with dynq_verf. */
static inline __attribute__((always_inline)) float gelu_rational(float x) {
  float z = x * 0.70710678118654752f;
  float c = z < -3.92f ? -3.92f : z;
  c = c > 3.92f ? 3.92f : c;
  float u = c * c;
  float p = 2.034415502e-06f;
  p = p * u + 2.874061756e-04f;
  p = p * u + 3.866937477e-03f;
  p = p * u + 5.305616930e-02f;
  p = p * u + 1.927373856e-01f;
  p = p * u + 1.128378987e+00f;
  float q = 3.806343739e-05f;
  q = q * u + 1.187696937e-03f;
  q = q * u + 1.516959164e-02f;
  q = q * u + 1.150728613e-01f;
  q = q * u + 5.041407347e-01f;
  q = q * u + 1.0f;
  float e = c * p / q;
  e = z <= -3.92f ? -1.0f : z >= 3.92f ? 1.0f : e;
  return 0.5f * x * (1.0f + e);
}

/* y += bias (when given), then the activation: the bits of an Add of the
 * bias followed by the activation op (DYNQ_ACT_GELU: gelu_rational). */
ACT_CLONES ACT_VEC static void epi_row(int act, const float *bias, float *y, int64_t n) {
  if (bias != NULL)
    for (int64_t j = 0; j < n; j++) y[j] += bias[j];
  switch (act) {
  case DYNQ_ACT_RELU:
    for (int64_t j = 0; j < n; j++) y[j] = 0.0f > y[j] ? 0.0f : y[j];  /* NaN stays */
    break;
  case DYNQ_ACT_SIGMOID:
    for (int64_t j = 0; j < n; j++) y[j] = dynq_vsigmoid(y[j]);
    break;
  case DYNQ_ACT_GELU:
    for (int64_t j = 0; j < n; j++) y[j] = gelu_rational(y[j]);
    break;
  case DYNQ_ACT_GELU_TANH:
    for (int64_t j = 0; j < n; j++) {
      float x = y[j];
      float u = 0.7978845608028654f * (x + 0.044715f * (x * x * x));
      y[j] = 0.5f * x * (1.0f + dynq_vtanh(u));
    }
    break;
  default:
    break;
  }
}

/* Below this many multiply-adds an FP32 GEMM runs on one thread (the
 * INT8 GEMM's threshold, matmul.c); tasks per thread as there. */
#define SGEMM_SPLIT_MIN_MACS (INT64_C(1) << 21)
#define SGEMM_CHUNKS_PER_THREAD 4
/* Without pre-packed weights B would be packed per call, and OpenBLAS's
 * unpacked sgemm measured faster at every M above one row tile (dynq-bench
 * sgemm: 1.4-2x at M 16, 1.15-1.3x at M 128, ~1.1x at M 1024); at most 6
 * rows of an untransposed B are read in place instead. */
typedef struct sgemm_split {
  const dynq__sgemm_kernel_t *kr;
  const dynq__sgemm_args_t *a;
  int by_rows;                /* chunks of rows (N is one or two panels) */
  int64_t units, chunks;      /* panels or row tiles, tasks */
} sgemm_split_t;

static void blas_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc) {
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

/* The columns [n0, n1) of a; when its scratch cannot be allocated (C is
 * then untouched), the same part through OpenBLAS and then the epilogue. */
static void run_cols(const dynq__sgemm_kernel_t *kr, const dynq__sgemm_args_t *a) {
  if (dynq__sgemm_cols(kr, a) == 0) return;
  const float *B = a->B + (a->tb ? a->n0 * a->ldb : a->n0);
  blas_sgemm(a->ta, a->tb, a->M, a->n1 - a->n0, a->K, a->alpha, a->A, a->lda, B, a->ldb,
             a->beta, a->C + a->n0, a->ldc);
  if (a->epi) a->epi(a->epi_ctx, a->C + a->n0, a->ldc, a->n0, a->M, a->n1 - a->n0);
}

/* Rows and columns are independent, so any split gives the bits of one
 * call (sgemm.h's numerics). */
static void sgemm_task(void *ctx, int64_t t) {
  sgemm_split_t *s = ctx;
  dynq__sgemm_args_t a = *s->a;
  int64_t u0 = s->units * t / s->chunks, u1 = s->units * (t + 1) / s->chunks;
  if (s->by_rows) {
    int64_t m0 = u0 * DYNQ_SGEMM_MR, m1 = u1 * DYNQ_SGEMM_MR < a.M ? u1 * DYNQ_SGEMM_MR : a.M;
    if (m0 >= m1) return;
    a.A += a.ta ? m0 : m0 * a.lda;
    a.C += m0 * a.ldc;
    a.M = m1 - m0;
  } else {
    a.n0 = u0 * DYNQ_SGEMM_NR;
    a.n1 = u1 * DYNQ_SGEMM_NR < a.N ? u1 * DYNQ_SGEMM_NR : a.N;
    if (a.n0 >= a.n1) return;
  }
  run_cols(s->kr, &a);
}

typedef struct linear_epi {
  const float *bias;  /* [N] or NULL */
  int act;            /* DYNQ_ACT_* */
} linear_epi_t;

/* The layer epilogue on a block of C (sgemm.h's args.epi). */
static void linear_epi(const void *ctx, float *c, int64_t ldc, int64_t n, int64_t rows,
                       int64_t cols) {
  const linear_epi_t *e = ctx;
  for (int64_t r = 0; r < rows; r++)
    epi_row(e->act, e->bias ? e->bias + n : NULL, c + r * ldc, cols);
}

int dynq__sgemm_ex(int threads, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, const float *Bp,
                   float beta, float *C, int64_t ldc) {
  return dynq__sgemm_layer(threads, ta, tb, M, N, K, alpha, A, lda, B, ldb, Bp, beta, C, ldc,
                           NULL, DYNQ_ACT_NONE);
}

int dynq__sgemm_layer(int threads, int ta, int tb, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                      const float *Bp, float beta, float *C, int64_t ldc, const float *bias,
                      int act) {
  const dynq__sgemm_kernel_t *kr = dynq__sgemm_kernel();
  const linear_epi_t epi = {.bias = bias, .act = act};
  const int has_epi = bias != NULL || act != DYNQ_ACT_NONE;
  if (M <= 0 || N <= 0) return 0;
  if (K <= 0) {  /* nothing to sum: C = beta * C (BLAS leaves C alone when beta is 1) */
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) C[m * ldc + n] = beta == 0.0f ? 0.0f : beta * C[m * ldc + n];
    if (has_epi) linear_epi(&epi, C, ldc, 0, M, N);
    return 0;
  }
  if (Bp == NULL && (kr == &dynq__sgemm_ref || (M == 1 && !ta) || N < DYNQ_SGEMM_MIN_N || tb ||
                     M > DYNQ_SGEMM_MR)) {
    blas_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (has_epi) linear_epi(&epi, C, ldc, 0, M, N);
    return 0;
  }
  dynq__sgemm_args_t a = {.M = M, .N = N, .K = K, .alpha = alpha, .beta = beta,
                          .A = A, .lda = lda, .ta = ta, .B = B, .ldb = ldb, .tb = tb,
                          .Bp = Bp, .C = C, .ldc = ldc, .n0 = 0, .n1 = N,
                          .epi = has_epi ? linear_epi : NULL, .epi_ctx = &epi};
  const int64_t panels = (N + DYNQ_SGEMM_NR - 1) / DYNQ_SGEMM_NR;
  const int64_t tiles = (M + DYNQ_SGEMM_MR - 1) / DYNQ_SGEMM_MR;
  sgemm_split_t s = {.kr = kr, .a = &a, .by_rows = panels < 2 * threads,
                     .units = panels < 2 * threads ? tiles : panels};
  if (threads <= 1 || s.units < 2 || M * N * K < SGEMM_SPLIT_MIN_MACS) {
    run_cols(kr, &a);
    return 0;
  }
  s.chunks = (int64_t)threads * SGEMM_CHUNKS_PER_THREAD;
  if (s.chunks > s.units) s.chunks = s.units;
  return dynq__parallel_for(threads, s.chunks, sgemm_task, &s);
}

void dynq__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb,
                 float beta, float *C, int64_t ldc) {
  (void)dynq__sgemm_ex(1, ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
}

/* The Sigmoid, Tanh and Erf ops over n values (y may be x), cloned as
 * epi_row: the same bits as the scalar formulas on every CPU. */
ACT_CLONES ACT_VEC void dynq__vmath_apply(int fn, const float *x, float *y, int64_t n) {
  switch (fn) {
  case DYNQ_VMATH_SIGMOID:
    for (int64_t j = 0; j < n; j++) y[j] = dynq_vsigmoid(x[j]);
    break;
  case DYNQ_VMATH_TANH:
    for (int64_t j = 0; j < n; j++) y[j] = dynq_vtanh(x[j]);
    break;
  case DYNQ_VMATH_ERF:
    for (int64_t j = 0; j < n; j++) y[j] = dynq_verf(x[j]);
    break;
  default:
    break;
  }
}

void dynq__act_apply(int act, float *C, size_t ldc, int64_t M, int64_t n0, int64_t n1) {
  if (act == DYNQ_ACT_NONE || n1 <= n0) return;
  for (int64_t m = 0; m < M; m++) epi_row(act, NULL, C + (size_t)m * ldc + n0, n1 - n0);
}
