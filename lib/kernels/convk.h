/*
 * FP32 conv kernels beside the INT8 GEMM kernels of kernels.h: depthwise
 * conv rows, the fused conv epilogue, and the [P, M] -> [M, P] transpose
 * of a quantized conv's GEMM result, with their dispatch.  One reference
 * (convk.c) and one file per ISA; every variant gives the reference's bits.
 *
 * Depthwise rows.  lib/ops/conv.c copies each input channel into a
 * zero-padded scratch image whose rows are split by column phase (for a
 * column stride s, phase p holds the padded columns p, p + s, ...), so
 * that every tap of a strided or dilated filter reads one contiguous run
 * and no kernel tests a bound.  A kernel computes one output row:
 *
 *   y[ox] = bias + sum over a < na, b < kw (in that order, a outer) of
 *           w[a * kw + b] * x[a * rs + off[b] + ox]        for ox < ow
 *
 * each step one float multiply then one float add (no FMA: the build's
 * -ffp-contract=off keeps the reference so), then the epilogue.  x may be
 * read up to DYNQ_DW_SLACK floats past the last x[a * rs + off[b] + ow - 1]
 * (the scratch rows carry that many padding floats); y is written only in
 * [0, ow).
 *
 * Epilogue (a Conv's fused tail, models/fuse_cnn.c), on each value v:
 *   if pre:  v = v * pm, then v = v + pa
 *   RELU:    v = v > 0 || v is NaN ? v : 0
 *   CLIP:    v = v < lo ? lo : v, then v = v > hi ? hi : v
 *   HARD:    h = al * v, h = h + be, h = 0 > h ? 0 : h, h = 1 < h ? 1 : h,
 *            v = h (HardSigmoid) or v = v * h (HardSwish: al 1/6, be 1/2)
 *   if post: v = v * qm, then v = v + qa
 * the operations, in this order, of the ops it replaces (elementwise.c),
 * so a fused graph gives the unfused one's bits.  Sigmoid is not here:
 * conv.c applies it with vmath's scalar sigmoid.
 */
#ifndef DYNQ_CONVK_H
#define DYNQ_CONVK_H

#include <stdint.h>

#include "kernels.h"

#define DYNQ_DW_SLACK 16 /* floats a kernel may read past a row's last used one */

enum { DYNQ_EPI_NONE = 0, DYNQ_EPI_RELU, DYNQ_EPI_CLIP, DYNQ_EPI_HARDSIGMOID,
       DYNQ_EPI_HARDSWISH };

typedef struct dynq__conv_epi {
  int act;              /* DYNQ_EPI_* */
  int pre, post;        /* apply the affine steps before / after act */
  float pm, pa, qm, qa; /* pre and post multiplier and addend */
  float lo, hi;         /* CLIP bounds */
  float al, be;         /* HARD slope and offset */
} dynq__conv_epi_t;

typedef struct dynq__dw_row {
  const float *x;       /* the first tap row's scratch row (phase 0) */
  int64_t rs;           /* floats from one tap row's scratch row to the next */
  const int64_t *off;   /* [kw] column b's phase and column offset in a row */
  const float *w;       /* [na * kw] the taps' weights, row-major */
  int64_t na, kw;       /* tap rows inside the image, taps per row */
  float bias;
  const dynq__conv_epi_t *epi; /* NULL: none */
  float *y;             /* [ow] */
  int64_t ow;
} dynq__dw_row_t;

typedef struct dynq__conv_kernel {
  const char *name;     /* "ref", "avx2", "avx512" */
  int (*supported)(void);
  void (*dw_row)(const dynq__dw_row_t *r);
  /* the epilogue on y[0..n) in place */
  void (*epi)(const dynq__conv_epi_t *e, float *y, int64_t n);
  /* dst[c * ldd + r] = epi(src[r * lds + c]) for r < rows, c < cols
   * (epi NULL: none); src and dst do not overlap */
  void (*transpose)(const float *src, int64_t lds, float *dst, int64_t ldd, int64_t rows,
                    int64_t cols, const dynq__conv_epi_t *epi);
} dynq__conv_kernel_t;

extern const dynq__conv_kernel_t dynq__conv_kernel_ref;

/* The conv kernel of the ISA level of an INT8 kernel (so DYNQ_KERNEL=ref
 * or avx2 also picks the matching conv code, for tests and benchmarks);
 * the reference for NULL or an unknown one. */
const dynq__conv_kernel_t *dynq__conv_kernel_for(const dynq__kernel_t *k);
/* All compiled conv kernels, best first; count in *ret_n. */
const dynq__conv_kernel_t *const *dynq__conv_kernel_list(int *ret_n);

#endif
