/* Engine tensors to and from the wire: a copy between dynq__tensor_t and
 * proto.h's view, so the checks live once, in proto.c. */
#include "proto-tensor.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <dynq/errors.h>

/* t as the wire's view; -1 (w poisoned) when its rank is out of range. */
static int as_wtensor(dynq__wbuf_t *w, const dynq__tensor_t *t, dynq__wtensor_t *v) {
  memset(v, 0, sizeof(*v));
  if (t == NULL || t->rank < 0 || t->rank > DYNQ_MAX_RANK) {
    if (!w->err) w->err = DYNQ_EINTERNAL;  /* a caller bug (dynq__w_wtensor) */
    return -1;
  }
  v->dtype = (int)t->dtype;
  v->rank = t->rank;
  memcpy(v->dims, t->dims, sizeof(v->dims));
  v->data = t->data;
  int64_t n = dynq__tensor_numel(t);
  /* a negative count stays one that dynq__w_wtensor refuses */
  v->nbytes = n < 0 ? SIZE_MAX : (size_t)n * dynq__dtype_size(t->dtype);
  return 0;
}

void dynq__w_tensor(dynq__wbuf_t *w, const dynq__tensor_t *t) {
  dynq__wtensor_t v;
  if (as_wtensor(w, t, &v) == 0) dynq__w_wtensor(w, &v);
}

void dynq__w_tensor_head(dynq__wbuf_t *w, const dynq__tensor_t *t) {
  dynq__wtensor_t v;
  if (as_wtensor(w, t, &v) == 0) dynq__w_wtensor_head(w, &v);
}

int dynq__obj_tensor(dynq__obj_t o, const dynq__tensor_limits_t *lim,
                     dynq__tensor_t *ret_t, char *err, size_t errlen) {
  dynq__wtensor_t v;
  int rc = dynq__obj_wtensor(o, lim, &v, err, errlen);
  if (rc != 0) return rc;
  dynq__tensor_t t;
  memset(&t, 0, sizeof t);
  rc = dynq__tensor_alloc_uninit(&t, (dynq_dtype_t)v.dtype, v.rank, v.dims);
  if (rc < 0) {
    if (err != NULL && errlen > 0)
      snprintf(err, errlen, "cannot allocate a tensor of %zu bytes", v.nbytes);
    return rc;
  }
  if (v.nbytes > 0) memcpy(t.data, v.data, v.nbytes);
  *ret_t = t;
  return 0;
}
