/*
 * AVX-VNNI kernel: ymm vpdpbusd (VEX encoding) for CPUs with AVX-VNNI but
 * no AVX-512 (Alder Lake and later client cores, Zen 5 client parts).
 *
 * A 64-byte weight group is two ymm halves (channels 0-7 and 8-15), each
 * already in vpdpbusd operand order, so no folding is needed.  Register
 * tile: 4 rows x 1 panel = 8 accumulators + 2 weight vectors + one
 * broadcast out of 16 ymm.  Epilogue, min/max and quantization are the
 * shared ymm helpers (avx2-common.h), identical to the AVX2 kernel.
 *
 * DYNQ_AVXVNNI_VIA_EVEX (used only by the emulation check described in
 * BENCHMARKS.md) emits the AVX512-VL encoding of the same instruction so
 * the logic can be verified bit for bit on a CPU without AVX-VNNI.
 */
#include <immintrin.h>
#include <string.h>

#include "avx2-common.h"
#include "cpu.h"
#include "kernels.h"

/* Tied accumulator, as in avx512vnni.c (GCC 12 copies it otherwise). */
#ifdef DYNQ_AVXVNNI_VIA_EVEX
#define DPBUSD(acc, a, b) \
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "vm"(b))
#else
#define DPBUSD(acc, a, b) \
  __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(a), "xm"(b))
#endif

#define MR 4

INLINE __m256i bcast4(const uint8_t *p) {
  float v;
  memcpy(&v, p, 4);   /* A rows may be at any alignment */
  return _mm256_castps_si256(_mm256_set1_ps(v));
}

/* Rows [m, m+mr) x panel p (16 channels as two ymm halves). */
INLINE void tile(const dynq__qgemm_args_t *a, int64_t m, int64_t p,
                 const int mr) {
  const int64_t Kp = dynq__round_up(a->K, DYNQ_QGEMM_KG);
  const int64_t kg = Kp / DYNQ_QGEMM_KG;
  const int8_t *bp = a->B + (size_t)p * (size_t)Kp * DYNQ_QGEMM_NR;
  const uint8_t *ap[MR];
  __m256i lo[MR], hi[MR];
#pragma GCC unroll 4
  for (int r = 0; r < mr; r++) {
    ap[r] = a->A + (size_t)(m + r) * a->lda;
    lo[r] = hi[r] = _mm256_setzero_si256();
  }
  for (int64_t g = 0; g < kg; g++, bp += 64) {
    __m256i b0 = _mm256_load_si256((const __m256i *)bp);
    __m256i b1 = _mm256_load_si256((const __m256i *)(bp + 32));
#pragma GCC unroll 4
    for (int r = 0; r < mr; r++) {
      __m256i x = bcast4(ap[r] + 4 * g);
      DPBUSD(lo[r], x, b0);
      DPBUSD(hi[r], x, b1);
    }
  }
  int64_t n = p * DYNQ_QGEMM_NR;
  int64_t valid = a->n1 - n;
#pragma GCC unroll 4
  for (int r = 0; r < mr; r++) {
    avx2c_epilogue8(a, m + r, n, valid, lo[r]);
    if (valid > 8) avx2c_epilogue8(a, m + r, n + 8, valid - 8, hi[r]);
  }
}

typedef void (*tile_fn)(const dynq__qgemm_args_t *, int64_t, int64_t);
#define TILE_FN(R)                                                        \
  static void tile_##R(const dynq__qgemm_args_t *a, int64_t m, int64_t p) { \
    tile(a, m, p, R);                                                     \
  }
TILE_FN(1)
TILE_FN(2)
TILE_FN(3)
TILE_FN(4)
static const tile_fn tiles[MR] = {tile_1, tile_2, tile_3, tile_4};

/* Weight bytes per panel block kept in L2 while the row tiles sweep it. */
#define BLOCK_BYTES (256 * 1024)

static void avxvnni_qgemm(const dynq__qgemm_args_t *a) {
  if (a->M <= 0 || a->n1 <= a->n0) return;
  const int64_t Kp = dynq__round_up(a->K, DYNQ_QGEMM_KG);
  const int64_t P0 = a->n0 / DYNQ_QGEMM_NR;
  const int64_t P1 = (a->n1 + DYNQ_QGEMM_NR - 1) / DYNQ_QGEMM_NR;
  int64_t pb = BLOCK_BYTES / (Kp * DYNQ_QGEMM_NR);
  if (pb < 1) pb = 1;
  if (a->M <= MR) pb = P1 - P0;
  for (int64_t pblk = P0; pblk < P1; pblk += pb) {
    int64_t pend = pblk + pb < P1 ? pblk + pb : P1;
    for (int64_t m = 0; m < a->M; m += MR) {
      int64_t mr = a->M - m < MR ? a->M - m : MR;
      for (int64_t p = pblk; p < pend; p++) tiles[mr - 1](a, m, p);
    }
  }
}

static void avxvnni_minmax(const float *x, int64_t n, float *mn, float *mx) {
  avx2c_minmax(x, n, mn, mx);
}

static void avxvnni_quantize(const float *x, int64_t n, float inv,
                             int32_t zp, uint8_t *q) {
  avx2c_quantize(x, n, inv, zp, q);
}

#ifdef DYNQ_AVXVNNI_VIA_EVEX
/* Emulation check build: runnable wherever AVX512-VNNI is. */
#define AVXVNNI_SUPPORTED dynq__cpu_has_avx512vnni
#else
#define AVXVNNI_SUPPORTED dynq__cpu_has_avxvnni
#endif

const dynq__kernel_t dynq__kernel_avxvnni = {
  .name = "avxvnni",
  .isa = "AVX2 + AVX-VNNI (ymm vpdpbusd, VEX)",
  .supported = AVXVNNI_SUPPORTED,
  .qgemm = avxvnni_qgemm,
  .minmax = avxvnni_minmax,
  .quantize = avxvnni_quantize,
};
