/* Helpers shared by the Check suites (see testutil.h). */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dynq/dynqclient.h"
#include "dynq/errors.h"

static const char *join(char *buf, size_t cap, const char *env, const char *rel) {
  const char *base = getenv(env);
  if (base == NULL) base = ".";
  snprintf(buf, cap, "%s/%s", base, rel);
  return buf;
}

const char *tu_src(const char *rel) {
  static char buf[4096];
  return join(buf, sizeof(buf), "DYNQ_SRCDIR", rel);
}

const char *tu_build(const char *rel) {
  static char buf[4096];
  return join(buf, sizeof(buf), "DYNQ_BUILDDIR", rel);
}

char *tu_mkdtemp(void) {
  const char *t = getenv("TMPDIR");
  char buf[4096];
  snprintf(buf, sizeof(buf), "%s/dynq-test-XXXXXX", t && *t ? t : "/tmp");
  if (mkdtemp(buf) == NULL) return NULL;
  return strdup(buf);
}

char *tu_tmp;

void tu_tmp_setup(void) {
  tu_tmp = tu_mkdtemp();
  ck_assert_ptr_nonnull(tu_tmp);
}

void tu_tmp_teardown(void) {
  tu_rmtree(tu_tmp);
  free(tu_tmp);
  tu_tmp = NULL;
}

void tu_rmtree(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *e;
  char p[4096];
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
      tu_rmtree(p);
    else
      unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

int tu_write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) return -1;
  size_t w = fwrite(p, 1, n, f);
  if (fclose(f) != 0 || w != n) return -1;
  return 0;
}

void *tu_read_file(const char *path, size_t *ret_n) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  for (;;) {
    if (n == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    if (r == 0) break;
    n += r;
  }
  fclose(f);
  buf[n] = 0;
  if (ret_n) *ret_n = n;
  return buf;
}

int tu_run(char *const argv[], char **out) {
  char tmpl[] = "/tmp/dynq-test-out-XXXXXX";
  int fd = -1;
  if (out != NULL) {
    fd = mkstemp(tmpl);
    if (fd < 0) return -1;
  }
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(argv[0], argv);
    _exit(127);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  if (fd >= 0) {
    close(fd);
    *out = tu_read_file(tmpl, NULL);
    unlink(tmpl);
  }
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return 128 + WTERMSIG(st);
}

int tu_connect(const char *path) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(sa.sun_path)) return -1;
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int tu_daemon_start(tu_daemon_t *d, const char *dir, const char *model_dir,
                    const char *const *extra_args) {
  memset(d, 0, sizeof(*d));
  snprintf(d->sock, sizeof(d->sock), "%s/dynqd.sock", dir);
  snprintf(d->log, sizeof(d->log), "%s/dynqd.log", dir);
  const char *argv[32];
  int n = 0;
  static char exe[4096];
  snprintf(exe, sizeof(exe), "%s", tu_build("daemon/dynqd"));
  const char *wrap = getenv("DYNQ_TEST_VALGRIND");
  if (wrap != NULL && *wrap == '1') {
    argv[n++] = "/usr/bin/valgrind";
    argv[n++] = "--error-exitcode=99";
    argv[n++] = "--leak-check=full";
    argv[n++] = "--errors-for-leak-kinds=definite";
    argv[n++] = "-q";
  }
  argv[n++] = exe;
  argv[n++] = "--socket";
  argv[n++] = d->sock;
  argv[n++] = "--models";
  argv[n++] = model_dir;
  for (int i = 0; extra_args && extra_args[i] && n < 30; i++) argv[n++] = extra_args[i];
  argv[n] = NULL;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 2);
      dup2(fd, 1);
    }
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  d->pid = pid;
  for (int i = 0; i < 2000; i++) {  /* 20 s */
    int fd = tu_connect(d->sock);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      d->pid = 0;
      return -1;
    }
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  d->pid = 0;
  return -1;
}

int tu_daemon_alive(const tu_daemon_t *d) {
  if (d->pid <= 0) return 0;
  int st;
  return waitpid(d->pid, &st, WNOHANG) == 0;
}

int tu_daemon_stop(tu_daemon_t *d, int sig) {
  if (d->pid <= 0) return -1;
  kill(d->pid, sig);
  int st = 0;
  while (waitpid(d->pid, &st, 0) < 0 && errno == EINTR) {}
  d->pid = 0;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return 128 + WTERMSIG(st);
}


void tu_write_all(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    b += w;
    n -= (size_t)w;
  }
}

void tu_send_wbuf(int fd, dynq__wbuf_t *w) {
  tu_write_all(fd, w->data, w->len);
  dynq__wbuf_free(w);
}

int tu_pid_alive(pid_t pid) {
  if (pid <= 0) return 0;
  char p[64], buf[256];
  snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
  FILE *f = fopen(p, "r");
  if (f == NULL) return 0;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *rp = strrchr(buf, ')');  /* state follows "(comm)" */
  return rp != NULL && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

char *tu_mkdtemp_models(char **ret_models) {
  char *dir = tu_mkdtemp();
  ck_assert_ptr_nonnull(dir);
  char p[4096];
  snprintf(p, sizeof(p), "%s/models", dir);
  ck_assert_int_eq(mkdir(p, 0755), 0);
  *ret_models = strdup(p);
  ck_assert_ptr_nonnull(*ret_models);
  return dir;
}

int tu_daemon_teardown(tu_daemon_t *d, const char *what) {
  if (d->pid <= 0) return 0;
  int st = tu_daemon_stop(d, SIGTERM);
  if (st != 0) fprintf(stderr, "FAIL: %s dynqd exited with %d\n", what, st);
  return st;
}

int tu_listen_unix(const char *path, int backlog) {
  int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
  ck_assert_int_ge(lfd, 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  ck_assert_msg(strlen(path) < sizeof(sa.sun_path), "socket path too long: %s", path);
  memcpy(sa.sun_path, path, strlen(path) + 1);
  ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  ck_assert_int_eq(listen(lfd, backlog), 0);
  return lfd;
}

void tu_fake_serve(int lfd, tu_fake_fn on_msg, void *ctx) {
  dynq__framer_t fr;
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0) return;
  dynq__framer_init(&fr, NULL);
  for (;;) {
    const uint8_t *f;
    size_t flen;
    int r = dynq__framer_next(&fr, &f, &flen);
    if (r == 0) {
      uint8_t *dst;
      size_t room;
      ck_assert_int_eq(dynq__framer_space(&fr, 65536, &dst, &room), 0);
      ssize_t n = read(fd, dst, room);
      if (n <= 0) break;
      dynq__framer_commit(&fr, (size_t)n);
      continue;
    }
    if (r < 0) break;
    dynq__rpc_msg_t m;
    int64_t hint;
    char err[128];
    if (dynq__rpc_parse(f, flen, &m, &hint, err, sizeof(err)) < 0) break;
    int done = on_msg(ctx, fd, &m);
    dynq__rpc_free(&m);
    if (done) break;
  }
  dynq__framer_free(&fr);
  close(fd);
}

pid_t tu_spawn_activated(int lfd, const char *log, const char *sock_arg, const char *models) {
  char exe[4096];
  snprintf(exe, sizeof(exe), "%s", tu_build("daemon/dynqd"));
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int lg = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (lg >= 0) dup2(lg, 2);
    if (lfd != 3) {
      dup2(lfd, 3);
      close(lfd);
    }
    char num[32];
    snprintf(num, sizeof(num), "%d", (int)getpid());
    setenv("LISTEN_PID", num, 1);
    setenv("LISTEN_FDS", "1", 1);
    execl(exe, exe, "--socket", sock_arg, "--models", models, (char *)NULL);
    _exit(127);
  }
  close(lfd);
  return pid;
}

float *tu_ramp_f32(size_t n, int period) {
  float *p = calloc(n, sizeof(float));
  ck_assert_ptr_nonnull(p);
  for (size_t i = 0; i < n; i++) p[i] = (float)(i % (size_t)period) / (float)period;
  return p;
}

/* ---- files ---- */

int tu_load_f32(const char *rel, float *dst, size_t n) {
  size_t got = 0;
  void *p = tu_read_file(tu_src(rel), &got);
  if (p == NULL || got != n * sizeof(float)) {
    free(p);
    return -1;
  }
  memcpy(dst, p, got);
  free(p);
  return 0;
}

void tu_swap_file(const char *src, const char *dst, const char *dir) {
  size_t n = 0;
  void *p = tu_read_file(src, &n);
  ck_assert_ptr_nonnull(p);
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s/.stage", dir);
  ck_assert_int_eq(tu_write_file(tmp, p, n), 0);
  free(p);
  ck_assert_int_eq(rename(tmp, dst), 0);
}

int tu_file_contains(const char *path, const char *needle) {
  return tu_count_in_file(path, needle) > 0;
}

int tu_count_in_file(const char *path, const char *needle) {
  char *p = tu_read_file(path, NULL);
  if (p == NULL) return 0;
  int count = 0;
  for (char *q = p; (q = strstr(q, needle)) != NULL; q += strlen(needle)) count++;
  free(p);
  return count;
}

/* ---- dynq-quantize ---- */

#define TU_QUANTIZE_MAX_ARGS 40

int tu_quantize_argv(char *const *args, char **log) {
  char exe[4096];
  snprintf(exe, sizeof(exe), "%s", tu_build("models/dynq-quantize"));
  char *argv[TU_QUANTIZE_MAX_ARGS + 2];
  int n = 0;
  argv[n++] = exe;
  for (int i = 0; args[i] != NULL; i++) {
    ck_assert_msg(n <= TU_QUANTIZE_MAX_ARGS, "too many dynq-quantize arguments");
    argv[n++] = args[i];
  }
  argv[n] = NULL;
  return tu_run(argv, log);
}

int tu_quantize_log(char **log, ...) {
  char *args[TU_QUANTIZE_MAX_ARGS + 1];
  int n = 0;
  va_list ap;
  va_start(ap, log);
  char *a;
  while ((a = va_arg(ap, char *)) != NULL && n < TU_QUANTIZE_MAX_ARGS) args[n++] = a;
  va_end(ap);
  args[n] = NULL;
  return tu_quantize_argv(args, log);
}

int tu_quantize(const char *onnx, const char *out, ...) {
  if (access(tu_build("models/dynq-quantize"), X_OK) != 0) return -1;
  char path[4096];
  snprintf(path, sizeof(path), "%s", onnx[0] == '/' ? onnx : tu_src(onnx));
  char *args[TU_QUANTIZE_MAX_ARGS + 1];
  int n = 0;
  va_list ap;
  va_start(ap, out);
  char *a;
  while ((a = va_arg(ap, char *)) != NULL && n < TU_QUANTIZE_MAX_ARGS - 2) args[n++] = a;
  va_end(ap);
  args[n++] = path;
  args[n++] = (char *)out;
  args[n] = NULL;
  char *log = NULL;
  int rc = tu_quantize_argv(args, &log);
  if (rc != 0) fprintf(stderr, "dynq-quantize %s failed (%d): %s\n", onnx, rc, log ? log : "");
  free(log);
  return rc == 0 ? 0 : -1;
}

/* ---- numeric comparisons ---- */

double tu_rel_l2(const float *got, const float *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)got[i] - (double)ref[i];
    num += d * d;
    den += (double)ref[i] * ref[i];
  }
  return sqrt(num / (den > 0 ? den : 1));
}

double tu_rel_max(const float *got, const float *ref, size_t n) {
  double md = 0, mr = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - (double)ref[i]);
    if (!(d <= md)) md = d;  /* a NaN sticks */
    if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
  }
  return md / (mr > 0 ? mr : 1);
}

/* ---- raw msgpack-RPC ---- */

void tu_rpc_open(tu_rpc_t *c, const char *sock) {
  memset(c, 0, sizeof(*c));
  dynq__scan_limits_t lim = dynq__scan_limits_default;
  lim.max_frame = (size_t)1 << 30;  /* results may exceed the request default */
  dynq__framer_init(&c->fr, &lim);
  c->fd = tu_connect(sock);
  ck_assert_msg(c->fd >= 0, "cannot connect to %s: %s", sock, strerror(errno));
}

void tu_rpc_close(tu_rpc_t *c) {
  for (int i = 0; i < c->n_stash; i++) dynq__rpc_free(&c->stash[i]);
  if (c->fd >= 0) close(c->fd);
  dynq__framer_free(&c->fr);
  memset(c, 0, sizeof(*c));
  c->fd = -1;
}

void tu_rpc_send_fd(tu_rpc_t *c, const void *p, size_t n, int fd) {
  const uint8_t *b = p;
  while (n > 0) {
    struct iovec iov = {(void *)b, n};
    struct msghdr mh;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    union {
      struct cmsghdr h;
      char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    if (fd >= 0) {
      memset(&cm, 0, sizeof(cm));
      mh.msg_control = cm.buf;
      mh.msg_controllen = sizeof(cm.buf);
      struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
      h->cmsg_level = SOL_SOCKET;
      h->cmsg_type = SCM_RIGHTS;
      h->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(h), &fd, sizeof(int));
    }
    ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    ck_assert_msg(w > 0, "send failed: %s", strerror(errno));
    fd = -1;
    b += w;
    n -= (size_t)w;
  }
}

void tu_rpc_send(tu_rpc_t *c, const void *p, size_t n) { tu_rpc_send_fd(c, p, n, -1); }

void tu_rpc_send_wbuf(tu_rpc_t *c, dynq__wbuf_t *w) {
  ck_assert_int_eq(w->err, 0);
  tu_rpc_send_fd(c, w->data, w->len, -1);
  dynq__wbuf_free(w);
}

int tu_rpc_recv(tu_rpc_t *c, dynq__rpc_msg_t *m) {
  if (c->fr.lim.max_frame == 0) {
    /* a tu_rpc_t set up by hand (memset + fd, e.g. over a socketpair) */
    dynq__scan_limits_t lim = dynq__scan_limits_default;
    lim.max_frame = (size_t)1 << 30;
    dynq__framer_init(&c->fr, &lim);
  }
  for (;;) {
    const uint8_t *f;
    size_t flen = 0;
    int rc = dynq__framer_next(&c->fr, &f, &flen);
    ck_assert_msg(rc >= 0, "daemon sent bytes the scanner refuses (%d)", rc);
    if (rc == 1) {
      char err[256];
      int64_t hint;
      int prc = dynq__rpc_parse(f, flen, m, &hint, err, sizeof(err));
      ck_assert_msg(prc == 0, "daemon sent an unparsable message: %s", err);
      return 0;
    }
    uint8_t *dst;
    size_t room;
    ck_assert_int_eq(dynq__framer_space(&c->fr, 65536, &dst, &room), 0);
    struct pollfd pfd = {c->fd, POLLIN, 0};
    int pr = poll(&pfd, 1, TU_RPC_IO_TIMEOUT_MS);
    ck_assert_msg(pr == 1, "no answer from dynqd within %d ms", TU_RPC_IO_TIMEOUT_MS);
    ssize_t r = recv(c->fd, dst, room, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == ECONNRESET) return -1;
    ck_assert_msg(r >= 0, "recv failed: %s", strerror(errno));
    if (r == 0) {
      ck_assert_msg(dynq__framer_pending(&c->fr) == 0, "daemon closed mid-message");
      return -1;
    }
    dynq__framer_commit(&c->fr, (size_t)r);
  }
}

int tu_rpc_response(tu_rpc_t *c, dynq__rpc_msg_t *m, uint32_t msgid, char *msg,
                    size_t msglen) {
  int found = 0;
  for (int i = 0; i < c->n_stash && !found; i++) {
    if (c->stash[i].msgid == msgid) {
      *m = c->stash[i];
      c->stash[i] = c->stash[--c->n_stash];
      found = 1;
    }
  }
  while (!found) {
    ck_assert_msg(tu_rpc_recv(c, m) == 0, "connection closed before response %u", msgid);
    ck_assert_int_eq(m->type, DYNQ_RPC_RESPONSE);
    if (m->msgid == msgid) break;
    for (int i = 0; i < c->n_stash; i++)
      ck_assert_msg(c->stash[i].msgid != m->msgid, "msgid %u answered twice", m->msgid);
    ck_assert_msg(c->n_stash < TU_RPC_STASH_MAX, "too many unexpected responses");
    c->stash[c->n_stash++] = *m;
  }
  ck_assert_int_eq(m->type, DYNQ_RPC_RESPONSE);
  ck_assert_uint_eq(m->msgid, msgid);
  char tmp[512];
  return dynq__rpc_error(m->error, msg ? msg : tmp, msg ? msglen : sizeof(tmp));
}

void tu_rpc_expect_error(tu_rpc_t *c, uint32_t msgid, int code, const char *needle) {
  dynq__rpc_msg_t m;
  char msg[512];
  int rc = tu_rpc_response(c, &m, msgid, msg, sizeof(msg));
  ck_assert_msg(rc == code, "msgid %u: expected %s, got %s (%s)", msgid, dynq_err_name(code),
                dynq_err_name(rc), msg);
  if (needle)
    ck_assert_msg(strstr(msg, needle) != NULL, "message '%s' does not mention '%s'", msg,
                  needle);
  dynq__rpc_free(&m);
}

void tu_rpc_expect_ok(tu_rpc_t *c, uint32_t msgid, dynq__rpc_msg_t *m) {
  char msg[512];
  int rc = tu_rpc_response(c, m, msgid, msg, sizeof(msg));
  ck_assert_msg(rc == 0, "msgid %u failed: %s (%s)", msgid, dynq_err_name(rc), msg);
}

void tu_rpc_expect_closed(tu_rpc_t *c) {
  ck_assert_msg(c->n_stash == 0, "%d responses nobody asked for", c->n_stash);
  dynq__rpc_msg_t m;
  int rc = tu_rpc_recv(c, &m);
  if (rc == 0) dynq__rpc_free(&m);
  ck_assert_msg(rc == -1, "daemon kept the connection open after a fatal frame");
}

void tu_rpc_expect_pong(tu_rpc_t *c, uint32_t msgid) {
  dynq__rpc_msg_t m;
  char msg[512];
  int rc = tu_rpc_response(c, &m, msgid, msg, sizeof(msg));
  ck_assert_msg(rc == 0, "ping failed: %s (%s)", dynq_err_name(rc), msg);
  const char *s;
  size_t n;
  ck_assert_int_eq(dynq__obj_str(m.result, &s, &n), 0);
  ck_assert(n == 4 && memcmp(s, "pong", 4) == 0);
  dynq__rpc_free(&m);
}

void tu_rpc_call(tu_rpc_t *c, uint32_t msgid, const char *method, tu_params_fn params,
                 void *ctx) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, msgid, method);
  if (params)
    params(&w, ctx);
  else
    dynq__w_map(&w, 0);
  tu_rpc_send_wbuf(c, &w);
}

void tu_rpc_call0(tu_rpc_t *c, uint32_t msgid, const char *method) {
  tu_rpc_call(c, msgid, method, NULL, NULL);
}

typedef struct {
  const char *key;
  uint64_t v;
} id_param_t;

static void w_id_param(dynq__wbuf_t *w, void *ctx) {
  const id_param_t *p = ctx;
  dynq__w_map(w, 1);
  dynq__w_str(w, p->key);
  dynq__w_uint(w, p->v);
}

void tu_rpc_call_id(tu_rpc_t *c, uint32_t msgid, const char *method, const char *key,
                    uint64_t v) {
  id_param_t p = {key, v};
  tu_rpc_call(c, msgid, method, w_id_param, &p);
}

void tu_rpc_ping_ok(tu_rpc_t *c, uint32_t msgid) {
  tu_rpc_call0(c, msgid, "ping");
  tu_rpc_expect_pong(c, msgid);
}

int64_t tu_rpc_stat(tu_rpc_t *c, uint32_t msgid, const char *key) {
  tu_rpc_call0(c, msgid, "stats");
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(c, msgid, &m);
  int64_t v = tu_obj_int_or(dynq__obj_get(m.result, key), -1);
  dynq__rpc_free(&m);
  return v;
}

int64_t tu_obj_int_or(dynq__obj_t o, int64_t dflt) {
  int64_t v;
  return dynq__obj_int(o, &v) == 0 ? v : dflt;
}

void tu_w_f32_tensor(dynq__wbuf_t *w, int rank, const int64_t *dims, const float *data) {
  dynq__tensor_t t;
  memset(&t, 0, sizeof(t));
  t.dtype = DYNQ_DT_F32;
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  t.data = (void *)data;
  dynq__w_tensor(w, &t);
}

void tu_w_infer_f32(dynq__wbuf_t *w, uint32_t msgid, const char *model, const char *input,
                    int64_t rows, int64_t cols, const float *data, int64_t timeout_ms) {
  int64_t dims[2] = {rows, cols};
  dynq__w_request_head(w, msgid, "infer");
  dynq__w_map(w, timeout_ms >= 0 ? 3 : 2);
  dynq__w_str(w, "model");
  dynq__w_str(w, model);
  dynq__w_str(w, "inputs");
  dynq__w_map(w, 1);
  dynq__w_str(w, input);
  tu_w_f32_tensor(w, 2, dims, data);
  if (timeout_ms >= 0) {
    dynq__w_str(w, "timeout_ms");
    dynq__w_int(w, timeout_ms);
  }
}

void tu_w_raw_tensor(dynq__wbuf_t *w, const char *dtype, int rank, const int64_t *dims,
                     const void *data, size_t n) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype");
  dynq__w_str(w, dtype);
  dynq__w_str(w, "shape");
  dynq__w_array(w, (uint32_t)rank);
  for (int i = 0; i < rank; i++) dynq__w_int(w, dims[i]);
  dynq__w_str(w, "data");
  dynq__w_bin(w, data, n);
}

void tu_get_f32_output(const dynq__rpc_msg_t *m, const char *name, float *dst, size_t n) {
  dynq__obj_t outs = dynq__obj_get(m->result, "outputs");
  ck_assert_int_eq(dynq__obj_kind(outs), DYNQ_OBJ_MAP);
  dynq__tensor_limits_t tl = {DYNQ_MAX_RANK, 1 << 24};
  dynq__tensor_t t;
  char err[256];
  ck_assert_msg(dynq__obj_tensor(dynq__obj_get(outs, name), &tl, &t, err, sizeof(err)) == 0,
                "output %s: %s", name, err);
  ck_assert_int_eq(t.dtype, DYNQ_DT_F32);
  ck_assert_msg((size_t)dynq__tensor_numel(&t) == n, "output %s has %lld values, want %zu",
                name, (long long)dynq__tensor_numel(&t), n);
  memcpy(dst, t.data, n * sizeof(float));
  dynq__tensor_clear(&t);
}

/* ---- through libdynqclient ---- */

int tu_admin_call(const char *sock, const char *method, const char *model, const char *path,
                  int *ret_version, char *msg, size_t msgcap) {
  dynq_client_t *c = NULL;
  int rc = dynq_connect(sock, &c);
  if (rc != 0) {
    snprintf(msg, msgcap, "connect: %s", dynq_strerror(rc));
    return rc;
  }
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_map(&w, path ? 2 : 1);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, model);
  if (path) {
    dynq__w_str(&w, "path");
    dynq__w_str(&w, path);
  }
  void *res = NULL;
  size_t rlen = 0;
  rc = dynq_call_raw(c, method, w.data, w.len, &res, &rlen);
  snprintf(msg, msgcap, "%s", dynq_client_errmsg(c));
  dynq__wbuf_free(&w);
  if (rc == 0 && ret_version) {
    /* Wrap the result in a response envelope to read it with the parser. */
    uint8_t *frame = malloc(rlen + 4);
    ck_assert_ptr_nonnull(frame);
    frame[0] = 0x94;
    frame[1] = 0x01;
    frame[2] = 0x00;
    frame[3] = 0xc0;
    memcpy(frame + 4, res, rlen);
    dynq__rpc_msg_t m;
    int64_t hint;
    char err[128];
    ck_assert_int_eq(dynq__rpc_parse(frame, rlen + 4, &m, &hint, err, sizeof(err)), 0);
    int64_t v = -1;
    ck_assert_int_eq(dynq__obj_int(dynq__obj_get(m.result, "version"), &v), 0);
    *ret_version = (int)v;
    dynq__rpc_free(&m);
    free(frame);
  }
  free(res);
  dynq_close(c);
  return rc;
}

int tu_infer_mlp(const char *sock, const char *model, const float *x, int rows,
                 void **ret_out, size_t *ret_n, char *msg, size_t msgcap) {
  dynq_client_t *c = NULL;
  int rc = dynq_connect(sock, &c);
  if (rc != 0) {
    snprintf(msg, msgcap, "connect: %s", dynq_strerror(rc));
    return rc;
  }
  rc = tu_infer_mlp_on(c, model, x, rows, ret_out, ret_n);
  snprintf(msg, msgcap, "%s", dynq_client_errmsg(c));
  dynq_close(c);
  return rc;
}

int tu_infer_mlp_on(dynq_client_t *c, const char *model, const float *x, int rows,
                    void **ret_out, size_t *ret_n) {
  dynq_tensor_t in;
  memset(&in, 0, sizeof(in));
  in.name = "x";
  in.dtype = DYNQ_FLOAT32;
  in.rank = 2;
  in.shape[0] = rows;
  in.shape[1] = 64;
  in.data = (void *)x;
  in.nbytes = (size_t)rows * 64 * sizeof(float);
  dynq_infer_result_t r;
  int rc = dynq_infer(c, model, DYNQ_INFER_DEFAULT, &in, 1, &r);
  if (rc == 0) {
    ck_assert_int_ge(r.n_outputs, 1);
    *ret_n = r.outputs[0].nbytes;
    *ret_out = malloc(*ret_n);
    ck_assert_ptr_nonnull(*ret_out);
    memcpy(*ret_out, r.outputs[0].data, *ret_n);
    dynq_infer_result_free(&r);
  }
  return rc;
}

/* ---- fake $NOTIFY_SOCKET ---- */

void tu_notify_open(tu_notify_t *n, const char *dir) {
  snprintf(n->path, sizeof(n->path), "%s/notify.sock", dir);
  n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ck_assert_int_ge(n->fd, 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  ck_assert_uint_lt(strlen(n->path), sizeof(sa.sun_path));
  memcpy(sa.sun_path, n->path, strlen(n->path) + 1);
  ck_assert_int_eq(bind(n->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  setenv("NOTIFY_SOCKET", n->path, 1);
}

void tu_notify_close(tu_notify_t *n) {
  unsetenv("NOTIFY_SOCKET");
  if (n->fd >= 0) close(n->fd);
  n->fd = -1;
}

int tu_notify_wait(tu_notify_t *n, const char *want, char *seen, size_t seencap) {
  /* Short polls bound the whole wait at 30 s: a daemon that never says
   * `want` fails the test instead of hanging it. */
  for (int rounds = 0; rounds < 300; rounds++) {
    struct pollfd p = {n->fd, POLLIN, 0};
    int r = poll(&p, 1, 100);
    if (r <= 0) continue;
    char buf[1024];
    ssize_t got = recv(n->fd, buf, sizeof(buf) - 1, 0);
    if (got <= 0) continue;
    buf[got] = '\0';
    if (seen) {
      size_t used = strlen(seen);
      snprintf(seen + used, seencap - used, "%s|", buf);
    }
    for (char *line = buf; line && *line;) {
      char *nl = strchr(line, '\n');
      if (nl) *nl = '\0';
      if (strcmp(line, want) == 0) return 1;
      line = nl ? nl + 1 : NULL;
    }
  }
  return 0;
}

/* ---- running a suite ---- */

int tu_run_runner(SRunner *sr) {
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed;
}

int tu_run_suite(Suite *s) { return tu_run_runner(srunner_create(s)); }

int tu_cache_file(const char *name, char *buf, size_t cap) {
  const char *e;
  if ((e = getenv("DYNQ_CACHE_DIR")) && *e)
    snprintf(buf, cap, "%s/%s", e, name);
  else if ((e = getenv("XDG_CACHE_HOME")) && *e)
    snprintf(buf, cap, "%s/dynq/%s", e, name);
  else {
    e = getenv("HOME");
    snprintf(buf, cap, "%s/.cache/dynq/%s", e && *e ? e : "/root", name);
  }
  return access(buf, R_OK) == 0;
}
