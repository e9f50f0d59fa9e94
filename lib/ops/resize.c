/*
 * Resize: nearest (any dtype), linear and cubic (float32) over any axes, with
 * the coordinate transformation modes half_pixel, pytorch_half_pixel,
 * align_corners, asymmetric and tf_half_pixel_for_nn, and the four
 * nearest rounding modes.  Inputs as the importer stores them: X, scales
 * (float32, one per axis; may be absent or empty), sizes (int64, one per
 * axis; used when scales is absent or empty); ONNX's roi is dropped at
 * import (only tf_crop_and_resize reads it, and that mode is refused).
 *
 * Linear and cubic interpolation are separable, so the op runs one axis
 * at a time: per axis a table of source indices and weights per output
 * position (2 taps for linear, 4 for cubic), then rows of the inner axes
 * are blended or copied.  Axes whose table is the identity are skipped.
 * Source coordinates are computed in double, as ONNX's reference does (a
 * nearest tie at .5 depends on it); linear blends in float, as ONNX
 * Runtime's.  Cubic is Keys' kernel with
 * cubic_coeff_a (default -0.75) over the 4 nearest inputs, edges
 * repeated outward; exclude_outside 1 instead gives the taps outside the
 * input weight 0 and renormalizes the rest (ONNX's definition); weights
 * and sums in double.
 *
 * Opset 18: `axes` (attributes naxes, axes0..) lists the axes scales or
 * sizes give, the others keep their length; keep_aspect_ratio_policy
 * (attribute policy) not_larger / not_smaller resizes the listed axes by
 * the smallest / largest of their size / length ratios, each to
 * round_half_up(scale x length), as ONNX's reference does; antialias 1
 * stretches the linear or cubic kernel by 1 / scale on each axis that
 * shrinks (more taps, weights normalized to sum 1; axes that grow or keep
 * their length interpolate as without it).
 */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"

int dynq__resize_codes(const char *mode, const char *ctm, const char *nearest, int *ret_mode,
                       int *ret_ctm, int *ret_nearest, char *why, size_t whylen) {
  static const char *const modes[] = {"nearest", "linear", "cubic", NULL};
  static const char *const ctms[] = {"half_pixel", "pytorch_half_pixel", "align_corners",
                                     "asymmetric", "tf_half_pixel_for_nn", NULL};
  static const char *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
                                         "ceil", NULL};
  static const char *const attrs[3] = {"mode", "coordinate_transformation_mode", "nearest_mode"};
  const char *const *lists[3] = {modes, ctms, nearests};
  const char *vals[3] = {mode ? mode : "nearest", ctm ? ctm : "half_pixel",
                         nearest ? nearest : "round_prefer_floor"};
  int codes[3];
  for (int k = 0; k < 3; k++) {
    codes[k] = -1;
    for (int i = 0; lists[k][i]; i++)
      if (strcmp(lists[k][i], vals[k]) == 0) codes[k] = i;
    if (codes[k] >= 0) continue;
    int o = snprintf(why, whylen, "%s '%s' is not supported (", attrs[k], vals[k]);
    for (int i = 0; lists[k][i] && o >= 0 && (size_t)o < whylen; i++)
      o += snprintf(why + o, whylen - (size_t)o, "%s%s", i ? ", " : "", lists[k][i]);
    if (o >= 0 && (size_t)o < whylen) snprintf(why + o, whylen - (size_t)o, " are)");
    return -1;
  }
  *ret_mode = codes[0];
  *ret_ctm = codes[1];
  *ret_nearest = codes[2];
  return 0;
}

static const char *attr_str(const dynq__node_t *n, const char *name) {
  const dynq__attr_t *a = dynq__node_attr(n, name);
  return a != NULL && a->type == DYNQ_ATTR_STRING ? a->s : NULL;
}

/* The node's attributes into *st; 0, or -1 with why. */
static int read_attrs(const dynq__node_t *n, dynq__opstate_t *st, char *why, size_t whylen) {
  if (dynq__resize_codes(attr_str(n, "mode"), attr_str(n, "coordinate_transformation_mode"),
                         attr_str(n, "nearest_mode"), &st->resize.mode, &st->resize.ctm,
                         &st->resize.nearest, why, whylen) != 0)
    return -1;
  st->resize.cubic_a = dynq__node_attr_f(n, "cubic_coeff_a", -0.75f);
  st->resize.exclude_outside = dynq__node_attr_i(n, "exclude_outside", 0) != 0;
  int64_t aa = dynq__node_attr_i(n, "antialias", 0), pol = dynq__node_attr_i(n, "policy", 0),
          na = dynq__node_attr_i(n, "naxes", 0);
  if (!isfinite(st->resize.cubic_a)) {
    snprintf(why, whylen, "cubic_coeff_a %g is not finite", (double)st->resize.cubic_a);
    return -1;
  }
  if (aa != 0 && aa != 1) {
    snprintf(why, whylen, "antialias %lld is not 0 or 1", (long long)aa);
    return -1;
  }
  if (pol < DYNQ_KEEP_STRETCH || pol > DYNQ_KEEP_NOT_SMALLER) {
    snprintf(why, whylen, "keep_aspect_ratio_policy code %lld is not 0, 1 or 2", (long long)pol);
    return -1;
  }
  if (na < 0 || na > DYNQ_MAX_RANK) {
    snprintf(why, whylen, "%lld axes (at most %d)", (long long)na, DYNQ_MAX_RANK);
    return -1;
  }
  st->resize.antialias = (int)aa;
  st->resize.policy = (int)pol;
  st->resize.naxes = (int)na;
  for (int k = 0; k < na; k++) {
    char key[16];
    snprintf(key, sizeof key, "axes%d", k);
    int64_t a = dynq__node_attr_i(n, key, INT64_MIN);
    if (a < -DYNQ_MAX_RANK || a >= DYNQ_MAX_RANK) {
      snprintf(why, whylen, "axes[%d] %lld is not within [-%d, %d)", k, (long long)a,
               DYNQ_MAX_RANK, DYNQ_MAX_RANK);
      return -1;
    }
    st->resize.axes[k] = (int)a;
  }
  return 0;
}

int dynq__check_resize(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  dynq__opstate_t st;
  char why[256];
  DYNQ_OP_CHECK(read_attrs(n, &st, why, sizeof why) == 0, "%s", why);
  DYNQ_OP_CHECK(n->n_in >= 2 && (n->in[1] >= 0 || (n->n_in > 2 && n->in[2] >= 0)),
                "needs scales or sizes");
  return 0;
}

int dynq__prep_resize(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                      char *err, size_t errlen) {
  (void)g;
  char why[256];
  if (read_attrs(n, st, why, sizeof why) != 0) {
    snprintf(err, errlen, "node '%s' (Resize): %s", n->name ? n->name : "?", why);
    return DYNQ_EGRAPH;
  }
  return 0;
}

/* Output position o of an axis of length len resized by scale: its
 * coordinate in the input, per the transformation mode.  ONNX defines
 * the resized length in these formulas as len * scale, unrounded (with
 * sizes given, scale = size / len, so it is the size). */
static double src_coord(int ctm, int64_t o, int64_t len, double scale) {
  double x = (double)o, rlen = (double)len * scale;
  switch (ctm) {
  case DYNQ_CTM_HALF_PIXEL: return (x + 0.5) / scale - 0.5;
  case DYNQ_CTM_PYTORCH_HALF_PIXEL: return rlen > 1.0 ? (x + 0.5) / scale - 0.5 : 0.0;
  case DYNQ_CTM_ALIGN_CORNERS:
    return rlen > 1.0 ? x * (double)(len - 1) / (rlen - 1.0) : 0.0;
  case DYNQ_CTM_TF_HALF_PIXEL_FOR_NN: return (x + 0.5) / scale;
  default: return x / scale; /* asymmetric */
  }
}

static int64_t nearest_index(int mode, double x, int64_t len) {
  double f = floor(x);
  int64_t i;
  switch (mode) {
  case DYNQ_NEAREST_FLOOR: i = (int64_t)f; break;
  case DYNQ_NEAREST_CEIL: i = (int64_t)ceil(x); break;
  case DYNQ_NEAREST_ROUND_PREFER_CEIL: i = x == f + 0.5 ? (int64_t)f + 1 : (int64_t)round(x); break;
  default: i = x == f + 0.5 ? (int64_t)f : (int64_t)round(x); break;
  }
  return i < 0 ? 0 : i >= len ? len - 1 : i;
}

/* One axis's table; returns 1 when it is the identity. */
static int axis_table(const dynq__opstate_t *st, int64_t len, int64_t olen, double scale,
                      int64_t *i0, int64_t *i1, float *w) {
  int ident = olen == len;
  for (int64_t o = 0; o < olen; o++) {
    double x = src_coord(st->resize.ctm, o, len, scale);
    if (st->resize.mode == DYNQ_RESIZE_NEAREST) {
      i0[o] = i1[o] = nearest_index(st->resize.nearest, x, len);
      w[o] = 0.0f;
    } else {
      /* Outside the input the edge value holds (ONNX pads with edges). */
      x = x < 0.0 ? 0.0 : x > (double)(len - 1) ? (double)(len - 1) : x;
      int64_t a = (int64_t)x;
      i0[o] = a;
      i1[o] = a + 1 < len ? a + 1 : len - 1;
      w[o] = (float)(x - (double)a);
    }
    ident &= i0[o] == o && w[o] == 0.0f;
  }
  return ident;
}

double dynq__keys_cubic(double d, double A) {
  if (d <= 1.0) return ((A + 2.0) * d - (A + 3.0)) * d * d + 1.0;
  if (d < 2.0) return ((A * d - 5.0 * A) * d + 8.0 * A) * d - 4.0 * A;
  return 0.0;
}

/* One axis's cubic table: 4 taps per output position, the source indices
 * clamped into [0, len) (the edge repeated) and their weights; returns 1
 * when it is the identity.  pytorch_half_pixel maps a single output to
 * -0.5, as ONNX defines it (src_coord's 0 is the same for the other
 * modes, whose taps clamp). */
static int cubic_table(const dynq__opstate_t *st, int64_t len, int64_t olen, double scale,
                       int64_t *idx, double *wt) {
  int ident = olen == len;
  const double A = st->resize.cubic_a;
  for (int64_t o = 0; o < olen; o++) {
    double x = src_coord(st->resize.ctm, o, len, scale);
    if (st->resize.ctm == DYNQ_CTM_PYTORCH_HALF_PIXEL && !((double)len * scale > 1.0)) x = -0.5;
    double f = floor(x), t = x - f, sum = 0.0;
    for (int k = 0; k < 4; k++) {
      int64_t i = (int64_t)f - 1 + k;
      double w = dynq__keys_cubic(fabs(t - (double)(k - 1)), A);
      if (st->resize.exclude_outside && (i < 0 || i >= len)) w = 0.0;
      idx[o * 4 + k] = i < 0 ? 0 : i >= len ? len - 1 : i;
      wt[o * 4 + k] = w;
      sum += w;
    }
    if (st->resize.exclude_outside && sum != 0.0)
      for (int k = 0; k < 4; k++) wt[o * 4 + k] /= sum;
    ident &= t == 0.0 && (int64_t)f == o;
  }
  return ident;
}

/* Blend `outer` blocks of an axis of length len into olen positions, each
 * a row of `inner` floats, with the 4-tap table. */
static void cubic_axis(const float *src, float *dst, int64_t outer, int64_t len, int64_t olen,
                       int64_t inner, const int64_t *idx, const double *wt) {
  for (int64_t a = 0; a < outer; a++) {
    const float *s = src + (size_t)(a * len * inner);
    for (int64_t o = 0; o < olen; o++) {
      float *y = dst + (size_t)((a * olen + o) * inner);
      const float *p[4];
      for (int k = 0; k < 4; k++) p[k] = s + (size_t)(idx[o * 4 + k] * inner);
      const double *w = wt + o * 4;
      for (int64_t j = 0; j < inner; j++)
        y[j] = (float)(w[0] * p[0][j] + w[1] * p[1][j] + w[2] * p[2][j] + w[3] * p[3][j]);
    }
  }
}

/* Antialias taps of a shrinking axis (scale < 1): the linear or cubic
 * kernel stretched by 1 / scale, n taps per output position (see
 * aa_taps), at the input indices i0 + start .. i0 + start + n - 1 around
 * the position's source coordinate x = i0 + t (t in (0, 1], as ONNX's
 * reference takes the nearest indices preferring the lower), clamped into
 * [0, len) (edges repeated; exclude_outside gives those weight 0), the
 * weights normalized to sum 1. */
static void aa_table(const dynq__opstate_t *st, int64_t len, int64_t olen, double scale,
                     int start, int n, int64_t *idx, double *wt) {
  const int cubic = st->resize.mode == DYNQ_RESIZE_CUBIC;
  const double A = st->resize.cubic_a, s = scale;
  for (int64_t o = 0; o < olen; o++) {
    double x = src_coord(st->resize.ctm, o, len, scale);
    if (st->resize.ctm == DYNQ_CTM_PYTORCH_HALF_PIXEL && !((double)len * scale > 1.0)) x = -0.5;
    double f = floor(x), t = x - f, sum = 0.0;
    if (t == 0.0) t = 1.0;
    const int64_t i0 = (int64_t)(x - t);
    for (int k = 0; k < n; k++) {
      int64_t i = i0 + start + k;
      double d = fabs((double)(start + k) - t) * s;
      double w = cubic ? dynq__keys_cubic(d, A) : (d < 1.0 ? 1.0 - d : 0.0);
      if (st->resize.exclude_outside && (i < 0 || i >= len)) w = 0.0;
      idx[o * n + k] = i < 0 ? 0 : i >= len ? len - 1 : i;
      wt[o * n + k] = w;
      sum += w;
    }
    for (int k = 0; k < n && sum != 0.0; k++) wt[o * n + k] /= sum;
  }
}

/* The first tap offset and the tap count of aa_table at this scale:
 * start = floor(-support / scale) + 1 (support 1 linear, 2 cubic),
 * n = 2 - 2 start; -1 when n would pass max. */
static int aa_taps(int cubic, double scale, int64_t max, int *start, int *n) {
  double st = floor(-(cubic ? 2.0 : 1.0) / (double)scale) + 1.0;
  if (max > INT32_MAX / 2) max = INT32_MAX / 2;
  if (!(2.0 - 2.0 * st <= (double)max)) return -1;
  *start = (int)st;
  *n = 2 - 2 * *start;
  return 0;
}

/* Blend `outer` blocks of an axis into olen positions of `inner` floats
 * each with an n-tap table (weights in double). */
static void taps_axis(const float *src, float *dst, int64_t outer, int64_t len, int64_t olen,
                      int64_t inner, int n, const int64_t *idx, const double *wt) {
  for (int64_t a = 0; a < outer; a++) {
    const float *s = src + (size_t)(a * len * inner);
    for (int64_t o = 0; o < olen; o++) {
      float *y = dst + (size_t)((a * olen + o) * inner);
      const int64_t *ix = idx + o * n;
      const double *w = wt + o * n;
      for (int64_t j = 0; j < inner; j++) {
        double acc = 0.0;
        for (int k = 0; k < n; k++) acc += w[k] * s[(size_t)(ix[k] * inner + j)];
        y[j] = (float)acc;
      }
    }
  }
}

/* The last axis (inner 1) of outer rows: nearest picks, linear blends
 * (a weight of 0 copies, as the row path does).  Out of line: inlined
 * into dynq__run_resize, its loop took 7 % more instructions (callgrind,
 * bench/ops' resize_lin) once the run function grew the antialias path. */
static __attribute__((noinline)) void last_axis(const char *cur, char *dst, int64_t outer,
                                                int64_t len, int64_t olen, size_t es,
                                                int linear, const int64_t *i0,
                                                const int64_t *i1, const float *w) {
  for (int64_t a = 0; a < outer; a++) {
    const char *src = cur + (size_t)(a * len) * es;
    char *drow = dst + (size_t)(a * olen) * es;
    if (linear) {
      const float *p = (const float *)src;
      float *y = (float *)drow;
      for (int64_t o = 0; o < olen; o++)
        y[o] = w[o] == 0.0f ? p[i0[o]] : (1.0f - w[o]) * p[i0[o]] + w[o] * p[i1[o]];
    } else if (es == 4) {
      for (int64_t o = 0; o < olen; o++) ((uint32_t *)drow)[o] = ((const uint32_t *)src)[i0[o]];
    } else if (es == 8) {
      for (int64_t o = 0; o < olen; o++) ((uint64_t *)drow)[o] = ((const uint64_t *)src)[i0[o]];
    } else {
      for (int64_t o = 0; o < olen; o++) memcpy(drow + (size_t)o * es, src + (size_t)i0[o] * es, es);
    }
  }
}

int dynq__run_resize(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0], *sc = in[1], *sz = c->node->n_in > 2 ? in[2] : NULL;
  const int r = x->rank;
  const int linear = c->st->resize.mode == DYNQ_RESIZE_LINEAR;
  const int cubic = c->st->resize.mode == DYNQ_RESIZE_CUBIC;
  if ((linear || cubic) && x->dtype != DYNQ_DT_F32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "%s mode needs float32 input, got %s",
                         linear ? "linear" : "cubic", dynq__dtype_name(x->dtype));
  /* the axes scales or sizes give: ax[0..na) (every axis without `axes`) */
  int ax[DYNQ_MAX_RANK], na = c->st->resize.naxes;
  if (na == 0) {
    na = r;
    for (int d = 0; d < r; d++) ax[d] = d;
  }
  for (int k = 0, seen = 0; k < c->st->resize.naxes; k++) {
    int a = c->st->resize.axes[k] < 0 ? c->st->resize.axes[k] + r : c->st->resize.axes[k];
    if (a < 0 || a >= r || (seen >> a & 1))
      return dynq__op_fail(c, DYNQ_ESHAPE, "axes[%d] %d is %s for an input of rank %d", k,
                           c->st->resize.axes[k], a < 0 || a >= r ? "out of range" : "repeated",
                           r);
    seen |= 1 << a;
    ax[k] = a;
  }
  double scale[DYNQ_MAX_RANK];
  int64_t odims[DYNQ_MAX_RANK];
  for (int d = 0; d < r; d++) scale[d] = 1.0, odims[d] = x->dims[d];
  if (sc != NULL && dynq__tensor_numel(sc) > 0) {
    if (sc->dtype != DYNQ_DT_F32 || sc->rank != 1 || sc->dims[0] != na)
      return dynq__op_fail(c, DYNQ_ESHAPE, "scales must be float32 [%d] for an input of rank "
                           "%d%s", na, r, c->st->resize.naxes ? " and its axes" : "");
    for (int k = 0; k < na; k++) {
      const int d = ax[k];
      scale[d] = ((const float *)sc->data)[k];
      double o = floor((double)x->dims[d] * (double)scale[d]);
      if (!(scale[d] > 0.0) || !isfinite(scale[d]) || o > (double)DYNQ_MAX_ELEMS)
        return dynq__op_fail(c, DYNQ_ESHAPE, "scale %g on axis %d is not a positive finite "
                             "value or gives too large an output", scale[d], d);
      odims[d] = (int64_t)o;
    }
  } else if (sz != NULL) {
    int n = 0;
    int64_t want[DYNQ_MAX_RANK];
    if ((rc = dynq__op_read_ints(c, sz, "sizes", want, DYNQ_MAX_RANK, &n))) return rc;
    if (n != na)
      return dynq__op_fail(c, DYNQ_ESHAPE, "sizes has %d values for an input of rank %d%s", n,
                           r, c->st->resize.naxes ? " and its axes" : "");
    for (int k = 0; k < na; k++) {
      const int d = ax[k];
      if (want[k] < 0 || want[k] > DYNQ_MAX_ELEMS)
        return dynq__op_fail(c, DYNQ_ESHAPE, "size %lld on axis %d out of range",
                             (long long)want[k], d);
      odims[d] = want[k];
      scale[d] = x->dims[d] > 0 ? (double)want[k] / (double)x->dims[d] : 1.0;
    }
    if (c->st->resize.policy != DYNQ_KEEP_STRETCH) {
      /* one scale for the listed axes, the smallest or the largest, in
       * double as ONNX's reference has it: the float ratio can fall short
       * of a half and round the length down (3 x (float)(7 / 6) is
       * 3.4999999, not 3.5) */
      double keep = 0.0;
      for (int k = 0; k < na; k++) {
        const int d = ax[k];
        double s = x->dims[d] > 0 ? (double)want[k] / (double)x->dims[d] : 1.0;
        if (k == 0 || (c->st->resize.policy == DYNQ_KEEP_NOT_LARGER ? s < keep : s > keep))
          keep = s;
      }
      for (int k = 0; k < na; k++) {
        const int d = ax[k];
        double o = floor(keep * (double)x->dims[d] + 0.5);
        if (!(keep > 0.0) || o > (double)DYNQ_MAX_ELEMS)
          return dynq__op_fail(c, DYNQ_ESHAPE, "the kept aspect ratio's scale %g gives axis %d "
                               "no or too large an output", keep, d);
        scale[d] = keep;
        odims[d] = (int64_t)o;
      }
    }
  } else {
    return dynq__op_fail(c, DYNQ_EGRAPH, "neither scales nor sizes given");
  }
  if (dynq__shape_numel(r, odims) < 0) return dynq__op_fail(c, DYNQ_ELIMIT, "output too large");
  for (int d = 0; d < r; d++)
    if (x->dims[d] == 0 && odims[d] > 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "cannot resize empty axis %d to %lld", d,
                           (long long)odims[d]);

  size_t es = dynq__dtype_size(x->dtype);
  int64_t cur_dims[DYNQ_MAX_RANK];
  memcpy(cur_dims, x->dims, sizeof(cur_dims));
  const char *cur = x->data;
  dynq__tensor_t tmp[2];
  memset(tmp, 0, sizeof(tmp));
  int ti = 0, have = 0;
  int64_t maxlen = 1;
  for (int d = 0; d < r; d++) maxlen = odims[d] > maxlen ? odims[d] : maxlen;
  /* the output, and the per-axis tables sized by its longest axis (which
   * an empty output does not bound), within the run's limit first */
  if ((rc = dynq__op_check_bytes(c, dynq__shape_numel(r, odims), (int64_t)es, "an output")) ||
      (rc = dynq__op_check_bytes(c, maxlen, cubic ? 64 : 20, "an axis table")))
    return rc;
  int64_t *i0 = malloc((size_t)maxlen * sizeof(int64_t));
  int64_t *i1 = malloc((size_t)maxlen * sizeof(int64_t));
  float *w = malloc((size_t)maxlen * sizeof(float));
  int64_t *ci = cubic ? malloc((size_t)maxlen * 4 * sizeof(int64_t)) : NULL, *ai = NULL;
  double *cw = cubic ? malloc((size_t)maxlen * 4 * sizeof(double)) : NULL, *aw = NULL;
  rc = 0;
  if (i0 == NULL || i1 == NULL || w == NULL || (cubic && (ci == NULL || cw == NULL))) {
    rc = dynq__op_fail(c, -ENOMEM, "out of memory");
    goto done;
  }
  for (int d = 0; d < r; d++) {
    int64_t len = cur_dims[d], olen = odims[d];
    /* antialias on a shrinking axis: the stretched kernel's taps */
    int aa = c->st->resize.antialias && (linear || cubic) && scale[d] < 1.0 && olen > 0 &&
             len > 0, start = 0, nt = 0;
    if (aa) {
      /* olen >= 1 bounds 1 / scale by len (scales, sizes) or 2 len (a
       * kept aspect ratio, rounded): at most 8 len + 2 taps */
      if (aa_taps(cubic, scale[d], 8 * len + 16, &start, &nt) != 0) {
        rc = dynq__op_fail(c, DYNQ_ESHAPE, "antialias scale %g on axis %d", scale[d], d);
        goto done;
      }
      free(ai), free(aw);
      ai = NULL, aw = NULL;
      if ((rc = dynq__op_check_bytes(c, olen * nt, 16, "an antialias table"))) goto done;
      ai = malloc((size_t)(olen * nt) * sizeof(int64_t));
      aw = malloc((size_t)(olen * nt) * sizeof(double));
      if (ai == NULL || aw == NULL) {
        rc = dynq__op_fail(c, -ENOMEM, "out of memory");
        goto done;
      }
      aa_table(c->st, len, olen, scale[d], start, nt, ai, aw);
    } else if (olen > 0 && (cubic ? cubic_table(c->st, len, olen, scale[d], ci, cw)
                                  : axis_table(c->st, len, olen, scale[d], i0, i1, w))) {
      continue;
    }
    int64_t nd[DYNQ_MAX_RANK];
    memcpy(nd, cur_dims, sizeof(nd));
    nd[d] = olen;
    dynq__tensor_clear(&tmp[ti]);
    if ((rc = dynq__op_alloc(c, &tmp[ti], x->dtype, r, nd, 0))) goto done;
    int64_t outer = 1, inner = 1;
    for (int k = 0; k < d; k++) outer *= cur_dims[k];
    for (int k = d + 1; k < r; k++) inner *= cur_dims[k];
    char *dst = tmp[ti].data;
    if (aa) {
      taps_axis((const float *)cur, (float *)dst, outer, len, olen, inner, nt, ai, aw);
      inner = 0;  /* done */
    }
    if (cubic && inner > 0)
      cubic_axis((const float *)cur, (float *)dst, outer, len, olen, inner, ci, cw);
    if (!cubic && inner == 1) {  /* the last axis: element by element, no call each */
      last_axis(cur, dst, outer, len, olen, es, linear, i0, i1, w);
      inner = 0;                 /* done */
    }
    for (int64_t a = 0; a < outer && inner > 0 && !cubic; a++) {
      const char *src = cur + (size_t)(a * len * inner) * es;
      for (int64_t o = 0; o < olen; o++) {
        char *drow = dst + (size_t)((a * olen + o) * inner) * es;
        const char *r0 = src + (size_t)(i0[o] * inner) * es;
        if (!linear || w[o] == 0.0f) {
          memcpy(drow, r0, (size_t)inner * es);
          continue;
        }
        const float *p = (const float *)r0, *q = (const float *)(src + (size_t)(i1[o] * inner) * es);
        float *y = (float *)drow, b = w[o], a0 = 1.0f - b;
        for (int64_t k = 0; k < inner; k++) y[k] = a0 * p[k] + b * q[k];
      }
    }
    memcpy(cur_dims, nd, sizeof(cur_dims));
    cur = tmp[ti].data;
    have = 1;
    ti ^= 1;
  }
  if (have) {
    /* the last buffer written becomes the output */
    *out = tmp[ti ^ 1];
    memset(&tmp[ti ^ 1], 0, sizeof(tmp[0]));
  } else {
    rc = dynq__op_reshape_to(c, 0, x, r, odims, out);
  }
done:
  dynq__tensor_clear(&tmp[0]);
  dynq__tensor_clear(&tmp[1]);
  free(i0);
  free(i1);
  free(w);
  free(ci);
  free(cw);
  free(ai);
  free(aw);
  return rc;
}
