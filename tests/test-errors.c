/*
 * The error X-macro (dynq/errors.h) and its generated functions: every
 * code has a distinct name and message, names round-trip, errno values
 * get their own names and messages, and unknown codes never give NULL.
 */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "dynq/errors.h"

typedef struct row {
  int code, retry;
  const char *name, *msg;
} row_t;

static const row_t rows[] = {
#define X(name, off, retry, msg) {DYNQ_##name, retry, #name, msg},
  DYNQ_ERRORS(X)
#undef X
};
#define N_ROWS ((int)(sizeof(rows) / sizeof(rows[0])))

START_TEST(codes_are_distinct_and_in_range) {
  for (int i = 0; i < N_ROWS; i++) {
    ck_assert_int_lt(rows[i].code, DYNQ__ERR_BASE);
    ck_assert_int_gt(rows[i].code, DYNQ__ERR_LAST);
    for (int j = 0; j < i; j++) {
      ck_assert_int_ne(rows[i].code, rows[j].code);
      ck_assert_str_ne(rows[i].name, rows[j].name);
    }
  }
}
END_TEST

START_TEST(names_messages_round_trip) {
  for (int i = 0; i < N_ROWS; i++) {
    const row_t *r = &rows[i];
    ck_assert_str_eq(dynq_err_name(r->code), r->name);
    ck_assert_str_eq(dynq_strerror(r->code), r->msg);
    ck_assert_int_eq(dynq_err_from_name(r->name), r->code);
    ck_assert_int_eq(dynq_err_retryable(r->code), r->retry);
    ck_assert_int_eq(r->name[0], 'E');
    ck_assert_uint_gt(strlen(r->msg), 0);
  }
  ck_assert_int_eq(dynq_err_retryable(DYNQ_EOVERLOAD), 1);
  ck_assert_int_eq(dynq_err_retryable(DYNQ_EFORMAT), 0);
}
END_TEST

START_TEST(errno_values) {
  ck_assert_str_eq(dynq_err_name(-ENOENT), "ENOENT");
  ck_assert_int_eq(dynq_err_from_name("ENOENT"), -ENOENT);
  ck_assert_int_eq(dynq_err_from_name("ENOMEM"), -ENOMEM);
  ck_assert_str_eq(dynq_strerror(-ENOENT), strerror(ENOENT));
  /* errno values without a wire name go out as ESYSTEM */
  ck_assert_str_eq(dynq_err_name(-EXDEV), "ESYSTEM");
  ck_assert_int_eq(dynq_err_retryable(-EAGAIN), 1);
  ck_assert_int_eq(dynq_err_retryable(-ENOENT), 0);
}
END_TEST

START_TEST(unknown_codes_never_null) {
  ck_assert_str_eq(dynq_strerror(0), "success");
  ck_assert_str_eq(dynq_err_name(0), "OK");
  ck_assert_str_eq(dynq_strerror(DYNQ__ERR_BASE - 999), "unknown error");
  ck_assert_str_eq(dynq_strerror(5), "unknown error");
  ck_assert_ptr_nonnull(dynq_strerror(-4000)); /* an errno no libc knows */
  ck_assert_ptr_nonnull(strstr(dynq_strerror(-4000), "4000"));
  ck_assert_str_eq(dynq_err_name(DYNQ__ERR_BASE - 999), "ESYSTEM");
  ck_assert_int_eq(dynq_err_from_name("ENOSUCH"), 0);
  ck_assert_int_eq(dynq_err_from_name(""), 0);
  ck_assert_int_eq(dynq_err_from_name(NULL), 0);
  ck_assert_int_eq(dynq_err_from_name("eformat"), 0); /* names are exact */
}
END_TEST

int main(void) {
  Suite *s = suite_create("errors");
  TCase *t = tcase_create("core");
  tcase_add_test(t, codes_are_distinct_and_in_range);
  tcase_add_test(t, names_messages_round_trip);
  tcase_add_test(t, errno_values);
  tcase_add_test(t, unknown_codes_never_null);
  suite_add_tcase(s, t);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf == 0 ? 0 : 1;
}
