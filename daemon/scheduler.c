/*
 * The scheduler: our own worker pthreads (not libuv's threadpool, which is
 * shared with file I/O) pulling generic jobs from a bounded FIFO, dynamic
 * batching, and the inline policy.  Finished jobs go on a completion stack
 * and one uv_async_send wakes the loop; libuv coalesces wake-ups, so the
 * loop drains the whole stack each time and calls each job's done.
 *
 * A job whose cancel flag is set before a worker picks it up is skipped:
 * nobody would read its answer.  One whose deadline passed while it waited
 * is expired without running.
 *
 * Batching (off by default): a worker that picks up a job with batch_max
 * > 1 takes the queued jobs its ops call compatible, and waits for more
 * until batch_delay_us after the FIRST job's arrival (not after a worker
 * got to it: a job that already queued behind busy workers has spent its
 * delay and runs with what is there), then runs them with run_batch (or
 * each alone when that declines).
 *
 * Wake-ups: a worker that finds the queue empty polls a submit counter for
 * up to spin_us (bounded; --worker-spin) before it sleeps on the condvar,
 * so a client sending its next request right after an answer (ping-pong)
 * does not pay a futex wake-up per request.  Flush signals one sleeper,
 * and only when the spinners cannot take every queued job; queued jobs
 * one worker takes as one batch (coalescing) count as one job there.
 *
 * The loop's batch: each flush, the loop keeps the first batch of small
 * jobs (loop_ok) and runs it itself after handing the rest to the workers
 * (dynqd__sched_flush says why).
 *
 * GEMM split: a job, or a merged batch, that starts while no other job is
 * queued or running gets threads = the worker count (lib/parallel.h
 * splits its large INT8 GEMMs along N); jobs that arrive apart run one per
 * worker.  So one pipelining client's batch, which nothing else would run
 * beside, uses every core.  The split never changes a result: each output
 * column is computed by exactly one thread with the same integer kernel.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dynq/errors.h"
#include "dynqd.h"
#include "parallel.h"

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Called with p->mu held and the queue empty; returns with it held.  Polls
 * for a submit for at most spin_us without the lock. */
static void spin_for_work(dynqd_sched_t *p) {
  if (p->spin_us <= 0 || p->stop) return;
  unsigned seen = atomic_load_explicit(&p->submits, memory_order_relaxed);
  p->spinning++;
  pthread_mutex_unlock(&p->mu);
  uint64_t end = uv_hrtime() + (uint64_t)p->spin_us * 1000;
  for (unsigned i = 1;; i++) {
    if (atomic_load_explicit(&p->submits, memory_order_relaxed) != seen) break;
    cpu_relax();
    if ((i & 31) == 0 && uv_hrtime() >= end) break;
  }
  pthread_mutex_lock(&p->mu);
  p->spinning--;
}

static int queue_units(const dynqd_sched_t *p, int enough);
static void hand_to_workers(dynqd_sched_t *p);

/* Push a finished chain (linked by next) on the completion stack: no lock,
 * so a worker handing back a result never waits for the loop (or another
 * worker) to leave sched->mu. */
static void push_done(dynqd_sched_t *p, dynqd_job_t *j) {
  dynqd_job_t *tail = j;
  while (tail->next != NULL) tail = tail->next;
  dynqd_job_t *head = atomic_load_explicit(&p->done, memory_order_relaxed);
  do {
    tail->next = head;
  } while (!atomic_compare_exchange_weak_explicit(&p->done, &head, j, memory_order_release,
                                                  memory_order_relaxed));
}

/* Whether b may run in one batch with lead (same kind, same batch_max,
 * and its ops say so). */
static int mergeable(const dynqd_job_t *lead, const dynqd_job_t *b) {
  return b->ops == lead->ops && b->batch_max == lead->batch_max && lead->ops->compatible(lead, b);
}

/* Move jobs compatible with v[0] from the queue into v[*n..max). p->mu held. */
static void collect(dynqd_sched_t *p, dynqd_job_t **v, int *n, int max) {
  uint64_t now = uv_hrtime();
  dynqd_job_t **pp = &p->qhead, *prev = NULL;
  while (*pp != NULL && *n < max) {
    dynqd_job_t *b = *pp;
    /* A cancelled or expired job is left to be answered alone. */
    if (!(b->cancel != NULL && atomic_load(b->cancel)) &&
        !(b->deadline_ns != 0 && now > b->deadline_ns) && mergeable(v[0], b)) {
      *pp = b->next;
      if (p->qtail == b) p->qtail = prev;
      atomic_fetch_sub_explicit(&p->qlen, 1, memory_order_relaxed);
      b->next = NULL;
      b->queue_us = (int64_t)((now - b->t_queued_ns) / 1000);
      v[(*n)++] = b;
    } else {
      prev = b;
      pp = &b->next;
    }
  }
}

/* A merged batch splits its GEMMs over the workers' cores (as a lone job
 * does) only when it starts alone and its predicted one-thread compute
 * (the jobs' cost_ns) is long enough to pay for the split: the helper's
 * wake-up and its spin after the call cost tens of microseconds of CPU,
 * a few percent of such a batch.  Shorter batches keep what was measured
 * on Zen 5 (a 32-row batch of the 1x768->768 Linear takes ~50 us there,
 * and handing half of the loop's batch to an idle worker was 5-15 %
 * slower).  Measured on Zen 3 (AVX2, ~400 us for that batch): one
 * pipelining connection 1x32 +46 %, 8x8 +25 % (BENCHMARKS.md
 * "Round-15"). */
#define SPLIT_BATCH_MIN_NS 200000

static int batch_width(const dynqd_sched_t *p, dynqd_job_t **v, int n, int alone) {
  if (!alone || p->width <= 1) return 1;
  int64_t cost = 0;
  for (int k = 0; k < n; k++) cost += v[k]->cost_ns;
  return cost >= SPLIT_BATCH_MIN_NS ? p->width : 1;
}

/* Run j together with compatible jobs taken from the queue (called with
 * p->mu held; returns with it released).  j->next links the batch. */
static void batch_run(dynqd_sched_t *p, dynqd_job_t *j) {
  int max = j->batch_max;
  if (max > 256) max = 256;  /* bounds the stack array below */
  dynqd_job_t *v[256];
  int n = 1;
  v[0] = j;
  collect(p, v, &n, max);
  uint64_t due_ns = j->t_arrive_ns + (uint64_t)j->batch_delay_us * 1000;
  if (n < max && j->batch_delay_us > 0 && due_ns > uv_hrtime()) {
    /* uv_hrtime reads CLOCK_MONOTONIC, the clock of the timed wait */
    struct timespec until = {(time_t)(due_ns / 1000000000), (long)(due_ns % 1000000000)};
    while (n < max && !p->stop) {
      if (p->batch_waiters == 0 || max - n < p->batch_room) p->batch_room = max - n;
      p->batch_waiters++;
      int rc = pthread_cond_timedwait(&p->cv, &p->mu, &until);
      p->batch_waiters--;
      collect(p, v, &n, max);
      if (rc == ETIMEDOUT) break;
    }
  }
  /* We may have swallowed a wake-up meant for an idle worker. */
  if (p->qhead != NULL) pthread_cond_signal(&p->cv);
  /* The batch as a whole is alone when nothing is left queued and no
   * other job runs. */
  int width = batch_width(p, v, n, p->qhead == NULL && p->running == 1);
  pthread_mutex_unlock(&p->mu);

  if (n > 1)
    for (int k = 0; k < n; k++) v[k]->threads = width;
  if (n == 1 || j->ops->run_batch == NULL || j->ops->run_batch(v, n) != 0)
    for (int k = 0; k < n; k++) v[k]->ops->run(v[k]);
  for (int k = 0; k < n; k++) v[k]->next = k + 1 < n ? v[k + 1] : NULL;
}

/* j's deadline passed before it ran: answer it so, without running it. */
static void expire_late(dynqd_job_t *j, uint64_t now) {
  char msg[160];
  snprintf(msg, sizeof(msg),
           "request waited %llu ms to run, past its timeout_ms of %llu ms; it was not run",
           (unsigned long long)((now - j->t_arrive_ns) / 1000000),
           (unsigned long long)((j->deadline_ns - j->t_arrive_ns) / 1000000));
  j->ops->expire(j, msg);
}

static void *worker_main(void *arg) {
  dynqd_sched_t *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    if (p->qhead == NULL) spin_for_work(p);
    while (!p->stop && p->qhead == NULL) {
      p->sleeping++;
      pthread_cond_wait(&p->cv, &p->mu);
      p->sleeping--;
    }
    dynqd_job_t *j = p->qhead;
    if (j == NULL) {  /* stop requested and the queue is empty */
      pthread_mutex_unlock(&p->mu);
      break;
    }
    p->qhead = j->next;
    if (p->qhead == NULL) p->qtail = NULL;
    atomic_fetch_sub_explicit(&p->qlen, 1, memory_order_relaxed);
    j->next = NULL;
    /* Alone: nothing else queued or running, so the idle workers' cores
     * may help with its GEMMs. */
    j->threads = p->qhead == NULL && p->running == 0 ? p->width : 1;
    p->running++;
    uint64_t now = uv_hrtime();
    j->queue_us = (int64_t)((now - j->t_queued_ns) / 1000);
    if (j->cancel != NULL && atomic_load(j->cancel)) {
      pthread_mutex_unlock(&p->mu);
      j->skipped = 1;
    } else if (j->deadline_ns != 0 && now > j->deadline_ns) {
      pthread_mutex_unlock(&p->mu);
      expire_late(j, now);
    } else if (j->batch_max > 1 && j->ops->run_batch != NULL) {
      batch_run(p, j);  /* releases p->mu */
    } else {
      pthread_mutex_unlock(&p->mu);
      j->ops->run(j);
    }

    push_done(p, j);
    uv_async_send(&p->async);  /* coalesced by libuv while one is pending */
    /* Finishing and taking the next job share one lock acquisition. */
    pthread_mutex_lock(&p->mu);
    p->running--;
  }
  return NULL;
}

static void on_async(uv_async_t *a) { dynqd__sched_collect(a->data); }

/* The lines of j's first n bytes, for writing (done frees and clears
 * them).  A hint: it never faults, whatever j is. */
static void prefetch_job(const dynqd_job_t *j, size_t n) {
  const char *c = (const char *)j;
  if (n < sizeof(*j)) n = sizeof(*j);
  for (size_t o = 0; o < n; o += 64) __builtin_prefetch(c + o, 1);
  __builtin_prefetch(c + n - 1, 1);  /* the last line of an unaligned span */
}

void dynqd__sched_collect(dynqd_sched_t *p) {
  dynqd_job_t *j = atomic_exchange_explicit(&p->done, NULL, memory_order_acquire);
  if (j != NULL) p->completions++;
  while (j != NULL) {
    dynqd_job_t *next = j->next;
    /* next's lines travel from the worker's CPU while j's done runs
     * (completions of one kind come together: j's size stands for it) */
    if (next != NULL) prefetch_job(next, j->ops->done_bytes);
    p->outstanding--;
    j->next = NULL;
    j->ops->done(j);
    j = next;
  }
  if (p->on_done != NULL) p->on_done(p->on_done_arg);
}

int dynqd__sched_start(dynqd_sched_t *p, uv_loop_t *loop, int n_threads, int qcap,
                       int spin_us, void (*on_done)(void *), void *arg) {
  memset(p, 0, sizeof(*p));
  p->qcap = qcap;
  p->spin_us = spin_us;
  p->width = n_threads;
  p->on_done = on_done;
  p->on_done_arg = arg;
  atomic_init(&p->submits, 0);
  atomic_init(&p->done, NULL);
  atomic_init(&p->qlen, 0);
  int rc = uv_async_init(loop, &p->async, on_async);
  if (rc != 0) return rc;
  p->async.data = p;
  p->async_init = 1;
  /* A lone request's split never runs more threads than there are
   * workers (the team's helpers stand in for the idle ones). */
  dynq__parallel_set_max_threads(n_threads);
  rc = pthread_mutex_init(&p->mu, NULL);
  if (rc != 0) return -rc;
  /* Monotonic: batch_run waits with absolute deadlines on this cv. */
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  rc = pthread_cond_init(&p->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (rc != 0) {
    pthread_mutex_destroy(&p->mu);
    return -rc;
  }
  p->threads = calloc((size_t)n_threads, sizeof(*p->threads));
  if (p->threads == NULL) {
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    return -ENOMEM;
  }
  /* Signals belong to the loop thread (uv_signal_t); workers block them,
   * all but those their own faults raise (SIGBUS from a cut-short model). */
  sigset_t old;
  dynq__block_async_signals(&old);
  for (int i = 0; i < n_threads; i++) {
    rc = pthread_create(&p->threads[i], NULL, worker_main, p);
    if (rc != 0) break;
    p->n_threads++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    dynqd__sched_stop(p);
    return -rc;
  }
  return 0;
}

/* j at the end of the pending list (the loop's; handed over at flush). */
static void pend(dynqd_sched_t *p, dynqd_job_t *j) {
  j->next = NULL;
  if (p->ptail) p->ptail->next = j;
  else p->phead = j;
  p->ptail = j;
  p->plen++;
}

int dynqd__sched_submit(dynqd_sched_t *p, dynqd_job_t *j) {
  return dynqd__sched_submit_at(p, j, uv_hrtime());
}

int dynqd__sched_submit_at(dynqd_sched_t *p, dynqd_job_t *j, uint64_t now) {
  /* qlen only shrinks behind our back (workers take jobs), so this never
   * lets the queue pass qcap.  Every queued job is outstanding too: below
   * qcap outstanding jobs the queue cannot be full, and the loop need not
   * read qlen's line, which the workers write as they take jobs. */
  if (p->stop || p->threads == NULL ||
      (p->outstanding >= p->qcap &&
       atomic_load_explicit(&p->qlen, memory_order_relaxed) + p->plen >= p->qcap))
    return DYNQ_EOVERLOAD;
  j->skipped = 0;
  j->t_queued_ns = now;
  pend(p, j);
  p->outstanding++;
  return 0;
}

/* A job the loop began that outgrew its prediction (job.requeue: its run
 * stopped, nothing was answered) goes to the pending list, for a worker;
 * counted is whether it already counts as outstanding. */
static void hand_back(dynqd_sched_t *p, dynqd_job_t *j, int counted) {
  j->requeue = 0;
  j->loop_ok = 0;
  pend(p, j);
  if (!counted) p->outstanding++;
  p->handoffs++;
}

int dynqd__sched_run_inline(dynqd_sched_t *p, dynqd_job_t *j) {
  j->t_queued_ns = j->t_arrive_ns;  /* it never waits: queue_us stays 0 */
  j->threads = 1;
  j->skipped = 0;
  j->next = NULL;
  j->on_loop = 1;
  j->ops->run(j);
  j->on_loop = 0;
  if (j->requeue) {  /* a worker takes it at this iteration's flush */
    hand_back(p, j, 0);
    return 1;
  }
  j->ops->done(j);
  return 0;
}

/* Workers the queue keeps busy, counted up to `enough`: a run of jobs
 * that one worker takes as a batch (same ops and batch_max > 1, at most
 * batch_max of them; batch_run's collect) counts once.  Jobs of one ops
 * the ops call incompatible are split by collect, but the worker that
 * takes a batch signals another while anything is left queued, so
 * counting too few only delays those.  p->mu held. */
static int queue_units(const dynqd_sched_t *p, int enough) {
  int units = 0, run = 0;
  const dynqd_job_t *lead = NULL;
  for (const dynqd_job_t *j = p->qhead; j != NULL && units <= enough; j = j->next) {
    if (lead != NULL && j->batch_max > 1 && j->ops == lead->ops &&
        j->batch_max == lead->batch_max && run < j->batch_max) {
      run++;
      continue;
    }
    units++;
    run = 1;
    lead = j;
  }
  return units;
}

/* The loop's batch: the first pending loop_ok job and the compatible
 * loop_ok jobs after it, at most its batch_max (as a worker's collect
 * would take them), out of the pending list.  NULL when there is none. */
static dynqd_job_t *take_loop_batch(dynqd_sched_t *p) {
  dynqd_job_t *prev = NULL, *b = p->phead;
  while (b != NULL && !b->loop_ok) {
    prev = b;
    b = b->next;
  }
  dynqd_job_t *lead = b, *mine = NULL, **mtail = &mine;
  if (lead == NULL) return NULL;
  int max = lead->batch_max > 1 && lead->ops->run_batch != NULL ? lead->batch_max : 1;
  if (max > 256) max = 256;
  for (int n = 0; b != NULL && n < max;) {
    dynqd_job_t *next = b->next;
    if (b == lead || (b->loop_ok && mergeable(lead, b))) {
      if (prev != NULL) prev->next = next;
      else p->phead = next;
      if (p->ptail == b) p->ptail = prev;
      b->next = NULL;
      *mtail = b;
      mtail = &b->next;
      p->plen--;
      n++;
    } else {
      prev = b;
    }
    b = next;
  }
  return mine;
}

/* Run the loop's batch (take_loop_batch) here, as a worker would: a job
 * cancelled meanwhile is skipped, one past its deadline expired, the
 * others run together (each alone when the merged run declines); then
 * the whole list (still linked by next) is taken back as completions. */
static void run_loop_batch(dynqd_sched_t *p, dynqd_job_t *list) {
  dynqd_job_t *v[256];
  int n = 0;
  uint64_t now = uv_hrtime();
  for (dynqd_job_t *j = list; j != NULL; j = j->next) {
    j->queue_us = (int64_t)((now - j->t_queued_ns) / 1000);
    if (j->cancel != NULL && atomic_load(j->cancel)) j->skipped = 1;
    else if (j->deadline_ns != 0 && now > j->deadline_ns) expire_late(j, now);
    else v[n++] = j;  /* take_loop_batch took at most 256 */
  }
  /* Alone (no worker has anything to run), a long batch may split over
   * the idle workers' cores (batch_width).  It counts as running, so a
   * worker that starts a job meanwhile does not split beside it. */
  pthread_mutex_lock(&p->mu);
  int width = batch_width(p, v, n, p->qhead == NULL && p->running == 0);
  p->running++;
  pthread_mutex_unlock(&p->mu);
  for (dynqd_job_t *j = list; j != NULL; j = j->next) {
    j->threads = width;
    j->on_loop = 1;
  }
  int merged = n > 1 && v[0]->ops->run_batch != NULL && v[0]->ops->run_batch(v, n) == 0;
  /* A merged run stopped for outgrowing the loop's caps marks every job
   * requeue: none is run alone here (each would pay the caps again). */
  if (n > 0 && !merged && !v[0]->requeue)
    for (int k = 0; k < n; k++) v[k]->ops->run(v[k]);
  pthread_mutex_lock(&p->mu);
  p->running--;
  pthread_mutex_unlock(&p->mu);
  /* Those that outgrew the loop go to the workers, the rest are done;
   * the loop ran the n less those. */
  dynqd_job_t *done = NULL, **dtail = &done;
  int handed = 0;
  for (dynqd_job_t *j = list, *next; j != NULL; j = next) {
    next = j->next;
    j->on_loop = 0;
    if (j->requeue) {
      hand_back(p, j, 1);
      handed++;
    } else {
      *dtail = j;
      dtail = &j->next;
    }
  }
  *dtail = NULL;
  p->loop_jobs += (uint64_t)(n - handed);
  if (p->plen > 0) hand_to_workers(p);
  if (done != NULL) push_done(p, done);
  dynqd__sched_collect(p);
}

/*
 * The loop's batch: handing a batch of small requests to a worker costs
 * more CPU in all than the loop running it where it read them (a wake-up
 * each way, the queue, the requests' lines crossing to another core: on
 * this project's 2-vCPU VMs ~1 us per request pipelined, ~4 us at 64
 * synchronous clients), and buys a second core only when there is more
 * than one batch to run.  So each flush the loop keeps the first batch of
 * small requests (loop_ok: predicted within inline_max_us each) for itself
 * and hands the rest to the workers, which start on them first.
 */
void dynqd__sched_flush(dynqd_sched_t *p) {
  if (p->plen == 0) return;
  dynqd_job_t *mine = p->threads != NULL && !p->stop ? take_loop_batch(p) : NULL;
  if (p->plen > 0) hand_to_workers(p);
  if (mine != NULL) run_loop_batch(p, mine);
}

/* The pending jobs go to the workers' queue; wake as many as it needs. */
static void hand_to_workers(dynqd_sched_t *p) {
  pthread_mutex_lock(&p->mu);
  if (p->qtail) p->qtail->next = p->phead;
  else p->qhead = p->phead;
  p->qtail = p->ptail;
  int qlen = atomic_fetch_add_explicit(&p->qlen, p->plen, memory_order_relaxed) + p->plen;
  p->phead = p->ptail = NULL;
  p->plen = 0;
  atomic_fetch_add_explicit(&p->submits, 1, memory_order_relaxed);
  /* A burst of small requests one worker takes together wakes one
   * worker, not one per request: the others, woken for jobs already
   * gone, would only sleep again (two futex calls each). */
  int units = p->batch_waiters > 0
                  ? qlen
                  : queue_units(p, p->sleeping + p->spinning + p->running);
  /* Each spinner rechecks the queue under mu before sleeping, so only the
   * jobs they cannot all take need sleepers woken, one each.  A worker filling a batch waits on
   * this cv too, and an idle worker must still wake for a job that batch
   * cannot take: broadcast then.  With no sleeper to wake, a batch filler
   * is left to collect at its deadline unless its batch could fill now:
   * waking it on every flush only to collect a job or two cost two futex
   * round trips per flush (Silero streams: ~14 % of dynqd's CPU was
   * context switching). */
  int need = units - p->spinning;
  if (p->batch_waiters > 0) {
    if ((need > 0 && p->sleeping > 0) || qlen >= p->batch_room) {
      pthread_cond_broadcast(&p->cv);
      p->woken += (uint64_t)p->sleeping;
    }
    pthread_mutex_unlock(&p->mu);
    return;
  }
  if (need > 0 && need >= p->sleeping) {
    pthread_cond_broadcast(&p->cv);
    p->woken += (uint64_t)p->sleeping;
  } else if (need > 0) {
    for (int i = 0; i < need; i++) pthread_cond_signal(&p->cv);
    p->woken += (uint64_t)need;
  }
  pthread_mutex_unlock(&p->mu);
}

int dynqd__sched_idle(dynqd_sched_t *p) {
  if (p->plen > 0) return 0;
  if (p->threads == NULL) return 1;
  pthread_mutex_lock(&p->mu);
  int idle = p->qhead == NULL && p->running == 0;
  pthread_mutex_unlock(&p->mu);
  return idle;
}

int dynqd__sched_queued(dynqd_sched_t *p) {
  return atomic_load_explicit(&p->qlen, memory_order_relaxed) + p->plen;
}

int dynqd__sched_inline_ok(dynqd_sched_t *p, int limit_us, double ns_per_elem,
                           int64_t elems, int frames_iter, int frames_prev) {
  if (limit_us <= 0 || ns_per_elem <= 0) return 0;      /* cost unknown */
  if (frames_iter > 1 || frames_prev > 1) return 0;     /* not quiet */
  if (ns_per_elem * (double)elems > (double)limit_us * 1000.0) return 0;
  return dynqd__sched_idle(p);
}

void dynqd__sched_stop(dynqd_sched_t *p) {
  if (p->threads == NULL) return;
  /* workers finish everything submitted (the loop is gone: none is its) */
  for (dynqd_job_t *j = p->phead; j != NULL; j = j->next) j->loop_ok = 0;
  dynqd__sched_flush(p);
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
  free(p->threads);
  p->threads = NULL;
  p->n_threads = 0;
  /* Anything still listed belongs to a loop that is gone: hand it to done
   * (which frees it; its connection is gone too, so it is skipped). */
  for (dynqd_job_t *j = atomic_exchange(&p->done, NULL), *n; j; j = n) {
    n = j->next;
    j->next = NULL;
    j->skipped = 1;
    j->ops->done(j);
  }
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
}
