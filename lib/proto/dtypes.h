/*
 * The one dtype table: the codes and names tensors carry on the wire, in
 * .dynq files and in the engine.  Header only, so the engine (tensor.h),
 * lib/proto and libdynqclient share it without linking one another.
 *
 * X(NAME, code, "wire name", "alias", bytes, PUBLIC), where PUBLIC is the
 * public enum's name (DYNQ_<PUBLIC> in dynq/dynqclient.h; lib/tensor.c
 * asserts they agree).  Codes are part of the file format and the wire
 * protocol: never renumber.
 */
#ifndef DYNQ_PROTO_DTYPES_H
#define DYNQ_PROTO_DTYPES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define DYNQ_MAX_RANK 8
/* Bound on elements of any one tensor: 2^31 keeps every index and every
 * byte count in size_t on 64-bit hosts with room to spare. */
#define DYNQ_MAX_ELEMS ((int64_t)1 << 31)

#define DYNQ_DTYPES(X)                          \
  X(F32, 1, "float32", "f32", 4, FLOAT32)       \
  X(I8, 2, "int8", "i8", 1, INT8)               \
  X(U8, 3, "uint8", "u8", 1, UINT8)             \
  X(I32, 4, "int32", "i32", 4, INT32)           \
  X(I64, 5, "int64", "i64", 8, INT64)

/* Bytes per element of dtype code dt; 0 for a code not in the table. */
static inline size_t dynq__dt_size(int dt) {
  switch (dt) {
#define DYNQ__DT_SIZE(NAME, code, str, alias, bytes, PUB) case code: return bytes;
    DYNQ_DTYPES(DYNQ__DT_SIZE)
#undef DYNQ__DT_SIZE
  }
  return 0;
}

/* The wire name of dt ("float32"); NULL for a code not in the table. */
static inline const char *dynq__dt_name(int dt) {
  switch (dt) {
#define DYNQ__DT_NAME(NAME, code, str, alias, bytes, PUB) case code: return str;
    DYNQ_DTYPES(DYNQ__DT_NAME)
#undef DYNQ__DT_NAME
  }
  return NULL;
}

/* The code of a wire name or its alias ("float32", "f32"); 0 if neither. */
static inline int dynq__dt_parse(const char *s) {
  if (s == NULL) return 0;
#define DYNQ__DT_PARSE(NAME, code, str, alias, bytes, PUB) \
  if (strcmp(s, str) == 0 || strcmp(s, alias) == 0) return code;
  DYNQ_DTYPES(DYNQ__DT_PARSE)
#undef DYNQ__DT_PARSE
  return 0;
}

/* The same for n bytes at s, not NUL-terminated (a wire string). */
static inline int dynq__dt_parsen(const char *s, size_t n) {
  if (s == NULL) return 0;
#define DYNQ__DT_PARSEN(NAME, code, str, alias, bytes, PUB)                   \
  if ((n == sizeof(str) - 1 && memcmp(s, str, n) == 0) ||                     \
      (n == sizeof(alias) - 1 && memcmp(s, alias, n) == 0))                   \
    return code;
  DYNQ_DTYPES(DYNQ__DT_PARSEN)
#undef DYNQ__DT_PARSEN
  return 0;
}

/* Element count; -1 if rank is outside 0..DYNQ_MAX_RANK, a dim is
 * negative or the product exceeds DYNQ_MAX_ELEMS. */
static inline int64_t dynq__dt_numel(int rank, const int64_t *dims) {
  if (rank < 0 || rank > DYNQ_MAX_RANK) return -1;
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] < 0 || dims[i] > DYNQ_MAX_ELEMS) return -1;
    n *= dims[i];  /* both <= 2^31: no overflow in int64 */
    if (n > DYNQ_MAX_ELEMS) return -1;
  }
  return n;
}

#endif
