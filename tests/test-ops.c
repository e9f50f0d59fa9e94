/*
 * FP32 operators, called through the op table on hand-computed cases, and
 * their refusals of bad shapes (each naming the node).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dynq/errors.h"
#include "ops.h"
#include "testutil.h"

static char err[256];

static dynq__tensor_t tf(int rank, const int64_t *dims, float *data) {
  dynq__tensor_t t = {.dtype = DYNQ_DT_F32, .rank = rank, .data = data};
  memcpy(t.dims, dims, sizeof(int64_t) * (size_t)rank);
  return t;
}

/* Run op on inputs; attrs optional.  Returns rc; out filled on success. */
static int run(int op, const dynq__attr_t *attrs, int n_attr,
               const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  static const int32_t idx[4] = {0, 1, 2, 3};
  dynq__node_t n = {.op = op, .name = "t", .n_in = 0, .n_out = 1, .in = idx,
                    .out = idx, .n_attr = n_attr, .attr = attrs};
  dynq__op_ctx_t c = {.node = &n, .kernel = &dynq__kernel_ref, .err = err,
                      .errlen = sizeof(err)};
  memset(out, 0, sizeof(*out));
  err[0] = 0;
  return dynq__op_run1(NULL, &c, in, out);
}

static void expect(const dynq__tensor_t *t, int rank, const int64_t *dims,
                   const float *want, float tol) {
  ck_assert_int_eq(t->rank, rank);
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    ck_assert_int_eq(t->dims[i], dims[i]);
    n *= dims[i];
  }
  for (int64_t i = 0; i < n; i++)
    ck_assert_msg(fabsf(((float *)t->data)[i] - want[i]) <= tol, "elem %lld: %g vs %g",
                  (long long)i, ((float *)t->data)[i], want[i]);
}

START_TEST(add_broadcast) {
  float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {10, 20, 30}, c1[2] = {100, 200};
  int64_t da[2] = {2, 3}, db[1] = {3}, dc[2] = {2, 1};
  dynq__tensor_t A = tf(2, da, a), B = tf(1, db, b), C = tf(2, dc, c1), o;
  const dynq__tensor_t *in[2] = {&A, &B};
  ck_assert_int_eq(run(DYNQ_OP_ADD, NULL, 0, in, &o), 0);
  expect(&o, 2, da, (float[]){11, 22, 33, 14, 25, 36}, 0);
  dynq__tensor_clear(&o);
  in[1] = &C;
  ck_assert_int_eq(run(DYNQ_OP_MUL, NULL, 0, in, &o), 0);
  expect(&o, 2, da, (float[]){100, 200, 300, 800, 1000, 1200}, 0);
  dynq__tensor_clear(&o);
  /* [2,1] - [3] -> [2,3] (both sides broadcast) */
  in[0] = &C;
  in[1] = &B;
  ck_assert_int_eq(run(DYNQ_OP_SUB, NULL, 0, in, &o), 0);
  expect(&o, 2, da, (float[]){90, 80, 70, 190, 180, 170}, 0);
  dynq__tensor_clear(&o);
  /* incompatible */
  int64_t d4[1] = {4};
  float f4[4] = {0};
  dynq__tensor_t D = tf(1, d4, f4);
  in[0] = &A;
  in[1] = &D;
  ck_assert_int_eq(run(DYNQ_OP_ADD, NULL, 0, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (Add)"));
  ck_assert_ptr_nonnull(strstr(err, "[2, 3] and [4]"));
  /* dtype */
  D.dtype = DYNQ_DT_I32;
  ck_assert_int_eq(run(DYNQ_OP_ADD, NULL, 0, in, &o), DYNQ_EDTYPE);
}
END_TEST

START_TEST(unary) {
  float x[4] = {-2, 0, 0.5f, NAN};
  int64_t d[1] = {4};
  dynq__tensor_t X = tf(1, d, x), o;
  const dynq__tensor_t *in[1] = {&X};
  ck_assert_int_eq(run(DYNQ_OP_RELU, NULL, 0, in, &o), 0);
  float *y = o.data;
  ck_assert(y[0] == 0 && y[1] == 0 && y[2] == 0.5f && isnan(y[3]));
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run(DYNQ_OP_SIGMOID, NULL, 0, in, &o), 0);
  ck_assert_float_eq_tol(((float *)o.data)[0], 1.0 / (1.0 + exp(2.0)), 1e-7);
  ck_assert_float_eq_tol(((float *)o.data)[1], 0.5, 1e-7);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run(DYNQ_OP_TANH, NULL, 0, in, &o), 0);
  ck_assert_float_eq_tol(((float *)o.data)[2], tanh(0.5), 1e-7);
  dynq__tensor_clear(&o);
}
END_TEST

START_TEST(softmax_axes) {
  float x[6] = {1, 2, 3, 1, 1, 1};
  int64_t d[2] = {2, 3};
  dynq__tensor_t X = tf(2, d, x), o;
  const dynq__tensor_t *in[1] = {&X};
  ck_assert_int_eq(run(DYNQ_OP_SOFTMAX, NULL, 0, in, &o), 0);
  double s = exp(1) + exp(2) + exp(3);
  expect(&o, 2, d, (float[]){exp(1) / s, exp(2) / s, exp(3) / s, 1 / 3., 1 / 3., 1 / 3.}, 1e-6f);
  dynq__tensor_clear(&o);
  dynq__attr_t ax0 = {.name = "axis", .type = DYNQ_ATTR_INT, .i = 0};
  ck_assert_int_eq(run(DYNQ_OP_SOFTMAX, &ax0, 1, in, &o), 0);
  float e0 = (float)(exp(1) / (exp(1) + exp(1))), e1 = (float)(exp(2) / (exp(2) + exp(1))),
        e2 = (float)(exp(3) / (exp(3) + exp(1)));
  expect(&o, 2, d, (float[]){e0, e1, e2, 1 - e0, 1 - e1, 1 - e2}, 1e-6f);
  dynq__tensor_clear(&o);
  dynq__attr_t bad = {.name = "axis", .type = DYNQ_ATTR_INT, .i = 5};
  ck_assert_int_eq(run(DYNQ_OP_SOFTMAX, &bad, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "axis 5"));
}
END_TEST

START_TEST(flatten_reshape) {
  float x[24];
  for (int i = 0; i < 24; i++) x[i] = (float)i;
  int64_t d[3] = {2, 3, 4};
  dynq__tensor_t X = tf(3, d, x), o;
  const dynq__tensor_t *in[2] = {&X, NULL};
  ck_assert_int_eq(run(DYNQ_OP_FLATTEN, NULL, 0, in, &o), 0);
  ck_assert_int_eq(o.rank, 2);
  ck_assert_int_eq(o.dims[0], 2);
  ck_assert_int_eq(o.dims[1], 12);
  ck_assert_float_eq(((float *)o.data)[23], 23);
  dynq__tensor_clear(&o);
  int64_t shp[3] = {0, -1, 2}, ds[1] = {3};
  dynq__tensor_t S = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {3}, .data = shp};
  (void)ds;
  in[1] = &S;
  ck_assert_int_eq(run(DYNQ_OP_RESHAPE, NULL, 0, in, &o), 0);
  ck_assert_int_eq(o.rank, 3);
  ck_assert_int_eq(o.dims[0], 2);
  ck_assert_int_eq(o.dims[1], 6);
  ck_assert_int_eq(o.dims[2], 2);
  dynq__tensor_clear(&o);
  int64_t bad1[2] = {5, -1};
  S.dims[0] = 2;
  S.data = bad1;
  ck_assert_int_eq(run(DYNQ_OP_RESHAPE, NULL, 0, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "cannot infer -1"));
  int64_t bad2[2] = {-1, -1};
  S.data = bad2;
  ck_assert_int_eq(run(DYNQ_OP_RESHAPE, NULL, 0, in, &o), DYNQ_ESHAPE);
  int64_t bad3[2] = {7, 7};
  S.data = bad3;
  ck_assert_int_eq(run(DYNQ_OP_RESHAPE, NULL, 0, in, &o), DYNQ_ESHAPE);
  int64_t huge[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
  S.data = huge;
  ck_assert_int_eq(run(DYNQ_OP_RESHAPE, NULL, 0, in, &o), DYNQ_ESHAPE);
}
END_TEST

static void naive_mm(const float *a, const float *b, float *c, int M, int K, int N) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < K; k++) s += (double)a[i * K + k] * b[k * N + j];
      c[i * N + j] = (float)s;
    }
}

START_TEST(matmul_batched) {
  enum { B = 3, M = 4, K = 5, N = 6 };
  float a[B * M * K], b[K * N], want[B * M * N];
  for (int i = 0; i < B * M * K; i++) a[i] = (float)((i * 7) % 11) - 5;
  for (int i = 0; i < K * N; i++) b[i] = (float)((i * 5) % 13) - 6;
  for (int i = 0; i < B; i++) naive_mm(a + i * M * K, b, want + i * M * N, M, K, N);
  int64_t da[3] = {B, M, K}, db[2] = {K, N}, dw[3] = {B, M, N};
  dynq__tensor_t A = tf(3, da, a), Bt = tf(2, db, b), o;
  const dynq__tensor_t *in[2] = {&A, &Bt};
  ck_assert_int_eq(run(DYNQ_OP_MATMUL, NULL, 0, in, &o), 0);
  expect(&o, 3, dw, want, 1e-4f);
  dynq__tensor_clear(&o);
  /* 1-D x 2-D (M = 1 goes through sgemv) */
  int64_t d1[1] = {K}, dv[1] = {N};
  dynq__tensor_t V = tf(1, d1, a);
  in[0] = &V;
  ck_assert_int_eq(run(DYNQ_OP_MATMUL, NULL, 0, in, &o), 0);
  expect(&o, 1, dv, want, 1e-4f);
  dynq__tensor_clear(&o);
  /* inner mismatch */
  in[0] = &A;
  in[1] = &A;
  ck_assert_int_eq(run(DYNQ_OP_MATMUL, NULL, 0, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "inner dimensions"));
}
END_TEST

START_TEST(gemm_attrs) {
  enum { M = 3, K = 4, N = 2 };
  float a[M * K], at[K * M], b[K * N], bt[N * K], c[N] = {1, -1}, want[M * N];
  for (int i = 0; i < M; i++)
    for (int k = 0; k < K; k++) {
      a[i * K + k] = (float)(i + 2 * k) - 3;
      at[k * M + i] = a[i * K + k];
    }
  for (int k = 0; k < K; k++)
    for (int j = 0; j < N; j++) {
      b[k * N + j] = (float)(k * N + j) * 0.5f - 1;
      bt[j * K + k] = b[k * N + j];
    }
  naive_mm(a, b, want, M, K, N);
  for (int i = 0; i < M * N; i++) want[i] = 0.5f * want[i] + 2.0f * c[i % N];
  dynq__attr_t at_[4] = {{.name = "transA", .type = DYNQ_ATTR_INT, .i = 1},
                         {.name = "transB", .type = DYNQ_ATTR_INT, .i = 1},
                         {.name = "alpha", .type = DYNQ_ATTR_FLOAT, .f = 0.5f},
                         {.name = "beta", .type = DYNQ_ATTR_FLOAT, .f = 2.0f}};
  int64_t dat[2] = {K, M}, dbt[2] = {N, K}, dc[1] = {N}, dy[2] = {M, N};
  dynq__tensor_t A = tf(2, dat, at), Bt = tf(2, dbt, bt), C = tf(1, dc, c), o;
  const dynq__tensor_t *in[3] = {&A, &Bt, &C};
  ck_assert_int_eq(run(DYNQ_OP_GEMM, at_, 4, in, &o), 0);
  expect(&o, 2, dy, want, 1e-5f);
  dynq__tensor_clear(&o);
  /* non-transposed operands, same answer */
  int64_t da[2] = {M, K}, db[2] = {K, N};
  dynq__tensor_t A2 = tf(2, da, a), B2 = tf(2, db, b);
  const dynq__tensor_t *in2[3] = {&A2, &B2, &C};
  ck_assert_int_eq(run(DYNQ_OP_GEMM, at_ + 2, 2, in2, &o), 0);
  expect(&o, 2, dy, want, 1e-5f);
  dynq__tensor_clear(&o);
  /* C that does not broadcast */
  int64_t dcb[1] = {3};
  float cb[3] = {0};
  dynq__tensor_t Cb = tf(1, dcb, cb);
  in2[2] = &Cb;
  ck_assert_int_eq(run(DYNQ_OP_GEMM, NULL, 0, in2, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "does not broadcast"));
}
END_TEST

/* LayerNormalization over the last axis, and its shape refusals. */
START_TEST(layernorm_rows) {
  float x[6] = {1, 2, 3, -1, 0, 1}, g[3] = {1, 2, 1}, b[3] = {0, 1, 0}, g2[2] = {1, 1};
  int64_t d[2] = {2, 3}, d3[1] = {3}, d2[1] = {2};
  dynq__tensor_t X = tf(2, d, x), G = tf(1, d3, g), B = tf(1, d3, b), G2 = tf(1, d2, g2), o;
  const dynq__tensor_t *in[3] = {&X, &G, &B};
  dynq__attr_t eps = {.name = "epsilon", .type = DYNQ_ATTR_FLOAT, .f = 0.0f};
  ck_assert_int_eq(run(DYNQ_OP_LAYERNORM, &eps, 1, in, &o), 0);
  float r = (float)sqrt(1.5); /* x - mean = -1, 0, 1; inv std = sqrt(3/2) */
  expect(&o, 2, d, (float[]){-r, 1, r, -r, 1, r}, 1e-6f);
  dynq__tensor_clear(&o);
  in[1] = &G2;
  ck_assert_int_eq(run(DYNQ_OP_LAYERNORM, &eps, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (LayerNormalization)"));
  ck_assert_ptr_nonnull(strstr(err, "do not match"));
}
END_TEST

START_TEST(batchnorm_channels) {
  float x[4] = {1, 2, 3, 4}, sc[2] = {2, 1}, bi[2] = {0, 1}, mu[2] = {1, 0}, va[2] = {1, 4};
  int64_t d[3] = {1, 2, 2}, dc[1] = {2}, d1[1] = {1};
  dynq__tensor_t X = tf(3, d, x), S = tf(1, dc, sc), Bi = tf(1, dc, bi), M = tf(1, dc, mu),
                 V = tf(1, dc, va), V1 = tf(1, d1, va), o;
  const dynq__tensor_t *in[5] = {&X, &S, &Bi, &M, &V};
  dynq__attr_t eps = {.name = "epsilon", .type = DYNQ_ATTR_FLOAT, .f = 0.0f};
  ck_assert_int_eq(run(DYNQ_OP_BATCHNORM, &eps, 1, in, &o), 0);
  expect(&o, 3, d, (float[]){0, 2, 2.5f, 3}, 1e-6f);
  dynq__tensor_clear(&o);
  in[4] = &V1;
  ck_assert_int_eq(run(DYNQ_OP_BATCHNORM, &eps, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (BatchNormalization)"));
  ck_assert_ptr_nonnull(strstr(err, "2 channels"));
}
END_TEST

/* Pools: values, the window larger than the padded input refused by
 * name, the global forms' rank check. */
START_TEST(pools) {
  float x[8] = {1, 5, 2, 0, 3, 4, -1, 6};
  int64_t d[4] = {1, 1, 2, 4}, od[4] = {1, 1, 1, 2}, gd[4] = {1, 1, 1, 1};
  dynq__tensor_t X = tf(4, d, x), o;
  const dynq__tensor_t *in[1] = {&X};
  dynq__attr_t at[4] = {{.name = "spatial", .type = DYNQ_ATTR_INT, .i = 2},
                        {.name = "kernel_shape0", .type = DYNQ_ATTR_INT, .i = 2},
                        {.name = "kernel_shape1", .type = DYNQ_ATTR_INT, .i = 2},
                        {.name = "strides1", .type = DYNQ_ATTR_INT, .i = 2}};
  ck_assert_int_eq(run(DYNQ_OP_MAXPOOL, at, 4, in, &o), 0);
  expect(&o, 4, od, (float[]){5, 6}, 0);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run(DYNQ_OP_AVERAGEPOOL, at, 4, in, &o), 0);
  expect(&o, 4, od, (float[]){13 / 4.0f, 7 / 4.0f}, 1e-6f);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run(DYNQ_OP_GLOBAL_MAXPOOL, NULL, 0, in, &o), 0);
  expect(&o, 4, gd, (float[]){6}, 0);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run(DYNQ_OP_GLOBAL_AVERAGEPOOL, NULL, 0, in, &o), 0);
  expect(&o, 4, gd, (float[]){20 / 8.0f}, 1e-6f);
  dynq__tensor_clear(&o);
  at[1].i = 3; /* a 3-high window over 2 rows, no padding */
  ck_assert_int_eq(run(DYNQ_OP_MAXPOOL, at, 4, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (MaxPool)"));
  ck_assert_ptr_nonnull(strstr(err, "smaller than the window"));
  int64_t d2[2] = {2, 4};
  dynq__tensor_t X2 = tf(2, d2, x);
  in[0] = &X2;
  ck_assert_int_eq(run(DYNQ_OP_GLOBAL_AVERAGEPOOL, NULL, 0, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "(N, C, spatial...)"));
}
END_TEST

START_TEST(hard_activations) {
  float x[5] = {-4, -1, 0, 2, 4};
  int64_t d[1] = {5};
  dynq__tensor_t X = tf(1, d, x), o;
  const dynq__tensor_t *in[1] = {&X};
  ck_assert_int_eq(run(DYNQ_OP_HARD_SIGMOID, NULL, 0, in, &o), 0);
  expect(&o, 1, d, (float[]){0, 0.3f, 0.5f, 0.9f, 1}, 1e-6f);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run(DYNQ_OP_HARD_SWISH, NULL, 0, in, &o), 0);
  expect(&o, 1, d, (float[]){0, -1 / 3.0f, 0, 2 * (2 / 6.0f + 0.5f), 4}, 1e-6f);
  dynq__tensor_clear(&o);
}
END_TEST

/* The opset < 13 form: one softmax over every axis from `axis` on. */
START_TEST(softmax_flatten) {
  float x[4] = {0, 1, 2, 3};
  int64_t d[3] = {1, 2, 2};
  dynq__tensor_t X = tf(3, d, x), o;
  const dynq__tensor_t *in[1] = {&X};
  dynq__attr_t at[2] = {{.name = "axis", .type = DYNQ_ATTR_INT, .i = 1},
                        {.name = "flatten", .type = DYNQ_ATTR_INT, .i = 1}};
  ck_assert_int_eq(run(DYNQ_OP_SOFTMAX, at, 2, in, &o), 0);
  double s = 1 + exp(1) + exp(2) + exp(3);
  expect(&o, 3, d, (float[]){1 / s, exp(1) / s, exp(2) / s, exp(3) / s}, 1e-6f);
  dynq__tensor_clear(&o);
}
END_TEST

/* QGather: int8 rows times their scale; FP32 path reads the reference;
 * an index outside the table is refused with its value. */
START_TEST(qgather_rows) {
  int64_t ix[3] = {2, 0, -1}, di[1] = {3}, dq[2] = {3, 2}, ds[1] = {3}, dy[2] = {3, 2};
  int8_t q[6] = {1, -2, 3, 4, 127, -127};
  float sc[3] = {0.5f, 0.25f, 0.01f}, ref[6] = {0.5f, -1, 0.75f, 1, 1.27f, -1.27f};
  dynq__tensor_t I = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {3}, .data = ix};
  dynq__tensor_t Q = {.dtype = DYNQ_DT_I8, .rank = 2, .dims = {3, 2}, .data = q};
  dynq__tensor_t S = tf(1, ds, sc), R = tf(2, dq, ref), o;
  (void)di;
  const dynq__tensor_t *in[4] = {&I, &Q, &S, NULL};
  ck_assert_int_eq(run(DYNQ_OP_QGATHER, NULL, 0, in, &o), 0);
  expect(&o, 2, dy, (float[]){1.27f, -1.27f, 0.5f, -1, 1.27f, -1.27f}, 1e-6f);
  dynq__tensor_clear(&o);
  in[3] = &R;
  ck_assert_int_eq(run(DYNQ_OP_QGATHER, NULL, 0, in, &o), 0); /* INT8: R unused */
  expect(&o, 2, dy, (float[]){1.27f, -1.27f, 0.5f, -1, 1.27f, -1.27f}, 1e-6f);
  dynq__tensor_clear(&o);
  ix[1] = 3;
  ck_assert_int_eq(run(DYNQ_OP_QGATHER, NULL, 0, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (QGather): index 3 outside [-3, 3)"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("ops");
  TCase *tc = tcase_create("fp32");
  tcase_add_test(tc, add_broadcast);
  tcase_add_test(tc, unary);
  tcase_add_test(tc, softmax_axes);
  tcase_add_test(tc, flatten_reshape);
  tcase_add_test(tc, matmul_batched);
  tcase_add_test(tc, gemm_attrs);
  tcase_add_test(tc, layernorm_rows);
  tcase_add_test(tc, batchnorm_channels);
  tcase_add_test(tc, pools);
  tcase_add_test(tc, hard_activations);
  tcase_add_test(tc, softmax_flatten);
  tcase_add_test(tc, qgather_rows);
  suite_add_tcase(s, tc);
  return tu_run_suite(s) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
