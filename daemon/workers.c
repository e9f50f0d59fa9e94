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
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "dynq/errors.h"
#include "dynqd.h"

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
  free(j);
  return NULL;
}

static void *worker_main(void *arg) {
  dynqd_pool_t *p = arg;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (p->qhead == NULL && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
    dynqd_job_t *j = p->qhead;
    if (j == NULL) {  /* stop requested and the queue is empty */
      pthread_mutex_unlock(&p->mu);
      break;
    }
    p->qhead = j->next;
    if (p->qhead == NULL) p->qtail = NULL;
    p->qlen--;
    j->next = NULL;
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

    pthread_mutex_lock(&p->mu);
    while (j != NULL) {
      dynqd_job_t *n = j->next;
      j->next = p->done;
      p->done = j;
      j = n;
    }
    pthread_mutex_unlock(&p->mu);
    uv_async_send(p->async);
  }
  return NULL;
}

int dynqd__pool_start(dynqd_pool_t *p, int n_threads, int qcap,
                      uv_async_t *async) {
  memset(p, 0, sizeof(*p));
  p->qcap = qcap;
  p->async = async;
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
  pthread_mutex_lock(&p->mu);
  if (p->qlen >= p->qcap || p->stop) {
    pthread_mutex_unlock(&p->mu);
    return DYNQ_EOVERLOAD;
  }
  j->next = NULL;
  j->t_queued_ns = uv_hrtime();
  if (p->qtail) p->qtail->next = j;
  else p->qhead = j;
  p->qtail = j;
  p->qlen++;
  /* Broadcast: a worker filling a batch waits on this cv too, and an idle
   * worker must still wake for a job that batch cannot take. */
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

dynqd_job_t *dynqd__pool_take_done(dynqd_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  dynqd_job_t *d = p->done;
  p->done = NULL;
  pthread_mutex_unlock(&p->mu);
  return d;
}

int dynqd__pool_queued(dynqd_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  int n = p->qlen;
  pthread_mutex_unlock(&p->mu);
  return n;
}

void dynqd__pool_stop(dynqd_pool_t *p) {
  if (p->threads == NULL) return;
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
  for (dynqd_job_t *j = p->done, *n; j; j = n) {
    n = j->next;
    dynqd__job_free(j);
  }
  p->done = NULL;
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
}
