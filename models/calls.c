/*
 * Recorded calls (calls.h): listing, reading and checking the .npz files,
 * and the state a stream carries from call to call.
 */
#include "calls.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "import.h"
#include "npz.h"

#define MAX_FILES 100000
#define MAX_BYTES ((size_t)1 << 30) /* all inputs of all calls together */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The calibration files, sorted by name.  Everything in DIR but hidden
 * entries must be a .npz regular file: a stray file is more likely a
 * mistake than something to skip silently. */
static int list_dir(dynq__calls_t *k, const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) {
    dynq__imp_errorf("%s %s: %s", k->what, dir, strerror(errno));
    return -1;
  }
  int cap = 0, rc = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    size_t nl = strlen(de->d_name);
    char *path = malloc(strlen(dir) + nl + 2);
    if (path == NULL) goto oom;
    sprintf(path, "%s/%s", dir, de->d_name);
    struct stat st;
    if (nl < 5 || strcmp(de->d_name + nl - 4, ".npz") != 0 || stat(path, &st) != 0 ||
        !S_ISREG(st.st_mode)) {
      dynq__imp_errorf("%s: %s is not an .npz file (a directory of calls holds only the "
                       "NNNNNN.npz files dynqctl infer/stream --record writes; move it out)",
                       k->what, path);
      free(path);
      rc = -1;
      goto out;
    }
    if (k->n_files == MAX_FILES) {
      free(path);
      dynq__imp_errorf("%s %s: more than %d files", k->what, dir, MAX_FILES);
      rc = -1;
      goto out;
    }
    if (k->n_files == cap) {
      cap = cap ? 2 * cap : 64;
      char **nf = realloc(k->files, (size_t)cap * sizeof(*nf));
      if (nf == NULL) {
        free(path);
        goto oom;
      }
      k->files = nf;
    }
    k->files[k->n_files++] = path;
  }
  if (k->n_files == 0) {
    dynq__imp_errorf("%s %s: the directory holds no .npz files (record some with "
                     "dynqctl infer --record %s or dynqctl stream --record %s)", k->what, dir, dir,
                     dir);
    rc = -1;
    goto out;
  }
  qsort(k->files, (size_t)k->n_files, sizeof(*k->files), cmp_str);
  goto out;
oom:
  dynq__imp_errorf("out of memory listing %s", dir);
  rc = -1;
out:
  closedir(d);
  return rc;
}

static void shape_str(char *buf, size_t cap, int rank, const int64_t *dims) {
  dynq__shape_str(buf, cap, rank, dims);
}

/* Read every file and check it against the model's inputs. */
int dynq__calls_load(dynq__calls_t *k, const dynq__graph_t *g) {
  k->n_state = g->n_state;
  k->st_in = calloc((size_t)g->n_state + 1, sizeof(int));
  k->st_out = calloc((size_t)g->n_state + 1, sizeof(int));
  if (k->st_in == NULL || k->st_out == NULL) {
    dynq__imp_errorf("out of memory");
    return -1;
  }
  for (int s = 0; s < g->n_state; s++) {
    for (int i = 0; i < g->n_inputs; i++)
      if (g->inputs[i] == g->state[2 * s]) k->st_in[s] = i;
    for (int j = 0; j < g->n_outputs; j++)
      if (g->outputs[j] == g->state[2 * s + 1]) k->st_out[s] = j;
  }
  k->n_in = g->n_inputs;
  k->in = calloc((size_t)k->n_files * (size_t)(k->n_in ? k->n_in : 1), sizeof(*k->in));
  if (k->in == NULL) {
    dynq__imp_errorf("out of memory");
    return -1;
  }
  size_t total = 0;
  int noted = 0;
  for (int f = 0; f < k->n_files; f++) {
    dynq__npz_t z;
    char err[512];
    if (dynq__npz_load(k->files[f], &z, err, sizeof(err)) != 0) {
      dynq__imp_errorf("%s: %s (calls are numpy .npz archives, one per call: write them "
                       "with dynqctl infer/stream --record)", k->what, err);
      return -1;
    }
    int rc = 0;
    for (int i = 0; i < g->n_inputs && rc == 0; i++) {
      const dynq__value_t *decl = &g->values[g->inputs[i]];
      const dynq_tensor_t *t = dynq__npz_find(&z, decl->name);
      int is_state = 0;
      for (int s = 0; s < k->n_state; s++) is_state |= k->st_in[s] == i;
      char a[128], b[128];
      shape_str(b, sizeof(b), decl->rank, decl->dims);
      if (t == NULL) {
        if (is_state) continue; /* carried from the previous call */
        dynq__imp_errorf("%s: %s has no array '%s' (the model's input '%s', %s %s): "
                         "every call needs all inputs but the declared state",
                         k->what, k->files[f], decl->name, decl->name,
                         dynq__dtype_name(decl->dtype), b);
        rc = -1;
        break;
      }
      shape_str(a, sizeof(a), t->rank, t->shape);
      if (t->dtype != (int)decl->dtype) {
        dynq__imp_errorf("%s: %s: array '%s' is %s, the model's input is %s",
                         k->what, k->files[f], decl->name, dynq__dtype_name((dynq_dtype_t)t->dtype),
                         dynq__dtype_name(decl->dtype));
        rc = -1;
        break;
      }
      int ok = t->rank == decl->rank;
      for (int d = 0; ok && d < t->rank; d++)
        ok = decl->dims[d] >= 0 ? t->shape[d] == decl->dims[d] : t->shape[d] >= 1;
      if (!ok) {
        dynq__imp_errorf("%s: %s: array '%s' has shape %s, the model's input expects "
                         "%s (-1 = any size >= 1)", k->what, k->files[f], decl->name, a, b);
        rc = -1;
        break;
      }
      total += t->nbytes;
      if (total > MAX_BYTES) {
        dynq__imp_errorf("%s %s: the inputs pass %zu bytes; use fewer calls", k->what,
                         k->src, MAX_BYTES);
        rc = -1;
        break;
      }
      dynq__tensor_t *dst = &k->in[(size_t)f * (size_t)k->n_in + (size_t)i];
      if (dynq__tensor_alloc_uninit(dst, decl->dtype, t->rank, t->shape) != 0) {
        dynq__imp_errorf("out of memory");
        rc = -1;
        break;
      }
      if (t->nbytes) memcpy(dst->data, t->data, t->nbytes);
    }
    for (int j = 0; rc == 0 && j < z.n && !noted; j++) {
      int found = 0;
      for (int i = 0; i < g->n_inputs; i++) found |= strcmp(g->values[g->inputs[i]].name, z.t[j].name) == 0;
      if (!found) {
        fprintf(stderr, "%s: %s: note: %s: array '%s' is not an input of the model (fixed by "
                "--set?); ignored\n", dynq__imp_progname, k->what, k->files[f], z.t[j].name);
        noted = 1;
      }
    }
    dynq__npz_free(&z);
    if (rc != 0) return -1;
  }
  return 0;
}

int dynq__calls_list(dynq__calls_t *k, const char *what, const char *src) {
  memset(k, 0, sizeof(*k));
  k->what = what;
  k->src = src;
  struct stat st;
  if (stat(src, &st) == 0 && S_ISREG(st.st_mode)) {
    k->files = malloc(sizeof(*k->files));
    if (k->files == NULL || (k->files[0] = strdup(src)) == NULL) {
      dynq__imp_errorf("out of memory");
      return -1;
    }
    k->n_files = 1;
    return 0;
  }
  return list_dir(k, src);
}

void dynq__calls_free(dynq__calls_t *k) {
  for (int i = 0; i < k->n_files; i++) free(k->files[i]);
  free(k->files);
  if (k->in != NULL)
    for (size_t i = 0; i < (size_t)k->n_files * (size_t)k->n_in; i++) dynq__tensor_clear(&k->in[i]);
  free(k->in);
  free(k->st_in);
  free(k->st_out);
  memset(k, 0, sizeof(*k));
}

int dynq__calls_inputs(const dynq__calls_t *k, const dynq__graph_t *g, int f,
                       dynq__tensor_t *state, dynq__tensor_t *ins) {
  const dynq__tensor_t *row = &k->in[(size_t)f * (size_t)k->n_in];
  int64_t batch = 1;
  for (int i = 0; i < k->n_in; i++)
    if (row[i].dtype != DYNQ_DT_INVALID && row[i].rank >= 1) {
      batch = row[i].dims[0];
      break;
    }
  for (int i = 0; i < k->n_in; i++) {
    ins[i] = row[i];
    ins[i].owned = 0;
  }
  for (int s = 0; s < k->n_state; s++) {
    const dynq__value_t *v = &g->values[g->inputs[k->st_in[s]]];
    if (row[k->st_in[s]].dtype != DYNQ_DT_INVALID) continue; /* the file gives it */
    if (state[s].dtype == DYNQ_DT_INVALID) {
      /* a session's first call: zeros, symbolic dims = the batch */
      int64_t dims[DYNQ_MAX_RANK];
      for (int d = 0; d < v->rank; d++) dims[d] = v->dims[d] < 0 ? batch : v->dims[d];
      if (dynq__tensor_alloc(&state[s], v->dtype, v->rank, dims) != 0) {
        dynq__imp_errorf("out of memory");
        return -1;
      }
    }
    ins[k->st_in[s]] = state[s];
    ins[k->st_in[s]].owned = 0;
  }
  return 0;
}

void dynq__calls_carry(const dynq__calls_t *k, dynq__tensor_t *state, dynq__tensor_t *outs) {
  for (int s = 0; s < k->n_state; s++) {
    dynq__tensor_clear(&state[s]);
    state[s] = outs[k->st_out[s]];
    memset(&outs[k->st_out[s]], 0, sizeof(outs[0]));
  }
}
