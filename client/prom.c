/*
 * dynqctl's renderings of dynqd's stats: the Prometheus text exposition
 * format (for node_exporter's textfile collector) and the human table.
 * Pure functions of a dynq_stats_t so the exact text can be tested.
 *
 * Prometheus conventions: base units (seconds, bytes), counters end in
 * _total, each family has one HELP and one TYPE line before its samples,
 * label values escape backslash, double quote and newline.  Latencies
 * are histograms (_bucket with fixed le bounds, _sum, _count): unlike
 * quantiles over the whole uptime they can be summed across hosts and
 * turned into rates over any window (histogram_quantile over rate()).  The
 * le bounds are 2^k - 1 microseconds, k = 0..DYNQ_LATENCY_BUCKETS-1: exact
 * for dynqd's integer-microsecond samples, whose own buckets nest inside
 * powers of two.  A dynqd that sends no buckets gets the old summary.
 */
#include "dynqctl-io.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void label_value(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '\\')
      fputs("\\\\", f);
    else if (*s == '"')
      fputs("\\\"", f);
    else if (*s == '\n')
      fputs("\\n", f);
    else
      fputc(*s, f);
  }
  fputc('"', f);
}

static void head(FILE *f, const char *name, const char *type, const char *help) {
  fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(FILE *f, const char *name, const char *help, uint64_t v) {
  head(f, name, "gauge", help);
  fprintf(f, "%s %" PRIu64 "\n", name, v);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v) {
  head(f, name, "counter", help);
  fprintf(f, "%s %" PRIu64 "\n", name, v);
}

/* One sample per model of a per-model integer field. */
static void per_model(FILE *f, const dynq_stats_t *s, const char *name, const char *type,
                      const char *help, size_t field_off) {
  if (s->n_models == 0) return;
  head(f, name, type, help);
  for (int i = 0; i < s->n_models; i++) {
    uint64_t v = *(const uint64_t *)((const char *)&s->models[i] + field_off);
    fprintf(f, "%s{model=", name);
    label_value(f, s->models[i].name);
    fprintf(f, "} %" PRIu64 "\n", v);
  }
}

/* A count of millionths (microseconds, ppm) in the whole unit. */
static void millionths(FILE *f, uint64_t v) { fprintf(f, "%.9g", (double)v / 1e6); }

/* One model's samples of a histogram family.  Values are integer
 * millionths of the unit (microseconds of a second, ppm of an error), so
 * the le bounds 2^k - 1 and the sum print as millionths. */
static void histogram_samples(FILE *f, const char *name, const char *model,
                              const dynq_latency_t *l) {
  for (int k = 0; k < DYNQ_LATENCY_BUCKETS; k++) {
    fprintf(f, "%s_bucket{model=", name);
    label_value(f, model);
    fputs(",le=\"", f);
    millionths(f, ((uint64_t)1 << k) - 1);
    fprintf(f, "\"} %" PRIu64 "\n", l->below[k]);
  }
  fprintf(f, "%s_bucket{model=", name);
  label_value(f, model);
  fprintf(f, ",le=\"+Inf\"} %" PRIu64 "\n", l->count);
  fprintf(f, "%s_sum{model=", name);
  label_value(f, model);
  fputs("} ", f);
  millionths(f, l->sum);
  fprintf(f, "\n%s_count{model=", name);
  label_value(f, model);
  fprintf(f, "} %" PRIu64 "\n", l->count);
}

static void histogram(FILE *f, const dynq_stats_t *s, const char *name, const char *help,
                      size_t field_off) {
  head(f, name, "histogram", help);
  for (int i = 0; i < s->n_models; i++)
    histogram_samples(f, name, s->models[i].name,
                      (const dynq_latency_t *)((const char *)&s->models[i] + field_off));
}

/* Every model's histogram was sent (a dynqd from before histograms sends
 * none: then the percentiles as a summary). */
static int have_buckets(const dynq_stats_t *s, size_t field_off) {
  for (int i = 0; i < s->n_models; i++)
    if (!((const dynq_latency_t *)((const char *)&s->models[i] + field_off))->has_buckets)
      return 0;
  return 1;
}

static void latency(FILE *f, const dynq_stats_t *s, const char *name, const char *help,
                    size_t field_off) {
  static const struct {
    const char *q;
    size_t off;
  } qs[] = {
    { "0.5", offsetof(dynq_latency_t, p50) },
    { "0.9", offsetof(dynq_latency_t, p90) },
    { "0.99", offsetof(dynq_latency_t, p99) },
  };
  if (s->n_models == 0) return;
  if (have_buckets(s, field_off)) {
    histogram(f, s, name, help, field_off);
    return;
  }
  head(f, name, "summary", help);
  for (int i = 0; i < s->n_models; i++) {
    const dynq_latency_t *l =
        (const dynq_latency_t *)((const char *)&s->models[i] + field_off);
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
      fprintf(f, "%s{model=", name);
      label_value(f, s->models[i].name);
      fprintf(f, ",quantile=\"%s\"} ", qs[k].q);
      millionths(f, *(const uint64_t *)((const char *)l + qs[k].off));
      fputc('\n', f);
    }
    fprintf(f, "%s_count{model=", name);
    label_value(f, s->models[i].name);
    fprintf(f, "} %" PRIu64 "\n", l->count);
  }
}

/* Models with shadow telemetry (a library older than dynq_stats_t's
 * shadow array leaves it NULL). */
static int shadowed(const dynq_stats_t *s, int i) {
  return s->shadow != NULL && s->shadow[i].on;
}

/* One family over the shadowed models: an integer field (type counter or
 * gauge), or with hist set the dynq_latency_t at field_off as a histogram
 * (each model's only when dynqd sent its buckets). */
static void shadow_family(FILE *f, const dynq_stats_t *s, const char *name, const char *type,
                          const char *help, size_t field_off) {
  int hist = strcmp(type, "histogram") == 0, any = 0;
  for (int i = 0; i < s->n_models; i++) {
    if (!shadowed(s, i)) continue;
    const char *p = (const char *)&s->shadow[i] + field_off;
    if (hist && !((const dynq_latency_t *)p)->has_buckets) continue;
    if (!any++) head(f, name, type, help);
    if (hist) {
      histogram_samples(f, name, s->models[i].name, (const dynq_latency_t *)p);
      continue;
    }
    fprintf(f, "%s{model=", name);
    label_value(f, s->models[i].name);
    fprintf(f, "} %" PRIu64 "\n", *(const uint64_t *)p);
  }
}

/* Shadow FP32 telemetry per model: the sampling rate, the run counters
 * and the INT8-vs-FP32 error histograms (bounds in the error's own unit). */
static void shadow_metrics(FILE *f, const dynq_stats_t *s) {
  int any = 0;
  for (int i = 0; i < s->n_models; i++) {
    if (!shadowed(s, i)) continue;
    if (!any++)
      head(f, "dynq_model_shadow_rate", "gauge",
           "Fraction of the model's INT8 requests re-run on FP32 (shadow telemetry).");
    fputs("dynq_model_shadow_rate{model=", f);
    label_value(f, s->models[i].name);
    fprintf(f, "} %.9g\n", s->shadow[i].rate);
  }
  shadow_family(f, s, "dynq_model_shadow_runs_total", "counter",
                "Shadow FP32 re-runs compared with the INT8 answer.",
                offsetof(dynq_model_shadow_t, runs));
  shadow_family(f, s, "dynq_model_shadow_dropped_total", "counter",
                "Requests sampled for a shadow run but not run (dynqd was busy).",
                offsetof(dynq_model_shadow_t, dropped));
  shadow_family(f, s, "dynq_model_shadow_decisions_changed_total", "counter",
                "Shadow runs where an arg-max or a 0.5 threshold differed from FP32.",
                offsetof(dynq_model_shadow_t, decisions_changed));
  shadow_family(f, s, "dynq_model_shadow_alerts_total", "counter",
                "Shadow runs whose relL2 was above shadow_alert.",
                offsetof(dynq_model_shadow_t, alerts));
  shadow_family(f, s, "dynq_model_shadow_rel_l2", "histogram",
                "Relative L2 error of INT8 answers against FP32 (largest over outputs).",
                offsetof(dynq_model_shadow_t, rel_l2_ppm));
  shadow_family(f, s, "dynq_model_shadow_max_abs", "histogram",
                "Largest absolute difference of INT8 answers from FP32.",
                offsetof(dynq_model_shadow_t, max_abs_ppm));
}

/* Top-level stats counters with a line of their own above. */
static int known_counter(const char *name) {
  static const char *const known[] = {
    "connections", "queue_depth", "queue_cap", "inflight", "sessions", "shm_regions",
    "bytes_mapped", "requests_total", "errors_total", "overloads_total", "timeouts_total",
  };
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
    if (strcmp(known[i], name) == 0) return 1;
  return 0;
}

/* A counter name as a Prometheus metric name part: [a-zA-Z0-9_]. */
static void metric_part(FILE *f, const char *s) {
  for (; *s; s++) {
    char ch = *s;
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
             (ch >= '0' && ch <= '9') || ch == '_';
    fputc(ok ? ch : '_', f);
  }
}

/* Every counter dynqd sends that has no line above, so a counter added to
 * dynqd reaches Prometheus without a new dynqctl: dynq_<name>, a counter
 * when the name ends in _total, else a gauge. */
static void other_counters(const dynq_stats_t *s, FILE *f) {
  for (int i = 0; i < s->n_counters && s->counters != NULL; i++) {
    const dynq_counter_t *k = &s->counters[i];
    size_t n = strlen(k->name);
    int total = n > 6 && strcmp(k->name + n - 6, "_total") == 0;
    if (known_counter(k->name)) continue;
    fputs("# HELP dynq_", f);
    metric_part(f, k->name);
    fputs(" dynqd stats counter '", f);
    metric_part(f, k->name);
    fputs("' (docs/PROTOCOL.md, stats).\n# TYPE dynq_", f);
    metric_part(f, k->name);
    fprintf(f, " %s\ndynq_", total ? "counter" : "gauge");
    metric_part(f, k->name);
    fprintf(f, " %" PRIu64 "\n", k->value);
  }
}

void dynq__prom_render(const dynq_stats_t *s, FILE *f) {
  head(f, "dynq_uptime_seconds", "gauge", "Seconds since dynqd started.");
  fprintf(f, "dynq_uptime_seconds %.9g\n", s->uptime_s);
  gauge(f, "dynq_connections", "Open client connections.", s->connections);
  gauge(f, "dynq_queue_depth", "Requests waiting for a worker.", s->queue_depth);
  gauge(f, "dynq_queue_capacity", "Queue capacity; beyond it requests get EOVERLOAD.",
        s->queue_cap);
  gauge(f, "dynq_inflight_requests", "Requests accepted and not yet answered.", s->inflight);
  gauge(f, "dynq_sessions", "Open streaming sessions.", s->sessions);
  gauge(f, "dynq_shm_regions", "Registered shared-memory regions.", s->shm_regions);
  gauge(f, "dynq_mapped_bytes", "Bytes of model files and regions mapped.", s->bytes_mapped);
  counter(f, "dynq_daemon_requests_total",
          "Inference requests answered, all models, errors and refusals included "
          "(other methods are not counted).", s->requests_total);
  counter(f, "dynq_daemon_errors_total", "Inference requests answered with an error.",
          s->errors_total);
  counter(f, "dynq_overloads_total", "Requests refused with EOVERLOAD.", s->overloads_total);
  counter(f, "dynq_timeouts_total", "Requests skipped with EDEADLINE.", s->timeouts_total);
  other_counters(s, f);
  per_model(f, s, "dynq_model_version", "gauge", "Version of the model now serving.",
            offsetof(dynq_model_stats_t, version));
  per_model(f, s, "dynq_requests_total", "counter", "Inference requests per model.",
            offsetof(dynq_model_stats_t, requests));
  per_model(f, s, "dynq_errors_total", "counter", "Failed inference requests per model.",
            offsetof(dynq_model_stats_t, errors));
  latency(f, s, "dynq_queue_seconds", "Time requests waited for a worker.",
          offsetof(dynq_model_stats_t, queue_us));
  latency(f, s, "dynq_compute_seconds", "Time requests spent running the model.",
          offsetof(dynq_model_stats_t, compute_us));
  shadow_metrics(f, s);
}

void dynq__stats_table(const dynq_stats_t *s, FILE *f) {
  fprintf(f, "uptime %.1f s, %" PRIu64 " connections, queue %" PRIu64 "/%" PRIu64
             ", %" PRIu64 " in flight, %" PRIu64 " sessions, %" PRIu64 " shm regions, %" PRIu64
             " bytes mapped\n",
          s->uptime_s, s->connections, s->queue_depth, s->queue_cap, s->inflight,
          s->sessions, s->shm_regions, s->bytes_mapped);
  fprintf(f, "requests %" PRIu64 ", errors %" PRIu64 ", overloads %" PRIu64
             ", timeouts %" PRIu64 "\n",
          s->requests_total, s->errors_total, s->overloads_total, s->timeouts_total);
  int others = 0;
  for (int i = 0; i < s->n_counters && s->counters != NULL; i++) {
    if (known_counter(s->counters[i].name)) continue;
    fprintf(f, "%s%s %" PRIu64, others++ ? ", " : "", s->counters[i].name,
            s->counters[i].value);
  }
  if (others) fputc('\n', f);
  if (s->n_models == 0) {
    fprintf(f, "no models\n");
    return;
  }
  fprintf(f, "\n%-20s %4s %10s %8s %27s %27s\n", "MODEL", "VER", "REQUESTS", "ERRORS",
          "QUEUE us p50/p90/p99", "COMPUTE us p50/p90/p99");
  for (int i = 0; i < s->n_models; i++) {
    const dynq_model_stats_t *m = &s->models[i];
    char q[64], c[64];
    snprintf(q, sizeof(q), "%" PRIu64 "/%" PRIu64 "/%" PRIu64, m->queue_us.p50,
             m->queue_us.p90, m->queue_us.p99);
    snprintf(c, sizeof(c), "%" PRIu64 "/%" PRIu64 "/%" PRIu64, m->compute_us.p50,
             m->compute_us.p90, m->compute_us.p99);
    fprintf(f, "%-20s %4" PRIu64 " %10" PRIu64 " %8" PRIu64 " %27s %27s\n", m->name,
            m->version, m->requests, m->errors, q, c);
  }
  for (int i = 0; i < s->n_models; i++) {
    const dynq_model_shadow_t *sh = &s->shadow[i];
    if (!shadowed(s, i)) continue;
    fprintf(f, "shadow %s: rate %.3g, %" PRIu64 " runs, %" PRIu64 " dropped, relL2 "
               "p50/p90/p99 %.4g/%.4g/%.4g, max-abs p99 %.4g, %" PRIu64
               " decisions changed, %" PRIu64 " alerts\n",
            s->models[i].name, sh->rate, sh->runs, sh->dropped,
            (double)sh->rel_l2_ppm.p50 / 1e6, (double)sh->rel_l2_ppm.p90 / 1e6,
            (double)sh->rel_l2_ppm.p99 / 1e6, (double)sh->max_abs_ppm.p99 / 1e6,
            sh->decisions_changed, sh->alerts);
  }
}
