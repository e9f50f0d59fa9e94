/*
 * dynqd sessions: streaming state kept server-side.  Uses
 * tests/fixtures/stateful.onnx (y = tanh(x W + state U), stateN = y) and
 * the numpy recurrence committed with it (stateful_x.f32, stateful_y.f32).
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dynq/errors.h"
#include "testutil.h"

static char *g_dir, *g_models;
static int g_have;
static tu_daemon_t g_d;
static float g_x[5 * 8], g_y[5 * 8];
static float *g_slow_x;
#define SLOW_ROWS 2048

static void setup(void) {
  g_dir = tu_mkdtemp_models(&g_models);
  char a[4096], b[4096], c[4096], d[4096];
  snprintf(d, sizeof(d), "%s/declared.dynq", g_models);
  snprintf(a, sizeof(a), "%s/stateful.dynq", g_models);
  snprintf(b, sizeof(b), "%s/mlp.dynq", g_models);
  snprintf(c, sizeof(c), "%s/slow.dynq", g_models);
  g_have = tu_quantize("tests/fixtures/stateful.onnx", a, NULL) == 0 &&
           tu_quantize("tests/fixtures/mlp.onnx", b, NULL) == 0 &&
           tu_quantize("tests/fixtures/slow.onnx", c, "--no-reference", NULL) == 0 &&
           tu_quantize("tests/fixtures/stateful.onnx", d, "--state", "x=y", NULL) == 0 &&
           tu_load_f32("tests/fixtures/stateful_x.f32", g_x, 40) == 0 &&
           tu_load_f32("tests/fixtures/stateful_y.f32", g_y, 40) == 0;
  g_slow_x = tu_ramp_f32((size_t)SLOW_ROWS * 256, 13);
  if (g_have) {
    const char *extra[] = {"--workers", "1", "--max-sessions", "4", NULL};
    ck_assert_msg(tu_daemon_start(&g_d, g_dir, g_models, extra) == 0,
                  "dynqd did not start; see %s", g_d.log);
  }
}

static void teardown(void) {
  tu_daemon_teardown(&g_d, "sessions");
  if (g_dir) tu_rmtree(g_dir);
  free(g_dir);
  free(g_models);
  free(g_slow_x);
}

#define NEED_MODELS() TU_SKIP_UNLESS(g_have, "dynq-quantize not built")

/* session.open {model[, detached][, idle_timeout_ms]} -> id (asserted ok). */
static uint64_t open_session(tu_rpc_t *c, uint32_t msgid, const char *model, int detached,
                             int64_t idle_ms) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, msgid, "session.open");
  dynq__w_map(&w, 1 + (detached >= 0) + (idle_ms > 0));
  dynq__w_str(&w, "model");
  dynq__w_str(&w, model);
  if (detached >= 0) {
    dynq__w_str(&w, "detached");
    dynq__w_bool(&w, detached);
  }
  if (idle_ms > 0) {
    dynq__w_str(&w, "idle_timeout_ms");
    dynq__w_int(&w, idle_ms);
  }
  tu_rpc_send_wbuf(c, &w);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(c, msgid, &m);
  int64_t id = tu_obj_int_or(dynq__obj_get(m.result, "session"), -1);
  ck_assert_int_ge(id, 1);
  dynq__rpc_free(&m);
  return (uint64_t)id;
}

/* infer {session, inputs: {x: chunk t}[, precision]} */
static void send_step(tu_rpc_t *c, uint32_t msgid, uint64_t sid, int t, const char *precision) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, msgid, "infer");
  dynq__w_map(&w, precision ? 3 : 2);
  dynq__w_str(&w, "session");
  dynq__w_uint(&w, sid);
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "x");
  int64_t dims[2] = {1, 8};
  tu_w_f32_tensor(&w, 2, dims, g_x + t * 8);
  if (precision) {
    dynq__w_str(&w, "precision");
    dynq__w_str(&w, precision);
  }
  tu_rpc_send_wbuf(c, &w);
}

/* One step; checks y against the recurrence's y_t within tol. */
static void step_check(tu_rpc_t *c, uint32_t msgid, uint64_t sid, int in_t, int ref_t,
                       const char *precision, double tol) {
  send_step(c, msgid, sid, in_t, precision);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(c, msgid, &m);
  float y[8], s[8];
  tu_get_f32_output(&m, "y", y, 8);
  tu_get_f32_output(&m, "stateN", s, 8);  /* every output is returned */
  for (int i = 0; i < 8; i++) {
    ck_assert_msg(fabs((double)y[i] - g_y[ref_t * 8 + i]) <= tol,
                  "step %d y[%d] = %g, recurrence %g (tol %g)", ref_t, i, y[i],
                  g_y[ref_t * 8 + i], tol);
    ck_assert(y[i] == s[i]);
  }
  dynq__rpc_free(&m);
}

static int64_t stats_sessions(tu_rpc_t *c, uint32_t msgid) {
  return tu_rpc_stat(c, msgid, "sessions");
}

/* Poll until the daemon reports n sessions (it drops them asynchronously
 * after a hang-up or a timeout; there is no event to wait on from here). */
static void wait_sessions(tu_rpc_t *c, int64_t n) {
  for (uint32_t id = 50000;; id++) {
    if (stats_sessions(c, id) == n) return;
    ck_assert_msg(id < 50000 + 20000, "sessions never dropped to %lld", (long long)n);
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

START_TEST(test_stream_matches_recurrence) {
  NEED_MODELS();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  /* The open result names the unbound inputs and the default binding. */
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 1, "session.open");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "stateful");
  tu_rpc_send_wbuf(&c, &w);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(&c, 1, &m);
  uint64_t sid = (uint64_t)tu_obj_int_or(dynq__obj_get(m.result, "session"), -1);
  dynq__obj_t ins = dynq__obj_get(m.result, "inputs");
  ck_assert_uint_eq(dynq__obj_len(ins), 1);
  char name[32];
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_at(ins, 0), name, sizeof(name)), 0);
  ck_assert_str_eq(name, "x");
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(dynq__obj_get(m.result, "bindings"), "state"),
                                    name, sizeof(name)), 0);
  ck_assert_str_eq(name, "stateN");
  dynq__rpc_free(&m);
  /* FP32 path: the recurrence to float rounding. */
  for (int t = 0; t < 5; t++) step_check(&c, 10 + (uint32_t)t, sid, t, t, "fp32", 1e-5);
  /* INT8 path on a fresh session: within quantization error. */
  uint64_t s2 = open_session(&c, 2, "stateful", -1, 0);
  for (int t = 0; t < 5; t++) step_check(&c, 20 + (uint32_t)t, s2, t, t, NULL, 0.03);
  /* reset: back to zeros, so chunk 0 gives y_0 again */
  tu_rpc_call_id(&c, 30, "session.reset", "session", sid);
  tu_rpc_expect_ok(&c, 30, &m);
  dynq__rpc_free(&m);
  step_check(&c, 31, sid, 0, 0, "fp32", 1e-5);
  step_check(&c, 32, sid, 1, 1, "fp32", 1e-5);
  /* close: then ENOSESSION for infer, reset and close */
  tu_rpc_call_id(&c, 40, "session.close", "session", sid);
  tu_rpc_expect_ok(&c, 40, &m);
  dynq__rpc_free(&m);
  send_step(&c, 41, sid, 0, NULL);
  tu_rpc_expect_error(&c, 41, DYNQ_ENOSESSION, "no session");
  tu_rpc_call_id(&c, 42, "session.reset", "session", sid);
  tu_rpc_expect_error(&c, 42, DYNQ_ENOSESSION, NULL);
  tu_rpc_call_id(&c, 43, "session.close", "session", sid);
  tu_rpc_expect_error(&c, 43, DYNQ_ENOSESSION, NULL);
  tu_rpc_call_id(&c, 44, "session.close", "session", s2);
  tu_rpc_expect_ok(&c, 44, &m);
  dynq__rpc_free(&m);
  tu_rpc_close(&c);
}
END_TEST

START_TEST(test_failed_step_keeps_state) {
  NEED_MODELS();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  uint64_t sid = open_session(&c, 1, "stateful", -1, 0);
  step_check(&c, 2, sid, 0, 0, "fp32", 1e-5);
  /* A wrong shape fails in the model: the state must not move. */
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 3, "infer");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "session");
  dynq__w_uint(&w, sid);
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "x");
  int64_t dims[2] = {1, 4};
  tu_w_f32_tensor(&w, 2, dims, g_x);
  tu_rpc_send_wbuf(&c, &w);
  dynq__rpc_msg_t m;
  char msg[512];
  int rc = tu_rpc_response(&c, &m, 3, msg, sizeof(msg));
  ck_assert_msg(rc != 0, "a [1, 4] chunk was accepted");
  dynq__rpc_free(&m);
  step_check(&c, 4, sid, 1, 1, "fp32", 1e-5);
  tu_rpc_close(&c);
}
END_TEST

START_TEST(test_bad_requests) {
  NEED_MODELS();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  uint64_t sid = open_session(&c, 1, "stateful", -1, 0);
  /* the bound input may not be sent */
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 2, "infer");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "session");
  dynq__w_uint(&w, sid);
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 2);
  int64_t dims[2] = {1, 8};
  dynq__w_str(&w, "x");
  tu_w_f32_tensor(&w, 2, dims, g_x);
  dynq__w_str(&w, "state");
  tu_w_f32_tensor(&w, 2, dims, g_x);
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 2, DYNQ_EPARAMS, "bound to session state");
  /* unknown id, and a non-integer id */
  send_step(&c, 3, 987654, 0, NULL);
  tu_rpc_expect_error(&c, 3, DYNQ_ENOSESSION, "987654");
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 4, "session.reset");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "session");
  dynq__w_str(&w, "one");
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 4, DYNQ_EPARAMS, "session");
  /* open errors: unknown model, model without state pairs, bad bindings */
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 5, "session.open");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "nosuch");
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 5, DYNQ_ENOMODEL, "nosuch");
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 6, "session.open");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "mlp");
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 6, DYNQ_EPARAMS, "bindings");
  const char *bad[][2] = {{"nope", "stateN"}, {"state", "nope"}};
  const int codes[] = {DYNQ_ENOINPUT, DYNQ_EPARAMS};
  for (int i = 0; i < 2; i++) {
    dynq__wbuf_init(&w);
    dynq__w_request_head(&w, 7 + (uint32_t)i, "session.open");
    dynq__w_map(&w, 2);
    dynq__w_str(&w, "model");
    dynq__w_str(&w, "stateful");
    dynq__w_str(&w, "bindings");
    dynq__w_map(&w, 1);
    dynq__w_str(&w, bad[i][0]);
    dynq__w_str(&w, bad[i][1]);
    tu_rpc_send_wbuf(&c, &w);
    tu_rpc_expect_error(&c, 7 + (uint32_t)i, codes[i], "nope");
  }
  /* explicit bindings equal to the default work */
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 9, "session.open");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "stateful");
  dynq__w_str(&w, "bindings");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "state");
  dynq__w_str(&w, "stateN");
  tu_rpc_send_wbuf(&c, &w);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(&c, 9, &m);
  uint64_t s2 = (uint64_t)tu_obj_int_or(dynq__obj_get(m.result, "session"), -1);
  dynq__rpc_free(&m);
  step_check(&c, 10, s2, 0, 0, "fp32", 1e-5);
  tu_rpc_close(&c);  /* closes both sessions */
  tu_rpc_t d;
  tu_rpc_open(&d, g_d.sock);
  wait_sessions(&d, 0);
  tu_rpc_close(&d);
}
END_TEST

START_TEST(test_sessions_die_with_connection_unless_detached) {
  NEED_MODELS();
  tu_rpc_t a, b;
  tu_rpc_open(&a, g_d.sock);
  tu_rpc_open(&b, g_d.sock);
  uint64_t mine = open_session(&a, 1, "stateful", 0, 0);
  uint64_t kept = open_session(&a, 2, "stateful", 1, 0);
  step_check(&a, 3, kept, 0, 0, "fp32", 1e-5);
  /* another connection cannot use a's attached session */
  send_step(&b, 4, mine, 0, NULL);
  tu_rpc_expect_error(&b, 4, DYNQ_ENOSESSION, NULL);
  ck_assert_int_eq(stats_sessions(&b, 5), 2);
  tu_rpc_close(&a);
  wait_sessions(&b, 1);
  send_step(&b, 6, mine, 0, NULL);
  tu_rpc_expect_error(&b, 6, DYNQ_ENOSESSION, NULL);
  /* the detached one lives on, state and all: chunk 1 gives y_1 */
  step_check(&b, 7, kept, 1, 1, "fp32", 1e-5);
  tu_rpc_call_id(&b, 8, "session.close", "session", kept);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(&b, 8, &m);
  dynq__rpc_free(&m);
  ck_assert_int_eq(stats_sessions(&b, 9), 0);
  tu_rpc_close(&b);
}
END_TEST

START_TEST(test_session_cap) {
  NEED_MODELS();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  uint64_t ids[4];
  for (int i = 0; i < 4; i++) ids[i] = open_session(&c, 1 + (uint32_t)i, "stateful", -1, 0);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 10, "session.open");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "stateful");
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 10, DYNQ_ELIMIT, "max_sessions");
  tu_rpc_call_id(&c, 11, "session.close", "session", ids[0]);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(&c, 11, &m);
  dynq__rpc_free(&m);
  ids[0] = open_session(&c, 12, "stateful", -1, 0);
  tu_rpc_close(&c);
  tu_rpc_t d;
  tu_rpc_open(&d, g_d.sock);
  wait_sessions(&d, 0);
  tu_rpc_close(&d);
}
END_TEST

START_TEST(test_idle_timeout) {
  NEED_MODELS();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  uint64_t quick = open_session(&c, 1, "stateful", -1, 30);
  uint64_t slow = open_session(&c, 2, "stateful", -1, 600000);
  wait_sessions(&c, 1);
  send_step(&c, 3, quick, 0, NULL);
  tu_rpc_expect_error(&c, 3, DYNQ_ENOSESSION, NULL);
  step_check(&c, 4, slow, 0, 0, "fp32", 1e-5);
  tu_rpc_close(&c);
}
END_TEST

START_TEST(test_concurrent_use_busy) {
  NEED_MODELS();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  uint64_t sid = open_session(&c, 1, "stateful", -1, 0);
  /* The only worker is busy with a slow request, so step 10 is still
   * queued when step 11 arrives. */
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 2, "infer");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "slow");
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "x");
  int64_t dims[2] = {SLOW_ROWS, 256};
  tu_w_f32_tensor(&w, 2, dims, g_slow_x);
  tu_rpc_send_wbuf(&c, &w);
  send_step(&c, 10, sid, 0, "fp32");
  send_step(&c, 11, sid, 1, "fp32");
  tu_rpc_call_id(&c, 12, "session.reset", "session", sid);
  tu_rpc_expect_error(&c, 11, DYNQ_EBUSY, "one request per session");
  tu_rpc_expect_error(&c, 12, DYNQ_EBUSY, NULL);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(&c, 10, &m);
  float y[8];
  tu_get_f32_output(&m, "y", y, 8);
  for (int i = 0; i < 8; i++) ck_assert(fabs((double)y[i] - g_y[i]) <= 1e-5);
  dynq__rpc_free(&m);
  tu_rpc_expect_ok(&c, 2, &m);
  dynq__rpc_free(&m);
  /* the refused step left the state alone: chunk 1 now gives y_1 */
  step_check(&c, 13, sid, 1, 1, "fp32", 1e-5);
  tu_rpc_close(&c);
}
END_TEST

/* Pairs declared at import (dynq-quantize --state x=y) win over the naming
 * convention (which would pair state <- stateN). */
START_TEST(test_declared_state_pairs) {
  NEED_MODELS();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 71, "session.open");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "declared");
  tu_rpc_send_wbuf(&c, &w);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(&c, 71, &m);
  dynq__obj_t b = dynq__obj_get(m.result, "bindings");
  ck_assert_uint_eq(dynq__obj_len(b), 1);
  char out[64];
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(b, "x"), out, sizeof(out)), 0);
  ck_assert_str_eq(out, "y");
  ck_assert(dynq__obj_is_absent(dynq__obj_get(b, "state")));
  dynq__rpc_free(&m);
  /* the convention still applies to the model without declared pairs */
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 72, "session.open");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "stateful");
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_ok(&c, 72, &m);
  b = dynq__obj_get(m.result, "bindings");
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(b, "state"), out, sizeof(out)), 0);
  ck_assert_str_eq(out, "stateN");
  dynq__rpc_free(&m);
  tu_rpc_close(&c);
}
END_TEST

/* A session step run on the loop (inline_max_us) feeds its new state
 * back exactly as one run on a worker: the same bits over 15 steps, with
 * inline runs counted on one daemon and none on the other. */
static void session_steps(const char *sock, int n, float (*y)[8], int64_t *ret_inline) {
  tu_rpc_t c;
  tu_rpc_open(&c, sock);
  uint64_t sid = open_session(&c, 1, "stateful", -1, 0);
  for (int t = 0; t < n; t++) {
    send_step(&c, 10 + (uint32_t)t, sid, t % 5, NULL);
    dynq__rpc_msg_t m;
    tu_rpc_expect_ok(&c, 10 + (uint32_t)t, &m);
    tu_get_f32_output(&m, "y", y[t], 8);
    dynq__rpc_free(&m);
  }
  tu_rpc_call0(&c, 2, "stats");
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(&c, 2, &m);
  *ret_inline = tu_obj_int_or(dynq__obj_get(m.result, "inline_total"), -1);
  dynq__rpc_free(&m);
  tu_rpc_close(&c);
}

START_TEST(test_inline_steps_same_bits) {
  NEED_MODELS();
  enum { N = 15 };
  static float ref[N][8], got[N][8];
  const char *modes[2][5] = {{"--workers", "1", "--inline-max", "0", NULL},
                             /* the highest limit: valgrind still predicts under it */
                             {"--workers", "1", "--inline-max", "1000", NULL}};
  int64_t n_inline[2];
  for (int k = 0; k < 2; k++) {
    char *dir = tu_mkdtemp();
    tu_daemon_t d;
    ck_assert_msg(tu_daemon_start(&d, dir, g_models, modes[k]) == 0, "dynqd did not start; see %s",
                  d.log);
    session_steps(d.sock, N, k ? got : ref, &n_inline[k]);
    tu_daemon_teardown(&d, k ? "inline-on" : "inline-off");
    tu_rmtree(dir);
    free(dir);
  }
  ck_assert_int_eq(n_inline[0], 0);
  /* the first step has no cost estimate yet and goes to a worker */
  ck_assert_msg(n_inline[1] >= 1 && n_inline[1] < N, "%lld of %d steps ran inline",
                (long long)n_inline[1], N);
  for (int t = 0; t < N; t++)
    ck_assert_msg(memcmp(ref[t], got[t], sizeof(ref[t])) == 0,
                  "step %d: inline result differs from the worker's", t);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("sessions");
  TCase *tc = tcase_create("sessions");
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_stream_matches_recurrence);
  tcase_add_test(tc, test_failed_step_keeps_state);
  tcase_add_test(tc, test_bad_requests);
  tcase_add_test(tc, test_sessions_die_with_connection_unless_detached);
  tcase_add_test(tc, test_session_cap);
  tcase_add_test(tc, test_idle_timeout);
  tcase_add_test(tc, test_concurrent_use_busy);
  tcase_add_test(tc, test_declared_state_pairs);
  tcase_add_test(tc, test_inline_steps_same_bits);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(suite)
