/*
 * Model methods: models.list, model.info, and the admin methods
 * model.load, model.unload, model.reload (the method table marks them
 * admin; model.load/reload load off the loop through loader.c and hold
 * their connection until answered, so a pipelined infer after a
 * model.load sees the model).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "dynqd.h"

/* Longest identifier we echo back in an error message. */
#define ECHO_MAX 64

const dynqd_model_entry_t *dynqd__rpc_model(dynqd_req_t *rq, const char *s, size_t n) {
  char name[ECHO_MAX + 1];
  const dynqd_model_entry_t *e = NULL;
  if (n <= ECHO_MAX && memchr(s, 0, n) == NULL) {
    memcpy(name, s, n);
    name[n] = '\0';
    e = dynqd__registry_find(&rq->srv->reg, name);
  }
  if (e == NULL) {
    char shown[2 * ECHO_MAX + 8];
    dynqd__reply_error(rq, DYNQ_ENOMODEL, "no model named '%s' (models.list shows what is loaded)",
                       dynq__echo(shown, sizeof shown, s, n, ECHO_MAX));
  }
  return e;
}

int dynqd__m_models_list(dynqd_req_t *rq, const dynq__params_t *p) {
  (void)p;
  const dynqd_registry_t *r = &rq->srv->reg;
  dynq__wbuf_t w;
  dynqd__reply_begin(rq, &w);
  dynq__w_array(&w, (uint32_t)r->n);
  for (int i = 0; i < r->n; i++) {
    const dynq__model_sig_t *g = dynq__model_signature(r->v[i].model);
    dynq__w_map_begin(&w);
    KV(&w, "name", dynq__w_str(&w, r->v[i].name));
    KV(&w, "version", dynq__w_int(&w, r->v[i].version));
    KV(&w, "path", dynq__w_str(&w, dynq__model_path(r->v[i].model)));
    KV(&w, "file_bytes", dynq__w_uint(&w, dynq__model_file_size(r->v[i].model)));
    KV(&w, "inputs", dynq__w_int(&w, g->n_inputs));
    KV(&w, "outputs", dynq__w_int(&w, g->n_outputs));
    dynq__w_map_end(&w);
  }
  dynqd__reply_send(rq, &w);
  return 0;
}

static void w_value_infos(dynq__wbuf_t *w, const dynq__io_t *io, int n_v) {
  dynq__w_array(w, (uint32_t)n_v);
  for (int i = 0; i < n_v; i++) {
    const dynq__io_t *v = &io[i];
    dynq__w_map_begin(w);
    KV(w, "name", dynq__w_str(w, v->name));
    KV(w, "dtype", dynq__w_str(w, dynq__dtype_name(v->dtype)));
    KV(w, "shape", {
      if (v->rank < 0) {
        dynq__w_nil(w);  /* rank unknown */
      } else {
        dynq__w_array(w, (uint32_t)v->rank);
        for (int d = 0; d < v->rank; d++) dynq__w_int(w, v->dims[d]);
      }
    });
    dynq__w_map_end(w);
  }
}

int dynqd__m_model_info(dynqd_req_t *rq, const dynq__params_t *p) {
  const dynqd_model_entry_t *e = dynqd__rpc_model(rq, p->model_info.model.p,
                                                 p->model_info.model.n);
  if (e == NULL) return 0;
  const dynq__model_sig_t *g = dynq__model_signature(e->model);
  dynq__model_stats_t st;
  dynq__model_get_stats(e->model, &st);
  dynq__wbuf_t w;
  dynqd__reply_begin(rq, &w);
  dynq__w_map_begin(&w);
  KV(&w, "name", dynq__w_str(&w, e->name));
  KV(&w, "version", dynq__w_int(&w, e->version));
  KV(&w, "path", dynq__w_str(&w, dynq__model_path(e->model)));
  KV(&w, "file_bytes", dynq__w_uint(&w, dynq__model_file_size(e->model)));
  KV(&w, "producer", dynq__w_str(&w, g->producer));
  KV(&w, "inputs", w_value_infos(&w, g->inputs, g->n_inputs));
  KV(&w, "outputs", w_value_infos(&w, g->outputs, g->n_outputs));
  KV(&w, "nodes", dynq__w_int(&w, st.n_nodes));
  KV(&w, "quantized_layers", dynq__w_int(&w, st.n_quantized));  /* every kind */
  KV(&w, "int8_weight_bytes", dynq__w_uint(&w, st.int8_weight_bytes));
  KV(&w, "fp32_weight_bytes", dynq__w_uint(&w, st.fp32_weight_bytes));
  KV(&w, "reference_weight_bytes", dynq__w_uint(&w, st.ref_weight_bytes));
  KV(&w, "has_reference", dynq__w_bool(&w, st.has_reference));
  KV(&w, "activation_scales", dynq__w_str(&w, st.per_tensor ? "per-tensor" : "per-row"));
  KV(&w, "source_hash", dynq__w_uint(&w, g->source_hash));
  dynq__w_map_end(&w);
  dynqd__reply_send(rq, &w);
  return 0;
}

/* A model name the schema bounded (1-63 bytes, no NUL) into name[64];
 * 0 or answered. */
static int admin_model(dynqd_req_t *rq, dynq__pstr_t m, char *name, size_t namecap) {
  if (dynq__pstr_copy(m, name, namecap) != 0 || !dynqd__model_name_ok(name, strlen(name))) {
    dynqd__reply_error(rq, DYNQ_EPARAMS,
                       "%s: params.model must be a model name (1-63 characters "
                       "of [A-Za-z0-9_.-], not starting with '.')", rq->method);
    return DYNQ_EPARAMS;
  }
  return 0;
}

static void answer(dynqd_req_t *rq, const char *name, int version) {
  dynq__wbuf_t w;
  dynqd__reply_begin(rq, &w);
  dynq__w_map_begin(&w);
  KV(&w, "model", dynq__w_str(&w, name));
  if (version > 0) KV(&w, "version", dynq__w_int(&w, version));
  dynq__w_map_end(&w);
  dynqd__reply_send(rq, &w);
}

typedef struct publish_op {
  dynqd_req_t rq;             /* deferred */
  double shadow_rate;         /* model.load's shadow_rate, when set (>= 0) */
} publish_op_t;

static void published(void *arg, const dynqd_load_result_t *res) {
  publish_op_t *op = arg;
  dynqd_server_t *s = op->rq.srv;
  s->loads_outstanding--;
  if (res->rc != 0) {
    log_warn("%s '%s' from '%s' failed: %s", op->rq.method, res->name, res->rel, res->err);
    dynqd__reply_error(&op->rq, res->rc, "%s '%s': %s", op->rq.method, res->name, res->err);
  } else {
    log_notice("%s: model '%s' is now version %d (from %s)", op->rq.method, res->name,
               res->version, res->rel);
    dynqd_mstats_t *ms = op->shadow_rate >= 0 ? dynqd__stats_model(&s->stats, res->name) : NULL;
    if (ms != NULL) {
      ms->shadow.rate = op->shadow_rate;
      ms->shadow.rate_set = 1;
    }
    answer(&op->rq, res->name, res->version);
  }
  free(op);
  dynqd__server_check_drained(s);
}

static int publish(dynqd_req_t *rq, const char *name, const char *rel, double shadow_rate) {
  publish_op_t *op = calloc(1, sizeof(*op));
  if (op == NULL) {
    dynqd__reply_error(rq, -ENOMEM, "%s '%s': out of memory", rq->method, name);
    return 0;
  }
  op->shadow_rate = shadow_rate;
  int rc = dynqd__load_start(rq->srv->loop, &rq->srv->reg, name, rel, published, op);
  if (rc != 0) {
    dynqd__reply_error(rq, DYNQ_EINTERNAL, "%s '%s': cannot start the load: %s", rq->method,
                       name, rc < 0 && rc > -4096 ? uv_strerror(rc) : dynq_strerror(rc));
    free(op);
    return 0;
  }
  rq->srv->loads_outstanding++;
  return dynqd__req_defer(rq, &op->rq);
}

int dynqd__m_model_load(dynqd_req_t *rq, const dynq__params_t *p) {
  char name[64], rel[1024];
  if (admin_model(rq, p->model_load.model, name, sizeof(name)) != 0) return 0;
  if (!p->model_load.has_path) {
    snprintf(rel, sizeof(rel), "%s.dynq", name);
  } else if (dynq__pstr_copy(p->model_load.path, rel, sizeof(rel)) != 0 || rel[0] == '\0') {
    dynqd__reply_error(rq, DYNQ_EPARAMS,
                       "model.load: params.path must be a non-empty string of at most %zu "
                       "bytes, relative to the model directory", sizeof(rel) - 1);
    return 0;
  }
  double rate = p->model_load.has_shadow_rate ? p->model_load.shadow_rate : -1;
  if (p->model_load.has_shadow_rate && !(rate >= 0 && rate <= 1)) {
    dynqd__reply_error(rq, DYNQ_EPARAMS, "model.load: params.shadow_rate must be a number "
                       "from 0 (off) to 1 (every request)");
    return 0;
  }
  return publish(rq, name, rel, rate);
}

int dynqd__m_model_reload(dynqd_req_t *rq, const dynq__params_t *p) {
  char name[64], rel[1024];
  if (admin_model(rq, p->model_reload.model, name, sizeof(name)) != 0) return 0;
  const dynqd_model_entry_t *e = dynqd__registry_find(&rq->srv->reg, name);
  if (e == NULL) {
    dynqd__reply_error(rq, DYNQ_ENOMODEL,
                       "model.reload: no model named '%s' (model.load loads a new one)", name);
    return 0;
  }
  /* Copy: publishing may move the entry. */
  snprintf(rel, sizeof(rel), "%s", e->file ? e->file : "");
  if (rel[0] == '\0') snprintf(rel, sizeof(rel), "%s.dynq", name);
  return publish(rq, name, rel, -1);
}

int dynqd__m_model_unload(dynqd_req_t *rq, const dynq__params_t *p) {
  char name[64];
  if (admin_model(rq, p->model_unload.model, name, sizeof(name)) != 0) return 0;
  if (dynqd__registry_unload(&rq->srv->reg, name) != 0) {
    dynqd__reply_error(rq, DYNQ_ENOMODEL, "model.unload: no model named '%s'", name);
    return 0;
  }
  log_notice("model.unload: model '%s' unloaded (running requests finish on it)", name);
  answer(rq, name, 0);
  return 0;
}
