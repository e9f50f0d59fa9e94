/*
 * Tests for lib/proto: the pre-scanner (every msgpack format, every prefix,
 * every limit, random bytes), the writer, the reader's accessors, tensor
 * decoding and its refusals, the RPC envelope and error decoding.
 *
 * Frames are built with the dynq writer or by hand, byte by byte, from
 * the msgpack spec.  msgpack.h is included for one purpose only: holding
 * the reader's own decoder to msgpack_unpack, its reference (same_tree).
 */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dynq/errors.h>

#include <msgpack.h>

#include "proto/methods.h"
#include "proto/proto-tensor.h"
#include "tensor.h"
#include "testutil.h"

/* ---- helpers ---- */

static const dynq__scan_limits_t *deflim(void) {
  return &dynq__scan_limits_default;
}

static dynq__scan_limits_t mklim(size_t frame, int depth, uint64_t elems) {
  dynq__scan_limits_t l = {frame, depth, elems};
  return l;
}

/* Scan a copy in a buffer of exactly len bytes, so that a read past the
 * end shows under ASan or valgrind. */
static int scan_exact(const uint8_t *buf, size_t len,
                      const dynq__scan_limits_t *lim, size_t *ret_len) {
  uint8_t *copy = malloc(len ? len : 1);
  ck_assert_ptr_nonnull(copy);
  if (len) memcpy(copy, buf, len);
  int rc = dynq__mp_scan(copy, len, lim, ret_len);
  free(copy);
  return rc;
}

/* The whole object scans to len, with junk after it too, and every
 * strict prefix asks for more bytes. */
static void check_complete(const uint8_t *buf, size_t len,
                           const dynq__scan_limits_t *lim) {
  size_t n = 12345;
  ck_assert_int_eq(scan_exact(buf, len, lim, &n), 0);
  ck_assert_uint_eq(n, len);

  uint8_t *more = malloc(len + 3);
  ck_assert_ptr_nonnull(more);
  memcpy(more, buf, len);
  more[len] = 0xc1; more[len + 1] = 0xdd; more[len + 2] = 0xff;
  n = 0;
  ck_assert_int_eq(dynq__mp_scan(more, len + 3, lim, &n), 0);
  ck_assert_uint_eq(n, len);
  free(more);

  /* Quadratic: sample prefixes of big objects. */
  size_t step = len > 4096 ? len / 509 + 1 : 1;
  for (size_t k = 0; k < len; k += (k < 64 || len - k < 64) ? 1 : step) {
    size_t untouched = 777;
    ck_assert_msg(scan_exact(buf, k, lim, &untouched) == -EAGAIN,
                  "prefix %zu of %zu not -EAGAIN", k, len);
    ck_assert_uint_eq(untouched, 777);
  }
}

static void check_wbuf(dynq__wbuf_t *w, uint8_t first, size_t len) {
  ck_assert_int_eq(w->err, 0);
  ck_assert_uint_eq(w->len, len);
  ck_assert_uint_eq(w->data[0], first);
  check_complete(w->data, w->len, deflim());
}

/* ---- scanner: every format ---- */

START_TEST(test_scan_writer_scalars) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  static const struct { uint64_t v; uint8_t first; size_t len; } u[] = {
    {0, 0x00, 1}, {127, 0x7f, 1}, {128, 0xcc, 2}, {255, 0xcc, 2},
    {256, 0xcd, 3}, {65535, 0xcd, 3}, {65536, 0xce, 5},
    {UINT32_MAX, 0xce, 5}, {(uint64_t)UINT32_MAX + 1, 0xcf, 9},
    {UINT64_MAX, 0xcf, 9},
  };
  for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
    dynq__wbuf_reset(&w);
    dynq__w_uint(&w, u[i].v);
    check_wbuf(&w, u[i].first, u[i].len);
  }
  static const struct { int64_t v; uint8_t first; size_t len; } s[] = {
    {-1, 0xff, 1}, {-32, 0xe0, 1}, {-33, 0xd0, 2}, {-128, 0xd0, 2},
    {-129, 0xd1, 3}, {-32768, 0xd1, 3}, {-32769, 0xd2, 5},
    {INT32_MIN, 0xd2, 5}, {(int64_t)INT32_MIN - 1, 0xd3, 9},
    {INT64_MIN, 0xd3, 9}, {5, 0x05, 1}, {INT64_MAX, 0xcf, 9},
  };
  for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
    dynq__wbuf_reset(&w);
    dynq__w_int(&w, s[i].v);
    check_wbuf(&w, s[i].first, s[i].len);
  }
  dynq__wbuf_reset(&w);
  dynq__w_nil(&w);
  check_wbuf(&w, 0xc0, 1);
  dynq__wbuf_reset(&w);
  dynq__w_bool(&w, 0);
  check_wbuf(&w, 0xc2, 1);
  dynq__wbuf_reset(&w);
  dynq__w_bool(&w, 7);
  check_wbuf(&w, 0xc3, 1);
  dynq__wbuf_reset(&w);
  dynq__w_double(&w, 1.5);
  check_wbuf(&w, 0xcb, 9);
  dynq__wbuf_reset(&w);
  dynq__w_str(&w, NULL);
  check_wbuf(&w, 0xc0, 1);
  dynq__wbuf_free(&w);
}
END_TEST

START_TEST(test_scan_writer_sized) {
  static const struct { size_t n; uint8_t str, bin, arr, map; size_t hdr_s, hdr_b, hdr_c; } c[] = {
    {0, 0xa0, 0xc4, 0x90, 0x80, 1, 2, 1},
    {15, 0xaf, 0xc4, 0x9f, 0x8f, 1, 2, 1},
    {16, 0xb0, 0xc4, 0xdc, 0xde, 1, 2, 3},
    {31, 0xbf, 0xc4, 0xdc, 0xde, 1, 2, 3},
    {32, 0xd9, 0xc4, 0xdc, 0xde, 2, 2, 3},
    {255, 0xd9, 0xc4, 0xdc, 0xde, 2, 2, 3},
    {256, 0xda, 0xc5, 0xdc, 0xde, 3, 3, 3},
    {65535, 0xda, 0xc5, 0xdc, 0xde, 3, 3, 3},
    {65536, 0xdb, 0xc6, 0xdd, 0xdf, 5, 5, 5},
  };
  char *blob = malloc(65536);
  ck_assert_ptr_nonnull(blob);
  memset(blob, 'x', 65536);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    size_t n = c[i].n;
    dynq__wbuf_reset(&w);
    dynq__w_strn(&w, blob, n);
    check_wbuf(&w, c[i].str, c[i].hdr_s + n);
    dynq__wbuf_reset(&w);
    dynq__w_bin(&w, blob, n);
    check_wbuf(&w, c[i].bin, c[i].hdr_b + n);
    dynq__wbuf_reset(&w);
    dynq__w_array(&w, (uint32_t)n);
    for (size_t k = 0; k < n; k++) dynq__w_nil(&w);
    check_wbuf(&w, c[i].arr, c[i].hdr_c + n);
    dynq__wbuf_reset(&w);
    dynq__w_map(&w, (uint32_t)n);
    for (size_t k = 0; k < n; k++) {
      dynq__w_uint(&w, k & 0x7f);
      dynq__w_bool(&w, 1);
    }
    check_wbuf(&w, c[i].map, c[i].hdr_c + 2 * n);
  }
  dynq__wbuf_free(&w);
  free(blob);
}
END_TEST

/* Size of the object that starts with byte b when every following byte is
 * zero (lengths and counts read as 0, fix-sized items hold zeros), straight
 * from the msgpack spec. */
static size_t spec_len_zero_tail(int b) {
  if (b <= 0x7f || b >= 0xe0) return 1;
  if (b <= 0x8f) return 1 + 2 * (size_t)(b & 0x0f);
  if (b <= 0x9f) return 1 + (size_t)(b & 0x0f);
  if (b <= 0xbf) return 1 + (size_t)(b & 0x1f);
  static const size_t tab[0x20] = {
    [0x00] = 1, [0x02] = 1, [0x03] = 1,
    [0x04] = 2, [0x05] = 3, [0x06] = 5,           /* bin 8/16/32 */
    [0x07] = 3, [0x08] = 4, [0x09] = 6,           /* ext 8/16/32 */
    [0x0a] = 5, [0x0b] = 9,                       /* float 32/64 */
    [0x0c] = 2, [0x0d] = 3, [0x0e] = 5, [0x0f] = 9,  /* uint */
    [0x10] = 2, [0x11] = 3, [0x12] = 5, [0x13] = 9,  /* int */
    [0x14] = 3, [0x15] = 4, [0x16] = 6, [0x17] = 10, [0x18] = 18, /* fixext */
    [0x19] = 2, [0x1a] = 3, [0x1b] = 5,           /* str 8/16/32 */
    [0x1c] = 3, [0x1d] = 5, [0x1e] = 3, [0x1f] = 5,  /* array, map 16/32 */
  };
  return tab[b - 0xc0];
}

START_TEST(test_scan_every_first_byte) {
  uint8_t buf[64];
  for (int b = 0; b < 256; b++) {
    memset(buf, 0, sizeof buf);
    buf[0] = (uint8_t)b;
    size_t n = 0;
    int rc = dynq__mp_scan(buf, sizeof buf, deflim(), &n);
    if (b == 0xc1) {
      ck_assert_int_eq(rc, DYNQ_EPROTO);
      continue;
    }
    ck_assert_msg(rc == 0, "byte 0x%02x: rc %d", b, rc);
    ck_assert_msg(n == spec_len_zero_tail(b), "byte 0x%02x: len %zu want %zu",
                  b, n, spec_len_zero_tail(b));
    check_complete(buf, n, deflim());
  }
}
END_TEST

START_TEST(test_scan_hand_frames) {
  static const struct { uint8_t b[40]; size_t len; } f[] = {
    {{0xca, 0x3f, 0x80, 0, 0}, 5},                      /* float32 1.0 */
    {{0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}, 9},          /* float64 1.0 */
    {{0xd4, 0x01, 0xaa}, 3},                            /* fixext1 */
    {{0xd5, 0x01, 1, 2}, 4},
    {{0xd6, 0xff, 1, 2, 3, 4}, 6},                      /* timestamp32 */
    {{0xd7, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}, 10},
    {{0xd8, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, 18},
    {{0xc7, 0x03, 0x05, 'a', 'b', 'c'}, 6},             /* ext8 */
    {{0xc8, 0x00, 0x02, 0x05, 'a', 'b'}, 6},            /* ext16 */
    {{0xc9, 0, 0, 0, 0x01, 0x05, 'a'}, 7},              /* ext32 */
    {{0xd9, 0x02, 'h', 'i'}, 4},                        /* str8 */
    {{0xda, 0x00, 0x02, 'h', 'i'}, 5},
    {{0xdb, 0, 0, 0, 0x02, 'h', 'i'}, 7},
    {{0xc5, 0x00, 0x01, 0x00}, 4},                      /* bin16 */
    {{0xc6, 0, 0, 0, 0x01, 0x00}, 6},
    {{0xdc, 0x00, 0x02, 0x01, 0xa1, 'x'}, 6},           /* array16 */
    {{0xdd, 0, 0, 0, 0x02, 0xc0, 0xc3}, 7},             /* array32 */
    {{0xde, 0x00, 0x01, 0xa1, 'k', 0x90}, 6},           /* map16 */
    {{0xdf, 0, 0, 0, 0x01, 0xa1, 'k', 0x80}, 8},        /* map32 */
    {{0xd0, 0x80}, 2}, {{0xd1, 0x80, 0}, 3},
    {{0xd2, 0x80, 0, 0, 0}, 5}, {{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9},
    {{0xcc, 0xff}, 2}, {{0xcd, 0xff, 0xff}, 3},
    {{0xce, 0xff, 0xff, 0xff, 0xff}, 5},
    {{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9},
    {{0xe5}, 1},                                        /* -27 */
    /* [ {"a": [1, -1, nil]}, [[]], "" ] */
    {{0x93, 0x81, 0xa1, 'a', 0x93, 0x01, 0xff, 0xc0, 0x91, 0x90, 0xa0}, 11},
  };
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    check_complete(f[i].b, f[i].len, deflim());
}
END_TEST

START_TEST(test_scan_prefixes_request) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  float x[6] = {1, 2, 3, 4, 5, 6};
  dynq__tensor_t t = {DYNQ_DT_F32, 2, {2, 3}, x, 0};
  dynq__w_request_head(&w, 42, "infer");
  dynq__w_map(&w, 3);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "mlp");
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "x");
  dynq__w_tensor(&w, &t);
  dynq__w_str(&w, "precision");
  dynq__w_str(&w, "int8");
  ck_assert_int_eq(w.err, 0);
  check_complete(w.data, w.len, deflim());
  /* Two frames back to back: the first one's extent, then the second's. */
  size_t one = w.len, n = 0;
  dynq__w_error_response(&w, 9, DYNQ_EOVERLOAD, "busy");
  ck_assert_int_eq(dynq__mp_scan(w.data, w.len, deflim(), &n), 0);
  ck_assert_uint_eq(n, one);
  ck_assert_int_eq(dynq__mp_scan(w.data + one, w.len - one, deflim(), &n), 0);
  ck_assert_uint_eq(n, w.len - one);
  dynq__wbuf_free(&w);
}
END_TEST

/* ---- scanner: refusals ---- */

START_TEST(test_scan_invalid_byte) {
  static const uint8_t top[] = {0xc1};
  static const uint8_t nested[] = {0x93, 0x01, 0x02, 0xc1};
  static const uint8_t inmap[] = {0x81, 0xc1, 0x01};
  size_t n = 99;
  ck_assert_int_eq(dynq__mp_scan(top, 1, deflim(), &n), DYNQ_EPROTO);
  ck_assert_int_eq(dynq__mp_scan(nested, sizeof nested, deflim(), &n), DYNQ_EPROTO);
  ck_assert_int_eq(dynq__mp_scan(inmap, sizeof inmap, deflim(), &n), DYNQ_EPROTO);
  ck_assert_uint_eq(n, 99);
  ck_assert_int_eq(dynq__mp_scan(top, 0, deflim(), &n), -EAGAIN);
}
END_TEST

START_TEST(test_scan_depth) {
  uint8_t buf[300];
  size_t n;
  dynq__scan_limits_t l = mklim(1 << 20, 32, 1 << 20);
  /* 32 nested one-element arrays around nil: depth 32, allowed. */
  memset(buf, 0x91, 32);
  buf[32] = 0xc0;
  ck_assert_int_eq(dynq__mp_scan(buf, 33, &l, &n), 0);
  ck_assert_uint_eq(n, 33);
  /* 32 around an empty array: the empty one is level 33. */
  buf[32] = 0x90;
  ck_assert_int_eq(dynq__mp_scan(buf, 33, &l, &n), DYNQ_EDEPTH);
  /* 33 levels: refused as soon as the 33rd header is seen, even though
   * the frame is incomplete. */
  memset(buf, 0x91, 33);
  ck_assert_int_eq(dynq__mp_scan(buf, 33, &l, &n), DYNQ_EDEPTH);
  /* Maps nest through keys too: {{{...}: x}: x}. */
  memset(buf, 0x81, 40);
  ck_assert_int_eq(dynq__mp_scan(buf, 40, &l, &n), DYNQ_EDEPTH);
  /* max_depth beyond the scanner's own stack is clamped, not overflowed. */
  l.max_depth = 1000;
  memset(buf, 0x91, sizeof buf);
  ck_assert_int_eq(dynq__mp_scan(buf, sizeof buf, &l, &n), DYNQ_EDEPTH);
  l.max_depth = 0;
  ck_assert_int_eq(dynq__mp_scan(buf, 1, &l, &n), DYNQ_EDEPTH);
  buf[0] = 0x05;
  ck_assert_int_eq(dynq__mp_scan(buf, 1, &l, &n), 0);
}
END_TEST

START_TEST(test_scan_huge_counts) {
  static const uint8_t arr32[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
  static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
  static const uint8_t arr16[] = {0xdc, 0xff, 0xff};
  size_t n = 5;
  /* Default limits: the element budget trips first. */
  ck_assert_int_eq(dynq__mp_scan(arr32, 5, deflim(), &n), DYNQ_ELIMIT);
  ck_assert_int_eq(dynq__mp_scan(map32, 5, deflim(), &n), DYNQ_ELIMIT);
  /* No element budget: the frame budget refuses a count that cannot fit
   * even at one byte per element. */
  dynq__scan_limits_t l = mklim(1 << 20, 32, UINT64_MAX);
  ck_assert_int_eq(dynq__mp_scan(arr32, 5, &l, &n), DYNQ_EPROTO);
  ck_assert_int_eq(dynq__mp_scan(map32, 5, &l, &n), DYNQ_EPROTO);
  /* 65535 one-byte items fit in 1 MiB: need more bytes. */
  ck_assert_int_eq(dynq__mp_scan(arr16, 3, &l, &n), -EAGAIN);
  l.max_frame = 3 + 65535;
  ck_assert_int_eq(dynq__mp_scan(arr16, 3, &l, &n), -EAGAIN);
  l.max_frame--;
  ck_assert_int_eq(dynq__mp_scan(arr16, 3, &l, &n), DYNQ_EPROTO);
  ck_assert_uint_eq(n, 5);
  /* Map entries need two bytes each. */
  static const uint8_t map5[] = {0x85};
  l.max_frame = 10;
  ck_assert_int_eq(dynq__mp_scan(map5, 1, &l, &n), DYNQ_EPROTO);
  l.max_frame = 11;
  ck_assert_int_eq(dynq__mp_scan(map5, 1, &l, &n), -EAGAIN);
  /* Pending items of outer containers count too: [[x*5], y] needs 8. */
  static const uint8_t nest[] = {0x92, 0x95};
  l.max_frame = 7;
  ck_assert_int_eq(dynq__mp_scan(nest, 2, &l, &n), DYNQ_EPROTO);
  l.max_frame = 8;
  ck_assert_int_eq(dynq__mp_scan(nest, 2, &l, &n), -EAGAIN);
}
END_TEST

START_TEST(test_scan_elem_budget) {
  /* [[1,2,3],[4,5,6]]: 2 + 3 + 3 = 8 declared elements. */
  static const uint8_t f[] = {0x92, 0x93, 1, 2, 3, 0x93, 4, 5, 6};
  size_t n;
  dynq__scan_limits_t l = mklim(1 << 20, 32, 8);
  ck_assert_int_eq(dynq__mp_scan(f, sizeof f, &l, &n), 0);
  l.max_elems = 7;
  ck_assert_int_eq(dynq__mp_scan(f, sizeof f, &l, &n), DYNQ_ELIMIT);
  /* Refused when the second header arrives, before its elements. */
  ck_assert_int_eq(dynq__mp_scan(f, 6, &l, &n), DYNQ_ELIMIT);
  ck_assert_int_eq(dynq__mp_scan(f, 5, &l, &n), -EAGAIN);
  /* A map of 3 entries counts 3. */
  static const uint8_t m[] = {0x83, 1, 1, 2, 2, 3, 3};
  l.max_elems = 3;
  ck_assert_int_eq(dynq__mp_scan(m, sizeof m, &l, &n), 0);
  l.max_elems = 2;
  ck_assert_int_eq(dynq__mp_scan(m, sizeof m, &l, &n), DYNQ_ELIMIT);
}
END_TEST

START_TEST(test_scan_huge_lengths) {
  static const uint8_t hdrs[][6] = {
    {0xdb, 0xff, 0xff, 0xff, 0xff},  /* str32 4 GiB */
    {0xc6, 0xff, 0xff, 0xff, 0xff},  /* bin32 */
    {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01},  /* ext32 */
    {0xdb, 0x04, 0x00, 0x00, 0x01},  /* str32 64 MiB + 1 */
  };
  static const size_t lens[] = {5, 5, 6, 5};
  size_t n = 3;
  for (size_t i = 0; i < 4; i++)
    ck_assert_int_eq(dynq__mp_scan(hdrs[i], lens[i], deflim(), &n), DYNQ_ETOOBIG);
  ck_assert_uint_eq(n, 3);
  /* Exactly filling 64 MiB (5-byte header + payload) is still a maybe. */
  static const uint8_t fits[] = {0xdb, 0x03, 0xff, 0xff, 0xfb};
  ck_assert_int_eq(dynq__mp_scan(fits, 5, deflim(), &n), -EAGAIN);
  /* Header incomplete: cannot judge yet. */
  ck_assert_int_eq(dynq__mp_scan(hdrs[0], 3, deflim(), &n), -EAGAIN);
  /* Small frame budget: str8 of 200 in a 100-byte frame. */
  dynq__scan_limits_t l = mklim(100, 32, 100);
  static const uint8_t s8[] = {0xd9, 200};
  ck_assert_int_eq(dynq__mp_scan(s8, 2, &l, &n), DYNQ_ETOOBIG);
  /* A payload that leaves no room for the items still due. */
  static const uint8_t tail[] = {0x92, 0xd9, 97};  /* 1+2+97 = 100, +1 due */
  ck_assert_int_eq(dynq__mp_scan(tail, 3, &l, &n), DYNQ_ETOOBIG);
  l.max_frame = 101;
  ck_assert_int_eq(dynq__mp_scan(tail, 3, &l, &n), -EAGAIN);
}
END_TEST

START_TEST(test_scan_frame_limit) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_array(&w, 15);
  for (int i = 0; i < 15; i++) dynq__w_uint(&w, 1000);  /* 3 bytes each */
  ck_assert_int_eq(w.err, 0);
  ck_assert_uint_eq(w.len, 46);
  size_t n;
  dynq__scan_limits_t l = mklim(46, 32, 100);
  ck_assert_int_eq(dynq__mp_scan(w.data, w.len, &l, &n), 0);
  ck_assert_uint_eq(n, 46);
  l.max_frame = 45;
  ck_assert_int_eq(dynq__mp_scan(w.data, w.len, &l, &n), DYNQ_ETOOBIG);
  /* Refused as soon as the bytes seen prove the frame too big. */
  ck_assert_int_eq(dynq__mp_scan(w.data, 44, &l, &n), DYNQ_ETOOBIG);
  ck_assert_int_eq(dynq__mp_scan(w.data, 43, &l, &n), -EAGAIN);
  l.max_frame = 0;
  ck_assert_int_eq(dynq__mp_scan(w.data, w.len, &l, &n), DYNQ_ETOOBIG);
  /* A single 9-byte uint64 in an 8-byte frame. */
  static const uint8_t u64[] = {0xcf, 0, 0, 0, 0, 0, 0, 0, 1};
  l.max_frame = 8;
  ck_assert_int_eq(dynq__mp_scan(u64, 1, &l, &n), DYNQ_ETOOBIG);
  l.max_frame = 9;
  ck_assert_int_eq(dynq__mp_scan(u64, 9, &l, &n), 0);
  dynq__wbuf_free(&w);
}
END_TEST

/* ---- scanner: fuzz ---- */

static uint64_t rng_state;
static uint64_t rnd(void) {
  /* xorshift64*: fixed seed, reproducible. */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}

/* ---- reader: the decoder against msgpack_unpack ----
 *
 * White-box: a dynq__obj_t's p is the msgpack_object the reader built.
 * Values compare bit for bit (a NaN is equal to itself), and the kind of
 * every object must be msgpack-c's. */
static int same_obj(const msgpack_object *a, const msgpack_object *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
  case MSGPACK_OBJECT_NIL: return 1;
  case MSGPACK_OBJECT_BOOLEAN: return a->via.boolean == b->via.boolean;
  case MSGPACK_OBJECT_POSITIVE_INTEGER: return a->via.u64 == b->via.u64;
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: return a->via.i64 == b->via.i64;
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: return memcmp(&a->via.f64, &b->via.f64, sizeof(double)) == 0;
  case MSGPACK_OBJECT_STR:
  case MSGPACK_OBJECT_BIN:
    return a->via.str.size == b->via.str.size &&
           (a->via.str.size == 0 || memcmp(a->via.str.ptr, b->via.str.ptr, a->via.str.size) == 0);
  case MSGPACK_OBJECT_EXT:
    return a->via.ext.type == b->via.ext.type && a->via.ext.size == b->via.ext.size &&
           (a->via.ext.size == 0 || memcmp(a->via.ext.ptr, b->via.ext.ptr, a->via.ext.size) == 0);
  case MSGPACK_OBJECT_ARRAY:
    if (a->via.array.size != b->via.array.size) return 0;
    for (uint32_t i = 0; i < a->via.array.size; i++)
      if (!same_obj(&a->via.array.ptr[i], &b->via.array.ptr[i])) return 0;
    return 1;
  case MSGPACK_OBJECT_MAP:
    if (a->via.map.size != b->via.map.size) return 0;
    for (uint32_t i = 0; i < a->via.map.size; i++)
      if (!same_obj(&a->via.map.ptr[i].key, &b->via.map.ptr[i].key) ||
          !same_obj(&a->via.map.ptr[i].val, &b->via.map.ptr[i].val))
        return 0;
    return 1;
  }
  return 0;
}

/* m was parsed from buf[0..n): its params/result/error are what
 * msgpack_unpack makes of the same bytes (with the params rule's unwrap). */
static void same_tree(const uint8_t *buf, size_t n, const dynq__rpc_msg_t *m) {
  msgpack_zone z;
  ck_assert(msgpack_zone_init(&z, 4096));
  msgpack_object root;
  size_t off = 0;
  ck_assert_int_eq(msgpack_unpack((const char *)buf, n, &off, &z, &root),
                   MSGPACK_UNPACK_SUCCESS);
  ck_assert_uint_eq(off, n);
  ck_assert_int_eq(root.type, MSGPACK_OBJECT_ARRAY);
  const msgpack_object *a = root.via.array.ptr;
  if (m->type == DYNQ_RPC_RESPONSE) {
    ck_assert(same_obj(m->result.p, &a[3]));
    if (a[2].type != MSGPACK_OBJECT_NIL) ck_assert(same_obj(m->error.p, &a[2]));
    else ck_assert(dynq__obj_is_absent(m->error));
  } else {
    const msgpack_object *pr = &a[m->type == DYNQ_RPC_REQUEST ? 3 : 2];
    if (pr->type == MSGPACK_OBJECT_ARRAY && pr->via.array.size == 0)
      ck_assert(dynq__obj_is_absent(m->params));
    else if (pr->type == MSGPACK_OBJECT_ARRAY && pr->via.array.size == 1 &&
             pr->via.array.ptr[0].type == MSGPACK_OBJECT_MAP)
      ck_assert(same_obj(m->params.p, &pr->via.array.ptr[0]));
    else
      ck_assert(same_obj(m->params.p, pr));
  }
  msgpack_zone_destroy(&z);
}

static int documented(int rc) {
  return rc == 0 || rc == -EAGAIN || rc == DYNQ_ETOOBIG || rc == DYNQ_EDEPTH ||
         rc == DYNQ_ELIMIT || rc == DYNQ_EPROTO;
}

/* dynq__rpc_parse_next on buf[0..len) (an exact copy: a read past it is
 * caught under ASan and valgrind) agrees with the scan (rc, n) and with
 * dynq__rpc_parse_framed of the frame the scan cut: it delimits exactly
 * what the scan accepts (within its 32 levels), at the same length, and
 * parses it the same way. */
static void same_cut(const uint8_t *buf, size_t len, const dynq__scan_limits_t *l, int rc,
                     size_t n) {
  uint8_t *copy = malloc(len ? len : 1);
  ck_assert_ptr_nonnull(copy);
  if (len) memcpy(copy, buf, len);
  dynq__rpc_reader_t *rd = dynq__rpc_reader_new(), *rd2 = dynq__rpc_reader_new();
  ck_assert(rd != NULL && rd2 != NULL);
  dynq__rpc_msg_t pm, fm;
  int64_t ph = 7, fh = 7;
  char perr[128] = "", ferr[128] = "";
  size_t pn = 0;
  int prc = dynq__rpc_parse_next(rd, copy, len, l, &pn, &pm, &ph, perr, sizeof perr);
  if (rc != 0 || len == 0) {
    ck_assert_int_eq(prc, -EAGAIN);
  } else if (l->max_depth <= 32) {
    ck_assert_msg(prc != -EAGAIN, "the scan cut %zu bytes, parse_next did not", n);
    ck_assert_uint_eq(pn, n);
    int frc = dynq__rpc_parse_framed(rd2, copy, n, l, &fm, &fh, ferr, sizeof ferr);
    ck_assert_int_eq(prc, frc);
    ck_assert(ph == fh);
    ck_assert_str_eq(perr, ferr);
    if (prc == 0) {
      ck_assert_int_eq(pm.type, fm.type);
      ck_assert_uint_eq(pm.msgid, fm.msgid);
      ck_assert((pm.method == NULL) == (fm.method == NULL));
      if (pm.method != NULL) ck_assert_str_eq(pm.method, fm.method);
      same_tree(copy, n, &pm);
      dynq__rpc_free(&fm);
      dynq__rpc_free(&pm);
    }
  }
  dynq__rpc_reader_free(rd);
  dynq__rpc_reader_free(rd2);
  free(copy);
}

static void fuzz_one(const uint8_t *buf, size_t len,
                     const dynq__scan_limits_t *l) {
  size_t n = (size_t)-1;
  int rc = scan_exact(buf, len, l, &n);
  ck_assert_msg(documented(rc), "undocumented code %d", rc);
  same_cut(buf, len, l, rc, n);
  if (rc != 0) {
    ck_assert_uint_eq(n, (size_t)-1);
    return;
  }
  ck_assert_uint_le(n, len);
  ck_assert_uint_le(n, l->max_frame);
  ck_assert_uint_ge(n, 1);
  size_t n2 = 0;
  ck_assert_int_eq(scan_exact(buf, n, l, &n2), 0);
  ck_assert_uint_eq(n2, n);
  ck_assert_int_eq(scan_exact(buf, n - 1, l, &n2), -EAGAIN);

  /* What the scanner accepts, the reader must survive. */
  dynq__rpc_msg_t m;
  char err[128];
  int64_t hint;
  if (dynq__rpc_parse(buf, n, &m, &hint, err, sizeof err) == 0) {
    same_tree(buf, n, &m);
    dynq__obj_t x = dynq__obj_get(m.params, "t");
    dynq__tensor_t t;
    if (dynq__obj_tensor(x, NULL, &t, err, sizeof err) == 0)
      dynq__tensor_clear(&t);
    char msg[64];
    (void)dynq__rpc_error(m.error, msg, sizeof msg);
    dynq__rpc_free(&m);
  }
}

START_TEST(test_scan_fuzz) {
  static const uint8_t interesting[] = {
    0x00, 0x7f, 0x80, 0x81, 0x8f, 0x90, 0x91, 0x9f, 0xa0, 0xa3, 0xbf, 0xc0,
    0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc,
    0xcf, 0xd0, 0xd3, 0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf,
    0xe0, 0xff, 0x01, 0x02};
  uint8_t buf[96];
  rng_state = 0x9E3779B97F4A7C15ULL;

  /* A valid request to mutate. */
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  int8_t d[4] = {1, -2, 3, -4};
  dynq__tensor_t t = {DYNQ_DT_I8, 2, {2, 2}, d, 0};
  dynq__w_request_head(&w, 7, "infer");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "t");
  dynq__w_tensor(&w, &t);
  dynq__w_str(&w, "z");
  dynq__w_array(&w, 2);
  dynq__w_double(&w, 0.5);
  dynq__w_int(&w, -300);
  ck_assert_int_eq(w.err, 0);
  ck_assert_uint_le(w.len, sizeof buf);

  for (int it = 0; it < 100000; it++) {
    size_t len;
    if (it & 1) {
      len = rnd() % (sizeof buf + 1);
      for (size_t i = 0; i < len; i++) {
        uint64_t r = rnd();
        buf[i] = (r & 3) ? interesting[(r >> 2) % sizeof interesting]
                         : (uint8_t)(r >> 8);
      }
    } else {
      len = w.len;
      memcpy(buf, w.data, len);
      int flips = 1 + (int)(rnd() % 4);
      for (int k = 0; k < flips; k++) {
        uint64_t r = rnd();
        size_t at = (size_t)(r % len);
        buf[at] = (r >> 32) & 1 ? (uint8_t)(r >> 40)
                                : interesting[(r >> 40) % sizeof interesting];
      }
      if (rnd() % 4 == 0) len = (size_t)(rnd() % (len + 1));
    }
    dynq__scan_limits_t l = mklim(1 + rnd() % 128, (int)(rnd() % 6),
                                  rnd() % 40);
    if (it % 3 == 0) l = dynq__scan_limits_default;
    fuzz_one(buf, len, &l);
  }
  dynq__wbuf_free(&w);
}
END_TEST

/* ---- writer ---- */

START_TEST(test_wbuf_basics) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_str(&w, "abc");
  static const uint8_t want[] = {0xa3, 'a', 'b', 'c'};
  ck_assert_uint_eq(w.len, 4);
  ck_assert_mem_eq(w.data, want, 4);
  /* Growth keeps the bytes. */
  uint8_t *big = malloc(1 << 20);
  ck_assert_ptr_nonnull(big);
  for (size_t i = 0; i < (1 << 20); i++) big[i] = (uint8_t)(i * 7);
  dynq__w_bin(&w, big, 1 << 20);
  ck_assert_int_eq(w.err, 0);
  ck_assert_uint_eq(w.len, 4 + 5 + (1 << 20));
  ck_assert_uint_ge(w.cap, w.len);
  ck_assert_mem_eq(w.data + 9, big, 1 << 20);
  free(big);

  size_t cap = w.cap;
  dynq__wbuf_reset(&w);
  ck_assert_uint_eq(w.len, 0);
  ck_assert_uint_eq(w.cap, cap);

  /* Sticky error: later writes are no-ops. */
  dynq__w_uint(&w, 1);
  w.err = -ENOMEM;
  dynq__w_str(&w, "more");
  dynq__w_array(&w, 3);
  ck_assert_uint_eq(w.len, 1);
  ck_assert_int_eq(w.err, -ENOMEM);
  w.err = 0;

  /* Longer than msgpack can encode: refused before touching the data. */
  dynq__w_bin(&w, "x", (size_t)1 << 32);
  ck_assert_int_eq(w.err, DYNQ_ETOOBIG);
  ck_assert_uint_eq(w.len, 1);
  dynq__wbuf_reset(&w);
  ck_assert_int_eq(w.err, 0);
  dynq__w_strn(&w, "x", (size_t)1 << 32);
  ck_assert_int_eq(w.err, DYNQ_ETOOBIG);
  dynq__wbuf_reset(&w);

  dynq__w_uint(&w, 5);
  size_t n = 0;
  uint8_t *p = dynq__wbuf_steal(&w, &n);
  ck_assert_ptr_nonnull(p);
  ck_assert_uint_eq(n, 1);
  ck_assert_uint_eq(p[0], 5);
  free(p);
  ck_assert_ptr_null(w.data);
  ck_assert_uint_eq(w.len, 0);
  dynq__wbuf_free(&w);
  dynq__wbuf_free(&w);   /* twice: harmless */
  dynq__wbuf_free(NULL);
  dynq__rpc_free(NULL);
}
END_TEST

START_TEST(test_w_tensor_invalid) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__tensor_t t = {DYNQ_DT_INVALID, 1, {2}, "ab", 0};
  dynq__w_tensor(&w, &t);
  ck_assert_int_eq(w.err, DYNQ_EINTERNAL);
  dynq__wbuf_reset(&w);
  dynq__tensor_t u = {DYNQ_DT_U8, 1, {2}, NULL, 0};
  dynq__w_tensor(&w, &u);
  ck_assert_int_eq(w.err, DYNQ_EINTERNAL);
  dynq__wbuf_reset(&w);
  dynq__tensor_t r = {DYNQ_DT_U8, 9, {1}, "a", 0};
  dynq__w_tensor(&w, &r);
  ck_assert_int_eq(w.err, DYNQ_EINTERNAL);
  dynq__wbuf_free(&w);
}
END_TEST

/* A tensor written as its head and then its bytes appended by the caller
 * (how dynqd leaves room for outputs it sends from elsewhere) is the
 * tensor dynq__w_tensor writes, for every bin header size and inside a
 * self-counting map; a bad tensor still poisons the buffer, but the head
 * needs no data pointer. */
START_TEST(test_w_tensor_head) {
  static const int64_t lens[] = {0, 1, 255, 256, 65535, 65536, 70001};
  uint8_t *bytes = malloc(70001);
  ck_assert_ptr_nonnull(bytes);
  for (int i = 0; i < 70001; i++) bytes[i] = (uint8_t)(i * 7 + 3);
  for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
    dynq__tensor_t t = {DYNQ_DT_U8, 1, {lens[k]}, bytes, 0};
    dynq__wbuf_t a, b;
    dynq__wbuf_init(&a);
    dynq__wbuf_init(&b);
    dynq__w_map_begin(&a);
    dynq__w_key(&a, "t");
    dynq__w_tensor(&a, &t);
    dynq__w_key(&a, "z");
    dynq__w_int(&a, 1);
    dynq__w_map_end(&a);
    dynq__w_map_begin(&b);
    dynq__w_key(&b, "t");
    dynq__w_tensor_head(&b, &(dynq__tensor_t){DYNQ_DT_U8, 1, {lens[k]}, NULL, 0});
    uint8_t *dst = dynq__wbuf_reserve(&b, (size_t)lens[k]);
    ck_assert_ptr_nonnull(dst);
    memcpy(dst, bytes, (size_t)lens[k]);
    b.len += (size_t)lens[k];
    dynq__w_key(&b, "z");
    dynq__w_int(&b, 1);
    dynq__w_map_end(&b);
    ck_assert_int_eq(dynq__wbuf_status(&a), 0);
    ck_assert_int_eq(dynq__wbuf_status(&b), 0);
    ck_assert_msg(a.len == b.len && memcmp(a.data, b.data, a.len) == 0,
                  "%lld bytes: head + bytes differ from the whole tensor", (long long)lens[k]);
    dynq__wbuf_free(&a);
    dynq__wbuf_free(&b);
  }
  free(bytes);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_tensor_head(&w, &(dynq__tensor_t){DYNQ_DT_INVALID, 1, {2}, NULL, 0});
  ck_assert_int_eq(w.err, DYNQ_EINTERNAL);
  dynq__wbuf_reset(&w);
  dynq__w_tensor_head(&w, &(dynq__tensor_t){DYNQ_DT_U8, 9, {1}, NULL, 0});
  ck_assert_int_eq(w.err, DYNQ_EINTERNAL);
  dynq__wbuf_reset(&w);
  const int32_t vals[3] = {1, 2, 3};
  dynq__w_wtensor_head(&w, &(dynq__wtensor_t){DYNQ_DT_I32, 1, {3}, vals, 8});
  ck_assert_int_eq(w.err, DYNQ_EINTERNAL);
  dynq__wbuf_free(&w);
}
END_TEST

/* The engine-free view libdynqclient uses: a byte count that disagrees
 * with dtype and shape, an unknown dtype code or a negative dim is a
 * caller bug that poisons the buffer; a good one reads back as a view
 * into the frame. */
START_TEST(test_wtensor_view) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  const int32_t vals[3] = {7, -1, 9};
  dynq__wtensor_t bad[] = {
      {DYNQ_DT_I32, 1, {3}, vals, 8},     /* 3 x int32 is 12 bytes */
      {99, 1, {3}, vals, 12},            /* no such dtype */
      {DYNQ_DT_I32, 1, {-3}, vals, 12},   /* negative dim */
      {DYNQ_DT_I32, 1, {3}, NULL, 12},    /* no data */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    dynq__wbuf_reset(&w);
    dynq__w_wtensor(&w, &bad[i]);
    ck_assert_msg(w.err == DYNQ_EINTERNAL, "case %zu: err %d", i, w.err);
  }
  dynq__wbuf_reset(&w);
  dynq__w_request_head(&w, 5, "t");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "t");
  dynq__w_wtensor(&w, &(dynq__wtensor_t){DYNQ_DT_I32, 2, {1, 3}, vals, 12});
  ck_assert_int_eq(dynq__wbuf_status(&w), 0);
  dynq__rpc_msg_t m;
  char err[128] = "";
  int64_t hint = 0;
  ck_assert_int_eq(dynq__rpc_parse(w.data, w.len, &m, &hint, err, sizeof err), 0);
  dynq__wtensor_t v;
  ck_assert_int_eq(dynq__obj_wtensor(dynq__obj_get(m.params, "t"), NULL, &v, err, sizeof err), 0);
  ck_assert_int_eq(v.dtype, DYNQ_DT_I32);
  ck_assert_int_eq(v.rank, 2);
  ck_assert_int_eq(v.dims[1], 3);
  ck_assert_uint_eq(v.nbytes, 12);
  ck_assert_int_eq(memcmp(v.data, vals, 12), 0);
  dynq__rpc_free(&m);
  dynq__wbuf_free(&w);
}
END_TEST

/* ---- reader: round trips ---- */

static void parse_ok(dynq__wbuf_t *w, dynq__rpc_msg_t *m) {
  char err[128] = "";
  int64_t hint = 0;
  ck_assert_int_eq(w->err, 0);
  size_t n = 0;
  ck_assert_int_eq(dynq__mp_scan(w->data, w->len, deflim(), &n), 0);
  ck_assert_uint_eq(n, w->len);
  int rc = dynq__rpc_parse(w->data, w->len, m, &hint, err, sizeof err);
  ck_assert_msg(rc == 0, "parse: %d %s", rc, err);
}

START_TEST(test_roundtrip_types) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  static const uint8_t binv[] = {0, 1, 2, 0xff};
  static const int64_t ints[] = {0, 1, 127, 128, -1, -32, -33, 65536,
                                 INT32_MIN, INT64_MIN, INT64_MAX};
  const size_t nints = sizeof ints / sizeof ints[0];
  dynq__w_request_head(&w, UINT32_MAX, "test.types");
  dynq__w_map(&w, 12);
  dynq__w_str(&w, "nil"); dynq__w_nil(&w);
  dynq__w_str(&w, "t"); dynq__w_bool(&w, 1);
  dynq__w_str(&w, "f"); dynq__w_bool(&w, 0);
  dynq__w_str(&w, "ints"); dynq__w_array(&w, (uint32_t)nints);
  for (size_t i = 0; i < nints; i++) dynq__w_int(&w, ints[i]);
  dynq__w_str(&w, "umax"); dynq__w_uint(&w, UINT64_MAX);
  dynq__w_str(&w, "dbl"); dynq__w_double(&w, -2.25);
  dynq__w_str(&w, "str"); dynq__w_str(&w, "héllo");
  dynq__w_str(&w, "empty"); dynq__w_str(&w, "");
  dynq__w_str(&w, "bin"); dynq__w_bin(&w, binv, sizeof binv);
  dynq__w_str(&w, "ebin"); dynq__w_bin(&w, NULL, 0);
  dynq__w_str(&w, "nested");
  dynq__w_map(&w, 1); dynq__w_str(&w, "a"); dynq__w_array(&w, 0);
  dynq__w_uint(&w, 5); dynq__w_str(&w, "intkey");  /* a non-string key */

  dynq__rpc_msg_t m;
  parse_ok(&w, &m);
  ck_assert_int_eq(m.type, DYNQ_RPC_REQUEST);
  ck_assert_uint_eq(m.msgid, UINT32_MAX);
  ck_assert_str_eq(m.method, "test.types");
  dynq__obj_t p = m.params;
  ck_assert_int_eq(dynq__obj_kind(p), DYNQ_OBJ_MAP);
  ck_assert_uint_eq(dynq__obj_len(p), 12);

  int b = -1;
  int64_t iv;
  double dv;
  const char *s;
  size_t n;
  const void *bp;
  char buf[16];

  ck_assert_int_eq(dynq__obj_kind(dynq__obj_get(p, "nil")), DYNQ_OBJ_NIL);
  ck_assert(!dynq__obj_is_absent(dynq__obj_get(p, "nil")));
  ck_assert(dynq__obj_is_absent(dynq__obj_get(p, "nope")));
  ck_assert(dynq__obj_is_absent(dynq__obj_get(p, "ni")));
  ck_assert_int_eq(dynq__obj_bool(dynq__obj_get(p, "t"), &b), 0);
  ck_assert_int_eq(b, 1);
  ck_assert_int_eq(dynq__obj_bool(dynq__obj_get(p, "f"), &b), 0);
  ck_assert_int_eq(b, 0);
  ck_assert_int_eq(dynq__obj_bool(dynq__obj_get(p, "nil"), &b), DYNQ_EPARAMS);

  dynq__obj_t a = dynq__obj_get(p, "ints");
  ck_assert_int_eq(dynq__obj_kind(a), DYNQ_OBJ_ARRAY);
  ck_assert_uint_eq(dynq__obj_len(a), nints);
  for (uint32_t i = 0; i < nints; i++) {
    ck_assert_int_eq(dynq__obj_kind(dynq__obj_at(a, i)), DYNQ_OBJ_INT);
    ck_assert_int_eq(dynq__obj_int(dynq__obj_at(a, i), &iv), 0);
    ck_assert_int_eq(iv, ints[i]);
  }
  ck_assert(dynq__obj_is_absent(dynq__obj_at(a, (uint32_t)nints)));
  ck_assert_int_eq(dynq__obj_double(dynq__obj_at(a, 4), &dv), 0);
  ck_assert(dv == -1.0);

  iv = 77;
  ck_assert_int_eq(dynq__obj_int(dynq__obj_get(p, "umax"), &iv), DYNQ_EPARAMS);
  ck_assert_int_eq(iv, 77);
  ck_assert_int_eq(dynq__obj_double(dynq__obj_get(p, "umax"), &dv), 0);
  ck_assert(dv == 18446744073709551615.0);
  ck_assert_int_eq(dynq__obj_kind(dynq__obj_get(p, "dbl")), DYNQ_OBJ_FLOAT);
  ck_assert_int_eq(dynq__obj_double(dynq__obj_get(p, "dbl"), &dv), 0);
  ck_assert(dv == -2.25);
  ck_assert_int_eq(dynq__obj_int(dynq__obj_get(p, "dbl"), &iv), DYNQ_EPARAMS);

  ck_assert_int_eq(dynq__obj_str(dynq__obj_get(p, "str"), &s, &n), 0);
  ck_assert_uint_eq(n, strlen("héllo"));
  ck_assert_mem_eq(s, "héllo", n);
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(p, "str"), buf, sizeof buf), 0);
  ck_assert_str_eq(buf, "héllo");
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(p, "str"), buf, 6), DYNQ_EPARAMS);
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(p, "str"), buf, 7), 0);
  ck_assert_int_eq(dynq__obj_str(dynq__obj_get(p, "empty"), &s, &n), 0);
  ck_assert_ptr_nonnull(s);
  ck_assert_uint_eq(n, 0);
  ck_assert_int_eq(dynq__obj_str(dynq__obj_get(p, "bin"), &s, &n), DYNQ_EPARAMS);

  ck_assert_int_eq(dynq__obj_bin(dynq__obj_get(p, "bin"), &bp, &n), 0);
  ck_assert_uint_eq(n, sizeof binv);
  ck_assert_mem_eq(bp, binv, n);
  ck_assert_int_eq(dynq__obj_bin(dynq__obj_get(p, "ebin"), &bp, &n), 0);
  ck_assert_uint_eq(n, 0);
  ck_assert_int_eq(dynq__obj_bin(dynq__obj_get(p, "str"), &bp, &n), DYNQ_EPARAMS);

  dynq__obj_t nest = dynq__obj_get(p, "nested");
  ck_assert_int_eq(dynq__obj_kind(nest), DYNQ_OBJ_MAP);
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_key_at(nest, 0), buf, sizeof buf), 0);
  ck_assert_str_eq(buf, "a");
  ck_assert_int_eq(dynq__obj_kind(dynq__obj_val_at(nest, 0)), DYNQ_OBJ_ARRAY);
  ck_assert_uint_eq(dynq__obj_len(dynq__obj_val_at(nest, 0)), 0);
  ck_assert(dynq__obj_is_absent(dynq__obj_key_at(nest, 1)));
  ck_assert(dynq__obj_is_absent(dynq__obj_at(nest, 0)));
  /* The int key is reachable by index only. */
  ck_assert_int_eq(dynq__obj_int(dynq__obj_key_at(p, 11), &iv), 0);
  ck_assert_int_eq(iv, 5);

  /* Absent handles behave as absent everywhere. */
  dynq__obj_t none = {NULL};
  ck_assert_int_eq(dynq__obj_kind(none), DYNQ_OBJ_NIL);
  ck_assert_uint_eq(dynq__obj_len(none), 0);
  ck_assert_int_eq(dynq__obj_int(none, &iv), DYNQ_EPARAMS);
  ck_assert_int_eq(dynq__obj_double(none, &dv), DYNQ_EPARAMS);
  ck_assert_int_eq(dynq__obj_str(none, &s, &n), DYNQ_EPARAMS);
  ck_assert(dynq__obj_is_absent(dynq__obj_get(none, "x")));

  dynq__rpc_free(&m);
  ck_assert_ptr_null(m.priv);
  dynq__wbuf_free(&w);
}
END_TEST

START_TEST(test_roundtrip_hand_types) {
  /* float32, ext and a NUL inside a string: only reachable by hand. */
  static const uint8_t f[] = {
    0x94, 0x00, 0x01, 0xa1, 'm',
    0x83,
      0xa1, 'f', 0xca, 0x40, 0x20, 0x00, 0x00,   /* 2.5f */
      0xa1, 'e', 0xd4, 0x01, 0x07,
      0xa1, 'z', 0xa3, 'a', 0x00, 'b'};
  dynq__rpc_msg_t m;
  char err[128];
  ck_assert_int_eq(dynq__rpc_parse(f, sizeof f, &m, NULL, err, sizeof err), 0);
  double dv;
  ck_assert_int_eq(dynq__obj_kind(dynq__obj_get(m.params, "f")), DYNQ_OBJ_FLOAT);
  ck_assert_int_eq(dynq__obj_double(dynq__obj_get(m.params, "f"), &dv), 0);
  ck_assert(dv == 2.5);
  ck_assert_int_eq(dynq__obj_kind(dynq__obj_get(m.params, "e")), DYNQ_OBJ_OTHER);
  char buf[8];
  const char *s;
  size_t n;
  ck_assert_int_eq(dynq__obj_str(dynq__obj_get(m.params, "z"), &s, &n), 0);
  ck_assert_uint_eq(n, 3);
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(m.params, "z"), buf, sizeof buf),
                   DYNQ_EPARAMS);
  dynq__rpc_free(&m);
}
END_TEST

/* Every msgpack format once, decoded as msgpack_unpack decodes it. */
START_TEST(test_decode_every_format) {
  static const uint8_t f[] = {
    0x94, 0x00, 0x01, 0xa1, 'm',
    0xde, 0x00, 28,
      0xa1, 'a', 0xcc, 0xff,
      0xa1, 'b', 0xcd, 0x01, 0x00,
      0xa1, 'c', 0xce, 0x00, 0x01, 0x00, 0x00,
      0xa1, 'd', 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0,
      0xa1, 'e', 0xd0, 0x80,
      0xa1, 'f', 0xd0, 0x05,                      /* signed, >= 0 */
      0xa1, 'g', 0xd1, 0xff, 0x00,
      0xa1, 'h', 0xd2, 0x00, 0x00, 0x00, 0x07,
      0xa1, 'i', 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0,
      0xa1, 'j', 0xca, 0x7f, 0xc0, 0x00, 0x00,    /* NaN */
      0xa1, 'k', 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0,
      0xa1, 'l', 0xd9, 0x02, 'h', 'i',
      0xa1, 'm', 0xda, 0x00, 0x01, 'x',
      0xa1, 'n', 0xc4, 0x00,
      0xa1, 'o', 0xc5, 0x00, 0x02, 0x01, 0x02,
      0xa1, 'p', 0xc7, 0x01, 0x05, 0xaa,
      0xa1, 'q', 0xd4, 0x02, 0xbb,
      0xa1, 'r', 0xd8, 0x03, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
      0xa1, 's', 0xdc, 0x00, 0x02, 0xc0, 0xc3,
      0xa1, 't', 0xde, 0x00, 0x01, 0xa0, 0x90,
      0xa1, 'u', 0x80,
      0xa1, 'v', 0xe0,
      0xa1, 'w', 0xc8, 0x00, 0x00, 0x07,
      0xa1, 'x', 0xdb, 0x00, 0x00, 0x00, 0x01, 'z',
      0xa1, 'y', 0xc6, 0x00, 0x00, 0x00, 0x00,
      0xa1, 'z', 0xdd, 0x00, 0x00, 0x00, 0x01, 0xc2,
      0xa1, 'A', 0xdf, 0x00, 0x00, 0x00, 0x00,
      0xa1, 'B', 0xc9, 0x00, 0x00, 0x00, 0x01, 0x09, 0x01};
  dynq__rpc_msg_t m;
  char err[128];
  ck_assert_int_eq(dynq__rpc_parse(f, sizeof f, &m, NULL, err, sizeof err), 0);
  same_tree(f, sizeof f, &m);
  uint64_t u;
  int64_t i;
  double d;
  ck_assert_int_eq(dynq__obj_uint(dynq__obj_get(m.params, "d"), &u), 0);
  ck_assert(u == (uint64_t)1 << 63);
  ck_assert_int_eq(dynq__obj_int(dynq__obj_get(m.params, "e"), &i), 0);
  ck_assert_int_eq(i, -128);
  ck_assert_int_eq(dynq__obj_uint(dynq__obj_get(m.params, "f"), &u), 0);
  ck_assert(u == 5);
  ck_assert_int_eq(dynq__obj_int(dynq__obj_get(m.params, "g"), &i), 0);
  ck_assert_int_eq(i, -256);
  ck_assert_int_eq(dynq__obj_int(dynq__obj_get(m.params, "i"), &i), 0);
  ck_assert(i == INT64_MIN);
  ck_assert_int_eq(dynq__obj_double(dynq__obj_get(m.params, "j"), &d), 0);
  ck_assert(d != d);
  ck_assert_int_eq(dynq__obj_kind(dynq__obj_get(m.params, "r")), DYNQ_OBJ_OTHER);
  ck_assert_uint_eq(dynq__obj_len(dynq__obj_get(m.params, "s")), 2);
  dynq__rpc_free(&m);

  /* Bigger than one arena chunk, nested: an array of 300 maps. */
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 3, "big");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "v");
  dynq__w_array(&w, 300);
  for (int k = 0; k < 300; k++) {
    dynq__w_map(&w, 2);
    dynq__w_str(&w, "k");
    dynq__w_int(&w, -k);
    dynq__w_str(&w, "a");
    dynq__w_array(&w, (uint32_t)(k % 5));
    for (int j = 0; j < k % 5; j++) dynq__w_double(&w, j * 0.5);
  }
  ck_assert_int_eq(w.err, 0);
  ck_assert_int_eq(dynq__rpc_parse(w.data, w.len, &m, NULL, err, sizeof err), 0);
  same_tree(w.data, w.len, &m);
  dynq__rpc_free(&m);
  dynq__wbuf_free(&w);
}
END_TEST

/* dynq__obj_lookup answers each key as dynq__obj_get would: the first
 * entry with that key (a duplicate later is ignored, a nil first one is
 * what is found), non-string keys never match, absent for a non-map. */
START_TEST(test_obj_lookup) {
  static const uint8_t f[] = {
    0x94, 0x00, 0x01, 0xa1, 'm',
    0x86,
      0xa1, 'a', 0x01,
      0x05, 0xa1, 'b',            /* int key 5 -> "b" */
      0xa1, 'b', 0xc0,            /* b: nil (first) */
      0xa1, 'a', 0x02,            /* a again: ignored */
      0xa2, 'b', 'b', 0x03,
      0xa1, 'b', 0x04};           /* b again: ignored */
  dynq__rpc_msg_t m;
  char err[128];
  ck_assert_int_eq(dynq__rpc_parse(f, sizeof f, &m, NULL, err, sizeof err), 0);
  static const dynq__key_t keys[] = {DYNQ__KEY("b"), DYNQ__KEY("a"), DYNQ__KEY("zz"),
                                     DYNQ__KEY("bb"), DYNQ__KEY("a"), DYNQ__KEY("")};
  const int nk = (int)(sizeof keys / sizeof keys[0]);
  dynq__obj_t v[6];
  dynq__obj_lookup(m.params, keys, nk, v);
  for (int i = 0; i < nk; i++) {
    char k[4] = "";
    memcpy(k, keys[i].s, keys[i].n);
    dynq__obj_t g = dynq__obj_get(m.params, k);
    ck_assert_msg(v[i].p == g.p, "key '%s': lookup and get disagree", k);
  }
  int64_t iv;
  ck_assert(!dynq__obj_is_absent(v[0]));
  ck_assert_int_eq(dynq__obj_kind(v[0]), DYNQ_OBJ_NIL);
  ck_assert_int_eq(dynq__obj_int(v[1], &iv), 0);
  ck_assert_int_eq(iv, 1);
  ck_assert(dynq__obj_is_absent(v[2]));
  ck_assert_int_eq(dynq__obj_int(v[3], &iv), 0);
  ck_assert_int_eq(iv, 3);
  ck_assert(v[4].p == v[1].p);
  ck_assert(dynq__obj_is_absent(v[5]));
  /* not a map: all absent */
  dynq__obj_lookup(v[1], keys, nk, v);
  for (int i = 0; i < nk; i++) ck_assert(dynq__obj_is_absent(v[i]));
  dynq__rpc_free(&m);
}
END_TEST

/* Fill a tensor's data with a pattern that depends on dtype and index. */
static void fill(dynq__tensor_t *t) {
  int64_t n = dynq__tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    switch (t->dtype) {
    case DYNQ_DT_F32: ((float *)t->data)[i] = (float)i * -0.5f + 0.25f; break;
    case DYNQ_DT_I8: ((int8_t *)t->data)[i] = (int8_t)(i * 37 - 128); break;
    case DYNQ_DT_U8: ((uint8_t *)t->data)[i] = (uint8_t)(i * 91); break;
    case DYNQ_DT_I32: ((int32_t *)t->data)[i] = (int32_t)(i * -100003); break;
    case DYNQ_DT_I64: ((int64_t *)t->data)[i] = i * -1000000007LL; break;
    default: ck_abort();
    }
  }
}

START_TEST(test_roundtrip_tensors) {
  static const struct { int rank; int64_t dims[4]; } shapes[] = {
    {0, {0}}, {1, {1}}, {1, {7}}, {2, {3, 5}}, {3, {2, 0, 4}}, {4, {2, 3, 1, 5}},
  };
  for (int dt = DYNQ_DT_F32; dt < DYNQ_DT__COUNT; dt++) {
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
      dynq__tensor_t in;
      memset(&in, 0, sizeof in);
      ck_assert_int_eq(dynq__tensor_alloc(&in, (dynq_dtype_t)dt, shapes[s].rank,
                                          shapes[s].dims), 0);
      fill(&in);
      dynq__wbuf_t w;
      dynq__wbuf_init(&w);
      dynq__w_result_head(&w, 3);
      dynq__w_map(&w, 1);
      dynq__w_str(&w, "y");
      dynq__w_tensor(&w, &in);
      dynq__rpc_msg_t m;
      parse_ok(&w, &m);
      ck_assert_int_eq(m.type, DYNQ_RPC_RESPONSE);
      ck_assert_uint_eq(m.msgid, 3);
      ck_assert(dynq__obj_is_absent(m.error));
      ck_assert_int_eq(dynq__rpc_error(m.error, NULL, 0), 0);

      dynq__tensor_t out;
      char err[128];
      int rc = dynq__obj_tensor(dynq__obj_get(m.result, "y"), NULL, &out, err,
                                sizeof err);
      ck_assert_msg(rc == 0, "dtype %d shape %zu: %d %s", dt, s, rc, err);
      ck_assert_int_eq(out.dtype, dt);
      ck_assert_int_eq(out.rank, in.rank);
      ck_assert_int_eq(out.owned, 1);
      for (int i = 0; i < in.rank; i++) ck_assert_int_eq(out.dims[i], in.dims[i]);
      ck_assert_uint_eq(dynq__tensor_nbytes(&out), dynq__tensor_nbytes(&in));
      ck_assert_uint_eq((uintptr_t)out.data % DYNQ_ALIGN, 0);
      if (dynq__tensor_nbytes(&in))
        ck_assert_mem_eq(out.data, in.data, dynq__tensor_nbytes(&in));
      /* The decoded tensor owns its bytes: survives the message. */
      dynq__rpc_free(&m);
      dynq__wbuf_free(&w);
      if (dynq__tensor_nbytes(&in))
        ck_assert_mem_eq(out.data, in.data, dynq__tensor_nbytes(&in));
      dynq__tensor_clear(&out);
      dynq__tensor_clear(&in);
    }
  }
}
END_TEST

/* ---- reader: tensor refusals ---- */

/* A request whose params are {"t": <whatever build() writes>}. */
typedef void (*build_fn)(dynq__wbuf_t *w);

static int decode_with(build_fn build, const dynq__tensor_limits_t *lim,
                       char *err, size_t errlen) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 1, "infer");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "t");
  build(&w);
  dynq__rpc_msg_t m;
  parse_ok(&w, &m);
  dynq__tensor_t t;
  memset(&t, 0xa5, sizeof t);
  dynq__tensor_t before = t;
  err[0] = '\0';
  int rc = dynq__obj_tensor(dynq__obj_get(m.params, "t"), lim, &t, err, errlen);
  if (rc == 0) {
    dynq__tensor_clear(&t);
  } else {
    ck_assert_mem_eq(&t, &before, sizeof t);  /* untouched */
    ck_assert_msg(err[0] != '\0', "no message for %d", rc);
  }
  dynq__rpc_free(&m);
  dynq__wbuf_free(&w);
  return rc;
}

/* Tensor map writer with every part overridable. */
static void w_tmap(dynq__wbuf_t *w, const char *dtype, int nshape,
                   const int64_t *dims, size_t nbytes, int skip) {
  static const uint8_t zeros[64];
  dynq__w_map(w, (uint32_t)(3 - (skip ? 1 : 0)));
  if (skip != 1) { dynq__w_str(w, "dtype"); dynq__w_str(w, dtype); }
  if (skip != 2) {
    dynq__w_str(w, "shape");
    dynq__w_array(w, (uint32_t)nshape);
    for (int i = 0; i < nshape; i++) dynq__w_int(w, dims[i]);
  }
  if (skip != 3) { dynq__w_str(w, "data"); dynq__w_bin(w, zeros, nbytes); }
}

static const int64_t d23[] = {2, 3};
static void b_ok(dynq__wbuf_t *w) { w_tmap(w, "float32", 2, d23, 24, 0); }
static void b_ok_alias(dynq__wbuf_t *w) { w_tmap(w, "i8", 2, d23, 6, 0); }
static void b_array(dynq__wbuf_t *w) { dynq__w_array(w, 0); }
static void b_nodtype(dynq__wbuf_t *w) { w_tmap(w, "float32", 2, d23, 24, 1); }
static void b_noshape(dynq__wbuf_t *w) { w_tmap(w, "float32", 2, d23, 24, 2); }
static void b_nodata(dynq__wbuf_t *w) { w_tmap(w, "float32", 2, d23, 24, 3); }
static void b_dtype_int(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_int(w, 1);
  dynq__w_str(w, "shape"); dynq__w_array(w, 0);
  dynq__w_str(w, "data"); dynq__w_bin(w, "abcd", 4);
}
static void b_shape_map(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_str(w, "uint8");
  dynq__w_str(w, "shape"); dynq__w_map(w, 0);
  dynq__w_str(w, "data"); dynq__w_bin(w, "a", 1);
}
static void b_dim_str(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_str(w, "uint8");
  dynq__w_str(w, "shape"); dynq__w_array(w, 2); dynq__w_int(w, 1); dynq__w_str(w, "2");
  dynq__w_str(w, "data"); dynq__w_bin(w, "ab", 2);
}
static void b_dim_float(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_str(w, "uint8");
  dynq__w_str(w, "shape"); dynq__w_array(w, 1); dynq__w_double(w, 2.0);
  dynq__w_str(w, "data"); dynq__w_bin(w, "ab", 2);
}
static void b_dim_huge(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_str(w, "uint8");
  dynq__w_str(w, "shape"); dynq__w_array(w, 1); dynq__w_uint(w, UINT64_MAX);
  dynq__w_str(w, "data"); dynq__w_bin(w, "ab", 2);
}
static void b_data_str(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_str(w, "uint8");
  dynq__w_str(w, "shape"); dynq__w_array(w, 1); dynq__w_int(w, 2);
  dynq__w_str(w, "data"); dynq__w_str(w, "ab");
}
static void b_unknown(dynq__wbuf_t *w) { w_tmap(w, "float16", 2, d23, 12, 0); }
static void b_longname(dynq__wbuf_t *w) {
  w_tmap(w, "float32float32float32float32float32float32", 2, d23, 24, 0);
}
static void b_emptyname(dynq__wbuf_t *w) { w_tmap(w, "", 2, d23, 24, 0); }
static void b_negdim(dynq__wbuf_t *w) {
  static const int64_t d[] = {2, -3};
  w_tmap(w, "float32", 2, d, 24, 0);
}
static void b_rank9(dynq__wbuf_t *w) {
  static const int64_t d[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  w_tmap(w, "int8", 9, d, 1, 0);
}
static void b_rank8(dynq__wbuf_t *w) {
  static const int64_t d[8] = {1, 1, 1, 1, 1, 1, 1, 2};
  w_tmap(w, "int8", 8, d, 2, 0);
}
static void b_overflow(dynq__wbuf_t *w) {
  static const int64_t d[] = {(int64_t)1 << 40, (int64_t)1 << 40};
  w_tmap(w, "float32", 2, d, 0, 0);
}
static void b_overflow_zero(dynq__wbuf_t *w) {
  /* 0 x 2^40: zero elements, but a dim that alone is over the limit. */
  static const int64_t d[] = {0, (int64_t)1 << 40};
  w_tmap(w, "float32", 2, d, 0, 0);
}
static void b_short(dynq__wbuf_t *w) { w_tmap(w, "float32", 2, d23, 23, 0); }
static void b_long(dynq__wbuf_t *w) { w_tmap(w, "float32", 2, d23, 25, 0); }
static void b_i64_short(dynq__wbuf_t *w) { w_tmap(w, "int64", 2, d23, 24, 0); }
static void b_11(dynq__wbuf_t *w) {
  static const int64_t d[] = {11};
  w_tmap(w, "uint8", 1, d, 11, 0);
}

START_TEST(test_tensor_refusals) {
  char err[160];
  ck_assert_int_eq(decode_with(b_ok, NULL, err, sizeof err), 0);
  ck_assert_int_eq(decode_with(b_ok_alias, NULL, err, sizeof err), 0);
  ck_assert_int_eq(decode_with(b_rank8, NULL, err, sizeof err), 0);

  ck_assert_int_eq(decode_with(b_array, NULL, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(err, "not a map"));
  ck_assert_int_eq(decode_with(b_nodtype, NULL, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(err, "dtype"));
  ck_assert_ptr_nonnull(strstr(err, "missing"));
  ck_assert_int_eq(decode_with(b_noshape, NULL, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(err, "shape"));
  ck_assert_int_eq(decode_with(b_nodata, NULL, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(err, "data"));
  ck_assert_int_eq(decode_with(b_dtype_int, NULL, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(err, "dtype"));
  ck_assert_int_eq(decode_with(b_shape_map, NULL, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(err, "shape"));
  ck_assert_int_eq(decode_with(b_dim_str, NULL, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(err, "shape[1]"));
  ck_assert_int_eq(decode_with(b_dim_float, NULL, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_int_eq(decode_with(b_dim_huge, NULL, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_int_eq(decode_with(b_data_str, NULL, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(err, "data"));

  ck_assert_int_eq(decode_with(b_unknown, NULL, err, sizeof err), DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "float16"));
  ck_assert_int_eq(decode_with(b_longname, NULL, err, sizeof err), DYNQ_EDTYPE);
  ck_assert_int_eq(decode_with(b_emptyname, NULL, err, sizeof err), DYNQ_EDTYPE);

  ck_assert_int_eq(decode_with(b_negdim, NULL, err, sizeof err), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "shape[1]"));
  ck_assert_int_eq(decode_with(b_rank9, NULL, err, sizeof err), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "rank 9"));
  dynq__tensor_limits_t l2 = {1, 1000};
  ck_assert_int_eq(decode_with(b_ok, &l2, err, sizeof err), DYNQ_ESHAPE);

  ck_assert_int_eq(decode_with(b_overflow, NULL, err, sizeof err), DYNQ_ELIMIT);
  ck_assert_int_eq(decode_with(b_overflow_zero, NULL, err, sizeof err), DYNQ_ELIMIT);
  dynq__tensor_limits_t l10 = {8, 10};
  ck_assert_int_eq(decode_with(b_11, &l10, err, sizeof err), DYNQ_ELIMIT);
  dynq__tensor_limits_t l11 = {8, 11};
  ck_assert_int_eq(decode_with(b_11, &l11, err, sizeof err), 0);

  ck_assert_int_eq(decode_with(b_short, NULL, err, sizeof err), DYNQ_EDATA);
  ck_assert_ptr_nonnull(strstr(err, "23"));
  ck_assert_int_eq(decode_with(b_long, NULL, err, sizeof err), DYNQ_EDATA);
  ck_assert_int_eq(decode_with(b_i64_short, NULL, err, sizeof err), DYNQ_EDATA);

  /* Absent object, and no err buffer at all. */
  dynq__obj_t none = {NULL};
  dynq__tensor_t t;
  ck_assert_int_eq(dynq__obj_tensor(none, NULL, &t, NULL, 0), DYNQ_EPARAMS);
}
END_TEST

/* ---- reader: envelope ---- */

/* One reader for the whole suite: every frame below also goes through it,
 * so its zone is reused across many good and bad frames. */
static dynq__rpc_reader_t *suite_reader;

/* dynq__rpc_parse_framed on b, with lim as the framer's limits (NULL:
 * not scanned): the same verdict, hint and message as the copy. */
static void same_in_place(const uint8_t *b, size_t n, const dynq__scan_limits_t *lim,
                          int rc, int64_t hint, const char *err) {
  if (suite_reader == NULL) suite_reader = dynq__rpc_reader_new();
  ck_assert_ptr_nonnull(suite_reader);
  dynq__rpc_msg_t m;
  memset(&m, 0x5a, sizeof m);
  dynq__rpc_msg_t before = m;
  int64_t h2 = 12345;
  char e2[128] = "x";
  int rc2 = dynq__rpc_parse_framed(suite_reader, b, n, lim, &m, &h2, e2, sizeof e2);
  ck_assert_int_eq(rc2, rc);
  if (rc2 == 0) {
    size_t flen;
    /* in place: the message's frame is the caller's bytes */
    ck_assert_ptr_eq(dynq__rpc_frame(&m, &flen), b);
    ck_assert_uint_eq(flen, n);
    dynq__rpc_free(&m);
    ck_assert_ptr_null(m.priv);
  } else {
    ck_assert_mem_eq(&m, &before, sizeof m);
    ck_assert_int_eq(h2, hint);
    if (err != NULL) ck_assert_str_eq(e2, err);
  }
}

static int parse_hand(const uint8_t *b, size_t n, int64_t *hint, char *err,
                      size_t errlen) {
  dynq__rpc_msg_t m;
  memset(&m, 0x5a, sizeof m);
  dynq__rpc_msg_t before = m;
  int rc = dynq__rpc_parse(b, n, &m, hint, err, errlen);
  if (rc == 0) {
    dynq__rpc_free(&m);
  } else {
    ck_assert_mem_eq(&m, &before, sizeof m);
    ck_assert_msg(err == NULL || err[0] != '\0', "no message for %d", rc);
  }
  int64_t h = hint != NULL ? *hint : -1;
  const char *e = err != NULL && errlen >= 128 ? err : NULL;
  same_in_place(b, n, NULL, rc, h, e);
  /* As the framer would hand it out: only a frame the scanner cut at
   * exactly n bytes skips the second scan. */
  size_t used = 0;
  if (dynq__mp_scan(b, n, &dynq__scan_limits_default, &used) == 0 && used == n)
    same_in_place(b, n, &dynq__scan_limits_default, rc, h, e);
  return rc;
}

typedef void (*env_fn)(dynq__wbuf_t *w);

static int parse_built(env_fn f, int64_t *hint, char *err, size_t errlen) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  f(&w);
  ck_assert_int_eq(w.err, 0);
  int rc = parse_hand(w.data, w.len, hint, err, errlen);
  dynq__wbuf_free(&w);
  return rc;
}

static void e_map(dynq__wbuf_t *w) { dynq__w_map(w, 0); }
static void e_len5(dynq__wbuf_t *w) {
  dynq__w_array(w, 5); dynq__w_uint(w, 0); dynq__w_uint(w, 7);
  dynq__w_str(w, "ping"); dynq__w_map(w, 0); dynq__w_nil(w);
}
static void e_trailing(dynq__wbuf_t *w) {
  dynq__w_request_head(w, 7, "ping");
  dynq__w_map(w, 0);
  dynq__w_nil(w);
}
static void e_len3(dynq__wbuf_t *w) {
  dynq__w_array(w, 3); dynq__w_uint(w, 0); dynq__w_uint(w, 7); dynq__w_str(w, "ping");
}
static void e_len0(dynq__wbuf_t *w) { dynq__w_array(w, 0); }
static void e_type3(dynq__wbuf_t *w) {
  dynq__w_array(w, 4); dynq__w_uint(w, 3); dynq__w_uint(w, 7);
  dynq__w_str(w, "ping"); dynq__w_nil(w);
}
static void e_type_neg(dynq__wbuf_t *w) {
  dynq__w_array(w, 4); dynq__w_int(w, -1); dynq__w_uint(w, 7);
  dynq__w_str(w, "ping"); dynq__w_nil(w);
}
static void e_type_str(dynq__wbuf_t *w) {
  dynq__w_array(w, 4); dynq__w_str(w, "0"); dynq__w_uint(w, 7);
  dynq__w_str(w, "ping"); dynq__w_nil(w);
}
static void e_msgid_neg(dynq__wbuf_t *w) {
  dynq__w_array(w, 4); dynq__w_uint(w, 0); dynq__w_int(w, -1);
  dynq__w_str(w, "ping"); dynq__w_nil(w);
}
static void e_msgid_big(dynq__wbuf_t *w) {
  dynq__w_array(w, 4); dynq__w_uint(w, 0); dynq__w_uint(w, (uint64_t)UINT32_MAX + 1);
  dynq__w_str(w, "ping"); dynq__w_nil(w);
}
static void e_msgid_str(dynq__wbuf_t *w) {
  dynq__w_array(w, 4); dynq__w_uint(w, 0); dynq__w_str(w, "7");
  dynq__w_str(w, "ping"); dynq__w_nil(w);
}
static void e_method_int(dynq__wbuf_t *w) {
  dynq__w_array(w, 4); dynq__w_uint(w, 0); dynq__w_uint(w, 7);
  dynq__w_uint(w, 5); dynq__w_nil(w);
}
static char longname[65];
static void e_method_64(dynq__wbuf_t *w) {
  memset(longname, 'm', 64);
  longname[64] = '\0';
  dynq__w_request_head(w, 7, longname);
  dynq__w_nil(w);
}
static void e_method_63(dynq__wbuf_t *w) {
  memset(longname, 'm', 63);
  longname[63] = '\0';
  dynq__w_request_head(w, 7, longname);
  dynq__w_nil(w);
}
static void e_method_empty(dynq__wbuf_t *w) {
  dynq__w_request_head(w, 7, "");
  dynq__w_nil(w);
}
static void e_method_nul(dynq__wbuf_t *w) {
  dynq__w_array(w, 4); dynq__w_uint(w, 0); dynq__w_uint(w, 7);
  dynq__w_strn(w, "pi\0ng", 5); dynq__w_nil(w);
}
static void e_notify_ok(dynq__wbuf_t *w) {
  dynq__w_array(w, 3); dynq__w_uint(w, 2); dynq__w_str(w, "log"); dynq__w_map(w, 0);
}
static void e_notify_4(dynq__wbuf_t *w) {
  dynq__w_array(w, 4); dynq__w_uint(w, 2); dynq__w_uint(w, 7);
  dynq__w_str(w, "log"); dynq__w_map(w, 0);
}
static void e_notify_method(dynq__wbuf_t *w) {
  dynq__w_array(w, 3); dynq__w_uint(w, 2); dynq__w_nil(w); dynq__w_map(w, 0);
}
static void e_response_3(dynq__wbuf_t *w) {
  dynq__w_array(w, 3); dynq__w_uint(w, 1); dynq__w_uint(w, 9); dynq__w_nil(w);
}

START_TEST(test_rpc_envelope_refusals) {
  char err[128];
  int64_t hint;
  static const struct { env_fn f; int64_t hint; const char *word; } c[] = {
    {e_map, -1, "array"},
    {e_len5, 7, "4 elements"},
    {e_len3, 7, "4 elements"},
    {e_trailing, -1, "trailing"},
    {e_len0, -1, "type"},
    {e_type3, -1, "type"},
    {e_type_neg, -1, "type"},
    {e_type_str, -1, "type"},
    {e_msgid_neg, -1, "msgid"},
    {e_msgid_big, -1, "msgid"},
    {e_msgid_str, -1, "msgid"},
    {e_method_int, 7, "method"},
    {e_method_64, 7, "method"},
    {e_method_empty, 7, "method"},
    {e_method_nul, 7, "method"},
    {e_notify_4, -1, "3 elements"},
    {e_notify_method, -1, "method"},
    {e_response_3, 9, "4 elements"},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    hint = 12345;
    ck_assert_msg(parse_built(c[i].f, &hint, err, sizeof err) == DYNQ_EPROTO,
                  "case %zu accepted", i);
    ck_assert_msg(hint == c[i].hint, "case %zu: hint %lld", i, (long long)hint);
    ck_assert_msg(strstr(err, c[i].word) != NULL, "case %zu: '%s'", i, err);
  }
  ck_assert_int_eq(parse_built(e_method_63, &hint, err, sizeof err), 0);
  ck_assert_int_eq(parse_built(e_notify_ok, NULL, NULL, 0), 0);
  /* No hint pointer, no err buffer: still refused cleanly. */
  ck_assert_int_eq(parse_built(e_type3, NULL, NULL, 0), DYNQ_EPROTO);
}
END_TEST

START_TEST(test_rpc_bad_bytes) {
  char err[128];
  int64_t hint;
  static const uint8_t c1[] = {0x94, 0x00, 0x01, 0xa1, 'm', 0xc1};
  static const uint8_t trunc[] = {0x94, 0x00, 0x01, 0xa1, 'm'};
  static const uint8_t trail[] = {0x94, 0x00, 0x01, 0xa1, 'm', 0xc0, 0x00};
  static const uint8_t lie[] = {0x94, 0x00, 0x01, 0xa1, 'm', 0xdd, 0xff, 0xff, 0xff, 0xff};
  static const uint8_t strlie[] = {0x94, 0x00, 0x01, 0xa1, 'm', 0xdb, 0x7f, 0xff, 0xff, 0xff};
  ck_assert_int_eq(parse_hand(c1, sizeof c1, &hint, err, sizeof err), DYNQ_EPROTO);
  ck_assert_int_eq(parse_hand(trunc, sizeof trunc, &hint, err, sizeof err), DYNQ_EPROTO);
  ck_assert_ptr_nonnull(strstr(err, "truncated"));
  ck_assert_int_eq(parse_hand(trail, sizeof trail, &hint, err, sizeof err), DYNQ_EPROTO);
  ck_assert_ptr_nonnull(strstr(err, "trailing"));
  ck_assert_int_eq(parse_hand(lie, sizeof lie, &hint, err, sizeof err), DYNQ_EPROTO);
  ck_assert_int_eq(parse_hand(strlie, sizeof strlie, &hint, err, sizeof err), DYNQ_EPROTO);
  ck_assert_int_eq(parse_hand(c1, 0, &hint, err, sizeof err), DYNQ_EPROTO);
  ck_assert_int_eq(hint, -1);

  /* Deeper than msgpack-c can decode: refused, not crashed. */
  uint8_t deep[5 + 40 + 1] = {0x94, 0x00, 0x01, 0xa1, 'm'};
  memset(deep + 5, 0x91, 40);
  deep[45] = 0xc0;
  ck_assert_int_eq(parse_hand(deep, sizeof deep, &hint, err, sizeof err), DYNQ_EPROTO);
  ck_assert_ptr_nonnull(strstr(err, "nesting"));
  /* 31 levels inside params (32 with the envelope) decode fine; 33 not. */
  memset(deep + 5, 0x91, 40);
  deep[36] = 0xc0;
  ck_assert_int_eq(parse_hand(deep, 37, &hint, err, sizeof err), 0);
  memset(deep + 5, 0x91, 40);
  deep[37] = 0xc0;
  ck_assert_int_eq(parse_hand(deep, 38, &hint, err, sizeof err), DYNQ_EPROTO);
}
END_TEST

START_TEST(test_rpc_reader_in_place) {
  dynq__rpc_reader_t *rd = dynq__rpc_reader_new();
  ck_assert_ptr_nonnull(rd);
  dynq__wbuf_t w1, w2;
  dynq__wbuf_init(&w1);
  dynq__wbuf_init(&w2);
  dynq__w_request_head(&w1, 7, "infer");
  dynq__w_map(&w1, 1);
  dynq__w_str(&w1, "model");
  dynq__w_str(&w1, "linear");
  dynq__w_request_head(&w2, 8, "ping");
  dynq__w_map(&w2, 0);
  ck_assert_int_eq(w1.err | w2.err, 0);
  char err[128];
  const char *sv;
  size_t n, flen;
  dynq__rpc_msg_t m1, m2;
  for (int round = 0; round < 1000; round++) {  /* the zone is reused, not grown */
    ck_assert_int_eq(dynq__rpc_parse_framed(rd, w1.data, w1.len, &dynq__scan_limits_default,
                                            &m1, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(m1.msgid, 7);
    ck_assert_str_eq(m1.method, "infer");
    ck_assert_int_eq(dynq__obj_str(dynq__obj_get(m1.params, "model"), &sv, &n), 0);
    /* the string is read where it lies in the caller's buffer */
    ck_assert(sv > (const char *)w1.data && sv + n <= (const char *)w1.data + w1.len);
    ck_assert_ptr_eq(dynq__rpc_frame(&m1, &flen), w1.data);
    if (round == 0) {
      /* A second frame while m1 lives: parsed by copy, both stay valid. */
      ck_assert_int_eq(dynq__rpc_parse_framed(rd, w2.data, w2.len, NULL, &m2, NULL, err,
                                              sizeof err), 0);
      ck_assert_ptr_ne(dynq__rpc_frame(&m2, &flen), w2.data);
      ck_assert_uint_eq(flen, w2.len);
      ck_assert_str_eq(m2.method, "ping");
      ck_assert_uint_eq(m2.msgid, 8);
      ck_assert_str_eq(m1.method, "infer");
      ck_assert_int_eq(dynq__obj_str(dynq__obj_get(m1.params, "model"), &sv, &n), 0);
      ck_assert_int_eq(memcmp(sv, "linear", 6), 0);
      dynq__rpc_free(&m2);
    }
    dynq__rpc_free(&m1);
  }
  /* Nesting the framer allowed beyond msgpack-c's 32 is still refused:
   * limits with max_depth above 32 do not skip the scan. */
  uint8_t deep[5 + 40 + 1] = {0x94, 0x00, 0x01, 0xa1, 'm'};
  memset(deep + 5, 0x91, 40);
  deep[45] = 0xc0;
  dynq__scan_limits_t lim64 = {(size_t)1 << 20, 64, 1u << 20};
  size_t used;
  ck_assert_int_eq(dynq__mp_scan(deep, sizeof deep, &lim64, &used), 0);
  int64_t hint;
  ck_assert_int_eq(dynq__rpc_parse_framed(rd, deep, sizeof deep, &lim64, &m1, &hint, err,
                                          sizeof err), DYNQ_EPROTO);
  ck_assert_ptr_nonnull(strstr(err, "nesting"));
  /* No reader (it could not be allocated): a plain copying parse. */
  ck_assert_int_eq(dynq__rpc_parse_framed(NULL, w2.data, w2.len, NULL, &m2, NULL, err,
                                          sizeof err), 0);
  ck_assert_ptr_ne(dynq__rpc_frame(&m2, &flen), w2.data);
  dynq__rpc_free(&m2);
  ck_assert_ptr_null(dynq__rpc_reader_free(rd));
  ck_assert_ptr_null(dynq__rpc_reader_free(NULL));
  dynq__wbuf_free(&w1);
  dynq__wbuf_free(&w2);
}
END_TEST

START_TEST(test_rpc_params_and_lifetime) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__rpc_msg_t m;
  int64_t iv;

  /* [map] is unwrapped. */
  dynq__w_request_head(&w, 1, "model.info");
  dynq__w_array(&w, 1);
  dynq__w_map(&w, 1); dynq__w_str(&w, "model"); dynq__w_str(&w, "mlp");
  parse_ok(&w, &m);
  ck_assert_int_eq(dynq__obj_kind(m.params), DYNQ_OBJ_MAP);
  /* The message outlives the caller's bytes. */
  memset(w.data, 0, w.len);
  dynq__wbuf_free(&w);
  char buf[16];
  ck_assert_str_eq(m.method, "model.info");
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(m.params, "model"), buf, sizeof buf), 0);
  ck_assert_str_eq(buf, "mlp");
  dynq__rpc_free(&m);

  /* [] is no params; nil stays nil; [1, 2] is left for the method. */
  dynq__w_request_head(&w, 2, "ping");
  dynq__w_array(&w, 0);
  parse_ok(&w, &m);
  ck_assert(dynq__obj_is_absent(m.params));
  dynq__rpc_free(&m);
  dynq__wbuf_reset(&w);
  dynq__w_request_head(&w, 2, "ping");
  dynq__w_nil(&w);
  parse_ok(&w, &m);
  ck_assert_int_eq(dynq__obj_kind(m.params), DYNQ_OBJ_NIL);
  dynq__rpc_free(&m);
  dynq__wbuf_reset(&w);
  dynq__w_request_head(&w, 2, "ping");
  dynq__w_array(&w, 2); dynq__w_uint(&w, 1); dynq__w_uint(&w, 2);
  parse_ok(&w, &m);
  ck_assert_int_eq(dynq__obj_kind(m.params), DYNQ_OBJ_ARRAY);
  ck_assert_uint_eq(dynq__obj_len(m.params), 2);
  dynq__rpc_free(&m);

  /* Notification. */
  dynq__wbuf_reset(&w);
  dynq__w_array(&w, 3); dynq__w_uint(&w, 2); dynq__w_str(&w, "hello");
  dynq__w_array(&w, 1); dynq__w_map(&w, 1); dynq__w_str(&w, "n"); dynq__w_int(&w, -4);
  parse_ok(&w, &m);
  ck_assert_int_eq(m.type, DYNQ_RPC_NOTIFY);
  ck_assert_str_eq(m.method, "hello");
  ck_assert_int_eq(dynq__obj_int(dynq__obj_get(m.params, "n"), &iv), 0);
  ck_assert_int_eq(iv, -4);
  dynq__rpc_free(&m);

  /* Response with a result. */
  dynq__wbuf_reset(&w);
  dynq__w_result_head(&w, 77);
  dynq__w_str(&w, "pong");
  parse_ok(&w, &m);
  ck_assert_int_eq(m.type, DYNQ_RPC_RESPONSE);
  ck_assert_uint_eq(m.msgid, 77);
  ck_assert_ptr_null(m.method);
  ck_assert(dynq__obj_is_absent(m.error));
  ck_assert_int_eq(dynq__obj_strcpy(m.result, buf, sizeof buf), 0);
  ck_assert_str_eq(buf, "pong");
  dynq__rpc_free(&m);
  dynq__wbuf_free(&w);
}
END_TEST

/* ---- errors ---- */

static int error_of(env_fn f, char *msg, size_t msglen) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_array(&w, 4); dynq__w_uint(&w, 1); dynq__w_uint(&w, 5);
  f(&w);
  dynq__w_nil(&w);
  dynq__rpc_msg_t m;
  parse_ok(&w, &m);
  int rc = dynq__rpc_error(m.error, msg, msglen);
  dynq__rpc_free(&m);
  dynq__wbuf_free(&w);
  return rc;
}

static void err_map(dynq__wbuf_t *w, int has_code, int64_t code,
                    const char *name, const char *message) {
  dynq__w_map(w, (uint32_t)(has_code + (name != NULL) + (message != NULL) + 1));
  if (has_code) { dynq__w_str(w, "code"); dynq__w_int(w, code); }
  if (name) { dynq__w_str(w, "name"); dynq__w_str(w, name); }
  if (message) { dynq__w_str(w, "message"); dynq__w_str(w, message); }
  dynq__w_str(w, "retryable"); dynq__w_bool(w, 0);
}
static void er_errno_known(dynq__wbuf_t *w) { err_map(w, 1, -ENOENT, "ENOENT", "gone"); }
static void er_errno_other(dynq__wbuf_t *w) { err_map(w, 1, -77, "EWEIRD", "odd"); }
static void er_errno_big(dynq__wbuf_t *w) { err_map(w, 1, -99999, "EWEIRD", "odd"); }
static void er_errno_pos(dynq__wbuf_t *w) { err_map(w, 1, 5, "EWEIRD", "odd"); }
static void er_notstyle(dynq__wbuf_t *w) { err_map(w, 1, -5, "weird-thing", "odd"); }
static void er_noname(dynq__wbuf_t *w) { err_map(w, 1, DYNQ_ENOMODEL, NULL, "odd"); }
static void er_lying_code(dynq__wbuf_t *w) { err_map(w, 1, -5, "ENOMODEL", NULL); }
static void er_nomsg(dynq__wbuf_t *w) { err_map(w, 0, 0, "EOVERLOAD", NULL); }
/* fuzz-scan-rpc: an errno-style name with a code glibc has no text for
 * and no message; the text came from two strerror() calls, the first's
 * buffer freed by the second (heap-use-after-free under ASan). */
static void er_errno_unknown(dynq__wbuf_t *w) { err_map(w, 1, -1007, "EISDIRSHAPE", NULL); }
static void er_string(dynq__wbuf_t *w) { dynq__w_str(w, "plain failure"); }
static void er_int(dynq__wbuf_t *w) { dynq__w_int(w, 3); }
static void er_name_int(dynq__wbuf_t *w) {
  dynq__w_map(w, 1); dynq__w_str(w, "name"); dynq__w_int(w, 3);
}

START_TEST(test_rpc_error_decode) {
  char msg[64];
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_error_response(&w, 5, DYNQ_ENOMODEL, "no model named 'foo'");
  dynq__rpc_msg_t m;
  parse_ok(&w, &m);
  ck_assert_int_eq(m.type, DYNQ_RPC_RESPONSE);
  ck_assert_uint_eq(m.msgid, 5);
  ck_assert_int_eq(dynq__obj_kind(m.result), DYNQ_OBJ_NIL);
  char name[16];
  ck_assert_int_eq(dynq__obj_strcpy(dynq__obj_get(m.error, "name"), name, sizeof name), 0);
  ck_assert_str_eq(name, "ENOMODEL");
  int b = -1;
  ck_assert_int_eq(dynq__obj_bool(dynq__obj_get(m.error, "retryable"), &b), 0);
  ck_assert_int_eq(b, 0);
  ck_assert_int_eq(dynq__rpc_error(m.error, msg, sizeof msg), DYNQ_ENOMODEL);
  ck_assert_str_eq(msg, "no model named 'foo'");
  /* Truncated into a small buffer, still terminated. */
  ck_assert_int_eq(dynq__rpc_error(m.error, msg, 5), DYNQ_ENOMODEL);
  ck_assert_str_eq(msg, "no m");
  dynq__rpc_free(&m);

  dynq__wbuf_reset(&w);
  dynq__w_error_response(&w, 6, DYNQ_EOVERLOAD, NULL);
  parse_ok(&w, &m);
  ck_assert_int_eq(dynq__obj_bool(dynq__obj_get(m.error, "retryable"), &b), 0);
  ck_assert_int_eq(b, 1);
  ck_assert_int_eq(dynq__rpc_error(m.error, msg, sizeof msg), DYNQ_EOVERLOAD);
  ck_assert_str_eq(msg, dynq_strerror(DYNQ_EOVERLOAD));
  dynq__rpc_free(&m);

  dynq__wbuf_reset(&w);
  dynq__w_error_response(&w, 6, -ENOMEM, "");
  parse_ok(&w, &m);
  ck_assert_int_eq(dynq__rpc_error(m.error, msg, sizeof msg), -ENOMEM);
  dynq__rpc_free(&m);
  dynq__wbuf_free(&w);

  ck_assert_int_eq(error_of(er_errno_known, msg, sizeof msg), -ENOENT);
  ck_assert_str_eq(msg, "gone");
  ck_assert_int_eq(error_of(er_errno_other, msg, sizeof msg), -77);
  ck_assert_str_eq(msg, "odd");
  ck_assert_int_eq(error_of(er_errno_big, msg, sizeof msg), DYNQ_ESERVER);
  ck_assert_int_eq(error_of(er_errno_pos, msg, sizeof msg), DYNQ_ESERVER);
  ck_assert_int_eq(error_of(er_notstyle, msg, sizeof msg), DYNQ_ESERVER);
  ck_assert_int_eq(error_of(er_noname, msg, sizeof msg), DYNQ_ESERVER);
  ck_assert_str_eq(msg, "odd");
  /* The name decides, not the code. */
  ck_assert_int_eq(error_of(er_lying_code, msg, sizeof msg), DYNQ_ENOMODEL);
  ck_assert_str_eq(msg, dynq_strerror(DYNQ_ENOMODEL));
  ck_assert_int_eq(error_of(er_nomsg, msg, sizeof msg), DYNQ_EOVERLOAD);
  ck_assert_int_eq(error_of(er_errno_unknown, msg, sizeof msg), -1007);
  ck_assert_str_eq(msg, "Unknown error 1007");
  ck_assert_int_eq(error_of(er_string, msg, sizeof msg), DYNQ_ESERVER);
  ck_assert_str_eq(msg, "plain failure");
  ck_assert_int_eq(error_of(er_int, msg, sizeof msg), DYNQ_ESERVER);
  ck_assert(msg[0] != '\0');
  ck_assert_int_eq(error_of(er_name_int, NULL, 0), DYNQ_ESERVER);
}
END_TEST


/* ---- self-counting containers ---- */

START_TEST(test_w_selfcount_equals_hand) {
  /* Small maps come out byte for byte as the hand-counted header gives. */
  dynq__wbuf_t a, b;
  dynq__wbuf_init(&a);
  dynq__wbuf_init(&b);
  dynq__w_map(&a, 3);
  dynq__w_str(&a, "model");
  dynq__w_str(&a, "mlp");
  dynq__w_str(&a, "shape");
  dynq__w_array(&a, 2);
  dynq__w_int(&a, 1);
  dynq__w_int(&a, -5);
  dynq__w_str(&a, "inner");
  dynq__w_map(&a, 1);
  dynq__w_str(&a, "x");
  dynq__w_nil(&a);

  dynq__w_map_begin(&b);
  dynq__w_key(&b, "model");
  dynq__w_str(&b, "mlp");
  dynq__w_key(&b, "shape");
  dynq__w_array_begin(&b);
  dynq__w_int(&b, 1);
  dynq__w_int(&b, -5);
  dynq__w_array_end(&b);
  dynq__w_key(&b, "inner");
  dynq__w_map_begin(&b);
  dynq__w_key(&b, "x");
  dynq__w_nil(&b);
  dynq__w_map_end(&b);
  dynq__w_map_end(&b);
  ck_assert_int_eq(dynq__wbuf_status(&b), 0);
  ck_assert_uint_eq(a.len, b.len);
  ck_assert_mem_eq(a.data, b.data, a.len);
  dynq__wbuf_free(&a);
  dynq__wbuf_free(&b);
}
END_TEST

START_TEST(test_w_selfcount_sizes) {
  /* 0, 15, 16, 70000 entries: fixmap, map16, map32 headers; a body over
   * 64 KiB keeps its 5-byte header; all decode to the right counts. */
  static const uint32_t counts[] = {0, 15, 16, 70000};
  for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
    for (int map = 0; map <= 1; map++) {
      dynq__wbuf_t w;
      dynq__wbuf_init(&w);
      dynq__w_request_head(&w, 7, "m");
      if (map) dynq__w_map_begin(&w);
      else dynq__w_array_begin(&w);
      for (uint32_t i = 0; i < counts[k]; i++) {
        if (map) dynq__w_uint(&w, i);
        dynq__w_uint(&w, i);
      }
      if (map) dynq__w_map_end(&w);
      else dynq__w_array_end(&w);
      ck_assert_int_eq(dynq__wbuf_status(&w), 0);
      size_t n;
      dynq__scan_limits_t l = mklim(1 << 24, 8, 1 << 20);
      ck_assert_int_eq(dynq__mp_scan(w.data, w.len, &l, &n), 0);
      ck_assert_uint_eq(n, w.len);
      dynq__rpc_msg_t m;
      char err[128];
      /* params [x] with one map unwraps, so look at a bare array too */
      ck_assert_int_eq(dynq__rpc_parse(w.data, w.len, &m, NULL, err, sizeof err), 0);
      if (map) {
        ck_assert_int_eq(dynq__obj_kind(m.params), DYNQ_OBJ_MAP);
        ck_assert_uint_eq(dynq__obj_len(m.params), counts[k]);
      } else if (counts[k] > 0) {
        ck_assert_int_eq(dynq__obj_kind(m.params), DYNQ_OBJ_ARRAY);
        ck_assert_uint_eq(dynq__obj_len(m.params), counts[k]);
      }
      dynq__rpc_free(&m);
      dynq__wbuf_free(&w);
    }
  }
}
END_TEST

START_TEST(test_w_selfcount_nested_tensor) {
  /* A tensor (fixed 3-entry map with a fixed shape array) inside nested
   * self-counting maps is counted as one value. */
  float x[4] = {1, 2, 3, 4};
  dynq__tensor_t t;
  memset(&t, 0, sizeof t);
  t.dtype = DYNQ_DT_F32;
  t.rank = 2;
  t.dims[0] = 2;
  t.dims[1] = 2;
  t.data = x;
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 1, "infer");
  dynq__w_map_begin(&w);
  dynq__w_key(&w, "inputs");
  dynq__w_map_begin(&w);
  dynq__w_key(&w, "x");
  dynq__w_tensor(&w, &t);
  dynq__w_key(&w, "y");
  dynq__w_tensor(&w, &t);
  dynq__w_map_end(&w);
  dynq__w_key(&w, "model");
  dynq__w_str(&w, "mlp");
  dynq__w_map_end(&w);
  ck_assert_int_eq(dynq__wbuf_status(&w), 0);
  dynq__rpc_msg_t m;
  char err[128];
  ck_assert_int_eq(dynq__rpc_parse(w.data, w.len, &m, NULL, err, sizeof err), 0);
  ck_assert_uint_eq(dynq__obj_len(m.params), 2);
  ck_assert_uint_eq(dynq__obj_len(dynq__obj_get(m.params, "inputs")), 2);
  const char *s;
  size_t n;
  ck_assert_int_eq(dynq__obj_str(dynq__obj_get(m.params, "model"), &s, &n), 0);
  ck_assert_uint_eq(n, 3);
  dynq__tensor_t back;
  ck_assert_int_eq(dynq__obj_tensor(dynq__obj_get(dynq__obj_get(m.params, "inputs"), "y"),
                                    NULL, &back, err, sizeof err), 0);
  ck_assert_mem_eq(back.data, x, sizeof x);
  dynq__tensor_clear(&back);
  dynq__rpc_free(&m);
  dynq__wbuf_free(&w);
}
END_TEST

START_TEST(test_w_selfcount_mismatch) {
  dynq__wbuf_t w;
  /* _end with nothing open */
  dynq__wbuf_init(&w);
  dynq__w_map_end(&w);
  ck_assert_int_eq(w.err, DYNQ_EINTERNAL);
  dynq__wbuf_free(&w);
  /* a key without its value */
  dynq__wbuf_init(&w);
  dynq__w_map_begin(&w);
  dynq__w_key(&w, "k");
  dynq__w_map_end(&w);
  ck_assert_int_eq(dynq__wbuf_status(&w), DYNQ_EINTERNAL);
  dynq__wbuf_free(&w);
  /* the other kind */
  dynq__wbuf_init(&w);
  dynq__w_map_begin(&w);
  dynq__w_array_end(&w);
  ck_assert_int_eq(dynq__wbuf_status(&w), DYNQ_EINTERNAL);
  dynq__wbuf_free(&w);
  /* a fixed container left short inside */
  dynq__wbuf_init(&w);
  dynq__w_array_begin(&w);
  dynq__w_array(&w, 2);
  dynq__w_int(&w, 1);
  dynq__w_array_end(&w);
  ck_assert_int_eq(dynq__wbuf_status(&w), DYNQ_EINTERNAL);
  dynq__wbuf_free(&w);
  /* still open when the caller would send */
  dynq__wbuf_init(&w);
  dynq__w_map_begin(&w);
  ck_assert_int_eq(w.err, 0);
  ck_assert_int_eq(dynq__wbuf_status(&w), DYNQ_EINTERNAL);
  dynq__wbuf_reset(&w);
  ck_assert_int_eq(dynq__wbuf_status(&w), 0);
  dynq__wbuf_free(&w);
  /* deeper than the writer tracks */
  dynq__wbuf_init(&w);
  for (int i = 0; i < DYNQ__WBUF_NEST + 1; i++) dynq__w_array_begin(&w);
  ck_assert_int_eq(w.err, DYNQ_EINTERNAL);
  dynq__wbuf_free(&w);
  /* exactly full fixed containers close themselves */
  dynq__wbuf_init(&w);
  dynq__w_array_begin(&w);
  dynq__w_map(&w, 0);
  dynq__w_array(&w, 1);
  dynq__w_array(&w, 1);
  dynq__w_nil(&w);
  dynq__w_int(&w, 3);
  dynq__w_array_end(&w);
  ck_assert_int_eq(dynq__wbuf_status(&w), 0);
  static const uint8_t want[] = {0x93, 0x80, 0x91, 0x91, 0xc0, 0x03};
  ck_assert_uint_eq(w.len, sizeof want);
  ck_assert_mem_eq(w.data, want, sizeof want);
  dynq__wbuf_free(&w);
}
END_TEST

/* ---- framer ---- */

/* n small requests back to back; their total length. */
static void w_requests(dynq__wbuf_t *w, int n) {
  for (int i = 0; i < n; i++) {
    dynq__w_request_head(w, (uint32_t)i + 1, "ping");
    dynq__w_map_begin(w);
    dynq__w_key(w, "i");
    dynq__w_int(w, i);
    dynq__w_map_end(w);
  }
  ck_assert_int_eq(dynq__wbuf_status(w), 0);
}

static void expect_frames(dynq__framer_t *f, int *next_id) {
  const uint8_t *p;
  size_t n;
  int rc;
  while ((rc = dynq__framer_next(f, &p, &n)) == 1) {
    dynq__rpc_msg_t m;
    char err[128];
    ck_assert_int_eq(dynq__rpc_parse(p, n, &m, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(m.msgid, (uint32_t)*next_id);
    (*next_id)++;
    dynq__rpc_free(&m);
  }
  ck_assert_int_eq(rc, 0);
}

START_TEST(test_framer_many_and_partial) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  w_requests(&w, 50);
  /* all at once */
  dynq__framer_t f;
  dynq__framer_init(&f, NULL);
  int id = 1;
  ck_assert_int_eq(dynq__framer_push(&f, w.data, w.len), 0);
  expect_frames(&f, &id);
  ck_assert_int_eq(id, 51);
  ck_assert_uint_eq(dynq__framer_pending(&f), 0);
  /* one byte at a time, through _space/_commit */
  id = 1;
  for (size_t i = 0; i < w.len; i++) {
    uint8_t *dst;
    size_t room;
    ck_assert_int_eq(dynq__framer_space(&f, 1, &dst, &room), 0);
    ck_assert_uint_ge(room, 1);
    *dst = w.data[i];
    dynq__framer_commit(&f, 1);
    expect_frames(&f, &id);
  }
  ck_assert_int_eq(id, 51);
  /* odd chunks that split frames anywhere */
  id = 1;
  for (size_t i = 0; i < w.len; i += 7) {
    size_t n = w.len - i < 7 ? w.len - i : 7;
    ck_assert_int_eq(dynq__framer_push(&f, w.data + i, n), 0);
    expect_frames(&f, &id);
  }
  ck_assert_int_eq(id, 51);
  /* discard drops a half frame */
  ck_assert_int_eq(dynq__framer_push(&f, w.data, 3), 0);
  ck_assert_uint_eq(dynq__framer_pending(&f), 3);
  dynq__framer_discard(&f);
  ck_assert_uint_eq(dynq__framer_pending(&f), 0);
  id = 1;
  ck_assert_int_eq(dynq__framer_push(&f, w.data, w.len), 0);
  expect_frames(&f, &id);
  ck_assert_int_eq(id, 51);
  dynq__framer_free(&f);
  dynq__framer_free(&f);  /* twice is harmless */
  dynq__wbuf_free(&w);
}
END_TEST

START_TEST(test_framer_refusals) {
  const uint8_t *p;
  size_t n;
  dynq__framer_t f;
  /* a byte that is not msgpack: error, and it sticks */
  dynq__framer_init(&f, NULL);
  static const uint8_t bad[] = {0x91, 0xc1};
  ck_assert_int_eq(dynq__framer_push(&f, bad, sizeof bad), 0);
  ck_assert_int_eq(dynq__framer_next(&f, &p, &n), DYNQ_EPROTO);
  ck_assert_int_eq(dynq__framer_next(&f, &p, &n), DYNQ_EPROTO);
  ck_assert_int_eq(dynq__framer_push(&f, bad, 1), DYNQ_EPROTO);
  uint8_t *dst;
  ck_assert_int_eq(dynq__framer_space(&f, 1, &dst, &n), DYNQ_EPROTO);
  dynq__framer_free(&f);
  /* a bin header declaring more than max_frame: refused from its header,
   * before the payload arrives */
  dynq__scan_limits_t l = mklim(1000, 8, 100);
  dynq__framer_init(&f, &l);
  static const uint8_t big[] = {0xc6, 0x00, 0x01, 0x00, 0x00};
  ck_assert_int_eq(dynq__framer_push(&f, big, sizeof big), 0);
  ck_assert_int_eq(dynq__framer_next(&f, &p, &n), DYNQ_ETOOBIG);
  dynq__framer_free(&f);
  /* the buffer stays within max_frame plus one read while a frame fills */
  dynq__framer_init(&f, &l);
  static const uint8_t bin900[] = {0xc5, 0x03, 0x84};
  ck_assert_int_eq(dynq__framer_push(&f, bin900, sizeof bin900), 0);
  for (int i = 0; i < 899; i++) {
    uint8_t z = 0;
    ck_assert_int_eq(dynq__framer_push(&f, &z, 1), 0);
    ck_assert_int_eq(dynq__framer_next(&f, &p, &n), 0);
  }
  ck_assert_uint_le(f.cap, 1000 + sizeof bin900);
  uint8_t z = 0;
  ck_assert_int_eq(dynq__framer_push(&f, &z, 1), 0);
  ck_assert_int_eq(dynq__framer_next(&f, &p, &n), 1);
  ck_assert_uint_eq(n, 903);
  ck_assert_int_eq(dynq__framer_next(&f, &p, &n), 0);
  dynq__framer_free(&f);
}
END_TEST

/* A parked frame comes out again, whole and in order, also after more
 * bytes arrived behind it and the buffer moved. */
START_TEST(test_framer_hold) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  w_requests(&w, 3);
  dynq__framer_t f;
  dynq__framer_init(&f, NULL);
  const uint8_t *p, *p2;
  size_t n, n2;
  dynq__framer_hold(&f);  /* nothing out: no-op */
  ck_assert_int_eq(dynq__framer_push(&f, w.data, w.len - 1), 0);
  ck_assert_int_eq(dynq__framer_next(&f, &p, &n), 1);
  size_t pend = dynq__framer_pending(&f);
  dynq__framer_hold(&f);
  ck_assert_uint_eq(dynq__framer_pending(&f), pend + n);
  ck_assert_int_eq(dynq__framer_next(&f, &p2, &n2), 1);
  ck_assert_ptr_eq(p2, p);
  ck_assert_uint_eq(n2, n);
  dynq__framer_hold(&f);
  /* more bytes while it is parked (_space may slide or grow the buffer) */
  uint8_t *dst;
  size_t room;
  ck_assert_int_eq(dynq__framer_space(&f, 1 << 20, &dst, &room), 0);
  *dst = w.data[w.len - 1];
  dynq__framer_commit(&f, 1);
  int id = 1;
  expect_frames(&f, &id);
  ck_assert_int_eq(id, 4);
  ck_assert_uint_eq(dynq__framer_pending(&f), 0);
  dynq__framer_free(&f);
  dynq__wbuf_free(&w);
}
END_TEST

/* ---- method schema: decoder and encoder ---- */

/* Decode the params of a request frame built in w. */
static int decode_w(dynq__wbuf_t *w, dynq__params_t *p, char *err, size_t errlen) {
  dynq__rpc_msg_t m;
  char perr[128];
  ck_assert_int_eq(dynq__wbuf_status(w), 0);
  ck_assert_int_eq(dynq__rpc_parse(w->data, w->len, &m, NULL, perr, sizeof perr), 0);
  const dynq__method_t *md = dynq__method_find(m.method);
  ck_assert_ptr_nonnull(md);
  int rc = dynq__params_decode(md, m.params, p, err, errlen);
  /* strings are borrowed from the message: tests look at them before
   * freeing by copying the struct's scalars only */
  dynq__rpc_free(&m);
  return rc;
}

static void w_bindings(dynq__wbuf_t *w, const void *ctx) {
  (void)ctx;
  dynq__w_map_begin(w);
  dynq__w_key(w, "state");
  dynq__w_str(w, "stateN");
  dynq__w_map_end(w);
}

START_TEST(test_methods_table) {
  ck_assert_ptr_null(dynq__method_find("nope"));
  ck_assert_ptr_null(dynq__method_find(NULL));
  for (int i = 0; i < DYNQ_M__COUNT; i++) {
    const dynq__method_t *md = &dynq__methods[i];
    ck_assert_int_eq(md->id, i);
    ck_assert_ptr_eq(dynq__method_find(md->name), md);
    ck_assert_uint_ge(md->struct_size, sizeof(int));
    for (int k = 0; k < md->n_params; k++) {
      ck_assert_ptr_nonnull(md->params[k].name);
      ck_assert_ptr_nonnull(md->params[k].what);
      ck_assert_int_le(md->params[k].min, md->params[k].max);
    }
    ck_assert_ptr_null(md->params[md->n_params].name);
    ck_assert_ptr_null(md->results[md->n_results]);
  }
  ck_assert_int_eq(dynq__methods[DYNQ_M_infer].n_params, 6);
  ck_assert(dynq__methods[DYNQ_M_model_load].flags & DYNQ_MF_ADMIN);
  ck_assert(!(dynq__methods[DYNQ_M_infer].flags & DYNQ_MF_ADMIN));
}
END_TEST

START_TEST(test_params_roundtrip) {
  dynq__wbuf_t w;
  dynq__params_t p;
  char err[256];
  /* session.open with every field */
  dynq__p_session_open_t so;
  memset(&so, 0, sizeof so);
  so.model = dynq__pstr("vad");
  so.has_model = 1;
  so.bindings.write = w_bindings;
  so.has_bindings = 1;
  so.detached = 1;
  so.has_detached = 1;
  so.idle_timeout_ms = 5000;
  so.has_idle_timeout_ms = 1;
  dynq__wbuf_init(&w);
  dynq__w_request(&w, 9, DYNQ_M_session_open, &so);
  ck_assert_int_eq(decode_w(&w, &p, err, sizeof err), 0);
  ck_assert_int_eq(p.session_open.n_given, 4);
  ck_assert(p.session_open.has_model && p.session_open.has_bindings);
  ck_assert_int_eq(p.session_open.detached, 1);
  ck_assert_uint_eq(p.session_open.idle_timeout_ms, 5000);
  ck_assert_uint_eq(p.session_open.model.n, 3);
  dynq__wbuf_free(&w);
  /* optional fields left out are absent, not zero-valued-present */
  dynq__p_infer_t in;
  memset(&in, 0, sizeof in);
  in.model = dynq__pstr("mlp");
  in.has_model = 1;
  in.inputs.write = w_bindings;  /* any map will do here */
  in.has_inputs = 1;
  in.timeout_ms = 0;
  in.has_timeout_ms = 1;
  dynq__wbuf_init(&w);
  dynq__w_request(&w, 1, DYNQ_M_infer, &in);
  ck_assert_int_eq(decode_w(&w, &p, err, sizeof err), 0);
  ck_assert_int_eq(p.infer.n_given, 3);
  ck_assert(p.infer.has_timeout_ms && !p.infer.has_session && !p.infer.has_precision);
  ck_assert_uint_eq(p.infer.timeout_ms, 0);
  dynq__wbuf_free(&w);
  /* no params at all: an empty map on the wire */
  dynq__wbuf_init(&w);
  dynq__w_request(&w, 2, DYNQ_M_ping, NULL);
  ck_assert_int_eq(decode_w(&w, &p, err, sizeof err), 0);
  static const uint8_t want[] = {0x94, 0x00, 0x02, 0xa4, 'p', 'i', 'n', 'g', 0x80};
  ck_assert_uint_eq(w.len, sizeof want);
  ck_assert_mem_eq(w.data, want, sizeof want);
  dynq__wbuf_free(&w);
  /* a MAP param without a writer poisons the buffer */
  memset(&in, 0, sizeof in);
  in.has_inputs = 1;
  dynq__wbuf_init(&w);
  dynq__w_request(&w, 3, DYNQ_M_infer, &in);
  ck_assert_int_eq(dynq__wbuf_status(&w), DYNQ_EINTERNAL);
  dynq__wbuf_free(&w);
}
END_TEST

/* Build [0, 1, method, <params written by fn>] and decode it. */
typedef void (*params_fn)(dynq__wbuf_t *w);
static int decode_raw(const char *method, params_fn fn, char *err, size_t errlen) {
  dynq__wbuf_t w;
  dynq__params_t p;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 1, method);
  fn(&w);
  int rc = decode_w(&w, &p, err, errlen);
  dynq__wbuf_free(&w);
  return rc;
}

static void pf_nil(dynq__wbuf_t *w) { dynq__w_nil(w); }
static void pf_empty_array(dynq__wbuf_t *w) { dynq__w_array(w, 0); }
static void pf_int(dynq__wbuf_t *w) { dynq__w_int(w, 5); }
static void pf_two_maps(dynq__wbuf_t *w) {
  dynq__w_array(w, 2);
  dynq__w_map(w, 0);
  dynq__w_map(w, 0);
}
static void pf_wrapped_model(dynq__wbuf_t *w) {
  dynq__w_array(w, 1);
  dynq__w_map(w, 2);
  dynq__w_key(w, "model");
  dynq__w_str(w, "mlp");
  dynq__w_key(w, "unknown_key");
  dynq__w_int(w, 1);
}
static void pf_timeout_str(dynq__wbuf_t *w) {
  dynq__w_map(w, 2);
  dynq__w_key(w, "inputs");
  dynq__w_map(w, 0);
  dynq__w_key(w, "timeout_ms");
  dynq__w_str(w, "5");
}
static void pf_timeout_neg(dynq__wbuf_t *w) {
  dynq__w_map(w, 2);
  dynq__w_key(w, "inputs");
  dynq__w_map(w, 0);
  dynq__w_key(w, "timeout_ms");
  dynq__w_int(w, -1);
}
static void pf_inputs_nil(dynq__wbuf_t *w) {
  dynq__w_map(w, 2);
  dynq__w_key(w, "inputs");
  dynq__w_nil(w);
  dynq__w_key(w, "precision");
  dynq__w_nil(w);
}
static void pf_long_name(dynq__wbuf_t *w) {
  dynq__w_map(w, 1);
  dynq__w_key(w, "model");
  dynq__w_str(w, "0123456789012345678901234567890123456789012345678901234567890123");
}
static void pf_nul_name(dynq__wbuf_t *w) {
  dynq__w_map(w, 1);
  dynq__w_key(w, "model");
  dynq__w_strn(w, "a\0b", 3);
}
static void pf_idle_zero(dynq__wbuf_t *w) {
  dynq__w_map(w, 2);
  dynq__w_key(w, "model");
  dynq__w_str(w, "vad");
  dynq__w_key(w, "idle_timeout_ms");
  dynq__w_uint(w, 0);
}
static void pf_size_float(dynq__wbuf_t *w) {
  dynq__w_map(w, 1);
  dynq__w_key(w, "size");
  dynq__w_double(w, 1.5);
}

START_TEST(test_params_rule_and_errors) {
  char err[256];
  /* the params rule: nil, [], [map] pass */
  ck_assert_int_eq(decode_raw("ping", pf_nil, err, sizeof err), 0);
  ck_assert_int_eq(decode_raw("server.info", pf_empty_array, err, sizeof err), 0);
  ck_assert_int_eq(decode_raw("model.info", pf_wrapped_model, err, sizeof err), 0);
  /* anything else does not, naming the method */
  ck_assert_int_eq(decode_raw("models.list", pf_int, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_str_eq(err, "models.list: params must be a map (or an array holding one "
                        "map), got an integer");
  ck_assert_int_eq(decode_raw("ping", pf_two_maps, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(err, "got an array"));
  /* ... except for methods that ignore their params */
  ck_assert_int_eq(decode_raw("stats", pf_int, err, sizeof err), 0);
  ck_assert_int_eq(decode_raw("health.live", pf_two_maps, err, sizeof err), 0);
  /* required, absent or nil */
  ck_assert_int_eq(decode_raw("model.info", pf_nil, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_str_eq(err, "model.info: params.model must be a string naming a model, "
                        "got nothing");
  ck_assert_int_eq(decode_raw("infer", pf_inputs_nil, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_str_eq(err, "infer: params.inputs must be a map of input name -> tensor, "
                        "got nil");
  /* wrong kind, out of bounds */
  ck_assert_int_eq(decode_raw("infer", pf_timeout_str, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_str_eq(err, "infer: params.timeout_ms must be a non-negative integer "
                        "(milliseconds), got a string");
  ck_assert_int_eq(decode_raw("infer", pf_timeout_neg, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_str_eq(err, "infer: params.timeout_ms must be a non-negative integer "
                        "(milliseconds), got -1");
  ck_assert_int_eq(decode_raw("session.open", pf_idle_zero, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(err, "params.idle_timeout_ms must be a positive integer"));
  ck_assert_int_eq(decode_raw("shm.register", pf_size_float, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(err, "shm.register: params.size"));
  /* bounded strings: length and NUL */
  ck_assert_int_eq(decode_raw("model.load", pf_long_name, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(err, "model.load: params.model must be a model name"));
  ck_assert_ptr_nonnull(strstr(err, "got 64 bytes"));
  ck_assert_int_eq(decode_raw("model.unload", pf_nul_name, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(err, "holding a NUL"));
  /* unbounded strings are the method's to judge */
  ck_assert_int_eq(decode_raw("model.info", pf_long_name, err, sizeof err), 0);
  ck_assert_int_eq(decode_raw("model.info", pf_nul_name, err, sizeof err), 0);
}
END_TEST

START_TEST(test_obj_uint_full_range) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 1, "m");
  dynq__w_array(&w, 3);
  dynq__w_uint(&w, UINT64_MAX);
  dynq__w_int(&w, -1);
  dynq__w_str(&w, "7");
  dynq__rpc_msg_t m;
  char err[64];
  ck_assert_int_eq(dynq__rpc_parse(w.data, w.len, &m, NULL, err, sizeof err), 0);
  uint64_t u = 0;
  int64_t i;
  ck_assert_int_eq(dynq__obj_uint(dynq__obj_at(m.params, 0), &u), 0);
  ck_assert(u == UINT64_MAX);
  ck_assert_int_eq(dynq__obj_int(dynq__obj_at(m.params, 0), &i), DYNQ_EPARAMS);
  ck_assert_int_eq(dynq__obj_uint(dynq__obj_at(m.params, 1), &u), DYNQ_EPARAMS);
  ck_assert_int_eq(dynq__obj_uint(dynq__obj_at(m.params, 2), &u), DYNQ_EPARAMS);
  ck_assert_int_eq(dynq__obj_uint(dynq__obj_at(m.params, 3), &u), DYNQ_EPARAMS);
  dynq__rpc_free(&m);
  dynq__wbuf_free(&w);
}
END_TEST

START_TEST(test_non_utf8_strings_never_echoed) {
  /* error as a bare string, and a tensor dtype, that are not UTF-8 */
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_array(&w, 4);
  dynq__w_uint(&w, 1);
  dynq__w_uint(&w, 1);
  dynq__w_strn(&w, "\xff\xfe", 2);
  dynq__w_map(&w, 3);
  dynq__w_key(&w, "dtype");
  dynq__w_strn(&w, "\xc3\x28", 2);
  dynq__w_key(&w, "shape");
  dynq__w_array(&w, 0);
  dynq__w_key(&w, "data");
  dynq__w_bin(&w, "abcd", 4);
  dynq__rpc_msg_t m;
  char err[128];
  ck_assert_int_eq(dynq__rpc_parse(w.data, w.len, &m, NULL, err, sizeof err), 0);
  ck_assert_int_eq(dynq__rpc_error(m.error, err, sizeof err), DYNQ_ESERVER);
  ck_assert_str_eq(err, "server sent an error string that is not valid UTF-8");
  dynq__tensor_t t;
  ck_assert_int_eq(dynq__obj_tensor(m.result, NULL, &t, err, sizeof err), DYNQ_EPARAMS);
  ck_assert_str_eq(err, "tensor field 'dtype' is not valid UTF-8");
  dynq__rpc_free(&m);
  dynq__wbuf_free(&w);
}
END_TEST

START_TEST(test_echo_quotes_names_whole) {
  char buf[16];
  /* a NUL shows as \0 instead of ending the name */
  ck_assert_str_eq(dynq__echo(buf, sizeof buf, "lin\0x", 5, 64), "lin\\0x");
  ck_assert_str_eq(dynq__echo(buf, sizeof buf, "", 0, 64), "");
  /* max cuts at a character boundary: 'e' then a 2-byte e-acute at 1..2 */
  ck_assert_str_eq(dynq__echo(buf, sizeof buf, "e\xc3\xa9z", 4, 2), "e...");
  ck_assert_str_eq(dynq__echo(buf, sizeof buf, "e\xc3\xa9z", 4, 3), "e\xc3\xa9...");
  /* so does the buffer: 12 bytes of room, the 2-byte character at 11..12 */
  ck_assert_str_eq(dynq__echo(buf, sizeof buf, "abcdefghijk\xc3\xa9", 13, 64),
                   "abcdefghijk...");
  ck_assert_str_eq(dynq__echo(buf, sizeof buf, "\0\0\0\0\0\0\0", 7, 64), "\\0\\0\\0\\0\\0\\0...");
}
END_TEST

START_TEST(test_pstr_helpers) {
  char buf[4];
  ck_assert_int_eq(dynq__pstr_copy(dynq__pstr("abc"), buf, sizeof buf), 0);
  ck_assert_str_eq(buf, "abc");
  ck_assert_int_eq(dynq__pstr_copy(dynq__pstr("abcd"), buf, sizeof buf), DYNQ_EPARAMS);
  dynq__pstr_t nul = {"a\0b", 3};
  ck_assert_int_eq(dynq__pstr_copy(nul, buf, sizeof buf), DYNQ_EPARAMS);
  ck_assert_int_eq(dynq__pstr_copy(dynq__pstr(""), buf, sizeof buf), 0);
  ck_assert_str_eq(buf, "");
  ck_assert(dynq__pstr_eq(dynq__pstr("int8"), "int8"));
  ck_assert(!dynq__pstr_eq(dynq__pstr("int"), "int8"));
  ck_assert_str_eq(dynq__obj_kind_name(DYNQ_OBJ_MAP), "a map");
}
END_TEST


/* ---- the protocol doc matches the schema ----
 *
 * docs/PROTOCOL.md has one section per method: a line "### `name`", a
 * params table whose rows start "| `param` | kind | yes/no |", and a line
 * "result fields: `a`, `b`, ..." (possibly wrapped, ended by a blank line).
 * doc_check() compares that with methods.def both ways. */

static const char *kind_word(dynq__pkind_t k) {
  switch (k) {
  case DYNQ_PK_STR: return "string";
  case DYNQ_PK_UINT: return "uint";
  case DYNQ_PK_INT: return "int";
  case DYNQ_PK_BOOL: return "bool";
  case DYNQ_PK_FLOAT: return "float";
  case DYNQ_PK_MAP: return "map";
  case DYNQ_PK_ARRAY: return "array";
  }
  return "?";
}

typedef struct doc_problems {
  int n;
  char first[512];
} doc_problems_t;

__attribute__((format(printf, 2, 3)))
static void problem(doc_problems_t *pr, const char *fmt, ...) {
  if (pr->n++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pr->first, sizeof pr->first, fmt, ap);
    va_end(ap);
  }
}

/* The section of method `name`: [*ret_b, *ret_e); how many there are. */
static int doc_section(const char *doc, const char *name, const char **ret_b,
                       const char **ret_e) {
  char head[96];
  int n = 0;
  snprintf(head, sizeof head, "\n### `%s`", name);
  for (const char *p = strstr(doc, head); p != NULL; p = strstr(p + 1, head)) {
    const char *after = p + strlen(head);
    if (*after != '\n' && *after != ' ') continue;  /* `model.info` vs `model` */
    const char *e = strstr(after, "\n#");
    *ret_b = after;
    *ret_e = e != NULL ? e : after + strlen(after);
    n++;
  }
  return n;
}

/* Backticked words of the "result fields:" paragraph in [b, e). */
static int doc_results(const char *b, const char *e, char names[][48], int cap) {
  const char *p = strstr(b, "result fields:");
  if (p == NULL || p >= e) return -1;
  const char *end = strstr(p, "\n\n");
  if (end == NULL || end > e) end = e;
  int n = 0;
  for (p += strlen("result fields:"); p < end; p++) {
    if (*p != '`') continue;
    const char *q = memchr(p + 1, '`', (size_t)(end - p - 1));
    if (q == NULL) break;
    if (n < cap && (size_t)(q - p - 1) < 48) {
      memcpy(names[n], p + 1, (size_t)(q - p - 1));
      names[n][q - p - 1] = '\0';
      n++;
    }
    p = q;
  }
  return n;
}

static void doc_check(const char *doc, doc_problems_t *pr) {
  memset(pr, 0, sizeof *pr);
  for (int i = 0; i < DYNQ_M__COUNT; i++) {
    const dynq__method_t *md = &dynq__methods[i];
    const char *b, *e;
    int ns = doc_section(doc, md->name, &b, &e);
    if (ns != 1) {
      problem(pr, "method %s has %d sections (want 1)", md->name, ns);
      continue;
    }
    /* params: schema -> doc */
    for (int k = 0; k < md->n_params; k++) {
      const dynq__param_desc_t *pd = &md->params[k];
      char row[160];
      snprintf(row, sizeof row, "\n| `%s` | %s | %s |", pd->name, kind_word(pd->kind),
               pd->required ? "yes" : "no");
      const char *at = strstr(b, row);
      if (at == NULL || at >= e)
        problem(pr, "%s: param %s (%s, %s) is not documented as \"%s\"", md->name,
                pd->name, kind_word(pd->kind), pd->required ? "required" : "optional",
                row + 1);
    }
    /* params: doc -> schema */
    for (const char *p = b; (p = strstr(p, "\n| `")) != NULL && p < e; p++) {
      char pname[64];
      if (sscanf(p, "\n| `%63[a-z_0-9]`", pname) != 1) continue;
      int found = 0;
      for (int k = 0; k < md->n_params; k++) found |= strcmp(md->params[k].name, pname) == 0;
      if (!found) problem(pr, "%s: the doc has a param %s the schema lacks", md->name, pname);
    }
    /* results, both ways */
    char names[64][48];
    int nr = doc_results(b, e, names, 64);
    if (nr < 0) {
      problem(pr, "%s: no \"result fields:\" line", md->name);
      continue;
    }
    for (int k = 0; k < md->n_results; k++) {
      int found = 0;
      for (int q = 0; q < nr; q++) found |= strcmp(names[q], md->results[k]) == 0;
      if (!found) problem(pr, "%s: result field %s is not documented", md->name,
                          md->results[k]);
    }
    for (int q = 0; q < nr; q++) {
      int found = 0;
      for (int k = 0; k < md->n_results; k++) found |= strcmp(names[q], md->results[k]) == 0;
      if (!found) problem(pr, "%s: the doc has a result field %s the schema lacks",
                          md->name, names[q]);
    }
  }
  /* sections naming methods the schema lacks */
  for (const char *p = strstr(doc, "\n### `"); p != NULL; p = strstr(p + 1, "\n### `")) {
    char name[64];
    if (sscanf(p, "\n### `%63[a-z_.0-9]`", name) != 1) continue;
    if (dynq__method_find(name) == NULL)
      problem(pr, "the doc documents a method %s the schema lacks", name);
  }
}

static char *read_doc(void) {
  FILE *f = fopen(tu_src("docs/PROTOCOL.md"), "rb");
  ck_assert_msg(f != NULL, "cannot open docs/PROTOCOL.md");
  char *buf = malloc(1 << 20);
  ck_assert_ptr_nonnull(buf);
  buf[0] = '\n';  /* so a heading on the first line matches "\n### " too */
  size_t n = fread(buf + 1, 1, (1 << 20) - 2, f);
  fclose(f);
  buf[n + 1] = '\0';
  return buf;
}

/* Replace the first occurrence of from in doc by to (in place, to no
 * longer than from, or into spare room: the buffer is 1 MiB). */
static void doc_edit(char *doc, const char *from, const char *to) {
  char *p = strstr(doc, from);
  ck_assert_msg(p != NULL, "test fixture: '%s' not in PROTOCOL.md", from);
  size_t fl = strlen(from), tl = strlen(to);
  memmove(p + tl, p + fl, strlen(p + fl) + 1);
  memcpy(p, to, tl);
}

START_TEST(test_protocol_doc_matches_schema) {
  char *doc = read_doc();
  doc_problems_t pr;
  doc_check(doc, &pr);
  ck_assert_msg(pr.n == 0, "docs/PROTOCOL.md disagrees with lib/proto/methods.def "
                "(%d problems), first: %s", pr.n, pr.first);
  free(doc);
}
END_TEST

START_TEST(test_protocol_doc_check_catches_drift) {
  /* Each edit below must make the check fail: it cannot pass vacuously. */
  static const char *const edits[][2] = {
    {"| `timeout_ms` | uint | no |", "| `timeout_ms` | int | no |"},
    {"| `timeout_ms` | uint | no |", "| `timeout_ms` | uint | yes |"},
    {"| `idle_timeout_ms` |", "| `idle_timeout` |"},
    {"`inline_total`, ", ""},
    {"`reason`.", "`reason`, `version`."},
    {"### `shm.unregister`", "### `shm.forget`"},
    {"### `ping`\n", "### `ping`\n| `extra` | bool | no | x |\n"},
  };
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    char *doc = read_doc();
    doc_edit(doc, edits[i][0], edits[i][1]);
    doc_problems_t pr;
    doc_check(doc, &pr);
    ck_assert_msg(pr.n > 0, "edit %zu ('%s' -> '%s') went unnoticed", i, edits[i][0],
                  edits[i][1]);
    free(doc);
  }
}
END_TEST

static Suite *proto_suite(void) {
  Suite *s = suite_create("proto");
  TCase *tc = tcase_create("scan");
  tcase_add_test(tc, test_scan_writer_scalars);
  tcase_add_test(tc, test_scan_writer_sized);
  tcase_add_test(tc, test_scan_every_first_byte);
  tcase_add_test(tc, test_scan_hand_frames);
  tcase_add_test(tc, test_scan_prefixes_request);
  tcase_add_test(tc, test_scan_invalid_byte);
  tcase_add_test(tc, test_scan_depth);
  tcase_add_test(tc, test_scan_huge_counts);
  tcase_add_test(tc, test_scan_elem_budget);
  tcase_add_test(tc, test_scan_huge_lengths);
  tcase_add_test(tc, test_scan_frame_limit);
  tcase_add_test(tc, test_scan_fuzz);
  suite_add_tcase(s, tc);

  tc = tcase_create("writer");
  tcase_add_test(tc, test_wbuf_basics);
  tcase_add_test(tc, test_w_tensor_invalid);
  tcase_add_test(tc, test_w_tensor_head);
  tcase_add_test(tc, test_wtensor_view);
  tcase_add_test(tc, test_w_selfcount_equals_hand);
  tcase_add_test(tc, test_w_selfcount_sizes);
  tcase_add_test(tc, test_w_selfcount_nested_tensor);
  tcase_add_test(tc, test_w_selfcount_mismatch);
  tcase_add_test(tc, test_framer_many_and_partial);
  tcase_add_test(tc, test_framer_refusals);
  tcase_add_test(tc, test_framer_hold);
  suite_add_tcase(s, tc);

  tc = tcase_create("methods");
  tcase_add_test(tc, test_methods_table);
  tcase_add_test(tc, test_params_roundtrip);
  tcase_add_test(tc, test_params_rule_and_errors);
  tcase_add_test(tc, test_pstr_helpers);
  tcase_add_test(tc, test_echo_quotes_names_whole);
  tcase_add_test(tc, test_obj_uint_full_range);
  tcase_add_test(tc, test_non_utf8_strings_never_echoed);
  tcase_add_test(tc, test_protocol_doc_matches_schema);
  tcase_add_test(tc, test_protocol_doc_check_catches_drift);
  suite_add_tcase(s, tc);

  tc = tcase_create("reader");
  tcase_add_test(tc, test_roundtrip_types);
  tcase_add_test(tc, test_roundtrip_hand_types);
  tcase_add_test(tc, test_obj_lookup);
  tcase_add_test(tc, test_decode_every_format);
  tcase_add_test(tc, test_roundtrip_tensors);
  tcase_add_test(tc, test_tensor_refusals);
  tcase_add_test(tc, test_rpc_envelope_refusals);
  tcase_add_test(tc, test_rpc_bad_bytes);
  tcase_add_test(tc, test_rpc_params_and_lifetime);
  tcase_add_test(tc, test_rpc_reader_in_place);
  tcase_add_test(tc, test_rpc_error_decode);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(proto_suite)
