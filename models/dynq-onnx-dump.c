/*
 * dynq-onnx-dump: a test helper (not installed) that reads ONNX protobuf
 * files for the conformance suite, so the tests need no protobuf code:
 *
 *   dynq-onnx-dump ops MODEL.onnx      one line per node ("op TYPE", also
 *                                      inside If branches), per graph input
 *                                      ("input NAME") and output ("output NAME")
 *   dynq-onnx-dump tensor X.pb OUT     a TensorProto as: int32 dtype (dynq
 *                                      code; ONNX bool -> uint8; float16,
 *                                      bfloat16, float64 -> float32), int32 rank,
 *                                      int64 dims[rank], raw little-endian data
 *
 * Exit 0 on success, 3 for a dtype dynq does not carry (message on
 * stderr), 1 for other errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"

static void list_graph(const Onnx__GraphProto *g, int top) {
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *n = g->node[i];
    printf("op %s\n", n->op_type ? n->op_type : "");
    for (size_t a = 0; a < n->n_attribute; a++)
      if (n->attribute[a]->g != NULL) list_graph(n->attribute[a]->g, 0);
  }
  if (!top) return;
  for (size_t i = 0; i < g->n_input; i++) {
    int init = 0;
    for (size_t j = 0; j < g->n_initializer; j++)
      init |= g->input[i]->name && g->initializer[j]->name &&
              strcmp(g->input[i]->name, g->initializer[j]->name) == 0;
    if (!init) printf("input %s\n", g->input[i]->name ? g->input[i]->name : "");
  }
  for (size_t i = 0; i < g->n_output; i++)
    printf("output %s\n", g->output[i]->name ? g->output[i]->name : "");
}

int main(int argc, char **argv) {
  dynq__imp_progname = "dynq-onnx-dump";
  if (argc < 3 || (strcmp(argv[1], "ops") != 0 && strcmp(argv[1], "tensor") != 0) ||
      (strcmp(argv[1], "tensor") == 0 && argc != 4)) {
    fprintf(stderr, "usage: dynq-onnx-dump ops MODEL.onnx | tensor X.pb OUT\n");
    return 1;
  }
  uint8_t *buf = NULL;
  size_t len = 0;
  if (dynq__imp_read_file(argv[2], &buf, &len) != 0) return 1;
  int rc = 1;
  if (strcmp(argv[1], "ops") == 0) {
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    if (m == NULL || m->graph == NULL) {
      fprintf(stderr, "dynq-onnx-dump: %s: not an ONNX model\n", argv[2]);
    } else {
      list_graph(m->graph, 1);
      rc = 0;
    }
    if (m != NULL) onnx__model_proto__free_unpacked(m, NULL);
    free(buf);
    return rc;
  }
  Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, len, buf);
  dynq__builder_t b;
  memset(&b, 0, sizeof(b));
  FILE *f = NULL;
  if (t == NULL) {
    fprintf(stderr, "dynq-onnx-dump: %s: not a TensorProto\n", argv[2]);
    goto out;
  }
  /* float16, bfloat16 and float64 come out as float32, as the importer
   * widens them */
  if (dynq__imp_dtype_from_onnx(t->data_type) == DYNQ_DT_INVALID &&
      !dynq__imp_dtype_widened(t->data_type)) {
    fprintf(stderr, "dynq-onnx-dump: %s: dtype %s is not supported\n", argv[2],
            dynq__imp_onnx_dtype_name(t->data_type));
    rc = 3;
    goto out;
  }
  int32_t v = dynq__imp_import_tensor(&b, t, "t", "tensor");
  if (v < 0) goto out;
  const dynq__value_t *val = &b.values[v];
  f = fopen(argv[3], "wb");
  int32_t hdr[2] = {(int32_t)val->dtype, val->rank};
  if (f == NULL || fwrite(hdr, sizeof(hdr), 1, f) != 1 ||
      (val->rank > 0 && fwrite(val->dims, sizeof(int64_t), (size_t)val->rank, f) != (size_t)val->rank) ||
      (val->nbytes > 0 && fwrite(val->data, val->nbytes, 1, f) != 1)) {
    fprintf(stderr, "dynq-onnx-dump: cannot write %s\n", argv[3]);
    goto out;
  }
  rc = 0;
out:
  if (f != NULL && fclose(f) != 0) rc = 1;
  if (t != NULL) onnx__tensor_proto__free_unpacked(t, NULL);
  dynq__imp_builder_free(&b);
  free(buf);
  return rc;
}
