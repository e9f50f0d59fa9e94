/* Normalizations: Softmax along one axis (opset 13 semantics) or over the
 * axes from one on (the opset < 13 form), LayerNormalization over the
 * trailing axes, BatchNormalization (inference form) per channel,
 * LpNormalization along one axis, GroupNormalization over groups of
 * channels, RMSNormalization over the trailing axes. */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "kernels/gvec.h"
#include "parallel.h"
#include "vmath.h"

/* The row functions are compiled for AVX-512, AVX2 and the baseline and
 * picked at load (target_clones); the sums run in 16 fixed lanes combined
 * in a fixed order, so every clone gives the same bits.  no-trapping-math
 * lets GCC if-convert the selects (results unchanged). */
#define VEC DYNQ_VEC_OPT
#define CLONES DYNQ_CLONES
#define LANES 16

/* Softmax of one contiguous row, in place.  A NaN anywhere makes the
 * row NaN (through the sum), as the reference does. */
CLONES VEC void dynq__softmax_row(float *y, int64_t len) {
  float m[LANES], s[LANES];
  for (int k = 0; k < LANES; k++) m[k] = -INFINITY, s[k] = 0.0f;
  int64_t i = 0;
  for (; i + LANES <= len; i += LANES)
    for (int k = 0; k < LANES; k++) m[k] = y[i + k] > m[k] ? y[i + k] : m[k];
  float mx = -INFINITY;
  for (; i < len; i++) mx = y[i] > mx ? y[i] : mx;
  for (int k = 0; k < LANES; k++) mx = m[k] > mx ? m[k] : mx;
  for (i = 0; i + LANES <= len; i += LANES)
    for (int k = 0; k < LANES; k++) {
      float e = dynq_vexp(y[i + k] - mx);
      y[i + k] = e;
      s[k] += e;
    }
  float tail = 0.0f;
  for (; i < len; i++) {
    y[i] = dynq_vexp(y[i] - mx);
    tail += y[i];
  }
  for (int w = LANES / 2; w >= 1; w /= 2) /* pairwise: a fixed order */
    for (int k = 0; k < w; k++) s[k] += s[k + w];
  float inv = 1.0f / (s[0] + tail);
  for (i = 0; i < len; i++) y[i] *= inv;
}

/* Softmax and LogSoftmax over "axis" of a float input: checks it, makes
 * the output (X's shape) and gives the geometry, outer rows of len values
 * inner apart.  With "flatten" (the importer's opset < 13 form) the axes
 * from axis on are one. */
int dynq__softmax_geometry(dynq__op_ctx_t *c, const dynq__tensor_t *x, dynq__tensor_t *out,
                           int64_t *ret_outer, int64_t *ret_len, int64_t *ret_inner) {
  int rc, ax = 0;
  if ((rc = dynq__op_need_f32(c, x, 0))) return rc;
  if (x->rank == 0) return dynq__op_fail(c, DYNQ_ESHAPE, "input is a scalar");
  if ((rc = dynq__op_norm_axis(c, c->st->softmax.axis, x->rank, 0, &ax))) return rc;
  if ((rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, x->rank, x->dims, out))) return rc;
  int64_t len = x->dims[ax], inner = 1, outer = 1;
  for (int d = ax + 1; d < x->rank; d++) inner *= x->dims[d];
  if (c->st->softmax.flatten) {
    len *= inner;
    inner = 1;
  }
  for (int d = 0; d < ax; d++) outer *= x->dims[d];
  *ret_outer = outer;
  *ret_len = len;
  *ret_inner = inner;
  return 0;
}

int dynq__run_softmax(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  int64_t outer, len, inner;
  int rc = dynq__softmax_geometry(c, x, out, &outer, &len, &inner);
  if (rc) return rc;
  const float *px = x->data;
  float *py = out->data;
  if (inner == 1) { /* the usual case: contiguous rows (in place when donated) */
    if (py != px) memcpy(py, px, sizeof(float) * (size_t)(outer * len));
    for (int64_t o = 0; o < outer; o++) dynq__softmax_row(py + o * len, len);
    return 0;
  }
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const float *xs = px + o * len * inner + i;
      float *ys = py + o * len * inner + i;
      float mx = -INFINITY;
      for (int64_t k = 0; k < len; k++) mx = xs[k * inner] > mx ? xs[k * inner] : mx;
      double sum = 0;
      for (int64_t k = 0; k < len; k++) {
        float e = dynq_vexp(xs[k * inner] - mx);
        ys[k * inner] = e;
        sum += e;
      }
      float inv = (float)(1.0 / sum);
      for (int64_t k = 0; k < len; k++) ys[k * inner] *= inv;
    }
  return 0;
}

/* "axis" (default -1) and "flatten" (1: the importer's opset < 13 form). */
int dynq__prep_softmax(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                       char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->softmax.axis = dynq__node_attr_i(n, "axis", -1);
  st->softmax.flatten = dynq__node_attr_i(n, "flatten", 0) != 0;
  return 0;
}

/* ---- LpNormalization (opset 1): x / ||x||_p along "axis" (default -1),
 * p 1 or 2 ----
 *
 * The norm is summed in double (no overflow or underflow for any float32
 * row; ONNX Runtime sums in float, so its rows of values beyond ~1e19 or
 * below ~1e-19 come out 0 where these are exact).  A zero norm gives 0,
 * as ONNX Runtime does (the row is all zeros; x / 0 would be NaN); a NaN
 * in the row makes the row NaN, an infinity makes it NaN where x is
 * infinite and 0 elsewhere (x / inf).  Rows along the axis reuse
 * Softmax's geometry (in place when the executor offers X). */
int dynq__prep_lpnorm(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                      char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  int64_t p = dynq__node_attr_i(n, "p", 2);
  st->softmax.axis = dynq__node_attr_i(n, "axis", -1);
  st->softmax.p = p == 1 || p == 2 ? (int)p : 0; /* 0: refused (check_lp, run) */
  return 0;
}

int dynq__run_lpnorm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  const int p = c->st->softmax.p;
  int64_t outer, len, inner;
  if (p != 1 && p != 2) return dynq__op_fail(c, DYNQ_EGRAPH, "p is not 1 or 2");
  int rc = dynq__softmax_geometry(c, in[0], out, &outer, &len, &inner);
  if (rc) return rc;
  const float *px = in[0]->data;
  float *py = out->data;  /* may be px: each row's norm is taken before it is written */
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const float *xs = px + o * len * inner + i;
      float *ys = py + o * len * inner + i;
      double s = 0;
      for (int64_t k = 0; k < len; k++) {
        double v = xs[k * inner];
        s += p == 1 ? fabs(v) : v * v;
      }
      const double nrm = p == 1 ? s : sqrt(s);
      for (int64_t k = 0; k < len; k++)
        ys[k * inner] = nrm != 0 ? (float)(xs[k * inner] / nrm) : 0.0f;
    }
  return 0;
}
/* ---- LayerNormalization (opset 17) and AddLayerNorm: over the axes [axis, rank) ----
 *
 * AddLayerNorm(A, B, Scale, Bias) -> Y [, S] is the importer's form of a
 * residual Add feeding a LayerNormalization (models/fuse.c): Y =
 * LayerNorm(A + B), and S = A + B when the sum has other readers.  Each
 * row is summed, normalized and written while it sits in L1, instead of
 * the sum going out to memory and coming back.  The row function is the
 * one plain LayerNormalization runs, so the fused and unfused graphs give
 * the same bits. */

int dynq__prep_layernorm(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                         char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->norm.axis = dynq__node_attr_i(n, "axis", -1);
  st->norm.eps = dynq__node_attr_f(n, "epsilon", 1e-5f);
  return 0;
}

/* The 16 lanes of a generic vector (kernels/gvec.h) combined pairwise: a
 * fixed order, the same bits on every clone. */
static inline float lanes_sum(dynq_gvf v) {
  float s[LANES];
  memcpy(s, &v, sizeof(s));
  for (int w = LANES / 2; w >= 1; w /= 2)
    for (int k = 0; k < w; k++) s[k] += s[k + w];
  return s[0];
}

/* One row of len values: x = a + b (b NULL: x = a), stored to w when b
 * is given (w may be a or b itself), then y = (x - mean) / sqrt(var +
 * eps) * scale + bias (y may be x).  Three passes over a row that stays
 * in L1 (the sum, the centred sum of squares, the result), in 16 lanes:
 * accurate to ~1e-7 relative for the row lengths of transformers (no
 * E[x^2] - mean^2 cancellation).  Each block of 16 is loaded before it
 * is stored, so the in-place forms are safe. */
CLONES VEC static void layernorm_row(const float *a, const float *b, float *w, float *y,
                                     int64_t len, const float *scale, const float *bias,
                                     float eps, float *ret_mean, float *ret_inv) {
  dynq_gvf s = dynq_gv_splat(0.0f), q = s;
  float tail = 0.0f;
  int64_t i = 0, nv = len / LANES * LANES;
  if (b != NULL) {
    for (; i < nv; i += LANES) {
      dynq_gvf t = dynq_gv_load(a + i) + dynq_gv_load(b + i);
      dynq_gv_store(w + i, t);
      s += t;
    }
    for (; i < len; i++) {
      w[i] = a[i] + b[i];
      tail += w[i];
    }
    a = w;
  } else {
    for (; i < nv; i += LANES) s += dynq_gv_load(a + i);
    for (; i < len; i++) tail += a[i];
  }
  float mean = (lanes_sum(s) + tail) / (float)len;
  tail = 0.0f;
  for (i = 0; i < nv; i += LANES) {
    dynq_gvf d = dynq_gv_load(a + i) - mean;
    q += d * d;
  }
  for (; i < len; i++) tail += (a[i] - mean) * (a[i] - mean);
  float inv = 1.0f / sqrtf((lanes_sum(q) + tail) / (float)len + eps);
  *ret_mean = mean;
  *ret_inv = inv;
  for (i = 0; i < nv; i += LANES) {
    dynq_gvf t = (dynq_gv_load(a + i) - mean) * inv * dynq_gv_load(scale + i);
    if (bias) t = t + dynq_gv_load(bias + i);
    dynq_gv_store(y + i, t);
  }
  for (; i < len; i++)
    y[i] = bias ? (a[i] - mean) * inv * scale[i] + bias[i] : (a[i] - mean) * inv * scale[i];
}

typedef struct lnjob {
  const float *a, *b, *scale, *bias;
  float *w, *y, *mean, *inv;  /* w: the sum (b given); mean, inv: NULL or [rows] */
  const dynq__bcast_t *bc;    /* NULL: a and b have the result's layout; else
                               * their rows (last axis, unit stride) are found
                               * through it */
  int64_t rows, len, chunks;
  float eps;
} lnjob_t;

static void ln_task(void *ctx, int64_t t) {
  const lnjob_t *j = ctx;
  int64_t r0 = j->rows * t / j->chunks, r1 = j->rows * (t + 1) / j->chunks;
  /* the operands' offsets of row r0: its index over the outer axes */
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[2] = {r0 * j->len, r0 * j->len}, q = r0;
  if (j->bc != NULL) {
    off[0] = off[1] = 0;
    for (int d = j->bc->rank - 2; d >= 0; d--) {
      cnt[d] = q % j->bc->dims[d];
      q /= j->bc->dims[d];
      for (int k = 0; k < 2; k++) off[k] += cnt[d] * j->bc->st[k][d];
    }
  }
  for (int64_t r = r0; r < r1; r++) {
    size_t o = (size_t)(r * j->len);
    float mean, inv;
    layernorm_row(j->a + off[0], j->b ? j->b + off[1] : NULL, j->w ? j->w + o : NULL, j->y + o,
                  j->len, j->scale, j->bias, j->eps, &mean, &inv);
    if (j->mean) j->mean[r] = mean;
    if (j->inv) j->inv[r] = inv;
    if (j->bc != NULL) {
      dynq__bcast_next_row(j->bc, 2, cnt, off);
    } else {
      off[0] += j->len;
      off[1] += j->len;
    }
  }
}

/* Below this many values a normalization runs on one thread (a wake-up
 * costs about as much as normalizing this many in L1). */
#define NORM_SPLIT_MIN (INT64_C(1) << 16)

/* Rows are independent, so every split gives the same bits. */
static void ln_run(dynq__op_ctx_t *c, lnjob_t *j) {
  j->chunks = 1;
  if (c->threads > 1 && j->rows > 1 && j->rows * j->len >= NORM_SPLIT_MIN)
    j->chunks = j->rows < (int64_t)c->threads * 4 ? j->rows : (int64_t)c->threads * 4;
  if (j->chunks > 1)
    dynq__parallel_for(c->threads, j->chunks, ln_task, j);
  else
    ln_task(j, 0);
}

/* Scale and B: the normalized shape (or any shape of that size: the
 * broadcast of a smaller one is refused, ONNX exporters never emit it).
 * si: Scale's input index. */
static int ln_params(dynq__op_ctx_t *c, const dynq__tensor_t *x, const dynq__tensor_t *sc,
                     const dynq__tensor_t *b, int si, int *ret_ax, int64_t *ret_len,
                     int64_t *ret_rows) {
  int rc, ax = 0;
  char s1[128], s2[128], s3[128];
  if ((rc = dynq__op_need_f32(c, sc, si))) return rc;
  if (b && (rc = dynq__op_need_f32(c, b, si + 1))) return rc;
  if (x->rank == 0) return dynq__op_fail(c, DYNQ_ESHAPE, "X is a scalar");
  if ((rc = dynq__op_norm_axis(c, c->st->norm.axis, x->rank, 0, &ax))) return rc;
  int64_t len = 1, rows = 1;
  for (int d = ax; d < x->rank; d++) len *= x->dims[d];
  for (int d = 0; d < ax; d++) rows *= x->dims[d];
  if (dynq__tensor_numel(sc) != len || (b && dynq__tensor_numel(b) != len))
    return dynq__op_fail(c, DYNQ_ESHAPE, "Scale %s / B %s do not match the normalized shape of X %s (axis %d)",
                         dynq__shape_str(s1, sizeof(s1), sc->rank, sc->dims),
                         b ? dynq__shape_str(s2, sizeof(s2), b->rank, b->dims) : "-",
                         dynq__shape_str(s3, sizeof(s3), x->rank, x->dims), ax);
  *ret_ax = ax;
  *ret_len = len;
  *ret_rows = rows;
  return 0;
}

int dynq__run_layernorm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                        dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *sc = in[1], *b = in[2];
  int rc, ax;
  int64_t len, rows;
  if ((rc = dynq__op_need_f32(c, x, 0))) return rc;
  if ((rc = ln_params(c, x, sc, b, 1, &ax, &len, &rows))) return rc;
  /* Mean and InvStdDev (optional outputs): X's shape with 1 from axis on */
  int64_t sd[DYNQ_MAX_RANK];
  for (int d = 0; d < x->rank; d++) sd[d] = d < ax ? x->dims[d] : 1;
  for (int k = 1; k < c->node->n_out; k++)
    if (c->node->out[k] >= 0 && (rc = dynq__op_alloc(c, &out[k], DYNQ_DT_F32, x->rank, sd, 0)))
      return rc;
  if ((rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, x->rank, x->dims, out))) return rc;
  if (len == 0) return 0;
  lnjob_t j = {.a = x->data, .y = out->data, .scale = sc->data, .bias = b ? b->data : NULL,
               .rows = rows, .len = len, .eps = c->st->norm.eps};
  if (c->node->n_out > 1 && c->node->out[1] >= 0) j.mean = out[1].data;
  if (c->node->n_out > 2 && c->node->out[2] >= 0) j.inv = out[2].data;
  ln_run(c, &j);
  return 0;
}

/* AddLayerNorm: inputs A, B, Scale, Bias (optional); outputs Y and S
 * (optional).  A and B of one layout take the fused row loop, and so do
 * a pair whose rows broadcast whole over the last axis, normalized alone
 * (a BERT embedding's [b, s, d] + [1, s, d]); any other pair that
 * broadcasts is added first, then normalized: the same result. */
int dynq__run_add_layernorm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                            dynq__tensor_t *out) {
  const dynq__tensor_t *a = in[0], *bb = in[1];
  int rc, ax;
  int64_t len, rows;
  if ((rc = dynq__op_need_f32(c, a, 0)) || (rc = dynq__op_need_f32(c, bb, 1))) return rc;
  int want_sum = c->node->n_out > 1 && c->node->out[1] >= 0;
  dynq__bcast_t bc;
  if ((rc = dynq__bcast_init(c, 2, in, &bc))) return rc;
  /* nothing really broadcast (at most leading 1s differ, as in an
   * embedding [1, s, d] + [s, d]): one layout, the fused loop, the
   * broadcast shape */
  int same = dynq__tensor_numel(a) == bc.n && dynq__tensor_numel(bb) == bc.n;
  dynq__tensor_t tmp = {0}, view = {.dtype = DYNQ_DT_F32, .rank = bc.rank, .data = a->data};
  memcpy(view.dims, bc.dims, sizeof(int64_t) * (size_t)bc.rank);
  const dynq__tensor_t *x = &view;  /* the sum's shape; A's data on the fused path */
  /* both operands' rows whole (unit stride along the last axis) and the
   * last axis normalized alone: the fused loop, each row's operand rows
   * found through the broadcast */
  int rowwise = !same && bc.rank >= 1 && bc.st[0][bc.rank - 1] == 1 && bc.st[1][bc.rank - 1] == 1;
  if (rowwise) {
    int last = -1;
    rowwise = dynq__op_norm_axis(c, c->st->norm.axis, bc.rank, 0, &last) == 0 &&
              last == bc.rank - 1;
  }
  if (!same && !rowwise) {  /* S = A + B as Add computes it, then LayerNorm(S) */
    dynq__tensor_t *s = want_sum ? &out[1] : &tmp;
    if ((rc = dynq__op_alloc(c, s, DYNQ_DT_F32, bc.rank, bc.dims, 0))) return rc;
    const float *pa = a->data, *pb = bb->data;
    float *ps = s->data;
    int64_t cnt[DYNQ_MAX_RANK] = {0}, off[2] = {0, 0}, rl = bc.rank ? bc.dims[bc.rank - 1] : 1;
    int64_t sa = bc.rank ? bc.st[0][bc.rank - 1] : 0, sb = bc.rank ? bc.st[1][bc.rank - 1] : 0;
    for (int64_t r = 0; rl > 0 && r < bc.n / rl; r++, dynq__bcast_next_row(&bc, 2, cnt, off))
      for (int64_t i = 0; i < rl; i++) ps[r * rl + i] = pa[off[0] + i * sa] + pb[off[1] + i * sb];
    x = s;
  }
  if ((rc = ln_params(c, x, in[2], in[3], 2, &ax, &len, &rows))) goto out;
  const int fused = same || rowwise;
  if (fused && want_sum && (rc = dynq__op_alloc(c, &out[1], DYNQ_DT_F32, x->rank, x->dims, 0)))
    goto out;
  /* Y in A's or B's storage when the executor offers it (the row loop
   * reads each block of 16 before it stores it; an operand of the
   * result's size is not broadcast, so its row r is the result's row r) */
  if (fused) {
    int k = c->donor[0] && dynq__tensor_numel(a) == bc.n ? 0 : 1;
    rc = dynq__op_out_like(c, k, DYNQ_DT_F32, x->rank, x->dims, &out[0]);
  } else {
    rc = dynq__op_alloc(c, &out[0], DYNQ_DT_F32, x->rank, x->dims, 0);
  }
  if (rc) goto out;
  if (len > 0) {
    lnjob_t j = {.a = fused ? a->data : x->data, .y = out[0].data, .scale = in[2]->data,
                 .bias = in[3] ? in[3]->data : NULL, .rows = rows, .len = len,
                 .eps = c->st->norm.eps};
    if (fused) {
      j.b = bb->data;
      j.w = want_sum ? out[1].data : out[0].data;
      j.bc = rowwise ? &bc : NULL;
    }
    ln_run(c, &j);
  }
out:
  dynq__tensor_clear(&tmp);
  if (rc) {
    dynq__tensor_clear(&out[0]);
    if (want_sum) dynq__tensor_clear(&out[1]);
  }
  return rc;
}

/* ---- BatchNormalization (inference form): per channel (axis 1) ---- */

int dynq__prep_batchnorm(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                         char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->norm.eps = dynq__node_attr_f(n, "epsilon", 1e-5f);
  return 0;
}

int dynq__run_batchnorm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                        dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  int rc;
  char s[128];
  for (int k = 0; k < 5; k++)
    if ((rc = dynq__op_need_f32(c, in[k], k))) return rc;
  if (x->rank < 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "X has shape %s, expected (N, C, ...)",
                         dynq__shape_str(s, sizeof(s), x->rank, x->dims));
  int64_t C = x->dims[1], inner = 1;
  for (int k = 1; k < 5; k++)
    if (dynq__tensor_numel(in[k]) != C)
      return dynq__op_fail(c, DYNQ_ESHAPE, "input %d has %lld values, X has %lld channels", k,
                           (long long)dynq__tensor_numel(in[k]), (long long)C);
  for (int d = 2; d < x->rank; d++) inner *= x->dims[d];
  if ((rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, x->rank, x->dims, out))) return rc;
  const float *sc = in[1]->data, *bi = in[2]->data, *mu = in[3]->data, *va = in[4]->data;
  const float *px = x->data;
  float *py = out->data;
  float eps = c->st->norm.eps;
  for (int64_t nn = 0; nn < x->dims[0]; nn++)
    for (int64_t ch = 0; ch < C; ch++) {
      /* y = (x - mean) * (scale / sqrt(var + eps)) + B, the folded form
       * ONNX Runtime computes too */
      float a = sc[ch] / sqrtf(va[ch] + eps), b0 = bi[ch] - mu[ch] * a;
      const float *xs = px + (nn * C + ch) * inner;
      float *ys = py + (nn * C + ch) * inner;
      for (int64_t i = 0; i < inner; i++) ys[i] = xs[i] * a + b0;
    }
  return 0;
}

/* ---- GroupNormalization (opsets 18 and 21) ----
 *
 * X [N, C, D1, ...] (rank >= 2), scale, bias: the C channels fall into
 * num_groups groups of C / num_groups consecutive channels; each (n,
 * group) is normalized by the mean and population variance of its
 * channels' values together, then scaled and shifted.  Opsets 18 to 20
 * give scale and bias one value per group, opset 21 one per channel: the
 * importer says which with "per_channel" (the two agree when num_groups
 * is C).  A group's values are contiguous, so groups are rows: the mean
 * and the centred sum of squares accumulate in double (two passes, no
 * E[x^2] - mean^2 cancellation), the result is computed in double and
 * rounded once.  A group of equal values gives bias exactly (x - mean is
 * 0); NaN makes its group NaN, an infinity too (inf - inf).  Rows are
 * independent, so every thread split gives the same bits. */

int dynq__check_groupnorm(const dynq__graph_t *g, const dynq__node_t *n, char *err,
                          size_t errlen) {
  (void)g;
  int64_t groups = dynq__node_attr_i(n, "num_groups", 0);
  int64_t pc = dynq__node_attr_i(n, "per_channel", 0);
  float eps = dynq__node_attr_f(n, "epsilon", 1e-5f);
  DYNQ_OP_CHECK(groups >= 1, "num_groups %lld: at least 1 expected", (long long)groups);
  DYNQ_OP_CHECK(pc == 0 || pc == 1, "per_channel %lld: 0 or 1 expected", (long long)pc);
  DYNQ_OP_CHECK(isfinite(eps) && eps >= 0, "epsilon %g: a finite value >= 0 expected",
                (double)eps);
  return 0;
}

/* Refuses what the check refuses (a node run on its own skips the check). */
int dynq__prep_groupnorm(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                         char *err, size_t errlen) {
  int rc = dynq__check_groupnorm(g, n, err, errlen);
  if (rc) return rc;
  st->gnorm.groups = dynq__node_attr_i(n, "num_groups", 0);
  st->gnorm.per_channel = dynq__node_attr_i(n, "per_channel", 0) != 0;
  st->gnorm.eps = dynq__node_attr_f(n, "epsilon", 1e-5f);
  return 0;
}

typedef struct gnjob {
  const float *x, *scale, *bias;
  float *y;
  int64_t rows, groups, cg, plane, chunks; /* rows: N x groups of cg channels x plane */
  int per_channel;
  double eps;
} gnjob_t;

static void gn_task(void *ctx, int64_t t) {
  const gnjob_t *j = ctx;
  const int64_t len = j->cg * j->plane;
  int64_t r0 = j->rows * t / j->chunks, r1 = j->rows * (t + 1) / j->chunks;
  for (int64_t r = r0; r < r1; r++) {
    const float *xs = j->x + r * len;
    float *ys = j->y + r * len; /* may be xs: the row is read twice before it is written */
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < len; i++) sum += xs[i];
    const double mean = sum / (double)len;
    for (int64_t i = 0; i < len; i++) sq += (xs[i] - mean) * (xs[i] - mean);
    const double inv = 1.0 / sqrt(sq / (double)len + j->eps);
    const int64_t grp = r % j->groups;
    for (int64_t ch = 0; ch < j->cg; ch++) {
      const int64_t k = j->per_channel ? grp * j->cg + ch : grp;
      const double a = inv * j->scale[k], b = j->bias[k];
      const float *xc = xs + ch * j->plane;
      float *yc = ys + ch * j->plane;
      for (int64_t i = 0; i < j->plane; i++) yc[i] = (float)((xc[i] - mean) * a + b);
    }
  }
}

static void gn_run(dynq__op_ctx_t *c, gnjob_t *j) {
  const int64_t len = j->cg * j->plane;
  j->chunks = 1;
  if (c->threads > 1 && j->rows > 1 && j->rows * len >= NORM_SPLIT_MIN)
    j->chunks = j->rows < (int64_t)c->threads * 4 ? j->rows : (int64_t)c->threads * 4;
  if (j->chunks > 1)
    dynq__parallel_for(c->threads, j->chunks, gn_task, j);
  else
    gn_task(j, 0);
}

int dynq__run_groupnorm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                        dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *sc = in[1], *b = in[2];
  char s1[128], s2[128], s3[128];
  int rc;
  for (int k = 0; k < 3; k++)
    if ((rc = dynq__op_need_f32(c, in[k], k))) return rc;
  if (x->rank < 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "X has shape %s, expected [N, C, ...]",
                         dynq__shape_str(s1, sizeof(s1), x->rank, x->dims));
  const int64_t N = x->dims[0], C = x->dims[1], G = c->st->gnorm.groups;
  if (G < 1 || C % G != 0)
    return dynq__op_fail(c, DYNQ_ESHAPE, "num_groups %lld does not divide the %lld channels of X %s",
                         (long long)G, (long long)C,
                         dynq__shape_str(s1, sizeof(s1), x->rank, x->dims));
  const int pc = c->st->gnorm.per_channel;
  const int64_t want = pc ? C : G;
  if (sc->rank != 1 || b->rank != 1 || sc->dims[0] != want || b->dims[0] != want)
    return dynq__op_fail(c, DYNQ_ESHAPE, "scale %s and bias %s: [%lld] expected (one per %s, "
                         "num_groups %lld, X %s)",
                         dynq__shape_str(s1, sizeof(s1), sc->rank, sc->dims),
                         dynq__shape_str(s2, sizeof(s2), b->rank, b->dims), (long long)want,
                         pc ? "channel: opset 21's form" : "group: opset 18's form",
                         (long long)G, dynq__shape_str(s3, sizeof(s3), x->rank, x->dims));
  int64_t plane = 1;
  for (int d = 2; d < x->rank; d++) plane *= x->dims[d];
  if ((rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, x->rank, x->dims, out))) return rc;
  if (N == 0 || C == 0 || plane == 0) return 0; /* nothing to normalize */
  gnjob_t j = {.x = x->data, .y = out->data, .scale = sc->data, .bias = b->data,
               .rows = N * G, .groups = G, .cg = C / G, .plane = plane, .per_channel = pc,
               .eps = c->st->gnorm.eps};
  gn_run(c, &j);
  return 0;
}

/* ---- RMSNormalization (opset 23): over the axes [axis, rank) ----
 *
 * y = x / sqrt(mean(x^2) + epsilon) * scale, scale broadcast to the
 * normalized shape X.shape[axis:] (numpy's rules, one way: each of its
 * axes 1 or the normalized axis' size, axes left of the normalized ones
 * 1).  The mean of squares accumulates in double (no overflow for any
 * float32 row: 1e30^2 is fine), the result is computed in double and
 * rounded once.  A row of zeros gives 0 (epsilon > 0), NaN makes its row
 * NaN, an infinity gives NaN there and 0 (times scale) beside it. */

int dynq__check_rmsnorm(const dynq__graph_t *g, const dynq__node_t *n, char *err,
                        size_t errlen) {
  (void)g;
  int64_t axis = dynq__node_attr_i(n, "axis", -1);
  float eps = dynq__node_attr_f(n, "epsilon", 1e-5f);
  DYNQ_OP_CHECK(axis >= -DYNQ_MAX_RANK && axis < DYNQ_MAX_RANK,
                "axis %lld is outside [-%d, %d) for any rank", (long long)axis, DYNQ_MAX_RANK,
                DYNQ_MAX_RANK);
  DYNQ_OP_CHECK(isfinite(eps) && eps >= 0, "epsilon %g: a finite value >= 0 expected",
                (double)eps);
  return 0;
}

int dynq__prep_rmsnorm(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                       char *err, size_t errlen) {
  int rc = dynq__check_rmsnorm(g, n, err, errlen);
  if (rc) return rc;
  st->norm.axis = dynq__node_attr_i(n, "axis", -1);
  st->norm.eps = dynq__node_attr_f(n, "epsilon", 1e-5f);
  return 0;
}

typedef struct rmsjob {
  const float *x, *scale;
  float *y;
  int64_t rows, len, chunks;
  double eps;
} rmsjob_t;

static void rms_task(void *ctx, int64_t t) {
  const rmsjob_t *j = ctx;
  int64_t r0 = j->rows * t / j->chunks, r1 = j->rows * (t + 1) / j->chunks;
  for (int64_t r = r0; r < r1; r++) {
    const float *xs = j->x + r * j->len;
    float *ys = j->y + r * j->len; /* may be xs: the row is read before it is written */
    double sq = 0;
    for (int64_t i = 0; i < j->len; i++) sq += (double)xs[i] * xs[i];
    const double inv = 1.0 / sqrt(sq / (double)j->len + j->eps);
    for (int64_t i = 0; i < j->len; i++) ys[i] = (float)(xs[i] * inv * j->scale[i]);
  }
}

int dynq__run_rmsnorm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                      dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *sc = in[1];
  char s1[128], s2[128];
  int rc, ax = 0;
  if ((rc = dynq__op_need_f32(c, x, 0)) || (rc = dynq__op_need_f32(c, sc, 1))) return rc;
  if (x->rank == 0) return dynq__op_fail(c, DYNQ_ESHAPE, "X is a scalar");
  if ((rc = dynq__op_norm_axis(c, c->st->norm.axis, x->rank, 0, &ax))) return rc;
  int64_t len = 1, rows = 1;
  for (int d = ax; d < x->rank; d++) len *= x->dims[d];
  for (int d = 0; d < ax; d++) rows *= x->dims[d];
  /* scale: broadcast one way to X.shape[ax:] */
  int ok = sc->rank <= x->rank;
  for (int k = 1; ok && k <= sc->rank; k++) {
    int64_t sd = sc->dims[sc->rank - k];
    ok = sd == 1 || (x->rank - k >= ax && sd == x->dims[x->rank - k]);
  }
  if (!ok)
    return dynq__op_fail(c, DYNQ_ESHAPE, "scale %s does not broadcast to the normalized shape of "
                         "X %s (axis %d)",
                         dynq__shape_str(s1, sizeof(s1), sc->rank, sc->dims),
                         dynq__shape_str(s2, sizeof(s2), x->rank, x->dims), ax);
  if ((rc = dynq__op_out_like(c, 0, DYNQ_DT_F32, x->rank, x->dims, out))) return rc;
  if (rows == 0 || len == 0) return 0;
  const float *ps = sc->data;
  float *full = NULL;
  if (dynq__tensor_numel(sc) != len) { /* a broadcast scale, expanded to one row */
    if ((rc = dynq__op_check_bytes(c, len, sizeof(float), "the broadcast scale")) ||
        (full = malloc(sizeof(float) * (size_t)len)) == NULL) {
      dynq__tensor_clear(out);
      return rc ? rc : dynq__op_fail(c, -ENOMEM, "out of memory");
    }
    /* the scale's stride along each normalized axis (0 where it is 1 or absent) */
    const int nr = x->rank - ax;
    int64_t st[DYNQ_MAX_RANK] = {0}, cnt[DYNQ_MAX_RANK] = {0}, s = 1, off = 0;
    for (int k = 1; k <= sc->rank; k++) {
      int64_t sd = sc->dims[sc->rank - k];
      if (k <= nr) st[nr - k] = sd == 1 ? 0 : s;
      s *= sd;
    }
    for (int64_t i = 0; i < len; i++) {
      full[i] = ps[off];
      for (int d = nr - 1; d >= 0; d--) { /* the next index over X.shape[ax:] */
        off += st[d];
        if (++cnt[d] < x->dims[ax + d]) break;
        off -= st[d] * cnt[d];
        cnt[d] = 0;
      }
    }
    ps = full;
  }
  rmsjob_t j = {.x = x->data, .y = out->data, .scale = ps, .rows = rows, .len = len,
                .eps = c->st->norm.eps};
  j.chunks = 1;
  if (c->threads > 1 && rows > 1 && rows * len >= NORM_SPLIT_MIN)
    j.chunks = rows < (int64_t)c->threads * 4 ? rows : (int64_t)c->threads * 4;
  if (j.chunks > 1)
    dynq__parallel_for(c->threads, j.chunks, rms_task, &j);
  else
    rms_task(&j, 0);
  free(full);
  return 0;
}
