/*
 * The model registry: the models dynqd serves, by name, with a version per
 * name and the identity (dev, inode, size, mtime) of the file each was
 * loaded from.  Everything here runs on the loop thread (start-up, admin
 * methods, SIGHUP), so the array needs no lock; workers never look at it,
 * they hold their own model reference.
 *
 * Publishing a model is: confine the path to the model directory, open and
 * validate it, warm it (one run on zero inputs), and only then swap it in.
 * A failure at any step leaves the registry as it was.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dynq/errors.h"
#include "dynqd.h"

#define MAX_MODELS 4096  /* bounds the array an admin can grow */

/* Names are used in protocol strings and log lines: keep them tame. */
int dynqd__model_name_ok(const char *s, size_t n) {
  if (n == 0 || n > 63 || s[0] == '.') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

static int find_index(const dynqd_registry_t *r, const char *name, size_t n,
                      int *ret_insert) {
  int lo = 0, hi = r->n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    const char *e = r->v[mid].name;
    int c = strncmp(name, e, n);
    if (c == 0 && e[n] != '\0') c = -1;  /* name is a proper prefix of e */
    if (c == 0) return mid;
    if (c < 0) hi = mid - 1;
    else lo = mid + 1;
  }
  if (ret_insert) *ret_insert = lo;
  return -1;
}

const dynqd_model_entry_t *dynqd__registry_find(const dynqd_registry_t *r,
                                                const char *name) {
  const char *at = strrchr(name, '@');
  size_t n = at ? (size_t)(at - name) : strlen(name);
  long want = 0;
  if (at) {
    char *end;
    errno = 0;
    want = strtol(at + 1, &end, 10);
    if (at[1] < '0' || at[1] > '9' || *end != '\0' || errno != 0 || want < 1)
      return NULL;
  }
  int i = find_index(r, name, n, NULL);
  if (i < 0) return NULL;
  if (at && r->v[i].version != want) return NULL;  /* that version is gone */
  return &r->v[i];
}

static void entry_clear(dynqd_model_entry_t *e) {
  free(e->name);
  free(e->file);
  dynq__model_unref(e->model);
  memset(e, 0, sizeof(*e));
}

void dynqd__registry_free(dynqd_registry_t *r) {
  if (r == NULL) return;
  for (int i = 0; i < r->n; i++) entry_clear(&r->v[i]);
  free(r->v);
  free(r->dir);
  memset(r, 0, sizeof(*r));
}

/* dir/rel, with rel confined to dir: no absolute path, no "..", and after
 * resolving symlinks still inside dir.  Writes the resolved path. */
static int confine(const dynqd_registry_t *r, const char *rel, char *out,
                   size_t outlen, char *err, size_t errlen) {
  if (r->dir == NULL) {
    snprintf(err, errlen, "dynqd has no model directory (set models_dir)");
    return DYNQ_EDENIED;
  }
  if (rel[0] == '\0') {
    snprintf(err, errlen, "empty model path");
    return DYNQ_EPARAMS;
  }
  if (rel[0] == '/') {
    snprintf(err, errlen, "path '%s' is absolute; give a path relative to the "
             "model directory", rel);
    return DYNQ_EDENIED;
  }
  for (const char *p = rel; *p;) {
    size_t len = strcspn(p, "/");
    if (len == 2 && p[0] == '.' && p[1] == '.') {
      snprintf(err, errlen, "path '%s' contains '..'; it must stay inside the "
               "model directory", rel);
      return DYNQ_EDENIED;
    }
    p += len;
    while (*p == '/') p++;
  }
  char joined[PATH_MAX];
  if ((size_t)snprintf(joined, sizeof(joined), "%s/%s", r->dir, rel) >= sizeof(joined)) {
    snprintf(err, errlen, "path '%s' is too long", rel);
    return DYNQ_EPARAMS;
  }
  char real[PATH_MAX];
  if (realpath(joined, real) == NULL) {
    int e = errno;
    snprintf(err, errlen, "%s: %s", joined, strerror(e));
    return -e;
  }
  size_t dl = strlen(r->dir);
  if (strncmp(real, r->dir, dl) != 0 || real[dl] != '/') {
    snprintf(err, errlen, "path '%s' resolves to %s, outside the model "
             "directory %s", rel, real, r->dir);
    return DYNQ_EDENIED;
  }
  if (strlen(real) >= outlen) {
    snprintf(err, errlen, "path '%s' is too long", rel);
    return DYNQ_EPARAMS;
  }
  strcpy(out, real);
  return 0;
}

/* One run on zeros (symbolic dims = 1, unknown rank = a scalar): proves the
 * model executes and touches its pages before it takes traffic. */
static int warm(const dynq__model_t *m, char *err, size_t errlen) {
  const dynq__graph_t *g = dynq__model_graph(m);
  int rc = 0;
  int ni = g->n_inputs, no = g->n_outputs;
  dynq__tensor_t *in = calloc((size_t)(ni > 0 ? ni : 1), sizeof(*in));
  dynq__tensor_t *out = calloc((size_t)(no > 0 ? no : 1), sizeof(*out));
  if (in == NULL || out == NULL) {
    rc = -ENOMEM;
    snprintf(err, errlen, "out of memory warming the model");
    goto fail;
  }
  for (int i = 0; i < ni; i++) {
    const dynq__value_t *v = &g->values[g->inputs[i]];
    int64_t dims[DYNQ_MAX_RANK];
    int rank = v->rank < 0 ? 0 : v->rank;
    for (int d = 0; d < rank; d++) dims[d] = v->dims[d] < 0 ? 1 : v->dims[d];
    rc = dynq__tensor_alloc(&in[i], v->dtype, rank, dims);
    if (rc != 0) {
      snprintf(err, errlen, "cannot allocate warm-up input '%s': %s", v->name,
               dynq_strerror(rc));
      goto fail;
    }
  }
  dynq__run_opts_t opts = {DYNQ_PRECISION_INT8, NULL, 1};
  char rerr[384] = "";
  rc = dynq__model_run(m, &opts, in, out, rerr, sizeof(rerr));
  if (rc != 0) {
    snprintf(err, errlen, "warm-up run on zero inputs failed: %s",
             rerr[0] ? rerr : dynq_strerror(rc));
    goto fail;
  }
  for (int i = 0; i < no; i++) dynq__tensor_clear(&out[i]);
fail:
  if (in)
    for (int i = 0; i < ni; i++) dynq__tensor_clear(&in[i]);
  free(in);
  free(out);
  return rc;
}

static int has_symbolic_input(const dynq__model_t *m) {
  const dynq__graph_t *g = dynq__model_graph(m);
  for (int i = 0; i < g->n_inputs; i++) {
    const dynq__value_t *v = &g->values[g->inputs[i]];
    for (int d = 0; d < v->rank; d++)
      if (v->dims[d] < 0) return 1;
  }
  return 0;
}

void dynqd__prepared_clear(dynqd_prepared_t *p) {
  if (p == NULL) return;
  dynq__model_unref(p->model);
  memset(p, 0, sizeof(*p));
}

int dynqd__registry_prepare(const dynqd_registry_t *r, const char *name, const char *rel,
                            dynqd_prepared_t *ret, char *err, size_t errlen) {
  int rc;
  memset(ret, 0, sizeof(*ret));
  if (!dynqd__model_name_ok(name, strlen(name))) {
    snprintf(err, errlen, "invalid model name '%.64s': use 1-63 characters of "
             "[A-Za-z0-9_.-], not starting with '.'", name);
    return DYNQ_EPARAMS;
  }
  rc = confine(r, rel, ret->path, sizeof(ret->path), err, errlen);
  if (rc != 0) return rc;
  struct stat st;
  if (stat(ret->path, &st) != 0) {
    rc = -errno;
    snprintf(err, errlen, "%s: %s", ret->path, strerror(errno));
    return rc;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%s is not a regular file", ret->path);
    return DYNQ_EFORMAT;
  }
  char merr[512] = "";
  rc = dynq__model_open(ret->path, &ret->model, merr, sizeof(merr));
  if (rc != 0) {
    snprintf(err, errlen, "%s", merr[0] ? merr : dynq_strerror(rc));
    ret->model = NULL;
    return rc;
  }
  rc = warm(ret->model, err, errlen);
  if (rc == DYNQ_ESHAPE && has_symbolic_input(ret->model)) {
    /* Setting every symbolic dim to 1 is a guess some models cannot run
     * (Silero VAD's first Conv needs >= 256 samples).  The file passed
     * every load check; serve it unwarmed rather than refuse it. */
    log_warn("model '%s': warm-up with symbolic dimensions set to 1 failed (%s); "
             "serving it without warm-up", name, err);
    rc = 0;
  }
  if (rc != 0) {
    dynqd__prepared_clear(ret);
    return rc;
  }
  ret->f_dev = (uint64_t)st.st_dev;
  ret->f_ino = (uint64_t)st.st_ino;
  ret->f_size = (uint64_t)st.st_size;
  ret->f_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  return 0;
}

int dynqd__registry_commit(dynqd_registry_t *r, const char *name, const char *rel,
                           dynqd_prepared_t *p, int *ret_version, char *err,
                           size_t errlen) {
  char *nname = NULL, *nfile = NULL;
  int ins = 0;
  int idx = find_index(r, name, strlen(name), &ins);
  if (idx < 0 && r->n >= MAX_MODELS) {
    snprintf(err, errlen, "already serving %d models (the limit)", r->n);
    return DYNQ_ELIMIT;
  }
  nfile = strdup(rel);
  if (nfile == NULL) goto oom;
  if (idx < 0) {
    nname = strdup(name);
    if (nname == NULL) goto oom;
    dynqd_model_entry_t *nv = realloc(r->v, (size_t)(r->n + 1) * sizeof(*nv));
    if (nv == NULL) goto oom;
    r->v = nv;
    memmove(&r->v[ins + 1], &r->v[ins], (size_t)(r->n - ins) * sizeof(*nv));
    memset(&r->v[ins], 0, sizeof(*nv));
    r->n++;
    idx = ins;
    r->v[idx].name = nname;
    nname = NULL;
  }
  /* The swap: jobs that already hold the old model keep it alive. */
  dynqd_model_entry_t *e = &r->v[idx];
  dynq__model_unref(e->model);
  e->model = p->model;
  p->model = NULL;
  free(e->file);
  e->file = nfile;
  e->version++;
  e->f_dev = p->f_dev;
  e->f_ino = p->f_ino;
  e->f_size = p->f_size;
  e->f_mtime_ns = p->f_mtime_ns;
  if (ret_version) *ret_version = e->version;
  const dynq__graph_t *g = dynq__model_graph(e->model);
  log_info("loaded model '%s' version %d from %s (%zu bytes, %d nodes, %d inputs, "
           "%d outputs)", e->name, e->version, p->path, dynq__model_file_size(e->model),
           g->n_nodes, g->n_inputs, g->n_outputs);
  return 0;

oom:
  snprintf(err, errlen, "out of memory");
  free(nname);
  free(nfile);
  return -ENOMEM;
}

int dynqd__registry_publish(dynqd_registry_t *r, const char *name,
                            const char *rel, int *ret_version, char *err,
                            size_t errlen) {
  dynqd_prepared_t p;
  int rc = dynqd__registry_prepare(r, name, rel, &p, err, errlen);
  if (rc == 0) rc = dynqd__registry_commit(r, name, rel, &p, ret_version, err, errlen);
  dynqd__prepared_clear(&p);
  return rc;
}

int dynqd__registry_unload(dynqd_registry_t *r, const char *name) {
  int i = find_index(r, name, strlen(name), NULL);
  if (i < 0) return DYNQ_ENOMODEL;
  log_info("model '%s' version %d unloaded", r->v[i].name, r->v[i].version);
  entry_clear(&r->v[i]);
  memmove(&r->v[i], &r->v[i + 1], (size_t)(r->n - i - 1) * sizeof(r->v[0]));
  r->n--;
  return 0;
}

/* Model files directly in the directory: "<name>.dynq", name valid. */
static int model_file_name(const char *fn, size_t *ret_namelen) {
  size_t len = strlen(fn);
  if (fn[0] == '.' || len <= 5 || strcmp(fn + len - 5, ".dynq") != 0) return 0;
  *ret_namelen = len - 5;
  return 1;
}

int dynqd__registry_load(dynqd_registry_t *r, const char *dir) {
  memset(r, 0, sizeof(*r));
  if (dir == NULL) {
    log_warn("no model directory given (--models or models_dir): serving no models");
    return 0;
  }
  char real[PATH_MAX];
  if (realpath(dir, real) == NULL) {
    log_err("cannot open model directory %s: %s; serving no models", dir,
            strerror(errno));
    return 0;
  }
  r->dir = strdup(real);
  if (r->dir == NULL) {
    log_err("out of memory");
    return 0;
  }
  int n = 0;
  dynqd__registry_rescan(r, &n, NULL, NULL, NULL);
  return n;
}

void dynqd__registry_rescan(dynqd_registry_t *r, int *ret_loaded,
                            int *ret_reloaded, int *ret_unloaded,
                            int *ret_failed) {
  int loaded = 0, reloaded = 0, unloaded = 0, failed = 0;
  char *seen = NULL;
  DIR *d = NULL;
  if (r->dir == NULL) goto out;
  d = opendir(r->dir);
  if (d == NULL) {
    log_err("cannot open model directory %s: %s; models unchanged", r->dir,
            strerror(errno));
    failed++;
    goto out;
  }
  /* seen[i]: entry i still has its file; grows with the array. */
  int seen_cap = r->n + 16;
  seen = calloc((size_t)seen_cap, 1);
  if (seen == NULL) {
    log_err("out of memory rescanning %s; models unchanged", r->dir);
    failed++;
    goto out;
  }
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    const char *fn = de->d_name;
    size_t nl;
    if (!model_file_name(fn, &nl)) continue;
    if (!dynqd__model_name_ok(fn, nl)) {
      log_err("skipping model file %s/%s: model name must be 1-63 characters "
              "of [A-Za-z0-9_.-]", r->dir, fn);
      failed++;
      continue;
    }
    char name[64];
    memcpy(name, fn, nl);
    name[nl] = '\0';
    int idx = find_index(r, name, nl, NULL);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", r->dir, fn);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
      log_err("skipping model file %s: not a regular file", path);
      failed++;
      continue;
    }
    if (idx >= 0) {
      dynqd_model_entry_t *e = &r->v[idx];
      int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
      if (e->file && strcmp(e->file, fn) != 0) {
        /* Loaded by model.load from another file: the admin chose that. */
        seen[idx] = 1;
        continue;
      }
      if (e->f_dev == (uint64_t)st.st_dev && e->f_ino == (uint64_t)st.st_ino &&
          e->f_size == (uint64_t)st.st_size && e->f_mtime_ns == mt) {
        seen[idx] = 1;
        continue;
      }
    }
    int was_n = r->n;
    char err[512] = "";
    int ver = 0;
    int rc = dynqd__registry_publish(r, name, fn, &ver, err, sizeof(err));
    if (rc != 0) {
      log_err("%s model file %s: %s (%s)%s", idx >= 0 ? "cannot reload" : "skipping",
              path, err, dynq_err_name(rc),
              idx >= 0 ? "; the loaded version keeps serving" : "");
      failed++;
      if (idx >= 0) seen[idx] = 1;
      continue;
    }
    if (r->n != was_n) {  /* inserted: shift seen[] to match the array */
      if (r->n > seen_cap) {
        char *ns = realloc(seen, (size_t)r->n + 16);
        if (ns == NULL) {
          /* Worst case: a model is unloaded and reloaded on the next HUP. */
          log_err("out of memory rescanning %s", r->dir);
          break;
        }
        seen = ns;
        seen_cap = r->n + 16;
      }
      int ins = find_index(r, name, nl, NULL);
      memmove(seen + ins + 1, seen + ins, (size_t)(r->n - 1 - ins));
      seen[ins] = 1;
      loaded++;
    } else {
      seen[idx] = 1;
      reloaded++;
    }
  }
  /* Entries not matched above: gone, unless model.load gave them another
   * file (a subdirectory, another name) that still exists. */
  for (int i = r->n - 1; i >= 0; i--) {
    if (seen[i]) continue;
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", r->dir, r->v[i].file ? r->v[i].file : "");
    if (r->v[i].file && stat(path, &st) == 0) continue;
    log_notice("model file of '%s' is gone: unloading it", r->v[i].name);
    dynqd__registry_unload(r, r->v[i].name);
    unloaded++;
  }
out:
  if (d) closedir(d);
  free(seen);
  if (ret_loaded) *ret_loaded = loaded;
  if (ret_reloaded) *ret_reloaded = reloaded;
  if (ret_unloaded) *ret_unloaded = unloaded;
  if (ret_failed) *ret_failed = failed;
}
