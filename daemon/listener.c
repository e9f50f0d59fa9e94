/*
 * The listening socket: --socket, else $RUNTIME_DIRECTORY, else
 * $XDG_RUNTIME_DIR/dynq, else /run/dynq; or the socket systemd passed
 * (LISTEN_FDS/LISTEN_PID).  A stale socket file of a dead dynqd is
 * removed; a live one makes start-up fail.  New connections go to conn.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dynqd.h"

#define SD_LISTEN_FDS_START 3

static char *path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

/* --socket, else $RUNTIME_DIRECTORY (first of a ':' list), else
 * $XDG_RUNTIME_DIR/dynq (created 0750), else /run/dynq. */
static char *choose_socket_path(const dynqd_config_t *cfg) {
  if (cfg->socket_path) return strdup(cfg->socket_path);
  const char *rd = getenv("RUNTIME_DIRECTORY");
  if (rd && *rd) {
    char *first = strndup(rd, strcspn(rd, ":"));
    char *p = first ? path_join(first, "dynqd.sock") : NULL;
    free(first);
    return p;
  }
  const char *dir = "/run/dynq";
  char *own = NULL;
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  if (xdg && *xdg) {
    own = path_join(xdg, "dynq");
    if (own == NULL) return NULL;
    dir = own;
  }
  if (mkdir(dir, 0750) != 0 && errno != EEXIST)
    log_warn("cannot create socket directory %s: %s", dir, strerror(errno));
  char *p = path_join(dir, "dynqd.sock");
  free(own);
  return p;
}

/* A socket file left by a dead dynqd is removed; a live one is not. */
static int clear_stale_socket(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    if (errno == ENOENT) return 0;
    log_err("cannot check %s: %s", path, strerror(errno));
    return -errno;
  }
  if (!S_ISSOCK(st.st_mode)) {
    log_err("%s exists and is not a socket; refusing to replace it", path);
    return -EEXIST;
  }
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
  int e = errno;
  close(fd);
  if (rc == 0 || e == EAGAIN) {
    log_err("another server is already answering on %s; refusing to start", path);
    return -EADDRINUSE;
  }
  if (e != ECONNREFUSED) {
    log_err("cannot check existing socket %s: %s", path, strerror(e));
    return -e;
  }
  if (unlink(path) != 0 && errno != ENOENT) {
    log_err("cannot remove stale socket %s: %s", path, strerror(errno));
    return -errno;
  }
  log_notice("removed stale socket %s (nothing was answering on it)", path);
  return 0;
}

static void on_connection(uv_stream_t *l, int status) {
  dynqd_server_t *s = l->data;
  if (status < 0) {
    log_warn("listener error: %s", uv_strerror(status));
    return;
  }
  dynqd__conn_accept(s);
}

/* LISTEN_FDS/LISTEN_PID from systemd: 1 and fd 3 is ours, 0 if not
 * activated, negative on a broken hand-over. */
static int activated_fd(void) {
  const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
  int ret = 0;
  if (pid_s == NULL || fds_s == NULL) goto out;
  char *end;
  long pid = strtol(pid_s, &end, 10);
  if (*end != '\0' || pid != (long)getpid()) goto out;  /* meant for another process */
  long n = strtol(fds_s, &end, 10);
  if (*end != '\0' || n < 1) goto out;
  if (n > 1)
    log_warn("socket activation passed %ld sockets; using only the first (fd 3)", n);
  struct stat st;
  if (fstat(SD_LISTEN_FDS_START, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    log_err("socket activation: fd 3 is not a socket");
    ret = -EBADF;
    goto out;
  }
  fcntl(SD_LISTEN_FDS_START, F_SETFD, FD_CLOEXEC);
  ret = 1;
out:
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return ret;
}

int dynqd__listener_open(dynqd_server_t *s) {
  int rc = uv_pipe_init(s->loop, &s->listener, 0);
  if (rc != 0) return rc;
  s->listener.data = s;
  s->listener_open = 1;

  int act = activated_fd();
  if (act < 0) return act;
  if (act == 1) {
    rc = uv_pipe_open(&s->listener, SD_LISTEN_FDS_START);
    if (rc != 0) {
      log_err("socket activation: cannot use fd 3: %s", uv_strerror(rc));
      return rc;
    }
    char name[256];
    size_t nl = sizeof(name);
    if (uv_pipe_getsockname(&s->listener, name, &nl) != 0) snprintf(name, sizeof(name), "?");
    log_notice("listening on %s (socket activation, fd 3)", name);
  } else {
    char *path = choose_socket_path(s->cfg);
    if (path == NULL) return -ENOMEM;
    struct sockaddr_un sa;
    if (strlen(path) >= sizeof(sa.sun_path)) {
      log_err("socket path %s is %zu bytes long; a Unix socket path must be "
              "shorter than %zu bytes", path, strlen(path), sizeof(sa.sun_path));
      free(path);
      return -ENAMETOOLONG;
    }
    rc = clear_stale_socket(path);
    if (rc != 0) {
      free(path);
      return rc;
    }
    /* Bind with a umask that yields 0660 so no client ever sees a wider mode. */
    mode_t old = umask(0117);
    rc = uv_pipe_bind(&s->listener, path);
    umask(old);
    if (rc != 0) {
      log_err("cannot bind %s: %s", path, uv_strerror(rc));
      free(path);
      return rc;
    }
    s->bound_path = path;
    if (chmod(path, 0660) != 0)
      log_warn("cannot chmod %s to 0660: %s", path, strerror(errno));
    log_notice("listening on %s", path);
  }
  rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
  if (rc != 0) {
    log_err("cannot listen: %s", uv_strerror(rc));
    return rc;
  }
  return 0;
}

void dynqd__listener_unlink(dynqd_server_t *s) {
  if (s->bound_path == NULL) return;  /* inherited sockets are not ours */
  if (unlink(s->bound_path) != 0 && errno != ENOENT)
    log_warn("cannot remove %s: %s", s->bound_path, strerror(errno));
  free(s->bound_path);
  s->bound_path = NULL;
}


void dynqd__listener_close(dynqd_server_t *s) {
  if (s->listener_open) {
    uv_close((uv_handle_t *)&s->listener, NULL);
    s->listener_open = 0;
  }
}
