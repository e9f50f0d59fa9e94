// Compile check: the public headers are usable from C++, the sized-result
// macros included.
#include <dynq/dynqclient.h>
#include <dynq/errors.h>

// Never called: only compiled, so each macro expands as C++.
int use_sized_calls(dynq_client_t *c);
int use_sized_calls(dynq_client_t *c) {
  dynq_stats_t st = dynq_stats_t();
  dynq_model_info_t mi = dynq_model_info_t();
  dynq_server_info_t si = dynq_server_info_t();
  uint32_t t = 0;
  uint64_t v = 0;
  int r = dynq_stats(c, &st) + dynq_model_info(c, "m", &mi) + dynq_server_info(c, &si);
  r += dynq_stats_counter(&st, "inline_total", &v);
  r += dynq_submit_raw(c, "ping", nullptr, 0, &t) + dynq_poll(c, 0, &t);
  return r;
}

int main() {
  dynq_tensor_t t = dynq_tensor_t();
  (void)t;
  dynq_client_t *c = nullptr;
  dynq_close(c);
  return dynq_strerror(DYNQ_ENOMODEL) == nullptr;
}
