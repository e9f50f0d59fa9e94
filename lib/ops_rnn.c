/*
 * Recurrent (LSTM, GRU) and convolution operators, FP32 and dynamically
 * quantized.  Table indexed by dynq_op_t, consulted by dynq__opdef().
 */
#include "ops.h"

static const dynq__opdef_t rnn_optab[DYNQ_OP__COUNT] = {
  [0] = {0},
};

const dynq__opdef_t *dynq__opdef_rnn(int op) {
  if (op <= 0 || op >= DYNQ_OP__COUNT || rnn_optab[op].run == NULL) return NULL;
  return &rnn_optab[op];
}
