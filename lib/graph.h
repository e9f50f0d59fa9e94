/*
 * The graph IR: what a .dynq file holds and what the executor runs.
 *
 * A graph is a table of values (edges; a value with data is a constant),
 * and nodes in topological order that read and write values by index.
 * The same struct is built in memory by dynq-quantize (then written with
 * dynq__graph_write) and produced by the loader pointing into the mmap
 * (then every pointer is into the read-only mapping or the model's own
 * arrays, and nothing in it is ever written).
 *
 * Invariants after dynq__graph_validate() (validate.h; the loader always
 * runs it):
 *  - every index is in range; -1 only where an op allows an omitted input;
 *  - each value is written by at most one node, is never written if it is
 *    a constant or a graph input, and is written before it is read;
 *  - every graph output is written or is an input/constant;
 *  - op arity, attribute types and constant dtypes match the op registry
 *    (lib/ops/ops.h; op codes are defined there).
 */
#ifndef DYNQ_GRAPH_H
#define DYNQ_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

/*
 * QLINEAR (dynamic INT8 linear layer), inputs by position:
 *   0 X      float32 [..., K] (or [K, M] when attr trans_a = 1, rank 2)
 *   1 Wq     int8 packed, 1-D of round_up(N,16) * round_up(K,4) bytes
 *   2 colsum int32 [N]
 *   3 wscale float32 [N]     (Gemm alpha already folded in)
 *   4 bias   float32 [N]     optional (-1); Gemm beta already folded in
 *   5 Wref   float32 [K, N]  optional (-1): FP32 reference weights (alpha
 *            folded), used when a request asks for precision "fp32"
 * output: Y float32 [..., N]
 * attrs: "k", "n" (ints, required), "per_tensor" (0/1), "act" (DYNQ_ACT_*),
 *        "trans_a" (0/1).
 */

enum { DYNQ_ATTR_INT = 1, DYNQ_ATTR_FLOAT = 2, DYNQ_ATTR_STRING = 3,
       DYNQ_ATTR_INTS = 4 /* value index of a constant int64 1-D tensor */ };

typedef struct dynq__attr {
  const char *name;
  int type;          /* DYNQ_ATTR_* */
  int64_t i;         /* INT; for INTS: the value index */
  float f;           /* FLOAT */
  const char *s;     /* STRING */
} dynq__attr_t;

typedef struct dynq__value {
  const char *name;
  dynq_dtype_t dtype;
  int rank;                    /* -1: unknown */
  int64_t dims[DYNQ_MAX_RANK]; /* -1: symbolic / decided per request */
  const void *data;            /* non-NULL: a constant of exactly `dims` */
  size_t nbytes;               /* of data */
} dynq__value_t;

typedef struct dynq__node {
  int op;                 /* dynq_op_t */
  const char *name;       /* from the source graph, for error messages */
  int n_in, n_out;
  const int32_t *in;      /* value indices, -1 = omitted optional input */
  const int32_t *out;
  int n_attr;
  const dynq__attr_t *attr;
} dynq__node_t;

typedef struct dynq__graph {
  int n_values;
  const dynq__value_t *values;
  int n_nodes;
  const dynq__node_t *nodes;
  int n_inputs;
  const int32_t *inputs;   /* value indices of the graph inputs */
  int n_outputs;
  const int32_t *outputs;
  int n_state;             /* streaming state pairs declared at import */
  const int32_t *state;    /* [2 * n_state]: (graph input value, graph output
                              value): the output feeds the input on the next
                              call of a session (dynq-quantize --state IN=OUT) */
  const char *producer;    /* free text, e.g. "dynq-quantize 0.1 from x.onnx" */
  uint64_t source_hash;    /* FNV-1a 64 of the source file, 0 if none */
} dynq__graph_t;

/* Attribute lookup; defaults when absent. */
const dynq__attr_t *dynq__node_attr(const dynq__node_t *n, const char *name);
int64_t dynq__node_attr_i(const dynq__node_t *n, const char *name, int64_t dflt);
float dynq__node_attr_f(const dynq__node_t *n, const char *name, float dflt);

/* Write g as a .dynq v1 file (docs/FORMAT.md) atomically: to path.tmp,
 * fsync, rename.  Returns 0 or -errno/DYNQ_E* with a message. */
int dynq__graph_write(const dynq__graph_t *g, const char *path, char *err,
                      size_t errlen);

#endif
