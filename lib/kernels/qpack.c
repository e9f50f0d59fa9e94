/*
 * Run-time weight-side quantization for products of two activations
 * (attention's Q K^T and P V): the right operand quantized per column,
 * symmetric int8, written straight into the packed panel layout the qgemm
 * kernels read (kernels.h), with its column sums and scales.  The operand
 * is read in place through its strides: K^T's columns are K's rows
 * (unit-stride along k), V's rows are unit-stride along n; any other
 * layout takes the plain loop.
 *
 * Plain C compiled for AVX-512, AVX2 and the baseline (target_clones):
 * loops over 16 fixed columns or along k, which GCC vectorizes in each
 * clone, and generic vectors (gvec.h) only for a panel's 16 scales.
 * Integer results and the same float operations in every clone, so every
 * machine packs the same bytes.  (16-lane generic vectors throughout, the
 * first form, went through the stack on AVX2: GCC splits a 64-byte vector
 * into ymm halves but lowered the byte conversions and shuffles lane by
 * lane, half of an attention layer's time on Zen 3.)
 */
#include "kernels.h"

#include <math.h>
#include <string.h>

#include "gvec.h"

#define CLONES DYNQ_CLONES
#define VEC DYNQ_VEC_OPT
#define L DYNQ_GV_LANES

/* The column's scale from its largest magnitude, given as the bits of
 * |x| (for non-negative floats integer order is float order, and NaN and
 * infinities lie above every finite value). */
static void col_scale(int32_t amax_bits, float alpha, float *ret_inv, float *ret_scale) {
  if (amax_bits >= 0x7f800000) {  /* NaN or infinite */
    *ret_inv = 0.0f;
    *ret_scale = NAN;
    return;
  }
  float amax;
  memcpy(&amax, &amax_bits, sizeof(amax));
  float sc = amax > 0.0f ? amax / 127.0f : 1.0f;
  float inv = 1.0f / sc;
  if (!isfinite(inv)) sc = 1.0f, inv = 1.0f;   /* a column of denormals: as zeros */
  *ret_inv = inv;
  *ret_scale = sc * alpha;
}

static inline __attribute__((always_inline)) int8_t q1(float x, float inv) {
  float t = x * inv;
  t = t < 127.0f ? t : 127.0f;
  t = t > -127.0f ? t : -127.0f;
  return (int8_t)(int32_t)((t + 12582912.0f) - 12582912.0f);
}

/* col_scale for 16 columns at once (the same IEEE operations per lane). */
static inline __attribute__((always_inline)) void col_scales16(dynq_gvi am, float alpha,
                                                               dynq_gvf *ret_inv,
                                                               dynq_gvf *ret_scale) {
  const dynq_gvf one = dynq_gv_splat(1.0f);
  dynq_gvi bad = am >= 0x7f800000;
  dynq_gvf amax = dynq_gv_sel(bad, dynq_gv_splat(0.0f), (dynq_gvf)am);
  dynq_gvf sc = dynq_gv_sel(amax > 0.0f, amax / 127.0f, one);
  dynq_gvf inv = one / sc;
  dynq_gvi over = ((dynq_gvi)inv & 0x7fffffff) >= 0x7f800000;
  sc = dynq_gv_sel(over, one, sc);
  inv = dynq_gv_sel(over, one, inv);
  *ret_inv = dynq_gv_sel(bad, dynq_gv_splat(0.0f), inv);
  *ret_scale = dynq_gv_sel(bad, dynq_gv_splat(NAN), sc * alpha);
}

/* Columns unit-stride along k (B[k + n * cs]): a panel of 16 columns at a
 * time, their scales together, then each column's bytes, 4 per group:
 * 256 k at a time quantized into tmp (a loop GCC vectorizes in each
 * clone), then copied into the panel's groups. */
CLONES VEC static void pack_cols(int64_t K, int64_t N, const float *B, int64_t cs, float alpha,
                                 int8_t *bp, int32_t *colsum, float *scale) {
  const int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG);
  int8_t tmp[DYNQ_QGEMM_KG * 64];
  for (int64_t n0 = 0; n0 < N; n0 += DYNQ_QGEMM_NR) {
    const int w = N - n0 < DYNQ_QGEMM_NR ? (int)(N - n0) : DYNQ_QGEMM_NR;
    dynq_gvi amv = {0};
    for (int j = 0; j < w; j++) {
      const float *x = B + (n0 + j) * cs;
      int32_t amax = 0;
      for (int64_t k = 0; k < K; k++) {
        float f = fabsf(x[k]);
        int32_t a;
        memcpy(&a, &f, sizeof(a));
        amax = a > amax ? a : amax;
      }
      amv[j] = amax;
    }
    dynq_gvf invv, scv;
    col_scales16(amv, alpha, &invv, &scv);
    int8_t *panel = bp + (n0 / DYNQ_QGEMM_NR) * (Kp * DYNQ_QGEMM_NR);
    for (int j = 0; j < w; j++) {
      const float *x = B + (n0 + j) * cs;
      const float inv = invv[j];
      int8_t *dst = panel + j * DYNQ_QGEMM_KG;
      int32_t sum = 0;
      for (int64_t k0 = 0; k0 < K; k0 += (int64_t)sizeof(tmp)) {
        const int64_t k1 = K - k0 < (int64_t)sizeof(tmp) ? K : k0 + (int64_t)sizeof(tmp);
        const int64_t n = k1 - k0, np = dynq__round_up(n, DYNQ_QGEMM_KG);
        for (int64_t k = 0; k < n; k++) {
          int8_t q = q1(x[k0 + k], inv);
          tmp[k] = q;
          sum += q;
        }
        for (int64_t k = n; k < np; k++) tmp[k] = 0;
        for (int64_t g = 0; g < np / DYNQ_QGEMM_KG; g++)
          memcpy(dst + (k0 / DYNQ_QGEMM_KG + g) * 64, tmp + g * DYNQ_QGEMM_KG, DYNQ_QGEMM_KG);
      }
      colsum[n0 + j] = sum;
      scale[n0 + j] = scv[j];
    }
  }
}

/* Rows unit-stride along n (B[k * rs + n]): 16 columns (one panel) at a
 * time, their scales from a pass over every row, then row by row.  Loops
 * over 16 fixed columns, which GCC vectorizes in each clone (the 16-lane
 * generic vectors of the other packers went through the stack on AVX2:
 * a quarter of an attention layer's time on Zen 3); columns past the
 * matrix's last read as 0, as their panel bytes are. */
CLONES VEC static void pack_rows(int64_t K, int64_t N, const float *B, int64_t rs, float alpha,
                                 int8_t *bp, int32_t *colsum, float *scale) {
  const int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG);
  for (int64_t n0 = 0; n0 < N; n0 += DYNQ_QGEMM_NR) {
    const int w = N - n0 < DYNQ_QGEMM_NR ? (int)(N - n0) : DYNQ_QGEMM_NR;
    int32_t am[L] = {0};
    for (int64_t k = 0; k < K; k++) {
      const float *row = B + k * rs + n0;
      if (w == L) {
        for (int j = 0; j < L; j++) {
          float f = fabsf(row[j]);
          int32_t a;
          memcpy(&a, &f, sizeof(a));
          am[j] = a > am[j] ? a : am[j];
        }
      } else {
        for (int j = 0; j < w; j++) {
          float f = fabsf(row[j]);
          int32_t a;
          memcpy(&a, &f, sizeof(a));
          am[j] = a > am[j] ? a : am[j];
        }
      }
    }
    dynq_gvi amv;
    dynq_gvf vinv, scv;
    memcpy(&amv, am, sizeof(amv));
    col_scales16(amv, alpha, &vinv, &scv);
    float inv[L];
    memcpy(inv, &vinv, sizeof(inv));
    for (int j = 0; j < w; j++) scale[n0 + j] = scv[j];
    int8_t *panel = bp + (n0 / DYNQ_QGEMM_NR) * (Kp * DYNQ_QGEMM_NR);
    int32_t sum[L] = {0};
    /* a group of 4 rows is one 64-byte group of the panel: column j's 4
     * bytes in its 32-bit lane, k % 4 = 0 lowest (little-endian) */
    for (int64_t k0 = 0; k0 < K; k0 += DYNQ_QGEMM_KG) {
      uint32_t g[L] = {0};
      for (int r = 0; r < DYNQ_QGEMM_KG && k0 + r < K; r++) {
        const float *row = B + (k0 + r) * rs + n0;
        float x[L];
        if (w == L) memcpy(x, row, sizeof(x));
        else {
          memset(x, 0, sizeof(x));
          memcpy(x, row, sizeof(float) * (size_t)w);
        }
        for (int j = 0; j < L; j++) {
          int32_t q = q1(x[j], inv[j]);
          sum[j] += q;
          g[j] |= ((uint32_t)q & 0xffu) << (8 * r);
        }
      }
      memcpy(panel + (k0 / DYNQ_QGEMM_KG) * 64, g, sizeof(g));
    }
    for (int j = 0; j < w; j++) colsum[n0 + j] = sum[j];
  }
}

void dynq__quantize_cols_packed(int64_t K, int64_t N, const float *B, int64_t rs, int64_t cs,
                                float alpha, int8_t *bp, int32_t *colsum, float *scale) {
  const int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG), Np = dynq__round_up(N, DYNQ_QGEMM_NR);
  memset(bp, 0, (size_t)(Np * Kp));
  if (K <= 0 || N <= 0) {
    for (int64_t n = 0; n < N; n++) colsum[n] = 0, scale[n] = alpha;
    return;
  }
  if (rs == 1 || K == 1) {
    pack_cols(K, N, B, N == 1 ? K : cs, alpha, bp, colsum, scale);
  } else if (cs == 1 || N == 1) {
    pack_rows(K, N, B, rs, alpha, bp, colsum, scale);
  } else {  /* neither axis unit-stride: element by element */
    for (int64_t n = 0; n < N; n++) {
      int32_t amax = 0;
      float inv;
      for (int64_t k = 0; k < K; k++) {
        float f = fabsf(B[k * rs + n * cs]);
        int32_t a;
        memcpy(&a, &f, sizeof(a));
        amax = a > amax ? a : amax;
      }
      col_scale(amax, alpha, &inv, &scale[n]);
      int8_t *dst = bp + (n / DYNQ_QGEMM_NR) * (Kp * DYNQ_QGEMM_NR) + (n % DYNQ_QGEMM_NR) * DYNQ_QGEMM_KG;
      int32_t s = 0;
      for (int64_t k = 0; k < K; k++) {
        int8_t q = q1(B[k * rs + n * cs], inv);
        dst[(k / DYNQ_QGEMM_KG) * 64 + k % DYNQ_QGEMM_KG] = q;
        s += q;
      }
      colsum[n] = s;
    }
  }
}
