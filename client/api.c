/*
 * libdynqclient typed calls: server.info, models.list, model.info and
 * infer.  Each builds its params with the dynqproto writer, lets conn.c do
 * the round trip, and converts the reply into the public structs at once,
 * checking every field's type (a reply that does not fit is DYNQ_EPROTO
 * naming the field, never a crash).
 */
#include "client-internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on what a reply may declare; the frame scanner already bounds
 * bytes, these bound what we allocate per item. */
#define MAX_MODELS 100000

/* Copy a string field, truncating to cap (info strings are for display). */
int dynq__get_str_trunc(dynq__obj_t o, char *buf, size_t cap) {
  const char *s;
  size_t n;
  if (dynq__obj_is_absent(o) || dynq__obj_kind(o) == DYNQ_OBJ_NIL) {
    buf[0] = '\0';
    return 0;
  }
  if (dynq__obj_str(o, &s, &n) < 0) return DYNQ_EPROTO;
  if (n >= cap) n = cap - 1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  /* an embedded NUL just shortens the display string */
  return 0;
}

/* malloc'd NUL-terminated copy; absent/nil -> NULL with 0. */
int dynq__get_str_dup(dynq__obj_t o, char **ret) {
  const char *s;
  size_t n;
  char *p;
  if (dynq__obj_is_absent(o) || dynq__obj_kind(o) == DYNQ_OBJ_NIL) {
    *ret = NULL;
    return 0;
  }
  if (dynq__obj_str(o, &s, &n) < 0) return DYNQ_EPROTO;
  if (memchr(s, '\0', n) != NULL) return DYNQ_EPROTO;
  p = malloc(n + 1);
  if (p == NULL) return -ENOMEM;
  memcpy(p, s, n);
  p[n] = '\0';
  *ret = p;
  return 0;
}

/* Integer field; absent -> 0. */
int dynq__get_i64(dynq__obj_t o, int64_t *ret) {
  if (dynq__obj_is_absent(o) || dynq__obj_kind(o) == DYNQ_OBJ_NIL) {
    *ret = 0;
    return 0;
  }
  return dynq__obj_int(o, ret) < 0 ? DYNQ_EPROTO : 0;
}

int dynq__get_int(dynq__obj_t o, int *ret) {
  int64_t v;
  if (dynq__get_i64(o, &v) < 0 || v < -2147483647 || v > 2147483647) return DYNQ_EPROTO;
  *ret = (int)v;
  return 0;
}

int dynq__get_u64(dynq__obj_t o, uint64_t *ret) {
  if (dynq__obj_is_absent(o) || dynq__obj_kind(o) == DYNQ_OBJ_NIL) {
    *ret = 0;
    return 0;
  }
  /* the full unsigned range: hashes such as source_hash use all 64 bits */
  return dynq__obj_uint(o, ret) < 0 ? DYNQ_EPROTO : 0;
}

int dynq__get_bool(dynq__obj_t o, int *ret) {
  if (dynq__obj_is_absent(o) || dynq__obj_kind(o) == DYNQ_OBJ_NIL) {
    *ret = 0;
    return 0;
  }
  return dynq__obj_bool(o, ret) < 0 ? DYNQ_EPROTO : 0;
}

int dynq__bad_field(dynq_client_t *c, const char *method, const char *field) {
  return dynq__client_fail(c, DYNQ_EPROTO,
                           "%s: reply field '%s' is missing or has the wrong type",
                           method, field);
}


int dynq_server_info_sized(dynq_client_t *c, dynq_server_info_t *ret_info, size_t size) {
  dynq_server_info_t info;
  dynq__rpc_msg_t m;
  double up = 0;
  int r;

  if (c == NULL || ret_info == NULL || size < DYNQ__MIN_SIZE(dynq_server_info_t, uptime_s))
    return -EINVAL;
  r = dynq__client_rpc(c, DYNQ_M_server_info, NULL, &m);
  if (r < 0) return r;

  memset(&info, 0, sizeof(info));
  if (dynq__obj_kind(m.result) != DYNQ_OBJ_MAP) {
    r = dynq__bad_field(c, "server.info", "result");
    goto out;
  }
#define FIELD(call, name)                                             \
  if ((call) < 0) {                                                   \
    r = dynq__bad_field(c, "server.info", name);                            \
    goto out;                                                         \
  }
  FIELD(dynq__get_str_trunc(dynq__obj_get(m.result, "version"), info.version,
                      sizeof(info.version)), "version");
  FIELD(dynq__get_int(dynq__obj_get(m.result, "protocol"), &info.protocol), "protocol");
  FIELD(dynq__get_str_trunc(dynq__obj_get(m.result, "kernel"), info.kernel,
                      sizeof(info.kernel)), "kernel");
  FIELD(dynq__get_str_trunc(dynq__obj_get(m.result, "openblas_core"),
                      info.openblas_core, sizeof(info.openblas_core)),
        "openblas_core");
  FIELD(dynq__get_int(dynq__obj_get(m.result, "workers"), &info.workers), "workers");
  FIELD(dynq__get_int(dynq__obj_get(m.result, "models"), &info.models), "models");
  if (!dynq__obj_is_absent(dynq__obj_get(m.result, "uptime_s")))
    FIELD(dynq__obj_double(dynq__obj_get(m.result, "uptime_s"), &up), "uptime_s");
#undef FIELD
  info.uptime_s = up;
  info.size = size < sizeof(info) ? size : sizeof(info);
  memcpy(ret_info, &info, info.size);
  r = 0;
out:
  dynq__rpc_free(&m);
  return r;
}

void dynq_strv_free(char **v) {
  if (v == NULL) return;
  for (char **p = v; *p != NULL; p++) free(*p);
  free(v);
}

int dynq_list_models(dynq_client_t *c, char ***ret_names) {
  dynq__rpc_msg_t m;
  char **v = NULL;
  uint32_t n, i;
  int r;

  if (c == NULL || ret_names == NULL) return -EINVAL;
  r = dynq__client_rpc(c, DYNQ_M_models_list, NULL, &m);
  if (r < 0) return r;

  if (dynq__obj_kind(m.result) != DYNQ_OBJ_ARRAY) {
    r = dynq__bad_field(c, "models.list", "result");
    goto fail;
  }
  n = dynq__obj_len(m.result);
  if (n > MAX_MODELS) {
    r = dynq__client_fail(c, DYNQ_ETOOBIG, "models.list: %u models (limit %d)",
                          n, MAX_MODELS);
    goto fail;
  }
  v = calloc((size_t)n + 1, sizeof(*v));
  if (v == NULL) {
    r = dynq__client_fail(c, -ENOMEM, "out of memory");
    goto fail;
  }
  for (i = 0; i < n; i++) {
    dynq__obj_t e = dynq__obj_at(m.result, i);
    /* entries are maps with a name; a bare string is accepted too */
    if (dynq__obj_kind(e) == DYNQ_OBJ_MAP) e = dynq__obj_get(e, "name");
    r = dynq__get_str_dup(e, &v[i]);
    if (r == 0 && v[i] == NULL) r = DYNQ_EPROTO;
    if (r < 0) {
      r = r == -ENOMEM ? dynq__client_fail(c, r, "out of memory")
                       : dynq__bad_field(c, "models.list", "name");
      goto fail;
    }
  }
  dynq__rpc_free(&m);
  *ret_names = v;
  return 0;

fail:
  dynq_strv_free(v);
  dynq__rpc_free(&m);
  return r;
}

static void tensor_infos_free(dynq_tensor_info_t *t, int n) {
  if (t == NULL) return;
  for (int i = 0; i < n; i++) free(t[i].name);
  free(t);
}

void dynq_model_info_free(dynq_model_info_t *info) {
  if (info == NULL) return;
  free(info->name);
  free(info->path);
  free(info->producer);
  tensor_infos_free(info->inputs, info->n_inputs);
  tensor_infos_free(info->outputs, info->n_outputs);
  /* Zero what the caller's struct holds: size, when the library set it. */
  size_t n = info->size;
  if (n < DYNQ__MIN_SIZE(dynq_model_info_t, per_tensor) || n > sizeof(*info))
    n = DYNQ__MIN_SIZE(dynq_model_info_t, per_tensor);
  memset(info, 0, n);
}

/* [{name, dtype, shape}, ...] -> malloc'd array; field name on error. */
static int parse_tensor_infos(dynq__obj_t arr, dynq_tensor_info_t **ret,
                              int *ret_n, const char **ret_field) {
  dynq_tensor_info_t *t = NULL;
  uint32_t n, i, j;
  int r;

  *ret_field = "name";
  if (dynq__obj_kind(arr) != DYNQ_OBJ_ARRAY) return DYNQ_EPROTO;
  n = dynq__obj_len(arr);
  if (n > DYNQ__CLIENT_MAX_IO) return DYNQ_EPROTO;
  t = calloc(n ? n : 1, sizeof(*t));
  if (t == NULL) return -ENOMEM;
  for (i = 0; i < n; i++) {
    dynq__obj_t e = dynq__obj_at(arr, i), shape;
    const char *s;
    size_t sl;
    char dt[16];
    if (dynq__obj_kind(e) != DYNQ_OBJ_MAP) { r = DYNQ_EPROTO; *ret_field = "inputs/outputs entry"; goto fail; }
    *ret_field = "name";
    r = dynq__get_str_dup(dynq__obj_get(e, "name"), &t[i].name);
    if (r == 0 && t[i].name == NULL) r = DYNQ_EPROTO;
    if (r < 0) goto fail;
    *ret_field = "dtype";
    if (dynq__obj_str(dynq__obj_get(e, "dtype"), &s, &sl) < 0 || sl >= sizeof(dt)) {
      r = DYNQ_EPROTO;
      goto fail;
    }
    memcpy(dt, s, sl);
    dt[sl] = '\0';
    t[i].dtype = dynq__dt_parse(dt);
    if (t[i].dtype == 0) { r = DYNQ_EPROTO; goto fail; }
    *ret_field = "shape";
    shape = dynq__obj_get(e, "shape");
    if (dynq__obj_kind(shape) != DYNQ_OBJ_ARRAY ||
        dynq__obj_len(shape) > DYNQ_CLIENT_MAX_RANK) {
      r = DYNQ_EPROTO;
      goto fail;
    }
    t[i].rank = (int)dynq__obj_len(shape);
    for (j = 0; j < (uint32_t)t[i].rank; j++) {
      if (dynq__obj_int(dynq__obj_at(shape, j), &t[i].shape[j]) < 0 ||
          t[i].shape[j] < -1) {
        r = DYNQ_EPROTO;
        goto fail;
      }
    }
  }
  *ret = t;
  *ret_n = (int)n;
  return 0;

fail:
  tensor_infos_free(t, (int)n);
  return r;
}

int dynq_model_info_sized(dynq_client_t *c, const char *model,
                          dynq_model_info_t *ret_info, size_t size) {
  dynq_model_info_t info;
  dynq__p_model_info_t p;
  dynq__rpc_msg_t m;
  dynq__obj_t res;
  const char *field = "result", *s;
  size_t sl;
  int r;

  if (c == NULL || model == NULL || ret_info == NULL ||
      size < DYNQ__MIN_SIZE(dynq_model_info_t, per_tensor))
    return -EINVAL;
  memset(&p, 0, sizeof(p));
  p.model = dynq__pstr(model);
  p.has_model = 1;
  r = dynq__client_rpc(c, DYNQ_M_model_info, &p, &m);
  if (r < 0) return r;

  memset(&info, 0, sizeof(info));
  res = m.result;
  r = DYNQ_EPROTO;
  if (dynq__obj_kind(res) != DYNQ_OBJ_MAP) goto bad;
#define FIELD(call, name)                                             \
  field = name;                                                       \
  if ((r = (call)) < 0) goto bad;
  FIELD(dynq__get_str_dup(dynq__obj_get(res, "name"), &info.name), "name");
  FIELD(dynq__get_str_dup(dynq__obj_get(res, "path"), &info.path), "path");
  FIELD(dynq__get_str_dup(dynq__obj_get(res, "producer"), &info.producer), "producer");
  FIELD(dynq__get_u64(dynq__obj_get(res, "file_bytes"), &info.file_bytes), "file_bytes");
  FIELD(parse_tensor_infos(dynq__obj_get(res, "inputs"), &info.inputs,
                           &info.n_inputs, &field), "inputs");
  FIELD(parse_tensor_infos(dynq__obj_get(res, "outputs"), &info.outputs,
                           &info.n_outputs, &field), "outputs");
  FIELD(dynq__get_int(dynq__obj_get(res, "nodes"), &info.n_nodes), "nodes");
  FIELD(dynq__get_int(dynq__obj_get(res, "quantized_layers"), &info.quantized_layers),
        "quantized_layers");
  FIELD(dynq__get_u64(dynq__obj_get(res, "int8_weight_bytes"), &info.int8_weight_bytes),
        "int8_weight_bytes");
  FIELD(dynq__get_u64(dynq__obj_get(res, "fp32_weight_bytes"), &info.fp32_weight_bytes),
        "fp32_weight_bytes");
  FIELD(dynq__get_u64(dynq__obj_get(res, "reference_weight_bytes"),
                &info.reference_weight_bytes), "reference_weight_bytes");
  FIELD(dynq__get_bool(dynq__obj_get(res, "has_reference"), &info.has_reference),
        "has_reference");
  FIELD(dynq__get_u64(dynq__obj_get(res, "source_hash"), &info.source_hash), "source_hash");
  FIELD(dynq__get_u64(dynq__obj_get(res, "version"), &info.version), "version");
#undef FIELD
  field = "activation_scales";
  if (dynq__obj_str(dynq__obj_get(res, "activation_scales"), &s, &sl) == 0)
    info.per_tensor = sl == 10 && memcmp(s, "per-tensor", 10) == 0;
  if (info.name == NULL) {
    info.name = strdup(model);
    if (info.name == NULL) { r = -ENOMEM; goto bad; }
  }
  dynq__rpc_free(&m);
  /* Every owned pointer is in the v0 part, which size covers. */
  info.size = size < sizeof(info) ? size : sizeof(info);
  memcpy(ret_info, &info, info.size);
  return 0;

bad:
  info.size = sizeof(info);
  dynq_model_info_free(&info);
  dynq__rpc_free(&m);
  if (r == -ENOMEM) return dynq__client_fail(c, r, "out of memory");
  return dynq__bad_field(c, "model.info", field);
}

void dynq_infer_opts_init(dynq_infer_opts_t *opts) {
  if (opts != NULL) memset(opts, 0, sizeof(*opts));
}

int dynq_submit_infer(dynq_client_t *c, const char *model,
                      const dynq_tensor_t *inputs, int n_inputs,
                      const dynq_infer_opts_t *opts, uint32_t *ret_ticket) {
  uint32_t id;
  size_t mark;
  int r;

  if (c == NULL || ret_ticket == NULL) return -EINVAL;
  /* encoded straight into the send queue: no buffer per request, and a
   * burst of submits leaves in one write */
  id = dynq__client_next_id(c);
  mark = dynq__client_queue_mark(c);
  r = dynq__encode_infer(c, &c->out, id, model, inputs, n_inputs, opts, NULL);
  if (r < 0) return r;  /* checked before anything was written */
  r = dynq__client_queue_end(c, mark, id, 1);
  if (r < 0) return r;
  *ret_ticket = id;
  return 0;
}

int dynq_wait_infer(dynq_client_t *c, uint32_t ticket, dynq_infer_result_t *ret_result) {
  dynq_infer_result_t res;
  dynq__rpc_msg_t m;
  const uint8_t *p;
  size_t n;
  char err[DYNQ__CLIENT_ERRMSG];
  int r;

  if (c == NULL || ret_result == NULL) return -EINVAL;
  c->errmsg[0] = '\0';
  memset(&res, 0, sizeof(res));
  c->take_res = &res;
  c->took_res = 0;
  r = dynq__client_take_spin(c, ticket, &m);
  c->take_res = NULL;
  if (r < 0) return r;
  if (!c->took_res) {
    /* not decoded as it arrived (a dynq_submit_raw "infer", or an envelope
     * the fast path leaves alone): the same decoder on its result bytes */
    r = dynq__result_bytes(&m, &p, &n);
    if (r == 0) r = dynq__decode_infer_result(p, n, &res, NULL, err, sizeof(err));
    else snprintf(err, sizeof(err), "malformed response envelope");
    dynq__rpc_free(&m);
    if (r < 0) return dynq__client_fail(c, r, "%s", err);
  }
  *ret_result = res;
  return 0;
}

int dynq_infer_ex(dynq_client_t *c, const char *model,
                  const dynq_tensor_t *inputs, int n_inputs,
                  const dynq_infer_opts_t *opts,
                  dynq_infer_result_t *ret_result) {
  dynq__enc_refs_t refs;
  uint32_t id;
  size_t mark;
  int r;
  if (c == NULL || ret_result == NULL) return -EINVAL;
  /* dynq_submit_infer + dynq_wait_infer, but the request is written
   * before this returns, so the input data goes from the caller's memory
   * straight to the socket rather than through a copy in the queue */
  id = dynq__client_next_id(c);
  mark = dynq__client_queue_mark(c);
  r = dynq__encode_infer(c, &c->out, id, model, inputs, n_inputs, opts, &refs);
  if (r < 0) return r;
  r = dynq__client_send_refs(c, mark, id, &refs);
  if (r < 0) return r;
  return dynq_wait_infer(c, id, ret_result);
}

int dynq_infer(dynq_client_t *c, const char *model, int precision,
               const dynq_tensor_t *inputs, int n_inputs,
               dynq_infer_result_t *ret_result) {
  dynq_infer_opts_t o;
  if (model == NULL) return -EINVAL;
  dynq_infer_opts_init(&o);
  o.precision = precision;
  return dynq_infer_ex(c, model, inputs, n_inputs, &o, ret_result);
}
