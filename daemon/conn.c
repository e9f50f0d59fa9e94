/*
 * Client connections: accepting, reading and framing msgpack-RPC requests,
 * file descriptors passed with SCM_RIGHTS, writing responses, close hooks,
 * and the lifecycle drawn in dynqd.h.  Requests go to server->on_request
 * (the dispatcher); this file knows no method.
 *
 * Each connection reads into one dynq__framer (lib/proto; at most
 * max_frame + READ_CHUNK bytes), so one read brings in as many frames as
 * the socket holds and every complete one in it is handled in that
 * callback.  A frame is cut and decoded in one pass within the limits
 * (dynq__rpc_parse_next); what that cannot delimit goes through the
 * framer's dynq__mp_scan, which waits for more bytes or names the limit
 * broken.  A frame the scanner rejects cannot be skipped (the stream has no
 * length prefix), so it is answered with msgid 0 and the connection is
 * closed after what is pending has been flushed.  A frame that must wait
 * for start-up is parked in the framer (dynq__framer_hold) and handed out
 * again by dynqd__conn_resume.
 *
 * Answers are not written one by one: dynqd__conn_send queues them on the
 * connection, and dynqd__conn_flush_output (the loop's prepare handle,
 * just before it polls) writes each connection's answers of the iteration
 * with one writev (uv_try_write); only what the socket does not take goes
 * to a uv_write request.  A pipelining client thus costs one write per
 * loop iteration, not one per answer.
 *
 * Direct answers (dynqd__conn_direct_*): a plain infer's answer may be
 * written by the worker that encoded it (its bytes are in that core's
 * cache; copied by the loop, the answers of a pipelining client cost more
 * in the kernel's copy than anything else the loop did).  wstate is the
 * socket's token, one writer at a time:
 *
 *   LOOP --open (loop: direct jobs out, nothing of its own unsent)--> OPEN
 *   OPEN --a worker (CAS)--> WRITING --all it had written--> OPEN
 *                                    --socket full / a frame cut--> LOOP
 *   OPEN --loop has output / closes / no direct job left--> LOOP
 *
 * A worker whose write stops inside a frame sets wpartial before giving
 * the token back: nobody writes to c until that job is back on the loop
 * and the rest of its frame is queued first.  The loop writes nothing
 * while the token is not LOOP, and closes the fd only after taking it
 * (waiting out a worker inside its non-blocking send).
 *
 * Receiving fds: connections are libuv IPC pipes (uv_pipe_init(.., 1)),
 * so libuv's own recvmsg collects SCM_RIGHTS fds and queues them on the
 * handle.  libuv 1.44 hands a pending fd out only through uv_accept() into
 * a stream handle (uv_pipe_pending_type() says UV_UNKNOWN_HANDLE for a
 * memfd, but uv_accept into a uv_pipe_t still just adopts the fd), so we
 * accept it into a throw-away uv_pipe_t, dup the fd and close that handle.
 * This is done at the top of every read callback, while reading is active,
 * so libuv's re-arming of POLLIN in uv_accept never outlives a read stop.
 * An fd travels in the same sendmsg as its frame's first byte
 * (PROTOCOL.md), so it arrives with the recvmsg that reads that byte; the
 * kernel returns at most one message's fds per recvmsg, but may glue
 * plain bytes before it.  Each fd is therefore kept with the stream range
 * its recvmsg read, and only a frame starting in that range may claim it
 * (dynqd__conn_take_fd); once every frame starting there was handled, an
 * unclaimed fd is closed.  A stray fd never waits for the next
 * shm.register.
 *
 * Limits (dynqd.h config): a per-uid connection cap (admin peers exempt),
 * an idle timeout (a partial frame does not count as activity: slowloris),
 * and a global cap on read buffers + unsent output: past it, the
 * connections holding most are closed first.  A failed allocation pauses
 * that connection's reading until the next tick instead of spinning on
 * UV_ENOBUFS.  While draining, a peer whose unsent output does not move
 * between two ticks is dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "dynqd.h"
#include "proto/utf8.h"

#define READ_CHUNK ((size_t)64 << 10)
/* A read buffer that grew for a big frame is dropped once it is empty. */
#define RBUF_KEEP ((size_t)1 << 20)
/* Answers gathered per connection and loop iteration: at most this many
 * in one writev (IOV_MAX is 1024 on Linux); more wait for the next. */
#define OUT_IOV 256
/* Period of the transport's checks (idle, back-off, drain). */
#define TICK_MS 100

/* What the socket did not take at once: the answers' buffers (owned,
 * freed in the callback; the first may have been written in part, so
 * base[0] is kept apart from the buffer given to uv_write). */
typedef struct wreq {
  uv_write_t req;
  dynqd_conn_t *conn;   /* one ref held until the callback */
  size_t len;           /* bytes given to uv_write */
  int n;
  void *own[];          /* n buffers to free */
} wreq_t;

#ifndef NDEBUG
static int conn_state_ok(const dynqd_conn_t *c) {
  if (c->refs < 1 || c->inflight < 0 || c->writes < 0 || c->held < 0) return 0;
  if (c->n_fds < 0 || c->n_fds > (int)(sizeof(c->fds) / sizeof(c->fds[0]))) return 0;
  if (c->on < 0 || c->on > c->ocap || (c->on > 0) != (c->fqueued != 0)) return 0;
  if (c->closing && c->on != 0) return 0;
  if (c->closing && c->reading) return 0;
  if (c->flushing && c->reading) return 0;
  if (c->writes == 0 && c->out_bytes != 0) return 0;
  return 1;
}
#define CHECK_STATE(c) do { if (!conn_state_ok(c)) abort(); } while (0)
#else
#define CHECK_STATE(c) ((void)0)
#endif

static void update_reading(dynqd_conn_t *c);
static void process_frames(dynqd_conn_t *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void on_tmp_close(uv_handle_t *h) { free(h); }

/* The loop's time of this iteration (one clock read per iteration, not
 * one per request): what idle accounting, in seconds, needs. */
static uint64_t loop_ns(const dynqd_server_t *s) { return uv_now(s->loop) * 1000000u; }

/* Take fds libuv queued on the connection (SCM_RIGHTS) into c->fds: they
 * came with the n bytes about to be appended to the read buffer. */
static void take_fds(dynqd_conn_t *c, ssize_t n) {
  uint64_t start = c->rx;
  uint64_t end = start + (n > 0 ? (uint64_t)n : 0);
  while (uv_pipe_pending_count(&c->pipe) > 0) {
    uv_pipe_t *tmp = malloc(sizeof(*tmp));
    if (tmp == NULL) return;  /* libuv keeps the fd queued; it closes it with the conn */
    uv_pipe_init(c->srv->loop, tmp, 0);
    int rc = uv_accept((uv_stream_t *)&c->pipe, (uv_stream_t *)tmp);
    int fd = -1;
    uv_os_fd_t ofd;
    if (rc == 0 && uv_fileno((uv_handle_t *)tmp, &ofd) == 0)
      fd = fcntl(ofd, F_DUPFD_CLOEXEC, 0);
    uv_close((uv_handle_t *)tmp, on_tmp_close);  /* closes libuv's copy */
    if (fd < 0) continue;
    if (c->n_fds == (int)(sizeof(c->fds) / sizeof(c->fds[0]))) {
      log_info("conn %llu: more than %d file descriptors sent without a "
               "shm.register to claim them; closing the extra one",
               (unsigned long long)c->id, c->n_fds);
      close(fd);
      continue;
    }
    c->fds[c->n_fds].fd = fd;
    c->fds[c->n_fds].start = start;
    c->fds[c->n_fds].end = end;
    c->n_fds++;
  }
}

static void drop_fd(dynqd_conn_t *c, int i) {
  memmove(c->fds + i, c->fds + i + 1, (size_t)(c->n_fds - 1 - i) * sizeof(c->fds[0]));
  c->n_fds--;
}

int dynqd__conn_take_fd(dynqd_conn_t *c) {
  for (int i = 0; i < c->n_fds; i++) {
    if (c->fds[i].start <= c->frame_pos && c->frame_pos < c->fds[i].end) {
      int fd = c->fds[i].fd;
      drop_fd(c, i);
      return fd;
    }
  }
  return -1;
}

/* Every frame that starts before pos was handled: fds that came with
 * bytes before it belong to no frame left, so they are closed. */
static void close_stray_fds(dynqd_conn_t *c, uint64_t pos) {
  for (int i = 0; i < c->n_fds;) {
    if (c->fds[i].end > pos) {
      i++;
      continue;
    }
    log_info("conn %llu: closing a file descriptor that came with a frame other "
             "than shm.register", (unsigned long long)c->id);
    close(c->fds[i].fd);
    drop_fd(c, i);
  }
}

/* c's buffers changed: keep srv->buffers in step (closing connections
 * are no longer counted: what they hold goes soon). */
static void account(dynqd_conn_t *c) {
  size_t now = c->closing ? 0 : c->fr.cap + c->out_bytes + c->obytes + c->req_bytes;
  c->srv->buffers = c->srv->buffers - c->mem + now;
  c->mem = now;
}

/* What counts against max_buffers_total: every buffer, but the input slab
 * only up to its share (an eighth).  One a reload left bigger is retired
 * once its requests are done (rpc_infer.c); until then it must neither
 * shed nor refuse anyone. */
static size_t buffers_counted(const dynqd_server_t *s) {
  size_t share = (size_t)(s->cfg->max_buffers_total / 8);
  return s->slab_bytes > share ? s->buffers - (s->slab_bytes - share) : s->buffers;
}

/* Over max_buffers_total: close the connections holding most until under
 * it.  Never called from inside a libuv alloc callback. */
static void shed(dynqd_server_t *s) {
  while (buffers_counted(s) > s->cfg->max_buffers_total) {
    dynqd_conn_t *worst = NULL;
    for (dynqd_conn_t *c = s->conns; c; c = c->next)
      if (!c->closing && (worst == NULL || c->mem > worst->mem)) worst = c;
    if (worst == NULL || worst->mem == 0) return;
    log_warn("conn %llu (uid %u): holds %zu buffered bytes while all connections hold "
             "%zu, over max_buffers_total %llu; closing it", (unsigned long long)worst->id,
             (unsigned)worst->uid, worst->mem, buffers_counted(s),
             (unsigned long long)s->cfg->max_buffers_total);
    dynqd__conn_close(worst);
  }
}

int dynqd__conn_fd(const dynqd_conn_t *c) {
  uv_os_fd_t fd;
  if (uv_fileno((const uv_handle_t *)&c->pipe, &fd) != 0) return -1;
  return fd;
}

int dynqd__conn_add_close_hook(dynqd_server_t *s, dynqd_close_hook_fn fn, void *arg) {
  if (s->n_close_hooks == DYNQD_MAX_CLOSE_HOOKS) return -ENOSPC;
  s->close_hooks[s->n_close_hooks].fn = fn;
  s->close_hooks[s->n_close_hooks].arg = arg;
  s->n_close_hooks++;
  return 0;
}

static void conn_unref(dynqd_conn_t *c) {
  if (--c->refs > 0) return;
  dynq__framer_free(&c->fr);
  free(c->obuf);
  free(c);
}

/* Forget the answers not written yet (the connection is closing). */
static void drop_output(dynqd_conn_t *c) {
  for (int i = 0; i < c->on; i++) free(c->obuf[i].base);
  c->on = 0;
  c->obytes = 0;
  if (c->fqueued) {
    dynqd_server_t *s = c->srv;
    if (c->fprev) c->fprev->fnext = c->fnext;
    else s->flush = c->fnext;
    if (c->fnext) c->fnext->fprev = c->fprev;
    c->fnext = c->fprev = NULL;
    c->fqueued = 0;
  }
}

int dynqd__conn_charge(dynqd_conn_t *c, size_t bytes) {
  dynqd_server_t *s = c->srv;
  if (buffers_counted(s) + bytes > s->cfg->max_buffers_total) return DYNQ_EOVERLOAD;
  c->req_bytes += bytes;
  account(c);
  return 0;
}

void dynqd__conn_uncharge(dynqd_conn_t *c, size_t bytes) {
  c->req_bytes -= bytes < c->req_bytes ? bytes : c->req_bytes;
  account(c);
}

static void on_close(uv_handle_t *h) {
  dynqd_conn_t *c = (dynqd_conn_t *)h;
  dynqd_server_t *s = c->srv;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->n_conns--;
  if (c->peer != NULL) c->peer->conns--;
  log_debug("conn %llu: closed", (unsigned long long)c->id);
  for (int i = 0; i < c->n_fds; i++) close(c->fds[i].fd);
  c->n_fds = 0;
  conn_unref(c);
  if (s->accept_paused && s->listener_open && !s->draining) {
    s->accept_paused = 0;
    dynqd__conn_accept(s);  /* takes the connection libuv kept pending */
  }
  dynqd__server_check_drained(s);
}

/* Take the socket back from the workers: once this returns none writes
 * to it (so its fd may be closed, or the loop may write).  0, or -1 while
 * the rest of a frame a worker began is still on its way back (nothing
 * else may go out before it). */
static int take_direct(dynqd_conn_t *c) {
  int st = DYNQD_W_OPEN;
  while (!atomic_compare_exchange_weak(&c->wstate, &st, DYNQD_W_LOOP)) {
    if (st == DYNQD_W_LOOP) break;
    /* A worker is inside its non-blocking send: a few microseconds. */
    sched_yield();
    st = DYNQD_W_OPEN;
  }
  return atomic_load(&c->wpartial) ? -1 : 0;
}

/* Let workers write c's answers while direct jobs of it are out and
 * nothing the loop holds for it is unsent. */
static void open_direct(dynqd_conn_t *c) {
  if (c->direct == 0 || c->closing || c->flushing || c->on > 0 || c->writes > 0 ||
      atomic_load(&c->wpartial) || atomic_load(&c->wstate) != DYNQD_W_LOOP)
    return;
  atomic_store(&c->wstate, DYNQD_W_OPEN);
}

static void revoke_direct(dynqd_conn_t *c) { (void)take_direct(c); }

void dynqd__conn_close(dynqd_conn_t *c) {
  if (c->closing) return;
  revoke_direct(c);
  c->closing = 1;
  c->reading = 0;  /* uv_close stops reading */
  drop_output(c);
  account(c);      /* no longer counted */
  atomic_store(&c->dead, 1);
  /* What services tied to it (sessions, shm regions) let go now; running
   * requests keep their own references. */
  dynqd_server_t *s = c->srv;
  for (int i = 0; i < s->n_close_hooks; i++) s->close_hooks[i].fn(s->close_hooks[i].arg, c);
  uv_close((uv_handle_t *)&c->pipe, on_close);
}

/* Close a flushing connection once nothing is left for it to say. */
static void maybe_finish(dynqd_conn_t *c) {
  if (c->closing || !c->flushing) return;
  if (c->inflight == 0 && c->writes == 0 && c->on == 0 && dynq__framer_pending(&c->fr) == 0)
    dynqd__conn_close(c);
}

/* Whether the peer closed its socket (both directions), not just shut
 * down its writing: a Unix stream socket polls POLLHUP only then. */
static int peer_closed(dynqd_conn_t *c) {
  uv_os_fd_t fd;
  if (uv_fileno((const uv_handle_t *)&c->pipe, &fd) != 0) return 0;
  struct pollfd p = {.fd = fd, .events = POLLOUT};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

void dynqd__conn_flush_and_close(dynqd_conn_t *c) {
  if (c->closing || c->flushing) return;
  c->flushing = 1;
  update_reading(c);
  process_frames(c);  /* answer what is already buffered */
}

static void update_reading(dynqd_conn_t *c) {
  if (c->closing) return;
  const dynqd_config_t *cfg = c->srv->cfg;
  int want = !c->flushing && !c->srv->draining && c->inflight < cfg->max_inflight &&
             c->held == 0 && !c->waiting && !c->nomem;
  if (want && !c->reading) {
    if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0) c->reading = 1;
  } else if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->pipe);
    c->reading = 0;
  }
  CHECK_STATE(c);
  maybe_finish(c);
}

static void on_write(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  dynqd_conn_t *c = w->conn;
  c->writes--;
  c->out_bytes -= w->len;
  account(c);
  for (int i = 0; i < w->n; i++) free(w->own[i]);
  free(w);
  if (status < 0 && status != UV_ECANCELED) {
    log_debug("conn %llu: write failed: %s", (unsigned long long)c->id,
              uv_strerror(status));
    dynqd__conn_close(c);
  } else {
    maybe_finish(c);
    open_direct(c);
  }
  dynqd_server_t *s = c->srv;
  conn_unref(c);
  dynqd__server_check_drained(s);
}

static int grow_obuf(dynqd_conn_t *c) {
  int ncap = c->ocap ? 2 * c->ocap : 8;
  uv_buf_t *nb = realloc(c->obuf, (size_t)ncap * sizeof(*nb));
  if (nb == NULL) return -ENOMEM;
  c->obuf = nb;
  c->ocap = ncap;
  return 0;
}

/* On srv->flush: written before the loop polls. */
static void queue_flush(dynqd_conn_t *c) {
  if (c->fqueued) return;
  dynqd_server_t *s = c->srv;
  c->fqueued = 1;
  c->fprev = NULL;
  c->fnext = s->flush;
  if (s->flush) s->flush->fprev = c;
  s->flush = c;
}

void dynqd__conn_send(dynqd_conn_t *c, uint8_t *data, size_t len) {
  if (c->closing) {
    free(data);
    return;
  }
  /* What the kernel has not taken yet: a client that reads keeps this near
   * zero however many responses are pending callbacks. */
  size_t unsent = uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) + c->obytes;
  if (unsent + len > c->srv->cfg->max_output) {
    log_warn("conn %llu: %zu unsent response bytes exceed the %zu-byte output "
             "limit (client not reading?); closing it",
             (unsigned long long)c->id, unsent + len, c->srv->cfg->max_output);
    free(data);
    dynqd__conn_close(c);
    return;
  }
  if (c->on == c->ocap && grow_obuf(c) != 0) {
    log_err("conn %llu: out of memory queueing a response; closing it",
            (unsigned long long)c->id);
    free(data);
    dynqd__conn_close(c);
    return;
  }
  c->last_active_ns = loop_ns(c->srv);
  c->obuf[c->on++] = uv_buf_init((char *)data, (unsigned)len);
  c->obytes += len;
  queue_flush(c);
  account(c);  /* shed, if need be, once written (dynqd__conn_flush_output) */
}

/* Write c's queued answers: what the socket takes now with one writev,
 * the rest in one uv_write behind any earlier one. */
static void flush_one(dynqd_conn_t *c) {
  int n = c->on < OUT_IOV ? c->on : OUT_IOV;
  size_t len = 0;
  for (int i = 0; i < n; i++) len += c->obuf[i].len;
  int done = 0;     /* buffers written whole */
  size_t part = 0;  /* bytes of obuf[done] written */
  if (c->writes == 0) {
    /* Nothing of ours queued in libuv: write now.  Answers the socket
     * takes whole (the usual case) need no request, no callback and no
     * change to the epoll set. */
    int w = uv_try_write((uv_stream_t *)&c->pipe, c->obuf, (unsigned)n);
    if (w < 0 && w != UV_EAGAIN) {
      log_debug("conn %llu: write failed: %s", (unsigned long long)c->id, uv_strerror(w));
      dynqd__conn_close(c);
      return;
    }
    size_t left = w > 0 ? (size_t)w : 0;
    while (done < n && left >= c->obuf[done].len) {
      left -= c->obuf[done].len;
      free(c->obuf[done].base);
      done++;
    }
    part = left;
    len -= (size_t)(w > 0 ? w : 0);
  }
  if (done < n) {
    int k = n - done;
    wreq_t *wr = malloc(sizeof(*wr) + (size_t)k * sizeof(void *));
    uv_buf_t small[8];
    uv_buf_t *b = k <= 8 ? small : malloc((size_t)k * sizeof(*b));
    if (wr == NULL || b == NULL) {
      log_err("conn %llu: out of memory queueing a response; closing it",
              (unsigned long long)c->id);
      free(wr);
      if (b != small) free(b);
      for (int i = done; i < n; i++) free(c->obuf[i].base);
      memmove(c->obuf, c->obuf + n, (size_t)(c->on - n) * sizeof(*c->obuf));
      c->on -= n;
      dynqd__conn_close(c);
      return;
    }
    for (int i = 0; i < k; i++) {
      wr->own[i] = c->obuf[done + i].base;
      b[i] = c->obuf[done + i];
    }
    b[0].base += part;
    b[0].len -= part;
    wr->conn = c;
    wr->len = len;
    wr->n = k;
    /* libuv copies the uv_buf_t array; the bytes stay ours until on_write */
    int rc = uv_write(&wr->req, (uv_stream_t *)&c->pipe, b, (unsigned)k, on_write);
    if (b != small) free(b);
    if (rc != 0) {
      log_debug("conn %llu: write failed: %s", (unsigned long long)c->id, uv_strerror(rc));
      for (int i = 0; i < k; i++) free(wr->own[i]);
      free(wr);
      memmove(c->obuf, c->obuf + n, (size_t)(c->on - n) * sizeof(*c->obuf));
      c->on -= n;
      dynqd__conn_close(c);
      return;
    }
    c->refs++;
    c->writes++;
    c->out_bytes += len;
    c->uv_queued += len;
  }
  size_t taken = 0;
  for (int i = 0; i < n; i++) taken += c->obuf[i].len;
  memmove(c->obuf, c->obuf + n, (size_t)(c->on - n) * sizeof(*c->obuf));
  c->on -= n;
  c->obytes -= taken;
  account(c);
}

void dynqd__conn_flush_output(dynqd_server_t *s) {
  dynqd_conn_t *later = NULL;  /* a worker may write to these: not now */
  while (s->flush != NULL) {
    dynqd_conn_t *c = s->flush;
    s->flush = c->fnext;
    if (s->flush) s->flush->fprev = NULL;
    c->fnext = c->fprev = NULL;
    c->fqueued = 0;
    c->refs++;  /* a failed write closes it; keep it until we are done */
    if (!c->closing && take_direct(c) != 0) {
      /* A worker cut a frame: its rest, which the job brings back, goes
       * out before anything else. */
      c->fnext = later;  /* a private list: on no list as far as close knows */
      later = c;
      continue;
    }
    while (c->on > 0 && !c->closing) flush_one(c);
    CHECK_STATE(c);
    maybe_finish(c);
    open_direct(c);
    conn_unref(c);
  }
  for (dynqd_conn_t *c = later, *n; c; c = n) {
    n = c->fnext;
    c->fnext = NULL;
    if (!c->closing && c->on > 0) queue_flush(c);  /* once their job is back */
    conn_unref(c);
  }
  shed(s);
  dynqd__server_check_drained(s);
}

int dynqd__conn_direct_begin(dynqd_conn_t *c) {
  if (c->closing || c->flushing) return 0;
  if (c->direct == 0) {
    int fd = dynqd__conn_fd(c);
    if (fd < 0) return 0;
    c->dfd = fd;  /* read by workers only after the token is opened */
  }
  c->direct++;
  open_direct(c);
  return 1;
}

int dynqd__conn_direct_write(dynqd_conn_t *c, const struct iovec *iov, const int *niov,
                             int n, size_t *ret_sent) {
  if (n < 1 || n > DYNQD_DIRECT_MAX) return -1;
  size_t len[DYNQD_DIRECT_MAX];
  int total = 0;
  for (int k = 0; k < n; k++) {
    if (niov[k] < 1 || niov[k] > DYNQD_DIRECT_IOV - total) return -1;
    len[k] = 0;
    for (int i = 0; i < niov[k]; i++) len[k] += iov[total + i].iov_len;
    total += niov[k];
  }
  int st = DYNQD_W_OPEN;
  if (!atomic_compare_exchange_strong(&c->wstate, &st, DYNQD_W_WRITING)) return -1;
  /* Counted before a client can hold an answer (dynqd__conn_direct_settle). */
  atomic_fetch_add(&c->srv->direct_seen, n);
  /* sendmsg only reads the iovecs */
  struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)total};
  ssize_t w;
  do {
    w = sendmsg(c->dfd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (w < 0 && errno == EINTR);
  /* EAGAIN or a dead peer: the loop writes the rest (and sees the error). */
  size_t left = w > 0 ? (size_t)w : 0;
  int whole = 1;
  for (int k = 0; k < n; k++) {
    ret_sent[k] = left < len[k] ? left : len[k];
    left -= ret_sent[k];
    if (ret_sent[k] < len[k]) whole = 0;
    if (ret_sent[k] > 0 && ret_sent[k] < len[k]) atomic_store(&c->wpartial, 1);
  }
  /* A full socket goes back to the loop, which waits for it in epoll. */
  atomic_store(&c->wstate, whole ? DYNQD_W_OPEN : DYNQD_W_LOOP);
  return 0;
}

int dynqd__conn_direct_end(dynqd_conn_t *c, int wrote, const uint8_t *rest, size_t n) {
  if (wrote) atomic_fetch_sub(&c->srv->direct_seen, 1);
  if (--c->direct == 0) revoke_direct(c);  /* no worker holds an answer of c */
  if (c->closing) return 0;
  c->last_active_ns = loop_ns(c->srv);
  if (n > 0) {
    /* The worker wrote part of a frame: its rest must follow at once. */
    uint8_t *copy = malloc(n);
    if (copy == NULL || (c->on == c->ocap && grow_obuf(c) != 0)) {
      free(copy);
      log_err("conn %llu: out of memory finishing a response; closing it",
              (unsigned long long)c->id);
      dynqd__conn_close(c);
      return -1;
    }
    memcpy(copy, rest, n);
    memmove(c->obuf + 1, c->obuf, (size_t)c->on * sizeof(*c->obuf));
    c->obuf[0] = uv_buf_init((char *)copy, (unsigned)n);
    c->on++;
    c->obytes += n;
    atomic_store(&c->wpartial, 0);
    queue_flush(c);
    account(c);
  }
  open_direct(c);
  return 0;
}

void dynqd__conn_direct_settle(dynqd_server_t *s) {
  while (atomic_load(&s->direct_seen) > 0) {
    dynqd__sched_collect(&s->sched);
    if (atomic_load(&s->direct_seen) > 0) sched_yield();
  }
}

static void send_wbuf(dynqd_conn_t *c, dynq__wbuf_t *w) {
  if (w->err != 0) {
    log_err("conn %llu: out of memory encoding a response; closing it",
            (unsigned long long)c->id);
    dynq__wbuf_free(w);
    dynqd__conn_close(c);
    return;
  }
  size_t len;
  uint8_t *data = dynq__wbuf_steal(w, &len);
  dynqd__conn_send(c, data, len);
}

void dynqd__conn_send_error(dynqd_conn_t *c, uint32_t msgid, int code,
                            const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  /* Every str we send is valid UTF-8: request strings are checked where
   * they enter, and this catches a cut (%.*s, the buffer's end) inside a
   * character. */
  for (size_t n = strlen(msg), i = 0; (i += dynq__utf8_valid_prefix(msg + i, n - i)) < n;)
    msg[i] = '?';
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_error_response(&w, msgid, code, msg);
  send_wbuf(c, &w);
}

void dynqd__conn_op_begin(dynqd_conn_t *c, int hold) {
  c->refs++;
  c->inflight++;
  if (hold) {
    c->held++;
    update_reading(c);
  }
}

void dynqd__conn_op_end(dynqd_conn_t *c, int hold) {
  if (hold) c->held--;
  c->inflight--;
  if (!c->closing) {
    /* Frames held back by the operation or the in-flight cap.  A
     * pipelining client's answers mostly find none, nor a frame left to
     * consume or an error to report: no framing pass for them. */
    if (dynq__framer_pending(&c->fr) > 0 || c->fr.frame_len > 0 || c->fr.err != 0)
      process_frames(c);
    update_reading(c);
  }
  conn_unref(c);  /* the operation's reference */
}

void dynqd__conn_resume(dynqd_conn_t *c) {
  if (!c->waiting || c->closing) return;
  c->waiting = 0;
  process_frames(c);
}

/* A frame the scanner refused: answer with msgid 0, then close. */
static void bad_frame(dynqd_conn_t *c, int rc) {
  const dynqd_config_t *cfg = c->srv->cfg;
  char msg[256];
  switch (rc) {
    case DYNQ_ETOOBIG:
      snprintf(msg, sizeof(msg), "frame larger than the %zu-byte limit", cfg->max_frame);
      break;
    case DYNQ_EDEPTH:
      snprintf(msg, sizeof(msg), "frame nested deeper than %d levels", cfg->max_depth);
      break;
    case DYNQ_ELIMIT:
      snprintf(msg, sizeof(msg),
               "frame declares more than %llu array/map elements",
               (unsigned long long)cfg->max_elems);
      break;
    case DYNQ_EPROTO:
      snprintf(msg, sizeof(msg),
               "frame is not valid msgpack (or declares more elements than "
               "its size allows)");
      break;
    default:
      snprintf(msg, sizeof(msg), "frame rejected: %s", dynq_strerror(rc));
      break;
  }
  log_info("conn %llu: %s (%s); closing the connection",
           (unsigned long long)c->id, msg, dynq_err_name(rc));
  dynqd__conn_send_error(c, 0, rc, "%s; closing the connection", msg);
  dynq__framer_discard(&c->fr);  /* the rest of the stream cannot be resynchronised */
  c->flushing = 1;
}

/* A frame parsed (rc: its parse's result, m the message when 0, freed
 * here): 0 when handled, DYNQD_WAIT to leave it buffered.  The message
 * points into the read buffer, which stays as it is until then (nothing
 * reads into it while a frame is handled). */
static int handle_frame(dynqd_conn_t *c, int rc, dynq__rpc_msg_t *m, int64_t hint,
                        const char *err) {
  c->srv->frames_iter++;
  if (rc != 0) {
    uint32_t id = hint >= 0 && hint <= (int64_t)UINT32_MAX ? (uint32_t)hint : 0;
    log_debug("conn %llu: bad envelope: %s", (unsigned long long)c->id, err);
    dynqd__conn_send_error(c, id, rc, "%s", err[0] ? err : "malformed message envelope");
    return 0;
  }
  if (m->type == DYNQ_RPC_REQUEST) {
    if (c->srv->on_request(c->srv, c, m) == DYNQD_WAIT) {
      dynq__rpc_free(m);
      c->srv->frames_iter--;  /* seen again when it is handled */
      c->waiting = 1;
      return DYNQD_WAIT;
    }
  } else if (m->type == DYNQ_RPC_RESPONSE)
    log_debug("conn %llu: ignoring a response message from a client",
              (unsigned long long)c->id);
  /* notifications: accepted and ignored in protocol version 1 */
  dynq__rpc_free(m);
  return 0;
}

static void process_frames(dynqd_conn_t *c) {
  /* A request handled here may end an operation of this connection (an
   * inline run answering at once), which calls back in: the outer loop
   * goes on instead, so the frame it holds stays where it is. */
  if (c->framing) return;
  c->framing = 1;
  const dynqd_config_t *cfg = c->srv->cfg;
  /* the limits may change on SIGHUP */
  c->fr.lim = (dynq__scan_limits_t){cfg->max_frame, cfg->max_depth, cfg->max_elems};
  int handled = 0;
  while (!c->closing && c->inflight < cfg->max_inflight && c->held == 0 && !c->waiting) {
    uint64_t pos = c->rx - dynq__framer_pending(&c->fr);
    const uint8_t *f;
    size_t flen = 0, avail = 0;
    dynq__rpc_msg_t m;
    memset(&m, 0, sizeof(m));
    int64_t hint = -1;
    char err[256] = "";
    /* Most frames are cut and parsed in one pass; what that does not
     * delimit (a partial frame, one over a limit or not msgpack) goes
     * through the framer's scan, which waits for more or says why. */
    int prc = -EAGAIN;
    if (pos != c->slow_pos && dynq__framer_peek(&c->fr, &f, &avail) == 0 && avail > 0) {
      prc = dynq__rpc_parse_next(c->srv->reader, f, avail, &c->fr.lim, &flen, &m, &hint,
                                 err, sizeof(err));
      if (prc == -EAGAIN) c->slow_pos = pos;  /* once per frame: a big one comes in
                                                 many reads */
    }
    if (prc != -EAGAIN) {
      dynq__framer_take(&c->fr, flen);
    } else {
      int rc = dynq__framer_next(&c->fr, &f, &flen);
      if (rc == 0) {
        /* A partial frame of a connection that reads no more never ends. */
        if (c->flushing) dynq__framer_discard(&c->fr);
        break;
      }
      if (rc < 0) {
        bad_frame(c, rc);
        break;
      }
      prc = dynq__rpc_parse_framed(c->srv->reader, f, flen, &c->fr.lim, &m, &hint, err,
                                   sizeof(err));
    }
    c->frame_pos = pos;
    if (handle_frame(c, prc, &m, hint, err) == DYNQD_WAIT) {
      dynq__framer_hold(&c->fr);  /* parked until dynqd__conn_resume */
      break;
    }
    handled = 1;
    if (c->n_fds > 0) close_stray_fds(c, pos + flen);
  }
  if (handled) c->last_active_ns = loop_ns(c->srv);
  c->framing = 0;
  account(c);
  update_reading(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  dynqd_conn_t *c = (dynqd_conn_t *)h;
  uint8_t *p;
  size_t room;
  /* Room for one READ_CHUNK at least, grown (up to max_frame + READ_CHUNK)
   * only while a frame being received needs it. */
  int rc = dynq__framer_space(&c->fr, READ_CHUNK, &p, &room);
  account(c);  /* over the global cap: shed after the read (not here) */
  if (rc != 0) {
    if (rc == -ENOMEM) c->nomem = 1;  /* read_cb stops reading; the next tick retries */
    *buf = uv_buf_init(NULL, 0);     /* read_cb gets UV_ENOBUFS */
    return;
  }
  if (room > ((size_t)1 << 30)) room = (size_t)1 << 30;  /* uv_buf_t len is unsigned */
  *buf = uv_buf_init((char *)p, (unsigned)room);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  dynqd_conn_t *c = (dynqd_conn_t *)st;
  if (!c->closing) take_fds(c, n);  /* fds ride with the bytes */
  if (n == 0 || c->closing) return;
  if (n == UV_ENOBUFS) {
    /* Memory ran out (nomem): the tick resumes reading, no tight
     * stop/start loop. */
    if (c->nomem) log_warn("conn %llu: out of memory for its read buffer; reading "
                           "paused", (unsigned long long)c->id);
    uv_read_stop(st);
    c->reading = 0;
    process_frames(c);
    return;
  }
  if (n < 0) {
    if (n == UV_EOF) {
      log_debug("conn %llu: end of stream", (unsigned long long)c->id);
      /* A peer that only shut down its writing still reads its answers;
       * one that closed the socket never will: its queued jobs are
       * skipped and its running ones stopped (the cancel flag). */
      if (peer_closed(c)) atomic_store(&c->dead, 1);
      dynqd__conn_flush_and_close(c);
    } else {
      log_info("conn %llu: read failed: %s; closing it",
               (unsigned long long)c->id, uv_strerror((int)n));
      dynqd__conn_close(c);
    }
    return;
  }
  dynq__framer_commit(&c->fr, (size_t)n);
  c->rx += (uint64_t)n;
  process_frames(c);
  shed(c->srv);
}

/* Say why (msgid 0), then close once that is written. */
static void refuse(dynqd_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(dynqd_conn_t *c, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  dynqd__conn_send_error(c, 0, DYNQ_ELIMIT, "%s", msg);
  dynqd__conn_flush_and_close(c);
}

/* The peer's uid and gid from the kernel, whether it is an admin peer, and
 * its uid's record.  0, or -1 after logging (the connection is refused). */
static int identify(dynqd_conn_t *c) {
  dynqd_server_t *s = c->srv;
  int fd = dynqd__conn_fd(c);
  struct ucred cr;
  socklen_t len = sizeof(cr);
  if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
    log_warn("conn %llu: cannot identify the peer: %s; refusing it",
             (unsigned long long)c->id, strerror(errno));
    return -1;
  }
  c->uid = (uint32_t)cr.uid;
  c->gid = (uint32_t)cr.gid;
  char why[256];
  c->admin = s->peer_ok != NULL && s->peer_ok(fd, s->cfg->admin_group, why, sizeof(why));
  c->peer = dynqd__peer_get(&s->peers, c->uid);
  if (c->peer == NULL) {
    log_err("conn %llu: out of memory accounting uid %u; refusing it",
            (unsigned long long)c->id, (unsigned)c->uid);
    return -1;
  }
  return 0;
}

static void on_tick(uv_timer_t *t) {
  dynqd_server_t *s = t->data;
  uint64_t now = loop_ns(s);
  uint64_t idle_ns = (uint64_t)s->cfg->idle_timeout_s * 1000000000u;
  for (dynqd_conn_t *c = s->conns, *n; c; c = n) {
    n = c->next;
    if (c->closing) continue;
    if (c->nomem) {  /* back-off after an allocation failure: try again */
      c->nomem = 0;
      update_reading(c);
      continue;
    }
    if (s->draining) {
      /* A peer that does not read would hold the drain for its whole
       * timeout: unsent output of which nothing was written since the last
       * tick.  Progress is bytes written, not a queue that shrank: a peer
       * reading all the time still sees its queue grow while answers are
       * finished faster than it reads them. */
      size_t unsent = c->writes > 0 ? uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) : 0;
      uint64_t written = c->uv_queued - unsent;
      if (unsent > 0 && c->drain_checked && written == c->drain_written) {
        log_notice("conn %llu: not reading its answers while draining; dropping it",
                   (unsigned long long)c->id);
        dynqd__conn_close(c);
        continue;
      }
      c->drain_written = written;
      c->drain_checked = 1;
      continue;
    }
    if (idle_ns > 0 && c->inflight == 0 && c->writes == 0 && !c->waiting &&
        now - c->last_active_ns > idle_ns) {
      log_info("conn %llu (uid %u): no complete request for %d s (idle_timeout_s); "
               "closing it", (unsigned long long)c->id, (unsigned)c->uid,
               s->cfg->idle_timeout_s);
      dynqd__conn_close(c);
    }
  }
}

void dynqd__conn_tick_start(dynqd_server_t *s) {
  if (!s->tick_init) {
    uv_timer_init(s->loop, &s->tick_timer);
    s->tick_timer.data = s;
    uv_unref((uv_handle_t *)&s->tick_timer);  /* never keeps the loop alive */
    s->tick_init = 1;
  }
  uv_timer_start(&s->tick_timer, on_tick, TICK_MS, TICK_MS);
}

void dynqd__conn_accept(dynqd_server_t *s) {
  /* aligned: its workers' fields keep a cache line of their own */
  dynqd_conn_t *c = aligned_alloc(_Alignof(dynqd_conn_t), sizeof(*c));
  if (c != NULL) memset(c, 0, sizeof(*c));
  if (c == NULL) {
    /* Without uv_accept libuv stops polling the listener (no spinning) and
     * keeps the connection pending; on_close retries. */
    log_err("out of memory accepting a connection; accepting paused");
    s->accept_paused = 1;
    return;
  }
  c->srv = s;
  c->refs = 1;  /* the handle, dropped in on_close */
  c->id = ++s->next_conn_id;
  atomic_init(&c->dead, 0);
  atomic_init(&c->wstate, DYNQD_W_LOOP);
  atomic_init(&c->wpartial, 0);
  dynq__framer_init(&c->fr, NULL);
  c->fr.keep = RBUF_KEEP;
  /* ipc = 1: libuv then reads with recvmsg and queues SCM_RIGHTS fds
   * (shm.register); see shm.c. */
  uv_pipe_init(s->loop, &c->pipe, 1);
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->n_conns++;
  c->last_active_ns = loop_ns(c->srv);
  c->slow_pos = UINT64_MAX;
  int rc = uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->pipe);
  if (rc != 0) {
    log_warn("accept failed: %s", uv_strerror(rc));
    dynqd__conn_close(c);
    return;
  }
  if (s->n_conns > s->cfg->max_conns) {
    log_warn("refusing connection: %d connections open (limit %d)",
             s->n_conns - 1, s->cfg->max_conns);
    dynqd__conn_close(c);
    return;
  }
  if (identify(c) != 0) {
    dynqd__conn_close(c);
    return;
  }
  int cap = s->cfg->max_conns_per_uid;
  if (!c->admin && cap > 0 && c->peer->conns >= cap) {
    log_warn("refusing connection: uid %u has %d connections open (max_conns_per_uid %d)",
             (unsigned)c->uid, c->peer->conns, cap);
    int have = c->peer->conns;
    c->peer = NULL;  /* not counted, so on_close must not uncount it */
    refuse(c, "uid %u already has %d connections open (max_conns_per_uid %d)",
           (unsigned)c->uid, have, cap);
    return;
  }
  c->peer->conns++;
  rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
  if (rc != 0) {
    log_warn("conn %llu: cannot read: %s", (unsigned long long)c->id, uv_strerror(rc));
    dynqd__conn_close(c);
    return;
  }
  c->reading = 1;
  log_debug("conn %llu: accepted", (unsigned long long)c->id);
}
