/*
 * A cursor over msgpack bytes for the hot answers (infer results): reads
 * headers and scalars in place, without msgpack-c's object tree or a copy
 * of the frame.  The bytes come from the framer, so the whole frame has
 * already passed dynq__mp_scan; every read here is still bounds-checked
 * against the cursor's end, and any surprise is an error (-1), never a
 * read past it.
 */
#include "client-internal.h"

#include <string.h>

#include "utf8.h"

/* Big-endian unsigned of w bytes at p. */
static uint64_t be(const uint8_t *p, unsigned w) {
  uint64_t v = 0;
  for (unsigned i = 0; i < w; i++) v = (v << 8) | p[i];
  return v;
}

/* The type byte and a length field of w bytes after it: *ret the length. */
static int len_field(dynq__rd_t *r, unsigned w, uint64_t *ret) {
  if ((size_t)(r->end - r->p) < 1 + (size_t)w) return -1;
  *ret = be(r->p + 1, w);
  r->p += 1 + w;
  return 0;
}

/* Take n payload bytes. */
static int payload(dynq__rd_t *r, uint64_t n, const uint8_t **ret) {
  if ((uint64_t)(r->end - r->p) < n) return -1;
  *ret = r->p;
  r->p += n;
  return 0;
}

static int container(dynq__rd_t *r, uint8_t fix, uint8_t b16, uint32_t *ret_n) {
  int b = dynq__rd_peek(r);
  uint64_t n;
  if (b < 0) return -1;
  if ((b & 0xf0) == fix) {
    r->p++;
    *ret_n = (uint32_t)(b & 0x0f);
    return 0;
  }
  if (b != b16 && b != b16 + 1) return -1;
  if (len_field(r, b == b16 ? 2 : 4, &n) < 0) return -1;
  *ret_n = (uint32_t)n;
  return 0;
}

int dynq__rd_array_long(dynq__rd_t *r, uint32_t *ret_n) {
  return container(r, 0x90, 0xdc, ret_n);
}
int dynq__rd_map_long(dynq__rd_t *r, uint32_t *ret_n) { return container(r, 0x80, 0xde, ret_n); }

int dynq__rd_str(dynq__rd_t *r, const char **ret_s, size_t *ret_n) {
  const uint8_t *save = r->p;
  int b = dynq__rd_peek(r);
  uint64_t n;
  const uint8_t *s;
  if (b < 0) return -1;
  if ((b & 0xe0) == 0xa0) {
    r->p++;
    n = (uint64_t)(b & 0x1f);
  } else if (b >= 0xd9 && b <= 0xdb) {
    if (len_field(r, 1u << (b - 0xd9), &n) < 0) return -1;
  } else {
    return -1;
  }
  /* text we may echo in a message must be valid UTF-8 (as dynq__obj_str) */
  if (payload(r, n, &s) < 0 || !dynq__utf8_valid(s, (size_t)n)) {
    r->p = save;
    return -1;
  }
  *ret_s = (const char *)s;
  *ret_n = (size_t)n;
  return 0;
}

int dynq__rd_bin(dynq__rd_t *r, const void **ret_p, size_t *ret_n) {
  int b = dynq__rd_peek(r);
  uint64_t n;
  const uint8_t *p, *save = r->p;
  if (b < 0xc4 || b > 0xc6) return -1;
  if (len_field(r, 1u << (b - 0xc4), &n) < 0 || payload(r, n, &p) < 0) {
    r->p = save;
    return -1;
  }
  *ret_p = p;
  *ret_n = (size_t)n;
  return 0;
}

int dynq__rd_int_long(dynq__rd_t *r, int64_t *ret) {
  int b = dynq__rd_peek(r);
  uint64_t v;
  if (b < 0) return -1;
  if (b <= 0x7f || b >= 0xe0) {
    r->p++;
    *ret = (int64_t)(int8_t)b;
    return 0;
  }
  if (b >= 0xcc && b <= 0xcf) {          /* uint 8..64 */
    if (len_field(r, 1u << (b - 0xcc), &v) < 0) return -1;
    if (v > INT64_MAX) {
      r->p -= 1u + (1u << (b - 0xcc));
      return -1;
    }
    *ret = (int64_t)v;
    return 0;
  }
  if (b >= 0xd0 && b <= 0xd3) {          /* int 8..64, sign-extended */
    unsigned w = 1u << (b - 0xd0);
    if (len_field(r, w, &v) < 0) return -1;
    if (w < 8 && (v >> (8 * w - 1)) & 1) v |= ~(uint64_t)0 << (8 * w);
    *ret = (int64_t)v;
    return 0;
  }
  return -1;
}

/* Whole length of the item type byte b starts when b alone gives it
 * (ints, floats, nil, bools, fixstr: what a reply's maps hold), else 0
 * (containers, longer strings and bins, ext, 0xc1: the scanner's job). */
static size_t fixed_len(unsigned b) {
  if (b <= 0x7f || b >= 0xe0) return 1;
  if ((b & 0xe0) == 0xa0) return 1 + (b & 0x1f);
  switch (b) {
  case 0xc0: case 0xc2: case 0xc3: return 1;
  case 0xcc: case 0xd0: return 2;
  case 0xcd: case 0xd1: return 3;
  case 0xca: case 0xce: case 0xd2: return 5;
  case 0xcb: case 0xcf: case 0xd3: return 9;
  default: return 0;
  }
}

int dynq__rd_skip_long(dynq__rd_t *r) {
  static const dynq__scan_limits_t lim = {
    .max_frame = DYNQ__CLIENT_MAX_FRAME, .max_depth = 32, .max_elems = UINT64_MAX,
  };
  size_t n;
  if (r->p >= r->end) return -1;
  /* the scalars and short strings of a reply's map, without the scanner */
  n = fixed_len(r->p[0]);
  if (n > 0) {
    if ((size_t)(r->end - r->p) < n) return -1;
    r->p += n;
    return 0;
  }
  if (dynq__mp_scan(r->p, (size_t)(r->end - r->p), &lim, &n) != 0) return -1;
  r->p += n;
  return 0;
}
