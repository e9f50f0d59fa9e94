/*
 * Operator table: arity, a load-time check of constants and attributes,
 * and the run function.  Indexed by dynq_op_t (designated initializers),
 * not an if/else chain.
 */
#ifndef DYNQ_OPS_H
#define DYNQ_OPS_H

#include <stddef.h>
#include <stdio.h>

#include "graph.h"
#include "kernels/kernels.h"
#include "model.h"
#include "tensor.h"

typedef struct dynq__op_ctx {
  const dynq__node_t *node;
  const dynq__kernel_t *kernel;
  int precision;              /* DYNQ_PRECISION_* */
  int threads;                /* dynq__run_opts_t.threads */
  char *err;                  /* message buffer for failures */
  size_t errlen;
  /* donor[k]: input k's slot when the executor offers its storage: this
   * node is the value's last reader, the executor owns the data, and no
   * other input of the node is the same value.  NULL otherwise (and in
   * every context built outside the executor).  Taken only through
   * dynq__op_out_like(). */
  dynq__tensor_t *donor[3];
} dynq__op_ctx_t;

/* in[i] is NULL for an omitted optional input.  out[] are cleared tensors
 * the op fills (owned storage) with shapes computed from the inputs. */
typedef int (*dynq__op_run_fn)(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                               dynq__tensor_t *out);
/* Load-time check beyond arity (constant inputs, attribute values). */
typedef int (*dynq__op_check_fn)(const dynq__graph_t *g, const dynq__node_t *n,
                                 char *err, size_t errlen);

typedef struct dynq__opdef {
  const char *name;
  int min_in, max_in, n_out;
  dynq__op_check_fn check;    /* may be NULL */
  dynq__op_run_fn run;
} dynq__opdef_t;

/* NULL for an unknown op code. */
const dynq__opdef_t *dynq__opdef(int op);
/* The per-family tables dynq__opdef() consults (ops_graph.c, ops_rnn.c). */
const dynq__opdef_t *dynq__opdef_graph(int op);
const dynq__opdef_t *dynq__opdef_rnn(int op);

/* For load-time check functions (n, err and errlen in scope): when cond is
 * false, "node 'name' (Op): " + the message into err, return DYNQ_EGRAPH. */
#define DYNQ_OP_CHECK(cond, ...)                                               \
  do {                                                                         \
    if (!(cond)) {                                                             \
      int o_ = snprintf(err, errlen, "node '%s' (%s): ", n->name, dynq__op_name(n->op)); \
      if (o_ >= 0 && (size_t)o_ < errlen) snprintf(err + o_, errlen - (size_t)o_, __VA_ARGS__); \
      return DYNQ_EGRAPH;                                                      \
    }                                                                          \
  } while (0)

/* Output storage for an op that writes every element of a dtype
 * [rank, dims] result: input k's storage, moved, when c->donor[k] offers
 * it and it has the same dtype and byte count (out->data == in[k]->data
 * tells the op: an in-place elementwise loop, or no copy at all for a
 * reshape); else fresh uninitialised storage.  The donor stays readable
 * (as a borrowed view) until the node returns.  0 or an error (message
 * in c->err). */
int dynq__op_out_like(dynq__op_ctx_t *c, int k, dynq_dtype_t dt, int rank,
                      const int64_t *dims, dynq__tensor_t *out);

/* Error helper: formats "node 'name' (Op): ..." into c->err; returns code. */
int dynq__op_fail(dynq__op_ctx_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ops_graph.c: elementwise binary ops (Add, Sub, Mul, Div, Pow,
 * comparisons, And/Or) for any dtype with numpy broadcasting; ops.c's
 * float32 Add/Sub/Mul/Div hand non-float inputs to it. */
int dynq__run_binary_any(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                         dynq__tensor_t *out);
/* For an IF node that ran with output `flag`: the node range (relative to
 * the IF node, first >= 1) the executor must skip. */
int dynq__if_skip_range(const dynq__node_t *n, const dynq__tensor_t *flag, int64_t *ret_first,
                        int64_t *ret_count);

/* qlinear.c */
int dynq__qlinear_check(const dynq__graph_t *g, const dynq__node_t *n,
                        char *err, size_t errlen);
int dynq__qlinear_run(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                      dynq__tensor_t *out);

#endif
