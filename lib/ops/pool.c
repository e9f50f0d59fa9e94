/*
 * Pooling: MaxPool, AveragePool and LpPool over 1-D, 2-D and 3-D windows,
 * and the global forms that reduce every spatial axis to 1.  FP32 only
 * (pooling has no weights to quantize).
 *
 * Window attributes come from the importer per spatial axis ("<name>0",
 * "<name>1", "<name>2"; axis 0 is the first spatial axis), as for Conv.  A
 * 1-D or 2-D pool runs as a 3-D one with unit leading axes (PyTorch
 * exports LocalResponseNorm as a 3-D AveragePool over [N, 1, C, H, W]).  Padding never contributes a
 * value: MaxPool ignores it, AveragePool divides by the number of input
 * elements in the window unless count_include_pad (then by the window's
 * taps within the padded input, as PyTorch and ONNX Runtime do; with
 * dilations, opset 19, the taps d apart).
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
 *
 * LpPool and GlobalLpPool (opsets 1 to 18): (sum of |x|^p over the
 * window)^(1/p), p an integer in [1, DYNQ_LP_MAX_P] (opset 1's float p
 * arrives as one: models/import_tf.c), summed in double: p = 2 cannot
 * overflow for any float32 input (ONNX Runtime sums in float).  Padding
 * counts as zeros (it adds nothing), a window of padding only gives 0.
 *
 * A window is visited only where it overlaps the input (a kernel of 65536
 * over a padded axis of 2 reads 2 values, not 65536 checks), and the
 * loops poll the run's stop every DYNQ_POOL_POLL window reads.  MaxPool
 * (without Indices) and AveragePool run the windows that lie wholly in
 * the input along the last axis tap by tap over a whole output row
 * (tap_max, tap_sum: vectorized across outputs, the same operations in
 * the same order, so the same bits); the edges window by window.
 */
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dynq/errors.h"
#include "kernels/clones.h"

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
  int64_t lp = dynq__node_attr_i(n, "p", 2);
  p->p = lp >= 1 && lp <= DYNQ_LP_MAX_P ? (int)lp : 0; /* 0: refused (check_lp, run) */
  return 0;
}

/* LpPool's, GlobalLpPool's and LpNormalization's p. */
int dynq__check_lp(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  int64_t p = dynq__node_attr_i(n, "p", 2);
  if (n->op == DYNQ_OP_LP_NORM)
    DYNQ_OP_CHECK(p == 1 || p == 2, "p %lld: 1 or 2 expected", (long long)p);
  DYNQ_OP_CHECK(p >= 1 && p <= DYNQ_LP_MAX_P, "p %lld is not within [1, %d]", (long long)p,
                DYNQ_LP_MAX_P);
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
  if (n->op == DYNQ_OP_LP_POOL) {
    int rc = dynq__check_lp(g, n, err, errlen);
    if (rc) return rc;
  }
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

/* The taps of a window starting at o along axis a that fall within the
 * padded input (count_include_pad's divisor): all k but where ceil_mode's
 * last window runs past the end padding.  Undilated, min(o + k, lim) - o. */
static int64_t padded_span(const pgeom_t *g, int a, int64_t o) {
  int64_t lim = g->in[a] + g->pe[a], d = g->d[a];
  if (d == 1) {
    int64_t end = o + g->k[a];
    return (end < lim ? end : lim) - o;
  }
  int64_t n = lim > o ? (lim - o + d - 1) / d : 0;
  return n < g->k[a] ? n : g->k[a];
}

/* What a window computes (pool_planes' mode). */
enum { POOL_AVG, POOL_MAX, POOL_MAX_IDX, POOL_LP };

/* Window reads (plus one per output) between polls of the run's stop. */
#define DYNQ_POOL_POLL 65536

/* The taps e in [*lo, *hi) of a window starting at o (kernel k, dilation
 * d) that fall within an axis of n; none when *lo >= *hi. */
static void window_taps(int64_t o, int64_t k, int64_t d, int64_t n, int64_t *lo, int64_t *hi) {
  int64_t first = o >= 0 ? 0 : (-o + d - 1) / d, end = o > n - 1 ? 0 : (n - 1 - o) / d + 1;
  *lo = first;
  *hi = end < k ? end : k;
}

/* a^p for a >= 0 (or NaN) and p >= 1, by squaring. */
static inline double lp_pow(double a, int p) {
  if (p == 1) return a;
  if (p == 2) return a * a;
  double r = 1;
  for (;;) {
    if (p & 1) r *= a;
    p >>= 1;
    if (p == 0) return r;
    a *= a;
  }
}

/* s^(1/p) as float32. */
static inline float lp_root(double s, int p) {
  return (float)(p == 1 ? s : p == 2 ? sqrt(s) : pow(s, 1.0 / p));
}

/* One tap of every window of an output row's interior: y[i] takes
 * x[i * s] (the tap's input for output i) into its max or its sum.  Run
 * tap by tap in the windows' order, this is what the per-window loop
 * computes, in the same order: the same bits, with the outputs side by
 * side in vectors (built per ISA and picked at load). */
#define POOL_ROW DYNQ_CLONES DYNQ_VEC_OPT
POOL_ROW static void tap_max(float *y, const float *x, int64_t n, int64_t s) {
  if (s == 1) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > y[i] || x[i] != x[i] ? x[i] : y[i];
  } else if (s == 2) {
    for (int64_t i = 0; i < n; i++)
      y[i] = x[2 * i] > y[i] || x[2 * i] != x[2 * i] ? x[2 * i] : y[i];
  } else {
    for (int64_t i = 0; i < n; i++)
      y[i] = x[i * s] > y[i] || x[i * s] != x[i * s] ? x[i * s] : y[i];
  }
}

POOL_ROW static void tap_sum(float *y, const float *x, int64_t n, int64_t s) {
  if (s == 1) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
  } else if (s == 2) {
    for (int64_t i = 0; i < n; i++) y[i] += x[2 * i];
  } else {
    for (int64_t i = 0; i < n; i++) y[i] += x[i * s];
  }
}

/* The outputs [*lo, *hi) along the last axis whose windows lie wholly in
 * the input (none when *lo >= *hi). */
static void interior(const pgeom_t *g, int64_t *lo, int64_t *hi) {
  int64_t last = g->in[2] - 1 - (g->k[2] - 1) * g->d[2] + g->pb[2];
  *lo = (g->pb[2] + g->s[2] - 1) / g->s[2];
  *hi = last >= 0 ? last / g->s[2] + 1 : 0;
  if (*hi > g->out[2]) *hi = g->out[2];
}

/* The windows of every plane (mode POOL_*; POOL_MAX_IDX: with the index
 * into pi; POOL_LP: of order lp).  Inlined per mode (a constant): the
 * index bookkeeping costs nothing where no Indices output is wanted.  0,
 * or the code the run stopped with. */
static inline __attribute__((always_inline)) int pool_planes(dynq__op_ctx_t *c,
                                                            const pgeom_t *gp, const float *px,
                                                            float *py, int64_t *pi,
                                                            const int mode, int colmajor,
                                                            int incl, int lp) {
  const pgeom_t g = *gp;
  const int64_t iplane = g.in[0] * g.in[1] * g.in[2], oplane = g.out[0] * g.out[1] * g.out[2];
  int64_t work = 0;
  int rc;
  for (int64_t p = 0; p < g.nc; p++) {
    const float *xs = px + p * iplane;
    float *ys = py + p * oplane;
    for (int64_t oz = 0; oz < g.out[0]; oz++) {
      int64_t z0 = oz * g.s[0] - g.pb[0], e0, e1;
      window_taps(z0, g.k[0], g.d[0], g.in[0], &e0, &e1);
      for (int64_t oy = 0; oy < g.out[1]; oy++) {
        int64_t y0 = oy * g.s[1] - g.pb[1], a0, a1;
        window_taps(y0, g.k[1], g.d[1], g.in[1], &a0, &a1);
        int64_t lo = 0, hi = 0;
        if (mode == POOL_MAX || mode == POOL_AVG) interior(&g, &lo, &hi);
        for (int64_t ox = 0; ox < g.out[2]; ox++) {
          if (ox == lo && hi > lo) {  /* the interior, tap by tap */
            float *yr = ys + (oz * g.out[1] + oy) * g.out[2];
            int64_t n = hi - lo, cnt = (e1 - e0) * (a1 - a0) * g.k[2];
            for (int64_t i = lo; i < hi; i++) yr[i] = mode == POOL_MAX ? -INFINITY : 0.0f;
            for (int64_t e = e0; e < e1; e++)
              for (int64_t a = a0; a < a1; a++) {
                const float *row = xs + ((z0 + e * g.d[0]) * g.in[1] + y0 + a * g.d[1]) * g.in[2];
                for (int64_t b = 0; b < g.k[2]; b++) {
                  const float *src = row + lo * g.s[2] - g.pb[2] + b * g.d[2];
                  if (mode == POOL_MAX)
                    tap_max(yr + lo, src, n, g.s[2]);
                  else
                    tap_sum(yr + lo, src, n, g.s[2]);
                }
              }
            for (int64_t i = lo; mode == POOL_AVG && i < hi; i++) {
              int64_t div = cnt;
              if (incl)
                div = padded_span(&g, 0, z0) * padded_span(&g, 1, y0) *
                      padded_span(&g, 2, i * g.s[2] - g.pb[2]);
              yr[i] = div > 0 ? yr[i] / (float)div : 0.0f;
            }
            if ((work += n * (cnt + 1)) >= DYNQ_POOL_POLL) {
              work = 0;
              if ((rc = dynq__op_poll(c)) != 0) return rc;
            }
            ox = hi - 1;
            continue;
          }
          int64_t x0 = ox * g.s[2] - g.pb[2], b0, b1;
          window_taps(x0, g.k[2], g.d[2], g.in[2], &b0, &b1);
          float mx = -INFINITY, sum = 0.0f;
          double lsum = 0;
          int64_t cnt = 0, at = -1;
          for (int64_t e = e0; e < e1; e++) {
            int64_t z = z0 + e * g.d[0];
            for (int64_t a = a0; a < a1; a++) {
              int64_t y = y0 + a * g.d[1];
              const float *row = xs + (z * g.in[1] + y) * g.in[2];
              for (int64_t b = b0; b < b1; b++) {
                int64_t xx = x0 + b * g.d[2];
                float v = row[xx];
                if (mode == POOL_MAX) {
                  if (v > mx || v != v) mx = v; /* NaN propagates */
                } else if (mode == POOL_MAX_IDX) {
                  /* the first maximum; a NaN propagates (the first one) */
                  if (cnt == 0 || v > mx || (v != v && mx == mx)) {
                    mx = v;
                    at = colmajor ? z + g.in[0] * (y + g.in[1] * xx) : (z * g.in[1] + y) * g.in[2] + xx;
                  }
                } else if (mode == POOL_LP) {
                  lsum += lp_pow(fabs((double)v), lp);
                } else {
                  sum += v;
                }
                cnt++;
              }
            }
          }
          float *yo = ys + (oz * g.out[1] + oy) * g.out[2] + ox;
          if (mode == POOL_MAX || mode == POOL_MAX_IDX) {
            *yo = mx;
            /* a window of padding only (cnt 0) points nowhere: -1 */
            if (mode == POOL_MAX_IDX) pi[yo - py] = at >= 0 ? p * iplane + at : -1;
          } else if (mode == POOL_LP) {
            *yo = lp_root(lsum, lp);
          } else {
            int64_t div = cnt;
            if (incl) /* the window clipped to the padded input */
              div = padded_span(&g, 0, z0) * padded_span(&g, 1, y0) * padded_span(&g, 2, x0);
            *yo = div > 0 ? sum / (float)div : 0.0f;
          }
          if ((work += cnt + 1) >= DYNQ_POOL_POLL) {
            work = 0;
            if ((rc = dynq__op_poll(c)) != 0) return rc;
          }
        }
      }
    }
  }
  return 0;
}

static int run_pool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out,
                    int mode) {
  const dynq__tensor_t *x = in[0];
  const dynq__pool_attrs_t *pa = &c->st->pool;
  pgeom_t g;
  int64_t od[5];
  int rc;
  if (mode == POOL_LP && pa->p < 1) return dynq__op_fail(c, DYNQ_EGRAPH, "p outside [1, %d]",
                                                        DYNQ_LP_MAX_P);
  if ((rc = pool_geom(c, x, &g, od))) return rc;
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, x->rank, od, 0))) return rc;
  const int colmajor = pa->storage_order == 1, incl = pa->count_include_pad;
  if (mode == POOL_MAX && c->node->n_out > 1) {
    if ((rc = dynq__op_alloc(c, &out[1], DYNQ_DT_I64, x->rank, od, 0)) == 0)
      rc = pool_planes(c, &g, x->data, out->data, out[1].data, POOL_MAX_IDX, colmajor, incl, 0);
  } else if (mode == POOL_MAX) {
    rc = pool_planes(c, &g, x->data, out->data, NULL, POOL_MAX, colmajor, incl, 0);
  } else if (mode == POOL_LP) {
    rc = pool_planes(c, &g, x->data, out->data, NULL, POOL_LP, colmajor, incl, pa->p);
  } else {
    rc = pool_planes(c, &g, x->data, out->data, NULL, POOL_AVG, colmajor, incl, 0);
  }
  if (rc != 0) { /* a failed op leaves no output */
    dynq__tensor_clear(&out[0]);
    if (mode == POOL_MAX && c->node->n_out > 1) dynq__tensor_clear(&out[1]);
  }
  return rc;
}

int dynq__run_maxpool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  return run_pool(c, in, out, POOL_MAX);
}

int dynq__run_avgpool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  return run_pool(c, in, out, POOL_AVG);
}

int dynq__run_lppool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  return run_pool(c, in, out, POOL_LP);
}

/* GlobalAveragePool / GlobalMaxPool / GlobalLpPool (mode POOL_AVG,
 * POOL_MAX, POOL_LP): [N, C, d...] -> [N, C, 1...]. */
static int run_global(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out,
                      int mode) {
  const dynq__tensor_t *x = in[0];
  const int lp = c->st->pool.p;
  int rc;
  char s[128];
  if (mode == POOL_LP && lp < 1)
    return dynq__op_fail(c, DYNQ_EGRAPH, "p outside [1, %d]", DYNQ_LP_MAX_P);
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
    if (mode == POOL_LP) {
      double t = 0;
      for (int64_t i = 0; i < sp; i++) t += lp_pow(fabs((double)r[i]), lp);
      py[p] = lp_root(t, lp);
    } else if (mode == POOL_MAX) {
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
  return run_global(c, in, out, POOL_AVG);
}

int dynq__run_global_maxpool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                             dynq__tensor_t *out) {
  return run_global(c, in, out, POOL_MAX);
}

int dynq__run_global_lppool(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                            dynq__tensor_t *out) {
  return run_global(c, in, out, POOL_LP);
}
