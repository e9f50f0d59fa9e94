/*
 * FP32 operators, called through the op table on hand-computed cases (or
 * against their definitions computed here), and their refusals of bad
 * shapes (each naming the node).
 */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "ops.h"
#include "testutil.h"

static char err[256];

static dynq__tensor_t tf(int rank, const int64_t *dims, float *data) {
  dynq__tensor_t t = {.dtype = DYNQ_DT_F32, .rank = rank, .data = data};
  if (rank > 0) memcpy(t.dims, dims, sizeof(int64_t) * (size_t)rank); /* scalars: dims NULL */
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

#define AI(nm, v) {.name = nm, .type = DYNQ_ATTR_INT, .i = (v)}

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

/* MaxPool and AveragePool's whole rows (pool.c runs the windows that lie
 * wholly in the input tap by tap across a row) against a window-by-window
 * reference that does the same operations in the same order: the same
 * bits, NaNs included, over strides, dilations (AveragePool's too, opset
 * 19), pads, ceil_mode and both count_include_pad settings. */
START_TEST(pool_rows_bit_exact) {
  enum { C = 2, H = 9, W = 23 };
  static float x[C * H * W];
  uint32_t r = 12345;
  for (int i = 0; i < C * H * W; i++) {
    r = r * 1664525u + 1013904223u;
    x[i] = (float)((int32_t)(r >> 8) % 2001) / 1000.0f;
    if (r % 97 == 0) x[i] = NAN;
  }
  int64_t d[4] = {1, C, H, W};
  dynq__tensor_t X = tf(4, d, x), o;
  const dynq__tensor_t *in[1] = {&X};
  static const int64_t ks[][2] = {{3, 3}, {2, 5}, {1, 7}, {3, 1}};
  int cases = 0;
  for (size_t ki = 0; ki < sizeof(ks) / sizeof(ks[0]); ki++)
    for (int s = 1; s <= 3; s++)
      for (int dl = 1; dl <= 2; dl++)
        for (int pad = 0; pad <= 2; pad++)
          for (int cm = 0; cm <= 1; cm++)
            for (int op = 0; op < 3; op++) {  /* max, avg, avg counting pads */
              int64_t k1 = ks[ki][1], k0 = ks[ki][0];
              if (pad >= k1 || pad >= k0) continue;  /* ONNX: pads below the kernel */
              dynq__attr_t at[] = {AI("spatial", 2), AI("kernel_shape0", k0),
                                   AI("kernel_shape1", k1), AI("strides0", s), AI("strides1", s),
                                   AI("dilations0", dl), AI("dilations1", dl),
                                   AI("pad_begin0", pad), AI("pad_begin1", pad),
                                   AI("pad_end0", pad), AI("pad_end1", pad), AI("ceil_mode", cm),
                                   AI("count_include_pad", op == 2)};
              int rc = run(op ? DYNQ_OP_AVERAGEPOOL : DYNQ_OP_MAXPOOL, at, 13, in, &o);
              ck_assert_msg(rc == 0, "%s", err);
              int64_t oh = o.dims[2], ow = o.dims[3], dd = dl;
              for (int64_t c = 0; c < C; c++)
                for (int64_t oy = 0; oy < oh; oy++)
                  for (int64_t ox = 0; ox < ow; ox++) {
                    int64_t y0 = oy * s - pad, x0 = ox * s - pad, cnt = 0, ny = 0, nx = 0;
                    float mx = -INFINITY, sum = 0.0f;
                    for (int64_t a = 0; a < k0; a++)
                      for (int64_t b = 0; b < k1; b++) {
                        int64_t y = y0 + a * dd, xx = x0 + b * dd;
                        if (y < 0 || y >= H || xx < 0 || xx >= W) continue;
                        float v = x[(c * H + y) * W + xx];
                        if (v > mx || v != v) mx = v;
                        sum += v;
                        cnt++;
                      }
                    float want = mx;
                    if (op) {
                      int64_t div = cnt;
                      if (op == 2) {  /* the taps within the padded input */
                        for (int64_t a = 0; a < k0; a++) ny += y0 + a * dd < H + pad;
                        for (int64_t b = 0; b < k1; b++) nx += x0 + b * dd < W + pad;
                        div = ny * nx;
                      }
                      want = div > 0 ? sum / (float)div : 0.0f;
                    }
                    float got = ((float *)o.data)[(c * oh + oy) * ow + ox];
                    ck_assert_msg(memcmp(&got, &want, 4) == 0,
                                  "op %d k %lldx%lld s %d d %d pad %d ceil %d: [%lld,%lld,%lld] "
                                  "%.9g, want %.9g", op, (long long)k0, (long long)k1, s, dl,
                                  pad, cm, (long long)c, (long long)oy, (long long)ox, got, want);
                  }
              dynq__tensor_clear(&o);
              cases++;
            }
  ck_assert_int_gt(cases, 100);
}
END_TEST


/* AveragePool's dilations (opset 19) by hand, and hostile geometry: a
 * dilated window larger than the padded input refused by name, a window
 * spanning 2^32 that must not overflow. */
START_TEST(avgpool_dilated) {
  float x[7] = {1, 2, 3, 4, 5, 6, 7};
  int64_t d[3] = {1, 1, 7};
  dynq__tensor_t X = tf(3, d, x), o;
  const dynq__tensor_t *in[1] = {&X};
  /* k 3, d 2, pads 1, 2: taps at -1, 1, 3 | 0, 2, 4 | ... */
  dynq__attr_t at[] = {AI("spatial", 1), AI("kernel_shape0", 3), AI("dilations0", 2),
                       AI("pad_begin0", 1), AI("pad_end0", 2), AI("count_include_pad", 0),
                       AI("strides0", 2), AI("ceil_mode", 0)};
  ck_assert_int_eq(run(DYNQ_OP_AVERAGEPOOL, at, 8, in, &o), 0);
  /* out = (7 + 3 - 5) / 2 + 1 = 3: starts -1, 1, 3: {2, 4}, {2, 4, 6}, {4, 6} */
  expect(&o, 3, (int64_t[]){1, 1, 3}, (float[]){3, 4, 5}, 1e-6f);
  dynq__tensor_clear(&o);
  at[5].i = 1; /* count_include_pad: every tap inside [-1, 9) */
  ck_assert_int_eq(run(DYNQ_OP_AVERAGEPOOL, at, 8, in, &o), 0);
  expect(&o, 3, (int64_t[]){1, 1, 3}, (float[]){6 / 3.0f, 12 / 3.0f, 10 / 3.0f}, 1e-6f);
  dynq__tensor_clear(&o);
  /* ceil_mode: (7 + 3 - 5) / 2 rounds up, 4 windows; the last starts at 5
   * with taps 5, 7, 9: 9 lies past the padded end (9), not counted */
  at[7].i = 1;
  ck_assert_int_eq(run(DYNQ_OP_AVERAGEPOOL, at, 8, in, &o), 0);
  expect(&o, 3, (int64_t[]){1, 1, 4}, (float[]){2, 4, 10 / 3.0f, 6 / 2.0f}, 1e-6f);
  dynq__tensor_clear(&o);
  /* the dilated span 65536 * 65535 + 1 over 7 + 2 * 65535: refused */
  dynq__attr_t big[] = {AI("spatial", 1), AI("kernel_shape0", 65536), AI("dilations0", 65536),
                        AI("pad_begin0", 65535), AI("pad_end0", 65535),
                        AI("count_include_pad", 1)};
  ck_assert_int_eq(run(DYNQ_OP_AVERAGEPOOL, big, 6, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (AveragePool)"));
  ck_assert_ptr_nonnull(strstr(err, "smaller than the window"));
  /* a wide dilation that leaves one tap inside: kernel 2, dilation 65536,
   * ceil_mode over 7 + 65535 padding each side */
  dynq__attr_t wide[] = {AI("spatial", 1), AI("kernel_shape0", 2), AI("dilations0", 65536),
                         AI("pad_begin0", 65535), AI("pad_end0", 65535), AI("ceil_mode", 1),
                         AI("strides0", 65536), AI("count_include_pad", 1)};
  ck_assert_int_eq(run(DYNQ_OP_AVERAGEPOOL, wide, 8, in, &o), 0);
  ck_assert_int_eq(o.dims[2], 2);
  /* starts -65535 (taps -65535, 1: x[1] = 2 over 2 taps), 1 (taps 1, 65537: 2 over 2) */
  expect(&o, 3, (int64_t[]){1, 1, 2}, (float[]){1, 1}, 1e-6f);
  dynq__tensor_clear(&o);
}
END_TEST

/* Pad mode 3 (wrap, opset 19): periodic past one period, negative pads
 * cropping first, int64 data; hostile pads refused, never read out of
 * bounds. */
START_TEST(pad_wrap) {
  int64_t v[6] = {1, 2, 3, 4, 5, 6};
  dynq__tensor_t X = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {3}, .data = v}, o;
  int64_t pads[2] = {4, 2};
  dynq__tensor_t P = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {2}, .data = pads};
  const dynq__tensor_t *in[4] = {&X, &P, NULL, NULL};
  dynq__attr_t mode = AI("mode", 3);
  ck_assert_int_eq(run(DYNQ_OP_PAD, &mode, 1, in, &o), 0);
  static const int64_t w1[9] = {3, 1, 2, 3, 1, 2, 3, 1, 2};
  ck_assert_int_eq(o.dims[0], 9);
  ck_assert(memcmp(o.data, w1, sizeof w1) == 0);
  dynq__tensor_clear(&o);
  /* [1..6] cropped by 2 at the start, padded by 3 at the end: 3 4 5 6 3 4 5 */
  X.dims[0] = 6;
  pads[0] = -2, pads[1] = 3;
  ck_assert_int_eq(run(DYNQ_OP_PAD, &mode, 1, in, &o), 0);
  static const int64_t w2[7] = {3, 4, 5, 6, 3, 4, 5};
  ck_assert_int_eq(o.dims[0], 7);
  ck_assert(memcmp(o.data, w2, sizeof w2) == 0);
  dynq__tensor_clear(&o);
  /* cropping only: no wrap */
  pads[0] = -2, pads[1] = -1;
  ck_assert_int_eq(run(DYNQ_OP_PAD, &mode, 1, in, &o), 0);
  ck_assert(o.dims[0] == 3 && ((int64_t *)o.data)[0] == 3 && ((int64_t *)o.data)[2] == 5);
  dynq__tensor_clear(&o);
  /* everything cropped, then padded: nothing to repeat */
  pads[0] = -6, pads[1] = 2;
  ck_assert_int_eq(run(DYNQ_OP_PAD, &mode, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "crop all"));
  pads[0] = -4, pads[1] = -2; /* all cropped, nothing padded: empty */
  ck_assert_int_eq(run(DYNQ_OP_PAD, &mode, 1, in, &o), 0);
  ck_assert_int_eq(o.dims[0], 0);
  dynq__tensor_clear(&o);
  /* an empty axis cannot be wrapped */
  X.dims[0] = 0;
  pads[0] = 1, pads[1] = 0;
  ck_assert_int_eq(run(DYNQ_OP_PAD, &mode, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "cannot wrap-pad empty axis 0"));
  X.dims[0] = 6;
  /* huge pads: refused before any allocation */
  pads[0] = (int64_t)1 << 40, pads[1] = 0;
  ck_assert_int_eq(run(DYNQ_OP_PAD, &mode, 1, in, &o), DYNQ_ESHAPE);
  pads[0] = INT64_MIN, pads[1] = INT64_MAX;
  ck_assert_int_eq(run(DYNQ_OP_PAD, &mode, 1, in, &o), DYNQ_ESHAPE);
  pads[0] = ((int64_t)1 << 31) - 5, pads[1] = 0; /* 2^31 + 1 elements: over the limit */
  ck_assert_int_ne(run(DYNQ_OP_PAD, &mode, 1, in, &o), 0);
  /* an unknown mode */
  mode.i = 4;
  pads[0] = pads[1] = 1;
  ck_assert_int_eq(run(DYNQ_OP_PAD, &mode, 1, in, &o), DYNQ_EUNSUPPORTED);
}
END_TEST

/* BitwiseAnd / Or / Xor / Not: every integer dtype's extremes,
 * broadcasting both ways, and what they refuse: floats (by name), mixed
 * dtypes, shapes that do not broadcast. */
START_TEST(bitwise) {
  int8_t a8[4] = {-128, 127, -1, 0x55}, b8[2] = {0x0f, -0x80};
  dynq__tensor_t A = {.dtype = DYNQ_DT_I8, .rank = 2, .dims = {2, 2}, .data = a8};
  dynq__tensor_t B = {.dtype = DYNQ_DT_I8, .rank = 1, .dims = {2}, .data = b8}, o;
  const dynq__tensor_t *in[2] = {&A, &B};
  ck_assert_int_eq(run(DYNQ_OP_BITWISE_AND, NULL, 0, in, &o), 0);
  ck_assert(o.dtype == DYNQ_DT_I8 && o.rank == 2 && o.dims[0] == 2 && o.dims[1] == 2);
  static const int8_t and8[4] = {0, 0, 0x0f, 0};
  ck_assert(memcmp(o.data, and8, 4) == 0);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run(DYNQ_OP_BITWISE_XOR, NULL, 0, in, &o), 0);
  static const int8_t xor8[4] = {-128 ^ 0x0f, 127 ^ -128, -1 ^ 0x0f, 0x55 ^ -128};
  ck_assert(memcmp(o.data, xor8, 4) == 0);
  dynq__tensor_clear(&o);
  const dynq__tensor_t *rev[2] = {&B, &A}; /* [2] | [2, 2] */
  ck_assert_int_eq(run(DYNQ_OP_BITWISE_OR, NULL, 0, rev, &o), 0);
  static const int8_t or8[4] = {-128 | 0x0f, 127 | -128, -1, 0x55 | -128};
  ck_assert(memcmp(o.data, or8, 4) == 0);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run(DYNQ_OP_BITWISE_NOT, NULL, 0, in, &o), 0);
  static const int8_t not8[4] = {127, -128, 0, ~0x55};
  ck_assert(memcmp(o.data, not8, 4) == 0);
  dynq__tensor_clear(&o);
  uint8_t u[3] = {0, 255, 0xa5};
  int32_t i32[2] = {INT32_MIN, INT32_MAX};
  int64_t i64[2] = {INT64_MIN, -1};
  dynq__tensor_t U = {.dtype = DYNQ_DT_U8, .rank = 1, .dims = {3}, .data = u};
  dynq__tensor_t I = {.dtype = DYNQ_DT_I32, .rank = 1, .dims = {2}, .data = i32};
  dynq__tensor_t L = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {2}, .data = i64};
  const dynq__tensor_t *un[1] = {&U};
  ck_assert_int_eq(run(DYNQ_OP_BITWISE_NOT, NULL, 0, un, &o), 0);
  ck_assert(((uint8_t *)o.data)[0] == 255 && ((uint8_t *)o.data)[1] == 0 &&
            ((uint8_t *)o.data)[2] == 0x5a);
  dynq__tensor_clear(&o);
  const dynq__tensor_t *ii[2] = {&I, &I};
  ck_assert_int_eq(run(DYNQ_OP_BITWISE_XOR, NULL, 0, ii, &o), 0);
  ck_assert(((int32_t *)o.data)[0] == 0 && ((int32_t *)o.data)[1] == 0);
  dynq__tensor_clear(&o);
  un[0] = &I;
  ck_assert_int_eq(run(DYNQ_OP_BITWISE_NOT, NULL, 0, un, &o), 0);
  ck_assert(((int32_t *)o.data)[0] == INT32_MAX && ((int32_t *)o.data)[1] == INT32_MIN);
  dynq__tensor_clear(&o);
  const dynq__tensor_t *ll[2] = {&L, &L};
  ck_assert_int_eq(run(DYNQ_OP_BITWISE_OR, NULL, 0, ll, &o), 0);
  ck_assert(((int64_t *)o.data)[0] == INT64_MIN && ((int64_t *)o.data)[1] == -1);
  dynq__tensor_clear(&o);
  /* refused: float32, mixed dtypes, shapes that do not broadcast */
  float f[2] = {1, 2};
  dynq__tensor_t F = tf(1, (int64_t[]){2}, f);
  const dynq__tensor_t *fi[2] = {&I, &F};
  ck_assert_int_eq(run(DYNQ_OP_BITWISE_AND, NULL, 0, fi, &o), DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (BitwiseAnd)"));
  ck_assert_ptr_nonnull(strstr(err, "input 1 is float32 (integers only"));
  un[0] = &F;
  ck_assert_int_eq(run(DYNQ_OP_BITWISE_NOT, NULL, 0, un, &o), DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "input 0 is float32"));
  const dynq__tensor_t *mix[2] = {&I, &L};
  ck_assert_int_eq(run(DYNQ_OP_BITWISE_OR, NULL, 0, mix, &o), DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "int32 and int64; they must match"));
  const dynq__tensor_t *bad[2] = {&U, &U};
  dynq__tensor_t U2 = U;
  U2.dims[0] = 2;
  bad[1] = &U2;
  ck_assert_int_eq(run(DYNQ_OP_BITWISE_XOR, NULL, 0, bad, &o), DYNQ_ESHAPE);
  /* an absent input */
  const dynq__tensor_t *none[2] = {&U, NULL};
  ck_assert_int_ne(run(DYNQ_OP_BITWISE_AND, NULL, 0, none, &o), 0);
}
END_TEST

/* CenterCropPad by hand (int32 data: any dtype is copied), axes given
 * as the importer writes them, and hostile shapes and axes. */
START_TEST(center_crop_pad) {
  int32_t v[12];
  for (int i = 0; i < 12; i++) v[i] = i + 1;
  dynq__tensor_t X = {.dtype = DYNQ_DT_I32, .rank = 2, .dims = {3, 4}, .data = v}, o;
  int64_t shp[2] = {4, 3};
  dynq__tensor_t S = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {2}, .data = shp};
  const dynq__tensor_t *in[2] = {&X, &S};
  /* rows 3 -> 4 (0 before, 1 after), columns 4 -> 3 (start 0) */
  ck_assert_int_eq(run(DYNQ_OP_CENTER_CROP_PAD, NULL, 0, in, &o), 0);
  static const int32_t w1[12] = {1, 2, 3, 5, 6, 7, 9, 10, 11, 0, 0, 0};
  ck_assert(o.dtype == DYNQ_DT_I32 && o.dims[0] == 4 && o.dims[1] == 3);
  ck_assert(memcmp(o.data, w1, sizeof w1) == 0);
  dynq__tensor_clear(&o);
  /* axes [-1]: columns 4 -> 7 (1 before, 2 after) */
  dynq__attr_t ax[] = {AI("n_axes", 1), AI("axis0", -1)};
  S.dims[0] = 1;
  shp[0] = 7;
  ck_assert_int_eq(run(DYNQ_OP_CENTER_CROP_PAD, ax, 2, in, &o), 0);
  ck_assert(o.dims[0] == 3 && o.dims[1] == 7);
  static const int32_t r0[7] = {0, 1, 2, 3, 4, 0, 0};
  ck_assert(memcmp(o.data, r0, sizeof r0) == 0);
  dynq__tensor_clear(&o);
  /* to 0 columns: an empty output */
  shp[0] = 0;
  ck_assert_int_eq(run(DYNQ_OP_CENTER_CROP_PAD, ax, 2, in, &o), 0);
  ck_assert(o.dims[0] == 3 && o.dims[1] == 0);
  dynq__tensor_clear(&o);
  /* refused: a negative or huge target, a count that does not match, an
   * axis listed twice or outside the rank */
  shp[0] = -1;
  ck_assert_int_eq(run(DYNQ_OP_CENTER_CROP_PAD, ax, 2, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (CenterCropPad)"));
  ck_assert_ptr_nonnull(strstr(err, "shape -1 for axis 1"));
  shp[0] = INT64_MAX;
  ck_assert_int_eq(run(DYNQ_OP_CENTER_CROP_PAD, ax, 2, in, &o), DYNQ_ESHAPE);
  shp[0] = (int64_t)1 << 30; /* 3 x 2^30 elements: over the limit, not allocated */
  ck_assert_int_ne(run(DYNQ_OP_CENTER_CROP_PAD, ax, 2, in, &o), 0);
  S.dims[0] = 2;
  shp[0] = 2, shp[1] = 2;
  ck_assert_int_eq(run(DYNQ_OP_CENTER_CROP_PAD, ax, 2, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "shape has 2 values for 1 axes"));
  dynq__attr_t twice[] = {AI("n_axes", 2), AI("axis0", 1), AI("axis1", -1)};
  ck_assert_int_eq(run(DYNQ_OP_CENTER_CROP_PAD, twice, 3, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "axis 1 is listed twice"));
  dynq__attr_t far[] = {AI("n_axes", 2), AI("axis0", 0), AI("axis1", 5)};
  ck_assert_int_ne(run(DYNQ_OP_CENTER_CROP_PAD, far, 3, in, &o), 0);
  dynq__attr_t many[] = {AI("n_axes", 99)};
  ck_assert_int_ne(run(DYNQ_OP_CENTER_CROP_PAD, many, 1, in, &o), 0);
  /* a float shape */
  float fs[2] = {2, 2};
  dynq__tensor_t FS = tf(1, (int64_t[]){2}, fs);
  in[1] = &FS;
  ck_assert_int_ne(run(DYNQ_OP_CENTER_CROP_PAD, NULL, 0, in, &o), 0);
  /* a scalar X with an empty shape: a copy */
  int64_t none[1] = {0};
  dynq__tensor_t X0 = {.dtype = DYNQ_DT_I32, .rank = 0, .data = v};
  dynq__tensor_t S0 = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {0}, .data = none};
  const dynq__tensor_t *in0[2] = {&X0, &S0};
  ck_assert_int_eq(run(DYNQ_OP_CENTER_CROP_PAD, NULL, 0, in0, &o), 0);
  ck_assert(o.rank == 0 && ((int32_t *)o.data)[0] == 1);
  dynq__tensor_clear(&o);
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
/* As run_n(), on a chosen kernel, precision and thread count. */
static int run_x(int op, const dynq__attr_t *attrs, int n_attr, int n_in,
                 const dynq__tensor_t *const *in, dynq__tensor_t *out,
                 const dynq__kernel_t *kr, int precision, int threads) {
  static const int32_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  dynq__node_t n = {.op = op, .name = "t", .n_in = n_in, .n_out = 1, .in = idx,
                    .out = idx, .n_attr = n_attr, .attr = attrs};
  dynq__op_ctx_t c = {.node = &n, .kernel = kr, .precision = precision, .threads = threads,
                      .err = err, .errlen = sizeof(err)};
  memset(out, 0, sizeof(*out));
  err[0] = 0;
  return dynq__op_run1(NULL, &c, in, out);
}

static int run_n(int op, const dynq__attr_t *attrs, int n_attr, int n_in,
                 const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  return run_x(op, attrs, n_attr, n_in, in, out, &dynq__kernel_ref, DYNQ_PRECISION_INT8, 1);
}

/* QGather with enough rows to split over threads: every row on 1, 2 and
 * 3 threads is its table row (INT8: scale times q; FP32: the reference),
 * int32 and int64 indices, negative ones from the end; a bad index late
 * in the list is refused before any row is made. */
START_TEST(qgather_threads) {
  enum { V = 50, D = 100, NI = 1000 };
  int8_t *q = malloc(V * D);
  float *sc = malloc(sizeof(float) * V), *ref = malloc(sizeof(float) * V * D);
  int64_t *i64 = malloc(sizeof(int64_t) * NI);
  int32_t *i32 = malloc(sizeof(int32_t) * NI);
  ck_assert(q && sc && ref && i64 && i32);
  for (int v = 0; v < V; v++) {
    sc[v] = 0.01f * (float)(v + 1);
    for (int k = 0; k < D; k++) {
      q[v * D + k] = (int8_t)((v * 7 + k * 13) % 255 - 127);
      ref[v * D + k] = (float)(v * 1000 + k);
    }
  }
  for (int i = 0; i < NI; i++) i64[i] = i32[i] = (i * 37) % (2 * V) - V;  /* [-V, V) */
  int64_t dq[2] = {V, D}, ds[1] = {V};
  dynq__tensor_t Q = {.dtype = DYNQ_DT_I8, .rank = 2, .dims = {V, D}, .data = q};
  dynq__tensor_t S = tf(1, ds, sc), R = tf(2, dq, ref), o;
  for (int it = 0; it < 2; it++) {
    dynq__tensor_t I = {.dtype = it ? DYNQ_DT_I32 : DYNQ_DT_I64, .rank = 2, .dims = {NI / 10, 10},
                        .data = it ? (void *)i32 : (void *)i64};
    const dynq__tensor_t *in[4] = {&I, &Q, &S, &R};
    for (int prec = 0; prec < 2; prec++)
      for (int threads = 1; threads <= 3; threads++) {
        int p = prec ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8;
        ck_assert_int_eq(run_x(DYNQ_OP_QGATHER, NULL, 0, 4, in, &o, &dynq__kernel_ref, p, threads), 0);
        ck_assert_int_eq(o.rank, 3);
        ck_assert_int_eq(o.dims[2], D);
        const float *y = o.data;
        for (int i = 0; i < NI; i++) {
          int64_t raw = it ? i32[i] : i64[i];
          int v = (int)(raw < 0 ? raw + V : raw);
          for (int k = 0; k < D; k++) {
            float want = prec ? ref[v * D + k] : sc[v] * (float)q[v * D + k];
            ck_assert_msg(y[i * D + k] == want, "indices %s %s threads %d row %d col %d: %g, want %g",
                          it ? "int32" : "int64", prec ? "fp32" : "int8", threads, i, k,
                          y[i * D + k], want);
          }
        }
        dynq__tensor_clear(&o);
      }
    if (it) i32[NI - 1] = V; else i64[NI - 1] = -V - 1;
    ck_assert_int_eq(run_x(DYNQ_OP_QGATHER, NULL, 0, 4, in, &o, &dynq__kernel_ref,
                           DYNQ_PRECISION_INT8, 2), DYNQ_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err, it ? "index 50 outside [-50, 50)" : "index -51 outside [-50, 50)"));
    ck_assert_ptr_null(o.data);
  }
  free(q), free(sc), free(ref), free(i64), free(i32);
}
END_TEST

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

/* The engine's MatMul with a layer epilogue (bias input, attr "act"):
 * the bits of MatMul, Add of the bias and the activation as separate
 * steps, for one row tile (B read in place) and for more rows; a bias of
 * the wrong length is refused at run time, and at load a bias that is
 * not a constant vector or an unknown act. */
START_TEST(matmul_epilogue) {
  enum { M = 7, K = 9, N = 70 };
  static float a[2 * M * K], b[K * N], bias[N];
  for (int i = 0; i < 2 * M * K; i++) a[i] = (float)((i * 7) % 11) * 0.1f - 0.5f;
  for (int i = 0; i < K * N; i++) b[i] = (float)((i * 5) % 13) * 0.1f - 0.6f;
  for (int i = 0; i < N; i++) bias[i] = (float)(i % 9) * 0.25f - 1.0f;
  static const int acts[] = {DYNQ_ACT_NONE, DYNQ_ACT_RELU, DYNQ_ACT_GELU, DYNQ_ACT_GELU_TANH};
  for (int rows = 1; rows <= 2 * M; rows += 2 * M - 1) {  /* 1 row, then 14 */
    int64_t da[2] = {rows, K}, db[2] = {K, N}, dbias[1] = {N};
    dynq__tensor_t A = tf(2, da, a), Bt = tf(2, db, b), Bias = tf(1, dbias, bias), o, ref, sum;
    for (size_t ai = 0; ai < sizeof(acts) / sizeof(acts[0]); ai++) {
      dynq__attr_t at = {.name = "act", .type = DYNQ_ATTR_INT, .i = acts[ai]};
      const dynq__tensor_t *in[3] = {&A, &Bt, &Bias};
      ck_assert_int_eq(run_n(DYNQ_OP_MATMUL, &at, 1, 3, in, &o), 0);
      ck_assert_int_eq(run_n(DYNQ_OP_MATMUL, NULL, 0, 2, in, &ref), 0);
      const dynq__tensor_t *ain[2] = {&ref, &Bias};
      ck_assert_int_eq(run_n(DYNQ_OP_ADD, NULL, 0, 2, ain, &sum), 0);
      dynq__act_apply(acts[ai], sum.data, N, rows, 0, N);
      ck_assert_msg(memcmp(o.data, sum.data, sizeof(float) * (size_t)(rows * N)) == 0,
                    "rows %d act %d: fused MatMul differs from MatMul + Add + act", rows,
                    acts[ai]);
      dynq__tensor_clear(&o);
      dynq__tensor_clear(&ref);
      dynq__tensor_clear(&sum);
    }
    /* wrong bias length */
    int64_t dshort[1] = {N - 1};
    dynq__tensor_t Short = tf(1, dshort, bias);
    const dynq__tensor_t *bad[3] = {&A, &Bt, &Short};
    ck_assert_int_eq(run_n(DYNQ_OP_MATMUL, NULL, 0, 3, bad, &o), DYNQ_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err, "bias"));
    ck_assert_ptr_nonnull(strstr(err, "70 output columns"));
  }
  /* load-time checks */
  const dynq__opdef_t *def = dynq__opdef(DYNQ_OP_MATMUL);
  dynq__value_t vals[3] = {
    {.name = "x", .dtype = DYNQ_DT_F32, .rank = 2, .dims = {M, K}},
    {.name = "w", .dtype = DYNQ_DT_F32, .rank = 2, .dims = {K, N}, .data = b},
    {.name = "b", .dtype = DYNQ_DT_F32, .rank = 1, .dims = {N}, .data = bias},
  };
  dynq__graph_t g = {.n_values = 3, .values = vals};
  static const int32_t idx[3] = {0, 1, 2};
  dynq__attr_t at = {.name = "act", .type = DYNQ_ATTR_INT, .i = DYNQ_ACT_GELU};
  dynq__node_t n = {.op = DYNQ_OP_MATMUL, .name = "mm", .n_in = 3, .n_out = 1, .in = idx,
                    .out = idx, .n_attr = 1, .attr = &at};
  ck_assert_int_eq(def->check(&g, &n, err, sizeof err), 0);
  at.i = 99;
  ck_assert_int_eq(def->check(&g, &n, err, sizeof err), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "unknown act 99"));
  ck_assert_ptr_nonnull(strstr(err, "'mm'"));
  at.i = DYNQ_ACT_NONE;
  vals[2].data = NULL;  /* computed, not a constant */
  ck_assert_int_eq(def->check(&g, &n, err, sizeof err), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "constant float32 vector"));
}
END_TEST

/* StridedMatMul against Transpose + MatMul + Transpose for every operand
 * permutation (BLAS on a leading dimension, transposed operands, the
 * copied fallback) and result permutations that take each output path
 * (leading dimension, transposed result, scatter), then broadcast batch
 * axes, alpha, and the refusals. */
/* The FP32 GEMM's form of StridedMatMul (B packed per product with alpha
 * folded in, A read in place; results of 16 columns or more, more than
 * one row tile, two 64-column panels): every operand permutation and
 * result permutations that take each output path, against Transpose +
 * MatMul (OpenBLAS) + scale. */
START_TEST(strided_matmul_gemm) {
  enum { B = 1, H = 2, M = 13, K = 20, N = 70 };
  const int64_t la[4] = {B, H, M, K}, lb[4] = {B, H, K, N};
  static float a[B * H * M * K], b[B * H * K * N];
  for (int i = 0; i < B * H * M * K; i++) a[i] = (float)((i * 7) % 11) * 0.2f - 1.0f;
  for (int i = 0; i < B * H * K * N; i++) b[i] = (float)((i * 5) % 13) * 0.15f - 0.9f;
  static const int py_pick[] = {0, 1, 2, 23};
  dynq__attr_t al = {.name = "alpha", .type = DYNQ_ATTR_FLOAT, .f = 0.3f};
  int cases = 0;
  for (int ia = 0; ia < 24; ia += 3)
    for (int ib = 0; ib < 24; ib += 5)
      for (size_t iy = 0; iy < sizeof(py_pick) / sizeof(py_pick[0]); iy++) {
        int64_t pa[4], pb[4], py[4], inv_a[4], inv_b[4];
        memcpy(pa, perms4[ia], sizeof pa);
        memcpy(pb, perms4[ib], sizeof pb);
        memcpy(py, perms4[py_pick[iy]], sizeof py);
        for (int d = 0; d < 4; d++) inv_a[pa[d]] = d, inv_b[pb[d]] = d;
        dynq__tensor_t L_a = tf(4, la, a), L_b = tf(4, lb, b);
        dynq__tensor_t A = transposed(&L_a, inv_a), Bt = transposed(&L_b, inv_b);
        dynq__tensor_t ref, want, o;
        const dynq__tensor_t *mi[2] = {&L_a, &L_b};
        ck_assert_int_eq(run_n(DYNQ_OP_MATMUL, NULL, 0, 2, mi, &ref), 0);
        for (int64_t i = 0; i < dynq__tensor_numel(&ref); i++) ((float *)ref.data)[i] *= 0.3f;
        want = transposed(&ref, py);
        dynq__tensor_t Pa = ti64(4, pa), Pb = ti64(4, pb), Py = ti64(4, py);
        const dynq__tensor_t *in[5] = {&A, &Bt, &Pa, &Pb, &Py};
        ck_assert_int_eq(run_x(DYNQ_OP_STRIDED_MATMUL, &al, 1, 5, in, &o, &dynq__kernel_ref,
                               DYNQ_PRECISION_FP32, 1), 0);
        expect(&o, 4, want.dims, want.data, 2e-5f);
        cases++;
        dynq__tensor_clear(&o);
        dynq__tensor_clear(&want);
        dynq__tensor_clear(&ref);
        dynq__tensor_clear(&A);
        dynq__tensor_clear(&Bt);
      }
  ck_assert_int_eq(cases, 8 * 5 * 4);
}
END_TEST

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

static double rel_l2(const float *a, const float *b, int64_t n) {
  double d = 0, r = 0;
  for (int64_t i = 0; i < n; i++) {
    d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    r += (double)b[i] * b[i];
  }
  return sqrt(d / r);
}

/* StridedMatMul's INT8 path on attention's two products (Q K^T with
 * alpha, read through the heads' strides; P V written back interleaved)
 * and on a layout whose operands are strided along both axes: within
 * INT8 error of the FP32 path (and not equal to it: the INT8 path ran),
 * the same bits on every kernel and on two threads as on one. */
START_TEST(strided_matmul_int8) {
  enum { B = 2, S = 65, H = 4, D = 64 };  /* enough work to split over threads */
  static float q[B * S * H * D], k[B * S * H * D], p[B * H * S * S];
  for (int i = 0; i < B * S * H * D; i++) q[i] = sinf((float)i * 0.37f) * 2.0f, k[i] = cosf((float)i * 0.11f);
  for (int i = 0; i < B * H * S * S; i++) p[i] = (float)((i * 37) % 53) / 53.0f;
  int64_t dq[4] = {B, S, H, D}, dp[4] = {B, H, S, S}, p0213[4] = {0, 2, 1, 3}, p0231[4] = {0, 2, 3, 1};
  int64_t p0132[4] = {0, 1, 3, 2};
  dynq__tensor_t Q = tf(4, dq, q), Kt = tf(4, dq, k), P = tf(4, dp, p);
  dynq__tensor_t Pa = ti64(4, p0213), Pb = ti64(4, p0231), Py = ti64(4, p0213), Pt = ti64(4, p0132);
  const dynq__tensor_t *cases[3][5] = {{&Q, &Kt, &Pa, &Pb, NULL},     /* scores */
                                       {&P, &Kt, NULL, &Pa, &Py},     /* context */
                                       {&P, &P, &Pt, &Pt, NULL}};     /* both operands transposed */
  dynq__attr_t at[2] = {{.name = "alpha", .type = DYNQ_ATTR_FLOAT, .f = 0.25f},
                        {.name = "int8", .type = DYNQ_ATTR_INT, .i = 1}};
  int nk;
  const dynq__kernel_t *const *list = dynq__kernel_list(&nk);
  for (int c = 0; c < 3; c++) {
    dynq__tensor_t f, r1;
    ck_assert_int_eq(run_x(DYNQ_OP_STRIDED_MATMUL, at, 2, 5, cases[c], &f, &dynq__kernel_ref,
                           DYNQ_PRECISION_FP32, 1), 0);
    ck_assert_int_eq(run_x(DYNQ_OP_STRIDED_MATMUL, at, 2, 5, cases[c], &r1, &dynq__kernel_ref,
                           DYNQ_PRECISION_INT8, 1), 0);
    int64_t n = dynq__tensor_numel(&f);
    double e = rel_l2(r1.data, f.data, n);
    ck_assert_msg(e > 0 && e < 0.04, "case %d: INT8 relL2 %g against FP32", c, e);
    for (int i = 0; i < nk; i++) {
      if (!list[i]->supported()) continue;
      for (int th = 1; th <= 2; th++) {
        dynq__tensor_t o;
        ck_assert_int_eq(run_x(DYNQ_OP_STRIDED_MATMUL, at, 2, 5, cases[c], &o, list[i],
                               DYNQ_PRECISION_INT8, th), 0);
        ck_assert_msg(memcmp(o.data, r1.data, sizeof(float) * (size_t)n) == 0,
                      "case %d kernel %s threads %d differs from ref", c, list[i]->name, th);
        dynq__tensor_clear(&o);
      }
    }
    dynq__tensor_clear(&f);
    dynq__tensor_clear(&r1);
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
  /* NaN in a row makes that row NaN and leaves the others alone */
  float xn[6] = {0, NAN, 1, 0, 1, 2};
  int64_t d23[2] = {2, 3};
  dynq__tensor_t Xn = tf(2, d23, xn);
  in[0] = &Xn;
  in[1] = &X;
  ck_assert_int_eq(run_n(DYNQ_OP_MASKED_SOFTMAX, NULL, 0, 2, in, &o), 0);
  y = o.data;
  ck_assert(isnan(y[0]) && isnan(y[1]) && isnan(y[2]));
  ck_assert(fabsf(y[3] + y[4] + y[5] - 1.0f) < 1e-6f);
  dynq__tensor_clear(&o);
}
END_TEST

/* Rows split over threads give the same bits as one thread, with the
 * padding mask broadcast over heads and query rows ([B, 1, 1, L]) and a
 * row count that does not divide into the chunks. */
START_TEST(masked_softmax_threads) {
  enum { B = 3, H = 12, S = 13, L = 128 };
  static float x[B * H * S * L], m[B * L];
  for (int i = 0; i < B * H * S * L; i++) x[i] = (float)((i * 7919) % 2003) / 97.0f - 10.0f;
  for (int i = 0; i < B * L; i++) m[i] = (i % L) > 100 + 7 * (i / L) ? -10000.0f : 0.0f;
  int64_t dx[4] = {B, H, S, L}, dm[4] = {B, 1, 1, L};
  dynq__tensor_t X = tf(4, dx, x), Mk = tf(4, dm, m), o1, o2;
  const dynq__tensor_t *in[2] = {&X, &Mk};
  ck_assert_int_eq(run_x(DYNQ_OP_MASKED_SOFTMAX, NULL, 0, 2, in, &o1, &dynq__kernel_ref, 0, 1), 0);
  ck_assert_int_eq(run_x(DYNQ_OP_MASKED_SOFTMAX, NULL, 0, 2, in, &o2, &dynq__kernel_ref, 0, 2), 0);
  ck_assert_int_eq(memcmp(o1.data, o2.data, sizeof(x)), 0);
  /* and each row sums to one with its masked columns at zero */
  const float *y = o1.data;
  for (int r = 0; r < B * H * S; r++) {
    double sum = 0;
    for (int j = 0; j < L; j++) sum += y[r * L + j];
    ck_assert_msg(fabs(sum - 1.0) < 1e-5, "row %d sums to %g", r, sum);
    ck_assert(y[r * L + L - 1] < 1e-30f);
  }
  dynq__tensor_clear(&o1);
  dynq__tensor_clear(&o2);
}
END_TEST

/* Attention's three steps as the unfused graph runs them:
 * StridedMatMul(Q, K) -> MaskedSoftmax(., M) -> StridedMatMul(., V). */
static int attention_unfused(const dynq__tensor_t *const *in, dynq__tensor_t *out,
                             const dynq__kernel_t *kr, int precision, int threads, float alpha) {
  dynq__attr_t at[2] = {{.name = "alpha", .type = DYNQ_ATTR_FLOAT, .f = alpha},
                        {.name = "int8", .type = DYNQ_ATTR_INT, .i = 1}};
  dynq__tensor_t s, p;
  const dynq__tensor_t *i1[5] = {in[0], in[1], in[4], in[5], NULL};
  int rc = run_x(DYNQ_OP_STRIDED_MATMUL, at, 2, 5, i1, &s, kr, precision, threads);
  if (rc) return rc;
  const dynq__tensor_t *im[2] = {&s, in[3]};
  rc = run_x(DYNQ_OP_MASKED_SOFTMAX, NULL, 0, 2, im, &p, kr, precision, threads);
  dynq__tensor_clear(&s);
  if (rc) return rc;
  const dynq__tensor_t *i2[5] = {&p, in[2], NULL, in[6], in[7]};
  rc = run_x(DYNQ_OP_STRIDED_MATMUL, at + 1, 1, 5, i2, out, kr, precision, threads);
  dynq__tensor_clear(&p);
  return rc;
}

/* The fused Attention op against the three nodes it replaces: the same
 * bits on every kernel, one and two threads, the INT8 and FP32 paths,
 * over ragged sequence and head sizes and every mask shape attention
 * exports ([B, 1, 1, S] padding, [S, S] causal, a scalar, the full [B, H,
 * S, S]); rows that are entirely -inf or hold a NaN (the general path);
 * the layouts the row loop does not take (a mask that widens the scores,
 * Q's rows strided) through the three-step path.  And within INT8 error
 * of FP32 (the INT8 path ran). */
START_TEST(attention_fused) {
  enum { B = 2, H = 3 };
  static const int64_t seqs[] = {1, 7, 17, 65}, dims[] = {1, 5, 16, 64};
  static float q[B * 65 * H * 64], k[B * 65 * H * 64], v[B * 65 * H * 64], m[B * H * 65 * 65];
  int64_t p0213[4] = {0, 2, 1, 3}, p0231[4] = {0, 2, 3, 1};
  dynq__tensor_t Pq = ti64(4, p0213), Pk = ti64(4, p0231);
  dynq__attr_t at[2] = {{.name = "alpha", .type = DYNQ_ATTR_FLOAT, .f = 0.3f},
                        {.name = "int8", .type = DYNQ_ATTR_INT, .i = 1}};
  int nk, cases = 0;
  const dynq__kernel_t *const *list = dynq__kernel_list(&nk);
  for (size_t si = 0; si < 4; si++)
    for (size_t di = 0; di < 4; di++)
      for (int mk = 0; mk < 4; mk++) {
        const int64_t S = seqs[si], D = dims[di];
        for (int64_t i = 0; i < B * S * H * D; i++) {
          q[i] = sinf((float)i * 0.37f) * 2.0f;
          k[i] = cosf((float)i * 0.11f) * 1.5f;
          v[i] = sinf((float)i * 0.05f + 1.0f);
        }
        int64_t dq[4] = {B, S, H, D}, dm[4][4] = {{B, 1, 1, S}, {S, S}, {1}, {B, H, S, S}};
        int mr[4] = {4, 2, 1, 4};
        for (int64_t i = 0; i < B * H * S * S; i++) m[i] = 0.0f;
        if (mk == 0)  /* padding: batch 1's last two tokens; batch 0 all masked when S == 7 */
          for (int64_t j = 0; j < S; j++)
            m[j] = S == 7 ? -INFINITY : 0.0f, m[S + j] = j >= S - 2 && S > 2 ? -10000.0f : 0.0f;
        if (mk == 1)  /* causal */
          for (int64_t r = 0; r < S; r++)
            for (int64_t j = r + 1; j < S; j++) m[r * S + j] = -INFINITY;
        if (mk == 3)
          for (int64_t i = 0; i < B * H * S * S; i++) m[i] = (float)((i * 13) % 7) - 3.0f;
        if (mk == 2 && S == 17) q[5] = NAN;  /* head 0's row 0 of batch 0 */
        dynq__tensor_t Q = tf(4, dq, q), K = tf(4, dq, k), V = tf(4, dq, v),
                       Mk = tf(mr[mk], dm[mk], m);
        const dynq__tensor_t *in[8] = {&Q, &K, &V, &Mk, &Pq, &Pk, &Pq, &Pq};
        for (int prec = 0; prec < 2; prec++) {
          int precision = prec ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8;
          dynq__tensor_t want, o;
          ck_assert_int_eq(attention_unfused(in, &want, &dynq__kernel_ref, precision, 1, 0.3f), 0);
          int64_t n = dynq__tensor_numel(&want);
          ck_assert_int_eq(n, B * S * H * D);
          for (int i = 0; i < nk; i++) {
            if (!list[i]->supported() || (prec && i > 0)) continue;
            for (int th = 1; th <= 2; th++) {
              ck_assert_int_eq(run_x(DYNQ_OP_ATTENTION, at, 2, 8, in, &o, list[i], precision, th), 0);
              ck_assert_int_eq(o.rank, 4);
              ck_assert_int_eq(o.dims[1], S);
              if (list[i] != &dynq__kernel_ref) {  /* the three nodes on this kernel */
                dynq__tensor_t w2;
                ck_assert_int_eq(attention_unfused(in, &w2, list[i], precision, th, 0.3f), 0);
                ck_assert_msg(memcmp(w2.data, want.data, sizeof(float) * (size_t)n) == 0,
                              "unfused on %s differs from ref", list[i]->name);
                dynq__tensor_clear(&w2);
              }
              ck_assert_msg(memcmp(o.data, want.data, sizeof(float) * (size_t)n) == 0,
                            "S %lld D %lld mask %d %s kernel %s threads %d: fused differs",
                            (long long)S, (long long)D, mk, prec ? "fp32" : "int8", list[i]->name, th);
              dynq__tensor_clear(&o);
            }
          }
          if (mk == 0 && S == 7) {  /* batch 0 entirely masked: NaN, as Softmax gives */
            ck_assert(isnan(((float *)want.data)[0]));
            ck_assert(!isnan(((float *)want.data)[n - 1]));
          }
          if (mk == 3 && S == 65 && D == 64 && !prec) {  /* INT8 ran, within its error */
            dynq__tensor_t f;
            ck_assert_int_eq(attention_unfused(in, &f, &dynq__kernel_ref, DYNQ_PRECISION_FP32, 1, 0.3f), 0);
            double e = rel_l2(want.data, f.data, n);
            ck_assert_msg(e > 0 && e < 0.03, "INT8 attention relL2 %g against FP32", e);
            dynq__tensor_clear(&f);
          }
          dynq__tensor_clear(&want);
          cases++;
        }
      }
  ck_assert_int_eq(cases, 4 * 4 * 4 * 2);
  /* a mask wider than the scores (batch 2 over Q, K, V of batch 1) and Q
   * read with strided rows ([B, H, D, S] physical): the three-step path */
  {
    enum { S = 9, D = 8 };
    int64_t d1[4] = {1, S, H, D}, dw[4] = {2, 1, 1, S}, dqt[4] = {B, H, D, S}, p0132[4] = {0, 1, 3, 2};
    int64_t dq[4] = {B, S, H, D}, p0123[4] = {0, 1, 2, 3};
    for (int i = 0; i < 2 * S; i++) m[i] = i % 4 == 1 ? -10000.0f : 0.0f;
    dynq__tensor_t Q1 = tf(4, d1, q), K1 = tf(4, d1, k), V1 = tf(4, d1, v), Mw = tf(4, dw, m);
    dynq__tensor_t Qt = tf(4, dqt, q), K = tf(4, dq, k), V = tf(4, dq, v);
    dynq__tensor_t Pt = ti64(4, p0132), Pi = ti64(4, p0123);
    const dynq__tensor_t *wide[8] = {&Q1, &K1, &V1, &Mw, &Pq, &Pk, &Pq, &Pq};
    const dynq__tensor_t *strided[8] = {&Qt, &K, &V, &Mw, &Pt, &Pk, &Pq, &Pi};
    const dynq__tensor_t *const *cs[2] = {wide, strided};
    int64_t wantb[2] = {2, B};
    for (int c = 0; c < 2; c++) {
      dynq__tensor_t want, o;
      if (c == 1) Mw.dims[0] = B;
      ck_assert_int_eq(attention_unfused(cs[c], &want, &dynq__kernel_ref, DYNQ_PRECISION_INT8, 1, 0.3f), 0);
      ck_assert_int_eq(run_x(DYNQ_OP_ATTENTION, at, 2, 8, cs[c], &o, &dynq__kernel_ref,
                             DYNQ_PRECISION_INT8, 1), 0);
      ck_assert_int_eq(o.dims[0], wantb[c]);
      ck_assert_int_eq(memcmp(o.data, want.data, dynq__tensor_nbytes(&want)), 0);
      dynq__tensor_clear(&o);
      dynq__tensor_clear(&want);
    }
  }
}
END_TEST

/* Attention's refusals, each naming the node and what was wrong. */
START_TEST(attention_refusals) {
  enum { B = 2, S = 5, H = 2, D = 4 };
  static float q[B * S * H * D], m[B * (S + 1)];
  int64_t dq[4] = {B, S, H, D}, dm[4] = {B, 1, 1, S + 1}, dv[4] = {B, S + 1, H, D};
  int64_t p0213[4] = {0, 2, 1, 3}, p0231[4] = {0, 2, 3, 1}, bad[4] = {0, 2, 2, 3};
  dynq__tensor_t Q = tf(4, dq, q), Mk = tf(4, dm, m), V = tf(4, dv, q), o;
  dynq__tensor_t Pq = ti64(4, p0213), Pk = ti64(4, p0231), Pb = ti64(4, bad), P3 = ti64(3, p0213);
  dynq__attr_t at[1] = {{.name = "int8", .type = DYNQ_ATTR_INT, .i = 1}};
  const dynq__tensor_t *in[8] = {&Q, &Q, &Q, &Mk, &Pq, &Pk, &Pq, &Pq};
  for (int prec = 0; prec < 2; prec++) {
    int p = prec ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8;
    ck_assert_int_eq(run_x(DYNQ_OP_ATTENTION, at, 1, 8, in, &o, &dynq__kernel_ref, p, 1), DYNQ_ESHAPE);
    ck_assert_msg(strstr(err, "node 't' (Attention)") && strstr(err, "do not broadcast"), "%s", err);
    Mk.dims[3] = S;
    in[2] = &V;  /* V has S + 1 rows */
    ck_assert_int_eq(run_x(DYNQ_OP_ATTENTION, at, 1, 8, in, &o, &dynq__kernel_ref, p, 1), DYNQ_ESHAPE);
    ck_assert_msg(strstr(err, "node 't' (Attention)") && strstr(err, "inner dimensions differ"), "%s", err);
    in[2] = &Q;
    in[5] = &Pb;
    ck_assert_int_eq(run_x(DYNQ_OP_ATTENTION, at, 1, 8, in, &o, &dynq__kernel_ref, p, 1), DYNQ_ESHAPE);
    ck_assert_msg(strstr(err, "not a permutation"), "%s", err);
    in[5] = &Pk;
    in[7] = &P3;
    ck_assert_int_eq(run_x(DYNQ_OP_ATTENTION, at, 1, 8, in, &o, &dynq__kernel_ref, p, 1), DYNQ_ESHAPE);
    ck_assert_msg(strstr(err, "has 3 values for rank 4"), "%s", err);
    in[7] = &Pq;
    int64_t i3[1] = {3};
    dynq__tensor_t I = ti64(1, i3);
    in[3] = &I;
    ck_assert_int_ne(run_x(DYNQ_OP_ATTENTION, at, 1, 8, in, &o, &dynq__kernel_ref, p, 1), 0);
    ck_assert_msg(strstr(err, "node 't' (Attention)"), "%s", err);
    in[3] = &Mk;
    Mk.dims[3] = S + 1;
  }
}
END_TEST

/* The softmax exponential against expf over [-87, 0] (relative), below
 * (absolute: the clamp), and NaN. */
START_TEST(softmax_exp_accuracy) {
  double worst = 0;
  for (int i = 0; i <= 2000000; i++) {
    float x = -87.0f * (float)i / 2000000.0f;
    double want = exp((double)x), got = dynq__softmax_exp(x);
    double rel = fabs(got - want) / want;
    worst = rel > worst ? rel : worst;
  }
  ck_assert_msg(worst < 3e-7, "worst relative error %g", worst);
  ck_assert_float_eq(dynq__softmax_exp(0.0f), 1.0f);
  ck_assert(dynq__softmax_exp(-1000.0f) < 2e-38f && dynq__softmax_exp(-INFINITY) < 2e-38f);
  ck_assert(dynq__softmax_exp(-1000.0f) >= 0.0f);
  ck_assert(isnan(dynq__softmax_exp(NAN)));
}
END_TEST

/* The layer epilogue's GELU (rational erf, both paths) against double
 * precision over its whole range, in rows long enough for the vector loop
 * and its tail; NaN and +-inf. */
START_TEST(gelu_accuracy) {
  enum { N = 1000003, W = 997 };
  float *y = malloc(sizeof(float) * N), *z = malloc(sizeof(float) * N);
  ck_assert(y && z);
  for (int i = 0; i < N; i++) y[i] = -12.0f + 24.0f * (float)i / (float)(N - 1);
  memcpy(z, y, sizeof(float) * N);
  dynq__act_apply(DYNQ_ACT_GELU, y, W, N / W, 0, W);
  dynq__act_apply(DYNQ_ACT_GELU, y + N / W * W, 0, 1, 0, N % W);
  double worst = 0;
  for (int i = 0; i < N; i++) {
    double x = z[i], want = 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    double d = fabs(y[i] - want) / (fabs(want) > 1.0 ? fabs(want) : 1.0);
    worst = d > worst ? d : worst;
  }
  ck_assert_msg(worst <= 1e-6, "worst error %g", worst);
  float sp[4] = {NAN, INFINITY, -INFINITY, 0.0f};
  dynq__act_apply(DYNQ_ACT_GELU, sp, 4, 1, 0, 4);
  ck_assert(isnan(sp[0]) && sp[1] == INFINITY && isnan(sp[2]) && sp[3] == 0.0f);
  free(y);
  free(z);
}
END_TEST

/* ---- Resize, ConvTranspose, Einsum, Tile, Split, ArgMax, ReduceMax/Min,
 * CumSum ---- */

/* As run_n(), with n_out outputs too (Split). */
/* The run's max_bytes for run_k (0: none, as outside dynqd). */
static int64_t g_max_bytes;

static int run_k(int op, const dynq__attr_t *attrs, int n_attr, int n_in, int n_out,
                 const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  static const int32_t idx[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  dynq__node_t n = {.op = op, .name = "t", .n_in = n_in, .n_out = n_out, .in = idx,
                    .out = idx, .n_attr = n_attr, .attr = attrs};
  dynq__op_ctx_t c = {.node = &n, .kernel = &dynq__kernel_ref, .err = err,
                      .errlen = sizeof(err), .max_bytes = g_max_bytes};
  memset(out, 0, sizeof(*out) * (size_t)n_out);
  err[0] = 0;
  return dynq__op_run1(NULL, &c, in, out);
}

#define AS(nm, v) {.name = nm, .type = DYNQ_ATTR_STRING, .s = (v)}

static float frand(uint32_t *st) {
  *st = *st * 1664525u + 1013904223u;
  return (float)((*st >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static dynq__tensor_t ti64s(int rank, const int64_t *dims, int64_t *data) {
  dynq__tensor_t t = {.dtype = DYNQ_DT_I64, .rank = rank, .data = data};
  if (rank > 0) memcpy(t.dims, dims, sizeof(int64_t) * (size_t)rank); /* scalars: dims NULL */
  return t;
}

START_TEST(resize_modes) {
  float x[4] = {1, 2, 3, 4}, s2[4] = {1, 1, 2, 2}, y[2] = {1, 2}, sl[4] = {1, 1, 1, 2};
  int64_t dx[4] = {1, 1, 2, 2}, d4[1] = {4}, dy[4] = {1, 1, 1, 2};
  dynq__tensor_t X = tf(4, dx, x), S = tf(1, d4, s2), Y = tf(4, dy, y), SL = tf(1, d4, sl), o;
  const dynq__attr_t nn[] = {AS("mode", "nearest"), AS("coordinate_transformation_mode", "asymmetric"),
                             AS("nearest_mode", "floor")};
  const dynq__tensor_t *in[3] = {&X, &S, NULL};
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, nn, 3, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 4, 4},
         (float[]){1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}, 0);
  dynq__tensor_clear(&o);
  /* linear, half_pixel: sources -0.25, 0.25, 0.75, 1.25, clamped to the edges */
  const dynq__attr_t lin[] = {AS("mode", "linear")};
  in[0] = &Y, in[1] = &SL;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, lin, 1, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 4}, (float[]){1, 1.25f, 1.75f, 2}, 1e-6f);
  dynq__tensor_clear(&o);
  /* sizes, align_corners: 0, 0.5, 1 */
  int64_t sz[4] = {1, 1, 1, 3};
  dynq__tensor_t SZ = ti64s(1, d4, sz);
  const dynq__attr_t ac[] = {AS("mode", "linear"), AS("coordinate_transformation_mode", "align_corners")};
  in[1] = NULL, in[2] = &SZ;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, ac, 2, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 3}, (float[]){1, 1.5f, 2}, 1e-6f);
  dynq__tensor_clear(&o);
  /* round_prefer_ceil on half_pixel, down 4 -> 2 (sources 0.5, 2.5 -> 1, 3) */
  float r4[4] = {10, 11, 12, 13}, sh[4] = {1, 1, 1, 0.5f};
  dynq__tensor_t R = tf(4, (int64_t[]){1, 1, 1, 4}, r4), SH = tf(1, d4, sh);
  const dynq__attr_t rc[] = {AS("nearest_mode", "round_prefer_ceil")};
  in[0] = &R, in[1] = &SH, in[2] = NULL;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, rc, 1, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 2}, (float[]){11, 13}, 0);
  dynq__tensor_clear(&o);
  /* sizes 7 -> 2, asymmetric, round_prefer_ceil: output 1 maps to
   * 1 / (2 / 7) = 3.5, a tie that goes up to 4 (ONNX's reference and ONNX
   * Runtime); a scale in float made it 3.4999998 and picked 3 */
  float r7[7] = {0, 1, 2, 3, 4, 5, 6};
  int64_t sz2[4] = {1, 1, 1, 2};
  dynq__tensor_t R7 = tf(4, (int64_t[]){1, 1, 1, 7}, r7), SZ2 = ti64s(1, d4, sz2);
  const dynq__attr_t tie[] = {AS("coordinate_transformation_mode", "asymmetric"),
                              AS("nearest_mode", "round_prefer_ceil")};
  in[0] = &R7, in[1] = NULL, in[2] = &SZ2;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, tie, 2, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 2}, (float[]){0, 4}, 0);
  dynq__tensor_clear(&o);
  /* run-time errors, each naming the node */
  dynq__tensor_t S3 = tf(1, (int64_t[]){3}, s2);
  in[0] = &X, in[1] = &S3;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, nn, 3, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (Resize): scales must be float32 [4]"));
  /* within the run's byte limit: the output, and the per-axis tables of an
   * empty output's long axis (fuzz-model: a 4 GB table for no output) */
  g_max_bytes = 1 << 20;
  int64_t huge[4] = {1, 1, 1, (int64_t)1 << 24}, empty_long[4] = {1, 1, 0, (int64_t)1 << 28};
  dynq__tensor_t HZ = ti64s(1, d4, huge), EZ = ti64s(1, d4, empty_long);
  in[1] = NULL, in[2] = &HZ;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, ac, 2, 3, 1, in, &o), DYNQ_ELIMIT);
  ck_assert_msg(strstr(err, "an output of 16777216 elements (67108864 bytes) is over the limit "
                            "of 1048576 bytes") != NULL, "%s", err);
  in[2] = &EZ;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, ac, 2, 3, 1, in, &o), DYNQ_ELIMIT);
  ck_assert_msg(strstr(err, "an axis table of 268435456 elements") != NULL, "%s", err);
  g_max_bytes = 0;
  float neg[4] = {1, 1, -2, 2};
  dynq__tensor_t SN = tf(1, d4, neg);
  in[1] = &SN;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, nn, 3, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "scale -2 on axis 2"));
  int64_t xi[4] = {1, 2, 3, 4};
  dynq__tensor_t XI = ti64s(4, dx, xi);
  in[0] = &XI, in[1] = &S;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, lin, 1, 3, 1, in, &o), DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "linear mode needs float32 input"));
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, nn, 3, 3, 1, in, &o), 0); /* nearest: any dtype */
  ck_assert_int_eq(((int64_t *)o.data)[5], 1);
  dynq__tensor_clear(&o);
  const dynq__attr_t cub[] = {AS("mode", "cubic")};
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, cub, 1, 3, 1, in, &o), DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "cubic mode needs float32 input"));
  const dynq__attr_t area[] = {AS("mode", "area")};
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, area, 1, 3, 1, in, &o), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "mode 'area' is not supported (nearest, linear, cubic are)"));
  /* cubic, half_pixel, [1 2 4 8] x 2: output 0 samples -0.25, taps
   * -2..1 (edges repeated: 1 1 1 2), Keys' weights at A = -0.75 for
   * distances 1.75 0.75 0.25 1.25: -0.03515625 0.26171875 0.87890625
   * -0.10546875, so 0.89453125; with exclude_outside the two outside
   * taps drop and the rest are renormalized: 0.66796875 / 0.7734375 */
  float c4[4] = {1, 2, 4, 8}, cs[4] = {1, 1, 1, 2}, c1[4] = {1, 1, 1, 1};
  dynq__tensor_t CX = tf(4, (int64_t[]){1, 1, 1, 4}, c4), CS = tf(1, d4, cs), C1 = tf(1, d4, c1);
  in[0] = &CX, in[1] = &CS, in[2] = NULL;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, cub, 1, 3, 1, in, &o), 0);
  ck_assert_int_eq(o.dims[3], 8);
  ck_assert_float_eq_tol(((float *)o.data)[0], 0.89453125f, 1e-6f);
  dynq__tensor_clear(&o);
  const dynq__attr_t cubx[] = {AS("mode", "cubic"), AI("exclude_outside", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, cubx, 2, 3, 1, in, &o), 0);
  ck_assert_float_eq_tol(((float *)o.data)[0], 171.0f / 198.0f, 1e-6f);
  dynq__tensor_clear(&o);
  in[1] = &C1; /* scale 1: the input itself */
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, cub, 1, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 4}, c4, 0);
  dynq__tensor_clear(&o);
  const dynq__attr_t cubn[] = {AS("mode", "cubic"),
                               {.name = "cubic_coeff_a", .type = DYNQ_ATTR_FLOAT, .f = NAN}};
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, cubn, 2, 3, 1, in, &o), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "cubic_coeff_a nan is not finite"));
}
END_TEST

/* Opset 18's Resize attributes by hand: antialias on [0 4 8 12] halved
 * (half_pixel; sources 0.5 and 2.5, the linear kernel stretched to 4 taps
 * of weights 1/8 3/8 3/8 1/8, edges repeated: 2.5 and 9.5, where plain
 * linear gives 2 and 10); axes (the scales of axis 3 only, negative); the
 * aspect ratio kept from sizes; and the values refused at load or run. */
START_TEST(resize_opset18) {
  float x[4] = {0, 4, 8, 12}, half[1] = {0.5f}, s4[4] = {1, 1, 1, 0.5f};
  int64_t dx[4] = {1, 1, 1, 4};
  dynq__tensor_t X = tf(4, dx, x), H = tf(1, (int64_t[]){1}, half), S4 = tf(1, (int64_t[]){4}, s4),
                 o;
  const dynq__tensor_t *in[3] = {&X, &S4, NULL};
  const dynq__attr_t aa[] = {AS("mode", "linear"), AI("antialias", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, aa, 2, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 2}, (float[]){2.5f, 9.5f}, 1e-6f);
  dynq__tensor_clear(&o);
  const dynq__attr_t lin[] = {AS("mode", "linear")};
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, lin, 1, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 2}, (float[]){2, 10}, 1e-6f);
  dynq__tensor_clear(&o);
  /* axes [-1]: one scale */
  const dynq__attr_t ax[] = {AS("mode", "linear"), AI("antialias", 1), AI("naxes", 1),
                             AI("axes0", -1)};
  in[1] = &H;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, ax, 4, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 2}, (float[]){2.5f, 9.5f}, 1e-6f);
  dynq__tensor_clear(&o);
  /* sizes [3, 2] on axes 2, 3 of [1, 1, 1, 4], not_larger: scale
   * min(3, 0.5) = 0.5 on both, lengths round_half_up(0.5) = 1 and 2 */
  int64_t sz[2] = {3, 2};
  dynq__tensor_t SZ = ti64s(1, (int64_t[]){2}, sz);
  const dynq__attr_t keep[] = {AS("mode", "nearest"), AI("naxes", 2), AI("axes0", 2),
                               AI("axes1", 3), AI("policy", DYNQ_KEEP_NOT_LARGER)};
  in[1] = NULL, in[2] = &SZ;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, keep, 5, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 2}, (float[]){0, 8}, 0);
  dynq__tensor_clear(&o);
  /* not_smaller: scale 3 on both, lengths 3 and 12 */
  const dynq__attr_t big[] = {AS("mode", "nearest"), AI("naxes", 2), AI("axes0", 2),
                              AI("axes1", 3), AI("policy", DYNQ_KEEP_NOT_SMALLER)};
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, big, 5, 3, 1, in, &o), 0);
  ck_assert_int_eq(o.dims[2], 3);
  ck_assert_int_eq(o.dims[3], 12);
  dynq__tensor_clear(&o);
  /* a kept length on a half: [1, 1, 3, 6] to sizes [100, 7], not_larger:
   * scale 7 / 6, lengths round_half_up(3.5) = 4 and 7, as ONNX's
   * reference (in double) and ONNX Runtime 1.30 have them; 3 x (float)(7 /
   * 6) is 3.4999999 and rounded down to 3 */
  float x18[18] = {0};
  int64_t sz2[2] = {100, 7};
  dynq__tensor_t X18 = tf(4, (int64_t[]){1, 1, 3, 6}, x18), SZ2 = ti64s(1, (int64_t[]){2}, sz2);
  in[0] = &X18, in[2] = &SZ2;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, keep, 5, 3, 1, in, &o), 0);
  ck_assert_int_eq(o.dims[2], 4);
  ck_assert_int_eq(o.dims[3], 7);
  dynq__tensor_clear(&o);
  in[0] = &X, in[2] = &SZ;
  /* run time: axes repeated, out of range for the rank, scales of the wrong length */
  const dynq__attr_t twice[] = {AI("naxes", 2), AI("axes0", 3), AI("axes1", -1)};
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, twice, 3, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (Resize): axes[1] -1 is repeated for an input of rank 4"),
                "%s", err);
  const dynq__attr_t far[] = {AI("naxes", 1), AI("axes0", 5)};
  in[1] = &H, in[2] = NULL;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, far, 2, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "axes[0] 5 is out of range for an input of rank 4"), "%s", err);
  in[1] = &S4;
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, ax, 4, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "scales must be float32 [1] for an input of rank 4 and its axes"),
                "%s", err);
  /* load: attribute values a file may hold but the op does not take */
  const dynq__attr_t bad[][1] = {{AI("antialias", 2)}, {AI("policy", 3)}, {AI("naxes", 9)},
                                 {AI("naxes", -1)}};
  const char *why[] = {"antialias 2 is not 0 or 1", "keep_aspect_ratio_policy code 3",
                       "9 axes (at most 8)", "-1 axes"};
  for (int k = 0; k < 4; k++) {
    ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, bad[k], 1, 3, 1, in, &o), DYNQ_EGRAPH);
    ck_assert_msg(strstr(err, why[k]) != NULL, "%s", err);
  }
  const dynq__attr_t ax9[] = {AI("naxes", 1), AI("axes0", 9)};
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, ax9, 2, 3, 1, in, &o), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "axes[0] 9 is not within [-8, 8)"), "%s", err);
  const dynq__attr_t ax_missing[] = {AI("naxes", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_RESIZE, ax_missing, 1, 3, 1, in, &o), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "axes[0] -9223372036854775808 is not within"), "%s", err);
}
END_TEST

/* ConvTranspose against its definition: every input position scatters
 * x * w over the kernel taps. */
START_TEST(convt_vs_definition) {
  enum { N = 2, C = 4, G = 2, MG = 3, IH = 3, IW = 4, KH = 3, KW = 2 };
  const int64_t sh = 2, sw = 1, dh = 1, dw = 2, pb0 = 1, pb1 = 0, pe0 = 0, pe1 = 1, op0 = 1;
  const int64_t OH = sh * (IH - 1) + op0 + (KH - 1) * dh + 1 - pb0 - pe0;
  const int64_t OW = sw * (IW - 1) + (KW - 1) * dw + 1 - pb1 - pe1;
  float x[N * C * IH * IW], w[C * MG * KH * KW], b[G * MG];
  uint32_t st = 7;
  for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = frand(&st);
  for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) w[i] = frand(&st);
  for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) b[i] = frand(&st);
  float want[N * G * MG * 7 * 5];
  ck_assert_int_eq(OH, 7);
  ck_assert_int_eq(OW, 5);
  for (int n = 0; n < N; n++)
    for (int m = 0; m < G * MG; m++)
      for (int i = 0; i < OH * OW; i++) want[(n * G * MG + m) * OH * OW + i] = b[m];
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++) {
      int g = c / (C / G);
      for (int m = 0; m < MG; m++)
        for (int iy = 0; iy < IH; iy++)
          for (int ix = 0; ix < IW; ix++)
            for (int ky = 0; ky < KH; ky++)
              for (int kx = 0; kx < KW; kx++) {
                int64_t oy = iy * sh - pb0 + ky * dh, ox = ix * sw - pb1 + kx * dw;
                if (oy < 0 || oy >= OH || ox < 0 || ox >= OW) continue;
                want[((n * G * MG + g * MG + m) * OH + oy) * OW + ox] +=
                    x[((n * C + c) * IH + iy) * IW + ix] * w[((c * MG + m) * KH + ky) * KW + kx];
              }
    }
  dynq__tensor_t X = tf(4, (int64_t[]){N, C, IH, IW}, x), W = tf(4, (int64_t[]){C, MG, KH, KW}, w),
                 B = tf(1, (int64_t[]){G * MG}, b), o;
  const dynq__attr_t at[] = {AI("spatial", 2), AI("group", G), AI("strides0", sh), AI("strides1", sw),
                             AI("dilations0", dh), AI("dilations1", dw), AI("pad_begin0", pb0),
                             AI("pad_begin1", pb1), AI("pad_end0", pe0), AI("pad_end1", pe1),
                             AI("output_padding0", op0)};
  const dynq__tensor_t *in[3] = {&X, &W, &B};
  ck_assert_int_eq(run_k(DYNQ_OP_CONV_TRANSPOSE, at, 11, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){N, G * MG, OH, OW}, want, 1e-5f);
  dynq__tensor_clear(&o);
  /* output_shape: the pads follow from it (total 2 on each axis) */
  const dynq__attr_t os[] = {AI("spatial", 2), AI("group", G), AI("strides0", sh), AI("strides1", sw),
                             AI("dilations0", dh), AI("dilations1", dw), AI("output_shape0", 7),
                             AI("output_shape1", 5), AI("output_padding0", op0)};
  ck_assert_int_eq(run_k(DYNQ_OP_CONV_TRANSPOSE, os, 9, 3, 1, in, &o), 0);
  ck_assert(o.dims[2] == 7 && o.dims[3] == 5);
  dynq__tensor_clear(&o);
  /* the weights' channels must be the input's */
  dynq__tensor_t W2 = tf(4, (int64_t[]){C - 1, MG, KH, KW}, w);
  in[1] = &W2;
  ck_assert_int_eq(run_k(DYNQ_OP_CONV_TRANSPOSE, at, 11, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (ConvTranspose): input [2, 4, 3, 4] has 4 channels"));
  in[1] = &W;
  dynq__tensor_t X3 = tf(3, (int64_t[]){N, C, IH * IW}, x);
  in[0] = &X3;
  ck_assert_int_eq(run_k(DYNQ_OP_CONV_TRANSPOSE, at, 11, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "must have rank 4"));
}
END_TEST

/* Einsum against the plain sum over every label assignment. */
static void einsum_ref(const char *la, const char *lb, const char *lo, const int64_t *size,
                       const float *A, const float *B, float *Y) {
  char all[16];
  int na = 0;
  const char *ls[3] = {lo, la, lb};
  for (int k = 0; k < 3; k++)
    for (const char *p = ls[k]; p && *p; p++)
      if (!memchr(all, *p, (size_t)na)) all[na++] = *p;
  int64_t cnt[16] = {0}, total = 1, no = 1;
  for (int j = 0; j < na; j++) total *= size[(unsigned char)all[j]];
  for (const char *p = lo; *p; p++) no *= size[(unsigned char)*p];
  for (int64_t i = 0; i < no; i++) Y[i] = 0;
  for (int64_t t = 0; t < total; t++) {
    int64_t off[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++)
      for (const char *p = ls[k]; p && *p; p++)
        off[k] = off[k] * size[(unsigned char)*p] + cnt[(const char *)memchr(all, *p, (size_t)na) - all];
    Y[off[0]] += A[off[1]] * (B ? B[off[2]] : 1.0f);
    for (int j = na - 1; j >= 0; j--) {
      if (++cnt[j] < size[(unsigned char)all[j]]) break;
      cnt[j] = 0;
    }
  }
}

START_TEST(einsum_forms) {
  static const struct { const char *eq, *a, *b, *o; } cases[] = {
    {"bhid,bhjd->bhij", "bhid", "bhjd", "bhij"},   /* attention scores */
    {"bhij,bhjd->bhid", "bhij", "bhjd", "bhid"},   /* attention context */
    {"bid,jd->bij", "bid", "jd", "bij"},           /* a linear layer */
    {"bij,bjk->bki", "bij", "bjk", "bki"},         /* output permuted */
    {"bji,bjk->bik", "bji", "bjk", "bik"},         /* A transposed */
    {"jbi, bjk -> bik", "jbi", "bjk", "bik"},      /* A copied; blanks */
    {"ij,jk", "ij", "jk", "ik"},                   /* implicit output */
    {"ij,ij->i", "ij", "ij", "i"},                 /* not a GEMM: summed */
    {"i,i", "i", "i", ""},                         /* inner product */
    {"ij->ji", "ij", NULL, "ji"},
    {"ij->i", "ij", NULL, "i"},
    {"bij->", "bij", NULL, ""},
    {"...id,...jd->...ij", "bhid", "bhjd", "bhij"}, /* ellipsis: a batched GEMM */
    {"...ij,...jk", "bij", "bjk", "bik"},          /* implicit: '...' leads */
    {"i...j,jk->...ik", "ibj", "jk", "bik"},       /* ellipsis inside, one side only */
    {"...ii->...i", "bii", NULL, "bi"},            /* batch diagonal */
    {"ii->", "ii", NULL, ""},                      /* trace */
    {"iij,jk->ik", "iij", "jk", "ik"},             /* diagonal in a product */
  };
  int64_t size[128];
  size['b'] = 2, size['h'] = 3, size['i'] = 4, size['j'] = 5, size['d'] = 6, size['k'] = 3;
  float a[720], b[720], y[720], want[720];
  uint32_t st = 11;
  for (int i = 0; i < 720; i++) a[i] = frand(&st), b[i] = frand(&st);
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const char *la = cases[ci].a, *lb = cases[ci].b, *lo = cases[ci].o;
    dynq__tensor_t A = {.dtype = DYNQ_DT_F32, .rank = (int)strlen(la), .data = a},
                   B = {.dtype = DYNQ_DT_F32, .rank = lb ? (int)strlen(lb) : 0, .data = b}, o;
    for (int i = 0; i < A.rank; i++) A.dims[i] = size[(unsigned char)la[i]];
    for (int i = 0; i < B.rank; i++) B.dims[i] = size[(unsigned char)lb[i]];
    einsum_ref(la, lb, lo, size, a, lb ? b : NULL, want);
    const dynq__attr_t at[] = {AS("equation", cases[ci].eq)};
    const dynq__tensor_t *in[2] = {&A, lb ? &B : NULL};
    ck_assert_msg(run_k(DYNQ_OP_EINSUM, at, 1, lb ? 2 : 1, 1, in, &o) == 0, "%s: %s",
                  cases[ci].eq, err);
    int64_t od[8];
    for (size_t i = 0; i < strlen(lo); i++) od[i] = size[(unsigned char)lo[i]];
    expect(&o, (int)strlen(lo), od, want, 1e-5f);
    (void)y;
    dynq__tensor_clear(&o);
  }
  /* a label whose sizes disagree, a rank the equation does not give */
  dynq__tensor_t A = tf(2, (int64_t[]){2, 3}, a), B = tf(2, (int64_t[]){4, 5}, b), o;
  const dynq__tensor_t *in[2] = {&A, &B};
  const dynq__attr_t mm[] = {AS("equation", "ij,jk->ik")};
  ck_assert_int_eq(run_k(DYNQ_OP_EINSUM, mm, 1, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (Einsum): label 'j' is 3 in one operand and 4"));
  const dynq__attr_t r3[] = {AS("equation", "ijk,jk->i")};
  ck_assert_int_eq(run_k(DYNQ_OP_EINSUM, r3, 1, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "operand 0 has rank 2; the equation gives it 3 labels"));
  const dynq__attr_t el[] = {AS("equation", "...ij->ij")};
  ck_assert_int_eq(run_k(DYNQ_OP_EINSUM, el, 1, 1, 1, in, &o), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "an operand has '...' but the output does not"));
  const dynq__attr_t e2[] = {AS("equation", "..ij->ij")};
  ck_assert_int_eq(run_k(DYNQ_OP_EINSUM, e2, 1, 1, 1, in, &o), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "a '.' that is not part of '...'"));
  const dynq__attr_t rep[] = {AS("equation", "ij->ii")};
  ck_assert_int_eq(run_k(DYNQ_OP_EINSUM, rep, 1, 1, 1, in, &o), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "a label repeated in the output"));
  /* the '...' dims broadcast from 1 only: [1, 2, 3] x [2, 3, 4] is the
   * first matrix against each of the second's; [3, 2, 3] x [2, 3, 4]
   * is refused naming the dims */
  float m1[6], m2[24];
  for (int i = 0; i < 6; i++) m1[i] = (float)(i + 1);
  for (int i = 0; i < 24; i++) m2[i] = (float)(i % 7) - 3.0f;
  dynq__tensor_t M1 = tf(3, (int64_t[]){1, 2, 3}, m1), M2 = tf(3, (int64_t[]){2, 3, 4}, m2);
  const dynq__tensor_t *bin[2] = {&M1, &M2};
  const dynq__attr_t bc[] = {AS("equation", "...ij,...jk->...ik")};
  ck_assert_msg(run_k(DYNQ_OP_EINSUM, bc, 1, 2, 1, bin, &o) == 0, "%s", err);
  float bwant[16];
  for (int bb = 0; bb < 2; bb++)
    for (int i = 0; i < 2; i++)
      for (int k = 0; k < 4; k++) {
        float acc = 0;
        for (int j = 0; j < 3; j++) acc += m1[i * 3 + j] * m2[(bb * 3 + j) * 4 + k];
        bwant[(bb * 2 + i) * 4 + k] = acc;
      }
  expect(&o, 3, (int64_t[]){2, 2, 4}, bwant, 1e-5f);
  dynq__tensor_clear(&o);
  M1.dims[0] = 3;
  float m3[18] = {0};
  M1.data = m3;
  ck_assert_int_eq(run_k(DYNQ_OP_EINSUM, bc, 1, 2, 1, bin, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "the '...' dims do not broadcast: 3 against 2 in operand 1"));
  M1.dims[0] = 1, M1.rank = 1; /* fewer dims than labels */
  ck_assert_int_eq(run_k(DYNQ_OP_EINSUM, bc, 1, 2, 1, bin, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "operand 0 has rank 1; the equation gives it 2 labels and '...'"));
}
END_TEST

START_TEST(tile_split) {
  float x[6] = {1, 2, 3, 4, 5, 6};
  int64_t rep[3] = {2, 1, 3};
  dynq__tensor_t X = tf(3, (int64_t[]){1, 2, 3}, x), R = ti64s(1, (int64_t[]){3}, rep), o[4];
  const dynq__tensor_t *in[2] = {&X, &R};
  ck_assert_int_eq(run_k(DYNQ_OP_TILE, NULL, 0, 2, 1, in, o), 0);
  float want[36];
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 2; b++)
      for (int c = 0; c < 9; c++) want[(a * 2 + b) * 9 + c] = x[b * 3 + c % 3];
  expect(&o[0], 3, (int64_t[]){2, 2, 9}, want, 0);
  dynq__tensor_clear(&o[0]);
  R.dims[0] = 2;
  ck_assert_int_eq(run_k(DYNQ_OP_TILE, NULL, 0, 2, 1, in, o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (Tile): repeats has 2 values for an input of rank 3"));
  /* Split: explicit parts, equal parts, opset 18's num_outputs */
  dynq__tensor_t X2 = tf(2, (int64_t[]){1, 6}, x);
  int64_t parts[3] = {1, 2, 3};
  dynq__tensor_t P = ti64s(1, (int64_t[]){3}, parts);
  const dynq__attr_t ax1[] = {AI("axis", 1)};
  const dynq__tensor_t *sin[2] = {&X2, &P};
  ck_assert_int_eq(run_k(DYNQ_OP_SPLIT, ax1, 1, 2, 3, sin, o), 0);
  expect(&o[0], 2, (int64_t[]){1, 1}, (float[]){1}, 0);
  expect(&o[1], 2, (int64_t[]){1, 2}, (float[]){2, 3}, 0);
  expect(&o[2], 2, (int64_t[]){1, 3}, (float[]){4, 5, 6}, 0);
  for (int k = 0; k < 3; k++) dynq__tensor_clear(&o[k]);
  ck_assert_int_eq(run_k(DYNQ_OP_SPLIT, ax1, 1, 1, 3, sin, o), 0);
  expect(&o[2], 2, (int64_t[]){1, 2}, (float[]){5, 6}, 0);
  for (int k = 0; k < 3; k++) dynq__tensor_clear(&o[k]);
  const dynq__attr_t no4[] = {AI("axis", -1), AI("num_outputs", 4)};
  ck_assert_int_eq(run_k(DYNQ_OP_SPLIT, no4, 2, 1, 4, sin, o), 0);
  expect(&o[3], 2, (int64_t[]){1, 0}, NULL, 0);
  expect(&o[2], 2, (int64_t[]){1, 2}, (float[]){5, 6}, 0);
  for (int k = 0; k < 4; k++) dynq__tensor_clear(&o[k]);
  ck_assert_int_eq(run_k(DYNQ_OP_SPLIT, ax1, 1, 1, 4, sin, o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (Split): axis 1 of length 6 does not split into 4"));
  parts[2] = 2;
  ck_assert_int_eq(run_k(DYNQ_OP_SPLIT, ax1, 1, 2, 3, sin, o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "split values add up to 5; axis 1 has 6"));
}
END_TEST

/* The ops models beyond the first exporter fixtures needed (select.c,
 * activation.c, instnorm.c): a result each, and every run-time refusal
 * naming what was wrong. */
START_TEST(zoo_ops_errors) {
  float x[6] = {1, 3, 3, 2, 0, 5};
  dynq__tensor_t X = tf(2, (int64_t[]){2, 3}, x), o[2];
  int64_t k = 2;
  dynq__tensor_t K = ti64s(1, (int64_t[]){1}, &k);
  const dynq__tensor_t *tk[2] = {&X, &K};
  /* TopK: equal values by lower index */
  ck_assert_int_eq(run_k(DYNQ_OP_TOPK, NULL, 0, 2, 2, tk, o), 0);
  expect(&o[0], 2, (int64_t[]){2, 2}, (float[]){3, 3, 5, 2}, 0);
  ck_assert_int_eq(((int64_t *)o[1].data)[0], 1);
  ck_assert_int_eq(((int64_t *)o[1].data)[1], 2);
  dynq__tensor_clear(&o[0]);
  dynq__tensor_clear(&o[1]);
  k = 4;
  ck_assert_int_eq(run_k(DYNQ_OP_TOPK, NULL, 0, 2, 2, tk, o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (TopK): K = 4 is not within [0, 3] (axis 1)"));
  /* GatherElements: an index past the axis, indices of another rank */
  int64_t ix[2] = {0, 3};
  dynq__tensor_t I = ti64s(2, (int64_t[]){2, 1}, ix);
  const dynq__tensor_t *ge[2] = {&X, &I};
  const dynq__attr_t ax1[] = {AI("axis", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_GATHER_ELEMENTS, ax1, 1, 2, 1, ge, o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "index 3 out of range for axis 1 of size 3"));
  ix[1] = -1;
  ck_assert_int_eq(run_k(DYNQ_OP_GATHER_ELEMENTS, ax1, 1, 2, 1, ge, o), 0);
  expect(&o[0], 2, (int64_t[]){2, 1}, (float[]){1, 5}, 0);
  dynq__tensor_clear(&o[0]);
  I.rank = 1;
  ck_assert_int_eq(run_k(DYNQ_OP_GATHER_ELEMENTS, ax1, 1, 2, 1, ge, o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "data (rank 2) and indices (rank 1) must have the same rank"));
  /* ScatterND: updates that do not fit */
  int64_t nd[1] = {1};
  dynq__tensor_t ND = ti64s(2, (int64_t[]){1, 1}, nd), U = tf(2, (int64_t[]){1, 2}, x);
  const dynq__tensor_t *sn[3] = {&X, &ND, &U};
  ck_assert_int_eq(run_k(DYNQ_OP_SCATTER_ND, NULL, 0, 3, 1, sn, o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "indices (last axis 1) and updates (rank 2, float32) do not "
                                    "fit data (rank 2, float32)"));
  U.dims[1] = 3;
  ck_assert_int_eq(run_k(DYNQ_OP_SCATTER_ND, NULL, 0, 3, 1, sn, o), 0);
  expect(&o[0], 2, (int64_t[]){2, 3}, (float[]){1, 3, 3, 1, 3, 3}, 0);
  dynq__tensor_clear(&o[0]);
  /* Trilu: lower with k = -1; a rank-1 input */
  int64_t km = -1;
  dynq__tensor_t KM = ti64s(1, (int64_t[]){1}, &km);
  const dynq__tensor_t *tr[2] = {&X, &KM};
  const dynq__attr_t lower[] = {AI("upper", 0)};
  ck_assert_int_eq(run_k(DYNQ_OP_TRILU, lower, 1, 2, 1, tr, o), 0);
  expect(&o[0], 2, (int64_t[]){2, 3}, (float[]){0, 0, 0, 2, 0, 0}, 0);
  dynq__tensor_clear(&o[0]);
  dynq__tensor_t X1 = tf(1, (int64_t[]){6}, x);
  const dynq__tensor_t *tr1[1] = {&X1};
  ck_assert_int_eq(run_k(DYNQ_OP_TRILU, NULL, 0, 1, 1, tr1, o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "input must have rank >= 2, has 1"));
  /* PRelu: a slope that does not broadcast to X */
  dynq__tensor_t S = tf(1, (int64_t[]){2}, x);
  const dynq__tensor_t *pr[2] = {&X, &S};
  ck_assert_int_ne(run_k(DYNQ_OP_PRELU, NULL, 0, 2, 1, pr, o), 0);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (PRelu)"));
  /* Min of float32 and int64 */
  const dynq__tensor_t *mn[2] = {&X, &K};
  ck_assert_int_eq(run_k(DYNQ_OP_MIN, NULL, 0, 2, 1, mn, o), DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "input 1 is int64, input 0 float32; they must match"));
  /* Mod: integer by zero; float32 without fmod */
  int64_t a[2] = {-7, 7}, b[2] = {3, 0};
  dynq__tensor_t A = ti64s(1, (int64_t[]){2}, a), B = ti64s(1, (int64_t[]){2}, b);
  const dynq__tensor_t *md[2] = {&A, &B};
  ck_assert_int_eq(run_k(DYNQ_OP_MOD, NULL, 0, 2, 1, md, o), DYNQ_ENUMERIC);
  ck_assert_ptr_nonnull(strstr(err, "integer modulo by zero"));
  b[1] = -3;
  ck_assert_int_eq(run_k(DYNQ_OP_MOD, NULL, 0, 2, 1, md, o), 0);
  ck_assert_int_eq(((int64_t *)o[0].data)[0], 2); /* Python's -7 % 3 */
  ck_assert_int_eq(((int64_t *)o[0].data)[1], -2); /* 7 % -3 */
  dynq__tensor_clear(&o[0]);
  const dynq__tensor_t *mf[2] = {&X, &X};
  ck_assert_int_eq(run_k(DYNQ_OP_MOD, NULL, 0, 2, 1, mf, o), DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "float32 inputs need fmod = 1"));
  /* InstanceNormalization: scale of the wrong length */
  dynq__tensor_t X3 = tf(3, (int64_t[]){1, 2, 3}, x), SC = tf(1, (int64_t[]){3}, x);
  const dynq__tensor_t *in3[3] = {&X3, &SC, &SC};
  ck_assert_int_eq(run_k(DYNQ_OP_INSTANCE_NORM, NULL, 0, 3, 1, in3, o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "scale and B must be 1-D of C = 2 values"));
}
END_TEST

START_TEST(argmax_reduce_cumsum) {
  float x[6] = {2, 1, 2, 1, 3, 3};
  dynq__tensor_t X = tf(2, (int64_t[]){2, 3}, x), o;
  const dynq__tensor_t *in[2] = {&X, NULL};
  const dynq__attr_t a1[] = {AI("axis", 1)}, a1l[] = {AI("axis", 1), AI("select_last_index", 1)},
                     a0[] = {AI("axis", 0), AI("keepdims", 0)};
  ck_assert_int_eq(run_k(DYNQ_OP_ARGMAX, a1, 1, 1, 1, in, &o), 0);
  ck_assert(o.dtype == DYNQ_DT_I64 && o.rank == 2 && o.dims[0] == 2 && o.dims[1] == 1);
  ck_assert(((int64_t *)o.data)[0] == 0 && ((int64_t *)o.data)[1] == 1);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run_k(DYNQ_OP_ARGMAX, a1l, 2, 1, 1, in, &o), 0);
  ck_assert(((int64_t *)o.data)[0] == 2 && ((int64_t *)o.data)[1] == 2);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run_k(DYNQ_OP_ARGMAX, a0, 2, 1, 1, in, &o), 0);
  ck_assert(o.rank == 1 && ((int64_t *)o.data)[1] == 1 && ((int64_t *)o.data)[2] == 1);
  dynq__tensor_clear(&o);
  const dynq__attr_t a5[] = {AI("axis", 5)};
  ck_assert_int_eq(run_k(DYNQ_OP_ARGMAX, a5, 1, 1, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (ArgMax): axis 5 out of range for rank 2"));
  /* ReduceMax/Min: over axis 1, over everything, NaN propagating */
  int64_t ax[1] = {1};
  dynq__tensor_t AX = ti64s(1, (int64_t[]){1}, ax);
  const dynq__attr_t k0[] = {AI("keepdims", 0)};
  in[1] = &AX;
  ck_assert_int_eq(run_k(DYNQ_OP_REDUCE_MAX, k0, 1, 2, 1, in, &o), 0);
  expect(&o, 1, (int64_t[]){2}, (float[]){2, 3}, 0);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run_k(DYNQ_OP_REDUCE_MIN, k0, 1, 2, 1, in, &o), 0);
  expect(&o, 1, (int64_t[]){2}, (float[]){1, 1}, 0);
  dynq__tensor_clear(&o);
  in[1] = NULL;
  ck_assert_int_eq(run_k(DYNQ_OP_REDUCE_MIN, NULL, 0, 2, 1, in, &o), 0);
  expect(&o, 2, (int64_t[]){1, 1}, (float[]){1}, 0);
  dynq__tensor_clear(&o);
  x[4] = NAN;
  ck_assert_int_eq(run_k(DYNQ_OP_REDUCE_MAX, NULL, 0, 2, 1, in, &o), 0);
  ck_assert(isnan(((float *)o.data)[0]));
  dynq__tensor_clear(&o);
  /* CumSum: the four forms of ONNX's examples, and axis -1 of a matrix */
  float v[5] = {1, 2, 3, 4, 5};
  int64_t zero = 0, last = -1;
  dynq__tensor_t V = tf(1, (int64_t[]){5}, v), Z = ti64s(0, NULL, &zero), L = ti64s(0, NULL, &last);
  const dynq__tensor_t *cin[2] = {&V, &Z};
  static const float want[4][5] = {{1, 3, 6, 10, 15}, {0, 1, 3, 6, 10}, {15, 14, 12, 9, 5},
                                   {14, 12, 9, 5, 0}};
  for (int k = 0; k < 4; k++) {
    const dynq__attr_t ca[] = {AI("exclusive", k & 1), AI("reverse", k >> 1)};
    ck_assert_int_eq(run_k(DYNQ_OP_CUMSUM, ca, 2, 2, 1, cin, &o), 0);
    expect(&o, 1, (int64_t[]){5}, want[k], 0);
    dynq__tensor_clear(&o);
  }
  x[4] = 3;
  cin[0] = &X, cin[1] = &L;
  ck_assert_int_eq(run_k(DYNQ_OP_CUMSUM, NULL, 0, 2, 1, cin, &o), 0);
  expect(&o, 2, (int64_t[]){2, 3}, (float[]){2, 3, 5, 1, 4, 7}, 0);
  dynq__tensor_clear(&o);
  cin[1] = &V;
  ck_assert_int_eq(run_k(DYNQ_OP_CUMSUM, NULL, 0, 2, 1, cin, &o), DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (CumSum): axis must be int64"));
}
END_TEST

/* AddLayerNorm (the importer's residual Add + LayerNormalization) against
 * the two ops run one after the other: the same bits on ragged row
 * lengths, with and without a bias and the sum output, on one thread and
 * two, for one layout, rows broadcast whole (the fused loop) and a last
 * axis broadcast (the unfused path); bad shapes and dtypes are refused
 * naming the node. */

static int run_aln(int n_in, int n_out, int threads, const dynq__tensor_t *const *in,
                   dynq__tensor_t *out) {
  static const int32_t idx[4] = {0, 1, 2, 3};
  dynq__node_t n = {.op = DYNQ_OP_ADD_LAYERNORM, .name = "t", .n_in = n_in, .n_out = n_out,
                    .in = idx, .out = idx};
  dynq__op_ctx_t c = {.node = &n, .kernel = &dynq__kernel_ref, .threads = threads,
                      .err = err, .errlen = sizeof(err)};
  memset(out, 0, sizeof(*out) * 2);
  err[0] = 0;
  return dynq__op_run1(NULL, &c, in, out);
}

/* AddLayerNorm(P, Q) against Add then LayerNormalization, one and two
 * threads, with and without the sum output. */
static void aln_vs_unfused(const dynq__tensor_t *P, const dynq__tensor_t *Q,
                           const dynq__tensor_t *G, const dynq__tensor_t *Be, const char *what) {
  dynq__tensor_t s, y, o[2];
  const dynq__tensor_t *ain[2] = {P, Q};
  ck_assert_int_eq(run(DYNQ_OP_ADD, NULL, 0, ain, &s), 0);
  const dynq__tensor_t *lin[3] = {&s, G, Be};
  ck_assert_int_eq(run_n(DYNQ_OP_LAYERNORM, NULL, 0, Be ? 3 : 2, lin, &y), 0);
  size_t nb = dynq__tensor_nbytes(&s);
  for (int n_out = 1; n_out <= 2; n_out++)
    for (int threads = 1; threads <= 2; threads++) {
      const dynq__tensor_t *in[4] = {P, Q, G, Be};
      ck_assert_int_eq(run_aln(Be ? 4 : 3, n_out, threads, in, o), 0);
      ck_assert_int_eq(o[0].rank, s.rank);
      ck_assert_msg(memcmp(o[0].data, y.data, nb) == 0, "%s, outputs %d threads %d: not the "
                    "unfused bits", what, n_out, threads);
      if (n_out == 2) ck_assert(memcmp(o[1].data, s.data, nb) == 0);
      dynq__tensor_clear(&o[0]);
      dynq__tensor_clear(&o[1]);
    }
  dynq__tensor_clear(&s);
  dynq__tensor_clear(&y);
}
START_TEST(add_layernorm_fused) {
  static const int64_t lens[] = {1, 2, 3, 7, 15, 16, 17, 31, 33, 65, 768};
  for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
    int64_t len = lens[li], rows = len < 64 ? 40 : 90, d[2] = {rows, len}, dv[1] = {len};
    float *a = malloc(sizeof(float) * (size_t)(rows * len)), *b = malloc(sizeof(float) * (size_t)(rows * len));
    float *g = malloc(sizeof(float) * (size_t)len), *be = malloc(sizeof(float) * (size_t)len);
    ck_assert(a && b && g && be);
    uint32_t st = 12345u + (uint32_t)len;
    for (int64_t i = 0; i < rows * len; i++) {
      st = st * 1664525u + 1013904223u;
      a[i] = (float)((st >> 8) % 2001) / 100.0f - 10.0f + 3.0f;  /* mean far from 0 */
      st = st * 1664525u + 1013904223u;
      b[i] = (float)((st >> 8) % 2001) / 1000.0f - 1.0f;
    }
    for (int64_t i = 0; i < len; i++) g[i] = 0.5f + (float)i / (float)len, be[i] = (float)(i % 5) - 2.0f;
    dynq__tensor_t A = tf(2, d, a), B = tf(2, d, b), G = tf(1, dv, g), Be = tf(1, dv, be), s, y, o[2];
    for (int withb = 0; withb < 2; withb++) {
      const dynq__tensor_t *ain[2] = {&A, &B};
      ck_assert_int_eq(run(DYNQ_OP_ADD, NULL, 0, ain, &s), 0);
      const dynq__tensor_t *lin[3] = {&s, &G, withb ? &Be : NULL};
      ck_assert_int_eq(run_n(DYNQ_OP_LAYERNORM, NULL, 0, withb ? 3 : 2, lin, &y), 0);
      /* the definition in double, on the float sum */
      for (int64_t r = 0; r < rows; r++) {
        const float *x = (const float *)s.data + r * len;
        double m = 0, v = 0;
        for (int64_t i = 0; i < len; i++) m += x[i];
        m /= (double)len;
        for (int64_t i = 0; i < len; i++) v += (x[i] - m) * (x[i] - m);
        double inv = 1.0 / sqrt(v / (double)len + 1e-5);
        for (int64_t i = 0; i < len; i++) {
          double want = (x[i] - m) * inv * g[i] + (withb ? be[i] : 0.0);
          ck_assert_msg(fabs(((float *)y.data)[r * len + i] - want) <= 2e-5 * (1 + fabs(want)),
                        "len %lld row %lld elem %lld: %g vs %g", (long long)len, (long long)r,
                        (long long)i, ((float *)y.data)[r * len + i], want);
        }
      }
      for (int n_out = 1; n_out <= 2; n_out++)
        for (int threads = 1; threads <= 2; threads++) {
          const dynq__tensor_t *in[4] = {&A, &B, &G, withb ? &Be : NULL};
          ck_assert_int_eq(run_aln(withb ? 4 : 3, n_out, threads, in, o), 0);
          ck_assert_msg(memcmp(o[0].data, y.data, sizeof(float) * (size_t)(rows * len)) == 0,
                        "len %lld bias %d outputs %d threads %d: not the unfused bits",
                        (long long)len, withb, n_out, threads);
          if (n_out == 2)
            ck_assert(memcmp(o[1].data, s.data, sizeof(float) * (size_t)(rows * len)) == 0);
          else
            ck_assert_ptr_null(o[1].data);
          dynq__tensor_clear(&o[0]);
          dynq__tensor_clear(&o[1]);
        }
      /* broadcast pairs: one row over all rows (either side), rows over a
       * batch of 2 (an embedding's positions), one value per row (the last
       * axis broadcast: the unfused path) */
      const dynq__tensor_t *Bp = withb ? &Be : NULL;
      aln_vs_unfused(&A, &G, &G, Bp, "B one row");
      aln_vs_unfused(&G, &A, &G, Bp, "A one row");
      float *a2 = malloc(sizeof(float) * (size_t)(2 * rows * len));
      ck_assert_ptr_nonnull(a2);
      memcpy(a2, a, sizeof(float) * (size_t)(rows * len));
      memcpy(a2 + rows * len, b, sizeof(float) * (size_t)(rows * len));
      int64_t d2[3] = {2, rows, len}, dcol[2] = {rows, 1};
      dynq__tensor_t A2 = tf(3, d2, a2), Col = tf(2, dcol, b);
      aln_vs_unfused(&A2, &B, &G, Bp, "[2, rows, len] + [rows, len]");
      aln_vs_unfused(&B, &A2, &G, Bp, "[rows, len] + [2, rows, len]");
      aln_vs_unfused(&A, &Col, &G, Bp, "[rows, len] + [rows, 1]");
      free(a2);
      /* [1, rows, len] + [rows, len]: only a leading 1, the fused loop */
      int64_t d3[3] = {1, rows, len};
      dynq__tensor_t A3 = tf(3, d3, a);
      const dynq__tensor_t *lin3[4] = {&B, &A3, &G, withb ? &Be : NULL};
      ck_assert_int_eq(run_aln(withb ? 4 : 3, 1, 2, lin3, o), 0);
      ck_assert_int_eq(o[0].rank, 3);
      ck_assert(memcmp(o[0].data, y.data, sizeof(float) * (size_t)(rows * len)) == 0);
      dynq__tensor_clear(&o[0]);
      dynq__tensor_clear(&s);
      dynq__tensor_clear(&y);
    }
    free(a), free(b), free(g), free(be);
  }
  /* refusals */
  float x[6] = {1, 2, 3, 4, 5, 6}, sc[3] = {1, 1, 1}, f4[4] = {0};
  int32_t i6[6] = {0};
  int64_t d23[2] = {2, 3}, d3[1] = {3}, d4[1] = {4};
  dynq__tensor_t X = tf(2, d23, x), S3 = tf(1, d3, sc), F4 = tf(1, d4, f4), I6 = tf(2, d23, (float *)i6), o[2];
  I6.dtype = DYNQ_DT_I32;
  const dynq__tensor_t *in[4] = {&X, &F4, &S3, NULL};
  ck_assert_int_eq(run_aln(3, 2, 1, in, o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (AddLayerNorm)"));
  ck_assert_ptr_nonnull(strstr(err, "[2, 3] and [4]"));
  ck_assert_ptr_null(o[0].data);
  ck_assert_ptr_null(o[1].data);
  in[1] = &X;
  in[2] = &F4;  /* Scale of the wrong size, with and without the sum output */
  for (int n_out = 1; n_out <= 2; n_out++) {
    ck_assert_int_eq(run_aln(3, n_out, 1, in, o), DYNQ_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err, "do not match the normalized shape"));
    ck_assert_ptr_null(o[0].data);
    ck_assert_ptr_null(o[1].data);
  }
  in[2] = &S3;
  in[1] = &I6;
  ck_assert_int_eq(run_aln(3, 1, 1, in, o), DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (AddLayerNorm)"));
  in[1] = &X;
  in[3] = &I6;
  ck_assert_int_eq(run_aln(4, 1, 1, in, o), DYNQ_EDTYPE);
}
END_TEST

/* QuantizeLinear / DequantizeLinear per tensor and per axis (ties to
 * even, saturation, NaN to the zero point), DynamicQuantizeLinear's range
 * through 0 and its all-zero case, and their refusals. */
START_TEST(quant_ops) {
  float x[6] = {-1.0f, 0.25f, 0.75f, 300.0f, -300.0f, NAN}, sc = 0.5f, sc2[2] = {0.5f, 0.25f};
  int64_t d[2] = {2, 3}, d2[1] = {2};
  uint8_t zp = 10;
  int8_t zp2[2] = {0, -1};
  dynq__tensor_t X = tf(2, d, x), S = tf(0, NULL, &sc), Z = {.dtype = DYNQ_DT_U8, .data = &zp}, o,
                 o2;
  const dynq__tensor_t *in[3] = {&X, &S, &Z};
  ck_assert_int_eq(run_n(DYNQ_OP_QUANTIZE_LINEAR, NULL, 0, 3, in, &o), 0);
  ck_assert_int_eq(o.dtype, DYNQ_DT_U8);
  const uint8_t want_u8[6] = {8, 10, 12, 255, 0, 10}; /* 0.5 and 1.5 round to 0 and 2 */
  ck_assert_mem_eq(o.data, want_u8, 6);
  in[0] = &o;
  ck_assert_int_eq(run_n(DYNQ_OP_DEQUANTIZE_LINEAR, NULL, 0, 3, in, &o2), 0);
  expect(&o2, 2, d, (float[]){-1, 0, 1, 122.5f, -5, 0}, 0);
  dynq__tensor_clear(&o2);
  dynq__tensor_clear(&o);
  /* per axis 0, int8 zero points */
  dynq__tensor_t S2 = tf(1, d2, sc2), Z2 = {.dtype = DYNQ_DT_I8, .rank = 1, .dims = {2}, .data = zp2};
  dynq__attr_t ax0 = {.name = "axis", .type = DYNQ_ATTR_INT, .i = 0};
  in[0] = &X, in[1] = &S2, in[2] = &Z2;
  ck_assert_int_eq(run_n(DYNQ_OP_QUANTIZE_LINEAR, &ax0, 1, 3, in, &o), 0);
  const int8_t want_i8[6] = {-2, 0, 2, 127, -128, -1};
  ck_assert_mem_eq(o.data, want_i8, 6);
  dynq__tensor_clear(&o);
  /* a scale that fits no axis, a 2-D (blocked) scale, a float zero point */
  dynq__attr_t ax1 = {.name = "axis", .type = DYNQ_ATTR_INT, .i = 1};
  ck_assert_int_eq(run_n(DYNQ_OP_QUANTIZE_LINEAR, &ax1, 1, 3, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (QuantizeLinear): scale has 2 values but axis 1"));
  dynq__tensor_t S22 = tf(2, (int64_t[]){2, 1}, sc2);
  in[1] = &S22;
  ck_assert_int_eq(run_n(DYNQ_OP_DEQUANTIZE_LINEAR, NULL, 0, 2, (const dynq__tensor_t *[]){&Z2, &S22}, &o),
                   DYNQ_EUNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(err, "not blocked quantization"));
  in[1] = &S, in[2] = &S;
  ck_assert_int_eq(run_n(DYNQ_OP_QUANTIZE_LINEAR, NULL, 0, 3, in, &o), DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "zero point must be uint8, int8 or int32"));

  /* DynamicQuantizeLinear: range [-1, 1.55] widened to hold 0 */
  float dx[4] = {-1.0f, 0.0f, 1.55f, 0.3f};
  int64_t dd[1] = {4};
  dynq__tensor_t DX = tf(1, dd, dx), q3[3];
  memset(q3, 0, sizeof q3);
  const dynq__tensor_t *din[1] = {&DX};
  static const int32_t idx[4] = {0, 1, 2, 3};
  dynq__node_t n = {.op = DYNQ_OP_DYNAMIC_QUANTIZE_LINEAR, .name = "t", .n_in = 1, .n_out = 3,
                    .in = idx, .out = idx};
  dynq__op_ctx_t c = {.node = &n, .kernel = &dynq__kernel_ref, .err = err, .errlen = sizeof err};
  ck_assert_int_eq(dynq__op_run1(NULL, &c, din, q3), 0);
  float s3 = *(float *)q3[1].data;
  ck_assert_float_eq(s3, 2.55f / 255.0f);
  ck_assert_int_eq(*(uint8_t *)q3[2].data, 100);
  const uint8_t dq_want[4] = {0, 100, 255, 130};
  ck_assert_mem_eq(q3[0].data, dq_want, 4);
  for (int k = 0; k < 3; k++) dynq__tensor_clear(&q3[k]);
  float zeros[4] = {0};
  DX.data = zeros;
  ck_assert_int_eq(dynq__op_run1(NULL, &c, din, q3), 0);
  ck_assert(*(float *)q3[1].data == 0.0f && *(uint8_t *)q3[2].data == 0);
  for (int k = 0; k < 3; k++) dynq__tensor_clear(&q3[k]);
  dx[3] = NAN;
  DX.data = dx;
  ck_assert_int_eq(dynq__op_run1(NULL, &c, din, q3), DYNQ_ENUMERIC);
  ck_assert_ptr_nonnull(strstr(err, "NaN at element 3"));
  /* a failed op may leave outputs allocated: the executor clears them */
  for (int k = 0; k < 3; k++) dynq__tensor_clear(&q3[k]);
}
END_TEST

/* Cast to float16 rounds to half precision (ties to even, overflow to
 * infinity, subnormals) and keeps float32; from any dtype.  Cast to
 * bfloat16 the same at bfloat16's precision. */
START_TEST(cast_half) {
  float x[8] = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65519.0f, 65520.0f, 0x1p-25f,
                3 * 0x1p-25f, -0.1f, NAN};
  int64_t d[1] = {8};
  dynq__tensor_t X = tf(1, d, x), o;
  const dynq__tensor_t *in[1] = {&X};
  dynq__attr_t at[3] = {{.name = "to", .type = DYNQ_ATTR_INT, .i = DYNQ_DT_F32},
                        {.name = "to_bool", .type = DYNQ_ATTR_INT, .i = 0},
                        {.name = "half", .type = DYNQ_ATTR_INT, .i = 1}};
  ck_assert_int_eq(run_n(DYNQ_OP_CAST, at, 3, 1, in, &o), 0);
  const float *y = o.data;
  ck_assert(y[0] == 1.0f && y[1] == 1.0f + 0x1p-9f && y[2] == 65504.0f && isinf(y[3]));
  ck_assert(y[4] == 0.0f && y[5] == 0x1p-23f && y[6] == -0.0999755859375f && isnan(y[7]));
  dynq__tensor_clear(&o);
  int64_t iv[2] = {2049, -7};
  dynq__tensor_t I = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {2}, .data = iv};
  in[0] = &I;
  ck_assert_int_eq(run_n(DYNQ_OP_CAST, at, 3, 1, in, &o), 0);
  ck_assert(((float *)o.data)[0] == 2048.0f && ((float *)o.data)[1] == -7.0f);
  dynq__tensor_clear(&o);
  /* bfloat16 (bf16 1): 8 significant bits, ties to even, float32's range
   * (FLT_MAX rounds up to infinity), subnormals kept to 8 bits, NaN */
  float b[8] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 3.0f + 0x1p-7f + 0x1p-9f, FLT_MAX,
                0x1p-130f + 0x1p-138f, -0.1f, -0.0f, NAN};
  dynq__tensor_t B = tf(1, d, b);
  at[2].name = "bf16";
  in[0] = &B;
  ck_assert_int_eq(run_n(DYNQ_OP_CAST, at, 3, 1, in, &o), 0);
  y = o.data;
  ck_assert(y[0] == 1.0f && y[1] == 1.015625f && y[2] == 3.015625f && isinf(y[3]) && y[3] > 0);
  ck_assert(y[4] == 0x1p-130f && y[5] == -0.10009765625f && y[6] == 0.0f && signbit(y[6]) &&
            isnan(y[7]));
  dynq__tensor_clear(&o);
}
END_TEST

/* DepthToSpace (DCR and CRD) and SpaceToDepth against their definitions
 * as reshape + transpose, and their refusals at load and at run time. */
START_TEST(depth_space) {
  enum { N = 2, C = 8, H = 2, W = 3, B = 2 };
  float x[N * C * H * W];
  int32_t xi[N * C * H * W];
  for (int i = 0; i < N * C * H * W; i++) x[i] = (float)i, xi[i] = 1000 + i;
  const int64_t dx[4] = {N, C, H, W}, dy[4] = {N, C / (B * B), H * B, W * B};
  dynq__tensor_t X = tf(4, dx, x), o, back;
  const dynq__tensor_t *in[1] = {&X};
  for (int crd = 0; crd <= 1; crd++) {
    const dynq__attr_t at[] = {AI("blocksize", B), AI("crd", crd)};
    ck_assert_int_eq(run_k(DYNQ_OP_DEPTH_TO_SPACE, at, 2, 1, 1, in, &o), 0);
    float want[N * C * H * W];
    const int cs = C / (B * B);
    for (int n = 0; n < N; n++)
      for (int c = 0; c < cs; c++)
        for (int h = 0; h < H * B; h++)
          for (int w = 0; w < W * B; w++) {
            int i = h % B, j = w % B;
            int ch = crd ? c * B * B + i * B + j : (i * B + j) * cs + c;
            want[((n * cs + c) * H * B + h) * W * B + w] = x[((n * C + ch) * H + h / B) * W + w / B];
          }
    expect(&o, 4, dy, want, 0);
    if (!crd) { /* SpaceToDepth undoes DCR */
      const dynq__tensor_t *bi[1] = {&o};
      ck_assert_int_eq(run_k(DYNQ_OP_SPACE_TO_DEPTH, at, 1, 1, 1, bi, &back), 0);
      expect(&back, 4, dx, x, 0);
      dynq__tensor_clear(&back);
    }
    dynq__tensor_clear(&o);
  }
  /* any dtype: int32 moves the same way */
  dynq__tensor_t XI = X;
  XI.dtype = DYNQ_DT_I32;
  XI.data = xi;
  const dynq__tensor_t *ii[1] = {&XI};
  const dynq__attr_t b2[] = {AI("blocksize", 2)};
  ck_assert_int_eq(run_k(DYNQ_OP_DEPTH_TO_SPACE, b2, 1, 1, 1, ii, &o), 0);
  ck_assert_int_eq(o.dtype, DYNQ_DT_I32);
  ck_assert_int_eq(((int32_t *)o.data)[1], 1000 + H * W * 2); /* (0, 1): channel 1 * C' */
  dynq__tensor_clear(&o);
  /* channels not divisible by blocksize^2; spatial size not by blocksize */
  const dynq__attr_t b3[] = {AI("blocksize", 3)};
  ck_assert_int_eq(run_k(DYNQ_OP_DEPTH_TO_SPACE, b3, 1, 1, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (DepthToSpace): 8 channels do not divide by "
                                    "blocksize^2 (3^2)"));
  ck_assert_int_eq(run_k(DYNQ_OP_SPACE_TO_DEPTH, b2, 1, 1, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "spatial size 2 x 3 does not divide by blocksize 2"));
  /* a huge blocksize cannot overflow the channel count */
  const dynq__attr_t bh[] = {AI("blocksize", (int64_t)1 << 30)};
  float z[1] = {0};
  dynq__tensor_t Z = tf(4, (int64_t[]){1, 1, 1 << 30, 1 << 30}, z);
  Z.dims[2] = Z.dims[3] = (int64_t)1 << 30;
  Z.dims[1] = 0; /* empty, so the dims are all the op sees */
  const dynq__tensor_t *zi[1] = {&Z};
  ck_assert_int_eq(run_k(DYNQ_OP_SPACE_TO_DEPTH, bh, 1, 1, 1, zi, &o), 0);
  ck_assert_int_eq(o.dims[1], 0);
  ck_assert_int_eq(o.dims[2], 1);
  dynq__tensor_clear(&o);
  Z.dims[1] = 3;
  Z.dims[2] = Z.dims[3] = 1 << 30;
  ck_assert_int_eq(run_k(DYNQ_OP_SPACE_TO_DEPTH, bh, 1, 1, 1, zi, &o), DYNQ_ELIMIT);
  /* rank 3; blocksize 0 at run time */
  dynq__tensor_t X3 = tf(3, dx, x);
  const dynq__tensor_t *i3[1] = {&X3};
  ck_assert_int_eq(run_k(DYNQ_OP_DEPTH_TO_SPACE, b2, 1, 1, 1, i3, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "input must have rank 4"));
  ck_assert_int_eq(run_k(DYNQ_OP_DEPTH_TO_SPACE, NULL, 0, 1, 1, in, &o), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "blocksize 0 is not within"));
  /* load-time check: blocksize 0 or negative, crd on SpaceToDepth */
  static const int32_t idx[1] = {0};
  dynq__attr_t ab[2] = {AI("blocksize", 0), AI("crd", 1)};
  dynq__node_t nd = {.op = DYNQ_OP_DEPTH_TO_SPACE, .name = "d2s", .n_in = 1, .n_out = 1,
                     .in = idx, .out = idx, .n_attr = 1, .attr = ab};
  const dynq__opdef_t *def = dynq__opdef(DYNQ_OP_DEPTH_TO_SPACE);
  ck_assert_int_eq(def->check(NULL, &nd, err, sizeof err), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "node 'd2s' (DepthToSpace): blocksize 0 is not within"));
  ab[0].i = -4;
  ck_assert_int_eq(def->check(NULL, &nd, err, sizeof err), DYNQ_EGRAPH);
  ab[0].i = 4;
  nd.n_attr = 2;
  ck_assert_int_eq(def->check(NULL, &nd, err, sizeof err), 0);
  nd.op = DYNQ_OP_SPACE_TO_DEPTH;
  ck_assert_int_eq(def->check(NULL, &nd, err, sizeof err), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "crd 1 is not supported"));
}
END_TEST

/* GatherND with and without batch_dims, its refusals; ArgMin as ArgMax's
 * mirror (ties, select_last_index, NaN, integers). */
START_TEST(gather_nd_argmin) {
  float x[12];
  for (int i = 0; i < 12; i++) x[i] = (float)i;
  dynq__tensor_t X = tf(3, (int64_t[]){2, 3, 2}, x), o;
  /* two rows of data[i, j]: [1, 2] and [0, -3] (negative from the end) */
  int64_t ix[4] = {1, 2, 0, -3};
  dynq__tensor_t I = ti64s(2, (int64_t[]){2, 2}, ix);
  const dynq__tensor_t *in[2] = {&X, &I};
  ck_assert_int_eq(run_k(DYNQ_OP_GATHER_ND, NULL, 0, 2, 1, in, &o), 0);
  expect(&o, 2, (int64_t[]){2, 2}, (float[]){10, 11, 0, 1}, 0);
  dynq__tensor_clear(&o);
  /* batch_dims 1: data[b, idx[b]] per batch b */
  int64_t ib[2] = {2, 1};
  dynq__tensor_t IB = ti64s(2, (int64_t[]){2, 1}, ib);
  const dynq__tensor_t *bi[2] = {&X, &IB};
  const dynq__attr_t bd1[] = {AI("batch_dims", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_GATHER_ND, bd1, 1, 2, 1, bi, &o), 0);
  expect(&o, 2, (int64_t[]){2, 2}, (float[]){4, 5, 8, 9}, 0);
  dynq__tensor_clear(&o);
  /* refusals: an index past its axis, a last axis longer than data's
   * rank, batch axes that differ, batch_dims at data's rank */
  ix[1] = 3;
  ck_assert_int_eq(run_k(DYNQ_OP_GATHER_ND, NULL, 0, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (GatherND): index 3 out of range for axis 1 of "
                                    "size 3"));
  ix[1] = -4;
  ck_assert_int_eq(run_k(DYNQ_OP_GATHER_ND, NULL, 0, 2, 1, in, &o), DYNQ_ESHAPE);
  ib[0] = 3;
  ck_assert_int_eq(run_k(DYNQ_OP_GATHER_ND, bd1, 1, 2, 1, bi, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "index 3 out of range for axis 1 of size 3"));
  int64_t i4[4] = {0, 0, 0, 0};
  dynq__tensor_t I4 = ti64s(2, (int64_t[]){1, 4}, i4);
  const dynq__tensor_t *in4[2] = {&X, &I4};
  ck_assert_int_eq(run_k(DYNQ_OP_GATHER_ND, NULL, 0, 2, 1, in4, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "the last axis of indices is 4; it must be within [1, 3]"));
  dynq__tensor_t I3 = ti64s(2, (int64_t[]){3, 1}, i4);
  const dynq__tensor_t *in3[2] = {&X, &I3};
  ck_assert_int_eq(run_k(DYNQ_OP_GATHER_ND, bd1, 1, 2, 1, in3, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "batch axis 0 is 2 in data, 3 in indices"));
  const dynq__attr_t bd3[] = {AI("batch_dims", 3)};
  ck_assert_int_eq(run_k(DYNQ_OP_GATHER_ND, bd3, 1, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "batch_dims 3 must be below the ranks"));
  dynq__tensor_t F = tf(2, (int64_t[]){2, 2}, x);
  const dynq__tensor_t *inf[2] = {&X, &F};
  ck_assert_int_eq(run_k(DYNQ_OP_GATHER_ND, NULL, 0, 2, 1, inf, &o), DYNQ_EDTYPE);
  static const int32_t idx[2] = {0, 1};
  dynq__attr_t neg = AI("batch_dims", -1);
  dynq__node_t nd = {.op = DYNQ_OP_GATHER_ND, .name = "g", .n_in = 2, .n_out = 1, .in = idx,
                     .out = idx, .n_attr = 1, .attr = &neg};
  ck_assert_int_eq(dynq__opdef(DYNQ_OP_GATHER_ND)->check(NULL, &nd, err, sizeof err),
                   DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "node 'g' (GatherND): batch_dims -1 is not within [0, 8)"));

  /* ArgMin: first of equal minima, or the last; a NaN wins */
  float a[6] = {2, 1, 1, 3, NAN, 0};
  dynq__tensor_t A = tf(2, (int64_t[]){2, 3}, a);
  const dynq__tensor_t *ai[1] = {&A};
  const dynq__attr_t a1[] = {AI("axis", 1)}, a1l[] = {AI("axis", 1), AI("select_last_index", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_ARGMIN, a1, 1, 1, 1, ai, &o), 0);
  ck_assert_int_eq(o.rank, 2);
  ck_assert_int_eq(((int64_t *)o.data)[0], 1);
  ck_assert_int_eq(((int64_t *)o.data)[1], 1);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run_k(DYNQ_OP_ARGMIN, a1l, 2, 1, 1, ai, &o), 0);
  ck_assert_int_eq(((int64_t *)o.data)[0], 2);
  ck_assert_int_eq(((int64_t *)o.data)[1], 1);
  dynq__tensor_clear(&o);
  int64_t v[4] = {5, -2, 7, -2};
  dynq__tensor_t V = ti64s(1, (int64_t[]){4}, v);
  const dynq__tensor_t *vi[1] = {&V};
  const dynq__attr_t nk[] = {AI("keepdims", 0), AI("select_last_index", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_ARGMIN, nk, 2, 1, 1, vi, &o), 0);
  ck_assert_int_eq(o.rank, 0);
  ck_assert_int_eq(((int64_t *)o.data)[0], 3);
  dynq__tensor_clear(&o);
  const dynq__attr_t a2[] = {AI("axis", 2)};
  ck_assert_int_eq(run_k(DYNQ_OP_ARGMIN, a2, 1, 1, 1, ai, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (ArgMin)"));
}
END_TEST

/* LRN: the window of an even size reaches one channel further up than
 * down; size checked at load and at run time. */
START_TEST(lrn_window) {
  float x[3] = {1, 2, 3};
  dynq__tensor_t X = tf(4, (int64_t[]){1, 3, 1, 1}, x), o;
  const dynq__tensor_t *in[1] = {&X};
  dynq__attr_t at[4] = {AI("size", 2), {.name = "alpha", .type = DYNQ_ATTR_FLOAT, .f = 1.0f},
                        {.name = "beta", .type = DYNQ_ATTR_FLOAT, .f = 1.0f},
                        {.name = "bias", .type = DYNQ_ATTR_FLOAT, .f = 1.0f}};
  ck_assert_int_eq(run_k(DYNQ_OP_LRN, at, 4, 1, 1, in, &o), 0);
  expect(&o, 4, X.dims, (float[]){1 / 3.5f, 2 / 7.5f, 3 / 5.5f}, 1e-7f);
  dynq__tensor_clear(&o);
  /* defaults: alpha 1e-4, beta 0.75, bias 1 */
  ck_assert_int_eq(run_k(DYNQ_OP_LRN, at, 1, 1, 1, in, &o), 0);
  ck_assert_float_eq_tol(((float *)o.data)[2], 3 / pow(1 + 1e-4 / 2 * 9, 0.75), 1e-7);
  dynq__tensor_clear(&o);
  at[0].i = 0;
  ck_assert_int_eq(run_k(DYNQ_OP_LRN, at, 4, 1, 1, in, &o), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (LRN): size 0 must be at least 1"));
  static const int32_t idx[1] = {0};
  dynq__node_t nd = {.op = DYNQ_OP_LRN, .name = "l", .n_in = 1, .n_out = 1, .in = idx,
                     .out = idx, .n_attr = 1, .attr = at};
  ck_assert_int_eq(dynq__opdef(DYNQ_OP_LRN)->check(NULL, &nd, err, sizeof err), DYNQ_EGRAPH);
  at[0].i = INT64_MAX; /* a window past every channel: the sum of all */
  ck_assert_int_eq(dynq__opdef(DYNQ_OP_LRN)->check(NULL, &nd, err, sizeof err), 0);
  ck_assert_int_eq(run_k(DYNQ_OP_LRN, at, 4, 1, 1, in, &o), 0);
  ck_assert_float_eq_tol(((float *)o.data)[0], 1 / (1 + 14 / (double)INT64_MAX), 1e-7);
  dynq__tensor_clear(&o);
  dynq__tensor_t X1 = tf(1, (int64_t[]){3}, x);
  in[0] = &X1;
  ck_assert_int_eq(run_k(DYNQ_OP_LRN, at, 4, 1, 1, in, &o), DYNQ_ESHAPE);
}
END_TEST

/* Hardmax (per axis and in the opset < 13 flattened form), IsNaN, IsInf's
 * two flags, Xor's refusal of non-bool inputs, Shrink, the inverse and
 * hyperbolic trigonometry at the edges of their domains, Gelu. */
START_TEST(small_float_ops) {
  float x[6] = {1, 3, 3, 2, NAN, 0};
  dynq__tensor_t X = tf(2, (int64_t[]){2, 3}, x), o;
  const dynq__tensor_t *in[2] = {&X, &X};
  ck_assert_int_eq(run_k(DYNQ_OP_HARDMAX, NULL, 0, 1, 1, in, &o), 0);
  expect(&o, 2, X.dims, (float[]){0, 1, 0, 0, 1, 0}, 0); /* first maximum; NaN wins */
  dynq__tensor_clear(&o);
  const dynq__attr_t ax0[] = {AI("axis", 0)}, flat[] = {AI("axis", 0), AI("flatten", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_HARDMAX, ax0, 1, 1, 1, in, &o), 0);
  expect(&o, 2, X.dims, (float[]){0, 0, 1, 1, 1, 0}, 0);
  dynq__tensor_clear(&o);
  x[4] = 4;
  ck_assert_int_eq(run_k(DYNQ_OP_HARDMAX, flat, 2, 1, 1, in, &o), 0);
  expect(&o, 2, X.dims, (float[]){0, 0, 0, 0, 1, 0}, 0);
  dynq__tensor_clear(&o);
  const dynq__attr_t ax2[] = {AI("axis", 2)};
  ck_assert_int_eq(run_k(DYNQ_OP_HARDMAX, ax2, 1, 1, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (Hardmax)"));

  float v[5] = {INFINITY, -INFINITY, NAN, 0, -1e38f};
  dynq__tensor_t V = tf(1, (int64_t[]){5}, v);
  const dynq__tensor_t *vi[1] = {&V};
  static const uint8_t want_nan[5] = {0, 0, 1, 0, 0}, want_inf[3][5] = {
      {1, 1, 0, 0, 0}, {0, 1, 0, 0, 0}, {1, 0, 0, 0, 0}};
  ck_assert_int_eq(run_k(DYNQ_OP_IS_NAN, NULL, 0, 1, 1, vi, &o), 0);
  ck_assert_int_eq(o.dtype, DYNQ_DT_U8);
  ck_assert_mem_eq(o.data, want_nan, 5);
  dynq__tensor_clear(&o);
  const dynq__attr_t both[] = {AI("detect_negative", 1)}, negonly[] = {AI("detect_positive", 0)},
                     posonly[] = {AI("detect_negative", 0)};
  const dynq__attr_t *flags[3] = {both, negonly, posonly};
  for (int k = 0; k < 3; k++) {
    ck_assert_int_eq(run_k(DYNQ_OP_IS_INF, flags[k], 1, 1, 1, vi, &o), 0);
    ck_assert_mem_eq(o.data, want_inf[k], 5);
    dynq__tensor_clear(&o);
  }
  int64_t iv[1] = {1};
  dynq__tensor_t IV = ti64s(1, (int64_t[]){1}, iv);
  const dynq__tensor_t *ii[1] = {&IV};
  ck_assert_int_eq(run_k(DYNQ_OP_IS_NAN, NULL, 0, 1, 1, ii, &o), DYNQ_EDTYPE);

  uint8_t a[4] = {0, 1, 0, 1}, b[2] = {0, 1};
  dynq__tensor_t A = {.dtype = DYNQ_DT_U8, .rank = 2, .dims = {2, 2}, .data = a};
  dynq__tensor_t B = {.dtype = DYNQ_DT_U8, .rank = 1, .dims = {2}, .data = b};
  const dynq__tensor_t *ab[2] = {&A, &B};
  ck_assert_int_eq(run_k(DYNQ_OP_XOR, NULL, 0, 2, 1, ab, &o), 0);
  ck_assert_mem_eq(o.data, ((uint8_t[]){0, 0, 0, 0}), 4);
  dynq__tensor_clear(&o);
  b[1] = 0;
  ck_assert_int_eq(run_k(DYNQ_OP_XOR, NULL, 0, 2, 1, ab, &o), 0);
  ck_assert_mem_eq(o.data, ((uint8_t[]){0, 1, 0, 1}), 4);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run_k(DYNQ_OP_XOR, NULL, 0, 2, 1, in, &o), DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (Xor): inputs must be bool (uint8), are float32"));

  float s[5] = {-2, -0.5f, 0, 0.75f, 3};
  dynq__tensor_t S = tf(1, (int64_t[]){5}, s);
  const dynq__tensor_t *si[1] = {&S};
  const dynq__attr_t sh[] = {{.name = "lambd", .type = DYNQ_ATTR_FLOAT, .f = 0.6f},
                             {.name = "bias", .type = DYNQ_ATTR_FLOAT, .f = 0.25f}};
  ck_assert_int_eq(run_k(DYNQ_OP_SHRINK, sh, 2, 1, 1, si, &o), 0);
  expect(&o, 1, S.dims, (float[]){-1.75f, 0, 0, 0.5f, 2.75f}, 0);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run_k(DYNQ_OP_SHRINK, NULL, 0, 1, 1, si, &o), 0); /* lambd 0.5, bias 0 */
  expect(&o, 1, S.dims, (float[]){-2, 0, 0, 0.75f, 3}, 0);
  dynq__tensor_clear(&o);

  float t[3] = {-1, 0.5f, 2};
  dynq__tensor_t T = tf(1, (int64_t[]){3}, t);
  const dynq__tensor_t *ti[1] = {&T};
  static const struct { int op; double (*f)(double); } fns[] = {
      {DYNQ_OP_TAN, tan}, {DYNQ_OP_ASIN, asin}, {DYNQ_OP_ACOS, acos}, {DYNQ_OP_ATAN, atan},
      {DYNQ_OP_SINH, sinh}, {DYNQ_OP_COSH, cosh}, {DYNQ_OP_ASINH, asinh},
      {DYNQ_OP_ACOSH, acosh}, {DYNQ_OP_ATANH, atanh}};
  for (size_t k = 0; k < sizeof fns / sizeof fns[0]; k++) {
    ck_assert_int_eq(run_k(fns[k].op, NULL, 0, 1, 1, ti, &o), 0);
    for (int i = 0; i < 3; i++) {
      const float want = (float)fns[k].f(t[i]), got = ((float *)o.data)[i];
      ck_assert_msg(got == want || (isnan(got) && isnan(want)), "%s(%g) = %g, want %g",
                    dynq__op_name(fns[k].op), t[i], got, want);
    }
    dynq__tensor_clear(&o);
  }
  /* outside the domain: NaN (asin(2), acosh(0.5)); atanh(-1) = -inf */
  ck_assert_int_eq(run_k(DYNQ_OP_ATANH, NULL, 0, 1, 1, ti, &o), 0);
  ck_assert(isinf(((float *)o.data)[0]) && ((float *)o.data)[0] < 0 && isnan(((float *)o.data)[2]));
  dynq__tensor_clear(&o);
  /* Gelu: the erf form and the tanh one; its flag checked at load */
  dynq__attr_t gt[] = {AI("tanh", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_GELU, NULL, 0, 1, 1, ti, &o), 0);
  ck_assert_float_eq_tol(((float *)o.data)[0], -0.5 * (1 + erf(-1 / sqrt(2.0))), 1e-7);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run_k(DYNQ_OP_GELU, gt, 1, 1, 1, ti, &o), 0);
  ck_assert_float_eq_tol(((float *)o.data)[2], 1 + tanh(sqrt(2 / M_PI) * (2 + 0.044715 * 8)),
                         1e-6);
  dynq__tensor_clear(&o);
  static const int32_t idx[1] = {0};
  dynq__node_t nd = {.op = DYNQ_OP_GELU, .name = "ge", .n_in = 1, .n_out = 1, .in = idx,
                     .out = idx, .n_attr = 1, .attr = gt};
  ck_assert_int_eq(dynq__opdef(DYNQ_OP_GELU)->check(NULL, &nd, err, sizeof err), 0);
  gt[0].i = 2;
  ck_assert_int_eq(dynq__opdef(DYNQ_OP_GELU)->check(NULL, &nd, err, sizeof err), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "node 'ge' (Gelu): tanh 2 is not 0 or 1"));
}
END_TEST

/* OneHot: the axis, negative and out-of-range indices, and depths that
 * cannot be (0, negative, NaN, huge) refused before any allocation. */
START_TEST(onehot_depth) {
  int64_t ix[3] = {1, -1, 5};
  float dv = 3, vals[2] = {-1, 7};
  dynq__tensor_t I = ti64s(1, (int64_t[]){3}, ix), D = tf(0, NULL, &dv),
                 V = tf(1, (int64_t[]){2}, vals), o;
  const dynq__tensor_t *in[3] = {&I, &D, &V};
  ck_assert_int_eq(run_k(DYNQ_OP_ONE_HOT, NULL, 0, 3, 1, in, &o), 0);
  /* 5 is past depth 3: a row all off */
  expect(&o, 2, (int64_t[]){3, 3}, (float[]){-1, 7, -1, -1, -1, 7, -1, -1, -1}, 0);
  dynq__tensor_clear(&o);
  const dynq__attr_t ax0[] = {AI("axis", 0)}, ax2[] = {AI("axis", 2)};
  ck_assert_int_eq(run_k(DYNQ_OP_ONE_HOT, ax0, 1, 3, 1, in, &o), 0);
  expect(&o, 2, (int64_t[]){3, 3}, (float[]){-1, -1, -1, 7, -1, -1, -1, 7, -1}, 0);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run_k(DYNQ_OP_ONE_HOT, ax2, 1, 3, 1, in, &o), DYNQ_ESHAPE);
  /* float indices are truncated; values of another dtype */
  float fx[2] = {2.9f, -0.5f};
  int32_t iv[2] = {0, 1};
  dynq__tensor_t FX = tf(1, (int64_t[]){2}, fx), IV = V;
  IV.dtype = DYNQ_DT_I32;
  IV.data = iv;
  const dynq__tensor_t *fin[3] = {&FX, &D, &IV};
  ck_assert_int_eq(run_k(DYNQ_OP_ONE_HOT, NULL, 0, 3, 1, fin, &o), 0);
  ck_assert_int_eq(o.dtype, DYNQ_DT_I32);
  ck_assert_mem_eq(o.data, ((int32_t[]){0, 0, 1, 1, 0, 0}), 6 * sizeof(int32_t));
  dynq__tensor_clear(&o);
  static const float bad[] = {0, -2, NAN, 1e12f, INFINITY};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    dv = bad[k];
    ck_assert_int_eq(run_k(DYNQ_OP_ONE_HOT, NULL, 0, 3, 1, in, &o), DYNQ_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err, "node 't' (OneHot): depth"));
    ck_assert_ptr_nonnull(strstr(err, "is not within [1, 2147483648]"));
  }
  /* a depth each index row can take, but not all of them together */
  dv = 2147483648.0f;
  ck_assert_int_eq(run_k(DYNQ_OP_ONE_HOT, NULL, 0, 3, 1, in, &o), DYNQ_ELIMIT);
  dv = 3;
  V.dims[0] = 3;
  float v3[3] = {0, 1, 2};
  V.data = v3;
  ck_assert_int_eq(run_k(DYNQ_OP_ONE_HOT, NULL, 0, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "values must be [off_value, on_value]"));
}
END_TEST

/* EyeLike: diagonals above and below the main one, k far past the
 * matrix (no ones, no overflow), the dtype attribute, a bad dtype code at
 * load and at run time, rank 3. */
START_TEST(eyelike_k) {
  int32_t x[6] = {0};
  dynq__tensor_t X = {.dtype = DYNQ_DT_I32, .rank = 2, .dims = {2, 3}, .data = x}, o;
  const dynq__tensor_t *in[1] = {&X};
  ck_assert_int_eq(run_k(DYNQ_OP_EYE_LIKE, NULL, 0, 1, 1, in, &o), 0);
  ck_assert_int_eq(o.dtype, DYNQ_DT_I32);
  ck_assert_mem_eq(o.data, ((int32_t[]){1, 0, 0, 0, 1, 0}), 6 * sizeof(int32_t));
  dynq__tensor_clear(&o);
  const dynq__attr_t up[] = {AI("k", 2), AI("dtype", DYNQ_DT_F32)}, down[] = {AI("k", -1)};
  ck_assert_int_eq(run_k(DYNQ_OP_EYE_LIKE, up, 2, 1, 1, in, &o), 0);
  expect(&o, 2, X.dims, (float[]){0, 0, 1, 0, 0, 0}, 0);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run_k(DYNQ_OP_EYE_LIKE, down, 1, 1, 1, in, &o), 0);
  ck_assert_mem_eq(o.data, ((int32_t[]){0, 0, 0, 1, 0, 0}), 6 * sizeof(int32_t));
  dynq__tensor_clear(&o);
  static const int64_t far[] = {INT64_MIN, -3, 3, INT64_MAX};
  for (size_t k = 0; k < sizeof far / sizeof far[0]; k++) {
    const dynq__attr_t kf[] = {AI("k", far[k])};
    ck_assert_int_eq(run_k(DYNQ_OP_EYE_LIKE, kf, 1, 1, 1, in, &o), 0);
    ck_assert_mem_eq(o.data, ((int32_t[]){0, 0, 0, 0, 0, 0}), 6 * sizeof(int32_t));
    dynq__tensor_clear(&o);
  }
  dynq__attr_t bad[] = {AI("dtype", 77)};
  ck_assert_int_eq(run_k(DYNQ_OP_EYE_LIKE, bad, 1, 1, 1, in, &o), DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (EyeLike): dtype 77 is not a dtype code"));
  static const int32_t idx[1] = {0};
  dynq__node_t nd = {.op = DYNQ_OP_EYE_LIKE, .name = "e", .n_in = 1, .n_out = 1, .in = idx,
                     .out = idx, .n_attr = 1, .attr = bad};
  const dynq__opdef_t *def = dynq__opdef(DYNQ_OP_EYE_LIKE);
  ck_assert_int_eq(def->check(NULL, &nd, err, sizeof err), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "node 'e' (EyeLike): dtype 77 is not a dtype code"));
  bad[0].i = -1;
  ck_assert_int_eq(def->check(NULL, &nd, err, sizeof err), DYNQ_EGRAPH);
  bad[0].i = DYNQ_DT_U8;
  ck_assert_int_eq(def->check(NULL, &nd, err, sizeof err), 0);
  X.rank = 3;
  ck_assert_int_eq(run_k(DYNQ_OP_EYE_LIKE, NULL, 0, 1, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "input must have rank 2, has 3"));
}
END_TEST

/* MeanVarianceNormalization: over given axes, a constant row (zero
 * variance: zeros, not NaN), the default axes [0, 2, 3] on a rank-2 input
 * refused. */
START_TEST(mvn_axes) {
  float x[6] = {1, 2, 3, 5, 5, 5};
  int64_t ax[1] = {1};
  dynq__tensor_t X = tf(2, (int64_t[]){2, 3}, x), A = ti64s(1, (int64_t[]){1}, ax), o;
  const dynq__tensor_t *in[2] = {&X, &A};
  ck_assert_int_eq(run_k(DYNQ_OP_MVN, NULL, 0, 2, 1, in, &o), 0);
  const float s = (float)(1 / (sqrt(2.0 / 3.0) + 1e-9));
  expect(&o, 2, X.dims, (float[]){-s, 0, s, 0, 0, 0}, 1e-6f);
  dynq__tensor_clear(&o);
  ck_assert_int_eq(run_k(DYNQ_OP_MVN, NULL, 0, 1, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (MeanVarianceNormalization)"));
  /* the default axes on [1, 2, 1, 3]: over the 6 values of each channel */
  float y[6] = {0, 0, 0, 1, 2, 3};
  dynq__tensor_t Y = tf(4, (int64_t[]){1, 2, 1, 3}, y);
  in[0] = &Y;
  ck_assert_int_eq(run_k(DYNQ_OP_MVN, NULL, 0, 1, 1, in, &o), 0);
  expect(&o, 4, Y.dims, (float[]){0, 0, 0, -s, 0, s}, 1e-6f);
  dynq__tensor_clear(&o);
}
END_TEST

/* ---- lib/ops/misc.c ---- */

static int check_node(int op, const dynq__attr_t *attrs, int n_attr) {
  static const int32_t idx[5] = {0, 1, 2, 3, 4};
  dynq__node_t nd = {.op = op, .name = "c", .n_in = 2, .n_out = 1, .in = idx, .out = idx,
                     .n_attr = n_attr, .attr = attrs};
  return dynq__opdef(op)->check(NULL, &nd, err, sizeof err);
}

/* NonMaxSuppression: a hand case per box format, then the refusals: bad
 * shapes, a negative count, an IoU threshold outside [0, 1], a
 * center_point_box other than 0/1, and the run's max_bytes. */
START_TEST(nms_cases) {
  /* three boxes [y1, x1, y2, x2]: 0 and 1 overlap by IoU 0.81 (box 1 is
   * given corner-flipped), 2 is apart; one class, scores 0.9 0.8 0.7 */
  float b[12] = {0, 0, 1, 1, 1, 1, 0.1f, 0.1f, 5, 5, 6, 6}, sc[3] = {0.9f, 0.8f, 0.7f};
  int64_t maxo[1] = {10};
  float iou[1] = {0.5f}, sthr[1] = {0.75f};
  dynq__tensor_t B = tf(3, (int64_t[]){1, 3, 4}, b), S = tf(3, (int64_t[]){1, 1, 3}, sc);
  dynq__tensor_t M = ti64s(1, (int64_t[]){1}, maxo), I = tf(0, NULL, iou);
  dynq__tensor_t T = tf(1, (int64_t[]){1}, sthr), o;
  const dynq__tensor_t *in[5] = {&B, &S, &M, &I, &T};
  ck_assert_int_eq(run_k(DYNQ_OP_NON_MAX_SUPPRESSION, NULL, 0, 4, 1, in, &o), 0);
  ck_assert_int_eq(o.dtype, DYNQ_DT_I64);
  ck_assert_int_eq(o.rank, 2);
  ck_assert_int_eq(o.dims[0], 2);
  ck_assert_mem_eq(o.data, ((int64_t[]){0, 0, 0, 0, 0, 2}), 6 * sizeof(int64_t));
  dynq__tensor_clear(&o);
  /* the score threshold drops box 2 (0.7 <= 0.75), IoU 0.9 keeps box 1 */
  iou[0] = 0.9f;
  ck_assert_int_eq(run_k(DYNQ_OP_NON_MAX_SUPPRESSION, NULL, 0, 5, 1, in, &o), 0);
  ck_assert_int_eq(o.dims[0], 2);
  ck_assert_mem_eq(o.data, ((int64_t[]){0, 0, 0, 0, 0, 1}), 6 * sizeof(int64_t));
  dynq__tensor_clear(&o);
  /* the same boxes as centers: [xc, yc, w, h] */
  float bc[12] = {0.5f, 0.5f, 1, 1, 0.55f, 0.55f, 0.9f, 0.9f, 5.5f, 5.5f, 1, 1};
  dynq__tensor_t BC = tf(3, (int64_t[]){1, 3, 4}, bc);
  in[0] = &BC;
  iou[0] = 0.5f;
  const dynq__attr_t center[] = {AI("center_point_box", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_NON_MAX_SUPPRESSION, center, 1, 4, 1, in, &o), 0);
  ck_assert_int_eq(o.dims[0], 2);
  ck_assert_mem_eq(o.data, ((int64_t[]){0, 0, 0, 0, 0, 2}), 6 * sizeof(int64_t));
  dynq__tensor_clear(&o);
  in[0] = &B;
  /* no count: nothing selected */
  ck_assert_int_eq(run_k(DYNQ_OP_NON_MAX_SUPPRESSION, NULL, 0, 2, 1, in, &o), 0);
  ck_assert_int_eq(o.rank, 2);
  ck_assert_int_eq(o.dims[0], 0);
  ck_assert_int_eq(o.dims[1], 3);
  dynq__tensor_clear(&o);
  maxo[0] = -1;
  ck_assert_int_eq(run_k(DYNQ_OP_NON_MAX_SUPPRESSION, NULL, 0, 4, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (NonMaxSuppression): max_output_boxes_per_class is -1") !=
                NULL, "%s", err);
  maxo[0] = 10;
  iou[0] = 1.5f;
  ck_assert_int_eq(run_k(DYNQ_OP_NON_MAX_SUPPRESSION, NULL, 0, 4, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "iou_threshold is 1.5") != NULL, "%s", err);
  iou[0] = 0.5f;
  dynq__tensor_t B2 = tf(2, (int64_t[]){3, 4}, b);
  in[0] = &B2;
  ck_assert_int_eq(run_k(DYNQ_OP_NON_MAX_SUPPRESSION, NULL, 0, 4, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "boxes has shape [3, 4]") != NULL, "%s", err);
  in[0] = &B;
  dynq__tensor_t S2 = tf(3, (int64_t[]){1, 3, 1}, sc);
  in[1] = &S2;
  ck_assert_int_eq(run_k(DYNQ_OP_NON_MAX_SUPPRESSION, NULL, 0, 4, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "scores has shape [1, 3, 1]") != NULL, "%s", err);
  in[1] = &S;
  /* a count given as two values */
  int64_t m2[2] = {1, 2};
  dynq__tensor_t M2 = ti64s(1, (int64_t[]){2}, m2);
  in[2] = &M2;
  ck_assert_int_eq(run_k(DYNQ_OP_NON_MAX_SUPPRESSION, NULL, 0, 4, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "max_output_boxes_per_class must hold one value") != NULL, "%s", err);
  in[2] = &M;
  /* 1000 boxes' scratch over a 256-byte cap */
  float *bb = calloc(4000, sizeof(float)), *ss = calloc(1000, sizeof(float));
  ck_assert_ptr_nonnull(bb);
  ck_assert_ptr_nonnull(ss);
  dynq__tensor_t BB = tf(3, (int64_t[]){1, 1000, 4}, bb), SS = tf(3, (int64_t[]){1, 1, 1000}, ss);
  in[0] = &BB;
  in[1] = &SS;
  g_max_bytes = 256;
  ck_assert_int_eq(run_k(DYNQ_OP_NON_MAX_SUPPRESSION, NULL, 0, 4, 1, in, &o), DYNQ_ELIMIT);
  ck_assert_msg(strstr(err, "node 't' (NonMaxSuppression)") != NULL, "%s", err);
  g_max_bytes = 0;
  free(bb);
  free(ss);
  /* no batch: boxes [0, 2^30, 4] hold no data, nothing is allocated for them */
  dynq__tensor_t B0 = tf(3, (int64_t[]){0, 1 << 30, 4}, b);
  dynq__tensor_t S0 = tf(3, (int64_t[]){0, 1, 1 << 30}, sc);
  in[0] = &B0;
  in[1] = &S0;
  ck_assert_int_eq(run_k(DYNQ_OP_NON_MAX_SUPPRESSION, NULL, 0, 4, 1, in, &o), 0);
  ck_assert_int_eq(o.dims[0], 0);
  dynq__tensor_clear(&o);
  const dynq__attr_t cb2[] = {AI("center_point_box", 2)};
  ck_assert_int_eq(check_node(DYNQ_OP_NON_MAX_SUPPRESSION, cb2, 1), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "node 'c' (NonMaxSuppression): center_point_box 2") != NULL, "%s",
                err);
}
END_TEST

/* Unique along an axis and flat, sorted and in order of appearance;
 * Compress with and without an axis; their refusals. */
START_TEST(unique_compress) {
  /* columns of [[1, 3, 1], [2, 0, 2]]: (1,2) (3,0) (1,2) */
  float x[6] = {1, 3, 1, 2, 0, 2};
  dynq__tensor_t X = tf(2, (int64_t[]){2, 3}, x), o[4];
  const dynq__tensor_t *in[2] = {&X, NULL};
  const dynq__attr_t ax1[] = {AI("axis", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_UNIQUE, ax1, 1, 1, 4, in, o), 0);
  expect(&o[0], 2, (int64_t[]){2, 2}, (float[]){1, 3, 2, 0}, 0);
  ck_assert_mem_eq(o[1].data, ((int64_t[]){0, 1}), 2 * sizeof(int64_t));
  ck_assert_mem_eq(o[2].data, ((int64_t[]){0, 1, 0}), 3 * sizeof(int64_t));
  ck_assert_mem_eq(o[3].data, ((int64_t[]){2, 1}), 2 * sizeof(int64_t));
  for (int k = 0; k < 4; k++) dynq__tensor_clear(&o[k]);
  /* flat, int64, in order of appearance */
  int64_t v[6] = {5, -1, 5, 7, -1, 5};
  dynq__tensor_t V = ti64s(1, (int64_t[]){6}, v);
  in[0] = &V;
  const dynq__attr_t unsorted[] = {AI("sorted", 0)};
  ck_assert_int_eq(run_k(DYNQ_OP_UNIQUE, unsorted, 1, 1, 4, in, o), 0);
  ck_assert_int_eq(o[0].dims[0], 3);
  ck_assert_mem_eq(o[0].data, ((int64_t[]){5, -1, 7}), 3 * sizeof(int64_t));
  ck_assert_mem_eq(o[1].data, ((int64_t[]){0, 1, 3}), 3 * sizeof(int64_t));
  ck_assert_mem_eq(o[2].data, ((int64_t[]){0, 1, 0, 2, 1, 0}), 6 * sizeof(int64_t));
  ck_assert_mem_eq(o[3].data, ((int64_t[]){3, 2, 1}), 3 * sizeof(int64_t));
  for (int k = 0; k < 4; k++) dynq__tensor_clear(&o[k]);
  ck_assert_int_eq(run_k(DYNQ_OP_UNIQUE, NULL, 0, 1, 1, in, o), 0);
  ck_assert_mem_eq(o[0].data, ((int64_t[]){-1, 5, 7}), 3 * sizeof(int64_t));
  dynq__tensor_clear(&o[0]);
  in[0] = &X;
  const dynq__attr_t ax2[] = {AI("axis", 2)};
  ck_assert_int_eq(run_k(DYNQ_OP_UNIQUE, ax2, 1, 1, 4, in, o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (Unique): axis 2") != NULL, "%s", err);
  /* empty slices along a long axis: one group, no scratch */
  dynq__tensor_t E = tf(2, (int64_t[]){0, 1000}, x);
  in[0] = &E;
  ck_assert_int_eq(run_k(DYNQ_OP_UNIQUE, ax1, 1, 1, 4, in, o), 0);
  ck_assert_int_eq(o[0].dims[0], 0);
  ck_assert_int_eq(o[0].dims[1], 1);
  ck_assert_mem_eq(o[1].data, ((int64_t[]){0}), sizeof(int64_t));
  ck_assert_int_eq(o[2].dims[0], 1000);
  ck_assert_int_eq(((int64_t *)o[2].data)[999], 0);
  ck_assert_mem_eq(o[3].data, ((int64_t[]){1000}), sizeof(int64_t));
  for (int k = 0; k < 4; k++) dynq__tensor_clear(&o[k]);
  in[0] = &X;
  g_max_bytes = 64; /* 6 values' scratch is 288 bytes */
  ck_assert_int_eq(run_k(DYNQ_OP_UNIQUE, NULL, 0, 1, 4, in, o), DYNQ_ELIMIT);
  ck_assert_msg(strstr(err, "node 't' (Unique)") != NULL, "%s", err);
  g_max_bytes = 0;

  /* Compress along axis 1: columns 0 and 2 */
  uint8_t c[3] = {1, 0, 1};
  dynq__tensor_t C = {.dtype = DYNQ_DT_U8, .rank = 1, .dims = {3}, .data = c};
  in[1] = &C;
  ck_assert_int_eq(run_k(DYNQ_OP_COMPRESS, ax1, 1, 2, 1, in, o), 0);
  expect(&o[0], 2, (int64_t[]){2, 2}, (float[]){1, 1, 2, 2}, 0);
  dynq__tensor_clear(&o[0]);
  /* no axis: the flattened input, the condition shorter than it */
  ck_assert_int_eq(run_k(DYNQ_OP_COMPRESS, NULL, 0, 2, 1, in, o), 0);
  expect(&o[0], 1, (int64_t[]){2}, (float[]){1, 1}, 0);
  dynq__tensor_clear(&o[0]);
  const dynq__attr_t axm3[] = {AI("axis", -3)};
  ck_assert_int_eq(run_k(DYNQ_OP_COMPRESS, axm3, 1, 2, 1, in, o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (Compress): axis -3") != NULL, "%s", err);
  C.rank = 2;
  C.dims[0] = 1, C.dims[1] = 3;
  ck_assert_int_eq(run_k(DYNQ_OP_COMPRESS, ax1, 1, 2, 1, in, o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "condition has rank 2") != NULL, "%s", err);
}
END_TEST

/* ReverseSequence, BitShift, Det, MaxUnpool: a case each and their
 * refusals. */
START_TEST(misc_ops) {
  /* ReverseSequence, batch along axis 0: lengths 2 and 3 of 3 steps */
  float x[6] = {1, 2, 3, 4, 5, 6};
  int64_t len[2] = {2, 3};
  dynq__tensor_t X = tf(2, (int64_t[]){2, 3}, x), L = ti64s(1, (int64_t[]){2}, len), o;
  const dynq__tensor_t *in[3] = {&X, &L, NULL};
  const dynq__attr_t b0[] = {AI("batch_axis", 0), AI("time_axis", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_REVERSE_SEQUENCE, b0, 2, 2, 1, in, &o), 0);
  expect(&o, 2, X.dims, (float[]){2, 1, 3, 6, 5, 4}, 0);
  dynq__tensor_clear(&o);
  len[1] = 4;
  ck_assert_int_eq(run_k(DYNQ_OP_REVERSE_SEQUENCE, b0, 2, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (ReverseSequence): sequence_lens[1] is 4, outside [0, 3]") !=
                NULL, "%s", err);
  len[1] = -1;
  ck_assert_int_eq(run_k(DYNQ_OP_REVERSE_SEQUENCE, b0, 2, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "sequence_lens[1] is -1") != NULL, "%s", err);
  /* the default (batch 1, time 0): lengths per column, 2 entries expected */
  ck_assert_int_eq(run_k(DYNQ_OP_REVERSE_SEQUENCE, NULL, 0, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "sequence_lens has shape [2] for a batch of 3") != NULL, "%s", err);
  const dynq__attr_t same[] = {AI("batch_axis", 0), AI("time_axis", 0)};
  ck_assert_int_eq(check_node(DYNQ_OP_REVERSE_SEQUENCE, same, 2), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "batch_axis 0 and time_axis 0") != NULL, "%s", err);

  /* BitShift on uint8, broadcast; shifts past the width give 0 */
  uint8_t a[4] = {1, 0x81, 255, 16}, s1[1] = {3}, s4[4] = {1, 1, 8, 9};
  dynq__tensor_t A = {.dtype = DYNQ_DT_U8, .rank = 1, .dims = {4}, .data = a};
  dynq__tensor_t S1 = {.dtype = DYNQ_DT_U8, .rank = 0, .data = s1};
  dynq__tensor_t S4 = {.dtype = DYNQ_DT_U8, .rank = 1, .dims = {4}, .data = s4};
  const dynq__attr_t left[] = {AI("direction", 1)}, right[] = {AI("direction", 2)};
  in[0] = &A;
  in[1] = &S1;
  ck_assert_int_eq(run_k(DYNQ_OP_BIT_SHIFT, left, 1, 2, 1, in, &o), 0);
  ck_assert_mem_eq(o.data, ((uint8_t[]){8, 8, 0xf8, 128}), 4);
  dynq__tensor_clear(&o);
  in[1] = &S4;
  ck_assert_int_eq(run_k(DYNQ_OP_BIT_SHIFT, right, 1, 2, 1, in, &o), 0);
  ck_assert_mem_eq(o.data, ((uint8_t[]){0, 0x40, 0, 0}), 4);
  dynq__tensor_clear(&o);
  in[1] = &X;
  ck_assert_int_eq(run_k(DYNQ_OP_BIT_SHIFT, right, 1, 2, 1, in, &o), DYNQ_EDTYPE);
  ck_assert_msg(strstr(err, "node 't' (BitShift): input 1 is float32") != NULL, "%s", err);
  const dynq__attr_t up[] = {AI("direction", 3)};
  ck_assert_int_eq(check_node(DYNQ_OP_BIT_SHIFT, up, 1), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "direction 3") != NULL, "%s", err);

  /* Det: a 3x3 needing a pivot swap (det -2), a singular one, batched */
  float m[18] = {0, 1, 2, 1, 0, 3, 4, -3, 8, 1, 2, 3, 2, 4, 6, 0, 0, 1};
  dynq__tensor_t Mx = tf(3, (int64_t[]){2, 3, 3}, m);
  in[0] = &Mx;
  ck_assert_int_eq(run_k(DYNQ_OP_DET, NULL, 0, 1, 1, in, &o), 0);
  expect(&o, 1, (int64_t[]){2}, (float[]){-2, 0}, 1e-5f);
  dynq__tensor_clear(&o);
  /* no matrices of a huge size: an empty result, no M x M scratch */
  dynq__tensor_t M0 = tf(3, (int64_t[]){0, 1 << 30, 1 << 30}, m);
  in[0] = &M0;
  ck_assert_int_eq(run_k(DYNQ_OP_DET, NULL, 0, 1, 1, in, &o), 0);
  ck_assert_int_eq(o.rank, 1);
  ck_assert_int_eq(o.dims[0], 0);
  dynq__tensor_clear(&o);
  dynq__tensor_t Mr = tf(2, (int64_t[]){3, 6}, m);
  in[0] = &Mr;
  ck_assert_int_eq(run_k(DYNQ_OP_DET, NULL, 0, 1, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (Det): input has shape [3, 6]") != NULL, "%s", err);

  /* MaxUnpool 2x2 stride 2 of [1, 1, 1, 2]: to [1, 1, 2, 4] */
  float p[2] = {7, 9};
  int64_t pi[2] = {5, 2};
  dynq__tensor_t P = tf(4, (int64_t[]){1, 1, 1, 2}, p), PI = ti64s(4, (int64_t[]){1, 1, 1, 2}, pi);
  const dynq__attr_t k2[] = {AI("kernel_shape0", 2), AI("kernel_shape1", 2), AI("strides0", 2),
                             AI("strides1", 2), AI("spatial", 2)};
  in[0] = &P;
  in[1] = &PI;
  ck_assert_int_eq(run_k(DYNQ_OP_MAX_UNPOOL, k2, 5, 2, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 2, 4}, (float[]){0, 0, 9, 0, 0, 7, 0, 0}, 0);
  dynq__tensor_clear(&o);
  /* a larger output_shape pads at the end of each axis */
  int64_t osh[4] = {1, 1, 3, 5};
  dynq__tensor_t OS = ti64s(1, (int64_t[]){4}, osh);
  in[2] = &OS;
  ck_assert_int_eq(run_k(DYNQ_OP_MAX_UNPOOL, k2, 5, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 3, 5},
         (float[]){0, 0, 9, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0}, 0);
  dynq__tensor_clear(&o);
  osh[3] = 3;
  ck_assert_int_eq(run_k(DYNQ_OP_MAX_UNPOOL, k2, 5, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "output_shape [1, 1, 3, 3] is smaller than the unpooled shape "
                            "[1, 1, 2, 4] on axis 3") != NULL, "%s", err);
  pi[0] = 8;
  ck_assert_int_eq(run_k(DYNQ_OP_MAX_UNPOOL, k2, 5, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (MaxUnpool): index 8 (element 0) outside") != NULL, "%s",
                err);
  pi[0] = -1;
  ck_assert_int_eq(run_k(DYNQ_OP_MAX_UNPOOL, k2, 5, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "index -1") != NULL, "%s", err);
}
END_TEST

/* GridSample and RoiAlign: values by hand, data that must not crash (NaN,
 * 1e30 coordinates), and their refusals. */
START_TEST(sample_ops) {
  /* X [[1, 2], [3, 4]]; align_corners 1: -1 and 1 are the corner centres */
  float x[4] = {1, 2, 3, 4};
  float g[12] = {-1, -1, 1, 1, 0, 0, 0.1f, -0.1f, 3, 3, NAN, 0};
  dynq__tensor_t X = tf(4, (int64_t[]){1, 1, 2, 2}, x), G = tf(4, (int64_t[]){1, 1, 6, 2}, g), o;
  const dynq__tensor_t *in[3] = {&X, &G, NULL};
  const int64_t od[4] = {1, 1, 1, 6};
  const dynq__attr_t lin[] = {AI("mode", 0), AI("padding", 0), AI("align_corners", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_GRID_SAMPLE, lin, 3, 2, 1, in, &o), 0);
  /* (0.1, -0.1) is pixel (0.55, 0.45): 1 + 0.55 + 2 * 0.45; (3, 3) outside; NaN: 0 */
  expect(&o, 4, od, (float[]){1, 4, 2.5f, 2.45f, 0, 0}, 1e-6f);
  dynq__tensor_clear(&o);
  const dynq__attr_t border[] = {AI("mode", 0), AI("padding", 1), AI("align_corners", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_GRID_SAMPLE, border, 3, 2, 1, in, &o), 0);
  expect(&o, 4, od, (float[]){1, 4, 2.5f, 2.45f, 4, 0}, 1e-6f);
  dynq__tensor_clear(&o);
  const dynq__attr_t near[] = {AI("mode", 1), AI("padding", 0), AI("align_corners", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_GRID_SAMPLE, near, 3, 2, 1, in, &o), 0);
  /* (0, 0) is pixel (0.5, 0.5): ties to even, (0, 0) */
  expect(&o, 4, od, (float[]){1, 4, 1, 2, 0, 0}, 0);
  dynq__tensor_clear(&o);
  /* coordinates far outside, every mode and padding: finite where a tap
   * is read, 0 or a border value, never an overflowed index */
  for (int i = 0; i < 12; i++) g[i] = i % 2 ? 1e30f : -1e30f;
  for (int64_t mode = 0; mode < 3; mode++)
    for (int64_t pad = 0; pad < 3; pad++) {
      const dynq__attr_t a[] = {AI("mode", mode), AI("padding", pad), AI("align_corners", 0)};
      ck_assert_int_eq(run_k(DYNQ_OP_GRID_SAMPLE, a, 3, 2, 1, in, &o), 0);
      const float *y = o.data;
      if (pad == 0)
        for (int i = 0; i < 6; i++) ck_assert_msg(y[i] == 0, "mode %d zeros: %g", (int)mode, y[i]);
      if (pad == 1 && mode < 2)  /* (-inf, +inf) clipped: the bottom-left pixel */
        for (int i = 0; i < 6; i++) ck_assert_msg(y[i] == 3, "mode %d border: %g", (int)mode, y[i]);
      dynq__tensor_clear(&o);
    }
  /* refusals */
  G.dims[3] = 3, G.dims[2] = 4;
  ck_assert_int_eq(run_k(DYNQ_OP_GRID_SAMPLE, lin, 3, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (GridSample): X [1, 1, 2, 2] and grid [1, 1, 4, 3]") != NULL,
                "%s", err);
  X.rank = 3;
  G.dims[3] = 2, G.dims[2] = 6;
  ck_assert_int_eq(run_k(DYNQ_OP_GRID_SAMPLE, lin, 3, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "(2 spatial axes only)") != NULL, "%s", err);
  const dynq__attr_t badmode[] = {AI("mode", 3)};
  ck_assert_int_eq(check_node(DYNQ_OP_GRID_SAMPLE, badmode, 1), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "mode 3: 0 (linear), 1 (nearest) or 2 (cubic) expected") != NULL,
                "%s", err);

  /* RoiAlign over a constant image: every bin averages to the constant */
  float img[16], rois[8] = {0, 0, 3, 3, 1, 0.5f, 2, 3};
  for (int i = 0; i < 16; i++) img[i] = 2;
  int64_t bi[2] = {0, 0};
  dynq__tensor_t I = tf(4, (int64_t[]){1, 1, 4, 4}, img), R = tf(2, (int64_t[]){2, 4}, rois),
                 B = ti64s(1, (int64_t[]){2}, bi);
  const dynq__tensor_t *rin[3] = {&I, &R, &B};
  const dynq__attr_t avg[] = {AI("output_height", 2), AI("output_width", 3),
                              AI("sampling_ratio", 2), AI("half_pixel", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_ROI_ALIGN, avg, 4, 3, 1, rin, &o), 0);
  float two[12];
  for (int i = 0; i < 12; i++) two[i] = 2;
  expect(&o, 4, (int64_t[]){2, 1, 2, 3}, two, 1e-6f);
  dynq__tensor_clear(&o);
  bi[1] = 1;
  ck_assert_int_eq(run_k(DYNQ_OP_ROI_ALIGN, avg, 4, 3, 1, rin, &o), DYNQ_EDATA);
  ck_assert_msg(strstr(err, "node 't' (RoiAlign): batch_indices[1] is 1, outside [0, 1)") != NULL,
                "%s", err);
  bi[1] = 0;
  /* adaptive sampling over a ROI far larger than any image: refused, not
   * 1e18 samples per bin; NaN coordinates too */
  const dynq__attr_t adapt[] = {AI("output_height", 1), AI("output_width", 1)};
  rois[6] = 1e9f, rois[7] = 1e9f;
  ck_assert_int_eq(run_k(DYNQ_OP_ROI_ALIGN, adapt, 2, 3, 1, rin, &o), DYNQ_ELIMIT);
  ck_assert_msg(strstr(err, "ROI 1 (1, 0.5, 1e+09, 1e+09) would take") != NULL, "%s", err);
  rois[6] = NAN;
  ck_assert_int_eq(run_k(DYNQ_OP_ROI_ALIGN, adapt, 2, 3, 1, rin, &o), DYNQ_ELIMIT);
  /* with a fixed sampling ratio the NaN ROI's samples read nothing: 0 */
  ck_assert_int_eq(run_k(DYNQ_OP_ROI_ALIGN, avg, 4, 3, 1, rin, &o), 0);
  ck_assert_float_eq(((float *)o.data)[6], 0);
  dynq__tensor_clear(&o);
  R.dims[1] = 3;
  ck_assert_int_eq(run_k(DYNQ_OP_ROI_ALIGN, avg, 4, 3, 1, rin, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "rois [2, 3]") != NULL, "%s", err);
  const dynq__attr_t bad_out[] = {AI("output_height", 0)};
  ck_assert_int_eq(check_node(DYNQ_OP_ROI_ALIGN, bad_out, 1), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "output_height 0 and output_width 1") != NULL, "%s", err);
}
END_TEST

/* run_k with a run stop whose cancel flag is already set: an op that
 * polls inside its loops stops with ECANCELED and leaves no output. */
static int run_canceled(int op, const dynq__attr_t *attrs, int n_attr, int n_in,
                        const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  static const int32_t idx[4] = {0, 1, 2, 3};
  static const atomic_int flag = 1;
  dynq__run_stop_t stop = {.cancel = &flag};
  dynq__node_t n = {.op = op, .name = "t", .n_in = n_in, .n_out = 1, .in = idx, .out = idx,
                    .n_attr = n_attr, .attr = attrs};
  dynq__op_ctx_t c = {.node = &n, .kernel = &dynq__kernel_ref, .err = err,
                      .errlen = sizeof(err), .stop = &stop};
  memset(out, 0, sizeof(*out));
  err[0] = 0;
  return dynq__op_run1(NULL, &c, in, out);
}

/* LpPool, GlobalLpPool, LpNormalization, MaxRoiPool: values by hand,
 * hostile data (NaN, infinities, 1e30 corners), a kernel far larger than
 * the input over padding, wrong shapes and attribute values. */
START_TEST(lp_ops) {
  /* X [1, 1, 2, 3] = [[3, -4, 0], [1, 2, -2]] */
  float x[6] = {3, -4, 0, 1, 2, -2};
  dynq__tensor_t X = tf(4, (int64_t[]){1, 1, 2, 3}, x), o;
  const dynq__tensor_t *in[2] = {&X, NULL};
  /* 2 x 2 windows, stride 1, p 2: sqrt(9 + 16 + 1 + 4), sqrt(16 + 0 + 4 + 4) */
  const dynq__attr_t l2[] = {AI("spatial", 2), AI("kernel_shape0", 2), AI("kernel_shape1", 2),
                             AI("p", 2)};
  ck_assert_int_eq(run_k(DYNQ_OP_LP_POOL, l2, 4, 1, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 2}, (float[]){sqrtf(30), sqrtf(24)}, 1e-6f);
  dynq__tensor_clear(&o);
  /* p 1 over 1 x 2 windows with a zero column of padding on each side:
   * the padding adds nothing (|3|, |3| + |-4|, |-4| + 0, 0 on row 0) */
  const dynq__attr_t l1[] = {AI("spatial", 2), AI("kernel_shape0", 1), AI("kernel_shape1", 2),
                             AI("pad_begin1", 1), AI("pad_end1", 1), AI("p", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_LP_POOL, l1, 6, 1, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 2, 4}, (float[]){3, 7, 4, 0, 1, 3, 4, 2}, 0);
  dynq__tensor_clear(&o);
  /* p 3 as the global form: (27 + 64 + 0 + 1 + 8 + 8)^(1/3) */
  const dynq__attr_t p3[] = {AI("p", 3)};
  ck_assert_int_eq(run_k(DYNQ_OP_GLOBAL_LP_POOL, p3, 1, 1, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 1}, (float[]){(float)cbrt(108.0)}, 1e-6f);
  dynq__tensor_clear(&o);
  /* a kernel of 65536 over an axis of 3 padded by 65535 on each side:
   * 65538 windows (starting at -65535 .. 2), each reading only the inputs
   * it overlaps */
  const dynq__attr_t wide[] = {AI("spatial", 1), AI("kernel_shape0", 65536),
                               AI("pad_begin0", 65535), AI("pad_end0", 65535), AI("p", 1)};
  dynq__tensor_t X1 = tf(3, (int64_t[]){1, 2, 3}, x);
  in[0] = &X1;
  ck_assert_int_eq(run_k(DYNQ_OP_LP_POOL, wide, 5, 1, 1, in, &o), 0);
  ck_assert_int_eq(o.dims[2], 65538);
  const float *w = o.data;
  ck_assert(w[0] == 3 && w[1] == 7 && w[65535] == 7 && w[65536] == 4 && w[65537] == 0);
  ck_assert(w[65538 + 2] == 5);  /* channel 1: |1| + |2| + |-2| */
  dynq__tensor_clear(&o);
  /* the same stopped by the run's cancel flag: no output */
  ck_assert_int_eq(run_canceled(DYNQ_OP_LP_POOL, wide, 5, 1, in, &o), DYNQ_ECANCELED);
  ck_assert_ptr_null(o.data);
  ck_assert_msg(strstr(err, "node 't' (LpPool)") != NULL, "%s", err);
  /* NaN and infinity: the windows holding them give NaN and inf */
  float hx[4] = {NAN, 1, INFINITY, 1};
  dynq__tensor_t H = tf(3, (int64_t[]){1, 1, 4}, hx);
  in[0] = &H;
  const dynq__attr_t k2[] = {AI("spatial", 1), AI("kernel_shape0", 2), AI("strides0", 2),
                             AI("p", 2)};
  ck_assert_int_eq(run_k(DYNQ_OP_LP_POOL, k2, 4, 1, 1, in, &o), 0);
  ck_assert(isnan(((float *)o.data)[0]) && isinf(((float *)o.data)[1]));
  dynq__tensor_clear(&o);
  /* p = 2 of float32's largest values: summed in double, no overflow */
  float big[2] = {2e38f, -2e38f};
  dynq__tensor_t B = tf(3, (int64_t[]){1, 1, 2}, big);
  in[0] = &B;
  ck_assert_int_eq(run_k(DYNQ_OP_GLOBAL_LP_POOL, NULL, 0, 1, 1, in, &o), 0);
  ck_assert_float_eq_tol(((float *)o.data)[0], 2e38f * sqrtf(2), 1e32f);
  dynq__tensor_clear(&o);
  /* refusals: the window larger than the unpadded input, rank, p */
  in[0] = &X;
  const dynq__attr_t k3[] = {AI("spatial", 2), AI("kernel_shape0", 3), AI("kernel_shape1", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_LP_POOL, k3, 3, 1, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (LpPool): spatial axis 0: input size 2") != NULL, "%s", err);
  in[0] = &X1;
  ck_assert_int_eq(run_k(DYNQ_OP_LP_POOL, l2, 4, 1, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "X has shape [1, 2, 3], expected rank 4") != NULL, "%s", err);
  const dynq__attr_t p0[] = {AI("spatial", 1), AI("kernel_shape0", 1), AI("p", 0)};
  ck_assert_int_eq(check_node(DYNQ_OP_LP_POOL, p0, 3), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "node 'c' (LpPool): p 0 is not within [1, 64]") != NULL, "%s", err);
  ck_assert_int_eq(run_k(DYNQ_OP_LP_POOL, p0, 3, 1, 1, in, &o), DYNQ_EGRAPH);
  const dynq__attr_t pbig[] = {AI("p", (int64_t)1 << 40)};
  ck_assert_int_eq(check_node(DYNQ_OP_GLOBAL_LP_POOL, pbig, 1), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "p 1099511627776 is not within [1, 64]") != NULL, "%s", err);
  ck_assert_int_eq(run_k(DYNQ_OP_GLOBAL_LP_POOL, pbig, 1, 1, 1, in, &o), DYNQ_EGRAPH);

  /* LpNormalization: rows [3, -4] -> [0.6, -0.8] (p 2), [1/3, -2/3]...
   * (p 1); a zero row gives 0, as ONNX Runtime */
  float nx[6] = {3, -4, 0, 0, 1, -2};
  dynq__tensor_t N = tf(2, (int64_t[]){3, 2}, nx);
  in[0] = &N;
  ck_assert_int_eq(run_k(DYNQ_OP_LP_NORM, NULL, 0, 1, 1, in, &o), 0);
  expect(&o, 2, (int64_t[]){3, 2}, (float[]){0.6f, -0.8f, 0, 0, 1 / sqrtf(5), -2 / sqrtf(5)},
         1e-7f);
  dynq__tensor_clear(&o);
  const dynq__attr_t ax0p1[] = {AI("axis", 0), AI("p", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_LP_NORM, ax0p1, 2, 1, 1, in, &o), 0);
  expect(&o, 2, (int64_t[]){3, 2}, (float[]){0.75f, -4 / 6.0f, 0, 0, 0.25f, -2 / 6.0f}, 1e-7f);
  dynq__tensor_clear(&o);
  /* NaN makes its row NaN; an infinity gives NaN there and 0 beside it;
   * 1e-30 and 1e30 are exact in double (ORT's float sum gives 0) */
  float hn[8] = {NAN, 1, INFINITY, 2, 1e-30f, 0, 1e30f, 1e30f};
  dynq__tensor_t HN = tf(2, (int64_t[]){4, 2}, hn);
  in[0] = &HN;
  ck_assert_int_eq(run_k(DYNQ_OP_LP_NORM, NULL, 0, 1, 1, in, &o), 0);
  const float *ny = o.data;
  ck_assert(isnan(ny[0]) && isnan(ny[1]) && isnan(ny[2]) && ny[3] == 0 && ny[4] == 1 &&
            ny[5] == 0);
  ck_assert_float_eq_tol(ny[6], sqrtf(0.5f), 1e-7f);
  dynq__tensor_clear(&o);
  const dynq__attr_t ax2[] = {AI("axis", 2)};
  ck_assert_int_eq(run_k(DYNQ_OP_LP_NORM, ax2, 1, 1, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (LpNormalization)") != NULL && strstr(err, "axis 2"),
                "%s", err);
  const dynq__attr_t lp3[] = {AI("p", 3)};
  ck_assert_int_eq(check_node(DYNQ_OP_LP_NORM, lp3, 1), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "node 'c' (LpNormalization): p 3: 1 or 2 expected") != NULL, "%s",
                err);
  ck_assert_int_eq(run_k(DYNQ_OP_LP_NORM, lp3, 1, 1, 1, in, &o), DYNQ_EGRAPH);

  /* MaxRoiPool over X [2, 1, 3, 4] = 0..23: ROI (0; 0, 0, 3, 2) is the
   * whole first image, 2 x 2 bins of rows [0, 2) [1, 3) (bin 1.5) and
   * columns [0, 2) [2, 4) */
  float img[24], rois[15] = {0, 0, 0, 3, 2, 1, 1.2f, 0.4f, 2.6f, 1.6f, 1, 0, 0, 0, 0};
  for (int i = 0; i < 24; i++) img[i] = (float)i;
  dynq__tensor_t I = tf(4, (int64_t[]){2, 1, 3, 4}, img), R = tf(2, (int64_t[]){3, 5}, rois);
  const dynq__tensor_t *rin[2] = {&I, &R};
  const dynq__attr_t rp[] = {AI("pooled_h", 2), AI("pooled_w", 2)};
  ck_assert_int_eq(run_k(DYNQ_OP_MAX_ROI_POOL, rp, 2, 2, 1, rin, &o), 0);
  /* ROI 1: corners (1.2, 0.4) .. (2.6, 1.6) round to (1, 0) .. (3, 2) of
   * image 1 (12..23): rows [0, 2) [1, 3), columns [1, 3) [2, 4); ROI 2:
   * the pixel (0, 0) alone, its bins [0, 1) and [0, 1) (0.5 each):
   * floor/ceil, not empty */
  expect(&o, 4, (int64_t[]){3, 1, 2, 2},
         (float[]){5, 7, 9, 11, 18, 19, 22, 23, 12, 12, 12, 12}, 0);
  dynq__tensor_clear(&o);
  /* hostile corners: NaN empties its bins (0); an end of 1e30 makes bin
   * 0 reach the image's end, bin 1 start past it (empty); -1e30 .. 1e30
   * puts the image in the last bin */
  rois[1] = NAN;
  rois[8] = 1e30f, rois[9] = 1e30f;
  rois[11] = -1e30f, rois[12] = -1e30f, rois[13] = 1e30f, rois[14] = 1e30f;
  ck_assert_int_eq(run_k(DYNQ_OP_MAX_ROI_POOL, rp, 2, 2, 1, rin, &o), 0);
  expect(&o, 4, (int64_t[]){3, 1, 2, 2},
         (float[]){0, 0, 0, 0, 23, 0, 0, 0, 0, 0, 0, 23}, 0);
  dynq__tensor_clear(&o);
  /* a NaN pixel makes its bins NaN */
  img[12 + 5] = NAN;
  ck_assert_int_eq(run_k(DYNQ_OP_MAX_ROI_POOL, rp, 2, 2, 1, rin, &o), 0);
  ck_assert(isnan(((float *)o.data)[4]) && isnan(((float *)o.data)[11]));
  dynq__tensor_clear(&o);
  /* the batch index: out of range, negative, fractional, NaN */
  static const float bad_b[] = {2, -1, 0.5f, NAN};
  for (int k = 0; k < 4; k++) {
    rois[10] = bad_b[k];
    ck_assert_int_eq(run_k(DYNQ_OP_MAX_ROI_POOL, rp, 2, 2, 1, rin, &o), DYNQ_EDATA);
    ck_assert_msg(strstr(err, "node 't' (MaxRoiPool): rois[2, 0] (the batch index) is ") != NULL &&
                      strstr(err, "a whole number within [0, 2) expected") != NULL, "%s", err);
    ck_assert_ptr_null(o.data);
  }
  rois[10] = 1;
  /* no ROIs: an empty output; an image of no rows: every bin empty, 0 */
  R.dims[0] = 0;
  ck_assert_int_eq(run_k(DYNQ_OP_MAX_ROI_POOL, rp, 2, 2, 1, rin, &o), 0);
  ck_assert(o.rank == 4 && o.dims[0] == 0 && o.dims[2] == 2);
  dynq__tensor_clear(&o);
  R.dims[0] = 3;
  I.dims[2] = 0;
  ck_assert_int_eq(run_k(DYNQ_OP_MAX_ROI_POOL, rp, 2, 2, 1, rin, &o), 0);
  expect(&o, 4, (int64_t[]){3, 1, 2, 2}, (float[]){0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0);
  dynq__tensor_clear(&o);
  I.dims[2] = 3;
  ck_assert_int_eq(run_canceled(DYNQ_OP_MAX_ROI_POOL, rp, 2, 2, rin, &o), DYNQ_ECANCELED);
  ck_assert_ptr_null(o.data);
  /* shapes and attributes */
  R.dims[1] = 4;
  ck_assert_int_eq(run_k(DYNQ_OP_MAX_ROI_POOL, rp, 2, 2, 1, rin, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "X [2, 1, 3, 4] and rois [3, 4]: [N, C, H, W] and [R, 5] expected") !=
                    NULL, "%s", err);
  R.dims[1] = 5;
  I.rank = 3;
  ck_assert_int_eq(run_k(DYNQ_OP_MAX_ROI_POOL, rp, 2, 2, 1, rin, &o), DYNQ_ESHAPE);
  I.rank = 4;
  const dynq__attr_t rp0[] = {AI("pooled_h", 0), AI("pooled_w", -3)};
  ck_assert_int_eq(check_node(DYNQ_OP_MAX_ROI_POOL, rp0, 2), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "node 'c' (MaxRoiPool): pooled_shape [0, -3]: each within [1, 65536]")
                    != NULL, "%s", err);
  ck_assert_int_eq(run_k(DYNQ_OP_MAX_ROI_POOL, rp0, 2, 2, 1, rin, &o), DYNQ_EGRAPH);
  const dynq__attr_t rps[] = {AI("pooled_h", 1), AI("pooled_w", 1),
                              {.name = "spatial_scale", .type = DYNQ_ATTR_FLOAT, .f = INFINITY}};
  ck_assert_int_eq(check_node(DYNQ_OP_MAX_ROI_POOL, rps, 3), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "spatial_scale inf is not finite") != NULL, "%s", err);
}
END_TEST

/* AffineGrid by hand: the identity theta over a 2 x 3 grid gives the
 * pixel centres (align_corners 0: x -2/3, 0, 2/3 and y -1/2, 1/2; 1: x
 * -1, 0, 1 and y -1, 1), a translation shifts them, a unit axis with
 * align_corners sits at 0; NaN theta entries reach only the coordinates
 * they multiply; wrong shapes, a size whose N is not theta's, negative
 * and huge sizes, and a canceled run (no output) are refused. */
START_TEST(affine_grid) {
  float id[6] = {1, 0, 0, 0, 1, 0}, sh[6] = {1, 0, 0.5f, 0, 1, -1};
  int64_t s23[4] = {1, 1, 2, 3};
  dynq__tensor_t T = tf(3, (int64_t[]){1, 2, 3}, id), S = ti64s(1, (int64_t[]){4}, s23), o;
  const dynq__tensor_t *in[2] = {&T, &S};
  ck_assert_int_eq(run_k(DYNQ_OP_AFFINE_GRID, NULL, 0, 2, 1, in, &o), 0);
  const float t = 2.0f / 3.0f;
  expect(&o, 4, (int64_t[]){1, 2, 3, 2},
         (float[]){-t, -0.5f, 0, -0.5f, t, -0.5f, -t, 0.5f, 0, 0.5f, t, 0.5f}, 1e-6f);
  dynq__tensor_clear(&o);
  const dynq__attr_t ac[] = {AI("align_corners", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_AFFINE_GRID, ac, 1, 2, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 2, 3, 2}, (float[]){-1, -1, 0, -1, 1, -1, -1, 1, 0, 1, 1, 1}, 0);
  dynq__tensor_clear(&o);
  T.data = sh;
  ck_assert_int_eq(run_k(DYNQ_OP_AFFINE_GRID, ac, 1, 2, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 2, 3, 2},
         (float[]){-0.5f, -2, 0.5f, -2, 1.5f, -2, -0.5f, 0, 0.5f, 0, 1.5f, 0}, 0);
  dynq__tensor_clear(&o);
  int64_t unit[4] = {1, 1, 1, 2};
  dynq__tensor_t U = ti64s(1, (int64_t[]){4}, unit);
  in[1] = &U, T.data = id;
  ck_assert_int_eq(run_k(DYNQ_OP_AFFINE_GRID, ac, 1, 2, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 2, 2}, (float[]){-1, 0, 1, 0}, 0);
  dynq__tensor_clear(&o);
  float nan_x[6] = {NAN, 0, 0, 0, 1, 0};
  T.data = nan_x;
  ck_assert_int_eq(run_k(DYNQ_OP_AFFINE_GRID, NULL, 0, 2, 1, in, &o), 0);
  ck_assert(isnan(((float *)o.data)[0]) && ((float *)o.data)[1] == 0.0f);
  dynq__tensor_clear(&o);
  T.data = id;
  /* refused */
  int64_t s3d[5] = {1, 1, 2, 2, 2}, n2[4] = {2, 1, 2, 2}, neg[4] = {1, 1, -1, 2},
          huge[4] = {1, 1, (int64_t)1 << 40, (int64_t)1 << 40};
  dynq__tensor_t S3 = ti64s(1, (int64_t[]){5}, s3d), N2 = ti64s(1, (int64_t[]){4}, n2),
                 NG = ti64s(1, (int64_t[]){4}, neg), HG = ti64s(1, (int64_t[]){4}, huge);
  in[1] = &S3;
  ck_assert_int_eq(run_k(DYNQ_OP_AFFINE_GRID, NULL, 0, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (AffineGrid): theta [1, 2, 3] and a size of 5 values"),
                "%s", err);
  in[1] = &N2;
  ck_assert_int_eq(run_k(DYNQ_OP_AFFINE_GRID, NULL, 0, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "size's N 2 is not theta's 1"), "%s", err);
  in[1] = &NG;
  ck_assert_int_eq(run_k(DYNQ_OP_AFFINE_GRID, NULL, 0, 2, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "size -1 of spatial axis 0 is out of range"), "%s", err);
  in[1] = &HG;
  ck_assert_int_ne(run_k(DYNQ_OP_AFFINE_GRID, NULL, 0, 2, 1, in, &o), 0);
  ck_assert_ptr_null(o.data);
  in[1] = &S;
  dynq__tensor_t TI = ti64s(3, (int64_t[]){1, 2, 3}, (int64_t[]){1, 0, 0, 0, 1, 0});
  in[0] = &TI;
  ck_assert_int_eq(run_k(DYNQ_OP_AFFINE_GRID, NULL, 0, 2, 1, in, &o), DYNQ_EDTYPE);
  in[0] = &T;
  ck_assert_int_eq(run_canceled(DYNQ_OP_AFFINE_GRID, NULL, 0, 2, in, &o), DYNQ_ECANCELED);
  ck_assert_ptr_null(o.data);
  ck_assert_int_eq(check_node(DYNQ_OP_AFFINE_GRID, (dynq__attr_t[]){AI("align_corners", 2)}, 1),
                   DYNQ_EGRAPH);
}
END_TEST

/* Col2Im by hand: blocks of 2 over a 1 x 3 image with stride 1 overlap
 * on the middle pixel (taps x0 x1 at positions 0 and 1: [a0, a1 + b0,
 * b1]); pads drop the taps that land outside; a 2-D fold; wrong
 * shapes, blocks that do not fit, mismatched lengths and a canceled run
 * refused; attribute values a file may hold refused at load. */
START_TEST(col2im_op) {
  /* X [1, 2, 2]: tap 0 row (a0, b0) = (1, 10), tap 1 row (a1, b1) = (2, 20) */
  float x[4] = {1, 10, 2, 20};
  int64_t im[1] = {3}, bl[1] = {2};
  dynq__tensor_t X = tf(3, (int64_t[]){1, 2, 2}, x), IM = ti64s(1, (int64_t[]){1}, im),
                 BL = ti64s(1, (int64_t[]){1}, bl), o;
  const dynq__tensor_t *in[3] = {&X, &IM, &BL};
  const dynq__attr_t a1[] = {AI("spatial", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_COL2IM, a1, 1, 3, 1, in, &o), 0);
  expect(&o, 3, (int64_t[]){1, 1, 3}, (float[]){1, 12, 20}, 0);
  dynq__tensor_clear(&o);
  /* pads 1 + 1 on an image of 2: positions -1, 0, 1 -> 3 blocks; X [1, 2, 3] */
  float xp[6] = {1, 2, 3, 10, 20, 30};
  int64_t im2[1] = {2};
  dynq__tensor_t XP = tf(3, (int64_t[]){1, 2, 3}, xp), IM2 = ti64s(1, (int64_t[]){1}, im2);
  const dynq__attr_t ap[] = {AI("spatial", 1), AI("pad_begin0", 1), AI("pad_end0", 1)};
  in[0] = &XP, in[1] = &IM2;
  ck_assert_int_eq(run_k(DYNQ_OP_COL2IM, ap, 3, 3, 1, in, &o), 0);
  /* block at -1 puts tap 1 (10) on 0; at 0: 2 on 0, 20 on 1; at 1: 3 on 1 (30 outside) */
  expect(&o, 3, (int64_t[]){1, 1, 2}, (float[]){12, 23}, 0);
  dynq__tensor_clear(&o);
  /* 2-D: a 2 x 2 image from one 2 x 2 block: the taps in order */
  float x4[4] = {1, 2, 3, 4};
  int64_t im22[2] = {2, 2}, bl22[2] = {2, 2};
  dynq__tensor_t X4 = tf(3, (int64_t[]){1, 4, 1}, x4), I22 = ti64s(1, (int64_t[]){2}, im22),
                 B22 = ti64s(1, (int64_t[]){2}, bl22);
  const dynq__attr_t a2[] = {AI("spatial", 2)};
  in[0] = &X4, in[1] = &I22, in[2] = &B22;
  ck_assert_int_eq(run_k(DYNQ_OP_COL2IM, a2, 1, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 2, 2}, (float[]){1, 2, 3, 4}, 0);
  dynq__tensor_clear(&o);
  /* refused: L not the block count, channels not a multiple, a block too
   * large, lengths not the spatial count, a huge image, int input */
  in[0] = &X;
  ck_assert_int_eq(run_k(DYNQ_OP_COL2IM, a2, 1, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (Col2Im): input [1, 2, 2]: channels must be a multiple "
                            "of the block size 4 and L the 1 block positions"), "%s", err);
  int64_t big_bl[2] = {3, 2};
  dynq__tensor_t BB = ti64s(1, (int64_t[]){2}, big_bl);
  in[0] = &X4, in[2] = &BB;
  ck_assert_int_eq(run_k(DYNQ_OP_COL2IM, a2, 1, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "axis 0: a block of 3 (dilation 1) does not fit an image of 2"),
                "%s", err);
  in[2] = &B22;
  ck_assert_int_eq(run_k(DYNQ_OP_COL2IM, a1, 1, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "image_shape and block_shape have 2 and 2 values for 1 spatial"),
                "%s", err);
  int64_t huge[2] = {(int64_t)1 << 40, 2};
  dynq__tensor_t HG = ti64s(1, (int64_t[]){2}, huge);
  in[1] = &HG;
  ck_assert_int_ne(run_k(DYNQ_OP_COL2IM, a2, 1, 3, 1, in, &o), 0);
  ck_assert_ptr_null(o.data);
  in[1] = &I22;
  ck_assert_int_eq(run_canceled(DYNQ_OP_COL2IM, a2, 1, 3, in, &o), DYNQ_ECANCELED);
  ck_assert_ptr_null(o.data);
  dynq__tensor_t XI = ti64s(3, (int64_t[]){1, 4, 1}, (int64_t[]){1, 2, 3, 4});
  in[0] = &XI;
  ck_assert_int_eq(run_k(DYNQ_OP_COL2IM, a2, 1, 3, 1, in, &o), DYNQ_EDTYPE);
  ck_assert_int_eq(check_node(DYNQ_OP_COL2IM, (dynq__attr_t[]){AI("spatial", 4)}, 1),
                   DYNQ_EGRAPH);
  ck_assert_int_eq(check_node(DYNQ_OP_COL2IM, (dynq__attr_t[]){AI("spatial", (1LL << 32) + 2)}, 1),
                   DYNQ_EGRAPH);
  ck_assert_int_eq(check_node(DYNQ_OP_COL2IM,
                              (dynq__attr_t[]){AI("spatial", 2), AI("strides1", 0)}, 2),
                   DYNQ_EGRAPH);
  ck_assert_int_eq(check_node(DYNQ_OP_COL2IM,
                              (dynq__attr_t[]){AI("spatial", 1), AI("pad_end0", -1)}, 2),
                   DYNQ_EGRAPH);
}
END_TEST

/* DeformConv by hand: X [1, 1, 3, 3] = 0..8, a 1x1 kernel of weight 1,
 * every offset (0.5, 0): each output averages rows p and p + 1 of its
 * column, the last row with the zero below the image (3 + q / 2); a mask
 * of 2 doubles it.  Then the shapes refused at run time and the
 * attributes refused at load, each naming the node. */
START_TEST(deform_conv_op) {
  float x[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8}, w1[1] = {1}, off[18], m2[9], bias[1] = {10};
  for (int i = 0; i < 9; i++) off[i] = 0.5f, off[9 + i] = 0, m2[i] = 2;
  dynq__tensor_t X = tf(4, (int64_t[]){1, 1, 3, 3}, x), W = tf(4, (int64_t[]){1, 1, 1, 1}, w1),
                 O = tf(4, (int64_t[]){1, 2, 3, 3}, off), M = tf(4, (int64_t[]){1, 1, 3, 3}, m2),
                 B = tf(1, (int64_t[]){1}, bias), o;
  const dynq__attr_t at[] = {AI("spatial", 2)};
  const dynq__tensor_t *in[5] = {&X, &W, &O, NULL, NULL};
  const float want[9] = {1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 6.5f, 3.0f, 3.5f, 4.0f};
  ck_assert_int_eq(run_k(DYNQ_OP_DEFORM_CONV, at, 1, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 3, 3}, want, 1e-6f);
  dynq__tensor_clear(&o);
  float want2[9];
  for (int i = 0; i < 9; i++) want2[i] = 2 * want[i] + 10;
  in[3] = &B, in[4] = &M;
  ck_assert_int_eq(run_k(DYNQ_OP_DEFORM_CONV, at, 1, 5, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 3, 3}, want2, 1e-6f);
  dynq__tensor_clear(&o);
  /* offset for a 3x3 kernel with a 1x1 one; a mask of the wrong size; a
   * group that does not divide */
  dynq__tensor_t O9 = tf(4, (int64_t[]){1, 1, 3, 3}, off);
  in[2] = &O9, in[3] = NULL, in[4] = NULL;
  ck_assert_int_eq(run_k(DYNQ_OP_DEFORM_CONV, at, 1, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (DeformConv): offset [1, 1, 3, 3], expected [1, 2, 3, 3]"),
                "%s", err);
  dynq__tensor_t M4 = tf(4, (int64_t[]){1, 1, 2, 2}, m2);
  in[2] = &O, in[3] = &B, in[4] = &M4;
  ck_assert_int_eq(run_k(DYNQ_OP_DEFORM_CONV, at, 1, 5, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "mask [1, 1, 2, 2], expected [1, 1, 3, 3]"), "%s", err);
  const dynq__attr_t g2[] = {AI("spatial", 2), AI("group", 2)};
  in[3] = NULL, in[4] = NULL;
  ck_assert_int_eq(run_k(DYNQ_OP_DEFORM_CONV, g2, 2, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "do not fit group 2"), "%s", err);
  /* a kernel wider than the image: no output position, an empty output;
   * a kernel over 65536 wide: refused before any size is multiplied */
  static float w25[25];
  dynq__tensor_t W5 = tf(4, (int64_t[]){1, 1, 5, 5}, w25),
                 O0 = tf(4, (int64_t[]){1, 50, 0, 0}, off);
  in[1] = &W5, in[2] = &O0;
  ck_assert_int_eq(run_k(DYNQ_OP_DEFORM_CONV, at, 1, 3, 1, in, &o), 0);
  ck_assert(o.rank == 4 && o.dims[1] == 1 && o.dims[2] == 0 && o.dims[3] == 0);
  dynq__tensor_clear(&o);
  float *wide = calloc(70000, sizeof(float));
  dynq__tensor_t WW = tf(4, (int64_t[]){1, 1, 1, 70000}, wide);
  in[1] = &WW, in[2] = &O;
  ck_assert_int_eq(run_k(DYNQ_OP_DEFORM_CONV, at, 1, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "a kernel over 65536 on an axis"), "%s", err);
  free(wide);
  ck_assert_int_eq(check_node(DYNQ_OP_DEFORM_CONV, (dynq__attr_t[]){AI("spatial", 3)}, 1),
                   DYNQ_EGRAPH);
  ck_assert_int_eq(check_node(DYNQ_OP_DEFORM_CONV,
                              (dynq__attr_t[]){AI("spatial", 2), AI("offset_group", 0)}, 2),
                   DYNQ_EGRAPH);
  ck_assert_int_eq(check_node(DYNQ_OP_DEFORM_CONV,
                              (dynq__attr_t[]){AI("spatial", 2), AI("pad_begin1", -1)}, 2),
                   DYNQ_EGRAPH);
}
END_TEST

/* DeformConv's taps outside the image are never read: an empty image
 * padded to one output position gives the bias (not a read of no pixel);
 * an Inf pixel does not turn a position sampled wholly outside into NaN
 * (0 x Inf); the mask multiplies the sample, so a NaN mask there is NaN. */
START_TEST(deform_conv_outside) {
  float w1[1] = {2}, off0[2] = {0, 0}, bias[1] = {0.5f};
  dynq__tensor_t X0 = tf(4, (int64_t[]){1, 1, 0, 1}, NULL), W = tf(4, (int64_t[]){1, 1, 1, 1}, w1),
                 O1 = tf(4, (int64_t[]){1, 2, 1, 1}, off0), B = tf(1, (int64_t[]){1}, bias), o;
  const dynq__attr_t pad[] = {AI("spatial", 2), AI("pad_begin0", 1)};
  const dynq__tensor_t *in[5] = {&X0, &W, &O1, &B, NULL};
  ck_assert_int_eq(run_k(DYNQ_OP_DEFORM_CONV, pad, 2, 4, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 1}, (float[]){0.5f}, 0);
  dynq__tensor_clear(&o);
  /* X [1, 1, 2, 2] with an Inf at (0, 0); position (1, 1) sampled at
   * (1 + 5, 1 + 5), and position (0, 1) at (0.5, 1): rows 0 and 1 of
   * column 1 (the Inf has weight 0 there and is not a tap) */
  float x[4] = {INFINITY, 1, 2, 3}, off[8] = {0, 0.5f, 0, 5, 0, 0, 0, 5};
  float mk[4] = {1, 1, 1, NAN};
  dynq__tensor_t X = tf(4, (int64_t[]){1, 1, 2, 2}, x), O = tf(4, (int64_t[]){1, 2, 2, 2}, off),
                 M = tf(4, (int64_t[]){1, 1, 2, 2}, mk);
  const dynq__tensor_t *in2[5] = {&X, &W, &O, &B, NULL};
  ck_assert_int_eq(run_k(DYNQ_OP_DEFORM_CONV, pad, 1, 4, 1, in2, &o), 0);
  const float *y = o.data;
  ck_assert(isinf(y[0]) && y[0] > 0);
  ck_assert_msg(fabsf(y[1] - (2 * 2.0f + 0.5f)) < 1e-6f, "%g", y[1]);
  ck_assert_msg(fabsf(y[2] - (2 * 2.0f + 0.5f)) < 1e-6f, "%g", y[2]);
  ck_assert_msg(y[3] == 0.5f, "a position outside the image: %g, not the bias", y[3]);
  dynq__tensor_clear(&o);
  in2[4] = &M;
  ck_assert_int_eq(run_k(DYNQ_OP_DEFORM_CONV, pad, 1, 5, 1, in2, &o), 0);
  y = o.data;
  ck_assert_msg(isnan(y[3]), "a NaN mask over no pixel: %g", y[3]);
  dynq__tensor_clear(&o);
}
END_TEST

/* Attention with V's head size 0: Y is empty, but qk_matmul_output is
 * [B, Hq, Sq, T] and must hold the scores (not uninitialized memory). */
START_TEST(attention23_empty_v) {
  float q[2] = {1, 2}, k[4] = {3, 4, 5, 6};
  dynq__tensor_t Q = tf(4, (int64_t[]){1, 1, 1, 2}, q), K = tf(4, (int64_t[]){1, 1, 2, 2}, k),
                 V = tf(4, (int64_t[]){1, 1, 2, 0}, NULL), o[4];
  const dynq__attr_t sc[] = {{.name = "scale", .type = DYNQ_ATTR_FLOAT, .f = 0.5f}};
  const dynq__tensor_t *in[3] = {&Q, &K, &V};
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, sc, 1, 3, 4, in, o), 0);
  ck_assert(o[0].rank == 4 && o[0].dims[3] == 0);
  expect(&o[3], 4, (int64_t[]){1, 1, 1, 2}, (float[]){5.5f, 8.5f}, 1e-6f);
  for (int i = 0; i < 4; i++) dynq__tensor_clear(&o[i]);
}
END_TEST

/* RotaryEmbedding by hand: one head of 4 values [1 2 3 4] turned by a
 * quarter turn (cos 0, sin 1) on pairs (1, 3) (2, 4) gives [-3 -4 1 2],
 * interleaved pairs (1, 2) (3, 4) give [-2 1 -4 3]; rotary_embedding_dim 2
 * turns only the first pair; a position past the cache, caches of the
 * wrong shape, a 3-D input without num_heads, an odd dimension and a
 * canceled run are refused. */
START_TEST(rotary_op) {
  float x[4] = {1, 2, 3, 4}, c0[2] = {0, 0}, s1[2] = {1, 1}, cc[4] = {1, 1, 0, 0},
        ss[4] = {0, 0, 1, 1};
  int64_t p1[1] = {1};
  dynq__tensor_t X = tf(4, (int64_t[]){1, 1, 1, 4}, x), C = tf(3, (int64_t[]){1, 1, 2}, c0),
                 S = tf(3, (int64_t[]){1, 1, 2}, s1), o;
  const dynq__tensor_t *in[4] = {&X, &C, &S, NULL};
  ck_assert_int_eq(run_k(DYNQ_OP_ROTARY, NULL, 0, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 4}, (float[]){-3, -4, 1, 2}, 0);
  dynq__tensor_clear(&o);
  const dynq__attr_t il[] = {AI("interleaved", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_ROTARY, il, 1, 3, 1, in, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 4}, (float[]){-2, 1, -4, 3}, 0);
  dynq__tensor_clear(&o);
  /* positions: row 1 of a [2, 2] cache is the quarter turn */
  dynq__tensor_t CC = tf(2, (int64_t[]){2, 2}, cc), SS = tf(2, (int64_t[]){2, 2}, ss),
                 P = ti64s(2, (int64_t[]){1, 1}, p1);
  const dynq__tensor_t *pin[4] = {&X, &CC, &SS, &P};
  ck_assert_int_eq(run_k(DYNQ_OP_ROTARY, NULL, 0, 4, 1, pin, &o), 0);
  expect(&o, 4, (int64_t[]){1, 1, 1, 4}, (float[]){-3, -4, 1, 2}, 0);
  dynq__tensor_clear(&o);
  /* rotary dim 2 of 4, 3-D input with num_heads 1: pair (1, 2) turns, 3 4 stay */
  dynq__tensor_t X3 = tf(3, (int64_t[]){1, 1, 4}, x), C1 = tf(3, (int64_t[]){1, 1, 1}, c0),
                 S1 = tf(3, (int64_t[]){1, 1, 1}, s1);
  const dynq__attr_t part[] = {AI("num_heads", 1), AI("rotary_embedding_dim", 2)};
  const dynq__tensor_t *in3[4] = {&X3, &C1, &S1, NULL};
  ck_assert_int_eq(run_k(DYNQ_OP_ROTARY, part, 2, 3, 1, in3, &o), 0);
  expect(&o, 3, (int64_t[]){1, 1, 4}, (float[]){-2, 1, 3, 4}, 0);
  dynq__tensor_clear(&o);
  /* refused */
  int64_t far[1] = {2};
  dynq__tensor_t PF = ti64s(2, (int64_t[]){1, 1}, far);
  pin[3] = &PF;
  ck_assert_int_eq(run_k(DYNQ_OP_ROTARY, NULL, 0, 4, 1, pin, &o), DYNQ_EDATA);
  ck_assert_msg(strstr(err, "node 't' (RotaryEmbedding): position_ids[0][0] = 2 is not within "
                            "the 2 cached positions"), "%s", err);
  ck_assert_ptr_null(o.data);
  ck_assert_int_eq(run_k(DYNQ_OP_ROTARY, NULL, 0, 3, 1, in3, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "needs num_heads dividing its last axis"), "%s", err);
  in[1] = &CC;
  ck_assert_int_eq(run_k(DYNQ_OP_ROTARY, NULL, 0, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "cos_cache [2, 2] and sin_cache [1, 1, 2]"), "%s", err);
  in[1] = &C;
  const dynq__attr_t odd[] = {AI("rotary_embedding_dim", 6)};
  ck_assert_int_eq(run_k(DYNQ_OP_ROTARY, odd, 1, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "rotating 6 of a head's 4 values"), "%s", err);
  ck_assert_int_eq(run_canceled(DYNQ_OP_ROTARY, NULL, 0, 3, in, &o), 0); /* one row: no poll */
  dynq__tensor_clear(&o);
  ck_assert_int_eq(check_node(DYNQ_OP_ROTARY, (dynq__attr_t[]){AI("rotary_embedding_dim", 3)}, 1),
                   DYNQ_EGRAPH);
  ck_assert_int_eq(check_node(DYNQ_OP_ROTARY, (dynq__attr_t[]){AI("interleaved", 2)}, 1),
                   DYNQ_EGRAPH);
  ck_assert_int_eq(check_node(DYNQ_OP_ROTARY, (dynq__attr_t[]){AI("num_heads", -1)}, 1),
                   DYNQ_EGRAPH);
}
END_TEST

/* Attention (opset 23) by hand: one query [1 0] over keys [1 0], [0 0]
 * with scale ln 3 scores ln 3 and 0, softmax [3/4 1/4], so values [1],
 * [3] give 1.5; a bool mask hiding key 0 gives 3; is_causal without past
 * keeps key 0 only (1), with key 0 as the past it keeps both (1.5: the
 * bottom-right alignment); the qk output in mode 3 is the softmax.  Then
 * Q, K, V of mixed ranks, heads that do not divide, a mask that does not
 * broadcast, a past of the wrong head count, a 3-D input without the
 * head counts and a head over the run's byte cap are refused naming the
 * node. */
START_TEST(attention23_op) {
  float q[2] = {1, 0}, k[4] = {1, 0, 0, 0}, v[2] = {1, 3}, k0[2] = {1, 0}, k1[2] = {0, 0},
        v0[1] = {1}, v1[1] = {3};
  uint8_t mk[2] = {0, 1};
  dynq__tensor_t Q = tf(4, (int64_t[]){1, 1, 1, 2}, q), K = tf(4, (int64_t[]){1, 1, 2, 2}, k),
                 V = tf(4, (int64_t[]){1, 1, 2, 1}, v), o[4];
  dynq__tensor_t M = {.dtype = DYNQ_DT_U8, .rank = 2, .dims = {1, 2}, .data = mk};
  const dynq__attr_t sc[] = {{.name = "scale", .type = DYNQ_ATTR_FLOAT, .f = logf(3.0f)},
                             AI("is_causal", 0), AI("qk_matmul_output_mode", 3)};
  const dynq__attr_t cz[] = {{.name = "scale", .type = DYNQ_ATTR_FLOAT, .f = logf(3.0f)},
                             AI("is_causal", 1)};
  const dynq__tensor_t *in[6] = {&Q, &K, &V, NULL, NULL, NULL};
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, sc, 3, 3, 4, in, o), 0);
  expect(&o[0], 4, (int64_t[]){1, 1, 1, 1}, (float[]){1.5f}, 1e-6f);
  expect(&o[1], 4, (int64_t[]){1, 1, 2, 2}, k, 0);
  expect(&o[3], 4, (int64_t[]){1, 1, 1, 2}, (float[]){0.75f, 0.25f}, 1e-6f);
  for (int i = 0; i < 4; i++) dynq__tensor_clear(&o[i]);
  in[3] = &M;
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, sc, 1, 4, 1, in, o), 0);
  expect(&o[0], 4, (int64_t[]){1, 1, 1, 1}, (float[]){3}, 1e-6f);
  dynq__tensor_clear(&o[0]);
  in[3] = NULL;
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, cz, 2, 3, 1, in, o), 0);
  expect(&o[0], 4, (int64_t[]){1, 1, 1, 1}, (float[]){1}, 1e-6f);
  dynq__tensor_clear(&o[0]);
  dynq__tensor_t K0 = tf(4, (int64_t[]){1, 1, 1, 2}, k0), K1 = tf(4, (int64_t[]){1, 1, 1, 2}, k1),
                 V0 = tf(4, (int64_t[]){1, 1, 1, 1}, v0), V1 = tf(4, (int64_t[]){1, 1, 1, 1}, v1);
  const dynq__tensor_t *pin[6] = {&Q, &K1, &V1, NULL, &K0, &V0};
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, cz, 2, 6, 3, pin, o), 0);
  expect(&o[0], 4, (int64_t[]){1, 1, 1, 1}, (float[]){1.5f}, 1e-6f);
  expect(&o[2], 4, (int64_t[]){1, 1, 2, 1}, v, 0);
  for (int i = 0; i < 3; i++) dynq__tensor_clear(&o[i]);
  /* refused */
  dynq__tensor_t K3 = tf(3, (int64_t[]){1, 2, 2}, k);
  in[1] = &K3;
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, NULL, 0, 3, 1, in, o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (Attention): Q [1, 1, 1, 2], K [1, 2, 2] and V [1, 1, 2, 1] "
                            "must all be 4-D"), "%s", err);
  float q3[6] = {0};
  dynq__tensor_t Q3 = tf(4, (int64_t[]){1, 3, 1, 2}, q3), K2 = tf(4, (int64_t[]){1, 2, 1, 2}, k),
                 V2 = tf(4, (int64_t[]){1, 2, 1, 1}, v);
  const dynq__tensor_t *hin[3] = {&Q3, &K2, &V2};
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, NULL, 0, 3, 1, hin, o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (Attention): 3 query heads are not a multiple of 2"), "%s",
                err);
  in[1] = &K;
  uint8_t mk4[4] = {1, 1, 1, 1};
  dynq__tensor_t M2 = {.dtype = DYNQ_DT_U8, .rank = 4, .dims = {1, 1, 2, 2}, .data = mk4};
  in[3] = &M2;
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, NULL, 0, 4, 1, in, o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (Attention): attn_mask [1, 1, 2, 2] does not broadcast to "
                            "[B, Hq, Sq, T] = [1, 1, 1, 2]"), "%s", err);
  in[3] = NULL;
  pin[4] = &K2;
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, NULL, 0, 6, 1, pin, o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (Attention): past_key [1, 2, 1, 2] and past_value "), "%s",
                err);
  pin[4] = &K0;
  pin[5] = NULL;
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, NULL, 0, 5, 1, pin, o), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "past_key and past_value go together"), "%s", err);
  dynq__tensor_t Q3d = tf(3, (int64_t[]){1, 1, 2}, q), K3d = tf(3, (int64_t[]){1, 2, 2}, k),
                 V3d = tf(3, (int64_t[]){1, 2, 1}, v);
  const dynq__tensor_t *in3[3] = {&Q3d, &K3d, &V3d};
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, NULL, 0, 3, 1, in3, o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (Attention): 3-D inputs need q_num_heads and kv_num_heads"),
                "%s", err);
  const dynq__attr_t h11[] = {AI("q_num_heads", 1), AI("kv_num_heads", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, h11, 2, 3, 1, in3, o), 0);
  expect(&o[0], 3, (int64_t[]){1, 1, 1}, (float[]){1.0f + 2.0f / (1.0f + expf(1 / sqrtf(2)))},
         1e-6f);
  dynq__tensor_clear(&o[0]);
  /* 4096 keys of 2 values: a head's present key is 32 KB, over a 16 KB cap */
  static float big[4096 * 2];
  dynq__tensor_t KB = tf(4, (int64_t[]){1, 1, 4096, 2}, big), VB = tf(4, (int64_t[]){1, 1, 4096, 1}, big);
  const dynq__tensor_t *bin[3] = {&Q, &KB, &VB};
  const int64_t saved = g_max_bytes;
  g_max_bytes = 16384;
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, NULL, 0, 3, 1, bin, o), DYNQ_ELIMIT);
  ck_assert_msg(strstr(err, "node 't' (Attention): a head's present key, value and scores"),
                "%s", err);
  ck_assert_ptr_null(o[0].data);
  /* 1500 keys: K 12 KB, V and the scores 6 KB each, every part under the
   * 16 KB cap but the head's block of them over it */
  dynq__tensor_t KM = tf(4, (int64_t[]){1, 1, 1500, 2}, big), VM = tf(4, (int64_t[]){1, 1, 1500, 1}, big);
  bin[1] = &KM, bin[2] = &VM;
  ck_assert_int_eq(run_k(DYNQ_OP_ATTENTION23, NULL, 0, 3, 1, bin, o), DYNQ_ELIMIT);
  ck_assert_msg(strstr(err, "of 6000 elements (24000 bytes) is over the limit"), "%s", err);
  g_max_bytes = saved;
  ck_assert_int_eq(check_node(DYNQ_OP_ATTENTION23, (dynq__attr_t[]){AI("qk_matmul_output_mode", 7)},
                              1), DYNQ_EGRAPH);
  ck_assert_int_eq(check_node(DYNQ_OP_ATTENTION23,
                              (dynq__attr_t[]){AI("q_num_heads", 4), AI("kv_num_heads", 3)}, 2),
                   DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "q_num_heads 4 is not a multiple of kv_num_heads 3"), "%s", err);
  ck_assert_int_eq(check_node(DYNQ_OP_ATTENTION23, (dynq__attr_t[]){AI("is_causal", 2)}, 1),
                   DYNQ_EGRAPH);
}
END_TEST

/* Transpose (rows copied or gathered after merging axes) against a naive
 * per-element index for every permutation of rank 1 to 4 over shapes with
 * axes of 1, and three element sizes; and the reductions' fast paths
 * (reduced axes in one block) against float64 references, with the
 * generic path (axes apart) and NaNs for ReduceMax / ReduceMin. */
START_TEST(transpose_and_reduce_paths) {
  static const int64_t shapes[][4] = {{3, 1, 4, 5}, {2, 3, 1, 7}, {1, 6, 2, 3}, {4, 5, 3, 2}};
  static const dynq_dtype_t dts[] = {DYNQ_DT_F32, DYNQ_DT_I64, DYNQ_DT_U8};
  for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++)
    for (int rank = 1; rank <= 4; rank++)
      for (size_t ti = 0; ti < 3; ti++) {
        dynq__tensor_t X;
        ck_assert_int_eq(dynq__tensor_alloc(&X, dts[ti], rank, shapes[si]), 0);
        size_t es = dynq__dtype_size(dts[ti]);
        int64_t n = dynq__tensor_numel(&X);
        for (int64_t i = 0; i < n; i++) dynq__store_i(X.data, dts[ti], i, (i * 7 + 3) % 251);
        int64_t perm[4] = {0, 1, 2, 3};
        for (int k = 0; k < 24; k++) {  /* the permutations of rank axes, by next_permutation */
          dynq__tensor_t P = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {rank}, .data = perm}, o;
          const dynq__tensor_t *in[2] = {&X, &P};
          ck_assert_int_eq(run(DYNQ_OP_TRANSPOSE, NULL, 0, in, &o), 0);
          int64_t idx[4] = {0};
          for (int64_t i = 0; i < n; i++) {  /* out index i -> idx -> source offset */
            int64_t src = 0;
            for (int d = rank - 1; d >= 0; d--) {
              int64_t st = 1;
              for (int q = perm[d] + 1; q < rank; q++) st *= shapes[si][q];
              src += idx[d] * st;
            }
            ck_assert_msg(memcmp((char *)o.data + i * es, (char *)X.data + src * es, es) == 0,
                          "shape %zu rank %d perm %lld%lld%lld%lld dtype %zu: element %lld",
                          si, rank, (long long)perm[0], (long long)perm[1], (long long)perm[2],
                          (long long)perm[3], ti, (long long)i);
            for (int d = rank - 1; d >= 0; d--) {
              if (++idx[d] < o.dims[d]) break;
              idx[d] = 0;
            }
          }
          dynq__tensor_clear(&o);
          /* next permutation of perm[0..rank) */
          int a = rank - 2;
          while (a >= 0 && perm[a] > perm[a + 1]) a--;
          if (a < 0) break;
          int b = rank - 1;
          while (perm[b] < perm[a]) b--;
          int64_t t = perm[a];
          perm[a] = perm[b], perm[b] = t;
          for (int l = a + 1, h = rank - 1; l < h; l++, h--) t = perm[l], perm[l] = perm[h], perm[h] = t;
        }
        dynq__tensor_clear(&X);
      }

  /* reductions over [3, 4, 5, 6]: blocks (fast) and axes apart (generic) */
  enum { A = 3, B = 4, Cc = 5, D = 6 };
  static float x[A * B * Cc * D];
  uint32_t r = 99;
  for (int i = 0; i < A * B * Cc * D; i++) {
    r = r * 1664525u + 1013904223u;
    x[i] = (float)((int32_t)(r >> 8) % 20001) / 997.0f;
  }
  int64_t xd[4] = {A, B, Cc, D};
  static const int64_t axsets[][3] = {{3, -1}, {2, 3, -1}, {1, 2, -1}, {0, -1}, {1, 3, -1},
                                      {0, 2, -1}, {0, 1, 3}};
  static const int ops[] = {DYNQ_OP_REDUCE_SUM, DYNQ_OP_REDUCE_MEAN, DYNQ_OP_REDUCE_L1,
                            DYNQ_OP_REDUCE_L2, DYNQ_OP_REDUCE_MAX, DYNQ_OP_REDUCE_MIN};
  for (int withnan = 0; withnan < 2; withnan++) {
    if (withnan) x[2 * D + 3] = NAN, x[B * Cc * D + 7] = NAN;
    dynq__tensor_t X = tf(4, xd, x), o;
    for (size_t ai = 0; ai < sizeof(axsets) / sizeof(axsets[0]); ai++) {
      int64_t axv[3];
      int na = 0;
      for (int k = 0; k < 3 && axsets[ai][k] >= 0; k++) axv[na++] = axsets[ai][k];
      dynq__tensor_t AX = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {na}, .data = axv};
      const dynq__tensor_t *in[2] = {&X, &AX};
      for (size_t oi = 0; oi < sizeof(ops) / sizeof(ops[0]); oi++) {
        dynq__attr_t kd = AI("keepdims", 1);
        ck_assert_msg(run_n(ops[oi], &kd, 1, 2, in, &o) == 0, "%s", err);
        int red[4] = {0};
        for (int k = 0; k < na; k++) red[axv[k]] = 1;
        int64_t ost[4], e = 1;
        for (int d = 3; d >= 0; d--) ost[d] = red[d] ? 0 : e, e *= red[d] ? 1 : xd[d];
        int64_t no = dynq__tensor_numel(&o);
        double want[A * B * Cc * D], cnt = (double)(A * B * Cc * D) / (double)no;
        for (int64_t j = 0; j < no; j++)
          want[j] = ops[oi] == DYNQ_OP_REDUCE_MAX ? -INFINITY
                    : ops[oi] == DYNQ_OP_REDUCE_MIN ? INFINITY : 0;
        for (int64_t i = 0; i < A * B * Cc * D; i++) {
          int64_t j = 0, rem = i;
          for (int d = 3; d >= 0; d--) j += (rem % xd[d]) * ost[d], rem /= xd[d];
          double v = x[i];
          switch (ops[oi]) {
            case DYNQ_OP_REDUCE_L1: want[j] += fabs(v); break;
            case DYNQ_OP_REDUCE_L2: want[j] += v * v; break;
            case DYNQ_OP_REDUCE_MAX: want[j] = v != v || want[j] != want[j] ? NAN : fmax(want[j], v); break;
            case DYNQ_OP_REDUCE_MIN: want[j] = v != v || want[j] != want[j] ? NAN : fmin(want[j], v); break;
            default: want[j] += v; break;
          }
        }
        for (int64_t j = 0; j < no; j++) {
          double w = ops[oi] == DYNQ_OP_REDUCE_MEAN ? want[j] / cnt
                     : ops[oi] == DYNQ_OP_REDUCE_L2 ? sqrt(want[j]) : want[j];
          float got = ((float *)o.data)[j], wf = (float)w;
          ck_assert_msg(got == wf || (got != got && wf != wf) ||
                            fabs(got - w) <= 2e-7 * fabs(w),
                        "op %d axes set %zu nan %d: [%lld] %.9g, want %.9g", ops[oi], ai,
                        withnan, (long long)j, got, w);
        }
        dynq__tensor_clear(&o);
      }
    }
  }
}
END_TEST

/* Expand and Where run row by row (the last axis copied, repeated or
 * picked with each operand's stride): against a naive broadcast index,
 * for float32 and int64, operands broadcast on the last axis or not. */
START_TEST(expand_where_rows) {
  float xf[20];  /* Expand reads 15 of them, Where's X [4, 5] all */
  int64_t xi[15];
  for (int i = 0; i < 20; i++) xf[i] = (float)i * 0.5f - 3.0f;
  for (int i = 0; i < 15; i++) xi[i] = 100 + i;
  static const int64_t xs[][3] = {{3, 1, 5}, {3, 4, 1}, {1, 1, 1}};
  int64_t sh[4] = {2, 3, 4, 5};
  for (int dt = 0; dt < 2; dt++)
    for (int k = 0; k < 3; k++) {
      dynq__tensor_t X = {.dtype = dt ? DYNQ_DT_I64 : DYNQ_DT_F32, .rank = 3,
                          .dims = {xs[k][0], xs[k][1], xs[k][2]}, .data = dt ? (void *)xi : xf};
      dynq__tensor_t S = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {4}, .data = sh}, o;
      const dynq__tensor_t *in[2] = {&X, &S};
      ck_assert_msg(run_n(DYNQ_OP_EXPAND, NULL, 0, 2, in, &o) == 0, "%s", err);
      ck_assert(o.rank == 4 && o.dims[0] == 2 && o.dims[3] == 5);
      for (int64_t i = 0; i < 120; i++) {
        int64_t c = i / 20 % 3, h = i / 5 % 4, w = i % 5;
        int64_t src = (c % xs[k][0]) * xs[k][1] * xs[k][2] + (h % xs[k][1]) * xs[k][2] + w % xs[k][2];
        ck_assert_msg(dt ? ((int64_t *)o.data)[i] == xi[src] : ((float *)o.data)[i] == xf[src],
                      "Expand case %d dtype %d: element %lld", k, dt, (long long)i);
      }
      dynq__tensor_clear(&o);
    }
  /* Where(cond [4, 1], x [1, 5], y [] ) and Where(cond [4, 5], x [4, 5], y [4, 1]) */
  uint8_t cnd[20];
  for (int i = 0; i < 20; i++) cnd[i] = (uint8_t)((i * 7) % 3 == 0);
  float yv[4] = {-1, -2, -3, -4};
  for (int form = 0; form < 2; form++) {
    dynq__tensor_t Cd = {.dtype = DYNQ_DT_U8, .rank = 2, .dims = {4, form ? 5 : 1}, .data = cnd};
    dynq__tensor_t X = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {form ? 4 : 1, 5}, .data = xf};
    dynq__tensor_t Y = {.dtype = DYNQ_DT_F32, .rank = form ? 2 : 0, .dims = {4, 1}, .data = yv}, o;
    const dynq__tensor_t *in[3] = {&Cd, &X, &Y};
    ck_assert_msg(run_n(DYNQ_OP_WHERE, NULL, 0, 3, in, &o) == 0, "%s", err);
    ck_assert(o.rank == 2 && o.dims[0] == 4 && o.dims[1] == 5);
    for (int i = 0; i < 20; i++) {
      int r = i / 5, q = i % 5;
      float want = cnd[form ? i : r] ? xf[form ? i : q] : yv[form ? r : 0];
      ck_assert_msg(((float *)o.data)[i] == want, "Where form %d: [%d] %g, want %g", form, i,
                    ((float *)o.data)[i], want);
    }
    dynq__tensor_clear(&o);
  }
}
END_TEST

#define AFL(nm, v) {.name = nm, .type = DYNQ_ATTR_FLOAT, .f = (v)}

/* GroupNormalization and RMSNormalization: values by hand (both forms of
 * GroupNormalization's scale and bias, a broadcast RMS scale), hostile
 * data (NaN, inf, 1e30, 3e38, a group of equal values, rows of zeros,
 * empty axes), splits over threads giving the same bits, wrong shapes
 * and attribute values refused with a message naming them. */
START_TEST(group_rms_norm) {
  /* X [1, 4, 2]: channels [1, 3] [5, 7] | [0, 0] [2, -2]; two groups:
   * mean 4, var 5; mean 0, var 2 (epsilon 0: exact) */
  float x[8] = {1, 3, 5, 7, 0, 0, 2, -2};
  float gs[2] = {2, -1}, gb[2] = {10, 0.5f}, cs[4] = {1, 2, 3, 4}, cb[4] = {0, 1, 2, 3};
  dynq__tensor_t X = tf(3, (int64_t[]){1, 4, 2}, x), S = tf(1, (int64_t[]){2}, gs),
                 B = tf(1, (int64_t[]){2}, gb), o;
  const dynq__tensor_t *in[3] = {&X, &S, &B};
  const dynq__attr_t g2[] = {AI("num_groups", 2), AFL("epsilon", 0)};
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g2, 2, 3, 1, in, &o), 0);
  const float r5 = 1 / sqrtf(5), r2 = 1 / sqrtf(2);
  expect(&o, 3, (int64_t[]){1, 4, 2},
         (float[]){-3 * r5 * 2 + 10, -1 * r5 * 2 + 10, 1 * r5 * 2 + 10, 3 * r5 * 2 + 10, 0.5f,
                   0.5f, -2 * r2 + 0.5f, 2 * r2 + 0.5f},
         2e-6f);
  dynq__tensor_clear(&o);
  /* opset 21's form: one scale and bias per channel */
  dynq__tensor_t CS = tf(1, (int64_t[]){4}, cs), CB = tf(1, (int64_t[]){4}, cb);
  const dynq__tensor_t *cin[3] = {&X, &CS, &CB};
  const dynq__attr_t g2c[] = {AI("num_groups", 2), AFL("epsilon", 0), AI("per_channel", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g2c, 3, 3, 1, cin, &o), 0);
  expect(&o, 3, (int64_t[]){1, 4, 2},
         (float[]){-3 * r5, -1 * r5, 2 * r5 + 1, 6 * r5 + 1, 2, 2, 4 * 2 * r2 + 3,
                   -4 * 2 * r2 + 3},
         2e-6f);
  dynq__tensor_clear(&o);
  /* the per-group form handed per-channel scales (and the reverse): refused
   * naming the shapes and the form */
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g2, 2, 3, 1, cin, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (GroupNormalization): scale [4] and bias [4]: [2] "
                            "expected (one per group: opset 18's form") != NULL, "%s", err);
  ck_assert_ptr_null(o.data);
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g2c, 3, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "[4] expected (one per channel: opset 21's form") != NULL, "%s", err);
  /* num_groups 1 and 4 (= C): the whole sample, each channel */
  const dynq__attr_t g4c[] = {AI("num_groups", 4), AFL("epsilon", 0), AI("per_channel", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g4c, 3, 3, 1, cin, &o), 0);
  /* channel 2 is [0, 0]: zero variance, epsilon 0: 0 x inf = NaN, as ONNX's
   * formula gives; the others +-1 scaled */
  const float *gy = o.data;
  ck_assert(gy[0] == -1 && gy[1] == 1 && gy[2] == -1 && gy[3] == 3 && isnan(gy[4]) &&
            gy[6] == 7 && gy[7] == -1);
  dynq__tensor_clear(&o);
  /* a group of equal values with the default epsilon: the bias exactly */
  const dynq__attr_t g4[] = {AI("num_groups", 4), AI("per_channel", 1)};
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g4, 2, 3, 1, cin, &o), 0);
  ck_assert(((float *)o.data)[4] == 2 && ((float *)o.data)[5] == 2);
  dynq__tensor_clear(&o);
  /* rank 2: X [2, 4] as [N, C], groups of two values ([0, 0]: the bias) */
  dynq__tensor_t X2 = tf(2, (int64_t[]){2, 4}, x);
  const dynq__tensor_t *in2[3] = {&X2, &S, &B};
  const dynq__attr_t g2e[] = {AI("num_groups", 2)};
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g2e, 1, 3, 1, in2, &o), 0);
  expect(&o, 2, (int64_t[]){2, 4}, (float[]){8, 12, 1.5f, -0.5f, 10, 10, -0.5f, 1.5f}, 2e-5f);
  ck_assert(((float *)o.data)[4] == 10 && ((float *)o.data)[5] == 10);
  dynq__tensor_clear(&o);
  /* hostile values: NaN poisons its group only; inf makes its group NaN;
   * 1e30 and 3e38 are fine in double (+-1 times the scale, plus bias) */
  float hx[8] = {NAN, 1, 2, 3, 1e30f, -1e30f, 3e38f, -3e38f};
  dynq__tensor_t H = tf(3, (int64_t[]){1, 4, 2}, hx);
  in[0] = &H;
  const dynq__attr_t g2d[] = {AI("num_groups", 2)};
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g2d, 1, 3, 1, in, &o), 0);
  gy = o.data;
  for (int i = 0; i < 4; i++) ck_assert(isnan(gy[i]));
  /* group 1: mean 0, var (2e60 + 1.8e77) / 4: each value over the std */
  double sd = sqrt((2.0 * 1e30f * 1e30f + 2.0 * 3e38f * 3e38f) / 4);
  ck_assert_float_eq_tol(gy[6], (float)(3e38f / sd * -1 + 0.5), 1e-6f);
  ck_assert_float_eq_tol(gy[4], (float)(1e30f / sd * -1 + 0.5), 1e-6f);
  ck_assert(isfinite(gy[5]) && isfinite(gy[7]));
  dynq__tensor_clear(&o);
  hx[0] = 1, hx[4] = INFINITY;
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g2d, 1, 3, 1, in, &o), 0);
  gy = o.data;
  ck_assert(isfinite(gy[0]) && isfinite(gy[3]));
  for (int i = 4; i < 8; i++) ck_assert(isnan(gy[i]));
  dynq__tensor_clear(&o);
  /* empty: a spatial axis of 0, a batch of 0 */
  dynq__tensor_t E = tf(3, (int64_t[]){1, 4, 0}, x);
  in[0] = &E;
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g2d, 1, 3, 1, in, &o), 0);
  ck_assert(o.rank == 3 && o.dims[1] == 4 && o.dims[2] == 0);
  dynq__tensor_clear(&o);
  E.dims[0] = 0, E.dims[2] = 2;
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g2d, 1, 3, 1, in, &o), 0);
  ck_assert(o.rank == 3 && o.dims[0] == 0);
  dynq__tensor_clear(&o);
  /* shapes: num_groups not dividing C (3, 2^40), rank 1, wrong lengths */
  in[0] = &X;
  const dynq__attr_t g3[] = {AI("num_groups", 3)};
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g3, 1, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (GroupNormalization): num_groups 3 does not divide the 4 "
                            "channels of X [1, 4, 2]") != NULL, "%s", err);
  const dynq__attr_t gh[] = {AI("num_groups", (int64_t)1 << 40)};
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, gh, 1, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "num_groups 1099511627776 does not divide") != NULL, "%s", err);
  dynq__tensor_t X1 = tf(1, (int64_t[]){8}, x);
  in[0] = &X1;
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g2d, 1, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "X has shape [8], expected [N, C, ...]") != NULL, "%s", err);
  in[0] = &X;
  S.dims[0] = 3;
  ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, g2d, 1, 3, 1, in, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "scale [3] and bias [2]: [2] expected") != NULL, "%s", err);
  S.dims[0] = 2;
  /* attributes: refused at load, and by a node run on its own */
  static const struct { dynq__attr_t a[2]; int n; const char *msg; } bad[] = {
      {{AI("num_groups", 0)}, 1, "num_groups 0: at least 1 expected"},
      {{AI("num_groups", -1)}, 1, "num_groups -1: at least 1 expected"},
      {{AFL("epsilon", 1)}, 1, "num_groups 0: at least 1 expected"}, /* absent */
      {{AI("num_groups", 2), AI("per_channel", 2)}, 2, "per_channel 2: 0 or 1 expected"},
      {{AI("num_groups", 2), AFL("epsilon", NAN)}, 2, "epsilon nan: a finite value >= 0"},
      {{AI("num_groups", 2), AFL("epsilon", -1e-5f)}, 2, "epsilon -1e-05: a finite value >= 0"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    ck_assert_int_eq(check_node(DYNQ_OP_GROUP_NORM, bad[k].a, bad[k].n), DYNQ_EGRAPH);
    ck_assert_msg(strstr(err, "node 'c' (GroupNormalization): ") != NULL &&
                      strstr(err, bad[k].msg) != NULL, "%s", err);
    ck_assert_int_eq(run_k(DYNQ_OP_GROUP_NORM, bad[k].a, bad[k].n, 3, 1, in, &o), DYNQ_EGRAPH);
    ck_assert_ptr_null(o.data);
  }

  /* RMSNormalization: rows [3, 4] (mean of squares 12.5) and [0, 0] (0:
   * the output 0), scale [1, 2] */
  float rx[4] = {3, 4, 0, 0}, rs[2] = {1, 2};
  dynq__tensor_t R = tf(2, (int64_t[]){2, 2}, rx), RS = tf(1, (int64_t[]){2}, rs);
  const dynq__tensor_t *rin[2] = {&R, &RS};
  ck_assert_int_eq(run_k(DYNQ_OP_RMS_NORM, NULL, 0, 2, 1, rin, &o), 0);
  const float rr = 1 / sqrtf(12.5f + 1e-5f);
  expect(&o, 2, (int64_t[]){2, 2}, (float[]){3 * rr, 8 * rr, 0, 0}, 1e-6f);
  ck_assert(((float *)o.data)[2] == 0 && ((float *)o.data)[3] == 0);
  dynq__tensor_clear(&o);
  /* axis 0 (everything: mean of squares 6.25), scale [2, 1] broadcast over
   * rows ([1, 2] against [2, 2]: the same scale for both rows) */
  const dynq__attr_t ax0[] = {AI("axis", 0), AFL("epsilon", 0)};
  RS = tf(2, (int64_t[]){1, 2}, rs);
  ck_assert_int_eq(run_k(DYNQ_OP_RMS_NORM, ax0, 2, 2, 1, rin, &o), 0);
  expect(&o, 2, (int64_t[]){2, 2}, (float[]){3 / 2.5f, 8 / 2.5f, 0, 0}, 1e-6f);
  dynq__tensor_clear(&o);
  /* X [2, 3, 2] over axes 1..: scale [3, 1] (one per middle index) */
  float bx[12] = {1, 1, 2, 2, 3, 3, -1, 1, -1, 1, -1, 1}, bs[3] = {1, 10, 100};
  dynq__tensor_t BX = tf(3, (int64_t[]){2, 3, 2}, bx), BS = tf(2, (int64_t[]){3, 1}, bs);
  const dynq__tensor_t *bin[2] = {&BX, &BS};
  const dynq__attr_t ax1[] = {AI("axis", 1), AFL("epsilon", 0)};
  ck_assert_int_eq(run_k(DYNQ_OP_RMS_NORM, ax1, 2, 2, 1, bin, &o), 0);
  const float q = 1 / sqrtf(28 / 6.0f);
  expect(&o, 3, (int64_t[]){2, 3, 2},
         (float[]){q, q, 20 * q, 20 * q, 300 * q, 300 * q, -1, 1, -10, 10, -100, 100}, 2e-5f);
  dynq__tensor_clear(&o);
  /* hostile rows: NaN poisons its row, inf gives NaN there and 0 beside,
   * 1e30 and 3e38 come out +-1 times the scale (double: no overflow) */
  float hr[8] = {NAN, 1, INFINITY, 2, 1e30f, -1e30f, 3e38f, 3e38f};
  dynq__tensor_t HR = tf(2, (int64_t[]){4, 2}, hr);
  RS = tf(1, (int64_t[]){2}, rs);
  rin[0] = &HR;
  ck_assert_int_eq(run_k(DYNQ_OP_RMS_NORM, NULL, 0, 2, 1, rin, &o), 0);
  const float *ry = o.data;
  ck_assert(isnan(ry[0]) && isnan(ry[1]) && isnan(ry[2]) && ry[3] == 0);
  ck_assert_float_eq_tol(ry[4], 1, 1e-6f);
  ck_assert_float_eq_tol(ry[5], -2, 2e-6f);
  ck_assert_float_eq_tol(ry[6], 1, 1e-6f);
  ck_assert_float_eq_tol(ry[7], 2, 2e-6f);
  dynq__tensor_clear(&o);
  /* empty rows and an empty batch */
  dynq__tensor_t RE = tf(2, (int64_t[]){0, 2}, rx);
  rin[0] = &RE;
  ck_assert_int_eq(run_k(DYNQ_OP_RMS_NORM, NULL, 0, 2, 1, rin, &o), 0);
  ck_assert(o.rank == 2 && o.dims[0] == 0);
  dynq__tensor_clear(&o);
  RE.dims[0] = 3, RE.dims[1] = 0;
  RS.dims[0] = 1;
  ck_assert_int_eq(run_k(DYNQ_OP_RMS_NORM, NULL, 0, 2, 1, rin, &o), 0);
  ck_assert(o.rank == 2 && o.dims[1] == 0);
  dynq__tensor_clear(&o);
  /* scales that do not broadcast: [3] against 2, [2, 2] reaching an
   * axis left of the normalized ones, rank above X's; axis out of range */
  rin[0] = &R;
  RS = tf(1, (int64_t[]){3}, bs);
  ck_assert_int_eq(run_k(DYNQ_OP_RMS_NORM, NULL, 0, 2, 1, rin, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (RMSNormalization): scale [3] does not broadcast to the "
                            "normalized shape of X [2, 2] (axis 1)") != NULL, "%s", err);
  RS = tf(2, (int64_t[]){2, 2}, rx);
  ck_assert_int_eq(run_k(DYNQ_OP_RMS_NORM, NULL, 0, 2, 1, rin, &o), DYNQ_ESHAPE);
  RS = tf(3, (int64_t[]){1, 1, 2}, rs);
  ck_assert_int_eq(run_k(DYNQ_OP_RMS_NORM, NULL, 0, 2, 1, rin, &o), DYNQ_ESHAPE);
  ck_assert_ptr_null(o.data);
  RS = tf(1, (int64_t[]){2}, rs);
  const dynq__attr_t ax2[] = {AI("axis", 2)};
  ck_assert_int_eq(run_k(DYNQ_OP_RMS_NORM, ax2, 1, 2, 1, rin, &o), DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 't' (RMSNormalization)") != NULL && strstr(err, "axis 2"),
                "%s", err);
  static const struct { dynq__attr_t a[1]; const char *msg; } rbad[] = {
      {{AI("axis", 100)}, "axis 100 is outside [-8, 8) for any rank"},
      {{AI("axis", -9)}, "axis -9 is outside"},
      {{AFL("epsilon", INFINITY)}, "epsilon inf: a finite value >= 0 expected"},
      {{AFL("epsilon", -2)}, "epsilon -2: a finite value >= 0 expected"},
  };
  for (size_t k = 0; k < sizeof rbad / sizeof rbad[0]; k++) {
    ck_assert_int_eq(check_node(DYNQ_OP_RMS_NORM, rbad[k].a, 1), DYNQ_EGRAPH);
    ck_assert_msg(strstr(err, "node 'c' (RMSNormalization): ") != NULL &&
                      strstr(err, rbad[k].msg) != NULL, "%s", err);
    ck_assert_int_eq(run_k(DYNQ_OP_RMS_NORM, rbad[k].a, 1, 2, 1, rin, &o), DYNQ_EGRAPH);
  }

  /* split over threads: the same bits as one thread (groups and rows are
   * independent) */
  enum { NB = 4, C = 16, P = 4096 };
  float *big = malloc(sizeof(float) * NB * C * P), *sc = malloc(sizeof(float) * C * P);
  float *bb = malloc(sizeof(float) * C);
  for (int i = 0; i < NB * C * P; i++) big[i] = (float)((i * 7919) % 1000) / 100.0f - 3;
  for (int i = 0; i < C * P; i++) sc[i] = 1 + (float)(i % 13) / 8;
  for (int i = 0; i < C; i++) bb[i] = (float)i;
  dynq__tensor_t BG = tf(3, (int64_t[]){NB, C, P}, big), BSC = tf(1, (int64_t[]){C}, sc),
                 BB = tf(1, (int64_t[]){C}, bb), o1, o4;
  const dynq__tensor_t *tin[3] = {&BG, &BSC, &BB};
  const dynq__attr_t g8[] = {AI("num_groups", 8), AI("per_channel", 1)};
  ck_assert_int_eq(run_x(DYNQ_OP_GROUP_NORM, g8, 2, 3, tin, &o1, &dynq__kernel_ref,
                         DYNQ_PRECISION_FP32, 1), 0);
  ck_assert_int_eq(run_x(DYNQ_OP_GROUP_NORM, g8, 2, 3, tin, &o4, &dynq__kernel_ref,
                         DYNQ_PRECISION_FP32, 4), 0);
  ck_assert(memcmp(o1.data, o4.data, sizeof(float) * NB * C * P) == 0);
  dynq__tensor_clear(&o1);
  dynq__tensor_clear(&o4);
  dynq__tensor_t RX = tf(2, (int64_t[]){NB * C, P}, big), RSC = tf(1, (int64_t[]){P}, sc);
  const dynq__tensor_t *rtin[2] = {&RX, &RSC};
  ck_assert_int_eq(run_x(DYNQ_OP_RMS_NORM, NULL, 0, 2, rtin, &o1, &dynq__kernel_ref,
                         DYNQ_PRECISION_FP32, 1), 0);
  ck_assert_int_eq(run_x(DYNQ_OP_RMS_NORM, NULL, 0, 2, rtin, &o4, &dynq__kernel_ref,
                         DYNQ_PRECISION_FP32, 4), 0);
  ck_assert(memcmp(o1.data, o4.data, sizeof(float) * NB * C * P) == 0);
  dynq__tensor_clear(&o1);
  dynq__tensor_clear(&o4);
  free(big);
  free(sc);
  free(bb);
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
  tcase_add_test(tc, matmul_epilogue);
  tcase_add_test(tc, gemm_attrs);
  tcase_add_test(tc, layernorm_rows);
  tcase_add_test(tc, add_layernorm_fused);
  tcase_add_test(tc, batchnorm_channels);
  tcase_add_test(tc, pools);
  tcase_add_test(tc, pool_rows_bit_exact);
  tcase_add_test(tc, avgpool_dilated);
  tcase_add_test(tc, pad_wrap);
  tcase_add_test(tc, bitwise);
  tcase_add_test(tc, center_crop_pad);
  tcase_add_test(tc, transpose_and_reduce_paths);
  tcase_add_test(tc, expand_where_rows);
  tcase_add_test(tc, hard_activations);
  tcase_add_test(tc, softmax_flatten);
  tcase_add_test(tc, qgather_rows);
  tcase_add_test(tc, qgather_threads);
  tcase_add_test(tc, strided_matmul_perms);
  tcase_add_test(tc, strided_matmul_gemm);
  tcase_add_test(tc, strided_matmul_int8);
  tcase_add_test(tc, masked_softmax_rows);
  tcase_add_test(tc, masked_softmax_threads);
  tcase_add_test(tc, attention_fused);
  tcase_add_test(tc, attention_refusals);
  tcase_add_test(tc, softmax_exp_accuracy);
  tcase_add_test(tc, gelu_accuracy);
  tcase_add_test(tc, resize_modes);
  tcase_add_test(tc, resize_opset18);
  tcase_add_test(tc, affine_grid);
  tcase_add_test(tc, col2im_op);
  tcase_add_test(tc, deform_conv_op);
  tcase_add_test(tc, deform_conv_outside);
  tcase_add_test(tc, rotary_op);
  tcase_add_test(tc, attention23_op);
  tcase_add_test(tc, attention23_empty_v);
  tcase_add_test(tc, convt_vs_definition);
  tcase_add_test(tc, einsum_forms);
  tcase_add_test(tc, tile_split);
  tcase_add_test(tc, argmax_reduce_cumsum);
  tcase_add_test(tc, zoo_ops_errors);
  tcase_add_test(tc, quant_ops);
  tcase_add_test(tc, cast_half);
  tcase_add_test(tc, depth_space);
  tcase_add_test(tc, gather_nd_argmin);
  tcase_add_test(tc, lrn_window);
  tcase_add_test(tc, small_float_ops);
  tcase_add_test(tc, onehot_depth);
  tcase_add_test(tc, eyelike_k);
  tcase_add_test(tc, mvn_axes);
  tcase_add_test(tc, lp_ops);
  tcase_add_test(tc, group_rms_norm);
  tcase_add_test(tc, nms_cases);
  tcase_add_test(tc, unique_compress);
  tcase_add_test(tc, misc_ops);
  tcase_add_test(tc, sample_ops);
  suite_add_tcase(s, tc);
  return tu_run_suite(s) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

