/*
 * Attention's softmax: MaskedSoftmax(X, Mask) = Softmax(X + Mask) over the
 * last axis, X and Mask broadcast as Add's (the importer's form of the
 * mask Add and Softmax, models/fuse.c).  One pass adds the mask and finds
 * the row maximum, one takes the exponentials and their sum, one scales;
 * the row (a few hundred bytes) stays in L1 across the three.  Rows are
 * split over c->threads threads when there are enough of them.
 *
 * The row functions are compiled for AVX-512, AVX2 and the baseline and
 * picked at load (target_clones), written as loops over 16 fixed lanes
 * that GCC vectorizes in each clone (as norm.c's rows); every clone
 * performs the same IEEE operations in the same order (16 fixed lanes,
 * combined pairwise, no FMA contraction), so every machine gives the same
 * bits.  (They were 16-lane generic vectors, which GCC lowered through the
 * stack on AVX2: the softmax was 43 % of a fused attention layer on Zen 3.)
 */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "kernels/gvec.h"
#include "parallel.h"

#define CLONES DYNQ_CLONES
#define LANES DYNQ_GV_LANES

#define VEC DYNQ_VEC_OPT

/* e^x for the arguments a softmax sees, x <= 0 (x - max of the row):
 * 2^n * p(r) with x = n ln2 + r, |r| <= ln2/2, and p the degree-6 Taylor
 * polynomial of e^r (within 3e-7 of e^x relative, rounding included).  x
 * is clamped at -87, so 2^n stays a normal number built from its exponent
 * bits alone; below -87 the result is e^-87 (1.6e-38) instead of a smaller
 * number, an absolute error under 2e-38.  Positive x is the caller's bug,
 * not handled (n would pass 127).  NaN gives NaN.  One value: the row
 * functions call it in loops over 16 fixed lanes, which GCC vectorizes in
 * each clone (ymm pairs on AVX2, zmm on AVX-512) with the same IEEE
 * operations per lane. */
static inline __attribute__((always_inline)) float exp_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;  /* NaN passes through */
  const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  float t = x * 1.44269504088896341f + magic;
  float n = t - magic;
  float r = x - n * 0.693359375f;  /* ln2 in two parts: n * hi is exact */
  r = r + n * 2.12194440e-4f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  /* n + 127 into the exponent field: t's low bits hold n + 0x400000 */
  int32_t tb;
  memcpy(&tb, &t, sizeof(tb));
  uint32_t eb = (uint32_t)(tb - (0x4B400000 - 127)) << 23;
  float two_n;
  memcpy(&two_n, &eb, sizeof(two_n));
  return p * two_n;
}

/* For tests: the row function's exponential on one value (test-ops checks
 * it against expf over [-87, 0]). */
float dynq__softmax_exp(float x) { return exp_nonpos(x); }

/* The pairwise reductions of 16 lanes: lanes k and k + w combined for
 * w = 8, 4, 2, 1, a fixed order. */
static inline __attribute__((always_inline)) float lanes_sum(float *s) {
  for (int w = LANES / 2; w >= 1; w /= 2)
    for (int k = 0; k < w; k++) s[k] += s[k + w];
  return s[0];
}

/* The largest lane; NaN lanes are skipped (the sum catches them). */
static inline __attribute__((always_inline)) float lanes_max(float *m) {
  for (int w = LANES / 2; w >= 1; w /= 2)
    for (int k = 0; k < w; k++) m[k] = m[k + w] > m[k] ? m[k + w] : m[k];
  return m[0];
}

/* The exponentials of a masked softmax row: y[i] = e^(v[i] - max v) with
 * v[i] = x[i * sx] + m[i * sm] (strides 0: broadcast); returns their
 * sum.  Lane k of 16 takes the elements i = k (mod 16), the tail the low
 * lanes.  A NaN anywhere makes the sum NaN; a row masked entirely with
 * -inf gives NaN too.  y may be x (each element is read before it is
 * written). */
static inline __attribute__((always_inline)) float softmax_exps(float *y, const float *x,
                                                                int64_t sx, const float *m,
                                                                int64_t sm, int64_t len) {
  float mv[LANES], s[LANES];
  for (int k = 0; k < LANES; k++) mv[k] = -INFINITY, s[k] = 0.0f;
  const int64_t nv = len / LANES * LANES;
  if (sx == 1 && sm == 1) {
    for (int64_t i = 0; i < nv; i += LANES)
      for (int k = 0; k < LANES; k++) {
        float v = x[i + k] + m[i + k];
        mv[k] = v > mv[k] ? v : mv[k];
        y[i + k] = v;
      }
  } else if (sx == 1 && sm == 0) {
    const float m0 = m[0];
    for (int64_t i = 0; i < nv; i += LANES)
      for (int k = 0; k < LANES; k++) {
        float v = x[i + k] + m0;
        mv[k] = v > mv[k] ? v : mv[k];
        y[i + k] = v;
      }
  } else {
    for (int64_t i = 0; i < nv; i += LANES)
      for (int k = 0; k < LANES; k++) {
        float v = x[(i + k) * sx] + m[(i + k) * sm];
        mv[k] = v > mv[k] ? v : mv[k];
        y[i + k] = v;
      }
  }
  for (int64_t i = nv; i < len; i++) {
    float v = x[i * sx] + m[i * sm];
    int k = (int)(i - nv);
    mv[k] = v > mv[k] ? v : mv[k];
    y[i] = v;
  }
  const float mx = lanes_max(mv);
  /* a NaN lost by the max comparisons still reaches the sum below */
  for (int64_t i = 0; i < nv; i += LANES)
    for (int k = 0; k < LANES; k++) {
      float e = exp_nonpos(y[i + k] - mx);
      y[i + k] = e;
      s[k] += e;
    }
  for (int64_t i = nv; i < len; i++) {
    float e = exp_nonpos(y[i] - mx);
    y[i] = e;
    s[i - nv] += e;
  }
  return lanes_sum(s);
}

/* y[i] = x[i * sx] + m[i * sm], then the softmax of y in place. */
CLONES VEC static void masked_softmax_row(float *y, const float *x, int64_t sx, const float *m,
                                          int64_t sm, int64_t len) {
  const float inv = 1.0f / softmax_exps(y, x, sx, m, sm, len);
  for (int64_t i = 0; i < len; i++) y[i] *= inv;
}

/* clamp(rne((e * inv) * qinv), 0, 255): the quantization of the softmax
 * value e * inv with zero point 0, the steps the reference kernel takes
 * for a value in range (kernels.h). */
static inline __attribute__((always_inline)) uint8_t quant255(float e, float inv, float qinv) {
  float t = (e * inv) * qinv;
  t = t > 0.0f ? t : 0.0f;
  t = t < 255.0f ? t : 255.0f;
  return (uint8_t)(int32_t)((t + 12582912.0f) - 12582912.0f);
}

/* The quantization scale of a softmax row with top value inv = 1 / sum,
 * sum in [1, len]: dynq__qparams(0, inv) takes these steps (mx / 255 -
 * 0 / 255; 1 / scale is finite, zero point rne(-0 * inv) = 0) for such a
 * row, inlined so that two rows' divisions overlap. */
static inline __attribute__((always_inline)) float p_scale(float inv) {
  return inv / 255.0f - 0.0f / 255.0f;
}

/* The fused form's row: masked_softmax_row on the scores row y in place,
 * then the row quantized into q (Kp bytes, padding zeroed) as
 * dynq__quantize_rows does it, with its scale and zero point.  A finite
 * row's softmax lies in [0, 1 / sum] with the top at exactly 1 / sum (the
 * largest exponential is e^0 = 1), so the range is known without a
 * min/max pass and the values are quantized as they are made, never
 * stored.  Any other row (NaN, infinities) takes the general path. */
CLONES VEC static void softmax_quant_row(float *y, int64_t sm, const float *m, int64_t len,
                                         int64_t Kp, const dynq__kernel_t *kr, uint8_t *q,
                                         float *ret_scale, int32_t *ret_zp) {
  const float sum = softmax_exps(y, y, 1, m, sm, len);
  const float inv = 1.0f / sum;
  const float qs = p_scale(inv), qinv = 1.0f / qs;
  if (!(sum >= 1.0f && sum <= (float)len)) {
    for (int64_t i = 0; i < len; i++) y[i] *= inv;
    dynq__quantize_rows(kr, 1, len, y, (size_t)len, q, (size_t)Kp, 0, ret_scale, ret_zp);
    return;
  }
  for (int64_t i = 0; i < len; i++) q[i] = quant255(y[i], inv, qinv);
  memset(q + len, 0, (size_t)(Kp - len));
  *ret_scale = qs;
  *ret_zp = 0;
}

/* Two rows of the score block (y0, y1: len floats each, masks m0, m1 of
 * stride sm 0 or 1) through softmax_quant_row's steps: the same
 * operations in the same order per row (so the same bytes), the two rows
 * one after the other (in the loops GCC vectorizes, one row's chain no
 * longer waits on a reduction's latency). */
CLONES VEC static void softmax_quant_rows2(float *y0, float *y1, int64_t sm, const float *m0,
                                           const float *m1, int64_t len, int64_t Kp,
                                           const dynq__kernel_t *kr, uint8_t *q0, uint8_t *q1,
                                           float *ret_scale, int32_t *ret_zp) {
  float *y[2] = {y0, y1};
  const float *m[2] = {m0, m1};
  uint8_t *q[2] = {q0, q1};
  for (int r = 0; r < 2; r++) {
    const float sum = softmax_exps(y[r], y[r], 1, m[r], sm, len);
    const float inv = 1.0f / sum;
    ret_scale[r] = p_scale(inv);
    ret_zp[r] = 0;
    const float qinv = 1.0f / ret_scale[r];
    if (!(sum >= 1.0f && sum <= (float)len)) {
      for (int64_t i = 0; i < len; i++) y[r][i] *= inv;
      dynq__quantize_rows(kr, 1, len, y[r], (size_t)len, q[r], (size_t)Kp, 0, &ret_scale[r],
                          &ret_zp[r]);
      continue;
    }
    for (int64_t i = 0; i < len; i++) q[r][i] = quant255(y[r][i], inv, qinv);
    memset(q[r] + len, 0, (size_t)(Kp - len));
  }
}


/* Below this many elements MaskedSoftmax runs on one thread (a wake-up
 * costs about as much as softmax over 16K elements). */
#define SOFTMAX_SPLIT_MIN (INT64_C(1) << 15)
#define SOFTMAX_CHUNKS_PER_THREAD 4

typedef struct msm {
  const dynq__bcast_t *bc;
  const float *x, *m;
  float *y;
  int64_t len, rows, chunks;
} msm_t;

static void msm_task(void *ctx, int64_t t) {
  const msm_t *s = ctx;
  const dynq__bcast_t *bc = s->bc;
  int64_t r0 = s->rows * t / s->chunks, r1 = s->rows * (t + 1) / s->chunks;
  /* the operands' offsets of row r0: its index over the outer axes */
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[2] = {0, 0}, q = r0;
  for (int d = bc->rank - 2; d >= 0; d--) {
    cnt[d] = q % bc->dims[d];
    q /= bc->dims[d];
    for (int k = 0; k < 2; k++) off[k] += cnt[d] * bc->st[k][d];
  }
  for (int64_t r = r0; r < r1; r++, dynq__bcast_next_row(bc, 2, cnt, off))
    masked_softmax_row(s->y + r * s->len, s->x + off[0], bc->st[0][bc->rank - 1],
                       s->m + off[1], bc->st[1][bc->rank - 1], s->len);
}

int dynq__run_masked_softmax(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                             dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_f32(c, in[0], 0)) || (rc = dynq__op_need_f32(c, in[1], 1))) return rc;
  dynq__bcast_t bc;
  if ((rc = dynq__bcast_init(c, 2, in, &bc))) return rc;
  if (bc.rank == 0) return dynq__op_fail(c, DYNQ_ESHAPE, "inputs are scalars");
  /* in place in X's storage when the executor offers it and X has the
   * result's shape (the scores always do): each row is read before it is
   * written, by the same task */
  int same = in[0]->rank == bc.rank && dynq__tensor_numel(in[0]) == bc.n;
  if (same) rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, bc.rank, bc.dims, out);
  else rc = dynq__op_alloc(c, out, DYNQ_DT_F32, bc.rank, bc.dims, 0);
  if (rc) return rc;
  int64_t len = bc.dims[bc.rank - 1];
  if (len == 0 || bc.n == 0) return 0;
  msm_t s = {.bc = &bc, .x = in[0]->data, .m = in[1]->data, .y = out->data, .len = len,
             .rows = bc.n / len, .chunks = 1};
  if (c->threads > 1 && bc.n >= SOFTMAX_SPLIT_MIN && s.rows > 1) {
    s.chunks = (int64_t)c->threads * SOFTMAX_CHUNKS_PER_THREAD;
    if (s.chunks > s.rows) s.chunks = s.rows;
    c->splits += (uint64_t)dynq__parallel_for(c->threads, s.chunks, msm_task, &s);
  } else {
    msm_task(&s, 0);
  }
  return 0;
}

/* ---- Attention: Q K^T, scale, mask, softmax and P V in one node ----
 *
 *   Y = Transpose(Softmax(alpha * Qv Kv + Mask) Vv, perm_y)
 *   with Qv = Transpose(Q, perm_q), Kv = Transpose(K, perm_k), Vv = ...
 *
 * inputs Q, K, V, Mask (float32), then perm_q, perm_k, perm_v, perm_y
 * (int64 constants, each optional); attrs "alpha" and "int8" as
 * StridedMatMul's.  The importer (models/fuse.c) makes it from INT8
 * StridedMatMul(Q, K) -> MaskedSoftmax(., Mask) -> StridedMatMul(., V).
 *
 * On the INT8 path, per batch matrix (batch x head) and block of query
 * rows: the scores come from the INT8 GEMM into a block that stays in
 * L1/L2, each row gets the mask, the softmax and its quantization while
 * it is hot, and the block goes straight into the P V GEMM.  The scores
 * never reach memory, and every step is the one the three-node form
 * runs (the same quantization of Q, K, P and V, the same softmax row
 * function), so the two forms give the same bits.  Any other case (the
 * FP32 path, a layout or mask shape the loop does not take) runs the
 * three steps one after the other: the same result as the unfused nodes. */

#define ATT_ROWS 64  /* query rows per block: a 64 x 128 score block is 32 KB */
/* Below this many multiply-adds the batch matrices run on one thread
 * (QLinear's figure, lib/ops/matmul.c). */
#define ATT_SPLIT_MIN_MACS (INT64_C(1) << 21)
/* Chunks of batch matrices per thread: enough that the last one a thread
 * takes is short (BERT-base at batch 8: 96 heads, 3 per chunk, ~90 us
 * each), while each chunk's scratch is still allocated once for several. */
#define ATT_CHUNKS_PER_THREAD 16

typedef struct att {
  int nb;                             /* batch axes */
  int64_t bdims[DYNQ_MAX_RANK];
  int64_t bst[5][DYNQ_MAX_RANK];      /* Q, K, V, Mask, Y strides per batch axis */
  int64_t M, N, D, Dv;                /* Q: M x D, K: D x N, V: N x Dv, Y: M x Dv */
  int64_t qrs, krs, kcs, vrs, vcs, yrs, mrs, mcs;  /* Q and Y have unit column stride */
  const float *Q, *K, *V, *mask;
  float *Y;
  float alpha;
  const dynq__kernel_t *kr;
  int64_t count, chunks;
  int failed;
  const dynq__run_stop_t *stop;
  atomic_int stopped;                 /* the code a task saw (dynq__run_stop_due) */
} att_t;

/* One task's buffers, one allocation (64-byte aligned parts). */
typedef struct att_scratch {
  void *block;
  uint8_t *aq, *ap;      /* Q quantized: M x Dp; P quantized: ATT_ROWS x Np */
  int8_t *bk, *bv;       /* K packed (N cols of D); V packed (Dv cols of N) */
  float *qs, *ks, *vs, *ps, *s;  /* scales; s: the score block */
  int32_t *qz, *kc, *vc, *pz;    /* zero points, column sums */
} att_scratch_t;

static int att_scratch_alloc(const att_t *a, att_scratch_t *w) {
  const int64_t Dp = dynq__round_up(a->D, DYNQ_QGEMM_KG), Np = dynq__round_up(a->N, DYNQ_QGEMM_KG);
  const int64_t R = a->M < ATT_ROWS ? a->M : ATT_ROWS;
  size_t sz[13] = {
    (size_t)(a->M * Dp), (size_t)(R * Np),
    (size_t)(dynq__round_up(a->N, DYNQ_QGEMM_NR) * Dp),
    (size_t)(dynq__round_up(a->Dv, DYNQ_QGEMM_NR) * Np),
    sizeof(float) * (size_t)a->M, sizeof(float) * (size_t)a->N, sizeof(float) * (size_t)a->Dv,
    sizeof(float) * (size_t)R, sizeof(float) * (size_t)(R * a->N),
    sizeof(int32_t) * (size_t)a->M, sizeof(int32_t) * (size_t)a->N,
    sizeof(int32_t) * (size_t)a->Dv, sizeof(int32_t) * (size_t)R};
  size_t off[13], total = 0;
  for (int i = 0; i < 13; i++) {
    off[i] = total;
    total += (sz[i] + 63) / 64 * 64;
  }
  char *p = dynq__aligned_alloc(total);
  if (p == NULL) return -1;
  w->block = p;
  w->aq = (uint8_t *)(p + off[0]);
  w->ap = (uint8_t *)(p + off[1]);
  w->bk = (int8_t *)(p + off[2]);
  w->bv = (int8_t *)(p + off[3]);
  w->qs = (float *)(p + off[4]);
  w->ks = (float *)(p + off[5]);
  w->vs = (float *)(p + off[6]);
  w->ps = (float *)(p + off[7]);
  w->s = (float *)(p + off[8]);
  w->qz = (int32_t *)(p + off[9]);
  w->kc = (int32_t *)(p + off[10]);
  w->vc = (int32_t *)(p + off[11]);
  w->pz = (int32_t *)(p + off[12]);
  return 0;
}

/* Whether the run must stop (any task saw it first, or the stop is due
 * now): the code stays in a->stopped for the calling thread to report. */
static int att_stop(att_t *a) {
  if (a->stop == NULL) return 0;
  int code = atomic_load_explicit(&a->stopped, memory_order_relaxed);
  if (code == 0 && (code = dynq__run_stop_due(a->stop)) != 0)
    atomic_store_explicit(&a->stopped, code, memory_order_relaxed);
  return code != 0;
}

/* One batch matrix: Q x K^T by blocks of query rows, each block's rows
 * through the masked softmax and quantized, then times V. */
static void att_one(att_t *a, att_scratch_t *w, const float *Q, const float *K,
                    const float *V, const float *mask, float *Y) {
  const int64_t M = a->M, N = a->N, D = a->D, Dv = a->Dv;
  const int64_t Dp = dynq__round_up(D, DYNQ_QGEMM_KG), Np = dynq__round_up(N, DYNQ_QGEMM_KG);
  const dynq__kernel_t *kr = a->kr;
  dynq__quantize_rows(kr, M, D, Q, (size_t)(M == 1 ? D : a->qrs), w->aq, (size_t)Dp, 0, w->qs,
                      w->qz);
  dynq__quantize_cols_packed(D, N, K, a->krs, a->kcs, a->alpha, w->bk, w->kc, w->ks);
  dynq__quantize_cols_packed(N, Dv, V, a->vrs, a->vcs, 1.0f, w->bv, w->vc, w->vs);
  for (int64_t r0 = 0; r0 < M; r0 += ATT_ROWS) {
    const int64_t rows = M - r0 < ATT_ROWS ? M - r0 : ATT_ROWS;
    if (r0 > 0 && att_stop(a)) return; /* one long matrix: stop between row blocks */
    dynq__qgemm_args_t qs = {
      .M = rows, .N = N, .K = D, .A = w->aq + r0 * Dp, .lda = (size_t)Dp, .B = w->bk,
      .colsum = w->kc, .w_scale = w->ks, .a_scale = w->qs + r0, .a_zp = w->qz + r0,
      .bias = NULL, .act = DYNQ_ACT_NONE, .C = w->s, .ldc = (size_t)N, .n0 = 0, .n1 = N,
    };
    kr->qgemm(&qs);
    int64_t r = 0;
    if (a->mcs <= 1)
      for (; r + 2 <= rows; r += 2) {
        softmax_quant_rows2(w->s + r * N, w->s + (r + 1) * N, a->mcs, mask + (r0 + r) * a->mrs,
                            mask + (r0 + r + 1) * a->mrs, N, Np, kr, w->ap + r * Np,
                            w->ap + (r + 1) * Np, w->ps + r, w->pz + r);
      }
    for (; r < rows; r++) {
      softmax_quant_row(w->s + r * N, a->mcs, mask + (r0 + r) * a->mrs, N, Np, kr,
                        w->ap + r * Np, w->ps + r, w->pz + r);
    }
    dynq__qgemm_args_t qy = {
      .M = rows, .N = Dv, .K = N, .A = w->ap, .lda = (size_t)Np, .B = w->bv,
      .colsum = w->vc, .w_scale = w->vs, .a_scale = w->ps, .a_zp = w->pz,
      .bias = NULL, .act = DYNQ_ACT_NONE, .C = Y + r0 * a->yrs, .ldc = (size_t)(M == 1 ? Dv : a->yrs),
      .n0 = 0, .n1 = Dv,
    };
    kr->qgemm(&qy);
  }
}

/* The operands' offsets of batch matrix i (Q, K, V, Mask, Y). */
static void att_offsets(const att_t *a, int64_t i, int64_t *off) {
  for (int k = 0; k < 5; k++) off[k] = 0;
  for (int d = a->nb - 1; d >= 0; d--) {
    int64_t q = i % a->bdims[d];
    i /= a->bdims[d];
    for (int k = 0; k < 5; k++) off[k] += q * a->bst[k][d];
  }
}

static void att_task(void *ctx, int64_t t) {
  att_t *a = ctx;
  int64_t i0 = a->count * t / a->chunks, i1 = a->count * (t + 1) / a->chunks;
  att_scratch_t w;
  if (att_scratch_alloc(a, &w) != 0) {
    a->failed = 1;
    return;
  }
  for (int64_t i = i0; i < i1; i++) {
    int64_t off[5];
    /* M x N x D per matrix: long sequences grow it quadratically */
    if (att_stop(a)) break;
    att_offsets(a, i, off);
    att_one(a, &w, a->Q + off[0], a->K + off[1], a->V + off[2], a->mask + off[3], a->Y + off[4]);
  }
  dynq__aligned_free(w.block);
}

/* The three steps one after the other, as the unfused nodes run them
 * (each names this node in its errors). */
static const dynq__tensor_t *opt_in(const dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                                   int k) {
  return c->node->n_in > k ? in[k] : NULL;
}

static int att_composed(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  dynq__node_t nd = *c->node;
  nd.n_in = 5;
  dynq__op_ctx_t c2 = *c;
  c2.node = &nd;
  c2.splits = 0;
  memset(c2.donor, 0, sizeof(c2.donor));
  dynq__opstate_t st1 = *c->st, st2 = *c->st;
  st2.smatmul.alpha = 1.0f;
  dynq__tensor_t s = {0}, p = {0};
  const dynq__tensor_t *i1[5] = {in[0], in[1], opt_in(c, in, 4), opt_in(c, in, 5), NULL};
  const dynq__tensor_t *im[2] = {&s, in[3]};
  const dynq__tensor_t *i2[5] = {&p, in[2], NULL, opt_in(c, in, 6), opt_in(c, in, 7)};
  c2.st = &st1;
  int rc = dynq__run_smatmul(&c2, i1, &s);
  if (rc == 0) rc = dynq__run_masked_softmax(&c2, im, &p);
  dynq__tensor_clear(&s);
  c2.st = &st2;
  if (rc == 0) rc = dynq__run_smatmul(&c2, i2, out);
  dynq__tensor_clear(&p);
  c->splits += c2.splits;
  return rc;
}

int dynq__run_attention(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                        dynq__tensor_t *out) {
  int rc;
  for (int k = 0; k < 4; k++)
    if ((rc = dynq__op_need_f32(c, in[k], k))) return rc;
  if (c->precision != DYNQ_PRECISION_INT8 || !c->st->smatmul.int8 || c->kernel == NULL)
    return att_composed(c, in, out);
  const dynq__tensor_t *q = in[0], *k = in[1], *v = in[2], *m = in[3];
  const int R = q->rank;
  if (R < 2 || k->rank != R || v->rank != R || m->rank > R) return att_composed(c, in, out);
  static const char *const what[] = {"perm_q", "perm_k", "perm_v", "perm_y"};
  int64_t perm[4][DYNQ_MAX_RANK];
  const dynq__tensor_t *t3[3] = {q, k, v};
  dynq__mview_t vw[3];
  for (int j = 0; j < 3; j++) {
    if ((rc = dynq__smm_perm(c, opt_in(c, in, 4 + j), what[j], R, perm[j]))) return rc;
    dynq__smm_view(t3[j], perm[j], &vw[j]);
  }
  if ((rc = dynq__smm_perm(c, opt_in(c, in, 7), what[3], R, perm[3]))) return rc;
  att_t a = {.nb = R - 2, .M = vw[0].dims[R - 2], .D = vw[0].dims[R - 1], .N = vw[1].dims[R - 1],
             .Dv = vw[2].dims[R - 1], .alpha = c->st->smatmul.alpha, .kr = c->kernel,
             .Q = q->data, .K = k->data, .V = v->data, .mask = m->data, .stop = c->stop};
  /* the loop's case: equal batch axes, Q's rows unit-stride, a mask that
   * broadcasts into the scores without widening them */
  int ok = vw[1].dims[R - 2] == a.D && vw[2].dims[R - 2] == a.N && a.D >= 1 && a.N >= 1 &&
           a.D <= DYNQ_QGEMM_MAX_K && a.N <= DYNQ_QGEMM_MAX_K && (a.D == 1 || vw[0].st[R - 1] == 1);
  int64_t ld[DYNQ_MAX_RANK], mst[DYNQ_MAX_RANK], e = 1;
  for (int d = 0; d < R; d++) {
    if (d < R - 2) {
      ld[d] = vw[0].dims[d];
      ok = ok && vw[1].dims[d] == ld[d] && vw[2].dims[d] == ld[d];
    }
  }
  ld[R - 2] = a.M;
  ld[R - 1] = a.Dv;
  /* the mask's strides over the scores' axes (0: broadcast) */
  for (int d = R - 1; d >= 0; d--) {
    int md = d - (R - m->rank);
    int64_t want = d == R - 1 ? a.N : d == R - 2 ? a.M : ld[d];
    int64_t dim = md >= 0 ? m->dims[md] : 1;
    ok = ok && (dim == 1 || dim == want);
    mst[d] = dim == 1 ? 0 : e;
    e *= dim;
  }
  if (!ok) return att_composed(c, in, out);
  /* the result's physical shape and its strides per logical axis */
  int64_t od[DYNQ_MAX_RANK], ost[DYNQ_MAX_RANK], lst[DYNQ_MAX_RANK];
  for (int d = 0; d < R; d++) od[d] = ld[perm[3][d]];
  e = 1;
  for (int d = R - 1; d >= 0; d--) {
    ost[d] = e;
    e *= od[d];
  }
  for (int d = 0; d < R; d++) lst[perm[3][d]] = ost[d];
  if (a.Dv > 1 && lst[R - 1] != 1) return att_composed(c, in, out);
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, R, od, 0))) return rc;
  a.Y = out->data;
  a.count = 1;
  for (int d = 0; d < a.nb; d++) {
    a.bdims[d] = ld[d];
    a.count *= ld[d];
    a.bst[0][d] = vw[0].st[d];
    a.bst[1][d] = vw[1].st[d];
    a.bst[2][d] = vw[2].st[d];
    a.bst[3][d] = mst[d];
    a.bst[4][d] = lst[d];
  }
  a.qrs = vw[0].st[R - 2];
  a.krs = vw[1].st[R - 2];
  a.kcs = vw[1].st[R - 1];
  a.vrs = vw[2].st[R - 2];
  a.vcs = vw[2].st[R - 1];
  a.yrs = lst[R - 2];
  a.mrs = mst[R - 2];
  a.mcs = mst[R - 1];
  if (a.count == 0 || a.M == 0 || a.Dv == 0) return 0;
  a.chunks = 1;
  if (c->threads > 1 && a.count > 1 && a.count * a.M * a.N * (a.D + a.Dv) >= ATT_SPLIT_MIN_MACS)
    a.chunks = a.count < (int64_t)c->threads * ATT_CHUNKS_PER_THREAD
                   ? a.count : (int64_t)c->threads * ATT_CHUNKS_PER_THREAD;
  if (a.chunks > 1)
    c->splits += (uint64_t)dynq__parallel_for(c->threads, a.chunks, att_task, &a);
  else
    att_task(&a, 0);
  if (a.failed) {
    dynq__tensor_clear(out);
    return dynq__op_fail(c, -ENOMEM, "out of memory");
  }
  int code = atomic_load(&a.stopped);
  if (code != 0) return dynq__op_stopped(c, code);
  return 0;
}

/* ---- RotaryEmbedding (opset 23) ----
 *
 * X [B, H, S, D], or [B, S, H x D] with num_heads H; in each head's vector
 * the first rotary_embedding_dim values (0: all D; even) turn as rd / 2
 * complex pairs, (x[i], x[i + rd / 2]), or interleaved (x[2i], x[2i + 1]),
 * by the angles whose cosines and sines are cos_cache and sin_cache
 * [B, S, rd / 2], or [P, rd / 2] rows picked by position_ids [B, S]:
 * (x1 cos - x2 sin, x1 sin + x2 cos) in float, as ONNX's reference; the
 * rest pass through. */

int dynq__prep_rotary(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                      char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->rotary.interleaved = dynq__node_attr_i(n, "interleaved", 0) != 0;
  st->rotary.num_heads = dynq__node_attr_i(n, "num_heads", 0);
  st->rotary.dim = dynq__node_attr_i(n, "rotary_embedding_dim", 0);
  return 0;
}

int dynq__check_rotary(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  int64_t il = dynq__node_attr_i(n, "interleaved", 0), nh = dynq__node_attr_i(n, "num_heads", 0),
          rd = dynq__node_attr_i(n, "rotary_embedding_dim", 0);
  DYNQ_OP_CHECK(il == 0 || il == 1, "interleaved %lld is not 0 or 1", (long long)il);
  DYNQ_OP_CHECK(nh >= 0 && nh <= 65536, "num_heads %lld is not within [0, 65536]", (long long)nh);
  DYNQ_OP_CHECK(rd >= 0 && rd <= 65536 && rd % 2 == 0,
                "rotary_embedding_dim %lld is not an even number within [0, 65536]",
                (long long)rd);
  return 0;
}

int dynq__run_rotary(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *cs = in[1], *sn = in[2];
  const dynq__tensor_t *pos = c->node->n_in > 3 ? in[3] : NULL;
  int rc;
  char b1[96], b2[96];
  if ((rc = dynq__op_need_present(c, x, 0)) || (rc = dynq__op_need_present(c, cs, 1)) ||
      (rc = dynq__op_need_present(c, sn, 2)) || (rc = dynq__op_need_f32(c, x, 0)) ||
      (rc = dynq__op_need_f32(c, cs, 1)) || (rc = dynq__op_need_f32(c, sn, 2)))
    return rc;
  if (x->rank != 3 && x->rank != 4)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input %s must be [B, H, S, D] or [B, S, H x D]",
                         dynq__shape_str(b1, sizeof b1, x->rank, x->dims));
  const int64_t B = x->dims[0], S = x->dims[x->rank == 4 ? 2 : 1];
  int64_t H, D;
  if (x->rank == 4) {
    H = x->dims[1], D = x->dims[3];
  } else {
    H = c->st->rotary.num_heads;
    if (H < 1 || x->dims[2] % H != 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "a 3-D input %s needs num_heads dividing its last "
                           "axis (num_heads %lld)", dynq__shape_str(b1, sizeof b1, 3, x->dims),
                           (long long)H);
    D = x->dims[2] / H;
  }
  const int64_t rd = c->st->rotary.dim ? c->st->rotary.dim : D, half = rd / 2;
  if (rd % 2 != 0 || rd > D)
    return dynq__op_fail(c, DYNQ_ESHAPE, "rotating %lld of a head's %lld values: an even "
                         "number up to the head size expected", (long long)rd, (long long)D);
  /* the caches: [B, S, half] as given, or [P, half] rows by position */
  const int byrow = pos != NULL;
  if (cs->rank != sn->rank || memcmp(cs->dims, sn->dims, sizeof(int64_t) * (size_t)cs->rank) ||
      (byrow ? cs->rank != 2 || cs->dims[1] != half
             : cs->rank != 3 || cs->dims[0] != B || cs->dims[1] != S || cs->dims[2] != half))
    return dynq__op_fail(c, DYNQ_ESHAPE, "cos_cache %s and sin_cache %s: %s expected",
                         dynq__shape_str(b1, sizeof b1, cs->rank, cs->dims),
                         dynq__shape_str(b2, sizeof b2, sn->rank, sn->dims),
                         byrow ? "[max positions, rotary dim / 2] (with position_ids)"
                               : "[B, S, rotary dim / 2] (without position_ids)");
  if (byrow && (!dynq__dt_is_int(pos->dtype) || pos->rank != 2 || pos->dims[0] != B ||
                pos->dims[1] != S))
    return dynq__op_fail(c, DYNQ_ESHAPE, "position_ids %s must be integers [B, S]",
                         dynq__shape_str(b1, sizeof b1, pos->rank, pos->dims));
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, x->rank, x->dims, 0))) return rc;
  const float *xv = x->data, *cv = cs->data, *sv = sn->data;
  float *yv = out->data;
  const int il = c->st->rotary.interleaved;
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++) {
      int64_t row = b * S + s;
      if (byrow) {
        row = dynq__load_i(pos->data, pos->dtype, b * S + s);
        if (row < 0 || row >= cs->dims[0]) {
          dynq__tensor_clear(out);
          return dynq__op_fail(c, DYNQ_EDATA, "position_ids[%lld][%lld] = %lld is not within "
                               "the %lld cached positions", (long long)b, (long long)s,
                               (long long)row, (long long)cs->dims[0]);
        }
      }
      const float *co = cv + row * half, *si = sv + row * half;
      for (int64_t h = 0; h < H; h++) {
        const int64_t at = x->rank == 4 ? ((b * H + h) * S + s) * D : ((b * S + s) * H + h) * D;
        const float *v = xv + at;
        float *y = yv + at;
        for (int64_t i = 0; i < half; i++) {
          const int64_t i1 = il ? 2 * i : i, i2 = il ? 2 * i + 1 : i + half;
          const float x1 = v[i1], x2 = v[i2];
          y[i1] = co[i] * x1 - si[i] * x2;
          y[i2] = si[i] * x1 + co[i] * x2;
        }
        memcpy(y + rd, v + rd, (size_t)(D - rd) * sizeof(float));
      }
      if ((b * S + s) % 256 == 255 && (rc = dynq__op_poll(c))) {
        dynq__tensor_clear(out); /* a failed op leaves no output */
        return rc;
      }
    }
  return 0;
}

/* ---- Attention (ONNX opset 23; 24 without nonpad_kv_seqlen) ----
 *
 * Q [B, Hq, Sq, D], K [B, Hkv, Skv, D], V [B, Hkv, Skv, Dv], or the 3-D
 * [B, S, heads x size] forms with q_num_heads and kv_num_heads; past_key
 * [B, Hkv, P, D] and past_value [B, Hkv, P, Dv] go before K and V on the
 * sequence axis (T = P + Skv keys), and those concatenations are
 * present_key and present_value.  Query head h reads key/value head
 * h / (Hq / Hkv) (GQA's contiguous groups; MQA: Hkv 1).  Per query row:
 *
 *   s = scale * q . k           (qk_matmul_output mode 0)
 *   s = softcap * tanh(s / softcap) when softcap > 0   (mode 1)
 *   s += mask + causal          (mode 2)
 *   p = softmax(s)              (mode 3);  y = p . V
 *
 * softcap before the mask, as ONNX Runtime 1.30 computes it (its
 * qk_matmul_output modes 1 and 2 in this order) and ONNX's newer
 * reference: the opset 23/24 text adds the mask first, which turns a
 * masked -inf into -softcap and gives masked and future keys weight.  The mask
 * (float: added; uint8, the importer's bool: nonzero takes part, zero is
 * -inf) broadcasts to [B, Hq, Sq, T] from rank 1 to 4; a last axis
 * shorter than T is padded with -inf (false), as ONNX's reference does,
 * even one of length 1.  is_causal hides key j from query i when j > i + P
 * (bottom-right from the past keys on, as ONNX's reference and ORT; with
 * no past: j > i).  A row whose every score is -inf gives NaN, as the
 * reference's softmax does. */

int dynq__prep_attention23(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                           char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->attn23.causal = dynq__node_attr_i(n, "is_causal", 0) != 0;
  st->attn23.mode = (int)dynq__node_attr_i(n, "qk_matmul_output_mode", 0);
  st->attn23.q_heads = dynq__node_attr_i(n, "q_num_heads", 0);
  st->attn23.kv_heads = dynq__node_attr_i(n, "kv_num_heads", 0);
  st->attn23.scale = dynq__node_attr_f(n, "scale", 0.0f);
  st->attn23.softcap = dynq__node_attr_f(n, "softcap", 0.0f);
  return 0;
}

int dynq__check_attention23(const dynq__graph_t *g, const dynq__node_t *n, char *err,
                            size_t errlen) {
  (void)g;
  int64_t ic = dynq__node_attr_i(n, "is_causal", 0), md = dynq__node_attr_i(n, "qk_matmul_output_mode", 0),
          qh = dynq__node_attr_i(n, "q_num_heads", 0), kh = dynq__node_attr_i(n, "kv_num_heads", 0);
  float sc = dynq__node_attr_f(n, "scale", 0.0f), cap = dynq__node_attr_f(n, "softcap", 0.0f);
  DYNQ_OP_CHECK(ic == 0 || ic == 1, "is_causal %lld is not 0 or 1", (long long)ic);
  DYNQ_OP_CHECK(md >= 0 && md <= 3, "qk_matmul_output_mode %lld is not within [0, 3]",
                (long long)md);
  DYNQ_OP_CHECK(qh >= 0 && qh <= 65536 && kh >= 0 && kh <= 65536,
                "q_num_heads %lld and kv_num_heads %lld must be within [0, 65536]",
                (long long)qh, (long long)kh);
  DYNQ_OP_CHECK(kh == 0 || qh % kh == 0, "q_num_heads %lld is not a multiple of kv_num_heads %lld",
                (long long)qh, (long long)kh);
  DYNQ_OP_CHECK(sc == 0.0f || (isfinite(sc) && sc > 0.0f), "scale %g is not a positive finite number",
                (double)sc);
  DYNQ_OP_CHECK(isfinite(cap) && cap >= 0.0f, "softcap %g is not a finite number >= 0", (double)cap);
  return 0;
}

/* The geometry of one run, from the inputs' shapes. */
typedef struct a23 {
  int rank3;                         /* 3-D Q, K, V (and Y) */
  int64_t B, Hq, Hkv, Sq, Skv, P, T, D, Dv;
  int64_t mdims[4];                  /* the mask's shape right-aligned to 4 axes (1s in front) */
  int64_t mst[4];                    /* its element strides, 0 on broadcast axes */
} a23_t;

/* Reads the shapes into *a; 0 or an error naming the node. */
static int a23_shapes(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, a23_t *a) {
  const dynq__tensor_t *q = in[0], *k = in[1], *v = in[2];
  const dynq__tensor_t *m = opt_in(c, in, 3), *pk = opt_in(c, in, 4), *pv = opt_in(c, in, 5);
  char b1[96], b2[96], b3[96];
  if (q->rank != k->rank || q->rank != v->rank || (q->rank != 3 && q->rank != 4))
    return dynq__op_fail(c, DYNQ_ESHAPE, "Q %s, K %s and V %s must all be 4-D [B, heads, S, size] "
                         "or all 3-D [B, S, heads x size]",
                         dynq__shape_str(b1, sizeof b1, q->rank, q->dims),
                         dynq__shape_str(b2, sizeof b2, k->rank, k->dims),
                         dynq__shape_str(b3, sizeof b3, v->rank, v->dims));
  const int64_t qh = c->st->attn23.q_heads, kh = c->st->attn23.kv_heads;
  a->rank3 = q->rank == 3;
  a->B = q->dims[0];
  if (a->rank3) {
    if (qh < 1 || kh < 1)
      return dynq__op_fail(c, DYNQ_ESHAPE, "3-D inputs need q_num_heads and kv_num_heads "
                           "(have %lld and %lld)", (long long)qh, (long long)kh);
    a->Hq = qh, a->Hkv = kh, a->Sq = q->dims[1], a->Skv = k->dims[1];
    if (q->dims[2] % qh != 0 || k->dims[2] % kh != 0 || v->dims[2] % kh != 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "Q %s, K %s, V %s: the last axes are not multiples of "
                           "q_num_heads %lld, kv_num_heads %lld",
                           dynq__shape_str(b1, sizeof b1, 3, q->dims),
                           dynq__shape_str(b2, sizeof b2, 3, k->dims),
                           dynq__shape_str(b3, sizeof b3, 3, v->dims), (long long)qh, (long long)kh);
    a->D = q->dims[2] / qh, a->Dv = v->dims[2] / kh;
    if (k->dims[2] / kh != a->D || k->dims[0] != a->B || v->dims[0] != a->B ||
        v->dims[1] != a->Skv)
      return dynq__op_fail(c, DYNQ_ESHAPE, "Q %s, K %s and V %s do not agree on the batch, the "
                           "key sequence or the head size",
                           dynq__shape_str(b1, sizeof b1, 3, q->dims),
                           dynq__shape_str(b2, sizeof b2, 3, k->dims),
                           dynq__shape_str(b3, sizeof b3, 3, v->dims));
  } else {
    a->Hq = q->dims[1], a->Hkv = k->dims[1], a->Sq = q->dims[2], a->Skv = k->dims[2];
    a->D = q->dims[3], a->Dv = v->dims[3];
    if (k->dims[0] != a->B || v->dims[0] != a->B || v->dims[1] != a->Hkv ||
        k->dims[3] != a->D || v->dims[2] != a->Skv)
      return dynq__op_fail(c, DYNQ_ESHAPE, "Q %s, K %s and V %s do not agree: [B, Hq, Sq, D], "
                           "[B, Hkv, Skv, D], [B, Hkv, Skv, Dv] expected",
                           dynq__shape_str(b1, sizeof b1, 4, q->dims),
                           dynq__shape_str(b2, sizeof b2, 4, k->dims),
                           dynq__shape_str(b3, sizeof b3, 4, v->dims));
    if ((qh != 0 && qh != a->Hq) || (kh != 0 && kh != a->Hkv))
      return dynq__op_fail(c, DYNQ_ESHAPE, "q_num_heads %lld, kv_num_heads %lld but Q has %lld "
                           "heads and K %lld", (long long)qh, (long long)kh, (long long)a->Hq,
                           (long long)a->Hkv);
  }
  if (a->Hkv < 1 || a->Hq % a->Hkv != 0)
    return dynq__op_fail(c, DYNQ_ESHAPE, "%lld query heads are not a multiple of %lld key/value "
                         "heads", (long long)a->Hq, (long long)a->Hkv);
  if ((pk == NULL) != (pv == NULL))
    return dynq__op_fail(c, DYNQ_EGRAPH, "past_key and past_value go together (one is missing)");
  a->P = 0;
  if (pk != NULL) {
    int rc;
    if ((rc = dynq__op_need_f32(c, pk, 4)) || (rc = dynq__op_need_f32(c, pv, 5))) return rc;
    if (pk->rank != 4 || pv->rank != 4 || pk->dims[0] != a->B || pk->dims[1] != a->Hkv ||
        pk->dims[3] != a->D || pv->dims[0] != a->B || pv->dims[1] != a->Hkv ||
        pv->dims[2] != pk->dims[2] || pv->dims[3] != a->Dv)
      return dynq__op_fail(c, DYNQ_ESHAPE, "past_key %s and past_value %s: [%lld, %lld, P, %lld] "
                           "and [%lld, %lld, P, %lld] expected",
                           dynq__shape_str(b1, sizeof b1, pk->rank, pk->dims),
                           dynq__shape_str(b2, sizeof b2, pv->rank, pv->dims), (long long)a->B,
                           (long long)a->Hkv, (long long)a->D, (long long)a->B, (long long)a->Hkv,
                           (long long)a->Dv);
    a->P = pk->dims[2];
  }
  a->T = a->P + a->Skv;  /* each under 2^31: no overflow */
  for (int d = 0; d < 4; d++) a->mdims[d] = 1, a->mst[d] = 0;
  if (m != NULL) {
    if (m->dtype != DYNQ_DT_F32 && m->dtype != DYNQ_DT_U8)
      return dynq__op_fail(c, DYNQ_EDTYPE, "attn_mask is %s; bool or float32 expected",
                           dynq__dtype_name(m->dtype));
    const int64_t want[4] = {a->B, a->Hq, a->Sq, a->T};
    int ok = m->rank >= 1 && m->rank <= 4;
    for (int d = 0; ok && d < m->rank; d++) {
      const int at = 4 - m->rank + d;
      a->mdims[at] = m->dims[d];
      ok = at == 3 ? m->dims[d] <= a->T : m->dims[d] == 1 || m->dims[d] == want[at];
    }
    if (!ok)
      return dynq__op_fail(c, DYNQ_ESHAPE, "attn_mask %s does not broadcast to [B, Hq, Sq, T] = "
                           "[%lld, %lld, %lld, %lld] (its last axis may be shorter than T)",
                           dynq__shape_str(b1, sizeof b1, m->rank, m->dims), (long long)a->B,
                           (long long)a->Hq, (long long)a->Sq, (long long)a->T);
    int64_t e = 1;
    for (int d = 3; d >= 0; d--) {
      a->mst[d] = d < 3 && a->mdims[d] == 1 ? 0 : e;
      e *= a->mdims[d];
    }
  }
  return 0;
}

/* Key/value head h's rows of the present key (or value): past rows, then
 * the new ones, [T, size] into dst. */
static void a23_present(const a23_t *a, const float *past, const float *cur, int64_t size,
                        int64_t b, int64_t h, float *dst) {
  if (size == 0) return; /* nothing to copy, and an empty input may have no storage */
  if (a->P > 0)
    memcpy(dst, past + ((b * a->Hkv + h) * a->P) * size, (size_t)(a->P * size) * sizeof(float));
  for (int64_t s = 0; s < a->Skv; s++) {
    const float *src = a->rank3 ? cur + ((b * a->Skv + s) * a->Hkv + h) * size
                                : cur + ((b * a->Hkv + h) * a->Skv + s) * size;
    memcpy(dst + (a->P + s) * size, src, (size_t)size * sizeof(float));
  }
}

/* One score row (T values of query row i of head h in batch b) through
 * softcap, the mask, the causal rule and the softmax, in place; the
 * mode's stage into qk (NULL: not wanted). */
static void a23_row(const a23_t *a, const dynq__tensor_t *m, int causal, int mode, float cap,
                    int64_t b, int64_t h, int64_t i, float *s, float *qk) {
  const int64_t T = a->T;
  if (qk != NULL && mode == 0) memcpy(qk, s, (size_t)T * sizeof(float));
  if (cap > 0.0f)
    for (int64_t j = 0; j < T; j++) s[j] = (float)((double)cap * tanh((double)s[j] / cap));
  if (qk != NULL && mode == 1) memcpy(qk, s, (size_t)T * sizeof(float));
  if (m != NULL) {
    const int64_t L = a->mdims[3];
    const int64_t off = (a->mdims[0] == 1 ? 0 : b) * a->mst[0] +
                        (a->mdims[1] == 1 ? 0 : h) * a->mst[1] + (a->mdims[2] == 1 ? 0 : i) * a->mst[2];
    if (m->dtype == DYNQ_DT_U8) {
      const uint8_t *mv = (const uint8_t *)m->data + off;
      for (int64_t j = 0; j < L; j++)
        if (mv[j] == 0) s[j] = -INFINITY;
    } else {
      const float *mv = (const float *)m->data + off;
      for (int64_t j = 0; j < L; j++) s[j] += mv[j];
    }
    for (int64_t j = L; j < T; j++) s[j] = -INFINITY;
  }
  if (causal)
    for (int64_t j = i + a->P + 1; j < T; j++) s[j] = -INFINITY;
  if (qk != NULL && mode == 2) memcpy(qk, s, (size_t)T * sizeof(float));
  /* the softmax, vectorized as Softmax's: a row all -inf gives NaN
   * (-inf - -inf), as the reference's; a NaN anywhere spreads over the
   * row */
  dynq__softmax_row(s, T);
  if (qk != NULL && mode == 3) memcpy(qk, s, (size_t)T * sizeof(float));
}

int dynq__run_attention23(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                          dynq__tensor_t *out) {
  int rc;
  for (int k = 0; k < 3; k++)
    if ((rc = dynq__op_need_present(c, in[k], k)) || (rc = dynq__op_need_f32(c, in[k], k)))
      return rc;
  a23_t a;
  if ((rc = a23_shapes(c, in, &a))) return rc;
  const dynq__tensor_t *m = opt_in(c, in, 3), *pk = opt_in(c, in, 4), *pv = opt_in(c, in, 5);
  const int no = c->node->n_out;
  const int want_pk = no > 1 && c->node->out[1] >= 0, want_pv = no > 2 && c->node->out[2] >= 0,
            want_qk = no > 3 && c->node->out[3] >= 0;
  /* outputs: Y, present_key, present_value, qk_matmul_output */
  int64_t yd[4], kd[4] = {a.B, a.Hkv, a.T, a.D}, vd[4] = {a.B, a.Hkv, a.T, a.Dv},
                 qd[4] = {a.B, a.Hq, a.Sq, a.T};
  if (a.rank3) yd[0] = a.B, yd[1] = a.Sq, yd[2] = a.Hq * a.Dv;
  else yd[0] = a.B, yd[1] = a.Hq, yd[2] = a.Sq, yd[3] = a.Dv;
  /* scratch: one head's present K and V and the scores of its rows, in
   * one block; sized from inputs, so the block is checked against the cap
   * (each part is under 2^31 elements: their sum fits) */
  const int64_t sz[3][2] = {{a.T, a.D}, {a.T, a.Dv}, {a.Sq, a.T}};
  static const char *const what[3] = {"the present key of a head", "the present value of a head",
                                      "the scores of a head"};
  int64_t n[3];
  for (int k = 0; k < 3; k++) {
    n[k] = dynq__shape_numel(2, sz[k]);
    if (n[k] < 0)
      return dynq__op_fail(c, DYNQ_ELIMIT, "%s ([%lld, %lld]) is too large", what[k],
                           (long long)sz[k][0], (long long)sz[k][1]);
  }
  if ((rc = dynq__op_check_bytes(c, n[0] + n[1] + n[2], 4,
                                 "a head's present key, value and scores")))
    return rc;
  if ((rc = dynq__op_alloc(c, &out[0], DYNQ_DT_F32, a.rank3 ? 3 : 4, yd, 0))) return rc;
  if ((want_pk && (rc = dynq__op_alloc(c, &out[1], DYNQ_DT_F32, 4, kd, 0))) ||
      (want_pv && (rc = dynq__op_alloc(c, &out[2], DYNQ_DT_F32, 4, vd, 0))) ||
      (want_qk && (rc = dynq__op_alloc(c, &out[3], DYNQ_DT_F32, 4, qd, 0))))
    goto fail;
  float *kh = malloc((size_t)(n[0] + n[1] + n[2]) * sizeof(float) + 1);
  if (kh == NULL) {
    rc = dynq__op_fail(c, -ENOMEM, "out of memory");
    goto fail;
  }
  float *vh = kh + n[0], *sc = vh + n[1];
  const float scale = c->st->attn23.scale > 0.0f ? c->st->attn23.scale
                                                 : (float)(1.0 / sqrt((double)a.D));
  const int64_t G = a.Hq / a.Hkv;
  const float *qv = in[0]->data;
  float *yv = out[0].data;
  for (int64_t b = 0; b < a.B && rc == 0; b++)
    for (int64_t g = 0; g < a.Hkv && rc == 0; g++) {
      a23_present(&a, pk ? pk->data : NULL, in[1]->data, a.D, b, g, kh);
      a23_present(&a, pv ? pv->data : NULL, in[2]->data, a.Dv, b, g, vh);
      if (want_pk && n[0] > 0)
        memcpy((float *)out[1].data + (b * a.Hkv + g) * n[0], kh, (size_t)n[0] * sizeof(float));
      if (want_pv && n[1] > 0)
        memcpy((float *)out[2].data + (b * a.Hkv + g) * n[1], vh, (size_t)n[1] * sizeof(float));
      for (int64_t h = g * G; h < (g + 1) * G; h++) {
        /* Q's rows of head h: [Sq, D] with row stride ld */
        const int64_t ldq = a.rank3 ? a.Hq * a.D : a.D, ldy = a.rank3 ? a.Hq * a.Dv : a.Dv;
        const float *qh = a.rank3 ? qv + b * a.Sq * ldq + h * a.D : qv + (b * a.Hq + h) * a.Sq * a.D;
        float *yh = a.rank3 ? yv + b * a.Sq * ldy + h * a.Dv : yv + (b * a.Hq + h) * a.Sq * a.Dv;
        /* with Dv 0, Y is empty but a wanted qk_matmul_output is not */
        if (a.Sq == 0 || (a.Dv == 0 && !want_qk)) continue;
        if (a.T == 0) { /* no keys: softmax of nothing, NaN as the reference's */
          for (int64_t i = 0; i < a.Sq; i++)
            for (int64_t d = 0; d < a.Dv; d++) yh[i * ldy + d] = NAN;
          continue;
        }
        if (a.D == 0) memset(sc, 0, (size_t)n[2] * sizeof(float));
        else dynq__sgemm(0, 1, a.Sq, a.T, a.D, scale, qh, ldq, kh, a.D, 0.0f, sc, a.T);
        float *qk = want_qk ? (float *)out[3].data + (b * a.Hq + h) * n[2] : NULL;
        for (int64_t i = 0; i < a.Sq; i++)
          a23_row(&a, m, c->st->attn23.causal, c->st->attn23.mode, c->st->attn23.softcap, b, h,
                  i, sc + i * a.T, qk ? qk + i * a.T : NULL);
        if (a.Dv > 0) dynq__sgemm(0, 0, a.Sq, a.Dv, a.T, 1.0f, sc, a.T, vh, a.Dv, 0.0f, yh, ldy);
        rc = dynq__op_poll(c);
      }
    }
  free(kh);
  if (rc == 0) return 0;
fail:
  for (int k = 0; k < 4 && k < no; k++) dynq__tensor_clear(&out[k]); /* a failed op leaves none */
  return rc;
}
