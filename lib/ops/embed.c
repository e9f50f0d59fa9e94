/*
 * QGather: an embedding table (Gather on axis 0 of a constant [V, D]
 * float table) stored as int8 rows with one symmetric scale per row, 4x
 * smaller than FP32: row v is scale[v] * q[v][0..D).  The FP32 path reads
 * the reference table when the file has it (dynq-quantize without
 * --no-reference), else the dequantized rows.
 *
 * Inputs: 0 indices (int64 or int32, any shape), 1 q int8 [V, D],
 * 2 scale float32 [V], 3 reference float32 [V, D] (optional).  Output:
 * float32 [indices..., D].  An index outside [-V, V) is an error naming
 * the value (negative indices count from the end, as ONNX Gather).
 */
#include "ops.h"

#include <stdio.h>
#include <string.h>

#include "dynq/errors.h"
#include "parallel.h"

/* The constant behind input k of n, or NULL. */
static const dynq__value_t *const_in(const dynq__graph_t *g, const dynq__node_t *n, int k) {
  if (g == NULL || k >= n->n_in || n->in[k] < 0 || n->in[k] >= g->n_values) return NULL;
  const dynq__value_t *v = &g->values[n->in[k]];
  return v->data ? v : NULL;
}

int dynq__check_qgather(const dynq__graph_t *g, const dynq__node_t *n, char *err,
                        size_t errlen) {
  const dynq__value_t *q = const_in(g, n, 1), *s = const_in(g, n, 2), *r = const_in(g, n, 3);
  DYNQ_OP_CHECK(q && q->dtype == DYNQ_DT_I8 && q->rank == 2, "the table must be a constant int8 [V, D]");
  DYNQ_OP_CHECK(s && s->dtype == DYNQ_DT_F32 && s->rank == 1 && s->dims[0] == q->dims[0],
                "the row scales must be a constant float32 [%lld]", (long long)q->dims[0]);
  if (n->n_in > 3 && n->in[3] >= 0)
    DYNQ_OP_CHECK(r && r->dtype == DYNQ_DT_F32 && r->rank == 2 && r->dims[0] == q->dims[0] &&
                      r->dims[1] == q->dims[1],
                  "the reference table must be a constant float32 [%lld, %lld]",
                  (long long)q->dims[0], (long long)q->dims[1]);
  return 0;
}

/* Below this many output values the rows are made on one thread. */
#define QGATHER_SPLIT_MIN (INT64_C(1) << 16)
#define QGATHER_CHUNKS_PER_THREAD 4

typedef struct qg {
  const dynq__tensor_t *idx;
  const int8_t *q;
  const float *scale, *ref;  /* ref: the FP32 table, or NULL (dequantize) */
  float *y;
  int64_t V, D, n, chunks;
} qg_t;

/* Rows [i0, i1) of the output; the indices were checked. */
static void qg_task(void *ctx, int64_t t) {
  const qg_t *j = ctx;
  int64_t i0 = j->n * t / j->chunks, i1 = j->n * (t + 1) / j->chunks;
  for (int64_t i = i0; i < i1; i++) {
    int64_t v = dynq__load_i(j->idx->data, j->idx->dtype, i);
    if (v < 0) v += j->V;
    float *y = j->y + i * j->D;
    if (j->ref) {
      memcpy(y, j->ref + v * j->D, sizeof(float) * (size_t)j->D);
    } else {
      const int8_t *r = j->q + v * j->D;
      float s = j->scale[v];
      for (int64_t k = 0; k < j->D; k++) y[k] = s * (float)r[k];
    }
  }
}

int dynq__run_qgather(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  const dynq__tensor_t *idx = in[0], *q = in[1], *sc = in[2], *ref = in[3];
  int rc;
  if (idx->dtype != DYNQ_DT_I64 && idx->dtype != DYNQ_DT_I32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "indices are %s, expected int64 or int32",
                         dynq__dtype_name(idx->dtype));
  if (idx->rank + 1 > DYNQ_MAX_RANK)
    return dynq__op_fail(c, DYNQ_ESHAPE, "indices of rank %d: the output exceeds rank %d",
                         idx->rank, DYNQ_MAX_RANK);
  int64_t V = q->dims[0], D = q->dims[1], od[DYNQ_MAX_RANK];
  for (int d = 0; d < idx->rank; d++) od[d] = idx->dims[d];
  od[idx->rank] = D;
  int64_t n = dynq__tensor_numel(idx);
  for (int64_t i = 0; i < n; i++) {  /* every index checked before any row is made */
    int64_t v = dynq__load_i(idx->data, idx->dtype, i);
    if (v < -V || v >= V)
      return dynq__op_fail(c, DYNQ_ESHAPE, "index %lld outside [-%lld, %lld)", (long long)v,
                           (long long)V, (long long)V);
  }
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, idx->rank + 1, od, 0))) return rc;
  qg_t j = {.idx = idx, .q = q->data, .scale = sc->data, .y = out->data, .V = V, .D = D, .n = n,
            .ref = c->precision == DYNQ_PRECISION_FP32 && ref ? ref->data : NULL, .chunks = 1};
  if (c->threads > 1 && n > 1 && n * D >= QGATHER_SPLIT_MIN) {
    j.chunks = (int64_t)c->threads * QGATHER_CHUNKS_PER_THREAD;
    if (j.chunks > n) j.chunks = n;
    c->splits += (uint64_t)dynq__parallel_for(c->threads, j.chunks, qg_task, &j);
  } else {
    qg_task(&j, 0);
  }
  return 0;
}
