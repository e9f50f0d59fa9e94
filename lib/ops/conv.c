/*
 * Conv 1-D, 2-D and 3-D, FP32 and dynamically quantized (inputs in rnn.h).
 *
 * Both go through im2col with one row per output position (its patch).
 * FP32: per image and group, the patches as rows [P, C/g * kernel] and one
 * OpenBLAS GEMM, W x patches^T, straight into NCHW.  INT8: each patch is
 * quantized on its own (an im2col row is a GEMM row: the per-row rule of
 * docs/NUMERICS.md; padding is 0.0), or with "per_tensor" the image once
 * as a whole and the u8 values gathered (padding reads as the zero point,
 * exactly 0.0); the INT8 kernel computes [P, M/g], transposed into NCHW.
 * A 1-D conv runs as a 2-D one with a unit height.  A 3-D conv (video,
 * volumes) adds a depth axis (id, kd, od; a unit one for 1-D and 2-D) and
 * takes the generic im2col paths: patches in W's (ci, z, y, x) order from
 * a zero-padded copy of the volume (gather_padded3), or value by value
 * when that copy would be out of proportion; no depthwise row kernel.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_sym.h"
#include "dynq/errors.h"
#include "kernels/convk.h"
#include "rnn.h"
#include "vmath.h"

/* Geometry with the spatial axes as (depth,) height, width; 1-D has
 * height 1, 1-D and 2-D depth 1.  oh and ih of a 3-D conv are per depth
 * slice: the code that walks positions by (oy, ox) is 2-D only. */
typedef struct geom {
  int sr;                       /* spatial rank of the op: 1, 2 or 3 */
  int64_t N, C, M, G, Cg, Mg;
  int64_t ih, iw, kh, kw, oh, ow;
  int64_t sh, sw, dh, dw, ph, pw; /* strides, dilations, begin pads */
  int64_t id, kd, od, sd, dd, pd; /* the depth axis (3-D) */
  int64_t kk;                   /* Cg * kd * kh * kw: the GEMM depth */
} geom_t;

int dynq__op_auto_pad(const dynq__node_t *n) {
  const dynq__attr_t *a = dynq__node_attr(n, "auto_pad");
  if (a == NULL) return DYNQ_PAD_NOTSET;
  if (a->type != DYNQ_ATTR_STRING || a->s == NULL) return DYNQ_PAD_BAD;
  if (strcmp(a->s, "NOTSET") == 0 || a->s[0] == 0) return DYNQ_PAD_NOTSET;
  if (strcmp(a->s, "SAME_UPPER") == 0) return DYNQ_PAD_SAME_UPPER;
  if (strcmp(a->s, "SAME_LOWER") == 0) return DYNQ_PAD_SAME_LOWER;
  if (strcmp(a->s, "VALID") == 0) return DYNQ_PAD_VALID;
  return DYNQ_PAD_BAD;
}

/* The attributes as the importer stores them ("<base><axis>" per
 * spatial axis), parsed once. */
static void conv_attrs(const dynq__node_t *n, dynq__conv_attrs_t *a) {
  static const char *const names[][3] = {
    {"strides0", "strides1", "strides2"}, {"dilations0", "dilations1", "dilations2"},
    {"pad_begin0", "pad_begin1", "pad_begin2"}, {"pad_end0", "pad_end1", "pad_end2"},
    {"kernel_shape0", "kernel_shape1", "kernel_shape2"},
  };
  for (int ax = 0; ax < 3; ax++) {
    a->strides[ax] = dynq__node_attr_i(n, names[0][ax], 1);
    a->dilations[ax] = dynq__node_attr_i(n, names[1][ax], 1);
    a->pad_begin[ax] = dynq__node_attr_i(n, names[2][ax], 0);
    a->pad_end[ax] = dynq__node_attr_i(n, names[3][ax], 0);
  }
  a->kernel[0] = dynq__node_attr_i(n, names[4][0], 0);
  a->kernel[1] = dynq__node_attr_i(n, names[4][1], 1);
  a->kernel[2] = dynq__node_attr_i(n, names[4][2], 1);
  a->auto_pad = dynq__op_auto_pad(n);
  a->group = dynq__node_attr_i(n, "group", 1);
  a->spatial = (int)dynq__node_attr_i(n, "spatial", 0);
  a->in_channels = dynq__node_attr_i(n, "in_channels", 0);
  a->out_channels = dynq__node_attr_i(n, "out_channels", 0);
  a->per_tensor = dynq__node_attr_i(n, "per_tensor", 0) != 0;
  a->has_sym_split = dynq__node_attr(n, "sym_split") != NULL;
  a->sym_split = dynq__node_attr_i(n, "sym_split", -1);
  a->has_pre = dynq__node_attr(n, "pre_mul") != NULL || dynq__node_attr(n, "pre_add") != NULL;
  a->pre_mul = dynq__node_attr_f(n, "pre_mul", 1.0f);
  a->pre_add = dynq__node_attr_f(n, "pre_add", 0.0f);
  a->has_post = dynq__node_attr(n, "post_mul") != NULL || dynq__node_attr(n, "post_add") != NULL;
  a->post_mul = dynq__node_attr_f(n, "post_mul", 1.0f);
  a->post_add = dynq__node_attr_f(n, "post_add", 0.0f);
  a->act = (int)dynq__node_attr_i(n, "act", DYNQ_CONV_ACT_NONE);
  a->act_a = dynq__node_attr_f(n, "act_a", 0.0f);
  a->act_b = dynq__node_attr_f(n, "act_b", 0.0f);
}

/* The fused epilogue (see dynq__conv_attrs_t) in the conv kernels' terms
 * (kernels/convk.h, which performs each step as the op it replaces does:
 * Mul then Add rounded apart, Clip's compares, HardSigmoid/HardSwish's
 * alpha x + beta clamp, so a fused graph gives the unfused one's bits);
 * 0 when there is none, or it is a sigmoid, which stays here with vmath's
 * scalar sigmoid. */
static int epi_spec(const dynq__conv_attrs_t *at, dynq__conv_epi_t *e) {
  static const int acts[DYNQ_CONV_ACT__COUNT] = {
    [DYNQ_CONV_ACT_NONE] = DYNQ_EPI_NONE, [DYNQ_CONV_ACT_RELU] = DYNQ_EPI_RELU,
    [DYNQ_CONV_ACT_CLIP] = DYNQ_EPI_CLIP, [DYNQ_CONV_ACT_HARDSIGMOID] = DYNQ_EPI_HARDSIGMOID,
    [DYNQ_CONV_ACT_HARDSWISH] = DYNQ_EPI_HARDSWISH,
  };
  const int swish = at->act == DYNQ_CONV_ACT_HARDSWISH;
  if (at->act == DYNQ_CONV_ACT_SIGMOID || at->act < 0 || at->act >= DYNQ_CONV_ACT__COUNT ||
      !(at->has_pre || at->has_post || at->act != DYNQ_CONV_ACT_NONE))
    return 0;
  *e = (dynq__conv_epi_t){
    .act = acts[at->act], .pre = at->has_pre, .post = at->has_post,
    .pm = at->pre_mul, .pa = at->pre_add, .qm = at->post_mul, .qa = at->post_add,
    .lo = at->act_a, .hi = at->act_b,
    .al = swish ? 1.0f / 6.0f : at->act_a, .be = swish ? 0.5f : at->act_b,
  };
  return 1;
}

/* A sigmoid epilogue: one plain loop per combination of the affine steps. */
#define EPI_PRE(v) (v = v * pm, v = v + pa)
#define EPI_POST(v) (v = v * qm, v = v + qa)
static void epi_sigmoid(const dynq__conv_attrs_t *at, float *restrict y, int64_t n) {
  const float pm = at->pre_mul, pa = at->pre_add, qm = at->post_mul, qa = at->post_add;
  for (int64_t i = 0; i < n; i++) {
    float v = y[i];
    if (at->has_pre) EPI_PRE(v);
    v = dynq_vsigmoid(v);
    if (at->has_post) EPI_POST(v);
    y[i] = v;
  }
}

/* The fused epilogue on n outputs in place. */
static void conv_epi(const dynq__conv_kernel_t *k, const dynq__conv_attrs_t *at,
                     float *restrict y, int64_t n) {
  dynq__conv_epi_t e;
  if (epi_spec(at, &e)) k->epi(&e, y, n);
  else if (at->act == DYNQ_CONV_ACT_SIGMOID) epi_sigmoid(at, y, n);
}

static int conv_has_epi(const dynq__conv_attrs_t *at) {
  return at->has_pre || at->has_post || at->act != DYNQ_CONV_ACT_NONE;
}

/* One spatial axis: output size and begin pad, or an error message. */
static int axis_out(dynq__op_ctx_t *c, int a, int64_t in, int64_t k, int64_t *ret_out,
                    int64_t *ret_pb, int64_t *ret_s, int64_t *ret_d) {
  const dynq__conv_attrs_t *at = &c->st->conv;
  int64_t s = at->strides[a], d = at->dilations[a];
  int64_t pb = at->pad_begin[a], pe = at->pad_end[a];
  int ap = at->auto_pad;
  if (s < 1 || s > 65536 || d < 1 || d > 65536)
    return dynq__op_fail(c, DYNQ_EGRAPH, "axis %d: stride %lld / dilation %lld outside [1, 65536]",
                         a, (long long)s, (long long)d);
  if (pb < 0 || pe < 0 || pb > 65536 || pe > 65536)
    return dynq__op_fail(c, DYNQ_EGRAPH, "axis %d: pads %lld, %lld outside [0, 65536]", a,
                         (long long)pb, (long long)pe);
  int64_t span = d * (k - 1) + 1, out;
  if (ap == DYNQ_PAD_SAME_UPPER || ap == DYNQ_PAD_SAME_LOWER) {
    out = (in + s - 1) / s;
    int64_t tot = (out - 1) * s + span - in;
    if (tot < 0) tot = 0;
    pb = ap == DYNQ_PAD_SAME_UPPER ? tot / 2 : tot - tot / 2;
  } else {
    if (ap == DYNQ_PAD_VALID) pb = pe = 0;
    int64_t room = in + pb + pe - span;
    if (room < 0)
      return dynq__op_fail(c, DYNQ_ESHAPE, "axis %d: input size %lld (+%lld padding) is smaller than the dilated kernel %lld",
                           a, (long long)in, (long long)(pb + pe), (long long)span);
    out = room / s + 1;
  }
  *ret_out = out;
  *ret_pb = pb;
  *ret_s = s;
  *ret_d = d;
  return 0;
}

/* Shapes from X, the weight shape (M, Cg, k...) and the attributes. */
static int geometry(dynq__op_ctx_t *c, const dynq__tensor_t *x, int sr, int64_t M,
                    int64_t Cg, const int64_t *k, geom_t *g) {
  char s[128];
  int rc;
  memset(g, 0, sizeof(*g));
  if (x->dtype != DYNQ_DT_F32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "X is %s, expected float32", dynq__dtype_name(x->dtype));
  if (x->rank != 2 + sr)
    return dynq__op_fail(c, DYNQ_ESHAPE, "X has shape %s, expected rank %d (N, C, %s)",
                         dynq__shape_str(s, sizeof(s), x->rank, x->dims), 2 + sr,
                         sr == 1 ? "L" : sr == 2 ? "H, W" : "D, H, W");
  if (c->st->conv.auto_pad == DYNQ_PAD_BAD) return dynq__op_fail(c, DYNQ_EGRAPH, "unknown auto_pad");
  g->sr = sr;
  g->N = x->dims[0];
  g->C = x->dims[1];
  g->M = M;
  g->G = c->st->conv.group;
  if (g->G < 1 || g->C % g->G != 0 || M % g->G != 0)
    return dynq__op_fail(c, DYNQ_ESHAPE, "group %lld does not divide %lld input and %lld output channels",
                         (long long)g->G, (long long)g->C, (long long)M);
  g->Cg = g->C / g->G;
  g->Mg = M / g->G;
  if (g->Cg != Cg)
    return dynq__op_fail(c, DYNQ_ESHAPE, "X has %lld channels, weights expect %lld (= %lld per group x %lld groups)",
                         (long long)g->C, (long long)(Cg * g->G), (long long)Cg, (long long)g->G);
  /* attribute axes: depth sr - 3, height sr - 2, width sr - 1 */
  g->id = sr == 3 ? x->dims[2] : 1;
  g->ih = sr >= 2 ? x->dims[sr] : 1;
  g->iw = x->dims[1 + sr];
  g->kd = sr == 3 ? k[0] : 1;
  g->kh = sr >= 2 ? k[sr - 2] : 1;
  g->kw = k[sr - 1];
  g->sh = g->dh = g->sd = g->dd = 1;
  g->od = 1;
  if (sr == 3 && (rc = axis_out(c, 0, g->id, g->kd, &g->od, &g->pd, &g->sd, &g->dd))) return rc;
  if (sr >= 2 && (rc = axis_out(c, sr - 2, g->ih, g->kh, &g->oh, &g->ph, &g->sh, &g->dh)))
    return rc;
  if (sr == 1) g->oh = 1;
  if ((rc = axis_out(c, sr - 1, g->iw, g->kw, &g->ow, &g->pw, &g->sw, &g->dw))) return rc;
  int64_t kd[4] = {Cg, g->kd, g->kh, g->kw};
  g->kk = dynq__shape_numel(4, kd);
  int64_t od[4] = {g->od, g->oh * g->ow, g->kk, g->G};
  if (g->kk < 0 || dynq__shape_numel(4, od) < 0)
    return dynq__op_fail(c, DYNQ_ELIMIT, "im2col buffer too large");
  return 0;
}

static int alloc_y(dynq__op_ctx_t *c, const geom_t *g, dynq__tensor_t *out) {
  int64_t yd[5] = {g->N, g->M, g->oh, g->ow};
  if (g->sr == 1) yd[2] = g->ow;
  if (g->sr == 3) yd[2] = g->od, yd[3] = g->oh, yd[4] = g->ow;
  return dynq__op_alloc(c, out, DYNQ_DT_F32, 2 + g->sr, yd, 0); /* all written */
}

/* Output positions and input values per channel plane (depth included). */
static inline int64_t g_positions(const geom_t *g) { return g->od * g->oh * g->ow; }
static inline int64_t g_plane(const geom_t *g) { return g->id * g->ih * g->iw; }

/* 3-D: output position p's patch in W's (ci, z, y, x) order; padding
 * reads as 0.0 (floats) or zp (bytes, when u8 is set). */
static void gather_patch3(const geom_t *g, const float *xf, const uint8_t *xu, uint8_t zp,
                          int64_t p, float *rowf, uint8_t *rowu) {
  const int64_t ox = p % g->ow, oy = p / g->ow % g->oh, oz = p / g->ow / g->oh;
  int64_t kidx = 0;
  for (int64_t ci = 0; ci < g->Cg; ci++)
    for (int64_t e = 0; e < g->kd; e++) {
      const int64_t z = oz * g->sd - g->pd + e * g->dd;
      for (int64_t a = 0; a < g->kh; a++) {
        const int64_t y = oy * g->sh - g->ph + a * g->dh;
        const int in = z >= 0 && z < g->id && y >= 0 && y < g->ih;
        const int64_t base = ((ci * g->id + (in ? z : 0)) * g->ih + (in ? y : 0)) * g->iw;
        for (int64_t bb = 0; bb < g->kw; bb++, kidx++) {
          const int64_t xx = ox * g->sw - g->pw + bb * g->dw;
          const int ok = in && xx >= 0 && xx < g->iw;
          if (rowu != NULL) rowu[kidx] = ok ? xu[base + xx] : zp;
          else rowf[kidx] = ok ? xf[base + xx] : 0.0f;
        }
      }
    }
}

/* One output position's patch as floats, in W's (ci, a, b) order;
 * padding reads as 0.0.  For long kernel rows (a signal front end) whole
 * runs of kw are copied at once; also the path for dilated kernels. */
static void gather_patch_f32(const geom_t *g, const float *xg, int64_t oy, int64_t ox,
                             float *row) {
  int64_t kidx = 0;
  for (int64_t ci = 0; ci < g->Cg; ci++)
    for (int64_t a = 0; a < g->kh; a++) {
      int64_t y = oy * g->sh - g->ph + a * g->dh;
      if (y < 0 || y >= g->ih) {
        memset(row + kidx, 0, sizeof(float) * (size_t)g->kw);
        kidx += g->kw;
        continue;
      }
      const float *src = xg + (ci * g->ih + y) * g->iw;
      int64_t x0 = ox * g->sw - g->pw;
      if (g->dw == 1 && x0 >= 0 && x0 + g->kw <= g->iw) {
        memcpy(row + kidx, src + x0, sizeof(float) * (size_t)g->kw);
        kidx += g->kw;
        continue;
      }
      for (int64_t bb = 0; bb < g->kw; bb++) {
        int64_t xx = x0 + bb * g->dw;
        row[kidx++] = xx >= 0 && xx < g->iw ? src[xx] : 0.0f;
      }
    }
}

/* Short kernel rows (Silero's encoder: kw 3 over 64..129 channels) go
 * through a zero-padded copy of the image: every patch then lies inside
 * it, and each channel's kw values are copied without a bounds check
 * (checked per element, that was ~14 % of a batched Silero chunk).  The
 * copy is zeroed once per call; each image overwrites only its interior.
 * Long rows (a signal front end: kw 256) copy whole runs per patch. */
typedef struct padded {
  float *x;              /* [Cg, (id,) ih, iw] owned; NULL: gather per patch */
  int64_t ih, iw;        /* padded height and width */
  int64_t id;            /* padded depth (1 below 3-D) */
  int64_t *off;          /* 3-D: [Cg * kd * kh] each kernel row's offset from
                            a patch's first value; owned */
} padded_t;

static void padded_init(const geom_t *g, padded_t *pd) {
  memset(pd, 0, sizeof(*pd));
  if (g->kw >= 16) return;
  int64_t need_d = (g->od - 1) * g->sd + (g->kd - 1) * g->dd + 1;
  int64_t need_h = (g->oh - 1) * g->sh + (g->kh - 1) * g->dh + 1;
  int64_t need_w = (g->ow - 1) * g->sw + (g->kw - 1) * g->dw + 1;
  int64_t d[4] = {g->Cg, g->pd + g->id > need_d ? g->pd + g->id : need_d,
                  g->ph + g->ih > need_h ? g->ph + g->ih : need_h,
                  g->pw + g->iw > need_w ? g->pw + g->iw : need_w};
  int64_t n = dynq__shape_numel(4, d);
  /* Huge pads around a small image (a hostile model may ask for 65536 per
   * side) would make the copy far larger than the image and the patches
   * together: then the per-patch path, which needs no copy. */
  if (n < 0 || n > 4 * (g->Cg * g_plane(g) + g_positions(g) * g->kk) + 4096) return;
  /* zeroed once: each image then writes only the same interior cells */
  pd->x = calloc((size_t)n + 1, sizeof(float));
  pd->id = d[1];
  pd->ih = d[2];
  pd->iw = d[3];
  if (g->sr == 3 && pd->x != NULL) {
    const int64_t nr = g->Cg * g->kd * g->kh;
    if ((pd->off = malloc(sizeof(int64_t) * (size_t)nr)) == NULL) {
      free(pd->x);
      pd->x = NULL; /* per patch, same values */
      return;
    }
    for (int64_t ci = 0, j = 0; ci < g->Cg; ci++)
      for (int64_t e = 0; e < g->kd; e++)
        for (int64_t a = 0; a < g->kh; a++, j++)
          pd->off[j] = ((ci * pd->id + e * g->dd) * pd->ih + a * g->dh) * pd->iw;
  }
}

static void padded_free(padded_t *pd) {
  free(pd->x);
  free(pd->off);
}

/* 3-D: the image into the padded copy's interior, row by row. */
static void pad_fill3(const geom_t *g, const float *xg, const padded_t *pd) {
  const int64_t piw = pd->iw, pih = pd->ih, pid = pd->id;
  for (int64_t c = 0; c < g->Cg; c++)
    for (int64_t z = 0; z < g->id; z++)
      for (int64_t y = 0; y < g->ih; y++)
        memcpy(pd->x + ((c * pid + g->pd + z) * pih + g->ph + y) * piw + g->pw,
               xg + ((c * g->id + z) * g->ih + y) * g->iw, sizeof(float) * (size_t)g->iw);
}

/* 3-D patches [p0, p1) from the padded copy: runs of kw without bounds
 * tests, in W's (ci, z, y, x) order; kw 3 as one 4-float move (the 4th
 * float is overwritten by the next run, or lands in col's slack). */
static void gather_padded3(const geom_t *g, const padded_t *pd, float *col, int64_t p0,
                           int64_t p1) {
  const int64_t piw = pd->iw, pih = pd->ih, kw = g->kw, dw = g->dw, nr = g->Cg * g->kd * g->kh;
  const int64_t *restrict off = pd->off;
  for (int64_t p = p0; p < p1; p++) {
    const int64_t ox = p % g->ow, oy = p / g->ow % g->oh, oz = p / g->ow / g->oh;
    const float *restrict src = pd->x + (oz * g->sd * pih + oy * g->sh) * piw + ox * g->sw;
    float *restrict row = col + (p - p0) * g->kk;
    if (kw == 1) { /* a temporal (k x 1 x 1) or pointwise kernel: single values */
      for (int64_t j = 0; j < nr; j++) row[j] = src[off[j]];
    } else if (kw == 3 && dw == 1) {
      for (int64_t j = 0; j < nr; j++) memcpy(row + 3 * j, src + off[j], 4 * sizeof(float));
    } else {
      for (int64_t j = 0; j < nr; j++)
        for (int64_t bb = 0; bb < kw; bb++) row[j * kw + bb] = src[off[j] + bb * dw];
    }
  }
}

/* The image into the interior of the padded copy, rows of width iw. */
static inline __attribute__((always_inline)) void fill_rows(const geom_t *g, const float *xg,
                                                           const padded_t *pd, const int64_t iw) {
  const int64_t rows = g->Cg * g->ih, ih = g->ih, piw = pd->iw;
  float *const base = pd->x + g->ph * piw + g->pw;
  if (ih == 1) { /* 1-D: channel c's row is row c of both */
    const int64_t PHW = pd->ih * piw;
    for (int64_t c = 0; c < rows; c++) memcpy(base + c * PHW, xg + c * iw, sizeof(float) * (size_t)iw);
    return;
  }
  for (int64_t c = 0; c < rows; c++)
    memcpy(base + (c / ih) * pd->ih * piw + (c % ih) * piw, xg + c * iw,
           sizeof(float) * (size_t)iw);
}

/* The image into the padded copy (once per image; the patches of any
 * range of its positions then come from it). */
static void pad_fill(const geom_t *g, const float *xg, const padded_t *pd) {
  if (g->sr == 3) {
    pad_fill3(g, xg, pd);
    return;
  }
  /* rows of Silero's encoder are 4, 2 and 1 wide: with the width a
   * constant, a row is one move, where a loop (or libc) costs more than
   * the data */
  switch (g->iw) {
  case 1: fill_rows(g, xg, pd, 1); break;
  case 2: fill_rows(g, xg, pd, 2); break;
  case 4: fill_rows(g, xg, pd, 4); break;
  default: fill_rows(g, xg, pd, g->iw); break;
  }
}

/* Geometry in locals: the build has -fno-strict-aliasing, so a field read
 * through g would be reloaded after every float store. */
static inline __attribute__((always_inline)) void gather_padded(const geom_t *g, const padded_t *pd,
                                                               float *col, int64_t p0, int64_t p1,
                                                               const int64_t kw,
                                                               const int64_t dw) {
  const int64_t Cg = g->Cg;
  const int64_t ow = g->ow, kh = g->kh, sh = g->sh, sw = g->sw, dh = g->dh;
  const int64_t kk = g->kk, piw = pd->iw;
  const int64_t PHW = pd->ih * piw, khw = kh * kw;
  float *const xp = pd->x;
  if (kw == 3 && dw == 1) {
    /* each run of 3 as one 4-float move, in ascending order so that the
     * 4th float is overwritten by the next run (a patch's last spills
     * into the next patch's first, written next, or into the slack past
     * col; the padded copy has a float of slack too) */
    for (int64_t p = p0, oy = p0 / ow, ox = p0 % ow; p < p1; p++) {
      float *row = col + (p - p0) * kk;
      const float *base = xp + oy * sh * piw + ox * sw;
      for (int64_t ci = 0; ci < Cg; ci++)
        for (int64_t a = 0; a < kh; a++)
          memcpy(row + ci * khw + a * 3, base + ci * PHW + a * dh * piw, 4 * sizeof(float));
      if (++ox == ow) ox = 0, oy++;
    }
    return;
  }
  for (int64_t p = p0, oy = p0 / ow, ox = p0 % ow; p < p1; p++) {
    float *row = col + (p - p0) * kk;
    for (int64_t a = 0; a < kh; a++) {
      const float *restrict src = xp + (oy * sh + a * dh) * piw + ox * sw;
      float *restrict dst = row + a * kw;
      for (int64_t ci = 0; ci < Cg; ci++)
        for (int64_t bb = 0; bb < kw; bb++) dst[ci * khw + bb] = src[ci * PHW + bb * dw];
    }
    if (++ox == ow) ox = 0, oy++;
  }
}

/* The patches of output positions [p0, p1) of one image and group as
 * rows of col [p1 - p0, kk], in W's (ci, a, b) order; padding reads as
 * 0.0.  With a padded copy, pad_fill must have put this image in it. */
static void gather_f32(const geom_t *g, const float *xg, const padded_t *pd, float *col,
                       int64_t p0, int64_t p1) {
  if (g->sr == 3) {
    if (pd->x != NULL) gather_padded3(g, pd, col, p0, p1);
    else
      for (int64_t p = p0; p < p1; p++)
        gather_patch3(g, xg, NULL, 0, p, col + (p - p0) * g->kk, NULL);
    return;
  }
  if (pd->x != NULL) {
    if (g->kw == 3 && g->dw == 1) gather_padded(g, pd, col, p0, p1, 3, 1); /* unrolled */
    else gather_padded(g, pd, col, p0, p1, g->kw, g->dw);
    return;
  }
  for (int64_t p = p0; p < p1; p++)
    gather_patch_f32(g, xg, p / g->ow, p % g->ow, col + (p - p0) * g->kk);
}

/* Depthwise (one input channel per group, a few output channels each):
 * every output plane is a small filter over one input plane, computed
 * directly by a row kernel (kernels/convk.h; through im2col it was a
 * copy of every input value per tap and a one-row GEMM per channel).
 * Each input plane is first copied into a zeroed scratch whose rows hold
 * the column padding and are split by column phase (stride sw: phase p
 * holds padded columns p, p + sw, ...), so every tap of a strided or
 * dilated filter reads one contiguous run with no bound test; rows above
 * and below the image are left out of the tap range instead.  The
 * scratch is zeroed once per call: each plane overwrites only the same
 * interior cells.  Returns 1 (nothing done) when the scratch would be out
 * of proportion. */
static int dw_f32(dynq__op_ctx_t *c, const geom_t *g, const float *X, const float *w,
                  const float *bias, float *Y) {
  const dynq__conv_attrs_t *at = &c->st->conv;
  const int epi = conv_has_epi(at);
  const int64_t oh = g->oh, ow = g->ow, ih = g->ih, iw = g->iw, kh = g->kh, kw = g->kw;
  const int64_t sh = g->sh, sw = g->sw, dh = g->dh, dw = g->dw, ph = g->ph, pw = g->pw;
  const int64_t Mg = g->Mg, C = g->C, M = g->M;
  /* a phase row: every column a tap reads, and the kernels' over-read */
  const int64_t L = ow + (kw - 1) * dw / sw + DYNQ_DW_SLACK;
  const int64_t sd[3] = {ih, sw, L};
  const int64_t sn = dynq__shape_numel(3, sd);
  /* Huge pads or strides around a small plane (a hostile model may ask
   * for 65536) would make the scratch far larger than the plane and its
   * output: then the im2col path, which needs none of it. */
  if (sn < 0 || sn > 4 * (ih * iw + oh * ow) + ih * sw * DYNQ_DW_SLACK + 4096) return 1;
  float *S = calloc((size_t)sn, sizeof(float));
  int64_t *off = malloc(sizeof(int64_t) * (size_t)kw);
  if (S == NULL || off == NULL) {
    free(S);
    free(off);
    return dynq__op_fail(c, -ENOMEM, "out of memory");
  }
  for (int64_t b = 0; b < kw; b++) off[b] = (b * dw) % sw * L + b * dw / sw;
  const dynq__conv_kernel_t *k = dynq__conv_kernel_for(c->kernel);
  dynq__conv_epi_t e;
  const int vepi = epi_spec(at, &e); /* else a sigmoid (or none) after the row */
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t m = 0; m < M; m++) {
      if (m % Mg == 0) { /* a new input plane into the scratch */
        const float *xc = X + (n * C + m / Mg) * ih * iw;
        for (int64_t y = 0; y < ih; y++) {
          float *row = S + y * sw * L;
          const float *src = xc + y * iw;
          /* columns past sw * L are never read (a stride that skips
           * the image's last ones) */
          const int64_t cols = iw < sw * L - pw ? iw : sw * L - pw;
          if (sw == 1) {
            memcpy(row + pw, src, sizeof(float) * (size_t)(cols > 0 ? cols : 0));
            continue;
          }
          for (int64_t p = 0; p < sw; p++) { /* phase p: columns t with (t + pw) % sw == p */
            const int64_t t0 = ((p - pw) % sw + sw) % sw;
            float *restrict dst = row + p * L + (t0 + pw) / sw;
            for (int64_t t = t0, j = 0; t < cols; t += sw, j++) dst[j] = src[t];
          }
        }
      }
      float *yc = Y + (n * M + m) * oh * ow;
      dynq__dw_row_t r = {.rs = dh * sw * L, .off = off, .kw = kw,
                          .bias = bias ? bias[m] : 0.0f, .epi = vepi ? &e : NULL, .ow = ow};
      for (int64_t oy = 0; oy < oh; oy++) {
        /* the taps' rows inside the image: a in [a0, a1) */
        const int64_t y0 = oy * sh - ph;
        int64_t a0 = y0 >= 0 ? 0 : (-y0 + dh - 1) / dh;
        int64_t a1 = ih - y0 <= 0 ? 0 : (ih - y0 + dh - 1) / dh;
        if (a1 > kh) a1 = kh;
        if (a1 < a0) a1 = a0;
        r.x = S + (a1 > a0 ? (y0 + a0 * dh) * sw * L : 0);
        r.w = w + (m * kh + a0) * kw;
        r.na = a1 - a0;
        r.y = yc + oy * ow;
        k->dw_row(&r);
        if (epi && !vepi) epi_sigmoid(at, r.y, ow); /* the row is still in L1 */
      }
    }
  free(S);
  free(off);
  return 0;
}

/* FP32 body shared by CONV and QCONV's reference path.  w is [M, kk].
 * The patches are gathered as rows ([P, kk], runs of kw copied whole)
 * and multiplied as W x patches^T, straight into NCHW. */
static int conv_f32(dynq__op_ctx_t *c, const geom_t *g, const float *X, const float *w,
                    const float *bias, float *Y) {
  const int64_t P = g_positions(g), HW = g_plane(g);
  if (g->Cg == 1 && g->Mg <= 4 && g->G > 1 && g->sr <= 2) {
    const int rc = dw_f32(c, g, X, w, bias, Y);
    if (rc <= 0) return rc;
  }
  const int direct = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 &&
                     g->pw == 0 && g->oh == g->ih && g->ow == g->iw && g->kd == 1 &&
                     g->sd == 1 && g->pd == 0 && g->od == g->id;
  int64_t PC = 65536 / g->kk / 16 * 16; /* positions per chunk: ~256 KiB of patches */
  if (PC < 64) PC = 64;
  if (PC > P) PC = P;
  float *col = direct ? NULL : malloc(sizeof(float) * (size_t)(g->kk * PC + 4)); /* + gather's slack */
  if (!direct && col == NULL) return dynq__op_fail(c, -ENOMEM, "out of memory");
  padded_t pd = {0};
  if (!direct) padded_init(g, &pd); /* NULL x (no memory): per patch, same values */
  for (int64_t n = 0; n < g->N; n++) {
    for (int64_t gi = 0; gi < g->G; gi++) {
      const float *xg = X + (n * g->C + gi * g->Cg) * HW;
      float *yg = Y + (n * g->M + gi * g->Mg) * P;
      const float *wg = w + gi * g->Mg * g->kk;
      if (direct) {
        /* 1x1, stride 1, no padding: the image is already [kk, P] */
        dynq__sgemm(0, 0, g->Mg, P, g->kk, 1.0f, wg, g->kk, xg, P, 0.0f, yg, P);
      } else {
        /* PC positions at a time, so that the patches are still in cache
         * for the GEMM (a whole image's went through memory) */
        if (pd.x) pad_fill(g, xg, &pd);
        for (int64_t p0 = 0; p0 < P; p0 += PC) {
          const int64_t p1 = p0 + PC < P ? p0 + PC : P;
          gather_f32(g, xg, &pd, col, p0, p1);
          dynq__sgemm(0, 1, g->Mg, p1 - p0, g->kk, 1.0f, wg, g->kk, col, g->kk, 0.0f, yg + p0, P);
        }
      }
      if (bias)
        for (int64_t m = 0; m < g->Mg; m++) {
          const float bm = bias[gi * g->Mg + m]; /* once, not per store (no strict aliasing) */
          float *ym = yg + m * P;
          for (int64_t p = 0; p < P; p++) ym[p] += bm;
        }
      if (conv_has_epi(&c->st->conv))
        conv_epi(dynq__conv_kernel_for(c->kernel), &c->st->conv, yg, g->Mg * P);
    }
  }
  free(col);
  padded_free(&pd);
  return 0;
}

int dynq__run_conv(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0], *w = in[1], *b = in[2];
  char s[128];
  geom_t g;
  int rc;
  if (w->dtype != DYNQ_DT_F32 || w->rank < 3 || w->rank > 5)
    return dynq__op_fail(c, DYNQ_ESHAPE, "W must be float32 of rank 3, 4 or 5 (1-D, 2-D or 3-D conv), got %s %s",
                         dynq__dtype_name(w->dtype), dynq__shape_str(s, sizeof(s), w->rank, w->dims));
  for (int i = 0; i < w->rank; i++)
    if (w->dims[i] < 1)
      return dynq__op_fail(c, DYNQ_ESHAPE, "W has an empty dimension: %s",
                           dynq__shape_str(s, sizeof(s), w->rank, w->dims));
  if ((rc = geometry(c, x, w->rank - 2, w->dims[0], w->dims[1], w->dims + 2, &g))) return rc;
  if (b && (b->dtype != DYNQ_DT_F32 || b->rank != 1 || b->dims[0] != g.M))
    return dynq__op_fail(c, DYNQ_ESHAPE, "B must be float32 [%lld], got %s %s", (long long)g.M,
                         dynq__dtype_name(b->dtype), dynq__shape_str(s, sizeof(s), b->rank, b->dims));
  if ((rc = alloc_y(c, &g, out))) return rc;
  /* sym_split (set by the importer, checked against W at load): the
   * mirror-symmetric front end at half the MACs.  The fp32 reference
   * path keeps the literal conv. */
  const int64_t E = c->st->conv.sym_split;
  if (E >= 0 && E <= g.M && c->precision != DYNQ_PRECISION_FP32 && g.sr == 1 && g.G == 1 &&
      g.Cg == 1 && g.dw == 1) {
    dynq__conv_sym_t sg = {g.N, g.iw, g.M, g.kw, E, g.sw, g.pw, g.ow};
    rc = dynq__conv_sym_f32(&sg, x->data, w->data, b ? b->data : NULL, out->data);
    if (rc != 0) rc = dynq__op_fail(c, rc, "out of memory");
    else if (conv_has_epi(&c->st->conv))
      conv_epi(dynq__conv_kernel_for(c->kernel), &c->st->conv, out->data,
               dynq__tensor_numel(out));
  } else {
    rc = conv_f32(c, &g, x->data, w->data, b ? b->data : NULL, out->data);
  }
  if (rc != 0) dynq__tensor_clear(out);
  return rc;
}

/* A 1x1 conv's GEMM rows (one per pixel, its Cg channel values) straight
 * from the NCHW image, a tile of pixels at a time through a small float
 * buffer into the row quantizer: the same rows and bits as im2col, with
 * no image-sized patch buffer. */
enum { PW_TILE = 32 };
static void pointwise_rows(const dynq__kernel_t *kr, const dynq__conv_kernel_t *ck,
                           const geom_t *g, const float *xg, int64_t pa, int64_t pb, float *tile,
                           uint8_t *A, int64_t kp, float *as, int32_t *az) {
  const int64_t P = g_positions(g), Cg = g->Cg;
  for (int64_t p0 = pa; p0 < pb; p0 += PW_TILE) {
    const int64_t np = pb - p0 < PW_TILE ? pb - p0 : PW_TILE;
    ck->transpose(xg + p0, P, tile, Cg, Cg, np, NULL);
    dynq__quantize_rows(kr, np, Cg, tile, (size_t)Cg, A + (p0 - pa) * kp, (size_t)kp, 0,
                        as + (p0 - pa), az + (p0 - pa));
  }
}

/* The same patch from the image quantized as a whole (per_tensor mode);
 * padding reads as the zero point, which is exactly 0.0. */
static void gather_patch_u8(const geom_t *g, const uint8_t *xg, int64_t oy, int64_t ox,
                            uint8_t zp, uint8_t *row) {
  int64_t kidx = 0;
  for (int64_t ci = 0; ci < g->Cg; ci++)
    for (int64_t a = 0; a < g->kh; a++) {
      int64_t y = oy * g->sh - g->ph + a * g->dh;
      int yin = y >= 0 && y < g->ih;
      const uint8_t *src = xg + (ci * g->ih + (yin ? y : 0)) * g->iw;
      for (int64_t bb = 0; bb < g->kw; bb++) {
        int64_t xx = ox * g->sw - g->pw + bb * g->dw;
        row[kidx++] = yin && xx >= 0 && xx < g->iw ? src[xx] : zp;
      }
    }
}

int dynq__run_qconv(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  const dynq__conv_attrs_t *at = &c->st->conv;
  const dynq__tensor_t *x = in[0], *b = in[4], *wref = c->node->n_in > 5 ? in[5] : NULL;
  const int sr = at->spatial;
  const int64_t M = at->out_channels, C = at->in_channels, G = at->group;
  const int per_tensor = at->per_tensor;
  const int64_t k[3] = {at->kernel[0], at->kernel[1], at->kernel[2]};
  geom_t g;
  int rc;
  /* the load-time check made these consistent with the constants */
  if ((rc = geometry(c, x, sr, M, C / G, k, &g))) return rc;
  if ((rc = alloc_y(c, &g, out))) return rc;
  const float *bias = b ? b->data : NULL;
  if (c->precision == DYNQ_PRECISION_FP32) {
    if (wref == NULL) {
      dynq__tensor_clear(out);
      return dynq__op_fail(c, DYNQ_ENOREF, "model has no FP32 reference weights (quantized with --no-reference)");
    }
    if ((rc = conv_f32(c, &g, x->data, wref->data, bias, out->data))) dynq__tensor_clear(out);
    return rc;
  }
  const int64_t P = g_positions(&g), HW = g_plane(&g), CHW = g.C * HW;
  const int64_t kp = dynq__round_up(g.kk, DYNQ_QGEMM_KG);
  const dynq__conv_kernel_t *ck = dynq__conv_kernel_for(c->kernel);
  dynq__conv_epi_t e;
  const int vepi = epi_spec(at, &e);
  const int64_t blk = dynq__round_up(g.Mg, DYNQ_QGEMM_NR) * kp;
  /* GEMM rows are (image, position) pairs, all images in a row: a Silero
   * encoder conv has 1 or 2 patches per image, and a GEMM per image
   * reloaded all the weights for 1-2 rows.  They go RC at a time through
   * patches (floats), their bytes, the INT8 GEMM and the transpose back
   * to NCHW, so each stage's data is still in cache for the next (im2col
   * of a whole image went through memory: 17 MB for a 3x3 conv of 96
   * channels over 64 x 80 positions).  Every row keeps its own scale and
   * the integer sums are exact, so a result does not depend on the
   * chunking or on the other images (kernels.h). */
  const int64_t NP = g.N * P; /* < the output's elements */
  int64_t RC = 32768 / (g.kk > 2 * g.Mg ? g.kk : 2 * g.Mg) / 48 * 48;
  if (RC < 48) RC = 48;
  if (RC > NP) RC = NP;
  /* 1x1, stride 1, no padding: an image's GEMM rows are its pixels */
  const int pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 &&
                        g.pw == 0 && g.oh == g.ih && g.ow == g.iw && g.kd == 1 && g.sd == 1 &&
                        g.pd == 0 && g.od == g.id;
  /* per_tensor: the quantized image and all its rows; per patch: a chunk */
  const int64_t AR = per_tensor ? P : RC;
  /* per tensor, an image's patches as bytes: kp per output position, more
   * than the output itself when the kernel is large */
  if (per_tensor && (rc = dynq__op_check_bytes(c, AR, kp, "the image's patches"))) {
    dynq__tensor_clear(out);
    return rc;
  }
  uint8_t *xq = per_tensor ? dynq__aligned_alloc((size_t)dynq__round_up(CHW, DYNQ_QGEMM_KG) + 64)
                           : NULL;
  float *colf = per_tensor ? NULL
                           : dynq__aligned_alloc(sizeof(float) *
                                                 (size_t)((pointwise ? PW_TILE : RC) * g.kk + 4));
  uint8_t *A = dynq__aligned_alloc((size_t)(AR * kp) + 64);
  float *as = malloc(sizeof(float) * (size_t)(AR + 1));
  int32_t *az = malloc(sizeof(int32_t) * (size_t)(AR + 1));
  float *tmp = malloc(sizeof(float) * (size_t)(RC * g.Mg + 1));
  padded_t pd = {0};
  if (!per_tensor && !pointwise) padded_init(&g, &pd); /* NULL x (no memory): per patch */
  if ((per_tensor ? !xq : !colf) || !A || !as || !az || !tmp) {
    rc = dynq__op_fail(c, -ENOMEM, "out of memory");
    goto fail;
  }
  float *Y = out->data;
  const float *X = x->data;
  int64_t qimg = -1; /* per tensor: the image in xq */
  for (int64_t gi = 0; gi < g.G; gi++) {
    dynq__qgemm_args_t q = {
      .N = g.Mg, .K = g.kk, .lda = (size_t)kp,
      .B = (const int8_t *)in[1]->data + gi * blk,
      .colsum = (const int32_t *)in[2]->data + gi * g.Mg,
      .w_scale = (const float *)in[3]->data + gi * g.Mg,
      .bias = bias ? bias + gi * g.Mg : NULL, .act = DYNQ_ACT_NONE,
      .C = tmp, .ldc = (size_t)g.Mg,
      .n0 = 0, .n1 = g.Mg,
    };
    int64_t filled = -1; /* the image in the padded copy */
    for (int64_t r0 = 0; r0 < NP;) {
      /* rows [r0, r1): per tensor one image's, per patch a chunk's */
      int64_t r1 = per_tensor ? r0 + P : (r0 + RC < NP ? r0 + RC : NP), ra = r0;
      if (per_tensor) {
        if (qimg != r0 / P) { /* the image as a whole (again for each group when N > 1) */
          float scale = 0.0f;
          int32_t zp = 0;
          qimg = r0 / P;
          dynq__quantize_rows(c->kernel, 1, CHW, X + qimg * CHW, (size_t)CHW, xq,
                              (size_t)dynq__round_up(CHW, DYNQ_QGEMM_KG), 0, &scale, &zp);
          for (int64_t p = 0; p < P; p++) as[p] = scale, az[p] = zp;
          if (gi == 0) dynq__op_note_quant(c, 0, 0, 0, &scale, 1);
        }
        const uint8_t *xg = xq + gi * g.Cg * HW;
        for (int64_t p = 0; p < P; p++) {
          uint8_t *row = A + p * kp;
          if (g.sr == 3) gather_patch3(&g, NULL, xg, (uint8_t)az[0], p, NULL, row);
          else gather_patch_u8(&g, xg, p / g.ow, p % g.ow, (uint8_t)az[0], row);
          memset(row + g.kk, 0, (size_t)(kp - g.kk));
        }
      } else {
        /* One scale per patch (an im2col row): the per-row rule of
         * NUMERICS.md applied to the GEMM's rows.  A patch's result
         * depends only on the values under it, and a small-valued region
         * (a quiet band of a spectrogram) keeps its resolution instead
         * of sharing the loudest position's scale. */
        for (int64_t r = r0; r < r1;) { /* the chunk's run in each image */
          const int64_t j = r / P, p = r % P, e1 = (j + 1) * P < r1 ? (j + 1) * P : r1;
          const float *xg = X + j * CHW + gi * g.Cg * HW;
          if (pointwise) {
            pointwise_rows(c->kernel, ck, &g, xg, p, p + e1 - r, colf, A + (r - r0) * kp, kp,
                           as + (r - r0), az + (r - r0));
          } else {
            if (pd.x && filled != j) pad_fill(&g, xg, &pd), filled = j;
            gather_f32(&g, xg, &pd, colf + (r - r0) * g.kk, p, p + e1 - r);
          }
          r = e1;
        }
        if (!pointwise)
          dynq__quantize_rows(c->kernel, r1 - r0, g.kk, colf, (size_t)g.kk, A, (size_t)kp, 0, as,
                              az);
        dynq__op_note_quant(c, 0, 0, 0, as, r1 - r0);
      }
      dynq__op_note_quant(c, r1 - r0, g.kk, g.Mg, NULL, 0);
      /* the GEMM RC rows at a time, each chunk transposed back to NCHW
       * (the epilogue on each column while it is in registers) while its
       * results are still in cache */
      for (; ra < r1; ra += RC) {
        const int64_t rb = ra + RC < r1 ? ra + RC : r1;
        q.M = rb - ra, q.A = A + (ra - r0) * kp, q.a_scale = as + (ra - r0),
        q.a_zp = az + (ra - r0);
        c->kernel->qgemm(&q);
        for (int64_t r = ra; r < rb;) {
          const int64_t j = r / P, e1 = (j + 1) * P < rb ? (j + 1) * P : rb;
          float *yg = Y + (j * g.M + gi * g.Mg) * P;
          ck->transpose(tmp + (r - ra) * g.Mg, g.Mg, yg + r % P, P, e1 - r, g.Mg,
                        vepi ? &e : NULL);
          r = e1;
        }
      }
      r0 = r1;
    }
    if (!vepi && conv_has_epi(at))
      for (int64_t j = 0; j < g.N; j++) conv_epi(ck, at, Y + (j * g.M + gi * g.Mg) * P, g.Mg * P);
  }
  rc = 0;
  goto out;
fail:
  dynq__tensor_clear(out);
out:
  dynq__aligned_free(xq);
  dynq__aligned_free(colf);
  dynq__aligned_free(A);
  free(as);
  free(az);
  free(tmp);
  padded_free(&pd);
  return rc;
}

/* ---- load-time check ---- */

#define CHECK DYNQ_OP_CHECK

static const dynq__value_t *const_in(const dynq__graph_t *g, const dynq__node_t *n, int i) {
  if (i >= n->n_in || n->in[i] < 0) return NULL;
  const dynq__value_t *v = &g->values[n->in[i]];
  return v->data ? v : NULL;
}

int dynq__check_conv(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  dynq__conv_attrs_t at;
  conv_attrs(n, &at);
  const int64_t G = at.group;
  CHECK(at.auto_pad != DYNQ_PAD_BAD, "auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID");
  CHECK(G >= 1 && G <= 65536, "group %lld outside [1, 65536]", (long long)G);
  CHECK(at.act >= 0 && at.act < DYNQ_CONV_ACT__COUNT, "act %d is not a known activation",
        at.act);
  for (int a = 0; a < 3; a++) {
    CHECK(at.strides[a] >= 1 && at.dilations[a] >= 1,
          "strides and dilations must be >= 1");
    CHECK(at.pad_begin[a] >= 0 && at.pad_end[a] >= 0,
          "pads must be >= 0");
  }
  if (n->op == DYNQ_OP_CONV && at.has_sym_split) {
    /* the fast path trusts this claim, so the weights must bear it out */
    const int64_t E = at.sym_split;
    const dynq__value_t *w = const_in(g, n, 1);
    CHECK(w && w->dtype == DYNQ_DT_F32 && w->rank == 3 && w->dims[1] == 1 && G == 1,
          "sym_split needs constant float32 weights [M, 1, N] and group 1");
    CHECK(at.dilations[0] == 1, "sym_split needs dilation 1");
    CHECK(E >= 0 && E == dynq__conv_sym_split(w->data, w->dims[0], w->dims[2]),
          "sym_split %lld does not match the weights (rows [0, E) must be exactly even and "
          "the rest exactly odd about the middle tap)", (long long)E);
  }
  if (n->op != DYNQ_OP_QCONV) return 0;
  const int sr = at.spatial;
  const int64_t M = at.out_channels, C = at.in_channels;
  CHECK(sr >= 1 && sr <= 3, "spatial must be 1, 2 or 3");
  const int64_t pt = dynq__node_attr_i(n, "per_tensor", 0);
  CHECK(pt == 0 || pt == 1, "per_tensor must be 0 or 1, got %lld", (long long)pt);
  CHECK(M >= 1 && M <= (1 << 24) && C >= 1 && C <= (1 << 24) && M % G == 0 && C % G == 0,
        "channels in %lld / out %lld must be >= 1 and divisible by group %lld",
        (long long)C, (long long)M, (long long)G);
  int64_t kk = C / G;
  int64_t k[3] = {1, 1, 1};
  for (int a = 0; a < sr && a < 3; a++) {
    k[a] = a == 0 ? at.kernel[0] : dynq__node_attr_i(n, a == 1 ? "kernel_shape1" : "kernel_shape2", 0);
    CHECK(k[a] >= 1 && k[a] <= 65536, "kernel_shape%d %lld outside [1, 65536]", a, (long long)k[a]);
    kk *= k[a];
    CHECK(kk <= DYNQ_QGEMM_MAX_K, "kernel patch of %lld values exceeds %d", (long long)kk, DYNQ_QGEMM_MAX_K);
  }
  const int64_t Mg = M / G;
  const int64_t packed = G * dynq__round_up(Mg, DYNQ_QGEMM_NR) * dynq__round_up(kk, DYNQ_QGEMM_KG);
  const dynq__value_t *v;
  v = const_in(g, n, 1);
  CHECK(v && v->dtype == DYNQ_DT_I8 && v->rank == 1 && v->dims[0] == packed,
        "packed weights must be a constant int8 [%lld]", (long long)packed);
  v = const_in(g, n, 2);
  CHECK(v && v->dtype == DYNQ_DT_I32 && v->rank == 1 && v->dims[0] == M,
        "column sums must be a constant int32 [%lld]", (long long)M);
  v = const_in(g, n, 3);
  CHECK(v && v->dtype == DYNQ_DT_F32 && v->rank == 1 && v->dims[0] == M,
        "weight scales must be a constant float32 [%lld]", (long long)M);
  if (n->n_in > 4 && n->in[4] >= 0) {
    v = const_in(g, n, 4);
    CHECK(v && v->dtype == DYNQ_DT_F32 && v->rank == 1 && v->dims[0] == M,
          "bias must be a constant float32 [%lld]", (long long)M);
  }
  if (n->n_in > 5 && n->in[5] >= 0) {
    v = const_in(g, n, 5);
    int ok = v && v->dtype == DYNQ_DT_F32 && v->rank == 2 + sr && v->dims[0] == M &&
             v->dims[1] == C / G;
    for (int a = 0; ok && a < sr; a++) ok = v->dims[2 + a] == k[a];
    CHECK(ok, "reference weights must be a constant float32 [%lld, %lld, kernel...]",
          (long long)M, (long long)(C / G));
  }
  return 0;
}

int dynq__prep_conv(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                    char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  conv_attrs(n, &st->conv);
  return 0;
}
