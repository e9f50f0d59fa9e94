/*
 * Recurrent (LSTM, GRU) and convolution operators, FP32 and dynamically
 * quantized.  Table indexed by dynq_op_t, consulted by dynq__opdef(); the
 * ops themselves live in rnn.c and conv.c (inputs documented in rnn.h).
 */
#include "ops.h"
#include "rnn.h"

static const dynq__opdef_t rnn_optab[DYNQ_OP__COUNT] = {
  [DYNQ_OP_LSTM] = {"LSTM", 3, 8, 3, dynq__rnn_check, dynq__lstm_run},
  [DYNQ_OP_GRU] = {"GRU", 3, 6, 2, dynq__rnn_check, dynq__gru_run},
  [DYNQ_OP_CONV] = {"Conv", 2, 3, 1, dynq__conv_check, dynq__conv_run},
  [DYNQ_OP_QLSTM] = {"QLSTM", 7, 14, 3, dynq__rnn_check, dynq__qlstm_run},
  [DYNQ_OP_QGRU] = {"QGRU", 7, 12, 2, dynq__rnn_check, dynq__qgru_run},
  [DYNQ_OP_QCONV] = {"QConv", 4, 6, 1, dynq__conv_check, dynq__qconv_run},
};

const dynq__opdef_t *dynq__opdef_rnn(int op) {
  if (op <= 0 || op >= DYNQ_OP__COUNT || rnn_optab[op].run == NULL) return NULL;
  return &rnn_optab[op];
}
