/*
 * dynqd logging: one line per call to stderr, written with a single
 * write(2) so lines from worker threads never interleave.  Under journald
 * (JOURNAL_STREAM set) each line starts with the syslog "<N>" priority,
 * which journald strips and records; otherwise a readable level word.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dynqd.h"

static int log_level = 6;  /* LOG_INFO */
static int log_journal;

static const char *const level_names[8] = {
  "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

void dynqd__log_init(int level) {
  log_level = level;
  const char *js = getenv("JOURNAL_STREAM");
  log_journal = js != NULL && *js != '\0';
}

int dynqd__log_level_from_name(const char *s) {
  for (int i = 0; i < 8; i++)
    if (strcmp(s, level_names[i]) == 0) return i;
  if (strcmp(s, "err") == 0) return 3;
  if (strcmp(s, "warn") == 0) return 4;
  if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0') return s[0] - '0';
  return -1;
}

void dynqd__log(int prio, const char *fmt, ...) {
  if (prio > log_level) return;
  if (prio < 0) prio = 0;
  if (prio > 7) prio = 7;
  int saved = errno;
  char line[2048];
  int n;
  if (log_journal)
    n = snprintf(line, sizeof(line), "<%d>", prio);
  else
    n = snprintf(line, sizeof(line), "dynqd: %s: ", level_names[prio]);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof(line) - 2) len = sizeof(line) - 2;  /* truncated */
  line[len++] = '\n';
  const char *p = line;
  while (len > 0) {
    ssize_t w = write(2, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    p += w;
    len -= (size_t)w;
  }
  errno = saved;
}
