/*
 * fuzz-onnx: arbitrary bytes as an ONNX ModelProto through the whole of
 * dynq-quantize's conversion (models/dynq-quantize.c, import*.c), in
 * process via dynq__imp_convert_buffer().  When a model converts, the
 * .dynq written must open again (the importer never writes a file the
 * engine refuses).  Options alternate on the first byte so the FP32,
 * per-tensor and no-reference paths are reached too.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "import.h"
#include "model.h"

static char g_out[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  snprintf(g_out, sizeof(g_out), "/tmp/fuzz-onnx-%d.dynq", (int)getpid());
  /* conversion summaries go to stdout: keep the fuzzer's log readable */
  int fd = open("/dev/null", O_WRONLY);
  if (fd >= 0) {
    dup2(fd, 1);
    close(fd);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dynq__imp_options_t opt;
  memset(&opt, 0, sizeof(opt));
  /* The option byte is the last one: protobuf ignores nothing, but a
   * trailing byte is as likely to be mutated as any other. */
  if (size > 0) {
    uint8_t o = data[size - 1];
    opt.fp32 = o & 1;
    opt.per_tensor = (o >> 1) & 1;
    opt.no_reference = (o >> 2) & 1;
    opt.no_auto_fp32 = (o >> 3) & 1;
    opt.quantize_small = (o >> 4) & 1;
  }
  unlink(g_out);
  if (dynq__imp_convert_buffer(&opt, data, size, "fuzz.onnx", g_out) == 0) {
    dynq__model_t *m = NULL;
    char err[512] = "";
    if (dynq__model_open(g_out, &m, err, sizeof(err)) != 0) {
      fprintf(stderr, "fuzz-onnx: converted model does not open: %s\n", err);
      __builtin_trap();
    }
    dynq__model_unref(m);
  }
  unlink(g_out);
  return 0;
}
