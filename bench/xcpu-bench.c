/*
 * xcpu-bench: what it costs this machine to move data between two CPUs.
 *
 *   1. one cache line: two threads pinned to two CPUs take turns writing
 *      one atomic counter (each waits, spinning, for the other's write);
 *      the time per round trip is two transfers of the line.  Repeated in
 *      short rounds, min and median printed: on a VM a round in which the
 *      host deschedules a vCPU shows as an outlier, not as the figure.
 *   2. bulk: one thread writes a buffer, the other copies it out; the
 *      copy's time next to the same copy of a buffer its own CPU wrote.
 *
 * Why it matters for dynqd: a request handed from the loop thread to a
 * worker on another CPU pays (1) for every line it touches that the other
 * thread wrote last, one after the other when the loads depend on each
 * other (a list walk, a pointer to a struct to a buffer), and (2) for its
 * tensor bytes.  The figures bound what such a hand-off can cost.
 *
 * usage: xcpu-bench [--cpus A,B] [--rounds N] [--bytes N]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { TRIPS = 20000 };

static int cpu_a = -1, cpu_b = -1, rounds = 30;
static size_t nbytes = 96 << 10;

static _Alignas(64) atomic_uint turn;
static _Alignas(64) atomic_uint stage;
static unsigned char *src, *dst;
static double copy_ns;

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  if (pthread_setaffinity_np(pthread_self(), sizeof(s), &s) != 0) {
    fprintf(stderr, "xcpu-bench: cannot pin a thread to cpu %d\n", cpu);
    exit(1);
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The far side of the line ping-pong: answers odd values with the next. */
static void *pong(void *arg) {
  (void)arg;
  pin(cpu_b);
  for (unsigned r = 0; r < (unsigned)rounds; r++)
    for (unsigned i = 0; i < TRIPS; i++) {
      unsigned want = 2 * (r * TRIPS + i) + 1;
      while (atomic_load_explicit(&turn, memory_order_acquire) != want) {
      }
      atomic_store_explicit(&turn, want + 1, memory_order_release);
    }
  return NULL;
}

static void line_rounds(double *rt) {
  pthread_t t;
  atomic_store(&turn, 0);
  if (pthread_create(&t, NULL, pong, NULL) != 0) exit(1);
  for (unsigned r = 0; r < (unsigned)rounds; r++) {
    double t0 = now_ns();
    for (unsigned i = 0; i < TRIPS; i++) {
      unsigned v = 2 * (r * TRIPS + i) + 1;
      atomic_store_explicit(&turn, v, memory_order_release);
      while (atomic_load_explicit(&turn, memory_order_acquire) != v + 1) {
      }
    }
    rt[r] = (now_ns() - t0) / TRIPS;
  }
  pthread_join(t, NULL);
}

/* The copying side: waits for stage 2k+1 (buffer written), copies, says 2k+2. */
static void *copier(void *arg) {
  int cpu = *(int *)arg;
  pin(cpu);
  double sum = 0;
  for (unsigned r = 0; r < (unsigned)rounds; r++) {
    while (atomic_load_explicit(&stage, memory_order_acquire) != 2 * r + 1) sched_yield();
    double t0 = now_ns();
    memcpy(dst, src, nbytes);
    __asm__ volatile("" ::: "memory");
    sum += now_ns() - t0;
    atomic_store_explicit(&stage, 2 * r + 2, memory_order_release);
  }
  copy_ns = sum / rounds;
  return NULL;
}

static double bulk(int reader_cpu) {
  pthread_t t;
  atomic_store(&stage, 0);
  if (pthread_create(&t, NULL, copier, &reader_cpu) != 0) exit(1);
  for (unsigned r = 0; r < (unsigned)rounds; r++) {
    memset(src, (int)r, nbytes);
    atomic_store_explicit(&stage, 2 * r + 1, memory_order_release);
    while (atomic_load_explicit(&stage, memory_order_acquire) != 2 * r + 2) sched_yield();
  }
  pthread_join(t, NULL);
  return copy_ns;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--cpus") == 0 && v && sscanf(argv[++i], "%d,%d", &cpu_a, &cpu_b) == 2)
      continue;
    if (strcmp(argv[i], "--rounds") == 0 && v && (rounds = atoi(argv[++i])) >= 1 && rounds <= 1000)
      continue;
    if (strcmp(argv[i], "--bytes") == 0 && v) {
      long n = atol(argv[++i]);
      if (n >= 64 && n <= (1L << 30)) {
        nbytes = (size_t)n;
        continue;
      }
    }
    fprintf(stderr, "usage: xcpu-bench [--cpus A,B] [--rounds 1..1000] [--bytes 64..1G]\n");
    return 2;
  }
  if (cpu_a < 0) {  /* the first two CPUs this process may run on */
    cpu_set_t s;
    if (sched_getaffinity(0, sizeof(s), &s) != 0) return 1;
    for (int c = 0; c < CPU_SETSIZE && cpu_b < 0; c++)
      if (CPU_ISSET(c, &s)) {
        if (cpu_a < 0) cpu_a = c;
        else cpu_b = c;
      }
    if (cpu_b < 0) {
      fprintf(stderr, "xcpu-bench: needs two CPUs, this process may use one\n");
      return 1;
    }
  }
  src = aligned_alloc(64, (nbytes + 63) & ~(size_t)63);
  dst = aligned_alloc(64, (nbytes + 63) & ~(size_t)63);
  if (src == NULL || dst == NULL) return 1;
  memset(dst, 0, nbytes);

  double *rt = calloc((size_t)rounds, sizeof(*rt));
  if (rt == NULL) return 1;
  pin(cpu_a);
  line_rounds(rt);
  qsort(rt, (size_t)rounds, sizeof(*rt), cmp_double);
  printf("one cache line, cpu %d <-> cpu %d: round trip min %.0f ns, median %.0f ns "
         "(%d rounds of %d)\n", cpu_a, cpu_b, rt[0], rt[rounds / 2], rounds, TRIPS);
  double near = bulk(cpu_a), far = bulk(cpu_b);
  printf("copy of %zu bytes just written on cpu %d: by cpu %d %.2f us (%.1f GB/s), "
         "by cpu %d %.2f us (%.1f GB/s)\n", nbytes, cpu_a, cpu_a, near / 1e3,
         (double)nbytes / near, cpu_b, far / 1e3, (double)nbytes / far);
  free(rt);
  free(src);
  free(dst);
  return 0;
}
