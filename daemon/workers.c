/*
 * The worker pool: our own pthreads (not libuv's threadpool, which is
 * shared with file I/O) pulling jobs from a bounded FIFO.  Finished jobs go
 * on a completion list and one uv_async_send wakes the loop; libuv
 * coalesces wake-ups, so the loop drains the whole list each time.
 *
 * A job whose connection died before a worker picked it up is skipped:
 * nobody would read its answer.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "dynqd.h"

dynqd_job_t *dynqd__job_free(dynqd_job_t *j) {
  if (j == NULL) return NULL;
  for (int i = 0; i < j->n_inputs; i++) dynq__tensor_clear(&j->inputs[i]);
  free(j->inputs);
  dynq__model_unref(j->model);
  free(j->resp);
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
    pthread_mutex_unlock(&p->mu);

    j->next = NULL;
    if (atomic_load(&j->conn->dead))
      j->skipped = 1;
    else
      dynqd__run_infer(j);

    pthread_mutex_lock(&p->mu);
    j->next = p->done;
    p->done = j;
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
  rc = pthread_cond_init(&p->cv, NULL);
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
  if (p->qtail) p->qtail->next = j;
  else p->qhead = j;
  p->qtail = j;
  p->qlen++;
  pthread_cond_signal(&p->cv);
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
