/*
 * Admin methods: model.load, model.unload, model.reload, and the peer check
 * that guards them (SO_PEERCRED: uid 0, dynqd's own uid, or a member of
 * admin_group by primary or supplementary group).
 *
 * model.load and model.reload open, check and warm the file on libuv's
 * thread pool (dynqd__registry_prepare), so the loop keeps answering
 * everyone else meanwhile (health.live included); the swap itself
 * (dynqd__registry_commit) runs back on the loop, so it stays atomic for
 * every reader.  The connection that asked reads no further requests until
 * the answer is out: a pipelined infer after a model.load sees the model.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "dynqd.h"

#define MAX_GROUPS 1024  /* supplementary groups we look at per peer */

static int in_group(uid_t uid, gid_t gid, gid_t want) {
  if (gid == want) return 1;
  struct passwd *pw = getpwuid(uid);
  if (pw == NULL) return 0;
  gid_t groups[MAX_GROUPS];
  int n = MAX_GROUPS;
  if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0) n = MAX_GROUPS;
  for (int i = 0; i < n; i++)
    if (groups[i] == want) return 1;
  return 0;
}

int dynqd__admin_peer_ok(int fd, const char *admin_group, char *why,
                         size_t whylen) {
  struct ucred cr;
  socklen_t len = sizeof(cr);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
    snprintf(why, whylen, "cannot identify the peer: %s", strerror(errno));
    return 0;
  }
  if (cr.uid == 0 || cr.uid == geteuid()) return 1;
  if (admin_group && admin_group[0]) {
    struct group *gr = getgrnam(admin_group);
    if (gr != NULL && in_group(cr.uid, cr.gid, gr->gr_gid)) return 1;
    snprintf(why, whylen, "peer uid %u (pid %d) is not root, not dynqd's uid %u "
             "and not in admin group '%s'", (unsigned)cr.uid, (int)cr.pid,
             (unsigned)geteuid(), admin_group);
  } else {
    snprintf(why, whylen, "peer uid %u (pid %d) is not root and not dynqd's uid "
             "%u (no admin_group configured)", (unsigned)cr.uid, (int)cr.pid,
             (unsigned)geteuid());
  }
  return 0;
}

/* Common prologue: admin check, params map, params.model as a C string.
 * Returns 0 or an error already answered. */
static int prologue(dynqd_conn_t *c, uint32_t msgid, const char *method,
                    dynq__obj_t params, dynq__obj_t *ret_p, char *name,
                    size_t namecap) {
  char why[256];
  uv_os_fd_t fd;
  if (uv_fileno((const uv_handle_t *)&c->pipe, &fd) != 0) {
    dynqd__conn_send_error(c, msgid, DYNQ_EDENIED, "%s: cannot identify the peer",
                           method);
    return DYNQ_EDENIED;
  }
  if (!dynqd__admin_peer_ok(fd, c->srv->cfg->admin_group, why, sizeof(why))) {
    log_warn("conn %llu: %s refused: %s", (unsigned long long)c->id, method, why);
    dynqd__conn_send_error(c, msgid, DYNQ_EDENIED, "%s is an admin method: %s",
                           method, why);
    return DYNQ_EDENIED;
  }
  dynq__obj_t p = params;
  if (dynq__obj_kind(p) == DYNQ_OBJ_ARRAY && dynq__obj_len(p) == 1)
    p = dynq__obj_at(p, 0);
  if (dynq__obj_kind(p) != DYNQ_OBJ_MAP) {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "%s: params must be a map {\"model\": name, ...}", method);
    return DYNQ_EPARAMS;
  }
  dynq__obj_t mo = dynq__obj_get(p, "model");
  if (dynq__obj_kind(mo) != DYNQ_OBJ_STR ||
      dynq__obj_strcpy(mo, name, namecap) != 0 ||
      !dynqd__model_name_ok(name, strlen(name))) {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "%s: params.model must be a model name (1-63 characters "
                           "of [A-Za-z0-9_.-], not starting with '.')", method);
    return DYNQ_EPARAMS;
  }
  *ret_p = p;
  return 0;
}

static void answer(dynqd_conn_t *c, uint32_t msgid, const char *name, int version) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, msgid);
  dynq__w_map(&w, version > 0 ? 2 : 1);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, name);
  if (version > 0) {
    dynq__w_str(&w, "version");
    dynq__w_int(&w, version);
  }
  dynqd__conn_send_wbuf(c, &w);
}

/* One model.load / model.reload between the pool and the loop. */
typedef struct load_op {
  uv_work_t req;
  dynqd_conn_t *conn;        /* one ref held until done */
  uint32_t msgid;
  const char *method;        /* a string literal */
  char name[64], rel[1024];
  dynqd_prepared_t prep;
  int rc;
  char err[768];
} load_op_t;

static void load_work(uv_work_t *req) {  /* a pool thread */
  load_op_t *op = req->data;
  op->rc = dynqd__registry_prepare(&op->conn->srv->reg, op->name, op->rel, &op->prep,
                                   op->err, sizeof(op->err));
}

static void load_done(uv_work_t *req, int status) {  /* the loop */
  load_op_t *op = req->data;
  dynqd_conn_t *c = op->conn;
  dynqd_server_t *s = c->srv;
  int ver = 0;
  if (status != 0 && op->rc == 0) {
    op->rc = status;
    snprintf(op->err, sizeof(op->err), "%s", uv_strerror(status));
  }
  if (op->rc == 0)
    op->rc = dynqd__registry_commit(&s->reg, op->name, op->rel, &op->prep, &ver, op->err,
                                    sizeof(op->err));
  dynqd__prepared_clear(&op->prep);
  if (op->rc != 0) {
    log_warn("%s '%s' from '%s' failed: %s", op->method, op->name, op->rel, op->err);
    if (!c->closing)
      dynqd__conn_send_error(c, op->msgid, op->rc, "%s '%s': %s", op->method, op->name,
                             op->err[0] ? op->err : dynq_strerror(op->rc));
  } else {
    log_notice("%s: model '%s' is now version %d (from %s)", op->method, op->name, ver,
               op->rel);
    if (!c->closing) answer(c, op->msgid, op->name, ver);
  }
  s->jobs_outstanding--;
  free(op);
  dynqd__conn_op_done(c);  /* reads what the connection sent meanwhile */
  dynqd__server_check_drained(s);
}

static void publish(dynqd_conn_t *c, uint32_t msgid, const char *method,
                    const char *name, const char *rel) {
  load_op_t *op = calloc(1, sizeof(*op));
  if (op == NULL) {
    dynqd__conn_send_error(c, msgid, -ENOMEM, "%s '%s': out of memory", method, name);
    return;
  }
  op->req.data = op;
  op->conn = c;
  op->msgid = msgid;
  op->method = method;
  snprintf(op->name, sizeof(op->name), "%s", name);
  snprintf(op->rel, sizeof(op->rel), "%s", rel);
  int rc = uv_queue_work(c->srv->loop, &op->req, load_work, load_done);
  if (rc != 0) {
    dynqd__conn_send_error(c, msgid, DYNQ_EINTERNAL, "%s '%s': cannot start the load: %s",
                           method, name, uv_strerror(rc));
    free(op);
    return;
  }
  c->srv->jobs_outstanding++;
  dynqd__conn_op_start(c);
}

void dynqd__admin_load(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  dynq__obj_t p;
  char name[64], rel[1024];
  if (prologue(c, msgid, "model.load", params, &p, name, sizeof(name)) != 0) return;
  dynq__obj_t po = dynq__obj_get(p, "path");
  if (dynq__obj_kind(po) == DYNQ_OBJ_NIL) {
    snprintf(rel, sizeof(rel), "%s.dynq", name);
  } else if (dynq__obj_kind(po) != DYNQ_OBJ_STR ||
             dynq__obj_strcpy(po, rel, sizeof(rel)) != 0 || rel[0] == '\0') {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "model.load: params.path must be a non-empty string of "
                           "at most %zu bytes, relative to the model directory",
                           sizeof(rel) - 1);
    return;
  }
  publish(c, msgid, "model.load", name, rel);
}

void dynqd__admin_reload(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  dynq__obj_t p;
  char name[64], rel[1024];
  if (prologue(c, msgid, "model.reload", params, &p, name, sizeof(name)) != 0) return;
  const dynqd_model_entry_t *e = dynqd__registry_find(&c->srv->reg, name);
  if (e == NULL) {
    dynqd__conn_send_error(c, msgid, DYNQ_ENOMODEL,
                           "model.reload: no model named '%s' (model.load loads a "
                           "new one)", name);
    return;
  }
  /* Copy: publishing may move the entry. */
  snprintf(rel, sizeof(rel), "%s", e->file ? e->file : "");
  if (rel[0] == '\0') snprintf(rel, sizeof(rel), "%s.dynq", name);
  publish(c, msgid, "model.reload", name, rel);
}

void dynqd__admin_unload(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  dynq__obj_t p;
  char name[64];
  if (prologue(c, msgid, "model.unload", params, &p, name, sizeof(name)) != 0) return;
  if (dynqd__registry_unload(&c->srv->reg, name) != 0) {
    dynqd__conn_send_error(c, msgid, DYNQ_ENOMODEL,
                           "model.unload: no model named '%s'", name);
    return;
  }
  log_notice("model.unload: model '%s' unloaded (running requests finish on it)",
             name);
  answer(c, msgid, name, 0);
}
