/*
 * The method schema's tables (generated from methods.def), the generic
 * params decoder and the params encoder.  The params rule lives here and
 * nowhere else: params are a map, nil, [] or [map]; nil values are absent;
 * unknown keys are ignored.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <dynq/errors.h>

#include "methods.h"

#define REQ 1
#define OPT 0

/* One row per param; the sentinel keeps the array non-empty. */
#define PDESC_ROW(id, name, kind, req, min, max, what)                             \
  {#name, sizeof(#name) - 1, DYNQ_PK_##kind, req, (int64_t)(min), (int64_t)(max), what, \
   offsetof(dynq__p_##id##_t, name), offsetof(dynq__p_##id##_t, has_##name)},

#define RDESC_ROW(name) #name,

#define DEFINE_TABLES(id, wname, flags)                                            \
  static const dynq__param_desc_t params_##id[] = {                                \
    DYNQ_PARAMS_##id(PROW_##id) {NULL, 0, DYNQ_PK_STR, 0, 0, 0, NULL, 0, 0}};        \
  static const char *const results_##id[] = {DYNQ_RESULT_##id(RDESC_ROW) NULL};   \
  _Static_assert(0 DYNQ_PARAMS_##id(COUNT_P) <= DYNQ__MAX_PARAMS,                  \
                 "raise DYNQ__MAX_PARAMS for method " wname);

#define COUNT_P(...) +1

/* A P row must know its method's struct: one forwarder per method (a
 * method added to DYNQ_METHODS without one does not compile). */

#define PROW_ping(...) PDESC_ROW(ping, __VA_ARGS__)
#define PROW_server_info(...) PDESC_ROW(server_info, __VA_ARGS__)
#define PROW_models_list(...) PDESC_ROW(models_list, __VA_ARGS__)
#define PROW_model_info(...) PDESC_ROW(model_info, __VA_ARGS__)
#define PROW_infer(...) PDESC_ROW(infer, __VA_ARGS__)
#define PROW_health_live(...) PDESC_ROW(health_live, __VA_ARGS__)
#define PROW_health_ready(...) PDESC_ROW(health_ready, __VA_ARGS__)
#define PROW_stats(...) PDESC_ROW(stats, __VA_ARGS__)
#define PROW_session_open(...) PDESC_ROW(session_open, __VA_ARGS__)
#define PROW_session_reset(...) PDESC_ROW(session_reset, __VA_ARGS__)
#define PROW_session_close(...) PDESC_ROW(session_close, __VA_ARGS__)
#define PROW_shm_register(...) PDESC_ROW(shm_register, __VA_ARGS__)
#define PROW_shm_unregister(...) PDESC_ROW(shm_unregister, __VA_ARGS__)
#define PROW_model_load(...) PDESC_ROW(model_load, __VA_ARGS__)
#define PROW_model_unload(...) PDESC_ROW(model_unload, __VA_ARGS__)
#define PROW_model_reload(...) PDESC_ROW(model_reload, __VA_ARGS__)

DYNQ_METHODS(DEFINE_TABLES)

#define COUNT_ONE(...) +1
#define COUNT_R(name) +1

const dynq__method_t dynq__methods[DYNQ_M__COUNT] = {
#define METHOD_ROW(id, wname, fl)                                                  \
  [DYNQ_M_##id] = {DYNQ_M_##id, wname, (fl), params_##id,                          \
                   0 DYNQ_PARAMS_##id(COUNT_ONE), sizeof(dynq__p_##id##_t),         \
                   results_##id, 0 DYNQ_RESULT_##id(COUNT_R)},
  DYNQ_METHODS(METHOD_ROW)
#undef METHOD_ROW
};

const dynq__method_t *dynq__method_find(const char *name) {
  if (name == NULL) return NULL;
  /* The first byte rules out most names without a call. */
  for (int i = 0; i < DYNQ_M__COUNT; i++)
    if (dynq__methods[i].name[0] == name[0] && strcmp(dynq__methods[i].name, name) == 0)
      return &dynq__methods[i];
  return NULL;
}

const char *dynq__obj_kind_name(dynq__obj_kind_t k) {
  static const char *const names[] = {
    [DYNQ_OBJ_NIL] = "nil", [DYNQ_OBJ_BOOL] = "a boolean",
    [DYNQ_OBJ_INT] = "an integer", [DYNQ_OBJ_FLOAT] = "a float",
    [DYNQ_OBJ_STR] = "a string", [DYNQ_OBJ_BIN] = "binary data",
    [DYNQ_OBJ_ARRAY] = "an array", [DYNQ_OBJ_MAP] = "a map",
    [DYNQ_OBJ_OTHER] = "an extension object",
  };
  return (unsigned)k < sizeof(names) / sizeof(names[0]) && names[k] ? names[k] : "?";
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return DYNQ_EPARAMS;
}

/* One param's value into dst; 0 or DYNQ_EPARAMS with the message. */
static int decode_one(const dynq__method_t *md, const dynq__param_desc_t *pd,
                      dynq__obj_t v, void *dst, char *err, size_t errlen) {
  dynq__obj_kind_t k = dynq__obj_kind(v);
#define BAD() fail(err, errlen, "%s: params.%s must be %s, got %s", md->name, pd->name, \
                   pd->what, dynq__obj_kind_name(k))
  switch (pd->kind) {
  case DYNQ_PK_STR: {
    dynq__pstr_t s;
    if (dynq__obj_str(v, &s.p, &s.n) != 0) return BAD();
    if (pd->max > 0 &&
        (s.n < (uint64_t)pd->min || s.n > (uint64_t)pd->max || memchr(s.p, 0, s.n) != NULL))
      return fail(err, errlen, "%s: params.%s must be %s (got %zu bytes%s)", md->name,
                  pd->name, pd->what, s.n, memchr(s.p, 0, s.n) ? " holding a NUL" : "");
    memcpy(dst, &s, sizeof s);
    return 0;
  }
  case DYNQ_PK_UINT:
  case DYNQ_PK_INT: {
    int64_t i;
    if (dynq__obj_int(v, &i) != 0) return BAD();
    if (i < pd->min || i > pd->max)
      return fail(err, errlen, "%s: params.%s must be %s, got %" PRId64, md->name,
                  pd->name, pd->what, i);
    if (pd->kind == DYNQ_PK_UINT) {
      uint64_t u = (uint64_t)i;
      memcpy(dst, &u, sizeof u);
    } else {
      memcpy(dst, &i, sizeof i);
    }
    return 0;
  }
  case DYNQ_PK_BOOL: {
    int b;
    if (dynq__obj_bool(v, &b) != 0) return BAD();
    memcpy(dst, &b, sizeof b);
    return 0;
  }
  case DYNQ_PK_FLOAT: {
    double d;
    if (dynq__obj_double(v, &d) != 0) return BAD();
    memcpy(dst, &d, sizeof d);
    return 0;
  }
  case DYNQ_PK_MAP:
  case DYNQ_PK_ARRAY: {
    if (k != (pd->kind == DYNQ_PK_MAP ? DYNQ_OBJ_MAP : DYNQ_OBJ_ARRAY)) return BAD();
    dynq__pobj_t o;
    memset(&o, 0, sizeof o);
    o.obj = v;
    memcpy(dst, &o, sizeof o);
    return 0;
  }
  }
  return BAD();
#undef BAD
}

int dynq__params_decode(const dynq__method_t *md, dynq__obj_t params, void *ret,
                        char *err, size_t errlen) {
  if (err != NULL && errlen > 0) err[0] = '\0';
  memset(ret, 0, md->struct_size);
  if (md->flags & DYNQ_MF_ANY_PARAMS) return 0;

  /* The params rule: a map, nil (or absent), [] or an array of one map. */
  dynq__obj_t p = params;
  dynq__obj_kind_t k = dynq__obj_kind(p);
  if (k == DYNQ_OBJ_ARRAY && dynq__obj_len(p) == 0) {
    p.p = NULL;
    k = DYNQ_OBJ_NIL;
  } else if (k == DYNQ_OBJ_ARRAY && dynq__obj_len(p) == 1 &&
             dynq__obj_kind(dynq__obj_at(p, 0)) == DYNQ_OBJ_MAP) {
    p = dynq__obj_at(p, 0);
    k = DYNQ_OBJ_MAP;
  }
  if (k != DYNQ_OBJ_MAP && k != DYNQ_OBJ_NIL)
    return fail(err, errlen,
                "%s: params must be a map (or an array holding one map), got %s",
                md->name, dynq__obj_kind_name(k));

  /* Every param's value in one pass over the map (first key wins, as
   * dynq__obj_get), then judged in schema order as before. */
  dynq__key_t keys[DYNQ__MAX_PARAMS];
  dynq__obj_t vals[DYNQ__MAX_PARAMS];
  for (int i = 0; i < md->n_params; i++) {
    keys[i].s = md->params[i].name;
    keys[i].n = md->params[i].name_len;
  }
  if (k == DYNQ_OBJ_MAP) dynq__obj_lookup(p, keys, md->n_params, vals);
  else for (int i = 0; i < md->n_params; i++) vals[i].p = NULL;

  int given = 0;
  for (int i = 0; i < md->n_params; i++) {
    const dynq__param_desc_t *pd = &md->params[i];
    dynq__obj_t v = vals[i];
    if (dynq__obj_kind(v) == DYNQ_OBJ_NIL) {
      if (pd->required)
        return fail(err, errlen, "%s: params.%s must be %s, got %s", md->name, pd->name,
                    pd->what, dynq__obj_is_absent(v) ? "nothing" : "nil");
      continue;
    }
    int rc = decode_one(md, pd, v, (char *)ret + pd->off, err, errlen);
    if (rc != 0) return rc;
    ((unsigned char *)ret)[pd->has_off] = 1;
    given++;
  }
  *(int *)ret = given;  /* n_given is every struct's first member */
  return 0;
}

void dynq__params_encode(dynq__wbuf_t *w, dynq__method_id_t id, const void *p) {
  if ((unsigned)id >= DYNQ_M__COUNT) {
    if (!w->err) w->err = DYNQ_EINTERNAL;
    return;
  }
  const dynq__method_t *md = &dynq__methods[id];
  dynq__w_map_begin(w);
  for (int i = 0; p != NULL && i < md->n_params; i++) {
    const dynq__param_desc_t *pd = &md->params[i];
    const char *src = (const char *)p + pd->off;
    if (!((const unsigned char *)p)[pd->has_off]) continue;
    dynq__w_key(w, pd->name);
    switch (pd->kind) {
    case DYNQ_PK_STR: {
      dynq__pstr_t s;
      memcpy(&s, src, sizeof s);
      dynq__w_strn(w, s.p != NULL ? s.p : "", s.n);
      break;
    }
    case DYNQ_PK_UINT: {
      uint64_t u;
      memcpy(&u, src, sizeof u);
      dynq__w_uint(w, u);
      break;
    }
    case DYNQ_PK_INT: {
      int64_t i64;
      memcpy(&i64, src, sizeof i64);
      dynq__w_int(w, i64);
      break;
    }
    case DYNQ_PK_BOOL: {
      int b;
      memcpy(&b, src, sizeof b);
      dynq__w_bool(w, b);
      break;
    }
    case DYNQ_PK_FLOAT: {
      double d;
      memcpy(&d, src, sizeof d);
      dynq__w_double(w, d);
      break;
    }
    case DYNQ_PK_MAP:
    case DYNQ_PK_ARRAY: {
      dynq__pobj_t o;
      memcpy(&o, src, sizeof o);
      if (o.write == NULL) {
        dynq__w_nil(w);  /* keeps the map whole; poison below */
        if (!w->err) w->err = DYNQ_EINTERNAL;
      } else {
        o.write(w, o.ctx);
      }
      break;
    }
    }
  }
  dynq__w_map_end(w);
}

void dynq__w_request(dynq__wbuf_t *w, uint32_t msgid, dynq__method_id_t id,
                     const void *p) {
  dynq__w_request_head(w, msgid,
                       (unsigned)id < DYNQ_M__COUNT ? dynq__methods[id].name : "?");
  dynq__params_encode(w, id, p);
}

int dynq__pstr_copy(dynq__pstr_t s, char *buf, size_t cap) {
  if (cap == 0 || s.n >= cap || (s.n > 0 && memchr(s.p, 0, s.n) != NULL))
    return DYNQ_EPARAMS;
  if (s.n > 0) memcpy(buf, s.p, s.n);
  buf[s.n] = '\0';
  return 0;
}

dynq__pstr_t dynq__pstr(const char *s) {
  dynq__pstr_t r = {s, s != NULL ? strlen(s) : 0};
  return r;
}

int dynq__pstr_eq(dynq__pstr_t s, const char *lit) {
  size_t n = strlen(lit);
  return s.n == n && (n == 0 || memcmp(s.p, lit, n) == 0);
}
