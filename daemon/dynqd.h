/*
 * dynqd internals shared by the daemon's files: the config table, logging,
 * sd_notify, the model registry, the worker pool, connections and the
 * server object that ties them to one libuv loop.
 *
 * Threads: the loop thread owns every uv handle, every connection, the
 * registry and all refcounts.  Worker threads only touch a job (which they
 * own while running it), the job queue (under pool->mu) and the completion
 * list (atomic), and read conn->dead (atomic).
 *
 * Connection state machine (checked by dynqd__conn_check in debug builds):
 *
 *   OPEN --EOF / bad frame / shutdown--> FLUSHING --no jobs, no writes--> CLOSING
 *   OPEN --write error / output cap / drain end-------------------------> CLOSING
 *   CLOSING --uv close cb (refs: handle)--> freed when refs == 0
 *
 * A connection is freed only when its handle is closed AND every job and
 * write request that points at it has come back (conn->refs == 0).
 */
#ifndef DYNQD_H
#define DYNQD_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "model.h"
#include "proto/proto.h"
#include "tensor.h"

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
  int64_t max_tensor_elems;
  int drain_timeout_s;
  int log_level;         /* LOG_ERR..LOG_DEBUG */
  /* -- D1 (issue 5): config file, admin, sessions limits, logging -- */
  char *config_path;     /* --config; NULL: /etc/dynq/dynqd.conf if it exists; owned */
  char *admin_group;     /* members may call admin methods; NULL: none; owned */
  int max_sessions;      /* open sessions, all connections; 0..1M */
  int session_idle_timeout_ms; /* default and cap of a session's idle timeout */
  int log_rate;          /* log lines per second before suppression; 0: unlimited */
  int watchdog;          /* 1: send WATCHDOG=1 when WATCHDOG_USEC is set */
  int check_only;        /* -n: check the config and the model dir, exit 0/2 */
  /* -- D2 (issue 5): shared memory and batching limits (defaults set in
   *    dynqd__config_parse; D1's table may expose them as keys) -- */
  int max_shm_regions;   /* per connection; 0 disables shm.register */
  uint64_t max_shm_bytes; /* one region's size */
  int batch_max;         /* global default per model; <= 1: batching off */
  int batch_delay_us;    /* how long a worker waits to fill a batch */
  struct dynqd_batch_rule *batch_rules; /* per-model overrides; owned */
  int n_batch_rules;
  /* -- issue 5 (request path) -- */
  int worker_spin_us;    /* an idle worker polls the queue this long before
                            sleeping on the condvar; 0..1000 */
  int inline_max_us;     /* a lone request predicted to compute within this
                            runs on the loop thread; 0 (never)..1000 */
  int loop_spin_us;      /* after traffic, the loop polls this long without
                            sleeping while no job is out; 0 (off)..1000 */
} dynqd_config_t;

/* D2: `[batch.MODEL]` max_batch / max_delay_us from the config file. */
typedef struct dynqd_batch_rule {
  char *model;           /* owned */
  int max_batch;         /* <= 1: off for this model */
  int max_delay_us;
  /* `axes = NAME:AXIS,...`: the batch axis of named inputs/outputs (the
   * rest follow the default rule in batch.c).  Syntax checked at parse;
   * names and ranks are checked against the model per request. */
  char *axes_text;       /* as written, for SIGHUP comparison; owned; NULL: none */
  int n_axes;
  char **axis_names;     /* owned, each owned */
  int *axis_vals;        /* owned; 0..DYNQ_MAX_RANK-1 */
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

/* ---- logging (log.c) ---- */

void dynqd__log_init(int level);
/* D1: level and rate limit (lines/s per message class; 0 = unlimited);
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

/* ---- model registry (registry.c) ---- */

/*
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
  /* -- D1 (issue 5): versions and file identity for reload/rescan -- */
  int version;             /* 1 on first load, +1 per successful reload */
  char *file;              /* path relative to the model dir; owned */
  uint64_t f_dev, f_ino, f_size;
  int64_t f_mtime_ns;      /* identity of the file as loaded */
} dynqd_model_entry_t;

typedef struct dynqd_registry {
  dynqd_model_entry_t *v;  /* owned, sorted by name */
  int n;
  char *dir;               /* realpath of the model dir; NULL: none; owned */
} dynqd_registry_t;

/* Load every *.dynq in dir; files that fail are logged and skipped.
 * Returns the number of models loaded (>= 0). */
int dynqd__registry_load(dynqd_registry_t *r, const char *dir);
/* "name" (current version) or "name@N" (only if N is the current one). */
const dynqd_model_entry_t *dynqd__registry_find(const dynqd_registry_t *r,
                                                const char *name);
void dynqd__registry_free(dynqd_registry_t *r);

/* Open + warm the model in `rel` (relative to the model dir, confined to
 * it) and publish it under name: new entry (version 1) or atomic swap
 * (version + 1).  On failure nothing changes; err says why.  Returns 0 and
 * the new version in *ret_version, or DYNQ_EDENIED (path escapes the
 * dir), -errno, DYNQ_E*. */
int dynqd__registry_publish(dynqd_registry_t *r, const char *name,
                            const char *rel, int *ret_version, char *err,
                            size_t errlen);
/* publish in two steps, so that the slow one can run off the loop:
 * prepare opens, checks and warms the file (touches only r->dir, which is
 * fixed once loaded: safe on any thread); commit makes it the current
 * version of name (the loop thread; it may still fail: the model limit,
 * memory).  prepared_clear drops what commit did not take. */
typedef struct dynqd_prepared {
  dynq__model_t *model;    /* one ref, or NULL */
  char path[PATH_MAX];     /* resolved, for messages */
  uint64_t f_dev, f_ino, f_size;
  int64_t f_mtime_ns;
} dynqd_prepared_t;
int dynqd__registry_prepare(const dynqd_registry_t *r, const char *name, const char *rel,
                            dynqd_prepared_t *ret, char *err, size_t errlen);
int dynqd__registry_commit(dynqd_registry_t *r, const char *name, const char *rel,
                           dynqd_prepared_t *p, int *ret_version, char *err,
                           size_t errlen);
void dynqd__prepared_clear(dynqd_prepared_t *p);
/* Drop name; 0 or DYNQ_ENOMODEL. */
int dynqd__registry_unload(dynqd_registry_t *r, const char *name);
/* SIGHUP rescan: new files load, changed files reload, removed files
 * unload.  Counts what happened (each ret_* may be NULL). */
void dynqd__registry_rescan(dynqd_registry_t *r, int *ret_loaded,
                            int *ret_reloaded, int *ret_unloaded,
                            int *ret_failed);
/* Valid model name: 1-63 of [A-Za-z0-9_.-], not starting with '.'. */
int dynqd__model_name_ok(const char *s, size_t n);

/* ---- jobs and workers (workers.c) ---- */

struct dynqd_conn;

typedef struct dynqd_job {
  struct dynqd_job *next;     /* queue / completion list link */
  struct dynqd_conn *conn;    /* one conn ref held until completion */
  uint32_t msgid;
  dynq__model_t *model;       /* one ref held */
  int precision;              /* DYNQ_PRECISION_* */
  size_t max_resp;            /* bigger results become ELIMIT (max_output) */
  int n_inputs;
  dynq__tensor_t *inputs;     /* owned, graph input order */
  /* Filled by the worker: */
  int skipped;                /* connection gone before it started */
  uint8_t *resp;              /* owned malloc'd response frame */
  size_t resp_len;
  /* -- D2 (issue 5): deadlines, timings, stats, sessions, shm, batching -- */
  uint64_t t_arrive_ns;       /* uv_hrtime when its frame was complete */
  uint64_t t_queued_ns;       /* when it entered the queue */
  uint64_t deadline_ns;       /* 0: none (timeout_ms) */
  int64_t decode_us, queue_us, compute_us;
  int status;                 /* worker: 0 or the error code answered */
  struct dynqd_mstats *mstats; /* loop-owned per-model record; not owned */
  struct dynqd_session *session; /* one ref held (loop side); NULL if none */
  dynq__tensor_t *sess_new;   /* worker: next state per binding; owned */
  int n_shm;
  struct dynqd_shm **shm;     /* regions its tensors use; one ref each; owned array */
  struct dynqd_shm_ref *out_shm; /* per graph output (NULL: none); owned */
  int batch_max;              /* > 1: may be merged with like requests */
  int batch_delay_us;
  int batched;                /* worker: how many requests ran together */
  int threads;                /* worker: GEMM split width (1, or the worker
                                 count for a lone request) */
  int64_t in_elems;           /* elements of all its inputs (cost estimate) */
  /* -- issue 4 (session batching): the batch axis of each input then each
   *    output (n_inputs + n_outputs), set with batch_max by m_infer -- */
  int8_t *axes;               /* owned; NULL when not batchable */
} dynqd_job_t;

/* D2: where an output goes in a shared-memory region (outputs_shm). */
typedef struct dynqd_shm_ref {
  struct dynqd_shm *region;   /* NULL: not redirected; else a ref in job->shm */
  uint64_t region_id;
  uint64_t offset, size;
} dynqd_shm_ref_t;

dynqd_job_t *dynqd__job_free(dynqd_job_t *j);  /* NULL-safe */

typedef struct dynqd_pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  dynqd_job_t *qhead, *qtail;  /* waiting jobs, FIFO */
  atomic_int qlen;             /* jobs in it; changed under mu, read anywhere */
  int qcap;
  /* Loop thread only: jobs submitted during this loop iteration, handed to
   * the workers together by dynqd__pool_flush (one lock, one wake-up
   * decision per iteration instead of per job). */
  dynqd_job_t *phead, *ptail;
  int plen;
  int sleeping;                /* workers in pthread_cond_wait (under mu) */
  _Atomic(dynqd_job_t *) done; /* finished jobs, any order: a lock-free stack
                                  (workers push, the loop takes it whole) */
  int stop;                    /* workers exit when the queue is empty */
  int n_threads;
  pthread_t *threads;          /* owned */
  uv_async_t *async;           /* wakes the loop for `done` */
  /* Wake-ups (issue 5): an idle worker first polls `submits` for spin_us,
   * so a request arriving soon after the last one is picked up without a
   * futex wake-up; submit signals one sleeper only when the queue holds
   * more jobs than there are spinners to take them. */
  int running;                 /* jobs being run by workers */
  int spinning;                /* workers polling for work */
  int batch_waiters;           /* workers filling a batch (batch.c) */
  int batch_room;              /* least room left in a batch being filled, set
                                  by its waiter: flush wakes the waiters only
                                  once that many jobs are queued (or a sleeper
                                  must wake anyway) */
  int spin_us;
  int width;                   /* workers asked for: a lone job's split width */
  atomic_uint submits;         /* bumped by every submit; polled unlocked */
} dynqd_pool_t;

/* Loop thread: nothing submitted, queued, or being run by a worker. */
int dynqd__pool_idle(dynqd_pool_t *p);

/* spin_us: how long an idle worker polls before sleeping (0: never). */
int dynqd__pool_start(dynqd_pool_t *p, int n_threads, int qcap, int spin_us,
                      uv_async_t *async);
/* Loop thread: 0, or DYNQ_EOVERLOAD when the queue is full (job
 * untouched).  The job reaches the workers at the next flush. */
int dynqd__pool_submit(dynqd_pool_t *p, dynqd_job_t *j);
/* Loop thread, before it polls (main.c's prepare handle): hand the jobs
 * submitted since the last flush to the workers. */
void dynqd__pool_flush(dynqd_pool_t *p);
/* Take the completion list (any order). */
dynqd_job_t *dynqd__pool_take_done(dynqd_pool_t *p);
int dynqd__pool_queued(dynqd_pool_t *p);
/* Let workers finish the queue, then join them. */
void dynqd__pool_stop(dynqd_pool_t *p);

/* ---- server and connections (server.c, conn.c, methods.c) ---- */

typedef struct dynqd_server {
  uv_loop_t *loop;
  dynqd_config_t *cfg;
  dynqd_registry_t reg;
  dynqd_pool_t pool;
  uv_pipe_t listener;
  int listener_open;
  char *bound_path;           /* socket file we created (unlink at exit); owned */
  uv_async_t async;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_timer_t drain_timer;
  int draining;
  int exit_code;
  uint64_t start_ns;          /* uv_hrtime at start */
  struct dynqd_conn *conns;   /* open connections, doubly linked */
  int n_conns;
  uint64_t next_conn_id;
  int jobs_outstanding;       /* submitted, not yet back on the loop */
  /* -- D2 (issue 5): stats, sessions, shared memory -- */
  struct dynqd_stats *stats;  /* owned (stats.c); loop thread only */
  struct dynqd_session *sessions; /* all open sessions; owned list */
  int n_sessions;
  struct dynqd_session **sess_tab; /* id -> session, chained by hnext; owned
                                      array (a power of two), NULL = scan the list */
  size_t sess_tab_cap;
  uint64_t next_session_id;
  uv_timer_t session_timer;   /* idle expiry; inited lazily, unref'd */
  int session_timer_init;
  int n_shm;                  /* regions registered, all connections */
  uint64_t shm_bytes;         /* bytes of those mappings */
  uint64_t next_shm_id;
  int accept_paused;          /* a pending connection was left un-accepted
                                 (no memory): libuv stops polling the
                                 listener until uv_accept; retried when a
                                 connection closes */
  /* -- D1 (issue 5): watchdog and reload -- */
  uv_timer_t watchdog_timer;  /* WATCHDOG=1 every WATCHDOG_USEC/2 */
  /* -- issue 5 (request path): frames handled in this loop iteration and
   *    the previous one (reset by a prepare handle before each poll); a
   *    quiet loop (<= 1 frame) may run a small request inline -- */
  uv_prepare_t prep;
  int frames_iter, frames_prev;
  int reloads;                /* SIGHUPs handled */
} dynqd_server_t;

typedef struct dynqd_conn {
  uv_pipe_t pipe;             /* first: handle->data is unused */
  dynqd_server_t *srv;
  struct dynqd_conn *prev, *next;
  uint64_t id;
  int refs;                   /* handle (until close cb) + jobs + writes */
  int closing;                /* uv_close called */
  int flushing;               /* no more reading; close when idle */
  int reading;                /* uv_read_start active */
  atomic_int dead;            /* results for it are discarded */
  uint8_t *rbuf;              /* owned; bounded by max_frame + READ_CHUNK */
  size_t rlen, rcap;
  int inflight;               /* jobs queued or running for this conn */
  int held;                   /* operations that hold back its next frames
                                 (model.load/reload: dynqd__conn_op_start) */
  int writes;                 /* uv_write requests pending */
  size_t out_bytes;           /* bytes in those requests (the kernel may
                                 already hold some; the cap uses libuv's
                                 unsent count) */
  /* -- D2 (issue 5): fds passed with SCM_RIGHTS, shm regions -- */
  int fds[8];                 /* received, not yet claimed by shm.register;
                                 owned (closed with the connection) */
  int n_fds;
  struct dynqd_shm *regions;  /* registered by this conn; one ref each */
  int n_regions;
} dynqd_conn_t;

void dynqd__conn_accept(dynqd_server_t *s);
/* Queue one response frame (takes ownership of data). */
void dynqd__conn_send(dynqd_conn_t *c, uint8_t *data, size_t len);
void dynqd__conn_send_wbuf(dynqd_conn_t *c, dynq__wbuf_t *w);
void dynqd__conn_send_error(dynqd_conn_t *c, uint32_t msgid, int code,
                            const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void dynqd__conn_job_done(dynqd_conn_t *c, dynqd_job_t *j);
/* An operation answered later from the loop (model.load on the thread
 * pool): start takes a reference, counts it in flight and stops reading
 * further frames of c; done undoes that and reads on. */
void dynqd__conn_op_start(dynqd_conn_t *c);
void dynqd__conn_op_done(dynqd_conn_t *c);
/* Stop reading; answer what is already buffered; close when idle. */
void dynqd__conn_flush_and_close(dynqd_conn_t *c);
void dynqd__conn_close(dynqd_conn_t *c);
void dynqd__conn_unref(dynqd_conn_t *c);

/* Handle one decoded request; answers at once or submits a job. */
void dynqd__dispatch(dynqd_conn_t *c, const dynq__rpc_msg_t *m);
/* Worker side: run an infer job and encode its response into j->resp. */
void dynqd__run_infer(dynqd_job_t *j);

/* Called whenever something drain waits for may have finished. */
void dynqd__server_check_drained(dynqd_server_t *s);

/* ---- D2 (issue 5): stats (stats.c) ---- */

/* Log-scale histogram: 8 sub-buckets per power of two, so a bucket's upper
 * bound is within 12.5 % of any value in it.  Values in microseconds. */
#define DYNQD_HIST_BUCKETS (8 * 42)
typedef struct dynqd_hist {
  uint64_t count;
  uint64_t b[DYNQD_HIST_BUCKETS];
} dynqd_hist_t;
void dynqd__hist_add(dynqd_hist_t *h, uint64_t v);
/* Upper bound of the bucket holding quantile q (0..1); 0 when empty. */
uint64_t dynqd__hist_quantile(const dynqd_hist_t *h, double q);

typedef struct dynqd_mstats {
  char *name;                 /* owned */
  uint64_t requests, errors;
  dynqd_hist_t queue_us, compute_us;
  double ns_per_elem;         /* moving average of one-thread compute time per
                                 input element; 0: not known yet (inline) */
} dynqd_mstats_t;

typedef struct dynqd_stats {
  uint64_t requests_total, errors_total, overloads_total, timeouts_total;
  uint64_t inline_total;      /* infers run on the loop thread (methods.c) */
  dynqd_mstats_t **m;         /* owned, each owned; stable pointers */
  int n, cap;
} dynqd_stats_t;

/* Find or add the record of a model name (NULL on ENOMEM). */
dynqd_mstats_t *dynqd__stats_model(dynqd_server_t *s, const char *name);
/* Count an infer answered with code (0 = ok) on the loop thread. */
void dynqd__stats_count(dynqd_server_t *s, dynqd_mstats_t *ms, int code);
/* A job came back from a worker: counts and histograms. */
void dynqd__stats_job(dynqd_server_t *s, const dynqd_job_t *j);
void dynqd__stats_free(dynqd_server_t *s);
void dynqd__m_stats(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params);

/* ---- D2: sessions (session.c) ----
 *
 * Session state machine (loop thread):
 *   IDLE --infer--> BUSY --job back--> IDLE (state swapped only on success)
 *   IDLE/BUSY --close / owner gone / idle timeout--> CLOSED (unlisted);
 *   freed when its last ref (list + running job) goes.
 */
typedef struct dynqd_session {
  struct dynqd_session *next; /* server list */
  struct dynqd_session *hnext; /* server id table chain (sess_tab) */
  uint64_t id;
  struct dynqd_conn *owner;   /* NULL when detached (not a ref) */
  dynq__model_t *model;       /* one ref */
  char *model_name;           /* owned, for stats */
  int n_bind;
  int *bind_in, *bind_out;    /* graph input / output index; owned */
  dynq__tensor_t *state;      /* per binding; owned; dtype INVALID until
                                 the first call sizes it */
  int busy, closed, refs;
  uint64_t idle_ms;
  uint64_t last_ns;           /* last use (uv_hrtime) */
} dynqd_session_t;

void dynqd__m_session_open(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params);
void dynqd__m_session_reset(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params);
void dynqd__m_session_close(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params);
/* infer with `session`: find it for this connection, or answer an error
 * (ENOSESSION, EBUSY) and return NULL. */
dynqd_session_t *dynqd__session_get(dynqd_conn_t *c, uint32_t msgid, uint64_t id);
/* Fill the job's bound inputs from the session (zeros of the declared shape
 * on first use) and mark it busy.  0 or an error code with err set. */
int dynqd__session_bind(dynqd_session_t *ss, dynqd_job_t *j, char *err, size_t errlen);
/* Job back on the loop: swap in its new state on success, release. */
void dynqd__session_job_done(dynqd_server_t *s, dynqd_job_t *j);
/* A connection closes: close its non-detached sessions. */
void dynqd__sessions_conn_closed(dynqd_conn_t *c);
dynqd_session_t *dynqd__session_unref(dynqd_session_t *ss);
/* At exit (loop gone): drop every session still listed (detached ones). */
void dynqd__sessions_free(dynqd_server_t *s);

/* ---- D2: shared-memory regions (shm.c) ---- */

typedef struct dynqd_shm {
  struct dynqd_shm *next;     /* owner's list */
  uint64_t id;
  uint8_t *base;              /* MAP_SHARED mapping; unmapped at refs == 0 */
  uint64_t size;
  int writable;               /* mapped PROT_WRITE (no F_SEAL_WRITE) */
  int refs;                   /* conn list + running jobs; loop thread only */
  dynqd_server_t *srv;
} dynqd_shm_t;

void dynqd__m_shm_register(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params);
void dynqd__m_shm_unregister(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params);
/* Take fds libuv queued on the connection (SCM_RIGHTS) into c->fds. */
void dynqd__shm_take_fds(dynqd_conn_t *c);
/* Connection gone: close unclaimed fds, drop its regions. */
void dynqd__shm_conn_closed(dynqd_conn_t *c);
/* Parse {region, offset, size} of this connection; on success the region
 * gets a ref recorded in the job.  0 or an error code with err set. */
int dynqd__shm_ref(dynqd_conn_t *c, dynqd_job_t *j, dynq__obj_t o,
                   dynqd_shm_ref_t *ret, char *err, size_t errlen);
void dynqd__shm_unref(dynqd_shm_t *r);
/* {dtype, shape, shm: {...}}: a tensor viewing the region (copied only when
 * misaligned for its dtype).  0 or an error code with err set. */
int dynqd__shm_tensor(dynqd_conn_t *c, dynqd_job_t *j, dynq__obj_t o,
                      const dynq__tensor_limits_t *lim, dynq__tensor_t *ret_t,
                      char *err, size_t errlen);

/* ---- D2: dynamic batching (batch.c) ---- */

/* max_batch / max_delay_us for a model name from the config. */
void dynqd__batch_config(const dynqd_config_t *cfg, const char *model,
                         int *ret_max, int *ret_delay_us);
/* The config rule of a model name, or NULL (global defaults only). */
const dynqd_batch_rule_t *dynqd__batch_rule(const dynqd_config_t *cfg, const char *model);
/* Loop side: the batch axis of every input then output of g into
 * axes[n_inputs + n_outputs] (rule: batch.c), for a plain request
 * (ss NULL) or a session's.  0, or DYNQ_EPARAMS with err set when the
 * model cannot be batched that way (a bad `axes` entry, an ambiguous
 * output). */
int dynqd__batch_axes(const dynq__graph_t *g, const dynqd_batch_rule_t *rule,
                      const struct dynqd_session *ss, int8_t *axes, char *err,
                      size_t errlen);
/* Worker side: run j together with like jobs taken from the queue (called
 * with pool->mu held; returns with it released).  Fills every job's resp. */
void dynqd__batch_run(dynqd_pool_t *p, dynqd_job_t *j);
/* Encode a finished job's outputs (owned, cleared here) into j->resp. */
void dynqd__infer_respond(dynqd_job_t *j, int rc, const char *err,
                          dynq__tensor_t *out);

/* ---- D1 (issue 5): admin methods (admin.c) ---- */

/* model.load / model.unload / model.reload (docs/PROTOCOL.md).  Each checks
 * the peer (SO_PEERCRED: uid 0, dynqd's uid, or admin_group) and answers
 * exactly once. */
void dynqd__admin_load(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params);
void dynqd__admin_unload(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params);
void dynqd__admin_reload(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params);
/* Whether the peer of fd may call admin methods (0/1); why names the peer. */
int dynqd__admin_peer_ok(int fd, const char *admin_group, char *why,
                         size_t whylen);

#endif
