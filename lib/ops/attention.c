/*
 * Attention's softmax: MaskedSoftmax(X, Mask) = Softmax(X + Mask) over the
 * last axis, X and Mask broadcast as Add's (the importer's form of the
 * mask Add and Softmax, models/fuse.c).  One pass adds the mask and finds
 * the row maximum, one takes the exponentials and their sum, one scales;
 * the row (a few hundred bytes) stays in L1 across the three.  Rows are
 * split over c->threads threads when there are enough of them.
 *
 * The row functions are compiled for AVX-512, AVX2 and the baseline and
 * picked at load (target_clones), written with generic vectors
 * (kernels/gvec.h); every clone performs the same IEEE operations in the
 * same order (16 fixed lanes, combined pairwise, no FMA contraction), so
 * every machine gives the same bits.
 */
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dynq/errors.h"
#include "kernels/gvec.h"
#include "parallel.h"

#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define LANES DYNQ_GV_LANES

typedef dynq_gvf vf_t;
typedef dynq_gvi vi_t;
#define vload dynq_gv_load
#define vsplat dynq_gv_splat
#define vsel dynq_gv_sel

/* e^x for the arguments a softmax sees, x <= 0 (x - max of the row):
 * 2^n * p(r) with x = n ln2 + r, |r| <= ln2/2, and p the degree-6 Taylor
 * polynomial of e^r (within 3e-7 of e^x relative, rounding included).  x
 * is clamped at -87, so 2^n stays a normal number built from its exponent
 * bits alone; below -87 the result is e^-87 (1.6e-38) instead of a smaller
 * number, an absolute error under 2e-38.  Positive x is the caller's bug,
 * not handled (n would pass 127).  NaN gives NaN. */
static inline __attribute__((always_inline)) vf_t exp_nonpos(vf_t x) {
  x = vsel(x < vsplat(-87.0f), vsplat(-87.0f), x);  /* NaN passes through */
  const vf_t magic = vsplat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
  vf_t t = x * 1.44269504088896341f + magic;
  vf_t n = t - magic;
  vf_t r = x - n * 0.693359375f;  /* ln2 in two parts: n * hi is exact */
  r = r + n * 2.12194440e-4f;
  vf_t p = vsplat(1.0f / 720.0f);
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  /* n + 127 into the exponent field: t's low bits hold n + 0x400000 */
  vi_t eb = ((vi_t)t - (0x4B400000 - 127)) << 23;
  return p * (vf_t)eb;
}

/* For tests: the row function's exponential on one value (test-ops checks
 * it against expf over [-87, 0]). */
float dynq__softmax_exp(float x) { return exp_nonpos(vsplat(x))[0]; }

/* y[i] = x[i * sx] + m[i * sm] (strides 0: broadcast), then the softmax of
 * y in place.  A NaN anywhere makes the row NaN (through the sum), as the
 * reference does; a row masked entirely with -inf is NaN too.  y may be x
 * (each vector is loaded before it is stored). */
CLONES static void masked_softmax_row(float *y, const float *x, int64_t sx, const float *m,
                                      int64_t sm, int64_t len) {
  vf_t mv = vsplat(-INFINITY), s = vsplat(0.0f), v;
  int64_t i = 0;
  for (; i + LANES <= len; i += LANES) {
    if (sx == 1 && sm == 1) {
      v = vload(x + i) + vload(m + i);
    } else if (sx == 1 && sm == 0) {
      v = vload(x + i) + m[0];
    } else {
      for (int k = 0; k < LANES; k++) v[k] = x[(i + k) * sx] + m[(i + k) * sm];
    }
    mv = vsel(v > mv, v, mv);
    memcpy(y + i, &v, sizeof(v));
  }
  const int tail = (int)(len - i);
  v = vsplat(-INFINITY);
  for (int k = 0; k < tail; k++) v[k] = x[(i + k) * sx] + m[(i + k) * sm];
  mv = vsel(v > mv, v, mv);
  vf_t last = v;
  float mx = mv[0];
  for (int k = 1; k < LANES; k++) mx = mv[k] > mx ? mv[k] : mx;
  /* a NaN lost by the max comparisons still reaches the sum below */
  for (i = 0; i + LANES <= len; i += LANES) {
    vf_t e = exp_nonpos(vload(y + i) - mx);
    memcpy(y + i, &e, sizeof(e));
    s += e;
  }
  if (tail > 0) {
    vf_t e = exp_nonpos(last - mx);
    for (int k = 0; k < tail; k++) y[i + k] = e[k];
    for (int k = tail; k < LANES; k++) e[k] = 0.0f;
    s += e;
  }
  float sum[LANES];
  memcpy(sum, &s, sizeof(sum));
  for (int w = LANES / 2; w >= 1; w /= 2) /* pairwise: a fixed order */
    for (int k = 0; k < w; k++) sum[k] += sum[k + w];
  const float inv = 1.0f / sum[0];
  for (i = 0; i + LANES <= len; i += LANES) {
    vf_t e = vload(y + i) * inv;
    memcpy(y + i, &e, sizeof(e));
  }
  for (; i < len; i++) y[i] *= inv;
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
