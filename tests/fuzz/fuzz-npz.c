/* libFuzzer target: dynq__npz_parse on arbitrary bytes (ZIP directory,
 * deflate streams, and the .npy members inside). */
#include <stddef.h>
#include <stdint.h>

#include "npz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dynq__npz_t z;
  char err[256];
  if (dynq__npz_parse(data, size, &z, err, sizeof(err)) == 0) dynq__npz_free(&z);
  return 0;
}
