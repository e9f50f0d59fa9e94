/*
 * dynq-quantize: ONNX -> .dynq.
 *
 * Owns the ONNX import: reading a ModelProto with protobuf-c, turning
 * initializers into constants, mapping supported ONNX ops 1:1 onto the
 * dynq IR (lib/graph.h), quantizing MatMul/Gemm with constant weights into
 * QLINEAR nodes (int8 per output channel, symmetric), and the per-layer
 * summary.  Nothing is written unless the whole graph converts: every
 * unsupported node is listed in one error, and the file itself is written
 * atomically by dynq__graph_write().
 *
 * Everything read from the ONNX file is untrusted: sizes are checked
 * against the bytes present and against DYNQ_MAX_RANK / DYNQ_MAX_ELEMS
 * before any copy, and a bad file gives an error naming what was wrong.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dynq-config.h"
#include "dynq/errors.h"
#include "graph.h"
#include "kernels/kernels.h"
#include "tensor.h"

#include "onnx.pb-c.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "raw_data in ONNX is little-endian; this reader copies it as is"
#endif

/* ONNX files larger than this are refused before reading (protobuf-c needs
 * the whole message in memory, and protobuf itself caps messages at 2 GiB). */
#define MAX_ONNX_BYTES ((int64_t)2 << 30)
#define MAX_NODE_INPUTS 6
#define MAX_NODE_ATTRS 8

/* ------------------------------------------------------------------ */
/* Allocation pool: everything the builder allocates lives until exit of
 * main's conversion, then goes in one sweep. */

typedef struct pool {
  void **p;     /* owned, each entry malloc'd */
  size_t n, cap;
} pool_t;

static void *pool_alloc(pool_t *pl, size_t n) {
  if (pl->n == pl->cap) {
    size_t cap = pl->cap ? pl->cap * 2 : 256;
    void **np = realloc(pl->p, cap * sizeof(*np));
    if (np == NULL) return NULL;
    pl->p = np;
    pl->cap = cap;
  }
  void *m = calloc(1, n ? n : 1);
  if (m == NULL) return NULL;
  pl->p[pl->n++] = m;
  return m;
}

static char *pool_printf(pool_t *pl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *pool_printf(pool_t *pl, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  char *s = pool_alloc(pl, (size_t)n + 1);
  if (s == NULL) return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

static void pool_free(pool_t *pl) {
  for (size_t i = 0; i < pl->n; i++) free(pl->p[i]);
  free(pl->p);
  memset(pl, 0, sizeof(*pl));
}

/* ------------------------------------------------------------------ */
/* Builder: the graph under construction. */

typedef struct bnode {
  int op;
  const char *name;
  int n_in;
  int32_t in[MAX_NODE_INPUTS];
  int32_t out;
  int n_attr;
  dynq__attr_t attr[MAX_NODE_ATTRS];
} bnode_t;

typedef struct builder {
  pool_t pool;
  dynq__value_t *values;   /* owned (realloc'd), n_values used */
  int n_values, cap_values;
  int32_t *producer;       /* owned, [cap_values]: builder node index or -1 */
  bnode_t *nodes;          /* owned (realloc'd) */
  int n_nodes, cap_nodes;
  int32_t *htab;           /* owned, name -> value index, open addressing */
  size_t hcap;             /* power of two, > 2 * n_values */
  int32_t *inputs, *outputs;  /* owned */
  int n_inputs, n_outputs;
} builder_t;

static uint64_t fnv1a(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

static int32_t lookup(const builder_t *b, const char *name) {
  if (b->hcap == 0) return -1;
  size_t h = (size_t)fnv1a(name, strlen(name)) & (b->hcap - 1);
  for (;;) {
    int32_t v = b->htab[h];
    if (v < 0) return -1;
    if (strcmp(b->values[v].name, name) == 0) return v;
    h = (h + 1) & (b->hcap - 1);
  }
}

static int rehash(builder_t *b, size_t cap) {
  int32_t *t = malloc(cap * sizeof(*t));
  if (t == NULL) return -ENOMEM;
  for (size_t i = 0; i < cap; i++) t[i] = -1;
  for (int v = 0; v < b->n_values; v++) {
    size_t h = (size_t)fnv1a(b->values[v].name, strlen(b->values[v].name)) & (cap - 1);
    while (t[h] >= 0) h = (h + 1) & (cap - 1);
    t[h] = v;
  }
  free(b->htab);
  b->htab = t;
  b->hcap = cap;
  return 0;
}

/* Add a value named `name` (kept by pointer: must outlive the builder).
 * Returns its index, or -1 on allocation failure. */
static int32_t add_value(builder_t *b, const char *name, dynq_dtype_t dt, int rank,
                         const int64_t *dims) {
  if (b->n_values == b->cap_values) {
    int cap = b->cap_values ? b->cap_values * 2 : 64;
    dynq__value_t *nv = realloc(b->values, (size_t)cap * sizeof(*nv));
    if (nv == NULL) return -1;
    b->values = nv;
    int32_t *np = realloc(b->producer, (size_t)cap * sizeof(*np));
    if (np == NULL) return -1;
    b->producer = np;
    b->cap_values = cap;
  }
  if ((size_t)(b->n_values + 1) * 2 >= b->hcap &&
      rehash(b, b->hcap ? b->hcap * 2 : 128) != 0)
    return -1;
  int32_t v = b->n_values++;
  dynq__value_t *val = &b->values[v];
  memset(val, 0, sizeof(*val));
  val->name = name;
  val->dtype = dt;
  val->rank = rank;
  for (int i = 0; i < rank && i < DYNQ_MAX_RANK; i++) val->dims[i] = dims ? dims[i] : -1;
  b->producer[v] = -1;
  size_t h = (size_t)fnv1a(name, strlen(name)) & (b->hcap - 1);
  while (b->htab[h] >= 0) h = (h + 1) & (b->hcap - 1);
  b->htab[h] = v;
  return v;
}

/* A name not yet used, derived from base (for constants we synthesize). */
static const char *fresh_name(builder_t *b, const char *base, const char *suffix) {
  char *s = pool_printf(&b->pool, "%s%s", base, suffix);
  for (int i = 1; s != NULL && lookup(b, s) >= 0; i++)
    s = pool_printf(&b->pool, "%s%s.%d", base, suffix, i);
  return s;
}

/* A new constant holding a pool-owned copy-free buffer `data`. */
static int32_t add_const(builder_t *b, const char *base, const char *suffix,
                         dynq_dtype_t dt, int rank, const int64_t *dims,
                         const void *data, size_t nbytes) {
  const char *name = fresh_name(b, base, suffix);
  if (name == NULL) return -1;
  int32_t v = add_value(b, name, dt, rank, dims);
  if (v < 0) return -1;
  b->values[v].data = data;
  b->values[v].nbytes = nbytes;
  return v;
}

static bnode_t *add_node(builder_t *b, int op, const char *name) {
  if (b->n_nodes == b->cap_nodes) {
    int cap = b->cap_nodes ? b->cap_nodes * 2 : 64;
    bnode_t *nn = realloc(b->nodes, (size_t)cap * sizeof(*nn));
    if (nn == NULL) return NULL;
    b->nodes = nn;
    b->cap_nodes = cap;
  }
  bnode_t *n = &b->nodes[b->n_nodes++];
  memset(n, 0, sizeof(*n));
  n->op = op;
  n->name = name;
  n->out = -1;
  return n;
}

static void node_in(bnode_t *n, int32_t v) { n->in[n->n_in++] = v; }

static void node_attr_i(bnode_t *n, const char *name, int64_t i) {
  dynq__attr_t *a = &n->attr[n->n_attr++];
  a->name = name;
  a->type = DYNQ_ATTR_INT;
  a->i = i;
}

static void node_attr_f(bnode_t *n, const char *name, float f) {
  dynq__attr_t *a = &n->attr[n->n_attr++];
  a->name = name;
  a->type = DYNQ_ATTR_FLOAT;
  a->f = f;
}

static void builder_free(builder_t *b) {
  free(b->values);
  free(b->producer);
  free(b->nodes);
  free(b->htab);
  free(b->inputs);
  free(b->outputs);
  pool_free(&b->pool);
  memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------------ */
/* Errors and reading the ONNX file. */

static const char *progname = "dynq-quantize";

static void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errorf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: error: ", progname);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* Read the whole file (at most MAX_ONNX_BYTES). */
static int read_file(const char *path, uint8_t **ret_buf, size_t *ret_n) {
  uint8_t *buf = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    errorf("cannot open '%s': %s", path, strerror(errno));
    return -errno;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    errorf("cannot stat '%s': %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    errorf("'%s' is not a regular file", path);
    goto fail;
  }
  if (st.st_size == 0) {
    errorf("'%s' is empty: not an ONNX model", path);
    goto fail;
  }
  if ((int64_t)st.st_size > MAX_ONNX_BYTES) {
    errorf("'%s' is %" PRId64 " bytes; the limit is %" PRId64
           " (models with external data are not supported)",
           path, (int64_t)st.st_size, MAX_ONNX_BYTES);
    goto fail;
  }
  size_t n = (size_t)st.st_size;
  buf = malloc(n);
  if (buf == NULL) {
    errorf("out of memory reading '%s' (%zu bytes)", path, n);
    goto fail;
  }
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      errorf("cannot read '%s': %s", path, strerror(errno));
      goto fail;
    }
    if (r == 0) {
      errorf("'%s' shrank while reading", path);
      goto fail;
    }
    got += (size_t)r;
  }
  close(fd);
  *ret_buf = buf;
  *ret_n = n;
  return 0;
fail:
  free(buf);
  close(fd);
  return DYNQ_EFORMAT;
}

static dynq_dtype_t dtype_from_onnx(int32_t t) {
  switch (t) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return DYNQ_DT_F32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return DYNQ_DT_I8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return DYNQ_DT_U8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return DYNQ_DT_I32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return DYNQ_DT_I64;
  default: return DYNQ_DT_INVALID;
  }
}

static const char *onnx_dtype_name(int32_t t) {
  static const char *const names[] = {
      "UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
      "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64",
      "COMPLEX128", "BFLOAT16"};
  if (t >= 0 && t < (int32_t)(sizeof(names) / sizeof(names[0]))) return names[t];
  return "unknown";
}

/* Convert an ONNX TensorProto into constant value `name`.  `what` says
 * where it came from for messages ("initializer", "Constant node"). */
static int32_t import_tensor(builder_t *b, const Onnx__TensorProto *t, const char *name,
                             const char *what) {
  if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
    errorf("%s '%s' keeps its data in an external file: external data is not "
           "supported (re-save the model with all tensors inside the .onnx)", what, name);
    return -1;
  }
  if (t->n_external_data > 0) {
    errorf("%s '%s' has external_data entries: external data is not supported", what, name);
    return -1;
  }
  if (t->segment != NULL) {
    errorf("%s '%s' is segmented: not supported", what, name);
    return -1;
  }
  dynq_dtype_t dt = dtype_from_onnx(t->data_type);
  if (dt == DYNQ_DT_INVALID) {
    errorf("%s '%s' has dtype %s (%d): only float32, int8, uint8, int32 and int64 "
           "are supported", what, name, onnx_dtype_name(t->data_type), (int)t->data_type);
    return -1;
  }
  if (t->n_dims > DYNQ_MAX_RANK) {
    errorf("%s '%s' has rank %zu; the limit is %d", what, name, t->n_dims, DYNQ_MAX_RANK);
    return -1;
  }
  for (size_t i = 0; i < t->n_dims; i++) {
    if (t->dims[i] < 0) {
      errorf("%s '%s' has a negative dimension (%" PRId64 ")", what, name, t->dims[i]);
      return -1;
    }
  }
  int rank = (int)t->n_dims;
  int64_t numel = dynq__shape_numel(rank, t->dims);
  if (numel < 0) {
    errorf("%s '%s' has more than %" PRId64 " elements", what, name, (int64_t)DYNQ_MAX_ELEMS);
    return -1;
  }
  size_t esz = dynq__dtype_size(dt);
  size_t nbytes = (size_t)numel * esz;
  void *data = pool_alloc(&b->pool, nbytes);
  if (data == NULL) {
    errorf("out of memory for %s '%s' (%zu bytes)", what, name, nbytes);
    return -1;
  }
  if (t->has_raw_data) {
    if (t->raw_data.len != nbytes) {
      errorf("%s '%s': raw_data holds %zu bytes but shape and dtype need %zu", what, name,
             t->raw_data.len, nbytes);
      return -1;
    }
    if (nbytes) memcpy(data, t->raw_data.data, nbytes);
  } else if (dt == DYNQ_DT_F32) {
    if (t->n_float_data != (size_t)numel) {
      errorf("%s '%s': float_data holds %zu values but the shape needs %" PRId64, what, name,
             t->n_float_data, numel);
      return -1;
    }
    if (nbytes) memcpy(data, t->float_data, nbytes);
  } else if (dt == DYNQ_DT_I64) {
    if (t->n_int64_data != (size_t)numel) {
      errorf("%s '%s': int64_data holds %zu values but the shape needs %" PRId64, what, name,
             t->n_int64_data, numel);
      return -1;
    }
    if (nbytes) memcpy(data, t->int64_data, nbytes);
  } else {
    /* int8, uint8 and int32 travel widened in int32_data. */
    if (t->n_int32_data != (size_t)numel) {
      errorf("%s '%s': int32_data holds %zu values but the shape needs %" PRId64, what, name,
             t->n_int32_data, numel);
      return -1;
    }
    for (int64_t i = 0; i < numel; i++) {
      int32_t x = t->int32_data[i];
      if (dt == DYNQ_DT_I32) {
        ((int32_t *)data)[i] = x;
      } else if (dt == DYNQ_DT_I8 && x >= -128 && x <= 127) {
        ((int8_t *)data)[i] = (int8_t)x;
      } else if (dt == DYNQ_DT_U8 && x >= 0 && x <= 255) {
        ((uint8_t *)data)[i] = (uint8_t)x;
      } else {
        errorf("%s '%s': value %" PRId32 " at index %" PRId64 " does not fit %s", what, name,
               x, i, dynq__dtype_name(dt));
        return -1;
      }
    }
  }
  if (lookup(b, name) >= 0) {
    errorf("%s '%s': the name is defined twice", what, name);
    return -1;
  }
  int32_t v = add_value(b, name, dt, rank, t->dims);
  if (v < 0) {
    errorf("out of memory");
    return -1;
  }
  b->values[v].data = data;
  b->values[v].nbytes = nbytes;
  return v;
}

/* dtype and shape of a graph input/output declaration. */
static int import_value_info(builder_t *b, const Onnx__ValueInfoProto *vi, const char *what,
                             dynq_dtype_t *ret_dt, int *ret_rank, int64_t *dims) {
  const char *name = vi->name ? vi->name : "";
  const Onnx__TypeProto *tp = vi->type;
  if (tp == NULL || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
      tp->tensor_type == NULL) {
    errorf("graph %s '%s' is not a tensor (sequences, maps and optionals are not supported)",
           what, name);
    return -1;
  }
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  dynq_dtype_t dt = dtype_from_onnx(tt->elem_type);
  if (dt == DYNQ_DT_INVALID) {
    errorf("graph %s '%s' has dtype %s (%d): only float32, int8, uint8, int32 and int64 "
           "are supported", what, name, onnx_dtype_name(tt->elem_type), (int)tt->elem_type);
    return -1;
  }
  int rank = -1;
  if (tt->shape != NULL) {
    if (tt->shape->n_dim > DYNQ_MAX_RANK) {
      errorf("graph %s '%s' has rank %zu; the limit is %d", what, name, tt->shape->n_dim,
             DYNQ_MAX_RANK);
      return -1;
    }
    rank = (int)tt->shape->n_dim;
    for (int i = 0; i < rank; i++) {
      const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
      dims[i] = -1;
      if (d != NULL && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
        if (d->dim_value < 0 || d->dim_value > DYNQ_MAX_ELEMS) {
          errorf("graph %s '%s': dimension %d is %" PRId64, what, name, i, d->dim_value);
          return -1;
        }
        dims[i] = d->dim_value;
      }
    }
  }
  (void)b;
  *ret_dt = dt;
  *ret_rank = rank;
  return 0;
}

/* ------------------------------------------------------------------ */
/* ONNX attributes. */

static const Onnx__AttributeProto *find_attr(const Onnx__NodeProto *n, const char *name) {
  for (size_t i = 0; i < n->n_attribute; i++)
    if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0)
      return n->attribute[i];
  return NULL;
}

static int attr_is_int(const Onnx__AttributeProto *a) {
  return a->has_i && (!a->has_type || a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
}

static int attr_is_float(const Onnx__AttributeProto *a) {
  return a->has_f && (!a->has_type || a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
}

static int64_t attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt) {
  const Onnx__AttributeProto *a = find_attr(n, name);
  return a && attr_is_int(a) ? a->i : dflt;
}

static float attr_f(const Onnx__NodeProto *n, const char *name, float dflt) {
  const Onnx__AttributeProto *a = find_attr(n, name);
  return a && attr_is_float(a) ? a->f : dflt;
}

/* ------------------------------------------------------------------ */
/* The op table: what each ONNX op becomes and what it may carry. */

enum { K_INT = 1, K_FLOAT = 2, K_TENSOR = 3 };

typedef struct attr_spec {
  const char *name;
  int kind;
} attr_spec_t;

typedef struct op_spec {
  const char *onnx;
  int op;             /* DYNQ_OP_*; DYNQ_OP_INVALID for Constant */
  int min_in, max_in;
  attr_spec_t attrs[5];
} op_spec_t;

static const op_spec_t op_table[] = {
    {"MatMul", DYNQ_OP_MATMUL, 2, 2, {{0}}},
    {"Gemm", DYNQ_OP_GEMM, 2, 3,
     {{"alpha", K_FLOAT}, {"beta", K_FLOAT}, {"transA", K_INT}, {"transB", K_INT}}},
    {"Add", DYNQ_OP_ADD, 2, 2, {{0}}},
    {"Sub", DYNQ_OP_SUB, 2, 2, {{0}}},
    {"Mul", DYNQ_OP_MUL, 2, 2, {{0}}},
    {"Div", DYNQ_OP_DIV, 2, 2, {{0}}},
    {"Relu", DYNQ_OP_RELU, 1, 1, {{0}}},
    {"Sigmoid", DYNQ_OP_SIGMOID, 1, 1, {{0}}},
    {"Tanh", DYNQ_OP_TANH, 1, 1, {{0}}},
    {"Softmax", DYNQ_OP_SOFTMAX, 1, 1, {{"axis", K_INT}}},
    {"Flatten", DYNQ_OP_FLATTEN, 1, 1, {{"axis", K_INT}}},
    {"Reshape", DYNQ_OP_RESHAPE, 2, 2, {{"allowzero", K_INT}}},
    {"Identity", DYNQ_OP_IDENTITY, 1, 1, {{0}}},
    {"Constant", DYNQ_OP_INVALID, 0, 0, {{"value", K_TENSOR}}},
};

static const op_spec_t *find_op(const char *type) {
  for (size_t i = 0; i < sizeof(op_table) / sizeof(op_table[0]); i++)
    if (strcmp(op_table[i].onnx, type) == 0) return &op_table[i];
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Conversion state. */

typedef struct options {
  int fp32, per_tensor, no_reference;
} options_t;

typedef struct layer_report {
  const char *name;
  const char *op;
  int64_t k, n;
  int quantized;
  const char *why;       /* why FP32, or extra notes */
  int relu_fused;
  size_t fp32_bytes, stored_bytes, ref_bytes;
} layer_report_t;

typedef struct conv {
  builder_t b;
  options_t opt;
  const Onnx__ModelProto *model;
  const Onnx__GraphProto *g;
  int64_t opset;
  const char **node_names;   /* owned array; strings pool-owned or proto-owned */
  int *uses;                 /* owned, per value: consumers (+1 per graph output) */
  layer_report_t *layers;    /* owned, one per MatMul/Gemm */
  int n_layers;
} conv_t;

static int is_graph_output(const conv_t *c, const char *name) {
  for (size_t i = 0; i < c->g->n_output; i++)
    if (c->g->output[i]->name && strcmp(c->g->output[i]->name, name) == 0) return 1;
  return 0;
}

/* Declared rank of a value from the graph inputs/outputs/value_info or the
 * values table; -1 when unknown. */
static int declared_rank(const conv_t *c, const char *name) {
  int32_t v = lookup(&c->b, name);
  if (v >= 0 && c->b.values[v].rank >= 0) return c->b.values[v].rank;
  const Onnx__ValueInfoProto *const *lists[] = {
      (const Onnx__ValueInfoProto *const *)c->g->value_info,
      (const Onnx__ValueInfoProto *const *)c->g->output};
  size_t counts[] = {c->g->n_value_info, c->g->n_output};
  for (int l = 0; l < 2; l++) {
    for (size_t i = 0; i < counts[l]; i++) {
      const Onnx__ValueInfoProto *vi = lists[l][i];
      if (vi->name == NULL || strcmp(vi->name, name) != 0) continue;
      if (vi->type && vi->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
          vi->type->tensor_type && vi->type->tensor_type->shape)
        return (int)vi->type->tensor_type->shape->n_dim;
    }
  }
  return -1;
}

static const dynq__value_t *const_of(const conv_t *c, const char *name) {
  if (name == NULL || name[0] == 0) return NULL;
  int32_t v = lookup(&c->b, name);
  if (v < 0 || c->b.values[v].data == NULL) return NULL;
  return &c->b.values[v];
}

/* Why this node cannot be converted, or NULL when it can.  The returned
 * string is pool-owned or static. */
static const char *check_node(conv_t *c, const Onnx__NodeProto *n) {
  pool_t *pl = &c->b.pool;
  const char *type = n->op_type ? n->op_type : "";
  if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
    return pool_printf(pl, "operator domain '%s' is not supported", n->domain);
  const op_spec_t *sp = find_op(type);
  if (sp == NULL) return "";
  if ((int)n->n_input < sp->min_in || (int)n->n_input > sp->max_in)
    return pool_printf(pl, "takes %d to %d inputs, has %zu", sp->min_in, sp->max_in,
                       n->n_input);
  if (n->n_output != 1) return pool_printf(pl, "must have 1 output, has %zu", n->n_output);
  if (n->output[0] == NULL || n->output[0][0] == 0) return "output has no name";
  for (size_t i = 0; i < n->n_attribute; i++) {
    const Onnx__AttributeProto *a = n->attribute[i];
    const char *an = a->name ? a->name : "";
    int kind = 0;
    for (int j = 0; j < 5 && sp->attrs[j].name; j++)
      if (strcmp(sp->attrs[j].name, an) == 0) kind = sp->attrs[j].kind;
    if (kind == 0) return pool_printf(pl, "attribute '%s' is not supported", an);
    if (a->ref_attr_name) return pool_printf(pl, "attribute '%s' is a function reference", an);
    if ((kind == K_INT && !attr_is_int(a)) || (kind == K_FLOAT && !attr_is_float(a)) ||
        (kind == K_TENSOR && a->t == NULL))
      return pool_printf(pl, "attribute '%s' has the wrong type", an);
  }
  int64_t ta = attr_i(n, "transA", 0), tb = attr_i(n, "transB", 0);
  if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1))
    return "transA/transB must be 0 or 1";
  if (strcmp(type, "Constant") == 0 && find_attr(n, "value") == NULL)
    return "only the 'value' form of Constant is supported";
  if (strcmp(type, "Reshape") == 0) {
    const dynq__value_t *s = const_of(c, n->input[1]);
    if (s == NULL || s->dtype != DYNQ_DT_I64 || s->rank != 1)
      return "the shape input must be a constant 1-D int64 initializer";
    int64_t az = attr_i(n, "allowzero", 0);
    if (az != 0 && az != 1) return "allowzero must be 0 or 1";
  }
  if (strcmp(type, "Softmax") == 0 && c->opset < 13) {
    /* Before opset 13 Softmax flattens the input to 2-D at `axis` (default
     * 1); that equals a softmax over the last axis only when axis is the
     * last one.  We do not implement the coerced form. */
    int64_t axis = attr_i(n, "axis", 1);
    int rank = declared_rank(c, n->input[0]);
    if (!(axis == -1 || (rank >= 1 && axis == rank - 1)))
      return pool_printf(pl, "opset %" PRId64 " Softmax with axis %" PRId64
                         " over an input of rank %d flattens it to 2-D; only a softmax over "
                         "the last axis is supported (re-export with opset >= 13)",
                         c->opset, axis, rank);
  }
  for (size_t i = 0; i < n->n_input; i++) {
    const char *in = n->input[i];
    int optional = strcmp(type, "Gemm") == 0 && i == 2;
    if (in == NULL || in[0] == 0) {
      if (!optional) return pool_printf(pl, "input %zu is empty", i);
      continue;
    }
    if (lookup(&c->b, in) < 0)
      return pool_printf(pl, "input '%s' is not produced by any earlier node, "
                         "initializer or graph input", in);
  }
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Quantization of one linear layer. */

/* Build the QLINEAR constants for effective weights W'[n][k] = alpha *
 * src, where src is B [K, N] (trans_b = 0) or [N, K] (trans_b = 1). */
typedef struct qlayer {
  int32_t wq, colsum, wscale, wref;
  size_t packed_bytes;
} qlayer_t;

static int quantize_weights(conv_t *c, const char *base, const float *src, int64_t K,
                            int64_t N, int trans_b, float alpha, qlayer_t *ret) {
  builder_t *b = &c->b;
  int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG), Np = dynq__round_up(N, DYNQ_QGEMM_NR);
  size_t packed = (size_t)Kp * (size_t)Np;
  float *wref = pool_alloc(&b->pool, (size_t)(K * N) * sizeof(float));
  int8_t *q = pool_alloc(&b->pool, (size_t)(K * N));
  int8_t *wq = pool_alloc(&b->pool, packed);
  int32_t *colsum = pool_alloc(&b->pool, (size_t)N * sizeof(int32_t));
  float *scale = pool_alloc(&b->pool, (size_t)N * sizeof(float));
  if (!wref || !q || !wq || !colsum || !scale) {
    errorf("out of memory quantizing '%s'", base);
    return -1;
  }
  /* Wref is [K, N] with alpha folded; quantize from exactly those floats
   * so both paths use the same matrix. */
  for (int64_t k = 0; k < K; k++) {
    for (int64_t n = 0; n < N; n++) {
      float w = trans_b ? src[n * K + k] : src[k * N + n];
      w = alpha * w;
      if (!isfinite(w)) {
        errorf("node '%s': weight [%" PRId64 ", %" PRId64 "] is not finite", base, k, n);
        return -1;
      }
      wref[k * N + n] = w;
    }
  }
  for (int64_t n = 0; n < N; n++) {
    float amax = 0.0f;
    for (int64_t k = 0; k < K; k++) amax = fmaxf(amax, fabsf(wref[k * N + n]));
    /* An all-zero channel keeps scale 1 and zero weights: no 0/0. */
    float s = amax > 0.0f ? amax / 127.0f : 1.0f;
    int32_t sum = 0;
    for (int64_t k = 0; k < K; k++) {
      float r = nearbyintf(wref[k * N + n] / s); /* default mode: half to even */
      if (r > 127.0f) r = 127.0f;
      if (r < -127.0f) r = -127.0f;
      q[n * K + k] = (int8_t)r;
      sum += (int32_t)r;
    }
    scale[n] = s;
    colsum[n] = sum;
  }
  dynq__pack_weights(N, K, q, wq);
  int64_t d_packed[1] = {(int64_t)packed}, d_n[1] = {N}, d_kn[2] = {K, N};
  ret->wq = add_const(b, base, ".wq", DYNQ_DT_I8, 1, d_packed, wq, packed);
  ret->colsum = add_const(b, base, ".colsum", DYNQ_DT_I32, 1, d_n, colsum,
                          (size_t)N * sizeof(int32_t));
  ret->wscale = add_const(b, base, ".wscale", DYNQ_DT_F32, 1, d_n, scale,
                          (size_t)N * sizeof(float));
  ret->wref = -1;
  if (!c->opt.no_reference)
    ret->wref = add_const(b, base, ".wref", DYNQ_DT_F32, 2, d_kn, wref,
                          (size_t)(K * N) * sizeof(float));
  ret->packed_bytes = packed;
  if (ret->wq < 0 || ret->colsum < 0 || ret->wscale < 0 ||
      (!c->opt.no_reference && ret->wref < 0)) {
    errorf("out of memory");
    return -1;
  }
  return 0;
}

static int32_t value_of(conv_t *c, const char *name) {
  if (name == NULL || name[0] == 0) return -1;
  return lookup(&c->b, name);
}

/* The node's output value: the float32 placeholder pass 1 entered for it
 * (shape decided at run time unless the graph declares it as an output). */
static int32_t add_output_value(conv_t *c, const char *name, int32_t producer) {
  int32_t v = lookup(&c->b, name);
  if (v < 0 || c->b.values[v].data != NULL || c->b.producer[v] >= 0) {
    errorf("internal error: no placeholder for node output '%s'", name);
    return -1;
  }
  c->b.producer[v] = producer;
  return v;
}

/* MatMul or Gemm.  Emits a QLINEAR when the weights are a constant 2-D
 * float32 matrix and the layer fits the kernels, else the FP32 node. */
static int convert_linear(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  builder_t *b = &c->b;
  int is_gemm = strcmp(n->op_type, "Gemm") == 0;
  layer_report_t *L = &c->layers[c->n_layers++];
  memset(L, 0, sizeof(*L));
  L->name = nname;
  L->op = n->op_type;
  L->k = L->n = -1;
  int64_t ta = is_gemm ? attr_i(n, "transA", 0) : 0;
  int64_t tb = is_gemm ? attr_i(n, "transB", 0) : 0;
  float alpha = is_gemm ? attr_f(n, "alpha", 1.0f) : 1.0f;
  float beta = is_gemm ? attr_f(n, "beta", 1.0f) : 1.0f;
  const dynq__value_t *B = const_of(c, n->input[1]);
  const char *cname = is_gemm && n->n_input > 2 ? n->input[2] : NULL;
  if (cname && !cname[0]) cname = NULL;

  if (B != NULL && B->rank == 2) {
    L->k = tb ? B->dims[1] : B->dims[0];
    L->n = tb ? B->dims[0] : B->dims[1];
    L->fp32_bytes = (size_t)(L->k * L->n) * sizeof(float);
  }
  const char *why = NULL;
  if (c->opt.fp32) why = "--fp32";
  else if (B == NULL) why = "weights are not a constant";
  else if (B->dtype != DYNQ_DT_F32) why = "weights are not float32";
  else if (B->rank != 2) why = "weights are not 2-D";
  else if (L->k > DYNQ_QGEMM_MAX_K) why = "K > 65536 (int32 accumulator bound)";
  else if (L->k == 0 || L->n == 0) why = "empty weight matrix";

  if (why != NULL) {
    /* FP32 node, same inputs and attributes as ONNX. */
    L->why = why;
    L->stored_bytes = L->fp32_bytes;
    bnode_t *bn = add_node(b, is_gemm ? DYNQ_OP_GEMM : DYNQ_OP_MATMUL, nname);
    if (bn == NULL) goto oom;
    for (size_t i = 0; i < n->n_input; i++) node_in(bn, value_of(c, n->input[i]));
    /* Gemm always gets its C slot (-1 when absent): an explicit omitted
     * input reads the same to every consumer of the file. */
    if (is_gemm && bn->n_in == 2) node_in(bn, -1);
    if (is_gemm) {
      node_attr_f(bn, "alpha", alpha);
      node_attr_f(bn, "beta", beta);
      node_attr_i(bn, "transA", ta);
      node_attr_i(bn, "transB", tb);
    }
    int32_t out = add_output_value(c, n->output[0], b->n_nodes - 1);
    if (out < 0) return -1;
    b->nodes[b->n_nodes - 1].out = out;
    return 0;
  }

  int64_t K = L->k, N = L->n;
  qlayer_t ql;
  if (quantize_weights(c, nname, B->data, K, N, (int)tb, alpha, &ql) != 0) return -1;
  L->quantized = 1;
  L->stored_bytes = ql.packed_bytes + (size_t)N * (sizeof(float) + sizeof(int32_t));

  /* beta * C: folded into the bias when C is a constant that broadcasts
   * as a row vector; otherwise computed after the QLINEAR. */
  int32_t bias = -1;
  int post_c = 0;
  const dynq__value_t *C = cname ? const_of(c, cname) : NULL;
  if (cname != NULL && beta != 0.0f) {
    int row = 0;
    if (C != NULL && C->dtype == DYNQ_DT_F32) {
      int64_t numel = dynq__shape_numel(C->rank, C->dims);
      int lead_ones = 1;
      for (int i = 0; i + 1 < C->rank; i++) lead_ones &= C->dims[i] == 1;
      if (numel == 1 && C->rank <= 2) row = 1;
      else if (C->rank >= 1 && C->rank <= 2 && lead_ones && C->dims[C->rank - 1] == N) row = 2;
    }
    if (row) {
      float *bv = pool_alloc(&b->pool, (size_t)N * sizeof(float));
      if (bv == NULL) goto oom;
      const float *cd = C->data;
      for (int64_t j = 0; j < N; j++) bv[j] = beta * cd[row == 1 ? 0 : j];
      int64_t d_n[1] = {N};
      bias = add_const(b, nname, ".bias", DYNQ_DT_F32, 1, d_n, bv, (size_t)N * sizeof(float));
      if (bias < 0) goto oom;
    } else {
      post_c = 1;
      L->why = "beta*C added by separate Mul/Add nodes";
    }
  }

  bnode_t *q = add_node(b, DYNQ_OP_QLINEAR, nname);
  if (q == NULL) goto oom;
  int32_t qi = b->n_nodes - 1;
  node_in(q, value_of(c, n->input[0]));
  node_in(q, ql.wq);
  node_in(q, ql.colsum);
  node_in(q, ql.wscale);
  node_in(q, bias);
  node_in(q, ql.wref);
  node_attr_i(q, "k", K);
  node_attr_i(q, "n", N);
  node_attr_i(q, "per_tensor", c->opt.per_tensor);
  node_attr_i(q, "act", DYNQ_ACT_NONE);
  node_attr_i(q, "trans_a", ta);
  if (!c->opt.no_reference) L->ref_bytes = (size_t)(K * N) * sizeof(float);

  if (!post_c) {
    int32_t out = add_output_value(c, n->output[0], qi);
    if (out < 0) return -1;
    b->nodes[qi].out = out;
    return 0;
  }
  const char *tmpname = fresh_name(b, nname, ".qlinear");
  if (tmpname == NULL) goto oom;
  int32_t tmp = add_value(b, tmpname, DYNQ_DT_F32, -1, NULL);
  if (tmp < 0) goto oom;
  b->producer[tmp] = qi;
  b->nodes[qi].out = tmp;
  int32_t cv = value_of(c, cname);
  if (beta != 1.0f) {
    float *bd = pool_alloc(&b->pool, sizeof(float));
    if (bd == NULL) goto oom;
    *bd = beta;
    int64_t d1[1] = {1};
    int32_t betav = add_const(b, nname, ".beta", DYNQ_DT_F32, 1, d1, bd, sizeof(float));
    const char *mname = fresh_name(b, nname, ".beta_c");
    if (betav < 0 || mname == NULL) goto oom;
    int32_t mv = add_value(b, mname, DYNQ_DT_F32, -1, NULL);
    bnode_t *m = add_node(b, DYNQ_OP_MUL, mname);
    if (mv < 0 || m == NULL) goto oom;
    node_in(m, cv);
    node_in(m, betav);
    m->out = mv;
    b->producer[mv] = b->n_nodes - 1;
    cv = mv;
  }
  const char *aname = fresh_name(b, nname, ".add_c");
  bnode_t *a = aname ? add_node(b, DYNQ_OP_ADD, aname) : NULL;
  if (a == NULL) goto oom;
  node_in(a, tmp);
  node_in(a, cv);
  int32_t out = add_output_value(c, n->output[0], b->n_nodes - 1);
  if (out < 0) return -1;
  b->nodes[b->n_nodes - 1].out = out;
  return 0;
oom:
  errorf("out of memory");
  return -1;
}

/* A Relu whose input comes straight from a QLINEAR that nothing else reads
 * becomes that QLINEAR's act; returns 1 when fused. */
static int try_fuse_relu(conv_t *c, const Onnx__NodeProto *n) {
  builder_t *b = &c->b;
  int32_t in = value_of(c, n->input[0]);
  if (in < 0 || b->producer[in] < 0) return 0;
  bnode_t *q = &b->nodes[b->producer[in]];
  if (q->op != DYNQ_OP_QLINEAR || q->out != in || c->uses[in] != 1 ||
      is_graph_output(c, n->input[0]))
    return 0;
  for (int i = 0; i < q->n_attr; i++) {
    if (strcmp(q->attr[i].name, "act") != 0) continue;
    if (q->attr[i].i != DYNQ_ACT_NONE) return 0;
    int32_t out = add_output_value(c, n->output[0], b->producer[in]);
    if (out < 0) return -1;
    q->attr[i].i = DYNQ_ACT_RELU;
    q->out = out;
    for (int l = 0; l < c->n_layers; l++)
      if (strcmp(c->layers[l].name, q->name) == 0) c->layers[l].relu_fused = 1;
    return 1;
  }
  return 0;
}

static int convert_node(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  builder_t *b = &c->b;
  const char *type = n->op_type;
  if (strcmp(type, "Constant") == 0) {
    const Onnx__AttributeProto *a = find_attr(n, "value");
    return import_tensor(b, a->t, n->output[0], "Constant node") < 0 ? -1 : 0;
  }
  if (strcmp(type, "MatMul") == 0 || strcmp(type, "Gemm") == 0)
    return convert_linear(c, n, nname);
  if (strcmp(type, "Relu") == 0) {
    int r = try_fuse_relu(c, n);
    if (r != 0) return r < 0 ? -1 : 0;
  }
  const op_spec_t *sp = find_op(type);
  bnode_t *bn = add_node(b, sp->op, nname);
  if (bn == NULL) {
    errorf("out of memory");
    return -1;
  }
  for (size_t i = 0; i < n->n_input; i++) node_in(bn, value_of(c, n->input[i]));
  if (sp->op == DYNQ_OP_SOFTMAX) {
    /* Opset < 13 passed check_node only when the axis is the last one. */
    node_attr_i(bn, "axis", c->opset < 13 ? -1 : attr_i(n, "axis", -1));
  } else if (sp->op == DYNQ_OP_FLATTEN) {
    node_attr_i(bn, "axis", attr_i(n, "axis", 1));
  } else if (sp->op == DYNQ_OP_RESHAPE) {
    node_attr_i(bn, "allowzero", attr_i(n, "allowzero", 0));
  }
  int32_t out = add_output_value(c, n->output[0], b->n_nodes - 1);
  if (out < 0) return -1;
  b->nodes[b->n_nodes - 1].out = out;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Assembling the final graph: drop constants nothing reads (the FP32
 * weights a QLINEAR replaced), then renumber. */

static int finish_graph(conv_t *c, dynq__graph_t *g, const char *producer, uint64_t hash) {
  builder_t *b = &c->b;
  int32_t *remap = calloc((size_t)b->n_values + 1, sizeof(*remap));
  char *keep = calloc((size_t)b->n_values + 1, 1);
  dynq__value_t *vals = NULL;
  dynq__node_t *nodes = NULL;
  if (remap == NULL || keep == NULL) goto oom;
  for (int i = 0; i < b->n_inputs; i++) keep[b->inputs[i]] = 1;
  for (int i = 0; i < b->n_outputs; i++) keep[b->outputs[i]] = 1;
  for (int i = 0; i < b->n_nodes; i++) {
    for (int j = 0; j < b->nodes[i].n_in; j++)
      if (b->nodes[i].in[j] >= 0) keep[b->nodes[i].in[j]] = 1;
    keep[b->nodes[i].out] = 1;
  }
  vals = pool_alloc(&b->pool, (size_t)b->n_values * sizeof(*vals));
  nodes = pool_alloc(&b->pool, (size_t)b->n_nodes * sizeof(*nodes));
  if (vals == NULL || nodes == NULL) goto oom;
  int nv = 0;
  for (int v = 0; v < b->n_values; v++) {
    remap[v] = keep[v] ? nv : -1;
    if (keep[v]) vals[nv++] = b->values[v];
  }
  for (int i = 0; i < b->n_nodes; i++) {
    const bnode_t *s = &b->nodes[i];
    int32_t *in = pool_alloc(&b->pool, (size_t)(s->n_in + 1) * sizeof(int32_t));
    int32_t *out = pool_alloc(&b->pool, sizeof(int32_t));
    dynq__attr_t *at = pool_alloc(&b->pool, (size_t)(s->n_attr + 1) * sizeof(*at));
    if (in == NULL || out == NULL || at == NULL) goto oom;
    for (int j = 0; j < s->n_in; j++) in[j] = s->in[j] >= 0 ? remap[s->in[j]] : -1;
    out[0] = remap[s->out];
    memcpy(at, s->attr, (size_t)s->n_attr * sizeof(*at));
    nodes[i] = (dynq__node_t){.op = s->op, .name = s->name, .n_in = s->n_in,
                              .n_out = 1, .in = in, .out = out,
                              .n_attr = s->n_attr, .attr = at};
  }
  for (int i = 0; i < b->n_inputs; i++) b->inputs[i] = remap[b->inputs[i]];
  for (int i = 0; i < b->n_outputs; i++) b->outputs[i] = remap[b->outputs[i]];
  *g = (dynq__graph_t){.n_values = nv, .values = vals, .n_nodes = b->n_nodes,
                       .nodes = nodes, .n_inputs = b->n_inputs, .inputs = b->inputs,
                       .n_outputs = b->n_outputs, .outputs = b->outputs,
                       .producer = producer, .source_hash = hash};
  free(remap);
  free(keep);
  return 0;
oom:
  free(remap);
  free(keep);
  errorf("out of memory");
  return -1;
}

/* ------------------------------------------------------------------ */

static void print_summary(const conv_t *c, const dynq__graph_t *g, const char *in,
                          const char *out) {
  printf("dynq-quantize: %s -> %s (opset %" PRId64 ", %zu ONNX nodes -> %d dynq nodes)\n",
         in, out, c->opset, c->g->n_node, g->n_nodes);
  printf("%-24s %-7s %13s  %-5s %12s %12s  %s\n", "layer", "op", "K x N", "mode",
         "fp32 bytes", "stored", "notes");
  size_t tb = 0, ta = 0, tr = 0;
  int nq = 0;
  for (int i = 0; i < c->n_layers; i++) {
    const layer_report_t *L = &c->layers[i];
    char kn[48];
    if (L->k >= 0)
      snprintf(kn, sizeof(kn), "%" PRId64 " x %" PRId64, L->k, L->n);
    else
      snprintf(kn, sizeof(kn), "?");
    char notes[160];
    if (L->quantized)
      snprintf(notes, sizeof(notes), "int8 per-channel%s%s%s%s",
               c->opt.per_tensor ? ", per-tensor activations" : "",
               L->relu_fused ? ", relu fused" : "", L->why ? "; " : "", L->why ? L->why : "");
    else
      snprintf(notes, sizeof(notes), "stays FP32: %s", L->why);
    printf("%-24s %-7s %13s  %-5s %12zu %12zu  %s\n", L->name, L->op, kn,
           L->quantized ? "int8" : "fp32", L->fp32_bytes, L->stored_bytes, notes);
    tb += L->fp32_bytes;
    ta += L->stored_bytes;
    tr += L->ref_bytes;
    nq += L->quantized;
  }
  printf("total: %d linear layers, %d quantized, %d fp32; weights %zu -> %zu bytes",
         c->n_layers, nq, c->n_layers - nq, tb, ta);
  if (ta > 0 && ta < tb) printf(" (%.2fx smaller)", (double)tb / (double)ta);
  printf("\n");
  if (tr > 0) printf("FP32 reference weights (Wref): %zu bytes (omit with --no-reference)\n", tr);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: dynq-quantize [options] in.onnx out.dynq\n"
          "Convert an ONNX model into a .dynq model with INT8 per-channel weights.\n"
          "\n"
          "  --fp32          keep MatMul/Gemm in FP32 (no quantization)\n"
          "  --per-tensor    quantize activations per tensor instead of per row\n"
          "  --no-reference  omit the FP32 reference weights (smaller file, no fp32 path)\n"
          "  --help          show this help\n"
          "\n"
          "Exit status: 0 written, 1 conversion failed (nothing written), 2 usage error.\n");
}

static int convert(const options_t *opt, const char *in, const char *out) {
  uint8_t *buf = NULL;
  size_t len = 0;
  Onnx__ModelProto *m = NULL;
  conv_t c;
  memset(&c, 0, sizeof(c));
  c.opt = *opt;
  int ret = 1;

  if (read_file(in, &buf, &len) != 0) goto done;
  m = onnx__model_proto__unpack(NULL, len, buf);
  if (m == NULL) {
    errorf("'%s' is not an ONNX model (protobuf decoding failed: truncated or not a "
           "ModelProto)", in);
    goto done;
  }
  if (m->graph == NULL || !m->has_ir_version) {
    errorf("'%s' is not an ONNX model (no %s)", in, m->graph == NULL ? "graph" : "ir_version");
    goto done;
  }
  c.model = m;
  c.g = m->graph;
  c.opset = -1;
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = m->opset_import[i];
    if ((o->domain == NULL || o->domain[0] == 0 || strcmp(o->domain, "ai.onnx") == 0) &&
        o->has_version)
      c.opset = o->version;
  }
  if (c.opset < 0) {
    errorf("'%s' declares no opset for the default ONNX domain", in);
    goto done;
  }
  const Onnx__GraphProto *g = c.g;
  builder_t *b = &c.b;

  if (g->n_sparse_initializer > 0) {
    errorf("sparse initializers are not supported (%zu in the graph)", g->n_sparse_initializer);
    goto done;
  }
  for (size_t i = 0; i < g->n_initializer; i++) {
    const Onnx__TensorProto *t = g->initializer[i];
    if (t->name == NULL || t->name[0] == 0) {
      errorf("initializer %zu has no name", i);
      goto done;
    }
    if (import_tensor(b, t, t->name, "initializer") < 0) goto done;
  }
  b->inputs = calloc(g->n_input + 1, sizeof(int32_t));
  b->outputs = calloc(g->n_output + 1, sizeof(int32_t));
  if (b->inputs == NULL || b->outputs == NULL) {
    errorf("out of memory");
    goto done;
  }
  for (size_t i = 0; i < g->n_input; i++) {
    const Onnx__ValueInfoProto *vi = g->input[i];
    if (vi->name == NULL || vi->name[0] == 0) {
      errorf("graph input %zu has no name", i);
      goto done;
    }
    int32_t v = lookup(b, vi->name);
    if (v >= 0 && b->values[v].data != NULL) continue; /* initializer listed as input */
    if (v >= 0) {
      errorf("graph input '%s' is listed twice", vi->name);
      goto done;
    }
    dynq_dtype_t dt;
    int rank;
    int64_t dims[DYNQ_MAX_RANK];
    if (import_value_info(b, vi, "input", &dt, &rank, dims) != 0) goto done;
    v = add_value(b, vi->name, dt, rank, dims);
    if (v < 0) {
      errorf("out of memory");
      goto done;
    }
    b->inputs[b->n_inputs++] = v;
  }
  if (b->n_inputs == 0) {
    errorf("the graph has no inputs (other than initializers)");
    goto done;
  }
  if (g->n_output == 0) {
    errorf("the graph has no outputs");
    goto done;
  }

  /* Pass 1: every node checked before anything is emitted, so the error
   * lists all unsupported nodes at once.  Outputs are entered as
   * placeholders so later nodes' inputs resolve; Constant nodes become
   * constants right away (later checks, e.g. Reshape's shape, need them). */
  c.node_names = calloc(g->n_node + 1, sizeof(char *));
  c.layers = calloc(g->n_node + 1, sizeof(layer_report_t));
  if (c.node_names == NULL || c.layers == NULL) {
    errorf("out of memory");
    goto done;
  }
  int n_bad = 0;
  char **bad = calloc(g->n_node + 1, sizeof(char *));
  if (bad == NULL) {
    errorf("out of memory");
    goto done;
  }
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *n = g->node[i];
    const char *type = n->op_type ? n->op_type : "";
    c.node_names[i] = n->name && n->name[0] ? n->name
                                            : pool_printf(&b->pool, "%s_%zu", type, i);
    if (c.node_names[i] == NULL) {
      errorf("out of memory");
      free(bad);
      goto done;
    }
    const char *why = check_node(&c, n);
    if (why != NULL) {
      bad[n_bad++] = why[0] ? pool_printf(&b->pool, "  node '%s' (op %s): %s",
                                          c.node_names[i], type, why)
                            : pool_printf(&b->pool, "  node '%s' (op %s)", c.node_names[i],
                                          type);
      if (bad[n_bad - 1] == NULL) bad[n_bad - 1] = (char *)"  (out of memory)";
    }
    /* Placeholders (even for unsupported nodes) keep later nodes checkable. */
    for (size_t o = 0; o < n->n_output; o++) {
      const char *on = n->output[o];
      if (on == NULL || on[0] == 0) continue;
      if (lookup(b, on) >= 0) {
        if (why == NULL) {
          bad[n_bad++] = pool_printf(&b->pool, "  node '%s' (op %s): output '%s' is already "
                                     "defined by an earlier node, initializer or graph input",
                                     c.node_names[i], type, on);
          if (bad[n_bad - 1] == NULL) bad[n_bad - 1] = (char *)"  (out of memory)";
          why = "";
        }
        continue;
      }
      if (strcmp(type, "Constant") == 0 && why == NULL) {
        if (import_tensor(b, find_attr(n, "value")->t, on, "Constant node") < 0) {
          free(bad);
          goto done;
        }
      } else if (add_value(b, on, DYNQ_DT_F32, -1, NULL) < 0) {
        errorf("out of memory");
        free(bad);
        goto done;
      }
    }
  }
  if (n_bad > 0) {
    fprintf(stderr, "%s: error: %s: %d node%s cannot be converted (nothing written):\n", progname, in,
            n_bad, n_bad == 1 ? "" : "s");
    for (int i = 0; i < n_bad; i++) fprintf(stderr, "%s\n", bad[i]);
    fprintf(stderr, "supported ops: MatMul, Gemm, Add, Sub, Mul, Div, Relu, Sigmoid, Tanh, "
                    "Softmax, Flatten, Reshape, Identity, Constant\n");
    free(bad);
    goto done;
  }
  free(bad);

  /* Use counts (for Relu fusion), by value name. */
  c.uses = calloc((size_t)b->n_values + 1, sizeof(int));
  if (c.uses == NULL) {
    errorf("out of memory");
    goto done;
  }
  for (size_t i = 0; i < g->n_node; i++)
    for (size_t j = 0; j < g->node[i]->n_input; j++) {
      int32_t v = value_of(&c, g->node[i]->input[j]);
      if (v >= 0) c.uses[v]++;
    }
  for (size_t i = 0; i < g->n_output; i++) {
    int32_t v = value_of(&c, g->output[i]->name);
    if (v >= 0) c.uses[v]++;
  }

  /* Pass 2: emit.  Each node claims the placeholder of its output. */
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *n = g->node[i];
    if (strcmp(n->op_type, "Constant") == 0) continue; /* already a constant */
    if (convert_node(&c, n, c.node_names[i]) != 0) goto done;
  }
  for (size_t i = 0; i < g->n_output; i++) {
    const Onnx__ValueInfoProto *vi = g->output[i];
    int32_t v = vi->name ? lookup(b, vi->name) : -1;
    if (v < 0) {
      errorf("graph output '%s' is not produced by any node", vi->name ? vi->name : "");
      goto done;
    }
    dynq_dtype_t dt;
    int rank;
    int64_t dims[DYNQ_MAX_RANK];
    if (import_value_info(b, vi, "output", &dt, &rank, dims) != 0) goto done;
    if (b->values[v].data == NULL && b->producer[v] >= 0) {
      b->values[v].dtype = dt;
      b->values[v].rank = rank;
      for (int d = 0; d < rank; d++) b->values[v].dims[d] = dims[d];
    }
    b->outputs[b->n_outputs++] = v;
  }

  const char *base = strrchr(in, '/') ? strrchr(in, '/') + 1 : in;
  const char *producer = pool_printf(&b->pool, "dynq-quantize %s from %s%s", DYNQ_VERSION,
                                     base, opt->fp32 ? " (fp32)" : "");
  dynq__graph_t dg;
  if (producer == NULL || finish_graph(&c, &dg, producer, fnv1a(buf, len)) != 0) goto done;
  char err[512] = "";
  int r = dynq__graph_validate(&dg, err, sizeof(err));
  if (r != 0) {
    errorf("internal error: the converted graph does not validate: %s", err);
    goto done;
  }
  r = dynq__graph_write(&dg, out, err, sizeof(err));
  if (r != 0) {
    errorf("cannot write '%s': %s (%s)", out, err[0] ? err : dynq_strerror(r),
           dynq_err_name(r));
    goto done;
  }
  print_summary(&c, &dg, in, out);
  struct stat st;
  if (stat(out, &st) == 0) printf("wrote %s (%lld bytes)\n", out, (long long)st.st_size);
  ret = 0;
done:
  if (m != NULL) onnx__model_proto__free_unpacked(m, NULL);
  free(buf);
  free(c.node_names);
  free(c.uses);
  free(c.layers);
  builder_free(&c.b);
  return ret;
}

int main(int argc, char **argv) {
  options_t opt = {0};
  const char *pos[2];
  int npos = 0, only_pos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!only_pos && strcmp(a, "--") == 0) {
      only_pos = 1;
    } else if (!only_pos && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
      usage(stdout);
      return 0;
    } else if (!only_pos && strcmp(a, "--fp32") == 0) {
      opt.fp32 = 1;
    } else if (!only_pos && strcmp(a, "--per-tensor") == 0) {
      opt.per_tensor = 1;
    } else if (!only_pos && strcmp(a, "--no-reference") == 0) {
      opt.no_reference = 1;
    } else if (!only_pos && a[0] == '-' && a[1] != 0) {
      fprintf(stderr, "%s: unknown option '%s'\n", progname, a);
      usage(stderr);
      return 2;
    } else if (npos < 2) {
      pos[npos++] = a;
    } else {
      fprintf(stderr, "%s: too many arguments ('%s')\n", progname, a);
      usage(stderr);
      return 2;
    }
  }
  if (npos != 2) {
    fprintf(stderr, "%s: expected an input .onnx and an output .dynq path\n", progname);
    usage(stderr);
    return 2;
  }
  if (opt.fp32 && opt.per_tensor) {
    fprintf(stderr, "%s: --per-tensor has no effect with --fp32\n", progname);
  }
  return convert(&opt, pos[0], pos[1]);
}
