/*
 * Server statistics for the `stats` method: global counters, and per model
 * a request/error count and queue-time and compute-time histograms.
 *
 * Everything here runs on the loop thread: workers only fill timing fields
 * in their job, and the loop folds a job in when it comes back, so no
 * counter needs a lock.  Per-model records are keyed by name (not by
 * registry entry) so they survive reloads; there is at most one per model
 * name ever loaded, which the admin controls.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "dynqd.h"

/* Bucket layout: values 0..7 have their own bucket; above, each power of
 * two [2^e, 2^(e+1)) is split into 8 equal sub-buckets. */
static int hist_index(uint64_t v) {
  if (v < 8) return (int)v;
  int e = 63 - __builtin_clzll(v);  /* e >= 3 */
  int sub = (int)((v >> (e - 3)) & 7);
  int idx = (e - 2) * 8 + sub;
  return idx < DYNQD_HIST_BUCKETS ? idx : DYNQD_HIST_BUCKETS - 1;
}

/* Largest value that falls in bucket idx. */
static uint64_t hist_upper(int idx) {
  if (idx < 8) return (uint64_t)idx;
  int e = idx / 8 + 2, sub = idx % 8;
  uint64_t lo = ((uint64_t)(8 + sub)) << (e - 3);
  return lo + ((uint64_t)1 << (e - 3)) - 1;
}

void dynqd__hist_add(dynqd_hist_t *h, uint64_t v) {
  h->b[hist_index(v)]++;
  h->count++;
}

uint64_t dynqd__hist_quantile(const dynqd_hist_t *h, double q) {
  if (h->count == 0) return 0;
  /* Rank of the sample wanted, 1-based: ceil(q * count), at least 1. */
  double r = q * (double)h->count;
  uint64_t rank = (uint64_t)r;
  if ((double)rank < r) rank++;
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < DYNQD_HIST_BUCKETS; i++) {
    seen += h->b[i];
    if (seen >= rank) return hist_upper(i);
  }
  return hist_upper(DYNQD_HIST_BUCKETS - 1);
}

static dynqd_stats_t *get_stats(dynqd_server_t *s) {
  if (s->stats == NULL) s->stats = calloc(1, sizeof(*s->stats));
  return s->stats;
}

dynqd_mstats_t *dynqd__stats_model(dynqd_server_t *s, const char *name) {
  dynqd_stats_t *st = get_stats(s);
  if (st == NULL || name == NULL) return NULL;
  for (int i = 0; i < st->n; i++)
    if (strcmp(st->m[i]->name, name) == 0) return st->m[i];
  if (st->n == st->cap) {
    int ncap = st->cap ? st->cap * 2 : 8;
    dynqd_mstats_t **nm = realloc(st->m, (size_t)ncap * sizeof(*nm));
    if (nm == NULL) return NULL;
    st->m = nm;
    st->cap = ncap;
  }
  dynqd_mstats_t *ms = calloc(1, sizeof(*ms));
  if (ms == NULL) return NULL;
  ms->name = strdup(name);
  if (ms->name == NULL) {
    free(ms);
    return NULL;
  }
  st->m[st->n++] = ms;
  return ms;
}

void dynqd__stats_count(dynqd_server_t *s, dynqd_mstats_t *ms, int code) {
  dynqd_stats_t *st = get_stats(s);
  if (st == NULL) return;
  st->requests_total++;
  if (code != 0) st->errors_total++;
  if (code == DYNQ_EOVERLOAD) st->overloads_total++;
  if (code == DYNQ_EDEADLINE) st->timeouts_total++;
  if (ms != NULL) {
    ms->requests++;
    if (code != 0) ms->errors++;
  }
}

void dynqd__stats_job(dynqd_server_t *s, const dynqd_job_t *j) {
  if (j->skipped) return;  /* nobody was there to answer */
  dynqd__stats_count(s, j->mstats, j->status);
  if (j->mstats == NULL) return;
  dynqd__hist_add(&j->mstats->queue_us, j->queue_us > 0 ? (uint64_t)j->queue_us : 0);
  if (j->status == 0)
    dynqd__hist_add(&j->mstats->compute_us, j->compute_us > 0 ? (uint64_t)j->compute_us : 0);
  /* Cost per input element of single-thread, unbatched runs: what the
   * loop uses to decide whether a request is small enough to run inline.
   * Runs slowed by load raise it, which keeps a busy daemon on workers.
   * A run that could split counts as if it split perfectly (an upper bound
   * on its one-thread cost). */
  if (j->status == 0 && j->batched <= 1 && j->in_elems > 0) {
    double x = (double)(j->compute_us > 0 ? j->compute_us : 0) * 1000.0 / (double)j->in_elems;
    if (j->threads > 1) x *= j->threads;
    double *e = &j->mstats->ns_per_elem;
    *e = *e > 0 ? 0.75 * *e + 0.25 * x : (x > 0 ? x : 1e-3);
  }
}

void dynqd__stats_free(dynqd_server_t *s) {
  dynqd_stats_t *st = s->stats;
  if (st == NULL) return;
  for (int i = 0; i < st->n; i++) {
    free(st->m[i]->name);
    free(st->m[i]);
  }
  free(st->m);
  free(st);
  s->stats = NULL;
}

static void w_hist(dynq__wbuf_t *w, const dynqd_hist_t *h) {
  dynq__w_map(w, 4);
  dynq__w_str(w, "count");
  dynq__w_uint(w, h->count);
  dynq__w_str(w, "p50");
  dynq__w_uint(w, dynqd__hist_quantile(h, 0.50));
  dynq__w_str(w, "p90");
  dynq__w_uint(w, dynqd__hist_quantile(h, 0.90));
  dynq__w_str(w, "p99");
  dynq__w_uint(w, dynqd__hist_quantile(h, 0.99));
}

void dynqd__m_stats(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  (void)params;  /* takes none; anything given is ignored */
  dynqd_server_t *s = c->srv;
  dynqd_stats_t *st = get_stats(s);
  if (st == NULL) {
    dynqd__conn_send_error(c, msgid, -ENOMEM, "out of memory building stats");
    return;
  }
  uint64_t mapped = s->shm_bytes;
  for (int i = 0; i < s->reg.n; i++) mapped += dynq__model_file_size(s->reg.v[i].model);
  int inflight = s->jobs_outstanding - dynqd__pool_queued(&s->pool);
  if (inflight < 0) inflight = 0;

  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, msgid);
  dynq__w_map(&w, 14);
  dynq__w_str(&w, "uptime_s");
  dynq__w_double(&w, (double)(uv_hrtime() - s->start_ns) / 1e9);
  dynq__w_str(&w, "connections");
  dynq__w_int(&w, s->n_conns);
  dynq__w_str(&w, "queue_depth");
  dynq__w_int(&w, dynqd__pool_queued(&s->pool));
  dynq__w_str(&w, "queue_cap");
  dynq__w_int(&w, s->pool.qcap);
  dynq__w_str(&w, "inflight");
  dynq__w_int(&w, inflight);
  dynq__w_str(&w, "sessions");
  dynq__w_int(&w, s->n_sessions);
  dynq__w_str(&w, "shm_regions");
  dynq__w_int(&w, s->n_shm);
  dynq__w_str(&w, "bytes_mapped");
  dynq__w_uint(&w, mapped);
  dynq__w_str(&w, "requests_total");
  dynq__w_uint(&w, st->requests_total);
  dynq__w_str(&w, "errors_total");
  dynq__w_uint(&w, st->errors_total);
  dynq__w_str(&w, "overloads_total");
  dynq__w_uint(&w, st->overloads_total);
  dynq__w_str(&w, "timeouts_total");
  dynq__w_uint(&w, st->timeouts_total);
  dynq__w_str(&w, "inline_total");
  dynq__w_uint(&w, st->inline_total);
  dynq__w_str(&w, "models");
  /* Every loaded model, plus any that has counts but is gone now. */
  uint32_t n = (uint32_t)s->reg.n;
  for (int i = 0; i < st->n; i++)
    if (dynqd__registry_find(&s->reg, st->m[i]->name) == NULL) n++;
  dynq__w_map(&w, n);
  for (int pass = 0; pass < 2; pass++) {
    int count = pass == 0 ? s->reg.n : st->n;
    for (int i = 0; i < count; i++) {
      const char *name;
      int version = 0;
      if (pass == 0) {
        name = s->reg.v[i].name;
        version = s->reg.v[i].version;
      } else {
        name = st->m[i]->name;
        if (dynqd__registry_find(&s->reg, name) != NULL) continue;
      }
      const dynqd_mstats_t *ms = NULL;
      for (int k = 0; k < st->n && ms == NULL; k++)
        if (strcmp(st->m[k]->name, name) == 0) ms = st->m[k];
      static const dynqd_mstats_t zero;
      if (ms == NULL) ms = &zero;
      dynq__w_str(&w, name);
      dynq__w_map(&w, 5);
      dynq__w_str(&w, "version");
      dynq__w_int(&w, version);
      dynq__w_str(&w, "requests");
      dynq__w_uint(&w, ms->requests);
      dynq__w_str(&w, "errors");
      dynq__w_uint(&w, ms->errors);
      dynq__w_str(&w, "queue_us");
      w_hist(&w, &ms->queue_us);
      dynq__w_str(&w, "compute_us");
      w_hist(&w, &ms->compute_us);
    }
  }
  dynqd__conn_send_wbuf(c, &w);
}
