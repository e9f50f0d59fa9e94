/*
 * libdynqclient connection layer: connecting to dynqd's Unix socket,
 * blocking send/receive loops, cutting the byte stream into msgpack frames
 * (through dynq__mp_scan, so a hostile or broken server cannot make us
 * allocate more than DYNQ__CLIENT_MAX_FRAME), matching responses to
 * requests by msgid, the busy-poll before blocking on a response
 * (dynq_client_set_spin), and the untyped calls (ping, call_raw).
 */
#include "client-internal.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RBUF_MIN ((size_t)64 << 10)

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

const char *dynq_default_socket(char *buf, size_t cap) {
  const char *env = getenv("DYNQ_SOCKET");
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  if (buf == NULL || cap == 0) return NULL;
  if (env != NULL && *env != '\0')
    snprintf(buf, cap, "%s", env);
  else if (xdg != NULL && *xdg != '\0')
    snprintf(buf, cap, "%s/dynq/dynqd.sock", xdg);
  else
    snprintf(buf, cap, "%s", "/run/dynq/dynqd.sock");
  return buf;
}

int dynq__client_fail(dynq_client_t *c, int code, const char *fmt, ...) {
  va_list ap;
  if (c == NULL) return code;
  va_start(ap, fmt);
  vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
  va_end(ap);
  return code;
}

/* The stream can no longer be trusted to be at a frame boundary. */
static void client_broken(dynq_client_t *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->rlen = 0;
  c->frame_len = 0;
}

int dynq_connect(const char *socket_path, dynq_client_t **ret_client) {
  char defpath[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
  struct sockaddr_un sa;
  dynq_client_t *c = NULL;
  int fd = -1, r;
  size_t n;

  if (ret_client == NULL) return -EINVAL;
  if (socket_path == NULL)
    socket_path = dynq_default_socket(defpath, sizeof(defpath));
  n = strlen(socket_path);
  /* sun_path needs room for the NUL; we never use abstract sockets. */
  if (n == 0) return -EINVAL;
  if (n >= sizeof(sa.sun_path)) return -ENAMETOOLONG;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, socket_path, n + 1);

  c = calloc(1, sizeof(*c));
  if (c == NULL) return -ENOMEM;
  c->fd = -1;
  c->next_msgid = 1;
  c->spin_max_us = c->spin_cur_us = spin_from_env();
  c->spin_probe_gap = SPIN_PROBE_MIN;
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r = -errno;
    goto fail;
  }
  while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    if (errno == EINTR) continue;
    r = -errno;
    goto fail;
  }
  c->fd = fd;
  *ret_client = c;
  return 0;

fail:
  if (fd >= 0) close(fd);
  free(c);
  return r;
}

void dynq_close(dynq_client_t *c) {
  if (c == NULL) return;
  if (c->fd >= 0) close(c->fd);
  free(c->rbuf);
  free(c);
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

const char *dynq_client_errmsg(const dynq_client_t *c) {
  if (c == NULL) return "no client";
  return c->errmsg;
}

uint32_t dynq__client_begin(dynq_client_t *c, dynq__wbuf_t *w,
                            const char *method) {
  uint32_t id = c->next_msgid++;
  if (c->next_msgid == 0) c->next_msgid = 1;
  dynq__w_request_head(w, id, method);
  return id;
}

/* pass_fd >= 0 rides as SCM_RIGHTS on the sendmsg() that carries the
 * frame's first byte: dynqd takes the descriptor with that byte, so it
 * must never travel alone or with a later part of the stream. */
static int send_all(dynq_client_t *c, const void *a, size_t alen,
                    const void *b, size_t blen, int pass_fd) {
  struct iovec iov[2] = {
    { .iov_base = (void *)a, .iov_len = alen },
    { .iov_base = (void *)b, .iov_len = b ? blen : 0 },
  };
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } cm;
  struct msghdr mh;
  int i = 0;

  while (i < 2) {
    ssize_t w;
    if (iov[i].iov_len == 0) {
      i++;
      continue;
    }
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov[i];
    mh.msg_iovlen = 2 - i;
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
    w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    if (w > 0) pass_fd = -1; /* delivered with the first byte(s) */
    if (w < 0) {
      int e = errno;
      if (e == EINTR) continue;
      client_broken(c);
      if (e == EPIPE || e == ECONNRESET)
        return dynq__client_fail(c, DYNQ_ECLOSED,
                                 "connection closed by dynqd while sending");
      return dynq__client_fail(c, -e, "send to dynqd: %s", strerror(e));
    }
    while (i < 2 && (size_t)w >= iov[i].iov_len) {
      w -= (ssize_t)iov[i].iov_len;
      iov[i].iov_len = 0;
      i++;
    }
    if (i < 2) {
      iov[i].iov_base = (uint8_t *)iov[i].iov_base + w;
      iov[i].iov_len -= (size_t)w;
    }
  }
  return 0;
}

/* Drop the frame handed out last time, keeping any read-ahead. */
static void consume_frame(dynq_client_t *c) {
  if (c->frame_len == 0) return;
  memmove(c->rbuf, c->rbuf + c->frame_len, c->rlen - c->frame_len);
  c->rlen -= c->frame_len;
  c->frame_len = 0;
}

/* Read at least one more byte into rbuf. */
static int read_more(dynq_client_t *c) {
  ssize_t r;
  if (c->rlen == c->rcap) {
    /* The scanner refuses frames above max_frame before we get here, so
     * this growth stays bounded by max_frame plus one read. */
    size_t ncap = c->rcap ? c->rcap * 2 : RBUF_MIN;
    uint8_t *nb;
    if (ncap > DYNQ__CLIENT_MAX_FRAME + RBUF_MIN)
      ncap = DYNQ__CLIENT_MAX_FRAME + RBUF_MIN;
    if (ncap <= c->rcap) {
      client_broken(c);
      return dynq__client_fail(c, DYNQ_ETOOBIG,
                               "response larger than %zu bytes",
                               DYNQ__CLIENT_MAX_FRAME);
    }
    nb = realloc(c->rbuf, ncap);
    if (nb == NULL)
      return dynq__client_fail(c, -ENOMEM,
                               "out of memory buffering a %zu-byte response",
                               ncap);
    c->rbuf = nb;
    c->rcap = ncap;
  }
  /* Busy-poll until this call's spin deadline: the answer of a small
   * request usually arrives within microseconds, before a sleeping thread
   * could even be woken.  Anything but "nothing yet" (data, EOF, an
   * error) ends the spin; EOF and errors are then reported by the
   * blocking read below, which sees the same state. */
  while (c->spin_until_ns != 0) {
    r = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
    if (r > 0) {
      c->rlen += (size_t)r;
      return 0;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
        mono_ns() < c->spin_until_ns) {
      /* The thread that will answer may be waiting for this very CPU
       * (a busy or small machine): let it run rather than spin it out. */
      sched_yield();
      continue;
    }
    c->spin_until_ns = 0;
  }
  for (;;) {
    r = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
    if (r > 0) break;
    if (r == 0) {
      client_broken(c);
      return dynq__client_fail(c, DYNQ_ECLOSED, "connection closed by dynqd");
    }
    if (errno == EINTR) continue;
    {
      int e = errno;
      client_broken(c);
      if (e == ECONNRESET)
        return dynq__client_fail(c, DYNQ_ECLOSED, "connection reset by dynqd");
      return dynq__client_fail(c, -e, "read from dynqd: %s", strerror(e));
    }
  }
  c->rlen += (size_t)r;
  return 0;
}

/* Next whole frame at rbuf[0]; sets frame_len. */
static int next_frame(dynq_client_t *c) {
  for (;;) {
    size_t flen = 0;
    int r = -EAGAIN;
    if (c->rlen > 0)
      r = dynq__mp_scan(c->rbuf, c->rlen, &response_limits, &flen);
    if (r == 0) {
      c->frame_len = flen;
      return 0;
    }
    if (r != -EAGAIN) {
      client_broken(c);
      return dynq__client_fail(c, r, "undecodable response from dynqd: %s",
                               dynq_strerror(r));
    }
    r = read_more(c);
    if (r < 0) return r;
  }
}

static int recv_response(dynq_client_t *c, uint32_t msgid,
                         dynq__rpc_msg_t *ret_msg) {
  for (;;) {
    dynq__rpc_msg_t m;
    char err[256] = "";
    int64_t hint = -1;
    int r;

    consume_frame(c);
    r = next_frame(c);
    if (r < 0) return r;
    memset(&m, 0, sizeof(m));
    r = dynq__rpc_parse(c->rbuf, c->frame_len, &m, &hint, err, sizeof(err));
    if (r < 0) {
      client_broken(c);
      return dynq__client_fail(c, DYNQ_EPROTO, "malformed response from dynqd: %s",
                               err[0] ? err : dynq_strerror(r));
    }
    if (m.type != DYNQ_RPC_RESPONSE) {
      /* Notifications (and anything a newer server may push) are not
       * answers to us; skip them. */
      dynq__rpc_free(&m);
      continue;
    }
    if (m.msgid != msgid) {
      /* msgid 0 is the server's answer to a frame it could not decode;
       * it closes the stream after it, so report it rather than wait. */
      if (m.msgid == 0 && !dynq__obj_is_absent(m.error) &&
          dynq__obj_kind(m.error) != DYNQ_OBJ_NIL) {
        char msg[DYNQ__CLIENT_ERRMSG];
        int code = dynq__rpc_error(m.error, msg, sizeof(msg));
        dynq__rpc_free(&m);
        client_broken(c);
        return dynq__client_fail(c, code < 0 ? code : DYNQ_ESERVER, "%s", msg);
      }
      dynq__rpc_free(&m);
      continue;
    }
    if (!dynq__obj_is_absent(m.error) &&
        dynq__obj_kind(m.error) != DYNQ_OBJ_NIL) {
      char msg[DYNQ__CLIENT_ERRMSG];
      int code = dynq__rpc_error(m.error, msg, sizeof(msg));
      dynq__rpc_free(&m);
      if (code >= 0) code = DYNQ_ESERVER;
      return dynq__client_fail(c, code, "%s", msg[0] ? msg : dynq_strerror(code));
    }
    *ret_msg = m;
    return 0;
  }
}

int dynq__client_call(dynq_client_t *c, dynq__wbuf_t *w, uint32_t msgid,
                      const void *extra, size_t extra_len,
                      dynq__rpc_msg_t *ret_msg, const uint8_t **ret_frame,
                      size_t *ret_frame_len) {
  return dynq__client_call_fd(c, w, msgid, extra, extra_len, -1, ret_msg,
                              ret_frame, ret_frame_len);
}

int dynq__client_call_fd(dynq_client_t *c, dynq__wbuf_t *w, uint32_t msgid,
                         const void *extra, size_t extra_len, int pass_fd,
                         dynq__rpc_msg_t *ret_msg, const uint8_t **ret_frame,
                         size_t *ret_frame_len) {
  int r;

  c->errmsg[0] = '\0';
  if (c->fd < 0)
    return dynq__client_fail(c, DYNQ_ECLOSED, "connection to dynqd is closed");
  if (w->err < 0)
    return dynq__client_fail(c, w->err, "encoding the request: %s",
                             dynq_strerror(w->err));
  r = send_all(c, w->data, w->len, extra, extra_len, pass_fd);
  if (r < 0) return r;
  if (c->spin_max_us > 0) {
    uint64_t t0 = mono_ns(), waited;
    int budget = c->spin_cur_us, probe = 0;
    if (budget == 0 && ++c->spin_idle_calls >= c->spin_probe_gap) {
      budget = c->spin_max_us;
      c->spin_idle_calls = 0;
      probe = 1;
    }
    c->spin_until_ns = budget > 0 ? t0 + (uint64_t)budget * 1000u : 0;
    r = recv_response(c, msgid, ret_msg);
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
  } else {
    r = recv_response(c, msgid, ret_msg);
  }
  if (r < 0) return r;
  if (ret_frame) *ret_frame = c->rbuf;
  if (ret_frame_len) *ret_frame_len = c->frame_len;
  return 0;
}

int dynq_ping(dynq_client_t *c) {
  dynq__wbuf_t w;
  dynq__rpc_msg_t m;
  uint32_t id;
  const char *s;
  size_t n;
  int r;

  if (c == NULL) return -EINVAL;
  dynq__wbuf_init(&w);
  id = dynq__client_begin(c, &w, "ping");
  dynq__w_map(&w, 0);
  r = dynq__client_call(c, &w, id, NULL, 0, &m, NULL, NULL);
  dynq__wbuf_free(&w);
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

int dynq_call_raw(dynq_client_t *c, const char *method, const void *params,
                  size_t params_len, void **ret_result, size_t *ret_len) {
  dynq__wbuf_t w;
  dynq__rpc_msg_t m;
  const uint8_t *frame = NULL;
  size_t flen = 0, roff = 0, rlen = 0;
  uint32_t id;
  void *out = NULL;
  int r, have_msg = 0;

  if (c == NULL || method == NULL || ret_result == NULL || ret_len == NULL ||
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
  r = dynq__client_call(c, &w, id, params, params_len, &m, &frame, &flen);
  dynq__wbuf_free(&w);
  if (r < 0) goto fail;
  have_msg = 1;
  r = locate_result(frame, flen, &roff, &rlen);
  if (r < 0) {
    r = dynq__client_fail(c, r, "malformed response envelope");
    goto fail;
  }
  out = malloc(rlen ? rlen : 1);
  if (out == NULL) {
    r = dynq__client_fail(c, -ENOMEM, "out of memory");
    goto fail;
  }
  memcpy(out, frame + roff, rlen);
  dynq__rpc_free(&m);
  *ret_result = out;
  *ret_len = rlen;
  return 0;

fail:
  if (have_msg) dynq__rpc_free(&m);
  return r;
}
