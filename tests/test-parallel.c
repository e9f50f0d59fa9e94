/*
 * lib/parallel (the thread team) and the QLinear splits that use it:
 * every task runs exactly once on at most nthreads threads, concurrent
 * and nested callers neither deadlock nor lose tasks, and a QLinear run
 * with 1, 2 or 3 threads is bit-identical to one unsplit GEMM.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dynq/errors.h"
#include "kernels/kernels.h"
#include "model.h"
#include "ops.h"
#include "parallel.h"
#include "testutil.h"

/* ---- thread ids: a small dense id per thread that ever runs a task ---- */

#define MAX_IDS 256
static _Atomic int next_id;
static _Thread_local int my_id = -1;

static int thread_id(void) {
  if (my_id < 0) my_id = atomic_fetch_add(&next_id, 1);
  return my_id;
}

typedef struct count_ctx {
  int64_t ntasks;
  _Atomic int *hits;            /* [ntasks] */
  _Atomic unsigned char seen[MAX_IDS];
  int spin;                     /* a little work per task */
  _Atomic int bad_task;         /* a task index out of range was passed */
} count_ctx_t;

static void count_task(void *ctx, int64_t t) {
  /* no ck_assert here: it is slow on helper threads; record, check later */
  count_ctx_t *c = ctx;
  if (t < 0 || t >= c->ntasks) {
    atomic_store(&c->bad_task, 1);
    return;
  }
  atomic_fetch_add(&c->hits[t], 1);
  int id = thread_id();
  atomic_store(&c->seen[id < MAX_IDS ? id : MAX_IDS - 1], 1);
  volatile unsigned x = 0;
  for (int i = 0; i < c->spin; i++) x += (unsigned)i;
  (void)x;
}

/* dynq__parallel_for's answer in this thread's last run_counted: 1 if it ran on the
 * team (per thread: concurrent_callers runs run_counted from several). */
static _Thread_local int last_split;

/* Run one parallel_for and check: each task once, threads used <= limit.
 * Returns how many distinct threads ran tasks. */
static int run_counted(int nthreads, int64_t ntasks, int spin) {
  count_ctx_t *c = calloc(1, sizeof(*c));
  ck_assert_ptr_nonnull(c);
  c->ntasks = ntasks;
  c->spin = spin;
  c->hits = calloc((size_t)(ntasks > 0 ? ntasks : 1), sizeof(*c->hits));
  ck_assert_ptr_nonnull(c->hits);
  last_split = dynq__parallel_for(nthreads, ntasks, count_task, c);
  ck_assert_msg(!atomic_load(&c->bad_task), "task index out of [0, %lld)", (long long)ntasks);
  for (int64_t t = 0; t < ntasks; t++)
    ck_assert_msg(atomic_load(&c->hits[t]) == 1, "nthreads %d ntasks %lld: task %lld ran %d times",
                  nthreads, (long long)ntasks, (long long)t, atomic_load(&c->hits[t]));
  int used = 0;
  for (int i = 0; i < MAX_IDS; i++) used += atomic_load(&c->seen[i]);
  int limit = nthreads < 1 ? 1 : nthreads;
  if (limit > dynq__parallel_max_threads()) limit = dynq__parallel_max_threads();
  ck_assert_msg(used <= limit, "nthreads %d ntasks %lld: %d threads ran tasks", nthreads,
                (long long)ntasks, used);
  if (ntasks == 0) ck_assert_int_eq(used, 0);
  free(c->hits);
  free(c);
  return used;
}

/* Helpers the team may hold after a test that allowed `n`: with CK_FORK=no
 * (valgrind) the tests share one process, so earlier tests count too. */
static int helpers_start = -1;
static int helpers_max(int n) { return helpers_start > n ? helpers_start : n; }
static void note_helpers(void) { helpers_start = dynq__parallel_helpers(); }

START_TEST(every_task_once) {
  dynq__parallel_set_max_threads(4);
  static const int nts[] = {-1, 0, 1, 2, 3, 4, 5, 8, 64, 1000};
  static const int64_t nks[] = {-5, 0, 1, 2, 3, 4, 5, 7, 16, 17, 100, 1000, 20000};
  for (size_t i = 0; i < sizeof(nts) / sizeof(nts[0]); i++)
    for (size_t j = 0; j < sizeof(nks) / sizeof(nks[0]); j++)
      for (int rep = 0; rep < 3; rep++) run_counted(nts[i], nks[j], rep * 200);
  ck_assert_int_le(dynq__parallel_helpers(), helpers_max(3));
  dynq__parallel_set_max_threads(0);
}
END_TEST

/* More tasks than one call hands out one by one (65535): they go out
 * in groups, each task still exactly once. */
START_TEST(many_tasks_grouped) {
  dynq__parallel_set_max_threads(3);
  static const int64_t nks[] = {65535, 65536, 131071, 131072, 200003};
  for (size_t j = 0; j < sizeof(nks) / sizeof(nks[0]); j++) {
    run_counted(2, nks[j], 0);
    run_counted(3, nks[j], 0);
  }
  dynq__parallel_set_max_threads(0);
}
END_TEST

/* Profiling counts what ran on the team, and only while it is on. */
START_TEST(profile_counts) {
  dynq__parallel_set_max_threads(2);
  dynq__parallel_prof_t p;
  dynq__parallel_prof_enable(1);
  dynq__parallel_prof_take(&p); /* start from zero */
  run_counted(2, 64, 2000);
  ck_assert_int_eq(last_split, 1);
  run_counted(1, 64, 0); /* serial: not a team call */
  dynq__parallel_prof_take(&p);
  ck_assert_int_eq(p.calls, 1);
  ck_assert_int_eq(p.tasks, 64);
  ck_assert_int_ge(p.helper_tasks, 0);
  ck_assert_int_le(p.helper_tasks, 64);
  ck_assert_int_gt(p.task_ns, 0);
  /* two threads: the makespan is at least half the work and at most all */
  ck_assert_int_ge(2 * p.span_ns, p.task_ns);
  ck_assert_int_le(p.span_ns, p.task_ns);
  ck_assert_int_gt(p.call_ns, 0);
  dynq__parallel_prof_take(&p); /* taking resets */
  ck_assert_int_eq(p.calls, 0);
  ck_assert_int_eq(p.task_ns, 0);
  dynq__parallel_prof_enable(0);
  run_counted(2, 64, 100);
  dynq__parallel_prof_take(&p);
  ck_assert_int_eq(p.calls, 0);
  ck_assert_int_eq(p.tasks, 0);
  dynq__parallel_set_max_threads(0);
}
END_TEST

/* dynq__parallel_for says whether the call went to the team (the
 * executor sums it into dynq__run_result_t.splits, what dynqd reports as
 * "threads"); a call run on the caller alone says 0. */
START_TEST(splits_counted) {
  dynq__parallel_set_max_threads(2);
  run_counted(1, 100, 0);   /* one thread asked for */
  ck_assert_int_eq(last_split, 0);
  run_counted(2, 1, 0);     /* one task */
  ck_assert_int_eq(last_split, 0);
  run_counted(2, 0, 0);     /* nothing to do */
  ck_assert_int_eq(last_split, 0);
  run_counted(2, 64, 100);  /* the team is free: it splits */
  ck_assert_int_eq(last_split, 1);
  dynq__parallel_set_max_threads(1);
  run_counted(2, 64, 0);    /* capped at one thread */
  ck_assert_int_eq(last_split, 0);
  dynq__parallel_set_max_threads(0);
}
END_TEST

START_TEST(cap_limits_threads) {
  /* cap 1: the caller alone runs everything */
  int prev = dynq__parallel_set_max_threads(1);
  ck_assert_int_ge(prev, 1);
  ck_assert_int_eq(dynq__parallel_max_threads(), 1);
  int before = dynq__parallel_helpers();
  for (int r = 0; r < 20; r++) ck_assert_int_eq(run_counted(4, 64, 1000), 1);
  ck_assert_int_eq(dynq__parallel_helpers(), before);
  /* clamped, and <= 0 restores the default */
  dynq__parallel_set_max_threads(100000);
  ck_assert_int_eq(dynq__parallel_max_threads(), DYNQ_PARALLEL_MAX_THREADS);
  dynq__parallel_set_max_threads(0);
  ck_assert_int_ge(dynq__parallel_max_threads(), 1);
  ck_assert_int_le(dynq__parallel_max_threads(), DYNQ_PARALLEL_MAX_THREADS);
  /* cap 2 with 3 requested: at most 2 threads and 1 helper */
  dynq__parallel_set_max_threads(2);
  for (int r = 0; r < 20; r++) run_counted(3, 100, 2000);
  ck_assert_int_le(dynq__parallel_helpers(), helpers_max(1));
}
END_TEST

/* Two tasks that can only finish if they run at the same time: proves a
 * helper really takes part.  A timed wait turns a failure into an error
 * instead of a hang. */
typedef struct rendezvous {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int arrived;
  int timed_out;
} rendezvous_t;

static void meet_task(void *ctx, int64_t t) {
  rendezvous_t *r = ctx;
  (void)t;
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 30;
  pthread_mutex_lock(&r->mu);
  r->arrived++;
  pthread_cond_broadcast(&r->cv);
  while (r->arrived < 2 && !r->timed_out)
    if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) == ETIMEDOUT) r->timed_out = 1;
  pthread_mutex_unlock(&r->mu);
}

START_TEST(helpers_really_run) {
  dynq__parallel_set_max_threads(2);
  for (int rep = 0; rep < 50; rep++) {
    rendezvous_t r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    dynq__parallel_for(2, 2, meet_task, &r);
    ck_assert_msg(!r.timed_out, "rep %d: the two tasks never ran at the same time", rep);
    ck_assert_int_eq(r.arrived, 2);
  }
  ck_assert_int_ge(dynq__parallel_helpers(), 1);
}
END_TEST

/* A task that itself calls parallel_for: the team is busy (owned by the
 * outer call), so the inner call runs serially instead of deadlocking. */
typedef struct nest_ctx {
  _Atomic int outer_hits[8];
  _Atomic int inner_total;
} nest_ctx_t;

static void inner_task(void *ctx, int64_t t) {
  nest_ctx_t *n = ctx;
  (void)t;
  atomic_fetch_add(&n->inner_total, 1);
}

static void outer_task(void *ctx, int64_t t) {
  nest_ctx_t *n = ctx;
  atomic_fetch_add(&n->outer_hits[t], 1);
  dynq__parallel_for(2, 10, inner_task, n);
}

START_TEST(nested_calls) {
  dynq__parallel_set_max_threads(2);
  for (int rep = 0; rep < 100; rep++) {
    nest_ctx_t n;
    memset(&n, 0, sizeof(n));
    dynq__parallel_for(2, 8, outer_task, &n);
    for (int i = 0; i < 8; i++) {
      int hits = atomic_load(&n.outer_hits[i]);
      ck_assert_int_eq(hits, 1);
    }
    int inner = atomic_load(&n.inner_total);
    ck_assert_int_eq(inner, 80);
  }
}
END_TEST

/* Four threads calling at once (the daemon's workers): one owns the team,
 * the others run serially; every call still runs each task once. */
static void *caller_main(void *arg) {
  int seed = (int)(intptr_t)arg;
  for (int i = 0; i < 300; i++) {
    int nt = 1 + (seed + i) % 4;
    int64_t nk = (seed * 7 + i * 13) % 97;
    run_counted(nt, nk, (i % 3) * 300);
  }
  return NULL;
}

START_TEST(concurrent_callers) {
  dynq__parallel_set_max_threads(3);
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    ck_assert_int_eq(pthread_create(&th[i], NULL, caller_main, (void *)(intptr_t)i), 0);
  for (int i = 0; i < 4; i++) ck_assert_int_eq(pthread_join(th[i], NULL), 0);
  ck_assert_int_le(dynq__parallel_helpers(), helpers_max(2));
}
END_TEST

/* ---- QLinear with opts.threads = 1, 2, 3: identical bytes ---- */

typedef struct qmodel {
  int64_t K, N;
  int8_t *packed;
  int32_t *colsum;
  float *wscale, *bias;
  char *dir;
  char path[512];
  dynq__model_t *m;
} qmodel_t;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 32);
}
static float frnd(void) { return (float)(rnd() & 0xffffff) / 16777216.0f - 0.5f; }

static void qmodel_build(qmodel_t *q, int64_t K, int64_t N, int act) {
  memset(q, 0, sizeof(*q));
  q->K = K;
  q->N = N;
  int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG), Np = dynq__round_up(N, DYNQ_QGEMM_NR);
  int8_t *W = malloc((size_t)(N * K));
  q->packed = malloc((size_t)(Np * Kp));
  q->colsum = malloc(sizeof(int32_t) * (size_t)N);
  q->wscale = malloc(sizeof(float) * (size_t)N);
  q->bias = malloc(sizeof(float) * (size_t)N);
  ck_assert(W && q->packed && q->colsum && q->wscale && q->bias);
  for (int64_t n = 0; n < N; n++) {
    int32_t cs = 0;
    for (int64_t k = 0; k < K; k++) {
      W[n * K + k] = (int8_t)((int)(rnd() % 255) - 127);
      cs += W[n * K + k];
    }
    q->colsum[n] = cs;
    q->wscale[n] = (0.5f + frnd()) / 127.0f / 8.0f;
    q->bias[n] = frnd();
  }
  dynq__pack_weights(N, K, W, q->packed);
  free(W);

  dynq__value_t vals[6] = {
    {.name = "x", .dtype = DYNQ_DT_F32, .rank = 2, .dims = {-1, K}},
    {.name = "wq", .dtype = DYNQ_DT_I8, .rank = 1, .dims = {Np * Kp}, .data = q->packed,
     .nbytes = (size_t)(Np * Kp)},
    {.name = "colsum", .dtype = DYNQ_DT_I32, .rank = 1, .dims = {N}, .data = q->colsum,
     .nbytes = sizeof(int32_t) * (size_t)N},
    {.name = "wscale", .dtype = DYNQ_DT_F32, .rank = 1, .dims = {N}, .data = q->wscale,
     .nbytes = sizeof(float) * (size_t)N},
    {.name = "bias", .dtype = DYNQ_DT_F32, .rank = 1, .dims = {N}, .data = q->bias,
     .nbytes = sizeof(float) * (size_t)N},
    {.name = "y", .dtype = DYNQ_DT_F32, .rank = 2, .dims = {-1, N}},
  };
  int32_t in[5] = {0, 1, 2, 3, 4}, out[1] = {5}, g_in[1] = {0}, g_out[1] = {5};
  dynq__attr_t attrs[3] = {{.name = "k", .type = DYNQ_ATTR_INT, .i = K},
                           {.name = "n", .type = DYNQ_ATTR_INT, .i = N},
                           {.name = "act", .type = DYNQ_ATTR_INT, .i = act}};
  dynq__node_t node = {.op = DYNQ_OP_QLINEAR, .name = "fc", .n_in = 5, .n_out = 1, .in = in,
                       .out = out, .n_attr = 3, .attr = attrs};
  dynq__graph_t g = {.n_values = 6, .values = vals, .n_nodes = 1, .nodes = &node,
                     .n_inputs = 1, .inputs = g_in, .n_outputs = 1, .outputs = g_out,
                     .producer = "test-parallel"};
  q->dir = tu_mkdtemp();
  ck_assert_ptr_nonnull(q->dir);
  snprintf(q->path, sizeof(q->path), "%s/q.dynq", q->dir);
  char err[256] = "";
  ck_assert_msg(dynq__graph_write(&g, q->path, err, sizeof(err)) == 0, "write: %s", err);
  ck_assert_msg(dynq__model_open(q->path, &q->m, err, sizeof(err)) == 0, "open: %s", err);
}

static void qmodel_free(qmodel_t *q) {
  q->m = dynq__model_unref(q->m);
  tu_rmtree(q->dir);
  free(q->dir);
  free(q->packed);
  free(q->colsum);
  free(q->wscale);
  free(q->bias);
}

static float *run_q(qmodel_t *q, const dynq__kernel_t *kr, const float *x, int64_t M,
                    int threads) {
  dynq__tensor_t in = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {M, q->K}, .data = (void *)x};
  dynq__tensor_t out[1];
  dynq__run_opts_t o = {.precision = DYNQ_PRECISION_INT8, .kernel = kr, .threads = threads};
  char err[256] = "";
  ck_assert_msg(dynq__model_run(q->m, &o, &in, out, err, sizeof(err)) == 0, "run: %s", err);
  ck_assert_int_eq(out[0].rank, 2);
  ck_assert_int_eq(out[0].dims[0], M);
  ck_assert_int_eq(out[0].dims[1], q->N);
  float *y = malloc(sizeof(float) * (size_t)(M * q->N));
  ck_assert_ptr_nonnull(y);
  memcpy(y, out[0].data, sizeof(float) * (size_t)(M * q->N));
  dynq__tensor_clear(&out[0]);
  return y;
}

/* The layer computed directly from the kernel API, in one piece: all rows
 * quantized, one GEMM over every row and column, then the activation the
 * kernels leave out: the oracle for the op's splits (by rows even on one
 * thread, by columns). */
static float *direct_q(const qmodel_t *q, const dynq__kernel_t *kr, const float *x, int64_t M,
                       int act) {
  int64_t Kp = dynq__round_up(q->K, DYNQ_QGEMM_KG);
  uint8_t *A = dynq__aligned_alloc((size_t)(M * Kp));
  float *as = malloc(sizeof(float) * (size_t)M), *y = malloc(sizeof(float) * (size_t)(M * q->N));
  int32_t *az = malloc(sizeof(int32_t) * (size_t)M);
  /* the kernels load the packed weights 64-byte aligned, as a model maps them */
  size_t wb = (size_t)(dynq__round_up(q->N, DYNQ_QGEMM_NR) * Kp);
  int8_t *B = dynq__aligned_alloc(wb);
  ck_assert(A && as && az && y && B);
  memcpy(B, q->packed, wb);
  dynq__quantize_rows(kr, M, q->K, x, (size_t)q->K, A, (size_t)Kp, 0, as, az);
  int kact = act == DYNQ_ACT_RELU ? act : DYNQ_ACT_NONE;
  dynq__qgemm_args_t a = {.M = M, .N = q->N, .K = q->K, .A = A, .lda = (size_t)Kp,
                          .B = B, .colsum = q->colsum, .w_scale = q->wscale,
                          .a_scale = as, .a_zp = az, .bias = q->bias, .act = kact, .C = y,
                          .ldc = (size_t)q->N, .n0 = 0, .n1 = q->N};
  kr->qgemm(&a);
  if (act != kact) dynq__act_apply(act, y, (size_t)q->N, M, 0, q->N);
  dynq__aligned_free(A);
  dynq__aligned_free(B);
  free(as);
  free(az);
  return y;
}

/* M x K x N around the 2^22 multiply-add threshold, ragged K and N, few
 * panels (fewer than chunks), one row. */
static const struct { int64_t M, K, N; int act; } qshapes[] = {
  {32, 256, 256, 0},    /* exactly 2^21 (qlinear.c's threshold): splits */
  {31, 256, 256, 1},    /* just below: one call */
  {64, 256, 256, 0},
  {65, 255, 257, 1},    /* ragged K and N above */
  {20, 301, 1003, 0},
  {17, 64, 4100, 1},
  {64, 4096, 33, 0},    /* 3 panels: chunks capped by panels */
  {128, 1024, 17, 1},   /* 2 panels, the second one column wide */
  {1, 4096, 1030, 0},   /* one row, a weight stream */
  {3, 8, 16, 0},        /* tiny, one panel */
  {200, 384, 600, 3},   /* GELU: blocks of rows x columns; quantization split too */
  {97, 64, 1030, 2},    /* sigmoid: a second row block of one row */
  {400, 96, 200, 3},    /* split by rows at 2 threads (not 3), GELU */
  {601, 70, 530, 0},    /* by rows at 2 and 3 threads, ragged blocks */
  {580, 24, 1100, 3},   /* by rows, GELU over column blocks 512, 512, 76 */
  {300, 40, 70, 0},     /* by rows on one thread too (3 blocks), not at 2 or 3 */
};

START_TEST(qlinear_threads_identical) {
  dynq__parallel_set_max_threads(3);
  const dynq__kernel_t *kernels[2] = {dynq__kernel(), dynq__kernel_find("ref")};
  ck_assert_ptr_nonnull(kernels[1]);
  for (size_t s = 0; s < sizeof(qshapes) / sizeof(qshapes[0]); s++) {
    int64_t M = qshapes[s].M, K = qshapes[s].K, N = qshapes[s].N;
    qmodel_t q;
    qmodel_build(&q, K, N, qshapes[s].act);
    float *x = malloc(sizeof(float) * (size_t)(M * K));
    ck_assert_ptr_nonnull(x);
    for (int64_t i = 0; i < M * K; i++) x[i] = 4.0f * frnd() + (i % 7 == 0 ? 1.0f : 0.0f);
    for (int ki = 0; ki < 2; ki++) {
      /* the scalar reference is slow: only the smaller shapes */
      if (ki == 1 && M * K * N > (INT64_C(1) << 24)) continue;
      float *y1 = run_q(&q, kernels[ki], x, M, 1), *yd = direct_q(&q, kernels[ki], x, M, qshapes[s].act);
      int nonzero = 0;
      for (int64_t i = 0; i < M * N; i++) nonzero += y1[i] != 0.0f;
      ck_assert_msg(nonzero > 0, "all-zero output: the test would prove nothing");
      ck_assert_msg(memcmp(y1, yd, sizeof(float) * (size_t)(M * N)) == 0,
                    "kernel %s %lldx%lldx%lld: threads=1 differs from one unsplit GEMM",
                    kernels[ki]->name, (long long)M, (long long)K, (long long)N);
      free(yd);
      for (int t = 2; t <= 3; t++) {
        float *yt = run_q(&q, kernels[ki], x, M, t);
        ck_assert_msg(memcmp(y1, yt, sizeof(float) * (size_t)(M * N)) == 0,
                      "kernel %s %lldx%lldx%lld: threads=%d differs from threads=1",
                      kernels[ki]->name, (long long)M, (long long)K, (long long)N, t);
        free(yt);
      }
      free(y1);
    }
    free(x);
    qmodel_free(&q);
  }
  /* shapes above the threshold went through the team */
  ck_assert_int_ge(dynq__parallel_helpers(), 1);
}
END_TEST

/* Concurrent model runs with threads = 2 from 3 threads, each checked
 * against the single-threaded bytes. */
typedef struct qrun {
  qmodel_t *q;
  const float *x;
  const float *expect;
  int64_t M;
  int bad;
} qrun_t;

static void *qrun_main(void *arg) {
  qrun_t *r = arg;
  for (int i = 0; i < 10; i++) {
    dynq__tensor_t in = {.dtype = DYNQ_DT_F32, .rank = 2, .dims = {r->M, r->q->K},
                         .data = (void *)r->x};
    dynq__tensor_t out[1];
    dynq__run_opts_t o = {.precision = DYNQ_PRECISION_INT8, .threads = 2};
    char err[256] = "";
    if (dynq__model_run(r->q->m, &o, &in, out, err, sizeof(err)) != 0) {
      r->bad++;
      continue;
    }
    if (memcmp(out[0].data, r->expect, sizeof(float) * (size_t)(r->M * r->q->N)) != 0) r->bad++;
    dynq__tensor_clear(&out[0]);
  }
  return NULL;
}

START_TEST(qlinear_concurrent_runs) {
  dynq__parallel_set_max_threads(2);
  qmodel_t q;
  qmodel_build(&q, 300, 520, 1);
  const int64_t M = 48;
  float *x = malloc(sizeof(float) * (size_t)(M * q.K));
  ck_assert_ptr_nonnull(x);
  for (int64_t i = 0; i < M * q.K; i++) x[i] = frnd();
  float *expect = run_q(&q, NULL, x, M, 1);
  qrun_t r[3];
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    r[i] = (qrun_t){.q = &q, .x = x, .expect = expect, .M = M};
    ck_assert_int_eq(pthread_create(&th[i], NULL, qrun_main, &r[i]), 0);
  }
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_int_eq(r[i].bad, 0);
  }
  free(expect);
  free(x);
  qmodel_free(&q);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("parallel");
  TCase *tc = tcase_create("team");
  tcase_set_timeout(tc, 300);
  tcase_add_checked_fixture(tc, note_helpers, NULL);
  tcase_add_test(tc, every_task_once);
  tcase_add_test(tc, many_tasks_grouped);
  tcase_add_test(tc, profile_counts);
  tcase_add_test(tc, cap_limits_threads);
  tcase_add_test(tc, splits_counted);
  tcase_add_test(tc, helpers_really_run);
  tcase_add_test(tc, nested_calls);
  tcase_add_test(tc, concurrent_callers);
  suite_add_tcase(s, tc);
  tc = tcase_create("qlinear");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, qlinear_threads_identical);
  tcase_add_test(tc, qlinear_concurrent_runs);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(suite)
