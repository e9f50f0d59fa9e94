/*
 * The ONNX importer's private interface, shared by the files of
 * dynq-quantize: the graph builder (values, constants, nodes), the
 * conversion state, error reporting, weight quantization, and the
 * converter table entry every ONNX op type gets.
 *
 * Ownership: everything the builder allocates (names, constant data,
 * attribute strings) lives in the builder's pool and goes in one sweep
 * when the conversion ends; converters never free what they add.
 *
 * A converter is `int convert(conv_t *c, const Onnx__NodeProto *n,
 * const char *nname)`: it emits zero or more nodes for ONNX node n (named
 * nname in messages), claims each ONNX output's placeholder with
 * dynq__imp_claim_output(), and returns 0, or -1 after printing an error
 * with dynq__imp_errorf() that names the node.
 */
#ifndef DYNQ_MODELS_IMPORT_H
#define DYNQ_MODELS_IMPORT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "ops.h"
#include "tensor.h"

#include "onnx.pb-c.h"

/* Bounds on what one builder node carries (ONNX LSTM has 8 inputs, a
 * quantized recurrent node more; If has as many outputs as its branches). */
#define DYNQ_IMP_MAX_IN 64
#define DYNQ_IMP_MAX_OUT 16
#define DYNQ_IMP_MAX_ATTR 40 /* a 3-D QConv has 21, its fused epilogue 7 more; a 3-D ConvTranspose up to 25 */

/* ---- allocation pool ---- */

typedef struct dynq__imp_pool {
  void **p;     /* owned, each entry malloc'd */
  size_t n, cap;
} dynq__imp_pool_t;

void *dynq__imp_pool_alloc(dynq__imp_pool_t *pl, size_t n); /* zeroed; NULL on OOM */
char *dynq__imp_pool_printf(dynq__imp_pool_t *pl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void dynq__imp_pool_free(dynq__imp_pool_t *pl);

/* ---- builder ---- */

typedef struct dynq__bnode {
  int op;                               /* DYNQ_OP_* */
  const char *name;                     /* pool- or proto-owned */
  int n_in;
  int32_t in[DYNQ_IMP_MAX_IN];          /* value index, -1 omitted */
  int n_out;
  int32_t out[DYNQ_IMP_MAX_OUT];
  int n_attr;
  dynq__attr_t attr[DYNQ_IMP_MAX_ATTR]; /* names/strings pool- or static-owned */
  int dead;                             /* 1: dropped (folded away) */
} dynq__bnode_t;

typedef struct dynq__builder {
  dynq__imp_pool_t pool;
  dynq__value_t *values;   /* owned (realloc'd), n_values used */
  int n_values, cap_values;
  int32_t *producer;       /* owned, [cap_values]: builder node index or -1 */
  dynq__bnode_t *nodes;    /* owned (realloc'd) */
  int n_nodes, cap_nodes;
  int32_t *htab;           /* owned, name -> value index, open addressing */
  size_t hcap;             /* power of two, > 2 * n_values */
  int32_t *inputs, *outputs;  /* owned */
  int n_inputs, n_outputs;
  const char *ext_dir;     /* the model's directory, for tensors kept in
                              external data files; NULL: such tensors are
                              refused.  Caller-owned. */
  int half_io;             /* float16 graph inputs/outputs, served as float32 */
  int bf16_io;             /* bfloat16 ones, served as float32 */
  int double_io;           /* float64 ones, served as float32 */
} dynq__builder_t;

void dynq__imp_builder_free(dynq__builder_t *b);
uint64_t dynq__imp_fnv1a(const void *p, size_t n);
int32_t dynq__imp_lookup(const dynq__builder_t *b, const char *name); /* -1 absent */
/* Add a value named `name` (kept by pointer: must outlive the builder).
 * Returns its index, or -1 on allocation failure. */
int32_t dynq__imp_add_value(dynq__builder_t *b, const char *name, dynq_dtype_t dt,
                            int rank, const int64_t *dims);
/* A name not yet used, derived from base + suffix. */
const char *dynq__imp_fresh_name(dynq__builder_t *b, const char *base, const char *suffix);
/* A new constant named base+suffix (made unique) holding `data`, which
 * must be pool-owned or outlive the builder.  -1 on OOM. */
int32_t dynq__imp_add_const(dynq__builder_t *b, const char *base, const char *suffix,
                            dynq_dtype_t dt, int rank, const int64_t *dims,
                            const void *data, size_t nbytes);
/* A new intermediate (non-constant) value named base+suffix, -1 on OOM. */
int32_t dynq__imp_add_temp(dynq__builder_t *b, const char *base, const char *suffix,
                           dynq_dtype_t dt);
/* Appends a node; NULL on OOM.  The pointer is valid until the next
 * dynq__imp_add_node (the array may move). */
dynq__bnode_t *dynq__imp_add_node(dynq__builder_t *b, int op, const char *name);
void dynq__imp_node_in(dynq__bnode_t *n, int32_t v);
/* Output of the node just added (b->nodes[b->n_nodes-1] == n): records
 * the producer too. */
void dynq__imp_node_out(dynq__builder_t *b, dynq__bnode_t *n, int32_t v);
void dynq__imp_node_attr_i(dynq__bnode_t *n, const char *name, int64_t i);
void dynq__imp_node_attr_f(dynq__bnode_t *n, const char *name, float f);
void dynq__imp_node_attr_s(dynq__bnode_t *n, const char *name, const char *s);
/* INTS: stores the values as a new int64 1-D constant; -1 on OOM. */
int dynq__imp_node_attr_ints(dynq__builder_t *b, dynq__bnode_t *n, const char *name,
                             const int64_t *v, size_t count);

/* ---- conversion state ---- */

struct dynq__layer_report;

typedef struct dynq__imp_options {
  int fp32, per_tensor, no_reference;
  int no_auto_fp32;          /* --no-auto-fp32: no signal front-end rule */
  int no_fuse;               /* --no-fuse: no import-time fusions (fuse.c) */
  /* Attention's activation x activation products (StridedMatMul "int8"):
   * INT8 unless fp32_attention (--fp32-attention, or chosen by
   * --calibrate's measurement); int8_attention (--int8-attention) forces
   * them INT8 even when the calibration search would not. */
  int int8_attention, fp32_attention;
  int n_keep;                /* --keep-fp32 NODE entries */
  const char *keep[32];      /* point into argv (split at ','); a layer name
                                matches when it equals or ends with one */
  int keep_hits[32];         /* layers each entry matched (0: a typo: error) */
  int n_set;                 /* --set NAME=VALUE entries */
  const char *set_name[16];  /* point into argv (split at '=') */
  const char *set_value[16]; /* argv-owned */
  int n_const;               /* --const NAME=FILE.pb entries */
  const char *const_name[16];  /* point into argv (split at '=') */
  const char *const_file[16];  /* argv-owned */
  int n_state;               /* --state IN=OUT pairs */
  const char *state_in[16], *state_out[16]; /* point into argv (split at '=') */
  int quantize_small;        /* --quantize-small: Conv the INT8 GEMM would not
                                pay for is quantized anyway (accuracy tests) */
  /* Error-budget calibration (models/calibrate.c): layers kept FP32 by
   * exact name, with keep_exact_why as their reason; caller-owned. */
  int n_keep_exact;
  const char *const *keep_exact;
  const char *keep_exact_why;
  /* The path the summary names when the file is written to a side path
   * and renamed into place afterwards (the self-check); NULL: the path
   * written. */
  const char *shown_path;
  int quiet;                 /* no summary on stdout (a calibration pass) */
  int progress;              /* a line per stage on stderr (unless quiet) */
  const char *ext_dir;       /* the model's directory, where tensors kept in
                                external data are read (NULL: refused) */
  int n_op_types;            /* --op-types: quantize only these op kinds */
  const char *op_types[8];   /* point into argv (split at ','); 0: all */
  /* Called once with the per-layer report before the conversion frees
   * it (names valid only during the call); NULL: not wanted. */
  void (*on_layers)(void *ctx, const struct dynq__layer_report *layers, int n);
  void *on_layers_ctx;
} dynq__imp_options_t;

typedef struct dynq__layer_report {
  const char *name;
  const char *op;
  int64_t k, n;
  int quantized;
  const char *why;       /* why FP32, or extra notes */
  int act_fused;             /* DYNQ_ACT_* folded into the layer, 0 if none */
  int sym_folded;            /* FP32 conv with mirror-symmetric rows (sym_split) */
  size_t fp32_bytes, stored_bytes, ref_bytes;
} dynq__layer_report_t;

typedef struct conv {
  dynq__builder_t b;
  dynq__imp_options_t opt;
  const Onnx__ModelProto *model;
  const Onnx__GraphProto *g;
  int64_t opset;
  int n_dql_dropped;         /* MatMulInteger/ConvInteger reading x / scale (import_quant.c) */
  /* dynq__imp_convert_node, for converters that make nodes of other ops
   * (a pointer: the converters' table calls them, so a direct call back
   * would tie the files in a circle) */
  int (*convert_node)(struct conv *c, const Onnx__NodeProto *n, const char *nname);
  int *uses;                 /* owned, [n_uses] per value: consumers (+1 per graph
                                output); values past n_uses are never fused */
  int n_uses;
  int n_anon;                /* counter naming nodes that have no name */
  int branch_depth;          /* > 0 while converting an If branch */
  /* Pass 1 + pass 2 over a node list, set by the driver
   * (dynq-quantize.c): the If converter hands it its branches.  A pointer
   * rather than a call so the converters never call back up into the file
   * that holds the op table. */
  int (*convert_nodes)(struct conv *c, Onnx__NodeProto *const *nodes, size_t nn,
                       const char *what);
  dynq__layer_report_t *layers; /* owned, [cap_layers] */
  int n_layers, cap_layers;
  /* Signal front-end rule (models/README.md): names of the values that
   * carry a front-end filterbank's output through non-layer ops (Slice,
   * Pow, Sqrt, ...), up to DYNQ_IMP_MAX_FRONT; they point into the ONNX
   * model, which outlives the conversion.  front is owned. */
  const char **front;
  int n_front, cap_front;
  int front_out;             /* set by a layer import: mark its outputs */
  int n_fused_layernorm;     /* decomposed LayerNorms fused (fuse.c) */
  int n_fused_bias, n_fused_gelu; /* Adds / GELUs moved into QLinear epilogues */
  int n_fused_conv;          /* nodes moved into Conv epilogues (fuse_cnn.c) */
} conv_t;

#define DYNQ_IMP_MAX_FRONT 65536
/* Minimum taps of a 1-input-channel Conv for the front-end rule. */
#define DYNQ_IMP_FRONT_MIN_TAPS 64

/* Whether value `name` carries the signal front end's output. */
int dynq__imp_front_has(const conv_t *c, const char *name);
/* Mark `name`; 0, or -1 on OOM (error printed).  Past the bound the name
 * is silently not marked: the rule then keeps fewer layers FP32. */
int dynq__imp_front_add(conv_t *c, const char *name);
/* The automatic FP32 reason for a layer reading `x` (its data input), or
 * NULL: a layer that reads the front end's output (see models/README.md). */
const char *dynq__imp_front_reader(conv_t *c, const char *x);

/* The op types dynq-quantize can quantize (--op-types), for messages:
 * "MatMul, Gemm, ...". */
extern const char dynq__imp_quantizable_list[];
int dynq__imp_quantizable(const char *op_type);
/* "not in --op-types" when --op-types is given and leaves op_type out,
 * else NULL: the layer then stays FP32. */
const char *dynq__imp_op_excluded(const conv_t *c, const char *op_type);
/* With opt->progress (and not quiet): one line on stderr, with the time
 * since the first such line of the process. */
void dynq__imp_progress(const dynq__imp_options_t *opt, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A new per-layer report line (for the summary); NULL on OOM. */
dynq__layer_report_t *dynq__imp_add_layer(conv_t *c, const char *nname, const char *op);
/* "--keep-fp32" when the layer named nname was listed by --keep-fp32
 * (counts the hit), else NULL. */
const char *dynq__imp_keep_fp32(conv_t *c, const char *nname);

/* The whole conversion (dynq-quantize.c): ONNX image buf[0, len), named
 * `in` in messages, to a .dynq at `out`.  0 written; 1 failed after
 * printing why (nothing written).  Callable in-process (tests/fuzz). */
int dynq__imp_convert_buffer(const dynq__imp_options_t *opt, const uint8_t *buf, size_t len,
                             const char *in, const char *out);

/* Import-time fusions on the builder graph (models/fuse.c), after every
 * node is converted and the graph outputs are known: 0, or -1 after an
 * error.  Counts: decomposed LayerNorms and HardSwishes rewritten, bias Adds and GELUs
 * moved into a QLinear's epilogue. */
int dynq__imp_fuse(conv_t *c, int *ret_layernorms, int *ret_biases, int *ret_gelus);

/* CNN fusions (models/fuse_cnn.c), after dynq__imp_fuse: scalar Mul/Add,
 * Relu/Clip/HardSigmoid/HardSwish/Sigmoid and scalar Mul/Add after a Conv
 * move into its epilogue.  0, or -1 after an error; *ret_fused counts the
 * nodes removed. */
int dynq__imp_fuse_cnn(conv_t *c, int *ret_fused);

/* ---- errors ---- */

extern const char *dynq__imp_progname;
void dynq__imp_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A weight row's scale from its largest magnitude: amax / 127, or 1 for
 * a row of zeros and for one so small that amax / 127 underflows (its
 * weights then quantize to 0; before, w / 0 made NaN and an int8 cast of
 * it undefined). */
static inline float dynq__imp_wscale(float amax) {
  float s = amax / 127.0f;
  return s > 0.0f && s < INFINITY ? s : 1.0f;
}

/* w / scale to int8: rounded half to even, clamped to +-127; NaN (which a
 * caller should have refused) is 0 rather than an undefined cast. */
static inline int8_t dynq__imp_q8(float x) {
  float r = nearbyintf(x);
  return r >= -127.0f && r <= 127.0f ? (int8_t)r : r > 127.0f ? 127 : r < -127.0f ? -127 : 0;
}

/* ---- ONNX helpers ---- */

dynq_dtype_t dynq__imp_dtype_from_onnx(int32_t t); /* BOOL -> U8; INVALID otherwise */
/* 1 for the ONNX dtypes the importer widens to float32 (float16,
 * bfloat16, float64), else 0. */
int dynq__imp_dtype_widened(int32_t t);
const char *dynq__imp_onnx_dtype_name(int32_t t);
/* Read a whole file (bounded); error printed on failure. */
int dynq__imp_read_file(const char *path, uint8_t **ret_buf, size_t *ret_n);
/* dtype and shape of a graph input/output declaration; -1 after an error. */
int dynq__imp_import_value_info(dynq__builder_t *b, const Onnx__ValueInfoProto *vi,
                                const char *what, dynq_dtype_t *ret_dt, int *ret_rank,
                                int64_t *dims);
/* Convert a TensorProto into constant value `name`; -1 after an error. */
int32_t dynq__imp_import_tensor(dynq__builder_t *b, const Onnx__TensorProto *t,
                                const char *name, const char *what);
const Onnx__AttributeProto *dynq__imp_find_attr(const Onnx__NodeProto *n, const char *name);
int dynq__imp_attr_is_int(const Onnx__AttributeProto *a);
int dynq__imp_attr_is_float(const Onnx__AttributeProto *a);
int64_t dynq__imp_attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt);
float dynq__imp_attr_f(const Onnx__NodeProto *n, const char *name, float dflt);

/* Value index of an ONNX name, -1 when empty/absent. */
int32_t dynq__imp_value_of(conv_t *c, const char *name);
/* The constant named `name`, or NULL when it is not a constant. */
const dynq__value_t *dynq__imp_const_of(const conv_t *c, const char *name);
/* Claim the placeholder pass 1 entered for ONNX output `name` as produced
 * by builder node `producer`; returns the value index or -1 (error printed). */
int32_t dynq__imp_claim_output(conv_t *c, const char *name, int32_t producer);

/* ---- quantization ---- */

/* QLINEAR constants for effective weights W'[n][k] = alpha * src, where
 * src is [K, N] (trans_b = 0) or [N, K] (trans_b = 1): int8 per output
 * channel packed for the kernels, int32 column sums, float scales, and
 * (unless --no-reference) the FP32 [K, N] reference. */
typedef struct dynq__qlayer {
  int32_t wq, colsum, wscale, wref; /* value indices; wref -1 when omitted */
  size_t packed_bytes;
} dynq__qlayer_t;

int dynq__imp_quantize_weights(conv_t *c, const char *base, const float *src, int64_t K,
                               int64_t N, int trans_b, float alpha, dynq__qlayer_t *ret);

/* The final graph from the builder (dead nodes and unread constants
 * dropped, indices renumbered); storage is pool-owned.  -1 on OOM. */
int dynq__imp_finish_graph(conv_t *c, dynq__graph_t *g, const char *producer,
                           uint64_t hash);

/* ---- graph ops (import_graph.c) ---- */

/* Constant node (any value_* form) -> constant value; -1 after an error. */
int dynq__imp_constant_node(conv_t *c, const Onnx__NodeProto *n, const char *nname);
/* Fold nodes [first, n_nodes) whose inputs are all constants: run them
 * through the engine, turn their outputs into constants, mark them dead.
 * -1 after an error (a node that must fail on constant inputs). */
/* Folding stops a node whose constant output would take more bytes than
 * this (256 MiB; real models fold shapes, masks and small tables): the
 * model is refused, naming the node. */
#define DYNQ_IMP_FOLD_MAX_BYTES ((int64_t)256 << 20)
int dynq__imp_fold(conv_t *c, int first);
/* --set NAME=VALUE: the constant fixing graph input vi, or -2 when the
 * input is not fixed; -1 after an error. */
int32_t dynq__imp_set_input(conv_t *c, const Onnx__ValueInfoProto *vi);
/* --const NAME=FILE.pb: the constant read from FILE.pb (a serialized
 * ONNX TensorProto) replacing graph input vi, or -2 when the input is not
 * bound; -1 after an error (unreadable file, not a TensorProto, dtype or
 * shape other than the input's declaration). */
int32_t dynq__imp_const_input(conv_t *c, const Onnx__ValueInfoProto *vi);
/* Converters for shape/graph ops and If. */
int dynq__import_graph_op(conv_t *c, const Onnx__NodeProto *n, const char *nname);
int dynq__import_if(conv_t *c, const Onnx__NodeProto *n, const char *nname);
int dynq__import_loop(conv_t *c, const Onnx__NodeProto *n, const char *nname);
const char *dynq__import_loop_check(conv_t *c, const Onnx__NodeProto *n);
int dynq__import_scan(conv_t *c, const Onnx__NodeProto *n, const char *nname);
const char *dynq__import_scan_check(conv_t *c, const Onnx__NodeProto *n);

/* ---- attributes that become inputs (import_rules.c) ---- */

/* One row per attribute the engine takes as a constant input: ONNX op
 * `op`'s attribute `attr` is engine input `input`; from opset `since` on
 * ONNX itself has it as that input (0: never, it is always an attribute).
 * A new rule is one row of the table in import_rules.c; the op's converter
 * gets the inputs from dynq__imp_rule_inputs(). */
enum {
  DYNQ_IMP_R_INTS = 1, /* INTS -> 1-D int64 */
  DYNQ_IMP_R_FLOAT,    /* FLOAT -> float32 scalar */
  DYNQ_IMP_R_FLOATS,   /* FLOATS -> 1-D float32 */
  DYNQ_IMP_R_TENSOR1,  /* TENSOR holding one element -> that tensor */
};
enum {
  DYNQ_IMP_R_OPTIONAL = 0, /* absent: the input is left out */
  DYNQ_IMP_R_REQUIRED,     /* absent: pass 1 refuses the node */
  DYNQ_IMP_R_DEFAULT,      /* absent: `dflt` (FLOAT rows only), when the node
                              carries any of its op's attributes of this table */
};
typedef struct dynq__imp_rule {
  const char *op, *attr;
  int input;
  int since;
  int kind; /* DYNQ_IMP_R_INTS... */
  int need; /* DYNQ_IMP_R_OPTIONAL... */
  float dflt;
} dynq__imp_rule_t;

/* The row for op's attribute attr, or NULL. */
const dynq__imp_rule_t *dynq__imp_rule_find(const char *op, const char *attr);
/* Pass 1: why node n breaks its op's rows at the model's opset (the
 * attribute where ONNX has an input or the reverse, a required one
 * missing, a wrong attribute type), or NULL. */
const char *dynq__imp_rules_check(conv_t *c, const Onnx__NodeProto *n);
/* Node n's engine inputs into ins[DYNQ_IMP_MAX_IN] (value indices, -1
 * left out): its ONNX inputs, then each row's attribute as a new constant
 * at the row's input index.  *ret_n: inputs up to the last present one.
 * 0, or -1 after an error. */
int dynq__imp_rule_inputs(conv_t *c, const Onnx__NodeProto *n, const char *nname,
                          int32_t *ins, int *ret_n);

/* ---- converter table ---- */

typedef int (*dynq__convert_fn)(conv_t *c, const Onnx__NodeProto *n, const char *nname);
/* Optional pass-1 check (before anything is emitted, so one error lists
 * every bad node): NULL when the node can be converted, else why not
 * (static or pool-owned string).  Constants known at that point are
 * available through dynq__imp_const_of(). */
typedef const char *(*dynq__check_fn)(conv_t *c, const Onnx__NodeProto *n);

/* Resize, ConvTranspose, Einsum (models/import_ops.c) and their pass-1
 * check (attributes and their values, refused by name). */
int dynq__import_ops(conv_t *c, const Onnx__NodeProto *n, const char *nname);
const char *dynq__import_ops_check(conv_t *c, const Onnx__NodeProto *n);

/* Converters for recurrent and convolution nodes (models/import_rnn.c). */
int dynq__import_lstm(conv_t *c, const Onnx__NodeProto *n, const char *nname);
int dynq__import_gru(conv_t *c, const Onnx__NodeProto *n, const char *nname);
int dynq__import_rnn(conv_t *c, const Onnx__NodeProto *n, const char *nname);
int dynq__import_conv(conv_t *c, const Onnx__NodeProto *n, const char *nname);
/* Convert n with the converter of its op_type (a node made by another
 * converter, such as the float product of a MatMulInteger); -1 after an
 * error (dynq-quantize.c). */
int dynq__imp_convert_node(conv_t *c, const Onnx__NodeProto *n, const char *nname);
/* Min/Max/Sum/Mean with any number of inputs (import_graph.c). */
int dynq__import_variadic(conv_t *c, const Onnx__NodeProto *n, const char *nname);
/* MatMulInteger / ConvInteger as float products (import_quant.c). */
const char *dynq__import_quant_check(conv_t *c, const Onnx__NodeProto *n);
int dynq__import_quant(conv_t *c, const Onnx__NodeProto *n, const char *nname);
/* QLinearMatMul, QLinearConv (import_quant.c) */
const char *dynq__import_qlinear_check(conv_t *c, const Onnx__NodeProto *n);
int dynq__import_qlinear(conv_t *c, const Onnx__NodeProto *n, const char *nname);
/* Pass-1 check for LSTM, GRU and Conv nodes (attributes, arity). */
const char *dynq__import_rnn_check(conv_t *c, const Onnx__NodeProto *n);

/* Pooling, LayerNormalization, BatchNormalization (folded into the Conv
 * before it when it can be), HardSigmoid, HardSwish (models/import_tf.c),
 * and their pass-1 check (attributes and their values). */
int dynq__import_tf(conv_t *c, const Onnx__NodeProto *n, const char *nname);
const char *dynq__import_tf_check(conv_t *c, const Onnx__NodeProto *n);
/* Gather: an embedding lookup in a constant table becomes QGather (int8
 * rows), anything else the plain Gather (dynq__import_graph_op). */
int dynq__import_gather(conv_t *c, const Onnx__NodeProto *n, const char *nname);
int dynq__import_dropout(conv_t *c, const Onnx__NodeProto *n, const char *nname);
const char *dynq__import_graph_check(conv_t *c, const Onnx__NodeProto *n);

#endif
