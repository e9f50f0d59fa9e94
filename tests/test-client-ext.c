/*
 * libdynqclient and dynqctl for the production methods and
 * streaming: the audio reader (libsndfile, libsamplerate), the Prometheus
 * and JSON renderings
 * of a canned stats reply, every new call against a scripted fake server
 * that logs each request (method + params as JSON, plus any fd received
 * with SCM_RIGHTS), dynqctl stream/stats/health/load against that fake,
 * and end to end against a real dynqd when it serves these methods and
 * tests/fixtures/stateful.onnx exists (skipped with a message otherwise).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../client/client-internal.h"
#include "../client/dynqctl-io.h"
#include "dynq/dynqclient.h"
#include "proto/proto-tensor.h"
#include "testutil.h"

/* ---- a byte builder for WAV images ---- */

typedef struct bb {
  uint8_t b[4096];
  size_t n;
} bb_t;

static void bb_id(bb_t *b, const char *id) {
  memcpy(b->b + b->n, id, 4);
  b->n += 4;
}
static void bb_u16(bb_t *b, uint16_t v) {
  b->b[b->n++] = (uint8_t)v;
  b->b[b->n++] = (uint8_t)(v >> 8);
}
static void bb_u32(bb_t *b, uint32_t v) {
  bb_u16(b, (uint16_t)v);
  bb_u16(b, (uint16_t)(v >> 16));
}
static void set_u32(bb_t *b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; i++) b->b[off + i] = (uint8_t)(v >> (8 * i));
}

/* The canonical 44-byte-header layout: fmt at 12 (tag 20, channels 22,
 * rate 24, byte rate 28, align 32, bits 34), data id at 36, size 40,
 * samples from 44. */
static void make_wav(bb_t *b, uint32_t rate, const int16_t *s, size_t n) {
  b->n = 0;
  bb_id(b, "RIFF");
  bb_u32(b, (uint32_t)(36 + 2 * n));
  bb_id(b, "WAVE");
  bb_id(b, "fmt ");
  bb_u32(b, 16);
  bb_u16(b, 1);
  bb_u16(b, 1);
  bb_u32(b, rate);
  bb_u32(b, rate * 2);
  bb_u16(b, 2);
  bb_u16(b, 16);
  bb_id(b, "data");
  bb_u32(b, (uint32_t)(2 * n));
  for (size_t i = 0; i < n; i++) bb_u16(b, (uint16_t)s[i]);
}

static const int16_t samples5[5] = { 0, 1, -1, 32767, -32768 };

/* A canonical WAV of any PCM/float layout: tag 1 (integer PCM) or 3 (IEEE
 * float), `frames` frames of `data` (already interleaved, little-endian). */
static void make_wav_fmt(bb_t *b, uint16_t tag, uint16_t channels, uint32_t rate, uint16_t bits,
                         const void *data, size_t frames) {
  uint32_t align = (uint32_t)channels * bits / 8, bytes = (uint32_t)(frames * align);
  ck_assert_uint_le(44 + bytes, sizeof(b->b));
  b->n = 0;
  bb_id(b, "RIFF");
  bb_u32(b, 36 + bytes);
  bb_id(b, "WAVE");
  bb_id(b, "fmt ");
  bb_u32(b, 16);
  bb_u16(b, tag);
  bb_u16(b, channels);
  bb_u32(b, rate);
  bb_u32(b, rate * align);
  bb_u16(b, (uint16_t)align);
  bb_u16(b, bits);
  bb_id(b, "data");
  bb_u32(b, bytes);
  memcpy(b->b + b->n, data, bytes);
  b->n += bytes;
}

static int decode(const bb_t *b, uint32_t rate, dynq__audio_t *a, char *err, size_t errlen) {
  memset(a, 0, sizeof(*a));
  return dynq__audio_decode(b->b, b->n, rate, a, err, errlen);
}

/* The encodings a recorder or converter writes all come out as the same
 * mono floats: int16 / 32768, float as is, channels averaged. */
START_TEST(audio_decodes_layouts) {
  dynq__audio_t a;
  char err[512] = "";
  bb_t b;

  make_wav(&b, 16000, samples5, 5);
  ck_assert_msg(decode(&b, 0, &a, err, sizeof(err)) == 0, "%s", err);
  ck_assert_uint_eq(a.rate, 16000);
  ck_assert_uint_eq(a.file_rate, 16000);
  ck_assert_int_eq(a.channels, 1);
  ck_assert_uint_eq(a.n, 5);
  ck_assert_msg(strstr(a.format, "WAV") != NULL, "%s", a.format);
  for (size_t i = 0; i < 5; i++) ck_assert(a.samples[i] == (float)samples5[i] / 32768.0f);
  dynq__audio_free(&a);
  ck_assert_ptr_null(a.samples);
  /* asking for the file's own rate is no conversion: same bits */
  ck_assert_msg(decode(&b, 16000, &a, err, sizeof(err)) == 0, "%s", err);
  ck_assert_uint_eq(a.n, 5);
  ck_assert(a.samples[3] == 32767.0f / 32768.0f);
  dynq__audio_free(&a);

  /* stereo: left and right averaged */
  static const int16_t lr[6] = { 1000, 3000, -2000, 2000, 32767, 32767 };
  make_wav_fmt(&b, 1, 2, 16000, 16, lr, 3);
  ck_assert_msg(decode(&b, 0, &a, err, sizeof(err)) == 0, "%s", err);
  ck_assert_int_eq(a.channels, 2);
  ck_assert_uint_eq(a.n, 3);
  ck_assert(a.samples[0] == 2000.0f / 32768.0f);
  ck_assert(a.samples[1] == 0.0f);
  ck_assert(a.samples[2] == 32767.0f / 32768.0f);
  dynq__audio_free(&a);

  /* IEEE float, 32-bit, 3 channels */
  static const float f3[6] = { 0.25f, 0.5f, 0.75f, -1.0f, 0.0f, 0.25f };
  make_wav_fmt(&b, 3, 3, 22050, 32, f3, 2);
  ck_assert_msg(decode(&b, 0, &a, err, sizeof(err)) == 0, "%s", err);
  ck_assert_uint_eq(a.rate, 22050);
  ck_assert_int_eq(a.channels, 3);
  ck_assert_uint_eq(a.n, 2);
  ck_assert_float_eq_tol(a.samples[0], 0.5f, 1e-7f);
  ck_assert_float_eq_tol(a.samples[1], -0.25f, 1e-7f);
  dynq__audio_free(&a);

  /* 8-bit PCM is unsigned, centred on 128 */
  static const uint8_t u8[3] = { 128, 192, 64 };
  make_wav_fmt(&b, 1, 1, 8000, 8, u8, 3);
  ck_assert_msg(decode(&b, 0, &a, err, sizeof(err)) == 0, "%s", err);
  ck_assert(a.samples[0] == 0.0f && a.samples[1] == 0.5f && a.samples[2] == -0.5f);
  dynq__audio_free(&a);

  /* no samples at all is a valid (empty) clip; refusing it is the caller's */
  make_wav(&b, 16000, NULL, 0);
  ck_assert_msg(decode(&b, 8000, &a, err, sizeof(err)) == 0, "%s", err);
  ck_assert_uint_eq(a.n, 0);
  dynq__audio_free(&a);
  dynq__audio_free(NULL);
}
END_TEST

/* A 250 Hz tone at 8 kHz converted to 16 kHz (and 44.1 kHz down to 16
 * kHz) is the same tone at the new rate: twice the samples, in phase (the
 * converter's delay is compensated), within 1e-3 away from the edges. */
START_TEST(audio_resamples_in_phase) {
  static const struct { uint32_t from, to; } cases[] = { { 8000, 16000 }, { 44100, 16000 } };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    const uint32_t from = cases[c].from, to = cases[c].to;
    const size_t n = 1500;  /* fits bb_t as int16 */
    int16_t s[1500];
    for (size_t i = 0; i < n; i++) s[i] = (int16_t)lrint(16000.0 * sin(2 * M_PI * 250.0 * i / from));
    bb_t b;
    dynq__audio_t a;
    char err[512] = "";
    make_wav(&b, from, s, n);
    ck_assert_msg(decode(&b, to, &a, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(a.rate, to);
    ck_assert_uint_eq(a.file_rate, from);
    double want_n = (double)n * to / from;
    ck_assert_msg(fabs((double)a.n - want_n) <= 2, "%u -> %u Hz: %zu samples, want %.1f", from,
                  to, a.n, want_n);
    double worst = 0;
    for (size_t i = a.n / 8; i < a.n - a.n / 8; i++) {
      double want = 16000.0 / 32768.0 * sin(2 * M_PI * 250.0 * i / to);
      worst = fmax(worst, fabs(a.samples[i] - want));
    }
    ck_assert_msg(worst < 1e-3, "%u -> %u Hz: max error %g", from, to, worst);
    dynq__audio_free(&a);
  }
}
END_TEST

/* Files that cannot be audio, or cannot become audio at the asked rate,
 * are refused naming the file and why; nothing is returned. */
START_TEST(audio_refuses_bad_input) {
  char *dir = tu_mkdtemp();
  ck_assert_ptr_nonnull(dir);
  char path[4200], err[512];
  dynq__audio_t a;
  bb_t b;

  static const struct {
    const char *what, *needle;
    uint32_t rate;
  } bad[] = {
    { "junk", "not an audio file libsndfile can read: ", 0 },
    { "cut", "not an audio file libsndfile can read: ", 0 },
    { "rate1", "cannot resample 1 Hz to 16000 Hz", 16000 },
    { "toofast", "cannot resample 16000 Hz to 5000000 Hz", 5000000 },
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (strcmp(bad[i].what, "junk") == 0) {
      memcpy(b.b, "this is not an audio file at all", 32);
      b.n = 32;
    } else if (strcmp(bad[i].what, "cut") == 0) {
      make_wav(&b, 16000, samples5, 5);
      b.n = 11;  /* inside the RIFF header */
    } else {
      make_wav(&b, strcmp(bad[i].what, "rate1") == 0 ? 1 : 16000, samples5, 5);
    }
    snprintf(path, sizeof(path), "%s/%s.wav", dir, bad[i].what);
    ck_assert_int_eq(tu_write_file(path, b.b, b.n), 0);
    err[0] = 0;
    memset(&a, 0, sizeof(a));
    int r = dynq__audio_load(path, bad[i].rate, &a, err, sizeof(err));
    if (bad[i].rate > DYNQ__AUDIO_MAX_RATE) {
      ck_assert_int_eq(r, -EINVAL);
      ck_assert_msg(strstr(err, "target rate 5000000 Hz outside") != NULL, "%s", err);
    } else {
      ck_assert_msg(r == DYNQ_EFORMAT, "%s: r=%d (%s)", bad[i].what, r, err);
      ck_assert_msg(strstr(err, bad[i].needle) != NULL, "%s: '%s' lacks '%s'", bad[i].what, err,
                    bad[i].needle);
      /* libsndfile's own reason follows the colon */
      ck_assert_msg(strlen(strstr(err, bad[i].needle)) > strlen(bad[i].needle) ||
                        strstr(bad[i].needle, "resample") != NULL, "%s", err);
    }
    ck_assert_msg(strstr(err, path) == err, "'%s' does not start with the file's name", err);
    ck_assert_ptr_null(a.samples);
  }
  /* the same refusals for an in-memory image */
  make_wav(&b, 1, samples5, 5);
  ck_assert_int_eq(decode(&b, 16000, &a, err, sizeof(err)), DYNQ_EFORMAT);
  ck_assert_msg(strstr(err, "buffer: cannot resample 1 Hz") != NULL, "%s", err);
  ck_assert_int_eq(dynq__audio_decode("RIFF", 4, 0, &a, err, sizeof(err)), DYNQ_EFORMAT);
  ck_assert_int_eq(dynq__audio_decode(NULL, 0, 0, &a, err, sizeof(err)), DYNQ_EFORMAT);
  ck_assert_ptr_null(a.samples);

  /* a missing file and a directory are the system's errors */
  snprintf(path, sizeof(path), "%s/missing.flac", dir);
  ck_assert_int_eq(dynq__audio_load(path, 0, &a, err, sizeof(err)), -ENOENT);
  ck_assert_msg(strstr(err, "missing.flac: No such file") != NULL, "%s", err);
  ck_assert_int_eq(dynq__audio_load(dir, 0, &a, err, sizeof(err)), -EISDIR);

  /* a data chunk claiming more than the file holds: what is there is
   * decoded (recorders killed mid-write leave such files) */
  make_wav(&b, 16000, samples5, 5);
  b.n -= 4;
  snprintf(path, sizeof(path), "%s/short.wav", dir);
  ck_assert_int_eq(tu_write_file(path, b.b, b.n), 0);
  ck_assert_msg(dynq__audio_load(path, 0, &a, err, sizeof(err)) == 0, "%s", err);
  ck_assert_uint_eq(a.n, 3);
  dynq__audio_free(&a);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* ---- a fake server that logs requests ---- */

typedef struct xfake {
  char dir[256], path[300];
  int lfd;
  pthread_t th;
  /* called with each request; writes the reply (or not) to fd */
  void (*script)(struct xfake *f, int fd, const dynq__rpc_msg_t *req, int n, int passed_fd);
  int requests;
  char log[16384];           /* "method {params json}\n" per request */
  size_t loglen;
  int passed_fd;             /* last fd received with SCM_RIGHTS, kept open */
  char note[512];            /* a script's own finding, checked by the test */
  void *user;
} xfake_t;

static void log_request(xfake_t *f, const dynq__rpc_msg_t *m) {
  char *j = NULL;
  size_t jl = 0;
  FILE *mf = open_memstream(&j, &jl);
  if (mf == NULL) return;
  dynq__obj_to_json(m->params, mf);
  fclose(mf);
  f->loglen += (size_t)snprintf(f->log + f->loglen, sizeof(f->log) - f->loglen, "%s %s\n",
                                m->method, j);
  if (f->loglen >= sizeof(f->log)) f->loglen = sizeof(f->log) - 1;
  free(j);
}

static void *xfake_main(void *arg) {
  xfake_t *f = arg;
  int fd = accept(f->lfd, NULL, NULL);
  dynq__framer_t fr;
  int pending_fd = -1;
  if (fd < 0) return NULL;
  dynq__framer_init(&fr, NULL);
  for (;;) {
    const uint8_t *frame;
    size_t flen;
    int r = dynq__framer_next(&fr, &frame, &flen);
    if (r == 0) {
      union {
        struct cmsghdr h;
        char c[CMSG_SPACE(sizeof(int) * 4)];
      } cm;
      uint8_t *dst;
      size_t room;
      if (dynq__framer_space(&fr, 65536, &dst, &room) != 0) break;
      struct iovec iov = { dst, room };
      struct msghdr mh;
      memset(&mh, 0, sizeof(mh));
      mh.msg_iov = &iov;
      mh.msg_iovlen = 1;
      mh.msg_control = cm.c;
      mh.msg_controllen = sizeof(cm.c);
      ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
      if (n <= 0) break;
      for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
          int nfd = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
          for (int i = 0; i < nfd; i++) {
            int got;
            memcpy(&got, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
            if (pending_fd >= 0) close(pending_fd);
            pending_fd = got;
          }
        }
      }
      dynq__framer_commit(&fr, (size_t)n);
      continue;
    }
    if (r < 0) break;
    dynq__rpc_msg_t m;
    int64_t hint;
    char err[128];
    if (dynq__rpc_parse(frame, flen, &m, &hint, err, sizeof(err)) < 0) break;
    log_request(f, &m);
    f->script(f, fd, &m, f->requests++, pending_fd);
    if (pending_fd >= 0) {
      if (f->passed_fd >= 0) close(f->passed_fd);
      f->passed_fd = pending_fd;
      pending_fd = -1;
    }
    dynq__rpc_free(&m);
    if (f->requests < 0) break;
  }
  if (pending_fd >= 0) close(pending_fd);
  dynq__framer_free(&fr);
  close(fd);
  return NULL;
}

static void xfake_start(xfake_t *f,
                        void (*script)(xfake_t *, int, const dynq__rpc_msg_t *, int, int)) {
  char *d = tu_mkdtemp();
  memset(f, 0, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "%s", d);
  free(d);
  snprintf(f->path, sizeof(f->path), "%s/fake.sock", f->dir);
  f->script = script;
  f->passed_fd = -1;
  f->lfd = tu_listen_unix(f->path, 1);
  ck_assert_int_eq(pthread_create(&f->th, NULL, xfake_main, f), 0);
}

/* Close the client (the fake sees EOF) and wait for the fake. */
static void xfake_join(xfake_t *f, dynq_client_t *c) {
  dynq_close(c);
  pthread_join(f->th, NULL);
}

static void xfake_stop(xfake_t *f) {
  close(f->lfd);
  if (f->passed_fd >= 0) close(f->passed_fd);
  tu_rmtree(f->dir);
}

static int method_is(const dynq__rpc_msg_t *m, const char *name) {
  return strcmp(m->method, name) == 0;
}

static void reply_error(int fd, uint32_t msgid, int code, const char *msg) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_error_response(&w, msgid, code, msg);
  tu_send_wbuf(fd, &w);
}

/* ---- stats: typed, Prometheus, table, JSON ---- */

static void w_latency(dynq__wbuf_t *w, const char *key, uint64_t n, uint64_t a, uint64_t b,
                      uint64_t c) {
  dynq__w_str(w, key);
  dynq__w_map(w, 4);
  dynq__w_str(w, "count");
  dynq__w_uint(w, n);
  dynq__w_str(w, "p50");
  dynq__w_uint(w, a);
  dynq__w_str(w, "p90");
  dynq__w_uint(w, b);
  dynq__w_str(w, "p99");
  dynq__w_uint(w, c);
}

/* The stats example of PROTOCOL.md plus a second model whose name needs
 * escaping, listed after "mlp" (the client sorts by name), and a field
 * this client does not know. */
static void w_canned_stats(dynq__wbuf_t *w) {
  static const struct {
    const char *k;
    uint64_t v;
  } top[] = {
    { "connections", 3 },     { "queue_depth", 0 },  { "queue_cap", 1024 },
    { "inflight", 1 },        { "sessions", 2 },     { "shm_regions", 0 },
    { "bytes_mapped", 123456 }, { "requests_total", 10 }, { "errors_total", 1 },
    { "overloads_total", 0 }, { "timeouts_total", 0 },
  };
  dynq__w_map(w, 14);
  dynq__w_str(w, "uptime_s");
  dynq__w_double(w, 1.5);
  for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++) {
    dynq__w_str(w, top[i].k);
    dynq__w_uint(w, top[i].v);
  }
  dynq__w_str(w, "future_field");
  dynq__w_array(w, 2);
  dynq__w_bool(w, 1);
  dynq__w_nil(w);
  dynq__w_str(w, "models");
  dynq__w_map(w, 2);
  dynq__w_str(w, "mlp");
  dynq__w_map(w, 5);
  dynq__w_str(w, "version");
  dynq__w_uint(w, 1);
  dynq__w_str(w, "requests");
  dynq__w_uint(w, 10);
  dynq__w_str(w, "errors");
  dynq__w_uint(w, 1);
  w_latency(w, "queue_us", 10, 12, 30, 45);
  w_latency(w, "compute_us", 10, 80, 95, 120);
  dynq__w_str(w, "a\"b\\c");
  dynq__w_map(w, 3);
  dynq__w_str(w, "version");
  dynq__w_uint(w, 2);
  dynq__w_str(w, "requests");
  dynq__w_uint(w, 0);
  dynq__w_str(w, "errors");
  dynq__w_uint(w, 0);
}

static void script_stats(xfake_t *f, int fd, const dynq__rpc_msg_t *req, int n, int pfd) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  if (n >= 3) { /* malformed replies */
    dynq__w_result_head(&w, req->msgid);
    dynq__w_map(&w, 1);
    if (n == 3) {
      dynq__w_str(&w, "queue_cap");
      dynq__w_str(&w, "lots");
    } else {
      dynq__w_str(&w, "models");
      dynq__w_map(&w, 1);
      dynq__w_str(&w, "m");
      dynq__w_map(&w, 1);
      dynq__w_str(&w, "queue_us");
      dynq__w_int(&w, -5);
    }
    tu_send_wbuf(fd, &w);
    return;
  }
  dynq__w_result_head(&w, req->msgid);
  w_canned_stats(&w);
  tu_send_wbuf(fd, &w);
}

static const char want_prom[] =
    "# HELP dynq_uptime_seconds Seconds since dynqd started.\n"
    "# TYPE dynq_uptime_seconds gauge\n"
    "dynq_uptime_seconds 1.5\n"
    "# HELP dynq_connections Open client connections.\n"
    "# TYPE dynq_connections gauge\n"
    "dynq_connections 3\n"
    "# HELP dynq_queue_depth Requests waiting for a worker.\n"
    "# TYPE dynq_queue_depth gauge\n"
    "dynq_queue_depth 0\n"
    "# HELP dynq_queue_capacity Queue capacity; beyond it requests get EOVERLOAD.\n"
    "# TYPE dynq_queue_capacity gauge\n"
    "dynq_queue_capacity 1024\n"
    "# HELP dynq_inflight_requests Requests accepted and not yet answered.\n"
    "# TYPE dynq_inflight_requests gauge\n"
    "dynq_inflight_requests 1\n"
    "# HELP dynq_sessions Open streaming sessions.\n"
    "# TYPE dynq_sessions gauge\n"
    "dynq_sessions 2\n"
    "# HELP dynq_shm_regions Registered shared-memory regions.\n"
    "# TYPE dynq_shm_regions gauge\n"
    "dynq_shm_regions 0\n"
    "# HELP dynq_mapped_bytes Bytes of model files and regions mapped.\n"
    "# TYPE dynq_mapped_bytes gauge\n"
    "dynq_mapped_bytes 123456\n"
    "# HELP dynq_daemon_requests_total Inference requests answered, all models, errors and "
    "refusals included (other methods are not counted).\n"
    "# TYPE dynq_daemon_requests_total counter\n"
    "dynq_daemon_requests_total 10\n"
    "# HELP dynq_daemon_errors_total Inference requests answered with an error.\n"
    "# TYPE dynq_daemon_errors_total counter\n"
    "dynq_daemon_errors_total 1\n"
    "# HELP dynq_overloads_total Requests refused with EOVERLOAD.\n"
    "# TYPE dynq_overloads_total counter\n"
    "dynq_overloads_total 0\n"
    "# HELP dynq_timeouts_total Requests skipped with EDEADLINE.\n"
    "# TYPE dynq_timeouts_total counter\n"
    "dynq_timeouts_total 0\n"
    "# HELP dynq_model_version Version of the model now serving.\n"
    "# TYPE dynq_model_version gauge\n"
    "dynq_model_version{model=\"a\\\"b\\\\c\"} 2\n"
    "dynq_model_version{model=\"mlp\"} 1\n"
    "# HELP dynq_requests_total Inference requests per model.\n"
    "# TYPE dynq_requests_total counter\n"
    "dynq_requests_total{model=\"a\\\"b\\\\c\"} 0\n"
    "dynq_requests_total{model=\"mlp\"} 10\n"
    "# HELP dynq_errors_total Failed inference requests per model.\n"
    "# TYPE dynq_errors_total counter\n"
    "dynq_errors_total{model=\"a\\\"b\\\\c\"} 0\n"
    "dynq_errors_total{model=\"mlp\"} 1\n"
    "# HELP dynq_queue_seconds Time requests waited for a worker.\n"
    "# TYPE dynq_queue_seconds summary\n"
    "dynq_queue_seconds{model=\"a\\\"b\\\\c\",quantile=\"0.5\"} 0\n"
    "dynq_queue_seconds{model=\"a\\\"b\\\\c\",quantile=\"0.9\"} 0\n"
    "dynq_queue_seconds{model=\"a\\\"b\\\\c\",quantile=\"0.99\"} 0\n"
    "dynq_queue_seconds_count{model=\"a\\\"b\\\\c\"} 0\n"
    "dynq_queue_seconds{model=\"mlp\",quantile=\"0.5\"} 1.2e-05\n"
    "dynq_queue_seconds{model=\"mlp\",quantile=\"0.9\"} 3e-05\n"
    "dynq_queue_seconds{model=\"mlp\",quantile=\"0.99\"} 4.5e-05\n"
    "dynq_queue_seconds_count{model=\"mlp\"} 10\n"
    "# HELP dynq_compute_seconds Time requests spent running the model.\n"
    "# TYPE dynq_compute_seconds summary\n"
    "dynq_compute_seconds{model=\"a\\\"b\\\\c\",quantile=\"0.5\"} 0\n"
    "dynq_compute_seconds{model=\"a\\\"b\\\\c\",quantile=\"0.9\"} 0\n"
    "dynq_compute_seconds{model=\"a\\\"b\\\\c\",quantile=\"0.99\"} 0\n"
    "dynq_compute_seconds_count{model=\"a\\\"b\\\\c\"} 0\n"
    "dynq_compute_seconds{model=\"mlp\",quantile=\"0.5\"} 8e-05\n"
    "dynq_compute_seconds{model=\"mlp\",quantile=\"0.9\"} 9.5e-05\n"
    "dynq_compute_seconds{model=\"mlp\",quantile=\"0.99\"} 0.00012\n"
    "dynq_compute_seconds_count{model=\"mlp\"} 10\n";

static const char want_json[] =
    "{\"uptime_s\": 1.5, \"connections\": 3, \"queue_depth\": 0, \"queue_cap\": 1024, "
    "\"inflight\": 1, \"sessions\": 2, \"shm_regions\": 0, \"bytes_mapped\": 123456, "
    "\"requests_total\": 10, \"errors_total\": 1, \"overloads_total\": 0, "
    "\"timeouts_total\": 0, \"future_field\": [true, null], \"models\": {\"mlp\": "
    "{\"version\": 1, \"requests\": 10, \"errors\": 1, \"queue_us\": {\"count\": 10, "
    "\"p50\": 12, \"p90\": 30, \"p99\": 45}, \"compute_us\": {\"count\": 10, \"p50\": 80, "
    "\"p90\": 95, \"p99\": 120}}, \"a\\\"b\\\\c\": {\"version\": 2, \"requests\": 0, "
    "\"errors\": 0}}}";

static char *render(void (*fn)(const dynq_stats_t *, FILE *), const dynq_stats_t *s) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ck_assert_ptr_nonnull(f);
  fn(s, f);
  fclose(f);
  return buf;
}

START_TEST(stats_typed_prometheus_json) {
  xfake_t f;
  dynq_client_t *c = NULL;
  dynq_stats_t st;
  char *text, *json = NULL;

  xfake_start(&f, script_stats);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_stats(c, &st), 0);
  ck_assert_double_eq(st.uptime_s, 1.5);
  ck_assert_uint_eq(st.queue_cap, 1024);
  ck_assert_uint_eq(st.bytes_mapped, 123456);
  ck_assert_int_eq(st.n_models, 2);
  ck_assert_str_eq(st.models[0].name, "a\"b\\c");
  ck_assert_str_eq(st.models[1].name, "mlp");
  ck_assert_uint_eq(st.models[1].compute_us.p99, 120);
  ck_assert_uint_eq(st.models[0].queue_us.count, 0);

  text = render(dynq__prom_render, &st);
  ck_assert_str_eq(text, want_prom);
  free(text);
  text = render(dynq__stats_table, &st);
  ck_assert_msg(strstr(text, "uptime 1.5 s, 3 connections, queue 0/1024, 1 in flight, "
                             "2 sessions, 0 shm regions, 123456 bytes mapped\n") &&
                    strstr(text, "requests 10, errors 1, overloads 0, timeouts 0\n") &&
                    strstr(text, "mlp                     1         10        1 ") &&
                    strstr(text, "12/30/45") && strstr(text, "80/95/120"),
                "%s", text);
  free(text);
  dynq_stats_free(&st);
  ck_assert_ptr_null(st.models);
  dynq_stats_free(NULL);

  ck_assert_int_eq(dynq_stats_json(c, &json), 0);
  ck_assert_str_eq(json, want_json);
  free(json);

  ck_assert_int_eq(dynq_stats(c, &st), 0); /* the third canned reply */
  dynq_stats_free(&st);
  /* malformed replies name the field */
  ck_assert_int_eq(dynq_stats(c, &st), DYNQ_EPROTO);
  ck_assert_msg(strstr(dynq_client_errmsg(c), "'queue_cap'") != NULL, "%s",
                dynq_client_errmsg(c));
  ck_assert_int_eq(dynq_stats(c, &st), DYNQ_EPROTO);
  ck_assert_msg(strstr(dynq_client_errmsg(c), "'queue_us'") != NULL, "%s",
                dynq_client_errmsg(c));
  xfake_join(&f, c);
  ck_assert_str_eq(f.log, "stats {}\nstats {}\nstats {}\nstats {}\nstats {}\n");
  xfake_stop(&f);
}
END_TEST

/* A dynqd that sends its histograms: queue_us with sum and buckets, and
 * compute_us without (a model whose histogram is missing keeps every model
 * on the summary for that family); then malformed buckets. */
static void script_stats_buckets(xfake_t *f, int fd, const dynq__rpc_msg_t *req, int n,
                                 int pfd) {
  static const uint64_t bk[][2] = { { 0, 1 }, { 7, 2 }, { 15, 3 }, { 4095, 4 } };
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, req->msgid);
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "models");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "m");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "queue_us");
  dynq__w_map(&w, 6);
  dynq__w_str(&w, "count");
  dynq__w_uint(&w, 10);
  dynq__w_str(&w, "p50");
  dynq__w_uint(&w, 15);
  dynq__w_str(&w, "p90");
  dynq__w_uint(&w, 4095);
  dynq__w_str(&w, "p99");
  dynq__w_uint(&w, 4095);
  dynq__w_str(&w, "sum");
  dynq__w_uint(&w, 1234);
  dynq__w_str(&w, "buckets");
  if (n == 0) {
    dynq__w_array(&w, 4);
    for (int i = 0; i < 4; i++) {
      dynq__w_array(&w, 2);
      dynq__w_uint(&w, bk[i][0]);
      dynq__w_uint(&w, bk[i][1]);
    }
  } else {
    dynq__w_array(&w, 1);
    dynq__w_array(&w, 1); /* not a pair */
    dynq__w_uint(&w, 7);
  }
  w_latency(&w, "compute_us", 10, 80, 95, 120);
  tu_send_wbuf(fd, &w);
}

START_TEST(stats_buckets_make_histograms) {
  xfake_t f;
  dynq_client_t *c = NULL;
  dynq_stats_t st;
  char *text;
  static const uint64_t want_below[DYNQ_LATENCY_BUCKETS] = {
    1, 1, 1, 3, 6, 6, 6, 6, 6, 6, 6, 6, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
  };

  xfake_start(&f, script_stats_buckets);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_stats(c, &st), 0);
  ck_assert_int_eq(st.n_models, 1);
  ck_assert_int_eq(st.models[0].queue_us.has_buckets, 1);
  ck_assert_uint_eq(st.models[0].queue_us.sum, 1234);
  for (int k = 0; k < DYNQ_LATENCY_BUCKETS; k++)
    ck_assert_msg(st.models[0].queue_us.below[k] == want_below[k], "below[%d] = %llu", k,
                  (unsigned long long)st.models[0].queue_us.below[k]);
  ck_assert_int_eq(st.models[0].compute_us.has_buckets, 0);
  text = render(dynq__prom_render, &st);
  ck_assert_msg(strstr(text, "# HELP dynq_queue_seconds Time requests waited for a worker.\n"
                             "# TYPE dynq_queue_seconds histogram\n"
                             "dynq_queue_seconds_bucket{model=\"m\",le=\"0\"} 1\n"
                             "dynq_queue_seconds_bucket{model=\"m\",le=\"1e-06\"} 1\n"
                             "dynq_queue_seconds_bucket{model=\"m\",le=\"3e-06\"} 1\n"
                             "dynq_queue_seconds_bucket{model=\"m\",le=\"7e-06\"} 3\n"
                             "dynq_queue_seconds_bucket{model=\"m\",le=\"1.5e-05\"} 6\n") != NULL,
                "%s", text);
  ck_assert_msg(strstr(text, "dynq_queue_seconds_bucket{model=\"m\",le=\"0.002047\"} 6\n"
                             "dynq_queue_seconds_bucket{model=\"m\",le=\"0.004095\"} 10\n") != NULL,
                "%s", text);
  ck_assert_msg(strstr(text, "dynq_queue_seconds_bucket{model=\"m\",le=\"33.554431\"} 10\n"
                             "dynq_queue_seconds_bucket{model=\"m\",le=\"+Inf\"} 10\n"
                             "dynq_queue_seconds_sum{model=\"m\"} 0.001234\n"
                             "dynq_queue_seconds_count{model=\"m\"} 10\n"
                             "# HELP dynq_compute_seconds") != NULL,
                "%s", text);
  /* compute_us came without buckets: the summary */
  ck_assert_msg(strstr(text, "# TYPE dynq_compute_seconds summary\n"
                             "dynq_compute_seconds{model=\"m\",quantile=\"0.5\"} 8e-05\n") != NULL,
                "%s", text);
  ck_assert_ptr_null(strstr(text, "quantile=\"0.5\"} 1.5e-05"));
  free(text);
  dynq_stats_free(&st);
  ck_assert_int_eq(dynq_stats(c, &st), DYNQ_EPROTO);
  ck_assert_msg(strstr(dynq_client_errmsg(c), "'queue_us'") != NULL, "%s",
                dynq_client_errmsg(c));
  xfake_join(&f, c);
  xfake_stop(&f);
}
END_TEST

/* Shadow telemetry in stats: two models in reverse name order, "z" with a
 * shadow map whose error histograms carry sum and buckets in the error's
 * own unit, "a" without; then a shadow map whose rel_l2 bucket bound is
 * negative. */
static void w_shadow_hist(dynq__wbuf_t *w, const char *key, int bad) {
  dynq__w_key(w, key);
  dynq__w_map_begin(w);
  dynq__w_key(w, "count");
  dynq__w_uint(w, 5);
  dynq__w_key(w, "p50");
  dynq__w_double(w, 0.0023);
  dynq__w_key(w, "p90");
  dynq__w_double(w, 0.0151);
  dynq__w_key(w, "p99");
  dynq__w_double(w, 0.0151);
  dynq__w_key(w, "max");
  dynq__w_double(w, 0.0151);
  dynq__w_key(w, "sum");
  dynq__w_double(w, 0.034567);
  dynq__w_key(w, "buckets");
  dynq__w_array(w, 2);
  dynq__w_array(w, 2);
  dynq__w_double(w, bad ? -0.0023 : 0.0023); /* 2300 ppm: below 2^12 */
  dynq__w_uint(w, 3);
  dynq__w_array(w, 2);
  dynq__w_double(w, 0.0151);                 /* 15100 ppm: below 2^14 */
  dynq__w_uint(w, 2);
  dynq__w_map_end(w);
}

static void script_stats_shadow(xfake_t *f, int fd, const dynq__rpc_msg_t *req, int n,
                                int pfd) {
  (void)f;
  (void)pfd;
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, req->msgid);
  dynq__w_map_begin(&w);
  dynq__w_key(&w, "models");
  dynq__w_map_begin(&w);
  dynq__w_key(&w, "z");
  dynq__w_map_begin(&w);
  dynq__w_key(&w, "requests");
  dynq__w_uint(&w, 7);
  dynq__w_key(&w, "shadow");
  dynq__w_map_begin(&w);
  dynq__w_key(&w, "rate");
  dynq__w_double(&w, 0.25);
  dynq__w_key(&w, "runs");
  dynq__w_uint(&w, 5);
  dynq__w_key(&w, "dropped");
  dynq__w_uint(&w, 1);
  dynq__w_key(&w, "decisions_changed");
  dynq__w_uint(&w, 2);
  dynq__w_key(&w, "alerts");
  dynq__w_uint(&w, 4);
  w_shadow_hist(&w, "rel_l2", n > 0);
  w_shadow_hist(&w, "max_abs", 0);
  dynq__w_map_end(&w);
  dynq__w_map_end(&w);
  dynq__w_key(&w, "a");
  dynq__w_map_begin(&w);
  dynq__w_key(&w, "requests");
  dynq__w_uint(&w, 3);
  dynq__w_map_end(&w);
  dynq__w_map_end(&w);
  dynq__w_map_end(&w);
  tu_send_wbuf(fd, &w);
}

START_TEST(stats_shadow_histograms) {
  xfake_t f;
  dynq_client_t *c = NULL;
  dynq_stats_t st;
  char *text;

  xfake_start(&f, script_stats_shadow);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_stats(c, &st), 0);
  ck_assert_int_eq(st.n_models, 2);
  ck_assert_ptr_nonnull(st.shadow);
  /* sorted by name, the parallel array with them */
  ck_assert_str_eq(st.models[0].name, "a");
  ck_assert_uint_eq(st.models[0].requests, 3);
  ck_assert_int_eq(st.shadow[0].on, 0);
  ck_assert_str_eq(st.models[1].name, "z");
  ck_assert_int_eq(st.shadow[1].on, 1);
  ck_assert(st.shadow[1].rate == 0.25);
  ck_assert_uint_eq(st.shadow[1].runs, 5);
  ck_assert_uint_eq(st.shadow[1].dropped, 1);
  ck_assert_uint_eq(st.shadow[1].decisions_changed, 2);
  ck_assert_uint_eq(st.shadow[1].alerts, 4);
  const dynq_latency_t *rl = &st.shadow[1].rel_l2_ppm;
  ck_assert_uint_eq(rl->count, 5);
  ck_assert_uint_eq(rl->p50, 2300);
  ck_assert_uint_eq(rl->p99, 15100);
  ck_assert_uint_eq(rl->sum, 34567);
  ck_assert_int_eq(rl->has_buckets, 1);
  ck_assert_uint_eq(rl->below[11], 0);
  ck_assert_uint_eq(rl->below[12], 3);
  ck_assert_uint_eq(rl->below[13], 3);
  ck_assert_uint_eq(rl->below[14], 5);
  ck_assert_uint_eq(rl->below[DYNQ_LATENCY_BUCKETS - 1], 5);

  text = render(dynq__prom_render, &st);
  ck_assert_msg(strstr(text, "# TYPE dynq_model_shadow_rate gauge\n"
                             "dynq_model_shadow_rate{model=\"z\"} 0.25\n") != NULL, "%s", text);
  ck_assert_msg(strstr(text, "# TYPE dynq_model_shadow_runs_total counter\n"
                             "dynq_model_shadow_runs_total{model=\"z\"} 5\n# HELP") != NULL,
                "%s", text);
  ck_assert_msg(strstr(text, "dynq_model_shadow_alerts_total{model=\"z\"} 4\n") != NULL, "%s",
                text);
  ck_assert_msg(strstr(text, "# TYPE dynq_model_shadow_rel_l2 histogram\n") != NULL, "%s", text);
  ck_assert_msg(strstr(text, "dynq_model_shadow_rel_l2_bucket{model=\"z\",le=\"0.002047\"} 0\n"
                             "dynq_model_shadow_rel_l2_bucket{model=\"z\",le=\"0.004095\"} 3\n"
                             "dynq_model_shadow_rel_l2_bucket{model=\"z\",le=\"0.008191\"} 3\n"
                             "dynq_model_shadow_rel_l2_bucket{model=\"z\",le=\"0.016383\"} 5\n")
                    != NULL, "%s", text);
  ck_assert_msg(strstr(text, "dynq_model_shadow_rel_l2_bucket{model=\"z\",le=\"+Inf\"} 5\n"
                             "dynq_model_shadow_rel_l2_sum{model=\"z\"} 0.034567\n"
                             "dynq_model_shadow_rel_l2_count{model=\"z\"} 5\n") != NULL,
                "%s", text);
  ck_assert_msg(strstr(text, "dynq_model_shadow_max_abs_count{model=\"z\"} 5\n") != NULL, "%s",
                text);
  /* the model without telemetry has no shadow samples */
  ck_assert_ptr_null(strstr(text, "shadow_rate{model=\"a\"}"));
  ck_assert_ptr_null(strstr(text, "shadow_runs_total{model=\"a\"}"));
  free(text);
  text = render(dynq__stats_table, &st);
  ck_assert_msg(strstr(text, "shadow z: rate 0.25, 5 runs, 1 dropped, relL2 p50/p90/p99 "
                             "0.0023/0.0151/0.0151") != NULL, "%s", text);
  ck_assert_ptr_null(strstr(text, "shadow a:"));
  free(text);
  dynq_stats_free(&st);
  ck_assert_ptr_null(st.shadow);

  /* a negative bucket bound: refused, naming the histogram */
  ck_assert_int_eq(dynq_stats(c, &st), DYNQ_EPROTO);
  ck_assert_msg(strstr(dynq_client_errmsg(c), "'shadow rel_l2'") != NULL, "%s",
                dynq_client_errmsg(c));
  xfake_join(&f, c);
  xfake_stop(&f);
}
END_TEST

/* ---- health, admin ---- */

static void script_health_admin(xfake_t *f, int fd, const dynq__rpc_msg_t *req, int n,
                                int pfd) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, req->msgid);
  if (method_is(req, "health.live")) {
    dynq__w_map(&w, 1);
    dynq__w_str(&w, "status");
    dynq__w_str(&w, "ok");
  } else if (method_is(req, "health.ready")) {
    if (n == 1) { /* ready */
      dynq__w_map(&w, 2);
      dynq__w_str(&w, "ready");
      dynq__w_bool(&w, 1);
      dynq__w_str(&w, "models");
      dynq__w_uint(&w, 2);
    } else if (n == 3) { /* not ready */
      dynq__w_map(&w, 3);
      dynq__w_str(&w, "ready");
      dynq__w_bool(&w, 0);
      dynq__w_str(&w, "models");
      dynq__w_uint(&w, 0);
      dynq__w_str(&w, "reason");
      dynq__w_str(&w, "no models loaded");
    } else { /* "ready" of the wrong type */
      dynq__w_map(&w, 1);
      dynq__w_str(&w, "ready");
      dynq__w_str(&w, "yes");
    }
  } else if (method_is(req, "model.load") || method_is(req, "model.reload")) {
    const char *name;
    size_t len;
    dynq__obj_str(dynq__obj_get(req->params, "model"), &name, &len);
    if (len == 6 && memcmp(name, "denied", 6) == 0) {
      dynq__wbuf_free(&w);
      reply_error(fd, req->msgid, DYNQ_EDENIED, "model.load needs an admin peer");
      return;
    }
    if (len == 3 && memcmp(name, "bad", 3) == 0) { /* no version in the reply */
      dynq__w_map(&w, 1);
      dynq__w_str(&w, "model");
      dynq__w_strn(&w, name, len);
    } else {
      dynq__w_map(&w, 2);
      dynq__w_str(&w, "model");
      dynq__w_strn(&w, name, len);
      dynq__w_str(&w, "version");
      dynq__w_uint(&w, method_is(req, "model.load") ? 1 : 7);
    }
  } else if (method_is(req, "model.unload")) {
    dynq__wbuf_free(&w);
    reply_error(fd, req->msgid, DYNQ_ENOMODEL, "no model named 'x'");
    return;
  } else {
    dynq__wbuf_free(&w);
    reply_error(fd, req->msgid, DYNQ_ENOMETHOD, "unknown method");
    return;
  }
  tu_send_wbuf(fd, &w);
}

START_TEST(health_and_admin_calls) {
  xfake_t f;
  dynq_client_t *c = NULL;
  dynq_health_t h;
  uint64_t ver = 99;
  int live = -1, ready = -1;

  xfake_start(&f, script_health_admin);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_health(c, &live, &ready), 0);
  ck_assert_int_eq(live, 1);
  ck_assert_int_eq(ready, 1);
  ck_assert_int_eq(dynq_health_get(c, &h), 0);
  ck_assert_int_eq(h.live, 1);
  ck_assert_int_eq(h.ready, 0);
  ck_assert_int_eq(h.models, 0);
  ck_assert_str_eq(h.reason, "no models loaded");
  memset(&h, 0x5a, sizeof(h));
  ck_assert_int_eq(dynq_health_get(c, &h), DYNQ_EPROTO);
  ck_assert_msg(strstr(dynq_client_errmsg(c), "health.ready") &&
                    strstr(dynq_client_errmsg(c), "'ready'"),
                "%s", dynq_client_errmsg(c));
  ck_assert_int_eq(h.live, 0x5a5a5a5a); /* untouched on failure */

  ck_assert_int_eq(dynq_model_load(c, "mlp", NULL, &ver), 0);
  ck_assert_uint_eq(ver, 1);
  ck_assert_int_eq(dynq_model_load(c, "mlp2", "sub/mlp.dynq", NULL), 0);
  ck_assert_int_eq(dynq_model_reload(c, "mlp", &ver), 0);
  ck_assert_uint_eq(ver, 7);
  ver = 99;
  ck_assert_int_eq(dynq_model_reload(c, "denied", &ver), DYNQ_EDENIED);
  ck_assert_str_eq(dynq_client_errmsg(c), "model.load needs an admin peer");
  ck_assert_uint_eq(ver, 99);
  ck_assert_int_eq(dynq_model_load(c, "bad", NULL, &ver), DYNQ_EPROTO);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "'version'"));
  ck_assert_int_eq(dynq_model_unload(c, "x"), DYNQ_ENOMODEL);
  /* caller mistakes never reach the wire */
  ck_assert_int_eq(dynq_model_load(c, "", NULL, NULL), DYNQ_EPARAMS);
  ck_assert_int_eq(dynq_model_load(c, "m", "", NULL), DYNQ_EPARAMS);
  ck_assert_int_eq(dynq_model_unload(c, NULL), DYNQ_EPARAMS);
  ck_assert_int_eq(dynq_model_unload(NULL, "m"), -EINVAL);
  ck_assert_int_eq(dynq_health(c, NULL, &ready), -EINVAL);
  xfake_join(&f, c);
  ck_assert_str_eq(f.log,
                   "health.live {}\n"
                   "health.ready {}\n"
                   "health.live {}\n"
                   "health.ready {}\n"
                   "health.live {}\n"
                   "health.ready {}\n"
                   "model.load {\"model\": \"mlp\"}\n"
                   "model.load {\"model\": \"mlp2\", \"path\": \"sub/mlp.dynq\"}\n"
                   "model.reload {\"model\": \"mlp\"}\n"
                   "model.reload {\"model\": \"denied\"}\n"
                   "model.load {\"model\": \"bad\"}\n"
                   "model.unload {\"model\": \"x\"}\n");
  xfake_stop(&f);
}
END_TEST

/* ---- sessions and infer options ---- */

/* session.open -> id 5 with the inputs; infer echoes the inputs back as
 * outputs (so y is the first input) and adds "seen" = request count;
 * unknown sessions get ENOSESSION. */
static void script_sessions(xfake_t *f, int fd, const dynq__rpc_msg_t *req, int n, int pfd) {
  dynq__wbuf_t w;
  int64_t sid = -1;
  dynq__wbuf_init(&w);
  dynq__obj_int(dynq__obj_get(req->params, "session"), &sid);
  if (method_is(req, "session.open")) {
    dynq__w_result_head(&w, req->msgid);
    dynq__w_map(&w, 2);
    dynq__w_str(&w, "session");
    dynq__w_uint(&w, 5);
    dynq__w_str(&w, "inputs");
    dynq__w_array(&w, 1);
    dynq__w_str(&w, "x");
  } else if (sid != 5 && !dynq__obj_is_absent(dynq__obj_get(req->params, "session"))) {
    dynq__wbuf_free(&w);
    reply_error(fd, req->msgid, DYNQ_ENOSESSION, "no session 6");
    return;
  } else if (method_is(req, "infer")) {
    dynq__obj_t ins = dynq__obj_get(req->params, "inputs");
    dynq__obj_t oshm = dynq__obj_get(req->params, "outputs_shm");
    uint32_t k;
    dynq__w_result_head(&w, req->msgid);
    dynq__w_map(&w, 2);
    dynq__w_str(&w, "outputs");
    uint32_t n_data = 0;
    /* inputs sent by shm reference carry no data to echo: skipped */
    for (k = 0; k < dynq__obj_len(ins); k++)
      n_data += dynq__obj_is_absent(dynq__obj_get(dynq__obj_val_at(ins, k), "data")) ? 0 : 1;
    dynq__w_map(&w, n_data + 1 + dynq__obj_len(oshm));
    for (k = 0; k < dynq__obj_len(ins); k++) {
      dynq__tensor_t t;
      char err[128], name[64];
      if (dynq__obj_is_absent(dynq__obj_get(dynq__obj_val_at(ins, k), "data"))) continue;
      dynq__obj_strcpy(dynq__obj_key_at(ins, k), name, sizeof(name));
      dynq__w_str(&w, name);
      if (dynq__obj_tensor(dynq__obj_val_at(ins, k), &(dynq__tensor_limits_t){ 8, 1 << 20 },
                           &t, err, sizeof(err)) == 0) {
        dynq__w_tensor(&w, &t);
        dynq__tensor_clear(&t);
      } else {
        dynq__w_nil(&w);
      }
    }
    dynq__w_str(&w, "seen");
    {
      int64_t v = n;
      dynq__tensor_t t = { .dtype = DYNQ_DT_I64, .rank = 0, .data = &v };
      dynq__w_tensor(&w, &t);
    }
    for (k = 0; k < dynq__obj_len(oshm); k++) {
      char name[64];
      dynq__obj_strcpy(dynq__obj_key_at(oshm, k), name, sizeof(name));
      dynq__w_str(&w, name);
      dynq__w_map(&w, 3);
      dynq__w_str(&w, "dtype");
      dynq__w_str(&w, "float32");
      dynq__w_str(&w, "shape");
      dynq__w_array(&w, 1);
      dynq__w_int(&w, 2);
      dynq__w_str(&w, "shm");
      dynq__w_map(&w, 3);
      dynq__w_str(&w, "region");
      dynq__w_uint(&w, 1);
      dynq__w_str(&w, "offset");
      dynq__w_uint(&w, 64);
      dynq__w_str(&w, "size");
      dynq__w_uint(&w, 8);
    }
    dynq__w_str(&w, "compute_us");
    dynq__w_uint(&w, 3);
  } else if (method_is(req, "session.reset") || method_is(req, "session.close")) {
    dynq__w_result_head(&w, req->msgid);
    dynq__w_map(&w, 0);
  } else if (method_is(req, "model.info")) {
    /* dynqctl stream checks its --set names against the inputs */
    static const char *const names[] = { "x", "state", "sr", "gain" };
    dynq__w_result_head(&w, req->msgid);
    dynq__w_map(&w, 3);
    dynq__w_str(&w, "name");
    dynq__w_str(&w, "vad");
    dynq__w_str(&w, "inputs");
    dynq__w_array(&w, 4);
    for (int i = 0; i < 4; i++) {
      dynq__w_map(&w, 3);
      dynq__w_str(&w, "name");
      dynq__w_str(&w, names[i]);
      dynq__w_str(&w, "dtype");
      dynq__w_str(&w, "float32");
      dynq__w_str(&w, "shape");
      dynq__w_array(&w, 0);
    }
    dynq__w_str(&w, "outputs");
    dynq__w_array(&w, 0);
  } else {
    dynq__wbuf_free(&w);
    reply_error(fd, req->msgid, DYNQ_ENOMETHOD, "unknown method");
    return;
  }
  tu_send_wbuf(fd, &w);
}

START_TEST(session_calls) {
  static const char *const binds[] = { "state", "stateN", "h", "hN" };
  static const char *const dup[] = { "state", "a", "state", "b" };
  xfake_t f;
  dynq_client_t *c = NULL;
  dynq_infer_result_t res;
  uint64_t sid = 0;
  float x[2] = { 0.5f, -1 };
  dynq_tensor_t in = { "x", DYNQ_FLOAT32, 2, { 1, 2 }, x, sizeof(x) };

  xfake_start(&f, script_sessions);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_session_open(c, "vad", binds, 2, 0, &sid), 0);
  ck_assert_uint_eq(sid, 5);
  ck_assert_int_eq(dynq_session_open(c, "vad@2", NULL, 0, 1, &sid), 0);
  ck_assert_int_eq(dynq_session_infer(c, sid, &in, 1, &res), 0);
  ck_assert_int_eq(res.n_outputs, 2);
  ck_assert_str_eq(res.outputs[0].name, "x");
  ck_assert_mem_eq(res.outputs[0].data, x, sizeof(x));
  ck_assert_str_eq(res.outputs[1].name, "seen");
  ck_assert_int_eq(res.outputs[1].rank, 0);
  ck_assert_int_eq(*(int64_t *)res.outputs[1].data, 2);
  ck_assert_int_eq(res.compute_us, 3);
  dynq_infer_result_free(&res);
  ck_assert_int_eq(dynq_session_reset(c, sid), 0);
  ck_assert_int_eq(dynq_session_infer(c, 6, &in, 1, &res), DYNQ_ENOSESSION);
  ck_assert_str_eq(dynq_client_errmsg(c), "no session 6");
  ck_assert_int_eq(dynq_session_close(c, 6), DYNQ_ENOSESSION);
  ck_assert_int_eq(dynq_session_close(c, sid), 0);
  /* caller mistakes */
  ck_assert_int_eq(dynq_session_open(c, "vad", dup, 2, 0, &sid), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "'state' bound twice"));
  ck_assert_int_eq(dynq_session_open(c, "", NULL, 0, 0, &sid), DYNQ_EPARAMS);
  ck_assert_int_eq(dynq_session_open(c, "vad", NULL, 1, 0, &sid), -EINVAL);
  ck_assert_int_eq(dynq_session_open(c, "vad", NULL, 0, 0, NULL), -EINVAL);
  xfake_join(&f, c);
  ck_assert_str_eq(f.log,
                   "session.open {\"model\": \"vad\", \"bindings\": {\"state\": \"stateN\", "
                   "\"h\": \"hN\"}, \"detached\": false}\n"
                   "session.open {\"model\": \"vad@2\", \"detached\": true}\n"
                   "infer {\"inputs\": {\"x\": {\"dtype\": \"float32\", \"shape\": [1, 2], "
                   "\"data\": null}}, \"session\": 5}\n"
                   "session.reset {\"session\": 5}\n"
                   "infer {\"inputs\": {\"x\": {\"dtype\": \"float32\", \"shape\": [1, 2], "
                   "\"data\": null}}, \"session\": 6}\n"
                   "session.close {\"session\": 6}\n"
                   "session.close {\"session\": 5}\n");
  xfake_stop(&f);
}
END_TEST

START_TEST(infer_ex_options) {
  xfake_t f;
  dynq_client_t *c = NULL;
  dynq_infer_result_t res;
  dynq_infer_opts_t o;
  float x[2] = { 1, 2 };
  dynq_tensor_t in[2] = {
    { "x", DYNQ_FLOAT32, 2, { 1, 2 }, x, sizeof(x) },
    { "big", DYNQ_FLOAT32, 2, { 4, 4 }, NULL, 64 },
  };
  dynq_shm_ref_t in_shm[2] = { { 0, 0, 0 }, { 1, 128, 64 } };
  dynq_output_shm_t out_shm[1] = { { "y", { 1, 64, 8 } } };

  xfake_start(&f, script_sessions);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  dynq_infer_opts_init(&o);
  o.precision = DYNQ_INFER_FP32;
  o.timeout_ms = 250;
  o.input_shm = in_shm;
  o.output_shm = out_shm;
  o.n_output_shm = 1;
  ck_assert_int_eq(dynq_infer_ex(c, "m", in, 2, &o, &res), 0);
  ck_assert_int_eq(res.n_outputs, 3); /* x, seen, y (big has no data: nil) */
  ck_assert_str_eq(res.outputs[2].name, "y");
  ck_assert_ptr_null(res.outputs[2].data);
  ck_assert_uint_eq(res.outputs[2].nbytes, 8);
  ck_assert_int_eq(res.outputs[2].dtype, DYNQ_FLOAT32);
  ck_assert_int_eq(res.outputs[2].rank, 1);
  ck_assert_int_eq(res.outputs[2].shape[0], 2);
  dynq_infer_result_free(&res);
  /* NULL opts behaves as dynq_infer */
  ck_assert_int_eq(dynq_infer_ex(c, "m", in, 1, NULL, &res), 0);
  dynq_infer_result_free(&res);
  /* shm reference whose size does not match the shape */
  in_shm[1].size = 60;
  ck_assert_int_eq(dynq_infer_ex(c, "m", in, 2, &o, &res), DYNQ_EDATA);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "'big'"));
  in_shm[1].size = 64;
  in_shm[1].offset = UINT64_MAX - 10;
  ck_assert_int_eq(dynq_infer_ex(c, "m", in, 2, &o, &res), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "overflows"));
  in_shm[1].offset = 128;
  out_shm[0].name = "";
  ck_assert_int_eq(dynq_infer_ex(c, "m", in, 2, &o, &res), DYNQ_EPARAMS);
  out_shm[0].name = "y";
  o.input_shm = NULL; /* then "big" has NULL data */
  ck_assert_int_eq(dynq_infer_ex(c, "m", in, 2, &o, &res), DYNQ_EDATA);
  ck_assert_int_eq(dynq_infer_ex(c, NULL, in, 1, NULL, &res), -EINVAL);
  o.n_output_shm = -1;
  ck_assert_int_eq(dynq_infer_ex(c, "m", in, 1, &o, &res), -EINVAL);
  xfake_join(&f, c);
  ck_assert_str_eq(f.log,
                   "infer {\"model\": \"m\", \"inputs\": {\"x\": {\"dtype\": \"float32\", "
                   "\"shape\": [1, 2], \"data\": null}, \"big\": {\"dtype\": \"float32\", "
                   "\"shape\": [4, 4], \"shm\": {\"region\": 1, \"offset\": 128, \"size\": 64}}}, "
                   "\"precision\": \"fp32\", \"timeout_ms\": 250, \"outputs_shm\": {\"y\": "
                   "{\"region\": 1, \"offset\": 64, \"size\": 8}}}\n"
                   "infer {\"model\": \"m\", \"inputs\": {\"x\": {\"dtype\": \"float32\", "
                   "\"shape\": [1, 2], \"data\": null}}}\n");
  xfake_stop(&f);
}
END_TEST

/* ---- shared memory ---- */

/* shm.register: check the fd that came with the frame (seals, size, and
 * the bytes the client wrote), answer region 9; unregister of 10 fails. */
static void script_shm(xfake_t *f, int fd, const dynq__rpc_msg_t *req, int n, int pfd) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  if (method_is(req, "shm.register")) {
    struct stat st;
    int seals = pfd >= 0 ? fcntl(pfd, F_GET_SEALS) : -1;
    if (pfd < 0) {
      snprintf(f->note, sizeof(f->note), "no fd with request %d", n);
    } else if (fstat(pfd, &st) != 0 || st.st_size != 4096) {
      snprintf(f->note, sizeof(f->note), "fd size %lld", (long long)st.st_size);
    } else if (seals < 0 || !(seals & F_SEAL_SHRINK) || !(seals & F_SEAL_SEAL)) {
      snprintf(f->note, sizeof(f->note), "seals 0x%x", seals);
    } else {
      uint8_t *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, pfd, 0);
      if (p == MAP_FAILED || p[0] != 0xab || p[4095] != 0xcd)
        snprintf(f->note, sizeof(f->note), "content differs");
      else
        snprintf(f->note, sizeof(f->note), "ok");
      if (p != MAP_FAILED) munmap(p, 4096);
    }
    dynq__w_result_head(&w, req->msgid);
    dynq__w_map(&w, 1);
    dynq__w_str(&w, "region");
    dynq__w_uint(&w, 9);
  } else {
    int64_t r = 0;
    dynq__obj_int(dynq__obj_get(req->params, "region"), &r);
    if (r != 9) {
      dynq__wbuf_free(&w);
      reply_error(fd, req->msgid, DYNQ_ENOREGION, "no region 10");
      return;
    }
    dynq__w_result_head(&w, req->msgid);
    dynq__w_map(&w, 0);
  }
  tu_send_wbuf(fd, &w);
}

START_TEST(shm_create_register) {
  xfake_t f;
  dynq_client_t *c = NULL;
  uint64_t region = 0;
  uint8_t *p = NULL;
  void *vp = NULL;
  int fd = -1, seals;
  struct stat st;

  ck_assert_int_eq(dynq_shm_create(4096, &fd, &vp), 0);
  p = vp;
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(fstat(fd, &st), 0);
  ck_assert_int_eq(st.st_size, 4096);
  seals = fcntl(fd, F_GET_SEALS);
  ck_assert_int_eq(seals & (F_SEAL_SHRINK | F_SEAL_SEAL), F_SEAL_SHRINK | F_SEAL_SEAL);
  ck_assert_int_ne(ftruncate(fd, 100), 0); /* cannot shrink */
  p[0] = 0xab;
  p[4095] = 0xcd;
  ck_assert_int_eq(dynq_shm_create(0, &fd, &vp), -EINVAL);

  xfake_start(&f, script_shm);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_shm_register(c, fd, 4096, &region), 0);
  ck_assert_uint_eq(region, 9);
  ck_assert_int_eq(dynq_shm_unregister(c, 10), DYNQ_ENOREGION);
  ck_assert_int_eq(dynq_shm_unregister(c, 9), 0);
  ck_assert_int_eq(dynq_shm_register(c, -1, 4096, &region), -EBADF);
  ck_assert_int_eq(dynq_shm_register(c, fd, 0, &region), DYNQ_EPARAMS);
  xfake_join(&f, c);
  ck_assert_str_eq(f.note, "ok");
  ck_assert_str_eq(f.log,
                   "shm.register {\"size\": 4096}\n"
                   "shm.unregister {\"region\": 10}\n"
                   "shm.unregister {\"region\": 9}\n");
  xfake_stop(&f);
  dynq_shm_destroy(fd, p, 4096);
  dynq_shm_destroy(-1, NULL, 0);
}
END_TEST

/* ---- dynqctl against the fake ---- */

static int run_ctl(char **out, const char *const *args) {
  char exe[4096];
  char *argv[32];
  int n = 0;
  snprintf(exe, sizeof(exe), "%s", tu_build("client/dynqctl"));
  argv[n++] = exe;
  for (int i = 0; args[i] && n < 31; i++) argv[n++] = (char *)args[i];
  argv[n] = NULL;
  return tu_run(argv, out);
}

/* Stream: the session's "infer" echoes x back; check the windows. */
START_TEST(dynqctl_stream_against_fake) {
  xfake_t f;
  char *out = NULL, wavpath[512];
  int16_t s[10];
  bb_t b;

  for (int i = 0; i < 10; i++) s[i] = (int16_t)((i + 1) * 2048);
  make_wav(&b, 4000, s, 10);
  xfake_start(&f, script_sessions);
  snprintf(wavpath, sizeof(wavpath), "x=%s/a.wav", f.dir);
  ck_assert_int_eq(tu_write_file(wavpath + 2, b.b, b.n), 0);
  const char *args[] = { "--socket", f.path, "stream", "vad", "--input", wavpath, "--chunk",
                         "4", "--context", "2", "--rate", "4000", "--bind", "state=stateN",
                         "--set", "sr=4000", "--set", "gain=0.5", NULL };
  ck_assert_msg(run_ctl(&out, args) == 0, "%s", out);
  pthread_join(f.th, NULL);
  /* 10 samples in chunks of 4: three windows of 2 context + 4 new samples,
   * the first with zero context, the last zero-padded; sample/32768 */
  ck_assert_msg(strstr(out, "#chunk     time_s  values\n"
                            "     0      0.000  0 0 0.0625 0.125 0.1875 0.25\n"
                            "     1      0.001  0.1875 0.25 0.3125 0.375 0.4375 0.5\n"
                            "     2      0.002  0.4375 0.5 0.5625 0.625 0 0\n") != NULL &&
                strncmp(out, "# vad: x = ", 11) == 0, "%s", out);
  ck_assert_msg(strstr(f.log, "model.info {\"model\": \"vad\"}\n"
                              "session.open {\"model\": \"vad\", \"bindings\": {\"state\": "
                              "\"stateN\"}, \"detached\": false}\n") == f.log,
                "%s", f.log);
  ck_assert_msg(strstr(f.log, "\"sr\": {\"dtype\": \"int64\", \"shape\": [], \"data\": null}, "
                              "\"gain\": {\"dtype\": \"float32\", \"shape\": []") != NULL,
                "%s", f.log);
  ck_assert_msg(strstr(f.log, "session.close {\"session\": 5}\n") != NULL, "%s", f.log);
  free(out);
  xfake_stop(&f);

  /* the same clip as stereo, L = s + 1024 and R = s - 1024: mixed to the
   * same mono windows, and the header says what the file was */
  int16_t lr[20];
  for (int i = 0; i < 10; i++) {
    lr[2 * i] = (int16_t)(s[i] + 1024);
    lr[2 * i + 1] = (int16_t)(s[i] - 1024);
  }
  make_wav_fmt(&b, 1, 2, 4000, 16, lr, 10);
  xfake_start(&f, script_sessions);
  snprintf(wavpath, sizeof(wavpath), "x=%s/a.wav", f.dir);
  ck_assert_int_eq(tu_write_file(wavpath + 2, b.b, b.n), 0);
  ck_assert_msg(run_ctl(&out, args) == 0, "%s", out);
  pthread_join(f.th, NULL);
  ck_assert_msg(strstr(out, "     0      0.000  0 0 0.0625 0.125 0.1875 0.25\n"
                            "     1      0.001  0.1875 0.25 0.3125 0.375 0.4375 0.5\n"
                            "     2      0.002  0.4375 0.5 0.5625 0.625 0 0\n") != NULL &&
                strstr(out, "(4000 Hz, 0.00 s; from WAV (Microsoft), 4000 Hz, 2 channels)") != NULL,
                "%s", out);
  free(out);
  xfake_stop(&f);

  /* --json lines and --output selection */
  xfake_start(&f, script_sessions);
  snprintf(wavpath, sizeof(wavpath), "x=%s/a.wav", f.dir);
  ck_assert_int_eq(tu_write_file(wavpath + 2, b.b, b.n), 0);
  const char *args2[] = { "--socket", f.path, "stream", "vad", "--input", wavpath, "--chunk",
                          "8", "--context", "0", "--rate", "4000", "--output", "seen",
                          "--json", NULL };
  ck_assert_msg(run_ctl(&out, args2) == 0, "%s", out);
  pthread_join(f.th, NULL);
  ck_assert_str_eq(out,
                   "{\"chunk\": 0, \"time_s\": 0.000000, \"output\": \"seen\", \"shape\": [], "
                   "\"values\": [1]}\n"
                   "{\"chunk\": 1, \"time_s\": 0.002000, \"output\": \"seen\", \"shape\": [], "
                   "\"values\": [2]}\n");
  free(out);
  xfake_stop(&f);
}
END_TEST

START_TEST(dynqctl_stream_refuses_bad_input) {
  char *out = NULL, *dir = tu_mkdtemp(), spec[600], sock[600];
  bb_t b;
  snprintf(sock, sizeof(sock), "%s/none.sock", dir);
  /* refused before any connection (the socket does not exist): a file
   * libsndfile cannot read, a rate it cannot convert to the model's, an
   * empty clip, a missing file */
  static const struct {
    const char *file, *needle;
  } files[] = {
    { "junk.wav", "junk.wav: not an audio file libsndfile can read: " },
    { "1hz.wav", "1hz.wav: cannot resample 1 Hz to 16000 Hz" },
    { "empty.wav", "empty.wav holds no samples" },
    { "missing.flac", "missing.flac: No such file or directory" },
  };
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    if (i == 0) memcpy(b.b, "RIFF....WAVEjunk", 16), b.n = 16;
    if (i == 1) make_wav(&b, 1, samples5, 5);
    if (i == 2) make_wav(&b, 16000, NULL, 0);
    snprintf(spec, sizeof(spec), "%s/%s", dir, files[i].file);
    if (i < 3) ck_assert_int_eq(tu_write_file(spec, b.b, b.n), 0);
    snprintf(spec, sizeof(spec), "x=%s/%s", dir, files[i].file);
    const char *a1[] = { "--socket", sock, "stream", "m", "--input", spec, NULL };
    ck_assert_int_eq(run_ctl(&out, a1), 2);
    ck_assert_msg(strstr(out, "dynqctl: stream: ") && strstr(out, files[i].needle), "%s", out);
    free(out);
  }

  static const struct {
    const char *a, *b, *needle;
  } bad[] = {
    { "--chunk", "0", "--chunk must be an integer from 1" },
    { "--context", "-1", "--context must be an integer from 0" },
    { "--rate", "abc", "--rate must be" },
    { "--bind", "state", "expected NAME=OUTPUT" },
    { "--set", "sr=", "expected NAME=VALUE" },
    { "--set", "sr=1e999", "finite number" },
    { "--input", "noeq", "expected NAME=AUDIO" },
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    const char *a[] = { "--socket", sock, "stream", "m", "--input", spec, bad[i].a, bad[i].b,
                        NULL };
    if (strcmp(bad[i].a, "--input") == 0) a[5] = bad[i].b, a[6] = NULL;
    ck_assert_int_eq(run_ctl(&out, a), 2);
    ck_assert_msg(strstr(out, bad[i].needle) != NULL, "%s %s: %s", bad[i].a, bad[i].b, out);
    free(out);
  }
  const char *a3[] = { "--socket", sock, "stream", "m", NULL };
  ck_assert_int_eq(run_ctl(&out, a3), 2);
  ck_assert_ptr_nonnull(strstr(out, "missing --input"));
  free(out);
  const char *a4[] = { "--socket", sock, "stats", "--json", "--prometheus", NULL };
  ck_assert_int_eq(run_ctl(&out, a4), 2);
  ck_assert_ptr_nonnull(strstr(out, "exclude each other"));
  free(out);
  const char *a5[] = { "--socket", sock, "load", NULL };
  ck_assert_int_eq(run_ctl(&out, a5), 2);
  ck_assert_ptr_nonnull(strstr(out, "missing NAME"));
  free(out);
  const char *a6[] = { "--socket", sock, "unload", "a", "b", NULL };
  ck_assert_int_eq(run_ctl(&out, a6), 2);
  ck_assert_ptr_nonnull(strstr(out, "unexpected argument 'b'"));
  free(out);
  const char *a7[] = { "--socket", sock, "st", NULL };
  ck_assert_int_eq(run_ctl(&out, a7), 2);
  ck_assert_msg(strstr(out, "ambiguous") && strstr(out, "stream"), "%s", out);
  free(out);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* compare's two infers: the INT8 one is answered only once the FP32 one
 * has arrived too, so a dynqctl that waited for one answer before sending
 * the next request would never finish. */
static void script_compare_pipelined(xfake_t *f, int fd, const dynq__rpc_msg_t *req, int n,
                                     int pfd) {
  static uint32_t held;
  static const float y8[2] = {1.0f, 0.25f}, y32[2] = {1.0f, 0.5f};
  (void)pfd;
  if (n == 0) {
    held = req->msgid;  /* INT8: held */
    return;
  }
  for (int k = 0; k < 2; k++) {
    dynq__wbuf_t w;
    dynq__wbuf_init(&w);
    dynq__w_result_head(&w, k == 0 ? held : req->msgid);
    dynq__w_map(&w, 2);
    dynq__w_str(&w, "outputs");
    dynq__w_map(&w, 1);
    dynq__w_str(&w, "y");
    dynq__wtensor_t t = {DYNQ_FLOAT32, 2, {1, 2}, k == 0 ? y8 : y32, sizeof y8};
    dynq__w_wtensor(&w, &t);
    dynq__w_str(&w, "compute_us");
    dynq__w_int(&w, 3);
    tu_send_wbuf(fd, &w);
  }
  f->requests = -2;  /* done: the loop stops after this one */
}

START_TEST(dynqctl_compare_pipelines_both_precisions) {
  xfake_t f;
  char *out = NULL;
  xfake_start(&f, script_compare_pipelined);
  const char *a[] = {"--socket", f.path, "compare", "m", "--input", "x=[[1, 2]]", NULL};
  ck_assert_msg(run_ctl(&out, a) == 0, "%s", out);
  pthread_join(f.th, NULL);
  /* both precisions went out, INT8 first */
  ck_assert_msg(strstr(f.log, "infer") != NULL && strstr(f.log, "int8") != NULL &&
                    strstr(f.log, "fp32") != NULL && strstr(f.log, "int8") < strstr(f.log, "fp32"),
                "%s", f.log);
  /* each answer went to its precision: max |d| 0.25 between them, and
   * relL2 |(0, 0.25)| / |(1, 0.5)| = 0.2236 */
  ck_assert_msg(strstr(out, "0.25") != NULL && strstr(out, "0.2236") != NULL &&
                    strstr(out, "compute: int8 3 us, fp32 3 us") != NULL,
                "%s", out);
  free(out);
  xfake_stop(&f);
}
END_TEST

START_TEST(dynqctl_stats_health_admin_against_fake) {
  xfake_t f;
  char *out = NULL;

  xfake_start(&f, script_stats);
  const char *a1[] = { "--socket", f.path, "stats", "--prometheus", NULL };
  ck_assert_msg(run_ctl(&out, a1) == 0, "%s", out);
  pthread_join(f.th, NULL);
  ck_assert_str_eq(out, want_prom);
  free(out);
  xfake_stop(&f);

  xfake_start(&f, script_stats);
  const char *a2[] = { "--socket", f.path, "stats", "--json", NULL };
  ck_assert_msg(run_ctl(&out, a2) == 0, "%s", out);
  pthread_join(f.th, NULL);
  ck_assert_int_eq(strncmp(out, want_json, strlen(want_json)), 0);
  ck_assert_str_eq(out + strlen(want_json), "\n");
  free(out);
  xfake_stop(&f);

  xfake_start(&f, script_stats);
  const char *a3[] = { "--socket", f.path, "stats", NULL };
  ck_assert_msg(run_ctl(&out, a3) == 0, "%s", out);
  pthread_join(f.th, NULL);
  ck_assert_msg(strstr(out, "MODEL") && strstr(out, "12/30/45"), "%s", out);
  free(out);
  xfake_stop(&f);

  /* health: live + ready -> 0 */
  xfake_start(&f, script_health_admin);
  const char *a4[] = { "--socket", f.path, "health", NULL };
  ck_assert_msg(run_ctl(&out, a4) == 0, "%s", out);
  pthread_join(f.th, NULL);
  ck_assert_str_eq(out, "live:   yes\nready:  yes\nmodels: 2\n");
  free(out);
  xfake_stop(&f);

  /* admin: EDENIED exits 1 with a hint */
  xfake_start(&f, script_health_admin);
  const char *a5[] = { "--socket", f.path, "reload", "denied", NULL };
  ck_assert_int_eq(run_ctl(&out, a5), 1);
  pthread_join(f.th, NULL);
  ck_assert_msg(strstr(out, "EDENIED") && strstr(out, "admin group"), "%s", out);
  free(out);
  xfake_stop(&f);

  xfake_start(&f, script_health_admin);
  const char *a6[] = { "--socket", f.path, "--json", "load", "mlp", "mlp.dynq", NULL };
  ck_assert_msg(run_ctl(&out, a6) == 0, "%s", out);
  pthread_join(f.th, NULL);
  ck_assert_str_eq(out, "{\"model\": \"mlp\", \"version\": 1}\n");
  ck_assert_str_eq(f.log, "model.load {\"model\": \"mlp\", \"path\": \"mlp.dynq\"}\n");
  free(out);
  xfake_stop(&f);
}
END_TEST

/* ---- a real dynqd ---- */

/* Whether the daemon serves the production methods yet. */
static int daemon_has(dynq_client_t *c, const char *method) {
  void *res = NULL;
  size_t len = 0;
  int r = dynq_call_raw(c, method, NULL, 0, &res, &len);
  free(res);
  return r != DYNQ_ENOMETHOD;
}

static void wav_file(const char *path, size_t n, uint32_t rate) {
  int16_t *s = calloc(n, sizeof(*s));
  uint8_t *b = malloc(44 + 2 * n);
  bb_t hdr;
  ck_assert_ptr_nonnull(s);
  ck_assert_ptr_nonnull(b);
  for (size_t i = 0; i < n; i++) s[i] = (int16_t)(8000.0 * sin((double)i * 0.3));
  make_wav(&hdr, rate, NULL, 0);
  set_u32(&hdr, 4, (uint32_t)(36 + 2 * n));
  set_u32(&hdr, 40, (uint32_t)(2 * n));
  memcpy(b, hdr.b, 44);
  for (size_t i = 0; i < n; i++) {
    b[44 + 2 * i] = (uint8_t)((uint16_t)s[i] & 0xff);
    b[45 + 2 * i] = (uint8_t)((uint16_t)s[i] >> 8);
  }
  ck_assert_int_eq(tu_write_file(path, b, 44 + 2 * n), 0);
  free(s);
  free(b);
}

START_TEST(daemon_end_to_end) {
  char onnx[4096], dyn[600], *out = NULL, *mdir = NULL, *ddir = NULL;
  tu_daemon_t d;
  dynq_client_t *c = NULL;
  int live = 0, ready = 0;

  snprintf(onnx, sizeof(onnx), "%s", tu_src("tests/fixtures/stateful.onnx"));
  if (access(onnx, R_OK) != 0) {
    fprintf(stderr, "SKIP daemon_end_to_end: %s does not exist yet (made by D2's "
                    "tests/fixtures/make_stateful.py)\n", onnx);
    return;
  }
  mdir = tu_mkdtemp();
  ddir = tu_mkdtemp();
  snprintf(dyn, sizeof(dyn), "%s/stateful.dynq", mdir);
  ck_assert_msg(tu_quantize_log(&out, onnx, dyn, NULL) == 0, "dynq-quantize: %s", out);
  free(out);
  ck_assert_int_eq(tu_daemon_start(&d, ddir, mdir, NULL), 0);
  ck_assert_int_eq(dynq_connect(d.sock, &c), 0);
  if (!daemon_has(c, "health.live") || !daemon_has(c, "session.close")) {
    fprintf(stderr, "SKIP daemon_end_to_end: this dynqd does not serve health/sessions yet\n");
    goto done;
  }

  ck_assert_int_eq(dynq_health(c, &live, &ready), 0);
  ck_assert_int_eq(live, 1);
  ck_assert_int_eq(ready, 1);
  {
    dynq_stats_t st;
    char *json = NULL;
    ck_assert_int_eq(dynq_stats(c, &st), 0);
    ck_assert_uint_ge(st.queue_cap, 1);
    ck_assert_uint_ge(st.connections, 1);
    dynq_stats_free(&st);
    ck_assert_int_eq(dynq_stats_json(c, &json), 0);
    ck_assert_msg(json[0] == '{' && strstr(json, "\"models\""), "%s", json);
    free(json);
  }

  /* A session over 5 chunks equals chaining the state by hand through
   * stateless infer calls, bit for bit (same model, same quantization). */
  {
    static const char *const binds[] = { "state", "stateN" };
    float x[8], state[8] = { 0 };
    uint64_t sid = 0;
    ck_assert_int_eq(dynq_session_open(c, "stateful", binds, 1, 0, &sid), 0);
    for (int k = 0; k < 5; k++) {
      dynq_infer_result_t rs, rp;
      const dynq_tensor_t *ys = NULL, *yp = NULL, *sn = NULL;
      for (int i = 0; i < 8; i++) x[i] = (float)sin(k * 8 + i) * 0.7f;
      dynq_tensor_t xin = { "x", DYNQ_FLOAT32, 2, { 1, 8 }, x, sizeof(x) };
      dynq_tensor_t both[2] = { xin, { "state", DYNQ_FLOAT32, 2, { 1, 8 }, state,
                                       sizeof(state) } };
      ck_assert_msg(dynq_session_infer(c, sid, &xin, 1, &rs) == 0, "%s",
                    dynq_client_errmsg(c));
      ck_assert_msg(dynq_infer(c, "stateful", 0, both, 2, &rp) == 0, "%s",
                    dynq_client_errmsg(c));
      for (int i = 0; i < rs.n_outputs; i++)
        if (strcmp(rs.outputs[i].name, "y") == 0) ys = &rs.outputs[i];
      for (int i = 0; i < rp.n_outputs; i++) {
        if (strcmp(rp.outputs[i].name, "y") == 0) yp = &rp.outputs[i];
        if (strcmp(rp.outputs[i].name, "stateN") == 0) sn = &rp.outputs[i];
      }
      ck_assert_ptr_nonnull(ys);
      ck_assert_ptr_nonnull(yp);
      ck_assert_ptr_nonnull(sn);
      ck_assert_uint_eq(ys->nbytes, yp->nbytes);
      ck_assert_msg(memcmp(ys->data, yp->data, ys->nbytes) == 0, "chunk %d differs", k);
      memcpy(state, sn->data, sizeof(state));
      dynq_infer_result_free(&rs);
      dynq_infer_result_free(&rp);
    }
    ck_assert_int_eq(dynq_session_reset(c, sid), 0);
    ck_assert_int_eq(dynq_session_close(c, sid), 0);
    ck_assert_int_eq(dynq_session_close(c, sid), DYNQ_ENOSESSION);
  }

  /* model.info's later fields reach a caller built with this header */
  {
    dynq_model_info_t mi;
    ck_assert_int_eq(dynq_model_info(c, "stateful", &mi), 0);
    ck_assert_uint_eq(mi.size, sizeof(mi));
    ck_assert_uint_eq(mi.version, 1);
    dynq_model_info_free(&mi);
  }

  /* Pipelined against the real daemon: 12 infers in flight on one
   * connection (two of them refused), collected in completion order, each
   * answer equal to the blocking call's for the same input. */
  {
    enum { N = 12 };
    static float xs[N][8], st0[8];
    uint32_t t[N];
    int seen[N] = { 0 };
    dynq_tensor_t ins[N][2];
    for (int k = 0; k < N; k++) {
      for (int i = 0; i < 8; i++) xs[k][i] = (float)cos(k * 8 + i) * 0.5f;
      dynq_tensor_t a = { "x", DYNQ_FLOAT32, 2, { 1, 8 }, xs[k], sizeof(xs[k]) };
      dynq_tensor_t b = { "state", DYNQ_FLOAT32, 2, { 1, 8 }, st0, sizeof(st0) };
      ins[k][0] = a;
      ins[k][1] = b;
      /* 3 and 7 name no model: their errors are theirs alone */
      ck_assert_int_eq(dynq_submit_infer(c, k == 3 || k == 7 ? "nosuch" : "stateful",
                                         ins[k], 2, NULL, &t[k]), 0);
    }
    ck_assert_int_eq(dynq_inflight(c), N);
    for (int n = 0; n < N; n++) {
      uint32_t got;
      ck_assert_int_eq(dynq_poll(c, 10000, &got), 1);
      int k = 0;
      while (k < N && t[k] != got) k++;
      ck_assert_int_lt(k, N);
      ck_assert_int_eq(seen[k]++, 0);
      dynq_infer_result_t rp, rb;
      int r = dynq_wait_infer(c, got, &rp);
      if (k == 3 || k == 7) {
        ck_assert_int_eq(r, DYNQ_ENOMODEL);
        continue;
      }
      ck_assert_msg(r == 0, "%s", dynq_client_errmsg(c));
      ck_assert_int_eq(dynq_infer(c, "stateful", 0, ins[k], 2, &rb), 0);
      ck_assert_int_eq(rp.n_outputs, rb.n_outputs);
      for (int o = 0; o < rp.n_outputs; o++) {
        ck_assert_str_eq(rp.outputs[o].name, rb.outputs[o].name);
        ck_assert_uint_eq(rp.outputs[o].nbytes, rb.outputs[o].nbytes);
        ck_assert(memcmp(rp.outputs[o].data, rb.outputs[o].data, rp.outputs[o].nbytes) == 0);
      }
      dynq_infer_result_free(&rp);
      dynq_infer_result_free(&rb);
    }
    ck_assert_int_eq(dynq_inflight(c), 0);
  }

  /* dynqctl: health, stats in each form, and a WAV streamed through */
  {
    const char *a1[] = { "--socket", d.sock, "health", NULL };
    ck_assert_msg(run_ctl(&out, a1) == 0, "%s", out);
    ck_assert_msg(strstr(out, "ready:  yes"), "%s", out);
    free(out);
    const char *a2[] = { "--socket", d.sock, "stats", "--prometheus", NULL };
    ck_assert_msg(run_ctl(&out, a2) == 0, "%s", out);
    ck_assert_msg(strstr(out, "# TYPE dynq_requests_total counter\n") &&
                      strstr(out, "dynq_requests_total{model=\"stateful\"} "),
                  "%s", out);
    free(out);
    char wavp[700], spec[720];
    snprintf(wavp, sizeof(wavp), "%s/in.wav", ddir);
    wav_file(wavp, 40, 16000);
    snprintf(spec, sizeof(spec), "x=%s", wavp);
    const char *a3[] = { "--socket", d.sock, "stream", "stateful", "--input", spec, "--chunk",
                         "8", "--context", "0", "--bind", "state=stateN", "--output", "y",
                         "--json", NULL };
    ck_assert_msg(run_ctl(&out, a3) == 0, "%s", out);
    int lines = 0;
    for (char *p = out; (p = strchr(p, '\n')) != NULL; p++) lines++;
    ck_assert_msg(lines == 5, "%s", out);
    ck_assert_msg(strstr(out, "{\"chunk\": 4, \"time_s\": 0.002000, \"output\": \"y\", "
                              "\"shape\": [1, 8], \"values\": [") != NULL,
                  "%s", out);
    free(out);
  }

  /* shared memory: inputs read from and the output written into a sealed
   * memfd region give the same bytes as the inline call */
  if (daemon_has(c, "shm.unregister")) {
    float x[8], st[8];
    void *base = NULL;
    uint64_t region = 0;
    int fd = -1;
    dynq_infer_result_t rp, rs;
    dynq_infer_opts_t o;
    for (int i = 0; i < 8; i++) {
      x[i] = 0.1f * (float)i - 0.3f;
      st[i] = 0.05f * (float)(7 - i);
    }
    dynq_tensor_t inl[2] = { { "x", DYNQ_FLOAT32, 2, { 1, 8 }, x, sizeof(x) },
                             { "state", DYNQ_FLOAT32, 2, { 1, 8 }, st, sizeof(st) } };
    dynq_tensor_t ref[2] = { { "x", DYNQ_FLOAT32, 2, { 1, 8 }, NULL, sizeof(x) },
                             { "state", DYNQ_FLOAT32, 2, { 1, 8 }, NULL, sizeof(st) } };
    dynq_shm_ref_t in_shm[2] = { { 0, 0, 32 }, { 0, 64, 32 } };
    dynq_output_shm_t out_shm[1] = { { "y", { 0, 128, 32 } } };
    ck_assert_int_eq(dynq_shm_create(4096, &fd, &base), 0);
    memcpy(base, x, 32);
    memcpy((char *)base + 64, st, 32);
    ck_assert_msg(dynq_shm_register(c, fd, 4096, &region) == 0, "%s", dynq_client_errmsg(c));
    in_shm[0].region = in_shm[1].region = out_shm[0].ref.region = region;
    dynq_infer_opts_init(&o);
    o.input_shm = in_shm;
    o.output_shm = out_shm;
    o.n_output_shm = 1;
    o.timeout_ms = 60000;
    ck_assert_msg(dynq_infer_ex(c, "stateful", ref, 2, &o, &rs) == 0, "%s",
                  dynq_client_errmsg(c));
    ck_assert_int_eq(dynq_infer(c, "stateful", 0, inl, 2, &rp), 0);
    for (int i = 0; i < rs.n_outputs; i++) {
      if (strcmp(rs.outputs[i].name, "y") != 0) continue;
      ck_assert_ptr_null(rs.outputs[i].data);
      ck_assert_uint_eq(rs.outputs[i].nbytes, 32);
      for (int k = 0; k < rp.n_outputs; k++)
        if (strcmp(rp.outputs[k].name, "y") == 0)
          ck_assert_mem_eq((char *)base + 128, rp.outputs[k].data, 32);
    }
    dynq_infer_result_free(&rs);
    dynq_infer_result_free(&rp);
    ck_assert_int_eq(dynq_shm_unregister(c, region), 0);
    ck_assert_int_eq(dynq_infer_ex(c, "stateful", ref, 2, &o, &rs), DYNQ_ENOREGION);
    ck_assert_int_eq(dynq_shm_unregister(c, region), DYNQ_ENOREGION);
    dynq_shm_destroy(fd, base, 4096);
  } else {
    fprintf(stderr, "SKIP shm part of daemon_end_to_end: no shm.unregister\n");
  }

  /* admin (this test's uid is dynqd's own): reload bumps the version,
   * unload then load through dynqctl */
  if (daemon_has(c, "model.reload")) {
    uint64_t v1 = 0, v2 = 0;
    dynq_infer_result_t r;
    float x[16] = { 0 };
    dynq_tensor_t both[2] = { { "x", DYNQ_FLOAT32, 2, { 1, 8 }, x, 32 },
                              { "state", DYNQ_FLOAT32, 2, { 1, 8 }, x + 8, 32 } };
    ck_assert_msg(dynq_model_reload(c, "stateful", &v1) == 0, "%s", dynq_client_errmsg(c));
    ck_assert_msg(dynq_model_reload(c, "stateful", &v2) == 0, "%s", dynq_client_errmsg(c));
    ck_assert_uint_eq(v2, v1 + 1);
    ck_assert_int_eq(dynq_model_reload(c, "nosuch", &v2), DYNQ_ENOMODEL);
    const char *a1[] = { "--socket", d.sock, "unload", "stateful", NULL };
    ck_assert_msg(run_ctl(&out, a1) == 0, "%s", out);
    ck_assert_str_eq(out, "unloaded stateful\n");
    free(out);
    ck_assert_int_eq(dynq_infer(c, "stateful", 0, both, 2, &r), DYNQ_ENOMODEL);
    const char *a2[] = { "--socket", d.sock, "load", "stateful", NULL };
    ck_assert_msg(run_ctl(&out, a2) == 0, "%s", out);
    ck_assert_msg(strncmp(out, "loaded stateful (version ", 25) == 0, "%s", out);
    free(out);
    const char *a3[] = { "--socket", d.sock, "load", "evil", "../x.dynq", NULL };
    ck_assert_int_eq(run_ctl(&out, a3), 1);
    ck_assert_msg(strstr(out, "EDENIED") != NULL, "%s", out);
    free(out);
    ck_assert_int_eq(dynq_infer(c, "stateful", 0, both, 2, &r), 0);
    dynq_infer_result_free(&r);
  } else {
    fprintf(stderr, "SKIP admin part of daemon_end_to_end: no model.reload\n");
  }

done:
  dynq_close(c);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  tu_rmtree(mdir);
  tu_rmtree(ddir);
  free(mdir);
  free(ddir);
}
END_TEST



/* A stats reply with counters this client version has no field for. */
static void script_counters(xfake_t *f, int fd, const dynq__rpc_msg_t *req, int n, int pfd) {
  dynq__wbuf_t w;
  (void)f;
  (void)n;
  (void)pfd;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, req->msgid);
  dynq__w_map_begin(&w);
  dynq__w_key(&w, "uptime_s");
  dynq__w_double(&w, 2.0);
  dynq__w_key(&w, "requests_total");
  dynq__w_uint(&w, 12);
  dynq__w_key(&w, "inline_total");
  dynq__w_uint(&w, 7);
  dynq__w_key(&w, "brand_new_total");
  dynq__w_uint(&w, 3);
  dynq__w_key(&w, "odd.gauge");
  dynq__w_uint(&w, 4);
  dynq__w_key(&w, "negative");  /* not a counter: skipped */
  dynq__w_int(&w, -1);
  dynq__w_key(&w, "models");
  dynq__w_map(&w, 0);
  dynq__w_map_end(&w);
  tu_send_wbuf(fd, &w);
}

START_TEST(stats_unknown_counters) {
  xfake_t f;
  dynq_client_t *c = NULL;
  dynq_stats_t st;
  uint64_t v = 0;
  xfake_start(&f, script_counters);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_stats(c, &st), 0);
  ck_assert_uint_eq(st.size, sizeof(st));
  ck_assert_uint_eq(st.inline_total, 7);
  ck_assert_int_eq(st.n_counters, 4);
  ck_assert_str_eq(st.counters[0].name, "requests_total");
  ck_assert_int_eq(dynq_stats_counter(&st, "brand_new_total", &v), 0);
  ck_assert_uint_eq(v, 3);
  ck_assert_int_eq(dynq_stats_counter(&st, "negative", &v), -ENOENT);
  ck_assert_int_eq(dynq_stats_counter(&st, "uptime_s", &v), -ENOENT);
  char *text = render(dynq__prom_render, &st);
  ck_assert_msg(strstr(text, "# TYPE dynq_brand_new_total counter\ndynq_brand_new_total 3\n") &&
                    strstr(text, "# TYPE dynq_inline_total counter\ndynq_inline_total 7\n") &&
                    strstr(text, "# TYPE dynq_odd_gauge gauge\ndynq_odd_gauge 4\n") &&
                    strstr(text, "dynq_requests_total 12") == NULL &&
                    strstr(text, "negative") == NULL,
                "%s", text);
  free(text);
  text = render(dynq__stats_table, &st);
  ck_assert_msg(strstr(text, "inline_total 7, brand_new_total 3, odd.gauge 4\n"), "%s", text);
  free(text);
  dynq_stats_free(&st);
  ck_assert_ptr_null(st.counters);
  /* a caller compiled against the first layout gets that much, no leak */
  struct {
    dynq_stats_t head;
  } old;
  size_t v0 = offsetof(dynq_stats_t, models) + sizeof(old.head.models);
  memset(&old, 0xab, sizeof(old));
  ck_assert_int_eq(dynq_stats_sized(c, &old.head, v0), 0);
  ck_assert_uint_eq(old.head.size, v0);
  ck_assert_uint_eq(old.head.requests_total, 12);
  ck_assert_int_eq(dynq_stats_counter(&old.head, "inline_total", &v), -ENOENT);
  ck_assert_uint_eq(*((unsigned char *)&old.head + v0), 0xab);  /* untouched beyond */
  dynq_stats_free(&old.head);
  /* smaller than the first layout: refused */
  ck_assert_int_eq(dynq_stats_sized(c, &st, v0 - 1), -EINVAL);
  xfake_join(&f, c);
  xfake_stop(&f);
}
END_TEST

/* ---- pipelining: several requests in flight on one connection ---- */

/* Held requests of script_pipeline (msgid and params.i), answered in
 * reverse order on "release". */
typedef struct held {
  uint32_t id[64];
  int64_t i[64];
  int n;
} held_t;

/* {"i": i} */
static void w_i(dynq__wbuf_t *w, int64_t i) {
  dynq__w_map_begin(w);
  dynq__w_key(w, "i");
  dynq__w_int(w, i);
  dynq__w_map_end(w);
}

static void script_pipeline(xfake_t *f, int fd, const dynq__rpc_msg_t *req, int n, int pfd) {
  held_t *h = f->user;
  dynq__wbuf_t w;
  (void)n;
  (void)pfd;
  if (method_is(req, "slow")) {
    int64_t i = -1;
    dynq__obj_int(dynq__obj_get(req->params, "i"), &i);
    if (h->n < 64) {
      h->id[h->n] = req->msgid;
      h->i[h->n++] = i;
    }
    return;
  }
  if (method_is(req, "die")) {
    f->requests = -2;  /* the loop ends and closes the connection */
    return;
  }
  dynq__wbuf_init(&w);
  if (method_is(req, "release")) {
    /* the held ones last to first, odd i as errors, then release itself */
    for (int k = h->n - 1; k >= 0; k--) {
      if (h->i[k] % 2) {
        char msg[64];
        snprintf(msg, sizeof(msg), "no model %lld", (long long)h->i[k]);
        dynq__w_error_response(&w, h->id[k], DYNQ_ENOMODEL, msg);
      } else {
        dynq__w_result_head(&w, h->id[k]);
        w_i(&w, h->i[k]);
      }
    }
    h->n = 0;
  }
  dynq__w_result_head(&w, req->msgid);
  if (method_is(req, "ping")) dynq__w_str(&w, "pong");
  else dynq__w_nil(&w);
  tu_send_wbuf(fd, &w);
}

static uint32_t submit_i(dynq_client_t *c, const char *method, int64_t i) {
  dynq__wbuf_t w;
  uint32_t t = 0;
  dynq__wbuf_init(&w);
  w_i(&w, i);
  ck_assert_int_eq(dynq__wbuf_status(&w), 0);
  ck_assert_int_eq(dynq_submit_raw(c, method, w.data, w.len, &t), 0);
  dynq__wbuf_free(&w);
  return t;
}

START_TEST(pipeline_out_of_order) {
  xfake_t f;
  held_t h;
  dynq_client_t *c = NULL;
  uint32_t t[6], got;
  memset(&h, 0, sizeof(h));
  xfake_start(&f, script_pipeline);
  f.user = &h;
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  for (int k = 0; k < 5; k++) t[k] = submit_i(c, "slow", k);
  ck_assert_int_eq(dynq_inflight(c), 5);
  /* nothing answered yet; a blocking call still gets its own answer */
  ck_assert_int_eq(dynq_poll(c, 0, &got), 0);
  ck_assert_int_eq(dynq_poll(c, 20, &got), 0);
  ck_assert_int_eq(dynq_ping(c), 0);
  ck_assert_int_eq(dynq_inflight(c), 5);
  t[5] = submit_i(c, "release", 99);
  /* completions come as answered: reverse order, then release, each once */
  static const int order[] = {4, 3, 2, 1, 0, 5};
  for (int k = 0; k < 6; k++) {
    ck_assert_int_eq(dynq_poll(c, 5000, &got), 1);
    ck_assert_uint_eq(got, t[order[k]]);
  }
  ck_assert_int_eq(dynq_poll(c, 0, &got), 0);
  ck_assert_int_eq(dynq_inflight(c), 6);
  /* each answer belongs to its own request: results and errors */
  for (int k = 0; k < 5; k++) {
    void *res = NULL;
    size_t len = 0;
    int r = dynq_wait_raw(c, t[k], &res, &len);
    if (k % 2) {
      char want[64];
      snprintf(want, sizeof(want), "no model %d", k);
      ck_assert_int_eq(r, DYNQ_ENOMODEL);
      ck_assert_str_eq(dynq_client_errmsg(c), want);
      ck_assert_ptr_null(res);
    } else {
      static const uint8_t want[] = {0x81, 0xa1, 'i'};
      ck_assert_int_eq(r, 0);
      ck_assert_uint_eq(len, 4);
      ck_assert_mem_eq(res, want, 3);
      ck_assert_int_eq(((uint8_t *)res)[3], k);
      free(res);
    }
  }
  /* collected tickets are gone */
  void *res = NULL;
  size_t len = 0;
  ck_assert_int_eq(dynq_wait_raw(c, t[0], &res, &len), -ENOENT);
  ck_assert_int_eq(dynq_forget(c, t[5]), 0);
  ck_assert_int_eq(dynq_forget(c, t[5]), -ENOENT);
  ck_assert_int_eq(dynq_inflight(c), 0);
  /* a forgotten ticket's late answer is dropped, not misdelivered */
  uint32_t lost = submit_i(c, "slow", 10);
  ck_assert_int_eq(dynq_forget(c, lost), 0);
  uint32_t rel = submit_i(c, "release", 0);
  ck_assert_int_eq(dynq_poll(c, 5000, &got), 1);
  ck_assert_uint_eq(got, rel);
  ck_assert_int_eq(dynq_wait_raw(c, rel, &res, &len), 0);
  free(res);
  ck_assert_int_eq(dynq_inflight(c), 0);
  xfake_join(&f, c);
  xfake_stop(&f);
}
END_TEST

START_TEST(pipeline_limit) {
  xfake_t f;
  held_t h;
  dynq_client_t *c = NULL;
  uint32_t t;
  memset(&h, 0, sizeof(h));
  xfake_start(&f, script_pipeline);
  f.user = &h;
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_client_set_max_inflight(c, 0), DYNQ_EPARAMS);
  ck_assert_int_eq(dynq_client_set_max_inflight(c, DYNQ_CLIENT_INFLIGHT_MAX + 1),
                   DYNQ_EPARAMS);
  ck_assert_int_eq(dynq_client_set_max_inflight(c, 3), 0);
  for (int k = 0; k < 3; k++) submit_i(c, "slow", 2 * k);
  /* the fourth is refused before anything is sent */
  ck_assert_int_eq(dynq_submit_raw(c, "slow", NULL, 0, &t), DYNQ_ELIMIT);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "3 requests already in flight"));
  ck_assert_int_eq(dynq_ping(c), DYNQ_ELIMIT);  /* blocking calls count too */
  /* collecting one makes room */
  ck_assert_int_eq(dynq_client_set_max_inflight(c, 4), 0);
  uint32_t rel = submit_i(c, "release", 0);
  void *res;
  size_t len;
  ck_assert_int_eq(dynq_wait_raw(c, rel, &res, &len), 0);
  free(res);
  ck_assert_int_eq(dynq_inflight(c), 3);
  xfake_join(&f, c);
  /* the refused requests never reached the server */
  ck_assert_str_eq(f.log, "slow {\"i\": 0}\nslow {\"i\": 2}\nslow {\"i\": 4}\n"
                          "release {\"i\": 0}\n");
  xfake_stop(&f);
}
END_TEST

START_TEST(pipeline_connection_closed) {
  xfake_t f;
  held_t h;
  dynq_client_t *c = NULL;
  uint32_t t[4], got;
  int seen[4] = {0};
  memset(&h, 0, sizeof(h));
  xfake_start(&f, script_pipeline);
  f.user = &h;
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  for (int k = 0; k < 3; k++) t[k] = submit_i(c, "slow", k);
  t[3] = submit_i(c, "die", 0);
  /* every ticket completes exactly once, with the connection's error */
  for (int k = 0; k < 4; k++) {
    ck_assert_int_eq(dynq_poll(c, 5000, &got), 1);
    for (int q = 0; q < 4; q++)
      if (got == t[q]) seen[q]++;
  }
  for (int q = 0; q < 4; q++) ck_assert_int_eq(seen[q], 1);
  ck_assert_int_eq(dynq_poll(c, 0, &got), DYNQ_ECLOSED);
  for (int k = 0; k < 4; k++) {
    dynq_infer_result_t r;
    ck_assert_int_eq(dynq_wait_infer(c, t[k], &r), DYNQ_ECLOSED);
    ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "closed"));
  }
  ck_assert_int_eq(dynq_inflight(c), 0);
  uint32_t t5;
  ck_assert_int_eq(dynq_submit_raw(c, "slow", NULL, 0, &t5), DYNQ_ECLOSED);
  ck_assert_int_eq(dynq_ping(c), DYNQ_ECLOSED);
  xfake_join(&f, c);
  xfake_stop(&f);
}
END_TEST

/* Bytes waiting to be read on fd. */
static int unread(int fd) {
  int n = -1;
  ck_assert_int_eq(ioctl(fd, FIONREAD, &n), 0);
  return n;
}

/* The pipelined submits queue their requests and write them together when
 * the caller next waits (or past DYNQ__CLIENT_FLUSH_AT bytes); a close
 * still sends what was queued; a write that fails completes the queued
 * tickets with the connection's error.  The test plays the server on the
 * accepted socket itself, so it sees exactly when bytes arrive. */
START_TEST(pipeline_submits_leave_in_one_write) {
  char *dir = tu_mkdtemp(), path[512];
  snprintf(path, sizeof path, "%s/s.sock", dir);
  int lfd = tu_listen_unix(path, 4);
  ck_assert_int_ge(lfd, 0);
  dynq_client_t *c = NULL;
  ck_assert_int_eq(dynq_connect(path, &c), 0);
  tu_rpc_t srv;
  memset(&srv, 0, sizeof srv);
  srv.fd = accept(lfd, NULL, NULL);
  ck_assert_int_ge(srv.fd, 0);
  float x[4] = {1, 2, 3, 4};
  dynq_tensor_t in = {"x", DYNQ_FLOAT32, 1, {4}, x, sizeof x};
  uint32_t t[3], got;
  for (int k = 0; k < 3; k++) ck_assert_int_eq(dynq_submit_infer(c, "m", &in, 1, NULL, &t[k]), 0);
  ck_assert_int_eq(dynq_inflight(c), 3);
  ck_assert_int_eq(unread(srv.fd), 0);          /* queued, not written */
  ck_assert_int_eq(dynq_poll(c, 0, &got), 0);   /* nothing answered: the queue goes */
  ck_assert_int_gt(unread(srv.fd), 0);
  for (int k = 0; k < 3; k++) {                 /* whole requests, in order */
    dynq__rpc_msg_t m;
    ck_assert_int_eq(tu_rpc_recv(&srv, &m), 0);
    ck_assert_int_eq(m.type, DYNQ_RPC_REQUEST);
    ck_assert_uint_eq(m.msgid, t[k]);
    ck_assert_str_eq(m.method, "infer");
    dynq__rpc_free(&m);
  }
  ck_assert_int_eq(unread(srv.fd), 0);
  /* an answer to the middle one: its output arrives whole */
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  /* an answer to the middle one, two outputs: each arrives whole, named,
   * its data on a 64-byte line */
  static const int8_t z[3] = {-7, 0, 9};
  dynq__w_result_head(&w, t[1]);
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "outputs");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "y");
  dynq__wtensor_t y = {DYNQ_FLOAT32, 1, {4}, x, sizeof x};
  dynq__w_wtensor(&w, &y);
  dynq__w_str(&w, "zz");
  dynq__wtensor_t zt = {DYNQ_INT8, 2, {1, 3}, z, sizeof z};
  dynq__w_wtensor(&w, &zt);
  dynq__w_str(&w, "compute_us");
  dynq__w_int(&w, 5);
  tu_send_wbuf(srv.fd, &w);
  ck_assert_int_eq(dynq_poll(c, 5000, &got), 1);
  ck_assert_uint_eq(got, t[1]);
  dynq_infer_result_t res;
  ck_assert_int_eq(dynq_wait_infer(c, t[1], &res), 0);
  ck_assert_int_eq(res.n_outputs, 2);
  ck_assert_str_eq(res.outputs[0].name, "y");
  ck_assert_uint_eq(res.outputs[0].nbytes, sizeof x);
  ck_assert_mem_eq(res.outputs[0].data, x, sizeof x);
  ck_assert_str_eq(res.outputs[1].name, "zz");
  ck_assert_int_eq(res.outputs[1].dtype, DYNQ_INT8);
  ck_assert_int_eq(res.outputs[1].rank, 2);
  ck_assert_int_eq(res.outputs[1].shape[1], 3);
  ck_assert_uint_eq(res.outputs[1].nbytes, sizeof z);
  ck_assert_mem_eq(res.outputs[1].data, z, sizeof z);
  for (int k = 0; k < 2; k++)
    ck_assert_uint_eq((uintptr_t)res.outputs[k].data % 64, 0);
  ck_assert_int_eq(res.compute_us, 5);
  dynq_infer_result_free(&res);
  ck_assert_ptr_null(res.outputs);
  /* an envelope the in-place path leaves alone (array16 header): the same
   * decoder reads it from the general path */
  dynq__wbuf_init(&w);
  uint8_t env[8] = {0xdc, 0x00, 0x04, 0x01, 0xce};
  env[5] = (uint8_t)(t[0] >> 16);  /* msgids here are small: 3 bytes of 4 */
  env[6] = (uint8_t)(t[0] >> 8);
  env[7] = (uint8_t)t[0];
  tu_write_all(srv.fd, env, 5);
  tu_write_all(srv.fd, (uint8_t[]){0x00}, 1);
  tu_write_all(srv.fd, env + 5, 3);
  tu_write_all(srv.fd, (uint8_t[]){0xc0}, 1);
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "outputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "y");
  dynq__w_wtensor(&w, &y);
  tu_send_wbuf(srv.fd, &w);
  ck_assert_int_eq(dynq_wait_infer(c, t[0], &res), 0);
  ck_assert_int_eq(res.n_outputs, 1);
  ck_assert_mem_eq(res.outputs[0].data, x, sizeof x);
  dynq_infer_result_free(&res);
  /* an infer ticket answered in place is not a raw answer */
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, t[2]);
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "outputs");
  dynq__w_map(&w, 0);
  tu_send_wbuf(srv.fd, &w);
  void *raw = NULL;
  size_t rawlen = 0;
  ck_assert_int_eq(dynq_wait_raw(c, t[2], &raw, &rawlen), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "collect it with dynq_wait_infer"));
  ck_assert_ptr_null(raw);
  ck_assert_int_eq(dynq_inflight(c), 0);
  /* past the threshold the queue is written without waiting */
  enum { BIG = (DYNQ__CLIENT_FLUSH_AT + 4096) / 4 };
  float *bx = calloc(BIG, sizeof(float));
  dynq_tensor_t big = {"x", DYNQ_FLOAT32, 1, {BIG}, bx, BIG * sizeof(float)};
  uint32_t tb;
  ck_assert_int_eq(dynq_submit_infer(c, "m", &big, 1, NULL, &tb), 0);
  ck_assert_int_gt(unread(srv.fd), BIG * 4);
  free(bx);
  /* the server goes away: a queued request's write fails, and every
   * ticket outstanding completes once with the connection's error */
  uint32_t tq;
  ck_assert_int_eq(dynq_submit_infer(c, "m", &in, 1, NULL, &tq), 0);
  tu_rpc_close(&srv);
  int done = 0, r;
  while ((r = dynq_poll(c, 5000, &got)) == 1) done++;
  ck_assert_int_eq(r, DYNQ_ECLOSED);
  ck_assert_int_eq(done, 2);                    /* tb, tq */
  ck_assert_int_eq(dynq_wait_infer(c, tq, &res), DYNQ_ECLOSED);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "closed"));
  ck_assert_int_eq(dynq_submit_infer(c, "m", &in, 1, NULL, &tq), DYNQ_ECLOSED);
  dynq_close(c);
  /* a request submitted and never waited for still leaves on close */
  ck_assert_int_eq(dynq_connect(path, &c), 0);
  memset(&srv, 0, sizeof srv);
  srv.fd = accept(lfd, NULL, NULL);
  ck_assert_int_eq(dynq_submit_infer(c, "m", &in, 1, NULL, &t[0]), 0);
  ck_assert_int_eq(unread(srv.fd), 0);
  dynq_close(c);
  dynq__rpc_msg_t m;
  ck_assert_int_eq(tu_rpc_recv(&srv, &m), 0);
  ck_assert_uint_eq(m.msgid, t[0]);
  dynq__rpc_free(&m);
  tu_rpc_close(&srv);
  close(lfd);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* ---- the infer result decoder (answers decoded as they arrive) ---- */

/* One result map {outputs: {y: <tensor as case k writes it>}, compute_us}. */
static void w_bad_output(dynq__wbuf_t *w, int k) {
  static const float v[3] = {1, 2, 3};
  if (k == 0) {                                        /* not a map */
    dynq__w_str(w, "float32");
    return;
  }
  dynq__w_map_begin(w);
  switch (k) {
  case 1:                                              /* dtype missing */
    dynq__w_key(w, "shape"); dynq__w_array(w, 1); dynq__w_int(w, 3);
    dynq__w_key(w, "data"); dynq__w_bin(w, v, sizeof v);
    break;
  case 2:                                              /* dtype not a string */
    dynq__w_key(w, "dtype"); dynq__w_int(w, 1);
    break;
  case 3:                                              /* unknown dtype */
    dynq__w_key(w, "dtype"); dynq__w_str(w, "float128");
    break;
  case 4:                                              /* shape missing */
    dynq__w_key(w, "dtype"); dynq__w_str(w, "float32");
    dynq__w_key(w, "data"); dynq__w_bin(w, v, sizeof v);
    break;
  case 5:                                              /* shape not an array */
    dynq__w_key(w, "dtype"); dynq__w_str(w, "float32");
    dynq__w_key(w, "shape"); dynq__w_int(w, 3);
    break;
  case 6:                                              /* rank over the limit */
    dynq__w_key(w, "shape"); dynq__w_array(w, 9);
    for (int d = 0; d < 9; d++) dynq__w_int(w, 1);
    break;
  case 7:                                              /* a dim not an integer */
    dynq__w_key(w, "shape"); dynq__w_array(w, 1); dynq__w_str(w, "3");
    break;
  case 8:                                              /* a negative dim */
    dynq__w_key(w, "shape"); dynq__w_array(w, 1); dynq__w_int(w, -3);
    break;
  case 9:                                              /* too many elements */
    dynq__w_key(w, "dtype"); dynq__w_str(w, "int8");
    dynq__w_key(w, "shape"); dynq__w_array(w, 2);
    dynq__w_int(w, (int64_t)1 << 20); dynq__w_int(w, (int64_t)1 << 20);
    dynq__w_key(w, "data"); dynq__w_bin(w, v, 1);
    break;
  case 10:                                             /* data missing */
    dynq__w_key(w, "dtype"); dynq__w_str(w, "float32");
    dynq__w_key(w, "shape"); dynq__w_array(w, 1); dynq__w_int(w, 3);
    break;
  case 11:                                             /* data not bin */
    dynq__w_key(w, "data"); dynq__w_str(w, "abc");
    break;
  case 12:                                             /* data the wrong size */
    dynq__w_key(w, "dtype"); dynq__w_str(w, "float32");
    dynq__w_key(w, "shape"); dynq__w_array(w, 1); dynq__w_int(w, 4);
    dynq__w_key(w, "data"); dynq__w_bin(w, v, sizeof v);
    break;
  case 13:                                             /* shm without a size */
    dynq__w_key(w, "shm"); dynq__w_map(w, 1); dynq__w_key(w, "region"); dynq__w_uint(w, 1);
    break;
  case 14:                                             /* shm not a map */
    dynq__w_key(w, "shm"); dynq__w_uint(w, 1);
    break;
  }
  dynq__w_map_end(w);
}

START_TEST(infer_decoder_names_what_is_wrong) {
  static const struct {
    int code;
    const char *needle;
  } want[] = {
    {DYNQ_EPROTO, "output 'y': tensor is not a map"},
    {DYNQ_EPROTO, "output 'y': tensor field 'dtype' is missing"},
    {DYNQ_EPROTO, "output 'y': tensor field 'dtype' is not a string"},
    {DYNQ_EPROTO, "output 'y': unknown tensor dtype 'float128'"},
    {DYNQ_EPROTO, "output 'y': tensor field 'shape' is missing"},
    {DYNQ_EPROTO, "output 'y': tensor field 'shape' is not an array"},
    {DYNQ_EPROTO, "output 'y': tensor rank 9 exceeds the limit of 8"},
    {DYNQ_EPROTO, "output 'y': tensor shape[0] is not an integer"},
    {DYNQ_EPROTO, "output 'y': tensor shape[0] is negative (-3)"},
    {DYNQ_EPROTO, "output 'y': tensor has more than 2147483648 elements"},
    {DYNQ_EPROTO, "output 'y': tensor field 'data' is missing"},
    {DYNQ_EPROTO, "output 'y': tensor field 'data' is not bin"},
    {DYNQ_EPROTO, "output 'y': tensor data has 12 bytes, shape and dtype need 16"},
    {DYNQ_EPROTO, "output 'y': shm reference without a valid 'size'"},
    {DYNQ_EPROTO, "output 'y': 'shm' is not a map"},
  };
  char err[512];
  dynq_infer_result_t res;
  for (int k = 0; k < (int)(sizeof(want) / sizeof(want[0])); k++) {
    dynq__wbuf_t w;
    dynq__wbuf_init(&w);
    dynq__w_map(&w, 2);
    dynq__w_str(&w, "outputs");
    dynq__w_map(&w, 1);
    dynq__w_str(&w, "y");
    w_bad_output(&w, k);
    dynq__w_str(&w, "compute_us");
    dynq__w_int(&w, 1);
    ck_assert_int_eq(dynq__wbuf_status(&w), 0);
    err[0] = '\0';
    int rc = dynq__decode_infer_result(w.data, w.len, &res, NULL, err, sizeof err);
    ck_assert_msg(rc == want[k].code && strstr(err, want[k].needle) != NULL,
                  "case %d: %d '%s'", k, rc, err);
    dynq__wbuf_free(&w);
  }

  /* the envelope's own fields */
  static const struct {
    const char *name;
    int code;
    const char *needle;
  } top[] = {
    {"not a map", DYNQ_EPROTO, "'result'"},
    {"no outputs", DYNQ_EPROTO, "'outputs'"},
    {"outputs not a map", DYNQ_EPROTO, "'outputs'"},
    {"outputs twice", DYNQ_EPROTO, "'outputs'"},
    {"compute_us a string", DYNQ_EPROTO, "'compute_us'"},
    {"key not a string", DYNQ_EPROTO, "'outputs key'"},
    {"key with a NUL", DYNQ_EPROTO, "'outputs key'"},
    {"key not UTF-8", DYNQ_EPROTO, "'outputs key'"},
    {"4097 outputs", DYNQ_ETOOBIG, "4097 outputs (limit 4096)"},
  };
  for (int k = 0; k < (int)(sizeof(top) / sizeof(top[0])); k++) {
    dynq__wbuf_t w;
    dynq__wbuf_init(&w);
    switch (k) {
    case 0: dynq__w_array(&w, 0); break;
    case 1: dynq__w_map(&w, 1); dynq__w_str(&w, "compute_us"); dynq__w_int(&w, 1); break;
    case 2: dynq__w_map(&w, 1); dynq__w_str(&w, "outputs"); dynq__w_array(&w, 0); break;
    case 3:
      dynq__w_map(&w, 2);
      dynq__w_str(&w, "outputs"); dynq__w_map(&w, 0);
      dynq__w_str(&w, "outputs"); dynq__w_map(&w, 0);
      break;
    case 4:
      dynq__w_map(&w, 2);
      dynq__w_str(&w, "outputs"); dynq__w_map(&w, 0);
      dynq__w_str(&w, "compute_us"); dynq__w_str(&w, "5");
      break;
    case 5: case 6: case 7:
      dynq__w_map(&w, 1);
      dynq__w_str(&w, "outputs"); dynq__w_map(&w, 1);
      if (k == 5) dynq__w_int(&w, 7);
      else if (k == 6) dynq__w_strn(&w, "a\0b", 3);
      else dynq__w_strn(&w, "\xff\xfe", 2);
      dynq__w_map(&w, 0);
      break;
    case 8:
      dynq__w_map(&w, 1);
      dynq__w_str(&w, "outputs"); dynq__w_map(&w, 4097);
      for (int i = 0; i < 4097; i++) { dynq__w_int(&w, i); dynq__w_nil(&w); }
      break;
    }
    ck_assert_int_eq(dynq__wbuf_status(&w), 0);
    err[0] = '\0';
    int rc = dynq__decode_infer_result(w.data, w.len, &res, NULL, err, sizeof err);
    ck_assert_msg(rc == top[k].code && strstr(err, top[k].needle) != NULL, "%s: %d '%s'",
                  top[k].name, rc, err);
    dynq__wbuf_free(&w);
  }

  /* A good result with fields it does not know, an shm output and an
   * int64 one: decoded; then every shorter prefix of it is refused cleanly
   * (the decoder never reads past the bytes it was given). */
  static const int64_t iv[2] = {-5, (int64_t)1 << 40};
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_map(&w, 5);
  dynq__w_str(&w, "queue_us");
  dynq__w_uint(&w, 70000);
  dynq__w_str(&w, "outputs");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "ids");
  dynq__wtensor_t it = {DYNQ_INT64, 2, {1, 2}, iv, sizeof iv};
  dynq__w_wtensor(&w, &it);
  dynq__w_str(&w, "big");
  dynq__w_map(&w, 3);
  dynq__w_str(&w, "dtype"); dynq__w_str(&w, "float32");
  dynq__w_str(&w, "shape"); dynq__w_array(&w, 1); dynq__w_int(&w, 1000);
  dynq__w_str(&w, "shm"); dynq__w_map(&w, 3);
  dynq__w_str(&w, "region"); dynq__w_uint(&w, 2);
  dynq__w_str(&w, "offset"); dynq__w_uint(&w, 64);
  dynq__w_str(&w, "size"); dynq__w_uint(&w, 4000);
  dynq__w_str(&w, "compute_us");
  dynq__w_int(&w, -1);  /* whatever dynqd says, as an int64 */
  dynq__w_str(&w, "batch");
  dynq__w_double(&w, 1.5);
  dynq__w_str(&w, "threads");
  dynq__w_array(&w, 2); dynq__w_nil(&w); dynq__w_bool(&w, 1);
  ck_assert_int_eq(dynq__wbuf_status(&w), 0);
  ck_assert_int_eq(dynq__decode_infer_result(w.data, w.len, &res, NULL, err, sizeof err), 0);
  ck_assert_int_eq(res.n_outputs, 2);
  ck_assert_int_eq(res.compute_us, -1);
  ck_assert_str_eq(res.outputs[0].name, "ids");
  ck_assert_int_eq(res.outputs[0].dtype, DYNQ_INT64);
  ck_assert_mem_eq(res.outputs[0].data, iv, sizeof iv);
  ck_assert_str_eq(res.outputs[1].name, "big");
  ck_assert_ptr_null(res.outputs[1].data);
  ck_assert_uint_eq(res.outputs[1].nbytes, 4000);
  ck_assert_int_eq(res.outputs[1].shape[0], 1000);
  dynq_infer_result_free(&res);
  for (size_t cut = 0; cut < w.len; cut++) {
    uint8_t *copy = malloc(cut ? cut : 1);  /* exactly cut bytes: ASan sees overreads */
    memcpy(copy, w.data, cut);
    ck_assert_msg(dynq__decode_infer_result(copy, cut, &res, NULL, err, sizeof err) < 0,
                  "prefix of %zu bytes decoded", cut);
    free(copy);
  }
  dynq__wbuf_free(&w);
}
END_TEST

/* An output's dtype is read by its wire name or alias, whole: a prefix, a
 * longer name or one with a NUL inside is unknown (and says so). */
START_TEST(infer_decoder_dtype_names) {
  static const struct {
    const char *name;
    size_t n;
    int dtype;              /* 0: refused */
  } cases[] = {
    {"float32", 7, DYNQ_FLOAT32}, {"f32", 3, DYNQ_FLOAT32}, {"int8", 4, DYNQ_INT8},
    {"i8", 2, DYNQ_INT8}, {"uint8", 5, DYNQ_UINT8}, {"u8", 2, DYNQ_UINT8},
    {"int32", 5, DYNQ_INT32}, {"i32", 3, DYNQ_INT32}, {"int64", 5, DYNQ_INT64},
    {"i64", 3, DYNQ_INT64}, {"float3", 6, 0}, {"float320", 8, 0}, {"float32\0", 8, 0},
    {"f\0" "32", 4, 0}, {"", 0, 0}, {"FLOAT32", 7, 0}, {"float32float32float32", 21, 0},
  };
  static const uint8_t bytes8[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    dynq__wbuf_t w;
    dynq_infer_result_t res;
    char err[512] = "";
    dynq__wbuf_init(&w);
    dynq__w_map(&w, 1);
    dynq__w_str(&w, "outputs");
    dynq__w_map(&w, 1);
    dynq__w_str(&w, "y");
    dynq__w_map(&w, 3);
    dynq__w_str(&w, "dtype");
    dynq__w_strn(&w, cases[k].name, cases[k].n);
    dynq__w_str(&w, "shape");
    dynq__w_array(&w, 1);
    /* 8 bytes of data whatever the element size */
    int esz = cases[k].dtype == DYNQ_FLOAT32 || cases[k].dtype == DYNQ_INT32 ? 4
              : cases[k].dtype == DYNQ_INT64 ? 8 : 1;
    dynq__w_int(&w, 8 / esz);
    dynq__w_str(&w, "data");
    dynq__w_bin(&w, bytes8, 8);
    ck_assert_int_eq(dynq__wbuf_status(&w), 0);
    int rc = dynq__decode_infer_result(w.data, w.len, &res, NULL, err, sizeof err);
    if (cases[k].dtype != 0) {
      ck_assert_msg(rc == 0, "case %zu: %d '%s'", k, rc, err);
      ck_assert_int_eq(res.outputs[0].dtype, cases[k].dtype);
      ck_assert_mem_eq(res.outputs[0].data, bytes8, 8);
      dynq_infer_result_free(&res);
    } else {
      ck_assert_msg(rc == DYNQ_EPROTO && strstr(err, "unknown tensor dtype") != NULL,
                    "case %zu: %d '%s'", k, rc, err);
    }
    dynq__wbuf_free(&w);
  }
}
END_TEST

/* A result of one float32 output of n values seed, seed+1, ... decoded
 * from bytes built here. */
static void decode_counting(int n, float seed, dynq_infer_result_t *ret) {
  float *v = malloc((size_t)(n ? n : 1) * sizeof(float));
  char err[512];
  for (int i = 0; i < n; i++) v[i] = seed + (float)i;
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "outputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "y");
  dynq__wtensor_t t = {DYNQ_FLOAT32, 2, {1, n}, v, (size_t)n * sizeof(float)};
  dynq__w_wtensor(&w, &t);
  ck_assert_int_eq(dynq__wbuf_status(&w), 0);
  ck_assert_msg(dynq__decode_infer_result(w.data, w.len, ret, NULL, err, sizeof err) == 0,
                "%s", err);
  dynq__wbuf_free(&w);
  free(v);
}

static void check_counting(const dynq_infer_result_t *r, int n, float seed) {
  const float *y = r->outputs[0].data;
  ck_assert_int_eq(r->n_outputs, 1);
  ck_assert_str_eq(r->outputs[0].name, "y");
  ck_assert_uint_eq(r->outputs[0].nbytes, (size_t)n * sizeof(float));
  ck_assert_uint_eq((uintptr_t)y % 64, 0);
  for (int i = 0; i < n; i++)
    ck_assert_msg(y[i] == seed + (float)i, "value %d of a result of %d: %g", i, n, y[i]);
}

static void *free_results_and_exit(void *arg) {
  dynq_infer_result_t *r = arg;
  for (int i = 0; i < 8; i++) dynq_infer_result_free(&r[i]);
  return NULL;  /* the spares this thread kept go with it */
}

/* Freed result blocks are reused for later answers (a thread keeps a few):
 * a reused block must hold only its new answer, never be handed out twice
 * or be too small, whatever the sizes and the order results are freed in;
 * and blocks freed on a thread that then exits are not lost (valgrind and
 * LeakSanitizer check that). */
START_TEST(infer_result_blocks_reused_safely) {
  static const int sizes[] = {768, 1, 0, 3000, 5000, 768, 100000, 17};
  enum { N = 80 };
  dynq_infer_result_t r[N];
  /* same size after a free: the freed block comes back */
  decode_counting(768, 1.0f, &r[0]);
  void *first = r[0].outputs;
  dynq_infer_result_free(&r[0]);
  decode_counting(768, 2.0f, &r[0]);
  ck_assert_ptr_eq(r[0].outputs, first);
  check_counting(&r[0], 768, 2.0f);
  dynq_infer_result_free(&r[0]);
  /* more live results than spares, of mixed sizes, freed in a scrambled
   * order while others are decoded into the freed blocks */
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++) decode_counting(sizes[i % 8], (float)(i + 100 * round), &r[i]);
    for (int i = 0; i < N; i += 3) dynq_infer_result_free(&r[i]);
    for (int i = 0; i < N; i += 3) decode_counting(sizes[(i + 5) % 8], (float)(-i), &r[i]);
    for (int i = 0; i < N; i++) {
      if (i % 3 == 0) check_counting(&r[i], sizes[(i + 5) % 8], (float)(-i));
      else check_counting(&r[i], sizes[i % 8], (float)(i + 100 * round));
    }
    for (int i = N - 1; i >= 0; i -= 2) dynq_infer_result_free(&r[i]);
    for (int i = 0; i < N; i += 2) dynq_infer_result_free(&r[i]);
    for (int i = 0; i < N; i++) ck_assert_ptr_null(r[i].outputs);
  }
  /* freed on another thread, which then ends */
  for (int i = 0; i < 8; i++) decode_counting(sizes[i], (float)i, &r[i]);
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, free_results_and_exit, r), 0);
  ck_assert_int_eq(pthread_join(th, NULL), 0);
  for (int i = 0; i < 8; i++) ck_assert_ptr_null(r[i].outputs);
}
END_TEST

static Suite *client_ext_suite(void) {
  Suite *s = suite_create("client-ext");
  TCase *tc = tcase_create("wav");
  tcase_add_test(tc, audio_decodes_layouts);
  tcase_add_test(tc, audio_resamples_in_phase);
  tcase_add_test(tc, audio_refuses_bad_input);
  suite_add_tcase(s, tc);

  tc = tcase_create("library");
  tcase_add_test(tc, stats_typed_prometheus_json);
  tcase_add_test(tc, stats_unknown_counters);
  tcase_add_test(tc, stats_buckets_make_histograms);
  tcase_add_test(tc, stats_shadow_histograms);
  tcase_add_test(tc, health_and_admin_calls);
  tcase_add_test(tc, session_calls);
  tcase_add_test(tc, infer_ex_options);
  tcase_add_test(tc, shm_create_register);
  suite_add_tcase(s, tc);

  tc = tcase_create("pipeline");
  tcase_add_test(tc, pipeline_out_of_order);
  tcase_add_test(tc, pipeline_limit);
  tcase_add_test(tc, pipeline_connection_closed);
  tcase_add_test(tc, pipeline_submits_leave_in_one_write);
  tcase_add_test(tc, infer_decoder_names_what_is_wrong);
  tcase_add_test(tc, infer_result_blocks_reused_safely);
  tcase_add_test(tc, infer_decoder_dtype_names);
  suite_add_tcase(s, tc);

  tc = tcase_create("dynqctl");
  tcase_add_test(tc, dynqctl_stream_against_fake);
  tcase_add_test(tc, dynqctl_stream_refuses_bad_input);
  tcase_add_test(tc, dynqctl_stats_health_admin_against_fake);
  tcase_add_test(tc, dynqctl_compare_pipelines_both_precisions);
  suite_add_tcase(s, tc);

  tc = tcase_create("daemon");
  tcase_add_test(tc, daemon_end_to_end);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(client_ext_suite)
