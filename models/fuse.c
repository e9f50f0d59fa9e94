/*
 * Import-time fusions on the builder graph, after conversion and constant
 * folding: patterns exporters emit for one operation, rewritten into the
 * engine's single op.  Each rewrite replaces the pattern's last node by the
 * fused node (so the result keeps its value index and every reader) and
 * marks the others dead; a pattern matches only when every intermediate
 * value has exactly the reader the pattern expects and is not a graph
 * output.
 *
 *  - LayerNorm: ReduceMean(x) -> Sub -> Pow 2 -> ReduceMean -> Add eps ->
 *    Sqrt -> Div -> Mul gamma -> Add beta (PyTorch before opset 17,
 *    PaddlePaddle) over the last axis, becomes LayerNormalization.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"

typedef struct fctx {
  dynq__builder_t *b;
  int *readers;     /* [n_values] live readers, +1 for a graph output */
} fctx_t;

static int count_readers(fctx_t *f) {
  dynq__builder_t *b = f->b;
  f->readers = calloc((size_t)b->n_values + 1, sizeof(int));
  if (f->readers == NULL) return -1;
  for (int i = 0; i < b->n_nodes; i++) {
    const dynq__bnode_t *n = &b->nodes[i];
    if (n->dead) continue;
    for (int k = 0; k < n->n_in; k++)
      if (n->in[k] >= 0) f->readers[n->in[k]]++;
  }
  for (int i = 0; i < b->n_outputs; i++) f->readers[b->outputs[i]]++;
  return 0;
}

/* The live node producing v, or NULL. */
static dynq__bnode_t *prod(fctx_t *f, int32_t v) {
  if (v < 0 || v >= f->b->n_values) return NULL;
  int32_t p = f->b->producer[v];
  if (p < 0 || p >= f->b->n_nodes || f->b->nodes[p].dead) return NULL;
  return &f->b->nodes[p];
}

/* v is produced by a live `op` node with nothing but `want` readers. */
static dynq__bnode_t *prod_op(fctx_t *f, int32_t v, int op, int want) {
  dynq__bnode_t *n = prod(f, v);
  if (n == NULL || n->op != op || n->n_out != 1 || f->readers[v] != want) return NULL;
  return n;
}

static const dynq__value_t *cval(fctx_t *f, int32_t v) {
  if (v < 0 || v >= f->b->n_values || f->b->values[v].data == NULL) return NULL;
  return &f->b->values[v];
}

/* A float32 constant with one element; its value. */
static int const_scalar(fctx_t *f, int32_t v, float *ret) {
  const dynq__value_t *c = cval(f, v);
  if (c == NULL || c->dtype != DYNQ_DT_F32 || c->nbytes != sizeof(float)) return 0;
  memcpy(ret, c->data, sizeof(float));
  return 1;
}

/* A float32 1-D constant (the per-feature gamma or beta); its length. */
static int64_t const_vec(fctx_t *f, int32_t v) {
  const dynq__value_t *c = cval(f, v);
  if (c == NULL || c->dtype != DYNQ_DT_F32 || c->rank != 1) return -1;
  return c->dims[0];
}

/* ReduceMean over the last axis only, keepdims 1. */
static int mean_last(fctx_t *f, const dynq__bnode_t *n) {
  if (n->n_in != 2 || dynq__node_attr_i(&(dynq__node_t){.n_attr = n->n_attr, .attr = n->attr},
                                         "keepdims", 1) != 1)
    return 0;
  const dynq__value_t *ax = cval(f, n->in[1]);
  if (ax == NULL || ax->dtype != DYNQ_DT_I64 || ax->nbytes != sizeof(int64_t)) return 0;
  int64_t a;
  memcpy(&a, ax->data, sizeof a);
  if (a == -1) return 1;
  const dynq__value_t *x = &f->b->values[n->in[0]];
  return x->rank > 0 && a == x->rank - 1;
}

/* Try the LayerNorm pattern ending at node `add_i` (the beta Add). */
static int try_layernorm(fctx_t *f, int add_i) {
  dynq__builder_t *b = f->b;
  dynq__bnode_t *add = &b->nodes[add_i];
  if (add->op != DYNQ_OP_ADD || add->n_in != 2) return 0;
  for (int side = 0; side < 2; side++) {
    int32_t beta = add->in[side], mulv = add->in[1 - side];
    dynq__bnode_t *mul = prod_op(f, mulv, DYNQ_OP_MUL, 1);
    int64_t len = const_vec(f, beta);
    if (mul == NULL || len < 1) continue;
    for (int ms = 0; ms < 2; ms++) {
      int32_t gamma = mul->in[ms], divv = mul->in[1 - ms];
      dynq__bnode_t *div = prod_op(f, divv, DYNQ_OP_DIV, 1);
      if (div == NULL || const_vec(f, gamma) != len) continue;
      int32_t dv = div->in[0];
      dynq__bnode_t *sqrt_ = prod_op(f, div->in[1], DYNQ_OP_SQRT, 1);
      dynq__bnode_t *sub = prod_op(f, dv, DYNQ_OP_SUB, 2);
      if (sqrt_ == NULL || sub == NULL) continue;
      dynq__bnode_t *eadd = prod_op(f, sqrt_->in[0], DYNQ_OP_ADD, 1);
      if (eadd == NULL) continue;
      float eps = 0, two = 0;
      int32_t varv = -1;
      for (int es = 0; es < 2; es++)
        if (const_scalar(f, eadd->in[es], &eps)) varv = eadd->in[1 - es];
      dynq__bnode_t *rm2 = prod_op(f, varv, DYNQ_OP_REDUCE_MEAN, 1);
      if (rm2 == NULL || !mean_last(f, rm2) || !(eps >= 0)) continue;
      dynq__bnode_t *pw = prod_op(f, rm2->in[0], DYNQ_OP_POW, 1);
      if (pw == NULL || pw->in[0] != dv || !const_scalar(f, pw->in[1], &two) || two != 2.0f)
        continue;
      /* d = x - mean(x): read by Pow and Div only (2 readers checked) */
      int32_t x = sub->in[0];
      dynq__bnode_t *rm1 = prod_op(f, sub->in[1], DYNQ_OP_REDUCE_MEAN, 1);
      if (rm1 == NULL || rm1->in[0] != x || !mean_last(f, rm1)) continue;
      /* rewrite: the Add becomes LayerNormalization(x, gamma, beta) */
      dynq__bnode_t *dead[] = {rm1, sub, pw, rm2, eadd, sqrt_, div, mul};
      for (size_t k = 0; k < sizeof(dead) / sizeof(dead[0]); k++) dead[k]->dead = 1;
      int32_t out = add->out[0];
      const char *name = add->name;
      memset(add, 0, sizeof(*add));
      add->op = DYNQ_OP_LAYERNORM;
      add->name = name;
      add->n_in = 3;
      add->in[0] = x;
      add->in[1] = gamma;
      add->in[2] = beta;
      add->n_out = 1;
      add->out[0] = out;
      dynq__imp_node_attr_i(add, "axis", -1);
      dynq__imp_node_attr_f(add, "epsilon", eps);
      return 1;
    }
  }
  return 0;
}

int dynq__imp_fuse(conv_t *c, int *ret_layernorms) {
  fctx_t f = {.b = &c->b};
  *ret_layernorms = 0;
  if (count_readers(&f) != 0) {
    dynq__imp_errorf("out of memory");
    return -1;
  }
  for (int i = 0; i < c->b.n_nodes; i++)
    if (!c->b.nodes[i].dead) *ret_layernorms += try_layernorm(&f, i);
  free(f.readers);
  return 0;
}
