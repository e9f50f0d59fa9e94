/*
 * Raw msgpack-RPC connections to a test dynqd, shared by the issue-5 suites
 * (test-load.c, test-sessions.c, test-shm.c).  Frames are built with the
 * proto writer so tests can also send what libdynqclient never would.
 * Header-only (static functions): each suite is one translation unit.
 */
#ifndef DYNQ_RPCUTIL_H
#define DYNQ_RPCUTIL_H

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "proto/proto.h"
#include "testutil.h"

/* Not every suite uses every helper. */
#define RPC_FN static __attribute__((unused))

#define RPC_IO_TIMEOUT_MS 60000  /* guards against hangs only; never asserted */
#define RPC_STASH_MAX 256

typedef struct rconn {
  int fd;
  uint8_t *buf;
  size_t len, cap;
  int n_stash;  /* responses read while waiting for another msgid */
  dynq__rpc_msg_t stash[RPC_STASH_MAX];
} rconn_t;

RPC_FN void rc_open(rconn_t *c, const char *sock) {
  memset(c, 0, sizeof(*c));
  c->fd = tu_connect(sock);
  ck_assert_msg(c->fd >= 0, "cannot connect to %s: %s", sock, strerror(errno));
}

RPC_FN void rc_close(rconn_t *c) {
  for (int i = 0; i < c->n_stash; i++) dynq__rpc_free(&c->stash[i]);
  if (c->fd >= 0) close(c->fd);
  free(c->buf);
  memset(c, 0, sizeof(*c));
  c->fd = -1;
}

/* Send bytes; when fd >= 0 it rides with the first byte (SCM_RIGHTS). */
RPC_FN void rc_send_fd(rconn_t *c, const void *p, size_t n, int fd) {
  const uint8_t *b = p;
  while (n > 0) {
    struct iovec iov = {(void *)b, n};
    struct msghdr mh;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    union {
      struct cmsghdr h;
      char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    if (fd >= 0) {
      memset(&cm, 0, sizeof(cm));
      mh.msg_control = cm.buf;
      mh.msg_controllen = sizeof(cm.buf);
      struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
      h->cmsg_level = SOL_SOCKET;
      h->cmsg_type = SCM_RIGHTS;
      h->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(h), &fd, sizeof(int));
    }
    ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    ck_assert_msg(w > 0, "sendmsg failed: %s", strerror(errno));
    fd = -1;
    b += w;
    n -= (size_t)w;
  }
}

RPC_FN void rc_send_wbuf(rconn_t *c, dynq__wbuf_t *w) {
  ck_assert_int_eq(w->err, 0);
  rc_send_fd(c, w->data, w->len, -1);
  dynq__wbuf_free(w);
}

/* One message; 0, or -1 when the daemon closed the connection. */
RPC_FN int rc_recv(rconn_t *c, dynq__rpc_msg_t *m) {
  dynq__scan_limits_t lim = dynq__scan_limits_default;
  lim.max_frame = (size_t)1 << 30;
  for (;;) {
    size_t flen = 0;
    if (c->len > 0) {
      int rc = dynq__mp_scan(c->buf, c->len, &lim, &flen);
      if (rc == 0) {
        char err[256];
        int64_t hint;
        int prc = dynq__rpc_parse(c->buf, flen, m, &hint, err, sizeof(err));
        ck_assert_msg(prc == 0, "daemon sent an unparsable message: %s", err);
        memmove(c->buf, c->buf + flen, c->len - flen);
        c->len -= flen;
        return 0;
      }
      ck_assert_msg(rc == -EAGAIN, "daemon sent bytes the scanner refuses (%d)", rc);
    }
    if (c->cap - c->len < 65536) {
      c->cap = c->cap ? c->cap * 2 : 131072;
      c->buf = realloc(c->buf, c->cap);
      ck_assert_ptr_nonnull(c->buf);
    }
    struct pollfd pfd = {c->fd, POLLIN, 0};
    int pr = poll(&pfd, 1, RPC_IO_TIMEOUT_MS);
    ck_assert_msg(pr == 1, "no answer from dynqd within %d ms", RPC_IO_TIMEOUT_MS);
    ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == ECONNRESET) return -1;
    ck_assert_msg(r >= 0, "recv failed: %s", strerror(errno));
    if (r == 0) return -1;
    c->len += (size_t)r;
  }
}

/* Response to msgid (others are stashed); returns its error code. */
RPC_FN int rc_response(rconn_t *c, dynq__rpc_msg_t *m, uint32_t msgid, char *msg,
                       size_t msglen) {
  int found = 0;
  for (int i = 0; i < c->n_stash && !found; i++) {
    if (c->stash[i].msgid == msgid) {
      *m = c->stash[i];
      c->stash[i] = c->stash[--c->n_stash];
      found = 1;
    }
  }
  while (!found) {
    ck_assert_msg(rc_recv(c, m) == 0, "connection closed before response %u", msgid);
    ck_assert_int_eq(m->type, DYNQ_RPC_RESPONSE);
    if (m->msgid == msgid) break;
    for (int i = 0; i < c->n_stash; i++)
      ck_assert_msg(c->stash[i].msgid != m->msgid, "msgid %u answered twice", m->msgid);
    ck_assert_msg(c->n_stash < RPC_STASH_MAX, "too many unexpected responses");
    c->stash[c->n_stash++] = *m;
  }
  char tmp[512];
  return dynq__rpc_error(m->error, msg ? msg : tmp, msg ? msglen : sizeof(tmp));
}

RPC_FN void expect_error(rconn_t *c, uint32_t msgid, int code, const char *needle) {
  dynq__rpc_msg_t m;
  char msg[512];
  int rc = rc_response(c, &m, msgid, msg, sizeof(msg));
  ck_assert_msg(rc == code, "msgid %u: expected %s, got %s (%s)", msgid,
                dynq_err_name(code), dynq_err_name(rc), msg);
  if (needle)
    ck_assert_msg(strstr(msg, needle) != NULL, "message '%s' does not mention '%s'", msg,
                  needle);
  dynq__rpc_free(&m);
}

/* Expect success; the caller frees m. */
RPC_FN void expect_ok(rconn_t *c, uint32_t msgid, dynq__rpc_msg_t *m) {
  char msg[512];
  int rc = rc_response(c, m, msgid, msg, sizeof(msg));
  ck_assert_msg(rc == 0, "msgid %u failed: %s (%s)", msgid, dynq_err_name(rc), msg);
}

RPC_FN int64_t obj_int_or(dynq__obj_t o, int64_t dflt) {
  int64_t v;
  return dynq__obj_int(o, &v) == 0 ? v : dflt;
}

/* [0, msgid, method, {}] */
RPC_FN void send_call0(rconn_t *c, uint32_t msgid, const char *method) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, msgid, method);
  dynq__w_map(&w, 0);
  rc_send_wbuf(c, &w);
}

/* [0, msgid, method, {key: uint}] */
RPC_FN void send_call_id(rconn_t *c, uint32_t msgid, const char *method, const char *key,
                         uint64_t v) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, msgid, method);
  dynq__w_map(&w, 1);
  dynq__w_str(&w, key);
  dynq__w_uint(&w, v);
  rc_send_wbuf(c, &w);
}

RPC_FN void ping_ok(rconn_t *c, uint32_t msgid) {
  send_call0(c, msgid, "ping");
  dynq__rpc_msg_t m;
  expect_ok(c, msgid, &m);
  const char *s;
  size_t n;
  ck_assert_int_eq(dynq__obj_str(m.result, &s, &n), 0);
  ck_assert(n == 4 && memcmp(s, "pong", 4) == 0);
  dynq__rpc_free(&m);
}

RPC_FN void w_f32_tensor(dynq__wbuf_t *w, int rank, const int64_t *dims, const float *data) {
  dynq__tensor_t t;
  memset(&t, 0, sizeof(t));
  t.dtype = DYNQ_DT_F32;
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  t.data = (void *)data;
  dynq__w_tensor(w, &t);
}

/* Decode result.outputs[name] as float32 into dst (exactly n values). */
RPC_FN void get_f32_output(const dynq__rpc_msg_t *m, const char *name, float *dst, size_t n) {
  dynq__obj_t outs = dynq__obj_get(m->result, "outputs");
  ck_assert_int_eq(dynq__obj_kind(outs), DYNQ_OBJ_MAP);
  dynq__tensor_limits_t tl = {DYNQ_MAX_RANK, 1 << 24};
  dynq__tensor_t t;
  char err[256];
  ck_assert_msg(dynq__obj_tensor(dynq__obj_get(outs, name), &tl, &t, err, sizeof(err)) == 0,
                "output %s: %s", name, err);
  ck_assert_int_eq(t.dtype, DYNQ_DT_F32);
  ck_assert_msg((size_t)dynq__tensor_numel(&t) == n, "output %s has %lld values, want %zu",
                name, (long long)dynq__tensor_numel(&t), n);
  memcpy(dst, t.data, n * sizeof(float));
  dynq__tensor_clear(&t);
}

/* dynq-quantize SRCDIR/onnx_rel OUT [extra]; 0 or -1 (tool not built). */
RPC_FN int make_model(const char *onnx_rel, const char *out, const char *extra) {
  char exe[4096], onnx[4096];
  snprintf(exe, sizeof(exe), "%s", tu_build("models/dynq-quantize"));
  if (access(exe, X_OK) != 0) return -1;
  snprintf(onnx, sizeof(onnx), "%s", tu_src(onnx_rel));
  char *argv[5];
  int n = 0;
  argv[n++] = exe;
  if (extra) argv[n++] = (char *)extra;
  argv[n++] = onnx;
  argv[n++] = (char *)out;
  argv[n] = NULL;
  char *log = NULL;
  int rc = tu_run(argv, &log);
  if (rc != 0) fprintf(stderr, "dynq-quantize %s failed (%d): %s\n", onnx_rel, rc, log ? log : "");
  free(log);
  return rc == 0 ? 0 : -1;
}

/* Load a raw float32 fixture of exactly n values. */
RPC_FN int load_f32(const char *rel, float *dst, size_t n) {
  size_t got = 0;
  void *p = tu_read_file(tu_src(rel), &got);
  if (p == NULL || got != n * sizeof(float)) {
    free(p);
    return -1;
  }
  memcpy(dst, p, got);
  free(p);
  return 0;
}

/* Whether pid (a child of some ancestor) is still running. */
RPC_FN int pid_alive(pid_t pid) {
  if (pid <= 0) return 0;
  char p[64], buf[256];
  snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
  FILE *f = fopen(p, "r");
  if (f == NULL) return 0;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *rp = strrchr(buf, ')');
  return rp != NULL && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

#endif
