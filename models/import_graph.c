/*
 * Importer for the shape and graph ops exporters emit (Shape, Gather,
 * Slice, Concat, Cast, Where, reductions, Pad, ...), If, Constant in all
 * its forms, --set for fixing graph inputs, and import-time constant
 * folding.
 *
 * Attributes the engine takes as inputs (axes, perm, pads, starts/ends
 * before opset 10, ...) become constant inputs by the rows of
 * import_rules.c, so the engine has one run function per op whatever the
 * opset (lib/ops/).  ONNX bool is carried as uint8.
 *
 * If: with a constant condition (folded, or fixed with --set) only the
 * taken branch is inlined.  Otherwise IF(cond) -> flag is followed by the
 * then-branch nodes and the else-branch nodes, and one PHI(flag, then_v,
 * else_v) per output; the executor skips the branch not taken.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "import.h"
#include "ops.h"

/* ---- Constant ---- */

int dynq__imp_constant_node(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  const char *on = n->output[0];
  const Onnx__AttributeProto *a = NULL;
  if (n->n_attribute != 1 || (a = n->attribute[0]) == NULL || a->name == NULL) {
    dynq__imp_errorf("node '%s' (op Constant): needs exactly one value attribute", nname);
    return -1;
  }
  if (strcmp(a->name, "value") == 0 && a->t != NULL)
    return dynq__imp_import_tensor(b, a->t, on, "Constant node") < 0 ? -1 : 0;
  int64_t one = 1, cnt;
  dynq_dtype_t dt;
  const void *src;
  int rank;
  if (strcmp(a->name, "value_float") == 0) {
    dt = DYNQ_DT_F32, src = &a->f, cnt = 1, rank = 0;
  } else if (strcmp(a->name, "value_int") == 0) {
    dt = DYNQ_DT_I64, src = &a->i, cnt = 1, rank = 0;
  } else if (strcmp(a->name, "value_floats") == 0) {
    dt = DYNQ_DT_F32, src = a->floats, cnt = (int64_t)a->n_floats, rank = 1;
  } else if (strcmp(a->name, "value_ints") == 0) {
    dt = DYNQ_DT_I64, src = a->ints, cnt = (int64_t)a->n_ints, rank = 1;
  } else {
    dynq__imp_errorf("node '%s' (op Constant): attribute '%s' is not supported (string and "
                     "sparse constants)", nname, a->name);
    return -1;
  }
  if (cnt > DYNQ_MAX_ELEMS) {
    dynq__imp_errorf("node '%s' (op Constant): too many values", nname);
    return -1;
  }
  size_t nb = (size_t)cnt * dynq__dtype_size(dt);
  void *d = dynq__imp_pool_alloc(&b->pool, nb);
  if (d == NULL) {
    dynq__imp_errorf("out of memory");
    return -1;
  }
  if (nb) memcpy(d, src, nb);
  int64_t dims[1] = {rank ? cnt : one};
  int32_t v = dynq__imp_add_value(b, on, dt, rank, dims);
  if (v < 0) {
    dynq__imp_errorf("out of memory");
    return -1;
  }
  b->values[v].data = d;
  b->values[v].nbytes = nb;
  return 0;
}

/* ---- --set NAME=VALUE ---- */

int32_t dynq__imp_set_input(conv_t *c, const Onnx__ValueInfoProto *vi) {
  dynq__builder_t *b = &c->b;
  const char *val = NULL;
  for (int i = 0; i < c->opt.n_set; i++)
    if (strcmp(c->opt.set_name[i], vi->name) == 0) val = c->opt.set_value[i];
  if (val == NULL) return -2;
  dynq_dtype_t dt;
  int rank;
  int64_t dims[DYNQ_MAX_RANK];
  if (dynq__imp_import_value_info(b, vi, "input", &dt, &rank, dims) != 0) return -1;
  if (dt != DYNQ_DT_F32 && dt != DYNQ_DT_I64 && dt != DYNQ_DT_I32) {
    dynq__imp_errorf("--set %s: the input is %s; only float32, int32 and int64 inputs can be "
                     "fixed", vi->name, dynq__dtype_name(dt));
    return -1;
  }
  /* A comma-separated list: a scalar when one value and the input is not
   * declared 1-D, else a 1-D tensor. */
  int64_t cnt = 1;
  for (const char *p = val; *p; p++) cnt += *p == ',';
  if (cnt > 4096) {
    dynq__imp_errorf("--set %s: more than 4096 values", vi->name);
    return -1;
  }
  size_t es = dynq__dtype_size(dt);
  char *d = dynq__imp_pool_alloc(&b->pool, (size_t)cnt * es);
  if (d == NULL) {
    dynq__imp_errorf("out of memory");
    return -1;
  }
  const char *p = val;
  for (int64_t i = 0; i < cnt; i++) {
    char *end = NULL;
    errno = 0;
    if (dt == DYNQ_DT_F32) {
      float f = strtof(p, &end);
      memcpy(d + (size_t)i * es, &f, es);
    } else {
      long long x = strtoll(p, &end, 0);
      if (dt == DYNQ_DT_I32 && (x < INT32_MIN || x > INT32_MAX)) errno = ERANGE;
      if (dt == DYNQ_DT_I32) {
        int32_t y = (int32_t)x;
        memcpy(d + (size_t)i * es, &y, es);
      } else {
        int64_t y = x;
        memcpy(d + (size_t)i * es, &y, es);
      }
    }
    if (end == p || errno != 0 || (*end != ',' && *end != 0)) {
      dynq__imp_errorf("--set %s=%s: '%s' is not a valid %s value", vi->name, val, p,
                       dynq__dtype_name(dt));
      return -1;
    }
    p = *end ? end + 1 : end;
  }
  int r = (cnt == 1 && rank != 1) ? 0 : 1;
  if (rank >= 0 && rank != r && !(rank == 1 && cnt == 1)) {
    dynq__imp_errorf("--set %s: the input is declared with rank %d; give %s", vi->name, rank,
                     rank == 0 ? "one value" : "a comma-separated list (1-D inputs only)");
    return -1;
  }
  if (r == 1 && rank == 1 && dims[0] >= 0 && dims[0] != cnt) {
    dynq__imp_errorf("--set %s: the input is declared with %" PRId64 " values, %" PRId64
                     " given", vi->name, dims[0], cnt);
    return -1;
  }
  int64_t d1[1] = {cnt};
  int32_t v = dynq__imp_add_value(b, vi->name, dt, r, d1);
  if (v < 0) {
    dynq__imp_errorf("out of memory");
    return -1;
  }
  b->values[v].data = d;
  b->values[v].nbytes = (size_t)cnt * es;
  return v;
}

/* ---- --const ---- */

static int shape_str(char *buf, size_t n, int rank, const int64_t *dims) {
  int len = snprintf(buf, n, "[");
  for (int i = 0; i < rank && (size_t)len < n; i++) {
    if (dims[i] < 0) len += snprintf(buf + len, n - (size_t)len, "%s?", i ? "," : "");
    else len += snprintf(buf + len, n - (size_t)len, "%s%" PRId64, i ? "," : "", dims[i]);
  }
  if ((size_t)len < n) snprintf(buf + len, n - (size_t)len, "]");
  return 0;
}

int32_t dynq__imp_const_input(conv_t *c, const Onnx__ValueInfoProto *vi) {
  dynq__builder_t *b = &c->b;
  const char *file = NULL;
  for (int i = 0; i < c->opt.n_const; i++)
    if (strcmp(c->opt.const_name[i], vi->name) == 0) file = c->opt.const_file[i];
  if (file == NULL) return -2;
  for (int i = 0; i < c->opt.n_set; i++)
    if (strcmp(c->opt.set_name[i], vi->name) == 0) {
      dynq__imp_errorf("--const %s and --set %s: give the input one value", vi->name, vi->name);
      return -1;
    }
  uint8_t *buf = NULL;
  size_t len = 0;
  Onnx__TensorProto *t = NULL;
  int32_t v = -1;
  dynq_dtype_t dt;
  int rank;
  int64_t dims[DYNQ_MAX_RANK];
  if (dynq__imp_import_value_info(b, vi, "input", &dt, &rank, dims) != 0) goto fail;
  if (dynq__imp_read_file(file, &buf, &len) != 0) {
    dynq__imp_errorf("--const %s=%s: cannot read the tensor file", vi->name, file);
    goto fail;
  }
  t = onnx__tensor_proto__unpack(NULL, len, buf);
  if (t == NULL) {
    dynq__imp_errorf("--const %s=%s: not a serialized ONNX TensorProto (protobuf decoding "
                     "failed: truncated or another message)", vi->name, file);
    goto fail;
  }
  /* Protobuf decodes many byte strings as some message: a TensorProto we
   * accept must at least say what it holds. */
  if (!t->has_data_type || t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__UNDEFINED) {
    dynq__imp_errorf("--const %s=%s: the TensorProto has no data type (not a tensor file?)",
                     vi->name, file);
    goto fail;
  }
  dynq_dtype_t tdt = dynq__imp_dtype_from_onnx(t->data_type);
  if (tdt == DYNQ_DT_INVALID || tdt != dt || (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL) !=
      (vi->type->tensor_type->elem_type == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL)) {
    dynq__imp_errorf("--const %s=%s: the file holds %s, the input is declared %s", vi->name, file,
                     dynq__imp_onnx_dtype_name(t->data_type),
                     dynq__imp_onnx_dtype_name(vi->type->tensor_type->elem_type));
    goto fail;
  }
  int same = rank < 0 || (size_t)rank == t->n_dims;
  for (int i = 0; same && rank > 0 && i < rank; i++) same = dims[i] < 0 || dims[i] == t->dims[i];
  if (!same) {
    char a[160], d[160];
    int64_t td[DYNQ_MAX_RANK];
    int tr = t->n_dims > DYNQ_MAX_RANK ? DYNQ_MAX_RANK : (int)t->n_dims;
    for (int i = 0; i < tr; i++) td[i] = t->dims[i];
    shape_str(a, sizeof(a), tr, td);
    shape_str(d, sizeof(d), rank, dims);
    dynq__imp_errorf("--const %s=%s: the file holds shape %s%s, the input is declared %s",
                     vi->name, file, a, t->n_dims > DYNQ_MAX_RANK ? "..." : "", d);
    goto fail;
  }
  const char *what = dynq__imp_pool_printf(&b->pool, "--const %s: tensor", file);
  if (what == NULL) {
    dynq__imp_errorf("out of memory");
    goto fail;
  }
  /* import_tensor copies the data into the pool and keeps vi->name, which
   * the model (alive for the whole conversion) owns. */
  v = dynq__imp_import_tensor(b, t, vi->name, what);
fail:
  if (t != NULL) onnx__tensor_proto__free_unpacked(t, NULL);
  free(buf);
  return v;
}

/* ---- constant folding ---- */

static int is_quantized_op(int op) {
  return op == DYNQ_OP_QLINEAR || op == DYNQ_OP_QLSTM || op == DYNQ_OP_QGRU ||
         op == DYNQ_OP_QRNN || op == DYNQ_OP_QCONV || op == DYNQ_OP_QGATHER ||
         op == DYNQ_OP_QCONV_TRANSPOSE;
}

int dynq__imp_fold(conv_t *c, int first) {
  dynq__builder_t *b = &c->b;
  for (int i = first; i < b->n_nodes; i++) {
    dynq__bnode_t *bn = &b->nodes[i];
    /* Quantized ops stay: folding would freeze one precision's result.
     * IF/PHI are folded by the If converter itself; a loop runs in the
     * executor. */
    if (bn->dead || is_quantized_op(bn->op) || bn->op == DYNQ_OP_IF || bn->op == DYNQ_OP_PHI ||
        bn->op == DYNQ_OP_LOOP || bn->op == DYNQ_OP_LOOP_END)
      continue;
    const dynq__opdef_t *def = dynq__opdef(bn->op);
    if (def == NULL) continue;
    int all_const = 1;
    for (int k = 0; k < bn->n_in; k++)
      if (bn->in[k] >= 0 && b->values[bn->in[k]].data == NULL) all_const = 0;
    /* A required input left out never reaches the op (which would read a
     * NULL tensor): the graph validator reports the node instead. */
    for (int k = 0; k < bn->n_in && k < def->min_in; k++)
      if (bn->in[k] < 0) all_const = 0;
    if (!all_const) continue;
    dynq__tensor_t tin[DYNQ_IMP_MAX_IN], tout[DYNQ_IMP_MAX_OUT];
    const dynq__tensor_t *pin[64] = {0};
    memset(tout, 0, sizeof(tout));
    for (int k = 0; k < bn->n_in; k++) {
      if (bn->in[k] < 0) continue;
      const dynq__value_t *v = &b->values[bn->in[k]];
      memset(&tin[k], 0, sizeof(tin[k]));
      tin[k].dtype = v->dtype;
      tin[k].rank = v->rank;
      memcpy(tin[k].dims, v->dims, sizeof(tin[k].dims));
      tin[k].data = (void *)v->data;
      pin[k] = &tin[k];
    }
    dynq__node_t node = {.op = bn->op, .name = bn->name, .n_in = bn->n_in, .n_out = bn->n_out,
                         .in = bn->in, .out = bn->out, .n_attr = bn->n_attr, .attr = bn->attr};
    char err[512] = "";
    dynq__op_ctx_t ctx = {.node = &node, .kernel = NULL, .precision = DYNQ_PRECISION_FP32,
                          .err = err, .errlen = sizeof(err), .max_bytes = DYNQ_IMP_FOLD_MAX_BYTES};
    int rc = dynq__op_run1(NULL, &ctx, pin, tout);
    if (rc != 0) {
      for (int k = 0; k < bn->n_out; k++) dynq__tensor_clear(&tout[k]);
      /* Inside an If branch the node may never run (branch not taken):
       * leave it to run time. */
      if (c->branch_depth > 0) continue;
      dynq__imp_errorf("%s (while folding constants at import)", err);
      return -1;
    }
    for (int k = 0; k < bn->n_out; k++) {
      size_t nb = dynq__tensor_nbytes(&tout[k]);
      void *d = dynq__imp_pool_alloc(&b->pool, nb);
      if (d == NULL) {
        for (int j = 0; j < bn->n_out; j++) dynq__tensor_clear(&tout[j]);
        dynq__imp_errorf("out of memory");
        return -1;
      }
      if (nb) memcpy(d, tout[k].data, nb);
      dynq__value_t *ov = &b->values[bn->out[k]];
      ov->dtype = tout[k].dtype;
      ov->rank = tout[k].rank;
      memcpy(ov->dims, tout[k].dims, sizeof(ov->dims));
      ov->data = d;
      ov->nbytes = nb;
      b->producer[bn->out[k]] = -1;
      dynq__tensor_clear(&tout[k]);
    }
    bn->dead = 1;
  }
  return 0;
}

/* ---- shape and graph ops ---- */

static int oom(void) {
  dynq__imp_errorf("out of memory");
  return -1;
}

/* ONNX TensorProto dtype code -> dynq dtype for Cast; -1 if unsupported. */
static int cast_target(int64_t to, int *ret_bool) {
  *ret_bool = 0;
  switch (to) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return DYNQ_DT_F32;
  /* rounded to half precision, carried as float32 (the node's "half") */
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: return DYNQ_DT_F32;
  /* rounded to bfloat16, carried as float32 (the node's "bf16") */
  case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: return DYNQ_DT_F32;
  /* float64 is computed in float32 (its constants are narrowed at import) */
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return DYNQ_DT_F32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return DYNQ_DT_U8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return DYNQ_DT_I8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return DYNQ_DT_I32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return DYNQ_DT_I64;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: *ret_bool = 1; return DYNQ_DT_U8;
  default: return -1;
  }
}

/* Why ONNX dtype t cannot be a Cast target ("<what> FLOAT8E4M3FN is not
 * supported ..."), pool-owned; NULL when it can. */
static const char *dtype_why(dynq__imp_pool_t *pl, const char *what, int64_t t) {
  int b;
  if (cast_target(t, &b) >= 0) return NULL;
  const char *why = dynq__imp_pool_printf(pl, "%s %s is not supported (float32, float16, "
                                          "bfloat16, float64, int8, uint8, int32, int64 and "
                                          "bool are)",
                                          what, dynq__imp_onnx_dtype_name((int32_t)t));
  return why != NULL ? why : "out of memory";
}

/* The ONNX dtype code of value `name` where the model declares it: a
 * graph input, output or value_info, an initializer, a Constant node's
 * output; 0 when it does not (the importer infers no types). */
static int32_t declared_type(const conv_t *c, const char *name) {
  const Onnx__GraphProto *g = c->g;
  if (g == NULL || name == NULL) return 0;
  const Onnx__ValueInfoProto *const *vis[3] = {(const Onnx__ValueInfoProto *const *)g->input,
                                               (const Onnx__ValueInfoProto *const *)g->output,
                                               (const Onnx__ValueInfoProto *const *)g->value_info};
  const size_t nvis[3] = {g->n_input, g->n_output, g->n_value_info};
  for (int k = 0; k < 3; k++)
    for (size_t i = 0; i < nvis[k]; i++) {
      const Onnx__ValueInfoProto *vi = vis[k][i];
      if (vi->name && strcmp(vi->name, name) == 0 && vi->type && vi->type->tensor_type &&
          vi->type->tensor_type->has_elem_type)
        return vi->type->tensor_type->elem_type;
    }
  for (size_t i = 0; i < g->n_initializer; i++)
    if (g->initializer[i]->name && strcmp(g->initializer[i]->name, name) == 0)
      return g->initializer[i]->data_type;
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *nd = g->node[i];
    if (nd->op_type == NULL || strcmp(nd->op_type, "Constant") != 0 || nd->n_output < 1 ||
        nd->output[0] == NULL || strcmp(nd->output[0], name) != 0 || nd->n_attribute != 1)
      continue;
    const Onnx__AttributeProto *a = nd->attribute[0];
    if (a->t != NULL) return a->t->data_type;
    if (a->name && strncmp(a->name, "value_float", 11) == 0) return ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    if (a->name && strncmp(a->name, "value_int", 9) == 0) return ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
  }
  return 0;
}

/* A string attribute of n copied into buf (cut to fit); NULL if absent. */
static const char *attr_str(const Onnx__NodeProto *n, const char *name, char *buf, size_t len) {
  const Onnx__AttributeProto *a = dynq__imp_find_attr(n, name);
  if (a == NULL || !a->has_s) return NULL;
  size_t l = a->s.len < len - 1 ? a->s.len : len - 1;
  memcpy(buf, a->s.data, l);
  buf[l] = 0;
  return buf;
}

/* Dropout at inference is its input: an Identity, and its mask output
 * all true in the input's shape (Shape -> ConstantOfShape).  A
 * training_mode that is not a constant false is refused. */
int dynq__import_dropout(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  /* training_mode: checked in pass 1 (dynq__import_graph_check) */
  dynq__builder_t *b = &c->b;
  int32_t x = dynq__imp_value_of(c, n->input[0]);
  dynq__bnode_t *bn = dynq__imp_add_node(b, DYNQ_OP_IDENTITY, nname);
  if (bn == NULL) return oom();
  dynq__imp_node_in(bn, x);
  int32_t out = dynq__imp_claim_output(c, n->output[0], b->n_nodes - 1);
  if (out < 0) return -1;
  dynq__imp_node_out(b, &b->nodes[b->n_nodes - 1], out);
  if (n->n_output < 2 || n->output[1] == NULL || n->output[1][0] == 0) return 0;
  /* the mask keeps everything: true (bool as uint8 1) in x's shape */
  uint8_t *one = dynq__imp_pool_alloc(&b->pool, 1);
  if (one == NULL) return oom();
  *one = 1;
  int64_t d1 = 1;
  int32_t ov = dynq__imp_add_const(b, nname, ".true", DYNQ_DT_U8, 1, &d1, one, 1);
  int32_t sv = dynq__imp_add_temp(b, nname, ".shape", DYNQ_DT_I64);
  if (ov < 0 || sv < 0) return oom();
  if ((bn = dynq__imp_add_node(b, DYNQ_OP_SHAPE, nname)) == NULL) return oom();
  dynq__imp_node_in(bn, x);
  dynq__imp_node_out(b, bn, sv);
  int32_t mv = dynq__imp_claim_output(c, n->output[1], b->n_nodes);
  if (mv < 0) return -1;
  if ((bn = dynq__imp_add_node(b, DYNQ_OP_CONSTANT_OF_SHAPE, nname)) == NULL) return oom();
  dynq__imp_node_in(bn, sv);
  dynq__imp_node_in(bn, ov);
  dynq__imp_node_out(b, bn, mv);
  return 0;
}

/* Scatter's reduction names as the engine's codes; -1 when unknown. */
static int scatter_reduction(const char *r) {
  static const char *const names[] = {"none", "add", "mul", "max", "min"};
  for (int i = 0; i < 5; i++)
    if (strcmp(r, names[i]) == 0) return i;
  return -1;
}

/* The ops with ONNX's output_datatype (the windows, MelWeightMatrix). */
static int spectral_dtype_attr(const char *type) {
  return strcmp(type, "HannWindow") == 0 || strcmp(type, "HammingWindow") == 0 ||
         strcmp(type, "BlackmanWindow") == 0 || strcmp(type, "MelWeightMatrix") == 0;
}

/* Their output_datatype (an ONNX dtype code) as the engine's dtype; -1
 * when the engine has none for it.  float64 is computed in float32, as
 * everywhere in the importer. */
static int spectral_dtype(int64_t t) {
  switch (t) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return DYNQ_DT_F32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return DYNQ_DT_U8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return DYNQ_DT_I8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return DYNQ_DT_I32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return DYNQ_DT_I64;
  default: return -1;
  }
}

/* Pass 1: attribute values of the generic ops the engine does not
 * implement, refused by value (NULL: fine). */
/* GridSample's mode and padding_mode (NULL: the default) as the engine's
 * codes (lib/ops/sample.c); -1 when unknown.  Opset 20 renamed bilinear
 * and bicubic to linear and cubic: both spellings are taken at any opset. */
static int gridsample_mode(const char *m) {
  if (m == NULL || strcmp(m, "bilinear") == 0 || strcmp(m, "linear") == 0) return 0;
  if (strcmp(m, "nearest") == 0) return 1;
  if (strcmp(m, "bicubic") == 0 || strcmp(m, "cubic") == 0) return 2;
  return -1;
}
static int gridsample_padding(const char *p) {
  if (p == NULL || strcmp(p, "zeros") == 0) return 0;
  if (strcmp(p, "border") == 0) return 1;
  if (strcmp(p, "reflection") == 0) return 2;
  return -1;
}

/* DFT's axis: opset 17's attribute (default 1), or from opset 20 on a
 * third input (default -2, the last signal axis), which must be a constant
 * int scalar: the engine takes it as its attribute.  NULL when fine, else
 * why not. */
static const char *dft_axis(conv_t *c, const Onnx__NodeProto *n, int64_t *ret) {
  dynq__imp_pool_t *pl = &c->b.pool;
  const int has_in = n->n_input > 2 && n->input[2] != NULL && n->input[2][0] != 0;
  if (c->opset < 20) {
    if (n->n_input > 2)
      return dynq__imp_pool_printf(pl, "takes 1 to 2 inputs at opset %lld (axis is an input "
                                   "from opset 20 on), has %zu", (long long)c->opset,
                                   n->n_input);
    *ret = dynq__imp_attr_i(n, "axis", 1);
    return NULL;
  }
  if (dynq__imp_find_attr(n, "axis") != NULL)
    return "axis is an input from opset 20 on, not an attribute";
  *ret = -2;
  if (!has_in) return NULL;
  const dynq__value_t *t = dynq__imp_const_of(c, n->input[2]);
  if (t == NULL || (t->dtype != DYNQ_DT_I64 && t->dtype != DYNQ_DT_I32) || t->rank > 1 ||
      dynq__shape_numel(t->rank, t->dims) != 1)
    return dynq__imp_pool_printf(pl, "the axis input '%s' must be a constant int scalar",
                                 n->input[2]);
  *ret = dynq__load_i(t->data, t->dtype, 0);
  if (*ret < -DYNQ_MAX_RANK || *ret >= DYNQ_MAX_RANK)
    return dynq__imp_pool_printf(pl, "axis %lld is out of range", (long long)*ret);
  return NULL;
}

/* The rank a graph input or value_info declares for name; -1 when none. */
static int declared_rank(const conv_t *c, const char *name) {
  const Onnx__GraphProto *g = c->g;
  if (g == NULL || name == NULL) return -1;
  const Onnx__ValueInfoProto *const *vis[2] = {(const Onnx__ValueInfoProto *const *)g->input,
                                               (const Onnx__ValueInfoProto *const *)g->value_info};
  const size_t nvis[2] = {g->n_input, g->n_value_info};
  for (int k = 0; k < 2; k++)
    for (size_t i = 0; i < nvis[k]; i++) {
      const Onnx__ValueInfoProto *vi = vis[k][i];
      if (vi->name && strcmp(vi->name, name) == 0 && vi->type && vi->type->tensor_type &&
          vi->type->tensor_type->shape)
        return (int)vi->type->tensor_type->shape->n_dim;
    }
  return -1;
}

static int has_input(const Onnx__NodeProto *n, size_t k) {
  return n->n_input > k && n->input[k] != NULL && n->input[k][0] != 0;
}

/* Attention (opset 23, 24): what the engine's check would refuse at load,
 * and what only the ONNX graph tells (opset, declared ranks and dtypes). */
static const char *attention23_check(conv_t *c, const Onnx__NodeProto *n) {
  dynq__imp_pool_t *pl = &c->b.pool;
  if (c->opset < 23)
    return dynq__imp_pool_printf(pl, "Attention came with opset 23 (the model is opset %lld)",
                                 (long long)c->opset);
  if (has_input(n, 6))
    return "nonpad_kv_seqlen (opset 24's input 6) is not supported; give the padding as "
           "attn_mask";
  if (has_input(n, 4) != has_input(n, 5))
    return "past_key and past_value go together (one is missing)";
  int64_t md = dynq__imp_attr_i(n, "qk_matmul_output_mode", 0),
          qh = dynq__imp_attr_i(n, "q_num_heads", 0), kh = dynq__imp_attr_i(n, "kv_num_heads", 0),
          sp = dynq__imp_attr_i(n, "softmax_precision", 1);
  if (md < 0 || md > 3)
    return dynq__imp_pool_printf(pl, "qk_matmul_output_mode %lld is not within [0, 3]",
                                 (long long)md);
  if (qh < 0 || qh > 65536 || kh < 0 || kh > 65536)
    return dynq__imp_pool_printf(pl, "q_num_heads %lld and kv_num_heads %lld must be within "
                                 "[0, 65536]", (long long)qh, (long long)kh);
  if (kh > 0 && qh % kh != 0)
    return dynq__imp_pool_printf(pl, "q_num_heads %lld is not a multiple of kv_num_heads %lld",
                                 (long long)qh, (long long)kh);
  if (declared_rank(c, n->input[0]) == 3 && (qh == 0 || kh == 0))
    return "3-D Q needs q_num_heads and kv_num_heads";
  const Onnx__AttributeProto *a = dynq__imp_find_attr(n, "scale");
  if (a != NULL && !(isfinite(a->f) && a->f > 0.0f))
    return dynq__imp_pool_printf(pl, "scale %g is not a positive finite number", (double)a->f);
  a = dynq__imp_find_attr(n, "softcap");
  if (a != NULL && !(isfinite(a->f) && a->f >= 0.0f))
    return dynq__imp_pool_printf(pl, "softcap %g is not a finite number >= 0", (double)a->f);
  /* the softmax runs in double whatever is asked: at least as precise */
  if (sp != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && sp != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16 &&
      sp != ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16 && sp != ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE)
    return dynq__imp_pool_printf(pl, "softmax_precision %lld is not a float type (1, 10, 11, 16)",
                                 (long long)sp);
  if (has_input(n, 3)) {
    int32_t t = declared_type(c, n->input[3]);
    if (t != 0 && t != ONNX__TENSOR_PROTO__DATA_TYPE__BOOL &&
        t != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && t != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16 &&
        t != ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16 && t != ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE)
      return dynq__imp_pool_printf(pl, "attn_mask of dtype %s: bool or float masks are supported",
                                   dynq__imp_onnx_dtype_name(t));
  }
  return NULL;
}

const char *dynq__import_graph_check(conv_t *c, const Onnx__NodeProto *n) {
  dynq__imp_pool_t *pl = &c->b.pool;
  const char *type = n->op_type ? n->op_type : "";
  if (strcmp(type, "ScatterElements") == 0 || strcmp(type, "ScatterND") == 0) {
    char rb[32];
    const char *r = attr_str(n, "reduction", rb, sizeof rb);
    if (r != NULL && scatter_reduction(r) < 0)
      return dynq__imp_pool_printf(pl, "reduction '%s' is not supported (none, add, mul, max, "
                                   "min are)", r);
  }
  static const struct { const char *op, *attr; } flags01[] = {
    {"Mod", "fmod"}, {"TopK", "largest"}, {"TopK", "sorted"}, {"Trilu", "upper"},
    {"AffineGrid", "align_corners"}, {"RotaryEmbedding", "interleaved"},
    {"Attention", "is_causal"},
  };
  for (size_t i = 0; i < sizeof flags01 / sizeof flags01[0]; i++) {
    int64_t v = dynq__imp_attr_i(n, flags01[i].attr, 0);
    if (strcmp(flags01[i].op, type) == 0 && v != 0 && v != 1)
      return dynq__imp_pool_printf(pl, "%s = %lld is not supported (0 or 1)", flags01[i].attr,
                                   (long long)v);
  }
  if (strcmp(type, "QuantizeLinear") == 0 || strcmp(type, "DequantizeLinear") == 0) {
    int64_t bs = dynq__imp_attr_i(n, "block_size", 0), od = dynq__imp_attr_i(n, "output_dtype", 0);
    if (bs != 0)
      return dynq__imp_pool_printf(pl, "block_size = %lld (blocked quantization) is not "
                                   "supported (scales per tensor or per axis are)", (long long)bs);
    if (od != 0 && od != ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 &&
        od != ONNX__TENSOR_PROTO__DATA_TYPE__INT8)
      return dynq__imp_pool_printf(pl, "output_dtype %s is not supported (uint8 and int8 are)",
                                   dynq__imp_onnx_dtype_name((int32_t)od));
    if (od != 0 && (n->n_input < 3 || n->input[2] == NULL || n->input[2][0] == 0))
      return "output_dtype without a zero point is not supported (give y_zero_point instead)";
  }
  if (strcmp(type, "DepthToSpace") == 0 || strcmp(type, "SpaceToDepth") == 0) {
    int64_t bs = dynq__imp_attr_i(n, "blocksize", 0);
    if (dynq__imp_find_attr(n, "blocksize") == NULL) return "the blocksize attribute is required";
    if (bs < 1 || bs > DYNQ_MAX_ELEMS)
      return dynq__imp_pool_printf(pl, "blocksize %lld is not within [1, %lld]", (long long)bs,
                                   (long long)DYNQ_MAX_ELEMS);
    char mb[8];
    const char *m = attr_str(n, "mode", mb, sizeof mb);
    if (m != NULL && strcmp(m, "DCR") != 0 && strcmp(m, "CRD") != 0)
      return dynq__imp_pool_printf(pl, "mode '%s' is not supported (DCR, CRD are)", m);
  }
  if (strcmp(type, "Attention") == 0) {
    const char *why = attention23_check(c, n);
    if (why != NULL) return why;
  }
  if (strcmp(type, "RotaryEmbedding") == 0) {
    int64_t nh = dynq__imp_attr_i(n, "num_heads", 0),
            rd = dynq__imp_attr_i(n, "rotary_embedding_dim", 0);
    if (nh < 0 || nh > 65536)
      return dynq__imp_pool_printf(pl, "num_heads %lld is not within [0, 65536]", (long long)nh);
    if (rd < 0 || rd > 65536 || rd % 2 != 0)
      return dynq__imp_pool_printf(pl, "rotary_embedding_dim %lld is not an even number within "
                                   "[0, 65536]", (long long)rd);
  }
  if (strcmp(type, "DFT") == 0) {
    int64_t ax;
    const char *why = dft_axis(c, n, &ax);
    if (why != NULL) return why;
  }
  if (spectral_dtype_attr(type) && dynq__imp_find_attr(n, "output_datatype") != NULL) {
    int64_t t = dynq__imp_attr_i(n, "output_datatype", 0);
    if (spectral_dtype(t) < 0)
      return dynq__imp_pool_printf(pl, "output_datatype %s is not supported (float, double, "
                                   "int8, uint8, int32 and int64 are)",
                                   dynq__imp_onnx_dtype_name((int32_t)t));
  }
  /* the transform lengths and the frame step when constant: the engine's
   * load check would refuse them too, as an invalid converted graph */
  static const struct { const char *op, *what; size_t in; int64_t lo, hi; } spectral_len[] = {
    {"DFT", "dft_length", 1, 1, DYNQ_FFT_MAX_LEN}, {"STFT", "frame_step", 1, 1, INT64_MAX},
    {"STFT", "frame_length", 3, 1, DYNQ_FFT_MAX_LEN},
  };
  for (size_t i = 0; i < sizeof spectral_len / sizeof spectral_len[0]; i++) {
    const size_t k = spectral_len[i].in;
    if (strcmp(spectral_len[i].op, type) != 0 || k >= n->n_input || n->input[k] == NULL ||
        n->input[k][0] == 0)
      continue;
    const dynq__value_t *t = dynq__imp_const_of(c, n->input[k]);
    if (t == NULL || (t->dtype != DYNQ_DT_I64 && t->dtype != DYNQ_DT_I32) || t->rank > 1 ||
        dynq__shape_numel(t->rank, t->dims) != 1)
      continue; /* the engine checks it per run */
    int64_t v = dynq__load_i(t->data, t->dtype, 0);
    if (v < spectral_len[i].lo || v > spectral_len[i].hi)
      return spectral_len[i].hi == INT64_MAX
                 ? dynq__imp_pool_printf(pl, "%s %lld must be at least 1", spectral_len[i].what,
                                         (long long)v)
                 : dynq__imp_pool_printf(pl, "%s %lld is not within [1, %lld]",
                                         spectral_len[i].what, (long long)v,
                                         (long long)DYNQ_FFT_MAX_LEN);
  }
  static const struct { const char *op, *attr; } spectral01[] = {
    {"DFT", "inverse"}, {"DFT", "onesided"}, {"STFT", "onesided"}, {"HannWindow", "periodic"},
    {"HammingWindow", "periodic"}, {"BlackmanWindow", "periodic"},
  };
  for (size_t i = 0; i < sizeof spectral01 / sizeof spectral01[0]; i++) {
    int64_t v = dynq__imp_attr_i(n, spectral01[i].attr, 0);
    if (strcmp(spectral01[i].op, type) == 0 && v != 0 && v != 1)
      return dynq__imp_pool_printf(pl, "%s = %lld is not supported (0 or 1)", spectral01[i].attr,
                                   (long long)v);
  }
  if (strcmp(type, "CastLike") == 0) {
    /* becomes a Cast to the dtype the model declares for `like` */
    int32_t t = declared_type(c, n->input[1]);
    const char *why;
    if (t == 0)
      return dynq__imp_pool_printf(pl, "the model does not declare the dtype of 'like' ('%s'): "
                                   "CastLike needs it as a graph input, initializer, Constant "
                                   "or value_info", n->input[1]);
    if ((why = dtype_why(pl, "cast to", t)) != NULL) return why;
    if (dynq__imp_attr_i(n, "saturate", 1) != 1)
      return "saturate = 0 only matters for float8 targets, which are not supported";
  }
  if (strcmp(type, "EyeLike") == 0 && dynq__imp_find_attr(n, "dtype") != NULL) {
    const char *why = dtype_why(pl, "dtype", dynq__imp_attr_i(n, "dtype", 0));
    if (why != NULL) return why;
  }
  if (strncmp(type, "Bitwise", 7) == 0) {
    /* integers only: a declared float (or a type dynq does not carry) is refused here */
    for (size_t i = 0; i < n->n_input; i++) {
      int32_t t = declared_type(c, n->input[i]);
      if (t != 0 && t != ONNX__TENSOR_PROTO__DATA_TYPE__INT8 &&
          t != ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 && t != ONNX__TENSOR_PROTO__DATA_TYPE__INT32 &&
          t != ONNX__TENSOR_PROTO__DATA_TYPE__INT64)
        return dynq__imp_pool_printf(pl, "input '%s' is %s (int8, uint8, int32 and int64 are "
                                     "supported)", n->input[i], dynq__imp_onnx_dtype_name(t));
    }
  }
  if (strcmp(type, "CenterCropPad") == 0) {
    const Onnx__AttributeProto *ax = dynq__imp_find_attr(n, "axes");
    size_t na = ax ? ax->n_ints : 0;
    if (ax != NULL && (na < 1 || na > DYNQ_MAX_RANK))
      return dynq__imp_pool_printf(pl, "axes has %zu values (1 to %d are supported)", na,
                                   DYNQ_MAX_RANK);
    for (size_t i = 0; i < na; i++) {
      if (ax->ints[i] < -DYNQ_MAX_RANK || ax->ints[i] >= DYNQ_MAX_RANK)
        return dynq__imp_pool_printf(pl, "axes[%zu] = %lld is not within [-%d, %d)", i,
                                     (long long)ax->ints[i], DYNQ_MAX_RANK, DYNQ_MAX_RANK);
      for (size_t j = 0; j < i; j++)
        if (ax->ints[j] == ax->ints[i])
          return dynq__imp_pool_printf(pl, "axes lists %lld twice", (long long)ax->ints[i]);
    }
    /* a constant shape: checked here rather than at every run */
    const dynq__value_t *sv = n->n_input > 1 ? dynq__imp_const_of(c, n->input[1]) : NULL;
    if (sv != NULL && sv->dtype == DYNQ_DT_I64 && sv->rank == 1) {
      const int64_t *v = sv->data;
      if (ax != NULL && sv->dims[0] != (int64_t)na)
        return dynq__imp_pool_printf(pl, "shape has %lld values for %zu axes",
                                     (long long)sv->dims[0], na);
      for (int64_t i = 0; i < sv->dims[0]; i++)
        if (v[i] < 0 || v[i] > DYNQ_MAX_ELEMS)
          return dynq__imp_pool_printf(pl, "shape[%lld] = %lld is not within [0, %lld]",
                                       (long long)i, (long long)v[i], (long long)DYNQ_MAX_ELEMS);
    }
  }
  if (strcmp(type, "Pad") == 0) {
    char mb[32];
    const char *m = attr_str(n, "mode", mb, sizeof mb);
    if (m != NULL && strcmp(m, "wrap") == 0 && c->opset < 19)
      return dynq__imp_pool_printf(pl, "mode 'wrap' came with opset 19 (the model is opset "
                                   "%lld)", (long long)c->opset);
    if (m != NULL && strcmp(m, "constant") != 0 && strcmp(m, "reflect") != 0 &&
        strcmp(m, "edge") != 0 && strcmp(m, "wrap") != 0)
      return dynq__imp_pool_printf(pl, "mode '%s' is not supported (constant, reflect, edge, "
                                   "wrap are)", m);
  }
  if (strcmp(type, "GridSample") == 0) {
    char mb[32], pb[32];  /* longer than any name taken: a cut value never matches */
    const char *m = attr_str(n, "mode", mb, sizeof mb);
    const char *p = attr_str(n, "padding_mode", pb, sizeof pb);
    if (gridsample_mode(m) < 0)
      return dynq__imp_pool_printf(pl, "mode '%s' is not supported (bilinear or linear, "
                                   "nearest, bicubic or cubic are)", m);
    if (gridsample_padding(p) < 0)
      return dynq__imp_pool_printf(pl, "padding_mode '%s' is not supported (zeros, border, "
                                   "reflection are)", p);
  }
  if (strcmp(type, "RoiAlign") == 0) {
    char mb[32], tb[32];
    const char *m = attr_str(n, "mode", mb, sizeof mb);
    const char *t = attr_str(n, "coordinate_transformation_mode", tb, sizeof tb);
    if (m != NULL && strcmp(m, "avg") != 0 && strcmp(m, "max") != 0)
      return dynq__imp_pool_printf(pl, "mode '%s' is not supported (avg, max are)", m);
    if (t != NULL && strcmp(t, "half_pixel") != 0 && strcmp(t, "output_half_pixel") != 0)
      return dynq__imp_pool_printf(pl, "coordinate_transformation_mode '%s' is not supported "
                                   "(half_pixel, output_half_pixel are)", t);
    /* the engine's bounds (lib/ops/sample.c), refused here naming the attribute */
    int64_t sr = dynq__imp_attr_i(n, "sampling_ratio", 0);
    int64_t oh = dynq__imp_attr_i(n, "output_height", 1), ow = dynq__imp_attr_i(n, "output_width", 1);
    if (sr < 0 || sr > DYNQ_ROI_MAX_RATIO)
      return dynq__imp_pool_printf(pl, "sampling_ratio %lld is not within [0, %d]",
                                   (long long)sr, DYNQ_ROI_MAX_RATIO);
    if (oh < 1 || ow < 1 || oh > DYNQ_ROI_MAX_OUT || ow > DYNQ_ROI_MAX_OUT)
      return dynq__imp_pool_printf(pl, "output_height %lld and output_width %lld: each within "
                                   "[1, %d]", (long long)oh, (long long)ow, DYNQ_ROI_MAX_OUT);
  }
  if (strcmp(type, "Gelu") == 0) {
    char ab[16];
    const char *a = attr_str(n, "approximate", ab, sizeof ab);
    if (a != NULL && strcmp(a, "none") != 0 && strcmp(a, "tanh") != 0)
      return dynq__imp_pool_printf(pl, "approximate '%s' is not supported (none, tanh are)", a);
  }
  if (strcmp(type, "LRN") == 0) {
    int64_t size = dynq__imp_attr_i(n, "size", 0);
    if (dynq__imp_find_attr(n, "size") == NULL) return "the size attribute is required";
    if (size < 1) return dynq__imp_pool_printf(pl, "size %lld must be at least 1", (long long)size);
  }
  if (strcmp(type, "GatherND") == 0) {
    int64_t bd = dynq__imp_attr_i(n, "batch_dims", 0);
    if (bd < 0 || bd >= DYNQ_MAX_RANK)
      return dynq__imp_pool_printf(pl, "batch_dims %lld is not within [0, %d)", (long long)bd,
                                   DYNQ_MAX_RANK);
  }
  if (strcmp(type, "BitShift") == 0) {
    char db[8];
    const char *d = attr_str(n, "direction", db, sizeof db);
    if (d == NULL) return "the direction attribute is required";
    if (strcmp(d, "LEFT") != 0 && strcmp(d, "RIGHT") != 0)
      return dynq__imp_pool_printf(pl, "direction '%s' is not supported (LEFT, RIGHT are)", d);
  }
  if (strcmp(type, "NonMaxSuppression") == 0) {
    int64_t cb = dynq__imp_attr_i(n, "center_point_box", 0);
    if (cb != 0 && cb != 1)
      return dynq__imp_pool_printf(pl, "center_point_box %lld is not supported (0 or 1)",
                                   (long long)cb);
  }
  if (strcmp(type, "ReverseSequence") == 0) {
    int64_t ba = dynq__imp_attr_i(n, "batch_axis", 1), ta = dynq__imp_attr_i(n, "time_axis", 0);
    if (!((ba == 0 && ta == 1) || (ba == 1 && ta == 0)))
      return dynq__imp_pool_printf(pl, "batch_axis %lld and time_axis %lld: one must be 0, the "
                                   "other 1", (long long)ba, (long long)ta);
  }
  if (strcmp(type, "Celu") == 0 && dynq__imp_attr_f(n, "alpha", 1.0f) == 0.0f)
    return "alpha = 0 is not supported (Celu divides by it)";
  if (strcmp(type, "Dropout") == 0 && n->n_input > 2 && n->input[2] != NULL && n->input[2][0]) {
    /* training mode with ratio 0 drops nothing (torchvision's Swin calls
     * F.dropout(p=0.0) without training=False) */
    const dynq__value_t *t = dynq__imp_const_of(c, n->input[2]), *r = NULL;
    if (n->input[1] != NULL && n->input[1][0]) r = dynq__imp_const_of(c, n->input[1]);
    int ratio0 = r != NULL && r->dtype == DYNQ_DT_F32 &&
                 dynq__shape_numel(r->rank, r->dims) == 1 && ((const float *)r->data)[0] == 0.0f;
    if (!ratio0 && (t == NULL || t->dtype != DYNQ_DT_U8 ||
                    dynq__shape_numel(t->rank, t->dims) != 1 || ((const uint8_t *)t->data)[0] != 0))
      return "training_mode must be a constant false, or the ratio a constant 0 (the engine "
             "runs inference)";
  }
  return NULL;
}

/* The node's int and float attributes as they are, for the ops whose
 * engine attributes are ONNX's, with ONNX's defaults (the op table has
 * limited them to those the op knows). */
static void copy_scalar_attrs(dynq__bnode_t *bn, const Onnx__NodeProto *n) {
  for (size_t i = 0; i < n->n_attribute; i++) {
    const Onnx__AttributeProto *a = n->attribute[i];
    if (dynq__imp_attr_is_int(a)) dynq__imp_node_attr_i(bn, a->name, a->i);
    else if (dynq__imp_attr_is_float(a)) dynq__imp_node_attr_f(bn, a->name, a->f);
  }
}

int dynq__import_graph_op(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  const char *type = n->op_type;
  const int castlike = strcmp(type, "CastLike") == 0; /* a Cast of input 0 */
  /* Scatter (opsets 9-10) is ScatterElements with the same inputs and axis */
  int op = castlike ? DYNQ_OP_CAST
           : strcmp(type, "Scatter") == 0 ? DYNQ_OP_SCATTER_ELEMENTS
           /* not the fused form's row (98), which has the same name */
           : strcmp(type, "Attention") == 0 ? DYNQ_OP_ATTENTION23
                                          : dynq__op_from_name(type);
  int32_t ins[DYNQ_IMP_MAX_IN];
  int n_ins = 0;
  if (op == DYNQ_OP_INVALID) {
    dynq__imp_errorf("node '%s' (op %s): internal error: no engine op", nname, type);
    return -1;
  }
  /* attributes that become inputs (import_rules.c), added before the
   * node: add_const may not run while we hold a node pointer */
  if (dynq__imp_rule_inputs(c, n, nname, ins, &n_ins) != 0) return -1;
  if (castlike) n_ins = 1;

  int to = 0, to_bool = 0, mode = 0;
  /* Cast's target, EyeLike's dtype when given: an ONNX dtype code */
  const char *dt_attr = op == DYNQ_OP_CAST ? "to" : op == DYNQ_OP_EYE_LIKE ? "dtype" : NULL;
  if (dt_attr != NULL && (op == DYNQ_OP_CAST || dynq__imp_find_attr(n, dt_attr) != NULL)) {
    int64_t t = castlike ? declared_type(c, n->input[1]) : dynq__imp_attr_i(n, dt_attr, 0);
    to = cast_target(t, &to_bool);
    if (to < 0) {
      dynq__imp_errorf("node '%s' (op %s): %s", nname, type,
                       dtype_why(&b->pool, op == DYNQ_OP_CAST ? "cast to" : "dtype", t));
      return -1;
    }
  }
  if (op == DYNQ_OP_PAD) {
    const Onnx__AttributeProto *a = dynq__imp_find_attr(n, "mode");
    if (a != NULL && a->has_s) {
      char m[16] = "";
      size_t l = a->s.len < sizeof(m) - 1 ? a->s.len : sizeof(m) - 1;
      memcpy(m, a->s.data, l);
      if (strcmp(m, "constant") == 0) mode = 0;
      else if (strcmp(m, "reflect") == 0) mode = 1;
      else if (strcmp(m, "edge") == 0) mode = 2;
      else if (strcmp(m, "wrap") == 0 && c->opset >= 19) mode = 3;
      else if (strcmp(m, "wrap") == 0) {
        dynq__imp_errorf("node '%s' (op Pad): mode 'wrap' came with opset 19 (the model is "
                         "opset %lld)", nname, (long long)c->opset);
        return -1;
      } else {
        dynq__imp_errorf("node '%s' (op Pad): mode '%s' is not supported (constant, reflect, "
                         "edge, wrap are)", nname, m);
        return -1;
      }
    }
  }

  int reduction = 0;
  if (op == DYNQ_OP_SCATTER_ELEMENTS || op == DYNQ_OP_SCATTER_ND) {
    char rb[32];
    const char *r = attr_str(n, "reduction", rb, sizeof rb);
    reduction = r != NULL ? scatter_reduction(r) : 0; /* unknown ones refused in pass 1 */
  }

  dynq__bnode_t *bn = dynq__imp_add_node(b, op, nname);
  if (bn == NULL) return oom();
  for (int i = 0; i < n_ins; i++) dynq__imp_node_in(bn, ins[i]);
  /* trailing omitted inputs are dropped (the engine reads them as absent) */
  while (bn->n_in > 1 && bn->in[bn->n_in - 1] < 0) bn->n_in--;
  switch (op) {
  case DYNQ_OP_SHAPE: {
    const Onnx__AttributeProto *s = dynq__imp_find_attr(n, "start"), *e = dynq__imp_find_attr(n, "end");
    if (s) dynq__imp_node_attr_i(bn, "start", s->i);
    if (e) dynq__imp_node_attr_i(bn, "end", e->i);
    break;
  }
  case DYNQ_OP_GATHER: dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", 0)); break;
  case DYNQ_OP_CONCAT: dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", 0)); break;
  case DYNQ_OP_CAST:
    dynq__imp_node_attr_i(bn, "to", to);
    dynq__imp_node_attr_i(bn, "to_bool", to_bool);
    {
      int64_t t = castlike ? declared_type(c, n->input[1]) : dynq__imp_attr_i(n, "to", 0);
      if (t == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16) dynq__imp_node_attr_i(bn, "half", 1);
      if (t == ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16) dynq__imp_node_attr_i(bn, "bf16", 1);
    }
    break;
  case DYNQ_OP_REDUCE_MEAN:
  case DYNQ_OP_REDUCE_SUM:
  case DYNQ_OP_REDUCE_MAX:
  case DYNQ_OP_REDUCE_MIN:
  case DYNQ_OP_REDUCE_PROD:
  case DYNQ_OP_REDUCE_L1:
  case DYNQ_OP_REDUCE_L2:
  case DYNQ_OP_REDUCE_SUM_SQUARE:
  case DYNQ_OP_REDUCE_LOG_SUM:
  case DYNQ_OP_REDUCE_LOG_SUM_EXP:
    dynq__imp_node_attr_i(bn, "keepdims", dynq__imp_attr_i(n, "keepdims", 1));
    dynq__imp_node_attr_i(bn, "noop_with_empty_axes", dynq__imp_attr_i(n, "noop_with_empty_axes", 0));
    break;
  case DYNQ_OP_PAD: dynq__imp_node_attr_i(bn, "mode", mode); break;
  case DYNQ_OP_CENTER_CROP_PAD: {
    const Onnx__AttributeProto *ax = dynq__imp_find_attr(n, "axes");
    static const char *const an[DYNQ_MAX_RANK] = {"axis0", "axis1", "axis2", "axis3",
                                                  "axis4", "axis5", "axis6", "axis7"};
    if (ax != NULL) { /* checked in pass 1: 1 to DYNQ_MAX_RANK values */
      dynq__imp_node_attr_i(bn, "n_axes", (int64_t)ax->n_ints);
      for (size_t i = 0; i < ax->n_ints; i++) dynq__imp_node_attr_i(bn, an[i], ax->ints[i]);
    }
    break;
  }
  case DYNQ_OP_MOD: dynq__imp_node_attr_i(bn, "fmod", dynq__imp_attr_i(n, "fmod", 0)); break;
  case DYNQ_OP_TOPK:
    dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", -1));
    dynq__imp_node_attr_i(bn, "largest", dynq__imp_attr_i(n, "largest", 1));
    dynq__imp_node_attr_i(bn, "sorted", dynq__imp_attr_i(n, "sorted", 1));
    break;
  case DYNQ_OP_GELU: {
    char ab[16];
    const char *a = attr_str(n, "approximate", ab, sizeof ab);
    if (a != NULL && strcmp(a, "tanh") == 0) dynq__imp_node_attr_i(bn, "tanh", 1);
    break;
  }
  case DYNQ_OP_EYE_LIKE:
    dynq__imp_node_attr_i(bn, "k", dynq__imp_attr_i(n, "k", 0));
    if (to) dynq__imp_node_attr_i(bn, "dtype", to);
    break;
  case DYNQ_OP_GATHER_ELEMENTS:
    dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", 0));
    break;
  case DYNQ_OP_SCATTER_ELEMENTS:
    dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", 0));
    dynq__imp_node_attr_i(bn, "reduction", reduction);
    break;
  case DYNQ_OP_SCATTER_ND: dynq__imp_node_attr_i(bn, "reduction", reduction); break;
  case DYNQ_OP_QUANTIZE_LINEAR:
  case DYNQ_OP_DEQUANTIZE_LINEAR:
    dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", 1));
    break;
  case DYNQ_OP_TRILU: dynq__imp_node_attr_i(bn, "upper", dynq__imp_attr_i(n, "upper", 1)); break;
  case DYNQ_OP_INSTANCE_NORM:
    dynq__imp_node_attr_f(bn, "epsilon", dynq__imp_attr_f(n, "epsilon", 1e-5f));
    break;
  case DYNQ_OP_LEAKY_RELU:
  case DYNQ_OP_ELU:
  case DYNQ_OP_SELU:
  case DYNQ_OP_CELU:
  case DYNQ_OP_THRESHOLDED_RELU:
    /* only the attributes given: the engine's defaults are ONNX's */
    if (dynq__imp_find_attr(n, "alpha"))
      dynq__imp_node_attr_f(bn, "alpha", dynq__imp_find_attr(n, "alpha")->f);
    if (dynq__imp_find_attr(n, "gamma"))
      dynq__imp_node_attr_f(bn, "gamma", dynq__imp_find_attr(n, "gamma")->f);
    break;
  case DYNQ_OP_ARGMAX:
  case DYNQ_OP_ARGMIN:
    dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", 0));
    dynq__imp_node_attr_i(bn, "keepdims", dynq__imp_attr_i(n, "keepdims", 1));
    dynq__imp_node_attr_i(bn, "select_last_index", dynq__imp_attr_i(n, "select_last_index", 0));
    break;
  case DYNQ_OP_CUMSUM:
    dynq__imp_node_attr_i(bn, "exclusive", dynq__imp_attr_i(n, "exclusive", 0));
    dynq__imp_node_attr_i(bn, "reverse", dynq__imp_attr_i(n, "reverse", 0));
    break;
  case DYNQ_OP_HANN_WINDOW:
  case DYNQ_OP_HAMMING_WINDOW:
  case DYNQ_OP_BLACKMAN_WINDOW:
  case DYNQ_OP_MEL_WEIGHT_MATRIX:
    if (op != DYNQ_OP_MEL_WEIGHT_MATRIX)
      dynq__imp_node_attr_i(bn, "periodic", dynq__imp_attr_i(n, "periodic", 1));
    dynq__imp_node_attr_i(bn, "dtype",
                          spectral_dtype(dynq__imp_attr_i(n, "output_datatype",
                                                          ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)));
    break;
  case DYNQ_OP_DFT:
  case DYNQ_OP_STFT:
    /* a spectrum: the first layer reading it stays FP32 (the signal
     * front-end rule, models/README.md) */
    c->front_out = 1;
    copy_scalar_attrs(bn, n);
    if (op == DYNQ_OP_DFT) {  /* opset 20's axis input is the engine's attribute */
      int64_t ax;
      if (dft_axis(c, n, &ax) != NULL) return -1; /* pass 1 refused it */
      dynq__imp_node_attr_i(bn, "axis", ax);
      if (bn->n_in > 2) bn->n_in = 2;
      while (bn->n_in > 1 && bn->in[bn->n_in - 1] < 0) bn->n_in--;
    }
    break;
  case DYNQ_OP_LRN:
  case DYNQ_OP_AFFINE_GRID:
  case DYNQ_OP_ROTARY:
  case DYNQ_OP_ATTENTION23:
  case DYNQ_OP_GATHER_ND:
  case DYNQ_OP_SHRINK:
  case DYNQ_OP_IS_INF:
  case DYNQ_OP_ONE_HOT:
  case DYNQ_OP_NON_MAX_SUPPRESSION:
  case DYNQ_OP_UNIQUE:
  case DYNQ_OP_COMPRESS:
  case DYNQ_OP_REVERSE_SEQUENCE:
    copy_scalar_attrs(bn, n);
    break;
  case DYNQ_OP_BIT_SHIFT: {
    char db[8];
    const char *d = attr_str(n, "direction", db, sizeof db);
    dynq__imp_node_attr_i(bn, "direction", d != NULL && strcmp(d, "LEFT") == 0 ? 1 : 2);
    break;
  }
  case DYNQ_OP_GRID_SAMPLE: {
    char mb[32], pb[32];
    dynq__imp_node_attr_i(bn, "mode", gridsample_mode(attr_str(n, "mode", mb, sizeof mb)));
    dynq__imp_node_attr_i(bn, "padding",
                          gridsample_padding(attr_str(n, "padding_mode", pb, sizeof pb)));
    dynq__imp_node_attr_i(bn, "align_corners", dynq__imp_attr_i(n, "align_corners", 0));
    break;
  }
  case DYNQ_OP_ROI_ALIGN: {
    char mb[32], tb[32];
    const char *m = attr_str(n, "mode", mb, sizeof mb);
    const char *t = attr_str(n, "coordinate_transformation_mode", tb, sizeof tb);
    copy_scalar_attrs(bn, n);  /* output_height, output_width, sampling_ratio, spatial_scale */
    dynq__imp_node_attr_i(bn, "mode", m != NULL && strcmp(m, "max") == 0);
    /* opset 10 has no such attribute and samples as output_half_pixel */
    dynq__imp_node_attr_i(bn, "half_pixel", t != NULL ? strcmp(t, "half_pixel") == 0
                                                      : c->opset >= 16);
    break;
  }
  case DYNQ_OP_DEPTH_TO_SPACE:
  case DYNQ_OP_SPACE_TO_DEPTH: {
    char mb[8];
    const char *m = attr_str(n, "mode", mb, sizeof mb);
    dynq__imp_node_attr_i(bn, "blocksize", dynq__imp_attr_i(n, "blocksize", 0));
    if (m != NULL && strcmp(m, "CRD") == 0) dynq__imp_node_attr_i(bn, "crd", 1);
    break;
  }
  case DYNQ_OP_SPLIT:
    dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", 0));
    if (dynq__imp_find_attr(n, "num_outputs"))
      dynq__imp_node_attr_i(bn, "num_outputs", dynq__imp_attr_i(n, "num_outputs", 0));
    break;
  default: break;
  }
  for (size_t o = 0; o < n->n_output; o++) {
    /* Unique's optional outputs may be left out by an empty name */
    if (op == DYNQ_OP_UNIQUE && (n->output[o] == NULL || n->output[o][0] == 0)) {
      dynq__imp_node_out(b, &b->nodes[b->n_nodes - 1], -1);
      continue;
    }
    /* Attention's present_key / present_value left out before a wanted
     * qk_matmul_output: the engine graph has no holes in a node's
     * outputs, so they go to values nothing reads (the executor frees
     * them) */
    if (op == DYNQ_OP_ATTENTION23 && (n->output[o] == NULL || n->output[o][0] == 0)) {
      const char *nm = dynq__imp_fresh_name(b, nname, o == 1 ? ":present_key" : ":present_value");
      int32_t v = nm != NULL ? dynq__imp_add_value(b, nm, DYNQ_DT_F32, -1, NULL) : -1;
      if (v < 0) return oom();
      dynq__imp_node_out(b, &b->nodes[b->n_nodes - 1], v);
      continue;
    }
    int32_t out = dynq__imp_claim_output(c, n->output[o], b->n_nodes - 1);
    if (out < 0) return -1;
    dynq__imp_node_out(b, &b->nodes[b->n_nodes - 1], out);
  }
  return 0;
}

/* Min/Max/Sum/Mean over more inputs than the engine op takes at once
 * (DYNQ_BCAST_MAX): a left-to-right chain of the op over groups, which
 * folds in the same order as one node would; Mean sums the same way and
 * divides by the count once. */
int dynq__import_variadic(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  if (n->n_input <= DYNQ_BCAST_MAX) return dynq__import_graph_op(c, n, nname);
  dynq__builder_t *b = &c->b;
  const int mean = strcmp(n->op_type, "Mean") == 0;
  const int op = mean ? DYNQ_OP_SUM : dynq__op_from_name(n->op_type);
  int32_t acc = -1;
  size_t i = 0;
  while (i < n->n_input) {
    int32_t ins[DYNQ_BCAST_MAX];
    int k = 0;
    if (acc >= 0) ins[k++] = acc;
    while (k < DYNQ_BCAST_MAX && i < n->n_input) ins[k++] = dynq__imp_value_of(c, n->input[i++]);
    const int last = i == n->n_input && !mean;
    int32_t out = last ? dynq__imp_claim_output(c, n->output[0], b->n_nodes)
                       : dynq__imp_add_temp(b, nname, ".acc", DYNQ_DT_F32);
    if (out < 0) return last ? -1 : oom();
    dynq__bnode_t *bn = dynq__imp_add_node(b, op, nname);
    if (bn == NULL) return oom();
    for (int j = 0; j < k; j++) dynq__imp_node_in(bn, ins[j]);
    dynq__imp_node_out(b, bn, out);
    acc = out;
  }
  if (mean) {
    float *cnt = dynq__imp_pool_alloc(&b->pool, sizeof(float));
    if (cnt == NULL) return oom();
    *cnt = (float)n->n_input;
    int32_t cv = dynq__imp_add_const(b, nname, ".count", DYNQ_DT_F32, 0, NULL, cnt, sizeof(float));
    if (cv < 0) return oom();
    int32_t out = dynq__imp_claim_output(c, n->output[0], b->n_nodes);
    if (out < 0) return -1;
    dynq__bnode_t *bn = dynq__imp_add_node(b, DYNQ_OP_DIV, nname);
    if (bn == NULL) return oom();
    dynq__imp_node_in(bn, acc);
    dynq__imp_node_in(bn, cv);
    dynq__imp_node_out(b, bn, out);
  }
  return 0;
}

/* ---- If ---- */

static int import_branch(conv_t *c, const Onnx__GraphProto *g, const char *nname,
                         const char *which) {
  for (size_t i = 0; i < g->n_initializer; i++) {
    const Onnx__TensorProto *t = g->initializer[i];
    if (t->name == NULL || dynq__imp_import_tensor(&c->b, t, t->name, "branch initializer") < 0)
      return -1;
  }
  char *what = dynq__imp_pool_printf(&c->b.pool, "node '%s' (op If) %s branch", nname, which);
  if (what == NULL) return oom();
  c->branch_depth++;
  int rc = c->convert_nodes(c, g->node, g->n_node, what);
  c->branch_depth--;
  return rc;
}

/* Identity from a branch result to the If output placeholder. */
static int emit_copy(conv_t *c, const char *nname, int32_t src, const char *dst) {
  dynq__bnode_t *bn = dynq__imp_add_node(&c->b, DYNQ_OP_IDENTITY, nname);
  if (bn == NULL) return oom();
  dynq__imp_node_in(bn, src);
  int32_t out = dynq__imp_claim_output(c, dst, c->b.n_nodes - 1);
  if (out < 0) return -1;
  dynq__imp_node_out(&c->b, &c->b.nodes[c->b.n_nodes - 1], out);
  return dynq__imp_fold(c, c->b.n_nodes - 1);
}

int dynq__import_if(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  const Onnx__AttributeProto *ta = dynq__imp_find_attr(n, "then_branch");
  const Onnx__AttributeProto *ea = dynq__imp_find_attr(n, "else_branch");
  if (ta == NULL || ta->g == NULL || ea == NULL || ea->g == NULL) {
    dynq__imp_errorf("node '%s' (op If): then_branch and else_branch graphs are required", nname);
    return -1;
  }
  const Onnx__GraphProto *br[2] = {ta->g, ea->g};
  for (int k = 0; k < 2; k++)
    if (br[k]->n_output != n->n_output) {
      dynq__imp_errorf("node '%s' (op If): %s branch has %zu outputs, the node %zu", nname,
                       k ? "else" : "then", br[k]->n_output, n->n_output);
      return -1;
    }
  int32_t cond = dynq__imp_value_of(c, n->input[0]);
  const dynq__value_t *cv = cond >= 0 && b->values[cond].data ? &b->values[cond] : NULL;
  if (cv != NULL) {
    /* Folded: inline the taken branch only. */
    if (cv->nbytes != dynq__dtype_size(cv->dtype) || cv->dtype == DYNQ_DT_INVALID) {
      dynq__imp_errorf("node '%s' (op If): the condition must hold one element", nname);
      return -1;
    }
    dynq__tensor_t t = {.dtype = cv->dtype, .rank = 0, .data = (void *)cv->data};
    int taken = cv->dtype == DYNQ_DT_F32 ? *(const float *)t.data != 0.0f
              : cv->dtype == DYNQ_DT_I64 ? *(const int64_t *)t.data != 0
              : cv->dtype == DYNQ_DT_I32 ? *(const int32_t *)t.data != 0
                                         : *(const uint8_t *)t.data != 0;
    const Onnx__GraphProto *g = taken ? br[0] : br[1];
    if (import_branch(c, g, nname, taken ? "then" : "else") != 0) return -1;
    for (size_t o = 0; o < n->n_output; o++) {
      int32_t src = dynq__imp_value_of(c, g->output[o]->name);
      if (src < 0) {
        dynq__imp_errorf("node '%s' (op If): branch output '%s' is not produced", nname,
                         g->output[o]->name ? g->output[o]->name : "");
        return -1;
      }
      if (emit_copy(c, nname, src, n->output[o]) != 0) return -1;
    }
    return 0;
  }
  /* Run-time If. */
  int32_t flag = dynq__imp_add_temp(b, nname, ".flag", DYNQ_DT_U8);
  if (flag < 0) return oom();
  int ifi = b->n_nodes;
  dynq__bnode_t *bn = dynq__imp_add_node(b, DYNQ_OP_IF, nname);
  if (bn == NULL) return oom();
  dynq__imp_node_in(bn, cond);
  dynq__imp_node_out(b, bn, flag);
  int start = b->n_nodes;
  if (import_branch(c, br[0], nname, "then") != 0) return -1;
  int mid = b->n_nodes;
  if (import_branch(c, br[1], nname, "else") != 0) return -1;
  int end = b->n_nodes;
  /* raw builder counts; dynq__imp_finish_graph recounts live nodes */
  dynq__imp_node_attr_i(&b->nodes[ifi], "then_nodes", mid - start);
  dynq__imp_node_attr_i(&b->nodes[ifi], "else_nodes", end - mid);
  for (size_t o = 0; o < n->n_output; o++) {
    int32_t tv = dynq__imp_value_of(c, br[0]->output[o]->name);
    int32_t ev = dynq__imp_value_of(c, br[1]->output[o]->name);
    if (tv < 0 || ev < 0) {
      dynq__imp_errorf("node '%s' (op If): output %zu of a branch is not produced", nname, o);
      return -1;
    }
    dynq__bnode_t *p = dynq__imp_add_node(b, DYNQ_OP_PHI, nname);
    if (p == NULL) return oom();
    dynq__imp_node_in(p, flag);
    dynq__imp_node_in(p, tv);
    dynq__imp_node_in(p, ev);
    int32_t out = dynq__imp_claim_output(c, n->output[o], b->n_nodes - 1);
    if (out < 0) return -1;
    dynq__imp_node_out(b, &b->nodes[b->n_nodes - 1], out);
  }
  return 0;
}

/* ---- Loop ---- */

/* A body input's or output's declared tensor type, when it has one. */
static void body_type(const Onnx__ValueInfoProto *vi, dynq_dtype_t *dt, int *rank,
                      int64_t *dims) {
  *dt = DYNQ_DT_F32;
  *rank = -1;
  const Onnx__TypeProto *tp = vi->type;
  if (tp == NULL || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
      tp->tensor_type == NULL)
    return;
  dynq_dtype_t t = dynq__imp_dtype_from_onnx(tp->tensor_type->elem_type);
  if (t != DYNQ_DT_INVALID) *dt = t;
  const Onnx__TensorShapeProto *sh = tp->tensor_type->shape;
  if (sh == NULL || sh->n_dim > DYNQ_MAX_RANK) return;
  *rank = (int)sh->n_dim;
  for (int d = 0; d < *rank; d++)
    dims[d] = sh->dim[d]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                  ? sh->dim[d]->dim_value
                  : -1;
}

/* Pass 1: every body input is named, and by a name the graph does not
 * use yet (NULL: fine). */
static const char *body_names_check(conv_t *c, const Onnx__GraphProto *body) {
  for (size_t k = 0; k < body->n_input; k++) {
    const char *name = body->input[k]->name ? body->input[k]->name : "";
    if (name[0] == 0) return "a body input has no name";
    if (dynq__imp_lookup(&c->b, name) >= 0)
      return dynq__imp_pool_printf(&c->b.pool, "body input '%s' is already the name of "
                                   "another value", name);
  }
  return NULL;
}

/* Pass 1: the body's shape against the node's (NULL: fine). */
const char *dynq__import_loop_check(conv_t *c, const Onnx__NodeProto *n) {
  dynq__imp_pool_t *pl = &c->b.pool;
  const Onnx__AttributeProto *ba = dynq__imp_find_attr(n, "body");
  if (ba == NULL || ba->g == NULL) return "the body graph is required";
  const Onnx__GraphProto *body = ba->g;
  int nc = (int)n->n_input - 2, ns = (int)body->n_output - 1 - nc;
  if (nc < 0 || body->n_input != (size_t)(2 + nc) || ns < 0 ||
      n->n_output != (size_t)(nc + ns))
    return dynq__imp_pool_printf(pl, "%zu inputs and %zu outputs, but its body has %zu "
                                 "inputs and %zu outputs (inputs: M, cond, N carried values; "
                                 "body: iteration, cond, the N values -> cond, the N values, "
                                 "scan outputs)", n->n_input, n->n_output, body->n_input,
                                 body->n_output);
  if (2 + nc > DYNQ_IMP_MAX_OUT || nc + ns > DYNQ_IMP_MAX_OUT)
    return dynq__imp_pool_printf(pl, "%d carried values and %d scan outputs; dynq takes at "
                                 "most %d of them together", nc, ns, DYNQ_IMP_MAX_OUT - 2);
  return body_names_check(c, body);
}

/* LOOP(m, cond, init[0..ni)) as node *ret_l: its outputs are the values
 * named names[0..2+ni) (NULL: a fresh temporary; iteration, condition,
 * then the carried values), each typed from types[k] when given. */
static int loop_begin(conv_t *c, const char *nname, int32_t m, int32_t cond,
                      const int32_t *init, int ni, const char *const *names,
                      const Onnx__ValueInfoProto *const *types, int32_t *outs, int *ret_l) {
  dynq__builder_t *b = &c->b;
  int l = b->n_nodes;
  dynq__bnode_t *lp = dynq__imp_add_node(b, DYNQ_OP_LOOP, nname);
  if (lp == NULL) return oom();
  dynq__imp_node_in(lp, m);
  dynq__imp_node_in(lp, cond);
  for (int k = 0; k < ni; k++) dynq__imp_node_in(lp, init[k]);
  for (int k = 0; k < 2 + ni; k++) {
    dynq_dtype_t dt = DYNQ_DT_F32;
    int rank = -1;
    int64_t dims[DYNQ_MAX_RANK];
    if (types != NULL && types[k] != NULL) body_type(types[k], &dt, &rank, dims);
    if (k < 2) {  /* the iteration number and the condition */
      dt = k == 0 ? DYNQ_DT_I64 : DYNQ_DT_U8;
      rank = 0;
    }
    int32_t v;
    if (names[k] != NULL) {
      if (dynq__imp_lookup(b, names[k]) >= 0) {
        dynq__imp_errorf("node '%s': body input '%s' is already the name of another value",
                         nname, names[k]);
        return -1;
      }
      v = dynq__imp_add_value(b, names[k], dt, k < 2 ? rank : -1, dims);
    } else {
      v = dynq__imp_add_temp(b, nname, k == 0 ? ".iter" : k == 1 ? ".cond" : ".state", dt);
    }
    if (v < 0) return oom();
    dynq__imp_node_out(b, &b->nodes[l], v);
    if (outs != NULL) outs[k] = v;
  }
  *ret_l = l;
  return 0;
}

/* The body's initializers and nodes, after the LOOP. */
static int loop_body(conv_t *c, const Onnx__GraphProto *body, const char *nname,
                     const char *op) {
  dynq__builder_t *b = &c->b;
  for (size_t i = 0; i < body->n_initializer; i++) {
    const Onnx__TensorProto *t = body->initializer[i];
    if (t->name == NULL || dynq__imp_import_tensor(b, t, t->name, "loop body initializer") < 0)
      return -1;
  }
  char *what = dynq__imp_pool_printf(&b->pool, "node '%s' (op %s) body", nname, op);
  if (what == NULL) return oom();
  c->branch_depth++;
  int rc = c->convert_nodes(c, body->node, body->n_node, what);
  c->branch_depth--;
  return rc != 0 ? -1 : 0;
}

/* LOOP_END of the LOOP at l: reads iter, m, cond_out and res[0..nc+ns)
 * (carried, then scan values); writes outs[0..nc+ns) (a scan output typed
 * [iterations, scan_types[j]'s shape] when given), and both ends get
 * their counts. */
static int loop_end(conv_t *c, const char *nname, int l, int32_t m, int32_t cond_out,
                    const int32_t *res, int nc, int ns, const int32_t *outs,
                    const Onnx__ValueInfoProto *const *scan_types) {
  dynq__builder_t *b = &c->b;
  int e = b->n_nodes;
  dynq__bnode_t *le = dynq__imp_add_node(b, DYNQ_OP_LOOP_END, nname);
  if (le == NULL) return oom();
  dynq__imp_node_in(le, b->nodes[l].out[0]);
  dynq__imp_node_in(le, m);
  dynq__imp_node_in(le, cond_out);
  for (int k = 0; k < nc + ns; k++) dynq__imp_node_in(le, res[k]);
  for (int k = 0; k < nc + ns; k++) {
    int32_t out = outs[k];
    if (k >= nc && scan_types != NULL && scan_types[k - nc] != NULL) {
      dynq_dtype_t dt;
      int rank;
      int64_t dims[DYNQ_MAX_RANK];
      body_type(scan_types[k - nc], &dt, &rank, dims);
      b->values[out].dtype = dt;
      if (rank >= 0 && rank < DYNQ_MAX_RANK) {
        b->values[out].rank = rank + 1;
        b->values[out].dims[0] = -1;
        for (int d = 0; d < rank; d++) b->values[out].dims[d + 1] = dims[d];
      }
    }
    dynq__imp_node_out(b, &b->nodes[e], out);
  }
  /* raw builder counts; dynq__imp_finish_graph recounts live nodes */
  for (int x = 0; x < 2; x++) {
    dynq__bnode_t *p = &b->nodes[x ? e : l];
    dynq__imp_node_attr_i(p, "body_nodes", e - l - 1);
    dynq__imp_node_attr_i(p, "n_carried", nc);
  }
  return 0;
}

/* A body output's value, or -1 after saying which is missing. */
static int32_t body_result(conv_t *c, const Onnx__GraphProto *body, int k, const char *nname,
                           const char *op) {
  const char *on = body->output[k]->name ? body->output[k]->name : "";
  int32_t v = on[0] ? dynq__imp_value_of(c, on) : -1;
  if (v < 0) dynq__imp_errorf("node '%s' (op %s): body output '%s' is not computed", nname, op, on);
  return v;
}

/* Loop: LOOP, the body inlined after it, LOOP_END (lib/ops/control.c);
 * dynq__import_loop_check passed. */
int dynq__import_loop(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  const Onnx__GraphProto *body = dynq__imp_find_attr(n, "body")->g;
  int nc = (int)n->n_input - 2, ns = (int)body->n_output - 1 - nc, l;
  int32_t init[DYNQ_IMP_MAX_OUT], res[DYNQ_IMP_MAX_OUT], outs[DYNQ_IMP_MAX_OUT];
  const char *names[DYNQ_IMP_MAX_OUT];
  int32_t io[2];
  for (int k = 0; k < 2; k++)
    io[k] = n->input[k] != NULL && n->input[k][0] ? dynq__imp_value_of(c, n->input[k]) : -1;
  for (int k = 0; k < nc; k++) init[k] = dynq__imp_value_of(c, n->input[2 + k]);
  for (int k = 0; k < 2 + nc; k++) names[k] = body->input[k]->name;
  if (loop_begin(c, nname, io[0], io[1], init, nc, names,
                 (const Onnx__ValueInfoProto *const *)body->input, NULL, &l) != 0 ||
      loop_body(c, body, nname, "Loop") != 0)
    return -1;
  int32_t cond_out = body_result(c, body, 0, nname, "Loop");
  if (cond_out < 0) return -1;
  for (int k = 0; k < nc + ns; k++) {
    if ((res[k] = body_result(c, body, 1 + k, nname, "Loop")) < 0) return -1;
    if ((outs[k] = dynq__imp_claim_output(c, n->output[k], c->b.n_nodes)) < 0) return -1;
  }
  return loop_end(c, nname, l, io[0], cond_out, res, nc, ns, outs,
                  (const Onnx__ValueInfoProto *const *)body->output + 1 + nc);
}

/* ---- Scan: a Loop over slices ---- */

static const Onnx__AttributeProto *ints_attr(const Onnx__NodeProto *n, const char *name) {
  const Onnx__AttributeProto *a = dynq__imp_find_attr(n, name);
  return a != NULL && a->n_ints > 0 ? a : NULL;
}

/* Pass 1 (NULL: fine): opset >= 9's Scan, whose shapes fit dynq's loop. */
const char *dynq__import_scan_check(conv_t *c, const Onnx__NodeProto *n) {
  dynq__imp_pool_t *pl = &c->b.pool;
  if (c->opset < 9) return "the opset 8 form (with a batch axis and sequence_lens) is not supported";
  const Onnx__AttributeProto *ba = dynq__imp_find_attr(n, "body");
  const Onnx__AttributeProto *na = dynq__imp_find_attr(n, "num_scan_inputs");
  if (ba == NULL || ba->g == NULL) return "the body graph is required";
  if (na == NULL) return "num_scan_inputs is required";
  const Onnx__GraphProto *body = ba->g;
  int64_t m = na->i;
  int nst = (int)n->n_input - (int)m, nso = (int)body->n_output - nst;
  if (m < 1 || nst < 0 || body->n_input != n->n_input || nso < 0 ||
      n->n_output != body->n_output)
    return dynq__imp_pool_printf(pl, "num_scan_inputs %lld with %zu inputs and %zu outputs, but "
                                 "its body has %zu inputs and %zu outputs", (long long)m,
                                 n->n_input, n->n_output, body->n_input, body->n_output);
  if (2 + nst > DYNQ_IMP_MAX_OUT || nst + nso > DYNQ_IMP_MAX_OUT)
    return dynq__imp_pool_printf(pl, "%d state values and %d scan outputs; dynq takes at most "
                                 "%d of them together", nst, nso, DYNQ_IMP_MAX_OUT - 2);
  static const char *const lists[4] = {"scan_input_directions", "scan_input_axes",
                                       "scan_output_directions", "scan_output_axes"};
  for (int k = 0; k < 4; k++) {
    const Onnx__AttributeProto *a = ints_attr(n, lists[k]);
    size_t want = k < 2 ? (size_t)m : (size_t)nso;
    if (a == NULL) continue;
    if (a->n_ints != want)
      return dynq__imp_pool_printf(pl, "%s has %zu values for %zu %s", lists[k], a->n_ints,
                                   want, k < 2 ? "scan inputs" : "scan outputs");
    for (size_t j = 0; j < a->n_ints; j++) {
      int64_t v = a->ints[j];
      if ((k % 2 == 0 && v != 0 && v != 1) || (k % 2 == 1 && (v < -DYNQ_MAX_RANK || v >= DYNQ_MAX_RANK)))
        return dynq__imp_pool_printf(pl, "%s[%zu] = %lld is not %s", lists[k], j, (long long)v,
                                     k % 2 == 0 ? "0 or 1" : "an axis");
    }
  }
  const Onnx__AttributeProto *oa = ints_attr(n, "scan_output_axes");
  for (int j = 0; oa != NULL && j < nso; j++) {
    dynq_dtype_t dt;
    int rank;
    int64_t dims[DYNQ_MAX_RANK];
    body_type(body->output[nst + j], &dt, &rank, dims);
    int64_t ax = oa->ints[j];
    if (ax != 0 && (rank < 0 || ax < -(rank + 1) || ax > rank))
      return dynq__imp_pool_printf(pl, "scan_output_axes[%d] = %lld needs the body output's "
                                   "rank (declared: %d)", j, (long long)ax, rank);
  }
  return body_names_check(c, body);
}

static int32_t i64_const(conv_t *c, const char *nname, const char *suffix, int rank,
                         const int64_t *vals, int64_t n) {
  int64_t *d = dynq__imp_pool_alloc(&c->b.pool, (size_t)(n > 0 ? n : 1) * sizeof(int64_t));
  if (d == NULL) return -1;
  memcpy(d, vals, (size_t)n * sizeof(int64_t));
  int64_t dims[1] = {n};
  return dynq__imp_add_const(&c->b, nname, suffix, DYNQ_DT_I64, rank, rank ? dims : NULL, d,
                             (size_t)n * sizeof(int64_t));
}

/* One node op(in...) -> a fresh temp (or the value out >= 0); -1 on OOM. */
static int32_t emit(conv_t *c, int op, const char *nname, const char *suffix, int32_t out,
                    int n_in, const int32_t *in, int64_t axis) {
  dynq__builder_t *b = &c->b;
  if (out < 0 && (out = dynq__imp_add_temp(b, nname, suffix, DYNQ_DT_F32)) < 0) return -1;
  dynq__bnode_t *bn = dynq__imp_add_node(b, op, nname);
  if (bn == NULL) return -1;
  for (int k = 0; k < n_in; k++) dynq__imp_node_in(bn, in[k]);
  if (op == DYNQ_OP_GATHER) dynq__imp_node_attr_i(bn, "axis", axis);
  dynq__imp_node_out(b, bn, out);
  return out;
}

/* Scan (opset 9+) as a Loop: M = the first scan input's length along its
 * axis; at iteration i the body's scan inputs are Gather(x_j, i or
 * M - 1 - i, axis_j); the loop's scan outputs (stacked on axis 0) are
 * reversed (Slice, step -1) and moved to their axis (Transpose) as the
 * attributes ask.  dynq__import_scan_check passed. */
int dynq__import_scan(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  const Onnx__GraphProto *body = dynq__imp_find_attr(n, "body")->g;
  int m = (int)dynq__imp_find_attr(n, "num_scan_inputs")->i;
  int nst = (int)n->n_input - m, nso = (int)body->n_output - nst, l;
  const Onnx__AttributeProto *idir = ints_attr(n, "scan_input_directions");
  const Onnx__AttributeProto *iax = ints_attr(n, "scan_input_axes");
  const Onnx__AttributeProto *odir = ints_attr(n, "scan_output_directions");
  const Onnx__AttributeProto *oax = ints_attr(n, "scan_output_axes");
  int32_t x[DYNQ_IMP_MAX_IN], init[DYNQ_IMP_MAX_OUT], res[DYNQ_IMP_MAX_OUT];
  int32_t outs[DYNQ_IMP_MAX_OUT], lo[DYNQ_IMP_MAX_OUT];
  const char *names[DYNQ_IMP_MAX_OUT];
  const Onnx__ValueInfoProto *types[DYNQ_IMP_MAX_OUT];
  for (int k = 0; k < nst; k++) init[k] = dynq__imp_value_of(c, n->input[k]);
  for (int j = 0; j < m; j++) x[j] = dynq__imp_value_of(c, n->input[nst + j]);
  /* M and M - 1, before the loop */
  int64_t ax0 = iax ? iax->ints[0] : 0, one = 1;
  int32_t shp = emit(c, DYNQ_OP_SHAPE, nname, ".shape", -1, 1, &x[0], 0);
  int32_t axc = i64_const(c, nname, ".axis", 0, &ax0, 1);
  if (shp < 0 || axc < 0) return oom();
  int32_t ga[2] = {shp, axc};
  int32_t len = emit(c, DYNQ_OP_GATHER, nname, ".len", -1, 2, ga, 0);
  int32_t onec = i64_const(c, nname, ".one", 0, &one, 1);
  if (len < 0 || onec < 0) return oom();
  int32_t sa[2] = {len, onec};
  int32_t last = emit(c, DYNQ_OP_SUB, nname, ".last", -1, 2, sa, 0);
  if (last < 0) return oom();
  names[0] = names[1] = NULL;
  types[0] = types[1] = NULL;
  for (int k = 0; k < nst; k++) {
    names[2 + k] = body->input[k]->name;
    types[2 + k] = body->input[k];
  }
  if (loop_begin(c, nname, len, -1, init, nst, names, types, lo, &l) != 0) return -1;
  /* the body's scan inputs: slice i (or M - 1 - i) of each along its axis */
  for (int j = 0; j < m; j++) {
    int32_t idx = lo[0];
    if (idir && idir->ints[j]) {
      int32_t si[2] = {last, lo[0]};
      if ((idx = emit(c, DYNQ_OP_SUB, nname, ".rev", -1, 2, si, 0)) < 0) return oom();
    }
    const char *bn = body->input[nst + j]->name;
    int32_t v = dynq__imp_add_value(b, bn, DYNQ_DT_F32, -1, NULL);
    int32_t gi[2] = {x[j], idx};
    if (v < 0 || emit(c, DYNQ_OP_GATHER, nname, "", v, 2, gi, iax ? iax->ints[j] : 0) < 0)
      return oom();
  }
  if (loop_body(c, body, nname, "Scan") != 0) return -1;
  for (int k = 0; k < nst + nso; k++) {
    if ((res[k] = body_result(c, body, k, nname, "Scan")) < 0) return -1;
    outs[k] = k < nst ? dynq__imp_claim_output(c, n->output[k], b->n_nodes)
                      : dynq__imp_add_temp(b, nname, ".scan", DYNQ_DT_F32);
    if (outs[k] < 0) return k < nst ? -1 : oom();
  }
  if (loop_end(c, nname, l, len, -1, res, nst, nso, outs,
               (const Onnx__ValueInfoProto *const *)body->output + nst) != 0)
    return -1;
  /* each scan output: reversed and moved to its axis as asked */
  for (int j = 0; j < nso; j++) {
    int32_t v = outs[nst + j];
    int rev = odir && odir->ints[j];
    int64_t ax = oax ? oax->ints[j] : 0;
    int rank = b->values[v].rank;  /* [iterations, body output], or -1 */
    if (ax < 0) ax += rank;        /* the check made sure rank is known */
    if (rev) {
      int64_t st = -1, en = INT64_MIN, a0 = 0, step = -1;
      int32_t si[5] = {v, i64_const(c, nname, ".st", 1, &st, 1),
                       i64_const(c, nname, ".en", 1, &en, 1),
                       i64_const(c, nname, ".ax", 1, &a0, 1),
                       i64_const(c, nname, ".step", 1, &step, 1)};
      if (si[1] < 0 || si[2] < 0 || si[3] < 0 || si[4] < 0) return oom();
      int32_t out = ax == 0 ? dynq__imp_claim_output(c, n->output[nst + j], b->n_nodes) : -1;
      if (ax == 0 && out < 0) return -1;
      if ((v = emit(c, DYNQ_OP_SLICE, nname, ".reversed", out, 5, si, 0)) < 0) return oom();
    }
    if (ax != 0) {
      int64_t perm[DYNQ_MAX_RANK];
      for (int d = 0; d < rank; d++) perm[d] = d < ax ? d + 1 : d == ax ? 0 : d;
      int32_t ti[2] = {v, i64_const(c, nname, ".perm", 1, perm, rank)};
      int32_t out = dynq__imp_claim_output(c, n->output[nst + j], b->n_nodes);
      if (ti[1] < 0) return oom();
      if (out < 0) return -1;
      if (emit(c, DYNQ_OP_TRANSPOSE, nname, "", out, 2, ti, 0) < 0) return oom();
    } else if (!rev) {
      int32_t out = dynq__imp_claim_output(c, n->output[nst + j], b->n_nodes);
      if (out < 0) return -1;
      if (emit(c, DYNQ_OP_IDENTITY, nname, "", out, 1, &v, 0) < 0) return oom();
    }
  }
  return 0;
}
