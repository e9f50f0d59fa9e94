/*
 * Server-wide methods: ping, server.info, health.live, health.ready and
 * stats.  All answered on the loop at once, whatever the workers are doing
 * (liveness must not wait behind busy workers or a model load).
 */
#include <errno.h>
#include <string.h>

#include "dynq-config.h"
#include "dynq/errors.h"
#include "dynqd.h"
#include "engine.h"

int dynqd__m_ping(dynqd_req_t *rq, const dynq__params_t *p) {
  (void)p;
  dynq__wbuf_t w;
  dynqd__reply_begin(rq, &w);
  dynq__w_str(&w, "pong");
  dynqd__reply_send(rq, &w);
  return 0;
}


int dynqd__m_server_info(dynqd_req_t *rq, const dynq__params_t *p) {
  (void)p;
  dynqd_server_t *s = rq->srv;
  int nk = 0;
  const dynq__kernel_t *const *kl = dynq__kernel_list(&nk);
  dynq__wbuf_t w;
  dynqd__reply_begin(rq, &w);
  dynq__w_map_begin(&w);
  KV(&w, "version", dynq__w_str(&w, DYNQ_VERSION));
  KV(&w, "protocol", dynq__w_int(&w, DYNQ_PROTOCOL_VERSION));
  KV(&w, "kernel", dynq__w_str(&w, dynq__engine_kernel_name()));
  KV(&w, "kernels", {
    dynq__w_array(&w, (uint32_t)nk);
    for (int i = 0; i < nk; i++) dynq__w_str(&w, kl[i]->name);
  });
  KV(&w, "openblas_core", dynq__w_str(&w, dynq__engine_blas_core()));
  KV(&w, "workers", dynq__w_int(&w, s->sched.n_threads));
  KV(&w, "models", dynq__w_int(&w, s->reg.n));
  KV(&w, "uptime_s", dynq__w_double(&w, (double)(uv_hrtime() - s->start_ns) / 1e9));
  dynq__w_map_end(&w);
  dynqd__reply_send(rq, &w);
  return 0;
}

int dynqd__m_health_live(dynqd_req_t *rq, const dynq__params_t *p) {
  (void)p;
  dynq__wbuf_t w;
  dynqd__reply_begin(rq, &w);
  dynq__w_map_begin(&w);
  KV(&w, "status", dynq__w_str(&w, "ok"));
  dynq__w_map_end(&w);
  dynqd__reply_send(rq, &w);
  return 0;
}

int dynqd__m_health_ready(dynqd_req_t *rq, const dynq__params_t *p) {
  (void)p;
  dynqd_server_t *s = rq->srv;
  /* The registry publishes a model only after it was loaded and warmed. */
  int ready = s->reg.n > 0 && !s->draining && !s->starting;
  const char *reason = s->draining   ? "draining: shutting down"
                       : s->starting ? "starting: loading models"
                       : s->reg.n == 0 ? "no model loaded"
                                       : "serving";
  dynq__wbuf_t w;
  dynqd__shadow_collect(&s->shadow);
  dynqd__reply_begin(rq, &w);
  dynq__w_map_begin(&w);
  KV(&w, "ready", dynq__w_bool(&w, ready));
  KV(&w, "models", dynq__w_int(&w, s->reg.n));
  KV(&w, "reason", dynq__w_str(&w, reason));
  /* Quality warnings (shadow_alert crossed within its window): the
   * answers are still served, so this is not a readiness failure. */
  uint64_t now = uv_hrtime();
  uint32_t nq = 0;
  for (int i = 0; i < s->stats.n; i++) nq += s->stats.m[i]->shadow.warn_until_ns > now;
  if (nq > 0) {
    KV(&w, "quality", {
      dynq__w_array(&w, nq);
      for (int i = 0; i < s->stats.n; i++) {
        const dynqd_mstats_t *ms = s->stats.m[i];
        if (ms->shadow.warn_until_ns <= now) continue;
        dynq__w_map_begin(&w);
        KV(&w, "model", dynq__w_str(&w, ms->name));
        KV(&w, "rel_l2", dynq__w_double(&w, ms->shadow.warn_value));
        KV(&w, "alert", dynq__w_double(&w, s->cfg->shadow_alert));
        KV(&w, "message", dynq__w_str(&w, "INT8 answers differ from FP32 more than "
                                          "shadow_alert (shadow telemetry)"));
        dynq__w_map_end(&w);
      }
    });
  }
  dynq__w_map_end(&w);
  dynqd__reply_send(rq, &w);
  return 0;
}

/* A histogram map: count, p50/p90/p99, sum and the non-empty buckets as
 * [upper, count], ascending (Prometheus folds them into its own bounds).
 * Latencies go as integer microseconds; a shadow error histogram (values
 * x 1e6) in the metric's own unit, with its max: every figure is a whole
 * number of millionths, so a client gets the integers back by rounding
 * x 1e6. */
static void w_hist_map(dynq__wbuf_t *w, const dynqd_hist_t *h, int millionths) {
#define V(x)                                                        \
  (millionths ? dynq__w_double(w, (double)(x) / 1e6) : dynq__w_uint(w, (x)))
  dynq__w_map_begin(w);
  KV(w, "count", dynq__w_uint(w, h->count));
  KV(w, "p50", V(dynqd__hist_quantile(h, 0.50)));
  KV(w, "p90", V(dynqd__hist_quantile(h, 0.90)));
  KV(w, "p99", V(dynqd__hist_quantile(h, 0.99)));
  if (millionths) {
    KV(w, "max", {
      uint64_t mx = 0;
      for (int i = 0; i < DYNQD_HIST_BUCKETS; i++)
        if (h->b[i] != 0) mx = dynqd__hist_upper(i);
      V(mx);
    });
  }
  KV(w, "sum", V(h->sum));
  KV(w, "buckets", {
    uint32_t nb = 0;
    for (int i = 0; i < DYNQD_HIST_BUCKETS; i++) nb += h->b[i] != 0;
    dynq__w_array(w, nb);
    for (int i = 0; i < DYNQD_HIST_BUCKETS; i++) {
      if (h->b[i] == 0) continue;
      dynq__w_array(w, 2);
      V(dynqd__hist_upper(i));
      dynq__w_uint(w, h->b[i]);
    }
  });
  dynq__w_map_end(w);
#undef V
}

static void w_shadow(dynq__wbuf_t *w, const dynqd_shadow_t *sh, const dynqd_mstats_t *ms) {
  const dynqd_shadow_stats_t *st = &ms->shadow;
  dynq__w_map_begin(w);
  KV(w, "rate", dynq__w_double(w, ms->name ? dynqd__shadow_rate(sh, ms) : 0));
  KV(w, "runs", dynq__w_uint(w, st->runs));
  KV(w, "dropped", dynq__w_uint(w, st->dropped));
  KV(w, "decisions_changed", dynq__w_uint(w, st->decisions_changed));
  KV(w, "alerts", dynq__w_uint(w, st->alerts));
  KV(w, "rel_l2", w_hist_map(w, &st->rel_l2_ppm, 1));
  KV(w, "max_abs", w_hist_map(w, &st->max_abs_ppm, 1));
  dynq__w_map_end(w);
}

static void w_model_stats(dynq__wbuf_t *w, const dynqd_shadow_t *sh, const char *name,
                          int version, const dynqd_mstats_t *ms) {
  static const dynqd_mstats_t zero;
  if (ms == NULL) ms = &zero;
  dynq__w_str(w, name);
  dynq__w_map_begin(w);
  KV(w, "version", dynq__w_int(w, version));
  KV(w, "requests", dynq__w_uint(w, ms->requests));
  KV(w, "errors", dynq__w_uint(w, ms->errors));
  KV(w, "queue_us", w_hist_map(w, &ms->queue_us, 0));
  KV(w, "compute_us", w_hist_map(w, &ms->compute_us, 0));
  if (ms->shadow.runs + ms->shadow.dropped > 0 || ms->shadow.rate_set ||
      (ms->name && dynqd__shadow_rate(sh, ms) > 0))
    KV(w, "shadow", w_shadow(w, sh, ms));
  dynq__w_map_end(w);
}

int dynqd__m_stats(dynqd_req_t *rq, const dynq__params_t *p) {
  (void)p;  /* takes none; anything given is ignored */
  dynqd_server_t *s = rq->srv;
  const dynqd_stats_t *st = &s->stats;
  dynqd__shadow_collect(&s->shadow);
  uint64_t mapped = s->shm.bytes;
  for (int i = 0; i < s->reg.n; i++) mapped += dynq__model_file_size(s->reg.v[i].model);
  int queued = dynqd__sched_queued(&s->sched);
  int inflight = s->sched.outstanding + s->loads_outstanding - queued;
  if (inflight < 0) inflight = 0;

  dynq__wbuf_t w;
  dynqd__reply_begin(rq, &w);
  dynq__w_map_begin(&w);
  KV(&w, "uptime_s", dynq__w_double(&w, (double)(uv_hrtime() - s->start_ns) / 1e9));
  KV(&w, "connections", dynq__w_int(&w, s->n_conns));
  KV(&w, "queue_depth", dynq__w_int(&w, queued));
  KV(&w, "queue_cap", dynq__w_int(&w, s->sched.qcap));
  KV(&w, "inflight", dynq__w_int(&w, inflight));
  KV(&w, "sessions", dynq__w_int(&w, s->sessions.n));
  KV(&w, "shm_regions", dynq__w_int(&w, s->shm.n));
  KV(&w, "bytes_mapped", dynq__w_uint(&w, mapped));
  KV(&w, "requests_total", dynq__w_uint(&w, st->requests_total));
  KV(&w, "errors_total", dynq__w_uint(&w, st->errors_total));
  KV(&w, "overloads_total", dynq__w_uint(&w, st->overloads_total));
  KV(&w, "timeouts_total", dynq__w_uint(&w, st->timeouts_total));
  KV(&w, "inline_total", dynq__w_uint(&w, st->inline_total));
  KV(&w, "loop_handoffs_total", dynq__w_uint(&w, s->sched.handoffs));
  KV(&w, "shadow_runs_total", dynq__w_uint(&w, s->shadow.runs_total));
  KV(&w, "shadow_dropped_total", dynq__w_uint(&w, s->shadow.dropped_total));
  KV(&w, "shadow_decisions_changed_total", dynq__w_uint(&w, s->shadow.decisions_total));
  /* Every loaded model, plus any that has counts but is gone now. */
  KV(&w, "models", {
    dynq__w_map_begin(&w);
    for (int i = 0; i < s->reg.n; i++)
      w_model_stats(&w, &s->shadow, s->reg.v[i].name, s->reg.v[i].version,
                    dynqd__stats_find(st, s->reg.v[i].name));
    for (int i = 0; i < st->n; i++) {
      if (dynqd__registry_find(&s->reg, st->m[i]->name) != NULL) continue;
      w_model_stats(&w, &s->shadow, st->m[i]->name, 0, st->m[i]);
    }
    dynq__w_map_end(&w);
  });
  dynq__w_map_end(&w);
  dynqd__reply_send(rq, &w);
  return 0;
}
