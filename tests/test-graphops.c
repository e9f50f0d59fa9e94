/*
 * Shape and graph ops (lib/ops_graph.c) run directly: their results on
 * small cases and, mostly, their error paths (bad axes, bad shapes, int64
 * overflow, out-of-range indices): each must return a clear error naming
 * the node, never crash.  Plus If: validated branch ranges, run-time
 * branch selection, and folding with dynq-quantize --set.  And Loop:
 * validated body ranges, the back edge on models made by
 * tests/fixtures/make_loop.py (torch's export, and a loop with every part),
 * the value cap and the run stop inside a loop that never ends.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "model.h"
#include "ops.h"
#include "validate.h"
#include "tensor.h"
#include "testutil.h"

static char errbuf[512];

/* A tensor over caller memory (not owned). */
static dynq__tensor_t tens(dynq_dtype_t dt, int rank, const int64_t *dims, const void *data) {
  dynq__tensor_t t;
  memset(&t, 0, sizeof(t));
  t.dtype = dt;
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  t.data = (void *)data;
  return t;
}

/* Run op on inputs (NULL entries = omitted) with int attributes. */
static int run_op(int op, int n_in, const dynq__tensor_t *const *in, int n_attr,
                  const dynq__attr_t *attr, dynq__tensor_t *out) {
  int32_t ins[8] = {0}, outs[1] = {0};
  dynq__node_t node = {.op = op, .name = "n1", .n_in = n_in, .n_out = 1, .in = ins,
                       .out = outs, .n_attr = n_attr, .attr = attr};
  dynq__op_ctx_t ctx = {.node = &node, .precision = DYNQ_PRECISION_FP32, .err = errbuf,
                        .errlen = sizeof(errbuf)};
  errbuf[0] = 0;
  memset(out, 0, sizeof(*out));
  const dynq__opdef_t *def = dynq__opdef(op);
  ck_assert_ptr_nonnull(def);
  const dynq__tensor_t *pin[64] = {0};
  for (int i = 0; i < n_in; i++) pin[i] = in[i];
  return dynq__op_run1(NULL, &ctx, pin, out);
}

static void expect_err(int rc, int want, const char *needle) {
  ck_assert_msg(rc == want, "rc %d (%s), want %d; message: %s", rc, dynq_err_name(rc), want,
                errbuf);
  ck_assert_msg(strstr(errbuf, "node 'n1'") != NULL, "message lacks the node: %s", errbuf);
  ck_assert_msg(strstr(errbuf, needle) != NULL, "message lacks '%s': %s", needle, errbuf);
}

START_TEST(test_gather) {
  float x[6] = {1, 2, 3, 4, 5, 6};
  int64_t xd[2] = {3, 2}, idx[2] = {-1, 0}, id[1] = {2};
  dynq__tensor_t X = tens(DYNQ_DT_F32, 2, xd, x), I = tens(DYNQ_DT_I64, 1, id, idx), out;
  const dynq__tensor_t *in[2] = {&X, &I};
  ck_assert_int_eq(run_op(DYNQ_OP_GATHER, 2, in, 0, NULL, &out), 0);
  ck_assert_int_eq(out.rank, 2);
  ck_assert_int_eq(out.dims[0], 2);
  const float *y = out.data;
  ck_assert(y[0] == 5 && y[1] == 6 && y[2] == 1 && y[3] == 2);
  dynq__tensor_clear(&out);
  int64_t bad[2] = {3, 0};
  I.data = bad;
  expect_err(run_op(DYNQ_OP_GATHER, 2, in, 0, NULL, &out), DYNQ_ESHAPE, "index 3 out of range");
  int64_t neg[2] = {-4, 0};
  I.data = neg;
  expect_err(run_op(DYNQ_OP_GATHER, 2, in, 0, NULL, &out), DYNQ_ESHAPE, "out of range");
  I.data = idx;
  dynq__attr_t ax = {.name = "axis", .type = DYNQ_ATTR_INT, .i = 2};
  expect_err(run_op(DYNQ_OP_GATHER, 2, in, 1, &ax, &out), DYNQ_ESHAPE, "axis 2 out of range");
  dynq__tensor_t F = tens(DYNQ_DT_F32, 1, id, x);
  in[1] = &F;
  expect_err(run_op(DYNQ_OP_GATHER, 2, in, 0, NULL, &out), DYNQ_EDTYPE, "indices must be int64");
}
END_TEST

START_TEST(test_squeeze_unsqueeze_transpose) {
  float x[6] = {0};
  int64_t xd[3] = {1, 2, 3}, ax1[1] = {1}, d1[1] = {1};
  dynq__tensor_t X = tens(DYNQ_DT_F32, 3, xd, x), A = tens(DYNQ_DT_I64, 1, d1, ax1), out;
  const dynq__tensor_t *in[2] = {&X, &A};
  expect_err(run_op(DYNQ_OP_SQUEEZE, 2, in, 0, NULL, &out), DYNQ_ESHAPE, "cannot squeeze axis 1");
  int64_t ax0[1] = {0};
  A.data = ax0;
  ck_assert_int_eq(run_op(DYNQ_OP_SQUEEZE, 2, in, 0, NULL, &out), 0);
  ck_assert_int_eq(out.rank, 2);
  dynq__tensor_clear(&out);
  int64_t rep[2] = {0, 0}, d2[1] = {2};
  dynq__tensor_t R = tens(DYNQ_DT_I64, 1, d2, rep);
  in[1] = &R;
  expect_err(run_op(DYNQ_OP_UNSQUEEZE, 2, in, 0, NULL, &out), DYNQ_ESHAPE, "repeated");
  int64_t many[6] = {0, 1, 2, 3, 4, 5}, d6[1] = {6};
  dynq__tensor_t M = tens(DYNQ_DT_I64, 1, d6, many);
  in[1] = &M;
  expect_err(run_op(DYNQ_OP_UNSQUEEZE, 2, in, 0, NULL, &out), DYNQ_ESHAPE, "exceeds");
  int64_t perm[3] = {0, 0, 1}, d3[1] = {3};
  dynq__tensor_t P = tens(DYNQ_DT_I64, 1, d3, perm);
  in[1] = &P;
  expect_err(run_op(DYNQ_OP_TRANSPOSE, 2, in, 0, NULL, &out), DYNQ_ESHAPE, "not a permutation");
  /* a real transpose: [1,2,3] -> perm (2,1,0) */
  float v[6] = {1, 2, 3, 4, 5, 6};
  int64_t good[3] = {2, 1, 0};
  X.data = v;
  P.data = good;
  ck_assert_int_eq(run_op(DYNQ_OP_TRANSPOSE, 2, in, 0, NULL, &out), 0);
  const float *y = out.data;
  ck_assert(out.dims[0] == 3 && out.dims[1] == 2 && out.dims[2] == 1);
  ck_assert(y[0] == 1 && y[1] == 4 && y[2] == 2 && y[3] == 5 && y[4] == 3 && y[5] == 6);
  dynq__tensor_clear(&out);
}
END_TEST

START_TEST(test_concat_slice_expand) {
  float a[4] = {1, 2, 3, 4}, b[3] = {5, 6, 7};
  int64_t ad[2] = {2, 2}, bd[2] = {1, 3};
  dynq__tensor_t A = tens(DYNQ_DT_F32, 2, ad, a), B = tens(DYNQ_DT_F32, 2, bd, b), out;
  const dynq__tensor_t *in[5] = {&A, &B};
  expect_err(run_op(DYNQ_OP_CONCAT, 2, in, 0, NULL, &out), DYNQ_ESHAPE, "does not match");
  /* Slice with step 0, then a reversing slice */
  int64_t s0[1] = {0}, e0[1] = {2}, ax[1] = {1}, st0[1] = {0}, d1[1] = {1};
  dynq__tensor_t S = tens(DYNQ_DT_I64, 1, d1, s0), E = tens(DYNQ_DT_I64, 1, d1, e0),
                 AX = tens(DYNQ_DT_I64, 1, d1, ax), ST = tens(DYNQ_DT_I64, 1, d1, st0);
  const dynq__tensor_t *sin[5] = {&A, &S, &E, &AX, &ST};
  expect_err(run_op(DYNQ_OP_SLICE, 5, sin, 0, NULL, &out), DYNQ_ESHAPE, "step is 0");
  int64_t sN[1] = {INT64_MAX}, eN[1] = {INT64_MIN}, stN[1] = {-1};
  S.data = sN;
  E.data = eN;
  ST.data = stN;
  ck_assert_int_eq(run_op(DYNQ_OP_SLICE, 5, sin, 0, NULL, &out), 0);
  const float *y = out.data;
  ck_assert(out.dims[0] == 2 && out.dims[1] == 2);
  ck_assert(y[0] == 2 && y[1] == 1 && y[2] == 4 && y[3] == 3);
  dynq__tensor_clear(&out);
  /* Expand to a shape that does not broadcast, and to a negative dim */
  int64_t shp[2] = {3, 3}, d2[1] = {2};
  dynq__tensor_t SH = tens(DYNQ_DT_I64, 1, d2, shp);
  const dynq__tensor_t *ein[2] = {&A, &SH};
  expect_err(run_op(DYNQ_OP_EXPAND, 2, ein, 0, NULL, &out), DYNQ_ESHAPE, "do not broadcast");
  int64_t shn[2] = {-2, 2};
  SH.data = shn;
  expect_err(run_op(DYNQ_OP_EXPAND, 2, ein, 0, NULL, &out), DYNQ_ESHAPE, "negative dimension");
}
END_TEST

START_TEST(test_int64_math) {
  int64_t d1[1] = {1};
  int64_t mn[1] = {INT64_MIN}, mx[1] = {INT64_MAX}, one[1] = {1}, m1[1] = {-1}, zero[1] = {0};
  dynq__tensor_t A = tens(DYNQ_DT_I64, 1, d1, mx), B = tens(DYNQ_DT_I64, 1, d1, one), out;
  const dynq__tensor_t *in[3] = {&A, &B};
  /* overflow wraps (defined), as ONNX Runtime does */
  ck_assert_int_eq(run_op(DYNQ_OP_ADD, 2, in, 0, NULL, &out), 0);
  ck_assert(((int64_t *)out.data)[0] == INT64_MIN);
  dynq__tensor_clear(&out);
  B.data = zero;
  expect_err(run_op(DYNQ_OP_DIV, 2, in, 0, NULL, &out), DYNQ_ENUMERIC, "division by zero");
  A.data = mn;
  B.data = m1;
  expect_err(run_op(DYNQ_OP_DIV, 2, in, 0, NULL, &out), DYNQ_ENUMERIC, "overflows");
  /* Range whose length overflows int64 arithmetic, and delta 0 */
  dynq__tensor_t S = tens(DYNQ_DT_I64, 0, NULL, mn), L = tens(DYNQ_DT_I64, 0, NULL, mx),
                 D = tens(DYNQ_DT_I64, 0, NULL, one);
  const dynq__tensor_t *rin[3] = {&S, &L, &D};
  expect_err(run_op(DYNQ_OP_RANGE, 3, rin, 0, NULL, &out), DYNQ_ELIMIT, "more than");
  D.data = zero;
  expect_err(run_op(DYNQ_OP_RANGE, 3, rin, 0, NULL, &out), DYNQ_ENUMERIC, "delta is zero");
  int64_t s5[1] = {5}, l0[1] = {0}, dm2[1] = {-2};
  S.data = s5;
  L.data = l0;
  D.data = dm2;
  ck_assert_int_eq(run_op(DYNQ_OP_RANGE, 3, rin, 0, NULL, &out), 0);
  ck_assert_int_eq(out.dims[0], 3);
  ck_assert(((int64_t *)out.data)[2] == 1);
  dynq__tensor_clear(&out);
  /* ConstantOfShape with a huge or negative shape */
  int64_t big[3] = {1 << 20, 1 << 20, 1 << 20}, neg[2] = {2, -1}, d3[1] = {3}, d2[1] = {2};
  dynq__tensor_t SH = tens(DYNQ_DT_I64, 1, d3, big);
  const dynq__tensor_t *cin[2] = {&SH, NULL};
  expect_err(run_op(DYNQ_OP_CONSTANT_OF_SHAPE, 2, cin, 0, NULL, &out), DYNQ_ELIMIT, "elements");
  SH = tens(DYNQ_DT_I64, 1, d2, neg);
  expect_err(run_op(DYNQ_OP_CONSTANT_OF_SHAPE, 2, cin, 0, NULL, &out), DYNQ_ESHAPE, "negative");
  /* Cast of NaN and huge floats to int64 saturates instead of UB */
  float f[3] = {NAN, 1e30f, -1e30f};
  int64_t fd[1] = {3};
  dynq__tensor_t F = tens(DYNQ_DT_F32, 1, fd, f);
  const dynq__tensor_t *fin[1] = {&F};
  dynq__attr_t to = {.name = "to", .type = DYNQ_ATTR_INT, .i = DYNQ_DT_I64};
  ck_assert_int_eq(run_op(DYNQ_OP_CAST, 1, fin, 1, &to, &out), 0);
  const int64_t *y = out.data;
  ck_assert(y[0] == 0 && y[1] == INT64_MAX && y[2] == INT64_MIN);
  dynq__tensor_clear(&out);
}
END_TEST

START_TEST(test_where_pad_phi) {
  float x[2] = {1, 2};
  int64_t d[1] = {2};
  dynq__tensor_t X = tens(DYNQ_DT_F32, 1, d, x), out;
  const dynq__tensor_t *in[4] = {&X, &X, &X};
  expect_err(run_op(DYNQ_OP_WHERE, 3, in, 0, NULL, &out), DYNQ_EDTYPE, "condition must be bool");
  int64_t pads[3] = {1, 1, 1}, pd[1] = {3};
  dynq__tensor_t P = tens(DYNQ_DT_I64, 1, pd, pads);
  const dynq__tensor_t *pin[2] = {&X, &P};
  expect_err(run_op(DYNQ_OP_PAD, 2, pin, 0, NULL, &out), DYNQ_ESHAPE, "pads has 3 values");
  int64_t crop[2] = {-3, 0}, cd[1] = {2};
  P = tens(DYNQ_DT_I64, 1, cd, crop);
  expect_err(run_op(DYNQ_OP_PAD, 2, pin, 0, NULL, &out), DYNQ_ESHAPE, "out of range");
  /* reflect: [1,2] padded by 1 each side -> [2,1,2,1] */
  int64_t p1[2] = {1, 1};
  P.data = p1;
  dynq__attr_t mode = {.name = "mode", .type = DYNQ_ATTR_INT, .i = 1};
  ck_assert_int_eq(run_op(DYNQ_OP_PAD, 2, pin, 1, &mode, &out), 0);
  const float *y = out.data;
  ck_assert(out.dims[0] == 4 && y[0] == 2 && y[1] == 1 && y[2] == 2 && y[3] == 1);
  dynq__tensor_clear(&out);
  /* Phi whose chosen branch value was never computed */
  uint8_t flag = 0;
  dynq__tensor_t FL = tens(DYNQ_DT_U8, 0, NULL, &flag), empty;
  memset(&empty, 0, sizeof(empty));
  const dynq__tensor_t *phin[3] = {&FL, &X, &empty};
  expect_err(run_op(DYNQ_OP_PHI, 3, phin, 0, NULL, &out), DYNQ_EGRAPH, "else branch");
  flag = 1;
  ck_assert_int_eq(run_op(DYNQ_OP_PHI, 3, phin, 0, NULL, &out), 0);
  ck_assert(((float *)out.data)[1] == 2);
  dynq__tensor_clear(&out);
}
END_TEST

/* IF whose branch ranges run past the graph is refused at load. */
START_TEST(test_if_ranges_validated) {
  dynq__value_t vals[3];
  memset(vals, 0, sizeof(vals));
  vals[0] = (dynq__value_t){.name = "c", .dtype = DYNQ_DT_U8, .rank = 0};
  vals[1] = (dynq__value_t){.name = "flag", .dtype = DYNQ_DT_U8, .rank = -1};
  vals[2] = (dynq__value_t){.name = "y", .dtype = DYNQ_DT_U8, .rank = -1};
  int32_t in0[1] = {0}, out1[1] = {1}, in1[1] = {1}, out2[1] = {2}, gin[1] = {0}, gout[1] = {2};
  dynq__attr_t at[2] = {{.name = "then_nodes", .type = DYNQ_ATTR_INT, .i = 5},
                        {.name = "else_nodes", .type = DYNQ_ATTR_INT, .i = 0}};
  dynq__node_t nodes[2] = {
      {.op = DYNQ_OP_IF, .name = "if1", .n_in = 1, .n_out = 1, .in = in0, .out = out1,
       .n_attr = 2, .attr = at},
      {.op = DYNQ_OP_IDENTITY, .name = "id", .n_in = 1, .n_out = 1, .in = in1, .out = out2}};
  dynq__graph_t g = {.n_values = 3, .values = vals, .n_nodes = 2, .nodes = nodes, .n_inputs = 1,
                     .inputs = gin, .n_outputs = 1, .outputs = gout};
  char err[256] = "";
  ck_assert_int_eq(dynq__graph_validate(&g, err, sizeof(err)), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "if1") && strstr(err, "branch ranges"), "%s", err);
  at[0].i = 1;
  ck_assert_int_eq(dynq__graph_validate(&g, err, sizeof(err)), 0);
}
END_TEST

/* ---- If through dynq-quantize: run time and folded with --set ---- */

/* y for x = [[0,1,2,3],[4,5,6,7]]: sr 16000 -> 2x + 4, else 3x. */
static void check_y(const dynq__tensor_t *y, int is16) {
  ck_assert_int_eq(y->dtype, DYNQ_DT_F32);
  ck_assert(y->rank == 2 && y->dims[0] == 2 && y->dims[1] == 4);
  for (int i = 0; i < 8; i++) {
    float want = is16 ? 2.0f * (float)i + 4.0f : 3.0f * (float)i;
    ck_assert_msg(((float *)y->data)[i] == want, "y[%d] = %g, want %g", i,
                  ((float *)y->data)[i], want);
  }
}

static void run_model(const char *path, int n_inputs, int64_t sr, int is16, int expect_if) {
  dynq__model_t *m = NULL;
  char err[512] = "";
  ck_assert_msg(dynq__model_open(path, &m, err, sizeof(err)) == 0, "%s", err);
  const dynq__graph_t *g = dynq__model_graph(m);
  ck_assert_int_eq(g->n_inputs, n_inputs);
  int n_if = 0;
  for (int i = 0; i < g->n_nodes; i++) n_if += g->nodes[i].op == DYNQ_OP_IF;
  ck_assert_int_eq(n_if, expect_if);
  float x[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  int64_t xd[2] = {2, 4};
  dynq__tensor_t in[2] = {tens(DYNQ_DT_F32, 2, xd, x), tens(DYNQ_DT_I64, 0, NULL, &sr)}, y;
  memset(&y, 0, sizeof(y));
  dynq__run_opts_t o = {.precision = DYNQ_PRECISION_FP32};
  ck_assert_msg(dynq__model_run(m, &o, in, &y, err, sizeof(err)) == 0, "%s", err);
  check_y(&y, is16);
  dynq__tensor_clear(&y);
  dynq__model_unref(m);
}

START_TEST(test_if_runtime_and_folded) {
  char *dir = tu_mkdtemp();
  char src[512], a[512], b[512], c[512];
  snprintf(src, sizeof(src), "%s", tu_src("tests/fixtures/graphops_if_sr.onnx"));
  snprintf(a, sizeof(a), "%s/rt.dynq", dir);
  snprintf(b, sizeof(b), "%s/16k.dynq", dir);
  snprintf(c, sizeof(c), "%s/8k.dynq", dir);
  char *log = NULL;
  ck_assert_msg(tu_quantize_log(&log, src, a, NULL) == 0, "%s", log);
  free(log);
  run_model(a, 2, 16000, 1, 1);
  run_model(a, 2, 8000, 0, 1);
  ck_assert_msg(tu_quantize_log(&log, "--set", "sr=16000", src, b, NULL) == 0, "%s", log);
  free(log);
  run_model(b, 1, 0, 1, 0);
  ck_assert_msg(tu_quantize_log(&log, "--set=sr=8000", src, c, NULL) == 0, "%s", log);
  free(log);
  run_model(c, 1, 0, 0, 0);
  /* bad --set: unknown input, not a number, float for an int input */
  ck_assert_int_eq(tu_quantize_log(&log, "--set", "nope=1", src, c, NULL), 1);
  ck_assert_msg(strstr(log, "nope") && strstr(log, "no input"), "%s", log);
  free(log);
  ck_assert_int_eq(tu_quantize_log(&log, "--set", "sr=fast", src, c, NULL), 1);
  ck_assert_msg(strstr(log, "'fast' is not a valid int64"), "%s", log);
  free(log);
  ck_assert_int_eq(tu_quantize_log(&log, "--set", "sr", src, c, NULL), 2);
  free(log);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* ---- Loop ---- */

/* LOOP(M, -, a) -> (iter, c, v); IDENTITY(v) -> y; LOOP_END(iter, M, -, y) -> out,
 * optionally inside an If whose then-branch is the first if_then nodes. */
START_TEST(test_loop_ranges_validated) {
  dynq__value_t vals[8];
  memset(vals, 0, sizeof(vals));
  const char *names[8] = {"M", "a", "iter", "c", "v", "y", "out", "flag"};
  for (int i = 0; i < 8; i++)
    vals[i] = (dynq__value_t){.name = names[i], .dtype = DYNQ_DT_F32, .rank = -1};
  vals[0].rank = 0;
  vals[0].dtype = DYNQ_DT_I64;
  vals[1].rank = 1;
  vals[1].dims[0] = 2;
  int32_t l_in[3] = {0, -1, 1}, l_out[3] = {2, 3, 4}, id_in[1] = {4}, id_out[1] = {5};
  int32_t e_in[4] = {2, 0, -1, 5}, e_out[1] = {6}, gin[2] = {0, 1}, gout[1] = {6};
  dynq__attr_t la[2] = {{.name = "body_nodes", .type = DYNQ_ATTR_INT, .i = 1},
                        {.name = "n_carried", .type = DYNQ_ATTR_INT, .i = 1}};
  dynq__attr_t ea[2] = {{.name = "body_nodes", .type = DYNQ_ATTR_INT, .i = 1},
                        {.name = "n_carried", .type = DYNQ_ATTR_INT, .i = 1}};
  dynq__node_t nodes[3] = {
      {.op = DYNQ_OP_LOOP, .name = "loop", .n_in = 3, .n_out = 3, .in = l_in, .out = l_out,
       .n_attr = 2, .attr = la},
      {.op = DYNQ_OP_IDENTITY, .name = "id", .n_in = 1, .n_out = 1, .in = id_in, .out = id_out},
      {.op = DYNQ_OP_LOOP_END, .name = "loop", .n_in = 4, .n_out = 1, .in = e_in, .out = e_out,
       .n_attr = 2, .attr = ea}};
  dynq__graph_t g = {.n_values = 7, .values = vals, .n_nodes = 3, .nodes = nodes,
                     .n_inputs = 2, .inputs = gin, .n_outputs = 1, .outputs = gout};
  char err[256] = "";
  ck_assert_msg(dynq__graph_validate(&g, err, sizeof(err)) == 0, "%s", err);
  const struct {
    int64_t *at, bad;
    const char *needle;
  } cases[] = {
      {&la[0].i, 5, "does not fit"},         /* past the graph */
      {&la[0].i, 0, "does not join"},        /* the body's end is no LOOP_END */
      {&ea[1].i, 2, "disagree"},             /* the two ends' counts */
      {&la[1].i, 0, "disagree"},
      {NULL, 0, NULL},
  };
  for (size_t k = 0; cases[k].at != NULL; k++) {
    int64_t keep = *cases[k].at;
    *cases[k].at = cases[k].bad;
    ck_assert_int_eq(dynq__graph_validate(&g, err, sizeof(err)), DYNQ_EGRAPH);
    ck_assert_msg(strstr(err, "loop") && strstr(err, cases[k].needle), "case %zu: %s", k, err);
    *cases[k].at = keep;
  }
  e_in[0] = 4;  /* LOOP_END must read LOOP's own iteration count */
  ck_assert_int_eq(dynq__graph_validate(&g, err, sizeof(err)), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "iteration count"), "%s", err);
  e_in[0] = 2;
  /* an If whose then-branch holds the LOOP and the body but not the LOOP_END */
  int32_t if_in[1] = {0}, if_out[1] = {7};
  dynq__attr_t ia[2] = {{.name = "then_nodes", .type = DYNQ_ATTR_INT, .i = 2},
                        {.name = "else_nodes", .type = DYNQ_ATTR_INT, .i = 0}};
  dynq__node_t n4[4] = {{.op = DYNQ_OP_IF, .name = "if1", .n_in = 1, .n_out = 1, .in = if_in,
                         .out = if_out, .n_attr = 2, .attr = ia},
                        nodes[0], nodes[1], nodes[2]};
  dynq__graph_t g4 = g;
  g4.n_values = 8;
  g4.nodes = n4;
  g4.n_nodes = 4;
  ck_assert_int_eq(dynq__graph_validate(&g4, err, sizeof(err)), DYNQ_EGRAPH);
  ck_assert_msg(strstr(err, "if1") && strstr(err, "part of a loop"), "%s", err);
  ia[0].i = 3;  /* the whole loop in the branch */
  ck_assert_msg(dynq__graph_validate(&g4, err, sizeof(err)) == 0, "%s", err);
}
END_TEST

static dynq__model_t *quantized(const char *dir, const char *onnx, const char *name) {
  char src[512], dst[512];
  snprintf(src, sizeof(src), "%s", tu_src(onnx));
  snprintf(dst, sizeof(dst), "%s/%s.dynq", dir, name);
  char *log = NULL;
  ck_assert_msg(tu_quantize_log(&log, src, dst, NULL) == 0, "%s", log);
  free(log);
  dynq__model_t *m = NULL;
  char err[512] = "";
  ck_assert_msg(dynq__model_open(dst, &m, err, sizeof(err)) == 0, "%s", err);
  return m;
}

/* loopmix on M and its fixed a0, b0 into out[4]; the run's code. */
static int run_loopmix(dynq__model_t *m, int64_t M, int64_t max_bytes, dynq__tensor_t *out,
                       char *err, size_t errlen) {
  float a0[2] = {1, -2}, b0[2] = {0.5f, 3};
  int64_t d2[1] = {2};
  dynq__tensor_t in[3] = {tens(DYNQ_DT_I64, 0, NULL, &M), tens(DYNQ_DT_F32, 1, d2, a0),
                          tens(DYNQ_DT_F32, 1, d2, b0)};
  memset(out, 0, 4 * sizeof(*out));
  dynq__run_opts_t o = {.precision = DYNQ_PRECISION_FP32, .max_value_bytes = max_bytes};
  return dynq__model_run(m, &o, in, out, err, errlen);
}

/* loopmix for M against loopmix_ref.txt's line for it (every value exact:
 * the same float32 operations in the same order). */
static void check_loopmix(dynq__model_t *m, int64_t M) {
  FILE *f = fopen(tu_src("tests/fixtures/loopmix_ref.txt"), "r");
  ck_assert_ptr_nonnull(f);
  char line[8192];
  double ref[512];
  int n_ref = -1;
  while (n_ref < 0 && fgets(line, sizeof(line), f)) {
    if (line[0] == '#') continue;
    char *p = line, *q;
    int k = 0;
    for (double v = strtod(p, &q); q != p && k < 512; v = strtod(p, &q)) ref[k++] = v, p = q;
    if (k >= 2 && (int64_t)ref[0] == M) n_ref = k;
  }
  fclose(f);
  ck_assert_msg(n_ref > 0, "no reference line for M = %lld", (long long)M);
  int64_t iters = (int64_t)ref[1];
  dynq__tensor_t out[4];
  char err[512] = "";
  ck_assert_msg(run_loopmix(m, M, 0, out, err, sizeof(err)) == 0, "%s", err);
  ck_assert_int_eq(out[2].rank, 2);
  ck_assert_int_eq(out[2].dims[0], iters);
  ck_assert_int_eq(out[3].rank, 3);
  ck_assert(out[3].dims[0] == iters && out[3].dims[1] == 3 && out[3].dims[2] == 2);
  int k = 2;
  for (int o2 = 0; o2 < 4; o2++)
    for (int64_t i = 0; i < dynq__tensor_numel(&out[o2]); i++, k++) {
      ck_assert_int_lt(k, n_ref);
      ck_assert_msg(((float *)out[o2].data)[i] == (float)ref[k], "M %lld: output %d [%lld] "
                    "%.9g, want %.9g", (long long)M, o2, (long long)i,
                    ((float *)out[o2].data)[i], ref[k]);
    }
  ck_assert_int_eq(k, n_ref);
  for (int o2 = 0; o2 < 4; o2++) dynq__tensor_clear(&out[o2]);
}

START_TEST(test_loop_models) {
  char *dir = tu_mkdtemp();
  /* every part of the back edge, exact: no iteration, 3, and stopped by the body at 7 */
  dynq__model_t *m = quantized(dir, "tests/fixtures/loopmix.onnx", "loopmix");
  check_loopmix(m, 0);
  check_loopmix(m, 3);
  check_loopmix(m, 100);
  /* the scan output's storage is capped like any value */
  dynq__tensor_t out[4];
  char err[512] = "";
  int64_t d2[1] = {2};
  ck_assert_int_eq(run_loopmix(m, 100, 100, out, err, sizeof(err)), DYNQ_ELIMIT);
  ck_assert_msg(strstr(err, "scan output 's_all'") && strstr(err, "5 rows"), "%s", err);
  dynq__model_unref(m);

  /* torch's export of a recurrent cell (a quantized Gemm in the body) */
  m = quantized(dir, "tests/fixtures/rnnloop.onnx", "rnnloop");
  float x[5 * 3 * 8], want[3 * 8];
  ck_assert_int_eq(tu_load_f32("tests/fixtures/rnnloop_x.f32", x, 5 * 3 * 8), 0);
  ck_assert_int_eq(tu_load_f32("tests/fixtures/rnnloop_h.f32", want, 3 * 8), 0);
  int64_t dx[3] = {5, 3, 8};
  dynq__tensor_t xin = tens(DYNQ_DT_F32, 3, dx, x), h;
  for (int prec = 0; prec < 2; prec++) {
    memset(&h, 0, sizeof(h));
    dynq__run_opts_t o = {.precision = prec ? DYNQ_PRECISION_INT8 : DYNQ_PRECISION_FP32};
    ck_assert_msg(dynq__model_run(m, &o, &xin, &h, err, sizeof(err)) == 0, "%s", err);
    ck_assert(h.rank == 2 && h.dims[0] == 3 && h.dims[1] == 8);
    double e2 = 0, w2 = 0;
    for (int i = 0; i < 24; i++) {
      double d = ((float *)h.data)[i] - want[i];
      e2 += d * d;
      w2 += (double)want[i] * want[i];
      if (!prec) ck_assert_msg(fabs(d) < 1e-5, "h[%d] %.9g, torch %.9g", i,
                               ((float *)h.data)[i], want[i]);
    }
    ck_assert_msg(sqrt(e2 / w2) < 0.02, "relL2 %.4g at %s", sqrt(e2 / w2),
                  prec ? "int8" : "fp32");
    dynq__tensor_clear(&h);
  }
  dynq__model_unref(m);

  /* a loop that never ends by itself: the run's stop ends it */
  m = quantized(dir, "tests/fixtures/loopinf.onnx", "loopinf");
  int64_t big = INT64_MAX;
  float x0[1] = {0};
  int64_t d1[1] = {1};
  dynq__tensor_t lin[2] = {tens(DYNQ_DT_I64, 0, NULL, &big), tens(DYNQ_DT_F32, 1, d1, x0)}, y;
  memset(&y, 0, sizeof(y));
  dynq__run_stop_t stop = {.start_ns = dynq__run_clock_ns(), .limit_ms = 50};
  stop.limit_ns = stop.start_ns + 50000000u;
  dynq__run_opts_t so = {.precision = DYNQ_PRECISION_FP32, .stop = &stop};
  ck_assert_int_eq(dynq__model_run(m, &so, lin, &y, err, sizeof(err)), DYNQ_ELIMIT);
  ck_assert_msg(strstr(err, "LoopEnd"), "%s", err);
  int64_t four = 4;  /* and with a trip count it ends: 0 + 4 */
  lin[0] = tens(DYNQ_DT_I64, 0, NULL, &four);
  stop.start_ns = dynq__run_clock_ns();
  stop.limit_ns = stop.start_ns + 50000000u;
  ck_assert_msg(dynq__model_run(m, &so, lin, &y, err, sizeof(err)) == 0, "%s", err);
  ck_assert(((float *)y.data)[0] == 4.0f);
  dynq__tensor_clear(&y);
  dynq__model_unref(m);

  /* Scan as a Loop: a backward input on axis 1, a backward output on axis 1 */
  m = quantized(dir, "tests/fixtures/scanmix.onnx", "scanmix");
  FILE *f = fopen(tu_src("tests/fixtures/scanmix_ref.txt"), "r");
  ck_assert_ptr_nonnull(f);
  char line[4096];
  float r[36];
  ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));  /* the header */
  ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
  fclose(f);
  char *p = line;
  for (int k = 0; k < 36; k++) r[k] = strtof(p, &p);
  int64_t dsx[2] = {4, 2}, dsy[2] = {2, 4};
  dynq__tensor_t sin3[3] = {tens(DYNQ_DT_F32, 1, d2, r + 16), tens(DYNQ_DT_F32, 2, dsx, r),
                            tens(DYNQ_DT_F32, 2, dsy, r + 8)}, sout[3];
  memset(sout, 0, sizeof(sout));
  dynq__run_opts_t fo = {.precision = DYNQ_PRECISION_FP32};
  ck_assert_msg(dynq__model_run(m, &fo, sin3, sout, err, sizeof(err)) == 0, "%s", err);
  ck_assert(sout[1].rank == 2 && sout[1].dims[0] == 4 && sout[1].dims[1] == 2);
  ck_assert(sout[2].rank == 2 && sout[2].dims[0] == 2 && sout[2].dims[1] == 4);
  const float *want_s[3] = {r + 18, r + 20, r + 28};
  const int64_t cnt[3] = {2, 8, 8};
  for (int o2 = 0; o2 < 3; o2++) {
    for (int64_t i = 0; i < cnt[o2]; i++)
      ck_assert_msg(((float *)sout[o2].data)[i] == want_s[o2][i], "scan output %d [%lld] "
                    "%.9g, want %.9g", o2, (long long)i, ((float *)sout[o2].data)[i],
                    want_s[o2][i]);
    dynq__tensor_clear(&sout[o2]);
  }
  dynq__model_unref(m);

  /* Loop nodes the importer refuses, every one named in one error */
  char src[512], dst[512];
  snprintf(src, sizeof(src), "%s", tu_src("tests/fixtures/bad_loop.onnx"));
  snprintf(dst, sizeof(dst), "%s/bad.dynq", dir);
  char *log = NULL;
  ck_assert_int_eq(tu_quantize_log(&log, src, dst, NULL), 1);
  static const char *const needle[] = {
      "'no_body' (op Loop): the body graph is required",
      "'counts' (op Loop): 4 inputs and 2 outputs, but its body has 3 inputs",
      "'wide' (op Loop): 15 carried values",
      "'shadow' (op Loop): body input 'M' is already the name of another value",
      "'scan_axes' (op Scan): scan_input_axes has 2 values for 1 scan inputs",
      "'scan_dir' (op Scan): scan_input_directions[0] = 2 is not 0 or 1",
      "'scan_outax' (op Scan): scan_output_axes[0] = 1 needs the body output's rank",
      "7 nodes cannot be converted"};
  for (size_t k = 0; k < sizeof(needle) / sizeof(needle[0]); k++)
    ck_assert_msg(strstr(log, needle[k]), "no '%s' in: %s", needle[k], log);
  free(log);
  ck_assert_int_ne(access(dst, F_OK), 0);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("graphops");
  TCase *tc = tcase_create("ops");
  tcase_add_test(tc, test_gather);
  tcase_add_test(tc, test_squeeze_unsqueeze_transpose);
  tcase_add_test(tc, test_concat_slice_expand);
  tcase_add_test(tc, test_int64_math);
  tcase_add_test(tc, test_where_pad_phi);
  tcase_add_test(tc, test_if_ranges_validated);
  tcase_add_test(tc, test_loop_ranges_validated);
  suite_add_tcase(s, tc);
  TCase *ti = tcase_create("if");
  tcase_set_timeout(ti, 120);
  tcase_add_test(ti, test_if_runtime_and_folded);
  tcase_add_test(ti, test_loop_models);
  suite_add_tcase(s, ti);
  return tu_run_suite(s) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
