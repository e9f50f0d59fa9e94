/*
 * Kernel suites: the reference kernel against a plain double GEMM, and
 * every other compiled kernel the CPU supports bit for bit against the
 * reference (qgemm outputs, quantized activations, scales, zero points,
 * min/max) on ragged shapes, sub-ranges, misaligned pointers and
 * non-finite or extreme inputs.  One suite per kernel.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "kernels/kernels.h"
#include "testutil.h"

/* ---- data helpers ---- */

static uint64_t rng_state;

static uint64_t rng_next(void) {
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}

static double rng_unit(void) {   /* (0, 1) */
  return ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
}

static float rng_normal(void) {
  return (float)(sqrt(-2.0 * log(rng_unit())) * cos(6.283185307179586 * rng_unit()));
}

static const int64_t sizes[] = {1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 63, 64,
                                65, 127, 129, 255, 257};
#define NSIZES ((int)(sizeof(sizes) / sizeof(sizes[0])))

/* A weight matrix ready for the kernels. */
typedef struct problem {
  int64_t M, N, K, Kp;
  float *X;          /* M x K, stride ldx */
  size_t ldx;
  int8_t *W;         /* N x K */
  int8_t *B;         /* packed */
  int32_t *colsum;
  float *w_scale, *bias;
} problem_t;

static void problem_init(problem_t *p, int64_t M, int64_t N, int64_t K,
                         uint64_t seed) {
  memset(p, 0, sizeof(*p));
  rng_state = seed * 2654435761u + 88172645463325252ull;
  p->M = M;
  p->N = N;
  p->K = K;
  p->Kp = dynq__round_up(K, 4);
  p->ldx = (size_t)K + 3;
  p->X = calloc((size_t)M * p->ldx + 1, sizeof(float));
  p->W = malloc((size_t)(N * K));
  size_t bsz = (size_t)(dynq__round_up(N, 16) * p->Kp);
  p->B = aligned_alloc(64, (bsz + 63) / 64 * 64);
  p->colsum = malloc(sizeof(int32_t) * (size_t)N);
  p->w_scale = malloc(sizeof(float) * (size_t)N);
  p->bias = malloc(sizeof(float) * (size_t)N);
  ck_assert(p->X && p->W && p->B && p->colsum && p->w_scale && p->bias);
  for (int64_t m = 0; m < M; m++)
    for (int64_t k = 0; k < K; k++) p->X[m * p->ldx + k] = rng_normal();
  for (int64_t n = 0; n < N; n++) {
    int32_t cs = 0;
    for (int64_t k = 0; k < K; k++) {
      int8_t w = (int8_t)((int)(rng_next() % 255) - 127);
      p->W[n * K + k] = w;
      cs += w;
    }
    p->colsum[n] = cs;
    p->w_scale[n] = (float)(0.001 + rng_unit() * 0.01);
    p->bias[n] = rng_normal();
  }
  dynq__pack_weights(N, K, p->W, p->B);
}

static void problem_free(problem_t *p) {
  free(p->X);
  free(p->W);
  free(p->B);
  free(p->colsum);
  free(p->w_scale);
  free(p->bias);
}

/* Everything one kernel produces for a problem. */
typedef struct result {
  uint8_t *A;       /* M x lda */
  size_t lda;
  float *a_scale;
  int32_t *a_zp;
  float *Cbuf;      /* C = Cbuf + coff, stride ldc */
  float *C;
  size_t ldc;
} result_t;

typedef struct run_opts {
  size_t lda_extra;   /* added to Kp (odd => misaligned rows) */
  size_t a_off;       /* byte offset of A */
  size_t ldc_extra;
  size_t c_off;       /* float offset of C (1 => not 64/16-aligned) */
  int64_t n0, n1;     /* n1 == 0: N */
  int per_tensor;
  int no_bias;
  int act;
} run_opts_t;

#define SENTINEL 12345.5f

static void run(const dynq__kernel_t *k, const problem_t *p,
                const run_opts_t *o, result_t *r) {
  r->lda = (size_t)p->Kp + o->lda_extra;
  uint8_t *abuf = malloc((size_t)p->M * r->lda + o->a_off + 64);
  ck_assert_ptr_nonnull(abuf);
  memset(abuf, 0xee, (size_t)p->M * r->lda + o->a_off + 64);
  r->A = abuf + o->a_off;
  r->a_scale = malloc(sizeof(float) * (size_t)p->M);
  r->a_zp = malloc(sizeof(int32_t) * (size_t)p->M);
  r->ldc = (size_t)p->N + o->ldc_extra;
  size_t cn = (size_t)p->M * r->ldc + o->c_off;
  r->Cbuf = malloc(sizeof(float) * cn);
  ck_assert(r->a_scale && r->a_zp && r->Cbuf);
  for (size_t i = 0; i < cn; i++) r->Cbuf[i] = SENTINEL;
  r->C = r->Cbuf + o->c_off;

  dynq__quantize_rows(k, p->M, p->K, p->X, p->ldx, r->A, r->lda,
                      o->per_tensor, r->a_scale, r->a_zp);
  dynq__qgemm_args_t a = {
    .M = p->M, .N = p->N, .K = p->K,
    .A = r->A, .lda = r->lda,
    .B = p->B, .colsum = p->colsum, .w_scale = p->w_scale,
    .a_scale = r->a_scale, .a_zp = r->a_zp,
    .bias = o->no_bias ? NULL : p->bias, .act = o->act,
    .C = r->C, .ldc = r->ldc,
    .n0 = o->n0, .n1 = o->n1 ? o->n1 : p->N,
  };
  k->qgemm(&a);
}

static void result_free(result_t *r, const run_opts_t *o) {
  free(r->A - o->a_off);
  free(r->a_scale);
  free(r->a_zp);
  free(r->Cbuf);
}

/* Run ref and k on the same problem; everything must be identical. */
static void check_same(const dynq__kernel_t *k, const problem_t *p,
                       const run_opts_t *o) {
  result_t want, got;
  run(&dynq__kernel_ref, p, o, &want);
  run(k, p, o, &got);
  for (int64_t m = 0; m < p->M; m++) {
    ck_assert_msg(memcmp(&want.a_scale[m], &got.a_scale[m], 4) == 0 &&
                  want.a_zp[m] == got.a_zp[m],
                  "%s: row %lld qparams differ (M=%lld N=%lld K=%lld)",
                  k->name, (long long)m, (long long)p->M, (long long)p->N,
                  (long long)p->K);
    ck_assert_msg(memcmp(want.A + m * want.lda, got.A + m * got.lda,
                         (size_t)p->Kp) == 0,
                  "%s: quantized row %lld differs (M=%lld N=%lld K=%lld)",
                  k->name, (long long)m, (long long)p->M, (long long)p->N,
                  (long long)p->K);
  }
  size_t cn = (size_t)p->M * want.ldc + o->c_off;
  if (memcmp(want.Cbuf, got.Cbuf, sizeof(float) * cn) != 0) {
    for (size_t i = 0; i < cn; i++)
      if (memcmp(&want.Cbuf[i], &got.Cbuf[i], 4) != 0)
        ck_abort_msg("%s: C differs at %zu (m=%zu n=%zu): ref %.9g got %.9g "
                     "(M=%lld N=%lld K=%lld n0=%lld n1=%lld)",
                     k->name, i, (i - o->c_off) / want.ldc,
                     (i - o->c_off) % want.ldc, want.Cbuf[i], got.Cbuf[i],
                     (long long)p->M, (long long)p->N, (long long)p->K,
                     (long long)o->n0, (long long)o->n1);
  }
  result_free(&want, o);
  result_free(&got, o);
}

/* The kernel under test for loop tests: _i indexes dynq__kernel_list(). */
static const dynq__kernel_t *kernel_at(int i) {
  int n;
  const dynq__kernel_t *const *list = dynq__kernel_list(&n);
  ck_assert_int_lt(i, n);
  return list[i];
}

/* ---- bit-exact suites (run for every supported kernel, ref included as a
 * self-check of the harness) ---- */

START_TEST(test_ragged) {
  const dynq__kernel_t *k = kernel_at(_i);
  static const int mul[][3] = {{1, 5, 7}, {3, 1, 11}, {7, 13, 1}};
  for (int pass = 0; pass < 3; pass++)
    for (int i = 0; i < NSIZES; i++) {
      int64_t M = sizes[(i * mul[pass][0]) % NSIZES];
      int64_t N = sizes[(i * mul[pass][1] + 3) % NSIZES];
      int64_t K = sizes[(i * mul[pass][2] + 5) % NSIZES];
      problem_t p;
      problem_init(&p, M, N, K, (uint64_t)(pass * 100 + i + 1));
      run_opts_t o = {.act = (i & 1) ? DYNQ_ACT_RELU : DYNQ_ACT_NONE,
                      .no_bias = (i % 3) == 2};
      check_same(k, &p, &o);
      problem_free(&p);
    }
}
END_TEST

START_TEST(test_large) {
  const dynq__kernel_t *k = kernel_at(_i);
  static const int64_t shapes[][3] = {
    {256, 512, 768}, {5, 3072, 768}, {64, 768, 3000}, {33, 1000, 4099},
  };
  for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
    problem_t p;
    problem_init(&p, shapes[s][0], shapes[s][1], shapes[s][2], 700 + s);
    run_opts_t o = {0};
    check_same(k, &p, &o);
    problem_free(&p);
  }
}
END_TEST

START_TEST(test_subrange_misaligned) {
  const dynq__kernel_t *k = kernel_at(_i);
  static const int64_t shapes[][3] = {
    {1, 100, 33}, {7, 129, 17}, {13, 257, 63}, {66, 200, 130},
  };
  for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
    problem_t p;
    problem_init(&p, shapes[s][0], shapes[s][1], shapes[s][2], 900 + s);
    int64_t N = p.N;
    run_opts_t variants[] = {
      {.n0 = 16, .n1 = N - 3},
      {.n0 = 32, .n1 = 33},
      {.n0 = (N - 1) / 16 * 16, .n1 = N},
      {.lda_extra = 3, .a_off = 1, .ldc_extra = 5, .c_off = 1},
      {.lda_extra = 7, .a_off = 3, .ldc_extra = 1, .c_off = 3, .n0 = 16,
       .n1 = N - 1, .act = DYNQ_ACT_RELU},
      {.per_tensor = 1, .c_off = 1},
    };
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
      if (variants[v].n1 && variants[v].n1 <= variants[v].n0) continue;
      check_same(k, &p, &variants[v]);
    }
    problem_free(&p);
  }
}
END_TEST

/* Rows with special contents: constant, zero, huge, tiny, NaN, Inf. */
static void fill_special_rows(problem_t *p) {
  for (int64_t m = 0; m < p->M; m++) {
    float *x = p->X + m * p->ldx;
    for (int64_t kk = 0; kk < p->K; kk++) {
      float v = x[kk];
      switch (m % 10) {
      case 0: v = 3.5f; break;
      case 1: v = -2.0f; break;
      case 2: v = 0.0f; break;
      case 3: v = v * 1e30f; break;
      case 4: v = v * 1e-30f; break;
      case 5: if (kk == p->K / 2) v = NAN; break;
      case 6: if (kk == p->K - 1) v = INFINITY; break;
      case 7: if (kk == 0) v = -INFINITY; break;
      case 8: v = v * 3e38f; break;   /* overflows to +-inf on some */
      default: v = v * 1e-40f; break; /* subnormal range */
      }
      x[kk] = v;
    }
  }
}

START_TEST(test_special_rows) {
  const dynq__kernel_t *k = kernel_at(_i);
  static const int64_t shapes[][3] = {{10, 40, 33}, {20, 17, 100}, {30, 64, 7}};
  for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
    problem_t p;
    problem_init(&p, shapes[s][0], shapes[s][1], shapes[s][2], 300 + s);
    fill_special_rows(&p);
    run_opts_t o = {0}, o_relu = {.act = DYNQ_ACT_RELU},
               o_pt = {.per_tensor = 1};
    check_same(k, &p, &o);
    check_same(k, &p, &o_relu);
    check_same(k, &p, &o_pt);

    /* NaN/Inf rows give NaN output rows; the others are finite. */
    result_t r;
    run(k, &p, &o, &r);
    for (int64_t m = 0; m < p.M; m++) {
      int bad_row = 0;
      for (int64_t kk = 0; kk < p.K; kk++)
        bad_row |= !isfinite(p.X[m * p.ldx + kk]);
      for (int64_t n = 0; n < p.N; n++) {
        float y = r.C[m * r.ldc + n];
        if (bad_row)
          ck_assert_msg(isnan(y), "row %lld has NaN/Inf input but C=%g",
                        (long long)m, y);
        else
          ck_assert_msg(isfinite(y), "row %lld finite input but C=%g",
                        (long long)m, y);
      }
    }
    /* Constant rows quantize exactly: q*scale reproduces the value. */
    for (int64_t m = 0; m < p.M; m++) {
      if (m % 10 == 2) {
        ck_assert(r.a_scale[m] == 1.0f && r.a_zp[m] == 0);
        for (int64_t kk = 0; kk < p.K; kk++) ck_assert_int_eq(r.A[m * r.lda + kk], 0);
      }
    }
    result_free(&r, &o);
    problem_free(&p);
  }
}
END_TEST

START_TEST(test_minmax_quantize) {
  const dynq__kernel_t *k = kernel_at(_i);
  for (int i = 0; i < NSIZES; i++) {
    int64_t n = sizes[i];
    float *x = malloc(sizeof(float) * (size_t)(n + 1));
    uint8_t *q1 = malloc((size_t)n + 1), *q2 = malloc((size_t)n + 1);
    ck_assert(x && q1 && q2);
    rng_state = 1234 + (uint64_t)i;
    for (int64_t j = 0; j < n; j++) x[j] = rng_normal() * 10.0f + 1.0f;
    /* misaligned view */
    float *xs = x + 1;
    int64_t ns = n > 1 ? n - 1 : n;
    if (n == 1) xs = x;
    float mn1, mx1, mn2, mx2;
    dynq__kernel_ref.minmax(xs, ns, &mn1, &mx1);
    k->minmax(xs, ns, &mn2, &mx2);
    ck_assert_msg(mn1 == mn2 && mx1 == mx2, "%s minmax n=%lld", k->name,
                  (long long)ns);
    float scale, inv;
    int32_t zp;
    dynq__qparams(mn1, mx1, &scale, &inv, &zp);
    /* Also an inv far too large, so many values clamp at both ends. */
    float invs[] = {inv, inv * 100.0f, 0.0f};
    for (int v = 0; v < 3; v++) {
      memset(q1, 0xaa, (size_t)n + 1);
      memset(q2, 0xaa, (size_t)n + 1);
      dynq__kernel_ref.quantize(xs, ns, invs[v], zp, q1 + 1);
      k->quantize(xs, ns, invs[v], zp, q2 + 1);
      ck_assert_msg(memcmp(q1, q2, (size_t)n + 1) == 0, "%s quantize n=%lld",
                    k->name, (long long)ns);
    }
    /* A NaN anywhere makes the range non-finite. */
    xs[ns - 1] = NAN;
    k->minmax(xs, ns, &mn2, &mx2);
    ck_assert(!isfinite(mn2) || !isfinite(mx2));
    xs[ns - 1] = INFINITY;
    k->minmax(xs, ns, &mn2, &mx2);
    ck_assert(!isfinite(mn2) || !isfinite(mx2));
    free(x);
    free(q1);
    free(q2);
  }
}
END_TEST

/* ---- reference against a double-precision float GEMM ---- */

static double rel_l2_vs_double(const dynq__kernel_t *k, int64_t M, int64_t N,
                               int64_t K, int per_tensor) {
  rng_state = 4242 + (uint64_t)(M * 7 + N * 13 + K);
  float *X = malloc(sizeof(float) * (size_t)(M * K));
  float *Wf = malloc(sizeof(float) * (size_t)(N * K));
  int8_t *W = malloc((size_t)(N * K));
  int64_t Kp = dynq__round_up(K, 4);
  int8_t *B = aligned_alloc(64, (size_t)(dynq__round_up(N, 16) * Kp + 63) / 64 * 64);
  int32_t *colsum = malloc(sizeof(int32_t) * (size_t)N);
  float *w_scale = malloc(sizeof(float) * (size_t)N);
  float *bias = malloc(sizeof(float) * (size_t)N);
  uint8_t *A = malloc((size_t)(M * Kp));
  float *a_scale = malloc(sizeof(float) * (size_t)M);
  int32_t *a_zp = malloc(sizeof(int32_t) * (size_t)M);
  float *C = malloc(sizeof(float) * (size_t)(M * N));
  ck_assert(X && Wf && W && B && colsum && w_scale && bias && A && a_scale &&
            a_zp && C);
  for (int64_t i = 0; i < M * K; i++) X[i] = rng_normal();
  for (int64_t i = 0; i < N * K; i++) Wf[i] = rng_normal() / sqrtf((float)K);
  for (int64_t n = 0; n < N; n++) {
    float amax = 0;
    for (int64_t kk = 0; kk < K; kk++)
      amax = fmaxf(amax, fabsf(Wf[n * K + kk]));
    float s = amax > 0 ? amax / 127.0f : 1.0f;
    int32_t cs = 0;
    for (int64_t kk = 0; kk < K; kk++) {
      long q = lrintf(Wf[n * K + kk] / s);
      q = q < -127 ? -127 : q > 127 ? 127 : q;
      W[n * K + kk] = (int8_t)q;
      cs += (int32_t)q;
    }
    w_scale[n] = s;
    colsum[n] = cs;
    bias[n] = rng_normal() * 0.1f;
  }
  dynq__pack_weights(N, K, W, B);
  dynq__quantize_rows(k, M, K, X, (size_t)K, A, (size_t)Kp, per_tensor,
                      a_scale, a_zp);
  dynq__qgemm_args_t a = {
    .M = M, .N = N, .K = K, .A = A, .lda = (size_t)Kp, .B = B,
    .colsum = colsum, .w_scale = w_scale, .a_scale = a_scale, .a_zp = a_zp,
    .bias = bias, .act = DYNQ_ACT_NONE, .C = C, .ldc = (size_t)N,
    .n0 = 0, .n1 = N,
  };
  k->qgemm(&a);
  double num = 0, den = 0;
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      double y = bias[n];
      for (int64_t kk = 0; kk < K; kk++)
        y += (double)X[m * K + kk] * (double)Wf[n * K + kk];
      double d = (double)C[m * N + n] - y;
      num += d * d;
      den += y * y;
    }
  free(X); free(Wf); free(W); free(B); free(colsum); free(w_scale);
  free(bias); free(A); free(a_scale); free(a_zp); free(C);
  return sqrt(num / den);
}

START_TEST(test_accuracy) {
  const dynq__kernel_t *k = kernel_at(_i);
  static const int64_t shapes[][3] = {{16, 64, 768}, {3, 129, 257}, {64, 96, 3072}};
  for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
    for (int pt = 0; pt < 2; pt++) {
      double e = rel_l2_vs_double(k, shapes[s][0], shapes[s][1], shapes[s][2], pt);
      ck_assert_msg(e <= 0.02, "%s relL2 %g > 0.02 (shape %zu per_tensor %d)",
                    k->name, e, s, pt);
      ck_assert_msg(e > 0.0, "relL2 exactly 0 means nothing was quantized");
    }
}
END_TEST

/* ---- qparams and dispatch ---- */

START_TEST(test_qparams) {
  float scale, inv;
  int32_t zp;
  dynq__qparams(0.0f, 0.0f, &scale, &inv, &zp);
  ck_assert(scale == 1.0f && inv == 1.0f && zp == 0);
  dynq__qparams(-1.0f, 1.0f, &scale, &inv, &zp);
  ck_assert(scale == 1.0f / 255.0f + 1.0f / 255.0f);
  ck_assert_int_eq(zp, (int32_t)nearbyintf(1.0f * inv));
  dynq__qparams(2.0f, 5.0f, &scale, &inv, &zp);   /* range forced to hold 0 */
  ck_assert(scale == 5.0f / 255.0f && zp == 0);
  dynq__qparams(-5.0f, -2.0f, &scale, &inv, &zp);
  ck_assert_int_eq(zp, 255);
  dynq__qparams(-3e38f, 3e38f, &scale, &inv, &zp);  /* no overflow */
  ck_assert(isfinite(scale) && isfinite(inv));
  dynq__qparams(NAN, 1.0f, &scale, &inv, &zp);
  ck_assert(isnan(scale) && inv == 0.0f && zp == 0);
  dynq__qparams(0.0f, INFINITY, &scale, &inv, &zp);
  ck_assert(isnan(scale) && inv == 0.0f && zp == 0);
  dynq__qparams(0.0f, 1e-40f, &scale, &inv, &zp);   /* 1/scale overflows */
  ck_assert(scale == 1.0f && inv == 1.0f && zp == 0);
}
END_TEST

START_TEST(test_dispatch) {
  const char *msg = NULL;
  ck_assert_int_eq(dynq__kernels_init("bogus", &msg), DYNQ_EKERNEL);
  ck_assert_ptr_nonnull(msg);
  ck_assert_msg(strstr(msg, "unknown") != NULL, "message: %s", msg);
  ck_assert_ptr_null(dynq__kernel_find("bogus"));
  ck_assert_ptr_null(dynq__kernel_find(NULL));

  const dynq__kernel_t *best = dynq__kernel();
  ck_assert_ptr_nonnull(best);
  ck_assert(best->supported());

  int n;
  const dynq__kernel_t *const *list = dynq__kernel_list(&n);
  ck_assert_int_ge(n, 1);
  ck_assert_str_eq(list[n - 1]->name, "ref");
  int first_supported = -1;
  for (int i = 0; i < n; i++) {
    ck_assert_ptr_eq(dynq__kernel_find(list[i]->name), list[i]);
    if (list[i]->supported()) {
      if (first_supported < 0) first_supported = i;
      msg = NULL;
      ck_assert_int_eq(dynq__kernels_init(list[i]->name, &msg), 0);
      ck_assert_ptr_eq(dynq__kernel(), list[i]);
    } else {
      msg = NULL;
      ck_assert_int_eq(dynq__kernels_init(list[i]->name, &msg), DYNQ_EKERNEL);
      ck_assert_msg(msg && strstr(msg, "not supported"), "message: %s", msg);
    }
  }
  ck_assert_ptr_eq(best, list[first_supported]);
  ck_assert_int_eq(dynq__kernels_init("auto", &msg), 0);
  ck_assert_ptr_eq(dynq__kernel(), best);
  ck_assert_int_eq(dynq__kernels_init(NULL, NULL), 0);
  ck_assert_int_eq(dynq__kernels_init("", NULL), 0);
  /* A failed init leaves the selection alone. */
  ck_assert_int_eq(dynq__kernels_init("ref", NULL), 0);
  ck_assert_int_eq(dynq__kernels_init("avx512", NULL), DYNQ_EKERNEL);
  ck_assert_ptr_eq(dynq__kernel(), &dynq__kernel_ref);
  /* Known names that were not compiled are refused, not crashed on. */
  static const char *names[] = {"ref", "avx2", "avxvnni", "avx512vnni"};
  for (int i = 0; i < 4; i++) {
    int r = dynq__kernels_init(names[i], &msg);
    const dynq__kernel_t *k = dynq__kernel_find(names[i]);
    ck_assert_int_eq(r, k && k->supported() ? 0 : DYNQ_EKERNEL);
  }
}
END_TEST

/* dynq__quantize_cols_packed against the formula in kernels.h computed
 * here element by element and packed by dynq__pack_weights: every layout
 * (columns unit-stride, rows unit-stride, neither) on ragged K and N with
 * padded strides, then zero, denormal and non-finite columns. */
START_TEST(test_cols_packed) {
  static const int64_t ks[] = {1, 2, 3, 7, 15, 16, 17, 31, 33, 64, 65, 129, 257, 300};
  static const int64_t ns[] = {1, 3, 15, 16, 17, 33, 64};
  rng_state = 12345;
  for (size_t ik = 0; ik < sizeof(ks) / sizeof(ks[0]); ik++)
    for (size_t in = 0; in < sizeof(ns) / sizeof(ns[0]); in++)
      for (int layout = 0; layout < 3; layout++) {
        const int64_t K = ks[ik], N = ns[in];
        const int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG), Np = dynq__round_up(N, DYNQ_QGEMM_NR);
        /* layout 0: column n at B + n * (K + 3); 1: row k at B + k * (N + 5); 2: both strided */
        int64_t rs = layout == 0 ? 1 : layout == 1 ? N + 5 : 2, cs = layout == 0 ? K + 3 : layout == 1 ? 1 : 2 * K + 1;
        size_t len = (size_t)((K - 1) * rs + (N - 1) * cs + 1);
        float *B = malloc(sizeof(float) * len);
        int8_t *W = malloc((size_t)(N * K)), *want = aligned_alloc(64, (size_t)(Np * Kp));
        int8_t *got = aligned_alloc(64, (size_t)(Np * Kp));
        int32_t *cs_got = malloc(sizeof(int32_t) * (size_t)N);
        float *sc_got = malloc(sizeof(float) * (size_t)N);
        for (size_t i = 0; i < len; i++) B[i] = rng_normal() * (float)(1 + i % 7);
        memset(got, 0x55, (size_t)(Np * Kp));  /* padding must be rewritten */
        dynq__quantize_cols_packed(K, N, B, rs, cs, 0.125f, got, cs_got, sc_got);
        for (int64_t n = 0; n < N; n++) {
          float amax = 0.0f;
          for (int64_t k = 0; k < K; k++) amax = fmaxf(amax, fabsf(B[k * rs + n * cs]));
          float sc = amax / 127.0f, inv = 1.0f / sc;
          int32_t sum = 0;
          for (int64_t k = 0; k < K; k++) {
            float q = nearbyintf(B[k * rs + n * cs] * inv);
            q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
            W[n * K + k] = (int8_t)q;
            sum += (int32_t)q;
          }
          ck_assert_msg(cs_got[n] == sum, "K %lld N %lld layout %d col %lld: colsum %d, want %d",
                        (long long)K, (long long)N, layout, (long long)n, cs_got[n], sum);
          ck_assert_msg(sc_got[n] == sc * 0.125f, "K %lld N %lld layout %d col %lld: scale",
                        (long long)K, (long long)N, layout, (long long)n);
        }
        dynq__pack_weights(N, K, W, want);
        ck_assert_msg(memcmp(got, want, (size_t)(Np * Kp)) == 0, "K %lld N %lld layout %d: packed bytes",
                      (long long)K, (long long)N, layout);
        free(B);
        free(W);
        free(want);
        free(got);
        free(cs_got);
        free(sc_got);
      }
  /* special columns (K 20, N 5, rows unit-stride and columns unit-stride):
   * zeros (scale 1 * alpha, q 0), denormals (as zeros), NaN and +inf
   * (scale NaN), one huge value (the others round to 0) */
  for (int layout = 0; layout < 2; layout++) {
    enum { K = 20, N = 5 };
    float B[K * N];
    int8_t bp[16 * K];
    int32_t csum[N];
    float sc[N];
    for (int k = 0; k < K; k++)
      for (int n = 0; n < N; n++) {
        float v = n == 0 ? 0.0f : n == 1 ? 1e-40f : n == 2 ? (k == 7 ? NAN : 1.0f)
                  : n == 3 ? (k == 3 ? INFINITY : -1.0f) : (k == 0 ? 1e30f : 1.0f);
        B[layout ? k * N + n : n * K + k] = v;
      }
    dynq__quantize_cols_packed(K, N, B, layout ? N : 1, layout ? 1 : K, 2.0f, bp, csum, sc);
    ck_assert(sc[0] == 2.0f && csum[0] == 0);
    ck_assert(sc[1] == 2.0f && csum[1] == 0);
    ck_assert(isnan(sc[2]) && isnan(sc[3]));
    ck_assert(sc[4] == 1e30f / 127.0f * 2.0f && csum[4] == 127);
    for (int k = 0; k < K; k++) {
      ck_assert_int_eq(bp[(k / 4) * 64 + 0 * 4 + k % 4], 0);
      ck_assert_int_eq(bp[(k / 4) * 64 + 1 * 4 + k % 4], 0);
      ck_assert_int_eq(bp[(k / 4) * 64 + 4 * 4 + k % 4], k == 0 ? 127 : 0);
    }
  }
}
END_TEST

static Suite *kernel_suite(int idx, const dynq__kernel_t *k) {
  static char names[8][48];
  snprintf(names[idx], sizeof(names[idx]), "kernel-%s", k->name);
  Suite *s = suite_create(names[idx]);
  TCase *tc = tcase_create(k->name);
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, test_ragged, idx, idx + 1);
  tcase_add_loop_test(tc, test_large, idx, idx + 1);
  tcase_add_loop_test(tc, test_subrange_misaligned, idx, idx + 1);
  tcase_add_loop_test(tc, test_special_rows, idx, idx + 1);
  tcase_add_loop_test(tc, test_minmax_quantize, idx, idx + 1);
  tcase_add_loop_test(tc, test_accuracy, idx, idx + 1);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  Suite *s = suite_create("kernels");
  TCase *tc = tcase_create("dispatch");
  tcase_add_test(tc, test_qparams);
  tcase_add_test(tc, test_dispatch);
  tcase_add_test(tc, test_cols_packed);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  int n;
  const dynq__kernel_t *const *list = dynq__kernel_list(&n);
  for (int i = 0; i < n && i < 8; i++) {
    if (!list[i]->supported()) continue;
    srunner_add_suite(sr, kernel_suite(i, list[i]));
  }
  return tu_run_runner(sr) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
