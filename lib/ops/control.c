/*
 * If, Phi and Loop.  The importer inlines both branches after the IF node as
 * two node ranges (attrs then_nodes, else_nodes); IF outputs a uint8 flag
 * and the executor skips the range not taken.  PHI(flag, then_v, else_v)
 * picks the branch result afterwards, so the graph stays a flat,
 * validated list.
 */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"

static int whole_loops(const dynq__graph_t *g, int64_t first, int64_t last);

/* ---- If and Phi ---- */

int dynq__run_if(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  if (dynq__tensor_numel(in[0]) != 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "condition must hold exactly one element");
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_U8, 0, NULL, 1))) return rc;
  *(uint8_t *)out->data = dynq__load_d(in[0]->data, in[0]->dtype, 0) != 0.0;
  return 0;
}

int dynq__run_phi(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  if (in[0]->dtype != DYNQ_DT_U8 || dynq__tensor_numel(in[0]) != 1)
    return dynq__op_fail(c, DYNQ_EDTYPE, "flag must be a one-element bool (uint8)");
  int k = *(const uint8_t *)in[0]->data ? 1 : 2;
  const dynq__tensor_t *src = in[k];
  if (src == NULL || src->dtype == DYNQ_DT_INVALID)
    return dynq__op_fail(c, DYNQ_EGRAPH, "the %s branch did not compute this value",
                         k == 1 ? "then" : "else");
  if ((rc = dynq__op_out_like(c, k, src->dtype, src->rank, src->dims, out))) return rc;
  if (out->data != src->data && dynq__tensor_nbytes(src))
    memcpy(out->data, src->data, dynq__tensor_nbytes(src));
  return 0;
}

/* Load-time: the branch ranges must lie inside the graph after the node. */
int dynq__check_if(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  int64_t idx = n - g->nodes;
  int64_t t = dynq__node_attr_i(n, "then_nodes", -1), e = dynq__node_attr_i(n, "else_nodes", -1);
  if (idx < 0 || idx >= g->n_nodes || t < 0 || e < 0 || t > g->n_nodes || e > g->n_nodes ||
      idx + 1 + t + e > g->n_nodes) {
    snprintf(err, errlen, "node '%s' (If): branch ranges (then_nodes %lld, else_nodes %lld) "
             "do not fit in the graph", n->name ? n->name : "?", (long long)t, (long long)e);
    return DYNQ_EGRAPH;
  }
  if (!whole_loops(g, idx + 1, idx + t) || !whole_loops(g, idx + 1 + t, idx + t + e)) {
    snprintf(err, errlen, "node '%s' (If): a branch holds part of a loop",
             n->name ? n->name : "?");
    return DYNQ_EGRAPH;
  }
  return 0;
}

int dynq__prep_if(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                  char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->branch.then_nodes = dynq__node_attr_i(n, "then_nodes", 0);
  st->branch.else_nodes = dynq__node_attr_i(n, "else_nodes", 0);
  return 0;
}

void dynq__if_skip_range(const dynq__opstate_t *st, const dynq__tensor_t *flag,
                         int64_t *ret_first, int64_t *ret_count) {
  int64_t t = st->branch.then_nodes, e = st->branch.else_nodes;
  int taken = flag->data != NULL && *(const uint8_t *)flag->data != 0;
  *ret_first = taken ? 1 + t : 1;  /* relative to the IF node */
  *ret_count = taken ? e : t;
}

/* ---- Loop ----
 *
 * The importer inlines the body right after the LOOP node, as a node
 * range closed by a LOOP_END node (both carry body_nodes and n_carried):
 *
 *   LOOP(M?, cond?, v_init...)          -> (iter, cond_in, v_in...)
 *   ... the body: reads iter, cond_in, v_in and outer values ...
 *   LOOP_END(iter, M?, cond_out?, v_out..., scan...) -> (v_final..., scan_all...)
 *
 * LOOP only sets up the first iteration.  The back edge is the
 * executor's (lib/model.c): at LOOP_END it appends each scan value to its
 * output and either writes v_out, iter + 1 and cond_out into LOOP's
 * outputs and jumps back to the first body node, or moves v_out to
 * v_final and goes on.  So the graph stays a flat, validated list in
 * which every value has one producer; only the executor knows that the
 * body's values are written once per iteration. */

static int64_t load_i64(const dynq__tensor_t *t) {
  if (t->dtype == DYNQ_DT_I64) return *(const int64_t *)t->data;
  double v = dynq__load_d(t->data, t->dtype, 0);
  return v >= 9.2e18 ? INT64_MAX : v <= -9.2e18 ? INT64_MIN : (int64_t)v;
}

int dynq__loop_enters(const dynq__tensor_t *m, const dynq__tensor_t *cond) {
  if (m != NULL && load_i64(m) <= 0) return 0;
  return cond == NULL || dynq__load_d(cond->data, cond->dtype, 0) != 0.0;
}

int dynq__loop_again(int64_t iter, const dynq__tensor_t *m, const dynq__tensor_t *cond_out) {
  if (m != NULL && iter + 1 >= load_i64(m)) return 0;
  return cond_out == NULL || dynq__load_d(cond_out->data, cond_out->dtype, 0) != 0.0;
}

static int need_scalar(dynq__op_ctx_t *c, const dynq__tensor_t *t, const char *what) {
  if (t == NULL) return 0;
  if (t->dtype == DYNQ_DT_INVALID || t->data == NULL || dynq__tensor_numel(t) != 1)
    return dynq__op_fail(c, DYNQ_ESHAPE, "%s must hold exactly one element", what);
  return 0;
}

int dynq__run_loop(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc;
  if ((rc = need_scalar(c, in[0], "the trip count M")) ||
      (rc = need_scalar(c, in[1], "the condition")))
    return rc;
  if ((rc = dynq__op_alloc(c, &out[0], DYNQ_DT_I64, 0, NULL, 1)) ||
      (rc = dynq__op_alloc(c, &out[1], DYNQ_DT_U8, 0, NULL, 1)))
    return rc;
  *(uint8_t *)out[1].data = in[1] == NULL || dynq__load_d(in[1]->data, in[1]->dtype, 0) != 0.0;
  for (int64_t k = 0; k < c->st->loop.n_carried; k++) {
    const dynq__tensor_t *v = in[2 + k];
    if ((rc = dynq__op_need_present(c, v, (int)(2 + k))) ||
        (rc = dynq__op_reshape_to(c, (int)(2 + k), v, v->rank, v->dims, &out[2 + k])))
      return rc;
  }
  return 0;
}

int dynq__run_loop_end(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  (void)in, (void)out;
  return dynq__op_fail(c, DYNQ_EGRAPH, "runs only as the end of its loop, in the executor");
}

int dynq__prep_loop(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                    char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->loop.body_nodes = dynq__node_attr_i(n, "body_nodes", 0);
  st->loop.n_carried = dynq__node_attr_i(n, "n_carried", 0);
  return 0;
}

/* The node range [first, last] holds whole loops only: every LOOP in it
 * ends in it and every LOOP_END in it starts in it (If's branches and
 * loop bodies nest; a crafted file must not jump into the middle). */
static int whole_loops(const dynq__graph_t *g, int64_t first, int64_t last) {
  for (int64_t j = first; j <= last; j++) {
    const dynq__node_t *x = &g->nodes[j];
    int64_t b = dynq__node_attr_i(x, "body_nodes", -1);
    if (x->op == DYNQ_OP_LOOP && (b < 0 || j + 1 + b > last)) return 0;
    if (x->op == DYNQ_OP_LOOP_END && (b < 0 || j - 1 - b < first)) return 0;
  }
  return 1;
}

static int check_pair(const dynq__graph_t *g, const dynq__node_t *n, int64_t l, int64_t e,
                      char *err, size_t errlen) {
  const dynq__node_t *lp = &g->nodes[l], *le = &g->nodes[e];
  int64_t nc = dynq__node_attr_i(lp, "n_carried", -1);
  DYNQ_OP_CHECK(lp->op == DYNQ_OP_LOOP && le->op == DYNQ_OP_LOOP_END,
                "its body range does not join a Loop to its LoopEnd");
  DYNQ_OP_CHECK(nc >= 0 && nc == dynq__node_attr_i(le, "n_carried", -2) &&
                    dynq__node_attr_i(lp, "body_nodes", -1) ==
                        dynq__node_attr_i(le, "body_nodes", -2),
                "Loop and LoopEnd disagree on body_nodes or n_carried");
  DYNQ_OP_CHECK(lp->n_in == 2 + nc && lp->n_out == 2 + nc,
                "Loop with %lld carried values has %d inputs and %d outputs", (long long)nc,
                lp->n_in, lp->n_out);
  DYNQ_OP_CHECK(le->n_in >= 3 + nc && le->n_out == le->n_in - 3,
                "LoopEnd with %lld carried values has %d inputs and %d outputs",
                (long long)nc, le->n_in, le->n_out);
  DYNQ_OP_CHECK(le->in[0] == lp->out[0] && le->in[0] >= 0 && le->in[1] == lp->in[0],
                "LoopEnd must read its Loop's iteration count and trip count");
  for (int k = 0; k < lp->n_out; k++)
    DYNQ_OP_CHECK(lp->out[k] >= 0, "Loop output %d is missing", k);
  DYNQ_OP_CHECK(whole_loops(g, l + 1, e - 1), "the body holds part of another loop");
  return 0;
}

int dynq__check_loop(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  int64_t idx = n - g->nodes, b = dynq__node_attr_i(n, "body_nodes", -1);
  DYNQ_OP_CHECK(idx >= 0 && idx < g->n_nodes && b >= 0 && b < g->n_nodes - idx - 1,
                "body range (body_nodes %lld) does not fit in the graph", (long long)b);
  return check_pair(g, n, idx, idx + 1 + b, err, errlen);
}

int dynq__check_loop_end(const dynq__graph_t *g, const dynq__node_t *n, char *err,
                         size_t errlen) {
  int64_t idx = n - g->nodes, b = dynq__node_attr_i(n, "body_nodes", -1);
  DYNQ_OP_CHECK(idx >= 0 && idx < g->n_nodes && b >= 0 && b < idx,
                "body range (body_nodes %lld) does not fit in the graph", (long long)b);
  return check_pair(g, n, idx - 1 - b, idx, err, errlen);
}
