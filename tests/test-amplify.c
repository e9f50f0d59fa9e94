/*
 * A small request must not make one op allocate far more than it sent.
 *
 * Each fixture (tests/fixtures/make_amplify.py) is an ordinary layer whose
 * weights or attributes multiply what a request holds: a wide MatMul from
 * one feature, a Conv with large pads, a ConvTranspose's column buffer, a
 * per-tensor INT8 Conv's patches, a GRU from one feature, an outer product.
 * Under the run's byte cap (dynq__run_opts_t.max_value_bytes; dynqd's
 * max_value_bytes) the big request fails with ELIMIT naming the node and
 * what was too large, before anything that size is allocated; a small one
 * through the same model is answered.  The old code allocated each of these
 * (the outputs of QLinear, Conv and the RNNs bypassed the cap; the column
 * buffer, the patches and Einsum's product were never checked), from 134 MB
 * to 1 GB per request.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "model.h"
#include "tensor.h"
#include "testutil.h"

#define CAP ((int64_t)64 << 20)

/* tests/fixtures/NAME.onnx converted with the given flags (NULL-ended). */
static dynq__model_t *convert(const char *name, const char *f1, const char *f2, const char *f3,
                              const char *f4) {
  char onnx[256], out[4096], err[512] = "";
  snprintf(onnx, sizeof(onnx), "tests/fixtures/%s.onnx", name);
  snprintf(out, sizeof(out), "%s/%s.dynq", tu_tmp, name);
  ck_assert_msg(tu_quantize(onnx, out, f1, f2, f3, f4, NULL) == 0, "dynq-quantize %s", name);
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(out, &m, err, sizeof(err)) == 0, "%s: %s", name, err);
  return m;
}

/* Zero-filled float32 input of the given shape. */
static dynq__tensor_t input(int rank, const int64_t *dims) {
  dynq__tensor_t t;
  ck_assert_int_eq(dynq__tensor_alloc(&t, DYNQ_DT_F32, rank, dims), 0);
  return t;
}

/* One run under CAP; the error text in err. */
static int run(const dynq__model_t *m, int precision, dynq__tensor_t *in, dynq__tensor_t *out,
               char *err, size_t errlen) {
  dynq__run_opts_t o = {.precision = precision, .threads = 1, .max_value_bytes = CAP};
  err[0] = 0;
  return dynq__model_run(m, &o, in, out, err, errlen);
}

/* The request of `rank`/`dims` (every input that shape) is refused in both
 * precisions with ELIMIT, the message naming `node` and `what`. */
static void expect_refused(const dynq__model_t *m, int n_in, int rank, const int64_t *dims,
                           const char *node, const char *what, int int8_only) {
  dynq__tensor_t in[2], out[2];
  for (int i = 0; i < n_in; i++) in[i] = input(rank, dims);
  for (int p = 0; p < 2; p++) {
    int precision = p ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8;
    if (p && int8_only) break;
    char err[512];
    memset(out, 0, sizeof(out));
    int rc = run(m, precision, in, out, err, sizeof(err));
    ck_assert_msg(rc == DYNQ_ELIMIT, "%s (%s): expected ELIMIT, got %d (%s)", node,
                  p ? "fp32" : "int8", rc, err);
    ck_assert_msg(strstr(err, node) != NULL && strstr(err, what) != NULL,
                  "error should name '%s' and '%s': %s", node, what, err);
    ck_assert_ptr_null(out[0].data);
  }
  for (int i = 0; i < n_in; i++) dynq__tensor_clear(&in[i]);
}

/* A small request is answered with the output shape odims. */
static void expect_served(const dynq__model_t *m, int n_in, int rank, const int64_t *dims,
                          int orank, const int64_t *odims) {
  dynq__tensor_t in[2], out[2];
  for (int i = 0; i < n_in; i++) in[i] = input(rank, dims);
  for (int p = 0; p < 2; p++) {
    char err[512];
    memset(out, 0, sizeof(out));
    int rc = run(m, p ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8, in, out, err, sizeof(err));
    ck_assert_msg(rc == 0, "small request: %d %s", rc, err);
    ck_assert_int_eq(out[0].rank, orank);
    for (int d = 0; d < orank; d++) ck_assert_int_eq(out[0].dims[d], odims[d]);
    dynq__tensor_clear(&out[0]);
  }
  for (int i = 0; i < n_in; i++) dynq__tensor_clear(&in[i]);
}

START_TEST(test_wide_linear) {
  dynq__model_t *m = convert("amp_linear", NULL, NULL, NULL, NULL);
  /* 256 KiB in, 1 GiB out */
  expect_refused(m, 1, 2, (int64_t[]){65536, 1}, "'wide'", "an output of 268435456 elements", 0);
  expect_served(m, 1, 2, (int64_t[]){5, 1}, 2, (int64_t[]){5, 4096});
  dynq__model_unref(m);
}
END_TEST

START_TEST(test_padded_conv) {
  dynq__model_t *m = convert("amp_conv", NULL, NULL, NULL, NULL);
  /* one pixel in, 16 planes of 2049 x 2049 out */
  expect_refused(m, 1, 4, (int64_t[]){1, 1, 1, 1}, "'padded'", "an output of 67174416", 0);
  dynq__model_unref(m);
}
END_TEST

START_TEST(test_convtranspose_columns) {
  dynq__model_t *m = convert("amp_convt", NULL, NULL, NULL, NULL);
  /* 16 KiB in, 564 KiB out, but 16 x 32 x 32 taps per input position */
  expect_refused(m, 1, 4, (int64_t[]){1, 1, 64, 64}, "'spread'",
                 "the column buffer of 67108864 elements", 0);
  expect_served(m, 1, 4, (int64_t[]){1, 1, 8, 8}, 4, (int64_t[]){1, 16, 39, 39});
  dynq__model_unref(m);
}
END_TEST

START_TEST(test_per_tensor_patches) {
  dynq__model_t *m = convert("amp_patch", "--act-per-tensor", "--quantize-small",
                             "--no-auto-fp32", "--no-self-check");
  /* 156 KiB in, 73 KiB out, but 4096 bytes of patch per output position */
  expect_refused(m, 1, 4, (int64_t[]){1, 1, 200, 200}, "'big_kernel'",
                 "the image's patches of 18769 elements", 1);
  expect_served(m, 1, 4, (int64_t[]){1, 1, 70, 70}, 4, (int64_t[]){1, 1, 7, 7});
  dynq__model_unref(m);
}
END_TEST

START_TEST(test_gru_from_one_feature) {
  dynq__model_t *m = convert("amp_gru", NULL, NULL, NULL, NULL);
  /* 2 MiB in, 128 MiB out */
  expect_refused(m, 1, 3, (int64_t[]){1, (int64_t)1 << 19, 1}, "'tall'",
                 "an output of 33554432 elements", 0);
  expect_served(m, 1, 3, (int64_t[]){3, 2, 1}, 4, (int64_t[]){3, 1, 2, 64});
  dynq__model_unref(m);
}
END_TEST

START_TEST(test_einsum_outer_product) {
  dynq__model_t *m = convert("amp_einsum", NULL, NULL, NULL, NULL);
  /* 64 KiB in, 256 MiB out: refused before the product is allocated */
  expect_refused(m, 2, 1, (int64_t[]){8192}, "'outer'", "the product of 67108864 elements", 0);
  dynq__model_unref(m);
  /* and the values of a small one: y[j][i] = a[i] * b[j] */
  m = convert("amp_einsum", NULL, NULL, NULL, NULL);
  dynq__tensor_t in[2], out[1];
  in[0] = input(1, (int64_t[]){3});
  in[1] = input(1, (int64_t[]){2});
  float *a = in[0].data, *b = in[1].data;
  a[0] = 1, a[1] = 2, a[2] = 3, b[0] = 10, b[1] = -1;
  char err[512];
  memset(out, 0, sizeof(out));
  ck_assert_msg(run(m, DYNQ_PRECISION_INT8, in, out, err, sizeof(err)) == 0, "%s", err);
  ck_assert_int_eq(out[0].dims[0], 2);
  ck_assert_int_eq(out[0].dims[1], 3);
  const float want[6] = {10, 20, 30, -1, -2, -3};
  for (int i = 0; i < 6; i++) ck_assert_float_eq(((float *)out[0].data)[i], want[i]);
  dynq__tensor_clear(&out[0]);
  dynq__tensor_clear(&in[0]);
  dynq__tensor_clear(&in[1]);
  dynq__model_unref(m);
}
END_TEST

static Suite *amplify_suite(void) {
  Suite *s = suite_create("amplify");
  TCase *tc = tcase_create("amplify");
  tcase_add_checked_fixture(tc, tu_tmp_setup, tu_tmp_teardown);
  tcase_add_test(tc, test_wide_linear);
  tcase_add_test(tc, test_padded_conv);
  tcase_add_test(tc, test_convtranspose_columns);
  tcase_add_test(tc, test_per_tensor_patches);
  tcase_add_test(tc, test_gru_from_one_feature);
  tcase_add_test(tc, test_einsum_outer_product);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(amplify_suite()) == 0 ? EXIT_SUCCESS : EXIT_FAILURE; }
