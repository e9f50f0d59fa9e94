/*
 * Server statistics (the `stats` method answers them, rpc_server.c):
 * global counters, and per model a request/error count and queue-time and
 * compute-time histograms.
 *
 * Everything here runs on the loop thread: workers only fill timing fields
 * in their request, and the loop folds a run in when it comes back, so no
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
uint64_t dynqd__hist_upper(int idx) {
  if (idx < 8) return (uint64_t)idx;
  int e = idx / 8 + 2, sub = idx % 8;
  uint64_t lo = ((uint64_t)(8 + sub)) << (e - 3);
  return lo + ((uint64_t)1 << (e - 3)) - 1;
}

/* Inlined where the loop adds per request. */
static inline void hist_put(dynqd_hist_t *h, uint64_t v) {
  h->b[hist_index(v)]++;
  h->count++;
  h->sum += v;
}

void dynqd__hist_add(dynqd_hist_t *h, uint64_t v) { hist_put(h, v); }

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
    if (seen >= rank) return dynqd__hist_upper(i);
  }
  return dynqd__hist_upper(DYNQD_HIST_BUCKETS - 1);
}

const dynqd_mstats_t *dynqd__stats_find(const dynqd_stats_t *st, const char *name) {
  for (int i = 0; i < st->n; i++)
    if (strcmp(st->m[i]->name, name) == 0) return st->m[i];
  return NULL;
}

dynqd_mstats_t *dynqd__stats_model(dynqd_stats_t *st, const char *name) {
  if (name == NULL) return NULL;
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

static inline void count(dynqd_stats_t *st, dynqd_mstats_t *ms, int code) {
  st->requests_total++;
  if (code != 0) st->errors_total++;
  if (code == DYNQ_EOVERLOAD) st->overloads_total++;
  if (code == DYNQ_EDEADLINE) st->timeouts_total++;
  if (ms != NULL) {
    ms->requests++;
    if (code != 0) ms->errors++;
  }
}

void dynqd__stats_count(dynqd_stats_t *st, dynqd_mstats_t *ms, int code) {
  count(st, ms, code);
}

void dynqd__stats_run(dynqd_stats_t *st, dynqd_mstats_t *ms, const dynqd_run_sample_t *r) {
  count(st, ms, r->status);
  if (ms == NULL) return;
  hist_put(&ms->queue_us, r->queue_us > 0 ? (uint64_t)r->queue_us : 0);
  if (r->status == 0)
    hist_put(&ms->compute_us, r->compute_us > 0 ? (uint64_t)r->compute_us : 0);
  /* Cost per input element of single-thread, unbatched runs: what the
   * loop uses to decide whether a request is small enough to run inline.
   * Runs slowed by load raise it, which keeps a busy daemon on workers.
   * A run that could split counts as if it split perfectly (an upper bound
   * on its one-thread cost). */
  if (r->status == 0 && r->batched <= 1 && r->in_elems > 0) {
    double x = (double)(r->compute_us > 0 ? r->compute_us : 0) * 1000.0 / (double)r->in_elems;
    if (r->threads > 1) x *= r->threads;
    double *e = &ms->ns_per_elem;
    *e = *e > 0 ? 0.75 * *e + 0.25 * x : (x > 0 ? x : 1e-3);
  } else if (r->status == 0 && r->batched > 1 && r->in_elems > 0) {
    /* every request of the run reports it: a small weight each */
    double x = (double)(r->compute_us > 0 ? r->compute_us : 0) * 1000.0 /
               ((double)r->in_elems * r->batched);
    if (r->threads > 1) x *= r->threads;  /* as above: its one-thread cost */
    double *e = &ms->ns_per_elem_merged;
    *e = *e > 0 ? *e + (x - *e) / 64 : (x > 0 ? x : 1e-3);
  }
}

void dynqd__stats_free(dynqd_stats_t *st) {
  for (int i = 0; i < st->n; i++) {
    free(st->m[i]->name);
    free(st->m[i]);
  }
  free(st->m);
  memset(st, 0, sizeof(*st));
}
