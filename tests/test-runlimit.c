/*
 * A request must not keep a thread computing for ever.
 *
 * The fixtures (tests/fixtures/make_runlimit.py) are ordinary layers whose
 * run time grows faster than what a request sends and gets back, so the
 * byte cap (test-amplify) does not bound it: Einsum's plain sum over two
 * vectors (N x M steps), NonMaxSuppression with nothing suppressed (N^2 /
 * 2), fused attention over a long sequence (S^2 x 64), an LSTM over a long
 * sequence that returns only its last state, Det (M^3).  A run given a stop
 * (dynq__run_opts_t.stop) ends with EDEADLINE, ELIMIT or ECANCELED, inside
 * the slow node through its own poll (each fixture's slow node is second,
 * where the executor does not check); without one the same requests are
 * answered.  Through dynqd: a request's timeout_ms ends its run,
 * max_run_ms caps any run, a closed connection frees the worker, a session
 * step stopped leaves its state as it was, and everyone else is served
 * meanwhile; a request predicted small whose cost follows its values
 * (runlimit_square, runlimit_range) is handed from the loop to a worker
 * instead of holding every connection.  Unstopped, each long request
 * computes for minutes (the test times out): no test here asserts on
 * speed.
 */
#include <check.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "model.h"
#include "proto/proto.h"
#include "tensor.h"
#include "testutil.h"

/* tests/fixtures/runlimit_NAME.onnx converted into dir/NAME.dynq (the
 * session fixture with its state pair). */
static void convert_to(const char *dir, const char *name) {
  char onnx[256], out[4096];
  snprintf(onnx, sizeof(onnx), "tests/fixtures/runlimit_%s.onnx", name);
  snprintf(out, sizeof(out), "%s/%s.dynq", dir, name);
  int rc = strcmp(name, "sess") == 0 ? tu_quantize(onnx, out, "--state", "h=hN", NULL)
                                     : tu_quantize(onnx, out, NULL);
  ck_assert_msg(rc == 0, "dynq-quantize %s", name);
}

static dynq__model_t *open_model(const char *name) {
  char path[4096], err[512] = "";
  convert_to(tu_tmp, name);
  snprintf(path, sizeof(path), "%s/%s.dynq", tu_tmp, name);
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(path, &m, err, sizeof(err)) == 0, "%s: %s", name, err);
  return m;
}

/* A float32 tensor of the given shape, filled with v0, v0 + step, ... */
static dynq__tensor_t ramp(int rank, const int64_t *dims, float v0, float step) {
  dynq__tensor_t t;
  ck_assert_int_eq(dynq__tensor_alloc(&t, DYNQ_DT_F32, rank, dims), 0);
  float *p = t.data;
  int64_t n = dynq__tensor_numel(&t);
  for (int64_t i = 0; i < n; i++) p[i] = v0 + step * (float)(i % 1000);
  return t;
}

static int run(const dynq__model_t *m, const dynq__run_stop_t *stop, dynq__tensor_t *in,
               dynq__tensor_t *out, char *err, size_t errlen) {
  dynq__run_opts_t o = {.precision = DYNQ_PRECISION_INT8, .threads = 1, .stop = stop};
  err[0] = 0;
  return dynq__model_run(m, &o, in, out, err, errlen);
}

/* The stop a caller gives a run `ms` milliseconds from now (deadline or
 * cap). */
static dynq__run_stop_t stop_in(int64_t ms, int as_limit) {
  dynq__run_stop_t s = {0};
  s.start_ns = dynq__run_clock_ns();
  uint64_t at = s.start_ns + (uint64_t)ms * 1000000u;
  if (as_limit) {
    s.limit_ns = at;
    s.limit_ms = ms;
  } else {
    s.deadline_ns = at;
  }
  return s;
}

static void clear_all(dynq__tensor_t *t, int n) {
  for (int i = 0; i < n; i++) dynq__tensor_clear(&t[i]);
}

/* Small inputs: answered, with or without a (distant) stop, and the same
 * value; a flag already set, a deadline or a cap already passed stop the
 * run before its first node with the matching code. */
START_TEST(test_small_runs_and_stops_at_once) {
  dynq__model_t *m = open_model("sum");
  int64_t da[2] = {1, 300}, db[2] = {1, 200};
  dynq__tensor_t in[2] = {ramp(2, da, 0.5f, 0.001f), ramp(2, db, -0.25f, 0.002f)}, out[1];
  double sa = 0, sb = 0;
  for (int i = 0; i < 300; i++) sa += ((float *)in[0].data)[i];
  for (int i = 0; i < 200; i++) sb += ((float *)in[1].data)[i];
  char err[512];

  memset(out, 0, sizeof(out));
  ck_assert_msg(run(m, NULL, in, out, err, sizeof(err)) == 0, "%s", err);
  float plain = ((float *)out[0].data)[0];
  ck_assert_msg(fabs(plain - sa * sb) <= 1e-5 * fabs(sa * sb), "sum %g, expected %g", plain, sa * sb);
  clear_all(out, 1);

  atomic_int flag = 0;
  dynq__run_stop_t far = stop_in(600000, 0);
  far.limit_ns = far.deadline_ns;
  far.limit_ms = 600000;
  far.cancel = &flag;
  memset(out, 0, sizeof(out));
  ck_assert_msg(run(m, &far, in, out, err, sizeof(err)) == 0, "%s", err);
  ck_assert(((float *)out[0].data)[0] == plain);
  clear_all(out, 1);

  atomic_store(&flag, 1);
  memset(out, 0, sizeof(out));
  ck_assert_int_eq(run(m, &far, in, out, err, sizeof(err)), DYNQ_ECANCELED);
  /* the executor's check before the first node ("pre") */
  ck_assert_msg(strstr(err, "node 'pre' (Relu): run stopped after ") &&
                    strstr(err, ", before this node: the request was canceled"), "%s", err);
  ck_assert_ptr_null(out[0].data);

  dynq__run_stop_t past = stop_in(0, 0);
  past.deadline_ns -= 1000000000u;  /* beyond the coarse clock's lag */
  ck_assert_int_eq(run(m, &past, in, out, err, sizeof(err)), DYNQ_EDEADLINE);
  ck_assert_msg(strstr(err, "deadline passed while it ran") != NULL, "%s", err);
  past = stop_in(0, 1);
  past.limit_ns -= 1000000000u;
  past.limit_ms = 7;
  ck_assert_int_eq(run(m, &past, in, out, err, sizeof(err)), DYNQ_ELIMIT);
  ck_assert_msg(strstr(err, "limited to 7 ms (max_run_ms)") != NULL, "%s", err);
  ck_assert_ptr_null(out[0].data);
  clear_all(in, 2);
  dynq__model_unref(m);
}
END_TEST

/* A deadline 150 ms away, then a cap as far, on a sum of 4e10 steps:
 * stopped inside the Einsum with the matching code, nothing left. */
START_TEST(test_long_sum_stops_at_its_deadline_and_cap) {
  dynq__model_t *m = open_model("sum");
  int64_t d[2] = {1, 200000};
  dynq__tensor_t in[2] = {ramp(2, d, 0.01f, 0.003f), ramp(2, d, 0.02f, 0.003f)}, out[1];
  for (int as_limit = 0; as_limit < 2; as_limit++) {
    char err[512];
    dynq__run_stop_t s = stop_in(150, as_limit);
    memset(out, 0, sizeof(out));
    int rc = run(m, &s, in, out, err, sizeof(err));
    ck_assert_msg(rc == (as_limit ? DYNQ_ELIMIT : DYNQ_EDEADLINE), "got %d (%s)", rc, err);
    ck_assert_msg(strstr(err, "node 'pairs' (Einsum): run stopped after ") != NULL &&
                      strstr(err, "before this node") == NULL, "%s", err);
    ck_assert_ptr_null(out[0].data);
  }
  clear_all(in, 2);
  dynq__model_unref(m);
}
END_TEST

/* Each op whose time grows faster than its data polls inside its loop.
 * The slow node is the graph's second, after "pre", where the executor
 * does not check; an observer raises the cancel flag once "pre" has run,
 * so only the op's own poll can end the run: ECANCELED naming it, not
 * "before this node".  Without the poll the run completes (rc 0) and the
 * test fails; nothing here depends on timing. */
static void cancel_after_first(void *user, const dynq__graph_t *g, int index,
                               const dynq__node_t *node, int precision,
                               const dynq__tensor_t *const *inputs,
                               const dynq__tensor_t *outputs) {
  (void)g, (void)node, (void)precision, (void)inputs, (void)outputs;
  if (index == 0) atomic_store((atomic_int *)user, 1);
}

typedef struct slow {
  const char *model, *node;
  int n_in;
  int rank[4];
  int64_t dims[4][4];
} slow_t;

static const slow_t slows[] = {
    {"sum", "'pairs' (Einsum)", 2, {2, 2}, {{1, 1000}, {1, 1000}}},
    {"nms", "'nms' (NonMaxSuppression)", 2, {3, 3}, {{1, 500, 4}, {1, 1, 500}}},
    /* two query blocks of 64 rows: the poll sits between blocks */
    {"attn", "'pv' (Attention)", 4, {4, 4, 4, 4},
     {{1, 200, 1, 64}, {1, 200, 1, 64}, {1, 200, 1, 64}, {1, 1, 1, 200}}},
    /* every 64th step */
    {"lstm", "'lstm' (QLSTM)", 1, {3}, {{200, 1, 1}}},
    {"det", "'det' (Det)", 1, {2}, {{40, 40}}},
};

START_TEST(test_slow_ops_poll_inside) {
  const slow_t *b = &slows[_i];
  dynq__model_t *m = open_model(b->model);
  dynq__tensor_t in[4], out[2];
  for (int k = 0; k < b->n_in; k++) {
    in[k] = ramp(b->rank[k], b->dims[k], 0.01f * (float)(k + 1), 0.003f);
    if (strcmp(b->model, "det") == 0)
      for (int64_t i = 0; i < 40; i++) ((float *)in[k].data)[i * 40 + i] += 4.0f;
  }
  char err[512];
  /* a run without a stop completes */
  memset(out, 0, sizeof(out));
  ck_assert_msg(run(m, NULL, in, out, err, sizeof(err)) == 0, "%s: %s", b->model, err);
  clear_all(out, 2);
  atomic_int flag = 0;
  dynq__run_stop_t s = {.cancel = &flag};
  dynq__run_opts_t o = {.precision = DYNQ_PRECISION_INT8, .threads = 1, .stop = &s,
                        .on_node = cancel_after_first, .on_node_user = &flag,
                        .on_node_times_only = 1};
  memset(out, 0, sizeof(out));
  int rc = dynq__model_run(m, &o, in, out, err, sizeof(err));
  ck_assert_msg(rc == DYNQ_ECANCELED, "%s: got %d (%s)", b->model, rc, err);
  char want[128];
  snprintf(want, sizeof(want), "node %s: run stopped after ", b->node);
  ck_assert_msg(strstr(err, want) != NULL && strstr(err, "before this node") == NULL,
                "%s: '%s' is not the poll inside %s", b->model, err, b->node);
  ck_assert_ptr_null(out[0].data);
  clear_all(in, b->n_in);
  dynq__model_unref(m);
}
END_TEST

/* ---- through dynqd ---- */

typedef struct env {
  char *dir, *models;
  tu_daemon_t d;
} env_t;

static void env_start(env_t *e, const char *const *extra) {
  e->dir = tu_mkdtemp_models(&e->models);
  convert_to(e->models, "sum");
  convert_to(e->models, "sess");
  ck_assert_int_eq(tu_daemon_start(&e->d, e->dir, e->models, extra), 0);
}

static void env_stop(env_t *e) {
  if (e->d.pid > 0) ck_assert_int_eq(tu_daemon_stop(&e->d, SIGTERM), 0);
  tu_rmtree(e->dir);
  free(e->dir);
  free(e->models);
}

/* infer on "sum" (or a step of session sid > 0) with a [1, na] and b
 * [1, nb] (a ramp each); timeout_ms < 0 leaves it out. */
static void send_pairs(tu_rpc_t *c, uint32_t msgid, uint64_t sid, int64_t na, int64_t nb,
                       int64_t timeout_ms) {
  float *a = tu_ramp_f32((size_t)na, 1000), *bv = tu_ramp_f32((size_t)nb, 1000);
  int64_t da[2] = {1, na}, db[2] = {1, nb};
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, msgid, "infer");
  dynq__w_map(&w, timeout_ms >= 0 ? 3 : 2);
  if (sid > 0) {
    dynq__w_str(&w, "session");
    dynq__w_uint(&w, sid);
  } else {
    dynq__w_str(&w, "model");
    dynq__w_str(&w, "sum");
  }
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "a");
  tu_w_f32_tensor(&w, 2, da, a);
  dynq__w_str(&w, "b");
  tu_w_f32_tensor(&w, 2, db, bv);
  if (timeout_ms >= 0) {
    dynq__w_str(&w, "timeout_ms");
    dynq__w_int(&w, timeout_ms);
  }
  tu_rpc_send_wbuf(c, &w);
  free(a);
  free(bv);
}

static void send_sum(tu_rpc_t *c, uint32_t msgid, int64_t na, int64_t nb, int64_t timeout_ms) {
  send_pairs(c, msgid, 0, na, nb, timeout_ms);
}

/* sum(ramp(na)) * sum(ramp(nb)) in double, as the model's sum */
static double pairs_ref(int64_t na, int64_t nb) {
  float *a = tu_ramp_f32((size_t)na, 1000), *bv = tu_ramp_f32((size_t)nb, 1000);
  double sa = 0, sb = 0;
  for (int64_t i = 0; i < na; i++) sa += a[i];
  for (int64_t i = 0; i < nb; i++) sb += bv[i];
  free(a);
  free(bv);
  return sa * sb;
}

/* A small sum answered with the right value (after the model loaded). */
static void expect_small_ok(const char *sock) {
  tu_rpc_t c;
  tu_rpc_open(&c, sock);
  float *a = tu_ramp_f32(30, 1000), *bv = tu_ramp_f32(20, 1000);
  double sa = 0, sb = 0;
  for (int i = 0; i < 30; i++) sa += a[i];
  for (int i = 0; i < 20; i++) sb += bv[i];
  int rc = DYNQ_ENOMODEL;
  char msg[512];
  dynq__rpc_msg_t m;
  for (uint32_t id = 1; id < 2000 && rc == DYNQ_ENOMODEL; id++) {
    send_sum(&c, id, 30, 20, -1);
    rc = tu_rpc_response(&c, &m, id, msg, sizeof(msg));
    if (rc == DYNQ_ENOMODEL) {
      dynq__rpc_free(&m);
      usleep(10000);
    }
  }
  ck_assert_msg(rc == 0, "small sum: %d %s", rc, msg);
  float y;
  tu_get_f32_output(&m, "y", &y, 1);
  ck_assert_msg(fabs(y - sa * sb) <= 1e-5 * fabs(sa * sb), "sum %g, expected %g", y, sa * sb);
  dynq__rpc_free(&m);
  free(a);
  free(bv);
  tu_rpc_close(&c);
}

/* timeout_ms ends a running request with EDEADLINE naming the node, while
 * another connection is served; the daemon counts it as a timeout. */
START_TEST(test_daemon_deadline_stops_the_run) {
  env_t e = {0};
  const char *extra[] = {"--workers", "1", NULL};
  env_start(&e, extra);
  expect_small_ok(e.d.sock);
  tu_rpc_t c, other;
  tu_rpc_open(&c, e.d.sock);
  tu_rpc_open(&other, e.d.sock);
  send_sum(&c, 7, 100000, 100000, 300);  /* 1e10 steps */
  usleep(100000);
  tu_rpc_ping_ok(&other, 1);  /* the loop serves while the worker computes */
  tu_rpc_expect_error(&c, 7, DYNQ_EDEADLINE, "node 'pairs' (Einsum): run stopped after");
  expect_small_ok(e.d.sock);  /* the worker is free again */
  tu_rpc_close(&c);
  tu_rpc_close(&other);
  env_stop(&e);
}
END_TEST

/* max_run_ms caps a run nobody gave a deadline: ELIMIT naming the key. */
START_TEST(test_daemon_max_run_ms) {
  env_t e = {0};
  const char *extra[] = {"--workers", "1", "--max-run", "300", NULL};
  env_start(&e, extra);
  expect_small_ok(e.d.sock);
  tu_rpc_t c;
  tu_rpc_open(&c, e.d.sock);
  send_sum(&c, 3, 100000, 100000, -1);
  tu_rpc_expect_error(&c, 3, DYNQ_ELIMIT, "runs are limited to 300 ms (max_run_ms)");
  tu_rpc_close(&c);
  expect_small_ok(e.d.sock);
  env_stop(&e);
}
END_TEST

/* A model whose Loop no input ends (runlimit_forever) held a loader
 * thread for ever: its warm-up now stops at max_run_ms like a request,
 * the file is refused with that reason, and the other models serve. */
START_TEST(test_daemon_refuses_a_model_whose_warm_up_never_ends) {
  env_t e = {0};
  e.dir = tu_mkdtemp_models(&e.models);
  convert_to(e.models, "sum");
  convert_to(e.models, "forever");
  const char *extra[] = {"--workers", "1", "--max-run", "300", NULL};
  ck_assert_int_eq(tu_daemon_start(&e.d, e.dir, e.models, extra), 0);
  char *log = NULL;
  for (int i = 0; i < 200; i++) {  /* models load after the socket listens */
    size_t n = 0;
    free(log);
    log = tu_read_file(e.d.log, &n);
    if (log != NULL && strstr(log, "model loaded")) break;
    usleep(50000);
  }
  ck_assert_msg(log != NULL && strstr(log, "forever.dynq: warm-up run on zero inputs failed") &&
                    strstr(log, "runs are limited to 300 ms (max_run_ms)") &&
                    strstr(log, "1 model loaded"),
                "dynqd's log: %s", log ? log : "(none)");
  free(log);
  expect_small_ok(e.d.sock);
  env_stop(&e);
}
END_TEST

/* A client that sends a long request and goes away frees the only worker:
 * the next request behind it is answered (unstopped, it would wait for the
 * 1e10 steps). */
START_TEST(test_daemon_closed_connection_frees_the_worker) {
  env_t e = {0};
  const char *extra[] = {"--workers", "1", "--inline-max", "0", NULL};
  env_start(&e, extra);
  expect_small_ok(e.d.sock);
  tu_rpc_t c;
  tu_rpc_open(&c, e.d.sock);
  send_sum(&c, 9, 100000, 100000, -1);
  usleep(200000);
  tu_rpc_close(&c);
  expect_small_ok(e.d.sock);
  ck_assert(tu_daemon_alive(&e.d));
  env_stop(&e);
}
END_TEST

/* A session step stopped at its deadline leaves the state as it was: the
 * next step adds to the state of the step before the stopped one. */
START_TEST(test_daemon_stopped_step_keeps_the_state) {
  env_t e = {0};
  const char *extra[] = {"--workers", "1", NULL};
  env_start(&e, extra);
  expect_small_ok(e.d.sock);  /* the models are loaded */
  tu_rpc_t c;
  tu_rpc_open(&c, e.d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 1, "session.open");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "sess");
  tu_rpc_send_wbuf(&c, &w);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(&c, 1, &m);
  int64_t sid = tu_obj_int_or(dynq__obj_get(m.result, "session"), -1);
  dynq__rpc_free(&m);
  ck_assert_int_ge(sid, 1);
  const double s1 = pairs_ref(30, 20);
  float y;
  send_pairs(&c, 2, (uint64_t)sid, 30, 20, -1);  /* h 0 -> s1 */
  tu_rpc_expect_ok(&c, 2, &m);
  tu_get_f32_output(&m, "y", &y, 1);
  dynq__rpc_free(&m);
  ck_assert_msg(fabs(y - s1) <= 1e-5 * fabs(s1), "step 1: %g, expected %g", y, s1);
  send_pairs(&c, 3, (uint64_t)sid, 100000, 100000, 300);  /* stopped */
  tu_rpc_expect_error(&c, 3, DYNQ_EDEADLINE, "node 'pairs' (Einsum): run stopped after");
  send_pairs(&c, 4, (uint64_t)sid, 30, 20, -1);  /* h s1 -> 2 s1, not the stopped step's */
  tu_rpc_expect_ok(&c, 4, &m);
  tu_get_f32_output(&m, "y", &y, 1);
  dynq__rpc_free(&m);
  ck_assert_msg(fabs(y - 2 * s1) <= 1e-5 * fabs(2 * s1), "step 3: %g, expected %g", y, 2 * s1);
  tu_rpc_close(&c);
  env_stop(&e);
}
END_TEST

/* infer x [1, 1] = {v} on model, sent; tu_rpc_expect_ok reads it. */
static void send_x(tu_rpc_t *c, uint32_t msgid, const char *model, float v) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  tu_w_infer_f32(&w, msgid, model, "x", 1, 1, &v, -1);
  tu_rpc_send_wbuf(c, &w);
}

/* The answer to msgid: its y [1] (asserted ok). */
static float answer_y(tu_rpc_t *c, uint32_t msgid) {
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(c, msgid, &m);
  float y;
  tu_get_f32_output(&m, "y", &y, 1);
  dynq__rpc_free(&m);
  return y;
}

static float infer_x(tu_rpc_t *c, uint32_t msgid, const char *model, float v) {
  send_x(c, msgid, model, v);
  return answer_y(c, msgid);
}

static int64_t handoffs(tu_rpc_t *c, uint32_t msgid) {
  return tu_rpc_stat(c, msgid, "loop_handoffs_total");
}

/* A 4-byte request whose model's cost follows the value it sends (a Range
 * it sizes) is predicted at microseconds and runs on the loop; there it
 * outgrows the loop's caps (x^2 Einsum steps: time; a 160 MB Range: bytes)
 * and is handed to the worker, which answers it right.  Meanwhile the loop
 * answers a ping on another connection: before the long answer is there
 * (on a loop that kept the run, the ping would wait for it). */
START_TEST(test_daemon_loop_hands_over_what_outgrew_it) {
  env_t e = {0};
  /* the longest inline limit, so that warm runs under valgrind still
   * predict the big requests small enough for the loop */
  const char *extra[] = {"--workers", "1", "--inline-max", "1000", NULL};
  e.dir = tu_mkdtemp_models(&e.models);
  convert_to(e.models, "square");
  convert_to(e.models, "range");
  ck_assert_int_eq(tu_daemon_start(&e.d, e.dir, e.models, extra), 0);
  tu_rpc_t c, other;
  tu_rpc_open(&c, e.d.sock);
  tu_rpc_open(&other, e.d.sock);
  uint32_t id = 1;
  for (int i = 0; i < 20; i++) {  /* each model's cost estimate: x = 3 */
    ck_assert_float_eq(infer_x(&c, id++, "square", 3.0f), 9.0f);  /* (0+1+2)^2 */
    ck_assert_float_eq(infer_x(&c, id++, "range", 3.0f), 3.0f);
  }
  ck_assert_int_eq(handoffs(&c, id++), 0);

  /* 1.4e8 steps: a few tenths of a second, under valgrind tens of seconds
   * (within max_run_ms) */
  const double n = 12000, half = n * (n - 1) / 2;
  send_x(&c, 500, "square", (float)n);
  usleep(20000);
  tu_rpc_ping_ok(&other, 1);
  struct pollfd pfd = {c.fd, POLLIN, 0};
  ck_assert_msg(poll(&pfd, 1, 0) == 0, "the long request was answered before a ping: "
                "the loop ran it");
  float y = answer_y(&c, 500);
  ck_assert_msg(fabs(y - half * half) <= 1e-4 * half * half, "square %g, expected %g", y,
                half * half);
  ck_assert_int_eq(handoffs(&c, id++), 1);

  /* bytes: Range(0, 2e7) is 160 MB, over the loop's 4 MiB per value */
  y = infer_x(&c, id++, "range", 2e7f);
  ck_assert_msg(fabs(y - 2e7 * (2e7 - 1) / 2) <= 1e-4 * 2e14, "range sum %g", y);
  ck_assert_int_eq(handoffs(&c, id++), 2);
  /* small ones still answered (by the worker while the estimate is up) */
  ck_assert_float_eq(infer_x(&c, id++, "range", 3.0f), 3.0f);
  tu_rpc_close(&c);
  tu_rpc_close(&other);
  env_stop(&e);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("runlimit");
  TCase *tc = tcase_create("engine");
  tcase_add_checked_fixture(tc, tu_tmp_setup, tu_tmp_teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_small_runs_and_stops_at_once);
  tcase_add_test(tc, test_long_sum_stops_at_its_deadline_and_cap);
  tcase_add_loop_test(tc, test_slow_ops_poll_inside, 0, (int)(sizeof(slows) / sizeof(slows[0])));
  suite_add_tcase(s, tc);
  TCase *td = tcase_create("daemon");
  tcase_set_timeout(td, 120);
  tcase_add_test(td, test_daemon_deadline_stops_the_run);
  tcase_add_test(td, test_daemon_max_run_ms);
  tcase_add_test(td, test_daemon_refuses_a_model_whose_warm_up_never_ends);
  tcase_add_test(td, test_daemon_closed_connection_frees_the_worker);
  tcase_add_test(td, test_daemon_stopped_step_keeps_the_state);
  tcase_add_test(td, test_daemon_loop_hands_over_what_outgrew_it);
  suite_add_tcase(s, td);
  return s;
}

int main(void) { return tu_run_suite(suite()); }
