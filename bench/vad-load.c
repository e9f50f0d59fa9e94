/*
 * vad-load: real-time capacity of dynqd for Silero VAD streams.
 *
 *   vad-load --socket SOCK --model NAME [--wav CLIP.wav]
 *            [--sessions N | --search MAX] [--seconds S] [--period-ms 32]
 *            [--p99-ms 10] [--threads T] [--per-conn K] [--tick-us U]
 *            [--pid DYNQD_PID] [--json]
 *
 * N streams, each a dynqd session (state kept server-side, bound state <-
 * stateN), send one 512-sample chunk (+ 64 of context) every period on a
 * fixed schedule, staggered evenly over the period as independent
 * microphones would be.  A chunk's latency is from the moment it was due
 * (not when it was sent, so a stream that falls behind pays for it) to the
 * reply; a chunk is late when its reply comes after the next chunk is due.
 * A run passes when no chunk is late, none failed and the p99 latency is
 * within --p99-ms.
 *
 * The generator is meant to cost little next to dynqd on the same cores:
 * T threads (default 1), each an epoll loop over non-blocking connections
 * carrying K sessions each (default 32), requests pipelined (one in flight
 * per session, as the protocol demands; msgid = the session's slot), raw
 * msgpack-RPC frames written with the proto layer and replies decoded only
 * as far as msgid and error unless they carry an error.  Because every
 * stream has the same period and a fixed offset within it, the schedule of
 * one thread is a single cursor over its streams sorted by offset (event e
 * is stream e % n, chunk e / n), so the "timer wheel" costs O(1) per
 * chunk.  The loop sleeps at least --tick-us (default 100) between sends, so
 * chunks due within one tick leave in one write per connection; a chunk
 * sent late pays for it in its latency, which counts from its due time.
 *
 * Reported per run: the generator's CPU per chunk (getrusage, all its
 * threads) and, with --pid, dynqd's (utime + stime from /proc/PID/stat).
 *
 * --search MAX finds the largest passing N <= MAX: doubles from 8 until a
 * run fails, then bisects (to within 5%).  Every run is bounded: S seconds
 * of audio per stream (default 5), then at most 5 s for the last replies.
 * The clip loops; the session is reset at each wrap.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../client/dynqctl-io.h"
#include "dynq/errors.h"
#include "proto.h"

#define CHUNK 512
#define CONTEXT 64
#define MAX_SESSIONS 8192
#define MAX_SECONDS 600
#define MAX_THREADS 8
#define MAX_PER_CONN 1024
#define DRAIN_S 5.0            /* wait for the last replies at most this long */
#define RBUF_MAX (16u << 20)   /* one connection's unparsed reply bytes */

static float *audio;
static size_t n_chunks;
static const char *sock_path, *model_name;
static double period_s = 0.032, tick_s = 100e-6;

typedef struct stream {
  uint64_t sid;
  struct conn *conn;
  uint32_t slot;            /* index within its connection; msgid = 2 * slot (+1 reset) */
  double offset_s;          /* stagger within the period */
  size_t pos;               /* next clip chunk */
  long chunks;              /* to send */
  long next_k, avail_k;     /* next chunk to send; chunks due so far */
  double due_inflight;      /* due time of the chunk in flight */
  int inflight, dead;
  long done, late, failed;
  double *lat_ms;           /* [chunks]; owned; freed by run() */
} stream_t;

typedef struct conn {
  int fd;
  struct worker *w;
  dynq__wbuf_t out;         /* frames not yet written */
  size_t out_off;           /* bytes of out already written */
  int dirty, want_out;
  dynq__framer_t fr;        /* received bytes not yet parsed (RBUF_MAX frames) */
  stream_t **streams;       /* [n_streams] by slot; borrowed */
  int n_streams;
} conn_t;

typedef struct worker {
  pthread_t th;
  int ep;
  conn_t **conns;           /* borrowed */
  int n_conns;
  stream_t **order;         /* this thread's streams by offset; owned array */
  int n_order;
  long cursor, total;       /* schedule position; n_order * chunks */
  long outstanding;         /* chunks neither answered nor failed */
  char err[256];            /* first failure */
} worker_t;

static double t_start;     /* CLOCK_MONOTONIC seconds when every stream starts */
static float zero_ctx[CONTEXT + CHUNK];   /* chunk 0: zeros, then the chunk (load_wav) */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

__attribute__((format(printf, 2, 3)))
static void set_err(worker_t *w, const char *fmt, ...) {
  if (w->err[0]) return;   /* keep the first */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->err, sizeof w->err, fmt, ap);
  va_end(ap);
}

/* ---- frames ---- */

static void w_infer(conn_t *c, stream_t *s) {
  dynq__wbuf_t *o = &c->out;
  if (s->pos == n_chunks) {
    /* the clip wraps: start the stream over, as a new utterance would */
    s->pos = 0;
    dynq__w_request_head(o, 2 * s->slot + 1, "session.reset");
    dynq__w_map(o, 1);
    dynq__w_str(o, "session");
    dynq__w_uint(o, s->sid);
  }
  const float *x;
  if (s->pos == 0) {
    x = zero_ctx;
  } else {
    /* context and chunk are contiguous in the clip */
    x = audio + s->pos * CHUNK - CONTEXT;
  }
  s->pos++;
  dynq__w_request_head(o, 2 * s->slot, "infer");
  dynq__w_map(o, 2);
  dynq__w_str(o, "session");
  dynq__w_uint(o, s->sid);
  dynq__w_str(o, "inputs");
  dynq__w_map(o, 1);
  dynq__w_str(o, "input");
  dynq__w_map(o, 3);
  dynq__w_str(o, "dtype");
  dynq__w_str(o, "float32");
  dynq__w_str(o, "shape");
  dynq__w_array(o, 2);
  dynq__w_uint(o, 1);
  dynq__w_uint(o, CONTEXT + CHUNK);
  dynq__w_str(o, "data");
  dynq__w_bin(o, x, sizeof(float) * (CONTEXT + CHUNK));
}

/* Read a msgpack unsigned int at p[0..n); bytes used or 0. */
static size_t rd_uint(const uint8_t *p, size_t n, uint32_t *ret) {
  if (n < 1) return 0;
  if (p[0] < 0x80) { *ret = p[0]; return 1; }
  if (p[0] == 0xcc && n >= 2) { *ret = p[1]; return 2; }
  if (p[0] == 0xcd && n >= 3) { *ret = (uint32_t)p[1] << 8 | p[2]; return 3; }
  if (p[0] == 0xce && n >= 5) {
    *ret = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
    return 5;
  }
  return 0;
}

/* ---- one thread's loop ---- */

static void conn_fail(conn_t *c, const char *why) {
  worker_t *w = c->w;
  set_err(w, "connection: %s", why);
  for (int i = 0; i < c->n_streams; i++) {
    stream_t *s = c->streams[i];
    if (s->dead) continue;
    long left = s->chunks - s->done - s->failed;
    s->failed += left;
    w->outstanding -= left;
    s->dead = 1;
  }
  if (c->fd >= 0) {
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
  }
}

static void send_next(conn_t *c, stream_t *s) {
  s->due_inflight = t_start + s->offset_s + (double)s->next_k * period_s;
  s->next_k++;
  s->inflight = 1;
  w_infer(c, s);
  c->dirty = 1;
}

static void flush(conn_t *c) {
  if (c->fd < 0) return;
  if (c->out.err) {
    conn_fail(c, "out of memory");
    return;
  }
  while (c->out_off < c->out.len) {
    ssize_t n = write(c->fd, c->out.data + c->out_off, c->out.len - c->out_off);
    if (n > 0) {
      c->out_off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 1;
      }
      return;
    }
    conn_fail(c, n < 0 ? strerror(errno) : "write returned 0");
    return;
  }
  dynq__wbuf_reset(&c->out);
  c->out_off = 0;
  c->dirty = 0;
  if (c->want_out) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = 0;
  }
}

/* One complete response frame. */
static void on_frame(conn_t *c, const uint8_t *f, size_t len, double t) {
  worker_t *w = c->w;
  uint32_t type, msgid;
  size_t a = 0, b = 0;
  if (len < 4 || f[0] != 0x94 || (a = rd_uint(f + 1, len - 1, &type)) == 0 ||
      type != DYNQ_RPC_RESPONSE || (b = rd_uint(f + 1 + a, len - 1 - a, &msgid)) == 0 ||
      msgid / 2 >= (uint32_t)c->n_streams) {
    conn_fail(c, "a reply that is not a response to one of our requests");
    return;
  }
  const uint8_t *e = f + 1 + a + b;
  int ok = e < f + len && *e == 0xc0;   /* error nil: the usual case, no decoding */
  char msg[200] = "";
  if (!ok) {
    dynq__rpc_msg_t m;
    int64_t hint = -1;
    char perr[128];
    if (dynq__rpc_parse(f, len, &m, &hint, perr, sizeof perr) == 0) {
      int code = dynq__rpc_error(m.error, msg, sizeof msg);
      size_t l = strlen(msg);
      snprintf(msg + l, sizeof msg - l, " (%s)", dynq_err_name(code));
      dynq__rpc_free(&m);
    } else {
      snprintf(msg, sizeof msg, "undecodable reply: %s", perr);
    }
  }
  stream_t *s = c->streams[msgid / 2];
  if (msgid & 1) {   /* session.reset */
    if (!ok) set_err(w, "session.reset: %s", msg);
    return;
  }
  if (!s->inflight || s->dead) {
    conn_fail(c, "a reply for a session with nothing in flight");
    return;
  }
  s->inflight = 0;
  w->outstanding--;
  if (!ok) {
    set_err(w, "infer: %s", msg);
    s->failed++;
  } else {
    s->lat_ms[s->done++] = (t - s->due_inflight) * 1e3;
    if (t > s->due_inflight + period_s) s->late++;
  }
  /* a stream that fell behind sends its next due chunk at once */
  if (s->next_k < s->avail_k) send_next(c, s);
}

static void on_readable(conn_t *c) {
  for (;;) {
    uint8_t *dst;
    size_t room;
    if (dynq__framer_space(&c->fr, 65536, &dst, &room) != 0) {
      conn_fail(c, "out of memory for replies");
      return;
    }
    ssize_t n = read(c->fd, dst, room);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {
      conn_fail(c, n == 0 ? "dynqd closed the connection" : strerror(errno));
      return;
    }
    dynq__framer_commit(&c->fr, (size_t)n);
    if ((size_t)n < room) break;   /* a short read: the socket is drained */
  }
  double t = now_s();   /* one clock read for everything this read brought */
  const uint8_t *f;
  size_t flen;
  int rc = 0;
  while (c->fd >= 0 && (rc = dynq__framer_next(&c->fr, &f, &flen)) == 1) on_frame(c, f, flen, t);
  if (c->fd >= 0 && rc < 0) conn_fail(c, dynq_strerror(rc));
}

static double due_of(const worker_t *w, long e) {
  const stream_t *s = w->order[e % w->n_order];
  return t_start + s->offset_s + (double)(e / w->n_order) * period_s;
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  struct epoll_event evs[64];
  double t_last = 0;   /* the schedule's end: last due + DRAIN_S */
  if (w->total > 0) t_last = due_of(w, w->total - 1) + DRAIN_S;
  while (w->outstanding > 0) {
    double now = now_s();
    while (w->cursor < w->total && due_of(w, w->cursor) <= now) {
      stream_t *s = w->order[w->cursor % w->n_order];
      s->avail_k = w->cursor / w->n_order + 1;
      if (!s->dead && !s->inflight && s->next_k < s->avail_k) send_next(s->conn, s);
      w->cursor++;
    }
    for (int i = 0; i < w->n_conns; i++)
      if (w->conns[i]->dirty && !w->conns[i]->want_out) flush(w->conns[i]);
    if (w->outstanding <= 0) break;
    double wait;
    if (w->cursor < w->total) {
      wait = due_of(w, w->cursor) - now;
      if (wait < tick_s) wait = tick_s;
    } else {
      wait = t_last - now;
      if (wait <= 0) {
        set_err(w, "no reply within %.0f s after the last chunk was due", DRAIN_S);
        for (int i = 0; i < w->n_order; i++) {
          stream_t *s = w->order[i];
          long left = s->dead ? 0 : s->chunks - s->done - s->failed;
          s->failed += left;
          w->outstanding -= left;
        }
        break;
      }
    }
    struct timespec ts = {.tv_sec = (time_t)wait,
                          .tv_nsec = (long)((wait - (double)(time_t)wait) * 1e9)};
    int n = epoll_pwait2(w->ep, evs, 64, &ts, NULL);
    if (n < 0 && errno != EINTR) {
      set_err(w, "epoll: %s", strerror(errno));
      break;
    }
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->fd < 0) continue;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
      if (c->fd >= 0 && (evs[i].events & EPOLLOUT)) flush(c);
    }
  }
  return NULL;
}

/* ---- set-up: blocking, before the clock starts ---- */

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* Connect and open the connection's sessions (pipelined). */
static int conn_open(conn_t *c, char *err, size_t errlen) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(sock_path) >= sizeof sa.sun_path) {
    snprintf(err, errlen, "socket path too long: %s", sock_path);
    return -1;
  }
  strcpy(sa.sun_path, sock_path);
  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    snprintf(err, errlen, "connect %s: %s", sock_path, strerror(errno));
    return -1;
  }
  dynq__wbuf_t *o = &c->out;
  for (int i = 0; i < c->n_streams; i++) {
    dynq__w_request_head(o, (uint32_t)i, "session.open");
    dynq__w_map(o, 2);
    dynq__w_str(o, "model");
    dynq__w_str(o, model_name);
    dynq__w_str(o, "bindings");
    dynq__w_map(o, 1);
    dynq__w_str(o, "state");
    dynq__w_str(o, "stateN");
  }
  if (o->err || write_all(c->fd, o->data, o->len) < 0) {
    snprintf(err, errlen, "session.open: send: %s", o->err ? "out of memory" : strerror(errno));
    return -1;
  }
  dynq__wbuf_reset(o);
  int got = 0;
  dynq__scan_limits_t lim = dynq__scan_limits_default;
  lim.max_frame = RBUF_MAX;
  dynq__framer_init(&c->fr, &lim);
  while (got < c->n_streams) {
    uint8_t *dst;
    size_t room;
    const uint8_t *f;
    size_t flen;
    int rc;
    if (dynq__framer_space(&c->fr, 65536, &dst, &room) != 0) break;
    ssize_t n = read(c->fd, dst, room);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      snprintf(err, errlen, "session.open: %s", n ? strerror(errno) : "dynqd closed the connection");
      break;
    }
    dynq__framer_commit(&c->fr, (size_t)n);
    while ((rc = dynq__framer_next(&c->fr, &f, &flen)) == 1) {
      dynq__rpc_msg_t m;
      int64_t hint;
      char perr[128];
      if (dynq__rpc_parse(f, flen, &m, &hint, perr, sizeof perr) != 0) {
        snprintf(err, errlen, "session.open: %s", perr);
        goto out;
      }
      int64_t sid = -1;
      if (m.type != DYNQ_RPC_RESPONSE || m.msgid >= (uint32_t)c->n_streams) {
        snprintf(err, errlen, "session.open: unexpected reply (msgid %u)", m.msgid);
      } else if (dynq__obj_kind(m.error) != DYNQ_OBJ_NIL) {
        char msg[200];
        dynq__rpc_error(m.error, msg, sizeof msg);
        snprintf(err, errlen, "session.open: %s", msg);
      } else if (dynq__obj_int(dynq__obj_get(m.result, "session"), &sid) != 0 || sid < 0) {
        snprintf(err, errlen, "session.open: reply without a session id");
      } else {
        c->streams[m.msgid]->sid = (uint64_t)sid;
        got++;
      }
      dynq__rpc_free(&m);
      if (sid < 0) goto out;
    }
    if (rc < 0) {
      snprintf(err, errlen, "session.open: %s", dynq_strerror(rc));
      break;
    }
  }
out:
  if (got < c->n_streams) {
    if (!err[0]) snprintf(err, errlen, "session.open: out of memory");
    return -1;
  }
  int fl = fcntl(c->fd, F_GETFL);
  if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    snprintf(err, errlen, "fcntl: %s", strerror(errno));
    return -1;
  }
  return 0;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct result {
  int n;
  long chunks, late, failed;
  double p50, p99, max;
  double gen_us, dynqd_us;   /* CPU per answered chunk; dynqd_us < 0 without --pid */
  int pass;
} result_t;

static int n_threads = 1, per_conn = 32;
static long dynqd_pid = 0;

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* utime + stime of dynqd in seconds, or -1. */
static double pid_cpu_s(long pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strrchr(buf, ')');   /* the command name may hold spaces */
  unsigned long ut, st;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int run(int n, double seconds, double p99_limit, result_t *ret) {
  long per = (long)(seconds / period_s);
  int n_conns = (n + per_conn - 1) / per_conn;
  int nt = n_threads < n_conns ? n_threads : n_conns;
  stream_t *ss = calloc((size_t)n, sizeof *ss);
  conn_t *cs = calloc((size_t)n_conns, sizeof *cs);
  conn_t **cptr = calloc((size_t)n_conns, sizeof *cptr);
  stream_t **sptr = calloc((size_t)n * 2, sizeof *sptr);
  worker_t *ws = calloc((size_t)nt, sizeof *ws);
  result_t r = {.n = n, .dynqd_us = -1};
  char err[256] = "";
  int rc = 0, started = 0;
  double *all = NULL;
  if (!ss || !cs || !cptr || !sptr || !ws) {
    rc = -ENOMEM;
    goto done;
  }
  for (int i = 0; i < n_conns; i++) cs[i].fd = -1;
  for (int t = 0; t < nt; t++) ws[t].ep = -1;
  /* stream i -> connection i % n_conns -> thread (i % n_conns) % nt; each
   * connection's slot table and each thread's schedule are slices of sptr,
   * filled in stream (= offset) order */
  stream_t **conn_tab = sptr, **order_tab = sptr + n;
  int cfill = 0, ofill = 0;
  for (int ci = 0; ci < n_conns; ci++) {
    conn_t *c = &cs[ci];
    c->streams = conn_tab + cfill;
    c->w = &ws[ci % nt];
    dynq__wbuf_init(&c->out);
    for (int i = ci; i < n; i += n_conns) c->streams[c->n_streams++] = &ss[i];
    cfill += c->n_streams;
  }
  for (int t = 0; t < nt; t++) {
    worker_t *w = &ws[t];
    w->order = order_tab + ofill;
    w->conns = cptr + t * ((n_conns + nt - 1) / nt);
    for (int i = 0; i < n; i++)
      if ((i % n_conns) % nt == t) w->order[w->n_order++] = &ss[i];
    for (int ci = t; ci < n_conns; ci += nt) w->conns[w->n_conns++] = &cs[ci];
    ofill += w->n_order;
    w->total = (long)w->n_order * per;
    w->outstanding = w->total;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0) {
      rc = -errno;
      snprintf(err, sizeof err, "epoll_create1: %s", strerror(errno));
      goto done;
    }
  }
  for (int i = 0; i < n; i++) {
    ss[i].offset_s = period_s * (double)i / (double)n;
    ss[i].chunks = per;
    ss[i].pos = ((size_t)i * 37) % n_chunks;   /* each stream starts elsewhere in the clip */
    ss[i].conn = &cs[i % n_conns];
    ss[i].lat_ms = malloc(sizeof(double) * (size_t)per);
    if (!ss[i].lat_ms) {
      rc = -ENOMEM;
      goto done;
    }
  }
  for (int ci = 0; ci < n_conns; ci++) {
    conn_t *c = &cs[ci];
    for (int k = 0; k < c->n_streams; k++) c->streams[k]->slot = (uint32_t)k;
    if (conn_open(c, err, sizeof err) < 0) {
      rc = -EIO;
      goto done;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(c->w->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
      rc = -errno;
      snprintf(err, sizeof err, "epoll_ctl: %s", strerror(errno));
      goto done;
    }
  }

  double cpu0 = self_cpu_s(), d0 = dynqd_pid ? pid_cpu_s(dynqd_pid) : -1;
  t_start = now_s() + 0.05; /* every stream's first chunk is due after this */
  for (int t = 0; t < nt; t++) {
    if (pthread_create(&ws[t].th, NULL, worker_main, &ws[t]) != 0) {
      rc = -EAGAIN;
      snprintf(err, sizeof err, "pthread_create failed");
      break;
    }
    started++;
  }
  for (int t = 0; t < started; t++) pthread_join(ws[t].th, NULL);
  double cpu1 = self_cpu_s(), d1 = dynqd_pid ? pid_cpu_s(dynqd_pid) : -1;
  if (rc < 0) goto done;

  size_t total = 0;
  for (int i = 0; i < n; i++) total += (size_t)ss[i].done;
  all = malloc(sizeof(double) * (total ? total : 1));
  if (!all) {
    rc = -ENOMEM;
    goto done;
  }
  size_t k = 0;
  for (int i = 0; i < n; i++) {
    memcpy(all + k, ss[i].lat_ms, sizeof(double) * (size_t)ss[i].done);
    k += (size_t)ss[i].done;
    r.chunks += ss[i].done;
    r.late += ss[i].late;
    r.failed += ss[i].failed;
  }
  for (int t = 0; t < nt && !err[0]; t++)
    if (ws[t].err[0]) snprintf(err, sizeof err, "%s", ws[t].err);
  if (total) {
    qsort(all, total, sizeof *all, cmp_d);
    r.p50 = all[total / 2];
    r.p99 = all[(size_t)((double)total * 0.99)];
    r.max = all[total - 1];
    r.gen_us = (cpu1 - cpu0) * 1e6 / (double)total;
    if (d0 >= 0 && d1 >= 0) r.dynqd_us = (d1 - d0) * 1e6 / (double)total;
  }
  r.pass = r.failed == 0 && r.late == 0 && total > 0 && r.p99 <= p99_limit;

done:
  if (err[0]) fprintf(stderr, "vad-load: N=%d: %s\n", n, err);
  free(all);
  for (int i = 0; cs && i < n_conns; i++) {
    if (cs[i].fd >= 0) close(cs[i].fd);   /* closes its sessions too */
    dynq__wbuf_free(&cs[i].out);
    dynq__framer_free(&cs[i].fr);
  }
  for (int t = 0; ws && t < nt; t++)
    if (ws[t].ep >= 0) close(ws[t].ep);
  for (int i = 0; ss && i < n; i++) free(ss[i].lat_ms);
  free(ss);
  free(cs);
  free(cptr);
  free(sptr);
  free(ws);
  *ret = r;
  return rc;
}

static void print_result(const result_t *r, int json) {
  if (json)
    printf("{\"bench\":\"silero-vad-load\",\"sessions\":%d,\"chunks\":%ld,\"late\":%ld,"
           "\"failed\":%ld,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
           "\"gen_cpu_us_per_chunk\":%.1f,\"dynqd_cpu_us_per_chunk\":%.1f,\"pass\":%s}\n",
           r->n, r->chunks, r->late, r->failed, r->p50, r->p99, r->max, r->gen_us,
           r->dynqd_us, r->pass ? "true" : "false");
  else if (r->dynqd_us >= 0)
    printf("%8d %9ld %6ld %7ld %9.3f %9.3f %9.3f %7.1f %7.1f  %s\n", r->n, r->chunks, r->late,
           r->failed, r->p50, r->p99, r->max, r->gen_us, r->dynqd_us, r->pass ? "pass" : "FAIL");
  else
    printf("%8d %9ld %6ld %7ld %9.3f %9.3f %9.3f %7.1f       -  %s\n", r->n, r->chunks,
           r->late, r->failed, r->p50, r->p99, r->max, r->gen_us, r->pass ? "pass" : "FAIL");
  fflush(stdout);
}

static int load_wav(const char *path) {
  char err[512] = "";
  dynq__audio_t a;
  if (dynq__audio_load(path, 16000, &a, err, sizeof err) != 0) {
    fprintf(stderr, "vad-load: %s\n", err);
    return -1;
  }
  if (a.n < CHUNK) {
    fprintf(stderr, "vad-load: %s: %zu samples at 16 kHz, fewer than one chunk (%d)\n", path,
            a.n, CHUNK);
    dynq__audio_free(&a);
    return -1;
  }
  audio = a.samples;  /* kept for the whole run */
  n_chunks = a.n / CHUNK;
  memcpy(zero_ctx + CONTEXT, audio, sizeof(float) * CHUNK);
  return 0;
}

static int usage(int code) {
  fprintf(stderr,
          "usage: vad-load --socket SOCK --model NAME [--wav CLIP.wav]\n"
          "                [--sessions N | --search MAX] [--seconds S] [--period-ms 32]\n"
          "                [--p99-ms 10] [--threads T] [--per-conn K] [--tick-us U]\n"
          "                [--pid DYNQD_PID] [--json]\n");
  return code;
}

static int parse_num(const char *opt, const char *v, double lo, double hi, double *ret) {
  char *end;
  double d = strtod(v, &end);
  if (*end || !(d >= lo && d <= hi)) {
    fprintf(stderr, "vad-load: %s takes a number in %g..%g, not '%s'\n", opt, lo, hi, v);
    return -1;
  }
  *ret = d;
  return 0;
}

int main(int argc, char **argv) {
  const char *wav = "tests/fixtures/vad/speech.wav";
  double sessions = 0, search = 0, seconds = 5, period_ms = 32, p99_ms = 10;
  double threads = 1, pc = 32, tick_us = 100, pid = 0;
  int json = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--json") == 0) {
      json = 1;
      continue;
    }
    if (strcmp(a, "--help") == 0) return usage(0);
    if (!v) return usage(2);
    i++;
    int rc = 0;
    if (strcmp(a, "--socket") == 0) sock_path = v;
    else if (strcmp(a, "--model") == 0) model_name = v;
    else if (strcmp(a, "--wav") == 0) wav = v;
    else if (strcmp(a, "--sessions") == 0) rc = parse_num(a, v, 1, MAX_SESSIONS, &sessions);
    else if (strcmp(a, "--search") == 0) rc = parse_num(a, v, 1, MAX_SESSIONS, &search);
    else if (strcmp(a, "--seconds") == 0) rc = parse_num(a, v, 0.1, MAX_SECONDS, &seconds);
    else if (strcmp(a, "--period-ms") == 0) rc = parse_num(a, v, 1, 10000, &period_ms);
    else if (strcmp(a, "--p99-ms") == 0) rc = parse_num(a, v, 0.01, 10000, &p99_ms);
    else if (strcmp(a, "--threads") == 0) rc = parse_num(a, v, 1, MAX_THREADS, &threads);
    else if (strcmp(a, "--per-conn") == 0) rc = parse_num(a, v, 1, MAX_PER_CONN, &pc);
    else if (strcmp(a, "--tick-us") == 0) rc = parse_num(a, v, 0, 10000, &tick_us);
    else if (strcmp(a, "--pid") == 0) rc = parse_num(a, v, 1, 1 << 30, &pid);
    else return usage(2);
    if (rc < 0) return 2;
  }
  if (!sock_path || !model_name || (sessions > 0) == (search > 0)) return usage(2);
  if (seconds * 1000 < period_ms) {
    fprintf(stderr, "vad-load: --seconds must cover at least one period\n");
    return 2;
  }
  period_s = period_ms / 1e3;
  tick_s = tick_us / 1e6;
  n_threads = (int)threads;
  per_conn = (int)pc;
  dynqd_pid = (long)pid;
  if (dynqd_pid && pid_cpu_s(dynqd_pid) < 0) {
    fprintf(stderr, "vad-load: --pid %ld: cannot read /proc/%ld/stat\n", dynqd_pid, dynqd_pid);
    return 2;
  }
  if (load_wav(wav) < 0) return 1;

  if (!json)
    printf("Silero VAD streams on dynqd: one chunk per %.0f ms each, %.1f s per run, "
           "pass = no late chunk, no error, p99 <= %.1f ms\n"
           "generator: %d thread(s), %d sessions per connection, tick %.0f us; "
           "cpu columns: us of CPU per chunk\n"
           "sessions    chunks   late  failed    p50_ms    p99_ms    max_ms gen_cpu dynqd_cpu\n",
           period_ms, seconds, p99_ms, n_threads, per_conn, tick_us);
  result_t r;
  if (sessions > 0) {
    if (run((int)sessions, seconds, p99_ms, &r) < 0) return 1;
    print_result(&r, json);
    free(audio);
    return r.pass ? 0 : 3;
  }
  /* search: double, then bisect between the last pass and the first fail */
  int lo = 0, hi = (int)search + 1, n = 8 < (int)search ? 8 : (int)search;
  while (n < hi) {
    if (run(n, seconds, p99_ms, &r) < 0) return 1;
    print_result(&r, json);
    if (!r.pass) {
      hi = n;
      break;
    }
    lo = n;
    n = n * 2 < (int)search ? n * 2 : (n == (int)search ? hi : (int)search);
  }
  while (hi - lo > 1 && (hi - lo) * 20 > lo) {
    n = lo + (hi - lo) / 2;
    if (run(n, seconds, p99_ms, &r) < 0) return 1;
    print_result(&r, json);
    if (r.pass)
      lo = n;
    else
      hi = n;
  }
  if (json)
    printf("{\"bench\":\"silero-vad-capacity\",\"max_sessions\":%d,\"first_fail\":%d}\n", lo,
           hi > (int)search ? -1 : hi);
  else
    printf("largest passing N: %d%s\n", lo,
           hi > (int)search ? " (the --search limit)" : "");
  free(audio);
  return 0;
}
