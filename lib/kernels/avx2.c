/*
 * AVX2 kernel (no VNNI): the exact int16 path.
 *
 * Activation bytes (u8) and weights (s8) are widened to int16 and
 * multiplied with vpmaddwd, which adds pairs of int16 products into int32
 * exactly.  The saturating vpmaddubsw is never used: u8 x s8 pair sums
 * overflow int16 and would need 7-bit activations.
 *
 * The bound on this path is two vector ALU ops per 16 MACs (one vpmaddwd,
 * one vpaddd); anything else in the inner loop (widening, broadcasting)
 * costs throughput directly.  So for M >= WIDE_MIN_M both operands are
 * widened ONCE, outside the k loop, into one scratch buffer:
 *   - a block of activation rows (plain int16 rows, up to 1 MiB), from
 *     which the 4 k values of a group are broadcast with vpbroadcastq (a
 *     load, no ALU op);
 *   - a chunk of one weight panel (same layout as the packed B, int16,
 *     32 KiB, kept in L1), loaded as 32-byte quarters per group and used
 *     by every row of the tile.
 * A quarter holds 4 channels x 4 k as 32-bit lanes (ch0: k0k1, ch0: k2k3,
 * ch1: k0k1, ...); vpmaddwd against (a0a1, a2a3, a0a1, a2a3, ...) leaves
 * two partial sums per channel, folded with vphaddd and a lane permute
 * once per tile, after the k loop.  The register tile is 6 rows x 8
 * channels (half a panel): 12 accumulators, 2 weight quarters, one
 * broadcast row, one product temporary (all 16 ymm registers), 12
 * vpmaddwd + 12 vpaddd and 8 loads per group.  Rows left over (M % 6)
 * take a 2 rows x 16 channels tile (8 vpmaddwd + 8 vpaddd per 6 loads).
 * On Zen 3 (dynq-bench qgemm, old and new binaries alternated, 7 rounds)
 * the 6 x 8 tile took 32x768x768 from 98-101 to 123-130 GOPS, 256 rows
 * +4-8 %, 128x3072x768 +14-16 %; built side by side into one process
 * (bench/kernel-ab.sh) the two ran 0.89-1.03x, median 1.00, so at these
 * sizes the k loop is no longer the limit (alone, 6 x 8's runs at ~95 %
 * of the pair peak, 2 x 16's ~85 %).
 * 4 x 8 and 3 x 8 were slower than 2 x 16, and so were a pre-broadcast
 * activation buffer (4x the bytes, out of L2 at 256 rows), k chunks of
 * 128-512 (more partial-sum traffic) and software prefetch of the next
 * panel.
 * (3 rows x 16 with the weights as memory operands of vpmaddwd was slower
 * too: 15 vector loads per 12 vpmaddwd.)
 *
 * Measured ceiling on this core (AMD Zen 5, ymm): vpmaddwd alone runs at
 * 2 a cycle, vpaddd at 4, but a vpmaddwd + vpaddd pair stream at about
 * 0.6 cycles per pair (23-26 MACs a cycle, not 32), so this path tops out
 * near 1.6-1.75x of OpenBLAS's Haswell sgemm (BENCHMARKS.md).  `dynq-bench
 * peak` measures the pair (register-only); on Zen 3 it gave 151-166 GOPS
 * per core, this kernel ~75-80 % of it at 32-256 rows; the rest is mostly
 * the weight widening, which reads the packed panel from L3.
 *
 * Small M (the weight widening would cost more than it saves) and a failed
 * scratch allocation take the direct path: 2 rows x 16 channels, weights
 * widened in registers for every group.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "avx2-common.h"
#include "cpu.h"
#include "kernels.h"

/* Two vpmaddwd accumulators (channels 0-3 and 4-7 of a half panel, each
 * channel as two partial sums) folded into eight per-channel sums. */
INLINE __m256i fold(__m256i lo, __m256i hi) {
  return _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo, hi), 0xd8);
}

/* Epilogue for row m of panel p from its four vpmaddwd accumulators. */
INLINE void store_row(const dynq__qgemm_args_t *a, int64_t m, int64_t p,
                      __m256i c0, __m256i c1, __m256i c2, __m256i c3) {
  int64_t n = p * DYNQ_QGEMM_NR;
  int64_t valid = a->n1 - n;
  avx2c_epilogue8(a, m, n, valid, fold(c0, c1));
  if (valid > 8) avx2c_epilogue8(a, m, n + 8, valid - 8, fold(c2, c3));
}

/* ---- direct path: weights widened in registers ---- */

INLINE __m256i bcast4_w16(const uint8_t *p) {
  float v;
  memcpy(&v, p, 4);   /* A rows may be at any alignment */
  /* vbroadcastss: one load uop instead of vmovd + vpshufd */
  return _mm256_cvtepu8_epi16(_mm_castps_si128(_mm_set1_ps(v)));
}

/* Rows [m, m+mr) (mr = 1 or 2) x one panel p. */
INLINE void tile_direct(const dynq__qgemm_args_t *a, int64_t m, int64_t p,
                        const int mr) {
  const int64_t Kp = dynq__round_up(a->K, DYNQ_QGEMM_KG);
  const int64_t kg = Kp / DYNQ_QGEMM_KG;
  const int8_t *bp = a->B + (size_t)p * (size_t)Kp * DYNQ_QGEMM_NR;
  const uint8_t *a0 = a->A + (size_t)m * a->lda;
  const uint8_t *a1 = a0 + (mr > 1 ? a->lda : 0);
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c03 = c00;
  __m256i c10 = c00, c11 = c00, c12 = c00, c13 = c00;

  for (int64_t g = 0; g < kg; g++, bp += 64) {
    __m256i b0 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)bp));
    __m256i b1 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(bp + 16)));
    __m256i b2 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(bp + 32)));
    __m256i b3 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(bp + 48)));
    __m256i x = bcast4_w16(a0 + 4 * g);
    c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(x, b0));
    c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(x, b1));
    c02 = _mm256_add_epi32(c02, _mm256_madd_epi16(x, b2));
    c03 = _mm256_add_epi32(c03, _mm256_madd_epi16(x, b3));
    if (mr > 1) {
      x = bcast4_w16(a1 + 4 * g);
      c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(x, b0));
      c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(x, b1));
      c12 = _mm256_add_epi32(c12, _mm256_madd_epi16(x, b2));
      c13 = _mm256_add_epi32(c13, _mm256_madd_epi16(x, b3));
    }
  }

  store_row(a, m, p, c00, c01, c02, c03);
  if (mr > 1) store_row(a, m + 1, p, c10, c11, c12, c13);
}

static void tile_direct_1(const dynq__qgemm_args_t *a, int64_t m, int64_t p) {
  tile_direct(a, m, p, 1);
}

static void tile_direct_2(const dynq__qgemm_args_t *a, int64_t m, int64_t p) {
  tile_direct(a, m, p, 2);
}

/* Weight bytes (int8) per panel block kept in L2 while the row pairs
 * sweep it. */
#define BLOCK_BYTES (256 * 1024)

static void qgemm_direct(const dynq__qgemm_args_t *a) {
  const int64_t Kp = dynq__round_up(a->K, DYNQ_QGEMM_KG);
  const int64_t P0 = a->n0 / DYNQ_QGEMM_NR;
  const int64_t P1 = (a->n1 + DYNQ_QGEMM_NR - 1) / DYNQ_QGEMM_NR;
  int64_t pb = BLOCK_BYTES / (Kp * DYNQ_QGEMM_NR);
  if (pb < 1) pb = 1;
  for (int64_t pblk = P0; pblk < P1; pblk += pb) {
    int64_t pend = pblk + pb < P1 ? pblk + pb : P1;
    for (int64_t m = 0; m < a->M; m += 2)
      for (int64_t p = pblk; p < pend; p++) {
        if (a->M - m >= 2)
          tile_direct_2(a, m, p);
        else
          tile_direct_1(a, m, p);
      }
  }
}

/* ---- widened path: both operands widened once into scratch ---- */

/* Rows below this take the direct path: widening the weights is paid once
 * per row block, and it only pays off over many rows (measured: M = 4
 * 768x768 took 50 us widened against 37 us direct; M = 16 about even;
 * M = 64 490 us against 580 us). */


#define WIDE_MIN_M 16
#define WIDE_MR 2
/* k per widened weight chunk: 1024 x 16 channels x 2 bytes = 32 KiB. */
#define WIDE_KC 1024
/* Widened activation bytes per row block (bounds the scratch).  The rows
 * are read again for every panel; each block widens every weight chunk
 * once more.  Measured at 256x4096x4096: 512 KiB 61 ms, 1 MiB 57-59 ms,
 * 2 MiB 57-58 ms. */
#define WIDE_A16_BYTES (1024 * 1024)
#define WIDE_MIN_MB 16

/* 4 int16 activations (one k group) broadcast to every 64-bit lane. */
INLINE __m256i bcast_group(const int16_t *p) {
  int64_t v;
  memcpy(&v, p, 8);
  return _mm256_set1_epi64x(v);   /* vpbroadcastq from memory */
}

/* c += vpmaddwd(x, b) as one asm statement with the accumulator tied in
 * place: with intrinsics GCC 12 copied accumulators between registers and
 * spilled part of the tile to the stack inside the k loop. */
#define MADD(c, x, b)                                                  \
  do {                                                                 \
    __m256i t_;                                                        \
    __asm__("vpmaddwd %[bv], %[xv], %[t]\n\tvpaddd %[t], %[acc], %[acc]"\
            : [acc] "+x"(c), [t] "=&x"(t_)                             \
            : [xv] "x"(x), [bv] "x"(b));                               \
  } while (0)

/* Rows [m, m+mr) (mr = 1 or 2) x panel p; a16 holds the mr widened rows
 * (stride lda16), b16 the widened panel (kg groups of 64 int16).  The four
 * weight quarters of a group are loaded once into registers and used by
 * both rows: vector loads (two a cycle here), not ALU ops, were the limit
 * when every vpmaddwd took its weights from memory. */
INLINE void tile_wide(const dynq__qgemm_args_t *a, const int16_t *a16,
                      int64_t lda16, const int16_t *b16, int64_t kg,
                      int64_t m, int64_t p, int32_t *part, int first,
                      int last, const int mr) {
  const int16_t *r0 = a16, *r1 = a16 + (mr > 1 ? lda16 : 0);
  __m256i *pv = (__m256i *)part;   /* 4 vectors per row */
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c03 = c00;
  __m256i c10 = c00, c11 = c00, c12 = c00, c13 = c00;
  if (!first) {
    c00 = pv[0], c01 = pv[1], c02 = pv[2], c03 = pv[3];
    if (mr > 1) c10 = pv[4], c11 = pv[5], c12 = pv[6], c13 = pv[7];
  }

  if (mr > 1) {
    const int64_t d1 = (r1 - r0) * (int64_t)sizeof(int16_t);
    /* The whole group in one asm statement: GCC 12 reloaded weight
     * quarters for the second row and kept a row pointer on the stack. */
    for (int64_t g = 0; g < kg; g++) {
      __m256i b0, b1, b2, b3, x, t;
      __asm__(
          "vmovdqa (%[bp]), %[b0]\n\t"
          "vmovdqa 32(%[bp]), %[b1]\n\t"
          "vmovdqa 64(%[bp]), %[b2]\n\t"
          "vmovdqa 96(%[bp]), %[b3]\n\t"
          "vpbroadcastq (%[p0]), %[x]\n\t"
          "vpmaddwd %[b0], %[x], %[t]\n\tvpaddd %[t], %[c00], %[c00]\n\t"
          "vpmaddwd %[b1], %[x], %[t]\n\tvpaddd %[t], %[c01], %[c01]\n\t"
          "vpmaddwd %[b2], %[x], %[t]\n\tvpaddd %[t], %[c02], %[c02]\n\t"
          "vpmaddwd %[b3], %[x], %[t]\n\tvpaddd %[t], %[c03], %[c03]\n\t"
          "vpbroadcastq (%[p0],%[d1]), %[x]\n\t"
          "vpmaddwd %[b0], %[x], %[t]\n\tvpaddd %[t], %[c10], %[c10]\n\t"
          "vpmaddwd %[b1], %[x], %[t]\n\tvpaddd %[t], %[c11], %[c11]\n\t"
          "vpmaddwd %[b2], %[x], %[t]\n\tvpaddd %[t], %[c12], %[c12]\n\t"
          "vpmaddwd %[b3], %[x], %[t]\n\tvpaddd %[t], %[c13], %[c13]"
          : [c00] "+x"(c00), [c01] "+x"(c01), [c02] "+x"(c02),
            [c03] "+x"(c03), [c10] "+x"(c10), [c11] "+x"(c11),
            [c12] "+x"(c12), [c13] "+x"(c13), [b0] "=&x"(b0),
            [b1] "=&x"(b1), [b2] "=&x"(b2), [b3] "=&x"(b3), [x] "=&x"(x),
            [t] "=&x"(t)
          : [bp] "r"(b16 + g * 64), [p0] "r"(r0 + 4 * g),
            [d1] "r"(d1)
          : "memory");
    }
  } else {
    for (int64_t g = 0; g < kg; g++) {
      const __m256i *bq = (const __m256i *)(b16 + g * 64);
      __m256i x = bcast_group(r0 + 4 * g);
      MADD(c00, x, bq[0]); MADD(c01, x, bq[1]);
      MADD(c02, x, bq[2]); MADD(c03, x, bq[3]);
    }
  }

  if (!last) {
    pv[0] = c00, pv[1] = c01, pv[2] = c02, pv[3] = c03;
    if (mr > 1) pv[4] = c10, pv[5] = c11, pv[6] = c12, pv[7] = c13;
    return;
  }
  store_row(a, m, p, c00, c01, c02, c03);
  if (mr > 1) store_row(a, m + 1, p, c10, c11, c12, c13);
}

/* noinline: inlined into the block loop, the k loop lost its pointers to
 * the stack for want of general registers. */
__attribute__((noinline)) static void tile_wide_1(const dynq__qgemm_args_t *a, const int16_t *a16,
                        int64_t lda16, const int16_t *b16, int64_t kg,
                        int64_t m, int64_t p, int32_t *part, int first,
                        int last) {
  tile_wide(a, a16, lda16, b16, kg, m, p, part, first, last, 1);
}

__attribute__((noinline)) static void tile_wide_2(const dynq__qgemm_args_t *a, const int16_t *a16,
                        int64_t lda16, const int16_t *b16, int64_t kg,
                        int64_t m, int64_t p, int32_t *part, int first,
                        int last) {
  tile_wide(a, a16, lda16, b16, kg, m, p, part, first, last, 2);
}

/* One row of the six: broadcast its 4 activations (addressed by MEM),
 * multiply-add into its two accumulators ymmA, ymmB. */
#define T6_ROW(MEM, A, B)                                                 \
  "vpbroadcastq " MEM ", %%ymm14\n\t"                                     \
  "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"                                \
  "vpaddd %%ymm15, %%ymm" #A ", %%ymm" #A "\n\t"                          \
  "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"                                \
  "vpaddd %%ymm15, %%ymm" #B ", %%ymm" #B "\n\t"
/* A row's two accumulators from / to acc + OFF bytes. */
#define T6_LOAD(OFF, A, B)                                                \
  "vmovdqa " #OFF "(%[acc]), %%ymm" #A "\n\t"                             \
  "vmovdqa " #OFF "+32(%[acc]), %%ymm" #B "\n\t"
#define T6_STORE(OFF, A, B)                                               \
  "vmovdqa %%ymm" #A ", " #OFF "(%[acc])\n\t"                             \
  "vmovdqa %%ymm" #B ", " #OFF "+32(%[acc])\n\t"

/* Six rows x one half panel (8 channels) for kg groups: the tile for
 * M >= 6.  Per group: two weight quarters in registers, each row's four
 * activations broadcast once, 12 vpmaddwd + 12 vpaddd -- against 8 + 8 per
 * 6 loads for 2 x 16, so fewer loads and less loop overhead per
 * multiply-add.  All 16 ymm registers: 12 accumulators (row r, quarter q
 * in ymm 2r+q), the quarters (12, 13), the broadcast row (14), the product
 * (15).  One asm statement for the whole k loop: a tile of 12 tied
 * accumulators exceeds GCC's 30 asm operands.
 *
 * The accumulators start from and end in `acc` (row r's quarter q at
 * acc + 32 r + 8 q int32, the row stride of the 2 x 16 tile's `part`), so
 * sums cross k chunks the same way.  r0: row 0's widened activations at
 * the group start, rows d1 bytes apart; b: the half panel's first quarter
 * (groups 128 bytes apart); kg >= 1. */
__attribute__((noinline)) static void tile6_k(const int16_t *r0, int64_t d1,
                                             const int16_t *b, int64_t kg,
                                             int32_t *acc) {
  const int16_t *r3 = (const int16_t *)((const char *)r0 + 3 * d1);
  __asm__ volatile(
      T6_LOAD(0, 0, 1) T6_LOAD(128, 2, 3) T6_LOAD(256, 4, 5)
      T6_LOAD(384, 6, 7) T6_LOAD(512, 8, 9) T6_LOAD(640, 10, 11)
      "1:\n\t"
      "vmovdqa (%[bp]), %%ymm12\n\t"
      "vmovdqa 32(%[bp]), %%ymm13\n\t"
      T6_ROW("(%[p0])", 0, 1)
      T6_ROW("(%[p0],%[d1])", 2, 3)
      T6_ROW("(%[p0],%[d1],2)", 4, 5)
      T6_ROW("(%[p3])", 6, 7)
      T6_ROW("(%[p3],%[d1])", 8, 9)
      T6_ROW("(%[p3],%[d1],2)", 10, 11)
      "add $128, %[bp]\n\t"
      "add $8, %[p0]\n\t"
      "add $8, %[p3]\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      T6_STORE(0, 0, 1) T6_STORE(128, 2, 3) T6_STORE(256, 4, 5)
      T6_STORE(384, 6, 7) T6_STORE(512, 8, 9) T6_STORE(640, 10, 11)
      : [bp] "+r"(b), [p0] "+r"(r0), [p3] "+r"(r3), [n] "+r"(kg)
      : [d1] "r"(d1), [acc] "r"(acc)
      : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
        "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
        "xmm14", "xmm15");
}

/* Rows [m, m+6) x half h of panel p over one k chunk; `part` holds the
 * six rows' sums (32 int32 a row).  The epilogue after the last chunk. */
static void tile6(const dynq__qgemm_args_t *a, const int16_t *a16,
                  int64_t lda16, const int16_t *b16, int64_t kg, int64_t m,
                  int64_t p, int h, int32_t *part, int first, int last) {
  int32_t *acc = part + 8 * 2 * h;
  if (first)
    for (int r = 0; r < 6; r++) memset(acc + 32 * r, 0, 16 * sizeof(int32_t));
  tile6_k(a16, lda16 * (int64_t)sizeof(int16_t), b16 + 32 * h, kg, acc);
  if (!last) return;
  int64_t n = p * DYNQ_QGEMM_NR + 8 * h;
  for (int r = 0; r < 6; r++) {
    const __m256i *c = (const __m256i *)(acc + 32 * r);
    avx2c_epilogue8(a, m + r, n, a->n1 - n, fold(c[0], c[1]));
  }
}

/* n bytes (n % 16 == 0, both 32-aligned) of packed s8 weights to int16. */
static void widen_weights(const int8_t *src, size_t n, int16_t *dst) {
  for (size_t i = 0; i < n; i += 16)
    _mm256_store_si256((__m256i *)(dst + i),
                       _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(src + i))));
}

/* One activation row of Kp bytes (any alignment; nothing past Kp is read)
 * to int16. */
static void widen_row(const uint8_t *src, int64_t Kp, int16_t *dst) {
  int64_t i = 0;
  for (; i + 16 <= Kp; i += 16)
    _mm256_store_si256((__m256i *)(dst + i),
                       _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(src + i))));
  for (; i < Kp; i++) dst[i] = src[i];
}

/* 0, or -1 when the scratch could not be allocated (nothing was
 * computed; the caller takes the direct path).
 *
 * Loop order: row blocks, then panels, then k chunks, then row pairs.  A
 * widened chunk of one panel (WIDE_KC k x 16 channels, 32 KiB) stays in
 * L1 while every row pair of the block runs through it; the widened rows
 * stream from L2 (16 bytes per group and row pair, against 128 bytes of
 * weights).  Sums of a row pair cross chunk boundaries in `part`. */
static int qgemm_wide(const dynq__qgemm_args_t *a) {
  const int64_t Kp = dynq__round_up(a->K, DYNQ_QGEMM_KG);
  const int64_t P0 = a->n0 / DYNQ_QGEMM_NR;
  const int64_t P1 = (a->n1 + DYNQ_QGEMM_NR - 1) / DYNQ_QGEMM_NR;
  /* Row starts 32-byte aligned for the widening stores. */
  const int64_t Kr = dynq__round_up(Kp, 16);
  /* At least WIDE_MIN_MB rows share one widening of each weight chunk. */
  int64_t mb = WIDE_A16_BYTES / (Kr * 2);
  if (mb < WIDE_MIN_MB) mb = WIDE_MIN_MB;
  /* Equal blocks: a last block of a few rows would pay a whole weight
   * widening for little work. */
  int64_t nblk = (a->M + mb - 1) / mb;
  mb = dynq__round_up((a->M + nblk - 1) / nblk, WIDE_MR);
  if (mb > a->M) mb = a->M;
  const int64_t kc = Kp < WIDE_KC ? Kp : WIDE_KC;
  size_t a16_n = (size_t)(mb * Kr), b16_n = (size_t)(kc * DYNQ_QGEMM_NR),
         part_n = (size_t)(dynq__round_up(mb, 2) * 32);
  /* posix_memalign directly: the ISA library does not link the tensor
   * module.  64-byte alignment keeps every widened quarter in one line. */
  void *buf = NULL;
  if (posix_memalign(&buf, 64, 2 * (a16_n + b16_n) + 4 * part_n) != 0)
    return -1;
  int16_t *a16 = buf, *b16 = a16 + a16_n;
  int32_t *part = (int32_t *)(b16 + b16_n);

  for (int64_t m0 = 0; m0 < a->M; m0 += mb) {
    int64_t m1 = m0 + mb < a->M ? m0 + mb : a->M;
    for (int64_t m = m0; m < m1; m++)
      widen_row(a->A + (size_t)m * a->lda, Kp, a16 + (m - m0) * Kr);
    for (int64_t p = P0; p < P1; p++) {
      const int8_t *bp = a->B + (size_t)p * (size_t)Kp * DYNQ_QGEMM_NR;
      for (int64_t k0 = 0; k0 < Kp; k0 += kc) {
        int64_t kn = Kp - k0 < kc ? Kp - k0 : kc;
        int first = k0 == 0, last = k0 + kn == Kp;
        widen_weights(bp + k0 * DYNQ_QGEMM_NR, (size_t)(kn * DYNQ_QGEMM_NR), b16);
        int64_t m = m0;
        /* the second half of a panel with no valid channel is skipped */
        int halves = a->n1 - p * DYNQ_QGEMM_NR > 8 ? 2 : 1;
        for (; m1 - m >= 6; m += 6)
          for (int h = 0; h < halves; h++)
            tile6(a, a16 + (m - m0) * Kr + k0, Kr, b16, kn / 4, m, p, h,
                  part + (m - m0) * 32, first, last);
        for (; m < m1; m += WIDE_MR) {
          const int16_t *ar = a16 + (m - m0) * Kr + k0;
          int32_t *pr = part + (m - m0) * 32;
          if (m1 - m >= 2)
            tile_wide_2(a, ar, Kr, b16, kn / 4, m, p, pr, first, last);
          else
            tile_wide_1(a, ar, Kr, b16, kn / 4, m, p, pr, first, last);
        }
      }
    }
  }
  free(buf);
  return 0;
}

static void avx2_qgemm(const dynq__qgemm_args_t *a) {
  if (a->M <= 0 || a->n1 <= a->n0) return;
  if (a->M >= WIDE_MIN_M && qgemm_wide(a) == 0) return;
  qgemm_direct(a);
}

static void avx2_minmax(const float *x, int64_t n, float *mn, float *mx) {
  avx2c_minmax(x, n, mn, mx);
}

static void avx2_quantize(const float *x, int64_t n, float inv, int32_t zp,
                          uint8_t *q) {
  avx2c_quantize(x, n, inv, zp, q);
}

const dynq__kernel_t dynq__kernel_avx2 = {
  .name = "avx2",
  .isa = "AVX2 + FMA + F16C (exact int16 vpmaddwd path)",
  .supported = dynq__cpu_has_avx2,
  .qgemm = avx2_qgemm,
  .minmax = avx2_minmax,
  .quantize = avx2_quantize,
};
