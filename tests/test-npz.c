/* .npz reading and writing (client/npz.c): numpy's own files (made by
 * tests/fixtures/make_npz.py), round trips both ways, and hostile images. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "npz.h"
#include "testutil.h"

static void *fixture(const char *name, size_t *ret_n) {
  char rel[256];
  snprintf(rel, sizeof(rel), "tests/fixtures/npz/%s", name);
  void *p = tu_read_file(tu_src(rel), ret_n);
  ck_assert_msg(p != NULL, "cannot read fixture %s", rel);
  return p;
}

static void check_arrays(const dynq__npz_t *z) {
  ck_assert_int_eq(z->n, 5);
  const dynq_tensor_t *x = dynq__npz_find(z, "x");
  ck_assert_ptr_nonnull(x);
  ck_assert_int_eq(x->dtype, DYNQ_FLOAT32);
  ck_assert_int_eq(x->rank, 2);
  ck_assert_int_eq(x->shape[0], 2);
  ck_assert_int_eq(x->shape[1], 3);
  for (int i = 0; i < 6; i++) ck_assert(((float *)x->data)[i] == (float)i);
  const dynq_tensor_t *n = dynq__npz_find(z, "n");
  ck_assert_ptr_nonnull(n);
  ck_assert_int_eq(n->dtype, DYNQ_INT64);
  for (int i = 0; i < 4; i++) ck_assert_int_eq(((int64_t *)n->data)[i], 10 + i);
  const dynq_tensor_t *s = dynq__npz_find(z, "a/b:0");
  ck_assert_ptr_nonnull(s);
  ck_assert_int_eq(s->rank, 0);
  ck_assert_int_eq(s->dtype, DYNQ_UINT8);
  ck_assert_int_eq(((uint8_t *)s->data)[0], 7);
  const dynq_tensor_t *i8 = dynq__npz_find(z, "i8");
  ck_assert_ptr_nonnull(i8);
  ck_assert_int_eq(((int8_t *)i8->data)[0], -1);
  const dynq_tensor_t *i4 = dynq__npz_find(z, "i4");
  ck_assert_ptr_nonnull(i4);
  ck_assert_int_eq(((int32_t *)i4->data)[1], 5);
  ck_assert_ptr_null(dynq__npz_find(z, "missing"));
}

START_TEST(reads_numpy_files) {
  const char *files[] = { "stored.npz", "deflated.npz" };
  for (int f = 0; f < 2; f++) {
    size_t len;
    void *buf = fixture(files[f], &len);
    dynq__npz_t z;
    char err[256] = "";
    ck_assert_msg(dynq__npz_parse(buf, len, &z, err, sizeof(err)) == 0, "%s: %s", files[f], err);
    check_arrays(&z);
    dynq__npz_free(&z);
    ck_assert_int_eq(z.n, 0);
    free(buf);
  }
  dynq__npz_t z;
  char err[256] = "";
  ck_assert_int_eq(dynq__npz_load(tu_src("tests/fixtures/npz/empty.npz"), &z, err, sizeof(err)), 0);
  ck_assert_int_eq(z.n, 0);
  dynq__npz_free(&z);
}
END_TEST

START_TEST(refuses_what_it_cannot_read) {
  char err[512] = "";
  dynq__npz_t z;
  int rc = dynq__npz_load(tu_src("tests/fixtures/npz/object.npz"), &z, err, sizeof(err));
  ck_assert_int_eq(rc, DYNQ_EDTYPE);
  ck_assert_msg(strstr(err, "'s'") && strstr(err, "object.npz"), "%s", err);
  rc = dynq__npz_load(tu_src("tests/fixtures/npz/notnpy.npz"), &z, err, sizeof(err));
  ck_assert_int_eq(rc, DYNQ_EFORMAT);
  ck_assert_msg(strstr(err, "readme.txt"), "%s", err);
  rc = dynq__npz_load(tu_src("tests/fixtures/mlp_x.npy"), &z, err, sizeof(err));
  ck_assert_int_eq(rc, DYNQ_EFORMAT);
  ck_assert_msg(strstr(err, "not an .npz"), "%s", err);
  rc = dynq__npz_load("/nonexistent/x.npz", &z, err, sizeof(err));
  ck_assert_int_eq(rc, -ENOENT);
  ck_assert_msg(strstr(err, "/nonexistent/x.npz"), "%s", err);
}
END_TEST

/* Offset of the first central directory entry of a fixture. */
static size_t central(const uint8_t *b, size_t len) {
  size_t e = len - 22;
  return (size_t)b[e + 16] | (size_t)b[e + 17] << 8 | (size_t)b[e + 18] << 16 |
         (size_t)b[e + 19] << 24;
}

START_TEST(hostile_images) {
  const char *files[] = { "stored.npz", "deflated.npz" };
  for (int f = 0; f < 2; f++) {
    size_t len;
    uint8_t *buf = fixture(files[f], &len);
    uint8_t *cp = malloc(len);
    dynq__npz_t z;
    char err[256];
    /* every truncation fails cleanly */
    for (size_t n = 0; n < len; n++) {
      memcpy(cp, buf, n);
      ck_assert_msg(dynq__npz_parse(cp, n, &z, err, sizeof(err)) != 0, "%s cut at %zu parsed",
                    files[f], n);
    }
    /* every byte flipped: no crash; what parses is still five arrays
     * (a flip in a field nobody reads, like a timestamp) */
    for (size_t i = 0; i < len; i++) {
      memcpy(cp, buf, len);
      cp[i] ^= 0x5a;
      if (dynq__npz_parse(cp, len, &z, err, sizeof(err)) == 0) {
        ck_assert_int_eq(z.n, 5);
        dynq__npz_free(&z);
      } else {
        ck_assert(err[0] != 0);
      }
    }
    size_t c = central(buf, len);
    /* an unknown compression method names the member */
    memcpy(cp, buf, len);
    cp[c + 10] = 12;
    ck_assert_int_eq(dynq__npz_parse(cp, len, &z, err, sizeof(err)), DYNQ_EFORMAT);
    ck_assert_msg(strstr(err, "method 12") && strstr(err, ".npy"), "%s", err);
    /* an unpacked size past the bound */
    memcpy(cp, buf, len);
    cp[c + 24] = cp[c + 25] = cp[c + 26] = 0xfe;
    cp[c + 27] = 0xff;
    ck_assert_int_eq(dynq__npz_parse(cp, len, &z, err, sizeof(err)), DYNQ_ELIMIT);
    /* the local header offset pointing past the directory */
    memcpy(cp, buf, len);
    cp[c + 42] = 0xff;
    cp[c + 43] = 0xff;
    ck_assert_int_eq(dynq__npz_parse(cp, len, &z, err, sizeof(err)), DYNQ_EFORMAT);
    free(cp);
    free(buf);
  }
  /* a directory claiming more members than the bound */
  size_t len;
  uint8_t *buf = fixture("empty.npz", &len);
  dynq__npz_t z;
  char err[256];
  buf[8] = buf[10] = 0xff;
  buf[9] = buf[11] = 0x0f;
  ck_assert_int_eq(dynq__npz_parse(buf, len, &z, err, sizeof(err)), DYNQ_ELIMIT);
  free(buf);
  ck_assert_int_eq(dynq__npz_parse("", 0, &z, err, sizeof(err)), DYNQ_EFORMAT);
}
END_TEST

START_TEST(write_round_trip) {
  char *dir = tu_mkdtemp();
  char path[512], err[256] = "";
  snprintf(path, sizeof(path), "%s/000000.npz", dir);
  float x[6] = { 1.5f, -2, 3, 4, 5, 6 };
  int64_t ids[2] = { -7, 1LL << 40 };
  dynq_tensor_t t[2] = {
    { .name = "input", .dtype = DYNQ_FLOAT32, .rank = 3, .shape = { 1, 2, 3 }, .data = x,
      .nbytes = sizeof(x) },
    { .name = "ids", .dtype = DYNQ_INT64, .rank = 1, .shape = { 2 }, .data = ids,
      .nbytes = sizeof(ids) },
  };
  ck_assert_msg(dynq__npz_write(path, 2, t, err, sizeof(err)) == 0, "%s", err);
  dynq__npz_t z;
  ck_assert_msg(dynq__npz_load(path, &z, err, sizeof(err)) == 0, "%s", err);
  ck_assert_int_eq(z.n, 2);
  ck_assert_str_eq(z.t[0].name, "input");
  ck_assert_int_eq(z.t[0].rank, 3);
  ck_assert_int_eq(z.t[0].shape[2], 3);
  ck_assert_mem_eq(z.t[0].data, x, sizeof(x));
  ck_assert_mem_eq(z.t[1].data, ids, sizeof(ids));
  dynq__npz_free(&z);
  /* numpy reads what we wrote */
  char code[1024];
  snprintf(code, sizeof(code),
           "import numpy as np, sys\n"
           "z = np.load('%s')\n"
           "assert list(z.keys()) == ['input', 'ids'], list(z.keys())\n"
           "assert z['input'].dtype == np.float32 and z['input'].shape == (1, 2, 3)\n"
           "assert z['input'][0, 0, 0] == 1.5 and z['ids'][1] == 1 << 40\n",
           path);
  char *argv[] = { "/usr/bin/python3", "-c", code, NULL };
  char *out = NULL;
  ck_assert_msg(tu_run(argv, &out) == 0, "numpy could not read our npz: %s", out);
  free(out);
  /* refusals */
  t[1].name = "input";
  ck_assert_int_eq(dynq__npz_write(path, 2, t, err, sizeof(err)), DYNQ_EPARAMS);
  ck_assert_msg(strstr(err, "'input' given twice"), "%s", err);
  t[1].name = NULL;
  ck_assert_int_eq(dynq__npz_write(path, 2, t, err, sizeof(err)), DYNQ_EPARAMS);
  t[1].name = "ids";
  snprintf(path, sizeof(path), "%s/no/such/dir.npz", dir);
  ck_assert_int_eq(dynq__npz_write(path, 2, t, err, sizeof(err)), -ENOENT);
  ck_assert_msg(strstr(err, "no/such/dir.npz"), "%s", err);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("npz");
  TCase *t = tcase_create("core");
  tcase_add_test(t, reads_numpy_files);
  tcase_add_test(t, refuses_what_it_cannot_read);
  tcase_add_test(t, hostile_images);
  tcase_add_test(t, write_round_trip);
  suite_add_tcase(s, t);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf == 0 ? 0 : 1;
}
