/*
 * The scalar reference kernel (the oracle every SIMD kernel must match bit
 * for bit) and the shared scalar helpers declared in kernels.h: activation
 * quantization parameters, row quantization and weight packing.
 *
 * Edge cases pinned here (and matched by every ISA file):
 *  - minmax: any NaN in the input makes both results NaN; an infinity
 *    shows up as itself.  dynq__qparams() then maps any non-finite range
 *    to scale = NaN, inv = 0, zp = 0 (the output row becomes NaN).
 *  - quantize: x * inv is clamped to [-256, 512] before rounding, written
 *    as "t > lo ? t : lo" then "t < hi ? t : hi" (the exact semantics of
 *    vmaxps/vminps with t first), so NaN becomes -256 and then q = 0, and
 *    huge values never reach an out-of-range float->int conversion.  For
 *    every t the clamped result equals clamp(rne(t) + zp, 0, 255).
 *  - a range so small that 1 / scale overflows (|x| below ~1e-36) is
 *    treated like an all-zero row: scale 1, zp 0.
 *  - ReLU is "0 > y ? 0 : y" (vmaxps with 0 first): NaN stays NaN.
 *  - acc - zp * colsum is computed modulo 2^32 (as vpsubd/vpmulld do); for
 *    valid colsums the exact value fits int32 anyway.
 */
#include "kernels.h"

#include <math.h>
#include <string.h>

void dynq__qparams(float mn, float mx, float *ret_scale, float *ret_inv,
                   int32_t *ret_zp) {
  if (!isfinite(mn) || !isfinite(mx)) {
    *ret_scale = NAN;
    *ret_inv = 0.0f;
    *ret_zp = 0;
    return;
  }
  if (mn > 0.0f) mn = 0.0f;
  if (mx < 0.0f) mx = 0.0f;
  /* Two divisions: mx - mn could overflow to inf for huge ranges. */
  float scale = mx / 255.0f - mn / 255.0f;
  float inv = scale != 0.0f ? 1.0f / scale : INFINITY;
  if (scale == 0.0f || !isfinite(inv)) {
    *ret_scale = 1.0f;
    *ret_inv = 1.0f;
    *ret_zp = 0;
    return;
  }
  float z = nearbyintf(-mn * inv);
  int32_t zp = z < 0.0f ? 0 : z > 255.0f ? 255 : (int32_t)z;
  *ret_scale = scale;
  *ret_inv = inv;
  *ret_zp = zp;
}

static void ref_minmax(const float *x, int64_t n, float *mn, float *mx) {
  float lo = x[0], hi = x[0];
  int nan = 0;
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    nan |= v != v;
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  if (nan) lo = hi = NAN;
  *mn = lo;
  *mx = hi;
}

static void ref_quantize(const float *x, int64_t n, float inv, int32_t zp,
                         uint8_t *q) {
  for (int64_t i = 0; i < n; i++) {
    float t = x[i] * inv;
    t = t > -256.0f ? t : -256.0f;
    t = t < 512.0f ? t : 512.0f;
    int32_t v = (int32_t)lrintf(t) + zp;
    q[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
  }
}

static void ref_qgemm(const dynq__qgemm_args_t *a) {
  int64_t Kp = dynq__round_up(a->K, DYNQ_QGEMM_KG);
  for (int64_t m = 0; m < a->M; m++) {
    const uint8_t *arow = a->A + (size_t)m * a->lda;
    float sa = a->a_scale[m];
    int32_t zp = a->a_zp[m];
    for (int64_t n = a->n0; n < a->n1; n++) {
      const int8_t *panel = a->B + (n / DYNQ_QGEMM_NR) * (Kp * DYNQ_QGEMM_NR)
                            + (n % DYNQ_QGEMM_NR) * DYNQ_QGEMM_KG;
      int32_t acc = 0;
      for (int64_t k = 0; k < a->K; k++)
        acc += (int32_t)arow[k] *
               (int32_t)panel[(k / 4) * 64 + (k % 4)];
      int32_t d = (int32_t)(uint32_t)((uint32_t)acc -
                                      (uint32_t)zp * (uint32_t)a->colsum[n]);
      float t = (float)d;
      float s = sa * a->w_scale[n];
      float y = s * t;
      if (a->bias) y = y + a->bias[n];
      if (a->act == DYNQ_ACT_RELU) y = 0.0f > y ? 0.0f : y;
      a->C[(size_t)m * a->ldc + n] = y;
    }
  }
}

static int ref_supported(void) { return 1; }

const dynq__kernel_t dynq__kernel_ref = {
  .name = "ref",
  .isa = "portable C (any x86-64)",
  .supported = ref_supported,
  .qgemm = ref_qgemm,
  .minmax = ref_minmax,
  .quantize = ref_quantize,
};

void dynq__pack_weights(int64_t N, int64_t K, const int8_t *W, int8_t *B) {
  int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG);
  int64_t Np = dynq__round_up(N, DYNQ_QGEMM_NR);
  memset(B, 0, (size_t)(Np * Kp));
  for (int64_t n = 0; n < N; n++) {
    int8_t *dst = B + (n / DYNQ_QGEMM_NR) * (Kp * DYNQ_QGEMM_NR)
                  + (n % DYNQ_QGEMM_NR) * DYNQ_QGEMM_KG;
    const int8_t *src = W + (size_t)n * (size_t)K;
    for (int64_t k = 0; k < K; k++)
      dst[(k / 4) * 64 + (k % 4)] = src[k];
  }
}
