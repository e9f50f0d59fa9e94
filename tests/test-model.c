/*
 * The executor's buffer reuse and the engine fast paths it leans on
 * (lib/model.c, lib/ops.c, lib/ops_graph.c, lib/conv.c):
 *   - storage moves (Identity, Reshape, Squeeze, Unsqueeze, whole Slice)
 *     and in-place elementwise ops give the same bits as fresh buffers,
 *     never write a graph input, never hand out a value a later node or
 *     the caller still reads, and leak nothing (valgrind setup);
 *   - Relu on special values (-0, +-inf, NaN of either sign, denormals)
 *     exactly as x > 0 ? x : (isnan(x) ? x : 0), on every length;
 *   - Conv's gathers (zero-padded copy for short rows, runs for long
 *     rows, dilated) against a direct double reference;
 *   - QConv per patch: images batched into one INT8 GEMM come out
 *     bit-identical to each image run alone.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "kernels/kernels.h"
#include "model.h"
#include "ops.h"
#include "tensor.h"
#include "testutil.h"

static char err[512];

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}

static float frnd(void) { return (float)rand() / (float)RAND_MAX * 2.0f - 1.0f; }

/* ---- the executor: moves and in-place ops in a small graph ---- */

/*
 *   r = Relu(x)              graph output 0, also read by Identity
 *   i = Identity(r)          r is an output: copied, not moved
 *   s = Reshape(i, [-1,3,2]) moved
 *   q = Mul(s, s)            s read twice: not offered to Mul
 *   t = Add(q, s)            in place into q
 *   u = Sqrt(t)              in place
 *   v = Unsqueeze(u, [0])    moved
 *   w = Squeeze(v, [0])      moved
 *   z = Slice(w, [0], [BIG], [2])  whole: moved;  graph output 1
 */
enum { V_X, V_SHAPE, V_R, V_I, V_S, V_Q, V_T, V_U, V_AXES, V_V, V_W, V_ST, V_EN, V_SAX, V_Z, NV };

static const int64_t shape_c[3] = {-1, 3, 2}, axes_c[1] = {0}, st_c[1] = {0},
                     en_c[1] = {INT64_MAX}, sax_c[1] = {2};

static void write_graph(const char *path) {
  static dynq__value_t v[NV];
  static dynq__node_t n[9];
  static const int32_t in0[] = {V_X}, out0[] = {V_R}, in1[] = {V_R}, out1[] = {V_I},
                       in2[] = {V_I, V_SHAPE}, out2[] = {V_S}, in3[] = {V_S, V_S}, out3[] = {V_Q},
                       in4[] = {V_Q, V_S}, out4[] = {V_T}, in5[] = {V_T}, out5[] = {V_U},
                       in6[] = {V_U, V_AXES}, out6[] = {V_V}, in7[] = {V_V, V_AXES},
                       out7[] = {V_W}, in8[] = {V_W, V_ST, V_EN, V_SAX}, out8[] = {V_Z};
  static const int32_t gin[] = {V_X}, gout[] = {V_R, V_Z};
  memset(v, 0, sizeof(v));
  const char *names[NV] = {"x", "shape", "r", "i", "s", "q", "t", "u", "axes", "v", "w",
                           "starts", "ends", "saxes", "z"};
  for (int k = 0; k < NV; k++) v[k] = (dynq__value_t){.name = names[k], .dtype = DYNQ_DT_F32, .rank = -1};
  v[V_X].rank = 2;
  v[V_X].dims[0] = -1;
  v[V_X].dims[1] = 6;
#define CONST_I64(id, arr)                                                              \
  v[id] = (dynq__value_t){.name = names[id], .dtype = DYNQ_DT_I64, .rank = 1,          \
                          .dims = {sizeof(arr) / sizeof(arr[0])}, .data = arr, .nbytes = sizeof(arr)}
  CONST_I64(V_SHAPE, shape_c);
  CONST_I64(V_AXES, axes_c);
  CONST_I64(V_ST, st_c);
  CONST_I64(V_EN, en_c);
  CONST_I64(V_SAX, sax_c);
#undef CONST_I64
#define NODE(i, OP, nm, ins, outs)                                                      \
  n[i] = (dynq__node_t){.op = OP, .name = nm, .n_in = sizeof(ins) / sizeof(ins[0]),     \
                        .n_out = 1, .in = ins, .out = outs}
  NODE(0, DYNQ_OP_RELU, "relu", in0, out0);
  NODE(1, DYNQ_OP_IDENTITY, "id", in1, out1);
  NODE(2, DYNQ_OP_RESHAPE, "reshape", in2, out2);
  NODE(3, DYNQ_OP_MUL, "mul", in3, out3);
  NODE(4, DYNQ_OP_ADD, "add", in4, out4);
  NODE(5, DYNQ_OP_SQRT, "sqrt", in5, out5);
  NODE(6, DYNQ_OP_UNSQUEEZE, "unsq", in6, out6);
  NODE(7, DYNQ_OP_SQUEEZE, "sq", in7, out7);
  NODE(8, DYNQ_OP_SLICE, "slice", in8, out8);
#undef NODE
  dynq__graph_t g = {.n_values = NV, .values = v, .n_nodes = 9, .nodes = n, .n_inputs = 1,
                     .inputs = gin, .n_outputs = 2, .outputs = gout, .producer = "test-model"};
  ck_assert_msg(dynq__graph_write(&g, path, err, sizeof(err)) == 0, "write: %s", err);
}

START_TEST(moves_and_in_place_keep_results) {
  char *dir = tu_mkdtemp(), path[512];
  ck_assert_ptr_nonnull(dir);
  snprintf(path, sizeof(path), "%s/m.dynq", dir);
  write_graph(path);
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(path, &m, err, sizeof(err)) == 0, "%s", err);
  srand(5);
  for (int B = 1; B <= 4; B += 3)
    for (int rep = 0; rep < 2; rep++) {
      float x[4 * 6], x0[4 * 6];
      for (int k = 0; k < B * 6; k++) x[k] = 2.0f * frnd();
      x[0] = -0.0f;
      memcpy(x0, x, sizeof(x));
      dynq__tensor_t in = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {B, 6}, .data = x};
      dynq__tensor_t out[2];
      memset(out, 0, sizeof(out));
      dynq__run_opts_t o = {.precision = DYNQ_PRECISION_FP32};
      ck_assert_msg(dynq__model_run(m, &o, &in, out, err, sizeof(err)) == 0, "%s", err);
      ck_assert_msg(memcmp(x, x0, sizeof(float) * (size_t)(B * 6)) == 0, "graph input was written");
      ck_assert_int_eq(out[0].rank, 2);
      ck_assert_int_eq(out[1].rank, 3);
      ck_assert_int_eq(out[1].dims[0], B);
      ck_assert_int_eq(out[1].dims[1], 3);
      ck_assert_int_eq(out[1].dims[2], 2);
      ck_assert_ptr_ne(out[0].data, out[1].data);
      for (int k = 0; k < B * 6; k++) {
        float r = x0[k] > 0.0f ? x0[k] : 0.0f;
        float z = sqrtf(r * r + r);
        ck_assert_uint_eq(bits(((float *)out[0].data)[k]), bits(r));
        ck_assert_uint_eq(bits(((float *)out[1].data)[k]), bits(z));
      }
      dynq__tensor_clear(&out[0]);
      dynq__tensor_clear(&out[1]);
    }
  dynq__model_unref(m);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* ---- the observer hook and the run result ---- */

typedef struct seen {
  int n, idx[16], op[16];
  float mul_in0_first;      /* Mul's first input element, as the observer saw it */
  float add_out_first;      /* Add's output */
} seen_t;

static void observe(void *user, const dynq__graph_t *g, int index, const dynq__node_t *node,
                    int precision, const dynq__tensor_t *const *inputs,
                    const dynq__tensor_t *outputs) {
  seen_t *s = user;
  ck_assert_ptr_eq(node, &g->nodes[index]);
  ck_assert_int_eq(precision, DYNQ_PRECISION_FP32);
  ck_assert_int_lt(s->n, 16);
  s->idx[s->n] = index;
  s->op[s->n++] = node->op;
  ck_assert_ptr_nonnull(outputs[0].data);
  if (node->op == DYNQ_OP_MUL) s->mul_in0_first = ((const float *)inputs[0]->data)[0];
  if (node->op == DYNQ_OP_ADD) s->add_out_first = ((const float *)outputs[0].data)[0];
}

/* on_node sees every node in order with intact inputs (no donated
 * storage), the outputs are the same bits as without it, and the run
 * result counts the nodes (no quantized layer, no split here). */
START_TEST(observer_sees_every_node) {
  char *dir = tu_mkdtemp(), path[512];
  ck_assert_ptr_nonnull(dir);
  snprintf(path, sizeof(path), "%s/m.dynq", dir);
  write_graph(path);
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(path, &m, err, sizeof(err)) == 0, "%s", err);
  float x[12];
  for (int k = 0; k < 12; k++) x[k] = (float)k - 4.5f;
  dynq__tensor_t in = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {2, 6}, .data = x};
  dynq__tensor_t a[2], b[2];
  seen_t s = {0};
  dynq__run_result_t res = {.splits = 7, .n_quant = 3};
  dynq__run_opts_t o = {.precision = DYNQ_PRECISION_FP32};
  ck_assert_msg(dynq__model_run(m, &o, &in, a, err, sizeof(err)) == 0, "%s", err);
  o.on_node = observe;
  o.on_node_user = &s;
  o.result = &res;
  ck_assert_msg(dynq__model_run(m, &o, &in, b, err, sizeof(err)) == 0, "%s", err);
  ck_assert_int_eq(s.n, 9);
  for (int i = 0; i < 9; i++) ck_assert_int_eq(s.idx[i], i);
  ck_assert_int_eq(s.op[3], DYNQ_OP_MUL);
  /* Mul reads the Reshape of Relu(x): x[0] = -4.5 -> 0; x[5] = 0.5 */
  ck_assert_float_eq(s.mul_in0_first, 0.0f);
  ck_assert_float_eq(s.add_out_first, 0.0f);
  ck_assert_int_eq(res.nodes_run, 9);
  ck_assert_int_eq(res.n_quant, 0);
  ck_assert_uint_eq(res.splits, 0);
  ck_assert_int_eq(res.int8_macs, 0);
  for (int k = 0; k < 2; k++) {
    ck_assert_int_eq(memcmp(a[k].data, b[k].data, dynq__tensor_nbytes(&a[k])), 0);
    dynq__tensor_clear(&a[k]);
    dynq__tensor_clear(&b[k]);
  }
  dynq__model_unref(m);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* ---- ops run directly, with or without a donor ---- */

static int run_op(int op, const dynq__attr_t *at, int n_attr, const dynq__tensor_t *const *in,
                  int n_in, dynq__tensor_t *donor0, dynq__tensor_t *out) {
  int32_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  dynq__node_t node = {.op = op, .name = "n", .n_in = n_in, .n_out = 1, .in = idx, .out = idx,
                       .n_attr = n_attr, .attr = at};
  dynq__op_ctx_t c = {.node = &node, .kernel = dynq__kernel(), .precision = DYNQ_PRECISION_INT8,
                      .err = err, .errlen = sizeof(err), .donor = {donor0}};
  memset(out, 0, sizeof(*out));
  err[0] = 0;
  return dynq__op_run1(NULL, &c, in, out);
}

/* Relu as ops.c documents it, the plain way. */
static float relu_ref(float x) { return x > 0.0f ? x : (x != x ? x : 0.0f); }

START_TEST(relu_special_values_every_length) {
  float sp[] = {-0.0f, 0.0f, 1e-45f, -1e-45f, -INFINITY, INFINITY, NAN, -NAN, 3.5f, -2.0f,
                1.17549435e-38f, -1.17549435e-38f, 3.4028235e38f, -3.4028235e38f};
  const int ns = (int)(sizeof(sp) / sizeof(sp[0]));
  srand(9);
  for (int n = 1; n <= 70; n++)
    for (int donate = 0; donate < 2; donate++) {
      dynq__tensor_t x;
      int64_t d[1] = {n};
      ck_assert_int_eq(dynq__tensor_alloc(&x, DYNQ_DT_F32, 1, d), 0);
      float *p = x.data, want[70];
      for (int i = 0; i < n; i++) p[i] = (i + n) % 3 == 0 ? sp[(i * 7 + n) % ns] : frnd();
      for (int i = 0; i < n; i++) want[i] = relu_ref(p[i]);
      const dynq__tensor_t *in[1] = {&x};
      dynq__tensor_t y;
      ck_assert_msg(run_op(DYNQ_OP_RELU, NULL, 0, in, 1, donate ? &x : NULL, &y) == 0, "%s", err);
      ck_assert(donate ? y.data == p && !x.owned : y.data != p);
      for (int i = 0; i < n; i++) {
        float g = ((float *)y.data)[i];
        if (isnan(want[i]))
          ck_assert_msg(isnan(g), "n=%d i=%d: NaN lost", n, i);
        else
          ck_assert_msg(bits(g) == bits(want[i]), "n=%d i=%d: %a -> %a, want %a", n, i,
                        (double)p[i], (double)g, (double)want[i]);
      }
      dynq__tensor_clear(&y);
      dynq__tensor_clear(&x); /* no-op once donated */
    }
}
END_TEST

/* Add with broadcasting: in place only into an input of the output's
 * shape; a smaller donor is declined, and results match either way. */
START_TEST(binary_donor_only_when_shapes_match) {
  for (int swap = 0; swap < 2; swap++) {
    dynq__tensor_t a, b;
    int64_t da[1] = {3}, db[2] = {2, 3};
    ck_assert_int_eq(dynq__tensor_alloc(&a, DYNQ_DT_F32, 1, da), 0);
    ck_assert_int_eq(dynq__tensor_alloc(&b, DYNQ_DT_F32, 2, db), 0);
    for (int i = 0; i < 3; i++) ((float *)a.data)[i] = (float)i + 0.25f;
    for (int i = 0; i < 6; i++) ((float *)b.data)[i] = (float)(10 * i);
    const dynq__tensor_t *in[2] = {swap ? &b : &a, swap ? &a : &b};
    dynq__tensor_t *first = swap ? &b : &a;
    void *fd = first->data;
    dynq__tensor_t y;
    ck_assert_msg(run_op(DYNQ_OP_SUB, NULL, 0, in, 2, first, &y) == 0, "%s", err);
    ck_assert_int_eq(y.rank, 2);
    /* b (the full-shape input) may be reused, a never */
    ck_assert(swap ? y.data == fd : y.data != fd);
    for (int i = 0; i < 6; i++) {
      float av = (float)(i % 3) + 0.25f, bv = (float)(10 * i);
      ck_assert_uint_eq(bits(((float *)y.data)[i]), bits(swap ? bv - av : av - bv));
    }
    dynq__tensor_clear(&y);
    dynq__tensor_clear(&a);
    dynq__tensor_clear(&b);
  }
}
END_TEST

/* Every stride case of the float binary loops: scalar on either side,
 * both scalars, broadcast rows; each op, bit for bit. */
START_TEST(binary_scalar_and_broadcast_cases) {
  const int ops[4] = {DYNQ_OP_ADD, DYNQ_OP_SUB, DYNQ_OP_MUL, DYNQ_OP_DIV};
  float va[12], vb[12];
  for (int i = 0; i < 12; i++) {
    va[i] = 0.37f * (float)(i + 1);
    vb[i] = -1.9f + 0.61f * (float)i;
  }
  /* shapes: a, b -> out */
  const struct { int ra, rb; int64_t da[2], db[2]; } sh[] = {
    {0, 2, {0, 0}, {3, 4}}, {2, 0, {3, 4}, {0, 0}}, {0, 0, {0, 0}, {0, 0}},
    {1, 2, {4, 0}, {3, 4}}, {2, 2, {3, 1}, {3, 4}}, {2, 1, {3, 4}, {4, 0}},
  };
  for (size_t k = 0; k < sizeof(sh) / sizeof(sh[0]); k++)
    for (int o = 0; o < 4; o++) {
      dynq__tensor_t a = {.dtype = DYNQ_DT_F32, .rank = sh[k].ra, .data = va};
      dynq__tensor_t b = {.dtype = DYNQ_DT_F32, .rank = sh[k].rb, .data = vb};
      memcpy(a.dims, sh[k].da, sizeof(sh[k].da));
      memcpy(b.dims, sh[k].db, sizeof(sh[k].db));
      const dynq__tensor_t *in[2] = {&a, &b};
      dynq__tensor_t y;
      ck_assert_msg(run_op(ops[o], NULL, 0, in, 2, NULL, &y) == 0, "%s", err);
      int64_t n = dynq__tensor_numel(&y), cols = y.rank ? y.dims[y.rank - 1] : 1;
      for (int64_t i = 0; i < n; i++) {
        int64_t r = i / cols, c = i % cols;
        /* index into each operand by its own shape (right-aligned) */
        int64_t ia = a.rank == 0 ? 0 : a.rank == 1 ? c : (a.dims[0] == 1 ? 0 : r) * a.dims[1] + (a.dims[1] == 1 ? 0 : c);
        int64_t ib = b.rank == 0 ? 0 : b.rank == 1 ? c : (b.dims[0] == 1 ? 0 : r) * b.dims[1] + (b.dims[1] == 1 ? 0 : c);
        float x = va[ia], z = vb[ib];
        float want = o == 0 ? x + z : o == 1 ? x - z : o == 2 ? x * z : x / z;
        ck_assert_msg(bits(((float *)y.data)[i]) == bits(want), "case %zu op %d i %lld", k, o,
                      (long long)i);
      }
      dynq__tensor_clear(&y);
    }
}
END_TEST

/* ---- Conv gathers against a direct reference ---- */

typedef struct cg {
  int64_t N, C, G, M, ih, iw, kh, kw, sh, sw, dh, dw, ph0, ph1, pw0, pw1;
} cg_t;

static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t d, int64_t p0, int64_t p1) {
  return (in + p0 + p1 - (d * (k - 1) + 1)) / s + 1;
}

static void check_conv(const cg_t *c) {
  const int sr = c->ih == 1 && c->kh == 1 && c->ph0 == 0 && c->ph1 == 0 ? 1 : 2;
  const int64_t Cg = c->C / c->G, Mg = c->M / c->G;
  const int64_t oh = out_size(c->ih, c->kh, c->sh, c->dh, c->ph0, c->ph1);
  const int64_t ow = out_size(c->iw, c->kw, c->sw, c->dw, c->pw0, c->pw1);
  float *X = malloc(sizeof(float) * (size_t)(c->N * c->C * c->ih * c->iw));
  float *W = malloc(sizeof(float) * (size_t)(c->M * Cg * c->kh * c->kw));
  for (int64_t i = 0; i < c->N * c->C * c->ih * c->iw; i++) X[i] = frnd();
  for (int64_t i = 0; i < c->M * Cg * c->kh * c->kw; i++) W[i] = frnd();
  int64_t xd[4] = {c->N, c->C, c->ih, c->iw}, wd[4] = {c->M, Cg, c->kh, c->kw};
  if (sr == 1) {
    xd[2] = c->iw;
    wd[2] = c->kw;
  }
  dynq__tensor_t tx = {.dtype = DYNQ_DT_F32, .rank = 2 + sr, .data = X};
  dynq__tensor_t tw = {.dtype = DYNQ_DT_F32, .rank = 2 + sr, .data = W};
  memcpy(tx.dims, xd, sizeof(xd));
  memcpy(tw.dims, wd, sizeof(wd));
  char names[12][24];
  dynq__attr_t at[12];
  int na = 0;
  at[na++] = (dynq__attr_t){.name = "group", .type = DYNQ_ATTR_INT, .i = c->G};
  int64_t av[2][4] = {{c->sh, c->dh, c->ph0, c->ph1}, {c->sw, c->dw, c->pw0, c->pw1}};
  const char *base[4] = {"strides", "dilations", "pad_begin", "pad_end"};
  for (int a = 0; a < sr; a++)
    for (int i = 0; i < 4; i++) {
      snprintf(names[na], sizeof(names[na]), "%s%d", base[i], a);
      at[na] = (dynq__attr_t){.name = names[na], .type = DYNQ_ATTR_INT,
                              .i = av[sr == 1 ? 1 : a][i]};
      na++;
    }
  const dynq__tensor_t *in[3] = {&tx, &tw, NULL};
  dynq__tensor_t y;
  ck_assert_msg(run_op(DYNQ_OP_CONV, at, na, in, 3, NULL, &y) == 0, "%s", err);
  ck_assert_int_eq(y.dims[0], c->N);
  ck_assert_int_eq(y.dims[1], c->M);
  ck_assert_int_eq(y.dims[sr == 1 ? 2 : 3], ow);
  const float *Y = y.data;
  double worst = 0;
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t m = 0; m < c->M; m++)
      for (int64_t oy = 0; oy < oh; oy++)
        for (int64_t ox = 0; ox < ow; ox++) {
          int64_t gi = m / Mg;
          double s = 0, mag = 0;
          for (int64_t ci = 0; ci < Cg; ci++)
            for (int64_t a = 0; a < c->kh; a++)
              for (int64_t b = 0; b < c->kw; b++) {
                int64_t yy = oy * c->sh - c->ph0 + a * c->dh, xx = ox * c->sw - c->pw0 + b * c->dw;
                if (yy < 0 || yy >= c->ih || xx < 0 || xx >= c->iw) continue;
                double t = (double)X[((n * c->C + gi * Cg + ci) * c->ih + yy) * c->iw + xx] *
                           W[((m * Cg + ci) * c->kh + a) * c->kw + b];
                s += t;
                mag += fabs(t);
              }
          double e = fabs(Y[((n * c->M + m) * oh + oy) * ow + ox] - s) / (mag + 1e-6);
          worst = e > worst ? e : worst;
        }
  ck_assert_msg(worst < 1e-5, "conv kw %lld dw %lld sw %lld pads %lld/%lld: rel err %g",
                (long long)c->kw, (long long)c->dw, (long long)c->sw, (long long)c->pw0,
                (long long)c->pw1, worst);
  dynq__tensor_clear(&y);
  free(X);
  free(W);
}

START_TEST(conv_gathers_match_reference) {
  srand(3);
  const cg_t cases[] = {
    /* Silero's encoder/0 shape: kw 3, pad 1, 129 channels, 4 wide */
    {.N = 3, .C = 129, .G = 1, .M = 8, .ih = 1, .iw = 4, .kh = 1, .kw = 3, .sh = 1, .sw = 1,
     .dh = 1, .dw = 1, .pw0 = 1, .pw1 = 1},
    /* stride 2, other widths (the fixed-width row copies) */
    {.N = 2, .C = 5, .G = 1, .M = 4, .ih = 1, .iw = 2, .kh = 1, .kw = 3, .sh = 1, .sw = 2,
     .dh = 1, .dw = 1, .pw0 = 1, .pw1 = 1},
    {.N = 2, .C = 5, .G = 1, .M = 4, .ih = 1, .iw = 1, .kh = 1, .kw = 3, .sh = 1, .sw = 1,
     .dh = 1, .dw = 1, .pw0 = 1, .pw1 = 1},
    {.N = 2, .C = 6, .G = 3, .M = 6, .ih = 1, .iw = 11, .kh = 1, .kw = 5, .sh = 1, .sw = 3,
     .dh = 1, .dw = 2, .pw0 = 2, .pw1 = 4},
    /* long rows (a signal front end): runs per patch, padded and dilated */
    {.N = 2, .C = 1, .G = 1, .M = 7, .ih = 1, .iw = 70, .kh = 1, .kw = 20, .sh = 1, .sw = 7,
     .dh = 1, .dw = 1, .pw0 = 3, .pw1 = 5},
    {.N = 2, .C = 2, .G = 1, .M = 3, .ih = 1, .iw = 70, .kh = 1, .kw = 17, .sh = 1, .sw = 4,
     .dh = 1, .dw = 2, .pw0 = 6, .pw1 = 1},
    /* pads far wider than the image: the per-patch path, no padded copy */
    {.N = 2, .C = 2, .G = 1, .M = 3, .ih = 1, .iw = 2, .kh = 1, .kw = 3, .sh = 1, .sw = 1000,
     .dh = 1, .dw = 1, .pw0 = 3000, .pw1 = 3000},
    /* 2-D, padded on both axes, kernel wider than the image */
    {.N = 2, .C = 3, .G = 1, .M = 5, .ih = 4, .iw = 3, .kh = 3, .kw = 5, .sh = 2, .sw = 1,
     .dh = 1, .dw = 1, .ph0 = 1, .ph1 = 2, .pw0 = 2, .pw1 = 2},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_conv(&cases[i]);
}
END_TEST

/* ---- QConv: batched patches == each image alone, bit for bit ---- */

START_TEST(qconv_batched_equals_alone) {
  enum { N = 7, C = 6, L = 9, M = 20, KW = 3 };
  srand(4);
  const int64_t kk = C * KW, blk = dynq__round_up(M, 16) * dynq__round_up(kk, 4);
  float *X = malloc(sizeof(float) * N * C * L), Wf[M * C * KW], scale[M], bias[M];
  int8_t wq[M * C * KW];
  int32_t colsum[M];
  int8_t *packed = dynq__aligned_alloc((size_t)blk);
  for (int i = 0; i < N * C * L; i++) X[i] = frnd() * (i < C * L ? 50.0f : 1.0f);
  for (int i = 0; i < M * C * KW; i++) Wf[i] = frnd();
  for (int m = 0; m < M; m++) {
    float mx = 0;
    for (int k = 0; k < kk; k++) mx = fabsf(Wf[m * kk + k]) > mx ? fabsf(Wf[m * kk + k]) : mx;
    scale[m] = mx / 127.0f;
    colsum[m] = 0;
    for (int k = 0; k < kk; k++) {
      wq[m * kk + k] = (int8_t)nearbyintf(Wf[m * kk + k] / scale[m]);
      colsum[m] += wq[m * kk + k];
    }
    bias[m] = 0.01f * (float)m;
  }
  dynq__pack_weights(M, kk, wq, packed);
  dynq__attr_t at[] = {
    {.name = "spatial", .type = DYNQ_ATTR_INT, .i = 1},
    {.name = "in_channels", .type = DYNQ_ATTR_INT, .i = C},
    {.name = "out_channels", .type = DYNQ_ATTR_INT, .i = M},
    {.name = "kernel_shape0", .type = DYNQ_ATTR_INT, .i = KW},
    {.name = "strides0", .type = DYNQ_ATTR_INT, .i = 2},
    {.name = "pad_begin0", .type = DYNQ_ATTR_INT, .i = 1},
    {.name = "pad_end0", .type = DYNQ_ATTR_INT, .i = 1},
  };
  const int na = (int)(sizeof(at) / sizeof(at[0]));
  int64_t pn[1] = {blk}, mn[1] = {M};
  dynq__tensor_t tq = {.dtype = DYNQ_DT_I8, .rank = 1, .dims = {pn[0]}, .data = packed};
  dynq__tensor_t tc = {.dtype = DYNQ_DT_I32, .rank = 1, .dims = {mn[0]}, .data = colsum};
  dynq__tensor_t ts = {.dtype = DYNQ_DT_F32, .rank = 1, .dims = {mn[0]}, .data = scale};
  dynq__tensor_t tb = {.dtype = DYNQ_DT_F32, .rank = 1, .dims = {mn[0]}, .data = bias};
  dynq__tensor_t tx = {.dtype = DYNQ_DT_F32, .rank = 3, .dims = {N, C, L}, .data = X};
  const dynq__tensor_t *in[5] = {&tx, &tq, &tc, &ts, &tb};
  dynq__tensor_t all;
  ck_assert_msg(run_op(DYNQ_OP_QCONV, at, na, in, 5, NULL, &all) == 0, "%s", err);
  const int64_t P = all.dims[2], per = M * P;
  ck_assert_int_eq(P, (L + 2 - KW) / 2 + 1);
  for (int n = 0; n < N; n++) {
    dynq__tensor_t t1 = {.dtype = DYNQ_DT_F32, .rank = 3, .dims = {1, C, L}, .data = X + n * C * L};
    const dynq__tensor_t *in1[5] = {&t1, &tq, &tc, &ts, &tb};
    dynq__tensor_t one;
    ck_assert_msg(run_op(DYNQ_OP_QCONV, at, na, in1, 5, NULL, &one) == 0, "%s", err);
    ck_assert_msg(memcmp(one.data, (float *)all.data + n * per, sizeof(float) * (size_t)per) == 0,
                  "image %d differs alone vs batched", n);
    dynq__tensor_clear(&one);
  }
  /* image 0 is 50x louder: its own scales, so image 1 is not coarsened */
  ck_assert(memcmp(all.data, (float *)all.data + per, sizeof(float) * (size_t)per) != 0);
  dynq__tensor_clear(&all);
  dynq__aligned_free(packed);
  free(X);
}
END_TEST

int main(void) {
  Suite *s = suite_create("model");
  TCase *tc = tcase_create("engine");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, moves_and_in_place_keep_results);
  tcase_add_test(tc, observer_sees_every_node);
  tcase_add_test(tc, relu_special_values_every_length);
  tcase_add_test(tc, binary_donor_only_when_shapes_match);
  tcase_add_test(tc, binary_scalar_and_broadcast_cases);
  tcase_add_test(tc, conv_gathers_match_reference);
  tcase_add_test(tc, qconv_batched_equals_alone);
  suite_add_tcase(s, tc);
  return tu_run_suite(s) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
