/* Reductions over axes: ReduceMean, ReduceSum (accumulated in double). */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"

/* ---- ReduceMean, ReduceSum ---- */

int dynq__run_reduce(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  int rc, na = 0;
  if ((rc = dynq__op_need_present(c, in[0], 0))) return rc;
  const dynq__tensor_t *x = in[0];
  int mean = c->node->op == DYNQ_OP_REDUCE_MEAN;
  if (x->dtype != DYNQ_DT_F32 && (mean || !dynq__dt_is_int(x->dtype)))
    return dynq__op_fail(c, DYNQ_EDTYPE, "unsupported dtype %s", dynq__dtype_name(x->dtype));
  const int keep = c->st->reduce.keepdims, noop = c->st->reduce.noop_empty;
  int64_t axes[DYNQ_MAX_RANK];
  int red[DYNQ_MAX_RANK] = {0};
  if (in[1] != NULL && (rc = dynq__op_read_ints(c, in[1], "axes", axes, DYNQ_MAX_RANK, &na))) return rc;
  if (na == 0 && noop) {
    if ((rc = dynq__op_alloc(c, out, x->dtype, x->rank, x->dims, 1))) return rc;
    memcpy(out->data, x->data, dynq__tensor_nbytes(x));
    return 0;
  }
  for (int i = 0; i < na; i++) {
    int a = 0;
    if ((rc = dynq__op_norm_axis(c, axes[i], x->rank, 0, &a))) return rc;
    red[a] = 1;
  }
  if (na == 0)
    for (int d = 0; d < x->rank; d++) red[d] = 1;
  int64_t dims[DYNQ_MAX_RANK], kd[DYNQ_MAX_RANK], ost[DYNQ_MAX_RANK];
  int r = 0;
  for (int d = 0; d < x->rank; d++) {
    kd[d] = red[d] ? 1 : x->dims[d];
    if (keep) dims[r++] = kd[d];
    else if (!red[d]) dims[r++] = x->dims[d];
  }
  if ((rc = dynq__op_alloc(c, out, x->dtype, r, dims, 1))) return rc;
  int64_t no = dynq__tensor_numel(out), e = 1;
  for (int d = x->rank - 1; d >= 0; d--) {
    ost[d] = red[d] ? 0 : e;
    e *= kd[d];
  }
  double *acc = calloc((size_t)(no ? no : 1), sizeof(double));
  if (acc == NULL) return dynq__op_fail(c, -ENOMEM, "out of memory");
  int64_t n = dynq__tensor_numel(x), cnt[DYNQ_MAX_RANK] = {0}, off = 0;
  for (int64_t i = 0; i < n; i++) {
    acc[off] += dynq__load_d(x->data, x->dtype, i);
    for (int d = x->rank - 1; d >= 0; d--) {
      cnt[d]++;
      off += ost[d];
      if (cnt[d] < x->dims[d]) break;
      off -= ost[d] * x->dims[d];
      cnt[d] = 0;
    }
  }
  double cntr = no > 0 && n > 0 ? (double)n / (double)no : 0;
  for (int64_t i = 0; i < no; i++) {
    double v = acc[i];
    if (mean) v = cntr > 0 ? v / cntr : NAN;
    if (x->dtype == DYNQ_DT_F32) ((float *)out->data)[i] = (float)v;
    else dynq__store_i(out->data, x->dtype, i, (int64_t)v);
  }
  free(acc);
  return 0;
}


int dynq__prep_reduce(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                      char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  st->reduce.keepdims = dynq__node_attr_i(n, "keepdims", 1) != 0;
  st->reduce.noop_empty = dynq__node_attr_i(n, "noop_with_empty_axes", 0) != 0;
  return 0;
}
