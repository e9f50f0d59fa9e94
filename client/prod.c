/*
 * libdynqclient calls for the production methods (docs/PROTOCOL.md,
 * "Production methods"): health probes, stats (typed, and as JSON text),
 * model administration and sessions.  Like api.c, each reply is converted
 * into public structs at once and every field's type is checked; a reply
 * that does not fit is DYNQ_EPROTO naming the method and field.
 */
#include "client-internal.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bound on what a stats reply may make us allocate. */
#define MAX_STAT_MODELS 100000
#define MAX_BINDINGS 256

/* A method whose params are {key: string} ({model: name}). */
static int call_model(dynq_client_t *c, dynq__method_id_t id, const char *name,
                      dynq__rpc_msg_t *m) {
  /* model.info, model.unload and model.reload all take just {model} */
  dynq__p_model_unload_t p;
  memset(&p, 0, sizeof(p));
  p.model = dynq__pstr(name);
  p.has_model = 1;
  return dynq__client_rpc(c, id, &p, m);
}

/* ---- health ---- */

int dynq_health_get(dynq_client_t *c, dynq_health_t *ret_health) {
  dynq_health_t h;
  dynq__rpc_msg_t m;
  const char *s;
  size_t n;
  int r;

  if (c == NULL || ret_health == NULL) return -EINVAL;
  memset(&h, 0, sizeof(h));
  r = dynq__client_rpc(c, DYNQ_M_health_live, NULL, &m);
  if (r < 0) return r;
  if (dynq__obj_kind(m.result) != DYNQ_OBJ_MAP ||
      dynq__obj_str(dynq__obj_get(m.result, "status"), &s, &n) < 0) {
    dynq__rpc_free(&m);
    return dynq__bad_field(c, "health.live", "status");
  }
  h.live = n == 2 && memcmp(s, "ok", 2) == 0;
  dynq__rpc_free(&m);

  r = dynq__client_rpc(c, DYNQ_M_health_ready, NULL, &m);
  if (r < 0) return r;
  if (dynq__obj_kind(m.result) != DYNQ_OBJ_MAP ||
      dynq__obj_kind(dynq__obj_get(m.result, "ready")) != DYNQ_OBJ_BOOL ||
      dynq__get_bool(dynq__obj_get(m.result, "ready"), &h.ready) < 0) {
    r = dynq__bad_field(c, "health.ready", "ready");
  } else if (dynq__get_int(dynq__obj_get(m.result, "models"), &h.models) < 0) {
    r = dynq__bad_field(c, "health.ready", "models");
  } else if (dynq__get_str_trunc(dynq__obj_get(m.result, "reason"), h.reason,
                                 sizeof(h.reason)) < 0) {
    r = dynq__bad_field(c, "health.ready", "reason");
  }
  dynq__rpc_free(&m);
  if (r < 0) return r;
  *ret_health = h;
  return 0;
}

#define MAX_QUALITY 100000

int dynq_health_quality_sized(dynq_client_t *c, dynq_quality_t *ret, int cap, size_t size,
                              int *ret_n) {
  dynq__rpc_msg_t m;
  int r;
  if (c == NULL || ret_n == NULL || cap < 0 || (cap > 0 && (ret == NULL || size == 0)))
    return -EINVAL;
  r = dynq__client_rpc(c, DYNQ_M_health_ready, NULL, &m);
  if (r < 0) return r;
  dynq__obj_t q = dynq__obj_kind(m.result) == DYNQ_OBJ_MAP ? dynq__obj_get(m.result, "quality")
                                                          : (dynq__obj_t){NULL};
  int n = 0;
  if (dynq__obj_kind(m.result) != DYNQ_OBJ_MAP) {
    r = dynq__bad_field(c, "health.ready", "result");
  } else if (dynq__obj_kind(q) == DYNQ_OBJ_NIL) {
    r = 0;  /* absent: no warnings */
  } else if (dynq__obj_kind(q) != DYNQ_OBJ_ARRAY || dynq__obj_len(q) > MAX_QUALITY) {
    r = dynq__bad_field(c, "health.ready", "quality");
  } else {
    n = (int)dynq__obj_len(q);
    for (int i = 0; i < n && r == 0; i++) {
      dynq__obj_t e = dynq__obj_at(q, (uint32_t)i);
      dynq_quality_t w;
      memset(&w, 0, sizeof(w));
      w.size = size < sizeof(w) ? size : sizeof(w);
      if (dynq__obj_kind(e) != DYNQ_OBJ_MAP ||
          dynq__get_str_trunc(dynq__obj_get(e, "model"), w.model, sizeof(w.model)) < 0 ||
          dynq__obj_double(dynq__obj_get(e, "rel_l2"), &w.rel_l2) < 0 ||
          dynq__obj_double(dynq__obj_get(e, "alert"), &w.alert) < 0 ||
          dynq__get_str_trunc(dynq__obj_get(e, "message"), w.message, sizeof(w.message)) < 0) {
        r = dynq__bad_field(c, "health.ready", "quality");
        break;
      }
      if (i < cap) memcpy((char *)ret + (size_t)i * size, &w, w.size);
    }
  }
  dynq__rpc_free(&m);
  if (r < 0) return r;
  *ret_n = n;
  return 0;
}

int dynq_health(dynq_client_t *c, int *ret_live, int *ret_ready) {
  dynq_health_t h;
  int r;
  if (ret_live == NULL || ret_ready == NULL) return -EINVAL;
  r = dynq_health_get(c, &h);
  if (r < 0) return r;
  *ret_live = h.live;
  *ret_ready = h.ready;
  return 0;
}

/* ---- stats ---- */

/* Whether the caller's struct (its size set by the library) holds field. */
#define HAS(s, type, field) ((s)->size >= DYNQ__MIN_SIZE(type, field) && (s)->size <= sizeof(type))

static void counters_free(dynq_counter_t *v, int n) {
  for (int i = 0; i < n && v != NULL; i++) free(v[i].name);
  free(v);
}

void dynq_stats_free(dynq_stats_t *s) {
  if (s == NULL) return;
  for (int i = 0; i < s->n_models && s->models; i++) free(s->models[i].name);
  free(s->models);
  size_t n = DYNQ__MIN_SIZE(dynq_stats_t, models);
  if (HAS(s, dynq_stats_t, counters)) {
    counters_free(s->counters, s->n_counters);
    n = s->size;
  }
  if (HAS(s, dynq_stats_t, shadow)) free(s->shadow);
  memset(s, 0, n);
}

int dynq_stats_counter(const dynq_stats_t *s, const char *name, uint64_t *ret_value) {
  if (s == NULL || name == NULL || ret_value == NULL) return -EINVAL;
  if (!HAS(s, dynq_stats_t, counters)) return -ENOENT;
  for (int i = 0; i < s->n_counters; i++) {
    if (s->counters[i].name != NULL && strcmp(s->counters[i].name, name) == 0) {
      *ret_value = s->counters[i].value;
      return 0;
    }
  }
  return -ENOENT;
}

/* Every top-level non-negative integer of the stats reply, in its order. */
static int parse_counters(dynq__obj_t res, dynq_stats_t *st) {
  uint32_t n = dynq__obj_len(res), k = 0;
  st->counters = calloc(n ? n : 1, sizeof(*st->counters));
  if (st->counters == NULL) return -ENOMEM;
  for (uint32_t i = 0; i < n; i++) {
    int64_t v;
    char *name = NULL;
    if (dynq__obj_kind(dynq__obj_val_at(res, i)) != DYNQ_OBJ_INT ||
        dynq__obj_int(dynq__obj_val_at(res, i), &v) != 0 || v < 0)
      continue;
    int r = dynq__get_str_dup(dynq__obj_key_at(res, i), &name);
    if (r == -ENOMEM) return r;
    if (r < 0 || name == NULL) continue;  /* not a string key: not a counter */
    st->counters[k].name = name;
    st->counters[k].value = (uint64_t)v;
    st->n_counters = (int)++k;
  }
  return 0;
}

/* A shadow error histogram: its figures are in the metric's own unit,
 * each a whole number of millionths (dynqd counts x 1e6), taken back to
 * those integers. */
static int get_ppm(dynq__obj_t o, uint64_t *ret) {
  double v = 0;
  if (!dynq__obj_is_absent(o) && dynq__obj_kind(o) != DYNQ_OBJ_NIL &&
      dynq__obj_double(o, &v) < 0)
    return DYNQ_EPROTO;
  if (!(v >= 0 && v * 1e6 < 18446744073709549568.0)) return DYNQ_EPROTO; /* NaN too */
  *ret = (uint64_t)(v * 1e6 + 0.5);  /* v >= 0: rounds to nearest */
  return 0;
}

/* dynqd's non-empty buckets [[upper, count], ...] folded into the
 * cumulative power-of-two ones: a bucket whose largest value is below 2^k
 * counts towards below[k] and every later one.  upper is integer
 * microseconds, or with ppm a shadow error in its own unit (get_ppm). */
static int parse_buckets(dynq__obj_t b, dynq_latency_t *ret, int ppm) {
  uint32_t n;
  if (dynq__obj_is_absent(b) || dynq__obj_kind(b) == DYNQ_OBJ_NIL) return 0;
  if (dynq__obj_kind(b) != DYNQ_OBJ_ARRAY) return DYNQ_EPROTO;
  n = dynq__obj_len(b);
  for (uint32_t i = 0; i < n; i++) {
    dynq__obj_t e = dynq__obj_at(b, i);
    uint64_t upper, count;
    if (dynq__obj_kind(e) != DYNQ_OBJ_ARRAY || dynq__obj_len(e) != 2 ||
        (ppm ? get_ppm(dynq__obj_at(e, 0), &upper)
             : dynq__get_u64(dynq__obj_at(e, 0), &upper)) < 0 ||
        dynq__get_u64(dynq__obj_at(e, 1), &count) < 0)
      return DYNQ_EPROTO;
    for (int k = 0; k < DYNQ_LATENCY_BUCKETS; k++)
      if (upper < ((uint64_t)1 << k)) ret->below[k] += count;
  }
  ret->has_buckets = 1;
  return 0;
}

static int parse_latency(dynq__obj_t o, dynq_latency_t *ret) {
  if (dynq__obj_is_absent(o) || dynq__obj_kind(o) == DYNQ_OBJ_NIL) {
    memset(ret, 0, sizeof(*ret));
    return 0;
  }
  if (dynq__obj_kind(o) != DYNQ_OBJ_MAP) return DYNQ_EPROTO;
  memset(ret, 0, sizeof(*ret));
  if (dynq__get_u64(dynq__obj_get(o, "count"), &ret->count) < 0 ||
      dynq__get_u64(dynq__obj_get(o, "p50"), &ret->p50) < 0 ||
      dynq__get_u64(dynq__obj_get(o, "p90"), &ret->p90) < 0 ||
      dynq__get_u64(dynq__obj_get(o, "p99"), &ret->p99) < 0 ||
      dynq__get_u64(dynq__obj_get(o, "sum"), &ret->sum) < 0)
    return DYNQ_EPROTO;
  return parse_buckets(dynq__obj_get(o, "buckets"), ret, 0);
}

static int parse_shadow_hist(dynq__obj_t o, dynq_latency_t *ret) {
  memset(ret, 0, sizeof(*ret));
  if (dynq__obj_is_absent(o) || dynq__obj_kind(o) == DYNQ_OBJ_NIL) return 0;
  if (dynq__obj_kind(o) != DYNQ_OBJ_MAP ||
      dynq__get_u64(dynq__obj_get(o, "count"), &ret->count) < 0 ||
      get_ppm(dynq__obj_get(o, "p50"), &ret->p50) < 0 ||
      get_ppm(dynq__obj_get(o, "p90"), &ret->p90) < 0 ||
      get_ppm(dynq__obj_get(o, "p99"), &ret->p99) < 0 ||
      get_ppm(dynq__obj_get(o, "sum"), &ret->sum) < 0)
    return DYNQ_EPROTO;
  return parse_buckets(dynq__obj_get(o, "buckets"), ret, 1);
}

/* A model's "shadow" map (absent: telemetry off for it); *ret_field names
 * what was wrong. */
static int parse_shadow(dynq__obj_t o, dynq_model_shadow_t *ret, const char **ret_field) {
  memset(ret, 0, sizeof(*ret));
  if (dynq__obj_is_absent(o) || dynq__obj_kind(o) == DYNQ_OBJ_NIL) return 0;
  *ret_field = "shadow";
  if (dynq__obj_kind(o) != DYNQ_OBJ_MAP) return DYNQ_EPROTO;
  *ret_field = "shadow rate";
  if (!dynq__obj_is_absent(dynq__obj_get(o, "rate")) &&
      dynq__obj_double(dynq__obj_get(o, "rate"), &ret->rate) < 0)
    return DYNQ_EPROTO;
  *ret_field = "shadow runs";
  if (dynq__get_u64(dynq__obj_get(o, "runs"), &ret->runs) < 0) return DYNQ_EPROTO;
  *ret_field = "shadow dropped";
  if (dynq__get_u64(dynq__obj_get(o, "dropped"), &ret->dropped) < 0) return DYNQ_EPROTO;
  *ret_field = "shadow decisions_changed";
  if (dynq__get_u64(dynq__obj_get(o, "decisions_changed"), &ret->decisions_changed) < 0)
    return DYNQ_EPROTO;
  *ret_field = "shadow alerts";
  if (dynq__get_u64(dynq__obj_get(o, "alerts"), &ret->alerts) < 0) return DYNQ_EPROTO;
  *ret_field = "shadow rel_l2";
  if (parse_shadow_hist(dynq__obj_get(o, "rel_l2"), &ret->rel_l2_ppm) < 0) return DYNQ_EPROTO;
  *ret_field = "shadow max_abs";
  if (parse_shadow_hist(dynq__obj_get(o, "max_abs"), &ret->max_abs_ppm) < 0)
    return DYNQ_EPROTO;
  ret->on = 1;
  return 0;
}

/* A model while the reply is read: sorted by name as one, then split into
 * the parallel models[] and shadow[]. */
typedef struct model_entry {
  dynq_model_stats_t m;
  dynq_model_shadow_t sh;
} model_entry_t;

static int cmp_model_entry(const void *a, const void *b) {
  return strcmp(((const model_entry_t *)a)->m.name, ((const model_entry_t *)b)->m.name);
}

int dynq_stats_sized(dynq_client_t *c, dynq_stats_t *ret_stats, size_t size) {
  static const struct {
    const char *key;
    size_t off;
  } counters[] = {
#define F(name) { #name, offsetof(dynq_stats_t, name) }
    F(connections), F(queue_depth), F(queue_cap), F(inflight), F(sessions),
    F(shm_regions), F(bytes_mapped), F(requests_total), F(errors_total),
    F(overloads_total), F(timeouts_total), F(inline_total),
#undef F
  };
  dynq_stats_t st;
  model_entry_t *ent = NULL;
  dynq__rpc_msg_t m;
  dynq__obj_t res, models, up;
  const char *field = "result";
  uint32_t n;
  int r = DYNQ_EPROTO;

  if (c == NULL || ret_stats == NULL || size < DYNQ__MIN_SIZE(dynq_stats_t, models))
    return -EINVAL;
  memset(&st, 0, sizeof(st));
  st.size = sizeof(st);
  r = dynq__client_rpc(c, DYNQ_M_stats, NULL, &m);
  if (r < 0) return r;
  r = DYNQ_EPROTO;
  res = m.result;
  if (dynq__obj_kind(res) != DYNQ_OBJ_MAP) goto bad;
  field = "uptime_s";
  up = dynq__obj_get(res, "uptime_s");
  if (!dynq__obj_is_absent(up) && dynq__obj_double(up, &st.uptime_s) < 0) goto bad;
  for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
    field = counters[i].key;
    if (dynq__get_u64(dynq__obj_get(res, counters[i].key),
                      (uint64_t *)((char *)&st + counters[i].off)) < 0)
      goto bad;
  }
  field = "models";
  models = dynq__obj_get(res, "models");
  if (!dynq__obj_is_absent(models) && dynq__obj_kind(models) != DYNQ_OBJ_MAP) goto bad;
  n = dynq__obj_len(models);
  if (n > MAX_STAT_MODELS) {
    r = dynq__client_fail(c, DYNQ_ETOOBIG, "stats: %u models (limit %d)", n,
                          MAX_STAT_MODELS);
    goto out;
  }
  st.models = calloc(n ? n : 1, sizeof(*st.models));
  st.shadow = calloc(n ? n : 1, sizeof(*st.shadow));
  ent = calloc(n ? n : 1, sizeof(*ent));
  if (st.models == NULL || st.shadow == NULL || ent == NULL) {
    r = -ENOMEM;
    goto bad;
  }
  for (uint32_t i = 0; i < n; i++) {
    dynq_model_stats_t *ms = &ent[i].m;
    dynq__obj_t v = dynq__obj_val_at(models, i);
    field = "models key";
    r = dynq__get_str_dup(dynq__obj_key_at(models, i), &ms->name);
    if (r == 0 && ms->name == NULL) r = DYNQ_EPROTO;
    /* the name moves to models[] now, so a failure below frees it */
    st.models[i].name = ms->name;
    if (r < 0) goto bad;
    st.n_models = (int)i + 1;
    r = DYNQ_EPROTO;
    field = "models entry";
    if (dynq__obj_kind(v) != DYNQ_OBJ_MAP) goto bad;
    field = "version";
    if (dynq__get_u64(dynq__obj_get(v, "version"), &ms->version) < 0) goto bad;
    field = "requests";
    if (dynq__get_u64(dynq__obj_get(v, "requests"), &ms->requests) < 0) goto bad;
    field = "errors";
    if (dynq__get_u64(dynq__obj_get(v, "errors"), &ms->errors) < 0) goto bad;
    field = "queue_us";
    if (parse_latency(dynq__obj_get(v, "queue_us"), &ms->queue_us) < 0) goto bad;
    field = "compute_us";
    if (parse_latency(dynq__obj_get(v, "compute_us"), &ms->compute_us) < 0) goto bad;
    if (parse_shadow(dynq__obj_get(v, "shadow"), &ent[i].sh, &field) < 0) goto bad;
  }
  if (n > 1) qsort(ent, n, sizeof(*ent), cmp_model_entry);
  for (uint32_t i = 0; i < n; i++) {
    st.models[i] = ent[i].m;
    st.shadow[i] = ent[i].sh;
  }
  free(ent);
  ent = NULL;
  field = "counters";
  r = parse_counters(res, &st);
  if (r < 0) goto bad;
  dynq__rpc_free(&m);
  /* Fields past the caller's struct are not handed over: free them. */
  if (size < DYNQ__MIN_SIZE(dynq_stats_t, counters)) {
    counters_free(st.counters, st.n_counters);
    st.counters = NULL;
    st.n_counters = 0;
  }
  if (size < DYNQ__MIN_SIZE(dynq_stats_t, shadow)) {
    free(st.shadow);
    st.shadow = NULL;
  }
  st.size = size < sizeof(st) ? size : sizeof(st);
  memcpy(ret_stats, &st, st.size);
  return 0;

bad:
  if (r == -ENOMEM)
    r = dynq__client_fail(c, r, "out of memory");
  else
    r = dynq__bad_field(c, "stats", field);
out:
  free(ent);
  dynq_stats_free(&st);
  dynq__rpc_free(&m);
  return r;
}

static void json_string(const char *s, size_t n, FILE *f) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch == '\n')
      fputs("\\n", f);
    else if (ch == '\t')
      fputs("\\t", f);
    else if (ch < 0x20 || ch == 0x7f)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

void dynq__obj_to_json(dynq__obj_t o, FILE *f) {
  const char *s;
  size_t n;
  int64_t i;
  double d;
  int b;

  switch (dynq__obj_kind(o)) {
  case DYNQ_OBJ_BOOL:
    dynq__obj_bool(o, &b);
    fputs(b ? "true" : "false", f);
    break;
  case DYNQ_OBJ_INT:
    if (dynq__obj_int(o, &i) == 0)
      fprintf(f, "%lld", (long long)i);
    else if (dynq__obj_double(o, &d) == 0)
      fprintf(f, "%.17g", d); /* a uint above INT64_MAX */
    else
      fputs("null", f);
    break;
  case DYNQ_OBJ_FLOAT:
    if (dynq__obj_double(o, &d) == 0 && isfinite(d))
      fprintf(f, "%.17g", d);
    else
      fputs("null", f); /* JSON has no NaN/Inf */
    break;
  case DYNQ_OBJ_STR:
    if (dynq__obj_str(o, &s, &n) == 0)
      json_string(s, n, f);
    else
      fputs("null", f);  /* not UTF-8: JSON cannot carry it as text */
    break;
  case DYNQ_OBJ_ARRAY:
    fputc('[', f);
    for (uint32_t k = 0; k < dynq__obj_len(o); k++) {
      if (k) fputs(", ", f);
      dynq__obj_to_json(dynq__obj_at(o, k), f);
    }
    fputc(']', f);
    break;
  case DYNQ_OBJ_MAP:
    fputc('{', f);
    for (uint32_t k = 0; k < dynq__obj_len(o); k++) {
      dynq__obj_t key = dynq__obj_key_at(o, k);
      if (k) fputs(", ", f);
      if (dynq__obj_kind(key) == DYNQ_OBJ_STR) {
        dynq__obj_to_json(key, f);
      } else {
        /* JSON keys are strings: render the key, then quote it */
        char *buf = NULL;
        size_t len = 0;
        FILE *kf = open_memstream(&buf, &len);
        if (kf != NULL) {
          dynq__obj_to_json(key, kf);
          fclose(kf);
        }
        json_string(buf ? buf : "", buf ? len : 0, f);
        free(buf);
      }
      fputs(": ", f);
      dynq__obj_to_json(dynq__obj_val_at(o, k), f);
    }
    fputc('}', f);
    break;
  default:
    fputs("null", f);
    break;
  }
}

int dynq_stats_json(dynq_client_t *c, char **ret_json) {
  dynq__rpc_msg_t m;
  char *buf = NULL;
  size_t len = 0;
  FILE *f;
  int r;

  if (c == NULL || ret_json == NULL) return -EINVAL;
  r = dynq__client_rpc(c, DYNQ_M_stats, NULL, &m);
  if (r < 0) return r;
  if (dynq__obj_kind(m.result) != DYNQ_OBJ_MAP) {
    dynq__rpc_free(&m);
    return dynq__bad_field(c, "stats", "result");
  }
  f = open_memstream(&buf, &len);
  if (f == NULL) {
    dynq__rpc_free(&m);
    return dynq__client_fail(c, -ENOMEM, "out of memory");
  }
  dynq__obj_to_json(m.result, f);
  r = ferror(f);
  if (fclose(f) != 0 || r) {
    free(buf);
    dynq__rpc_free(&m);
    return dynq__client_fail(c, -ENOMEM, "out of memory rendering stats as JSON");
  }
  dynq__rpc_free(&m);
  *ret_json = buf;
  return 0;
}

/* ---- model administration ---- */

static int check_name(dynq_client_t *c, const char *what, const char *name) {
  c->errmsg[0] = '\0';
  if (name == NULL || name[0] == '\0')
    return dynq__client_fail(c, DYNQ_EPARAMS, "%s: model name is empty", what);
  return 0;
}

/* {model, version} reply; version optional in the reply to unload. */
static int model_reply(dynq_client_t *c, const char *method, dynq__rpc_msg_t *m,
                       uint64_t *ret_version, int need_version) {
  dynq__obj_t v;
  uint64_t ver = 0;
  int r = 0;
  if (dynq__obj_kind(m->result) != DYNQ_OBJ_MAP) {
    r = dynq__bad_field(c, method, "result");
  } else {
    v = dynq__obj_get(m->result, "version");
    if ((need_version && dynq__obj_is_absent(v)) || dynq__get_u64(v, &ver) < 0)
      r = dynq__bad_field(c, method, "version");
  }
  dynq__rpc_free(m);
  if (r == 0 && ret_version != NULL) *ret_version = ver;
  return r;
}

int dynq_model_load(dynq_client_t *c, const char *name, const char *path,
                    uint64_t *ret_version) {
  dynq__p_model_load_t p;
  dynq__rpc_msg_t m;
  int r;

  if (c == NULL) return -EINVAL;
  if ((r = check_name(c, "model.load", name)) < 0) return r;
  if (path != NULL && path[0] == '\0')
    return dynq__client_fail(c, DYNQ_EPARAMS, "model.load: path is empty");
  memset(&p, 0, sizeof(p));
  p.model = dynq__pstr(name);
  p.has_model = 1;
  p.path = dynq__pstr(path);
  p.has_path = path != NULL;
  r = dynq__client_rpc(c, DYNQ_M_model_load, &p, &m);
  if (r < 0) return r;
  return model_reply(c, "model.load", &m, ret_version, 1);
}

int dynq_model_unload(dynq_client_t *c, const char *name) {
  dynq__rpc_msg_t m;
  int r;
  if (c == NULL) return -EINVAL;
  if ((r = check_name(c, "model.unload", name)) < 0) return r;
  r = call_model(c, DYNQ_M_model_unload, name, &m);
  if (r < 0) return r;
  return model_reply(c, "model.unload", &m, NULL, 0);
}

int dynq_model_reload(dynq_client_t *c, const char *name, uint64_t *ret_version) {
  dynq__rpc_msg_t m;
  int r;
  if (c == NULL) return -EINVAL;
  if ((r = check_name(c, "model.reload", name)) < 0) return r;
  r = call_model(c, DYNQ_M_model_reload, name, &m);
  if (r < 0) return r;
  return model_reply(c, "model.reload", &m, ret_version, 1);
}

/* ---- sessions ---- */

typedef struct bindings_ctx {
  const char *const *v;
  int n;
} bindings_ctx_t;

static void w_bindings(dynq__wbuf_t *w, const void *ctx) {
  const bindings_ctx_t *b = ctx;
  dynq__w_map_begin(w);
  for (int i = 0; i < 2 * b->n; i++) dynq__w_str(w, b->v[i]);
  dynq__w_map_end(w);
}

int dynq_session_open(dynq_client_t *c, const char *model,
                      const char *const *bindings, int n_bindings,
                      int detached, uint64_t *ret_id) {
  dynq__p_session_open_t p;
  bindings_ctx_t bc;
  dynq__rpc_msg_t m;
  uint64_t sid;
  int r;

  if (c == NULL || ret_id == NULL || n_bindings < 0 ||
      (bindings == NULL && n_bindings > 0))
    return -EINVAL;
  if ((r = check_name(c, "session.open", model)) < 0) return r;
  if (n_bindings > MAX_BINDINGS)
    return dynq__client_fail(c, DYNQ_ELIMIT, "session.open: %d bindings (limit %d)",
                             n_bindings, MAX_BINDINGS);
  for (int i = 0; i < 2 * n_bindings; i++) {
    if (bindings[i] == NULL || bindings[i][0] == '\0')
      return dynq__client_fail(c, DYNQ_EPARAMS,
                               "session.open: binding %d has an empty %s name", i / 2,
                               i % 2 ? "output" : "input");
    if (i % 2 == 0) {
      for (int k = 0; k < i; k += 2)
        if (strcmp(bindings[k], bindings[i]) == 0)
          return dynq__client_fail(c, DYNQ_EPARAMS,
                                   "session.open: input '%s' bound twice", bindings[i]);
    }
  }
  bc.v = bindings;
  bc.n = n_bindings;
  memset(&p, 0, sizeof(p));
  p.model = dynq__pstr(model);
  p.has_model = 1;
  p.bindings.write = w_bindings;
  p.bindings.ctx = &bc;
  p.has_bindings = n_bindings > 0;
  p.detached = detached != 0;
  p.has_detached = 1;
  r = dynq__client_rpc(c, DYNQ_M_session_open, &p, &m);
  if (r < 0) return r;
  if (dynq__obj_kind(m.result) != DYNQ_OBJ_MAP ||
      dynq__obj_is_absent(dynq__obj_get(m.result, "session")) ||
      dynq__get_u64(dynq__obj_get(m.result, "session"), &sid) < 0) {
    dynq__rpc_free(&m);
    return dynq__bad_field(c, "session.open", "session");
  }
  dynq__rpc_free(&m);
  *ret_id = sid;
  return 0;
}

int dynq_session_infer(dynq_client_t *c, uint64_t id,
                       const dynq_tensor_t *inputs, int n_inputs,
                       dynq_infer_result_t *ret_result) {
  dynq_infer_opts_t o;
  dynq_infer_opts_init(&o);
  o.use_session = 1;
  o.session = id;
  return dynq_infer_ex(c, NULL, inputs, n_inputs, &o, ret_result);
}

/* session.reset / session.close: {session: id} -> an ignored result */
static int session_call(dynq_client_t *c, dynq__method_id_t method, uint64_t id) {
  dynq__p_session_reset_t p;  /* session.close takes the same params */
  dynq__rpc_msg_t m;
  int r;
  if (c == NULL) return -EINVAL;
  c->errmsg[0] = '\0';
  memset(&p, 0, sizeof(p));
  p.session = id;
  p.has_session = 1;
  r = dynq__client_rpc(c, method, &p, &m);
  if (r < 0) return r;
  dynq__rpc_free(&m);
  return 0;
}

int dynq_session_reset(dynq_client_t *c, uint64_t id) {
  return session_call(c, DYNQ_M_session_reset, id);
}

int dynq_session_close(dynq_client_t *c, uint64_t id) {
  return session_call(c, DYNQ_M_session_close, id);
}
