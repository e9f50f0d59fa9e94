/*
 * CNN epilogue fusions (models/fuse_cnn.c) against the unfused graph:
 * tests/fixtures/cnnfuse.onnx (make_cnnfuse.py) holds every tail the pass
 * moves into a Conv (scalar Mul/Add/Sub before and after the activation;
 * Relu, Clip, HardSigmoid, HardSwish, Sigmoid) on INT8 (3x3, 1x1) and
 * FP32 (depthwise) convs, and a conv whose output has two readers.
 *
 *  - the pass fuses exactly the 12 nodes it may, and leaves the shared
 *    conv output alone;
 *  - fused and --no-fuse models give the same bits on the INT8 and the
 *    FP32 path (the epilogue performs the replaced nodes' operations);
 *  - a Conv whose "act" names no activation is refused at load, naming
 *    the node;
 *  - a 1x1 QConv (GEMM rows read straight from the NCHW image) gives the
 *    bits of the per-row rule on explicitly transposed rows.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "kernels/kernels.h"
#include "graph.h"
#include "format.h"
#include "model.h"
#include "ops.h"
#include "testutil.h"

enum { N = 2, C = 8, H = 12, W = 20, YN = 2 * 16 * 6 * 10 };

static char *dir;

static void setup(void) { dir = tu_mkdtemp(); }
static void teardown(void) {
  if (dir) tu_rmtree(dir);
  free(dir);
  dir = NULL;
}

static void convert(const char *out, const char *flag, char **ret_log) {
  char src[4096];
  snprintf(src, sizeof src, "%s", tu_src("tests/fixtures/cnnfuse.onnx"));
  int rc = flag ? tu_quantize_log(ret_log, flag, src, out, (char *)NULL)
                : tu_quantize_log(ret_log, src, out, (char *)NULL);
  ck_assert_msg(rc == 0, "dynq-quantize %s failed:\n%s", src, *ret_log ? *ret_log : "");
}

/* Output y of the model at path on the fixture's input. */
static float *run(const char *path, int precision) {
  char err[512];
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(path, &m, err, sizeof err) == 0, "%s: %s", path, err);
  static float x[N * C * H * W];
  ck_assert_int_eq(tu_load_f32("tests/fixtures/cnnfuse_x.f32", x, N * C * H * W), 0);
  dynq__tensor_t in[1], out[1];
  memset(in, 0, sizeof in);
  memset(out, 0, sizeof out);
  in[0] = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = 4, .dims = {N, C, H, W}, .data = x};
  dynq__run_opts_t o = {.precision = precision};
  ck_assert_msg(dynq__model_run(m, &o, in, out, err, sizeof err) == 0, "%s: %s", path, err);
  ck_assert_int_eq(dynq__tensor_numel(&out[0]), YN);
  float *y = malloc(sizeof(float) * YN);
  ck_assert_ptr_nonnull(y);
  memcpy(y, out[0].data, sizeof(float) * YN);
  dynq__tensor_clear(&out[0]);
  dynq__model_unref(m);
  return y;
}

/* Nodes of each op in the model at path. */
static void count_ops(const char *path, int *counts) {
  char err[512];
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(path, &m, err, sizeof err) == 0, "%s: %s", path, err);
  const dynq__graph_t *g = dynq__model_graph(m);
  memset(counts, 0, sizeof(int) * DYNQ_OP__COUNT);
  for (int i = 0; i < g->n_nodes; i++) counts[g->nodes[i].op]++;
  dynq__model_unref(m);
}

static uint32_t header_flags(const char *path) {
  size_t n = 0;
  void *p = tu_read_file(path, &n);
  ck_assert_ptr_nonnull(p);
  ck_assert_uint_ge(n, sizeof(dynq__fhdr_t));
  uint32_t f = ((const dynq__fhdr_t *)p)->flags;
  free(p);
  return f;
}

START_TEST(fused_matches_unfused) {
  char fa[4200], fb[4200];
  char *log = NULL;
  snprintf(fa, sizeof fa, "%s/fused.dynq", dir);
  snprintf(fb, sizeof fb, "%s/unfused.dynq", dir);
  convert(fa, NULL, &log);
  ck_assert_msg(strstr(log, "fused: 12 scale/shift/activation nodes into Conv epilogues"), "%s",
                log);
  free(log);
  log = NULL;
  convert(fb, "--no-fuse", &log);
  ck_assert_ptr_null(strstr(log, "Conv epilogues"));
  free(log);

  int ca[DYNQ_OP__COUNT], cb[DYNQ_OP__COUNT];
  count_ops(fa, ca);
  count_ops(fb, cb);
  ck_assert_int_eq(ca[DYNQ_OP_QCONV], 5);
  ck_assert_int_eq(ca[DYNQ_OP_CONV], 2);
  /* left: c7's Relu and the final Add (c7's output has two readers) */
  ck_assert_int_eq(ca[DYNQ_OP_RELU], 1);
  ck_assert_int_eq(ca[DYNQ_OP_ADD], 1);
  ck_assert_int_eq(ca[DYNQ_OP_MUL] + ca[DYNQ_OP_SUB] + ca[DYNQ_OP_CLIP] + ca[DYNQ_OP_SIGMOID] +
                       ca[DYNQ_OP_HARD_SIGMOID] + ca[DYNQ_OP_HARD_SWISH],
                   0);
  /* A reader that would ignore the epilogue attributes must refuse the
   * fused file: the header says it needs them; the unfused file does not. */
  ck_assert_uint_eq(header_flags(fa), DYNQ_FFLAG_CONV_EPILOGUE);
  ck_assert_uint_eq(header_flags(fb), 0);
  ck_assert_int_eq(cb[DYNQ_OP_MUL], 3);
  ck_assert_int_eq(cb[DYNQ_OP_HARD_SWISH] + cb[DYNQ_OP_HARD_SIGMOID] + cb[DYNQ_OP_CLIP] +
                       cb[DYNQ_OP_SIGMOID],
                   4);

  for (int p = 0; p < 2; p++) {
    int prec = p ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8;
    float *ya = run(fa, prec), *yb = run(fb, prec);
    int diff = 0;
    for (int i = 0; i < YN; i++) diff += memcmp(&ya[i], &yb[i], sizeof(float)) != 0;
    printf("cnnfuse %s: %d of %d outputs differ from the unfused graph (max rel %.2e)\n",
           p ? "fp32" : "int8", diff, YN, tu_rel_max(ya, yb, YN));
    ck_assert_int_eq(diff, 0);
    free(ya);
    free(yb);
  }
}
END_TEST

START_TEST(bad_act_refused) {
  static float w[4] = {1, 2, 3, 4};
  dynq__graph_t g;
  memset(&g, 0, sizeof g);
  dynq__value_t v[3] = {
      {.name = "x", .dtype = DYNQ_DT_F32, .rank = 4, .dims = {1, 1, 2, 2}},
      {.name = "w", .dtype = DYNQ_DT_F32, .rank = 4, .dims = {1, 1, 2, 2}, .data = w,
       .nbytes = sizeof w},
      {.name = "y", .dtype = DYNQ_DT_F32, .rank = 4, .dims = {1, 1, 1, 1}},
  };
  int32_t ins[2] = {0, 1}, outs[1] = {2}, gin[1] = {0}, gout[1] = {2};
  dynq__attr_t at[1] = {{.name = "act", .type = DYNQ_ATTR_INT, .i = 99}};
  dynq__node_t n = {.op = DYNQ_OP_CONV, .name = "stem", .n_in = 2, .in = ins, .n_out = 1,
                    .out = outs, .n_attr = 1, .attr = at};
  g.values = v;
  g.n_values = 3;
  g.nodes = &n;
  g.n_nodes = 1;
  g.inputs = gin;
  g.n_inputs = 1;
  g.outputs = gout;
  g.n_outputs = 1;
  char err[256] = "";
  ck_assert_int_eq(dynq__check_conv(&g, &n, err, sizeof err), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "'stem' (Conv)") && strstr(err, "act 99"), "%s", err);
}
END_TEST

/* A 1x1 QConv reads its GEMM rows (one per pixel) straight from the NCHW
 * image: the same bits as the per-row rule applied to explicitly
 * transposed rows (the im2col rows of a 1x1 conv), on ragged sizes,
 * groups and batches. */
START_TEST(pointwise_rows_exact) {
  static const int64_t shapes[][5] = {/* N, C, M, G, P (= H * W, H = 1) */
      {1, 3, 5, 1, 1}, {2, 17, 20, 1, 7}, {1, 32, 16, 2, 33}, {3, 20, 48, 4, 100},
      {1, 64, 40, 1, 129}};
  const dynq__kernel_t *kr = dynq__kernel();
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const int64_t Nn = shapes[si][0], Cc = shapes[si][1], M = shapes[si][2], G = shapes[si][3],
                  P = shapes[si][4], Cg = Cc / G, Mg = M / G;
    const int64_t kp = dynq__round_up(Cg, DYNQ_QGEMM_KG), blk = dynq__round_up(Mg, 16) * kp;
    float *x = malloc(sizeof(float) * (size_t)(Nn * Cc * P));
    int8_t *wq = malloc((size_t)(Mg * Cg)), *packed = dynq__aligned_alloc((size_t)(G * blk));
    int32_t *colsum = malloc(sizeof(int32_t) * (size_t)M);
    float *ws = malloc(sizeof(float) * (size_t)M), *bias = malloc(sizeof(float) * (size_t)M);
    uint32_t r = 12345u + (uint32_t)si;
    for (int64_t i = 0; i < Nn * Cc * P; i++) {
      r = r * 1664525u + 1013904223u;
      x[i] = (float)((int32_t)(r >> 8) % 2000) / 333.0f;
    }
    for (int64_t gi = 0; gi < G; gi++) {
      for (int64_t m = 0; m < Mg; m++) {
        int32_t cs = 0;
        for (int64_t k = 0; k < Cg; k++) {
          r = r * 1664525u + 1013904223u;
          wq[m * Cg + k] = (int8_t)((int32_t)(r >> 8) % 127);
          cs += wq[m * Cg + k];
        }
        colsum[gi * Mg + m] = cs;
        ws[gi * Mg + m] = 0.001f * (float)(1 + m % 7);
        bias[gi * Mg + m] = 0.1f * (float)(m % 5) - 0.2f;
      }
      dynq__pack_weights(Mg, Cg, wq, packed + gi * blk);
    }
    /* the oracle: rows transposed by hand, quantized, one GEMM each */
    float *want = malloc(sizeof(float) * (size_t)(Nn * M * P));
    float *rows = malloc(sizeof(float) * (size_t)(P * Cg)), *tmp = malloc(sizeof(float) * (size_t)(P * Mg));
    uint8_t *A = dynq__aligned_alloc((size_t)(P * kp));
    float *as = malloc(sizeof(float) * (size_t)P);
    int32_t *az = malloc(sizeof(int32_t) * (size_t)P);
    for (int64_t n = 0; n < Nn; n++)
      for (int64_t gi = 0; gi < G; gi++) {
        for (int64_t p = 0; p < P; p++)
          for (int64_t k = 0; k < Cg; k++) rows[p * Cg + k] = x[(n * Cc + gi * Cg + k) * P + p];
        dynq__quantize_rows(kr, P, Cg, rows, (size_t)Cg, A, (size_t)kp, 0, as, az);
        dynq__qgemm_args_t q = {.M = P, .N = Mg, .K = Cg, .A = A, .lda = (size_t)kp,
                                .B = packed + gi * blk, .colsum = colsum + gi * Mg,
                                .w_scale = ws + gi * Mg, .a_scale = as, .a_zp = az,
                                .bias = bias + gi * Mg, .C = tmp, .ldc = (size_t)Mg,
                                .n0 = 0, .n1 = Mg};
        kr->qgemm(&q);
        for (int64_t p = 0; p < P; p++)
          for (int64_t m = 0; m < Mg; m++) want[(n * M + gi * Mg + m) * P + p] = tmp[p * Mg + m];
      }
    int64_t xd[4] = {Nn, Cc, 1, P}, pd[1] = {G * blk}, md[1] = {M};
    dynq__tensor_t tx = {.dtype = DYNQ_DT_F32, .rank = 4, .data = x};
    memcpy(tx.dims, xd, sizeof xd);
    dynq__tensor_t tq = {.dtype = DYNQ_DT_I8, .rank = 1, .dims = {pd[0]}, .data = packed};
    dynq__tensor_t tc = {.dtype = DYNQ_DT_I32, .rank = 1, .dims = {md[0]}, .data = colsum};
    dynq__tensor_t ts = {.dtype = DYNQ_DT_F32, .rank = 1, .dims = {md[0]}, .data = ws};
    dynq__tensor_t tb = {.dtype = DYNQ_DT_F32, .rank = 1, .dims = {md[0]}, .data = bias};
    const dynq__tensor_t *in[5] = {&tx, &tq, &tc, &ts, &tb};
    dynq__attr_t at[] = {
        {.name = "group", .type = DYNQ_ATTR_INT, .i = G},
        {.name = "spatial", .type = DYNQ_ATTR_INT, .i = 2},
        {.name = "in_channels", .type = DYNQ_ATTR_INT, .i = Cc},
        {.name = "out_channels", .type = DYNQ_ATTR_INT, .i = M},
        {.name = "kernel_shape0", .type = DYNQ_ATTR_INT, .i = 1},
        {.name = "kernel_shape1", .type = DYNQ_ATTR_INT, .i = 1},
    };
    int32_t idx[5] = {0, 1, 2, 3, 4}, oidx[1] = {5};
    dynq__node_t node = {.op = DYNQ_OP_QCONV, .name = "pw", .n_in = 5, .n_out = 1, .in = idx,
                         .out = oidx, .n_attr = 6, .attr = at};
    char err[256] = "";
    dynq__op_ctx_t c = {.node = &node, .kernel = kr, .precision = DYNQ_PRECISION_INT8,
                        .err = err, .errlen = sizeof err};
    dynq__tensor_t out;
    memset(&out, 0, sizeof out);
    ck_assert_msg(dynq__op_run1(NULL, &c, in, &out) == 0, "%s", err);
    ck_assert_int_eq(dynq__tensor_numel(&out), Nn * M * P);
    int diff = 0;
    for (int64_t i = 0; i < Nn * M * P; i++)
      diff += memcmp((float *)out.data + i, want + i, sizeof(float)) != 0;
    ck_assert_msg(diff == 0, "shape %zu: %d of %lld outputs differ from the per-row rule", si,
                  diff, (long long)(Nn * M * P));
    dynq__tensor_clear(&out);
    free(x), free(wq), dynq__aligned_free(packed), free(colsum), free(ws), free(bias);
    free(want), free(rows), free(tmp), dynq__aligned_free(A), free(as), free(az);
  }
}
END_TEST

static Suite *cnnfuse_suite(void) {
  Suite *s = suite_create("cnnfuse");
  TCase *tc = tcase_create("fusions");
  tcase_set_timeout(tc, 120);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, fused_matches_unfused);
  tcase_add_test(tc, bad_act_refused);
  tcase_add_test(tc, pointwise_rows_exact);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(cnnfuse_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
