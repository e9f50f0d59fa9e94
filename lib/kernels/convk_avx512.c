/*
 * AVX-512 conv kernels (convk.h): depthwise rows with 16 output columns
 * per zmm in blocks of up to 6 vectors whose sums stay in registers over
 * every tap (each tap's weight broadcast once per block), the epilogue
 * applied in registers, and 16 x 16 transposes in registers with the
 * epilogue on each transposed column.  Every float step is one vector
 * instruction in the reference's order; the clamps are mask blends on
 * ordered compares, which keep NaN and -0.0 exactly as the reference's
 * C compares do.  Ragged edges use masked loads and stores.
 */
#include <immintrin.h>

#include "convk.h"
#include "cpu.h"

#define INLINE static inline __attribute__((always_inline))
#define JMAX 6

INLINE __m512 vepi(const dynq__conv_epi_t *e, __m512 v) {
  if (e->pre) v = _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(e->pm)), _mm512_set1_ps(e->pa));
  const __m512 zero = _mm512_setzero_ps();
  __mmask16 k;
  switch (e->act) {
  case DYNQ_EPI_RELU:
    k = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    v = _mm512_maskz_mov_ps(k, v);
    break;
  case DYNQ_EPI_CLIP: {
    const __m512 lo = _mm512_set1_ps(e->lo), hi = _mm512_set1_ps(e->hi);
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, lo, _CMP_LT_OQ), lo);
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, hi, _CMP_GT_OQ), hi);
    break;
  }
  case DYNQ_EPI_HARDSIGMOID:
  case DYNQ_EPI_HARDSWISH: {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 h = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(e->al), v), _mm512_set1_ps(e->be));
    h = _mm512_mask_mov_ps(h, _mm512_cmp_ps_mask(h, zero, _CMP_LT_OQ), zero);
    h = _mm512_mask_mov_ps(h, _mm512_cmp_ps_mask(h, one, _CMP_GT_OQ), one);
    v = e->act == DYNQ_EPI_HARDSWISH ? _mm512_mul_ps(v, h) : h;
    break;
  }
  default: break;
  }
  if (e->post) v = _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(e->qm)), _mm512_set1_ps(e->qa));
  return v;
}

INLINE void block(const dynq__dw_row_t *r, int64_t ox, const int J, __mmask16 last) {
  const int64_t na = r->na, kw = r->kw, rs = r->rs;
  const int64_t *const off = r->off;
  __m512 acc[JMAX];
#pragma GCC unroll 6
  for (int j = 0; j < J; j++) acc[j] = _mm512_set1_ps(r->bias);
  for (int64_t a = 0; a < na; a++) {
    const float *xa = r->x + a * rs + ox, *wa = r->w + a * kw;
    for (int64_t b = 0; b < kw; b++) {
      const __m512 wv = _mm512_set1_ps(wa[b]);
      const float *s = xa + off[b];
#pragma GCC unroll 6
      for (int j = 0; j < J; j++)
        acc[j] = _mm512_add_ps(acc[j], _mm512_mul_ps(wv, _mm512_loadu_ps(s + 16 * j)));
    }
  }
  if (r->epi)
#pragma GCC unroll 6
    for (int j = 0; j < J; j++) acc[j] = vepi(r->epi, acc[j]);
  float *y = r->y + ox;
#pragma GCC unroll 6
  for (int j = 0; j < J - 1; j++) _mm512_storeu_ps(y + 16 * j, acc[j]);
  _mm512_mask_storeu_ps(y + 16 * (J - 1), last, acc[J - 1]);
}

static void dw_row_avx512(const dynq__dw_row_t *r) {
  const int64_t ow = r->ow;
  int64_t nvec = (ow + 15) / 16, ox = 0;
  const int tail = (int)(ow % 16);
  while (nvec > 0) {
    const int J = nvec > JMAX ? JMAX : (int)nvec; /* the last block has the partial vector */
    const __mmask16 m = J == nvec && tail ? (__mmask16)((1u << tail) - 1) : (__mmask16)0xffff;
    switch (J) {
    case 1: block(r, ox, 1, m); break;
    case 2: block(r, ox, 2, m); break;
    case 3: block(r, ox, 3, m); break;
    case 4: block(r, ox, 4, m); break;
    case 5: block(r, ox, 5, m); break;
    default: block(r, ox, 6, m); break;
    }
    ox += 16 * (int64_t)J;
    nvec -= J;
  }
}

static void epi_avx512(const dynq__conv_epi_t *e, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, vepi(e, _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, vepi(e, _mm512_maskz_loadu_ps(m, y + i)));
  }
}

/* One block of up to 16 x 16: rows beyond nr read as zero, columns
 * beyond nc are neither loaded nor stored. */
static void transpose_block(const float *src, int64_t lds, float *dst, int64_t ldd, int nr,
                            int nc, const dynq__conv_epi_t *e) {
  const __mmask16 mc = (__mmask16)((1u << nc) - 1), mr = (__mmask16)((1u << nr) - 1);
  __m512 r[16], t[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; i++)
    r[i] = i < nr ? _mm512_maskz_loadu_ps(mc, src + i * lds) : _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  /* per 128-bit lane L: u[4q + c] holds column 4L + c of rows 4q..4q+3 */
#pragma GCC unroll 16
  for (int q = 0; q < 4; q++) {
    const __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * q + 2]), d = _mm512_castps_pd(t[4 * q + 3]);
    r[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  /* v[c] (c < 4): lanes 0, 2 of u[c], u[c + 4]; v[c + 4]: lanes 1, 3;
   * likewise v[8..15] from u[8..15] */
#pragma GCC unroll 16
  for (int h = 0; h < 16; h += 8)
#pragma GCC unroll 16
    for (int c = 0; c < 4; c++) {
      t[h + c] = _mm512_shuffle_f32x4(r[h + c], r[h + c + 4], 0x88);
      t[h + c + 4] = _mm512_shuffle_f32x4(r[h + c], r[h + c + 4], 0xdd);
    }
  /* column c (c < 8) from v[c], v[c + 8] lanes 0, 2; column c + 8 from
   * lanes 1, 3 */
#pragma GCC unroll 16
  for (int c = 0; c < 8; c++) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[c + 8], 0x88);
    r[c + 8] = _mm512_shuffle_f32x4(t[c], t[c + 8], 0xdd);
  }
#pragma GCC unroll 16
  for (int c = 0; c < nc; c++) {
    const __m512 v = e ? vepi(e, r[c]) : r[c];
    if (nr == 16) _mm512_storeu_ps(dst + c * ldd, v);
    else _mm512_mask_storeu_ps(dst + c * ldd, mr, v);
  }
}

static void transpose_avx512(const float *src, int64_t lds, float *dst, int64_t ldd, int64_t rows,
                             int64_t cols, const dynq__conv_epi_t *e) {
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int nr = rows - r0 < 16 ? (int)(rows - r0) : 16;
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      const int nc = cols - c0 < 16 ? (int)(cols - c0) : 16;
      transpose_block(src + r0 * lds + c0, lds, dst + c0 * ldd + r0, ldd, nr, nc, e);
    }
  }
}

const dynq__conv_kernel_t dynq__conv_kernel_avx512 = {
  .name = "avx512",
  .supported = dynq__cpu_has_avx512vnni,
  .dw_row = dw_row_avx512,
  .epi = epi_avx512,
  .transpose = transpose_avx512,
};
