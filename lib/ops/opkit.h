/*
 * What every op implementation shares: the run context, the per-node
 * state that `prepare` fills once at load, failure and allocation helpers,
 * typed element access, and the one strided broadcast iterator.
 *
 * Ops run on shapes that may come from a request, so every index, count
 * and product is range-checked before use and every failure names the
 * node (dynq__op_fail).
 */
#ifndef DYNQ_OPS_OPKIT_H
#define DYNQ_OPS_OPKIT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "graph.h"
#include "kernels/kernels.h"
#include "tensor.h"

enum { DYNQ_PRECISION_INT8 = 0, DYNQ_PRECISION_FP32 = 1 };

/* Conv and QConv attributes (docs in rnn.h), per spatial axis in the
 * order stored: (depth,) (height,) width, axis 0 first. */
typedef struct dynq__conv_attrs {
  int auto_pad;          /* DYNQ_PAD_*; DYNQ_PAD_BAD when unknown */
  int spatial;           /* QConv: 1, 2 or 3 */
  int per_tensor;
  int64_t strides[3], dilations[3], pad_begin[3], pad_end[3], kernel[3];
  int64_t group, in_channels, out_channels;
  int64_t sym_split;     /* -1 when absent */
  int has_sym_split;
  /* The fused epilogue (models/fuse_cnn.c), in this order on conv + bias:
   * y * pre_mul + pre_add, then act, then y * post_mul + post_add; each
   * step the same float operations as the nodes it replaced. */
  int has_pre, has_post;
  float pre_mul, pre_add, post_mul, post_add;
  int act;               /* DYNQ_CONV_ACT_* */
  float act_a, act_b;    /* Clip: min, max; HardSigmoid: alpha, beta */
} dynq__conv_attrs_t;
enum { DYNQ_PAD_NOTSET, DYNQ_PAD_SAME_UPPER, DYNQ_PAD_SAME_LOWER, DYNQ_PAD_VALID, DYNQ_PAD_BAD };
enum {
  DYNQ_CONV_ACT_NONE, DYNQ_CONV_ACT_RELU, DYNQ_CONV_ACT_CLIP, DYNQ_CONV_ACT_HARDSIGMOID,
  DYNQ_CONV_ACT_HARDSWISH, DYNQ_CONV_ACT_SIGMOID, DYNQ_CONV_ACT__COUNT
};

/* MaxPool, AveragePool and LpPool, per spatial axis as Conv's (pool.c);
 * GlobalLpPool takes only p. */
typedef struct dynq__pool_attrs {
  int spatial;           /* 1, 2 or 3 */
  int auto_pad;          /* DYNQ_PAD_* */
  int ceil_mode, count_include_pad;
  int storage_order;          /* MaxPool's Indices: 0 row-major, 1 column-major */
  int p;                      /* LpPool, GlobalLpPool: the norm's order */
  int64_t kernel[3], strides[3], dilations[3], pad_begin[3], pad_end[3];
} dynq__pool_attrs_t;

/* The node's "auto_pad" string attribute as DYNQ_PAD_* (NOTSET when
 * absent, DYNQ_PAD_BAD when unknown): Conv and the pools. */
int dynq__op_auto_pad(const dynq__node_t *n);

/* An activation of a recurrent op (ONNX's list), as the engine attributes
 * "act<i>" carry it (lib/ops/rnn.h); alpha and beta as ONNX defines them
 * per function. */
enum {
  DYNQ_RNN_ACT_TANH, DYNQ_RNN_ACT_RELU, DYNQ_RNN_ACT_SIGMOID, DYNQ_RNN_ACT_AFFINE,
  DYNQ_RNN_ACT_LEAKY_RELU, DYNQ_RNN_ACT_THRESHOLDED_RELU, DYNQ_RNN_ACT_SCALED_TANH,
  DYNQ_RNN_ACT_HARD_SIGMOID, DYNQ_RNN_ACT_ELU, DYNQ_RNN_ACT_SOFTSIGN, DYNQ_RNN_ACT_SOFTPLUS,
  DYNQ_RNN_ACT__COUNT
};
#define DYNQ_RNN_MAX_ACTS 6 /* 2 directions x 3 functions (LSTM) */

/* LSTM/GRU/RNN and their quantized forms. */
typedef struct dynq__rnn_attrs {
  int dirs;              /* 1 forward, 2 reverse, 3 both; 0 invalid */
  int layout, lbr, input_forget, per_tensor, has_clip;
  float clip;
  int64_t hidden_size, input_size;
  /* DYNQ_RNN_ACT_* of function k of direction d at [d * F + k], F the
   * op's functions per direction (RNN 1: f; GRU 2: f, g; LSTM 3: f, g, h),
   * with their alpha and beta; custom: some function is not the op's
   * default (LSTM/GRU then take the generic cell) */
  int act[DYNQ_RNN_MAX_ACTS];
  float act_alpha[DYNQ_RNN_MAX_ACTS], act_beta[DYNQ_RNN_MAX_ACTS];
  int custom;
} dynq__rnn_attrs_t;

/* ConvTranspose (convt.c), per spatial axis as Conv's. */
typedef struct dynq__convt_attrs {
  int spatial;           /* 1, 2 or 3 */
  int auto_pad;          /* DYNQ_PAD_* */
  int has_output_shape;
  int64_t group;
  int64_t kernel[3], strides[3], dilations[3], pad_begin[3], pad_end[3];
  int64_t output_padding[3], output_shape[3];
} dynq__convt_attrs_t;
/* Load-time check of a's strides, dilations and pads on its a->spatial
 * axes (convt.c; ConvTranspose, Col2Im, DeformConv): 0, or DYNQ_EGRAPH
 * naming the node in err. */
int dynq__convt_check_geometry(const dynq__node_t *n, const dynq__convt_attrs_t *a, char *err,
                               size_t errlen);

/* Resize (resize.c): the string attributes as codes, parsed at load. */
enum { DYNQ_RESIZE_NEAREST, DYNQ_RESIZE_LINEAR, DYNQ_RESIZE_CUBIC };
enum { DYNQ_CTM_HALF_PIXEL, DYNQ_CTM_PYTORCH_HALF_PIXEL, DYNQ_CTM_ALIGN_CORNERS,
       DYNQ_CTM_ASYMMETRIC, DYNQ_CTM_TF_HALF_PIXEL_FOR_NN };
enum { DYNQ_NEAREST_ROUND_PREFER_FLOOR, DYNQ_NEAREST_ROUND_PREFER_CEIL, DYNQ_NEAREST_FLOOR,
       DYNQ_NEAREST_CEIL };
/* keep_aspect_ratio_policy (opset 18), attribute "policy" */
enum { DYNQ_KEEP_STRETCH, DYNQ_KEEP_NOT_LARGER, DYNQ_KEEP_NOT_SMALLER };

/* Einsum (einsum.c): the equation as label strings, one per operand and
 * one for the output; labels are 'A'..'Z', 'a'..'z' (at run time an
 * ellipsis becomes the labels '0'..'7', right-aligned across operands). */
typedef struct dynq__einsum {
  int nin;                         /* 1 or 2 */
  int rank[3];                     /* operands 0, 1, then the output: labels, not '...' */
  int ell[3];                      /* where '...' stands among the labels, -1: none */
  char lab[3][DYNQ_MAX_RANK];
} dynq__einsum_t;

/*
 * Per-node state: the node's attributes parsed once at load by the op's
 * prepare function (no string lookups per request).  One union member
 * per op family that has attributes; an op without attributes leaves it
 * zeroed.
 */
typedef union dynq__opstate {
  struct { int64_t axis; } axis;             /* Softmax, Flatten, Gather, Concat, OneHot;
                                                GatherND's batch_dims */
  struct { int allowzero; } reshape;
  struct {
    int ta, tb;
    float alpha, beta;
    int const_b;                    /* B is a constant of the graph */
    _Atomic(float *) fp32_packed;   /* as qlinear's, when const_b */
  } gemm;
  struct {
    int const_b;                    /* B is a 2-D constant of the graph */
    int act;                        /* DYNQ_ACT_* epilogue (attr "act") */
    _Atomic(float *) fp32_packed;   /* as qlinear's, when const_b */
  } matmul;
  struct { int keepdims, noop_empty; } reduce;
  struct { int mode; } pad;                  /* PAD_* in shape.c */
  struct { int to, to_bool, half, bf16; } cast; /* half, bf16: round to float16 or
                                                   bfloat16, keep float32 */
  struct { int64_t start, end; int has_start, has_end; } shape;
  struct {
    int64_t k, n;
    int ta, act, per_tensor;
    /* The FP32 reference weights packed for the FP32 GEMM
     * (dynq__sgemm_pack_b), made at the first FP32 run and installed
     * with one compare-and-swap; freed by dynq__opstate_release. */
    _Atomic(float *) fp32_packed;
  } qlinear;
  struct { int64_t then_nodes, else_nodes; } branch;  /* If */
  struct { int64_t body_nodes, n_carried; } loop;     /* Loop, LoopEnd */
  dynq__conv_attrs_t conv;
  dynq__rnn_attrs_t rnn;
  struct { int64_t axis; int flatten, p; } softmax; /* flatten: opset < 13 form; p:
                                                    LpNormalization's order (norm.c) */
  struct { int64_t axis; float eps; } norm;      /* LayerNorm, BatchNorm */
  struct { int64_t groups; float eps; int per_channel; } gnorm; /* GroupNormalization
                                                    (norm.c); per_channel: opset 21's
                                                    scale and bias, one per channel */
  struct { float alpha, beta; } hard;            /* HardSigmoid */
  struct { float alpha; int int8; } smatmul;     /* StridedMatMul */
  dynq__pool_attrs_t pool;
  dynq__convt_attrs_t convt;
  struct {
    int mode, ctm, nearest, exclude_outside, antialias;
    int policy;                   /* keep_aspect_ratio_policy: DYNQ_KEEP_* */
    int naxes, axes[DYNQ_MAX_RANK]; /* opset 18's axes (0: every axis) */
    float cubic_a;
  } resize;
  dynq__einsum_t einsum;
  struct { int64_t axis, num_outputs; } split;   /* num_outputs 0: from the outputs */
  struct { int64_t axis; int keepdims, last; } argmax;
  struct { int exclusive, reverse; } cumsum;
  struct { float alpha, gamma; } act;           /* LeakyRelu, Elu, Selu, ...; Shrink's
                                                   lambd, bias */
  struct { int64_t axis; int largest, sorted; } topk;
  struct { int64_t axis; int reduction; } scatter; /* 0 none, 1 add, 2 mul, 3 max, 4 min */
  struct { int upper; } trilu;
  struct { int fmod; } mod;
  struct { int64_t blocksize; int crd; } space;  /* DepthToSpace, SpaceToDepth */
  struct { int64_t size; float alpha, beta, bias; } lrn;
  struct { int neg, pos; } isinf;                /* IsInf: which infinities count */
  struct { int64_t k; int dtype; } eye;          /* EyeLike; dtype 0: the input's */
  struct { int center; } nms;                    /* NonMaxSuppression (misc.c) */
  struct { int64_t axis; int has_axis, sorted; } uniq; /* Unique, Compress (misc.c) */
  struct { int64_t batch_axis, time_axis; } revseq;   /* ReverseSequence (misc.c) */
  struct { int left; } bitshift;                 /* BitShift (misc.c) */
  struct { int mode, padding, align; } gridsample; /* GridSample (sample.c) */
  struct { int interleaved; int64_t num_heads, dim; } rotary; /* RotaryEmbedding (attention.c) */
  struct {                                       /* Attention, opset 23 (attention.c) */
    int causal, mode;                            /* is_causal; qk_matmul_output_mode */
    int64_t q_heads, kv_heads;                   /* 0: not given */
    float scale, softcap;                        /* scale 0: 1 / sqrt(head size) */
  } attn23;
  struct {                                       /* RoiAlign (sample.c) */
    int max, half_pixel;
    int64_t oh, ow, ratio;
    float scale;
  } roialign;
  struct { int64_t ph, pw; float scale; } roipool; /* MaxRoiPool (sample.c) */
  struct {                                       /* DFT, STFT, the windows, MelWeightMatrix */
    int64_t axis;                                /* DFT */
    int inverse, onesided;                       /* DFT; STFT's onesided */
    int periodic, dtype;                         /* windows; dtype also MelWeightMatrix's */
    struct dynq__fft *plan;                      /* DFT, STFT: made at load when the length
                                                    is known (NULL: per run); read-only */
  } spectral;
} dynq__opstate_t;

/* Free what a node's state owns (the model calls it for every node of
 * a loaded graph before freeing the states).  NULL-safe. */
void dynq__opstate_release(const dynq__node_t *n, dynq__opstate_t *st);

/* Quantization statistics of one node's INT8 run (model.h: run result). */
typedef struct dynq__layer_quant {
  int node;                   /* index in the graph */
  int op;                     /* DYNQ_OP_* */
  int64_t rows;               /* activation rows quantized (all calls) */
  int64_t macs;               /* INT8 multiply-adds */
  float scale_min, scale_max; /* activation scales seen (0 when none) */
  int64_t const_rows;         /* rows with scale 1 (constant or zero rows) */
} dynq__layer_quant_t;

/*
 * Stopping a run from outside: a long run (a request whose sizes make one
 * op quadratic, a huge batch) must not hold its thread for ever.  The
 * executor checks before every fourth node, and ops whose time can grow faster
 * than what they read and write (Einsum's plain sum, NonMaxSuppression,
 * attention, the recurrent ops' time steps, Det, the windowed pools,
 * GridSample, AffineGrid, RoiAlign, MaxRoiPool) also inside their loops,
 * through dynq__op_poll.  Times are CLOCK_MONOTONIC nanoseconds (uv_hrtime's
 * clock), compared against the coarse clock (a tick's resolution, a few
 * nanoseconds a read).
 */
typedef struct dynq__run_stop {
  const atomic_int *cancel;  /* NULL, or nonzero: stop with ECANCELED */
  uint64_t deadline_ns;      /* 0, or stop with EDEADLINE (the caller's deadline) */
  uint64_t limit_ns;         /* 0, or stop with ELIMIT (a cap on run time) */
  int64_t limit_ms;          /* the cap, for the message */
  uint64_t start_ns;         /* when the run started, for the message */
} dynq__run_stop_t;

/* Now on the clock the stop times use (CLOCK_MONOTONIC, ns). */
uint64_t dynq__run_clock_ns(void);
/* s started now, with a run-time cap of ms milliseconds (ELIMIT; ms <= 0:
 * no cap); its cancel flag and deadline are left as they are. */
void dynq__run_stop_cap(dynq__run_stop_t *s, int64_t ms);
/* 0, or the code the run stops with (ECANCELED, EDEADLINE, ELIMIT).  No
 * message: safe from an op's parallel tasks, which note the code for the
 * calling thread to report (dynq__op_stopped). */
int dynq__run_stop_due(const dynq__run_stop_t *s);

typedef struct dynq__op_ctx {
  const dynq__node_t *node;
  const dynq__opstate_t *st;  /* the node's prepared state (never NULL when run) */
  const dynq__kernel_t *kernel;
  int precision;              /* DYNQ_PRECISION_* */
  int threads;                /* large GEMMs may split over this many threads */
  uint64_t splits;            /* GEMMs that did split (the executor reports it) */
  dynq__layer_quant_t *lq;    /* NULL, or where quantized ops add their
                                 statistics (dynq__op_note_quant) */
  char *err;                  /* message buffer for failures */
  size_t errlen;
  /* donor[k]: input k's slot when the executor offers its storage: this
   * node is the value's last reader, the executor owns the data, and no
   * other input of the node is the same value.  NULL otherwise (and in
   * every context built outside the executor).  Taken only through
   * dynq__op_out_like(). */
  dynq__tensor_t *donor[3];
  /* The most bytes one output may take (0: no limit): dynq__op_alloc
   * refuses more with ELIMIT.  The executor takes it from the run's
   * options (dynqd: max_value_bytes), import sets it while folding, so
   * neither a request's values nor a crafted node can make an op build
   * gigabytes. */
  int64_t max_bytes;
  /* NULL, or when the run must stop (dynq__run_opts_t.stop). */
  const dynq__run_stop_t *stop;
} dynq__op_ctx_t;

/* in[i] is NULL for an omitted optional input.  out[] are cleared tensors
 * the op fills (owned storage) with shapes computed from the inputs. */
typedef int dynq__op_run_t(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                           dynq__tensor_t *out);
/* Load-time check beyond arity (constant inputs, attribute values). */
typedef int dynq__op_check_t(const dynq__graph_t *g, const dynq__node_t *n, char *err,
                             size_t errlen);
/* Parse the node's attributes into *st (zeroed by the caller).  g may be
 * NULL (a node run on its own, as tests and the importer's folding do).
 * Must not fail on anything the check accepts; 0 or DYNQ_EGRAPH. */
typedef int dynq__op_prepare_t(const dynq__graph_t *g, const dynq__node_t *n,
                               dynq__opstate_t *st, char *err, size_t errlen);

/* For load-time check functions (n, err and errlen in scope): when cond is
 * false, "node 'name' (Op): " + the message into err, return DYNQ_EGRAPH. */
#define DYNQ_OP_CHECK(cond, ...)                                               \
  do {                                                                         \
    if (!(cond)) {                                                             \
      int o_ = snprintf(err, errlen, "node '%s' (%s): ", n->name ? n->name : "?", \
                        dynq__op_name(n->op));                                 \
      if (o_ >= 0 && (size_t)o_ < errlen) snprintf(err + o_, errlen - (size_t)o_, __VA_ARGS__); \
      return DYNQ_EGRAPH;                                                      \
    }                                                                          \
  } while (0)

const char *dynq__op_name(int op); /* "MatMul"; "?" when unknown (opnames.c) */

/* Formats "node 'name' (Op): ..." into c->err; returns code. */
int dynq__op_fail(dynq__op_ctx_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Output storage for a dtype [rank, dims] result.  zero: filled with
 * zeros, else uninitialised (the op writes every element).  0 or an error
 * (message in c->err). */
int dynq__op_alloc(dynq__op_ctx_t *c, dynq__tensor_t *out, dynq_dtype_t dt, int rank,
                   const int64_t *dims, int zero);
/* 0 when n elements of es bytes each fit c->max_bytes, else ELIMIT naming
 * what (an op's scratch sized by its output, checked before it allocates). */
int dynq__op_check_bytes(dynq__op_ctx_t *c, int64_t n, int64_t es, const char *what);

/* 0 to go on; else the run must stop (canceled, past its deadline or its
 * run-time cap): the message names the node and why, and the op returns
 * the code after freeing what it holds.  Cheap (a flag and the coarse
 * clock); loops call it every few thousand steps. */
int dynq__op_stop_check(dynq__op_ctx_t *c);
static inline int dynq__op_poll(dynq__op_ctx_t *c) {
  return c->stop != NULL ? dynq__op_stop_check(c) : 0;
}
/* After parallel tasks saw dynq__run_stop_due(c->stop) return code: the
 * message for it, as dynq__op_poll writes it; returns code. */
int dynq__op_stopped(dynq__op_ctx_t *c, int code);
/* The executor's check before c->node runs (the message says so). */
int dynq__op_stop_before(dynq__op_ctx_t *c);

/* Output storage for an op that writes every element of a dtype
 * [rank, dims] result: input k's storage, moved, when c->donor[k] offers
 * it and it has the same dtype and byte count (out->data == in[k]->data
 * tells the op: an in-place elementwise loop, or no copy at all for a
 * reshape); else fresh uninitialised storage.  The donor stays readable
 * (as a borrowed view) until the node returns.  0 or an error. */
int dynq__op_out_like(dynq__op_ctx_t *c, int k, dynq_dtype_t dt, int rank,
                      const int64_t *dims, dynq__tensor_t *out);

/* x's bytes under another shape: moved when the executor offers input
 * k (x), copied otherwise (Reshape, Squeeze, Identity, ...). */
int dynq__op_reshape_to(dynq__op_ctx_t *c, int k, const dynq__tensor_t *x, int rank,
                        const int64_t *dims, dynq__tensor_t *out);

/* A quantized op's statistics: rows x K x N multiply-adds, and the scale
 * of each of n quantized rows (scales NULL: counts only).  Nothing when
 * c->lq is NULL. */
void dynq__op_note_quant(dynq__op_ctx_t *c, int64_t rows, int64_t K, int64_t N,
                         const float *scales, int64_t n);

/* Input checks; 0 or an error naming input idx. */
int dynq__op_need_f32(dynq__op_ctx_t *c, const dynq__tensor_t *t, int idx);
int dynq__op_need_present(dynq__op_ctx_t *c, const dynq__tensor_t *t, int idx);
/* axis in [-rank, rank) (or [-rank, rank] with allow_end) normalised. */
int dynq__op_norm_axis(dynq__op_ctx_t *c, int64_t axis, int rank, int allow_end, int *ret);
/* Softmax of one contiguous row of len floats, in place; a NaN anywhere,
 * or a row all -inf, makes the row NaN (norm.c) */
void dynq__softmax_row(float *y, int64_t len);
/* Softmax/LogSoftmax: check X, make the output, rows of len values inner apart (norm.c) */
int dynq__softmax_geometry(dynq__op_ctx_t *c, const dynq__tensor_t *x, dynq__tensor_t *out,
                           int64_t *ret_outer, int64_t *ret_len, int64_t *ret_inner);
/* An int64 (or int32) 1-D or scalar tensor read into v[0..max). */
int dynq__op_read_ints(dynq__op_ctx_t *c, const dynq__tensor_t *t, const char *what,
                       int64_t *v, int max, int *ret_n);

static inline int dynq__dt_is_int(dynq_dtype_t dt) {
  return dt == DYNQ_DT_I64 || dt == DYNQ_DT_I32 || dt == DYNQ_DT_I8 || dt == DYNQ_DT_U8;
}

static inline int64_t dynq__load_i(const void *p, dynq_dtype_t dt, int64_t i) {
  switch (dt) {
  case DYNQ_DT_I64: return ((const int64_t *)p)[i];
  case DYNQ_DT_I32: return ((const int32_t *)p)[i];
  case DYNQ_DT_I8: return ((const int8_t *)p)[i];
  case DYNQ_DT_U8: return ((const uint8_t *)p)[i];
  case DYNQ_DT_F32: return (int64_t)((const float *)p)[i];
  default: return 0;
  }
}

/* Narrowing wraps (two's complement), as numpy and ONNX Runtime do. */
static inline void dynq__store_i(void *p, dynq_dtype_t dt, int64_t i, int64_t v) {
  switch (dt) {
  case DYNQ_DT_I64: ((int64_t *)p)[i] = v; break;
  case DYNQ_DT_I32: ((int32_t *)p)[i] = (int32_t)(uint32_t)(uint64_t)v; break;
  case DYNQ_DT_I8: ((int8_t *)p)[i] = (int8_t)(uint8_t)(uint64_t)v; break;
  case DYNQ_DT_U8: ((uint8_t *)p)[i] = (uint8_t)(uint64_t)v; break;
  case DYNQ_DT_F32: ((float *)p)[i] = (float)v; break;
  default: break;
  }
}

static inline double dynq__load_d(const void *p, dynq_dtype_t dt, int64_t i) {
  if (dt == DYNQ_DT_F32) return ((const float *)p)[i];
  return (double)dynq__load_i(p, dt, i);
}

/* ---- the broadcast iterator ----
 *
 * numpy broadcasting of up to DYNQ_BCAST_MAX operands: the result shape
 * and, per operand, element strides with 0 where it is broadcast.  Walk
 * the result in order with a multi-index cnt[] (zeroed) and per-operand
 * offsets off[] (zeroed), advancing either one element
 * (dynq__bcast_next) or one innermost row (dynq__bcast_next_row, then
 * the caller runs the last axis itself with strides st[k][rank-1]).
 */
#define DYNQ_BCAST_MAX 3

typedef struct dynq__bcast {
  int rank;
  int64_t dims[DYNQ_MAX_RANK];
  int64_t st[DYNQ_BCAST_MAX][DYNQ_MAX_RANK];
  int64_t n;                 /* elements of the result */
} dynq__bcast_t;

/* From shapes: 0, DYNQ_ESHAPE (ret_bad: the operand that does not
 * broadcast with those before it) or DYNQ_ELIMIT (too large). */
int dynq__bcast_shapes(dynq__bcast_t *b, int nin, const int *ranks,
                       const int64_t *const *dims, int *ret_bad);
/* From tensors, with the error message (naming both shapes) in c->err. */
int dynq__bcast_init(dynq__op_ctx_t *c, int nin, const dynq__tensor_t *const *t,
                     dynq__bcast_t *b);

/* Advance cnt/off over axes [0, upto) by one step of axis upto - 1. */
static inline void dynq__bcast_step(const dynq__bcast_t *b, int nin, int upto, int64_t *cnt,
                                    int64_t *off) {
  for (int d = upto - 1; d >= 0; d--) {
    cnt[d]++;
    for (int k = 0; k < nin; k++) off[k] += b->st[k][d];
    if (cnt[d] < b->dims[d]) return;
    for (int k = 0; k < nin; k++) off[k] -= b->st[k][d] * b->dims[d];
    cnt[d] = 0;
  }
}
static inline void dynq__bcast_next(const dynq__bcast_t *b, int nin, int64_t *cnt,
                                    int64_t *off) {
  dynq__bcast_step(b, nin, b->rank, cnt, off);
}
static inline void dynq__bcast_next_row(const dynq__bcast_t *b, int nin, int64_t *cnt,
                                        int64_t *off) {
  dynq__bcast_step(b, nin, b->rank - 1, cnt, off);
}

/* C[M,N] = beta * C + alpha * op(A) * op(B), row-major, on the calling
 * thread: dynq__sgemm_ex(1, ..., NULL, ...). */
void dynq__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb,
                 float beta, float *C, int64_t ldc);
/* The same split over up to `threads` threads (lib/parallel.h) when large,
 * through the FP32 GEMM of lib/kernels/sgemm.h (the numerics written
 * there: the same bits for any split, packed or not).  Bp: NULL, or B
 * packed by dynq__sgemm_pack_b (the caller keeps B as well: it is the
 * fallback when scratch memory runs out).  Runs OpenBLAS instead where
 * packing does not pay (no Bp and more than 6 rows or a transposed B;
 * no Bp and M == 1) and on CPUs without AVX2 (the reference micro-kernel is scalar).  Never
 * fails; returns 1 when it ran on more than one thread, else 0. */
int dynq__sgemm_ex(int threads, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, const float *Bp,
                   float beta, float *C, int64_t ldc);

/* dynq__sgemm_ex, then per element y = act(y + bias[n]) (bias NULL: none;
 * act DYNQ_ACT_*) applied to each micro-tile as soon as it is finished,
 * while it is in L1: the bits of the GEMM followed by an Add of the bias
 * and dynq__act_apply (or RELU's max), on every kernel and split. */
int dynq__sgemm_layer(int threads, int ta, int tb, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                      const float *Bp, float beta, float *C, int64_t ldc, const float *bias,
                      int act);

/* y[j] = f(x[j]) for j < n with the shared vector math (vmath.h),
 * vectorized for the CPU at hand; y may be x. */
enum { DYNQ_VMATH_SIGMOID, DYNQ_VMATH_TANH, DYNQ_VMATH_ERF };
void dynq__vmath_apply(int fn, const float *x, float *y, int64_t n);

/* Fused activation of a layer's output columns [n0, n1) of M rows
 * (DYNQ_ACT_SIGMOID, GELU and GELU_TANH; the INT8 kernels do NONE and RELU
 * themselves), with the shared vector math: the same bits on every kernel
 * and split.  GELU (erf form) takes erf from a rational approximation,
 * within 1e-6 absolute of the exact GELU and ~3x cheaper than
 * dynq_verf's form. */
void dynq__act_apply(int act, float *C, size_t ldc, int64_t M, int64_t n0, int64_t n1);

/* A tensor read through a permutation of its axes (StridedMatMul and
 * Attention, lib/ops/matmul.c): logical dims and element strides. */
typedef struct dynq__mview {
  int rank;
  int64_t dims[DYNQ_MAX_RANK], st[DYNQ_MAX_RANK];
} dynq__mview_t;
/* A permutation of rank values from the int64 tensor p (NULL: the
 * identity), checked; the error names it as `what`. */
int dynq__smm_perm(dynq__op_ctx_t *c, const dynq__tensor_t *p, const char *what, int rank,
                   int64_t *perm);
/* The logical (permuted) view of a contiguous tensor. */
void dynq__smm_view(const dynq__tensor_t *t, const int64_t *perm, dynq__mview_t *v);

#endif
