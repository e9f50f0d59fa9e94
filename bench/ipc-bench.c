/*
 * ipc-bench: what the dynqd request path costs on top of the engine.
 *
 *   ipc-bench --dynqd PATH --models DIR [--model NAME] [--seconds S]
 *             [--clients N] [--workers W] [--daemon-arg ARG]...
 *   ipc-bench --dynqd PATH --models DIR --model NAME --split ROWS [--cols K]
 *
 * DIR holds NAME.dynq (default "linear", made by bench/make_linear.py and
 * dynq-quantize: a 1x768 -> 768 quantized Linear).  Measures, with raw
 * msgpack-RPC over the Unix socket (the proto layer, as libdynqclient
 * does):
 *   1. ping round trip p50;
 *   2. infer [1, 768] round trip p50, split with the daemon's own timings
 *      (decode_us, queue_us, compute_us) and the client's encode/decode;
 *      ping and infer through libdynqclient (dynq_ping, dynq_infer) with
 *      its busy-poll off and at --client-spin, interleaved in blocks with
 *      the raw frames so that all see the same thread placement; then
 *      dynq_ping back to back for --seconds (p10/p50/p90);
 *   3. throughput with N concurrent clients (closed loop, one connection
 *      each), batching off and on (--batch-max 16 --batch-delay 200), vs
 *      the engine in-process on W threads; batching off also through
 *      libdynqclient with its busy-poll off and at --client-spin;
 *      next to a bare AF_UNIX ping-pong of N socketpairs (N client threads,
 *      N echo threads) moving messages of the request's and the answer's
 *      sizes, measured just before and after (the socket's own limit);
 *   (dynqd's CPU per request is given for all its threads and for its
 *   event-loop thread alone, the part that does not run in parallel);
 *   3b. throughput pipelined through libdynqclient: --pipeline CxD (default
 *      4x32) connections each keeping D requests in flight (dynq_submit_infer
 *      / dynq_poll / dynq_wait_infer), next to the engine's rate;
 *   4. RSS and PSS of two dynqd processes serving the same model file
 *      (/proc/PID/smaps_rollup), after a warm-up request on each.
 * Prints one line per figure.  Numbers are medians; the machine is shared.
 *
 * --split ROWS: a lone infer of [ROWS, K] (default K 4096) on the
 * model NAME, with --workers 1 and then --workers W: round trip and
 * compute_us medians, and the split width the daemon reports.
 * --daemon-arg passes one more argument to every dynqd started (repeat).
 * --client-spin US: the libdynqclient busy-poll budget of the second client
 * connection in the latency figures (the first has it off; default 50).
 * --latency-only: stop after 1 and 2.
 * --blocking-recv: the raw clients (and the bare pairs) block in recv()
 * for an answer instead of waiting in poll(POLLIN) first.  A reader
 * blocked in recv() on a Unix stream socket is woken (for nothing) when
 * the peer consumes what it sent (the kernel's write-space wake-up does
 * not filter by event, poll's does), and on a VM that wake-up is paid by
 * the server inside its recvmsg, once per request.
 * --throughput-only: only 3 (raw clients next to the bare pairs), 3b and
 * the engine, for comparing daemon builds or settings quickly.
 * --pipeline-only: only 3b, the engine at batch 1 and at batches of D rows,
 * and 3d (the bare pipelined echo): the pipelined figure next to the
 * ceiling the socket and the engine leave on these cores.
 * --sync-only: only the raw closed-loop clients (and then as many
 * libdynqclient ones, dynq_infer), then the bare pairs once (dynqd's phase
 * starts at a fixed offset, for a profiler to attach), the ceiling the
 * bare pairs' CPU and the engine's leave (sync_ceiling), and a minimal
 * server (3e) on one and on W threads against the same clients.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dynq/dynqclient.h"
#include "dynq/errors.h"
#include "model.h"
#include "proto/proto-tensor.h"

static const char *o_dynqd, *o_models, *o_model = "linear";
static double o_seconds = 3.0;
static int o_clients = 64, o_workers = 2;
static int o_split_rows, o_cols = 4096;
static const char *o_dargs[16];
static int o_n_dargs;
static int o_latency_only, o_throughput_only, o_pipeline_only, o_sync_only, o_blocking_recv;

/* Wait until fd has bytes to read (see --blocking-recv). */
static void wait_readable(int fd) {
  if (o_blocking_recv) return;
  struct pollfd pf = {fd, POLLIN, 0};
  while (poll(&pf, 1, -1) < 0 && errno == EINTR) {
  }
}
static int o_pipe_conns = 4, o_pipe_depth = 32;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *msg) {
  fprintf(stderr, "ipc-bench: %s\n", msg);
  exit(1);
}

/* ---- a daemon ---- */

typedef struct daemon {
  pid_t pid;
  char sock[256];
} daemon_t;

static int connect_to(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void daemon_start(daemon_t *d, const char *tag, const char *const *extra) {
  snprintf(d->sock, sizeof(d->sock), "/tmp/ipc-bench-%d-%s.sock", (int)getpid(), tag);
  unlink(d->sock);
  char workers[16];
  snprintf(workers, sizeof(workers), "%d", o_workers);
  const char *argv[48];
  int n = 0;
  argv[n++] = o_dynqd;
  argv[n++] = "--socket";
  argv[n++] = d->sock;
  argv[n++] = "--models";
  argv[n++] = o_models;
  argv[n++] = "--workers";
  argv[n++] = workers;
  argv[n++] = "--log-level";
  argv[n++] = "warning";
  for (int i = 0; i < o_n_dargs; i++) argv[n++] = o_dargs[i];
  for (int i = 0; extra && extra[i] && n < 46; i++) argv[n++] = extra[i];
  argv[n] = NULL;
  d->pid = fork();
  if (d->pid < 0) die("fork failed");
  if (d->pid == 0) {
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  for (int i = 0; i < 2000; i++) {
    int fd = connect_to(d->sock);
    if (fd >= 0) {
      close(fd);
      return;
    }
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  die("dynqd did not start");
}

static void daemon_stop(daemon_t *d) {
  kill(d->pid, SIGTERM);
  waitpid(d->pid, NULL, 0);
  unlink(d->sock);
}

/* ---- one blocking connection ---- */

typedef struct conn {
  int fd;
  dynq__framer_t fr;
} conn_t;

static void c_send(conn_t *c, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("send failed");
    p += w;
    n -= (size_t)w;
  }
}

static void c_open(conn_t *c, const char *sock) {
  c->fd = connect_to(sock);
  if (c->fd < 0) die("cannot connect");
  dynq__framer_init(&c->fr, NULL);
}

static void c_close(conn_t *c) {
  dynq__framer_free(&c->fr);
  close(c->fd);
}

/* Read one message into m; returns its error code. */
static int c_recv(conn_t *c, dynq__rpc_msg_t *m) {
  for (;;) {
    const uint8_t *f;
    size_t flen;
    int rc = dynq__framer_next(&c->fr, &f, &flen);
    if (rc < 0) die("dynqd sent bytes the scanner refuses");
    if (rc == 1) {
      char err[256];
      int64_t hint;
      if (dynq__rpc_parse(f, flen, m, &hint, err, sizeof(err)) != 0) die(err);
      char msg[256];
      return dynq__rpc_error(m->error, msg, sizeof(msg));
    }
    uint8_t *dst;
    size_t room;
    if (dynq__framer_space(&c->fr, 65536, &dst, &room) != 0) die("out of memory");
    wait_readable(c->fd);
    ssize_t r = recv(c->fd, dst, room, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die("connection closed");
    dynq__framer_commit(&c->fr, (size_t)r);
  }
}

static float g_x[768];
static uint8_t *g_answer;  /* dynqd's answer frame to w_infer(3), as infer_sizes read it */
static float *g_xs;  /* o_pipe_depth copies of g_x: the engine's batched rows */

static void w_infer(dynq__wbuf_t *w, uint32_t msgid) {
  dynq__w_request_head(w, msgid, "infer");
  dynq__w_map(w, 2);
  dynq__w_str(w, "model");
  dynq__w_str(w, o_model);
  dynq__w_str(w, "inputs");
  dynq__w_map(w, 1);
  dynq__w_str(w, "x");
  dynq__tensor_t t;
  memset(&t, 0, sizeof(t));
  t.dtype = DYNQ_DT_F32;
  t.rank = 2;
  t.dims[0] = 1;
  t.dims[1] = 768;
  t.data = g_x;
  dynq__w_tensor(w, &t);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), cmp_d);
  return v[n / 2];
}

/* ---- 1 and 2: latency ---- */

/* Raw frames and libdynqclient (spin off, then --client-spin) take turns in
 * blocks of LAT_BLOCK requests on three connections to the same daemon, so
 * each figure sees the same neighbours and the same thread placement: on
 * this VM a round trip between threads on different vCPUs costs several
 * times one on a shared vCPU, and the scheduler changes its mind between
 * seconds, so back-to-back phases are not comparable. */
enum { LAT_BLOCK = 250, LAT_BLOCKS = 12, LAT_N = LAT_BLOCK * LAT_BLOCKS };
static int o_client_spin = 50;

static double raw_ping(conn_t *c, dynq__wbuf_t *w) {
  dynq__wbuf_reset(w);
  dynq__w_request_head(w, 1, "ping");
  dynq__w_map(w, 0);
  double t0 = now_s();
  c_send(c, w->data, w->len);
  dynq__rpc_msg_t m;
  c_recv(c, &m);
  double t1 = now_s();
  dynq__rpc_free(&m);
  return (t1 - t0) * 1e6;
}

typedef struct infer_sample {
  double enc, rtt, dec, q, comp, sdec;
} infer_sample_t;

static void raw_infer(conn_t *c, dynq__wbuf_t *w, infer_sample_t *ret) {
  double t0 = now_s();
  dynq__wbuf_reset(w);
  w_infer(w, 2);
  double t1 = now_s();
  c_send(c, w->data, w->len);
  dynq__rpc_msg_t m;
  if (c_recv(c, &m) != 0) die("infer failed (is the model there?)");
  double t2 = now_s();
  dynq__tensor_limits_t tl = {8, 1 << 20};
  dynq__tensor_t y;
  char err[128];
  dynq__obj_t outs = dynq__obj_get(m.result, "outputs");
  if (dynq__obj_tensor(dynq__obj_get(outs, "y"), &tl, &y, err, sizeof(err)) != 0) die(err);
  double t3 = now_s();
  dynq__tensor_clear(&y);
  int64_t qu = 0, cu = 0, du = 0;
  dynq__obj_int(dynq__obj_get(m.result, "queue_us"), &qu);
  dynq__obj_int(dynq__obj_get(m.result, "compute_us"), &cu);
  dynq__obj_int(dynq__obj_get(m.result, "decode_us"), &du);
  dynq__rpc_free(&m);
  ret->enc = (t1 - t0) * 1e6;
  ret->rtt = (t2 - t1) * 1e6;
  ret->dec = (t3 - t2) * 1e6;
  ret->q = (double)qu;
  ret->comp = (double)cu;
  ret->sdec = (double)du;
}

static double lib_ping(dynq_client_t *cl) {
  double t0 = now_s();
  if (dynq_ping(cl) != 0) die(dynq_client_errmsg(cl));
  return (now_s() - t0) * 1e6;
}

/* g_x as the model's input "x" [1, 768] for libdynqclient. */
static dynq_tensor_t x_tensor(void) {
  dynq_tensor_t x;
  memset(&x, 0, sizeof(x));
  x.name = "x";
  x.dtype = DYNQ_FLOAT32;
  x.rank = 2;
  x.shape[0] = 1;
  x.shape[1] = 768;
  x.data = g_x;
  x.nbytes = sizeof(g_x);
  return x;
}

static double lib_infer(dynq_client_t *cl, double *ret_comp) {
  dynq_tensor_t x = x_tensor();
  dynq_infer_result_t res;
  double t0 = now_s();
  if (dynq_infer(cl, o_model, DYNQ_INFER_INT8, &x, 1, &res) != 0)
    die(dynq_client_errmsg(cl));
  double t1 = now_s();
  *ret_comp = (double)res.compute_us;
  dynq_infer_result_free(&res);
  return (t1 - t0) * 1e6;
}

/* dynq_ping back to back for --seconds (spin --client-spin): the blocks
 * above last ~30 ms each, so they catch one thread placement; over
 * seconds the scheduler settles (on this VM, the client and the loop on
 * different vCPUs most of the time). */
static void sustained_ping(const daemon_t *d) {
  dynq_client_t *cl;
  if (dynq_connect(d->sock, &cl) != 0 || dynq_client_set_spin(cl, o_client_spin) != 0)
    die("dynq_connect failed");
  size_t cap = (size_t)1 << 22, n = 0;
  double *v = malloc(sizeof(double) * cap);
  if (v == NULL) die("out of memory");
  double end = now_s() + o_seconds;
  while (n < cap && now_s() < end) v[n++] = lib_ping(cl);
  qsort(v, n, sizeof(double), cmp_d);
  printf("libdynqclient, spin %d us, back to back for %.1f s: dynq_ping p50 %.1f us (p10 %.1f, "
         "p90 %.1f; %zu calls)\n", o_client_spin, o_seconds, v[n / 2], v[n / 10],
         v[n * 9 / 10], n);
  free(v);
  dynq_close(cl);
}

static void latency(const daemon_t *d) {
  static double rp[LAT_N], l0p[LAT_N], l1p[LAT_N];
  static double enc[LAT_N], rtt[LAT_N], dec[LAT_N], q[LAT_N], comp[LAT_N], sdec[LAT_N];
  static double l0i[LAT_N], l1i[LAT_N], l0c[LAT_N], l1c[LAT_N];
  conn_t c;
  c_open(&c, d->sock);
  dynq_client_t *cl0, *cl1;
  if (dynq_connect(d->sock, &cl0) != 0 || dynq_connect(d->sock, &cl1) != 0)
    die("dynq_connect failed");
  if (dynq_client_set_spin(cl0, 0) != 0 || dynq_client_set_spin(cl1, o_client_spin) != 0)
    die("dynq_client_set_spin failed");
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  double dummy;
  for (int i = 0; i < 200; i++) {  /* warm-up: the model's first runs, the buffers */
    infer_sample_t s;
    raw_ping(&c, &w);
    raw_infer(&c, &w, &s);
    lib_ping(cl0);
    lib_ping(cl1);
    lib_infer(cl0, &dummy);
    lib_infer(cl1, &dummy);
  }
  for (int b = 0; b < LAT_BLOCKS; b++) {
    int k0 = b * LAT_BLOCK;
    for (int i = 0; i < LAT_BLOCK; i++) rp[k0 + i] = raw_ping(&c, &w);
    for (int i = 0; i < LAT_BLOCK; i++) l0p[k0 + i] = lib_ping(cl0);
    for (int i = 0; i < LAT_BLOCK; i++) l1p[k0 + i] = lib_ping(cl1);
  }
  for (int b = 0; b < LAT_BLOCKS; b++) {
    int k0 = b * LAT_BLOCK;
    for (int i = 0; i < LAT_BLOCK; i++) {
      infer_sample_t s;
      int k = k0 + i;
      raw_infer(&c, &w, &s);
      enc[k] = s.enc;
      rtt[k] = s.rtt;
      dec[k] = s.dec;
      q[k] = s.q;
      comp[k] = s.comp;
      sdec[k] = s.sdec;
    }
    for (int i = 0; i < LAT_BLOCK; i++) l0i[k0 + i] = lib_infer(cl0, &l0c[k0 + i]);
    for (int i = 0; i < LAT_BLOCK; i++) l1i[k0 + i] = lib_infer(cl1, &l1c[k0 + i]);
  }
  printf("ping round trip p50: %.1f us\n", median(rp, LAT_N));
  double r = median(rtt, LAT_N), qq = median(q, LAT_N), cc = median(comp, LAT_N);
  double dd = median(sdec, LAT_N);
  printf("infer [1,768] round trip p50: %.1f us (client encode %.1f, client decode %.1f)\n", r,
         median(enc, LAT_N), median(dec, LAT_N));
  printf("  daemon: decode %.0f us, queue %.0f us, compute %.0f us; IPC + loop + "
         "response encode = %.1f us\n", dd, qq, cc, r - dd - qq - cc);
  printf("libdynqclient, spin 0: dynq_ping p50 %.1f us; dynq_infer [1,768] p50 %.1f us "
         "(compute %.0f us)\n", median(l0p, LAT_N), median(l0i, LAT_N), median(l0c, LAT_N));
  printf("libdynqclient, spin %d us: dynq_ping p50 %.1f us; dynq_infer [1,768] p50 %.1f us "
         "(compute %.0f us)\n", o_client_spin, median(l1p, LAT_N), median(l1i, LAT_N),
         median(l1c, LAT_N));
  dynq__wbuf_free(&w);
  c_close(&c);
  dynq_close(cl0);
  dynq_close(cl1);
}

/* ---- --split: one lone large request, 1 worker vs W ---- */

static void split_run(int workers) {
  enum { N = 15 };
  int saved = o_workers;
  o_workers = workers;
  daemon_t d;
  daemon_start(&d, workers == 1 ? "s1" : "sw", NULL);
  o_workers = saved;
  size_t n = (size_t)o_split_rows * (size_t)o_cols;
  float *x = malloc(n * sizeof(float));
  if (x == NULL) die("out of memory");
  for (size_t i = 0; i < n; i++) x[i] = (float)((int)(i * 7919 % 97) - 48) / 48.0f;
  conn_t c;
  c_open(&c, d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 5, "infer");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, o_model);
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "x");
  dynq__tensor_t t;
  memset(&t, 0, sizeof(t));
  t.dtype = DYNQ_DT_F32;
  t.rank = 2;
  t.dims[0] = o_split_rows;
  t.dims[1] = o_cols;
  t.data = x;
  dynq__w_tensor(&w, &t);
  static double rtt[N], comp[N], dec[N], que[N];
  int64_t threads = 1;
  for (int i = 0; i < N + 2; i++) {
    double t0 = now_s();
    c_send(&c, w.data, w.len);
    dynq__rpc_msg_t m;
    if (c_recv(&c, &m) != 0) die("split infer failed (model? --cols?)");
    double t1 = now_s();
    int64_t cu = 0, du = 0, qu = 0;
    dynq__obj_int(dynq__obj_get(m.result, "compute_us"), &cu);
    dynq__obj_int(dynq__obj_get(m.result, "decode_us"), &du);
    dynq__obj_int(dynq__obj_get(m.result, "queue_us"), &qu);
    if (dynq__obj_int(dynq__obj_get(m.result, "threads"), &threads) != 0) threads = 1;
    dynq__rpc_free(&m);
    if (i >= 2) {
      rtt[i - 2] = (t1 - t0) * 1e6;
      comp[i - 2] = (double)cu;
      dec[i - 2] = (double)du;
      que[i - 2] = (double)qu;
    }
  }
  printf("lone [%d,%d] on %s, --workers %d: round trip p50 %.0f us, compute p50 %.0f us, "
         "split over %lld threads (daemon decode %.0f us, queue %.0f us)\n", o_split_rows,
         o_cols, o_model, workers, median(rtt, N), median(comp, N), (long long)threads,
         median(dec, N), median(que, N));
  dynq__wbuf_free(&w);
  c_close(&c);
  free(x);
  daemon_stop(&d);
}

/* ---- 3: throughput ---- */

typedef struct tharg {
  const char *sock;
  double until;
  long done;
  dynq__model_t *model;
  int lib_spin;          /* >= 0: through libdynqclient with this spin budget */
  int depth;             /* > 0: pipelined through libdynqclient, this many in flight */
  struct rusage ru;      /* pipelined: the client thread's own use, at its end */
} tharg_t;

/* One connection keeping a->depth infers in flight until a->until. */
static void *pipe_client_main(void *p) {
  tharg_t *a = p;
  dynq_client_t *cl;
  dynq_tensor_t in = x_tensor();
  if (dynq_connect(a->sock, &cl) != 0) die("dynq_connect failed");
  if (dynq_client_set_max_inflight(cl, a->depth) != 0) die("bad depth");
  for (;;) {
    int more = now_s() < a->until;
    while (more && dynq_inflight(cl) < a->depth) {
      uint32_t t;
      if (dynq_submit_infer(cl, o_model, &in, 1, NULL, &t) != 0) die("submit failed");
    }
    if (dynq_inflight(cl) == 0) break;
    uint32_t t;
    int rc = dynq_poll(cl, -1, &t);
    if (rc < 0) die("connection lost");
    if (rc == 0) continue;
    dynq_infer_result_t r;
    if (dynq_wait_infer(cl, t, &r) != 0) die(dynq_client_errmsg(cl));
    dynq_infer_result_free(&r);
    a->done++;
  }
  dynq_close(cl);
  getrusage(RUSAGE_THREAD, &a->ru);
  return NULL;
}

static void *lib_client_main(void *p) {
  tharg_t *a = p;
  dynq_client_t *cl;
  double comp;
  if (dynq_connect(a->sock, &cl) != 0) die("dynq_connect failed");
  if (dynq_client_set_spin(cl, a->lib_spin) != 0) die("dynq_client_set_spin failed");
  while (now_s() < a->until) {
    lib_infer(cl, &comp);
    a->done++;
  }
  dynq_close(cl);
  return NULL;
}

/* Closed loop on one connection until `until`: a w_infer frame out, the
 * answer framed and parsed back; returns the answers. */
static long raw_infer_loop(conn_t *c, double until) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  w_infer(&w, 3);
  long done = 0;
  while (now_s() < until) {
    c_send(c, w.data, w.len);
    dynq__rpc_msg_t m;
    if (c_recv(c, &m) != 0) die("infer failed under load");
    dynq__rpc_free(&m);
    done++;
  }
  dynq__wbuf_free(&w);
  return done;
}

static void *client_main(void *p) {
  tharg_t *a = p;
  if (a->depth > 0) return pipe_client_main(p);
  if (a->lib_spin >= 0) return lib_client_main(p);
  conn_t c;
  c_open(&c, a->sock);
  a->done += raw_infer_loop(&c, a->until);
  c_close(&c);
  return NULL;
}

/* CPU seconds (user + system) a process has used so far: all threads, or
 * (loop_only) its main thread, which is dynqd's event loop. */
static double proc_cpu_s2(pid_t pid, int loop_only) {
  char p[64];
  if (loop_only) snprintf(p, sizeof(p), "/proc/%d/task/%d/stat", (int)pid, (int)pid);
  else snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
  FILE *f = fopen(p, "r");
  if (f == NULL) return 0;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *q = strrchr(buf, ')');  /* the command name may hold spaces */
  unsigned long ut = 0, st = 0;
  if (q == NULL || sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                          &st) != 2)
    return 0;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double proc_cpu_s(pid_t pid) { return proc_cpu_s2(pid, 0); }

/* What the whole machine did during a phase (/proc/stat): the share of
 * all CPUs' time left idle, and stolen by the hypervisor for other guests.
 * A ratio between two phases means little when one of them was robbed. */
typedef struct cpu_mark {
  unsigned long long total, idle, steal;
} cpu_mark_t;

static cpu_mark_t cpu_mark(void) {
  cpu_mark_t m = {0, 0, 0};
  unsigned long long v[8] = {0};
  FILE *f = fopen("/proc/stat", "r");
  if (f != NULL && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                          &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
    for (int i = 0; i < 8; i++) m.total += v[i];
    m.idle = v[3] + v[4];
    m.steal = v[7];
  }
  if (f != NULL) fclose(f);
  return m;
}

/* "idle I%, steal S%" of the time between a and b. */
static const char *cpu_since(cpu_mark_t a, cpu_mark_t b, char *buf, size_t n) {
  double t = (double)(b.total - a.total);
  if (t <= 0) snprintf(buf, n, "idle ?, steal ?");
  else
    snprintf(buf, n, "idle %.0f%%, steal %.0f%%", 100.0 * (double)(b.idle - a.idle) / t,
             100.0 * (double)(b.steal - a.steal) / t);
  return buf;
}

static double g_cpu_per_req_us;  /* daemon CPU per request of the last throughput() */
static double g_loop_per_req_us; /* of which its loop thread */
/* pipelined: the client threads' user and system CPU and sleeps per request */
static double g_cl_user_us, g_cl_sys_us, g_cl_sleeps;

/* depth > 0: conns pipelined connections; else o_clients closed-loop ones. */
static double throughput_n(const daemon_t *d, int lib_spin, int clients, int depth) {
  pthread_t *th = calloc((size_t)clients, sizeof(*th));
  tharg_t *a = calloc((size_t)clients, sizeof(*a));
  double cpu0 = proc_cpu_s(d->pid), loop0 = proc_cpu_s2(d->pid, 1);
  double t0 = now_s(), until = t0 + o_seconds;
  for (int i = 0; i < clients; i++) {
    a[i].sock = d->sock;
    a[i].until = until;
    a[i].lib_spin = lib_spin;
    a[i].depth = depth;
    pthread_create(&th[i], NULL, client_main, &a[i]);
  }
  long total = 0;
  double cu = 0, cs = 0, cw = 0;
  for (int i = 0; i < clients; i++) {
    pthread_join(th[i], NULL);
    total += a[i].done;
    cu += (double)a[i].ru.ru_utime.tv_sec * 1e6 + (double)a[i].ru.ru_utime.tv_usec;
    cs += (double)a[i].ru.ru_stime.tv_sec * 1e6 + (double)a[i].ru.ru_stime.tv_usec;
    cw += (double)a[i].ru.ru_nvcsw;
  }
  g_cl_user_us = total > 0 ? cu / (double)total : 0;
  g_cl_sys_us = total > 0 ? cs / (double)total : 0;
  g_cl_sleeps = total > 0 ? cw / (double)total : 0;
  double el = now_s() - t0;
  g_cpu_per_req_us = total > 0 ? (proc_cpu_s(d->pid) - cpu0) * 1e6 / (double)total : 0;
  g_loop_per_req_us =
      total > 0 ? (proc_cpu_s2(d->pid, 1) - loop0) * 1e6 / (double)total : 0;
  free(th);
  free(a);
  return (double)total / el;
}

static double throughput(const daemon_t *d, int lib_spin) {
  return throughput_n(d, lib_spin, o_clients, 0);
}

static void *engine_main(void *p) {
  tharg_t *a = p;
  dynq__tensor_t in;
  memset(&in, 0, sizeof(in));
  in.dtype = DYNQ_DT_F32;
  in.rank = 2;
  in.dims[0] = a->depth > 0 ? a->depth : 1;  /* rows of one run */
  in.dims[1] = 768;
  in.data = a->depth > 0 ? g_xs : g_x;
  dynq__run_opts_t opts = {DYNQ_PRECISION_INT8, NULL, 1};
  while (now_s() < a->until) {
    dynq__tensor_t out[4];
    memset(out, 0, sizeof(out));
    char err[128];
    if (dynq__model_run(a->model, &opts, &in, out, err, sizeof(err)) != 0) die(err);
    dynq__tensor_clear(&out[0]);
    a->done += in.dims[0];
  }
  return NULL;
}

/* Rows per second of the engine in-process on o_workers threads, each
 * running batches of `rows` (0: single requests); g_cpu_per_req_us gets
 * the CPU per row. */
static double engine_throughput_rows(int rows) {
  char path[4096], err[256];
  snprintf(path, sizeof(path), "%s/%s.dynq", o_models, o_model);
  dynq__model_t *m;
  if (dynq__model_open(path, &m, err, sizeof(err)) != 0) die(err);
  pthread_t th[64];
  tharg_t a[64];
  memset(a, 0, sizeof(a));
  struct timespec c0, c1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
  double t0 = now_s();
  for (int i = 0; i < o_workers; i++) {
    a[i].until = t0 + o_seconds;
    a[i].model = m;
    a[i].depth = rows;
    pthread_create(&th[i], NULL, engine_main, &a[i]);
  }
  long total = 0;
  for (int i = 0; i < o_workers; i++) {
    pthread_join(th[i], NULL);
    total += a[i].done;
  }
  double el = now_s() - t0;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
  g_cpu_per_req_us = total > 0 ? ((double)(c1.tv_sec - c0.tv_sec) * 1e6 +
                                  (double)(c1.tv_nsec - c0.tv_nsec) / 1e3) / (double)total
                               : 0;
  dynq__model_unref(m);
  return (double)total / el;
}

static double engine_throughput(void) { return engine_throughput_rows(0); }

/* ---- 3c: the socket's own limit ----
 *
 * What 64 synchronous clients could reach if dynqd cost nothing: N pairs of
 * threads over AF_UNIX stream socketpairs, each client writing a message
 * the size of the infer request and reading one the size of its answer,
 * each echo thread reading the one and writing the other.  Same machine,
 * same run, so the dynqd figure is read as a fraction of it. */

typedef struct bare_arg {
  int fd;
  size_t req, resp;
  double until;
  long done;
} bare_arg_t;

static int full_io(int fd, uint8_t *p, size_t n, int wr) {
  while (n > 0) {
    if (!wr) wait_readable(fd);
    ssize_t r = wr ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static void *bare_echo_main(void *p) {
  bare_arg_t *a = p;
  size_t big = a->req > a->resp ? a->req : a->resp;
  uint8_t *buf = calloc(1, big);
  while (buf && full_io(a->fd, buf, a->req, 0) == 0 && full_io(a->fd, buf, a->resp, 1) == 0) {
  }
  free(buf);
  return NULL;
}

static void *bare_client_main(void *p) {
  bare_arg_t *a = p;
  size_t big = a->req > a->resp ? a->req : a->resp;
  uint8_t *buf = calloc(1, big);
  if (buf == NULL) die("out of memory");
  while (now_s() < a->until) {
    if (full_io(a->fd, buf, a->req, 1) != 0 || full_io(a->fd, buf, a->resp, 0) != 0)
      die("bare ping-pong: socket failed");
    a->done++;
  }
  free(buf);
  shutdown(a->fd, SHUT_WR);  /* the echo thread sees EOF and ends */
  return NULL;
}

/* CPU per round trip of the last bare_pingpong, both ends (us). */
static double g_bare_cpu_us;

static double bare_pingpong(int pairs, size_t req, size_t resp) {
  pthread_t *th = calloc((size_t)pairs * 2, sizeof(*th));
  bare_arg_t *a = calloc((size_t)pairs * 2, sizeof(*a));
  int *fds = calloc((size_t)pairs * 2, sizeof(*fds));
  if (th == NULL || a == NULL || fds == NULL) die("out of memory");
  struct timespec c0, c1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
  double t0 = now_s(), until = t0 + o_seconds;
  for (int i = 0; i < pairs; i++) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair failed");
    fds[2 * i] = sv[0];
    fds[2 * i + 1] = sv[1];
    a[2 * i] = (bare_arg_t){sv[0], req, resp, until, 0};
    a[2 * i + 1] = (bare_arg_t){sv[1], req, resp, until, 0};
    pthread_create(&th[2 * i + 1], NULL, bare_echo_main, &a[2 * i + 1]);
    pthread_create(&th[2 * i], NULL, bare_client_main, &a[2 * i]);
  }
  long total = 0;
  for (int i = 0; i < pairs; i++) {
    pthread_join(th[2 * i], NULL);
    total += a[2 * i].done;
  }
  double el = now_s() - t0;
  for (int i = 0; i < pairs; i++) pthread_join(th[2 * i + 1], NULL);
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
  g_bare_cpu_us = total > 0 ? ((double)(c1.tv_sec - c0.tv_sec) * 1e6 +
                               (double)(c1.tv_nsec - c0.tv_nsec) / 1e3) / (double)total
                            : 0;
  for (int i = 0; i < 2 * pairs; i++) close(fds[i]);
  free(th);
  free(a);
  free(fds);
  return (double)total / el;
}

/* ---- 3d: the socket's own limit when pipelined ----
 *
 * What the pipelined clients could reach if dynqd cost nothing but moving
 * the bytes: C socketpairs, each client keeping D requests of the infer
 * request's size in flight (one send per burst, as libdynqclient does),
 * each echo thread answering every whole request it has read with one of
 * the answer's size, a burst in one send.  The CPU both ends spend per
 * round trip, plus the engine's own CPU per request at the coalesced batch
 * dynqd runs, is what one request needs at least: the ceiling of the
 * pipelined figure on the same cores. */

typedef struct bare_pipe {
  int fd, depth;
  size_t req, resp;
  double until;
  long done;
} bare_pipe_t;

/* Bytes read into a stream of n-byte messages: the whole ones since the
 * last call (*part carries the bytes of an unfinished one). */
static long whole_msgs(size_t got, size_t n, size_t *part) {
  *part += got;
  long k = (long)(*part / n);
  *part %= n;
  return k;
}

static void *bare_pipe_echo(void *p) {
  bare_pipe_t *a = p;
  size_t cap = (size_t)a->depth * (a->req > a->resp ? a->req : a->resp) + 65536;
  uint8_t *in = malloc(cap), *out = calloc((size_t)a->depth, a->resp);
  size_t part = 0;
  while (in != NULL && out != NULL) {
    wait_readable(a->fd);
    ssize_t r = recv(a->fd, in, cap, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    long k = whole_msgs((size_t)r, a->req, &part);
    while (k > 0) {  /* a client never has more than depth in flight */
      long m = k < a->depth ? k : a->depth;
      if (full_io(a->fd, out, (size_t)m * a->resp, 1) != 0) goto out;
      k -= m;
    }
  }
out:
  free(in);
  free(out);
  return NULL;
}

static void *bare_pipe_client(void *p) {
  bare_pipe_t *a = p;
  size_t cap = (size_t)a->depth * (a->req > a->resp ? a->req : a->resp) + 65536;
  uint8_t *in = malloc(cap), *out = calloc((size_t)a->depth, a->req);
  if (in == NULL || out == NULL) die("out of memory");
  long inflight = a->depth;
  size_t part = 0;
  if (full_io(a->fd, out, (size_t)a->depth * a->req, 1) != 0) die("bare pipeline: send failed");
  while (inflight > 0) {
    wait_readable(a->fd);
    ssize_t r = recv(a->fd, in, cap, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die("bare pipeline: socket failed");
    long k = whole_msgs((size_t)r, a->resp, &part);
    a->done += k;
    inflight -= k;
    if (k > 0 && now_s() < a->until) {
      if (full_io(a->fd, out, (size_t)k * a->req, 1) != 0) die("bare pipeline: send failed");
      inflight += k;
    }
  }
  free(in);
  free(out);
  shutdown(a->fd, SHUT_WR);
  return NULL;
}

/* Round trips per second; *ret_cpu_us: this process's CPU per round trip
 * (both ends run here). */
static double bare_pipelined(int conns, int depth, size_t req, size_t resp, double *ret_cpu_us) {
  pthread_t th[2 * 256];
  bare_pipe_t a[2 * 256];
  int fds[2 * 256];
  struct timespec c0, c1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
  double t0 = now_s(), until = t0 + o_seconds;
  for (int i = 0; i < conns; i++) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair failed");
    fds[2 * i] = sv[0];
    fds[2 * i + 1] = sv[1];
    a[2 * i] = (bare_pipe_t){sv[0], depth, req, resp, until, 0};
    a[2 * i + 1] = (bare_pipe_t){sv[1], depth, req, resp, until, 0};
    pthread_create(&th[2 * i + 1], NULL, bare_pipe_echo, &a[2 * i + 1]);
    pthread_create(&th[2 * i], NULL, bare_pipe_client, &a[2 * i]);
  }
  long total = 0;
  for (int i = 0; i < conns; i++) {
    pthread_join(th[2 * i], NULL);
    total += a[2 * i].done;
  }
  double el = now_s() - t0;
  for (int i = 0; i < conns; i++) pthread_join(th[2 * i + 1], NULL);
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
  for (int i = 0; i < 2 * conns; i++) close(fds[i]);
  *ret_cpu_us = total > 0 ? ((double)(c1.tv_sec - c0.tv_sec) * 1e6 +
                             (double)(c1.tv_nsec - c0.tv_nsec) / 1e3) / (double)total
                          : 0;
  return (double)total / el;
}

/* ---- 3e: a minimal server ----
 *
 * What a server with no protocol of its own reaches against 64 synchronous
 * clients (one socketpair each): T threads, each with one epoll set over
 * its share of the connections.  An iteration reads every whole request
 * epoll_wait reported, runs the real engine in-process once on that many
 * rows (dynqd's coalescing; at most --pipeline's depth rows a run; the
 * rows are g_xs, the requests' bytes are not parsed), and writes each
 * client dynqd's own answer frame.  The clients are either the bare
 * pairs' (bytes only) or client_main's (an encoded request out, the
 * answer framed and parsed back, as against dynqd).  No decoding, no
 * libuv, no hand-offs between threads: the sockets, the wake-ups and the
 * compute, scheduled the way an event-loop server must.  dynqd's sync
 * figure is read against this as well as against the bare pairs. */

typedef struct srv_conn {
  int fd;
  size_t got;  /* bytes of the request being read */
} srv_conn_t;

static double g_srv_user_us, g_srv_sys_us;  /* the server threads' CPU per request */
static int g_served_msgpack;  /* the clients are client_main's raw msgpack ones */

typedef struct srv_arg {
  srv_conn_t *c;
  int n;
  size_t req, resp;
  dynq__model_t *model;
  long runs, rows;
  struct rusage ru;  /* the server thread's, at its end */
} srv_arg_t;

/* client_main's loop over a socketpair: a w_infer frame out, an answer
 * parsed back (what dynqd's raw clients pay on their side). */
static void *mp_client_main(void *p) {
  bare_arg_t *a = p;
  conn_t c = {a->fd, {0}};
  dynq__framer_init(&c.fr, NULL);
  a->done = raw_infer_loop(&c, a->until);
  dynq__framer_free(&c.fr);
  shutdown(a->fd, SHUT_WR);
  return NULL;
}

static void *srv_main(void *p) {
  srv_arg_t *a = p;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  size_t big = a->req > a->resp ? a->req : a->resp;
  uint8_t *buf = calloc(1, big);
  int *ready = calloc((size_t)a->n, sizeof(*ready));
  if (ep < 0 || buf == NULL || ready == NULL) die("minimal server: out of memory");
  for (int i = 0; i < a->n; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, a->c[i].fd, &ev) != 0) die("epoll_ctl failed");
  }
  struct epoll_event evs[256];
  int open = a->n;
  while (open > 0) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("epoll_wait failed");
    int nr = 0;
    for (int e = 0; e < n; e++) {
      srv_conn_t *c = &a->c[evs[e].data.u32];
      ssize_t r = recv(c->fd, buf, a->req - c->got, MSG_DONTWAIT);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {  /* the client is done */
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        open--;
        continue;
      }
      c->got += (size_t)r;
      if (c->got == a->req) {
        c->got = 0;
        ready[nr++] = (int)evs[e].data.u32;
      }
    }
    for (int i = 0; i < nr; i += o_pipe_depth) {
      int k = nr - i < o_pipe_depth ? nr - i : o_pipe_depth;
      {
        dynq__tensor_t in, out[4];
        memset(&in, 0, sizeof(in));
        memset(out, 0, sizeof(out));
        in.dtype = DYNQ_DT_F32;
        in.rank = 2;
        in.dims[0] = k;
        in.dims[1] = 768;
        in.data = g_xs;
        dynq__run_opts_t opts = {DYNQ_PRECISION_INT8, NULL, 1};
        char err[128];
        if (dynq__model_run(a->model, &opts, &in, out, err, sizeof(err)) != 0) die(err);
        dynq__tensor_clear(&out[0]);
        a->runs++;
        a->rows += k;
      }
      for (int j = i; j < i + k; j++)
        if (full_io(a->c[ready[j]].fd, g_answer, a->resp, 1) != 0)
          die("minimal server: send failed");
    }
  }
  getrusage(RUSAGE_THREAD, &a->ru);
  free(ready);
  free(buf);
  close(ep);
  return NULL;
}

/* Round trips per second of the clients against `threads` server threads;
 * *ret_cpu_us: this process's CPU per round trip (both ends);
 * *ret_rows: mean rows per engine run. */
static double bare_served(int clients, int threads, size_t req, size_t resp,
                          double *ret_cpu_us, double *ret_rows) {
  pthread_t *th = calloc((size_t)clients + (size_t)threads, sizeof(*th));
  bare_arg_t *a = calloc((size_t)clients, sizeof(*a));
  srv_conn_t *sc = calloc((size_t)clients, sizeof(*sc));
  srv_arg_t sa[64];
  int *fds = calloc((size_t)clients, sizeof(*fds));
  if (th == NULL || a == NULL || sc == NULL || fds == NULL || threads < 1 || threads > 64)
    die("minimal server: out of memory");
  dynq__model_t *m;
  char path[4096], err[256];
  snprintf(path, sizeof(path), "%s/%s.dynq", o_models, o_model);
  if (dynq__model_open(path, &m, err, sizeof(err)) != 0) die(err);
  for (int i = 0; i < clients; i++) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair failed");
    fds[i] = sv[0];
    sc[i].fd = sv[1];
  }
  struct timespec c0, c1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
  double t0 = now_s(), until = t0 + o_seconds;
  for (int t = 0; t < threads; t++) {
    int lo = clients * t / threads, hi = clients * (t + 1) / threads;
    sa[t] = (srv_arg_t){sc + lo, hi - lo, req, resp, m, 0, 0};
    pthread_create(&th[clients + t], NULL, srv_main, &sa[t]);
  }
  for (int i = 0; i < clients; i++) {
    a[i] = (bare_arg_t){fds[i], req, resp, until, 0};
    pthread_create(&th[i], NULL, g_served_msgpack ? mp_client_main : bare_client_main, &a[i]);
  }
  long total = 0, runs = 0, rows = 0;
  double su = 0, ss = 0;
  for (int i = 0; i < clients; i++) {
    pthread_join(th[i], NULL);
    total += a[i].done;
  }
  double el = now_s() - t0;
  for (int t = 0; t < threads; t++) {
    pthread_join(th[clients + t], NULL);
    runs += sa[t].runs;
    rows += sa[t].rows;
    su += (double)sa[t].ru.ru_utime.tv_sec * 1e6 + (double)sa[t].ru.ru_utime.tv_usec;
    ss += (double)sa[t].ru.ru_stime.tv_sec * 1e6 + (double)sa[t].ru.ru_stime.tv_usec;
  }
  g_srv_user_us = total > 0 ? su / (double)total : 0;
  g_srv_sys_us = total > 0 ? ss / (double)total : 0;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
  *ret_cpu_us = total > 0 ? ((double)(c1.tv_sec - c0.tv_sec) * 1e6 +
                             (double)(c1.tv_nsec - c0.tv_nsec) / 1e3) / (double)total
                          : 0;
  *ret_rows = runs > 0 ? (double)rows / (double)runs : 0;
  for (int i = 0; i < clients; i++) {
    close(fds[i]);
    close(sc[i].fd);
  }
  dynq__model_unref(m);
  free(th);
  free(a);
  free(sc);
  free(fds);
  return (double)total / el;
}

/* Sizes of the infer request and of its answer, as the throughput clients
 * send and receive them. */
static void infer_sizes(const daemon_t *d, size_t *ret_req, size_t *ret_resp) {
  conn_t c;
  c_open(&c, d->sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  w_infer(&w, 3);
  c_send(&c, w.data, w.len);
  dynq__rpc_msg_t m;
  if (c_recv(&c, &m) != 0) die("infer failed");
  size_t flen;
  const uint8_t *fr = dynq__rpc_frame(&m, &flen);
  free(g_answer);
  g_answer = malloc(flen);
  if (g_answer == NULL) die("out of memory");
  memcpy(g_answer, fr, flen);
  *ret_req = w.len;
  *ret_resp = flen;
  dynq__rpc_free(&m);
  dynq__wbuf_free(&w);
  c_close(&c);
}

/* ---- 4: memory ---- */

static void rss_pss(pid_t pid, long *ret_rss, long *ret_pss) {
  char p[64], line[256];
  snprintf(p, sizeof(p), "/proc/%d/smaps_rollup", (int)pid);
  FILE *f = fopen(p, "r");
  *ret_rss = *ret_pss = -1;
  if (f == NULL) return;
  while (fgets(line, sizeof(line), f)) {
    sscanf(line, "Rss: %ld kB", ret_rss);
    sscanf(line, "Pss: %ld kB", ret_pss);
  }
  fclose(f);
}

static void warm(const daemon_t *d) {
  conn_t c;
  c_open(&c, d->sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  w_infer(&w, 4);
  c_send(&c, w.data, w.len);
  dynq__rpc_msg_t m;
  if (c_recv(&c, &m) != 0) die("warm-up infer failed");
  dynq__rpc_free(&m);
  dynq__wbuf_free(&w);
  c_close(&c);
}

/* --sync-only: what the synchronous clients could reach on these cores if
 * dynqd cost nothing beyond the bare round trip and the engine's compute:
 * each request needs at least the bare pair's CPU per round trip (both
 * ends) plus the engine's CPU per request, at batch 1 and at the best a
 * merged run gives (rows of --pipeline's depth).  Where the compute is
 * large next to the round trip (a CPU without VNNI), the target's 60 % of
 * the bare pairs can lie beyond this. */
static void sync_ceiling(double t_bare, double cpu_bare, double t_dynqd) {
  engine_throughput();
  double cpu1 = g_cpu_per_req_us;
  engine_throughput_rows(o_pipe_depth);
  double cpun = g_cpu_per_req_us;
  double c1 = (double)o_workers * 1e6 / (cpu_bare + cpu1);
  double cn = (double)o_workers * 1e6 / (cpu_bare + cpun);
  printf("sync ceiling on %d cores: bare CPU %.2f us per round trip + engine CPU %.2f us/run at "
         "batch 1 = %.0f req/s (%.0f%% of the bare pairs), + %.2f us/row at %d rows = %.0f req/s "
         "(%.0f%%); dynqd reaches %.0f%% / %.0f%% of them\n",
         o_workers, cpu_bare, cpu1, c1, 100.0 * c1 / t_bare, cpun, o_pipe_depth, cn,
         100.0 * cn / t_bare, 100.0 * t_dynqd / c1, 100.0 * t_dynqd / cn);
}

/* --pipeline-only: the pipelined clients, the engine, and the ceiling the
 * socket and the engine leave (3d). */
static void pipeline_report(daemon_t *d, size_t req_len, size_t resp_len) {
  double t_pipe = throughput_n(d, 0, o_pipe_conns, o_pipe_depth);
  double cpu_pipe = g_cpu_per_req_us, loop_pipe = g_loop_per_req_us;
  daemon_stop(d);
  printf("throughput, pipelined %d conns x %d in flight (libdynqclient): %.0f req/s (dynqd CPU "
         "%.1f us/req, its loop thread %.1f; client threads %.2f user + %.2f sys us/req, %.3f "
         "sleeps/req)\n", o_pipe_conns, o_pipe_depth, t_pipe, cpu_pipe, loop_pipe, g_cl_user_us,
         g_cl_sys_us, g_cl_sleeps);
  double t_eng = engine_throughput();
  double cpu_eng = g_cpu_per_req_us;
  double t_rows = engine_throughput_rows(o_pipe_depth);
  double cpu_rows = g_cpu_per_req_us;
  double cpu_bare;
  double t_bare = bare_pipelined(o_pipe_conns, o_pipe_depth, req_len, resp_len, &cpu_bare);
  double ceil = (double)o_workers * 1e6 / (cpu_bare + cpu_rows);
  printf("engine in-process, %d threads, batch 1: %.0f runs/s, CPU %.2f us/run; batches of %d "
         "rows: %.0f rows/s, CPU %.2f us/row\n", o_workers, t_eng, cpu_eng, o_pipe_depth,
         t_rows, cpu_rows);
  printf("bare pipelined echo, %d socketpairs x %d in flight, %zu/%zu bytes, readers %s: "
         "%.0f round trips/s, CPU %.2f us each (both ends)\n", o_pipe_conns, o_pipe_depth,
         req_len, resp_len, o_blocking_recv ? "block in recv" : "wait in poll", t_bare,
         cpu_bare);
  printf("pipelined: %.0f%% of the engine's batch-1 rate; ceiling on %d cores (bare socket "
         "CPU + engine CPU per row at %d rows) %.0f req/s = %.0f%% of it; dynqd + client "
         "reach %.0f%% of the ceiling\n", 100.0 * t_pipe / t_eng, o_workers, o_pipe_depth, ceil,
         100.0 * ceil / t_eng, 100.0 * t_pipe / ceil);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--dynqd") == 0 && v) o_dynqd = argv[++i];
    else if (strcmp(argv[i], "--models") == 0 && v) o_models = argv[++i];
    else if (strcmp(argv[i], "--model") == 0 && v) o_model = argv[++i];
    else if (strcmp(argv[i], "--seconds") == 0 && v) o_seconds = atof(argv[++i]);
    else if (strcmp(argv[i], "--clients") == 0 && v) o_clients = atoi(argv[++i]);
    else if (strcmp(argv[i], "--workers") == 0 && v) o_workers = atoi(argv[++i]);
    else if (strcmp(argv[i], "--split") == 0 && v) o_split_rows = atoi(argv[++i]);
    else if (strcmp(argv[i], "--client-spin") == 0 && v) o_client_spin = atoi(argv[++i]);
    else if (strcmp(argv[i], "--latency-only") == 0) o_latency_only = 1;
    else if (strcmp(argv[i], "--throughput-only") == 0) o_throughput_only = 1;
    else if (strcmp(argv[i], "--pipeline-only") == 0) o_pipeline_only = o_throughput_only = 1;
    else if (strcmp(argv[i], "--sync-only") == 0) o_sync_only = o_throughput_only = 1;
    else if (strcmp(argv[i], "--blocking-recv") == 0) o_blocking_recv = 1;
    else if (strcmp(argv[i], "--pipeline") == 0 && v) {
      if (sscanf(argv[++i], "%dx%d", &o_pipe_conns, &o_pipe_depth) != 2 || o_pipe_conns < 1 ||
          o_pipe_conns > 256 || o_pipe_depth < 1 || o_pipe_depth > DYNQ_CLIENT_INFLIGHT_MAX)
        die("--pipeline must be CONNSxDEPTH (e.g. 4x32)");
    }
    else if (strcmp(argv[i], "--cols") == 0 && v) o_cols = atoi(argv[++i]);
    else if (strcmp(argv[i], "--daemon-arg") == 0 && v && o_n_dargs < 16)
      o_dargs[o_n_dargs++] = argv[++i];
    else {
      fprintf(stderr, "usage: ipc-bench --dynqd PATH --models DIR [--model NAME] "
                      "[--seconds S] [--clients N] [--workers W] [--daemon-arg ARG]...\n"
                      "                 [--client-spin US] [--latency-only | --throughput-only | --pipeline-only\n"
                      "                  | --sync-only]\n"
                      "                 [--blocking-recv]\n"
                      "                 [--pipeline CxD]\n"
                      "       ipc-bench ... --model NAME --split ROWS [--cols K]\n");
      return 2;
    }
  }
  if (o_dynqd == NULL || o_models == NULL) die("--dynqd and --models are required");
  if (o_client_spin < 0 || o_client_spin > DYNQ_CLIENT_SPIN_MAX_US) die("bad --client-spin");
  if (o_seconds <= 0 || o_clients < 1 || o_clients > 1024 || o_workers < 1 || o_workers > 64)
    die("bad --seconds/--clients/--workers");
  signal(SIGPIPE, SIG_IGN);
  for (int i = 0; i < 768; i++) g_x[i] = (float)((i * 7919) % 97 - 48) / 48.0f;
  g_xs = malloc((size_t)o_pipe_depth * sizeof(g_x));
  if (g_xs == NULL) die("out of memory");
  for (int r = 0; r < o_pipe_depth; r++) memcpy(g_xs + (size_t)r * 768, g_x, sizeof(g_x));
  const char *kmsg;
  if (dynq__kernels_init(getenv("DYNQ_KERNEL"), &kmsg) != 0) die("no kernel");
  printf("model %s/%s.dynq, %d workers, kernel %s\n", o_models, o_model, o_workers,
         dynq__kernel()->name);
  if (o_split_rows > 0) {
    if (o_split_rows > 65536 || o_cols < 1 || o_cols > 65536) die("bad --split/--cols");
    split_run(1);
    split_run(o_workers);
    return 0;
  }

  daemon_t d;
  daemon_start(&d, "a", NULL);
  if (!o_throughput_only) {
    latency(&d);
    sustained_ping(&d);
  } else {
    warm(&d);
  }
  if (o_latency_only) {
    daemon_stop(&d);
    return 0;
  }
  size_t req_len, resp_len;
  infer_sizes(&d, &req_len, &resp_len);
  /* the bare pairs on both sides of the daemon figure: the load on a
   * shared machine drifts, the mean of the two is what it was around it */
  if (o_pipeline_only) {
    pipeline_report(&d, req_len, resp_len);
    return 0;
  }
  if (o_sync_only) {  /* dynqd first, at a fixed offset (for profilers), then the pairs */
    char m1[48], m2[48], m3[48], m4[48];
    cpu_mark_t k0 = cpu_mark();
    double t = throughput(&d, -1), cpu = g_cpu_per_req_us, loop = g_loop_per_req_us;
    cpu_mark_t k1 = cpu_mark();
    double tl = throughput(&d, 0), cpul = g_cpu_per_req_us;
    cpu_mark_t k2 = cpu_mark();
    daemon_stop(&d);
    cpu_mark_t k3 = cpu_mark();
    double tb = bare_pingpong(o_clients, req_len, resp_len), cpu_bare = g_bare_cpu_us;
    cpu_mark_t k4 = cpu_mark();
    printf("throughput, %d clients, batching off: %.0f req/s (dynqd CPU %.1f us/req, its loop "
           "thread %.1f; machine %s); bare ping-pong, readers %s: %.0f round trips/s (machine "
           "%s); %.0f%% of it\n",
           o_clients, t, cpu, loop, cpu_since(k0, k1, m1, sizeof m1),
           o_blocking_recv ? "block in recv" : "wait in poll", tb, cpu_since(k3, k4, m2, sizeof m2),
           100.0 * t / tb);
    printf("throughput, %d libdynqclient clients (dynq_infer, spin 0): %.0f req/s (dynqd CPU %.1f "
           "us/req; machine %s); %.0f%% of the bare ping-pong\n", o_clients, tl, cpul,
           cpu_since(k1, k2, m3, sizeof m3), 100.0 * tl / tb);
    sync_ceiling(tb, cpu_bare, t);
    for (int k = 0; k < 3; k++) {
      int th = k == 0 ? 1 : o_workers;
      g_served_msgpack = k == 2;
      double cpu_s, rows_s;
      cpu_mark_t s0 = cpu_mark();
      double ts = bare_served(o_clients, th, req_len, resp_len, &cpu_s, &rows_s);
      cpu_mark_t s1 = cpu_mark();
      printf("minimal server, %d thread%s, epoll + the engine on each wait's requests (%.1f rows "
             "a run, at most %d), %s clients: %.0f req/s, CPU %.2f us each (both ends; the "
             "server %.2f user + %.2f sys; machine %s) = %.0f%% of the bare pairs; dynqd reaches "
             "%.0f%% of it\n", th, th > 1 ? "s" : "", rows_s, o_pipe_depth,
             g_served_msgpack ? "msgpack" : "bare", ts, cpu_s, g_srv_user_us, g_srv_sys_us,
             cpu_since(s0, s1, m4, sizeof m4), 100.0 * ts / tb, 100.0 * t / ts);
    }
    return 0;
  }
  double t_bare0 = bare_pingpong(o_clients, req_len, resp_len);
  double t_off = throughput(&d, -1);
  double cpu_off = g_cpu_per_req_us, loop_off = g_loop_per_req_us;
  double t_bare1 = bare_pingpong(o_clients, req_len, resp_len);
  double t_bare = (t_bare0 + t_bare1) / 2;
  printf("bare socketpair ping-pong, %d pairs, %zu/%zu bytes, readers %s: %.0f round trips/s "
         "(%.0f, %.0f)\n", o_clients, req_len, resp_len,
         o_blocking_recv ? "block in recv" : "wait in poll", t_bare, t_bare0, t_bare1);
  printf("throughput, %d clients, batching off: %.0f req/s (dynqd CPU %.1f us/req, its loop "
         "thread %.1f; %.0f%% of the bare ping-pong)\n", o_clients, t_off, cpu_off, loop_off,
         100.0 * t_off / t_bare);
  for (int k = 0; k < (o_throughput_only ? 0 : 2); k++) {
    int sp = k == 0 ? 0 : o_client_spin;
    double t = throughput(&d, sp);
    printf("throughput, %d libdynqclient clients (spin %d us), batching off: %.0f req/s "
           "(dynqd CPU %.1f us/req)\n", o_clients, sp, t, g_cpu_per_req_us);
  }
  double t_pipe = throughput_n(&d, 0, o_pipe_conns, o_pipe_depth);
  printf("throughput, pipelined %d conns x %d in flight (libdynqclient), batching off: "
         "%.0f req/s (dynqd CPU %.1f us/req, its loop thread %.1f)\n", o_pipe_conns,
         o_pipe_depth, t_pipe, g_cpu_per_req_us, g_loop_per_req_us);
  daemon_stop(&d);

  double t_on = 0, cpu_on = 0;
  if (!o_throughput_only) {
    const char *batch[] = {"--batch-max", "16", "--batch-delay", "200", NULL};
    daemon_start(&d, "b", batch);
    t_on = throughput(&d, -1);
    cpu_on = g_cpu_per_req_us;
    printf("throughput, %d clients, batching on (max 16, 200 us): %.0f req/s (dynqd CPU %.1f "
           "us/req)\n", o_clients, t_on, cpu_on);
    daemon_stop(&d);
  }

  double t_eng = engine_throughput();
  printf("engine in-process, %d threads: %.0f runs/s, CPU %.1f us/run (dynqd off/on: %.0f%% "
         "/ %.0f%% of its rate, %.0f%% / %.0f%% of its CPU efficiency; pipelined %dx%d: "
         "%.0f%% of its rate)\n",
         o_workers, t_eng, g_cpu_per_req_us, 100.0 * t_off / t_eng, 100.0 * t_on / t_eng,
         100.0 * g_cpu_per_req_us / cpu_off,
         cpu_on > 0 ? 100.0 * g_cpu_per_req_us / cpu_on : 0.0, o_pipe_conns,
         o_pipe_depth, 100.0 * t_pipe / t_eng);
  if (o_throughput_only) return 0;

  daemon_t d1, d2;
  daemon_start(&d1, "m1", NULL);
  daemon_start(&d2, "m2", NULL);
  warm(&d1);
  warm(&d2);
  long r1, p1, r2, p2;
  rss_pss(d1.pid, &r1, &p1);
  rss_pss(d2.pid, &r2, &p2);
  struct stat st;
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s.dynq", o_models, o_model);
  long fkb = stat(path, &st) == 0 ? (long)(st.st_size / 1024) : -1;
  printf("two dynqd serving the same %ld kB model: RSS %ld + %ld kB, PSS %ld + %ld kB\n", fkb,
         r1, r2, p1, p2);
  daemon_stop(&d1);
  daemon_stop(&d2);
  return 0;
}
