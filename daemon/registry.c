/*
 * The model registry: the models found in --models DIR at start, by name
 * (file name without ".dynq").  Built before the loop runs and immutable
 * afterwards, so workers and the loop read it without locks; jobs still
 * hold their own model reference.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dynq/errors.h"
#include "dynqd.h"

/* Names are used in protocol strings and log lines: keep them tame. */
static int name_ok(const char *s, size_t n) {
  if (n == 0 || n > 63) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const dynqd_model_entry_t *)a)->name,
                ((const dynqd_model_entry_t *)b)->name);
}

int dynqd__registry_load(dynqd_registry_t *r, const char *dir) {
  memset(r, 0, sizeof(*r));
  if (dir == NULL) {
    log_warn("no --models directory given: serving no models");
    return 0;
  }
  DIR *d = opendir(dir);
  if (d == NULL) {
    log_err("cannot open model directory %s: %s; serving no models", dir,
            strerror(errno));
    return 0;
  }
  int cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *fn = e->d_name;
    size_t len = strlen(fn);
    if (fn[0] == '.' || len <= 5 || strcmp(fn + len - 5, ".dynq") != 0) continue;
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, fn) >= sizeof(path)) {
      log_err("skipping model file %s/%s: path too long", dir, fn);
      continue;
    }
    if (!name_ok(fn, len - 5)) {
      log_err("skipping model file %s: model name must be 1-63 characters of "
              "[A-Za-z0-9_.-]", path);
      continue;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
      log_err("skipping model file %s: not a regular file", path);
      continue;
    }
    char err[512] = "";
    dynq__model_t *m = NULL;
    int rc = dynq__model_open(path, &m, err, sizeof(err));
    if (rc != 0) {
      log_err("skipping model file %s: %s (%s)", path,
              err[0] ? err : dynq_strerror(rc), dynq_err_name(rc));
      continue;
    }
    if (r->n == cap) {
      int ncap = cap ? cap * 2 : 8;
      dynqd_model_entry_t *nv = realloc(r->v, (size_t)ncap * sizeof(*nv));
      if (nv == NULL) {
        log_err("skipping model file %s: out of memory", path);
        dynq__model_unref(m);
        continue;
      }
      r->v = nv;
      cap = ncap;
    }
    char *name = strndup(fn, len - 5);
    if (name == NULL) {
      log_err("skipping model file %s: out of memory", path);
      dynq__model_unref(m);
      continue;
    }
    r->v[r->n].name = name;
    r->v[r->n].model = m;
    r->n++;
    const dynq__graph_t *g = dynq__model_graph(m);
    log_info("loaded model '%s' from %s (%zu bytes, %d nodes, %d inputs, %d outputs)",
             name, path, dynq__model_file_size(m), g->n_nodes, g->n_inputs,
             g->n_outputs);
  }
  closedir(d);
  if (r->n > 1) qsort(r->v, (size_t)r->n, sizeof(*r->v), cmp_entry);
  return r->n;
}

const dynqd_model_entry_t *dynqd__registry_find(const dynqd_registry_t *r,
                                                const char *name) {
  int lo = 0, hi = r->n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    int c = strcmp(name, r->v[mid].name);
    if (c == 0) return &r->v[mid];
    if (c < 0) hi = mid - 1;
    else lo = mid + 1;
  }
  return NULL;
}

void dynqd__registry_free(dynqd_registry_t *r) {
  if (r == NULL) return;
  for (int i = 0; i < r->n; i++) {
    free(r->v[i].name);
    dynq__model_unref(r->v[i].model);
  }
  free(r->v);
  r->v = NULL;
  r->n = 0;
}
