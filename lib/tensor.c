/* Tensor helpers: the engine's view of the dtype table (lib/proto/dtypes.h),
 * aligned storage. */
#include "tensor.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/dynqclient.h"
#include "dynq/errors.h"

/* The public enum (what clients send) is the engine's, code for code. */
#define SAME(NAME, code, str, alias_, bytes, PUB)                            \
  _Static_assert((int)DYNQ_##PUB == (int)DYNQ_DT_##NAME && DYNQ_DT_##NAME == code, \
                 "dynqclient.h DYNQ_" #PUB " differs from the engine's dtype code");
DYNQ_DTYPES(SAME)
#undef SAME

size_t dynq__dtype_size(dynq_dtype_t dt) { return dynq__dt_size((int)dt); }

const char *dynq__dtype_name(dynq_dtype_t dt) {
  const char *s = dynq__dt_name((int)dt);
  return s != NULL ? s : "invalid";
}

dynq_dtype_t dynq__dtype_from_name(const char *s) { return (dynq_dtype_t)dynq__dt_parse(s); }

int64_t dynq__shape_numel(int rank, const int64_t *dims) { return dynq__dt_numel(rank, dims); }

size_t dynq__tensor_nbytes(const dynq__tensor_t *t) {
  int64_t n = dynq__tensor_numel(t);
  return n < 0 ? 0 : (size_t)n * dynq__dtype_size(t->dtype);
}

void *dynq__aligned_alloc(size_t n) {
  void *p = NULL;
  /* Round up so vector tails may read a full 64-byte line. */
  size_t sz = (n + DYNQ_ALIGN - 1) / DYNQ_ALIGN * DYNQ_ALIGN;
  if (sz == 0) sz = DYNQ_ALIGN;
  if (posix_memalign(&p, DYNQ_ALIGN, sz) != 0) return NULL;
  return p;
}

void dynq__aligned_free(void *p) { free(p); }

static int tensor_alloc(dynq__tensor_t *t, dynq_dtype_t dt, int rank, const int64_t *dims,
                        int zero) {
  size_t es = dynq__dtype_size(dt);
  if (es == 0) return DYNQ_EDTYPE;
  int64_t n = dynq__shape_numel(rank, dims);
  if (n < 0) return DYNQ_ELIMIT;
  size_t nb = (size_t)n * es;
  void *p = dynq__aligned_alloc(nb);
  if (p == NULL) return -ENOMEM;
  if (zero) memset(p, 0, nb);
  t->dtype = dt;
  t->rank = rank;
  memset(t->dims, 0, sizeof(t->dims));
  for (int i = 0; i < rank; i++) t->dims[i] = dims[i];
  t->data = p;
  t->owned = 1;
  return 0;
}

int dynq__tensor_alloc(dynq__tensor_t *t, dynq_dtype_t dt, int rank,
                       const int64_t *dims) {
  return tensor_alloc(t, dt, rank, dims, 1);
}

int dynq__tensor_alloc_uninit(dynq__tensor_t *t, dynq_dtype_t dt, int rank,
                              const int64_t *dims) {
  return tensor_alloc(t, dt, rank, dims, 0);
}

void dynq__tensor_clear(dynq__tensor_t *t) {
  if (t == NULL) return;
  if (t->owned) dynq__aligned_free(t->data);
  memset(t, 0, sizeof(*t));
}

char *dynq__shape_str(char *buf, size_t n, int rank, const int64_t *dims) {
  size_t off = 0;
  if (n == 0) return buf;
  buf[0] = 0;
  off += (size_t)snprintf(buf + off, n - off, "[");
  for (int i = 0; i < rank && off < n; i++)
    off += (size_t)snprintf(buf + off, n - off, i ? ", %lld" : "%lld",
                            (long long)dims[i]);
  if (off < n) snprintf(buf + off, n - off, "]");
  return buf;
}
