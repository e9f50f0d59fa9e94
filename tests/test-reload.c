/*
 * Model lifecycle under load: bench/loadgen keeps several connections
 * busy while the test swaps mlp.dynq between two quantized versions
 * (per-row and per-tensor activation scales: different answers) by
 * rename, and reloads through model.reload and SIGHUP, once onto a
 * corrupted file.  Every answer loadgen gets must equal one version's
 * output exactly.  Also: paths confined to the model directory, versions
 * (name@N), load/unload, and admin checks against a non-admin peer.
 *
 * Loads at start-up and on SIGHUP run off the loop: a ping sent while a
 * model with a long warm-up (tests/fixtures/slow_warm.onnx) loads is
 * answered before READY=1, and a model whose input declares a huge fixed
 * dimension (huge_input.onnx) is refused or served unwarmed without dynqd
 * allocating its warm-up input.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dynq/dynqclient.h"
#include "dynq/errors.h"
#include "testutil.h"

static float g_x[16 * 64];

typedef struct env {
  char *dir;
  char models[512], a[600], b[600], bad[600], live[600];
  tu_notify_t ns;
  tu_daemon_t d;
} env_t;

/* dir/{A,B,corrupt}.dynq, dir/models/mlp.dynq = A, daemon started and READY. */
static int env_start(env_t *e, const char *const *extra) {
  memset(e, 0, sizeof(*e));
  e->dir = tu_mkdtemp();
  snprintf(e->models, sizeof(e->models), "%s/models", e->dir);
  ck_assert_int_eq(mkdir(e->models, 0755), 0);
  snprintf(e->a, sizeof(e->a), "%s/A.dynq", e->dir);
  snprintf(e->b, sizeof(e->b), "%s/B.dynq", e->dir);
  snprintf(e->bad, sizeof(e->bad), "%s/corrupt.dynq", e->dir);
  snprintf(e->live, sizeof(e->live), "%s/mlp.dynq", e->models);
  if (access(tu_build("models/dynq-quantize"), X_OK) != 0) {
    fprintf(stderr, "SKIP: models/dynq-quantize is not built\n");
    tu_rmtree(e->dir);
    free(e->dir);
    return -1;
  }
  ck_assert_int_eq(tu_quantize("tests/fixtures/mlp.onnx", e->a, NULL), 0);
  ck_assert_int_eq(tu_quantize("tests/fixtures/mlp.onnx", e->b, "--act-per-tensor", NULL), 0);
  size_t n = 0;
  unsigned char *p = tu_read_file(e->a, &n);
  ck_assert_ptr_nonnull(p);
  ck_assert_uint_gt(n, 1024);
  for (size_t i = n / 2; i < n / 2 + 64; i++) p[i] ^= 0x5a;  /* checksum must catch it */
  ck_assert_int_eq(tu_write_file(e->bad, p, n), 0);
  free(p);
  tu_swap_file(e->a, e->live, e->models);

  size_t xn = 0;
  void *x = tu_read_file(tu_src("tests/fixtures/mlp_x.f32"), &xn);
  ck_assert_ptr_nonnull(x);
  ck_assert_uint_eq(xn, sizeof(g_x));
  memcpy(g_x, x, xn);
  free(x);

  tu_notify_open(&e->ns, e->dir);
  ck_assert_int_eq(tu_daemon_start(&e->d, e->dir, e->models, extra), 0);
  ck_assert_msg(tu_notify_wait(&e->ns, "READY=1", NULL, 0), "no READY=1 from dynqd");
  return 0;
}

static void env_stop(env_t *e) {
  if (e->d.pid > 0) ck_assert_int_eq(tu_daemon_stop(&e->d, SIGTERM), 0);
  tu_notify_close(&e->ns);
  tu_rmtree(e->dir);
  free(e->dir);
}

static void hup_and_wait(env_t *e) {
  ck_assert_int_eq(kill(e->d.pid, SIGHUP), 0);
  ck_assert_msg(tu_notify_wait(&e->ns, "RELOADING=1", NULL, 0), "no RELOADING=1");
  ck_assert_msg(tu_notify_wait(&e->ns, "READY=1", NULL, 0), "no READY=1 after SIGHUP");
}

static void expect_answer(env_t *e, const char *model, const void *want, size_t wn) {
  void *out = NULL;
  size_t on = 0;
  char msg[512];
  int rc = tu_infer_mlp(e->d.sock, model, g_x, 16, &out, &on, msg, sizeof(msg));
  ck_assert_msg(rc == 0, "infer %s: %s: %s", model, dynq_err_name(rc), msg);
  ck_assert_uint_eq(on, wn);
  ck_assert_msg(memcmp(out, want, wn) == 0, "infer %s: answer is not the expected version",
                model);
  free(out);
}

START_TEST(test_reload_under_load) {
  env_t e;
  if (env_start(&e, NULL) != 0) return;
  char msg[512];
  void *ans_a = NULL, *ans_b = NULL;
  size_t na = 0, nb = 0;
  ck_assert_int_eq(tu_infer_mlp(e.d.sock, "mlp", g_x, 16, &ans_a, &na, msg, sizeof(msg)), 0);
  tu_swap_file(e.b, e.live, e.models);
  int ver = 0;
  ck_assert_int_eq(tu_admin_call(e.d.sock, "model.reload", "mlp", NULL, &ver, msg, sizeof(msg)), 0);
  ck_assert_int_eq(ver, 2);
  ck_assert_int_eq(tu_infer_mlp(e.d.sock, "mlp", g_x, 16, &ans_b, &nb, msg, sizeof(msg)), 0);
  ck_assert_uint_eq(na, nb);
  ck_assert_msg(memcmp(ans_a, ans_b, na) != 0,
                "per-row and per-tensor versions answer identically: the test "
                "could not tell them apart");
  char fa[512], fb[512];
  snprintf(fa, sizeof(fa), "%s/ans_a.f32", e.dir);
  snprintf(fb, sizeof(fb), "%s/ans_b.f32", e.dir);
  ck_assert_int_eq(tu_write_file(fa, ans_a, na), 0);
  ck_assert_int_eq(tu_write_file(fb, ans_b, nb), 0);

  /* loadgen: stdin is our stop switch, stdout tells us it is running. */
  int in_p[2], out_p[2];
  ck_assert_int_eq(pipe(in_p), 0);
  ck_assert_int_eq(pipe(out_p), 0);
  char input[700];
  snprintf(input, sizeof(input), "x:16x64:%s", tu_src("tests/fixtures/mlp_x.f32"));
  char exe[4096];
  snprintf(exe, sizeof(exe), "%s", tu_build("bench/loadgen"));
  pid_t lg = fork();
  ck_assert_int_ge(lg, 0);
  if (lg == 0) {
    dup2(in_p[0], 0);
    dup2(out_p[1], 1);
    close(in_p[1]);
    close(out_p[0]);
    execl(exe, exe, "--socket", e.d.sock, "--model", "mlp", "--input", input,
          "--expect", fa, "--expect", fb, "--threads", "4", (char *)NULL);
    _exit(127);
  }
  close(in_p[0]);
  close(out_p[1]);
  FILE *lo = fdopen(out_p[0], "r");
  ck_assert_ptr_nonnull(lo);
  char line[1024] = "";
  ck_assert_ptr_nonnull(fgets(line, sizeof(line), lo));
  ck_assert_str_eq(line, "started\n");

  /* Swap back and forth by both routes while loadgen runs. */
  const void *cur = ans_b;
  for (int i = 0; i < 20; i++) {
    int to_a = i % 2 == 0;
    tu_swap_file(to_a ? e.a : e.b, e.live, e.models);
    if (i % 4 < 2) {
      ck_assert_int_eq(tu_admin_call(e.d.sock, "model.reload", "mlp", NULL, &ver, msg,
                                  sizeof(msg)), 0);
      ck_assert_int_eq(ver, 3 + i);
    } else {
      hup_and_wait(&e);
    }
    cur = to_a ? ans_a : ans_b;
    expect_answer(&e, "mlp", cur, na);
  }
  /* 20 swaps from version 2: now 22, answering B. */
  expect_answer(&e, "mlp@22", ans_b, nb);

  /* A corrupted file is refused by both routes; the old version serves. */
  tu_swap_file(e.bad, e.live, e.models);
  int rc = tu_admin_call(e.d.sock, "model.reload", "mlp", NULL, &ver, msg, sizeof(msg));
  ck_assert_msg(rc == DYNQ_ECHECKSUM || rc == DYNQ_EFORMAT,
                "reload of a corrupted file: %s (%s)", dynq_err_name(rc), msg);
  ck_assert_msg(strstr(msg, "mlp") != NULL, "error does not name the model: %s", msg);
  expect_answer(&e, "mlp", ans_b, nb);
  hup_and_wait(&e);
  expect_answer(&e, "mlp@22", ans_b, nb);
  ck_assert(tu_file_contains(e.d.log, "cannot reload model file"));
  /* And a good file afterwards is taken again. */
  tu_swap_file(e.a, e.live, e.models);
  ck_assert_int_eq(tu_admin_call(e.d.sock, "model.reload", "mlp", NULL, &ver, msg, sizeof(msg)), 0);
  ck_assert_int_eq(ver, 23);
  expect_answer(&e, "mlp", ans_a, na);

  close(in_p[1]);
  ck_assert_ptr_nonnull(fgets(line, sizeof(line), lo));
  fclose(lo);
  int st = 0;
  ck_assert_int_eq(waitpid(lg, &st, 0), lg);
  fprintf(stderr, "loadgen: %s", line);
  ck_assert_msg(strstr(line, "\"wrong\": 0,") && strstr(line, "\"failed\": 0,"),
                "loadgen saw wrong or failed answers: %s", line);
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "loadgen exit %d", st);
  ck_assert_msg(strstr(line, "\"ok\": 0,") == NULL, "loadgen got no answers");
  free(ans_a);
  free(ans_b);
  env_stop(&e);
}
END_TEST

START_TEST(test_load_unload_versions) {
  env_t e;
  if (env_start(&e, NULL) != 0) return;
  char msg[512];
  int ver = 0;
  void *ans = NULL;
  size_t n = 0;
  ck_assert_int_eq(tu_infer_mlp(e.d.sock, "mlp@1", g_x, 16, &ans, &n, msg, sizeof(msg)), 0);
  /* A second name from another file in the directory. */
  char other[600];
  snprintf(other, sizeof(other), "%s/sub", e.models);
  ck_assert_int_eq(mkdir(other, 0755), 0);
  snprintf(other, sizeof(other), "%s/sub/two.dynq", e.models);
  tu_swap_file(e.a, other, e.models);
  ck_assert_int_eq(tu_admin_call(e.d.sock, "model.load", "two", "sub/two.dynq", &ver, msg,
                              sizeof(msg)), 0);
  ck_assert_int_eq(ver, 1);
  expect_answer(&e, "two", ans, n);
  /* Loading an existing name again is a new version of it. */
  ck_assert_int_eq(tu_admin_call(e.d.sock, "model.load", "two", "sub/two.dynq", &ver, msg,
                              sizeof(msg)), 0);
  ck_assert_int_eq(ver, 2);
  void *o = NULL;
  size_t on = 0;
  int rc = tu_infer_mlp(e.d.sock, "two@1", g_x, 16, &o, &on, msg, sizeof(msg));
  ck_assert_int_eq(rc, DYNQ_ENOMODEL);
  expect_answer(&e, "two@2", ans, n);
  /* A rescan keeps a model loaded from a subdirectory. */
  hup_and_wait(&e);
  expect_answer(&e, "two@2", ans, n);
  /* Bad versions and names. */
  ck_assert_int_eq(tu_infer_mlp(e.d.sock, "mlp@0", g_x, 16, &o, &on, msg, sizeof(msg)), DYNQ_ENOMODEL);
  ck_assert_int_eq(tu_infer_mlp(e.d.sock, "mlp@x", g_x, 16, &o, &on, msg, sizeof(msg)), DYNQ_ENOMODEL);
  ck_assert_int_eq(tu_admin_call(e.d.sock, "model.load", "../x", NULL, &ver, msg, sizeof(msg)),
                   DYNQ_EPARAMS);
  ck_assert_int_eq(tu_admin_call(e.d.sock, "model.load", "nofile", NULL, &ver, msg, sizeof(msg)),
                   -ENOENT);
  ck_assert_msg(strstr(msg, "nofile.dynq") != NULL, "message: %s", msg);
  ck_assert_int_eq(tu_admin_call(e.d.sock, "model.reload", "nosuch", NULL, &ver, msg, sizeof(msg)),
                   DYNQ_ENOMODEL);
  /* Unload: gone for new requests; unloading again is ENOMODEL. */
  ck_assert_int_eq(tu_admin_call(e.d.sock, "model.unload", "two", NULL, NULL, msg, sizeof(msg)), 0);
  ck_assert_int_eq(tu_infer_mlp(e.d.sock, "two", g_x, 16, &o, &on, msg, sizeof(msg)), DYNQ_ENOMODEL);
  ck_assert_int_eq(tu_admin_call(e.d.sock, "model.unload", "two", NULL, NULL, msg, sizeof(msg)),
                   DYNQ_ENOMODEL);
  /* SIGHUP: a removed file unloads, a new file loads. */
  char newf[600];
  snprintf(newf, sizeof(newf), "%s/fresh.dynq", e.models);
  tu_swap_file(e.b, newf, e.models);
  ck_assert_int_eq(unlink(e.live), 0);
  hup_and_wait(&e);
  ck_assert_int_eq(tu_infer_mlp(e.d.sock, "mlp", g_x, 16, &o, &on, msg, sizeof(msg)), DYNQ_ENOMODEL);
  ck_assert_int_eq(tu_infer_mlp(e.d.sock, "fresh@1", g_x, 16, &o, &on, msg, sizeof(msg)), 0);
  free(o);
  free(ans);
  env_stop(&e);
}
END_TEST

/* One connection naming the same model across registry changes: a load
 * that moves the registry's entries, an unload and a load again must each
 * be seen by its next request (dynqd keeps a connection's last model). */
START_TEST(test_same_connection_across_changes) {
  env_t e;
  if (env_start(&e, NULL) != 0) return;
  char msg[512];
  int ver = 0;
  void *ans_a = NULL, *ans_b = NULL, *o = NULL;
  size_t na = 0, nb = 0, on = 0;
  dynq_client_t *c = NULL;
  ck_assert_int_eq(dynq_connect(e.d.sock, &c), 0);
  ck_assert_int_eq(tu_infer_mlp_on(c, "mlp", g_x, 16, &ans_a, &na), 0);
  /* "aaa" (file B) sorts before "mlp": the entries move. */
  char aaa[600];
  snprintf(aaa, sizeof(aaa), "%s/aaa.dynq", e.models);
  tu_swap_file(e.b, aaa, e.models);
  ck_assert_int_eq(tu_admin_call(e.d.sock, "model.load", "aaa", NULL, &ver, msg, sizeof(msg)), 0);
  ck_assert_int_eq(tu_infer_mlp_on(c, "aaa", g_x, 16, &ans_b, &nb), 0);
  ck_assert_uint_eq(nb, na);
  ck_assert_msg(memcmp(ans_a, ans_b, na) != 0, "A and B must answer differently");
  for (int k = 0; k < 2; k++) {
    ck_assert_int_eq(tu_infer_mlp_on(c, "mlp", g_x, 16, &o, &on), 0);
    ck_assert_msg(on == na && memcmp(o, ans_a, na) == 0, "mlp answered as another model");
    free(o);
    ck_assert_int_eq(tu_infer_mlp_on(c, "aaa", g_x, 16, &o, &on), 0);
    ck_assert_msg(on == nb && memcmp(o, ans_b, nb) == 0, "aaa answered as another model");
    free(o);
  }
  ck_assert_int_eq(tu_infer_mlp_on(c, "mlp", g_x, 16, &o, &on), 0);
  free(o);
  ck_assert_int_eq(tu_admin_call(e.d.sock, "model.unload", "mlp", NULL, NULL, msg, sizeof(msg)), 0);
  ck_assert_int_eq(tu_infer_mlp_on(c, "mlp", g_x, 16, &o, &on), DYNQ_ENOMODEL);
  ck_assert_int_eq(tu_infer_mlp_on(c, "aaa", g_x, 16, &o, &on), 0);
  ck_assert_msg(on == nb && memcmp(o, ans_b, nb) == 0, "aaa answered as another model");
  free(o);
  ck_assert_int_eq(tu_admin_call(e.d.sock, "model.load", "mlp", NULL, &ver, msg, sizeof(msg)), 0);
  ck_assert_int_eq(tu_infer_mlp_on(c, "mlp", g_x, 16, &o, &on), 0);
  ck_assert_msg(on == na && memcmp(o, ans_a, na) == 0, "mlp answered as another model");
  free(o);
  dynq_close(c);
  free(ans_a);
  free(ans_b);
  env_stop(&e);
}
END_TEST

/* [0, id, method, {model[, path]}] */
static void w_admin(dynq__wbuf_t *w, uint32_t id, const char *method, const char *model,
                    const char *path) {
  dynq__w_request_head(w, id, method);
  dynq__w_map(w, path ? 2 : 1);
  dynq__w_str(w, "model");
  dynq__w_str(w, model);
  if (path) {
    dynq__w_str(w, "path");
    dynq__w_str(w, path);
  }
}


/* model.load / model.reload open and warm the file off the loop but hold
 * back the frames after them on their connection: pipelined behind a
 * load, an infer sees the model it made (it would be ENOMODEL if read
 * first), a failed load changes nothing.  Another connection is answered
 * meanwhile.  (Answers may come in any order, as always.) */
START_TEST(test_pipelined_loads_in_order) {
  env_t e;
  if (env_start(&e, NULL) != 0) return;
  char sub[600], two[600], bad[600];
  snprintf(sub, sizeof(sub), "%s/sub", e.models);
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  snprintf(two, sizeof(two), "%s/sub/two.dynq", e.models);
  snprintf(bad, sizeof(bad), "%s/sub/bad.dynq", e.models);
  tu_swap_file(e.a, two, e.models);
  tu_swap_file(e.bad, bad, e.models);

  tu_rpc_t c, c2;
  tu_rpc_open(&c, e.d.sock);
  tu_rpc_open(&c2, e.d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  w_admin(&w, 1, "model.load", "two", "sub/two.dynq");
  tu_w_infer_f32(&w, 2, "two", "x", 16, 64, g_x, -1);
  w_admin(&w, 3, "model.load", "two", "sub/bad.dynq");  /* corrupt: refused */
  tu_w_infer_f32(&w, 4, "two@1", "x", 16, 64, g_x, -1);  /* still version 1 */
  w_admin(&w, 5, "model.reload", "two", NULL);
  tu_w_infer_f32(&w, 6, "two@2", "x", 16, 64, g_x, -1);
  tu_rpc_send_wbuf(&c, &w);  /* all six in one write */
  tu_rpc_ping_ok(&c2, 100);

  for (uint32_t id = 1; id <= 6; id++) {
    dynq__rpc_msg_t m;
    char msg[512];
    int rc = tu_rpc_response(&c, &m, id, msg, sizeof(msg));
    if (id == 3) {
      ck_assert_msg(rc != 0, "loading a corrupt file succeeded");
    } else {
      ck_assert_msg(rc == 0, "request %u failed: %s", id, msg);
      if (id == 1 || id == 5)
        ck_assert_int_eq(tu_obj_int_or(dynq__obj_get(m.result, "version"), -1), id == 1 ? 1 : 2);
    }
    dynq__rpc_free(&m);
  }
  tu_rpc_ping_ok(&c2, 101);
  tu_rpc_close(&c2);
  tu_rpc_close(&c);
  env_stop(&e);
}
END_TEST

START_TEST(test_paths_confined) {
  env_t e;
  if (env_start(&e, NULL) != 0) return;
  char msg[512];
  int ver;
  const char *bad_paths[] = {"/etc/passwd", "../A.dynq", "sub/../../A.dynq", "..", NULL};
  for (int i = 0; bad_paths[i]; i++) {
    int rc = tu_admin_call(e.d.sock, "model.load", "evil", bad_paths[i], &ver, msg, sizeof(msg));
    ck_assert_msg(rc == DYNQ_EDENIED, "path %s: %s (%s)", bad_paths[i], dynq_err_name(rc), msg);
  }
  /* A symlink escaping the directory, by explicit path and by name. */
  char link[600];
  snprintf(link, sizeof(link), "%s/escape.dynq", e.models);
  ck_assert_int_eq(symlink(e.a, link), 0);
  int rc = tu_admin_call(e.d.sock, "model.load", "escape", NULL, &ver, msg, sizeof(msg));
  ck_assert_msg(rc == DYNQ_EDENIED, "symlink out: %s (%s)", dynq_err_name(rc), msg);
  ck_assert_msg(strstr(msg, "outside the model directory") != NULL, "message: %s", msg);
  /* ... and the rescan does not pick it up either. */
  hup_and_wait(&e);
  void *o = NULL;
  size_t on = 0;
  ck_assert_int_eq(tu_infer_mlp(e.d.sock, "escape", g_x, 16, &o, &on, msg, sizeof(msg)),
                   DYNQ_ENOMODEL);
  /* A symlink that stays inside is fine. */
  snprintf(link, sizeof(link), "%s/alias.dynq", e.models);
  ck_assert_int_eq(symlink("mlp.dynq", link), 0);
  ck_assert_int_eq(tu_admin_call(e.d.sock, "model.load", "alias", NULL, &ver, msg, sizeof(msg)), 0);
  ck_assert_int_eq(ver, 1);
  ck_assert_int_eq(tu_infer_mlp(e.d.sock, "alias", g_x, 16, &o, &on, msg, sizeof(msg)), 0);
  free(o);
  env_stop(&e);
}
END_TEST

/* Run `method` for model mlp as uid/gid 65534 in a child; returns the
 * call's result code (or 1000 + a setup failure step). */
static int call_as_nobody(const char *sock, const char *method) {
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    if (setgroups(0, NULL) != 0) _exit(101);
    if (setgid(65534) != 0) _exit(102);
    if (setuid(65534) != 0) _exit(103);
    char msg[512];
    int ver;
    int rc = tu_admin_call(sock, method, "mlp", NULL, &ver, msg, sizeof(msg));
    if (rc == DYNQ_EDENIED && strstr(msg, "admin") == NULL) _exit(104);
    _exit(rc == 0 ? 0 : rc == DYNQ_EDENIED ? 1 : rc == DYNQ_ENOMODEL ? 2 : 3);
  }
  int st = 0;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert(WIFEXITED(st));
  return WEXITSTATUS(st);
}

START_TEST(test_non_admin_refused) {
  if (getuid() != 0) {
    fprintf(stderr, "SKIP %s: needs root to run a client as another uid\n", __func__);
    return;
  }
  struct group *g = getgrgid(65534);
  if (g == NULL) {
    fprintf(stderr, "SKIP %s: no group 65534 on this system\n", __func__);
    return;
  }
  char gname[64];
  snprintf(gname, sizeof(gname), "%s", g->gr_name);
  env_t e;
  char conf[600];
  /* The config file is read at start and on SIGHUP. */
  char *tmpd = tu_mkdtemp();
  snprintf(conf, sizeof(conf), "%s/dynqd.conf", tmpd);
  ck_assert_int_eq(tu_write_file(conf, "log_level = info\n", 17), 0);
  const char *extra[] = {"--config", conf, NULL};
  if (env_start(&e, extra) != 0) {
    tu_rmtree(tmpd);
    free(tmpd);
    return;
  }
  /* Let uid 65534 reach the socket at all (dynqd makes it 0660). */
  ck_assert_int_eq(chmod(e.dir, 0755), 0);
  ck_assert_int_eq(chmod(e.d.sock, 0666), 0);
  ck_assert_int_eq(call_as_nobody(e.d.sock, "model.reload"), 1);
  ck_assert_int_eq(call_as_nobody(e.d.sock, "model.unload"), 1);
  ck_assert_int_eq(call_as_nobody(e.d.sock, "model.load"), 1);
  ck_assert(tu_file_contains(e.d.log, "refused"));
  /* Model still there. */
  char msg[512];
  void *o = NULL;
  size_t on = 0;
  ck_assert_int_eq(tu_infer_mlp(e.d.sock, "mlp@1", g_x, 16, &o, &on, msg, sizeof(msg)), 0);
  free(o);
  /* admin_group (reloadable) lets the group in. */
  char text[256];
  int tn = snprintf(text, sizeof(text), "log_level = info\nadmin_group = %s\n", gname);
  ck_assert_int_eq(tu_write_file(conf, text, (size_t)tn), 0);
  hup_and_wait(&e);
  ck_assert_int_eq(call_as_nobody(e.d.sock, "model.reload"), 0);
  ck_assert_int_eq(tu_infer_mlp(e.d.sock, "mlp@2", g_x, 16, &o, &on, msg, sizeof(msg)), 0);
  free(o);
  env_stop(&e);
  tu_rmtree(tmpd);
  free(tmpd);
}
END_TEST

/* Whether a datagram holding the line `want` is queued right now (reads,
 * never waits). */
static int notify_now(tu_notify_t *n, const char *want) {
  char buf[1024];
  ssize_t got;
  int hit = 0;
  while ((got = recv(n->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) > 0) {
    buf[got] = '\0';
    for (char *line = buf; line && *line;) {
      char *nl = strchr(line, '\n');
      if (nl) *nl = '\0';
      hit |= strcmp(line, want) == 0;
      line = nl ? nl + 1 : NULL;
    }
  }
  return hit;
}

static long rss_kib(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  long kib = -1;
  while (f && fgets(line, sizeof(line), f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  if (f) fclose(f);
  return kib;
}

static int model_listed(const char *sock, const char *name) {
  tu_rpc_t c;
  tu_rpc_open(&c, sock);
  tu_rpc_call0(&c, 90, "models.list");
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(&c, 90, &m);
  int found = 0;
  for (uint32_t i = 0; i < dynq__obj_len(m.result); i++) {
    char n[64];
    dynq__obj_t e = dynq__obj_at(m.result, i);
    int64_t ver = 0;
    if (dynq__obj_strcpy(dynq__obj_get(e, "name"), n, sizeof(n)) == 0 && strcmp(n, name) == 0) {
      found = 1;
      ck_assert_int_eq(dynq__obj_int(dynq__obj_get(e, "version"), &ver), 0);
      ck_assert_int_ge(ver, 1);
    }
  }
  dynq__rpc_free(&m);
  tu_rpc_close(&c);
  return found;
}

/* A ping answered now, on a fresh connection. */
static void ping_now(const char *sock) {
  tu_rpc_t c;
  tu_rpc_open(&c, sock);
  tu_rpc_call0(&c, 91, "ping");
  tu_rpc_expect_pong(&c, 91);
  tu_rpc_close(&c);
}

START_TEST(test_hup_loads_off_the_loop) {
  env_t e;
  if (env_start(&e, NULL) != 0) return;
  char slow[700], tmp[700];
  snprintf(tmp, sizeof(tmp), "%s/slow_warm.dynq", e.dir);
  snprintf(slow, sizeof(slow), "%s/slow_warm.dynq", e.models);
  ck_assert_int_eq(tu_quantize("tests/fixtures/slow_warm.onnx", tmp, "--no-reference", NULL), 0);
  tu_swap_file(tmp, slow, e.models);
  ck_assert_int_eq(kill(e.d.pid, SIGHUP), 0);
  ck_assert_msg(tu_notify_wait(&e.ns, "RELOADING=1", NULL, 0), "no RELOADING=1");
  /* Its warm-up runs 4096 rows through 48 layers: the loop answers
   * meanwhile, so the pong comes before the rescan's READY=1.  (Loading
   * on the loop, READY=1 was sent before the ping was even read.) */
  ping_now(e.d.sock);
  ck_assert_msg(!notify_now(&e.ns, "READY=1"), "READY=1 came before the ping was answered: "
                "the SIGHUP load ran on the loop");
  ck_assert_msg(tu_notify_wait(&e.ns, "READY=1", NULL, 0), "no READY=1 after the rescan");
  ck_assert(model_listed(e.d.sock, "slow_warm"));
  ck_assert(model_listed(e.d.sock, "mlp"));
  env_stop(&e);
}
END_TEST

START_TEST(test_startup_loads_off_the_loop) {
  if (access(tu_build("models/dynq-quantize"), X_OK) != 0) return;
  char *dir = tu_mkdtemp();
  char models[512], p[700];
  snprintf(models, sizeof(models), "%s/models", dir);
  ck_assert_int_eq(mkdir(models, 0755), 0);
  snprintf(p, sizeof(p), "%s/slow_warm.dynq", models);
  ck_assert_int_eq(tu_quantize("tests/fixtures/slow_warm.onnx", p, "--no-reference", NULL), 0);
  snprintf(p, sizeof(p), "%s/mlp.dynq", models);
  ck_assert_int_eq(tu_quantize("tests/fixtures/mlp.onnx", p, NULL), 0);
  size_t xn = 0;
  void *x = tu_read_file(tu_src("tests/fixtures/mlp_x.f32"), &xn);
  ck_assert_ptr_nonnull(x);
  memcpy(g_x, x, xn);
  free(x);
  tu_notify_t ns;
  tu_notify_open(&ns, dir);
  tu_daemon_t d;
  ck_assert_int_eq(tu_daemon_start(&d, dir, models, NULL), 0);
  /* The socket accepts at once; ping is answered while the models load. */
  ping_now(d.sock);
  ck_assert_msg(!notify_now(&ns, "READY=1"), "READY=1 came before the ping was answered: "
                "start-up loads ran on the loop");
  /* An infer sent during the loads waits for them, as if they had been
   * loaded before listening. */
  void *out = NULL;
  size_t on = 0;
  char msg[512];
  int rc = tu_infer_mlp(d.sock, "mlp", g_x, 16, &out, &on, msg, sizeof(msg));
  ck_assert_msg(rc == 0, "infer during start-up: %s: %s", dynq_err_name(rc), msg);
  free(out);
  ck_assert(tu_notify_wait(&ns, "READY=1", NULL, 0));
  ck_assert(model_listed(d.sock, "slow_warm"));
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  tu_notify_close(&ns);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

START_TEST(test_warmup_bounds) {
  if (access(tu_build("models/dynq-quantize"), X_OK) != 0) return;
  char *dir = tu_mkdtemp();
  char models[512], p[700];
  snprintf(models, sizeof(models), "%s/models", dir);
  ck_assert_int_eq(mkdir(models, 0755), 0);
  snprintf(p, sizeof(p), "%s/huge.dynq", models);
  ck_assert_int_eq(tu_quantize("tests/fixtures/huge_input.onnx", p, NULL), 0);
  snprintf(p, sizeof(p), "%s/mlp.dynq", models);
  ck_assert_int_eq(tu_quantize("tests/fixtures/mlp.onnx", p, NULL), 0);
  tu_notify_t ns;
  tu_notify_open(&ns, dir);

  /* Within max_tensor_elems (1 Gi elements < 2G) but 4 GiB of warm-up
   * input: served without warm-up, nothing allocated for it. */
  tu_daemon_t d;
  ck_assert_int_eq(tu_daemon_start(&d, dir, models, NULL), 0);
  ck_assert(tu_notify_wait(&ns, "READY=1", NULL, 0));
  ping_now(d.sock);
  ck_assert(model_listed(d.sock, "huge"));
  ck_assert(model_listed(d.sock, "mlp"));
  long kib = rss_kib(d.pid);
  ck_assert_msg(kib > 0 && kib < 512 * 1024, "dynqd RSS %ld KiB after loading", kib);
  ck_assert(tu_file_contains(d.log, "model 'huge': its warm-up inputs would take 4294967296 bytes"));
  ck_assert(tu_file_contains(d.log, "serving it without warm-up"));
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);

  /* Above max_tensor_elems: no request could ever be sent to it: refused
   * at load, the other model serves. */
  const char *small[] = {"--max-tensor-elems", "1000000", NULL};
  ck_assert_int_eq(tu_daemon_start(&d, dir, models, small), 0);
  ck_assert(tu_notify_wait(&ns, "READY=1", NULL, 0));
  ck_assert(!model_listed(d.sock, "huge"));
  ck_assert(model_listed(d.sock, "mlp"));
  ck_assert(tu_file_contains(d.log, "input 'x' declares 1073741824 elements, more than "
                             "max_tensor_elems (1000000)"));
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  tu_notify_close(&ns);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

static Suite *reload_suite(void) {
  Suite *s = suite_create("reload");
  TCase *tc = tcase_create("lifecycle");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_reload_under_load);
  tcase_add_test(tc, test_load_unload_versions);
  tcase_add_test(tc, test_same_connection_across_changes);
  tcase_add_test(tc, test_pipelined_loads_in_order);
  tcase_add_test(tc, test_paths_confined);
  tcase_add_test(tc, test_non_admin_refused);
  tcase_add_test(tc, test_hup_loads_off_the_loop);
  tcase_add_test(tc, test_startup_loads_off_the_loop);
  tcase_add_test(tc, test_warmup_bounds);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  return tu_run_suite(reload_suite()) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
