/*
 * dynqd: start-up (arguments, kernel choice, listening socket, models,
 * workers), the loop's async/signal handlers, and the drain on SIGTERM.
 *
 * Shutdown: SIGTERM/SIGINT -> STOPPING=1, close the listener and unlink the
 * socket file we created, stop reading from clients, let every queued and
 * running request finish and its response flush, then exit 0.  If that
 * takes longer than the drain timeout, exit 1.
 *
 * SIGHUP: RELOADING=1, re-read the config file (reloadable keys only),
 * rescan the model directory (new files load, changed files reload,
 * removed files unload; a file that fails keeps its old version), then
 * READY=1 with a STATUS= line.  `dynqd -n` checks the configuration and
 * the model directory and exits 0, or 2 after saying what is wrong.
 *
 * Loop spin (loop_spin_us, run_loop): after an iteration that read a
 * request or delivered an answer, the loop keeps polling without sleeping
 * for that long while no job is out on a worker, then sleeps as before.
 */
#include <cblas.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dynq-config.h"
#include "dynq/errors.h"
#include "dynqd.h"

#define SD_LISTEN_FDS_START 3

/* ---- listening socket ---- */

static char *path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

/* --socket, else $RUNTIME_DIRECTORY (first of a ':' list), else
 * $XDG_RUNTIME_DIR/dynq (created 0750), else /run/dynq. */
static char *choose_socket_path(const dynqd_config_t *cfg) {
  if (cfg->socket_path) return strdup(cfg->socket_path);
  const char *rd = getenv("RUNTIME_DIRECTORY");
  if (rd && *rd) {
    char *first = strndup(rd, strcspn(rd, ":"));
    char *p = first ? path_join(first, "dynqd.sock") : NULL;
    free(first);
    return p;
  }
  const char *dir = "/run/dynq";
  char *own = NULL;
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  if (xdg && *xdg) {
    own = path_join(xdg, "dynq");
    if (own == NULL) return NULL;
    dir = own;
  }
  if (mkdir(dir, 0750) != 0 && errno != EEXIST)
    log_warn("cannot create socket directory %s: %s", dir, strerror(errno));
  char *p = path_join(dir, "dynqd.sock");
  free(own);
  return p;
}

/* A socket file left by a dead dynqd is removed; a live one is not. */
static int clear_stale_socket(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    if (errno == ENOENT) return 0;
    log_err("cannot check %s: %s", path, strerror(errno));
    return -errno;
  }
  if (!S_ISSOCK(st.st_mode)) {
    log_err("%s exists and is not a socket; refusing to replace it", path);
    return -EEXIST;
  }
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
  int e = errno;
  close(fd);
  if (rc == 0 || e == EAGAIN) {
    log_err("another server is already answering on %s; refusing to start", path);
    return -EADDRINUSE;
  }
  if (e != ECONNREFUSED) {
    log_err("cannot check existing socket %s: %s", path, strerror(e));
    return -e;
  }
  if (unlink(path) != 0 && errno != ENOENT) {
    log_err("cannot remove stale socket %s: %s", path, strerror(errno));
    return -errno;
  }
  log_notice("removed stale socket %s (nothing was answering on it)", path);
  return 0;
}

static void on_connection(uv_stream_t *l, int status) {
  dynqd_server_t *s = l->data;
  if (status < 0) {
    log_warn("listener error: %s", uv_strerror(status));
    return;
  }
  dynqd__conn_accept(s);
}

/* LISTEN_FDS/LISTEN_PID from systemd: 1 and fd 3 is ours, 0 if not
 * activated, negative on a broken hand-over. */
static int activated_fd(void) {
  const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
  int ret = 0;
  if (pid_s == NULL || fds_s == NULL) goto out;
  char *end;
  long pid = strtol(pid_s, &end, 10);
  if (*end != '\0' || pid != (long)getpid()) goto out;  /* meant for another process */
  long n = strtol(fds_s, &end, 10);
  if (*end != '\0' || n < 1) goto out;
  if (n > 1)
    log_warn("socket activation passed %ld sockets; using only the first (fd 3)", n);
  struct stat st;
  if (fstat(SD_LISTEN_FDS_START, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    log_err("socket activation: fd 3 is not a socket");
    ret = -EBADF;
    goto out;
  }
  fcntl(SD_LISTEN_FDS_START, F_SETFD, FD_CLOEXEC);
  ret = 1;
out:
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return ret;
}

static int setup_listener(dynqd_server_t *s) {
  int rc = uv_pipe_init(s->loop, &s->listener, 0);
  if (rc != 0) return rc;
  s->listener.data = s;
  s->listener_open = 1;

  int act = activated_fd();
  if (act < 0) return act;
  if (act == 1) {
    rc = uv_pipe_open(&s->listener, SD_LISTEN_FDS_START);
    if (rc != 0) {
      log_err("socket activation: cannot use fd 3: %s", uv_strerror(rc));
      return rc;
    }
    char name[256];
    size_t nl = sizeof(name);
    if (uv_pipe_getsockname(&s->listener, name, &nl) != 0) snprintf(name, sizeof(name), "?");
    log_notice("listening on %s (socket activation, fd 3)", name);
  } else {
    char *path = choose_socket_path(s->cfg);
    if (path == NULL) return -ENOMEM;
    struct sockaddr_un sa;
    if (strlen(path) >= sizeof(sa.sun_path)) {
      log_err("socket path %s is %zu bytes long; a Unix socket path must be "
              "shorter than %zu bytes", path, strlen(path), sizeof(sa.sun_path));
      free(path);
      return -ENAMETOOLONG;
    }
    rc = clear_stale_socket(path);
    if (rc != 0) {
      free(path);
      return rc;
    }
    /* Bind with a umask that yields 0660 so no client ever sees a wider mode. */
    mode_t old = umask(0117);
    rc = uv_pipe_bind(&s->listener, path);
    umask(old);
    if (rc != 0) {
      log_err("cannot bind %s: %s", path, uv_strerror(rc));
      free(path);
      return rc;
    }
    s->bound_path = path;
    if (chmod(path, 0660) != 0)
      log_warn("cannot chmod %s to 0660: %s", path, strerror(errno));
    log_notice("listening on %s", path);
  }
  rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
  if (rc != 0) {
    log_err("cannot listen: %s", uv_strerror(rc));
    return rc;
  }
  return 0;
}

static void unlink_socket(dynqd_server_t *s) {
  if (s->bound_path == NULL) return;  /* inherited sockets are not ours */
  if (unlink(s->bound_path) != 0 && errno != ENOENT)
    log_warn("cannot remove %s: %s", s->bound_path, strerror(errno));
  free(s->bound_path);
  s->bound_path = NULL;
}

/* ---- completions, signals, drain ---- */

/* Times on_async delivered at least one finished job: run_loop's sign of
 * traffic besides frames read (loop thread only). */
static uint64_t completions;

static void on_async(uv_async_t *a) {
  dynqd_server_t *s = a->data;
  dynqd_job_t *j = dynqd__pool_take_done(&s->pool);
  if (j != NULL) completions++;
  while (j != NULL) {
    dynqd_job_t *next = j->next;
    s->jobs_outstanding--;
    dynqd__conn_job_done(j->conn, j);
    j = next;
  }
  dynqd__server_check_drained(s);
}

/* Before each poll: how busy the iteration that just ended was. */
static void on_prepare(uv_prepare_t *h) {
  dynqd_server_t *s = h->data;
  s->frames_prev = s->frames_iter;
  s->frames_iter = 0;
  dynqd__pool_flush(&s->pool);
}

static void close_walk(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void dynqd__server_check_drained(dynqd_server_t *s) {
  if (!s->draining || s->exit_code >= 0) return;
  if (s->jobs_outstanding > 0 || s->n_conns > 0) return;
  log_notice("drained: all requests answered; exiting");
  s->exit_code = 0;
  uv_walk(s->loop, close_walk, NULL);
}

static void on_drain_timeout(uv_timer_t *t) {
  dynqd_server_t *s = t->data;
  log_err("drain timed out after %d s with %d requests unfinished and %d "
          "connections open; exiting", s->cfg->drain_timeout_s,
          s->jobs_outstanding, s->n_conns);
  unlink_socket(s);
  /* Workers may be inside a model run: do not wait for them. */
  _exit(1);
}

static void start_drain(dynqd_server_t *s, const char *why) {
  if (s->draining) {
    log_warn("%s again while draining: exiting now", why);
    unlink_socket(s);
    _exit(1);
  }
  s->draining = 1;
  log_notice("%s: draining %d outstanding requests on %d connections", why,
             s->jobs_outstanding, s->n_conns);
  dynqd__notifyf("STOPPING=1\nSTATUS=draining %d requests", s->jobs_outstanding);
  if (s->listener_open) {
    uv_close((uv_handle_t *)&s->listener, NULL);
    s->listener_open = 0;
  }
  unlink_socket(s);
  for (dynqd_conn_t *c = s->conns, *n; c; c = n) {
    n = c->next;
    dynqd__conn_flush_and_close(c);
  }
  uv_timer_start(&s->drain_timer, on_drain_timeout,
                 (uint64_t)s->cfg->drain_timeout_s * 1000, 0);
  dynqd__server_check_drained(s);
}

static void send_status(dynqd_server_t *s, const char *prefix) {
  dynqd__notifyf("%sSTATUS=serving %d model%s, queue %d/%d, %d connection%s, "
                 "%d worker%s", prefix, s->reg.n, s->reg.n == 1 ? "" : "s",
                 dynqd__pool_queued(&s->pool), s->cfg->queue, s->n_conns,
                 s->n_conns == 1 ? "" : "s", s->pool.n_threads,
                 s->pool.n_threads == 1 ? "" : "s");
}

static void on_hup(dynqd_server_t *s) {
  if (s->draining) {
    log_notice("SIGHUP while draining: ignored");
    return;
  }
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  dynqd__notifyf("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
                 (unsigned long long)ts.tv_sec * 1000000ULL +
                     (unsigned long long)ts.tv_nsec / 1000);
  log_notice("SIGHUP: re-reading %s and rescanning %s", s->cfg->config_path,
             s->reg.dir ? s->reg.dir : "(no model directory)");
  if (dynqd__config_reload(s->cfg) == 0)
    dynqd__log_configure(s->cfg->log_level, s->cfg->log_rate);
  int loaded, reloaded, unloaded, failed;
  dynqd__registry_rescan(&s->reg, &loaded, &reloaded, &unloaded, &failed);
  s->reloads++;
  log_notice("SIGHUP: %d model%s loaded, %d reloaded, %d unloaded, %d failed; "
             "serving %d", loaded, loaded == 1 ? "" : "s", reloaded, unloaded,
             failed, s->reg.n);
  send_status(s, "READY=1\n");
}

static void on_signal(uv_signal_t *h, int signum) {
  dynqd_server_t *s = h->data;
  if (signum == SIGHUP) {
    on_hup(s);
    return;
  }
  start_drain(s, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_watchdog(uv_timer_t *t) {
  dynqd_server_t *s = t->data;
  send_status(s, "WATCHDOG=1\n");
}

/* WATCHDOG_USEC (and WATCHDOG_PID, when set, naming us): ping at half the
 * interval, as sd_watchdog_enabled() advises. */
static void start_watchdog(dynqd_server_t *s) {
  const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
  if (us == NULL || !s->cfg->watchdog) return;
  char *end;
  if (pid != NULL) {
    long p = strtol(pid, &end, 10);
    if (*end != '\0' || p != (long)getpid()) return;
  }
  errno = 0;
  unsigned long long v = strtoull(us, &end, 10);
  if (errno != 0 || *end != '\0' || v == 0) {
    log_warn("ignoring malformed WATCHDOG_USEC=%s", us);
    return;
  }
  uint64_t ms = v / 2000;
  if (ms == 0) ms = 1;
  uv_timer_start(&s->watchdog_timer, on_watchdog, ms, ms);
  log_info("systemd watchdog: pinging every %llu ms", (unsigned long long)ms);
}

/* -n: what a start would need, without starting. */
static int check_config(const dynqd_config_t *cfg) {
  struct stat st;
  int have_file = stat(cfg->config_path, &st) == 0;
  if (cfg->socket_path && strlen(cfg->socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    fprintf(stderr, "dynqd: socket path %s is too long for a Unix socket\n",
            cfg->socket_path);
    return 2;
  }
  int nfiles = 0;
  if (cfg->models_dir) {
    DIR *d = opendir(cfg->models_dir);
    if (d == NULL) {
      fprintf(stderr, "dynqd: model directory %s is not readable: %s\n",
              cfg->models_dir, strerror(errno));
      return 2;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      size_t n = strlen(e->d_name);
      if (e->d_name[0] != '.' && n > 5 && strcmp(e->d_name + n - 5, ".dynq") == 0)
        nfiles++;
    }
    closedir(d);
  }
  printf("dynqd: configuration OK (%s%s); model directory %s%s%d model file%s\n",
         have_file ? "config file " : "no config file at ", cfg->config_path,
         cfg->models_dir ? cfg->models_dir : "(none)",
         cfg->models_dir ? " readable, " : ", ", nfiles, nfiles == 1 ? "" : "s");
  return 0;
}

/* ---- running the loop ---- */

/*
 * With loop_spin_us > 0: one blocking iteration at a time, and after one
 * that read a frame or delivered an answer, non-blocking iterations (epoll
 * with timeout 0) until loop_spin_us has passed without either.  A
 * client's next request then finds the loop awake: on a VM whose idle vCPU
 * halts, waking a sleeping loop costs more than a ping.  Never spins on an
 * idle daemon (nothing happened, nothing to extend), nor while a job is on
 * a worker (the spinner would hold the core the worker needs on a small
 * machine; the worker's uv_async wakes the loop as before), nor while
 * draining.
 */
static void run_loop(dynqd_server_t *s) {
  uint64_t spin_ns = (uint64_t)s->cfg->loop_spin_us * 1000u;
  if (spin_ns == 0) {
    uv_run(s->loop, UV_RUN_DEFAULT);
    return;
  }
  for (;;) {
    uint64_t done0 = completions, until;
    /* frames_iter: frames read in the iteration that just ran (on_prepare
     * zeroes it before each poll). */
    if (uv_run(s->loop, UV_RUN_ONCE) == 0) return;
    if (s->frames_iter == 0 && completions == done0) continue;
    until = uv_hrtime() + spin_ns;
    while (!s->draining && s->jobs_outstanding == 0) {
      done0 = completions;
      if (uv_run(s->loop, UV_RUN_NOWAIT) == 0) return;
      if (s->frames_iter > 0 || completions != done0)
        until = uv_hrtime() + spin_ns;
      else if (uv_hrtime() >= until)
        break;
      else
        sched_yield();  /* a client or worker waiting for this CPU goes first */
    }
  }
}

/* ---- main ---- */

int main(int argc, char **argv) {
  dynqd_config_t cfg;
  dynqd_server_t srv;
  uv_loop_t loop;
  int loop_ok = 0, rc;
  memset(&srv, 0, sizeof(srv));
  srv.exit_code = -1;

  rc = dynqd__config_parse(&cfg, argc, argv);
  if (rc != 0) {
    dynqd__config_free(&cfg);
    return rc > 0 ? 0 : 2;
  }
  dynqd__log_init(cfg.log_level);
  dynqd__log_configure(cfg.log_level, cfg.log_rate);
  if (cfg.check_only) {
    rc = check_config(&cfg);
    dynqd__config_free(&cfg);
    return rc;
  }
  signal(SIGPIPE, SIG_IGN);  /* a client gone mid-write is an EPIPE, not a death */

  const char *kmsg = NULL;
  const char *kenv = getenv("DYNQ_KERNEL");
  if (dynq__kernels_init(kenv, &kmsg) != 0) {
    log_err("cannot select an INT8 kernel (DYNQ_KERNEL=%s): %s",
            kenv ? kenv : "", kmsg ? kmsg : "unknown reason");
    dynqd__config_free(&cfg);
    return 1;
  }
  /* Several workers call OpenBLAS at once: each call must stay on its thread. */
  openblas_set_num_threads(1);
  /* OpenBLAS sets up its buffers on the first call (4-27 ms measured here):
   * pay that now rather than in the first FP32 request's latency. */
  {
    float a[16] = {0}, b[16] = {0}, c[16];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 4, 4, 4, 1.0f, a, 4, b, 4, 0.0f, c, 4);
  }
  const char *core = openblas_get_corename();
  log_notice("dynqd %s: kernel %s (%s), openblas core %s, %d workers", DYNQ_VERSION,
             dynq__kernel()->name, dynq__kernel()->isa ? dynq__kernel()->isa : "",
             core ? core : "unknown", cfg.workers);

  srv.cfg = &cfg;
  srv.start_ns = uv_hrtime();
  rc = uv_loop_init(&loop);
  if (rc != 0) {
    log_err("cannot create the event loop: %s", uv_strerror(rc));
    goto fail;
  }
  loop_ok = 1;
  srv.loop = &loop;

  rc = setup_listener(&srv);
  if (rc != 0) goto fail;

  int nm = dynqd__registry_load(&srv.reg, cfg.models_dir);
  log_notice("%d model%s loaded from %s", nm, nm == 1 ? "" : "s",
             cfg.models_dir ? cfg.models_dir : "(none)");

  rc = uv_async_init(&loop, &srv.async, on_async);
  if (rc != 0) goto fail;
  srv.async.data = &srv;
  rc = dynqd__pool_start(&srv.pool, cfg.workers, cfg.queue, cfg.worker_spin_us,
                          &srv.async);
  if (rc != 0) {
    log_err("cannot start %d worker threads: %s", cfg.workers, strerror(-rc));
    goto fail;
  }
  uv_prepare_init(&loop, &srv.prep);
  srv.prep.data = &srv;
  uv_prepare_start(&srv.prep, on_prepare);
  uv_unref((uv_handle_t *)&srv.prep);  /* never keeps the loop alive */
  uv_timer_init(&loop, &srv.drain_timer);
  srv.drain_timer.data = &srv;
  uv_timer_init(&loop, &srv.watchdog_timer);
  srv.watchdog_timer.data = &srv;
  uv_signal_t *sigs[] = {&srv.sig_term, &srv.sig_int, &srv.sig_hup};
  int signums[] = {SIGTERM, SIGINT, SIGHUP};
  for (int i = 0; i < 3; i++) {
    uv_signal_init(&loop, sigs[i]);
    sigs[i]->data = &srv;
    rc = uv_signal_start(sigs[i], on_signal, signums[i]);
    if (rc != 0) {
      log_err("cannot handle signal %d: %s", signums[i], uv_strerror(rc));
      goto fail;
    }
  }

  start_watchdog(&srv);
  send_status(&srv, "READY=1\n");
  run_loop(&srv);

  dynqd__pool_stop(&srv.pool);
  uv_loop_close(&loop);
  dynqd__sessions_free(&srv);  /* D2: detached sessions, stats */
  dynqd__stats_free(&srv);
  dynqd__registry_free(&srv.reg);
  unlink_socket(&srv);
  dynqd__config_free(&cfg);
  return srv.exit_code > 0 ? srv.exit_code : 0;

fail:
  if (rc < 0 && rc > -4096) log_err("start-up failed: %s", strerror(-rc));
  else if (rc < 0) log_err("start-up failed: %s", dynq_strerror(rc));
  dynqd__pool_stop(&srv.pool);
  if (loop_ok) {
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
  dynqd__registry_free(&srv.reg);
  unlink_socket(&srv);
  dynqd__config_free(&cfg);
  return 1;
}
