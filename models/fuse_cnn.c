/*
 * CNN import-time fusions: the elementwise tail of a convolution moved
 * into the conv's epilogue (lib/ops/conv.c), run on each output row while
 * it is in cache instead of as separate passes over the whole tensor.
 *
 *   Conv -> [Mul s] -> [Add s | Sub s] -> [Relu | Clip | HardSigmoid |
 *           HardSwish | Sigmoid] -> [Mul s] -> [Add s | Sub s]
 *
 * where each s is a float32 scalar constant and every step is optional
 * (PaddlePaddle's PP-LCNet "learnable affine" blocks are exactly this
 * around each conv's HardSwish).  The conv (FP32 CONV or INT8 QCONV)
 * takes over the last fused node's output value, so every reader keeps
 * its value index; the fused nodes are marked dead.  A step matches only
 * when the previous value has that node as its one reader and is not a
 * graph output.
 *
 * The epilogue performs the same float operations as the nodes it
 * replaces (a Sub of s is an Add of -s, exactly), so the fused graph
 * computes the unfused one's bits.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"

enum { ST_PRE_MUL, ST_PRE_ADD, ST_ACT, ST_POST_MUL, ST_POST_ADD, ST_END };

typedef struct cnnf {
  dynq__builder_t *b;
  int *readers;     /* [n_values]: live node inputs, +1 per graph output */
  int32_t *reader;  /* [n_values]: a live node reading the value, or -1 */
} cnnf_t;

/* v is a float32 constant holding one element, of rank <= max_rank (a
 * higher rank would broadcast the conv's output to more dimensions). */
static int scalar_of(const cnnf_t *f, int32_t v, int max_rank, float *ret) {
  if (v < 0 || v >= f->b->n_values) return 0;
  const dynq__value_t *c = &f->b->values[v];
  if (c->data == NULL || c->dtype != DYNQ_DT_F32 || c->nbytes != sizeof(float) ||
      c->rank > max_rank)
    return 0;
  memcpy(ret, c->data, sizeof(float));
  return 1;
}

static const dynq__attr_t *battr(const dynq__bnode_t *n, const char *name) {
  for (int i = 0; i < n->n_attr; i++)
    if (strcmp(n->attr[i].name, name) == 0) return &n->attr[i];
  return NULL;
}

static float battr_f(const dynq__bnode_t *n, const char *name, float dflt) {
  const dynq__attr_t *a = battr(n, name);
  return a && a->type == DYNQ_ATTR_FLOAT ? a->f : dflt;
}

/* The rank of the conv's output, or -1 when unknown. */
static int conv_out_rank(const cnnf_t *f, const dynq__bnode_t *cv) {
  if (cv->op == DYNQ_OP_QCONV) {
    const dynq__attr_t *a = battr(cv, "spatial");
    return a && a->type == DYNQ_ATTR_INT && a->i >= 1 && a->i <= 3 ? (int)a->i + 2 : -1;
  }
  if (cv->n_in < 2 || cv->in[1] < 0) return -1;
  int r = f->b->values[cv->in[1]].rank;
  return r >= 3 && r <= 5 ? r : -1;
}

/* The epilogue gathered so far for one conv. */
typedef struct epi {
  int stage;                  /* ST_*: the first step still open */
  int has_pre, has_post, act;
  float pre_mul, pre_add, post_mul, post_add, act_a, act_b;
} epi_t;

/* Whether node nx, reading the conv's current output y, extends e. */
static int take(const cnnf_t *f, const dynq__bnode_t *nx, int32_t y, int rank, epi_t *e) {
  float s;
  switch (nx->op) {
  case DYNQ_OP_MUL:
  case DYNQ_OP_ADD:
  case DYNQ_OP_SUB: {
    if (nx->n_in != 2 || nx->n_out != 1) return 0;
    int side = nx->in[0] == y ? 0 : 1;
    if (nx->in[side] != y || !scalar_of(f, nx->in[1 - side], rank, &s)) return 0;
    if (nx->op == DYNQ_OP_SUB) {
      if (side != 0) return 0; /* s - y is not y + s' */
      s = -s;
    }
    const int mul = nx->op == DYNQ_OP_MUL;
    if (e->stage <= (mul ? ST_PRE_MUL : ST_PRE_ADD)) {
      e->has_pre = 1;
      *(mul ? &e->pre_mul : &e->pre_add) = s;
      e->stage = mul ? ST_PRE_ADD : ST_ACT;
      return 1;
    }
    if (e->stage <= (mul ? ST_POST_MUL : ST_POST_ADD)) {
      e->has_post = 1;
      *(mul ? &e->post_mul : &e->post_add) = s;
      e->stage = mul ? ST_POST_ADD : ST_END;
      return 1;
    }
    return 0;
  }
  case DYNQ_OP_RELU:
  case DYNQ_OP_CLIP:
  case DYNQ_OP_HARD_SIGMOID:
  case DYNQ_OP_HARD_SWISH:
  case DYNQ_OP_SIGMOID: {
    if (e->stage > ST_ACT || nx->n_in < 1 || nx->in[0] != y || nx->n_out != 1) return 0;
    e->act_a = e->act_b = 0.0f;
    if (nx->op == DYNQ_OP_CLIP) {
      e->act_a = -INFINITY;
      e->act_b = INFINITY;
      if (nx->n_in > 1 && nx->in[1] >= 0 && !scalar_of(f, nx->in[1], 8, &e->act_a)) return 0;
      if (nx->n_in > 2 && nx->in[2] >= 0 && !scalar_of(f, nx->in[2], 8, &e->act_b)) return 0;
      if (e->act_a != e->act_a || e->act_b != e->act_b) return 0; /* NaN bounds: leave it */
    } else if (nx->op == DYNQ_OP_HARD_SIGMOID) {
      e->act_a = battr_f(nx, "alpha", 0.2f);
      e->act_b = battr_f(nx, "beta", 0.5f);
    }
    e->act = nx->op == DYNQ_OP_RELU           ? DYNQ_CONV_ACT_RELU
             : nx->op == DYNQ_OP_CLIP         ? DYNQ_CONV_ACT_CLIP
             : nx->op == DYNQ_OP_HARD_SIGMOID ? DYNQ_CONV_ACT_HARDSIGMOID
             : nx->op == DYNQ_OP_HARD_SWISH   ? DYNQ_CONV_ACT_HARDSWISH
                                              : DYNQ_CONV_ACT_SIGMOID;
    e->stage = ST_POST_MUL;
    return 1;
  }
  default:
    return 0;
  }
}

/* Fuse the tail of conv node ci; 1 when anything was fused. */
static int fuse_conv(cnnf_t *f, int32_t ci) {
  dynq__builder_t *b = f->b;
  dynq__bnode_t *cv = &b->nodes[ci];
  if (cv->n_out != 1 || battr(cv, "act") || battr(cv, "pre_mul") || battr(cv, "post_mul"))
    return 0;
  /* the attributes must fit (the builder drops what does not) */
  if (cv->n_attr + 7 > DYNQ_IMP_MAX_ATTR) return 0;
  const int rank = conv_out_rank(f, cv);
  if (rank < 0) return 0;
  epi_t e = {.stage = ST_PRE_MUL, .pre_mul = 1.0f, .post_mul = 1.0f};
  int fused = 0;
  while (e.stage < ST_END) {
    int32_t y = cv->out[0];
    if (f->readers[y] != 1 || f->reader[y] < 0) break; /* graph output, or shared */
    dynq__bnode_t *nx = &b->nodes[f->reader[y]];
    if (nx->dead || !take(f, nx, y, rank, &e)) break;
    int32_t z = nx->out[0];
    nx->dead = 1;
    b->producer[y] = -1;
    cv->out[0] = z;
    b->producer[z] = ci;
    fused++;
  }
  if (fused == 0) return 0;
  if (e.has_pre) {
    dynq__imp_node_attr_f(cv, "pre_mul", e.pre_mul);
    dynq__imp_node_attr_f(cv, "pre_add", e.pre_add);
  }
  if (e.act != DYNQ_CONV_ACT_NONE) {
    dynq__imp_node_attr_i(cv, "act", e.act);
    dynq__imp_node_attr_f(cv, "act_a", e.act_a);
    dynq__imp_node_attr_f(cv, "act_b", e.act_b);
  }
  if (e.has_post) {
    dynq__imp_node_attr_f(cv, "post_mul", e.post_mul);
    dynq__imp_node_attr_f(cv, "post_add", e.post_add);
  }
  return fused;
}

int dynq__imp_fuse_cnn(conv_t *c, int *ret_fused) {
  dynq__builder_t *b = &c->b;
  cnnf_t f = {.b = b};
  *ret_fused = 0;
  f.readers = calloc((size_t)b->n_values + 1, sizeof(int));
  f.reader = malloc(((size_t)b->n_values + 1) * sizeof(int32_t));
  if (f.readers == NULL || f.reader == NULL) {
    free(f.readers);
    free(f.reader);
    dynq__imp_errorf("out of memory");
    return -1;
  }
  for (int v = 0; v < b->n_values; v++) f.reader[v] = -1;
  for (int i = 0; i < b->n_nodes; i++) {
    const dynq__bnode_t *n = &b->nodes[i];
    if (n->dead) continue;
    for (int k = 0; k < n->n_in; k++)
      if (n->in[k] >= 0) {
        f.readers[n->in[k]]++;
        f.reader[n->in[k]] = i;
      }
  }
  for (int i = 0; i < b->n_outputs; i++) f.readers[b->outputs[i]]++;
  for (int32_t i = 0; i < b->n_nodes; i++) {
    const dynq__bnode_t *n = &b->nodes[i];
    if (!n->dead && (n->op == DYNQ_OP_CONV || n->op == DYNQ_OP_QCONV))
      *ret_fused += fuse_conv(&f, i);
  }
  free(f.readers);
  free(f.reader);
  return 0;
}
