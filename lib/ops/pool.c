/*
 * Pooling: MaxPool and AveragePool over 1-D and 2-D windows, and the
 * global forms that reduce every spatial axis to 1.  FP32 only (pooling
 * has no weights to quantize).
 *
 * Window attributes come from the importer per spatial axis ("<name>0",
 * "<name>1"; axis 0 is the first spatial axis), as for Conv.  A 1-D pool
 * runs as a 2-D one with a unit height.  Padding never contributes a
 * value: MaxPool ignores it, AveragePool divides by the number of input
 * elements in the window unless count_include_pad (then by the window
 * clipped to the padded input, as PyTorch and ONNX Runtime do).
 * ceil_mode drops a last window that would start in the end padding
 * (PyTorch's rule, which ONNX Runtime follows).
 */
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dynq/errors.h"

int dynq__prep_pool(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                    char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  static const char *const names[][2] = {
    {"kernel_shape0", "kernel_shape1"}, {"strides0", "strides1"},
    {"dilations0", "dilations1"}, {"pad_begin0", "pad_begin1"}, {"pad_end0", "pad_end1"},
  };
  dynq__pool_attrs_t *p = &st->pool;
  for (int ax = 0; ax < 2; ax++) {
    p->kernel[ax] = dynq__node_attr_i(n, names[0][ax], 1);
    p->strides[ax] = dynq__node_attr_i(n, names[1][ax], 1);
    p->dilations[ax] = dynq__node_attr_i(n, names[2][ax], 1);
    p->pad_begin[ax] = dynq__node_attr_i(n, names[3][ax], 0);
    p->pad_end[ax] = dynq__node_attr_i(n, names[4][ax], 0);
  }
  p->spatial = (int)dynq__node_attr_i(n, "spatial", 0);
  p->auto_pad = dynq__op_auto_pad(n);
  p->ceil_mode = dynq__node_attr_i(n, "ceil_mode", 0) != 0;
  p->count_include_pad = dynq__node_attr_i(n, "count_include_pad", 0) != 0;
  return 0;
}

int dynq__check_pool(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  dynq__opstate_t st;
  memset(&st, 0, sizeof(st));
  dynq__prep_pool(g, n, &st, err, errlen);
  const dynq__pool_attrs_t *p = &st.pool;
  DYNQ_OP_CHECK(p->spatial == 1 || p->spatial == 2, "%d spatial axes (1 or 2 supported)",
                p->spatial);
  DYNQ_OP_CHECK(p->auto_pad != DYNQ_PAD_BAD, "unknown auto_pad value");
  for (int ax = 0; ax < p->spatial; ax++) {
    DYNQ_OP_CHECK(p->kernel[ax] >= 1 && p->kernel[ax] <= 65536,
                  "kernel_shape %lld on axis %d outside [1, 65536]", (long long)p->kernel[ax], ax);
    DYNQ_OP_CHECK(p->strides[ax] >= 1 && p->strides[ax] <= 65536 && p->dilations[ax] >= 1 &&
                      p->dilations[ax] <= 65536,
                  "stride %lld / dilation %lld on axis %d outside [1, 65536]",
                  (long long)p->strides[ax], (long long)p->dilations[ax], ax);
    DYNQ_OP_CHECK(p->pad_begin[ax] >= 0 && p->pad_end[ax] >= 0 && p->pad_begin[ax] < 65536 &&
                      p->pad_end[ax] < 65536,
                  "pads %lld, %lld on axis %d outside [0, 65536)", (long long)p->pad_begin[ax],
                  (long long)p->pad_end[ax], ax);
  }
  return 0;
}

typedef struct pgeom {
  int64_t nc, ih, iw, oh, ow, kh, kw, sh, sw, dh, dw, ph, pw, eh, ew;
} pgeom_t;

/* One axis: output size and begin/end pads. */
static int pool_axis(dynq__op_ctx_t *c, int ax, int64_t in, int64_t *ret_out, int64_t *ret_pb,
                     int64_t *ret_pe) {
  const dynq__pool_attrs_t *p = &c->st->pool;
  int64_t k = p->kernel[ax], s = p->strides[ax], d = p->dilations[ax];
  int64_t pb = p->pad_begin[ax], pe = p->pad_end[ax], span = d * (k - 1) + 1, out;
  if (p->auto_pad == DYNQ_PAD_SAME_UPPER || p->auto_pad == DYNQ_PAD_SAME_LOWER) {
    out = (in + s - 1) / s;
    int64_t tot = (out - 1) * s + span - in;
    if (tot < 0) tot = 0;
    pb = p->auto_pad == DYNQ_PAD_SAME_UPPER ? tot / 2 : tot - tot / 2;
    pe = tot - pb;
  } else {
    if (p->auto_pad == DYNQ_PAD_VALID) pb = pe = 0;
    int64_t room = in + pb + pe - span;
    if (room < 0)
      return dynq__op_fail(c, DYNQ_ESHAPE,
                           "spatial axis %d: input size %lld (+%lld padding) is smaller than "
                           "the window %lld", ax, (long long)in, (long long)(pb + pe),
                           (long long)span);
    out = (p->ceil_mode ? (room + s - 1) / s : room / s) + 1;
    if (p->ceil_mode && (out - 1) * s >= in + pb) out--;
  }
  *ret_out = out;
  *ret_pb = pb;
  *ret_pe = pe;
  return 0;
}

static int pool_geom(dynq__op_ctx_t *c, const dynq__tensor_t *x, pgeom_t *g, int64_t *odims) {
  const dynq__pool_attrs_t *p = &c->st->pool;
  int rc, sr = p->spatial;
  char s[128];
  if ((rc = dynq__op_need_f32(c, x, 0))) return rc;
  if (x->rank != 2 + sr)
    return dynq__op_fail(c, DYNQ_ESHAPE, "X has shape %s, expected rank %d (N, C, %s)",
                         dynq__shape_str(s, sizeof(s), x->rank, x->dims), 2 + sr,
                         sr == 1 ? "L" : "H, W");
  memset(g, 0, sizeof(*g));
  g->nc = x->dims[0] * x->dims[1];
  g->ih = sr == 2 ? x->dims[2] : 1;
  g->iw = x->dims[1 + sr];
  g->oh = g->kh = g->sh = g->dh = 1;
  if (sr == 2 && (rc = pool_axis(c, 0, g->ih, &g->oh, &g->ph, &g->eh))) return rc;
  if ((rc = pool_axis(c, sr - 1, g->iw, &g->ow, &g->pw, &g->ew))) return rc;
  if (sr == 2) {
    g->kh = p->kernel[0], g->sh = p->strides[0], g->dh = p->dilations[0];
  }
  g->kw = p->kernel[sr - 1], g->sw = p->strides[sr - 1], g->dw = p->dilations[sr - 1];
  odims[0] = x->dims[0];
  odims[1] = x->dims[1];
  if (sr == 2) odims[2] = g->oh;
  odims[1 + sr] = g->ow;
  return 0;
}

static int run_pool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out,
                    int is_max) {
  const dynq__tensor_t *x = in[0];
  pgeom_t g;
  int64_t od[4];
  int rc;
  if ((rc = pool_geom(c, x, &g, od))) return rc;
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, x->rank, od, 0))) return rc;
  const float *px = x->data;
  float *py = out->data;
  int incl = c->st->pool.count_include_pad;
  for (int64_t p = 0; p < g.nc; p++) {
    const float *xs = px + p * g.ih * g.iw;
    float *ys = py + p * g.oh * g.ow;
    for (int64_t oy = 0; oy < g.oh; oy++) {
      int64_t y0 = oy * g.sh - g.ph;
      for (int64_t ox = 0; ox < g.ow; ox++) {
        int64_t x0 = ox * g.sw - g.pw;
        float mx = -INFINITY, sum = 0.0f;
        int64_t cnt = 0;
        for (int64_t a = 0; a < g.kh; a++) {
          int64_t y = y0 + a * g.dh;
          if (y < 0 || y >= g.ih) continue;
          const float *row = xs + y * g.iw;
          for (int64_t b = 0; b < g.kw; b++) {
            int64_t xx = x0 + b * g.dw;
            if (xx < 0 || xx >= g.iw) continue;
            float v = row[xx];
            if (is_max) {
              if (v > mx || v != v) mx = v;   /* NaN propagates */
            } else {
              sum += v;
            }
            cnt++;
          }
        }
        if (is_max) {
          ys[oy * g.ow + ox] = mx;
        } else {
          int64_t div = cnt;
          if (incl) { /* the window clipped to the padded input */
            int64_t hh = (y0 + g.kh < g.ih + g.eh ? y0 + g.kh : g.ih + g.eh) - y0;
            int64_t ww = (x0 + g.kw < g.iw + g.ew ? x0 + g.kw : g.iw + g.ew) - x0;
            div = hh * ww;
          }
          ys[oy * g.ow + ox] = div > 0 ? sum / (float)div : 0.0f;
        }
      }
    }
  }
  return 0;
}

int dynq__run_maxpool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  return run_pool(c, in, out, 1);
}

int dynq__run_avgpool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  return run_pool(c, in, out, 0);
}

/* GlobalAveragePool / GlobalMaxPool: [N, C, d...] -> [N, C, 1...]. */
static int run_global(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out,
                      int is_max) {
  const dynq__tensor_t *x = in[0];
  int rc;
  char s[128];
  if ((rc = dynq__op_need_f32(c, x, 0))) return rc;
  if (x->rank < 3)
    return dynq__op_fail(c, DYNQ_ESHAPE, "X has shape %s, expected (N, C, spatial...)",
                         dynq__shape_str(s, sizeof(s), x->rank, x->dims));
  int64_t od[DYNQ_MAX_RANK], sp = 1;
  od[0] = x->dims[0];
  od[1] = x->dims[1];
  for (int d = 2; d < x->rank; d++) od[d] = 1, sp *= x->dims[d];
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, x->rank, od, 0))) return rc;
  int64_t nc = x->dims[0] * x->dims[1];
  const float *px = x->data;
  float *py = out->data;
  for (int64_t p = 0; p < nc; p++) {
    const float *r = px + p * sp;
    if (is_max) {
      float m = sp > 0 ? r[0] : -INFINITY;
      for (int64_t i = 1; i < sp; i++)
        if (r[i] > m || r[i] != r[i]) m = r[i];
      py[p] = m;
    } else {
      /* 8 partial sums: vectorizable, and closer to a pairwise sum */
      float acc[8] = {0};
      int64_t i = 0;
      for (; i + 8 <= sp; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += r[i + k];
      float t = 0.0f;
      for (; i < sp; i++) t += r[i];
      for (int k = 0; k < 8; k++) t += acc[k];
      py[p] = sp > 0 ? t / (float)sp : NAN;
    }
  }
  return 0;
}

int dynq__run_global_avgpool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                             dynq__tensor_t *out) {
  return run_global(c, in, out, 0);
}

int dynq__run_global_maxpool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                             dynq__tensor_t *out) {
  return run_global(c, in, out, 1);
}
