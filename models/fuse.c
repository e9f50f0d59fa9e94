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
 *  - Bias: a linear layer (QLinear, or with --fp32 a MatMul of a
 *    constant matrix) followed by an Add of a constant [N] (PyTorch
 *    exports Linear as MatMul + Add) takes the vector as its bias, applied
 *    in the GEMM epilogue.
 *  - GELU (erf form, PyTorch's F.gelu): h / sqrt(2) -> Erf -> + 1 ->
 *    h * . -> * 0.5 after such a layer becomes its GELU epilogue
 *    (act = GELU; the same formula, so FP32 agrees to rounding).
 *  - GELU (tanh form, PyTorch's F.gelu(approximate="tanh")) after such a
 *    layer becomes its GELU_TANH epilogue.
 *  - Attention: an FP32 MatMul takes in the Transposes of its operands and
 *    result and a scalar Div/Mul of its result (StridedMatMul); a Softmax
 *    of an Add over the last axis becomes MaskedSoftmax.
 *  - HardSwish decomposed (PaddlePaddle): x * Clip(x + 3, 0, 6) / 6
 *    becomes HardSwish(x).
 *  - Attention, INT8: StridedMatMul -> MaskedSoftmax -> StridedMatMul
 *    becomes one Attention node (scores kept in cache, never stored).
 *  - Residual: LayerNormalization of an Add of two equal-shaped values
 *    becomes AddLayerNorm (the sum kept as its second output when read
 *    elsewhere).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"

typedef struct fctx fctx_t;
static void take_output(fctx_t *f, dynq__bnode_t *q, dynq__bnode_t *n);

struct fctx {
  dynq__builder_t *b;
  int *readers;     /* [n_values] live readers, +1 for a graph output */
};

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

static dynq__attr_t *act_attr(dynq__bnode_t *q) {
  for (int i = 0; i < q->n_attr; i++)
    if (strcmp(q->attr[i].name, "act") == 0) return &q->attr[i];
  return NULL;
}

static const dynq__value_t *cval(fctx_t *f, int32_t v);

static int64_t qlinear_n(fctx_t *f, const dynq__bnode_t *q) {
  if (q->op == DYNQ_OP_MATMUL) return cval(f, q->in[1])->dims[1];
  for (int i = 0; i < q->n_attr; i++)
    if (strcmp(q->attr[i].name, "n") == 0) return q->attr[i].i;
  return -1;
}

/* The layer with no activation yet that produces v, read only `want`
 * times: a QLinear, or an FP32 MatMul of a constant float32 matrix (the
 * --fp32 form of a linear layer, whose bias and activation the engine's
 * MatMul applies in its GEMM epilogue).  NULL otherwise. */
static dynq__bnode_t *plain_qlinear(fctx_t *f, int32_t v, int want) {
  dynq__bnode_t *q = prod_op(f, v, DYNQ_OP_QLINEAR, want);
  if (q == NULL && (q = prod_op(f, v, DYNQ_OP_MATMUL, want)) != NULL) {
    const dynq__value_t *w = cval(f, q->in[1]);
    dynq__attr_t *a = act_attr(q);
    return q->n_in >= 2 && w != NULL && w->dtype == DYNQ_DT_F32 && w->rank == 2 &&
           (a == NULL || a->i == DYNQ_ACT_NONE) ? q : NULL;
  }
  dynq__attr_t *a = q ? act_attr(q) : NULL;
  return a && a->i == DYNQ_ACT_NONE ? q : NULL;
}

/* Sets a plain layer's activation (a MatMul gets the attribute and its
 * bias slot, so that no later pattern takes it for a bare product). */
static void set_act(dynq__bnode_t *q, int act) {
  dynq__attr_t *a = act_attr(q);
  if (a != NULL) {
    a->i = act;
    return;
  }
  dynq__imp_node_attr_i(q, "act", act);
  if (q->n_in < 3) q->in[q->n_in++] = -1;
}

/* The bias slot of a plain layer. */
static int bias_slot(const dynq__bnode_t *q) { return q->op == DYNQ_OP_MATMUL ? 2 : 4; }

/* Add(QLinear, constant [N]) -> the QLinear's bias (summed with the one
 * it has).  The Add's output becomes the QLinear's. */
static int try_bias(fctx_t *f, int add_i, conv_t *c) {
  dynq__builder_t *b = f->b;
  dynq__bnode_t *add = &b->nodes[add_i];
  if (add->op != DYNQ_OP_ADD || add->n_in != 2) return 0;
  for (int side = 0; side < 2; side++) {
    dynq__bnode_t *q = plain_qlinear(f, add->in[side], 1);
    int32_t cv = add->in[1 - side];
    int64_t N = q ? qlinear_n(f, q) : -1;
    if (q == NULL || N < 1 || const_vec(f, cv) != N) continue;
    const int slot = bias_slot(q);
    const float *extra = cval(f, cv)->data;
    const float *old = q->n_in > slot && q->in[slot] >= 0 ? cval(f, q->in[slot])->data : NULL;
    float *nb = dynq__imp_pool_alloc(&b->pool, (size_t)N * sizeof(float));
    if (nb == NULL) return -1;
    for (int64_t j = 0; j < N; j++) nb[j] = (old ? old[j] : 0.0f) + extra[j];
    int64_t d[1] = {N};
    int32_t qi = (int32_t)(q - b->nodes);
    int32_t bv = dynq__imp_add_const(b, q->name, ".bias", DYNQ_DT_F32, 1, d, nb,
                                     (size_t)N * sizeof(float));
    if (bv < 0) return -1;
    q = &b->nodes[qi];
    add = &b->nodes[add_i];
    while (q->n_in <= slot) q->in[q->n_in++] = -1;
    q->in[slot] = bv;
    b->producer[q->out[0]] = -1;
    q->out[0] = add->out[0];
    b->producer[add->out[0]] = qi;
    add->dead = 1;
    (void)c;
    return 1;
  }
  return 0;
}

static int near(float v, float want) { return fabsf(v - want) <= 1e-5f * fabsf(want); }

/* x * 0.5 * (1 + erf(x / sqrt 2)) ending at node mul_i (the * 0.5). */
static int try_gelu(fctx_t *f, int mul_i) {
  dynq__builder_t *b = f->b;
  dynq__bnode_t *m2 = &b->nodes[mul_i];
  float k;
  if (m2->op != DYNQ_OP_MUL || m2->n_in != 2) return 0;
  for (int s2 = 0; s2 < 2; s2++) {
    if (!const_scalar(f, m2->in[1 - s2], &k) || !near(k, 0.5f)) continue;
    dynq__bnode_t *m1 = prod_op(f, m2->in[s2], DYNQ_OP_MUL, 1);
    if (m1 == NULL) continue;
    for (int s1 = 0; s1 < 2; s1++) {
      int32_t h = m1->in[s1];
      dynq__bnode_t *q = plain_qlinear(f, h, 2);
      dynq__bnode_t *a = prod_op(f, m1->in[1 - s1], DYNQ_OP_ADD, 1);
      if (q == NULL || a == NULL) continue;
      for (int sa = 0; sa < 2; sa++) {
        if (!const_scalar(f, a->in[1 - sa], &k) || !near(k, 1.0f)) continue;
        dynq__bnode_t *e = prod_op(f, a->in[sa], DYNQ_OP_ERF, 1);
        dynq__bnode_t *d = e ? prod_op(f, e->in[0], DYNQ_OP_DIV, 1) : NULL;
        if (d == NULL || d->in[0] != h || !const_scalar(f, d->in[1], &k) ||
            !near(k, 1.41421356f))
          continue;
        int32_t qi = (int32_t)(q - b->nodes);
        d->dead = e->dead = a->dead = m1->dead = m2->dead = 1;
        set_act(q, DYNQ_ACT_GELU);
        b->producer[q->out[0]] = -1;
        q->out[0] = m2->out[0];
        b->producer[m2->out[0]] = qi;
        return 1;
      }
    }
  }
  return 0;
}

/* The other operand of a two-input node n when one side is v; -1 if neither. */
static int32_t other_in(const dynq__bnode_t *n, int32_t v) {
  if (n == NULL || n->n_in != 2) return -1;
  return n->in[0] == v ? n->in[1] : n->in[1] == v ? n->in[0] : -1;
}

/* A Mul of value v by a float32 scalar constant near want: the node. */
static dynq__bnode_t *mul_by(fctx_t *f, int32_t v, float want) {
  dynq__bnode_t *m = prod_op(f, v, DYNQ_OP_MUL, 1);
  float k;
  if (m == NULL || m->n_in != 2) return NULL;
  for (int s = 0; s < 2; s++)
    if (const_scalar(f, m->in[s], &k) && near(k, want)) return m;
  return NULL;
}

/* The operand of a Mul by a scalar constant (the non-constant side). */
static int32_t scaled_operand(fctx_t *f, const dynq__bnode_t *m) {
  float k;
  return const_scalar(f, m->in[0], &k) ? m->in[1] : m->in[0];
}

/* PyTorch's tanh GELU (F.gelu(approximate="tanh")) after a QLinear h:
 *   0.5 * (h * (1 + tanh(sqrt(2/pi) * (h + 0.044715 * (h * (h * h))))))
 * ending at node mul_i (the * 0.5).  h is read by h * h (twice), the
 * cube, the inner Add and the outer product: 5 readers. */
static int try_gelu_tanh(fctx_t *f, int mul_i) {
  dynq__builder_t *b = f->b;
  dynq__bnode_t *m5 = &b->nodes[mul_i];
  float k;
  if (m5->op != DYNQ_OP_MUL || m5->n_in != 2) return 0;
  int s5 = const_scalar(f, m5->in[0], &k) ? 0 : 1;
  if (!const_scalar(f, m5->in[s5], &k) || !near(k, 0.5f)) return 0;
  dynq__bnode_t *m4 = prod_op(f, m5->in[1 - s5], DYNQ_OP_MUL, 1);
  if (m4 == NULL || m4->n_in != 2) return 0;
  for (int s4 = 0; s4 < 2; s4++) {
    int32_t h = m4->in[s4];
    dynq__bnode_t *q = plain_qlinear(f, h, 5);
    dynq__bnode_t *a3 = prod_op(f, m4->in[1 - s4], DYNQ_OP_ADD, 1);
    if (q == NULL || a3 == NULL || a3->n_in != 2) continue;
    int sa = const_scalar(f, a3->in[0], &k) ? 0 : 1;
    if (!const_scalar(f, a3->in[sa], &k) || !near(k, 1.0f)) continue;
    dynq__bnode_t *th = prod_op(f, a3->in[1 - sa], DYNQ_OP_TANH, 1);
    dynq__bnode_t *m3 = th ? mul_by(f, th->in[0], 0.7978845608f) : NULL;
    dynq__bnode_t *a2 = m3 ? prod_op(f, scaled_operand(f, m3), DYNQ_OP_ADD, 1) : NULL;
    int32_t c2 = other_in(a2, h);
    dynq__bnode_t *m2 = mul_by(f, c2, 0.044715f);
    dynq__bnode_t *m1 = m2 ? prod_op(f, scaled_operand(f, m2), DYNQ_OP_MUL, 1) : NULL;
    dynq__bnode_t *m0 = m1 ? prod_op(f, other_in(m1, h), DYNQ_OP_MUL, 1) : NULL;
    if (m0 == NULL || m0->n_in != 2 || m0->in[0] != h || m0->in[1] != h) continue;
    dynq__bnode_t *dead[] = {m0, m1, m2, a2, m3, th, a3, m4};
    for (size_t j = 0; j < sizeof(dead) / sizeof(dead[0]); j++) dead[j]->dead = 1;
    set_act(q, DYNQ_ACT_GELU_TANH);
    take_output(f, q, m5);
    return 1;
  }
  return 0;
}

/* x * Clip(x + 3, 0, 6) / 6 ending at node div_i (the / 6). */
static int try_hardswish(fctx_t *f, int div_i) {
  dynq__builder_t *b = f->b;
  dynq__bnode_t *dv = &b->nodes[div_i];
  float k, lo, hi;
  if (dv->op != DYNQ_OP_DIV || dv->n_in != 2 || !const_scalar(f, dv->in[1], &k) || !near(k, 6.0f))
    return 0;
  dynq__bnode_t *m = prod_op(f, dv->in[0], DYNQ_OP_MUL, 1);
  if (m == NULL) return 0;
  for (int sm = 0; sm < 2; sm++) {
    int32_t x = m->in[sm];
    dynq__bnode_t *cl = prod_op(f, m->in[1 - sm], DYNQ_OP_CLIP, 1);
    if (cl == NULL || cl->n_in != 3 || !const_scalar(f, cl->in[1], &lo) ||
        !const_scalar(f, cl->in[2], &hi) || lo != 0.0f || !near(hi, 6.0f))
      continue;
    dynq__bnode_t *ad = prod_op(f, cl->in[0], DYNQ_OP_ADD, 1);
    if (ad == NULL) continue;
    for (int sa = 0; sa < 2; sa++) {
      if (ad->in[sa] != x || !const_scalar(f, ad->in[1 - sa], &k) || !near(k, 3.0f)) continue;
      ad->dead = cl->dead = m->dead = 1;
      int32_t out = dv->out[0];
      const char *name = dv->name;
      memset(dv, 0, sizeof(*dv));
      dv->op = DYNQ_OP_HARD_SWISH;
      dv->name = name;
      dv->n_in = 1;
      dv->in[0] = x;
      dv->n_out = 1;
      dv->out[0] = out;
      return 1;
    }
  }
  return 0;
}

static int64_t battr_i(const dynq__bnode_t *n, const char *name, int64_t dflt) {
  return dynq__node_attr_i(&(dynq__node_t){.n_attr = n->n_attr, .attr = n->attr}, name, dflt);
}

/* The live node that reads v, when it is v's only reader; else NULL. */
static dynq__bnode_t *sole_reader(fctx_t *f, int32_t v) {
  if (v < 0 || v >= f->b->n_values || f->readers[v] != 1) return NULL;
  for (int i = 0; i < f->b->n_nodes; i++) {
    dynq__bnode_t *n = &f->b->nodes[i];
    if (n->dead) continue;
    for (int k = 0; k < n->n_in; k++)
      if (n->in[k] == v) return n;
  }
  return NULL;
}

/* A Transpose's permutation as a constant int64 value (made for the
 * default reversal when the input's rank is known); -1 when unknown, -2
 * on OOM. */
static int32_t transpose_perm(fctx_t *f, const dynq__bnode_t *t) {
  if (t->n_in > 1 && t->in[1] >= 0) {
    const dynq__value_t *p = cval(f, t->in[1]);
    return p && p->dtype == DYNQ_DT_I64 && p->rank == 1 ? t->in[1] : -1;
  }
  int r = f->b->values[t->in[0]].rank;
  if (r < 1 || r > DYNQ_MAX_RANK) return -1;
  int64_t *pv = dynq__imp_pool_alloc(&f->b->pool, sizeof(int64_t) * (size_t)r), d[1] = {r};
  if (pv == NULL) return -2;
  for (int k = 0; k < r; k++) pv[k] = r - 1 - k;
  int32_t v = dynq__imp_add_const(f->b, t->name, ".perm", DYNQ_DT_I64, 1, d, pv,
                                  sizeof(int64_t) * (size_t)r);
  return v < 0 ? -2 : v;
}

/* Moves node q's output to the value node n wrote (n dies). */
static void take_output(fctx_t *f, dynq__bnode_t *q, dynq__bnode_t *n) {
  int32_t qi = (int32_t)(q - f->b->nodes);
  f->b->producer[q->out[0]] = -1;
  q->out[0] = n->out[0];
  f->b->producer[n->out[0]] = qi;
  n->dead = 1;
}

/* An FP32 MatMul (attention's Q K^T and P V) with the Transposes of its
 * operands, a scalar Div or Mul of its result and a Transpose of its
 * result folded in: a StridedMatMul that reads and writes in place. */
static int try_strided_matmul(fctx_t *f, int mm_i, int int8) {
  dynq__builder_t *b = f->b;
  if (b->nodes[mm_i].op != DYNQ_OP_MATMUL || b->nodes[mm_i].n_in != 2) return 0;
  int32_t perm[3] = {-1, -1, -1}, src[2];
  dynq__bnode_t *tr[3] = {NULL, NULL, NULL}, *sc = NULL;
  float alpha = 1.0f;
  for (int k = 0; k < 2; k++) {
    src[k] = b->nodes[mm_i].in[k];
    dynq__bnode_t *t = prod_op(f, src[k], DYNQ_OP_TRANSPOSE, 1);
    if (t == NULL || (k == 1 && b->nodes[mm_i].in[0] == b->nodes[mm_i].in[1])) continue;
    int32_t p = transpose_perm(f, t);
    if (p == -2) return -1;
    if (p < 0) continue;
    tr[k] = t;
    perm[k] = p;
    src[k] = t->in[0];
  }
  dynq__bnode_t *mm = &b->nodes[mm_i]; /* transpose_perm may move the array */
  int32_t y = mm->out[0];
  dynq__bnode_t *r = sole_reader(f, y);
  float k;
  if (r != NULL && (r->op == DYNQ_OP_DIV || r->op == DYNQ_OP_MUL) && r->n_in == 2 &&
      r->n_out == 1) {
    int side = r->in[0] == y ? 1 : 0;  /* the scalar's side */
    if ((r->op == DYNQ_OP_MUL || side == 1) && r->in[1 - side] == y &&
        const_scalar(f, r->in[side], &k) && k != 0.0f && isfinite(k)) {
      alpha = r->op == DYNQ_OP_DIV ? 1.0f / k : k;
      sc = r;
      y = r->out[0];
      r = sole_reader(f, y);
    }
  }
  if (r != NULL && r->op == DYNQ_OP_TRANSPOSE && r->n_out == 1 && r->in[0] == y) {
    int32_t p = transpose_perm(f, r);
    if (p == -2) return -1;
    mm = &b->nodes[mm_i];
    if (p >= 0) {
      tr[2] = r;
      perm[2] = p;
    }
  }
  if (tr[0] == NULL && tr[1] == NULL && tr[2] == NULL && sc == NULL) return 0;
  for (int j = 0; j < 2; j++)
    if (tr[j]) tr[j]->dead = 1;
  if (sc) take_output(f, mm, sc);
  if (tr[2]) take_output(f, mm, tr[2]);
  mm->op = DYNQ_OP_STRIDED_MATMUL;
  mm->n_in = 5;
  mm->in[0] = src[0];
  mm->in[1] = src[1];
  for (int j = 0; j < 3; j++) mm->in[2 + j] = perm[j];
  if (alpha != 1.0f) dynq__imp_node_attr_f(mm, "alpha", alpha);
  if (int8) dynq__imp_node_attr_i(mm, "int8", 1);
  return 1;
}

/* Softmax(Add(x, mask)) over the last axis -> MaskedSoftmax(x, mask). */
static int try_masked_softmax(fctx_t *f, int sm_i) {
  dynq__bnode_t *sm = &f->b->nodes[sm_i];
  if (sm->op != DYNQ_OP_SOFTMAX || sm->n_in != 1) return 0;
  int64_t ax = battr_i(sm, "axis", -1);
  int rank = f->b->values[sm->in[0]].rank;
  if (ax != -1 && !(rank > 0 && ax == rank - 1)) return 0;
  dynq__bnode_t *a = prod_op(f, sm->in[0], DYNQ_OP_ADD, 1);
  if (a == NULL || a->n_in != 2) return 0;
  int32_t x = a->in[0], m = a->in[1];
  a->dead = 1;
  sm->op = DYNQ_OP_MASKED_SOFTMAX;
  sm->n_in = 2;
  sm->in[0] = x;
  sm->in[1] = m;
  sm->n_attr = 0;
  return 1;
}

static float battr_f(const dynq__bnode_t *n, const char *name, float dflt) {
  for (int i = 0; i < n->n_attr; i++)
    if (strcmp(n->attr[i].name, name) == 0 && n->attr[i].type == DYNQ_ATTR_FLOAT) return n->attr[i].f;
  return dflt;
}

/* INT8 StridedMatMul(Q, K) -> MaskedSoftmax(., Mask) -> StridedMatMul(.,
 * V), each value read only by the next node, the scores unpermuted and
 * unscaled after the softmax, P read as it is: one Attention node in the
 * second product's place (lib/ops/attention.c).  FP32 attention keeps
 * its three nodes. */
static int try_attention(fctx_t *f, int pv_i) {
  dynq__builder_t *b = f->b;
  dynq__bnode_t *pv = &b->nodes[pv_i];
  if (pv->op != DYNQ_OP_STRIDED_MATMUL || battr_i(pv, "int8", 0) != 1 || pv->n_in < 2 ||
      (pv->n_in > 2 && pv->in[2] >= 0) || battr_f(pv, "alpha", 1.0f) != 1.0f)
    return 0;
  dynq__bnode_t *sm = prod_op(f, pv->in[0], DYNQ_OP_MASKED_SOFTMAX, 1);
  if (sm == NULL || sm->n_in != 2) return 0;
  dynq__bnode_t *qk = prod_op(f, sm->in[0], DYNQ_OP_STRIDED_MATMUL, 1);
  if (qk == NULL || battr_i(qk, "int8", 0) != 1 || qk->n_in < 2 || (qk->n_in > 4 && qk->in[4] >= 0))
    return 0;
  int32_t in[8] = {qk->in[0], qk->in[1], pv->in[1], sm->in[1],
                   qk->n_in > 2 ? qk->in[2] : -1, qk->n_in > 3 ? qk->in[3] : -1,
                   pv->n_in > 3 ? pv->in[3] : -1, pv->n_in > 4 ? pv->in[4] : -1};
  float alpha = battr_f(qk, "alpha", 1.0f);
  sm->dead = 1;
  qk->dead = 1;
  pv->op = DYNQ_OP_ATTENTION;
  pv->n_in = 8;
  memcpy(pv->in, in, sizeof(in));
  pv->n_attr = 0;
  if (alpha != 1.0f) dynq__imp_node_attr_f(pv, "alpha", alpha);
  dynq__imp_node_attr_i(pv, "int8", 1);
  return 1;
}

/* 0 when what the importer knows of two values' shapes shows a numpy
 * broadcast between them (ranks or dims that differ); intermediate
 * shapes are mostly unknown here, and AddLayerNorm computes a broadcast
 * pair correctly anyway (Add, then LayerNorm), just without the gain. */
static int may_be_same_shape(fctx_t *f, int32_t x, int32_t y) {
  const dynq__value_t *a = &f->b->values[x], *b = &f->b->values[y];
  if (a->rank < 0 || b->rank < 0) return 1;
  if (a->rank != b->rank) return 0;
  for (int d = 0; d < a->rank; d++)
    if (a->dims[d] >= 0 && b->dims[d] >= 0 && a->dims[d] != b->dims[d]) return 0;
  return 1;
}

/* LayerNormalization(Add(a, b), Scale, B) with constant Scale and B and
 * no Mean/InvStdDev outputs -> AddLayerNorm(a, b, Scale, B) in the Add's
 * place (so every reader of the sum still runs after it).  The sum stays
 * an output of the fused node when anything else reads it (a pre-LN
 * block's residual stream).  Refused: an Add of a constant (a bias, not a
 * residual) or of two values whose known shapes differ (a broadcast). */
static int try_add_layernorm(fctx_t *f, int ln_i) {
  dynq__builder_t *b = f->b;
  dynq__bnode_t *ln = &b->nodes[ln_i];
  if (ln->op != DYNQ_OP_LAYERNORM || ln->n_out != 1 || ln->n_in < 2 || ln->n_in > 3) return 0;
  int32_t sum = ln->in[0];
  dynq__bnode_t *add = prod(f, sum);
  if (add == NULL || add->op != DYNQ_OP_ADD || add->n_in != 2 || add->n_out != 1) return 0;
  if (cval(f, ln->in[1]) == NULL || (ln->n_in > 2 && ln->in[2] >= 0 && cval(f, ln->in[2]) == NULL))
    return 0;
  if (cval(f, add->in[0]) || cval(f, add->in[1]) || !may_be_same_shape(f, add->in[0], add->in[1]))
    return 0;
  int keep_sum = f->readers[sum] > 1;
  int64_t axis = battr_i(ln, "axis", -1);
  float eps = 1e-5f;
  for (int i = 0; i < ln->n_attr; i++)
    if (strcmp(ln->attr[i].name, "epsilon") == 0) eps = ln->attr[i].f;
  int32_t a0 = add->in[0], a1 = add->in[1], sc = ln->in[1];
  int32_t bias = ln->n_in > 2 ? ln->in[2] : -1, y = ln->out[0];
  const char *name = ln->name;
  int32_t ai = (int32_t)(add - b->nodes);
  ln->dead = 1;
  b->producer[y] = ai;
  memset(add, 0, sizeof(*add));
  add->op = DYNQ_OP_ADD_LAYERNORM;
  add->name = name;
  add->n_in = bias >= 0 ? 4 : 3;
  add->in[0] = a0;
  add->in[1] = a1;
  add->in[2] = sc;
  add->in[3] = bias;
  add->n_out = keep_sum ? 2 : 1;
  add->out[0] = y;
  if (keep_sum) add->out[1] = sum;
  else b->producer[sum] = -1;
  dynq__imp_node_attr_i(add, "axis", axis);
  dynq__imp_node_attr_f(add, "epsilon", eps);
  return 1;
}

int dynq__imp_fuse(conv_t *c, int *ret_layernorms, int *ret_biases, int *ret_gelus) {
  fctx_t f = {.b = &c->b};
  int n_mm = 0, n_sm = 0, n_aln = 0, n_att = 0;
  *ret_layernorms = *ret_biases = *ret_gelus = 0;
  /* one pass per pattern, readers recounted: each rewrite moves outputs */
  for (int pass = 0; pass < 7; pass++) {
    if (count_readers(&f) != 0) {
      dynq__imp_errorf("out of memory");
      return -1;
    }
    for (int i = 0; i < c->b.n_nodes; i++) {
      if (c->b.nodes[i].dead) continue;
      int r = pass == 0 ? try_layernorm(&f, i) + try_hardswish(&f, i)
              : pass == 1 ? try_bias(&f, i, c)
              : pass == 2 ? try_gelu(&f, i) + try_gelu_tanh(&f, i)
              : pass == 3 ? try_strided_matmul(&f, i, !c->opt.fp32_attention && !c->opt.fp32)
              : pass == 4 ? try_masked_softmax(&f, i)
              : pass == 5 ? try_add_layernorm(&f, i) : try_attention(&f, i);
      if (r < 0) {
        free(f.readers);
        dynq__imp_errorf("out of memory");
        return -1;
      }
      int *count[] = {ret_layernorms, ret_biases, ret_gelus, &n_mm, &n_sm, &n_aln, &n_att};
      *count[pass] += r;
    }
    free(f.readers);
    f.readers = NULL;
  }
  if (n_mm + n_sm > 0 && !c->opt.quiet)
    printf("fused: %d attention MatMuls with their Transposes and scale into StridedMatMul, "
           "%d mask Adds into MaskedSoftmax (--no-fuse keeps them)\n", n_mm, n_sm);
  if (n_att > 0 && !c->opt.quiet)
    printf("fused: %d INT8 attention products with the masked softmax between them into Attention "
           "(--no-fuse keeps them)\n", n_att);
  if (n_aln > 0 && !c->opt.quiet)
    printf("fused: %d residual Add%s into the LayerNorm%s that read%s %s (AddLayerNorm; --no-fuse "
           "keeps them)\n", n_aln, n_aln == 1 ? "" : "s", n_aln == 1 ? "" : "s",
           n_aln == 1 ? "s" : "", n_aln == 1 ? "it" : "them");
  return 0;
}

