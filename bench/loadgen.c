/*
 * loadgen: drive dynqd with `infer` requests from several connections (one
 * thread and one libdynqclient connection each) and check every answer.
 *
 *   loadgen --socket PATH --model NAME --input NAME:ROWSxCOLS:FILE.f32
 *           [--expect FILE.f32]... [--threads N] [--depth D]
 *           [--requests N | --duration S] [--retry-overload]
 *
 * --depth D keeps D requests in flight on each connection (libdynqclient's
 * pipelined API: dynq_submit_infer / dynq_poll / dynq_wait_infer); the
 * default 1 is the blocking dynq_infer.
 * With --expect, an answer's first output must equal one of the given
 * files byte for byte (e.g. the two versions of a model being swapped);
 * anything else counts as wrong.  Without --requests/--duration it runs
 * until its stdin reaches EOF, so a test can stop it without a timer.
 * Once every thread has had one answer it prints "started" on stdout;
 * at the end one JSON line of counts.  Exit 0 when no answer was wrong or
 * failed, 1 otherwise, 2 on bad usage.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dynq/dynqclient.h"

#define MAX_EXPECT 8
#define MAX_THREADS 256

typedef struct blob {
  void *p;
  size_t n;
} blob_t;

static const char *g_socket, *g_model;
static char g_in_name[128];
static int64_t g_rows, g_cols;
static blob_t g_input;
static blob_t g_expect[MAX_EXPECT];
static int g_n_expect;
static int g_threads = 4;
static int g_depth = 1;          /* requests in flight per connection */
static long g_requests;          /* per thread; 0: until stopped */
static int g_retry_overload;
static atomic_int g_stop;
static int g_started;            /* threads with one answer; under g_mu */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static atomic_long g_ok, g_wrong, g_failed, g_overload;
static atomic_long g_match[MAX_EXPECT];
static pthread_mutex_t g_err_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_first_err[512];

static int read_file(const char *path, blob_t *b) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return -errno;
  if (fseek(f, 0, SEEK_END) != 0) goto fail;
  long n = ftell(f);
  if (n < 0 || fseek(f, 0, SEEK_SET) != 0) goto fail;
  b->p = malloc(n > 0 ? (size_t)n : 1);
  if (b->p == NULL) goto fail;
  if (fread(b->p, 1, (size_t)n, f) != (size_t)n) goto fail;
  b->n = (size_t)n;
  fclose(f);
  return 0;
fail:
  fclose(f);
  free(b->p);
  b->p = NULL;
  return -EIO;
}

static void note_error(const char *what, const char *a, const char *b) {
  pthread_mutex_lock(&g_err_mu);
  if (g_first_err[0] == '\0')
    snprintf(g_first_err, sizeof(g_first_err), "%s: %s: %s", what, a, b);
  pthread_mutex_unlock(&g_err_mu);
}

static void mark_started(void) {
  pthread_mutex_lock(&g_mu);
  g_started++;
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
}

/* Count one answer; 1 when it was an overload to retry instead. */
static int handle(dynq_client_t *c, int rc, dynq_infer_result_t *r) {
  if (rc == DYNQ_EOVERLOAD && g_retry_overload) {
    atomic_fetch_add(&g_overload, 1);
    return 1;
  }
  if (rc != 0) {
    atomic_fetch_add(&g_failed, 1);
    note_error("infer", dynq_err_name(rc), dynq_client_errmsg(c));
    return 0;
  }
  int hit = -1;
  if (r->n_outputs >= 1)
    for (int e = 0; e < g_n_expect && hit < 0; e++)
      if (r->outputs[0].nbytes == g_expect[e].n &&
          memcmp(r->outputs[0].data, g_expect[e].p, g_expect[e].n) == 0)
        hit = e;
  if (g_n_expect == 0 || hit >= 0) {
    atomic_fetch_add(&g_ok, 1);
    if (hit >= 0) atomic_fetch_add(&g_match[hit], 1);
  } else {
    atomic_fetch_add(&g_wrong, 1);
    note_error("wrong answer", "first output", "matches none of the --expect files");
  }
  dynq_infer_result_free(r);
  return 0;
}

/* --depth > 1: keep g_depth requests in flight, collect them as they
 * complete (in whatever order dynqd answers). */
static void run_pipelined(dynq_client_t *c, const dynq_tensor_t *in) {
  long sent = 0, done = 0;
  int counted = 0, rc;
  if (g_depth > DYNQ_CLIENT_INFLIGHT_DEFAULT) dynq_client_set_max_inflight(c, g_depth);
  for (;;) {
    int more = !atomic_load(&g_stop) && (g_requests == 0 || sent < g_requests);
    while (more && dynq_inflight(c) < g_depth) {
      uint32_t t;
      rc = dynq_submit_infer(c, g_model, in, 1, NULL, &t);
      if (rc != 0) {
        atomic_fetch_add(&g_failed, 1);
        note_error("submit", dynq_err_name(rc), dynq_client_errmsg(c));
        atomic_store(&g_stop, 1);
        more = 0;
        break;
      }
      sent++;
      more = g_requests == 0 || sent < g_requests;
    }
    if (dynq_inflight(c) == 0) break;
    uint32_t t;
    rc = dynq_poll(c, -1, &t);
    if (rc < 0) {
      atomic_fetch_add(&g_failed, 1);
      note_error("poll", dynq_err_name(rc), dynq_client_errmsg(c));
      break;
    }
    if (rc == 0) continue;
    dynq_infer_result_t r;
    rc = dynq_wait_infer(c, t, &r);
    if (handle(c, rc, &r)) {
      sent--;  /* overloaded: send it again */
      continue;
    }
    done++;
    if (!counted) {
      counted = 1;
      mark_started();
    }
  }
  (void)done;
  if (!counted) mark_started();
}

static void *worker(void *arg) {
  (void)arg;
  dynq_client_t *c = NULL;
  int rc = dynq_connect(g_socket, &c);
  if (rc != 0) {
    atomic_fetch_add(&g_failed, 1);
    note_error("connect", g_socket, dynq_strerror(rc));
    mark_started();
    return NULL;
  }
  dynq_tensor_t in;
  memset(&in, 0, sizeof(in));
  in.name = g_in_name;
  in.dtype = DYNQ_FLOAT32;
  in.rank = 2;
  in.shape[0] = g_rows;
  in.shape[1] = g_cols;
  in.data = g_input.p;
  in.nbytes = g_input.n;
  if (g_depth > 1) {
    run_pipelined(c, &in);
    dynq_close(c);
    return NULL;
  }
  int counted = 0;
  for (long i = 0; !atomic_load(&g_stop) && (g_requests == 0 || i < g_requests); i++) {
    dynq_infer_result_t r;
    rc = dynq_infer(c, g_model, DYNQ_INFER_DEFAULT, &in, 1, &r);
    if (handle(c, rc, &r)) {
      i--;
      continue;
    }
    if (!counted) {
      counted = 1;
      mark_started();
    }
  }
  if (!counted) mark_started();
  dynq_close(c);
  return NULL;
}

static int usage(void) {
  fprintf(stderr,
          "usage: loadgen --socket PATH --model NAME --input NAME:ROWSxCOLS:FILE.f32\n"
          "               [--expect FILE.f32]... [--threads N] [--depth D]\n"
          "               [--requests N | --duration S] [--retry-overload]\n");
  return 2;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  double duration = 0;
  const char *input = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--retry-overload") == 0) {
      g_retry_overload = 1;
      continue;
    }
    if (v == NULL) return usage();
    i++;
    if (strcmp(a, "--socket") == 0) g_socket = v;
    else if (strcmp(a, "--model") == 0) g_model = v;
    else if (strcmp(a, "--input") == 0) input = v;
    else if (strcmp(a, "--threads") == 0) g_threads = atoi(v);
    else if (strcmp(a, "--depth") == 0) g_depth = atoi(v);
    else if (strcmp(a, "--requests") == 0) g_requests = atol(v);
    else if (strcmp(a, "--duration") == 0) duration = atof(v);
    else if (strcmp(a, "--expect") == 0) {
      if (g_n_expect == MAX_EXPECT) {
        fprintf(stderr, "loadgen: at most %d --expect files\n", MAX_EXPECT);
        return 2;
      }
      if (read_file(v, &g_expect[g_n_expect]) != 0) {
        fprintf(stderr, "loadgen: cannot read %s\n", v);
        return 2;
      }
      g_n_expect++;
    } else {
      return usage();
    }
  }
  if (g_socket == NULL || g_model == NULL || input == NULL) return usage();
  if (g_threads < 1 || g_threads > MAX_THREADS) {
    fprintf(stderr, "loadgen: --threads must be 1..%d\n", MAX_THREADS);
    return 2;
  }
  if (g_depth < 1 || g_depth > DYNQ_CLIENT_INFLIGHT_MAX) {
    fprintf(stderr, "loadgen: --depth must be 1..%d\n", DYNQ_CLIENT_INFLIGHT_MAX);
    return 2;
  }
  char file[4096];
  long long rows, cols;
  if (sscanf(input, "%127[^:]:%lldx%lld:%4095s", g_in_name, &rows, &cols, file) != 4 ||
      rows < 1 || cols < 1) {
    fprintf(stderr, "loadgen: --input must be NAME:ROWSxCOLS:FILE.f32\n");
    return 2;
  }
  g_rows = rows;
  g_cols = cols;
  if (read_file(file, &g_input) != 0 || g_input.n != (size_t)(rows * cols * 4)) {
    fprintf(stderr, "loadgen: %s must hold %lld float32 values\n", file, rows * cols);
    return 2;
  }

  pthread_t th[MAX_THREADS];
  int n = 0;
  double t0 = now_s();
  for (; n < g_threads; n++)
    if (pthread_create(&th[n], NULL, worker, NULL) != 0) break;
  /* "started" once every thread has had an answer (or given up). */
  pthread_mutex_lock(&g_mu);
  while (g_started < n) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  printf("started\n");
  fflush(stdout);
  if (duration > 0) {
    struct timespec ts = {(time_t)duration, (long)((duration - (double)(time_t)duration) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    atomic_store(&g_stop, 1);
  } else if (g_requests == 0) {
    char buf[256];
    while (read(0, buf, sizeof(buf)) > 0) {}
    atomic_store(&g_stop, 1);
  }
  for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
  double el = now_s() - t0;
  long ok = atomic_load(&g_ok), wrong = atomic_load(&g_wrong),
       failed = atomic_load(&g_failed);
  printf("{\"threads\": %d, \"depth\": %d, \"seconds\": %.3f, \"ok\": %ld, \"wrong\": %ld, "
         "\"failed\": %ld, \"overloaded_retried\": %ld, \"per_second\": %.1f, \"matched\": [",
         n, g_depth, el, ok, wrong, failed, atomic_load(&g_overload),
         el > 0 ? (double)(ok + wrong + failed) / el : 0.0);
  for (int e = 0; e < g_n_expect; e++)
    printf("%s%ld", e ? ", " : "", atomic_load(&g_match[e]));
  printf("]}\n");
  if (g_first_err[0]) fprintf(stderr, "loadgen: first problem: %s\n", g_first_err);
  free(g_input.p);
  for (int e = 0; e < g_n_expect; e++) free(g_expect[e].p);
  return wrong == 0 && failed == 0 && n == g_threads ? 0 : 1;
}
