/*
 * Helpers shared by the Check suites: scratch directories, running the
 * built programs, and a real dynqd on a temporary socket.
 */
#ifndef DYNQ_TESTUTIL_H
#define DYNQ_TESTUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* $DYNQ_SRCDIR/rel and $DYNQ_BUILDDIR/rel (static buffers: copy if kept). */
const char *tu_src(const char *rel);
const char *tu_build(const char *rel);

/* A fresh directory under $TMPDIR; removed (recursively) by tu_rmtree. */
char *tu_mkdtemp(void);
void tu_rmtree(const char *dir);

/* Write/read a whole file.  Return 0 / -1. */
int tu_write_file(const char *path, const void *p, size_t n);
void *tu_read_file(const char *path, size_t *ret_n);

/* Run argv (argv[0] a path), wait, return the exit status (or 128+signal).
 * When out is non-NULL, stdout+stderr are captured into a malloc'd
 * NUL-terminated string. */
int tu_run(char *const argv[], char **out);

/* A running dynqd. */
typedef struct tu_daemon {
  pid_t pid;
  char sock[256];
  char log[256];    /* stderr of the daemon */
} tu_daemon_t;

/* Start $DYNQ_BUILDDIR/daemon/dynqd --socket DIR/dynqd.sock --models
 * model_dir [extra args...] and wait until the socket accepts (up to 20 s).
 * Returns 0 or -1. */
int tu_daemon_start(tu_daemon_t *d, const char *dir, const char *model_dir,
                    const char *const *extra_args);
/* Send sig and wait; returns the exit status (128+signal if killed). */
int tu_daemon_stop(tu_daemon_t *d, int sig);
/* Whether the daemon process is still alive. */
int tu_daemon_alive(const tu_daemon_t *d);

/* Connect a raw SOCK_STREAM to path; fd or -1. */
int tu_connect(const char *path);

#endif
