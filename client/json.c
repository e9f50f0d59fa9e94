/*
 * JSON nested number arrays -> float32 tensor, for dynqctl --input.
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
  float *vals;                           /* owned until handed out */
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

static int parse_number(jp_t *j) {
  const char *st = j->p, *q = j->p;
  char tmp[64];
  double v;
  float *nv;

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
    if (q >= j->end || !is_digit(*q)) return jfail(j, DYNQ_EFORMAT, "malformed number");
    while (q < j->end && is_digit(*q)) q++;
  }
  if (q < j->end && (*q == 'e' || *q == 'E')) {
    q++;
    if (q < j->end && (*q == '+' || *q == '-')) q++;
    if (q >= j->end || !is_digit(*q)) return jfail(j, DYNQ_EFORMAT, "malformed number");
    while (q < j->end && is_digit(*q)) q++;
  }
  if ((size_t)(q - st) >= sizeof(tmp)) return jfail(j, DYNQ_EFORMAT, "number too long");
  memcpy(tmp, st, (size_t)(q - st));
  tmp[q - st] = '\0';
  v = strtod(tmp, NULL);
  if (!isfinite(v) || fabs(v) > FLT_MAX)
    return jfail(j, DYNQ_ENUMERIC, "number %s is outside the float32 range", tmp);
  if (j->n == j->cap) {
    size_t nc = j->cap ? j->cap * 2 : 64;
    if (nc > (size_t)DYNQ__IO_MAX_ELEMS) nc = (size_t)DYNQ__IO_MAX_ELEMS;
    if (j->n == nc)
      return jfail(j, DYNQ_ELIMIT, "more than %lld numbers", (long long)DYNQ__IO_MAX_ELEMS);
    nv = realloc(j->vals, nc * sizeof(*nv));
    if (nv == NULL) return jfail(j, -ENOMEM, "out of memory");
    j->vals = nv;
    j->cap = nc;
  }
  j->vals[j->n++] = (float)v;
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

int dynq__json_parse(const char *s, size_t len, dynq_tensor_t *ret, char *err,
                     size_t errlen) {
  jp_t j;
  dynq_tensor_t t;
  int r, rank = 0;
  int64_t numel = 1;

  memset(&j, 0, sizeof(j));
  j.s = j.p = s;
  j.end = s + len;
  j.err = err;
  j.errlen = errlen;
  for (int d = 0; d <= DYNQ__JSON_MAX_DEPTH; d++) j.len[d] = -1;

  skip_ws(&j);
  if (j.p >= j.end || *j.p != '[') {
    r = jfail(&j, DYNQ_EFORMAT, "expected a JSON array of numbers");
    goto fail;
  }
  j.kind[0] = KIND_ARRAY;
  r = parse_array(&j, 0);
  if (r < 0) goto fail;
  skip_ws(&j);
  if (j.p != j.end) {
    r = jfail(&j, DYNQ_EFORMAT, "unexpected text after the array");
    goto fail;
  }
  /* Depths whose elements are arrays are the dimensions. */
  while (rank < DYNQ__JSON_MAX_DEPTH && j.kind[rank] == KIND_ARRAY) rank++;
  memset(&t, 0, sizeof(t));
  t.dtype = DYNQ_FLOAT32;
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
  t.nbytes = j.n * sizeof(float);
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
