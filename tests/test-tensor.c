/*
 * Tensors: the dtype table, shape arithmetic and its overflow bounds,
 * allocation (zeroed or not, aligned), clearing, and shape strings.
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "dynq/dynqclient.h"
#include "dynq/errors.h"
#include "tensor.h"

START_TEST(dtype_table) {
  static const struct { dynq_dtype_t dt; const char *name, *alias; size_t size; int pub; } want[] = {
    {DYNQ_DT_F32, "float32", "f32", 4, DYNQ_FLOAT32}, {DYNQ_DT_I8, "int8", "i8", 1, DYNQ_INT8},
    {DYNQ_DT_U8, "uint8", "u8", 1, DYNQ_UINT8},       {DYNQ_DT_I32, "int32", "i32", 4, DYNQ_INT32},
    {DYNQ_DT_I64, "int64", "i64", 8, DYNQ_INT64},
  };
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    ck_assert_int_eq(want[i].dt, want[i].pub);
    ck_assert_str_eq(dynq__dtype_name(want[i].dt), want[i].name);
    ck_assert_uint_eq(dynq__dtype_size(want[i].dt), want[i].size);
    ck_assert_int_eq(dynq__dtype_from_name(want[i].name), want[i].dt);
    ck_assert_int_eq(dynq__dtype_from_name(want[i].alias), want[i].dt);
  }
  ck_assert_int_eq(DYNQ_DT__COUNT, 6);
  ck_assert_uint_eq(dynq__dtype_size(DYNQ_DT_INVALID), 0);
  ck_assert_uint_eq(dynq__dtype_size(DYNQ_DT__COUNT), 0);
  ck_assert_uint_eq(dynq__dtype_size((dynq_dtype_t)-3), 0);
  ck_assert_ptr_nonnull(dynq__dtype_name(DYNQ_DT_INVALID));
  ck_assert_ptr_nonnull(dynq__dtype_name((dynq_dtype_t)99));
  ck_assert_int_eq(dynq__dtype_from_name("float64"), DYNQ_DT_INVALID);
  ck_assert_int_eq(dynq__dtype_from_name(""), DYNQ_DT_INVALID);
  ck_assert_int_eq(dynq__dtype_from_name(NULL), DYNQ_DT_INVALID);
}
END_TEST

START_TEST(numel_bounds) {
  int64_t d[DYNQ_MAX_RANK + 1] = {2, 3, 4};
  ck_assert_int_eq(dynq__shape_numel(0, d), 1);      /* a scalar */
  ck_assert_int_eq(dynq__shape_numel(3, d), 24);
  d[1] = 0;
  ck_assert_int_eq(dynq__shape_numel(3, d), 0);      /* empty */
  d[1] = -1;
  ck_assert_int_eq(dynq__shape_numel(3, d), -1);     /* negative dim */
  ck_assert_int_eq(dynq__shape_numel(-1, d), -1);
  ck_assert_int_eq(dynq__shape_numel(DYNQ_MAX_RANK + 1, d), -1);
  /* exactly the bound, one past it, and products that would overflow int64 */
  int64_t big[2] = {DYNQ_MAX_ELEMS, 1};
  ck_assert_int_eq(dynq__shape_numel(2, big), DYNQ_MAX_ELEMS);
  big[1] = 2;
  ck_assert_int_eq(dynq__shape_numel(2, big), -1);
  int64_t huge[3] = {INT64_MAX, INT64_MAX, 0};
  ck_assert_int_eq(dynq__shape_numel(3, huge), -1);  /* rejected before the 0 */
  int64_t many[8] = {1 << 8, 1 << 8, 1 << 8, 1 << 8, 1, 1, 1, 1};
  ck_assert_int_eq(dynq__shape_numel(8, many), -1);  /* 2^32 > 2^31 */
}
END_TEST

START_TEST(alloc_zeroed_aligned) {
  dynq__tensor_t t;
  int64_t d[2] = {3, 5};
  ck_assert_int_eq(dynq__tensor_alloc(&t, DYNQ_DT_I64, 2, d), 0);
  ck_assert_int_eq(t.owned, 1);
  ck_assert_int_eq(t.rank, 2);
  ck_assert_int_eq(t.dims[0], 3);
  ck_assert_int_eq(t.dims[1], 5);
  ck_assert_int_eq(t.dims[2], 0);
  ck_assert_uint_eq((uintptr_t)t.data % DYNQ_ALIGN, 0);
  ck_assert_uint_eq(dynq__tensor_nbytes(&t), 3 * 5 * 8);
  for (int i = 0; i < 15; i++) ck_assert_int_eq(((int64_t *)t.data)[i], 0);
  dynq__tensor_clear(&t);
  ck_assert_ptr_null(t.data);
  ck_assert_int_eq(t.dtype, DYNQ_DT_INVALID);
  dynq__tensor_clear(&t);  /* twice: harmless */
  dynq__tensor_clear(NULL);
  /* a scalar and an empty tensor still get storage */
  ck_assert_int_eq(dynq__tensor_alloc_uninit(&t, DYNQ_DT_F32, 0, NULL), 0);
  ck_assert_int_eq(dynq__tensor_numel(&t), 1);
  ck_assert_ptr_nonnull(t.data);
  dynq__tensor_clear(&t);
  int64_t e[1] = {0};
  ck_assert_int_eq(dynq__tensor_alloc(&t, DYNQ_DT_U8, 1, e), 0);
  ck_assert_ptr_nonnull(t.data);
  ck_assert_uint_eq(dynq__tensor_nbytes(&t), 0);
  dynq__tensor_clear(&t);
}
END_TEST

START_TEST(alloc_refusals) {
  dynq__tensor_t t = {0};
  int64_t d[2] = {DYNQ_MAX_ELEMS, 2}, neg[1] = {-5};
  ck_assert_int_eq(dynq__tensor_alloc(&t, DYNQ_DT_F32, 2, d), DYNQ_ELIMIT);
  ck_assert_int_eq(dynq__tensor_alloc(&t, DYNQ_DT_F32, 1, neg), DYNQ_ELIMIT);
  ck_assert_int_eq(dynq__tensor_alloc(&t, DYNQ_DT_INVALID, 1, d + 1), DYNQ_EDTYPE);
  ck_assert_int_eq(dynq__tensor_alloc_uninit(&t, (dynq_dtype_t)77, 1, d + 1), DYNQ_EDTYPE);
  ck_assert_int_eq(dynq__tensor_alloc(&t, DYNQ_DT_F32, DYNQ_MAX_RANK + 1, d), DYNQ_ELIMIT);
  ck_assert_ptr_null(t.data); /* nothing allocated on refusal */
  /* a view: nbytes from the shape, not owned, clear leaves the data */
  float buf[6];
  dynq__tensor_t v = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {2, 3}, .data = buf};
  ck_assert_uint_eq(dynq__tensor_nbytes(&v), sizeof(buf));
  dynq__tensor_clear(&v);
  ck_assert_ptr_null(v.data);
  v = (dynq__tensor_t){.dtype = DYNQ_DT_F32, .rank = 1, .dims = {-2}};
  ck_assert_uint_eq(dynq__tensor_nbytes(&v), 0); /* a bad shape has no bytes */
}
END_TEST

START_TEST(shape_strings) {
  char b[64];
  int64_t d[3] = {2, 3, -1};
  ck_assert_str_eq(dynq__shape_str(b, sizeof(b), 3, d), "[2, 3, -1]");
  ck_assert_str_eq(dynq__shape_str(b, sizeof(b), 0, d), "[]");
  char small[5];
  dynq__shape_str(small, sizeof(small), 3, d);  /* truncated, terminated */
  ck_assert_uint_lt(strlen(small), sizeof(small));
  ck_assert_int_eq(strncmp(small, "[2, ", 4), 0);
  char none[1] = {'x'};
  dynq__shape_str(none, 0, 3, d);               /* no room: untouched */
  ck_assert_int_eq(none[0], 'x');
}
END_TEST

int main(void) {
  Suite *s = suite_create("tensor");
  TCase *t = tcase_create("core");
  tcase_add_test(t, dtype_table);
  tcase_add_test(t, numel_bounds);
  tcase_add_test(t, alloc_zeroed_aligned);
  tcase_add_test(t, alloc_refusals);
  tcase_add_test(t, shape_strings);
  suite_add_tcase(s, t);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf == 0 ? 0 : 1;
}
