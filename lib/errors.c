/* dynq_strerror() and friends, generated from the DYNQ_ERRORS X-macro. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dynq/errors.h"

typedef struct errinfo {
  int code;
  int retryable;
  const char *name;
  const char *msg;
} errinfo_t;

static const errinfo_t errtab[] = {
#define X(name, off, retry, msg) {DYNQ_##name, retry, #name, msg},
  DYNQ_ERRORS(X)
#undef X
};

static const errinfo_t *find(int err) {
  for (size_t i = 0; i < sizeof(errtab) / sizeof(errtab[0]); i++)
    if (errtab[i].code == err) return &errtab[i];
  return NULL;
}

/* errno names we put on the wire; the rest go out as "ESYSTEM". */
static const struct { int e; const char *name; } errnotab[] = {
  {ENOENT, "ENOENT"}, {ENOMEM, "ENOMEM"}, {EINVAL, "EINVAL"},
  {EACCES, "EACCES"}, {EPERM, "EPERM"}, {EAGAIN, "EAGAIN"},
  {EIO, "EIO"}, {ENOSPC, "ENOSPC"}, {EEXIST, "EEXIST"},
  {ENAMETOOLONG, "ENAMETOOLONG"}, {ECONNREFUSED, "ECONNREFUSED"},
  {EPIPE, "EPIPE"}, {ECONNRESET, "ECONNRESET"}, {ETIMEDOUT, "ETIMEDOUT"},
  {EMFILE, "EMFILE"}, {ENOTDIR, "ENOTDIR"}, {EISDIR, "EISDIR"},
};

const char *dynq_strerror(int err) {
  const errinfo_t *e = find(err);
  if (e != NULL) return e->msg;
  if (err < 0 && err > DYNQ__ERR_BASE) {
    /* strerror() may hand out a buffer the next call frees ("Unknown
     * error N"), and is not thread-safe; the description table is static. */
    const char *d = strerrordesc_np(-err);
    if (d != NULL) return d;
    static _Thread_local char unknown[32];  /* never freed; per thread */
    snprintf(unknown, sizeof(unknown), "Unknown error %d", -err);
    return unknown;
  }
  if (err == 0) return "success";
  return "unknown error";
}

const char *dynq_err_name(int err) {
  const errinfo_t *e = find(err);
  if (e != NULL) return e->name;
  for (size_t i = 0; i < sizeof(errnotab) / sizeof(errnotab[0]); i++)
    if (-errnotab[i].e == err) return errnotab[i].name;
  if (err == 0) return "OK";
  return "ESYSTEM";
}

int dynq_err_retryable(int err) {
  const errinfo_t *e = find(err);
  if (e != NULL) return e->retryable;
  /* ETIMEDOUT: a client gave up waiting; the same request may be
   * answered in time later */
  return err == -EAGAIN || err == -EINTR || err == -ENOMEM || err == -ETIMEDOUT;
}

int dynq_err_from_name(const char *name) {
  if (name == NULL) return 0;
  for (size_t i = 0; i < sizeof(errtab) / sizeof(errtab[0]); i++)
    if (strcmp(errtab[i].name, name) == 0) return errtab[i].code;
  for (size_t i = 0; i < sizeof(errnotab) / sizeof(errnotab[0]); i++)
    if (strcmp(errnotab[i].name, name) == 0) return -errnotab[i].e;
  return 0;
}
