/*
 * Kernel dispatch: the table of compiled kernels (best first) and the
 * process-wide selection (the CPU probes are in cpu.c).
 *
 * The selection is one atomic pointer: dynq__kernels_init() may be called
 * again (tests and benchmarks switch kernels), and dynq__kernel() falls back
 * to the best supported kernel through pthread_once when nobody chose.
 */
#include "kernels.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "cpu.h"
#include "dynq/errors.h"

#ifdef DYNQ_HAVE_KERNEL_AVX512VNNI
extern const dynq__kernel_t dynq__kernel_avx512vnni;
#endif
#ifdef DYNQ_HAVE_KERNEL_AVXVNNI
extern const dynq__kernel_t dynq__kernel_avxvnni;
#endif
#ifdef DYNQ_HAVE_KERNEL_AVX2
extern const dynq__kernel_t dynq__kernel_avx2;
#endif

static const dynq__kernel_t *const kernel_table[] = {
#ifdef DYNQ_HAVE_KERNEL_AVX512VNNI
  &dynq__kernel_avx512vnni,
#endif
#ifdef DYNQ_HAVE_KERNEL_AVXVNNI
  &dynq__kernel_avxvnni,
#endif
#ifdef DYNQ_HAVE_KERNEL_AVX2
  &dynq__kernel_avx2,
#endif
  &dynq__kernel_ref,
};
#define KERNEL_COUNT ((int)(sizeof(kernel_table) / sizeof(kernel_table[0])))

/* Names a build may know without having compiled them (old compiler). */
static const char *const known_names[] = {
  "ref", "avx2", "avxvnni", "avx512vnni",
};

/* ---- selection ---- */

static _Atomic(const dynq__kernel_t *) selected;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static const dynq__kernel_t *best_supported(void) {
  for (int i = 0; i < KERNEL_COUNT; i++)
    if (kernel_table[i]->supported()) return kernel_table[i];
  return &dynq__kernel_ref;
}

static void default_select(void) {
  const dynq__kernel_t *expected = NULL;
  atomic_compare_exchange_strong(&selected, &expected, best_supported());
}

const dynq__kernel_t *dynq__kernel_find(const char *name) {
  if (!name) return NULL;
  for (int i = 0; i < KERNEL_COUNT; i++)
    if (strcmp(kernel_table[i]->name, name) == 0) return kernel_table[i];
  return NULL;
}

const dynq__kernel_t *const *dynq__kernel_list(int *ret_n) {
  *ret_n = KERNEL_COUNT;
  return kernel_table;
}

int dynq__kernels_init(const char *override, const char **ret_msg) {
  const dynq__kernel_t *k;
  if (!override || !*override || strcmp(override, "auto") == 0) {
    k = best_supported();
  } else {
    k = dynq__kernel_find(override);
    if (!k) {
      int known = 0;
      for (size_t i = 0; i < sizeof(known_names) / sizeof(known_names[0]); i++)
        known |= strcmp(known_names[i], override) == 0;
      if (ret_msg)
        *ret_msg = known ? "kernel not compiled into this build "
                           "(the compiler lacked its ISA flags)"
                         : "unknown kernel name (expected auto, ref, avx2, "
                           "avxvnni or avx512vnni)";
      return DYNQ_EKERNEL;
    }
    if (!k->supported()) {
      if (ret_msg)
        *ret_msg = "kernel not supported by this CPU or OS (missing ISA "
                   "extension or register state)";
      return DYNQ_EKERNEL;
    }
  }
  atomic_store(&selected, k);
  return 0;
}

const dynq__kernel_t *dynq__kernel(void) {
  const dynq__kernel_t *k = atomic_load(&selected);
  if (k) return k;
  pthread_once(&default_once, default_select);
  return atomic_load(&selected);
}
