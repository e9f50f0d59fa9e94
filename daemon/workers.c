/*
 * The worker pool: our own pthreads (not libuv's threadpool, which is
 * shared with file I/O) pulling jobs from a bounded FIFO.  Finished jobs go
 * on a completion list and one uv_async_send wakes the loop; libuv
 * coalesces wake-ups, so the loop drains the whole list each time.
 *
 * A job whose connection died before a worker picked it up is skipped:
 * nobody would read its answer.  One whose deadline (timeout_ms) passed
 * while it waited is answered EDEADLINE without running.  Jobs of a model
 * with batching on may be merged with like ones (batch.c).
 *
 * Wake-ups: a worker that finds the queue empty polls a submit counter for
 * up to spin_us (bounded; --worker-spin) before it sleeps on the condvar,
 * so a client sending its next request right after an answer (ping-pong)
 * does not pay a futex wake-up per request.  Submit signals one sleeper,
 * and only when the spinners cannot take every queued job.
 *
 * GEMM split (issue 3): a job that starts while no other job is queued or
 * running may split its large INT8 GEMMs along N over n_threads threads
 * (lib/parallel.h, capped to the worker count at start); jobs that arrive
 * together run one per worker, each on one thread.  The split never
 * changes a result: each output column is computed by exactly one thread
 * with the same integer kernel.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

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
static void spin_for_work(dynqd_pool_t *p) {
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

dynqd_job_t *dynqd__job_free(dynqd_job_t *j) {
  if (j == NULL) return NULL;
  for (int i = 0; i < j->n_inputs; i++) dynq__tensor_clear(&j->inputs[i]);
  free(j->inputs);
  dynq__model_unref(j->model);
  free(j->resp);
  if (j->sess_new != NULL && j->session != NULL)
    for (int i = 0; i < j->session->n_bind; i++) dynq__tensor_clear(&j->sess_new[i]);
  free(j->sess_new);
  dynqd__session_unref(j->session);
  for (int i = 0; i < j->n_shm; i++) dynqd__shm_unref(j->shm[i]);
  free(j->shm);
  free(j->out_shm);
  free(j->axes);
  free(j);
  return NULL;
}

/* Push a finished chain (linked by next) on the completion stack: no lock,
 * so a worker handing back a result never waits for the loop (or another
 * worker) to leave pool->mu. */
static void push_done(dynqd_pool_t *p, dynqd_job_t *j) {
  dynqd_job_t *tail = j;
  while (tail->next != NULL) tail = tail->next;
  dynqd_job_t *head = atomic_load_explicit(&p->done, memory_order_relaxed);
  do {
    tail->next = head;
  } while (!atomic_compare_exchange_weak_explicit(&p->done, &head, j, memory_order_release,
                                                  memory_order_relaxed));
}

static void *worker_main(void *arg) {
  dynqd_pool_t *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    if (p->qhead == NULL) spin_for_work(p);
    while (p->qhead == NULL && !p->stop) {
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
    if (atomic_load(&j->conn->dead)) {
      pthread_mutex_unlock(&p->mu);
      j->skipped = 1;
    } else if (j->deadline_ns != 0 && now > j->deadline_ns) {
      pthread_mutex_unlock(&p->mu);
      char msg[160];
      snprintf(msg, sizeof(msg),
               "request waited %llu ms for a worker, past its timeout_ms of %llu ms; "
               "it was not run",
               (unsigned long long)((now - j->t_arrive_ns) / 1000000),
               (unsigned long long)((j->deadline_ns - j->t_arrive_ns) / 1000000));
      dynqd__infer_respond(j, DYNQ_EDEADLINE, msg, NULL);
    } else if (j->batch_max > 1) {
      dynqd__batch_run(p, j);  /* releases p->mu; j->next links the batch */
    } else {
      pthread_mutex_unlock(&p->mu);
      dynqd__run_infer(j);
    }

    push_done(p, j);
    uv_async_send(p->async);  /* coalesced by libuv while one is pending */
    /* Finishing and taking the next job share one lock acquisition. */
    pthread_mutex_lock(&p->mu);
    p->running--;
  }
  return NULL;
}

int dynqd__pool_start(dynqd_pool_t *p, int n_threads, int qcap, int spin_us,
                      uv_async_t *async) {
  memset(p, 0, sizeof(*p));
  p->qcap = qcap;
  p->async = async;
  p->spin_us = spin_us;
  p->width = n_threads;
  atomic_init(&p->submits, 0);
  atomic_init(&p->done, NULL);
  atomic_init(&p->qlen, 0);
  /* A lone request's split never runs more threads than there are
   * workers (the team's helpers stand in for the idle ones). */
  dynq__parallel_set_max_threads(n_threads);
  int rc = pthread_mutex_init(&p->mu, NULL);
  if (rc != 0) return -rc;
  /* Monotonic: batch.c waits with absolute deadlines on this cv. */
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
    rc = ENOMEM;
    goto fail;
  }
  /* Signals belong to the loop thread (uv_signal_t); workers block them. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  for (int i = 0; i < n_threads; i++) {
    rc = pthread_create(&p->threads[i], NULL, worker_main, p);
    if (rc != 0) break;
    p->n_threads++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    dynqd__pool_stop(p);
    return -rc;
  }
  return 0;

fail:
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  return -rc;
}

int dynqd__pool_submit(dynqd_pool_t *p, dynqd_job_t *j) {
  /* qlen only shrinks behind our back (workers take jobs), so this never
   * lets the queue pass qcap. */
  if (atomic_load_explicit(&p->qlen, memory_order_relaxed) + p->plen >= p->qcap || p->stop)
    return DYNQ_EOVERLOAD;
  j->next = NULL;
  j->t_queued_ns = uv_hrtime();
  if (p->ptail) p->ptail->next = j;
  else p->phead = j;
  p->ptail = j;
  p->plen++;
  return 0;
}

void dynqd__pool_flush(dynqd_pool_t *p) {
  if (p->plen == 0) return;
  pthread_mutex_lock(&p->mu);
  if (p->qtail) p->qtail->next = p->phead;
  else p->qhead = p->phead;
  p->qtail = p->ptail;
  int qlen = atomic_fetch_add_explicit(&p->qlen, p->plen, memory_order_relaxed) + p->plen;
  p->phead = p->ptail = NULL;
  p->plen = 0;
  atomic_fetch_add_explicit(&p->submits, 1, memory_order_relaxed);
  /* Each spinner rechecks the queue under mu before sleeping, so only the
   * jobs they cannot all take need sleepers woken, one each.  A worker
   * filling a batch waits on this cv too, and an idle worker must still
   * wake for a job that batch cannot take: broadcast then.  With no
   * sleeper to wake, a batch filler is left to collect at its deadline
   * unless its batch could fill now: waking it on every flush only to
   * collect a job or two cost two futex round trips per flush (Silero
   * streams: ~14 % of dynqd's CPU was context switching). */
  int need = qlen - p->spinning;
  if (p->batch_waiters > 0) {
    if ((need > 0 && p->sleeping > 0) || qlen >= p->batch_room)
      pthread_cond_broadcast(&p->cv);
  } else if (need > 0 && need >= p->sleeping)
    pthread_cond_broadcast(&p->cv);
  else
    for (int i = 0; i < need; i++) pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

dynqd_job_t *dynqd__pool_take_done(dynqd_pool_t *p) {
  return atomic_exchange_explicit(&p->done, NULL, memory_order_acquire);
}

int dynqd__pool_idle(dynqd_pool_t *p) {
  if (p->plen > 0) return 0;
  pthread_mutex_lock(&p->mu);
  int idle = p->qhead == NULL && p->running == 0;
  pthread_mutex_unlock(&p->mu);
  return idle;
}

int dynqd__pool_queued(dynqd_pool_t *p) {
  return atomic_load_explicit(&p->qlen, memory_order_relaxed) + p->plen;
}

void dynqd__pool_stop(dynqd_pool_t *p) {
  if (p->threads == NULL) return;
  dynqd__pool_flush(p);  /* workers finish everything submitted */
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
  free(p->threads);
  p->threads = NULL;
  p->n_threads = 0;
  /* Anything still listed was already handed back by the loop or belongs
   * to a loop that is gone; free it so nothing leaks. */
  for (dynqd_job_t *j = dynqd__pool_take_done(p), *n; j; j = n) {
    n = j->next;
    dynqd__job_free(j);
  }
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
}
