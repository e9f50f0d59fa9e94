/*
 * Shape and graph operators that exporters emit (Shape, Gather, Slice,
 * Concat, If, ...).  Table indexed by dynq_op_t, consulted by dynq__opdef().
 */
#include "ops.h"

static const dynq__opdef_t graph_optab[DYNQ_OP__COUNT] = {
  [0] = {0},
};

const dynq__opdef_t *dynq__opdef_graph(int op) {
  if (op <= 0 || op >= DYNQ_OP__COUNT || graph_optab[op].run == NULL) return NULL;
  return &graph_optab[op];
}
