/*
 * Matrix products: MatMul (numpy semantics) and Gemm in FP32 through
 * dynq__sgemm_ex, and QLINEAR, the dynamic INT8 linear layer (inputs in
 * graph.h).  The engine's MatMul may carry a layer epilogue that
 * dynq-quantize fuses into it (models/fuse.c): an optional third input,
 * a constant float32 bias [N] added to every row, and attr "act"
 * (DYNQ_ACT_*) applied after it, both on each tile as the GEMM finishes it.
 *
 * QLINEAR's INT8 path: per-row (or per-tensor) activation quantization
 * straight into the packed u8 layout, then qgemm with the fused epilogue,
 * split over c->threads threads (lib/parallel.h) when large: by rows, each
 * task quantizing its own, when there are many rows, else along N.  Its
 * FP32 path: the FP32 reference weights through OpenBLAS, same bias and
 * activation.
 */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "dynq/errors.h"
#include "kernels/sgemm.h"
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
  CHECK(act >= DYNQ_ACT_NONE && act <= DYNQ_ACT_GELU_TANH, "node '%s' (QLinear): unknown act %lld", nm, (long long)act);
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

/* Tasks of an INT8 GEMM: blocks of rows x blocks of whole 16-column
 * panels.  Output columns and rows are independent, so every block's
 * result is bit-identical to the same block computed in one call.
 *
 * An activation the kernels do not apply (GELU, sigmoid) runs on each
 * block right after its GEMM, while the block is in L2: a block of at
 * most QL_ROWS x QL_COLS floats (96 x 512: 192 KB, beside the ~400 KB of
 * weights the kernels keep hot).  Without one, the rows stay whole and
 * only the columns split (the weights are streamed once). */
#define QL_ROWS 96   /* a multiple of the kernels' 6-row tiles */
#define QL_COLS 512  /* a multiple of the 64-column (4-panel) tiles */

typedef struct split {
  const dynq__kernel_t *kr;
  const dynq__qgemm_args_t *q;
  int act;                  /* applied after the kernel (SIGMOID, GELU) */
  int64_t panels;
  int64_t rows, nrow;       /* rows per row block; row blocks */
  int64_t ncol;             /* column blocks (panel ranges) */
  int serial;               /* tasks run in order on this thread */
} split_t;

static void split_task(void *ctx, int64_t t) {
  const split_t *s = ctx;
  dynq__qgemm_args_t q = *s->q;
  /* column block outer: consecutive tasks share one block of weights */
  int64_t cb = t / s->nrow, rb = t % s->nrow;
  int64_t p0 = s->panels * cb / s->ncol, p1 = s->panels * (cb + 1) / s->ncol;
  int64_t m0 = rb * s->rows, m1 = m0 + s->rows < q.M ? m0 + s->rows : q.M;
  q.n0 = p0 * DYNQ_QGEMM_NR;
  q.n1 = p1 * DYNQ_QGEMM_NR < q.N ? p1 * DYNQ_QGEMM_NR : q.N;
  if (q.n0 >= q.n1 || m0 >= m1) return;
  /* In order on one thread, the last row block of a column block lets the
   * kernel prefetch the next column block's weights (its first rows would
   * otherwise wait for memory). */
  if (s->serial && rb == s->nrow - 1 && cb + 1 < s->ncol) {
    size_t pstride = (size_t)dynq__round_up(q.K, DYNQ_QGEMM_KG) * DYNQ_QGEMM_NR;
    int64_t p2 = s->panels * (cb + 2) / s->ncol;
    q.pf_next = q.B + (size_t)p1 * pstride;
    q.pf_next_bytes = (size_t)(p2 - p1) * pstride;
  }
  q.M = m1 - m0;
  q.A += (size_t)m0 * q.lda;
  q.a_scale += m0;
  q.a_zp += m0;
  q.C += (size_t)m0 * q.ldc;
  s->kr->qgemm(&q);
  dynq__act_apply(s->act, q.C, q.ldc, q.M, q.n0, q.n1);
}

/* Run q over [0, N), on up to `threads` threads when it is large enough;
 * activations are already quantized.  Returns 1 when it ran on more than
 * one thread. */
static int qgemm_split(const dynq__kernel_t *kr, const dynq__qgemm_args_t *q,
                       int act, int threads) {
  split_t s = {.kr = kr, .q = q, .act = act,
               .panels = (q->N + DYNQ_QGEMM_NR - 1) / DYNQ_QGEMM_NR, .rows = q->M, .nrow = 1,
               .ncol = 1};
  int par = threads > 1 && s.panels >= 2 && q->M * q->N * q->K >= SPLIT_MIN_MACS;
  if (act != DYNQ_ACT_NONE) {
    s.nrow = (q->M + QL_ROWS - 1) / QL_ROWS;
    s.rows = (q->M + s.nrow - 1) / s.nrow;
    s.rows = dynq__round_up(s.rows, 6);
    s.nrow = (q->M + s.rows - 1) / s.rows;
    s.ncol = (s.panels * DYNQ_QGEMM_NR + QL_COLS - 1) / QL_COLS;
  }
  if (par) {
    /* enough tasks that a thread the OS deschedules on a shared machine
     * holds up at most a small one (tasks are claimed dynamically) */
    int64_t want = (int64_t)threads * SPLIT_CHUNKS_PER_THREAD;
    if (s.nrow * s.ncol < want) s.ncol = (want + s.nrow - 1) / s.nrow;
    if (s.ncol > s.panels) s.ncol = s.panels;
  }
  if (!par || s.nrow * s.ncol < 2) {
    s.serial = 1;
    for (int64_t t = 0; t < s.nrow * s.ncol; t++) split_task(&s, t);
    return 0;
  }
  return dynq__parallel_for(threads, s.nrow * s.ncol, split_task, &s);
}

/* A constant weight matrix op(B) (K x N) packed for the FP32 GEMM, cached
 * in the node's state (*slot) by the node's first FP32 run: the FP32 path
 * keeps two copies of a layer's weights from then on (docs/NUMERICS.md).
 * Concurrent first runs may each pack; one compare-and-swap installs a
 * copy and the others free theirs.  NULL (run unpacked) when memory is
 * short or when the selected micro-kernel is the scalar reference
 * (OpenBLAS then serves unpacked). */
/* Memory for packed weights (freed by dynq__aligned_free), from 2 MiB up
 * on 2 MiB pages where the kernel has them for madvise(MADV_HUGEPAGE):
 * every product streams its packed B panel by panel, and with 4 KiB pages
 * the hardware prefetchers stop at each page boundary and each page costs
 * a TLB entry.  BERT-base's 72 layers with their own weights, alternated
 * layer by layer in one process (load 11-12): GEMM CPU time 0.98x at
 * M = 1024, 0.92x at M = 128.  Only a hint: without it, plain pages. */
#define HUGE_PAGE ((size_t)2 << 20)
static float *packed_alloc(size_t bytes) {
#ifdef MADV_HUGEPAGE
  if (bytes >= HUGE_PAGE) {
    void *p = NULL;
    if (posix_memalign(&p, HUGE_PAGE, bytes) != 0) return NULL;
    (void)madvise(p, bytes & ~(HUGE_PAGE - 1), MADV_HUGEPAGE);
    return p;
  }
#endif
  return dynq__aligned_alloc(bytes);
}

static const float *packed_b(_Atomic(float *) *slot, int tb, const float *B, int64_t ldb,
                             int64_t K, int64_t N) {
  float *bp = atomic_load_explicit(slot, memory_order_acquire);
  if (bp != NULL || dynq__sgemm_kernel() == &dynq__sgemm_ref || N < DYNQ_SGEMM_MIN_N) return bp;
  float *mine = packed_alloc(sizeof(float) * dynq__sgemm_packed_floats(N, K));
  if (mine == NULL) return NULL;
  dynq__sgemm_pack_b(tb, N, K, B, ldb, mine);
  if (atomic_compare_exchange_strong_explicit(slot, &bp, mine, memory_order_acq_rel,
                                              memory_order_acquire))
    return mine;
  dynq__aligned_free(mine);
  return bp;
}

/* The node's cache slot: the only part of a node's state that changes
 * after load (the executor hands ops a const state). */
static _Atomic(float *) *pack_slot(const dynq__op_ctx_t *c) {
  dynq__opstate_t *st = (dynq__opstate_t *)c->st;
  switch (c->node->op) {
  case DYNQ_OP_QLINEAR: return &st->qlinear.fp32_packed;
  case DYNQ_OP_GEMM: return st->gemm.const_b ? &st->gemm.fp32_packed : NULL;
  case DYNQ_OP_MATMUL: return st->matmul.const_b ? &st->matmul.fp32_packed : NULL;
  default: return NULL;
  }
}

void dynq__opstate_release(const dynq__node_t *n, dynq__opstate_t *st) {
  if (n == NULL || st == NULL) return;
  _Atomic(float *) *slot = NULL;
  switch (n->op) {
  case DYNQ_OP_QLINEAR: slot = &st->qlinear.fp32_packed; break;
  case DYNQ_OP_GEMM: slot = &st->gemm.fp32_packed; break;
  case DYNQ_OP_MATMUL: slot = &st->matmul.fp32_packed; break;
  case DYNQ_OP_DFT:
  case DYNQ_OP_STFT: dynq__spectral_release(st); return;
  default: return;
  }
  dynq__aligned_free(atomic_exchange(slot, NULL));
}

typedef struct qrows {
  const dynq__kernel_t *kr;
  int64_t M, K, Kp, chunks;
  const float *X;
  uint8_t *A;
  float *a_scale;
  int32_t *a_zp;
} qrows_t;

/* Per-row quantization is row by row: any split gives the same bytes. */
static void qrows_task(void *ctx, int64_t t) {
  const qrows_t *j = ctx;
  int64_t m0 = j->M * t / j->chunks, m1 = j->M * (t + 1) / j->chunks;
  dynq__quantize_rows(j->kr, m1 - m0, j->K, j->X + m0 * j->K, (size_t)j->K,
                      j->A + m0 * j->Kp, (size_t)j->Kp, 0, j->a_scale + m0, j->a_zp + m0);
}

/* Below this many activations the quantization runs on one thread. */
#define QUANT_SPLIT_MIN (INT64_C(1) << 16)

/* Many rows run by row blocks (else the quantization, then the GEMM by
 * columns, as qgemm_split does): each block's rows are quantized and
 * multiplied by all the weights while they are in L2, and on several
 * threads each thread keeps the rows it quantized and one parallel call
 * does both steps.  Each block streams all the weights (from L3, shared
 * by the cores), which pays off only when enough rows share them: blocks
 * of about ROWSPLIT_ROWS rows (BERT-base at batch 8 on one thread: 4-6 %
 * less QLinear CPU time than quantizing all 1024 rows first, blocks of
 * 96-192 rows alike), and never under ROWSPLIT_MIN_ROWS when split for
 * threads. */
#define ROWSPLIT_ROWS 128
#define ROWSPLIT_MIN_ROWS 48

typedef struct rowsplit {
  const dynq__kernel_t *kr;
  const dynq__qgemm_args_t *q;  /* the whole GEMM; A is filled by the tasks */
  const float *X;
  int act;                      /* applied after the kernel (SIGMOID, GELU) */
  int64_t tasks, cols;          /* tasks; columns per kernel call */
} rowsplit_t;

/* Rows [m0, m1): quantized (row by row, so any split gives the same
 * bytes), then times the weights by column blocks of s->cols, each
 * block's activation applied while it is in L2. */
static void rowsplit_task(void *ctx, int64_t t) {
  const rowsplit_t *s = ctx;
  dynq__qgemm_args_t q = *s->q;
  /* whole 6-row tiles, as evenly as they go: the halves two threads take
   * differ by at most a tile */
  const int64_t tiles = (q.M + 5) / 6;
  int64_t m0 = tiles * t / s->tasks * 6, m1 = tiles * (t + 1) / s->tasks * 6;
  if (m1 > q.M) m1 = q.M;
  if (m0 >= m1) return;
  uint8_t *A = (uint8_t *)q.A + (size_t)m0 * q.lda;
  dynq__quantize_rows(s->kr, m1 - m0, q.K, s->X + m0 * q.K, (size_t)q.K, A, q.lda, 0,
                      (float *)q.a_scale + m0, (int32_t *)q.a_zp + m0);
  q.M = m1 - m0;
  q.A = A;
  q.a_scale += m0;
  q.a_zp += m0;
  q.C += (size_t)m0 * q.ldc;
  for (int64_t n0 = 0; n0 < s->q->N; n0 += s->cols) {
    q.n0 = n0;
    q.n1 = n0 + s->cols < s->q->N ? n0 + s->cols : s->q->N;
    s->kr->qgemm(&q);
    dynq__act_apply(s->act, q.C, q.ldc, q.M, q.n0, q.n1);
  }
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
  /* both paths write every output element */
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, orank, od, 0)) != 0) return rc;
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
    c->splits += (uint64_t)dynq__sgemm_layer(c->threads, 0, 0, M, N, K, 1.0f, X, K, in[5]->data,
                                             N, packed_b(pack_slot(c), 0, in[5]->data, N, K, N),
                                             0.0f, Y, N, bias, act);
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
  const int post = act == q.act ? DYNQ_ACT_NONE : act;
  /* row blocks: about ROWSPLIT_ROWS rows, at least SPLIT_CHUNKS_PER_THREAD
   * per thread, a multiple of the threads (two threads take halves) */
  const int64_t th = c->threads > 1 ? c->threads : 1;
  int64_t row_tasks = (M + ROWSPLIT_ROWS - 1) / ROWSPLIT_ROWS;
  if (th > 1 && row_tasks < th * SPLIT_CHUNKS_PER_THREAD) row_tasks = th * SPLIT_CHUNKS_PER_THREAD;
  row_tasks = (row_tasks + th - 1) / th * th;
  if (!c->st->qlinear.per_tensor && row_tasks >= 2 && M >= row_tasks * ROWSPLIT_MIN_ROWS) {
    rowsplit_t j = {.kr = c->kernel, .q = &q, .X = X, .act = post, .tasks = row_tasks,
                    .cols = post != DYNQ_ACT_NONE ? QL_COLS : N};
    c->splits += (uint64_t)dynq__parallel_for(c->threads, row_tasks, rowsplit_task, &j);
    dynq__op_note_quant(c, M, K, N, a_scale, M);
  } else {
    if (!c->st->qlinear.per_tensor && c->threads > 1 && M > 1 && M * K >= QUANT_SPLIT_MIN) {
      qrows_t j = {.kr = c->kernel, .M = M, .K = K, .Kp = Kp, .X = X, .A = A,
                   .a_scale = a_scale, .a_zp = a_zp,
                   .chunks = M < (int64_t)c->threads * 2 ? M : (int64_t)c->threads * 2};
      dynq__parallel_for(c->threads, j.chunks, qrows_task, &j);
    } else {
      dynq__quantize_rows(c->kernel, M, K, X, (size_t)K, A, (size_t)Kp,
                          c->st->qlinear.per_tensor, a_scale, a_zp);
    }
    dynq__op_note_quant(c, M, K, N, a_scale, c->st->qlinear.per_tensor ? 1 : M);
    c->splits += (uint64_t)qgemm_split(c->kernel, &q, post, c->threads);
  }
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
  const dynq__tensor_t *bt = c->node->n_in > 2 ? in[2] : NULL;
  const float *bias = bt ? bt->data : NULL;
  const int act = c->st->matmul.act;
  if (bt != NULL && (bt->dtype != DYNQ_DT_F32 || dynq__tensor_numel(bt) != N))
    return dynq__op_fail(c, DYNQ_ESHAPE, "bias %s %s does not match the %lld output columns",
                         dynq__dtype_name(bt->dtype),
                         dynq__shape_str(x, sizeof(x), bt->rank, bt->dims), (long long)N);
  /* every path below writes every output element */
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, fr, fin, 0))) return rc;
  if (M == 0 || N == 0 || bc.n == 0) return 0;
  if (b->rank <= 2 || K == 0) {
    /* One B for every batch matrix of A: the batch is just more rows. */
    _Atomic(float *) *slot = K > 0 && b->rank <= 2 ? pack_slot(c) : NULL;
    const float *bp = slot ? packed_b(slot, 0, b->data, N, K, N) : NULL;
    c->splits += (uint64_t)dynq__sgemm_layer(c->threads, 0, 0, bc.n * M, N, K, 1.0f, a->data, K,
                                             b->data, N, bp, 0.0f, out->data, N, bias, act);
    return 0;
  }
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[2] = {0, 0};
  for (int64_t bi = 0; bi < bc.n; bi++, dynq__bcast_next(&bc, 2, cnt, off)) {
    float *C = (float *)out->data + bi * M * N;
    c->splits += (uint64_t)dynq__sgemm_layer(c->threads, 0, 0, M, N, K, 1.0f,
                                             (const float *)a->data + off[0] * M * K, K,
                                             (const float *)b->data + off[1] * K * N, N, NULL,
                                             0.0f, C, N, bias, act);
  }
  return 0;
}

int dynq__check_matmul(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  int64_t act = dynq__node_attr_i(n, "act", DYNQ_ACT_NONE);
  DYNQ_OP_CHECK(act >= DYNQ_ACT_NONE && act <= DYNQ_ACT_GELU_TANH, "unknown act %lld",
                (long long)act);
  if (n->n_in > 2 && n->in[2] >= 0) {
    const dynq__value_t *v = g && n->in[2] < g->n_values ? &g->values[n->in[2]] : NULL;
    DYNQ_OP_CHECK(v != NULL && v->data != NULL && v->dtype == DYNQ_DT_F32 && v->rank == 1,
                  "the bias (input 2) must be a constant float32 vector");
  }
  return 0;
}

/* Whether B is a constant matrix whose packed copy the node may cache. */
static int const_matrix(const dynq__graph_t *g, int v) {
  return g != NULL && v >= 0 && v < g->n_values && g->values[v].data != NULL &&
         g->values[v].dtype == DYNQ_DT_F32 && g->values[v].rank == 2;
}

int dynq__prep_matmul(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                      char *err, size_t errlen) {
  (void)err, (void)errlen;
  st->matmul.const_b = const_matrix(g, n->in[1]);
  st->matmul.act = (int)dynq__node_attr_i(n, "act", DYNQ_ACT_NONE);
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
  if (M > 0 && N > 0 && K > 0) {
    _Atomic(float *) *slot = pack_slot(c);
    const float *bp = slot ? packed_b(slot, tb, b->data, b->dims[1], K, N) : NULL;
    c->splits += (uint64_t)dynq__sgemm_ex(c->threads, ta, tb, M, N, K, alpha, a->data, a->dims[1],
                                          b->data, b->dims[1], bp, gbeta, Y, N);
  }
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
  (void)err, (void)errlen;
  st->gemm.ta = (int)dynq__node_attr_i(n, "transA", 0);
  st->gemm.tb = (int)dynq__node_attr_i(n, "transB", 0);
  st->gemm.alpha = dynq__node_attr_f(n, "alpha", 1.0f);
  st->gemm.beta = dynq__node_attr_f(n, "beta", 1.0f);
  st->gemm.const_b = const_matrix(g, n->in[1]);
  return 0;
}

/* ---- StridedMatMul: attention's products without transpose copies ----
 *
 *   Y = Transpose(MatMul(Transpose(A, perm_a), Transpose(B, perm_b)), perm_y) * alpha
 *
 * inputs A, B (float32, rank >= 2), then perm_a, perm_b, perm_y (int64
 * 1-D constants, each optional: -1 is the identity); attrs "alpha" and
 * "int8" (1: on the INT8 path both operands are quantized at run time,
 * per row of A and per column of B, and multiplied by the INT8 GEMM;
 * dynq-quantize --int8-attention, off by default).  The
 * importer (models/fuse.c) folds the Transposes that exporters put around
 * attention's Q K^T and P V products, and a scalar Div/Mul of the scores,
 * into this node.  Each operand is read in place through its strides:
 * every matrix whose last two logical axes include a unit stride goes to
 * the FP32 GEMM (B packed per product, A read in place) or OpenBLAS with
 * a leading dimension (and a transpose flag) instead of being copied; the
 * result is written straight into its permuted layout.
 * Batch axes broadcast as MatMul's. */

/* Input k's permutation (perm_a, perm_b, perm_y) of rank values:
 * dynq__smm_perm with the node's input k + 2 (absent: the identity). */
static int smm_perm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, int k, int rank,
                    int64_t *perm) {
  static const char *const what[] = {"perm_a", "perm_b", "perm_y"};
  const dynq__tensor_t *p = c->node->n_in > k + 2 ? in[k + 2] : NULL;
  return dynq__smm_perm(c, p, what[k], rank, perm);
}

int dynq__smm_perm(dynq__op_ctx_t *c, const dynq__tensor_t *p, const char *what, int rank,
                   int64_t *perm) {
  int np = rank, rc, seen[DYNQ_MAX_RANK] = {0};
  if (p != NULL) {
    if ((rc = dynq__op_read_ints(c, p, what, perm, DYNQ_MAX_RANK, &np))) return rc;
  } else {
    for (int d = 0; d < rank; d++) perm[d] = d;
  }
  if (np != rank)
    return dynq__op_fail(c, DYNQ_ESHAPE, "%s has %d values for rank %d", what, np, rank);
  for (int d = 0; d < rank; d++)
    if (perm[d] < 0 || perm[d] >= rank || seen[perm[d]]++)
      return dynq__op_fail(c, DYNQ_ESHAPE, "%s is not a permutation of 0..%d", what, rank - 1);
  return 0;
}

void dynq__smm_view(const dynq__tensor_t *t, const int64_t *perm, dynq__mview_t *v) {
  int64_t ps[DYNQ_MAX_RANK], e = 1;
  for (int d = t->rank - 1; d >= 0; d--) {
    ps[d] = e;
    e *= t->dims[d];
  }
  v->rank = t->rank;
  for (int d = 0; d < t->rank; d++) {
    v->dims[d] = t->dims[perm[d]];
    v->st[d] = ps[perm[d]];
  }
}

/* A rows x cols matrix with row stride rs and column stride cs as a BLAS
 * operand: row-major (trans 0) when its columns are unit-stride, else its
 * transpose (trans 1) when its rows are.  0 when neither (then copied). */
static int smm_blas(int64_t rows, int64_t cols, int64_t rs, int64_t cs, int *ret_t,
                    int64_t *ret_ld) {
  if (cols == 1 || cs == 1) {
    int64_t ld = rows == 1 ? cols : rs;
    if (ld >= cols && ld >= 1) {
      *ret_t = 0;
      *ret_ld = ld;
      return 1;
    }
  }
  if (rows == 1 || rs == 1) {
    int64_t ld = cols == 1 ? rows : cs;
    if (ld >= rows && ld >= 1) {
      *ret_t = 1;
      *ret_ld = ld;
      return 1;
    }
  }
  return 0;
}

typedef struct smm {
  int nb;                              /* batch axes of the result */
  int64_t bdims[DYNQ_MAX_RANK];        /* their sizes */
  int64_t bst[3][DYNQ_MAX_RANK];       /* A, B, Y element strides per batch axis (0: broadcast) */
  int64_t M, N, K;
  int64_t ars, acs, brs, bcs, yrs, ycs;  /* matrix row / column strides */
  const float *A, *B;
  float *Y;
  float alpha;
  const dynq__kernel_t *int8;          /* non-NULL: dynamic INT8 products (attr "int8") */
  int64_t count, chunks;               /* batch matrices; tasks */
  int failed;                          /* a task could not allocate */
} smm_t;

/* A strided matrix copied row-major (the rare layout BLAS cannot read). */
static float *smm_pack(const float *p, int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  float *t = malloc(sizeof(float) * (size_t)(rows * cols > 0 ? rows * cols : 1));
  if (t != NULL)
    for (int64_t r = 0; r < rows; r++)
      for (int64_t k = 0; k < cols; k++) t[r * cols + k] = p[r * rs + k * cs];
  return t;
}

/* One task's buffers for the INT8 products, allocated once for all its
 * matrices (each the size of one matrix's operands). */
typedef struct smm_scratch {
  uint8_t *aq;       /* M rows of Kp bytes */
  int8_t *bp;        /* packed B: Np * Kp bytes */
  float *as, *ws;    /* [M] row scales, [N] column scales (alpha folded in) */
  int32_t *azp, *cs; /* [M] row zero points, [N] column sums */
  float *pa;         /* A copied row-major when its rows are not unit-stride */
  float *fb;         /* FP32: the product's B packed for dynq__sgemm_ex */
} smm_scratch_t;

static void smm_scratch_free(smm_scratch_t *w) {
  dynq__aligned_free(w->aq);
  dynq__aligned_free(w->bp);
  free(w->as);
  free(w->ws);
  free(w->azp);
  free(w->cs);
  free(w->pa);
  dynq__aligned_free(w->fb);
  memset(w, 0, sizeof(*w));
}

static int smm_scratch_alloc(const smm_t *s, smm_scratch_t *w) {
  const int64_t M = s->M, N = s->N, K = s->K;
  const int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG), Np = dynq__round_up(N, DYNQ_QGEMM_NR);
  w->aq = dynq__aligned_alloc((size_t)(M * Kp));
  w->bp = dynq__aligned_alloc((size_t)(Np * Kp));
  w->as = malloc(sizeof(float) * (size_t)M);
  w->azp = malloc(sizeof(int32_t) * (size_t)M);
  w->ws = malloc(sizeof(float) * (size_t)N);
  w->cs = malloc(sizeof(int32_t) * (size_t)N);
  if (s->acs != 1 && K > 1) w->pa = malloc(sizeof(float) * (size_t)(M * K));
  if (!w->aq || !w->bp || !w->as || !w->azp || !w->ws || !w->cs ||
      (s->acs != 1 && K > 1 && !w->pa)) {
    smm_scratch_free(w);
    return -1;
  }
  return 0;
}

/* Dynamic INT8 act x act: A quantized per row (u8, the QLinear scheme),
 * B per column (symmetric int8, the weights' scheme) straight into the
 * packed layout from its strides (kernels.h), alpha folded into the
 * column scales, then the INT8 GEMM writing Y through its row stride.  Y
 * must have unit column stride. */
static void smm_one_int8(const smm_t *s, smm_scratch_t *w, const float *A, const float *B,
                         float *Y) {
  const int64_t M = s->M, N = s->N, K = s->K;
  const int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG);
  size_t lda = (size_t)(M == 1 ? K : s->ars);
  if (w->pa != NULL) {
    for (int64_t r = 0; r < M; r++)
      for (int64_t k = 0; k < K; k++) w->pa[r * K + k] = A[r * s->ars + k * s->acs];
    A = w->pa;
    lda = (size_t)K;
  } else if (K == 1) {
    lda = (size_t)(M == 1 ? 1 : s->ars);
  }
  dynq__quantize_rows(s->int8, M, K, A, lda, w->aq, (size_t)Kp, 0, w->as, w->azp);
  dynq__quantize_cols_packed(K, N, B, s->brs, s->bcs, s->alpha, w->bp, w->cs, w->ws);
  dynq__qgemm_args_t q = {
    .M = M, .N = N, .K = K, .A = w->aq, .lda = (size_t)Kp, .B = w->bp, .colsum = w->cs,
    .w_scale = w->ws, .a_scale = w->as, .a_zp = w->azp, .bias = NULL, .act = DYNQ_ACT_NONE,
    .C = Y, .ldc = (size_t)(M == 1 ? N : s->yrs), .n0 = 0, .n1 = N,
  };
  s->int8->qgemm(&q);
}

/* Whether the INT8 path takes these products (else FP32 through BLAS). */
static int smm_int8_ok(const smm_t *s) {
  return s->int8 != NULL && s->K > 0 && s->K <= DYNQ_QGEMM_MAX_K &&
         (s->N == 1 || s->ycs == 1) && (s->M == 1 || s->yrs >= s->N);
}

/* The FP32 GEMM's packed-B buffer of one task: B (N x K), or A's
 * transpose (M x K) when the result is computed transposed.  NULL on a
 * CPU without the FP32 micro-kernels (OpenBLAS then serves). */
static float *smm_fb_alloc(const smm_t *s) {
  if (dynq__sgemm_kernel() == &dynq__sgemm_ref || s->K == 0) return NULL;
  size_t n = dynq__sgemm_packed_floats(s->N, s->K), m = dynq__sgemm_packed_floats(s->M, s->K);
  return dynq__aligned_alloc(sizeof(float) * (n > m ? n : m));
}

/* Y = alpha * op(A) op(B): through the FP32 GEMM with B packed into the
 * task's buffer per product and alpha folded into it (OpenBLAS's sgemm
 * took 1.1-1.5x the time at attention's 128 x 64 x 128 and 128 x 128 x 64
 * per head), A read in place; else, for a transposed A, narrow results
 * or without the buffer, dynq__sgemm. */
static void smm_gemm(float *fb, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float *Y,
                     int64_t ldy) {
  if (fb != NULL && !ta && N >= DYNQ_SGEMM_MIN_N) {
    dynq__sgemm_pack_b_scaled(tb, N, K, B, ldb, alpha, fb);
    dynq__sgemm_ex(1, 0, tb, M, N, K, 1.0f, A, lda, B, ldb, fb, 0.0f, Y, ldy);
    return;
  }
  dynq__sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, 0.0f, Y, ldy);
}

static int smm_one(const smm_t *s, float *fb, const float *A, const float *B, float *Y) {
  int ta, tb, ty, rc = 0;
  int64_t lda, ldb, ldy;
  float *pa = NULL, *pb = NULL, *py = NULL;
  if (!smm_blas(s->M, s->K, s->ars, s->acs, &ta, &lda)) {
    if ((A = pa = smm_pack(A, s->M, s->K, s->ars, s->acs)) == NULL) goto oom;
    ta = 0, lda = s->K;
  }
  if (!smm_blas(s->K, s->N, s->brs, s->bcs, &tb, &ldb)) {
    if ((B = pb = smm_pack(B, s->K, s->N, s->brs, s->bcs)) == NULL) goto oom;
    tb = 0, ldb = s->N;
  }
  if (s->K == 0) {
    for (int64_t m = 0; m < s->M; m++)
      for (int64_t n = 0; n < s->N; n++) Y[m * s->yrs + n * s->ycs] = 0.0f;
  } else if (!smm_blas(s->M, s->N, s->yrs, s->ycs, &ty, &ldy)) {
    if ((py = malloc(sizeof(float) * (size_t)(s->M * s->N))) == NULL) goto oom;
    smm_gemm(fb, ta, tb, s->M, s->N, s->K, s->alpha, A, lda, B, ldb, py, s->N);
    for (int64_t m = 0; m < s->M; m++)
      for (int64_t n = 0; n < s->N; n++) Y[m * s->yrs + n * s->ycs] = py[m * s->N + n];
  } else if (ty == 0) {
    smm_gemm(fb, ta, tb, s->M, s->N, s->K, s->alpha, A, lda, B, ldb, Y, ldy);
  } else {  /* the result's rows are unit-stride: compute Y^T = B^T A^T */
    smm_gemm(fb, !tb, !ta, s->N, s->M, s->K, s->alpha, B, ldb, A, lda, Y, ldy);
  }
  goto out;
oom:
  rc = -1;
out:
  free(pa);
  free(pb);
  free(py);
  return rc;
}

static void smm_task(void *ctx, int64_t t) {
  smm_t *s = ctx;
  int64_t i0 = s->count * t / s->chunks, i1 = s->count * (t + 1) / s->chunks;
  smm_scratch_t w = {0};
  const int int8 = smm_int8_ok(s);
  if (int8 && smm_scratch_alloc(s, &w) != 0) {
    s->failed = 1;
    return;
  }
  if (!int8) w.fb = smm_fb_alloc(s);  /* NULL: OpenBLAS serves */
  for (int64_t i = i0; i < i1; i++) {
    int64_t off[3] = {0, 0, 0}, r = i;
    for (int d = s->nb - 1; d >= 0; d--) {
      int64_t q = r % s->bdims[d];
      r /= s->bdims[d];
      for (int k = 0; k < 3; k++) off[k] += q * s->bst[k][d];
    }
    if (int8)
      smm_one_int8(s, &w, s->A + off[0], s->B + off[1], s->Y + off[2]);
    else if (smm_one(s, w.fb, s->A + off[0], s->B + off[1], s->Y + off[2]) != 0)
      s->failed = 1;
  }
  smm_scratch_free(&w);
}

int dynq__run_smatmul(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                      dynq__tensor_t *out) {
  const dynq__tensor_t *a = in[0], *b = in[1];
  int rc;
  char x[128], y[128];
  if ((rc = dynq__op_need_f32(c, a, 0)) || (rc = dynq__op_need_f32(c, b, 1))) return rc;
  if (a->rank < 2 || b->rank < 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "operands must have rank >= 2: A %s, B %s",
                         dynq__shape_str(x, sizeof(x), a->rank, a->dims),
                         dynq__shape_str(y, sizeof(y), b->rank, b->dims));
  int64_t pa[DYNQ_MAX_RANK], pb[DYNQ_MAX_RANK], py[DYNQ_MAX_RANK];
  if ((rc = smm_perm(c, in, 0, a->rank, pa)) || (rc = smm_perm(c, in, 1, b->rank, pb))) return rc;
  dynq__mview_t va, vb;
  dynq__smm_view(a, pa, &va);
  dynq__smm_view(b, pb, &vb);
  smm_t s = {.M = va.dims[va.rank - 2], .K = va.dims[va.rank - 1], .N = vb.dims[vb.rank - 1],
             .ars = va.st[va.rank - 2], .acs = va.st[va.rank - 1],
             .brs = vb.st[vb.rank - 2], .bcs = vb.st[vb.rank - 1],
             .A = a->data, .B = b->data, .alpha = c->st->smatmul.alpha,
             .int8 = c->st->smatmul.int8 && c->precision == DYNQ_PRECISION_INT8 ? c->kernel : NULL};
  if (vb.dims[vb.rank - 2] != s.K)
    return dynq__op_fail(c, DYNQ_ESHAPE, "inner dimensions differ: A %s x B %s after the "
                         "operands' permutations",
                         dynq__shape_str(x, sizeof(x), va.rank, va.dims),
                         dynq__shape_str(y, sizeof(y), vb.rank, vb.dims));
  /* batch axes, aligned on the right, broadcast */
  s.nb = (va.rank > vb.rank ? va.rank : vb.rank) - 2;
  int64_t ld[DYNQ_MAX_RANK];
  for (int d = 0; d < s.nb; d++) {
    int ia = d - (s.nb - (va.rank - 2)), ib = d - (s.nb - (vb.rank - 2));
    int64_t da = ia >= 0 ? va.dims[ia] : 1, db = ib >= 0 ? vb.dims[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return dynq__op_fail(c, DYNQ_ESHAPE, "batch dimensions do not broadcast: A %s x B %s "
                           "after the operands' permutations",
                           dynq__shape_str(x, sizeof(x), va.rank, va.dims),
                           dynq__shape_str(y, sizeof(y), vb.rank, vb.dims));
    s.bdims[d] = ld[d] = da == 1 ? db : da;
    s.bst[0][d] = da == 1 ? 0 : va.st[ia];
    s.bst[1][d] = db == 1 ? 0 : vb.st[ib];
  }
  int ry = s.nb + 2;
  ld[ry - 2] = s.M;
  ld[ry - 1] = s.N;
  if ((rc = smm_perm(c, in, 2, ry, py))) return rc;
  /* the result's physical shape and, per logical axis, its stride */
  int64_t od[DYNQ_MAX_RANK], ost[DYNQ_MAX_RANK], lst[DYNQ_MAX_RANK], e = 1;
  for (int d = 0; d < ry; d++) od[d] = ld[py[d]];
  for (int d = ry - 1; d >= 0; d--) {
    ost[d] = e;
    e *= od[d];
  }
  for (int d = 0; d < ry; d++) lst[py[d]] = ost[d];
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, ry, od, 0))) return rc;
  for (int d = 0; d < s.nb; d++) s.bst[2][d] = lst[d];
  s.yrs = lst[ry - 2];
  s.ycs = lst[ry - 1];
  s.Y = out->data;
  s.count = 1;
  for (int d = 0; d < s.nb; d++) s.count *= s.bdims[d];
  if (s.count == 0 || s.M == 0 || s.N == 0) return 0;
  /* batch matrices split over threads when there is enough work (each
   * matrix's result is the same whichever thread computes it) */
  s.chunks = 1;
  if (c->threads > 1 && s.count > 1 && s.count * s.M * s.N * s.K >= SPLIT_MIN_MACS)
    s.chunks = s.count < (int64_t)c->threads * SPLIT_CHUNKS_PER_THREAD
                   ? s.count : (int64_t)c->threads * SPLIT_CHUNKS_PER_THREAD;
  if (s.chunks > 1)
    c->splits += (uint64_t)dynq__parallel_for(c->threads, s.chunks, smm_task, &s);
  else
    smm_task(&s, 0);
  if (s.failed) {
    dynq__tensor_clear(out);
    return dynq__op_fail(c, -ENOMEM, "out of memory");
  }
  return 0;
}

int dynq__prep_smatmul(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                       char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->smatmul.alpha = dynq__node_attr_f(n, "alpha", 1.0f);
  st->smatmul.int8 = dynq__node_attr_i(n, "int8", 0) != 0;
  return 0;
}
