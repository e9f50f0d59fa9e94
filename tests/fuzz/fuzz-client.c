/*
 * fuzz-client: arbitrary bytes as dynqd's side of the stream, read by
 * libdynqclient the way a program uses it.  Four requests are in flight on
 * one end of a socketpair (three infers, msgids 1-3, and a raw ping,
 * msgid 4); the input is written to the other end, which then hangs up.
 * Every ticket must complete exactly once (with an answer or a clear
 * error) before dynq_poll runs dry, results are read through, and nothing
 * is left in flight.  Under libFuzzer (-Dfuzz=enabled) and, in the normal
 * build, through fuzz-replay over the committed seeds (test client-fuzz).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int sv[2];
  dynq_client_t *c = NULL;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  if (dynq__client_adopt(sv[0], "fuzz", &c) != 0) {
    close(sv[1]);
    return 0;
  }
  (void)dynq_client_set_spin(c, 0);
  float x[3] = {1, 2, 3};
  dynq_tensor_t in = {"x", DYNQ_FLOAT32, 1, {3}, x, sizeof x};
  uint32_t t[4], got;
  int n = 0;
  for (; n < 3; n++)
    if (dynq_submit_infer(c, "m", &in, 1, NULL, &t[n]) != 0) __builtin_trap();
  if (dynq_submit_raw(c, "ping", NULL, 0, &t[n++]) != 0) __builtin_trap();
  /* the stream as the server would send it (what the socket does not take
   * at once is cut: the fuzzer's inputs are far smaller) */
  size_t off = 0;
  while (off < size) {
    ssize_t w = send(sv[1], data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w <= 0) break;
    off += (size_t)w;
  }
  shutdown(sv[1], SHUT_WR);
  int completed = 0, r;
  while ((r = dynq_poll(c, 5000, &got)) == 1) {
    completed++;
    if (got == t[3]) {
      void *res = NULL;
      size_t len = 0;
      if (dynq_wait_raw(c, got, &res, &len) == 0) {
        if (len > 0) (void)((volatile uint8_t *)res)[len - 1];
        free(res);
      }
      continue;
    }
    dynq_infer_result_t res;
    if (dynq_wait_infer(c, got, &res) == 0) {
      for (int k = 0; k < res.n_outputs; k++) {
        const dynq_tensor_t *o = &res.outputs[k];
        (void)strlen(o->name);
        if (o->data != NULL && o->nbytes > 0) (void)((volatile uint8_t *)o->data)[o->nbytes - 1];
      }
      dynq_infer_result_free(&res);
    } else if (dynq_client_errmsg(c)[0] == '\0') {
      { fprintf(stderr, "ticket %u: error %d without a message\n", got, 0); __builtin_trap(); }
    }
  }
  /* Every ticket completed once (a poll that ran dry with one still
   * waiting had found the server's hang-up neither: a hang), none is left;
   * r is 0 when the answers all came before the hang-up was seen. */
  (void)r;
  if (completed != n || dynq_inflight(c) != 0 || !dynq__tickets_check(&c->tickets))
    __builtin_trap();
  dynq_close(c);
  close(sv[1]);
  return 0;
}
