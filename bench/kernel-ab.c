/*
 * kernel-ab: two builds of one INT8 kernel file in one process, timed in
 * alternation on the same data.
 *
 *   bench/kernel-ab.sh [--kernel avx2] REV_A REV_B [MxKxN ...]
 *
 * builds this file against lib/kernels/KERNEL.c as of two git revisions
 * (or two paths), the first renamed kern_a and the second kern_b, and runs
 * it.  Per shape it times R rounds of one qgemm call each side, the order
 * flipped every round, each timed call right after an untimed one of the
 * same build, with the weights warm (the same copy) or cold (rotated through 96 MiB of copies, as a model's layers
 * are).  It prints each side's median and the median of the per-round
 * ratios B/A with their range (< 1: B faster).  A shared machine's drift
 * lands on both sides alike; separate processes minutes apart do not.
 * Thread CPU time, one thread: pin it (the script runs it on CPU 1).
 * --heap-shift BYTES allocates that much first, moving the data and the
 * kernels' scratch: a kernel whose speed depends on where its scratch
 * lands shows it across a few shifts (e.g. 0, 4000, 40000).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

extern const dynq__kernel_t kern_a, kern_b;

/* The kernel files' `supported` hooks: never called here. */
int dynq__cpu_has_avx2(void) { return 1; }
int dynq__cpu_has_avxvnni(void) { return 1; }
int dynq__cpu_has_avx512vnni(void) { return 1; }

#define MAX_ROUNDS 101

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp_double);
  return v[n / 2];
}

static void *xalloc(size_t n) {
  void *p = aligned_alloc(64, (n + 63) / 64 * 64);
  if (!p) {
    fprintf(stderr, "kernel-ab: out of memory (%zu bytes)\n", n);
    exit(1);
  }
  memset(p, 0, n);
  return p;
}

static void run_shape(int64_t M, int64_t K, int64_t N, int rounds, int cold) {
  int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG), Np = dynq__round_up(N, DYNQ_QGEMM_NR);
  size_t bbytes = (size_t)(Kp * Np);
  size_t copies = cold ? (size_t)(96u << 20) / bbytes + 2 : 1;
  int8_t *B = xalloc(bbytes * copies);
  uint8_t *A = xalloc((size_t)(M * Kp));
  int32_t *colsum = xalloc((size_t)N * 4), *zp = xalloc((size_t)M * 4);
  float *ws = xalloc((size_t)N * 4), *as = xalloc((size_t)M * 4);
  float *bias = xalloc((size_t)N * 4), *C = xalloc((size_t)(M * N) * 4);
  for (size_t i = 0; i < bbytes * copies; i++) B[i] = (int8_t)(i * 7 + 3);
  for (int64_t m = 0; m < M; m++)
    for (int64_t k = 0; k < K; k++) A[m * Kp + k] = (uint8_t)(m * 13 + k * 5);
  for (int64_t n = 0; n < N; n++) ws[n] = 1e-3f, bias[n] = 0.5f;
  for (int64_t m = 0; m < M; m++) as[m] = 1e-2f, zp[m] = 128;
  dynq__qgemm_args_t a = {.M = M, .N = N, .K = K, .A = A, .lda = (size_t)Kp,
                          .B = B, .colsum = colsum, .w_scale = ws,
                          .a_scale = as, .a_zp = zp, .bias = bias, .C = C,
                          .ldc = (size_t)N, .n0 = 0, .n1 = N};
  double ta[MAX_ROUNDS], tb[MAX_ROUNDS], q[MAX_ROUNDS];
  size_t next = 0;
  for (int r = 0; r < rounds; r++)
    for (int side = 0; side < 2; side++) {
      int is_b = (r + side) & 1;
      const dynq__kernel_t *k = is_b ? &kern_b : &kern_a;
      /* One untimed call first, so the timed one starts from this
       * build's own state (code, predictors, its scratch) as it would in
       * a process that has only it; cold: on another copy of the
       * weights. */
      a.B = B + bbytes * (next++ % copies);
      k->qgemm(&a);
      a.B = B + bbytes * (next++ % copies);
      double t = now_us();
      k->qgemm(&a);
      t = now_us() - t;
      (is_b ? tb : ta)[r] = t;
    }
  for (int r = 0; r < rounds; r++) q[r] = tb[r] / ta[r];
  double ops = 2.0 * (double)M * (double)K * (double)N / 1e3;   /* per us -> GOPS */
  double ma = median(ta, rounds), mb = median(tb, rounds), mq = median(q, rounds);
  printf("%5lld x %5lld x %5lld %s  A %9.1f us %6.1f GOPS   B %9.1f us %6.1f GOPS"
         "   B/A %.3f [%.3f .. %.3f]\n",
         (long long)M, (long long)K, (long long)N, cold ? "cold" : "warm", ma,
         ops / ma, mb, ops / mb, mq, q[0], q[rounds - 1]);
  free(B), free(A), free(colsum), free(zp), free(ws), free(as), free(bias), free(C);
}

int main(int argc, char **argv) {
  int rounds = 21, i = 1;
  void *shift = NULL;
  while (i + 1 < argc && argv[i][0] == '-') {
    if (strcmp(argv[i], "--rounds") == 0) {
      rounds = atoi(argv[i + 1]);
    } else if (strcmp(argv[i], "--heap-shift") == 0) {
      /* Moves every later allocation, the kernels' scratch included. */
      shift = malloc((size_t)strtoul(argv[i + 1], NULL, 10) + 1);
    } else {
      fprintf(stderr, "kernel-ab: unknown option '%s'\n", argv[i]);
      return 2;
    }
    i += 2;
  }
  if (rounds < 1 || rounds > MAX_ROUNDS) {
    fprintf(stderr, "kernel-ab: --rounds must be 1..%d\n", MAX_ROUNDS);
    return 2;
  }
  static const char *defaults[] = {"16x768x768", "32x768x768", "256x768x768",
                                   "128x3072x768", "128x768x3072"};
  int nshape = argc - i;
  const char **shapes = nshape > 0 ? (const char **)argv + i : defaults;
  if (nshape <= 0) nshape = (int)(sizeof(defaults) / sizeof(defaults[0]));
  printf("kernel-ab: %s (A) vs %s (B), %d rounds, thread CPU time\n", kern_a.name,
         kern_b.name, rounds);
  for (int s = 0; s < nshape; s++) {
    long long M, K, N;
    char tail;
    if (sscanf(shapes[s], "%lldx%lldx%lld%c", &M, &K, &N, &tail) != 3 || M < 1 ||
        K < 1 || N < 1 || K > DYNQ_QGEMM_MAX_K || M * K > (1LL << 28) ||
        N * K > (1LL << 28)) {
      fprintf(stderr, "kernel-ab: bad shape '%s' (MxKxN, K <= %d)\n", shapes[s],
              DYNQ_QGEMM_MAX_K);
      return 2;
    }
    run_shape(M, K, N, rounds, 0);
    run_shape(M, K, N, rounds, 1);
  }
  free(shift);
  return 0;
}
