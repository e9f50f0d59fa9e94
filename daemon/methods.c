/*
 * The RPC methods.  Everything but `infer` is answered on the loop thread
 * at once (cheap, and liveness must not wait behind busy workers).  `infer`
 * is decoded and validated here, on the loop (tensor bytes are copied out
 * of the read buffer), then queued; dynqd__run_infer runs on a worker.
 */
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dynq-config.h"
#include "dynq/errors.h"
#include "dynqd.h"

/* Longest identifier we echo back in an error message. */
#define ECHO_MAX 64

typedef void (*method_fn)(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params);

static const char *kind_name(dynq__obj_kind_t k) {
  static const char *const names[] = {
    [DYNQ_OBJ_NIL] = "nil", [DYNQ_OBJ_BOOL] = "a boolean",
    [DYNQ_OBJ_INT] = "an integer", [DYNQ_OBJ_FLOAT] = "a float",
    [DYNQ_OBJ_STR] = "a string", [DYNQ_OBJ_BIN] = "binary data",
    [DYNQ_OBJ_ARRAY] = "an array", [DYNQ_OBJ_MAP] = "a map",
    [DYNQ_OBJ_OTHER] = "an extension object",
  };
  return (unsigned)k < sizeof(names) / sizeof(names[0]) && names[k] ? names[k] : "?";
}

/* params: a map, nil/absent/[] (no params: *ret absent), or [map] for
 * generic msgpack-RPC clients.  Anything else is EPARAMS. */
static int get_params(dynqd_conn_t *c, uint32_t msgid, const char *method,
                      dynq__obj_t p, dynq__obj_t *ret) {
  dynq__obj_kind_t k = dynq__obj_kind(p);
  dynq__obj_t none = {NULL};
  if (k == DYNQ_OBJ_NIL) {
    *ret = none;
    return 0;
  }
  if (k == DYNQ_OBJ_MAP) {
    *ret = p;
    return 0;
  }
  if (k == DYNQ_OBJ_ARRAY) {
    uint32_t n = dynq__obj_len(p);
    if (n == 0) {
      *ret = none;
      return 0;
    }
    dynq__obj_t e = dynq__obj_at(p, 0);
    if (n == 1 && dynq__obj_kind(e) == DYNQ_OBJ_MAP) {
      *ret = e;
      return 0;
    }
  }
  dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                         "%s: params must be a map (or an array holding one map), got %s",
                         method, kind_name(k));
  return DYNQ_EPARAMS;
}

/* params.model -> registry entry, or an error response sent. */
static const dynqd_model_entry_t *get_model(dynqd_conn_t *c, uint32_t msgid,
                                            const char *method, dynq__obj_t p) {
  const char *s;
  size_t n;
  dynq__obj_t mo = dynq__obj_get(p, "model");
  if (dynq__obj_str(mo, &s, &n) != 0) {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "%s: params.model must be a string naming a model, got %s",
                           method, kind_name(dynq__obj_kind(mo)));
    return NULL;
  }
  char name[ECHO_MAX + 1];
  const dynqd_model_entry_t *e = NULL;
  if (n <= ECHO_MAX && memchr(s, 0, n) == NULL) {
    memcpy(name, s, n);
    name[n] = '\0';
    e = dynqd__registry_find(&c->srv->reg, name);
  }
  if (e == NULL)
    dynqd__conn_send_error(c, msgid, DYNQ_ENOMODEL,
                           "no model named '%.*s'%s (models.list shows what is loaded)",
                           (int)(n > ECHO_MAX ? ECHO_MAX : n), s,
                           n > ECHO_MAX ? "..." : "");
  return e;
}

static void w_key(dynq__wbuf_t *w, const char *k) { dynq__w_str(w, k); }

static void m_ping(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  dynq__obj_t p;
  if (get_params(c, msgid, "ping", params, &p) != 0) return;
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, msgid);
  dynq__w_str(&w, "pong");
  dynqd__conn_send_wbuf(c, &w);
}

static void m_server_info(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  dynq__obj_t p;
  if (get_params(c, msgid, "server.info", params, &p) != 0) return;
  dynqd_server_t *s = c->srv;
  int nk = 0;
  const dynq__kernel_t *const *kl = dynq__kernel_list(&nk);
  const char *core = openblas_get_corename();
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, msgid);
  dynq__w_map(&w, 8);
  w_key(&w, "version");
  dynq__w_str(&w, DYNQ_VERSION);
  w_key(&w, "protocol");
  dynq__w_int(&w, DYNQ_PROTOCOL_VERSION);
  w_key(&w, "kernel");
  dynq__w_str(&w, dynq__kernel()->name);
  w_key(&w, "kernels");
  dynq__w_array(&w, (uint32_t)nk);
  for (int i = 0; i < nk; i++) dynq__w_str(&w, kl[i]->name);
  w_key(&w, "openblas_core");
  dynq__w_str(&w, core ? core : "unknown");
  w_key(&w, "workers");
  dynq__w_int(&w, s->pool.n_threads);
  w_key(&w, "models");
  dynq__w_int(&w, s->reg.n);
  w_key(&w, "uptime_s");
  dynq__w_double(&w, (double)(uv_hrtime() - s->start_ns) / 1e9);
  dynqd__conn_send_wbuf(c, &w);
}

static void m_models_list(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  dynq__obj_t p;
  if (get_params(c, msgid, "models.list", params, &p) != 0) return;
  const dynqd_registry_t *r = &c->srv->reg;
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, msgid);
  dynq__w_array(&w, (uint32_t)r->n);
  for (int i = 0; i < r->n; i++) {
    const dynq__graph_t *g = dynq__model_graph(r->v[i].model);
    dynq__w_map(&w, 5);
    w_key(&w, "name");
    dynq__w_str(&w, r->v[i].name);
    w_key(&w, "path");
    dynq__w_str(&w, dynq__model_path(r->v[i].model));
    w_key(&w, "file_bytes");
    dynq__w_uint(&w, dynq__model_file_size(r->v[i].model));
    w_key(&w, "inputs");
    dynq__w_int(&w, g->n_inputs);
    w_key(&w, "outputs");
    dynq__w_int(&w, g->n_outputs);
  }
  dynqd__conn_send_wbuf(c, &w);
}

static void w_value_infos(dynq__wbuf_t *w, const dynq__graph_t *g, int n,
                          const int32_t *idx) {
  dynq__w_array(w, (uint32_t)n);
  for (int i = 0; i < n; i++) {
    const dynq__value_t *v = &g->values[idx[i]];
    dynq__w_map(w, 3);
    w_key(w, "name");
    dynq__w_str(w, v->name);
    w_key(w, "dtype");
    dynq__w_str(w, dynq__dtype_name(v->dtype));
    w_key(w, "shape");
    if (v->rank < 0) {
      dynq__w_nil(w);  /* rank unknown */
    } else {
      dynq__w_array(w, (uint32_t)v->rank);
      for (int d = 0; d < v->rank; d++) dynq__w_int(w, v->dims[d]);
    }
  }
}

static void m_model_info(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  dynq__obj_t p;
  if (get_params(c, msgid, "model.info", params, &p) != 0) return;
  const dynqd_model_entry_t *e = get_model(c, msgid, "model.info", p);
  if (e == NULL) return;
  const dynq__graph_t *g = dynq__model_graph(e->model);
  dynq__model_stats_t st;
  dynq__model_get_stats(e->model, &st);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, msgid);
  dynq__w_map(&w, 14);
  w_key(&w, "name");
  dynq__w_str(&w, e->name);
  w_key(&w, "path");
  dynq__w_str(&w, dynq__model_path(e->model));
  w_key(&w, "file_bytes");
  dynq__w_uint(&w, dynq__model_file_size(e->model));
  w_key(&w, "producer");
  dynq__w_str(&w, g->producer ? g->producer : "");
  w_key(&w, "inputs");
  w_value_infos(&w, g, g->n_inputs, g->inputs);
  w_key(&w, "outputs");
  w_value_infos(&w, g, g->n_outputs, g->outputs);
  w_key(&w, "nodes");
  dynq__w_int(&w, st.n_nodes);
  w_key(&w, "quantized_layers");
  dynq__w_int(&w, st.n_qlinear);
  w_key(&w, "int8_weight_bytes");
  dynq__w_uint(&w, st.int8_weight_bytes);
  w_key(&w, "fp32_weight_bytes");
  dynq__w_uint(&w, st.fp32_weight_bytes);
  w_key(&w, "reference_weight_bytes");
  dynq__w_uint(&w, st.ref_weight_bytes);
  w_key(&w, "has_reference");
  dynq__w_bool(&w, st.has_reference);
  w_key(&w, "activation_scales");
  dynq__w_str(&w, st.per_tensor ? "per-tensor" : "per-row");
  w_key(&w, "source_hash");
  dynq__w_uint(&w, g->source_hash);
  dynqd__conn_send_wbuf(c, &w);
}

static void m_infer(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  dynqd_server_t *s = c->srv;
  dynqd_job_t *j = NULL;
  if (s->draining) {
    dynqd__conn_send_error(c, msgid, DYNQ_ESHUTDOWN,
                           "dynqd is shutting down; not accepting new requests");
    return;
  }
  dynq__obj_t p;
  if (get_params(c, msgid, "infer", params, &p) != 0) return;
  if (dynq__obj_is_absent(p)) {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "infer: params must be a map {model, inputs[, precision]}");
    return;
  }
  const dynqd_model_entry_t *e = get_model(c, msgid, "infer", p);
  if (e == NULL) return;

  int precision = DYNQ_PRECISION_INT8;
  dynq__obj_t po = dynq__obj_get(p, "precision");
  if (dynq__obj_kind(po) != DYNQ_OBJ_NIL) {
    const char *ps;
    size_t pn;
    if (dynq__obj_str(po, &ps, &pn) != 0) {
      dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                             "infer: params.precision must be \"int8\" or \"fp32\", got %s",
                             kind_name(dynq__obj_kind(po)));
      return;
    }
    if (pn == 4 && memcmp(ps, "int8", 4) == 0) {
      precision = DYNQ_PRECISION_INT8;
    } else if (pn == 4 && memcmp(ps, "fp32", 4) == 0) {
      precision = DYNQ_PRECISION_FP32;
    } else {
      dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                             "infer: unknown precision '%.*s' (expected \"int8\" or \"fp32\")",
                             (int)(pn > ECHO_MAX ? ECHO_MAX : pn), ps);
      return;
    }
  }

  dynq__obj_t in = dynq__obj_get(p, "inputs");
  if (dynq__obj_kind(in) != DYNQ_OBJ_MAP) {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "infer: params.inputs must be a map of input name -> tensor, got %s",
                           kind_name(dynq__obj_kind(in)));
    return;
  }

  const dynq__graph_t *g = dynq__model_graph(e->model);
  j = calloc(1, sizeof(*j));
  if (j == NULL) goto oom;
  j->inputs = calloc((size_t)(g->n_inputs > 0 ? g->n_inputs : 1), sizeof(*j->inputs));
  if (j->inputs == NULL) goto oom;
  j->n_inputs = g->n_inputs;
  j->msgid = msgid;
  j->precision = precision;
  j->max_resp = s->cfg->max_output;

  dynq__tensor_limits_t tl = {DYNQ_MAX_RANK, s->cfg->max_tensor_elems};
  uint32_t nin = dynq__obj_len(in);
  for (uint32_t i = 0; i < nin; i++) {
    const char *ks;
    size_t kn;
    dynq__obj_t ko = dynq__obj_key_at(in, i);
    if (dynq__obj_str(ko, &ks, &kn) != 0) {
      dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                             "infer: input names must be strings, got %s",
                             kind_name(dynq__obj_kind(ko)));
      goto fail;
    }
    char name[256];
    int idx = -1;
    if (kn < sizeof(name) && memchr(ks, 0, kn) == NULL) {
      memcpy(name, ks, kn);
      name[kn] = '\0';
      idx = dynq__model_input_index(e->model, name);
    }
    if (idx < 0 || idx >= g->n_inputs) {
      char list[256] = "";
      size_t used = 0;
      for (int k = 0; k < g->n_inputs && used < sizeof(list); k++)
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s'%s'",
                                 k ? ", " : "", g->values[g->inputs[k]].name);
      dynqd__conn_send_error(c, msgid, DYNQ_ENOINPUT,
                             "model '%s' has no input named '%.*s' (its inputs: %s)",
                             e->name, (int)(kn > ECHO_MAX ? ECHO_MAX : kn), ks, list);
      goto fail;
    }
    if (j->inputs[idx].dtype != DYNQ_DT_INVALID) {
      dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS, "infer: input '%s' given twice", name);
      goto fail;
    }
    char terr[256] = "";
    int rc = dynq__obj_tensor(dynq__obj_val_at(in, i), &tl, &j->inputs[idx], terr,
                              sizeof(terr));
    if (rc != 0) {
      dynqd__conn_send_error(c, msgid, rc, "input '%s': %s", name,
                             terr[0] ? terr : dynq_strerror(rc));
      goto fail;
    }
  }
  for (int k = 0; k < g->n_inputs; k++) {
    if (j->inputs[k].dtype == DYNQ_DT_INVALID) {
      dynqd__conn_send_error(c, msgid, DYNQ_ENOINPUT,
                             "missing input '%s' for model '%s'",
                             g->values[g->inputs[k]].name, e->name);
      goto fail;
    }
  }

  j->model = dynq__model_ref(e->model);
  j->conn = c;
  int rc = dynqd__pool_submit(&s->pool, j);
  if (rc != 0) {
    dynqd__conn_send_error(c, msgid, DYNQ_EOVERLOAD,
                           "request queue is full (%d waiting); retry later",
                           s->cfg->queue);
    goto fail;
  }
  c->refs++;
  c->inflight++;
  s->jobs_outstanding++;
  return;

oom:
  dynqd__conn_send_error(c, msgid, -ENOMEM, "out of memory decoding the request");
fail:
  if (j != NULL) j->conn = NULL;
  dynqd__job_free(j);
}

static const struct {
  const char *name;
  method_fn fn;
} methods[] = {
  {"ping", m_ping},
  {"server.info", m_server_info},
  {"models.list", m_models_list},
  {"model.info", m_model_info},
  {"infer", m_infer},
};

void dynqd__dispatch(dynqd_conn_t *c, const dynq__rpc_msg_t *m) {
  const char *name = m->method ? m->method : "";
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
    if (strcmp(name, methods[i].name) == 0) {
      methods[i].fn(c, m->msgid, m->params);
      return;
    }
  }
  dynqd__conn_send_error(c, m->msgid, DYNQ_ENOMETHOD,
                         "unknown method '%s' (methods: ping, server.info, "
                         "models.list, model.info, infer)", name);
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void dynqd__run_infer(dynqd_job_t *j) {
  const dynq__graph_t *g = dynq__model_graph(j->model);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__tensor_t *out = calloc((size_t)(g->n_outputs > 0 ? g->n_outputs : 1), sizeof(*out));
  if (out == NULL) {
    dynq__w_error_response(&w, j->msgid, -ENOMEM, "out of memory running the model");
    goto done;
  }
  dynq__run_opts_t opts = {j->precision, NULL};
  char err[512] = "";
  int64_t t0 = now_us();
  int rc = dynq__model_run(j->model, &opts, j->inputs, out, err, sizeof(err));
  int64_t us = now_us() - t0;
  /* The inputs are no longer needed: give their memory back early. */
  for (int i = 0; i < j->n_inputs; i++) dynq__tensor_clear(&j->inputs[i]);
  if (rc != 0) {
    dynq__w_error_response(&w, j->msgid, rc, err[0] ? err : dynq_strerror(rc));
  } else {
    dynq__w_result_head(&w, j->msgid);
    dynq__w_map(&w, 2);
    dynq__w_str(&w, "outputs");
    dynq__w_map(&w, (uint32_t)g->n_outputs);
    for (int i = 0; i < g->n_outputs; i++) {
      dynq__w_str(&w, g->values[g->outputs[i]].name);
      dynq__w_tensor(&w, &out[i]);
    }
    dynq__w_str(&w, "compute_us");
    dynq__w_int(&w, us);
    for (int i = 0; i < g->n_outputs; i++) dynq__tensor_clear(&out[i]);
    if (w.err == 0 && w.len > j->max_resp) {
      size_t big = w.len;
      dynq__wbuf_free(&w);
      dynq__wbuf_init(&w);
      char msg[160];
      snprintf(msg, sizeof(msg), "result of %zu bytes exceeds the %zu-byte output limit "
               "(--max-output)", big, j->max_resp);
      dynq__w_error_response(&w, j->msgid, DYNQ_ELIMIT, msg);
    }
  }
done:
  free(out);
  if (w.err != 0) {  /* try once more with a small error response */
    dynq__wbuf_free(&w);
    dynq__wbuf_init(&w);
    dynq__w_error_response(&w, j->msgid, -ENOMEM, "out of memory encoding the result");
  }
  if (w.err == 0)
    j->resp = dynq__wbuf_steal(&w, &j->resp_len);
  dynq__wbuf_free(&w);
}
