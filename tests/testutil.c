/* Helpers shared by the Check suites (see testutil.h). */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
