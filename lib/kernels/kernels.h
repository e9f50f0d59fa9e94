/*
 * INT8 GEMM kernels and the dispatch seam.
 *
 * One file per ISA (ref.c is the oracle), each exporting one dynq__kernel_t.
 * The table in dispatch.c is ordered best first; dynq__kernels_init() picks
 * the first one the CPU (CPUID) and the OS (XGETBV) support, unless the
 * DYNQ_KERNEL override names another.
 *
 * Numerics every kernel must reproduce bit for bit (see docs/NUMERICS.md):
 *
 *   Packed weights B (int8, symmetric, [-127, 127]) for an N x K matrix W
 *   (row n = output channel n): Kp = round_up(K, 4), Np = round_up(N, 16);
 *   panels of 16 output channels; inside a panel, groups of 4 k; inside a
 *   group, for each of the 16 channels its 4 consecutive k bytes:
 *       B[(n / 16) * (Kp * 16) + (k / 4) * 64 + (n % 16) * 4 + (k % 4)]
 *   Padding (k >= K or n >= N) holds 0.  Size Np * Kp bytes, 64-aligned.
 *   This is exactly the operand order of vpdpbusd (4 u8 x 4 s8 per lane).
 *
 *   Activations A (uint8, asymmetric): M rows of Kp bytes at stride lda,
 *   padding bytes k >= K hold 0.
 *
 *   acc[m][n] = sum_k A[m][k] * B[n][k]                (int32, exact)
 *   t  = (float)(acc - a_zp[m] * colsum[n])            (int32, then RNE)
 *   s  = a_scale[m] * w_scale[n]                       (float multiply)
 *   y  = s * t                                         (float multiply)
 *   y  = y + bias[n]                    if bias        (float add)
 *   y  = y > 0 ? y : 0                  if act RELU   (NaN stays NaN)
 *   C[m * ldc + n] = y
 *
 *   No FMA contraction anywhere in these steps (the build passes
 *   -ffp-contract=off).  K <= DYNQ_QGEMM_MAX_K keeps acc inside int32.
 *
 *   Activation quantization, per row (or once per tensor):
 *     mn = min(0, min x), mx = max(0, max x)
 *     scale = mx / 255 - mn / 255     (two divisions: no overflow)
 *     if scale == 0: scale = 1, zp = 0
 *     inv = 1 / scale, zp = clamp(rne(-mn * inv), 0, 255)
 *     q[k] = clamp(rne(x[k] * inv) + zp, 0, 255)
 *   A row holding NaN or +-Inf gets scale = NaN, inv = 0, zp = 0, so its
 *   output row is NaN (propagated, not rejected).
 */
#ifndef DYNQ_KERNELS_H
#define DYNQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define DYNQ_QGEMM_NR 16   /* output channels per packed panel */
#define DYNQ_QGEMM_KG 4    /* k values per group */
#define DYNQ_QGEMM_MAX_K 65536

/* Fused activations.  Kernels apply NONE and RELU inside their epilogue;
 * SIGMOID, GELU (exact, erf form) and GELU_TANH (the tanh approximation,
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))) are applied by QLINEAR to each column
 * block right after its kernel call, while it is in cache, through one C
 * function (dynq__act_apply, lib/ops/opkit.h; GELU there uses a rational erf
 * within 1e-6 of the exact one): the same IEEE operations on every ISA, so
 * results stay bit-identical across kernels.  Kernels never see them. */
enum { DYNQ_ACT_NONE = 0, DYNQ_ACT_RELU = 1, DYNQ_ACT_SIGMOID = 2, DYNQ_ACT_GELU = 3,
       DYNQ_ACT_GELU_TANH = 4 };

static inline int64_t dynq__round_up(int64_t x, int64_t m) {
  return (x + m - 1) / m * m;
}

typedef struct dynq__qgemm_args {
  int64_t M, N, K;          /* logical sizes; K <= DYNQ_QGEMM_MAX_K */
  const uint8_t *A;         /* M rows, row stride lda >= Kp, pad = 0 */
  size_t lda;
  const int8_t *B;          /* packed weights, Np * Kp bytes */
  const int32_t *colsum;    /* [N] sum_k W[n][k] */
  const float *w_scale;     /* [N] */
  const float *a_scale;     /* [M] */
  const int32_t *a_zp;      /* [M] */
  const float *bias;        /* [N] or NULL */
  int act;                  /* DYNQ_ACT_* */
  float *C;                 /* M rows, row stride ldc >= N (any alignment) */
  size_t ldc;
  int64_t n0, n1;           /* compute columns [n0, n1): n0 % 16 == 0, n1 <= N */
  /* Optional: weights the caller runs next (another column block of B),
   * which a kernel may prefetch into L2 while it finishes; never read as
   * data.  NULL for none. */
  const int8_t *pf_next;
  size_t pf_next_bytes;
} dynq__qgemm_args_t;

typedef struct dynq__kernel {
  const char *name;     /* "ref", "avx2", "avxvnni", "avx512vnni" */
  const char *isa;      /* human description of what it needs */
  int (*supported)(void);
  void (*qgemm)(const dynq__qgemm_args_t *a);
  /* Exact min and max of x[0..n) when all are finite; if any element is
   * NaN or infinite, at least one of *mn, *mx is non-finite.  n >= 1. */
  void (*minmax)(const float *x, int64_t n, float *mn, float *mx);
  /* q[k] = clamp(rne(x[k] * inv) + zp, 0, 255) for k in [0, n). */
  void (*quantize)(const float *x, int64_t n, float inv, int32_t zp,
                   uint8_t *q);
} dynq__kernel_t;

extern const dynq__kernel_t dynq__kernel_ref;

/* Select the kernel once per process.  `override` (may be NULL or "")
 * names a kernel ("auto" means pick); returns 0, or DYNQ_EKERNEL with
 * *ret_msg set to a static explanation. */
int dynq__kernels_init(const char *override, const char **ret_msg);
/* The selected kernel (the best supported one if init was not called). */
const dynq__kernel_t *dynq__kernel(void);
/* Lookup by name among compiled kernels; NULL if unknown. */
const dynq__kernel_t *dynq__kernel_find(const char *name);
/* All compiled kernels, best first; count in *ret_n. */
const dynq__kernel_t *const *dynq__kernel_list(int *ret_n);

/* Apply act (any DYNQ_ACT_*) to columns [n0, n1) of M rows of C. */

/* Shared scalar helpers (the pinned formulas above). */
void dynq__qparams(float mn, float mx, float *ret_scale, float *ret_inv,
                   int32_t *ret_zp);
/* Quantize M rows of K floats (stride ldx) into A (stride lda, Kp bytes,
 * pad zeroed), one scale/zp per row, or one for the whole tensor when
 * per_tensor (then a_scale/a_zp still hold M copies). */
void dynq__quantize_rows(const dynq__kernel_t *kr, int64_t M, int64_t K,
                         const float *X, size_t ldx, uint8_t *A, size_t lda,
                         int per_tensor, float *a_scale, int32_t *a_zp);
/* Pack W (N x K row-major int8) into the panel layout; B must hold
 * round_up(N,16) * round_up(K,4) bytes. */
void dynq__pack_weights(int64_t N, int64_t K, const int8_t *W, int8_t *B);

/* Run-time quantization of the right operand of an activation x
 * activation product (qpack.c): the K x N matrix B, element (k, n) at
 * B[k * rs + n * cs], per column n, symmetric:
 *   amax = max_k |B[k][n]|;  s = amax > 0 ? amax / 127 : 1
 *   inv = 1 / s (if that overflows: s = inv = 1)
 *   q = clamp(rne(B[k][n] * inv), -127, 127)
 * written into the packed panel layout above (bp: round_up(N,16) *
 * round_up(K,4) bytes, padding zeroed), colsum[n] = sum_k q and
 * scale[n] = s * alpha.  A column holding NaN or +-Inf gets scale NaN
 * (its output column becomes NaN).  Same bytes on every ISA. */
void dynq__quantize_cols_packed(int64_t K, int64_t N, const float *B, int64_t rs, int64_t cs,
                                float alpha, int8_t *bp, int32_t *colsum, float *scale);

#endif
