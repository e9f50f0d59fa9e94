/*
 * The process-wide thread team behind dynq__parallel_for (see parallel.h
 * for the contract).
 *
 * State machine of one call (all transitions by the caller that holds
 * `use`):  idle --publish(gen+1)--> running --done == ntasks--> idle.
 *
 * A task is claimed by a compare-and-swap on `next`, which packs the job
 * generation (high 32 bits) with the next task index (low 32 bits).  A
 * helper that wakes late, for a job already finished or replaced, fails
 * the generation check and claims nothing, so it never runs a stale fn on
 * a ctx whose caller has returned.  Only claimed tasks are waited for.
 * (The generation wraps after 2^32 calls; a helper would have to sleep
 * between reading the job and its CAS through exactly that many calls to
 * be fooled.)
 */
#include "parallel.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

/* How long a thread spins before sleeping: long enough to catch the next
 * GEMM of the same request (back-to-back layers), short enough to give
 * the core back on a shared machine. */
#define SPIN_NS 50000

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
  int64_t ntasks;           /* <= UINT32_MAX - 1 (packed into `next`) */
  int nhelp;                /* helpers 0..nhelp-1 take part */
  int waiting;              /* the caller sleeps on done_cv */
  int quit;                 /* set at exit: helpers return */
  _Atomic uint32_t gen_pub; /* == gen, read without the lock while spinning */
  _Atomic uint64_t next;    /* gen << 32 | next unclaimed task */
  _Atomic int64_t done;     /* tasks of the current job finished */
} team_t;

static team_t team = {
  .use = PTHREAD_MUTEX_INITIALIZER,
  .mu = PTHREAD_MUTEX_INITIALIZER,
  .wake = PTHREAD_COND_INITIALIZER,
  .done_cv = PTHREAD_COND_INITIALIZER,
};

static _Atomic int cap; /* 0: not decided yet (default) */

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

static int all_done(uint32_t ntasks_lo) {
  (void)ntasks_lo;
  return atomic_load(&team.done) == team.ntasks;
}

/* Claim and run tasks of job `gen` until none are left. */
static void run_tasks(uint32_t gen, dynq__parallel_fn fn, void *ctx,
                      int64_t ntasks) {
  for (;;) {
    uint64_t v = atomic_load(&team.next);
    do {
      if ((uint32_t)(v >> 32) != gen || (int64_t)(v & 0xffffffffu) >= ntasks) return;
    } while (!atomic_compare_exchange_weak(&team.next, &v, v + 1));
    fn(ctx, (int64_t)(v & 0xffffffffu));
    if (atomic_fetch_add(&team.done, 1) + 1 == ntasks) {
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
    while (team.gen == seen && !team.quit) pthread_cond_wait(&team.wake, &team.mu);
    if (team.quit) {
      pthread_mutex_unlock(&team.mu);
      return NULL;
    }
    seen = team.gen;
    dynq__parallel_fn fn = team.fn;
    void *ctx = team.ctx;
    int64_t ntasks = team.ntasks;
    int take_part = idx < team.nhelp;
    pthread_mutex_unlock(&team.mu);
    if (take_part) run_tasks(seen, fn, ctx, ntasks);
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

int dynq__parallel_for(int nthreads, int64_t ntasks, dynq__parallel_fn fn,
                       void *ctx) {
  if (ntasks <= 0) return 0;
  int c = dynq__parallel_max_threads();
  if (nthreads > c) nthreads = c;
  if (nthreads > ntasks) nthreads = (int)ntasks;
  /* the packed counter holds task indices below 2^32 */
  if (nthreads <= 1 || ntasks >= (int64_t)UINT32_MAX ||
      pthread_mutex_trylock(&team.use) != 0) {
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

  pthread_mutex_lock(&team.mu);
  uint32_t gen = ++team.gen;
  team.fn = fn;
  team.ctx = ctx;
  team.ntasks = ntasks;
  team.nhelp = nhelp;
  atomic_store(&team.done, 0);
  atomic_store(&team.next, (uint64_t)gen << 32);
  atomic_store_explicit(&team.gen_pub, gen, memory_order_release);
  pthread_cond_broadcast(&team.wake);
  pthread_mutex_unlock(&team.mu);

  run_tasks(gen, fn, ctx, ntasks);

  /* Only tasks a helper already claimed are left: they are running. */
  if (!spin_until(all_done, 0)) {
    pthread_mutex_lock(&team.mu);
    while (atomic_load(&team.done) != ntasks) {
      team.waiting = 1;
      pthread_cond_wait(&team.done_cv, &team.mu);
      team.waiting = 0;
    }
    pthread_mutex_unlock(&team.mu);
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
