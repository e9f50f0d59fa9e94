/*
 * Tensors: dtype, shape and a data pointer.
 *
 * A dynq__tensor_t never owns a refcount on anything; who frees `data` is
 * said by `owned`: 1 means the tensor's data came from dynq__aligned_alloc()
 * and dynq__tensor_clear() frees it, 0 means it points into memory someone
 * else keeps alive (the mmapped model, a request buffer).
 */
#ifndef DYNQ_TENSOR_H
#define DYNQ_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "proto/dtypes.h" /* DYNQ_DTYPES, DYNQ_MAX_RANK, DYNQ_MAX_ELEMS */

#define DYNQ_ALIGN 64

typedef enum dynq_dtype {
  DYNQ_DT_INVALID = 0,
#define DYNQ__DT_ENUM(NAME, code, ...) DYNQ_DT_##NAME = code,
  DYNQ_DTYPES(DYNQ__DT_ENUM)
#undef DYNQ__DT_ENUM
  DYNQ_DT__COUNT
} dynq_dtype_t;

typedef struct dynq__tensor {
  dynq_dtype_t dtype;
  int rank;                      /* 0..DYNQ_MAX_RANK */
  int64_t dims[DYNQ_MAX_RANK];   /* each >= 0 */
  void *data;                    /* DYNQ_ALIGN-aligned when owned */
  int owned;                     /* 1: freed by dynq__tensor_clear() */
} dynq__tensor_t;

size_t dynq__dtype_size(dynq_dtype_t dt);          /* 0 for invalid */
const char *dynq__dtype_name(dynq_dtype_t dt);     /* "float32", ... */
dynq_dtype_t dynq__dtype_from_name(const char *s); /* accepts "f32" too */

/* Element count; -1 if a dim is negative or the product exceeds
 * DYNQ_MAX_ELEMS. */
int64_t dynq__shape_numel(int rank, const int64_t *dims);
static inline int64_t dynq__tensor_numel(const dynq__tensor_t *t) {
  return dynq__shape_numel(t->rank, t->dims);
}
size_t dynq__tensor_nbytes(const dynq__tensor_t *t);

void *dynq__aligned_alloc(size_t n);  /* 64-byte aligned, NULL on failure */
void dynq__aligned_free(void *p);

/* Allocate owned, zero-filled storage for the given dtype and shape.
 * Returns 0, -ENOMEM, or DYNQ_ELIMIT when the shape is too large. */
int dynq__tensor_alloc(dynq__tensor_t *t, dynq_dtype_t dt, int rank,
                       const int64_t *dims);
/* The same without zero-filling: for ops that write every element. */
int dynq__tensor_alloc_uninit(dynq__tensor_t *t, dynq_dtype_t dt, int rank,
                              const int64_t *dims);
void dynq__tensor_clear(dynq__tensor_t *t);

/* "[2, 3, 4]" into buf; returns buf. */
char *dynq__shape_str(char *buf, size_t n, int rank, const int64_t *dims);

#endif
