/*
 * If and Phi.  The importer inlines both branches after the IF node as
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
