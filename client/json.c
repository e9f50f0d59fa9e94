/*
 * JSON nested number arrays -> tensor, for dynqctl --input: float32 by
 * default, or any wire dtype when the caller names one (integer dtypes take
 * integers only, converted exactly: token ids above 2^24 survive).
 * Only what an input needs: arrays, numbers (RFC 8259 grammar), whitespace.
 * The shape is learned from the first array at each depth; every later
 * array at that depth must have the same length and every element at a
 * depth the same kind (array or number), otherwise the input is ragged.
 * Recursion is bounded by DYNQ__JSON_MAX_DEPTH.
 */
#include "dynqctl-io.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { KIND_UNKNOWN = 0, KIND_ARRAY, KIND_NUMBER };

typedef struct jp {
  const char *s, *p, *end;
  int kind[DYNQ__JSON_MAX_DEPTH + 2];   /* kind of the elements at depth d */
  int64_t len[DYNQ__JSON_MAX_DEPTH + 1]; /* array length at depth d, -1 unknown */
  int dtype;                             /* of the values */
  size_t esz;                            /* its size in bytes */
  unsigned char *vals;                   /* owned until handed out */
  size_t n, cap;
  char *err;
  size_t errlen;
} jp_t;

static int jfail(jp_t *j, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int jfail(jp_t *j, int code, const char *fmt, ...) {
  va_list ap;
  char msg[200];
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (j->err != NULL && j->errlen > 0)
    snprintf(j->err, j->errlen, "json: %s at offset %zu", msg, (size_t)(j->p - j->s));
  return code;
}

static void skip_ws(jp_t *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    j->p++;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static const char *dtype_str(int dt) {
  switch (dt) {
  case DYNQ_INT8: return "int8";
  case DYNQ_UINT8: return "uint8";
  case DYNQ_INT32: return "int32";
  case DYNQ_INT64: return "int64";
  default: return "float32";
  }
}

/* The number text tmp (JSON grammar already checked) as j->dtype, into v. */
static int convert(jp_t *j, const char *tmp, int integral, unsigned char *v) {
  static const struct { int dt; long long lo, hi; } range[] = {
    { DYNQ_INT8, INT8_MIN, INT8_MAX }, { DYNQ_UINT8, 0, UINT8_MAX },
    { DYNQ_INT32, INT32_MIN, INT32_MAX }, { DYNQ_INT64, INT64_MIN, INT64_MAX },
  };
  if (j->dtype == DYNQ_FLOAT32) {
    double d = strtod(tmp, NULL);
    float f;
    if (!isfinite(d) || fabs(d) > FLT_MAX)
      return jfail(j, DYNQ_ENUMERIC, "number %s is outside the float32 range", tmp);
    f = (float)d;
    memcpy(v, &f, sizeof(f));
    return 0;
  }
  if (!integral)
    return jfail(j, DYNQ_EDTYPE, "%s is not an integer, and the input is %s", tmp,
                 dtype_str(j->dtype));
  for (size_t k = 0; k < sizeof(range) / sizeof(range[0]); k++) {
    long long x;
    if (range[k].dt != j->dtype) continue;
    errno = 0;
    x = strtoll(tmp, NULL, 10);
    if (errno == ERANGE || x < range[k].lo || x > range[k].hi)
      return jfail(j, DYNQ_ENUMERIC, "number %s is outside the %s range", tmp,
                   dtype_str(j->dtype));
    if (j->dtype == DYNQ_INT8) {
      int8_t y = (int8_t)x;
      memcpy(v, &y, 1);
    } else if (j->dtype == DYNQ_UINT8) {
      uint8_t y = (uint8_t)x;
      memcpy(v, &y, 1);
    } else if (j->dtype == DYNQ_INT32) {
      int32_t y = (int32_t)x;
      memcpy(v, &y, 4);
    } else {
      int64_t y = (int64_t)x;
      memcpy(v, &y, 8);
    }
    return 0;
  }
  return jfail(j, DYNQ_EDTYPE, "unknown dtype %d", j->dtype);
}

static int parse_number(jp_t *j) {
  const char *st = j->p, *q = j->p;
  char tmp[64];
  unsigned char *nv;
  int integral = 1, r;

  /* Check the JSON grammar first: strtod alone would take "inf", "0x1p3",
   * leading '+' and other things that are not JSON. */
  if (q < j->end && *q == '-') q++;
  if (q >= j->end || !is_digit(*q)) return jfail(j, DYNQ_EFORMAT, "expected a number");
  if (*q == '0') {
    q++;
  } else {
    while (q < j->end && is_digit(*q)) q++;
  }
  if (q < j->end && *q == '.') {
    q++;
    integral = 0;
    if (q >= j->end || !is_digit(*q)) return jfail(j, DYNQ_EFORMAT, "malformed number");
    while (q < j->end && is_digit(*q)) q++;
  }
  if (q < j->end && (*q == 'e' || *q == 'E')) {
    q++;
    integral = 0;
    if (q < j->end && (*q == '+' || *q == '-')) q++;
    if (q >= j->end || !is_digit(*q)) return jfail(j, DYNQ_EFORMAT, "malformed number");
    while (q < j->end && is_digit(*q)) q++;
  }
  if ((size_t)(q - st) >= sizeof(tmp)) return jfail(j, DYNQ_EFORMAT, "number too long");
  memcpy(tmp, st, (size_t)(q - st));
  tmp[q - st] = '\0';
  if (j->n == j->cap) {
    size_t nc = j->cap ? j->cap * 2 : 64;
    if (nc > (size_t)DYNQ__IO_MAX_ELEMS) nc = (size_t)DYNQ__IO_MAX_ELEMS;
    if (j->n == nc)
      return jfail(j, DYNQ_ELIMIT, "more than %lld numbers", (long long)DYNQ__IO_MAX_ELEMS);
    nv = realloc(j->vals, nc * j->esz);
    if (nv == NULL) return jfail(j, -ENOMEM, "out of memory");
    j->vals = nv;
    j->cap = nc;
  }
  r = convert(j, tmp, integral, j->vals + j->n * j->esz);
  if (r < 0) return r;
  j->n++;
  j->p = q;
  return 0;
}

/* Element at depth d: an array (whose elements are at d + 1) or a number. */
static int parse_elem(jp_t *j, int d);

static int parse_array(jp_t *j, int d) {
  int64_t count = 0;
  int r;

  if (d >= DYNQ__JSON_MAX_DEPTH)
    return jfail(j, DYNQ_EDEPTH, "arrays nested deeper than %d", DYNQ__JSON_MAX_DEPTH);
  j->p++; /* '[' */
  skip_ws(j);
  if (j->p < j->end && *j->p == ']') {
    j->p++;
  } else {
    for (;;) {
      r = parse_elem(j, d + 1);
      if (r < 0) return r;
      count++;
      skip_ws(j);
      if (j->p < j->end && *j->p == ',') {
        j->p++;
        continue;
      }
      if (j->p < j->end && *j->p == ']') {
        j->p++;
        break;
      }
      return jfail(j, DYNQ_EFORMAT, j->p < j->end ? "expected ',' or ']'"
                                                  : "unexpected end of input inside an array");
    }
  }
  if (j->len[d] < 0)
    j->len[d] = count;
  else if (j->len[d] != count)
    return jfail(j, DYNQ_ESHAPE, "ragged array: %lld elements where %lld were expected at depth %d",
                 (long long)count, (long long)j->len[d], d + 1);
  return 0;
}

static int parse_elem(jp_t *j, int d) {
  int kind;
  skip_ws(j);
  if (j->p >= j->end) return jfail(j, DYNQ_EFORMAT, "unexpected end of input");
  kind = *j->p == '[' ? KIND_ARRAY : KIND_NUMBER;
  if (j->kind[d] == KIND_UNKNOWN)
    j->kind[d] = kind;
  else if (j->kind[d] != kind)
    return jfail(j, DYNQ_ESHAPE, "ragged array: mixes numbers and arrays at depth %d", d);
  if (kind == KIND_ARRAY) return parse_array(j, d);
  return parse_number(j);
}

static int parse_top(const char *s, size_t len, int dtype, int scalar_ok, dynq_tensor_t *ret,
                     char *err, size_t errlen) {
  jp_t j;
  dynq_tensor_t t;
  int r, rank = 0;
  int64_t numel = 1;

  memset(&j, 0, sizeof(j));
  j.s = j.p = s;
  j.end = s + len;
  j.err = err;
  j.errlen = errlen;
  j.dtype = dtype;
  j.esz = dtype == DYNQ_INT8 || dtype == DYNQ_UINT8 ? 1 : dtype == DYNQ_INT64 ? 8 : 4;
  for (int d = 0; d <= DYNQ__JSON_MAX_DEPTH; d++) j.len[d] = -1;
  if (dtype < DYNQ_FLOAT32 || dtype > DYNQ_INT64)
    return jfail(&j, DYNQ_EDTYPE, "unknown dtype %d", dtype);

  skip_ws(&j);
  if (scalar_ok && j.p < j.end && *j.p != '[') {
    /* A bare number: a rank-0 tensor (e.g. a sample rate). */
    j.kind[0] = KIND_NUMBER;
    r = parse_number(&j);
  } else if (j.p >= j.end || *j.p != '[') {
    r = jfail(&j, DYNQ_EFORMAT, scalar_ok ? "expected a number or a JSON array of numbers"
                                          : "expected a JSON array of numbers");
    goto fail;
  } else {
    j.kind[0] = KIND_ARRAY;
    r = parse_array(&j, 0);
  }
  if (r < 0) goto fail;
  skip_ws(&j);
  if (j.p != j.end) {
    r = jfail(&j, DYNQ_EFORMAT, "unexpected text after the array");
    goto fail;
  }
  /* Depths whose elements are arrays are the dimensions. */
  while (rank < DYNQ__JSON_MAX_DEPTH && j.kind[rank] == KIND_ARRAY) rank++;
  memset(&t, 0, sizeof(t));
  t.dtype = dtype;
  t.rank = rank;
  for (int d = 0; d < rank; d++) {
    t.shape[d] = j.len[d] < 0 ? 0 : j.len[d];
    numel *= t.shape[d];
  }
  if ((size_t)numel != j.n) {
    /* Cannot happen with the per-depth checks; kept as a cheap guard. */
    r = jfail(&j, DYNQ_ESHAPE, "ragged array: %zu numbers for %lld elements", j.n,
              (long long)numel);
    goto fail;
  }
  t.nbytes = j.n * j.esz;
  t.data = j.vals ? (void *)j.vals : malloc(1);
  if (t.data == NULL) {
    r = jfail(&j, -ENOMEM, "out of memory");
    goto fail;
  }
  *ret = t;
  return 0;

fail:
  free(j.vals);
  return r;
}

int dynq__json_parse(const char *s, size_t len, dynq_tensor_t *ret, char *err,
                     size_t errlen) {
  return parse_top(s, len, DYNQ_FLOAT32, 0, ret, err, errlen);
}

int dynq__json_parse_as(const char *s, size_t len, int dtype, dynq_tensor_t *ret, char *err,
                        size_t errlen) {
  return parse_top(s, len, dtype, 1, ret, err, errlen);
}
