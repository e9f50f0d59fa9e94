/*
 * Silero VAD v5 end to end in the engine: the real model (fetched by
 * models/fetch-silero.sh) converted by dynq-quantize --set sr=16000 in the
 * test, streamed over tests/fixtures/vad/speech.wav (silence, speech,
 * noise, speech) chunk by chunk with the state output fed back, against
 * the per-chunk probabilities ONNX Runtime 1.30 FP32 gave
 * (tests/fixtures/vad/ort_probs.txt, made by bench/vad/ort_reference.js).
 *
 * Acceptance:
 *  - FP32 path (the quantized model at precision fp32, and a --fp32 model):
 *    |p - p_ort| <= 1e-4 on every chunk.
 *  - INT8 path (default conversion): |p - p_ort| <= 0.02 on every chunk,
 *    and the same decision at 0.5 on every chunk whose reference is not
 *    within 0.02 of 0.5.  Enforced (no XFAIL since the per-patch Conv and
 *    the front-end rule).
 * Each run prints a per-chunk table.
 *
 * The model is not in the tree: without it the tests pass with a SKIP
 * line, unless DYNQ_REQUIRE_VAD is set (CI: ./bootstrap test fetches it and
 * sets it).  DYNQ_VAD_ONNX names the .onnx explicitly.
 *
 * Streaming rule, shared with ort_reference.js: 512-sample chunks (partial
 * tail dropped), each fed as 576 samples = previous chunk's last 64 (zeros
 * first) + the chunk; state starts at zeros [2,1,128]; samples int16/32768.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dynq/dynqclient.h"
#include "dynq/errors.h"
#include "../client/dynqctl-io.h"
#include "graph.h"
#include "model.h"
#include "testutil.h"

#define CHUNK 512
#define CONTEXT 64
#define HIDDEN 128
#define MAX_CHUNKS 4096

#define FP32_TOL 1e-4
#define INT8_TOL 0.02
#define THRESHOLD 0.5

static char onnx_path[4096];
static char *tmpdir;
static char q_path[4200], f_path[4200];
static float *audio;          /* whole clip, int16/32768 */
static size_t n_samples;
static double ref[MAX_CHUNKS];
static int n_ref;

/* Where fetch-silero.sh puts the model (same search order). */
static int find_model(void) {
  const char *e = getenv("DYNQ_VAD_ONNX");
  if (e && *e) {
    snprintf(onnx_path, sizeof onnx_path, "%s", e);
    return access(onnx_path, R_OK) == 0;
  }
  return tu_cache_file("silero_vad_v5.onnx", onnx_path, sizeof onnx_path);
}

/* 1: run the tests; 0: skip (model missing and not required). */
static int have_model(void) {
  if (find_model()) return 1;
  const char *req = getenv("DYNQ_REQUIRE_VAD");
  ck_assert_msg(!(req && *req && strcmp(req, "0") != 0),
                "DYNQ_REQUIRE_VAD is set but %s is missing: run models/fetch-silero.sh",
                onnx_path);
  printf("SKIP: Silero VAD model %s not found (run models/fetch-silero.sh, "
         "or set DYNQ_VAD_ONNX); set DYNQ_REQUIRE_VAD=1 to make this a failure\n",
         onnx_path);
  return 0;
}

/* extra: one more dynq-quantize option, or NULL. */
static void quantize_x(const char *out, int fp32, const char *extra) {
  char *out_s = NULL;
  char *argv[10];
  int a = 0;
  argv[a++] = (char *)tu_build("models/dynq-quantize");
  char exe[4096];
  snprintf(exe, sizeof exe, "%s", argv[0]);
  argv[0] = exe;
  if (fp32) argv[a++] = "--fp32";
  if (extra) argv[a++] = (char *)extra;

  argv[a++] = "--set";
  argv[a++] = "sr=16000";
  argv[a++] = onnx_path;
  argv[a++] = (char *)out;
  argv[a] = NULL;
  int st = tu_run(argv, &out_s);
  /* the log can be long (a sanitizer report): print it, keep the message short */
  if (st != 0) printf("dynq-quantize output:\n%s\n", out_s ? out_s : "");
  free(out_s);
  ck_assert_msg(st == 0, "dynq-quantize --set sr=16000 %s failed with status %d (output above)",
                onnx_path, st);
}

static void quantize(const char *out, int fp32) { quantize_x(out, fp32, NULL); }

static void load_audio(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s", tu_src("tests/fixtures/vad/speech.wav"));
  dynq__audio_t a;
  char err[512] = "";
  int rc = dynq__audio_load(path, 0, &a, err, sizeof err);
  ck_assert_msg(rc == 0, "%s", err);
  ck_assert_uint_eq(a.file_rate, 16000);
  ck_assert_int_eq(a.channels, 1);
  audio = a.samples;  /* int16 / 32768, as the ORT reference was fed */
  n_samples = a.n;
}

static void load_ref(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s", tu_src("tests/fixtures/vad/ort_probs.txt"));
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  char line[256];
  n_ref = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#' || line[0] == '\n') continue;
    int idx;
    double p;
    ck_assert_msg(sscanf(line, "%d %lf", &idx, &p) == 2 && idx == n_ref &&
                      n_ref < MAX_CHUNKS && p >= 0 && p <= 1,
                  "%s: bad line %d: %s", path, n_ref, line);
    ref[n_ref++] = p;
  }
  fclose(f);
  ck_assert_int_eq((size_t)n_ref, n_samples / CHUNK);
}

static void setup(void) {
  if (!have_model()) return;
  tmpdir = tu_mkdtemp();
  ck_assert_ptr_nonnull(tmpdir);
  snprintf(q_path, sizeof q_path, "%s/vad16.dynq", tmpdir);
  snprintf(f_path, sizeof f_path, "%s/vad16-fp32.dynq", tmpdir);
  load_audio();
  load_ref();
}

static void teardown(void) {
  if (tmpdir) tu_rmtree(tmpdir);
  free(tmpdir);
  tmpdir = NULL;
  free(audio);
  audio = NULL;
}

/* A streaming session over the engine: inputs matched by name. */
typedef struct vad {
  dynq__model_t *m;
  int n_in, i_input, i_state, i_sr, o_prob, o_state;
  float x[CONTEXT + CHUNK];
  float state[2 * HIDDEN];
  int64_t sr;
} vad_t;

static int out_index(const dynq__graph_t *g, const char *name) {
  for (int i = 0; i < g->n_outputs; i++)
    if (strcmp(g->values[g->outputs[i]].name, name) == 0) return i;
  return -1;
}

static void vad_open(vad_t *v, const char *path) {
  char err[512] = "";
  memset(v, 0, sizeof *v);
  int rc = dynq__model_open(path, &v->m, err, sizeof err);
  ck_assert_msg(rc == 0, "open %s: %s", path, err);
  const dynq__graph_t *g = dynq__model_graph(v->m);
  v->n_in = g->n_inputs;
  v->i_input = dynq__model_input_index(v->m, "input");
  v->i_state = dynq__model_input_index(v->m, "state");
  v->i_sr = dynq__model_input_index(v->m, "sr"); /* gone after --set */
  v->o_prob = out_index(g, "output");
  v->o_state = out_index(g, "stateN");
  ck_assert_msg(v->i_input >= 0 && v->i_state >= 0 && v->o_prob >= 0 && v->o_state >= 0,
                "%s: expected inputs input/state and outputs output/stateN", path);
  ck_assert_int_le(v->n_in, 3);
  ck_assert_int_le(g->n_outputs, 4);
  v->sr = 16000;
}

/* Run one chunk: samples [c*512, c*512+512) with the context before it.
 * Returns 0 and the probability, or the engine's error (state untouched). */
static int vad_step(vad_t *v, int precision, int c, const float *x576, double *ret_p,
                    char *err, size_t errlen) {
  dynq__tensor_t in[3];
  memset(in, 0, sizeof in);
  in[v->i_input] = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = 2,
                                     .dims = {1, CONTEXT + CHUNK}, .data = (void *)x576};
  in[v->i_state] = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = 3,
                                     .dims = {2, 1, HIDDEN}, .data = v->state};
  if (v->i_sr >= 0)
    in[v->i_sr] = (dynq__tensor_t){.dtype = DYNQ_DT_I64, .rank = 0, .data = &v->sr};
  dynq__tensor_t out[4];
  memset(out, 0, sizeof out);
  dynq__run_opts_t o = {.precision = precision, .threads = 1};
  int rc = dynq__model_run(v->m, &o, in, out, err, errlen);
  if (rc != 0) return rc;
  const dynq__graph_t *g = dynq__model_graph(v->m);
  dynq__tensor_t *p = &out[v->o_prob], *s = &out[v->o_state];
  ck_assert_msg(p->dtype == DYNQ_DT_F32 && dynq__tensor_numel(p) == 1,
                "chunk %d: output is not one float", c);
  ck_assert_msg(s->dtype == DYNQ_DT_F32 && dynq__tensor_numel(s) == 2 * HIDDEN,
                "chunk %d: stateN has %lld elements", c, (long long)dynq__tensor_numel(s));
  *ret_p = ((const float *)p->data)[0];
  memcpy(v->state, s->data, sizeof v->state);
  for (int i = 0; i < g->n_outputs; i++) dynq__tensor_clear(&out[i]);
  return 0;
}

static const float *chunk_input(vad_t *v, int c) {
  if (c == 0)
    memset(v->x, 0, sizeof(float) * CONTEXT);
  else
    memcpy(v->x, audio + (size_t)c * CHUNK - CONTEXT, sizeof(float) * CONTEXT);
  memcpy(v->x + CONTEXT, audio + (size_t)c * CHUNK, sizeof(float) * CHUNK);
  return v->x;
}

/* Stream the whole clip; fill p[] per chunk. */
static void vad_stream(const char *path, int precision, double *p) {
  vad_t v;
  vad_open(&v, path);
  for (int c = 0; c < n_ref; c++) {
    char err[512] = "";
    int rc = vad_step(&v, precision, c, chunk_input(&v, c), &p[c], err, sizeof err);
    ck_assert_msg(rc == 0, "chunk %d: %s (%s)", c, err, dynq_strerror(rc));
  }
  v.m = dynq__model_unref(v.m);
}

static int decision_ok(double p, double r) {
  if (fabs(r - THRESHOLD) <= INT8_TOL) return 1; /* too close to call */
  return (p >= THRESHOLD) == (r >= THRESHOLD);
}

/* Print the table, return the number of chunks over tol (and decision
 * disagreements when check_decision). */
static int report(const char *what, const double *p, double tol, int check_decision) {
  int bad = 0, flips = 0, worst = 0;
  double maxd = 0, sumd = 0;
  printf("\n%s: per-chunk speech probability vs ONNX Runtime FP32 (tol %g)\n", what, tol);
  printf("chunk   t_s      ort       dynq      |diff|    flag\n");
  for (int c = 0; c < n_ref; c++) {
    double d = fabs(p[c] - ref[c]);
    if (!(d <= maxd)) {
      maxd = d;
      worst = c;
    }
    sumd += d;
    int over = !(d <= tol), flip = check_decision && !decision_ok(p[c], ref[c]);
    bad += over;
    flips += flip;
    printf("%5d %6.3f %9.6f %9.6f %9.2e  %s%s\n", c, (c + 1) * CHUNK / 16000.0, ref[c], p[c],
           d, over ? "OVER " : "", flip ? "FLIP" : "");
  }
  printf("%s: %d chunks, max |diff| %.3g at chunk %d, mean |diff| %.3g, %d over %g",
         what, n_ref, maxd, worst, sumd / n_ref, bad, tol);
  if (check_decision) printf(", %d decision flips at %.1f", flips, THRESHOLD);
  printf("\n");
  fflush(stdout);
  return bad + flips;
}

START_TEST(fp32_path_matches_ort) {
  if (!tmpdir) return;
  static double p[MAX_CHUNKS];
  quantize(q_path, 0);
  vad_stream(q_path, DYNQ_PRECISION_FP32, p);
  int bad = report("FP32 (quantized model, precision fp32)", p, FP32_TOL, 0);
  ck_assert_msg(bad == 0, "FP32 path: %d chunks differ from ONNX Runtime by more than %g", bad,
                FP32_TOL);
}
END_TEST

START_TEST(fp32_model_matches_ort) {
  if (!tmpdir) return;
  static double p[MAX_CHUNKS];
  quantize(f_path, 1);
  vad_stream(f_path, DYNQ_PRECISION_FP32, p);
  int bad = report("FP32 (--fp32 model)", p, FP32_TOL, 0);
  ck_assert_msg(bad == 0, "--fp32 model: %d chunks differ from ONNX Runtime by more than %g",
                bad, FP32_TOL);
}
END_TEST

/* The issue-4 bound, enforced: with per-patch Conv quantization and the
 * signal front-end rule (the STFT Conv and encoder/0 stay FP32, see
 * models/README.md) the clip's max |diff| is 0.019. */
START_TEST(int8_path_matches_ort) {
  if (!tmpdir) return;
  static double p[MAX_CHUNKS];
  quantize(q_path, 0);
  vad_stream(q_path, DYNQ_PRECISION_INT8, p);
  int bad = report("INT8", p, INT8_TOL, 1);
  ck_assert_msg(bad == 0,
                "INT8 path: %d breaches (chunks over %g plus decision flips at %.1f) "
                "(see the table above)",
                bad, INT8_TOL, THRESHOLD);
}
END_TEST

/* Every layer INT8 (--no-auto-fp32) does not meet the bound on this clip
 * (max |diff| 0.11: the spectrum's quiet bands); held to a regression
 * guard so the fully quantized path keeps working and finds the speech. */
#define INT8_GUARD_TOL 0.15

START_TEST(int8_all_layers_guard) {
  if (!tmpdir) return;
  static double p[MAX_CHUNKS];
  quantize_x(q_path, 0, "--no-auto-fp32");
  vad_stream(q_path, DYNQ_PRECISION_INT8, p);
  report("INT8, every layer (--no-auto-fp32)", p, INT8_TOL, 1);
  int hits = 0;
  for (int c = 0; c < n_ref; c++) {
    ck_assert_msg(fabs(p[c] - ref[c]) <= INT8_GUARD_TOL, "INT8 chunk %d: %.4f vs ORT %.4f",
                  c, p[c], ref[c]);
    hits += (p[c] >= THRESHOLD) == (ref[c] >= THRESHOLD);
  }
  ck_assert_int_ge(hits, n_ref - 3);
}
END_TEST

/* The classes the clip was built from, as a sanity check on the reference
 * itself (a wrong chunking rule gives a VAD that never fires). */
START_TEST(reference_fires_on_speech_only) {
  if (!tmpdir) return;
  int speech = 0, quiet_hi = 0;
  for (int c = 0; c < n_ref; c++) {
    double t = (c + 0.5) * CHUNK / 16000.0;
    if (ref[c] >= THRESHOLD) speech++;
    /* leading 1 s of silence; the noise segment starts after speech 1 */
    if (t < 0.9 && ref[c] >= THRESHOLD) quiet_hi++;
  }
  ck_assert_msg(speech >= n_ref / 4, "reference fires on only %d of %d chunks", speech, n_ref);
  ck_assert_int_eq(quiet_hi, 0);
}
END_TEST

/* Malformed requests: wrong shapes and dtypes are refused with a message,
 * and the session state is left as it was. */
START_TEST(bad_inputs_refused) {
  if (!tmpdir) return;
  quantize(q_path, 0);
  vad_t v;
  vad_open(&v, q_path);
  char err[512];
  double p = -1;
  int64_t save_dims;

  /* state with the wrong hidden size */
  dynq__tensor_t in[3];
  float small_state[2 * 64] = {0};
  float x[CONTEXT + CHUNK] = {0};
  memset(in, 0, sizeof in);
  in[v.i_input] = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = 2,
                                    .dims = {1, CONTEXT + CHUNK}, .data = x};
  in[v.i_state] = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = 3, .dims = {2, 1, 64},
                                    .data = small_state};
  if (v.i_sr >= 0) in[v.i_sr] = (dynq__tensor_t){.dtype = DYNQ_DT_I64, .rank = 0, .data = &v.sr};
  dynq__tensor_t out[4];
  memset(out, 0, sizeof out);
  dynq__run_opts_t o = {.precision = DYNQ_PRECISION_INT8, .threads = 1};
  err[0] = 0;
  int rc = dynq__model_run(v.m, &o, in, out, err, sizeof err);
  printf("state [2,1,64]: rc %d (%s): %s\n", rc, dynq_strerror(rc), err);
  ck_assert_int_lt(rc, 0);
  ck_assert_msg(err[0] != 0, "no message for a wrong state shape");

  /* input as int64 instead of float32 */
  in[v.i_state] = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = 3, .dims = {2, 1, HIDDEN},
                                    .data = v.state};
  int64_t xi[CONTEXT + CHUNK] = {0};
  in[v.i_input].dtype = DYNQ_DT_I64;
  in[v.i_input].data = xi;
  err[0] = 0;
  rc = dynq__model_run(v.m, &o, in, out, err, sizeof err);
  printf("input int64: rc %d (%s): %s\n", rc, dynq_strerror(rc), err);
  ck_assert_int_lt(rc, 0);
  ck_assert_msg(err[0] != 0, "no message for a wrong input dtype");

  /* rank-1 input */
  in[v.i_input].dtype = DYNQ_DT_F32;
  in[v.i_input].data = x;
  in[v.i_input].rank = 1;
  save_dims = in[v.i_input].dims[0];
  in[v.i_input].dims[0] = CONTEXT + CHUNK;
  err[0] = 0;
  rc = dynq__model_run(v.m, &o, in, out, err, sizeof err);
  printf("input rank 1: rc %d (%s): %s\n", rc, dynq_strerror(rc), err);
  ck_assert_int_lt(rc, 0);
  ck_assert_msg(err[0] != 0, "no message for a rank-1 input");
  (void)save_dims;

  /* a good chunk still runs after the failures, from the zero state */
  for (int i = 0; i < 2 * HIDDEN; i++) ck_assert(v.state[i] == 0.0f);
  rc = vad_step(&v, DYNQ_PRECISION_INT8, 0, x, &p, err, sizeof err);
  ck_assert_msg(rc == 0, "good chunk after bad ones: %s", err);
  ck_assert(p >= 0 && p <= 1);
  v.m = dynq__model_unref(v.m);
}
END_TEST

/* The "served by dynqd": the quantized model in a real dynqd, one
 * session holding the LSTM state between chunks (bindings state <- stateN),
 * streamed chunk by chunk through libdynqclient.  The served answers must be
 * the engine's own bits (same model, same kernel, per-row numerics), so the
 * ORT bound carries over; both are checked. */
START_TEST(served_by_dynqd_session) {
  if (!tmpdir) return;
  static double local[MAX_CHUNKS], served[MAX_CHUNKS];
  char mdir[4300], mpath[4400];
  snprintf(mdir, sizeof mdir, "%s/models", tmpdir);
  ck_assert_int_eq(mkdir(mdir, 0755), 0);
  snprintf(mpath, sizeof mpath, "%s/vad.dynq", mdir);
  quantize(mpath, 0);
  vad_stream(mpath, DYNQ_PRECISION_INT8, local);

  tu_daemon_t d;
  ck_assert_msg(tu_daemon_start(&d, tmpdir, mdir, NULL) == 0, "dynqd did not start");
  dynq_client_t *cl = NULL;
  ck_assert_int_eq(dynq_connect(d.sock, &cl), 0);
  static const char *const bind[2] = {"state", "stateN"};
  uint64_t sid = 0;
  int rc = dynq_session_open(cl, "vad", bind, 1, 0, &sid);
  ck_assert_msg(rc == 0, "session.open: %s", dynq_client_errmsg(cl));
  vad_t v;  /* only for its chunk buffer */
  memset(&v, 0, sizeof v);
  for (int c = 0; c < n_ref; c++) {
    dynq_tensor_t in = {.name = "input", .dtype = DYNQ_FLOAT32, .rank = 2,
                        .shape = {1, CONTEXT + CHUNK}, .data = (void *)chunk_input(&v, c),
                        .nbytes = sizeof(float) * (CONTEXT + CHUNK)};
    dynq_infer_result_t r;
    rc = dynq_session_infer(cl, sid, &in, 1, &r);
    ck_assert_msg(rc == 0, "chunk %d: %s", c, dynq_client_errmsg(cl));
    const dynq_tensor_t *po = NULL;
    for (int i = 0; i < r.n_outputs; i++)
      if (strcmp(r.outputs[i].name, "output") == 0) po = &r.outputs[i];
    ck_assert_msg(po != NULL && po->dtype == DYNQ_FLOAT32 && po->nbytes == sizeof(float),
                  "chunk %d: no float 'output'", c);
    served[c] = ((const float *)po->data)[0];
    dynq_infer_result_free(&r);
  }
  ck_assert_int_eq(dynq_session_close(cl, sid), 0);
  dynq_close(cl);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  int same = 0;
  for (int c = 0; c < n_ref; c++) same += (float)served[c] == (float)local[c];
  ck_assert_msg(same == n_ref, "dynqd session differs from the in-process engine on %d of %d chunks",
                n_ref - same, n_ref);
  int bad = report("INT8 served by dynqd (session)", served, INT8_TOL, 1);
  ck_assert_msg(bad == 0, "served INT8: %d breaches of the ORT bound", bad);
}
END_TEST

/* ---- dynqctl stream over other formats, rates and channel counts ---- */

/* Speech segments from per-chunk probabilities: runs at or above the
 * threshold, gaps of up to MERGE_GAP chunks (256 ms, a pause between
 * words) closed and runs shorter than MIN_RUN chunks dropped, so a one-chunk flicker at a boundary does
 * not count as a segment of its own. */
#define MAX_SEGS 32
#define MERGE_GAP 8
#define MIN_RUN 2
#define SEG_TOL_S 0.064

typedef struct seg {
  double start, end;  /* seconds */
} seg_t;

static int segments(const double *p, int n, seg_t *out) {
  int k = 0, c = 0;
  while (c < n) {
    if (p[c] < THRESHOLD) {
      c++;
      continue;
    }
    int a = c, b = c;
    for (;;) {
      while (b + 1 < n && p[b + 1] >= THRESHOLD) b++;
      int next = b + 1;
      while (next < n && p[next] < THRESHOLD && next - b <= MERGE_GAP) next++;
      if (next < n && p[next] >= THRESHOLD && next - b <= MERGE_GAP) b = next;
      else break;
    }
    if (b - a + 1 >= MIN_RUN && k < MAX_SEGS) {
      out[k].start = a * (double)CHUNK / 16000.0;
      out[k].end = (b + 1) * (double)CHUNK / 16000.0;
      k++;
    }
    c = b + 1;
  }
  return k;
}

/* sox's path, or NULL: fixtures are made with it at test time. */
static const char *sox_path(void) {
  static const char *const dirs[] = { "/usr/bin/sox", "/usr/local/bin/sox", "/bin/sox" };
  for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
    if (access(dirs[i], X_OK) == 0) return dirs[i];
  return NULL;
}

/* `dynqctl --json stream vad` over path: the speech probability per chunk
 * into p, the number of chunks returned. */
static int ctl_stream(const char *sock, const char *path, double *p) {
  char exe[4096], spec[4200], *out = NULL;
  snprintf(exe, sizeof exe, "%s", tu_build("client/dynqctl"));
  snprintf(spec, sizeof spec, "input=%s", path);
  char *argv[] = { exe, "--socket", (char *)sock, "--json", "stream", "vad", "--input", spec,
                   "--chunk", "512", "--context", "64", "--bind", "state=stateN", "--output",
                   "output", NULL };
  int st = tu_run(argv, &out);
  ck_assert_msg(st == 0, "dynqctl stream %s: status %d\n%s", path, st, out ? out : "");
  int n = 0;
  for (char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    int idx;
    double v;
    if (sscanf(l, "{\"chunk\": %d, \"time_s\": %*f, \"output\": \"output\", \"shape\": [%*[^]]], "
                  "\"values\": [%lf]}", &idx, &v) == 2) {
      ck_assert_msg(idx == n && n < MAX_CHUNKS, "%s: chunk %d out of order", path, idx);
      p[n++] = v;
    }
  }
  free(out);
  return n;
}

/* The speech clip as a 44.1 kHz stereo WAV, an 8 kHz FLAC, an Ogg Vorbis
 * file and a float WAV (made by sox from speech.wav) streams through dynqd
 * with dynqctl's conversion to 16 kHz mono and finds the same speech
 * segments as the 16 kHz original, each boundary within 64 ms (two
 * chunks).  A corrupt file is refused naming the file. */
START_TEST(dynqctl_streams_any_format) {
  if (!tmpdir) return;
  const char *sox = sox_path();
  if (sox == NULL) {
    const char *req = getenv("DYNQ_REQUIRE_VAD");
    ck_assert_msg(!(req && *req && strcmp(req, "0") != 0),
                  "DYNQ_REQUIRE_VAD is set but sox is missing (apt-get install sox)");
    printf("SKIP: sox not found; the format conversions are not tested\n");
    return;
  }
  static const struct {
    const char *file;
    const char *opts[8];  /* sox output options */
  } variants[] = {
    { "stereo44k.wav", { "-r", "44100", "-c", "2", NULL } },
    { "mono8k.flac", { "-r", "8000", NULL } },
    { "vorbis.ogg", { "-C", "6", NULL } },
    { "float.wav", { "-e", "floating-point", "-b", "32", NULL } },
  };
  char mdir[4300], mpath[4400], src[4096];
  snprintf(mdir, sizeof mdir, "%s/models", tmpdir);
  ck_assert_int_eq(mkdir(mdir, 0755), 0);
  snprintf(mpath, sizeof mpath, "%s/vad.dynq", mdir);
  quantize(mpath, 0);
  snprintf(src, sizeof src, "%s", tu_src("tests/fixtures/vad/speech.wav"));

  tu_daemon_t d;
  ck_assert_msg(tu_daemon_start(&d, tmpdir, mdir, NULL) == 0, "dynqd did not start");
  static double p0[MAX_CHUNKS], p[MAX_CHUNKS];
  seg_t s0[MAX_SEGS], s1[MAX_SEGS];
  int n0 = ctl_stream(d.sock, src, p0);
  ck_assert_int_ge(n0, n_ref);
  int k0 = segments(p0, n0, s0);
  printf("\ndynqctl stream, 16 kHz mono original: %d segments:", k0);
  for (int i = 0; i < k0; i++) printf(" [%.3f, %.3f]", s0[i].start, s0[i].end);
  printf("\n");
  /* the clip has two utterances (tests/fixtures/vad/make_audio.sh) */
  ck_assert_msg(k0 == 2, "%d segments in the original", k0);

  for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
    char dst[4400], *out = NULL;
    char *argv[16];
    int a = 0;
    snprintf(dst, sizeof dst, "%s/%s", tmpdir, variants[v].file);
    argv[a++] = (char *)sox;
    argv[a++] = src;
    for (int i = 0; variants[v].opts[i]; i++) argv[a++] = (char *)variants[v].opts[i];
    argv[a++] = dst;
    argv[a] = NULL;
    int st = tu_run(argv, &out);
    ck_assert_msg(st == 0, "sox %s: status %d: %s", variants[v].file, st, out ? out : "");
    free(out);
    int n = ctl_stream(d.sock, dst, p);
    /* a resampled clip can end a sample or two off: at most one chunk */
    ck_assert_msg(abs(n - n0) <= 1, "%s: %d chunks, original %d", variants[v].file, n, n0);
    int k = segments(p, n, s1);
    printf("%s: %d segments:", variants[v].file, k);
    for (int i = 0; i < k; i++) printf(" [%.3f, %.3f]", s1[i].start, s1[i].end);
    printf("\n");
    ck_assert_msg(k == k0, "%s: %d segments, original %d", variants[v].file, k, k0);
    for (int i = 0; i < k; i++)
      ck_assert_msg(fabs(s1[i].start - s0[i].start) <= SEG_TOL_S + 1e-9 &&
                        fabs(s1[i].end - s0[i].end) <= SEG_TOL_S + 1e-9,
                    "%s: segment %d [%.3f, %.3f] vs original [%.3f, %.3f]", variants[v].file, i,
                    s1[i].start, s1[i].end, s0[i].start, s0[i].end);
  }
  fflush(stdout);

  /* a FLAC cut in half and a WAV whose header is garbage */
  char bad[4400], spec[4500], exe[4096], *out = NULL;
  size_t len = 0;
  snprintf(bad, sizeof bad, "%s/mono8k.flac", tmpdir);
  unsigned char *flac = tu_read_file(bad, &len);
  ck_assert_ptr_nonnull(flac);
  memset(flac, 0x5a, 64);  /* the fLaC magic and STREAMINFO */
  snprintf(bad, sizeof bad, "%s/corrupt.flac", tmpdir);
  ck_assert_int_eq(tu_write_file(bad, flac, len), 0);
  free(flac);
  snprintf(spec, sizeof spec, "input=%s", bad);
  snprintf(exe, sizeof exe, "%s", tu_build("client/dynqctl"));
  char *argv[] = { exe, "--socket", d.sock, "stream", "vad", "--input", spec, NULL };
  ck_assert_int_eq(tu_run(argv, &out), 2);
  ck_assert_msg(strstr(out, "corrupt.flac: not an audio file libsndfile can read: ") != NULL,
                "%s", out);
  free(out);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST

static Suite *vad_suite(void) {
  Suite *s = suite_create("vad");
  TCase *tc = tcase_create("silero");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, reference_fires_on_speech_only);
  tcase_add_test(tc, fp32_path_matches_ort);
  tcase_add_test(tc, fp32_model_matches_ort);
  tcase_add_test(tc, int8_path_matches_ort);
  tcase_add_test(tc, int8_all_layers_guard);
  tcase_add_test(tc, bad_inputs_refused);
  tcase_add_test(tc, served_by_dynqd_session);
  tcase_add_test(tc, dynqctl_streams_any_format);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(vad_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
