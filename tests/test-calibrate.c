/*
 * Error-budget quantization (dynq-quantize --calibrate) and the accuracy
 * commands of dynqctl (infer/stream --record, compare, stream --compare):
 * a synthetic model with one deliberately sensitive layer, Silero VAD v5
 * calibrated on a stream recorded through a real dynqd on one clip and
 * checked on another, and every bad calibration input.
 */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "npz.h"
#include "testutil.h"

static char vad_onnx[4096];

static int have_vad(void) {
  const char *e = getenv("DYNQ_VAD_ONNX"), *h = getenv("HOME");
  if (e && *e) snprintf(vad_onnx, sizeof vad_onnx, "%s", e);
  else snprintf(vad_onnx, sizeof vad_onnx, "%s/.cache/dynq/silero_vad_v5.onnx", h && *h ? h : "/root");
  if (access(vad_onnx, R_OK) == 0) return 1;
  const char *req = getenv("DYNQ_REQUIRE_VAD");
  ck_assert_msg(!(req && *req && strcmp(req, "0") != 0),
                "DYNQ_REQUIRE_VAD is set but %s is missing: run models/fetch-silero.sh", vad_onnx);
  printf("SKIP: Silero VAD model %s not found\n", vad_onnx);
  return 0;
}

/* Run a program (NULL-terminated args); exit status, output in *out. */
static int run(char **out, const char *prog, ...) {
  char *argv[40];
  int a = 0;
  va_list ap;
  argv[a++] = (char *)prog;
  va_start(ap, prog);
  const char *s;
  while ((s = va_arg(ap, const char *)) != NULL && a < 39) argv[a++] = (char *)s;
  va_end(ap);
  argv[a] = NULL;
  return tu_run(argv, out);
}

static char quant[4096], ctl[4096];
static void paths(void) {
  snprintf(quant, sizeof quant, "%s", tu_build("models/dynq-quantize"));
  snprintf(ctl, sizeof ctl, "%s", tu_build("client/dynqctl"));
}

/* A number after `key` in s (JSON "key": value), or NAN. */
static double json_num(const char *s, const char *key) {
  char k[128];
  snprintf(k, sizeof k, "\"%s\": ", key);
  const char *p = strstr(s, k);
  return p ? strtod(p + strlen(k), NULL) : NAN;
}

/* relL2 of the written model's INT8 path against its FP32 path over the
 * calibration files of the sensitive model (independent of the tool). */
static double sensitive_error(const char *model, const char *dir) {
  dynq__model_t *m = NULL;
  char err[512] = "";
  ck_assert_msg(dynq__model_open(model, &m, err, sizeof err) == 0, "%s", err);
  double d2 = 0, r2 = 0;
  for (int f = 0; f < 8; f++) {
    char path[4096 + 16];
    snprintf(path, sizeof path, "%s/%06d.npz", dir, f);
    dynq__npz_t z;
    ck_assert_msg(dynq__npz_load(path, &z, err, sizeof err) == 0, "%s", err);
    dynq__tensor_t in = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {16, 64}, .data = z.t[0].data};
    dynq__tensor_t o8, o32;
    dynq__run_opts_t a = {.precision = DYNQ_PRECISION_INT8, .threads = 1};
    dynq__run_opts_t b = {.precision = DYNQ_PRECISION_FP32, .threads = 1};
    ck_assert(dynq__model_run(m, &a, &in, &o8, err, sizeof err) == 0);
    ck_assert(dynq__model_run(m, &b, &in, &o32, err, sizeof err) == 0);
    for (int i = 0; i < 16 * 8; i++) {
      double x = ((float *)o8.data)[i], r = ((float *)o32.data)[i];
      d2 += (x - r) * (x - r);
      r2 += r * r;
    }
    dynq__tensor_clear(&o8);
    dynq__tensor_clear(&o32);
    dynq__npz_free(&z);
  }
  dynq__model_unref(m);
  return sqrt(d2 / r2);
}

START_TEST(sensitive_layer_is_the_one_kept) {
  paths();
  char *dir = tu_mkdtemp(), out_path[4096], *out = NULL;
  char cal[4096], onnx[4096];
  snprintf(cal, sizeof cal, "%s", tu_src("tests/fixtures/calib/sensitive"));
  snprintf(onnx, sizeof onnx, "%s", tu_src("tests/fixtures/calib/sensitive.onnx"));
  snprintf(out_path, sizeof out_path, "%s/s.dynq", dir);
  /* every layer INT8 misses the budget by far: L2 is made to */
  int st = run(&out, quant, "--calibrate", cal, "--error-budget", "0.05", "--metric", "relL2",
               "--json", onnx, out_path, NULL);
  ck_assert_msg(st == 0, "status %d: %s", st, out);
  ck_assert_msg(json_num(out, "error_all_int8") > 0.1, "%s", out);
  ck_assert_msg(json_num(out, "kept_fp32") == 1 && json_num(out, "quantized") == 2, "%s", out);
  const char *l2 = strstr(out, "\"name\": \"L2\"");
  ck_assert_msg(l2 != NULL && strstr(l2, "\"mode\": \"fp32\"") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "\"mode\": \"fp32\"") == strstr(l2, "\"mode\": \"fp32\""),
                "a layer besides L2 kept FP32: %s", out);
  ck_assert_msg(strstr(out, "\"met\": true"), "%s", out);
  double e = sensitive_error(out_path, cal);
  ck_assert_msg(e <= 0.05, "written model's relL2 on the calibration set %g > 0.05", e);
  ck_assert_msg(fabs(e - json_num(out, "error")) < 1e-4, "tool says %g, measured %g",
                json_num(out, "error"), e);
  free(out);
  /* a budget the all-INT8 model meets keeps nothing; the human report */
  st = run(&out, quant, "--calibrate", cal, "--error-budget", "1", "--metric", "relL2", onnx,
           out_path, NULL);
  ck_assert_msg(st == 0 && strstr(out, "0 layers kept FP32, 3 quantized"), "%s", out);
  ck_assert_msg(strstr(out, "L2") && strstr(out, "err alone"), "%s", out);
  free(out);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* Attention's INT8 products are a candidate of the search like a layer:
 * on a model whose V carries a huge outlier (tests/fixtures/make_calib.py)
 * they alone break the budget and are the one thing kept FP32, and the
 * written model runs them FP32 (its INT8 path matches --fp32-attention's
 * bit for bit); under a loose budget they stay INT8, the default's bits.
 * The default conversion (no calls to measure on) keeps them INT8. */
START_TEST(attention_kept_fp32_when_it_breaks_the_budget) {
  paths();
  char *dir = tu_mkdtemp(), p_cal[4096], p_def[4096], p_f32[4096], *out = NULL;
  char cal[4096], onnx[4096];
  snprintf(cal, sizeof cal, "%s", tu_src("tests/fixtures/calib/attn_outlier"));
  snprintf(onnx, sizeof onnx, "%s", tu_src("tests/fixtures/calib/attn_outlier.onnx"));
  snprintf(p_cal, sizeof p_cal, "%s/cal.dynq", dir);
  snprintf(p_def, sizeof p_def, "%s/def.dynq", dir);
  snprintf(p_f32, sizeof p_f32, "%s/f32.dynq", dir);
  ck_assert_int_eq(run(&out, quant, onnx, p_def, NULL), 0);
  free(out);
  ck_assert_int_eq(run(&out, quant, "--fp32-attention", onnx, p_f32, NULL), 0);
  free(out);
  float *y[3];
  const char *paths3[3] = {p_cal, p_def, p_f32};
  for (int pass = 0; pass < 2; pass++) {
    int st = run(&out, quant, "--calibrate", cal, "--error-budget", pass ? "1" : "0.05",
                 "--metric", "relL2", "--json", onnx, p_cal, NULL);
    ck_assert_msg(st == 0, "status %d: %s", st, out);
    const char *a = strstr(out, "\"name\": \"(2 attention products)\"");
    ck_assert_msg(a != NULL, "no attention entry: %s", out);
    if (pass == 0) {
      ck_assert_msg(json_num(out, "error_all_int8") > 0.1, "%s", out);
      ck_assert_msg(json_num(out, "kept_fp32") == 1 && strstr(a, "\"mode\": \"fp32\""), "%s", out);
      ck_assert_msg(json_num(out, "error") <= 0.05, "%s", out);
    } else {
      ck_assert_msg(json_num(out, "kept_fp32") == 0 && strstr(a, "\"mode\": \"int8\""), "%s", out);
    }
    free(out);
    /* the written model's INT8 output on call 0, against the two conversions */
    char err[512] = "", path[4096 + 16];
    snprintf(path, sizeof path, "%s/000000.npz", cal);
    dynq__npz_t z;
    ck_assert_msg(dynq__npz_load(path, &z, err, sizeof err) == 0, "%s", err);
    dynq__tensor_t in = {.dtype = DYNQ_DT_F32, .rank = 3, .dims = {1, 16, 16}, .data = z.t[0].data};
    for (int i = 0; i < 3; i++) {
      dynq__model_t *m = NULL;
      dynq__tensor_t o;
      dynq__run_opts_t ro = {.precision = DYNQ_PRECISION_INT8, .threads = 1};
      ck_assert_msg(dynq__model_open(paths3[i], &m, err, sizeof err) == 0, "%s", err);
      ck_assert_msg(dynq__model_run(m, &ro, &in, &o, err, sizeof err) == 0, "%s", err);
      y[i] = malloc(sizeof(float) * 256);
      memcpy(y[i], o.data, sizeof(float) * 256);
      dynq__tensor_clear(&o);
      dynq__model_unref(m);
    }
    dynq__npz_free(&z);
    ck_assert_msg(memcmp(y[1], y[2], sizeof(float) * 256) != 0, "INT8 attention changed nothing");
    ck_assert_msg(memcmp(y[0], y[pass ? 1 : 2], sizeof(float) * 256) == 0,
                  "budget %s: the written model is not the %s conversion", pass ? "1" : "0.05",
                  pass ? "default" : "--fp32-attention");
    for (int i = 0; i < 3; i++) free(y[i]);
  }
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* Expect exit status 1, nothing written, and every needle in the output. */
static void expect_fail(const char *dir_arg, const char *budget, const char *out_path,
                        const char *n1, const char *n2) {
  char *out = NULL;
  int st = run(&out, quant, "--calibrate", dir_arg, "--error-budget", budget,
               tu_src("tests/fixtures/calib/sensitive.onnx"), out_path, NULL);
  ck_assert_msg(st == 1, "status %d: %s", st, out);
  ck_assert_msg(strstr(out, n1) != NULL, "'%s' not in: %s", n1, out);
  ck_assert_msg(n2 == NULL || strstr(out, n2) != NULL, "'%s' not in: %s", n2, out);
  ck_assert_msg(access(out_path, F_OK) != 0, "%s written after a failure", out_path);
  free(out);
}

static void write_x(const char *path, int dtype, int rank, int64_t d0, int64_t d1,
                    const char *name) {
  static float buf[16 * 64 * 2];
  dynq_tensor_t t = {.name = name, .dtype = dtype, .rank = rank, .shape = {d0, d1},
                     .data = buf, .nbytes = (size_t)(d0 * (rank > 1 ? d1 : 1)) *
                                            (dtype == DYNQ_INT64 ? 8 : 4)};
  char err[256];
  ck_assert_msg(dynq__npz_write(path, 1, &t, err, sizeof err) == 0, "%s", err);
}

START_TEST(bad_calibration_inputs) {
  paths();
  char *dir = tu_mkdtemp(), sub[4096], f[4096 + 32], out_path[4096];
  snprintf(out_path, sizeof out_path, "%s/out.dynq", dir);
  snprintf(sub, sizeof sub, "%s/cal", dir);
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  /* empty directory */
  expect_fail(sub, "0.05", out_path, "no .npz files", sub);
  /* a missing input */
  snprintf(f, sizeof f, "%s/000000.npz", sub);
  write_x(f, DYNQ_FLOAT32, 2, 16, 64, "y");
  expect_fail(sub, "0.05", out_path, "000000.npz has no array 'x'", NULL);
  /* a wrong dtype */
  write_x(f, DYNQ_INT64, 2, 4, 64, "x");
  expect_fail(sub, "0.05", out_path, "000000.npz: array 'x' is int64", "float32");
  /* a wrong shape */
  write_x(f, DYNQ_FLOAT32, 2, 16, 63, "x");
  expect_fail(sub, "0.05", out_path, "000000.npz: array 'x' has shape [16, 63]", "[-1, 64]");
  /* a file that is not an npz */
  ck_assert_int_eq(tu_write_file(f, "hello", 5), 0);
  expect_fail(sub, "0.05", out_path, "000000.npz", "not an .npz");
  /* a stray file */
  write_x(f, DYNQ_FLOAT32, 2, 16, 64, "x");
  snprintf(f, sizeof f, "%s/notes.txt", sub);
  ck_assert_int_eq(tu_write_file(f, "x", 1), 0);
  expect_fail(sub, "0.05", out_path, "notes.txt is not an .npz file", NULL);
  unlink(f);
  /* no such directory */
  snprintf(f, sizeof f, "%s/none", dir);
  expect_fail(f, "0.05", out_path, "none", "No such file");
  /* usage errors: exit 2 */
  char *out = NULL;
  int st = run(&out, quant, "--calibrate", sub, tu_src("tests/fixtures/calib/sensitive.onnx"),
               out_path, NULL);
  ck_assert_msg(st == 2 && strstr(out, "--error-budget"), "%d %s", st, out);
  free(out);
  st = run(&out, quant, "--calibrate", sub, "--error-budget", "-1",
           tu_src("tests/fixtures/calib/sensitive.onnx"), out_path, NULL);
  ck_assert_msg(st == 2 && strstr(out, ">= 0"), "%d %s", st, out);
  free(out);
  st = run(&out, quant, "--calibrate", sub, "--error-budget", "0.1", "--metric", "l1",
           tu_src("tests/fixtures/calib/sensitive.onnx"), out_path, NULL);
  ck_assert_msg(st == 2 && strstr(out, "max-abs or relL2"), "%d %s", st, out);
  free(out);
  st = run(&out, quant, "--calibrate", sub, "--error-budget", "0.1", "--no-reference",
           tu_src("tests/fixtures/calib/sensitive.onnx"), out_path, NULL);
  ck_assert_msg(st == 2 && strstr(out, "--no-reference"), "%d %s", st, out);
  free(out);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* dynqd serving `name` from models/ of dir. */
static void start(tu_daemon_t *d, const char *dir, const char *models) {
  ck_assert_int_eq(tu_daemon_start(d, dir, models, NULL), 0);
}

START_TEST(record_and_compare_stateless) {
  paths();
  char *models = NULL, *dir = tu_mkdtemp_models(&models), mp[4096], rec[4096], *out = NULL;
  snprintf(mp, sizeof mp, "%s/sens.dynq", models);
  char *log = NULL;
  int st = run(&log, quant, tu_src("tests/fixtures/calib/sensitive.onnx"), mp, NULL);
  ck_assert_msg(st == 0, "%s", log);
  free(log);
  tu_daemon_t d;
  start(&d, dir, models);
  snprintf(rec, sizeof rec, "%s/rec", dir);
  const char *x = tu_src("tests/fixtures/calib/sensitive/000003.npz");
  char xs[4096];
  snprintf(xs, sizeof xs, "%s", x);
  /* two infer calls append 000000 and 000001, each the call's inputs */
  for (int i = 0; i < 2; i++) {
    st = run(&out, ctl, "--socket", d.sock, "infer", "sens", "--input", xs, "--record", rec, NULL);
    ck_assert_msg(st == 0, "%s", out);
    free(out);
  }
  char f[4096 + 32], err[256];
  snprintf(f, sizeof f, "%s/000001.npz", rec);
  dynq__npz_t z, z0;
  ck_assert_msg(dynq__npz_load(f, &z, err, sizeof err) == 0, "%s", err);
  ck_assert_msg(dynq__npz_load(xs, &z0, err, sizeof err) == 0, "%s", err);
  ck_assert_int_eq(z.n, 1);
  ck_assert_str_eq(z.t[0].name, "x");
  ck_assert_mem_eq(z.t[0].data, z0.t[0].data, z0.t[0].nbytes);
  dynq__npz_free(&z);
  dynq__npz_free(&z0);
  /* compare: both precisions, per output; the sensitive layer shows */
  st = run(&out, ctl, "--socket", d.sock, "--json", "compare", "sens", "--input", xs, NULL);
  ck_assert_msg(st == 0, "%s", out);
  double rel = json_num(out, "rel_l2"), mx = json_num(out, "max_abs"), cs = json_num(out, "cosine");
  ck_assert_msg(rel > 0.05 && rel < 1 && mx > 0 && cs > 0.5 && cs < 1, "%s", out);
  ck_assert_msg(strstr(out, "\"rows\": 16") && strstr(out, "\"argmax_changed\": "), "%s", out);
  free(out);
  st = run(&out, ctl, "--socket", d.sock, "compare", "sens", "--input", xs, NULL);
  ck_assert_msg(st == 0 && strstr(out, "relL2") && strstr(out, "arg-max changed"), "%s", out);
  free(out);
  st = run(&out, ctl, "--socket", d.sock, "compare", "sens", "--input", xs, "--precision",
           "fp32", NULL);
  ck_assert_msg(st == 2 && strstr(out, "runs both"), "%s", out);
  free(out);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  tu_rmtree(dir);
  free(dir);
  free(models);
}
END_TEST

START_TEST(silero_calibrated_on_a_recorded_stream) {
  if (!have_vad()) return;
  paths();
  char *models = NULL, *dir = tu_mkdtemp_models(&models), mp[4096], cp[4096], rec[4096];
  char *out = NULL;
  snprintf(mp, sizeof mp, "%s/vad.dynq", models);
  snprintf(cp, sizeof cp, "%s/vadcal.dynq", models);
  snprintf(rec, sizeof rec, "%s/rec", dir);
  /* the hand rule's conversion, for its FP32 layer count */
  int st = run(&out, quant, "--set", "sr=16000", "--state", "state=stateN", vad_onnx, mp, NULL);
  ck_assert_msg(st == 0, "%s", out);
  int rule_q, rule_f;
  const char *t = strstr(out, "total: ");
  ck_assert_msg(t && sscanf(t, "total: %*d linear layers, %d quantized, %d fp32", &rule_q,
                            &rule_f) == 2, "%s", out);
  free(out);
  tu_daemon_t d;
  start(&d, dir, models);
  char clip1[4096], clip2[4096];
  snprintf(clip1, sizeof clip1, "input=%s", tu_src("tests/fixtures/vad/speech.wav"));
  snprintf(clip2, sizeof clip2, "input=%s", tu_src("tests/fixtures/vad/speech2.wav"));
  st = run(&out, ctl, "--socket", d.sock, "stream", "vad", "--input", clip1, "--record", rec, NULL);
  ck_assert_msg(st == 0, "%s", out);
  free(out);
  /* the recorded stream is the calibration set, the rule off */
  st = run(&out, quant, "--set", "sr=16000", "--state", "state=stateN", "--no-auto-fp32",
           "--calibrate", rec, "--error-budget", "0.02", "--json", vad_onnx, cp, NULL);
  ck_assert_msg(st == 0, "%s", out);
  printf("silero calibration: %s\n", out);
  ck_assert_msg(json_num(out, "calls") == 229 && json_num(out, "state_pairs") == 1, "%s", out);
  ck_assert_msg(json_num(out, "error") <= 0.02, "%s", out);
  int nf = 0;
  for (const char *p = out; (p = strstr(p, "\"mode\": \"fp32\"")) != NULL; p++) nf++;
  ck_assert_msg(nf <= rule_f, "calibration keeps %d layers FP32, the rule %d", nf, rule_f);
  free(out);
  /* on the other clip, through dynqd: INT8 vs FP32 sessions */
  st = run(&out, ctl, "--socket", d.sock, "load", "vadcal", NULL);
  ck_assert_msg(st == 0, "%s", out);
  free(out);
  st = run(&out, ctl, "--socket", d.sock, "--json", "stream", "vadcal", "--input", clip2,
           "--compare", NULL);
  ck_assert_msg(st == 0, "%s", out);
  const char *sum = strstr(out, "{\"summary\": ");
  ck_assert_msg(sum != NULL, "%s", out);
  double mx = json_num(sum, "max_abs");
  printf("silero: calibrated on speech.wav, max |dp| on speech2.wav %g\n", mx);
  ck_assert_msg(mx <= 0.02 && mx > 0, "max |dp| on the other clip %g > 0.02", mx);
  ck_assert_msg(strstr(sum, "\"threshold_changed\": 0"), "%s", sum);
  free(out);
  /* a budget nothing meets: not even all-FP32 layers reproduce the
   * reference bit for bit; nothing written, unless --force */
  char zp[4096];
  snprintf(zp, sizeof zp, "%s/zero.dynq", dir);
  st = run(&out, quant, "--set", "sr=16000", "--state", "state=stateN", "--calibrate", rec,
           "--error-budget", "0", vad_onnx, zp, NULL);
  if (st == 1) {
    ck_assert_msg(strstr(out, "cannot be met") && strstr(out, "nothing written") &&
                  strstr(out, "--force"), "%s", out);
    ck_assert(access(zp, F_OK) != 0);
    free(out);
    st = run(&out, quant, "--set", "sr=16000", "--state", "state=stateN", "--calibrate", rec,
             "--error-budget", "0", "--force", vad_onnx, zp, NULL);
    ck_assert_msg(st == 0 && access(zp, F_OK) == 0 && strstr(out, "--force"), "%s", out);
  } else {
    /* bit-identical FP32 layers would meet 0: then it must say so */
    ck_assert_msg(st == 0 && strstr(out, "budget met"), "%d %s", st, out);
  }
  free(out);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  tu_rmtree(dir);
  free(dir);
  free(models);
}
END_TEST


START_TEST(diagnose_points_at_the_sensitive_layer) {
  paths();
  char *dir = tu_mkdtemp(), mp[4096], np[4096], *out = NULL;
  snprintf(mp, sizeof mp, "%s/s.dynq", dir);
  snprintf(np, sizeof np, "%s/n.dynq", dir);
  char cal[4096], onnx[4096];
  snprintf(cal, sizeof cal, "%s", tu_src("tests/fixtures/calib/sensitive"));
  snprintf(onnx, sizeof onnx, "%s", tu_src("tests/fixtures/calib/sensitive.onnx"));
  int st = run(&out, quant, onnx, mp, NULL);
  ck_assert_msg(st == 0, "%s", out);
  free(out);
  st = run(&out, quant, "--diagnose", mp, "--input", cal, "--json", NULL);
  ck_assert_msg(st == 0, "%s", out);
  /* L2 adds the error by itself; L3 adds little but carries L2's */
  const char *l1 = strstr(out, "\"name\": \"L1\""), *l2 = strstr(out, "\"name\": \"L2\""),
             *l3 = strstr(out, "\"name\": \"L3\"");
  ck_assert_msg(l1 && l2 && l3, "%s", out);
  ck_assert_msg(json_num(l2, "local_rel_l2") > 0.1, "%s", out);
  ck_assert_msg(json_num(l1, "local_rel_l2") < 0.03 && json_num(l3, "local_rel_l2") < 0.03, "%s", out);
  ck_assert_msg(json_num(l3, "accumulated_rel_l2") > 0.1, "%s", out);
  ck_assert_msg(json_num(out, "calls") == 8, "%s", out);
  free(out);
  /* one recorded call works as the input too; the human table names L2 first */
  char one[4096 + 16];
  snprintf(one, sizeof one, "%s/000002.npz", cal);
  st = run(&out, quant, "--diagnose", mp, "--input", one, NULL);
  ck_assert_msg(st == 0 && strstr(out, "largest local errors: L2"), "%s", out);
  free(out);
  /* refusals */
  st = run(&out, quant, "--diagnose", mp, NULL);
  ck_assert_msg(st == 2 && strstr(out, "usage"), "%s", out);
  free(out);
  st = run(&out, quant, "--no-reference", onnx, np, NULL);
  free(out);
  st = run(&out, quant, "--diagnose", np, "--input", cal, NULL);
  ck_assert_msg(st == 1 && strstr(out, "no FP32 reference"), "%s", out);
  free(out);
  st = run(&out, quant, "--diagnose", mp, "--input", tu_src("tests/fixtures/mlp_x.npy"), NULL);
  ck_assert_msg(st == 1 && strstr(out, "mlp_x.npy"), "%s", out);
  free(out);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("calibrate");
  TCase *t = tcase_create("core");
  tcase_set_timeout(t, 300);
  tcase_add_test(t, sensitive_layer_is_the_one_kept);
  tcase_add_test(t, attention_kept_fp32_when_it_breaks_the_budget);
  tcase_add_test(t, bad_calibration_inputs);
  tcase_add_test(t, record_and_compare_stateless);
  tcase_add_test(t, silero_calibrated_on_a_recorded_stream);
  tcase_add_test(t, diagnose_points_at_the_sensitive_layer);
  suite_add_tcase(s, t);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf == 0 ? 0 : 1;
}
