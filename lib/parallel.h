/*
 * A small persistent thread team for splitting one large op (an INT8 GEMM
 * along N) across cores.
 *
 * One team per process, created lazily on first use and grown on demand up
 * to the cap.  One call at a time owns the team; a call that finds it busy
 * (another daemon worker, or a nested call from inside a task) runs all its
 * tasks on the calling thread instead.  So:
 *  - a call never uses more than `nthreads` threads (the caller included),
 *    and the team never holds more than cap - 1 helpers;
 *  - nothing ever waits for the team to become free: no deadlock, and a
 *    call is never slower than running its tasks serially plus one wake-up;
 *  - the caller only ever waits for tasks that a helper has already
 *    claimed (and is running), never for a helper to wake up.
 *
 * Tasks are claimed dynamically, the caller from the first task on and
 * helpers from the last one down, so a helper that the OS deschedules
 * just claims fewer tasks, and with two threads each keeps to the same
 * half of a split from one call to the next.  Helpers spin for a short bounded
 * time (tens of microseconds) after a call, then sleep on a condition
 * variable.  Helpers live until process exit; a destructor joins them
 * when the team is idle (none are leaked under valgrind).
 */
#ifndef DYNQ_PARALLEL_H
#define DYNQ_PARALLEL_H

#include <signal.h>
#include <stdint.h>

/* Hard ceiling on the team size, whatever the cap says. */
#define DYNQ_PARALLEL_MAX_THREADS 64

typedef void (*dynq__parallel_fn)(void *ctx, int64_t task);

/*
 * Run fn(ctx, t) exactly once for every t in [0, ntasks), on at most
 * min(nthreads, cap) threads, the caller included; returns when all have
 * returned.  Tasks may run in any order and concurrently, so fn must only
 * write what task t owns.  nthreads <= 1 or ntasks <= 1 runs everything on
 * the caller.  ntasks <= 0 does nothing.  Never fails: if helper threads
 * cannot be created the caller does the work.  Returns 1 when the call
 * ran on the team (more than one thread), 0 when it ran serially.
 */
int dynq__parallel_for(int nthreads, int64_t ntasks, dynq__parallel_fn fn,
                       void *ctx);

/*
 * The cap on threads per call (caller included).  Default: the number of
 * online CPUs (at most DYNQ_PARALLEL_MAX_THREADS).  n <= 0 restores the
 * default; n is clamped to [1, DYNQ_PARALLEL_MAX_THREADS].  Lowering the
 * cap does not stop helpers already created; they just stay unused.  The
 * daemon sets this to its worker count so a lone request splitting its
 * GEMMs never runs more threads than there are workers.  Returns the
 * previous cap.
 */
int dynq__parallel_set_max_threads(int n);
int dynq__parallel_max_threads(void);

/* Helper threads created so far (for tests and stats). */
int dynq__parallel_helpers(void);

/*
 * Profiling, for benchmarks (bench/model-bench --scaling): with it on,
 * every call that runs on the team times each task in the CPU time of the
 * thread that ran it, so a run on a loaded machine still tells what two
 * dedicated cores would do.  span_ns is each call's tasks list-scheduled
 * in claim order on the call's threads (each next task to the thread that
 * is free first: what the dynamic claiming does when no thread is
 * preempted), summed over calls; a caller's critical path is its CPU time
 * outside the calls plus span_ns.  Off by default; turning it on or off
 * while a call runs is allowed (that call may go unrecorded).  The
 * figures add up over every caller; take them from one thread.
 */
typedef struct dynq__parallel_prof {
  int64_t calls;        /* calls that ran on the team */
  int64_t tasks;        /* their tasks */
  int64_t helper_tasks; /* of which helpers ran */
  int64_t woken;        /* calls that had to wake a sleeping helper */
  int64_t long_gaps;    /* calls whose caller ran over SPIN_NS of CPU time
                         * since its previous call: its helpers would be
                         * asleep even on an idle machine */
  int64_t task_ns;      /* CPU time inside tasks, every thread */
  int64_t span_ns;      /* sum of the calls' list-scheduled makespans */
  int64_t call_ns;      /* the callers' CPU time inside the calls (waits included) */
} dynq__parallel_prof_t;

void dynq__parallel_prof_enable(int on);
/* The figures since the last take (all zero when never enabled); resets them. */
void dynq__parallel_prof_take(dynq__parallel_prof_t *ret);

/* Block every signal a thread can be sent from outside (so they reach the
 * thread that handles them) but not the ones its own faults raise: a
 * blocked SIGBUS or SIGSEGV raised by a fault kills the process without
 * calling the handler, so a model file cut short under a worker would
 * stop dynqd instead of being repaired.  The old mask goes to *old; call
 * it around pthread_create so the new thread inherits the mask. */
void dynq__block_async_signals(sigset_t *old);

#endif
