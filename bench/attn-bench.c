/*
 * attn-bench: BERT-style self-attention (seq S, d 768, 12 heads of 64,
 * padding mask [B, 1, 1, S]) through the fused Attention op and through
 * the three nodes it replaces (StridedMatMul, MaskedSoftmax,
 * StridedMatMul), in interleaved rounds, as thread CPU time medians; the
 * two results are compared bit for bit.
 *
 *   attn-bench [--batch B] [--seq S] [--rounds N] [--threads T] [--only fused|unfused]
 *              [--dump PREFIX]
 *
 * --only runs one form (for perf record; no comparison then).  --dump
 * PREFIX writes the first round's fused output, the unfused MaskedSoftmax
 * and output to PREFIX.{fused,softmax,unfused}.f32 (an A/B of two builds,
 * bit for bit).
 * Kernel from DYNQ_KERNEL as dynqd picks it.  Per call, not per model:
 * multiply by the layer count for an encoder's figure.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

enum { H = 12, DH = 64, DM = H * DH };

static char err[256];

static int run(int op, const dynq__attr_t *at, int n_attr, int n_in, const dynq__tensor_t *const *in,
               dynq__tensor_t *out, int threads) {
  static const int32_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  dynq__node_t n = {.op = op, .name = "bench", .n_in = n_in, .n_out = 1, .in = idx, .out = idx,
                    .n_attr = n_attr, .attr = at};
  dynq__op_ctx_t c = {.node = &n, .kernel = dynq__kernel(), .precision = DYNQ_PRECISION_INT8,
                      .threads = threads, .err = err, .errlen = sizeof(err)};
  memset(out, 0, sizeof(*out));
  int rc = dynq__op_run1(NULL, &c, in, out);
  if (rc != 0) {
    fprintf(stderr, "attn-bench: %s\n", err);
    exit(1);
  }
  return rc;
}

static double cpu_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static double wall_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int64_t B = 1, S = 128;
  int rounds = 50, threads = 1, only = 0;  /* 1: fused only, 2: unfused only */
  const char *dump = NULL; /* --dump PREFIX: the first round's outputs, raw */
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) B = atoll(argv[++i]);
    else if (strcmp(argv[i], "--seq") == 0 && i + 1 < argc) S = atoll(argv[++i]);
    else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) rounds = atoi(argv[++i]);
    else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc) dump = argv[++i];
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc && strcmp(argv[i + 1], "fused") == 0)
      only = 1, i++;
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc && strcmp(argv[i + 1], "unfused") == 0)
      only = 2, i++;
    else {
      fprintf(stderr, "usage: attn-bench [--batch B] [--seq S] [--rounds N] [--threads T] [--dump PREFIX] "
                      "[--only fused|unfused]\n");
      return 2;
    }
  }
  if (B < 1 || S < 1 || rounds < 1 || threads < 1 || B * S > (1 << 20)) {
    fprintf(stderr, "attn-bench: batch, seq, rounds and threads must be >= 1 (batch x seq <= 2^20)\n");
    return 2;
  }
  const char *kmsg = NULL;
  if (dynq__engine_init(getenv("DYNQ_KERNEL"), &kmsg) != 0) {
    fprintf(stderr, "attn-bench: %s\n", kmsg ? kmsg : "no usable kernel");
    return 1;
  }
  size_t n = (size_t)(B * S * DM);
  float *q = malloc(sizeof(float) * n), *k = malloc(sizeof(float) * n), *v = malloc(sizeof(float) * n);
  float *m = malloc(sizeof(float) * (size_t)(B * S));
  if (!q || !k || !v || !m) return 1;
  uint64_t r = 88172645463325252ull;
  float *all[3] = {q, k, v};
  for (int t = 0; t < 3; t++)
    for (size_t i = 0; i < n; i++) {
      r ^= r << 13, r ^= r >> 7, r ^= r << 17;
      all[t][i] = (float)((double)(r >> 11) / 9007199254740992.0 * 4.0 - 2.0);
    }
  for (int64_t b = 0; b < B; b++)  /* sequence b padded after S - 9 b tokens */
    for (int64_t j = 0; j < S; j++) m[b * S + j] = j < S - 9 * b ? 0.0f : -10000.0f;
  int64_t dx[4] = {B, S, H, DH}, dm[4] = {B, 1, 1, S};
  int64_t p0213[4] = {0, 2, 1, 3}, p0231[4] = {0, 2, 3, 1};
  dynq__tensor_t Q = {.dtype = DYNQ_DT_F32, .rank = 4, .data = q},
                 K = {.dtype = DYNQ_DT_F32, .rank = 4, .data = k},
                 V = {.dtype = DYNQ_DT_F32, .rank = 4, .data = v},
                 Mk = {.dtype = DYNQ_DT_F32, .rank = 4, .data = m},
                 Pq = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {4}, .data = p0213},
                 Pk = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {4}, .data = p0231};
  memcpy(Q.dims, dx, sizeof(dx));
  memcpy(K.dims, dx, sizeof(dx));
  memcpy(V.dims, dx, sizeof(dx));
  memcpy(Mk.dims, dm, sizeof(dm));
  dynq__attr_t at[2] = {{.name = "alpha", .type = DYNQ_ATTR_FLOAT, .f = 0.125f},
                        {.name = "int8", .type = DYNQ_ATTR_INT, .i = 1}};
  const dynq__tensor_t *fin[8] = {&Q, &K, &V, &Mk, &Pq, &Pk, &Pq, &Pq};
  double *tf = malloc(sizeof(double) * (size_t)rounds * 4);
  double *tu = tf + rounds, *wf = tf + 2 * rounds, *wu = tf + 3 * rounds;
  int same = 1;
  for (int i = 0; i < rounds; i++) {
    dynq__tensor_t y1 = {0}, s = {0}, p = {0}, y2 = {0};
    double c0 = cpu_us(), w0 = wall_us();
    if (only != 2) run(DYNQ_OP_ATTENTION, at, 2, 8, fin, &y1, threads);
    double c1 = cpu_us(), w1 = wall_us();
    if (only != 1) {
      const dynq__tensor_t *i1[5] = {&Q, &K, &Pq, &Pk, NULL};
      run(DYNQ_OP_STRIDED_MATMUL, at, 2, 5, i1, &s, threads);
      const dynq__tensor_t *im[2] = {&s, &Mk};
      run(DYNQ_OP_MASKED_SOFTMAX, NULL, 0, 2, im, &p, threads);
      const dynq__tensor_t *i2[5] = {&p, &V, NULL, &Pq, &Pq};
      run(DYNQ_OP_STRIDED_MATMUL, at + 1, 1, 5, i2, &y2, threads);
    }
    double c2 = cpu_us(), w2 = wall_us();
    if (only == 0) same = same && memcmp(y1.data, y2.data, dynq__tensor_nbytes(&y1)) == 0;
    if (dump != NULL && i == 0) {
      /* for a bit-for-bit A/B of two builds: the fused output, and the
       * unfused MaskedSoftmax and output */
      const dynq__tensor_t *d[3] = {&y1, &p, &y2};
      const char *sfx[3] = {"fused", "softmax", "unfused"};
      for (int j = 0; j < 3; j++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s.%s.f32", dump, sfx[j]);
        FILE *f = d[j]->data ? fopen(path, "wb") : NULL;
        if (f != NULL) {
          fwrite(d[j]->data, 1, dynq__tensor_nbytes(d[j]), f);
          fclose(f);
        }
      }
    }
    tf[i] = c1 - c0, tu[i] = c2 - c1, wf[i] = w1 - w0, wu[i] = w2 - w1;
    dynq__tensor_clear(&y1);
    dynq__tensor_clear(&s);
    dynq__tensor_clear(&p);
    dynq__tensor_clear(&y2);
  }
  for (int i = 0; i < 4; i++) qsort(tf + i * rounds, (size_t)rounds, sizeof(double), cmp_d);
  printf("attention B=%lld S=%lld heads %d x %d, kernel %s, %d thread(s), %d rounds (medians):\n"
         "  fused Attention     %9.1f us cpu %9.1f us wall\n"
         "  three nodes         %9.1f us cpu %9.1f us wall\n"
         "  ratio fused/three   %9.3f (cpu)\n"
         "  results %s\n",
         (long long)B, (long long)S, H, DH, dynq__kernel()->name, threads, rounds,
         tf[rounds / 2], wf[rounds / 2], tu[rounds / 2], wu[rounds / 2],
         tf[rounds / 2] / tu[rounds / 2],
         only ? "not compared (--only)" : same ? "bit-identical" : "DIFFER");
  free(tf);
  free(q), free(k), free(v), free(m);
  return same ? 0 : 1;
}
