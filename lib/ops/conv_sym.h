/*
 * FP32 Conv 1-D over one channel with mirror-symmetric kernel rows (an
 * STFT front end): half the multiply-adds.  See conv_sym.c.
 */
#ifndef DYNQ_CONV_SYM_H
#define DYNQ_CONV_SYM_H

#include <stdint.h>

/* Shorter kernels gain too little to be worth a second code path. */
#define DYNQ_CONV_SYM_MIN_TAPS 16

/* Rows of w [M, N] (one input channel): E when rows [0, E) are exactly
 * even about N/2 (w[m][N-j] == w[m][j], j = 1..N-1) and rows [E, M)
 * exactly odd (w[m][N-j] == -w[m][j]); -1 otherwise, or when N is odd or
 * below DYNQ_CONV_SYM_MIN_TAPS. */
int64_t dynq__conv_sym_split(const float *w, int64_t M, int64_t N);

typedef struct dynq__conv_sym {
  int64_t n_img;      /* images in the batch */
  int64_t L;          /* input length (one channel) */
  int64_t M, N, E;    /* output channels, taps, even rows (from _split) */
  int64_t stride, pad_begin;
  int64_t P;          /* output positions per image */
} dynq__conv_sym_t;

/* Y [n_img, M, P] = conv(X [n_img, 1, L], w [M, 1, N]) + bias (may be
 * NULL); dilation 1, zero padding.  0 or -ENOMEM. */
int dynq__conv_sym_f32(const dynq__conv_sym_t *g, const float *X, const float *w,
                       const float *bias, float *Y);

#endif
