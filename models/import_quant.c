/*
 * MatMulInteger and ConvInteger, the integer products of ONNX Runtime's
 * quantize_dynamic output (DynamicQuantizeLinear -> MatMulInteger or
 * ConvInteger -> Cast -> Mul by the scales).  They are rewritten into the
 * float products the engine already has:
 *
 *   A_f = Cast<float>(A) - a_zero_point       (a per-row zero point as [M, 1])
 *   B_f = Cast<float>(B) - b_zero_point       (folded: B is a constant)
 *   Y   = Cast<int32>(Round(MatMul|Conv(A_f, B_f)))
 *
 * When A is DynamicQuantizeLinear(x)'s output and the product is only
 * read through a Cast to float (quantize_dynamic's form), A - zp is
 * replaced by x / scale: the activation's uint8 rounding is dropped, and
 * the engine's per-row quantization is the only one (the summary says
 * so; the FP32 path is then the model with its int8 weights and float
 * activations).
 *
 * The integers are exact in float32 up to 2^24 per sum (a K of a few
 * thousand u8 x i8 products): far beyond what the Cast and scale Mul that
 * follow can tell apart.  With a constant B the MatMul / Conv is then
 * quantized like any other layer (B_f holds the model's int8 weights
 * exactly, so per-channel int8 quantization keeps them whenever a
 * channel's largest weight is +-127, as quantize_dynamic's symmetric
 * weights are).
 */
#include <string.h>

#include "import.h"

static int oom(void) {
  dynq__imp_errorf("out of memory");
  return -1;
}

static int is_conv(const Onnx__NodeProto *n) { return strcmp(n->op_type, "ConvInteger") == 0; }

static int has_in(const Onnx__NodeProto *n, size_t i) {
  return i < n->n_input && n->input[i] != NULL && n->input[i][0] != 0;
}

const char *dynq__import_quant_check(conv_t *c, const Onnx__NodeProto *n) {
  if (!is_conv(n)) return NULL;
  /* the attributes are Conv's: its check, without the zero points */
  Onnx__NodeProto cn = *n;
  cn.op_type = (char *)"Conv";
  cn.n_input = 2;
  return dynq__import_rnn_check(c, &cn);
}

/* One engine node src -> new temp; the temp's value index or -1. */
static int32_t emit1(conv_t *c, int op, const char *nname, const char *sfx, int32_t a, int32_t b2) {
  dynq__builder_t *b = &c->b;
  int32_t v = dynq__imp_add_temp(b, nname, sfx, DYNQ_DT_F32);
  if (v < 0) return oom();
  dynq__bnode_t *bn = dynq__imp_add_node(b, op, nname);
  if (bn == NULL) return oom();
  dynq__imp_node_in(bn, a);
  if (b2 >= 0) dynq__imp_node_in(bn, b2);
  if (op == DYNQ_OP_CAST) {
    dynq__imp_node_attr_i(bn, "to", DYNQ_DT_F32);
    dynq__imp_node_attr_i(bn, "to_bool", 0);
  }
  dynq__imp_node_out(b, bn, v);
  return v;
}

/* Cast<float>(x) - zp, zp reshaped to `zrank` trailing-ones dims first
 * (per row / per output channel) when zrank > 1. */
static int32_t minus_zp(conv_t *c, const char *nname, const char *sfx, const char *x,
                        const char *zp, int zrank) {
  dynq__builder_t *b = &c->b;
  int32_t xf = emit1(c, DYNQ_OP_CAST, nname, sfx, dynq__imp_value_of(c, x), -1);
  if (xf < 0 || zp == NULL) return xf;
  int32_t zf = emit1(c, DYNQ_OP_CAST, nname, ".zp", dynq__imp_value_of(c, zp), -1);
  if (zf < 0) return -1;
  if (zrank > 1) {
    int64_t *shape = dynq__imp_pool_alloc(&b->pool, sizeof(int64_t) * (size_t)zrank);
    if (shape == NULL) return oom();
    shape[0] = -1;
    for (int i = 1; i < zrank; i++) shape[i] = 1;
    int64_t d = zrank;
    int32_t sv = dynq__imp_add_const(b, nname, ".zp_shape", DYNQ_DT_I64, 1, &d, shape,
                                     sizeof(int64_t) * (size_t)zrank);
    if (sv < 0) return oom();
    zf = emit1(c, DYNQ_OP_RESHAPE, nname, ".zp_r", zf, sv);
    if (zf < 0) return -1;
  }
  return emit1(c, DYNQ_OP_SUB, nname, sfx, xf, zf);
}

/* The DynamicQuantizeLinear whose y and y_zero_point are A and A's zero
 * point, or NULL. */
static const Onnx__NodeProto *dql_of(const conv_t *c, const Onnx__NodeProto *n) {
  if (!has_in(n, 2)) return NULL;
  for (size_t i = 0; i < c->g->n_node; i++) {
    const Onnx__NodeProto *p = c->g->node[i];
    if (p->op_type && strcmp(p->op_type, "DynamicQuantizeLinear") == 0 && p->n_output == 3 &&
        p->output[0] && strcmp(p->output[0], n->input[0]) == 0 && p->output[2] &&
        strcmp(p->output[2], n->input[2]) == 0)
      return p;
  }
  return NULL;
}

/* Whether every reader of `name` is a Cast to float32 (so the product may
 * stay float) and it is no graph output. */
static int read_as_float(const conv_t *c, const char *name) {
  for (size_t i = 0; i < c->g->n_output; i++)
    if (c->g->output[i]->name && strcmp(c->g->output[i]->name, name) == 0) return 0;
  for (size_t i = 0; i < c->g->n_node; i++) {
    const Onnx__NodeProto *p = c->g->node[i];
    for (size_t k = 0; k < p->n_input; k++)
      if (p->input[k] && strcmp(p->input[k], name) == 0 &&
          (strcmp(p->op_type, "Cast") != 0 ||
           dynq__imp_attr_i(p, "to", 0) != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT))
        return 0;
  }
  return 1;
}

int dynq__import_quant(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  int conv = is_conv(n);
  const dynq__value_t *W = dynq__imp_const_of(c, n->input[1]);
  int wrank = W != NULL ? W->rank : 4;
  /* A quantized at run time by DynamicQuantizeLinear(x) and read as float
   * only: (A - zp) stands for x / scale, and the product takes x / scale
   * itself, so that x is quantized once, by the engine's own per-row
   * quantization, instead of once per tensor to uint8 and again per row. */
  const Onnx__NodeProto *dql = dql_of(c, n);
  int as_float = dql != NULL && read_as_float(c, n->output[0]);
  int32_t af;
  if (as_float) {
    /* an all-zero x has scale 0 (and x / scale 0 / 0): divided by the
     * smallest normal float instead, it gives the zeros the integers do */
    float *tiny = dynq__imp_pool_alloc(&b->pool, sizeof(float));
    if (tiny == NULL) return oom();
    *tiny = 1.17549435e-38f;
    int32_t tv = dynq__imp_add_const(b, nname, ".tiny", DYNQ_DT_F32, 0, NULL, tiny, sizeof(float));
    if (tv < 0) return oom();
    int32_t sv = emit1(c, DYNQ_OP_MAX, nname, ".scale", dynq__imp_value_of(c, dql->output[1]), tv);
    if (sv < 0) return -1;
    af = emit1(c, DYNQ_OP_DIV, nname, ".a", dynq__imp_value_of(c, dql->input[0]), sv);
    c->n_dql_dropped++;
  } else {
    af = minus_zp(c, nname, ".a", n->input[0], has_in(n, 2) ? n->input[2] : NULL,
                  conv ? 0 : 2);
  }
  if (af < 0) return -1;
  int first = b->n_nodes;
  int32_t bf = minus_zp(c, nname, ".b", n->input[1], has_in(n, 3) ? n->input[3] : NULL,
                        conv ? wrank : 0);
  if (bf < 0) return -1;
  if (dynq__imp_fold(c, first) != 0) return -1; /* a constant B becomes a float32 weight */
  int32_t yf = dynq__imp_add_temp(b, nname, ".f", DYNQ_DT_F32);
  if (yf < 0) return oom();
  /* The float product, converted like the model's own MatMul / Conv. */
  char *ins[2] = {(char *)b->values[af].name, (char *)b->values[bf].name};
  char *outs[1] = {(char *)b->values[yf].name};
  Onnx__NodeProto pn = *n;
  pn.op_type = (char *)(conv ? "Conv" : "MatMul");
  pn.n_input = 2;
  pn.input = ins;
  pn.n_output = 1;
  pn.output = outs;
  if (!conv) pn.n_attribute = 0;
  /* the converter claims its output by name: the temp is unclaimed */
  b->producer[yf] = -1;
  b->values[yf].dtype = DYNQ_DT_F32;
  if (c->convert_node(c, &pn, nname) != 0) return -1;
  int32_t yv = dynq__imp_value_of(c, outs[0]);
  if (as_float) { /* the Cast to float that reads it passes it on */
    int32_t out = dynq__imp_claim_output(c, n->output[0], b->n_nodes);
    if (out < 0) return -1;
    dynq__bnode_t *bn = dynq__imp_add_node(b, DYNQ_OP_IDENTITY, nname);
    if (bn == NULL) return oom();
    dynq__imp_node_in(bn, yv);
    dynq__imp_node_out(b, bn, out);
    return 0;
  }
  int32_t r = emit1(c, DYNQ_OP_ROUND, nname, ".r", yv, -1);
  if (r < 0) return -1;
  int32_t out = dynq__imp_claim_output(c, n->output[0], b->n_nodes);
  if (out < 0) return -1;
  dynq__bnode_t *bn = dynq__imp_add_node(b, DYNQ_OP_CAST, nname);
  if (bn == NULL) return oom();
  dynq__imp_node_in(bn, r);
  dynq__imp_node_attr_i(bn, "to", DYNQ_DT_I32);
  dynq__imp_node_attr_i(bn, "to_bool", 0);
  dynq__imp_node_out(b, bn, out);
  return 0;
}

/*
 * QLinearMatMul and QLinearConv, ONNX Runtime's static "QOperator" form
 * (quantize_static with QuantFormat.QOperator): integer operands with
 * their scales and zero points in, the output requantized with y_scale and
 * y_zero_point.  They are rewritten into the QDQ form the engine runs:
 *
 *   A_f = DequantizeLinear(A, a_scale, a_zero_point)
 *   B_f = DequantizeLinear(B, b_scale, b_zero_point)   (folded: B constant)
 *   bias_f = DequantizeLinear(bias, x_scale * w_scale) (QLinearConv, folded)
 *   Y   = QuantizeLinear(MatMul|Conv(A_f, B_f[, bias_f]), y_scale, y_zero_point)
 *
 * A constant B (the model's weights) becomes a float32 constant, and the
 * float MatMul / Conv is then converted like the model's own: its
 * weights requantized per output channel by the importer, the activation
 * per row at run time.  Per-channel weight scales dequantize along
 * QLinearConv's output channels (axis 0) and QLinearMatMul's columns (the
 * last axis); a 1-D a_scale is per row (axis -2).  The N-D per-row /
 * per-column scales QLinearMatMul allows ([.., M, 1], [.., 1, N]) are
 * applied by broadcasting: (Cast<float>(x) - zp) * scale.
 */

static int is_qconv(const Onnx__NodeProto *n) { return strcmp(n->op_type, "QLinearConv") == 0; }

const char *dynq__import_qlinear_check(conv_t *c, const Onnx__NodeProto *n) {
  static const char *const conv_names[] = {"x", "x_scale", "x_zero_point", "w", "w_scale",
                                           "w_zero_point", "y_scale", "y_zero_point"};
  static const char *const mm_names[] = {"a", "a_scale", "a_zero_point", "b", "b_scale",
                                         "b_zero_point", "y_scale", "y_zero_point"};
  const char *const *names = is_qconv(n) ? conv_names : mm_names;
  dynq__imp_pool_t *pl = &c->b.pool;
  for (size_t i = 0; i < 8; i++)
    if (!has_in(n, i))
      return dynq__imp_pool_printf(pl, "input %zu (%s) is required", i, names[i]);
  /* the quantization parameters known at import (a model's initializers):
   * float32 scales, 8-bit zero points of the scale's size, and an 8-bit
   * operand of the zero point's dtype */
  for (size_t i = 0; i < 9; i += 3) { /* x, w: operand, scale, zero point; y: scale, zero point */
    size_t si = i < 6 ? i + 1 : 6, zi = si + 1;
    const dynq__value_t *x = i < 6 ? dynq__imp_const_of(c, n->input[i]) : NULL;
    const dynq__value_t *s = dynq__imp_const_of(c, n->input[si]);
    const dynq__value_t *z = dynq__imp_const_of(c, n->input[zi]);
    if (s != NULL && s->dtype != DYNQ_DT_F32)
      return dynq__imp_pool_printf(pl, "%s is %s (float32 expected)", names[si],
                                   dynq__dtype_name(s->dtype));
    if (z != NULL && z->dtype != DYNQ_DT_U8 && z->dtype != DYNQ_DT_I8)
      return dynq__imp_pool_printf(pl, "%s is %s (uint8 or int8 expected)", names[zi],
                                   dynq__dtype_name(z->dtype));
    if (s != NULL && z != NULL &&
        dynq__shape_numel(s->rank, s->dims) != dynq__shape_numel(z->rank, z->dims))
      return dynq__imp_pool_printf(pl, "%s has %lld values, %s %lld (they must agree)",
                                   names[zi], (long long)dynq__shape_numel(z->rank, z->dims),
                                   names[si], (long long)dynq__shape_numel(s->rank, s->dims));
    if (x != NULL && z != NULL && x->dtype != z->dtype)
      return dynq__imp_pool_printf(pl, "%s is %s, %s %s (they must agree)", names[i],
                                   dynq__dtype_name(x->dtype), names[zi],
                                   dynq__dtype_name(z->dtype));
  }
  if (!is_qconv(n)) return NULL;
  /* the attributes are Conv's: its check, on x, w and the bias */
  char *ins[3] = {n->input[0], n->input[3], has_in(n, 8) ? n->input[8] : (char *)""};
  Onnx__NodeProto cn = *n;
  cn.op_type = (char *)"Conv";
  cn.input = ins;
  cn.n_input = has_in(n, 8) ? 3 : 2;
  return dynq__import_rnn_check(c, &cn);
}

/* (De)QuantizeLinear(x, s[, zp]) with `axis` as an engine node into a new
 * temp; the temp or -1. */
static int32_t qdq_node(conv_t *c, int op, const char *nname, const char *sfx, int32_t x,
                        int32_t s, int32_t zp, int axis) {
  dynq__builder_t *b = &c->b;
  int32_t v = dynq__imp_add_temp(b, nname, sfx, DYNQ_DT_F32);
  if (v < 0) return oom();
  dynq__bnode_t *bn = dynq__imp_add_node(b, op, nname);
  if (bn == NULL) return oom();
  dynq__imp_node_in(bn, x);
  dynq__imp_node_in(bn, s);
  if (zp >= 0) dynq__imp_node_in(bn, zp);
  dynq__imp_node_attr_i(bn, "axis", axis);
  dynq__imp_node_out(b, bn, v);
  return v;
}

/* Input i of n dequantized with inputs i + 1 (scale) and i + 2 (zero
 * point): per tensor, or per channel along axis for a 1-D scale, or by
 * broadcasting for a constant N-D scale. */
static int32_t deq_input(conv_t *c, const Onnx__NodeProto *n, const char *nname, const char *sfx,
                         size_t i, int axis) {
  int32_t x = dynq__imp_value_of(c, n->input[i]), s = dynq__imp_value_of(c, n->input[i + 1]);
  int32_t zp = has_in(n, i + 2) ? dynq__imp_value_of(c, n->input[i + 2]) : -1;
  if (x < 0 || s < 0 || (has_in(n, i + 2) && zp < 0)) return -1;
  const dynq__value_t *sv = dynq__imp_const_of(c, n->input[i + 1]);
  if (sv == NULL || sv->rank < 2)
    return qdq_node(c, DYNQ_OP_DEQUANTIZE_LINEAR, nname, sfx, x, s, zp, axis);
  int32_t xf = emit1(c, DYNQ_OP_CAST, nname, sfx, x, -1);
  if (xf < 0) return -1;
  if (zp >= 0) {
    int32_t zf = emit1(c, DYNQ_OP_CAST, nname, ".zp", zp, -1);
    if (zf < 0 || (xf = emit1(c, DYNQ_OP_SUB, nname, sfx, xf, zf)) < 0) return -1;
  }
  return emit1(c, DYNQ_OP_MUL, nname, sfx, xf, s);
}

int dynq__import_qlinear(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  int conv = is_qconv(n);
  int32_t af = deq_input(c, n, nname, ".a", 0, conv ? 1 : -2);
  if (af < 0) return -1;
  int first = b->n_nodes;
  int32_t bf = deq_input(c, n, nname, ".b", 3, conv ? 0 : -1);
  if (bf < 0) return -1;
  int32_t biasf = -1;
  if (conv && has_in(n, 8)) {
    /* the int32 bias: scale x_scale * w_scale, zero point 0 */
    int32_t bs = emit1(c, DYNQ_OP_MUL, nname, ".bias_scale", dynq__imp_value_of(c, n->input[1]),
                       dynq__imp_value_of(c, n->input[4]));
    if (bs < 0) return -1;
    biasf = qdq_node(c, DYNQ_OP_DEQUANTIZE_LINEAR, nname, ".bias",
                     dynq__imp_value_of(c, n->input[8]), bs, -1, 0);
    if (biasf < 0) return -1;
  }
  if (dynq__imp_fold(c, first) != 0) return -1; /* constant weights become float32 */
  int32_t yf = dynq__imp_add_temp(b, nname, ".f", DYNQ_DT_F32);
  if (yf < 0) return oom();
  char *ins[3] = {(char *)b->values[af].name, (char *)b->values[bf].name,
                  biasf >= 0 ? (char *)b->values[biasf].name : NULL};
  char *outs[1] = {(char *)b->values[yf].name};
  Onnx__NodeProto pn = *n;
  pn.op_type = (char *)(conv ? "Conv" : "MatMul");
  pn.n_input = biasf >= 0 ? 3 : 2;
  pn.input = ins;
  pn.n_output = 1;
  pn.output = outs;
  if (!conv) pn.n_attribute = 0;
  b->producer[yf] = -1; /* claimed by the converter, by name */
  b->values[yf].dtype = DYNQ_DT_F32;
  if (c->convert_node(c, &pn, nname) != 0) return -1;
  int32_t yv = dynq__imp_value_of(c, outs[0]);
  int32_t ys = dynq__imp_value_of(c, n->input[6]);
  int32_t yzp = has_in(n, 7) ? dynq__imp_value_of(c, n->input[7]) : -1;
  if (yv < 0 || ys < 0 || (has_in(n, 7) && yzp < 0)) return -1;
  int32_t out = dynq__imp_claim_output(c, n->output[0], b->n_nodes);
  if (out < 0) return -1;
  dynq__bnode_t *bn = dynq__imp_add_node(b, DYNQ_OP_QUANTIZE_LINEAR, nname);
  if (bn == NULL) return oom();
  dynq__imp_node_in(bn, yv);
  dynq__imp_node_in(bn, ys);
  if (yzp >= 0) dynq__imp_node_in(bn, yzp);
  dynq__imp_node_attr_i(bn, "axis", conv ? 1 : -1);
  dynq__imp_node_out(b, bn, out);
  return 0;
}
