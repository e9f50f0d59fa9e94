/*
 * libdynqclient typed calls: server.info, models.list, model.info and
 * infer.  Each builds its params with the dynqproto writer, lets conn.c do
 * the round trip, and converts the reply into the public structs at once,
 * checking every field's type (a reply that does not fit is DYNQ_EPROTO
 * naming the field, never a crash).
 */
#include "client-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on what a reply may declare; the frame scanner already bounds
 * bytes, these bound what we allocate per item. */
#define MAX_MODELS 100000
#define MAX_IO 4096

static const dynq__tensor_limits_t output_limits = {
  .max_rank = DYNQ_CLIENT_MAX_RANK,
  .max_elems = DYNQ_MAX_ELEMS,
};

/* Copy a string field, truncating to cap (info strings are for display). */
static int get_str_trunc(dynq__obj_t o, char *buf, size_t cap) {
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
static int get_str_dup(dynq__obj_t o, char **ret) {
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
static int get_i64(dynq__obj_t o, int64_t *ret) {
  if (dynq__obj_is_absent(o) || dynq__obj_kind(o) == DYNQ_OBJ_NIL) {
    *ret = 0;
    return 0;
  }
  return dynq__obj_int(o, ret) < 0 ? DYNQ_EPROTO : 0;
}

static int get_int(dynq__obj_t o, int *ret) {
  int64_t v;
  if (get_i64(o, &v) < 0 || v < -2147483647 || v > 2147483647) return DYNQ_EPROTO;
  *ret = (int)v;
  return 0;
}

static int get_u64(dynq__obj_t o, uint64_t *ret) {
  int64_t v;
  if (get_i64(o, &v) < 0 || v < 0) return DYNQ_EPROTO;
  *ret = (uint64_t)v;
  return 0;
}

static int get_bool(dynq__obj_t o, int *ret) {
  if (dynq__obj_is_absent(o) || dynq__obj_kind(o) == DYNQ_OBJ_NIL) {
    *ret = 0;
    return 0;
  }
  return dynq__obj_bool(o, ret) < 0 ? DYNQ_EPROTO : 0;
}

static int bad_field(dynq_client_t *c, const char *method, const char *field) {
  return dynq__client_fail(c, DYNQ_EPROTO,
                           "%s: reply field '%s' is missing or has the wrong type",
                           method, field);
}

int dynq_server_info(dynq_client_t *c, dynq_server_info_t *ret_info) {
  dynq_server_info_t info;
  dynq__wbuf_t w;
  dynq__rpc_msg_t m;
  uint32_t id;
  double up = 0;
  int r;

  if (c == NULL || ret_info == NULL) return -EINVAL;
  dynq__wbuf_init(&w);
  id = dynq__client_begin(c, &w, "server.info");
  dynq__w_map(&w, 0);
  r = dynq__client_call(c, &w, id, NULL, 0, &m, NULL, NULL);
  dynq__wbuf_free(&w);
  if (r < 0) return r;

  memset(&info, 0, sizeof(info));
  if (dynq__obj_kind(m.result) != DYNQ_OBJ_MAP) {
    r = bad_field(c, "server.info", "result");
    goto out;
  }
#define FIELD(call, name)                                             \
  if ((call) < 0) {                                                   \
    r = bad_field(c, "server.info", name);                            \
    goto out;                                                         \
  }
  FIELD(get_str_trunc(dynq__obj_get(m.result, "version"), info.version,
                      sizeof(info.version)), "version");
  FIELD(get_int(dynq__obj_get(m.result, "protocol"), &info.protocol), "protocol");
  FIELD(get_str_trunc(dynq__obj_get(m.result, "kernel"), info.kernel,
                      sizeof(info.kernel)), "kernel");
  FIELD(get_str_trunc(dynq__obj_get(m.result, "openblas_core"),
                      info.openblas_core, sizeof(info.openblas_core)),
        "openblas_core");
  FIELD(get_int(dynq__obj_get(m.result, "workers"), &info.workers), "workers");
  FIELD(get_int(dynq__obj_get(m.result, "models"), &info.models), "models");
  if (!dynq__obj_is_absent(dynq__obj_get(m.result, "uptime_s")))
    FIELD(dynq__obj_double(dynq__obj_get(m.result, "uptime_s"), &up), "uptime_s");
#undef FIELD
  info.uptime_s = up;
  *ret_info = info;
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
  dynq__wbuf_t w;
  dynq__rpc_msg_t m;
  char **v = NULL;
  uint32_t id, n, i;
  int r;

  if (c == NULL || ret_names == NULL) return -EINVAL;
  dynq__wbuf_init(&w);
  id = dynq__client_begin(c, &w, "models.list");
  dynq__w_map(&w, 0);
  r = dynq__client_call(c, &w, id, NULL, 0, &m, NULL, NULL);
  dynq__wbuf_free(&w);
  if (r < 0) return r;

  if (dynq__obj_kind(m.result) != DYNQ_OBJ_ARRAY) {
    r = bad_field(c, "models.list", "result");
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
    r = get_str_dup(e, &v[i]);
    if (r == 0 && v[i] == NULL) r = DYNQ_EPROTO;
    if (r < 0) {
      r = r == -ENOMEM ? dynq__client_fail(c, r, "out of memory")
                       : bad_field(c, "models.list", "name");
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
  memset(info, 0, sizeof(*info));
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
  if (n > MAX_IO) return DYNQ_EPROTO;
  t = calloc(n ? n : 1, sizeof(*t));
  if (t == NULL) return -ENOMEM;
  for (i = 0; i < n; i++) {
    dynq__obj_t e = dynq__obj_at(arr, i), shape;
    const char *s;
    size_t sl;
    char dt[16];
    if (dynq__obj_kind(e) != DYNQ_OBJ_MAP) { r = DYNQ_EPROTO; *ret_field = "inputs/outputs entry"; goto fail; }
    *ret_field = "name";
    r = get_str_dup(dynq__obj_get(e, "name"), &t[i].name);
    if (r == 0 && t[i].name == NULL) r = DYNQ_EPROTO;
    if (r < 0) goto fail;
    *ret_field = "dtype";
    if (dynq__obj_str(dynq__obj_get(e, "dtype"), &s, &sl) < 0 || sl >= sizeof(dt)) {
      r = DYNQ_EPROTO;
      goto fail;
    }
    memcpy(dt, s, sl);
    dt[sl] = '\0';
    t[i].dtype = (int)dynq__dtype_from_name(dt);
    if (t[i].dtype == DYNQ_DT_INVALID) { r = DYNQ_EPROTO; goto fail; }
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

int dynq_model_info(dynq_client_t *c, const char *model,
                    dynq_model_info_t *ret_info) {
  dynq_model_info_t info;
  dynq__wbuf_t w;
  dynq__rpc_msg_t m;
  dynq__obj_t res;
  const char *field = "result", *s;
  size_t sl;
  uint32_t id;
  int r;

  if (c == NULL || model == NULL || ret_info == NULL) return -EINVAL;
  dynq__wbuf_init(&w);
  id = dynq__client_begin(c, &w, "model.info");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, model);
  r = dynq__client_call(c, &w, id, NULL, 0, &m, NULL, NULL);
  dynq__wbuf_free(&w);
  if (r < 0) return r;

  memset(&info, 0, sizeof(info));
  res = m.result;
  r = DYNQ_EPROTO;
  if (dynq__obj_kind(res) != DYNQ_OBJ_MAP) goto bad;
#define FIELD(call, name)                                             \
  field = name;                                                       \
  if ((r = (call)) < 0) goto bad;
  FIELD(get_str_dup(dynq__obj_get(res, "name"), &info.name), "name");
  FIELD(get_str_dup(dynq__obj_get(res, "path"), &info.path), "path");
  FIELD(get_str_dup(dynq__obj_get(res, "producer"), &info.producer), "producer");
  FIELD(get_u64(dynq__obj_get(res, "file_bytes"), &info.file_bytes), "file_bytes");
  FIELD(parse_tensor_infos(dynq__obj_get(res, "inputs"), &info.inputs,
                           &info.n_inputs, &field), "inputs");
  FIELD(parse_tensor_infos(dynq__obj_get(res, "outputs"), &info.outputs,
                           &info.n_outputs, &field), "outputs");
  FIELD(get_int(dynq__obj_get(res, "nodes"), &info.n_nodes), "nodes");
  FIELD(get_int(dynq__obj_get(res, "quantized_layers"), &info.quantized_layers),
        "quantized_layers");
  FIELD(get_u64(dynq__obj_get(res, "int8_weight_bytes"), &info.int8_weight_bytes),
        "int8_weight_bytes");
  FIELD(get_u64(dynq__obj_get(res, "fp32_weight_bytes"), &info.fp32_weight_bytes),
        "fp32_weight_bytes");
  FIELD(get_u64(dynq__obj_get(res, "reference_weight_bytes"),
                &info.reference_weight_bytes), "reference_weight_bytes");
  FIELD(get_bool(dynq__obj_get(res, "has_reference"), &info.has_reference),
        "has_reference");
#undef FIELD
  field = "activation_scales";
  if (dynq__obj_str(dynq__obj_get(res, "activation_scales"), &s, &sl) == 0)
    info.per_tensor = sl == 10 && memcmp(s, "per-tensor", 10) == 0;
  if (info.name == NULL) {
    info.name = strdup(model);
    if (info.name == NULL) { r = -ENOMEM; goto bad; }
  }
  dynq__rpc_free(&m);
  *ret_info = info;
  return 0;

bad:
  dynq_model_info_free(&info);
  dynq__rpc_free(&m);
  if (r == -ENOMEM) return dynq__client_fail(c, r, "out of memory");
  return bad_field(c, "model.info", field);
}

void dynq_infer_result_free(dynq_infer_result_t *r) {
  if (r == NULL) return;
  for (int i = 0; i < r->n_outputs && r->outputs; i++) {
    free((char *)r->outputs[i].name);
    dynq__aligned_free(r->outputs[i].data);
  }
  free(r->outputs);
  memset(r, 0, sizeof(*r));
}

/* Check a caller's input before it goes on the wire, so a mistake is
 * reported here with the input's name rather than as a server error. */
static int check_input(dynq_client_t *c, const dynq_tensor_t *in, int i,
                       dynq__tensor_t *ret_t) {
  dynq__tensor_t t;
  int64_t numel;
  size_t esz;

  if (in->name == NULL || in->name[0] == '\0')
    return dynq__client_fail(c, DYNQ_EPARAMS, "input %d has no name", i);
  if (in->dtype <= DYNQ_DT_INVALID || in->dtype >= DYNQ_DT__COUNT)
    return dynq__client_fail(c, DYNQ_EDTYPE, "input '%s': unknown dtype %d",
                             in->name, in->dtype);
  if (in->rank < 0 || in->rank > DYNQ_CLIENT_MAX_RANK)
    return dynq__client_fail(c, DYNQ_ESHAPE, "input '%s': rank %d outside 0..%d",
                             in->name, in->rank, DYNQ_CLIENT_MAX_RANK);
  memset(&t, 0, sizeof(t));
  t.dtype = (dynq_dtype_t)in->dtype;
  t.rank = in->rank;
  for (int d = 0; d < in->rank; d++) t.dims[d] = in->shape[d];
  numel = dynq__shape_numel(t.rank, t.dims);
  if (numel < 0)
    return dynq__client_fail(c, DYNQ_ESHAPE,
                             "input '%s': negative dimension or too many elements",
                             in->name);
  esz = dynq__dtype_size(t.dtype);
  if ((size_t)numel * esz != in->nbytes)
    return dynq__client_fail(c, DYNQ_EDATA,
                             "input '%s': %zu bytes of data, shape needs %zu",
                             in->name, in->nbytes, (size_t)numel * esz);
  if (in->data == NULL && in->nbytes > 0)
    return dynq__client_fail(c, DYNQ_EDATA, "input '%s': data is NULL", in->name);
  t.data = in->data;
  t.owned = 0;
  *ret_t = t;
  return 0;
}

int dynq_infer(dynq_client_t *c, const char *model, int precision,
               const dynq_tensor_t *inputs, int n_inputs,
               dynq_infer_result_t *ret_result) {
  dynq_infer_result_t res;
  dynq__wbuf_t w;
  dynq__rpc_msg_t m;
  dynq__obj_t outs;
  uint32_t id, n, i;
  int r, have_msg = 0;

  if (c == NULL || model == NULL || ret_result == NULL || n_inputs < 0 ||
      (inputs == NULL && n_inputs > 0))
    return -EINVAL;
  memset(&res, 0, sizeof(res));
  c->errmsg[0] = '\0';
  if (precision != DYNQ_INFER_DEFAULT && precision != DYNQ_INFER_INT8 &&
      precision != DYNQ_INFER_FP32)
    return dynq__client_fail(c, DYNQ_EPARAMS, "unknown precision %d", precision);

  dynq__wbuf_init(&w);
  id = dynq__client_begin(c, &w, "infer");
  dynq__w_map(&w, precision == DYNQ_INFER_DEFAULT ? 2 : 3);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, model);
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, (uint32_t)n_inputs);
  for (int k = 0; k < n_inputs; k++) {
    dynq__tensor_t t;
    r = check_input(c, &inputs[k], k, &t);
    if (r < 0) {
      dynq__wbuf_free(&w);
      return r;
    }
    dynq__w_str(&w, inputs[k].name);
    dynq__w_tensor(&w, &t);
  }
  if (precision != DYNQ_INFER_DEFAULT) {
    dynq__w_str(&w, "precision");
    dynq__w_str(&w, precision == DYNQ_INFER_FP32 ? "fp32" : "int8");
  }
  r = dynq__client_call(c, &w, id, NULL, 0, &m, NULL, NULL);
  dynq__wbuf_free(&w);
  if (r < 0) return r;
  have_msg = 1;

  if (dynq__obj_kind(m.result) != DYNQ_OBJ_MAP) {
    r = bad_field(c, "infer", "result");
    goto fail;
  }
  if (get_i64(dynq__obj_get(m.result, "compute_us"), &res.compute_us) < 0) {
    r = bad_field(c, "infer", "compute_us");
    goto fail;
  }
  outs = dynq__obj_get(m.result, "outputs");
  if (dynq__obj_kind(outs) != DYNQ_OBJ_MAP) {
    r = bad_field(c, "infer", "outputs");
    goto fail;
  }
  n = dynq__obj_len(outs);
  if (n > MAX_IO) {
    r = dynq__client_fail(c, DYNQ_ETOOBIG, "infer: %u outputs (limit %d)", n, MAX_IO);
    goto fail;
  }
  res.outputs = calloc(n ? n : 1, sizeof(*res.outputs));
  if (res.outputs == NULL) {
    r = dynq__client_fail(c, -ENOMEM, "out of memory");
    goto fail;
  }
  for (i = 0; i < n; i++) {
    dynq_tensor_t *o = &res.outputs[i];
    dynq__tensor_t t;
    char *name = NULL;
    char err[256] = "";

    r = get_str_dup(dynq__obj_key_at(outs, i), &name);
    if (r < 0 || name == NULL) {
      r = bad_field(c, "infer", "outputs key");
      goto fail;
    }
    memset(&t, 0, sizeof(t));
    r = dynq__obj_tensor(dynq__obj_val_at(outs, i), &output_limits, &t, err,
                         sizeof(err));
    if (r < 0) {
      r = dynq__client_fail(c, r == -ENOMEM ? r : DYNQ_EPROTO,
                            "infer: output '%s': %s", name,
                            err[0] ? err : dynq_strerror(r));
      free(name);
      goto fail;
    }
    /* Hand the aligned buffer over; dynq_infer_result_free() releases it
     * with dynq__aligned_free(). */
    o->name = name;
    o->dtype = (int)t.dtype;
    o->rank = t.rank;
    for (int d = 0; d < t.rank; d++) o->shape[d] = t.dims[d];
    o->nbytes = dynq__tensor_nbytes(&t);
    o->data = t.data;
    res.n_outputs = (int)i + 1;
  }
  dynq__rpc_free(&m);
  *ret_result = res;
  return 0;

fail:
  dynq_infer_result_free(&res);
  if (have_msg) dynq__rpc_free(&m);
  return r;
}
