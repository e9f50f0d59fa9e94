/*
 * Shadow FP32 telemetry in a real dynqd (daemon/shadow.c): sampled
 * requests re-run on the FP32 path and counted per model (runs, relL2 and
 * max-abs histograms, decision changes), the alert logged once per window
 * and shown by health.ready, nothing shadowed while requests wait, the
 * model.load param and its bad values.
 */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dynq/dynqclient.h"
#include "testutil.h"

static char *g_dir, *g_models;
static float g_x[256 * 256];

static void setup(void) {
  g_dir = tu_mkdtemp_models(&g_models);
  char p[4096];
  snprintf(p, sizeof p, "%s/sens.dynq", g_models);
  ck_assert_int_eq(tu_quantize("tests/fixtures/calib/sensitive.onnx", p, NULL), 0);
  snprintf(p, sizeof p, "%s/slow.dynq", g_models);
  ck_assert_int_eq(tu_quantize("tests/fixtures/slow.onnx", p, NULL), 0);
  snprintf(p, sizeof p, "%s/cell.dynq", g_models);
  ck_assert_int_eq(tu_quantize("tests/fixtures/stateful.onnx", p, "--state", "state=stateN",
                               NULL), 0);
  for (size_t i = 0; i < sizeof(g_x) / sizeof(g_x[0]); i++)
    g_x[i] = (float)((int)(i * 7919 % 23) - 11) / 11.0f;
}

static void teardown(void) {
  tu_rmtree(g_dir);
  free(g_dir);
  free(g_models);
}

/* The stats as JSON (libdynqclient keeps the fields it does not know). */
static char *stats_json(const char *sock) {
  dynq_client_t *c = NULL;
  ck_assert_int_eq(dynq_connect(sock, &c), 0);
  char *j = NULL;
  ck_assert_int_eq(dynq_stats_json(c, &j), 0);
  dynq_close(c);
  return j;
}

/* The number after "key": at or after `from` in s (-1 when absent). */
static double num_after(const char *s, const char *from, const char *key) {
  const char *p = from ? strstr(s, from) : s;
  if (p == NULL) return -1;
  char k[96];
  snprintf(k, sizeof k, "\"%s\":", key);
  p = strstr(p, k);
  if (p == NULL) return -1;
  p += strlen(k);
  while (*p == ' ') p++;
  return strtod(p, NULL);
}

/* Poll stats until runs + dropped of the shadow totals reach n (the shadow
 * thread is at idle priority: on a busy machine it takes a while). */
static char *wait_shadowed(const char *sock, double n) {
  for (int i = 0; i < 3000; i++) {
    char *j = stats_json(sock);
    if (num_after(j, NULL, "shadow_runs_total") + num_after(j, NULL, "shadow_dropped_total") >= n)
      return j;
    free(j);
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  ck_abort_msg("shadow runs never reached %g", n);
  return NULL;
}

static void infer_one(tu_rpc_t *c, uint32_t id, const char *model, int64_t rows, int64_t cols) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  tu_w_infer_f32(&w, id, model, "x", rows, cols, g_x, -1);
  tu_rpc_send_wbuf(c, &w);
}

START_TEST(counts_histograms_and_alert) {
  tu_daemon_t d;
  const char *args[] = {"--shadow-rate", "1", "--shadow-alert", "0.05", "--workers", "1", NULL};
  ck_assert_int_eq(tu_daemon_start(&d, g_dir, g_models, args), 0);
  tu_rpc_t c;
  tu_rpc_open(&c, d.sock);
  enum { N = 10 };
  for (uint32_t i = 1; i <= N; i++) {
    dynq__rpc_msg_t m;
    infer_one(&c, i, "sens", 16, 64);
    tu_rpc_expect_ok(&c, i, &m);
    dynq__rpc_free(&m);
    free(wait_shadowed(d.sock, i)); /* one at a time: none dropped */
  }
  char *j = stats_json(d.sock);
  ck_assert_msg(num_after(j, NULL, "shadow_runs_total") == N, "%s", j);
  ck_assert_msg(num_after(j, NULL, "shadow_dropped_total") == 0, "%s", j);
  const char *sh = "\"sens\"";
  ck_assert_msg(num_after(j, sh, "rate") == 1 && num_after(j, sh, "runs") == N, "%s", j);
  /* the sensitive layer makes relL2 about 0.2 (dynq-quantize's report) */
  const char *rel = strstr(strstr(j, sh), "\"rel_l2\"");
  ck_assert_ptr_nonnull(rel);
  ck_assert_msg(num_after(rel, NULL, "count") == N, "%s", j);
  double p50 = num_after(rel, NULL, "p50");
  ck_assert_msg(p50 > 0.05 && p50 < 1, "relL2 p50 %g: %s", p50, j);
  const char *ma = strstr(strstr(j, sh), "\"max_abs\"");
  ck_assert_msg(ma && num_after(ma, NULL, "count") == N && num_after(ma, NULL, "p50") > 0, "%s", j);
  ck_assert_msg(num_after(j, sh, "alerts") == N, "%s", j);
  free(j);
  /* health: ready, with a quality warning naming the model */
  dynq__rpc_msg_t m;
  tu_rpc_call0(&c, 100, "health.ready");
  tu_rpc_expect_ok(&c, 100, &m);
  ck_assert(dynq__obj_kind(dynq__obj_get(m.result, "ready")) == DYNQ_OBJ_BOOL);
  dynq__obj_t q = dynq__obj_get(m.result, "quality");
  ck_assert_int_eq(dynq__obj_kind(q), DYNQ_OBJ_ARRAY);
  ck_assert_int_eq(dynq__obj_len(q), 1);
  char name[64];
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(dynq__obj_at(q, 0), "model"), name,
                                    sizeof name), 0);
  ck_assert_str_eq(name, "sens");
  dynq__rpc_free(&m);
  /* The same through libdynqclient and dynqctl health. */
  dynq_client_t *cl = NULL;
  ck_assert_int_eq(dynq_connect(d.sock, &cl), 0);
  dynq_quality_t qs[2];
  int nq = -1;
  ck_assert_int_eq(dynq_health_quality(cl, qs, 2, &nq), 0);
  ck_assert_int_eq(nq, 1);
  ck_assert_uint_eq(qs[0].size, sizeof(qs[0]));
  ck_assert_str_eq(qs[0].model, "sens");
  ck_assert_msg(qs[0].rel_l2 > 0.05 && qs[0].alert == 0.05, "%g %g", qs[0].rel_l2, qs[0].alert);
  ck_assert_int_eq(dynq_health_quality(cl, NULL, 0, &nq), 0); /* count only */
  ck_assert_int_eq(nq, 1);
  /* stats: the model's shadow figures, histograms with their buckets */
  dynq_stats_t st;
  ck_assert_int_eq(dynq_stats(cl, &st), 0);
  const dynq_model_shadow_t *msh = NULL;
  for (int i = 0; i < st.n_models; i++)
    if (strcmp(st.models[i].name, "sens") == 0) msh = &st.shadow[i];
  ck_assert_ptr_nonnull(msh);
  ck_assert_int_eq(msh->on, 1);
  ck_assert_uint_eq(msh->runs, N);
  ck_assert_uint_eq(msh->alerts, N);
  ck_assert_uint_eq(msh->rel_l2_ppm.count, N);
  ck_assert_int_eq(msh->rel_l2_ppm.has_buckets, 1);
  /* relL2 about 0.2: all N under 2^20 ppm (1.05), none under 2^15 (0.033) */
  ck_assert_uint_eq(msh->rel_l2_ppm.below[20], N);
  ck_assert_uint_eq(msh->rel_l2_ppm.below[15], 0);
  ck_assert_msg(msh->rel_l2_ppm.sum >= N * 50000 && msh->rel_l2_ppm.sum < N * 1000000,
                "sum %llu", (unsigned long long)msh->rel_l2_ppm.sum);
  ck_assert_uint_eq(msh->max_abs_ppm.count, N);
  ck_assert_uint_eq(msh->max_abs_ppm.below[DYNQ_LATENCY_BUCKETS - 1], N);
  dynq_stats_free(&st);
  dynq_close(cl);
  char exe[4096], *out = NULL;
  snprintf(exe, sizeof exe, "%s", tu_build("client/dynqctl"));
  char *argv[] = {exe, "--socket", d.sock, "health", NULL};
  ck_assert_int_eq(tu_run(argv, &out), 0);  /* ready: a warning is not a failure */
  ck_assert_msg(strstr(out, "quality: model 'sens': INT8 relL2") != NULL, "%s", out);
  free(out);
  char *pargv[] = {exe, "--socket", d.sock, "stats", "--prometheus", NULL};
  ck_assert_int_eq(tu_run(pargv, &out), 0);
  ck_assert_msg(strstr(out, "dynq_model_shadow_rel_l2_bucket{model=\"sens\",le=\"+Inf\"} 10\n") &&
                    strstr(out, "dynq_model_shadow_runs_total{model=\"sens\"} 10\n"),
                "%s", out);
  free(out);
  tu_rpc_close(&c);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  /* logged once in the 60 s window, not per request */
  ck_assert_int_eq(tu_count_in_file(d.log, "above shadow_alert"), 1);
}
END_TEST

START_TEST(nothing_shadowed_while_requests_wait) {
  tu_daemon_t d;
  const char *args[] = {"--shadow-rate", "1", "--workers", "1", "--inline-max", "0", NULL};
  ck_assert_int_eq(tu_daemon_start(&d, g_dir, g_models, args), 0);
  tu_rpc_t c;
  tu_rpc_open(&c, d.sock);
  enum { N = 12 };
  /* pipelined: while one runs, the others wait in the queue */
  for (uint32_t i = 1; i <= N; i++) infer_one(&c, i, "slow", 256, 256);
  for (uint32_t i = 1; i <= N; i++) {
    dynq__rpc_msg_t m;
    tu_rpc_expect_ok(&c, i, &m);
    dynq__rpc_free(&m);
  }
  char *j = wait_shadowed(d.sock, N);
  double runs = num_after(j, NULL, "shadow_runs_total");
  double dropped = num_after(j, NULL, "shadow_dropped_total");
  /* every request but the last was answered with others still queued */
  ck_assert_msg(runs + dropped == N && dropped >= N - 2 && runs <= 2, "%s", j);
  free(j);
  tu_rpc_close(&c);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST

typedef struct load_params {
  const char *model;
  double rate;
  int bad;
} load_params_t;

static void w_load(dynq__wbuf_t *w, void *ctx) {
  const load_params_t *lp = ctx;
  dynq__w_map(w, 3);
  dynq__w_str(w, "model");
  dynq__w_str(w, lp->model);
  dynq__w_str(w, "path");
  dynq__w_str(w, "sens.dynq");
  dynq__w_str(w, "shadow_rate");
  if (lp->bad) dynq__w_str(w, "lots");
  else dynq__w_double(w, lp->rate);
}

START_TEST(model_load_param) {
  tu_daemon_t d;
  const char *args[] = {"--shadow-rate", "1", NULL};
  ck_assert_int_eq(tu_daemon_start(&d, g_dir, g_models, args), 0);
  tu_rpc_t c;
  tu_rpc_open(&c, d.sock);
  load_params_t lp = {"quiet", 0, 0};
  dynq__rpc_msg_t m;
  tu_rpc_call(&c, 1, "model.load", w_load, &lp);
  tu_rpc_expect_ok(&c, 1, &m);
  dynq__rpc_free(&m);
  lp.rate = 1.5;
  tu_rpc_call(&c, 2, "model.load", w_load, &lp);
  tu_rpc_expect_error(&c, 2, DYNQ_EPARAMS, "shadow_rate must be a number from 0");
  lp.bad = 1;
  tu_rpc_call(&c, 3, "model.load", w_load, &lp);
  tu_rpc_expect_error(&c, 3, DYNQ_EPARAMS, "shadow_rate");
  for (uint32_t i = 10; i < 14; i++) {
    infer_one(&c, i, "quiet", 16, 64);
    tu_rpc_expect_ok(&c, i, &m);
    dynq__rpc_free(&m);
  }
  infer_one(&c, 20, "sens", 16, 64);
  tu_rpc_expect_ok(&c, 20, &m);
  dynq__rpc_free(&m);
  char *j = wait_shadowed(d.sock, 1);
  /* 'quiet' (rate 0 at load) shadows nothing; 'sens' (global 1) does */
  ck_assert_msg(num_after(j, "\"quiet\"", "rate") == 0, "%s", j);
  ck_assert_msg(num_after(j, NULL, "shadow_runs_total") + num_after(j, NULL, "shadow_dropped_total") == 1,
                "%s", j);
  free(j);
  tu_rpc_close(&c);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST


/* One step of session sid: x [1, 8]. */
static void step(tu_rpc_t *c, uint32_t id, uint64_t sid, const float *x) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  int64_t dims[2] = {1, 8};
  dynq__w_request_head(&w, id, "infer");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "session");
  dynq__w_uint(&w, sid);
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "x");
  tu_w_f32_tensor(&w, 2, dims, x);
  tu_rpc_send_wbuf(c, &w);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(c, id, &m);
  dynq__rpc_free(&m);
}

static void w_model_cell(dynq__wbuf_t *w, void *ctx) {
  (void)ctx;
  dynq__w_map(w, 1);
  dynq__w_str(w, "model");
  dynq__w_str(w, "cell");
}

START_TEST(whole_sessions_are_shadowed) {
  tu_daemon_t d;
  const char *args[] = {"--shadow-rate", "1", "--workers", "1", NULL};
  ck_assert_int_eq(tu_daemon_start(&d, g_dir, g_models, args), 0);
  tu_rpc_t c;
  tu_rpc_open(&c, d.sock);
  dynq__rpc_msg_t m;
  tu_rpc_call(&c, 1, "session.open", w_model_cell, NULL);
  tu_rpc_expect_ok(&c, 1, &m);
  int64_t sid = tu_obj_int_or(dynq__obj_get(m.result, "session"), -1);
  dynq__rpc_free(&m);
  ck_assert_int_ge(sid, 0);
  /* every step, in order, on the twin's own FP32 state */
  for (uint32_t i = 0; i < 5; i++) {
    step(&c, 10 + i, (uint64_t)sid, g_x + 8 * i);
    free(wait_shadowed(d.sock, i + 1));
  }
  char *j = stats_json(d.sock);
  const char *cell = strstr(j, "\"cell\"");
  ck_assert_msg(cell && num_after(cell, NULL, "runs") == 5, "%s", j);
  const char *rel = strstr(cell, "\"rel_l2\"");
  /* the state output is not compared; y is, and INT8 stays close */
  ck_assert_msg(rel && num_after(rel, NULL, "count") == 5 && num_after(rel, NULL, "max") < 0.05,
                "%s", j);
  free(j);
  /* a reset stops the twin (its state cannot follow): later steps are not
   * shadowed.  A plain request shadowed after them (one FIFO thread) shows
   * that nothing of the session was queued before it. */
  tu_rpc_call_id(&c, 30, "session.reset", "session", (uint64_t)sid);
  tu_rpc_expect_ok(&c, 30, &m);
  dynq__rpc_free(&m);
  step(&c, 31, (uint64_t)sid, g_x);
  infer_one(&c, 32, "sens", 16, 64);
  tu_rpc_expect_ok(&c, 32, &m);
  dynq__rpc_free(&m);
  j = wait_shadowed(d.sock, 6);
  cell = strstr(j, "\"cell\"");
  ck_assert_msg(num_after(j, NULL, "shadow_runs_total") == 6 && cell &&
                num_after(cell, NULL, "runs") == 5, "%s", j);
  free(j);
  tu_rpc_close(&c);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("shadow");
  TCase *t = tcase_create("core");
  tcase_add_checked_fixture(t, setup, teardown);
  tcase_set_timeout(t, 120);
  tcase_add_test(t, counts_histograms_and_alert);
  tcase_add_test(t, nothing_shadowed_while_requests_wait);
  tcase_add_test(t, model_load_param);
  tcase_add_test(t, whole_sessions_are_shadowed);
  suite_add_tcase(s, t);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf == 0 ? 0 : 1;
}
