/*
 * fuzz-model: arbitrary bytes as a .dynq file through dynq__model_open()
 * (lib/format.c decoding, lib/graph.c validation, the model's plan) and,
 * when it opens, one dynq__model_run() per precision on zero inputs whose
 * symbolic dims are 1 (bounded so a run stays small).
 *
 * Checksums would stop almost every mutation at the header, so before the
 * bytes are written the harness recomputes what the writer would have
 * (header CRC, table CRC, each in-bounds section's CRC, file_size) unless
 * the input's first byte after the header... no: always, except when the
 * input is shorter than a header.  Checksum mismatches themselves are
 * covered by tests/test-format.c.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format.h"
#include "model.h"

#define MAX_RUN_ELEMS (1 << 12)

static void fix_checksums(uint8_t *b, size_t len) {
  if (len < sizeof(dynq__fhdr_t)) return;
  dynq__fhdr_t h;
  memcpy(&h, b, sizeof(h));
  h.file_size = len;
  uint64_t toff = h.sections_off;
  uint64_t n = h.n_sections;
  if (n <= DYNQ_FILE_MAX_SECTIONS && toff <= len && n * sizeof(dynq__fsection_t) <= len - toff) {
    for (uint64_t i = 0; i < n; i++) {
      dynq__fsection_t s;
      memcpy(&s, b + toff + i * sizeof(s), sizeof(s));
      if (s.offset <= len && s.size <= len - s.offset) {
        s.crc = dynq__crc32c(0, b + s.offset, (size_t)s.size);
        memcpy(b + toff + i * sizeof(s), &s, sizeof(s));
      }
    }
    h.table_crc = dynq__crc32c(0, b + toff, (size_t)n * sizeof(dynq__fsection_t));
  }
  h.header_crc = dynq__crc32c(0, &h, offsetof(dynq__fhdr_t, header_crc));
  memcpy(b, &h, sizeof(h));
}

static void run_once(const dynq__model_t *m, int precision) {
  const dynq__graph_t *g = dynq__model_graph(m);
  dynq__tensor_t in[64], out[64];
  char err[256];
  if (g->n_inputs > 64 || g->n_outputs > 64) return;
  memset(in, 0, sizeof(in));
  memset(out, 0, sizeof(out));
  int ok = 1;
  for (int i = 0; i < g->n_inputs && ok; i++) {
    const dynq__value_t *v = &g->values[g->inputs[i]];
    int rank = v->rank < 0 ? 1 : v->rank;
    int64_t dims[DYNQ_MAX_RANK];
    int64_t numel = 1;
    for (int d = 0; d < rank && ok; d++) {
      dims[d] = v->rank < 0 || v->dims[d] < 0 ? 1 : v->dims[d];
      if (dims[d] > MAX_RUN_ELEMS) ok = 0;
      else numel *= dims[d] > 0 ? dims[d] : 1; /* both <= 2^12: no overflow */
      if (numel > MAX_RUN_ELEMS) ok = 0;
    }
    if (!ok || dynq__tensor_alloc(&in[i], v->dtype, rank, dims) != 0) ok = 0;
  }
  if (ok) {
    /* dynqd caps every tensor a run computes (max_value_bytes) and how
     * long a run computes (max_run_ms); so does this harness, or a file
     * padding its small input to gigabytes, or making an op quadratic in
     * it, would be a timeout, not a finding */
    dynq__run_stop_t stop = {0};
    dynq__run_stop_cap(&stop, 2000);
    dynq__run_opts_t o = {.precision = precision, .threads = 1,
                          .max_value_bytes = (int64_t)64 << 20, .stop = &stop};
    if (dynq__model_run(m, &o, in, out, err, sizeof(err)) == 0)
      for (int i = 0; i < g->n_outputs; i++) dynq__tensor_clear(&out[i]);
  }
  for (int i = 0; i < g->n_inputs; i++) dynq__tensor_clear(&in[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *b = malloc(size ? size : 1);
  if (b == NULL) return 0;
  memcpy(b, data, size);
  fix_checksums(b, size);
  int fd = memfd_create("fuzz-model", MFD_CLOEXEC);
  if (fd < 0) abort();
  size_t off = 0;
  while (off < size) {
    ssize_t w = write(fd, b + off, size - off);
    if (w <= 0) abort();
    off += (size_t)w;
  }
  free(b);
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  dynq__model_t *m = NULL;
  char err[512] = "";
  if (dynq__model_open(path, &m, err, sizeof(err)) == 0) {
    dynq__model_stats_t st;
    dynq__model_get_stats(m, &st);
    run_once(m, DYNQ_PRECISION_INT8);
    run_once(m, DYNQ_PRECISION_FP32);
    dynq__model_unref(m);
  } else if (err[0] == 0) {
    __builtin_trap(); /* every failure must say what was wrong */
  }
  close(fd);
  return 0;
}
