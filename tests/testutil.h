/*
 * Helpers shared by the Check suites: scratch directories, running the
 * built programs, a real dynqd on a temporary socket, a raw msgpack-RPC
 * connection to it, a fake $NOTIFY_SOCKET, numeric comparisons and the
 * suite runner.  Helpers named "expect"/"assert" fail the calling test
 * through Check; the others return a status.
 */
#ifndef DYNQ_TESTUTIL_H
#define DYNQ_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "proto/proto-tensor.h"

/* $DYNQ_SRCDIR/rel and $DYNQ_BUILDDIR/rel (static buffers: copy if kept). */
const char *tu_src(const char *rel);
const char *tu_build(const char *rel);

/* A fresh directory under $TMPDIR; removed (recursively) by tu_rmtree. */
char *tu_mkdtemp(void);
/* A Check fixture's scratch directory: tu_tmp_setup makes tu_tmp (a fresh
 * tu_mkdtemp for each test), tu_tmp_teardown removes it with its files. */
extern char *tu_tmp;
void tu_tmp_setup(void);
void tu_tmp_teardown(void);
void tu_rmtree(const char *dir);

/* Write/read a whole file.  Return 0 / -1. */
int tu_write_file(const char *path, const void *p, size_t n);
void *tu_read_file(const char *path, size_t *ret_n);

/* Run argv (argv[0] a path), wait, return the exit status (or 128+signal).
 * When out is non-NULL, stdout+stderr are captured into a malloc'd
 * NUL-terminated string. */
int tu_run(char *const argv[], char **out);

/* A running dynqd. */
typedef struct tu_daemon {
  pid_t pid;
  char sock[256];
  char log[256];    /* stderr of the daemon */
} tu_daemon_t;

/* Start $DYNQ_BUILDDIR/daemon/dynqd --socket DIR/dynqd.sock --models
 * model_dir [extra args...] and wait until the socket accepts (up to 20 s).
 * Returns 0 or -1. */
int tu_daemon_start(tu_daemon_t *d, const char *dir, const char *model_dir,
                    const char *const *extra_args);
/* Send sig and wait; returns the exit status (128+signal if killed). */
int tu_daemon_stop(tu_daemon_t *d, int sig);
/* Whether the daemon process is still alive. */
int tu_daemon_alive(const tu_daemon_t *d);

/* Connect a raw SOCK_STREAM to path; fd or -1. */
int tu_connect(const char *path);

/* For fake servers: write all of p (or w's bytes, then free w), giving up
 * silently when the peer is gone (what the client does is under test). */
void tu_write_all(int fd, const void *p, size_t n);
void tu_send_wbuf(int fd, dynq__wbuf_t *w);

/* Whether pid is still running (not a zombie).  Works for any process,
 * also one that is not our child (Check forks each test). */
int tu_pid_alive(pid_t pid);

/* A fresh scratch directory holding an empty "models" subdirectory
 * (asserted).  Returns the directory; *ret_models gets DIR/models (both
 * malloc'd). */
char *tu_mkdtemp_models(char **ret_models);

/* SIGTERM a shared daemon from a suite's teardown (when running) and
 * report a non-zero exit on stderr as "FAIL: <what> dynqd exited with N".
 * Returns the exit status (0 when it was not running). */
int tu_daemon_teardown(tu_daemon_t *d, const char *what);

/* A listening SOCK_STREAM bound at path (asserted); the fd.
 * tu_spawn_activated: socket activation, dynqd started on such a socket as
 * fd 3 with LISTEN_PID/LISTEN_FDS set, its stderr in log, --socket
 * sock_arg (must stay unused) and --models models.  The parent's copy of
 * lfd is closed.  Returns the pid. */
int tu_listen_unix(const char *path, int backlog);
pid_t tu_spawn_activated(int lfd, const char *log, const char *sock_arg, const char *models);

/* A fake server's connection (run it on a thread): accepts one client on
 * lfd and calls on_msg for every request frame it sends, until on_msg
 * returns nonzero, the client closes or a frame does not parse; then
 * closes the connection.  Frames up to 64 KiB. */
typedef int (*tu_fake_fn)(void *ctx, int fd, const dynq__rpc_msg_t *m);
void tu_fake_serve(int lfd, tu_fake_fn on_msg, void *ctx);

/* End the calling test early, saying why on stderr, unless cond holds
 * (a prerequisite such as dynq-quantize is not built). */
#define TU_SKIP_UNLESS(cond, why)                                \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "SKIP %s: %s\n", __func__, why);           \
      return;                                                    \
    }                                                            \
  } while (0)

/* n floats (i % period) / period: a deterministic input for large
 * requests (asserted; the caller frees). */
float *tu_ramp_f32(size_t n, int period);

/* Where the fetch scripts (models/fetch-*.sh) cache a real model file:
 * $DYNQ_CACHE_DIR/name, else $XDG_CACHE_HOME/dynq/name, else
 * $HOME/.cache/dynq/name, into buf; whether it is readable. */
int tu_cache_file(const char *name, char *buf, size_t cap);

/* ---- files ---- */

/* Load a raw float32 file $DYNQ_SRCDIR/rel of exactly n values: 0 / -1. */
int tu_load_f32(const char *rel, float *dst, size_t n);
/* Copy src to dir/.stage then rename it over dst: readers see the old or
 * the new file, never a mix (asserted). */
void tu_swap_file(const char *src, const char *dst, const char *dir);
/* Whether the file holds needle; how many times. */
int tu_file_contains(const char *path, const char *needle);
int tu_count_in_file(const char *path, const char *needle);

/* ---- dynq-quantize ---- */

/* $DYNQ_BUILDDIR/models/dynq-quantize args... (NULL-terminated); the exit
 * status as tu_run returns it, output in *log when log is non-NULL. */
int tu_quantize_argv(char *const *args, char **log);
int tu_quantize_log(char **log, ...);
/* dynq-quantize [flags...] ONNX OUT, flags NULL-terminated; onnx is
 * relative to $DYNQ_SRCDIR unless absolute.  0, or -1 when the tool is not
 * built or fails (its output then goes to stderr). */
int tu_quantize(const char *onnx, const char *out, ...);

/* ---- numeric comparisons (double accumulation) ---- */

/* ||got - ref||_2 / ||ref||_2 (a zero ref divides by 1). */
double tu_rel_l2(const float *got, const float *ref, size_t n);
/* max |got - ref| / max |ref| (a zero ref divides by 1); a NaN in got
 * makes the result NaN so that every "<= tol" check fails. */
double tu_rel_max(const float *got, const float *ref, size_t n);

/* ---- raw msgpack-RPC connection to a dynqd ----
 * Frames are built with the proto writer so tests can also send what
 * libdynqclient never would.  Responses that arrive while waiting for
 * another msgid are stashed and handed out later. */

#define TU_RPC_IO_TIMEOUT_MS 60000  /* guards against hangs only; never asserted */
#define TU_RPC_STASH_MAX 256

typedef struct tu_rpc {
  int fd;
  dynq__framer_t fr;             /* the answers' byte stream */
  int n_stash;
  dynq__rpc_msg_t stash[TU_RPC_STASH_MAX];
} tu_rpc_t;

void tu_rpc_open(tu_rpc_t *c, const char *sock);  /* asserted */
void tu_rpc_close(tu_rpc_t *c);
/* Send bytes; when fd >= 0 it rides with the first byte (SCM_RIGHTS). */
void tu_rpc_send_fd(tu_rpc_t *c, const void *p, size_t n, int fd);
void tu_rpc_send(tu_rpc_t *c, const void *p, size_t n);
/* Send w's bytes (asserting the writer had no error) and free w. */
void tu_rpc_send_wbuf(tu_rpc_t *c, dynq__wbuf_t *w);
/* One message: 0, or -1 when the daemon closed the connection between
 * messages (closing inside one fails the test). */
int tu_rpc_recv(tu_rpc_t *c, dynq__rpc_msg_t *m);
/* The response to msgid (others are stashed); returns its error code (0
 * with a result) and the error message in msg.  The caller frees m. */
int tu_rpc_response(tu_rpc_t *c, dynq__rpc_msg_t *m, uint32_t msgid, char *msg,
                    size_t msglen);
/* Expect an error response with this code whose message holds needle
 * (unless NULL). */
void tu_rpc_expect_error(tu_rpc_t *c, uint32_t msgid, int code, const char *needle);
/* Expect success; the caller frees m. */
void tu_rpc_expect_ok(tu_rpc_t *c, uint32_t msgid, dynq__rpc_msg_t *m);
/* Expect the daemon to close the connection (nothing left unread). */
void tu_rpc_expect_closed(tu_rpc_t *c);
/* Expect a successful "pong" result. */
void tu_rpc_expect_pong(tu_rpc_t *c, uint32_t msgid);

/* Writes a call's params (one msgpack object) into w. */
typedef void (*tu_params_fn)(dynq__wbuf_t *w, void *ctx);
/* Send [0, msgid, method, params]; params NULL sends {}. */
void tu_rpc_call(tu_rpc_t *c, uint32_t msgid, const char *method, tu_params_fn params,
                 void *ctx);
/* [0, msgid, method, {}] and [0, msgid, method, {key: v}]. */
void tu_rpc_call0(tu_rpc_t *c, uint32_t msgid, const char *method);
void tu_rpc_call_id(tu_rpc_t *c, uint32_t msgid, const char *method, const char *key,
                    uint64_t v);
/* ping, expecting pong. */
void tu_rpc_ping_ok(tu_rpc_t *c, uint32_t msgid);
/* The integer `key` of a stats call's result (asserted ok), -1 when it is
 * not there. */
int64_t tu_rpc_stat(tu_rpc_t *c, uint32_t msgid, const char *key);

/* Integer value of o, or dflt when o is not an integer. */
int64_t tu_obj_int_or(dynq__obj_t o, int64_t dflt);
/* A float32 tensor through the proto writer. */
void tu_w_f32_tensor(dynq__wbuf_t *w, int rank, const int64_t *dims, const float *data);
/* [0, msgid, "infer", {model, inputs: {input: float32 [rows, cols]}
 * [, timeout_ms]}] appended to w; timeout_ms < 0 leaves it out. */
void tu_w_infer_f32(dynq__wbuf_t *w, uint32_t msgid, const char *model, const char *input,
                    int64_t rows, int64_t cols, const float *data, int64_t timeout_ms);
/* {dtype, shape, data} written by hand so tests can lie in any field. */
void tu_w_raw_tensor(dynq__wbuf_t *w, const char *dtype, int rank, const int64_t *dims,
                     const void *data, size_t n);
/* Decode result.outputs[name] as float32 into dst (exactly n values). */
void tu_get_f32_output(const dynq__rpc_msg_t *m, const char *name, float *dst, size_t n);

/* ---- through libdynqclient ---- */

/* An admin call with params {"model": model[, "path": path]}; the result's
 * "version" goes to *ret_version when non-NULL.  0 or the error, whose
 * message goes to msg. */
int tu_admin_call(const char *sock, const char *method, const char *model, const char *path,
                  int *ret_version, char *msg, size_t msgcap);
/* One infer of x [rows, 64] on the mlp fixture; the first output's bytes
 * go to *ret_out (malloc'd).  0 or the error. */
int tu_infer_mlp(const char *sock, const char *model, const float *x, int rows,
                 void **ret_out, size_t *ret_n, char *msg, size_t msgcap);
/* The same on an open connection c (its error message: dynq_client_errmsg). */
struct dynq_client;
int tu_infer_mlp_on(struct dynq_client *c, const char *model, const float *x, int rows,
                    void **ret_out, size_t *ret_n);

/* ---- a fake $NOTIFY_SOCKET collecting sd_notify datagrams ---- */

typedef struct tu_notify {
  int fd;
  char path[256];
} tu_notify_t;

/* Bind dir/notify.sock and point $NOTIFY_SOCKET at it (asserted). */
void tu_notify_open(tu_notify_t *n, const char *dir);
void tu_notify_close(tu_notify_t *n);
/* Wait for a datagram holding the line `want`; every datagram read is
 * appended to seen (if non-NULL).  1 found, 0 gave up (30 s). */
int tu_notify_wait(tu_notify_t *n, const char *want, char *seen, size_t seencap);

/* ---- running a suite ---- */

/* Run every test of sr (CK_NORMAL), free it; returns the failure count. */
int tu_run_runner(SRunner *sr);
int tu_run_suite(Suite *s);
/* main() for a suite file whose only business is its Suite. */
#define TU_MAIN(suite_fn)                                            \
  int main(void) { return tu_run_suite(suite_fn()) == 0 ? EXIT_SUCCESS : EXIT_FAILURE; }

#endif
