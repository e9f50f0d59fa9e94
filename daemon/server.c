/*
 * The server: start-up (listener, workers, signals, the first model
 * loads), the loop's prepare/signal/timer handlers, the drain on SIGTERM
 * and the rescan on SIGHUP.  It wires the layers (dynqd.h): the
 * dispatcher into the transport, the rpc layer's close hooks into the
 * connections.
 *
 * Shutdown: SIGTERM/SIGINT -> STOPPING=1, close the listener and unlink the
 * socket file we created, stop reading from clients, let every queued and
 * running request finish and its response flush, then exit 0.  If that
 * takes longer than the drain timeout, exit 1.
 *
 * Models load off the loop (loader.c), at start-up as on SIGHUP, so ping
 * and health.live are answered while a large model is opened and warmed.
 * During the start-up loads, frames of other methods wait in their
 * connection (dispatch.c): a client that asks right after start sees the
 * models, as when they were loaded before listening.  READY=1 follows the
 * loads.
 *
 * SIGHUP: RELOADING=1, re-read the config file (reloadable keys only),
 * rescan the model directory (new files load, changed files reload,
 * removed files unload; a file that fails keeps its old version), then
 * READY=1 with a STATUS= line once the loads are done.  A SIGHUP during a
 * rescan runs another one after it.
 *
 * Loop spin (loop_spin_us, run_loop): after an iteration that read a
 * request or delivered an answer, the loop keeps polling without sleeping
 * for that long while no job is out on a worker, then sleeps as before.
 */
#include <dirent.h>
#include <errno.h>
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

/* Before each poll: how busy the iteration that just ended was; hand the
 * iteration's jobs to the workers and its answers to the sockets. */
static void on_prepare(uv_prepare_t *h) {
  dynqd_server_t *s = h->data;
  s->frames_prev = s->frames_iter;
  s->frames_iter = 0;
  dynqd__sched_flush(&s->sched);  /* first: workers start while we write */
  s->stats.inline_total += s->sched.loop_jobs;  /* its own batch ran inline */
  s->sched.loop_jobs = 0;
  dynqd__conn_flush_output(s);    /* this iteration's answers, one writev each */
  dynqd__shadow_collect(&s->shadow);
}

static void on_jobs_done(void *arg) { dynqd__server_check_drained(arg); }

static void on_drain_timeout(uv_timer_t *t) {
  dynqd_server_t *s = t->data;
  log_err("drain timed out after %d s with %d requests unfinished and %d "
          "connections open; exiting", s->cfg->drain_timeout_s,
          s->sched.outstanding + s->loads_outstanding, s->n_conns);
  dynqd__listener_unlink(s);
  /* Workers may be inside a model run: do not wait for them. */
  _exit(1);
}

static void start_drain(dynqd_server_t *s, const char *why) {
  if (s->draining) {
    log_warn("%s again while draining: exiting now", why);
    dynqd__listener_unlink(s);
    _exit(1);
  }
  s->draining = 1;
  int out = s->sched.outstanding + s->loads_outstanding;
  log_notice("%s: draining %d outstanding requests on %d connections", why, out, s->n_conns);
  dynqd__notifyf("STOPPING=1\nSTATUS=draining %d requests", out);
  dynqd__listener_close(s);
  dynqd__listener_unlink(s);
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
                 dynqd__sched_queued(&s->sched), s->cfg->queue, s->n_conns,
                 s->n_conns == 1 ? "" : "s", s->sched.n_threads,
                 s->sched.n_threads == 1 ? "" : "s");
}

/* ---- model directory scans (start-up and SIGHUP), loads off the loop ---- */

typedef struct rescan {
  dynqd_server_t *srv;
  int startup;
  int pending;                /* loads not back yet */
  int loaded, reloaded, unloaded, failed;
} rescan_t;

static void on_hup(dynqd_server_t *s);

static void rescan_finish(rescan_t *rs) {
  dynqd_server_t *s = rs->srv;
  if (rs->startup) {
    log_notice("%d model%s loaded from %s", rs->loaded, rs->loaded == 1 ? "" : "s",
               s->cfg->models_dir ? s->cfg->models_dir : "(none)");
    s->starting = 0;
    for (dynqd_conn_t *c = s->conns, *n; c; c = n) {
      n = c->next;
      dynqd__conn_resume(c);  /* frames that waited for the models */
    }
  } else {
    s->reloads++;
    log_notice("SIGHUP: %d model%s loaded, %d reloaded, %d unloaded, %d failed; "
               "serving %d", rs->loaded, rs->loaded == 1 ? "" : "s", rs->reloaded,
               rs->unloaded, rs->failed, s->reg.n);
  }
  s->rescanning = 0;
  free(rs);
  if (!s->draining) send_status(s, "READY=1\n");
  dynqd__server_check_drained(s);
  if (s->hup_again && !s->draining) {
    s->hup_again = 0;
    on_hup(s);
  }
}

static void rescan_loaded(void *arg, const dynqd_load_result_t *res) {
  rescan_t *rs = arg;
  dynqd_server_t *s = rs->srv;
  s->loads_outstanding--;
  int reload = dynqd__registry_find(&s->reg, res->name) != NULL && res->version != 1;
  if (res->rc != 0) {
    int had = dynqd__registry_find(&s->reg, res->name) != NULL;
    log_err("%s model file %s/%s: %s (%s)%s", had ? "cannot reload" : "skipping",
            s->reg.dir, res->rel, res->err, dynq_err_name(res->rc),
            had ? "; the loaded version keeps serving" : "");
    rs->failed++;
  } else if (reload) {
    rs->reloaded++;
  } else {
    rs->loaded++;
  }
  if (--rs->pending == 0) rescan_finish(rs);
}

static void rescan_start(dynqd_server_t *s, int startup) {
  rescan_t *rs = calloc(1, sizeof(*rs));
  if (rs == NULL) {
    log_err("out of memory scanning %s; models unchanged", s->reg.dir);
    s->starting = 0;
    return;
  }
  rs->srv = s;
  rs->startup = startup;
  s->rescanning = 1;
  dynqd_scan_t sc;
  dynqd__registry_scan(&s->reg, &sc);
  rs->unloaded = sc.unloaded;
  rs->failed = sc.failed;
  rs->pending = 1;  /* held until every load is started */
  for (int i = 0; i < sc.n; i++) {
    int rc = dynqd__load_start(s->loop, &s->reg, sc.v[i].name, sc.v[i].file, rescan_loaded,
                               rs);
    if (rc != 0) {
      log_err("cannot load model file %s/%s: %s", s->reg.dir, sc.v[i].file,
              rc < 0 && rc > -4096 ? uv_strerror(rc) : dynq_strerror(rc));
      rs->failed++;
      continue;
    }
    rs->pending++;
    s->loads_outstanding++;
  }
  dynqd__scan_free(&sc);
  if (--rs->pending == 0) rescan_finish(rs);
}

static void on_hup(dynqd_server_t *s) {
  if (s->draining) {
    log_notice("SIGHUP while draining: ignored");
    return;
  }
  if (s->rescanning) {  /* the running scan may have missed a change */
    s->hup_again = 1;
    return;
  }
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  dynqd__notifyf("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
                 (unsigned long long)ts.tv_sec * 1000000ULL +
                     (unsigned long long)ts.tv_nsec / 1000);
  log_notice("SIGHUP: re-reading %s and rescanning %s", s->cfg->config_path,
             s->reg.dir ? s->reg.dir : "(no model directory)");
  if (dynqd__config_reload(s->cfg) == 0) {
    dynqd__log_configure(s->cfg->log_level, s->cfg->log_rate);
    s->reg.warm_max_elems = s->cfg->max_tensor_elems;
    s->reg.warm_max_bytes = s->cfg->warmup_max_bytes;
    s->reg.max_value_bytes = dynqd__value_cap(s->cfg);
    dynqd__rpc_infer_limits_changed(s);
  }
  rescan_start(s, 0);
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
int dynqd__check_config(const dynqd_config_t *cfg) {
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
    uint64_t done0 = s->sched.completions, until;
    /* frames_iter: frames read in the iteration that just ran (on_prepare
     * zeroes it before each poll). */
    if (uv_run(s->loop, UV_RUN_ONCE) == 0) return;
    if (s->frames_iter == 0 && s->sched.completions == done0) continue;
    until = uv_hrtime() + spin_ns;
    while (!s->draining && (s->cfg->loop_spin_busy || s->sched.outstanding == 0)) {
      done0 = s->sched.completions;
      if (uv_run(s->loop, UV_RUN_NOWAIT) == 0) return;
      if (s->frames_iter > 0 || s->sched.completions != done0)
        until = uv_hrtime() + spin_ns;
      else if (uv_hrtime() >= until)
        break;
      else
        sched_yield();  /* a client or worker waiting for this CPU goes first */
    }
  }
}


/* ---- start and stop ---- */

int dynqd__server_init(dynqd_server_t *s, uv_loop_t *loop, dynqd_config_t *cfg) {
  int rc;
  memset(s, 0, sizeof(*s));
  s->exit_code = -1;
  s->cfg = cfg;
  s->loop = loop;
  s->start_ns = uv_hrtime();
  s->on_request = dynqd__dispatch;
  s->reader = dynq__rpc_reader_new();
  s->peer_ok = dynqd__admin_peer_ok;
  s->sessions.loop = loop;
  s->sessions.cfg = cfg;
  s->reg.warm_max_elems = cfg->max_tensor_elems;
  s->reg.warm_max_bytes = cfg->warmup_max_bytes;
  s->reg.max_value_bytes = dynqd__value_cap(cfg);
  s->reg.cfg = cfg;
  dynqd__conn_add_close_hook(s, dynqd__rpc_session_conn_closed, s);
  dynqd__conn_add_close_hook(s, dynqd__rpc_shm_conn_closed, s);

  rc = dynqd__listener_open(s);
  if (rc != 0) return rc;
  rc = dynqd__sched_start(&s->sched, loop, cfg->workers, cfg->queue, cfg->worker_spin_us,
                          on_jobs_done, s);
  if (rc != 0) {
    log_err("cannot start %d worker threads: %s", cfg->workers,
            rc > -4096 ? strerror(-rc) : dynq_strerror(rc));
    return rc;
  }
  pthread_mutex_lock(&s->sched.mu);
  pthread_mutex_unlock(&s->sched.mu);
  rc = dynqd__shadow_start(&s->shadow, cfg, &s->sched);
  if (rc != 0) {
    log_err("cannot start the shadow thread: %s", strerror(-rc));
    return rc;
  }
  uv_prepare_init(loop, &s->prep);
  s->prep.data = s;
  uv_prepare_start(&s->prep, on_prepare);
  uv_unref((uv_handle_t *)&s->prep);  /* never keeps the loop alive */
  uv_timer_init(loop, &s->drain_timer);
  s->drain_timer.data = s;
  uv_timer_init(loop, &s->watchdog_timer);
  s->watchdog_timer.data = s;
  dynqd__conn_tick_start(s);
  uv_signal_t *sigs[] = {&s->sig_term, &s->sig_int, &s->sig_hup};
  int signums[] = {SIGTERM, SIGINT, SIGHUP};
  for (int i = 0; i < 3; i++) {
    uv_signal_init(loop, sigs[i]);
    sigs[i]->data = s;
    rc = uv_signal_start(sigs[i], on_signal, signums[i]);
    if (rc != 0) {
      log_err("cannot handle signal %d: %s", signums[i], uv_strerror(rc));
      return rc;
    }
  }
  start_watchdog(s);
  if (dynqd__registry_init(&s->reg, cfg->models_dir) == 0 && s->reg.dir != NULL) {
    s->starting = 1;
    rescan_start(s, 1);  /* READY=1 when its loads are back */
  } else {
    log_notice("0 models loaded from %s", cfg->models_dir ? cfg->models_dir : "(none)");
    send_status(s, "READY=1\n");
  }
  return 0;
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int dynqd__server_run(dynqd_server_t *s) {
  run_loop(s);
  return s->exit_code > 0 ? s->exit_code : 0;
}

void dynqd__server_fini(dynqd_server_t *s) {
  /* A failed start can leave handles open that are not active (a listener
   * whose bind failed), which uv_loop_alive does not count but which keep
   * uv_loop_close from freeing the loop: close whatever is still open. */
  if (s->loop != NULL) {
    uv_walk(s->loop, close_walk, NULL);
    uv_run(s->loop, UV_RUN_DEFAULT);
  }
  dynqd__sched_stop(&s->sched);
  dynqd__shadow_stop(&s->shadow);
  dynqd__rpc_infer_pool_free(s);  /* the jobs sched_stop finished went there */
  dynqd__sessions_free(&s->sessions);  /* detached ones */
  dynqd__stats_free(&s->stats);
  dynqd__registry_free(&s->reg);
  dynqd__listener_unlink(s);
  dynqd__peers_free(&s->peers);  /* last: sessions and regions pointed at them */
  s->reader = dynq__rpc_reader_free(s->reader);
}
