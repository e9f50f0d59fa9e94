/*
 * Converters for the CNN and transformer ops: pooling (MaxPool,
 * AveragePool, LpPool, GlobalAveragePool, GlobalMaxPool, GlobalLpPool,
 * MaxRoiPool), LayerNormalization, BatchNormalization (folded into the
 * Conv before it when it can be), LpNormalization, GroupNormalization,
 * RMSNormalization, HardSigmoid, HardSwish.
 * The pass-1 check refuses attribute values the engine does not
 * implement, naming the attribute and the value.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"

static const char *attr_s(conv_t *c, const Onnx__NodeProto *n, const char *name,
                          const char *dflt) {
  const Onnx__AttributeProto *a = dynq__imp_find_attr(n, name);
  if (a == NULL || a->s.data == NULL) return dflt;
  return dynq__imp_pool_printf(&c->b.pool, "%.*s", (int)a->s.len, (const char *)a->s.data);
}

static int is_pool(const char *t) {
  return strcmp(t, "MaxPool") == 0 || strcmp(t, "AveragePool") == 0 ||
         strcmp(t, "MaxUnpool") == 0 || strcmp(t, "LpPool") == 0;
}

/* The attributes each op accepts (anything else is refused by name). */
static int attr_known(const char *op, const char *a) {
  static const struct { const char *op, *attrs; } known[] = {
    {"MaxPool", " kernel_shape strides pads dilations auto_pad ceil_mode storage_order "},
    {"AveragePool", " kernel_shape strides pads auto_pad ceil_mode count_include_pad dilations "},
    {"MaxUnpool", " kernel_shape strides pads "},
    {"GlobalAveragePool", " "},
    {"GlobalMaxPool", " "},
    {"LpPool", " kernel_shape strides pads auto_pad p dilations ceil_mode "},
    {"GlobalLpPool", " p "},
    {"LpNormalization", " axis p "},
    {"MaxRoiPool", " pooled_shape spatial_scale "},
    {"LayerNormalization", " axis epsilon stash_type "},
    {"BatchNormalization", " epsilon momentum training_mode spatial is_test consumed_inputs "},
    {"GroupNormalization", " num_groups epsilon stash_type "},
    {"RMSNormalization", " axis epsilon stash_type "},
    {"HardSigmoid", " alpha beta "},
    {"HardSwish", " "},
  };
  char key[80];
  snprintf(key, sizeof key, " %s ", a);
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
    if (strcmp(known[i].op, op) == 0) return strstr(known[i].attrs, key) != NULL;
  return 0;
}

/* The Lp ops' p (default 2): an INT, or at opset 1 (LpPool, GlobalLpPool)
 * a FLOAT, taken when it is a whole number.  NULL, or why not. */
static const char *lp_order(conv_t *c, const Onnx__NodeProto *n, int64_t *ret) {
  dynq__imp_pool_t *pl = &c->b.pool;
  const Onnx__AttributeProto *a = dynq__imp_find_attr(n, "p");
  *ret = 2;
  if (a != NULL && dynq__imp_attr_is_int(a)) {
    *ret = a->i;
  } else if (a != NULL && dynq__imp_attr_is_float(a)) {
    if (!(a->f == floorf(a->f) && fabsf(a->f) <= 1e9f)) /* NaN too */
      return dynq__imp_pool_printf(pl, "p %g is not a whole number (integer orders are "
                                   "supported)", (double)a->f);
    *ret = (int64_t)a->f;
  } else if (a != NULL) {
    return "attribute 'p' has the wrong type";
  }
  if (strcmp(n->op_type, "LpNormalization") == 0) {
    if (*ret != 1 && *ret != 2)
      return dynq__imp_pool_printf(pl, "p %" PRId64 " is not 1 or 2", *ret);
  } else if (*ret < 1 || *ret > DYNQ_LP_MAX_P) {
    return dynq__imp_pool_printf(pl, "p %" PRId64 " is not within [1, %d]", *ret, DYNQ_LP_MAX_P);
  }
  return NULL;
}

/* Whether attribute name of n, when present, is of the given type. */
static int attr_type_ok(const Onnx__NodeProto *n, const char *name, int type) {
  const Onnx__AttributeProto *a = dynq__imp_find_attr(n, name);
  if (a == NULL) return 1;
  switch (type) {
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT: return dynq__imp_attr_is_int(a);
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT: return dynq__imp_attr_is_float(a);
  default: return a->has_type ? a->type == (Onnx__AttributeProto__AttributeType)type : 1;
  }
}

/* MaxRoiPool's pooled_shape and spatial_scale. */
static const char *roipool_check(conv_t *c, const Onnx__NodeProto *n) {
  dynq__imp_pool_t *pl = &c->b.pool;
  const Onnx__AttributeProto *ps = dynq__imp_find_attr(n, "pooled_shape");
  if (ps == NULL) return "attribute 'pooled_shape' is required";
  if (!attr_type_ok(n, "pooled_shape", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS) ||
      !attr_type_ok(n, "spatial_scale", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT))
    return "attribute 'pooled_shape' or 'spatial_scale' has the wrong type";
  if (ps->n_ints != 2)
    return dynq__imp_pool_printf(pl, "pooled_shape has %zu values (2 expected: height, width)",
                                 ps->n_ints);
  for (int k = 0; k < 2; k++)
    if (ps->ints[k] < 1 || ps->ints[k] > DYNQ_ROI_MAX_OUT)
      return dynq__imp_pool_printf(pl, "pooled_shape [%" PRId64 ", %" PRId64 "]: each must "
                                   "be within [1, %d]", ps->ints[0], ps->ints[1],
                                   DYNQ_ROI_MAX_OUT);
  float sc = dynq__imp_attr_f(n, "spatial_scale", 1.0f);
  if (!isfinite(sc)) return dynq__imp_pool_printf(pl, "spatial_scale %g is not finite", (double)sc);
  return NULL;
}

/* GroupNormalization's and RMSNormalization's attributes, and what is
 * known at import of X (its rank, its channels when declared) and of a
 * constant scale or bias: NULL, or why not.  GroupNormalization's scale
 * and bias hold one value per group before opset 21, one per channel
 * from it on (the converter tells the engine which). */
static const char *norms_check(conv_t *c, const Onnx__NodeProto *n) {
  dynq__imp_pool_t *pl = &c->b.pool;
  const int gn = strcmp(n->op_type, "GroupNormalization") == 0;
  static const char *const ints[] = {"num_groups", "stash_type", "axis"};
  for (int k = 0; k < 3; k++)
    if (!attr_type_ok(n, ints[k], ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT))
      return dynq__imp_pool_printf(pl, "attribute '%s' has the wrong type", ints[k]);
  if (!attr_type_ok(n, "epsilon", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT))
    return "attribute 'epsilon' has the wrong type";
  int64_t st = dynq__imp_attr_i(n, "stash_type", 1);
  if (st != 1)
    return dynq__imp_pool_printf(pl, "stash_type %" PRId64 " is not supported (only 1: float)",
                                 st);
  float eps = dynq__imp_attr_f(n, "epsilon", 1e-5f);
  if (!(isfinite(eps) && eps >= 0))
    return dynq__imp_pool_printf(pl, "epsilon %g is not a finite value >= 0", (double)eps);
  int32_t xv = dynq__imp_value_of(c, n->input[0]);
  const dynq__value_t *x = xv >= 0 ? &c->b.values[xv] : NULL;
  int rank = x ? x->rank : -1;
  if (!gn) {
    int64_t axis = dynq__imp_attr_i(n, "axis", -1);
    int64_t r = rank >= 0 ? rank : DYNQ_MAX_RANK;
    if (axis < -r || axis >= r)
      return rank >= 0 ? dynq__imp_pool_printf(pl, "axis %" PRId64 " is outside [-%d, %d) for X "
                                               "of rank %d", axis, rank, rank, rank)
                       : dynq__imp_pool_printf(pl, "axis %" PRId64 " is outside [-%d, %d)",
                                               axis, DYNQ_MAX_RANK, DYNQ_MAX_RANK);
    return NULL;
  }
  if (dynq__imp_find_attr(n, "num_groups") == NULL) return "attribute 'num_groups' is required";
  int64_t G = dynq__imp_attr_i(n, "num_groups", 0);
  if (G < 1) return dynq__imp_pool_printf(pl, "num_groups %" PRId64 " is not positive", G);
  if (rank >= 0 && rank < 2)
    return dynq__imp_pool_printf(pl, "X has rank %d ([N, C, ...] expected)", rank);
  int64_t C = rank >= 2 ? x->dims[1] : -1;
  if (C >= 0 && C % G != 0)
    return dynq__imp_pool_printf(pl, "num_groups %" PRId64 " does not divide X's %" PRId64
                                 " channels", G, C);
  int64_t want = c->opset >= 21 ? C : G;
  for (int k = 1; k < 3 && want >= 0; k++) {
    const dynq__value_t *v = n->n_input > (size_t)k ? dynq__imp_const_of(c, n->input[k]) : NULL;
    if (v != NULL && (v->rank != 1 || v->dims[0] != want))
      return dynq__imp_pool_printf(pl, "%s has %" PRId64 " values: opset %" PRId64 "'s "
                                   "GroupNormalization takes one per %s (%" PRId64 ")",
                                   k == 1 ? "scale" : "bias",
                                   dynq__shape_numel(v->rank, v->dims), c->opset,
                                   c->opset >= 21 ? "channel" : "group", want);
  }
  return NULL;
}

const char *dynq__import_tf_check(conv_t *c, const Onnx__NodeProto *n) {
  dynq__imp_pool_t *pl = &c->b.pool;
  const char *t = n->op_type;
  for (size_t i = 0; i < n->n_attribute; i++) {
    const char *an = n->attribute[i]->name ? n->attribute[i]->name : "";
    if (!attr_known(t, an)) return dynq__imp_pool_printf(pl, "attribute '%s' is not supported", an);
  }
  int64_t lp;
  const char *why;
  if ((strcmp(t, "LpPool") == 0 || strcmp(t, "GlobalLpPool") == 0 ||
       strcmp(t, "LpNormalization") == 0) &&
      (why = lp_order(c, n, &lp)) != NULL)
    return why;
  if (strcmp(t, "LpNormalization") == 0 &&
      !attr_type_ok(n, "axis", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT))
    return "attribute 'axis' has the wrong type";
  if (strcmp(t, "MaxRoiPool") == 0) return roipool_check(c, n);
  if (strcmp(t, "GroupNormalization") == 0 || strcmp(t, "RMSNormalization") == 0)
    return norms_check(c, n);
  if (is_pool(t)) {
    const Onnx__AttributeProto *ks = dynq__imp_find_attr(n, "kernel_shape");
    if (ks == NULL || ks->n_ints < 1 || ks->n_ints > 3)
      return dynq__imp_pool_printf(pl, "kernel_shape has %zu values; 1-D, 2-D and 3-D pooling "
                                   "are supported", ks ? ks->n_ints : (size_t)0);
    size_t sr = ks->n_ints;
    static const char *const per_axis[] = {"strides", "dilations"};
    for (int k = 0; k < 2; k++) {
      const Onnx__AttributeProto *a = dynq__imp_find_attr(n, per_axis[k]);
      if (a && a->n_ints != sr)
        return dynq__imp_pool_printf(pl, "%s has %zu values for %zu spatial axes", per_axis[k],
                                     a->n_ints, sr);
    }
    const Onnx__AttributeProto *pa = dynq__imp_find_attr(n, "pads");
    if (pa && pa->n_ints != 2 * sr)
      return dynq__imp_pool_printf(pl, "pads has %zu values for %zu spatial axes", pa->n_ints, sr);
    const char *ap = attr_s(c, n, "auto_pad", "NOTSET");
    if (strcmp(ap, "NOTSET") && strcmp(ap, "SAME_UPPER") && strcmp(ap, "SAME_LOWER") &&
        strcmp(ap, "VALID") && ap[0])
      return dynq__imp_pool_printf(pl, "auto_pad '%s' is not supported", ap);
    int64_t sto = dynq__imp_attr_i(n, "storage_order", 0);
    if (sto != 0 && sto != 1)
      return dynq__imp_pool_printf(pl, "storage_order %" PRId64 " is not 0 or 1", sto);
    /* dilations: MaxPool's and LpPool's always, AveragePool's since opset 19 */
    const Onnx__AttributeProto *dl = dynq__imp_find_attr(n, "dilations");
    if (dl != NULL && strcmp(t, "AveragePool") == 0 && c->opset < 19)
      return dynq__imp_pool_printf(pl, "AveragePool's dilations came with opset 19 (the model "
                                   "is opset %lld)", (long long)c->opset);
    for (size_t i = 0; dl != NULL && i < dl->n_ints; i++)
      if (dl->ints[i] < 1 || dl->ints[i] > 65536)
        return dynq__imp_pool_printf(pl, "dilation %" PRId64 " on spatial axis %zu is not "
                                     "within [1, 65536]", dl->ints[i], i);
  } else if (strcmp(t, "LayerNormalization") == 0) {
    int64_t st = dynq__imp_attr_i(n, "stash_type", 1);
    if (st != 1)
      return dynq__imp_pool_printf(pl, "stash_type %" PRId64 " is not supported (only 1: float)", st);
  } else if (strcmp(t, "BatchNormalization") == 0) {
    int64_t tm = dynq__imp_attr_i(n, "training_mode", 0), sp = dynq__imp_attr_i(n, "spatial", 1);
    if (tm != 0)
      return dynq__imp_pool_printf(pl, "training_mode %" PRId64 " is not supported (inference only)", tm);
    if (sp != 1)
      return dynq__imp_pool_printf(pl, "spatial %" PRId64 " is not supported (only 1)", sp);
    if (n->n_output > 1) return "the running mean/variance outputs (training) are not supported";
  }
  return NULL;
}

static int oom(void) {
  dynq__imp_errorf("out of memory");
  return -1;
}

/* A float32 [C] constant, or NULL. */
static const float *vec_c(conv_t *c, const char *name, int64_t C) {
  const dynq__value_t *v = dynq__imp_const_of(c, name);
  if (v == NULL || v->dtype != DYNQ_DT_F32 || v->rank != 1 || (C >= 0 && v->dims[0] != C))
    return NULL;
  return v->data;
}

/* A pool-owned float copy of constant value index v, scaled per output
 * channel: dst[o * per + i] = src[o * per + i] * a[o]; new constant. */
static int32_t scaled_const(conv_t *c, int32_t v, const float *a, int64_t M, const char *base,
                            const char *sfx) {
  const dynq__value_t *src = &c->b.values[v];
  int64_t n = (int64_t)(src->nbytes / sizeof(float)), per = n / M;
  int64_t dims[DYNQ_MAX_RANK];
  int rank = src->rank;
  memcpy(dims, src->dims, sizeof(dims));
  float *d = dynq__imp_pool_alloc(&c->b.pool, (size_t)n * sizeof(float));
  if (d == NULL) return -1;
  const float *s = src->data; /* read before add_const may move values */
  for (int64_t o = 0; o < M; o++)
    for (int64_t i = 0; i < per; i++) d[o * per + i] = s[o * per + i] * a[o];
  return dynq__imp_add_const(&c->b, base, sfx, DYNQ_DT_F32, rank, dims, d,
                             (size_t)n * sizeof(float));
}

/* BatchNormalization right after a Conv (FP32 or quantized) that only it
 * reads, with constant parameters: y = conv(x) * a + b per channel with
 * a = scale / sqrt(var + eps), b = B - mean * a.  Folded into the Conv:
 * the weights (or, once quantized, the per-channel weight scales: the
 * int8 values of W * a are W's, up to sign) and the FP32 reference are
 * scaled by a, the bias becomes bias * a + b.  The Conv then produces the
 * BatchNormalization's output.  Returns 1 folded, 0 not applicable, -1
 * error. */
static int fold_bn(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  int32_t x = dynq__imp_value_of(c, n->input[0]);
  if (x < 0 || x >= c->n_uses || c->uses[x] != 1 || b->producer[x] < 0) return 0;
  int32_t pi = b->producer[x];
  dynq__bnode_t *cv = &b->nodes[pi];
  if (cv->dead || (cv->op != DYNQ_OP_CONV && cv->op != DYNQ_OP_QCONV) || cv->n_out != 1 ||
      cv->out[0] != x)
    return 0;
  int q = cv->op == DYNQ_OP_QCONV;
  /* output channels: QConv's scale vector, Conv's W dims[0] */
  int32_t wv = q ? cv->in[3] : cv->in[1];
  if (wv < 0 || b->values[wv].data == NULL || b->values[wv].dtype != DYNQ_DT_F32) return 0;
  int64_t M = b->values[wv].dims[0];
  const float *sc = vec_c(c, n->input[1], M), *bb = vec_c(c, n->input[2], M),
              *mu = vec_c(c, n->input[3], M), *va = vec_c(c, n->input[4], M);
  int bias_slot = q ? 4 : 2;
  int32_t bv = cv->n_in > bias_slot ? cv->in[bias_slot] : -1;
  if (!sc || !bb || !mu || !va) return 0;
  if (bv >= 0 && (b->values[bv].data == NULL || b->values[bv].dtype != DYNQ_DT_F32)) return 0;
  float eps = dynq__imp_attr_f(n, "epsilon", 1e-5f);
  float *a = dynq__imp_pool_alloc(&b->pool, (size_t)M * sizeof(float));
  float *nb = dynq__imp_pool_alloc(&b->pool, (size_t)M * sizeof(float));
  if (a == NULL || nb == NULL) return oom();
  const float *ob = bv >= 0 ? b->values[bv].data : NULL;
  for (int64_t o = 0; o < M; o++) {
    a[o] = sc[o] / sqrtf(va[o] + eps);
    nb[o] = (ob ? ob[o] : 0.0f) * a[o] + (bb[o] - mu[o] * a[o]);
  }
  int32_t ref = q && cv->n_in > 5 ? cv->in[5] : -1;
  int32_t nw = scaled_const(c, wv, a, M, nname, q ? ".wscale" : ".W");
  int32_t nr = ref >= 0 ? scaled_const(c, ref, a, M, nname, ".Wref") : -1;
  int64_t bd[1] = {M};
  int32_t nbv = dynq__imp_add_const(b, nname, ".B", DYNQ_DT_F32, 1, bd, nb,
                                    (size_t)M * sizeof(float));
  if (nw < 0 || nbv < 0 || (ref >= 0 && nr < 0)) return oom();
  cv = &b->nodes[pi]; /* add_const does not move nodes, but stay safe */
  cv->in[q ? 3 : 1] = nw;
  while (cv->n_in <= bias_slot) cv->in[cv->n_in++] = -1;
  cv->in[bias_slot] = nbv;
  if (ref >= 0) cv->in[5] = nr;
  int32_t y = dynq__imp_claim_output(c, n->output[0], pi);
  if (y < 0) return -1;
  b->producer[x] = -1;
  cv->out[0] = y;
  for (int l = 0; l < c->n_layers; l++)
    if (c->layers[l].name && cv->name && strcmp(c->layers[l].name, cv->name) == 0)
      c->layers[l].why = c->layers[l].why ? dynq__imp_pool_printf(&b->pool, "%s; BatchNormalization '%s' folded in", c->layers[l].why, nname)
                                          : dynq__imp_pool_printf(&b->pool, "BatchNormalization '%s' folded in", nname);
  return 1;
}

int dynq__import_tf(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  const char *t = n->op_type;
  int op = dynq__op_from_name(t);
  if (strcmp(t, "BatchNormalization") == 0) {
    int r = fold_bn(c, n, nname);
    if (r != 0) return r < 0 ? -1 : 0;
  }
  int64_t ks[3] = {1, 1, 1}, st[3] = {1, 1, 1}, dl[3] = {1, 1, 1}, pads[6] = {0};
  size_t sr = 0;
  if (is_pool(t)) {
    const Onnx__AttributeProto *a = dynq__imp_find_attr(n, "kernel_shape");
    sr = a->n_ints;
    for (size_t i = 0; i < sr; i++) ks[i] = a->ints[i];
    if ((a = dynq__imp_find_attr(n, "strides")))
      for (size_t i = 0; i < sr; i++) st[i] = a->ints[i];
    if ((a = dynq__imp_find_attr(n, "dilations")))
      for (size_t i = 0; i < sr; i++) dl[i] = a->ints[i];
    if ((a = dynq__imp_find_attr(n, "pads")))
      for (size_t i = 0; i < 2 * sr; i++) pads[i] = a->ints[i];
  }
  const char *ap = is_pool(t) ? attr_s(c, n, "auto_pad", "NOTSET") : NULL;
  dynq__bnode_t *bn = dynq__imp_add_node(b, op, nname);
  if (bn == NULL) return oom();
  for (size_t i = 0; i < n->n_input; i++)
    dynq__imp_node_in(bn, n->input[i] && n->input[i][0] ? dynq__imp_value_of(c, n->input[i]) : -1);
  if (is_pool(t)) {
    static const char *const an[][3] = {
        {"kernel_shape0", "kernel_shape1", "kernel_shape2"}, {"strides0", "strides1", "strides2"},
        {"dilations0", "dilations1", "dilations2"}, {"pad_begin0", "pad_begin1", "pad_begin2"},
        {"pad_end0", "pad_end1", "pad_end2"}};
    for (size_t a = 0; a < sr; a++) {
      dynq__imp_node_attr_i(bn, an[0][a], ks[a]);
      dynq__imp_node_attr_i(bn, an[1][a], st[a]);
      dynq__imp_node_attr_i(bn, an[2][a], dl[a]);
      dynq__imp_node_attr_i(bn, an[3][a], pads[a]);
      dynq__imp_node_attr_i(bn, an[4][a], pads[sr + a]);
    }
    dynq__imp_node_attr_i(bn, "spatial", (int64_t)sr);
    dynq__imp_node_attr_s(bn, "auto_pad", ap[0] ? ap : "NOTSET");
    dynq__imp_node_attr_i(bn, "ceil_mode", dynq__imp_attr_i(n, "ceil_mode", 0));
    dynq__imp_node_attr_i(bn, "count_include_pad", dynq__imp_attr_i(n, "count_include_pad", 0));
    if (op == DYNQ_OP_MAXPOOL && dynq__imp_attr_i(n, "storage_order", 0) != 0)
      dynq__imp_node_attr_i(bn, "storage_order", dynq__imp_attr_i(n, "storage_order", 0));
  }
  if (op == DYNQ_OP_LP_POOL || op == DYNQ_OP_GLOBAL_LP_POOL || op == DYNQ_OP_LP_NORM) {
    int64_t lp;
    lp_order(c, n, &lp); /* checked in pass 1 */
    dynq__imp_node_attr_i(bn, "p", lp);
    if (op == DYNQ_OP_LP_NORM) dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", -1));
  } else if (op == DYNQ_OP_MAX_ROI_POOL) {
    const Onnx__AttributeProto *ps = dynq__imp_find_attr(n, "pooled_shape");
    dynq__imp_node_attr_i(bn, "pooled_h", ps->ints[0]);
    dynq__imp_node_attr_i(bn, "pooled_w", ps->ints[1]);
    dynq__imp_node_attr_f(bn, "spatial_scale", dynq__imp_attr_f(n, "spatial_scale", 1.0f));
  } else if (op == DYNQ_OP_LAYERNORM) {
    dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", -1));
    dynq__imp_node_attr_f(bn, "epsilon", dynq__imp_attr_f(n, "epsilon", 1e-5f));
  } else if (op == DYNQ_OP_BATCHNORM) {
    dynq__imp_node_attr_f(bn, "epsilon", dynq__imp_attr_f(n, "epsilon", 1e-5f));
  } else if (op == DYNQ_OP_GROUP_NORM) {
    dynq__imp_node_attr_i(bn, "num_groups", dynq__imp_attr_i(n, "num_groups", 0));
    dynq__imp_node_attr_f(bn, "epsilon", dynq__imp_attr_f(n, "epsilon", 1e-5f));
    /* opset 21 changed scale and bias from one per group to one per channel */
    dynq__imp_node_attr_i(bn, "per_channel", c->opset >= 21);
  } else if (op == DYNQ_OP_RMS_NORM) {
    dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", -1));
    dynq__imp_node_attr_f(bn, "epsilon", dynq__imp_attr_f(n, "epsilon", 1e-5f));
  } else if (op == DYNQ_OP_HARD_SIGMOID) {
    dynq__imp_node_attr_f(bn, "alpha", dynq__imp_attr_f(n, "alpha", 0.2f));
    dynq__imp_node_attr_f(bn, "beta", dynq__imp_attr_f(n, "beta", 0.5f));
  }
  /* LayerNormalization's optional Mean and InvStdDev, MaxPool's Indices
   * (an empty name: not wanted; trailing ones are left off) */
  size_t n_out = n->n_output;
  while (n_out > 1 && !(n->output[n_out - 1] && n->output[n_out - 1][0])) n_out--;
  for (size_t o = 0; o < n_out; o++) {
    int32_t out = -1;
    if (n->output[o] && n->output[o][0] &&
        (out = dynq__imp_claim_output(c, n->output[o], b->n_nodes - 1)) < 0)
      return -1;
    dynq__imp_node_out(b, &b->nodes[b->n_nodes - 1], out);
  }
  return 0;
}

/* Embedding tables at least this large (values) are stored int8. */
#define QGATHER_MIN_VALUES 1024

/* Gather on axis 0 of a constant float32 [V, D] table with computed
 * indices: an embedding lookup, stored as int8 rows with a per-row scale
 * (QGather, lib/ops/embed.c), the FP32 table kept as the reference unless
 * --no-reference.  Anything else is the plain Gather. */
int dynq__import_gather(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  const dynq__value_t *T = dynq__imp_const_of(c, n->input[0]);
  int64_t axis = dynq__imp_attr_i(n, "axis", 0);
  if (c->opt.fp32 || dynq__imp_op_excluded(c, "Gather") != NULL || T == NULL || T->dtype != DYNQ_DT_F32 || T->rank != 2 ||
      (axis != 0 && axis != -2) || dynq__imp_const_of(c, n->input[1]) != NULL ||
      T->dims[0] * T->dims[1] < QGATHER_MIN_VALUES)
    return dynq__import_graph_op(c, n, nname);
  int64_t V = T->dims[0], D = T->dims[1];
  int8_t *q = dynq__imp_pool_alloc(&b->pool, (size_t)(V * D));
  float *s = dynq__imp_pool_alloc(&b->pool, (size_t)V * sizeof(float));
  if (q == NULL || s == NULL) return oom();
  const float *t = T->data; /* read before add_const may move the values */
  for (int64_t v = 0; v < V; v++) {
    float mx = 0.0f;
    for (int64_t k = 0; k < D; k++) mx = fabsf(t[v * D + k]) > mx ? fabsf(t[v * D + k]) : mx;
    s[v] = dynq__imp_wscale(mx);
    for (int64_t k = 0; k < D; k++) q[v * D + k] = dynq__imp_q8(t[v * D + k] / s[v]);
  }
  int64_t qd[2] = {V, D}, sd[1] = {V};
  int32_t vq = dynq__imp_add_const(b, nname, ".q", DYNQ_DT_I8, 2, qd, q, (size_t)(V * D));
  int32_t vs = dynq__imp_add_const(b, nname, ".scale", DYNQ_DT_F32, 1, sd, s,
                                   (size_t)V * sizeof(float));
  if (vq < 0 || vs < 0) return oom();
  dynq__layer_report_t *L = dynq__imp_add_layer(c, nname, "Gather");
  if (L == NULL) return oom();
  L->k = V;
  L->n = D;
  L->quantized = 1;
  L->why = "embedding table: int8 rows, one scale per row";
  L->fp32_bytes = (size_t)(V * D) * sizeof(float);
  L->stored_bytes = (size_t)(V * D) + (size_t)V * sizeof(float);
  if (!c->opt.no_reference) L->ref_bytes = L->fp32_bytes;
  dynq__bnode_t *bn = dynq__imp_add_node(b, DYNQ_OP_QGATHER, nname);
  if (bn == NULL) return oom();
  dynq__imp_node_in(bn, dynq__imp_value_of(c, n->input[1]));
  dynq__imp_node_in(bn, vq);
  dynq__imp_node_in(bn, vs);
  if (!c->opt.no_reference) dynq__imp_node_in(bn, dynq__imp_value_of(c, n->input[0]));
  int32_t out = dynq__imp_claim_output(c, n->output[0], b->n_nodes - 1);
  if (out < 0) return -1;
  dynq__imp_node_out(b, &b->nodes[b->n_nodes - 1], out);
  return 0;
}
