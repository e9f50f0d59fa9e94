/*
 * rnn-bench: LSTM / GRU / Conv ops, INT8 against FP32, one thread.
 *
 *   rnn-bench [--op lstm|gru] [--input K] [--hidden H] [--seq T]
 *             [--batch B] [--iters N] [--kernel NAME] [--only int8|fp32] [--json]
 *
 * Runs the engine ops directly (the same run functions the executor
 * calls) on seeded random weights quantized per gate row, and prints the
 * median time per call of QLSTM/QGRU at INT8 and of LSTM/GRU at FP32
 * (OpenBLAS, one thread).  Defaults: LSTM 256 -> 512, seq 50, batch 1.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dynq/errors.h"
#include "graph.h"
#include "kernels/kernels.h"
#include "ops.h"

void openblas_set_num_threads(int n);
char *openblas_get_corename(void);

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(double scale) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)(((double)(rng >> 11) / 9007199254740992.0 * 2 - 1) * scale);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Per-row symmetric int8, packed; like dynq-quantize does for W and R. */
static void quantize(const float *w, int64_t N, int64_t K, int8_t *packed, int32_t *cs,
                     float *sc) {
  int8_t *q = malloc((size_t)(N * K));
  for (int64_t n = 0; n < N; n++) {
    float mx = 0;
    for (int64_t k = 0; k < K; k++) mx = fmaxf(mx, fabsf(w[n * K + k]));
    sc[n] = mx > 0 ? mx / 127.0f : 1.0f;
    cs[n] = 0;
    for (int64_t k = 0; k < K; k++) {
      q[n * K + k] = (int8_t)nearbyintf(w[n * K + k] / sc[n]);
      cs[n] += q[n * K + k];
    }
  }
  dynq__pack_weights(N, K, q, packed);
  free(q);
}

static double time_op(int op, const dynq__attr_t *at, int na, const dynq__tensor_t *const *in,
                      int n_in, int n_out, int precision, const dynq__kernel_t *kr, int iters) {
  int32_t idx[16];
  for (int i = 0; i < 16; i++) idx[i] = i;
  dynq__node_t node = {.op = op, .name = "bench", .n_in = n_in, .n_out = n_out, .in = idx,
                       .out = idx, .n_attr = na, .attr = at};
  char err[256];
  dynq__op_ctx_t c = {.node = &node, .kernel = kr, .precision = precision, .err = err,
                      .errlen = sizeof(err)};
  double *t = malloc(sizeof(double) * (size_t)iters);
  for (int i = -3; i < iters; i++) { /* 3 warm-up calls */
    dynq__tensor_t out[3];
    memset(out, 0, sizeof(out));
    double t0 = now();
    int rc = dynq__op_run1(NULL, &c, in, out);
    double t1 = now();
    if (rc != 0) {
      fprintf(stderr, "rnn-bench: %s\n", err);
      exit(1);
    }
    for (int k = 0; k < n_out; k++) dynq__tensor_clear(&out[k]);
    if (i >= 0) t[i] = t1 - t0;
  }
  qsort(t, (size_t)iters, sizeof(double), cmp_d);
  double med = t[iters / 2];
  free(t);
  return med;
}

int main(int argc, char **argv) {
  int gru = 0, json = 0, iters = 50, only = 0; /* only: 1 int8, 2 fp32 */
  int64_t K = 256, H = 512, T = 50, B = 1;
  const char *kname = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--json") == 0) json = 1;
    else if (strcmp(a, "--op") == 0 && v) gru = strcmp(argv[++i], "gru") == 0;
    else if (strcmp(a, "--input") == 0 && v) K = atoll(argv[++i]);
    else if (strcmp(a, "--hidden") == 0 && v) H = atoll(argv[++i]);
    else if (strcmp(a, "--seq") == 0 && v) T = atoll(argv[++i]);
    else if (strcmp(a, "--batch") == 0 && v) B = atoll(argv[++i]);
    else if (strcmp(a, "--iters") == 0 && v) iters = atoi(argv[++i]);
    else if (strcmp(a, "--kernel") == 0 && v) kname = argv[++i];
    else if (strcmp(a, "--only") == 0 && v) only = strcmp(argv[++i], "fp32") == 0 ? 2 : 1;
    else {
      fprintf(stderr, "usage: rnn-bench [--op lstm|gru] [--input K] [--hidden H] [--seq T] "
                      "[--batch B] [--iters N] [--kernel NAME] [--only int8|fp32] [--json]\n");
      return 2;
    }
  }
  if (K < 1 || H < 1 || T < 1 || B < 1 || iters < 1 || K > 65536 || H > 65536) {
    fprintf(stderr, "rnn-bench: sizes must be >= 1 (input and hidden <= 65536)\n");
    return 2;
  }
  const char *msg = NULL;
  if (dynq__kernels_init(kname, &msg) != 0) {
    fprintf(stderr, "rnn-bench: kernel '%s': %s\n", kname, msg);
    return 1;
  }
  const dynq__kernel_t *kr = dynq__kernel();
  openblas_set_num_threads(1);
  const int64_t GH = (gru ? 3 : 4) * H;
  float *X = malloc(sizeof(float) * (size_t)(T * B * K));
  float *W = malloc(sizeof(float) * (size_t)(GH * K)), *R = malloc(sizeof(float) * (size_t)(GH * H));
  float *Bi = malloc(sizeof(float) * (size_t)(2 * GH));
  for (int64_t i = 0; i < T * B * K; i++) X[i] = frand(1.0);
  for (int64_t i = 0; i < GH * K; i++) W[i] = frand(1.0 / sqrt((double)K));
  for (int64_t i = 0; i < GH * H; i++) R[i] = frand(1.0 / sqrt((double)H));
  for (int64_t i = 0; i < 2 * GH; i++) Bi[i] = frand(0.1);
  int64_t pw = dynq__round_up(GH, 16) * dynq__round_up(K, 4), pr = dynq__round_up(GH, 16) * dynq__round_up(H, 4);
  int8_t *Wq = dynq__aligned_alloc((size_t)pw), *Rq = dynq__aligned_alloc((size_t)pr);
  int32_t *Wc = malloc(sizeof(int32_t) * (size_t)GH), *Rc = malloc(sizeof(int32_t) * (size_t)GH);
  float *Ws = malloc(sizeof(float) * (size_t)GH), *Rs = malloc(sizeof(float) * (size_t)GH);
  quantize(W, GH, K, Wq, Wc, Ws);
  quantize(R, GH, H, Rq, Rc, Rs);

  dynq__tensor_t tX = {.dtype = DYNQ_DT_F32, .rank = 3, .dims = {T, B, K}, .data = X};
  dynq__tensor_t tW = {.dtype = DYNQ_DT_F32, .rank = 3, .dims = {1, GH, K}, .data = W};
  dynq__tensor_t tR = {.dtype = DYNQ_DT_F32, .rank = 3, .dims = {1, GH, H}, .data = R};
  dynq__tensor_t tB = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {1, 2 * GH}, .data = Bi};
  dynq__tensor_t tWq = {.dtype = DYNQ_DT_I8, .rank = 1, .dims = {pw}, .data = Wq};
  dynq__tensor_t tRq = {.dtype = DYNQ_DT_I8, .rank = 1, .dims = {pr}, .data = Rq};
  dynq__tensor_t tWc = {.dtype = DYNQ_DT_I32, .rank = 2, .dims = {1, GH}, .data = Wc};
  dynq__tensor_t tRc = {.dtype = DYNQ_DT_I32, .rank = 2, .dims = {1, GH}, .data = Rc};
  dynq__tensor_t tWs = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {1, GH}, .data = Ws};
  dynq__tensor_t tRs = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {1, GH}, .data = Rs};
  dynq__attr_t at[4] = {{.name = "hidden_size", .type = DYNQ_ATTR_INT, .i = H},
                        {.name = "input_size", .type = DYNQ_ATTR_INT, .i = K},
                        {.name = "linear_before_reset", .type = DYNQ_ATTR_INT, .i = gru},
                        {.name = "direction", .type = DYNQ_ATTR_STRING, .s = "forward"}};
  /* the executor passes NULL past n_in: so do we */
  const dynq__tensor_t *fin[16] = {&tX, &tW, &tR, &tB};
  const dynq__tensor_t *qin[16] = {&tX, &tWq, &tWc, &tWs, &tRq, &tRc, &tRs, &tB};
  int nout = gru ? 2 : 3;
  double tf = only == 1 ? 0.0 : time_op(gru ? DYNQ_OP_GRU : DYNQ_OP_LSTM, at, 4, fin, 4, nout,
                      DYNQ_PRECISION_FP32, kr, iters);
  double tq = only == 2 ? 0.0 : time_op(gru ? DYNQ_OP_QGRU : DYNQ_OP_QLSTM, at, 4, qin, 8, nout,
                      DYNQ_PRECISION_INT8, kr, iters);
  const char *op = gru ? "GRU" : "LSTM";
  if (json)
    printf("{\"op\": \"%s\", \"input\": %lld, \"hidden\": %lld, \"seq\": %lld, \"batch\": %lld, "
           "\"kernel\": \"%s\", \"openblas\": \"%s\", \"fp32_ms\": %.4f, \"int8_ms\": %.4f, "
           "\"speedup\": %.2f}\n",
           op, (long long)K, (long long)H, (long long)T, (long long)B, kr->name,
           openblas_get_corename(), tf * 1e3, tq * 1e3, tf / tq);
  else
    printf("%s %lld->%lld seq %lld batch %lld, one thread, kernel %s, OpenBLAS %s\n"
           "  FP32 (OpenBLAS)   %8.3f ms\n  INT8 (dynamic)    %8.3f ms   (%.2fx faster)\n",
           op, (long long)K, (long long)H, (long long)T, (long long)B, kr->name,
           openblas_get_corename(), tf * 1e3, tq * 1e3, tf / tq);
  free(X), free(W), free(R), free(Bi), free(Wc), free(Rc), free(Ws), free(Rs);
  dynq__aligned_free(Wq);
  dynq__aligned_free(Rq);
  return 0;
}
