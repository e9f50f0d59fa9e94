/*
 * Ops real exported models carry at their edges: NonMaxSuppression (the
 * tail of detection models), Unique, Compress, ReverseSequence, BitShift,
 * BitwiseAnd / Or / Xor / Not (integers, broadcasting),
 * Det and MaxUnpool.
 *
 * Each output sized by the data (NonMaxSuppression, Unique, Compress) is
 * counted first and allocated through dynq__op_alloc, so the run's
 * max_bytes bounds it; scratch sized from runtime shapes is checked with
 * dynq__op_check_bytes before it is allocated.  Bad values (counts,
 * thresholds, lengths, indices) fail naming the node and the value.
 */
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"

/* ---- a stable merge sort of int64 keys with a context ---- */

typedef int cmp_fn(const void *ctx, int64_t a, int64_t b);

static void msort(int64_t *v, int64_t *tmp, int64_t n, cmp_fn *cmp, const void *ctx) {
  if (n < 2) return;
  int64_t h = n / 2;
  msort(v, tmp, h, cmp, ctx);
  msort(v + h, tmp, n - h, cmp, ctx);
  int64_t i = 0, j = h, k = 0;
  while (i < h && j < n) tmp[k++] = cmp(ctx, v[j], v[i]) < 0 ? v[j++] : v[i++];
  while (i < h) tmp[k++] = v[i++];
  while (j < n) tmp[k++] = v[j++];
  memcpy(v, tmp, (size_t)n * sizeof(*v));
}

/* Scratch of n elements of es bytes, bounded by the run's max_bytes (and
 * by DYNQ_MAX_ELEMS, so that n * es cannot wrap). */
static void *scratch(dynq__op_ctx_t *c, int64_t n, int64_t es, const char *what, int *rc) {
  if (n > DYNQ_MAX_ELEMS) {
    *rc = dynq__op_fail(c, DYNQ_ELIMIT, "%s of %lld elements is too large", what, (long long)n);
    return NULL;
  }
  if ((*rc = dynq__op_check_bytes(c, n > 0 ? n : 1, es, what))) return NULL;
  void *p = malloc((size_t)(n > 0 ? n : 1) * (size_t)es);
  if (p == NULL) *rc = dynq__op_fail(c, DYNQ_ELIMIT, "out of memory for %s", what);
  return p;
}

/* One float from an optional scalar or 1-element input. */
static int read_scalar_f(dynq__op_ctx_t *c, const dynq__tensor_t *t, const char *what,
                         float *ret) {
  if (t->dtype != DYNQ_DT_F32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "%s must be float32, is %s", what,
                         dynq__dtype_name(t->dtype));
  if (dynq__tensor_numel(t) != 1 || t->rank > 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "%s must be a scalar or hold one value, has %lld "
                         "values", what, (long long)dynq__tensor_numel(t));
  *ret = ((const float *)t->data)[0];
  return 0;
}

/* ---- NonMaxSuppression ---- */

int dynq__prep_nms(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                   char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->nms.center = (int)dynq__node_attr_i(n, "center_point_box", 0);
  return 0;
}

int dynq__check_nms(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  int64_t cb = dynq__node_attr_i(n, "center_point_box", 0);
  DYNQ_OP_CHECK(cb == 0 || cb == 1, "center_point_box %lld is not 0 or 1", (long long)cb);
  return 0;
}

/* A box as x1 <= x2, y1 <= y2. */
typedef struct nbox { float x1, y1, x2, y2; } nbox_t;

static nbox_t nms_box(const float *b, int center) {
  nbox_t r;
  if (center) {
    float hw = b[2] / 2.0f, hh = b[3] / 2.0f;
    r.x1 = b[0] - hw, r.x2 = b[0] + hw, r.y1 = b[1] - hh, r.y2 = b[1] + hh;
  } else { /* [y1, x1, y2, x2], either corner pair */
    r.y1 = fminf(b[0], b[2]), r.y2 = fmaxf(b[0], b[2]);
    r.x1 = fminf(b[1], b[3]), r.x2 = fmaxf(b[1], b[3]);
  }
  return r;
}

/* Whether a and b overlap by more than thr (intersection over union). */
static int nms_suppress(const nbox_t *a, const nbox_t *b, float thr) {
  float ix1 = fmaxf(a->x1, b->x1), ix2 = fminf(a->x2, b->x2);
  float iy1 = fmaxf(a->y1, b->y1), iy2 = fminf(a->y2, b->y2);
  if (!(ix2 > ix1) || !(iy2 > iy1)) return 0;
  float inter = (ix2 - ix1) * (iy2 - iy1);
  float aa = (a->x2 - a->x1) * (a->y2 - a->y1), ab = (b->x2 - b->x1) * (b->y2 - b->y1);
  if (!(aa > 0.0f) || !(ab > 0.0f)) return 0;
  float uni = aa + ab - inter;
  if (!(uni > 0.0f)) return 0;
  return inter / uni > thr;
}

typedef struct nms_ctx { const float *s; } nms_ctx_t;

/* higher score first; the sort is stable, so ties keep the lower index first */
static int nms_cmp(const void *ctx, int64_t a, int64_t b) {
  const float *s = ((const nms_ctx_t *)ctx)->s;
  return s[a] > s[b] ? -1 : s[a] < s[b] ? 1 : 0;
}

int dynq__run_nms(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  const dynq__tensor_t *bx = in[0], *sc = in[1];
  const int nin = c->node->n_in;
  int rc;
  char b1[96], b2[96];
  if ((rc = dynq__op_need_f32(c, bx, 0)) || (rc = dynq__op_need_f32(c, sc, 1))) return rc;
  if (bx->rank != 3 || bx->dims[2] != 4)
    return dynq__op_fail(c, DYNQ_ESHAPE, "boxes has shape %s; [batches, boxes, 4] expected",
                         dynq__shape_str(b1, sizeof b1, bx->rank, bx->dims));
  if (sc->rank != 3 || sc->dims[0] != bx->dims[0] || sc->dims[2] != bx->dims[1])
    return dynq__op_fail(c, DYNQ_ESHAPE, "scores has shape %s for boxes %s; [batches, classes, "
                         "boxes] expected", dynq__shape_str(b1, sizeof b1, sc->rank, sc->dims),
                         dynq__shape_str(b2, sizeof b2, bx->rank, bx->dims));
  int64_t maxo = 0;
  float iou = 0.0f, sthr = 0.0f;
  int has_sthr = 0;
  if (nin > 2 && in[2] != NULL && dynq__tensor_numel(in[2]) > 0) {
    int cnt;
    if (in[2]->rank > 1 || dynq__tensor_numel(in[2]) != 1)
      return dynq__op_fail(c, DYNQ_ESHAPE, "max_output_boxes_per_class must hold one value, "
                           "has shape %s", dynq__shape_str(b1, sizeof b1, in[2]->rank,
                                                          in[2]->dims));
    if ((rc = dynq__op_read_ints(c, in[2], "max_output_boxes_per_class", &maxo, 1, &cnt)))
      return rc;
    if (maxo < 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "max_output_boxes_per_class is %lld (must not be "
                           "negative)", (long long)maxo);
  }
  if (nin > 3 && in[3] != NULL) {
    if ((rc = read_scalar_f(c, in[3], "iou_threshold", &iou))) return rc;
    if (!(iou >= 0.0f && iou <= 1.0f))
      return dynq__op_fail(c, DYNQ_ESHAPE, "iou_threshold is %g (must be within [0, 1])",
                           (double)iou);
  }
  if (nin > 4 && in[4] != NULL) {
    if ((rc = read_scalar_f(c, in[4], "score_threshold", &sthr))) return rc;
    if (isnan(sthr))
      return dynq__op_fail(c, DYNQ_ENUMERIC, "score_threshold is NaN");
    has_sthr = 1;
  }
  const int64_t B = bx->dims[0], N = bx->dims[1], C = sc->dims[1];
  const int64_t per = maxo < N ? maxo : N; /* selections per class at most */
  if (B == 0 || C == 0 || per == 0) { /* nothing to select (N unbounded when B is 0) */
    int64_t dims[2] = {0, 3};
    return dynq__op_alloc(c, out, DYNQ_DT_I64, 2, dims, 0);
  }
  /* scratch: N candidates, N sort buffer, per selected boxes; the result
   * at most B * C * per rows of 3 */
  int64_t *cand = NULL, *tmp = NULL, *res = NULL;
  nbox_t *sel = NULL;
  if ((cand = scratch(c, N, 8, "NonMaxSuppression's candidates", &rc)) == NULL ||
      (tmp = scratch(c, N, 8, "NonMaxSuppression's candidates", &rc)) == NULL ||
      (sel = scratch(c, per, (int64_t)sizeof(nbox_t), "NonMaxSuppression's selection", &rc)) ==
          NULL)
    goto done;
  int64_t cap = B * C; /* B and C are dims of tensors in memory: no overflow */
  if (per > 0 && cap > DYNQ_MAX_ELEMS / 3 / per) {
    rc = dynq__op_fail(c, DYNQ_ELIMIT, "%lld x %lld x %lld selections are too many",
                       (long long)B, (long long)C, (long long)per);
    goto done;
  }
  cap *= per;
  if ((res = scratch(c, cap * 3, 8, "NonMaxSuppression's output", &rc)) == NULL) goto done;
  const float *pb = bx->data, *ps = sc->data;
  int64_t nres = 0;
  for (int64_t bi = 0; bi < B && per > 0; bi++)
    for (int64_t ci = 0; ci < C; ci++) {
      const float *s = ps + (bi * C + ci) * N;
      int64_t nc = 0;
      for (int64_t i = 0; i < N; i++)
        if (!has_sthr || s[i] > sthr) cand[nc++] = i;
      nms_ctx_t ctx = {s};
      msort(cand, tmp, nc, nms_cmp, &ctx);
      int64_t ns = 0;
      for (int64_t k = 0; k < nc && ns < per; k++) {
        /* candidates x selected box comparisons: quadratic in the boxes */
        if ((k & 255) == 0 && (rc = dynq__op_poll(c)) != 0) goto done;
        nbox_t bb = nms_box(pb + (bi * N + cand[k]) * 4, c->st->nms.center);
        int keep = 1;
        for (int64_t j = 0; j < ns && keep; j++) keep = !nms_suppress(&sel[j], &bb, iou);
        if (!keep) continue;
        sel[ns++] = bb;
        res[nres * 3] = bi, res[nres * 3 + 1] = ci, res[nres * 3 + 2] = cand[k];
        nres++;
      }
    }
  int64_t dims[2] = {nres, 3};
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_I64, 2, dims, 0))) goto done;
  if (nres) memcpy(out->data, res, (size_t)nres * 3 * sizeof(int64_t));
done:
  free(cand);
  free(tmp);
  free(sel);
  free(res);
  return rc;
}

/* ---- Unique and Compress ---- */

int dynq__prep_unique(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                      char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->uniq.has_axis = dynq__node_attr(n, "axis") != NULL;
  st->uniq.axis = dynq__node_attr_i(n, "axis", 0);
  st->uniq.sorted = dynq__node_attr_i(n, "sorted", 1) != 0;
  return 0;
}

static int elem_dtype_ok(dynq_dtype_t dt) { return dt == DYNQ_DT_F32 || dynq__dt_is_int(dt); }

/* Slices along the axis: outer x [len] x inner elements. */
typedef struct uq_ctx {
  const void *p;
  dynq_dtype_t dt;
  int64_t outer, len, inner;
} uq_ctx_t;

/* NaN sorts after every number and equals NaN. */
static int cmp_elem(dynq_dtype_t dt, const void *p, int64_t i, int64_t j) {
  if (dt == DYNQ_DT_F32) {
    float a = ((const float *)p)[i], b = ((const float *)p)[j];
    if (a != a || b != b) return (a != a) - (b != b);
    return a < b ? -1 : a > b ? 1 : 0;
  }
  int64_t a = dynq__load_i(p, dt, i), b = dynq__load_i(p, dt, j);
  return a < b ? -1 : a > b ? 1 : 0;
}

static int uq_cmp(const void *ctx, int64_t a, int64_t b) {
  const uq_ctx_t *u = ctx;
  for (int64_t o = 0; o < u->outer; o++)
    for (int64_t i = 0; i < u->inner; i++) {
      int64_t base = o * u->len * u->inner + i;
      int r = cmp_elem(u->dt, u->p, base + a * u->inner, base + b * u->inner);
      if (r) return r;
    }
  return 0;
}

static int first_cmp(const void *ctx, int64_t a, int64_t b) {
  const int64_t *first = ctx;
  return first[a] < first[b] ? -1 : first[a] > first[b];
}

int dynq__run_unique(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  int rc;
  if ((rc = dynq__op_need_present(c, x, 0))) return rc;
  if (!elem_dtype_ok(x->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  uq_ctx_t u = {x->data, x->dtype, 1, dynq__tensor_numel(x), 1};
  int ax = -1;
  if (c->st->uniq.has_axis) {
    if ((rc = dynq__op_norm_axis(c, c->st->uniq.axis, x->rank, 0, &ax))) return rc;
    u.len = x->dims[ax];
    for (int d = 0; d < ax; d++) u.outer *= x->dims[d];
    for (int d = ax + 1; d < x->rank; d++) u.inner *= x->dims[d];
  }
  const int64_t A = u.len;
  if (u.outer * u.inner == 0) {
    /* empty slices (A unbounded by the data): all equal, one group */
    int64_t U = A > 0, ydims[DYNQ_MAX_RANK], d1[1] = {U}, dA[1] = {A};
    memcpy(ydims, x->dims, sizeof(int64_t) * (size_t)x->rank);
    ydims[ax] = U; /* ax >= 0: without an axis outer * inner is 1 */
    const int nout = c->node->n_out;
    if ((rc = dynq__op_alloc(c, &out[0], x->dtype, x->rank, ydims, 0)) ||
        (nout > 1 && (rc = dynq__op_alloc(c, &out[1], DYNQ_DT_I64, 1, d1, 1))) ||
        (nout > 2 && (rc = dynq__op_alloc(c, &out[2], DYNQ_DT_I64, 1, dA, 1))) ||
        (nout > 3 && (rc = dynq__op_alloc(c, &out[3], DYNQ_DT_I64, 1, d1, 0))))
      return rc;
    if (nout > 3 && U) ((int64_t *)out[3].data)[0] = A;
    return 0;
  }
  /* idx, tmp, group of each slice, first index, count and order of each group */
  int64_t *w = scratch(c, A, 6 * 8, "Unique's scratch", &rc);
  if (w == NULL) return rc;
  int64_t *idx = w, *tmp = w + A, *grp = w + 2 * A, *first = w + 3 * A, *cnt = w + 4 * A,
          *ord = w + 5 * A;
  for (int64_t i = 0; i < A; i++) idx[i] = i;
  msort(idx, tmp, A, uq_cmp, &u);
  int64_t U = 0;
  for (int64_t k = 0; k < A; k++) {
    if (k == 0 || uq_cmp(&u, idx[k - 1], idx[k]) != 0) {
      first[U] = idx[k]; /* stable: the lowest index of its group comes first */
      cnt[U++] = 0;
    }
    grp[idx[k]] = U - 1;
    cnt[U - 1]++;
  }
  /* the output order: sorted groups, or by first occurrence */
  for (int64_t g = 0; g < U; g++) ord[g] = g;
  if (!c->st->uniq.sorted) msort(ord, tmp, U, first_cmp, first);
  int64_t *pos = tmp; /* group -> output position */
  for (int64_t k = 0; k < U; k++) pos[ord[k]] = k;
  int64_t ydims[DYNQ_MAX_RANK];
  int yrank = 1;
  if (ax >= 0) {
    yrank = x->rank;
    memcpy(ydims, x->dims, sizeof(int64_t) * (size_t)x->rank);
    ydims[ax] = U;
  } else {
    ydims[0] = U;
  }
  int64_t d1[1] = {U}, dA[1] = {A};
  const int nout = c->node->n_out;
  if ((rc = dynq__op_alloc(c, &out[0], x->dtype, yrank, ydims, 0)) ||
      (nout > 1 && (rc = dynq__op_alloc(c, &out[1], DYNQ_DT_I64, 1, d1, 0))) ||
      (nout > 2 && (rc = dynq__op_alloc(c, &out[2], DYNQ_DT_I64, 1, dA, 0))) ||
      (nout > 3 && (rc = dynq__op_alloc(c, &out[3], DYNQ_DT_I64, 1, d1, 0)))) {
    free(w);
    return rc;
  }
  const size_t es = dynq__dtype_size(x->dtype), row = (size_t)u.inner * es;
  char *py = out[0].data;
  const char *px = x->data;
  for (int64_t k = 0; k < U; k++) {
    int64_t s = first[ord[k]];
    for (int64_t o = 0; o < u.outer && row; o++)
      memcpy(py + ((size_t)(o * U + k) * row), px + ((size_t)(o * A + s) * row), row);
    if (nout > 1) ((int64_t *)out[1].data)[k] = s;
    if (nout > 3) ((int64_t *)out[3].data)[k] = cnt[ord[k]];
  }
  if (nout > 2)
    for (int64_t i = 0; i < A; i++) ((int64_t *)out[2].data)[i] = pos[grp[i]];
  free(w);
  return 0;
}

int dynq__run_compress(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *cond = in[1];
  int rc;
  if ((rc = dynq__op_need_present(c, x, 0)) || (rc = dynq__op_need_present(c, cond, 1)))
    return rc;
  if (!elem_dtype_ok(x->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  if (!elem_dtype_ok(cond->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "condition has dtype %s (bool expected)",
                         dynq__dtype_name(cond->dtype));
  if (cond->rank != 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "condition has rank %d (1-D expected)", cond->rank);
  int64_t outer = 1, len = dynq__tensor_numel(x), inner = 1;
  int ax = -1;
  if (c->st->uniq.has_axis) {
    if ((rc = dynq__op_norm_axis(c, c->st->uniq.axis, x->rank, 0, &ax))) return rc;
    len = x->dims[ax];
    for (int d = 0; d < ax; d++) outer *= x->dims[d];
    for (int d = ax + 1; d < x->rank; d++) inner *= x->dims[d];
  }
  /* slices past the condition's length are dropped, and so are values
   * of the condition past the axis (as ONNX Runtime does) */
  const int64_t nc = cond->dims[0] < len ? cond->dims[0] : len;
  int64_t cnt = 0;
  for (int64_t i = 0; i < nc; i++) cnt += dynq__load_d(cond->data, cond->dtype, i) != 0.0;
  int64_t ydims[DYNQ_MAX_RANK];
  int yrank = 1;
  if (ax >= 0) {
    yrank = x->rank;
    memcpy(ydims, x->dims, sizeof(int64_t) * (size_t)x->rank);
    ydims[ax] = cnt;
  } else {
    ydims[0] = cnt;
  }
  if ((rc = dynq__op_alloc(c, out, x->dtype, yrank, ydims, 0))) return rc;
  const size_t row = (size_t)inner * dynq__dtype_size(x->dtype);
  char *py = out->data;
  const char *px = x->data;
  for (int64_t o = 0; o < outer && row; o++)
    for (int64_t i = 0; i < nc; i++)
      if (dynq__load_d(cond->data, cond->dtype, i) != 0.0) {
        memcpy(py, px + (size_t)(o * len + i) * row, row);
        py += row;
      }
  return 0;
}

/* ---- ReverseSequence ---- */

int dynq__prep_revseq(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                      char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->revseq.batch_axis = dynq__node_attr_i(n, "batch_axis", 1);
  st->revseq.time_axis = dynq__node_attr_i(n, "time_axis", 0);
  return 0;
}

int dynq__check_revseq(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  int64_t ba = dynq__node_attr_i(n, "batch_axis", 1), ta = dynq__node_attr_i(n, "time_axis", 0);
  DYNQ_OP_CHECK((ba == 0 && ta == 1) || (ba == 1 && ta == 0),
                "batch_axis %lld and time_axis %lld: one must be 0, the other 1", (long long)ba,
                (long long)ta);
  return 0;
}

int dynq__run_revseq(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *sl = in[1];
  int rc;
  char b1[96];
  if ((rc = dynq__op_need_present(c, x, 0)) || (rc = dynq__op_need_present(c, sl, 1))) return rc;
  if (!elem_dtype_ok(x->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  if (x->rank < 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input has rank %d (at least 2 expected)", x->rank);
  const int ba = (int)c->st->revseq.batch_axis, ta = (int)c->st->revseq.time_axis;
  const int64_t nb = x->dims[ba], nt = x->dims[ta];
  if (sl->dtype != DYNQ_DT_I64 && sl->dtype != DYNQ_DT_I32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "sequence_lens must be int64, is %s",
                         dynq__dtype_name(sl->dtype));
  if (sl->rank != 1 || sl->dims[0] != nb)
    return dynq__op_fail(c, DYNQ_ESHAPE, "sequence_lens has shape %s for a batch of %lld",
                         dynq__shape_str(b1, sizeof b1, sl->rank, sl->dims), (long long)nb);
  for (int64_t i = 0; i < nb; i++) {
    int64_t l = dynq__load_i(sl->data, sl->dtype, i);
    if (l < 0 || l > nt)
      return dynq__op_fail(c, DYNQ_ESHAPE, "sequence_lens[%lld] is %lld, outside [0, %lld]",
                           (long long)i, (long long)l, (long long)nt);
  }
  if ((rc = dynq__op_alloc(c, out, x->dtype, x->rank, x->dims, 0))) return rc;
  int64_t rest = 1;
  for (int d = 2; d < x->rank; d++) rest *= x->dims[d];
  const size_t row = (size_t)rest * dynq__dtype_size(x->dtype);
  const int64_t d1 = x->dims[1];
  const char *px = x->data;
  char *py = out->data;
  for (int64_t b = 0; b < nb && row; b++) {
    int64_t l = dynq__load_i(sl->data, sl->dtype, b);
    for (int64_t t = 0; t < nt; t++) {
      int64_t src = t < l ? l - 1 - t : t;
      int64_t yo = ba == 0 ? b * d1 + t : t * d1 + b, xo = ba == 0 ? b * d1 + src : src * d1 + b;
      memcpy(py + (size_t)yo * row, px + (size_t)xo * row, row);
    }
  }
  return 0;
}

/* ---- BitShift ---- */

int dynq__prep_bitshift(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                        char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->bitshift.left = dynq__node_attr_i(n, "direction", 0) == 1;
  return 0;
}

int dynq__check_bitshift(const dynq__graph_t *g, const dynq__node_t *n, char *err,
                         size_t errlen) {
  (void)g;
  int64_t d = dynq__node_attr_i(n, "direction", 0);
  DYNQ_OP_CHECK(d == 1 || d == 2, "direction %lld: 1 (LEFT) or 2 (RIGHT) expected", (long long)d);
  return 0;
}

int dynq__run_bitshift(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1)))
    return rc;
  /* ONNX defines it on unsigned integers; uint8 is the one dynq carries */
  for (int k = 0; k < 2; k++)
    if (in[k]->dtype != DYNQ_DT_U8)
      return dynq__op_fail(c, DYNQ_EDTYPE, "input %d is %s (unsigned integers only: uint8)", k,
                           dynq__dtype_name(in[k]->dtype));
  dynq__bcast_t bc;
  if ((rc = dynq__bcast_init(c, 2, in, &bc))) return rc;
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_U8, bc.rank, bc.dims, 0))) return rc;
  const uint8_t *a = in[0]->data, *s = in[1]->data;
  uint8_t *y = out->data;
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[DYNQ_BCAST_MAX] = {0};
  const int left = c->st->bitshift.left;
  for (int64_t i = 0; i < bc.n; i++) {
    unsigned v = a[off[0]], k = s[off[1]];
    y[i] = k >= 8 ? 0 : (uint8_t)(left ? v << k : v >> k); /* shifted out: 0 */
    dynq__bcast_next(&bc, 2, cnt, off);
  }
  return 0;
}

/* ---- BitwiseAnd, BitwiseOr, BitwiseXor, BitwiseNot ---- */

/* Input k of an integer dtype; otherwise EDTYPE naming it. */
static int need_int(dynq__op_ctx_t *c, const dynq__tensor_t *t, int k) {
  if (dynq__dt_is_int(t->dtype)) return 0;
  return dynq__op_fail(c, DYNQ_EDTYPE, "input %d is %s (integers only: int8, uint8, int32, "
                       "int64)", k, dynq__dtype_name(t->dtype));
}

/* On the values widened to int64 (sign- or zero-extended): the low bits
 * of the result are the narrow type's, which the store keeps. */
int dynq__run_bitwise(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1)))
    return rc;
  const dynq__tensor_t *a = in[0], *b = in[1];
  if ((rc = need_int(c, a, 0)) || (rc = need_int(c, b, 1))) return rc;
  if (a->dtype != b->dtype)
    return dynq__op_fail(c, DYNQ_EDTYPE, "inputs are %s and %s; they must match",
                         dynq__dtype_name(a->dtype), dynq__dtype_name(b->dtype));
  dynq__bcast_t bc;
  if ((rc = dynq__bcast_init(c, 2, in, &bc))) return rc;
  if ((rc = dynq__op_alloc(c, out, a->dtype, bc.rank, bc.dims, 0))) return rc;
  const int op = c->node->op;
  const dynq_dtype_t dt = a->dtype;
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[2] = {0, 0};
  for (int64_t i = 0; i < bc.n; i++, dynq__bcast_next(&bc, 2, cnt, off)) {
    int64_t x = dynq__load_i(a->data, dt, off[0]), y = dynq__load_i(b->data, dt, off[1]);
    dynq__store_i(out->data, dt, i, op == DYNQ_OP_BITWISE_AND ? x & y
                                    : op == DYNQ_OP_BITWISE_OR ? x | y : x ^ y);
  }
  return 0;
}

int dynq__run_bitwise_not(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                          dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = need_int(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  /* element i reads x[i] only: in place when offered */
  if ((rc = dynq__op_out_like(c, 0, x->dtype, x->rank, x->dims, out))) return rc;
  const int64_t n = dynq__tensor_numel(x);
  for (int64_t i = 0; i < n; i++)
    dynq__store_i(out->data, x->dtype, i, ~dynq__load_i(x->data, x->dtype, i));
  return 0;
}

/* ---- Det ---- */

int dynq__run_det(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  int rc;
  char b1[96];
  if ((rc = dynq__op_need_f32(c, x, 0))) return rc;
  if (x->rank < 2 || x->dims[x->rank - 1] != x->dims[x->rank - 2])
    return dynq__op_fail(c, DYNQ_ESHAPE, "input has shape %s ([..., M, M] expected)",
                         dynq__shape_str(b1, sizeof b1, x->rank, x->dims));
  const int64_t M = x->dims[x->rank - 1];
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, x->rank - 2, x->dims, 0))) return rc;
  const int64_t nmat = dynq__tensor_numel(out);
  if (nmat == 0) return 0; /* M is unbounded by the data then */
  double *a = scratch(c, M * M, 8, "Det's scratch", &rc);
  if (a == NULL) return rc;
  const float *px = x->data;
  float *py = out->data;
  for (int64_t m = 0; m < nmat; m++) {
    for (int64_t i = 0; i < M * M; i++) a[i] = px[m * M * M + i];
    /* LU with partial pivoting, in double */
    double det = 1.0;
    for (int64_t k = 0; k < M && det != 0.0; k++) {
      if ((k & 15) == 0 && (rc = dynq__op_poll(c)) != 0) {  /* M^3 */
        free(a);
        return rc;
      }
      int64_t p = k;
      for (int64_t i = k + 1; i < M; i++)
        if (fabs(a[i * M + k]) > fabs(a[p * M + k])) p = i;
      if (a[p * M + k] == 0.0) {
        det = 0.0;
        break;
      }
      if (p != k) {
        for (int64_t j = 0; j < M; j++) {
          double t = a[k * M + j];
          a[k * M + j] = a[p * M + j];
          a[p * M + j] = t;
        }
        det = -det;
      }
      double piv = a[k * M + k];
      det *= piv;
      for (int64_t i = k + 1; i < M; i++) {
        double f = a[i * M + k] / piv;
        for (int64_t j = k + 1; j < M; j++) a[i * M + j] -= f * a[k * M + j];
      }
    }
    py[m] = (float)det;
  }
  free(a);
  return 0;
}

/* ---- MaxUnpool (attributes as the pools': dynq__prep_pool) ---- */

int dynq__run_maxunpool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                        dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *ix = in[1];
  const dynq__tensor_t *os = c->node->n_in > 2 ? in[2] : NULL;
  const dynq__pool_attrs_t *p = &c->st->pool;
  int rc;
  char b1[96], b2[96];
  if ((rc = dynq__op_need_f32(c, x, 0)) || (rc = dynq__op_need_present(c, ix, 1))) return rc;
  if (x->rank != 2 + p->spatial)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input has shape %s; [N, C, %d spatial axes] expected",
                         dynq__shape_str(b1, sizeof b1, x->rank, x->dims), p->spatial);
  if (ix->dtype != DYNQ_DT_I64)
    return dynq__op_fail(c, DYNQ_EDTYPE, "indices must be int64, are %s",
                         dynq__dtype_name(ix->dtype));
  int same = ix->rank == x->rank;
  for (int d = 0; same && d < x->rank; d++) same = ix->dims[d] == x->dims[d];
  if (!same)
    return dynq__op_fail(c, DYNQ_ESHAPE, "indices have shape %s, the input %s (they must agree)",
                         dynq__shape_str(b1, sizeof b1, ix->rank, ix->dims),
                         dynq__shape_str(b2, sizeof b2, x->rank, x->dims));
  /* The indices (MaxPool's) count in the unpooled shape the attributes
   * give; an output_shape larger than it pads at the end of each axis, as
   * ONNX's and ONNX Runtime's references do. */
  int64_t idims[DYNQ_MAX_RANK], dims[DYNQ_MAX_RANK];
  idims[0] = x->dims[0], idims[1] = x->dims[1];
  for (int a = 0; a < p->spatial; a++) {
    int64_t in_d = x->dims[2 + a];
    /* in_d, strides and kernel are bounded (rank dims, check_pool): no overflow */
    int64_t o = (in_d - 1) * p->strides[a] + p->kernel[a] - p->pad_begin[a] - p->pad_end[a];
    if (in_d == 0) o = 0;
    if (o < 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "spatial axis %d: the output size is %lld "
                           "(the pads exceed it)", a, (long long)o);
    idims[2 + a] = o;
  }
  memcpy(dims, idims, sizeof dims);
  if (os != NULL) {
    int n;
    if ((rc = dynq__op_read_ints(c, os, "output_shape", dims, DYNQ_MAX_RANK, &n))) return rc;
    if (n != x->rank)
      return dynq__op_fail(c, DYNQ_ESHAPE, "output_shape has %d values for an input of rank %d",
                           n, x->rank);
    for (int d = 0; d < n; d++)
      if (dims[d] < idims[d])
        return dynq__op_fail(c, DYNQ_ESHAPE, "output_shape %s is smaller than the unpooled "
                             "shape %s on axis %d",
                             dynq__shape_str(b1, sizeof b1, n, dims),
                             dynq__shape_str(b2, sizeof b2, n, idims), d);
  }
  if (dynq__shape_numel(x->rank, idims) < 0)
    return dynq__op_fail(c, DYNQ_ELIMIT, "the unpooled shape %s is too large",
                         dynq__shape_str(b1, sizeof b1, x->rank, idims));
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, x->rank, dims, 1))) return rc;
  const int64_t n = dynq__tensor_numel(x), tot = dynq__shape_numel(x->rank, idims);
  const float *px = x->data;
  const int64_t *pi = ix->data;
  float *py = out->data;
  for (int64_t i = 0; i < n; i++) {
    if (pi[i] < 0 || pi[i] >= tot) {
      dynq__tensor_clear(out);
      return dynq__op_fail(c, DYNQ_ESHAPE, "index %lld (element %lld) outside the unpooled "
                           "shape's %lld values", (long long)pi[i], (long long)i,
                           (long long)tot);
    }
    /* the index's coordinates in the unpooled shape, placed in the output */
    int64_t r = pi[i], o = 0, st = 1;
    for (int d = x->rank - 1; d >= 0; d--) {
      o += (r % idims[d]) * st;
      r /= idims[d];
      st *= dims[d];
    }
    py[o] = px[i];
  }
  return 0;
}
