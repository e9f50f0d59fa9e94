/*
 * dynqd integration suite: a real daemon on a temporary socket, driven over
 * raw sockets with frames built by the proto writer (or raw bytes), so that
 * every malformed-input path is fed and then checked to have harmed no one:
 * after each, a second, well-behaved connection must still get "pong".
 *
 * Most tests share one daemon (started with --max-frame 4096 and a model
 * directory holding mlp.dynq, made by dynq-quantize from the fixture, plus
 * a corrupted .dynq).  Tests about start-up and shutdown start their own.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "proto/proto-tensor.h"
#include "testutil.h"

static char *g_dir;       /* scratch dir of the shared daemon */
static char *g_models;    /* its model directory */
static int g_have_model;  /* mlp.dynq could be made */
static tu_daemon_t g_d;
static int g_shared_exit;  /* exit status of the shared daemon (teardown) */

/* snprintf that fails the test instead of truncating a path. */
static void fmt(char *buf, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t n, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  int r = vsnprintf(buf, n, f, ap);
  va_end(ap);
  ck_assert_msg(r >= 0 && (size_t)r < n, "path too long for a %zu-byte buffer", n);
}

/* tu_daemon_alive() needs the daemon to be our child; Check runs each test
 * in a forked process, where it is our parent's child instead. */
static int daemon_alive(const tu_daemon_t *d) {
  if (d->pid <= 0) return 0;
  int st;
  pid_t r = waitpid(d->pid, &st, WNOHANG);
  if (r == 0) return 1;
  if (r == d->pid) return 0;
  return tu_pid_alive(d->pid);
}

/* A second, well-behaved connection still gets pong. */
static void assert_alive(const tu_daemon_t *d) {
  ck_assert_msg(daemon_alive(d), "dynqd died (log: %s)", d->log);
  tu_rpc_t c;
  tu_rpc_open(&c, d->sock);
  tu_rpc_ping_ok(&c, 4242);
  tu_rpc_close(&c);
}

/* ---- model fixtures ---- */

static float g_x[16 * 64], g_y[16 * 10];

#define NEED_MODEL()                                              \
  TU_SKIP_UNLESS(g_have_model, "models/dynq-quantize is not built, so no " \
                               "mlp.dynq to serve")

/* infer {model, inputs: {name: tensor}[, precision]} */
static void w_infer(dynq__wbuf_t *w, uint32_t msgid, const char *model,
                    const char *input, const char *dtype, int rank,
                    const int64_t *dims, const void *data, size_t n,
                    const char *precision) {
  dynq__w_request_head(w, msgid, "infer");
  dynq__w_map(w, precision ? 3 : 2);
  dynq__w_str(w, "model");
  dynq__w_str(w, model);
  dynq__w_str(w, "inputs");
  dynq__w_map(w, 1);
  dynq__w_str(w, input);
  tu_w_raw_tensor(w, dtype, rank, dims, data, n);
  if (precision) {
    dynq__w_str(w, "precision");
    dynq__w_str(w, precision);
  }
}

static void send_infer_rows(tu_rpc_t *c, uint32_t msgid, int rows, const char *precision) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  int64_t dims[2] = {rows, 64};
  w_infer(&w, msgid, "mlp", "x", "float32", 2, dims, g_x, (size_t)rows * 64 * 4, precision);
  tu_rpc_send_wbuf(c, &w);
}

/* Check an infer result against the fixture's FP32 reference. */
static void expect_infer_ok(tu_rpc_t *c, uint32_t msgid, int rows, double tol) {
  dynq__rpc_msg_t m;
  char msg[512];
  int rc = tu_rpc_response(c, &m, msgid, msg, sizeof(msg));
  ck_assert_msg(rc == 0, "infer %u failed: %s (%s)", msgid, dynq_err_name(rc), msg);
  dynq__obj_t outs = dynq__obj_get(m.result, "outputs");
  ck_assert_int_eq(dynq__obj_kind(outs), DYNQ_OBJ_MAP);
  ck_assert_uint_eq(dynq__obj_len(outs), 2);
  int64_t us = -1;
  ck_assert_int_eq(dynq__obj_int(dynq__obj_get(m.result, "compute_us"), &us), 0);
  ck_assert(us >= 0);
  dynq__tensor_limits_t tl = {DYNQ_MAX_RANK, 1 << 20};
  dynq__tensor_t y;
  char err[256];
  ck_assert_msg(dynq__obj_tensor(dynq__obj_get(outs, "y"), &tl, &y, err, sizeof(err)) == 0,
                "output y: %s", err);
  ck_assert_int_eq(y.dtype, DYNQ_DT_F32);
  ck_assert_int_eq(y.rank, 2);
  ck_assert_int_eq(y.dims[0], rows);
  ck_assert_int_eq(y.dims[1], 10);
  const float *yv = y.data;
  double maxref = 0, maxerr = 0;
  for (int i = 0; i < rows * 10; i++) {
    ck_assert_msg(isfinite(yv[i]), "y[%d] is not finite", i);
    double e = fabs((double)yv[i] - g_y[i]);
    if (e > maxerr) maxerr = e;
    if (fabs(g_y[i]) > maxref) maxref = fabs(g_y[i]);
  }
  ck_assert_msg(maxerr <= tol * maxref + 1e-6,
                "infer %u: max error %g vs reference (max |y| %g, tolerance %g)",
                msgid, maxerr, maxref, tol);
  dynq__tensor_clear(&y);
  dynq__rpc_free(&m);
}

/* ---- shared daemon ---- */

static void shared_setup(void) {
  g_dir = tu_mkdtemp_models(&g_models);
  char p[4096];
  snprintf(p, sizeof(p), "%s/mlp.dynq", g_models);
  g_have_model = tu_quantize("tests/fixtures/mlp.onnx", p, NULL) == 0 &&
                 tu_load_f32("tests/fixtures/mlp_x.f32", g_x, 16 * 64) == 0 &&
                 tu_load_f32("tests/fixtures/mlp_y.f32", g_y, 16 * 10) == 0;
  /* A damaged copy of a real model must be skipped, naming the file. */
  size_t n = 0;
  uint8_t *good = g_have_model ? tu_read_file(p, &n) : NULL;
  if (good == NULL || n < 256) {
    free(good);
    good = calloc(1, 4096);
    n = 4096;
    memcpy(good, "not a dynq model", 16);
  } else {
    for (size_t i = n / 2; i < n / 2 + 64; i++) good[i] ^= 0x5a;
  }
  snprintf(p, sizeof(p), "%s/broken.dynq", g_models);
  ck_assert_int_eq(tu_write_file(p, good, n), 0);
  free(good);
  const char *extra[] = {"--max-frame", "4096", "--workers", "2", NULL};
  ck_assert_msg(tu_daemon_start(&g_d, g_dir, g_models, extra) == 0,
                "dynqd did not start; see %s", g_d.log);
}

static void shared_teardown(void) {
  if (g_d.pid > 0) {
    /* Runs in the parent, the daemon's parent: the status is real.  Under
     * the valgrind setup a memory error makes it 99. */
    g_shared_exit = tu_daemon_stop(&g_d, SIGTERM);
    if (g_shared_exit != 0)
      fprintf(stderr, "FAIL: shared dynqd exited with %d after SIGTERM\n", g_shared_exit);
  }
  if (g_dir) tu_rmtree(g_dir);
  free(g_dir);
  free(g_models);
  g_dir = g_models = NULL;
}

/* ---- tests: fatal frames (answered with msgid 0, then closed) ---- */

START_TEST(test_malformed_msgpack) {
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  const uint8_t bad[] = {0x94, 0x00, 0x01, 0xc1, 0x00};
  tu_rpc_send(&c, bad, sizeof(bad));
  tu_rpc_expect_error(&c, 0, DYNQ_EPROTO, "msgpack");
  tu_rpc_expect_closed(&c);
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_frame_over_cap) {
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 9, "ping");
  static uint8_t big[5000];
  dynq__w_bin(&w, big, sizeof(big));
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 0, DYNQ_ETOOBIG, "4096");
  tu_rpc_expect_closed(&c);
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_frame_over_cap_declared) {
  /* Only the header arrives: the declared size alone must be refused. */
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  const uint8_t hdr[] = {0x94, 0x00, 0x01, 0xa4, 'p', 'i', 'n', 'g',
                         0xc6, 0x00, 0x10, 0x00, 0x00};  /* bin32 of 1 MiB */
  tu_rpc_send(&c, hdr, sizeof(hdr));
  dynq__rpc_msg_t m;
  char msg[256];
  int rc = tu_rpc_response(&c, &m, 0, msg, sizeof(msg));
  ck_assert_msg(rc == DYNQ_ETOOBIG || rc == DYNQ_EPROTO, "got %s", dynq_err_name(rc));
  dynq__rpc_free(&m);
  tu_rpc_expect_closed(&c);
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_deep_nesting) {
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  uint8_t deep[41];
  memset(deep, 0x91, 40);  /* 40 nested one-element arrays */
  deep[40] = 0xc0;
  tu_rpc_send(&c, deep, sizeof(deep));
  tu_rpc_expect_error(&c, 0, DYNQ_EDEPTH, "deeper");
  tu_rpc_expect_closed(&c);
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_huge_declared_array) {
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  const uint8_t huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03};
  tu_rpc_send(&c, huge, sizeof(huge));
  dynq__rpc_msg_t m;
  char msg[256];
  int rc = tu_rpc_response(&c, &m, 0, msg, sizeof(msg));
  ck_assert_msg(rc == DYNQ_ELIMIT || rc == DYNQ_EPROTO || rc == DYNQ_ETOOBIG,
                "huge array answered with %s (%s)", dynq_err_name(rc), msg);
  dynq__rpc_free(&m);
  tu_rpc_expect_closed(&c);
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_requests_before_bad_frame_answered) {
  /* Valid requests ahead of a fatal frame still get their answers. */
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 1, "ping");
  dynq__w_nil(&w);
  uint8_t bad = 0xc1;
  dynq__w_request_head(&w, 2, "ping");
  dynq__w_nil(&w);
  ck_assert_int_eq(w.err, 0);
  tu_rpc_send(&c, w.data, w.len);
  tu_rpc_send(&c, &bad, 1);
  dynq__wbuf_free(&w);
  tu_rpc_expect_pong(&c, 1);
  tu_rpc_expect_pong(&c, 2);
  tu_rpc_expect_error(&c, 0, DYNQ_EPROTO, NULL);
  tu_rpc_expect_closed(&c);
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

/* ---- tests: envelope and method errors (connection stays open) ---- */

START_TEST(test_bad_envelope_keeps_connection) {
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  const uint8_t two[] = {0x92, 0x00, 0x07};  /* [0, 7] */
  tu_rpc_send(&c, two, sizeof(two));
  dynq__rpc_msg_t m;
  char msg[256];
  int rc = tu_rpc_response(&c, &m, 7, msg, sizeof(msg));
  if (rc != DYNQ_EPROTO) {  /* msgid could not be read: answered as 0 */
    ck_abort_msg("bad envelope answered with %s (%s)", dynq_err_name(rc), msg);
  }
  dynq__rpc_free(&m);
  const uint8_t str[] = {0xa3, 'a', 'b', 'c'};  /* not an array at all */
  tu_rpc_send(&c, str, sizeof(str));
  tu_rpc_expect_error(&c, 0, DYNQ_EPROTO, NULL);
  tu_rpc_ping_ok(&c, 8);
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_unknown_method) {
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 31, "model.explode");
  dynq__w_map(&w, 0);
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 31, DYNQ_ENOMETHOD, "model.explode");
  tu_rpc_ping_ok(&c, 32);
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_notification_ignored) {
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  const uint8_t note[] = {0x93, 0x02, 0xa4, 'p', 'i', 'n', 'g', 0x90};  /* [2, "ping", []] */
  tu_rpc_send(&c, note, sizeof(note));
  tu_rpc_call0(&c, 77, "ping");
  tu_rpc_expect_pong(&c, 77);  /* the first thing back is the request's answer */
  tu_rpc_close(&c);
}
END_TEST

START_TEST(test_params_wrong_shape) {
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 41, "infer");
  dynq__w_int(&w, 5);
  dynq__w_request_head(&w, 42, "infer");
  dynq__w_map(&w, 0);
  dynq__w_request_head(&w, 43, "model.info");
  dynq__w_array(&w, 2);
  dynq__w_int(&w, 1);
  dynq__w_int(&w, 2);
  dynq__w_request_head(&w, 44, "model.info");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "model");
  dynq__w_int(&w, 3);
  dynq__w_request_head(&w, 45, "infer");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "mlp");
  dynq__w_str(&w, "inputs");
  dynq__w_array(&w, 0);
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 41, DYNQ_EPARAMS, "params must be a map");
  /* the schema checks required params first: inputs before model/session */
  tu_rpc_expect_error(&c, 42, DYNQ_EPARAMS, "params.inputs");
  tu_rpc_expect_error(&c, 43, DYNQ_EPARAMS, NULL);
  tu_rpc_expect_error(&c, 44, DYNQ_EPARAMS, "params.model");
  /* inputs' shape is a params check: it comes before the model lookup */
  tu_rpc_expect_error(&c, 45, DYNQ_EPARAMS, "inputs");
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_unknown_model) {
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  int64_t dims[2] = {1, 64};
  w_infer(&w, 51, "nosuch", "x", "float32", 2, dims, g_x, 256, NULL);
  dynq__w_request_head(&w, 52, "model.info");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "broken");  /* the corrupted file must not be served */
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 51, DYNQ_ENOMODEL, "nosuch");
  tu_rpc_expect_error(&c, 52, DYNQ_ENOMODEL, "broken");
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_wrong_input_name) {
  NEED_MODEL();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  int64_t dims[2] = {1, 64};
  w_infer(&w, 61, "mlp", "bogus_in", "float32", 2, dims, g_x, 256, NULL);
  /* no inputs at all: the declared input is named as missing */
  dynq__w_request_head(&w, 62, "infer");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "mlp");
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 0);
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 61, DYNQ_ENOINPUT, "bogus_in");
  tu_rpc_expect_error(&c, 62, DYNQ_ENOINPUT, "'x'");
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_wrong_dtype) {
  NEED_MODEL();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  int64_t dims[2] = {1, 64};
  w_infer(&w, 71, "mlp", "x", "int32", 2, dims, g_x, 256, NULL);
  w_infer(&w, 72, "mlp", "x", "complex128", 2, dims, g_x, 256, NULL);
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 71, DYNQ_EDTYPE, NULL);
  tu_rpc_expect_error(&c, 72, DYNQ_EDTYPE, NULL);
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_wrong_shape) {
  NEED_MODEL();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  int64_t d1[2] = {2, 32};
  w_infer(&w, 81, "mlp", "x", "float32", 2, d1, g_x, 256, NULL);
  int64_t d2[1] = {64};
  w_infer(&w, 82, "mlp", "x", "float32", 1, d2, g_x, 256, NULL);
  int64_t d3[2] = {-1, 64};
  w_infer(&w, 83, "mlp", "x", "float32", 2, d3, g_x, 256, NULL);
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 81, DYNQ_ESHAPE, NULL);
  tu_rpc_expect_error(&c, 82, DYNQ_ESHAPE, NULL);
  tu_rpc_expect_error(&c, 83, DYNQ_ESHAPE, NULL);
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_data_length_mismatch) {
  NEED_MODEL();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  int64_t dims[2] = {2, 64};
  w_infer(&w, 91, "mlp", "x", "float32", 2, dims, g_x, 500, NULL);
  w_infer(&w, 92, "mlp", "x", "float32", 2, dims, g_x, 0, NULL);
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 91, DYNQ_EDATA, NULL);
  tu_rpc_expect_error(&c, 92, DYNQ_EDATA, NULL);
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_bad_precision) {
  NEED_MODEL();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  int64_t dims[2] = {1, 64};
  w_infer(&w, 95, "mlp", "x", "float32", 2, dims, g_x, 256, "int4");
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 95, DYNQ_EPARAMS, "int4");
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

/* ---- tests: normal service ---- */

START_TEST(test_infer_matches_reference) {
  NEED_MODEL();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  send_infer_rows(&c, 101, 2, "fp32");
  expect_infer_ok(&c, 101, 2, 1e-4);
  send_infer_rows(&c, 102, 2, NULL);  /* int8 */
  expect_infer_ok(&c, 102, 2, 0.02);
  send_infer_rows(&c, 103, 2, "int8");
  expect_infer_ok(&c, 103, 2, 0.02);
  tu_rpc_close(&c);
}
END_TEST

START_TEST(test_info_methods) {
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 111, "server.info");
  dynq__w_nil(&w);
  dynq__w_request_head(&w, 112, "models.list");
  dynq__w_array(&w, 0);
  tu_rpc_send_wbuf(&c, &w);

  dynq__rpc_msg_t m;
  ck_assert_int_eq(tu_rpc_response(&c, &m, 111, NULL, 0), 0);
  int64_t v;
  ck_assert_int_eq(dynq__obj_int(dynq__obj_get(m.result, "protocol"), &v), 0);
  ck_assert_int_eq(v, DYNQ_PROTOCOL_VERSION);
  ck_assert_int_eq(dynq__obj_int(dynq__obj_get(m.result, "workers"), &v), 0);
  ck_assert_int_eq(v, 2);
  ck_assert_int_eq(dynq__obj_int(dynq__obj_get(m.result, "models"), &v), 0);
  ck_assert_int_eq(v, g_have_model ? 1 : 0);
  char kname[32];
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(m.result, "kernel"), kname, sizeof(kname)), 0);
  dynq__obj_t kl = dynq__obj_get(m.result, "kernels");
  ck_assert_uint_ge(dynq__obj_len(kl), 1);
  ck_assert_int_eq(dynq__obj_kind(dynq__obj_get(m.result, "openblas_core")), DYNQ_OBJ_STR);
  double up = -1;
  ck_assert_int_eq(dynq__obj_double(dynq__obj_get(m.result, "uptime_s"), &up), 0);
  ck_assert(up >= 0);
  dynq__rpc_free(&m);

  ck_assert_int_eq(tu_rpc_response(&c, &m, 112, NULL, 0), 0);
  ck_assert_int_eq(dynq__obj_kind(m.result), DYNQ_OBJ_ARRAY);
  ck_assert_uint_eq(dynq__obj_len(m.result), g_have_model ? 1 : 0);
  if (g_have_model) {
    char name[64];
    dynq__obj_t e = dynq__obj_at(m.result, 0);
    ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(e, "name"), name, sizeof(name)), 0);
    ck_assert_str_eq(name, "mlp");
  }
  dynq__rpc_free(&m);

  if (g_have_model) {
    dynq__wbuf_init(&w);
    dynq__w_request_head(&w, 113, "model.info");
    dynq__w_array(&w, 1);  /* [map] form for generic clients */
    dynq__w_map(&w, 1);
    dynq__w_str(&w, "model");
    dynq__w_str(&w, "mlp");
    tu_rpc_send_wbuf(&c, &w);
    ck_assert_int_eq(tu_rpc_response(&c, &m, 113, NULL, 0), 0);
    dynq__obj_t in = dynq__obj_get(m.result, "inputs");
    ck_assert_uint_eq(dynq__obj_len(in), 1);
    char name[64];
    ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(dynq__obj_at(in, 0), "name"), name,
                                      sizeof(name)), 0);
    ck_assert_str_eq(name, "x");
    ck_assert_uint_eq(dynq__obj_len(dynq__obj_get(m.result, "outputs")), 2);
    ck_assert_int_eq(dynq__obj_int(dynq__obj_get(m.result, "quantized_layers"), &v), 0);
    ck_assert_int_eq(v, 4);
    dynq__rpc_free(&m);
  }
  tu_rpc_close(&c);
}
END_TEST

START_TEST(test_pipelined_by_msgid) {
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  enum { N = 100 };
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  int64_t dims[2] = {2, 64};
  for (uint32_t i = 0; i < N; i++) {
    uint32_t id = 1000 + i;
    if (i % 2 == 0 || !g_have_model) {
      dynq__w_request_head(&w, id, "ping");
      dynq__w_nil(&w);
    } else {
      w_infer(&w, id, "mlp", "x", "float32", 2, dims, g_x, 512, i % 4 == 1 ? "fp32" : NULL);
    }
  }
  tu_rpc_send_wbuf(&c, &w);  /* one write */
  int seen[N] = {0};
  for (int k = 0; k < N; k++) {
    dynq__rpc_msg_t m;
    ck_assert_msg(tu_rpc_recv(&c, &m) == 0, "connection closed after %d answers", k);
    ck_assert_int_eq(m.type, DYNQ_RPC_RESPONSE);
    ck_assert_msg(m.msgid >= 1000 && m.msgid < 1000 + N, "unexpected msgid %u", m.msgid);
    uint32_t i = m.msgid - 1000;
    ck_assert_msg(seen[i] == 0, "msgid %u answered twice", m.msgid);
    seen[i] = 1;
    char msg[256];
    int rc = dynq__rpc_error(m.error, msg, sizeof(msg));
    ck_assert_msg(rc == 0, "msgid %u failed: %s", m.msgid, msg);
    if (i % 2 == 0 || !g_have_model)
      ck_assert_int_eq(dynq__obj_kind(m.result), DYNQ_OBJ_STR);
    else
      ck_assert_int_eq(dynq__obj_kind(dynq__obj_get(m.result, "outputs")), DYNQ_OBJ_MAP);
    dynq__rpc_free(&m);
  }
  for (int i = 0; i < N; i++) ck_assert_msg(seen[i], "msgid %d never answered", 1000 + i);
  tu_rpc_close(&c);
  assert_alive(&g_d);
}
END_TEST

START_TEST(test_disconnect_mid_request) {
  NEED_MODEL();
  for (int round = 0; round < 20; round++) {
    tu_rpc_t c;
    tu_rpc_open(&c, g_d.sock);
    for (uint32_t i = 0; i < 8; i++) send_infer_rows(&c, 200 + i, 4, NULL);
    if (round % 2) shutdown(c.fd, SHUT_WR);
    tu_rpc_close(&c);
  }
  assert_alive(&g_d);
  /* and inference still works for others */
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  send_infer_rows(&c, 300, 2, "fp32");
  expect_infer_ok(&c, 300, 2, 1e-4);
  tu_rpc_close(&c);
}
END_TEST

START_TEST(test_half_close_still_answered) {
  /* A client may send its requests, shut down writing, then read. */
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  tu_rpc_call0(&c, 5, "ping");
  if (g_have_model) send_infer_rows(&c, 6, 2, "fp32");
  ck_assert_int_eq(shutdown(c.fd, SHUT_WR), 0);
  tu_rpc_expect_pong(&c, 5);
  if (g_have_model) expect_infer_ok(&c, 6, 2, 1e-4);
  tu_rpc_expect_closed(&c);
  tu_rpc_close(&c);
}
END_TEST

START_TEST(test_corrupt_model_logged) {
  size_t n = 0;
  char *log = tu_read_file(g_d.log, &n);
  ck_assert_ptr_nonnull(log);
  const char *line = strstr(log, "broken.dynq");
  ck_assert_msg(line != NULL, "no log line names broken.dynq:\n%s", log);
  const char *bol = line;
  while (bol > log && bol[-1] != '\n') bol--;
  ck_assert_msg(strstr(bol, "skipping") != NULL && strstr(bol, "skipping") < strchr(line, '\n'),
                "the log line about broken.dynq does not say it was skipped:\n%s", log);
  if (g_have_model)
    ck_assert_msg(strstr(log, "loaded model 'mlp'") != NULL, "mlp not loaded:\n%s", log);
  free(log);
  assert_alive(&g_d);
}
END_TEST

/* ---- tests with their own daemon ---- */

static char *own_dir(void) {
  char *d = tu_mkdtemp();
  ck_assert_ptr_nonnull(d);
  return d;
}

static char *models_with_mlp(const char *dir) {
  char p[4096];
  snprintf(p, sizeof(p), "%s/models", dir);
  ck_assert_int_eq(mkdir(p, 0755), 0);
  if (g_have_model) {
    char src[4096], dst[4096];
    snprintf(src, sizeof(src), "%s/mlp.dynq", g_models);
    fmt(dst, sizeof(dst), "%s/mlp.dynq", p);
    size_t n;
    void *b = tu_read_file(src, &n);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(tu_write_file(dst, b, n), 0);
    free(b);
  }
  return strdup(p);
}

START_TEST(test_sigterm_drains) {
  NEED_MODEL();
  char *dir = own_dir();
  char *models = models_with_mlp(dir);
  tu_daemon_t d;
  const char *extra[] = {"--workers", "1", NULL};
  ck_assert_int_eq(tu_daemon_start(&d, dir, models, extra), 0);
  tu_rpc_t c;
  tu_rpc_open(&c, d.sock);
  /* Many big requests, then a ping: the pong proves every infer before it
   * was read and queued; the single worker is still busy with them. */
  enum { N = 24 };
  static float big[1024 * 64];
  for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) big[i] = g_x[i % (16 * 64)];
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  int64_t dims[2] = {1024, 64};
  for (uint32_t i = 0; i < N; i++)
    w_infer(&w, 500 + i, "mlp", "x", "float32", 2, dims, big, sizeof(big), NULL);
  dynq__w_request_head(&w, 999, "ping");
  dynq__w_nil(&w);
  tu_rpc_send_wbuf(&c, &w);
  int got = 0, pong = 0;
  dynq__rpc_msg_t m;
  while (!pong) {
    ck_assert_int_eq(tu_rpc_recv(&c, &m), 0);
    char emsg[256];
    int erc = dynq__rpc_error(m.error, emsg, sizeof(emsg));
    ck_assert_msg(erc == 0, "request %u failed: %s", m.msgid, emsg);
    if (m.msgid == 999) pong = 1;
    else got++;
    dynq__rpc_free(&m);
  }
  ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
  while (got < N) {
    ck_assert_msg(tu_rpc_recv(&c, &m) == 0, "connection closed with %d of %d answers", got, N);
    char msg[256];
    int rc = dynq__rpc_error(m.error, msg, sizeof(msg));
    ck_assert_msg(rc == 0, "request %u failed during drain: %s", m.msgid, msg);
    ck_assert_uint_ge(m.msgid, 500);
    ck_assert_uint_lt(m.msgid, 500 + N);
    dynq__rpc_free(&m);
    got++;
  }
  tu_rpc_expect_closed(&c);
  tu_rpc_close(&c);
  int st = tu_daemon_stop(&d, 0);  /* signal 0: just wait */
  ck_assert_msg(st == 0, "dynqd exited %d after SIGTERM (log %s)", st, d.log);
  struct stat sb;
  ck_assert_msg(stat(d.sock, &sb) != 0, "socket file left behind");
  tu_rmtree(dir);
  free(dir);
  free(models);
}
END_TEST

START_TEST(test_sigterm_idle_exits_zero) {
  char *dir = own_dir();
  tu_daemon_t d;
  ck_assert_int_eq(tu_daemon_start(&d, dir, dir, NULL), 0);
  assert_alive(&d);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGINT), 0);
  struct stat sb;
  ck_assert_msg(stat(d.sock, &sb) != 0, "socket file left behind");
  tu_rmtree(dir);
  free(dir);
}
END_TEST

static int run_dynqd(char *const *args, char **out) {
  char exe[4096];
  snprintf(exe, sizeof(exe), "%s", tu_build("daemon/dynqd"));
  char *argv[32];
  int n = 0;
  argv[n++] = exe;
  for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
  argv[n] = NULL;
  return tu_run(argv, out);
}

START_TEST(test_bogus_kernel) {
  char *dir = own_dir();
  char sock[4096];
  snprintf(sock, sizeof(sock), "%s/s.sock", dir);
  setenv("DYNQ_KERNEL", "bogus", 1);
  char *out = NULL;
  char *args[] = {"--socket", sock, "--models", dir, NULL};
  int st = run_dynqd(args, &out);
  unsetenv("DYNQ_KERNEL");
  ck_assert_msg(st == 1, "DYNQ_KERNEL=bogus: exit %d, output:\n%s", st, out);
  ck_assert_msg(strstr(out, "bogus") != NULL && strstr(out, "kernel") != NULL,
                "message does not name the bad kernel:\n%s", out);
  free(out);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

START_TEST(test_bad_args) {
  struct { const char *a[4]; const char *needle; } cases[] = {
    {{"--workers", "0", NULL}, "--workers"},
    {{"--workers", "65", NULL}, "--workers"},
    {{"--queue", "ten", NULL}, "--queue"},
    {{"--max-frame", "12Q", NULL}, "--max-frame"},
    {{"--log-level", "loud", NULL}, "loud"},
    {{"--frobnicate", NULL}, "--frobnicate"},
    {{"stray", NULL}, "stray"},
    {{"--socket", NULL}, "--socket"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *out = NULL;
    int st = run_dynqd((char *const *)cases[i].a, &out);
    ck_assert_msg(st == 2, "%s: exit %d, output:\n%s", cases[i].a[0], st, out);
    ck_assert_msg(strstr(out, cases[i].needle) != NULL, "message does not name %s:\n%s",
                  cases[i].needle, out);
    ck_assert_msg(strstr(out, "Usage:") != NULL, "no usage after a bad argument:\n%s", out);
    free(out);
  }
  char *out = NULL;
  char *help[] = {"--help", NULL};
  ck_assert_int_eq(run_dynqd(help, &out), 0);
  const char *all[] = {"--socket", "--models", "--workers", "--queue", "--max-frame",
                       "--log-level", "--help", "--version", "default"};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
    ck_assert_msg(strstr(out, all[i]) != NULL, "--help does not mention %s", all[i]);
  free(out);
  char *ver[] = {"--version", NULL};
  ck_assert_int_eq(run_dynqd(ver, &out), 0);
  ck_assert_ptr_nonnull(strstr(out, "dynqd "));
  free(out);
}
END_TEST

START_TEST(test_socket_path_too_long) {
  char *dir = own_dir();
  char sock[512];
  int n = snprintf(sock, sizeof(sock), "%s/", dir);
  memset(sock + n, 'a', 150);
  sock[n + 150] = '\0';
  char *out = NULL;
  char *args[] = {"--socket", sock, "--models", dir, NULL};
  int st = run_dynqd(args, &out);
  ck_assert_msg(st == 1, "long socket path: exit %d\n%s", st, out);
  ck_assert_msg(strstr(out, "108") != NULL, "message does not give the limit:\n%s", out);
  free(out);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

START_TEST(test_second_instance_refused_stale_removed) {
  char *dir = own_dir();
  tu_daemon_t d;
  ck_assert_int_eq(tu_daemon_start(&d, dir, dir, NULL), 0);
  /* Another dynqd on the same socket must refuse and leave it alone. */
  char *out = NULL;
  char *args[] = {"--socket", d.sock, "--models", dir, NULL};
  int st = run_dynqd(args, &out);
  ck_assert_msg(st == 1, "second dynqd: exit %d\n%s", st, out);
  ck_assert_msg(strstr(out, "already answering") != NULL, "%s", out);
  free(out);
  assert_alive(&d);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);

  /* A stale socket (bound, nobody listening) is replaced. */
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  fmt(sa.sun_path, sizeof(sa.sun_path), "%s", d.sock);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  close(fd);
  ck_assert_int_eq(tu_daemon_start(&d, dir, dir, NULL), 0);
  assert_alive(&d);
  struct stat sb;
  ck_assert_int_eq(stat(d.sock, &sb), 0);
  ck_assert_int_eq(sb.st_mode & 0777, 0660);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);

  /* A regular file in the way is never deleted. */
  ck_assert_int_eq(tu_write_file(d.sock, "keep", 4), 0);
  args[1] = d.sock;
  st = run_dynqd(args, &out);
  ck_assert_msg(st == 1, "file in the way: exit %d\n%s", st, out);
  ck_assert_ptr_nonnull(strstr(out, "not a socket"));
  free(out);
  ck_assert_int_eq(stat(d.sock, &sb), 0);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* Receive one sd_notify datagram; returns its text (static). */
static const char *notify_recv(int fd) {
  static char buf[1024];
  struct pollfd pfd = {fd, POLLIN, 0};
  ck_assert_msg(poll(&pfd, 1, TU_RPC_IO_TIMEOUT_MS) == 1, "no sd_notify datagram");
  ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
  ck_assert(n > 0);
  buf[n] = '\0';
  return buf;
}

static void notify_case(int abstract) {
  char *dir = own_dir();
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ck_assert_int_ge(fd, 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  char env[200];
  socklen_t len;
  if (abstract) {
    int n = snprintf(env, sizeof(env), "@dynq-test-notify-%d", (int)getpid());
    memcpy(sa.sun_path, env, (size_t)n);
    sa.sun_path[0] = '\0';
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n);
  } else {
    snprintf(env, sizeof(env), "%s/notify", dir);
    fmt(sa.sun_path, sizeof(sa.sun_path), "%s", env);
    len = sizeof(sa);
  }
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, len), 0);
  setenv("NOTIFY_SOCKET", env, 1);
  tu_daemon_t d;
  int rc = tu_daemon_start(&d, dir, dir, NULL);
  unsetenv("NOTIFY_SOCKET");
  ck_assert_int_eq(rc, 0);
  const char *msg = notify_recv(fd);
  ck_assert_msg(strstr(msg, "READY=1") != NULL, "first datagram: %s", msg);
  ck_assert_msg(strstr(msg, "STATUS=") != NULL, "no STATUS: %s", msg);
  ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
  msg = notify_recv(fd);
  ck_assert_msg(strstr(msg, "STOPPING=1") != NULL, "on SIGTERM: %s", msg);
  ck_assert_int_eq(tu_daemon_stop(&d, 0), 0);
  close(fd);
  tu_rmtree(dir);
  free(dir);
}

START_TEST(test_sd_notify_path) { notify_case(0); }
END_TEST

START_TEST(test_sd_notify_abstract) { notify_case(1); }
END_TEST

START_TEST(test_socket_activation) {
  char *dir = own_dir();
  char path[4096];
  snprintf(path, sizeof(path), "%s/activated.sock", dir);
  int lfd = tu_listen_unix(path, 16);
  char other[4096], logp[4096];
  snprintf(other, sizeof(other), "%s/ignored.sock", dir);
  snprintf(logp, sizeof(logp), "%s/log", dir);
  pid_t pid = tu_spawn_activated(lfd, logp, other, dir);
  tu_daemon_t d;
  memset(&d, 0, sizeof(d));
  d.pid = pid;
  fmt(d.sock, sizeof(d.sock), "%s", path);
  fmt(d.log, sizeof(d.log), "%s", logp);
  assert_alive(&d);  /* the backlog holds us until the loop runs */
  struct stat sb;
  ck_assert_msg(stat(other, &sb) != 0, "--socket was bound despite activation");
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  ck_assert_msg(stat(path, &sb) == 0, "an inherited socket file was unlinked");
  tu_rmtree(dir);
  free(dir);
}
END_TEST

START_TEST(test_missing_model_dir_still_serves) {
  char *dir = own_dir();
  char nodir[4096];
  snprintf(nodir, sizeof(nodir), "%s/does-not-exist", dir);
  tu_daemon_t d;
  ck_assert_int_eq(tu_daemon_start(&d, dir, nodir, NULL), 0);
  assert_alive(&d);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  char *log = tu_read_file(d.log, NULL);
  ck_assert_msg(strstr(log, "does-not-exist") != NULL, "%s", log);
  free(log);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

START_TEST(test_overload_and_inflight_cap) {
  /* --queue 1 --workers 1: a burst gets EOVERLOAD for some requests, and
   * every request is answered exactly once either way. */
  NEED_MODEL();
  char *dir = own_dir();
  char *models = models_with_mlp(dir);
  tu_daemon_t d;
  const char *extra[] = {"--workers", "1", "--queue", "1", "--max-inflight", "4", NULL};
  ck_assert_int_eq(tu_daemon_start(&d, dir, models, extra), 0);
  enum { NC = 4, NR = 16 };
  tu_rpc_t c[NC];
  static float big[512 * 64];
  for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) big[i] = g_x[i % (16 * 64)];
  int64_t dims[2] = {512, 64};
  for (int k = 0; k < NC; k++) {
    tu_rpc_open(&c[k], d.sock);
    dynq__wbuf_t w;
    dynq__wbuf_init(&w);
    for (uint32_t i = 0; i < NR; i++)
      w_infer(&w, i, "mlp", "x", "float32", 2, dims, big, sizeof(big), NULL);
    tu_rpc_send_wbuf(&c[k], &w);
  }
  int ok = 0, over = 0;
  for (int k = 0; k < NC; k++) {
    int seen[NR] = {0};
    for (int i = 0; i < NR; i++) {
      dynq__rpc_msg_t m;
      ck_assert_int_eq(tu_rpc_recv(&c[k], &m), 0);
      ck_assert_uint_lt(m.msgid, NR);
      ck_assert_int_eq(seen[m.msgid], 0);
      seen[m.msgid] = 1;
      char msg[256];
      int rc = dynq__rpc_error(m.error, msg, sizeof(msg));
      if (rc == 0) ok++;
      else if (rc == DYNQ_EOVERLOAD) over++;
      else ck_abort_msg("unexpected %s: %s", dynq_err_name(rc), msg);
      dynq__rpc_free(&m);
    }
    tu_rpc_close(&c[k]);
  }
  ck_assert_int_eq(ok + over, NC * NR);
  ck_assert_int_ge(ok, 1);
  assert_alive(&d);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  tu_rmtree(dir);
  free(dir);
  free(models);
}
END_TEST

START_TEST(test_output_cap_closes_non_reader) {
  /* A client that pipelines pings and never reads is cut off once its
   * unsent responses pass --max-output; everyone else is unaffected. */
  char *dir = own_dir();
  tu_daemon_t d;
  const char *extra[] = {"--max-output", "4096", NULL};
  ck_assert_int_eq(tu_daemon_start(&d, dir, dir, extra), 0);
  tu_rpc_t c;
  tu_rpc_open(&c, d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  for (uint32_t i = 0; i < 8192; i++) {
    dynq__w_request_head(&w, i, "ping");
    dynq__w_nil(&w);
  }
  ck_assert_int_eq(w.err, 0);
  int closed = 0;
  for (int round = 0; round < 256 && !closed; round++) {  /* up to ~16 MiB */
    size_t off = 0;
    while (off < w.len) {
      ssize_t n = send(c.fd, w.data + off, w.len - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ck_assert_msg(errno == EPIPE || errno == ECONNRESET, "send: %s", strerror(errno));
        closed = 1;
        break;
      }
      off += (size_t)n;
    }
  }
  dynq__wbuf_free(&w);
  ck_assert_msg(closed, "dynqd kept a connection that never reads");
  tu_rpc_close(&c);
  assert_alive(&d);
  char *log = tu_read_file(d.log, NULL);
  ck_assert_msg(strstr(log, "output limit") != NULL, "no log line about the cap:\n%s", log);
  free(log);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* Start dynqd with extra environment (NULL-terminated "NAME=VALUE" list)
 * and wait until `sock` accepts, like tu_daemon_start does. */
static void spawn_env(tu_daemon_t *d, const char *sock, const char *log,
                      const char *const *env, const char *const *args) {
  memset(d, 0, sizeof(*d));
  fmt(d->sock, sizeof(d->sock), "%s", sock);
  fmt(d->log, sizeof(d->log), "%s", log);
  char exe[4096];
  fmt(exe, sizeof(exe), "%s", tu_build("daemon/dynqd"));
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int lg = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (lg >= 0) dup2(lg, 2);
    unsetenv("RUNTIME_DIRECTORY");
    unsetenv("XDG_RUNTIME_DIR");
    unsetenv("JOURNAL_STREAM");
    for (int i = 0; env[i]; i++) putenv((char *)env[i]);
    const char *argv[16];
    int n = 0;
    argv[n++] = exe;
    for (int i = 0; args[i] && n < 15; i++) argv[n++] = args[i];
    argv[n] = NULL;
    execv(exe, (char *const *)argv);
    _exit(127);
  }
  d->pid = pid;
  for (int i = 0; i < 2000; i++) {
    int fd = tu_connect(sock);
    if (fd >= 0) {
      close(fd);
      return;
    }
    int st;
    ck_assert_msg(waitpid(pid, &st, WNOHANG) == 0, "dynqd exited at start; see %s", log);
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  kill(pid, SIGKILL);
  ck_abort_msg("dynqd never accepted on %s", sock);
}

START_TEST(test_default_socket_paths) {
  char *dir = own_dir();
  char env1[4200], sock[4200], log[4200], sub[4200];
  /* $XDG_RUNTIME_DIR/dynq/dynqd.sock, the directory made 0750 */
  fmt(env1, sizeof(env1), "XDG_RUNTIME_DIR=%s", dir);
  fmt(sub, sizeof(sub), "%s/dynq", dir);
  fmt(sock, sizeof(sock), "%s/dynqd.sock", sub);
  fmt(log, sizeof(log), "%s/log1", dir);
  /* journald's stream is the daemon's stderr (spawn_env truncates the
   * file, keeping its inode) */
  ck_assert_int_eq(tu_write_file(log, "", 0), 0);
  struct stat ls;
  ck_assert_int_eq(stat(log, &ls), 0);
  char js[64];
  fmt(js, sizeof(js), "JOURNAL_STREAM=%llu:%llu", (unsigned long long)ls.st_dev,
      (unsigned long long)ls.st_ino);
  const char *env[] = {env1, js, NULL};
  const char *args[] = {"--models", dir, NULL};
  tu_daemon_t d;
  spawn_env(&d, sock, log, env, args);
  assert_alive(&d);
  struct stat sb;
  ck_assert_int_eq(stat(sub, &sb), 0);
  ck_assert_int_eq(sb.st_mode & 0777, 0750);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  char *text = tu_read_file(log, NULL);
  ck_assert_msg(strstr(text, sock) != NULL, "chosen path not printed:\n%s", text);
  /* under journald every line starts with a <N> priority */
  ck_assert_msg(text[0] == '<' && text[2] == '>', "no <N> prefix:\n%s", text);
  ck_assert_ptr_null(strstr(text, "dynqd: notice:"));
  free(text);

  /* $RUNTIME_DIRECTORY (systemd's, maybe a ':' list) wins over XDG */
  char env2[4200];
  fmt(env2, sizeof(env2), "RUNTIME_DIRECTORY=%s:/nonexistent", dir);
  fmt(sock, sizeof(sock), "%s/dynqd.sock", dir);
  fmt(log, sizeof(log), "%s/log2", dir);
  const char *envb[] = {env1, env2, NULL};
  spawn_env(&d, sock, log, envb, args);
  assert_alive(&d);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  text = tu_read_file(log, NULL);
  ck_assert_msg(strstr(text, "dynqd: notice: listening on") != NULL, "%s", text);
  free(text);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

START_TEST(test_fp32_without_reference) {
  NEED_MODEL();
  char *dir = own_dir();
  char models[4200], out[4200], exe[4096], onnx[4096];
  fmt(models, sizeof(models), "%s/models", dir);
  ck_assert_int_eq(mkdir(models, 0755), 0);
  fmt(out, sizeof(out), "%s/lean.dynq", models);
  fmt(exe, sizeof(exe), "%s", tu_build("models/dynq-quantize"));
  fmt(onnx, sizeof(onnx), "%s", tu_src("tests/fixtures/mlp.onnx"));
  char *qargv[] = {exe, "--no-reference", onnx, out, NULL};
  char *qlog = NULL;
  int qrc = tu_run(qargv, &qlog);
  ck_assert_msg(qrc == 0, "dynq-quantize --no-reference: %d\n%s", qrc, qlog);
  free(qlog);
  tu_daemon_t d;
  ck_assert_int_eq(tu_daemon_start(&d, dir, models, NULL), 0);
  tu_rpc_t c;
  tu_rpc_open(&c, d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  int64_t dims[2] = {2, 64};
  w_infer(&w, 1, "lean", "x", "float32", 2, dims, g_x, 512, "fp32");
  w_infer(&w, 2, "lean", "x", "float32", 2, dims, g_x, 512, "int8");
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 1, DYNQ_ENOREF, NULL);
  expect_infer_ok(&c, 2, 2, 0.02);
  tu_rpc_close(&c);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

START_TEST(test_connection_limit) {
  char *dir = own_dir();
  tu_daemon_t d;
  const char *extra[] = {"--max-conns", "2", NULL};
  ck_assert_int_eq(tu_daemon_start(&d, dir, dir, extra), 0);
  tu_rpc_t a, b, x;
  tu_rpc_open(&a, d.sock);
  tu_rpc_ping_ok(&a, 1);
  tu_rpc_open(&b, d.sock);
  tu_rpc_ping_ok(&b, 2);
  tu_rpc_open(&x, d.sock);  /* the backlog accepts it; dynqd closes it */
  tu_rpc_expect_closed(&x);
  tu_rpc_close(&x);
  tu_rpc_call0(&a, 3, "ping");  /* the two others are untouched */
  tu_rpc_expect_pong(&a, 3);
  tu_rpc_close(&a);
  tu_rpc_ping_ok(&b, 4);
  tu_rpc_close(&b);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  char *log = tu_read_file(d.log, NULL);
  ck_assert_msg(strstr(log, "limit 2") != NULL, "no log line about the limit:\n%s", log);
  free(log);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

START_TEST(test_result_over_output_limit) {
  NEED_MODEL();
  char *dir = own_dir();
  char *models = models_with_mlp(dir);
  tu_daemon_t d;
  const char *extra[] = {"--max-output", "4096", NULL};
  ck_assert_int_eq(tu_daemon_start(&d, dir, models, extra), 0);
  static float x64[64 * 64];
  for (size_t i = 0; i < 64 * 64; i++) x64[i] = g_x[i % (16 * 64)];
  tu_rpc_t c;
  tu_rpc_open(&c, d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  int64_t dims[2] = {64, 64};  /* two [64, 10] outputs: over 4096 bytes */
  w_infer(&w, 1, "mlp", "x", "float32", 2, dims, x64, sizeof(x64), NULL);
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 1, DYNQ_ELIMIT, "--max-output");
  send_infer_rows(&c, 2, 2, NULL);  /* small results still fit */
  expect_infer_ok(&c, 2, 2, 0.02);
  tu_rpc_close(&c);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  tu_rmtree(dir);
  free(dir);
  free(models);
}
END_TEST

static Suite *daemon_suite(void) {
  Suite *s = suite_create("daemon");
  TCase *tc = tcase_create("shared");
  tcase_add_unchecked_fixture(tc, shared_setup, shared_teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_malformed_msgpack);
  tcase_add_test(tc, test_frame_over_cap);
  tcase_add_test(tc, test_frame_over_cap_declared);
  tcase_add_test(tc, test_deep_nesting);
  tcase_add_test(tc, test_huge_declared_array);
  tcase_add_test(tc, test_requests_before_bad_frame_answered);
  tcase_add_test(tc, test_bad_envelope_keeps_connection);
  tcase_add_test(tc, test_unknown_method);
  tcase_add_test(tc, test_notification_ignored);
  tcase_add_test(tc, test_params_wrong_shape);
  tcase_add_test(tc, test_unknown_model);
  tcase_add_test(tc, test_wrong_input_name);
  tcase_add_test(tc, test_wrong_dtype);
  tcase_add_test(tc, test_wrong_shape);
  tcase_add_test(tc, test_data_length_mismatch);
  tcase_add_test(tc, test_bad_precision);
  tcase_add_test(tc, test_infer_matches_reference);
  tcase_add_test(tc, test_info_methods);
  tcase_add_test(tc, test_pipelined_by_msgid);
  tcase_add_test(tc, test_disconnect_mid_request);
  tcase_add_test(tc, test_half_close_still_answered);
  tcase_add_test(tc, test_corrupt_model_logged);
  /* These start their own daemons but reuse the shared mlp.dynq. */
  tcase_add_test(tc, test_sigterm_drains);
  tcase_add_test(tc, test_sigterm_idle_exits_zero);
  tcase_add_test(tc, test_bogus_kernel);
  tcase_add_test(tc, test_bad_args);
  tcase_add_test(tc, test_socket_path_too_long);
  tcase_add_test(tc, test_second_instance_refused_stale_removed);
  tcase_add_test(tc, test_sd_notify_path);
  tcase_add_test(tc, test_sd_notify_abstract);
  tcase_add_test(tc, test_socket_activation);
  tcase_add_test(tc, test_missing_model_dir_still_serves);
  tcase_add_test(tc, test_overload_and_inflight_cap);
  tcase_add_test(tc, test_output_cap_closes_non_reader);
  tcase_add_test(tc, test_default_socket_paths);
  tcase_add_test(tc, test_fp32_without_reference);
  tcase_add_test(tc, test_connection_limit);
  tcase_add_test(tc, test_result_over_output_limit);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  int failed = tu_run_suite(daemon_suite());
  /* The shared daemon's exit status is known only after its teardown. */
  failed += g_shared_exit != 0;
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
