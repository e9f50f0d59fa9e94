/*
 * fuzz-config: arbitrary bytes as dynqd's config file (daemon/config.c):
 * written to a temp file, parsed by dynqd__config_parse() exactly as
 * `dynqd --config FILE` would, then re-read by dynqd__config_reload() (the
 * SIGHUP path) and freed.  Parse errors are printed, never exit.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dynqd.h"

static char g_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  snprintf(g_path, sizeof(g_path), "/tmp/fuzz-config-%d.conf", (int)getpid());
  dynqd__log_init(3); /* reload logs at info: keep the fuzzer's log readable */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FILE *f = fopen(g_path, "w");
  if (f == NULL) abort();
  if (size > 0 && fwrite(data, 1, size, f) != size) abort();
  if (fclose(f) != 0) abort();
  char a0[] = "dynqd", a1[] = "--config";
  char a2[sizeof(g_path)];
  memcpy(a2, g_path, sizeof(g_path));
  char *argv[] = {a0, a1, a2, NULL};
  dynqd_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  if (dynqd__config_parse(&cfg, 3, argv) == 0) (void)dynqd__config_reload(&cfg);
  dynqd__config_free(&cfg);
  unlink(g_path);
  return 0;
}
