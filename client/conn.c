/*
 * libdynqclient connection layer: the socket search and connect, the
 * non-blocking core every call runs on, and the untyped calls (ping, raw).
 *
 * Core: a request is sent (reading answers meanwhile if the socket is full)
 * and registered as a ticket; bytes read go through proto's framer (so a
 * hostile or broken server cannot make us allocate more than
 * DYNQ__CLIENT_MAX_FRAME), each answer completes its ticket by msgid in
 * whatever order it comes.  Blocking calls are send + wait for their own
 * ticket, with the adaptive busy-poll (dynq_client_set_spin); the pipelined
 * API (dynq_submit_*, dynq_poll, dynq_wait_*) exposes the tickets.
 */
#include "client-internal.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Bytes asked of the framer per read. */
#define READ_CHUNK ((size_t)64 << 10)

/* Responses are small maps except for tensor payloads (bin), so depth and
 * element counts stay low even for large results. */
static const dynq__scan_limits_t response_limits = {
  .max_frame = DYNQ__CLIENT_MAX_FRAME,
  .max_depth = 32,
  .max_elems = (uint64_t)1 << 22,
};

/* Once the budget has adapted down to 0, a call now and then spins with
 * the full budget again (a probe): the server may have become fast, and a
 * blocking wait (which includes the wake-up we want to avoid) can look too
 * slow to ever re-enable the spin by itself.  The gap between probes
 * starts at SPIN_PROBE_MIN calls and doubles after each probe that found
 * the server slow, up to SPIN_PROBE_MAX: on a busy server (64 clients,
 * waits of milliseconds) the probes' spinning measurably cost throughput
 * at a fixed gap of 32. */
#define SPIN_PROBE_MIN 32
#define SPIN_PROBE_MAX 4096

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Milliseconds from now to deadline (> now), rounded up: a poll() for
 * that long ends at or after the deadline, never just before it. */
static int ms_until(uint64_t deadline, uint64_t now) {
  uint64_t ms = (deadline - now + 999999u) / 1000000u;
  return ms > (uint64_t)DYNQ_CLIENT_TIMEOUT_MAX_MS ? DYNQ_CLIENT_TIMEOUT_MAX_MS : (int)ms;
}

/* $DYNQ_CLIENT_SPIN_US when it is a whole number in range, else the
 * default: a typo in the environment must not stop a program connecting
 * (dynq_client_get_spin shows what was taken). */
static int spin_from_env(void) {
  const char *e = getenv("DYNQ_CLIENT_SPIN_US");
  char *end;
  long v;
  if (e == NULL || *e == '\0') return DYNQ_CLIENT_SPIN_DEFAULT_US;
  errno = 0;
  v = strtol(e, &end, 10);
  if (errno != 0 || end == e || *end != '\0' || v < 0 || v > DYNQ_CLIENT_SPIN_MAX_US)
    return DYNQ_CLIENT_SPIN_DEFAULT_US;
  return (int)v;
}

/* $DYNQ_CLIENT_TIMEOUT_MS when it is a whole number in range, else 0 (no
 * limit), for the same reason. */
static int timeout_from_env(void) {
  const char *e = getenv("DYNQ_CLIENT_TIMEOUT_MS");
  char *end;
  long v;
  if (e == NULL || *e == '\0') return 0;
  errno = 0;
  v = strtol(e, &end, 10);
  if (errno != 0 || end == e || *end != '\0' || v < 0 || v > DYNQ_CLIENT_TIMEOUT_MAX_MS)
    return 0;
  return (int)v;
}

/* ---- the socket search ---- */

const char *dynq_socket_candidate(int i, char *buf, size_t cap) {
  const char *env = getenv("DYNQ_SOCKET");
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  if (buf == NULL || cap == 0 || i < 0) return NULL;
  /* An explicit choice is the only candidate: trying others behind the
   * user's back could reach a different daemon. */
  if (env != NULL && *env != '\0') {
    if (i > 0) return NULL;
    snprintf(buf, cap, "%s", env);
    return buf;
  }
  if (xdg != NULL && *xdg != '\0') {
    if (i == 0) {
      snprintf(buf, cap, "%s/dynq/dynqd.sock", xdg);
      return buf;
    }
    i--;
  }
  if (i > 0) return NULL;
  snprintf(buf, cap, "%s", "/run/dynq/dynqd.sock");
  return buf;
}

const char *dynq_default_socket(char *buf, size_t cap) {
  return dynq_socket_candidate(0, buf, cap);
}

int dynq__client_fail(dynq_client_t *c, int code, const char *fmt, ...) {
  va_list ap;
  if (c == NULL) return code;
  va_start(ap, fmt);
  vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
  va_end(ap);
  return code;
}

static void pend_clear(dynq__pend_t *p) {
  free(p->msg);
  p->msg = NULL;
  if (p->done && p->code == 0) dynq__rpc_free(&p->resp);
  if (p->has_res) dynq_infer_result_free(&p->res);
  p->has_res = 0;
}

/* The stream can no longer be trusted to be at a frame boundary: close it
 * and answer every request still waiting with code and msg, once. */
static void client_broken(dynq_client_t *c, int code, const char *msg) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->broken_code = code;
  dynq__framer_discard(&c->fr);
  /* queued requests will never be written; their tickets fail below
   * (the bytes stay allocated: a flush may be iterating over them) */
  dynq__wbuf_reset(&c->out);
  for (dynq__pend_t *p = dynq__tickets_first(&c->tickets); p != NULL;
       p = dynq__tickets_next(&c->tickets, p)) {
    if (p->done) continue;
    p->code = code;
    p->msg = msg != NULL ? strdup(msg) : NULL;
    dynq__tickets_done(&c->tickets, p);
  }
}

/* Connect one path, waiting at most timeout_ms (0: no limit) while the
 * daemon's listen queue is full: 0 and *ret_fd, or -errno (-ETIMEDOUT). */
static int connect_path(const char *path, int timeout_ms, int *ret_fd) {
  struct sockaddr_un sa;
  size_t n = strlen(path);
  int fd;
  /* sun_path needs room for the NUL; we never use abstract sockets. */
  if (n == 0) return -EINVAL;
  if (n >= sizeof(sa.sun_path)) return -ENAMETOOLONG;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, n + 1);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  /* A Unix stream connect sleeps while the listener's queue is full (a
   * stopped or wedged dynqd) for as long as the send timeout allows, and
   * then fails with EAGAIN.  Every later send is MSG_DONTWAIT, so the
   * option changes nothing after the connect. */
  if (timeout_ms > 0) {
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
      int e = errno;
      close(fd);
      return -e;
    }
  }
  while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    int e = errno;
    if (e == EINTR) continue;
    close(fd);
    return e == EAGAIN && timeout_ms > 0 ? -ETIMEDOUT : -e;
  }
  *ret_fd = fd;
  return 0;
}

static void msg_append(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void msg_append(char *msg, size_t msglen, const char *fmt, ...) {
  size_t used;
  va_list ap;
  if (msg == NULL || msglen == 0) return;
  used = strlen(msg);
  if (used + 1 >= msglen) return;
  va_start(ap, fmt);
  vsnprintf(msg + used, msglen - used, fmt, ap);
  va_end(ap);
}

/* dynq_connect_msg with a connect timeout (0: none). */
static int connect_search(const char *socket_path, int timeout_ms, dynq_client_t **ret_client,
                          char *msg, size_t msglen) {
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
  dynq_client_t *c;
  int fd = -1, r = -ENOENT;

  if (msg != NULL && msglen > 0) msg[0] = '\0';
  if (ret_client == NULL) return -EINVAL;
  if (socket_path != NULL) {
    snprintf(path, sizeof(path), "%s", socket_path);
    r = connect_path(socket_path, timeout_ms, &fd);
    if (r < 0)
      msg_append(msg, msglen, "%s: %s%s", socket_path, dynq_strerror(r),
                 r == -ETIMEDOUT ? " (dynqd accepted no connection in time)" : "");
  } else {
    const char *env = getenv("DYNQ_SOCKET");
    for (int i = 0; dynq_socket_candidate(i, path, sizeof(path)) != NULL; i++) {
      const char *how = env != NULL && *env != '\0' ? "$DYNQ_SOCKET"
                        : strncmp(path, "/run/dynq/", 10) == 0 ? NULL
                                                               : "$XDG_RUNTIME_DIR/dynq/dynqd.sock";
      r = connect_path(path, timeout_ms, &fd);
      if (r == 0) break;
      msg_append(msg, msglen, "%s%s%s%s%s: %s%s", i ? "; " : "", how ? how : "",
                 how ? " (" : "", path, how ? ")" : "", dynq_strerror(r),
                 r == -ETIMEDOUT ? " (dynqd accepted no connection in time)" : "");
      /* Only "nobody there" moves on: a path that exists but refuses us
       * (EACCES) is the answer the user needs to see. */
      if (r != -ENOENT && r != -ECONNREFUSED) break;
    }
  }
  if (r < 0) return r;
  r = dynq__client_adopt(fd, path, &c);
  if (r < 0) return r;
  c->timeout_ms = timeout_ms;
  *ret_client = c;
  return 0;
}

int dynq_connect_msg(const char *socket_path, dynq_client_t **ret_client, char *msg,
                     size_t msglen) {
  return connect_search(socket_path, timeout_from_env(), ret_client, msg, msglen);
}

int dynq_connect_timeout(const char *socket_path, int timeout_ms, dynq_client_t **ret_client,
                         char *msg, size_t msglen) {
  if (msg != NULL && msglen > 0) msg[0] = '\0';
  if (ret_client == NULL) return -EINVAL;
  if (timeout_ms < 0 || timeout_ms > DYNQ_CLIENT_TIMEOUT_MAX_MS) {
    if (msg != NULL && msglen > 0)
      snprintf(msg, msglen, "timeout %d ms is outside 0..%d", timeout_ms,
               DYNQ_CLIENT_TIMEOUT_MAX_MS);
    return DYNQ_EPARAMS;
  }
  return connect_search(socket_path, timeout_ms, ret_client, msg, msglen);
}

int dynq__client_adopt(int fd, const char *path, dynq_client_t **ret_client) {
  dynq_client_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    close(fd);
    return -ENOMEM;
  }
  c->fd = fd;
  snprintf(c->path, sizeof(c->path), "%s", path);
  c->next_msgid = 1;
  c->max_inflight = DYNQ_CLIENT_INFLIGHT_DEFAULT;
  c->timeout_ms = timeout_from_env();
  c->spin_max_us = c->spin_cur_us = spin_from_env();
  c->spin_probe_gap = SPIN_PROBE_MIN;
  dynq__tickets_init(&c->tickets);
  dynq__framer_init(&c->fr, &response_limits);
  dynq__wbuf_init(&c->out);
  *ret_client = c;
  return 0;
}

int dynq_connect(const char *socket_path, dynq_client_t **ret_client) {
  return dynq_connect_msg(socket_path, ret_client, NULL, 0);
}

void dynq_close(dynq_client_t *c) {
  if (c == NULL) return;
  /* Requests submitted and never waited for still go out if the socket
   * takes them at once (a submitted unload should not depend on a poll);
   * a partial write does not matter as the stream ends here. */
  if (c->fd >= 0 && c->out.len > 0)
    (void)!send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (c->fd >= 0) close(c->fd);
  for (dynq__pend_t *p = dynq__tickets_first(&c->tickets); p != NULL;
       p = dynq__tickets_next(&c->tickets, p))
    pend_clear(p);
  dynq__tickets_free(&c->tickets);
  dynq__framer_free(&c->fr);
  dynq__wbuf_free(&c->out);
  free(c);
  dynq__result_spares_drop();
}

int dynq_client_set_spin(dynq_client_t *c, int spin_us) {
  if (c == NULL) return -EINVAL;
  c->errmsg[0] = '\0';
  if (spin_us < 0 || spin_us > DYNQ_CLIENT_SPIN_MAX_US)
    return dynq__client_fail(c, DYNQ_EPARAMS,
                             "spin budget %d us is outside 0..%d", spin_us,
                             DYNQ_CLIENT_SPIN_MAX_US);
  c->spin_max_us = c->spin_cur_us = spin_us;
  c->spin_idle_calls = 0;
  c->spin_probe_gap = SPIN_PROBE_MIN;
  return 0;
}

int dynq_client_get_spin(const dynq_client_t *c) {
  if (c == NULL) return -EINVAL;
  return c->spin_max_us;
}

int dynq_client_set_timeout(dynq_client_t *c, int timeout_ms) {
  if (c == NULL) return -EINVAL;
  c->errmsg[0] = '\0';
  if (timeout_ms < 0 || timeout_ms > DYNQ_CLIENT_TIMEOUT_MAX_MS)
    return dynq__client_fail(c, DYNQ_EPARAMS, "timeout %d ms is outside 0..%d", timeout_ms,
                             DYNQ_CLIENT_TIMEOUT_MAX_MS);
  c->timeout_ms = timeout_ms;
  return 0;
}

int dynq_client_get_timeout(const dynq_client_t *c) {
  if (c == NULL) return -EINVAL;
  return c->timeout_ms;
}

int dynq_client_set_max_inflight(dynq_client_t *c, int n) {
  if (c == NULL) return -EINVAL;
  c->errmsg[0] = '\0';
  if (n < 1 || n > DYNQ_CLIENT_INFLIGHT_MAX)
    return dynq__client_fail(c, DYNQ_EPARAMS, "in-flight limit %d is outside 1..%d", n,
                             DYNQ_CLIENT_INFLIGHT_MAX);
  c->max_inflight = n;
  return 0;
}

int dynq_inflight(const dynq_client_t *c) {
  if (c == NULL) return -EINVAL;
  return c->tickets.n;
}

const char *dynq_client_path(const dynq_client_t *c) {
  return c != NULL ? c->path : "";
}

const char *dynq_client_errmsg(const dynq_client_t *c) {
  if (c == NULL) return "no client";
  return c->errmsg;
}

uint32_t dynq__client_next_id(dynq_client_t *c) {
  uint32_t id = c->next_msgid++;
  if (c->next_msgid == 0) c->next_msgid = 1;
  return id;
}

uint32_t dynq__client_begin(dynq_client_t *c, dynq__wbuf_t *w,
                            const char *method) {
  uint32_t id = dynq__client_next_id(c);
  dynq__w_request_head(w, id, method);
  return id;
}

/* ---- receiving: frames -> tickets ---- */

static dynq__pend_t *pend_find(dynq_client_t *c, uint32_t msgid) {
  return dynq__tickets_find(&c->tickets, msgid);
}

static void pend_remove(dynq_client_t *c, dynq__pend_t *p) {
  dynq__tickets_remove(&c->tickets, p);
}

/* The common answer, [1, msgid, nil, result] to a dynq_submit_infer
 * ticket, decoded straight from the bytes into the public result: no
 * msgpack-c tree, no copy of the frame.  framed: the len bytes are one
 * frame the framer delimited; a result that does not decode fails its
 * ticket, and 1 says the frame was handled.  Unframed: the answer is read
 * off the front of the pending bytes before the framer scans them (the
 * decoder reads every byte of it anyway, so that scan would be a second
 * pass): only a whole answer that decodes is taken, its length returned;
 * anything else (a partial answer, a bad one) is left to the framer.
 * 0 when the bytes are not such an answer (dispatch's general path
 * decides what they are). */
static size_t answer_in_place(dynq_client_t *c, const uint8_t *b, size_t len, int framed) {
  dynq__rd_t r = {b, b + len};
  dynq_infer_result_t res;
  size_t used = 0;
  uint32_t n;
  int64_t type, id;
  char err[DYNQ__CLIENT_ERRMSG];
  if (dynq__rd_array(&r, &n) < 0 || n != 4 || dynq__rd_int(&r, &type) < 0 ||
      type != DYNQ_RPC_RESPONSE || dynq__rd_int(&r, &id) < 0 || id <= 0 ||
      id > (int64_t)UINT32_MAX)
    return 0;
  dynq__pend_t *p = pend_find(c, (uint32_t)id);
  if (p == NULL || p->done || !p->infer || !dynq__rd_nil(&r)) return 0;
  int code = dynq__decode_infer_result(r.p, (size_t)(r.end - r.p), &res, &used, err,
                                       sizeof(err));
  if (!framed && code < 0) return 0;
  if (framed && code == 0 && used != (size_t)(r.end - r.p)) {
    /* the result is the frame's last object: never, but then not ours */
    dynq_infer_result_free(&res);
    return 0;
  }
  p->code = code;
  if (code < 0) {
    p->msg = strdup(err);
  } else {
    p->res = res;
    p->has_res = 1;
  }
  dynq__tickets_done(&c->tickets, p);
  return framed ? 1 : (size_t)(r.p - b) + used;
}

/* One frame from the server: an answer goes to its ticket. */
static void dispatch(dynq_client_t *c, const uint8_t *frame, size_t len) {
  dynq__rpc_msg_t m;
  char err[256] = "";
  int64_t hint = -1;
  if (answer_in_place(c, frame, len, 1)) return;
  memset(&m, 0, sizeof(m));
  int r = dynq__rpc_parse(frame, len, &m, &hint, err, sizeof(err));
  if (r < 0) {
    char msg[DYNQ__CLIENT_ERRMSG];
    snprintf(msg, sizeof(msg), "malformed response from dynqd: %s",
             err[0] ? err : dynq_strerror(r));
    client_broken(c, DYNQ_EPROTO, msg);
    return;
  }
  /* Notifications (and anything a newer server may push) are not answers
   * to us. */
  if (m.type != DYNQ_RPC_RESPONSE) goto drop;
  int has_err = !dynq__obj_is_absent(m.error) && dynq__obj_kind(m.error) != DYNQ_OBJ_NIL;
  if (m.msgid == 0 && has_err) {
    /* The server's answer to a frame it could not decode; it closes the
     * stream after it, so every waiting request fails with it. */
    char msg[DYNQ__CLIENT_ERRMSG];
    int code = dynq__rpc_error(m.error, msg, sizeof(msg));
    dynq__rpc_free(&m);
    client_broken(c, code < 0 ? code : DYNQ_ESERVER, msg);
    return;
  }
  dynq__pend_t *p = pend_find(c, m.msgid);
  if (p == NULL || p->done) goto drop;  /* forgotten, or a duplicate */
  dynq__tickets_done(&c->tickets, p);
  if (has_err) {
    char msg[DYNQ__CLIENT_ERRMSG];
    int code = dynq__rpc_error(m.error, msg, sizeof(msg));
    if (code >= 0) code = DYNQ_ESERVER;
    p->code = code;
    p->msg = strdup(msg[0] ? msg : dynq_strerror(code));
    goto drop;
  }
  p->code = 0;
  p->resp = m;
  return;
drop:
  dynq__rpc_free(&m);
}

/* Read what is there, without blocking, and hand out every complete frame.
 * 1: bytes came; 0: nothing yet; <0: the connection broke (every waiting
 * ticket answered).  Waiting is done in poll (wait_fd), never in recv: a
 * thread asleep in a blocking recv() on a Unix stream socket is woken each
 * time dynqd reads from the connection (the kernel's write-space wake-up
 * is filtered for poll sleepers, not for recv ones), and dynqd pays for
 * that wake-up inside its own recvmsg. */
static int read_some(dynq_client_t *c) {
  uint8_t *dst;
  size_t room;
  const uint8_t *frame;
  size_t flen;
  ssize_t r;
  int rc;

  if (c->fd < 0) return DYNQ_ECLOSED;
  rc = dynq__framer_space(&c->fr, READ_CHUNK, &dst, &room);
  if (rc < 0) {
    client_broken(c, rc, "out of memory buffering a response");
    return rc;
  }
  for (;;) {
    r = recv(c->fd, dst, room, MSG_DONTWAIT);
    if (r > 0) break;
    if (r == 0) {
      size_t part = dynq__framer_pending(&c->fr);
      char msg[128];
      if (part > 0)
        snprintf(msg, sizeof(msg),
                 "connection closed by dynqd in the middle of an answer (%zu bytes of it came)",
                 part);
      client_broken(c, DYNQ_ECLOSED, part > 0 ? msg : "connection closed by dynqd");
      return DYNQ_ECLOSED;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    {
      int e = errno;
      char msg[128];
      if (e == ECONNRESET) {
        client_broken(c, DYNQ_ECLOSED, "connection reset by dynqd");
        return DYNQ_ECLOSED;
      }
      snprintf(msg, sizeof(msg), "read from dynqd: %s", strerror(e));
      client_broken(c, -e, msg);
      return -e;
    }
  }
  dynq__framer_commit(&c->fr, (size_t)r);
  for (;;) {
    const uint8_t *pb;
    size_t pn, used;
    /* infer answers first, each delimited by its own decoding */
    if (dynq__framer_peek(&c->fr, &pb, &pn) == 0 && pn > 0 &&
        (used = answer_in_place(c, pb, pn, 0)) > 0) {
      dynq__framer_take(&c->fr, used);
      continue;
    }
    rc = dynq__framer_next(&c->fr, &frame, &flen);
    if (rc != 1) break;
    dispatch(c, frame, flen);
    if (c->fd < 0) return c->broken_code;
  }
  if (rc < 0) {
    char msg[160];
    /* the framer refuses a declared length or count as its header
     * arrives: say which limit, the stream cannot be resynchronised */
    if (rc == DYNQ_ETOOBIG)
      snprintf(msg, sizeof(msg), "undecodable response from dynqd: it declares a string or bin "
               "longer than the client accepts in one answer (%zu bytes)",
               response_limits.max_frame);
    else if (rc == DYNQ_ELIMIT)
      snprintf(msg, sizeof(msg), "undecodable response from dynqd: it declares more array or "
               "map elements than the client accepts in one answer (%llu)",
               (unsigned long long)response_limits.max_elems);
    else if (rc == DYNQ_EDEPTH)
      snprintf(msg, sizeof(msg), "undecodable response from dynqd: it nests arrays or maps "
               "deeper than %d levels", (int)response_limits.max_depth);
    else
      snprintf(msg, sizeof(msg), "undecodable response from dynqd: %s",
               rc == DYNQ_EPROTO ? "not msgpack (byte 0xc1), or a count no answer of the "
                                   "client's size limit could hold"
                                 : dynq_strerror(rc));
    client_broken(c, rc, msg);
    return rc;
  }
  return 1;
}

/* Wait until the socket is readable (and, with want_out, writable) or
 * timeout_ms passes (-1: forever).  Bits of POLLIN/POLLOUT, 0 on timeout. */
static int wait_fd(dynq_client_t *c, int want_out, int timeout_ms) {
  struct pollfd pfd;
  pfd.fd = c->fd;
  pfd.events = (short)(POLLIN | (want_out ? POLLOUT : 0));
  pfd.revents = 0;
  for (;;) {
    int r = poll(&pfd, 1, timeout_ms);
    if (r > 0) {
      /* hang-ups and errors show as readable: the read reports them */
      int bits = pfd.revents & (POLLOUT);
      if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) bits |= POLLIN;
      return bits;
    }
    if (r == 0) return 0;
    if (errno != EINTR) return POLLIN;  /* let the read say what is wrong */
  }
}

/* ---- sending ---- */

/* pass_fd >= 0 rides as SCM_RIGHTS on the sendmsg() that carries the
 * frame's first byte: dynqd takes the descriptor with that byte, so it
 * must never travel alone or with a later part of the stream.  When the
 * socket is full, answers are read meanwhile (the server may be waiting
 * for us to take them before it reads more). */
static int send_iov(dynq_client_t *c, struct iovec *iov, int n_iov, int pass_fd) {
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } cm;
  struct msghdr mh;
  int i = 0;
  uint64_t stall_end = 0;    /* with a timeout: when a stall that began gives up */

  while (i < n_iov) {
    ssize_t w;
    if (iov[i].iov_len == 0) {
      i++;
      continue;
    }
    if (c->fd < 0) return dynq__client_fail(c, DYNQ_ECLOSED,
                                            "connection closed by dynqd while sending");
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov[i];
    mh.msg_iovlen = (size_t)(n_iov - i);
    if (pass_fd >= 0) {
      struct cmsghdr *h;
      memset(&cm, 0, sizeof(cm));
      mh.msg_control = cm.buf;
      mh.msg_controllen = sizeof(cm.buf);
      h = CMSG_FIRSTHDR(&mh);
      h->cmsg_level = SOL_SOCKET;
      h->cmsg_type = SCM_RIGHTS;
      h->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(h), &pass_fd, sizeof(int));
    }
    /* MSG_NOSIGNAL: a daemon that went away must not kill the caller. */
    w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      pass_fd = -1;          /* delivered with the first byte(s) */
      stall_end = 0;         /* progress: the timeout bounds a stall */
    }
    if (w < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) {
        int left = -1;
        if (c->timeout_ms > 0) {
          uint64_t now = mono_ns();
          if (stall_end == 0) stall_end = now + (uint64_t)c->timeout_ms * 1000000u;
          if (now >= stall_end) {
            /* part of a request may be out: the stream cannot go on */
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "dynqd took no bytes of a request for %d ms (client timeout): "
                     "connection closed", c->timeout_ms);
            client_broken(c, -ETIMEDOUT, msg);
            return dynq__client_fail(c, -ETIMEDOUT, "%s", msg);
          }
          left = ms_until(stall_end, now);
        }
        int bits = wait_fd(c, 1, left);
        if (bits & POLLIN) {
          int r = read_some(c);
          if (r < 0) return dynq__client_fail(c, DYNQ_ECLOSED,
                                              "connection closed by dynqd while sending");
        }
        continue;
      }
      if (e == EPIPE || e == ECONNRESET) {
        client_broken(c, DYNQ_ECLOSED, "connection closed by dynqd while sending");
        return dynq__client_fail(c, DYNQ_ECLOSED,
                                 "connection closed by dynqd while sending");
      }
      {
        char msg[128];
        snprintf(msg, sizeof(msg), "send to dynqd: %s", strerror(e));
        client_broken(c, -e, msg);
        return dynq__client_fail(c, -e, "%s", msg);
      }
    }
    while (i < n_iov && (size_t)w >= iov[i].iov_len) {
      w -= (ssize_t)iov[i].iov_len;
      iov[i].iov_len = 0;
      i++;
    }
    if (i < n_iov) {
      iov[i].iov_base = (uint8_t *)iov[i].iov_base + w;
      iov[i].iov_len -= (size_t)w;
    }
  }
  return 0;
}

/* a, then b (may be NULL), as send_iov. */
static int send_all(dynq_client_t *c, const void *a, size_t alen,
                    const void *b, size_t blen, int pass_fd) {
  struct iovec iov[2] = {
    { .iov_base = (void *)a, .iov_len = alen },
    { .iov_base = (void *)b, .iov_len = b ? blen : 0 },
  };
  return send_iov(c, iov, 2, pass_fd);
}

/* Whether request w may go: 0, or the error (message set). */
static int check_request(dynq_client_t *c, const dynq__wbuf_t *w) {
  int r;
  if (c->fd < 0)
    return dynq__client_fail(c, DYNQ_ECLOSED, "connection to dynqd is closed");
  r = dynq__wbuf_status(w);
  if (r < 0)
    return dynq__client_fail(c, r, "encoding the request: %s", dynq_strerror(r));
  if (c->tickets.n >= c->max_inflight)
    return dynq__client_fail(c, DYNQ_ELIMIT,
                             "%d requests already in flight on this connection (limit "
                             "%d; collect some answers first)", c->tickets.n, c->max_inflight);
  return 0;
}

/* A ticket for msgid, registered before its first byte goes: an answer
 * read while the rest is being sent must find it.  The slots grow by
 * doubling (up to max_inflight), so a steady pipeline allocates nothing
 * per request. */
static int pend_add(dynq_client_t *c, uint32_t msgid, int infer) {
  dynq__pend_t *p;
  if (dynq__tickets_add(&c->tickets, msgid, &p) < 0)
    return dynq__client_fail(c, -ENOMEM, "out of memory");
  p->infer = infer;
  if (c->timeout_ms > 0) {
    p->deadline_ns = mono_ns() + (uint64_t)c->timeout_ms * 1000000u;
    p->timeout_ms = c->timeout_ms;
    c->any_deadline = 1;
  }
  return 0;
}

/* Write every queued request in one go (more only if the socket is
 * full).  0, or the error with the connection broken and every ticket
 * not yet answered failed with it. */
static int flush_out(dynq_client_t *c) {
  int r;
  if (c->out.len == 0) return 0;
  r = send_all(c, c->out.data, c->out.len, NULL, 0, -1);
  dynq__wbuf_reset(&c->out);
  /* one big request must not pin its size for the connection's life */
  if (c->out.cap > ((size_t)1 << 20)) dynq__wbuf_free(&c->out);
  return r;
}

size_t dynq__client_queue_mark(const dynq_client_t *c) {
  return c->out.len;
}

int dynq__client_queue_end(dynq_client_t *c, size_t mark, uint32_t msgid, int infer) {
  int r = check_request(c, &c->out);
  if (r == 0) r = pend_add(c, msgid, infer);
  if (r < 0) {
    /* drop the partial request; the queue before it is whole */
    c->out.len = mark;
    c->out.err = 0;
    c->out.depth = 0;
    return r;
  }
  /* A write failure fails the ticket (and the connection) like any
   * later one would: the ticket stands. */
  if (c->out.len >= DYNQ__CLIENT_FLUSH_AT) (void)flush_out(c);
  return 0;
}

int dynq__client_send_refs(dynq_client_t *c, size_t mark, uint32_t msgid,
                           const dynq__enc_refs_t *refs) {
  struct iovec iov[2 * DYNQ__ENC_MAX_REFS + 1];
  size_t prev = 0;
  int n = 0;
  int r = check_request(c, &c->out);
  if (r == 0) r = pend_add(c, msgid, 1);
  if (r < 0) {
    c->out.len = mark;
    c->out.err = 0;
    c->out.depth = 0;
    return r;
  }
  for (int k = 0; k < refs->n; k++) {
    iov[n++] = (struct iovec){ c->out.data + prev, refs->ref[k].at - prev };
    iov[n++] = (struct iovec){ (void *)refs->ref[k].data, refs->ref[k].len };
    prev = refs->ref[k].at;
  }
  iov[n++] = (struct iovec){ c->out.data + prev, c->out.len - prev };
  /* as flush_out: a failure fails the ticket with the connection */
  (void)send_iov(c, iov, n, -1);
  dynq__wbuf_reset(&c->out);
  if (c->out.cap > ((size_t)1 << 20)) dynq__wbuf_free(&c->out);
  return 0;
}

int dynq__client_send(dynq_client_t *c, dynq__wbuf_t *w, uint32_t msgid,
                      const void *extra, size_t extra_len, int pass_fd) {
  int r;
  c->errmsg[0] = '\0';
  r = check_request(c, w);
  if (r == 0) r = flush_out(c);
  if (r == 0) r = pend_add(c, msgid, 0);
  if (r < 0) return r;
  dynq__pend_t *p;
  r = send_all(c, w->data, w->len, extra, extra_len, pass_fd);
  if (r < 0) {
    /* A request not wholly sent was never asked: no ticket for it (the
     * connection is broken now, so nothing can answer it). */
    p = pend_find(c, msgid);
    if (p != NULL) {
      pend_clear(p);
      pend_remove(c, p);
    }
    return r;
  }
  return 0;
}

/* ---- waiting ---- */

/* Collect a done ticket: its code (errmsg set for an error) and response
 * (or, answered in place, its result into c->take_res). */
static int collect(dynq_client_t *c, dynq__pend_t *p, dynq__rpc_msg_t *ret_msg) {
  int code = p->code;
  if (code < 0) {
    /* a server's message may be empty (or only NULs): say at least what
     * the code means */
    dynq__client_fail(c, code, "%s",
                      p->msg != NULL && p->msg[0] != '\0' ? p->msg : dynq_strerror(code));
  } else if (p->has_res && c->take_res != NULL) {
    *c->take_res = p->res;
    c->took_res = 1;
    p->has_res = 0;
    memset(ret_msg, 0, sizeof(*ret_msg));
  } else if (p->has_res) {
    /* its frame is gone: only dynq_wait_infer can take this answer */
    code = dynq__client_fail(c, DYNQ_EPARAMS,
                             "ticket %u is an infer answer: collect it with dynq_wait_infer",
                             (unsigned)p->msgid);
    dynq_infer_result_free(&p->res);
    p->has_res = 0;
  } else {
    *ret_msg = p->resp;
    memset(&p->resp, 0, sizeof(p->resp));
  }
  free(p->msg);
  p->msg = NULL;
  pend_remove(c, p);
  return code;
}

/* Abandon p at its deadline: it completes with -ETIMEDOUT, and its answer,
 * should it come, finds the ticket done (or gone) and is dropped.  The
 * stream stays whole: a partial answer in the framer is anyone's. */
static void pend_expire(dynq_client_t *c, dynq__pend_t *p) {
  char msg[160];
  snprintf(msg, sizeof(msg),
           "no answer from dynqd within %d ms (client timeout): request abandoned, "
           "a late answer is discarded", p->timeout_ms);
  p->code = -ETIMEDOUT;
  p->msg = strdup(msg);
  dynq__tickets_done(&c->tickets, p);
}

/* Expire every waiting ticket past its deadline: how many, and in
 * *ret_next the earliest deadline still ahead (0: none).  O(tickets):
 * only before poll sleeps, and only on a client that set a timeout. */
static int expire_due(dynq_client_t *c, uint64_t *ret_next) {
  uint64_t now = mono_ns(), next = 0;
  int n = 0;
  for (dynq__pend_t *p = dynq__tickets_first(&c->tickets); p != NULL;
       p = dynq__tickets_next(&c->tickets, p)) {
    if (p->done || p->deadline_ns == 0) continue;
    if (now >= p->deadline_ns) {
      pend_expire(c, p);
      n++;
    } else if (next == 0 || p->deadline_ns < next) {
      next = p->deadline_ns;
    }
  }
  *ret_next = next;
  return n;
}

/* Block (after this wait's spin) until ticket msgid is answered or its
 * deadline passes: the ticket, or NULL when msgid has none. */
static dynq__pend_t *wait_done(dynq_client_t *c, uint32_t msgid) {
  for (;;) {
    dynq__pend_t *p = pend_find(c, msgid);
    if (p == NULL || p->done) return p;
    /* the request may still be queued; a failure fails the ticket */
    if (c->out.len > 0) {
      (void)flush_out(c);
      continue;
    }
    /* Busy-poll until this wait's spin deadline: the answer of a small
     * request usually arrives within microseconds, before a sleeping
     * thread could even be woken. */
    if (c->spin_until_ns != 0) {
      int r = read_some(c);
      if (r != 0) continue;  /* data, or broken: look again */
      if (mono_ns() < c->spin_until_ns) {
        /* The thread that will answer may be waiting for this very CPU
         * (a busy or small machine): let it run rather than spin it out. */
        sched_yield();
        continue;
      }
      c->spin_until_ns = 0;
    }
    if (c->fd >= 0) {
      int left = -1;
      if (p->deadline_ns != 0) {
        uint64_t now = mono_ns();
        if (now >= p->deadline_ns) {
          pend_expire(c, p);
          return p;
        }
        left = ms_until(p->deadline_ns, now);
      }
      (void)wait_fd(c, 0, left);
    }
    (void)read_some(c);
  }
}

int dynq__client_take(dynq_client_t *c, uint32_t msgid, dynq__rpc_msg_t *ret_msg) {
  dynq__pend_t *p = wait_done(c, msgid);
  if (p == NULL)
    return dynq__client_fail(c, -ENOENT, "no request %u is in flight on this connection",
                             (unsigned)msgid);
  return collect(c, p, ret_msg);
}

int dynq__client_take_spin(dynq_client_t *c, uint32_t msgid, dynq__rpc_msg_t *ret_msg) {
  uint64_t t0, waited;
  int budget, probe = 0, r;
  if (c->spin_max_us <= 0) return dynq__client_take(c, msgid, ret_msg);
  budget = c->spin_cur_us;
  dynq__pend_t *p = pend_find(c, msgid);
  if (p != NULL && p->done) {
    /* Answered already (a pipelined wait after dynq_poll reported it):
     * the spin state moves as for a wait of 0 us, without the two clock
     * reads that would measure it. */
    if (budget == 0 && ++c->spin_idle_calls >= c->spin_probe_gap) c->spin_idle_calls = 0;
    c->spin_cur_us = c->spin_max_us;
    c->spin_probe_gap = SPIN_PROBE_MIN;
    return collect(c, p, ret_msg);
  }
  t0 = mono_ns();
  if (budget == 0 && ++c->spin_idle_calls >= c->spin_probe_gap) {
    budget = c->spin_max_us;
    c->spin_idle_calls = 0;
    probe = 1;
  }
  c->spin_until_ns = budget > 0 ? t0 + (uint64_t)budget * 1000u : 0;
  r = dynq__client_take(c, msgid, ret_msg);
  c->spin_until_ns = 0;
  /* A wait the full budget would have covered: spin fully next time.
   * A longer one: halve, so a slow server is soon not spun on at all. */
  waited = mono_ns() - t0;
  if (waited <= (uint64_t)c->spin_max_us * 1000u) {
    c->spin_cur_us = c->spin_max_us;
    c->spin_probe_gap = SPIN_PROBE_MIN;
  } else {
    c->spin_cur_us /= 2;
    if (probe && c->spin_probe_gap < SPIN_PROBE_MAX) c->spin_probe_gap *= 2;
  }
  return r;
}

int dynq__client_call(dynq_client_t *c, dynq__wbuf_t *w, uint32_t msgid,
                      const void *extra, size_t extra_len,
                      dynq__rpc_msg_t *ret_msg) {
  return dynq__client_call_fd(c, w, msgid, extra, extra_len, -1, ret_msg);
}

int dynq__client_call_fd(dynq_client_t *c, dynq__wbuf_t *w, uint32_t msgid,
                         const void *extra, size_t extra_len, int pass_fd,
                         dynq__rpc_msg_t *ret_msg) {
  int r = dynq__client_send(c, w, msgid, extra, extra_len, pass_fd);
  if (r < 0) return r;
  return dynq__client_take_spin(c, msgid, ret_msg);
}

int dynq_poll(dynq_client_t *c, int timeout_ms, uint32_t *ret_ticket) {
  uint64_t deadline = 0;
  int just_flushed = 0;
  if (c == NULL || ret_ticket == NULL) return -EINVAL;
  c->errmsg[0] = '\0';
  for (int first_pass = 1;; first_pass = 0) {
    dynq__pend_t *first = dynq__tickets_take_done(&c->tickets);
    if (first != NULL) {
      *ret_ticket = first->msgid;
      return 1;
    }
    /* the clock only once an answer is not ready at once (a pipeline
     * collecting a burst finds most of them ready) */
    if (first_pass && timeout_ms > 0) deadline = mono_ns() + (uint64_t)timeout_ms * 1000000u;
    int waiting = c->tickets.n_waiting;
    if (waiting == 0) {
      if (c->fd < 0)
        return dynq__client_fail(c, DYNQ_ECLOSED, "connection to dynqd is closed");
      return 0;  /* nothing to wait for */
    }
    /* Nothing ready to report: now the submits queued meanwhile go, in
     * one write (a failure completes their tickets). */
    if (c->out.len > 0) {
      (void)flush_out(c);
      just_flushed = 1;
      continue;
    }
    /* Take what is there without blocking first; but right after writing
     * the queue, in a call that waits without limit, go to poll() at once:
     * it returns at once for answers already there, and in a steady
     * pipeline the answers to what was just written are not (a recv()
     * would only fail with EAGAIN: one syscall per burst). */
    if (!just_flushed || timeout_ms >= 0) {
      int r = read_some(c);
      if (r != 0) continue;
    }
    just_flushed = 0;
    /* Requests past the client timeout complete now, with -ETIMEDOUT. */
    uint64_t next = 0;
    if (c->any_deadline && expire_due(c, &next) > 0) continue;
    int left;
    if (timeout_ms < 0) {
      left = -1;
    } else if (timeout_ms == 0) {
      return 0;
    } else {
      uint64_t now = mono_ns();
      if (now >= deadline) return 0;
      left = ms_until(deadline, now);
    }
    if (next != 0) {
      uint64_t now = mono_ns();
      int to_next = now >= next ? 0 : ms_until(next, now);
      if (left < 0 || to_next < left) left = to_next;
    }
    if (wait_fd(c, 0, left) == 0 && timeout_ms >= 0 && mono_ns() >= deadline) return 0;
  }
}

int dynq_forget(dynq_client_t *c, uint32_t ticket) {
  if (c == NULL) return -EINVAL;
  dynq__pend_t *p = pend_find(c, ticket);
  if (p == NULL) return -ENOENT;
  pend_clear(p);
  pend_remove(c, p);  /* a later answer finds no ticket and is dropped */
  return 0;
}

int dynq__client_rpc(dynq_client_t *c, dynq__method_id_t method, const void *params,
                     dynq__rpc_msg_t *ret_msg) {
  uint32_t id = dynq__client_next_id(c);
  size_t mark = dynq__client_queue_mark(c);
  int r;
  c->errmsg[0] = '\0';
  dynq__w_request(&c->out, id, method, params);
  r = dynq__client_queue_end(c, mark, id, 0);
  if (r < 0) return r;
  return dynq__client_take_spin(c, id, ret_msg);
}

int dynq_ping(dynq_client_t *c) {
  dynq__rpc_msg_t m;
  const char *s;
  size_t n;
  int r;

  if (c == NULL) return -EINVAL;
  r = dynq__client_rpc(c, DYNQ_M_ping, NULL, &m);
  if (r < 0) return r;
  if (dynq__obj_str(m.result, &s, &n) < 0 || n != 4 || memcmp(s, "pong", 4) != 0)
    r = dynq__client_fail(c, DYNQ_EPROTO, "ping: dynqd answered something other than \"pong\"");
  dynq__rpc_free(&m);
  return r;
}

/* Where the 4th element (result) of the response frame [1, id, err, result]
 * starts and how long it is, found with the scanner alone so the raw bytes
 * can be handed back without re-encoding them. */
static int locate_result(const uint8_t *f, size_t len, size_t *ret_off,
                         size_t *ret_len) {
  size_t off, n;
  int i;

  if (len < 1) return DYNQ_EPROTO;
  if (f[0] == 0x94)
    off = 1;
  else if (f[0] == 0xdc && len >= 3 && f[1] == 0 && f[2] == 4)
    off = 3;
  else if (f[0] == 0xdd && len >= 5 && f[1] == 0 && f[2] == 0 && f[3] == 0 && f[4] == 4)
    off = 5;
  else
    return DYNQ_EPROTO;
  for (i = 0; i < 4; i++) {
    int r = dynq__mp_scan(f + off, len - off, &response_limits, &n);
    if (r < 0) return DYNQ_EPROTO;
    if (i == 3) break;
    off += n;
  }
  *ret_off = off;
  *ret_len = n;
  return 0;
}

int dynq__result_bytes(const dynq__rpc_msg_t *m, const uint8_t **ret_p, size_t *ret_len) {
  size_t flen = 0, off = 0, n = 0;
  const uint8_t *f = dynq__rpc_frame(m, &flen);
  if (f == NULL || locate_result(f, flen, &off, &n) < 0) return DYNQ_EPROTO;
  *ret_p = f + off;
  *ret_len = n;
  return 0;
}

int dynq_submit_raw(dynq_client_t *c, const char *method, const void *params,
                    size_t params_len, uint32_t *ret_ticket) {
  dynq__wbuf_t w;
  uint32_t id;
  int r;

  if (c == NULL || method == NULL || ret_ticket == NULL ||
      (params == NULL && params_len > 0))
    return -EINVAL;
  c->errmsg[0] = '\0';
  if (strlen(method) == 0 || strlen(method) > 63)
    return dynq__client_fail(c, DYNQ_EPARAMS,
                             "method name must be 1 to 63 bytes");
  /* params must be exactly one msgpack object, or the stream would
   * desynchronise for every later call. */
  if (params_len > 0) {
    size_t plen = 0;
    dynq__scan_limits_t lim = dynq__scan_limits_default;
    r = dynq__mp_scan(params, params_len, &lim, &plen);
    if (r == -EAGAIN)
      return dynq__client_fail(c, DYNQ_EPARAMS, "params: truncated msgpack object");
    if (r < 0)
      return dynq__client_fail(c, r, "params: %s", dynq_strerror(r));
    if (plen != params_len)
      return dynq__client_fail(c, DYNQ_EPARAMS,
                               "params: %zu trailing bytes after one msgpack object",
                               params_len - plen);
  }
  dynq__wbuf_init(&w);
  id = dynq__client_begin(c, &w, method);
  if (params_len == 0) dynq__w_map(&w, 0);
  r = dynq__client_send(c, &w, id, params, params_len, -1);
  dynq__wbuf_free(&w);
  if (r < 0) return r;
  *ret_ticket = id;
  return 0;
}

/* The raw result of a collected response, copied out. */
static int raw_result(dynq_client_t *c, dynq__rpc_msg_t *m, void **ret_result,
                      size_t *ret_len) {
  const uint8_t *p;
  size_t n;
  void *out;
  int r = dynq__result_bytes(m, &p, &n);
  if (r < 0) {
    dynq__rpc_free(m);
    return dynq__client_fail(c, r, "malformed response envelope");
  }
  out = malloc(n ? n : 1);
  if (out == NULL) {
    dynq__rpc_free(m);
    return dynq__client_fail(c, -ENOMEM, "out of memory");
  }
  memcpy(out, p, n);
  dynq__rpc_free(m);
  *ret_result = out;
  *ret_len = n;
  return 0;
}

int dynq_wait_raw(dynq_client_t *c, uint32_t ticket, void **ret_result, size_t *ret_len) {
  dynq__rpc_msg_t m;
  int r;
  if (c == NULL || ret_result == NULL || ret_len == NULL) return -EINVAL;
  c->errmsg[0] = '\0';
  r = dynq__client_take_spin(c, ticket, &m);
  if (r < 0) return r;
  return raw_result(c, &m, ret_result, ret_len);
}

int dynq_call_raw(dynq_client_t *c, const char *method, const void *params,
                  size_t params_len, void **ret_result, size_t *ret_len) {
  uint32_t t;
  int r;
  if (ret_result == NULL || ret_len == NULL) return -EINVAL;
  r = dynq_submit_raw(c, method, params, params_len, &t);
  if (r < 0) return r;
  return dynq_wait_raw(c, t, ret_result, ret_len);
}
