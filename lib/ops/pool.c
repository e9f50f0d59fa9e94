/*
 * Pooling: MaxPool and AveragePool over 1-D, 2-D and 3-D windows, and
 * the global forms that reduce every spatial axis to 1.  FP32 only
 * (pooling has no weights to quantize).
 *
 * Window attributes come from the importer per spatial axis ("<name>0",
 * "<name>1", "<name>2"; axis 0 is the first spatial axis), as for Conv.  A
 * 1-D or 2-D pool runs as a 3-D one with unit leading axes (PyTorch
 * exports LocalResponseNorm as a 3-D AveragePool over [N, 1, C, H, W]).  Padding never contributes a
 * value: MaxPool ignores it, AveragePool divides by the number of input
 * elements in the window unless count_include_pad (then by the window
 * clipped to the padded input, as PyTorch and ONNX Runtime do).
 * ceil_mode drops a last window that would start in the end padding
 * (PyTorch's rule, which ONNX Runtime follows).
 *
 * MaxPool's optional second output, Indices (int64, the output's shape),
 * holds where each maximum came from as an offset into the whole input
 * (batch and channel included; ONNX's definition, what MaxUnpool reads):
 * row-major (storage_order 0) or column-major over the spatial axes
 * (storage_order 1: d + D * (h + H * w)).  The first maximum of a window
 * wins, as in ONNX's reference; a window holding a NaN gives the NaN and
 * the first NaN's place.
 */
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dynq/errors.h"

int dynq__prep_pool(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                    char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  static const char *const names[][3] = {
    {"kernel_shape0", "kernel_shape1", "kernel_shape2"}, {"strides0", "strides1", "strides2"},
    {"dilations0", "dilations1", "dilations2"}, {"pad_begin0", "pad_begin1", "pad_begin2"},
    {"pad_end0", "pad_end1", "pad_end2"},
  };
  dynq__pool_attrs_t *p = &st->pool;
  for (int ax = 0; ax < 3; ax++) {
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
  p->storage_order = (int)dynq__node_attr_i(n, "storage_order", 0);
  return 0;
}

int dynq__check_pool(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  dynq__opstate_t st;
  memset(&st, 0, sizeof(st));
  dynq__prep_pool(g, n, &st, err, errlen);
  const dynq__pool_attrs_t *p = &st.pool;
  DYNQ_OP_CHECK(p->spatial >= 1 && p->spatial <= 3, "%d spatial axes (1, 2 or 3 supported)",
                p->spatial);
  DYNQ_OP_CHECK(p->auto_pad != DYNQ_PAD_BAD, "unknown auto_pad value");
  DYNQ_OP_CHECK(p->storage_order == 0 || p->storage_order == 1, "storage_order %d (0 or 1)",
                p->storage_order);
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

/* Axes 0, 1, 2 are depth, height, width; a pool with fewer spatial axes
 * has unit leading ones. */
typedef struct pgeom {
  int64_t nc, in[3], out[3], k[3], s[3], d[3], pb[3], pe[3];
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
                         sr == 1 ? "L" : sr == 2 ? "H, W" : "D, H, W");
  memset(g, 0, sizeof(*g));
  g->nc = x->dims[0] * x->dims[1];
  odims[0] = x->dims[0];
  odims[1] = x->dims[1];
  for (int a = 0; a < 3; a++) {
    int ax = a - (3 - sr); /* the attribute axis; < 0: a unit axis */
    g->in[a] = g->out[a] = g->k[a] = g->s[a] = g->d[a] = 1;
    if (ax < 0) continue;
    g->in[a] = x->dims[2 + ax];
    if ((rc = pool_axis(c, ax, g->in[a], &g->out[a], &g->pb[a], &g->pe[a]))) return rc;
    g->k[a] = p->kernel[ax], g->s[a] = p->strides[ax], g->d[a] = p->dilations[ax];
    odims[2 + ax] = g->out[a];
  }
  return 0;
}

/* The window clipped to the padded input, along axis a from start o. */
static int64_t padded_span(const pgeom_t *g, int a, int64_t o) {
  int64_t end = o + g->k[a], lim = g->in[a] + g->pe[a];
  return (end < lim ? end : lim) - o;
}

/* The windows of every plane; mode 0 average, 1 max, 2 max with its
 * index into pi.  Inlined per mode (a constant): the index bookkeeping
 * costs nothing where no Indices output is wanted. */
static inline __attribute__((always_inline)) void pool_planes(const pgeom_t *gp, const float *px,
                                                             float *py, int64_t *pi,
                                                             const int mode, int colmajor,
                                                             int incl) {
  const pgeom_t g = *gp;
  const int64_t iplane = g.in[0] * g.in[1] * g.in[2], oplane = g.out[0] * g.out[1] * g.out[2];
  for (int64_t p = 0; p < g.nc; p++) {
    const float *xs = px + p * iplane;
    float *ys = py + p * oplane;
    for (int64_t oz = 0; oz < g.out[0]; oz++) {
      int64_t z0 = oz * g.s[0] - g.pb[0];
      for (int64_t oy = 0; oy < g.out[1]; oy++) {
        int64_t y0 = oy * g.s[1] - g.pb[1];
        for (int64_t ox = 0; ox < g.out[2]; ox++) {
          int64_t x0 = ox * g.s[2] - g.pb[2];
          float mx = -INFINITY, sum = 0.0f;
          int64_t cnt = 0, at = -1;
          for (int64_t e = 0; e < g.k[0]; e++) {
            int64_t z = z0 + e * g.d[0];
            if (z < 0 || z >= g.in[0]) continue;
            for (int64_t a = 0; a < g.k[1]; a++) {
              int64_t y = y0 + a * g.d[1];
              if (y < 0 || y >= g.in[1]) continue;
              const float *row = xs + (z * g.in[1] + y) * g.in[2];
              for (int64_t b = 0; b < g.k[2]; b++) {
                int64_t xx = x0 + b * g.d[2];
                if (xx < 0 || xx >= g.in[2]) continue;
                float v = row[xx];
                if (mode == 1) {
                  if (v > mx || v != v) mx = v; /* NaN propagates */
                } else if (mode == 2) {
                  /* the first maximum; a NaN propagates (the first one) */
                  if (cnt == 0 || v > mx || (v != v && mx == mx)) {
                    mx = v;
                    at = colmajor ? z + g.in[0] * (y + g.in[1] * xx) : (z * g.in[1] + y) * g.in[2] + xx;
                  }
                } else {
                  sum += v;
                }
                cnt++;
              }
            }
          }
          float *yo = ys + (oz * g.out[1] + oy) * g.out[2] + ox;
          if (mode != 0) {
            *yo = mx;
            /* a window of padding only (cnt 0) points nowhere: -1 */
            if (mode == 2) pi[yo - py] = at >= 0 ? p * iplane + at : -1;
          } else {
            int64_t div = cnt;
            if (incl) /* the window clipped to the padded input */
              div = padded_span(&g, 0, z0) * padded_span(&g, 1, y0) * padded_span(&g, 2, x0);
            *yo = div > 0 ? sum / (float)div : 0.0f;
          }
        }
      }
    }
  }
}

static int run_pool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out,
                    int is_max) {
  const dynq__tensor_t *x = in[0];
  pgeom_t g;
  int64_t od[5];
  int rc;
  if ((rc = pool_geom(c, x, &g, od))) return rc;
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, x->rank, od, 0))) return rc;
  const int colmajor = c->st->pool.storage_order == 1, incl = c->st->pool.count_include_pad;
  if (is_max && c->node->n_out > 1) {
    if ((rc = dynq__op_alloc(c, &out[1], DYNQ_DT_I64, x->rank, od, 0))) return rc;
    pool_planes(&g, x->data, out->data, out[1].data, 2, colmajor, incl);
  } else if (is_max) {
    pool_planes(&g, x->data, out->data, NULL, 1, colmajor, incl);
  } else {
    pool_planes(&g, x->data, out->data, NULL, 0, colmajor, incl);
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
