// Compile check: the public headers are usable from C++.
#include <dynq/dynqclient.h>
#include <dynq/errors.h>

int main() {
  dynq_tensor_t t = dynq_tensor_t();
  (void)t;
  dynq_client_t *c = nullptr;
  dynq_close(c);
  return dynq_strerror(DYNQ_ENOMODEL) == nullptr;
}
