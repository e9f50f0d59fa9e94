/*
 * libdynqclient and dynqctl: the .npy/JSON input parsers, connection
 * errors, error strings, the framing/matching logic against a scripted
 * fake server (a thread on a temporary socket), and a real dynqd on an
 * empty model directory driven through the library and through dynqctl.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../client/dynqctl-io.h"
#include "dynq/dynqclient.h"
#include "proto/proto-tensor.h"
#include "testutil.h"

/* ---- helpers ---- */

/* A .npy image with the given version and header text (padded to 64). */
static uint8_t *make_npy(int major, const char *dict, const void *data, size_t dlen,
                         size_t *ret_len) {
  size_t pre = major == 1 ? 10 : 12, hl = strlen(dict) + 1, total;
  uint8_t *b;
  while ((pre + hl) % 64) hl++;
  total = pre + hl + dlen;
  b = malloc(total);
  ck_assert_ptr_nonnull(b);
  memcpy(b, "\x93NUMPY", 6);
  b[6] = (uint8_t)major;
  b[7] = 0;
  if (major == 1) {
    b[8] = (uint8_t)(hl & 0xff);
    b[9] = (uint8_t)(hl >> 8);
  } else {
    b[8] = (uint8_t)(hl & 0xff);
    b[9] = (uint8_t)(hl >> 8);
    b[10] = 0;
    b[11] = 0;
  }
  memset(b + pre, ' ', hl);
  memcpy(b + pre, dict, strlen(dict));
  b[pre + hl - 1] = '\n';
  if (dlen) memcpy(b + pre + hl, data, dlen);
  *ret_len = total;
  return b;
}

static int npy_parse_str(int major, const char *dict, const void *data, size_t dlen,
                         dynq_tensor_t *t, char *err, size_t errlen) {
  size_t n;
  uint8_t *b = make_npy(major, dict, data, dlen, &n);
  int r = dynq__npy_parse(b, n, t, err, errlen);
  free(b);
  return r;
}

/* ---- npy ---- */

START_TEST(npy_accepts_each_dtype) {
  static const struct {
    const char *descr;
    int dtype;
    size_t esz;
  } cases[] = {
    { "<f4", DYNQ_FLOAT32, 4 }, { "<i1", DYNQ_INT8, 1 }, { "|i1", DYNQ_INT8, 1 },
    { "<u1", DYNQ_UINT8, 1 },   { "|u1", DYNQ_UINT8, 1 }, { "<i4", DYNQ_INT32, 4 },
    { "<i8", DYNQ_INT64, 8 },
  };
  uint8_t data[6 * 8];
  for (size_t i = 0; i < sizeof(data); i++) data[i] = (uint8_t)(i * 7 + 1);
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    for (int major = 1; major <= 3; major++) {
      char dict[128], err[256] = "";
      dynq_tensor_t t;
      memset(&t, 0, sizeof(t));
      snprintf(dict, sizeof(dict), "{'descr': '%s', 'fortran_order': False, 'shape': (2, 3), }",
               cases[c].descr);
      int r = npy_parse_str(major, dict, data, 6 * cases[c].esz, &t, err, sizeof(err));
      ck_assert_msg(r == 0, "%s v%d: %d %s", cases[c].descr, major, r, err);
      ck_assert_int_eq(t.dtype, cases[c].dtype);
      ck_assert_int_eq(t.rank, 2);
      ck_assert_int_eq(t.shape[0], 2);
      ck_assert_int_eq(t.shape[1], 3);
      ck_assert_uint_eq(t.nbytes, 6 * cases[c].esz);
      ck_assert_mem_eq(t.data, data, t.nbytes);
      ck_assert_ptr_null(t.name);
      dynq__io_tensor_free(&t);
    }
  }
}
END_TEST

START_TEST(npy_accepts_shapes_and_key_order) {
  char err[256] = "";
  dynq_tensor_t t;
  float v = 2.5f;
  /* scalar, any key order, double quotes, no trailing comma */
  ck_assert_int_eq(npy_parse_str(1, "{\"shape\": (), \"fortran_order\": False, \"descr\": \"<f4\"}",
                                 &v, 4, &t, err, sizeof(err)), 0);
  ck_assert_int_eq(t.rank, 0);
  ck_assert_uint_eq(t.nbytes, 4);
  ck_assert_float_eq(*(float *)t.data, 2.5f);
  dynq__io_tensor_free(&t);
  /* one-dim tuple "(1,)" and an empty array */
  ck_assert_int_eq(npy_parse_str(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
                                 &v, 4, &t, err, sizeof(err)), 0);
  ck_assert_int_eq(t.rank, 1);
  ck_assert_int_eq(t.shape[0], 1);
  dynq__io_tensor_free(&t);
  ck_assert_int_eq(npy_parse_str(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }",
                                 NULL, 0, &t, err, sizeof(err)), 0);
  ck_assert_int_eq(t.shape[0], 0);
  ck_assert_uint_eq(t.nbytes, 0);
  dynq__io_tensor_free(&t);
}
END_TEST

START_TEST(npy_write_read_roundtrip) {
  char *dir = tu_mkdtemp(), path[512], err[256] = "";
  int32_t vals[6] = { -1, 2, -3, 4, 2147483647, -2147483647 - 1 };
  dynq_tensor_t t, back;
  size_t n;
  void *img;
  memset(&t, 0, sizeof(t));
  t.dtype = DYNQ_INT32;
  t.rank = 3;
  t.shape[0] = 1;
  t.shape[1] = 2;
  t.shape[2] = 3;
  t.data = vals;
  t.nbytes = sizeof(vals);
  snprintf(path, sizeof(path), "%s/x.npy", dir);
  ck_assert_int_eq(dynq__npy_write(path, &t, err, sizeof(err)), 0);
  img = tu_read_file(path, &n);
  ck_assert_ptr_nonnull(img);
  ck_assert_uint_eq(n % 64, sizeof(vals) % 64); /* header padded to 64 */
  ck_assert_int_eq(dynq__npy_parse(img, n, &back, err, sizeof(err)), 0);
  ck_assert_int_eq(back.dtype, DYNQ_INT32);
  ck_assert_int_eq(back.rank, 3);
  ck_assert_int_eq(back.shape[2], 3);
  ck_assert_mem_eq(back.data, vals, sizeof(vals));
  dynq__io_tensor_free(&back);
  free(img);
  /* a directory that does not exist */
  snprintf(path, sizeof(path), "%s/nope/x.npy", dir);
  ck_assert_int_eq(dynq__npy_write(path, &t, err, sizeof(err)), -ENOENT);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* Files written by NumPy itself (tests/fixtures, made by make_fixtures.py)
 * parse to the same floats as their raw .f32 twins. */
START_TEST(npy_reads_numpy_fixtures) {
  static const char *names[] = { "mlp_x", "mlp_y", "gemm_x", "gemm_a", "constant_node_x" };
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char p[256], err[256] = "";
    size_t n, rawn;
    dynq_tensor_t t;
    snprintf(p, sizeof(p), "tests/fixtures/%s.npy", names[i]);
    void *img = tu_read_file(tu_src(p), &n);
    ck_assert_msg(img != NULL, "cannot read %s", tu_src(p));
    snprintf(p, sizeof(p), "tests/fixtures/%s.f32", names[i]);
    void *raw = tu_read_file(tu_src(p), &rawn);
    ck_assert_ptr_nonnull(raw);
    ck_assert_msg(dynq__npy_parse(img, n, &t, err, sizeof(err)) == 0, "%s: %s", names[i], err);
    ck_assert_int_eq(t.dtype, DYNQ_FLOAT32);
    ck_assert_int_ge(t.rank, 1);
    ck_assert_uint_eq(t.nbytes, rawn);
    ck_assert_mem_eq(t.data, raw, rawn);
    dynq__io_tensor_free(&t);
    free(img);
    free(raw);
  }
}
END_TEST

START_TEST(npy_refuses_bad_files) {
  static const char ok[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  static const struct {
    const char *what, *dict;
    size_t dlen;
    int code;
    const char *needle;
  } cases[] = {
    { "fortran", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24,
      DYNQ_EFORMAT, "Fortran" },
    { "big-endian", "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24,
      DYNQ_EDTYPE, "big-endian" },
    { "float16", "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }", 12,
      DYNQ_EDTYPE, "<f2" },
    { "float64", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 48,
      DYNQ_EDTYPE, "<f8" },
    { "missing shape", "{'descr': '<f4', 'fortran_order': False, }", 4, DYNQ_EFORMAT,
      "shape" },
    { "missing descr", "{'fortran_order': False, 'shape': (2, 3), }", 24, DYNQ_EFORMAT,
      "descr" },
    { "short data", ok, 23, DYNQ_EDATA, "truncated" },
    { "long data", ok, 28, DYNQ_EDATA, "bytes of data" },
    { "overflowing shape",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
      0, DYNQ_ELIMIT, "elements" },
    { "absurd dimension",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", 0,
      DYNQ_ELIMIT, "too large" },
    { "too many dims",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4,
      DYNQ_ESHAPE, "dimensions" },
    { "negative dim", "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", 0,
      DYNQ_EFORMAT, "shape" },
    { "unknown key", "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}", 4,
      DYNQ_EFORMAT, "'x'" },
    { "structured dtype",
      "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", 4, DYNQ_EFORMAT,
      "descr" },
    { "not a dict", "['descr']", 0, DYNQ_EFORMAT, "dict" },
    { "unterminated dict", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", 24,
      DYNQ_EFORMAT, "npy header" },
    { "junk after dict", "{'descr': '<f4', 'fortran_order': False, 'shape': (), } xx", 4,
      DYNQ_EFORMAT, "junk" },
    { "bad fortran value", "{'descr': '<f4', 'fortran_order': 0, 'shape': (), }", 4,
      DYNQ_EFORMAT, "fortran_order" },
  };
  uint8_t data[64] = { 0 };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    char err[256] = "";
    dynq_tensor_t t;
    memset(&t, 0x5a, sizeof(t));
    int r = npy_parse_str(1, cases[c].dict, data, cases[c].dlen, &t, err, sizeof(err));
    ck_assert_msg(r == cases[c].code, "%s: got %d want %d (%s)", cases[c].what, r,
                  cases[c].code, err);
    ck_assert_msg(strstr(err, cases[c].needle) != NULL, "%s: message '%s' lacks '%s'",
                  cases[c].what, err, cases[c].needle);
    ck_assert_int_eq(t.rank, 0x5a5a5a5a); /* untouched on failure */
  }
}
END_TEST

START_TEST(npy_refuses_bad_preamble) {
  char err[256] = "";
  dynq_tensor_t t;
  size_t n;
  uint8_t *b = make_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                        "\0\0\0\0", 4, &n);
  /* every truncation of a good file is refused */
  for (size_t cut = 0; cut < n; cut++)
    ck_assert_msg(dynq__npy_parse(b, cut, &t, err, sizeof(err)) < 0, "cut %zu accepted", cut);
  /* bad magic */
  b[1] = 'n';
  ck_assert_int_eq(dynq__npy_parse(b, n, &t, err, sizeof(err)), DYNQ_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err, "magic"));
  b[1] = 'N';
  /* header length past the end of the file */
  b[8] = 0xff;
  b[9] = 0x0f;
  ck_assert_int_eq(dynq__npy_parse(b, n, &t, err, sizeof(err)), DYNQ_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err, "past the end"));
  b[9] = 0;
  /* unknown version */
  b[8] = (uint8_t)(n - 10 - 4);
  b[6] = 4;
  ck_assert_int_eq(dynq__npy_parse(b, n, &t, err, sizeof(err)), DYNQ_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err, "version"));
  b[6] = 1;
  ck_assert_int_eq(dynq__npy_parse(b, n, &t, err, sizeof(err)), 0);
  dynq__io_tensor_free(&t);
  /* v2 header length field of 4 GiB - 1 */
  b[6] = 2;
  b[8] = b[9] = b[10] = b[11] = 0xff;
  ck_assert_int_eq(dynq__npy_parse(b, n, &t, err, sizeof(err)), DYNQ_EFORMAT);
  free(b);
}
END_TEST

/* ---- JSON ---- */

static int json(const char *s, dynq_tensor_t *t, char *err) {
  return dynq__json_parse(s, strlen(s), t, err, 256);
}

START_TEST(json_accepts_nested_arrays) {
  char err[256] = "";
  dynq_tensor_t t;
  float *v;
  ck_assert_int_eq(json(" [[1, 2.5], [-3e2, 4E-1]]\n", &t, err), 0);
  ck_assert_int_eq(t.dtype, DYNQ_FLOAT32);
  ck_assert_int_eq(t.rank, 2);
  ck_assert_int_eq(t.shape[0], 2);
  ck_assert_int_eq(t.shape[1], 2);
  ck_assert_uint_eq(t.nbytes, 16);
  v = t.data;
  ck_assert_float_eq(v[0], 1.0f);
  ck_assert_float_eq(v[1], 2.5f);
  ck_assert_float_eq(v[2], -300.0f);
  ck_assert_float_eq(v[3], 0.4f);
  dynq__io_tensor_free(&t);

  ck_assert_int_eq(json("[0, -0, 0.125]", &t, err), 0);
  ck_assert_int_eq(t.rank, 1);
  ck_assert_int_eq(t.shape[0], 3);
  dynq__io_tensor_free(&t);

  ck_assert_int_eq(json("[]", &t, err), 0);
  ck_assert_int_eq(t.rank, 1);
  ck_assert_int_eq(t.shape[0], 0);
  ck_assert_uint_eq(t.nbytes, 0);
  dynq__io_tensor_free(&t);

  ck_assert_int_eq(json("[[],[]]", &t, err), 0);
  ck_assert_int_eq(t.rank, 2);
  ck_assert_int_eq(t.shape[0], 2);
  ck_assert_int_eq(t.shape[1], 0);
  dynq__io_tensor_free(&t);

  /* 8 levels is the rank limit and is accepted */
  ck_assert_int_eq(json("[[[[[[[[7]]]]]]]]", &t, err), 0);
  ck_assert_int_eq(t.rank, 8);
  ck_assert_float_eq(((float *)t.data)[0], 7.0f);
  dynq__io_tensor_free(&t);

  /* 3-d with the shape taken from nesting */
  ck_assert_int_eq(json("[[[1],[2],[3]],[[4],[5],[6]]]", &t, err), 0);
  ck_assert_int_eq(t.rank, 3);
  ck_assert_int_eq(t.shape[0], 2);
  ck_assert_int_eq(t.shape[1], 3);
  ck_assert_int_eq(t.shape[2], 1);
  ck_assert_float_eq(((float *)t.data)[5], 6.0f);
  dynq__io_tensor_free(&t);
}
END_TEST

START_TEST(json_refuses_bad_input) {
  static const struct {
    const char *in;
    int code;
  } cases[] = {
    { "[[1,2],[3]]", DYNQ_ESHAPE },   { "[[1],2]", DYNQ_ESHAPE },
    { "[1,[2]]", DYNQ_ESHAPE },       { "[[],[1]]", DYNQ_ESHAPE },
    { "[[[1]],[2]]", DYNQ_ESHAPE },   { "[[1,2],[3,4,5]]", DYNQ_ESHAPE },
    { "", DYNQ_EFORMAT },             { "   ", DYNQ_EFORMAT },
    { "abc", DYNQ_EFORMAT },          { "3", DYNQ_EFORMAT },
    { "{}", DYNQ_EFORMAT },           { "[1,]", DYNQ_EFORMAT },
    { "[,1]", DYNQ_EFORMAT },         { "[1 2]", DYNQ_EFORMAT },
    { "[01]", DYNQ_EFORMAT },         { "[+1]", DYNQ_EFORMAT },
    { "[.5]", DYNQ_EFORMAT },         { "[1.]", DYNQ_EFORMAT },
    { "[1e]", DYNQ_EFORMAT },         { "[0x10]", DYNQ_EFORMAT },
    { "[nan]", DYNQ_EFORMAT },        { "[inf]", DYNQ_EFORMAT },
    { "[\"1\"]", DYNQ_EFORMAT },      { "[true]", DYNQ_EFORMAT },
    { "[null]", DYNQ_EFORMAT },       { "[1] x", DYNQ_EFORMAT },
    { "[1", DYNQ_EFORMAT },           { "[[1,2]", DYNQ_EFORMAT },
    { "[1e999]", DYNQ_ENUMERIC },     { "[-3.5e38]", DYNQ_ENUMERIC },
    { "[[[[[[[[[1]]]]]]]]]", DYNQ_EDEPTH },
    { "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", DYNQ_EDEPTH },
    { "[1111111111111111111111111111111111111111111111111111111111111111111]",
      DYNQ_EFORMAT },
  };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    char err[256] = "";
    dynq_tensor_t t;
    memset(&t, 0x5a, sizeof(t));
    int r = json(cases[c].in, &t, err);
    ck_assert_msg(r == cases[c].code, "'%s': got %d want %d (%s)", cases[c].in, r,
                  cases[c].code, err);
    ck_assert_msg(strncmp(err, "json: ", 6) == 0, "'%s': message '%s'", cases[c].in, err);
    ck_assert_int_eq(t.rank, 0x5a5a5a5a);
  }
  /* not NUL-terminated: the parser stops at len */
  {
    char err[256] = "";
    dynq_tensor_t t;
    ck_assert_int_eq(dynq__json_parse("[1,2]]]]", 5, &t, err, sizeof(err)), 0);
    ck_assert_int_eq(t.shape[0], 2);
    dynq__io_tensor_free(&t);
  }
}
END_TEST

static int jtyped(const char *in, int dtype, dynq_tensor_t *t, char *err, size_t errlen) {
  return dynq__json_parse_as(in, strlen(in), dtype, t, err, errlen);
}

/* Typed JSON (dynqctl --input NAME:DTYPE=...): exact integers, range and
 * integrality checks, bare numbers as scalars. */
START_TEST(json_typed_values) {
  char err[256] = "";
  dynq_tensor_t t;
  ck_assert_int_eq(jtyped("[[9007199254740993, -9223372036854775808]]",
                                       DYNQ_INT64, &t, err, sizeof(err)), 0);
  ck_assert_int_eq(t.dtype, DYNQ_INT64);
  ck_assert_int_eq(t.rank, 2);
  ck_assert_uint_eq(t.nbytes, 16);
  ck_assert(((int64_t *)t.data)[0] == INT64_C(9007199254740993)); /* not rounded via double */
  ck_assert(((int64_t *)t.data)[1] == INT64_MIN);
  dynq__io_tensor_free(&t);

  ck_assert_int_eq(jtyped(" 16000 ", DYNQ_INT64, &t, err, sizeof(err)), 0);
  ck_assert_int_eq(t.rank, 0);
  ck_assert_uint_eq(t.nbytes, 8);
  ck_assert(((int64_t *)t.data)[0] == 16000);
  dynq__io_tensor_free(&t);

  ck_assert_int_eq(jtyped("[-128, 127]", DYNQ_INT8, &t, err, sizeof(err)), 0);
  ck_assert_int_eq(((int8_t *)t.data)[0], -128);
  ck_assert_uint_eq(t.nbytes, 2);
  dynq__io_tensor_free(&t);
  ck_assert_int_eq(jtyped("[0, 255]", DYNQ_UINT8, &t, err, sizeof(err)), 0);
  ck_assert_uint_eq(((uint8_t *)t.data)[1], 255);
  dynq__io_tensor_free(&t);
  ck_assert_int_eq(jtyped("[2147483647]", DYNQ_INT32, &t, err, sizeof(err)), 0);
  ck_assert_int_eq(((int32_t *)t.data)[0], INT32_MAX);
  dynq__io_tensor_free(&t);
  ck_assert_int_eq(jtyped("0.5", DYNQ_FLOAT32, &t, err, sizeof(err)), 0);
  ck_assert_int_eq(t.rank, 0);
  ck_assert_float_eq(((float *)t.data)[0], 0.5f);
  dynq__io_tensor_free(&t);

  static const struct {
    const char *in;
    int dtype, code;
  } bad[] = {
    { "[128]", DYNQ_INT8, DYNQ_ENUMERIC },    { "[-129]", DYNQ_INT8, DYNQ_ENUMERIC },
    { "[256]", DYNQ_UINT8, DYNQ_ENUMERIC },   { "[-1]", DYNQ_UINT8, DYNQ_ENUMERIC },
    { "[2147483648]", DYNQ_INT32, DYNQ_ENUMERIC },
    { "[9223372036854775808]", DYNQ_INT64, DYNQ_ENUMERIC },
    { "[1.5]", DYNQ_INT64, DYNQ_EDTYPE },     { "[1e3]", DYNQ_INT32, DYNQ_EDTYPE },
    { "[1.0]", DYNQ_INT8, DYNQ_EDTYPE },      { "1 2", DYNQ_INT64, DYNQ_EFORMAT },
    { "abc", DYNQ_INT64, DYNQ_EFORMAT },      { "", DYNQ_INT64, DYNQ_EFORMAT },
    { "[1]", 0, DYNQ_EDTYPE },                { "[1]", 99, DYNQ_EDTYPE },
  };
  for (size_t c = 0; c < sizeof(bad) / sizeof(bad[0]); c++) {
    memset(&t, 0x5a, sizeof(t));
    err[0] = '\0';
    int r = dynq__json_parse_as(bad[c].in, strlen(bad[c].in), bad[c].dtype, &t, err, sizeof(err));
    ck_assert_msg(r == bad[c].code, "'%s' as %d: got %d want %d (%s)", bad[c].in, bad[c].dtype,
                  r, bad[c].code, err);
    ck_assert_msg(strncmp(err, "json: ", 6) == 0, "'%s': message '%s'", bad[c].in, err);
    ck_assert_int_eq(t.rank, 0x5a5a5a5a);
  }
}
END_TEST

/* ---- library basics ---- */

START_TEST(connect_errors) {
  dynq_client_t *c = (dynq_client_t *)0x1;
  char longp[300];
  ck_assert_int_eq(dynq_connect("/nonexistent-dynq-dir/dynqd.sock", &c), -ENOENT);
  ck_assert_ptr_eq(c, (dynq_client_t *)0x1); /* untouched on failure */
  memset(longp, 'a', sizeof(longp) - 1);
  longp[0] = '/';
  longp[sizeof(longp) - 1] = '\0';
  ck_assert_int_eq(dynq_connect(longp, &c), -ENAMETOOLONG);
  ck_assert_int_eq(dynq_connect("", &c), -EINVAL);
  ck_assert_int_eq(dynq_connect("/tmp/x", NULL), -EINVAL);
  /* a file that is not a socket */
  ck_assert_int_eq(dynq_connect("/dev/null", &c), -ECONNREFUSED);
  ck_assert_ptr_eq(c, (dynq_client_t *)0x1);
  /* NULL-safe destructors and accessors */
  dynq_close(NULL);
  dynq_strv_free(NULL);
  dynq_model_info_free(NULL);
  dynq_infer_result_free(NULL);
  ck_assert_ptr_nonnull(dynq_client_errmsg(NULL));
  ck_assert_int_eq(dynq_ping(NULL), -EINVAL);
}
END_TEST

START_TEST(default_socket_order) {
  char buf[256];
  setenv("DYNQ_SOCKET", "/x/y.sock", 1);
  setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
  ck_assert_str_eq(dynq_default_socket(buf, sizeof(buf)), "/x/y.sock");
  unsetenv("DYNQ_SOCKET");
  ck_assert_str_eq(dynq_default_socket(buf, sizeof(buf)), "/run/user/1000/dynq/dynqd.sock");
  unsetenv("XDG_RUNTIME_DIR");
  ck_assert_str_eq(dynq_default_socket(buf, sizeof(buf)), "/run/dynq/dynqd.sock");
  ck_assert_ptr_null(dynq_default_socket(NULL, 0));
}
END_TEST


START_TEST(socket_search) {
  char buf[256], msg[1024], path[512];
  dynq_client_t *c = NULL;
  char *dir = tu_mkdtemp();
  unsetenv("DYNQ_SOCKET");
  /* the user path first, then the system path */
  setenv("XDG_RUNTIME_DIR", dir, 1);
  snprintf(path, sizeof(path), "%s/dynq/dynqd.sock", dir);
  ck_assert_str_eq(dynq_socket_candidate(0, buf, sizeof(buf)), path);
  ck_assert_str_eq(dynq_socket_candidate(1, buf, sizeof(buf)), "/run/dynq/dynqd.sock");
  ck_assert_ptr_null(dynq_socket_candidate(2, buf, sizeof(buf)));
  ck_assert_ptr_null(dynq_socket_candidate(-1, buf, sizeof(buf)));
  /* nothing listens anywhere: the message names every path tried */
  if (access("/run/dynq/dynqd.sock", F_OK) != 0) {
    ck_assert_int_eq(dynq_connect_msg(NULL, &c, msg, sizeof(msg)), -ENOENT);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(msg, "$XDG_RUNTIME_DIR/dynq/dynqd.sock (") && strstr(msg, path) &&
                      strstr(msg, "; /run/dynq/dynqd.sock: "),
                  "%s", msg);
  }
  /* a daemon on the user path is found, and the client says where */
  char sub[512];
  snprintf(sub, sizeof(sub), "%s/dynq", dir);
  ck_assert_int_eq(mkdir(sub, 0700), 0);
  int lfd = tu_listen_unix(path, 4);
  ck_assert_int_eq(dynq_connect_msg(NULL, &c, msg, sizeof(msg)), 0);
  ck_assert_str_eq(dynq_client_path(c), path);
  ck_assert_str_eq(msg, "");
  dynq_close(c);
  c = NULL;
  /* $DYNQ_SOCKET is the only candidate when set */
  setenv("DYNQ_SOCKET", "/nonexistent-dynq-dir/x.sock", 1);
  ck_assert_ptr_null(dynq_socket_candidate(1, buf, sizeof(buf)));
  ck_assert_int_eq(dynq_connect_msg(NULL, &c, msg, sizeof(msg)), -ENOENT);
  ck_assert_msg(strstr(msg, "$DYNQ_SOCKET (/nonexistent-dynq-dir/x.sock)") &&
                    strstr(msg, "/run/dynq") == NULL, "%s", msg);
  unsetenv("DYNQ_SOCKET");
  /* an explicit path is tried alone */
  ck_assert_int_eq(dynq_connect_msg("/nonexistent-dynq-dir/y.sock", &c, msg, sizeof(msg)),
                   -ENOENT);
  ck_assert_msg(strncmp(msg, "/nonexistent-dynq-dir/y.sock: ", 30) == 0, "%s", msg);
  close(lfd);
  unsetenv("XDG_RUNTIME_DIR");
  tu_rmtree(dir);
  free(dir);
}
END_TEST

START_TEST(strerror_every_code) {
  const char *unknown = dynq_strerror(DYNQ__ERR_BASE - 999);
  ck_assert_ptr_nonnull(unknown);
#define CHECK_ERR(name, off, retry, msg)                                      \
  {                                                                           \
    const char *s = dynq_strerror(DYNQ_##name);                               \
    ck_assert_ptr_nonnull(s);                                                 \
    ck_assert_str_ne(s, unknown);                                             \
    ck_assert_str_eq(s, msg);                                                 \
    ck_assert_str_eq(dynq_err_name(DYNQ_##name), #name);                      \
    ck_assert_int_eq(dynq_err_from_name(#name), DYNQ_##name);                 \
    ck_assert_int_eq(!!dynq_err_retryable(DYNQ_##name), retry);               \
  }
  DYNQ_ERRORS(CHECK_ERR)
#undef CHECK_ERR
  ck_assert_ptr_nonnull(dynq_strerror(-ENOENT));
  ck_assert_str_ne(dynq_strerror(-ENOENT), unknown);
  ck_assert_ptr_nonnull(dynq_err_name(12345));
}
END_TEST

/* ---- a scripted fake server ---- */

typedef struct fake {
  char dir[256], path[300];
  int lfd;
  pthread_t th;
  /* called with each request; writes the reply bytes (or not) to fd */
  void (*script)(struct fake *f, int fd, const dynq__rpc_msg_t *req, int n);
  int requests;
} fake_t;

static int fake_answer(void *ctx, int fd, const dynq__rpc_msg_t *m) {
  fake_t *f = ctx;
  f->script(f, fd, m, f->requests++);
  return f->requests < 0; /* the script asked to hang up */
}

static void *fake_main(void *arg) {
  fake_t *f = arg;
  tu_fake_serve(f->lfd, fake_answer, f);
  return NULL;
}

static void fake_start(fake_t *f, void (*script)(fake_t *, int, const dynq__rpc_msg_t *, int)) {
  char *d = tu_mkdtemp();
  memset(f, 0, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "%s", d);
  free(d);
  snprintf(f->path, sizeof(f->path), "%s/fake.sock", f->dir);
  f->script = script;
  f->lfd = tu_listen_unix(f->path, 1);
  ck_assert_int_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake_t *f, dynq_client_t *c) {
  dynq_close(c); /* lets the fake's read see EOF */
  pthread_join(f->th, NULL);
  close(f->lfd);
  tu_rmtree(f->dir);
}

/* Notification and a stale response first, then the answer one byte at a
 * time: the client must skip the first two and reassemble the third. */
static void script_noise(fake_t *f, int fd, const dynq__rpc_msg_t *req, int n) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_array(&w, 3);
  dynq__w_int(&w, 2);
  dynq__w_str(&w, "log");
  dynq__w_map(&w, 0);
  dynq__w_result_head(&w, req->msgid + 1000);
  dynq__w_str(&w, "stale");
  tu_send_wbuf(fd, &w);
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, req->msgid);
  dynq__w_str(&w, "pong");
  for (size_t i = 0; i < w.len; i++) tu_write_all(fd, w.data + i, 1);
  dynq__wbuf_free(&w);
}

START_TEST(fake_skips_noise_and_reassembles) {
  fake_t f;
  dynq_client_t *c = NULL;
  fake_start(&f, script_noise);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  for (int i = 0; i < 3; i++) ck_assert_int_eq(dynq_ping(c), 0);
  fake_stop(&f, c);
}
END_TEST

static void script_errors(fake_t *f, int fd, const dynq__rpc_msg_t *req, int n) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  switch (n) {
  case 0:
    dynq__w_error_response(&w, req->msgid, DYNQ_ENOMODEL, "no model named 'foo'");
    break;
  case 1: /* server.info answered with a string */
    dynq__w_result_head(&w, req->msgid);
    dynq__w_str(&w, "not a map");
    break;
  case 2: /* ping answered with something else */
    dynq__w_result_head(&w, req->msgid);
    dynq__w_int(&w, 7);
    break;
  case 3: /* an error with a name we do not know */
    dynq__w_array(&w, 4);
    dynq__w_int(&w, 1);
    dynq__w_uint(&w, req->msgid);
    dynq__w_map(&w, 2);
    dynq__w_str(&w, "name");
    dynq__w_str(&w, "EFUTURE");
    dynq__w_str(&w, "message");
    dynq__w_str(&w, "something new");
    dynq__w_nil(&w);
    break;
  default: /* hang up without answering */
    dynq__wbuf_free(&w);
    f->requests = -1000;
    return;
  }
  tu_send_wbuf(fd, &w);
}

START_TEST(fake_error_replies) {
  fake_t f;
  dynq_client_t *c = NULL;
  dynq_model_info_t mi;
  dynq_server_info_t si;
  fake_start(&f, script_errors);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_model_info(c, "foo", &mi), DYNQ_ENOMODEL);
  ck_assert_str_eq(dynq_client_errmsg(c), "no model named 'foo'");
  ck_assert_int_eq(dynq_server_info(c, &si), DYNQ_EPROTO);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "server.info"));
  ck_assert_int_eq(dynq_ping(c), DYNQ_EPROTO);
  ck_assert_int_eq(dynq_ping(c), DYNQ_ESERVER);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "something new"));
  ck_assert_int_eq(dynq_ping(c), DYNQ_ECLOSED);
  ck_assert_int_eq(dynq_ping(c), DYNQ_ECLOSED);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "closed"));
  fake_stop(&f, c);
}
END_TEST

/* A 5-byte header declaring a 4 GiB bin must not make us buffer it. */
static void script_huge(fake_t *f, int fd, const dynq__rpc_msg_t *req, int n) {
  static const uint8_t huge[] = { 0x94, 0x01, 0x01, 0xc0, 0xc6, 0xff, 0xff, 0xff, 0xf0 };
  tu_write_all(fd, huge, sizeof(huge));
}

START_TEST(fake_huge_frame_refused) {
  fake_t f;
  dynq_client_t *c = NULL;
  fake_start(&f, script_huge);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_ping(c), DYNQ_ETOOBIG);
  ck_assert_int_eq(dynq_ping(c), DYNQ_ECLOSED);
  fake_stop(&f, c);
}
END_TEST

static void script_garbage(fake_t *f, int fd, const dynq__rpc_msg_t *req, int n) {
  static const uint8_t junk[] = { 0xc1, 0x00 };
  tu_write_all(fd, junk, sizeof(junk));
}

START_TEST(fake_garbage_refused) {
  fake_t f;
  dynq_client_t *c = NULL;
  fake_start(&f, script_garbage);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_ping(c), DYNQ_EPROTO);
  ck_assert_int_eq(dynq_ping(c), DYNQ_ECLOSED);
  fake_stop(&f, c);
}
END_TEST

/* infer: echo the request's input back as output "y" (and, second time,
 * an output whose data length does not match its shape). */
static void script_infer(fake_t *f, int fd, const dynq__rpc_msg_t *req, int n) {
  dynq__wbuf_t w;
  dynq__tensor_t t;
  char err[128];
  dynq__obj_t in = dynq__obj_get(dynq__obj_get(req->params, "inputs"), "x");
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, req->msgid);
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "outputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "y");
  if (n == 0 && dynq__obj_tensor(in, &(dynq__tensor_limits_t){ 8, 1 << 20 }, &t, err,
                                 sizeof(err)) == 0) {
    dynq__w_tensor(&w, &t);
    dynq__tensor_clear(&t);
  } else {
    static const float v[3] = { 1, 2, 3 };
    dynq__w_map(&w, 3);
    dynq__w_str(&w, "dtype");
    dynq__w_str(&w, "float32");
    dynq__w_str(&w, "shape");
    dynq__w_array(&w, 1);
    dynq__w_int(&w, 4);
    dynq__w_str(&w, "data");
    dynq__w_bin(&w, v, sizeof(v));
  }
  dynq__w_str(&w, "compute_us");
  dynq__w_int(&w, 42);
  tu_send_wbuf(fd, &w);
}

START_TEST(fake_infer_roundtrip) {
  fake_t f;
  dynq_client_t *c = NULL;
  dynq_infer_result_t res;
  float x[6] = { 1.5f, -2, 3, 4, 5, 6e-3f };
  dynq_tensor_t in = { "x", DYNQ_FLOAT32, 2, { 2, 3 }, x, sizeof(x) };
  fake_start(&f, script_infer);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  ck_assert_int_eq(dynq_infer(c, "m", DYNQ_INFER_FP32, &in, 1, &res), 0);
  ck_assert_int_eq(res.n_outputs, 1);
  ck_assert_str_eq(res.outputs[0].name, "y");
  ck_assert_int_eq(res.outputs[0].dtype, DYNQ_FLOAT32);
  ck_assert_int_eq(res.outputs[0].rank, 2);
  ck_assert_int_eq(res.outputs[0].shape[1], 3);
  for (int d = 2; d < DYNQ_CLIENT_MAX_RANK; d++) ck_assert_int_eq(res.outputs[0].shape[d], 0);
  ck_assert_uint_eq(res.outputs[0].nbytes, sizeof(x));
  ck_assert_mem_eq(res.outputs[0].data, x, sizeof(x));
  ck_assert_int_eq(res.compute_us, 42);
  dynq_infer_result_free(&res);
  ck_assert_int_eq(res.n_outputs, 0);
  /* bad output from the server */
  ck_assert_int_eq(dynq_infer(c, "m", DYNQ_INFER_DEFAULT, &in, 1, &res), DYNQ_EPROTO);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "'y'"));
  /* caller mistakes are caught before sending */
  in.nbytes = 5;
  ck_assert_int_eq(dynq_infer(c, "m", 0, &in, 1, &res), DYNQ_EDATA);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "'x'"));
  in.nbytes = sizeof(x);
  in.dtype = 99;
  ck_assert_int_eq(dynq_infer(c, "m", 0, &in, 1, &res), DYNQ_EDTYPE);
  in.dtype = DYNQ_FLOAT32;
  in.rank = 9;
  ck_assert_int_eq(dynq_infer(c, "m", 0, &in, 1, &res), DYNQ_ESHAPE);
  in.rank = 2;
  in.shape[0] = -1;
  ck_assert_int_eq(dynq_infer(c, "m", 0, &in, 1, &res), DYNQ_ESHAPE);
  in.shape[0] = 2;
  in.name = NULL;
  ck_assert_int_eq(dynq_infer(c, "m", 0, &in, 1, &res), DYNQ_EPARAMS);
  in.name = "x";
  ck_assert_int_eq(dynq_infer(c, "m", 7, &in, 1, &res), DYNQ_EPARAMS);
  fake_stop(&f, c);
}
END_TEST

/* call_raw hands back the result's exact bytes. */
static void script_raw(fake_t *f, int fd, const dynq__rpc_msg_t *req, int n) {
  dynq__wbuf_t w;
  int64_t v = 0;
  dynq__obj_int(dynq__obj_get(req->params, "v"), &v);
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, req->msgid);
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "method");
  dynq__w_str(&w, req->method);
  dynq__w_str(&w, "v");
  dynq__w_int(&w, v * 2);
  tu_send_wbuf(fd, &w);
}

START_TEST(fake_call_raw) {
  fake_t f;
  dynq_client_t *c = NULL;
  dynq__wbuf_t p, want;
  void *res = NULL;
  size_t len = 0;
  fake_start(&f, script_raw);
  ck_assert_int_eq(dynq_connect(f.path, &c), 0);
  dynq__wbuf_init(&p);
  dynq__w_map(&p, 1);
  dynq__w_str(&p, "v");
  dynq__w_int(&p, 21);
  ck_assert_int_eq(dynq_call_raw(c, "x.double", p.data, p.len, &res, &len), 0);
  dynq__wbuf_init(&want);
  dynq__w_map(&want, 2);
  dynq__w_str(&want, "method");
  dynq__w_str(&want, "x.double");
  dynq__w_str(&want, "v");
  dynq__w_int(&want, 42);
  ck_assert_uint_eq(len, want.len);
  ck_assert_mem_eq(res, want.data, len);
  free(res);
  /* params that are not exactly one object are refused locally */
  res = NULL;
  ck_assert_int_eq(dynq_call_raw(c, "x", p.data, p.len - 1, &res, &len), DYNQ_EPARAMS);
  uint8_t two[] = { 0x80, 0x80 };
  ck_assert_int_eq(dynq_call_raw(c, "x", two, 2, &res, &len), DYNQ_EPARAMS);
  ck_assert_ptr_null(res);
  ck_assert_int_eq(dynq_call_raw(c, "", NULL, 0, &res, &len), DYNQ_EPARAMS);
  /* and the connection still works */
  ck_assert_int_eq(dynq_call_raw(c, "y", NULL, 0, &res, &len), 0);
  free(res);
  dynq__wbuf_free(&p);
  dynq__wbuf_free(&want);
  fake_stop(&f, c);
}
END_TEST

/* ---- a real dynqd ---- */

static tu_daemon_t daemon_;
static char *ddir, *mdir;

static void daemon_setup(void) {
  ddir = tu_mkdtemp_models(&mdir);
  ck_assert_msg(tu_daemon_start(&daemon_, ddir, mdir, NULL) == 0,
                "cannot start %s (is it built?)", tu_build("daemon/dynqd"));
}

static void daemon_teardown(void) {
  if (daemon_.pid > 0) {
    int st = tu_daemon_stop(&daemon_, SIGTERM);
    ck_assert_msg(st == 0, "dynqd exited with %d", st);
  }
  tu_rmtree(ddir);
  free(ddir);
  free(mdir);
}

START_TEST(daemon_library_calls) {
  dynq_client_t *c = NULL;
  dynq_server_info_t si;
  dynq_model_info_t mi;
  dynq_infer_result_t res;
  char **names = NULL;
  void *raw = NULL;
  size_t rawlen = 0;
  float x[2] = { 1, 2 };
  dynq_tensor_t in = { "x", DYNQ_FLOAT32, 1, { 2 }, x, sizeof(x) };

  ck_assert_int_eq(dynq_connect(daemon_.sock, &c), 0);
  ck_assert_int_eq(dynq_ping(c), 0);
  ck_assert_int_eq(dynq_server_info(c, &si), 0);
  ck_assert_int_eq(si.protocol, DYNQ_PROTOCOL_VERSION);
  ck_assert_str_eq(si.version, "0.1.0");
  ck_assert_int_ge(si.workers, 1);
  ck_assert_int_eq(si.models, 0);
  ck_assert(si.uptime_s >= 0);
  ck_assert_int_gt(strlen(si.kernel), 0);

  ck_assert_int_eq(dynq_list_models(c, &names), 0);
  ck_assert_ptr_nonnull(names);
  ck_assert_ptr_null(names[0]);
  dynq_strv_free(names);

  ck_assert_int_eq(dynq_model_info(c, "nosuch", &mi), DYNQ_ENOMODEL);
  ck_assert_msg(strstr(dynq_client_errmsg(c), "nosuch") != NULL, "errmsg '%s'",
                dynq_client_errmsg(c));
  ck_assert_int_eq(dynq_infer(c, "nosuch", DYNQ_INFER_DEFAULT, &in, 1, &res), DYNQ_ENOMODEL);
  ck_assert_int_gt(strlen(dynq_client_errmsg(c)), 0);

  /* raw: "ping" gives the msgpack string "pong" */
  ck_assert_int_eq(dynq_call_raw(c, "ping", NULL, 0, &raw, &rawlen), 0);
  ck_assert_uint_eq(rawlen, 5);
  ck_assert_mem_eq(raw, "\xa4pong", 5);
  free(raw);
  ck_assert_int_eq(dynq_call_raw(c, "no.such.method", NULL, 0, &raw, &rawlen),
                   DYNQ_ENOMETHOD);
  /* the connection survives errors */
  ck_assert_int_eq(dynq_ping(c), 0);
  dynq_close(c);
  ck_assert(tu_daemon_alive(&daemon_));
}
END_TEST

static int ctl(char **out, const char *a1, const char *a2, const char *a3, const char *a4,
               const char *a5) {
  char exe[4096];
  char *argv[10];
  int n = 0;
  snprintf(exe, sizeof(exe), "%s", tu_build("client/dynqctl"));
  argv[n++] = exe;
  const char *a[] = { a1, a2, a3, a4, a5 };
  for (int i = 0; i < 5 && a[i]; i++) argv[n++] = (char *)a[i];
  argv[n] = NULL;
  return tu_run(argv, out);
}

#define CTL_OK(out, ...) ck_assert_msg(ctl(&out, __VA_ARGS__) == 0, "dynqctl failed: %s", out)

START_TEST(daemon_dynqctl) {
  const char *s = daemon_.sock;
  char *out = NULL;

  CTL_OK(out, "--socket", s, "ping", NULL, NULL);
  ck_assert_msg(strncmp(out, "pong in ", 8) == 0 && strstr(out, " us\n"), "%s", out);
  free(out);
  CTL_OK(out, "--socket", s, "--json", "ping", NULL);
  ck_assert_msg(strstr(out, "\"pong\": true") != NULL, "%s", out);
  free(out);
  CTL_OK(out, "--socket", s, "status", NULL, NULL);
  ck_assert_msg(strstr(out, "protocol:") && strstr(out, "workers:") && strstr(out, "0.1.0"),
                "%s", out);
  free(out);
  CTL_OK(out, "--socket", s, "--json", "statu", NULL); /* unique prefix */
  ck_assert_msg(out[0] == '{' && strstr(out, "\"protocol\": 1") && strstr(out, "\"models\": 0"),
                "%s", out);
  free(out);
  CTL_OK(out, "--socket", s, "list", NULL, NULL);
  ck_assert_str_eq(out, "no models loaded\n");
  free(out);
  CTL_OK(out, "--socket", s, "--json", "list", NULL);
  ck_assert_str_eq(out, "{\"models\": []}\n");
  free(out);

  /* $DYNQ_SOCKET instead of --socket */
  setenv("DYNQ_SOCKET", s, 1);
  CTL_OK(out, "ping", NULL, NULL, NULL, NULL);
  free(out);
  unsetenv("DYNQ_SOCKET");

  /* server errors: exit 1 naming the error */
  ck_assert_int_eq(ctl(&out, "--socket", s, "info", "nosuch", NULL), 1);
  ck_assert_msg(strstr(out, "ENOMODEL") && strstr(out, "nosuch"), "%s", out);
  free(out);
  ck_assert_int_eq(ctl(&out, "--socket", s, "infer", "nosuch", "--input=x=[1,2]"), 1);
  ck_assert_msg(strstr(out, "ENOMODEL"), "%s", out);
  free(out);
  ck_assert(tu_daemon_alive(&daemon_));
}
END_TEST

/* A real model: dynq-quantize the mlp fixture, serve it, and run it
 * through dynqctl with a .npy input, --json output and --output-dir. */
START_TEST(daemon_dynqctl_infer_model) {
  char onnx[4096], dyn[600], spec[4096], *out = NULL;
  tu_daemon_t d;
  size_t n, rawn;
  snprintf(onnx, sizeof(onnx), "%s", tu_src("tests/fixtures/mlp.onnx"));
  snprintf(dyn, sizeof(dyn), "%s/mlp.dynq", mdir);
  ck_assert_msg(tu_quantize_log(&out, onnx, dyn, NULL) == 0, "dynq-quantize: %s", out);
  free(out);
  /* the fixture's daemon scanned an empty directory: start one that sees
   * the model */
  char *dir2 = tu_mkdtemp();
  ck_assert_int_eq(tu_daemon_start(&d, dir2, mdir, NULL), 0);

  CTL_OK(out, "--socket", d.sock, "info", "mlp", NULL);
  ck_assert_msg(strstr(out, "inputs:") && strstr(out, "float32  [-1, 64]"), "%s", out);
  free(out);
  CTL_OK(out, "--socket", d.sock, "list", NULL, NULL);
  ck_assert_msg(strstr(out, "mlp ") != NULL, "%s", out);
  free(out);

  /* unnamed input: the model's only input; fp32 path vs NumPy's result */
  snprintf(spec, sizeof(spec), "--input=%s", tu_src("tests/fixtures/mlp_x.npy"));
  char exe[4096];
  snprintf(exe, sizeof(exe), "%s", tu_build("client/dynqctl"));
  char *argv[] = { exe, "--socket", d.sock, "--json", "infer", "mlp", spec,
                   "--precision", "fp32", "--output-dir", dir2, NULL };
  ck_assert_int_eq(tu_run(argv, &out), 0);
  ck_assert_msg(strncmp(out, "{\"outputs\": {", 13) == 0 && strstr(out, "\"compute_us\": "),
                "%s", out);
  ck_assert_msg(strstr(out, "\"y\": {\"dtype\": \"float32\", \"shape\": [16, 10], \"data\": [")
                    != NULL, "%s", out);
  free(out);
  /* y.npy written by --output-dir matches the fixture within fp32 noise */
  char p[600], err[256] = "";
  dynq_tensor_t y;
  snprintf(p, sizeof(p), "%s/y.npy", dir2);
  void *img = tu_read_file(p, &n);
  ck_assert_msg(img != NULL, "no %s", p);
  ck_assert_int_eq(dynq__npy_parse(img, n, &y, err, sizeof(err)), 0);
  float *ref = tu_read_file(tu_src("tests/fixtures/mlp_y.f32"), &rawn);
  ck_assert_uint_eq(y.nbytes, rawn);
  for (size_t i = 0; i < rawn / 4; i++) {
    float a = ((float *)y.data)[i];
    ck_assert_msg(fabsf(a - ref[i]) <= 1e-4f, "y[%zu] = %g, want %g", i, a, ref[i]);
  }
  dynq__io_tensor_free(&y);
  free(img);
  free(ref);
  /* a missing --output-dir is made; one whose parent is missing is not */
  char sub[512], deep[512];
  snprintf(sub, sizeof(sub), "%s/made", dir2);
  snprintf(deep, sizeof(deep), "%s/no/such", dir2);
  char *argv_mk[] = { exe, "--socket", d.sock, "infer", "mlp", spec, "--output-dir", sub, NULL };
  ck_assert_int_eq(tu_run(argv_mk, &out), 0);
  free(out);
  snprintf(p, sizeof(p), "%s/y.npy", sub);
  ck_assert_msg(access(p, R_OK) == 0, "no %s", p);
  char *argv_deep[] = { exe, "--socket", d.sock, "infer", "mlp", spec, "--output-dir", deep, NULL };
  ck_assert_int_eq(tu_run(argv_deep, &out), 2);
  ck_assert_msg(strstr(out, "cannot create it") != NULL, "%s", out);
  free(out);

  /* human output, int8 default path */
  char *argv2[] = { exe, "--socket", d.sock, "infe", "mlp", spec, NULL }; /* prefix */
  ck_assert_int_eq(tu_run(argv2, &out), 0);
  ck_assert_msg(strstr(out, "y: float32 [16, 10]\n") && strstr(out, "compute: "), "%s", out);
  free(out);
  /* a shape the model refuses: exit 1 with the server's reason */
  char *argv3[] = { exe, "--socket", d.sock, "infer", "mlp", "--input", "x=[[1,2]]", NULL };
  ck_assert_int_eq(tu_run(argv3, &out), 1);
  ck_assert_msg(strstr(out, "ESHAPE") != NULL, "%s", out);
  free(out);
  /* a wrong input name */
  char *argv4[] = { exe, "--socket", d.sock, "infer", "mlp", "--input", "nope=[1]", NULL };
  ck_assert_int_eq(tu_run(argv4, &out), 1);
  ck_assert_msg(strstr(out, "ENOINPUT") != NULL, "%s", out);
  free(out);

  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  tu_rmtree(dir2);
  free(dir2);
}
END_TEST

/* dynqctl paths that need no daemon. */
START_TEST(dynqctl_usage_errors) {
  char *out = NULL, *dir = tu_mkdtemp(), p[512], sock[512];
  snprintf(sock, sizeof(sock), "%s/none.sock", dir);

  ck_assert_int_eq(ctl(&out, "--help", NULL, NULL, NULL, NULL), 0);
  ck_assert_msg(strstr(out, "ping") && strstr(out, "status") && strstr(out, "infer MODEL"),
                "%s", out);
  free(out);
  ck_assert_int_eq(ctl(&out, "help", NULL, NULL, NULL, NULL), 0);
  ck_assert_ptr_nonnull(strstr(out, "usage: dynqctl"));
  free(out);
  /* a command's own help, without a daemon (the socket does not exist) */
  ck_assert_int_eq(ctl(&out, "--socket", sock, "infer", "m", "--help"), 0);
  ck_assert_msg(strstr(out, "usage: dynqctl") && strstr(out, "infer MODEL [--input") &&
                strstr(out, "run a model") && !strstr(out, "stream MODEL"), "%s", out);
  free(out);
  ck_assert_int_eq(ctl(&out, "--socket", sock, "stream", "-h", NULL), 0);
  ck_assert_ptr_nonnull(strstr(out, "stream MODEL --input NAME=AUDIO"));
  free(out);
  ck_assert_int_eq(ctl(&out, "help", "stats", NULL, NULL, NULL), 0);
  ck_assert_ptr_nonnull(strstr(out, "stats [--json|--prometheus]"));
  free(out);
  ck_assert_int_eq(ctl(&out, "help", "frobnicate", NULL, NULL, NULL), 2);
  ck_assert_ptr_nonnull(strstr(out, "unknown command 'frobnicate'"));
  free(out);
  /* after "--" it is an argument like any other (one too many here) */
  ck_assert_int_eq(ctl(&out, "--socket", sock, "info", "--", "--help"), 2);
  ck_assert_msg(strstr(out, "unexpected argument '--help'") && !strstr(out, "usage:"), "%s",
                out);
  free(out);
  ck_assert_int_eq(ctl(&out, NULL, NULL, NULL, NULL, NULL), 2);
  free(out);
  ck_assert_int_eq(ctl(&out, "frobnicate", NULL, NULL, NULL, NULL), 2);
  ck_assert_ptr_nonnull(strstr(out, "unknown command 'frobnicate'"));
  free(out);
  ck_assert_int_eq(ctl(&out, "in", "m", NULL, NULL, NULL), 2);
  ck_assert_msg(strstr(out, "ambiguous") && strstr(out, "info") && strstr(out, "infer"), "%s",
                out);
  free(out);
  ck_assert_int_eq(ctl(&out, "--bogus", "ping", NULL, NULL, NULL), 2);
  free(out);
  ck_assert_int_eq(ctl(&out, "info", NULL, NULL, NULL, NULL), 2);
  ck_assert_ptr_nonnull(strstr(out, "missing MODEL"));
  free(out);
  ck_assert_int_eq(ctl(&out, "infer", NULL, NULL, NULL, NULL), 2);
  free(out);
  ck_assert_int_eq(ctl(&out, "infer", "m", "--input", "x=foo.txt", NULL), 2);
  ck_assert_ptr_nonnull(strstr(out, "expected [NAME[:DTYPE]=]FILE.npy"));
  free(out);
  ck_assert_int_eq(ctl(&out, "infer", "m", "--input", "x=[[1,2],[3]]", NULL), 2);
  ck_assert_ptr_nonnull(strstr(out, "ragged"));
  free(out);
  ck_assert_int_eq(ctl(&out, "infer", "m", "--input", "=[1]", NULL), 2);
  free(out);
  ck_assert_int_eq(ctl(&out, "infer", "m", "--input", ":int64=[1]", NULL), 2);
  ck_assert_ptr_nonnull(strstr(out, "empty input name"));
  free(out);
  ck_assert_int_eq(ctl(&out, "infer", "m", "--input", "ids:int32=[1.5]", NULL), 2);
  ck_assert_ptr_nonnull(strstr(out, "not an integer"));
  free(out);
  ck_assert_int_eq(ctl(&out, "infer", "m", "--input", "ids:int8=300", NULL), 2);
  ck_assert_ptr_nonnull(strstr(out, "outside the int8 range"));
  free(out);
  ck_assert_int_eq(ctl(&out, "infer", "m", "--input", "x=/nonexistent/a.npy", NULL), 2);
  ck_assert_ptr_nonnull(strstr(out, "cannot open"));
  free(out);
  ck_assert_int_eq(ctl(&out, "infer", "m", "--precision", "fp16", NULL), 2);
  ck_assert_ptr_nonnull(strstr(out, "int8 or fp32"));
  free(out);
  ck_assert_int_eq(ctl(&out, "infer", "m", "--input", NULL, NULL), 2);
  free(out);
  /* a truncated .npy input */
  snprintf(p, sizeof(p), "%s/bad.npy", dir);
  ck_assert_int_eq(tu_write_file(p, "\x93NUMPY\x01\x00\xff\x00{", 11), 0);
  char spec[600];
  snprintf(spec, sizeof(spec), "x=%s", p);
  ck_assert_int_eq(ctl(&out, "infer", "m", "--input", spec, NULL), 2);
  ck_assert_ptr_nonnull(strstr(out, "past the end"));
  free(out);
  /* no daemon: exit 1 with the path and a hint */
  ck_assert_int_eq(ctl(&out, "--socket", sock, "ping", NULL, NULL), 1);
  ck_assert_msg(strstr(out, "cannot connect to") && strstr(out, sock) &&
                    strstr(out, "is dynqd running?"),
                "%s", out);
  free(out);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

static Suite *client_suite(void) {
  Suite *s = suite_create("client");
  TCase *tc = tcase_create("parsers");
  tcase_add_test(tc, npy_accepts_each_dtype);
  tcase_add_test(tc, npy_accepts_shapes_and_key_order);
  tcase_add_test(tc, npy_write_read_roundtrip);
  tcase_add_test(tc, npy_reads_numpy_fixtures);
  tcase_add_test(tc, npy_refuses_bad_files);
  tcase_add_test(tc, npy_refuses_bad_preamble);
  tcase_add_test(tc, json_accepts_nested_arrays);
  tcase_add_test(tc, json_typed_values);
  tcase_add_test(tc, json_refuses_bad_input);
  suite_add_tcase(s, tc);

  tc = tcase_create("library");
  tcase_add_test(tc, connect_errors);
  tcase_add_test(tc, default_socket_order);
  tcase_add_test(tc, socket_search);
  tcase_add_test(tc, strerror_every_code);
  tcase_add_test(tc, fake_skips_noise_and_reassembles);
  tcase_add_test(tc, fake_error_replies);
  tcase_add_test(tc, fake_huge_frame_refused);
  tcase_add_test(tc, fake_garbage_refused);
  tcase_add_test(tc, fake_infer_roundtrip);
  tcase_add_test(tc, fake_call_raw);
  suite_add_tcase(s, tc);

  tc = tcase_create("dynqctl");
  tcase_add_test(tc, dynqctl_usage_errors);
  suite_add_tcase(s, tc);

  tc = tcase_create("daemon");
  tcase_add_checked_fixture(tc, daemon_setup, daemon_teardown);
  tcase_add_test(tc, daemon_library_calls);
  tcase_add_test(tc, daemon_dynqctl);
  tcase_add_test(tc, daemon_dynqctl_infer_model);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(client_suite)
