/*
 * AVX512-VNNI kernel: zmm vpdpbusd over the packed 16-channel panels.
 *
 * Register tile: up to 6 activation rows x 4 panels (64 output channels)
 * = 24 int32 accumulators, 4 weight vectors and one broadcast of 4
 * activation bytes, inside the 32 zmm registers.  Every (rows, panels)
 * shape from 1x1 to 6x4 is its own fully unrolled function, so ragged M
 * and N edges run the same code with fewer registers.
 *
 * Loop order: blocks of panels sized to stay in L2 outside, row tiles
 * inside, so each weight block is fetched from memory once and reused by
 * every row tile.  In a model each layer's weights come from DRAM, and the
 * first row tile over a block would wait for them (at M = 128 that cost
 * 2-9 % of the kernel): so the 6-row tiles of one block prefetch the next
 * block into L2, a slice each, a line every 1, 2 or 4 k groups; the last
 * block prefetches the start of the caller's next weights (pf_next).  192 KiB blocks
 * measured better than 128, 256, 384 and 512 at BERT-base's shapes with
 * cold weights at M = 128; above 256 rows the blocks stay 384 KiB (192
 * measured 2-3 % slower at M = 1024) and nothing is prefetched.  With M <= 6 there is a
 * single row tile and the loop is a pure weight stream (the small-M,
 * bandwidth-bound case); there, software prefetch measured no better than
 * the hardware prefetcher on the four sequential panel streams.
 *
 * Numerics are the ones pinned in kernels.h and ref.c; every float step
 * is one separate vector instruction in the same order as ref.c.
 */
#include <immintrin.h>
#include <string.h>

#include "cpu.h"
#include "kernels.h"

#define MR 6
#define NPMAX 4
/* Weight bytes per panel block kept hot in L2 while row tiles sweep it:
 * small blocks while few row tiles share the wait for a block's first
 * sweep, bigger ones past BIG_M rows, where the activations read once per
 * block are the larger stream. */
#define BLOCK_BYTES (192 * 1024)
#define BLOCK_BYTES_BIG (384 * 1024)
#define BIG_M 256

#define INLINE static inline __attribute__((always_inline))

/* GCC 12 models _mm512_dpbusd_epi32 as a three-register op and copies
 * every accumulator around it (and spills the tile); tying the
 * accumulator in place with a one-instruction asm keeps it in its
 * register.  Same instruction, same result. */
#define DPBUSD(acc, a, b) \
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "vm"(b))

INLINE __m512i bcast4(const uint8_t *p) {
  int32_t v;
  memcpy(&v, p, 4);   /* A rows may be at any alignment */
  return _mm512_set1_epi32(v);
}

INLINE __mmask16 tail_mask(int64_t valid) {
  return valid >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << valid) - 1);
}

/* rows [m, m+mr) x panels [p, p+np), all k groups, then the epilogue;
 * full-height tiles also prefetch the lines [pf, pfe) into L2. */
INLINE void tile(const dynq__qgemm_args_t *a, int64_t m, int64_t p,
                 const char *pf, const char *pfe, int64_t pfmask, const int mr,
                 const int np) {
  const int64_t Kp = dynq__round_up(a->K, DYNQ_QGEMM_KG);
  const int64_t kg = Kp / DYNQ_QGEMM_KG;
  const size_t pstride = (size_t)Kp * DYNQ_QGEMM_NR;
  const int8_t *b0 = a->B + (size_t)p * pstride;
  const uint8_t *ap[MR];
  __m512i acc[MR][NPMAX];

#pragma GCC unroll 8
  for (int r = 0; r < mr; r++) {
    ap[r] = a->A + (size_t)(m + r) * a->lda;
#pragma GCC unroll 8
    for (int j = 0; j < np; j++) acc[r][j] = _mm512_setzero_si512();
  }

  const int8_t *bp = b0;
  for (int64_t g = 0; g < kg; g++, bp += 64) {
    __m512i bv[NPMAX];
    if (mr == MR && (g & pfmask) == 0 && pf < pfe) {
      _mm_prefetch(pf, _MM_HINT_T1);
      pf += 64;
    }
#pragma GCC unroll 8
    for (int j = 0; j < np; j++) {
      bv[j] = _mm512_load_si512((const void *)(bp + j * pstride));
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
      __m512i av = bcast4(ap[r] + 4 * g);
#pragma GCC unroll 8
      for (int j = 0; j < np; j++)
        DPBUSD(acc[r][j], av, bv[j]);
    }
  }

  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int j = 0; j < np; j++) {
    int64_t n = (p + j) * DYNQ_QGEMM_NR;
    __mmask16 k = tail_mask(a->n1 - n);
    __m512i cs = _mm512_maskz_loadu_epi32(k, a->colsum + n);
    __m512 ws = _mm512_maskz_loadu_ps(k, a->w_scale + n);
    __m512 bias = a->bias ? _mm512_maskz_loadu_ps(k, a->bias + n) : zero;
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
      __m512i zp = _mm512_set1_epi32(a->a_zp[m + r]);
      __m512i d = _mm512_sub_epi32(acc[r][j], _mm512_mullo_epi32(zp, cs));
      __m512 t = _mm512_cvtepi32_ps(d);
      __m512 s = _mm512_mul_ps(_mm512_set1_ps(a->a_scale[m + r]), ws);
      __m512 y = _mm512_mul_ps(s, t);
      if (a->bias) y = _mm512_add_ps(y, bias);
      if (a->act == DYNQ_ACT_RELU) y = _mm512_max_ps(zero, y);
      _mm512_mask_storeu_ps(a->C + (size_t)(m + r) * a->ldc + n, k, y);
    }
  }
}

typedef void (*tile_fn)(const dynq__qgemm_args_t *, int64_t, int64_t, const char *,
                        const char *, int64_t);

#define TILE_FN(R, P)                                                     \
  static void tile_##R##_##P(const dynq__qgemm_args_t *a, int64_t m,     \
                             int64_t p, const char *pf, const char *pfe,  \
                             int64_t pfmask) {                            \
    tile(a, m, p, pf, pfe, pfmask, R, P);                                 \
  }
#define TILE_ROW(R) TILE_FN(R, 1) TILE_FN(R, 2) TILE_FN(R, 3) TILE_FN(R, 4)
TILE_ROW(1)
TILE_ROW(2)
TILE_ROW(3)
TILE_ROW(4)
TILE_ROW(5)
TILE_ROW(6)

#define TILE_REF(R) {tile_##R##_1, tile_##R##_2, tile_##R##_3, tile_##R##_4}
static const tile_fn tiles[MR][NPMAX] = {
  TILE_REF(1), TILE_REF(2), TILE_REF(3),
  TILE_REF(4), TILE_REF(5), TILE_REF(6),
};

static void avx512_qgemm(const dynq__qgemm_args_t *a) {
  if (a->M <= 0 || a->n1 <= a->n0) return;
  const int64_t Kp = dynq__round_up(a->K, DYNQ_QGEMM_KG);
  const int64_t P0 = a->n0 / DYNQ_QGEMM_NR;
  const int64_t P1 = (a->n1 + DYNQ_QGEMM_NR - 1) / DYNQ_QGEMM_NR;
  /* Panels per L2 block, a multiple of the tile width. */
  int64_t pb = (a->M > BIG_M ? BLOCK_BYTES_BIG : BLOCK_BYTES) / (Kp * DYNQ_QGEMM_NR);
  pb = pb < NPMAX ? NPMAX : pb / NPMAX * NPMAX;
  if (a->M <= MR) pb = P1 - P0;   /* one row tile: just stream */

  const size_t pstride = (size_t)Kp * DYNQ_QGEMM_NR;
  const int64_t kg = Kp / DYNQ_QGEMM_KG;
  const int pf_on = a->M > MR && a->M <= BIG_M;
  for (int64_t pblk = P0; pblk < P1; pblk += pb) {
    int64_t pend = pblk + pb < P1 ? pblk + pb : P1;
    /* the next block (or, in the last one, the start of the caller's next
     * weights), split over this block's 6-row tile calls; nothing above
     * BIG_M rows, where the wait is shared by many row tiles and the early
     * lines measured 1-2 % slower (evicted before use) */
    int64_t pnext = pend + pb < P1 ? pend + pb : P1;
    const char *pf = (const char *)(a->B + (size_t)pend * pstride);
    const char *pfend = (const char *)(a->B + (size_t)pnext * pstride);
    if (pend == P1 && a->pf_next) {
      size_t bytes = (size_t)pb * pstride;
      pf = (const char *)a->pf_next;
      pfend = pf + (a->pf_next_bytes < bytes ? a->pf_next_bytes : bytes);
    }
    if (!pf_on) pfend = pf;
    int64_t calls = (a->M / MR) * ((pend - pblk + NPMAX - 1) / NPMAX);
    size_t lines = calls ? ((size_t)(pfend - pf) / 64 + (size_t)calls - 1) / (size_t)calls : 0;
    /* a line every 4 k groups when that is enough, else every 2, else every one */
    int64_t pfmask = (int64_t)lines * 4 <= kg ? 3 : (int64_t)lines * 2 <= kg ? 1 : 0;
    for (int64_t m = 0; m < a->M; m += MR) {
      int64_t mr = a->M - m < MR ? a->M - m : MR;
      for (int64_t p = pblk; p < pend; p += NPMAX) {
        int64_t np = pend - p < NPMAX ? pend - p : NPMAX;
        const char *e = (size_t)(pfend - pf) > lines * 64 ? pf + lines * 64 : pfend;
        tiles[mr - 1][np - 1](a, m, p, pf, e, pfmask);
        pf = e;
      }
    }
  }
}

static void avx512_minmax(const float *x, int64_t n, float *mn, float *mx) {
  __m512 lo0 = _mm512_set1_ps(x[0]), hi0 = lo0, lo1 = lo0, hi1 = lo0;
  __mmask16 nan = 0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    /* A layer's input often comes from L3 (FF2's 1.5 MB at BERT-base's
     * M = 128): 2 KiB ahead, 128 rows of 3072 took 52 -> 43 us with L2
     * evicted.  Past the end it only touches the next row (or nothing:
     * prefetches do not fault). */
    uintptr_t ahead = (uintptr_t)(x + i) + 2048;   /* no pointer past the end */
    _mm_prefetch((const char *)ahead, _MM_HINT_T0);
    _mm_prefetch((const char *)(ahead + 64), _MM_HINT_T0);
    __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
    nan |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q);
    lo0 = _mm512_min_ps(lo0, v0);
    hi0 = _mm512_max_ps(hi0, v0);
    lo1 = _mm512_min_ps(lo1, v1);
    hi1 = _mm512_max_ps(hi1, v1);
  }
  for (; i < n; i += 16) {
    __mmask16 k = tail_mask(n - i);
    __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(x[0]), k, x + i);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    lo0 = _mm512_min_ps(lo0, v);
    hi0 = _mm512_max_ps(hi0, v);
  }
  if (nan || x[0] != x[0]) {
    *mn = *mx = __builtin_nanf("");
    return;
  }
  *mn = _mm512_reduce_min_ps(_mm512_min_ps(lo0, lo1));
  *mx = _mm512_reduce_max_ps(_mm512_max_ps(hi0, hi1));
}

INLINE __m128i quant16(__m512 x, __m512 inv, __m512i zp) {
  const __m512 lo = _mm512_set1_ps(-256.0f), hi = _mm512_set1_ps(512.0f);
  __m512 t = _mm512_mul_ps(x, inv);
  t = _mm512_max_ps(t, lo);   /* NaN -> lo, as ref.c */
  t = _mm512_min_ps(t, hi);
  __m512i v = _mm512_add_epi32(_mm512_cvtps_epi32(t), zp);
  v = _mm512_max_epi32(v, _mm512_setzero_si512());
  v = _mm512_min_epi32(v, _mm512_set1_epi32(255));
  return _mm512_cvtepi32_epi8(v);
}

/* rne(x * inv) + zp before the [0, 255] clamp: within [-256, 767]. */
INLINE __m512i quant16_i32(__m512 x, __m512 inv, __m512i zp) {
  __m512 t = _mm512_mul_ps(x, inv);
  t = _mm512_max_ps(t, _mm512_set1_ps(-256.0f));   /* NaN -> lo, as ref.c */
  t = _mm512_min_ps(t, _mm512_set1_ps(512.0f));
  return _mm512_add_epi32(_mm512_cvtps_epi32(t), zp);
}

static void avx512_quantize(const float *x, int64_t n, float inv, int32_t zp,
                            uint8_t *q) {
  const __m512 vinv = _mm512_set1_ps(inv);
  const __m512i vzp = _mm512_set1_epi32(zp);
  /* 64 at a time: the saturating packs (int32 -> int16 exact in this
   * range, int16 -> u8 unsigned) are the [0, 255] clamp, in fewer
   * instructions than four clamps and vpmovdb; they interleave the four
   * vectors per 128-bit lane, which one dword permutation undoes. */
  const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2,
                                         13, 9, 5, 1, 12, 8, 4, 0);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512i v0 = quant16_i32(_mm512_loadu_ps(x + i), vinv, vzp);
    __m512i v1 = quant16_i32(_mm512_loadu_ps(x + i + 16), vinv, vzp);
    __m512i v2 = quant16_i32(_mm512_loadu_ps(x + i + 32), vinv, vzp);
    __m512i v3 = quant16_i32(_mm512_loadu_ps(x + i + 48), vinv, vzp);
    __m512i b = _mm512_packus_epi16(_mm512_packs_epi32(v0, v1), _mm512_packs_epi32(v2, v3));
    _mm512_storeu_si512((void *)(q + i), _mm512_permutexvar_epi32(order, b));
  }
  for (; i + 16 <= n; i += 16)
    _mm_storeu_si128((__m128i *)(q + i),
                     quant16(_mm512_loadu_ps(x + i), vinv, vzp));
  if (i < n) {
    __mmask16 k = tail_mask(n - i);
    __m128i v = quant16(_mm512_maskz_loadu_ps(k, x + i), vinv, vzp);
    _mm_mask_storeu_epi8(q + i, k, v);
  }
}

const dynq__kernel_t dynq__kernel_avx512vnni = {
  .name = "avx512vnni",
  .isa = "AVX512 F/BW/VL/DQ + AVX512-VNNI (zmm vpdpbusd)",
  .supported = dynq__cpu_has_avx512vnni,
  .qgemm = avx512_qgemm,
  .minmax = avx512_minmax,
  .quantize = avx512_quantize,
};
