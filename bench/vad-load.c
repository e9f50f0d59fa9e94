/*
 * vad-load: real-time capacity of dynqd for Silero VAD streams.
 *
 *   vad-load --socket SOCK --model NAME [--wav CLIP.wav]
 *            [--sessions N | --search MAX] [--seconds S] [--period-ms 32]
 *            [--p99-ms 10] [--json]
 *
 * N streams, each a thread with its own connection and a dynqd session
 * (state kept server-side, bound state <- stateN), send one 512-sample
 * chunk (+ 64 of context) every period on a fixed schedule, staggered
 * evenly over the period as independent microphones would be.  A chunk's
 * latency is from the moment it was due (not when it was sent, so a
 * stream that falls behind pays for it) to the reply; a chunk is late when
 * its reply comes after the next chunk is due.  A run passes when no chunk
 * is late, none failed and the p99 latency is within --p99-ms.
 *
 * --search MAX finds the largest passing N <= MAX: doubles from 8 until a
 * run fails, then bisects (to within 5%).  Every run is bounded: S seconds
 * of audio per stream (default 5), then the threads stop by themselves.
 * The clip loops; the session is reset at each wrap.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../client/dynqctl-io.h"
#include "dynq/dynqclient.h"
#include "dynq/errors.h"

#define CHUNK 512
#define CONTEXT 64
#define MAX_SESSIONS 4096
#define MAX_SECONDS 600

static float *audio;
static size_t n_chunks;
static const char *sock_path, *model_name;
static double period_s = 0.032;

typedef struct stream {
  pthread_t th;
  int idx, n;
  double offset_s;         /* stagger within the period */
  long chunks;             /* to send */
  double *lat_ms;          /* [chunks]; owned; freed by run() */
  long done, late, failed;
  char err[256];           /* first failure */
} stream_t;

static double t_start;     /* CLOCK_MONOTONIC seconds when every stream starts */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int n_ready, n_total, go;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_until(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static void chunk_input(float *x, size_t c) {
  if (c == 0)
    memset(x, 0, sizeof(float) * CONTEXT);
  else
    memcpy(x, audio + c * CHUNK - CONTEXT, sizeof(float) * CONTEXT);
  memcpy(x + CONTEXT, audio + c * CHUNK, sizeof(float) * CHUNK);
}

static void *stream_main(void *arg) {
  stream_t *s = arg;
  dynq_client_t *c = NULL;
  uint64_t sid = 0;
  int have_sid = 0, rc = dynq_connect(sock_path, &c);
  if (rc == 0) {
    const char *binds[2] = {"state", "stateN"};
    rc = dynq_session_open(c, model_name, binds, 1, 0, &sid);
    if (rc != 0)
      snprintf(s->err, sizeof s->err, "session.open: %s", dynq_client_errmsg(c));
    have_sid = rc == 0;
  } else {
    snprintf(s->err, sizeof s->err, "connect %s: %s", sock_path, dynq_strerror(rc));
  }
  /* start together (even after a failure, so the barrier completes) */
  pthread_mutex_lock(&mu);
  n_ready++;
  pthread_cond_broadcast(&cv);
  while (!go) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  if (rc != 0) {
    s->failed = s->chunks;
    goto out;
  }

  float x[CONTEXT + CHUNK];
  dynq_tensor_t in = {.name = "input", .dtype = DYNQ_FLOAT32, .rank = 2,
                      .shape = {1, CONTEXT + CHUNK}, .data = x, .nbytes = sizeof x};
  /* each stream starts at another place in the clip */
  size_t pos = ((size_t)s->idx * 37) % n_chunks;
  for (long k = 0; k < s->chunks; k++, pos++) {
    if (pos == n_chunks) {
      pos = 0;
      if (dynq_session_reset(c, sid) != 0) {
        snprintf(s->err, sizeof s->err, "session.reset: %s", dynq_client_errmsg(c));
        s->failed += s->chunks - k;
        break;
      }
    }
    double due = t_start + s->offset_s + (double)k * period_s;
    sleep_until(due);
    chunk_input(x, pos);
    dynq_infer_result_t r = {0};
    rc = dynq_session_infer(c, sid, &in, 1, &r);
    double t = now_s();
    if (rc != 0) {
      if (!s->err[0])
        snprintf(s->err, sizeof s->err, "chunk %ld: %s (%s)", k, dynq_client_errmsg(c),
                 dynq_strerror(rc));
      s->failed++;
      continue;
    }
    dynq_infer_result_free(&r);
    s->lat_ms[s->done++] = (t - due) * 1e3;
    if (t > due + period_s) s->late++;
  }
out:
  if (have_sid) dynq_session_close(c, sid);
  dynq_close(c);
  return NULL;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct result {
  int n;
  long chunks, late, failed;
  double p50, p99, max;
  int pass;
} result_t;

static int run(int n, double seconds, double p99_limit, result_t *ret) {
  stream_t *ss = calloc((size_t)n, sizeof *ss);
  long per = (long)(seconds / period_s);
  if (!ss) return -ENOMEM;
  n_ready = 0;
  n_total = n;
  go = 0;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  int started = 0, rc = 0;
  for (int i = 0; i < n; i++) {
    ss[i].idx = i;
    ss[i].n = n;
    ss[i].offset_s = period_s * (double)i / (double)n;
    ss[i].chunks = per;
    ss[i].lat_ms = malloc(sizeof(double) * (size_t)per);
    if (!ss[i].lat_ms || pthread_create(&ss[i].th, &attr, stream_main, &ss[i]) != 0) {
      rc = -EAGAIN;
      break;
    }
    started++;
  }
  pthread_attr_destroy(&attr);
  pthread_mutex_lock(&mu);
  while (n_ready < started) pthread_cond_wait(&cv, &mu);
  t_start = now_s() + 0.1; /* every stream's first chunk is due after this */
  go = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  for (int i = 0; i < started; i++) pthread_join(ss[i].th, NULL);

  result_t r = {.n = n};
  size_t total = 0;
  for (int i = 0; i < started; i++) total += (size_t)ss[i].done;
  double *all = malloc(sizeof(double) * (total ? total : 1));
  size_t k = 0;
  const char *first_err = NULL;
  for (int i = 0; i < started; i++) {
    if (all) memcpy(all + k, ss[i].lat_ms, sizeof(double) * (size_t)ss[i].done);
    k += (size_t)ss[i].done;
    r.chunks += ss[i].done;
    r.late += ss[i].late;
    r.failed += ss[i].failed;
    if (ss[i].err[0] && !first_err) first_err = ss[i].err;
  }
  if (all && total) {
    qsort(all, total, sizeof *all, cmp_d);
    r.p50 = all[total / 2];
    r.p99 = all[(size_t)((double)total * 0.99)];
    r.max = all[total - 1];
  }
  if (first_err) fprintf(stderr, "vad-load: N=%d: %s\n", n, first_err);
  r.pass = rc == 0 && r.failed == 0 && r.late == 0 && total > 0 && r.p99 <= p99_limit;
  free(all);
  for (int i = 0; i < n; i++) free(ss[i].lat_ms);
  free(ss);
  *ret = r;
  return rc;
}

static void print_result(const result_t *r, int json) {
  if (json)
    printf("{\"bench\":\"silero-vad-load\",\"sessions\":%d,\"chunks\":%ld,\"late\":%ld,"
           "\"failed\":%ld,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"pass\":%s}\n",
           r->n, r->chunks, r->late, r->failed, r->p50, r->p99, r->max,
           r->pass ? "true" : "false");
  else
    printf("%8d %9ld %6ld %7ld %9.3f %9.3f %9.3f  %s\n", r->n, r->chunks, r->late, r->failed,
           r->p50, r->p99, r->max, r->pass ? "pass" : "FAIL");
  fflush(stdout);
}

static int load_wav(const char *path) {
  size_t len = 0, cap = 1 << 20;
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "vad-load: %s: %s\n", path, strerror(errno));
    return -1;
  }
  unsigned char *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
    len += got;
    if (len == cap) {
      unsigned char *nb = cap < ((size_t)1 << 30) ? realloc(buf, cap *= 2) : NULL;
      if (!nb) free(buf);
      buf = nb;
    }
  }
  fclose(f);
  if (!buf) {
    fprintf(stderr, "vad-load: %s: too large or out of memory\n", path);
    return -1;
  }
  dynq__wav_t w = {0};
  char err[256] = "";
  int rc = dynq__wav_parse(buf, len, &w, err, sizeof err);
  free(buf);
  if (rc != 0 || w.rate != 16000 || w.n < CHUNK) {
    fprintf(stderr, "vad-load: %s: %s\n", path,
            rc ? err : "need a 16 kHz clip of at least one 512-sample chunk");
    dynq__wav_free(&w);
    return -1;
  }
  audio = malloc(sizeof(float) * w.n);
  if (!audio) return -1;
  for (size_t i = 0; i < w.n; i++) audio[i] = (float)w.samples[i] / 32768.0f;
  n_chunks = w.n / CHUNK;
  dynq__wav_free(&w);
  return 0;
}

static int usage(int code) {
  fprintf(stderr,
          "usage: vad-load --socket SOCK --model NAME [--wav CLIP.wav]\n"
          "                [--sessions N | --search MAX] [--seconds S] [--period-ms 32]\n"
          "                [--p99-ms 10] [--json]\n");
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
    else return usage(2);
    if (rc < 0) return 2;
  }
  if (!sock_path || !model_name || (sessions > 0) == (search > 0)) return usage(2);
  if (seconds * 1000 < period_ms) {
    fprintf(stderr, "vad-load: --seconds must cover at least one period\n");
    return 2;
  }
  period_s = period_ms / 1e3;
  if (load_wav(wav) < 0) return 1;

  if (!json)
    printf("Silero VAD streams on dynqd: one chunk per %.0f ms each, %.1f s per run, "
           "pass = no late chunk, no error, p99 <= %.1f ms\n"
           "sessions    chunks   late  failed    p50_ms    p99_ms    max_ms\n",
           period_ms, seconds, p99_ms);
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
