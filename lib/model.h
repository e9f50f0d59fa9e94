/*
 * A loaded model: a read-only MAP_SHARED mapping of a .dynq file, the
 * graph decoded from it (pointing into the mapping), and the execution
 * plan.  Reference counted and immutable once loaded, so any number of
 * threads may run it at once; the last dynq__model_unref() unmaps.
 */
#ifndef DYNQ_MODEL_H
#define DYNQ_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "kernels/kernels.h"
#include "opkit.h" /* DYNQ_PRECISION_* */
#include "tensor.h"

typedef struct dynq__model dynq__model_t;

/* Open, validate (header, section checksums, bounds, overlaps, graph) and
 * map a model.  On failure returns -errno or DYNQ_E* and writes a message
 * naming what was wrong into err. */
int dynq__model_open(const char *path, dynq__model_t **ret_model, char *err,
                     size_t errlen);
dynq__model_t *dynq__model_ref(dynq__model_t *m);
dynq__model_t *dynq__model_unref(dynq__model_t *m); /* NULL-safe, returns NULL */

const dynq__graph_t *dynq__model_graph(const dynq__model_t *m);
const char *dynq__model_path(const dynq__model_t *m);
size_t dynq__model_file_size(const dynq__model_t *m);

/* A model whose file was truncated or rewritten in place after load is
 * "broken": every later run fails with DYNQ_EFORMAT (checked with fstat
 * before each run).  dynq__model_fault() is for the embedding program's
 * SIGBUS handler (async-signal-safe; the library installs no handler):
 * when addr lies in a model's mapping it maps zero pages over that
 * mapping, marks the model broken (the run in progress is refused when it
 * ends) and returns 1; else 0.  dynq__model_broken_report() is 1 exactly
 * once per broken model, so the caller logs it once. */
int dynq__model_fault(const void *addr);
int dynq__model_broken(const dynq__model_t *m);
int dynq__model_broken_report(dynq__model_t *m);

/* Kinds of quantized layer, for the per-kind counts below. */
enum { DYNQ_QKIND_LINEAR, DYNQ_QKIND_CONV, DYNQ_QKIND_LSTM, DYNQ_QKIND_GRU, DYNQ_QKIND_RNN,
       DYNQ_QKIND__COUNT };
/* "QLinear", "QConv", "QLSTM", "QGRU", "QRNN"; "?" out of range. */
const char *dynq__qkind_name(int kind);

/* Summary for model.info: every kind of quantized layer counts. */
typedef struct dynq__model_stats {
  int n_nodes;
  int n_quantized;            /* quantized layers of every kind */
  int n_quant[DYNQ_QKIND__COUNT];            /* per kind */
  size_t quant_int8_bytes[DYNQ_QKIND__COUNT]; /* packed int8 weights per kind */
  size_t int8_weight_bytes;   /* packed int8 weights, all kinds */
  size_t fp32_weight_bytes;   /* FP32 constants used on the INT8 path */
  size_t ref_weight_bytes;    /* FP32 reference weights (fp32 path only) */
  int has_reference;          /* every quantized layer has its FP32 reference */
  int per_tensor;             /* any quantized layer quantizes activations per
                                 tensor (else all per row / per patch) */
} dynq__model_stats_t;
void dynq__model_get_stats(const dynq__model_t *m, dynq__model_stats_t *ret);

/* Index of the graph input with this name, or -1. */
int dynq__model_input_index(const dynq__model_t *m, const char *name);
/* Index of the graph output with this name, or -1. */
int dynq__model_output_index(const dynq__model_t *m, const char *name);

/*
 * The model's signature, for callers that must not index the graph (the
 * daemon): its inputs and outputs in graph order, each with name, dtype
 * and dims (-1: symbolic, any size >= 1 per request), and the streaming
 * state pairs (an input fed by an output on a session's next call).
 * Valid as long as the model is.
 */
typedef struct dynq__io {
  const char *name;
  dynq_dtype_t dtype;
  int rank;
  int64_t dims[DYNQ_MAX_RANK];
  int state_peer;   /* input: the output index feeding it; output: the input
                       index it feeds; -1 when not part of a state pair */
} dynq__io_t;

typedef struct dynq__model_sig {
  int n_inputs, n_outputs, n_state;
  const dynq__io_t *inputs, *outputs;
  const char *producer;  /* the tool that wrote the file; "" if none */
  uint64_t source_hash;  /* FNV-1a 64 of the source ONNX file; 0 if unknown */
} dynq__model_sig_t;
const dynq__model_sig_t *dynq__model_signature(const dynq__model_t *m);

/*
 * Observer: called after every node that ran, on the thread running the
 * model, with the node's inputs (in[k] NULL for an omitted input) and its
 * outputs, before the executor frees anything the node read last.  The
 * tensors are only valid during the call: copy what you keep.  precision
 * is the one the node ran at (DYNQ_PRECISION_*).  Per-layer diagnosis
 * hangs off this (compare each node's outputs between an INT8 and an
 * FP32 run, or against a reference); with no observer the executor pays
 * one NULL test per node.
 */
typedef void (*dynq__on_node_fn)(void *user, const dynq__graph_t *g, int index,
                                 const dynq__node_t *node, int precision,
                                 const dynq__tensor_t *const *inputs,
                                 const dynq__tensor_t *outputs);

/*
 * What one run did, filled when dynq__run_opts_t.result is set (it is
 * reset at the start of the run):
 *  - splits: INT8 GEMMs that ran on more than one thread;
 *  - nodes_run: nodes executed (If branches not taken are skipped);
 *  - int8_macs: multiply-adds of every quantized layer that ran INT8;
 *  - quant[0..n_quant): per quantized node that ran INT8, its activation
 *    statistics (dynq__layer_quant_t in ops/opkit.h: rows, MACs, the
 *    range of activation scales), up to cap_quant entries in the
 *    caller's array (quant NULL or cap_quant 0: counts only).  n_quant
 *    counts every such node even past cap_quant.
 */
typedef struct dynq__run_result {
  uint64_t splits;
  int nodes_run;
  int64_t int8_macs;
  int n_quant;
  int cap_quant;               /* set by the caller */
  dynq__layer_quant_t *quant;  /* caller-owned [cap_quant] or NULL */
} dynq__run_result_t;

typedef struct dynq__run_opts {
  int precision;                  /* DYNQ_PRECISION_* */
  const dynq__kernel_t *kernel;   /* NULL: dynq__kernel() */
  int threads;                    /* large GEMMs may split along N over this
                                     many threads (<= 1: the calling thread only) */
  const unsigned char *node_precision; /* NULL, or [n_nodes]: DYNQ_PRECISION_* per
                                     node, overriding .precision (calibration
                                     runs one layer INT8 and the rest FP32) */
  dynq__run_result_t *result;     /* NULL, or filled by the run (above) */
  dynq__on_node_fn on_node;       /* NULL, or called after each node (above) */
  void *on_node_user;
  int on_node_times_only;         /* 1: the observer never reads the node's
                                     inputs (a profiler), so the executor
                                     still hands a value's storage to its
                                     last reader and runs as without one */
  int64_t max_value_bytes;        /* 0, or the most bytes one node's output
                                     may take: more is ELIMIT, naming the
                                     node (a graph whose sizes follow its
                                     input values cannot be made to build
                                     gigabytes) */
  const dynq__run_stop_t *stop;   /* NULL, or when to stop the run (opkit.h):
                                     ECANCELED, EDEADLINE or ELIMIT naming the
                                     node it stopped at; checked before every
                                     fourth node and inside ops whose time can
                                     grow faster than their inputs and outputs */
} dynq__run_opts_t;

/*
 * Run the graph.  inputs[i] is graph input i (caller matched names); each
 * is checked against the declared dtype and dims (-1 dims accept any
 * size >= 1 but the same symbol is not cross-checked).  On success
 * outputs[0..n_outputs) are owned tensors the caller clears.  On failure
 * nothing is left allocated and err names the node or input at fault.
 * Thread-safe: the model is read-only; all scratch is per call.
 */
int dynq__model_run(const dynq__model_t *m, const dynq__run_opts_t *opts,
                    const dynq__tensor_t *inputs, dynq__tensor_t *outputs,
                    char *err, size_t errlen);

#endif
