/*
 * vad-bench: Silero VAD v5 per-chunk time, one thread, in one run:
 *   - the engine in-process (dynq__model_run), INT8 and FP32 precision;
 *   - optionally through dynqd: a session round trip per chunk
 *     (libdynqclient: encode, socket, queue, run, reply, decode);
 *   - optionally ONNX Runtime FP32 in-process (bench/vad/ort_reference.js
 *     --bench run by node, its JSON line parsed), so the ratios compare
 *     systems measured minutes apart at most on this noisy shared host.
 *
 *   vad-bench --model VAD.dynq [--wav CLIP.wav] [--passes N]
 *             [--socket SOCK --served NAME] [--ort MODEL.onnx [--ort-script JS]]
 *             [--batch B1,B2,...] [--json]
 *   --batch: also the engine running B streams' chunks as one batched run
 *   (per-chunk us = run time / B), as dynqd's session batching does
 *
 * Every chunk of the clip is one sample (streaming rule of
 * tests/test-vad.c: 512 samples + 64 of context, state fed back); after a
 * warm-up pass, N passes (default 5) are timed chunk by chunk and the
 * median, p90 and mean per chunk are reported.  Run it pinned
 * (taskset -c 1) for the one-thread figures; see BENCHMARKS.md.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../client/dynqctl-io.h"
#include "dynq/dynqclient.h"
#include "dynq/errors.h"
#include "graph.h"
#include "model.h"

#define CHUNK 512
#define CONTEXT 64
#define HIDDEN 128
#define MAX_PASSES 1000

typedef struct stat3 {
  double median, p90, mean;
  size_t n;
} stat3_t;

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + 1e-3 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static stat3_t summarize(double *t, size_t n) {
  stat3_t s = {0, 0, 0, n};
  if (n == 0) return s;
  qsort(t, n, sizeof *t, cmp_d);
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += t[i];
  s.median = t[n / 2];
  s.p90 = t[(size_t)((double)n * 0.9)];
  s.mean = sum / (double)n;
  return s;
}

static float *audio;
static size_t n_chunks;

static int load_wav(const char *path) {
  char err[512] = "";
  dynq__audio_t a;
  if (dynq__audio_load(path, 16000, &a, err, sizeof err) != 0) {
    fprintf(stderr, "vad-bench: %s\n", err);
    return -1;
  }
  if (a.n < CHUNK) {
    fprintf(stderr, "vad-bench: %s: %zu samples at 16 kHz, fewer than one chunk (%d)\n", path,
            a.n, CHUNK);
    dynq__audio_free(&a);
    return -1;
  }
  audio = a.samples;  /* kept for the whole run */
  n_chunks = a.n / CHUNK;
  return 0;
}

static void chunk_input(float *x, size_t c) {
  if (c == 0)
    memset(x, 0, sizeof(float) * CONTEXT);
  else
    memcpy(x, audio + c * CHUNK - CONTEXT, sizeof(float) * CONTEXT);
  memcpy(x + CONTEXT, audio + c * CHUNK, sizeof(float) * CHUNK);
}

/* ---- engine in-process ---- */

static int engine_pass(const dynq__model_t *m, int precision, double *t) {
  const dynq__graph_t *g = dynq__model_graph(m);
  int i_in = dynq__model_input_index(m, "input"), i_st = dynq__model_input_index(m, "state");
  int i_sr = dynq__model_input_index(m, "sr"), o_st = -1;
  for (int i = 0; i < g->n_outputs; i++)
    if (strcmp(g->values[g->outputs[i]].name, "stateN") == 0) o_st = i;
  if (i_in < 0 || i_st < 0 || o_st < 0 || g->n_inputs > 3 || g->n_outputs > 4) {
    fprintf(stderr, "vad-bench: the model is not Silero VAD v5 (inputs input/state, output stateN)\n");
    return -1;
  }
  float x[CONTEXT + CHUNK], state[2 * HIDDEN] = {0};
  int64_t sr = 16000;
  dynq__tensor_t in[3];
  memset(in, 0, sizeof in);
  in[i_in] = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = 2, .dims = {1, CONTEXT + CHUNK},
                               .data = x};
  in[i_st] = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = 3, .dims = {2, 1, HIDDEN},
                               .data = state};
  if (i_sr >= 0) in[i_sr] = (dynq__tensor_t){.dtype = DYNQ_DT_I64, .rank = 0, .data = &sr};
  dynq__run_opts_t o = {.precision = precision, .threads = 1};
  for (size_t c = 0; c < n_chunks; c++) {
    dynq__tensor_t out[4];
    char err[512] = "";
    memset(out, 0, sizeof out);
    chunk_input(x, c);
    double t0 = now_us();
    int rc = dynq__model_run(m, &o, in, out, err, sizeof err);
    if (rc == 0) memcpy(state, out[o_st].data, sizeof state);
    if (t) t[c] = now_us() - t0;
    if (rc != 0) {
      fprintf(stderr, "vad-bench: chunk %zu: %s (%s)\n", c, err, dynq_strerror(rc));
      return -1;
    }
    for (int i = 0; i < g->n_outputs; i++) dynq__tensor_clear(&out[i]);
  }
  return 0;
}

static int bench_engine(const char *path, int precision, int passes, stat3_t *ret) {
  dynq__model_t *m = NULL;
  char err[512] = "";
  int rc = dynq__model_open(path, &m, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "vad-bench: %s: %s\n", path, err);
    return -1;
  }
  double *t = malloc(sizeof(double) * n_chunks * (size_t)passes);
  rc = t ? engine_pass(m, precision, NULL) : -1; /* warm-up */
  for (int p = 0; rc == 0 && p < passes; p++) rc = engine_pass(m, precision, t + p * n_chunks);
  if (rc == 0) *ret = summarize(t, n_chunks * (size_t)passes);
  free(t);
  dynq__model_unref(m);
  return rc;
}

/* ---- engine in-process, B streams as one batched run (what dynqd's
 *      session batching does): per-chunk time = run time / B ---- */

static int bench_batched(const char *path, int b, int passes, stat3_t *ret) {
  dynq__model_t *m = NULL;
  char err[512] = "";
  int rc = dynq__model_open(path, &m, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "vad-bench: %s: %s\n", path, err);
    return -1;
  }
  const dynq__graph_t *g = dynq__model_graph(m);
  int i_in = dynq__model_input_index(m, "input"), i_st = dynq__model_input_index(m, "state");
  int i_sr = dynq__model_input_index(m, "sr"), o_st = -1;
  for (int i = 0; i < g->n_outputs; i++)
    if (strcmp(g->values[g->outputs[i]].name, "stateN") == 0) o_st = i;
  float *x = malloc(sizeof(float) * (size_t)b * (CONTEXT + CHUNK));
  float *state = calloc((size_t)b * 2 * HIDDEN, sizeof(float));
  double *t = malloc(sizeof(double) * n_chunks * (size_t)passes);
  rc = -1;
  if (i_in < 0 || i_st < 0 || o_st < 0 || g->n_inputs > 3 || g->n_outputs > 4 || !x ||
      !state || !t) {
    fprintf(stderr, "vad-bench: --batch: not Silero VAD v5, or out of memory\n");
    goto out;
  }
  int64_t sr = 16000;
  dynq__tensor_t in[3];
  memset(in, 0, sizeof in);
  in[i_in] = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = 2, .dims = {b, CONTEXT + CHUNK},
                               .data = x};
  in[i_st] = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = 3, .dims = {2, b, HIDDEN},
                               .data = state};
  if (i_sr >= 0) in[i_sr] = (dynq__tensor_t){.dtype = DYNQ_DT_I64, .rank = 0, .data = &sr};
  dynq__run_opts_t o = {.precision = DYNQ_PRECISION_INT8, .threads = 1};
  for (int p = -1; p < passes; p++) {  /* pass -1: warm-up */
    for (size_t c = 0; c < n_chunks; c++) {
      for (int k = 0; k < b; k++)  /* each stream at another place in the clip */
        chunk_input(x + (size_t)k * (CONTEXT + CHUNK), (c + (size_t)k * 37) % n_chunks);
      dynq__tensor_t out[4];
      memset(out, 0, sizeof out);
      double t0 = now_us();
      rc = dynq__model_run(m, &o, in, out, err, sizeof err);
      double us = now_us() - t0;
      if (rc != 0) {
        fprintf(stderr, "vad-bench: batch %d: %s (%s)\n", b, err, dynq_strerror(rc));
        goto out;
      }
      memcpy(state, out[o_st].data, sizeof(float) * (size_t)b * 2 * HIDDEN);
      if (p >= 0) t[(size_t)p * n_chunks + c] = us / b;
      for (int i = 0; i < g->n_outputs; i++) dynq__tensor_clear(&out[i]);
    }
  }
  *ret = summarize(t, n_chunks * (size_t)passes);
  rc = 0;
out:
  free(x);
  free(state);
  free(t);
  dynq__model_unref(m);
  return rc;
}

/* ---- dynqd session round trip ---- */

static int served_pass(dynq_client_t *c, uint64_t sid, double *t) {
  float x[CONTEXT + CHUNK];
  dynq_tensor_t in = {.name = "input", .dtype = DYNQ_FLOAT32, .rank = 2,
                      .shape = {1, CONTEXT + CHUNK}, .data = x, .nbytes = sizeof x};
  int rc = dynq_session_reset(c, sid);
  if (rc != 0) {
    fprintf(stderr, "vad-bench: session.reset: %s\n", dynq_client_errmsg(c));
    return -1;
  }
  for (size_t k = 0; k < n_chunks; k++) {
    dynq_infer_result_t r = {0};
    chunk_input(x, k);
    double t0 = now_us();
    rc = dynq_session_infer(c, sid, &in, 1, &r);
    if (t) t[k] = now_us() - t0;
    if (rc != 0) {
      fprintf(stderr, "vad-bench: chunk %zu through dynqd: %s (%s)\n", k, dynq_client_errmsg(c),
              dynq_strerror(rc));
      return -1;
    }
    dynq_infer_result_free(&r);
  }
  return 0;
}

static int bench_served(const char *sock, const char *name, int passes, stat3_t *ret) {
  dynq_client_t *c = NULL;
  uint64_t sid = 0;
  int rc = dynq_connect(sock, &c);
  if (rc != 0) {
    fprintf(stderr, "vad-bench: connect %s: %s\n", sock, dynq_strerror(rc));
    return -1;
  }
  const char *binds[2] = {"state", "stateN"};
  rc = dynq_session_open(c, name, binds, 1, 0, &sid);
  if (rc != 0) {
    fprintf(stderr, "vad-bench: session.open %s: %s\n", name, dynq_client_errmsg(c));
    dynq_close(c);
    return -1;
  }
  double *t = malloc(sizeof(double) * n_chunks * (size_t)passes);
  rc = t ? served_pass(c, sid, NULL) : -1;
  for (int p = 0; rc == 0 && p < passes; p++) rc = served_pass(c, sid, t + p * n_chunks);
  if (rc == 0) *ret = summarize(t, n_chunks * (size_t)passes);
  free(t);
  dynq_session_close(c, sid);
  dynq_close(c);
  return rc;
}

/* ---- ONNX Runtime through node ---- */

static double json_num(const char *s, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(s, pat);
  return p ? strtod(p + strlen(pat), NULL) : NAN;
}

static int bench_ort(const char *script, const char *onnx, const char *wav, int passes,
                     stat3_t *ret, char *ver, size_t verlen) {
  char cmd[8192];
  /* paths are the user's own arguments; quote them for sh */
  snprintf(cmd, sizeof cmd, "node '%s' --bench --passes %d '%s' '%s'", script, passes, onnx, wav);
  if (strchr(script, '\'') || strchr(onnx, '\'') || strchr(wav, '\'')) {
    fprintf(stderr, "vad-bench: paths with a quote are not supported for --ort\n");
    return -1;
  }
  FILE *p = popen(cmd, "r");
  if (!p) {
    fprintf(stderr, "vad-bench: cannot run node: %s\n", strerror(errno));
    return -1;
  }
  char line[1024] = "";
  int ok = fgets(line, sizeof line, p) != NULL;
  int st = pclose(p);
  if (!ok || st != 0 || isnan(json_num(line, "median_us"))) {
    fprintf(stderr, "vad-bench: `%s` failed (status %d); install onnxruntime-node: see "
                    "bench/vad/ort_reference.js\n", cmd, st);
    return -1;
  }
  ret->median = json_num(line, "median_us");
  ret->p90 = json_num(line, "p90_us");
  ret->mean = json_num(line, "mean_us");
  ret->n = (size_t)json_num(line, "chunks");
  const char *v = strstr(line, "\"version\":\"");
  snprintf(ver, verlen, "%.*s", v ? (int)strcspn(v + 11, "\"") : 1, v ? v + 11 : "?");
  return 0;
}

static int usage(int code) {
  fprintf(stderr,
          "usage: vad-bench --model VAD.dynq [--wav CLIP.wav] [--passes N]\n"
          "                 [--socket SOCK --served NAME] [--ort MODEL.onnx [--ort-script JS]]\n"
          "                 [--batch B1,B2,...] [--json]\n");
  return code;
}

static void print_row(int json, const char *what, const stat3_t *s, double ort_median) {
  if (json) {
    printf("{\"bench\":\"silero-vad-chunk\",\"path\":\"%s\",\"chunks\":%zu,\"median_us\":%.2f,"
           "\"p90_us\":%.2f,\"mean_us\":%.2f",
           what, s->n, s->median, s->p90, s->mean);
    if (ort_median > 0) printf(",\"vs_ort\":%.3f", s->median / ort_median);
    printf("}\n");
    return;
  }
  printf("%-34s %8.1f %8.1f %8.1f", what, s->median, s->p90, s->mean);
  if (ort_median > 0) printf("   %6.3fx", s->median / ort_median);
  printf("\n");
}

int main(int argc, char **argv) {
  const char *model = NULL, *wav = "tests/fixtures/vad/speech.wav", *sock = NULL, *served = NULL,
             *batches = NULL;
  const char *onnx = NULL, *script = "bench/vad/ort_reference.js";
  int passes = 5, json = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--json") == 0) {
      json = 1;
      continue;
    }
    if (strcmp(a, "--help") == 0) return usage(0);
    if (!v) return usage(2);
    i++;
    if (strcmp(a, "--model") == 0) model = v;
    else if (strcmp(a, "--batch") == 0) batches = v;
    else if (strcmp(a, "--wav") == 0) wav = v;
    else if (strcmp(a, "--socket") == 0) sock = v;
    else if (strcmp(a, "--served") == 0) served = v;
    else if (strcmp(a, "--ort") == 0) onnx = v;
    else if (strcmp(a, "--ort-script") == 0) script = v;
    else if (strcmp(a, "--passes") == 0) {
      char *end;
      long n = strtol(v, &end, 10);
      if (*end || n < 1 || n > MAX_PASSES) {
        fprintf(stderr, "vad-bench: --passes takes 1..%d\n", MAX_PASSES);
        return 2;
      }
      passes = (int)n;
    } else
      return usage(2);
  }
  if (!model || (!sock != !served)) return usage(2);
  int bl[16], nb = 0;
  for (const char *q = batches; q && *q && nb < 16;) {
    char *end;
    long n = strtol(q, &end, 10);
    if (end == q || n < 1 || n > 4096 || (*end && *end != ',')) {
      fprintf(stderr, "vad-bench: --batch takes a list of 1..4096, like 1,8,64\n");
      return 2;
    }
    bl[nb++] = (int)n;
    q = *end ? end + 1 : end;
  }
  if (load_wav(wav) < 0) return 1;

  stat3_t s_int8, s_fp32, s_served = {0}, s_ort = {0};
  char ver[32] = "";
  /* ORT first: node's start-up is then not overlapping anything timed */
  if (onnx && bench_ort(script, onnx, wav, passes, &s_ort, ver, sizeof ver) < 0) return 1;
  if (bench_engine(model, DYNQ_PRECISION_INT8, passes, &s_int8) < 0) return 1;
  if (bench_engine(model, DYNQ_PRECISION_FP32, passes, &s_fp32) < 0) return 1;
  if (sock && bench_served(sock, served, passes, &s_served) < 0) return 1;

  double om = onnx ? s_ort.median : 0;
  if (!json) {
    printf("Silero VAD v5, one chunk (512 samples + 64 context), %zu chunks x %d passes, "
           "per-chunk us\n",
           n_chunks, passes);
    printf("%-34s %8s %8s %8s   %s\n", "path", "median", "p90", "mean",
           onnx ? "median/ORT" : "");
  }
  print_row(json, "dynq engine INT8 (in-process)", &s_int8, om);
  print_row(json, "dynq engine FP32 (in-process)", &s_fp32, om);
  if (sock) print_row(json, "dynqd session round trip (INT8)", &s_served, om);
  for (int k = 0; k < nb; k++) {
    stat3_t sb;
    if (bench_batched(model, bl[k], passes, &sb) < 0) return 1;
    char what[96];
    snprintf(what, sizeof what, "dynq engine INT8 batch %d, per chunk", bl[k]);
    print_row(json, what, &sb, om);
  }
  if (onnx) {
    char what[96];
    snprintf(what, sizeof what, "ONNX Runtime %s FP32 (node)", ver);
    print_row(json, what, &s_ort, om);
    /* streams one core can keep up with at one chunk per 32 ms, if ORT
     * did nothing else: the capacity bar vad-load is compared with */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double implied = (double)(cores > 0 ? cores : 1) * 32000.0 / s_ort.median;
    if (json)
      printf("{\"bench\":\"silero-vad-ort-implied\",\"cores\":%ld,\"streams\":%.0f}\n", cores,
             implied);
    else
      printf("ORT-implied real-time streams on %ld cores (cores x 32 ms / ORT median): %.0f; "
             "capacity target 2x: %.0f\n",
             cores, implied, 2 * implied);
  }
  free(audio);
  return 0;
}
