/* Compile check: the public headers are clean C99 with -pedantic. */
#include <dynq/dynqclient.h>
#include <dynq/errors.h>

int main(void) {
  dynq_tensor_t t = { 0 };
  (void)t;
  return dynq_strerror(DYNQ_ENOMODEL) == 0;
}
