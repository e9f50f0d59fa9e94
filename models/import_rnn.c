/*
 * Importer for recurrent and convolution nodes (LSTM, GRU, Conv).
 * Placeholder until the recurrent/convolution converters land: each
 * refuses the node by name, so models holding them fail cleanly.
 */
#include "import.h"

const char *dynq__import_rnn_check(conv_t *c, const Onnx__NodeProto *n) {
  (void)c;
  (void)n;
  return "unsupported (not yet implemented)";
}

static int not_yet(const char *op, const char *nname) {
  dynq__imp_errorf("node '%s' (op %s): unsupported (not yet implemented)", nname, op);
  return -1;
}

int dynq__import_lstm(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  (void)c;
  (void)n;
  return not_yet("LSTM", nname);
}

int dynq__import_gru(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  (void)c;
  (void)n;
  return not_yet("GRU", nname);
}

int dynq__import_conv(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  (void)c;
  (void)n;
  return not_yet("Conv", nname);
}
