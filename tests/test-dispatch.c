/*
 * The rpc layer's shared rules, from the method table (one row per method
 * of lib/proto/methods.def), without a process: the [map] params rule, admin gating (before params), methods that
 * ignore params, unknown methods, and frames that wait for start-up.
 * A connection is one end of a socketpair inside a libuv loop; the test
 * reads the answers from the other end.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "dynqd.h"
#include "testutil.h"

typedef struct fixture {
  uv_loop_t loop;
  dynqd_config_t cfg;
  dynqd_server_t srv;
  dynqd_conn_t *conn;
  tu_rpc_t peer;
  int refuse_admin;
} fixture_t;

static fixture_t F;
static int g_admin_calls;

static int fake_peer_ok(int fd, const char *group, char *why, size_t whylen) {
  (void)fd;
  (void)group;
  g_admin_calls++;
  if (!F.refuse_admin) return 1;
  snprintf(why, whylen, "peer uid 4242 is not an admin (test)");
  return 0;
}

static void setup(void) {
  memset(&F, 0, sizeof(F));
  g_admin_calls = 0;
  ck_assert_int_eq(uv_loop_init(&F.loop), 0);
  F.cfg.max_output = 1 << 20;
  F.cfg.max_buffers_total = 1 << 30;
  F.cfg.max_inflight = 8;
  F.cfg.max_sessions = 4;
  F.cfg.max_shm_regions = 4;
  F.srv.loop = &F.loop;
  F.srv.cfg = &F.cfg;
  F.srv.exit_code = -1;
  F.srv.on_request = dynqd__dispatch;
  F.srv.peer_ok = fake_peer_ok;
  F.srv.sessions.loop = &F.loop;
  F.srv.sessions.cfg = &F.cfg;
  int sv[2];
  ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  F.conn = calloc(1, sizeof(*F.conn));
  F.conn->srv = &F.srv;
  F.conn->refs = 1;
  atomic_init(&F.conn->dead, 0);
  ck_assert_int_eq(uv_pipe_init(&F.loop, &F.conn->pipe, 0), 0);
  ck_assert_int_eq(uv_pipe_open(&F.conn->pipe, sv[0]), 0);
  F.srv.conns = F.conn;
  F.srv.n_conns = 1;
  memset(&F.peer, 0, sizeof(F.peer));
  F.peer.fd = sv[1];
}

static void teardown(void) {
  dynqd__conn_close(F.conn);  /* freed by its close callback */
  uv_run(&F.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(&F.loop), 0);
  dynqd__stats_free(&F.srv.stats);
  tu_rpc_close(&F.peer);
}

/* params: a writer callback, or NULL for nil. */
typedef void (*params_fn)(dynq__wbuf_t *w);

/* Dispatch one request as the transport would; DYNQD_WAIT or 0. */
static int call(uint32_t msgid, const char *method, params_fn params) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_array(&w, 4);
  dynq__w_int(&w, 0);
  dynq__w_uint(&w, msgid);
  dynq__w_str(&w, method);
  if (params)
    params(&w);
  else
    dynq__w_nil(&w);
  ck_assert_int_eq(w.err, 0);
  dynq__rpc_msg_t m;
  memset(&m, 0, sizeof(m));
  int64_t hint;
  char err[256];
  ck_assert_int_eq(dynq__rpc_parse(w.data, w.len, &m, &hint, err, sizeof(err)), 0);
  int rc = dynqd__dispatch(&F.srv, F.conn, &m);
  dynqd__conn_flush_output(&F.srv);  /* what the loop does before it polls */
  dynq__rpc_free(&m);
  dynq__wbuf_free(&w);
  return rc;
}

static void p_nil(dynq__wbuf_t *w) { dynq__w_nil(w); }
static void p_empty_map(dynq__wbuf_t *w) { dynq__w_map(w, 0); }
static void p_empty_array(dynq__wbuf_t *w) { dynq__w_array(w, 0); }
static void p_array_map(dynq__wbuf_t *w) {
  dynq__w_array(w, 1);
  dynq__w_map(w, 0);
}
static void p_string(dynq__wbuf_t *w) { dynq__w_str(w, "x"); }
static void p_int(dynq__wbuf_t *w) { dynq__w_int(w, 7); }
static void p_two_maps(dynq__wbuf_t *w) {
  dynq__w_array(w, 2);
  dynq__w_map(w, 0);
  dynq__w_map(w, 0);
}
static void p_array_int(dynq__wbuf_t *w) {
  dynq__w_array(w, 1);
  dynq__w_int(w, 1);
}
static void p_model_x(dynq__wbuf_t *w) {
  dynq__w_array(w, 1);  /* [map] form */
  dynq__w_map(w, 1);
  dynq__w_str(w, "model");
  dynq__w_str(w, "x");
}

START_TEST(test_map_rule_accepts) {
  params_fn ok[] = {NULL, p_nil, p_empty_map, p_empty_array, p_array_map};
  for (uint32_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    ck_assert_int_eq(call(10 + i, "ping", ok[i]), 0);
    tu_rpc_expect_pong(&F.peer, 10 + i);
  }
  /* [map] reaches the handler as the map: params.model is seen */
  ck_assert_int_eq(call(20, "model.info", p_model_x), 0);
  tu_rpc_expect_error(&F.peer, 20, DYNQ_ENOMODEL, "no model named 'x'");
}
END_TEST

START_TEST(test_map_rule_refuses) {
  /* Every method that looks at params refuses the same shapes, with the
   * same words, before its handler runs. */
  params_fn bad[] = {p_string, p_int, p_two_maps, p_array_int};
  const char *what[] = {"got a string", "got an integer", "got an array", "got an array"};
  int n = 0;
  const dynqd_method_t *ms = dynqd__methods(&n);
  ck_assert_int_eq(n, DYNQ_M__COUNT);
  uint32_t id = 100;
  for (int k = 0; k < n; k++) {
    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++, id++) {
      ck_assert_int_eq(call(id, ms[k].name, bad[b]), 0);
      if (ms[k].flags & DYNQD_M_ANY_PARAMS) {
        dynq__rpc_msg_t m;
        tu_rpc_expect_ok(&F.peer, id, &m);
        dynq__rpc_free(&m);
      } else {
        char needle[128];
        snprintf(needle, sizeof(needle), "%s: params must be a map", ms[k].name);
        tu_rpc_expect_error(&F.peer, id, DYNQ_EPARAMS, needle);
        (void)what;
      }
    }
  }
}
END_TEST

START_TEST(test_admin_gating) {
  int n = 0;
  const dynqd_method_t *ms = dynqd__methods(&n);
  int admins = 0;
  F.refuse_admin = 1;
  for (int k = 0; k < n; k++) {
    g_admin_calls = 0;
    /* bad params too: the admin check comes first */
    ck_assert_int_eq(call(200 + (uint32_t)k, ms[k].name, p_string), 0);
    if (ms[k].flags & DYNQD_M_ADMIN) {
      admins++;
      ck_assert_int_eq(g_admin_calls, 1);
      char needle[128];
      snprintf(needle, sizeof(needle), "%s is an admin method: peer uid 4242", ms[k].name);
      tu_rpc_expect_error(&F.peer, 200 + (uint32_t)k, DYNQ_EDENIED, needle);
    } else {
      ck_assert_msg(g_admin_calls == 0, "%s asked for admin rights", ms[k].name);
      dynq__rpc_msg_t m;
      char msg[256];
      int rc = tu_rpc_response(&F.peer, &m, 200 + (uint32_t)k, msg, sizeof(msg));
      dynq__rpc_free(&m);
      ck_assert_msg(rc != DYNQ_EDENIED, "%s refused as admin-only: %s", ms[k].name, msg);
    }
  }
  ck_assert_int_eq(admins, 3);  /* model.load, model.unload, model.reload */
  ck_assert(dynqd__method_find("model.load")->flags & DYNQD_M_ADMIN);
  ck_assert(!(dynqd__method_find("infer")->flags & DYNQD_M_ADMIN));
  /* allowed: reaches the handler, which judges the params */
  F.refuse_admin = 0;
  ck_assert_int_eq(call(300, "model.unload", p_model_x), 0);
  tu_rpc_expect_error(&F.peer, 300, DYNQ_ENOMODEL, "model.unload: no model named 'x'");
}
END_TEST

START_TEST(test_unknown_method) {
  ck_assert_int_eq(call(400, "nosuch.method", NULL), 0);
  tu_rpc_expect_error(&F.peer, 400, DYNQ_ENOMETHOD, "unknown method 'nosuch.method'");
  ck_assert_ptr_null(dynqd__method_find("nosuch.method"));
}
END_TEST

START_TEST(test_startup_waits) {
  /* While start-up loads run, only live methods are answered; the rest
   * stay buffered (DYNQD_WAIT) and are answered when loads finish. */
  F.srv.starting = 1;
  int n = 0;
  const dynqd_method_t *ms = dynqd__methods(&n);
  for (int k = 0; k < n; k++) {
    int rc = call(500 + (uint32_t)k, ms[k].name, p_nil);
    if (ms[k].flags & DYNQD_M_LIVE) {
      ck_assert_int_eq(rc, 0);
      dynq__rpc_msg_t m;
      char msg[256];
      tu_rpc_response(&F.peer, &m, 500 + (uint32_t)k, msg, sizeof(msg));
      dynq__rpc_free(&m);
    } else {
      ck_assert_msg(rc == DYNQD_WAIT, "%s answered during start-up", ms[k].name);
    }
  }
  ck_assert(dynqd__method_find("ping")->flags & DYNQD_M_LIVE);
  ck_assert(dynqd__method_find("health.live")->flags & DYNQD_M_LIVE);
  ck_assert(!(dynqd__method_find("infer")->flags & DYNQD_M_LIVE));
  F.srv.starting = 0;
}
END_TEST

START_TEST(test_health_ready_starting) {
  F.srv.starting = 1;
  ck_assert_int_eq(call(600, "health.ready", NULL), 0);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(&F.peer, 600, &m);
  int ready = 1;
  ck_assert_int_eq(dynq__obj_bool(dynq__obj_get(m.result, "ready"), &ready), 0);
  ck_assert_int_eq(ready, 0);
  char reason[64];
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(m.result, "reason"), reason, sizeof(reason)),
                   0);
  ck_assert_str_eq(reason, "starting: loading models");
  dynq__rpc_free(&m);
  F.srv.starting = 0;
}
END_TEST

int main(void) {
  dynqd__log_init(2);  /* quiet */
  const char *kmsg = NULL;
  if (dynq__kernels_init(NULL, &kmsg) != 0) return 1;  /* server.info names it */
  Suite *s = suite_create("dispatch");
  TCase *tc = tcase_create("method table");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_map_rule_accepts);
  tcase_add_test(tc, test_map_rule_refuses);
  tcase_add_test(tc, test_admin_gating);
  tcase_add_test(tc, test_unknown_method);
  tcase_add_test(tc, test_startup_waits);
  tcase_add_test(tc, test_health_ready_starting);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
