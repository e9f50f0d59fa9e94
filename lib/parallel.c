/*
 * The process-wide thread team behind dynq__parallel_for (see parallel.h
 * for the contract).
 *
 * State machine of one call (all transitions by the caller that holds
 * `use`):  idle --publish(gen+1)--> running --done == ntasks--> idle.
 *
 * Tasks are claimed in units ("claims") of `group` consecutive tasks,
 * at most CLAIMS_MAX of them per call.  A claim is taken by a
 * compare-and-swap on `next`, which packs the job generation (high 32
 * bits) with the unclaimed range [lo, hi) (16 bits each).  The caller
 * takes claims from the front and helpers from the back: with two threads
 * of equal speed the caller runs the first half of every split and the
 * helper the second, so a split by rows finds the rows the same thread
 * made in the previous call still in that core's caches (a dynamic
 * counter would hand them out at random).  A helper that wakes late, for
 * a job already finished or replaced, fails the generation check and
 * claims nothing, so it never runs a stale fn on a ctx whose caller has
 * returned.  Only claimed tasks are waited for.
 * (The generation wraps after 2^32 calls; a helper would have to sleep
 * between reading the job and its CAS through exactly that many calls to
 * be fooled.)
 */
#include "parallel.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long a thread spins before sleeping: long enough to catch the next
 * GEMM of the same request (back-to-back layers), short enough to give
 * the core back on a shared machine. */
#define SPIN_NS 50000
/* Profiling keeps the durations of this many claims per call; later
 * ones count in task_ns and add their mean share to span_ns. */
#define PROF_TASKS 4096
/* Claims per call: lo and hi are 16-bit fields of `next`. */
#define CLAIMS_MAX 65535

typedef struct team {
  pthread_mutex_t use;      /* held by the call that owns the team */
  pthread_mutex_t mu;       /* guards the job fields, quit, waiting */
  pthread_cond_t wake;      /* helpers: a new job or quit */
  pthread_cond_t done_cv;   /* the caller: its last claimed task finished */
  pthread_t tid[DYNQ_PARALLEL_MAX_THREADS];
  uint32_t start_gen[DYNQ_PARALLEL_MAX_THREADS]; /* gen when helper i started */
  int n_helpers;            /* created; grown only by the `use` holder */
  pid_t pid;                /* process that created the helpers */
  /* the current job, written under mu by the `use` holder */
  uint32_t gen;
  dynq__parallel_fn fn;
  void *ctx;
  int64_t ntasks;
  int64_t group;            /* tasks per claim */
  int64_t nclaims;          /* ceil(ntasks / group) <= CLAIMS_MAX */
  int nhelp;                /* helpers 0..nhelp-1 take part */
  int waiting;              /* the caller sleeps on done_cv */
  int quit;                 /* set at exit: helpers return */
  int prof;                 /* the job is profiled */
  int sleepers;             /* helpers waiting on `wake` */
  _Atomic uint32_t gen_pub; /* == gen, read without the lock while spinning */
  _Atomic uint64_t next;    /* gen << 32 | lo << 16 | hi: claims [lo, hi) unclaimed */
  _Atomic int64_t done;     /* claims of the current job finished */
  /* profiling of the current job: each claim's CPU time (written by the
   * thread that ran it, read by the caller after `done`) */
  int64_t dur[PROF_TASKS];
  _Atomic int64_t dur_more;  /* claims past PROF_TASKS, summed */
  _Atomic int64_t by_helpers;
} team_t;

static team_t team = {
  .use = PTHREAD_MUTEX_INITIALIZER,
  .mu = PTHREAD_MUTEX_INITIALIZER,
  .wake = PTHREAD_COND_INITIALIZER,
  .done_cv = PTHREAD_COND_INITIALIZER,
};

static _Atomic int cap; /* 0: not decided yet (default) */

static _Atomic int prof_on;
static pthread_mutex_t prof_mu = PTHREAD_MUTEX_INITIALIZER;
static dynq__parallel_prof_t prof_sum; /* guarded by prof_mu */

void dynq__parallel_prof_enable(int on) { atomic_store(&prof_on, on != 0); }

void dynq__parallel_prof_take(dynq__parallel_prof_t *ret) {
  pthread_mutex_lock(&prof_mu);
  *ret = prof_sum;
  memset(&prof_sum, 0, sizeof(prof_sum));
  pthread_mutex_unlock(&prof_mu);
}

static int64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int default_cap(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  return n > DYNQ_PARALLEL_MAX_THREADS ? DYNQ_PARALLEL_MAX_THREADS : (int)n;
}

int dynq__parallel_max_threads(void) {
  int c = atomic_load(&cap);
  if (c == 0) {
    int d = default_cap();
    /* another thread may have set it meanwhile: keep theirs */
    if (!atomic_compare_exchange_strong(&cap, &c, d)) return c;
    c = d;
  }
  return c;
}

int dynq__parallel_set_max_threads(int n) {
  int prev = dynq__parallel_max_threads();
  if (n <= 0) n = default_cap();
  if (n > DYNQ_PARALLEL_MAX_THREADS) n = DYNQ_PARALLEL_MAX_THREADS;
  atomic_store(&cap, n);
  return prev;
}

int dynq__parallel_helpers(void) {
  pthread_mutex_lock(&team.mu);
  int n = team.n_helpers;
  pthread_mutex_unlock(&team.mu);
  return n;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spin until pred(arg) or SPIN_NS elapsed; returns pred's last value. */
static int spin_until(int (*pred)(uint32_t), uint32_t arg) {
  int64_t t0 = now_ns();
  for (unsigned i = 1;; i++) {
    if (pred(arg)) return 1;
    cpu_relax();
    if ((i & 63) == 0 && now_ns() - t0 > SPIN_NS) return pred(arg);
  }
}

static int new_gen(uint32_t seen) {
  return atomic_load_explicit(&team.gen_pub, memory_order_acquire) != seen;
}

static int all_done(uint32_t unused) {
  (void)unused;
  return atomic_load(&team.done) == team.nclaims;
}

/* The job of one call, as a thread copies it. */
typedef struct job {
  uint32_t gen;
  dynq__parallel_fn fn;
  void *ctx;
  int64_t ntasks, group, nclaims;
} job_t;

/* Claim and run claims of job j until none are left, from the front
 * (the caller) or the back (helpers); `prof`: time each one. */
static void run_tasks(const job_t *j, int prof, int helper) {
  for (;;) {
    uint64_t v = atomic_load(&team.next), w;
    int64_t k;
    do {
      uint32_t lo = (uint32_t)(v >> 16) & 0xffffu, hi = (uint32_t)v & 0xffffu;
      if ((uint32_t)(v >> 32) != j->gen || lo >= hi) return;
      k = helper ? hi - 1 : lo;
      w = helper ? v - 1 : v + (UINT64_C(1) << 16);
    } while (!atomic_compare_exchange_weak(&team.next, &v, w));
    int64_t t = k * j->group, t1 = t + j->group < j->ntasks ? t + j->group : j->ntasks;
    int64_t t0 = prof ? cpu_ns() : 0;
    for (; t < t1; t++) j->fn(j->ctx, t);
    if (prof) {
      int64_t d = cpu_ns() - t0;
      if (k < PROF_TASKS) team.dur[k] = d;
      else atomic_fetch_add(&team.dur_more, d);
      if (helper) atomic_fetch_add(&team.by_helpers, t1 - k * j->group);
    }
    if (atomic_fetch_add(&team.done, 1) + 1 == j->nclaims) {
      /* the last task: wake the caller if it went to sleep.  Checked under
       * mu so the wake-up cannot fall between its check and its wait. */
      pthread_mutex_lock(&team.mu);
      if (team.waiting) pthread_cond_signal(&team.done_cv);
      pthread_mutex_unlock(&team.mu);
    }
  }
}

static void *helper_main(void *arg) {
  int idx = (int)(intptr_t)arg;
  uint32_t seen = team.start_gen[idx];
  for (;;) {
    spin_until(new_gen, seen);
    pthread_mutex_lock(&team.mu);
    while (team.gen == seen && !team.quit) {
      team.sleepers++;
      pthread_cond_wait(&team.wake, &team.mu);
      team.sleepers--;
    }
    if (team.quit) {
      pthread_mutex_unlock(&team.mu);
      return NULL;
    }
    seen = team.gen;
    job_t j = {.gen = seen, .fn = team.fn, .ctx = team.ctx, .ntasks = team.ntasks,
               .group = team.group, .nclaims = team.nclaims};
    int take_part = idx < team.nhelp, prof = team.prof;
    pthread_mutex_unlock(&team.mu);
    if (take_part) run_tasks(&j, prof, 1);
  }
}

/* Grow the team to `want` helpers; called with `use` held.  Helpers block
 * every signal so signals keep going to the threads that handle them. */
static void grow(int want) {
  if (team.n_helpers > 0 && team.pid != getpid()) return; /* forked child: they are gone */
  if (want > DYNQ_PARALLEL_MAX_THREADS - 1) want = DYNQ_PARALLEL_MAX_THREADS - 1;
  if (team.n_helpers >= want) return;
  sigset_t old;
  dynq__block_async_signals(&old);
  while (team.n_helpers < want) {
    int i = team.n_helpers;
    team.start_gen[i] = team.gen;
    if (pthread_create(&team.tid[i], NULL, helper_main, (void *)(intptr_t)i) != 0)
      break;  /* run with what we have */
    pthread_setname_np(team.tid[i], "dynq-par");
    pthread_mutex_lock(&team.mu);
    team.n_helpers++;
    team.pid = getpid();
    pthread_mutex_unlock(&team.mu);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void dynq__block_async_signals(sigset_t *old) {
  sigset_t set;
  sigfillset(&set);
  static const int faults[] = {SIGBUS, SIGSEGV, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
  for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) sigdelset(&set, faults[i]);
  pthread_sigmask(SIG_BLOCK, &set, old);
}

static void run_serial(int64_t ntasks, dynq__parallel_fn fn, void *ctx) {
  for (int64_t t = 0; t < ntasks; t++) fn(ctx, t);
}

/* The profile of the call that just finished on `threads` threads,
 * called by the `use` holder.  The claims' durations are list-scheduled
 * as they are claimed (the caller from the front, helpers from the back,
 * each next claim to the thread free first): the makespan on threads
 * that are never preempted. */
static void prof_note(int64_t ntasks, int64_t nclaims, int threads, int64_t call_ns, int woken,
                      int long_gap) {
  int64_t free_at[DYNQ_PARALLEL_MAX_THREADS] = {0}, sum = 0, span = 0;
  int64_t lo = 0, hi = nclaims < PROF_TASKS ? nclaims : PROF_TASKS;
  while (lo < hi) {
    int best = 0;
    for (int i = 1; i < threads; i++)
      if (free_at[i] < free_at[best]) best = i;
    int64_t d = team.dur[best == 0 ? lo++ : --hi];
    free_at[best] += d;
    sum += d;
  }
  for (int i = 0; i < threads; i++) span = free_at[i] > span ? free_at[i] : span;
  int64_t more = atomic_load(&team.dur_more);
  pthread_mutex_lock(&prof_mu);
  prof_sum.calls++;
  prof_sum.tasks += ntasks;
  prof_sum.helper_tasks += atomic_load(&team.by_helpers);
  prof_sum.woken += woken;
  prof_sum.long_gaps += long_gap;
  prof_sum.task_ns += sum + more;
  prof_sum.span_ns += span + more / threads;
  prof_sum.call_ns += call_ns;
  pthread_mutex_unlock(&prof_mu);
}

int dynq__parallel_for(int nthreads, int64_t ntasks, dynq__parallel_fn fn,
                       void *ctx) {
  if (ntasks <= 0) return 0;
  int c = dynq__parallel_max_threads();
  if (nthreads > c) nthreads = c;
  if (nthreads > ntasks) nthreads = (int)ntasks;
  if (nthreads <= 1 || pthread_mutex_trylock(&team.use) != 0) {
    run_serial(ntasks, fn, ctx);
    return 0;
  }
  grow(nthreads - 1);
  int nhelp = team.n_helpers < nthreads - 1 ? team.n_helpers : nthreads - 1;
  if (nhelp == 0 || team.pid != getpid()) {
    pthread_mutex_unlock(&team.use);
    run_serial(ntasks, fn, ctx);
    return 0;
  }

  const int prof = atomic_load_explicit(&prof_on, memory_order_relaxed);
  const int64_t c0 = prof ? cpu_ns() : 0;
  static _Thread_local int64_t prev_end; /* the caller's CPU clock at its previous call's end */
  const int long_gap = prof && c0 - prev_end > SPIN_NS;
  if (prof) {
    atomic_store(&team.dur_more, 0);
    atomic_store(&team.by_helpers, 0);
  }
  pthread_mutex_lock(&team.mu);
  const int woken = team.sleepers > 0;
  team.prof = prof;
  uint32_t gen = ++team.gen;
  team.fn = fn;
  team.ctx = ctx;
  const int64_t group = ntasks / CLAIMS_MAX + (ntasks % CLAIMS_MAX != 0);
  const job_t j = {.gen = gen, .fn = fn, .ctx = ctx, .ntasks = ntasks, .group = group,
                   .nclaims = ntasks / group + (ntasks % group != 0)};
  team.ntasks = ntasks;
  team.group = j.group;
  team.nclaims = j.nclaims;
  team.nhelp = nhelp;
  atomic_store(&team.done, 0);
  atomic_store(&team.next, (uint64_t)gen << 32 | (uint64_t)j.nclaims);
  atomic_store_explicit(&team.gen_pub, gen, memory_order_release);
  pthread_cond_broadcast(&team.wake);
  pthread_mutex_unlock(&team.mu);

  run_tasks(&j, prof, 0);

  /* Only claims a helper already took are left: they are running. */
  if (!spin_until(all_done, 0)) {
    pthread_mutex_lock(&team.mu);
    while (atomic_load(&team.done) != j.nclaims) {
      team.waiting = 1;
      pthread_cond_wait(&team.done_cv, &team.mu);
      team.waiting = 0;
    }
    pthread_mutex_unlock(&team.mu);
  }
  if (prof) {
    prev_end = cpu_ns();
    prof_note(ntasks, j.nclaims, nhelp + 1, prev_end - c0, woken, long_gap);
  }
  pthread_mutex_unlock(&team.use);
  return 1;
}

/* Join the helpers at exit so nothing is left behind (valgrind), unless
 * a call is still running (exit from another thread) or this is a forked
 * child that never had them. */
__attribute__((destructor)) static void team_fini(void) {
  if (team.n_helpers == 0 || team.pid != getpid()) return;
  if (pthread_mutex_trylock(&team.use) != 0) return;
  pthread_mutex_lock(&team.mu);
  team.quit = 1;
  pthread_cond_broadcast(&team.wake);
  pthread_mutex_unlock(&team.mu);
  for (int i = 0; i < team.n_helpers; i++) pthread_join(team.tid[i], NULL);
  pthread_mutex_lock(&team.mu);
  team.n_helpers = 0;
  team.quit = 0;
  pthread_mutex_unlock(&team.mu);
  pthread_mutex_unlock(&team.use);
}
