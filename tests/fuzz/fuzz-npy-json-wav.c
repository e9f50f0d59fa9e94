/*
 * fuzz-npy-json-wav: dynqctl's input file parsers (client/npy.c,
 * client/json.c, and client/audio.c over libsndfile) on arbitrary bytes.
 * Every input goes through all three, each on an exact-size copy so ASan sees any read past
 * the end (json gets no NUL terminator either: it takes a length).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dynqctl-io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *b = malloc(size ? size : 1);
  if (b == NULL) return 0;
  memcpy(b, data, size);
  char err[256];
  dynq_tensor_t t;

  memset(&t, 0, sizeof(t));
  err[0] = 0;
  if (dynq__npy_parse(b, size, &t, err, sizeof(err)) == 0) dynq__io_tensor_free(&t);
  else if (err[0] == 0) __builtin_trap(); /* failures must say why */

  memset(&t, 0, sizeof(t));
  err[0] = 0;
  if (dynq__json_parse((const char *)b, size, &t, err, sizeof(err)) == 0)
    dynq__io_tensor_free(&t);
  else if (err[0] == 0) __builtin_trap();

  /* at the file's own rate: resampling is libsamplerate's arithmetic on
   * samples already decoded, not input parsing */
  dynq__audio_t w;
  memset(&w, 0, sizeof(w));
  err[0] = 0;
  if (dynq__audio_decode(b, size, 0, &w, err, sizeof(err)) == 0) dynq__audio_free(&w);
  else if (err[0] == 0) __builtin_trap();

  free(b);
  return 0;
}
