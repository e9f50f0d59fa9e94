/*
 * The method schema (methods.def) as C: one params struct per method, the
 * descriptor tables, the generic params decoder dynqd runs on every request
 * and the encoder libdynqclient builds requests with.
 *
 * Decoding (the daemon):
 *
 *   const dynq__method_t *md = dynq__method_find(m->method);
 *   if (md == NULL) ...ENOMETHOD...;
 *   if (md->flags & DYNQ_MF_ADMIN) ...peer check first...;
 *   dynq__params_t p;
 *   char err[256];
 *   if (dynq__params_decode(md, m->params, &p, err, sizeof err) != 0)
 *     ...answer DYNQ_EPARAMS with err...;
 *   switch (md->id) { case DYNQ_M_infer: run(&p.infer); ... }
 *
 * and in a handler: `if (p->has_timeout_ms) deadline = ... p->timeout_ms`.
 * Strings are borrowed from the message (valid while it is); copy with
 * dynq__pstr_copy().  The params rule is applied here once: params may be
 * a map, nil, [] or [map]; nil values count as absent; unknown keys are
 * ignored (generic clients may send more); with DYNQ_MF_ANY_PARAMS the
 * params are not looked at at all.
 *
 * Encoding (the client): fill a struct, set has_<field>, then
 * dynq__w_request(w, msgid, DYNQ_M_<id>, &p).  MAP/ARRAY fields are
 * written by their `write` callback (exactly one object).
 */
#ifndef DYNQ_PROTO_METHODS_H
#define DYNQ_PROTO_METHODS_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* Method flags. */
enum {
  DYNQ_MF_ADMIN = 1 << 0,       /* peer must pass the admin check (before params) */
  DYNQ_MF_OFF_LOOP = 1 << 1,    /* slow part runs on the thread pool; the connection
                                   reads nothing more until it is answered */
  DYNQ_MF_WORKER = 1 << 2,      /* queued to the worker pool (or run inline) */
  DYNQ_MF_SESSION = 1 << 3,     /* acts on session state */
  DYNQ_MF_TAKES_FD = 1 << 4,    /* the frame carries a descriptor (SCM_RIGHTS) */
  DYNQ_MF_ANY_PARAMS = 1 << 5,  /* params ignored, whatever they are */
  DYNQ_MF_LIVENESS = 1 << 6,    /* answered by the loop even when draining/busy */
};

typedef enum dynq__pkind {
  DYNQ_PK_STR, DYNQ_PK_UINT, DYNQ_PK_INT, DYNQ_PK_BOOL, DYNQ_PK_FLOAT,
  DYNQ_PK_MAP, DYNQ_PK_ARRAY
} dynq__pkind_t;

/* A string param: borrowed, not NUL-terminated. */
typedef struct dynq__pstr { const char *p; size_t n; } dynq__pstr_t;

/* A map/array param: decoded, the object; encoded, write() writes it. */
typedef struct dynq__pobj {
  dynq__obj_t obj;
  void (*write)(dynq__wbuf_t *w, const void *ctx);
  const void *ctx;
} dynq__pobj_t;

#define DYNQ__PTYPE_STR dynq__pstr_t
#define DYNQ__PTYPE_UINT uint64_t
#define DYNQ__PTYPE_INT int64_t
#define DYNQ__PTYPE_BOOL int
#define DYNQ__PTYPE_FLOAT double
#define DYNQ__PTYPE_MAP dynq__pobj_t
#define DYNQ__PTYPE_ARRAY dynq__pobj_t

#include "methods.def"

/* DYNQ_M_ping, DYNQ_M_server_info, ... */
typedef enum dynq__method_id {
#define DYNQ__M_ENUM(id, name, flags) DYNQ_M_##id,
  DYNQ_METHODS(DYNQ__M_ENUM)
#undef DYNQ__M_ENUM
  DYNQ_M__COUNT
} dynq__method_id_t;

/* dynq__p_<id>_t: n_given counts the params present; each param has its
 * value and has_<name>. */
#define DYNQ__P_FIELD(name, kind, req, min, max, what) \
  DYNQ__PTYPE_##kind name;                              \
  unsigned char has_##name;
#define DYNQ__P_STRUCT(id, wname, flags) \
  typedef struct dynq__p_##id {           \
    int n_given;                          \
    DYNQ_PARAMS_##id(DYNQ__P_FIELD)       \
  } dynq__p_##id##_t;
DYNQ_METHODS(DYNQ__P_STRUCT)
#undef DYNQ__P_STRUCT
#undef DYNQ__P_FIELD

/* Room for any method's params. */
typedef union dynq__params {
#define DYNQ__P_MEMBER(id, wname, flags) dynq__p_##id##_t id;
  DYNQ_METHODS(DYNQ__P_MEMBER)
#undef DYNQ__P_MEMBER
} dynq__params_t;

typedef struct dynq__param_desc {
  const char *name;
  size_t name_len;       /* strlen(name) */
  dynq__pkind_t kind;
  int required;
  int64_t min, max;
  const char *what;      /* "must be <what>" */
  size_t off, has_off;   /* of the value and of has_<name> in the struct */
} dynq__param_desc_t;

/* Most params any method has (methods.c checks every method against it). */
#define DYNQ__MAX_PARAMS 8

typedef struct dynq__method {
  dynq__method_id_t id;
  const char *name;
  unsigned flags;        /* DYNQ_MF_* */
  const dynq__param_desc_t *params;
  int n_params;
  size_t struct_size;
  const char *const *results;  /* result field names */
  int n_results;
} dynq__method_t;

/* Indexed by dynq__method_id_t. */
extern const dynq__method_t dynq__methods[DYNQ_M__COUNT];

/* The method called name (NUL-terminated), or NULL. */
const dynq__method_t *dynq__method_find(const char *name);

/*
 * Decode params for method md into *ret (the struct of md: zeroed first).
 * 0, or DYNQ_EPARAMS with a message naming the method and the param
 * ("infer: params.timeout_ms must be a non-negative integer
 * (milliseconds), got a string").
 */
int dynq__params_decode(const dynq__method_t *md, dynq__obj_t params, void *ret,
                        char *err, size_t errlen);

/* Write params p (the struct of method id) as a map of the fields whose
 * has_ is set, in schema order.  Errors stick in w->err. */
void dynq__params_encode(dynq__wbuf_t *w, dynq__method_id_t id, const void *p);
/* [0, msgid, method, params] with params from p (NULL: an empty map). */
void dynq__w_request(dynq__wbuf_t *w, uint32_t msgid, dynq__method_id_t id,
                     const void *p);

/* Copy a string param NUL-terminated: 0, or DYNQ_EPARAMS if it does not
 * fit in cap or holds a NUL byte. */
int dynq__pstr_copy(dynq__pstr_t s, char *buf, size_t cap);
/* A pstr of a C string (NULL -> absent-looking {NULL, 0}). */
dynq__pstr_t dynq__pstr(const char *s);
/* Whether s equals the C string lit. */
int dynq__pstr_eq(dynq__pstr_t s, const char *lit);

/* "a string", "an integer", ... for messages. */
const char *dynq__obj_kind_name(dynq__obj_kind_t k);

#endif
