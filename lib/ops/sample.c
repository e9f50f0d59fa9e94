/*
 * Sampling at computed positions: GridSample (a spatial transformer's
 * resampling, optical flow's warp), RoiAlign and MaxRoiPool (the second
 * stage of a two-stage detector).  They read a float32 [N, C, H, W] image
 * at pixel positions which the request's data decide: every
 * coordinate is computed in double and clipped or bounds-checked before it
 * becomes an index, whatever the values (NaN, 1e30).
 *
 * GridSample (opsets 16 and 20; 2 spatial axes): grid [N, Ho, Wo, 2] holds
 * (x, y) in [-1, 1] over the image (align_corners 1: the corner pixels'
 * centres; 0: their outer edges).  Modes bilinear/linear, nearest (ties to
 * even) and bicubic/cubic (Keys, a = -0.75); padding zeros, border or
 * reflection.  As PyTorch's grid_sample (the op's definition follows it):
 * bilinear and nearest pad the coordinate and then read taps outside the
 * image as 0; bicubic reads its 16 taps from the unpadded coordinate and
 * pads each tap's coordinate.
 *
 * RoiAlign (opsets 10 and 16): rois [R, 4] (x1, y1, x2, y2) times
 * spatial_scale, minus half a pixel in half_pixel mode (opset 16's default;
 * output_half_pixel and opset 10 instead make each ROI at least 1 x 1);
 * each of the output_height x output_width bins averages (or, in max mode,
 * takes ONNX Runtime's maximum of the weighted corners of) a grid of
 * sampling_ratio^2 bilinear samples (0: ceil(ROI size / bins) per axis).
 * Samples more than a pixel outside the image count as 0.
 *
 * AffineGrid (opset 20; PyTorch's affine_grid, the grid GridSample reads):
 * theta [N, 2, 3] and size [N, C, H, W] give grid [N, H, W, 2], theta
 * [N, 3, 4] and size [N, C, D, H, W] grid [N, D, H, W, 3]; each entry is
 * theta times (x, y[, z], 1), x running over W, y over H, z over D, each
 * in [-1, 1]: the pixel centres (align_corners 0: -1 + (2 i + 1) / L;
 * 1: -1 + 2 i / (L - 1)), in double.  An axis of length 1 with
 * align_corners 1 sits at 0, as PyTorch has it (ONNX's reference takes -1
 * there and ONNX Runtime 1, neither documented).
 *
 * MaxRoiPool (opset 1; Fast R-CNN's RoI pooling, Caffe's and ONNX
 * Runtime's definition): rois [R, 5] (batch index, x1, y1, x2, y2); each
 * corner times spatial_scale is rounded (half away from zero), the ROI is
 * (y2 - y1 + 1) x (x2 - x1 + 1) pixels (at least 1 x 1), bin ph covers
 * rows [floor(ph * bin_h), ceil((ph + 1) * bin_h)) from y1 (bin_h = ROI
 * height / pooled height), clipped to the image, and takes their maximum;
 * an empty bin gives 0.  The rounding and the bin arithmetic are float32,
 * ONNX Runtime's (a boundary like 7 / 3 * 3 must round as it does); the
 * results become indices only after clipping in double, so NaN and 1e30
 * corners clip (a NaN corner empties its bins: 0).  A NaN in a bin gives
 * NaN (as MaxPool), not ONNX Runtime's order-dependent result; a bin of
 * -inf gives -inf (ONNX Runtime's starts from -FLT_MAX).  A batch index
 * that is not a whole number within [0, N) is refused (EDATA).
 */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"

/* ---- GridSample ---- */

enum { GS_LINEAR, GS_NEAREST, GS_CUBIC };       /* engine attribute "mode" */
enum { GS_ZEROS, GS_BORDER, GS_REFLECTION };    /* engine attribute "padding" */

int dynq__prep_gridsample(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                          char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->gridsample.mode = (int)dynq__node_attr_i(n, "mode", GS_LINEAR);
  st->gridsample.padding = (int)dynq__node_attr_i(n, "padding", GS_ZEROS);
  st->gridsample.align = dynq__node_attr_i(n, "align_corners", 0) != 0;
  return 0;
}

int dynq__check_gridsample(const dynq__graph_t *g, const dynq__node_t *n, char *err,
                           size_t errlen) {
  (void)g;
  int64_t m = dynq__node_attr_i(n, "mode", GS_LINEAR), p = dynq__node_attr_i(n, "padding", 0);
  DYNQ_OP_CHECK(m >= GS_LINEAR && m <= GS_CUBIC, "mode %lld: 0 (linear), 1 (nearest) or 2 "
                "(cubic) expected", (long long)m);
  DYNQ_OP_CHECK(p >= GS_ZEROS && p <= GS_REFLECTION, "padding %lld: 0 (zeros), 1 (border) or "
                "2 (reflection) expected", (long long)p);
  return 0;
}

/* ---- AffineGrid ---- */

int dynq__prep_affinegrid(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                          char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->gridsample.align = dynq__node_attr_i(n, "align_corners", 0) != 0;
  return 0;
}

int dynq__check_affinegrid(const dynq__graph_t *g, const dynq__node_t *n, char *err,
                           size_t errlen) {
  (void)g;
  int64_t a = dynq__node_attr_i(n, "align_corners", 0);
  DYNQ_OP_CHECK(a == 0 || a == 1, "align_corners %lld is not 0 or 1", (long long)a);
  return 0;
}

/* Position i of an axis of length len in [-1, 1]. */
static double ag_base(int64_t i, int64_t len, int align) {
  if (align) return len > 1 ? -1.0 + 2.0 * (double)i / (double)(len - 1) : 0.0;
  return -1.0 + (2.0 * (double)i + 1.0) / (double)len;
}

int dynq__run_affinegrid(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                         dynq__tensor_t *out) {
  const dynq__tensor_t *th = in[0];
  int rc, n = 0;
  char b1[96];
  if ((rc = dynq__op_need_present(c, th, 0)) || (rc = dynq__op_need_present(c, in[1], 1)) ||
      (rc = dynq__op_need_f32(c, th, 0)))
    return rc;
  int64_t size[5];
  if ((rc = dynq__op_read_ints(c, in[1], "size", size, 5, &n))) return rc;
  const int sp = n - 2; /* spatial axes: 2 or 3 */
  if ((n != 4 && n != 5) || th->rank != 3 || th->dims[1] != sp || th->dims[2] != sp + 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "theta %s and a size of %d values: [N, 2, 3] with "
                         "[N, C, H, W], or [N, 3, 4] with [N, C, D, H, W] expected",
                         dynq__shape_str(b1, sizeof b1, th->rank, th->dims), n);
  if (size[0] != th->dims[0])
    return dynq__op_fail(c, DYNQ_ESHAPE, "size's N %lld is not theta's %lld",
                         (long long)size[0], (long long)th->dims[0]);
  int64_t od[5] = {size[0]};
  for (int k = 0; k < sp; k++) {
    if (size[2 + k] < 0 || size[2 + k] > DYNQ_MAX_ELEMS)
      return dynq__op_fail(c, DYNQ_ESHAPE, "size %lld of spatial axis %d is out of range",
                           (long long)size[2 + k], k);
    od[1 + k] = size[2 + k];
  }
  od[1 + sp] = sp;
  if (dynq__shape_numel(sp + 2, od) < 0) return dynq__op_fail(c, DYNQ_ELIMIT, "output too large");
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, sp + 2, od, 0))) return rc;
  /* the spatial axes outermost first: (D,) H, W; coordinates (x, y[, z]) */
  const int64_t d0 = sp == 3 ? od[1] : 1, h = od[sp - 1], w = od[sp];
  const int align = c->st->gridsample.align;
  float *y = out->data;
  for (int64_t b = 0; b < od[0]; b++) {
    const float *t = (const float *)th->data + b * sp * (sp + 1);
    for (int64_t zi = 0; zi < d0; zi++) {
      double base[3] = {0, 0, sp == 3 ? ag_base(zi, d0, align) : 0};
      for (int64_t yi = 0; yi < h; yi++) {
        base[1] = ag_base(yi, h, align);
        for (int64_t xi = 0; xi < w; xi++, y += sp) {
          base[0] = ag_base(xi, w, align);
          for (int r = 0; r < sp; r++) {
            const float *row = t + r * (sp + 1);
            double v = (double)row[sp];
            for (int k = 0; k < sp; k++) v += (double)row[k] * base[k];
            y[r] = (float)v;
          }
        }
      }
      if ((rc = dynq__op_poll(c))) {
        dynq__tensor_clear(out); /* a failed op leaves no output */
        return rc;
      }
    }
  }
  return 0;
}

/* A normalized coordinate in [-1, 1] as a pixel coordinate over size. */
static double gs_unnormalize(double v, int64_t size, int align) {
  return align ? (v + 1) / 2 * (double)(size - 1) : ((v + 1) * (double)size - 1) / 2;
}

/* x reflected into [lo2 / 2, hi2 / 2] (the bounds given doubled). */
static double gs_reflect(double x, double lo2, double hi2) {
  if (lo2 == hi2) return 0;
  double lo = lo2 / 2, span = (hi2 - lo2) / 2;
  x = fabs(x - lo);
  double extra = fmod(x, span), flips = floor(x / span);
  return fmod(flips, 2) == 0 ? extra + lo : span - extra + lo;
}

static double gs_clip(double x, int64_t size) {
  return x < 0 ? 0 : x > (double)(size - 1) ? (double)(size - 1) : x;
}

/* Coordinate x over size after padding (zeros: as it is). */
static double gs_pad(double x, int64_t size, int padding, int align) {
  if (padding == GS_BORDER) return gs_clip(x, size);
  if (padding == GS_REFLECTION) {
    x = align ? gs_reflect(x, 0, 2 * (double)(size - 1))
              : gs_reflect(x, -1, 2 * (double)size - 1);
    return gs_clip(x, size);
  }
  return x;
}

/* Index of pixel (ix, iy) of an h x w plane, or -1 outside it (also for
 * NaN: every comparison fails). */
static int64_t gs_index(int64_t h, int64_t w, double ix, double iy) {
  if (!(ix >= 0 && ix <= (double)(w - 1) && iy >= 0 && iy <= (double)(h - 1))) return -1;
  return (int64_t)iy * w + (int64_t)ix;
}

/* The cubic weights (PyTorch's a = -0.75) of the 4 taps around t in [0, 1). */
static void gs_cubic(double t, double wt[4]) {
  const double d[4] = {t + 1, t, 1 - t, 2 - t};
  for (int k = 0; k < 4; k++) wt[k] = dynq__keys_cubic(d[k], -0.75);
}

/* Where one output position reads, the same for every channel: computed
 * once per block of positions, then every channel's plane is swept with
 * it (the planes in turn stay in cache; per position, the channels were
 * a plane apart).  Linear: taps at[0..3] (rows y0, y0 + 1), fractions fx,
 * fy.  Nearest: at[0].  Cubic: columns at[0..3] and rows at[4..7], as
 * indices into a row and row offsets, with weights wx, wy.  -1: outside,
 * read as 0. */
typedef struct gs_where {
  int64_t at[8];
  double fx, fy, wx[4], wy[4];
} gs_where_t;

#define GS_BLOCK 512

static void gs_locate(const float *gp, int64_t h, int64_t w, int mode, int pad, int align,
                      gs_where_t *q) {
  double ix = gs_unnormalize(gp[0], w, align), iy = gs_unnormalize(gp[1], h, align);
  memset(q, 0, sizeof(*q));  /* weights 0: a NaN position reads nothing and gives 0 */
  for (int k = 0; k < 8; k++) q->at[k] = -1;
  if (ix != ix || iy != iy) return;  /* NaN: nothing is read */
  if (mode == GS_CUBIC) {
    /* the taps around the unpadded coordinate, each padded (zeros:
     * outside stays outside) */
    double x0 = floor(ix), y0 = floor(iy);
    gs_cubic(ix - x0, q->wx);
    gs_cubic(iy - y0, q->wy);
    for (int k = 0; k < 4; k++) {
      double tx = pad == GS_ZEROS ? x0 - 1 + k : gs_pad(x0 - 1 + k, w, pad, align);
      double ty = pad == GS_ZEROS ? y0 - 1 + k : gs_pad(y0 - 1 + k, h, pad, align);
      q->at[k] = tx >= 0 && tx <= (double)(w - 1) ? (int64_t)tx : -1;
      q->at[4 + k] = ty >= 0 && ty <= (double)(h - 1) ? (int64_t)ty * w : -1;
    }
    return;
  }
  ix = gs_pad(ix, w, pad, align);
  iy = gs_pad(iy, h, pad, align);
  if (mode == GS_NEAREST) {
    q->at[0] = gs_index(h, w, nearbyint(ix), nearbyint(iy));
    return;
  }
  double x0 = floor(ix), y0 = floor(iy);
  q->fx = ix - x0;
  q->fy = iy - y0;
  q->at[0] = gs_index(h, w, x0, y0);
  q->at[1] = gs_index(h, w, x0 + 1, y0);
  q->at[2] = gs_index(h, w, x0, y0 + 1);
  q->at[3] = gs_index(h, w, x0 + 1, y0 + 1);
}

static inline double gs_read(const float *p, int64_t at) { return at < 0 ? 0 : p[at]; }

/* One channel's plane p over a block of n located positions into y. */
static void gs_sweep(const float *p, const gs_where_t *q, int64_t n, int mode, float *y) {
  for (int64_t i = 0; i < n; i++, q++) {
    if (mode == GS_NEAREST) {
      y[i] = (float)gs_read(p, q->at[0]);
    } else if (mode == GS_LINEAR) {
      double top = (1 - q->fx) * gs_read(p, q->at[0]) + q->fx * gs_read(p, q->at[1]);
      double bot = (1 - q->fx) * gs_read(p, q->at[2]) + q->fx * gs_read(p, q->at[3]);
      y[i] = (float)((1 - q->fy) * top + q->fy * bot);
    } else {
      double s = 0;
      for (int j = 0; j < 4; j++) {
        double r = 0;
        for (int k = 0; k < 4; k++)
          r += q->wx[k] * (q->at[4 + j] < 0 || q->at[k] < 0 ? 0 : p[q->at[4 + j] + q->at[k]]);
        s += q->wy[j] * r;
      }
      y[i] = (float)s;
    }
  }
}

int dynq__run_gridsample(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                         dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *grid = in[1];
  int rc;
  char b1[96], b2[96];
  if ((rc = dynq__op_need_present(c, x, 0)) || (rc = dynq__op_need_present(c, grid, 1)))
    return rc;
  if (x->dtype != DYNQ_DT_F32 || grid->dtype != DYNQ_DT_F32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "X and grid must be float32, are %s and %s",
                         dynq__dtype_name(x->dtype), dynq__dtype_name(grid->dtype));
  if (x->rank != 4 || grid->rank != 4 || grid->dims[0] != x->dims[0] || grid->dims[3] != 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "X %s and grid %s: [N, C, H, W] and [N, Ho, Wo, 2] "
                         "expected (2 spatial axes only)",
                         dynq__shape_str(b1, sizeof b1, x->rank, x->dims),
                         dynq__shape_str(b2, sizeof b2, grid->rank, grid->dims));
  const int64_t nb = x->dims[0], nc = x->dims[1], h = x->dims[2], w = x->dims[3];
  const int64_t ho = grid->dims[1], wo = grid->dims[2];
  const int64_t dims[4] = {nb, nc, ho, wo};
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, 4, dims, 0))) return rc;
  gs_where_t *q = malloc(GS_BLOCK * sizeof(*q));
  if (q == NULL) {
    dynq__tensor_clear(out);
    return dynq__op_fail(c, -ENOMEM, "out of memory");
  }
  const int mode = c->st->gridsample.mode, pad = c->st->gridsample.padding;
  const int align = c->st->gridsample.align;
  const float *px = x->data, *pg = grid->data;
  float *py = out->data;
  const int64_t plane = h * w, oplane = ho * wo;
  for (int64_t b = 0; b < nb; b++) {
    for (int64_t o0 = 0; o0 < oplane; o0 += GS_BLOCK) {
      const int64_t n = oplane - o0 < GS_BLOCK ? oplane - o0 : GS_BLOCK;
      for (int64_t i = 0; i < n; i++)
        gs_locate(pg + (b * oplane + o0 + i) * 2, h, w, mode, pad, align, &q[i]);
      for (int64_t ch = 0; ch < nc; ch++)
        gs_sweep(px + (b * nc + ch) * plane, q, n, mode, py + (b * nc + ch) * oplane + o0);
      if ((rc = dynq__op_poll(c)) != 0) {
        free(q);
        dynq__tensor_clear(out);  /* a failed op leaves no output */
        return rc;
      }
    }
  }
  free(q);
  return 0;
}

/* ---- RoiAlign ---- */

/* More samples per bin than this is refused (a ROI whose coordinates are
 * far outside any image, with sampling_ratio 0): 2^24 is a 4096 x 4096
 * grid, an adaptive 1 x 1 bin over a 4096-pixel square image. */
#define ROI_MAX_SAMPLES ((double)(1 << 24))

int dynq__prep_roialign(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                        char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->roialign.max = dynq__node_attr_i(n, "mode", 0) == 1;
  st->roialign.half_pixel = dynq__node_attr_i(n, "half_pixel", 1) != 0;
  st->roialign.oh = dynq__node_attr_i(n, "output_height", 1);
  st->roialign.ow = dynq__node_attr_i(n, "output_width", 1);
  st->roialign.ratio = dynq__node_attr_i(n, "sampling_ratio", 0);
  st->roialign.scale = dynq__node_attr_f(n, "spatial_scale", 1.0f);
  return 0;
}

int dynq__check_roialign(const dynq__graph_t *g, const dynq__node_t *n, char *err,
                         size_t errlen) {
  (void)g;
  int64_t m = dynq__node_attr_i(n, "mode", 0), oh = dynq__node_attr_i(n, "output_height", 1),
          ow = dynq__node_attr_i(n, "output_width", 1),
          sr = dynq__node_attr_i(n, "sampling_ratio", 0);
  float s = dynq__node_attr_f(n, "spatial_scale", 1.0f);
  DYNQ_OP_CHECK(m == 0 || m == 1, "mode %lld: 0 (avg) or 1 (max) expected", (long long)m);
  DYNQ_OP_CHECK(oh >= 1 && ow >= 1 && oh <= DYNQ_ROI_MAX_OUT && ow <= DYNQ_ROI_MAX_OUT,
                "output_height %lld and output_width %lld: each within [1, %d]",
                (long long)oh, (long long)ow, DYNQ_ROI_MAX_OUT);
  DYNQ_OP_CHECK(sr >= 0 && sr <= DYNQ_ROI_MAX_RATIO, "sampling_ratio %lld is not within [0, %d]",
                (long long)sr, DYNQ_ROI_MAX_RATIO);
  DYNQ_OP_CHECK(isfinite(s), "spatial_scale %g is not finite", (double)s);
  return 0;
}

/* One bilinear sample of plane p (h x w) at (y, x): its four taps and
 * weights, ONNX Runtime's rules (outside by more than a pixel: all 0). */
typedef struct roi_tap {
  int64_t pos[4];
  float wt[4];
} roi_tap_t;

static void roi_tap(int64_t h, int64_t w, double y, double x, roi_tap_t *t) {
  memset(t, 0, sizeof(*t));
  if (!(y >= -1.0 && y <= (double)h && x >= -1.0 && x <= (double)w)) return;  /* NaN too */
  if (y <= 0) y = 0;
  if (x <= 0) x = 0;
  int64_t y0 = (int64_t)y, x0 = (int64_t)x, y1, x1;
  if (y0 >= h - 1) {
    y1 = y0 = h - 1;
    y = (double)y0;
  } else {
    y1 = y0 + 1;
  }
  if (x0 >= w - 1) {
    x1 = x0 = w - 1;
    x = (double)x0;
  } else {
    x1 = x0 + 1;
  }
  double ly = y - (double)y0, lx = x - (double)x0, hy = 1 - ly, hx = 1 - lx;
  t->pos[0] = y0 * w + x0, t->pos[1] = y0 * w + x1;
  t->pos[2] = y1 * w + x0, t->pos[3] = y1 * w + x1;
  t->wt[0] = (float)(hy * hx), t->wt[1] = (float)(hy * lx);
  t->wt[2] = (float)(ly * hx), t->wt[3] = (float)(ly * lx);
}

/* A ROI in feature-map pixels: its corner, bin size and samples per bin
 * per axis (doubles: a hostile ROI may ask for any number, checked by the
 * caller before anything is sampled). */
typedef struct roi_box {
  double x1, y1, bw, bh, gw, gh;
} roi_box_t;

static void roi_box(const float *roi, double scale, double off, int half, int64_t oh, int64_t ow,
                    int64_t ratio, roi_box_t *b) {
  b->x1 = roi[0] * scale - off;
  b->y1 = roi[1] * scale - off;
  double rw = roi[2] * scale - off - b->x1, rh = roi[3] * scale - off - b->y1;
  if (!half) {
    rw = rw > 1 ? rw : 1;  /* NaN becomes 1 too */
    rh = rh > 1 ? rh : 1;
  }
  b->bw = rw / (double)ow;
  b->bh = rh / (double)oh;
  b->gw = ratio > 0 ? (double)ratio : ceil(b->bw);
  b->gh = ratio > 0 ? (double)ratio : ceil(b->bh);
}

int dynq__run_roialign(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *rois = in[1], *bi = in[2];
  int rc;
  char b1[96], b2[96], b3[96];
  if ((rc = dynq__op_need_present(c, x, 0)) || (rc = dynq__op_need_present(c, rois, 1)) ||
      (rc = dynq__op_need_present(c, bi, 2)))
    return rc;
  if (x->dtype != DYNQ_DT_F32 || rois->dtype != DYNQ_DT_F32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "X and rois must be float32, are %s and %s",
                         dynq__dtype_name(x->dtype), dynq__dtype_name(rois->dtype));
  if (bi->dtype != DYNQ_DT_I64 && bi->dtype != DYNQ_DT_I32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "batch_indices must be int64, is %s",
                         dynq__dtype_name(bi->dtype));
  if (x->rank != 4 || rois->rank != 2 || rois->dims[1] != 4 || bi->rank != 1 ||
      bi->dims[0] != rois->dims[0])
    return dynq__op_fail(c, DYNQ_ESHAPE, "X %s, rois %s and batch_indices %s: [N, C, H, W], "
                         "[R, 4] and [R] expected",
                         dynq__shape_str(b1, sizeof b1, x->rank, x->dims),
                         dynq__shape_str(b2, sizeof b2, rois->rank, rois->dims),
                         dynq__shape_str(b3, sizeof b3, bi->rank, bi->dims));
  const int64_t nb = x->dims[0], nc = x->dims[1], h = x->dims[2], w = x->dims[3];
  const int64_t nr = rois->dims[0], oh = c->st->roialign.oh, ow = c->st->roialign.ow;
  const int half = c->st->roialign.half_pixel;
  const double scale = c->st->roialign.scale, off = half ? 0.5 : 0;
  const int64_t ratio = c->st->roialign.ratio;
  const float *pr = rois->data;
  for (int64_t r = 0; r < nr; r++) {
    int64_t b = dynq__load_i(bi->data, bi->dtype, r);
    if (b < 0 || b >= nb)
      return dynq__op_fail(c, DYNQ_EDATA, "batch_indices[%lld] is %lld, outside [0, %lld)",
                           (long long)r, (long long)b, (long long)nb);
    roi_box_t bx;
    roi_box(pr + r * 4, scale, off, half, oh, ow, ratio, &bx);
    if (!(bx.gw >= 0 && bx.gh >= 0 && bx.gw * bx.gh <= ROI_MAX_SAMPLES)) /* NaN too */
      return dynq__op_fail(c, DYNQ_ELIMIT, "ROI %lld (%g, %g, %g, %g) would take %g x %g "
                           "samples per bin (at most %g in all)", (long long)r, pr[r * 4],
                           pr[r * 4 + 1], pr[r * 4 + 2], pr[r * 4 + 3], bx.gh, bx.gw,
                           ROI_MAX_SAMPLES);
  }
  const int64_t dims[4] = {nr, nc, oh, ow};
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, 4, dims, h <= 0 || w <= 0))) return rc;
  if (h <= 0 || w <= 0) return 0;  /* an empty image: every sample is 0 */
  const int max = c->st->roialign.max;
  const int64_t plane = h * w;
  const float *px = x->data;
  float *py = out->data;
  float *acc = malloc((size_t)(nc > 0 ? nc : 1) * sizeof(float));
  if (acc == NULL) {
    dynq__tensor_clear(out);
    return dynq__op_fail(c, -ENOMEM, "out of memory");
  }
  for (int64_t r = 0; r < nr; r++) {
    const float *xb = px + dynq__load_i(bi->data, bi->dtype, r) * nc * plane;
    roi_box_t bx;
    roi_box(pr + r * 4, scale, off, half, oh, ow, ratio, &bx);
    const int64_t sy = (int64_t)bx.gh, sx = (int64_t)bx.gw;
    const float count = (float)(sy * sx > 0 ? sy * sx : 1);
    for (int64_t ph = 0; ph < oh; ph++)
      for (int64_t pw = 0; pw < ow; pw++) {
        for (int64_t ch = 0; ch < nc; ch++) acc[ch] = 0;
        int first = 1;
        for (int64_t iy = 0; iy < sy; iy++) {
          double y = bx.y1 + (double)ph * bx.bh + ((double)iy + 0.5) * bx.bh / bx.gh;
          for (int64_t ix = 0; ix < sx; ix++) {
            double xx = bx.x1 + (double)pw * bx.bw + ((double)ix + 0.5) * bx.bw / bx.gw;
            roi_tap_t t;
            roi_tap(h, w, y, xx, &t);
            for (int64_t ch = 0; ch < nc; ch++) {
              const float *p = xb + ch * plane;
              if (max) {
                float v = t.wt[0] * p[t.pos[0]], v1 = t.wt[1] * p[t.pos[1]];
                float v2 = t.wt[2] * p[t.pos[2]], v3 = t.wt[3] * p[t.pos[3]];
                v = v1 > v ? v1 : v;
                v = v2 > v ? v2 : v;
                v = v3 > v ? v3 : v;
                acc[ch] = first || v > acc[ch] ? v : acc[ch];
              } else {
                acc[ch] += t.wt[0] * p[t.pos[0]] + t.wt[1] * p[t.pos[1]] +
                           t.wt[2] * p[t.pos[2]] + t.wt[3] * p[t.pos[3]];
              }
            }
            first = 0;
          }
          if ((iy & 63) == 63 && (rc = dynq__op_poll(c)) != 0) goto stopped;
        }
        float *yo = py + r * nc * oh * ow + ph * ow + pw;
        for (int64_t ch = 0; ch < nc; ch++) yo[ch * oh * ow] = max ? acc[ch] : acc[ch] / count;
      }
    if ((rc = dynq__op_poll(c)) != 0) goto stopped;
  }
  free(acc);
  return 0;

stopped:
  free(acc);
  dynq__tensor_clear(out);  /* a failed op leaves no output */
  return rc;
}

/* ---- MaxRoiPool ---- */

int dynq__prep_roipool(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                       char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->roipool.ph = dynq__node_attr_i(n, "pooled_h", 0);
  st->roipool.pw = dynq__node_attr_i(n, "pooled_w", 0);
  st->roipool.scale = dynq__node_attr_f(n, "spatial_scale", 1.0f);
  return 0;
}

int dynq__check_roipool(const dynq__graph_t *g, const dynq__node_t *n, char *err,
                        size_t errlen) {
  (void)g;
  int64_t ph = dynq__node_attr_i(n, "pooled_h", 0), pw = dynq__node_attr_i(n, "pooled_w", 0);
  float s = dynq__node_attr_f(n, "spatial_scale", 1.0f);
  DYNQ_OP_CHECK(ph >= 1 && pw >= 1 && ph <= DYNQ_ROI_MAX_OUT && pw <= DYNQ_ROI_MAX_OUT,
                "pooled_shape [%lld, %lld]: each within [1, %d]", (long long)ph, (long long)pw,
                DYNQ_ROI_MAX_OUT);
  DYNQ_OP_CHECK(isfinite(s), "spatial_scale %g is not finite", (double)s);
  return 0;
}

/* v (NaN: lo) clipped to [lo, hi], as an index. */
static int64_t roi_clip(double v, int64_t lo, int64_t hi) {
  return v > (double)lo ? (v < (double)hi ? (int64_t)v : hi) : lo;
}

/* The bins of one ROI along an axis of n pixels: [lo[k], hi[k]) for k <
 * bins, from the ROI's rounded start and end (float32, as ONNX Runtime). */
static void roipool_bins(float start, float end, int64_t bins, int64_t n, int64_t *lo,
                         int64_t *hi) {
  double size = (double)end - (double)start + 1;
  float bin = (float)(size > 1 ? size : 1) / (float)bins;  /* NaN: 1 */
  for (int64_t k = 0; k < bins; k++) {
    lo[k] = roi_clip((double)floorf((float)k * bin) + start, 0, n);
    hi[k] = roi_clip((double)ceilf((float)(k + 1) * bin) + start, 0, n);
  }
}

/* The maximum of rows [y0, y1) x columns [x0, x1) of plane p (w wide); 0
 * when empty, NaN when any is. */
static float roipool_max(const float *p, int64_t w, int64_t y0, int64_t y1, int64_t x0,
                         int64_t x1) {
  if (y1 <= y0 || x1 <= x0) return 0;
  float m = -INFINITY;
  for (int64_t y = y0; y < y1; y++)
    for (int64_t x = x0; x < x1; x++) {
      float v = p[y * w + x];
      if (v > m || v != v) m = v;
      if (m != m) return m;
    }
  return m;
}

int dynq__run_roipool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *rois = in[1];
  int rc;
  char b1[96], b2[96];
  if ((rc = dynq__op_need_present(c, x, 0)) || (rc = dynq__op_need_present(c, rois, 1)))
    return rc;
  if (x->dtype != DYNQ_DT_F32 || rois->dtype != DYNQ_DT_F32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "X and rois must be float32, are %s and %s",
                         dynq__dtype_name(x->dtype), dynq__dtype_name(rois->dtype));
  if (x->rank != 4 || rois->rank != 2 || rois->dims[1] != 5)
    return dynq__op_fail(c, DYNQ_ESHAPE, "X %s and rois %s: [N, C, H, W] and [R, 5] expected",
                         dynq__shape_str(b1, sizeof b1, x->rank, x->dims),
                         dynq__shape_str(b2, sizeof b2, rois->rank, rois->dims));
  const int64_t ph = c->st->roipool.ph, pw = c->st->roipool.pw;
  if (ph < 1 || pw < 1 || ph > DYNQ_ROI_MAX_OUT || pw > DYNQ_ROI_MAX_OUT)
    return dynq__op_fail(c, DYNQ_EGRAPH, "pooled_shape [%lld, %lld]: each within [1, %d]",
                         (long long)ph, (long long)pw, DYNQ_ROI_MAX_OUT);
  const int64_t nb = x->dims[0], nc = x->dims[1], h = x->dims[2], w = x->dims[3];
  const int64_t nr = rois->dims[0];
  const float *pr = rois->data, scale = c->st->roipool.scale;
  for (int64_t r = 0; r < nr; r++) {
    double b = pr[r * 5];
    if (!(b >= 0 && b < (double)nb && b == floor(b))) /* NaN too */
      return dynq__op_fail(c, DYNQ_EDATA, "rois[%lld, 0] (the batch index) is %g: a whole "
                           "number within [0, %lld) expected", (long long)r, b, (long long)nb);
  }
  const int64_t dims[4] = {nr, nc, ph, pw};
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, 4, dims, 0))) return rc;
  int64_t *bins = malloc((size_t)(2 * (ph + pw)) * sizeof(int64_t));
  if (bins == NULL) {
    dynq__tensor_clear(out);
    return dynq__op_fail(c, -ENOMEM, "out of memory");
  }
  int64_t *hlo = bins, *hhi = bins + ph, *wlo = bins + 2 * ph, *whi = bins + 2 * ph + pw;
  const int64_t plane = h * w, oplane = ph * pw;
  float *py = out->data;
  for (int64_t r = 0; r < nr; r++) {
    const float *roi = pr + r * 5;
    const float *img = (const float *)x->data + (int64_t)roi[0] * nc * plane;
    roipool_bins(roundf(roi[2] * scale), roundf(roi[4] * scale), ph, h, hlo, hhi);
    roipool_bins(roundf(roi[1] * scale), roundf(roi[3] * scale), pw, w, wlo, whi);
    for (int64_t ch = 0; ch < nc; ch++) {
      float *yo = py + (r * nc + ch) * oplane;
      /* a row of bins reads at most H x (W + pw) values: polled per row */
      for (int64_t i = 0; i < ph; i++) {
        for (int64_t j = 0; j < pw; j++)
          yo[i * pw + j] = roipool_max(img + ch * plane, w, hlo[i], hhi[i], wlo[j], whi[j]);
        if ((rc = dynq__op_poll(c)) != 0) {
          free(bins);
          dynq__tensor_clear(out);  /* a failed op leaves no output */
          return rc;
        }
      }
    }
  }
  free(bins);
  return 0;
}

/* ---- DeformConv ----
 *
 * Deformable convolution (opsets 19 and 22; 2-D, as ONNX's reference):
 * X [N, C, H, W], W [oC, C / group, kh, kw], offset [N, offset_group * kh
 * * kw * 2, oH, oW], optional B [oC] and mask [N, offset_group * kh * kw,
 * oH, oW].  Kernel tap (i, j) of output position (y, x) reads X at
 *   (y * stride0 - pad0 + i * dilation0 + dy, x * stride1 - pad1 + j * dilation1 + dx)
 * where (dy, dx) are offset channels ((g * kh + i) * kw + j) * 2 + 0 and
 * + 1 of the channel's offset group g (C / offset_group consecutive
 * channels share one), bilinearly (taps outside the image read 0, as
 * GridSample's zeros padding with align_corners 1, which the reference
 * samples with), times mask channel (g * kh + i) * kw + j.  oH and oW are
 * offset's, and must be what the convolution's geometry gives.
 *
 * Per image, a chunk of output positions at a time: a table of the four
 * taps' indices and weights (in double, then float) and the mask's value
 * per offset group, kernel tap and position; the chunk's columns [C/group *
 * kh * kw, chunk] per group; one FP32 GEMM with the group's weights.  The
 * weights are not quantized: the columns are a bilinear resampling the
 * request's offsets decide, not a view of the input.
 */
int dynq__check_deform(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  dynq__opstate_t st;
  dynq__prep_convt(g, n, &st, err, errlen);
  const dynq__convt_attrs_t a = st.convt;
  int64_t og = dynq__node_attr_i(n, "offset_group", 1);
  DYNQ_OP_CHECK(a.spatial == 2, "%d spatial axes (2-D DeformConv only)", a.spatial);
  DYNQ_OP_CHECK(a.group >= 1 && a.group <= 65536 && og >= 1 && og <= 65536,
                "group %lld / offset_group %lld outside [1, 65536]", (long long)a.group,
                (long long)og);
  int rc;
  if ((rc = dynq__convt_check_geometry(n, &a, err, errlen)) != 0) return rc;
  for (int ax = 0; ax < 2; ax++) {
    DYNQ_OP_CHECK(a.kernel[ax] >= 0 && a.kernel[ax] <= 65536,
                  "kernel_shape %lld on axis %d outside [0 (from W), 65536]",
                  (long long)a.kernel[ax], ax);
  }
  return 0;
}

/* Output positions per chunk: the columns of one group stay within a few
 * MiB for the widest layers (256 channels x 9 taps x 256 x 4 bytes). */
#define DEFORM_CHUNK 256

typedef struct deform_tap {
  int64_t i[4];  /* pixel indices (0 for a tap outside the image) */
  float w[4];    /* bilinear weights (0 outside) */
  float m;       /* the mask's value, 1 without one */
  uint32_t in;   /* bit k: tap k is inside the image */
} deform_tap_t;

/* Bilinear taps at (y, x) of an h x w image, and the mask's m.  Taps
 * outside the image (every tap of a position that is not finite) have
 * index 0, weight 0 and their bit clear: they must add 0, as the
 * reference's zeros padding, even where 0 times an Inf or NaN pixel
 * would be NaN (deform_gather).  The mask multiplies the sample, as the
 * reference's, so a NaN or Inf mask over no pixel still gives NaN. */
static void deform_taps(double y, double x, int64_t h, int64_t w, float m, deform_tap_t *t) {
  memset(t, 0, sizeof(*t));
  t->m = m;
  if (!(y > -1.0 && y < (double)h && x > -1.0 && x < (double)w)) return;
  double y0 = floor(y), x0 = floor(x), ly = y - y0, lx = x - x0;
  const double wt[4] = {(1 - ly) * (1 - lx), (1 - ly) * lx, ly * (1 - lx), ly * lx};
  for (int k = 0; k < 4; k++) {
    int64_t yy = (int64_t)y0 + (k >> 1), xx = (int64_t)x0 + (k & 1);
    if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
    t->i[k] = yy * w + xx;
    t->w[k] = (float)wt[k];
    t->in |= 1u << k;
  }
}

/* One column row: the samples of pc positions of one image plane.  A
 * tap outside the image loads pixel 0 with weight 0: exact while that
 * pixel is finite, so only a plane whose pixel 0 is Inf or NaN takes the
 * path that drops such taps (plane 0, an empty image, has nothing to
 * load: each sample is 0 times the mask). */
static void deform_gather(const float *img, int64_t plane, const deform_tap_t *tt, int64_t pc,
                          float *row) {
  if (plane == 0) {
    for (int64_t q = 0; q < pc; q++) row[q] = 0.0f * tt[q].m;
  } else if (isfinite(img[0])) {
    for (int64_t q = 0; q < pc; q++) {
      const deform_tap_t *p = &tt[q];
      row[q] = (p->w[0] * img[p->i[0]] + p->w[1] * img[p->i[1]] + p->w[2] * img[p->i[2]] +
                p->w[3] * img[p->i[3]]) * p->m;
    }
  } else {
    for (int64_t q = 0; q < pc; q++) {
      const deform_tap_t *p = &tt[q];
      float v[4];
      for (int k = 0; k < 4; k++) v[k] = p->in & (1u << k) ? img[p->i[k]] : 0.0f;
      row[q] = (p->w[0] * v[0] + p->w[1] * v[1] + p->w[2] * v[2] + p->w[3] * v[3]) * p->m;
    }
  }
}

int dynq__run_deform(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  const dynq__convt_attrs_t *a = &c->st->convt;
  const int nin = c->node->n_in;
  const dynq__tensor_t *x = in[0], *wt = in[1], *off = in[2];
  const dynq__tensor_t *bt = nin > 3 ? in[3] : NULL, *mt = nin > 4 ? in[4] : NULL;
  int rc;
  char s1[96], s2[96];
  for (int k = 0; k < 3; k++)
    if ((rc = dynq__op_need_present(c, in[k], k)) || (rc = dynq__op_need_f32(c, in[k], k)))
      return rc;
  if ((bt && (rc = dynq__op_need_f32(c, bt, 3))) || (mt && (rc = dynq__op_need_f32(c, mt, 4))))
    return rc;
  if (x->rank != 4 || wt->rank != 4 || off->rank != 4)
    return dynq__op_fail(c, DYNQ_ESHAPE, "X %s, W %s and offset must be 4-D (2-D DeformConv)",
                         dynq__shape_str(s1, sizeof s1, x->rank, x->dims),
                         dynq__shape_str(s2, sizeof s2, wt->rank, wt->dims));
  const int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], Wd = x->dims[3];
  const int64_t oC = wt->dims[0], Cg = wt->dims[1], kh = wt->dims[2], kw = wt->dims[3];
  const int64_t G = a->group, OG = dynq__node_attr_i(c->node, "offset_group", 1);
  if (kh > 65536 || kw > 65536) /* (kh kw) x offset_group x 2 stays far within int64 */
    return dynq__op_fail(c, DYNQ_ESHAPE, "W %s: a kernel over 65536 on an axis",
                         dynq__shape_str(s2, sizeof s2, wt->rank, wt->dims));
  if (Cg * G != C || oC % G != 0 || C % OG != 0)
    return dynq__op_fail(c, DYNQ_ESHAPE, "X %s and W %s do not fit group %lld and offset_group "
                         "%lld (C = group x W's axis 1, oC and C divisible by them)",
                         dynq__shape_str(s1, sizeof s1, x->rank, x->dims),
                         dynq__shape_str(s2, sizeof s2, wt->rank, wt->dims), (long long)G,
                         (long long)OG);
  if ((a->kernel[0] && a->kernel[0] != kh) || (a->kernel[1] && a->kernel[1] != kw))
    return dynq__op_fail(c, DYNQ_ESHAPE, "kernel_shape [%lld, %lld] differs from W %s",
                         (long long)a->kernel[0], (long long)a->kernel[1],
                         dynq__shape_str(s2, sizeof s2, wt->rank, wt->dims));
  int64_t want[2];
  for (int ax = 0; ax < 2; ax++) {
    int64_t span = (ax ? kw - 1 : kh - 1) * a->dilations[ax] + 1;
    int64_t room = (ax ? Wd : H) + a->pad_begin[ax] + a->pad_end[ax] - span;
    want[ax] = room < 0 ? 0 : room / a->strides[ax] + 1;
  }
  const int64_t kk = kh * kw, oh = off->dims[2], ow = off->dims[3], P = oh * ow;
  if (off->dims[0] != N || off->dims[1] != OG * kk * 2 || oh != want[0] || ow != want[1])
    return dynq__op_fail(c, DYNQ_ESHAPE, "offset %s, expected [%lld, %lld, %lld, %lld] (N, "
                         "offset_group x kh x kw x 2, and the output's size)",
                         dynq__shape_str(s1, sizeof s1, off->rank, off->dims), (long long)N,
                         (long long)(OG * kk * 2), (long long)want[0], (long long)want[1]);
  if (mt && (mt->rank != 4 || mt->dims[0] != N || mt->dims[1] != OG * kk || mt->dims[2] != oh ||
             mt->dims[3] != ow))
    return dynq__op_fail(c, DYNQ_ESHAPE, "mask %s, expected [%lld, %lld, %lld, %lld]",
                         dynq__shape_str(s1, sizeof s1, mt->rank, mt->dims), (long long)N,
                         (long long)(OG * kk), (long long)oh, (long long)ow);
  if (bt && (bt->rank != 1 || bt->dims[0] != oC))
    return dynq__op_fail(c, DYNQ_ESHAPE, "B %s, expected [%lld]",
                         dynq__shape_str(s1, sizeof s1, bt->rank, bt->dims), (long long)oC);
  const int64_t od[4] = {N, oC, oh, ow};
  /* Nothing to compute: and with oC >= 1, W's own element bound keeps
   * Cg x kh x kw within 2^31 below. */
  if (N == 0 || oC == 0 || P == 0) return dynq__op_alloc(c, out, DYNQ_DT_F32, 4, od, 0);
  const int64_t chunk = P < DEFORM_CHUNK ? P : DEFORM_CHUNK;
  if ((rc = dynq__op_check_bytes(c, Cg * kk * chunk, 4, "a column buffer")) ||
      (rc = dynq__op_check_bytes(c, OG * kk * chunk, (int64_t)sizeof(deform_tap_t),
                                 "a sampling table")) ||
      (rc = dynq__op_alloc(c, out, DYNQ_DT_F32, 4, od, 0)))
    return rc;
  const int64_t ocg = oC / G, cpo = C / OG, plane = H * Wd;
  float *col = malloc((size_t)(Cg * kk * chunk + 1) * sizeof(float));
  deform_tap_t *tab = malloc((size_t)(OG * kk * chunk + 1) * sizeof(deform_tap_t));
  if (col == NULL || tab == NULL) {
    free(col), free(tab);
    dynq__tensor_clear(out);
    return dynq__op_fail(c, -ENOMEM, "out of memory");
  }
  const float *X = x->data, *Wt = wt->data, *O = off->data, *M = mt ? mt->data : NULL;
  float *Y = out->data;
  for (int64_t n = 0; n < N && rc == 0; n++) {
    for (int64_t p0 = 0; p0 < P && rc == 0; p0 += chunk) {
      const int64_t pc = P - p0 < chunk ? P - p0 : chunk;
      for (int64_t g = 0; g < OG; g++)
        for (int64_t t = 0; t < kk; t++) {
          const int64_t i = t / kw, j = t % kw;
          const float *dy = O + ((n * OG + g) * kk * 2 + 2 * t) * P + p0, *dx = dy + P;
          const float *m = M ? M + ((n * OG + g) * kk + t) * P + p0 : NULL;
          deform_tap_t *tt = tab + (g * kk + t) * chunk;
          for (int64_t q = 0; q < pc; q++) {
            const int64_t py = (p0 + q) / ow, px = (p0 + q) % ow;
            double yy = (double)(py * a->strides[0] - a->pad_begin[0] + i * a->dilations[0]) +
                        (double)dy[q];
            double xx = (double)(px * a->strides[1] - a->pad_begin[1] + j * a->dilations[1]) +
                        (double)dx[q];
            deform_taps(yy, xx, H, Wd, m ? m[q] : 1.0f, &tt[q]);
          }
        }
      for (int64_t gi = 0; gi < G; gi++) {
        for (int64_t cl = 0; cl < Cg; cl++) {
          const int64_t ch = gi * Cg + cl;
          const float *img = plane > 0 ? X + (n * C + ch) * plane : NULL; /* X may have none */
          const deform_tap_t *tg = tab + (ch / cpo) * kk * chunk;
          for (int64_t t = 0; t < kk; t++)
            deform_gather(img, plane, tg + t * chunk, pc, col + (cl * kk + t) * pc);
        }
        float *yg = Y + (n * oC + gi * ocg) * P + p0;
        if (Cg * kk > 0)
          dynq__sgemm(0, 0, ocg, pc, Cg * kk, 1.0f, Wt + gi * ocg * Cg * kk, Cg * kk, col, pc,
                      0.0f, yg, P);
        for (int64_t o = 0; o < ocg; o++) {
          float b = bt ? ((const float *)bt->data)[gi * ocg + o] : 0.0f;
          float *yr = yg + o * P;
          if (Cg * kk == 0)
            for (int64_t q = 0; q < pc; q++) yr[q] = b;
          else if (bt)
            for (int64_t q = 0; q < pc; q++) yr[q] += b;
        }
      }
      rc = dynq__op_poll(c);
    }
  }
  free(col);
  free(tab);
  if (rc) dynq__tensor_clear(out); /* a failed op leaves no output */
  return rc;
}
