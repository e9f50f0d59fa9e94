/*
 * Two rewrites of models/fuse.c against the unfused graph.
 *
 * The residual Add + LayerNormalization rewrite
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
 *
 * INT8 attention (StridedMatMul -> MaskedSoftmax -> StridedMatMul into one
 * Attention node): tests/fixtures/attn.onnx (make_attn.py) holds two blocks
 * it must fuse and three it must refuse (softmax on another axis, scores
 * or softmax read elsewhere).  Fused blocks agree with numpy within INT8
 * error; the FP32 path gives the same bits as --fp32-attention's unfused
 * nodes.  (tests/test-ops.c holds the op to the three nodes bit for bit.)
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

/* A fixture's inputs: names, files tests/fixtures/<prefix>_<name>.f32. */
typedef struct fixture {
  const char *prefix;
  int n_in, n_out;
  const char *const *names;
  const int *ranks;
  const int64_t (*dims)[4];
  const int64_t *out_sizes;  /* values of each output */
} fixture_t;

/* Every output of the model at path, concatenated in output order. */
static float *run_fixture(const fixture_t *fx, const char *path, int precision) {
  char err[512], rel[64];
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(path, &m, err, sizeof err) == 0, "%s: %s", path, err);
  dynq__tensor_t in[4], out[8];
  float *data[4] = {NULL};
  size_t total = 0;
  ck_assert(fx->n_in <= 4 && fx->n_out <= 8);
  memset(in, 0, sizeof in);
  memset(out, 0, sizeof out);
  for (int k = 0; k < fx->n_in; k++) {
    size_t n = 1;
    for (int d = 0; d < fx->ranks[k]; d++) n *= (size_t)fx->dims[k][d];
    data[k] = malloc(sizeof(float) * n);
    ck_assert_ptr_nonnull(data[k]);
    snprintf(rel, sizeof rel, "tests/fixtures/%s_%s.f32", fx->prefix, fx->names[k]);
    ck_assert_int_eq(tu_load_f32(rel, data[k], n), 0);
    int idx = dynq__model_input_index(m, fx->names[k]);
    ck_assert_int_ge(idx, 0);
    in[idx] = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = fx->ranks[k], .data = data[k]};
    memcpy(in[idx].dims, fx->dims[k], sizeof(int64_t) * (size_t)fx->ranks[k]);
  }
  dynq__run_opts_t o = {.precision = precision};
  ck_assert_msg(dynq__model_run(m, &o, in, out, err, sizeof err) == 0, "%s: %s", path, err);
  ck_assert_int_eq(dynq__model_graph(m)->n_outputs, fx->n_out);
  for (int k = 0; k < fx->n_out; k++) total += (size_t)fx->out_sizes[k];
  float *y = malloc(sizeof(float) * total);
  ck_assert_ptr_nonnull(y);
  size_t at = 0;
  for (int k = 0; k < fx->n_out; k++) {
    size_t n = (size_t)dynq__tensor_numel(&out[k]);
    ck_assert_uint_eq(n, (size_t)fx->out_sizes[k]);
    memcpy(y + at, out[k].data, sizeof(float) * n);
    at += n;
    dynq__tensor_clear(&out[k]);
  }
  for (int k = 0; k < fx->n_in; k++) free(data[k]);
  dynq__model_unref(m);
  return y;
}

static const fixture_t addln = {
  .prefix = "addln", .n_in = 3, .n_out = NOUT,
  .names = (const char *const[]){"x", "y", "r"},
  .ranks = (const int[]){3, 3, 1},
  .dims = (const int64_t[][4]){{2, 5, 8}, {2, 5, 8}, {8}},
  .out_sizes = (const int64_t[]){NV, NV, NV, NV, NV, NV, 10, NV},
};

static float *run(const char *path, int precision) { return run_fixture(&addln, path, precision); }

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

enum { AB = 2, AS = 9, AH = 2, AD = 8, AX = AB * AS * AH * AD, AP = AB * AH * AS * AS };
enum { ANOUT = 7, AREF = 5 * AX + 2 * AP };

static const fixture_t attn = {
  .prefix = "attn", .n_in = 4, .n_out = ANOUT,
  .names = (const char *const[]){"q", "k", "v", "mask"},
  .ranks = (const int[]){4, 4, 4, 4},
  .dims = (const int64_t[][4]){{AB, AS, AH, AD}, {AB, AS, AH, AD}, {AB, AS, AH, AD}, {AB, 1, 1, AS}},
  .out_sizes = (const int64_t[]){AX, AX, AX, AX, AP, AX, AP},
};

START_TEST(int8_attention) {
  char fa[4200], fb[4200], src[4096];
  char *log = NULL;
  snprintf(src, sizeof src, "%s", tu_src("tests/fixtures/attn.onnx"));
  snprintf(fa, sizeof fa, "%s/att8.dynq", dir);
  snprintf(fb, sizeof fb, "%s/att32.dynq", dir);
  ck_assert_int_eq(tu_quantize_log(&log, src, fa, (char *)NULL), 0);
  ck_assert_msg(strstr(log, "fused: 2 INT8 attention products"), "%s", log);
  free(log);
  log = NULL;
  ck_assert_int_eq(tu_quantize_log(&log, "--fp32-attention", src, fb, (char *)NULL), 0);
  ck_assert_msg(strstr(log, "4 mask Adds") && !strstr(log, "INT8 attention"), "%s", log);
  free(log);

  char err[512];
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(fa, &m, err, sizeof err) == 0, "%s", err);
  const dynq__graph_t *g = dynq__model_graph(m);
  int att = 0, smm = 0, msm = 0, sm = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const dynq__node_t *n = &g->nodes[i];
    if (n->op == DYNQ_OP_ATTENTION) {
      att++;
      ck_assert_msg(strcmp(n->name, "pv1") == 0 || strcmp(n->name, "pv2") == 0, "fused node %s",
                    n->name);
    }
    smm += n->op == DYNQ_OP_STRIDED_MATMUL;
    msm += n->op == DYNQ_OP_MASKED_SOFTMAX;
    sm += n->op == DYNQ_OP_SOFTMAX;
  }
  ck_assert_int_eq(att, 2);
  ck_assert_int_eq(smm, 6);  /* blocks 3, 4, 5: two each */
  ck_assert_int_eq(msm, 2);  /* blocks 4, 5 */
  ck_assert_int_eq(sm, 1);   /* block 3: axis 2 */
  m = dynq__model_unref(m);

  float *ref = malloc(sizeof(float) * AREF);
  ck_assert_ptr_nonnull(ref);
  ck_assert_int_eq(tu_load_f32("tests/fixtures/attn_ref.f32", ref, AREF), 0);
  float *a8 = run_fixture(&attn, fa, DYNQ_PRECISION_INT8), *a32 = run_fixture(&attn, fa, DYNQ_PRECISION_FP32);
  float *b32 = run_fixture(&attn, fb, DYNQ_PRECISION_FP32);
  ck_assert_msg(memcmp(a32, b32, sizeof(float) * AREF) == 0, "fp32: fused differs from unfused");
  for (int i = 0; i < AREF; i++)
    ck_assert_msg(fabsf(a32[i] - ref[i]) <= 2e-5f * (1.0f + fabsf(ref[i])),
                  "value %d: %g, numpy %g", i, a32[i], ref[i]);
  size_t at = 0;
  for (int k = 0; k < ANOUT; k++) {
    size_t n = k == 4 || k == 6 ? AP : AX;
    double e = tu_rel_l2(a8 + at, ref + at, n);
    ck_assert_msg(e > 0 && e < 0.03, "output %d: INT8 relL2 %g against numpy", k, e);
    at += n;
  }
  free(a8);
  free(a32);
  free(b32);
  free(ref);
}
END_TEST

int main(void) {
  Suite *s = suite_create("fuse");
  TCase *tc = tcase_create("addln");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, residual_layernorm);
  suite_add_tcase(s, tc);
  tc = tcase_create("attention");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, int8_attention);
  suite_add_tcase(s, tc);
  return tu_run_suite(s) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
