/*
 * dynq error codes, shared by libdynq, dynqd and libdynqclient.
 *
 * Every fallible call returns 0 or a negative code.  System failures are
 * -errno (converted once, at the syscall); dynq's own failures live in the
 * reserved range below DYNQ__ERR_BASE so they never collide with errno.
 * The X-macro generates the enum, dynq_strerror() and the error names used
 * on the wire (the "name" field of a msgpack-RPC error map).
 *
 * This header is public and compiles as C99 and C++.
 */
#ifndef DYNQ_ERRORS_H
#define DYNQ_ERRORS_H

#define DYNQ__ERR_BASE (-10000)

/* X(name, offset, retryable, message) */
#define DYNQ_ERRORS(X)                                                        \
  X(EFORMAT,     1, 0, "malformed model file")                                \
  X(ECHECKSUM,   2, 0, "model file checksum mismatch")                        \
  X(EVERSION,    3, 0, "unsupported model file version")                      \
  X(ESHAPE,      4, 0, "tensor shape mismatch")                               \
  X(EDTYPE,      5, 0, "tensor dtype mismatch")                               \
  X(ENOMODEL,    6, 0, "no such model")                                       \
  X(ENOINPUT,    7, 0, "unknown or missing input tensor")                     \
  X(EPROTO,      8, 0, "malformed message")                                   \
  X(ETOOBIG,     9, 0, "message exceeds a size limit")                        \
  X(EDEPTH,     10, 0, "message nesting too deep")                            \
  X(ENOMETHOD,  11, 0, "unknown method")                                      \
  X(EPARAMS,    12, 0, "invalid parameters")                                  \
  X(EUNSUPPORTED, 13, 0, "unsupported operator or attribute")                 \
  X(EOVERLOAD,  14, 1, "server overloaded, retry later")                      \
  X(ENOREF,     15, 0, "model has no FP32 reference weights")                 \
  X(EDATA,      16, 0, "tensor data length does not match its shape")         \
  X(EKERNEL,    17, 0, "requested kernel is unknown or unsupported by this CPU") \
  X(ELIMIT,     18, 0, "request exceeds a configured limit")                  \
  X(ESERVER,    19, 0, "server reported an unknown error")                    \
  X(ECLOSED,    20, 1, "connection closed")                                   \
  X(ESHUTDOWN,  21, 1, "server is shutting down")                             \
  X(EINTERNAL,  22, 0, "internal error")                                      \
  X(EGRAPH,     23, 0, "invalid graph")                                       \
  X(ENUMERIC,   24, 0, "non-finite value where a finite one is required")     \
  X(EBUSY,      25, 1, "resource busy")                                       \
  X(EDEADLINE,  26, 1, "request deadline expired")                              \
  X(EDENIED,    27, 0, "permission denied: admin method")                     \
  X(ENOSESSION, 28, 0, "no such session")                                     \
  X(ENOREGION,  29, 0, "no such shared-memory region")                        \
  X(ESEAL,      30, 0, "shared-memory region lacks the required seals")       \
  X(ECANCELED,  31, 1, "request canceled")                                    \

typedef enum dynq_errno {
#define DYNQ__ERR_ENUM(name, off, retry, msg) DYNQ_##name = DYNQ__ERR_BASE - (off),
  DYNQ_ERRORS(DYNQ__ERR_ENUM)
#undef DYNQ__ERR_ENUM
  DYNQ__ERR_LAST = DYNQ__ERR_BASE - 1000
} dynq_errno_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Message for any code: dynq's own, or -errno.  Never NULL. */
const char *dynq_strerror(int err);
/* Stable short name ("EOVERLOAD", "ENOENT", ...).  Never NULL. */
const char *dynq_err_name(int err);
/* Whether retrying the same request later may succeed. */
int dynq_err_retryable(int err);
/* Inverse of dynq_err_name() for dynq's own names; 0 if unknown. */
int dynq_err_from_name(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* DYNQ_ERRORS_H */
