/*
 * FP32 GEMM driver (sgemm.h): cache blocking, packing of A per call and of
 * B unless it comes pre-packed, the scalar reference micro-kernel and the
 * table of micro-kernels.
 *
 * Loop order (BLIS's): column blocks of NC, then K blocks of KC (B's block
 * packed: KC x NC floats, L2-sized), then row blocks of MC (A's block
 * packed: MC x KC, unless A is read in place), then 64-column panels, then
 * 6-row tiles.  A panel's KC x 64 slice (32 KiB) stays in L1 while every
 * row tile of the A block streams past it.
 *
 * With B pre-packed (or read in place) and A read in place nothing is
 * copied per K block, and the K blocks are long (KC_LONG): a panel's K
 * rows are contiguous, so its slice streams from L2 as well as it would
 * sit in L1, while each K block costs a reload and store of C and a
 * micro-kernel call per tile.
 */
#include "sgemm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "kernels.h"
#include "../tensor.h"

#define MR DYNQ_SGEMM_MR
#define NR DYNQ_SGEMM_NR
#define KC 128   /* a panel's KC x 64 slice: 32 KiB of L1 */
#define MC 132   /* A block: 66 KiB of L2; 128 rows in one block */
_Static_assert(MC % MR == 0, "A blocks hold whole row tiles");
#define NC 1024  /* B block packed per call: 512 KiB of L2 */
/* K block with nothing packed per call: a 6 x 768 A tile is 18 KiB of L1,
 * a 768 x 64 slice of B 192 KiB of L2.  BERT-base's six layers x 12 with
 * their own cold weights, at M = 128 and 1024, alternated layer by layer
 * with KC: 6-9 % less CPU time at 768 than at 128; 256 and 384 in
 * between; 1024, 1536 and all of 3072 no better, or worse on K = 3072
 * (AVX2 kernel: 4 % at M = 1024, same at 128).  Same bits: a K block's
 * partial sums go through C exactly. */
#define KC_LONG 768

/* ---- the reference micro-kernel: the oracle every ISA matches ---- */

static void ref_ukr(int64_t kc, const float *a, int64_t rsa, int64_t csa, const float *b,
                    int64_t ldb, float *c, int64_t ldc, int mr, int nr, int flags) {
  const int load = flags & DYNQ_SGEMM_LOAD;
  float acc[MR][NR];
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) acc[r][j] = load ? c[r * ldc + j] : 0.0f;
  for (int64_t k = 0; k < kc; k++, a += csa, b += ldb)
    for (int r = 0; r < mr; r++)
      for (int j = 0; j < nr; j++) acc[r][j] = fmaf(a[r * rsa], b[j], acc[r][j]);
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) c[r * ldc + j] = acc[r][j];
}

static int always(void) { return 1; }

const dynq__sgemm_kernel_t dynq__sgemm_ref = {"ref", always, ref_ukr};

#ifdef DYNQ_HAVE_KERNEL_SGEMM_AVX512
extern const dynq__sgemm_kernel_t dynq__sgemm_avx512;
#endif
#ifdef DYNQ_HAVE_KERNEL_SGEMM_AVX2
extern const dynq__sgemm_kernel_t dynq__sgemm_avx2;
#endif

static const dynq__sgemm_kernel_t *const table[] = {
#ifdef DYNQ_HAVE_KERNEL_SGEMM_AVX512
  &dynq__sgemm_avx512,
#endif
#ifdef DYNQ_HAVE_KERNEL_SGEMM_AVX2
  &dynq__sgemm_avx2,
#endif
  &dynq__sgemm_ref,
};

const dynq__sgemm_kernel_t *dynq__sgemm_find(const char *name) {
  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
    if (strcmp(table[i]->name, name) == 0 && table[i]->supported()) return table[i];
  return NULL;
}

const dynq__sgemm_kernel_t *dynq__sgemm_kernel(void) {
  const char *q = dynq__kernel()->name;
  const dynq__sgemm_kernel_t *k = NULL;
  if (strcmp(q, "avx512vnni") == 0)
    k = dynq__sgemm_find("avx512");
  else if (strcmp(q, "avx2") == 0 || strcmp(q, "avxvnni") == 0)
    k = dynq__sgemm_find("avx2");
  return k ? k : &dynq__sgemm_ref;
}

/* ---- packing ---- */

/* scale * op(B)'s rows [k0, k0+kc) x columns [n0, n0+nc) as panels of NR
 * columns (kc * NR floats each, zero-padded past nc). */
static void pack_b(int tb, const float *B, int64_t ldb, float scale, int64_t k0, int64_t kc,
                   int64_t n0, int64_t nc, float *out) {
  if (!tb) {
    /* row by row: B is read sequentially, each panel written in order */
    for (int64_t k = 0; k < kc; k++) {
      const float *src = B + (k0 + k) * ldb + n0;
      for (int64_t p = 0; p < nc; p += NR) {
        int64_t w = nc - p < NR ? nc - p : NR;
        float *dst = out + p * kc + k * NR;
        if (scale == 1.0f)
          memcpy(dst, src + p, sizeof(float) * (size_t)w);
        else
          for (int64_t j = 0; j < w; j++) dst[j] = scale * src[p + j];
        if (w < NR) memset(dst + w, 0, sizeof(float) * (size_t)(NR - w));
      }
    }
    return;
  }
  for (int64_t p = 0; p < nc; p += NR, out += kc * NR) {
    int64_t w = nc - p < NR ? nc - p : NR;
    if (w < NR)
      for (int64_t k = 0; k < kc; k++)
        memset(out + k * NR + w, 0, sizeof(float) * (size_t)(NR - w));
    for (int64_t j = 0; j < w; j++) {
      const float *src = B + (n0 + p + j) * ldb + k0;
      if (scale == 1.0f)
        for (int64_t k = 0; k < kc; k++) out[k * NR + j] = src[k];
      else
        for (int64_t k = 0; k < kc; k++) out[k * NR + j] = scale * src[k];
    }
  }
}

void dynq__sgemm_pack_b(int tb, int64_t N, int64_t K, const float *B, int64_t ldb,
                        float *Bp) {
  pack_b(tb, B, ldb, 1.0f, 0, K, 0, N, Bp);
}

void dynq__sgemm_pack_b_scaled(int tb, int64_t N, int64_t K, const float *B, int64_t ldb,
                               float scale, float *Bp) {
  pack_b(tb, B, ldb, scale, 0, K, 0, N, Bp);
}

/* alpha * op(A)'s rows [m0, m0+mc) x k [k0, k0+kc) as tiles of MR rows
 * (kc * MR floats each, zero-padded past mc). */
static void pack_a(const dynq__sgemm_args_t *s, int64_t m0, int64_t mc, int64_t k0,
                   int64_t kc, float *out) {
  const float alpha = s->alpha;
  for (int64_t i = 0; i < mc; i += MR, out += kc * MR) {
    int h = mc - i < MR ? (int)(mc - i) : MR;
    if (h < MR)
      for (int64_t k = 0; k < kc; k++)
        for (int r = h; r < MR; r++) out[k * MR + r] = 0.0f;
    if (!s->ta) {
      for (int r = 0; r < h; r++) {
        const float *src = s->A + (m0 + i + r) * s->lda + k0;
        if (alpha == 1.0f)
          for (int64_t k = 0; k < kc; k++) out[k * MR + r] = src[k];
        else
          for (int64_t k = 0; k < kc; k++) out[k * MR + r] = alpha * src[k];
      }
    } else {
      for (int64_t k = 0; k < kc; k++) {
        const float *src = s->A + (k0 + k) * s->lda + m0 + i;
        for (int r = 0; r < h; r++) out[k * MR + r] = alpha == 1.0f ? src[r] : alpha * src[r];
      }
    }
  }
}

/* ---- the driver ---- */

int dynq__sgemm_cols(const dynq__sgemm_kernel_t *kr, const dynq__sgemm_args_t *s) {
  const int64_t M = s->M, K = s->K, n1 = s->n1;
  /* A single row tile reuses nothing of B: read an unpacked, untransposed
   * B in place instead of copying it. */
  const int direct = s->Bp == NULL && !s->tb && M <= MR;
  /* A row-major A with alpha 1 is read in place (the micro-kernel
   * broadcasts from its rows): packing it cost 7-15 % at M = 128 and
   * 1024, K = 768 and 3072 (the copy was as slow as the product it fed
   * was fast); reading it in place was as fast as not packing at all. */
  const int a_inplace = !s->ta && s->alpha == 1.0f;
  const int64_t mcap = M < MC ? (M + MR - 1) / MR * MR : MC;
  /* K blocks of equal length, at most KC_LONG when nothing is packed */
  const int64_t kmax = a_inplace && (s->Bp || direct) ? KC_LONG : KC;
  const int64_t nkb = (K + kmax - 1) / kmax, kblk = (K + nkb - 1) / nkb;
  const int64_t kcap = K < kblk ? K : kblk;
  const int64_t ncap = n1 - s->n0 < NC ? (n1 - s->n0 + NR - 1) / NR * NR : NC;
  float *ap = a_inplace ? NULL : dynq__aligned_alloc(sizeof(float) * (size_t)(mcap * kcap));
  float *bp = s->Bp || direct ? NULL : dynq__aligned_alloc(sizeof(float) * (size_t)(kcap * ncap));
  if ((ap == NULL && !a_inplace) || (bp == NULL && !s->Bp && !direct)) {
    dynq__aligned_free(ap);
    dynq__aligned_free(bp);
    return -1;
  }
  float *C = s->C;
  if (s->beta != 0.0f && s->beta != 1.0f)
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = s->n0; n < n1; n++) C[m * s->ldc + n] *= s->beta;
  const int first_load = s->beta != 0.0f;

  /* A B that needs no packing needs no column blocks either (fewer column
   * blocks repack A less often: at M = 1024 the 3072-column layers ran
   * ~12 % faster in one block than in blocks of NC), and then the row
   * blocks go outermost, so each block's C rows are finished in one
   * sweep while they are still in cache (128-row blocks: 3-15 % faster
   * than the whole of M = 1024 at once). */
  const int64_t ncb = s->Bp || direct ? n1 - s->n0 : NC;
  const int64_t rb = s->Bp || direct ? MC : M;
  for (int64_t i0 = 0; i0 < M; i0 += rb)
  for (int64_t jc = s->n0; jc < n1; jc += ncb) {
    const int64_t nc = n1 - jc < ncb ? n1 - jc : ncb;
    for (int64_t pc = 0; pc < K; pc += kblk) {
      const int64_t kc = K - pc < kblk ? K - pc : kblk;
      const float *bb;
      int64_t pstride, ldb;
      if (s->Bp) {
        bb = s->Bp + jc * K + pc * NR;  /* jc is a multiple of NR */
        pstride = K * NR;
        ldb = NR;
      } else if (direct) {
        bb = s->B + pc * s->ldb + jc;
        pstride = NR;
        ldb = s->ldb;
      } else {
        pack_b(s->tb, s->B, s->ldb, 1.0f, pc, kc, jc, nc, bp);
        bb = bp;
        pstride = kc * NR;
        ldb = NR;
      }
      const int last_k = pc + kc == K;
      const int flags = (pc > 0 || first_load ? DYNQ_SGEMM_LOAD : 0) |
                        (direct ? DYNQ_SGEMM_INPLACE : 0);
      for (int64_t ic = i0; ic < M && ic < i0 + rb; ic += MC) {
        const int64_t mc = M - ic < MC ? M - ic : MC;
        if (!a_inplace) pack_a(s, ic, mc, pc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int nr = nc - jr < NR ? (int)(nc - jr) : NR;
          const float *b = bb + (jr / NR) * pstride;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int mr = mc - ir < MR ? (int)(mc - ir) : MR;
            if (ir + MR < mc) {
              /* the next tile's C, while this one computes: it comes
               * from L2 or further (C is M x NC), 24 lines at once */
              float *cn = C + (ic + ir + MR) * s->ldc + jc + jr;
              int rows = mc - ir - MR < MR ? (int)(mc - ir - MR) : MR;
              for (int r = 0; r < rows; r++)
                for (int j = 0; j < nr; j += 16) __builtin_prefetch(cn + r * s->ldc + j, 1, 3);
            }
            float *c = C + (ic + ir) * s->ldc + jc + jr;
            if (a_inplace)
              kr->ukr(kc, s->A + (ic + ir) * s->lda + pc, s->lda, 1, b, ldb, c, s->ldc, mr, nr,
                      flags);
            else
              kr->ukr(kc, ap + ir * kc, 1, MR, b, ldb, c, s->ldc, mr, nr, flags);
            if (last_k && s->epi) s->epi(s->epi_ctx, c, s->ldc, jc + jr, mr, nr);
          }
        }
      }
    }
  }
  dynq__aligned_free(ap);
  dynq__aligned_free(bp);
  return 0;
}
