/*
 * dynq-bench: INT8 GEMM end to end (activation quantization + qgemm with
 * bias) against OpenBLAS FP32 (sgemm, or sgemv when M = 1) in the same
 * process, on the same data; and the share of activation quantization.
 *
 * Times are medians of repeated runs after a warm-up run.  --threads
 * splits the N range in whole 16-column panels over lib/parallel's team,
 * the way lib/qlinear.c does (a few chunks per thread, claimed
 * dynamically), and gives OpenBLAS the same number of threads.
 * --compare-threads times 1 thread and --threads N alternately in the same
 * run and reports their ratio (on a shared machine, only ratios taken
 * close together mean anything).
 *
 * sgemm: dynq's FP32 GEMM (lib/kernels/sgemm.h) with B pre-packed and
 * unpacked against OpenBLAS sgemm, in interleaved rounds, as thread CPU
 * time with one thread (a shared machine's other load then costs little);
 * GFLOPS and their share of the FMA peak measured by a register-only
 * loop of the micro-kernel's vector width.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <immintrin.h>

#include "dynq/errors.h"
#include "kernels/kernels.h"
#include "kernels/sgemm.h"
#include "opkit.h"
#include "parallel.h"

/* OpenBLAS extras (declared in its cblas.h on Debian, but keep us honest). */
char *openblas_get_corename(void);
void openblas_set_num_threads(int n);

#define MAX_SHAPES 64
#define MAX_THREADS DYNQ_PARALLEL_MAX_THREADS
#define MAX_ROUNDS 101
#define MIN_REPS 5
#define MAX_REPS 2000
#define TARGET_NS 300000000.0   /* per measurement: ~0.3 s */

typedef struct shape { int64_t m, k, n; } shape_t;

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static float nrand(void) {
  return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand()));
}

static void *xalloc(size_t n) {
  void *p = aligned_alloc(64, (n + 63) / 64 * 64);
  if (!p) {
    fprintf(stderr, "dynq-bench: out of memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}

/* ---- one problem: FP32 data and its INT8 form ---- */

typedef struct problem {
  shape_t s;
  int64_t Kp;
  float *X, *Wf, *bias, *Y, *C;
  int8_t *B;
  const int8_t *Bcur;       /* what qgemm reads: B, or one of Bcold */
  int8_t **Bcold;           /* qgemm --cold: copies of B, rotated per call */
  int ncold, icold;
  int32_t *colsum;
  float *w_scale, *a_scale;
  int32_t *a_zp;
  uint8_t *A;
  const dynq__kernel_t *kr;
} problem_t;

static void problem_init(problem_t *p, shape_t s, const dynq__kernel_t *kr) {
  int64_t M = s.m, K = s.k, N = s.n;
  p->s = s;
  p->kr = kr;
  p->Kp = dynq__round_up(K, 4);
  p->X = xalloc(sizeof(float) * (size_t)(M * K));
  p->Wf = xalloc(sizeof(float) * (size_t)(N * K));
  p->bias = xalloc(sizeof(float) * (size_t)N);
  p->Y = xalloc(sizeof(float) * (size_t)(M * N));
  p->C = xalloc(sizeof(float) * (size_t)(M * N));
  p->B = xalloc((size_t)(dynq__round_up(N, 16) * p->Kp));
  p->colsum = xalloc(sizeof(int32_t) * (size_t)N);
  p->w_scale = xalloc(sizeof(float) * (size_t)N);
  p->a_scale = xalloc(sizeof(float) * (size_t)M);
  p->a_zp = xalloc(sizeof(int32_t) * (size_t)M);
  p->A = xalloc((size_t)(M * p->Kp));
  int8_t *W = xalloc((size_t)(N * K));
  float r = 1.0f / sqrtf((float)K);
  for (int64_t i = 0; i < M * K; i++) p->X[i] = nrand();
  for (int64_t i = 0; i < N * K; i++) p->Wf[i] = (float)(urand() * 2 - 1) * r;
  for (int64_t n = 0; n < N; n++) {
    float amax = 0;
    for (int64_t k = 0; k < K; k++) amax = fmaxf(amax, fabsf(p->Wf[n * K + k]));
    float sc = amax > 0 ? amax / 127.0f : 1.0f;
    int32_t cs = 0;
    for (int64_t k = 0; k < K; k++) {
      long q = lrintf(p->Wf[n * K + k] / sc);
      q = q < -127 ? -127 : q > 127 ? 127 : q;
      W[n * K + k] = (int8_t)q;
      cs += (int32_t)q;
    }
    p->w_scale[n] = sc;
    p->colsum[n] = cs;
    p->bias[n] = nrand() * 0.1f;
  }
  dynq__pack_weights(N, K, W, p->B);
  p->Bcur = p->B;
  p->Bcold = NULL;
  p->ncold = p->icold = 0;
  free(W);
}

static void problem_free(problem_t *p) {
  free(p->X); free(p->Wf); free(p->bias); free(p->Y); free(p->C);
  free(p->B); free(p->colsum); free(p->w_scale); free(p->a_scale);
  free(p->a_zp); free(p->A);
  for (int i = 0; i < p->ncold; i++) free(p->Bcold[i]);
  free(p->Bcold);
}

/* ---- the INT8 op, split along N over lib/parallel ---- */

typedef struct run {
  int threads;            /* 1: one qgemm call on the caller */
  int chunks_per_thread;
} run_t;

typedef struct split {
  problem_t *p;
  int64_t panels, chunks;
} split_t;

static void qgemm_cols(problem_t *p, int64_t n0, int64_t n1) {
  dynq__qgemm_args_t g = {
    .M = p->s.m, .N = p->s.n, .K = p->s.k, .A = p->A, .lda = (size_t)p->Kp,
    .B = p->Bcur, .colsum = p->colsum, .w_scale = p->w_scale,
    .a_scale = p->a_scale, .a_zp = p->a_zp, .bias = p->bias,
    .act = DYNQ_ACT_NONE, .C = p->C, .ldc = (size_t)p->s.n, .n0 = n0, .n1 = n1,
  };
  p->kr->qgemm(&g);
}

static void split_task(void *ctx, int64_t t) {
  const split_t *s = ctx;
  int64_t a = s->panels * t / s->chunks, b = s->panels * (t + 1) / s->chunks;
  int64_t n0 = a * 16, n1 = b * 16 < s->p->s.n ? b * 16 : s->p->s.n;
  if (n0 < n1) qgemm_cols(s->p, n0, n1);
}

static void int8_run(const run_t *r, problem_t *p) {
  dynq__quantize_rows(p->kr, p->s.m, p->s.k, p->X, (size_t)p->s.k, p->A,
                      (size_t)p->Kp, 0, p->a_scale, p->a_zp);
  if (r->threads <= 1) {
    qgemm_cols(p, 0, p->s.n);
    return;
  }
  split_t s = {.p = p, .panels = (p->s.n + 15) / 16};
  s.chunks = (int64_t)r->threads * r->chunks_per_thread;
  if (s.chunks > s.panels) s.chunks = s.panels;
  (void)dynq__parallel_for(r->threads, s.chunks, split_task, &s);
}

static void quant_run(const run_t *r, problem_t *p) {
  (void)r;
  dynq__quantize_rows(p->kr, p->s.m, p->s.k, p->X, (size_t)p->s.k, p->A,
                      (size_t)p->Kp, 0, p->a_scale, p->a_zp);
}

static void sgemm_run(const run_t *r, problem_t *p) {
  (void)r;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)p->s.m,
              (int)p->s.n, (int)p->s.k, 1.0f, p->X, (int)p->s.k, p->Wf,
              (int)p->s.k, 0.0f, p->Y, (int)p->s.n);
}

static void sgemv_run(const run_t *r, problem_t *p) {
  (void)r;
  cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)p->s.n, (int)p->s.k, 1.0f,
              p->Wf, (int)p->s.k, p->X, 1, 0.0f, p->Y, 1);
}

/* Median time in microseconds. */
static double measure(void (*fn)(const run_t *, problem_t *), const run_t *r,
                      problem_t *p) {
  static double t[MAX_REPS];
  fn(r, p);   /* warm-up: caches, page faults, team start-up */
  double t0 = now_ns();
  fn(r, p);
  double one = now_ns() - t0;
  int reps = one > 0 ? (int)(TARGET_NS / one) : MAX_REPS;
  reps = reps < MIN_REPS ? MIN_REPS : reps > MAX_REPS ? MAX_REPS : reps;
  for (int i = 0; i < reps; i++) {
    double a = now_ns();
    fn(r, p);
    t[i] = now_ns() - a;
  }
  qsort(t, (size_t)reps, sizeof(double), cmp_double);
  return t[reps / 2] / 1e3;
}

/* Relative L2 of the INT8 output vs FP32 (sgemm + bias), as a sanity line. */
static double rel_err(problem_t *p) {
  double num = 0, den = 0;
  for (int64_t m = 0; m < p->s.m; m++)
    for (int64_t n = 0; n < p->s.n; n++) {
      double y = (double)p->Y[m * p->s.n + n] + p->bias[n];
      double d = p->C[m * p->s.n + n] - y;
      num += d * d;
      den += y * y;
    }
  return den > 0 ? sqrt(num / den) : 0;
}

static int parse_shape(const char *s, shape_t *ret) {
  long long m, k, n;
  char tail;
  if (sscanf(s, "%lldx%lldx%lld%c", &m, &k, &n, &tail) != 3) return -1;
  if (m < 1 || k < 1 || n < 1 || m > 65536 || k > DYNQ_QGEMM_MAX_K ||
      n > 1 << 20 || m * k > (1ll << 30) || n * k > (1ll << 30))
    return -1;
  *ret = (shape_t){m, k, n};
  return 0;
}

/* --compare-threads: INT8 with 1 thread and with `threads` alternately,
 * `rounds` times, so both see the same background load on a shared box. */
static int compare_threads(const dynq__kernel_t *kr, const shape_t *shapes,
                           int nshapes, int threads, int chunks, int rounds,
                           int json) {
  run_t one = {.threads = 1, .chunks_per_thread = chunks};
  run_t many = {.threads = threads, .chunks_per_thread = chunks};
  if (!json)
    printf("kernel %s, 1 vs %d threads (%d chunks per thread), %d rounds\n"
           "%6s %6s %6s %12s %12s %8s %8s %8s %9s\n",
           kr->name, threads, chunks, rounds, "M", "K", "N", "t1_us", "tN_us",
           "ratio", "min", "max", "GOPS_N");
  for (int i = 0; i < nshapes; i++) {
    problem_t p;
    problem_init(&p, shapes[i], kr);
    double t1[MAX_ROUNDS], tn[MAX_ROUNDS], ratio[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
      t1[r] = measure(int8_run, &one, &p);
      tn[r] = measure(int8_run, &many, &p);
      ratio[r] = t1[r] / tn[r];
    }
    qsort(t1, (size_t)rounds, sizeof(double), cmp_double);
    qsort(tn, (size_t)rounds, sizeof(double), cmp_double);
    qsort(ratio, (size_t)rounds, sizeof(double), cmp_double);
    double m1 = t1[rounds / 2], mn = tn[rounds / 2], mr = ratio[rounds / 2];
    double gops = 2.0 * (double)p.s.m * (double)p.s.n * (double)p.s.k / mn / 1e3;
    if (json)
      printf("{\"m\":%lld,\"k\":%lld,\"n\":%lld,\"kernel\":\"%s\",\"threads\":%d,"
             "\"chunks_per_thread\":%d,\"rounds\":%d,\"t1_us\":%.2f,\"tn_us\":%.2f,"
             "\"ratio\":%.3f,\"ratio_min\":%.3f,\"ratio_max\":%.3f,\"gops\":%.1f}\n",
             (long long)p.s.m, (long long)p.s.k, (long long)p.s.n, kr->name, threads,
             chunks, rounds, m1, mn, mr, ratio[0], ratio[rounds - 1], gops);
    else
      printf("%6lld %6lld %6lld %12.2f %12.2f %7.2fx %7.2fx %7.2fx %9.1f\n",
             (long long)p.s.m, (long long)p.s.k, (long long)p.s.n, m1, mn, mr,
             ratio[0], ratio[rounds - 1], gops);
    fflush(stdout);
    problem_free(&p);
  }
  return 0;
}

/* ---- sgemm: dynq's FP32 GEMM against OpenBLAS ---- */

static double cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* FMA peak of one core: 16 independent register chains (more than the
 * latency x throughput of any current core), no memory operands. */
#define PEAK_ITERS 20000000L
__attribute__((target("avx512f,fma"))) static double peak_avx512(void) {
  __m512 acc[16], b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
  for (int j = 0; j < 16; j++) acc[j] = _mm512_set1_ps((float)j);
  double t0 = cpu_ns();
  for (long i = 0; i < PEAK_ITERS; i++)
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(acc[j], b, c);
  double t = cpu_ns() - t0;
  float sink = 0;
  for (int j = 0; j < 16; j++) sink += _mm512_reduce_add_ps(acc[j]);
  __asm__ volatile("" : : "x"(sink));
  return 16.0 * 2 * 16 * PEAK_ITERS / t;
}
__attribute__((target("avx2,fma"))) static double peak_avx2(void) {
  __m256 acc[12], b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
  for (int j = 0; j < 12; j++) acc[j] = _mm256_set1_ps((float)j);
  double t0 = cpu_ns();
  for (long i = 0; i < PEAK_ITERS; i++)
#pragma GCC unroll 12
    for (int j = 0; j < 12; j++) acc[j] = _mm256_fmadd_ps(acc[j], b, c);
  double t = cpu_ns() - t0;
  float v[8], sink = 0;
  for (int j = 0; j < 12; j++) {
    _mm256_storeu_ps(v, acc[j]);
    for (int l = 0; l < 8; l++) sink += v[l];
  }
  __asm__ volatile("" : : "x"(sink));
  return 12.0 * 2 * 8 * PEAK_ITERS / t;
}

typedef struct sg {
  shape_t s;
  int threads;
  float *X, *W, *Wp, *Y;   /* X[M,K] x W[K,N] -> Y[M,N]; Wp: W packed */
  float **Wc;              /* ncold packed copies of W, used in turn: as in a model, */
  int ncold, next;         /* whose every layer's weights come from DRAM */
} sg_t;

/* Copies of the packed weights, at least this many bytes in all: more
 * than any current last-level cache, so each call finds its B cold. */
#define SG_COLD_BYTES ((size_t)256 << 20)

static void sg_packed(sg_t *g) {
  dynq__sgemm_ex(g->threads, 0, 0, g->s.m, g->s.n, g->s.k, 1.0f, g->X, g->s.k, g->W, g->s.n,
                 g->Wp, 0.0f, g->Y, g->s.n);
}
static void sg_unpacked(sg_t *g) {
  dynq__sgemm_ex(g->threads, 0, 0, g->s.m, g->s.n, g->s.k, 1.0f, g->X, g->s.k, g->W, g->s.n,
                 NULL, 0.0f, g->Y, g->s.n);
}
static void sg_cold(sg_t *g) {
  const float *Wp = g->Wc[g->next];
  g->next = (g->next + 1) % g->ncold;
  dynq__sgemm_ex(g->threads, 0, 0, g->s.m, g->s.n, g->s.k, 1.0f, g->X, g->s.k, g->W, g->s.n,
                 Wp, 0.0f, g->Y, g->s.n);
}
static void sg_blas(sg_t *g) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->s.m, (int)g->s.n, (int)g->s.k,
              1.0f, g->X, (int)g->s.k, g->W, (int)g->s.n, 0.0f, g->Y, (int)g->s.n);
}

/* Median over reps of one call, in ns: CPU time of this thread with one
 * thread, wall time with more. */
static double sg_time(void (*fn)(sg_t *), sg_t *g, int reps) {
  double t[64];
  double (*clk)(void) = g->threads > 1 ? now_ns : cpu_ns;
  fn(g);
  for (int i = 0; i < reps; i++) {
    double a = clk();
    fn(g);
    t[i] = clk() - a;
  }
  qsort(t, (size_t)reps, sizeof(double), cmp_double);
  return t[reps / 2];
}

static int sgemm_bench(const shape_t *shapes, int nshapes, int threads, int rounds, int json) {
  const dynq__sgemm_kernel_t *sk = dynq__sgemm_kernel();
  double peak = !strcmp(sk->name, "avx512") ? peak_avx512()
                : !strcmp(sk->name, "avx2") ? peak_avx2() : 0;
  const char *core = openblas_get_corename();
  if (!json)
    printf("sgemm micro-kernel %s, measured FMA peak %.1f GFLOPS per core, OpenBLAS core %s, "
           "%d thread(s), %d interleaved rounds (medians)\n"
           "%6s %6s %6s %10s %10s %10s %10s %8s %8s %8s %7s %7s %7s\n",
           sk->name, peak, core ? core : "?", threads, rounds, "M", "K", "N", "packed_us",
           "coldB_us", "unpack_us", "blas_us", "GF_pack", "GF_cold", "GF_blas", "%peak",
           "%p_cold", "blas/p");
  for (int i = 0; i < nshapes; i++) {
    sg_t g = {.s = shapes[i], .threads = threads};
    int64_t M = g.s.m, K = g.s.k, N = g.s.n;
    g.X = xalloc(sizeof(float) * (size_t)(M * K));
    g.W = xalloc(sizeof(float) * (size_t)(K * N));
    g.Wp = xalloc(sizeof(float) * dynq__sgemm_packed_floats(N, K));
    g.Y = xalloc(sizeof(float) * (size_t)(M * N));
    for (int64_t j = 0; j < M * K; j++) g.X[j] = nrand();
    for (int64_t j = 0; j < K * N; j++) g.W[j] = nrand();
    dynq__sgemm_pack_b(0, N, K, g.W, N, g.Wp);
    size_t wbytes = sizeof(float) * dynq__sgemm_packed_floats(N, K);
    g.ncold = (int)((SG_COLD_BYTES + wbytes - 1) / wbytes);
    g.Wc = xalloc(sizeof(float *) * (size_t)g.ncold);
    for (int c = 0; c < g.ncold; c++) {
      g.Wc[c] = xalloc(wbytes);
      memcpy(g.Wc[c], g.Wp, wbytes);
    }
    double flop = 2.0 * (double)M * (double)N * (double)K;
    int reps = (int)(2e7 / flop);  /* ~10 ms of work per measurement */
    reps = reps < 3 ? 3 : reps > 63 ? 63 : reps;
    double tp[MAX_ROUNDS], tc[MAX_ROUNDS], tu[MAX_ROUNDS], tb[MAX_ROUNDS], ratio[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
      tp[r] = sg_time(sg_packed, &g, reps);
      tc[r] = sg_time(sg_cold, &g, reps);
      tu[r] = sg_time(sg_unpacked, &g, reps);
      tb[r] = sg_time(sg_blas, &g, reps);
      ratio[r] = tb[r] / tp[r];
    }
    qsort(tp, (size_t)rounds, sizeof(double), cmp_double);
    qsort(tu, (size_t)rounds, sizeof(double), cmp_double);
    qsort(tc, (size_t)rounds, sizeof(double), cmp_double);
    qsort(tb, (size_t)rounds, sizeof(double), cmp_double);
    qsort(ratio, (size_t)rounds, sizeof(double), cmp_double);
    double p = tp[rounds / 2], u = tu[rounds / 2], b = tb[rounds / 2], cb = tc[rounds / 2];
    double gp = flop / p, gb = flop / b, gc = flop / cb;
    double share = peak > 0 ? 100 * gp / (peak * threads) : 0;
    double cshare = peak > 0 ? 100 * gc / (peak * threads) : 0;
    if (json)
      printf("{\"m\":%lld,\"k\":%lld,\"n\":%lld,\"ukernel\":\"%s\",\"threads\":%d,"
             "\"peak_gflops\":%.1f,\"openblas_core\":\"%s\",\"packed_us\":%.2f,"
             "\"cold_b_us\":%.2f,\"unpacked_us\":%.2f,\"blas_us\":%.2f,"
             "\"gflops_packed\":%.1f,\"gflops_cold_b\":%.1f,\"gflops_blas\":%.1f,"
             "\"peak_share\":%.3f,\"peak_share_cold_b\":%.3f,\"blas_over_packed\":%.3f}\n",
             (long long)M, (long long)K, (long long)N, sk->name, threads, peak,
             core ? core : "?", p / 1e3, cb / 1e3, u / 1e3, b / 1e3, gp, gc, gb, share / 100,
             cshare / 100, ratio[rounds / 2]);
    else
      printf("%6lld %6lld %6lld %10.1f %10.1f %10.1f %10.1f %8.1f %8.1f %8.1f %6.1f%% %6.1f%% "
             "%6.2fx\n",
             (long long)M, (long long)K, (long long)N, p / 1e3, cb / 1e3, u / 1e3, b / 1e3, gp,
             gc, gb, share, cshare, ratio[rounds / 2]);
    fflush(stdout);
    free(g.X);
    free(g.W);
    free(g.Wp);
    for (int c = 0; c < g.ncold; c++) free(g.Wc[c]);
    free(g.Wc);
    free(g.Y);
  }
  return 0;
}

/* ---- peak: what one core's INT8 dot-product instruction can do ---- */

/* Register-only vpdpbusd loops with `chains` independent accumulators
 * (fewer than latency x throughput chains measure the latency, not the
 * peak), timed as this thread's CPU time.  Written in asm with fixed
 * registers: compiled from intrinsics, GCC 12 kept the accumulators of
 * such a loop on the stack. */
#define VNNI_ITERS 4000000L
#define Z1(i) "vpdpbusd %%zmm31, %%zmm30, %%zmm" #i "\n\t"
#define Z4(a, b, c, d) Z1(a) Z1(b) Z1(c) Z1(d)
#define Y1(i) "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm" #i "\n\t"
#define Y4(a, b, c, d) Y1(a) Y1(b) Y1(c) Y1(d)
/* 24 instructions per iteration for every chain count */
#define VNNI_ASM(body, ...)                                                     \
  __asm__ volatile("1:\n\t" body "dec %0\n\tjnz 1b\n\t"                         \
                   : "+r"(n) : : "cc", __VA_ARGS__)
#define ZCLOB "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", \
    "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", \
    "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm30", "xmm31"
#define YCLOB "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", \
    "xmm9", "xmm10", "xmm11", "xmm14", "xmm15"
/* 24 X-steps per iteration over 4, 8 or 12 ymm accumulators (X4 names four
 * of them; `chains` and `n` in scope). */
#define YMM_CHAINS(X4, CLOB)                                                    \
  switch (chains) {                                                             \
  case 4: VNNI_ASM(X4(0, 1, 2, 3) X4(0, 1, 2, 3) X4(0, 1, 2, 3) X4(0, 1, 2, 3) \
                   X4(0, 1, 2, 3) X4(0, 1, 2, 3), CLOB); break;                 \
  case 8: VNNI_ASM(X4(0, 1, 2, 3) X4(4, 5, 6, 7) X4(0, 1, 2, 3) X4(4, 5, 6, 7) \
                   X4(0, 1, 2, 3) X4(4, 5, 6, 7), CLOB); break;                 \
  default: VNNI_ASM(X4(0, 1, 2, 3) X4(4, 5, 6, 7) X4(8, 9, 10, 11)             \
                    X4(0, 1, 2, 3) X4(4, 5, 6, 7) X4(8, 9, 10, 11), CLOB); break; \
  }

__attribute__((target("avx512f,avx512vnni"))) static double vnni_zmm(int chains) {
  long n = VNNI_ITERS;
  double t0 = cpu_ns();
  switch (chains) {
  case 4: VNNI_ASM(Z4(0, 1, 2, 3) Z4(0, 1, 2, 3) Z4(0, 1, 2, 3) Z4(0, 1, 2, 3)
                   Z4(0, 1, 2, 3) Z4(0, 1, 2, 3), ZCLOB); break;
  case 8: VNNI_ASM(Z4(0, 1, 2, 3) Z4(4, 5, 6, 7) Z4(0, 1, 2, 3) Z4(4, 5, 6, 7)
                   Z4(0, 1, 2, 3) Z4(4, 5, 6, 7), ZCLOB); break;
  case 12: VNNI_ASM(Z4(0, 1, 2, 3) Z4(4, 5, 6, 7) Z4(8, 9, 10, 11) Z4(0, 1, 2, 3)
                    Z4(4, 5, 6, 7) Z4(8, 9, 10, 11), ZCLOB); break;
  default: VNNI_ASM(Z4(0, 1, 2, 3) Z4(4, 5, 6, 7) Z4(8, 9, 10, 11) Z4(12, 13, 14, 15)
                    Z4(16, 17, 18, 19) Z4(20, 21, 22, 23), ZCLOB); break;
  }
  return 2.0 * 64 * 24 * VNNI_ITERS / (cpu_ns() - t0);
}

__attribute__((target("avx2,avxvnni"))) static double vnni_ymm(int chains) {
  long n = VNNI_ITERS;
  double t0 = cpu_ns();
  YMM_CHAINS(Y4, YCLOB);
  return 2.0 * 32 * 24 * VNNI_ITERS / (cpu_ns() - t0);
}

/* The AVX2 kernel's exact int16 step: acc += vpmaddwd(x, w), 16
 * multiply-adds per pair of instructions, the product through a
 * temporary register (two here, alternating; the kernel's tiles reuse one,
 * which register renaming makes the same). */
#define W1(i, t) "vpmaddwd %%ymm15, %%ymm14, %%ymm" #t "\n\tvpaddd %%ymm" #t ", %%ymm" #i \
    ", %%ymm" #i "\n\t"
#define W4(a, b, c, d) W1(a, 12) W1(b, 13) W1(c, 12) W1(d, 13)
#define WCLOB YCLOB, "xmm12", "xmm13"

__attribute__((target("avx2"))) static double madd_ymm(int chains) {
  long n = VNNI_ITERS;
  double t0 = cpu_ns();
  YMM_CHAINS(W4, WCLOB);
  return 2.0 * 16 * 24 * VNNI_ITERS / (cpu_ns() - t0);
}

/* The measured INT8 peak (best of 3, GOPS) of the instruction `kr` is
 * built on: vpdpbusd, or for avx2 the vpmaddwd + vpaddd pair; 0 for
 * ref. */
static double int8_peak(const dynq__kernel_t *kr) {
  double best = 0;
  for (int r = 0; r < 3; r++) {
    double g = !strcmp(kr->name, "avx512vnni") ? vnni_zmm(24)
               : !strcmp(kr->name, "avxvnni") ? vnni_ymm(12)
               : !strcmp(kr->name, "avx2") ? madd_ymm(8) : 0;
    best = g > best ? g : best;
  }
  return best;
}

static int peak_bench(int rounds, int json) {
  const dynq__kernel_t *z = dynq__kernel_find("avx512vnni");
  const dynq__kernel_t *y = dynq__kernel_find("avxvnni");
  const dynq__kernel_t *w = dynq__kernel_find("avx2");
  static const int zc[] = {4, 8, 12, 24}, yc[] = {4, 8, 12};
  typedef struct { const char *insn; int chains; double (*fn)(int); int ok; } row_t;
  row_t rows[10];
  int nr = 0;
  for (int i = 0; i < 4; i++)
    rows[nr++] = (row_t){"vpdpbusd zmm", zc[i], vnni_zmm, z && z->supported()};
  for (int i = 0; i < 3; i++)
    rows[nr++] = (row_t){"vpdpbusd ymm (VEX)", yc[i], vnni_ymm, y && y->supported()};
  for (int i = 0; i < 3; i++)
    rows[nr++] = (row_t){"vpmaddwd+vpaddd ymm", yc[i], madd_ymm, w && w->supported()};
  if (!json)
    printf("one core, thread CPU time, %d rounds; GOPS = 2 x multiply-adds per second\n"
           "%-20s %7s %10s %10s\n", rounds, "instruction", "chains", "median", "best");
  for (int i = 0; i < nr; i++) {
    if (!rows[i].ok) {
      if (!json) printf("%-20s %7d %21s\n", rows[i].insn, rows[i].chains, "not supported");
      continue;
    }
    double g[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) g[r] = rows[i].fn(rows[i].chains);
    qsort(g, (size_t)rounds, sizeof(double), cmp_double);
    if (json)
      printf("{\"instruction\":\"%s\",\"chains\":%d,\"rounds\":%d,\"gops_median\":%.1f,"
             "\"gops_best\":%.1f}\n", rows[i].insn, rows[i].chains, rounds, g[rounds / 2],
             g[rounds - 1]);
    else
      printf("%-20s %7d %10.1f %10.1f\n", rows[i].insn, rows[i].chains, g[rounds / 2],
             g[rounds - 1]);
    fflush(stdout);
  }
  return 0;
}

/* ---- qgemm: the INT8 op's parts, one thread, CPU time ---- */

static void kernel_run(const run_t *r, problem_t *p) {
  (void)r;
  qgemm_cols(p, 0, p->s.n);
}

/* As a model runs: each layer's weights come from DRAM (a BERT-base's
 * 85 MB do not fit any cache), its activations are hot. */
#define COLD_BYTES (96ll << 20)
static void cold_next(problem_t *p) {
  p->icold = (p->icold + 1) % p->ncold;
  p->Bcur = p->Bcold[p->icold];
}
static void cold_kernel_run(const run_t *r, problem_t *p) {
  cold_next(p);
  kernel_run(r, p);
}
static void cold_int8_run(const run_t *r, problem_t *p) {
  cold_next(p);
  int8_run(r, p);
}

/* Median of reps calls, in us of this thread's CPU time. */
static double cpu_median(void (*fn)(const run_t *, problem_t *), const run_t *r, problem_t *p,
                         int reps) {
  double t[MAX_REPS];
  fn(r, p);
  for (int i = 0; i < reps; i++) {
    double a = cpu_ns();
    fn(r, p);
    t[i] = cpu_ns() - a;
  }
  qsort(t, (size_t)reps, sizeof(double), cmp_double);
  return t[reps / 2] / 1e3;
}

static int qgemm_bench(const dynq__kernel_t *kr, const shape_t *shapes, int nshapes,
                       int rounds, int json) {
  double peak = int8_peak(kr);
  run_t one = {.threads = 1, .chunks_per_thread = 1};
  if (!json)
    printf("kernel %s, one thread, thread CPU time, medians of %d interleaved rounds; "
           "measured peak of its instruction %.1f GOPS\n"
           "warm: weights in cache; cold: weights rotated through %lld MiB of copies (as in "
           "a model); int8 = quantization + cold kernel\n"
           "%6s %6s %6s %9s %9s %9s %9s %8s %8s %8s %7s\n",
           kr->name, rounds, peak, COLD_BYTES >> 20, "M", "K", "N", "quant_us", "warm_us",
           "cold_us", "int8_us", "GOPS", "kG_warm", "kG_cold", "%peak");
  for (int i = 0; i < nshapes; i++) {
    problem_t p;
    problem_init(&p, shapes[i], kr);
    size_t bbytes = (size_t)(dynq__round_up(p.s.n, 16) * p.Kp);
    p.ncold = (int)((COLD_BYTES + (long long)bbytes - 1) / (long long)bbytes);
    p.ncold = p.ncold < 2 ? 2 : p.ncold;
    p.Bcold = calloc((size_t)p.ncold, sizeof(int8_t *));
    if (p.Bcold == NULL) {
      fprintf(stderr, "dynq-bench: out of memory\n");
      exit(1);
    }
    for (int c = 0; c < p.ncold; c++) {
      p.Bcold[c] = xalloc(bbytes);
      memcpy(p.Bcold[c], p.B, bbytes);
    }
    double ops = 2.0 * (double)p.s.m * (double)p.s.n * (double)p.s.k;
    int reps = (int)(3e8 / ops);   /* ~0.5 ms of work per measurement */
    reps = reps < 3 ? 3 : reps > MAX_REPS ? MAX_REPS : reps;
    double tq[MAX_ROUNDS], tw[MAX_ROUNDS], tc[MAX_ROUNDS], ti[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
      tq[r] = cpu_median(quant_run, &one, &p, reps);
      p.Bcur = p.B;
      tw[r] = cpu_median(kernel_run, &one, &p, reps);
      tc[r] = cpu_median(cold_kernel_run, &one, &p, reps);
      ti[r] = cpu_median(cold_int8_run, &one, &p, reps);
    }
    qsort(tq, (size_t)rounds, sizeof(double), cmp_double);
    qsort(tw, (size_t)rounds, sizeof(double), cmp_double);
    qsort(tc, (size_t)rounds, sizeof(double), cmp_double);
    qsort(ti, (size_t)rounds, sizeof(double), cmp_double);
    double q = tq[rounds / 2], w = tw[rounds / 2], c = tc[rounds / 2], e = ti[rounds / 2];
    double g = ops / e / 1e3, gw = ops / w / 1e3, gc = ops / c / 1e3;
    double share = peak > 0 ? gc / peak : 0;
    if (json)
      printf("{\"m\":%lld,\"k\":%lld,\"n\":%lld,\"kernel\":\"%s\",\"rounds\":%d,"
             "\"peak_gops\":%.1f,\"quant_us\":%.2f,\"warm_us\":%.2f,\"cold_us\":%.2f,"
             "\"int8_us\":%.2f,\"gops\":%.1f,\"kernel_gops_warm\":%.1f,"
             "\"kernel_gops_cold\":%.1f,\"peak_share_cold\":%.3f}\n",
             (long long)p.s.m, (long long)p.s.k, (long long)p.s.n, kr->name, rounds, peak,
             q, w, c, e, g, gw, gc, share);
    else
      printf("%6lld %6lld %6lld %9.1f %9.1f %9.1f %9.1f %8.1f %8.1f %8.1f %6.1f%%\n",
             (long long)p.s.m, (long long)p.s.k, (long long)p.s.n, q, w, c, e, g, gw, gc,
             100 * share);
    fflush(stdout);
    problem_free(&p);
  }
  return 0;
}

static void usage(FILE *f) {
  fprintf(f,
    "usage: dynq-bench gemm [--shape MxKxN]... [--threads N] [--kernel NAME] [--json]\n"
    "       dynq-bench gemm --compare-threads [--threads N] [--rounds R] [--shape ...]\n"
    "       dynq-bench quant [--kernel NAME] [--json]\n"
    "       dynq-bench sgemm [--shape MxKxN]... [--threads N] [--rounds R] [--json]\n"
    "       dynq-bench qgemm [--shape MxKxN]... [--kernel NAME] [--rounds R] [--json]\n"
    "       dynq-bench peak [--rounds R] [--json]\n"
    "  gemm   INT8 end to end (quantize + qgemm + bias) vs OpenBLAS sgemm/sgemv\n"
    "         default shapes: M in {1,4,16,64,256} x KxN in {768x768, 768x3072,\n"
    "         3072x768, 4096x4096}\n"
    "  quant  share of activation quantization in the INT8 op (M=64, 768->768)\n"
    "  sgemm  dynq's FP32 GEMM (B pre-packed, and unpacked) vs OpenBLAS sgemm,\n"
    "         GFLOPS and share of the measured FMA peak; default shapes: BERT-base's\n"
    "         at seq 128, batch 1 and 8 (M 128, 1024) and M 1, 16\n"
    "  qgemm  INT8 op in parts at one thread (quantization; kernel alone with the\n"
    "         weights in cache and with them cold, as in a model; both, cold),\n"
    "         thread CPU time in interleaved rounds, kernel GOPS and share of the\n"
    "         measured peak of its instruction (vpdpbusd; avx2: vpmaddwd +\n"
    "         vpaddd); default shapes: BERT-base's at seq 128,\n"
    "         batch 1 and 8 (M 128, 1024: 768->768, 768->3072, 3072->768, 768->2304)\n"
    "  peak   vpdpbusd (zmm; ymm VEX) and vpmaddwd + vpaddd (ymm) register-only\n"
    "         loops with 4..24 chains\n"
    "  --shape MxKxN  activations X[M,K] times weights -> Y[M,N] (repeatable)\n"
    "  --threads N    split N across N threads (OpenBLAS gets N threads too)\n"
    "  --chunks C     chunks per thread when splitting (default 4, as QLinear)\n"
    "  --compare-threads  INT8 only: 1 thread vs --threads N (default 2),\n"
    "                 alternated R rounds (--rounds, default 7); prints the\n"
    "                 medians, the median per-round ratio and its range\n"
    "  --kernel NAME  auto, ref, avx2, avxvnni, avx512vnni\n"
    "  --json         one JSON object per line\n");
}

int main(int argc, char **argv) {
  shape_t shapes[MAX_SHAPES];
  int nshapes = 0, threads = 1, json = 0, compare = 0, rounds = 7, chunks = 4;
  int threads_set = 0;
  const char *kname = "auto", *cmd = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--json")) {
      json = 1;
    } else if (!strcmp(a, "--compare-threads")) {
      compare = 1;
    } else if (!strcmp(a, "--shape") || !strcmp(a, "--threads") ||
               !strcmp(a, "--kernel") || !strcmp(a, "--rounds") ||
               !strcmp(a, "--chunks")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "dynq-bench: %s needs a value\n", a);
        return 2;
      }
      const char *v = argv[++i];
      if (!strcmp(a, "--shape")) {
        if (nshapes == MAX_SHAPES) {
          fprintf(stderr, "dynq-bench: at most %d shapes\n", MAX_SHAPES);
          return 2;
        }
        if (parse_shape(v, &shapes[nshapes]) < 0) {
          fprintf(stderr, "dynq-bench: bad shape '%s' (want MxKxN, e.g. "
                  "64x768x768, K <= %d)\n", v, DYNQ_QGEMM_MAX_K);
          return 2;
        }
        nshapes++;
      } else if (!strcmp(a, "--threads") || !strcmp(a, "--rounds") ||
                 !strcmp(a, "--chunks")) {
        int hi = !strcmp(a, "--threads") ? MAX_THREADS
                 : !strcmp(a, "--rounds") ? MAX_ROUNDS : 64;
        char *end;
        errno = 0;
        long t = strtol(v, &end, 10);
        if (errno || *end || t < 1 || t > hi) {
          fprintf(stderr, "dynq-bench: bad %s '%s' (1..%d)\n", a, v, hi);
          return 2;
        }
        if (!strcmp(a, "--threads")) {
          threads = (int)t;
          threads_set = 1;
        } else if (!strcmp(a, "--rounds")) {
          rounds = (int)t;
        } else {
          chunks = (int)t;
        }
      } else {
        kname = v;
      }
    } else if (!cmd && a[0] != '-') {
      cmd = a;
    } else {
      fprintf(stderr, "dynq-bench: unknown argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!cmd || (strcmp(cmd, "gemm") && strcmp(cmd, "quant") && strcmp(cmd, "sgemm") &&
               strcmp(cmd, "qgemm") && strcmp(cmd, "peak"))) {
    usage(stderr);
    return 2;
  }
  const char *msg = "";
  if (dynq__kernels_init(kname, &msg) != 0) {
    fprintf(stderr, "dynq-bench: --kernel %s: %s\n", kname, msg);
    return 2;
  }
  const dynq__kernel_t *kr = dynq__kernel();
  if (compare && !threads_set) threads = 2;
  /* the team's default cap is the CPU count; the bench may ask for more */
  dynq__parallel_set_max_threads(threads);
  openblas_set_num_threads(threads);
  const char *core = openblas_get_corename();

  if (!strcmp(cmd, "quant")) {
    problem_t p;
    problem_init(&p, (shape_t){64, 768, 768}, kr);
    run_t one = {.threads = 1, .chunks_per_thread = chunks};
    double tq = measure(quant_run, &one, &p);
    double ti = measure(int8_run, &one, &p);
    if (json)
      printf("{\"m\":64,\"k\":768,\"n\":768,\"kernel\":\"%s\",\"quant_us\":%.2f,"
             "\"int8_us\":%.2f,\"share\":%.4f}\n", kr->name, tq, ti, tq / ti);
    else
      printf("kernel %s, M=64 768->768: quantize %.2f us of %.2f us INT8 "
             "end to end = %.1f%%\n", kr->name, tq, ti, 100 * tq / ti);
    problem_free(&p);
    return 0;
  }

  if (!strcmp(cmd, "peak")) return peak_bench(rounds, json);
  if (!strcmp(cmd, "qgemm")) {
    if (nshapes == 0) {
      static const int64_t ms[] = {128, 1024};
      static const int64_t kn[][2] = {{768, 768}, {768, 3072}, {3072, 768}, {768, 2304}};
      for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) shapes[nshapes++] = (shape_t){ms[i], kn[j][0], kn[j][1]};
    }
    return qgemm_bench(kr, shapes, nshapes, rounds, json);
  }
  if (!strcmp(cmd, "sgemm")) {
    if (nshapes == 0) {
      static const int64_t ms[] = {1, 16, 128, 1024};
      static const int64_t kn[][2] = {{768, 768}, {768, 3072}, {3072, 768}};
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) shapes[nshapes++] = (shape_t){ms[i], kn[j][0], kn[j][1]};
      shapes[nshapes++] = (shape_t){128, 64, 128};   /* attention: Q K^T, one head */
      shapes[nshapes++] = (shape_t){128, 128, 64};   /* attention: P V */
    }
    return sgemm_bench(shapes, nshapes, threads, rounds > 63 ? 63 : rounds, json);
  }
  if (nshapes == 0) {
    static const int64_t ms[] = {1, 4, 16, 64, 256};
    static const int64_t kn[][2] = {{768, 768}, {768, 3072}, {3072, 768},
                                    {4096, 4096}};
    for (int i = 0; i < 5; i++)
      for (int j = 0; j < 4; j++)
        shapes[nshapes++] = (shape_t){ms[i], kn[j][0], kn[j][1]};
  }
  if (compare) return compare_threads(kr, shapes, nshapes, threads, chunks,
                                      rounds, json);
  if (!json)
    printf("kernel %s, OpenBLAS core %s, %d thread(s)\n"
           "%6s %6s %6s %12s %12s %7s %8s %8s %9s\n",
           kr->name, core, threads, "M", "K", "N", "int8_us", "fp32_us",
           "fp32", "speedup", "GOPS", "relL2");
  run_t run = {.threads = threads, .chunks_per_thread = chunks};
  for (int i = 0; i < nshapes; i++) {
    problem_t p;
    problem_init(&p, shapes[i], kr);
    double ti = measure(int8_run, &run, &p);
    double tf = measure(sgemm_run, &run, &p);
    const char *routine = "sgemm";
    double err = rel_err(&p);
    if (p.s.m == 1) {
      double tv = measure(sgemv_run, &run, &p);
      if (tv < tf) {
        tf = tv;
        routine = "sgemv";
      }
    }
    double gops = 2.0 * (double)p.s.m * (double)p.s.n * (double)p.s.k / ti / 1e3;
    if (json)
      printf("{\"m\":%lld,\"k\":%lld,\"n\":%lld,\"kernel\":\"%s\",\"threads\":%d,"
             "\"int8_us\":%.2f,\"fp32_us\":%.2f,\"fp32_routine\":\"%s\","
             "\"openblas_core\":\"%s\",\"speedup\":%.3f,\"gops\":%.1f,"
             "\"rel_l2\":%.5f}\n",
             (long long)p.s.m, (long long)p.s.k, (long long)p.s.n, kr->name,
             threads, ti, tf, routine, core, tf / ti, gops, err);
    else
      printf("%6lld %6lld %6lld %12.2f %12.2f %7s %7.2fx %8.1f %9.5f\n",
             (long long)p.s.m, (long long)p.s.k, (long long)p.s.n, ti, tf,
             routine, tf / ti, gops, err);
    fflush(stdout);
    problem_free(&p);
  }
  return 0;
}
