/*
 * The .dynq writer and the validating loader: round trip, then every kind
 * of damaged or hostile file refused at load with a message naming what
 * was wrong.  Hostile files are "resealed" (checksums recomputed) so the
 * structural checks themselves are exercised, not only the CRCs.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "format.h"
#include "kernels/kernels.h"
#include "model.h"
#include "ops.h"
#include "testutil.h"

enum { K = 37, N = 21, M = 5 };

static char *dir;
static char path[512];

/* A one-layer model: y = relu(QLinear(x)) + nothing else. */
static float W[N][K], bias[N], wref[K][N];
static int8_t packed[((N + 15) / 16 * 16) * ((K + 3) / 4 * 4)];
static int32_t colsum[N];
static float wscale[N];

static void build_weights(void) {
  srand(7);
  int8_t q[N][K];
  for (int n = 0; n < N; n++) {
    float mx = 0;
    for (int k = 0; k < K; k++) {
      W[n][k] = (float)rand() / (float)RAND_MAX - 0.5f;
      if (fabsf(W[n][k]) > mx) mx = fabsf(W[n][k]);
    }
    wscale[n] = mx / 127.0f;
    colsum[n] = 0;
    for (int k = 0; k < K; k++) {
      q[n][k] = (int8_t)nearbyintf(W[n][k] / wscale[n]);
      colsum[n] += q[n][k];
      wref[k][n] = W[n][k];
    }
    bias[n] = 0.1f * (float)n;
  }
  dynq__pack_weights(N, K, &q[0][0], packed);
}

static dynq__value_t vals[8];
static dynq__node_t nodes[2];
static int32_t n0_in[6] = {0, 1, 2, 3, 4, 5}, n0_out[1] = {6};
static int32_t n1_in[1] = {6}, n1_out[1] = {7};
static dynq__attr_t attrs[2] = {{.name = "k", .type = DYNQ_ATTR_INT, .i = K},
                                {.name = "n", .type = DYNQ_ATTR_INT, .i = N}};
static int32_t g_in[1] = {0}, g_out[1] = {7};

static dynq__graph_t make_graph(void) {
  build_weights();
  memset(vals, 0, sizeof(vals));
  vals[0] = (dynq__value_t){.name = "x", .dtype = DYNQ_DT_F32, .rank = 2, .dims = {-1, K}};
  vals[1] = (dynq__value_t){.name = "wq", .dtype = DYNQ_DT_I8, .rank = 1, .dims = {sizeof(packed)}, .data = packed, .nbytes = sizeof(packed)};
  vals[2] = (dynq__value_t){.name = "colsum", .dtype = DYNQ_DT_I32, .rank = 1, .dims = {N}, .data = colsum, .nbytes = sizeof(colsum)};
  vals[3] = (dynq__value_t){.name = "wscale", .dtype = DYNQ_DT_F32, .rank = 1, .dims = {N}, .data = wscale, .nbytes = sizeof(wscale)};
  vals[4] = (dynq__value_t){.name = "bias", .dtype = DYNQ_DT_F32, .rank = 1, .dims = {N}, .data = bias, .nbytes = sizeof(bias)};
  vals[5] = (dynq__value_t){.name = "wref", .dtype = DYNQ_DT_F32, .rank = 2, .dims = {K, N}, .data = wref, .nbytes = sizeof(wref)};
  vals[6] = (dynq__value_t){.name = "h", .dtype = DYNQ_DT_F32, .rank = 2, .dims = {-1, N}};
  vals[7] = (dynq__value_t){.name = "y", .dtype = DYNQ_DT_F32, .rank = 2, .dims = {-1, N}};
  nodes[0] = (dynq__node_t){.op = DYNQ_OP_QLINEAR, .name = "fc", .n_in = 6, .n_out = 1, .in = n0_in, .out = n0_out, .n_attr = 2, .attr = attrs};
  nodes[1] = (dynq__node_t){.op = DYNQ_OP_RELU, .name = "act", .n_in = 1, .n_out = 1, .in = n1_in, .out = n1_out};
  return (dynq__graph_t){.n_values = 8, .values = vals, .n_nodes = 2, .nodes = nodes,
                         .n_inputs = 1, .inputs = g_in, .n_outputs = 1, .outputs = g_out,
                         .producer = "test-format", .source_hash = 42};
}

static void setup(void) {
  dir = tu_mkdtemp();
  ck_assert_ptr_nonnull(dir);
  snprintf(path, sizeof(path), "%s/m.dynq", dir);
  dynq__graph_t g = make_graph();
  char err[256] = "";
  int rc = dynq__graph_write(&g, path, err, sizeof(err));
  ck_assert_msg(rc == 0, "write: %s", err);
}

static void teardown(void) {
  tu_rmtree(dir);
  free(dir);
}

START_TEST(roundtrip_runs) {
  dynq__model_t *m = NULL;
  char err[256] = "";
  ck_assert_int_eq(dynq__model_open(path, &m, err, sizeof(err)), 0);
  const dynq__graph_t *g = dynq__model_graph(m);
  ck_assert_int_eq(g->n_nodes, 2);
  ck_assert_str_eq(g->producer, "test-format");
  ck_assert_uint_eq(g->source_hash, 42);
  ck_assert_int_eq(dynq__model_input_index(m, "x"), 0);
  ck_assert_int_eq(dynq__model_input_index(m, "nope"), -1);
  dynq__model_stats_t st;
  dynq__model_get_stats(m, &st);
  ck_assert_int_eq(st.n_quant[DYNQ_QKIND_LINEAR], 1);
  ck_assert_int_eq(st.n_quantized, 1);
  ck_assert_int_eq(st.n_quant[DYNQ_QKIND_LINEAR], 1);
  ck_assert_int_eq(st.n_quant[DYNQ_QKIND_CONV] + st.n_quant[DYNQ_QKIND_LSTM], 0);
  ck_assert_uint_eq(st.quant_int8_bytes[DYNQ_QKIND_LINEAR], sizeof(packed));
  ck_assert_str_eq(dynq__qkind_name(DYNQ_QKIND_GRU), "QGRU");
  ck_assert_str_eq(dynq__qkind_name(DYNQ_QKIND__COUNT), "?");
  ck_assert_int_eq(st.has_reference, 1);
  ck_assert_uint_eq(st.int8_weight_bytes, sizeof(packed));
  /* the signature: the graph's inputs and outputs without the graph */
  const dynq__model_sig_t *sig = dynq__model_signature(m);
  ck_assert_int_eq(sig->n_inputs, g->n_inputs);
  ck_assert_int_eq(sig->n_outputs, g->n_outputs);
  ck_assert_int_eq(sig->n_state, 0);
  ck_assert_str_eq(sig->inputs[0].name, "x");
  ck_assert_int_eq(sig->inputs[0].dtype, DYNQ_DT_F32);
  ck_assert_int_eq(sig->inputs[0].rank, g->values[g->inputs[0]].rank);
  ck_assert_int_eq(sig->inputs[0].dims[0], g->values[g->inputs[0]].dims[0]);
  ck_assert_int_eq(sig->inputs[0].state_peer, -1);
  ck_assert_str_eq(sig->outputs[0].name, g->values[g->outputs[0]].name);
  ck_assert_int_eq(dynq__model_output_index(m, sig->outputs[0].name), 0);
  ck_assert_int_eq(dynq__model_output_index(m, "nope"), -1);
  ck_assert_uint_eq(st.ref_weight_bytes, sizeof(wref));

  float x[M][K], expect[M][N];
  srand(11);
  for (int i = 0; i < M; i++)
    for (int k = 0; k < K; k++) x[i][k] = 3.0f * ((float)rand() / (float)RAND_MAX - 0.3f);
  for (int i = 0; i < M; i++)
    for (int n = 0; n < N; n++) {
      double s = bias[n];
      for (int k = 0; k < K; k++) s += (double)x[i][k] * W[n][k];
      expect[i][n] = s > 0 ? (float)s : 0.0f;
    }
  dynq__tensor_t in = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {M, K}, .data = x};
  dynq__tensor_t out[1];
  dynq__run_opts_t o = {.precision = DYNQ_PRECISION_FP32};
  ck_assert_msg(dynq__model_run(m, &o, &in, out, err, sizeof(err)) == 0, "%s", err);
  ck_assert_int_eq(out[0].rank, 2);
  ck_assert_int_eq(out[0].dims[0], M);
  ck_assert_int_eq(out[0].dims[1], N);
  for (int i = 0; i < M * N; i++)
    ck_assert_float_eq_tol(((float *)out[0].data)[i], (&expect[0][0])[i], 1e-5f);
  dynq__tensor_clear(&out[0]);

  o.precision = DYNQ_PRECISION_INT8;
  ck_assert_msg(dynq__model_run(m, &o, &in, out, err, sizeof(err)) == 0, "%s", err);
  double e = tu_rel_l2(out[0].data, &expect[0][0], M * N);
  ck_assert_msg(e <= 0.02, "int8 relL2 %g", e);
  ck_assert_msg(e > 0, "int8 identical to fp32: quantization did not happen");

  /* rows one at a time are bit-identical to the batch (per-row scales) */
  for (int i = 0; i < M; i++) {
    dynq__tensor_t r = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {1, K}, .data = x[i]};
    dynq__tensor_t ro[1];
    ck_assert_int_eq(dynq__model_run(m, &o, &r, ro, err, sizeof(err)), 0);
    ck_assert_int_eq(memcmp(ro[0].data, (float *)out[0].data + i * N, N * sizeof(float)), 0);
    dynq__tensor_clear(&ro[0]);
  }
  dynq__tensor_clear(&out[0]);

  /* wrong shape and dtype are refused with a message naming the input */
  dynq__tensor_t bad = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {M, K + 1}, .data = x};
  ck_assert_int_eq(dynq__model_run(m, &o, &bad, out, err, sizeof(err)), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "'x'"));
  bad = (dynq__tensor_t){.dtype = DYNQ_DT_I32, .rank = 2, .dims = {M, K}, .data = x};
  ck_assert_int_eq(dynq__model_run(m, &o, &bad, out, err, sizeof(err)), DYNQ_EDTYPE);
  bad = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = 1, .dims = {K}, .data = x};
  ck_assert_int_eq(dynq__model_run(m, &o, &bad, out, err, sizeof(err)), DYNQ_ESHAPE);
  dynq__model_unref(m);
}
END_TEST

/* ---- hostile files ---- */

static uint8_t *img;
static size_t img_len;

static void load_img(void) {
  img = tu_read_file(path, &img_len);
  ck_assert_ptr_nonnull(img);
}

static dynq__fhdr_t *hdr(void) { return (dynq__fhdr_t *)img; }
static dynq__fsection_t *sect(int kind) {
  dynq__fsection_t *t = (dynq__fsection_t *)(img + hdr()->sections_off);
  for (uint32_t i = 0; i < hdr()->n_sections; i++)
    if ((int)t[i].kind == kind) return &t[i];
  return NULL;
}

/* Recompute every checksum so only the structural damage remains. */
static void reseal(void) {
  dynq__fsection_t *t = (dynq__fsection_t *)(img + hdr()->sections_off);
  for (uint32_t i = 0; i < hdr()->n_sections; i++)
    if (t[i].offset <= img_len && t[i].size <= img_len - t[i].offset)
      t[i].crc = dynq__crc32c(0, img + t[i].offset, t[i].size);
  hdr()->table_crc = dynq__crc32c(0, t, hdr()->n_sections * sizeof(*t));
  hdr()->header_crc = dynq__crc32c(0, img, offsetof(dynq__fhdr_t, header_crc));
}

static int open_img(size_t len, char *err, size_t errlen) {
  char p2[600];
  snprintf(p2, sizeof(p2), "%s/bad.dynq", dir);
  ck_assert_int_eq(tu_write_file(p2, img, len), 0);
  dynq__model_t *m = NULL;
  int rc = dynq__model_open(p2, &m, err, errlen);
  if (rc == 0) dynq__model_unref(m);
  return rc;
}

#define EXPECT_REFUSED(code, needle)                                          \
  do {                                                                        \
    char e_[512] = "";                                                        \
    int rc_ = open_img(img_len, e_, sizeof(e_));                              \
    ck_assert_msg(rc_ == (code), "rc %d (%s), want %d: %s", rc_,              \
                  dynq_err_name(rc_), (code), e_);                            \
    ck_assert_msg(strstr(e_, (needle)) != NULL, "message '%s' lacks '%s'",    \
                  e_, (needle));                                              \
  } while (0)

START_TEST(truncated_everywhere) {
  load_img();
  /* every prefix length on a coarse grid, plus the last bytes */
  for (size_t len = 0; len < img_len; len += (len < 512 ? 7 : 997)) {
    char e[512] = "";
    int rc = open_img(len, e, sizeof(e));
    ck_assert_msg(rc == DYNQ_EFORMAT, "len %zu: rc %d %s", len, rc, e);
    ck_assert_msg(strstr(e, "truncated") || strstr(e, "short"), "len %zu: %s", len, e);
  }
  char e[512];
  ck_assert_int_eq(open_img(img_len - 1, e, sizeof(e)), DYNQ_EFORMAT);
  free(img);
}
END_TEST

START_TEST(bit_flips_caught) {
  load_img();
  /* a flipped bit anywhere is caught by a checksum or a structural check */
  for (size_t pos = 0; pos < img_len; pos += 13) {
    img[pos] ^= 0x10;
    char e[512] = "";
    int rc = open_img(img_len, e, sizeof(e));
    ck_assert_msg(rc != 0, "flip at %zu accepted", pos);
    img[pos] ^= 0x10;
  }
  free(img);
}
END_TEST

START_TEST(bad_magic_version) {
  load_img();
  memcpy(hdr()->magic, "NOTAMODL", 8);
  reseal();
  EXPECT_REFUSED(DYNQ_EFORMAT, "magic");
  memcpy(hdr()->magic, DYNQ_FILE_MAGIC, 8);
  hdr()->version = 9;
  reseal();
  EXPECT_REFUSED(DYNQ_EVERSION, "version 9");
  hdr()->version = DYNQ_FILE_VERSION;
  /* A feature bit this build does not know: refused as a newer file. */
  hdr()->flags = 0x80000000u;
  reseal();
  EXPECT_REFUSED(DYNQ_EVERSION, "needs features 0x80000000");
  hdr()->flags = 0;
  reseal();
  img[offsetof(dynq__fhdr_t, reserved)] = 0;  /* no-op sanity */
  char e[512];
  ck_assert_int_eq(open_img(img_len, e, sizeof(e)), 0);
  free(img);
}
END_TEST

START_TEST(bad_checksums) {
  load_img();
  dynq__fsection_t *d = sect(DYNQ_SEC_DATA);
  img[d->offset + 3] ^= 1;  /* weight byte changed, not resealed */
  EXPECT_REFUSED(DYNQ_ECHECKSUM, "'data' checksum");
  img[d->offset + 3] ^= 1;
  dynq__fsection_t *s = sect(DYNQ_SEC_NODES);
  img[s->offset] ^= 1;
  EXPECT_REFUSED(DYNQ_ECHECKSUM, "'nodes' checksum");
  free(img);
}
END_TEST

START_TEST(bad_offsets) {
  load_img();
  dynq__fsection_t *s = sect(DYNQ_SEC_VALUES);
  uint64_t keep = s->offset;
  s->offset = img_len + 4096;
  reseal();
  EXPECT_REFUSED(DYNQ_EFORMAT, "outside the file");
  s->offset = UINT64_MAX - 8;
  reseal();
  EXPECT_REFUSED(DYNQ_EFORMAT, "outside the file");
  s->offset = keep;
  /* a constant pointing past its section */
  dynq__fvalue_t *v = (dynq__fvalue_t *)(img + s->offset);
  uint64_t koff = v[1].data_off;
  v[1].data_off = sect(DYNQ_SEC_DATA)->offset + sect(DYNQ_SEC_DATA)->size;
  reseal();
  EXPECT_REFUSED(DYNQ_EFORMAT, "outside the data section");
  v[1].data_off = koff + 1;  /* misaligned */
  reseal();
  EXPECT_REFUSED(DYNQ_EFORMAT, "aligned");
  v[1].data_off = koff;
  /* a node reading a value index out of range */
  int32_t *refs = (int32_t *)(img + sect(DYNQ_SEC_REFS)->offset);
  int32_t keep_ref = refs[0];
  refs[0] = 1000;
  reseal();
  EXPECT_REFUSED(DYNQ_EGRAPH, "bad value index");
  refs[0] = keep_ref;
  /* a string offset out of range */
  dynq__fnode_t *nd = (dynq__fnode_t *)(img + sect(DYNQ_SEC_NODES)->offset);
  nd[0].name = 1u << 30;
  reseal();
  EXPECT_REFUSED(DYNQ_EFORMAT, "name offset");
  nd[0].name = 0;
  nd[0].n_in = 60000;
  reseal();
  EXPECT_REFUSED(DYNQ_EFORMAT, "out of bounds");
  free(img);
}
END_TEST

START_TEST(overlapping_tensors) {
  load_img();
  dynq__fvalue_t *v = (dynq__fvalue_t *)(img + sect(DYNQ_SEC_VALUES)->offset);
  v[4].data_off = v[3].data_off;  /* bias aliases wscale: same size */
  reseal();
  EXPECT_REFUSED(DYNQ_EFORMAT, "overlap");
  free(img);
}
END_TEST

START_TEST(bad_graph) {
  load_img();
  dynq__fvalue_t *v = (dynq__fvalue_t *)(img + sect(DYNQ_SEC_VALUES)->offset);
  v[1].dims[0] = 16;  /* packed weights of the wrong size for k, n */
  v[1].data_size = 16;
  reseal();
  EXPECT_REFUSED(DYNQ_EGRAPH, "packed weights");
  free(img);
  load_img();
  dynq__fnode_t *nd = (dynq__fnode_t *)(img + sect(DYNQ_SEC_NODES)->offset);
  nd[1].op = 999;
  reseal();
  EXPECT_REFUSED(DYNQ_EUNSUPPORTED, "unknown op");
  nd[1].op = DYNQ_OP_RELU;
  /* node order broken: the relu reads h before the QLinear writes it */
  dynq__fnode_t t = nd[0];
  nd[0] = nd[1];
  nd[1] = t;
  reseal();
  EXPECT_REFUSED(DYNQ_EGRAPH, "before it is written");
  free(img);
}
END_TEST

START_TEST(not_a_file) {
  dynq__model_t *m = NULL;
  char e[512] = "";
  ck_assert_int_eq(dynq__model_open("/nonexistent/x.dynq", &m, e, sizeof(e)), -2);
  ck_assert_ptr_nonnull(strstr(e, "/nonexistent/x.dynq"));
  ck_assert_int_eq(dynq__model_open(dir, &m, e, sizeof(e)), DYNQ_EFORMAT);
  ck_assert_ptr_nonnull(strstr(e, "regular"));
}
END_TEST

START_TEST(write_refuses_invalid_graph) {
  dynq__graph_t g = make_graph();
  n1_in[0] = 42;
  char e[256] = "", p2[600];
  snprintf(p2, sizeof(p2), "%s/never.dynq", dir);
  ck_assert_int_eq(dynq__graph_write(&g, p2, e, sizeof(e)), DYNQ_EGRAPH);
  n1_in[0] = 6;
  ck_assert_int_ne(access(p2, F_OK), 0);
}
END_TEST


/* A crafted graph reads a value only an untaken If branch writes: refused
 * at run time with a message, never a read of missing data. */
START_TEST(if_branch_value_escapes) {
  static dynq__value_t v[4] = {
    {.name = "cond", .dtype = DYNQ_DT_U8, .rank = 0},
    {.name = "flag", .dtype = DYNQ_DT_U8, .rank = 0},
    {.name = "x", .dtype = DYNQ_DT_F32, .rank = 1, .dims = {4}},
    {.name = "inner", .dtype = DYNQ_DT_F32, .rank = 1, .dims = {4}},
  };
  static dynq__value_t v2[5];
  memcpy(v2, v, sizeof(v));
  v2[4] = (dynq__value_t){.name = "y", .dtype = DYNQ_DT_F32, .rank = 1, .dims = {4}};
  static const int32_t if_in[1] = {0}, if_out[1] = {1}, r1_in[1] = {2}, r1_out[1] = {3},
                       r2_in[1] = {3}, r2_out[1] = {4}, gin[2] = {0, 2}, gout[1] = {4};
  static const dynq__attr_t if_attrs[2] = {{.name = "then_nodes", .type = DYNQ_ATTR_INT, .i = 1},
                                           {.name = "else_nodes", .type = DYNQ_ATTR_INT, .i = 0}};
  dynq__node_t nd[3] = {
    {.op = DYNQ_OP_IF, .name = "if", .n_in = 1, .n_out = 1, .in = if_in, .out = if_out, .n_attr = 2, .attr = if_attrs},
    {.op = DYNQ_OP_RELU, .name = "then", .n_in = 1, .n_out = 1, .in = r1_in, .out = r1_out},
    {.op = DYNQ_OP_RELU, .name = "escape", .n_in = 1, .n_out = 1, .in = r2_in, .out = r2_out},
  };
  dynq__graph_t g = {.n_values = 5, .values = v2, .n_nodes = 3, .nodes = nd, .n_inputs = 2,
                     .inputs = gin, .n_outputs = 1, .outputs = gout, .producer = "t"};
  char e[256] = "", p2[600];
  snprintf(p2, sizeof(p2), "%s/if.dynq", dir);
  int rc = dynq__graph_write(&g, p2, e, sizeof(e));
  if (rc != 0) {
    /* the validator refusing it up front is just as good */
    ck_assert_int_eq(rc, DYNQ_EGRAPH);
    return;
  }
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(p2, &m, e, sizeof(e)) == 0, "%s", e);
  uint8_t cond = 0;
  float x[4] = {1, -2, 3, -4};
  dynq__tensor_t in[2] = {{.dtype = DYNQ_DT_U8, .rank = 0, .data = &cond},
                          {.dtype = DYNQ_DT_F32, .rank = 1, .dims = {4}, .data = x}};
  dynq__tensor_t out[1];
  ck_assert_int_eq(dynq__model_run(m, NULL, in, out, e, sizeof(e)), DYNQ_EGRAPH);
  ck_assert_msg(strstr(e, "not computed") != NULL, "%s", e);
  cond = 1;  /* taken: the same graph runs */
  ck_assert_msg(dynq__model_run(m, NULL, in, out, e, sizeof(e)) == 0, "%s", e);
  ck_assert_float_eq(((float *)out[0].data)[2], 3.0f);
  dynq__tensor_clear(&out[0]);
  dynq__model_unref(m);
}
END_TEST

/* Sigmoid, GELU and tanh GELU fused into QLinear: the INT8 output is close to a
 * double-precision reference, bit-identical on every kernel the CPU runs
 * and with the GEMM split over threads; the FP32 path is exact to 1e-5. */
START_TEST(fused_activations) {
  static const int acts[3] = {DYNQ_ACT_SIGMOID, DYNQ_ACT_GELU, DYNQ_ACT_GELU_TANH};
  for (int a = 0; a < 3; a++) {
    dynq__graph_t g = make_graph();
    dynq__attr_t at3[3] = {attrs[0], attrs[1], {.name = "act", .type = DYNQ_ATTR_INT, .i = acts[a]}};
    nodes[0].n_attr = 3;
    nodes[0].attr = at3;
    g.n_nodes = 1;  /* y = act(QLinear(x)) is the output directly */
    static const int32_t gout1[1] = {6};
    g.outputs = gout1;
    char e[256] = "", p2[600];
    snprintf(p2, sizeof(p2), "%s/act%d.dynq", dir, a);
    ck_assert_msg(dynq__graph_write(&g, p2, e, sizeof(e)) == 0, "%s", e);
    nodes[0].n_attr = 2;
    nodes[0].attr = attrs;
    dynq__model_t *m = NULL;
    ck_assert_msg(dynq__model_open(p2, &m, e, sizeof(e)) == 0, "%s", e);
    enum { R = 2800 };  /* M*N*K >= 2^21: threads = 2 really splits N */
    static float x[R][K], want[R][N];
    srand(5 + a);
    for (int i = 0; i < R; i++)
      for (int k = 0; k < K; k++) x[i][k] = 4.0f * ((float)rand() / (float)RAND_MAX - 0.5f);
    for (int i = 0; i < R; i++)
      for (int n = 0; n < N; n++) {
        double t = bias[n];
        for (int k = 0; k < K; k++) t += (double)x[i][k] * W[n][k];
        want[i][n] = (float)(acts[a] == DYNQ_ACT_SIGMOID ? 1.0 / (1.0 + exp(-t))
                             : acts[a] == DYNQ_ACT_GELU ? 0.5 * t * (1.0 + erf(t / sqrt(2.0)))
                             : 0.5 * t * (1.0 + tanh(sqrt(2.0 / M_PI) * (t + 0.044715 * t * t * t))));
      }
    dynq__tensor_t in = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {R, K}, .data = x};
    dynq__tensor_t o32[1], o8[1], ok[1];
    dynq__run_opts_t opt = {.precision = DYNQ_PRECISION_FP32};
    ck_assert_msg(dynq__model_run(m, &opt, &in, o32, e, sizeof(e)) == 0, "%s", e);
    ck_assert_msg(tu_rel_max(o32[0].data, &want[0][0], R * N) <= 1e-5, "act %d fp32 %g", acts[a],
                  tu_rel_max(o32[0].data, &want[0][0], R * N));
    opt.precision = DYNQ_PRECISION_INT8;
    opt.kernel = &dynq__kernel_ref;
    ck_assert_msg(dynq__model_run(m, &opt, &in, o8, e, sizeof(e)) == 0, "%s", e);
    double err8 = tu_rel_l2(o8[0].data, &want[0][0], R * N);
    ck_assert_msg(err8 <= 0.02 && err8 > 0, "act %d int8 relL2 %g", acts[a], err8);
    int nk = 0;
    const dynq__kernel_t *const *ks = dynq__kernel_list(&nk);
    for (int i = 0; i < nk; i++) {
      if (!ks[i]->supported()) continue;
      for (int th = 1; th <= 2; th++) {
        opt.kernel = ks[i];
        opt.threads = th;
        dynq__layer_quant_t lq[2];
        dynq__run_result_t res = {.cap_quant = 2, .quant = lq};
        opt.result = &res;
        ck_assert_int_eq(dynq__model_run(m, &opt, &in, ok, e, sizeof(e)), 0);
        opt.result = NULL;
        /* the run result: the one quantized layer, its rows and MACs, and
         * whether its GEMM split (it is large enough to, on 2 threads) */
        ck_assert_int_eq(res.nodes_run, 1);
        ck_assert_int_eq(res.n_quant, 1);
        ck_assert_int_eq(lq[0].node, 0);
        ck_assert_int_eq(lq[0].op, DYNQ_OP_QLINEAR);
        ck_assert_int_eq(lq[0].rows, R);
        ck_assert_int_eq(lq[0].macs, (int64_t)R * K * N);
        ck_assert_int_eq(res.int8_macs, (int64_t)R * K * N);
        ck_assert(lq[0].scale_min > 0.0f && lq[0].scale_min <= lq[0].scale_max);
        ck_assert_uint_le(res.splits, th > 1 ? 1 : 0);
        ck_assert_msg(memcmp(ok[0].data, o8[0].data, sizeof(float) * R * N) == 0,
                      "act %d: kernel %s threads %d differs from ref", acts[a], ks[i]->name, th);
        dynq__tensor_clear(&ok[0]);
      }
    }
    dynq__tensor_clear(&o32[0]);
    dynq__tensor_clear(&o8[0]);
    dynq__model_unref(m);
  }
}
END_TEST

/* State pairs declared at import survive the round trip; out-of-range or
 * wrong pairs in a file are refused. */
START_TEST(state_pairs) {
  dynq__graph_t g = make_graph();
  static const int32_t pair[2] = {0, 7};  /* x <- y: both float32 rank 2 */
  g.n_state = 1;
  g.state = pair;
  char e[256] = "", p2[600];
  snprintf(p2, sizeof(p2), "%s/state.dynq", dir);
  ck_assert_msg(dynq__graph_write(&g, p2, e, sizeof(e)) == 0, "%s", e);
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(p2, &m, e, sizeof(e)) == 0, "%s", e);
  const dynq__graph_t *lg = dynq__model_graph(m);
  ck_assert_int_eq(lg->n_state, 1);
  ck_assert_str_eq(lg->values[lg->state[0]].name, "x");
  ck_assert_str_eq(lg->values[lg->state[1]].name, "y");
  const dynq__model_sig_t *sig = dynq__model_signature(m);
  ck_assert_int_eq(sig->n_state, 1);
  int yo = dynq__model_output_index(m, "y");
  ck_assert_int_ge(yo, 0);
  ck_assert_int_eq(sig->inputs[0].state_peer, yo);
  ck_assert_int_eq(sig->outputs[yo].state_peer, 0);
  dynq__model_unref(m);
  /* the writer's validator refuses a pair that is not input -> output */
  static const int32_t bad[2] = {6, 7};
  g.state = bad;
  snprintf(p2, sizeof(p2), "%s/state-bad.dynq", dir);
  ck_assert_int_eq(dynq__graph_write(&g, p2, e, sizeof(e)), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(e, "state pair"));
  /* a file whose pair range runs past the refs section */
  snprintf(path, sizeof(path), "%s/state.dynq", dir);
  load_img();
  dynq__fmeta_t *mt = (dynq__fmeta_t *)(img + sect(DYNQ_SEC_META)->offset);
  mt->state_first = 1u << 30;
  reseal();
  EXPECT_REFUSED(DYNQ_EFORMAT, "state pairs out of bounds");
  mt->state_first = 0;  /* refs[0..1] are node 0's first inputs: x, wq */
  reseal();
  EXPECT_REFUSED(DYNQ_EGRAPH, "state pair");
  free(img);
  snprintf(path, sizeof(path), "%s/m.dynq", dir);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("format");
  TCase *tc = tcase_create("format");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, roundtrip_runs);
  tcase_add_test(tc, truncated_everywhere);
  tcase_add_test(tc, bit_flips_caught);
  tcase_add_test(tc, bad_magic_version);
  tcase_add_test(tc, bad_checksums);
  tcase_add_test(tc, bad_offsets);
  tcase_add_test(tc, overlapping_tensors);
  tcase_add_test(tc, bad_graph);
  tcase_add_test(tc, not_a_file);
  tcase_add_test(tc, write_refuses_invalid_graph);
  tcase_add_test(tc, if_branch_value_escapes);
  tcase_add_test(tc, fused_activations);
  tcase_add_test(tc, state_pairs);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(suite)
