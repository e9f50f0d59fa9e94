/* Normalizations: Softmax along one axis (opset 13 semantics). */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "vmath.h"

int dynq__run_softmax(dynq__op_ctx_t *c, const dynq__tensor_t *const *in,
                       dynq__tensor_t *out) {
  const dynq__tensor_t *x = in[0];
  int rc, ax = 0;
  if ((rc = dynq__op_need_f32(c, x, 0))) return rc;
  if (x->rank == 0) return dynq__op_fail(c, DYNQ_ESHAPE, "input is a scalar");
  if ((rc = dynq__op_norm_axis(c, c->st->axis.axis, x->rank, 0, &ax))) return rc;
  if ((rc = dynq__op_alloc(c, out, DYNQ_DT_F32, x->rank, x->dims, 1))) return rc;
  int64_t len = x->dims[ax], inner = 1, outer = 1;
  for (int d = ax + 1; d < x->rank; d++) inner *= x->dims[d];
  for (int d = 0; d < ax; d++) outer *= x->dims[d];
  const float *px = x->data;
  float *py = out->data;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const float *xs = px + o * len * inner + i;
      float *ys = py + o * len * inner + i;
      float mx = -INFINITY;
      for (int64_t k = 0; k < len; k++) mx = xs[k * inner] > mx ? xs[k * inner] : mx;
      double sum = 0;
      for (int64_t k = 0; k < len; k++) {
        float e = dynq_vexp(xs[k * inner] - mx);
        ys[k * inner] = e;
        sum += e;
      }
      float inv = (float)(1.0 / sum);
      for (int64_t k = 0; k < len; k++) ys[k * inner] *= inv;
    }
  return 0;
}

