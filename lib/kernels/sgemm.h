/*
 * FP32 GEMM: the blocked driver, the packed-B layout and the per-ISA
 * micro-kernels (sgemm.c is the driver and the scalar reference,
 * sgemm_avx2.c and sgemm_avx512.c the vector micro-kernels).
 *
 *   C[m][n] = beta * C[m][n] + sum_k (alpha * op(A)[m][k]) * op(B)[k][n]
 *
 * Numerics, the same bits on every micro-kernel, thread split, block size
 * and for packed or unpacked B:
 *   a'  = alpha * A[m][k]        (float multiply; skipped when alpha == 1)
 *   acc = beta == 0 ? 0 : (beta == 1 ? C[m][n] : beta * C[m][n])
 *   acc = fma(a', B[k][n], acc)  for k = 0, 1, ..., K-1 in this order
 *   C[m][n] = acc, then the epilogue (args.epi) on it if any
 * One fused multiply-add per k on one accumulator per element: cache
 * blocking along K stores the partial sum in C and reloads it, which
 * changes no bit.  With beta == 0, C is never read (NaN in C is ignored).
 *
 * Packed B (dynq__sgemm_pack_b): the K x N matrix op(B) in panels of
 * DYNQ_SGEMM_NR columns; inside a panel, row k holds its NR values:
 *     Bp[(n / NR) * (K * NR) + k * NR + (n % NR)]
 * Padding columns (n >= N) hold 0.  round_up(N, NR) * K floats, 64-byte
 * aligned.  A K-block [k0, k1) of a panel is then contiguous, which is
 * exactly what the driver packs per call for an unpacked B.
 */
#ifndef DYNQ_KERNELS_SGEMM_H
#define DYNQ_KERNELS_SGEMM_H

#include <stddef.h>
#include <stdint.h>

#define DYNQ_SGEMM_MR 6    /* rows per micro-tile (packed A) */
#define DYNQ_SGEMM_NR 64   /* columns per packed B panel */
/* Narrower products waste most of a panel: dynq__sgemm_ex sends them to
 * OpenBLAS unless B comes packed, and nobody packs them. */
#define DYNQ_SGEMM_MIN_N 16

/*
 * One micro-tile: rows [0, mr) x columns [0, nr) of C (row stride ldc),
 * mr <= MR, nr <= NR, over kc >= 1 values of k:
 *   a   A's value for row r and k at a[r*rsa + k*csa]: packed A (rsa 1,
 *       csa MR) or the caller's row-major A read in place (rsa lda, csa 1)
 *   b   kc rows of B at row stride ldb (>= nr); only columns < nr are read
 *   flags DYNQ_SGEMM_LOAD: start from C (beta already applied to it), else
 *         from 0; DYNQ_SGEMM_INPLACE: b is the caller's matrix, so nothing
 *         past column nr may be read (packed rows are padded to NR)
 */
enum { DYNQ_SGEMM_LOAD = 1, DYNQ_SGEMM_INPLACE = 2 };
typedef void (*dynq__sgemm_ukr_fn)(int64_t kc, const float *a, int64_t rsa, int64_t csa,
                                   const float *b, int64_t ldb, float *c, int64_t ldc,
                                   int mr, int nr, int flags);

typedef struct dynq__sgemm_kernel {
  const char *name;        /* "ref", "avx2", "avx512" */
  int (*supported)(void);
  dynq__sgemm_ukr_fn ukr;
} dynq__sgemm_kernel_t;

extern const dynq__sgemm_kernel_t dynq__sgemm_ref;

/* The micro-kernel that goes with the selected INT8 kernel (so the
 * DYNQ_KERNEL override reaches the FP32 path too): ref -> ref, avx2 and
 * avxvnni -> avx2, avx512vnni -> avx512. */
const dynq__sgemm_kernel_t *dynq__sgemm_kernel(void);
/* Lookup by name among compiled and supported ones; NULL otherwise. */
const dynq__sgemm_kernel_t *dynq__sgemm_find(const char *name);

typedef struct dynq__sgemm_args {
  int64_t M, N, K;         /* M, N, K >= 1 */
  float alpha, beta;
  const float *A;          /* op(A) is M x K: A[m*lda + k], or A[k*lda + m] when ta */
  int64_t lda;
  int ta;
  const float *B;          /* op(B) is K x N: B[k*ldb + n], or B[n*ldb + k] when tb */
  int64_t ldb;
  int tb;
  const float *Bp;         /* non-NULL: B packed by dynq__sgemm_pack_b (B, ldb, tb unused) */
  float *C;                /* C[m*ldc + n], ldc >= N */
  int64_t ldc;
  int64_t n0, n1;          /* compute columns [n0, n1): n0 % NR == 0, n1 <= N */
  /* NULL, or called on every finished block of C right after its last K
   * block (a micro-tile, still in L1): rows x cols values at c (row
   * stride ldc), the first in column n of C.  It must be elementwise,
   * each value's result depending only on the value and its column, so
   * that every split and block size keeps the same bits. */
  void (*epi)(const void *ctx, float *c, int64_t ldc, int64_t n, int64_t rows, int64_t cols);
  const void *epi_ctx;
} dynq__sgemm_args_t;

/* Floats of the packed form of a K x N matrix. */
static inline size_t dynq__sgemm_packed_floats(int64_t N, int64_t K) {
  return (size_t)((N + DYNQ_SGEMM_NR - 1) / DYNQ_SGEMM_NR * DYNQ_SGEMM_NR) * (size_t)K;
}
/* Pack op(B) (K x N; B[k*ldb + n], or B[n*ldb + k] when tb) into Bp. */
void dynq__sgemm_pack_b(int tb, int64_t N, int64_t K, const float *B, int64_t ldb,
                        float *Bp);
/* The same with every value multiplied by scale (one float multiply;
 * none when scale is 1): a product's alpha moved onto B. */
void dynq__sgemm_pack_b_scaled(int tb, int64_t N, int64_t K, const float *B, int64_t ldb,
                               float scale, float *Bp);

/* C's columns [n0, n1) on the calling thread with micro-kernel kr.
 * Returns 0, or -1 when its scratch buffers cannot be allocated (C
 * then unchanged). */
int dynq__sgemm_cols(const dynq__sgemm_kernel_t *kr, const dynq__sgemm_args_t *a);

#endif
