/*
 * The round-trip latency knobs: libdynqclient's busy-poll before
 * blocking (dynq_client_set_spin, $DYNQ_CLIENT_SPIN_US) and dynqd's loop
 * spin (--loop-spin / loop_spin_us).  What is checked is behaviour, never
 * speed: bad values are refused with a message, answers are the same bits
 * with every combination on or off, the client's budget backs off against
 * a slow server and comes back for a fast one, EOF during a spin is
 * reported, and a spinning dynqd uses ~no CPU once its clients are quiet.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/client-internal.h"
#include "dynq/dynqclient.h"
#include "dynq/errors.h"
#include "testutil.h"

/* ---- a fake server answering ping after a set delay ---- */

typedef struct fake {
  char *dir;
  char path[512];
  int lfd;
  pthread_t th;
  int delay_us;          /* before each answer; the test changes it between calls */
  int hang_up;           /* read one request, then close without answering */
} fake_t;

static void sleep_us(int us) {
  struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int fake_answer(void *ctx, int fd, const dynq__rpc_msg_t *m) {
  fake_t *f = ctx;
  if (f->hang_up) return 1;
  sleep_us(__atomic_load_n(&f->delay_us, __ATOMIC_ACQUIRE));
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, m->msgid);
  dynq__w_str(&w, "pong");
  tu_send_wbuf(fd, &w);
  return 0;
}

static void *fake_main(void *arg) {
  fake_t *f = arg;
  tu_fake_serve(f->lfd, fake_answer, f);
  return NULL;
}

static void fake_start(fake_t *f, int delay_us, int hang_up) {
  memset(f, 0, sizeof(*f));
  f->dir = tu_mkdtemp();
  snprintf(f->path, sizeof(f->path), "%s/fake.sock", f->dir);
  f->delay_us = delay_us;
  f->hang_up = hang_up;
  f->lfd = tu_listen_unix(f->path, 1);
  ck_assert_int_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake_t *f, dynq_client_t *c) {
  dynq_close(c);  /* the fake's read sees EOF */
  pthread_join(f->th, NULL);
  close(f->lfd);
  tu_rmtree(f->dir);
  free(f->dir);
}

/* ---- the client option ---- */

START_TEST(client_spin_validated) {
  fake_t f;
  dynq_client_t *c = NULL;
  fake_start(&f, 0, 0);
  unsetenv("DYNQ_CLIENT_SPIN_US");
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_client_get_spin(c), DYNQ_CLIENT_SPIN_DEFAULT_US);

  ck_assert_int_eq(dynq_client_set_spin(NULL, 10), -EINVAL);
  ck_assert_int_eq(dynq_client_get_spin(NULL), -EINVAL);
  ck_assert_int_eq(dynq_client_set_spin(c, 40), 0);
  ck_assert_str_eq(dynq_client_errmsg(c), "");
  const int bad[] = {-1, DYNQ_CLIENT_SPIN_MAX_US + 1, -2147483647 - 1, 2147483647};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ck_assert_int_eq(dynq_client_set_spin(c, bad[i]), DYNQ_EPARAMS);
    ck_assert_msg(strstr(dynq_client_errmsg(c), "outside 0..1000") != NULL,
                  "set_spin(%d): message '%s'", bad[i], dynq_client_errmsg(c));
    ck_assert_int_eq(dynq_client_get_spin(c), 40);  /* a refused value changes nothing */
  }
  ck_assert_int_eq(dynq_client_set_spin(c, 0), 0);
  ck_assert_int_eq(dynq_client_get_spin(c), 0);
  ck_assert_int_eq(dynq_client_set_spin(c, DYNQ_CLIENT_SPIN_MAX_US), 0);
  ck_assert_int_eq(dynq_client_get_spin(c), DYNQ_CLIENT_SPIN_MAX_US);
  ck_assert_int_eq(dynq_ping(c), 0);  /* and the connection still works */
  fake_stop(&f, c);
}
END_TEST

/* $DYNQ_CLIENT_SPIN_US: a valid value is taken, anything else leaves the
 * default (connecting must not fail over a typo). */
START_TEST(client_spin_env) {
  static const struct {
    const char *val;
    int want;
  } cases[] = {
    {"25", 25}, {"0", 0}, {"1000", 1000}, {"1001", DYNQ_CLIENT_SPIN_DEFAULT_US},
    {"-3", DYNQ_CLIENT_SPIN_DEFAULT_US}, {"12x", DYNQ_CLIENT_SPIN_DEFAULT_US},
    {"abc", DYNQ_CLIENT_SPIN_DEFAULT_US}, {"", DYNQ_CLIENT_SPIN_DEFAULT_US},
    {"99999999999999999999", DYNQ_CLIENT_SPIN_DEFAULT_US},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    fake_t f;
    dynq_client_t *c = NULL;
    fake_start(&f, 0, 0);
    setenv("DYNQ_CLIENT_SPIN_US", cases[i].val, 1);
    ck_assert_int_eq(dynq_connect(f.path, &c), 0);
    ck_assert_msg(dynq_client_get_spin(c) == cases[i].want, "DYNQ_CLIENT_SPIN_US='%s': %d",
                  cases[i].val, dynq_client_get_spin(c));
    ck_assert_int_eq(dynq_ping(c), 0);
    fake_stop(&f, c);
  }
  unsetenv("DYNQ_CLIENT_SPIN_US");
}
END_TEST

/* Against a server slower than the budget the spin halves down to nothing
 * (the client sleeps in read() like a spin-0 client), and the first answer
 * that comes within the budget restores it. */
START_TEST(client_spin_backs_off_slow_server) {
  fake_t f;
  dynq_client_t *c = NULL;
  fake_start(&f, 3000, 0);  /* 3 ms per answer, 0.2 ms budget */
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_client_set_spin(c, 200), 0);
  ck_assert_int_eq(c->spin_cur_us, 200);
  for (int i = 0; i < 10; i++) ck_assert_int_eq(dynq_ping(c), 0);
  ck_assert_msg(c->spin_cur_us == 0, "budget after 10 slow answers: %d us", c->spin_cur_us);
  /* Probes (a full-budget call now and then at budget 0) back off too. */
  for (int i = 0; i < 3 * 32; i++) ck_assert_int_eq(dynq_ping(c), 0);
  ck_assert_int_eq(c->spin_cur_us, 0);
  ck_assert_int_ge(c->spin_probe_gap, 64);
  ck_assert_int_eq(dynq_client_get_spin(c), 200);  /* the setting itself stays */

  /* The way back needs a blocked wait to finish within 200 us, which a
   * wake-up under valgrind (every thread 20-50x slower) need not do. */
  if (getenv("DYNQ_TEST_VALGRIND") != NULL) {
    fprintf(stderr, "SKIP %s (the rest): a wake-up within 200 us is not to be had under "
            "valgrind\n", __func__);
    fake_stop(&f, c);
    return;
  }
  __atomic_store_n(&f.delay_us, 0, __ATOMIC_RELEASE);
  /* An immediate answer: a blocked wait is a wake-up, normally well under
   * 200 us; allow a few tries on a loaded machine. */
  for (int i = 0; i < 200 && c->spin_cur_us == 0; i++) ck_assert_int_eq(dynq_ping(c), 0);
  ck_assert_int_eq(c->spin_cur_us, 200);
  fake_stop(&f, c);
}
END_TEST

/* The server hangs up while the client spins: reported as a closed
 * connection, as without the spin. */
START_TEST(client_spin_sees_eof) {
  for (int spin = 0; spin <= 1000; spin += 1000) {
    fake_t f;
    dynq_client_t *c = NULL;
    fake_start(&f, 0, 1);
    ck_assert_int_eq(dynq_connect(f.path, &c), 0);
    ck_assert_int_eq(dynq_client_set_spin(c, spin), 0);
    ck_assert_int_eq(dynq_ping(c), DYNQ_ECLOSED);
    ck_assert_msg(strstr(dynq_client_errmsg(c), "closed") != NULL, "spin %d: '%s'", spin,
                  dynq_client_errmsg(c));
    ck_assert_int_eq(dynq_ping(c), DYNQ_ECLOSED);  /* and stays closed */
    fake_stop(&f, c);
  }
}
END_TEST

/* ---- against dynqd ---- */

static char *g_dir, *g_models;
static int g_have_model;
static float g_x[16 * 64];

static void setup(void) {
  char p[700];
  g_dir = tu_mkdtemp_models(&g_models);
  snprintf(p, sizeof(p), "%s/mlp.dynq", g_models);
  g_have_model = access(tu_build("models/dynq-quantize"), X_OK) == 0 &&
                 tu_quantize("tests/fixtures/mlp.onnx", p, NULL) == 0 &&
                 tu_load_f32("tests/fixtures/mlp_x.f32", g_x, 16 * 64) == 0;
}

static void teardown(void) {
  tu_rmtree(g_dir);
  free(g_dir);
  free(g_models);
}

static void start(tu_daemon_t *d, const char *tag, const char *const *extra) {
  char sub[700];
  snprintf(sub, sizeof(sub), "%s/%s", g_dir, tag);
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  ck_assert_msg(tu_daemon_start(d, sub, g_models, extra) == 0, "cannot start %s",
                tu_build("daemon/dynqd"));
}

static void stop(tu_daemon_t *d) {
  int st = tu_daemon_stop(d, SIGTERM);
  ck_assert_msg(st == 0, "dynqd exited with %d (log %s)", st, d->log);
}

/* 16 one-row infers of the mlp fixture through c: y and p into out[i]. */
static void run_rows(dynq_client_t *c, float out[16][20]) {
  ck_assert_int_eq(dynq_ping(c), 0);
  for (int i = 0; i < 16; i++) {
    dynq_tensor_t x;
    dynq_infer_result_t r;
    memset(&x, 0, sizeof(x));
    x.name = "x";
    x.dtype = DYNQ_FLOAT32;
    x.rank = 2;
    x.shape[0] = 1;
    x.shape[1] = 64;
    x.data = g_x + i * 64;
    x.nbytes = 64 * sizeof(float);
    ck_assert_msg(dynq_infer(c, "mlp", DYNQ_INFER_INT8, &x, 1, &r) == 0, "infer: %s",
                  dynq_client_errmsg(c));
    ck_assert_int_eq(r.n_outputs, 2);
    for (int k = 0; k < 2; k++) {
      int off = strcmp(r.outputs[k].name, "y") == 0 ? 0 : 10;
      ck_assert_uint_eq(r.outputs[k].nbytes, 10 * sizeof(float));
      memcpy(out[i] + off, r.outputs[k].data, 10 * sizeof(float));
    }
    dynq_infer_result_free(&r);
  }
  ck_assert_int_eq(dynq_ping(c), 0);
}

START_TEST(spin_same_answers) {
  TU_SKIP_UNLESS(g_have_model, "dynq-quantize or the mlp fixture is missing");
  static float ref[16][20], got[16][20];
  static const int spins[] = {0, 1, 1000};
  tu_daemon_t d;
  const char *plain[] = {"--workers", "2", NULL};
  const char *spinning[] = {"--workers", "2", "--loop-spin", "1000", "--inline-max", "1000",
                            "--loop-spin-busy", "1", NULL};
  int have_ref = 0;
  for (int dm = 0; dm < 2; dm++) {
    start(&d, dm ? "spinning" : "plain", dm ? spinning : plain);
    for (size_t k = 0; k < sizeof(spins) / sizeof(spins[0]); k++) {
      dynq_client_t *c = NULL;
      ck_assert_int_eq(dynq_connect(d.sock, &c), 0);
      ck_assert_int_eq(dynq_client_set_spin(c, spins[k]), 0);
      run_rows(c, have_ref ? got : ref);
      if (have_ref)
        ck_assert_msg(memcmp(ref, got, sizeof(ref)) == 0,
                      "answers differ: dynqd %s, client spin %d", dm ? "spinning" : "plain",
                      spins[k]);
      have_ref = 1;
      /* An untyped call and a server error go through the same wait. */
      void *res = NULL;
      size_t rlen = 0;
      ck_assert_int_eq(dynq_call_raw(c, "ping", NULL, 0, &res, &rlen), 0);
      ck_assert_uint_eq(rlen, 5);
      ck_assert_int_eq(memcmp(res, "\xa4pong", 5), 0);
      free(res);
      dynq_infer_result_t r;
      ck_assert_int_eq(dynq_infer(c, "no-such-model", 0, NULL, 0, &r), DYNQ_ENOMODEL);
      dynq_close(c);
    }
    stop(&d);
  }
}
END_TEST

/* utime + stime of every thread of pid, in clock ticks. */
static long cpu_ticks(pid_t pid) {
  char dpath[64];
  long total = 0;
  snprintf(dpath, sizeof(dpath), "/proc/%d/task", (int)pid);
  DIR *dir = opendir(dpath);
  ck_assert_ptr_nonnull(dir);
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) {
    char p[600], buf[1024];
    if (e->d_name[0] == '.') continue;
    snprintf(p, sizeof(p), "%s/%s/stat", dpath, e->d_name);
    FILE *f = fopen(p, "r");
    if (f == NULL) continue;  /* a thread that just ended */
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *q = strrchr(buf, ')');  /* the name may hold spaces */
    unsigned long ut = 0, st = 0;
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                            &st), 2);
    total += (long)(ut + st);
  }
  closedir(dir);
  return total;
}

/* A dynqd with the longest loop spin, after traffic, with a client still
 * connected but quiet: over a second it must use next to no CPU.  A loop
 * that kept spinning would use a whole second (100 ticks); the bound is
 * generous because other processes' load can stretch anything. */
START_TEST(idle_daemon_does_not_spin) {
  TU_SKIP_UNLESS(g_have_model, "dynq-quantize or the mlp fixture is missing");
  static float out[16][20];
  tu_daemon_t d;
  const char *args[] = {"--workers", "2", "--loop-spin", "1000", "--inline-max", "1000",
                        "--loop-spin-busy", "1", NULL};
  start(&d, "idle", args);
  dynq_client_t *c = NULL;
  ck_assert_int_eq(dynq_connect(d.sock, &c), 0);
  ck_assert_int_eq(dynq_client_set_spin(c, 1000), 0);
  for (int i = 0; i < 5; i++) run_rows(c, out);
  sleep_us(100 * 1000);  /* past any spin window (1 ms) */
  long t0 = cpu_ticks(d.pid);
  sleep_us(1000 * 1000);  /* the idle second being measured: no event to wait for */
  long used = cpu_ticks(d.pid) - t0;
  long hz = sysconf(_SC_CLK_TCK);
  ck_assert_msg(used * 5 <= hz, "idle dynqd used %ld ticks of CPU in 1 s (limit %ld)", used,
                hz / 5);
  ck_assert_int_eq(dynq_ping(c), 0);  /* and it still answers */
  dynq_close(c);
  stop(&d);
}
END_TEST

/* --loop-spin and loop_spin_us: range-checked, the message names the
 * option and the allowed range. */
START_TEST(loop_spin_option_validated) {
  char exe[4096];
  snprintf(exe, sizeof(exe), "%s", tu_build("daemon/dynqd"));
  static const char *bad[] = {"-1", "1001", "abc", "", "5us"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char *out = NULL;
    char *argv[] = {exe, "--loop-spin", (char *)bad[i], "-n", NULL};
    int st = tu_run(argv, &out);
    ck_assert_msg(st == 2, "--loop-spin '%s': exit %d", bad[i], st);
    ck_assert_msg(out && strstr(out, "--loop-spin: invalid value") &&
                      strstr(out, "(expected 0..1000)"),
                  "--loop-spin '%s': %s", bad[i], out ? out : "");
    free(out);
  }
  char conf[700];
  snprintf(conf, sizeof(conf), "%s/spin.conf", g_dir);
  static const char *bad_conf[] = {"loop_spin_us = 1001\n", "loop_spin_us = -5\n",
                                   "loop_spin_us = fast\n"};
  for (size_t i = 0; i < sizeof(bad_conf) / sizeof(bad_conf[0]); i++) {
    char *out = NULL;
    ck_assert_int_eq(tu_write_file(conf, bad_conf[i], strlen(bad_conf[i])), 0);
    char *argv[] = {exe, "--config", conf, "--models", g_models, "-n", NULL};
    int st = tu_run(argv, &out);
    ck_assert_msg(st == 2, "'%s': exit %d", bad_conf[i], st);
    ck_assert_msg(out && strstr(out, "spin.conf:1: key 'loop_spin_us': invalid value"),
                  "'%s': %s", bad_conf[i], out ? out : "");
    free(out);
  }
  static const char *good_conf[] = {"loop_spin_us = 0\n", "loop_spin_us = 50\n",
                                    "loop_spin_us = 1000\n"};
  for (size_t i = 0; i < sizeof(good_conf) / sizeof(good_conf[0]); i++) {
    char *out = NULL;
    ck_assert_int_eq(tu_write_file(conf, good_conf[i], strlen(good_conf[i])), 0);
    char *argv[] = {exe, "--config", conf, "--models", g_models, "-n", NULL};
    int st = tu_run(argv, &out);
    ck_assert_msg(st == 0, "'%s': exit %d: %s", good_conf[i], st, out ? out : "");
    free(out);
  }
  char *out = NULL;
  char *argv[] = {exe, "--help", NULL};
  ck_assert_int_eq(tu_run(argv, &out), 0);
  ck_assert_ptr_nonnull(strstr(out, "--loop-spin US"));
  ck_assert_ptr_nonnull(strstr(out, "loop_spin_us"));
  free(out);
}
END_TEST

static Suite *latency_suite(void) {
  Suite *s = suite_create("latency");
  TCase *tc = tcase_create("client");
  tcase_add_test(tc, client_spin_validated);
  tcase_add_test(tc, client_spin_env);
  tcase_add_test(tc, client_spin_backs_off_slow_server);
  tcase_add_test(tc, client_spin_sees_eof);
  suite_add_tcase(s, tc);
  tc = tcase_create("daemon");
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, spin_same_answers);
  tcase_add_test(tc, idle_daemon_does_not_spin);
  tcase_add_test(tc, loop_spin_option_validated);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(latency_suite)
