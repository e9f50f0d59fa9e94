/*
 * libdynqclient: a client for dynqd, blocking or pipelined.
 *
 * One dynq_client_t is one connection; calls on it are not thread-safe (use
 * one client per thread).  Every fallible call returns 0 or a negative code
 * (see errors.h); dynq_client_errmsg() then holds the server's or the
 * library's message for the last failure.  Compiles as C99 and C++.
 *
 * Result structs that may grow (dynq_server_info_t, dynq_model_info_t,
 * dynq_stats_t) start with `size`: the calls are macros passing
 * sizeof(*ret) to the library, which fills only what the caller's struct
 * holds and sets size to the bytes it filled, so a field added at the end
 * later breaks no compiled program (test `offsetof(T, field) < x.size`).
 */
#ifndef DYNQ_DYNQCLIENT_H
#define DYNQ_DYNQCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dynq_client dynq_client_t;

/* Same numbering as the wire/file format. */
typedef enum dynq_client_dtype {
  DYNQ_FLOAT32 = 1, DYNQ_INT8 = 2, DYNQ_UINT8 = 3, DYNQ_INT32 = 4,
  DYNQ_INT64 = 5
} dynq_client_dtype_t;

#define DYNQ_CLIENT_MAX_RANK 8

typedef struct dynq_tensor {
  const char *name;       /* input/output name */
  int dtype;              /* dynq_client_dtype_t */
  int rank;
  int64_t shape[DYNQ_CLIENT_MAX_RANK];
  void *data;             /* inputs: caller's; outputs: owned by the result */
  size_t nbytes;
} dynq_tensor_t;

typedef struct dynq_infer_result {
  int n_outputs;
  dynq_tensor_t *outputs;   /* owned; dynq_infer_result_free() */
  int64_t compute_us;
} dynq_infer_result_t;

typedef struct dynq_tensor_info {
  char *name;               /* owned by the containing struct */
  int dtype;
  int rank;
  int64_t shape[DYNQ_CLIENT_MAX_RANK]; /* -1 = chosen per request */
} dynq_tensor_info_t;

typedef struct dynq_model_info {
  size_t size;              /* bytes filled by the library (see the top) */
  char *name, *path, *producer;
  uint64_t file_bytes;
  int n_inputs, n_outputs;
  dynq_tensor_info_t *inputs, *outputs;
  int n_nodes, quantized_layers;
  uint64_t int8_weight_bytes, fp32_weight_bytes, reference_weight_bytes;
  int has_reference;
  int per_tensor;           /* activation scales: 0 per-row, 1 per-tensor */
  uint64_t source_hash;     /* FNV-1a 64 of the ONNX source file; 0 unknown */
  uint64_t version;         /* the version serving (name@N); 0 from an older dynqd */
} dynq_model_info_t;

typedef struct dynq_server_info {
  size_t size;              /* bytes filled by the library (see the top) */
  char version[32];
  int protocol;
  char kernel[32];
  char openblas_core[64];
  int workers;
  int models;
  double uptime_s;
} dynq_server_info_t;

/* The socket search of dynq_connect(NULL): $DYNQ_SOCKET alone when it is set
 * and non-empty; else $XDG_RUNTIME_DIR/dynq/dynqd.sock (when that variable is
 * set and non-empty), then /run/dynq/dynqd.sock.  Candidate i (from 0) into
 * buf, or NULL past the last. */
const char *dynq_socket_candidate(int i, char *buf, size_t cap);
/* The first candidate. */
const char *dynq_default_socket(char *buf, size_t cap);

/* socket_path NULL: try the candidates in order, moving on only when one
 * does not exist or nobody listens there (-ENOENT, -ECONNREFUSED).  Errors
 * are -errno from the socket calls (-ENOENT, -ECONNREFUSED, -EACCES, ...),
 * or -ENAMETOOLONG when the path does not fit a sockaddr_un; the last
 * path's error when several were tried. */
int dynq_connect(const char *socket_path, dynq_client_t **ret_client);
/* The same; on failure msg (may be NULL) says every path tried and why it
 * failed ("$XDG_RUNTIME_DIR/dynq/dynqd.sock (/run/user/1000/dynq/dynqd.sock):
 * No such file or directory; /run/dynq/dynqd.sock: Permission denied"). */
int dynq_connect_msg(const char *socket_path, dynq_client_t **ret_client,
                     char *msg, size_t msglen);
void dynq_close(dynq_client_t *c);                    /* NULL-safe */
/* The socket path c is connected to (which candidate the search took). */
const char *dynq_client_path(const dynq_client_t *c);
/* Message for the last failed call on c (the server's message for server
 * errors); each call clears it first, so it is "" after a success. */
const char *dynq_client_errmsg(const dynq_client_t *c);

/* ---- waiting for a response: busy-poll before sleeping ----
 *
 * After sending a request the client polls the socket without sleeping
 * (yielding the CPU between tries) for up to spin_us microseconds before
 * it blocks in read().  On a machine
 * whose idle CPUs halt (VMs in particular) waking a sleeping thread costs
 * several to tens of microseconds, more than a small request itself.  The
 * budget adapts: it halves after each wait that outlasted it (a slow
 * server is not spun on for long) and returns to spin_us after a wait short
 * enough to have been caught.  0 turns it off.  The initial value comes
 * from $DYNQ_CLIENT_SPIN_US when it holds a valid value (0 to
 * DYNQ_CLIENT_SPIN_MAX_US), else DYNQ_CLIENT_SPIN_DEFAULT_US.  Answers are
 * the same either way; only when the client notices them changes. */
#define DYNQ_CLIENT_SPIN_MAX_US 1000
#define DYNQ_CLIENT_SPIN_DEFAULT_US 50
/* 0, or DYNQ_EPARAMS (message in errmsg) for spin_us outside
 * 0..DYNQ_CLIENT_SPIN_MAX_US; -EINVAL for a NULL client. */
int dynq_client_set_spin(dynq_client_t *c, int spin_us);
/* The configured budget in microseconds (not the adapted one), or -EINVAL. */
int dynq_client_get_spin(const dynq_client_t *c);

/* ---- a deadline for every answer: a client never hangs ----
 *
 * With a timeout set (timeout_ms > 0), a request not answered within
 * timeout_ms of being submitted is abandoned: a blocking call or
 * dynq_wait_*() on it returns -ETIMEDOUT (dynq_err_name "ETIMEDOUT"; the
 * message says how long was waited), dynq_poll() reports its ticket as
 * completed, and its answer, should it come later, is discarded by msgid;
 * the connection stays usable.  A request dynqd takes no byte of for
 * timeout_ms (it stopped reading) leaves the stream mid-request: the
 * connection is closed and every ticket fails with -ETIMEDOUT.  The
 * timeout of a request is the one set when it was submitted.  0: no limit.
 * The initial value comes from $DYNQ_CLIENT_TIMEOUT_MS when it holds a
 * valid value (0 to DYNQ_CLIENT_TIMEOUT_MAX_MS), else 0; dynq_connect()
 * with that value also gives up on a daemon whose listen queue stays full
 * (the connect then fails with -ETIMEDOUT). */
#define DYNQ_CLIENT_TIMEOUT_MAX_MS (24 * 3600 * 1000)
/* 0, or DYNQ_EPARAMS (message in errmsg) for timeout_ms outside
 * 0..DYNQ_CLIENT_TIMEOUT_MAX_MS; -EINVAL for a NULL client. */
int dynq_client_set_timeout(dynq_client_t *c, int timeout_ms);
/* The timeout in milliseconds (0: none), or -EINVAL. */
int dynq_client_get_timeout(const dynq_client_t *c);
/* dynq_connect_msg() waiting at most timeout_ms for the daemon to accept
 * (-ETIMEDOUT after), with the client's timeout set to timeout_ms (which
 * overrides the environment); DYNQ_EPARAMS outside
 * 0..DYNQ_CLIENT_TIMEOUT_MAX_MS. */
int dynq_connect_timeout(const char *socket_path, int timeout_ms,
                         dynq_client_t **ret_client, char *msg, size_t msglen);

int dynq_ping(dynq_client_t *c);
int dynq_server_info_sized(dynq_client_t *c, dynq_server_info_t *ret_info, size_t size);
#define dynq_server_info(c, ret_info) \
  dynq_server_info_sized((c), (ret_info), sizeof(*(ret_info)))

/* Model names, NULL-terminated array; dynq_strv_free(). */
int dynq_list_models(dynq_client_t *c, char ***ret_names);
void dynq_strv_free(char **v);

int dynq_model_info_sized(dynq_client_t *c, const char *model,
                          dynq_model_info_t *ret_info, size_t size);
#define dynq_model_info(c, model, ret_info) \
  dynq_model_info_sized((c), (model), (ret_info), sizeof(*(ret_info)))
void dynq_model_info_free(dynq_model_info_t *info);

/* precision argument of dynq_infer() */
enum { DYNQ_INFER_DEFAULT = 0, DYNQ_INFER_INT8 = 1, DYNQ_INFER_FP32 = 2 };

int dynq_infer(dynq_client_t *c, const char *model, int precision,
               const dynq_tensor_t *inputs, int n_inputs,
               dynq_infer_result_t *ret_result);
/* Any thread may free a result.  The freeing thread keeps the memory of
 * small results (up to 32 blocks of at most 16 KiB) for the next answers
 * it decodes, and releases them when it exits or calls dynq_close(). */
void dynq_infer_result_free(dynq_infer_result_t *r);

/* Raw call for methods without a typed wrapper: params/result as msgpack
 * bytes.  *ret_result is malloc'd. */
int dynq_call_raw(dynq_client_t *c, const char *method, const void *params,
                  size_t params_len, void **ret_result, size_t *ret_len);

/* ---- health, stats (PROTOCOL.md "Production methods") ---- */

typedef struct dynq_health {
  int live;                 /* health.live answered "ok" */
  int ready;                /* health.ready: models loaded and warm, not draining */
  int models;               /* models loaded */
  char reason[256];         /* dynqd's reason, e.g. why not ready ("" if none) */
} dynq_health_t;

/* Both probes on one connection.  A daemon that answers live but not ready
 * is a success (0) with *ret_ready = 0. */
int dynq_health(dynq_client_t *c, int *ret_live, int *ret_ready);
int dynq_health_get(dynq_client_t *c, dynq_health_t *ret_health);

/* A quality warning of health.ready: a model whose INT8 answers drifted
 * from its FP32 shadow runs by more than dynqd's shadow_alert within the
 * alert window.  Its answers are still served (ready stays true). */
typedef struct dynq_quality {
  size_t size;              /* bytes filled by the library (see the top) */
  char model[128];
  double rel_l2;            /* the relative L2 error that crossed the alert */
  double alert;             /* dynqd's shadow_alert */
  char message[256];
} dynq_quality_t;

/* Up to cap warnings into ret[] (each entry `size` bytes apart: pass
 * sizeof(dynq_quality_t), as the macro does); *ret_n is how many dynqd
 * reported (0 when all is well), which may exceed cap. */
int dynq_health_quality_sized(dynq_client_t *c, dynq_quality_t *ret, int cap, size_t size,
                              int *ret_n);
#define dynq_health_quality(c, ret, cap, ret_n) \
  dynq_health_quality_sized((c), (ret), (cap), sizeof(dynq_quality_t), (ret_n))

/* Cumulative buckets of dynq_latency_t: below[k] counts the samples under
 * 2^k microseconds (k = 0 .. DYNQ_LATENCY_BUCKETS - 1; the last is about
 * 34 s; count covers everything).  Exact: dynqd's own buckets nest inside
 * powers of two, so these are comparable and summable across hosts. */
#define DYNQ_LATENCY_BUCKETS 26

/* One latency histogram, in microseconds: percentiles (bucket upper
 * bounds), the sum of all samples and cumulative power-of-two buckets.
 * has_buckets is 0 when dynqd did not send its histogram (sum and below[]
 * are then 0). */
typedef struct dynq_latency {
  uint64_t count, p50, p90, p99;
  uint64_t sum;
  int has_buckets;
  uint64_t below[DYNQ_LATENCY_BUCKETS];
} dynq_latency_t;

typedef struct dynq_model_stats {
  char *name;               /* owned by the dynq_stats_t */
  uint64_t version, requests, errors;
  dynq_latency_t queue_us, compute_us;
} dynq_model_stats_t;

/* One integer the server's stats reply holds at its top level, known to
 * this library or not: a counter added to dynqd shows up here. */
typedef struct dynq_counter {
  char *name;               /* owned by the dynq_stats_t */
  uint64_t value;
} dynq_counter_t;

/* Shadow FP32 telemetry of one model (dynqd's shadow_rate: sampled INT8
 * requests re-run on FP32 and compared).  The two error histograms count
 * millionths: relL2 x 1e6 and max |INT8 - FP32| x 1e6, so p50..p99, sum
 * and the bounds of below[k] (2^k millionths) are in those units. */
typedef struct dynq_model_shadow {
  int on;                   /* dynqd sent shadow figures for this model */
  double rate;              /* fraction of its INT8 requests re-run */
  uint64_t runs, dropped, decisions_changed, alerts;
  dynq_latency_t rel_l2_ppm, max_abs_ppm;
  uint64_t reserved_[4];    /* zero; room for later fields */
} dynq_model_shadow_t;

typedef struct dynq_stats {
  size_t size;              /* bytes filled by the library (see the top) */
  double uptime_s;
  uint64_t connections, queue_depth, queue_cap, inflight, sessions;
  uint64_t shm_regions, bytes_mapped;
  uint64_t requests_total, errors_total, overloads_total, timeouts_total;
  int n_models;
  dynq_model_stats_t *models;  /* owned; sorted by name; dynq_stats_free() */
  uint64_t inline_total;    /* infers run on dynqd's loop thread */
  int n_counters;
  dynq_counter_t *counters;    /* owned; every top-level integer, server order */
  /* owned; n_models entries, shadow[i] for models[i] (shadow[i].on is 0
   * for a model without shadow telemetry) */
  dynq_model_shadow_t *shadow;
} dynq_stats_t;

int dynq_stats_sized(dynq_client_t *c, dynq_stats_t *ret_stats, size_t size);
#define dynq_stats(c, ret_stats) dynq_stats_sized((c), (ret_stats), sizeof(*(ret_stats)))
void dynq_stats_free(dynq_stats_t *s);      /* NULL-safe; zeroes *s */
/* A counter by name: 0 and *ret_value, or -ENOENT. */
int dynq_stats_counter(const dynq_stats_t *s, const char *name, uint64_t *ret_value);
/* The whole stats reply rendered as one line of JSON (keys in the server's
 * order, fields this library does not know included); free() it. */
int dynq_stats_json(dynq_client_t *c, char **ret_json);

/* ---- model administration (admin peers only: others get DYNQ_EDENIED) ---- */

/* path relative to dynqd's model directory; NULL means "NAME.dynq".
 * ret_version (may be NULL) gets the version now serving. */
int dynq_model_load(dynq_client_t *c, const char *name, const char *path,
                    uint64_t *ret_version);
int dynq_model_unload(dynq_client_t *c, const char *name);
int dynq_model_reload(dynq_client_t *c, const char *name,
                      uint64_t *ret_version);

/* ---- sessions: streaming state kept by dynqd between calls ---- */

/* bindings: n_bindings pairs {input, output, input, output, ...} (the
 * output's value feeds the input on the next call); NULL/0 lets dynqd use
 * the model's declared state pairs.  detached: the session survives this
 * connection (until closed or idle). */
int dynq_session_open(dynq_client_t *c, const char *model,
                      const char *const *bindings, int n_bindings,
                      int detached, uint64_t *ret_id);
/* Pass only the unbound inputs; the result holds every output. */
int dynq_session_infer(dynq_client_t *c, uint64_t id,
                       const dynq_tensor_t *inputs, int n_inputs,
                       dynq_infer_result_t *ret_result);
int dynq_session_reset(dynq_client_t *c, uint64_t id);
int dynq_session_close(dynq_client_t *c, uint64_t id);

/* ---- shared-memory tensors ---- */

/* A sealed memfd of size bytes (F_SEAL_SHRINK | F_SEAL_SEAL), mapped
 * read-write.  Release with dynq_shm_destroy(). */
int dynq_shm_create(size_t size, int *ret_fd, void **ret_ptr);
void dynq_shm_destroy(int fd, void *ptr, size_t size);  /* fd < 0 / NULL ok */
/* Hand fd to dynqd (SCM_RIGHTS); size bytes of it become a region tied to
 * this connection.  dynqd keeps its own reference: fd stays the caller's. */
int dynq_shm_register(dynq_client_t *c, int fd, uint64_t size,
                      uint64_t *ret_region);
int dynq_shm_unregister(dynq_client_t *c, uint64_t region);

typedef struct dynq_shm_ref {
  uint64_t region;          /* from dynq_shm_register() */
  uint64_t offset;          /* bytes from the start of the region */
  uint64_t size;            /* bytes; must equal the tensor's byte size */
} dynq_shm_ref_t;

typedef struct dynq_output_shm {
  const char *name;         /* output name */
  dynq_shm_ref_t ref;       /* where dynqd writes it */
} dynq_output_shm_t;

/* Options of dynq_infer_ex(); dynq_infer_opts_init() first, so fields added
 * later (taken from reserved_) start zeroed. */
typedef struct dynq_infer_opts {
  int precision;            /* DYNQ_INFER_* */
  uint32_t timeout_ms;      /* 0: no deadline; else EDEADLINE if not started in time */
  int use_session;          /* run within session (model may then be NULL) */
  uint64_t session;
  /* NULL, or n_inputs entries: inputs[k] with data == NULL is sent as a
   * reference to input_shm[k] (dtype and shape from inputs[k]). */
  const dynq_shm_ref_t *input_shm;
  /* Outputs dynqd writes into regions; their result tensors have data NULL
   * and nbytes = ref.size. */
  const dynq_output_shm_t *output_shm;
  int n_output_shm;
  uint64_t reserved_[8];
} dynq_infer_opts_t;

void dynq_infer_opts_init(dynq_infer_opts_t *opts);

int dynq_infer_ex(dynq_client_t *c, const char *model,
                  const dynq_tensor_t *inputs, int n_inputs,
                  const dynq_infer_opts_t *opts,
                  dynq_infer_result_t *ret_result);

/* ---- pipelining: several requests in flight on one connection ----
 *
 * dynq_submit_*() returns at once with a ticket (its msgid); answers are
 * matched by ticket in whatever order dynqd sends them.  dynq_submit_infer()
 * queues its request: queued requests leave together, in one write, when
 * the caller next waits (dynq_poll finding no answer ready, dynq_wait_* on
 * an unanswered ticket, any blocking call) or once 128 KiB are queued, and
 * dynq_close() still sends them if the socket takes them at once.
 * dynq_submit_raw() writes at once (after anything queued).
 * dynq_poll() reports tickets as they complete (each exactly once);
 * dynq_wait_*() collects one ticket's answer (waiting for it if needed) and
 * forgets the ticket: its return value is that request's own result (0, or
 * its error, the message in dynq_client_errmsg()).  When the connection
 * breaks, every ticket not yet answered completes with the connection's
 * error (DYNQ_ECLOSED...).  The blocking calls are submit + wait and may be
 * mixed with pipelined ones.  At most dynq_client_set_max_inflight()
 * tickets are outstanding (sent and not collected): a submit beyond that is
 * DYNQ_ELIMIT, nothing sent. */
#define DYNQ_CLIENT_INFLIGHT_DEFAULT 64
#define DYNQ_CLIENT_INFLIGHT_MAX 4096
/* 0, or DYNQ_EPARAMS for n outside 1..DYNQ_CLIENT_INFLIGHT_MAX. */
int dynq_client_set_max_inflight(dynq_client_t *c, int n);
/* Tickets outstanding (answered or not, not yet collected or forgotten). */
int dynq_inflight(const dynq_client_t *c);

int dynq_submit_infer(dynq_client_t *c, const char *model,
                      const dynq_tensor_t *inputs, int n_inputs,
                      const dynq_infer_opts_t *opts, uint32_t *ret_ticket);
int dynq_submit_raw(dynq_client_t *c, const char *method, const void *params,
                    size_t params_len, uint32_t *ret_ticket);
/* 1 and *ret_ticket: a ticket completed (not reported before); 0: none
 * within timeout_ms (0: do not block, -1: no limit) or nothing is waiting;
 * DYNQ_ECLOSED when the connection is gone and every ticket was reported. */
int dynq_poll(dynq_client_t *c, int timeout_ms, uint32_t *ret_ticket);
/* -ENOENT for a ticket that is not outstanding.  A dynq_submit_infer
 * ticket's answer is decoded as it arrives (its frame is not kept):
 * collect it with dynq_wait_infer; dynq_wait_raw on it is DYNQ_EPARAMS. */
int dynq_wait_infer(dynq_client_t *c, uint32_t ticket, dynq_infer_result_t *ret_result);
int dynq_wait_raw(dynq_client_t *c, uint32_t ticket, void **ret_result, size_t *ret_len);
/* Drop a ticket; its answer is discarded when it comes.  -ENOENT if unknown. */
int dynq_forget(dynq_client_t *c, uint32_t ticket);

#ifdef __cplusplus
}
#endif

#endif
