/*
 * fuzz-config: arbitrary bytes as dynqd's config file (daemon/config.c):
 * written to a temp file, parsed by dynqd__config_parse() exactly as
 * `dynqd --config FILE` would, then re-read by dynqd__config_reload() (the
 * SIGHUP path) and freed.
 *
 * Besides crashes it checks the parser's contract:
 *  - a file holding a NUL byte, or larger than the cap, is refused;
 *  - a refused file says why (a "dynqd: " line on stderr) and is never
 *    reported OK; an accepted file prints no error;
 *  - a file accepted at start is accepted by the SIGHUP re-read too;
 *  - the parser never takes in more than the cap + 1 bytes.
 * An input whose first byte is 0xff is repeated past the 1 MiB cap (the
 * oversize path, which libFuzzer's short inputs never reach otherwise).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dynqd.h"

static char g_path[64];
static int g_errfd = -1;  /* a memfd standing in for stderr during a parse */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  snprintf(g_path, sizeof(g_path), "/tmp/fuzz-config-%d.conf", (int)getpid());
  dynqd__log_init(3); /* reload logs at info: keep the fuzzer's log readable */
  g_errfd = memfd_create("fuzz-config-stderr", MFD_CLOEXEC);
  if (g_errfd < 0) abort();
  return 0;
}

/* What the parse wrote to stderr (static buffer, NUL-terminated). */
static const char *captured(void) {
  static char buf[8192];
  fflush(stderr);
  ssize_t n = pread(g_errfd, buf, sizeof(buf) - 1, 0);
  buf[n > 0 ? n : 0] = '\0';
  return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FILE *f = fopen(g_path, "w");
  if (f == NULL) abort();
  size_t total = 0;
  int big = size > 1 && data[0] == 0xff;
  do {
    if (size > 0 && fwrite(data, 1, size, f) != size) abort();
    total += size;
  } while (big && total <= DYNQD_CONFIG_MAX_BYTES);
  if (fclose(f) != 0) abort();
  int has_nul = size > 0 && memchr(data, 0, size) != NULL;

  char a0[] = "dynqd", a1[] = "--config";
  char a2[sizeof(g_path)];
  memcpy(a2, g_path, sizeof(g_path));
  char *argv[] = {a0, a1, a2, NULL};
  dynqd_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));

  fflush(stderr);
  int saved = dup(2);
  /* Empty, and writing from the start again (the offset is shared). */
  if (saved < 0 || ftruncate(g_errfd, 0) != 0 || lseek(g_errfd, 0, SEEK_SET) != 0 ||
      dup2(g_errfd, 2) < 0)
    abort();
  int rc = dynqd__config_parse(&cfg, 3, argv);
  size_t took = dynqd__config_bytes_read;
  const char *said = captured();
  int reload_rc = rc == 0 ? dynqd__config_reload(&cfg) : 0;
  fflush(stderr);
  if (dup2(saved, 2) < 0) abort();
  close(saved);

  if (took > DYNQD_CONFIG_MAX_BYTES + 1) {
    fprintf(stderr, "fuzz-config: the parser read %zu bytes, past the %zu-byte cap\n",
            took, DYNQD_CONFIG_MAX_BYTES);
    abort();
  }
  if (rc == 0 && (has_nul || total > DYNQD_CONFIG_MAX_BYTES)) {
    fprintf(stderr, "fuzz-config: a file with %s was accepted\n",
            has_nul ? "a NUL byte" : "more bytes than the cap");
    abort();
  }
  if (rc != 0 && strstr(said, "dynqd: ") == NULL) {
    fprintf(stderr, "fuzz-config: a refused file printed no reason\n");
    abort();
  }
  if (rc == 0 && said[0] != '\0') {
    fprintf(stderr, "fuzz-config: an accepted file printed: %s\n", said);
    abort();
  }
  if (rc == 0 && reload_rc != 0) {
    fprintf(stderr, "fuzz-config: accepted at start, refused on SIGHUP\n");
    abort();
  }
  dynqd__config_free(&cfg);
  unlink(g_path);
  return 0;
}
