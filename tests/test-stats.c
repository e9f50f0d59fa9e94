/*
 * The stats service without a process: histogram buckets and quantiles,
 * counters, and the per-model cost estimate the inline policy uses.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "dynqd.h"

START_TEST(test_hist_small_values_exact) {
  dynqd_hist_t h;
  memset(&h, 0, sizeof(h));
  ck_assert_uint_eq(dynqd__hist_quantile(&h, 0.5), 0);  /* empty */
  for (uint64_t v = 0; v < 8; v++) dynqd__hist_add(&h, v);
  ck_assert_uint_eq(h.count, 8);
  ck_assert_uint_eq(h.sum, 28);
  /* one value per bucket below 8: quantiles are the values themselves */
  ck_assert_uint_eq(dynqd__hist_quantile(&h, 0.0), 0);
  ck_assert_uint_eq(dynqd__hist_quantile(&h, 0.125), 0);
  ck_assert_uint_eq(dynqd__hist_quantile(&h, 0.126), 1);
  ck_assert_uint_eq(dynqd__hist_quantile(&h, 0.5), 3);
  ck_assert_uint_eq(dynqd__hist_quantile(&h, 1.0), 7);
}
END_TEST

START_TEST(test_hist_bucket_bounds) {
  /* Every value lands in a bucket whose upper bound is >= it and within
   * 12.5 % of it (8 sub-buckets per power of two). */
  for (uint64_t v = 1; v < ((uint64_t)1 << 40); v = v * 3 + 1) {
    dynqd_hist_t h;
    memset(&h, 0, sizeof(h));
    dynqd__hist_add(&h, v);
    uint64_t up = dynqd__hist_quantile(&h, 0.5);
    ck_assert_msg(up >= v, "value %llu in a bucket ending at %llu", (unsigned long long)v,
                  (unsigned long long)up);
    ck_assert_msg((double)(up - v) <= 0.125 * (double)v + 1.0, "value %llu: bound %llu too loose",
                  (unsigned long long)v, (unsigned long long)up);
  }
  /* bucket uppers ascend, and the last bucket takes anything */
  for (int i = 1; i < DYNQD_HIST_BUCKETS; i++)
    ck_assert_uint_gt(dynqd__hist_upper(i), dynqd__hist_upper(i - 1));
  dynqd_hist_t h;
  memset(&h, 0, sizeof(h));
  dynqd__hist_add(&h, UINT64_MAX);
  ck_assert_uint_eq(h.b[DYNQD_HIST_BUCKETS - 1], 1);
}
END_TEST

START_TEST(test_hist_quantiles) {
  dynqd_hist_t h;
  memset(&h, 0, sizeof(h));
  for (uint64_t v = 1; v <= 1000; v++) dynqd__hist_add(&h, v);
  uint64_t p50 = dynqd__hist_quantile(&h, 0.50), p90 = dynqd__hist_quantile(&h, 0.90),
           p99 = dynqd__hist_quantile(&h, 0.99);
  /* rank ceil(q * n): the 500th, 900th and 990th value, rounded up to
   * their bucket's bound */
  ck_assert(p50 >= 500 && p50 <= 500 * 1.125);
  ck_assert(p90 >= 900 && p90 <= 900 * 1.125);
  ck_assert(p99 >= 990 && p99 <= 990 * 1.125);
  ck_assert(p50 <= p90 && p90 <= p99);
  ck_assert_uint_eq(h.sum, 500500);
  /* a skewed sample: 99 fast, 1 slow */
  memset(&h, 0, sizeof(h));
  for (int i = 0; i < 99; i++) dynqd__hist_add(&h, 10);
  dynqd__hist_add(&h, 100000);
  ck_assert_uint_eq(dynqd__hist_quantile(&h, 0.99), 10);
  ck_assert_uint_ge(dynqd__hist_quantile(&h, 1.0), 100000);
}
END_TEST

START_TEST(test_counters) {
  dynqd_stats_t st;
  memset(&st, 0, sizeof(st));
  dynqd_mstats_t *a = dynqd__stats_model(&st, "a");
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_eq(dynqd__stats_model(&st, "a"), a);  /* one record per name */
  ck_assert_ptr_eq(dynqd__stats_find(&st, "a"), a);
  ck_assert_ptr_null(dynqd__stats_find(&st, "b"));
  for (int i = 0; i < 20; i++) ck_assert_ptr_nonnull(dynqd__stats_model(&st, i ? "x" : "y"));
  ck_assert_ptr_eq(dynqd__stats_find(&st, "a"), a);  /* stable across growth */
  dynqd__stats_count(&st, a, 0);
  dynqd__stats_count(&st, a, DYNQ_EOVERLOAD);
  dynqd__stats_count(&st, NULL, DYNQ_EDEADLINE);
  ck_assert_uint_eq(st.requests_total, 3);
  ck_assert_uint_eq(st.errors_total, 2);
  ck_assert_uint_eq(st.overloads_total, 1);
  ck_assert_uint_eq(st.timeouts_total, 1);
  ck_assert_uint_eq(a->requests, 2);
  ck_assert_uint_eq(a->errors, 1);
  dynqd__stats_free(&st);
  ck_assert_int_eq(st.n, 0);
}
END_TEST

START_TEST(test_run_samples_and_cost) {
  dynqd_stats_t st;
  memset(&st, 0, sizeof(st));
  dynqd_mstats_t *m = dynqd__stats_model(&st, "m");
  dynqd_run_sample_t r = {0, 5, 100, 1, 1, 1000};  /* 100 us for 1000 elems */
  dynqd__stats_run(&st, m, &r);
  ck_assert_uint_eq(m->queue_us.count, 1);
  ck_assert_uint_eq(m->compute_us.count, 1);
  ck_assert(m->ns_per_elem > 99.9 && m->ns_per_elem < 100.1);
  /* a batched run says nothing about one request's cost */
  dynqd_run_sample_t b = {0, 5, 5000, 4, 1, 1000};
  dynqd__stats_run(&st, m, &b);
  ck_assert(m->ns_per_elem > 99.9 && m->ns_per_elem < 100.1);
  /* a split run counts as its one-thread cost: 50 us on 2 threads = 100 */
  dynqd_run_sample_t sp = {0, 5, 50, 1, 2, 1000};
  dynqd__stats_run(&st, m, &sp);
  ck_assert(m->ns_per_elem > 99.9 && m->ns_per_elem < 100.1);
  /* a slower run moves the average a quarter of the way */
  dynqd_run_sample_t slow = {0, 5, 500, 1, 1, 1000};
  dynqd__stats_run(&st, m, &slow);
  ck_assert(m->ns_per_elem > 199.9 && m->ns_per_elem < 200.1);
  /* a failed run: counted as an error, no compute sample */
  uint64_t nc = m->compute_us.count;
  dynqd_run_sample_t bad = {DYNQ_EDATA, 5, 500, 1, 1, 1000};
  dynqd__stats_run(&st, m, &bad);
  ck_assert_uint_eq(m->compute_us.count, nc);
  ck_assert_uint_eq(m->errors, 1);
  ck_assert_uint_eq(m->requests, 5);
  dynqd__stats_free(&st);
}
END_TEST

int main(void) {
  Suite *s = suite_create("stats");
  TCase *tc = tcase_create("histograms");
  tcase_add_test(tc, test_hist_small_values_exact);
  tcase_add_test(tc, test_hist_bucket_bounds);
  tcase_add_test(tc, test_hist_quantiles);
  tcase_add_test(tc, test_counters);
  tcase_add_test(tc, test_run_samples_and_cost);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
