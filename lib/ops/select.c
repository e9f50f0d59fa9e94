/*
 * Index-driven ops: TopK, GatherElements, ScatterElements, ScatterND,
 * GatherND, OneHot, Trilu, NonZero.  Any dtype for the data moved
 * (float32, int64, int32, int8, uint8); indices int64 or int32, negative
 * ones counted from the end and out-of-range ones a run-time error naming
 * the index and the axis (OneHot: its indices any number type, and one
 * out of range an all-off row, as ONNX defines it).
 */
#include "ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"

/* Strides of x's axis ax: outer (product before), len, inner (after). */
static void split_axis(const dynq__tensor_t *x, int ax, int64_t *outer, int64_t *len,
                       int64_t *inner) {
  *outer = 1, *inner = 1, *len = x->dims[ax];
  for (int d = 0; d < ax; d++) *outer *= x->dims[d];
  for (int d = ax + 1; d < x->rank; d++) *inner *= x->dims[d];
}

/* ---- TopK(X, K) -> Values, Indices along axis ---- */

int dynq__prep_topk(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                    char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->topk.axis = dynq__node_attr_i(n, "axis", -1);
  st->topk.largest = dynq__node_attr_i(n, "largest", 1) != 0;
  st->topk.sorted = dynq__node_attr_i(n, "sorted", 1) != 0;
  return 0;
}

typedef struct kv {
  double v;
  int64_t i;
} kv_t;

/* Larger first; equal values by lower index (ONNX's order), NaN last. */
static int cmp_largest(const void *pa, const void *pb) {
  const kv_t *a = pa, *b = pb;
  int an = a->v != a->v, bn = b->v != b->v;
  if (an != bn) return an - bn;
  if (!an && a->v != b->v) return a->v > b->v ? -1 : 1;
  return (a->i > b->i) - (a->i < b->i);
}
static int cmp_smallest(const void *pa, const void *pb) {
  const kv_t *a = pa, *b = pb;
  int an = a->v != a->v, bn = b->v != b->v;
  if (an != bn) return an - bn;
  if (!an && a->v != b->v) return a->v < b->v ? -1 : 1;
  return (a->i > b->i) - (a->i < b->i);
}

int dynq__run_topk(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, ax = 0, nk = 0;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1)))
    return rc;
  const dynq__tensor_t *x = in[0];
  if (x->dtype != DYNQ_DT_F32 && !dynq__dt_is_int(x->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  if (x->rank < 1) return dynq__op_fail(c, DYNQ_ESHAPE, "input must have rank >= 1");
  if ((rc = dynq__op_norm_axis(c, c->st->topk.axis, x->rank, 0, &ax))) return rc;
  int64_t k = 0;
  if ((rc = dynq__op_read_ints(c, in[1], "K", &k, 1, &nk))) return rc;
  int64_t outer, len, inner;
  split_axis(x, ax, &outer, &len, &inner);
  if (nk != 1 || k < 0 || k > len)
    return dynq__op_fail(c, DYNQ_ESHAPE, "K = %lld is not within [0, %lld] (axis %d)",
                         (long long)k, (long long)len, ax);
  int64_t dims[DYNQ_MAX_RANK];
  memcpy(dims, x->dims, sizeof(int64_t) * (size_t)x->rank);
  dims[ax] = k;
  if ((rc = dynq__op_alloc(c, &out[0], x->dtype, x->rank, dims, 0))) return rc;
  if ((rc = dynq__op_alloc(c, &out[1], DYNQ_DT_I64, x->rank, dims, 0))) {
    dynq__tensor_clear(&out[0]);
    return rc;
  }
  kv_t *row = malloc(sizeof(kv_t) * (size_t)(len > 0 ? len : 1));
  if (row == NULL) {
    dynq__tensor_clear(&out[0]);
    dynq__tensor_clear(&out[1]);
    return dynq__op_fail(c, -ENOMEM, "out of memory for %lld values", (long long)len);
  }
  const int fl = x->dtype == DYNQ_DT_F32;
  int64_t *oi = out[1].data;
  for (int64_t a = 0; a < outer; a++)
    for (int64_t b = 0; b < inner; b++) {
      for (int64_t j = 0; j < len; j++) {
        int64_t at = (a * len + j) * inner + b;
        row[j].v = fl ? ((const float *)x->data)[at] : (double)dynq__load_i(x->data, x->dtype, at);
        row[j].i = j;
      }
      /* sorted or not, the k selected come out in the sorted order */
      qsort(row, (size_t)len, sizeof(kv_t), c->st->topk.largest ? cmp_largest : cmp_smallest);
      for (int64_t j = 0; j < k; j++) {
        int64_t at = (a * k + j) * inner + b, src = (a * len + row[j].i) * inner + b;
        memcpy((char *)out[0].data + (size_t)at * dynq__dtype_size(x->dtype),
               (const char *)x->data + (size_t)src * dynq__dtype_size(x->dtype),
               dynq__dtype_size(x->dtype));
        oi[at] = row[j].i;
      }
    }
  free(row);
  return 0;
}

/* Scatter's reduction: 0 none (replace), 1 add, 2 mul, 3 max, 4 min. */
static void combine(void *o, const void *u, int64_t oi, int64_t ui, dynq_dtype_t dt, int red) {
  if (dt == DYNQ_DT_F32) {
    float *po = (float *)o + oi, v = ((const float *)u)[ui];
    switch (red) {
    case 1: *po += v; break;
    case 2: *po *= v; break;
    case 3: *po = v > *po ? v : *po; break;
    case 4: *po = v < *po ? v : *po; break;
    default: *po = v; break;
    }
    return;
  }
  int64_t a = dynq__load_i(o, dt, oi), v = dynq__load_i(u, dt, ui);
  switch (red) {
  case 1: a = (int64_t)((uint64_t)a + (uint64_t)v); break;
  case 2: a = (int64_t)((uint64_t)a * (uint64_t)v); break;
  case 3: a = v > a ? v : a; break;
  case 4: a = v < a ? v : a; break;
  default: a = v; break;
  }
  dynq__store_i(o, dt, oi, a);
}

/* ---- GatherElements / ScatterElements ----
 *
 * For every element of indices (same rank as data), the data element at
 * the same position with the axis coordinate replaced by the index. */

/* Offset in a tensor of dims `d` (rank r) of the index position `cnt`
 * with the axis coordinate replaced by k. */
static int64_t offset_of(const int64_t *d, int r, const int64_t *cnt, int ax, int64_t k) {
  int64_t off = 0;
  for (int i = 0; i < r; i++) off = off * d[i] + (i == ax ? k : cnt[i]);
  return off;
}

static void next_pos(const int64_t *d, int r, int64_t *cnt) {
  for (int i = r - 1; i >= 0; i--) {
    if (++cnt[i] < d[i]) return;
    cnt[i] = 0;
  }
}

/* Checks shared by both: ranks, dtypes, index range (each index read
 * once here so the loops need no checks).  0 or an error. */
static int check_elements(dynq__op_ctx_t *c, const dynq__tensor_t *x, const dynq__tensor_t *idx,
                          int64_t axis, int *ret_ax) {
  int rc;
  if (idx->dtype != DYNQ_DT_I64 && idx->dtype != DYNQ_DT_I32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "indices must be int64 or int32, are %s",
                         dynq__dtype_name(idx->dtype));
  if (x->rank < 1 || idx->rank != x->rank)
    return dynq__op_fail(c, DYNQ_ESHAPE, "data (rank %d) and indices (rank %d) must have the "
                         "same rank >= 1", x->rank, idx->rank);
  if ((rc = dynq__op_norm_axis(c, axis, x->rank, 0, ret_ax))) return rc;
  for (int d = 0; d < x->rank; d++)
    if (d != *ret_ax && idx->dims[d] > x->dims[d])
      return dynq__op_fail(c, DYNQ_ESHAPE, "indices axis %d has %lld entries, data %lld", d,
                           (long long)idx->dims[d], (long long)x->dims[d]);
  int64_t len = x->dims[*ret_ax], n = dynq__tensor_numel(idx);
  for (int64_t j = 0; j < n; j++) {
    int64_t k = dynq__load_i(idx->data, idx->dtype, j);
    if (k < -len || k >= len)
      return dynq__op_fail(c, DYNQ_ESHAPE, "index %lld out of range for axis %d of size %lld",
                           (long long)k, *ret_ax, (long long)len);
  }
  return 0;
}

int dynq__run_gather_elements(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                              dynq__tensor_t *out) {
  int rc, ax = 0;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1)))
    return rc;
  const dynq__tensor_t *x = in[0], *idx = in[1];
  if ((rc = check_elements(c, x, idx, c->st->axis.axis, &ax))) return rc;
  if ((rc = dynq__op_alloc(c, out, x->dtype, idx->rank, idx->dims, 0))) return rc;
  const size_t es = dynq__dtype_size(x->dtype);
  const int64_t n = dynq__tensor_numel(idx), len = x->dims[ax];
  int64_t cnt[DYNQ_MAX_RANK] = {0};
  for (int64_t j = 0; j < n; j++, next_pos(idx->dims, idx->rank, cnt)) {
    int64_t k = dynq__load_i(idx->data, idx->dtype, j);
    if (k < 0) k += len;
    memcpy((char *)out->data + (size_t)j * es,
           (const char *)x->data + (size_t)offset_of(x->dims, x->rank, cnt, ax, k) * es, es);
  }
  return 0;
}

/* ScatterElements(data, indices, updates): a copy of data with the
 * updates written (reduction "none") or combined with what is there
 * ("add", "mul", "max", "min") at the indexed positions, in index order.
 * With "none" and a repeated index the last update wins (ONNX leaves it
 * undefined). */
int dynq__prep_scatter(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                       char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->scatter.axis = dynq__node_attr_i(n, "axis", 0);
  st->scatter.reduction = (int)dynq__node_attr_i(n, "reduction", 0);
  return 0;
}

int dynq__run_scatter_elements(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                               dynq__tensor_t *out) {
  int rc, ax = 0;
  for (int k = 0; k < 3; k++)
    if ((rc = dynq__op_need_present(c, in[k], k))) return rc;
  const dynq__tensor_t *x = in[0], *idx = in[1], *u = in[2];
  if ((rc = check_elements(c, x, idx, c->st->scatter.axis, &ax))) return rc;
  if (u->dtype != x->dtype || u->rank != idx->rank ||
      memcmp(u->dims, idx->dims, sizeof(int64_t) * (size_t)idx->rank) != 0)
    return dynq__op_fail(c, DYNQ_ESHAPE, "updates must have the indices' shape and the data's "
                         "dtype");
  const int red = c->st->scatter.reduction;
  if (red && x->dtype != DYNQ_DT_F32 && !dynq__dt_is_int(x->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  if ((rc = dynq__op_out_like(c, 0, x->dtype, x->rank, x->dims, out))) return rc;
  const size_t es = dynq__dtype_size(x->dtype);
  if (out->data != x->data) memcpy(out->data, x->data, (size_t)dynq__tensor_numel(x) * es);
  const int64_t n = dynq__tensor_numel(idx), len = x->dims[ax];
  int64_t cnt[DYNQ_MAX_RANK] = {0};
  for (int64_t j = 0; j < n; j++, next_pos(idx->dims, idx->rank, cnt)) {
    int64_t k = dynq__load_i(idx->data, idx->dtype, j);
    if (k < 0) k += len;
    int64_t o = offset_of(x->dims, x->rank, cnt, ax, k);
    if (red == 0)
      memcpy((char *)out->data + (size_t)o * es, (const char *)u->data + (size_t)j * es, es);
    else
      combine(out->data, u->data, o, j, x->dtype, red);
  }
  return 0;
}

/* The index tuple s of idx (its last axis, q values) addressing x's axes
 * first .. first + q - 1: its offset in units of those axes; an error
 * naming the index when one is out of range. */
static int nd_offset(dynq__op_ctx_t *c, const dynq__tensor_t *x, int first,
                     const dynq__tensor_t *idx, int64_t s, int64_t *ret_off) {
  const int q = (int)idx->dims[idx->rank - 1];
  int64_t off = 0;
  for (int d = 0; d < q; d++) {
    const int64_t k = dynq__load_i(idx->data, idx->dtype, s * q + d), len = x->dims[first + d];
    if (k < -len || k >= len)
      return dynq__op_fail(c, DYNQ_ESHAPE, "index %lld out of range for axis %d of size %lld",
                           (long long)k, first + d, (long long)len);
    off = off * len + (k < 0 ? k + len : k);
  }
  *ret_off = off;
  return 0;
}

/* ScatterND(data, indices [..., q], updates): a copy of data with each
 * indexed slice (the first q coordinates given, the rest whole) replaced
 * or combined as ScatterElements' reduction says; the slices in index
 * order. */
int dynq__run_scatter_nd(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                         dynq__tensor_t *out) {
  int rc;
  for (int k = 0; k < 3; k++)
    if ((rc = dynq__op_need_present(c, in[k], k))) return rc;
  const dynq__tensor_t *x = in[0], *idx = in[1], *u = in[2];
  if (idx->dtype != DYNQ_DT_I64 && idx->dtype != DYNQ_DT_I32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "indices must be int64 or int32, are %s",
                         dynq__dtype_name(idx->dtype));
  if (idx->rank < 1) return dynq__op_fail(c, DYNQ_ESHAPE, "indices must have rank >= 1");
  const int q = (int)idx->dims[idx->rank - 1];
  /* updates: indices' shape without its last axis, then data's axes from q */
  int ok = q >= 1 && q <= x->rank && u->dtype == x->dtype &&
           u->rank == idx->rank - 1 + x->rank - q;
  for (int d = 0; ok && d < idx->rank - 1; d++) ok = u->dims[d] == idx->dims[d];
  for (int d = q; ok && d < x->rank; d++) ok = u->dims[idx->rank - 1 + d - q] == x->dims[d];
  if (!ok)
    return dynq__op_fail(c, DYNQ_ESHAPE, "indices (last axis %d) and updates (rank %d, %s) do "
                         "not fit data (rank %d, %s)", q, u->rank, dynq__dtype_name(u->dtype),
                         x->rank, dynq__dtype_name(x->dtype));
  const int red = c->st->scatter.reduction;
  if (red && x->dtype != DYNQ_DT_F32 && !dynq__dt_is_int(x->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  int64_t slice = 1;
  for (int d = q; d < x->rank; d++) slice *= x->dims[d];
  const int64_t n_sl = q > 0 ? dynq__tensor_numel(idx) / q : 0;
  int64_t off;
  for (int64_t s = 0; s < n_sl; s++)
    if ((rc = nd_offset(c, x, 0, idx, s, &off))) return rc;
  if ((rc = dynq__op_out_like(c, 0, x->dtype, x->rank, x->dims, out))) return rc;
  const size_t es = dynq__dtype_size(x->dtype);
  if (out->data != x->data) memcpy(out->data, x->data, (size_t)dynq__tensor_numel(x) * es);
  for (int64_t s = 0; s < n_sl; s++) {
    nd_offset(c, x, 0, idx, s, &off); /* checked above */
    off *= slice;
    if (red == 0)
      memcpy((char *)out->data + (size_t)off * es, (const char *)u->data + (size_t)(s * slice) * es,
             (size_t)slice * es);
    else
      for (int64_t j = 0; j < slice; j++) combine(out->data, u->data, off + j, s * slice + j, x->dtype, red);
  }
  return 0;
}

/* ---- GatherND(data, indices): the slices of data the last axis of
 * indices addresses, after batch_dims leading axes both share ---- */

int dynq__check_gather_nd(const dynq__graph_t *g, const dynq__node_t *n, char *err,
                          size_t errlen) {
  (void)g;
  int64_t b = dynq__node_attr_i(n, "batch_dims", 0);
  DYNQ_OP_CHECK(b >= 0 && b < DYNQ_MAX_RANK, "batch_dims %lld is not within [0, %d)",
                (long long)b, DYNQ_MAX_RANK);
  return 0;
}

int dynq__prep_gather_nd(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                         char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->axis.axis = dynq__node_attr_i(n, "batch_dims", 0);
  return 0;
}

int dynq__run_gather_nd(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                        dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1)))
    return rc;
  const dynq__tensor_t *x = in[0], *idx = in[1];
  if (idx->dtype != DYNQ_DT_I64 && idx->dtype != DYNQ_DT_I32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "indices must be int64 or int32, are %s",
                         dynq__dtype_name(idx->dtype));
  const int64_t bd = c->st->axis.axis;
  if (bd < 0 || bd >= x->rank || bd >= idx->rank)
    return dynq__op_fail(c, DYNQ_ESHAPE, "batch_dims %lld must be below the ranks of data (%d) "
                         "and indices (%d)", (long long)bd, x->rank, idx->rank);
  const int b = (int)bd, q = (int)idx->dims[idx->rank - 1];
  if (idx->dims[idx->rank - 1] < 1 || idx->dims[idx->rank - 1] > x->rank - b)
    return dynq__op_fail(c, DYNQ_ESHAPE, "the last axis of indices is %lld; it must be within "
                         "[1, %d] (data's rank less batch_dims)",
                         (long long)idx->dims[idx->rank - 1], x->rank - b);
  int64_t batch = 1, n_sl = 1, slice = 1, dims[DYNQ_MAX_RANK];
  for (int d = 0; d < b; d++) {
    if (x->dims[d] != idx->dims[d])
      return dynq__op_fail(c, DYNQ_ESHAPE, "batch axis %d is %lld in data, %lld in indices", d,
                           (long long)x->dims[d], (long long)idx->dims[d]);
    batch *= x->dims[d];
  }
  /* output: indices' shape without its last axis, then data's axes past
   * the addressed ones (rank q - 1 + r - k - b <= r - 1 + q - 1 - b) */
  const int orank = idx->rank - 1 + x->rank - q - b;
  if (orank > DYNQ_MAX_RANK)
    return dynq__op_fail(c, DYNQ_ESHAPE, "output rank %d exceeds %d", orank, DYNQ_MAX_RANK);
  int r = 0;
  for (int d = 0; d < idx->rank - 1; d++) {
    dims[r++] = idx->dims[d];
    if (d >= b) n_sl *= idx->dims[d];
  }
  for (int d = b + q; d < x->rank; d++) dims[r++] = x->dims[d], slice *= x->dims[d];
  const int64_t per_batch = dynq__tensor_numel(x) / (batch > 0 ? batch : 1);
  int64_t off;
  for (int64_t s = 0; s < batch * n_sl; s++)
    if ((rc = nd_offset(c, x, b, idx, s, &off))) return rc;
  if (dynq__shape_numel(orank, dims) < 0)
    return dynq__op_fail(c, DYNQ_ELIMIT, "output too large");
  if ((rc = dynq__op_alloc(c, out, x->dtype, orank, dims, 0))) return rc;
  const size_t es = dynq__dtype_size(x->dtype), row = (size_t)slice * es;
  char *o = out->data;
  for (int64_t s = 0; s < batch * n_sl && row; s++, o += row) {
    nd_offset(c, x, b, idx, s, &off); /* checked above */
    memcpy(o, (const char *)x->data + (size_t)((s / n_sl) * per_batch + off * slice) * es, row);
  }
  return 0;
}

/* ---- OneHot(indices, depth, values [off, on]): a new axis of depth
 * entries at axis, on where the index (negative ones from the end)
 * points, off elsewhere; indices outside [-depth, depth) give a row all
 * off (ONNX's rule).  Float indices and depth are truncated, as ONNX's
 * reference casts them. ---- */

int dynq__prep_onehot(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                      char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->axis.axis = dynq__node_attr_i(n, "axis", -1);
  return 0;
}

int dynq__run_onehot(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, ax = 0;
  for (int k = 0; k < 3; k++)
    if ((rc = dynq__op_need_present(c, in[k], k))) return rc;
  const dynq__tensor_t *idx = in[0], *dep = in[1], *val = in[2];
  if ((idx->dtype != DYNQ_DT_F32 && !dynq__dt_is_int(idx->dtype)) ||
      (dep->dtype != DYNQ_DT_F32 && !dynq__dt_is_int(dep->dtype)))
    return dynq__op_fail(c, DYNQ_EDTYPE, "indices and depth must be numbers, are %s and %s",
                         dynq__dtype_name(idx->dtype), dynq__dtype_name(dep->dtype));
  if (dynq__tensor_numel(dep) != 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "depth must hold one value");
  if (dynq__tensor_numel(val) != 2 || val->rank != 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "values must be [off_value, on_value]");
  const double dd = dynq__load_d(dep->data, dep->dtype, 0);
  if (!(dd >= 1.0 && dd < (double)DYNQ_MAX_ELEMS + 1.0))
    return dynq__op_fail(c, DYNQ_ESHAPE, "depth %g is not within [1, %lld]", dd,
                         (long long)DYNQ_MAX_ELEMS);
  const int64_t depth = (int64_t)dd;
  if (idx->rank + 1 > DYNQ_MAX_RANK)
    return dynq__op_fail(c, DYNQ_ESHAPE, "output rank %d exceeds %d", idx->rank + 1,
                         DYNQ_MAX_RANK);
  if ((rc = dynq__op_norm_axis(c, c->st->axis.axis, idx->rank + 1, 0, &ax))) return rc;
  int64_t dims[DYNQ_MAX_RANK], outer = 1, inner = 1;
  for (int d = 0, r = 0; d <= idx->rank; d++) {
    if (d == ax) {
      dims[d] = depth;
      continue;
    }
    dims[d] = idx->dims[r];
    if (d < ax) outer *= idx->dims[r];
    else inner *= idx->dims[r];
    r++;
  }
  if (dynq__shape_numel(idx->rank + 1, dims) < 0)
    return dynq__op_fail(c, DYNQ_ELIMIT, "output has more than %lld elements",
                         (long long)DYNQ_MAX_ELEMS);
  if ((rc = dynq__op_alloc(c, out, val->dtype, idx->rank + 1, dims, 0))) return rc;
  const size_t es = dynq__dtype_size(val->dtype);
  const char *off_v = val->data, *on_v = (const char *)val->data + es;
  char *o = out->data;
  for (int64_t a = 0; a < outer; a++)
    for (int64_t d = 0; d < depth; d++)
      for (int64_t i = 0; i < inner; i++, o += es) {
        const double f = dynq__load_d(idx->data, idx->dtype, a * inner + i);
        /* beyond +-depth (NaN too) matches no position */
        int64_t k = f > -(double)depth - 1.0 && f < (double)depth + 1.0 ? (int64_t)f : depth;
        if (idx->dtype != DYNQ_DT_F32) k = dynq__load_i(idx->data, idx->dtype, a * inner + i);
        if (k < 0 && k >= -depth) k += depth;
        memcpy(o, k == d ? on_v : off_v, es);
      }
  return 0;
}

/* ---- Trilu(X [, k]): the upper (upper = 1) or lower triangle of the
 * last two axes, diagonal offset k, the rest zeroed ---- */

int dynq__prep_trilu(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                     char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->trilu.upper = dynq__node_attr_i(n, "upper", 1) != 0;
  return 0;
}

int dynq__run_trilu(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, nk = 0;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  if (x->rank < 2) return dynq__op_fail(c, DYNQ_ESHAPE, "input must have rank >= 2, has %d", x->rank);
  int64_t k = 0;
  if (c->node->n_in > 1 && in[1] != NULL) {
    if ((rc = dynq__op_read_ints(c, in[1], "k", &k, 1, &nk))) return rc;
    if (nk != 1) return dynq__op_fail(c, DYNQ_ESHAPE, "k must hold one value, has %d", nk);
  }
  if ((rc = dynq__op_out_like(c, 0, x->dtype, x->rank, x->dims, out))) return rc;
  const size_t es = dynq__dtype_size(x->dtype);
  const int64_t R = x->dims[x->rank - 2], C = x->dims[x->rank - 1];
  const int64_t mats = R * C > 0 ? dynq__tensor_numel(x) / (R * C) : 0;
  const int upper = c->st->trilu.upper;
  char *o = out->data;
  if (o != x->data) memcpy(o, x->data, (size_t)dynq__tensor_numel(x) * es);
  for (int64_t m = 0; m < mats; m++)
    for (int64_t i = 0; i < R; i++)
      for (int64_t j = 0; j < C; j++) {
        /* kept: j - i >= k (upper) or j - i <= k (lower) */
        int keep = upper ? j - i >= k : j - i <= k;
        if (!keep) memset(o + (size_t)((m * R + i) * C + j) * es, 0, es);
      }
  return 0;
}

/* ---- NonZero(X) -> int64 [rank, count]: the coordinates of the
 * non-zero elements in row-major order ---- */

int dynq__run_nonzero(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  if (x->dtype != DYNQ_DT_F32 && !dynq__dt_is_int(x->dtype))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  const int64_t n = dynq__tensor_numel(x);
  int64_t cnt = 0;
  for (int64_t i = 0; i < n; i++) cnt += dynq__load_d(x->data, x->dtype, i) != 0.0;
  /* a scalar counts as rank 1, as ONNX's reference does */
  const int r = x->rank > 0 ? x->rank : 1;
  int64_t dims[2] = {r, cnt};
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_I64, 2, dims, 0))) return rc;
  int64_t *o = out->data, pos[DYNQ_MAX_RANK] = {0}, j = 0;
  for (int64_t i = 0; i < n; i++) {
    if (dynq__load_d(x->data, x->dtype, i) != 0.0) {
      for (int d = 0; d < r; d++) o[d * cnt + j] = x->rank > 0 ? pos[d] : 0;
      j++;
    }
    if (x->rank > 0) next_pos(x->dims, x->rank, pos);
  }
  return 0;
}
