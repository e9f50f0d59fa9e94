/*
 * dynqd internals, by layer.  Calls go one way only (`meson test
 * daemon-cycles`, tests/check-cycles.py, checks it on the built objects;
 * docs/HACKING.md draws it):
 *
 *   main.c ........ arguments, engine init, then server.c
 *   server.c ...... start-up, signals, drain, the loop: wires the layers
 *   rpc layer ..... dispatch.c (method table: admin check, params rule,
 *                   deferred answers), reply.c (answer builder),
 *                   rpc_*.c handlers: decode params, call a service, reply
 *   services ...... registry.c + loader.c (models), sessions.c, shm.c,
 *                   stats.c, scheduler.c (pool, batching, inline policy),
 *                   infer.c (running requests), shadow.c (FP32 re-runs),
 *                   peers.c (per-uid accounting): no connection, no
 *                   msgpack; a model's inputs and outputs come from its
 *                   signature (dynq__model_signature), not its graph
 *   transport ..... listener.c (socket), conn.c (framing, I/O, close
 *                   hooks); calls the dispatcher through server->on_request
 *   base .......... config.c, log.c, notify.c, admin.c (peer credentials),
 *                   drain.c (the drain's end condition)
 *
 * Threads: the loop thread owns every uv handle, every connection, the
 * registry, sessions, shm regions and all refcounts.  Worker threads only
 * touch a job (which they own while running it), the scheduler queue
 * (under sched->mu) and the completion stack (atomic), and read a job's
 * cancel flag (atomic); a worker with direct answers also writes their
 * connection's socket while it holds the socket's token, conn->wstate
 * (conn.c: while a worker may hold it, the loop neither writes nor closes
 * it).  libuv's pool threads load models
 * (dynqd__registry_prepare): they read the model directory, the warm-up
 * bounds and the config's [batch.MODEL] sections, none of which changes
 * while a load runs.
 */
#ifndef DYNQD_H
#define DYNQD_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <uv.h>

#include "model.h"
#include "proto/methods.h"
#include "proto/proto-tensor.h"
#include "tensor.h"

/* ================================ base ================================= */

/* ---- config (config.c) ---- */

typedef struct dynqd_config {
  char *socket_path;     /* NULL: default chain; owned (strdup) */
  char *models_dir;      /* NULL: no models; owned */
  int workers;           /* 1..64 */
  int queue;             /* jobs waiting for a worker, 1..1M */
  size_t max_frame;      /* bytes of one request frame */
  int max_depth;         /* msgpack nesting */
  uint64_t max_elems;    /* declared elements per frame */
  int max_inflight;      /* per connection: jobs queued or running */
  size_t max_output;     /* per connection: bytes waiting in uv_write */
  int max_conns;         /* open connections */
  int64_t max_tensor_elems; /* one request tensor, and a model's warm-up input */
  uint64_t warmup_max_bytes; /* all warm-up inputs of a model together */
  uint64_t max_value_bytes;  /* one tensor a run computes; 0: an eighth of
                                physical memory (dynqd__value_cap) */
  int max_run_ms;        /* a run computing longer is stopped (ELIMIT); 0: none */
  int drain_timeout_s;
  int log_level;         /* LOG_ERR..LOG_DEBUG */
  char *config_path;     /* --config; NULL: /etc/dynq/dynqd.conf if it exists; owned */
  int config_optional;   /* 1: config_path is the default, which may be absent */
  char *admin_group;     /* members may call admin methods; NULL: none; owned */
  int max_sessions;      /* open sessions, all connections; 0..1M */
  int session_idle_timeout_ms; /* default and cap of a session's idle timeout */
  int log_rate;          /* log lines per second before suppression; 0: unlimited */
  int watchdog;          /* 1: send WATCHDOG=1 when WATCHDOG_USEC is set */
  int check_only;        /* -n: check the config and the model dir, exit 0/2 */
  int max_shm_regions;   /* per connection; 0 disables shm.register */
  uint64_t max_shm_bytes; /* one region's size */
  int batch_max;         /* global default per model; <= 1: batching off */
  int batch_delay_us;    /* how long a worker waits to fill a batch */
  int coalesce_max;      /* models without batching: requests already queued
                            together merge, up to this many, with no delay;
                            <= 1: never */
  struct dynqd_batch_rule *batch_rules; /* per-model overrides; owned */
  int n_batch_rules;
  int worker_spin_us;    /* an idle worker polls the queue this long before
                            sleeping on the condvar; 0..1000 */
  int inline_max_us;     /* a request predicted to compute within this runs
                            on the loop thread when the loop is quiet, or in
                            the loop's own batch under load; 0 (never)..1000 */
  int loop_spin_us;      /* after traffic, the loop polls this long without
                            sleeping while no job is out; 0 (off)..1000 */
  int loop_spin_busy;    /* 1: the loop spin goes on while jobs are out too */
  double shadow_rate;    /* fraction of INT8 requests re-run on the FP32 path
                            when dynqd is idle (shadow.c); 0 (off)..1 */
  double shadow_alert;   /* relL2 above which a shadowed request warns; 0: off */
  int shadow_window_s;   /* the alert logs at most once per window per model */
  /* What one local peer may hold.  "per uid" caps count everything of the
   * peers running as that uid; admin peers (root, dynqd's uid,
   * admin_group) are exempt from them.  0 means no cap where noted. */
  int max_conns_per_uid;       /* 0: none */
  int idle_timeout_s;          /* close a connection idle this long; 0: never */
  uint64_t max_buffers_total;  /* read buffers + unsent output + queued requests,
                                  all connections */
  int max_shm_regions_total;   /* regions mapped, all connections */
  int max_shm_regions_per_uid; /* 0: none */
  uint64_t max_shm_mapped_total;   /* bytes mapped, all connections */
  uint64_t max_shm_mapped_per_uid; /* 0: none */
  int max_sessions_per_uid;    /* 0: none */
} dynqd_config_t;

/* A `[batch.MODEL]` section of the config file: the per-model settings
 * (batching, shadow rate, warm-up shapes).  Fixed after start-up (SIGHUP
 * leaves them), so pool threads may read them. */
typedef struct dynqd_batch_rule {
  char *model;           /* owned */
  int max_batch;         /* <= 1: off for this model */
  int max_delay_us;
  /* `axes = NAME:AXIS,...`: the batch axis of named inputs/outputs (the
   * rest follow the default rule in infer.c).  Syntax checked at parse;
   * names and ranks are checked against the model per request. */
  char *axes_text;       /* as written, for SIGHUP comparison; owned; NULL: none */
  int n_axes;
  char **axis_names;     /* owned, each owned */
  int *axis_vals;        /* owned; 0..DYNQ_MAX_RANK-1 */
  double shadow_rate;    /* `shadow_rate` of the section; < 0: not set */
  /* `warmup = NAME:DIMS,...`: input shapes for the warm-up run at load
   * (registry.c), for models whose symbolic dims cannot all be 1.  Inputs
   * not listed take the generic shape. */
  char *warmup_text;     /* as written, for SIGHUP comparison; owned; NULL: none */
  int n_warm;
  char **warm_names;     /* owned, each owned */
  int *warm_rank;        /* owned; 0 (scalar)..DYNQ_MAX_RANK */
  int64_t (*warm_dims)[DYNQ_MAX_RANK]; /* owned; each dim 0..DYNQ_MAX_ELEMS */
} dynqd_batch_rule_t;

/* Parse argv into cfg (defaults first, then the config file, then the
 * command line).  Returns 0 to run, 1 when --help or --version was handled
 * (exit 0), or -1 after printing an error to stderr (exit 2). */
int dynqd__config_parse(dynqd_config_t *cfg, int argc, char **argv);
void dynqd__config_free(dynqd_config_t *cfg);
/* SIGHUP: re-read cfg->config_path into a fresh config, copy reloadable
 * keys that the command line did not set into cfg, log ignored changes.
 * 0, or negative after logging the bad line (cfg unchanged). */
int dynqd__config_reload(dynqd_config_t *cfg);
/* max_batch / max_delay_us for a model name (rule, else the defaults). */
void dynqd__batch_config(const dynqd_config_t *cfg, const char *model,
                         int *ret_max, int *ret_delay_us);
/* Valid model name: 1-63 of [A-Za-z0-9_.-], not starting with '.'
 * (config.c: [batch.NAME] sections and the registry share the rule). */
int dynqd__model_name_ok(const char *s, size_t n);
/* The most bytes one tensor of a run may take: max_value_bytes, or when
 * it is 0 an eighth of physical memory. */
int64_t dynqd__value_cap(const dynqd_config_t *cfg);
/* The config rule of a model name, or NULL (global defaults only). */
const dynqd_batch_rule_t *dynqd__batch_rule(const dynqd_config_t *cfg, const char *model);
/* Bytes the last config file read took in: never more than the file cap
 * (1 MiB) + 1, whatever the file is (the fuzz target checks it). */
#define DYNQD_CONFIG_MAX_BYTES ((size_t)1 << 20)
extern size_t dynqd__config_bytes_read;

/* ---- logging (log.c) ---- */

void dynqd__log_init(int level);
/* 1 when js ("DEV:INODE", as systemd sets JOURNAL_STREAM) names the file
 * open on fd (fstat's st_dev and st_ino), else 0 (NULL, junk, no match). */
int dynqd__journal_stream_is(const char *js, int fd);
/* Level and rate limit (lines/s per message class; 0 = unlimited);
 * callable again on SIGHUP. */
void dynqd__log_configure(int level, int rate);
void dynqd__log(int prio, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define log_err(...) dynqd__log(3, __VA_ARGS__)
#define log_warn(...) dynqd__log(4, __VA_ARGS__)
#define log_notice(...) dynqd__log(5, __VA_ARGS__)
#define log_info(...) dynqd__log(6, __VA_ARGS__)
#define log_debug(...) dynqd__log(7, __VA_ARGS__)
int dynqd__log_level_from_name(const char *s);  /* -1 if unknown */

/* ---- sd_notify (notify.c) ---- */

/* Send one datagram to $NOTIFY_SOCKET; 0 when sent or not under systemd,
 * else -errno.  Never blocks. */
int dynqd__notify(const char *state);
int dynqd__notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- peer credentials (admin.c) ---- */

/* Whether the peer of fd may call admin methods (0/1): uid 0, dynqd's
 * uid, or a member of admin_group.  why names the peer when refused. */
int dynqd__admin_peer_ok(int fd, const char *admin_group, char *why,
                         size_t whylen);

/* ============================== services =============================== */

/* ---- row independence (rowcheck.c) ----
 *
 * Whether merging requests of a model along its batch axes hands each
 * one exactly its own answer, measured once per model version at load
 * (prepare, after the warm-up).  Merged only when it says so. */
typedef struct dynqd_rows {
  int ok;              /* 1: measured, every output splits right */
  uint64_t *out_axes;  /* owned, per output: bit d set when the merged
                          result is the two answers side by side along d */
  char *why;           /* owned; why not (ok == 0), for the log */
} dynqd_rows_t;
/* Runs m on two inputs of the warm-up shapes (ranks, dims) and on both
 * merged along axes (one per input), each run under the value and time
 * caps (0: none); 0 with ret filled, or -ENOMEM. */
int dynqd__rows_check(const dynq__model_t *m, const int *ranks,
                      int64_t (*dims)[DYNQ_MAX_RANK], const int8_t *axes,
                      int64_t max_value_bytes, int64_t max_run_ms, dynqd_rows_t *ret);
/* A tensor seen as [outer, rows, inner] along axis: outer = elements
 * before the axis, inner = bytes of one slice past it (merging in
 * infer.c, the row check). */
static inline void dynqd__split_shape(const dynq__tensor_t *t, int axis, size_t *outer,
                                      size_t *inner) {
  size_t o = 1, in = dynq__dtype_size(t->dtype);
  for (int d = 0; d < axis; d++) o *= (size_t)t->dims[d];
  for (int d = axis + 1; d < t->rank; d++) in *= (size_t)t->dims[d];
  *outer = o;
  *inner = in;
}

/* May requests merged along axes (ni inputs, then no outputs) run as one? */
int dynqd__rows_allow(const dynqd_rows_t *r, const int8_t *axes, int ni, int no);
int dynqd__rows_copy(dynqd_rows_t *dst, const dynqd_rows_t *src, int no);
void dynqd__rows_clear(dynqd_rows_t *r);

/* ---- model registry (registry.c) ----
 *
 * Model lifecycle (per name), all transitions on the loop thread:
 *
 *   absent --load ok--> v1 --reload ok--> v2 --...--> vN --unload--> absent
 *            load fail: stays absent      reload fail: vN keeps serving
 *
 * A swap replaces entry->model; the old model lives on until the last job
 * holding a ref finishes.  Entry pointers are valid only until the next
 * registry change (the array may move): never keep one across a callback.
 */
typedef struct dynqd_model_entry {
  char *name;              /* file name without .dynq; owned */
  dynq__model_t *model;    /* one ref owned (the current version) */
  int version;             /* 1 on first load, +1 per successful reload */
  char *file;              /* path relative to the model dir; owned */
  uint64_t f_dev, f_ino, f_size;
  int64_t f_mtime_ns;      /* identity of the file as loaded */
  struct dynqd_plan *plan; /* one ref, made at the first request (NULL
                              until then); dropped when model changes */
  dynqd_rows_t rows;       /* the version's row check (ok 0: never merged) */
} dynqd_model_entry_t;

/* What every plain infer request (no session) of one model version
 * shares, decided once instead of per request: its batching and the
 * batch axes (the config's [batch] sections are fixed after start-up).
 * A request holds a ref of it instead of one of the model, so neither
 * the model's atomic count nor the axes are written per request.
 * Loop thread only, except axes, which workers read (on a cache line of
 * its own: the loop writes refs per request). */
typedef struct dynqd_plan {
  int refs;                /* the entry's, and one per request holding it */
  dynq__model_t *model;    /* one ref */
  int batch_max;           /* dynqd__batch_config's: > 1 batched */
  int batch_delay_us;
  int per_tensor;          /* per-tensor scales: never batched */
  int axes_rc;             /* dynqd__batch_axes's result for a plain request */
  char *axes_err;          /* owned; its message when axes_rc != 0 */
  int8_t *axes;            /* owned (dynq__aligned_alloc, alone on its lines):
                              n_inputs + n_outputs entries; NULL when the
                              model is never batched */
} dynqd_plan_t;

typedef struct dynqd_registry {
  dynqd_model_entry_t *v;  /* owned, sorted by name */
  int n;
  uint64_t gen;            /* +1 whenever v, n or an entry changes: a
                              pointer into v kept with gen is valid while
                              they are equal */
  char *dir;               /* realpath of the model dir; NULL: none; owned */
  int64_t warm_max_elems;  /* warm-up bounds (config): an input above */
  uint64_t warm_max_bytes; /*   either is refused / not warmed (registry.c) */
  int64_t max_value_bytes; /* one tensor of the warm-up run (dynqd__value_cap) */
  const dynqd_config_t *cfg; /* NULL, or its [batch.NAME] warmup shapes
                                (fixed after start-up) */
} dynqd_registry_t;

/* Resolve the model dir (nothing loaded yet).  0, or -errno after logging
 * (the registry then serves no models). */
int dynqd__registry_init(dynqd_registry_t *r, const char *dir);
/* "name" (current version) or "name@N" (only if N is the current one). */
const dynqd_model_entry_t *dynqd__registry_find(const dynqd_registry_t *r,
                                                const char *name);
void dynqd__registry_free(dynqd_registry_t *r);

/* Publishing runs in two steps, so that the slow one can run off the
 * loop: prepare opens, checks and warms the file (touches only r->dir, the
 * warm-up bounds and the config's per-model sections, fixed once
 * initialised: safe on any thread); commit
 * makes it the current version of name (the loop thread; it may still
 * fail: the model limit, memory).  prepared_clear drops what commit did
 * not take. */
typedef struct dynqd_prepared {
  dynq__model_t *model;    /* one ref, or NULL */
  char path[PATH_MAX];     /* resolved, for messages */
  uint64_t f_dev, f_ino, f_size;
  int64_t f_mtime_ns;
  dynqd_rows_t rows;       /* its row check, moved into the entry */
} dynqd_prepared_t;
int dynqd__registry_prepare(const dynqd_registry_t *r, const char *name, const char *rel,
                            dynqd_prepared_t *ret, char *err, size_t errlen);
int dynqd__registry_commit(dynqd_registry_t *r, const char *name, const char *rel,
                           dynqd_prepared_t *p, int *ret_version, char *err,
                           size_t errlen);
void dynqd__prepared_clear(dynqd_prepared_t *p);
/* Drop name; 0 or DYNQ_ENOMODEL. */
int dynqd__registry_unload(dynqd_registry_t *r, const char *name);
/* Install the SIGBUS handler that survives a model file cut short under
 * its mapping (dynq__model_fault).  0 or -errno. */
int dynqd__registry_guard_install(void);
/* The plan of e (registry r's entry) under cfg, made at the first call
 * for its model version; NULL when out of memory (the caller decides per
 * request then).  The caller takes no ref: see dynqd__plan_ref. */
dynqd_plan_t *dynqd__registry_plan_make(dynqd_registry_t *r, const dynqd_model_entry_t *e,
                                        const dynqd_config_t *cfg);
static inline dynqd_plan_t *dynqd__registry_plan(dynqd_registry_t *r,
                                                 const dynqd_model_entry_t *e,
                                                 const dynqd_config_t *cfg) {
  return e->plan != NULL ? e->plan : dynqd__registry_plan_make(r, e, cfg);
}
static inline dynqd_plan_t *dynqd__plan_ref(dynqd_plan_t *p) {
  p->refs++;
  return p;
}
void dynqd__plan_free(dynqd_plan_t *p);
static inline void dynqd__plan_unref(dynqd_plan_t *p) {  /* NULL-safe */
  if (p != NULL && --p->refs == 0) dynqd__plan_free(p);
}
/* After a run of m: log once that m's file changed under it (broken). */
void dynqd__registry_check_broken(dynq__model_t *m, const char *name);

/* What a directory scan found to do (loop thread, cheap: readdir + stat).
 * Removed files are unloaded by the scan itself; loads and reloads are
 * listed for the loader.  `failed` counts files skipped at once. */
typedef struct dynqd_scan_item {
  char name[64];
  char file[256];          /* relative to the model dir */
  int reload;              /* the name is loaded (from an older file) */
} dynqd_scan_item_t;
typedef struct dynqd_scan {
  dynqd_scan_item_t *v;    /* owned */
  int n;
  int unloaded, failed;
} dynqd_scan_t;
void dynqd__registry_scan(dynqd_registry_t *r, dynqd_scan_t *ret);
void dynqd__scan_free(dynqd_scan_t *s);

/* ---- loading off the loop (loader.c) ----
 * prepare on libuv's thread pool, commit on the loop, then cb (loop). */
typedef struct dynqd_load_result {
  const char *name;        /* valid during cb */
  const char *rel;
  int rc;                  /* 0 or the error */
  int version;             /* on success */
  const char *err;         /* on failure: why */
} dynqd_load_result_t;
typedef void (*dynqd_load_cb)(void *arg, const dynqd_load_result_t *res);
/* 0 (cb runs later, exactly once) or a negative code (cb never runs). */
int dynqd__load_start(uv_loop_t *loop, dynqd_registry_t *r, const char *name,
                      const char *rel, dynqd_load_cb cb, void *arg);

/* ---- stats (stats.c) ---- */

/* Log-scale histogram: 8 sub-buckets per power of two, so a bucket's upper
 * bound is within 12.5 % of any value in it.  Values in microseconds. */
#define DYNQD_HIST_BUCKETS (8 * 42)
typedef struct dynqd_hist {
  uint64_t count;
  uint64_t sum;               /* of the values added (Prometheus _sum) */
  uint64_t b[DYNQD_HIST_BUCKETS];
} dynqd_hist_t;
void dynqd__hist_add(dynqd_hist_t *h, uint64_t v);
/* Upper bound of the bucket holding quantile q (0..1); 0 when empty. */
uint64_t dynqd__hist_quantile(const dynqd_hist_t *h, double q);
/* Largest value bucket idx holds. */
uint64_t dynqd__hist_upper(int idx);

/* What shadow FP32 re-runs measured for one model (shadow.c). */
typedef struct dynqd_shadow_stats {
  double rate;                /* model.load's shadow_rate, when rate_set */
  int rate_set;
  double acc;                 /* sampler: += rate per request, shadow at >= 1 */
  uint64_t runs;              /* re-run and compared */
  uint64_t dropped;           /* sampled but not run: dynqd was busy */
  uint64_t decisions_changed; /* runs where an arg-max or a 0.5 threshold moved */
  uint64_t alerts;            /* runs above shadow_alert */
  dynqd_hist_t rel_l2_ppm;    /* relL2 of INT8 vs FP32 (largest over outputs), x 1e6 */
  dynqd_hist_t max_abs_ppm;   /* max |INT8 - FP32| over outputs, x 1e6 */
  uint64_t warn_until_ns;     /* health shows a quality warning until then */
  double warn_value;          /* the relL2 that raised it */
} dynqd_shadow_stats_t;

typedef struct dynqd_mstats {
  char *name;                 /* owned */
  uint64_t requests, errors;
  dynqd_hist_t queue_us, compute_us;
  dynqd_shadow_stats_t shadow;
  double ns_per_elem;         /* moving average of one-thread compute time per
                                 input element; 0: not known yet */
  double ns_per_elem_merged;  /* the same in merged runs (a batch's time over
                                 the elements of all its requests) */
} dynqd_mstats_t;

typedef struct dynqd_stats {
  uint64_t requests_total, errors_total, overloads_total, timeouts_total;
  uint64_t inline_total;      /* infers run on the loop thread */
  dynqd_mstats_t **m;         /* owned, each owned; stable pointers */
  int n, cap;
} dynqd_stats_t;

/* One finished run as the stats see it. */
typedef struct dynqd_run_sample {
  int status;                 /* 0 or the error answered */
  int64_t queue_us, compute_us;
  int batched;                /* requests merged into the run */
  int threads;                /* GEMM split width it ran with */
  int64_t in_elems;
} dynqd_run_sample_t;

/* Find or add the record of a model name (NULL on ENOMEM). */
dynqd_mstats_t *dynqd__stats_model(dynqd_stats_t *st, const char *name);
const dynqd_mstats_t *dynqd__stats_find(const dynqd_stats_t *st, const char *name);
/* Count a request answered with code (0 = ok). */
void dynqd__stats_count(dynqd_stats_t *st, dynqd_mstats_t *ms, int code);
/* A run came back: counts, histograms, the inline cost estimate. */
void dynqd__stats_run(dynqd_stats_t *st, dynqd_mstats_t *ms, const dynqd_run_sample_t *r);
void dynqd__stats_free(dynqd_stats_t *st);

/* ---- scheduler (scheduler.c): worker pool, batching, inline policy ----
 *
 * A job is any work for the workers: the caller embeds dynqd_job_t first
 * in its own struct and gives the ops.  Job lifecycle:
 *   submit (loop) --flush--> queued --worker--> run / run_batch / expire /
 *   skipped (cancel set) --> done (loop, exactly once; frees the job)
 */
typedef struct dynqd_job dynqd_job_t;
typedef struct dynqd_job_ops {
  void (*run)(dynqd_job_t *j);                 /* worker (or loop, inline) */
  /* worker: run v[0..n), n >= 2, as one; 0, or nonzero to have each run
   * alone instead (then none was answered).  NULL: never batched. */
  int (*run_batch)(dynqd_job_t **v, int n);
  /* worker, queue lock held: b may join a batch led by a */
  int (*compatible)(const dynqd_job_t *a, const dynqd_job_t *b);
  /* worker: not run because its deadline passed; msg says by how much */
  void (*expire)(dynqd_job_t *j, const char *msg);
  /* loop: back from the workers (ran, expired or skipped) */
  void (*done)(dynqd_job_t *j);
  /* Bytes from the job's start that done reads and writes (the caller's
   * struct), or 0: while one job's done runs, the loop prefetches the
   * next job's, which a worker wrote last (each line another CPU holds
   * costs a round trip between the CPUs; walking the completions one
   * miss at a time paid them back to back). */
  size_t done_bytes;
} dynqd_job_ops_t;

struct dynqd_job {
  dynqd_job_t *next;          /* queue / batch / completion link */
  const dynqd_job_ops_t *ops;
  const atomic_int *cancel;   /* set: nobody waits for the answer (skip it) */
  uint64_t t_arrive_ns;       /* uv_hrtime when its request was complete */
  uint64_t t_queued_ns;       /* when it was submitted */
  uint64_t deadline_ns;       /* 0: none */
  int64_t queue_us;           /* worker: time it waited */
  int batch_max;              /* > 1: may be merged with compatible jobs */
  int batch_delay_us;         /* counted from t_arrive_ns */
  int threads;                /* worker: GEMM split width (1, or the worker
                                 count for a job that started alone) */
  int skipped;                /* worker: cancelled before it started */
  int loop_ok;                /* small: the loop may run it in its own
                                 batch (dynqd__sched_flush); set by the
                                 submitter */
  int64_t cost_ns;            /* predicted one-thread compute (0: not
                                 known); set by the submitter */
  int on_loop;                /* set by the scheduler while the loop runs
                                 it (inline or in the loop's batch) */
  int requeue;                /* set by a run on the loop that outgrew its
                                 prediction and stopped: nothing was
                                 answered or changed; a worker runs it */
};

/* Grouped by who writes what, each group on its own cache lines: moving a
 * line between this machine's vCPUs costs ~0.5-1 us (bench/xcpu-bench), so
 * the loop's per-request bookkeeping must not share a line with the lock
 * and queue the workers take jobs under, nor with the completion stack. */
typedef struct dynqd_sched {
  /* The workers' side: the lock, the queue and who is doing what (under
   * mu, or atomics read unlocked).  The loop comes here once per flush. */
  _Alignas(64) pthread_mutex_t mu;
  pthread_cond_t cv;
  dynqd_job_t *qhead, *qtail;  /* waiting jobs, FIFO */
  atomic_int qlen;             /* jobs in it; changed under mu, read anywhere */
  int sleeping;                /* workers in pthread_cond_wait (under mu) */
  uint64_t woken;              /* sleepers flushes signalled (broadcast: all
                                  of them); under mu, for tests */
  /* Wake-ups: an idle worker first polls `submits` for spin_us, so a
   * request arriving soon after the last one is picked up without a futex
   * wake-up; flush signals one sleeper only when the queue holds more jobs
   * than there are spinners to take them. */
  int running;                 /* jobs being run: by workers, and the
                                  loop's own batch while it runs */
  int spinning;                /* workers polling for work */
  int batch_waiters;           /* workers filling a batch */
  int batch_room;              /* least room left in a batch being filled, set
                                  by its waiter: flush wakes the waiters only
                                  once that many jobs are queued (or a sleeper
                                  must wake anyway) */
  atomic_uint submits;         /* bumped by every flush; polled unlocked */

  /* Read by both sides, written rarely: set before the workers start, or
   * once (stop). */
  _Alignas(64) int stop;       /* workers exit when the queue is empty */
  int qcap;
  int spin_us;
  int width;                   /* workers asked for: a lone job's split width */
  int n_threads;
  pthread_t *threads;          /* owned */

  /* Finished jobs, any order: a lock-free stack (workers push, the loop
   * takes it whole). */
  _Alignas(64) _Atomic(dynqd_job_t *) done;

  /* The loop thread's own, touched per request. */
  /* Jobs submitted during this loop iteration, handed to the workers
   * together by dynqd__sched_flush (one lock, one wake-up decision per
   * iteration instead of per job). */
  _Alignas(64) dynqd_job_t *phead;
  dynqd_job_t *ptail;
  int plen;
  int outstanding;             /* submitted, not yet done */
  uint64_t completions;        /* wake-ups that delivered a job */
  void (*on_done)(void *arg);  /* after each batch of completions */
  void *on_done_arg;
  int async_init;
  uint64_t loop_jobs;          /* jobs the loop ran in its own batches
                                  (dynqd__sched_flush) */
  uint64_t handoffs;           /* jobs the loop began, stopped for
                                  outgrowing their prediction and handed
                                  to the workers (job.requeue) */

  /* Wakes the loop for `done`; workers write its pending flag. */
  _Alignas(64) uv_async_t async;
} dynqd_sched_t;

/* Start n_threads workers (spin_us: how long an idle one polls before
 * sleeping).  on_done(arg) runs on the loop after completions. */
int dynqd__sched_start(dynqd_sched_t *p, uv_loop_t *loop, int n_threads, int qcap,
                       int spin_us, void (*on_done)(void *), void *arg);
/* Loop thread: 0, or DYNQ_EOVERLOAD when the queue is full (job
 * untouched).  The job reaches the workers at the next flush. */
int dynqd__sched_submit(dynqd_sched_t *p, dynqd_job_t *j);
/* The same with the caller's uv_hrtime() reading of now (a clock read in
 * a VM costs as much as a few hundred instructions). */
int dynqd__sched_submit_at(dynqd_sched_t *p, dynqd_job_t *j, uint64_t now);
/* Loop thread, before it polls: run the first batch of loop_ok jobs
 * submitted (then their done), hand the rest to the workers. */
void dynqd__sched_flush(dynqd_sched_t *p);
/* Loop thread: nothing submitted, queued, or being run by a worker. */
int dynqd__sched_idle(dynqd_sched_t *p);
int dynqd__sched_queued(dynqd_sched_t *p);
/* Loop thread: take the finished jobs back now (their done), as the
 * wake-up would. */
void dynqd__sched_collect(dynqd_sched_t *p);
/* Loop thread: run j here and now (threads = 1), then its done; 0.  1
 * when its run outgrew the loop's caps (job.requeue): then nothing was
 * answered and a worker runs it after the next flush. */
int dynqd__sched_run_inline(dynqd_sched_t *p, dynqd_job_t *j);
/* Let workers finish the queue, join them, free what never came back.
 * The async handle is closed by whoever closes every handle. */
void dynqd__sched_stop(dynqd_sched_t *p);
/* Inline policy: a request predicted to compute within limit_us (from
 * the model's measured cost) runs on the loop when the loop is quiet (at
 * most one frame this iteration and the last) and no worker is busy. */
int dynqd__sched_inline_ok(dynqd_sched_t *p, int limit_us, double ns_per_elem,
                           int64_t elems, int frames_iter, int frames_prev);

/* ---- shadow FP32 telemetry (shadow.c) ----
 *
 * A sampled INT8 request is re-run on the FP32 path after it was answered,
 * on one thread of its own at SCHED_IDLE priority (it runs only on CPU
 * time nothing else wants), and only when the scheduler has nothing
 * waiting; otherwise, or when a shadow run is already pending, the sample
 * is dropped and counted.  Results come back to the loop by polling
 * (dynqd__shadow_collect), never by waking it.
 */
typedef struct dynqd_shadow_job dynqd_shadow_job_t;
/* A sampled session's FP32 twin: its own state, advanced by the shadow
 * thread step after step in order.  Shared by the session and its pending
 * shadow runs (refs, atomic); abandoned for good when one step could not
 * be shadowed, since a state that missed a step measures nothing. */
typedef struct dynqd_shadow_sess dynqd_shadow_sess_t;
typedef struct dynqd_shadow {
  const dynqd_config_t *cfg;
  dynqd_sched_t *sched;       /* its queue length: busy means drop */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  dynqd_shadow_job_t *pending; /* at most DYNQD_SHADOW_PENDING, FIFO */
  int n_pending;
  dynqd_shadow_job_t *done;   /* back from the thread, not yet counted */
  int stop, started;
  pthread_t thread;
  uint64_t runs_total, dropped_total, decisions_total; /* all models */
} dynqd_shadow_t;
#define DYNQD_SHADOW_PENDING 2

int dynqd__shadow_start(dynqd_shadow_t *sh, const dynqd_config_t *cfg, dynqd_sched_t *sched);
void dynqd__shadow_stop(dynqd_shadow_t *sh);   /* joins; drops what is pending */
/* Loop: the rate that applies to a model (model.load param, else its
 * [batch.NAME] shadow_rate, else the global shadow_rate). */
double dynqd__shadow_rate(const dynqd_shadow_t *sh, const dynqd_mstats_t *ms);
/* Loop: advance the model's sampler; 1 when this request is sampled. */
int dynqd__shadow_sample(dynqd_shadow_t *sh, dynqd_mstats_t *ms);
/* Loop, after the answer went out: re-run inputs[0..n_in) (taken) on the
 * FP32 path of m and compare with the INT8 outputs int8[0..n_out) (taken);
 * dropped (and freed) when the scheduler has work waiting or a shadow run
 * is already pending. */
void dynqd__shadow_submit(dynqd_shadow_t *sh, dynqd_mstats_t *ms, dynq__model_t *m,
                          dynq__tensor_t *inputs, int n_in, dynq__tensor_t *int8, int n_out);
/* Loop: count finished runs into their models' stats (alerts logged). */
void dynqd__shadow_collect(dynqd_shadow_t *sh);
/* Loop, at session.open: a shadow twin when the model's sampler picks this
 * session (NULL otherwise, or without memory). */
dynqd_shadow_sess_t *dynqd__shadow_sess_open(dynqd_shadow_t *sh, dynqd_mstats_t *ms,
                                             int n_bind, const int *bind_in,
                                             const int *bind_out);
/* Whether steps of this twin are still shadowed. */
int dynqd__shadow_sess_live(const dynqd_shadow_sess_t *ss);
/* Stop shadowing it (a step was not shadowed, or the session was reset). */
void dynqd__shadow_sess_abandon(dynqd_shadow_sess_t *ss);
void dynqd__shadow_sess_unref(dynqd_shadow_sess_t *ss);  /* NULL-safe */
/* Like dynqd__shadow_submit, for a step of a shadowed session: the bound
 * inputs are taken from the twin's FP32 state (inputs[] slots of bound
 * inputs are ignored), the bound outputs become its next state; a drop
 * abandons the twin. */
void dynqd__shadow_submit_step(dynqd_shadow_t *sh, dynqd_mstats_t *ms, dynq__model_t *m,
                               dynqd_shadow_sess_t *twin, dynq__tensor_t *inputs, int n_in,
                               dynq__tensor_t *int8, int n_out);
/* ---- per-uid accounting (peers.c) ----
 *
 * One record per uid that ever connected (bounded: only root can make
 * more uids), never freed before exit, so services may keep pointers.
 * Loop thread only. */
typedef struct dynqd_peer {
  uint32_t uid;
  int conns;                  /* open connections */
  int sessions;               /* open sessions it created (detached ones too) */
  int shm_regions;            /* regions mapped */
  uint64_t shm_bytes;         /* bytes of those mappings */
} dynqd_peer_t;

typedef struct dynqd_peers {
  dynqd_peer_t **v;           /* owned, each owned */
  int n, cap;
} dynqd_peers_t;

#define DYNQD_MAX_PEER_UIDS 65536
/* The record of uid (added on first use); NULL when out of memory or the
 * table is full. */
dynqd_peer_t *dynqd__peer_get(dynqd_peers_t *p, uint32_t uid);
void dynqd__peers_free(dynqd_peers_t *p);

/* ---- sessions (sessions.c) ----
 *
 * Session state machine (loop thread):
 *   IDLE --infer--> BUSY --job back--> IDLE (state swapped only on success)
 *   IDLE/BUSY --close / owner gone / idle timeout--> CLOSED (unlisted);
 *   freed when its last ref (list + running job) goes.
 */
typedef struct dynqd_session {
  struct dynqd_session *next; /* service list */
  struct dynqd_session *hnext; /* id table chain */
  uint64_t id;
  const void *owner;          /* opaque owner token; NULL when detached */
  uint32_t uid;               /* who opened it: a detached session answers
                                 only to owners of the same uid */
  dynqd_peer_t *peer;         /* that uid's record (its session count) */
  dynq__model_t *model;       /* one ref */
  char *model_name;           /* owned, for stats */
  int version;                /* of model: what name@N names */
  int n_bind;
  int *bind_in, *bind_out;    /* graph input / output index; owned */
  dynqd_rows_t rows;          /* the model version's row check (a copy) */
  dynq__tensor_t *state;      /* per binding; owned; dtype INVALID until
                                 the first call sizes it */
  int busy, closed, refs;
  uint64_t idle_ms;
  uint64_t last_ns;           /* last use (uv_hrtime) */
  struct dynqd_shadow_sess *shadow; /* one ref; NULL: not shadowed (shadow.c) */
} dynqd_session_t;

typedef struct dynqd_sessions {
  uv_loop_t *loop;
  const dynqd_config_t *cfg;  /* max_sessions, session_idle_timeout_ms */
  dynqd_session_t *list;      /* all open sessions; owned */
  int n;
  dynqd_session_t **tab;      /* id -> session, chained by hnext; owned
                                 array (a power of two), NULL = scan the list */
  size_t tab_cap;
  uv_timer_t timer;           /* idle expiry; inited lazily, unref'd */
  int timer_init;
} dynqd_sessions_t;

/* What session.open asks for. */
typedef struct dynqd_session_req {
  int detached;
  int64_t idle_timeout_ms;    /* 0: the configured default */
  int n_bind;                 /* -1: no bindings given (declared/default pairs) */
  const char *const *bind_in_names, *const *bind_out_names;
} dynqd_session_req_t;

/* 0 and *ret (listed, one ref owned by the list), or an error with err. */
/* Ids are random (63 bits, getrandom): a peer cannot guess another's.
 * uid_cap > 0: at most that many sessions open for peer's uid. */
int dynqd__session_open(dynqd_sessions_t *sv, const void *owner, dynqd_peer_t *peer,
                        int uid_cap, const dynqd_model_entry_t *e,
                        const dynqd_session_req_t *rq, dynqd_session_t **ret, char *err,
                        size_t errlen);
/* The session id of owner, or a detached one opened by the same uid; NULL
 * otherwise (the caller cannot tell "not yours" from "no such session"). */
dynqd_session_t *dynqd__session_find(dynqd_sessions_t *sv, const void *owner, uint32_t uid,
                                     uint64_t id);
/* Back to "not started" (EBUSY while a request runs). */
int dynqd__session_reset(dynqd_sessions_t *sv, dynqd_session_t *ss);
void dynqd__session_close(dynqd_sessions_t *sv, dynqd_session_t *ss, const char *why);
/* Point the bound inputs in[] at the session state (zeros of the declared
 * shape on first use), allocate *ret_new for the next state, mark it busy
 * and take a ref.  0 or an error code with err set. */
int dynqd__session_bind(dynqd_session_t *ss, dynq__tensor_t *in, int n_in,
                        dynq__tensor_t **ret_new, char *err, size_t errlen);
/* The request is back: swap in next (when ok) and release the bind's ref. */
void dynqd__session_done(dynqd_sessions_t *sv, dynqd_session_t *ss, int ok,
                         dynq__tensor_t *next);
/* Whether graph input k is bound to session state. */
int dynqd__session_binds_input(const dynqd_session_t *ss, int k);
/* Close every session of owner (not the detached ones). */
void dynqd__sessions_owner_gone(dynqd_sessions_t *sv, const void *owner);
dynqd_session_t *dynqd__session_unref(dynqd_session_t *ss);
/* At exit (loop gone): drop every session still listed. */
void dynqd__sessions_free(dynqd_sessions_t *sv);

/* ---- shared-memory regions (shm.c) ---- */

typedef struct dynqd_shm_totals {
  int n;                      /* regions mapped, all owners */
  uint64_t bytes;             /* bytes of those mappings */
  uint64_t next_id;
} dynqd_shm_totals_t;

typedef struct dynqd_shm {
  struct dynqd_shm *next;     /* owner's list */
  uint64_t id;
  uint8_t *base;              /* MAP_SHARED mapping; unmapped at refs == 0 */
  uint64_t size;
  int writable;               /* mapped PROT_WRITE (no F_SEAL_WRITE) */
  int refs;                   /* owner's list + running jobs; loop thread only */
  dynqd_shm_totals_t *tot;
  dynqd_peer_t *peer;         /* the uid it counts against (NULL: none) */
} dynqd_shm_t;

/* Caps checked by dynqd__shm_register (0 in a per-uid field: no cap). */
typedef struct dynqd_shm_limits {
  int max_regions;            /* per owner (connection) */
  uint64_t max_bytes;         /* one region */
  int total_regions;          /* all owners */
  uint64_t total_bytes;
  int uid_regions;            /* per uid */
  uint64_t uid_bytes;
} dynqd_shm_limits_t;

/* The regions of one owner (a connection). */
typedef struct dynqd_shm_set {
  dynqd_shm_t *list;          /* one ref each */
  int n;
} dynqd_shm_set_t;

/* The tensor references a request holds: one ref per region. */
typedef struct dynqd_shm_refs {
  dynqd_shm_t **v;            /* owned array */
  int n;
} dynqd_shm_refs_t;

/* Where a tensor lives in a region. */
typedef struct dynqd_shm_ref {
  dynqd_shm_t *region;        /* NULL: not redirected; else a ref in refs */
  uint64_t region_id;
  uint64_t offset, size;
} dynqd_shm_ref_t;

/* Map fd (consumed) as a new region of set.  0 and *ret_id, or an error
 * with err set. */
int dynqd__shm_register(dynqd_shm_set_t *set, dynqd_shm_totals_t *tot, dynqd_peer_t *peer,
                        int fd, uint64_t size, const dynqd_shm_limits_t *lim,
                        uint64_t *ret_id, char *err, size_t errlen);
/* 0 or DYNQ_ENOREGION. */
int dynqd__shm_unregister(dynqd_shm_set_t *set, uint64_t id);
/* Drop every region of set (running requests keep their own refs). */
void dynqd__shm_set_clear(dynqd_shm_set_t *set);
/* Check {region, offset, size} against set; on success the region gets a
 * ref recorded in refs.  0 or an error code with err set. */
int dynqd__shm_ref(dynqd_shm_set_t *set, dynqd_shm_refs_t *refs, uint64_t id,
                   uint64_t off, uint64_t size, dynqd_shm_ref_t *ret, char *err,
                   size_t errlen);
/* A tensor of dtype/shape viewing ref's bytes (copied only when misaligned
 * for its dtype).  0 or an error code with err set. */
int dynqd__shm_tensor(const dynqd_shm_ref_t *ref, dynq_dtype_t dt, int rank,
                      const int64_t *dims, int64_t max_elems, dynq__tensor_t *ret_t,
                      char *err, size_t errlen);
void dynqd__shm_refs_clear(dynqd_shm_refs_t *refs);
void dynqd__shm_unref(dynqd_shm_t *r);

/* ---- running requests (infer.c) ---- */

/* One infer request, decoded.  The job is first: the scheduler's view. */
typedef struct dynqd_infer {
  dynqd_job_t job;
  dynq__model_t *model;       /* one ref held, or the plan's (a plain
                                 request holds a ref of its dynqd_plan_t) */
  int precision;              /* DYNQ_PRECISION_* */
  int64_t max_value_bytes;    /* of one tensor the run computes (config) */
  int max_run_ms;             /* the run is stopped after this long (config;
                                 0: no limit), or at the job's deadline, or
                                 when its connection closes */
  int n_inputs;
  dynq__tensor_t *inputs;     /* owned, graph input order; session state
                                 and aligned shm tensors are views */
  int64_t in_elems;           /* elements of all its inputs (cost estimate) */
  int8_t *axes;               /* batch axis per input then output; owned,
                                 or the plan's (shared, read only); NULL:
                                 not batchable */
  dynqd_shm_refs_t shm;       /* regions its tensors use */
  dynqd_shm_ref_t *out_shm;   /* per graph output (region NULL: none); owned */
  dynqd_session_t *session;   /* one ref held (loop side); NULL if none */
  dynq__tensor_t *sess_new;   /* the session's next state; owned */
  int keep_inputs;            /* the run leaves inputs alone (a shadow re-run
                                 reads them after the answer) */
  /* Filled by the run (worker): */
  int status;                 /* 0 or the error code */
  char err[256];              /* why, when status != 0 */
  dynq__tensor_t *out;        /* outputs when status == 0: the array is
                                 owned, or borrowed from the worker's
                                 merged run until dynqd__infer_out_done */
  int out_borrowed;
  int batched;                /* requests run together */
  int merge_copied;           /* inputs its merged run copied together (the
                                 others were read where the requests' own
                                 bytes lay back to back) */
  int64_t compute_us;
} dynqd_infer_t;

/* Batch axis of every input then output of the model's signature into
 * axes[n_in + n_out] (rule: infer.c) for a plain request (ss NULL) or a
 * session's.  0; DYNQ_EPARAMS with err set when the config's axes do not
 * fit the model; another code when it cannot be batched (the request runs
 * alone). */
int dynqd__batch_axes(const dynq__model_sig_t *sig, const dynqd_batch_rule_t *rule,
                      const dynqd_session_t *ss, int8_t *axes, char *err,
                      size_t errlen);
/* Worker: run x alone (x->job.threads wide): status, out or err. */
void dynqd__infer_run(dynqd_infer_t *x);
/* Worker: run n >= 2 requests as one; 0 when each got its result, else
 * nonzero and none was touched.  Each request's out array is the
 * thread's (out_borrowed): it must end with dynqd__infer_out_done before
 * this thread's next merged run.  Outputs of plain requests (no session,
 * not shadowed) may be views into the merged outputs, then left in
 * *ret_keep (model signature's n_outputs tensors, also the thread's):
 * valid until the caller clears them with dynqd__infer_keep_free, once
 * the answers are written or hold their own copy of those bytes. */
int dynqd__infer_run_merged(dynqd_infer_t **v, int n, dynq__tensor_t **ret_keep);
void dynqd__infer_keep_free(const dynq__model_t *model, dynq__tensor_t *keep);
/* The outputs are encoded (or taken): clear them and drop the array. */
void dynqd__infer_out_done(dynqd_infer_t *x);
/* Whether b may run in one batch with a. */
int dynqd__infer_compatible(const dynqd_infer_t *a, const dynqd_infer_t *b);
/* Take the bound outputs of a successful run as the session's next state. */
void dynqd__infer_take_state(dynqd_infer_t *x);
void dynqd__infer_free(dynqd_infer_t *x);  /* NULL-safe */
/* Free what x holds and zero it (x itself is the caller's). */
void dynqd__infer_clear(dynqd_infer_t *x);

/* ============================== transport ============================== */

typedef struct dynqd_conn dynqd_conn_t;
typedef struct dynqd_server dynqd_server_t;

/* Close hooks: services tied to a connection (its sessions, its shm
 * regions) subscribe once at start-up. */
typedef void (*dynqd_close_hook_fn)(void *arg, dynqd_conn_t *c);
#define DYNQD_MAX_CLOSE_HOOKS 4

/*
 * Connection state machine (checked by conn_state_ok in debug builds):
 *
 *   OPEN --EOF / bad frame / shutdown--> FLUSHING --no ops, no writes--> CLOSING
 *   OPEN --write error / output cap / drain end-----------------------> CLOSING
 *   CLOSING --uv close cb (refs: handle)--> freed when refs == 0
 *
 * A connection is freed only when its handle is closed AND every deferred
 * operation and write request that points at it is back (refs == 0).
 */
struct dynqd_conn {
  uv_pipe_t pipe;             /* first: the handle is the connection */
  dynqd_server_t *srv;
  struct dynqd_conn *prev, *next;
  uint64_t id;
  int refs;                   /* handle (until close cb) + ops + writes */
  int closing;                /* uv_close called */
  int flushing;               /* no more reading; close when idle */
  int reading;                /* uv_read_start active */
  int framing;                /* inside process_frames (not re-entered) */
  dynq__framer_t fr;          /* read buffer; owned; bounded by max_frame +
                                 READ_CHUNK (conn.c) */
  uint64_t rx;                /* stream bytes received so far */
  int inflight;               /* deferred operations (queued or running) */
  int held;                   /* operations that hold back its next frames */
  int waiting;                /* a frame is parked until start-up finishes */
  int writes;                 /* uv_write requests pending */
  size_t out_bytes;           /* bytes in those requests */
  /* Answers of this loop iteration, not handed to the socket yet: written
   * together (one writev) before the loop polls again.  obuf[i] owned,
   * freed once written; the array is owned and kept. */
  uv_buf_t *obuf;
  int on, ocap;
  size_t obytes;              /* bytes in obuf */
  struct dynqd_conn *fnext, *fprev; /* on srv->flush while on > 0 */
  int fqueued;
  size_t req_bytes;           /* decoded requests of this connection waiting
                                 for or on a worker (dynqd__conn_charge) */
  /* fds received with SCM_RIGHTS, not yet claimed; owned (closed with the
   * connection).  Each came with the bytes [start, end) of the stream (one
   * recvmsg): only a frame starting there may claim it. */
  struct {
    int fd;
    uint64_t start, end;
  } fds[8];
  int n_fds;
  uint64_t frame_pos;         /* stream offset of the frame being handled */
  uint64_t slow_pos;          /* stream offset of a frame the one-pass parse
                                 found incomplete: the framer's scan takes it
                                 from then on (each read would decode it
                                 again from its start); UINT64_MAX: none */
  /* Who the peer is (SO_PEERCRED at accept) and what it holds. */
  uint32_t uid, gid;
  int admin;                  /* an admin peer at accept: exempt from per-uid caps */
  dynqd_peer_t *peer;         /* its uid's record; NULL: not counted */
  uint64_t last_active_ns;    /* a complete frame read or an answer sent */
  /* The model its last infer named (rpc_infer.c): a registry entry, valid
   * while the registry's gen is last_model_gen; its stats record. */
  const dynqd_model_entry_t *last_model;
  uint64_t last_model_gen;
  size_t last_model_len;      /* strlen(last_model->name) */
  dynqd_mstats_t *last_mstats;
  int nomem;                  /* reading paused after an allocation failure */
  size_t mem;                 /* bytes counted in srv->buffers (read buffer,
                                 output, requests) */
  uint64_t uv_queued;         /* bytes ever handed to uv_write */
  uint64_t drain_written;     /* draining: of those, bytes written at the last check */
  int drain_checked;
  dynqd_shm_set_t shm;        /* its regions (rpc_shm.c; freed by a hook) */
  int direct;                 /* loop: direct jobs of it out */
  /* What the workers read or write per job, on a line of its own (the
   * fields above are the loop's, written per request; a line moving
   * between the vCPUs costs ~0.5-1 us).  The connection is allocated
   * 64-byte aligned for it (conn.c).
   * Direct answers (dynqd__conn_direct_*): while the socket is open to
   * the workers (wstate, DYNQD_W_*), the one holding it writes answers of
   * its jobs itself, and the loop neither writes to it nor closes it.
   * wpartial: a worker stopped inside a frame; nothing goes out before
   * the rest, which its job brings back.  dfd is the socket fd the workers
   * write (set before the token is first opened). */
  _Alignas(64) atomic_int dead; /* results for it are discarded */
  atomic_int wstate;
  atomic_int wpartial;
  int dfd;
};
enum { DYNQD_W_LOOP, DYNQD_W_OPEN, DYNQD_W_WRITING };
/* Frames one direct write may carry, and the pieces (iovecs, on the
 * worker's stack) of all of them. */
#define DYNQD_DIRECT_MAX 64
#define DYNQD_DIRECT_IOV 256

/* Accept one pending connection from the listener. */
void dynqd__conn_accept(dynqd_server_t *s);
/* Queue one response frame (takes ownership of data).  Answers are
 * written together before the loop polls (dynqd__conn_flush_output). */
void dynqd__conn_send(dynqd_conn_t *c, uint8_t *data, size_t len);
/* Loop thread, before it polls: write what every connection queued. */
void dynqd__conn_flush_output(dynqd_server_t *s);
/* A decoded request of c keeps bytes until it is answered: counted with
 * the connections' buffers against max_buffers_total.  0, or
 * DYNQ_EOVERLOAD (nothing counted) when they would pass it. */
int dynqd__conn_charge(dynqd_conn_t *c, size_t bytes);
void dynqd__conn_uncharge(dynqd_conn_t *c, size_t bytes);
/* An error response {code, name, message, retryable}. */
void dynqd__conn_send_error(dynqd_conn_t *c, uint32_t msgid, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A deferred operation (answered later from the loop): begin takes a
 * reference and counts it in flight; hold also stops reading further
 * frames until it ends.  end undoes that and reads on. */
void dynqd__conn_op_begin(dynqd_conn_t *c, int hold);
void dynqd__conn_op_end(dynqd_conn_t *c, int hold);
/* Direct answers: the worker that ran a request writes its answer to the
 * socket itself (one write for the answers of a batch that go to the same
 * connection), so that neither the write (and the client's wake-up it
 * costs) nor the copy of answers another core wrote is the loop's work.
 * begin (loop, when such a job is submitted): 1 when its worker may write
 * the answer (c is not closing); then end must be called once for it.
 * write (worker): n <= DYNQD_DIRECT_MAX frames, frame k the next niov[k]
 * pieces of iov (DYNQD_DIRECT_IOV at most in all: its encoded bytes and
 * the output tensors they frame, sent from where they lie), as far as the
 * socket takes them now: ret_sent[k] bytes of frame k; 0, or -1 when the
 * socket is not open to workers now (nothing written: the loop writes
 * them).
 * end (loop, when the job is back): wrote says whether its write ran;
 * rest[0..n) is what it did not write of a frame it began: it goes out
 * before anything else.  0, or -1 when c cannot take it (then c is
 * closed). */
int dynqd__conn_direct_begin(dynqd_conn_t *c);
int dynqd__conn_direct_write(dynqd_conn_t *c, const struct iovec *iov, const int *niov,
                             int n, size_t *ret_sent);
int dynqd__conn_direct_end(dynqd_conn_t *c, int wrote, const uint8_t *rest, size_t n);
/* Loop: an answer a worker wrote may already be in a client's hands; the
 * bookkeeping of those (stats, ...) is done before a method reports state. */
void dynqd__conn_direct_settle(dynqd_server_t *s);
/* The oldest fd received and not yet claimed (the caller owns it), or -1. */
int dynqd__conn_take_fd(dynqd_conn_t *c);
/* Stop reading; answer what is already buffered; close when idle. */
void dynqd__conn_flush_and_close(dynqd_conn_t *c);
void dynqd__conn_close(dynqd_conn_t *c);
/* Frames of c that waited for start-up: handle them now. */
void dynqd__conn_resume(dynqd_conn_t *c);
int dynqd__conn_add_close_hook(dynqd_server_t *s, dynqd_close_hook_fn fn, void *arg);
/* The peer's socket fd (for credentials), or -1. */
int dynqd__conn_fd(const dynqd_conn_t *c);

/* Listening socket (listener.c): --socket, $RUNTIME_DIRECTORY, socket
 * activation.  0 or a negative code after logging. */
int dynqd__listener_open(dynqd_server_t *s);
void dynqd__listener_close(dynqd_server_t *s);
/* Remove the socket file we created (inherited sockets are not ours). */
void dynqd__listener_unlink(dynqd_server_t *s);

/* What the transport calls for each request frame: 0 when handled, or
 * DYNQD_WAIT to leave the frame buffered until dynqd__conn_resume. */
#define DYNQD_WAIT 1
typedef int (*dynqd_request_fn)(dynqd_server_t *s, dynqd_conn_t *c,
                                const dynq__rpc_msg_t *m);

/* ================================ server =============================== */

struct dynqd_server {
  uv_loop_t *loop;
  dynqd_config_t *cfg;
  dynqd_registry_t reg;
  dynqd_sched_t sched;
  dynqd_stats_t stats;
  dynqd_sessions_t sessions;
  dynqd_shm_totals_t shm;
  dynqd_shadow_t shadow;
  dynqd_request_fn on_request;  /* the dispatcher (set by server.c) */
  /* The admin check (dynqd__admin_peer_ok; unit tests put a fake). */
  int (*peer_ok)(int fd, const char *admin_group, char *why, size_t whylen);
  struct {
    dynqd_close_hook_fn fn;
    void *arg;
  } close_hooks[DYNQD_MAX_CLOSE_HOOKS];
  int n_close_hooks;
  uv_pipe_t listener;
  int listener_open;
  char *bound_path;           /* socket file we created (unlink at exit); owned */
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_timer_t drain_timer;
  uv_timer_t watchdog_timer;  /* WATCHDOG=1 every WATCHDOG_USEC/2 */
  uv_prepare_t prep;
  int draining;
  int exit_code;
  uint64_t start_ns;          /* uv_hrtime at start */
  dynqd_conn_t *conns;        /* open connections, doubly linked */
  int n_conns;
  uint64_t next_conn_id;
  int loads_outstanding;      /* model loads on the thread pool */
  int starting;               /* start-up loads still running: frames of
                                 methods that need models wait */
  int rescanning;             /* a SIGHUP rescan's loads are running */
  int hup_again;              /* another SIGHUP came meanwhile */
  int accept_paused;          /* a pending connection was left un-accepted
                                 (no memory): libuv stops polling the
                                 listener until uv_accept; retried when a
                                 connection closes */
  /* Frames handled in this loop iteration and the previous one (reset by
   * the prepare handle before each poll): a quiet loop (<= 1 frame) may
   * run a small request inline. */
  int frames_iter, frames_prev;
  /* Parses request frames in place (lib/proto); owned, NULL when it could
   * not be allocated (frames are then parsed by copy). */
  dynq__rpc_reader_t *reader;
  /* Infer requests' blocks kept for reuse with their buffers
   * (rpc_infer.c; loop thread only), at most DYNQD_POOL_MAX. */
  void *infer_pool;
  int infer_pooled;
  /* Where infer requests' input bytes are decoded back to back
   * (rpc_infer.c; loop thread only); NULL until first used. */
  void *infer_slab;
  size_t slab_bytes;          /* its size, counted in buffers (0: none) */
  int reloads;                /* SIGHUP rescans completed */
  /* What peers hold (conn.c): per uid, and the buffers of all live
   * connections, checked against max_buffers_total. */
  dynqd_peers_t peers;
  size_t buffers;
  dynqd_conn_t *flush;        /* connections with answers to write */
  uv_timer_t tick_timer;      /* idle timeout, back-off after ENOMEM, drain */
  int tick_init;
  /* Direct answers written (or being written) by a worker whose job the
   * loop has not taken back yet: workers add, the loop subtracts.  On a
   * line of its own: the fields above are the loop's, written per request. */
  _Alignas(64) atomic_int direct_seen;
};

/* The transport's periodic checks (conn.c): start once the loop runs;
 * called again when draining starts (checks more often then). */
void dynqd__conn_tick_start(dynqd_server_t *s);

/* Called whenever something the drain waits for may have finished. */
void dynqd__server_check_drained(dynqd_server_t *s);

/* Set up everything on loop (listener, workers, signals, models loading
 * off the loop).  0, or negative after logging; then run and fini. */
int dynqd__server_init(dynqd_server_t *s, uv_loop_t *loop, dynqd_config_t *cfg);
int dynqd__server_run(dynqd_server_t *s);   /* exit code */
void dynqd__server_fini(dynqd_server_t *s);
/* -n: what a start would need, without starting: exit code. */
int dynqd__check_config(const dynqd_config_t *cfg);

/* ============================== rpc layer ============================== */

/* Method flags (the method table in dispatch.c). */
enum {
  DYNQD_M_ADMIN = 1 << 0,      /* peer must pass dynqd__admin_peer_ok */
  DYNQD_M_ANY_PARAMS = 1 << 1, /* params ignored (liveness must answer) */
  DYNQD_M_DEFER = 1 << 2,      /* may answer later, off the loop */
  DYNQD_M_HOLD = 1 << 3,       /* with DEFER: no further frames of the
                                  connection until it answers */
  DYNQD_M_LIVE = 1 << 4,       /* answered during start-up loads */
  DYNQD_M_TAKES_FD = 1 << 5,   /* the frame carries a descriptor (rq->fd) */
  DYNQD_M_COUNTED = 1 << 6,    /* counted in stats even when refused */
};

/* A request being answered.  Handlers answer exactly once through reply.c;
 * a DEFER handler may instead keep a copy made by dynqd__req_defer and
 * answer from a later loop callback. */
typedef struct dynqd_req {
  dynqd_server_t *srv;
  dynqd_conn_t *conn;
  uint32_t msgid;
  const char *method;         /* its name (a static string) */
  int deferred;               /* answering ends a conn operation */
  int hold;                   /* that operation holds the connection */
  int fd;                     /* TAKES_FD: the frame's descriptor, or -1;
                                 a handler that keeps it sets -1 */
} dynqd_req_t;

/* Return value of a handler that kept a deferred copy. */
#define DYNQD_PENDING 1
union dynq__params;
typedef int (*dynqd_handler_fn)(dynqd_req_t *rq, const union dynq__params *p);

typedef struct dynqd_method {
  const char *name;
  unsigned flags;
  dynqd_handler_fn fn;
} dynqd_method_t;

/* The method table: one row per schema method (methods.def), in its order. */
const dynqd_method_t *dynqd__methods(int *ret_n);
const dynqd_method_t *dynqd__method_find(const char *name);
/* The dispatcher (server->on_request). */
int dynqd__dispatch(dynqd_server_t *s, dynqd_conn_t *c, const dynq__rpc_msg_t *m);
/* Route a decoded request through the method table: admin check, params
 * rule, deferral. */
void dynqd__dispatch_req(dynqd_req_t *rq, const dynqd_method_t *me, dynq__obj_t params);
/* Answers (reply.c).  defer copies rq for a later answer and returns
 * DYNQD_PENDING for the handler to return. */
int dynqd__req_defer(const dynqd_req_t *rq, dynqd_req_t *ret);
/* begin writes the response head [1, msgid, nil]; send answers with the
 * result written after it. */
void dynqd__reply_begin(const dynqd_req_t *rq, dynq__wbuf_t *w);
void dynqd__reply_send(dynqd_req_t *rq, dynq__wbuf_t *w);
/* The answer went out another way (a worker wrote it): only ends the
 * request. */
void dynqd__reply_done(dynqd_req_t *rq);
/* A frame already encoded (a worker's answer); takes data. */
void dynqd__reply_frame(dynqd_req_t *rq, uint8_t *data, size_t len);
void dynqd__reply_error(dynqd_req_t *rq, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One key/value pair of a self-counting map (dynq__w_map_begin). */
#define KV(w, key, write) \
  do {                    \
    dynq__w_key(w, key);  \
    write;                \
  } while (0)

/* Handlers (rpc_*.c). */
int dynqd__m_ping(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_server_info(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_health_live(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_health_ready(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_stats(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_models_list(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_model_info(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_model_load(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_model_unload(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_model_reload(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_infer(dynqd_req_t *rq, const union dynq__params *p);
/* Free the infer blocks kept for reuse (after the workers stopped). */
void dynqd__rpc_infer_pool_free(dynqd_server_t *s);
/* The config was re-read (max_buffers_total may have changed). */
void dynqd__rpc_infer_limits_changed(dynqd_server_t *s);
int dynqd__m_session_open(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_session_reset(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_session_close(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_shm_register(dynqd_req_t *rq, const union dynq__params *p);
int dynqd__m_shm_unregister(dynqd_req_t *rq, const union dynq__params *p);
/* Close hooks the rpc layer subscribes (server.c wires them). */
void dynqd__rpc_session_conn_closed(void *arg, dynqd_conn_t *c);
void dynqd__rpc_shm_conn_closed(void *arg, dynqd_conn_t *c);
/* A model name param -> entry, or NULL after answering ENOMODEL
 * (rpc_models.c). */
const dynqd_model_entry_t *dynqd__rpc_model(dynqd_req_t *rq, const char *s, size_t n);

#endif
