/*
 * fuzz-replay: run a fuzz target's entry point over files, without
 * libFuzzer (the normal build links it to a target to replay its seeds
 * and regressions as a test; a crash or a trap fails the test).
 *
 *   fuzz-replay FILE|DIR...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    return -1;
  }
  size_t cap = 1 << 16, n = 0;
  uint8_t *buf = malloc(cap);
  for (;;) {
    if (buf == NULL) break;
    n += fread(buf + n, 1, cap - n, f);
    if (n < cap) break;
    uint8_t *nb = realloc(buf, cap * 2);
    if (nb == NULL) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = nb;
    cap *= 2;
  }
  fclose(f);
  if (buf == NULL) {
    fprintf(stderr, "%s: out of memory\n", path);
    return -1;
  }
  LLVMFuzzerTestOneInput(buf, n);
  free(buf);
  return 0;
}

int main(int argc, char **argv) {
  int files = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (run_file(argv[i]) < 0) return 1;
      files++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    struct dirent *e;
    if (d == NULL) {
      perror(argv[i]);
      return 1;
    }
    while ((e = readdir(d)) != NULL) {
      char p[4096];
      if (e->d_name[0] == '.') continue;
      snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
      if (run_file(p) < 0) return 1;
      files++;
    }
    closedir(d);
  }
  printf("fuzz-replay: %d inputs, no crash\n", files);
  return files > 0 ? 0 : 1;
}
