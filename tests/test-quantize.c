/*
 * dynq-quantize end to end: ONNX fixtures (tests/fixtures, made by
 * make_fixtures.py) through the real binary, then loaded and run by the
 * engine and compared with numpy's float64 results.
 *
 * Metrics (stated once, used everywhere):
 *   max_rel = max_i |out_i - ref_i| / max_i |ref_i|   (FP32 paths: <= 1e-5)
 *   rel_l2  = ||out - ref||_2 / ||ref||_2             (INT8 paths: <= 0.02)
 */
#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "format.h"
#include "graph.h"
#include "model.h"
#include "ops.h"
#include "tensor.h"
#include "testutil.h"

#define FP32_TOL 1e-5
#define INT8_TOL 0.02

static char *tmp_path(const char *name) {
  size_t n = strlen(tu_tmp) + strlen(name) + 2;
  char *p = malloc(n);
  snprintf(p, n, "%s/%s", tu_tmp, name);
  return p;
}

static char *fixture(const char *name) {
  char rel[256];
  snprintf(rel, sizeof(rel), "tests/fixtures/%s", name);
  return strdup(tu_src(rel));
}

static int file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static float *load_f32(const char *name, size_t *ret_n) {
  char *p = fixture(name);
  size_t nb = 0;
  float *d = tu_read_file(p, &nb);
  ck_assert_msg(d != NULL, "cannot read fixture %s", p);
  ck_assert_uint_eq(nb % 4, 0);
  free(p);
  *ret_n = nb / 4;
  return d;
}

static dynq__tensor_t f32_tensor(float *data, int rank, const int64_t *dims) {
  dynq__tensor_t t;
  memset(&t, 0, sizeof(t));
  t.dtype = DYNQ_DT_F32;
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  t.data = data;
  t.owned = 0;
  return t;
}

static dynq__model_t *open_model(const char *path) {
  dynq__model_t *m = NULL;
  char err[512] = "";
  int rc = dynq__model_open(path, &m, err, sizeof(err));
  ck_assert_msg(rc == 0, "dynq__model_open(%s): %d %s", path, rc, err);
  return m;
}

/* Run with inputs given by graph-input name; outputs[] cleared by caller. */
static int run_model(const dynq__model_t *m, int precision, const char *const *names,
                     const dynq__tensor_t *ins, int n_in, dynq__tensor_t *outs, char *err,
                     size_t errlen) {
  const dynq__graph_t *g = dynq__model_graph(m);
  ck_assert_int_eq(g->n_inputs, n_in);
  dynq__tensor_t ordered[8];
  for (int i = 0; i < n_in; i++) {
    int idx = dynq__model_input_index(m, names[i]);
    ck_assert_msg(idx >= 0 && idx < n_in, "model has no input '%s'", names[i]);
    ordered[idx] = ins[i];
  }
  dynq__run_opts_t opts = {.precision = precision, .kernel = NULL};
  return dynq__model_run(m, &opts, ordered, outs, err, errlen);
}

static void clear_outputs(dynq__tensor_t *outs, int n) {
  for (int i = 0; i < n; i++) dynq__tensor_clear(&outs[i]);
}

/* ---- mlp.onnx ---------------------------------------------------- */

typedef struct mlp_ref {
  float *x, *y, *p;
  size_t nx, ny, np;
} mlp_ref_t;

static void mlp_load(mlp_ref_t *r) {
  r->x = load_f32("mlp_x.f32", &r->nx);
  r->y = load_f32("mlp_y.f32", &r->ny);
  r->p = load_f32("mlp_p.f32", &r->np);
  ck_assert_uint_eq(r->nx, 16 * 64);
  ck_assert_uint_eq(r->ny, 16 * 10);
  ck_assert_uint_eq(r->np, 16 * 10);
}

static void mlp_free(mlp_ref_t *r) {
  free(r->x);
  free(r->y);
  free(r->p);
}

/* Quantize mlp.onnx with one option (or none) into tu_tmp/name. */
static char *mlp_quantize(const char *opt, const char *name) {
  char *in = fixture("mlp.onnx");
  char *outp = tmp_path(name);
  char *log = NULL;
  int rc = opt ? tu_quantize_log(&log, opt, in, outp, NULL) : tu_quantize_log(&log, in, outp, NULL);
  ck_assert_msg(rc == 0, "dynq-quantize %s exit %d:\n%s", opt ? opt : "", rc, log);
  ck_assert_msg(file_exists(outp), "no output file %s", outp);
  /* The summary names every linear layer. */
  const char *layers[] = {"fc1", "fc2", "fc3", "fc5"};
  for (int i = 0; i < 4; i++)
    ck_assert_msg(strstr(log, layers[i]) != NULL, "summary lacks %s:\n%s", layers[i], log);
  ck_assert_ptr_nonnull(strstr(log, "total:"));
  free(log);
  free(in);
  return outp;
}

/* y and p from a 16 x 64 batch. */
static void mlp_run(const dynq__model_t *m, int precision, float *x, int64_t rows,
                    dynq__tensor_t *outs) {
  int64_t dims[2] = {rows, 64};
  dynq__tensor_t in = f32_tensor(x, 2, dims);
  const char *names[] = {"x"};
  char err[512] = "";
  int rc = run_model(m, precision, names, &in, 1, outs, err, sizeof(err));
  ck_assert_msg(rc == 0, "run: %d %s", rc, err);
  const dynq__graph_t *g = dynq__model_graph(m);
  ck_assert_int_eq(g->n_outputs, 2);
  for (int i = 0; i < 2; i++) {
    ck_assert_int_eq(outs[i].dtype, DYNQ_DT_F32);
    ck_assert_int_eq(outs[i].rank, 2);
    ck_assert_int_eq(outs[i].dims[0], rows);
    ck_assert_int_eq(outs[i].dims[1], 10);
  }
}

static void mlp_check(const char *path, int precision, double tol, int l2) {
  mlp_ref_t r;
  mlp_load(&r);
  dynq__model_t *m = open_model(path);
  dynq__tensor_t outs[2];
  mlp_run(m, precision, r.x, 16, outs);
  double ey = l2 ? tu_rel_l2(outs[0].data, r.y, r.ny) : tu_rel_max(outs[0].data, r.y, r.ny);
  double ep = l2 ? tu_rel_l2(outs[1].data, r.p, r.np) : tu_rel_max(outs[1].data, r.p, r.np);
  printf("%s precision %d: y %s %.3g, p %.3g\n", path, precision, l2 ? "rel_l2" : "max_rel",
         ey, ep);
  ck_assert_msg(ey <= tol, "%s precision %d: y error %g > %g", path, precision, ey, tol);
  ck_assert_msg(ep <= tol, "%s precision %d: p error %g > %g", path, precision, ep, tol);
  clear_outputs(outs, 2);
  dynq__model_unref(m);
  mlp_free(&r);
}

/* Rows one at a time must give exactly the batch's rows (per-row scales). */
static void mlp_check_per_row(const char *path) {
  mlp_ref_t r;
  mlp_load(&r);
  dynq__model_t *m = open_model(path);
  dynq__tensor_t batch[2];
  mlp_run(m, DYNQ_PRECISION_INT8, r.x, 16, batch);
  for (int row = 0; row < 16; row++) {
    dynq__tensor_t one[2];
    mlp_run(m, DYNQ_PRECISION_INT8, r.x + row * 64, 1, one);
    for (int o = 0; o < 2; o++)
      ck_assert_msg(memcmp(one[o].data, (float *)batch[o].data + row * 10,
                           10 * sizeof(float)) == 0,
                    "row %d output %d differs alone vs in the batch", row, o);
    clear_outputs(one, 2);
  }
  clear_outputs(batch, 2);
  dynq__model_unref(m);
  mlp_free(&r);
}

START_TEST(test_mlp_default) {
  char *p = mlp_quantize(NULL, "mlp.dynq");
  mlp_check(p, DYNQ_PRECISION_INT8, INT8_TOL, 1);
  /* The FP32 reference weights ride along by default. */
  mlp_check(p, DYNQ_PRECISION_FP32, FP32_TOL, 0);
  mlp_check_per_row(p);
  dynq__model_t *m = open_model(p);
  dynq__model_stats_t st;
  dynq__model_get_stats(m, &st);
  ck_assert_int_eq(st.n_quant[DYNQ_QKIND_LINEAR], 4);
  ck_assert_int_eq(st.has_reference, 1);
  ck_assert_int_eq(st.per_tensor, 0);
  dynq__model_unref(m);
  free(p);
}
END_TEST

START_TEST(test_mlp_fp32) {
  char *p = mlp_quantize("--fp32", "mlp32.dynq");
  mlp_check(p, DYNQ_PRECISION_FP32, FP32_TOL, 0);
  /* No QLINEAR: the default (int8) precision runs the same FP32 graph. */
  mlp_check(p, DYNQ_PRECISION_INT8, FP32_TOL, 0);
  dynq__model_t *m = open_model(p);
  dynq__model_stats_t st;
  dynq__model_get_stats(m, &st);
  ck_assert_int_eq(st.n_quant[DYNQ_QKIND_LINEAR], 0);
  dynq__model_unref(m);
  free(p);
}
END_TEST

START_TEST(test_mlp_per_tensor) {
  char *p = mlp_quantize("--act-per-tensor", "mlp_pt.dynq");
  mlp_check(p, DYNQ_PRECISION_INT8, INT8_TOL, 1);
  dynq__model_t *m = open_model(p);
  dynq__model_stats_t st;
  dynq__model_get_stats(m, &st);
  ck_assert_int_eq(st.n_quant[DYNQ_QKIND_LINEAR], 4);
  ck_assert_int_eq(st.per_tensor, 1);
  dynq__model_unref(m);
  /* The old name still works, says it is deprecated, and writes the same
   * file but for the producer string's path. */
  char *in = fixture("mlp.onnx"), *old = tmp_path("mlp_pt_old.dynq"), *log = NULL;
  ck_assert_int_eq(tu_quantize_log(&log, "--per-tensor", in, old, NULL), 0);
  ck_assert_msg(strstr(log, "--per-tensor is now --act-per-tensor") != NULL, "%s", log);
  free(log);
  size_t na = 0, nb = 0;
  void *a = tu_read_file(p, &na), *b = tu_read_file(old, &nb);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  ck_assert_uint_eq(na, nb);
  ck_assert_int_eq(memcmp(a, b, na), 0);
  free(a);
  free(b);
  free(old);
  free(in);
  free(p);
}
END_TEST

START_TEST(test_mlp_no_reference) {
  char *p = mlp_quantize("--no-reference", "mlp_noref.dynq");
  char *full = mlp_quantize(NULL, "mlp_full.dynq");
  mlp_check(p, DYNQ_PRECISION_INT8, INT8_TOL, 1);
  mlp_check_per_row(p);
  dynq__model_t *m = open_model(p);
  dynq__model_stats_t st;
  dynq__model_get_stats(m, &st);
  ck_assert_int_eq(st.n_quant[DYNQ_QKIND_LINEAR], 4);
  ck_assert_int_eq(st.has_reference, 0);
  ck_assert_uint_eq(st.ref_weight_bytes, 0);
  /* Asking for fp32 without Wref is refused, not silently int8. */
  mlp_ref_t r;
  mlp_load(&r);
  int64_t dims[2] = {16, 64};
  dynq__tensor_t in = f32_tensor(r.x, 2, dims), outs[2];
  const char *names[] = {"x"};
  char err[512] = "";
  int rc = run_model(m, DYNQ_PRECISION_FP32, names, &in, 1, outs, err, sizeof(err));
  ck_assert_int_eq(rc, DYNQ_ENOREF);
  mlp_free(&r);
  dynq__model_unref(m);
  /* And the file is smaller by (at least) the 19904 bytes of Wref. */
  struct stat a, b;
  ck_assert_int_eq(stat(p, &a), 0);
  ck_assert_int_eq(stat(full, &b), 0);
  ck_assert_int_ge(b.st_size - a.st_size, 19904);
  free(p);
  free(full);
}
END_TEST

/* ---- gemm_variants.onnx ----------------------------------------- */

static void gemm_check(const char *opt, int precision, double tol, int l2) {
  char *in = fixture("gemm_variants.onnx");
  char *outp = tmp_path(opt ? "gemm_fp32.dynq" : "gemm.dynq");
  char *log = NULL;
  int rc = opt ? tu_quantize_log(&log, opt, in, outp, NULL) : tu_quantize_log(&log, in, outp, NULL);
  ck_assert_msg(rc == 0, "exit %d:\n%s", rc, log);
  const char *layers[] = {"g_transA_dynC", "g_transB_c1n", "g_constC_mn", "g_noC",
                          "g_scalarC"};
  for (int i = 0; i < 5; i++)
    ck_assert_msg(strstr(log, layers[i]) != NULL, "summary lacks %s:\n%s", layers[i], log);
  free(log);
  size_t na, nx, nc;
  float *a = load_f32("gemm_a.f32", &na), *x = load_f32("gemm_x.f32", &nx),
        *c = load_f32("gemm_c.f32", &nc);
  ck_assert_uint_eq(na, 13 * 5);
  ck_assert_uint_eq(nx, 5 * 13);
  ck_assert_uint_eq(nc, 5 * 17);
  int64_t da[2] = {13, 5}, dx[2] = {5, 13}, dc[2] = {5, 17};
  dynq__tensor_t ins[3] = {f32_tensor(a, 2, da), f32_tensor(x, 2, dx), f32_tensor(c, 2, dc)};
  const char *names[] = {"a", "x", "c"};
  dynq__model_t *m = open_model(outp);
  ck_assert_int_eq(dynq__model_graph(m)->n_outputs, 5);
  dynq__tensor_t outs[5];
  char err[512] = "";
  rc = run_model(m, precision, names, ins, 3, outs, err, sizeof(err));
  ck_assert_msg(rc == 0, "run: %d %s", rc, err);
  for (int i = 0; i < 5; i++) {
    char name[32];
    snprintf(name, sizeof(name), "gemm_y%d.f32", i + 1);
    size_t ny;
    float *y = load_f32(name, &ny);
    ck_assert_uint_eq(ny, 5 * 17);
    ck_assert_int_eq(outs[i].rank, 2);
    ck_assert_int_eq(outs[i].dims[0], 5);
    ck_assert_int_eq(outs[i].dims[1], 17);
    double e = l2 ? tu_rel_l2(outs[i].data, y, ny) : tu_rel_max(outs[i].data, y, ny);
    printf("gemm %s y%d precision %d: %s %.3g\n", opt ? opt : "int8", i + 1, precision,
           l2 ? "rel_l2" : "max_rel", e);
    ck_assert_msg(e <= tol, "%s y%d (%s) precision %d: error %g > %g", opt ? opt : "int8",
                  i + 1, layers[i], precision, e, tol);
    free(y);
  }
  clear_outputs(outs, 5);
  dynq__model_unref(m);
  free(a);
  free(x);
  free(c);
  free(in);
  free(outp);
}

START_TEST(test_gemm_variants_fp32) { gemm_check("--fp32", DYNQ_PRECISION_FP32, FP32_TOL, 0); }
END_TEST

START_TEST(test_gemm_variants_int8) {
  gemm_check(NULL, DYNQ_PRECISION_INT8, INT8_TOL, 1);
  /* The reference path of the quantized model is FP32 exact too. */
  gemm_check(NULL, DYNQ_PRECISION_FP32, FP32_TOL, 0);
}
END_TEST

/* ---- Constant node feeding Reshape -------------------------------- */

START_TEST(test_constant_node) {
  char *in = fixture("constant_node.onnx");
  char *outp = tmp_path("cn.dynq");
  char *log = NULL;
  int rc = tu_quantize_log(&log, in, outp, NULL);
  ck_assert_msg(rc == 0, "exit %d:\n%s", rc, log);
  free(log);
  size_t nx, ny;
  float *x = load_f32("constant_node_x.f32", &nx), *y = load_f32("constant_node_y.f32", &ny);
  int64_t dx[3] = {3, 3, 4};
  dynq__tensor_t t = f32_tensor(x, 3, dx), out;
  const char *names[] = {"x"};
  dynq__model_t *m = open_model(outp);
  char err[512] = "";
  rc = run_model(m, DYNQ_PRECISION_FP32, names, &t, 1, &out, err, sizeof(err));
  ck_assert_msg(rc == 0, "run: %d %s", rc, err);
  ck_assert_int_eq(out.rank, 2);
  ck_assert_int_eq(out.dims[0], 3);
  ck_assert_int_eq(out.dims[1], 6);
  ck_assert_double_le(tu_rel_max(out.data, y, ny), FP32_TOL);
  dynq__tensor_clear(&out);
  rc = run_model(m, DYNQ_PRECISION_INT8, names, &t, 1, &out, err, sizeof(err));
  ck_assert_msg(rc == 0, "run: %d %s", rc, err);
  ck_assert_double_le(tu_rel_l2(out.data, y, ny), INT8_TOL);
  dynq__tensor_clear(&out);
  dynq__model_unref(m);
  free(x);
  free(y);
  free(in);
  free(outp);
}
END_TEST

/* ---- layers that stay FP32 without --fp32 ------------------------- */

START_TEST(test_fp32_fallback) {
  char *in = fixture("fallback.onnx");
  char *outp = tmp_path("fb.dynq");
  char *log = NULL;
  int rc = tu_quantize_log(&log, in, outp, NULL);
  ck_assert_msg(rc == 0, "exit %d:\n%s", rc, log);
  ck_assert_msg(strstr(log, "K > 65536") != NULL, "no K note:\n%s", log);
  ck_assert_msg(strstr(log, "not a constant") != NULL, "no dynamic-B note:\n%s", log);
  free(log);
  enum { K = 65537 };
  float *x = malloc(2 * K * sizeof(float));
  ck_assert_ptr_nonnull(x);
  /* The formula make_fixtures.py used (exact in float32). */
  for (int r = 0; r < 2; r++)
    for (int64_t k = 0; k < K; k++) x[r * K + k] = (float)(((k * 7919 + r * 31) % 17) - 8) / 8.0f;
  size_t nu, nv, nyb, nyd;
  float *u = load_f32("fallback_u.f32", &nu), *v = load_f32("fallback_v.f32", &nv);
  float *yb = load_f32("fallback_y_big.f32", &nyb), *yd = load_f32("fallback_y_dyn.f32", &nyd);
  int64_t dx[2] = {2, K}, du[2] = {2, 4}, dv[2] = {4, 3};
  dynq__tensor_t ins[3] = {f32_tensor(x, 2, dx), f32_tensor(u, 2, du), f32_tensor(v, 2, dv)};
  const char *names[] = {"x", "u", "v"};
  dynq__model_t *m = open_model(outp);
  dynq__model_stats_t st;
  dynq__model_get_stats(m, &st);
  ck_assert_int_eq(st.n_quant[DYNQ_QKIND_LINEAR], 0);
  dynq__tensor_t outs[2];
  char err[512] = "";
  rc = run_model(m, DYNQ_PRECISION_INT8, names, ins, 3, outs, err, sizeof(err));
  ck_assert_msg(rc == 0, "run: %d %s", rc, err);
  ck_assert_uint_eq(nyb, 2);
  ck_assert_uint_eq(nyd, 6);
  /* K = 65537 float32 sums: rounding grows with K, so 1e-4 here. */
  double eb = tu_rel_max(outs[0].data, yb, nyb), ed = tu_rel_max(outs[1].data, yd, nyd);
  printf("fallback: big-K max_rel %.3g, dynamic-B max_rel %.3g\n", eb, ed);
  ck_assert_double_le(eb, 1e-4);
  ck_assert_double_le(ed, FP32_TOL);
  clear_outputs(outs, 2);
  dynq__model_unref(m);
  free(x);
  free(u);
  free(v);
  free(yb);
  free(yd);
  free(in);
  free(outp);
}
END_TEST

/* ---- failures: exit code, message, and nothing written ------------ */

/* Expect `rc`, every string of `want` in the output, and an empty tu_tmp. */
static void expect_fail(const char *input_path, const char *opt, int want_rc,
                        const char *const *want) {
  char *outp = tmp_path("out.dynq");
  char *log = NULL;
  int rc = opt ? tu_quantize_log(&log, opt, input_path, outp, NULL)
               : tu_quantize_log(&log, input_path, outp, NULL);
  ck_assert_msg(rc == want_rc, "%s: exit %d, want %d:\n%s", input_path, rc, want_rc, log);
  for (int i = 0; want && want[i]; i++)
    ck_assert_msg(strstr(log, want[i]) != NULL, "%s: output lacks '%s':\n%s", input_path,
                  want[i], log);
  ck_assert_msg(!file_exists(outp), "%s: output file was created", input_path);
  char *tmpf = tmp_path("out.dynq.tmp");
  ck_assert_msg(!file_exists(tmpf), "%s: temporary file left behind", input_path);
  free(tmpf);
  free(log);
  free(outp);
}

static void expect_fixture_fail(const char *name, const char *const *want) {
  char *p = fixture(name);
  expect_fail(p, NULL, 1, want);
  free(p);
}

START_TEST(test_unsupported) {
  /* LSTM is supported: only the random op is left to refuse. */
  const char *want[] = {"node 'rand' (op RandomUniformLike)", "1 node cannot", NULL};
  expect_fixture_fail("unsupported.onnx", want);
  char *p = fixture("unsupported.onnx");
  char *outp = tmp_path("out.dynq");
  char *log = NULL;
  ck_assert_int_eq(tu_quantize_log(&log, p, outp, NULL), 1);
  /* Supported nodes are not listed. */
  ck_assert_ptr_null(strstr(log, "pre_relu"));
  ck_assert_ptr_null(strstr(log, "post_relu"));
  free(log);
  free(outp);
  free(p);
}
END_TEST

/* Opset < 13 Softmax(axis 1) over [2, 3, 4]: one softmax over the 12
 * values of each batch entry (the input taken as 2-D at the axis). */
/* dynq-quantize the fixture (no options) into the temporary directory and
 * open the result. */
static dynq__model_t *convert_fixture(const char *name) {
  char *in = fixture(name), *outp = tmp_path("fixture.dynq"), *log = NULL;
  ck_assert_msg(tu_quantize_log(&log, in, outp, NULL) == 0, "dynq-quantize %s: %s", name, log);
  free(log);
  dynq__model_t *m = open_model(outp);
  free(in);
  free(outp);
  return m;
}

/* Upsample's opset 7-8 form (scales an attribute) runs as Resize-10:
 * asymmetric, nearest rounding down; linear clamps at the edge. */
START_TEST(test_upsample_attr_form) {
  dynq__model_t *m = convert_fixture("upsample7.onnx");
  float x[4] = {1, 2, 3, 4};
  dynq__tensor_t X = f32_tensor(x, 4, (int64_t[]){1, 1, 2, 2}), y[2] = {{0}};
  const char *names[] = {"x"};
  char err[256];
  ck_assert_int_eq(run_model(m, DYNQ_PRECISION_FP32, names, &X, 1, y, err, sizeof err), 0);
  static const float nn[24] = {1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2,
                               3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4};
  static const float lin[8] = {1, 1.5f, 2, 2, 3, 3.5f, 4, 4};
  ck_assert_int_eq(dynq__tensor_numel(&y[0]), 24);
  ck_assert_int_eq(y[0].dims[2], 4);
  ck_assert_int_eq(y[0].dims[3], 6);
  ck_assert_int_eq(dynq__tensor_numel(&y[1]), 8);
  for (int i = 0; i < 24; i++) ck_assert_float_eq(((float *)y[0].data)[i], nn[i]);
  for (int i = 0; i < 8; i++) ck_assert_float_eq(((float *)y[1].data)[i], lin[i]);
  clear_outputs(y, 2);
  dynq__model_unref(m);
}
END_TEST

/* Gelu (opset 20, which Debian's node tests predate): both forms against
 * numpy's float64 values (make_new_ops.py), within 1e-6 + 1e-5 |y|. */
START_TEST(test_gelu_opset20) {
  dynq__model_t *m = convert_fixture("gelu20.onnx");
  size_t nx = 0, nn = 0, nt = 0;
  float *x = load_f32("gelu_x.f32", &nx), *wn = load_f32("gelu_none.f32", &nn),
        *wt = load_f32("gelu_tanh.f32", &nt);
  ck_assert_uint_eq(nx, 32);
  ck_assert_uint_eq(nn, 32);
  ck_assert_uint_eq(nt, 32);
  dynq__tensor_t X = f32_tensor(x, 2, (int64_t[]){4, 8}), y[2] = {{0}};
  const char *names[] = {"x"};
  char err[256];
  ck_assert_int_eq(run_model(m, DYNQ_PRECISION_FP32, names, &X, 1, y, err, sizeof err), 0);
  const float *want[2] = {wn, wt};
  double maxd = 0; /* the two forms differ: the test tells them apart */
  for (int k = 0; k < 2; k++) {
    ck_assert_int_eq(dynq__tensor_numel(&y[k]), 32);
    for (int i = 0; i < 32; i++) {
      const float g = ((float *)y[k].data)[i];
      ck_assert_msg(fabs(g - want[k][i]) <= 1e-6 + 1e-5 * fabs(want[k][i]),
                    "output %d [%d] = %.9g, want %.9g", k, i, g, want[k][i]);
      maxd = fmax(maxd, fabs(wn[i] - wt[i]));
    }
  }
  ck_assert(maxd > 1e-4);
  clear_outputs(y, 2);
  dynq__model_unref(m);
  free(x);
  free(wn);
  free(wt);
}
END_TEST

/* CastLike becomes a Cast to the dtype the model declares for `like`:
 * a graph input, an initializer (bool: nonzero is true), a Constant. */
START_TEST(test_castlike_declared) {
  dynq__model_t *m = convert_fixture("castlike.onnx");
  float x[4] = {-1.5f, 0, 0.5f, 2.7f};
  int32_t li[1] = {0};
  dynq__tensor_t ins[2] = {f32_tensor(x, 1, (int64_t[]){4}),
                           {.dtype = DYNQ_DT_I32, .rank = 1, .dims = {1}, .data = li}};
  dynq__tensor_t y[3] = {{0}};
  const char *names[] = {"x", "like_i"};
  char err[256];
  ck_assert_int_eq(run_model(m, DYNQ_PRECISION_FP32, names, ins, 2, y, err, sizeof err), 0);
  ck_assert_int_eq(y[0].dtype, DYNQ_DT_I32);
  ck_assert_mem_eq(y[0].data, ((int32_t[]){-1, 0, 0, 2}), 4 * sizeof(int32_t));
  ck_assert_int_eq(y[1].dtype, DYNQ_DT_U8);
  ck_assert_mem_eq(y[1].data, ((uint8_t[]){1, 0, 1, 1}), 4);
  ck_assert_int_eq(y[2].dtype, DYNQ_DT_I64);
  ck_assert_mem_eq(y[2].data, ((int64_t[]){-1, 0, 0, 2}), 4 * sizeof(int64_t));
  clear_outputs(y, 3);
  dynq__model_unref(m);
}
END_TEST

/* ---- ONNX Runtime's QOperator form, a detection tail (make_qops.py) ---- */

static void *load_raw(const char *name, size_t want_bytes) {
  char *p = fixture(name);
  size_t nb = 0;
  void *d = tu_read_file(p, &nb);
  ck_assert_msg(d != NULL, "cannot read fixture %s", p);
  ck_assert_uint_eq(nb, want_bytes);
  free(p);
  return d;
}

/* qops.onnx: QuantizeLinear -> QLinearConv (per-channel weights, int32
 * bias) -> QLinearMatMul (per-column weights, nonzero zero points) ->
 * DequantizeLinear, converted with --quantize-small: both layers become
 * dynq's own INT8 layers.  The FP32 path gives numpy's integer result
 * exactly, cq (uint8) and y (float products of small integers and the
 * scales, rounded the same way); the INT8 path requantizes weights and
 * activations: within 2 steps per layer (tests/test-conformance.c,
 * Q8_BOUND_LSB), the MatMul's input already off by the Conv's steps, so
 * Q_STEPS for both.  Measured: cq 1 step, y 2 steps (55 of 160 values off
 * by at least half a step). */
#define Q_STEPS 3
START_TEST(test_qoperator_static) {
  char *in = fixture("qops.onnx"), *outp = tmp_path("qops.dynq"), *log = NULL;
  ck_assert_msg(tu_quantize_log(&log, "--quantize-small", in, outp, NULL) == 0, "%s", log);
  ck_assert_msg(strstr(log, "2 linear layers, 2 quantized") != NULL, "%s", log);
  free(log);
  dynq__model_t *m = open_model(outp);
  const dynq__graph_t *g = dynq__model_graph(m);
  int nqc = 0, nql = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    nqc += g->nodes[i].op == DYNQ_OP_QCONV;
    nql += g->nodes[i].op == DYNQ_OP_QLINEAR;
  }
  ck_assert_int_eq(nqc, 1);
  ck_assert_int_eq(nql, 1);
  float *x = load_raw("qops_x.f32", 192 * 4), *wy = load_raw("qops_y.f32", 160 * 4);
  uint8_t *wc = load_raw("qops_cq.u8", 256);
  float y_scale = 0; /* the smallest nonzero gap between reference values: y_scale */
  for (int i = 0; i < 160; i++)
    for (int j = 0; j < 160; j++) {
      float d = fabsf(wy[i] - wy[j]);
      if (d > 0 && (y_scale == 0 || d < y_scale)) y_scale = d;
    }
  ck_assert(y_scale > 0);
  dynq__tensor_t X = f32_tensor(x, 4, (int64_t[]){1, 3, 8, 8});
  const char *names[] = {"x"};
  char err[256];
  for (int prec = 0; prec < 2; prec++) {
    const int fp32 = prec == 0;
    dynq__tensor_t y[2] = {{0}};
    ck_assert_int_eq(run_model(m, fp32 ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8, names, &X, 1,
                               y, err, sizeof err), 0);
    ck_assert_int_eq(y[0].dtype, DYNQ_DT_U8);
    ck_assert_int_eq(dynq__tensor_numel(&y[0]), 256);
    ck_assert_int_eq(y[1].dtype, DYNQ_DT_F32);
    ck_assert_int_eq(y[1].rank, 4);
    ck_assert_int_eq(y[1].dims[3], 5);
    int worst_c = 0, off_y = 0;
    double worst_y = 0;
    for (int i = 0; i < 256; i++) {
      int d = abs((int)((uint8_t *)y[0].data)[i] - (int)wc[i]);
      worst_c = d > worst_c ? d : worst_c;
    }
    for (int i = 0; i < 160; i++) {
      double d = fabs(((float *)y[1].data)[i] - wy[i]) / y_scale;
      worst_y = d > worst_y ? d : worst_y;
      off_y += d > 0.5;
    }
    printf("qops %s: cq max %d steps, y max %.2f steps of y_scale (%d of 160 off)\n",
           fp32 ? "FP32" : "INT8", worst_c, worst_y, off_y);
    if (fp32) {
      ck_assert_int_eq(worst_c, 0);
      ck_assert(worst_y == 0);
    } else {
      ck_assert_int_le(worst_c, Q_STEPS);
      ck_assert(worst_y < Q_STEPS + 0.01);
    }
    clear_outputs(y, 2);
  }
  dynq__model_unref(m);
  free(x);
  free(wy);
  free(wc);
  free(in);
  free(outp);
}
END_TEST

/* qmm_rt.onnx: a QLinearMatMul whose a_scale comes with the request: one
 * value, as the zero point [1], runs (the values by hand); two values
 * fail naming the node and both shapes. */
START_TEST(test_qoperator_runtime_scale) {
  dynq__model_t *m = convert_fixture("qmm_rt.onnx");
  uint8_t a[12] = {128, 129, 130, 131, 118, 128, 128, 138, 255, 0, 128, 128};
  float s1[1] = {0.5f}, s2[2] = {0.5f, 0.5f};
  dynq__tensor_t ins[2] = {{.dtype = DYNQ_DT_U8, .rank = 2, .dims = {3, 4}, .data = a},
                           f32_tensor(s1, 1, (int64_t[]){1})};
  const char *names[] = {"a", "a_scale"};
  char err[256];
  dynq__tensor_t y = {0};
  int rc = run_model(m, DYNQ_PRECISION_FP32, names, ins, 2, &y, err, sizeof err);
  ck_assert_msg(rc == 0, "%s", err);
  ck_assert_int_eq(y.dtype, DYNQ_DT_U8);
  ck_assert_int_eq(dynq__tensor_numel(&y), 9);
  /* y = sat(round(sum_k (a - 128) * 0.5 * b[k][n] * 0.05 / 0.0625) + 128), b = -6..5 by
   * rows: sums of 0.025 steps over 0.0625, 0.4 apart, never a tie */
  static const int8_t b[12] = {-6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5};
  for (int r = 0; r < 3; r++)
    for (int n = 0; n < 3; n++) {
      double acc = 0;
      for (int k = 0; k < 4; k++) acc += (a[r * 4 + k] - 128) * 0.5 * b[k * 3 + n] * 0.05;
      double q = nearbyint(acc / 0.0625) + 128;
      q = q < 0 ? 0 : q > 255 ? 255 : q;
      ck_assert_msg(((uint8_t *)y.data)[r * 3 + n] == (uint8_t)q, "y[%d][%d] = %d, want %d", r, n,
                    ((uint8_t *)y.data)[r * 3 + n], (int)q);
    }
  dynq__tensor_clear(&y);
  ins[1] = f32_tensor(s2, 1, (int64_t[]){2});
  ck_assert_int_eq(run_model(m, DYNQ_PRECISION_FP32, names, ins, 2, &y, err, sizeof err),
                   DYNQ_ESHAPE);
  ck_assert_msg(strstr(err, "node 'qmm_rt' (DequantizeLinear)") != NULL, "%s", err);
  ck_assert_msg(strstr(err, "the scale [2]") != NULL, "%s", err);
  dynq__model_unref(m);
}
END_TEST

/* nms_tail.onnx: NonMaxSuppression -> Gather of the selected boxes, both
 * outputs sized by the data, equal to numpy's on both paths. */
START_TEST(test_nms_tail) {
  dynq__model_t *m = convert_fixture("nms_tail.onnx");
  float *bx = load_raw("nms_boxes.f32", 80 * 4), *sc = load_raw("nms_scores.f32", 40 * 4);
  int64_t *wsel = load_raw("nms_sel.i64", 8 * 3 * 8);
  float *wbox = load_raw("nms_sel_boxes.f32", 8 * 4 * 4);
  dynq__tensor_t ins[2] = {f32_tensor(bx, 3, (int64_t[]){1, 20, 4}),
                           f32_tensor(sc, 3, (int64_t[]){1, 2, 20})};
  const char *names[] = {"boxes", "scores"};
  char err[256];
  for (int prec = 0; prec < 2; prec++) {
    dynq__tensor_t y[2] = {{0}};
    ck_assert_int_eq(run_model(m, prec ? DYNQ_PRECISION_INT8 : DYNQ_PRECISION_FP32, names, ins,
                               2, y, err, sizeof err), 0);
    ck_assert_int_eq(y[0].dtype, DYNQ_DT_I64);
    ck_assert_int_eq(y[0].rank, 2);
    ck_assert_int_eq(y[0].dims[0], 8);
    ck_assert_int_eq(y[0].dims[1], 3);
    ck_assert_mem_eq(y[0].data, wsel, 8 * 3 * sizeof(int64_t));
    ck_assert_int_eq(y[1].dims[0], 8);
    ck_assert_int_eq(y[1].dims[1], 4);
    ck_assert_mem_eq(y[1].data, wbox, 8 * 4 * sizeof(float));
    clear_outputs(y, 2);
  }
  /* scores all below the threshold: nothing selected, empty outputs */
  float zero[40] = {0};
  ins[1].data = zero;
  dynq__tensor_t y[2] = {{0}};
  ck_assert_int_eq(run_model(m, DYNQ_PRECISION_FP32, names, ins, 2, y, err, sizeof err), 0);
  ck_assert_int_eq(y[0].dims[0], 0);
  ck_assert_int_eq(y[1].dims[0], 0);
  clear_outputs(y, 2);
  dynq__model_unref(m);
  free(bx);
  free(sc);
  free(wsel);
  free(wbox);
}
END_TEST

/* conv3d.onnx (make_conv3d.py): a 3-D CNN (Conv 3x3x3 + folded
 * BatchNorm, MaxPool3d, a strided 1x3x3, a grouped and dilated 3x3x3, a
 * pointwise and a depthwise one; a strided, padded ConvTranspose 3x3x3
 * back up) against numpy in float64: FP32 (the
 * reference weights, and a --fp32 file) within rounding, INT8 (per patch
 * and --act-per-tensor) within the usual INT8 error; a 4-D input is
 * refused naming the node and the ranks. */
START_TEST(test_conv3d) {
  float *x = load_raw("conv3d_x.f32", 2 * 3 * 6 * 8 * 10 * sizeof(float));
  float *wf = load_raw("conv3d_f.f32", 2 * 16 * 3 * 4 * 5 * sizeof(float));
  float *wy = load_raw("conv3d_y.f32", 2 * 5 * sizeof(float));
  float *wu = load_raw("conv3d_u.f32", 2 * 8 * 480 * sizeof(float));
  char *in = fixture("conv3d.onnx");
  static const char *const opts[] = {NULL, "--act-per-tensor", "--fp32"};
  for (int o = 0; o < 3; o++) {
    char *outp = tmp_path("c3.dynq"), *log = NULL;
    int rc = opts[o] ? tu_quantize_log(&log, opts[o], in, outp, NULL)
                     : tu_quantize_log(&log, in, outp, NULL);
    ck_assert_msg(rc == 0, "dynq-quantize %s: %s", opts[o] ? opts[o] : "", log);
    if (o < 2) ck_assert_msg(strstr(log, "c3 ") && strstr(log, "int8 per-channel"), "%s", log);
    free(log);
    dynq__model_t *m = open_model(outp);
    dynq__tensor_t X = f32_tensor(x, 5, (int64_t[]){2, 3, 6, 8, 10});
    const char *names[] = {"x"};
    char err[256];
    for (int prec = 0; prec < 2; prec++) {
      if (o == 2 && prec == 1) break; /* --fp32: nothing INT8 */
      dynq__tensor_t y[3] = {{0}};
      ck_assert_msg(run_model(m, prec ? DYNQ_PRECISION_INT8 : DYNQ_PRECISION_FP32, names, &X, 1,
                              y, err, sizeof err) == 0, "%s", err);
      ck_assert_int_eq(y[0].rank, 5);
      ck_assert(y[0].dims[2] == 3 && y[0].dims[3] == 4 && y[0].dims[4] == 5);
      ck_assert(y[2].rank == 5 && y[2].dims[2] == 6 && y[2].dims[3] == 8 && y[2].dims[4] == 10);
      double ef = tu_rel_l2(y[0].data, wf, 2 * 16 * 60), ey = tu_rel_l2(y[1].data, wy, 10),
             eu = tu_rel_l2(y[2].data, wu, 2 * 8 * 480);
      printf("conv3d %s %s: f relL2 %.3g, y relL2 %.3g, u relL2 %.3g\n",
             opts[o] ? opts[o] : "(default)", prec ? "INT8" : "FP32", ef, ey, eu);
      ck_assert(ef <= (prec ? 0.02 : 1e-5) && ey <= (prec ? 0.03 : 1e-5) &&
                eu <= (prec ? 0.02 : 1e-5));
      clear_outputs(y, 3);
    }
    dynq__tensor_t X4 = f32_tensor(x, 4, (int64_t[]){6, 6, 8, 10});
    dynq__tensor_t y[3] = {{0}};
    ck_assert_int_eq(run_model(m, DYNQ_PRECISION_INT8, names, &X4, 1, y, err, sizeof err),
                     DYNQ_ESHAPE);
    ck_assert_msg(strstr(err, "x") != NULL, "%s", err);
    dynq__model_unref(m);
    free(outp);
  }
  free(in);
  free(x);
  free(wf);
  free(wy);
  free(wu);
}
END_TEST

/* The largest |got - want| over n floats (NaN: infinity). */
static double max_abs_diff(const float *got, const float *want, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - (double)want[i]);
    if (!(d <= m)) m = d;
  }
  return m;
}

/* <base>.onnx converted and run (the INT8 path) on ins into *y, which
 * must have the shape [rank, dims]; returns <base>_y.f32, the n expected
 * values (the caller frees it and clears *y). */
static float *run_fixture(const char *base, const char *const *names, const dynq__tensor_t *ins,
                          int n_in, int rank, const int64_t *dims, dynq__tensor_t *y,
                          int64_t *ret_n) {
  char file[128], err[256];
  snprintf(file, sizeof file, "%s.onnx", base);
  dynq__model_t *m = convert_fixture(file);
  memset(y, 0, sizeof(*y));
  ck_assert_msg(run_model(m, DYNQ_PRECISION_INT8, names, ins, n_in, y, err, sizeof err) == 0,
                "%s: %s", base, err);
  dynq__model_unref(m);  /* the outputs are the caller's */
  ck_assert_msg(y->rank == rank, "%s: rank %d, want %d", base, y->rank, rank);
  int64_t n = 1;
  for (int d = 0; d < rank; d++) {
    ck_assert_msg(y->dims[d] == dims[d], "%s: axis %d is %lld, want %lld", base, d,
                  (long long)y->dims[d], (long long)dims[d]);
    n *= dims[d];
  }
  *ret_n = n;
  snprintf(file, sizeof file, "%s_y.f32", base);
  return load_raw(file, (size_t)n * 4);
}

/* <base>.onnx converted and run on ins (run_fixture), its output within
 * tol of <base>_y.f32 (what: the reference's name, printed). */
static void expect_fixture(const char *base, const char *const *names, const dynq__tensor_t *ins,
                           int n_in, int rank, const int64_t *dims, double tol,
                           const char *what) {
  dynq__tensor_t y;
  int64_t n;
  float *want = run_fixture(base, names, ins, n_in, rank, dims, &y, &n);
  double d = max_abs_diff(y.data, want, n);
  printf("%s: max |d| %.2g against %s\n", base, d, what);
  ck_assert_msg(d <= tol, "%s: max |d| %g against %s", base, d, what);
  dynq__tensor_clear(&y);
  free(want);
}

/* GridSample in every mode x padding x align_corners (opset 16 names, and
 * opset 20's linear/cubic), against PyTorch's grid_sample; RoiAlign avg
 * and max, half_pixel and output_half_pixel, opsets 10 and 16, against
 * make_sample.py's float64 reference (ONNX Runtime's sampling rules, which
 * it checks on the two official node tests).  The inputs reach outside
 * the image (padding, samples dropped), one ROI is smaller than a pixel. */
START_TEST(test_sample_ops) {
  static const char *const modes[] = {"bilinear", "nearest", "bicubic"};
  static const char *const pads[] = {"zeros", "border", "reflection"};
  static const char *const o20[] = {"linear_border_ac0", "nearest_reflection_ac1",
                                    "cubic_zeros_ac0"};
  float *x = load_raw("gridsample_x.f32", 2 * 3 * 5 * 7 * 4);
  float *grid = load_raw("gridsample_grid.f32", 2 * 4 * 6 * 2 * 4);
  dynq__tensor_t in[2] = {f32_tensor(x, 4, (int64_t[]){2, 3, 5, 7}),
                          f32_tensor(grid, 4, (int64_t[]){2, 4, 6, 2})};
  const char *gnames[] = {"X", "grid"};
  char base[96];
  int64_t n;
  for (int k = 0; k < 21; k++) {
    if (k < 18)
      snprintf(base, sizeof base, "gridsample_%s_%s_ac%d", modes[k / 6], pads[k / 2 % 3], k % 2);
    else
      snprintf(base, sizeof base, "gridsample_%s_o20", o20[k - 18]);
    dynq__tensor_t y;
    float *want = run_fixture(base, gnames, in, 2, 4, (int64_t[]){2, 3, 4, 6}, &y, &n);
    double d = max_abs_diff(y.data, want, n);
    printf("%s: max |d| %.2g against torch\n", base, d);
    ck_assert_msg(d <= 2e-6, "%s: max |d| %g against torch", base, d);
    dynq__tensor_clear(&y);
    free(want);
  }
  free(x);
  free(grid);

  static const struct { const char *base; int64_t oh, ow; } rois[] = {
      {"roialign_avg_half_o16", 3, 4}, {"roialign_avg_outhalf_o16", 2, 2},
      {"roialign_max_half_o16", 2, 3}, {"roialign_avg_o10", 2, 2}};
  float *rx = load_raw("roialign_x.f32", 2 * 3 * 10 * 12 * 4);
  float *rr = load_raw("roialign_rois.f32", 5 * 4 * 4);
  int64_t *rb = load_raw("roialign_bi.i64", 5 * 8);
  dynq__tensor_t rin[3] = {f32_tensor(rx, 4, (int64_t[]){2, 3, 10, 12}),
                           f32_tensor(rr, 2, (int64_t[]){5, 4}),
                           {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {5}, .data = rb}};
  const char *rnames[] = {"X", "rois", "batch_indices"};
  for (size_t k = 0; k < sizeof rois / sizeof rois[0]; k++) {
    dynq__tensor_t y;
    float *want = run_fixture(rois[k].base, rnames, rin, 3, 4,
                              (int64_t[]){5, 3, rois[k].oh, rois[k].ow}, &y, &n);
    double d = max_abs_diff(y.data, want, n);
    printf("%s: max |d| %.2g against the reference\n", rois[k].base, d);
    ck_assert_msg(d <= 2e-6, "%s: max |d| %g against the reference", rois[k].base, d);
    dynq__tensor_clear(&y);
    free(want);
  }
  free(rx);
  free(rr);
  free(rb);
}
END_TEST

/* Resize at opset 18 (make_resize18.py): antialias (linear and cubic,
 * shrinking, growing and both at once, four coordinate modes,
 * exclude_outside), axes (in order, reversed, negative) and
 * keep_aspect_ratio_policy (not_larger, not_smaller), against the
 * script's float64 reference of ONNX's definition.  ONNX Runtime 1.30
 * agrees with those references within 2.9e-6 on all but
 * resize18_aa_linear_ac (antialias with align_corners, where it is off by
 * up to 1.29: it does not follow the reference there). */
START_TEST(test_resize18) {
  static const int64_t sx[] = {2, 3, 10, 13};
  static const struct { const char *base; int64_t od[4]; } cases[] = {
      {"resize18_aa_linear", {2, 3, 6, 7}},       {"resize18_aa_linear_sizes", {2, 3, 3, 4}},
      {"resize18_aa_linear_pt", {2, 3, 4, 5}},    {"resize18_aa_linear_ac", {2, 3, 4, 3}},
      {"resize18_aa_cubic", {2, 3, 6, 7}},        {"resize18_aa_cubic_excl", {2, 3, 3, 6}},
      {"resize18_aa_mixed", {2, 3, 5, 22}},       {"resize18_aa_up", {2, 3, 20, 19}},
      {"resize18_axes_linear", {2, 3, 20, 6}},    {"resize18_axes_rev", {2, 3, 4, 7}},
      {"resize18_axes_neg", {2, 3, 10, 5}},       {"resize18_keep_small", {2, 3, 5, 7}},
      {"resize18_keep_large", {2, 3, 7, 9}},      {"resize18_keep_aa_cubic", {2, 3, 6, 8}},
  };
  float *x = load_raw("resize18_x.f32", 2 * 3 * 10 * 13 * 4);
  dynq__tensor_t in = f32_tensor(x, 4, sx);
  const char *xname[] = {"X"};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    expect_fixture(cases[k].base, xname, &in, 1, 4, cases[k].od, 1e-6, "the float64 reference");
    /* every one has antialias, axes or a policy: the header says so
     * (older readers refuse the file instead of ignoring them) */
    char *outp = tmp_path("fixture.dynq");
    size_t fn = 0;
    void *hdr = tu_read_file(outp, &fn);
    ck_assert(hdr != NULL && fn >= sizeof(dynq__fhdr_t));
    ck_assert_msg(((const dynq__fhdr_t *)hdr)->flags == DYNQ_FFLAG_RESIZE18, "%s: flags %#x",
                  cases[k].base, ((const dynq__fhdr_t *)hdr)->flags);
    free(hdr);
    free(outp);
  }
  free(x);
}
END_TEST

/* float64 and bfloat16 graph inputs and outputs, bfloat16 weights and
 * Cast to bfloat16 (make_wide_io.py): X and Y travel as float32; W (in
 * int32_data) and B (in raw_data) are widened exactly; each Cast to
 * bfloat16 rounds to nearest, ties to even (four ties in X[0]), so the
 * output equals numpy's exactly.  The header marks the bfloat16 Cast
 * (older readers kept every bit).  The summary says what is served as
 * float32. */
START_TEST(test_wide_io) {
  static const int64_t sx[] = {3, 8};
  float *x = load_raw("wide_x.f32", 3 * 8 * 4);
  dynq__tensor_t in = f32_tensor(x, 2, sx);
  const char *xname[] = {"X"};
  expect_fixture("wide_io", xname, &in, 1, 2, sx, 0, "numpy's bfloat16 rounding");
  char *outp = tmp_path("fixture.dynq");
  size_t fn = 0;
  void *hdr = tu_read_file(outp, &fn);
  ck_assert(hdr != NULL && fn >= sizeof(dynq__fhdr_t));
  ck_assert_uint_eq(((const dynq__fhdr_t *)hdr)->flags, DYNQ_FFLAG_CAST_BF16);
  free(hdr);
  const struct {
    const char *file, *note;
  } notes[] = {
      {"wide_io.onnx", "note: float64 graph inputs/outputs are served as float32"},
      {"wide_bf16io.onnx", "note: bfloat16 graph inputs/outputs are served as float32"},
  };
  for (size_t k = 0; k < sizeof notes / sizeof notes[0]; k++) {
    char *p = fixture(notes[k].file), *log = NULL;
    ck_assert_int_eq(tu_quantize_log(&log, p, outp, NULL), 0);
    ck_assert_msg(strstr(log, notes[k].note) != NULL, "%s: %s", notes[k].file, log);
    free(log);
    free(p);
  }
  /* bfloat16 in and out: Relu on float32 values, the flag not needed */
  dynq__model_t *m = open_model(outp);
  dynq__tensor_t y;
  char err[256];
  memset(&y, 0, sizeof(y));
  ck_assert_msg(run_model(m, DYNQ_PRECISION_INT8, xname, &in, 1, &y, err, sizeof err) == 0, "%s",
                err);
  ck_assert_int_eq(y.dtype, DYNQ_DT_F32);
  for (int i = 0; i < 24; i++) ck_assert_float_eq(((float *)y.data)[i], x[i] > 0 ? x[i] : 0);
  dynq__tensor_clear(&y);
  dynq__model_unref(m);
  hdr = tu_read_file(outp, &fn);
  ck_assert(hdr != NULL && fn >= sizeof(dynq__fhdr_t));
  ck_assert_uint_eq(((const dynq__fhdr_t *)hdr)->flags, 0);
  free(hdr);
  free(outp);
  free(x);
}
END_TEST

/* AffineGrid (make_affinegrid.py): 2-D and 3-D, align_corners 0 and 1,
 * an axis of length 1, against the script's float64 grids (which equal
 * PyTorch's affine_grid within 1e-12).  ONNX Runtime 1.30 agrees within
 * 2.4e-7 except on the unit axis with align_corners (it puts it at 1,
 * PyTorch and dynq at 0). */
START_TEST(test_affine_grid) {
  static const struct { const char *base; int rank, sp; int64_t od[5]; } cases[] = {
      {"affinegrid_2d_ac0", 4, 2, {2, 5, 7, 2}},   {"affinegrid_2d_ac1", 4, 2, {2, 5, 7, 2}},
      {"affinegrid_2d_unit", 4, 2, {2, 1, 4, 2}},  {"affinegrid_3d_ac0", 5, 3, {2, 3, 4, 5, 3}},
      {"affinegrid_3d_ac1", 5, 3, {2, 3, 4, 5, 3}},
  };
  float *t2 = load_raw("affinegrid_theta2.f32", 2 * 2 * 3 * 4);
  float *t3 = load_raw("affinegrid_theta3.f32", 2 * 3 * 4 * 4);
  const char *names[] = {"theta"};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const int sp = cases[k].sp;
    dynq__tensor_t in = f32_tensor(sp == 2 ? t2 : t3, 3, (int64_t[]){2, sp, sp + 1});
    expect_fixture(cases[k].base, names, &in, 1, cases[k].rank, cases[k].od, 1e-6,
                   "the float64 grid");
  }
  free(t2);
  free(t3);
}
END_TEST

/* Col2Im (make_col2im.py): 1-D, 2-D and 3-D, strides, dilations and
 * asymmetric pads, against the script's float64 sums (the 2-D ones with
 * symmetric pads equal PyTorch's fold).  ONNX Runtime 1.30 agrees within
 * 4.8e-7 except on the 3-D one, whose dilation it gets wrong (its output
 * fails the adjoint identity with im2col that the reference passes). */
START_TEST(test_col2im) {
  static const struct { const char *base; int rank; int64_t xd[3], od[5]; } cases[] = {
      {"col2im_2d", 4, {2, 18, 16}, {2, 3, 5, 6}},
      {"col2im_2d_sdp", 4, {1, 12, 16}, {1, 2, 7, 6}},
      {"col2im_2d_asym", 4, {1, 8, 9}, {1, 2, 6, 5}},
      {"col2im_1d", 3, {2, 6, 6}, {2, 2, 10}},
      {"col2im_3d", 5, {1, 24, 8}, {1, 2, 3, 4, 5}},
  };
  const char *names[] = {"X"};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    char file[64];
    snprintf(file, sizeof file, "%s_x.f32", cases[k].base);
    const int64_t *xd = cases[k].xd;
    float *x = load_raw(file, (size_t)(xd[0] * xd[1] * xd[2]) * 4);
    dynq__tensor_t in = f32_tensor(x, 3, xd);
    expect_fixture(cases[k].base, names, &in, 1, cases[k].rank, cases[k].od, 1e-6,
                   "the float64 sums");
    free(x);
  }
}
END_TEST

/* RotaryEmbedding (make_rotary.py): 4-D and 3-D (num_heads), halves and
 * interleaved pairs, a partial rotary_embedding_dim, caches picked by
 * position_ids or given per token, against the script's float64 rotation.
 * ONNX Runtime 1.30 agrees with those references within 2.4e-7. */
START_TEST(test_rotary) {
  static const struct { const char *base; int rank, pos; int64_t xd[4], cd[3]; } cases[] = {
      {"rope_4d_pos", 4, 1, {2, 3, 5, 8}, {16, 4}},
      {"rope_4d_inter", 4, 1, {2, 3, 5, 8}, {16, 4}},
      {"rope_4d_partial", 4, 1, {1, 2, 4, 10}, {16, 3}},
      {"rope_3d_cache", 3, 0, {2, 5, 12}, {2, 5, 2}},
      {"rope_3d_inter_partial", 3, 1, {1, 4, 16}, {16, 2}},
  };
  const char *names[] = {"X", "cos", "sin", "pos"};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const char *b = cases[k].base;
    const int crank = cases[k].pos ? 2 : 3;
    int64_t nx = 1, nc = 1;
    for (int d = 0; d < cases[k].rank; d++) nx *= cases[k].xd[d];
    for (int d = 0; d < crank; d++) nc *= cases[k].cd[d];
    char f[4][64];
    snprintf(f[0], sizeof f[0], "%s_x.f32", b);
    snprintf(f[1], sizeof f[1], "%s_cos.f32", b);
    snprintf(f[2], sizeof f[2], "%s_sin.f32", b);
    snprintf(f[3], sizeof f[3], "%s_pos.i64", b);
    float *x = load_raw(f[0], (size_t)nx * 4), *cs = load_raw(f[1], (size_t)nc * 4),
          *sn = load_raw(f[2], (size_t)nc * 4);
    const int64_t B = cases[k].xd[0], S = cases[k].xd[cases[k].rank == 4 ? 2 : 1];
    int64_t *pos = cases[k].pos ? load_raw(f[3], (size_t)(B * S) * 8) : NULL;
    dynq__tensor_t in[4] = {f32_tensor(x, cases[k].rank, cases[k].xd),
                            f32_tensor(cs, crank, cases[k].cd), f32_tensor(sn, crank, cases[k].cd),
                            {.dtype = DYNQ_DT_I64, .rank = 2, .dims = {B, S}, .data = pos}};
    expect_fixture(b, names, in, cases[k].pos ? 4 : 3, cases[k].rank, cases[k].xd, 1e-6,
                   "the float64 rotation");
    free(x);
    free(cs);
    free(sn);
    free(pos);
  }
}
END_TEST

/* DeformConv (make_deform.py): offsets reaching outside the image, far
 * outside, strides, dilations, asymmetric pads, group and offset_group
 * 2 and 3, a mask with and without a bias, a one-row image, zero offsets
 * (an ordinary convolution, which the script checks against a direct
 * one), against the script's float64 definition (which ONNX Runtime 1.30
 * matches within 2.4e-6); then the attributes refused at import, each
 * naming its node. */
START_TEST(test_deform_conv) {
  static const struct {
    const char *base;
    int mask;
    int64_t xd[4], od[4], yd[4];
  } cases[] = {
      {"deform_basic", 0, {2, 4, 7, 8}, {2, 18, 7, 8}, {2, 6, 7, 8}},
      {"deform_groups_mask", 1, {1, 4, 9, 10}, {1, 24, 4, 9}, {1, 4, 4, 9}},
      {"deform_far", 1, {1, 3, 6, 6}, {1, 18, 6, 3}, {1, 3, 6, 3}},
      {"deform_row", 0, {2, 2, 1, 9}, {2, 6, 1, 7}, {2, 3, 1, 7}},
      {"deform_zero", 0, {1, 4, 6, 7}, {1, 18, 5, 4}, {1, 4, 5, 4}},
  };
  const char *names[] = {"X", "offset", "mask"};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const char *b = cases[k].base;
    int64_t nx = 1, no = 1;
    for (int d = 0; d < 4; d++) nx *= cases[k].xd[d], no *= cases[k].od[d];
    int64_t md[4] = {cases[k].od[0], cases[k].od[1] / 2, cases[k].od[2], cases[k].od[3]};
    char f[3][64];
    snprintf(f[0], sizeof f[0], "%s_x.f32", b);
    snprintf(f[1], sizeof f[1], "%s_off.f32", b);
    snprintf(f[2], sizeof f[2], "%s_mask.f32", b);
    float *x = load_raw(f[0], (size_t)nx * 4), *off = load_raw(f[1], (size_t)no * 4);
    float *m = cases[k].mask ? load_raw(f[2], (size_t)no * 2) : NULL;
    dynq__tensor_t in[3] = {f32_tensor(x, 4, cases[k].xd), f32_tensor(off, 4, cases[k].od),
                            f32_tensor(m, 4, md)};
    expect_fixture(b, names, in, cases[k].mask ? 3 : 2, 4, cases[k].yd, 1e-5,
                   "the float64 definition");
    free(x);
    free(off);
    free(m);
  }
  const char *want[] = {"node 'og0' (op DeformConv): offset_group 0 is not within [1, 65536]",
                        "node 'dil0' (op DeformConv): dilations[0] 0 is not within [1, 65536]",
                        "node 'k3d' (op DeformConv): 3 spatial axes; 2-D DeformConv is supported",
                        "node 'odd' (op DeformConv): attribute 'auto_pad' is not supported",
                        "4 nodes cannot be converted", NULL};
  expect_fixture_fail("bad_deform.onnx", want);
}
END_TEST

/* Attention (opset 23; make_attention23.py, whose manifest
 * attention23_cases.txt lists each case's inputs and outputs): 4-D and
 * 3-D, MHA, GQA, MQA, v_head_size != head_size, bool and float masks
 * broadcast (one shorter than the keys), is_causal with and without past
 * keys, present_key / present_value, scale, softcap, the four
 * qk_matmul_output modes; every output against the script's float64
 * attention (softcap before the mask, as ONNX Runtime).  ONNX Runtime
 * 1.30 agrees within 3.6e-7 except that it refuses a mask shorter than
 * the keys (tests/fixtures/README.md). */
START_TEST(test_attention23) {
  char *p = fixture("attention23_cases.txt");
  size_t nb = 0;
  char *txt = tu_read_file(p, &nb);
  ck_assert_msg(txt != NULL, "cannot read %s", p);
  free(p);
  char *text = malloc(nb + 1);
  memcpy(text, txt, nb);
  text[nb] = 0;
  free(txt);
  int n_cases = 0;
  char *save = NULL;
  char base[64] = "";
  char names[8][32];
  const char *np[8];
  dynq__tensor_t ins[8];
  void *bufs[8];
  int n_in = 0, n_out = 0;
  struct { char name[32]; int rank; int64_t dims[4]; } outs[4];
  for (char *l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
    char w[32], nm[32], dt[8];
    int rank = 0, used = 0;
    int64_t dims[4] = {0};
    ck_assert(sscanf(l, "%31s%n", w, &used) == 1);
    const char *rest = l + used;
    if (strcmp(w, "case") == 0) {
      ck_assert(sscanf(rest, "%63s", base) == 1);
      n_in = n_out = 0;
    } else if (strcmp(w, "in") == 0 || strcmp(w, "out") == 0) {
      const int isin = w[0] == 'i';
      int k = isin ? sscanf(rest, "%31s %7s %d%n", nm, dt, &rank, &used)
                   : sscanf(rest, "%31s %d%n", nm, &rank, &used);
      ck_assert_int_eq(k, isin ? 3 : 2);
      ck_assert(rank >= 1 && rank <= 4);
      rest += used;
      int64_t n = 1;
      for (int d = 0; d < rank; d++) {
        long long v = 0;
        ck_assert(sscanf(rest, "%lld%n", &v, &used) == 1);
        dims[d] = v;
        rest += used;
        n *= dims[d];
      }
      if (isin) {
        ck_assert(n_in < 8);
        char f[320];
        snprintf(f, sizeof f, "%s_%s.%s", base, nm, dt);
        const int u8 = strcmp(dt, "u8") == 0;
        bufs[n_in] = load_raw(f, (size_t)n * (u8 ? 1 : 4));
        ins[n_in] = f32_tensor(bufs[n_in], rank, dims);
        if (u8) ins[n_in].dtype = DYNQ_DT_U8;
        snprintf(names[n_in], sizeof names[n_in], "%s", nm);
        np[n_in] = names[n_in];
        n_in++;
      } else {
        ck_assert(n_out < 4);
        snprintf(outs[n_out].name, sizeof outs[n_out].name, "%s", nm);
        outs[n_out].rank = rank;
        memcpy(outs[n_out].dims, dims, sizeof dims);
        n_out++;
      }
    } else if (strcmp(w, "end") == 0) {
      char file[96], err[256];
      snprintf(file, sizeof file, "%s.onnx", base);
      dynq__model_t *m = convert_fixture(file);
      dynq__tensor_t y[4];
      memset(y, 0, sizeof y);
      ck_assert_int_eq(dynq__model_graph(m)->n_outputs, n_out);
      ck_assert_msg(run_model(m, DYNQ_PRECISION_INT8, np, ins, n_in, y, err, sizeof err) == 0,
                    "%s: %s", base, err);
      for (int o = 0; o < n_out; o++) {
        int64_t n = 1;
        ck_assert_msg(y[o].rank == outs[o].rank, "%s %s: rank %d", base, outs[o].name, y[o].rank);
        for (int d = 0; d < outs[o].rank; d++) {
          ck_assert_msg(y[o].dims[d] == outs[o].dims[d], "%s %s: axis %d is %lld", base,
                        outs[o].name, d, (long long)y[o].dims[d]);
          n *= outs[o].dims[d];
        }
        char f[320];
        snprintf(f, sizeof f, "%s_%s.f32", base, outs[o].name);
        float *want = load_raw(f, (size_t)n * 4);
        double dd = max_abs_diff(y[o].data, want, n);
        printf("%s %s: max |d| %.2g against the float64 attention\n", base, outs[o].name, dd);
        ck_assert_msg(dd <= 1e-5, "%s %s: max |d| %g", base, outs[o].name, dd);
        free(want);
      }
      clear_outputs(y, n_out);
      dynq__model_unref(m);
      for (int i = 0; i < n_in; i++) free(bufs[i]);
      n_in = 0;
      n_cases++;
    }
  }
  free(text);
  ck_assert_int_eq(n_cases, 16);
}
END_TEST

/* LpPool (opsets 1, 2, 11, 18: p as opset 1's float, pads, SAME_UPPER,
 * dilations and ceil_mode; 1-D, 2-D, 3-D), GlobalLpPool (opsets 1, 2),
 * LpNormalization (three axes, p 1 and 2, rows of zeros: 0) against
 * make_lpops.py's float64 definitions, MaxRoiPool (ROIs partly and wholly
 * outside, inverted, rounding halves, a 7 / 3 bin) equal to its float32
 * bin arithmetic.  The script's references agree with ONNX Runtime 1.30
 * (within 1.2e-7 relative; MaxRoiPool exactly) where ORT runs the model
 * (not LpPool-1 / GlobalLpPool-1). */
START_TEST(test_lp_ops) {
  static const int64_t sx1[] = {2, 3, 9}, sx2[] = {2, 3, 7, 8}, sx3[] = {1, 2, 4, 5, 6};
  static const struct {
    const char *base, *x;
    int rank;
    const int64_t *xd;
    int64_t od[5];
  } cases[] = {
      {"lppool_2d_o1", "lpops_x2.f32", 4, sx2, {2, 3, 3, 4}},
      {"lppool_2d_o2", "lpops_x2.f32", 4, sx2, {2, 3, 4, 4}},
      {"lppool_2d_o11_same", "lpops_x2.f32", 4, sx2, {2, 3, 4, 3}},
      {"lppool_2d_o11_defaults", "lpops_x2.f32", 4, sx2, {2, 3, 6, 6}},
      {"lppool_2d_o18", "lpops_x2.f32", 4, sx2, {2, 3, 4, 4}},
      {"lppool_1d", "lpops_x1.f32", 3, sx1, {2, 3, 5}},
      {"lppool_3d", "lpops_x3.f32", 5, sx3, {1, 2, 4, 3, 3}},
      {"globallppool_o1", "lpops_x2.f32", 4, sx2, {2, 3, 1, 1}},
      {"globallppool_o2_p3", "lpops_x2.f32", 4, sx2, {2, 3, 1, 1}},
      {"globallppool_3d", "lpops_x3.f32", 5, sx3, {1, 2, 1, 1, 1}},
      {"lpnorm_default", "lpops_x2.f32", 4, sx2, {2, 3, 7, 8}},
      {"lpnorm_axis1_p1", "lpops_x2.f32", 4, sx2, {2, 3, 7, 8}},
      {"lpnorm_axis0_p2", "lpops_x2.f32", 4, sx2, {2, 3, 7, 8}},
  };
  const char *xname[] = {"X", "rois"};
  int64_t n;
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    int64_t nx = 1;
    for (int d = 0; d < cases[k].rank; d++) nx *= cases[k].xd[d];
    float *x = load_raw(cases[k].x, (size_t)nx * 4);
    dynq__tensor_t in = f32_tensor(x, cases[k].rank, cases[k].xd), y;
    float *want = run_fixture(cases[k].base, xname, &in, 1, cases[k].rank, cases[k].od, &y, &n);
    /* relative: the global pools' sums reach 1e2 */
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
      double w = want[i], d = fabs((double)((float *)y.data)[i] - w) / (fabs(w) > 1 ? fabs(w) : 1);
      if (!(d <= worst)) worst = d;
    }
    printf("%s: max relative |d| %.2g against the float64 reference\n", cases[k].base, worst);
    ck_assert_msg(worst <= 2.4e-7, "%s: max relative |d| %g", cases[k].base, worst);
    dynq__tensor_clear(&y);
    free(want);
    free(x);
  }

  static const struct { const char *base; int64_t ph, pw; } rp[] = {
      {"maxroipool_3x2", 3, 2}, {"maxroipool_2x2_s05", 2, 2}};
  float *rx = load_raw("maxroipool_x.f32", 2 * 3 * 10 * 12 * 4);
  float *rr = load_raw("maxroipool_rois.f32", 6 * 5 * 4);
  dynq__tensor_t rin[2] = {f32_tensor(rx, 4, (int64_t[]){2, 3, 10, 12}),
                           f32_tensor(rr, 2, (int64_t[]){6, 5})};
  for (size_t k = 0; k < sizeof rp / sizeof rp[0]; k++) {
    dynq__tensor_t y;
    float *want = run_fixture(rp[k].base, xname, rin, 2, 4, (int64_t[]){6, 3, rp[k].ph, rp[k].pw},
                              &y, &n);
    ck_assert_msg(memcmp(y.data, want, (size_t)n * 4) == 0, "%s: not the reference's values",
                  rp[k].base);
    dynq__tensor_clear(&y);
    free(want);
  }
  free(rx);
  free(rr);
}
END_TEST

/* GroupNormalization at opset 18 (scale and bias per group) and 21 (per
 * channel), 3-D and 4-D, num_groups 1, C and in between, a group of equal
 * values (the bias exactly) and a channel scaled by 1e3; RMSNormalization
 * (opset 23) over the last axis, axes 1.. and -2.. and all axes, with a
 * scale of the full normalized shape, broadcast ones ([4, 1], [1, 16],
 * [1]) and a row of zeros: converted with --fp32, run FP32, against
 * make_norms.py's float64 definitions.  The script's references agree
 * with ONNX Runtime 1.30 within 4.8e-7 (3.9e-7 relative) on all 13. */
START_TEST(test_norm_ops) {
  static const int64_t x3[] = {2, 6, 10}, x4[] = {2, 8, 5, 6}, r3[] = {3, 7, 16},
                       r4[] = {2, 3, 4, 5};
  static const struct {
    const char *base, *x;
    int rank;
    const int64_t *xd;
  } cases[] = {
      {"groupnorm_o18_g4_4d", "norms_x4.f32", 4, x4},
      {"groupnorm_o18_g1_3d", "norms_x3.f32", 3, x3},
      {"groupnorm_o18_gc_4d", "norms_x4.f32", 4, x4},
      {"groupnorm_o18_g3_3d", "norms_x3.f32", 3, x3},
      {"groupnorm_o21_g4_4d", "norms_x4.f32", 4, x4},
      {"groupnorm_o21_g3_3d", "norms_x3.f32", 3, x3},
      {"groupnorm_o21_g1_4d", "norms_x4.f32", 4, x4},
      {"groupnorm_o21_gc_3d", "norms_x3.f32", 3, x3},
      {"rmsnorm_last", "norms_r3.f32", 3, r3},
      {"rmsnorm_axis1_full", "norms_r4.f32", 4, r4},
      {"rmsnorm_axis1_bcast", "norms_r4.f32", 4, r4},
      {"rmsnorm_axism2_bcast", "norms_r3.f32", 3, r3},
      {"rmsnorm_axis0_scalar", "norms_r4.f32", 4, r4},
  };
  const char *xname[] = {"X"};
  char file[128], err[256];
  char *outp = tmp_path("norm.dynq");
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    int64_t n = 1;
    for (int d = 0; d < cases[k].rank; d++) n *= cases[k].xd[d];
    float *x = load_raw(cases[k].x, (size_t)n * 4);
    snprintf(file, sizeof file, "%s.onnx", cases[k].base);
    char *in = fixture(file), *log = NULL;
    ck_assert_msg(tu_quantize_log(&log, "--fp32", in, outp, NULL) == 0, "%s: %s", file, log);
    free(log);
    free(in);
    dynq__model_t *m = open_model(outp);
    dynq__tensor_t X = f32_tensor(x, cases[k].rank, cases[k].xd), y = {0};
    ck_assert_msg(run_model(m, DYNQ_PRECISION_FP32, xname, &X, 1, &y, err, sizeof err) == 0,
                  "%s: %s", cases[k].base, err);
    dynq__model_unref(m);
    ck_assert_int_eq(y.rank, cases[k].rank);
    for (int d = 0; d < cases[k].rank; d++) ck_assert_int_eq(y.dims[d], cases[k].xd[d]);
    snprintf(file, sizeof file, "%s_y.f32", cases[k].base);
    float *want = load_raw(file, (size_t)n * 4);
    double worst = 0, worst_rel = 0;
    for (int64_t i = 0; i < n; i++) {
      double w = want[i], d = fabs((double)((float *)y.data)[i] - w);
      double r = d / (fabs(w) > 1 ? fabs(w) : 1);
      if (!(d <= worst)) worst = d;
      if (!(r <= worst_rel)) worst_rel = r;
    }
    printf("%s: max |d| %.2g, max relative %.2g against the float64 reference\n",
           cases[k].base, worst, worst_rel);
    ck_assert_msg(worst_rel <= 2.4e-7, "%s: max relative |d| %g", cases[k].base, worst_rel);
    dynq__tensor_clear(&y);
    free(want);
    free(x);
  }
  /* the group of equal values X[1, 0:2] gives the bias exactly (groups
   * of two channels at num_groups 4, opset 18: bias[0]) */
  {
    snprintf(file, sizeof file, "groupnorm_o18_g4_4d.onnx");
    char *in = fixture(file), *log = NULL;
    ck_assert_msg(tu_quantize_log(&log, "--fp32", in, outp, NULL) == 0, "%s", log);
    free(log);
    free(in);
    dynq__model_t *m = open_model(outp);
    float *x = load_raw("norms_x4.f32", 480 * 4), *want = load_raw("groupnorm_o18_g4_4d_y.f32",
                                                                    480 * 4);
    dynq__tensor_t X = f32_tensor(x, 4, x4), y = {0};
    ck_assert_int_eq(run_model(m, DYNQ_PRECISION_FP32, xname, &X, 1, &y, err, sizeof err), 0);
    const float *py = y.data;
    for (int i = 240; i < 300; i++) ck_assert(py[i] == py[240] && py[i] == want[i]);
    dynq__tensor_clear(&y);
    dynq__model_unref(m);
    free(x);
    free(want);
  }
  free(outp);
}
END_TEST

/* make_poolpad.py's opset 18/19 fixtures, converted with --fp32 and run:
 * each output equal to the script's reference (integers and copies
 * exactly, averages within tol).  The references agree with ONNX Runtime
 * 1.30 (outside the script: averages within 1.2e-7, the rest exactly)
 * but where the script's docstring says ORT differs. */
typedef struct pp_in {
  const char *name, *file;
  dynq_dtype_t dt;
  int rank;
  int64_t dims[5];
} pp_in_t;

typedef struct pp_case {
  const char *base;
  pp_in_t in[2];
  int n_in;
  dynq_dtype_t ydt;
  int yrank;
  int64_t ydims[5];
  double tol;     /* 0: bit-exact */
  uint32_t flags; /* the .dynq header's DYNQ_FFLAG_* */
} pp_case_t;

static void poolpad_run(const pp_case_t *k) {
  char file[128], err[256], *log = NULL;
  snprintf(file, sizeof file, "%s.onnx", k->base);
  char *in = fixture(file), *outp = tmp_path("poolpad.dynq");
  ck_assert_msg(tu_quantize_log(&log, "--fp32", in, outp, NULL) == 0, "dynq-quantize %s: %s",
                file, log);
  free(log);
  dynq__model_t *m = open_model(outp);
  size_t fn = 0;
  void *hdr = tu_read_file(outp, &fn);
  ck_assert(hdr != NULL && fn >= sizeof(dynq__fhdr_t));
  ck_assert_msg(((const dynq__fhdr_t *)hdr)->flags == k->flags, "%s: header flags %#x, want %#x",
                k->base, ((const dynq__fhdr_t *)hdr)->flags, k->flags);
  free(hdr);
  free(in);
  free(outp);
  dynq__tensor_t ins[2];
  void *bufs[2] = {NULL, NULL};
  const char *names[2];
  for (int i = 0; i < k->n_in; i++) {
    const pp_in_t *pi = &k->in[i];
    memset(&ins[i], 0, sizeof ins[i]);
    ins[i].dtype = pi->dt;
    ins[i].rank = pi->rank;
    memcpy(ins[i].dims, pi->dims, sizeof pi->dims);
    bufs[i] = ins[i].data = load_raw(pi->file, dynq__tensor_nbytes(&ins[i]));
    names[i] = pi->name;
  }
  dynq__tensor_t y = {0};
  ck_assert_msg(run_model(m, DYNQ_PRECISION_FP32, names, ins, k->n_in, &y, err, sizeof err) == 0,
                "%s: %s", k->base, err);
  ck_assert_msg(y.dtype == k->ydt && y.rank == k->yrank, "%s: %s of rank %d", k->base,
                dynq__dtype_name(y.dtype), y.rank);
  for (int d = 0; d < k->yrank; d++)
    ck_assert_msg(y.dims[d] == k->ydims[d], "%s: axis %d is %lld, want %lld", k->base, d,
                  (long long)y.dims[d], (long long)k->ydims[d]);
  const char *sfx = k->ydt == DYNQ_DT_F32 ? "f32" : k->ydt == DYNQ_DT_I8 ? "i8" :
                    k->ydt == DYNQ_DT_U8 ? "u8" : k->ydt == DYNQ_DT_I32 ? "i32" : "i64";
  snprintf(file, sizeof file, "%s_y.%s", k->base, sfx);
  size_t nb = dynq__tensor_nbytes(&y);
  void *want = load_raw(file, nb);
  if (k->tol > 0) {
    double dmax = max_abs_diff(y.data, want, dynq__tensor_numel(&y));
    printf("%s: max |d| %.2g against the float64 reference\n", k->base, dmax);
    ck_assert_msg(dmax <= k->tol, "%s: max |d| %g", k->base, dmax);
  } else {
    ck_assert_msg(memcmp(y.data, want, nb) == 0, "%s: not the reference's values", k->base);
  }
  free(want);
  for (int i = 0; i < k->n_in; i++) free(bufs[i]);
  dynq__tensor_clear(&y);
  dynq__model_unref(m);
}

#define PP_X1 {"X", "poolpad_x1.f32", DYNQ_DT_F32, 3, {2, 3, 11}}
#define PP_X2 {"X", "poolpad_x2.f32", DYNQ_DT_F32, 4, {2, 3, 7, 8}}

/* AveragePool's dilations (opset 19): 1-D and 2-D, count_include_pad 0
 * and 1, ceil_mode 0 and 1 (a last window past the end padding), pads,
 * strides, SAME_UPPER by the dilated span.  The files with dilations and
 * count_include_pad carry the header bit that older readers refuse. */
START_TEST(test_avgpool_dilations) {
  enum { DIL = DYNQ_FFLAG_AVGPOOL_DILATED }; /* dilated and count_include_pad */
  static const pp_case_t cases[] = {
      {"avgpool_dil_1d", {PP_X1}, 1, DYNQ_DT_F32, 3, {2, 3, 10}, 1e-6},
      {"avgpool_dil_1d_cip_ceil", {PP_X1}, 1, DYNQ_DT_F32, 3, {2, 3, 5}, 1e-6, DIL},
      {"avgpool_dil_1d_ceil", {PP_X1}, 1, DYNQ_DT_F32, 3, {2, 3, 4}, 1e-6},
      {"avgpool_dil_2d", {PP_X2}, 1, DYNQ_DT_F32, 4, {2, 3, 4, 6}, 1e-6},
      {"avgpool_dil_2d_cip", {PP_X2}, 1, DYNQ_DT_F32, 4, {2, 3, 3, 6}, 1e-6, DIL},
      {"avgpool_dil_2d_cip_ceil", {PP_X2}, 1, DYNQ_DT_F32, 4, {2, 3, 4, 3}, 1e-6, DIL},
      {"avgpool_dil_2d_nopad", {PP_X2}, 1, DYNQ_DT_F32, 4, {2, 3, 5, 6}, 1e-6},
      {"avgpool_dil_2d_same", {PP_X2}, 1, DYNQ_DT_F32, 4, {2, 3, 7, 8}, 1e-6, DIL},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) poolpad_run(&cases[k]);
}
END_TEST

/* Pad mode "wrap" (opset 19): pads narrower than, as wide as and wider
 * than the axis (wrapping again), ranks 1 to 4, axes, negative pads
 * (cropped first, the rest repeated); values are their own indices, so
 * equality is exact. */
START_TEST(test_pad_wrap) {
#define PW(r, ...) {"X", "padw_x" #r ".f32", DYNQ_DT_F32, r, {__VA_ARGS__}}
  static const pp_case_t cases[] = {
      {"padw_1d_small", {PW(1, 5)}, 1, DYNQ_DT_F32, 1, {10}, 0},
      {"padw_1d_equal", {PW(1, 5)}, 1, DYNQ_DT_F32, 1, {15}, 0},
      {"padw_1d_large", {PW(1, 5)}, 1, DYNQ_DT_F32, 1, {24}, 0},
      {"padw_2d", {PW(2, 3, 4)}, 1, DYNQ_DT_F32, 2, {8, 11}, 0},
      {"padw_3d", {PW(3, 2, 3, 4)}, 1, DYNQ_DT_F32, 3, {3, 5, 14}, 0},
      {"padw_4d_axes", {PW(4, 2, 2, 3, 4)}, 1, DYNQ_DT_F32, 4, {2, 7, 3, 9}, 0},
      {"padw_neg", {PW(2, 3, 4)}, 1, DYNQ_DT_F32, 2, {4, 5}, 0},
      {"padw_neg_large", {PW(1, 5)}, 1, DYNQ_DT_F32, 1, {12}, 0},
  };
#undef PW
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) poolpad_run(&cases[k]);
}
END_TEST

/* BitwiseAnd / Or / Xor (A [3, 4] with B [4] broadcast) and BitwiseNot
 * in int8, uint8, int32 and int64, the extremes included: numpy's values
 * exactly (ONNX Runtime 1.30 gives the same). */
START_TEST(test_bitwise) {
  static const struct { const char *sfx; dynq_dtype_t dt; } dts[] = {
      {"i8", DYNQ_DT_I8}, {"u8", DYNQ_DT_U8}, {"i32", DYNQ_DT_I32}, {"i64", DYNQ_DT_I64}};
  static const char *const ops[] = {"and", "or", "xor", "not"};
  char base[4][4][32], fa[4][32], fb[4][32];
  for (int d = 0; d < 4; d++) {
    snprintf(fa[d], sizeof fa[d], "bitw_%s_a.%s", dts[d].sfx, dts[d].sfx);
    snprintf(fb[d], sizeof fb[d], "bitw_%s_b.%s", dts[d].sfx, dts[d].sfx);
    for (int o = 0; o < 4; o++) {
      snprintf(base[d][o], sizeof base[d][o], "bitw_%s_%s", ops[o], dts[d].sfx);
      pp_case_t k = {.base = base[d][o], .n_in = o == 3 ? 1 : 2, .ydt = dts[d].dt, .yrank = 2,
                     .ydims = {3, 4}};
      k.in[0] = (pp_in_t){"A", fa[d], dts[d].dt, 2, {3, 4}};
      k.in[1] = (pp_in_t){"B", fb[d], dts[d].dt, 1, {4}};
      poolpad_run(&k);
    }
  }
}
END_TEST

/* CenterCropPad (opset 18): crop and pad on one model, axes listed out of
 * order and negative, an odd difference (the extra at the end), the
 * identity, and the shape fed at run time; the values are copies, so
 * equality is exact (ONNX Runtime 1.30 gives the same). */
START_TEST(test_center_crop_pad) {
#define CX {"X", "ccp_x.f32", DYNQ_DT_F32, 3, {2, 5, 6}}
  static const pp_case_t cases[] = {
      {"ccp_all", {CX}, 1, DYNQ_DT_F32, 3, {3, 2, 9}, 0},
      {"ccp_axes", {CX}, 1, DYNQ_DT_F32, 3, {2, 3, 4}, 0},
      {"ccp_pad_odd", {CX}, 1, DYNQ_DT_F32, 3, {2, 8, 5}, 0},
      {"ccp_same", {CX}, 1, DYNQ_DT_F32, 3, {2, 5, 6}, 0},
      {"ccp_dyn", {CX, {"shape", "ccp_dyn_shape.i64", DYNQ_DT_I64, 1, {2}}}, 2, DYNQ_DT_F32, 3,
       {2, 3, 9}, 0},
  };
#undef CX
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) poolpad_run(&cases[k]);
}
END_TEST

/* poolidx.onnx (make_poolidx.py): MaxPool's Indices output, row-major
 * and column-major (storage_order 1), 2-D and 1-D, and MaxUnpool putting
 * the maxima back from them (the SegNet pattern), equal to numpy's on
 * both paths (no layer to quantize: exact); x has ties (halves), where
 * the first maximum of a window wins. */
START_TEST(test_maxpool_indices) {
  dynq__model_t *m = convert_fixture("poolidx.onnx");
  float *x = load_raw("poolidx_x.f32", 378 * sizeof(float));
  /* y0, i0 [2, 3, 4, 5]; u [2, 3, 7, 9]; i1 [2, 3, 3, 4]; y2, i2 [2, 21, 4] */
  static const int64_t want_n[6] = {120, 120, 378, 72, 168, 168};
  static const int is_idx[6] = {0, 1, 0, 1, 0, 1};
  size_t total = 0;
  for (int k = 0; k < 6; k++) total += (size_t)want_n[k] * (is_idx[k] ? 8 : 4);
  unsigned char *ref = load_raw("poolidx_ref.bin", total);
  dynq__tensor_t X = f32_tensor(x, 4, (int64_t[]){2, 3, 7, 9});
  const char *names[] = {"x"};
  char err[256];
  for (int prec = 0; prec < 2; prec++) {
    dynq__tensor_t y[6] = {{0}};
    ck_assert_msg(run_model(m, prec ? DYNQ_PRECISION_INT8 : DYNQ_PRECISION_FP32, names, &X, 1, y,
                            err, sizeof err) == 0, "%s", err);
    size_t off = 0;
    for (int k = 0; k < 6; k++) {
      size_t nb = (size_t)want_n[k] * (is_idx[k] ? 8 : 4);
      ck_assert_int_eq(y[k].dtype, is_idx[k] ? DYNQ_DT_I64 : DYNQ_DT_F32);
      ck_assert_int_eq(dynq__tensor_numel(&y[k]), want_n[k]);
      ck_assert_msg(memcmp(y[k].data, ref + off, nb) == 0, "output %d differs from numpy's", k);
      off += nb;
    }
    clear_outputs(y, 6);
  }
  dynq__model_unref(m);
  free(x);
  free(ref);
}
END_TEST

/* new_ops.onnx (make_new_ops.py): the new ops in one graph, as a fuzzing
 * seed; here what each output computes on x = i / 16 - 4 (increasing
 * along every axis, no NaN). */
START_TEST(test_new_ops_together) {
  dynq__model_t *m = convert_fixture("new_ops.onnx");
  float x[128];
  for (int i = 0; i < 128; i++) x[i] = (float)i / 16 - 4;
  dynq__tensor_t X = f32_tensor(x, 4, (int64_t[]){1, 8, 4, 4}), y[7] = {{0}};
  const char *names[] = {"x"};
  char err[256];
  ck_assert_int_eq(run_model(m, DYNQ_PRECISION_FP32, names, &X, 1, y, err, sizeof err), 0);
  /* y1: SpaceToDepth undoes DepthToSpace (DCR); LRN and MVN keep the
   * order along W, so Hardmax picks its last element */
  for (int i = 0; i < 128; i++)
    ck_assert_float_eq(((float *)y[0].data)[i], i % 4 == 3 ? 1.0f : 0.0f);
  /* y2: x[0, 1] and x[0, 3] */
  ck_assert_int_eq(dynq__tensor_numel(&y[1]), 32);
  ck_assert_mem_eq(y[1].data, x + 16, 16 * sizeof(float));
  ck_assert_mem_eq((float *)y[1].data + 16, x + 48, 16 * sizeof(float));
  /* y3: indices 0, 2, -1 (= 3), 5 (out of range: all off) */
  static const float hot[16] = {1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0};
  ck_assert_mem_eq(y[2].data, hot, sizeof hot);
  /* y4: channel 0 is smallest everywhere; y5: no NaN */
  ck_assert_int_eq(y[3].dtype, DYNQ_DT_I64);
  for (int i = 0; i < 16; i++) ck_assert_int_eq(((int64_t *)y[3].data)[i], 0);
  for (int i = 0; i < 128; i++) ck_assert_int_eq(((uint8_t *)y[4].data)[i], 0);
  /* y6: ones on the diagonal above the main one of a 3 x 5 */
  for (int r = 0; r < 3; r++)
    for (int c = 0; c < 5; c++)
      ck_assert_float_eq(((float *)y[5].data)[r * 5 + c], c == r + 1 ? 1.0f : 0.0f);
  /* y7: tan of Shrink(lambd 0.5, bias 0.25) */
  for (int i = 0; i < 128; i++) {
    double v = x[i], s = v < -0.5 ? v + 0.25 : v > 0.5 ? v - 0.25 : 0.0, want = tan(s);
    float got = ((float *)y[6].data)[i];
    ck_assert_msg(fabs(got - want) <= 1e-5 * (1 + fabs(want)), "y7[%d] = %g, want %g", i,
                  (double)got, want);
  }
  clear_outputs(y, 7);
  dynq__model_unref(m);
}
END_TEST

/* topk_addln.onnx: the fused AddLayerNorm (one output) fails at run time
 * right after TopK (two outputs) ran: a clear error, and nothing of
 * TopK's second output freed by the failing node (it was: fuzz-model's
 * double free); with n = 4 the same model runs. */
START_TEST(test_failed_node_after_two_outputs) {
  dynq__model_t *m = convert_fixture("topk_addln.onnx");
  const dynq__graph_t *g = dynq__model_graph(m);
  int fused = 0;
  for (int i = 0; i < g->n_nodes; i++) fused += g->nodes[i].op == DYNQ_OP_ADD_LAYERNORM;
  ck_assert_int_eq(fused, 1);
  const char *names[] = {"x", "y"};
  char err[256];
  for (int n = 3; n <= 4; n++) {
    float x[4] = {1, 5, 2, 4}, yv[4] = {0, 1, 0, 1};
    dynq__tensor_t ins[2] = {f32_tensor(x, 2, (int64_t[]){1, n}),
                             f32_tensor(yv, 2, (int64_t[]){1, n})};
    dynq__tensor_t y[3] = {{0}};
    int rc = run_model(m, DYNQ_PRECISION_FP32, names, ins, 2, y, err, sizeof err);
    if (n == 3) {
      ck_assert_msg(rc != 0 && strstr(err, "'ln'") != NULL, "n = 3: rc %d, '%s'", rc, err);
      continue;
    }
    ck_assert_msg(rc == 0, "n = 4: %s", err);
    ck_assert_float_eq(((float *)y[0].data)[0], 5.0f);
    ck_assert_int_eq(((int64_t *)y[1].data)[0], 1);
    clear_outputs(y, 3);
  }
  dynq__model_unref(m);
}
END_TEST

/* tiny_weights.onnx: rows whose amax / 127 underflows quantize to zeros
 * with scale 1 (they got scale 0, and w / 0 -> NaN -> an int8 cast that
 * clang's UBSan stopped on); the INT8 answer is the FP32 one's (both ~0). */
START_TEST(test_underflowing_weight_rows) {
  dynq__model_t *m = convert_fixture("tiny_weights.onnx");
  /* every weight scale the import wrote is positive (they were 0) */
  const dynq__graph_t *g = dynq__model_graph(m);
  int scales = 0;
  for (int v = 0; v < g->n_values; v++) {
    const dynq__value_t *val = &g->values[v];
    if (val->data == NULL || val->dtype != DYNQ_DT_F32 || strstr(val->name, "scale") == NULL)
      continue;
    scales++;
    for (size_t i = 0; i < val->nbytes / sizeof(float); i++)
      ck_assert_msg(((const float *)val->data)[i] > 0.0f, "%s[%zu] = %g", val->name, i,
                    (double)((const float *)val->data)[i]);
  }
  ck_assert_msg(scales >= 2, "%d weight scales found", scales);
  float x[8] = {1, -2, 3, -4, 5, -6, 7, -8};
  dynq__tensor_t X = f32_tensor(x, 2, (int64_t[]){1, 8});
  const char *names[] = {"x"};
  char err[256];
  for (int p = 0; p < 2; p++) {
    dynq__tensor_t y[1] = {{0}};
    int prec = p ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8;
    ck_assert_msg(run_model(m, prec, names, &X, 1, y, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(dynq__tensor_numel(&y[0]), 4);
    for (int i = 0; i < 4; i++) {
      float v = ((float *)y[0].data)[i];
      ck_assert_msg(isfinite(v) && fabsf(v) < 1e-30f, "precision %d: h[%d] = %g", p, i, v);
    }
    clear_outputs(y, 1);
  }
  dynq__model_unref(m);
}
END_TEST

START_TEST(test_softmax_old_opset) {
  char *in = fixture("softmax_opset11.onnx"), *outp = tmp_path("sm11.dynq");
  char *log = NULL;
  ck_assert_msg(tu_quantize_log(&log, in, outp, NULL) == 0, "dynq-quantize: %s", log);
  free(log);
  dynq__model_t *m = open_model(outp);
  int64_t dims[3] = {2, 3, 4};
  dynq__tensor_t x, y[1] = {{0}};
  ck_assert_int_eq(dynq__tensor_alloc(&x, DYNQ_DT_F32, 3, dims), 0);
  float *px = x.data;
  for (int i = 0; i < 24; i++) px[i] = (float)((i * 7) % 11) * 0.37f - 1.5f;
  const char *names[] = {"x"};
  char err[256];
  ck_assert_int_eq(run_model(m, DYNQ_PRECISION_FP32, names, &x, 1, y, err, sizeof err), 0);
  const float *py = y[0].data;
  for (int b = 0; b < 2; b++) {
    double mx = -1e30, sum = 0;
    for (int i = 0; i < 12; i++) mx = fmax(mx, px[b * 12 + i]);
    for (int i = 0; i < 12; i++) sum += exp(px[b * 12 + i] - mx);
    for (int i = 0; i < 12; i++) {
      double want = exp(px[b * 12 + i] - mx) / sum;
      ck_assert_msg(fabs(py[b * 12 + i] - want) <= 1e-6, "y[%d] = %g, want %g", b * 12 + i,
                    py[b * 12 + i], want);
    }
  }
  clear_outputs(y, 1);
  dynq__tensor_clear(&x);
  dynq__model_unref(m);
  free(in);
  free(outp);
}
END_TEST

START_TEST(test_malformed_models) {
  static const struct {
    const char *file;
    const char *want[3];
  } cases[] = {
      {"bad_external.onnx", {"'w'", "external"}},
      {"bad_dtype.onnx", {"'w'", "INT16"}},
      {"bad_rawsize.onnx", {"'w'", "raw_data holds 44 bytes", "48"}},
      {"bad_undefined_input.onnx", {"add_missing", "'nope'"}},
      {"bad_reshape_dynamic.onnx", {"dyn_reshape", "constant"}},
      {"bad_attr.onnx", {"gemm_transB2", "relu_extra", "'bogus'"}},
      {"bad_tf_attrs.onnx", {"'mp_order' (op MaxPool): storage_order 2 is not 0 or 1",
                             "'mp_autopad' (op MaxPool): auto_pad 'FANCY'",
                             "'ap_4d' (op AveragePool): kernel_shape has 4 values"}},
      {"bad_tf_attrs.onnx", {"'bn_train' (op BatchNormalization): training_mode 1",
                             "'ln_stash' (op LayerNormalization): stash_type 0",
                             "'hs_bogus' (op HardSigmoid): attribute 'gamma'"}},
      {"bad_ops_attrs.onnx", {"'rs_area' (op Resize): mode 'area' is not supported",
                              "'rs_crop' (op Resize): coordinate_transformation_mode "
                              "'tf_crop_and_resize'",
                              "'rs_round' (op Resize): nearest_mode 'round_half_up'"}},
      {"bad_ops_attrs.onnx", {"'es_outrep' (op Einsum): equation 'bcij,bcjk->bcii': a label "
                              "repeated in the output",
                              "'es_ellipsis' (op Einsum): equation '...ij->ji': an operand has "
                              "'...' but the output does not",
                              "'ct_4d' (op ConvTranspose): 4 spatial axes; 1-D, 2-D and 3-D ConvTranspose are supported"}},
      {"bad_attention23.onnx", {"'att_groups' (op Attention): q_num_heads 4 is not a multiple "
                                "of kv_num_heads 3",
                                "'att_mode7' (op Attention): qk_matmul_output_mode 7 is not "
                                "within [0, 3]",
                                "'att_noheads' (op Attention): 3-D Q needs q_num_heads and "
                                "kv_num_heads"}},
      {"bad_attention23.onnx", {"'att_causal2' (op Attention): is_causal = 2 is not supported",
                                "'att_nonpad' (op Attention): nonpad_kv_seqlen (opset 24's input "
                                "6) is not supported",
                                "'att_pastonly' (op Attention): past_key and past_value go "
                                "together"}},
      {"bad_attention23.onnx", {"'att_scale' (op Attention): scale -1 is not a positive finite "
                                "number", "7 nodes cannot be converted"}},
      {"bad_rotary.onnx", {"'rope_inter2' (op RotaryEmbedding): interleaved = 2 is not "
                           "supported (0 or 1)",
                           "'rope_dim3' (op RotaryEmbedding): rotary_embedding_dim 3 is not an "
                           "even number within [0, 65536]",
                           "'rope_heads' (op RotaryEmbedding): num_heads -1 is not within "
                           "[0, 65536]"}},
      {"bad_col2im.onnx", {"'c2i_stride0' (op Col2Im): strides[0] 0 is not within [1, 65536]",
                           "'c2i_pads3' (op Col2Im): pads has 3 values for 2 spatial axes",
                           "'c2i_4d' (op Col2Im): 4 spatial axes; 1-D, 2-D and 3-D Col2Im "
                           "are supported"}},
      {"bad_affinegrid.onnx", {"'ag_align2' (op AffineGrid): align_corners = 2 is not "
                               "supported (0 or 1)", "1 node cannot be converted", NULL}},
      {"bad_resize18.onnx", {"'rs_aa2' (op Resize): antialias 2 is not 0 or 1",
                             "'rs_axes_twice' (op Resize): axes lists 2 twice",
                             "'rs_axes_9' (op Resize): axes[0] 9 is out of range"}},
      {"bad_resize18.onnx", {"'rs_keep_fit' (op Resize): keep_aspect_ratio_policy 'fit' is "
                             "not supported (stretch, not_larger, not_smaller are)",
                             "4 nodes cannot be converted", NULL}},
      {"bad_ops_attrs.onnx", {"'ct_autopad' (op ConvTranspose): auto_pad 'FANCY'",
                              "'rs_excl' (op Resize): exclude_outside 2 is not 0 or 1", NULL}},
      {"bad_ops_attrs.onnx", {"'se_prod' (op ScatterElements): reduction 'prod' is not supported",
                              "'md_fmod' (op Mod): fmod = 2 is not supported",
                              "'tk_largest' (op TopK): largest = 3 is not supported"}},
      {"bad_ops_attrs.onnx", {"'tr_upper' (op Trilu): upper = -1 is not supported",
                              "'ce_zero' (op Celu): alpha = 0 is not supported",
                              "'do_train' (op Dropout): training_mode must be a constant false"}},
      {"bad_ops_attrs.onnx", {"'ql_block' (op QuantizeLinear): block_size = 2 (blocked "
                              "quantization) is not supported",
                              "'ql_out16' (op QuantizeLinear): output_dtype UINT16 is not supported",
                              "'ci_4d' (op ConvInteger): only 1-D, 2-D and 3-D convolutions"}},
      {"bad_new_ops.onnx", {"'d2s_mode' (op DepthToSpace): mode 'XYZ' is not supported",
                            "'d2s_zero' (op DepthToSpace): blocksize 0 is not within",
                            "'s2d_none' (op SpaceToDepth): the blocksize attribute is required"}},
      {"bad_new_ops.onnx", {"'lrn_zero' (op LRN): size 0 must be at least 1",
                            "'gnd_neg' (op GatherND): batch_dims -1 is not within [0, 8)",
                            "'up_cubic' (op Upsample): mode 'cubic' is not supported"}},
      {"bad_new_ops.onnx", {"'eye_str' (op EyeLike): dtype STRING is not supported",
                            "'gelu_erf' (op Gelu): approximate 'erf' is not supported",
                            "'cl_inter' (op CastLike): the model does not declare the dtype of "
                            "'like' ('r')"}},
      {"bad_qops.onnx", {"'qc_zp32' (op QLinearConv): w_zero_point is int32 (uint8 or int8 "
                         "expected)",
                         "'qmm_zpsize' (op QLinearMatMul): b_zero_point has 2 values, b_scale 3",
                         "'qmm_zpdtype' (op QLinearMatMul): b is uint8, b_zero_point int8"}},
      {"bad_qops.onnx", {"'nms_cb' (op NonMaxSuppression): center_point_box 2 is not supported",
                         "'bs_dir' (op BitShift): direction 'UP' is not supported",
                         "'rs_axes' (op ReverseSequence): batch_axis 0 and time_axis 0"}},
      {"bad_qops.onnx", {"'mu_dil' (op MaxUnpool): attribute 'dilations' is not supported",
                         "'qmm_yscale' (op QLinearMatMul): y_scale is uint8 (float32 expected)",
                         NULL}},
      {"bad_sample.onnx", {"'gs_mode' (op GridSample): mode 'area' is not supported",
                           "'gs_pad' (op GridSample): padding_mode 'wrap' is not supported",
                           "'gs_cut' (op GridSample): mode 'bilinear_but_longer_than_the_bu'"}},
      {"bad_sample.onnx", {"'ra_mode' (op RoiAlign): mode 'median' is not supported",
                           "'ra_ctm' (op RoiAlign): coordinate_transformation_mode "
                           "'tf_crop_and_resize' is not supported",
                           "'ra_ratio' (op RoiAlign): sampling_ratio -1 is not within [0, 4096]"}},
      {"bad_poolpad.onnx", {"'ap_dil0' (op AveragePool): dilation 0 on spatial axis 0 is not "
                            "within [1, 65536]",
                            "'ap_dilhuge' (op AveragePool): dilation 1048576 on spatial axis 1",
                            "'mp_dilneg' (op MaxPool): dilation -1 on spatial axis 1"}},
      {"bad_poolpad.onnx", {"'ap_dil1d' (op AveragePool): dilations has 1 values for 2 spatial",
                            "'pad_circ' (op Pad): mode 'circular' is not supported",
                            "'bw_float' (op BitwiseAnd): input 'img' is FLOAT (int8, uint8, "
                            "int32 and int64 are supported)"}},
      {"bad_poolpad.onnx", {"'bwn_float' (op BitwiseNot): input 'img' is FLOAT",
                            "'ccp_twice' (op CenterCropPad): axes lists 1 twice",
                            "'ccp_axis9' (op CenterCropPad): axes[1] = 9 is not within [-8, 8)"}},
      {"bad_poolpad.onnx", {"'ccp_neg' (op CenterCropPad): shape[1] = -3 is not within",
                            "'ccp_count' (op CenterCropPad): shape has 2 values for 1 axes",
                            NULL}},
      {"bad_poolpad18.onnx", {"'ap_o18' (op AveragePool): AveragePool's dilations came with "
                              "opset 19 (the model is opset 18)",
                              "'pad_wrap18' (op Pad): mode 'wrap' came with opset 19 (the model "
                              "is opset 18)", NULL}},
      {"bad_lpops.onnx", {"'lp_p0' (op LpPool): p 0 is not within [1, 64]",
                          "'lp_pneg' (op LpPool): p -2 is not within [1, 64]",
                          "'lp_phuge' (op LpPool): p 1099511627776 is not within [1, 64]"}},
      {"bad_lpops.onnx", {"'lp_k4d' (op LpPool): kernel_shape has 4 values",
                          "'lp_nokernel' (op LpPool): kernel_shape has 0 values",
                          "'lpn_p3' (op LpNormalization): p 3 is not 1 or 2"}},
      {"bad_lpops.onnx", {"'glp_pfrac' (op GlobalLpPool): p 2.5 is not a whole number",
                          "'glp_pnan' (op GlobalLpPool): p nan is not a whole number",
                          "'glp_pstr' (op GlobalLpPool): attribute 'p' has the wrong type"}},
      {"bad_lpops.onnx", {"'mrp_zero' (op MaxRoiPool): pooled_shape [0, 2]: each must be "
                          "within [1, 65536]",
                          "'mrp_neg' (op MaxRoiPool): pooled_shape [2, -7]",
                          "'mrp_huge' (op MaxRoiPool): pooled_shape [1048576, 1]"}},
      {"bad_lpops.onnx", {"'mrp_rank' (op MaxRoiPool): pooled_shape has 1 values (2 expected",
                          "'mrp_missing' (op MaxRoiPool): attribute 'pooled_shape' is required",
                          "'mrp_scale' (op MaxRoiPool): spatial_scale inf is not finite"}},
      {"bad_norms.onnx", {"'gn_g0' (op GroupNormalization): num_groups 0 is not positive",
                          "'gn_gneg' (op GroupNormalization): num_groups -1 is not positive",
                          "'gn_nog' (op GroupNormalization): attribute 'num_groups' is "
                          "required"}},
      {"bad_norms.onnx", {"'gn_stash0' (op GroupNormalization): stash_type 0 is not supported "
                          "(only 1: float)",
                          "'gn_epsnan' (op GroupNormalization): epsilon nan is not a finite "
                          "value >= 0",
                          "'gn_epsneg' (op GroupNormalization): epsilon -1 is not a finite"}},
      {"bad_norms.onnx", {"'gn_g3' (op GroupNormalization): num_groups 3 does not divide X's 8 "
                          "channels",
                          "'gn_form' (op GroupNormalization): scale has 4 values: opset 23's "
                          "GroupNormalization takes one per channel (8)",
                          "'gn_gstr' (op GroupNormalization): attribute 'num_groups' has the "
                          "wrong type"}},
      {"bad_norms.onnx", {"'rms_axis' (op RMSNormalization): axis 4 is outside [-4, 4) for X "
                          "of rank 4",
                          "'rms_axisneg' (op RMSNormalization): axis -5 is outside [-4, 4)",
                          "'rms_stash' (op RMSNormalization): stash_type 0 is not supported"}},
      {"bad_norms.onnx", {"'rms_eps' (op RMSNormalization): epsilon inf is not a finite value",
                          "'rms_bias' (op RMSNormalization): attribute 'bias' is not supported",
                          "14 nodes cannot be converted"}},
      {"bad_norms18.onnx", {"'gn18_form' (op GroupNormalization): scale has 8 values: opset "
                            "18's GroupNormalization takes one per group (4)", NULL, NULL}},
      {"bad_half.onnx", {"initializer 'h': raw_data holds 5 bytes but a float16 tensor of this "
                         "shape needs 6", NULL, NULL}},
      {"bad_double.onnx", {"initializer 'dbl': float64 value 1e+300 at index 1 is beyond "
                           "float32's range", NULL, NULL}},
      {"bad_fold_huge.onnx", {"node 'hot_huge' (OneHot): an output of 134217728 elements "
                              "(536870912 bytes) is over the limit of 268435456 bytes (while "
                              "folding constants at import)", NULL, NULL}},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *want[4] = {cases[i].want[0], cases[i].want[1], cases[i].want[2], NULL};
    expect_fixture_fail(cases[i].file, want);
  }
}
END_TEST

/* ---- external data ---------------------------------------------- */

static void copy_file(const char *from, const char *to) {
  size_t n = 0;
  void *d = tu_read_file(from, &n);
  ck_assert_msg(d != NULL, "cannot read %s", from);
  ck_assert_int_eq(tu_write_file(to, d, n), 0);
  free(d);
}

/* ext_mlp.onnx keeps every initializer in ext_mlp.data (onnx's
 * save_as_external_data): it converts to the same results as the model
 * with the tensors inside, bit for bit, on both paths. */
START_TEST(test_external_data) {
  char *ext = fixture("ext/ext_mlp.onnx"), *inl = fixture("ext/ext_mlp_inline.onnx");
  char *oe = tmp_path("ext.dynq"), *oi = tmp_path("inl.dynq"), *log = NULL;
  ck_assert_msg(tu_quantize_log(&log, "--progress", ext, oe, NULL) == 0, "%s", log);
  ck_assert_msg(strstr(log, "3 from external data") != NULL, "%s", log);
  free(log);
  log = NULL;
  ck_assert_msg(tu_quantize_log(&log, inl, oi, NULL) == 0, "%s", log);
  free(log);
  dynq__model_t *me = open_model(oe), *mi = open_model(oi);
  float x[16];
  for (int i = 0; i < 16; i++) x[i] = (float)((i * 5) % 7) * 0.3f - 0.9f;
  int64_t dims[2] = {2, 8};
  dynq__tensor_t xt = f32_tensor(x, 2, dims);
  const char *names[] = {"x"};
  char err[256];
  for (int prec = 0; prec < 2; prec++) {
    int pr = prec ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8;
    dynq__tensor_t ye = {0}, yi = {0};
    ck_assert_int_eq(run_model(me, pr, names, &xt, 1, &ye, err, sizeof err), 0);
    ck_assert_int_eq(run_model(mi, pr, names, &xt, 1, &yi, err, sizeof err), 0);
    ck_assert_int_eq(dynq__tensor_numel(&ye), 8);
    ck_assert_int_eq(memcmp(ye.data, yi.data, 8 * sizeof(float)), 0);
    dynq__tensor_clear(&ye);
    dynq__tensor_clear(&yi);
  }
  dynq__model_unref(me);
  dynq__model_unref(mi);
  free(ext);
  free(inl);
  free(oe);
  free(oi);
}
END_TEST

/* The data of ext_far.onnx's w lies 3 GiB into ext_far.data (a sparse
 * file here): offsets past what 32 bits hold work. */
START_TEST(test_external_far_offset) {
  char *src = fixture("ext/ext_far.onnx"), *model = tmp_path("ext_far.onnx");
  char *data = tmp_path("ext_far.data"), *outp = tmp_path("far.dynq"), *log = NULL;
  copy_file(src, model);
  float w[12];
  for (int i = 0; i < 12; i++) w[i] = (float)i * 0.25f - 1.0f;
  int fd = open(data, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(pwrite(fd, w, sizeof(w), (off_t)3 << 30), (ssize_t)sizeof(w));
  close(fd);
  ck_assert_msg(tu_quantize_log(&log, "--fp32", model, outp, NULL) == 0, "%s", log);
  free(log);
  unlink(data); /* the rest of the test needs no 3 GiB file, even a sparse one */
  dynq__model_t *m = open_model(outp);
  float x[8] = {1, 2, 3, 4, -1, 0.5f, 0, 2};
  int64_t dims[2] = {2, 4};
  dynq__tensor_t xt = f32_tensor(x, 2, dims), y = {0};
  const char *names[] = {"x"};
  char err[256];
  ck_assert_int_eq(run_model(m, DYNQ_PRECISION_FP32, names, &xt, 1, &y, err, sizeof err), 0);
  const float *py = y.data;
  for (int r = 0; r < 2; r++)
    for (int j = 0; j < 3; j++) {
      float want = 0;
      for (int k = 0; k < 4; k++) want += x[r * 4 + k] * w[k * 3 + j];
      ck_assert_msg(fabsf(py[r * 3 + j] - want) <= 1e-5f, "y[%d][%d] = %g, want %g", r, j,
                    py[r * 3 + j], want);
    }
  dynq__tensor_clear(&y);
  dynq__model_unref(m);
  free(src);
  free(model);
  free(data);
  free(outp);
}
END_TEST

/* Every way an external location or range can be wrong is refused,
 * naming the tensor and what was wrong, and nothing is written. */
START_TEST(test_external_errors) {
  static const struct {
    const char *file;
    const char *want[3];
  } cases[] = {
      {"ext/ext_bad_escape.onnx", {"initializer 'w'", "'../ext_mlp.data' leaves the model's "
                                   "directory"}},
      {"ext/ext_bad_abs.onnx", {"initializer 'w'", "'/etc/passwd' leaves the model's directory"}},
      {"ext/ext_bad_missing.onnx", {"initializer 'w'", "cannot open external data file",
                                    "nope.data"}},
      {"ext/ext_bad_range.onnx", {"initializer 'w'", "needs bytes 1000000..1000048",
                                  "which holds 784"}},
      {"ext/ext_bad_length.onnx", {"initializer 'w'", "length 44 but dtype and shape need 48"}},
      {"ext/ext_bad_number.onnx", {"initializer 'w'", "offset '12x' is not a byte count"}},
      {"ext/ext_bad_noloc.onnx", {"initializer 'w'", "names none (no 'location' entry)"}},
      {"ext/ext_far.onnx", {"initializer 'w'", "ext_far.data", "No such file"}},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *want[4] = {cases[i].want[0], cases[i].want[1], cases[i].want[2], NULL};
    expect_fixture_fail(cases[i].file, want);
  }
  /* A symlink inside the directory that points out of it. */
  char *sub = tmp_path("sub"), *model = tmp_path("sub/ext_far.onnx");
  char *link = tmp_path("sub/ext_far.data"), *outside = tmp_path("outside.data");
  char *src = fixture("ext/ext_far.onnx");
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  copy_file(src, model);
  ck_assert_int_eq(tu_write_file(outside, "0123456789", 10), 0);
  ck_assert_int_eq(symlink("../outside.data", link), 0);
  const char *w_link[] = {"initializer 'w'", "outside the model's directory", NULL};
  expect_fail(model, NULL, 1, w_link);
  unlink(link);
  free(sub);
  free(model);
  free(link);
  free(outside);
  free(src);
}
END_TEST

/* The attribute forms of opset 9 (Squeeze/Unsqueeze axes, Slice
 * starts/ends/axes, Pad-2 pads and value, Clip-6 min without max,
 * Transpose perm, ReduceSum/ReduceMean axes) become the engine's inputs by
 * the rows of models/import_rules.c: the results are numpy's. */
START_TEST(test_rules_old_forms) {
  char *in = fixture("rules_opset9.onnx"), *outp = tmp_path("rules9.dynq");
  char *log = NULL;
  ck_assert_msg(tu_quantize_log(&log, in, outp, NULL) == 0, "dynq-quantize: %s", log);
  free(log);
  dynq__model_t *m = open_model(outp);
  size_t nx, n1, n2;
  float *x = load_f32("rules_x.f32", &nx), *r1 = load_f32("rules_r1.f32", &n1);
  float *r2 = load_f32("rules_r2.f32", &n2);
  ck_assert_uint_eq(nx, 24);
  int64_t dims[4] = {2, 3, 1, 4};
  dynq__tensor_t xt = f32_tensor(x, 4, dims), y[2];
  memset(y, 0, sizeof(y));
  const char *names[] = {"x"};
  char err[256];
  ck_assert_int_eq(run_model(m, DYNQ_PRECISION_FP32, names, &xt, 1, y, err, sizeof err), 0);
  const dynq__graph_t *g = dynq__model_graph(m);
  for (int o = 0; o < 2; o++) {
    int idx = strcmp(g->values[g->outputs[o]].name, "r1") == 0 ? 0 : 1;
    const float *want = idx == 0 ? r1 : r2;
    size_t nw = idx == 0 ? n1 : n2;
    ck_assert_uint_eq((size_t)dynq__tensor_numel(&y[o]), nw);
    const float *got = y[o].data;
    for (size_t i = 0; i < nw; i++)
      ck_assert_msg(fabsf(got[i] - want[i]) <= 1e-5f, "r%d[%zu] = %g, want %g", idx + 1, i,
                    got[i], want[i]);
  }
  clear_outputs(y, 2);
  dynq__model_unref(m);
  free(x);
  free(r1);
  free(r2);
  free(in);
  free(outp);
}
END_TEST

/* Each rule's misuse at the model's opset, all listed in one error. */
START_TEST(test_rules_errors) {
  const char *w11[] = {"'squeeze_in' (op Squeeze): before opset 13 'axes' is an attribute, "
                       "not input 1 (the model's opset is 11)",
                       "'unsq_none' (op Unsqueeze): attribute 'axes' is required",
                       "'squeeze_floats' (op Squeeze): attribute 'axes' has the wrong type",
                       "'slice_noends' (op Slice): input 2 ('ends') is required",
                       "4 nodes cannot", NULL};
  expect_fixture_fail("rules_bad11.onnx", w11);
  const char *w13[] = {"'squeeze_attr' (op Squeeze): 'axes' is input 1 from opset 13 on, not "
                       "an attribute (the model's opset is 13)",
                       "'rsum_attr' (op ReduceSum): 'axes' is input 1 from opset 13 on",
                       "2 nodes cannot", NULL};
  expect_fixture_fail("rules_bad13.onnx", w13);
}
END_TEST

/* fuzz-onnx (docs/FUZZING.md): a 482-byte model whose initializer 'U'
 * declares 1321008127 floats but holds 48.  The importer allocated the
 * 5 GB first and compared the counts after; now it refuses before any
 * allocation, naming the tensor and both counts. */
START_TEST(test_fuzz_regressions) {
  static const unsigned char oom_initializer[] = {
      0x08, 0x08, 0x3a, 0xd7, 0x03, 0x0a, 0x2e, 0x0a, 0x01, 0x78, 0x0a, 0x01, 0x57, 0x0a, 0x01, 0x52,
      0x12, 0x01, 0x79, 0x1a, 0x07, 0x65, 0x6e, 0x63, 0x5f, 0x67, 0x72, 0x75, 0x22, 0x03, 0x47, 0x52,
      0x55, 0x2a, 0x12, 0x0a, 0x0b, 0x68, 0x69, 0x64, 0x64, 0x65, 0x6e, 0x5f, 0x73, 0x69, 0x7a, 0x65,
      0x18, 0x03, 0xa0, 0x01, 0x02, 0x12, 0x0f, 0x72, 0x6e, 0x6e, 0x5f, 0x62, 0x61, 0x64, 0x5f, 0x77,
      0x65, 0x69, 0x67, 0x68, 0x74, 0x73, 0x2a, 0xce, 0x01, 0x08, 0xff, 0xf7, 0xf3, 0xf5, 0x04, 0x10,
      0x01, 0x22, 0xc0, 0x01, 0x4d, 0x09, 0xa8, 0xbc, 0x87, 0xc3, 0xea, 0x3e, 0x85, 0x1b, 0x3b, 0xbe,
      0xe8, 0x87, 0xc8, 0xbd, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x30, 0x97, 0x06, 0x3e,
      0x38, 0xb3, 0xde, 0x3e, 0x23, 0xec, 0xd8, 0x3e, 0x36, 0xcb, 0x30, 0xbe, 0xfe, 0x4b, 0xfa, 0x3e,
      0x12, 0xe9, 0x9f, 0xbe, 0x4a, 0x81, 0xa5, 0x3e, 0xaf, 0x7b, 0xaf, 0xbe, 0xa3, 0x5b, 0xc2, 0x4d,
      0x61, 0x74, 0x4d, 0xbe, 0xe1, 0x50, 0xb7, 0x3e, 0x39, 0x58, 0xa8, 0x3e, 0x89, 0x6d, 0xb8, 0xbe,
      0x67, 0x0e, 0xde, 0x3c, 0xc1, 0xa9, 0x77, 0xbe, 0x37, 0xbf, 0x06, 0xbc, 0x8a, 0xee, 0x59, 0x3d,
      0x05, 0x98, 0xc9, 0xbe, 0x6f, 0x8f, 0xba, 0x3e, 0x6f, 0x9d, 0x62, 0xbe, 0x37, 0x95, 0x58, 0xbd,
      0x00, 0xaf, 0xe2, 0xbe, 0x2e, 0x98, 0xfe, 0xbe, 0x0d, 0x14, 0x9c, 0xbe, 0xe7, 0x1f, 0x22, 0xbe,
      0xaf, 0x31, 0xdb, 0x3e, 0x77, 0x8a, 0xc7, 0x3e, 0x55, 0xbc, 0x9f, 0xbc, 0xc5, 0x4d, 0x39, 0xbd,
      0x39, 0x00, 0x2b, 0x3e, 0xb9, 0xae, 0xb7, 0x3e, 0x7c, 0x9b, 0x26, 0xbe, 0xe3, 0x59, 0x96, 0x3e,
      0xc5, 0xdf, 0xce, 0xbd, 0x52, 0x9f, 0xc0, 0x3d, 0x8b, 0x2a, 0x73, 0x3e, 0x39, 0xe4, 0xb1, 0x3a,
      0xb9, 0x5a, 0x43, 0x3e, 0x8c, 0x0c, 0x4a, 0x3e, 0x3a, 0x13, 0xfd, 0xbe, 0x9a, 0xff, 0xeb, 0xbe,
      0x40, 0xb1, 0xb3, 0xbe, 0x42, 0x01, 0x55, 0x2a, 0x9e, 0x01, 0x08, 0x01, 0x08, 0x0c, 0x08, 0x03,
      0x10, 0x01, 0x22, 0x90, 0x01, 0x6a, 0x9e, 0x92, 0xbe, 0x41, 0xf4, 0x97, 0xbe, 0xfc, 0xed, 0xe6,
      0xbe, 0xab, 0xc9, 0x90, 0xbe, 0x7f, 0xbd, 0xce, 0x3d, 0xa5, 0xab, 0xc5, 0x3e, 0xad, 0x1b, 0x1a,
      0xbe, 0x2e, 0xcd, 0x08, 0xbe, 0x4f, 0x83, 0xaa, 0xbd, 0x84, 0x35, 0x38, 0x3e, 0x6d, 0x1f, 0x92,
      0x3e, 0x42, 0xc5, 0xe1, 0x3e, 0xfa, 0x90, 0xfe, 0xbd, 0x60, 0x43, 0x53, 0x3e, 0xb2, 0x2a, 0x22,
      0xbe, 0x90, 0xe3, 0xa5, 0x3e, 0x63, 0xe8, 0x89, 0xbe, 0x82, 0xf5, 0xbd, 0x3e, 0xf8, 0x49, 0xa7,
      0x3b, 0x96, 0xc0, 0x66, 0x3e, 0xd6, 0x54, 0x0f, 0x3d, 0xaf, 0x4a, 0x3c, 0xbe, 0x22, 0xb7, 0xba,
      0xbb, 0x5d, 0x2b, 0xe6, 0xbe, 0xe1, 0xfc, 0xe9, 0xbe, 0xa6, 0x75, 0xf5, 0x3c, 0x98, 0xfc, 0xba,
      0xbc, 0xfa, 0x90, 0xaa, 0x3e, 0x7d, 0xb2, 0xf5, 0xbe, 0x00, 0xff, 0x68, 0x3d, 0xd5, 0x66, 0x19,
      0xbc, 0xb9, 0xb2, 0xc8, 0x3d, 0xa9, 0x16, 0x6b, 0x3e, 0xd1, 0xac, 0xca, 0x3c, 0x2f, 0x1a, 0x81,
      0x3d, 0xe8, 0x9c, 0x31, 0xbc, 0x42, 0x01, 0x52, 0x5a, 0x17, 0x0a, 0x01, 0x78, 0x12, 0x12, 0x0a,
      0x10, 0x08, 0x01, 0x32, 0x0c, 0x0a, 0x02, 0x08, 0x05, 0x0a, 0x02, 0x08, 0x01, 0x0a, 0x02, 0x08,
      0x04, 0x62, 0x09, 0x0a, 0x01, 0x79, 0x12, 0x04, 0x0a, 0x02, 0x08, 0x01, 0x42, 0x04, 0x0a, 0x00,
      0x10, 0x0e,
  };
  char *p = tmp_path("fuzz-oom-initializer.onnx");
  ck_assert_int_eq(tu_write_file(p, oom_initializer, sizeof(oom_initializer)), 0);
  const char *want[] = {"initializer 'U'", "float_data holds 48 values",
                        "shape needs 1321008127", NULL};
  expect_fail(p, NULL, 1, want);
  free(p);

  /* fuzz-onnx: gemm_variants.onnx with Gemm g_transA_dynC's B input
   * renamed to "" (ONNX's "omitted"): constant folding ran the Gemm with a
   * NULL tensor (dynq-quantize crashed).  Required inputs are checked now. */
  char *gemm = strdup(tu_src("tests/fuzz/regress/onnx-gemm-empty-input.onnx"));
  const char *want_gemm[] = {"g_transA_dynC", "Gemm", "input 1 is required but has no name",
                             NULL};
  expect_fail(gemm, NULL, 1, want_gemm);
  free(gemm);

  /* fuzz-onnx: rules_opset9.onnx with a byte of node 'rsum' mutated into
   * invalid UTF-8: the importer wrote a .dynq whose strings section the
   * engine refuses.  Names are checked before writing now. */
  char *utf = strdup(tu_src("tests/fuzz/regress/onnx-invalid-utf8-name.onnx"));
  const char *want_utf[] = {"value name 'rsu", "is not valid UTF-8", NULL};
  expect_fail(utf, NULL, 1, want_utf);
  free(utf);
}
END_TEST

START_TEST(test_bad_files) {
  char *garbage = tmp_path("garbage.onnx");
  char *empty = tmp_path("empty.onnx");
  char *trunc = tmp_path("trunc.onnx");
  char *text = tmp_path("text.onnx");
  char *missing = tmp_path("missing.onnx");
  unsigned char g[4096];
  unsigned s = 12345;
  for (size_t i = 0; i < sizeof(g); i++) {
    s = s * 1103515245u + 12345u;
    g[i] = (unsigned char)(s >> 16);
  }
  ck_assert_int_eq(tu_write_file(garbage, g, sizeof(g)), 0);
  ck_assert_int_eq(tu_write_file(empty, "", 0), 0);
  const char *txt = "this is not an onnx model\n";
  ck_assert_int_eq(tu_write_file(text, txt, strlen(txt)), 0);
  char *mlp = fixture("mlp.onnx");
  size_t n = 0;
  void *whole = tu_read_file(mlp, &n);
  ck_assert_ptr_nonnull(whole);
  ck_assert_int_eq(tu_write_file(trunc, whole, n / 2), 0);
  free(whole);

  const char *w_garbage[] = {"garbage.onnx", "not an ONNX model", NULL};
  const char *w_empty[] = {"empty.onnx", "empty", NULL};
  const char *w_trunc[] = {"trunc.onnx", "not an ONNX model", NULL};
  const char *w_text[] = {"text.onnx", "not an ONNX model", NULL};
  const char *w_missing[] = {"missing.onnx", "No such file", NULL};
  expect_fail(garbage, NULL, 1, w_garbage);
  expect_fail(empty, NULL, 1, w_empty);
  expect_fail(trunc, NULL, 1, w_trunc);
  expect_fail(text, NULL, 1, w_text);
  expect_fail(missing, NULL, 1, w_missing);
  const char *w_dir[] = {"not a regular file", NULL};
  expect_fail(tu_tmp, NULL, 1, w_dir);

  /* Usage errors: exit 2 and the usage text. */
  const char *w_opt[] = {"unknown option '--bogus'", "usage:", NULL};
  expect_fail(mlp, "--bogus", 2, w_opt);
  char *log = NULL;
  ck_assert_int_eq(tu_quantize_log(&log, mlp, NULL), 2);
  ck_assert_ptr_nonnull(strstr(log, "usage:"));
  free(log);
  log = NULL;
  ck_assert_int_eq(tu_quantize_log(&log, NULL), 2);
  free(log);
  log = NULL;
  ck_assert_int_eq(tu_quantize_log(&log, mlp, "a.dynq", "b.dynq", NULL), 2);
  ck_assert_ptr_nonnull(strstr(log, "too many arguments"));
  free(log);
  log = NULL;
  ck_assert_int_eq(tu_quantize_log(&log, "--int8-attention", "--fp32-attention", mlp, "a.dynq", NULL), 2);
  ck_assert_ptr_nonnull(strstr(log, "--int8-attention and --fp32-attention contradict each other"));
  free(log);
  log = NULL;
  ck_assert_int_eq(tu_quantize_log(&log, "--help", NULL), 0);
  ck_assert_ptr_nonnull(strstr(log, "--no-reference"));
  free(log);

  free(mlp);
  free(garbage);
  free(empty);
  free(trunc);
  free(text);
  free(missing);
}
END_TEST

/* ---- --const NAME=FILE.pb ---------------------------------------- */

/* Protobuf varint. */
static size_t pb_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  do {
    p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v != 0);
  return n;
}

/* Write a serialized ONNX TensorProto: dims (field 1), data_type (field 2,
 * omitted when 0), raw_data (field 9).  Small on purpose: the tests give
 * the importer exact bytes, without a protobuf library. */
static void write_tensor_pb(const char *path, int32_t onnx_dtype, int rank, const int64_t *dims,
                            const void *raw, size_t nraw) {
  size_t cap = 64 + 11 * (size_t)rank + nraw, n = 0;
  uint8_t *b = malloc(cap);
  ck_assert_ptr_nonnull(b);
  for (int i = 0; i < rank; i++) {
    b[n++] = 0x08;
    n += pb_varint(b + n, (uint64_t)dims[i]);
  }
  if (onnx_dtype != 0) {
    b[n++] = 0x10;
    n += pb_varint(b + n, (uint64_t)onnx_dtype);
  }
  b[n++] = 0x4a;
  n += pb_varint(b + n, nraw);
  if (nraw) memcpy(b + n, raw, nraw);
  n += nraw;
  ck_assert_int_eq(tu_write_file(path, b, n), 0);
  free(b);
}

enum { ONNX_FLOAT = 1, ONNX_INT64 = 7 };

/* Expect `rc` and every string of `want` from dynq-quantize args...
 * (NULL-terminated; the output path is appended), and nothing written. */
static void expect_fail_args(int want_rc, const char *const *want, ...) {
  char *args[16];
  int k = 0;
  va_list ap;
  va_start(ap, want);
  for (const char *a; k < 14 && (a = va_arg(ap, const char *)) != NULL;) args[k++] = (char *)a;
  va_end(ap);
  char *outp = tmp_path("out.dynq");
  args[k++] = outp;
  args[k] = NULL;
  char *log = NULL;
  int rc = tu_quantize_argv(args, &log);
  ck_assert_msg(rc == want_rc, "%s %s: exit %d, want %d:\n%s", args[0], args[1], rc, want_rc,
                log);
  for (int i = 0; want && want[i]; i++)
    ck_assert_msg(strstr(log, want[i]) != NULL, "%s %s: output lacks '%s':\n%s", args[0],
                  args[1], want[i], log);
  ck_assert_msg(!file_exists(outp), "output file was created");
  free(log);
  free(outp);
}

/* The summary line of layer `name` ("fc1 ..."), or "" when absent. */
static const char *summary_line(const char *log, const char *name, char *buf, size_t n) {
  size_t l = strlen(name);
  for (const char *p = log; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, name, l) == 0 && p[l] == ' ') {
      const char *e = strchr(p, '\n');
      size_t k = e ? (size_t)(e - p) : strlen(p);
      snprintf(buf, n, "%.*s", (int)(k < n ? k : n - 1), p);
      return buf;
    }
  return "";
}

/* --op-types picks the op kinds quantized (ORT's op_types_to_quantize);
 * --exclude-nodes is --keep-fp32 under ORT's name. */
START_TEST(test_op_types_and_exclude) {
  char *in = fixture("mlp.onnx"), *outp = tmp_path("mlp_ot.dynq"), *log = NULL;
  char line[512];
  ck_assert_int_eq(tu_quantize_log(&log, "--op-types", "MatMul", in, outp, NULL), 0);
  ck_assert_msg(strstr(summary_line(log, "fc1", line, sizeof line), "not in --op-types"), "%s",
                log);
  ck_assert_msg(strstr(summary_line(log, "fc3", line, sizeof line), "not in --op-types"), "%s",
                log);
  ck_assert_msg(strstr(summary_line(log, "fc2", line, sizeof line), "int8"), "%s", log);
  ck_assert_msg(strstr(summary_line(log, "fc5", line, sizeof line), "int8"), "%s", log);
  free(log);
  dynq__model_t *m = open_model(outp);
  dynq__model_stats_t st;
  dynq__model_get_stats(m, &st);
  ck_assert_int_eq(st.n_quant[DYNQ_QKIND_LINEAR], 2);
  dynq__model_unref(m);
  unlink(outp);
  log = NULL;
  ck_assert_int_eq(tu_quantize_log(&log, "--exclude-nodes=fc2,fc5", "--op-types=Gemm,MatMul",
                                   in, outp, NULL), 0);
  ck_assert_msg(strstr(summary_line(log, "fc2", line, sizeof line), "--keep-fp32"), "%s", log);
  ck_assert_msg(strstr(summary_line(log, "fc1", line, sizeof line), "int8"), "%s", log);
  free(log);
  unlink(outp);

  const char *w_type[] = {"--op-types: dynq-quantize does not quantize 'Relu' layers",
                          "MatMul, Gemm, Conv, ConvTranspose, LSTM, GRU, RNN, Gather", NULL};
  expect_fail_args(2, w_type, "--op-types", "MatMul,Relu", in, NULL);
  const char *w_empty[] = {"--op-types needs a comma-separated list", NULL};
  expect_fail_args(2, w_empty, "--op-types=", in, NULL);
  const char *w_gap[] = {"--exclude-nodes: empty name in the list", NULL};
  expect_fail_args(2, w_gap, "--exclude-nodes", "fc1,,fc2", in, NULL);
  const char *w_none[] = {"--keep-fp32 nosuch: no MatMul", "layer column of the summary", NULL};
  expect_fail_args(1, w_none, "--exclude-nodes", "nosuch", in, NULL);
  free(in);
  free(outp);
}
END_TEST

/* A line per stage with --progress (stderr is not a terminal here, so
 * nothing without it). */
START_TEST(test_progress) {
  char *in = fixture("mlp.onnx"), *outp = tmp_path("mlp_pr.dynq"), *log = NULL;
  ck_assert_int_eq(tu_quantize_log(&log, "--progress", in, outp, NULL), 0);
  const char *stages[] = {"s] read '", "s] parsed: opset 13", "s] read 1", "s] converted ",
                          "s] fusions done", "s] validated "};
  for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++)
    ck_assert_msg(strstr(log, stages[i]) != NULL, "no '%s' line:\n%s", stages[i], log);
  free(log);
  log = NULL;
  ck_assert_int_eq(tu_quantize_log(&log, in, outp, NULL), 0);
  ck_assert_msg(strstr(log, "s] parsed") == NULL, "progress without --progress:\n%s", log);
  free(log);
  free(in);
  free(outp);
}
END_TEST

/* fallback.onnx's second MatMul takes its weights v [4, 3] as a graph
 * input: FP32 by default, INT8 once --const binds v. */
START_TEST(test_const_binds_weights) {
  char *in = fixture("fallback.onnx");
  char *vpb = tmp_path("v.pb");
  char *outp = tmp_path("c.dynq");
  size_t nu, nv, nyd;
  float *u = load_f32("fallback_u.f32", &nu), *v = load_f32("fallback_v.f32", &nv);
  float *yd = load_f32("fallback_y_dyn.f32", &nyd);
  ck_assert_uint_eq(nv, 12);
  int64_t dv[2] = {4, 3};
  write_tensor_pb(vpb, ONNX_FLOAT, 2, dv, v, nv * sizeof(float));
  size_t vlen = strlen(vpb) + 3;
  char *kv = malloc(vlen);
  snprintf(kv, vlen, "v=%s", vpb);
  char *log = NULL;
  char *args[] = {"--const", kv, in, outp, NULL};
  int rc = tu_quantize_argv(args, &log);
  ck_assert_msg(rc == 0, "exit %d:\n%s", rc, log);
  /* the dynamic-B layer is quantized now; only the big-K one stays FP32 */
  ck_assert_msg(strstr(log, "not a constant") == NULL, "v still dynamic:\n%s", log);
  ck_assert_msg(strstr(log, "1 quantized") != NULL, "no quantized layer:\n%s", log);
  free(log);
  dynq__model_t *m = open_model(outp);
  const dynq__graph_t *g = dynq__model_graph(m);
  ck_assert_int_eq(g->n_inputs, 2); /* x, u: v is a constant */
  ck_assert_int_lt(dynq__model_input_index(m, "v"), 0);
  enum { K = 65537 };
  float *x = calloc(2 * K, sizeof(float));
  ck_assert_ptr_nonnull(x);
  int64_t dx[2] = {2, K}, du[2] = {2, 4};
  dynq__tensor_t ins[2] = {f32_tensor(x, 2, dx), f32_tensor(u, 2, du)};
  const char *names[] = {"x", "u"};
  for (int prec = 0; prec < 2; prec++) {
    dynq__tensor_t outs[2];
    char err[512] = "";
    rc = run_model(m, prec ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8, names, ins, 2, outs, err,
                   sizeof(err));
    ck_assert_msg(rc == 0, "run: %d %s", rc, err);
    ck_assert_int_eq(dynq__tensor_numel(&outs[1]), 6);
    double e = prec ? tu_rel_max(outs[1].data, yd, nyd) : tu_rel_l2(outs[1].data, yd, nyd);
    printf("--const v: %s %s %.4g\n", prec ? "FP32 (Wref) max_rel" : "INT8 rel_l2",
           "vs numpy", e);
    ck_assert_double_le(e, prec ? FP32_TOL : INT8_TOL);
    clear_outputs(outs, 2);
  }
  /* --const=NAME=FILE is the same option */
  unlink(outp);
  char eqarg[600];
  snprintf(eqarg, sizeof(eqarg), "--const=%s", kv);
  char *args2[] = {eqarg, in, outp, NULL};
  log = NULL;
  ck_assert_int_eq(tu_quantize_argv(args2, &log), 0);
  free(log);
  dynq__model_unref(m);
  free(x);
  free(u);
  free(v);
  free(yd);
  free(kv);
  free(outp);
  free(vpb);
  free(in);
}
END_TEST

START_TEST(test_const_errors) {
  char *in = fixture("fallback.onnx");
  char *dir = tu_tmp;
  char path[9][512], *arg[9];
  const char *files[] = {"ok.pb", "garbage.pb", "empty.pb", "nodtype.pb", "int64.pb",
                         "shape.pb", "rank.pb", "rawsize.pb", "missing.pb"};
  for (int i = 0; i < 9; i++) {
    snprintf(path[i], sizeof(path[i]), "%s/%s", dir, files[i]);
    arg[i] = malloc(strlen(path[i]) + 3);
    ck_assert_ptr_nonnull(arg[i]);
    strcpy(arg[i], "v=");
    strcat(arg[i], path[i]);
  }
  float w[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  int64_t w64[12] = {0};
  int64_t d43[2] = {4, 3}, d34[2] = {3, 4}, d12[1] = {12};
  write_tensor_pb(path[0], ONNX_FLOAT, 2, d43, w, sizeof(w));
  /* bytes protobuf cannot decode: a length-delimited field running past
   * the end */
  const uint8_t garbage[] = {0x4a, 0x7f, 0x01, 0x02, 0x03};
  ck_assert_int_eq(tu_write_file(path[1], garbage, sizeof(garbage)), 0);
  ck_assert_int_eq(tu_write_file(path[2], "", 0), 0);
  write_tensor_pb(path[3], 0, 2, d43, w, sizeof(w));
  write_tensor_pb(path[4], ONNX_INT64, 2, d43, w64, sizeof(w64));
  write_tensor_pb(path[5], ONNX_FLOAT, 2, d34, w, sizeof(w));
  write_tensor_pb(path[6], ONNX_FLOAT, 1, d12, w, sizeof(w));
  write_tensor_pb(path[7], ONNX_FLOAT, 2, d43, w, 40);

  const char *w_unknown[] = {"--const nope", "no input of that name", NULL};
  char nope[600];
  snprintf(nope, sizeof(nope), "nope=%s", path[0]);
  expect_fail_args(1, w_unknown, "--const", nope, in, NULL);
  /* an initializer is not a graph input here */
  char wbig[600];
  snprintf(wbig, sizeof(wbig), "wbig=%s", path[0]);
  const char *w_init[] = {"--const wbig", "no input of that name", NULL};
  expect_fail_args(1, w_init, "--const", wbig, in, NULL);
  /* an initializer listed as a graph input (older exporters): already a
   * constant, so --const would silently replace the model's own weights */
  const char *conv1d = "/usr/share/libonnx-testdata/data/pytorch-converted/test_Conv1d/model.onnx";
  if (file_exists(conv1d)) {
    char one[600];
    snprintf(one, sizeof(one), "1=%s", path[0]);
    const char *w_has[] = {"--const 1: the input already has an initializer", NULL};
    expect_fail_args(1, w_has, "--const", one, conv1d, NULL);
  } else {
    printf("SKIP --const on an initializer: %s not found (libonnx-testdata)\n", conv1d);
  }
  const char *w_garbage[] = {"--const v=", "garbage.pb", "not a serialized ONNX TensorProto",
                             NULL};
  expect_fail_args(1, w_garbage, "--const", arg[1], in, NULL);
  const char *w_empty[] = {"empty.pb", "empty", "cannot read the tensor file", NULL};
  expect_fail_args(1, w_empty, "--const", arg[2], in, NULL);
  const char *w_nodtype[] = {"nodtype.pb", "no data type", NULL};
  expect_fail_args(1, w_nodtype, "--const", arg[3], in, NULL);
  const char *w_dtype[] = {"int64.pb", "holds INT64, the input is declared FLOAT", NULL};
  expect_fail_args(1, w_dtype, "--const", arg[4], in, NULL);
  const char *w_shape[] = {"shape.pb", "holds shape [3,4], the input is declared [4,3]", NULL};
  expect_fail_args(1, w_shape, "--const", arg[5], in, NULL);
  const char *w_rank[] = {"rank.pb", "holds shape [12], the input is declared [4,3]", NULL};
  expect_fail_args(1, w_rank, "--const", arg[6], in, NULL);
  const char *w_raw[] = {"rawsize.pb", "raw_data holds 40 bytes but shape and dtype need 48",
                         NULL};
  expect_fail_args(1, w_raw, "--const", arg[7], in, NULL);
  const char *w_missing[] = {"missing.pb", "No such file", "cannot read the tensor file", NULL};
  expect_fail_args(1, w_missing, "--const", arg[8], in, NULL);
  const char *w_both[] = {"--const v and --set v", NULL};
  expect_fail_args(1, w_both, "--const", arg[0], "--set", "v=1", in, NULL);
  /* usage errors: exit 2 */
  const char *w_noeq[] = {"--const needs NAME=FILE.pb", NULL};
  expect_fail_args(2, w_noeq, "--const", "v", in, NULL);
  expect_fail_args(2, w_noeq, "--const", "=x.pb", in, NULL);
  expect_fail_args(2, w_noeq, in, "--const", NULL);
  const char *w_twice[] = {"--const v given twice", NULL};
  expect_fail_args(2, w_twice, "--const", arg[0], "--const", arg[0], in, NULL);
  char *log = NULL;
  ck_assert_int_eq(tu_quantize_log(&log, "--help", NULL), 0);
  ck_assert_ptr_nonnull(strstr(log, "--const NAME=FILE.pb"));
  ck_assert_ptr_nonnull(strstr(log, "--quantize-small"));
  free(log);
  for (int i = 0; i < 9; i++) free(arg[i]);
  free(in);
}
END_TEST

/* ---- the demo model built by meson ------------------------------- */

/* Parse "[[f, f, ...]]" (the examples' JSON) into out; returns the count. */
static int parse_json_floats(const char *s, float *out, int cap) {
  int n = 0;
  while (*s && n < cap) {
    if (strchr("[], \n\t\r", *s)) {
      s++;
      continue;
    }
    char *end;
    double v = strtod(s, &end);
    if (end == s) return -1;
    out[n++] = (float)v;
    s = end;
  }
  return n;
}

START_TEST(test_demo_model) {
  const char *classes[] = {"sine", "square", "triangle", "sawtooth", "noise"};
  char demo[4096];
  snprintf(demo, sizeof(demo), "%s", tu_build("models/demo.dynq"));
  dynq__model_t *m = open_model(demo);
  const dynq__graph_t *g = dynq__model_graph(m);
  ck_assert_int_eq(g->n_outputs, 2);
  int agree = 0;
  for (int c = 0; c < 5; c++) {
    char rel[256];
    snprintf(rel, sizeof(rel), "models/demo/examples/%s.json", classes[c]);
    char *txt = tu_read_file(tu_src(rel), NULL);
    ck_assert_msg(txt != NULL, "missing %s", rel);
    float x[64];
    ck_assert_int_eq(parse_json_floats(txt, x, 64), 64);
    free(txt);
    int64_t dims[2] = {1, 64};
    dynq__tensor_t in = f32_tensor(x, 2, dims);
    const char *names[] = {"x"};
    int best[2];
    for (int prec = 0; prec < 2; prec++) {
      dynq__tensor_t outs[2];
      char err[512] = "";
      int rc = run_model(m, prec ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8, names, &in, 1,
                         outs, err, sizeof(err));
      ck_assert_msg(rc == 0, "run: %d %s", rc, err);
      const float *p = outs[0].data;
      ck_assert_int_eq(outs[0].dims[1], 5);
      double sum = 0;
      best[prec] = 0;
      for (int k = 0; k < 5; k++) {
        sum += p[k];
        if (p[k] > p[best[prec]]) best[prec] = k;
      }
      ck_assert_double_eq_tol(sum, 1.0, 1e-4);
      clear_outputs(outs, 2);
    }
    /* make_demo.py picked examples its FP32 model classifies right. */
    ck_assert_msg(best[1] == c, "%s: fp32 path says class %d", classes[c], best[1]);
    agree += best[0] == c;
  }
  ck_assert_msg(agree >= 4, "int8 path classified only %d of 5 examples right", agree);
  dynq__model_unref(m);
}
END_TEST

/* --state IN=OUT: declared pairs are written; names that are not a graph
 * input/output, mismatched dtypes/ranks and malformed specs are refused. */
START_TEST(test_state_option) {
  char in[4096], outp[4200], *log = NULL;
  snprintf(in, sizeof(in), "%s", tu_src("tests/fixtures/stateful.onnx"));
  snprintf(outp, sizeof(outp), "%s/st.dynq", tu_tmp);
  ck_assert_int_eq(tu_quantize_log(&log, "--state", "state=stateN", in, outp, NULL), 0);
  free(log);
  dynq__model_t *m = NULL;
  char e[256];
  ck_assert_msg(dynq__model_open(outp, &m, e, sizeof(e)) == 0, "%s", e);
  const dynq__graph_t *g = dynq__model_graph(m);
  ck_assert_int_eq(g->n_state, 1);
  ck_assert_str_eq(g->values[g->state[0]].name, "state");
  ck_assert_str_eq(g->values[g->state[1]].name, "stateN");
  dynq__model_unref(m);
  snprintf(outp, sizeof(outp), "%s/st-bad.dynq", tu_tmp);
  ck_assert_int_eq(tu_quantize_log(&log, "--state", "state=nope", in, outp, NULL), 1);
  ck_assert_ptr_nonnull(strstr(log, "no output named 'nope'"));
  free(log);
  ck_assert_int_eq(tu_quantize_log(&log, "--state", "nope=stateN", in, outp, NULL), 1);
  ck_assert_ptr_nonnull(strstr(log, "no input named 'nope'"));
  free(log);
  ck_assert_int_eq(tu_quantize_log(&log, "--state", "state", in, outp, NULL), 2);
  ck_assert_ptr_nonnull(strstr(log, "INPUT=OUTPUT"));
  free(log);
  ck_assert_int_eq(tu_quantize_log(&log, "--state", "state=stateN", "--state", "state=y", in,
                                   outp, NULL), 1);
  ck_assert_ptr_nonnull(strstr(log, "bound twice"));
  free(log);
  ck_assert_int_ne(access(outp, F_OK), 0);
}
END_TEST

static Suite *quantize_suite(void) {
  Suite *s = suite_create("quantize");
  TCase *tc = tcase_create("mlp");
  tcase_add_checked_fixture(tc, tu_tmp_setup, tu_tmp_teardown);
  tcase_add_test(tc, test_mlp_default);
  tcase_add_test(tc, test_mlp_fp32);
  tcase_add_test(tc, test_mlp_per_tensor);
  tcase_add_test(tc, test_mlp_no_reference);
  suite_add_tcase(s, tc);
  tc = tcase_create("gemm");
  tcase_add_checked_fixture(tc, tu_tmp_setup, tu_tmp_teardown);
  tcase_add_test(tc, test_gemm_variants_fp32);
  tcase_add_test(tc, test_gemm_variants_int8);
  tcase_add_test(tc, test_constant_node);
  tcase_add_test(tc, test_fp32_fallback);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_checked_fixture(tc, tu_tmp_setup, tu_tmp_teardown);
  tcase_add_test(tc, test_unsupported);
  tcase_add_test(tc, test_softmax_old_opset);
  tcase_add_test(tc, test_upsample_attr_form);
  tcase_add_test(tc, test_gelu_opset20);
  tcase_add_test(tc, test_castlike_declared);
  tcase_add_test(tc, test_new_ops_together);
  tcase_add_test(tc, test_qoperator_static);
  tcase_add_test(tc, test_qoperator_runtime_scale);
  tcase_add_test(tc, test_nms_tail);
  tcase_add_test(tc, test_maxpool_indices);
  tcase_add_test(tc, test_sample_ops);
  tcase_add_test(tc, test_lp_ops);
  tcase_add_test(tc, test_resize18);
  tcase_add_test(tc, test_affine_grid);
  tcase_add_test(tc, test_col2im);
  tcase_add_test(tc, test_rotary);
  tcase_add_test(tc, test_attention23);
  tcase_add_test(tc, test_norm_ops);
  tcase_add_test(tc, test_wide_io);
  tcase_add_test(tc, test_deform_conv);
  tcase_add_test(tc, test_conv3d);
  tcase_add_test(tc, test_failed_node_after_two_outputs);
  tcase_add_test(tc, test_underflowing_weight_rows);
  tcase_add_test(tc, test_rules_old_forms);
  tcase_add_test(tc, test_rules_errors);
  tcase_add_test(tc, test_op_types_and_exclude);
  tcase_add_test(tc, test_progress);
  tcase_add_test(tc, test_external_data);
  tcase_add_test(tc, test_external_far_offset);
  tcase_add_test(tc, test_avgpool_dilations);
  tcase_add_test(tc, test_pad_wrap);
  tcase_add_test(tc, test_bitwise);
  tcase_add_test(tc, test_center_crop_pad);
  tcase_add_test(tc, test_external_errors);
  tcase_add_test(tc, test_malformed_models);
  tcase_add_test(tc, test_bad_files);
  tcase_add_test(tc, test_fuzz_regressions);
  tcase_add_test(tc, test_const_binds_weights);
  tcase_add_test(tc, test_const_errors);
  tcase_add_test(tc, test_state_option);
  suite_add_tcase(s, tc);
  tc = tcase_create("demo");
  tcase_add_test(tc, test_demo_model);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(quantize_suite)
