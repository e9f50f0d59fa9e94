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


/* Like run() with n_in inputs (optional ones may be NULL). */
static int run_n(int op, const dynq__attr_t *attrs, int n_attr, int n_in,
                 const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  static const int32_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  dynq__node_t n = {.op = op, .name = "t", .n_in = n_in, .n_out = 1, .in = idx,
                    .out = idx, .n_attr = n_attr, .attr = attrs};
  dynq__op_ctx_t c = {.node = &n, .kernel = &dynq__kernel_ref, .err = err,
                      .errlen = sizeof(err)};
  memset(out, 0, sizeof(*out));
  err[0] = 0;
  return dynq__op_run1(NULL, &c, in, out);
}

static dynq__tensor_t ti64(int n, int64_t *v) {
  dynq__tensor_t t = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {n}, .data = v};
  return t;
}

/* Transpose(x, perm) through the Transpose op. */
static dynq__tensor_t transposed(const dynq__tensor_t *x, int64_t *perm) {
  dynq__tensor_t p = ti64(x->rank, perm), o;
  const dynq__tensor_t *in[2] = {x, &p};
  ck_assert_int_eq(run_n(DYNQ_OP_TRANSPOSE, NULL, 0, 2, in, &o), 0);
  return o;
}

static const int64_t perms4[24][4] = {
  {0, 1, 2, 3}, {0, 1, 3, 2}, {0, 2, 1, 3}, {0, 2, 3, 1}, {0, 3, 1, 2}, {0, 3, 2, 1},
  {1, 0, 2, 3}, {1, 0, 3, 2}, {1, 2, 0, 3}, {1, 2, 3, 0}, {1, 3, 0, 2}, {1, 3, 2, 0},
  {2, 0, 1, 3}, {2, 0, 3, 1}, {2, 1, 0, 3}, {2, 1, 3, 0}, {2, 3, 0, 1}, {2, 3, 1, 0},
  {3, 0, 1, 2}, {3, 0, 2, 1}, {3, 1, 0, 2}, {3, 1, 2, 0}, {3, 2, 0, 1}, {3, 2, 1, 0}};

/* StridedMatMul against Transpose + MatMul + Transpose for every operand
 * permutation (BLAS on a leading dimension, transposed operands, the
 * copied fallback) and result permutations that take each output path
 * (leading dimension, transposed result, scatter), then broadcast batch
 * axes, alpha, and the refusals. */
START_TEST(strided_matmul_perms) {
  enum { B = 2, H = 3, M = 5, K = 4, N = 6 };
  const int64_t la[4] = {B, H, M, K}, lb[4] = {B, H, K, N};
  float a[B * H * M * K], b[B * H * K * N];
  for (int i = 0; i < B * H * M * K; i++) a[i] = (float)((i * 7) % 11) - 5;
  for (int i = 0; i < B * H * K * N; i++) b[i] = (float)((i * 5) % 13) - 6;
  static const int py_pick[] = {0, 1, 2, 3, 23};
  int cases = 0;
  for (int ia = 0; ia < 24; ia++)
    for (int ib = 0; ib < 24; ib += 5)
      for (size_t iy = 0; iy < sizeof(py_pick) / sizeof(py_pick[0]); iy++) {
        int64_t pa[4], pb[4], py[4], inv_a[4], inv_b[4], da[4], db[4];
        memcpy(pa, perms4[ia], sizeof pa);
        memcpy(pb, perms4[ib], sizeof pb);
        memcpy(py, perms4[py_pick[iy]], sizeof py);
        /* physical operands whose permutation gives the logical shapes */
        for (int d = 0; d < 4; d++) da[pa[d]] = la[d], db[pb[d]] = lb[d];
        for (int d = 0; d < 4; d++) inv_a[pa[d]] = d, inv_b[pb[d]] = d;
        dynq__tensor_t L_a = tf(4, la, a), L_b = tf(4, lb, b);
        dynq__tensor_t A = transposed(&L_a, inv_a), Bt = transposed(&L_b, inv_b);
        ck_assert_int_eq(A.dims[0], da[0]);
        ck_assert_int_eq(Bt.dims[3], db[3]);
        dynq__tensor_t ref, want, o;
        const dynq__tensor_t *mi[2] = {&L_a, &L_b};
        ck_assert_int_eq(run_n(DYNQ_OP_MATMUL, NULL, 0, 2, mi, &ref), 0);
        want = transposed(&ref, py);
        dynq__tensor_t Pa = ti64(4, pa), Pb = ti64(4, pb), Py = ti64(4, py);
        const dynq__tensor_t *in[5] = {&A, &Bt, &Pa, &Pb, &Py};
        ck_assert_int_eq(run_n(DYNQ_OP_STRIDED_MATMUL, NULL, 0, 5, in, &o), 0);
        expect(&o, 4, want.dims, want.data, 1e-4f);
        cases++;
        dynq__tensor_clear(&o);
        dynq__tensor_clear(&want);
        dynq__tensor_clear(&ref);
        dynq__tensor_clear(&A);
        dynq__tensor_clear(&Bt);
      }
  ck_assert_int_eq(cases, 24 * 5 * 5);
  /* A [H, M, K] against B [B, H, K, N] (batch broadcast), B's last two
   * axes swapped (perm_b only), alpha 0.5, perm_y omitted */
  {
    int64_t d3[3] = {H, M, K}, dbt[4] = {B, H, N, K}, sw[4] = {0, 1, 3, 2};
    dynq__tensor_t A = tf(3, d3, a), L_b = tf(4, lb, b);
    dynq__tensor_t Bt = transposed(&L_b, sw), ref, o;
    ck_assert_int_eq(Bt.dims[2], dbt[2]);
    const dynq__tensor_t *mi[2] = {&A, &L_b};
    ck_assert_int_eq(run_n(DYNQ_OP_MATMUL, NULL, 0, 2, mi, &ref), 0);
    for (int64_t i = 0; i < dynq__tensor_numel(&ref); i++) ((float *)ref.data)[i] *= 0.5f;
    dynq__tensor_t Pb = ti64(4, sw);
    const dynq__tensor_t *in[5] = {&A, &Bt, NULL, &Pb, NULL};
    dynq__attr_t al = {.name = "alpha", .type = DYNQ_ATTR_FLOAT, .f = 0.5f};
    ck_assert_int_eq(run_n(DYNQ_OP_STRIDED_MATMUL, &al, 1, 5, in, &o), 0);
    expect(&o, 4, ref.dims, ref.data, 1e-4f);
    dynq__tensor_clear(&o);
    /* refusals, each naming what was wrong */
    int64_t bad[4] = {0, 1, 1, 2}, d1[1] = {K};
    dynq__tensor_t Pbad = ti64(4, bad), P3 = ti64(3, sw), V = tf(1, d1, a);
    in[3] = &Pbad;
    ck_assert_int_eq(run_n(DYNQ_OP_STRIDED_MATMUL, NULL, 0, 5, in, &o), DYNQ_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err, "node 't' (StridedMatMul): perm_b is not a permutation"));
    in[3] = &P3;
    ck_assert_int_eq(run_n(DYNQ_OP_STRIDED_MATMUL, NULL, 0, 5, in, &o), DYNQ_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err, "perm_b has 3 values for rank 4"));
    in[3] = NULL;  /* B unpermuted: [B, H, N, K] x ... K != N */
    ck_assert_int_eq(run_n(DYNQ_OP_STRIDED_MATMUL, NULL, 0, 5, in, &o), DYNQ_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err, "inner dimensions differ"));
    in[0] = &V;
    ck_assert_int_eq(run_n(DYNQ_OP_STRIDED_MATMUL, NULL, 0, 5, in, &o), DYNQ_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err, "rank >= 2"));
    dynq__tensor_clear(&ref);
    dynq__tensor_clear(&Bt);
  }
}
END_TEST

/* MaskedSoftmax(X, M) against Add then Softmax, over row lengths around
 * the vector width, with the mask broadcast ([B,1,1,L] as attention's
 * padding mask, [L] as a causal row) or larger than X; then refusals. */
START_TEST(masked_softmax_rows) {
  static const int64_t lens[] = {1, 2, 7, 15, 16, 17, 33, 64, 129};
  for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
    int64_t L = lens[li], dx[4] = {2, 3, 4, L}, dm[4] = {2, 1, 1, L}, dl[1] = {L};
    float x[2 * 3 * 4 * 129], m[2 * 129];
    for (int64_t i = 0; i < 24 * L; i++) x[i] = (float)((i * 37) % 101) / 7.0f - 7.0f;
    for (int64_t i = 0; i < 2 * L; i++) m[i] = i % 5 == 3 ? -10000.0f : 0.0f;
    dynq__tensor_t X = tf(4, dx, x), Mk = tf(4, dm, m), Ml = tf(1, dl, m);
    const dynq__tensor_t *masks[2] = {&Mk, &Ml};
    for (int k = 0; k < 2; k++) {
      dynq__tensor_t s, want, o;
      const dynq__tensor_t *in[2] = {&X, masks[k]};
      ck_assert_int_eq(run_n(DYNQ_OP_ADD, NULL, 0, 2, in, &s), 0);
      const dynq__tensor_t *sin[1] = {&s};
      dynq__attr_t ax = {.name = "axis", .type = DYNQ_ATTR_INT, .i = -1};
      ck_assert_int_eq(run_n(DYNQ_OP_SOFTMAX, &ax, 1, 1, sin, &want), 0);
      ck_assert_int_eq(run_n(DYNQ_OP_MASKED_SOFTMAX, NULL, 0, 2, in, &o), 0);
      expect(&o, 4, dx, want.data, 1e-6f);
      /* and each row against a double-precision softmax */
      for (int64_t r = 0; r < 24; r++) {
        double mx = -INFINITY, sum = 0;
        const float *mr = k == 0 ? m + (r / 12) * L : m;
        for (int64_t j = 0; j < L; j++) mx = fmax(mx, (double)x[r * L + j] + mr[j]);
        for (int64_t j = 0; j < L; j++) sum += exp((double)x[r * L + j] + mr[j] - mx);
        for (int64_t j = 0; j < L; j++) {
          double p = exp((double)x[r * L + j] + mr[j] - mx) / sum;
          ck_assert_msg(fabs(((float *)o.data)[r * L + j] - p) <= 1e-6 * (1 + p),
                        "L %lld row %lld col %lld", (long long)L, (long long)r, (long long)j);
        }
      }
      dynq__tensor_clear(&o);
      dynq__tensor_clear(&want);
      dynq__tensor_clear(&s);
    }
  }
  /* X smaller than the mask: the result takes the broadcast shape */
  float x1[3] = {0, 1, 2}, m2[6] = {0, 0, 0, 0, -10000.0f, 0};
  int64_t d1[1] = {3}, d2[2] = {2, 3}, d4[1] = {4};
  dynq__tensor_t X = tf(1, d1, x1), Mm = tf(2, d2, m2), o;
  const dynq__tensor_t *in[2] = {&X, &Mm};
  ck_assert_int_eq(run_n(DYNQ_OP_MASKED_SOFTMAX, NULL, 0, 2, in, &o), 0);
  ck_assert_int_eq(o.rank, 2);
  float *y = o.data;
  ck_assert(fabsf(y[4]) < 1e-30f && fabsf(y[3] + y[5] - 1.0f) < 1e-6f && y[2] > y[1]);
  dynq__tensor_clear(&o);
  dynq__tensor_t W = tf(1, d4, m2);
  in[1] = &W;
  ck_assert_int_eq(run_n(DYNQ_OP_MASKED_SOFTMAX, NULL, 0, 2, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (MaskedSoftmax): shapes [3] and [4] do not broadcast"));
  int64_t iv[3] = {1, 2, 3};
  dynq__tensor_t I = ti64(3, iv);
  in[1] = &I;
  ck_assert_int_ne(run_n(DYNQ_OP_MASKED_SOFTMAX, NULL, 0, 2, in, &o), 0);
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
  tcase_add_test(tc, strided_matmul_perms);
  tcase_add_test(tc, masked_softmax_rows);
  suite_add_tcase(s, tc);
  return tu_run_suite(s) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
