/*
 * Converters for Resize (and Upsample), ConvTranspose and Einsum, and
 * their pass-1 check: every attribute value the engine does not
 * implement is refused here, naming the attribute and the value (the
 * engine's own tables decide, lib/ops/resize.c and einsum.c, so the two
 * cannot disagree).
 *
 * Resize keeps X, scales and sizes (ONNX's roi only matters for
 * tf_crop_and_resize, which is refused).  ConvTranspose stores its
 * per-axis attributes as Conv's ("strides0", ...), and with constant
 * weights (group 1) becomes QConvTranspose (lib/ops/convt.c).  Einsum keeps its
 * equation string.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "import.h"

static const char *attr_s(conv_t *c, const Onnx__NodeProto *n, const char *name) {
  const Onnx__AttributeProto *a = dynq__imp_find_attr(n, name);
  if (a == NULL || !a->has_s) return NULL;
  return dynq__imp_pool_printf(&c->b.pool, "%.*s", (int)a->s.len, (const char *)a->s.data);
}

/* keep_aspect_ratio_policy's code (DYNQ_KEEP_*; absent: stretch), -1
 * when unknown. */
static int keep_policy(const char *p) {
  static const char *const names[] = {"stretch", "not_larger", "not_smaller"};
  if (p == NULL) return DYNQ_KEEP_STRETCH;
  for (int i = 0; i < 3; i++)
    if (strcmp(p, names[i]) == 0) return i;
  return -1;
}

/* The attributes each op accepts; anything else is refused by name. */
static int attr_known(const char *op, const char *a) {
  static const struct { const char *op, *attrs; } known[] = {
    {"Resize", " mode coordinate_transformation_mode nearest_mode cubic_coeff_a "
               "exclude_outside extrapolation_value antialias axes keep_aspect_ratio_policy "},
    {"ConvTranspose", " auto_pad dilations group kernel_shape output_padding output_shape "
                      "pads strides "},
    {"Einsum", " equation "},
    {"Col2Im", " dilations pads strides "},
    {"DeformConv", " dilations group kernel_shape offset_group pads strides "},
    {"Upsample", " mode scales "},
  };
  char key[80];
  snprintf(key, sizeof key, " %s ", a);
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
    if (strcmp(known[i].op, op) == 0) return strstr(known[i].attrs, key) != NULL;
  return 0;
}

/* ConvTranspose's spatial rank: from kernel_shape, else the other
 * per-axis attributes, else the weights' or the input's rank; 0 when
 * unknown. */
static size_t convt_rank(conv_t *c, const Onnx__NodeProto *n) {
  static const char *const per_axis[] = {"kernel_shape", "strides", "dilations",
                                         "output_padding"};
  for (int k = 0; k < 4; k++) {
    const Onnx__AttributeProto *a = dynq__imp_find_attr(n, per_axis[k]);
    if (a != NULL && a->n_ints > 0) return a->n_ints;
  }
  const Onnx__AttributeProto *p = dynq__imp_find_attr(n, "pads");
  if (p != NULL && p->n_ints > 0) return p->n_ints / 2;
  /* the weights' or the input's rank, when known (a constant, or a
   * graph input's declaration) */
  for (int k = 1; k >= 0; k--) {
    int32_t v = dynq__imp_value_of(c, n->input[k]);
    if (v >= 0 && c->b.values[v].rank >= 3) return (size_t)(c->b.values[v].rank - 2);
  }
  return 0;
}

/* Col2Im's spatial rank: the length of a constant image_shape or
 * block_shape, else of its per-axis attributes; 0 when unknown. */
static size_t col2im_rank(conv_t *c, const Onnx__NodeProto *n) {
  for (size_t k = 1; k < 3 && k < n->n_input; k++) {
    const dynq__value_t *t = dynq__imp_const_of(c, n->input[k]);
    if (t != NULL && t->rank == 1) return (size_t)t->dims[0];
  }
  static const char *const per_axis[] = {"strides", "dilations"};
  for (int k = 0; k < 2; k++) {
    const Onnx__AttributeProto *a = dynq__imp_find_attr(n, per_axis[k]);
    if (a != NULL && a->n_ints > 0) return a->n_ints;
  }
  const Onnx__AttributeProto *p = dynq__imp_find_attr(n, "pads");
  return p != NULL ? (p->n_ints + 1) / 2 : 0;
}

const char *dynq__import_ops_check(conv_t *c, const Onnx__NodeProto *n) {
  dynq__imp_pool_t *pl = &c->b.pool;
  const char *t = n->op_type;
  for (size_t i = 0; i < n->n_attribute; i++) {
    const char *an = n->attribute[i]->name ? n->attribute[i]->name : "";
    if (!attr_known(t, an)) return dynq__imp_pool_printf(pl, "attribute '%s' is not supported", an);
  }
  if (strcmp(t, "Resize") == 0) {
    int m, ct, nm;
    char why[256];
    if (dynq__resize_codes(attr_s(c, n, "mode"), attr_s(c, n, "coordinate_transformation_mode"),
                           attr_s(c, n, "nearest_mode"), &m, &ct, &nm, why, sizeof why) != 0)
      return dynq__imp_pool_printf(pl, "%s", why);
    int64_t eo = dynq__imp_attr_i(n, "exclude_outside", 0);
    if (eo != 0 && eo != 1)
      return dynq__imp_pool_printf(pl, "exclude_outside %" PRId64 " is not 0 or 1", eo);
    const Onnx__AttributeProto *ca = dynq__imp_find_attr(n, "cubic_coeff_a");
    if (ca != NULL && (!ca->has_f || !isfinite(ca->f)))
      return "cubic_coeff_a is not a finite float";
    int64_t aa = dynq__imp_attr_i(n, "antialias", 0);
    if (aa != 0 && aa != 1) return dynq__imp_pool_printf(pl, "antialias %" PRId64 " is not 0 or 1", aa);
    const Onnx__AttributeProto *ax = dynq__imp_find_attr(n, "axes");
    if (ax != NULL && (ax->n_ints < 1 || ax->n_ints > DYNQ_MAX_RANK))
      return dynq__imp_pool_printf(pl, "axes has %zu values (1 to %d)", ax->n_ints,
                                   DYNQ_MAX_RANK);
    for (size_t i = 0; ax != NULL && i < ax->n_ints; i++) {
      if (ax->ints[i] < -DYNQ_MAX_RANK || ax->ints[i] >= DYNQ_MAX_RANK)
        return dynq__imp_pool_printf(pl, "axes[%zu] %" PRId64 " is out of range", i,
                                     ax->ints[i]);
      for (size_t j = 0; j < i; j++)
        if (ax->ints[j] == ax->ints[i])
          return dynq__imp_pool_printf(pl, "axes lists %" PRId64 " twice", ax->ints[i]);
    }
    if (keep_policy(attr_s(c, n, "keep_aspect_ratio_policy")) < 0)
      return dynq__imp_pool_printf(pl, "keep_aspect_ratio_policy '%s' is not supported "
                                   "(stretch, not_larger, not_smaller are)",
                                   attr_s(c, n, "keep_aspect_ratio_policy"));
    if (c->opset < 11 && n->n_input != 2) return "takes X and scales before opset 11";
    int has_scales = c->opset < 11 || (n->n_input > 2 && n->input[2] && n->input[2][0]);
    int has_sizes = c->opset >= 11 && n->n_input > 3 && n->input[3] && n->input[3][0];
    if (!has_scales && !has_sizes) return "needs scales or sizes";
  } else if (strcmp(t, "Upsample") == 0) {
    const char *m = attr_s(c, n, "mode");
    if (m != NULL && strcmp(m, "nearest") != 0 && strcmp(m, "linear") != 0)
      return dynq__imp_pool_printf(pl, "mode '%s' is not supported (nearest, linear are)", m);
  } else if (strcmp(t, "ConvTranspose") == 0) {
    size_t sr = convt_rank(c, n);
    if (sr == 0) return "cannot tell the number of spatial axes (give kernel_shape)";
    if (sr > 3)
      return dynq__imp_pool_printf(pl, "%zu spatial axes; 1-D, 2-D and 3-D ConvTranspose are "
                                   "supported", sr);
    static const char *const per_axis[] = {"kernel_shape", "strides", "dilations",
                                           "output_padding"};
    for (int k = 0; k < 4; k++) {
      const Onnx__AttributeProto *a = dynq__imp_find_attr(n, per_axis[k]);
      if (a != NULL && a->n_ints != sr)
        return dynq__imp_pool_printf(pl, "%s has %zu values for %zu spatial axes", per_axis[k],
                                     a->n_ints, sr);
    }
    const Onnx__AttributeProto *a = dynq__imp_find_attr(n, "pads");
    if (a != NULL && a->n_ints != 2 * sr)
      return dynq__imp_pool_printf(pl, "pads has %zu values for %zu spatial axes", a->n_ints, sr);
    a = dynq__imp_find_attr(n, "output_shape");
    if (a != NULL && a->n_ints != sr && a->n_ints != sr + 2)
      return dynq__imp_pool_printf(pl, "output_shape has %zu values for %zu spatial axes",
                                   a->n_ints, sr);
    const char *ap = attr_s(c, n, "auto_pad");
    if (ap != NULL && ap[0] && strcmp(ap, "NOTSET") && strcmp(ap, "SAME_UPPER") &&
        strcmp(ap, "SAME_LOWER") && strcmp(ap, "VALID"))
      return dynq__imp_pool_printf(pl, "auto_pad '%s' is not supported", ap);
  } else if (strcmp(t, "Col2Im") == 0) {
    size_t sr = col2im_rank(c, n);
    if (sr == 0) return "cannot tell the number of spatial axes (give strides or a constant "
                        "image_shape)";
    if (sr > 3)
      return dynq__imp_pool_printf(pl, "%zu spatial axes; 1-D, 2-D and 3-D Col2Im are "
                                   "supported", sr);
    static const char *const per_axis[] = {"strides", "dilations", "pads"};
    for (int k = 0; k < 3; k++) {
      const Onnx__AttributeProto *a = dynq__imp_find_attr(n, per_axis[k]);
      size_t want = k == 2 ? 2 * sr : sr;
      if (a != NULL && a->n_ints != want)
        return dynq__imp_pool_printf(pl, "%s has %zu values for %zu spatial axes", per_axis[k],
                                     a->n_ints, sr);
      for (size_t i = 0; a != NULL && i < a->n_ints; i++)
        if (a->ints[i] < (k == 2 ? 0 : 1) || a->ints[i] > 65536)
          return dynq__imp_pool_printf(pl, "%s[%zu] %" PRId64 " is not within [%d, 65536]",
                                       per_axis[k], i, a->ints[i], k == 2 ? 0 : 1);
    }
  } else if (strcmp(t, "DeformConv") == 0) {
    /* 2-D only, as ONNX's reference: the attributes' lengths, else the
     * weights' or the input's rank, must say so */
    size_t sr = convt_rank(c, n);
    if (sr != 2)
      return sr == 0 ? "cannot tell the number of spatial axes (give kernel_shape)"
                     : dynq__imp_pool_printf(pl, "%zu spatial axes; 2-D DeformConv is supported",
                                             sr);
    static const char *const per_axis[] = {"kernel_shape", "strides", "dilations", "pads"};
    for (int k = 0; k < 4; k++) {
      const Onnx__AttributeProto *a = dynq__imp_find_attr(n, per_axis[k]);
      size_t want = k == 3 ? 4 : 2;
      if (a != NULL && a->n_ints != want)
        return dynq__imp_pool_printf(pl, "%s has %zu values for 2 spatial axes", per_axis[k],
                                     a->n_ints);
      for (size_t i = 0; a != NULL && i < a->n_ints; i++)
        if (a->ints[i] < (k == 3 ? 0 : 1) || a->ints[i] > 65536)
          return dynq__imp_pool_printf(pl, "%s[%zu] %" PRId64 " is not within [%d, 65536]",
                                       per_axis[k], i, a->ints[i], k == 3 ? 0 : 1);
    }
    static const char *const counts[] = {"group", "offset_group"};
    for (int k = 0; k < 2; k++) {
      int64_t v = dynq__imp_attr_i(n, counts[k], 1);
      if (v < 1 || v > 65536)
        return dynq__imp_pool_printf(pl, "%s %" PRId64 " is not within [1, 65536]", counts[k], v);
    }
  } else if (strcmp(t, "Einsum") == 0) {
    const char *eq = attr_s(c, n, "equation"), *why = NULL;
    dynq__einsum_t e;
    if (eq == NULL) return "the equation attribute is missing";
    if (dynq__einsum_parse(eq, &e, &why) != 0)
      return dynq__imp_pool_printf(pl, "equation '%s': %s", eq, why);
    if ((size_t)e.nin != n->n_input)
      return dynq__imp_pool_printf(pl, "equation '%s' has %d operands, the node %zu inputs", eq,
                                   e.nin, n->n_input);
  }
  return NULL;
}

static int oom(void) {
  dynq__imp_errorf("out of memory");
  return -1;
}

typedef struct qconvt {
  dynq__qlayer_t ql;
  int64_t Mg, k[3];
} qconvt_t;

/* A ConvTranspose with constant float32 weights [C, Mg, k...], group 1,
 * becomes QConvTranspose: W is the [K = C, N = Mg * kk] operand of the
 * GEMM from input positions to taps, quantized per column.  1 when
 * quantized (constants in *q), 0 when it stays FP32 (the layer report
 * says why), -1 after an error. */
static int plan_qconvt(conv_t *c, const Onnx__NodeProto *n, const char *nname, size_t sr,
                       qconvt_t *q) {
  const dynq__value_t *W = dynq__imp_const_of(c, n->input[1]);
  const char *bname = n->n_input > 2 && n->input[2] && n->input[2][0] ? n->input[2] : NULL;
  const dynq__value_t *B = bname ? dynq__imp_const_of(c, bname) : NULL;
  dynq__layer_report_t *L = dynq__imp_add_layer(c, nname, "ConvTranspose");
  if (L == NULL) return oom();
  int64_t C = 0, Nn = 0;
  if (W != NULL && W->rank == (int)sr + 2) {
    C = W->dims[0], q->Mg = W->dims[1], Nn = q->Mg;
    for (size_t a = 0; a < sr; a++) Nn *= (q->k[a] = W->dims[2 + a]);
    L->k = C;
    L->n = Nn;
    L->fp32_bytes = sizeof(float) * (size_t)(C * Nn);
  }
  const char *why = NULL, *kept = dynq__imp_keep_fp32(c, nname);
  if (c->opt.fp32) why = "--fp32";
  else if ((why = dynq__imp_op_excluded(c, n->op_type)) != NULL) {}
  else if (kept) why = kept;
  else if (W == NULL) why = "weights are not a constant";
  else if (W->dtype != DYNQ_DT_F32 || W->rank != (int)sr + 2) why = "weights are not float32 [C, M, kernel...]";
  else if (dynq__imp_attr_i(n, "group", 1) != 1) why = "group > 1 runs in FP32";
  else if (c->opt.per_tensor) why = "--act-per-tensor is not implemented for ConvTranspose";
  else if (bname && (B == NULL || B->dtype != DYNQ_DT_F32 || B->rank != 1 || B->dims[0] != q->Mg))
    why = "bias is not a constant float32 [M]";
  else if (C > DYNQ_QGEMM_MAX_K) why = "more than 65536 input channels (int32 accumulator bound)";
  else if (!c->opt.quantize_small && (C < 16 || Nn < 8))
    why = "too small for INT8 to pay (< 16 input channels or < 8 outputs per position)";
  else why = dynq__imp_front_reader(c, n->input[0]);
  if (why != NULL) {
    L->why = why;
    L->stored_bytes = L->fp32_bytes;
    return 0;
  }
  if (dynq__imp_quantize_weights(c, nname, W->data, C, Nn, 0, 1.0f, &q->ql) != 0) return -1;
  L->quantized = 1;
  L->why = "each input position quantized on its own, INT8 GEMM to the taps, col2im in float";
  L->stored_bytes = q->ql.packed_bytes + (size_t)Nn * (sizeof(float) + sizeof(int32_t));
  if (!c->opt.no_reference) L->ref_bytes = L->fp32_bytes;
  return 1;
}

/* Upsample (opsets 7 to 9; deprecated since) is Resize-10: X and scales
 * (an attribute before opset 9, import_rules.c), sampled asymmetric,
 * nearest rounding down. */
static int import_upsample(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  int32_t ins[DYNQ_IMP_MAX_IN];
  int n_ins = 0;
  if (dynq__imp_rule_inputs(c, n, nname, ins, &n_ins) != 0) return -1;
  dynq__bnode_t *bn = dynq__imp_add_node(b, DYNQ_OP_RESIZE, nname);
  if (bn == NULL) return oom();
  dynq__imp_node_in(bn, ins[0]);
  dynq__imp_node_in(bn, ins[1]);
  const char *m = attr_s(c, n, "mode");
  dynq__imp_node_attr_s(bn, "mode", m != NULL ? m : "nearest");
  dynq__imp_node_attr_s(bn, "coordinate_transformation_mode", "asymmetric");
  dynq__imp_node_attr_s(bn, "nearest_mode", "floor");
  int32_t out = dynq__imp_claim_output(c, n->output[0], b->n_nodes - 1);
  if (out < 0) return -1;
  dynq__imp_node_out(b, &b->nodes[b->n_nodes - 1], out);
  return 0;
}

int dynq__import_ops(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  const char *t = n->op_type;
  if (strcmp(t, "Upsample") == 0) return import_upsample(c, n, nname);
  int op = dynq__op_from_name(t);
  dynq__bnode_t *bn = dynq__imp_add_node(b, op, nname);
  if (bn == NULL) return oom();
  if (op == DYNQ_OP_RESIZE) {
    /* (X, scales) before opset 11, (X, roi, scales, sizes) after */
    int first = c->opset < 11 ? 1 : 2;
    dynq__imp_node_in(bn, dynq__imp_value_of(c, n->input[0]));
    for (size_t i = (size_t)first; i < (size_t)first + 2; i++)
      dynq__imp_node_in(bn, i < n->n_input ? dynq__imp_value_of(c, n->input[i]) : -1);
    while (bn->n_in > 1 && bn->in[bn->n_in - 1] < 0) bn->n_in--;
    static const char *const sattr[] = {"mode", "coordinate_transformation_mode", "nearest_mode"};
    for (int k = 0; k < 3; k++) {
      const char *v = attr_s(c, n, sattr[k]);
      /* Resize-10 has no transformation mode: it samples asymmetric,
       * nearest rounding down (as ONNX Runtime runs it) */
      if (v == NULL && c->opset < 11 && k > 0) v = k == 1 ? "asymmetric" : "floor";
      if (v != NULL) dynq__imp_node_attr_s(bn, sattr[k], v);
    }
    /* cubic's kernel coefficient and edge rule (the engine's defaults
     * are ONNX's: -0.75, 0) */
    const Onnx__AttributeProto *ca = dynq__imp_find_attr(n, "cubic_coeff_a");
    if (ca != NULL && ca->has_f) dynq__imp_node_attr_f(bn, "cubic_coeff_a", ca->f);
    int64_t eo = dynq__imp_attr_i(n, "exclude_outside", 0);
    if (eo != 0) dynq__imp_node_attr_i(bn, "exclude_outside", eo);
    /* opset 18: antialias, the axes scales / sizes give, the sizes'
     * aspect ratio policy */
    if (dynq__imp_attr_i(n, "antialias", 0) != 0) dynq__imp_node_attr_i(bn, "antialias", 1);
    const Onnx__AttributeProto *ax = dynq__imp_find_attr(n, "axes");
    if (ax != NULL) {
      /* attribute names are kept by pointer: static ones */
      static const char *const key[DYNQ_MAX_RANK] = {"axes0", "axes1", "axes2", "axes3",
                                                     "axes4", "axes5", "axes6", "axes7"};
      dynq__imp_node_attr_i(bn, "naxes", (int64_t)ax->n_ints);
      for (size_t i = 0; i < ax->n_ints && i < DYNQ_MAX_RANK; i++)
        dynq__imp_node_attr_i(bn, key[i], ax->ints[i]);
    }
    int pol = keep_policy(attr_s(c, n, "keep_aspect_ratio_policy"));
    if (pol != DYNQ_KEEP_STRETCH) dynq__imp_node_attr_i(bn, "policy", pol);
  } else if (op == DYNQ_OP_CONV_TRANSPOSE) {
    size_t sr = convt_rank(c, n);
    qconvt_t q;
    int qr = plan_qconvt(c, n, nname, sr, &q);
    if (qr < 0) return -1;
    bn = &b->nodes[b->n_nodes - 1]; /* constants were added: the array may have moved */
    if (qr == 0) {
      for (size_t i = 0; i < n->n_input; i++)
        dynq__imp_node_in(bn, n->input[i] && n->input[i][0] ? dynq__imp_value_of(c, n->input[i]) : -1);
      while (bn->n_in > 2 && bn->in[bn->n_in - 1] < 0) bn->n_in--;
    } else {
      const char *bname = n->n_input > 2 && n->input[2] && n->input[2][0] ? n->input[2] : NULL;
      bn->op = DYNQ_OP_QCONV_TRANSPOSE;
      dynq__imp_node_in(bn, dynq__imp_value_of(c, n->input[0]));
      dynq__imp_node_in(bn, q.ql.wq);
      dynq__imp_node_in(bn, q.ql.colsum);
      dynq__imp_node_in(bn, q.ql.wscale);
      dynq__imp_node_in(bn, bname ? dynq__imp_value_of(c, bname) : -1);
      dynq__imp_node_in(bn, c->opt.no_reference ? -1 : dynq__imp_value_of(c, n->input[1]));
      while (bn->n_in > 4 && bn->in[bn->n_in - 1] < 0) bn->n_in--;
      dynq__imp_node_attr_i(bn, "out_channels", q.Mg);
      static const char *const ks[] = {"kernel_shape0", "kernel_shape1", "kernel_shape2"};
      for (size_t ax = 0; ax < sr && ax < 3; ax++) dynq__imp_node_attr_i(bn, ks[ax], q.k[ax]);
    }
    static const char *const an[][3] = {
      {"kernel_shape0", "kernel_shape1", "kernel_shape2"}, {"strides0", "strides1", "strides2"},
      {"dilations0", "dilations1", "dilations2"},
      {"output_padding0", "output_padding1", "output_padding2"},
      {"pad_begin0", "pad_begin1", "pad_begin2"}, {"pad_end0", "pad_end1", "pad_end2"},
      {"output_shape0", "output_shape1", "output_shape2"}};
    static const char *const src[] = {"kernel_shape", "strides", "dilations", "output_padding"};
    for (int k = qr; k < 4; k++) { /* QConvTranspose: its kernel_shape is set above */
      const Onnx__AttributeProto *a = dynq__imp_find_attr(n, src[k]);
      for (size_t ax = 0; a != NULL && ax < sr; ax++) dynq__imp_node_attr_i(bn, an[k][ax], a->ints[ax]);
    }
    const Onnx__AttributeProto *a = dynq__imp_find_attr(n, "pads");
    for (size_t ax = 0; a != NULL && ax < sr; ax++) {
      dynq__imp_node_attr_i(bn, an[4][ax], a->ints[ax]);
      dynq__imp_node_attr_i(bn, an[5][ax], a->ints[sr + ax]);
    }
    if ((a = dynq__imp_find_attr(n, "output_shape")) != NULL) /* [N, C,] spatial... */
      for (size_t ax = 0; ax < sr; ax++)
        dynq__imp_node_attr_i(bn, an[6][ax], a->ints[a->n_ints - sr + ax]);
    dynq__imp_node_attr_i(bn, "spatial", (int64_t)sr);
    dynq__imp_node_attr_i(bn, "group", dynq__imp_attr_i(n, "group", 1));
    const char *ap = attr_s(c, n, "auto_pad");
    dynq__imp_node_attr_s(bn, "auto_pad", ap && ap[0] ? ap : "NOTSET");
  } else if (op == DYNQ_OP_COL2IM) {
    static const char *const an[][3] = {{"strides0", "strides1", "strides2"},
                                        {"dilations0", "dilations1", "dilations2"},
                                        {"pad_begin0", "pad_begin1", "pad_begin2"},
                                        {"pad_end0", "pad_end1", "pad_end2"}};
    const size_t sr = col2im_rank(c, n);
    for (size_t i = 0; i < n->n_input; i++) dynq__imp_node_in(bn, dynq__imp_value_of(c, n->input[i]));
    dynq__imp_node_attr_i(bn, "spatial", (int64_t)sr);
    static const char *const src[] = {"strides", "dilations"};
    for (int k = 0; k < 2; k++) {
      const Onnx__AttributeProto *a = dynq__imp_find_attr(n, src[k]);
      for (size_t ax = 0; a != NULL && ax < sr; ax++) dynq__imp_node_attr_i(bn, an[k][ax], a->ints[ax]);
    }
    const Onnx__AttributeProto *p = dynq__imp_find_attr(n, "pads");
    for (size_t ax = 0; p != NULL && ax < sr; ax++) {
      dynq__imp_node_attr_i(bn, an[2][ax], p->ints[ax]);
      dynq__imp_node_attr_i(bn, an[3][ax], p->ints[sr + ax]);
    }
  } else if (op == DYNQ_OP_DEFORM_CONV) {
    /* X, W, offset, then B and mask, either omitted (mask without B) */
    for (size_t i = 0; i < n->n_input; i++)
      dynq__imp_node_in(bn, n->input[i] && n->input[i][0] ? dynq__imp_value_of(c, n->input[i]) : -1);
    while (bn->n_in > 3 && bn->in[bn->n_in - 1] < 0) bn->n_in--;
    static const char *const an[][2] = {{"kernel_shape0", "kernel_shape1"},
                                        {"strides0", "strides1"},
                                        {"dilations0", "dilations1"},
                                        {"pad_begin0", "pad_begin1"},
                                        {"pad_end0", "pad_end1"}};
    static const char *const src[] = {"kernel_shape", "strides", "dilations"};
    for (int k = 0; k < 3; k++) {
      const Onnx__AttributeProto *a = dynq__imp_find_attr(n, src[k]);
      for (size_t ax = 0; a != NULL && ax < 2; ax++) dynq__imp_node_attr_i(bn, an[k][ax], a->ints[ax]);
    }
    const Onnx__AttributeProto *p = dynq__imp_find_attr(n, "pads");
    for (size_t ax = 0; p != NULL && ax < 2; ax++) {
      dynq__imp_node_attr_i(bn, an[3][ax], p->ints[ax]);
      dynq__imp_node_attr_i(bn, an[4][ax], p->ints[2 + ax]);
    }
    dynq__imp_node_attr_i(bn, "spatial", 2);
    dynq__imp_node_attr_i(bn, "group", dynq__imp_attr_i(n, "group", 1));
    dynq__imp_node_attr_i(bn, "offset_group", dynq__imp_attr_i(n, "offset_group", 1));
  } else {
    for (size_t i = 0; i < n->n_input; i++) dynq__imp_node_in(bn, dynq__imp_value_of(c, n->input[i]));
    dynq__imp_node_attr_s(bn, "equation", attr_s(c, n, "equation"));
  }
  int32_t out = dynq__imp_claim_output(c, n->output[0], b->n_nodes - 1);
  if (out < 0) return -1;
  dynq__imp_node_out(b, &b->nodes[b->n_nodes - 1], out);
  return 0;
}
