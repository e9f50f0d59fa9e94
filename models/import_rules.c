/*
 * Attributes the engine takes as constant inputs: those ONNX itself moved
 * from attributes to inputs in a later opset (Squeeze's axes at 13, Pad's
 * pads at 11, ...) and those it never moved (Transpose's perm).  The engine
 * has one run function per op whatever the opset, reading the input form
 * only, so the importer rewrites the attribute form into it.
 *
 * Each such attribute is one row of `rules`; dynq__imp_rules_check (pass 1)
 * and dynq__imp_rule_inputs (the converters) are the only readers.  The
 * rows of one op are listed in input order: the constants are then added in
 * that order, which keeps the value numbering of converted files stable.
 */
#include <math.h>
#include <string.h>

#include "import.h"

/* op, attribute, engine input, first opset where ONNX has it as that
 * input (0: never, always an attribute), kind, need, default. */
static const dynq__imp_rule_t rules[] = {
    {"Squeeze", "axes", 1, 13, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"Unsqueeze", "axes", 1, 13, DYNQ_IMP_R_INTS, DYNQ_IMP_R_REQUIRED, 0},
    {"ReduceSum", "axes", 1, 13, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"ReduceMean", "axes", 1, 18, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"ReduceMax", "axes", 1, 18, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"ReduceMin", "axes", 1, 18, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"ReduceProd", "axes", 1, 18, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"ReduceL1", "axes", 1, 18, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"ReduceL2", "axes", 1, 18, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"ReduceSumSquare", "axes", 1, 18, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"ReduceLogSum", "axes", 1, 18, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"ReduceLogSumExp", "axes", 1, 18, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"TopK", "k", 1, 10, DYNQ_IMP_R_INTS, DYNQ_IMP_R_REQUIRED, 0},
    {"Split", "split", 1, 13, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"Slice", "starts", 1, 10, DYNQ_IMP_R_INTS, DYNQ_IMP_R_REQUIRED, 0},
    {"Slice", "ends", 2, 10, DYNQ_IMP_R_INTS, DYNQ_IMP_R_REQUIRED, 0},
    {"Slice", "axes", 3, 10, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"Pad", "pads", 1, 11, DYNQ_IMP_R_INTS, DYNQ_IMP_R_REQUIRED, 0},
    {"Pad", "value", 2, 11, DYNQ_IMP_R_FLOAT, DYNQ_IMP_R_DEFAULT, 0.0f},
    {"Clip", "min", 1, 11, DYNQ_IMP_R_FLOAT, DYNQ_IMP_R_DEFAULT, -INFINITY},
    {"Clip", "max", 2, 11, DYNQ_IMP_R_FLOAT, DYNQ_IMP_R_DEFAULT, INFINITY},
    {"Transpose", "perm", 1, 0, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
    {"ConstantOfShape", "value", 1, 0, DYNQ_IMP_R_TENSOR1, DYNQ_IMP_R_OPTIONAL, 0},
    {"Upsample", "scales", 1, 9, DYNQ_IMP_R_FLOATS, DYNQ_IMP_R_REQUIRED, 0},
    {"MeanVarianceNormalization", "axes", 1, 0, DYNQ_IMP_R_INTS, DYNQ_IMP_R_OPTIONAL, 0},
};

#define N_RULES (sizeof(rules) / sizeof(rules[0]))

static int same_op(const dynq__imp_rule_t *r, const Onnx__NodeProto *n) {
  return n->op_type != NULL && strcmp(r->op, n->op_type) == 0;
}

const dynq__imp_rule_t *dynq__imp_rule_find(const char *op, const char *attr) {
  for (size_t i = 0; i < N_RULES; i++)
    if (strcmp(rules[i].op, op) == 0 && strcmp(rules[i].attr, attr) == 0) return &rules[i];
  return NULL;
}

/* Whether ONNX has the rule's value as an attribute at this opset. */
static int as_attribute(const conv_t *c, const dynq__imp_rule_t *r) {
  return r->since == 0 || c->opset < r->since;
}

static int has_input(const Onnx__NodeProto *n, int i) {
  return (size_t)i < n->n_input && n->input[i] != NULL && n->input[i][0] != 0;
}

static int kind_ok(const dynq__imp_rule_t *r, const Onnx__AttributeProto *a) {
  switch (r->kind) {
  case DYNQ_IMP_R_INTS:
    return !a->has_type || a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
  case DYNQ_IMP_R_FLOAT: return dynq__imp_attr_is_float(a);
  case DYNQ_IMP_R_FLOATS:
    return !a->has_type || a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
  case DYNQ_IMP_R_TENSOR1: return a->t != NULL;
  default: return 0;
  }
}

const char *dynq__imp_rules_check(conv_t *c, const Onnx__NodeProto *n) {
  dynq__imp_pool_t *pl = &c->b.pool;
  for (size_t i = 0; i < N_RULES; i++) {
    const dynq__imp_rule_t *r = &rules[i];
    if (!same_op(r, n)) continue;
    const Onnx__AttributeProto *a = dynq__imp_find_attr(n, r->attr);
    int in = has_input(n, r->input);
    if (as_attribute(c, r)) {
      if (in && r->since > 0)
        return dynq__imp_pool_printf(pl, "before opset %d '%s' is an attribute, not input %d "
                                     "(the model's opset is %lld)", r->since, r->attr,
                                     r->input, (long long)c->opset);
      if (a == NULL && r->need == DYNQ_IMP_R_REQUIRED)
        return dynq__imp_pool_printf(pl, "attribute '%s' is required", r->attr);
      if (a != NULL && a->ref_attr_name)
        return dynq__imp_pool_printf(pl, "attribute '%s' is a function reference", r->attr);
      if (a != NULL && !kind_ok(r, a))
        return dynq__imp_pool_printf(pl, "attribute '%s' has the wrong type", r->attr);
    } else {
      if (a != NULL)
        return dynq__imp_pool_printf(pl, "'%s' is input %d from opset %d on, not an attribute "
                                     "(the model's opset is %lld)", r->attr, r->input,
                                     r->since, (long long)c->opset);
      if (!in && r->need == DYNQ_IMP_R_REQUIRED)
        return dynq__imp_pool_printf(pl, "input %d ('%s') is required", r->input, r->attr);
    }
  }
  return NULL;
}

static int oom(void) {
  dynq__imp_errorf("out of memory");
  return -1;
}

/* The constant for rule r on node n; -2 when the attribute is absent and
 * nothing replaces it, -1 after an error. */
static int32_t rule_const(conv_t *c, const dynq__imp_rule_t *r, const Onnx__NodeProto *n,
                          const char *nname) {
  dynq__builder_t *b = &c->b;
  const Onnx__AttributeProto *a = dynq__imp_find_attr(n, r->attr);
  if (a == NULL && r->need != DYNQ_IMP_R_DEFAULT) return -2;
  if (a == NULL && r->kind != DYNQ_IMP_R_FLOAT) {
    /* a row's default is one float: only FLOAT rows may have one */
    dynq__imp_errorf("node '%s' (op %s): internal error: no default for '%s'", nname, r->op,
                     r->attr);
    return -1;
  }
  const char *sfx = dynq__imp_pool_printf(&b->pool, ".%s", r->attr);
  if (sfx == NULL) return oom();
  if (r->kind == DYNQ_IMP_R_TENSOR1) {
    const char *vn = dynq__imp_fresh_name(b, nname, sfx);
    if (vn == NULL) return oom();
    const char *what = dynq__imp_pool_printf(&b->pool, "%s %s", r->op, r->attr);
    if (what == NULL) return oom();
    int32_t v = dynq__imp_import_tensor(b, a->t, vn, what);
    if (v < 0) return -1;
    if (b->values[v].nbytes != dynq__dtype_size(b->values[v].dtype)) {
      dynq__imp_errorf("node '%s' (op %s): %s must hold one element", nname, r->op, r->attr);
      return -1;
    }
    return v;
  }
  dynq_dtype_t dt = r->kind == DYNQ_IMP_R_INTS ? DYNQ_DT_I64 : DYNQ_DT_F32;
  size_t es = dynq__dtype_size(dt);
  size_t cnt = 1;
  const void *src = &r->dflt;
  if (a != NULL && r->kind == DYNQ_IMP_R_INTS) cnt = a->n_ints, src = a->ints;
  if (a != NULL && r->kind == DYNQ_IMP_R_FLOATS) cnt = a->n_floats, src = a->floats;
  if (a != NULL && r->kind == DYNQ_IMP_R_FLOAT) src = &a->f;
  void *d = dynq__imp_pool_alloc(&b->pool, (cnt ? cnt : 1) * es);
  if (d == NULL) return oom();
  if (cnt) memcpy(d, src, cnt * es);
  int scalar = r->kind == DYNQ_IMP_R_FLOAT;
  int64_t dims[1] = {(int64_t)cnt};
  int32_t v = dynq__imp_add_const(b, nname, sfx, dt, scalar ? 0 : 1, scalar ? NULL : dims, d,
                                  cnt * es);
  return v < 0 ? oom() : v;
}

int dynq__imp_rule_inputs(conv_t *c, const Onnx__NodeProto *n, const char *nname,
                          int32_t *ins, int *ret_n) {
  int cnt = (int)n->n_input, attr_form = 0;
  if (cnt > DYNQ_IMP_MAX_IN) {
    dynq__imp_errorf("node '%s' (op %s): more than %d inputs", nname, n->op_type,
                     DYNQ_IMP_MAX_IN);
    return -1;
  }
  for (int i = 0; i < DYNQ_IMP_MAX_IN; i++)
    ins[i] = i < cnt ? dynq__imp_value_of(c, n->input[i]) : -1;
  /* Defaults are filled in only when the node uses the attribute form at
   * all: Clip-6 with neither min nor max stays a one-input Clip. */
  for (size_t i = 0; i < N_RULES; i++)
    if (same_op(&rules[i], n) && as_attribute(c, &rules[i]) &&
        dynq__imp_find_attr(n, rules[i].attr) != NULL)
      attr_form = 1;
  int last = cnt;
  for (size_t i = 0; i < N_RULES; i++) {
    const dynq__imp_rule_t *r = &rules[i];
    if (!same_op(r, n) || !as_attribute(c, r)) continue;
    if (r->need == DYNQ_IMP_R_DEFAULT && !attr_form) continue;
    if (r->input >= DYNQ_IMP_MAX_IN || has_input(n, r->input)) {
      /* pass 1 refuses a node that has both forms */
      dynq__imp_errorf("node '%s' (op %s): internal error: '%s' collides with input %d",
                       nname, r->op, r->attr, r->input);
      return -1;
    }
    int32_t v = rule_const(c, r, n, nname);
    if (v == -1) return -1;
    if (v >= 0) {
      ins[r->input] = v;
      if (r->input + 1 > last) last = r->input + 1;
    }
  }
  *ret_n = last;
  return 0;
}
