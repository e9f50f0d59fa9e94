/*
 * shadow-bench: what shadow FP32 telemetry costs the answers, in one run.
 * Two names of the same model file in one dynqd, one loaded with
 * shadow_rate 0 (off) and one with shadow_rate R, driven alternately:
 *
 *   shadow-bench --socket PATH --off NAME --on NAME --input NAME:ROWSxCOLS
 *                [--seconds S] [--threads N] [--rounds K]
 *
 * Latency: one connection, requests alternating between the two names for
 * S seconds per round; p50/p99 of each (client round trip).  Throughput
 * at saturation: N threads on one name for S seconds, then on the other,
 * K rounds; requests per second of each.  One JSON line per phase.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dynq/dynqclient.h"

static const char *g_sock, *g_off, *g_on, *g_in = "x";
static int64_t g_rows = 16, g_cols = 64;
static float *g_x;
static double g_secs = 2;
static int g_threads = 4, g_rounds = 3;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int infer(dynq_client_t *c, const char *model) {
  dynq_tensor_t t = {.name = g_in, .dtype = DYNQ_FLOAT32, .rank = 2, .shape = {g_rows, g_cols},
                     .data = g_x, .nbytes = (size_t)(g_rows * g_cols) * sizeof(float)};
  dynq_infer_result_t r;
  int rc = dynq_infer(c, model, DYNQ_INFER_DEFAULT, &t, 1, &r);
  if (rc == 0) dynq_infer_result_free(&r);
  return rc;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double q) {
  if (n == 0) return 0;
  size_t i = (size_t)(q * (double)(n - 1) + 0.5);
  return v[i];
}

typedef struct worker {
  const char *model;
  double until;
  long n;
  int failed;
} worker_t;

static void *hammer(void *arg) {
  worker_t *w = arg;
  dynq_client_t *c = NULL;
  if (dynq_connect(g_sock, &c) != 0) {
    w->failed = 1;
    return NULL;
  }
  while (now_s() < w->until) {
    if (infer(c, w->model) != 0) w->failed = 1;
    w->n++;
  }
  dynq_close(c);
  return NULL;
}

static double throughput(const char *model) {
  pthread_t th[64];
  worker_t w[64];
  double t0 = now_s();
  for (int i = 0; i < g_threads; i++) {
    w[i] = (worker_t){model, t0 + g_secs, 0, 0};
    pthread_create(&th[i], NULL, hammer, &w[i]);
  }
  long n = 0;
  for (int i = 0; i < g_threads; i++) {
    pthread_join(th[i], NULL);
    n += w[i].n;
    if (w[i].failed) fprintf(stderr, "shadow-bench: a request failed\n");
  }
  return (double)n / (now_s() - t0);
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--socket") == 0) g_sock = argv[i + 1];
    else if (strcmp(argv[i], "--off") == 0) g_off = argv[i + 1];
    else if (strcmp(argv[i], "--on") == 0) g_on = argv[i + 1];
    else if (strcmp(argv[i], "--seconds") == 0) g_secs = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--threads") == 0) g_threads = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--rounds") == 0) g_rounds = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--input") == 0) {
      static char name[128];
      long long r, c;
      if (sscanf(argv[i + 1], "%127[^:]:%lldx%lld", name, &r, &c) != 3) goto usage;
      g_in = name;
      g_rows = r;
      g_cols = c;
    } else {
      goto usage;
    }
  }
  if (g_sock == NULL || g_off == NULL || g_on == NULL || g_threads < 1 || g_threads > 64 ||
      g_secs <= 0 || g_rounds < 1)
    goto usage;
  g_x = malloc((size_t)(g_rows * g_cols) * sizeof(float));
  for (int64_t i = 0; i < g_rows * g_cols; i++) g_x[i] = (float)((i * 7919) % 23 - 11) / 11.0f;

  /* latency: alternating, one connection */
  dynq_client_t *c = NULL;
  if (dynq_connect(g_sock, &c) != 0) {
    fprintf(stderr, "shadow-bench: cannot connect to %s\n", g_sock);
    return 1;
  }
  size_t cap = 1 << 22, n_off = 0, n_on = 0;
  double *l_off = malloc(cap * sizeof(double)), *l_on = malloc(cap * sizeof(double));
  for (int k = 0; k < 200; k++) infer(c, (k & 1) ? g_on : g_off); /* warm */
  double until = now_s() + g_secs * g_rounds;
  for (long k = 0; now_s() < until && n_on < cap; k++) {
    const char *m = (k & 1) ? g_on : g_off;
    double t0 = now_s();
    if (infer(c, m) != 0) {
      fprintf(stderr, "shadow-bench: infer on %s failed\n", m);
      return 1;
    }
    double us = (now_s() - t0) * 1e6;
    if (k & 1) l_on[n_on++] = us;
    else l_off[n_off++] = us;
  }
  dynq_close(c);
  qsort(l_off, n_off, sizeof(double), cmp_d);
  qsort(l_on, n_on, sizeof(double), cmp_d);
  printf("{\"phase\": \"latency\", \"off\": {\"n\": %zu, \"p50_us\": %.1f, \"p99_us\": %.1f}, "
         "\"on\": {\"n\": %zu, \"p50_us\": %.1f, \"p99_us\": %.1f}}\n",
         n_off, pct(l_off, n_off, 0.5), pct(l_off, n_off, 0.99), n_on, pct(l_on, n_on, 0.5),
         pct(l_on, n_on, 0.99));
  /* throughput at saturation: alternating rounds */
  double s_off = 0, s_on = 0;
  for (int r = 0; r < g_rounds; r++) {
    double a = throughput(g_off), b = throughput(g_on);
    printf("{\"phase\": \"saturation\", \"round\": %d, \"off_per_s\": %.0f, \"on_per_s\": %.0f}\n",
           r, a, b);
    s_off += a;
    s_on += b;
  }
  printf("{\"phase\": \"saturation\", \"threads\": %d, \"off_per_s\": %.0f, \"on_per_s\": %.0f, "
         "\"on_vs_off\": %.4f}\n", g_threads, s_off / g_rounds, s_on / g_rounds, s_on / s_off);
  free(l_off);
  free(l_on);
  free(g_x);
  return 0;
usage:
  fprintf(stderr, "usage: shadow-bench --socket PATH --off NAME --on NAME --input "
          "NAME:ROWSxCOLS [--seconds S] [--threads N] [--rounds K]\n");
  return 2;
}
