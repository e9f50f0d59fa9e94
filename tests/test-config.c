/*
 * dynqd's config file, `-n`, SIGHUP re-reading, sd_notify (READY, STATUS,
 * RELOADING, STOPPING, WATCHDOG), socket activation (LISTEN_FDS) and the
 * log rate limit, all against the real binary.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dynq/dynqclient.h"
#include "dynq/errors.h"
#include "testutil.h"

static char *g_dir;
static char g_models[512];
static int g_have_model;

static void setup(void) {
  g_dir = tu_mkdtemp();
  snprintf(g_models, sizeof(g_models), "%s/models", g_dir);
  ck_assert_int_eq(mkdir(g_models, 0755), 0);
  char p[600];
  snprintf(p, sizeof(p), "%s/mlp.dynq", g_models);
  g_have_model = access(tu_build("models/dynq-quantize"), X_OK) == 0 &&
                 tu_quantize("tests/fixtures/mlp.onnx", p, NULL) == 0;
}

static void teardown(void) {
  tu_rmtree(g_dir);
  free(g_dir);
}

static const char *conf_path(const char *name) {
  static char p[600];
  snprintf(p, sizeof(p), "%s/%s", g_dir, name);
  return p;
}

static const char *write_conf(const char *name, const char *text) {
  const char *p = conf_path(name);
  ck_assert_int_eq(tu_write_file(p, text, strlen(text)), 0);
  return p;
}

/* dynqd args... ; returns exit status, output in *out. */
static int run_dynqd(char **out, const char *a1, const char *a2, const char *a3,
                     const char *a4, const char *a5) {
  char exe[4096];
  snprintf(exe, sizeof(exe), "%s", tu_build("daemon/dynqd"));
  char *argv[] = {exe, (char *)a1, (char *)a2, (char *)a3, (char *)a4, (char *)a5, NULL};
  return tu_run(argv, out);
}

START_TEST(test_bad_lines) {
  static const struct {
    const char *text;
    const char *needle;  /* besides the file:line prefix */
    int line;
  } cases[] = {
    {"workers = 2\nbogus = 1\n", "key 'bogus': unknown key", 2},
    {"workers = 0\n", "key 'workers': invalid value '0' (expected 1..64)", 1},
    {"workers = two\n", "key 'workers': invalid value 'two'", 1},
    {"# comment\n\nmax_frame = 12Q\n", "key 'max_frame': invalid value '12Q'", 3},
    {"log_level = loud\n", "key 'log_level': unknown level 'loud'", 1},
    {"watchdog = maybe\n", "key 'watchdog': invalid value 'maybe'", 1},
    {"workers 2\n", "expected 'key = value'", 1},
    {"= 2\n", "missing key", 1},
    {"queue = 8\nqueue = 9\n", "key 'queue': already set on line 1", 2},
    {"[server]\nworkers = 1\n", "unknown section '[server]'", 1},
    {"[batch.mlp\n", "malformed section header", 1},
    {"[batch.mlp]\nmax_batch = 0\n", "key 'max_batch': invalid value '0'", 2},
    {"coalesce_max = 0\n", "key 'coalesce_max': invalid value '0' (expected 1..4096)", 1},
    {"loop_spin_busy = yes\n", "key 'loop_spin_busy': invalid value 'yes'", 1},
    {"max_run_ms = -5\n", "key 'max_run_ms': invalid value '-5' (expected 0..86400000)", 1},
    {"max_run_ms = soon\n", "key 'max_run_ms': invalid value 'soon'", 1},
    {"[batch.mlp]\nspeed = 3\n", "key 'speed': unknown key in a [batch.mlp] section", 2},
    {"socket =\n", "key 'socket': needs a non-empty value", 1},
    {"max_conns = 99999999999999999999\n", "key 'max_conns': invalid value", 1},
    {"[batch.mlp]\nwarmup = x\n", "key 'warmup': warmup: 'x' is not NAME:DIMS", 2},
    {"[batch.mlp]\n\nwarmup = x:1y4\n", "warmup: 'x' has shape '1y4' (expected", 3},
    {"[batch.mlp]\nwarmup = x:1x\n", "warmup: 'x' has shape '1x'", 2},
    {"[batch.mlp]\nwarmup = x:-1\n", "warmup: 'x' has shape '-1'", 2},
    {"[batch.mlp]\nwarmup = x:1x1x1x1x1x1x1x1x1\n", "up to 8 dimensions", 2},
    {"[batch.mlp]\nwarmup = x:1,x:2\n", "warmup: 'x' is given twice", 2},
    {"[batch.mlp]\nwarmup = ,\n", "warmup: empty", 2},
    {"[batch.mlp]\naxes = x:9\n", "axes: 'x' has axis '9' (expected 0..7)", 2},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *p = write_conf("bad.conf", cases[i].text);
    char *out = NULL;
    int rc = run_dynqd(&out, "-n", "--config", p, NULL, NULL);
    char where[700];
    snprintf(where, sizeof(where), "%s:%d: ", p, cases[i].line);
    ck_assert_msg(rc == 2, "case %zu: exit %d, output: %s", i, rc, out);
    ck_assert_msg(strstr(out, where) != NULL, "case %zu: no '%s' in: %s", i, where, out);
    ck_assert_msg(strstr(out, cases[i].needle) != NULL, "case %zu: no '%s' in: %s", i,
                  cases[i].needle, out);
    free(out);
  }
  /* A bad value on the command line, and a missing --config file. */
  char *out = NULL;
  ck_assert_int_eq(run_dynqd(&out, "-n", "--queue", "0", NULL, NULL), 2);
  ck_assert_ptr_nonnull(strstr(out, "--queue: invalid value '0'"));
  free(out);
  ck_assert_int_eq(run_dynqd(&out, "-n", "--loop-spin-busy", "-1", NULL, NULL), 2);
  ck_assert_msg(strstr(out, "--loop-spin-busy: invalid value '-1' (expected 0..1)"), "%s", out);
  free(out);
  ck_assert_int_eq(run_dynqd(&out, "-n", "--loop-spin-busy", "on", NULL, NULL), 2);
  ck_assert_msg(strstr(out, "--loop-spin-busy: invalid value 'on'"), "%s", out);
  free(out);
  ck_assert_int_eq(run_dynqd(&out, "-n", "--config", conf_path("none.conf"), NULL, NULL), 2);
  ck_assert_ptr_nonnull(strstr(out, "cannot read config file"));
  free(out);
}
END_TEST

START_TEST(test_check_only) {
  const char *p = write_conf("ok.conf",
                             "# dynqd test config\n"
                             "workers = 2   # two threads\n"
                             "log_level = \"debug\"\n"
                             "max_frame = 1M\n"
                             "admin_group = nogroup\n"
                             "[batch.mlp]\n"
                             "max_batch = 8\n"
                             "max_delay_us = 200\n");
  char *out = NULL;
  ck_assert_int_eq(run_dynqd(&out, "-n", "--config", p, "--models", g_models), 0);
  ck_assert_msg(strstr(out, "configuration OK") != NULL, "%s", out);
  ck_assert_msg(strstr(out, g_have_model ? "1 model file" : "0 model files") != NULL, "%s", out);
  free(out);
  char missing[700];
  snprintf(missing, sizeof(missing), "%s/nope", g_dir);
  ck_assert_int_eq(run_dynqd(&out, "-n", "--config", p, "--models", missing), 2);
  ck_assert_msg(strstr(out, "is not readable") != NULL, "%s", out);
  free(out);
  /* models_dir from the file, checked the same way. */
  char text[1024];
  snprintf(text, sizeof(text), "models_dir = %s\n", missing);
  p = write_conf("dir.conf", text);
  ck_assert_int_eq(run_dynqd(&out, "--check", "--config", p, NULL, NULL), 2);
  ck_assert_msg(strstr(out, missing) != NULL, "%s", out);
  free(out);
  ck_assert_int_eq(run_dynqd(&out, "--help", NULL, NULL, NULL, NULL), 0);
  ck_assert_ptr_nonnull(strstr(out, "session_idle_timeout_ms"));
  free(out);
}
END_TEST

/* --help says every option is a config key with dashes as underscores,
 * except the ones it names: check that claim for every option it lists
 * (it once named only --models while ten more differed). */
START_TEST(test_help_keys_match_options) {
  char *out = NULL;
  ck_assert_int_eq(run_dynqd(&out, "--help", NULL, NULL, NULL, NULL), 0);
  const char *keys = strstr(out, "\nKeys:");
  ck_assert_msg(keys != NULL, "%s", out);
  const char *opts = strstr(out, "\n  --socket ");
  ck_assert_msg(opts != NULL && opts < keys, "%s", out);
  int n = 0;
  for (const char *l = opts; l != NULL && l < keys; l = strchr(l + 1, '\n')) {
    if (strncmp(l, "\n  --", 5) != 0) continue;
    char cli[64], under[64], key[80], exc[160];
    ck_assert_int_eq(sscanf(l + 5, "%63[a-z-]", cli), 1);
    snprintf(under, sizeof(under), "%s", cli);
    for (char *c = under; *c; c++)
      if (*c == '-') *c = '_';
    snprintf(exc, sizeof(exc), "--%s is ", cli);
    const char *e = strstr(out, exc);
    if (e != NULL && e < keys) {
      ck_assert_int_eq(sscanf(e + strlen(exc), "%63[a-z_]", key), 1);
      ck_assert_msg(strcmp(key, under) != 0, "--%s: needless exception", cli);
    } else {
      snprintf(key, sizeof(key), "%s", under);
    }
    /* The key is a word of the list (maybe starred: applied on SIGHUP). */
    int found = 0;
    size_t kl = strlen(key);
    for (const char *k = strstr(keys, key); k != NULL && !found; k = strstr(k + 1, key))
      found = k[-1] == ' ' && k[kl] != '\0' && strchr(" *\n", k[kl]) != NULL;
    ck_assert_msg(found, "--%s: no config key '%s' in the list:\n%s", cli, key, keys);
    n++;
  }
  /* One option line per key. */
  int n_keys = 0;
  const char *end = strstr(keys, "\n  (*");
  ck_assert_ptr_nonnull(end);
  for (const char *k = keys; k < end; k++) n_keys += k[0] == ' ' && k[1] >= 'a' && k[1] <= 'z';
  ck_assert_int_eq(n, n_keys);
  free(out);
}
END_TEST

static int server_workers(const char *sock) {
  dynq_client_t *c = NULL;
  ck_assert_int_eq(dynq_connect(sock, &c), 0);
  dynq_server_info_t info;
  ck_assert_int_eq(dynq_server_info(c, &info), 0);
  dynq_close(c);
  return info.workers;
}

START_TEST(test_cli_overrides_file) {
  const char *p = write_conf("w.conf", "workers = 1\n");
  const char *extra1[] = {"--config", p, NULL};
  tu_daemon_t d;
  ck_assert_int_eq(tu_daemon_start(&d, g_dir, g_models, extra1), 0);
  ck_assert_int_eq(server_workers(d.sock), 1);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  const char *extra2[] = {"--config", p, "--workers", "3", NULL};
  ck_assert_int_eq(tu_daemon_start(&d, g_dir, g_models, extra2), 0);
  ck_assert_int_eq(server_workers(d.sock), 3);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST

START_TEST(test_notify_sequence) {
  tu_notify_t ns;
  tu_notify_open(&ns, g_dir);
  setenv("WATCHDOG_USEC", "100000", 1);
  tu_daemon_t d;
  const char *p = write_conf("n.conf", "log_level = info\n");
  const char *extra[] = {"--config", p, NULL};
  int rc = tu_daemon_start(&d, g_dir, g_models, extra);
  unsetenv("WATCHDOG_USEC");
  ck_assert_int_eq(rc, 0);
  char seen[4096] = "";
  ck_assert_msg(tu_notify_wait(&ns, "READY=1", seen, sizeof(seen)), "seen: %s", seen);
  ck_assert_msg(strstr(seen, "STATUS=serving ") != NULL, "seen: %s", seen);
  if (g_have_model) ck_assert_msg(strstr(seen, "serving 1 model,") != NULL, "seen: %s", seen);
  ck_assert_msg(tu_notify_wait(&ns, "WATCHDOG=1", seen, sizeof(seen)), "seen: %s", seen);
  ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
  ck_assert_msg(tu_notify_wait(&ns, "RELOADING=1", seen, sizeof(seen)), "seen: %s", seen);
  ck_assert_msg(strstr(seen, "MONOTONIC_USEC=") != NULL, "seen: %s", seen);
  ck_assert_msg(tu_notify_wait(&ns, "READY=1", seen, sizeof(seen)), "seen: %s", seen);
  ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
  ck_assert_msg(tu_notify_wait(&ns, "STOPPING=1", seen, sizeof(seen)), "seen: %s", seen);
  /* Already draining: wait for the exit rather than signal again. */
  int st = 0;
  ck_assert_int_eq(waitpid(d.pid, &st, 0), d.pid);
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  tu_notify_close(&ns);
}
END_TEST

START_TEST(test_sighup_rereads_config) {
  tu_notify_t ns;
  tu_notify_open(&ns, g_dir);
  const char *p = write_conf("h.conf", "workers = 1\nmax_conns = 100\n");
  const char *extra[] = {"--config", p, NULL};
  tu_daemon_t d;
  ck_assert_int_eq(tu_daemon_start(&d, g_dir, g_models, extra), 0);
  ck_assert(tu_notify_wait(&ns, "READY=1", NULL, 0));
  write_conf("h.conf", "workers = 2\nmax_conns = 7\n");
  ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
  ck_assert(tu_notify_wait(&ns, "RELOADING=1", NULL, 0));
  ck_assert(tu_notify_wait(&ns, "READY=1", NULL, 0));
  ck_assert_msg(tu_file_contains(d.log, "workers changed (1 -> 2) but needs a restart"),
                "log lacks the ignored change");
  ck_assert_msg(tu_file_contains(d.log, "max_conns = 7 (was 100)"), "log lacks the applied change");
  ck_assert_int_eq(server_workers(d.sock), 1);
  /* A broken file on SIGHUP: logged, the running config stays, still ready. */
  write_conf("h.conf", "workers = 2\nmax_conns = lots\n");
  ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
  ck_assert(tu_notify_wait(&ns, "READY=1", NULL, 0));
  ck_assert_msg(tu_file_contains(d.log, "h.conf:2: key 'max_conns': invalid value 'lots'"),
                "log lacks the bad line");
  ck_assert(tu_file_contains(d.log, "keeping the current configuration"));
  dynq_client_t *c = NULL;
  ck_assert_int_eq(dynq_connect(d.sock, &c), 0);
  ck_assert_int_eq(dynq_ping(c), 0);
  dynq_close(c);
  /* The --config file gone: an error as at start-up, not the defaults
   * (it used to set max_conns back to 1024 and log "re-read"). */
  ck_assert_int_eq(unlink(p), 0);
  ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
  ck_assert(tu_notify_wait(&ns, "RELOADING=1", NULL, 0));
  ck_assert(tu_notify_wait(&ns, "READY=1", NULL, 0));
  ck_assert_msg(tu_file_contains(d.log, "cannot read config file"), "log lacks the missing file");
  ck_assert_msg(!tu_file_contains(d.log, "max_conns = 1024 (was 7)"),
                "a missing --config file reset max_conns to its default");
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  tu_notify_close(&ns);
}
END_TEST

START_TEST(test_socket_activation) {
  char path[600];
  snprintf(path, sizeof(path), "%s/act.sock", g_dir);
  int lfd = tu_listen_unix(path, 16);
  tu_notify_t ns;
  tu_notify_open(&ns, g_dir);
  char log[700], sock_arg[700];
  snprintf(log, sizeof(log), "%s/act.log", g_dir);
  /* --socket names a path that must stay unused: fd 3 wins. */
  snprintf(sock_arg, sizeof(sock_arg), "%s/unused.sock", g_dir);
  pid_t pid = tu_spawn_activated(lfd, log, sock_arg, g_models);
  ck_assert_msg(tu_notify_wait(&ns, "READY=1", NULL, 0), "no READY=1");
  dynq_client_t *c = NULL;
  ck_assert_int_eq(dynq_connect(path, &c), 0);
  ck_assert_int_eq(dynq_ping(c), 0);
  dynq_close(c);
  ck_assert_int_eq(access(sock_arg, F_OK), -1);
  ck_assert(tu_file_contains(log, "socket activation"));
  ck_assert_int_eq(kill(pid, SIGTERM), 0);
  int st = 0;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  /* An inherited socket is not ours to unlink. */
  ck_assert_int_eq(access(path, F_OK), 0);
  tu_notify_close(&ns);
}
END_TEST

START_TEST(test_log_rate_limit) {
  const char *p = write_conf("r.conf", "log_rate = 3\n");
  const char *extra[] = {"--config", p, NULL};
  tu_daemon_t d;
  ck_assert_int_eq(tu_daemon_start(&d, g_dir, g_models, extra), 0);
  char msg[512];
  int ver;
  /* Each failed model.load logs one warning from the same call site. */
  for (int i = 0; i < 40; i++)
    ck_assert_int_eq(tu_admin_call(d.sock, "model.load", "ghost", NULL, &ver, msg, sizeof(msg)),
                     -ENOENT);
  int lines = tu_count_in_file(d.log, "model.load 'ghost' from");
  /* 40 calls take well under a few seconds: at most 3 per second shown. */
  ck_assert_msg(lines >= 3 && lines < 40, "%d warning lines", lines);
  /* The summary comes with the first line of that kind in a later second. */
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    tu_admin_call(d.sock, "model.load", "ghost", NULL, &ver, msg, sizeof(msg));
    if (tu_file_contains(d.log, "messages suppressed (log_rate 3 lines/s)")) break;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    ck_assert_msg(t.tv_sec - t0.tv_sec < 10, "no suppression summary in the log");
  }
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST

/* Wait up to 20 s for needle in the daemon's log (model loads run off
 * the loop, after the socket already accepts). */
static int log_has(const tu_daemon_t *d, const char *needle) {
  for (int i = 0; i < 400; i++) {
    if (tu_file_contains(d->log, needle)) return 1;
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return 0;
}

/* warm_shape.onnx reshapes x[N, T] into rows of 4: the generic warm-up's
 * first guess (N = T = 1) fails, its next (16) runs, and the model is
 * warmed with a note.  warm_never.onnx (rows of 7) runs at none of the
 * guesses: served cold with a warning; shapes from the config warm it;
 * shapes that contradict the model, or with which it cannot run, refuse
 * it with the config key named. */
START_TEST(test_warmup_shapes) {
  char p[700], q[700];
  snprintf(p, sizeof(p), "%s/ws.dynq", g_models);
  ck_assert_int_eq(tu_quantize("tests/fixtures/warm_shape.onnx", p, NULL), 0);
  snprintf(q, sizeof(q), "%s/wn.dynq", g_models);
  ck_assert_int_eq(tu_quantize("tests/fixtures/warm_never.onnx", q, NULL), 0);
  tu_daemon_t d;
  ck_assert_int_eq(tu_daemon_start(&d, g_dir, g_models, NULL), 0);
  ck_assert_msg(log_has(&d, "model 'ws': warmed with symbolic dimensions set to 16 (at 1: "),
                "ws not warmed at 16");
  ck_assert_msg(log_has(&d, "model 'wn': warm-up with symbolic dimensions set to 1 failed"),
                "no cold-start warning");
  ck_assert(tu_file_contains(d.log, "and at 16, 256 and 1024"));
  ck_assert(tu_file_contains(d.log, "[batch.wn] warmup = NAME:DIMS"));
  ck_assert(!tu_file_contains(d.log, "model 'ws': warm-up"));
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  ck_assert_int_eq(unlink(p), 0);  /* the config cases are about wn */

  static const struct {
    const char *warmup;
    const char *needle;  /* NULL: warmed and loaded */
  } cases[] = {
    {"x:2x14", NULL},
    {" x : 3x7 ", NULL},
    {"x:2x8x1", "[batch.wn] warmup gives 'x' 3 dimensions, but the model declares 2"},
    {"z:1x4", "[batch.wn] warmup names 'z', which is not an input of the model"},
    {"x:1x1", "(shapes from [batch.wn] warmup = x:1x1)"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char text[256];
    snprintf(text, sizeof(text), "[batch.wn]\nwarmup = %s\n", cases[i].warmup);
    const char *conf = write_conf("w.conf", text);
    const char *extra[] = {"--config", conf, NULL};
    ck_assert_int_eq(tu_daemon_start(&d, g_dir, g_models, extra), 0);
    if (cases[i].needle == NULL) {
      ck_assert_msg(log_has(&d, "loaded model 'wn' version 1"), "case %zu: not loaded", i);
      ck_assert_msg(!tu_file_contains(d.log, "warm-up"), "case %zu: a warm-up warning", i);
    } else {
      ck_assert_msg(log_has(&d, cases[i].needle), "case %zu: no '%s' in the log", i,
                    cases[i].needle);
      ck_assert_msg(!tu_file_contains(d.log, "loaded model 'wn'"), "case %zu: loaded", i);
    }
    ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  }
}
END_TEST

/* JOURNAL_STREAM names journald's stream as DEV:INODE; "<N>" priority
 * prefixes only when stderr is that very file (here the daemon's log),
 * never because the variable was inherited. */
START_TEST(test_journal_stream_matched) {
  tu_daemon_t d;
  char log[600], js[64];
  snprintf(log, sizeof(log), "%s/dynqd.log", g_dir);  /* tu_daemon_start's stderr */
  ck_assert_int_eq(tu_write_file(log, "", 0), 0);
  struct stat st;
  ck_assert_int_eq(stat(log, &st), 0);
  unsigned long long dev = (unsigned long long)st.st_dev, ino = (unsigned long long)st.st_ino;
  for (int i = 0; i < 5; i++) {
    /* the stream itself; another inode; not DEV:INODE; junk; empty */
    if (i == 0) snprintf(js, sizeof(js), "%llu:%llu", dev, ino);
    if (i == 1) snprintf(js, sizeof(js), "%llu:%llu", dev, ino + 1);
    if (i == 2) snprintf(js, sizeof(js), "%llu-%llu", dev, ino);
    if (i == 3) snprintf(js, sizeof(js), " %llu:%llu", dev, ino);
    if (i == 4) js[0] = '\0';
    ck_assert_int_eq(setenv("JOURNAL_STREAM", js, 1), 0);
    ck_assert_int_eq(tu_daemon_start(&d, g_dir, g_models, NULL), 0);
    /* signals are handled once the loop runs, which logs this */
    ck_assert_msg(log_has(&d, " loaded from "), "JOURNAL_STREAM=%s: not started", js);
    ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
    struct stat now;
    ck_assert_int_eq(stat(log, &now), 0);
    ck_assert_msg(now.st_ino == st.st_ino, "the log file was replaced, not truncated");
    /* every line: "<N>text" or "dynqd: LEVEL: text" */
    size_t n = 0;
    char *text = tu_read_file(log, &n);
    ck_assert_ptr_nonnull(text);
    int journal = 0, words = 0;
    for (char *line = text; line < text + n; line = strchr(line, '\n') + 1) {
      journal += line[0] == '<' && line[1] >= '0' && line[1] <= '7' && line[2] == '>';
      words += strncmp(line, "dynqd: ", 7) == 0;
      if (strchr(line, '\n') == NULL) break;
    }
    free(text);
    ck_assert_msg(i == 0 ? journal > 0 && words == 0 : words > 0 && journal == 0,
                  "JOURNAL_STREAM=%s: %d journal lines, %d with level words", js, journal,
                  words);
  }
  unsetenv("JOURNAL_STREAM");
}
END_TEST

static Suite *config_suite(void) {
  Suite *s = suite_create("config");
  TCase *tc = tcase_create("config");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_bad_lines);
  tcase_add_test(tc, test_check_only);
  tcase_add_test(tc, test_help_keys_match_options);
  tcase_add_test(tc, test_cli_overrides_file);
  tcase_add_test(tc, test_notify_sequence);
  tcase_add_test(tc, test_sighup_rereads_config);
  tcase_add_test(tc, test_socket_activation);
  tcase_add_test(tc, test_log_rate_limit);
  tcase_add_test(tc, test_warmup_shapes);
  tcase_add_test(tc, test_journal_stream_matched);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  return tu_run_suite(config_suite()) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
