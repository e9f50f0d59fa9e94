/*
 * End to end: dynq-quantize turns the ONNX MLP fixture into .dynq models, a
 * real dynqd serves them on a temporary socket, and libdynqclient and
 * dynqctl query it.  Checks the acceptance figures of the foundation:
 *   - FP32 path vs the independent numpy outputs: max |d| / max |ref| <= 1e-5
 *   - INT8 path vs the FP32 path: relL2 <= 0.02 (and not identical)
 *   - rows sent one at a time are bit-identical to the same rows batched
 *   - concurrent clients get exactly the serial answers
 *   - SIGTERM drains and exits 0.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dynq/dynqclient.h"
#include "testutil.h"

enum { ROWS = 16, IN = 64, OUT = 10 };

static char *dir;
static tu_daemon_t daemon_;
static float x[ROWS * IN], y_ref[ROWS * OUT], p_ref[ROWS * OUT];

static void load_f32(const char *rel, float *dst, size_t n) {
  size_t len = 0;
  void *p = tu_read_file(tu_src(rel), &len);
  ck_assert_msg(p != NULL, "cannot read %s", rel);
  ck_assert_uint_eq(len, n * sizeof(float));
  memcpy(dst, p, len);
  free(p);
}

static void quantize(const char *flag, const char *name) {
  char out[512];
  snprintf(out, sizeof(out), "%s/models/%s.dynq", dir, name);
  ck_assert_msg(tu_quantize("tests/fixtures/mlp.onnx", out, flag, (char *)NULL) == 0,
                "dynq-quantize %s failed (its output is above)", flag ? flag : "");
}

static void setup(void) {
  char *md = NULL;
  dir = tu_mkdtemp_models(&md);
  quantize(NULL, "mlp");
  quantize("--fp32", "mlp_fp32");
  quantize("--act-per-tensor", "mlp_pt");
  load_f32("tests/fixtures/mlp_x.f32", x, ROWS * IN);
  load_f32("tests/fixtures/mlp_y.f32", y_ref, ROWS * OUT);
  load_f32("tests/fixtures/mlp_p.f32", p_ref, ROWS * OUT);
  ck_assert_int_eq(tu_daemon_start(&daemon_, dir, md, NULL), 0);
  free(md);
}

static void teardown(void) {
  if (daemon_.pid > 0) tu_daemon_stop(&daemon_, SIGKILL);
  tu_rmtree(dir);
  free(dir);
}

static const dynq_tensor_t *find_out(const dynq_infer_result_t *r, const char *name) {
  for (int i = 0; i < r->n_outputs; i++)
    if (strcmp(r->outputs[i].name, name) == 0) return &r->outputs[i];
  return NULL;
}

/* Infer rows [r0, r0 + n) of x; returns the y output copied into dst. */
static int infer_rows(dynq_client_t *c, const char *model, int precision, int r0,
                      int n, float *y, float *p) {
  dynq_tensor_t in = {.name = "x", .dtype = DYNQ_FLOAT32, .rank = 2,
                      .shape = {n, IN}, .data = x + r0 * IN,
                      .nbytes = sizeof(float) * (size_t)(n * IN)};
  dynq_infer_result_t r;
  int rc = dynq_infer(c, model, precision, &in, 1, &r);
  if (rc != 0) return rc;
  const dynq_tensor_t *ty = find_out(&r, "y"), *tp = find_out(&r, "p");
  ck_assert_ptr_nonnull(ty);
  ck_assert_ptr_nonnull(tp);
  ck_assert_int_eq(ty->dtype, DYNQ_FLOAT32);
  ck_assert_int_eq(ty->rank, 2);
  ck_assert_int_eq(ty->shape[0], n);
  ck_assert_int_eq(ty->shape[1], OUT);
  ck_assert_uint_eq(ty->nbytes, sizeof(float) * (size_t)(n * OUT));
  memcpy(y, ty->data, ty->nbytes);
  if (p) memcpy(p, tp->data, tp->nbytes);
  dynq_infer_result_free(&r);
  return 0;
}

START_TEST(client_accuracy) {
  dynq_client_t *c = NULL;
  ck_assert_int_eq(dynq_connect(daemon_.sock, &c), 0);
  ck_assert_int_eq(dynq_ping(c), 0);

  char **names = NULL;
  ck_assert_int_eq(dynq_list_models(c, &names), 0);
  int n = 0;
  while (names[n]) n++;
  ck_assert_int_eq(n, 3);
  dynq_strv_free(names);

  dynq_model_info_t mi;
  ck_assert_int_eq(dynq_model_info(c, "mlp", &mi), 0);
  ck_assert_int_eq(mi.n_inputs, 1);
  ck_assert_str_eq(mi.inputs[0].name, "x");
  ck_assert_int_eq(mi.inputs[0].rank, 2);
  ck_assert_int_eq(mi.inputs[0].shape[0], -1);
  ck_assert_int_eq(mi.inputs[0].shape[1], IN);
  ck_assert_int_eq(mi.n_outputs, 2);
  ck_assert_int_ge(mi.quantized_layers, 4);
  ck_assert(mi.has_reference);
  ck_assert(mi.int8_weight_bytes > 0);
  dynq_model_info_free(&mi);

  float y8[ROWS * OUT], y32[ROWS * OUT], yf[ROWS * OUT], ypt[ROWS * OUT];
  float p8[ROWS * OUT], p32[ROWS * OUT];
  ck_assert_int_eq(infer_rows(c, "mlp", DYNQ_INFER_FP32, 0, ROWS, y32, p32), 0);
  ck_assert_int_eq(infer_rows(c, "mlp", DYNQ_INFER_INT8, 0, ROWS, y8, p8), 0);
  ck_assert_int_eq(infer_rows(c, "mlp_fp32", DYNQ_INFER_DEFAULT, 0, ROWS, yf, NULL), 0);
  ck_assert_int_eq(infer_rows(c, "mlp_pt", DYNQ_INFER_DEFAULT, 0, ROWS, ypt, NULL), 0);

  double e32 = tu_rel_max(y32, y_ref, ROWS * OUT), ef = tu_rel_max(yf, y_ref, ROWS * OUT);
  double ep = tu_rel_max(p32, p_ref, ROWS * OUT);
  double e8 = tu_rel_l2(y8, y32, ROWS * OUT), ept = tu_rel_l2(ypt, y32, ROWS * OUT);
  printf("integration: fp32-ref vs numpy %.3g, --fp32 model vs numpy %.3g, softmax %.3g; "
         "int8 per-row relL2 %.4f, per-tensor %.4f\n", e32, ef, ep, e8, ept);
  ck_assert_msg(e32 <= 1e-5, "fp32 path vs numpy: %g", e32);
  ck_assert_msg(ef <= 1e-5, "--fp32 model vs numpy: %g", ef);
  ck_assert_msg(ep <= 1e-5, "softmax output vs numpy: %g", ep);
  ck_assert_msg(e8 <= 0.02 && e8 > 0, "int8 relL2 %g", e8);
  ck_assert_msg(ept <= 0.02 && ept > 0, "per-tensor relL2 %g", ept);

  /* one row at a time == batched, bit for bit */
  for (int r = 0; r < ROWS; r++) {
    float one[OUT];
    ck_assert_int_eq(infer_rows(c, "mlp", DYNQ_INFER_INT8, r, 1, one, NULL), 0);
    ck_assert_msg(memcmp(one, y8 + r * OUT, sizeof(one)) == 0, "row %d differs alone vs batched", r);
  }
  /* and a batch of 5 from the middle */
  float five[5 * OUT];
  ck_assert_int_eq(infer_rows(c, "mlp", DYNQ_INFER_INT8, 7, 5, five, NULL), 0);
  ck_assert_int_eq(memcmp(five, y8 + 7 * OUT, sizeof(five)), 0);

  /* errors keep the connection usable */
  ck_assert_int_eq(infer_rows(c, "nope", 0, 0, 1, five, NULL), DYNQ_ENOMODEL);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "nope"));
  dynq_tensor_t bad = {.name = "x", .dtype = DYNQ_FLOAT32, .rank = 2, .shape = {1, IN + 1},
                       .data = x, .nbytes = sizeof(float) * (IN + 1)};
  dynq_infer_result_t r;
  ck_assert_int_eq(dynq_infer(c, "mlp", 0, &bad, 1, &r), DYNQ_ESHAPE);
  bad.name = "z";
  bad.shape[1] = IN;
  bad.nbytes = sizeof(float) * IN;
  ck_assert_int_eq(dynq_infer(c, "mlp", 0, &bad, 1, &r), DYNQ_ENOINPUT);
  ck_assert_int_eq(dynq_ping(c), 0);
  dynq_close(c);
}
END_TEST

typedef struct worker {
  const char *sock;
  const float *want;
  int failures;
} worker_t;

static void *worker_main(void *arg) {
  worker_t *w = arg;
  dynq_client_t *c = NULL;
  if (dynq_connect(w->sock, &c) != 0) {
    w->failures = 1000;
    return NULL;
  }
  for (int it = 0; it < 40; it++) {
    int r = (it * 7) % ROWS;
    float y[OUT];
    if (infer_rows(c, "mlp", DYNQ_INFER_INT8, r, 1, y, NULL) != 0 ||
        memcmp(y, w->want + r * OUT, sizeof(y)) != 0)
      w->failures++;
  }
  dynq_close(c);
  return NULL;
}

START_TEST(concurrent_clients) {
  dynq_client_t *c = NULL;
  float y8[ROWS * OUT];
  ck_assert_int_eq(dynq_connect(daemon_.sock, &c), 0);
  ck_assert_int_eq(infer_rows(c, "mlp", DYNQ_INFER_INT8, 0, ROWS, y8, NULL), 0);
  dynq_close(c);
  enum { T = 8 };
  pthread_t th[T];
  worker_t w[T];
  for (int i = 0; i < T; i++) {
    w[i] = (worker_t){.sock = daemon_.sock, .want = y8};
    ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
  }
  for (int i = 0; i < T; i++) {
    pthread_join(th[i], NULL);
    ck_assert_msg(w[i].failures == 0, "client %d: %d wrong or failed answers", i, w[i].failures);
  }
  ck_assert_int_eq(tu_daemon_stop(&daemon_, SIGTERM), 0);
}
END_TEST

/* Pull the "data" array of output `name` out of dynqctl's --json output. */
static int json_output(const char *js, const char *name, float *dst, int cap) {
  char key[64];
  snprintf(key, sizeof(key), "\"%s\"", name);
  const char *p = strstr(js, key);
  if (p == NULL) return -1;
  p = strstr(p, "\"data\"");
  if (p == NULL) return -1;
  p = strchr(p, '[');
  if (p == NULL) return -1;
  int n = 0, depth = 0;
  for (; *p; p++) {
    if (*p == '[') depth++;
    else if (*p == ']') {
      if (--depth == 0) break;
    } else if (strchr("-+.0123456789naNIi", *p) != NULL && n < cap) {
      char *end;
      double v = strtod(p, &end);
      if (end == p) return -1;
      dst[n++] = (float)v;
      p = end - 1;
    }
  }
  return n;
}

START_TEST(dynqctl_end_to_end) {
  char exe[512], in[600], *out = NULL;
  snprintf(exe, sizeof(exe), "%s", tu_build("client/dynqctl"));
  snprintf(in, sizeof(in), "x=%s", tu_src("tests/fixtures/mlp_x.npy"));
  char *argv[] = {exe, "--socket", daemon_.sock, "--json", "infer", "mlp", "--precision",
                  "fp32", "--input", in, NULL};
  ck_assert_int_eq(tu_run(argv, &out), 0);
  float y[ROWS * OUT];
  int n = json_output(out, "y", y, ROWS * OUT);
  ck_assert_msg(n == ROWS * OUT, "parsed %d values from: %.300s", n, out);
  ck_assert_msg(tu_rel_max(y, y_ref, ROWS * OUT) <= 1e-5, "dynqctl fp32 vs numpy %g",
                tu_rel_max(y, y_ref, ROWS * OUT));
  free(out);
  argv[7] = "int8";
  ck_assert_int_eq(tu_run(argv, &out), 0);
  ck_assert_int_eq(json_output(out, "y", y, ROWS * OUT), ROWS * OUT);
  double e = tu_rel_l2(y, y_ref, ROWS * OUT);
  ck_assert_msg(e <= 0.02, "dynqctl int8 relL2 %g", e);
  free(out);
  /* --json is also accepted after the command */
  char *argv_late[] = {exe, "--socket", daemon_.sock, "infer", "mlp", "--input", in,
                       "--precision", "fp32", "--json", NULL};
  ck_assert_int_eq(tu_run(argv_late, &out), 0);
  ck_assert_int_eq(json_output(out, "y", y, ROWS * OUT), ROWS * OUT);
  ck_assert_msg(tu_rel_max(y, y_ref, ROWS * OUT) <= 1e-5, "late --json fp32 vs numpy");
  free(out);
  /* human output names the outputs */
  char *argv2[] = {exe, "--socket", daemon_.sock, "infer", "mlp", "--input", in, NULL};
  ck_assert_int_eq(tu_run(argv2, &out), 0);
  ck_assert_ptr_nonnull(strstr(out, "y"));
  ck_assert_ptr_nonnull(strstr(out, "float32"));
  free(out);
  /* a wrong model name is an error naming it, exit 1 */
  char *argv3[] = {exe, "--socket", daemon_.sock, "info", "nosuchmodel", NULL};
  ck_assert_int_eq(tu_run(argv3, &out), 1);
  ck_assert_ptr_nonnull(strstr(out, "nosuchmodel"));
  free(out);
}
END_TEST

int main(void) {
  Suite *s = suite_create("integration");
  TCase *tc = tcase_create("e2e");
  tcase_set_timeout(tc, 300);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, client_accuracy);
  tcase_add_test(tc, concurrent_clients);
  tcase_add_test(tc, dynqctl_end_to_end);
  suite_add_tcase(s, tc);
  return tu_run_suite(s) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
