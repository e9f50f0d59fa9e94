/*
 * The FP32 GEMM (lib/kernels/sgemm.h): the reference micro-kernel against
 * a plain double-precision GEMM, every other compiled micro-kernel the CPU
 * supports bit for bit against the reference (transposes, leading
 * dimensions past the minimum, alpha and beta, ragged sizes, K, M and N
 * past one cache block), pre-packed B against unpacked, column ranges
 * against one call, dynq__sgemm_ex's thread splits against one thread, and
 * dynq__sgemm_layer's per-tile epilogue against the same steps afterwards.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/sgemm.h"
#include "ops/opkit.h"
#include "parallel.h"
#include "tensor.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static float rng_float(void) {   /* [-1, 1) */
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  rng_state = x;
  return (float)((double)(x >> 40) / 8388608.0 - 1.0);
}

static float *rnd(size_t n) {
  float *p = malloc(sizeof(float) * (n ? n : 1));
  ck_assert_ptr_nonnull(p);
  for (size_t i = 0; i < n; i++) p[i] = rng_float();
  return p;
}

typedef struct problem {
  int64_t M, N, K, lda, ldb, ldc;
  int ta, tb;
  float alpha, beta;
  float *A, *B, *C0;   /* inputs; C0: C before the call */
  float *Bp;           /* B packed */
} problem_t;

static void problem_init(problem_t *p, int64_t M, int64_t N, int64_t K, int ta, int tb,
                         int64_t pad, float alpha, float beta) {
  memset(p, 0, sizeof(*p));
  p->M = M, p->N = N, p->K = K, p->ta = ta, p->tb = tb, p->alpha = alpha, p->beta = beta;
  p->lda = (ta ? M : K) + pad;
  p->ldb = (tb ? K : N) + pad;
  p->ldc = N + pad;
  p->A = rnd((size_t)((ta ? K : M) * p->lda));
  p->B = rnd((size_t)((tb ? N : K) * p->ldb));
  p->C0 = rnd((size_t)(M * p->ldc));
  p->Bp = dynq__aligned_alloc(sizeof(float) * dynq__sgemm_packed_floats(N, K));
  ck_assert_ptr_nonnull(p->Bp);
  dynq__sgemm_pack_b(tb, N, K, p->B, p->ldb, p->Bp);
}

static void problem_free(problem_t *p) {
  free(p->A);
  free(p->B);
  free(p->C0);
  dynq__aligned_free(p->Bp);
}

static float at_a(const problem_t *p, int64_t m, int64_t k) {
  return p->ta ? p->A[k * p->lda + m] : p->A[m * p->lda + k];
}
static float at_b(const problem_t *p, int64_t k, int64_t n) {
  return p->tb ? p->B[n * p->ldb + k] : p->B[k * p->ldb + n];
}

/* C (a copy of C0) after the kernel over columns [n0, n1). */
static float *run(const problem_t *p, const dynq__sgemm_kernel_t *kr, int packed, int64_t n0,
                  int64_t n1, float *C) {
  if (C == NULL) {
    C = malloc(sizeof(float) * (size_t)(p->M * p->ldc));
    ck_assert_ptr_nonnull(C);
    memcpy(C, p->C0, sizeof(float) * (size_t)(p->M * p->ldc));
  }
  dynq__sgemm_args_t a = {.M = p->M, .N = p->N, .K = p->K, .alpha = p->alpha, .beta = p->beta,
                          .A = p->A, .lda = p->lda, .ta = p->ta, .B = p->B, .ldb = p->ldb,
                          .tb = p->tb, .Bp = packed ? p->Bp : NULL, .C = C, .ldc = p->ldc,
                          .n0 = n0, .n1 = n1};
  ck_assert_int_eq(dynq__sgemm_cols(kr, &a), 0);
  return C;
}

/* Within the bound of a K-term float sum against the double result; the
 * padding past N in each row of C is untouched. */
static void check_double(const problem_t *p, const float *C) {
  for (int64_t m = 0; m < p->M; m++) {
    for (int64_t n = 0; n < p->N; n++) {
      double s = 0, mag = 0;
      for (int64_t k = 0; k < p->K; k++) {
        double t = (double)p->alpha * at_a(p, m, k) * at_b(p, k, n);
        s += t;
        mag += fabs(t);
      }
      double c0 = p->C0[m * p->ldc + n];
      if (p->beta != 0.0f) {
        s += (double)p->beta * c0;
        mag += fabs((double)p->beta * c0);
      }
      double tol = (double)(p->K + 3) * 1.2e-7 * mag + 1e-30;
      double got = C[m * p->ldc + n];
      ck_assert_msg(fabs(got - s) <= tol,
                    "M %lld N %lld K %lld ta %d tb %d: C[%lld][%lld] = %.9g, want %.9g (tol %g)",
                    (long long)p->M, (long long)p->N, (long long)p->K, p->ta, p->tb,
                    (long long)m, (long long)n, got, s, tol);
    }
    for (int64_t n = p->N; n < p->ldc; n++)
      ck_assert_msg(memcmp(&C[m * p->ldc + n], &p->C0[m * p->ldc + n], sizeof(float)) == 0,
                    "padding C[%lld][%lld] written", (long long)m, (long long)n);
  }
}

static const dynq__sgemm_kernel_t *kernel_at(int i) {
  static const char *const names[] = {"ref", "avx2", "avx512"};
  return dynq__sgemm_find(names[i]);
}

static const int64_t sizes[] = {1, 2, 3, 5, 6, 7, 13, 16, 17, 31, 33, 63, 64, 65, 67};
#define NSIZES ((int)(sizeof(sizes) / sizeof(sizes[0])))

/* The reference against double, on every transpose and alpha/beta form. */
START_TEST(test_ref_vs_double) {
  const dynq__sgemm_kernel_t *ref = &dynq__sgemm_ref;
  static const float ab[][2] = {{1.0f, 0.0f}, {0.5f, 1.0f}, {-1.25f, -0.75f}};
  for (int im = 0; im < NSIZES; im += 2)
    for (int in = 0; in < NSIZES; in += 3)
      for (int ik = 0; ik < NSIZES; ik += 2) {
        int v = (im + in + ik) % 12;
        problem_t p;
        problem_init(&p, sizes[im], sizes[in], sizes[ik], v & 1, (v >> 1) & 1, v % 3,
                     ab[v % 3][0], ab[v % 3][1]);
        float *C = run(&p, ref, v & 1, 0, p.N, NULL);
        check_double(&p, C);
        free(C);
        problem_free(&p);
      }
}
END_TEST

/* Every kernel (loop index) bit for bit against the reference, packed
 * and unpacked, on all sizes 1..67 of the list in all three dimensions
 * for one of the forms, plus every form on a diagonal of sizes. */
START_TEST(test_kernel_vs_ref) {
  const dynq__sgemm_kernel_t *kr = kernel_at(_i);
  if (kr == NULL) return;  /* not compiled or not supported here */
  static const float ab[][2] = {{1.0f, 0.0f}, {0.5f, 1.0f}, {-1.25f, -0.75f}, {2.0f, 1.0f}};
  int cases = 0;
  for (int im = 0; im < NSIZES; im++)
    for (int in = 0; in < NSIZES; in++)
      for (int ik = 0; ik < NSIZES; ik++) {
        int v = im * 7 + in * 3 + ik;
        int full = im == in && in == ik;  /* every transpose, pad and alpha/beta */
        if (!full && v % 4 != 0) continue;
        for (int form = 0; form < (full ? 16 : 1); form++) {
          int f = full ? form : v % 16;
          problem_t p;
          problem_init(&p, sizes[im], sizes[in], sizes[ik], f & 1, (f >> 1) & 1,
                       (f >> 2) & 1 ? 3 : 0, ab[(v + f) % 4][0], ab[(v + f) % 4][1]);
          float *want = run(&p, &dynq__sgemm_ref, 0, 0, p.N, NULL);
          float *got = run(&p, kr, 0, 0, p.N, NULL);
          float *gotp = run(&p, kr, 1, 0, p.N, NULL);
          size_t nb = sizeof(float) * (size_t)(p.M * p.ldc);
          ck_assert_msg(memcmp(want, got, nb) == 0, "%s unpacked M %lld N %lld K %lld form %d",
                        kr->name, (long long)p.M, (long long)p.N, (long long)p.K, f);
          ck_assert_msg(memcmp(want, gotp, nb) == 0, "%s packed M %lld N %lld K %lld form %d",
                        kr->name, (long long)p.M, (long long)p.N, (long long)p.K, f);
          free(want);
          free(got);
          free(gotp);
          problem_free(&p);
          cases++;
        }
      }
  ck_assert_int_gt(cases, 800);
}
END_TEST

/* Past one cache block in every dimension (K > KC, M > MC, N > NC; with B
 * packed and A read in place K > KC_LONG: 1700 in blocks of 567, 567 and
 * 566) and against double; column ranges in 64-column steps give the same
 * bits. */
START_TEST(test_blocks_and_ranges) {
  const dynq__sgemm_kernel_t *kr = kernel_at(_i);
  if (kr == NULL) return;
  static const int64_t shapes[][3] = {{7, 70, 300}, {200, 65, 130}, {13, 1100, 129},
                                      {1, 1090, 257}, {5, 130, 1000}, {140, 130, 1700}};
  for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
    for (int f = 0; f < 4; f++) {
      problem_t p;
      problem_init(&p, shapes[s][0], shapes[s][1], shapes[s][2], f & 1, f >> 1, 1, 1.0f,
                   f == 3 ? 0.5f : 0.0f);
      float *whole = run(&p, kr, f & 1, 0, p.N, NULL);
      check_double(&p, whole);
      float *parts = malloc(sizeof(float) * (size_t)(p.M * p.ldc));
      ck_assert_ptr_nonnull(parts);
      memcpy(parts, p.C0, sizeof(float) * (size_t)(p.M * p.ldc));
      for (int64_t n0 = 0; n0 < p.N; n0 += 2 * DYNQ_SGEMM_NR) {
        int64_t n1 = n0 + 2 * DYNQ_SGEMM_NR < p.N ? n0 + 2 * DYNQ_SGEMM_NR : p.N;
        run(&p, kr, !(f & 1), n0, n1, parts);
      }
      ck_assert_msg(memcmp(whole, parts, sizeof(float) * (size_t)(p.M * p.ldc)) == 0,
                    "%s: column ranges differ from one call (shape %zu form %d)", kr->name, s, f);
      if (kr != &dynq__sgemm_ref) {
        float *want = run(&p, &dynq__sgemm_ref, 0, 0, p.N, NULL);
        ck_assert_msg(memcmp(whole, want, sizeof(float) * (size_t)(p.M * p.ldc)) == 0,
                      "%s differs from ref (shape %zu form %d)", kr->name, s, f);
        free(want);
      }
      free(parts);
      free(whole);
      problem_free(&p);
    }
}
END_TEST

/* beta == 0 never reads C (NaN there is overwritten); beta == 1 adds;
 * NaN in A reaches exactly its row. */
START_TEST(test_beta_and_nan) {
  const dynq__sgemm_kernel_t *kr = kernel_at(_i);
  if (kr == NULL) return;
  problem_t p;
  problem_init(&p, 9, 70, 20, 0, 0, 0, 1.0f, 0.0f);
  for (int64_t i = 0; i < p.M * p.ldc; i++) p.C0[i] = NAN;
  float *C = run(&p, kr, 1, 0, p.N, NULL);
  for (int64_t i = 0; i < p.M * p.N; i++) ck_assert_msg(isfinite(C[i]), "beta 0 read C");
  free(C);
  p.beta = 1.0f;
  for (int64_t i = 0; i < p.M * p.ldc; i++) p.C0[i] = 0.0f;
  p.A[4 * p.lda + 3] = NAN;
  C = run(&p, kr, 0, 0, p.N, NULL);
  for (int64_t m = 0; m < p.M; m++)
    for (int64_t n = 0; n < p.N; n++)
      ck_assert_msg(isnan(C[m * p.ldc + n]) == (m == 4), "NaN at row %lld col %lld",
                    (long long)m, (long long)n);
  free(C);
  problem_free(&p);
}
END_TEST

/* dynq__sgemm_ex with packed B on 2 threads (split along N, and along M
 * when N is one panel) gives the bits of one thread; unpacked (OpenBLAS
 * past one row tile) it is within a float sum's bound. */
START_TEST(test_threads) {
  static const int64_t shapes[][3] = {{128, 768, 64}, {300, 64, 128}, {130, 200, 97}};
  for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
    for (int f = 0; f < 4; f++) {
      problem_t p;
      problem_init(&p, shapes[s][0], shapes[s][1], shapes[s][2], f & 1, f >> 1, 2, 0.75f,
                   f == 2 ? 1.0f : 0.0f);
      size_t nb = sizeof(float) * (size_t)(p.M * p.ldc);
      float *one = malloc(nb), *onep = malloc(nb), *two = malloc(nb), *twop = malloc(nb);
      ck_assert(one && onep && two && twop);
      memcpy(one, p.C0, nb);
      memcpy(onep, p.C0, nb);
      memcpy(two, p.C0, nb);
      memcpy(twop, p.C0, nb);
      ck_assert_int_eq(dynq__sgemm_ex(1, p.ta, p.tb, p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B,
                                      p.ldb, NULL, p.beta, one, p.ldc), 0);
      ck_assert_int_eq(dynq__sgemm_ex(1, p.ta, p.tb, p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B,
                                      p.ldb, p.Bp, p.beta, onep, p.ldc), 0);
      dynq__sgemm_ex(2, p.ta, p.tb, p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, NULL,
                     p.beta, two, p.ldc);
      dynq__sgemm_ex(2, p.ta, p.tb, p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.Bp,
                     p.beta, twop, p.ldc);
      check_double(&p, one);
      check_double(&p, onep);
      check_double(&p, two);
      ck_assert_msg(memcmp(onep, twop, nb) == 0, "2 threads packed differ (shape %zu form %d)",
                    s, f);
      free(one);
      free(onep);
      free(two);
      free(twop);
      problem_free(&p);
    }
}
END_TEST

/* dynq__sgemm_layer's epilogue (bias, then activation) on each finished
 * tile gives the bits of the plain GEMM followed by the bias Add and
 * dynq__act_apply: packed and unpacked B (in place for up to 6 rows),
 * K past one cache block (applied once, after the last block), one and
 * two threads, every micro-kernel the CPU has. */
START_TEST(test_epilogue) {
  static const int64_t shapes[][3] = {{5, 200, 300}, {130, 97, 300}, {13, 16, 7},
                                      {20, 70, 1600}};
  static const char *const kernels[] = {"ref", "auto"};
  static const int acts[] = {DYNQ_ACT_NONE, DYNQ_ACT_RELU, DYNQ_ACT_SIGMOID, DYNQ_ACT_GELU,
                             DYNQ_ACT_GELU_TANH};
  for (size_t kn = 0; kn < 2; kn++) {
    ck_assert_int_eq(dynq__kernels_init(kernels[kn], NULL), 0);
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
      for (size_t ai = 0; ai < sizeof(acts) / sizeof(acts[0]); ai++) {
        const int act = acts[ai];
        problem_t p;
        problem_init(&p, shapes[s][0], shapes[s][1], shapes[s][2], 0, 0, 3, 1.0f, 0.0f);
        float *bias = rnd((size_t)p.N);
        for (int64_t n = 0; n < p.N; n++) bias[n] *= 4.0f;
        size_t nb = sizeof(float) * (size_t)(p.M * p.ldc);
        float *want = malloc(nb), *got = malloc(nb);
        ck_assert(want && got);
        for (int form = 0; form < 4; form++) {
          const float *bp = form & 1 ? p.Bp : NULL;
          const int threads = form & 2 ? 2 : 1;
          memcpy(want, p.C0, nb);
          memcpy(got, p.C0, nb);
          dynq__sgemm_ex(threads, 0, 0, p.M, p.N, p.K, 1.0f, p.A, p.lda, p.B, p.ldb, bp, 0.0f,
                         want, p.ldc);
          for (int64_t m = 0; m < p.M; m++)
            for (int64_t n = 0; n < p.N; n++) want[m * p.ldc + n] += bias[n];
          dynq__act_apply(act, want, (size_t)p.ldc, p.M, 0, p.N);
          dynq__sgemm_layer(threads, 0, 0, p.M, p.N, p.K, 1.0f, p.A, p.lda, p.B, p.ldb, bp,
                            0.0f, got, p.ldc, bias, act);
          ck_assert_msg(memcmp(want, got, nb) == 0,
                        "kernel %s shape %zu act %d form %d: epilogue differs", kernels[kn], s,
                        act, form);
          /* the activation alone, no bias */
          memcpy(got, p.C0, nb);
          dynq__sgemm_layer(threads, 0, 0, p.M, p.N, p.K, 1.0f, p.A, p.lda, p.B, p.ldb, bp,
                            0.0f, got, p.ldc, NULL, act);
          memcpy(want, p.C0, nb);
          dynq__sgemm_ex(threads, 0, 0, p.M, p.N, p.K, 1.0f, p.A, p.lda, p.B, p.ldb, bp, 0.0f,
                         want, p.ldc);
          dynq__act_apply(act, want, (size_t)p.ldc, p.M, 0, p.N);
          ck_assert_msg(memcmp(want, got, nb) == 0, "kernel %s shape %zu act %d form %d: "
                        "activation without bias differs", kernels[kn], s, act, form);
        }
        free(want);
        free(got);
        free(bias);
        problem_free(&p);
      }
  }
  ck_assert_int_eq(dynq__kernels_init("auto", NULL), 0);
}
END_TEST

/* Names outside the table, and the mapping from the INT8 kernels. */
START_TEST(test_find) {
  ck_assert_ptr_null(dynq__sgemm_find("avx1024"));
  ck_assert_ptr_null(dynq__sgemm_find(""));
  ck_assert_ptr_eq(dynq__sgemm_find("ref"), &dynq__sgemm_ref);
  ck_assert_int_eq(dynq__kernels_init("ref", NULL), 0);
  ck_assert_ptr_eq(dynq__sgemm_kernel(), &dynq__sgemm_ref);
  ck_assert_int_eq(dynq__kernels_init("auto", NULL), 0);
  const char *q = dynq__kernel()->name;
  const char *want = strcmp(q, "avx512vnni") == 0 ? "avx512"
                     : strcmp(q, "ref") == 0      ? "ref"
                                                  : "avx2";
  if (dynq__sgemm_find(want) != NULL) ck_assert_str_eq(dynq__sgemm_kernel()->name, want);
}
END_TEST

int main(void) {
  Suite *s = suite_create("sgemm");
  TCase *tc = tcase_create("sgemm");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_ref_vs_double);
  tcase_add_loop_test(tc, test_kernel_vs_ref, 1, 3);
  tcase_add_loop_test(tc, test_blocks_and_ranges, 0, 3);
  tcase_add_loop_test(tc, test_beta_and_nan, 0, 3);
  tcase_add_test(tc, test_threads);
  tcase_add_test(tc, test_epilogue);
  tcase_add_test(tc, test_find);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
