/*
 * AVX-512 FP32 micro-kernel: 6 rows x 64 columns = 24 zmm accumulators,
 * 4 B vectors and one broadcast of A per k, inside the 32 registers.
 *
 * Every (rows, vectors) shape from 1x1 to 6x4 is its own fully unrolled
 * function, so ragged edges run the same code with fewer registers.  B is
 * read with plain loads when its rows are padded to 64 floats (packed),
 * with masked loads on the last vector when it is read in place (the
 * unpacked B of a single row tile: nothing past the matrix may be read).
 * One vfmadd231ps per k and element, in k order: the reference's bits.
 */
#include <immintrin.h>

#include "cpu.h"
#include "sgemm.h"

#define MR DYNQ_SGEMM_MR
#define NV 4  /* vectors of 16 per 64-column panel */

#define INLINE static inline __attribute__((always_inline))

INLINE void tile(int64_t kc, const float *a, int64_t rsa, int64_t csa, const float *b,
                 int64_t ldb, float *c, int64_t ldc, const int mr, const int nv, const int masked,
                 __mmask16 last, int load) {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
    for (int j = 0; j < nv; j++)
      acc[r][j] = load ? _mm512_maskz_loadu_ps(j == nv - 1 ? last : 0xffff, c + r * ldc + 16 * j)
                       : _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; k++, a += csa, b += ldb) {
    __m512 bv[NV];
#pragma GCC unroll 8
    for (int j = 0; j < nv; j++)
      bv[j] = masked && j == nv - 1 ? _mm512_maskz_loadu_ps(last, b + 16 * j)
                                    : _mm512_loadu_ps(b + 16 * j);
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
      __m512 av = _mm512_set1_ps(a[r * rsa]);
#pragma GCC unroll 8
      for (int j = 0; j < nv; j++) acc[r][j] = _mm512_fmadd_ps(av, bv[j], acc[r][j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
    for (int j = 0; j < nv; j++)
      _mm512_mask_storeu_ps(c + r * ldc + 16 * j, j == nv - 1 ? last : 0xffff, acc[r][j]);
}

typedef void (*tile_fn)(int64_t, const float *, int64_t, int64_t, const float *, int64_t, float *, int64_t,
                        __mmask16, int);

#define TILE(mr, nv, m)                                                                    \
  static void tile_##mr##_##nv##_##m(int64_t kc, const float *a, int64_t rsa, int64_t csa, \
                                     const float *b, int64_t ldb, float *c, int64_t ldc,   \
                                     __mmask16 last, int load) {                          \
    tile(kc, a, rsa, csa, b, ldb, c, ldc, mr, nv, m, last, load);                        \
  }
#define TILES_NV(mr, m) TILE(mr, 1, m) TILE(mr, 2, m) TILE(mr, 3, m) TILE(mr, 4, m)
#define TILES(m) \
  TILES_NV(1, m) TILES_NV(2, m) TILES_NV(3, m) TILES_NV(4, m) TILES_NV(5, m) TILES_NV(6, m)
TILES(0)
TILES(1)

#define ROW(mr, m) {tile_##mr##_1_##m, tile_##mr##_2_##m, tile_##mr##_3_##m, tile_##mr##_4_##m}
static const tile_fn tiles[2][MR][NV] = {
  {ROW(1, 0), ROW(2, 0), ROW(3, 0), ROW(4, 0), ROW(5, 0), ROW(6, 0)},
  {ROW(1, 1), ROW(2, 1), ROW(3, 1), ROW(4, 1), ROW(5, 1), ROW(6, 1)},
};

static void ukr(int64_t kc, const float *a, int64_t rsa, int64_t csa, const float *b,
                int64_t ldb, float *c, int64_t ldc, int mr, int nr, int flags) {
  int nv = (nr + 15) / 16, rem = nr - 16 * (nv - 1);
  __mmask16 last = (__mmask16)(rem == 16 ? 0xffff : (1u << rem) - 1);
  tiles[(flags & DYNQ_SGEMM_INPLACE) && rem != 16][mr - 1][nv - 1](kc, a, rsa, csa, b, ldb, c, ldc, last,
                                                            flags & DYNQ_SGEMM_LOAD);
}

const dynq__sgemm_kernel_t dynq__sgemm_avx512 = {"avx512", dynq__cpu_has_avx512vnni, ukr};
