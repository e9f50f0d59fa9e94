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
