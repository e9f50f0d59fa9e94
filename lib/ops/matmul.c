/*
 * Matrix products: MatMul (numpy semantics) and Gemm in FP32 through
 * OpenBLAS, and QLINEAR, the dynamic INT8 linear layer (inputs in
 * graph.h).
 *
 * QLINEAR's INT8 path: per-row (or per-tensor) activation quantization
 * straight into the packed u8 layout, then qgemm with the fused epilogue,
 * split along N over c->threads threads (lib/parallel.h) when large.  Its
 * FP32 path: the FP32 reference weights through OpenBLAS, same bias and
 * activation.
 */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "parallel.h"

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

int dynq__check_qlinear(const dynq__graph_t *g, const dynq__node_t *n,
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
 * large enough and threads > 1; activations are already quantized.
 * Returns 1 when it ran on more than one thread. */
static int qgemm_split(const dynq__kernel_t *kr, const dynq__qgemm_args_t *q,
                       int act, int threads) {
  split_t s = {.kr = kr, .q = q, .act = act,
               .panels = (q->N + DYNQ_QGEMM_NR - 1) / DYNQ_QGEMM_NR};
  if (threads <= 1 || s.panels < 2 || q->M * q->N * q->K < SPLIT_MIN_MACS) {
    kr->qgemm(q);
    dynq__act_apply(act, q->C, q->ldc, q->M, 0, q->N);
    return 0;
  }
  s.chunks = (int64_t)threads * SPLIT_CHUNKS_PER_THREAD;
  if (s.chunks > s.panels) s.chunks = s.panels;
  return dynq__parallel_for(threads, s.chunks, split_task, &s);
}

int dynq__run_qlinear(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                      dynq__tensor_t *out) {
  const dynq__node_t *n = c->node;
  const dynq__tensor_t *x = in[0];
  const int64_t K = c->st->qlinear.k, N = c->st->qlinear.n;
  const int ta = c->st->qlinear.ta;
  const int act = c->st->qlinear.act;
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
                      c->st->qlinear.per_tensor, a_scale, a_zp);
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
  dynq__op_note_quant(c, M, K, N, a_scale, c->st->qlinear.per_tensor ? 1 : M);
  c->splits += (uint64_t)qgemm_split(c->kernel, &q, act == q.act ? DYNQ_ACT_NONE : act, c->threads);
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

int dynq__prep_qlinear(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                       char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->qlinear.k = dynq__node_attr_i(n, "k", 0);
  st->qlinear.n = dynq__node_attr_i(n, "n", 0);
  st->qlinear.ta = (int)dynq__node_attr_i(n, "trans_a", 0);
  st->qlinear.act = (int)dynq__node_attr_i(n, "act", 0);
  st->qlinear.per_tensor = (int)dynq__node_attr_i(n, "per_tensor", 0);
  return 0;
}

/* ---- MatMul and Gemm (FP32) ---- */

int dynq__run_matmul(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                      dynq__tensor_t *out) {
  const dynq__tensor_t *a = in[0], *b = in[1];
  int rc;
  char x[128], y[128];
  if ((rc = dynq__op_need_f32(c, a, 0)) || (rc = dynq__op_need_f32(c, b, 1))) return rc;
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
  /* the batch dimensions (all but the last two) broadcast */
  dynq__bcast_t bc;
  const int ranks[2] = {ar - 2, br - 2};
  const int64_t *bdims[2] = {ad, bd};
  if (dynq__bcast_shapes(&bc, 2, ranks, bdims, NULL) != 0)
    return dynq__op_fail(c, DYNQ_ESHAPE, "batch dimensions do not broadcast: %s x %s",
                         dynq__shape_str(x, sizeof(x), a->rank, a->dims),
                         dynq__shape_str(y, sizeof(y), b->rank, b->dims));
  /* output rank drops promoted dims */
  int64_t fin[DYNQ_MAX_RANK];
  int fr = 0;
  for (int d = 0; d < r - 2; d++) fin[fr++] = bc.dims[d];
  if (a->rank > 1) fin[fr++] = M;
  if (b->rank > 1) fin[fr++] = N;
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, fr, fin, 1))) return rc;
  if (M == 0 || N == 0) return 0;
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[2] = {0, 0};
  for (int64_t bi = 0; bi < bc.n; bi++, dynq__bcast_next(&bc, 2, cnt, off)) {
    float *C = (float *)out->data + bi * M * N;
    if (K == 0)
      memset(C, 0, sizeof(float) * (size_t)(M * N));
    else
      dynq__sgemm(0, 0, M, N, K, 1.0f, (const float *)a->data + off[0] * M * K, K,
                  (const float *)b->data + off[1] * K * N, N, 0.0f, C, N);
  }
  return 0;
}

int dynq__run_gemm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                    dynq__tensor_t *out) {
  const dynq__tensor_t *a = in[0], *b = in[1], *cc = in[2];
  int rc;
  char x[128], y[128];
  if ((rc = dynq__op_need_f32(c, a, 0)) || (rc = dynq__op_need_f32(c, b, 1))) return rc;
  if (cc && (rc = dynq__op_need_f32(c, cc, 2))) return rc;
  if (a->rank != 2 || b->rank != 2) return dynq__op_fail(c, DYNQ_ESHAPE, "A and B must be 2-D");
  const int ta = c->st->gemm.ta, tb = c->st->gemm.tb;
  const float alpha = c->st->gemm.alpha, beta = c->st->gemm.beta;
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
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, 2, od, 1))) return rc;
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
    dynq__sgemm(ta, tb, M, N, K, alpha, a->data, a->dims[1], b->data, b->dims[1], gbeta, Y, N);
  return 0;
}


int dynq__check_gemm(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  for (int i = 0; i < 2; i++) {
    int64_t t = dynq__node_attr_i(n, i ? "transB" : "transA", 0);
    DYNQ_OP_CHECK(t == 0 || t == 1, "%s must be 0 or 1", i ? "transB" : "transA");
  }
  return 0;
}

int dynq__prep_gemm(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                    char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->gemm.ta = (int)dynq__node_attr_i(n, "transA", 0);
  st->gemm.tb = (int)dynq__node_attr_i(n, "transB", 0);
  st->gemm.alpha = dynq__node_attr_f(n, "alpha", 1.0f);
  st->gemm.beta = dynq__node_attr_f(n, "beta", 1.0f);
  return 0;
}
