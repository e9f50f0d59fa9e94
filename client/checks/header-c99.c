/* Compile check: the public headers are clean C99 with -pedantic, the
 * sized-result macros included. */
#include <dynq/dynqclient.h>
#include <dynq/errors.h>

/* Never called: only compiled, so each macro expands under -pedantic. */
int use_sized_calls(dynq_client_t *c);
int use_sized_calls(dynq_client_t *c) {
  dynq_stats_t st;
  dynq_model_info_t mi;
  dynq_server_info_t si;
  uint32_t t;
  uint64_t v;
  int r = dynq_stats(c, &st) + dynq_model_info(c, "m", &mi) + dynq_server_info(c, &si);
  r += dynq_stats_counter(&st, "inline_total", &v);
  r += dynq_submit_raw(c, "ping", NULL, 0, &t) + dynq_poll(c, 0, &t);
  return r;
}

int main(void) {
  dynq_tensor_t t = { 0 };
  (void)t;
  return dynq_strerror(DYNQ_ENOMODEL) == 0;
}
