/*
 * CPU and OS feature probes (CPUID + XGETBV) for the ISA kernel files.
 * Compiled without ISA flags, so a probe can never itself execute an
 * instruction the CPU lacks.
 */
#include "cpu.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdint.h>

static uint64_t xgetbv0(void) {
  uint32_t lo, hi;
  /* Only reached after CPUID said OSXSAVE, so XGETBV exists. */
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

typedef struct cpu_features {
  int avx2, avxvnni, avx512vnni;
} cpu_features_t;

static cpu_features_t cpu_features;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

static void cpu_probe(void) {
  unsigned a, b, c, d, max;
  cpu_features_t f = {0};
  if (!__get_cpuid(0, &max, &b, &c, &d) || max < 7) goto done;
  __get_cpuid(1, &a, &b, &c, &d);
  int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1,
      f16c = (c >> 29) & 1;
  if (!osxsave || !avx) goto done;
  uint64_t xcr0 = xgetbv0();
  int ymm_ok = (xcr0 & 0x6) == 0x6;      /* SSE + AVX state */
  int zmm_ok = (xcr0 & 0xe6) == 0xe6;    /* + opmask, ZMM_Hi256, Hi16_ZMM */
  __cpuid_count(7, 0, a, b, c, d);
  int avx2 = (b >> 5) & 1;
  int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1,
      avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1,
      avx512vnni = (c >> 11) & 1;
  unsigned sub = a;
  int avxvnni = 0;
  if (sub >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    avxvnni = (a >> 4) & 1;
  }
  f.avx2 = ymm_ok && avx2 && fma && f16c;
  f.avxvnni = f.avx2 && avxvnni;
  f.avx512vnni = zmm_ok && avx512f && avx512dq && avx512bw && avx512vl &&
                 avx512vnni;
done:
  cpu_features = f;
}

int dynq__cpu_has_avx2(void) {
  pthread_once(&cpu_once, cpu_probe);
  return cpu_features.avx2;
}

int dynq__cpu_has_avxvnni(void) {
  pthread_once(&cpu_once, cpu_probe);
  return cpu_features.avxvnni;
}

int dynq__cpu_has_avx512vnni(void) {
  pthread_once(&cpu_once, cpu_probe);
  return cpu_features.avx512vnni;
}

