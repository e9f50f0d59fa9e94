/*
 * The residual Add + LayerNormalization rewrite of models/fuse.c
 * (AddLayerNorm) against the unfused graph: tests/fixtures/addln.onnx
 * (make_addln.py) holds the three cases it must fuse (a plain residual;
 * a sum with another reader, kept as the fused node's second output; an
 * Add whose shapes are unknown at import and broadcast at run time) and
 * the three it must refuse (a known broadcast, a constant operand, a
 * LayerNorm whose Mean is an output).
 *
 *  - exactly those three are fused, the one with a kept sum has two
 *    outputs, and --no-fuse fuses none;
 *  - fused and unfused models give the same bits for every output on the
 *    INT8 and the FP32 path, and both match numpy's values.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "graph.h"
#include "model.h"
#include "ops.h"
#include "testutil.h"

enum { NV = 2 * 5 * 8, NOUT = 8, NREF = 7 * NV + 2 * 5 };

static char *dir;

static void setup(void) { dir = tu_mkdtemp(); }
static void teardown(void) {
  if (dir) tu_rmtree(dir);
  free(dir);
  dir = NULL;
}

static void convert(const char *out, const char *flag, char **ret_log) {
  char src[4096];
  snprintf(src, sizeof src, "%s", tu_src("tests/fixtures/addln.onnx"));
  int rc = flag ? tu_quantize_log(ret_log, flag, src, out, (char *)NULL)
                : tu_quantize_log(ret_log, src, out, (char *)NULL);
  ck_assert_msg(rc == 0, "dynq-quantize %s failed:\n%s", src, *ret_log ? *ret_log : "");
}

/* Every output of the model at path, concatenated in output order. */
static float *run(const char *path, int precision) {
  static const char *const names[3] = {"x", "y", "r"};
  static const int64_t dims[3][3] = {{2, 5, 8}, {2, 5, 8}, {8}};
  static const int ranks[3] = {3, 3, 1}, sizes[3] = {NV, NV, 8};
  static float data[3][NV];
  char err[512], rel[64];
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(path, &m, err, sizeof err) == 0, "%s: %s", path, err);
  dynq__tensor_t in[3], out[NOUT];
  memset(in, 0, sizeof in);
  memset(out, 0, sizeof out);
  for (int k = 0; k < 3; k++) {
    snprintf(rel, sizeof rel, "tests/fixtures/addln_%s.f32", names[k]);
    ck_assert_int_eq(tu_load_f32(rel, data[k], (size_t)sizes[k]), 0);
    int idx = dynq__model_input_index(m, names[k]);
    ck_assert_int_ge(idx, 0);
    in[idx] = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = ranks[k], .data = data[k]};
    memcpy(in[idx].dims, dims[k], sizeof(int64_t) * (size_t)ranks[k]);
  }
  dynq__run_opts_t o = {.precision = precision};
  ck_assert_msg(dynq__model_run(m, &o, in, out, err, sizeof err) == 0, "%s: %s", path, err);
  ck_assert_int_eq(dynq__model_graph(m)->n_outputs, NOUT);
  float *y = malloc(sizeof(float) * NREF);
  ck_assert_ptr_nonnull(y);
  size_t at = 0;
  for (int k = 0; k < NOUT; k++) {
    size_t n = (size_t)dynq__tensor_numel(&out[k]);
    ck_assert_uint_eq(n, k == 6 ? 10 : NV);
    memcpy(y + at, out[k].data, sizeof(float) * n);
    at += n;
    dynq__tensor_clear(&out[k]);
  }
  dynq__model_unref(m);
  return y;
}

START_TEST(residual_layernorm) {
  char fa[4200], fb[4200];
  char *log = NULL;
  snprintf(fa, sizeof fa, "%s/fused.dynq", dir);
  snprintf(fb, sizeof fb, "%s/unfused.dynq", dir);
  convert(fa, NULL, &log);
  ck_assert_msg(strstr(log, "fused: 3 residual Adds into the LayerNorms"), "%s", log);
  free(log);
  log = NULL;
  convert(fb, "--no-fuse", &log);
  ck_assert_ptr_null(strstr(log, "residual"));
  free(log);

  char err[512];
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(fa, &m, err, sizeof err) == 0, "%s", err);
  const dynq__graph_t *g = dynq__model_graph(m);
  int fused = 0, two = 0, ln = 0, add = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const dynq__node_t *n = &g->nodes[i];
    if (n->op == DYNQ_OP_ADD_LAYERNORM) {
      fused++;
      two += n->n_out == 2;
      ck_assert_msg(strncmp(n->name, "ln", 2) == 0, "fused node named %s", n->name);
    }
    ln += n->op == DYNQ_OP_LAYERNORM;
    add += n->op == DYNQ_OP_ADD;
  }
  ck_assert_int_eq(fused, 3);
  ck_assert_int_eq(two, 1);   /* ln2: its sum is also read by mul2 */
  ck_assert_int_eq(ln, 3);    /* ln3 (broadcast), ln4 (constant), ln5 (Mean output) */
  ck_assert_int_eq(add, 3);
  m = dynq__model_unref(m);

  float *ref = malloc(sizeof(float) * NREF);
  ck_assert_ptr_nonnull(ref);
  ck_assert_int_eq(tu_load_f32("tests/fixtures/addln_ref.f32", ref, NREF), 0);
  for (int p = 0; p < 2; p++) {
    int prec = p ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8;
    float *ya = run(fa, prec), *yb = run(fb, prec);
    ck_assert_msg(memcmp(ya, yb, sizeof(float) * NREF) == 0, "%s: fused differs from unfused",
                  p ? "fp32" : "int8");
    for (int i = 0; i < NREF; i++)
      ck_assert_msg(fabsf(ya[i] - ref[i]) <= 2e-5f * (1.0f + fabsf(ref[i])),
                    "value %d: %g, numpy %g", i, ya[i], ref[i]);
    free(ya);
    free(yb);
  }
  free(ref);
}
END_TEST

int main(void) {
  Suite *s = suite_create("fuse");
  TCase *tc = tcase_create("addln");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, residual_layernorm);
  suite_add_tcase(s, tc);
  return tu_run_suite(s) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
