/*
 * QLINEAR: the dynamic INT8 linear layer (inputs documented in graph.h).
 *
 * INT8 path: per-row (or per-tensor) activation quantization straight into
 * the packed u8 layout, then qgemm with the fused epilogue, split along N
 * over c->threads threads (lib/parallel.h) when large.  FP32 path:
 * the FP32 reference weights through OpenBLAS, same bias and activation.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "ops.h"
#include "parallel.h"

void dynq__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb,
                 float beta, float *C, int64_t ldc);

#define CHECK(cond, ...)                          \
  do {                                            \
    if (!(cond)) {                                \
      snprintf(err, errlen, __VA_ARGS__);         \
      return DYNQ_EGRAPH;                         \
    }                                             \
  } while (0)

static int const_ok(const dynq__graph_t *g, int v, dynq_dtype_t dt, int rank,
                    int64_t d0, int64_t d1) {
  if (v < 0 || v >= g->n_values) return 0;
  const dynq__value_t *x = &g->values[v];
  if (x->data == NULL || x->dtype != dt || x->rank != rank) return 0;
  if (x->dims[0] != d0) return 0;
  if (rank == 2 && x->dims[1] != d1) return 0;
  return 1;
}

int dynq__qlinear_check(const dynq__graph_t *g, const dynq__node_t *n,
                        char *err, size_t errlen) {
  int64_t K = dynq__node_attr_i(n, "k", -1), N = dynq__node_attr_i(n, "n", -1);
  const char *nm = n->name;
  CHECK(K >= 1 && K <= DYNQ_QGEMM_MAX_K, "node '%s' (QLinear): k = %lld outside [1, %d]", nm, (long long)K, DYNQ_QGEMM_MAX_K);
  CHECK(N >= 1 && N <= DYNQ_MAX_ELEMS / 4, "node '%s' (QLinear): bad n = %lld", nm, (long long)N);
  int64_t packed = dynq__round_up(N, DYNQ_QGEMM_NR) * dynq__round_up(K, DYNQ_QGEMM_KG);
  CHECK(const_ok(g, n->in[1], DYNQ_DT_I8, 1, packed, 0), "node '%s' (QLinear): packed weights must be a constant int8 [%lld]", nm, (long long)packed);
  CHECK(const_ok(g, n->in[2], DYNQ_DT_I32, 1, N, 0), "node '%s' (QLinear): colsum must be a constant int32 [%lld]", nm, (long long)N);
  CHECK(const_ok(g, n->in[3], DYNQ_DT_F32, 1, N, 0), "node '%s' (QLinear): weight scales must be a constant float32 [%lld]", nm, (long long)N);
  CHECK(n->n_in < 5 || n->in[4] < 0 || const_ok(g, n->in[4], DYNQ_DT_F32, 1, N, 0), "node '%s' (QLinear): bias must be a constant float32 [%lld]", nm, (long long)N);
  CHECK(n->n_in < 6 || n->in[5] < 0 || const_ok(g, n->in[5], DYNQ_DT_F32, 2, K, N), "node '%s' (QLinear): reference weights must be a constant float32 [%lld, %lld]", nm, (long long)K, (long long)N);
  int64_t act = dynq__node_attr_i(n, "act", 0), pt = dynq__node_attr_i(n, "per_tensor", 0);
  int64_t ta = dynq__node_attr_i(n, "trans_a", 0);
  CHECK(act >= DYNQ_ACT_NONE && act <= DYNQ_ACT_GELU, "node '%s' (QLinear): unknown act %lld", nm, (long long)act);
  CHECK(pt == 0 || pt == 1, "node '%s' (QLinear): per_tensor must be 0 or 1", nm);
  CHECK(ta == 0 || ta == 1, "node '%s' (QLinear): trans_a must be 0 or 1", nm);
  return 0;
}

void dynq__act_apply(int act, float *C, size_t ldc, int64_t M, int64_t n0, int64_t n1) {
  for (int64_t m = 0; m < M; m++) {
    float *y = C + (size_t)m * ldc;
    switch (act) {
    case DYNQ_ACT_RELU:
      for (int64_t j = n0; j < n1; j++) y[j] = 0.0f > y[j] ? 0.0f : y[j];  /* NaN stays */
      break;
    case DYNQ_ACT_SIGMOID:
      for (int64_t j = n0; j < n1; j++) y[j] = 1.0f / (1.0f + expf(-y[j]));
      break;
    case DYNQ_ACT_GELU:
      for (int64_t j = n0; j < n1; j++)
        y[j] = 0.5f * y[j] * (1.0f + erff(y[j] * (float)M_SQRT1_2));
      break;
    default:
      break;
    }
  }
}

/* The kernels apply NONE and RELU themselves; others run right after. */
static int kernel_act(int act) { return act == DYNQ_ACT_RELU ? act : DYNQ_ACT_NONE; }

/* Below this many multiply-adds (M * N * K) a GEMM runs on one thread.
 * Measured with 2 threads (BENCHMARKS.md, Threads): 2^21 (32x256x256) 1.43x,
 * 2^20 1.24x, 768x768 at M=1 (2^19.2) 0.96x.  A helper that wakes late
 * costs little: the caller never waits for tasks nobody claimed. */
#define SPLIT_MIN_MACS (INT64_C(1) << 21)
/* Chunks per thread: a few, so a thread the OS deschedules on a shared
 * machine holds up at most one small chunk (tasks are claimed dynamically). */
#define SPLIT_CHUNKS_PER_THREAD 4

typedef struct split {
  const dynq__kernel_t *kr;
  const dynq__qgemm_args_t *q;
  int act;                  /* applied after the kernel (SIGMOID, GELU) */
  int64_t panels, chunks;
} split_t;

/* Columns are independent, so each chunk's result is bit-identical to the
 * same columns computed in one call. */
static void split_task(void *ctx, int64_t t) {
  const split_t *s = ctx;
  dynq__qgemm_args_t q = *s->q;
  int64_t p0 = s->panels * t / s->chunks, p1 = s->panels * (t + 1) / s->chunks;
  q.n0 = p0 * DYNQ_QGEMM_NR;
  q.n1 = p1 * DYNQ_QGEMM_NR < q.N ? p1 * DYNQ_QGEMM_NR : q.N;
  if (q.n0 < q.n1) {
    s->kr->qgemm(&q);
    dynq__act_apply(s->act, q.C, q.ldc, q.M, q.n0, q.n1);
  }
}

/* Run q over [0, N) split along N in whole 16-column panels when it is
 * large enough and threads > 1; activations are already quantized. */
static void qgemm_split(const dynq__kernel_t *kr, const dynq__qgemm_args_t *q,
                        int act, int threads) {
  split_t s = {.kr = kr, .q = q, .act = act,
               .panels = (q->N + DYNQ_QGEMM_NR - 1) / DYNQ_QGEMM_NR};
  if (threads <= 1 || s.panels < 2 || q->M * q->N * q->K < SPLIT_MIN_MACS) {
    kr->qgemm(q);
    dynq__act_apply(act, q->C, q->ldc, q->M, 0, q->N);
    return;
  }
  s.chunks = (int64_t)threads * SPLIT_CHUNKS_PER_THREAD;
  if (s.chunks > s.panels) s.chunks = s.panels;
  dynq__parallel_for(threads, s.chunks, split_task, &s);
}

int dynq__qlinear_run(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                      dynq__tensor_t *out) {
  const dynq__node_t *n = c->node;
  const dynq__tensor_t *x = in[0];
  const int64_t K = dynq__node_attr_i(n, "k", 0), N = dynq__node_attr_i(n, "n", 0);
  const int ta = (int)dynq__node_attr_i(n, "trans_a", 0);
  const int act = (int)dynq__node_attr_i(n, "act", 0);
  const float *bias = n->n_in > 4 && in[4] ? in[4]->data : NULL;
  char s[128];
  int rc = 0;
  if (x->dtype != DYNQ_DT_F32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "input is %s, expected float32", dynq__dtype_name(x->dtype));
  if (ta ? x->rank != 2 || x->dims[0] != K : x->rank < 1 || x->dims[x->rank - 1] != K)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input %s does not have %lld features%s",
                         dynq__shape_str(s, sizeof(s), x->rank, x->dims), (long long)K,
                         ta ? " in dimension 0 (transA)" : " in its last dimension");
  int64_t M = ta ? x->dims[1] : (K ? dynq__tensor_numel(x) / K : 0);
  int64_t od[DYNQ_MAX_RANK];
  int orank = x->rank;
  if (ta) {
    od[0] = M;
    od[1] = N;
  } else {
    memcpy(od, x->dims, sizeof(int64_t) * (size_t)orank);
    od[orank - 1] = N;
  }
  if ((rc = dynq__tensor_alloc(out, DYNQ_DT_F32, orank, od)) != 0)
    return dynq__op_fail(c, rc, rc == DYNQ_ELIMIT ? "output too large" : "out of memory");
  if (M == 0) return 0;

  const float *X = x->data;
  float *xt = NULL;
  if (ta) {  /* [K, M] -> [M, K] */
    xt = malloc(sizeof(float) * (size_t)(M * K));
    if (xt == NULL) goto oom;
    for (int64_t k = 0; k < K; k++)
      for (int64_t m = 0; m < M; m++) xt[m * K + k] = X[k * M + m];
    X = xt;
  }
  float *Y = out->data;

  if (c->precision == DYNQ_PRECISION_FP32) {
    if (n->n_in < 6 || in[5] == NULL) {
      free(xt);
      dynq__tensor_clear(out);
      return dynq__op_fail(c, DYNQ_ENOREF, "model has no FP32 reference weights (quantized with --no-reference)");
    }
    dynq__sgemm(0, 0, M, N, K, 1.0f, X, K, in[5]->data, N, 0.0f, Y, N);
    for (int64_t m = 0; m < M; m++) {
      float *y = Y + m * N;
      if (bias)
        for (int64_t j = 0; j < N; j++) y[j] += bias[j];
    }
    dynq__act_apply(act, Y, (size_t)N, M, 0, N);
    free(xt);
    return 0;
  }

  const int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG);
  uint8_t *A = dynq__aligned_alloc((size_t)(M * Kp));
  float *a_scale = malloc(sizeof(float) * (size_t)M);
  int32_t *a_zp = malloc(sizeof(int32_t) * (size_t)M);
  if (A == NULL || a_scale == NULL || a_zp == NULL) {
    dynq__aligned_free(A);
    free(a_scale);
    free(a_zp);
    goto oom;
  }
  dynq__quantize_rows(c->kernel, M, K, X, (size_t)K, A, (size_t)Kp,
                      (int)dynq__node_attr_i(n, "per_tensor", 0), a_scale, a_zp);
  dynq__qgemm_args_t q = {
    .M = M, .N = N, .K = K,
    .A = A, .lda = (size_t)Kp,
    .B = in[1]->data,
    .colsum = in[2]->data,
    .w_scale = in[3]->data,
    .a_scale = a_scale, .a_zp = a_zp,
    .bias = bias, .act = kernel_act(act),
    .C = Y, .ldc = (size_t)N,
    .n0 = 0, .n1 = N,
  };
  qgemm_split(c->kernel, &q, act == q.act ? DYNQ_ACT_NONE : act, c->threads);
  dynq__aligned_free(A);
  free(a_scale);
  free(a_zp);
  free(xt);
  return 0;
oom:
  free(xt);
  dynq__tensor_clear(out);
  return dynq__op_fail(c, -ENOMEM, "out of memory");
}
