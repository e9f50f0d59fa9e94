/*
 * 16 floats (or int32) as one GCC generic vector, for code compiled with
 * target_clones: one zmm register in the AVX-512 clone, two ymm in the
 * AVX2 one, four xmm in the baseline, the same IEEE operations in every
 * clone (so the same bits).  Selects are masks and bit operations: C has
 * no vector ?:.  Every helper is always inlined, so no vector crosses a
 * call and GCC's note on the AVX-512 vector ABI does not apply.
 */
#ifndef DYNQ_KERNELS_GVEC_H
#define DYNQ_KERNELS_GVEC_H

#include <stdint.h>
#include <string.h>

#include "clones.h"

#pragma GCC diagnostic ignored "-Wpsabi"

#define DYNQ_GV_LANES 16
#define DYNQ_GV static inline __attribute__((always_inline))

typedef float dynq_gvf __attribute__((vector_size(4 * DYNQ_GV_LANES)));
typedef int32_t dynq_gvi __attribute__((vector_size(4 * DYNQ_GV_LANES)));

DYNQ_GV dynq_gvf dynq_gv_load(const float *p) {
  dynq_gvf v;
  memcpy(&v, p, sizeof(v));
  return v;
}
DYNQ_GV void dynq_gv_store(float *p, dynq_gvf v) { memcpy(p, &v, sizeof(v)); }
DYNQ_GV dynq_gvf dynq_gv_splat(float x) {
  return (dynq_gvf){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x};
}
/* m ? a : b per lane (m all ones or all zeros, as a comparison gives) */
DYNQ_GV dynq_gvf dynq_gv_sel(dynq_gvi m, dynq_gvf a, dynq_gvf b) {
  return (dynq_gvf)((m & (dynq_gvi)a) | (~m & (dynq_gvi)b));
}
DYNQ_GV dynq_gvf dynq_gv_abs(dynq_gvf a) { return (dynq_gvf)((dynq_gvi)a & 0x7fffffff); }
/* all ones where a is NaN or infinite */
DYNQ_GV dynq_gvi dynq_gv_nonfinite(dynq_gvf a) {
  return ((dynq_gvi)a & 0x7fffffff) >= 0x7f800000;
}

#endif
