/*
 * dynqd logging: one line per call to stderr, written with a single
 * write(2) so lines from worker threads never interleave.  When stderr is
 * journald's stream each line starts with the syslog "<N>" priority, which
 * journald strips and records; otherwise a readable level word.  systemd
 * says which stream is its own in JOURNAL_STREAM ("DEV:INODE"); the
 * variable is inherited by anything started from the unit, so it counts
 * only when stderr is still that stream (a dynqd run by hand from a
 * service's shell, or with 2>file, must not write "<6>" into a file).
 *
 * Rate limit: each call site (its format string) is a message class with
 * a budget of log_rate lines per one-second window.  Lines over budget are
 * counted, not written; the first line of that class in a later window is
 * preceded by one "N messages suppressed" line.  A peer that triggers a
 * warning per request therefore cannot flood the journal.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dynqd.h"

#define N_CLASSES 128  /* hash slots; colliding call sites share a budget */

typedef struct log_class {
  const char *fmt;       /* first call site seen in this slot */
  int64_t window;        /* second (CLOCK_MONOTONIC) the count belongs to */
  int count;             /* lines written in that window */
  long suppressed;       /* lines dropped since the last one written */
} log_class_t;

static int log_level = 6;  /* LOG_INFO */
static int log_rate;       /* 0: unlimited */
static int log_journal;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static log_class_t classes[N_CLASSES];

static const char *const level_names[8] = {
  "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

/* An unsigned decimal, all of s up to stop; -1 if not. */
static int parse_u64_until(const char *s, char stop, unsigned long long *ret, const char **ret_end) {
  if (*s < '0' || *s > '9') return -1;  /* strtoull would take spaces and signs */
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != stop) return -1;
  *ret = v;
  *ret_end = end;
  return 0;
}

int dynqd__journal_stream_is(const char *js, int fd) {
  unsigned long long dev, ino;
  const char *p;
  if (js == NULL || parse_u64_until(js, ':', &dev, &p) != 0 ||
      parse_u64_until(p + 1, '\0', &ino, &p) != 0)
    return 0;
  struct stat st;
  if (fstat(fd, &st) != 0) return 0;
  return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void dynqd__log_init(int level) {
  log_level = level;
  log_journal = dynqd__journal_stream_is(getenv("JOURNAL_STREAM"), 2);
}

void dynqd__log_configure(int level, int rate) {
  pthread_mutex_lock(&log_mu);
  log_level = level;
  log_rate = rate < 0 ? 0 : rate;
  pthread_mutex_unlock(&log_mu);
}

int dynqd__log_level_from_name(const char *s) {
  for (int i = 0; i < 8; i++)
    if (strcmp(s, level_names[i]) == 0) return i;
  if (strcmp(s, "err") == 0) return 3;
  if (strcmp(s, "warn") == 0) return 4;
  if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0') return s[0] - '0';
  return -1;
}

static void write_all(const char *p, size_t len) {
  while (len > 0) {
    ssize_t w = write(2, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    p += w;
    len -= (size_t)w;
  }
}

static size_t prefix(char *line, size_t cap, int prio) {
  int n;
  if (log_journal)
    n = snprintf(line, cap, "<%d>", prio);
  else
    n = snprintf(line, cap, "dynqd: %s: ", level_names[prio]);
  return n < 0 ? 0 : (size_t)n;
}

/* 1: write the line; 0: over budget.  *ret_dropped: lines of this class
 * dropped before it, to report first.  Called under log_mu. */
static int admit(const char *fmt, long *ret_dropped) {
  *ret_dropped = 0;
  if (log_rate <= 0) return 1;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uintptr_t h = (uintptr_t)fmt;
  log_class_t *c = &classes[(h >> 4 ^ h >> 12) % N_CLASSES];
  if (c->window != (int64_t)ts.tv_sec || c->fmt != fmt) {
    c->window = (int64_t)ts.tv_sec;
    c->count = 0;
    c->fmt = fmt;
  }
  if (c->count >= log_rate) {
    c->suppressed++;
    return 0;
  }
  c->count++;
  *ret_dropped = c->suppressed;
  c->suppressed = 0;
  return 1;
}

void dynqd__log(int prio, const char *fmt, ...) {
  if (prio > log_level) return;
  if (prio < 0) prio = 0;
  if (prio > 7) prio = 7;
  int saved = errno;
  long dropped;
  pthread_mutex_lock(&log_mu);
  int ok = admit(fmt, &dropped);
  pthread_mutex_unlock(&log_mu);
  if (!ok) {
    errno = saved;
    return;
  }
  char line[2048];
  if (dropped > 0) {
    size_t n = prefix(line, sizeof(line), 4);
    int m = snprintf(line + n, sizeof(line) - n,
                     "%ld messages suppressed (log_rate %d lines/s) like: %.80s\n",
                     dropped, log_rate, fmt);
    if (m > 0) write_all(line, n + ((size_t)m < sizeof(line) - n ? (size_t)m : sizeof(line) - n - 1));
  }
  size_t n = prefix(line, sizeof(line), prio);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
  va_end(ap);
  size_t len = n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof(line) - 2) len = sizeof(line) - 2;  /* truncated */
  line[len++] = '\n';
  write_all(line, len);
  errno = saved;
}
