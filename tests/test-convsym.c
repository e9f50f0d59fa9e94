/*
 * lib/conv_sym.c: the mirror-symmetric FP32 Conv 1-D (STFT front ends).
 * Detection is exact (any asymmetric tap, NaN, odd N or short kernel is
 * refused), the folded conv matches a double-precision conv, the CONV op
 * takes the fast path only with a checked sym_split and not for the fp32
 * reference precision, and the loader refuses a sym_split the weights do
 * not bear out.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv_sym.h"
#include "dynq/errors.h"
#include "graph.h"
#include "kernels/kernels.h"
#include "model.h"
#include "ops.h"
#include "validate.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* xorshift64: reproducible */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

/* w [M, N]: rows [0, E) even about N/2, the rest odd (a random basis, or
 * a Hann-windowed DFT basis when dft is set). */
static float *sym_weights(int64_t M, int64_t N, int64_t E, int dft) {
  float *w = calloc((size_t)(M * N), sizeof(float));
  for (int64_t m = 0; m < M; m++) {
    float *r = w + m * N;
    int odd = m >= E;
    for (int64_t j = 0; j <= N / 2; j++) {
      double v;
      if (dft) {
        double win = 0.5 - 0.5 * cos(2 * M_PI * (double)j / (double)N);
        int64_t k = odd ? m - E : m;
        double th = 2 * M_PI * (double)(k * j) / (double)N;
        v = win * (odd ? sin(th) : cos(th));
      } else {
        v = urand() * 2 - 1;
      }
      if (odd && j == N / 2) v = 0;
      r[j] = (float)v;
      if (j > 0 && j < N / 2 + (N % 2)) r[N - j] = odd ? -r[j] : r[j];
    }
  }
  return w;
}

START_TEST(split_detection) {
  const int64_t M = 10, N = 32;
  float *w = sym_weights(M, N, 6, 0);
  ck_assert_int_eq(dynq__conv_sym_split(w, M, N), 6);
  ck_assert_int_eq(dynq__conv_sym_split(w, 6, N), 6);     /* all even */
  ck_assert_int_eq(dynq__conv_sym_split(w + 6 * N, 4, N), 0); /* all odd */
  ck_assert_int_eq(dynq__conv_sym_split(w, M, 31), -1);   /* odd N */
  ck_assert_int_eq(dynq__conv_sym_split(w, M, 14), -1);   /* below the minimum */
  ck_assert_int_eq(dynq__conv_sym_split(NULL, M, N), -1);
  /* one tap off by one ulp breaks it */
  float keep = w[3 * N + 5];
  w[3 * N + 5] = nextafterf(keep, 2.0f);
  ck_assert_int_eq(dynq__conv_sym_split(w, M, N), -1);
  w[3 * N + 5] = keep;
  /* an odd row must have a zero middle tap */
  w[8 * N + N / 2] = 0.25f;
  ck_assert_int_eq(dynq__conv_sym_split(w, M, N), -1);
  w[8 * N + N / 2] = 0.0f;
  /* NaN never matches */
  keep = w[2 * N + 7];
  w[2 * N + 7] = w[2 * N + N - 7] = NAN;
  ck_assert_int_eq(dynq__conv_sym_split(w, M, N), -1);
  w[2 * N + 7] = w[2 * N + N - 7] = keep;
  ck_assert_int_eq(dynq__conv_sym_split(w, M, N), 6);
  /* an odd row before the even ones: not this form */
  float *sw = malloc(sizeof(float) * (size_t)(M * N));
  memcpy(sw, w + 9 * N, sizeof(float) * (size_t)N);
  memcpy(sw + N, w, sizeof(float) * (size_t)(9 * N));
  ck_assert_int_eq(dynq__conv_sym_split(sw, M, N), -1);
  free(sw);
  free(w);
}
END_TEST

/* Y[n, m, p] in double, zero padding. */
static void ref_conv(const float *X, int64_t n_img, int64_t L, const float *w, int64_t M,
                     int64_t N, int64_t stride, int64_t pb, int64_t P, const float *bias,
                     double *Y) {
  for (int64_t n = 0; n < n_img; n++)
    for (int64_t m = 0; m < M; m++)
      for (int64_t p = 0; p < P; p++) {
        double acc = bias ? bias[m] : 0.0;
        for (int64_t j = 0; j < N; j++) {
          int64_t i = p * stride - pb + j;
          if (i >= 0 && i < L) acc += (double)w[m * N + j] * X[n * L + i];
        }
        Y[(n * M + m) * P + p] = acc;
      }
}

static double max_rel(const float *y, const double *ref, int64_t n) {
  double e = 0, s = 1e-30;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs(y[i] - ref[i]);
    if (d > e) e = d;
    if (fabs(ref[i]) > s) s = fabs(ref[i]);
  }
  return e / s;
}

START_TEST(folded_matches_reference) {
  static const struct { int64_t n_img, L, M, N, E, stride, pb, pe; int dft, bias; } cs[] = {
    {1, 640, 258, 256, 129, 128, 0, 0, 1, 0},  /* Silero v5's STFT shape */
    {3, 640, 258, 256, 129, 128, 0, 0, 1, 0},
    {2, 300, 12, 32, 5, 7, 9, 11, 0, 1},       /* pads on both sides, frames over the edge */
    {2, 100, 8, 16, 8, 1, 15, 15, 0, 1},       /* every row even, stride 1 */
    {1, 64, 5, 64, 0, 3, 0, 0, 0, 0},          /* every row odd, one frame */
  };
  for (size_t t = 0; t < sizeof(cs) / sizeof(cs[0]); t++) {
    const int64_t P = (cs[t].L + cs[t].pb + cs[t].pe - cs[t].N) / cs[t].stride + 1;
    float *w = sym_weights(cs[t].M, cs[t].N, cs[t].E, cs[t].dft);
    /* a DFT basis's sin(0) row is all zeros, even as well as odd: the
     * split may take it with the even rows */
    const int64_t E = dynq__conv_sym_split(w, cs[t].M, cs[t].N);
    ck_assert_msg(E == cs[t].E || (cs[t].dft && E == cs[t].E + 1), "case %zu: split %lld",
                  t, (long long)E);
    float *X = malloc(sizeof(float) * (size_t)(cs[t].n_img * cs[t].L));
    for (int64_t i = 0; i < cs[t].n_img * cs[t].L; i++) X[i] = (float)(urand() * 2 - 1);
    float *bias = malloc(sizeof(float) * (size_t)cs[t].M);
    for (int64_t m = 0; m < cs[t].M; m++) bias[m] = (float)urand();
    const int64_t ny = cs[t].n_img * cs[t].M * P;
    float *Y = malloc(sizeof(float) * (size_t)ny);
    double *R = malloc(sizeof(double) * (size_t)ny);
    ref_conv(X, cs[t].n_img, cs[t].L, w, cs[t].M, cs[t].N, cs[t].stride, cs[t].pb, P,
             cs[t].bias ? bias : NULL, R);
    dynq__conv_sym_t g = {cs[t].n_img, cs[t].L, cs[t].M, cs[t].N, E, cs[t].stride,
                          cs[t].pb, P};
    ck_assert_int_eq(dynq__conv_sym_f32(&g, X, w, cs[t].bias ? bias : NULL, Y), 0);
    double e = max_rel(Y, R, ny);
    ck_assert_msg(e <= 2e-6, "case %zu: max error %g of the largest output", t, e);

    /* The same through the CONV op: sym_split takes the folded path for
     * int8 precision, the literal conv for the fp32 reference path; both
     * agree with the reference. */
    dynq__attr_t at[5] = {
      {.name = "strides0", .type = DYNQ_ATTR_INT, .i = cs[t].stride},
      {.name = "pad_begin0", .type = DYNQ_ATTR_INT, .i = cs[t].pb},
      {.name = "pad_end0", .type = DYNQ_ATTR_INT, .i = cs[t].pe},
      {.name = "sym_split", .type = DYNQ_ATTR_INT, .i = E},
    };
    int32_t idx[3] = {0, 1, 2};
    dynq__node_t node = {.op = DYNQ_OP_CONV, .name = "stft", .n_in = cs[t].bias ? 3 : 2,
                         .n_out = 1, .in = idx, .out = idx, .n_attr = 4, .attr = at};
    dynq__tensor_t tx = {0}, tw = {0}, tb = {0}, out;
    tx.dtype = tw.dtype = tb.dtype = DYNQ_DT_F32;
    tx.rank = tw.rank = 3;
    tx.dims[0] = cs[t].n_img, tx.dims[1] = 1, tx.dims[2] = cs[t].L;
    tw.dims[0] = cs[t].M, tw.dims[1] = 1, tw.dims[2] = cs[t].N;
    tb.rank = 1, tb.dims[0] = cs[t].M;
    tx.data = X, tw.data = w, tb.data = bias;
    const dynq__tensor_t *in[3] = {&tx, &tw, cs[t].bias ? &tb : NULL};
    for (int prec = 0; prec < 2; prec++) {
      char err[256] = "";
      dynq__op_ctx_t c = {.node = &node, .kernel = dynq__kernel(),
                          .precision = prec ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8,
                          .err = err, .errlen = sizeof(err)};
      memset(&out, 0, sizeof(out));
      ck_assert_msg(dynq__op_run1(NULL, &c, in, &out) == 0, "%s", err);
      ck_assert_int_eq(dynq__tensor_numel(&out), ny);
      e = max_rel(out.data, R, ny);
      ck_assert_msg(e <= 2e-6, "case %zu precision %d: max error %g", t, prec, e);
      if (prec == 0) /* the folded path: the same bits as the direct call */
        ck_assert_int_eq(memcmp(out.data, Y, sizeof(float) * (size_t)ny), 0);
      dynq__tensor_clear(&out);
    }
    free(w);
    free(X);
    free(bias);
    free(Y);
    free(R);
  }
}
END_TEST

START_TEST(loader_checks_the_claim) {
  const int64_t M = 6, N = 16;
  float *w = sym_weights(M, N, 3, 0);
  dynq__value_t v[3] = {
    {.name = "x", .dtype = DYNQ_DT_F32, .rank = 3, .dims = {-1, 1, 64}},
    {.name = "w", .dtype = DYNQ_DT_F32, .rank = 3, .dims = {M, 1, N}, .data = w,
     .nbytes = sizeof(float) * (size_t)(M * N)},
    {.name = "y", .dtype = DYNQ_DT_F32, .rank = -1},
  };
  int32_t ins[2] = {0, 1}, outs[1] = {2}, gin[1] = {0}, gout[1] = {2};
  dynq__attr_t at[2] = {{.name = "sym_split", .type = DYNQ_ATTR_INT, .i = 3},
                        {.name = "group", .type = DYNQ_ATTR_INT, .i = 1}};
  dynq__node_t nd = {.op = DYNQ_OP_CONV, .name = "stft", .n_in = 2, .n_out = 1, .in = ins,
                     .out = outs, .n_attr = 2, .attr = at};
  dynq__graph_t g = {.n_values = 3, .values = v, .n_nodes = 1, .nodes = &nd, .n_inputs = 1,
                     .inputs = gin, .n_outputs = 1, .outputs = gout};
  char err[256] = "";
  ck_assert_msg(dynq__graph_validate(&g, err, sizeof(err)) == 0, "%s", err);
  at[0].i = 2; /* wrong split */
  ck_assert_int_eq(dynq__graph_validate(&g, err, sizeof(err)), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "sym_split 2 does not match"), "%s", err);
  at[0].i = 3;
  w[1 * N + 2] += 0.5f; /* the weights no longer symmetric: a false claim */
  ck_assert_int_eq(dynq__graph_validate(&g, err, sizeof(err)), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "sym_split 3 does not match"), "%s", err);
  w[1 * N + 2] -= 0.5f;
  ck_assert_msg(dynq__graph_validate(&g, err, sizeof(err)) == 0, "%s", err);
  at[1].i = 2; /* group 2 over one channel: refused either way, never run folded */
  ck_assert_int_eq(dynq__graph_validate(&g, err, sizeof(err)), DYNQ_EGRAPH);
  at[1].i = 1;
  v[1].data = NULL; /* weights a graph input, not a constant */
  int32_t gin2[2] = {0, 1};
  g.inputs = gin2;
  g.n_inputs = 2;
  ck_assert_int_eq(dynq__graph_validate(&g, err, sizeof(err)), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "sym_split needs constant"), "%s", err);
  free(w);
}
END_TEST

int main(void) {
  Suite *s = suite_create("convsym");
  TCase *t = tcase_create("core");
  tcase_add_test(t, split_detection);
  tcase_add_test(t, folded_matches_reference);
  tcase_add_test(t, loader_checks_the_claim);
  suite_add_tcase(s, t);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf == 0 ? 0 : 1;
}
