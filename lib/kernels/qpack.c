/*
 * Run-time weight-side quantization for products of two activations
 * (attention's Q K^T and P V): the right operand quantized per column,
 * symmetric int8, written straight into the packed panel layout the qgemm
 * kernels read (kernels.h), with its column sums and scales.  The operand
 * is read in place through its strides: K^T's columns are K's rows
 * (unit-stride along k), V's rows are unit-stride along n; any other
 * layout takes the plain loop.
 *
 * Plain C with generic vectors (gvec.h) compiled for AVX-512, AVX2 and the
 * baseline (target_clones): integer results and the same float operations
 * in every clone, so every machine packs the same bytes.
 */
#include "kernels.h"

#include <math.h>
#include <string.h>

#include "gvec.h"

#define CLONES DYNQ_CLONES
#define L DYNQ_GV_LANES

typedef int8_t qbytes_t __attribute__((vector_size(DYNQ_GV_LANES)));
typedef uint32_t qgroup_t __attribute__((vector_size(4 * DYNQ_GV_LANES)));

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

static inline __attribute__((always_inline)) dynq_gvi imax(dynq_gvi a, dynq_gvi b) {
  return ((a > b) & a) | (~(a > b) & b);
}

/* The largest lane (pairwise halving, so a fixed order). */
static inline __attribute__((always_inline)) int32_t imax_lanes(dynq_gvi v) {
  v = imax(v, __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  v = imax(v, __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3));
  v = imax(v, __builtin_shufflevector(v, v, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1));
  v = imax(v, __builtin_shufflevector(v, v, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0));
  return v[0];
}

static inline __attribute__((always_inline)) int32_t isum_lanes(dynq_gvi v) {
  v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3);
  v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1);
  v += __builtin_shufflevector(v, v, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
  return v[0];
}

/* clamp(rne(x * inv), -127, 127) per lane, as int32 */
static inline __attribute__((always_inline)) dynq_gvi q16(dynq_gvf x, dynq_gvf inv) {
  const dynq_gvf magic = dynq_gv_splat(12582912.0f);  /* 1.5 * 2^23: adding it rounds */
  dynq_gvf t = x * inv;  /* clamps written so that NaN becomes 127 */
  t = dynq_gv_sel(t < 127.0f, t, dynq_gv_splat(127.0f));
  t = dynq_gv_sel(t > -127.0f, t, dynq_gv_splat(-127.0f));
  t = (t + magic) - magic;
  return __builtin_convertvector(t, dynq_gvi);
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

typedef uint32_t u32x4_t __attribute__((vector_size(16)));
typedef uint32_t u32x8_t __attribute__((vector_size(32)));

/* r[j] = the largest lane of a[j] (op IMAX) or the sum of its lanes (op
 * ISUM), for 16 vectors at once: a tree of two-vector shuffles, 15
 * operations instead of 16 dependent lane reductions.  Integer results,
 * so the order does not matter. */
#define COMBINE(op, x, y) ((op) ? imax((x), (y)) : (x) + (y))
static inline __attribute__((always_inline)) dynq_gvi lanes16(const dynq_gvi *a, int op) {
  dynq_gvi b[8], c[4], d[2];
#pragma GCC unroll 8
  for (int j = 0; j < 8; j++)  /* lanes 0-7: column j, 8-15: column j + 8 */
    b[j] = COMBINE(op, __builtin_shufflevector(a[j], a[j + 8], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23),
                   __builtin_shufflevector(a[j], a[j + 8], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
#pragma GCC unroll 4
  for (int j = 0; j < 4; j++)  /* groups of 4 lanes: columns j, j + 4, j + 8, j + 12 */
    c[j] = COMBINE(op, __builtin_shufflevector(b[j], b[j + 4], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27),
                   __builtin_shufflevector(b[j], b[j + 4], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31));
#pragma GCC unroll 2
  for (int j = 0; j < 2; j++)  /* pairs: columns j, j + 2, ..., j + 14 */
    d[j] = COMBINE(op, __builtin_shufflevector(c[j], c[j + 2], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29),
                   __builtin_shufflevector(c[j], c[j + 2], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31));
  return COMBINE(op, __builtin_shufflevector(d[0], d[1], 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30),
                 __builtin_shufflevector(d[0], d[1], 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31));
}

/* One 64-byte group g of a panel from 16 columns' 16 bytes each (p[k]:
 * columns 4k..4k+3, column 4k+m's 4-byte group g in lane 4m + g). */
#define GROUP(p, g)                                                                          \
  __builtin_shufflevector(                                                                   \
      __builtin_shufflevector(p[0], p[1], g, 4 + g, 8 + g, 12 + g, 16 + g, 20 + g, 24 + g, 28 + g), \
      __builtin_shufflevector(p[2], p[3], g, 4 + g, 8 + g, 12 + g, 16 + g, 20 + g, 24 + g, 28 + g), \
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

/* A full panel (16 columns) of a K that is a multiple of 16: all 16
 * columns' scales from one shuffle tree, then 16 k at a time for all 16
 * columns, the bytes transposed into the panel's four groups in
 * registers.  The same bytes, sums and scales as the column loop. */
static inline __attribute__((always_inline)) void pack_panel16(int64_t K, const float *B,
                                                               int64_t cs, float alpha,
                                                               int8_t *panel, int32_t *colsum,
                                                               float *scale) {
  dynq_gvi am[L], sum[L];
#pragma GCC unroll 16
  for (int j = 0; j < L; j++) {
    const float *x = B + j * cs;
    am[j] = (dynq_gvi){0};
    sum[j] = (dynq_gvi){0};
    for (int64_t k = 0; k < K; k += L) am[j] = imax(am[j], (dynq_gvi)dynq_gv_abs(dynq_gv_load(x + k)));
  }
  dynq_gvf invv, scv;
  col_scales16(lanes16(am, 1), alpha, &invv, &scv);
  for (int64_t k = 0; k < K; k += L) {
    u32x4_t d[L];
#pragma GCC unroll 16
    for (int j = 0; j < L; j++) {
      dynq_gvi q = q16(dynq_gv_load(B + j * cs + k), dynq_gv_splat(invv[j]));
      sum[j] += q;
      qbytes_t b = __builtin_convertvector(q, qbytes_t);
      memcpy(&d[j], &b, sizeof(b));
    }
    qgroup_t p[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
      u32x8_t lo = __builtin_shufflevector(d[4 * i], d[4 * i + 1], 0, 1, 2, 3, 4, 5, 6, 7);
      u32x8_t hi = __builtin_shufflevector(d[4 * i + 2], d[4 * i + 3], 0, 1, 2, 3, 4, 5, 6, 7);
      p[i] = __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    }
    qgroup_t g0 = GROUP(p, 0), g1 = GROUP(p, 1), g2 = GROUP(p, 2), g3 = GROUP(p, 3);
    int8_t *dst = panel + (k / DYNQ_QGEMM_KG) * 64;
    memcpy(dst, &g0, 64);
    memcpy(dst + 64, &g1, 64);
    memcpy(dst + 128, &g2, 64);
    memcpy(dst + 192, &g3, 64);
  }
  dynq_gvi cs16 = lanes16(sum, 0);
  for (int j = 0; j < L; j++) colsum[j] = cs16[j], scale[j] = scv[j];
}

/* Columns unit-stride along k (B[k + n * cs]): a panel of 16 columns at a
 * time, their scales together, then each column's bytes, 4 per group. */
CLONES static void pack_cols(int64_t K, int64_t N, const float *B, int64_t cs, float alpha,
                             int8_t *bp, int32_t *colsum, float *scale) {
  const int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG);
  int8_t tmp[DYNQ_QGEMM_KG * 64];
  for (int64_t n0 = 0; n0 < N; n0 += DYNQ_QGEMM_NR) {
    const int w = N - n0 < DYNQ_QGEMM_NR ? (int)(N - n0) : DYNQ_QGEMM_NR;
    if (w == L && K % L == 0) {
      pack_panel16(K, B + n0 * cs, cs, alpha, bp + (n0 / DYNQ_QGEMM_NR) * (Kp * DYNQ_QGEMM_NR),
                   colsum + n0, scale + n0);
      continue;
    }
    dynq_gvi amv = {0};
    for (int j = 0; j < w; j++) {
      const float *x = B + (n0 + j) * cs;
      dynq_gvi am = {0};
      int64_t k = 0;
      for (; k + L <= K; k += L) am = imax(am, (dynq_gvi)dynq_gv_abs(dynq_gv_load(x + k)));
      int32_t amax = imax_lanes(am);
      for (; k < K; k++) {
        int32_t a;
        float f = fabsf(x[k]);
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
      const dynq_gvf vinv = dynq_gv_splat(inv);
      int8_t *dst = panel + j * DYNQ_QGEMM_KG;
      dynq_gvi sum = {0};
      int32_t s1 = 0;
      int64_t k = 0;
      /* 256 k at a time through tmp, then 4 bytes per group into the panel */
      for (int64_t k0 = 0; k0 < K; k0 += (int64_t)sizeof(tmp)) {
        int64_t k1 = K - k0 < (int64_t)sizeof(tmp) ? K : k0 + (int64_t)sizeof(tmp);
        for (k = k0; k + L <= k1; k += L) {
          dynq_gvi q = q16(dynq_gv_load(x + k), vinv);
          sum += q;
          qbytes_t b = __builtin_convertvector(q, qbytes_t);
          memcpy(tmp + (k - k0), &b, sizeof(b));
        }
        for (; k < k1; k++) {
          tmp[k - k0] = q1(x[k], inv);
          s1 += tmp[k - k0];
        }
        for (; k < dynq__round_up(k1, DYNQ_QGEMM_KG); k++) tmp[k - k0] = 0;
        for (int64_t g = k0 / DYNQ_QGEMM_KG; g < k / DYNQ_QGEMM_KG; g++)
          memcpy(dst + g * 64, tmp + (g * DYNQ_QGEMM_KG - k0), DYNQ_QGEMM_KG);
      }
      colsum[n0 + j] = isum_lanes(sum) + s1;
      scale[n0 + j] = scv[j];
    }
  }
}

/* Rows unit-stride along n (B[k * rs + n]): 16 columns (one panel) at a
 * time, their scales from a pass over every row, then row by row. */
CLONES static void pack_rows(int64_t K, int64_t N, const float *B, int64_t rs, float alpha,
                             int8_t *bp, int32_t *colsum, float *scale) {
  const int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG);
  for (int64_t n0 = 0; n0 < N; n0 += DYNQ_QGEMM_NR) {
    const int w = N - n0 < DYNQ_QGEMM_NR ? (int)(N - n0) : DYNQ_QGEMM_NR;
    dynq_gvf v = dynq_gv_splat(0.0f);
    dynq_gvi am = {0};
    int64_t k = 0;
    if (w == L) {  /* four chains: the maximum is exact in any order */
      dynq_gvi a1 = {0}, a2 = {0}, a3 = {0};
      for (; k + 4 <= K; k += 4) {
        am = imax(am, (dynq_gvi)dynq_gv_abs(dynq_gv_load(B + k * rs + n0)));
        a1 = imax(a1, (dynq_gvi)dynq_gv_abs(dynq_gv_load(B + (k + 1) * rs + n0)));
        a2 = imax(a2, (dynq_gvi)dynq_gv_abs(dynq_gv_load(B + (k + 2) * rs + n0)));
        a3 = imax(a3, (dynq_gvi)dynq_gv_abs(dynq_gv_load(B + (k + 3) * rs + n0)));
      }
      am = imax(imax(am, a1), imax(a2, a3));
    }
    for (; k < K; k++) {
      if (w == L) v = dynq_gv_load(B + k * rs + n0);
      else memcpy(&v, B + k * rs + n0, sizeof(float) * (size_t)w);
      am = imax(am, (dynq_gvi)dynq_gv_abs(v));
    }
    dynq_gvf vinv, scv;
    col_scales16(am, alpha, &vinv, &scv);
    for (int j = 0; j < w; j++) scale[n0 + j] = scv[j];
    int8_t *panel = bp + (n0 / DYNQ_QGEMM_NR) * (Kp * DYNQ_QGEMM_NR);
    dynq_gvi sum = {0};
    /* a group of 4 rows is one 64-byte group of the panel: lane j holds
     * column j's 4 bytes, k % 4 = 0 lowest (little-endian) */
    for (int64_t k0 = 0; k0 < K; k0 += DYNQ_QGEMM_KG) {
      qgroup_t g = {0};
      for (int r = 0; r < DYNQ_QGEMM_KG && k0 + r < K; r++) {
        const float *row = B + (k0 + r) * rs + n0;
        if (w == L) v = dynq_gv_load(row);
        else memcpy(&v, row, sizeof(float) * (size_t)w);
        dynq_gvi q = q16(v, vinv);
        sum += q;
        g |= ((qgroup_t)q & 0xffu) << (8 * r);
      }
      memcpy(panel + (k0 / DYNQ_QGEMM_KG) * 64, &g, sizeof(g));
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
