/*
 * Importer for recurrent and convolution nodes (LSTM, GRU, RNN, Conv).
 *
 * LSTM/GRU/RNN with constant float32 W and R become QLSTM/QGRU/QRNN: W
 * and R quantized per gate row (symmetric int8, one scale per row, packed
 * for the kernels, int32 row sums), the ONNX W and R kept as the FP32
 * reference (unless --no-reference).  With --fp32 or dynamic weights they
 * stay LSTM/GRU/RNN FP32 nodes with the ONNX inputs as they are.  The
 * activations (ONNX string list, F functions per direction: RNN f, GRU
 * f g, LSTM f g h; alpha and beta lists consumed in order by the
 * functions that take them) become codes and floats act<i>,
 * act_alpha<i>, act_beta<i> (lib/ops/rnn.h); an LSTM or GRU whose
 * functions are all the defaults gets none, as before they existed.
 *
 * Conv with constant float32 weights becomes QCONV when the INT8 GEMM
 * pays (see conv_pays()), else a CONV FP32 node; the decision and the
 * reason are in the per-layer summary.  Conv's list attributes become one
 * int attribute per spatial axis (lib/rnn.h), so the engine never needs a
 * graph lookup at run time.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "conv_sym.h"
#include "import.h"
#include "kernels/kernels.h"

/* ---- attribute helpers ---- */

static const char *attr_str(conv_t *c, const Onnx__AttributeProto *a) {
  if (a == NULL || a->s.data == NULL) return "";
  return dynq__imp_pool_printf(&c->b.pool, "%.*s", (int)a->s.len, (const char *)a->s.data);
}

static int is_type(const Onnx__AttributeProto *a, int t) {
  return !a->has_type || (int)a->type == t;
}

static int is_rnn(const Onnx__NodeProto *n) {
  return strcmp(n->op_type, "LSTM") == 0 || strcmp(n->op_type, "GRU") == 0 ||
         strcmp(n->op_type, "RNN") == 0;
}

/* ---- activations ---- */

typedef struct rnn_acts {
  int n;       /* D * F */
  int custom;  /* some function is not the op's default */
  int act[DYNQ_RNN_MAX_ACTS];
  float alpha[DYNQ_RNN_MAX_ACTS], beta[DYNQ_RNN_MAX_ACTS];
} rnn_acts_t;

/* Functions per direction of an RNN, GRU or LSTM node and their defaults. */
static int rnn_fns(const Onnx__NodeProto *n, const char *const **ret_def) {
  static const char *const rnn_def[] = {"Tanh"};
  static const char *const gru_def[] = {"Sigmoid", "Tanh"};
  static const char *const lstm_def[] = {"Sigmoid", "Tanh", "Tanh"};
  if (strcmp(n->op_type, "LSTM") == 0) return *ret_def = lstm_def, 3;
  if (strcmp(n->op_type, "GRU") == 0) return *ret_def = gru_def, 2;
  return *ret_def = rnn_def, 1;
}

/* ONNX's activations / activation_alpha / activation_beta of an RNN, GRU
 * or LSTM with D directions into *ret; NULL, or why not (pool-owned). */
static const char *rnn_activations(conv_t *c, const Onnx__NodeProto *n, int D, rnn_acts_t *ret) {
  dynq__imp_pool_t *pl = &c->b.pool;
  const Onnx__AttributeProto *aa = dynq__imp_find_attr(n, "activations");
  const Onnx__AttributeProto *al = dynq__imp_find_attr(n, "activation_alpha");
  const Onnx__AttributeProto *be = dynq__imp_find_attr(n, "activation_beta");
  if (aa && !is_type(aa, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS))
    return "activations must be a list of strings";
  if (al && !is_type(al, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS))
    return "activation_alpha must be a list of floats";
  if (be && !is_type(be, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS))
    return "activation_beta must be a list of floats";
  const char *const *def;
  const int F = rnn_fns(n, &def), N = D * F;
  if (aa && aa->n_strings != (size_t)N)
    return dynq__imp_pool_printf(pl, "activations has %zu functions; direction '%s' needs %d%s",
                                 aa->n_strings, D == 2 ? "bidirectional" : "forward/reverse", N,
                                 F == 3 ? " (f, g, h per direction)" : F == 2 ? " (f, g per direction)" : "");
  size_t ia = 0, ib = 0;
  ret->n = N;
  ret->custom = 0;
  for (int d = 0; d < N; d++) {
    const char *s = aa ? dynq__imp_pool_printf(pl, "%.*s", (int)aa->strings[d].len,
                                               (const char *)aa->strings[d].data)
                       : def[d % F];
    if (s == NULL) return "out of memory";
    int ta = 0, tb = 0;
    float a = 0, b = 0;
    int k = dynq__rnn_act(s, &ta, &tb, &a, &b);
    if (k < 0)
      return dynq__imp_pool_printf(pl, "activation '%s' is not supported (Tanh, Relu, Sigmoid, "
                                   "Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, "
                                   "Elu, Softsign, Softplus)", s);
    if (ta && al && ia < al->n_floats) a = al->floats[ia++];
    if (tb && be && ib < be->n_floats) b = be->floats[ib++];
    if (!isfinite(a) || !isfinite(b))
      return dynq__imp_pool_printf(pl, "activation '%s' of direction %d has a non-finite "
                                   "alpha or beta", s, d / F);
    if (k != dynq__rnn_act(def[d % F], NULL, NULL, NULL, NULL)) ret->custom = 1;
    ret->act[d] = k;
    ret->alpha[d] = a;
    ret->beta[d] = b;
  }
  if (al && ia < al->n_floats)
    return dynq__imp_pool_printf(pl, "activation_alpha has %zu values; the activations take %zu",
                                 al->n_floats, ia);
  if (be && ib < be->n_floats)
    return dynq__imp_pool_printf(pl, "activation_beta has %zu values; the activations take %zu",
                                 be->n_floats, ib);
  return NULL;
}

/* ---- pass-1 check ---- */

static const char *check_rnn(conv_t *c, const Onnx__NodeProto *n) {
  dynq__imp_pool_t *pl = &c->b.pool;
  const int gru = strcmp(n->op_type, "GRU") == 0;
  const int plain = strcmp(n->op_type, "RNN") == 0;
  int64_t H = -1;
  int dirs = 1;
  for (size_t i = 0; i < n->n_attribute; i++) {
    const Onnx__AttributeProto *a = n->attribute[i];
    const char *an = a->name ? a->name : "";
    if (strcmp(an, "hidden_size") == 0) {
      if (!dynq__imp_attr_is_int(a)) return "hidden_size must be an int";
      H = a->i;
    } else if (strcmp(an, "direction") == 0) {
      const char *d = attr_str(c, a);
      if (strcmp(d, "forward") == 0) dirs = 1;
      else if (strcmp(d, "reverse") == 0) dirs = 1;
      else if (strcmp(d, "bidirectional") == 0) dirs = 2;
      else return dynq__imp_pool_printf(pl, "direction '%s' is not forward, reverse or bidirectional", d);
    } else if (strcmp(an, "layout") == 0 ||
               (!plain && strcmp(an, gru ? "linear_before_reset" : "input_forget") == 0)) {
      if (!dynq__imp_attr_is_int(a)) return dynq__imp_pool_printf(pl, "%s must be an int", an);
      if (a->i != 0 && a->i != 1)
        return dynq__imp_pool_printf(pl, "%s must be 0 or 1, got %" PRId64, an, a->i);
    } else if (strcmp(an, "clip") == 0) {
      if (!dynq__imp_attr_is_float(a) || !(a->f > 0.0f)) return "clip must be a positive float";
    } else if (strcmp(an, "activations") == 0 || strcmp(an, "activation_alpha") == 0 ||
               strcmp(an, "activation_beta") == 0) {
      /* rnn_activations() below, once the direction is known */
    } else {
      return dynq__imp_pool_printf(pl, "attribute '%s' is not supported", an);
    }
  }
  if (H < 1 || H > 65536) return dynq__imp_pool_printf(pl, "hidden_size %" PRId64 " missing or outside [1, 65536]", H);
  rnn_acts_t acts;
  const char *awhy = rnn_activations(c, n, dirs, &acts);
  if (awhy != NULL) return awhy;
  const dynq__value_t *W = dynq__imp_const_of(c, n->input[1]);
  const dynq__value_t *R = dynq__imp_const_of(c, n->input[2]);
  int64_t GH = (plain ? 1 : gru ? 3 : 4) * H;
  char sh[96];
  if (W && (W->rank != 3 || W->dims[0] != dirs || W->dims[1] != GH))
    return dynq__imp_pool_printf(pl, "W must be [%d, %" PRId64 ", input_size] (hidden_size %" PRId64
                                 ", %d direction%s), is %s", dirs, GH, H, dirs, dirs > 1 ? "s" : "",
                                 dynq__shape_str(sh, sizeof sh, W->rank, W->dims));
  if (R && (R->rank != 3 || R->dims[0] != dirs || R->dims[1] != GH || R->dims[2] != H))
    return dynq__imp_pool_printf(pl, "R must be [%d, %" PRId64 ", %" PRId64 "], is %s", dirs, GH, H,
                                 dynq__shape_str(sh, sizeof sh, R->rank, R->dims));
  if ((W && W->dtype != DYNQ_DT_F32) || (R && R->dtype != DYNQ_DT_F32))
    return dynq__imp_pool_printf(pl, "%s is %s, expected float32", W && W->dtype != DYNQ_DT_F32 ? "W" : "R",
                                 dynq__dtype_name(W && W->dtype != DYNQ_DT_F32 ? W->dtype : R->dtype));
  /* sequence_lens: int32 [batch] per ONNX, each in [0, seq_length]; a
   * constant one is checked here, a run-time one by the engine */
  const dynq__value_t *L = n->n_input > 4 && n->input[4][0] ? dynq__imp_const_of(c, n->input[4]) : NULL;
  if (L && L->dtype != DYNQ_DT_I32 && L->dtype != DYNQ_DT_I64)
    return dynq__imp_pool_printf(pl, "sequence_lens is %s, expected int32", dynq__dtype_name(L->dtype));
  if (L && L->rank != 1)
    return dynq__imp_pool_printf(pl, "sequence_lens has rank %d, expected 1", L->rank);
  for (int64_t b = 0; L && L->data && b < L->dims[0]; b++) {
    int64_t v = L->dtype == DYNQ_DT_I32 ? ((const int32_t *)L->data)[b] : ((const int64_t *)L->data)[b];
    if (v < 0) return dynq__imp_pool_printf(pl, "sequence_lens[%" PRId64 "] = %" PRId64 " is negative", b, v);
  }
  return NULL;
}

static const char *check_conv(conv_t *c, const Onnx__NodeProto *n) {
  dynq__imp_pool_t *pl = &c->b.pool;
  const dynq__value_t *W = dynq__imp_const_of(c, n->input[1]);
  int sr = W ? W->rank - 2 : -1;
  if (W && (sr < 1 || sr > 3))
    return dynq__imp_pool_printf(pl, "only 1-D, 2-D and 3-D convolutions are supported (weights of rank %d)", W->rank);
  for (size_t i = 0; i < n->n_attribute; i++) {
    const Onnx__AttributeProto *a = n->attribute[i];
    const char *an = a->name ? a->name : "";
    if (strcmp(an, "group") == 0) {
      if (!dynq__imp_attr_is_int(a) || a->i < 1) return "group must be an int >= 1";
    } else if (strcmp(an, "auto_pad") == 0) {
      const char *s = attr_str(c, a);
      if (strcmp(s, "NOTSET") && strcmp(s, "SAME_UPPER") && strcmp(s, "SAME_LOWER") && strcmp(s, "VALID"))
        return dynq__imp_pool_printf(pl, "auto_pad '%s' is not supported", s);
    } else if (strcmp(an, "strides") == 0 || strcmp(an, "dilations") == 0 ||
               strcmp(an, "kernel_shape") == 0 || strcmp(an, "pads") == 0) {
      if (!is_type(a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS))
        return dynq__imp_pool_printf(pl, "attribute '%s' must be a list of ints", an);
      size_t want = strcmp(an, "pads") == 0 ? 2 : 1;
      if (sr < 0 && a->n_ints >= 1 && a->n_ints <= 3 && want == 1) sr = (int)a->n_ints;
      if (sr < 0 && (a->n_ints == 2 || a->n_ints == 4 || a->n_ints == 6) && want == 2) sr = (int)a->n_ints / 2;
      if (sr < 0 || a->n_ints != want * (size_t)sr)
        return dynq__imp_pool_printf(pl, "attribute '%s' has %zu values; only 1-D, 2-D and 3-D convolutions are supported", an, a->n_ints);
      for (size_t k = 0; k < a->n_ints; k++) {
        int64_t lo = strcmp(an, "pads") == 0 ? 0 : 1;
        if (a->ints[k] < lo || a->ints[k] > 65536)
          return dynq__imp_pool_printf(pl, "%s[%zu] = %" PRId64 " outside [%" PRId64 ", 65536]", an, k, a->ints[k], lo);
      }
      if (W && strcmp(an, "kernel_shape") == 0)
        for (int k = 0; k < sr; k++)
          if (a->ints[k] != W->dims[2 + k]) return "kernel_shape does not match the weights";
    } else {
      return dynq__imp_pool_printf(pl, "attribute '%s' is not supported", an);
    }
  }
  return NULL;
}

const char *dynq__import_rnn_check(conv_t *c, const Onnx__NodeProto *n) {
  return is_rnn(n) ? check_rnn(c, n) : check_conv(c, n);
}

/* ---- weight quantization (per row, in blocks) ---- */

typedef struct qblocks {
  int32_t packed, colsum, scale;  /* value indices */
  size_t packed_bytes;
} qblocks_t;

/* src holds nb blocks of [N, K] row-major floats; each row gets its own
 * symmetric int8 scale (max |w| / 127), the same formula as QLINEAR's.
 * colsum/scale constants get shape sdims (rank srank). */
static int quantize_blocks(conv_t *c, const char *base, const float *src, int64_t nb, int64_t N,
                           int64_t K, int srank, const int64_t *sdims, qblocks_t *ret) {
  dynq__builder_t *b = &c->b;
  const int64_t blk = dynq__round_up(N, DYNQ_QGEMM_NR) * dynq__round_up(K, DYNQ_QGEMM_KG);
  int8_t *packed = dynq__imp_pool_alloc(&b->pool, (size_t)(nb * blk));
  int8_t *q = dynq__imp_pool_alloc(&b->pool, (size_t)(N * K));
  int32_t *cs = dynq__imp_pool_alloc(&b->pool, sizeof(int32_t) * (size_t)(nb * N));
  float *sc = dynq__imp_pool_alloc(&b->pool, sizeof(float) * (size_t)(nb * N));
  if (!packed || !q || !cs || !sc) goto oom;
  for (int64_t d = 0; d < nb; d++) {
    for (int64_t n = 0; n < N; n++) {
      const float *w = src + (d * N + n) * K;
      float amax = 0.0f;
      for (int64_t k = 0; k < K; k++) {
        if (!isfinite(w[k])) {
          dynq__imp_errorf("node '%s': weight %" PRId64 " of row %" PRId64 " is not finite", base, k, d * N + n);
          return -1;
        }
        amax = fmaxf(amax, fabsf(w[k]));
      }
      float s = dynq__imp_wscale(amax);
      int32_t sum = 0;
      for (int64_t k = 0; k < K; k++) {
        q[n * K + k] = dynq__imp_q8(w[k] / s);
        sum += q[n * K + k];
      }
      cs[d * N + n] = sum;
      sc[d * N + n] = s;
    }
    dynq__pack_weights(N, K, q, packed + d * blk);
  }
  int64_t pd[1] = {nb * blk};
  ret->packed = dynq__imp_add_const(b, base, ".wq", DYNQ_DT_I8, 1, pd, packed, (size_t)(nb * blk));
  ret->colsum = dynq__imp_add_const(b, base, ".colsum", DYNQ_DT_I32, srank, sdims, cs,
                                    sizeof(int32_t) * (size_t)(nb * N));
  ret->scale = dynq__imp_add_const(b, base, ".wscale", DYNQ_DT_F32, srank, sdims, sc,
                                   sizeof(float) * (size_t)(nb * N));
  ret->packed_bytes = (size_t)(nb * blk);
  if (ret->packed < 0 || ret->colsum < 0 || ret->scale < 0) goto oom;
  return 0;
oom:
  dynq__imp_errorf("out of memory quantizing '%s'", base);
  return -1;
}

/* Claims the ONNX outputs of n as outputs 0..nout-1 of builder node idx;
 * absent or unnamed ones get fresh temporaries (the engine op always has
 * all of them). */
static int claim_outputs(conv_t *c, const Onnx__NodeProto *n, const char *nname, int32_t idx,
                         int nout) {
  dynq__builder_t *b = &c->b;
  for (int i = 0; i < nout; i++) {
    int32_t v;
    if ((size_t)i < n->n_output && n->output[i] && n->output[i][0]) {
      v = dynq__imp_claim_output(c, n->output[i], idx);
    } else {
      v = dynq__imp_add_temp(b, nname, i == 1 ? ".y_h" : i == 2 ? ".y_c" : ".y", DYNQ_DT_F32);
      if (v < 0) dynq__imp_errorf("out of memory");
    }
    if (v < 0) return -1;
    dynq__imp_node_out(b, &b->nodes[idx], v);
  }
  return 0;
}

static const char *input_name(const Onnx__NodeProto *n, size_t i) {
  return i < n->n_input ? n->input[i] : NULL;
}

enum { CELL_LSTM, CELL_GRU, CELL_RNN };

static int import_rnn(conv_t *c, const Onnx__NodeProto *n, const char *nname, int cell) {
  dynq__builder_t *b = &c->b;
  const int gru = cell == CELL_GRU, lstm = cell == CELL_LSTM;
  const int64_t H = dynq__imp_attr_i(n, "hidden_size", 0);
  const int64_t G = lstm ? 4 : gru ? 3 : 1, GH = G * H;
  const Onnx__AttributeProto *da = dynq__imp_find_attr(n, "direction");
  const char *dir = da ? attr_str(c, da) : "forward";
  static const char *const dnames[] = {"forward", "reverse", "bidirectional"};
  for (int i = 0; i < 3; i++)
    if (strcmp(dir, dnames[i]) == 0) dir = dnames[i]; /* static storage */
  const int64_t D = strcmp(dir, "bidirectional") == 0 ? 2 : 1;
  rnn_acts_t acts = {0};
  const char *awhy = rnn_activations(c, n, (int)D, &acts); /* pass 1 checked it */
  if (awhy != NULL) {
    dynq__imp_errorf("node '%s' (op %s): %s", nname, n->op_type, awhy);
    return -1;
  }
  const dynq__value_t *W = dynq__imp_const_of(c, n->input[1]);
  const dynq__value_t *R = dynq__imp_const_of(c, n->input[2]);
  dynq__layer_report_t *L = dynq__imp_add_layer(c, nname, n->op_type);
  if (L == NULL) goto oom;
  int64_t K = W && W->rank == 3 ? W->dims[2] : -1;
  L->k = K >= 0 ? K + H : -1; /* inputs of a gate row: x_t and h_{t-1} */
  L->n = D * GH;
  if (K >= 0) L->fp32_bytes = sizeof(float) * (size_t)(D * GH * (K + H));
  const char *why = NULL;
  const char *kept = dynq__imp_keep_fp32(c, nname);
  if (c->opt.fp32) why = "--fp32";
  else if ((why = dynq__imp_op_excluded(c, n->op_type)) != NULL) {}
  else if (kept) why = kept;
  else if ((why = dynq__imp_front_reader(c, n->input[0])) != NULL) {}
  else if (W == NULL || R == NULL) why = "W or R is not a constant";
  else if (W->dtype != DYNQ_DT_F32 || R->dtype != DYNQ_DT_F32) why = "W or R is not float32";
  else if (K < 1 || K > DYNQ_QGEMM_MAX_K) why = "input size outside [1, 65536]";

  const int base_opt = why ? 3 : 7;
  int32_t idx;
  qblocks_t qw = {0}, qr = {0};
  if (!why) {
    int64_t sd[2] = {D, GH};
    /* quantize_blocks adds constants, which may move the values array that
     * W and R point into: take what is needed first. */
    const float *wdata = W->data, *rdata = R->data;
    if (quantize_blocks(c, nname, wdata, D, GH, K, 2, sd, &qw) ||
        quantize_blocks(c, nname, rdata, D, GH, H, 2, sd, &qr))
      return -1;
  }
  static const int fops[3] = {DYNQ_OP_LSTM, DYNQ_OP_GRU, DYNQ_OP_RNN};
  static const int qops[3] = {DYNQ_OP_QLSTM, DYNQ_OP_QGRU, DYNQ_OP_QRNN};
  dynq__bnode_t *bn = dynq__imp_add_node(b, why ? fops[cell] : qops[cell], nname);
  if (bn == NULL) goto oom;
  idx = b->n_nodes - 1;
  dynq__imp_node_in(bn, dynq__imp_value_of(c, n->input[0]));
  if (why) {
    dynq__imp_node_in(bn, dynq__imp_value_of(c, n->input[1]));
    dynq__imp_node_in(bn, dynq__imp_value_of(c, n->input[2]));
  } else {
    dynq__imp_node_in(bn, qw.packed);
    dynq__imp_node_in(bn, qw.colsum);
    dynq__imp_node_in(bn, qw.scale);
    dynq__imp_node_in(bn, qr.packed);
    dynq__imp_node_in(bn, qr.colsum);
    dynq__imp_node_in(bn, qr.scale);
  }
  /* optional ONNX inputs 3.. (B, sequence_lens, initial_h[, initial_c, P]) */
  const int n_opt = lstm ? 5 : 3;
  for (int i = 0; i < n_opt; i++) dynq__imp_node_in(bn, dynq__imp_value_of(c, input_name(n, 3 + (size_t)i)));
  if (!why) {
    int ref = !c->opt.no_reference;
    dynq__imp_node_in(bn, ref ? dynq__imp_value_of(c, n->input[1]) : -1);
    dynq__imp_node_in(bn, ref ? dynq__imp_value_of(c, n->input[2]) : -1);
  }
  /* trim trailing omitted inputs (the op's minimum arity stays) */
  while (bn->n_in > base_opt && bn->in[bn->n_in - 1] < 0) bn->n_in--;
  dynq__imp_node_attr_i(bn, "hidden_size", H);
  dynq__imp_node_attr_s(bn, "direction", dir);
  dynq__imp_node_attr_i(bn, "layout", dynq__imp_attr_i(n, "layout", 0));
  if (gru) dynq__imp_node_attr_i(bn, "linear_before_reset", dynq__imp_attr_i(n, "linear_before_reset", 0));
  if (lstm) dynq__imp_node_attr_i(bn, "input_forget", dynq__imp_attr_i(n, "input_forget", 0));
  /* the plain RNN's always; LSTM/GRU's only when not all defaults, so a
   * default node is written as it was before they had them */
  for (int i = 0; (cell == CELL_RNN || acts.custom) && i < acts.n; i++) {
    static const char *const an[DYNQ_RNN_MAX_ACTS][3] = {
      {"act0", "act_alpha0", "act_beta0"}, {"act1", "act_alpha1", "act_beta1"},
      {"act2", "act_alpha2", "act_beta2"}, {"act3", "act_alpha3", "act_beta3"},
      {"act4", "act_alpha4", "act_beta4"}, {"act5", "act_alpha5", "act_beta5"}};
    dynq__imp_node_attr_i(bn, an[i][0], acts.act[i]);
    dynq__imp_node_attr_f(bn, an[i][1], acts.alpha[i]);
    dynq__imp_node_attr_f(bn, an[i][2], acts.beta[i]);
  }
  if (dynq__imp_find_attr(n, "clip")) dynq__imp_node_attr_f(bn, "clip", dynq__imp_attr_f(n, "clip", 0.0f));
  if (!why) {
    dynq__imp_node_attr_i(bn, "input_size", K);
    dynq__imp_node_attr_i(bn, "per_tensor", c->opt.per_tensor);
    L->quantized = 1;
    L->why = "W and R int8 per gate row; x_t and h_{t-1} quantized per row at every step";
    L->stored_bytes = qw.packed_bytes + qr.packed_bytes + (size_t)(2 * D * GH) * 8;
    if (!c->opt.no_reference) L->ref_bytes = L->fp32_bytes;
  } else {
    L->why = why;
    L->stored_bytes = L->fp32_bytes;
  }
  return claim_outputs(c, n, nname, idx, lstm ? 3 : 2);
oom:
  dynq__imp_errorf("out of memory");
  return -1;
}

int dynq__import_lstm(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  return import_rnn(c, n, nname, CELL_LSTM);
}

int dynq__import_gru(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  return import_rnn(c, n, nname, CELL_GRU);
}

int dynq__import_rnn(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  return import_rnn(c, n, nname, CELL_RNN);
}

/* ---- Conv ---- */

/* Whether the INT8 path is worth it for a conv with GEMM depth kk (C/g x
 * kernel) and mg output channels per group.  Below these sizes (a
 * depthwise 3-tap filter, a handful of output channels) the INT8 GEMM has
 * too little work per quantized byte to beat the extra pass that
 * quantizes the image and gathers the u8 patches, and the accuracy loss
 * buys nothing.  NULL when it pays, else the reason. */
static const char *conv_pays(int64_t kk, int64_t mg) {
  if (kk < 16) return "patch of fewer than 16 values (C/group x kernel): FP32 is faster";
  if (mg < 8) return "fewer than 8 output channels per group: FP32 is faster";
  if (kk > DYNQ_QGEMM_MAX_K) return "patch larger than 65536 values (int32 accumulator bound)";
  return NULL;
}

static void ints_attr(const Onnx__NodeProto *n, const char *name, int64_t *v, size_t cnt) {
  const Onnx__AttributeProto *a = dynq__imp_find_attr(n, name);
  if (a == NULL || a->n_ints != cnt) return;
  for (size_t i = 0; i < cnt; i++) v[i] = a->ints[i];
}

int dynq__import_conv(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  const dynq__value_t *W = dynq__imp_const_of(c, n->input[1]);
  const char *bname = input_name(n, 2);
  const dynq__value_t *B = bname && bname[0] ? dynq__imp_const_of(c, bname) : NULL;
  int sr = W ? W->rank - 2 : -1;
  const Onnx__AttributeProto *ks = dynq__imp_find_attr(n, "kernel_shape");
  if (sr < 0 && ks) sr = (int)ks->n_ints;
  const Onnx__AttributeProto *pa = dynq__imp_find_attr(n, "pads");
  if (sr < 0 && pa) sr = (int)pa->n_ints / 2;
  if (sr < 0) sr = 2; /* per-axis attributes fall back to their defaults anyway */
  const int64_t G = dynq__imp_attr_i(n, "group", 1);
  if (sr > 3) sr = 3; /* the check refused more */
  int64_t strides[3] = {1, 1, 1}, dil[3] = {1, 1, 1}, pads[6] = {0, 0, 0, 0, 0, 0};
  ints_attr(n, "strides", strides, (size_t)sr);
  ints_attr(n, "dilations", dil, (size_t)sr);
  ints_attr(n, "pads", pads, 2 * (size_t)sr);
  const Onnx__AttributeProto *apa = dynq__imp_find_attr(n, "auto_pad");
  const char *ap = apa ? attr_str(c, apa) : "NOTSET";
  static const char *const apn[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
  for (int i = 0; i < 4; i++)
    if (strcmp(ap, apn[i]) == 0) ap = apn[i];
  if (ap[0] == 0) ap = apn[0];

  dynq__layer_report_t *L = dynq__imp_add_layer(c, nname, "Conv");
  if (L == NULL) goto oom;
  int64_t M = W ? W->dims[0] : -1, Cg = W ? W->dims[1] : -1, kk = -1;
  if (W) {
    kk = Cg;
    for (int a = 0; a < sr; a++) kk *= W->dims[2 + a];
    L->k = kk;
    L->n = M;
    L->fp32_bytes = sizeof(float) * (size_t)(M * kk);
  }
  const char *why = NULL;
  const char *kept = dynq__imp_keep_fp32(c, nname);
  if (c->opt.fp32) why = "--fp32";
  else if ((why = dynq__imp_op_excluded(c, n->op_type)) != NULL) {}
  else if (kept) why = kept;
  else if (W == NULL) why = "weights are not a constant";
  else if (W->dtype != DYNQ_DT_F32) why = "weights are not float32";
  else if (M % G != 0) why = "output channels not divisible by group";
  else if (bname && bname[0] && (B == NULL || B->dtype != DYNQ_DT_F32 || B->rank != 1 || B->dims[0] != M))
    why = "bias is not a constant float32 [M]";
  else if (!c->opt.quantize_small) why = conv_pays(kk, M / G);
  else if (kk > DYNQ_QGEMM_MAX_K) why = "patch larger than 65536 values (int32 accumulator bound)";
  if (why == NULL && !c->opt.no_auto_fp32 && Cg == 1 && kk >= DYNQ_IMP_FRONT_MIN_TAPS) {
    /* A long filter over one raw channel (an STFT or filterbank over a
     * waveform): 8-bit input quantization is a noise floor ~48 dB under
     * the patch's peak, which buries the quiet bands the rest of the
     * model reads; few MACs per weight make INT8 save little here. */
    why = "signal front end (1 input channel, >= 64 taps; auto rule, see --no-auto-fp32)";
    c->front_out = 1;
  } else if (why == NULL) {
    why = dynq__imp_front_reader(c, n->input[0]);
  }

  /* quantize_blocks adds constants, which may move the values array that
   * W points into: copy the kernel extent first. */
  int64_t kshape[3] = {0, 0, 0};
  for (int a = 0; W != NULL && a < sr && a < 3; a++) kshape[a] = W->dims[2 + a];
  qblocks_t q = {0};
  if (!why) {
    int64_t sd[1] = {M};
    if (quantize_blocks(c, nname, W->data, G, M / G, kk, 1, sd, &q)) return -1;
  }
  /* An STFT front end as a Conv (a windowed DFT basis): lib/conv_sym.c
   * runs it at half the MACs; the loader re-checks the claim.  Decided
   * before nodes are added (that may move the values W points into). */
  int64_t sym_E = -1;
  if (why && W != NULL && W->dtype == DYNQ_DT_F32 && sr == 1 && Cg == 1 && G == 1 && dil[0] == 1)
    sym_E = dynq__conv_sym_split(W->data, M, W->dims[2]);
  dynq__bnode_t *bn = dynq__imp_add_node(b, why ? DYNQ_OP_CONV : DYNQ_OP_QCONV, nname);
  if (bn == NULL) goto oom;
  int32_t idx = b->n_nodes - 1;
  dynq__imp_node_in(bn, dynq__imp_value_of(c, n->input[0]));
  if (why) {
    dynq__imp_node_in(bn, dynq__imp_value_of(c, n->input[1]));
    if (bname && bname[0]) dynq__imp_node_in(bn, dynq__imp_value_of(c, bname));
  } else {
    dynq__imp_node_in(bn, q.packed);
    dynq__imp_node_in(bn, q.colsum);
    dynq__imp_node_in(bn, q.scale);
    dynq__imp_node_in(bn, bname && bname[0] ? dynq__imp_value_of(c, bname) : -1);
    dynq__imp_node_in(bn, c->opt.no_reference ? -1 : dynq__imp_value_of(c, n->input[1]));
    while (bn->n_in > 4 && bn->in[bn->n_in - 1] < 0) bn->n_in--;
  }
  static const char *const an[][3] = {
      {"strides0", "strides1", "strides2"}, {"dilations0", "dilations1", "dilations2"},
      {"pad_begin0", "pad_begin1", "pad_begin2"}, {"pad_end0", "pad_end1", "pad_end2"},
      {"kernel_shape0", "kernel_shape1", "kernel_shape2"}};
  dynq__imp_node_attr_i(bn, "group", G);
  dynq__imp_node_attr_s(bn, "auto_pad", ap);
  for (int a = 0; a < sr && a < 3; a++) {
    dynq__imp_node_attr_i(bn, an[0][a], strides[a]);
    dynq__imp_node_attr_i(bn, an[1][a], dil[a]);
    dynq__imp_node_attr_i(bn, an[2][a], pads[a]);
    dynq__imp_node_attr_i(bn, an[3][a], pads[sr + a]);
    if (!why) dynq__imp_node_attr_i(bn, an[4][a], kshape[a]);
  }
  if (!why) {
    dynq__imp_node_attr_i(bn, "spatial", sr);
    dynq__imp_node_attr_i(bn, "in_channels", Cg * G);
    dynq__imp_node_attr_i(bn, "out_channels", M);
    dynq__imp_node_attr_i(bn, "per_tensor", c->opt.per_tensor);
    L->quantized = 1;
    L->why = c->opt.per_tensor ? "image quantized per sample, im2col into the INT8 GEMM"
                               : "each patch (im2col row) quantized on its own, INT8 GEMM";
    L->stored_bytes = q.packed_bytes + (size_t)M * 8;
    if (!c->opt.no_reference) L->ref_bytes = L->fp32_bytes;
  } else {
    L->why = why;
    L->stored_bytes = L->fp32_bytes;
    if (sym_E >= 0) {
      dynq__imp_node_attr_i(bn, "sym_split", sym_E);
      L->sym_folded = 1;
    }
  }
  return claim_outputs(c, n, nname, idx, 1);
oom:
  dynq__imp_errorf("out of memory");
  return -1;
}
