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
 * Invariants after dynq__graph_validate() (the loader always runs it):
 *  - every index is in range; -1 only where an op allows an omitted input;
 *  - each value is written by at most one node, is never written if it is
 *    a constant or a graph input, and is written before it is read;
 *  - every graph output is written or is an input/constant;
 *  - op arity, attribute types and constant dtypes match the op table.
 */
#ifndef DYNQ_GRAPH_H
#define DYNQ_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

/* Op codes are part of the file format: never renumber. */
#define DYNQ_OPS(X)             \
  X(QLINEAR, 1, "QLinear")      \
  X(MATMUL, 2, "MatMul")        \
  X(GEMM, 3, "Gemm")            \
  X(ADD, 4, "Add")              \
  X(MUL, 5, "Mul")              \
  X(RELU, 6, "Relu")            \
  X(SIGMOID, 7, "Sigmoid")      \
  X(TANH, 8, "Tanh")            \
  X(SOFTMAX, 9, "Softmax")      \
  X(FLATTEN, 10, "Flatten")     \
  X(RESHAPE, 11, "Reshape")     \
  X(SUB, 12, "Sub")             \
  X(DIV, 13, "Div")             \
  X(IDENTITY, 14, "Identity")   \
  /* shape and graph ops real exporters emit (issue 4) */ \
  X(CONSTANT_OF_SHAPE, 15, "ConstantOfShape") \
  X(SHAPE, 16, "Shape")         \
  X(SIZE, 17, "Size")           \
  X(GATHER, 18, "Gather")       \
  X(SLICE, 19, "Slice")         \
  X(CONCAT, 20, "Concat")       \
  X(SQUEEZE, 21, "Squeeze")     \
  X(UNSQUEEZE, 22, "Unsqueeze") \
  X(TRANSPOSE, 23, "Transpose") \
  X(CAST, 24, "Cast")           \
  X(EQUAL, 25, "Equal")         \
  X(NOT, 26, "Not")             \
  X(WHERE, 27, "Where")         \
  X(POW, 28, "Pow")             \
  X(SQRT, 29, "Sqrt")           \
  X(NEG, 30, "Neg")             \
  X(LOG, 31, "Log")             \
  X(EXP, 32, "Exp")             \
  X(REDUCE_MEAN, 33, "ReduceMean") \
  X(REDUCE_SUM, 34, "ReduceSum") \
  X(PAD, 35, "Pad")             \
  X(CLIP, 36, "Clip")           \
  X(EXPAND, 37, "Expand")       \
  X(IF, 38, "If")               \
  X(LESS, 39, "Less")           \
  X(GREATER, 40, "Greater")     \
  X(AND, 41, "And")             \
  X(OR, 42, "Or")               \
  X(RANGE, 43, "Range")         \
  X(ABS, 44, "Abs")             \
  /* PHI(flag, then_v, else_v): the If branch result (lib/ops_graph.c) */ \
  X(PHI, 45, "Phi")             \
  /* 46..49 reserved for more graph ops */ \
  /* recurrent and convolution (issue 4) */ \
  X(LSTM, 50, "LSTM")           \
  X(GRU, 51, "GRU")             \
  X(CONV, 52, "Conv")           \
  X(QLSTM, 53, "QLSTM")         \
  X(QGRU, 54, "QGRU")           \
  X(QCONV, 55, "QConv")
  /* 56..59 reserved for recurrent/conv variants */

typedef enum dynq_op {
  DYNQ_OP_INVALID = 0,
#define DYNQ__OP_ENUM(name, code, str) DYNQ_OP_##name = code,
  DYNQ_OPS(DYNQ__OP_ENUM)
#undef DYNQ__OP_ENUM
  DYNQ_OP__COUNT
} dynq_op_t;

const char *dynq__op_name(int op); /* "MatMul"; "?" when unknown */
int dynq__op_from_name(const char *s); /* DYNQ_OP_INVALID when unknown */

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

/* Check every invariant above; on failure returns DYNQ_EGRAPH (or
 * DYNQ_EUNSUPPORTED for an unknown op) with a message naming the node. */
int dynq__graph_validate(const dynq__graph_t *g, char *err, size_t errlen);

/* Write g as a .dynq v1 file (docs/FORMAT.md) atomically: to path.tmp,
 * fsync, rename.  Returns 0 or -errno/DYNQ_E* with a message. */
int dynq__graph_write(const dynq__graph_t *g, const char *path, char *err,
                      size_t errlen);

#endif
