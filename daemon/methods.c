/*
 * The RPC methods.  Everything but `infer` is answered on the loop thread
 * at once (cheap, and liveness must not wait behind busy workers).  `infer`
 * is decoded and validated here, on the loop (tensor bytes are copied out
 * of the read buffer), then queued; dynqd__run_infer runs on a worker.
 *
 * Except a small lone request (issue 5): when the loop is quiet (at most
 * one frame in this and the previous iteration), no worker is busy, and
 * the model's measured cost predicts at most inline_max_us of compute, the
 * loop runs it itself (session steps too: their state is kept as after a
 * worker run).  Two thread hand-offs (a condvar wake-up of a
 * worker, an eventfd wake-up of the loop) cost more than such a run; the
 * loop is held for at most about inline_max_us, and under load (several
 * frames per iteration, or busy workers) everything goes to the workers.
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
#include "parallel.h"

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

static void m_health_live(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  (void)params;  /* answered on the loop whatever the workers are doing */
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, msgid);
  dynq__w_map(&w, 1);
  w_key(&w, "status");
  dynq__w_str(&w, "ok");
  dynqd__conn_send_wbuf(c, &w);
}

static void m_health_ready(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  (void)params;
  dynqd_server_t *s = c->srv;
  /* The registry publishes a model only after it was loaded and warmed. */
  int ready = s->reg.n > 0 && !s->draining;
  const char *reason = s->draining ? "draining: shutting down"
                       : s->reg.n == 0 ? "no model loaded"
                                       : "serving";
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, msgid);
  dynq__w_map(&w, 3);
  w_key(&w, "ready");
  dynq__w_bool(&w, ready);
  w_key(&w, "models");
  dynq__w_int(&w, s->reg.n);
  w_key(&w, "reason");
  dynq__w_str(&w, reason);
  dynqd__conn_send_wbuf(c, &w);
}

/* Longest timeout_ms honoured (a day); larger values mean "no deadline". */
#define MAX_TIMEOUT_MS (24ull * 3600 * 1000)

/* An error answered while decoding infer: counted in stats, then `fail`. */
#define FAIL(code, ...)                                           \
  do {                                                            \
    ecode = (code);                                               \
    dynqd__conn_send_error(c, msgid, ecode, __VA_ARGS__);         \
    goto fail;                                                    \
  } while (0)

/* Whether j is small and alone enough to run on the loop (see the top). */
static int inline_ok(dynqd_server_t *s, const dynqd_job_t *j) {
  const dynqd_mstats_t *ms = j->mstats;
  int lim = s->cfg->inline_max_us;
  if (lim <= 0 || ms == NULL || ms->ns_per_elem <= 0) return 0;  /* cost unknown */
  if (s->frames_iter > 1 || s->frames_prev > 1) return 0;          /* not quiet */
  if (j->batch_max > 1 || j->n_shm > 0 || j->out_shm != NULL ||
      j->precision != DYNQ_PRECISION_INT8)
    return 0;
  if (ms->ns_per_elem * (double)j->in_elems > (double)lim * 1000.0) return 0;
  return dynqd__pool_idle(&s->pool);
}

static void run_inline(dynqd_conn_t *c, dynqd_job_t *j) {
  j->t_queued_ns = uv_hrtime();
  j->threads = 1;
  if (c->srv->stats != NULL) c->srv->stats->inline_total++;  /* made by stats_model */
  dynqd__run_infer(j);
  dynqd__stats_job(c->srv, j);
  dynqd__session_job_done(c->srv, j);  /* a session's new state, as after a worker run */
  if (j->resp != NULL) {
    dynqd__conn_send(c, j->resp, j->resp_len);
    j->resp = NULL;
  } else {
    dynqd__conn_send_error(c, j->msgid, -ENOMEM, "out of memory encoding the result");
  }
  dynqd__job_free(j);
}

static void m_infer(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  dynqd_server_t *s = c->srv;
  uint64_t t0 = uv_hrtime();
  dynqd_job_t *j = NULL;
  dynqd_mstats_t *ms = NULL;
  dynqd_session_t *ss = NULL;
  int ecode = 0;
  if (s->draining)
    FAIL(DYNQ_ESHUTDOWN, "dynqd is shutting down; not accepting new requests");
  dynq__obj_t p;
  if (get_params(c, msgid, "infer", params, &p) != 0) {
    ecode = DYNQ_EPARAMS;
    goto fail;
  }
  if (dynq__obj_is_absent(p))
    FAIL(DYNQ_EPARAMS, "infer: params must be a map {model, inputs[, precision]}");

  dynq__obj_t so = dynq__obj_get(p, "session");
  dynq__model_t *model;
  const char *mname;
  if (!dynq__obj_is_absent(so) && dynq__obj_kind(so) != DYNQ_OBJ_NIL) {
    int64_t sid;
    if (dynq__obj_int(so, &sid) != 0 || sid < 0)
      FAIL(DYNQ_EPARAMS, "infer: params.session must be a session id (from session.open)");
    ss = dynqd__session_get(c, msgid, (uint64_t)sid);
    if (ss == NULL) {
      ecode = DYNQ_ENOSESSION;  /* or EBUSY: answered already; counted as an error */
      goto fail;
    }
    model = ss->model;
    mname = ss->model_name;
  } else {
    const dynqd_model_entry_t *e = get_model(c, msgid, "infer", p);
    if (e == NULL) {
      ecode = DYNQ_ENOMODEL;
      goto fail;
    }
    model = e->model;
    mname = e->name;
  }
  ms = dynqd__stats_model(s, mname);

  int precision = DYNQ_PRECISION_INT8;
  dynq__obj_t po = dynq__obj_get(p, "precision");
  if (dynq__obj_kind(po) != DYNQ_OBJ_NIL) {
    const char *ps;
    size_t pn;
    if (dynq__obj_str(po, &ps, &pn) != 0)
      FAIL(DYNQ_EPARAMS, "infer: params.precision must be \"int8\" or \"fp32\", got %s",
           kind_name(dynq__obj_kind(po)));
    if (pn == 4 && memcmp(ps, "int8", 4) == 0)
      precision = DYNQ_PRECISION_INT8;
    else if (pn == 4 && memcmp(ps, "fp32", 4) == 0)
      precision = DYNQ_PRECISION_FP32;
    else
      FAIL(DYNQ_EPARAMS, "infer: unknown precision '%.*s' (expected \"int8\" or \"fp32\")",
           (int)(pn > ECHO_MAX ? ECHO_MAX : pn), ps);
  }

  uint64_t deadline = 0;
  dynq__obj_t to = dynq__obj_get(p, "timeout_ms");
  if (dynq__obj_kind(to) != DYNQ_OBJ_NIL) {
    int64_t ms_v;
    if (dynq__obj_int(to, &ms_v) != 0 || ms_v < 0)
      FAIL(DYNQ_EPARAMS, "infer: params.timeout_ms must be a non-negative integer "
           "(milliseconds), got %s", kind_name(dynq__obj_kind(to)));
    if ((uint64_t)ms_v <= MAX_TIMEOUT_MS) deadline = t0 + (uint64_t)ms_v * 1000000ull;
  }

  dynq__obj_t in = dynq__obj_get(p, "inputs");
  if (dynq__obj_kind(in) != DYNQ_OBJ_MAP)
    FAIL(DYNQ_EPARAMS, "infer: params.inputs must be a map of input name -> tensor, got %s",
         kind_name(dynq__obj_kind(in)));

  const dynq__graph_t *g = dynq__model_graph(model);
  j = calloc(1, sizeof(*j));
  if (j == NULL) goto oom;
  j->inputs = calloc((size_t)(g->n_inputs > 0 ? g->n_inputs : 1), sizeof(*j->inputs));
  if (j->inputs == NULL) goto oom;
  j->n_inputs = g->n_inputs;
  j->msgid = msgid;
  j->precision = precision;
  j->max_resp = s->cfg->max_output;
  j->mstats = ms;
  j->t_arrive_ns = t0;
  j->deadline_ns = deadline;

  dynq__tensor_limits_t tl = {DYNQ_MAX_RANK, s->cfg->max_tensor_elems};
  uint32_t nin = dynq__obj_len(in);
  for (uint32_t i = 0; i < nin; i++) {
    const char *ks;
    size_t kn;
    dynq__obj_t ko = dynq__obj_key_at(in, i);
    if (dynq__obj_str(ko, &ks, &kn) != 0)
      FAIL(DYNQ_EPARAMS, "infer: input names must be strings, got %s",
           kind_name(dynq__obj_kind(ko)));
    char name[256];
    int idx = -1;
    if (kn < sizeof(name) && memchr(ks, 0, kn) == NULL) {
      memcpy(name, ks, kn);
      name[kn] = '\0';
      idx = dynq__model_input_index(model, name);
    }
    if (idx < 0 || idx >= g->n_inputs) {
      char list[256] = "";
      size_t used = 0;
      for (int k = 0; k < g->n_inputs && used < sizeof(list); k++)
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s'%s'",
                                 k ? ", " : "", g->values[g->inputs[k]].name);
      FAIL(DYNQ_ENOINPUT, "model '%s' has no input named '%.*s' (its inputs: %s)", mname,
           (int)(kn > ECHO_MAX ? ECHO_MAX : kn), ks, list);
    }
    if (ss != NULL) {
      for (int k = 0; k < ss->n_bind; k++)
        if (ss->bind_in[k] == idx)
          FAIL(DYNQ_EPARAMS, "infer: input '%s' is bound to session state (it comes "
               "from the previous call's '%s'); do not send it", name,
               g->values[g->outputs[ss->bind_out[k]]].name);
    }
    if (j->inputs[idx].dtype != DYNQ_DT_INVALID)
      FAIL(DYNQ_EPARAMS, "infer: input '%s' given twice", name);
    char terr[256] = "";
    dynq__obj_t tv = dynq__obj_val_at(in, i);
    int rc;
    if (dynq__obj_kind(tv) == DYNQ_OBJ_MAP && !dynq__obj_is_absent(dynq__obj_get(tv, "shm")))
      rc = dynqd__shm_tensor(c, j, tv, &tl, &j->inputs[idx], terr, sizeof(terr));
    else
      rc = dynq__obj_tensor(tv, &tl, &j->inputs[idx], terr, sizeof(terr));
    if (rc != 0)
      FAIL(rc, "input '%s': %s", name, terr[0] ? terr : dynq_strerror(rc));
  }
  for (int k = 0; k < g->n_inputs; k++) {
    if (j->inputs[k].dtype != DYNQ_DT_INVALID) j->in_elems += dynq__tensor_numel(&j->inputs[k]);
    int bound = 0;
    for (int q = 0; ss != NULL && q < ss->n_bind; q++) bound |= ss->bind_in[q] == k;
    if (!bound && j->inputs[k].dtype == DYNQ_DT_INVALID)
      FAIL(DYNQ_ENOINPUT, "missing input '%s' for model '%s'", g->values[g->inputs[k]].name,
           mname);
  }

  dynq__obj_t oso = dynq__obj_get(p, "outputs_shm");
  if (dynq__obj_kind(oso) != DYNQ_OBJ_NIL) {
    if (dynq__obj_kind(oso) != DYNQ_OBJ_MAP)
      FAIL(DYNQ_EPARAMS, "infer: params.outputs_shm must map output names to "
           "{region, offset, size}");
    j->out_shm = calloc((size_t)(g->n_outputs > 0 ? g->n_outputs : 1), sizeof(*j->out_shm));
    if (j->out_shm == NULL) goto oom;
    uint32_t no = dynq__obj_len(oso);
    for (uint32_t i = 0; i < no; i++) {
      char oname[128];
      if (dynq__obj_strcpy(dynq__obj_key_at(oso, i), oname, sizeof(oname)) != 0)
        FAIL(DYNQ_EPARAMS, "infer: outputs_shm keys must be output names");
      int oi = -1;
      for (int k = 0; k < g->n_outputs && oi < 0; k++)
        if (strcmp(g->values[g->outputs[k]].name, oname) == 0) oi = k;
      if (oi < 0)
        FAIL(DYNQ_EPARAMS, "infer: outputs_shm names '%s', which is not an output of "
             "model '%s'", oname, mname);
      char terr[256] = "";
      int rc = dynqd__shm_ref(c, j, dynq__obj_val_at(oso, i), &j->out_shm[oi], terr,
                              sizeof(terr));
      if (rc != 0) FAIL(rc, "outputs_shm '%s': %s", oname, terr);
      if (!j->out_shm[oi].region->writable)
        FAIL(DYNQ_EPARAMS, "outputs_shm '%s': region %llu is read-only (F_SEAL_WRITE)",
             oname, (unsigned long long)j->out_shm[oi].region_id);
    }
  }

  if (ss != NULL) {
    char serr[256] = "";
    int rc = dynqd__session_bind(ss, j, serr, sizeof(serr));
    if (rc != 0) FAIL(rc, "session: %s", serr);
  }
  if (j->out_shm == NULL && precision == DYNQ_PRECISION_INT8) {
    dynqd__batch_config(s->cfg, mname, &j->batch_max, &j->batch_delay_us);
    if (j->batch_max > 1) {
      /* Per-tensor scales would make a row depend on its batch mates. */
      dynq__model_stats_t mst;
      dynq__model_get_stats(model, &mst);
      if (mst.per_tensor) j->batch_max = 0;
    }
    if (j->batch_max > 1) {
      j->axes = malloc((size_t)(g->n_inputs + g->n_outputs > 0 ? g->n_inputs + g->n_outputs
                                                                : 1));
      if (j->axes == NULL) goto oom;
      char aerr[256] = "";
      int rc = dynqd__batch_axes(g, dynqd__batch_rule(s->cfg, mname), ss, j->axes, aerr,
                                 sizeof(aerr));
      if (rc == DYNQ_EPARAMS) FAIL(rc, "model '%s': %s", mname, aerr);
      if (rc != 0) {  /* no safe batch axis: this request runs alone */
        log_debug("model '%s': not batched: %s", mname, aerr);
        free(j->axes);
        j->axes = NULL;
        j->batch_max = 0;
      }
    }
  }

  j->model = dynq__model_ref(model);
  j->conn = c;
  j->decode_us = (int64_t)((uv_hrtime() - t0) / 1000);
  if (inline_ok(s, j)) {
    run_inline(c, j);
    return;
  }
  int rc = dynqd__pool_submit(&s->pool, j);
  if (rc != 0)
    FAIL(DYNQ_EOVERLOAD, "request queue is full (%d waiting); retry later", s->cfg->queue);
  c->refs++;
  c->inflight++;
  s->jobs_outstanding++;
  return;

oom:
  ecode = -ENOMEM;
  dynqd__conn_send_error(c, msgid, -ENOMEM, "out of memory decoding the request");
fail:
  dynqd__stats_count(s, ms, ecode);
  if (j != NULL) {
    if (j->session != NULL) j->session->busy = 0;
    j->conn = NULL;
  }
  dynqd__job_free(j);
}
#undef FAIL

static void m_admin_load(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  dynqd__admin_load(c, msgid, params);
}
static void m_admin_unload(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  dynqd__admin_unload(c, msgid, params);
}
static void m_admin_reload(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  dynqd__admin_reload(c, msgid, params);
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
  {"health.live", m_health_live},
  {"health.ready", m_health_ready},
  {"stats", dynqd__m_stats},
  {"session.open", dynqd__m_session_open},
  {"session.reset", dynqd__m_session_reset},
  {"session.close", dynqd__m_session_close},
  {"shm.register", dynqd__m_shm_register},
  {"shm.unregister", dynqd__m_shm_unregister},
  {"model.load", m_admin_load},
  {"model.unload", m_admin_unload},
  {"model.reload", m_admin_reload},
};

void dynqd__dispatch(dynqd_conn_t *c, const dynq__rpc_msg_t *m) {
  const char *name = m->method ? m->method : "";
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
    if (strcmp(name, methods[i].name) == 0) {
      methods[i].fn(c, m->msgid, m->params);
      return;
    }
  }
  char list[512];
  size_t used = 0;
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]) && used < sizeof(list); i++)
    used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
                             methods[i].name);
  dynqd__conn_send_error(c, m->msgid, DYNQ_ENOMETHOD, "unknown method '%s' (methods: %s)",
                         name, list);
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Write outputs redirected by outputs_shm into their regions; 0 or an
 * error code with msg set (then nothing is promised about the region). */
static int write_shm_outputs(dynqd_job_t *j, const dynq__tensor_t *out, char *msg,
                             size_t msglen) {
  const dynq__graph_t *g = dynq__model_graph(j->model);
  for (int i = 0; i < g->n_outputs; i++) {
    const dynqd_shm_ref_t *r = &j->out_shm[i];
    if (r->region == NULL) continue;
    size_t nb = dynq__tensor_nbytes(&out[i]);
    if (r->size != nb) {
      snprintf(msg, msglen, "output '%s' is %zu bytes but its outputs_shm reference "
               "holds %llu", g->values[g->outputs[i]].name, nb,
               (unsigned long long)r->size);
      return DYNQ_EDATA;
    }
  }
  for (int i = 0; i < g->n_outputs; i++) {
    const dynqd_shm_ref_t *r = &j->out_shm[i];
    if (r->region != NULL && r->size > 0)
      memcpy(r->region->base + r->offset, out[i].data, (size_t)r->size);
  }
  return 0;
}

void dynqd__infer_respond(dynqd_job_t *j, int rc, const char *err, dynq__tensor_t *out) {
  const dynq__graph_t *g = dynq__model_graph(j->model);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  char msg[256];
  if (rc == 0 && j->out_shm != NULL) {
    rc = write_shm_outputs(j, out, msg, sizeof(msg));
    err = msg;
  }
  j->status = rc;
  if (rc != 0) {
    dynq__w_error_response(&w, j->msgid, rc, err && err[0] ? err : dynq_strerror(rc));
  } else {
    dynq__w_result_head(&w, j->msgid);
    dynq__w_map(&w, 4 + (j->batched > 1) + (j->threads > 1));
    dynq__w_str(&w, "outputs");
    dynq__w_map(&w, (uint32_t)g->n_outputs);
    for (int i = 0; i < g->n_outputs; i++) {
      dynq__w_str(&w, g->values[g->outputs[i]].name);
      const dynqd_shm_ref_t *r = j->out_shm ? &j->out_shm[i] : NULL;
      if (r != NULL && r->region != NULL) {
        const dynq__tensor_t *t = &out[i];
        dynq__w_map(&w, 3);
        dynq__w_str(&w, "dtype");
        dynq__w_str(&w, dynq__dtype_name(t->dtype));
        dynq__w_str(&w, "shape");
        dynq__w_array(&w, (uint32_t)t->rank);
        for (int d = 0; d < t->rank; d++) dynq__w_int(&w, t->dims[d]);
        dynq__w_str(&w, "shm");
        dynq__w_map(&w, 3);
        dynq__w_str(&w, "region");
        dynq__w_uint(&w, r->region_id);
        dynq__w_str(&w, "offset");
        dynq__w_uint(&w, r->offset);
        dynq__w_str(&w, "size");
        dynq__w_uint(&w, r->size);
      } else {
        dynq__w_tensor(&w, &out[i]);
      }
    }
    dynq__w_str(&w, "compute_us");
    dynq__w_int(&w, j->compute_us);
    dynq__w_str(&w, "queue_us");
    dynq__w_int(&w, j->queue_us);
    dynq__w_str(&w, "decode_us");
    dynq__w_int(&w, j->decode_us);
    if (j->batched > 1) {  /* ran merged with this many requests (batch.c) */
      dynq__w_str(&w, "batch");
      dynq__w_int(&w, j->batched);
    }
    if (j->threads > 1) {  /* ran alone, its GEMMs split over this many threads */
      dynq__w_str(&w, "threads");
      dynq__w_int(&w, j->threads);
    }
    if (w.err == 0 && w.len > j->max_resp) {
      size_t big = w.len;
      dynq__wbuf_free(&w);
      dynq__wbuf_init(&w);
      snprintf(msg, sizeof(msg), "result of %zu bytes exceeds the %zu-byte output limit "
               "(--max-output)", big, j->max_resp);
      j->status = DYNQ_ELIMIT;
      dynq__w_error_response(&w, j->msgid, DYNQ_ELIMIT, msg);
    }
    /* The session keeps its bound outputs as the next state (the loop
     * swaps them in); everything else is freed here. */
    if (j->session != NULL && j->sess_new != NULL && j->status == 0) {
      for (int k = 0; k < j->session->n_bind; k++) {
        j->sess_new[k] = out[j->session->bind_out[k]];
        memset(&out[j->session->bind_out[k]], 0, sizeof(out[0]));
      }
    }
  }
  if (out != NULL)
    for (int i = 0; i < g->n_outputs; i++) dynq__tensor_clear(&out[i]);
  if (w.err != 0) {  /* try once more with a small error response */
    dynq__wbuf_free(&w);
    dynq__wbuf_init(&w);
    j->status = -ENOMEM;
    dynq__w_error_response(&w, j->msgid, -ENOMEM, "out of memory encoding the result");
  }
  if (w.err == 0) j->resp = dynq__wbuf_steal(&w, &j->resp_len);
  dynq__wbuf_free(&w);
}

void dynqd__run_infer(dynqd_job_t *j) {
  const dynq__graph_t *g = dynq__model_graph(j->model);
  dynq__tensor_t *out = calloc((size_t)(g->n_outputs > 0 ? g->n_outputs : 1), sizeof(*out));
  if (out == NULL) {
    dynqd__infer_respond(j, -ENOMEM, "out of memory running the model", NULL);
    return;
  }
  dynq__run_opts_t opts = {j->precision, NULL, j->threads > 1 ? j->threads : 1};
  char err[512] = "";
  int64_t t0 = now_us();
  uint64_t splits = dynq__parallel_splits();
  int rc = dynq__model_run(j->model, &opts, j->inputs, out, err, sizeof(err));
  j->compute_us = now_us() - t0;
  j->batched = 1;
  /* Allowed to split but nothing was large enough: it ran on one thread
   * (what "threads" in the answer and the inline cost estimate need). */
  if (dynq__parallel_splits() == splits) j->threads = 1;
  /* The inputs are no longer needed: give their memory back early. */
  for (int i = 0; i < j->n_inputs; i++) dynq__tensor_clear(&j->inputs[i]);
  dynqd__infer_respond(j, rc, err, out);
  free(out);
}
