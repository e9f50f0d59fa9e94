/*
 * Helpers shared by test-config.c and test-reload.c (static, header-only):
 * a fake $NOTIFY_SOCKET that collects sd_notify datagrams, admin calls
 * through libdynqclient's raw call, and model fixtures made with
 * dynq-quantize.  Waits are for events (a datagram, a line, a process
 * exit); the only clocks are generous give-up bounds so a broken daemon
 * fails a test instead of hanging it.
 */
#ifndef DYNQ_D1_HELPERS_H
#define DYNQ_D1_HELPERS_H

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dynq/dynqclient.h"
#include "dynq/errors.h"
#include "proto/proto.h"
#include "testutil.h"

/* ---- fake NOTIFY_SOCKET ---- */

typedef struct notify_sock {
  int fd;
  char path[256];
} notify_sock_t;

static void notify_open(notify_sock_t *n, const char *dir) {
  snprintf(n->path, sizeof(n->path), "%s/notify.sock", dir);
  n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ck_assert_int_ge(n->fd, 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  ck_assert_uint_lt(strlen(n->path), sizeof(sa.sun_path));
  memcpy(sa.sun_path, n->path, strlen(n->path) + 1);
  ck_assert_int_eq(bind(n->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  setenv("NOTIFY_SOCKET", n->path, 1);
}

static void notify_close(notify_sock_t *n) {
  unsetenv("NOTIFY_SOCKET");
  if (n->fd >= 0) close(n->fd);
  n->fd = -1;
}

/* Wait for a datagram containing `want` (a line of it); every datagram
 * read is appended to seen (if non-NULL).  1 found, 0 gave up (30 s). */
static int notify_wait(notify_sock_t *n, const char *want, char *seen, size_t seencap) {
  for (int rounds = 0; rounds < 300; rounds++) {
    struct pollfd p = {n->fd, POLLIN, 0};
    int r = poll(&p, 1, 100);
    if (r <= 0) continue;
    char buf[1024];
    ssize_t got = recv(n->fd, buf, sizeof(buf) - 1, 0);
    if (got <= 0) continue;
    buf[got] = '\0';
    if (seen) {
      size_t used = strlen(seen);
      snprintf(seen + used, seencap - used, "%s|", buf);
    }
    for (char *line = buf; line && *line;) {
      char *nl = strchr(line, '\n');
      if (nl) *nl = '\0';
      if (strcmp(line, want) == 0) return 1;
      line = nl ? nl + 1 : NULL;
    }
  }
  return 0;
}

/* ---- calls ---- */

/* params: {"model": model[, "path": path]} */
__attribute__((unused)) static int admin_call(const char *sock, const char *method, const char *model,
                      const char *path, int *ret_version, char *msg, size_t msgcap) {
  dynq_client_t *c = NULL;
  int rc = dynq_connect(sock, &c);
  if (rc != 0) {
    snprintf(msg, msgcap, "connect: %s", dynq_strerror(rc));
    return rc;
  }
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_map(&w, path ? 2 : 1);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, model);
  if (path) {
    dynq__w_str(&w, "path");
    dynq__w_str(&w, path);
  }
  void *res = NULL;
  size_t rlen = 0;
  rc = dynq_call_raw(c, method, w.data, w.len, &res, &rlen);
  snprintf(msg, msgcap, "%s", dynq_client_errmsg(c));
  dynq__wbuf_free(&w);
  if (rc == 0 && ret_version) {
    /* Wrap the result in a response envelope to read it with the parser. */
    uint8_t *frame = malloc(rlen + 4);
    ck_assert_ptr_nonnull(frame);
    frame[0] = 0x94; frame[1] = 0x01; frame[2] = 0x00; frame[3] = 0xc0;
    memcpy(frame + 4, res, rlen);
    dynq__rpc_msg_t m;
    int64_t hint;
    char err[128];
    ck_assert_int_eq(dynq__rpc_parse(frame, rlen + 4, &m, &hint, err, sizeof(err)), 0);
    int64_t v = -1;
    ck_assert_int_eq(dynq__obj_int(dynq__obj_get(m.result, "version"), &v), 0);
    *ret_version = (int)v;
    dynq__rpc_free(&m);
    free(frame);
  }
  free(res);
  dynq_close(c);
  return rc;
}

/* One infer of x [rows, 64] on the mlp fixture; the first output's bytes
 * go to *ret_out (malloc'd).  0 or the error. */
__attribute__((unused)) static int infer_mlp(const char *sock, const char *model, const float *x, int rows,
                     void **ret_out, size_t *ret_n, char *msg, size_t msgcap) {
  dynq_client_t *c = NULL;
  int rc = dynq_connect(sock, &c);
  if (rc != 0) {
    snprintf(msg, msgcap, "connect: %s", dynq_strerror(rc));
    return rc;
  }
  dynq_tensor_t in;
  memset(&in, 0, sizeof(in));
  in.name = "x";
  in.dtype = DYNQ_FLOAT32;
  in.rank = 2;
  in.shape[0] = rows;
  in.shape[1] = 64;
  in.data = (void *)x;
  in.nbytes = (size_t)rows * 64 * sizeof(float);
  dynq_infer_result_t r;
  rc = dynq_infer(c, model, DYNQ_INFER_DEFAULT, &in, 1, &r);
  snprintf(msg, msgcap, "%s", dynq_client_errmsg(c));
  if (rc == 0) {
    ck_assert_int_ge(r.n_outputs, 1);
    *ret_n = r.outputs[0].nbytes;
    *ret_out = malloc(*ret_n);
    ck_assert_ptr_nonnull(*ret_out);
    memcpy(*ret_out, r.outputs[0].data, *ret_n);
    dynq_infer_result_free(&r);
  }
  dynq_close(c);
  return rc;
}

/* ---- fixtures ---- */

__attribute__((unused)) static int quantize_mlp(const char *out, const char *flag) {
  char exe[4096], onnx[4096];
  snprintf(exe, sizeof(exe), "%s", tu_build("models/dynq-quantize"));
  snprintf(onnx, sizeof(onnx), "%s", tu_src("tests/fixtures/mlp.onnx"));
  if (access(exe, X_OK) != 0) return -1;
  char *argv[5];
  int n = 0;
  argv[n++] = exe;
  if (flag) argv[n++] = (char *)flag;
  argv[n++] = onnx;
  argv[n++] = (char *)out;
  argv[n] = NULL;
  char *log = NULL;
  int rc = tu_run(argv, &log);
  if (rc != 0) fprintf(stderr, "dynq-quantize failed (%d): %s\n", rc, log ? log : "");
  free(log);
  return rc == 0 ? 0 : -1;
}

/* Copy src to dir/.stage then rename it over dst: readers see the old or
 * the new file, never a mix. */
__attribute__((unused)) static void swap_file(const char *src, const char *dst, const char *dir) {
  size_t n = 0;
  void *p = tu_read_file(src, &n);
  ck_assert_ptr_nonnull(p);
  char tmp[512];
  snprintf(tmp, sizeof(tmp), "%s/.stage", dir);
  ck_assert_int_eq(tu_write_file(tmp, p, n), 0);
  free(p);
  ck_assert_int_eq(rename(tmp, dst), 0);
}

__attribute__((unused)) static int file_contains(const char *path, const char *needle) {
  size_t n = 0;
  char *p = tu_read_file(path, &n);
  if (p == NULL) return 0;
  int found = strstr(p, needle) != NULL;
  free(p);
  return found;
}

__attribute__((unused)) static int count_in_file(const char *path, const char *needle) {
  size_t n = 0;
  char *p = tu_read_file(path, &n);
  if (p == NULL) return 0;
  int count = 0;
  for (char *q = p; (q = strstr(q, needle)) != NULL; q += strlen(needle)) count++;
  free(p);
  return count;
}

#endif
