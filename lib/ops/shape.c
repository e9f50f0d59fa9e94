/*
 * Shape and data-movement ops: Reshape, Flatten, Identity, Shape, Size,
 * ConstantOfShape, Range, Gather, Slice, Concat, Squeeze, Unsqueeze,
 * Transpose, Expand, Pad, Tile, Split, DepthToSpace, SpaceToDepth,
 * EyeLike.  Any dtype (float32, int64, int32, int8, uint8).  Lists the
 * ONNX spec keeps in attributes (axes, perm, pads) arrive as int64 inputs:
 * the importer turns attributes into constant inputs so one run function
 * serves every opset.
 */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "format.h"

/* ---- Flatten, Reshape ---- */

int dynq__run_flatten(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  int ax = 0, rc;
  if ((rc = dynq__op_norm_axis(c, c->st->axis.axis, x->rank, 1, &ax))) return rc;
  int64_t d[2] = {1, 1};
  for (int i = 0; i < x->rank; i++) d[i < ax ? 0 : 1] *= x->dims[i];
  return dynq__op_reshape_to(c, 0, x, 2, d, out);
}

int dynq__run_reshape(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *s = in[1];
  char a[128];
  if (s->dtype != DYNQ_DT_I64 || s->rank != 1 || s->dims[0] > DYNQ_MAX_RANK)
    return dynq__op_fail(c, DYNQ_ESHAPE, "shape input must be int64 1-D of at most %d values", DYNQ_MAX_RANK);
  int allowzero = c->st->reshape.allowzero;
  int rank = (int)s->dims[0], neg = -1;
  const int64_t *sv = s->data;
  int64_t dims[DYNQ_MAX_RANK], known = 1;
  for (int i = 0; i < rank; i++) {
    int64_t v = sv[i];
    if (v == 0 && !allowzero) {
      if (i >= x->rank) return dynq__op_fail(c, DYNQ_ESHAPE, "shape[%d] = 0 copies a dimension the input lacks", i);
      v = x->dims[i];
    }
    if (v == -1) {
      if (neg >= 0) return dynq__op_fail(c, DYNQ_ESHAPE, "more than one -1 in shape");
      neg = i;
      v = 1;
    } else if (v < 0) {
      return dynq__op_fail(c, DYNQ_ESHAPE, "negative dimension %lld in shape", (long long)v);
    }
    dims[i] = v;
    if (dynq__shape_numel(1, &v) < 0) return dynq__op_fail(c, DYNQ_ESHAPE, "dimension too large");
    known *= v;
    if (known > DYNQ_MAX_ELEMS) return dynq__op_fail(c, DYNQ_ESHAPE, "shape too large");
  }
  int64_t n = dynq__tensor_numel(x);
  if (neg >= 0) {
    if (known == 0 || n % known)
      return dynq__op_fail(c, DYNQ_ESHAPE, "cannot infer -1: %lld elements of %s", (long long)n,
                           dynq__shape_str(a, sizeof(a), x->rank, x->dims));
    dims[neg] = n / known;
    known = n;
  }
  if (known != n)
    return dynq__op_fail(c, DYNQ_ESHAPE, "cannot reshape %s (%lld elements) to %lld elements",
                         dynq__shape_str(a, sizeof(a), x->rank, x->dims), (long long)n, (long long)known);
  return dynq__op_reshape_to(c, 0, x, rank, dims, out);
}

/* ---- Expand ---- */

int dynq__run_expand(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, n;
  int64_t shape[DYNQ_MAX_RANK];
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1))) return rc;
  if ((rc = dynq__op_read_ints(c, in[1], "shape", shape, DYNQ_MAX_RANK, &n))) return rc;
  dynq__tensor_t s = {.dtype = in[0]->dtype, .rank = n};
  for (int i = 0; i < n; i++) {
    if (shape[i] < 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "negative dimension %lld in shape", (long long)shape[i]);
    s.dims[i] = shape[i];
  }
  const dynq__tensor_t *pair[2] = {in[0], &s};
  dynq__bcast_t bc;
  if ((rc = dynq__bcast_init(c, 2, pair, &bc))) return rc;
  if ((rc = dynq__op_alloc(c, out, in[0]->dtype, bc.rank, bc.dims, 0))) return rc;
  if (bc.n == 0) return 0;
  /* row by row: the last axis copied (stride 1) or one value repeated
   * (stride 0) */
  const size_t es = dynq__dtype_size(in[0]->dtype);
  const int64_t len = bc.rank > 0 ? bc.dims[bc.rank - 1] : 1;
  const int64_t st = bc.rank > 0 ? bc.st[0][bc.rank - 1] : 1;
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off[2] = {0, 0};
  char *dst = out->data;
  for (int64_t row = 0; row < bc.n / len; row++, dst += (size_t)len * es) {
    const char *src = (const char *)in[0]->data + (size_t)off[0] * es;
    if (st != 0) {
      memcpy(dst, src, (size_t)len * es);
    } else if (es == 4) {
      uint32_t v;
      memcpy(&v, src, 4);
      for (int64_t k = 0; k < len; k++) ((uint32_t *)dst)[k] = v;
    } else if (es == 1) {
      memset(dst, *src, (size_t)len);
    } else {
      for (int64_t k = 0; k < len; k++) memcpy(dst + (size_t)k * es, src, es);
    }
    dynq__bcast_next_row(&bc, 2, cnt, off);
  }
  return 0;
}

/* ---- Shape, Size, ConstantOfShape, Range ---- */

int dynq__run_shape(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  int r = in[0]->rank;
  int64_t start = c->st->shape.has_start ? c->st->shape.start : 0;
  int64_t end = c->st->shape.has_end ? c->st->shape.end : r;
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = start < 0 ? 0 : start > r ? r : start;
  end = end < 0 ? 0 : end > r ? r : end;
  int64_t n = end > start ? end - start : 0;
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_I64, 1, &n, 1))) return rc;
  for (int64_t i = 0; i < n; i++) ((int64_t *)out->data)[i] = in[0]->dims[start + i];
  return 0;
}

int dynq__run_size(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_I64, 0, NULL, 1))) return rc;
  *(int64_t *)out->data = dynq__tensor_numel(in[0]);
  return 0;
}

int dynq__run_constant_of_shape(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                                 dynq__tensor_t *out) {
  int rc, n;
  int64_t shape[DYNQ_MAX_RANK];
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  if ((rc = dynq__op_read_ints(c, in[0], "shape", shape, DYNQ_MAX_RANK, &n))) return rc;
  for (int i = 0; i < n; i++)
    if (shape[i] < 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "negative dimension %lld in shape", (long long)shape[i]);
  if (dynq__shape_numel(n, shape) < 0)
    return dynq__op_fail(c, DYNQ_ELIMIT, "shape has more than %lld elements",
                         (long long)DYNQ_MAX_ELEMS);
  const dynq__tensor_t *v = in[1];
  if (v != NULL && dynq__tensor_numel(v) != 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "value must hold exactly one element");
  dynq_dtype_t dt = v ? v->dtype : DYNQ_DT_F32;
  if ((rc = dynq__op_alloc(c, out, dt, n, shape, 1))) return rc;
  if (v != NULL) {
    size_t es = dynq__dtype_size(dt);
    int64_t cnt = dynq__tensor_numel(out);
    for (int64_t i = 0; i < cnt; i++) memcpy((char *)out->data + (size_t)i * es, v->data, es);
  }
  return 0;
}

int dynq__run_range(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  for (int k = 0; k < 3; k++) {
    if ((rc = dynq__op_need_present(c, in[k], k))) return rc;
    if (in[k]->dtype != in[0]->dtype || dynq__tensor_numel(in[k]) != 1)
      return dynq__op_fail(c, DYNQ_ESHAPE, "start, limit and delta must be one-element "
                           "tensors of the same dtype");
  }
  dynq_dtype_t dt = in[0]->dtype;
  int64_t n;
  if (dt == DYNQ_DT_F32) {
    double s = ((const float *)in[0]->data)[0], l = ((const float *)in[1]->data)[0],
           d = ((const float *)in[2]->data)[0];
    if (d == 0 || !isfinite(s) || !isfinite(l) || !isfinite(d))
      return dynq__op_fail(c, DYNQ_ENUMERIC, "delta is zero or a bound is not finite");
    double cnt = ceil((l - s) / d);
    if (cnt > (double)DYNQ_MAX_ELEMS)
      return dynq__op_fail(c, DYNQ_ELIMIT, "range has more than %lld elements", (long long)DYNQ_MAX_ELEMS);
    n = cnt > 0 ? (int64_t)cnt : 0;
    if ((rc = dynq__op_alloc(c, out, dt, 1, &n, 1))) return rc;
    /* ONNX defines element i as start + i * delta, not a running sum. */
    float fs = (float)s, fd = (float)d;
    for (int64_t i = 0; i < n; i++) ((float *)out->data)[i] = fs + (float)i * fd;
    return 0;
  }
  if (!dynq__dt_is_int(dt)) return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(dt));
  int64_t s = dynq__load_i(in[0]->data, dt, 0), l = dynq__load_i(in[1]->data, dt, 0), d = dynq__load_i(in[2]->data, dt, 0);
  if (d == 0) return dynq__op_fail(c, DYNQ_ENUMERIC, "delta is zero");
  /* The span l - s may overflow int64: compute it in 128 bits. */
  __int128 span = (__int128)l - (__int128)s;
  __int128 cnt = 0;
  if ((span > 0 && d > 0) || (span < 0 && d < 0)) {
    __int128 ad = d > 0 ? (__int128)d : -(__int128)d, as = span > 0 ? span : -span;
    cnt = (as + ad - 1) / ad;
  }
  if (cnt > DYNQ_MAX_ELEMS)
    return dynq__op_fail(c, DYNQ_ELIMIT, "range has more than %lld elements", (long long)DYNQ_MAX_ELEMS);
  n = (int64_t)cnt;
  if ((rc = dynq__op_alloc(c, out, dt, 1, &n, 1))) return rc;
  for (int64_t i = 0; i < n; i++) dynq__store_i(out->data, dt, i, (int64_t)((__int128)s + (__int128)i * d));
  return 0;
}

/* ---- Gather ---- */

int dynq__run_gather(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, ax = 0;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1))) return rc;
  const dynq__tensor_t *x = in[0], *idx = in[1];
  if (x->rank < 1) return dynq__op_fail(c, DYNQ_ESHAPE, "data must have rank >= 1");
  if (idx->dtype != DYNQ_DT_I64 && idx->dtype != DYNQ_DT_I32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "indices must be int64 or int32, are %s",
                         dynq__dtype_name(idx->dtype));
  if ((rc = dynq__op_norm_axis(c, c->st->axis.axis, x->rank, 0, &ax))) return rc;
  int orank = x->rank - 1 + idx->rank;
  if (orank > DYNQ_MAX_RANK)
    return dynq__op_fail(c, DYNQ_ESHAPE, "output rank %d exceeds %d", orank, DYNQ_MAX_RANK);
  int64_t dims[DYNQ_MAX_RANK];
  int r = 0;
  for (int d = 0; d < ax; d++) dims[r++] = x->dims[d];
  for (int d = 0; d < idx->rank; d++) dims[r++] = idx->dims[d];
  for (int d = ax + 1; d < x->rank; d++) dims[r++] = x->dims[d];
  int64_t outer = 1, inner = 1, len = x->dims[ax], ni = dynq__tensor_numel(idx);
  for (int d = 0; d < ax; d++) outer *= x->dims[d];
  for (int d = ax + 1; d < x->rank; d++) inner *= x->dims[d];
  for (int64_t j = 0; j < ni; j++) {
    int64_t k = dynq__load_i(idx->data, idx->dtype, j);
    if (k < -len || k >= len)
      return dynq__op_fail(c, DYNQ_ESHAPE, "index %lld out of range for axis %d of size %lld",
                           (long long)k, ax, (long long)len);
  }
  if ((rc = dynq__op_alloc(c, out, x->dtype, orank, dims, 0))) return rc;
  size_t es = dynq__dtype_size(x->dtype), row = (size_t)inner * es;
  char *o = out->data;
  for (int64_t a = 0; a < outer; a++)
    for (int64_t j = 0; j < ni; j++) {
      int64_t k = dynq__load_i(idx->data, idx->dtype, j);
      if (k < 0) k += len;
      memcpy(o, (const char *)x->data + ((size_t)(a * len + k)) * row, row);
      o += row;
    }
  return 0;
}

/* ---- Slice ---- */

int dynq__run_slice(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, ns, ne, na, nst;
  for (int k = 0; k < 3; k++)
    if ((rc = dynq__op_need_present(c, in[k], k))) return rc;
  const dynq__tensor_t *x = in[0];
  int64_t starts[DYNQ_MAX_RANK], ends[DYNQ_MAX_RANK], axes[DYNQ_MAX_RANK], steps[DYNQ_MAX_RANK];
  if ((rc = dynq__op_read_ints(c, in[1], "starts", starts, DYNQ_MAX_RANK, &ns)) ||
      (rc = dynq__op_read_ints(c, in[2], "ends", ends, DYNQ_MAX_RANK, &ne)))
    return rc;
  if (ns != ne) return dynq__op_fail(c, DYNQ_ESHAPE, "starts has %d values, ends %d", ns, ne);
  if (in[3] != NULL) {
    if ((rc = dynq__op_read_ints(c, in[3], "axes", axes, DYNQ_MAX_RANK, &na))) return rc;
    if (na != ns) return dynq__op_fail(c, DYNQ_ESHAPE, "axes has %d values, starts %d", na, ns);
  } else {
    for (int i = 0; i < ns; i++) axes[i] = i;
  }
  if (in[4] != NULL) {
    if ((rc = dynq__op_read_ints(c, in[4], "steps", steps, DYNQ_MAX_RANK, &nst))) return rc;
    if (nst != ns) return dynq__op_fail(c, DYNQ_ESHAPE, "steps has %d values, starts %d", nst, ns);
  } else {
    for (int i = 0; i < ns; i++) steps[i] = 1;
  }
  int64_t st[DYNQ_MAX_RANK], sp[DYNQ_MAX_RANK], dims[DYNQ_MAX_RANK];
  int seen[DYNQ_MAX_RANK] = {0};
  for (int d = 0; d < x->rank; d++) {
    st[d] = 0;
    sp[d] = 1;
    dims[d] = x->dims[d];
  }
  for (int i = 0; i < ns; i++) {
    int a = 0;
    if ((rc = dynq__op_norm_axis(c, axes[i], x->rank, 0, &a))) return rc;
    if (seen[a]++) return dynq__op_fail(c, DYNQ_ESHAPE, "axis %d repeated", a);
    int64_t len = x->dims[a], s = starts[i], e = ends[i], step = steps[i];
    if (step == 0) return dynq__op_fail(c, DYNQ_ESHAPE, "step is 0 on axis %d", a);
    /* clamp per the ONNX spec; bounds such as INT64_MAX/INT64_MIN are
     * common, and adding len to a negative value cannot overflow */
    if (s < 0) s += len;
    if (e < 0) e += len;
    if (step > 0) {
      s = s < 0 ? 0 : s > len ? len : s;
      e = e < 0 ? 0 : e > len ? len : e;
    } else {
      s = s < 0 ? 0 : s > len - 1 ? len - 1 : s;
      e = e < -1 ? -1 : e > len - 1 ? len - 1 : e;
    }
    int64_t cnt = 0;
    if (step > 0 && e > s) cnt = (e - s + step - 1) / step;
    if (step < 0 && s > e) cnt = (s - e + (-step) - 1) / (-step);
    st[a] = s;
    sp[a] = step;
    dims[a] = cnt;
  }
  int whole = 1; /* every axis taken whole, in order: a copy (or a move) */
  for (int d = 0; d < x->rank; d++) whole &= st[d] == 0 && sp[d] == 1 && dims[d] == x->dims[d];
  if (whole) {
    return dynq__op_reshape_to(c, 0, x, x->rank, dims, out);
  }
  if ((rc = dynq__op_alloc(c, out, x->dtype, x->rank, dims, 0))) return rc;
  int64_t n = dynq__tensor_numel(out);
  if (n == 0) return 0;
  int64_t xs[DYNQ_MAX_RANK], e = 1;
  for (int d = x->rank - 1; d >= 0; d--) {
    xs[d] = e;
    e *= x->dims[d];
  }
  size_t es = dynq__dtype_size(x->dtype);
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off = 0;
  for (int d = 0; d < x->rank; d++) off += st[d] * xs[d];
  if (x->rank >= 1 && sp[x->rank - 1] == 1) {
    /* Unit step on the last axis: copy whole runs.  Trailing axes taken
     * whole join the run with the axis before them (Silero slices
     * [B, 258, 4] on axis 1: runs of 129 x 4, not 4). */
    int r = x->rank - 1;
    int64_t run = dims[r];
    while (r > 0 && dims[r] == x->dims[r] && sp[r - 1] == 1) {
      r--;
      run *= dims[r];
    }
    for (int64_t i = 0; i < n; i += run) {
      memcpy((char *)out->data + (size_t)i * es, (const char *)x->data + (size_t)off * es,
             (size_t)run * es);
      for (int d = r - 1; d >= 0; d--) {
        cnt[d]++;
        off += sp[d] * xs[d];
        if (cnt[d] < dims[d]) break;
        off -= sp[d] * xs[d] * dims[d];
        cnt[d] = 0;
      }
    }
    return 0;
  }
  for (int64_t i = 0; i < n; i++) {
    memcpy((char *)out->data + (size_t)i * es, (const char *)x->data + (size_t)off * es, es);
    for (int d = x->rank - 1; d >= 0; d--) {
      cnt[d]++;
      off += sp[d] * xs[d];
      if (cnt[d] < dims[d]) break;
      off -= sp[d] * xs[d] * dims[d];
      cnt[d] = 0;
    }
  }
  return 0;
}

/* ---- Concat ---- */

int dynq__run_concat(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, ax = 0, nin = c->node->n_in;
  for (int k = 0; k < nin; k++)
    if ((rc = dynq__op_need_present(c, in[k], k))) return rc;
  const dynq__tensor_t *x0 = in[0];
  if (x0->rank < 1) return dynq__op_fail(c, DYNQ_ESHAPE, "inputs must have rank >= 1");
  if ((rc = dynq__op_norm_axis(c, c->st->axis.axis, x0->rank, 0, &ax))) return rc;
  int64_t dims[DYNQ_MAX_RANK];
  memcpy(dims, x0->dims, sizeof(dims));
  dims[ax] = 0;
  for (int k = 0; k < nin; k++) {
    const dynq__tensor_t *t = in[k];
    if (t->dtype != x0->dtype || t->rank != x0->rank)
      return dynq__op_fail(c, DYNQ_ESHAPE, "input %d is %s rank %d; input 0 is %s rank %d", k,
                           dynq__dtype_name(t->dtype), t->rank, dynq__dtype_name(x0->dtype), x0->rank);
    for (int d = 0; d < t->rank; d++)
      if (d != ax && t->dims[d] != x0->dims[d]) {
        char a[96], b[96];
        return dynq__op_fail(c, DYNQ_ESHAPE, "input %d shape %s does not match input 0 %s off axis %d", k,
                             dynq__shape_str(a, sizeof(a), t->rank, t->dims),
                             dynq__shape_str(b, sizeof(b), x0->rank, x0->dims), ax);
      }
    dims[ax] += t->dims[ax];
    if (dims[ax] > DYNQ_MAX_ELEMS) return dynq__op_fail(c, DYNQ_ELIMIT, "output too large");
  }
  if ((rc = dynq__op_alloc(c, out, x0->dtype, x0->rank, dims, 0))) return rc;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < ax; d++) outer *= dims[d];
  for (int d = ax + 1; d < x0->rank; d++) inner *= dims[d];
  size_t es = dynq__dtype_size(x0->dtype);
  char *o = out->data;
  for (int64_t a = 0; a < outer; a++)
    for (int k = 0; k < nin; k++) {
      size_t row = (size_t)(in[k]->dims[ax] * inner) * es;
      if (row) memcpy(o, (const char *)in[k]->data + (size_t)a * row, row);
      o += row;
    }
  return 0;
}

/* ---- Squeeze, Unsqueeze ---- */

int dynq__run_squeeze(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, na = 0;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  int64_t axes[DYNQ_MAX_RANK];
  int drop[DYNQ_MAX_RANK] = {0};
  if (in[1] != NULL) {
    if ((rc = dynq__op_read_ints(c, in[1], "axes", axes, DYNQ_MAX_RANK, &na))) return rc;
    for (int i = 0; i < na; i++) {
      int a = 0;
      if ((rc = dynq__op_norm_axis(c, axes[i], x->rank, 0, &a))) return rc;
      if (x->dims[a] != 1)
        return dynq__op_fail(c, DYNQ_ESHAPE, "cannot squeeze axis %d of size %lld", a,
                             (long long)x->dims[a]);
      drop[a] = 1;
    }
  } else {
    for (int d = 0; d < x->rank; d++) drop[d] = x->dims[d] == 1;
  }
  int64_t dims[DYNQ_MAX_RANK];
  int r = 0;
  for (int d = 0; d < x->rank; d++)
    if (!drop[d]) dims[r++] = x->dims[d];
  return dynq__op_reshape_to(c, 0, x, r, dims, out); /* a move if offered */
}

int dynq__run_unsqueeze(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, na;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1))) return rc;
  const dynq__tensor_t *x = in[0];
  int64_t axes[DYNQ_MAX_RANK];
  if ((rc = dynq__op_read_ints(c, in[1], "axes", axes, DYNQ_MAX_RANK, &na))) return rc;
  int r = x->rank + na;
  if (r > DYNQ_MAX_RANK)
    return dynq__op_fail(c, DYNQ_ESHAPE, "output rank %d exceeds %d", r, DYNQ_MAX_RANK);
  int ins[DYNQ_MAX_RANK] = {0};
  for (int i = 0; i < na; i++) {
    int a = 0;
    if ((rc = dynq__op_norm_axis(c, axes[i], r, 0, &a))) return rc;
    if (ins[a]++) return dynq__op_fail(c, DYNQ_ESHAPE, "axis %d repeated", a);
  }
  int64_t dims[DYNQ_MAX_RANK];
  for (int d = 0, k = 0; d < r; d++) dims[d] = ins[d] ? 1 : x->dims[k++];
  return dynq__op_reshape_to(c, 0, x, r, dims, out); /* a move if offered */
}

/* dst = src (dims xd, elements of es bytes) with its axes permuted: output
 * axis d is input axis perm[d]. */
static void permute(const void *src_, size_t es, int rank, const int64_t *xd,
                    const int64_t *perm, void *dst_) {
  int64_t dims[DYNQ_MAX_RANK], ps[DYNQ_MAX_RANK], xs[DYNQ_MAX_RANK], e = 1, n = 1;
  for (int d = rank - 1; d >= 0; d--) {
    xs[d] = e;
    e *= xd[d];
  }
  for (int d = 0; d < rank; d++) {
    dims[d] = xd[perm[d]];
    ps[d] = xs[perm[d]];
    n *= dims[d];
  }
  if (n == 0) return;
  /* Output axes of size 1 dropped, and neighbours merged where the input
   * reads on contiguously (NCHW -> NHWC is [N, HW, C] from strides
   * [CHW, 1, HW]); then the innermost axis is a run of memcpy when it
   * reads contiguously, else a strided gather by element size. */
  int64_t cd[DYNQ_MAX_RANK], cs[DYNQ_MAX_RANK];
  int r = 0;
  for (int d = 0; d < rank; d++) {
    if (dims[d] == 1) continue;
    if (r > 0 && cs[r - 1] == ps[d] * dims[d]) {
      cd[r - 1] *= dims[d];
      cs[r - 1] = ps[d];
    } else {
      cd[r] = dims[d];
      cs[r++] = ps[d];
    }
  }
  if (r == 0) {  /* every axis 1: one element */
    cd[0] = cs[0] = 1;
    r = 1;
  }
  const int64_t len = cd[r - 1], st = cs[r - 1];
  const int64_t rows = n / len;
  int64_t cnt[DYNQ_MAX_RANK] = {0}, off = 0;
  char *dst = dst_;
  const char *src = src_;
  for (int64_t row = 0; row < rows; row++, dst += (size_t)len * es) {
    if (st == 1) {
      memcpy(dst, src + (size_t)off * es, (size_t)len * es);
    } else if (es == 4) {
      const uint32_t *sp = (const uint32_t *)src + off;
      for (int64_t k = 0; k < len; k++) ((uint32_t *)dst)[k] = sp[k * st];
    } else if (es == 8) {
      const uint64_t *sp = (const uint64_t *)src + off;
      for (int64_t k = 0; k < len; k++) ((uint64_t *)dst)[k] = sp[k * st];
    } else {
      for (int64_t k = 0; k < len; k++) memcpy(dst + (size_t)k * es, src + (size_t)(off + k * st) * es, es);
    }
    for (int d = r - 2; d >= 0; d--) {  /* the next row's start */
      off += cs[d];
      if (++cnt[d] < cd[d]) break;
      off -= cs[d] * cd[d];
      cnt[d] = 0;
    }
  }
}

/* ---- Transpose ---- */

int dynq__run_transpose(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, np = 0;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  int64_t perm[DYNQ_MAX_RANK];
  if (in[1] != NULL) {
    if ((rc = dynq__op_read_ints(c, in[1], "perm", perm, DYNQ_MAX_RANK, &np))) return rc;
    if (np != x->rank)
      return dynq__op_fail(c, DYNQ_ESHAPE, "perm has %d values for an input of rank %d", np, x->rank);
  } else {
    for (int d = 0; d < x->rank; d++) perm[d] = x->rank - 1 - d;
  }
  int seen[DYNQ_MAX_RANK] = {0};
  int64_t dims[DYNQ_MAX_RANK];
  for (int d = 0; d < x->rank; d++) {
    if (perm[d] < 0 || perm[d] >= x->rank || seen[perm[d]]++)
      return dynq__op_fail(c, DYNQ_ESHAPE, "perm is not a permutation of 0..%d", x->rank - 1);
    dims[d] = x->dims[perm[d]];
  }
  if ((rc = dynq__op_alloc(c, out, x->dtype, x->rank, dims, 0))) return rc;
  permute(x->data, dynq__dtype_size(x->dtype), x->rank, x->dims, perm, out->data);
  return 0;
}

/* ---- Pad ---- */

enum { PAD_CONSTANT = 0, PAD_REFLECT = 1, PAD_EDGE = 2, PAD_WRAP = 3 };

/* Source index along an axis of length len for output position p (already
 * shifted by the low pad lo; hi the high pad); sets *outside for constant
 * padding.  wrap (opset 19) first drops what negative pads crop, then
 * repeats the rest [s0, s0 + n) around the torus, as many times as the
 * pads need (ONNX Runtime 1.30 crops first too). */
static int64_t pad_src(int64_t p, int64_t len, int mode, int *outside, int64_t lo, int64_t hi) {
  if (p >= 0 && p < len) return p;
  if (mode == PAD_CONSTANT) {
    *outside = 1;
    return 0;
  }
  if (mode == PAD_EDGE) return p < 0 ? 0 : len - 1;
  if (mode == PAD_WRAP) {
    int64_t s0 = lo < 0 ? -lo : 0, n = len - s0 - (hi < 0 ? -hi : 0); /* n >= 1: run_pad */
    int64_t r = (p - s0) % n;
    return s0 + (r < 0 ? r + n : r);
  }
  /* reflect without repeating the edge; period 2(len-1).  One
   * reflection (every pad narrower than the axis, as Silero's) needs no
   * division. */
  if (p < 0 && -p < len) return -p;
  if (p >= len && p <= 2 * (len - 1)) return 2 * (len - 1) - p;
  int64_t per = 2 * (len - 1);
  p = per > 0 ? ((p % per) + per) % per : 0;
  return p >= len ? per - p : p;
}

int dynq__run_pad(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, np, na = 0;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1))) return rc;
  const dynq__tensor_t *x = in[0];
  int r = x->rank;
  int64_t pads[2 * DYNQ_MAX_RANK], axes[DYNQ_MAX_RANK], lo[DYNQ_MAX_RANK] = {0},
          hi[DYNQ_MAX_RANK] = {0};
  if ((rc = dynq__op_read_ints(c, in[1], "pads", pads, 2 * DYNQ_MAX_RANK, &np))) return rc;
  if (in[3] != NULL) {
    if ((rc = dynq__op_read_ints(c, in[3], "axes", axes, DYNQ_MAX_RANK, &na))) return rc;
  } else {
    na = r;
    for (int d = 0; d < r; d++) axes[d] = d;
  }
  if (np != 2 * na)
    return dynq__op_fail(c, DYNQ_ESHAPE, "pads has %d values; expected %d", np, 2 * na);
  for (int i = 0; i < na; i++) {
    int a = 0;
    if ((rc = dynq__op_norm_axis(c, axes[i], r, 0, &a))) return rc;
    lo[a] = pads[i];
    hi[a] = pads[i + na];
  }
  int mode = c->st->pad.mode;
  if (mode < PAD_CONSTANT || mode > PAD_WRAP)
    return dynq__op_fail(c, DYNQ_EUNSUPPORTED, "unknown pad mode %d", mode);
  int64_t dims[DYNQ_MAX_RANK];
  for (int d = 0; d < r; d++) {
    int64_t len = x->dims[d];
    if (lo[d] < -len || hi[d] < -len || lo[d] > DYNQ_MAX_ELEMS || hi[d] > DYNQ_MAX_ELEMS)
      return dynq__op_fail(c, DYNQ_ESHAPE, "pads on axis %d out of range", d);
    dims[d] = len + lo[d] + hi[d];
    if (dims[d] < 0) return dynq__op_fail(c, DYNQ_ESHAPE, "pads remove more than axis %d holds", d);
    if (mode != PAD_CONSTANT && len == 0 && dims[d] > 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "cannot %s-pad empty axis %d",
                           mode == PAD_REFLECT ? "reflect" : mode == PAD_EDGE ? "edge" : "wrap", d);
    /* wrap repeats what the negative pads leave: nothing left, nothing to repeat */
    if (mode == PAD_WRAP && len + (lo[d] < 0 ? lo[d] : 0) + (hi[d] < 0 ? hi[d] : 0) <= 0 &&
        (lo[d] > 0 || hi[d] > 0))
      return dynq__op_fail(c, DYNQ_ESHAPE, "cannot wrap-pad axis %d: pads %lld, %lld crop all "
                           "%lld", d, (long long)lo[d], (long long)hi[d], (long long)len);
  }
  const dynq__tensor_t *cv = in[2];
  if (cv != NULL && (cv->dtype != x->dtype || dynq__tensor_numel(cv) > 1))
    return dynq__op_fail(c, DYNQ_ESHAPE, "constant_value must be a scalar of the input dtype");
  if ((rc = dynq__op_alloc(c, out, x->dtype, r, dims, 0))) return rc; /* every row written below */
  int64_t n = dynq__tensor_numel(out), xs[DYNQ_MAX_RANK], e = 1;
  for (int d = r - 1; d >= 0; d--) {
    xs[d] = e;
    e *= x->dims[d];
  }
  size_t es = dynq__dtype_size(x->dtype);
  /* Row by row along the last axis: the outer axes map to one source row
   * (or to the constant), and within a row the unpadded span is one
   * memcpy; only pad elements go through the per-element mapping.  (Silero
   * reflect-pads every chunk; per element this was ~4 % of a served chunk.) */
  int64_t W = r > 0 ? dims[r - 1] : 1, L = r > 0 ? x->dims[r - 1] : 1,
          plo = r > 0 ? lo[r - 1] : 0, phi = r > 0 ? hi[r - 1] : 0;
  int64_t rows = W > 0 ? n / W : 0;
  int64_t cnt[DYNQ_MAX_RANK] = {0};
  for (int64_t row = 0; row < rows; row++) {
    int64_t off = 0;
    int outside = 0;
    for (int d = 0; d < r - 1 && !outside; d++) {
      int64_t p = cnt[d] - lo[d];  /* inside the input for most rows: no call */
      if (p < 0 || p >= x->dims[d]) p = pad_src(p, x->dims[d], mode, &outside, lo[d], hi[d]);
      off += p * xs[d];
    }
    char *dst = (char *)out->data + (size_t)(row * W) * es;
    const char *src = (const char *)x->data + (size_t)off * es;
    for (int64_t j = 0; j < W; j++) {
      int64_t p = j - plo;
      if (!outside && p >= 0 && p < L) {
        int64_t end = plo + L < W ? plo + L : W;  /* the rest of the unpadded span */
        memcpy(dst + (size_t)j * es, src + (size_t)p * es, (size_t)(end - j) * es);
        j = end - 1;
        continue;
      }
      int out_j = outside;
      if (!out_j) p = pad_src(p, L, mode, &out_j, plo, phi);
      if (out_j) {
        if (cv != NULL && dynq__tensor_numel(cv) == 1) memcpy(dst + (size_t)j * es, cv->data, es);
        else memset(dst + (size_t)j * es, 0, es);
      } else {
        memcpy(dst + (size_t)j * es, src + (size_t)p * es, es);
      }
    }
    for (int d = r - 2; d >= 0; d--) {
      if (++cnt[d] < dims[d]) break;
      cnt[d] = 0;
    }
  }
  return 0;
}

/* ---- CenterCropPad ---- */

/* The axes as the importer writes them: "n_axes" (absent: every axis in
 * order) and "axis0".."axis<n-1>". */
int dynq__check_ccp(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  static const char *const an[DYNQ_MAX_RANK] = {"axis0", "axis1", "axis2", "axis3",
                                                "axis4", "axis5", "axis6", "axis7"};
  int64_t na = dynq__node_attr_i(n, "n_axes", -1);
  DYNQ_OP_CHECK(na >= -1 && na <= DYNQ_MAX_RANK, "n_axes %lld is not within [-1, %d]",
                (long long)na, DYNQ_MAX_RANK);
  for (int64_t k = 0; k < na; k++) {
    int64_t a = dynq__node_attr_i(n, an[k], INT64_MIN);
    DYNQ_OP_CHECK(a >= -DYNQ_MAX_RANK && a < DYNQ_MAX_RANK, "axis%lld %lld is not within "
                  "[-%d, %d)", (long long)k, (long long)a, DYNQ_MAX_RANK, DYNQ_MAX_RANK);
  }
  return 0;
}

/* Per listed axis of size n and target t: t < n keeps [(n - t) / 2, + t),
 * t > n puts (t - n) / 2 zeros before and the rest after (opset 18).  Any
 * dtype; rows along the last axis are copied whole where they overlap the
 * input, the zero-filled output holding the padding. */
int dynq__run_center_crop_pad(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                              dynq__tensor_t *out) {
  static const char *const an[DYNQ_MAX_RANK] = {"axis0", "axis1", "axis2", "axis3",
                                                "axis4", "axis5", "axis6", "axis7"};
  int rc, ns;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1)))
    return rc;
  const dynq__tensor_t *x = in[0];
  const int r = x->rank;
  int64_t shp[DYNQ_MAX_RANK], dims[DYNQ_MAX_RANK], off[DYNQ_MAX_RANK] = {0};
  int axes[DYNQ_MAX_RANK], seen[DYNQ_MAX_RANK] = {0};
  if ((rc = dynq__op_read_ints(c, in[1], "shape", shp, DYNQ_MAX_RANK, &ns))) return rc;
  int64_t na = dynq__node_attr_i(c->node, "n_axes", -1);
  if (na < 0) {
    na = r;
    for (int d = 0; d < r; d++) axes[d] = d;
  } else {
    if (na > DYNQ_MAX_RANK) return dynq__op_fail(c, DYNQ_EGRAPH, "n_axes %lld", (long long)na);
    for (int k = 0; k < na; k++) {
      if ((rc = dynq__op_norm_axis(c, dynq__node_attr_i(c->node, an[k], 0), r, 0, &axes[k])))
        return rc;
      if (seen[axes[k]]++)
        return dynq__op_fail(c, DYNQ_ESHAPE, "axis %d is listed twice", axes[k]);
    }
  }
  if (ns != na)
    return dynq__op_fail(c, DYNQ_ESHAPE, "shape has %d values for %lld axes", ns, (long long)na);
  for (int d = 0; d < r; d++) dims[d] = x->dims[d];
  for (int k = 0; k < na; k++) {
    int a = axes[k];
    int64_t t = shp[k], n = x->dims[a];
    if (t < 0 || t > DYNQ_MAX_ELEMS)
      return dynq__op_fail(c, DYNQ_ESHAPE, "shape %lld for axis %d is not within [0, %lld]",
                           (long long)t, a, (long long)DYNQ_MAX_ELEMS);
    dims[a] = t;
    off[a] = t <= n ? (n - t) / 2 : -((t - n) / 2); /* output j reads input j + off */
  }
  if ((rc = dynq__op_alloc(c, out, x->dtype, r, dims, 1))) return rc;
  const int64_t no = dynq__tensor_numel(out);
  if (no == 0) return 0;
  const size_t es = dynq__dtype_size(x->dtype);
  int64_t xs[DYNQ_MAX_RANK], e = 1;
  for (int d = r - 1; d >= 0; d--) {
    xs[d] = e;
    e *= x->dims[d];
  }
  const int64_t W = r > 0 ? dims[r - 1] : 1, L = r > 0 ? x->dims[r - 1] : 1,
                o = r > 0 ? off[r - 1] : 0;
  /* the output columns [j0, j1) read input columns j + o inside [0, L) */
  const int64_t j0 = o < 0 ? -o : 0, j1 = L - o < W ? L - o : W;
  int64_t cnt[DYNQ_MAX_RANK] = {0};
  for (int64_t row = 0; row < no / W; row++) {
    int64_t src = 0;
    int inside = j1 > j0;
    for (int d = 0; d < r - 1 && inside; d++) {
      int64_t p = cnt[d] + off[d];
      if (p < 0 || p >= x->dims[d]) inside = 0;
      src += p * xs[d];
    }
    if (inside)
      memcpy((char *)out->data + (size_t)(row * W + j0) * es,
             (const char *)x->data + (size_t)(src + j0 + o) * es, (size_t)(j1 - j0) * es);
    for (int d = r - 2; d >= 0; d--) {
      if (++cnt[d] < dims[d]) break;
      cnt[d] = 0;
    }
  }
  return 0;
}

/* ---- Tile, Split ---- */

int dynq__run_tile(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, n;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1))) return rc;
  const dynq__tensor_t *x = in[0];
  const int r = x->rank;
  int64_t rep[DYNQ_MAX_RANK], dims[DYNQ_MAX_RANK];
  if ((rc = dynq__op_read_ints(c, in[1], "repeats", rep, DYNQ_MAX_RANK, &n))) return rc;
  if (n != r)
    return dynq__op_fail(c, DYNQ_ESHAPE, "repeats has %d values for an input of rank %d", n, r);
  for (int d = 0; d < r; d++) {
    if (rep[d] < 0 || rep[d] > DYNQ_MAX_ELEMS)
      return dynq__op_fail(c, DYNQ_ESHAPE, "repeat %lld on axis %d out of range",
                           (long long)rep[d], d);
    dims[d] = x->dims[d] * rep[d];
    if (x->dims[d] > 0 && dims[d] / x->dims[d] != rep[d]) dims[d] = -1;
  }
  if (dynq__shape_numel(r, dims) < 0) return dynq__op_fail(c, DYNQ_ELIMIT, "output too large");
  if ((rc = dynq__op_alloc(c, out, x->dtype, r, dims, 0))) return rc;
  int64_t no = dynq__tensor_numel(out);
  if (no == 0) return 0;
  /* Build from the innermost axis out: each axis's block (the input's
   * rows already tiled on the inner axes) is copied rep times.  Work on
   * the output in place: block b of axis d lives at its final stride. */
  size_t es = dynq__dtype_size(x->dtype);
  if (r == 0) {
    memcpy(out->data, x->data, es);
    return 0;
  }
  /* inner run: the last axis tiled, per source row */
  int64_t rows = 1;
  for (int d = 0; d < r - 1; d++) rows *= x->dims[d];
  int64_t L = x->dims[r - 1], OL = dims[r - 1];
  char *o = out->data;
  /* place source rows at their tiled positions (outer axes not yet
   * repeated), each tiled along the last axis */
  int64_t cnt[DYNQ_MAX_RANK] = {0};
  for (int64_t row = 0; row < rows; row++) {
    int64_t off = 0; /* in rows of the output */
    for (int d = 0; d < r - 1; d++) off = off * dims[d] + cnt[d];
    char *dst = o + (size_t)(off * OL) * es;
    const char *src = (const char *)x->data + (size_t)(row * L) * es;
    for (int64_t k = 0; k < rep[r - 1]; k++) memcpy(dst + (size_t)(k * L) * es, src, (size_t)L * es);
    for (int d = r - 2; d >= 0; d--) {
      if (++cnt[d] < x->dims[d]) break;
      cnt[d] = 0;
    }
  }
  /* then each outer axis, innermost first: copy the first x->dims[d]
   * blocks rep[d] - 1 more times */
  for (int d = r - 2; d >= 0; d--) {
    int64_t blk = OL; /* elements of one index of axis d, tiled inside */
    for (int k = d + 1; k < r - 1; k++) blk *= dims[k];
    int64_t outer = 1;
    for (int k = 0; k < d; k++) outer *= x->dims[k]; /* axes above not yet tiled */
    for (int64_t a = 0; a < outer; a++) {
      int64_t base = 0;
      /* the output offset of outer index a (axes < d at their source
       * positions, which are their final positions) */
      int64_t rem = a;
      int64_t idx[DYNQ_MAX_RANK];
      for (int k = d - 1; k >= 0; k--) {
        idx[k] = rem % x->dims[k];
        rem /= x->dims[k];
      }
      for (int k = 0; k < d; k++) base = base * dims[k] + idx[k];
      char *p = o + (size_t)(base * dims[d] * blk) * es;
      size_t span = (size_t)(x->dims[d] * blk) * es;
      for (int64_t k = 1; k < rep[d]; k++) memcpy(p + (size_t)k * span, p, span);
    }
  }
  return 0;
}

int dynq__check_split(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  int64_t no = dynq__node_attr_i(n, "num_outputs", 0);
  DYNQ_OP_CHECK(no == 0 || no == n->n_out, "num_outputs %lld but the node has %d outputs",
                (long long)no, n->n_out);
  return 0;
}

int dynq__prep_split(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                     char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->split.axis = dynq__node_attr_i(n, "axis", 0);
  st->split.num_outputs = dynq__node_attr_i(n, "num_outputs", 0);
  return 0;
}

int dynq__run_split(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, ax = 0, ns = 0;
  const int no = c->node->n_out;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  if (x->rank < 1) return dynq__op_fail(c, DYNQ_ESHAPE, "input must have rank >= 1");
  if ((rc = dynq__op_norm_axis(c, c->st->split.axis, x->rank, 0, &ax))) return rc;
  const int64_t len = x->dims[ax];
  int64_t parts[DYNQ_FILE_MAX_ARITY];
  const dynq__tensor_t *sp = c->node->n_in > 1 ? in[1] : NULL;
  if (sp != NULL) {
    if ((rc = dynq__op_read_ints(c, sp, "split", parts, DYNQ_FILE_MAX_ARITY, &ns))) return rc;
    if (ns != no)
      return dynq__op_fail(c, DYNQ_ESHAPE, "split has %d values for %d outputs", ns, no);
    int64_t sum = 0;
    for (int i = 0; i < ns; i++) {
      if (parts[i] < 0 || parts[i] > len)
        return dynq__op_fail(c, DYNQ_ESHAPE, "split value %lld out of range", (long long)parts[i]);
      sum += parts[i];
    }
    if (sum != len)
      return dynq__op_fail(c, DYNQ_ESHAPE, "split values add up to %lld; axis %d has %lld",
                           (long long)sum, ax, (long long)len);
  } else if (c->st->split.num_outputs > 0) {
    /* opset 18: ceil(len / n) each, the last one smaller */
    int64_t each = (len + no - 1) / no;
    for (int i = 0; i < no; i++) {
      int64_t left = len - each * i;
      parts[i] = left < 0 ? 0 : left < each ? left : each;
    }
  } else {
    if (len % no != 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "axis %d of length %lld does not split into %d equal "
                           "parts", ax, (long long)len, no);
    for (int i = 0; i < no; i++) parts[i] = len / no;
  }
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < ax; d++) outer *= x->dims[d];
  for (int d = ax + 1; d < x->rank; d++) inner *= x->dims[d];
  size_t es = dynq__dtype_size(x->dtype);
  int64_t start = 0;
  for (int i = 0; i < no; i++) {
    int64_t dims[DYNQ_MAX_RANK];
    memcpy(dims, x->dims, sizeof(dims));
    dims[ax] = parts[i];
    if ((rc = dynq__op_alloc(c, &out[i], x->dtype, x->rank, dims, 0))) {
      for (int k = 0; k < i; k++) dynq__tensor_clear(&out[k]);
      return rc;
    }
    size_t row = (size_t)(parts[i] * inner) * es;
    for (int64_t a = 0; a < outer && row; a++)
      memcpy((char *)out[i].data + (size_t)a * row,
             (const char *)x->data + (size_t)((a * len + start) * inner) * es, row);
    start += parts[i];
  }
  return 0;
}

/* ---- DepthToSpace, SpaceToDepth: [N, C, H, W] with blocks of b x b
 * pixels moved between the channels and the spatial axes.  DepthToSpace
 * reads channel (i * b + j) * C' + c (DCR, the default) or
 * c * b * b + i * b + j (CRD) for output channel c, offset (i, j) in the
 * block; SpaceToDepth is DCR's inverse ---- */

int dynq__check_space(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  int64_t b = dynq__node_attr_i(n, "blocksize", 0), crd = dynq__node_attr_i(n, "crd", 0);
  DYNQ_OP_CHECK(b >= 1 && b <= DYNQ_MAX_ELEMS, "blocksize %lld is not within [1, %lld]",
                (long long)b, (long long)DYNQ_MAX_ELEMS);
  DYNQ_OP_CHECK(crd == 0 || (crd == 1 && n->op == DYNQ_OP_DEPTH_TO_SPACE),
                "crd %lld is not supported (0, or 1 on DepthToSpace)", (long long)crd);
  return 0;
}

int dynq__prep_space(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                     char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->space.blocksize = dynq__node_attr_i(n, "blocksize", 0);
  st->space.crd = dynq__node_attr_i(n, "crd", 0) != 0;
  return 0;
}

int dynq__run_space(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  const int d2s = c->node->op == DYNQ_OP_DEPTH_TO_SPACE, crd = c->st->space.crd;
  const int64_t b = c->st->space.blocksize;
  char a[128];
  if (b < 1 || b > DYNQ_MAX_ELEMS)
    return dynq__op_fail(c, DYNQ_EGRAPH, "blocksize %lld is not within [1, %lld]",
                         (long long)b, (long long)DYNQ_MAX_ELEMS);
  if (x->rank != 4)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input must have rank 4 ([N, C, H, W]), is %s",
                         dynq__shape_str(a, sizeof(a), x->rank, x->dims));
  const int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3];
  /* the small side of the op: C' = C / b^2 (DepthToSpace) or C (SpaceToDepth),
   * H and W the small spatial size */
  int64_t cs, hs, ws, dims[4];
  if (d2s) {
    if (C % b != 0 || (C / b) % b != 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "%lld channels do not divide by blocksize^2 (%lld^2)",
                           (long long)C, (long long)b);
    cs = C / b / b, hs = H, ws = W;
    if (H > DYNQ_MAX_ELEMS / b || W > DYNQ_MAX_ELEMS / b)
      return dynq__op_fail(c, DYNQ_ELIMIT, "output spatial size too large");
    dims[1] = cs, dims[2] = H * b, dims[3] = W * b;
  } else {
    if (H % b != 0 || W % b != 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "spatial size %lld x %lld does not divide by "
                           "blocksize %lld", (long long)H, (long long)W, (long long)b);
    cs = C, hs = H / b, ws = W / b;
    if (C > DYNQ_MAX_ELEMS / b / b)
      return dynq__op_fail(c, DYNQ_ELIMIT, "output channels too many");
    dims[1] = C * b * b, dims[2] = hs, dims[3] = ws;
  }
  dims[0] = N;
  if (dynq__shape_numel(4, dims) < 0) return dynq__op_fail(c, DYNQ_ELIMIT, "output too large");
  if ((rc = dynq__op_alloc(c, out, x->dtype, 4, dims, 0))) return rc;
  /* a transpose: DepthToSpace reads [N, b, b, C', H, W] (DCR) or
   * [N, C', b, b, H, W] (CRD) as [N, C', H, b, W, b]; SpaceToDepth the
   * other way round */
  const int64_t dcr[6] = {0, 3, 4, 1, 5, 2}, crdp[6] = {0, 1, 4, 2, 5, 3},
                s2d[6] = {0, 3, 5, 1, 2, 4};
  const int64_t sd_dcr[6] = {N, b, b, cs, hs, ws}, sd_crd[6] = {N, cs, b, b, hs, ws},
                sd_s2d[6] = {N, cs, hs, b, ws, b};
  permute(x->data, dynq__dtype_size(x->dtype), 6, !d2s ? sd_s2d : crd ? sd_crd : sd_dcr,
          !d2s ? s2d : crd ? crdp : dcr, out->data);
  return 0;
}

/* ---- EyeLike(X [rows, cols]): ones on the diagonal k (above the main
 * one when k > 0), zeros elsewhere, in X's dtype or the "dtype"
 * attribute's (the importer's dynq code) ---- */

int dynq__check_eyelike(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  int64_t dt = dynq__node_attr_i(n, "dtype", 0);
  DYNQ_OP_CHECK(dt == 0 || (dt > 0 && dt < 256 && dynq__dtype_size((dynq_dtype_t)dt) > 0),
                "dtype %lld is not a dtype code", (long long)dt);
  return 0;
}

int dynq__prep_eyelike(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                       char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->eye.k = dynq__node_attr_i(n, "k", 0);
  st->eye.dtype = (int)dynq__node_attr_i(n, "dtype", 0);
  return 0;
}

int dynq__run_eyelike(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  if (x->rank != 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input must have rank 2, has %d", x->rank);
  const dynq_dtype_t dt = c->st->eye.dtype ? (dynq_dtype_t)c->st->eye.dtype : x->dtype;
  if (dynq__dtype_size(dt) == 0)
    return dynq__op_fail(c, DYNQ_EDTYPE, "dtype %d is not a dtype code", (int)dt);
  if ((rc = dynq__op_alloc(c, out, dt, 2, x->dims, 1))) return rc;
  const int64_t rows = x->dims[0], cols = x->dims[1];
  /* k clamped to [-rows, cols] first: any k past those leaves no diagonal */
  int64_t k = c->st->eye.k;
  k = k < -rows ? -rows : k > cols ? cols : k;
  for (int64_t i = k < 0 ? -k : 0; i < rows && i + k < cols; i++)
    dynq__store_i(out->data, dt, i * cols + i + k, 1);
  return 0;
}

/* ---- attributes, parsed at load ---- */

int dynq__check_reshape(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  int64_t az = dynq__node_attr_i(n, "allowzero", 0);
  DYNQ_OP_CHECK(az == 0 || az == 1, "allowzero must be 0 or 1");
  return 0;
}

int dynq__prep_reshape(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                       char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->reshape.allowzero = (int)dynq__node_attr_i(n, "allowzero", 0);
  return 0;
}

int dynq__prep_shape(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                     char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->shape.has_start = dynq__node_attr(n, "start") != NULL;
  st->shape.has_end = dynq__node_attr(n, "end") != NULL;
  st->shape.start = dynq__node_attr_i(n, "start", 0);
  st->shape.end = dynq__node_attr_i(n, "end", 0);
  return 0;
}

int dynq__prep_pad(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                   char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->pad.mode = (int)dynq__node_attr_i(n, "mode", PAD_CONSTANT);
  return 0;
}

/* "axis" with the op's ONNX default. */
static int prep_axis(const dynq__node_t *n, dynq__opstate_t *st, int64_t dflt) {
  st->axis.axis = dynq__node_attr_i(n, "axis", dflt);
  return 0;
}
int dynq__prep_axis_zero(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                         char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  return prep_axis(n, st, 0);
}
int dynq__prep_axis_one(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                        char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  return prep_axis(n, st, 1);
}
