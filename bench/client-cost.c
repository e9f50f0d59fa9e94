/*
 * client-cost: what libdynqclient itself spends per infer request, against
 * a running dynqd (started separately, so this process holds only the
 * client's work).
 *
 *   client-cost --socket PATH [--model NAME] [--requests N] [--depth D]
 *               [--spin US] [--cols K]
 *
 * Sends N infer requests of a [1, K] float32 input (K default 768, the
 * bench/make_linear.py model): --depth 1 (default) with dynq_infer, one
 * call in flight; --depth D > 1 keeping D in flight on one connection with
 * dynq_submit_infer / dynq_poll / dynq_wait_infer.  Prints the process's
 * CPU time (user + system) per request; `strace -c` gives the syscalls
 * and callgrind the instructions per request:
 *
 *   valgrind --tool=callgrind --toggle-collect=run_requests \
 *     build/bench/client-cost --socket S --requests 20000 --depth 32
 *
 * (the toggle keeps connect and warm-up out of the count; divide by N).
 * --spin sets the client's busy-poll budget (default 0: spinning would add
 * instructions that measure the server's speed, not the client's work).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "dynq/dynqclient.h"

static const char *o_socket, *o_model = "linear";
static long o_requests = 20000;
static int o_depth = 1, o_spin = 0, o_cols = 768;

static void die(const char *what, dynq_client_t *c, int r) {
  fprintf(stderr, "client-cost: %s: %s (%s)\n", what, dynq_strerror(r),
          c != NULL ? dynq_client_errmsg(c) : "");
  exit(1);
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One answer checked: the model's one output, non-empty. */
static void check(dynq_client_t *c, dynq_infer_result_t *res) {
  if (res->n_outputs < 1 || res->outputs[0].nbytes == 0) die("answer without output", c, 0);
  dynq_infer_result_free(res);
}

/* The measured loop (its name is the callgrind toggle): n requests, depth
 * in flight. */
__attribute__((noinline)) void run_requests(dynq_client_t *c, const dynq_tensor_t *in,
                                            long n, int depth);
__attribute__((noinline)) void run_requests(dynq_client_t *c, const dynq_tensor_t *in,
                                            long n, int depth) {
  dynq_infer_result_t res;
  long sent = 0, done = 0;
  int r;
  if (depth <= 1) {
    for (; done < n; done++) {
      r = dynq_infer(c, o_model, DYNQ_INFER_DEFAULT, in, 1, &res);
      if (r < 0) die("infer", c, r);
      check(c, &res);
    }
    return;
  }
  while (done < n) {
    uint32_t t;
    while (sent < n && sent - done < depth) {
      r = dynq_submit_infer(c, o_model, in, 1, NULL, &t);
      if (r < 0) die("submit", c, r);
      sent++;
    }
    r = dynq_poll(c, -1, &t);
    if (r != 1) die("poll", c, r);
    r = dynq_wait_infer(c, t, &res);
    if (r < 0) die("wait", c, r);
    check(c, &res);
    done++;
  }
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--socket") == 0 && v) o_socket = argv[++i];
    else if (strcmp(argv[i], "--model") == 0 && v) o_model = argv[++i];
    else if (strcmp(argv[i], "--requests") == 0 && v) o_requests = atol(argv[++i]);
    else if (strcmp(argv[i], "--depth") == 0 && v) o_depth = atoi(argv[++i]);
    else if (strcmp(argv[i], "--spin") == 0 && v) o_spin = atoi(argv[++i]);
    else if (strcmp(argv[i], "--cols") == 0 && v) o_cols = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: client-cost --socket PATH [--model NAME] [--requests N] "
                      "[--depth D] [--spin US] [--cols K]\n");
      return 2;
    }
  }
  if (o_socket == NULL || o_requests < 1 || o_depth < 1 || o_depth > DYNQ_CLIENT_INFLIGHT_MAX ||
      o_cols < 1) {
    fprintf(stderr, "client-cost: --socket is required; --requests, --depth and --cols "
                    "must be positive (depth at most %d)\n", DYNQ_CLIENT_INFLIGHT_MAX);
    return 2;
  }
  dynq_client_t *c = NULL;
  int r = dynq_connect(o_socket, &c);
  if (r < 0) die("connect", NULL, r);
  if ((r = dynq_client_set_spin(c, o_spin)) < 0) die("--spin", c, r);
  if ((r = dynq_client_set_max_inflight(c, o_depth)) < 0) die("--depth", c, r);
  float *x = calloc((size_t)o_cols, sizeof(float));
  if (x == NULL) die("out of memory", NULL, -ENOMEM);
  for (int k = 0; k < o_cols; k++) x[k] = (float)(k % 17) * 0.1f - 0.8f;
  dynq_tensor_t in = {"x", DYNQ_FLOAT32, 2, {1, o_cols}, x, (size_t)o_cols * sizeof(float)};
  run_requests(c, &in, o_depth * 2L, o_depth);  /* warm-up: buffers reach their size */
  double c0 = cpu_s(), t0 = now_s();
  run_requests(c, &in, o_requests, o_depth);
  double cpu = cpu_s() - c0, wall = now_s() - t0;
  printf("requests %ld depth %d: client CPU %.2f us/request, %.0f requests/s\n", o_requests,
         o_depth, cpu * 1e6 / (double)o_requests, (double)o_requests / wall);
  dynq_close(c);
  free(x);
  return 0;
}
