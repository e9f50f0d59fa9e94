/*
 * AVX2 conv kernels (convk.h): depthwise rows with 8 output columns per
 * ymm in blocks of up to 6 vectors whose sums stay in registers over
 * every tap, the epilogue applied in registers, and 8 x 8 transposes in
 * registers with the epilogue on each transposed column.  Every float
 * step is one vector instruction in the reference's order; the clamps
 * are blends on ordered compares, which keep NaN and -0.0 exactly as the
 * reference's C compares do.  Ragged edges use masked loads and stores.
 */
#include <immintrin.h>

#include "convk.h"
#include "cpu.h"

#define INLINE static inline __attribute__((always_inline))
#define JMAX 6

/* lanes i < n set */
INLINE __m256i lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

INLINE __m256 vepi(const dynq__conv_epi_t *e, __m256 v) {
  if (e->pre) v = _mm256_add_ps(_mm256_mul_ps(v, _mm256_set1_ps(e->pm)), _mm256_set1_ps(e->pa));
  const __m256 zero = _mm256_setzero_ps();
  switch (e->act) {
  case DYNQ_EPI_RELU: {
    const __m256 k = _mm256_or_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    v = _mm256_and_ps(k, v);
    break;
  }
  case DYNQ_EPI_CLIP: {
    const __m256 lo = _mm256_set1_ps(e->lo), hi = _mm256_set1_ps(e->hi);
    v = _mm256_blendv_ps(v, lo, _mm256_cmp_ps(v, lo, _CMP_LT_OQ));
    v = _mm256_blendv_ps(v, hi, _mm256_cmp_ps(v, hi, _CMP_GT_OQ));
    break;
  }
  case DYNQ_EPI_HARDSIGMOID:
  case DYNQ_EPI_HARDSWISH: {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 h = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(e->al), v), _mm256_set1_ps(e->be));
    h = _mm256_blendv_ps(h, zero, _mm256_cmp_ps(h, zero, _CMP_LT_OQ));
    h = _mm256_blendv_ps(h, one, _mm256_cmp_ps(h, one, _CMP_GT_OQ));
    v = e->act == DYNQ_EPI_HARDSWISH ? _mm256_mul_ps(v, h) : h;
    break;
  }
  default: break;
  }
  if (e->post) v = _mm256_add_ps(_mm256_mul_ps(v, _mm256_set1_ps(e->qm)), _mm256_set1_ps(e->qa));
  return v;
}

INLINE void block(const dynq__dw_row_t *r, int64_t ox, const int J, int tail) {
  const int64_t na = r->na, kw = r->kw, rs = r->rs;
  const int64_t *const off = r->off;
  __m256 acc[JMAX];
#pragma GCC unroll 6
  for (int j = 0; j < J; j++) acc[j] = _mm256_set1_ps(r->bias);
  for (int64_t a = 0; a < na; a++) {
    const float *xa = r->x + a * rs + ox, *wa = r->w + a * kw;
    for (int64_t b = 0; b < kw; b++) {
      const __m256 wv = _mm256_set1_ps(wa[b]);
      const float *s = xa + off[b];
#pragma GCC unroll 6
      for (int j = 0; j < J; j++)
        acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(wv, _mm256_loadu_ps(s + 8 * j)));
    }
  }
  if (r->epi)
#pragma GCC unroll 6
    for (int j = 0; j < J; j++) acc[j] = vepi(r->epi, acc[j]);
  float *y = r->y + ox;
#pragma GCC unroll 6
  for (int j = 0; j < J - 1; j++) _mm256_storeu_ps(y + 8 * j, acc[j]);
  if (tail == 0) _mm256_storeu_ps(y + 8 * (J - 1), acc[J - 1]);
  else _mm256_maskstore_ps(y + 8 * (J - 1), lanes(tail), acc[J - 1]);
}

static void dw_row_avx2(const dynq__dw_row_t *r) {
  const int64_t ow = r->ow;
  int64_t nvec = (ow + 7) / 8, ox = 0;
  const int tail = (int)(ow % 8);
  while (nvec > 0) {
    const int J = nvec > JMAX ? JMAX : (int)nvec; /* the last block has the partial vector */
    const int t = J == nvec ? tail : 0;
    switch (J) {
    case 1: block(r, ox, 1, t); break;
    case 2: block(r, ox, 2, t); break;
    case 3: block(r, ox, 3, t); break;
    case 4: block(r, ox, 4, t); break;
    case 5: block(r, ox, 5, t); break;
    default: block(r, ox, 6, t); break;
    }
    ox += 8 * (int64_t)J;
    nvec -= J;
  }
}

static void epi_avx2(const dynq__conv_epi_t *e, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, vepi(e, _mm256_loadu_ps(y + i)));
  if (i < n) {
    const __m256i m = lanes((int)(n - i));
    _mm256_maskstore_ps(y + i, m, vepi(e, _mm256_maskload_ps(y + i, m)));
  }
}

/* One block of up to 8 x 8: rows beyond nr read as zero, columns beyond
 * nc are neither loaded nor stored. */
static void transpose_block(const float *src, int64_t lds, float *dst, int64_t ldd, int nr,
                            int nc, const dynq__conv_epi_t *e) {
  const __m256i mc = lanes(nc), mr = lanes(nr);
  __m256 r[8], t[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++)
    r[i] = i < nr ? _mm256_maskload_ps(src + i * lds, mc) : _mm256_setzero_ps();
#pragma GCC unroll 8
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  /* per 128-bit lane L: u[4q + c] holds column 4L + c of rows 4q..4q+3 */
#pragma GCC unroll 2
  for (int q = 0; q < 2; q++) {
    r[4 * q + 0] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
    r[4 * q + 1] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0xee);
    r[4 * q + 2] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
    r[4 * q + 3] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xee);
  }
  /* column c (c < 4): lane 0 of u[c] and u[c + 4]; column c + 4: lane 1 */
#pragma GCC unroll 4
  for (int c = 0; c < 4; c++) {
    t[c] = _mm256_permute2f128_ps(r[c], r[c + 4], 0x20);
    t[c + 4] = _mm256_permute2f128_ps(r[c], r[c + 4], 0x31);
  }
#pragma GCC unroll 8
  for (int c = 0; c < nc; c++) {
    const __m256 v = e ? vepi(e, t[c]) : t[c];
    if (nr == 8) _mm256_storeu_ps(dst + c * ldd, v);
    else _mm256_maskstore_ps(dst + c * ldd, mr, v);
  }
}

static void transpose_avx2(const float *src, int64_t lds, float *dst, int64_t ldd, int64_t rows,
                           int64_t cols, const dynq__conv_epi_t *e) {
  for (int64_t r0 = 0; r0 < rows; r0 += 8) {
    const int nr = rows - r0 < 8 ? (int)(rows - r0) : 8;
    for (int64_t c0 = 0; c0 < cols; c0 += 8) {
      const int nc = cols - c0 < 8 ? (int)(cols - c0) : 8;
      transpose_block(src + r0 * lds + c0, lds, dst + c0 * ldd + r0, ldd, nr, nc, e);
    }
  }
}

const dynq__conv_kernel_t dynq__conv_kernel_avx2 = {
  .name = "avx2",
  .supported = dynq__cpu_has_avx2,
  .dw_row = dw_row_avx2,
  .epi = epi_avx2,
  .transpose = transpose_avx2,
};
