/*
 * dynqd internals shared by the daemon's files: the config table, logging,
 * sd_notify, the model registry, the worker pool, connections and the
 * server object that ties them to one libuv loop.
 *
 * Threads: the loop thread owns every uv handle, every connection, the
 * registry and all refcounts.  Worker threads only touch a job (which they
 * own while running it), the job queue (under pool->mu) and the completion
 * list (under pool->mu), and read conn->dead (atomic).
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
} dynqd_config_t;

/* Parse argv into cfg (defaults first).  Returns 0 to run, 1 when --help or
 * --version was handled (exit 0), or -1 after printing an error and the
 * usage to stderr (exit 2). */
int dynqd__config_parse(dynqd_config_t *cfg, int argc, char **argv);
void dynqd__config_free(dynqd_config_t *cfg);

/* ---- logging (log.c) ---- */

void dynqd__log_init(int level);
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

typedef struct dynqd_model_entry {
  char *name;              /* file name without .dynq; owned */
  dynq__model_t *model;    /* one ref owned */
} dynqd_model_entry_t;

typedef struct dynqd_registry {
  dynqd_model_entry_t *v;  /* owned, sorted by name */
  int n;
} dynqd_registry_t;

/* Load every *.dynq in dir; files that fail are logged and skipped.
 * Returns the number of models loaded (>= 0). */
int dynqd__registry_load(dynqd_registry_t *r, const char *dir);
const dynqd_model_entry_t *dynqd__registry_find(const dynqd_registry_t *r,
                                                const char *name);
void dynqd__registry_free(dynqd_registry_t *r);

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
} dynqd_job_t;

dynqd_job_t *dynqd__job_free(dynqd_job_t *j);  /* NULL-safe */

typedef struct dynqd_pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  dynqd_job_t *qhead, *qtail;  /* waiting jobs, FIFO */
  int qlen, qcap;
  dynqd_job_t *done;           /* finished jobs, any order */
  int stop;                    /* workers exit when the queue is empty */
  int n_threads;
  pthread_t *threads;          /* owned */
  uv_async_t *async;           /* wakes the loop for `done` */
} dynqd_pool_t;

int dynqd__pool_start(dynqd_pool_t *p, int n_threads, int qcap,
                      uv_async_t *async);
/* 0, or DYNQ_EOVERLOAD when the queue is full (job untouched). */
int dynqd__pool_submit(dynqd_pool_t *p, dynqd_job_t *j);
/* Take the completion list (reversed order of completion). */
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
  int writes;                 /* uv_write requests pending */
  size_t out_bytes;           /* bytes in those requests (the kernel may
                                 already hold some; the cap uses libuv's
                                 unsent count) */
} dynqd_conn_t;

void dynqd__conn_accept(dynqd_server_t *s);
/* Queue one response frame (takes ownership of data). */
void dynqd__conn_send(dynqd_conn_t *c, uint8_t *data, size_t len);
void dynqd__conn_send_wbuf(dynqd_conn_t *c, dynq__wbuf_t *w);
void dynqd__conn_send_error(dynqd_conn_t *c, uint32_t msgid, int code,
                            const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void dynqd__conn_job_done(dynqd_conn_t *c, dynqd_job_t *j);
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

#endif
