/*
 * AVX2 kernel (no VNNI): the exact int16 path.
 *
 * Activation bytes (u8) and weights (s8) are widened to int16 and
 * multiplied with vpmaddwd, which adds pairs of int16 products into int32
 * exactly.  The saturating vpmaddubsw is never used: u8 x s8 pair sums
 * overflow int16 and would need 7-bit activations.
 *
 * A 64-byte weight group (16 channels x 4 k) is widened as four 16-byte
 * quarters of 4 channels each; vpmaddwd leaves two partial sums per
 * channel, folded with vphaddd and a lane permute once per tile.  The
 * register tile is 2 rows x 16 channels (8 accumulators + 4 widened
 * weight vectors), the widened weights reused by both rows.
 */
#include <immintrin.h>
#include <string.h>

#include "avx2-common.h"
#include "cpu.h"
#include "kernels.h"

INLINE __m256i bcast4_w16(const uint8_t *p) {
  float v;
  memcpy(&v, p, 4);   /* A rows may be at any alignment */
  /* vbroadcastss: one load uop instead of vmovd + vpshufd */
  return _mm256_cvtepu8_epi16(_mm_castps_si128(_mm_set1_ps(v)));
}

/* Two vpmaddwd accumulators (channels 0-3 and 4-7 of a half panel, each
 * channel as two partial sums) folded into eight per-channel sums. */
INLINE __m256i fold(__m256i lo, __m256i hi) {
  return _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo, hi), 0xd8);
}

/* Rows [m, m+mr) (mr = 1 or 2) x one panel p. */
INLINE void tile(const dynq__qgemm_args_t *a, int64_t m, int64_t p,
                 const int mr) {
  const int64_t Kp = dynq__round_up(a->K, DYNQ_QGEMM_KG);
  const int64_t kg = Kp / DYNQ_QGEMM_KG;
  const int8_t *bp = a->B + (size_t)p * (size_t)Kp * DYNQ_QGEMM_NR;
  const uint8_t *a0 = a->A + (size_t)m * a->lda;
  const uint8_t *a1 = a0 + (mr > 1 ? a->lda : 0);
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c03 = c00;
  __m256i c10 = c00, c11 = c00, c12 = c00, c13 = c00;

  for (int64_t g = 0; g < kg; g++, bp += 64) {
    __m256i b0 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)bp));
    __m256i b1 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(bp + 16)));
    __m256i b2 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(bp + 32)));
    __m256i b3 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(bp + 48)));
    __m256i x = bcast4_w16(a0 + 4 * g);
    c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(x, b0));
    c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(x, b1));
    c02 = _mm256_add_epi32(c02, _mm256_madd_epi16(x, b2));
    c03 = _mm256_add_epi32(c03, _mm256_madd_epi16(x, b3));
    if (mr > 1) {
      x = bcast4_w16(a1 + 4 * g);
      c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(x, b0));
      c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(x, b1));
      c12 = _mm256_add_epi32(c12, _mm256_madd_epi16(x, b2));
      c13 = _mm256_add_epi32(c13, _mm256_madd_epi16(x, b3));
    }
  }

  int64_t n = p * DYNQ_QGEMM_NR;
  int64_t valid = a->n1 - n;
  avx2c_epilogue8(a, m, n, valid, fold(c00, c01));
  if (valid > 8) avx2c_epilogue8(a, m, n + 8, valid - 8, fold(c02, c03));
  if (mr > 1) {
    avx2c_epilogue8(a, m + 1, n, valid, fold(c10, c11));
    if (valid > 8) avx2c_epilogue8(a, m + 1, n + 8, valid - 8, fold(c12, c13));
  }
}

static void tile_1(const dynq__qgemm_args_t *a, int64_t m, int64_t p) {
  tile(a, m, p, 1);
}

static void tile_2(const dynq__qgemm_args_t *a, int64_t m, int64_t p) {
  tile(a, m, p, 2);
}

/* Weight bytes per panel block kept in L2 while the row pairs sweep it. */
#define BLOCK_BYTES (256 * 1024)

static void avx2_qgemm(const dynq__qgemm_args_t *a) {
  if (a->M <= 0 || a->n1 <= a->n0) return;
  const int64_t Kp = dynq__round_up(a->K, DYNQ_QGEMM_KG);
  const int64_t P0 = a->n0 / DYNQ_QGEMM_NR;
  const int64_t P1 = (a->n1 + DYNQ_QGEMM_NR - 1) / DYNQ_QGEMM_NR;
  int64_t pb = BLOCK_BYTES / (Kp * DYNQ_QGEMM_NR);
  if (pb < 1) pb = 1;
  for (int64_t pblk = P0; pblk < P1; pblk += pb) {
    int64_t pend = pblk + pb < P1 ? pblk + pb : P1;
    for (int64_t m = 0; m < a->M; m += 2)
      for (int64_t p = pblk; p < pend; p++) {
        if (a->M - m >= 2)
          tile_2(a, m, p);
        else
          tile_1(a, m, p);
      }
  }
}

static void avx2_minmax(const float *x, int64_t n, float *mn, float *mx) {
  avx2c_minmax(x, n, mn, mx);
}

static void avx2_quantize(const float *x, int64_t n, float inv, int32_t zp,
                          uint8_t *q) {
  avx2c_quantize(x, n, inv, zp, q);
}

const dynq__kernel_t dynq__kernel_avx2 = {
  .name = "avx2",
  .isa = "AVX2 + FMA + F16C (exact int16 vpmaddwd path)",
  .supported = dynq__cpu_has_avx2,
  .qgemm = avx2_qgemm,
  .minmax = avx2_minmax,
  .quantize = avx2_quantize,
};
