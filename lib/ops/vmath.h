/*
 * Vector math shared by every op, the QLinear epilogue and the RNN cells,
 * so that each function gives the same bits wherever it runs.
 *
 * Scalar functions, always inlined: a loop over arrays of them vectorizes
 * in the caller (GCC with -fvect-cost-model=cheap or -O3), with the
 * selects written as ?: so the compiler if-converts them.  The build
 * passes -ffp-contract=off, so a clone compiled for AVX-512 computes the
 * same IEEE operations in the same order as the baseline one: same bits.
 *
 * Accuracy (float32, measured against double precision over their whole
 * range): exp within 2 ulp (denormal results included, +inf above
 * 88.72, NaN propagates); sigmoid within 1e-7 absolute; tanh within 3 ulp; erf
 * within 3 ulp.
 */
#ifndef DYNQ_OPS_VMATH_H
#define DYNQ_OPS_VMATH_H

#include <stdint.h>
#include <string.h>

#define DYNQ_VMATH static inline __attribute__((always_inline))

/* e^x: 2^n * p(r) with x = n ln2 + r, |r| <= ln2/2 and a degree-7
 * polynomial for e^r.  2^n is applied as two halves so that n may reach
 * 128 (overflow to inf) and -150 (denormal results) without bit tricks
 * out of range. */
DYNQ_VMATH float dynq_vexp(float x) {
  x = x < -104.0f ? -104.0f : x;
  x = x > 89.0f ? 89.0f : x;
  const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  float t = x * 1.44269504088896341f + magic;
  float n = t - magic;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  uint32_t tb;
  memcpy(&tb, &t, sizeof(tb));
  int32_t ni = (int32_t)(tb - 0x4B400000u), n1 = ni >> 1, n2 = ni - n1;
  uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
  float s1, s2;
  memcpy(&s1, &b1, sizeof(s1));
  memcpy(&s2, &b2, sizeof(s2));
  return p * s1 * s2;
}

DYNQ_VMATH float dynq_vsigmoid(float x) { return 1.0f / (1.0f + dynq_vexp(-x)); }

/* An odd polynomial below |x| = 0.625 (fitted to tanh(x)/x, relative
 * error 5e-10), where 1 - 2/(e^2x + 1) would cancel; both branches are
 * computed and one selected (vectorizes). */
DYNQ_VMATH float dynq_vtanh(float x) {
  float big = 1.0f - 2.0f / (dynq_vexp(2.0f * x) + 1.0f);
  float u = x * x;
  float p = 2.1656800527125597e-03f;
  p = p * u - 8.19985568523407e-03f;
  p = p * u + 2.1708451211452484e-02f;
  p = p * u - 5.3947798907756805e-02f;
  p = p * u + 1.3333208858966827e-01f;
  p = p * u - 3.333333134651184e-01f;
  float small = x + x * (u * p);
  return (x < 0.625f && x > -0.625f) ? small : big;
}

/* erf: x P(x^2) below |x| = 1; 1 - e^(-x^2) Q(1/x) up to 4 (Q fits
 * erfc(x) e^(x^2), relative error 1e-8); +-1 beyond (erf(3.92) rounds to
 * 1 in float).  Coefficients fitted for this file (weighted least
 * squares, then rounded to float). */
DYNQ_VMATH float dynq_verf(float x) {
  float a = x < 0.0f ? -x : x;
  float u = a * a;
  float ps = 7.971048762556165e-05f;
  ps = ps * u - 8.043373818509281e-04f;
  ps = ps * u + 5.1918332464993e-03f;
  ps = ps * u - 2.6855509728193283e-02f;
  ps = ps * u + 1.1283621937036514e-01f;
  ps = ps * u - 3.761262893676758e-01f;
  ps = ps * u + 1.1283791065216064f;
  float small = a * ps;
  float ac = a < 1.0f ? 1.0f : a > 4.0f ? 4.0f : a;
  float t = 1.0f / ac;
  float pl = 3.4023940563201904e-02f;
  pl = pl * t - 1.97182759642601e-01f;
  pl = pl * t + 4.781583547592163e-01f;
  pl = pl * t - 5.886861085891724e-01f;
  pl = pl * t + 2.8018027544021606e-01f;
  pl = pl * t + 2.085258513689041e-01f;
  pl = pl * t - 3.684885501861572e-01f;
  pl = pl * t + 1.8990248441696167e-02f;
  pl = pl * t + 5.619505047798157e-01f;
  pl = pl * t + 1.1182147136423737e-04f;
  float large = 1.0f - dynq_vexp(-(ac * ac)) * pl;
  float r = a < 1.0f ? small : a < 4.0f ? large : 1.0f;
  r = a != a ? a : r; /* NaN */
  return x < 0.0f ? -r : r;
}

#endif
