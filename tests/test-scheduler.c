/*
 * The scheduler without a process: generic jobs through the worker pool,
 * batch formation (compatible jobs only, at most batch_max, the wait
 * counted from the first job's arrival), expiry and cancellation, the
 * queue cap, and the inline policy.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "dynqd.h"

typedef struct tjob {
  dynqd_job_t job;
  int key;              /* compatible when equal; GATE_KEY: waits for g_gate */
  pthread_t ran_on;     /* the thread that ran it */
  int batch_n;          /* how many ran together (0: not run) */
  int running_seen;     /* the scheduler's running count while it ran */
  int expired, done;
  int loop_tries;       /* runs on the loop that outgrew it (OVERRUN_KEY) */
} tjob_t;

static int g_done;

#define GATE_KEY -1
static atomic_int g_gate;     /* a GATE_KEY job runs until this is set */
static atomic_int g_gated;    /* a GATE_KEY job is running */

/* An OVERRUN_KEY job outgrows any run on the loop, as an infer whose cost
 * the estimate missed stops at the loop's caps: nothing done, requeue. */
#define OVERRUN_KEY -2

static void t_run(dynqd_job_t *j) {
  tjob_t *t = (tjob_t *)j;
  if (t->key == OVERRUN_KEY && j->on_loop) {
    t->loop_tries++;
    j->requeue = 1;
    return;
  }
  t->ran_on = pthread_self();
  if (t->key == GATE_KEY) {
    atomic_store(&g_gated, 1);
    while (!atomic_load(&g_gate)) usleep(200);
  }
  t->batch_n = 1;
}
static dynqd_sched_t g_s;

static int t_run_batch(dynqd_job_t **v, int n) {
  pthread_mutex_lock(&g_s.mu);
  int running = g_s.running;
  pthread_mutex_unlock(&g_s.mu);
  if (((tjob_t *)v[0])->key == OVERRUN_KEY && v[0]->on_loop) {
    for (int k = 0; k < n; k++) {
      ((tjob_t *)v[k])->loop_tries++;
      v[k]->requeue = 1;
    }
    return -1;
  }
  for (int k = 0; k < n; k++) {
    ((tjob_t *)v[k])->running_seen = running;
    ((tjob_t *)v[k])->batch_n = n;
    ((tjob_t *)v[k])->ran_on = pthread_self();
  }
  return 0;
}
static int t_compatible(const dynqd_job_t *a, const dynqd_job_t *b) {
  return ((const tjob_t *)a)->key == ((const tjob_t *)b)->key;
}
static void t_expire(dynqd_job_t *j, const char *msg) {
  ck_assert_ptr_nonnull(strstr(msg, "timeout_ms"));
  ((tjob_t *)j)->expired = 1;
}
static void t_done(dynqd_job_t *j) {
  ((tjob_t *)j)->done++;
  g_done++;
}
static const dynqd_job_ops_t ops = {t_run, t_run_batch, t_compatible, t_expire, t_done};

static uv_loop_t g_loop;

static void start(int workers, int qcap) {
  g_done = 0;
  ck_assert_int_eq(uv_loop_init(&g_loop), 0);
  ck_assert_int_eq(dynqd__sched_start(&g_s, &g_loop, workers, qcap, 0, NULL, NULL), 0);
}

static void close_cb(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void stop(void) {
  dynqd__sched_stop(&g_s);
  uv_walk(&g_loop, close_cb, NULL);
  uv_run(&g_loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(&g_loop), 0);
}

/* Run the loop until n jobs came back. */
static void wait_done(int n) {
  while (g_done < n) uv_run(&g_loop, UV_RUN_ONCE);
}

/* Until no job is queued or running: a worker counts itself down just
 * after it hands a job back, so right after the done callbacks the
 * scheduler may not be idle yet (the suite's timeout bounds the wait). */
static void wait_idle(void) {
  while (!dynqd__sched_idle(&g_s)) usleep(100);
}

static void init_job(tjob_t *t, int key, int batch_max, int delay_us) {
  memset(t, 0, sizeof(*t));
  t->key = key;
  t->job.ops = &ops;
  t->job.t_arrive_ns = uv_hrtime();
  t->job.batch_max = batch_max;
  t->job.batch_delay_us = delay_us;
}

START_TEST(test_plain_jobs) {
  start(2, 16);
  tjob_t t[10];
  for (int i = 0; i < 10; i++) {
    init_job(&t[i], i, 0, 0);
    ck_assert_int_eq(dynqd__sched_submit(&g_s, &t[i].job), 0);
  }
  ck_assert_int_eq(dynqd__sched_queued(&g_s), 10);
  ck_assert(!dynqd__sched_idle(&g_s));
  dynqd__sched_flush(&g_s);
  wait_done(10);
  for (int i = 0; i < 10; i++) {
    ck_assert_int_eq(t[i].batch_n, 1);
    ck_assert_int_eq(t[i].done, 1);  /* exactly once */
  }
  ck_assert_int_eq(g_s.outstanding, 0);
  wait_idle();
  stop();
}
END_TEST

START_TEST(test_batch_formation) {
  /* One worker, a long delay: the six like jobs queued together form
   * batches of at most 4; jobs of another model are never merged in. */
  start(1, 64);
  tjob_t a[6], b[2];
  for (int i = 0; i < 6; i++) {
    init_job(&a[i], 1, 4, 300000);
    ck_assert_int_eq(dynqd__sched_submit(&g_s, &a[i].job), 0);
    if (i < 2) {
      init_job(&b[i], 2, 4, 0);
      ck_assert_int_eq(dynqd__sched_submit(&g_s, &b[i].job), 0);
    }
  }
  dynqd__sched_flush(&g_s);
  wait_done(8);
  int fours = 0, twos = 0;
  for (int i = 0; i < 6; i++) {
    ck_assert_int_le(a[i].batch_n, 4);
    fours += a[i].batch_n == 4;
    twos += a[i].batch_n == 2;
  }
  ck_assert_int_eq(fours, 4);
  ck_assert_int_eq(twos, 2);
  ck_assert_int_eq(b[0].batch_n, 2);  /* the two of model 2 together */
  ck_assert_int_eq(b[1].batch_n, 2);
  stop();
}
END_TEST

/* Both workers asleep on the condition variable (bounded wait). */
static void wait_sleeping(int n) {
  for (int i = 0; i < 5000; i++) {
    pthread_mutex_lock(&g_s.mu);
    int s = g_s.sleeping;
    pthread_mutex_unlock(&g_s.mu);
    if (s == n) return;
    usleep(1000);
  }
  ck_abort_msg("workers never went to sleep");
}

static uint64_t woken(void) {
  pthread_mutex_lock(&g_s.mu);
  uint64_t w = g_s.woken;
  pthread_mutex_unlock(&g_s.mu);
  return w;
}

START_TEST(test_wake_per_batch) {
  /* Eight coalescing jobs (batch_max 32, no delay) wake one of two
   * sleeping workers, which takes them as one batch; eight that do not
   * batch wake both.  A queue of two models' bursts, counted as one
   * batch, still runs whole: the worker that took the first batch wakes
   * another for what is left, or takes it next. */
  start(2, 64);
  tjob_t a[8], b[8], c[4], d[4];
  wait_sleeping(2);
  uint64_t w0 = woken();
  for (int i = 0; i < 8; i++) {
    init_job(&a[i], 1, 32, 0);
    ck_assert_int_eq(dynqd__sched_submit(&g_s, &a[i].job), 0);
  }
  dynqd__sched_flush(&g_s);
  ck_assert_uint_eq(woken() - w0, 1);
  wait_done(8);
  for (int i = 0; i < 8; i++) ck_assert_int_eq(a[i].batch_n, 8);

  wait_sleeping(2);
  w0 = woken();
  for (int i = 0; i < 8; i++) {
    init_job(&b[i], 100 + i, 0, 0);
    ck_assert_int_eq(dynqd__sched_submit(&g_s, &b[i].job), 0);
  }
  dynqd__sched_flush(&g_s);
  ck_assert_uint_eq(woken() - w0, 2);
  wait_done(16);

  wait_sleeping(2);
  for (int i = 0; i < 4; i++) {
    init_job(&c[i], 2, 32, 0);
    init_job(&d[i], 3, 32, 0);
  }
  for (int i = 0; i < 4; i++) ck_assert_int_eq(dynqd__sched_submit(&g_s, &c[i].job), 0);
  for (int i = 0; i < 4; i++) ck_assert_int_eq(dynqd__sched_submit(&g_s, &d[i].job), 0);
  dynqd__sched_flush(&g_s);
  wait_done(24);
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(c[i].batch_n, 4);
    ck_assert_int_eq(d[i].batch_n, 4);
    ck_assert_int_eq(c[i].done + d[i].done, 2);
  }
  stop();
}
END_TEST

/* A gated job running on one of two workers, the other asleep; then a
 * job is flushed.  Returns the sleepers that flush woke; *ret_same: the
 * second job ran on the gated job's worker. */
static uint64_t flush_behind_running(int *ret_same) {
  start(2, 16);
  wait_sleeping(2);
  atomic_store(&g_gate, 0);
  atomic_store(&g_gated, 0);
  tjob_t g, b;
  init_job(&g, GATE_KEY, 0, 0);
  ck_assert_int_eq(dynqd__sched_submit(&g_s, &g.job), 0);
  dynqd__sched_flush(&g_s);
  for (int i = 0; i < 5000 && !atomic_load(&g_gated); i++) usleep(1000);
  ck_assert(atomic_load(&g_gated));
  wait_sleeping(1);
  uint64_t w0 = woken();
  init_job(&b, 7, 0, 0);
  ck_assert_int_eq(dynqd__sched_submit(&g_s, &b.job), 0);
  dynqd__sched_flush(&g_s);
  uint64_t w = woken() - w0;
  if (w == 0) {
    /* left to the gated job's worker: not run before the gate opens */
    usleep(20000);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(g_done, 0);
  } else {
    wait_done(1);  /* the woken worker ran it while the gate held the other */
  }
  atomic_store(&g_gate, 1);
  wait_done(2);
  *ret_same = pthread_equal(b.ran_on, g.ran_on);
  stop();
  return w;
}

START_TEST(test_queued_behind_running_wakes_a_sleeper) {
  /* A job queued while the only other worker is busy wakes the sleeping
   * worker, which runs it at once (it never waits for the busy one). */
  int same;
  ck_assert_uint_eq(flush_behind_running(&same), 1);
  ck_assert(!same);
}
END_TEST

START_TEST(test_delay_counted_from_arrival) {
  /* A job that arrived long ago has spent its delay: it runs with what is
   * there (alone), and a like job submitted after it ran is not merged.
   * Counting the delay from when a worker took it would merge them. */
  start(1, 64);
  tjob_t old, late;
  init_job(&old, 1, 4, 2000000);  /* 2 s */
  old.job.t_arrive_ns = uv_hrtime() - 3000000000ull;  /* arrived 3 s ago */
  ck_assert_int_eq(dynqd__sched_submit(&g_s, &old.job), 0);
  dynqd__sched_flush(&g_s);
  wait_done(1);
  init_job(&late, 1, 4, 2000000);
  late.job.t_arrive_ns = uv_hrtime() - 3000000000ull;
  ck_assert_int_eq(dynqd__sched_submit(&g_s, &late.job), 0);
  dynqd__sched_flush(&g_s);
  wait_done(2);
  ck_assert_int_eq(old.batch_n, 1);
  ck_assert_int_eq(late.batch_n, 1);

  /* A fresh job waits (up to its 2 s) and a like one submitted meanwhile
   * joins it. */
  tjob_t first, second;
  init_job(&first, 1, 4, 2000000);
  ck_assert_int_eq(dynqd__sched_submit(&g_s, &first.job), 0);
  dynqd__sched_flush(&g_s);
  uv_sleep(20);
  ck_assert_int_eq(first.done, 0);
  init_job(&second, 1, 4, 2000000);
  ck_assert_int_eq(dynqd__sched_submit(&g_s, &second.job), 0);
  dynqd__sched_flush(&g_s);
  wait_done(4);
  ck_assert_int_eq(first.batch_n, 2);
  ck_assert_int_eq(second.batch_n, 2);
  stop();
}
END_TEST

START_TEST(test_expired_and_cancelled) {
  start(1, 16);
  atomic_int gone;
  atomic_init(&gone, 1);
  tjob_t late, cancelled, ok;
  init_job(&late, 1, 0, 0);
  late.job.deadline_ns = uv_hrtime() - 1;  /* already past */
  init_job(&cancelled, 2, 0, 0);
  cancelled.job.cancel = &gone;
  init_job(&ok, 3, 0, 0);
  ck_assert_int_eq(dynqd__sched_submit(&g_s, &late.job), 0);
  ck_assert_int_eq(dynqd__sched_submit(&g_s, &cancelled.job), 0);
  ck_assert_int_eq(dynqd__sched_submit(&g_s, &ok.job), 0);
  dynqd__sched_flush(&g_s);
  wait_done(3);
  ck_assert_int_eq(late.expired, 1);
  ck_assert_int_eq(late.batch_n, 0);  /* not run */
  ck_assert_int_eq(cancelled.job.skipped, 1);
  ck_assert_int_eq(cancelled.batch_n, 0);
  ck_assert_int_eq(ok.batch_n, 1);
  ck_assert_int_eq(ok.job.skipped, 0);
  stop();
}
END_TEST

START_TEST(test_queue_cap) {
  start(1, 3);
  tjob_t t[4];
  for (int i = 0; i < 3; i++) {
    init_job(&t[i], i, 0, 0);
    ck_assert_int_eq(dynqd__sched_submit(&g_s, &t[i].job), 0);
  }
  init_job(&t[3], 3, 0, 0);
  ck_assert_int_eq(dynqd__sched_submit(&g_s, &t[3].job), DYNQ_EOVERLOAD);
  ck_assert_int_eq(g_s.outstanding, 3);
  dynqd__sched_flush(&g_s);
  wait_done(3);
  ck_assert_int_eq(t[3].done, 0);  /* refused jobs are the caller's */
  stop();
}
END_TEST

START_TEST(test_inline_policy) {
  start(1, 16);
  /* 100 ns/elem x 100 elems = 10 us: within a 50 us limit */
  ck_assert(dynqd__sched_inline_ok(&g_s, 50, 100.0, 100, 1, 0));
  ck_assert(dynqd__sched_inline_ok(&g_s, 50, 100.0, 100, 0, 1));
  ck_assert(!dynqd__sched_inline_ok(&g_s, 0, 100.0, 100, 1, 0));   /* inline off */
  ck_assert(!dynqd__sched_inline_ok(&g_s, 50, 0.0, 100, 1, 0));    /* cost unknown */
  ck_assert(!dynqd__sched_inline_ok(&g_s, 50, 100.0, 1000, 1, 0)); /* 100 us: too big */
  ck_assert(!dynqd__sched_inline_ok(&g_s, 50, 100.0, 100, 2, 0));  /* busy iteration */
  ck_assert(!dynqd__sched_inline_ok(&g_s, 50, 100.0, 100, 1, 2));  /* busy previous one */
  /* a job submitted and not yet back: not idle, so not inline */
  tjob_t t;
  init_job(&t, 1, 0, 0);
  ck_assert_int_eq(dynqd__sched_submit(&g_s, &t.job), 0);
  ck_assert(!dynqd__sched_inline_ok(&g_s, 50, 100.0, 100, 1, 0));
  dynqd__sched_flush(&g_s);
  wait_done(1);
  wait_idle();
  ck_assert(dynqd__sched_inline_ok(&g_s, 50, 100.0, 100, 1, 0));
  /* run inline: on this thread, threads = 1, done called once */
  tjob_t in;
  init_job(&in, 1, 0, 0);
  dynqd__sched_run_inline(&g_s, &in.job);
  ck_assert_int_eq(in.batch_n, 1);
  ck_assert_int_eq(in.done, 1);
  ck_assert_int_eq(in.job.threads, 1);
  stop();
}
END_TEST

START_TEST(test_loop_keeps_first_small_batch) {
  /* Small (loop_ok) jobs of one key, then jobs of another key: the flush
   * runs the first batch here (before it returns, then their done), and
   * hands the second batch and the plain job to the workers. */
  start(2, 64);
  atomic_int gone;
  atomic_init(&gone, 1);
  tjob_t a[5], b[3], plain, late, cancelled;
  for (int i = 0; i < 5; i++) {
    init_job(&a[i], 1, 4, 0);
    a[i].job.loop_ok = 1;
    ck_assert_int_eq(dynqd__sched_submit(&g_s, &a[i].job), 0);
    if (i < 3) {
      init_job(&b[i], 2, 4, 0);
      b[i].job.loop_ok = 1;
      ck_assert_int_eq(dynqd__sched_submit(&g_s, &b[i].job), 0);
    }
  }
  init_job(&plain, 1, 4, 0);  /* compatible, but not small: a worker's */
  ck_assert_int_eq(dynqd__sched_submit(&g_s, &plain.job), 0);
  dynqd__sched_flush(&g_s);
  /* the loop's batch: a[0..3] (batch_max 4), back already */
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(a[i].done, 1);
    ck_assert_int_eq(a[i].batch_n, 4);
    ck_assert(pthread_equal(a[i].ran_on, pthread_self()));
    ck_assert_int_eq(a[i].job.threads, 1);
  }
  ck_assert_uint_eq(g_s.loop_jobs, 4);
  wait_done(4 + 1 + 3 + 1);
  ck_assert(!pthread_equal(a[4].ran_on, pthread_self()));
  ck_assert(!pthread_equal(plain.ran_on, pthread_self()));
  for (int i = 0; i < 3; i++) {
    ck_assert(!pthread_equal(b[i].ran_on, pthread_self()));
    ck_assert_int_eq(b[i].done, 1);
  }
  ck_assert_int_eq(g_s.outstanding, 0);

  /* In the loop's batch, a job cancelled or past its deadline meanwhile
   * is not run (and answered as such), the others are. */
  g_done = 0;
  tjob_t c[2];
  init_job(&late, 3, 4, 0);
  late.job.deadline_ns = uv_hrtime() - 1;
  init_job(&cancelled, 3, 4, 0);
  cancelled.job.cancel = &gone;
  tjob_t *order[4] = {&c[0], &late, &cancelled, &c[1]};
  for (int i = 0; i < 4; i++) {
    if (order[i] == &c[0] || order[i] == &c[1]) init_job(order[i], 3, 4, 0);
    order[i]->job.loop_ok = 1;
    ck_assert_int_eq(dynqd__sched_submit(&g_s, &order[i]->job), 0);
  }
  dynqd__sched_flush(&g_s);
  ck_assert_int_eq(g_done, 4);  /* all back in the flush: none went to a worker */
  ck_assert_int_eq(late.expired, 1);
  ck_assert_int_eq(late.batch_n, 0);
  ck_assert_int_eq(cancelled.job.skipped, 1);
  ck_assert_int_eq(cancelled.batch_n, 0);
  ck_assert_int_eq(c[0].batch_n, 2);
  ck_assert_int_eq(c[1].batch_n, 2);
  ck_assert(pthread_equal(c[1].ran_on, pthread_self()));
  stop();
}
END_TEST

/* n jobs of one key (batch_max 4), submitted and flushed together. */
static void submit_flush(tjob_t *t, int n, int key, int loop_ok, int64_t cost_ns) {
  for (int i = 0; i < n; i++) {
    init_job(&t[i], key, 4, 0);
    t[i].job.loop_ok = loop_ok;
    t[i].job.cost_ns = cost_ns;
    ck_assert_int_eq(dynqd__sched_submit(&g_s, &t[i].job), 0);
  }
  dynqd__sched_flush(&g_s);
}

/* The n jobs ran as one batch with this GEMM split width, done once. */
static void expect_batch(const tjob_t *t, int n, int threads) {
  for (int i = 0; i < n; i++) {
    ck_assert_int_eq(t[i].done, 1);
    ck_assert_int_eq(t[i].batch_n, n);
    ck_assert_int_eq(t[i].job.threads, threads);
  }
}

START_TEST(test_batch_alone_may_split) {
  /* A batch that starts with nothing else queued or running, predicted
   * long enough (200 us in all), gets the worker count as its GEMM split
   * width, on the loop as on a worker; a short one, one of unknown cost,
   * and one that starts next to a running job get 1. */
  start(2, 64);
  tjob_t a[3], b[3], gate;
  submit_flush(a, 3, 1, 1, 50000);  /* the loop's, short: 3 x 50 us */
  expect_batch(a, 3, 1);
  submit_flush(a, 3, 1, 1, 100000);  /* the loop's, 3 x 100 us */
  expect_batch(a, 3, 2);
  for (int i = 0; i < 3; i++) {
    ck_assert(pthread_equal(a[i].ran_on, pthread_self()));
    ck_assert_int_eq(a[i].running_seen, 1);  /* counted: no worker splits beside it */
  }
  g_done = 0;
  submit_flush(b, 3, 2, 0, 100000);  /* a worker's, the other worker idle */
  wait_done(3);
  expect_batch(b, 3, 2);
  submit_flush(b, 3, 2, 0, 0);  /* cost unknown */
  wait_done(6);
  expect_batch(b, 3, 1);

  /* Next to a running job: one thread, on the loop and on a worker. */
  atomic_store(&g_gate, 0);
  atomic_store(&g_gated, 0);
  init_job(&gate, GATE_KEY, 0, 0);
  ck_assert_int_eq(dynqd__sched_submit(&g_s, &gate.job), 0);
  dynqd__sched_flush(&g_s);
  while (!atomic_load(&g_gated)) usleep(100);
  submit_flush(a, 3, 1, 1, 100000);
  expect_batch(a, 3, 1);
  submit_flush(b, 3, 3, 0, 100000);
  wait_done(6 + 3 + 3);
  expect_batch(b, 3, 1);
  ck_assert(!pthread_equal(b[0].ran_on, pthread_self()));
  atomic_store(&g_gate, 1);
  wait_done(6 + 3 + 3 + 1);
  stop();
}
END_TEST

START_TEST(test_overrun_on_the_loop_goes_to_a_worker) {
  /* A job the loop runs inline that outgrows it is not done there: run
   * once more by a worker after the next flush, then done once. */
  start(1, 16);
  tjob_t x;
  init_job(&x, OVERRUN_KEY, 0, 0);
  ck_assert_int_eq(dynqd__sched_run_inline(&g_s, &x.job), 1);
  ck_assert_int_eq(x.done, 0);
  ck_assert_int_eq(x.loop_tries, 1);
  ck_assert_uint_eq(g_s.handoffs, 1);
  ck_assert_int_eq(dynqd__sched_queued(&g_s), 1);
  dynqd__sched_flush(&g_s);
  wait_done(1);
  ck_assert_int_eq(x.done, 1);
  ck_assert_int_eq(x.batch_n, 1);
  ck_assert(!pthread_equal(x.ran_on, pthread_self()));
  ck_assert_int_eq(x.job.on_loop, 0);
  ck_assert_int_eq(x.job.requeue, 0);
  ck_assert_int_eq(x.job.loop_ok, 0);
  /* The loop's batch: the merged run outgrows the loop; none is run alone
   * there (each would pay the caps again), all go to a worker, which
   * merges them. */
  g_done = 0;
  tjob_t t[3];
  for (int i = 0; i < 3; i++) {
    init_job(&t[i], OVERRUN_KEY, 4, 0);
    t[i].job.loop_ok = 1;
    ck_assert_int_eq(dynqd__sched_submit(&g_s, &t[i].job), 0);
  }
  dynqd__sched_flush(&g_s);
  /* (the flush's collect may already bring them back from the worker) */
  ck_assert_uint_eq(g_s.loop_jobs, 0);  /* none counted as run by the loop */
  wait_done(3);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(t[i].loop_tries, 1);
    ck_assert_int_eq(t[i].done, 1);
    ck_assert_int_eq(t[i].batch_n, 3);
    ck_assert(!pthread_equal(t[i].ran_on, pthread_self()));
  }
  ck_assert_uint_eq(g_s.handoffs, 4);
  ck_assert_int_eq(g_s.outstanding, 0);  /* (running may lag: a worker counts down after) */
  stop();
}
END_TEST

START_TEST(test_stop_runs_nothing_on_the_loop) {
  /* Jobs still pending at stop (the loop is gone) all go to workers. */
  start(1, 16);
  tjob_t t[3];
  for (int i = 0; i < 3; i++) {
    init_job(&t[i], 1, 4, 0);
    t[i].job.loop_ok = 1;
    ck_assert_int_eq(dynqd__sched_submit(&g_s, &t[i].job), 0);
  }
  dynqd__sched_stop(&g_s);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(t[i].batch_n, 3);
    ck_assert(!pthread_equal(t[i].ran_on, pthread_self()));
  }
  uv_walk(&g_loop, close_cb, NULL);
  uv_run(&g_loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(&g_loop), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("scheduler");
  TCase *tc = tcase_create("jobs");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_plain_jobs);
  tcase_add_test(tc, test_batch_formation);
  tcase_add_test(tc, test_wake_per_batch);
  tcase_add_test(tc, test_queued_behind_running_wakes_a_sleeper);
  tcase_add_test(tc, test_delay_counted_from_arrival);
  tcase_add_test(tc, test_expired_and_cancelled);
  tcase_add_test(tc, test_queue_cap);
  tcase_add_test(tc, test_inline_policy);
  tcase_add_test(tc, test_loop_keeps_first_small_batch);
  tcase_add_test(tc, test_batch_alone_may_split);
  tcase_add_test(tc, test_overrun_on_the_loop_goes_to_a_worker);
  tcase_add_test(tc, test_stop_runs_nothing_on_the_loop);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
