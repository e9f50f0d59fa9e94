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
#include "ops.h"
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
  suite_add_tcase(s, op);
  SRunner *sr = srunner_create(s);
  return tu_run_runner(sr) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
