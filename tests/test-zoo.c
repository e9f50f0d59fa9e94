/*
 * The exporter fixtures (tests/fixtures/zoo, made by make_zoo.py: BERT-style
 * encoder, nn.TransformerEncoder, decoder block, MobileNetV3-style and
 * ResNet-style CNNs, 1-D keyword spotter, each exported by PyTorch 1.13 at
 * opsets 13, 14 and 17) converted by dynq-quantize and served by a real
 * dynqd, against ONNX Runtime 1.30 on the same inputs:
 *   - FP32 path: max |d| / max |ref| <= 1e-5 against ORT FP32;
 *   - INT8 path: relL2 against ORT FP32 <= that of ORT's dynamic-INT8 graph
 *     (MatMul/Gemm/Conv with constant weights quantized as quantize_dynamic
 *     does; the figure is in zoo/MANIFEST) within a 5 % noise margin, and
 *     not identical to FP32.
 * Each model is one loop iteration, so a failure names the model; every
 * run prints a table of the errors.
 */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/dynqclient.h"
#include "model.h"
#include "ops.h"
#include "testutil.h"

enum { MAX_MODELS = 32, MAX_IO = 4 };
#define INT8_MARGIN 1.05

typedef struct zio {
  char name[64], file[128];
  int dtype, rank;          /* DYNQ_FLOAT32 / DYNQ_INT64 */
  int64_t shape[8];
  double ort_int8_rel_l2;   /* outputs only */
} zio_t;

typedef struct zmodel {
  char name[64], file[128], dynq[64];
  int opset, n_in, n_out;
  zio_t in[MAX_IO], out[MAX_IO];
  int converted;            /* dynq-quantize exit status was 0 */
  char *log;                /* its output when it failed */
} zmodel_t;

static zmodel_t models[MAX_MODELS];
static int n_models;
static char *dir;
static tu_daemon_t daemon_;
static int daemon_up;

static size_t numel(const zio_t *t) {
  size_t n = 1;
  for (int d = 0; d < t->rank; d++) n *= (size_t)t->shape[d];
  return n;
}

static int parse_io(char *line, zio_t *t, int is_out) {
  char dt[8];
  int off = 0;
  if (sscanf(line, "%63s %7s %d%n", t->name, dt, &t->rank, &off) != 3 || t->rank < 0 ||
      t->rank > 8)
    return -1;
  t->dtype = strcmp(dt, "i64") == 0 ? DYNQ_INT64 : DYNQ_FLOAT32;
  line += off;
  for (int d = 0; d < t->rank; d++) {
    long long v;
    if (sscanf(line, "%lld%n", &v, &off) != 1) return -1;
    t->shape[d] = v;
    line += off;
  }
  if (sscanf(line, "%127s%n", t->file, &off) != 1) return -1;
  line += off;
  if (is_out && sscanf(line, "%lf", &t->ort_int8_rel_l2) != 1) return -1;
  return 0;
}

static void load_manifest(void) {
  FILE *f = fopen(tu_src("tests/fixtures/zoo/MANIFEST"), "r");
  ck_assert_msg(f != NULL, "cannot open tests/fixtures/zoo/MANIFEST");
  char line[1024], kind[16];
  while (fgets(line, sizeof(line), f)) {
    int off = 0;
    if (line[0] == '#' || sscanf(line, "%15s%n", kind, &off) != 1) continue;
    if (strcmp(kind, "model") == 0) {
      ck_assert_int_lt(n_models, MAX_MODELS);
      zmodel_t *m = &models[n_models++];
      char name[48];
      ck_assert_int_eq(sscanf(line + off, "%47s %d %127s", name, &m->opset, m->file), 3);
      snprintf(m->name, sizeof(m->name), "%s", name);
      snprintf(m->dynq, sizeof(m->dynq), "%s_op%d", name, m->opset);
    } else {
      ck_assert_int_gt(n_models, 0);
      zmodel_t *m = &models[n_models - 1];
      int is_out = strcmp(kind, "output") == 0;
      int *n = is_out ? &m->n_out : &m->n_in;
      ck_assert_int_lt(*n, MAX_IO);
      ck_assert_msg(parse_io(line + off, is_out ? &m->out[*n] : &m->in[*n], is_out) == 0,
                    "bad MANIFEST line: %s", line);
      (*n)++;
    }
  }
  fclose(f);
  ck_assert_int_ge(n_models, 18);
}

static void setup(void) {
  char *md = NULL;
  dir = tu_mkdtemp_models(&md);
  load_manifest();
  for (int i = 0; i < n_models; i++) {
    zmodel_t *m = &models[i];
    char src[256], out[512];
    snprintf(src, sizeof(src), "%s/tests/fixtures/zoo/%s", tu_src("."), m->file);
    snprintf(out, sizeof(out), "%s/%s.dynq", md, m->dynq);
    m->converted = tu_quantize_log(&m->log, src, out, (char *)NULL) == 0;
  }
  ck_assert_int_eq(tu_daemon_start(&daemon_, dir, md, NULL), 0);
  daemon_up = 1;
  free(md);
}

static void teardown(void) {
  if (daemon_up) tu_daemon_stop(&daemon_, SIGKILL);
  for (int i = 0; i < n_models; i++) free(models[i].log);
  tu_rmtree(dir);
  free(dir);
}

/* Runs model m at precision; copies output 0 into y (numel floats). */
static void infer(dynq_client_t *c, const zmodel_t *m, int precision, float *y) {
  dynq_tensor_t in[MAX_IO];
  void *bufs[MAX_IO];
  for (int k = 0; k < m->n_in; k++) {
    const zio_t *t = &m->in[k];
    char rel[256];
    size_t len = 0, esz = t->dtype == DYNQ_INT64 ? 8 : 4;
    snprintf(rel, sizeof(rel), "tests/fixtures/zoo/%s", t->file);
    bufs[k] = tu_read_file(tu_src(rel), &len);
    ck_assert_msg(bufs[k] != NULL && len == numel(t) * esz, "%s: %zu bytes", rel, len);
    in[k] = (dynq_tensor_t){.name = t->name, .dtype = t->dtype, .rank = t->rank,
                            .data = bufs[k], .nbytes = len};
    memcpy(in[k].shape, t->shape, sizeof(int64_t) * (size_t)t->rank);
  }
  dynq_infer_result_t r;
  int rc = dynq_infer(c, m->dynq, precision, in, m->n_in, &r);
  ck_assert_msg(rc == 0, "%s: infer (%s) failed: %d %s", m->dynq,
                precision == DYNQ_INFER_FP32 ? "fp32" : "int8", rc, dynq_client_errmsg(c));
  const zio_t *o = &m->out[0];
  const dynq_tensor_t *ty = NULL;
  for (int i = 0; i < r.n_outputs; i++)
    if (strcmp(r.outputs[i].name, o->name) == 0) ty = &r.outputs[i];
  ck_assert_msg(ty != NULL, "%s: no output '%s'", m->dynq, o->name);
  ck_assert_int_eq(ty->dtype, DYNQ_FLOAT32);
  ck_assert_int_eq(ty->rank, o->rank);
  for (int d = 0; d < o->rank; d++) ck_assert_int_eq(ty->shape[d], o->shape[d]);
  ck_assert_uint_eq(ty->nbytes, numel(o) * sizeof(float));
  memcpy(y, ty->data, ty->nbytes);
  dynq_infer_result_free(&r);
  for (int k = 0; k < m->n_in; k++) free(bufs[k]);
}

START_TEST(zoo_model) {
  ck_assert_int_lt(_i, n_models);
  const zmodel_t *m = &models[_i];
  ck_assert_msg(m->converted, "dynq-quantize %s failed:\n%s", m->file, m->log ? m->log : "");
  size_t n = numel(&m->out[0]);
  float *ref = malloc(n * sizeof(float)), *y32 = malloc(n * sizeof(float)),
        *y8 = malloc(n * sizeof(float));
  ck_assert(ref && y32 && y8);
  char rel[256];
  snprintf(rel, sizeof(rel), "tests/fixtures/zoo/%s", m->out[0].file);
  ck_assert_int_eq(tu_load_f32(rel, ref, n), 0);
  dynq_client_t *c = NULL;
  ck_assert_int_eq(dynq_connect(daemon_.sock, &c), 0);
  infer(c, m, DYNQ_INFER_FP32, y32);
  infer(c, m, DYNQ_INFER_INT8, y8);
  dynq_close(c);
  double e32 = tu_rel_max(y32, ref, n), e8 = tu_rel_l2(y8, ref, n);
  double ort8 = m->out[0].ort_int8_rel_l2;
  printf("zoo %-10s opset %d: fp32 max rel %.2e (<= 1e-5); int8 relL2 %.5f, ORT INT8 %.5f "
         "(ratio %.2f)\n", m->name, m->opset, e32, e8, ort8, ort8 > 0 ? e8 / ort8 : 0.0);
  ck_assert_msg(e32 <= 1e-5, "%s: fp32 vs ORT FP32 max rel %g", m->dynq, e32);
  ck_assert_msg(ort8 > 0, "%s: MANIFEST has no ORT INT8 figure (regenerate with ORT)", m->dynq);
  ck_assert_msg(e8 > 0, "%s: int8 output identical to ORT FP32: nothing quantized?", m->dynq);
  /* Two INT8 schemes of equal accuracy differ by a few percent from one
   * input draw to the next (MobileNet fixture on three batches of 32
   * images: dynq/ORT 0.93, 1.05, 0.98); the margin covers that noise, not
   * a less accurate path.  The table above shows every ratio. */
  ck_assert_msg(e8 <= ort8 * INT8_MARGIN, "%s: int8 relL2 %g > %.2f x ORT dynamic INT8's %g",
                m->dynq, e8, INT8_MARGIN, ort8);
  free(ref);
  free(y32);
  free(y8);
}
END_TEST

/* Output 0 of model file path run in-process on m's inputs (owned); seq
 * > 0 keeps the first seq positions of axis 1 of every input (a shorter
 * request to the same model), else the inputs as stored. */
static float *run_inproc_seq(const char *path, const zmodel_t *m, int precision, int64_t seq) {
  char err[512];
  dynq__model_t *dm = NULL;
  ck_assert_msg(dynq__model_open(path, &dm, err, sizeof err) == 0, "%s: %s", path, err);
  dynq__tensor_t in[MAX_IO], out[8];
  memset(in, 0, sizeof in);
  memset(out, 0, sizeof out);
  for (int k = 0; k < m->n_in; k++) {
    const zio_t *t = &m->in[k];
    int idx = dynq__model_input_index(dm, t->name);
    ck_assert_int_ge(idx, 0);
    char rel[256];
    size_t len = 0;
    snprintf(rel, sizeof rel, "tests/fixtures/zoo/%s", t->file);
    in[idx].dtype = t->dtype == DYNQ_INT64 ? DYNQ_DT_I64 : DYNQ_DT_F32;
    in[idx].rank = t->rank;
    memcpy(in[idx].dims, t->shape, sizeof(int64_t) * (size_t)t->rank);
    in[idx].data = tu_read_file(tu_src(rel), &len);
    ck_assert_ptr_nonnull(in[idx].data);
    if (seq > 0) {  /* [d0, d1, rest...] -> [d0, seq, rest...] in place */
      ck_assert(t->rank >= 2 && seq <= t->shape[1]);
      size_t row = dynq__tensor_nbytes(&in[idx]) / (size_t)(t->shape[0] * t->shape[1]);
      for (int64_t b = 0; b < t->shape[0]; b++)
        memmove((char *)in[idx].data + (size_t)(b * seq) * row,
                (char *)in[idx].data + (size_t)(b * t->shape[1]) * row, (size_t)seq * row);
      in[idx].dims[1] = seq;
    }
  }
  dynq__run_opts_t o = {.precision = precision};
  ck_assert_msg(dynq__model_run(dm, &o, in, out, err, sizeof err) == 0, "%s: %s", path, err);
  size_t n = numel(&m->out[0]);
  if (seq > 0) n = n / (size_t)m->out[0].shape[1] * (size_t)seq;
  ck_assert_uint_eq(dynq__tensor_numel(&out[0]), n);
  float *y = malloc(n * sizeof(float));
  ck_assert_ptr_nonnull(y);
  memcpy(y, out[0].data, n * sizeof(float));
  for (int k = 0; k < dynq__model_graph(dm)->n_outputs && k < 8; k++) dynq__tensor_clear(&out[k]);
  for (int k = 0; k < m->n_in; k++) free(in[k].data);
  dynq__model_unref(dm);
  return y;
}

/* The import-time fusions (decomposed LayerNorm; bias Add and erf-GELU
 * into the QLinear epilogue) against the exporter's graph: every model the
 * fusions touch, converted with and without --no-fuse, agrees on both
 * paths. */
static float *run_inproc(const char *path, const zmodel_t *m, int precision) {
  return run_inproc_seq(path, m, precision, 0);
}

START_TEST(fused_vs_unfused) {
  int checked = 0;
  for (int i = 0; i < n_models; i++) {
    const zmodel_t *m = &models[i];
    if (!m->converted) continue;
    char src[256], fa[512], fb[512];
    snprintf(src, sizeof src, "%s/tests/fixtures/zoo/%s", tu_src("."), m->file);
    snprintf(fa, sizeof fa, "%s/fused.dynq", dir);
    snprintf(fb, sizeof fb, "%s/unfused.dynq", dir);
    char *log = NULL;
    ck_assert_int_eq(tu_quantize_log(&log, src, fa, (char *)NULL), 0);
    int fused = strstr(log, "fused:") != NULL;
    /* the patterns each exporter fixture must hit: attention's four
     * products and two mask Adds (bert), the tanh GELU (decoder) */
    if (strcmp(m->name, "bert") == 0)
      ck_assert_msg(strstr(log, "fused: 4 attention MatMuls") && strstr(log, "2 mask Adds"),
                    "%s: attention not fused:\n%s", m->dynq, log);
    if (strcmp(m->name, "decoder") == 0)
      ck_assert_msg(strstr(log, "and 1 GELU into") && strstr(log, "fused: 4 attention MatMuls"),
                    "%s: tanh GELU or attention not fused:\n%s", m->dynq, log);
    free(log);
    log = NULL;
    ck_assert_int_eq(tu_quantize_log(&log, "--no-fuse", src, fb, (char *)NULL), 0);
    ck_assert_ptr_null(strstr(log, "fused:"));
    free(log);
    if (!fused) continue;
    size_t n = numel(&m->out[0]);
    for (int p = 0; p < 2; p++) {
      int prec = p ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8;
      float *ya = run_inproc(fa, m, prec), *yb = run_inproc(fb, m, prec);
      double e = tu_rel_max(ya, yb, n);
      printf("zoo %s opset %d: fused vs unfused, %s max rel %.2e\n", m->name,
             m->opset, p ? "fp32" : "int8", e);
      /* INT8: a fused output is the next layer's input, quantized per
       * row; a last-bit change may move one rounding step */
      ck_assert_msg(e <= (p ? 1e-5 : 2e-3), "%s: fused vs unfused %g", m->dynq, e);
      free(ya);
      free(yb);
      /* the same model at a shorter sequence (one model, any s <= max) */
      if (strcmp(m->name, "bert") == 0 || strcmp(m->name, "tenc") == 0) {
        size_t ns = n / (size_t)m->out[0].shape[1] * 11;
        ya = run_inproc_seq(fa, m, prec, 11);
        yb = run_inproc_seq(fb, m, prec, 11);
        e = tu_rel_max(ya, yb, ns);
        printf("zoo %s opset %d: fused vs unfused at seq 11, %s max rel %.2e\n", m->name,
               m->opset, p ? "fp32" : "int8", e);
        ck_assert_msg(e <= (p ? 1e-5 : 2e-3), "%s: fused vs unfused at seq 11: %g", m->dynq, e);
        free(ya);
        free(yb);
      }
    }
    checked++;
  }
  ck_assert_int_ge(checked, 2);
}
END_TEST

/* dynq-quantize --int8-attention: attention's activation x activation
 * products run dynamic INT8 on the INT8 path.  On every attention fixture
 * the INT8 output changes (the path is taken) and stays within ORT's
 * dynamic-INT8 error; the FP32 path is the same bits as without it. */
START_TEST(int8_attention) {
  int checked = 0;
  for (int i = 0; i < n_models; i++) {
    const zmodel_t *m = &models[i];
    if (!m->converted || (strcmp(m->name, "bert") && strcmp(m->name, "tenc") &&
                          strcmp(m->name, "decoder")))
      continue;
    char src[256], fa[512], fb[512], rel[256];
    snprintf(src, sizeof src, "%s/tests/fixtures/zoo/%s", tu_src("."), m->file);
    snprintf(fa, sizeof fa, "%s/att8.dynq", dir);
    snprintf(fb, sizeof fb, "%s/att32.dynq", dir);
    ck_assert_int_eq(tu_quantize(src, fa, "--int8-attention", (char *)NULL), 0);
    ck_assert_int_eq(tu_quantize(src, fb, (char *)NULL), 0);
    size_t n = numel(&m->out[0]);
    float *ref = malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(ref);
    snprintf(rel, sizeof rel, "tests/fixtures/zoo/%s", m->out[0].file);
    ck_assert_int_eq(tu_load_f32(rel, ref, n), 0);
    float *a8 = run_inproc(fa, m, DYNQ_PRECISION_INT8), *b8 = run_inproc(fb, m, DYNQ_PRECISION_INT8);
    float *a32 = run_inproc(fa, m, DYNQ_PRECISION_FP32), *b32 = run_inproc(fb, m, DYNQ_PRECISION_FP32);
    double e8 = tu_rel_l2(a8, ref, n), d8 = tu_rel_l2(b8, ref, n), ort8 = m->out[0].ort_int8_rel_l2;
    printf("zoo %s opset %d: int8 attention relL2 %.5f (fp32 attention %.5f, ORT INT8 %.5f)\n",
           m->name, m->opset, e8, d8, ort8);
    ck_assert_msg(memcmp(a8, b8, n * sizeof(float)) != 0, "%s: --int8-attention changed nothing",
                  m->dynq);
    ck_assert_msg(memcmp(a32, b32, n * sizeof(float)) == 0, "%s: the FP32 path changed", m->dynq);
    ck_assert_msg(e8 <= ort8 * INT8_MARGIN, "%s: int8 attention relL2 %g > %.2f x ORT's %g",
                  m->dynq, e8, INT8_MARGIN, ort8);
    free(ref);
    free(a8);
    free(b8);
    free(a32);
    free(b32);
    checked++;
  }
  ck_assert_int_eq(checked, 9);
}
END_TEST

/* INT8 embedding tables (QGather): every stored row, dequantized, against
 * the FP32 reference row the file keeps: cosine >= 0.999. */
START_TEST(embeddings_cosine) {
  char src[256], path[512], err[256];
  snprintf(src, sizeof src, "%s/tests/fixtures/zoo/bert_op14.onnx", tu_src("."));
  snprintf(path, sizeof path, "%s/emb.dynq", dir);
  ck_assert_int_eq(tu_quantize(src, path, (char *)NULL), 0);
  dynq__model_t *dm = NULL;
  ck_assert_msg(dynq__model_open(path, &dm, err, sizeof err) == 0, "%s", err);
  const dynq__graph_t *g = dynq__model_graph(dm);
  int tables = 0;
  double worst = 1.0;
  for (int i = 0; i < g->n_nodes; i++) {
    const dynq__node_t *n = &g->nodes[i];
    if (n->op != DYNQ_OP_QGATHER) continue;
    ck_assert_int_ge(n->n_in, 4);
    const dynq__value_t *q = &g->values[n->in[1]], *sc = &g->values[n->in[2]],
                        *ref = &g->values[n->in[3]];
    int64_t V = q->dims[0], D = q->dims[1];
    for (int64_t v = 0; v < V; v++) {
      const int8_t *qr = (const int8_t *)q->data + v * D;
      const float *rr = (const float *)ref->data + v * D;
      double dot = 0, a = 0, b = 0, s = ((const float *)sc->data)[v];
      for (int64_t k = 0; k < D; k++) {
        double x = s * qr[k];
        dot += x * rr[k], a += x * x, b += (double)rr[k] * rr[k];
      }
      double cs = b > 0 ? dot / sqrt(a * b) : 1.0;
      worst = cs < worst ? cs : worst;
    }
    tables++;
  }
  printf("zoo bert: %d int8 embedding tables, worst row cosine %.6f (>= 0.999)\n", tables, worst);
  ck_assert_int_eq(tables, 2);
  ck_assert_msg(worst >= 0.999, "worst row cosine %g", worst);
  dynq__model_unref(dm);
}
END_TEST

static Suite *zoo_suite(void) {
  Suite *s = suite_create("zoo");
  TCase *tc = tcase_create("models");
  tcase_set_timeout(tc, 300);
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_add_loop_test(tc, zoo_model, 0, 18);
  tcase_add_test(tc, fused_vs_unfused);
  tcase_add_test(tc, int8_attention);
  tcase_add_test(tc, embeddings_cosine);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(zoo_suite)
