/*
 * NumPy .npy reading and writing for dynqctl.  The reader parses the
 * header's Python dict literal itself (only the three keys NumPy writes)
 * and checks the data length against the shape before copying anything.
 * See https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 * for the format.
 */
#include "dynqctl-io.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Headers are a few dozen bytes; NumPy itself refuses long ones. */
#define NPY_MAX_HEADER 65536

static const char npy_magic[6] = { '\x93', 'N', 'U', 'M', 'P', 'Y' };

static const struct {
  const char *descr;
  int dtype;
  size_t size;
} npy_dtypes[] = {
  { "<f4", DYNQ_FLOAT32, 4 }, { "<i1", DYNQ_INT8, 1 }, { "|i1", DYNQ_INT8, 1 },
  { "<u1", DYNQ_UINT8, 1 },   { "|u1", DYNQ_UINT8, 1 }, { "<i4", DYNQ_INT32, 4 },
  { "<i8", DYNQ_INT64, 8 },
};

int dynq__io_fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  va_list ap;
  if (err != NULL && errlen > 0) {
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}
#define fail dynq__io_fail

void dynq__io_tensor_free(dynq_tensor_t *t) {
  if (t == NULL) return;
  free(t->data);
  t->data = NULL;
  t->nbytes = 0;
}

/* Cursor over the header text. */
typedef struct hdr {
  const char *p, *end;
} hdr_t;

static void skip_ws(hdr_t *h) {
  while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
    h->p++;
}

static int eat(hdr_t *h, char ch) {
  skip_ws(h);
  if (h->p < h->end && *h->p == ch) {
    h->p++;
    return 1;
  }
  return 0;
}

/* A '...' or "..." literal without escapes (NumPy never writes any). */
static int read_pystr(hdr_t *h, char *buf, size_t cap) {
  char q;
  size_t n = 0;
  skip_ws(h);
  if (h->p >= h->end || (*h->p != '\'' && *h->p != '"')) return -1;
  q = *h->p++;
  while (h->p < h->end && *h->p != q) {
    if (*h->p == '\\' || n + 1 >= cap) return -1;
    buf[n++] = *h->p++;
  }
  if (h->p >= h->end) return -1;
  h->p++;
  buf[n] = '\0';
  return 0;
}

static int read_word(hdr_t *h, const char *w) {
  size_t n = strlen(w);
  skip_ws(h);
  if ((size_t)(h->end - h->p) >= n && memcmp(h->p, w, n) == 0) {
    h->p += n;
    return 1;
  }
  return 0;
}

/* "(2, 3)", "(3,)", "()" */
static int read_shape(hdr_t *h, int *ret_rank, int64_t *dims, char *err,
                      size_t errlen) {
  int rank = 0;
  if (!eat(h, '('))
    return fail(err, errlen, DYNQ_EFORMAT, "npy header: 'shape' is not a tuple");
  for (;;) {
    int64_t v = 0;
    int digits = 0;
    if (eat(h, ')')) break;
    skip_ws(h);
    while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
      /* Dimensions beyond 2^31 elements are refused later; stop here
       * before int64 overflows. */
      if (v > ((int64_t)1 << 40))
        return fail(err, errlen, DYNQ_ELIMIT, "npy header: shape dimension too large");
      v = v * 10 + (*h->p++ - '0');
      digits++;
    }
    if (digits == 0)
      return fail(err, errlen, DYNQ_EFORMAT,
                  "npy header: shape holds something other than a non-negative integer");
    /* NumPy writes Python 2 longs as "3L" in old files. */
    if (h->p < h->end && *h->p == 'L') h->p++;
    if (rank == DYNQ_CLIENT_MAX_RANK)
      return fail(err, errlen, DYNQ_ESHAPE, "npy: more than %d dimensions",
                  DYNQ_CLIENT_MAX_RANK);
    dims[rank++] = v;
    if (eat(h, ',')) continue;
    if (eat(h, ')')) break;
    return fail(err, errlen, DYNQ_EFORMAT, "npy header: malformed shape tuple");
  }
  *ret_rank = rank;
  return 0;
}

int dynq__npy_parse(const void *buf, size_t len, dynq_tensor_t *ret,
                    char *err, size_t errlen) {
  const uint8_t *b = buf;
  size_t hlen, hoff, esz = 0, need;
  int major, have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
  int dtype = 0, rank = 0, r;
  int64_t dims[DYNQ_CLIENT_MAX_RANK], numel = 1;
  char descr[32] = "";
  hdr_t h;
  dynq_tensor_t t;

  if (len < 10 || memcmp(b, npy_magic, sizeof(npy_magic)) != 0)
    return fail(err, errlen, DYNQ_EFORMAT, "not a .npy file (bad magic)");
  major = b[6];
  if (major == 1) {
    hlen = (size_t)b[8] | (size_t)b[9] << 8;
    hoff = 10;
  } else if (major == 2 || major == 3) {
    if (len < 12)
      return fail(err, errlen, DYNQ_EFORMAT, "npy: file ends inside the preamble");
    hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    hoff = 12;
  } else {
    return fail(err, errlen, DYNQ_EFORMAT, "npy: unsupported format version %d.%d",
                major, b[7]);
  }
  if (hlen > NPY_MAX_HEADER)
    return fail(err, errlen, DYNQ_EFORMAT, "npy: header length %zu exceeds %d",
                hlen, NPY_MAX_HEADER);
  if (hlen > len - hoff)
    return fail(err, errlen, DYNQ_EFORMAT,
                "npy: header length %zu runs past the end of the file (%zu bytes)",
                hlen, len);

  h.p = (const char *)b + hoff;
  h.end = h.p + hlen;
  if (!eat(&h, '{'))
    return fail(err, errlen, DYNQ_EFORMAT, "npy header: not a dict");
  for (;;) {
    char key[32];
    if (eat(&h, '}')) break;
    if (read_pystr(&h, key, sizeof(key)) < 0 || !eat(&h, ':'))
      return fail(err, errlen, DYNQ_EFORMAT, "npy header: malformed dict key");
    if (strcmp(key, "descr") == 0) {
      if (read_pystr(&h, descr, sizeof(descr)) < 0)
        return fail(err, errlen, DYNQ_EFORMAT,
                    "npy header: 'descr' is not a simple dtype string (structured dtypes are not supported)");
      have_descr = 1;
    } else if (strcmp(key, "fortran_order") == 0) {
      if (read_word(&h, "True"))
        fortran = 1;
      else if (read_word(&h, "False"))
        fortran = 0;
      else
        return fail(err, errlen, DYNQ_EFORMAT, "npy header: 'fortran_order' is not True/False");
      have_order = 1;
    } else if (strcmp(key, "shape") == 0) {
      r = read_shape(&h, &rank, dims, err, errlen);
      if (r < 0) return r;
      have_shape = 1;
    } else {
      return fail(err, errlen, DYNQ_EFORMAT, "npy header: unexpected key '%s'", key);
    }
    if (eat(&h, ',')) continue;
    if (eat(&h, '}')) break;
    return fail(err, errlen, DYNQ_EFORMAT, "npy header: expected ',' or '}'");
  }
  skip_ws(&h);
  if (h.p != h.end)
    return fail(err, errlen, DYNQ_EFORMAT, "npy header: junk after the dict");
  if (!have_descr || !have_order || !have_shape)
    return fail(err, errlen, DYNQ_EFORMAT, "npy header: missing '%s'",
                !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
  if (fortran)
    return fail(err, errlen, DYNQ_EFORMAT,
                "npy: Fortran-order arrays are not supported (save with np.ascontiguousarray)");
  for (size_t i = 0; i < sizeof(npy_dtypes) / sizeof(npy_dtypes[0]); i++) {
    if (strcmp(descr, npy_dtypes[i].descr) == 0) {
      dtype = npy_dtypes[i].dtype;
      esz = npy_dtypes[i].size;
    }
  }
  if (dtype == 0) {
    if (descr[0] == '>')
      return fail(err, errlen, DYNQ_EDTYPE,
                  "npy: big-endian dtype '%s' is not supported (use arr.astype('<%s'))",
                  descr, descr + 1);
    return fail(err, errlen, DYNQ_EDTYPE,
                "npy: dtype '%s' is not supported (float32, int8, uint8, int32, int64 only)",
                descr);
  }
  for (int d = 0; d < rank; d++) {
    if (dims[d] != 0 && numel > DYNQ__IO_MAX_ELEMS / dims[d])
      return fail(err, errlen, DYNQ_ELIMIT, "npy: shape has more than %lld elements",
                  (long long)DYNQ__IO_MAX_ELEMS);
    numel *= dims[d];
  }
  need = (size_t)numel * esz;
  hoff += hlen;
  if (len - hoff != need)
    return fail(err, errlen, DYNQ_EDATA,
                "npy: %zu bytes of data but the shape needs %zu%s", len - hoff, need,
                len - hoff < need ? " (file truncated?)" : "");

  memset(&t, 0, sizeof(t));
  t.dtype = dtype;
  t.rank = rank;
  memcpy(t.shape, dims, sizeof(int64_t) * (size_t)rank);
  t.nbytes = need;
  t.data = malloc(need ? need : 1);
  if (t.data == NULL) return fail(err, errlen, -ENOMEM, "npy: out of memory");
  memcpy(t.data, b + hoff, need);
  *ret = t;
  return 0;
}

int dynq__npy_header(const dynq_tensor_t *t, uint8_t *buf, size_t cap, char *err,
                     size_t errlen) {
  const char *descr = NULL;
  char hdr[512];
  int n;
  size_t total;

  for (size_t i = 0; i < sizeof(npy_dtypes) / sizeof(npy_dtypes[0]); i++)
    if (npy_dtypes[i].dtype == t->dtype && descr == NULL) descr = npy_dtypes[i].descr;
  if (descr == NULL)
    return fail(err, errlen, DYNQ_EDTYPE, "npy: cannot write dtype %d", t->dtype);
  if (t->rank < 0 || t->rank > DYNQ_CLIENT_MAX_RANK)
    return fail(err, errlen, DYNQ_ESHAPE, "npy: rank %d", t->rank);

  n = snprintf(hdr, sizeof(hdr), "{'descr': '%s', 'fortran_order': False, 'shape': (",
               descr);
  for (int d = 0; d < t->rank; d++)
    n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "%lld,%s", (long long)t->shape[d],
                  d + 1 < t->rank ? " " : "");
  n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "), }");
  /* Pad with spaces and a final newline so the data starts 64-aligned,
   * as NumPy does. */
  total = 10 + (size_t)n + 1;
  while (total % 64 != 0) {
    hdr[n++] = ' ';
    total++;
  }
  hdr[n++] = '\n';
  if (cap < total) return fail(err, errlen, DYNQ_ELIMIT, "npy: header needs %zu bytes", total);
  memcpy(buf, npy_magic, 6);
  buf[6] = 1;
  buf[7] = 0;
  buf[8] = (uint8_t)(n & 0xff);
  buf[9] = (uint8_t)(n >> 8);
  memcpy(buf + 10, hdr, (size_t)n);
  return (int)total;
}

int dynq__npy_write(const char *path, const dynq_tensor_t *t, char *err,
                    size_t errlen) {
  uint8_t hdr[DYNQ__NPY_HEADER_MAX];
  int n = dynq__npy_header(t, hdr, sizeof(hdr), err, errlen), r;
  FILE *f;

  if (n < 0) return n;
  f = fopen(path, "wb");
  if (f == NULL) {
    r = -errno;
    return fail(err, errlen, r, "cannot create %s: %s", path, strerror(-r));
  }
  fwrite(hdr, 1, (size_t)n, f);
  if (t->nbytes) fwrite(t->data, 1, t->nbytes, f);
  if (ferror(f)) {
    r = errno ? -errno : -EIO;
    fclose(f);
    return fail(err, errlen, r, "cannot write %s: %s", path, strerror(-r));
  }
  if (fclose(f) != 0) {
    r = -errno;
    return fail(err, errlen, r, "cannot write %s: %s", path, strerror(-r));
  }
  return 0;
}
