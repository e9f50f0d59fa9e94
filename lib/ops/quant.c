/*
 * ONNX's own quantization ops, for models that arrive already quantized:
 * QuantizeLinear and DequantizeLinear (QDQ graphs, as ONNX Runtime's
 * quantize_static writes them) and DynamicQuantizeLinear (quantize_dynamic's
 * activation step).  They compute exactly what ONNX defines, so a model
 * runs as it would in any runtime: a DequantizeLinear of a constant int8
 * weight is folded at import into a float32 constant, which the importer
 * then quantizes per channel like any other weight; Q -> DQ pairs on
 * activations run as the round trip they are.
 *
 * Rounding is to nearest, ties to even (ONNX's rule); saturation to the
 * output type's range.  A scale is a scalar (per tensor) or 1-D along
 * `axis` (per channel, opset 13); zero points have the scale's shape and
 * give the quantized dtype (uint8 when absent).
 */
#include "ops.h"

#include <math.h>
#include <stdio.h>

#include "dynq/errors.h"

int dynq__prep_qaxis(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                     char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->axis.axis = dynq__node_attr_i(n, "axis", 1);
  return 0;
}

/* Scale and zero point against x: per tensor (one value) or per channel
 * along the node's axis.  Sets the channel count and the stride between
 * channels (values of x per channel step). */
static int qparams_geom(dynq__op_ctx_t *c, const dynq__tensor_t *x, const dynq__tensor_t *s,
                        const dynq__tensor_t *zp, int64_t *ret_nch, int64_t *ret_inner) {
  int rc;
  char b1[96], b2[96];
  if ((rc = dynq__op_need_f32(c, s, 1))) return rc;
  int64_t ns = dynq__tensor_numel(s);
  if (zp != NULL) {
    if (zp->dtype != DYNQ_DT_U8 && zp->dtype != DYNQ_DT_I8 && zp->dtype != DYNQ_DT_I32)
      return dynq__op_fail(c, DYNQ_EDTYPE, "zero point must be uint8, int8 or int32, is %s",
                           dynq__dtype_name(zp->dtype));
    if (dynq__tensor_numel(zp) != ns || zp->rank != s->rank)
      return dynq__op_fail(c, DYNQ_ESHAPE, "zero point has shape %s, the scale %s (they must "
                           "agree)", dynq__shape_str(b1, sizeof b1, zp->rank, zp->dims),
                           dynq__shape_str(b2, sizeof b2, s->rank, s->dims));
  }
  if (s->rank == 0 || (s->rank == 1 && ns == 1)) {
    *ret_nch = 1;
    *ret_inner = dynq__tensor_numel(x);
    return 0;
  }
  int ax;
  if (s->rank != 1)
    return dynq__op_fail(c, DYNQ_EUNSUPPORTED, "scale has shape %s: a scalar or 1-D per-axis "
                         "scale is supported (not blocked quantization)",
                         dynq__shape_str(b1, sizeof b1, s->rank, s->dims));
  if ((rc = dynq__op_norm_axis(c, c->st->axis.axis, x->rank, 0, &ax))) return rc;
  if (x->dims[ax] != ns)
    return dynq__op_fail(c, DYNQ_ESHAPE, "scale has %lld values but axis %d of the input %s "
                         "has %lld", (long long)ns, ax,
                         dynq__shape_str(b1, sizeof b1, x->rank, x->dims),
                         (long long)x->dims[ax]);
  int64_t inner = 1;
  for (int d = ax + 1; d < x->rank; d++) inner *= x->dims[d];
  *ret_nch = ns;
  *ret_inner = inner;
  return 0;
}

static void qrange(dynq_dtype_t dt, float *lo, float *hi) {
  if (dt == DYNQ_DT_I8) *lo = -128.0f, *hi = 127.0f;
  else if (dt == DYNQ_DT_I32) *lo = -2147483648.0f, *hi = 2147483520.0f; /* largest float < 2^31 */
  else *lo = 0.0f, *hi = 255.0f;
}

int dynq__run_quantize_linear(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                              dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *s = in[1], *zp = c->node->n_in > 2 ? in[2] : NULL;
  int rc;
  int64_t nch, inner;
  if ((rc = dynq__op_need_f32(c, x, 0))) return rc;
  if ((rc = dynq__op_need_present(c, s, 1))) return rc;
  if ((rc = qparams_geom(c, x, s, zp, &nch, &inner))) return rc;
  dynq_dtype_t dt = zp != NULL ? zp->dtype : DYNQ_DT_U8;
  if ((rc = dynq__op_alloc(c, out, dt, x->rank, x->dims, 0))) return rc;
  float lo, hi;
  qrange(dt, &lo, &hi);
  const float *px = x->data, *ps = s->data;
  int64_t n = dynq__tensor_numel(x);
  for (int64_t i = 0; i < n; i++) {
    int64_t ch = nch == 1 ? 0 : (i / inner) % nch;
    float z = zp != NULL ? (float)dynq__load_i(zp->data, dt, ch) : 0.0f;
    float q = nearbyintf(px[i] / ps[ch]) + z; /* the default rounding: ties to even */
    if (!(q >= lo)) q = q != q ? z : lo;      /* NaN: the zero point */
    if (q > hi) q = hi;
    dynq__store_i(out->data, dt, i, (int64_t)q);
  }
  return 0;
}

int dynq__run_dequantize_linear(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                                dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *s = in[1], *zp = c->node->n_in > 2 ? in[2] : NULL;
  int rc;
  int64_t nch, inner;
  if ((rc = dynq__op_need_present(c, x, 0)) || (rc = dynq__op_need_present(c, s, 1))) return rc;
  if (x->dtype != DYNQ_DT_U8 && x->dtype != DYNQ_DT_I8 && x->dtype != DYNQ_DT_I32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "input must be uint8, int8 or int32, is %s",
                         dynq__dtype_name(x->dtype));
  if ((rc = qparams_geom(c, x, s, zp, &nch, &inner))) return rc;
  if (zp != NULL && zp->dtype != x->dtype)
    return dynq__op_fail(c, DYNQ_EDTYPE, "zero point is %s, the input %s (they must agree)",
                         dynq__dtype_name(zp->dtype), dynq__dtype_name(x->dtype));
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, x->rank, x->dims, 0))) return rc;
  const float *ps = s->data;
  float *py = out->data;
  int64_t n = dynq__tensor_numel(x);
  for (int64_t i = 0; i < n; i++) {
    int64_t ch = nch == 1 ? 0 : (i / inner) % nch;
    int64_t z = zp != NULL ? dynq__load_i(zp->data, zp->dtype, ch) : 0;
    py[i] = (float)(dynq__load_i(x->data, x->dtype, i) - z) * ps[ch];
  }
  return 0;
}

/* y = saturate(round(x / scale) + zp) over uint8 with the range of x
 * widened to include 0: scale = (max - min) / 255, zp = round(-min / scale)
 * (ONNX's definition).  An all-zero input gets scale 0 and zp 0, and y 0
 * (ONNX leaves that case open; ONNX Runtime does the same). */
int dynq__run_dynamic_quantize_linear(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                                      dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  int rc;
  if ((rc = dynq__op_need_f32(c, x, 0))) return rc;
  if ((rc = dynq__op_alloc(c, &out[0], DYNQ_DT_U8, x->rank, x->dims, 0)) ||
      (rc = dynq__op_alloc(c, &out[1], DYNQ_DT_F32, 0, NULL, 0)) ||
      (rc = dynq__op_alloc(c, &out[2], DYNQ_DT_U8, 0, NULL, 0)))
    return rc;
  const float *px = x->data;
  int64_t n = dynq__tensor_numel(x);
  float mn = 0.0f, mx = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    if (px[i] < mn) mn = px[i];
    if (px[i] > mx) mx = px[i];
    if (px[i] != px[i])
      return dynq__op_fail(c, DYNQ_ENUMERIC, "input holds NaN at element %lld (no range to "
                           "quantize over)", (long long)i);
  }
  if (isinf(mn) || isinf(mx))
    return dynq__op_fail(c, DYNQ_ENUMERIC, "input holds an infinity (no range to quantize over)");
  float scale = (mx - mn) / 255.0f, zpf = 0.0f;
  if (scale > 0.0f) {
    zpf = nearbyintf(-mn / scale);
    if (zpf < 0.0f) zpf = 0.0f;
    if (zpf > 255.0f) zpf = 255.0f;
  }
  uint8_t *py = out[0].data;
  for (int64_t i = 0; i < n; i++) {
    float q = scale > 0.0f ? nearbyintf(px[i] / scale) + zpf : 0.0f;
    py[i] = (uint8_t)(q < 0.0f ? 0.0f : q > 255.0f ? 255.0f : q);
  }
  *(float *)out[1].data = scale;
  *(uint8_t *)out[2].data = (uint8_t)zpf;
  return 0;
}
