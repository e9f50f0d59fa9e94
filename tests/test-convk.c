/*
 * Conv kernels (lib/kernels/convk.h) and the depthwise Conv op on them:
 *
 *  - every compiled conv kernel the CPU supports gives the reference's
 *    bits for depthwise rows (ragged widths, strides as column phases,
 *    dilations, no tap rows), the epilogue (every activation, with and
 *    without the affine steps, NaN, infinities, -0.0, the clamp edges)
 *    and the transpose (ragged blocks, padded strides, misaligned
 *    pointers), and writes nothing outside its output;
 *  - the reference epilogue matches hand-computed values;
 *  - the depthwise Conv op matches the convolution's definition (double
 *    sums) over strides, pads, SAME padding, dilations, kernel shapes,
 *    channel multipliers, batches and 1-D, through each INT8 kernel's
 *    conv partner, with the same bits from all of them; a plane whose
 *    scratch would be out of proportion goes through im2col instead;
 *  - a quantized conv's images come out with the bits each gives alone
 *    (its GEMM rows go through in chunks that straddle images), on every
 *    kernel alike: padded im2col, per-patch gather, 1x1, groups, per
 *    tensor, a vector and a sigmoid epilogue;
 *  - each INT8 kernel maps to its ISA level's conv kernel.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "kernels/convk.h"
#include "kernels/kernels.h"
#include "ops.h"
#include "tensor.h"
#include "testutil.h"

static uint32_t rng = 12345;

static float frand(void) { /* [-1, 1) */
  rng = rng * 1664525u + 1013904223u;
  return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static const dynq__conv_kernel_t *kernel_at(int i) {
  int n;
  const dynq__conv_kernel_t *const *list = dynq__conv_kernel_list(&n);
  ck_assert_int_lt(i, n);
  return list[i];
}

/* Every epilogue the kernels know, with and without the affine steps. */
static dynq__conv_epi_t epi_case(int i) {
  dynq__conv_epi_t e = {.act = i % 5, .pre = (i / 5) % 2, .post = (i / 10) % 2,
                        .pm = 1.75f, .pa = -0.25f, .qm = 0.5f, .qa = 0.125f,
                        .lo = -0.5f, .hi = 0.75f, .al = 0.2f, .be = 0.5f};
  if (e.act == DYNQ_EPI_HARDSWISH) e.al = 1.0f / 6.0f, e.be = 0.5f;
  return e;
}
enum { N_EPI = 20 };

static const int64_t widths[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 80, 97, 129};

/* ---- kernels against the reference, bit for bit ---- */

START_TEST(dw_rows_exact) {
  const dynq__conv_kernel_t *k = kernel_at(_i), *ref = &dynq__conv_kernel_ref;
  enum { GUARD = 8 };
  static float x[6 * 3 * 400], want[200 + GUARD], got[200 + 2 * GUARD];
  static const struct { int64_t na, kw, dw, sw; } shapes[] = {
    {3, 3, 1, 1}, {5, 5, 1, 1}, {3, 3, 1, 2}, {2, 5, 2, 1}, {1, 7, 1, 3},
    {0, 3, 1, 1}, {4, 1, 1, 1}, {6, 4, 3, 2},
  };
  for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = frand();
  x[17] = -0.0f;
  float w[64];
  for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++)
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
      for (int ei = -1; ei < N_EPI; ei += 3) {
        const int64_t na = shapes[s].na, kw = shapes[s].kw, dw = shapes[s].dw, sw = shapes[s].sw;
        const int64_t ow = widths[wi], L = ow + (kw - 1) * dw / sw + DYNQ_DW_SLACK;
        ck_assert_int_le(6 * sw * L, (int64_t)(sizeof x / sizeof x[0]));
        int64_t off[8];
        for (int64_t b = 0; b < kw; b++) off[b] = (b * dw) % sw * L + b * dw / sw;
        for (int64_t i = 0; i < na * kw; i++) w[i] = frand();
        const dynq__conv_epi_t e = epi_case(ei < 0 ? 0 : ei);
        dynq__dw_row_t r = {.x = x, .rs = sw * L, .off = off, .w = w, .na = na, .kw = kw,
                            .bias = 0.375f, .epi = ei < 0 ? NULL : &e, .y = want, .ow = ow};
        for (int g = 0; g < GUARD; g++) want[ow + g] = 99.0f;
        ref->dw_row(&r);
        for (int g = 0; g < 2 * GUARD + (int)ow; g++) got[g] = -99.0f;
        r.y = got + 1; /* misaligned */
        k->dw_row(&r);
        ck_assert_msg(memcmp(want, got + 1, sizeof(float) * (size_t)ow) == 0,
                      "%s: dw row na %lld kw %lld dw %lld sw %lld ow %lld epi %d differs", k->name,
                      (long long)na, (long long)kw, (long long)dw, (long long)sw, (long long)ow, ei);
        ck_assert_msg(got[0] == -99.0f && got[ow + 1] == -99.0f,
                      "%s: dw row wrote outside [0, %lld)", k->name, (long long)ow);
        if (na == 0) ck_assert(ei >= 0 || want[0] == 0.375f); /* no tap rows: the bias */
      }
}
END_TEST

START_TEST(epilogue_exact) {
  const dynq__conv_kernel_t *k = kernel_at(_i), *ref = &dynq__conv_kernel_ref;
  enum { NV = 160 };
  static float src[NV + 1], want[NV + 1], got[NV + 2];
  const float special[] = {NAN, -NAN, INFINITY, -INFINITY, 0.0f, -0.0f, -3.0f, 3.0f, -2.5f,
                           2.5f, 1e-40f, -1e-40f, 0.75f, -0.5f, 0.5f, 1e30f, -1e30f};
  for (int i = 0; i < NV; i++)
    src[i] = i < (int)(sizeof special / sizeof special[0]) ? special[i] : 4.0f * frand();
  for (int ei = 0; ei < N_EPI; ei++)
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
      const int64_t n = widths[wi] + (widths[wi] > 60 ? 31 : 0);
      const dynq__conv_epi_t e = epi_case(ei);
      memcpy(want, src, sizeof(float) * (size_t)n);
      ref->epi(&e, want, n);
      memcpy(got + 1, src, sizeof(float) * (size_t)n);
      got[n + 1] = -7.0f;
      k->epi(&e, got + 1, n);
      ck_assert_msg(memcmp(want, got + 1, sizeof(float) * (size_t)n) == 0,
                    "%s: epilogue %d (act %d pre %d post %d) over %lld values differs", k->name,
                    ei, e.act, e.pre, e.post, (long long)n);
      ck_assert(got[n + 1] == -7.0f);
    }
}
END_TEST

START_TEST(transpose_exact) {
  const dynq__conv_kernel_t *k = kernel_at(_i), *ref = &dynq__conv_kernel_ref;
  static const int64_t dims[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 48};
  static float src[48 * 52 + 1], want[52 * 56], got[52 * 56 + 1];
  for (size_t i = 0; i < sizeof src / sizeof src[0]; i++) src[i] = frand();
  src[5] = NAN, src[6] = -0.0f;
  const dynq__conv_epi_t e = epi_case(19);
  for (size_t ri = 0; ri < sizeof dims / sizeof dims[0]; ri++)
    for (size_t ci = 0; ci < sizeof dims / sizeof dims[0]; ci++)
      for (int ep = 0; ep < 2; ep++) {
        const int64_t rows = dims[ri], cols = dims[ci], lds = cols + 3, ldd = rows + 5;
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) want[i] = got[i + 1] = 42.0f;
        ref->transpose(src + 1, lds, want, ldd, rows, cols, ep ? &e : NULL);
        k->transpose(src + 1, lds, got + 1, ldd, rows, cols, ep ? &e : NULL);
        ck_assert_msg(memcmp(want, got + 1, sizeof(float) * (size_t)(cols * ldd)) == 0,
                      "%s: transpose %lldx%lld epi %d differs (or wrote past a row)", k->name,
                      (long long)rows, (long long)cols, ep);
        ck_assert(want[rows] == 42.0f && want[(cols - 1) * ldd + rows] == 42.0f);
        ck_assert(want[(cols - 1) * ldd] == (ep ? want[(cols - 1) * ldd] : src[1 + cols - 1]));
      }
}
END_TEST

/* ---- the reference epilogue against hand-computed values ---- */

START_TEST(epilogue_values) {
  const dynq__conv_kernel_t *ref = &dynq__conv_kernel_ref;
  dynq__conv_epi_t relu = {.act = DYNQ_EPI_RELU};
  float y[4] = {-0.0f, -2.0f, NAN, 3.0f};
  ref->epi(&relu, y, 4);
  ck_assert(y[0] == 0.0f && !signbit(y[0]) && y[1] == 0.0f && isnan(y[2]) && y[3] == 3.0f);
  dynq__conv_epi_t swish = {.act = DYNQ_EPI_HARDSWISH, .al = 1.0f / 6.0f, .be = 0.5f};
  float s[4] = {-3.0f, 3.0f, 0.0f, 1.5f};
  ref->epi(&swish, s, 4);
  ck_assert(s[0] == 0.0f && s[1] == 3.0f && s[2] == 0.0f);
  ck_assert_float_eq_tol(s[3], 1.5f * (1.5f / 6.0f + 0.5f), 1e-7f);
  dynq__conv_epi_t clip = {.act = DYNQ_EPI_CLIP, .lo = 0.0f, .hi = 6.0f, .pre = 1, .pm = 2.0f,
                           .pa = 1.0f, .post = 1, .qm = 0.5f, .qa = -1.0f};
  float c[4] = {-5.0f, 1.0f, 10.0f, NAN};
  ref->epi(&clip, c, 4);
  ck_assert(c[0] == -1.0f && c[1] == 0.5f && c[2] == 2.0f && isnan(c[3]));
  dynq__conv_epi_t hs = {.act = DYNQ_EPI_HARDSIGMOID, .al = 0.2f, .be = 0.5f};
  float h[3] = {-10.0f, 10.0f, 0.0f};
  ref->epi(&hs, h, 3);
  ck_assert(h[0] == 0.0f && h[1] == 1.0f && h[2] == 0.5f);
}
END_TEST

/* ---- the depthwise Conv op against the definition ---- */

typedef struct dwcase {
  int sr;                        /* 1 or 2 spatial axes */
  int64_t N, C, mult, ih, iw, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
  const char *auto_pad;          /* NULL: explicit pads */
  int act;                       /* DYNQ_CONV_ACT_* (0: none) */
  int bias;
} dwcase_t;

static const dwcase_t cases[] = {
  {2, 1, 16, 1, 24, 160, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, NULL, DYNQ_CONV_ACT_HARDSWISH, 1},
  {2, 1, 24, 1, 12, 80, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2, NULL, DYNQ_CONV_ACT_RELU, 1},
  {2, 2, 8, 1, 12, 33, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, NULL, DYNQ_CONV_ACT_NONE, 1},
  {2, 1, 8, 1, 12, 31, 3, 3, 1, 2, 1, 1, 1, 1, 1, 1, NULL, DYNQ_CONV_ACT_CLIP, 0},
  {2, 1, 5, 2, 9, 17, 3, 5, 2, 3, 1, 1, 0, 2, 1, 0, NULL, DYNQ_CONV_ACT_HARDSIGMOID, 1},
  {2, 1, 4, 1, 11, 19, 3, 3, 1, 1, 2, 3, 2, 3, 2, 3, NULL, DYNQ_CONV_ACT_SIGMOID, 1},
  {2, 1, 6, 3, 7, 13, 1, 7, 1, 1, 1, 1, 0, 3, 0, 3, NULL, DYNQ_CONV_ACT_NONE, 1},
  {2, 2, 3, 1, 10, 21, 5, 5, 3, 2, 1, 2, 0, 0, 0, 0, "SAME_UPPER", DYNQ_CONV_ACT_HARDSWISH, 1},
  {2, 1, 3, 2, 8, 15, 4, 4, 2, 2, 1, 1, 0, 0, 0, 0, "SAME_LOWER", DYNQ_CONV_ACT_NONE, 0},
  {2, 1, 4, 1, 6, 9, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, "VALID", DYNQ_CONV_ACT_RELU, 1},
  {2, 1, 2, 1, 2, 2, 3, 3, 1, 1, 1, 1, 3, 3, 3, 3, NULL, DYNQ_CONV_ACT_NONE, 1}, /* pads > plane */
  {1, 2, 6, 1, 1, 50, 1, 9, 1, 2, 1, 1, 0, 4, 0, 4, NULL, DYNQ_CONV_ACT_RELU, 1},  /* 1-D */
  {1, 1, 4, 1, 1, 37, 1, 3, 1, 1, 1, 4, 0, 4, 0, 4, NULL, DYNQ_CONV_ACT_NONE, 1},  /* 1-D dilated */
  /* a tall plane, a huge row stride and wide pads: im2col, not the scratch */
  {2, 1, 2, 1, 64, 1, 3, 3, 64, 1, 1, 1, 1, 100, 1, 100, NULL, DYNQ_CONV_ACT_NONE, 1},
};

static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t d, const char *ap, int64_t *pb,
                        int64_t pe) {
  const int64_t span = d * (k - 1) + 1;
  if (ap && strncmp(ap, "SAME", 4) == 0) {
    const int64_t out = (in + s - 1) / s;
    int64_t tot = (out - 1) * s + span - in;
    if (tot < 0) tot = 0;
    *pb = strcmp(ap, "SAME_UPPER") == 0 ? tot / 2 : tot - tot / 2;
    return out;
  }
  if (ap) *pb = pe = 0;
  return (in + *pb + pe - span) / s + 1;
}

static float act_def(int act, float v) {
  float h;
  switch (act) {
  case DYNQ_CONV_ACT_RELU: return v > 0 ? v : 0.0f;
  case DYNQ_CONV_ACT_CLIP: return v < -0.25f ? -0.25f : v > 0.5f ? 0.5f : v;
  case DYNQ_CONV_ACT_HARDSIGMOID: h = 0.3f * v + 0.4f; return h < 0 ? 0 : h > 1 ? 1 : h;
  case DYNQ_CONV_ACT_HARDSWISH: h = v / 6.0f + 0.5f; return v * (h < 0 ? 0 : h > 1 ? 1 : h);
  case DYNQ_CONV_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
  default: return v;
  }
}

#define AI(nm, v) {.name = nm, .type = DYNQ_ATTR_INT, .i = (v)}
#define AF(nm, v) {.name = nm, .type = DYNQ_ATTR_FLOAT, .f = (v)}

static int run_conv(const dwcase_t *t, const dynq__kernel_t *kr, const dynq__tensor_t *const *in,
                    dynq__tensor_t *out, char *err, size_t errlen) {
  dynq__attr_t at[24] = {
    AI("group", t->C), AI("strides0", t->sr == 2 ? t->sh : t->sw), AI("strides1", t->sw),
    AI("dilations0", t->sr == 2 ? t->dh : t->dw), AI("dilations1", t->dw),
    AI("pad_begin0", t->sr == 2 ? t->pt : t->pl), AI("pad_begin1", t->pl),
    AI("pad_end0", t->sr == 2 ? t->pb : t->pr), AI("pad_end1", t->pr),
    AI("act", t->act), AF("act_a", t->act == DYNQ_CONV_ACT_CLIP ? -0.25f : 0.3f),
    AF("act_b", t->act == DYNQ_CONV_ACT_CLIP ? 0.5f : 0.4f),
  };
  int na = 12;
  if (t->auto_pad) at[na++] = (dynq__attr_t){.name = "auto_pad", .type = DYNQ_ATTR_STRING, .s = t->auto_pad};
  static const int32_t idx[4] = {0, 1, 2, 3};
  dynq__node_t n = {.op = DYNQ_OP_CONV, .name = "dw", .n_in = 3, .n_out = 1, .in = idx,
                    .out = idx, .n_attr = na, .attr = at};
  dynq__op_ctx_t c = {.node = &n, .kernel = kr, .err = err, .errlen = errlen};
  memset(out, 0, sizeof(*out));
  return dynq__op_run1(NULL, &c, in, out);
}

START_TEST(depthwise_op_vs_definition) {
  const dwcase_t *t = &cases[_i];
  const int64_t M = t->C * t->mult;
  int64_t pt = t->pt, pl = t->pl;
  const int64_t oh = t->sr == 2 ? out_size(t->ih, t->kh, t->sh, t->dh, t->auto_pad, &pt, t->pb) : 1;
  const int64_t ow = out_size(t->iw, t->kw, t->sw, t->dw, t->auto_pad, &pl, t->pr);
  const int64_t nx = t->N * t->C * t->ih * t->iw, nw = M * t->kh * t->kw, ny = t->N * M * oh * ow;
  float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)nw);
  float *b = malloc(sizeof(float) * (size_t)M), *want = malloc(sizeof(float) * (size_t)ny);
  ck_assert(x && w && b && want);
  for (int64_t i = 0; i < nx; i++) x[i] = 2.0f * frand();
  for (int64_t i = 0; i < nw; i++) w[i] = frand();
  for (int64_t i = 0; i < M; i++) b[i] = frand();
  for (int64_t n = 0; n < t->N; n++)
    for (int64_t m = 0; m < M; m++)
      for (int64_t oy = 0; oy < oh; oy++)
        for (int64_t ox = 0; ox < ow; ox++) {
          double s = t->bias ? b[m] : 0.0;
          for (int64_t a = 0; a < t->kh; a++)
            for (int64_t bb = 0; bb < t->kw; bb++) {
              const int64_t y = oy * t->sh - pt + a * t->dh, xx = ox * t->sw - pl + bb * t->dw;
              if (y < 0 || y >= t->ih || xx < 0 || xx >= t->iw) continue;
              s += (double)w[(m * t->kh + a) * t->kw + bb] *
                   x[((n * t->C + m / t->mult) * t->ih + y) * t->iw + xx];
            }
          want[((n * M + m) * oh + oy) * ow + ox] = act_def(t->act, (float)s);
        }
  dynq__tensor_t X = {.dtype = DYNQ_DT_F32, .rank = 2 + t->sr, .data = x};
  dynq__tensor_t W = {.dtype = DYNQ_DT_F32, .rank = 2 + t->sr, .data = w};
  dynq__tensor_t B = {.dtype = DYNQ_DT_F32, .rank = 1, .dims = {M}, .data = b};
  X.dims[0] = t->N, X.dims[1] = t->C, W.dims[0] = M, W.dims[1] = 1;
  if (t->sr == 2) X.dims[2] = t->ih, X.dims[3] = t->iw, W.dims[2] = t->kh, W.dims[3] = t->kw;
  else X.dims[2] = t->iw, W.dims[2] = t->kw;
  const dynq__tensor_t *in[3] = {&X, &W, t->bias ? &B : NULL};
  float *first = NULL;
  int nk;
  const dynq__kernel_t *const *ks = dynq__kernel_list(&nk);
  for (int ki = 0; ki < nk; ki++) {
    if (!ks[ki]->supported()) continue;
    char err[256];
    dynq__tensor_t o;
    int rc = run_conv(t, ks[ki], in, &o, err, sizeof err);
    ck_assert_msg(rc == 0, "case %d on %s: %s", _i, ks[ki]->name, err);
    ck_assert_int_eq(o.rank, 2 + t->sr);
    ck_assert_int_eq(o.dims[1], M);
    ck_assert_int_eq(o.dims[1 + t->sr], ow);
    if (t->sr == 2) ck_assert_int_eq(o.dims[2], oh);
    const float *y = o.data;
    for (int64_t i = 0; i < ny; i++)
      ck_assert_msg(fabsf(y[i] - want[i]) <= 2e-5f * (1.0f + fabsf(want[i])),
                    "case %d on %s: y[%lld] = %.8g, definition %.8g", _i, ks[ki]->name,
                    (long long)i, y[i], want[i]);
    if (!first) {
      first = malloc(sizeof(float) * (size_t)ny);
      ck_assert_ptr_nonnull(first);
      memcpy(first, y, sizeof(float) * (size_t)ny);
    } else {
      ck_assert_msg(memcmp(first, y, sizeof(float) * (size_t)ny) == 0,
                    "case %d: %s's bits differ from %s's", _i, ks[ki]->name, ks[0]->name);
    }
    dynq__tensor_clear(&o);
  }
  ck_assert_ptr_nonnull(first);
  free(first);
  free(x), free(w), free(b), free(want);
}
END_TEST

/* A depthwise input whose channels the weights do not match is a clear
 * error naming the node, whichever kernel runs it. */
START_TEST(depthwise_op_errors) {
  const dwcase_t t = {2, 1, 4, 1, 6, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, NULL, 0, 0};
  static float x[4 * 6 * 9], w[4 * 9];
  dynq__tensor_t X = {.dtype = DYNQ_DT_F32, .rank = 4, .dims = {1, 3, 6, 9}, .data = x};
  dynq__tensor_t W = {.dtype = DYNQ_DT_F32, .rank = 4, .dims = {4, 1, 3, 3}, .data = w};
  const dynq__tensor_t *in[3] = {&X, &W, NULL};
  char err[256];
  dynq__tensor_t o;
  ck_assert_int_eq(run_conv(&t, dynq__kernel(), in, &o, err, sizeof err), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "group 4 does not divide 3 input") != NULL, "%s", err);
  X.dims[1] = 4, X.dims[3] = 1;
  dwcase_t big = t;
  big.kw = 5, W.dims[3] = 5;
  ck_assert_int_eq(run_conv(&big, dynq__kernel(), in, &o, err, sizeof err), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "smaller than the dilated kernel") != NULL, "%s", err);
}
END_TEST

/* ---- a quantized conv's images are independent of the batch ---- */

typedef struct qcase {
  int sr, per_tensor, act;
  int64_t C, M, G, ih, iw, kh, kw, s, pad;
} qcase_t;

static const qcase_t qcases[] = {
  {2, 0, DYNQ_CONV_ACT_HARDSWISH, 96, 24, 1, 7, 9, 3, 3, 1, 1},  /* padded im2col, 48-row chunks */
  {2, 0, DYNQ_CONV_ACT_NONE, 16, 700, 1, 5, 13, 1, 1, 1, 0},     /* 1x1 rows from NCHW */
  {1, 0, DYNQ_CONV_ACT_RELU, 64, 8, 1, 1, 100, 1, 17, 2, 3},     /* long rows: per patch */
  {2, 0, DYNQ_CONV_ACT_SIGMOID, 96, 32, 2, 9, 11, 3, 3, 2, 1},   /* groups, stride 2 */
  {2, 1, DYNQ_CONV_ACT_CLIP, 24, 40, 1, 6, 10, 3, 3, 1, 1},      /* per tensor */
};

/* QConv over images [n0, n0 + nn) of X; returns the output's floats. */
static float *run_qconv(const qcase_t *t, const dynq__kernel_t *kr, const float *X, int64_t n0,
                        int64_t nn, const int8_t *packed, int64_t npacked, const int32_t *colsum,
                        const float *scale, const float *bias, int64_t *ret_ny) {
  const int64_t chw = t->C * t->ih * t->iw;
  dynq__tensor_t tx = {.dtype = DYNQ_DT_F32, .rank = 2 + t->sr, .data = (void *)(X + n0 * chw)};
  tx.dims[0] = nn, tx.dims[1] = t->C;
  if (t->sr == 2) tx.dims[2] = t->ih, tx.dims[3] = t->iw;
  else tx.dims[2] = t->iw;
  dynq__tensor_t tq = {.dtype = DYNQ_DT_I8, .rank = 1, .dims = {npacked}, .data = (void *)packed};
  dynq__tensor_t tc = {.dtype = DYNQ_DT_I32, .rank = 1, .dims = {t->M}, .data = (void *)colsum};
  dynq__tensor_t ts = {.dtype = DYNQ_DT_F32, .rank = 1, .dims = {t->M}, .data = (void *)scale};
  dynq__tensor_t tb = {.dtype = DYNQ_DT_F32, .rank = 1, .dims = {t->M}, .data = (void *)bias};
  const dynq__tensor_t *in[5] = {&tx, &tq, &tc, &ts, &tb};
  const dynq__attr_t at[] = {
    AI("spatial", t->sr), AI("in_channels", t->C), AI("out_channels", t->M), AI("group", t->G),
    AI("kernel_shape0", t->sr == 2 ? t->kh : t->kw), AI("kernel_shape1", t->kw),
    AI("strides0", t->s), AI("strides1", t->s), AI("pad_begin0", t->pad),
    AI("pad_begin1", t->pad), AI("pad_end0", t->pad), AI("pad_end1", t->pad),
    AI("per_tensor", t->per_tensor), AI("act", t->act), AF("act_a", -0.5f), AF("act_b", 0.5f),
    AF("pre_mul", 1.5f), AF("post_add", 0.25f),
  };
  static const int32_t idx[6] = {0, 1, 2, 3, 4, 5};
  dynq__node_t n = {.op = DYNQ_OP_QCONV, .name = "qc", .n_in = 5, .n_out = 1, .in = idx,
                    .out = idx, .n_attr = (int)(sizeof at / sizeof at[0]), .attr = at};
  char err[256];
  dynq__op_ctx_t c = {.node = &n, .kernel = kr, .precision = DYNQ_PRECISION_INT8, .err = err,
                      .errlen = sizeof err};
  dynq__tensor_t o;
  memset(&o, 0, sizeof o);
  ck_assert_msg(dynq__op_run1(NULL, &c, in, &o) == 0, "%s: %s", kr->name, err);
  *ret_ny = dynq__tensor_numel(&o);
  float *y = malloc(sizeof(float) * (size_t)*ret_ny);
  ck_assert_ptr_nonnull(y);
  memcpy(y, o.data, sizeof(float) * (size_t)*ret_ny);
  dynq__tensor_clear(&o);
  return y;
}

START_TEST(qconv_batch_independent) {
  const qcase_t *t = &qcases[_i];
  enum { NI = 3 };
  const int64_t Cg = t->C / t->G, Mg = t->M / t->G, kk = Cg * (t->sr == 2 ? t->kh : 1) * t->kw;
  const int64_t Kp = (kk + 3) / 4 * 4, Np = (Mg + 15) / 16 * 16, npacked = t->G * Np * Kp;
  const int64_t nx = NI * t->C * t->ih * t->iw;
  int8_t *w = malloc((size_t)(t->M * kk)), *packed = dynq__aligned_alloc((size_t)npacked); /* kernels load it aligned */
  int32_t *colsum = calloc((size_t)t->M, sizeof(int32_t));
  float *scale = malloc(sizeof(float) * (size_t)t->M), *bias = malloc(sizeof(float) * (size_t)t->M);
  float *X = malloc(sizeof(float) * (size_t)nx);
  ck_assert(w && packed && colsum && scale && bias && X);
  for (int64_t i = 0; i < t->M * kk; i++) w[i] = (int8_t)(frand() * 127.0f);
  for (int64_t m = 0; m < t->M; m++) {
    for (int64_t k = 0; k < kk; k++) colsum[m] += w[m * kk + k];
    scale[m] = 0.01f + 0.001f * (float)(m % 7), bias[m] = frand();
  }
  for (int64_t gi = 0; gi < t->G; gi++) dynq__pack_weights(Mg, kk, w + gi * Mg * kk, packed + gi * Np * Kp);
  for (int64_t i = 0; i < nx; i++) X[i] = 3.0f * frand() * (i % 97 == 0 ? 4.0f : 1.0f);
  int nk;
  const dynq__kernel_t *const *ks = dynq__kernel_list(&nk);
  float *first = NULL;
  int64_t ny = 0;
  for (int ki = 0; ki < nk; ki++) {
    if (!ks[ki]->supported()) continue;
    float *all = run_qconv(t, ks[ki], X, 0, NI, packed, npacked, colsum, scale, bias, &ny);
    const int64_t per = ny / NI;
    int nonzero = 0;
    for (int64_t i = 0; i < ny; i++) nonzero += all[i] != 0.0f;
    ck_assert_msg(nonzero > ny / 4, "case %d: mostly zeros, the test would prove little", _i);
    for (int64_t j = 0; j < NI; j++) {
      int64_t n1;
      float *one = run_qconv(t, ks[ki], X, j, 1, packed, npacked, colsum, scale, bias, &n1);
      ck_assert_int_eq(n1, per);
      ck_assert_msg(memcmp(one, all + j * per, sizeof(float) * (size_t)per) == 0,
                    "case %d on %s: image %lld of %d differs from the image alone", _i,
                    ks[ki]->name, (long long)j, NI);
      free(one);
    }
    if (!first) first = all;
    else {
      ck_assert_msg(memcmp(first, all, sizeof(float) * (size_t)ny) == 0,
                    "case %d: %s's bits differ from the first kernel's", _i, ks[ki]->name);
      free(all);
    }
  }
  free(first);
  dynq__aligned_free(packed);
  free(w), free(colsum), free(scale), free(bias), free(X);
}
END_TEST

START_TEST(dispatch_pairs) {
  ck_assert_ptr_eq(dynq__conv_kernel_for(NULL), &dynq__conv_kernel_ref);
  ck_assert_ptr_eq(dynq__conv_kernel_for(&dynq__kernel_ref), &dynq__conv_kernel_ref);
  static const struct { const char *gemm, *conv; } want[] = {
    {"avx512vnni", "avx512"}, {"avxvnni", "avx2"}, {"avx2", "avx2"}, {"ref", "ref"}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const dynq__kernel_t *k = dynq__kernel_find(want[i].gemm);
    if (!k || !k->supported()) continue;
    ck_assert_str_eq(dynq__conv_kernel_for(k)->name, want[i].conv);
  }
  int n;
  const dynq__conv_kernel_t *const *list = dynq__conv_kernel_list(&n);
  ck_assert_int_ge(n, 1);
  ck_assert_ptr_eq(list[n - 1], &dynq__conv_kernel_ref); /* best first, the reference last */
}
END_TEST

int main(void) {
  Suite *s = suite_create("convk");
  TCase *tc = tcase_create("kernels");
  tcase_set_timeout(tc, 300);
  int n;
  const dynq__conv_kernel_t *const *list = dynq__conv_kernel_list(&n);
  for (int i = 0; i < n; i++) {
    if (!list[i]->supported()) continue;
    tcase_add_loop_test(tc, dw_rows_exact, i, i + 1);
    tcase_add_loop_test(tc, epilogue_exact, i, i + 1);
    tcase_add_loop_test(tc, transpose_exact, i, i + 1);
  }
  tcase_add_test(tc, epilogue_values);
  tcase_add_test(tc, dispatch_pairs);
  suite_add_tcase(s, tc);
  TCase *op = tcase_create("depthwise");
  tcase_set_timeout(op, 300);
  tcase_add_loop_test(op, depthwise_op_vs_definition, 0, (int)(sizeof cases / sizeof cases[0]));
  tcase_add_test(op, depthwise_op_errors);
  tcase_add_loop_test(op, qconv_batch_independent, 0, (int)(sizeof qcases / sizeof qcases[0]));
  suite_add_tcase(s, op);
  SRunner *sr = srunner_create(s);
  return tu_run_runner(sr) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
