/*
 * The ONNX audio front-end ops, opset 17 semantics: DFT, STFT, the
 * HannWindow / HammingWindow / BlackmanWindow generators and
 * MelWeightMatrix.  Float32 in and out; the transforms run in double.
 *
 * The FFT: a length n whose prime factors are all at most FFT_RADIX_MAX
 * runs as a mixed-radix decimation-in-time Cooley-Tukey FFT (radix 4 and
 * 2 butterflies written out, other radices as their small DFT); any other
 * length by Bluestein's chirp-z algorithm, a circular convolution of
 * power-of-two length m >= 2n - 1 through that FFT.  Both are O(n log n).
 * A plan holds the twiddles e^{-2 pi i j / n} (computed from j / n, so
 * each is correctly rounded in double) and, for Bluestein, the chirp and
 * the transform of its conjugate.  Prepare builds the plan when the
 * length is known at load (a constant dft_length or frame_length, or a
 * window of static length) and small enough (PREP_PLAN_MAX); otherwise a
 * run builds and frees its own, its bytes checked against the run's cap
 * first.  Inverse transforms are conj(FFT(conj(x))) / n.  Against numpy's
 * FFT (double) the float32 outputs differ by about one float rounding.
 *
 * The windows follow the schema's function body: w[k] = a0 - a1 cos(k t)
 * + a2 cos(2 k t), t = 2 pi / N, N = size (periodic) or size - 1
 * (symmetric); Hann (0.5, 0.5, 0), Hamming (25/46, 21/46, 0), Blackman
 * (0.42, 0.5, 0.08).  A symmetric window of size 1 is w[0] = a0 - a1 + a2
 * (the k = 0 term; the formula's 0 / 0 is taken as its limit).
 * MelWeightMatrix is the onnx reference's construction: num_mel_bins + 2
 * band edges equally spaced in mel = 2595 log10(1 + f / 700) from lower
 * to upper edge (step (high - low) / (num_mel_bins + 2), as the
 * reference has it), each edge at bin floor((dft_length + 1) f /
 * sample_rate), triangles of peak 1 between consecutive edges.
 */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"

typedef struct cpx {
  double re, im;
} cpx_t;

/* Radices the direct FFT takes; a larger prime factor means Bluestein. */
#define FFT_RADIX_MAX 31
/* The longest transform: past it a length is refused as absurd (ops.h). */
#define FFT_MAX_LEN DYNQ_FFT_MAX_LEN
/* Plans up to this length are built at load when the length is known. */
#define PREP_PLAN_MAX ((int64_t)1 << 16)

struct dynq__fft {
  int64_t n;
  int nf;
  int64_t fac[64];
  cpx_t *tw;             /* direct: e^{-2 pi i j / n}, j < n */
  struct dynq__fft *sub; /* Bluestein: the m-point plan */
  int64_t m;
  cpx_t *chirp;          /* e^{-pi i j^2 / n}, j < n */
  cpx_t *bhat;           /* FFT of the conjugate chirp (circular, length m), / m */
};

static void fft_free(struct dynq__fft *p) {
  if (p == NULL) return;
  fft_free(p->sub);
  free(p->tw);
  free(p->chirp);
  free(p->bhat);
  free(p);
}

void dynq__spectral_release(dynq__opstate_t *st) {
  fft_free(st->spectral.plan);
  st->spectral.plan = NULL;
}

/* n's prime factors, radix 4 first; 0 when one is over FFT_RADIX_MAX. */
static int factorize(int64_t n, int64_t *fac, int *nf) {
  int k = 0;
  while (n % 4 == 0) fac[k++] = 4, n /= 4;
  while (n % 2 == 0) fac[k++] = 2, n /= 2;
  for (int64_t p = 3; p <= FFT_RADIX_MAX && n > 1; p += 2)
    while (n % p == 0) fac[k++] = p, n /= p;
  *nf = k;
  return n == 1;
}

static int64_t pow2_at_least(int64_t x) {
  int64_t m = 1;
  while (m < x) m <<= 1;
  return m;
}

/* Complex values building a plan of length n takes at most (before
 * building it): the twiddles; or the chirp, the m-point plan's twiddles,
 * the transformed chirp and, while that is made, the chirp padded to m. */
static int64_t plan_cpx(int64_t n) {
  int64_t fac[64];
  int nf;
  if (factorize(n, fac, &nf)) return n;
  int64_t m = pow2_at_least(2 * n - 1);
  return n + 3 * m;
}

/* Scratch complex values a transform of length n needs besides its
 * input and output. */
static int64_t plan_scratch(int64_t n) {
  int64_t fac[64];
  int nf;
  if (factorize(n, fac, &nf)) return 0;
  return 2 * pow2_at_least(2 * n - 1);
}

static cpx_t cis(double a) { return (cpx_t){cos(a), sin(a)}; }

static void fft_run(const struct dynq__fft *p, const cpx_t *in, cpx_t *out, cpx_t *scratch);

static struct dynq__fft *fft_plan(int64_t n) {
  struct dynq__fft *p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  p->n = n;
  if (factorize(n, p->fac, &p->nf)) {
    p->tw = malloc((size_t)n * sizeof(cpx_t));
    if (p->tw == NULL) goto fail;
    /* the angle from j / n reduced to [0, 1): each twiddle as accurate as cos and sin */
    for (int64_t j = 0; j < n; j++) p->tw[j] = cis(-2.0 * M_PI * ((double)j / (double)n));
    return p;
  }
  p->m = pow2_at_least(2 * n - 1);
  p->sub = fft_plan(p->m);
  p->chirp = malloc((size_t)n * sizeof(cpx_t));
  p->bhat = malloc((size_t)p->m * sizeof(cpx_t));
  cpx_t *b = malloc((size_t)p->m * sizeof(cpx_t));
  if (p->sub == NULL || p->chirp == NULL || p->bhat == NULL || b == NULL) {
    free(b);
    goto fail;
  }
  for (int64_t j = 0; j < n; j++) {
    /* j^2 mod 2n keeps the angle exact before the one rounding (j^2 <
     * 2^40: n is at most FFT_MAX_LEN) */
    const int64_t q = (j * j) % (2 * n);
    p->chirp[j] = cis(-M_PI * ((double)q / (double)n));
  }
  memset(b, 0, (size_t)p->m * sizeof(cpx_t));
  for (int64_t j = 0; j < n; j++) {
    cpx_t w = {p->chirp[j].re, -p->chirp[j].im};
    b[j] = w;
    if (j > 0) b[p->m - j] = w;
  }
  fft_run(p->sub, b, p->bhat, NULL);
  for (int64_t j = 0; j < p->m; j++) {
    p->bhat[j].re /= (double)p->m;
    p->bhat[j].im /= (double)p->m;
  }
  free(b);
  return p;
fail:
  fft_free(p);
  return NULL;
}

/* The DFT of in[0], in[stride], ..., in[(len-1) stride] into out[0..len),
 * len the product of fac[f..]: the len / r-point DFTs of the r decimated
 * sequences into consecutive blocks of out, then the radix-r butterflies
 * in place (block q's element k with twiddle W_len^{qk}). */
static void fft_rec(const struct dynq__fft *p, const cpx_t *in, int64_t stride, cpx_t *out,
                    int64_t len, int f) {
  if (len == 1) {
    out[0] = in[0];
    return;
  }
  const int64_t r = p->fac[f], m = len / r, tstep = p->n / len;
  for (int64_t q = 0; q < r; q++) fft_rec(p, in + q * stride, stride * r, out + q * m, m, f + 1);
  const cpx_t *tw = p->tw;
  for (int64_t k = 0; k < m; k++) {
    cpx_t t[FFT_RADIX_MAX + 1];
    t[0] = out[k];
    for (int64_t q = 1; q < r; q++) {
      const cpx_t y = out[q * m + k], w = tw[q * k * tstep];
      t[q] = (cpx_t){y.re * w.re - y.im * w.im, y.re * w.im + y.im * w.re};
    }
    if (r == 2) {
      out[k] = (cpx_t){t[0].re + t[1].re, t[0].im + t[1].im};
      out[k + m] = (cpx_t){t[0].re - t[1].re, t[0].im - t[1].im};
    } else if (r == 4) {
      const cpx_t a = {t[0].re + t[2].re, t[0].im + t[2].im};
      const cpx_t b = {t[0].re - t[2].re, t[0].im - t[2].im};
      const cpx_t cc = {t[1].re + t[3].re, t[1].im + t[3].im};
      const cpx_t d = {t[1].re - t[3].re, t[1].im - t[3].im};
      out[k] = (cpx_t){a.re + cc.re, a.im + cc.im};
      out[k + 2 * m] = (cpx_t){a.re - cc.re, a.im - cc.im};
      out[k + m] = (cpx_t){b.re + d.im, b.im - d.re};     /* b - i d */
      out[k + 3 * m] = (cpx_t){b.re - d.im, b.im + d.re}; /* b + i d */
    } else {
      const int64_t wstep = p->n / r; /* W_r^e = tw[e * wstep] */
      for (int64_t s = 0; s < r; s++) {
        double re = 0, im = 0;
        for (int64_t q = 0; q < r; q++) {
          const cpx_t w = tw[((q * s) % r) * wstep];
          re += t[q].re * w.re - t[q].im * w.im;
          im += t[q].re * w.im + t[q].im * w.re;
        }
        out[k + s * m] = (cpx_t){re, im};
      }
    }
  }
}

/* out[0..n) = the forward DFT of in[0..n) (in and out distinct);
 * scratch holds plan_scratch(n) values (NULL when 0). */
static void fft_run(const struct dynq__fft *p, const cpx_t *in, cpx_t *out, cpx_t *scratch) {
  if (p->tw != NULL) {
    fft_rec(p, in, 1, out, p->n, 0);
    return;
  }
  /* Bluestein: X[k] = c_k sum_j (x_j c_j) conj(c_{k-j}), a circular
   * convolution of length m, through the m-point FFT */
  const int64_t n = p->n, m = p->m;
  cpx_t *a = scratch, *fa = scratch + m;
  for (int64_t j = 0; j < n; j++) {
    const cpx_t x = in[j], w = p->chirp[j];
    a[j] = (cpx_t){x.re * w.re - x.im * w.im, x.re * w.im + x.im * w.re};
  }
  memset(a + n, 0, (size_t)(m - n) * sizeof(cpx_t));
  fft_run(p->sub, a, fa, NULL);
  for (int64_t j = 0; j < m; j++) {
    const cpx_t x = fa[j], w = p->bhat[j];
    /* the product, conjugated for the inverse transform that follows */
    fa[j] = (cpx_t){x.re * w.re - x.im * w.im, -(x.re * w.im + x.im * w.re)};
  }
  fft_run(p->sub, fa, a, NULL);
  for (int64_t k = 0; k < n; k++) {
    const cpx_t x = {a[k].re, -a[k].im}, w = p->chirp[k];
    out[k] = (cpx_t){x.re * w.re - x.im * w.im, x.re * w.im + x.im * w.re};
  }
}

/* ---- reading the small inputs ---- */

/* A scalar (rank 0, or one value of rank 1) int32/int64 input. */
static int read_scalar_i(dynq__op_ctx_t *c, const dynq__tensor_t *t, int idx, const char *what,
                         int64_t *ret) {
  char s[96];
  int rc;
  if ((rc = dynq__op_need_present(c, t, idx))) return rc;
  if (t->dtype != DYNQ_DT_I64 && t->dtype != DYNQ_DT_I32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "%s must be int32 or int64, is %s", what,
                         dynq__dtype_name(t->dtype));
  if (t->rank > 1 || dynq__tensor_numel(t) != 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "%s must be a scalar, has shape %s", what,
                         dynq__shape_str(s, sizeof s, t->rank, t->dims));
  *ret = dynq__load_i(t->data, t->dtype, 0);
  return 0;
}

static int read_scalar_f(dynq__op_ctx_t *c, const dynq__tensor_t *t, int idx, const char *what,
                         double *ret) {
  char s[96];
  int rc;
  if ((rc = dynq__op_need_present(c, t, idx))) return rc;
  if (t->dtype != DYNQ_DT_F32)
    return dynq__op_fail(c, DYNQ_EDTYPE, "%s must be float32, is %s", what,
                         dynq__dtype_name(t->dtype));
  if (t->rank > 1 || dynq__tensor_numel(t) != 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "%s must be a scalar, has shape %s", what,
                         dynq__shape_str(s, sizeof s, t->rank, t->dims));
  *ret = ((const float *)t->data)[0];
  return 0;
}

/* The one int of constant value v of g, if it is one; else 0. */
static int const_scalar_i(const dynq__graph_t *g, int v, int64_t *ret) {
  if (g == NULL || v < 0 || v >= g->n_values) return 0;
  const dynq__value_t *x = &g->values[v];
  if (x->data == NULL || (x->dtype != DYNQ_DT_I64 && x->dtype != DYNQ_DT_I32) || x->rank > 1 ||
      x->rank < 0 || dynq__shape_numel(x->rank, x->dims) != 1)
    return 0;
  *ret = dynq__load_i(x->data, x->dtype, 0);
  return 1;
}

static int in_at(const dynq__node_t *n, int k) { return k < n->n_in ? n->in[k] : -1; }

/* ---- load time ---- */

static int out_dtype_ok(int64_t dt) {
  return dt == DYNQ_DT_F32 || dt == DYNQ_DT_I8 || dt == DYNQ_DT_U8 || dt == DYNQ_DT_I32 ||
         dt == DYNQ_DT_I64;
}

int dynq__check_spectral(const dynq__graph_t *g, const dynq__node_t *n, char *err,
                         size_t errlen) {
  int64_t v;
  switch (n->op) {
  case DYNQ_OP_DFT: {
    const int64_t inv = dynq__node_attr_i(n, "inverse", 0);
    const int64_t one = dynq__node_attr_i(n, "onesided", 0);
    DYNQ_OP_CHECK(inv == 0 || inv == 1, "inverse %lld must be 0 or 1", (long long)inv);
    DYNQ_OP_CHECK(one == 0 || one == 1, "onesided %lld must be 0 or 1", (long long)one);
    if (const_scalar_i(g, in_at(n, 1), &v))
      DYNQ_OP_CHECK(v >= 1 && v <= FFT_MAX_LEN, "dft_length %lld is not within [1, %lld]",
                    (long long)v, (long long)FFT_MAX_LEN);
    break;
  }
  case DYNQ_OP_STFT: {
    const int64_t one = dynq__node_attr_i(n, "onesided", 1);
    DYNQ_OP_CHECK(one == 0 || one == 1, "onesided %lld must be 0 or 1", (long long)one);
    if (const_scalar_i(g, in_at(n, 1), &v))
      DYNQ_OP_CHECK(v >= 1, "frame_step %lld must be at least 1", (long long)v);
    if (const_scalar_i(g, in_at(n, 3), &v))
      DYNQ_OP_CHECK(v >= 1 && v <= FFT_MAX_LEN, "frame_length %lld is not within [1, %lld]",
                    (long long)v, (long long)FFT_MAX_LEN);
    break;
  }
  case DYNQ_OP_HANN_WINDOW:
  case DYNQ_OP_HAMMING_WINDOW:
  case DYNQ_OP_BLACKMAN_WINDOW: {
    const int64_t per = dynq__node_attr_i(n, "periodic", 1);
    DYNQ_OP_CHECK(per == 0 || per == 1, "periodic %lld must be 0 or 1", (long long)per);
  }
  /* fall through */
  case DYNQ_OP_MEL_WEIGHT_MATRIX: {
    const int64_t dt = dynq__node_attr_i(n, "dtype", DYNQ_DT_F32);
    DYNQ_OP_CHECK(out_dtype_ok(dt), "dtype %lld is not float32, int8, uint8, int32 or int64",
                  (long long)dt);
    break;
  }
  default: break;
  }
  return 0;
}

int dynq__prep_spectral(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                        char *err, size_t errlen) {
  (void)err, (void)errlen;
  int64_t len = 0;
  switch (n->op) {
  case DYNQ_OP_DFT: {
    st->spectral.axis = dynq__node_attr_i(n, "axis", 1);
    st->spectral.inverse = dynq__node_attr_i(n, "inverse", 0) != 0;
    st->spectral.onesided = dynq__node_attr_i(n, "onesided", 0) != 0;
    int x = in_at(n, 0);
    if (in_at(n, 1) >= 0) {
      if (!const_scalar_i(g, in_at(n, 1), &len)) len = 0;
    } else if (g != NULL && x >= 0 && x < g->n_values && g->values[x].rank >= 2) {
      /* no dft_length: the axis's length, when the graph fixes it */
      const dynq__value_t *v = &g->values[x];
      int64_t a = st->spectral.axis < 0 ? st->spectral.axis + v->rank : st->spectral.axis;
      if (a >= 0 && a <= v->rank - 2) len = v->dims[a]; /* -1 when symbolic */
    }
    break;
  }
  case DYNQ_OP_STFT: {
    st->spectral.onesided = dynq__node_attr_i(n, "onesided", 1) != 0;
    int w = in_at(n, 2);
    if (!const_scalar_i(g, in_at(n, 3), &len)) len = 0;
    if (len == 0 && g != NULL && w >= 0 && w < g->n_values && g->values[w].rank == 1)
      len = g->values[w].dims[0]; /* -1 when symbolic */
    break;
  }
  default:
    st->spectral.periodic = dynq__node_attr_i(n, "periodic", 1) != 0;
    st->spectral.dtype = (int)dynq__node_attr_i(n, "dtype", DYNQ_DT_F32);
    return 0;
  }
  /* a plan made once for the length known now; a failed allocation
   * leaves it to each run */
  if (len >= 1 && len <= PREP_PLAN_MAX) st->spectral.plan = fft_plan(len);
  return 0;
}

/* ---- the transforms ---- */

typedef struct xform {
  const struct dynq__fft *plan;
  struct dynq__fft *own;  /* built for this run */
  cpx_t *buf;             /* input, output, then the plan's scratch */
} xform_t;

static void xform_free(xform_t *x) {
  fft_free(x->own);
  free(x->buf);
}

/* The plan for length n (the prepared one, or a new one) and the buffers
 * of one transform, their bytes checked against the run's cap first. */
static int xform_init(dynq__op_ctx_t *c, int64_t n, const char *what, xform_t *x) {
  memset(x, 0, sizeof(*x));
  if (n < 1 || n > FFT_MAX_LEN)
    return dynq__op_fail(c, DYNQ_ESHAPE, "%s %lld is not within [1, %lld]", what, (long long)n,
                         (long long)FFT_MAX_LEN);
  const struct dynq__fft *p = c->st->spectral.plan;
  int rc;
  if (p == NULL || p->n != n) {
    if ((rc = dynq__op_check_bytes(c, plan_cpx(n), (int64_t)sizeof(cpx_t), "an FFT plan")))
      return rc;
    x->own = fft_plan(n);
    if (x->own == NULL) return dynq__op_fail(c, -ENOMEM, "out of memory (an FFT plan of %lld "
                                             "points)", (long long)n);
    p = x->own;
  }
  x->plan = p;
  const int64_t nb = 2 * n + plan_scratch(n);
  if ((rc = dynq__op_check_bytes(c, nb, (int64_t)sizeof(cpx_t), "FFT scratch"))) {
    xform_free(x);
    return rc;
  }
  x->buf = malloc((size_t)nb * sizeof(cpx_t));
  if (x->buf == NULL) {
    xform_free(x);
    return dynq__op_fail(c, -ENOMEM, "out of memory");
  }
  return 0;
}

/* One transform of the values x->buf[0..n): the result at x->buf + n.
 * inverse: conj(FFT(conj(x))) / n. */
static const cpx_t *xform_run(xform_t *x, int inverse) {
  const int64_t n = x->plan->n;
  cpx_t *in = x->buf, *out = x->buf + n;
  if (inverse)
    for (int64_t j = 0; j < n; j++) in[j].im = -in[j].im;
  fft_run(x->plan, in, out, x->buf + 2 * n);
  if (inverse)
    for (int64_t j = 0; j < n; j++) {
      out[j].re /= (double)n;
      out[j].im = -out[j].im / (double)n;
    }
  return out;
}

/* DFT(input [batch, signal..., 1 or 2], dft_length?): the transform along
 * `axis` (of the input's axes, not the last), zero-padded or truncated to
 * dft_length; output [..., n or n / 2 + 1 (onesided), ..., 2]. */
int dynq__run_dft(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  char s[96];
  const dynq__tensor_t *x = in[0];
  if ((rc = dynq__op_need_present(c, x, 0)) || (rc = dynq__op_need_f32(c, x, 0))) return rc;
  const int r = x->rank;
  if (r < 2 || (x->dims[r - 1] != 1 && x->dims[r - 1] != 2))
    return dynq__op_fail(c, DYNQ_ESHAPE, "input %s must be [batch, signal..., 1 or 2] "
                         "(real or complex)", dynq__shape_str(s, sizeof s, r, x->dims));
  const int64_t comp = x->dims[r - 1];
  int64_t ax = c->st->spectral.axis;
  if (ax < 0) ax += r;
  if (ax < 0 || ax > r - 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "axis %lld is not an axis of input %s other than the "
                         "last", (long long)c->st->spectral.axis,
                         dynq__shape_str(s, sizeof s, r, x->dims));
  const int inverse = c->st->spectral.inverse, onesided = c->st->spectral.onesided;
  if (onesided && comp == 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "onesided output needs a real input, the input %s "
                         "is complex", dynq__shape_str(s, sizeof s, r, x->dims));
  const int64_t nin = x->dims[ax];
  int64_t n = nin;
  if (c->node->n_in > 1 && in[1] != NULL) {
    if ((rc = read_scalar_i(c, in[1], 1, "dft_length", &n))) return rc;
    if (n < 1 || n > FFT_MAX_LEN)
      return dynq__op_fail(c, DYNQ_ESHAPE, "dft_length %lld is not within [1, %lld]",
                           (long long)n, (long long)FFT_MAX_LEN);
  }
  if (n < 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "axis %lld of input %s is empty", (long long)ax,
                         dynq__shape_str(s, sizeof s, r, x->dims));
  const int64_t nout = onesided ? n / 2 + 1 : n;
  int64_t od[DYNQ_MAX_RANK];
  memcpy(od, x->dims, sizeof od);
  od[ax] = nout;
  od[r - 1] = 2;
  if (dynq__shape_numel(r, od) < 0) return dynq__op_fail(c, DYNQ_ELIMIT, "output too large");
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, r, od, 0))) return rc;
  xform_t t;
  if ((rc = xform_init(c, n, "dft_length", &t))) {
    dynq__tensor_clear(out);
    return rc;
  }
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < ax; d++) outer *= x->dims[d];
  for (int d = ax + 1; d < r - 1; d++) inner *= x->dims[d];
  const float *xp = x->data;
  float *yp = out->data;
  const int64_t keep = nin < n ? nin : n;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      for (int64_t j = 0; j < keep; j++) {
        const float *e = xp + ((o * nin + j) * inner + i) * comp;
        t.buf[j] = (cpx_t){e[0], comp == 2 ? e[1] : 0.0};
      }
      for (int64_t j = keep; j < n; j++) t.buf[j] = (cpx_t){0, 0};
      const cpx_t *X = xform_run(&t, inverse);
      for (int64_t k = 0; k < nout; k++) {
        float *e = yp + ((o * nout + k) * inner + i) * 2;
        e[0] = (float)X[k].re;
        e[1] = (float)X[k].im;
      }
    }
  xform_free(&t);
  return 0;
}

/* STFT(signal [batch, length, 1 or 2], frame_step, window?, frame_length?):
 * output [batch, frames, bins, 2], frames = (length - frame_length) /
 * frame_step + 1, bins frame_length / 2 + 1 (onesided) or frame_length. */
int dynq__run_stft(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  char s[96];
  const dynq__tensor_t *x = in[0];
  const dynq__tensor_t *win = c->node->n_in > 2 ? in[2] : NULL;
  const dynq__tensor_t *fl = c->node->n_in > 3 ? in[3] : NULL;
  if ((rc = dynq__op_need_present(c, x, 0)) || (rc = dynq__op_need_f32(c, x, 0))) return rc;
  if (x->rank != 3 || (x->dims[2] != 1 && x->dims[2] != 2))
    return dynq__op_fail(c, DYNQ_ESHAPE, "signal %s must be [batch, length, 1 or 2]",
                         dynq__shape_str(s, sizeof s, x->rank, x->dims));
  const int64_t B = x->dims[0], L = x->dims[1], comp = x->dims[2];
  int64_t step = 0, F = -1;
  if ((rc = read_scalar_i(c, in[1], 1, "frame_step", &step))) return rc;
  if (step < 1) return dynq__op_fail(c, DYNQ_ESHAPE, "frame_step %lld must be at least 1",
                                     (long long)step);
  if (win != NULL) {
    if ((rc = dynq__op_need_f32(c, win, 2))) return rc;
    if (win->rank != 1)
      return dynq__op_fail(c, DYNQ_ESHAPE, "window %s must be 1-D",
                           dynq__shape_str(s, sizeof s, win->rank, win->dims));
  }
  if (fl != NULL) {
    if ((rc = read_scalar_i(c, fl, 3, "frame_length", &F))) return rc;
    if (F < 1 || F > FFT_MAX_LEN)
      return dynq__op_fail(c, DYNQ_ESHAPE, "frame_length %lld is not within [1, %lld]",
                           (long long)F, (long long)FFT_MAX_LEN);
    if (win != NULL && win->dims[0] != F)
      return dynq__op_fail(c, DYNQ_ESHAPE, "window has %lld values, frame_length is %lld",
                           (long long)win->dims[0], (long long)F);
  } else if (win != NULL) {
    F = win->dims[0];
    if (F < 1) return dynq__op_fail(c, DYNQ_ESHAPE, "window is empty");
  } else {
    return dynq__op_fail(c, DYNQ_EGRAPH, "needs a window or a frame_length");
  }
  if (F > L)
    return dynq__op_fail(c, DYNQ_ESHAPE, "frame_length %lld is longer than the signal (%lld "
                         "samples)", (long long)F, (long long)L);
  const int onesided = c->st->spectral.onesided;
  if (onesided && comp == 2)
    return dynq__op_fail(c, DYNQ_ESHAPE, "onesided output needs a real signal, the signal %s "
                         "is complex", dynq__shape_str(s, sizeof s, x->rank, x->dims));
  const int64_t frames = (L - F) / step + 1, bins = onesided ? F / 2 + 1 : F;
  const int64_t od[4] = {B, frames, bins, 2};
  if (dynq__shape_numel(4, od) < 0) return dynq__op_fail(c, DYNQ_ELIMIT, "output too large");
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, 4, od, 0))) return rc;
  xform_t t;
  if ((rc = xform_init(c, F, "frame_length", &t))) {
    dynq__tensor_clear(out);
    return rc;
  }
  const float *xp = x->data, *wp = win != NULL ? win->data : NULL;
  float *yp = out->data;
  for (int64_t b = 0; b < B; b++)
    for (int64_t f = 0; f < frames; f++) {
      const float *fr = xp + (b * L + f * step) * comp;
      for (int64_t j = 0; j < F; j++) {
        const double w = wp != NULL ? wp[j] : 1.0;
        t.buf[j] = (cpx_t){fr[j * comp] * w, comp == 2 ? fr[j * comp + 1] * w : 0.0};
      }
      const cpx_t *X = xform_run(&t, 0);
      float *e = yp + (b * frames + f) * bins * 2;
      for (int64_t k = 0; k < bins; k++) {
        e[2 * k] = (float)X[k].re;
        e[2 * k + 1] = (float)X[k].im;
      }
    }
  xform_free(&t);
  return 0;
}

/* ---- generators ---- */

static void store_val(void *p, dynq_dtype_t dt, int64_t i, double v) {
  if (dt == DYNQ_DT_F32) ((float *)p)[i] = (float)v;
  else dynq__store_i(p, dt, i, (int64_t)v); /* toward zero, as a Cast */
}

/* HannWindow, HammingWindow, BlackmanWindow(size): [size]. */
int dynq__run_window(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  int64_t size;
  if ((rc = read_scalar_i(c, in[0], 0, "size", &size))) return rc;
  if (size < 0 || size > DYNQ_MAX_ELEMS)
    return dynq__op_fail(c, DYNQ_ESHAPE, "size %lld is not within [0, %lld]", (long long)size,
                         (long long)DYNQ_MAX_ELEMS);
  const dynq_dtype_t dt = (dynq_dtype_t)c->st->spectral.dtype;
  if (!out_dtype_ok(dt))
    return dynq__op_fail(c, DYNQ_EDTYPE, "dtype %d is not float32, int8, uint8, int32 or int64",
                         (int)dt);
  if ((rc = dynq__op_alloc(c, out, dt, 1, &size, 0))) return rc;
  double a0, a1, a2 = 0;
  switch (c->node->op) {
  case DYNQ_OP_HANN_WINDOW: a0 = 0.5, a1 = 0.5; break;
  case DYNQ_OP_HAMMING_WINDOW: a0 = 25.0 / 46.0, a1 = 21.0 / 46.0; break;
  default: a0 = 0.42, a1 = 0.5, a2 = 0.08; break;
  }
  const int64_t N = c->st->spectral.periodic ? size : size - 1;
  for (int64_t k = 0; k < size; k++) {
    const double a = N > 0 ? 2.0 * M_PI * ((double)k / (double)N) : 0.0;
    store_val(out->data, dt, k, a0 - a1 * cos(a) + a2 * cos(2.0 * a));
  }
  return 0;
}

/* MelWeightMatrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz,
 * upper_edge_hertz): [dft_length / 2 + 1, num_mel_bins]. */
int dynq__run_melweightmatrix(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                              dynq__tensor_t *out) {
  int rc;
  int64_t nmel, dftlen, sr;
  double lo, hi;
  if ((rc = read_scalar_i(c, in[0], 0, "num_mel_bins", &nmel)) ||
      (rc = read_scalar_i(c, in[1], 1, "dft_length", &dftlen)) ||
      (rc = read_scalar_i(c, in[2], 2, "sample_rate", &sr)) ||
      (rc = read_scalar_f(c, in[3], 3, "lower_edge_hertz", &lo)) ||
      (rc = read_scalar_f(c, in[4], 4, "upper_edge_hertz", &hi)))
    return rc;
  if (nmel < 1 || nmel > DYNQ_MAX_ELEMS)
    return dynq__op_fail(c, DYNQ_ESHAPE, "num_mel_bins %lld is not within [1, %lld]",
                         (long long)nmel, (long long)DYNQ_MAX_ELEMS);
  if (dftlen < 1 || dftlen > DYNQ_MAX_ELEMS)
    return dynq__op_fail(c, DYNQ_ESHAPE, "dft_length %lld is not within [1, %lld]",
                         (long long)dftlen, (long long)DYNQ_MAX_ELEMS);
  if (sr < 1) return dynq__op_fail(c, DYNQ_ESHAPE, "sample_rate %lld must be at least 1",
                                   (long long)sr);
  if (!(lo >= 0.0) || !isfinite(hi) || !(hi >= lo))
    return dynq__op_fail(c, DYNQ_ESHAPE, "the edges %g and %g Hz must be finite with 0 <= "
                         "lower_edge_hertz <= upper_edge_hertz", lo, hi);
  const dynq_dtype_t dt = (dynq_dtype_t)c->st->spectral.dtype;
  if (!out_dtype_ok(dt))
    return dynq__op_fail(c, DYNQ_EDTYPE, "dtype %d is not float32, int8, uint8, int32 or int64",
                         (int)dt);
  const int64_t nspec = dftlen / 2 + 1, od[2] = {nspec, nmel};
  if (dynq__shape_numel(2, od) < 0) return dynq__op_fail(c, DYNQ_ELIMIT, "output too large");
  if ((rc = dynq__op_check_bytes(c, nmel + 2, (int64_t)sizeof(int64_t), "the band edges")))
    return rc;
  int64_t *edge = malloc((size_t)(nmel + 2) * sizeof(int64_t));
  if (edge == NULL) return dynq__op_fail(c, -ENOMEM, "out of memory");
  const double mlo = 2595.0 * log10(1.0 + lo / 700.0), mhi = 2595.0 * log10(1.0 + hi / 700.0);
  const double mstep = (mhi - mlo) / (double)(nmel + 2);
  for (int64_t i = 0; i < nmel + 2; i++) {
    const double hz = 700.0 * (pow(10.0, ((double)i * mstep + mlo) / 2595.0) - 1.0);
    const double b = floor((double)(dftlen + 1) * hz / (double)sr);
    if (!(b >= 0.0 && b < (double)nspec)) {
      free(edge);
      return dynq__op_fail(c, DYNQ_ESHAPE, "band edge %lld (%g Hz) falls on bin %g, past the "
                           "%lld bins of dft_length %lld at sample_rate %lld (upper_edge_hertz "
                           "%g)", (long long)i, hz, b, (long long)nspec, (long long)dftlen,
                           (long long)sr, hi);
    }
    edge[i] = (int64_t)b;
  }
  if ((rc = dynq__op_alloc(c, out, dt, 2, od, 1))) {
    free(edge);
    return rc;
  }
  for (int64_t i = 0; i < nmel; i++) {
    const int64_t l = edge[i], m = edge[i + 1], h = edge[i + 2];
    if (m == l) store_val(out->data, dt, m * nmel + i, 1.0);
    else
      for (int64_t j = l; j <= m; j++)
        store_val(out->data, dt, j * nmel + i, (double)(j - l) / (double)(m - l));
    for (int64_t j = m; j < h; j++)
      store_val(out->data, dt, j * nmel + i, (double)(h - j) / (double)(h - m));
  }
  free(edge);
  return 0;
}
