/*
 * ConvTranspose 1-D and 2-D, FP32: inputs X [N, C, (H,) W], W [C, M/group,
 * (kh,) kw], optional B [M].  Attributes as the importer stores them, per
 * spatial axis ("strides0", "strides1", ... as Conv's), plus
 * "output_padding<a>" and, when the model gives one, "output_shape<a>"
 * (then the pads are derived from it, as ONNX defines).
 *
 * Per image and group one GEMM gives every input position's contribution
 * to every kernel tap, col [Mg * kk, H * W] = Wg^T x Xg, and col2im adds
 * the taps into their output positions (overlapping windows accumulate,
 * which a scatter of a strided kernel needs).  A 1-D op runs as 2-D with
 * a unit height.
 */
#include "ops.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"

static void convt_attrs(const dynq__node_t *n, dynq__convt_attrs_t *a) {
  static const char *const names[][2] = {
    {"strides0", "strides1"}, {"dilations0", "dilations1"}, {"pad_begin0", "pad_begin1"},
    {"pad_end0", "pad_end1"}, {"kernel_shape0", "kernel_shape1"},
    {"output_padding0", "output_padding1"}, {"output_shape0", "output_shape1"},
  };
  memset(a, 0, sizeof(*a));
  a->has_output_shape = dynq__node_attr(n, names[6][0]) != NULL;
  for (int ax = 0; ax < 2; ax++) {
    a->strides[ax] = dynq__node_attr_i(n, names[0][ax], 1);
    a->dilations[ax] = dynq__node_attr_i(n, names[1][ax], 1);
    a->pad_begin[ax] = dynq__node_attr_i(n, names[2][ax], 0);
    a->pad_end[ax] = dynq__node_attr_i(n, names[3][ax], 0);
    a->kernel[ax] = dynq__node_attr_i(n, names[4][ax], 0);
    a->output_padding[ax] = dynq__node_attr_i(n, names[5][ax], 0);
    a->output_shape[ax] = dynq__node_attr_i(n, names[6][ax], 1);
  }
  a->spatial = (int)dynq__node_attr_i(n, "spatial", 0);
  a->auto_pad = dynq__op_auto_pad(n);
  a->group = dynq__node_attr_i(n, "group", 1);
}

int dynq__prep_convt(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                     char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  convt_attrs(n, &st->convt);
  return 0;
}

int dynq__check_convt(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  dynq__convt_attrs_t a;
  convt_attrs(n, &a);
  DYNQ_OP_CHECK(a.spatial == 1 || a.spatial == 2, "%d spatial axes (1 or 2 supported)",
                a.spatial);
  DYNQ_OP_CHECK(a.auto_pad != DYNQ_PAD_BAD, "auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID");
  DYNQ_OP_CHECK(a.group >= 1 && a.group <= 65536, "group %lld outside [1, 65536]",
                (long long)a.group);
  for (int ax = 0; ax < a.spatial; ax++) {
    DYNQ_OP_CHECK(a.strides[ax] >= 1 && a.strides[ax] <= 65536 && a.dilations[ax] >= 1 &&
                      a.dilations[ax] <= 65536,
                  "stride %lld / dilation %lld on axis %d outside [1, 65536]",
                  (long long)a.strides[ax], (long long)a.dilations[ax], ax);
    DYNQ_OP_CHECK(a.pad_begin[ax] >= 0 && a.pad_end[ax] >= 0 && a.pad_begin[ax] <= 65536 &&
                      a.pad_end[ax] <= 65536,
                  "pads on axis %d outside [0, 65536]", ax);
    DYNQ_OP_CHECK(a.kernel[ax] >= 0 && a.kernel[ax] <= 65536,
                  "kernel_shape %lld on axis %d outside [1, 65536]", (long long)a.kernel[ax], ax);
    /* ONNX: output_padding below the stride or the dilation */
    DYNQ_OP_CHECK(a.output_padding[ax] >= 0 &&
                      (a.output_padding[ax] < a.strides[ax] || a.output_padding[ax] < a.dilations[ax]),
                  "output_padding %lld on axis %d must be below the stride or the dilation",
                  (long long)a.output_padding[ax], ax);
    DYNQ_OP_CHECK(!a.has_output_shape || (a.output_shape[ax] >= 0 && a.output_shape[ax] <= DYNQ_MAX_ELEMS),
                  "output_shape %lld on axis %d out of range", (long long)a.output_shape[ax], ax);
  }
  return 0;
}

/* One spatial axis: output length and begin pad. */
static int axis_geom(dynq__op_ctx_t *c, int ax, int64_t in, int64_t k, int64_t *ret_out,
                     int64_t *ret_pb) {
  const dynq__convt_attrs_t *a = &c->st->convt;
  int64_t s = a->strides[ax], d = a->dilations[ax], op = a->output_padding[ax];
  int64_t full = s * (in - 1) + op + (k - 1) * d + 1; /* the output before any padding */
  int64_t out, pb;
  if (a->has_output_shape || a->auto_pad == DYNQ_PAD_SAME_UPPER || a->auto_pad == DYNQ_PAD_SAME_LOWER) {
    out = a->has_output_shape ? a->output_shape[ax] : in * s;
    int64_t total = full - out;
    if (total < 0) total = 0; /* the extra positions get only the bias */
    /* the odd pad goes to the start for SAME_LOWER only (what ONNX's
     * node tests expect: test_convtranspose_autopad_same) */
    pb = a->auto_pad == DYNQ_PAD_SAME_LOWER ? total - total / 2 : total / 2;
  } else if (a->auto_pad == DYNQ_PAD_VALID) {
    out = full;
    pb = 0;
  } else {
    out = full - a->pad_begin[ax] - a->pad_end[ax];
    pb = a->pad_begin[ax];
  }
  if (in < 1 || out < 0 || out > DYNQ_MAX_ELEMS)
    return dynq__op_fail(c, DYNQ_ESHAPE, "spatial axis %d: input length %lld gives output "
                         "length %lld", ax, (long long)in, (long long)out);
  *ret_out = out;
  *ret_pb = pb;
  return 0;
}

int dynq__run_convt(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  const dynq__convt_attrs_t *a = &c->st->convt;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1)) ||
      (rc = dynq__op_need_f32(c, in[0], 0)) || (rc = dynq__op_need_f32(c, in[1], 1)))
    return rc;
  const dynq__tensor_t *x = in[0], *wt = in[1], *bt = c->node->n_in > 2 ? in[2] : NULL;
  const int sr = a->spatial;
  char s1[96], s2[96];
  if (x->rank != sr + 2 || wt->rank != sr + 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input %s and weights %s must have rank %d",
                         dynq__shape_str(s1, sizeof s1, x->rank, x->dims),
                         dynq__shape_str(s2, sizeof s2, wt->rank, wt->dims), sr + 2);
  const int64_t N = x->dims[0], C = x->dims[1], G = a->group;
  if (wt->dims[0] != C || C % G != 0)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input %s has %lld channels; weights %s need %lld "
                         "(divisible by group %lld)",
                         dynq__shape_str(s1, sizeof s1, x->rank, x->dims), (long long)C,
                         dynq__shape_str(s2, sizeof s2, wt->rank, wt->dims),
                         (long long)wt->dims[0], (long long)G);
  const int64_t Mg = wt->dims[1], M = Mg * G, Cg = C / G;
  int64_t ih = 1, iw, kh = 1, kw, oh = 1, ow, ph = 0, pw = 0;
  int64_t sh = a->strides[0], dh = a->dilations[0], sw, dw;
  if (sr == 2) {
    ih = x->dims[2], iw = x->dims[3], kh = wt->dims[2], kw = wt->dims[3];
    sw = a->strides[1], dw = a->dilations[1];
  } else {
    iw = x->dims[2], kw = wt->dims[2], sw = sh, dw = dh, sh = dh = 1;
  }
  for (int ax = 0; ax < sr; ax++)
    if (a->kernel[ax] != 0 && a->kernel[ax] != wt->dims[2 + ax])
      return dynq__op_fail(c, DYNQ_ESHAPE, "kernel_shape %lld on axis %d does not match the "
                           "weights %s", (long long)a->kernel[ax], ax,
                           dynq__shape_str(s2, sizeof s2, wt->rank, wt->dims));
  if (sr == 2) {
    if ((rc = axis_geom(c, 0, ih, kh, &oh, &ph)) || (rc = axis_geom(c, 1, iw, kw, &ow, &pw)))
      return rc;
  } else if ((rc = axis_geom(c, 0, iw, kw, &ow, &pw))) {
    return rc;
  }
  if (bt != NULL && (bt->dtype != DYNQ_DT_F32 || dynq__tensor_numel(bt) != M))
    return dynq__op_fail(c, DYNQ_ESHAPE, "bias must be float32 with %lld values", (long long)M);
  int64_t od[4] = {N, M, oh, ow};
  if (sr == 1) od[2] = ow;
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, sr + 2, od, 0))) return rc;
  const int64_t kk = kh * kw, HW = ih * iw, OHW = oh * ow;
  if (Mg * kk > DYNQ_MAX_ELEMS / (HW ? HW : 1))
    return dynq__op_fail(c, DYNQ_ELIMIT, "intermediate too large");
  float *col = malloc((size_t)(Mg * kk * (HW ? HW : 1)) * sizeof(float));
  if (col == NULL) return dynq__op_fail(c, -ENOMEM, "out of memory");
  const float *X = x->data, *W = wt->data, *B = bt ? bt->data : NULL;
  float *Y = out->data;
  for (int64_t n = 0; n < N; n++)
    for (int64_t g = 0; g < G; g++) {
      float *yg = Y + (size_t)((n * M + g * Mg) * OHW);
      for (int64_t m = 0; m < Mg; m++) {
        float b0 = B ? B[g * Mg + m] : 0.0f;
        for (int64_t i = 0; i < OHW; i++) yg[m * OHW + i] = b0;
      }
      if (HW == 0 || Cg == 0) continue;
      dynq__sgemm(1, 0, Mg * kk, HW, Cg, 1.0f, W + (size_t)(g * Cg * Mg * kk), Mg * kk,
                  X + (size_t)((n * C + g * Cg) * HW), HW, 0.0f, col, HW);
      /* col2im: tap (m, ky, kx) of input (iy, ix) lands on
       * (iy*sh - ph + ky*dh, ix*sw - pw + kx*dw) */
      for (int64_t m = 0; m < Mg; m++)
        for (int64_t ky = 0; ky < kh; ky++)
          for (int64_t kx = 0; kx < kw; kx++) {
            const float *cr = col + (size_t)(((m * kh + ky) * kw + kx) * HW);
            float *ym = yg + (size_t)(m * OHW);
            /* ix range whose ox falls inside [0, ow) */
            int64_t off = kx * dw - pw, x0 = 0, x1 = iw;
            if (off < 0) x0 = (-off + sw - 1) / sw;
            if (ow - 1 - off < 0) x1 = 0;
            else if ((ow - 1 - off) / sw + 1 < x1) x1 = (ow - 1 - off) / sw + 1;
            for (int64_t iy = 0; iy < ih; iy++) {
              int64_t oy = iy * sh - ph + ky * dh;
              if (oy < 0 || oy >= oh) continue;
              float *yr = ym + (size_t)(oy * ow);
              const float *crow = cr + (size_t)(iy * iw);
              for (int64_t ix = x0; ix < x1; ix++) yr[ix * sw + off] += crow[ix];
            }
          }
    }
  free(col);
  return 0;
}
