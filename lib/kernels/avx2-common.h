/*
 * Helpers shared by the two ymm kernels (avx2.c and avxvnni.c, both built
 * with -mavx2 -mfma): the 8-channel epilogue, row min/max and activation
 * quantization.  static inline only, so each ISA file gets its own copy
 * and no ISA code leaks into files built without the flags.
 */
#ifndef DYNQ_KERNELS_AVX2_COMMON_H
#define DYNQ_KERNELS_AVX2_COMMON_H

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

#define INLINE static inline __attribute__((always_inline))

INLINE __m256i avx2c_lane_mask(int64_t valid) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(valid < 8 ? valid : 8)),
                            idx);
}

/* Epilogue for 8 channels starting at n of row m; `valid` of them real. */
INLINE void avx2c_epilogue8(const dynq__qgemm_args_t *a, int64_t m, int64_t n,
                      int64_t valid, __m256i acc) {
  __m256i cs, bias_i = _mm256_setzero_si256();
  __m256 ws, bias;
  __m256i k = avx2c_lane_mask(valid);
  if (valid >= 8) {
    cs = _mm256_loadu_si256((const __m256i *)(a->colsum + n));
    ws = _mm256_loadu_ps(a->w_scale + n);
    bias = a->bias ? _mm256_loadu_ps(a->bias + n) : _mm256_castsi256_ps(bias_i);
  } else {
    cs = _mm256_maskload_epi32(a->colsum + n, k);
    ws = _mm256_maskload_ps(a->w_scale + n, k);
    bias = a->bias ? _mm256_maskload_ps(a->bias + n, k)
                   : _mm256_castsi256_ps(bias_i);
  }
  __m256i d = _mm256_sub_epi32(
      acc, _mm256_mullo_epi32(_mm256_set1_epi32(a->a_zp[m]), cs));
  __m256 t = _mm256_cvtepi32_ps(d);
  __m256 s = _mm256_mul_ps(_mm256_set1_ps(a->a_scale[m]), ws);
  __m256 y = _mm256_mul_ps(s, t);
  if (a->bias) y = _mm256_add_ps(y, bias);
  if (a->act == DYNQ_ACT_RELU) y = _mm256_max_ps(_mm256_setzero_ps(), y);
  float *c = a->C + (size_t)m * a->ldc + n;
  if (valid >= 8)
    _mm256_storeu_ps(c, y);
  else
    _mm256_maskstore_ps(c, k, y);
}

INLINE void avx2c_minmax(const float *x, int64_t n, float *mn, float *mx) {
  __m256 lo = _mm256_set1_ps(x[0]), hi = lo;
  __m256 bad = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
  }
  float l8[8], h8[8];
  _mm256_storeu_ps(l8, lo);
  _mm256_storeu_ps(h8, hi);
  float l = l8[0], h = h8[0];
  int nan = _mm256_movemask_ps(bad) != 0 || x[0] != x[0];
  for (int j = 1; j < 8; j++) {
    l = l8[j] < l ? l8[j] : l;
    h = h8[j] > h ? h8[j] : h;
  }
  for (; i < n; i++) {
    float v = x[i];
    nan |= v != v;
    l = v < l ? v : l;
    h = v > h ? v : h;
  }
  if (nan) l = h = NAN;
  *mn = l;
  *mx = h;
}

INLINE void avx2c_quantize(const float *x, int64_t n, float inv, int32_t zp,
                          uint8_t *q) {
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256 lo = _mm256_set1_ps(-256.0f), hi = _mm256_set1_ps(512.0f);
  const __m256i vzp = _mm256_set1_epi32(zp), zero = _mm256_setzero_si256(),
                top = _mm256_set1_epi32(255);
  const __m256i gather = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 t = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
    t = _mm256_max_ps(t, lo);   /* NaN -> lo, as ref.c */
    t = _mm256_min_ps(t, hi);
    __m256i v = _mm256_add_epi32(_mm256_cvtps_epi32(t), vzp);
    v = _mm256_min_epi32(_mm256_max_epi32(v, zero), top);
    v = _mm256_packus_epi32(v, v);   /* values already in [0, 255] */
    v = _mm256_packus_epi16(v, v);
    v = _mm256_permutevar8x32_epi32(v, gather);
    _mm_storel_epi64((__m128i *)(q + i), _mm256_castsi256_si128(v));
  }
  for (; i < n; i++) {
    float t = x[i] * inv;
    t = t > -256.0f ? t : -256.0f;
    t = t < 512.0f ? t : 512.0f;
    int32_t v = (int32_t)lrintf(t) + zp;
    q[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
  }
}

#endif
