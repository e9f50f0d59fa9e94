/*
 * ConvTranspose 1-D, 2-D and 3-D, FP32: inputs X [N, C, ((D,) H,) W],
 * W [C, M/group, ((kd,) kh,) kw], optional B [M].  Attributes as the importer stores them, per
 * spatial axis ("strides0", "strides1", ... as Conv's), plus
 * "output_padding<a>" and, when the model gives one, "output_shape<a>"
 * (then the pads are derived from it, as ONNX defines).
 *
 * Per image and group one GEMM gives every input position's contribution
 * to every kernel tap, col [Mg * kk, H * W] = Wg^T x Xg, and col2im adds
 * the taps into their output positions (overlapping windows accumulate,
 * which a scatter of a strided kernel needs).  A 1-D op runs as 2-D with
 * a unit height, a 2-D one as 3-D with a unit depth.  With constant weights (group 1) the importer makes it
 * QConvTranspose: the same scatter after an INT8 GEMM (below).
 */
#include "ops.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "kernels/kernels.h"

static void convt_attrs(const dynq__node_t *n, dynq__convt_attrs_t *a) {
  static const char *const names[][3] = {
    {"strides0", "strides1", "strides2"}, {"dilations0", "dilations1", "dilations2"},
    {"pad_begin0", "pad_begin1", "pad_begin2"}, {"pad_end0", "pad_end1", "pad_end2"},
    {"kernel_shape0", "kernel_shape1", "kernel_shape2"},
    {"output_padding0", "output_padding1", "output_padding2"},
    {"output_shape0", "output_shape1", "output_shape2"},
  };
  memset(a, 0, sizeof(*a));
  a->has_output_shape = dynq__node_attr(n, names[6][0]) != NULL;
  for (int ax = 0; ax < 3; ax++) {
    a->strides[ax] = dynq__node_attr_i(n, names[0][ax], 1);
    a->dilations[ax] = dynq__node_attr_i(n, names[1][ax], 1);
    a->pad_begin[ax] = dynq__node_attr_i(n, names[2][ax], 0);
    a->pad_end[ax] = dynq__node_attr_i(n, names[3][ax], 0);
    a->kernel[ax] = dynq__node_attr_i(n, names[4][ax], 0);
    a->output_padding[ax] = dynq__node_attr_i(n, names[5][ax], 0);
    a->output_shape[ax] = dynq__node_attr_i(n, names[6][ax], 1);
  }
  int64_t sp = dynq__node_attr_i(n, "spatial", 0);
  a->spatial = sp < 0 || sp > 3 ? -1 : (int)sp; /* not 2^32 + 3 read as 3: refused */
  a->auto_pad = dynq__op_auto_pad(n);
  a->group = dynq__node_attr_i(n, "group", 1);
}

int dynq__prep_convt(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                     char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  convt_attrs(n, &st->convt);
  return 0;
}

/* The strides, dilations and pads of a.spatial axes (ConvTranspose's,
 * Col2Im's and DeformConv's). */
int dynq__convt_check_geometry(const dynq__node_t *n, const dynq__convt_attrs_t *a, char *err,
                               size_t errlen) {
  for (int ax = 0; ax < a->spatial; ax++) {
    DYNQ_OP_CHECK(a->strides[ax] >= 1 && a->strides[ax] <= 65536 && a->dilations[ax] >= 1 &&
                      a->dilations[ax] <= 65536,
                  "stride %lld / dilation %lld on axis %d outside [1, 65536]",
                  (long long)a->strides[ax], (long long)a->dilations[ax], ax);
    DYNQ_OP_CHECK(a->pad_begin[ax] >= 0 && a->pad_end[ax] >= 0 && a->pad_begin[ax] <= 65536 &&
                      a->pad_end[ax] <= 65536,
                  "pads on axis %d outside [0, 65536]", ax);
  }
  return 0;
}

int dynq__check_convt(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  dynq__convt_attrs_t a;
  convt_attrs(n, &a);
  DYNQ_OP_CHECK(a.spatial >= 1 && a.spatial <= 3, "%d spatial axes (1, 2 or 3 supported)",
                a.spatial);
  DYNQ_OP_CHECK(a.auto_pad != DYNQ_PAD_BAD, "auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID");
  DYNQ_OP_CHECK(a.group >= 1 && a.group <= 65536, "group %lld outside [1, 65536]",
                (long long)a.group);
  int rc;
  if ((rc = dynq__convt_check_geometry(n, &a, err, errlen)) != 0) return rc;
  for (int ax = 0; ax < a.spatial; ax++) {
    DYNQ_OP_CHECK(a.kernel[ax] >= 0 && a.kernel[ax] <= 65536,
                  "kernel_shape %lld on axis %d outside [0 (from W), 65536]",
                  (long long)a.kernel[ax], ax);
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

/* Shapes of one run (a 1-D op has ih = kh = oh = 1, 1-D and 2-D ones
 * id = kd = od = 1). */
typedef struct geom {
  int sr;
  int64_t N, C, G, Cg, Mg, M;
  int64_t ih, iw, kh, kw, oh, ow, sh, sw, dh, dw, ph, pw;
  int64_t id, kd, od, sd, dd, pd;
} geom_t;

/* From X, the weight shape [C, Mg, (kh,) kw] and the attributes; the
 * output allocated. */
static int geometry(dynq__op_ctx_t *c, const dynq__tensor_t *x, int64_t wc, int64_t Mg,
                    const int64_t *k, const dynq__tensor_t *bt, geom_t *g, dynq__tensor_t *out) {
  const dynq__convt_attrs_t *a = &c->st->convt;
  int rc;
  char s1[96];
  memset(g, 0, sizeof(*g));
  g->sr = a->spatial;
  if (x->rank != g->sr + 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input %s must have rank %d",
                         dynq__shape_str(s1, sizeof s1, x->rank, x->dims), g->sr + 2);
  g->N = x->dims[0], g->C = x->dims[1], g->G = a->group;
  if (wc != g->C || g->C % g->G != 0)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input %s has %lld channels; the weights need %lld "
                         "(divisible by group %lld)",
                         dynq__shape_str(s1, sizeof s1, x->rank, x->dims), (long long)g->C,
                         (long long)wc, (long long)g->G);
  g->Mg = Mg, g->M = Mg * g->G, g->Cg = g->C / g->G;
  g->ih = g->kh = g->oh = 1;
  g->sh = g->dh = 1;
  g->id = g->kd = g->od = g->sd = g->dd = 1;
  const int yx = g->sr - 1; /* the attribute axis of width */
  if (g->sr == 3) {
    g->id = x->dims[2], g->kd = k[0], g->sd = a->strides[0], g->dd = a->dilations[0];
    if ((rc = axis_geom(c, 0, g->id, g->kd, &g->od, &g->pd))) return rc;
  }
  if (g->sr >= 2) {
    const int ax = g->sr - 2;
    g->ih = x->dims[g->sr], g->kh = k[ax], g->sh = a->strides[ax], g->dh = a->dilations[ax];
    if ((rc = axis_geom(c, ax, g->ih, g->kh, &g->oh, &g->ph))) return rc;
  }
  g->iw = x->dims[1 + g->sr], g->kw = k[yx], g->sw = a->strides[yx], g->dw = a->dilations[yx];
  if ((rc = axis_geom(c, yx, g->iw, g->kw, &g->ow, &g->pw))) return rc;
  if (bt != NULL && (bt->dtype != DYNQ_DT_F32 || dynq__tensor_numel(bt) != g->M))
    return dynq__op_fail(c, DYNQ_ESHAPE, "bias must be float32 with %lld values", (long long)g->M);
  const int64_t hw = g->id * g->ih * g->iw, taps = g->kd * g->kh * g->kw;
  if (taps > DYNQ_MAX_ELEMS || g->Mg * taps > DYNQ_MAX_ELEMS / (hw > 0 ? hw : 1))
    return dynq__op_fail(c, DYNQ_ELIMIT, "intermediate too large");
  /* every input position's taps (col2im's source): a large kernel over a
   * small input makes this far bigger than the output */
  if ((rc = dynq__op_check_bytes(c, g->Mg * taps * (hw > 0 ? hw : 1),
                                 (int64_t)sizeof(float), "the column buffer")))
    return rc;
  int64_t od[5] = {g->N, g->M, g->oh, g->ow};
  if (g->sr == 1) od[2] = g->ow;
  if (g->sr == 3) od[2] = g->od, od[3] = g->oh, od[4] = g->ow;
  return dynq__op_alloc(c, out, DYNQ_DT_F32, g->sr + 2, od, 0);
}

/* One image and group: yg (Mg output volumes) = bias, plus every tap's
 * contribution.  Tap (m, kz, ky, kx) of input position p = (iz, iy, ix)
 * is col[(((m * kd + kz) * kh + ky) * kw + kx) * rs + p * ps] and lands on
 * output (iz*sd - pd + kz*dd, iy*sh - ph + ky*dh, ix*sw - pw + kx*dw). */
static void col2im(const geom_t *g, const float *col, int64_t rs, int64_t ps, const float *bias,
                   float *yg) {
  const int64_t OHW = g->oh * g->ow, OP = g->od * OHW, IHW = g->ih * g->iw;
  for (int64_t m = 0; m < g->Mg; m++) {
    float b0 = bias ? bias[m] : 0.0f;
    for (int64_t i = 0; i < OP; i++) yg[m * OP + i] = b0;
  }
  if (g->id * IHW == 0) return;
  for (int64_t m = 0; m < g->Mg; m++)
    for (int64_t kz = 0; kz < g->kd; kz++)
      for (int64_t ky = 0; ky < g->kh; ky++)
        for (int64_t kx = 0; kx < g->kw; kx++) {
          const float *cr = col + (size_t)((((m * g->kd + kz) * g->kh + ky) * g->kw + kx) * rs);
          float *ym = yg + (size_t)(m * OP);
          /* the ix whose ox falls inside [0, ow) */
          int64_t off = kx * g->dw - g->pw, x0 = 0, x1 = g->iw;
          if (off < 0) x0 = (-off + g->sw - 1) / g->sw;
          if (g->ow - 1 - off < 0) x1 = 0;
          else if ((g->ow - 1 - off) / g->sw + 1 < x1) x1 = (g->ow - 1 - off) / g->sw + 1;
          for (int64_t iz = 0; iz < g->id; iz++) {
            int64_t oz = iz * g->sd - g->pd + kz * g->dd;
            if (oz < 0 || oz >= g->od) continue;
            for (int64_t iy = 0; iy < g->ih; iy++) {
              int64_t oy = iy * g->sh - g->ph + ky * g->dh;
              if (oy < 0 || oy >= g->oh) continue;
              float *yr = ym + (size_t)(oz * OHW + oy * g->ow) + off;
              const float *crow = cr + (size_t)((iz * IHW + iy * g->iw) * ps);
              if (ps == 1)
                for (int64_t ix = x0; ix < x1; ix++) yr[ix * g->sw] += crow[ix];
              else
                for (int64_t ix = x0; ix < x1; ix++) yr[ix * g->sw] += crow[ix * ps];
            }
          }
        }
}

/* ---- Col2Im (opset 18): the sliding blocks of PyTorch's unfold summed
 * back into the image (fold) ----
 *
 * X [N, C x prod(block_shape), L] -> Y [N, C, image_shape...], 1 to 3
 * spatial axes: axis a has (image + pad_begin + pad_end - (dilation *
 * (block - 1) + 1)) / stride + 1 block positions, L their product; the tap
 * k of position i lands on i * stride - pad_begin + k * dilation, and
 * overlapping taps add up in float (col2im above, as ConvTranspose's). */

int dynq__check_col2im(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  dynq__convt_attrs_t a;
  convt_attrs(n, &a);
  DYNQ_OP_CHECK(a.spatial >= 1 && a.spatial <= 3, "%d spatial axes (1, 2 or 3 supported)",
                a.spatial);
  return dynq__convt_check_geometry(n, &a, err, errlen);
}

int dynq__run_col2im(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  const dynq__convt_attrs_t *a = &c->st->convt;
  int rc, ni = 0, nb = 0;
  char s1[96];
  if ((rc = dynq__op_need_present(c, x, 0)) || (rc = dynq__op_need_f32(c, x, 0))) return rc;
  int64_t img[3], blk[3];
  if ((rc = dynq__op_read_ints(c, in[1], "image_shape", img, 3, &ni)) ||
      (rc = dynq__op_read_ints(c, in[2], "block_shape", blk, 3, &nb)))
    return rc;
  const int sr = a->spatial;
  if (ni != sr || nb != sr)
    return dynq__op_fail(c, DYNQ_ESHAPE, "image_shape and block_shape have %d and %d values "
                         "for %d spatial axes", ni, nb, sr);
  if (x->rank != 3)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input %s must be [N, C x block size, L]",
                         dynq__shape_str(s1, sizeof s1, x->rank, x->dims));
  /* per axis (outermost first): image length, block, positions */
  int64_t pos[3], kk = 1, L = 1;
  for (int ax = 0; ax < sr; ax++) {
    /* the block's range first: the span then stays below 2^33 */
    const int64_t span =
        blk[ax] >= 1 && blk[ax] <= 65536 ? a->dilations[ax] * (blk[ax] - 1) + 1 : 0;
    if (img[ax] < 0 || img[ax] > DYNQ_MAX_ELEMS || span == 0 ||
        img[ax] + a->pad_begin[ax] + a->pad_end[ax] < span)
      return dynq__op_fail(c, DYNQ_ESHAPE, "axis %d: a block of %lld (dilation %lld) does not "
                           "fit an image of %lld padded by %lld + %lld", ax, (long long)blk[ax],
                           (long long)a->dilations[ax], (long long)img[ax],
                           (long long)a->pad_begin[ax], (long long)a->pad_end[ax]);
    pos[ax] = (img[ax] + a->pad_begin[ax] + a->pad_end[ax] - span) / a->strides[ax] + 1;
    if (pos[ax] > DYNQ_MAX_ELEMS / L) return dynq__op_fail(c, DYNQ_ELIMIT, "too many blocks");
    kk *= blk[ax];
    L *= pos[ax];
  }
  if (x->dims[1] % kk != 0 || x->dims[2] != L)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input %s: channels must be a multiple of the block "
                         "size %lld and L the %lld block positions",
                         dynq__shape_str(s1, sizeof s1, x->rank, x->dims), (long long)kk,
                         (long long)L);
  geom_t g;
  memset(&g, 0, sizeof(g));
  g.sr = sr, g.N = x->dims[0], g.G = 1, g.Mg = g.M = x->dims[1] / kk;
  g.ih = g.kh = g.oh = g.sh = g.dh = 1;
  g.id = g.kd = g.od = g.sd = g.dd = 1;
  /* geom_t's axes: (d,) (h,) w, the last ONNX axis being w */
  int64_t *const gi[3] = {&g.id, &g.ih, &g.iw}, *const gk[3] = {&g.kd, &g.kh, &g.kw},
                 *const go[3] = {&g.od, &g.oh, &g.ow}, *const gs[3] = {&g.sd, &g.sh, &g.sw},
                 *const gd[3] = {&g.dd, &g.dh, &g.dw}, *const gp[3] = {&g.pd, &g.ph, &g.pw};
  for (int ax = 0; ax < sr; ax++) {
    const int t = 3 - sr + ax;
    *gi[t] = pos[ax], *gk[t] = blk[ax], *go[t] = img[ax];
    *gs[t] = a->strides[ax], *gd[t] = a->dilations[ax], *gp[t] = a->pad_begin[ax];
  }
  int64_t od[5] = {g.N, g.M, img[0], img[1], img[2]};
  if (dynq__shape_numel(sr + 2, od) < 0) return dynq__op_fail(c, DYNQ_ELIMIT, "output too large");
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, sr + 2, od, 0))) return rc;
  const int64_t OP = g.od * g.oh * g.ow;
  for (int64_t n = 0; n < g.N; n++) {
    col2im(&g, (const float *)x->data + (size_t)(n * x->dims[1] * L), L, 1, NULL,
           (float *)out->data + (size_t)(n * g.M * OP));
    if ((rc = dynq__op_poll(c))) {
      dynq__tensor_clear(out); /* a failed op leaves no output */
      return rc;
    }
  }
  return 0;
}

/* FP32 body of both ops; W is [C, Mg, kd, kh, kw]. */
static int convt_f32(dynq__op_ctx_t *c, const geom_t *g, const float *X, const float *W,
                     const float *B, float *Y) {
  const int64_t kk = g->kd * g->kh * g->kw, HW = g->id * g->ih * g->iw,
                OHW = g->od * g->oh * g->ow;
  float *col = malloc((size_t)(g->Mg * kk * (HW ? HW : 1)) * sizeof(float));
  if (col == NULL) return dynq__op_fail(c, -ENOMEM, "out of memory");
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t gi = 0; gi < g->G; gi++) {
      if (HW > 0 && g->Cg > 0)
        dynq__sgemm(1, 0, g->Mg * kk, HW, g->Cg, 1.0f, W + (size_t)(gi * g->Cg * g->Mg * kk),
                    g->Mg * kk, X + (size_t)((n * g->C + gi * g->Cg) * HW), HW, 0.0f, col, HW);
      else
        memset(col, 0, (size_t)(g->Mg * kk * (HW ? HW : 1)) * sizeof(float));
      col2im(g, col, HW, 1, B ? B + gi * g->Mg : NULL, Y + (size_t)((n * g->M + gi * g->Mg) * OHW));
    }
  free(col);
  return 0;
}

int dynq__run_convt(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  const dynq__convt_attrs_t *a = &c->st->convt;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_present(c, in[1], 1)) ||
      (rc = dynq__op_need_f32(c, in[0], 0)) || (rc = dynq__op_need_f32(c, in[1], 1)))
    return rc;
  const dynq__tensor_t *x = in[0], *wt = in[1], *bt = c->node->n_in > 2 ? in[2] : NULL;
  char s2[96];
  if (wt->rank != a->spatial + 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "weights %s must have rank %d",
                         dynq__shape_str(s2, sizeof s2, wt->rank, wt->dims), a->spatial + 2);
  for (int ax = 0; ax < a->spatial; ax++)
    if (a->kernel[ax] != 0 && a->kernel[ax] != wt->dims[2 + ax])
      return dynq__op_fail(c, DYNQ_ESHAPE, "kernel_shape %lld on axis %d does not match the "
                           "weights %s", (long long)a->kernel[ax], ax,
                           dynq__shape_str(s2, sizeof s2, wt->rank, wt->dims));
  geom_t g;
  if ((rc = geometry(c, x, wt->dims[0], wt->dims[1], wt->dims + 2, bt, &g, out))) return rc;
  if ((rc = convt_f32(c, &g, x->data, wt->data, bt ? bt->data : NULL, out->data)))
    dynq__tensor_clear(out);
  return rc;
}

/*
 * QConvTranspose (the importer's form of a ConvTranspose with constant
 * weights, group 1), inputs by position:
 *   0 X      float32 [N, C, (H,) W]
 *   1 Wq     int8, W as the [K = C, N = Mg * kk] GEMM operand, packed
 *   2 colsum int32 [Mg * kk]
 *   3 wscale float32 [Mg * kk]  one scale per (output channel, tap)
 *   4 bias   float32 [Mg]  optional (-1)
 *   5 Wref   float32 [C, Mg, (kh,) kw]  optional (-1): the FP32 path
 * attributes: ConvTranspose's, "kernel_shape<a>" and "out_channels" (Mg)
 * required.  Each input position's channel vector is a GEMM row,
 * quantized on its own (the per-row rule); the INT8 GEMM gives its taps
 * [HW, Mg * kk], col2im adds them up in float.
 */
int dynq__check_qconvt(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  int rc = dynq__check_convt(g, n, err, errlen);
  if (rc) return rc;
  dynq__convt_attrs_t a;
  convt_attrs(n, &a);
  const int64_t Mg = dynq__node_attr_i(n, "out_channels", 0);
  DYNQ_OP_CHECK(a.group == 1, "group must be 1");
  DYNQ_OP_CHECK(Mg >= 1 && Mg <= (1 << 24), "out_channels %lld outside [1, 2^24]", (long long)Mg);
  int64_t kk = 1;
  for (int ax = 0; ax < a.spatial; ax++) {
    DYNQ_OP_CHECK(a.kernel[ax] >= 1, "kernel_shape%d is required", ax);
    kk *= a.kernel[ax];
  }
  const int64_t Nn = Mg * kk;
  const dynq__value_t *v[6] = {NULL};
  for (int i = 1; i < 6 && i < n->n_in; i++)
    if (n->in[i] >= 0 && g->values[n->in[i]].data) v[i] = &g->values[n->in[i]];
  DYNQ_OP_CHECK(v[2] && v[2]->dtype == DYNQ_DT_I32 && v[2]->rank == 1 && v[2]->dims[0] == Nn,
                "column sums must be a constant int32 [%lld]", (long long)Nn);
  DYNQ_OP_CHECK(v[3] && v[3]->dtype == DYNQ_DT_F32 && v[3]->rank == 1 && v[3]->dims[0] == Nn,
                "weight scales must be a constant float32 [%lld]", (long long)Nn);
  DYNQ_OP_CHECK(v[1] && v[1]->dtype == DYNQ_DT_I8 && v[1]->rank == 1 &&
                    v[1]->dims[0] % dynq__round_up(Nn, DYNQ_QGEMM_NR) == 0,
                "packed weights must be a constant int8 [round_up(%lld, 16) * round_up(C, 4)]",
                (long long)Nn);
  const int64_t kp = v[1]->dims[0] / dynq__round_up(Nn, DYNQ_QGEMM_NR);
  DYNQ_OP_CHECK(kp % DYNQ_QGEMM_KG == 0 && kp >= DYNQ_QGEMM_KG && kp <= DYNQ_QGEMM_MAX_K,
                "packed weights have an impossible depth %lld", (long long)kp);
  if (n->n_in > 4 && n->in[4] >= 0)
    DYNQ_OP_CHECK(v[4] && v[4]->dtype == DYNQ_DT_F32 && v[4]->rank == 1 && v[4]->dims[0] == Mg,
                  "bias must be a constant float32 [%lld]", (long long)Mg);
  if (n->n_in > 5 && n->in[5] >= 0) {
    int ok = v[5] && v[5]->dtype == DYNQ_DT_F32 && v[5]->rank == a.spatial + 2 &&
             v[5]->dims[1] == Mg && dynq__round_up(v[5]->dims[0], DYNQ_QGEMM_KG) == kp;
    for (int ax = 0; ok && ax < a.spatial; ax++) ok = v[5]->dims[2 + ax] == a.kernel[ax];
    DYNQ_OP_CHECK(ok, "reference weights must be a constant float32 [C, %lld, kernel...]",
                  (long long)Mg);
  }
  return 0;
}

int dynq__run_qconvt(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0)) || (rc = dynq__op_need_f32(c, in[0], 0))) return rc;
  const dynq__convt_attrs_t *a = &c->st->convt;
  const dynq__tensor_t *x = in[0], *bt = c->node->n_in > 4 ? in[4] : NULL,
                       *wref = c->node->n_in > 5 ? in[5] : NULL;
  const int64_t Mg = dynq__node_attr_i(c->node, "out_channels", 0);
  const int64_t k[3] = {a->kernel[0], a->kernel[1], a->kernel[2]};
  int64_t kk = 1;
  for (int ax = 0; ax < a->spatial; ax++) kk *= k[ax];
  const int64_t Nn = Mg * kk, kp = in[1]->dims[0] / dynq__round_up(Nn, DYNQ_QGEMM_NR);
  /* the load-time check tied kp to C: round_up(C, 4) */
  if (x->rank >= 2 && dynq__round_up(x->dims[1], DYNQ_QGEMM_KG) != kp)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input has %lld channels; the weights were packed for "
                         "%lld (rounded up to 4)", (long long)x->dims[1], (long long)kp);
  geom_t g;
  if ((rc = geometry(c, x, x->rank >= 2 ? x->dims[1] : -1, Mg, k, bt, &g, out))) return rc;
  const float *B = bt ? bt->data : NULL;
  if (c->precision == DYNQ_PRECISION_FP32) {
    if (wref == NULL) {
      dynq__tensor_clear(out);
      return dynq__op_fail(c, DYNQ_ENOREF, "model has no FP32 reference weights (quantized with --no-reference)");
    }
    if ((rc = convt_f32(c, &g, x->data, wref->data, B, out->data))) dynq__tensor_clear(out);
    return rc;
  }
  const int64_t HW = g.id * g.ih * g.iw, C = g.C, OHW = g.od * g.oh * g.ow;
  float *xt = malloc(sizeof(float) * (size_t)(HW * C + 1));
  uint8_t *A = dynq__aligned_alloc((size_t)(HW * kp) + 64);
  float *as = malloc(sizeof(float) * (size_t)(HW + 1));
  int32_t *az = malloc(sizeof(int32_t) * (size_t)(HW + 1));
  float *col = malloc(sizeof(float) * (size_t)(HW * Nn + 1));
  if (!xt || !A || !as || !az || !col) {
    rc = dynq__op_fail(c, -ENOMEM, "out of memory");
    dynq__tensor_clear(out);
    goto done;
  }
  for (int64_t n = 0; n < g.N; n++) {
    float *yn = (float *)out->data + (size_t)(n * g.M * OHW);
    if (HW == 0) {
      col2im(&g, col, 1, Nn, B, yn);
      continue;
    }
    /* the image's positions as rows of C channels */
    const float *xn = (const float *)x->data + (size_t)(n * C * HW);
    for (int64_t ch = 0; ch < C; ch++)
      for (int64_t p = 0; p < HW; p++) xt[p * C + ch] = xn[ch * HW + p];
    dynq__quantize_rows(c->kernel, HW, C, xt, (size_t)C, A, (size_t)kp, 0, as, az);
    dynq__op_note_quant(c, 0, 0, 0, as, HW);
    dynq__op_note_quant(c, HW, C, Nn, NULL, 0);
    dynq__qgemm_args_t q = {
      .M = HW, .N = Nn, .K = C,
      .A = A, .lda = (size_t)kp,
      .B = in[1]->data, .colsum = in[2]->data, .w_scale = in[3]->data,
      .a_scale = as, .a_zp = az, .bias = NULL, .act = DYNQ_ACT_NONE,
      .C = col, .ldc = (size_t)Nn, .n0 = 0, .n1 = Nn,
    };
    c->kernel->qgemm(&q);
    col2im(&g, col, 1, Nn, B, yn);
  }
  rc = 0;
done:
  free(xt);
  dynq__aligned_free(A);
  free(as);
  free(az);
  free(col);
  return rc;
}
