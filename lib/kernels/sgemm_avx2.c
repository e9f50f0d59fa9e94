/*
 * AVX2+FMA FP32 micro-kernel: a 64-column panel as four 6 x 16 tiles
 * (12 ymm accumulators, 2 B vectors, one broadcast: 15 of the 16
 * registers), each sweeping the same packed A tile from L1.
 *
 * Every (rows, vectors) shape from 1x1 to 6x2 is its own fully unrolled
 * function.  Partial vectors use vmaskmov for C and, when B is read in
 * place, for B; packed B rows are padded to 64 floats.  One vfmadd231ps
 * per k and element, in k order: the reference's bits.
 */
#include <immintrin.h>

#include "cpu.h"
#include "sgemm.h"

#define MR DYNQ_SGEMM_MR
#define NV 2  /* vectors of 8 per 16-column tile */

#define INLINE static inline __attribute__((always_inline))

INLINE void tile(int64_t kc, const float *a, int64_t rsa, int64_t csa, const float *b,
                 int64_t ldb, float *c, int64_t ldc, const int mr, const int nv, const int masked,
                 __m256i last, int load) {
  const __m256i all = _mm256_set1_epi32(-1);
  __m256 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
    for (int j = 0; j < nv; j++)
      acc[r][j] = load ? _mm256_maskload_ps(c + r * ldc + 8 * j, j == nv - 1 ? last : all)
                       : _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; k++, a += csa, b += ldb) {
    __m256 bv[NV];
#pragma GCC unroll 8
    for (int j = 0; j < nv; j++)
      bv[j] = masked && j == nv - 1 ? _mm256_maskload_ps(b + 8 * j, last)
                                    : _mm256_loadu_ps(b + 8 * j);
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
      __m256 av = _mm256_broadcast_ss(a + r * rsa);
#pragma GCC unroll 8
      for (int j = 0; j < nv; j++) acc[r][j] = _mm256_fmadd_ps(av, bv[j], acc[r][j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
    for (int j = 0; j < nv; j++)
      _mm256_maskstore_ps(c + r * ldc + 8 * j, j == nv - 1 ? last : all, acc[r][j]);
}

typedef void (*tile_fn)(int64_t, const float *, int64_t, int64_t, const float *, int64_t, float *, int64_t,
                        __m256i, int);

#define TILE(mr, nv, m)                                                                    \
  static void tile_##mr##_##nv##_##m(int64_t kc, const float *a, int64_t rsa, int64_t csa, \
                                     const float *b, int64_t ldb, float *c, int64_t ldc,   \
                                     __m256i   last, int load) {                          \
    tile(kc, a, rsa, csa, b, ldb, c, ldc, mr, nv, m, last, load);                        \
  }
#define TILES_NV(mr, m) TILE(mr, 1, m) TILE(mr, 2, m)
#define TILES(m) \
  TILES_NV(1, m) TILES_NV(2, m) TILES_NV(3, m) TILES_NV(4, m) TILES_NV(5, m) TILES_NV(6, m)
TILES(0)
TILES(1)

#define ROW(mr, m) {tile_##mr##_1_##m, tile_##mr##_2_##m}
static const tile_fn tiles[2][MR][NV] = {
  {ROW(1, 0), ROW(2, 0), ROW(3, 0), ROW(4, 0), ROW(5, 0), ROW(6, 0)},
  {ROW(1, 1), ROW(2, 1), ROW(3, 1), ROW(4, 1), ROW(5, 1), ROW(6, 1)},
};

static void ukr(int64_t kc, const float *a, int64_t rsa, int64_t csa, const float *b,
                int64_t ldb, float *c, int64_t ldc, int mr, int nr, int flags) {
  const int inplace = (flags & DYNQ_SGEMM_INPLACE) != 0, load = flags & DYNQ_SGEMM_LOAD;
  for (int s = 0; s < nr; s += 16) {
    int w = nr - s < 16 ? nr - s : 16;
    int nv = (w + 7) / 8, rem = w - 8 * (nv - 1);
    __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem),
                                      _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    tiles[inplace && rem != 8][mr - 1][nv - 1](kc, a, rsa, csa, b + s, ldb, c + s, ldc, last, load);
  }
}

const dynq__sgemm_kernel_t dynq__sgemm_avx2 = {"avx2", dynq__cpu_has_avx2, ukr};
