/*
 * Row quantization with a chosen kernel (or the process-wide one): the
 * activation side of every INT8 GEMM.  Apart from ref.c so that the
 * reference kernel needs nothing from the dispatcher.
 */
#include "kernels.h"

#include <math.h>
#include <string.h>

void dynq__quantize_rows(const dynq__kernel_t *kr, int64_t M, int64_t K,
                         const float *X, size_t ldx, uint8_t *A, size_t lda,
                         int per_tensor, float *a_scale, int32_t *a_zp) {
  if (!kr) kr = dynq__kernel();
  size_t Kp = (size_t)dynq__round_up(K, DYNQ_QGEMM_KG);
  if (M <= 0) return;
  if (per_tensor) {
    float lo = 0.0f, hi = 0.0f;
    int bad = 0;
    for (int64_t m = 0; m < M && K > 0; m++) {
      float mn, mx;
      kr->minmax(X + (size_t)m * ldx, K, &mn, &mx);
      if (!isfinite(mn) || !isfinite(mx)) bad = 1;
      lo = mn < lo ? mn : lo;
      hi = mx > hi ? mx : hi;
    }
    float scale, inv;
    int32_t zp;
    dynq__qparams(bad ? NAN : lo, hi, &scale, &inv, &zp);
    for (int64_t m = 0; m < M; m++) {
      uint8_t *q = A + (size_t)m * lda;
      if (K > 0) kr->quantize(X + (size_t)m * ldx, K, inv, zp, q);
      memset(q + K, 0, Kp - (size_t)K);
      a_scale[m] = scale;
      a_zp[m] = zp;
    }
    return;
  }
  for (int64_t m = 0; m < M; m++) {
    const float *x = X + (size_t)m * ldx;
    uint8_t *q = A + (size_t)m * lda;
    float mn = 0.0f, mx = 0.0f, scale, inv;
    int32_t zp;
    if (K > 0) kr->minmax(x, K, &mn, &mx);
    dynq__qparams(mn, mx, &scale, &inv, &zp);
    if (K > 0) kr->quantize(x, K, inv, zp, q);
    memset(q + K, 0, Kp - (size_t)K);
    a_scale[m] = scale;
    a_zp[m] = zp;
  }
}
