/*
 * The model registry: the models dynqd serves, by name, with a version per
 * name and the identity (dev, inode, size, mtime) of the file each was
 * loaded from.  The array changes only on the loop thread (commit, unload,
 * scan), so it needs no lock; workers never look at it.  A request holds
 * a model reference, or one of its version's plan (the batching decided
 * once per version; its batch axes are all a worker reads of it).
 *
 * Publishing a model is: confine the path to the model directory, open and
 * validate it, warm it (one run on zero inputs, within the warm-up
 * bounds), and only then swap it in.  The first steps (prepare) run on any
 * thread (loader.c runs them on the thread pool); a failure at any step
 * leaves the registry as it was.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dynq/errors.h"
#include "dynqd.h"

#define MAX_MODELS 4096  /* bounds the array an admin can grow */

/* SIGBUS from a model's mapping (its file was cut short under us): the
 * library maps zero pages over it and marks the model broken, so the
 * faulting run finishes and is refused, the other models keep serving and
 * a reload brings a fresh mapping.  Any other SIGBUS is a real bug: the
 * default action runs (the fault repeats once the handler is gone). */
static void on_sigbus(int sig, siginfo_t *si, void *uctx) {
  (void)uctx;
  if (si != NULL && dynq__model_fault(si->si_addr)) return;
  signal(sig, SIG_DFL);
}

int dynqd__registry_guard_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  return sigaction(SIGBUS, &sa, NULL) == 0 ? 0 : -errno;
}

void dynqd__registry_check_broken(dynq__model_t *m, const char *name) {
  if (m != NULL && dynq__model_broken_report(m))
    log_err("model '%s': its file %s was truncated or rewritten in place while "
            "loaded; answering EFORMAT for it until it is reloaded (SIGHUP or "
            "model.reload); other models are not affected", name ? name : "?",
            dynq__model_path(m));
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

void dynqd__plan_free(dynqd_plan_t *p) {
  dynq__model_unref(p->model);
  free(p->axes_err);
  dynq__aligned_free(p->axes);
  free(p);
}

dynqd_plan_t *dynqd__registry_plan_make(dynqd_registry_t *r, const dynqd_model_entry_t *e,
                                        const dynqd_config_t *cfg) {
  dynqd_model_entry_t *me = &r->v[e - r->v];  /* ours to change */
  dynqd_plan_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  p->refs = 1;
  p->model = dynq__model_ref(me->model);
  dynqd__batch_config(cfg, me->name, &p->batch_max, &p->batch_delay_us);
  dynq__model_stats_t st;
  dynq__model_get_stats(me->model, &st);
  p->per_tensor = st.per_tensor;
  /* Axes only matter to a model that may batch or coalesce. */
  if ((p->batch_max > 1 || cfg->coalesce_max > 1) && !p->per_tensor) {
    const dynq__model_sig_t *g = dynq__model_signature(me->model);
    size_t na = (size_t)(g->n_inputs + g->n_outputs > 0 ? g->n_inputs + g->n_outputs : 1);
    char err[256] = "";
    /* A whole number of lines: nothing the loop writes shares them. */
    p->axes = dynq__aligned_alloc((na + DYNQ_ALIGN - 1) & ~(size_t)(DYNQ_ALIGN - 1));
    if (p->axes == NULL) goto oom;
    p->axes_rc = dynqd__batch_axes(g, dynqd__batch_rule(cfg, me->name), NULL, p->axes, err,
                                   sizeof(err));
    if (p->axes_rc != 0 && (p->axes_err = strdup(err)) == NULL) goto oom;
    if (p->axes_rc == 0 && !dynqd__rows_allow(&me->rows, p->axes, g->n_inputs, g->n_outputs)) {
      dynq__aligned_free(p->axes);  /* measured unsafe to merge: never batched */
      p->axes = NULL;
    }
  }
  me->plan = p;
  return p;
oom:
  dynqd__plan_free(p);
  return NULL;
}

static void entry_clear(dynqd_model_entry_t *e) {
  free(e->name);
  free(e->file);
  dynqd__plan_unref(e->plan);
  dynq__model_unref(e->model);
  dynqd__rows_clear(&e->rows);
  memset(e, 0, sizeof(*e));
}

void dynqd__registry_free(dynqd_registry_t *r) {
  if (r == NULL) return;
  for (int i = 0; i < r->n; i++) entry_clear(&r->v[i]);
  free(r->v);
  free(r->dir);
  uint64_t gen = r->gen;
  memset(r, 0, sizeof(*r));
  r->gen = gen + 1;  /* nothing kept from before is valid */
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

/* The warm-up shape of every input into ranks[i], dims[i]: the config's
 * `[batch.NAME] warmup` entry when it names the input, else every
 * symbolic dim 1 and an input of unknown rank a scalar.  0, or
 * DYNQ_EPARAMS naming the config key when an entry does not fit the
 * model (a name that is no input, a rank or a fixed dim it contradicts):
 * a warm-up the operator asked for is never silently skipped. */
static int warm_shapes(const char *name, const dynqd_batch_rule_t *rule,
                       const dynq__model_sig_t *sig, int64_t sym, int *ranks,
                       int64_t (*dims)[DYNQ_MAX_RANK], char *err, size_t errlen) {
  for (int k = 0; rule != NULL && k < rule->n_warm; k++) {
    int hit = 0;
    for (int i = 0; i < sig->n_inputs && !hit; i++)
      hit = strcmp(sig->inputs[i].name, rule->warm_names[k]) == 0;
    if (!hit) {
      snprintf(err, errlen, "[batch.%s] warmup names '%s', which is not an input of the "
               "model (model.info lists its inputs)", name, rule->warm_names[k]);
      return DYNQ_EPARAMS;
    }
  }
  for (int i = 0; i < sig->n_inputs; i++) {
    const dynq__io_t *v = &sig->inputs[i];
    int k = -1;
    for (int q = 0; rule != NULL && q < rule->n_warm && k < 0; q++)
      if (strcmp(rule->warm_names[q], v->name) == 0) k = q;
    if (k < 0) {
      ranks[i] = v->rank < 0 ? 0 : v->rank;
      for (int d = 0; d < ranks[i]; d++) dims[i][d] = v->dims[d] < 0 ? sym : v->dims[d];
      continue;
    }
    if (v->rank >= 0 && rule->warm_rank[k] != v->rank) {
      snprintf(err, errlen, "[batch.%s] warmup gives '%s' %d dimension%s, but the model "
               "declares %d", name, v->name, rule->warm_rank[k],
               rule->warm_rank[k] == 1 ? "" : "s", v->rank);
      return DYNQ_EPARAMS;
    }
    ranks[i] = rule->warm_rank[k];
    for (int d = 0; d < ranks[i]; d++) {
      if (v->rank >= 0 && v->dims[d] >= 0 && rule->warm_dims[k][d] != v->dims[d]) {
        snprintf(err, errlen, "[batch.%s] warmup gives '%s' dimension %d = %lld, but the "
                 "model fixes it at %lld", name, v->name, d,
                 (long long)rule->warm_dims[k][d], (long long)v->dims[d]);
        return DYNQ_EPARAMS;
      }
      dims[i][d] = rule->warm_dims[k][d];
    }
  }
  return 0;
}

/* Warm-up inputs within the bounds?  A model whose fixed input shape
 * holds more than max_tensor_elems could never be sent a request: it is
 * refused (ELIMIT).  One within that but whose warm-up inputs would take
 * more than warm_max_bytes is served unwarmed (returns 1 after logging):
 * a valid file must not make dynqd allocate gigabytes to warm it. */
static int warm_bounds(const dynqd_registry_t *r, const char *name,
                       const dynq__model_sig_t *sig, const int *ranks,
                       int64_t (*dims)[DYNQ_MAX_RANK], int quiet, char *err, size_t errlen) {
  uint64_t bytes = 0;
  for (int i = 0; i < sig->n_inputs; i++) {
    const dynq__io_t *v = &sig->inputs[i];
    int64_t n = 1;
    for (int d = 0; d < ranks[i]; d++) {
      int64_t dim = dims[i][d];
      if (dim != 0 && n > INT64_MAX / dim) n = INT64_MAX;
      else n *= dim;
    }
    if (r->warm_max_elems > 0 && n > r->warm_max_elems) {
      snprintf(err, errlen, "input '%s' declares %lld elements, more than max_tensor_elems "
               "(%lld): no request could ever be sent to it", v->name, (long long)n,
               (long long)r->warm_max_elems);
      return DYNQ_ELIMIT;
    }
    size_t es = dynq__dtype_size(v->dtype);
    uint64_t b = (uint64_t)n * (es ? es : 1);
    bytes = bytes > UINT64_MAX - b ? UINT64_MAX : bytes + b;
  }
  if (r->warm_max_bytes > 0 && bytes > r->warm_max_bytes) {
    if (quiet) return 1;
    log_warn("model '%s': its warm-up inputs would take %llu bytes, more than "
             "warmup_max_bytes (%llu); serving it without warm-up", name,
             (unsigned long long)bytes, (unsigned long long)r->warm_max_bytes);
    return 1;
  }
  return 0;
}

/* The config's max_run_ms (0: no limit). */
static int64_t max_run_ms(const dynqd_registry_t *r) {
  return r->cfg != NULL ? r->cfg->max_run_ms : 0;
}

/* One run on zeros of the warm-up shapes: proves the model executes and
 * touches its pages before it takes traffic. */
static int warm(const dynq__model_t *m, const int *ranks, int64_t (*dims)[DYNQ_MAX_RANK],
                int64_t max_value_bytes, int64_t max_run_ms, char *err, size_t errlen) {
  const dynq__model_sig_t *sig = dynq__model_signature(m);
  int rc = 0;
  int ni = sig->n_inputs, no = sig->n_outputs;
  dynq__tensor_t *in = calloc((size_t)(ni > 0 ? ni : 1), sizeof(*in));
  dynq__tensor_t *out = calloc((size_t)(no > 0 ? no : 1), sizeof(*out));
  if (in == NULL || out == NULL) {
    rc = -ENOMEM;
    snprintf(err, errlen, "out of memory warming the model");
    goto fail;
  }
  for (int i = 0; i < ni; i++) {
    rc = dynq__tensor_alloc(&in[i], sig->inputs[i].dtype, ranks[i], dims[i]);
    if (rc != 0) {
      snprintf(err, errlen, "cannot allocate warm-up input '%s': %s", sig->inputs[i].name,
               dynq_strerror(rc));
      goto fail;
    }
  }
  /* stopped like a request after max_run_ms: a model whose loop never
   * ends must not hold a loader thread for ever */
  dynq__run_stop_t stop = {0};
  dynq__run_stop_cap(&stop, max_run_ms);
  dynq__run_opts_t opts = {.precision = DYNQ_PRECISION_INT8, .threads = 1,
                           .max_value_bytes = max_value_bytes,
                           .stop = max_run_ms > 0 ? &stop : NULL};
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

static int has_symbolic_input(const dynq__model_sig_t *sig) {
  for (int i = 0; i < sig->n_inputs; i++)
    for (int d = 0; d < sig->inputs[i].rank; d++)
      if (sig->inputs[i].dims[d] < 0) return 1;
  return 0;
}

/* Prepare's warm-up: the shapes, the bounds, the run.  0 (warmed, with
 * *warmed set and the shapes that ran in ranks, dims; or served cold
 * after a logged warning), else an error that refuses the model. */
static int warm_up(const dynqd_registry_t *r, const char *name, const dynq__model_t *m,
                   int *ranks, int64_t (*dims)[DYNQ_MAX_RANK], int *warmed, char *err,
                   size_t errlen) {
  const dynq__model_sig_t *sig = dynq__model_signature(m);
  const dynqd_batch_rule_t *rule = r->cfg != NULL ? dynqd__batch_rule(r->cfg, name) : NULL;
  int configured = rule != NULL && rule->n_warm > 0;
  int rc = warm_shapes(name, rule, sig, 1, ranks, dims, err, errlen);
  *warmed = 0;
  if (rc == 0) rc = warm_bounds(r, name, sig, ranks, dims, 0, err, errlen);
  if (rc == 0) {
    rc = warm(m, ranks, dims, r->max_value_bytes, max_run_ms(r), err, errlen);
    *warmed = rc == 0;
  } else if (rc == 1) {
    rc = 0;  /* not warmed (logged) */
  }
  if (rc == DYNQ_ESHAPE && !configured && has_symbolic_input(sig)) {
    /* Every symbolic dim 1 is a guess some models cannot run (Silero
     * VAD's first Conv needs >= 256 samples; a Reshape into rows of 4):
     * larger ones, while the inputs stay within warmup_max_bytes.  A
     * model none of them runs passed every load check: it is served
     * unwarmed rather than refused. */
    static const int64_t syms[] = {16, 256, 1024};
    char first[512];
    snprintf(first, sizeof(first), "%s", err);
    for (size_t t = 0; t < sizeof(syms) / sizeof(syms[0]) && rc == DYNQ_ESHAPE; t++) {
      char e2[512];
      if (warm_shapes(name, rule, sig, syms[t], ranks, dims, e2, sizeof(e2)) != 0 ||
          warm_bounds(r, name, sig, ranks, dims, 1, e2, sizeof(e2)) != 0)
        break;
      rc = warm(m, ranks, dims, r->max_value_bytes, max_run_ms(r), e2, sizeof(e2));
      *warmed = rc == 0;
      if (rc == 0)
        log_info("model '%s': warmed with symbolic dimensions set to %lld (at 1: %s)", name,
                 (long long)syms[t], first);
    }
    if (rc != 0) {
      log_warn("model '%s': warm-up with symbolic dimensions set to 1 failed (%s), and at 16, "
               "256 and 1024 (within warmup_max_bytes); serving it without warm-up (give its "
               "input shapes in the config: [batch.%s] warmup = NAME:DIMS,...)", name, first,
               name);
      rc = 0;
    }
  } else if (rc != 0 && configured && rc != DYNQ_EPARAMS) {
    char why[512];
    snprintf(why, sizeof(why), "%s", err);
    snprintf(err, errlen, "%s (shapes from [batch.%s] warmup = %s)", why, name,
             rule->warmup_text);
  }
  return rc;
}

/* Prepare's row check (rowcheck.c), for a model that may be merged: on
 * the warm-up shapes, along a plain request's batch axes.  A config
 * whose axes do not fit the model is left to the requests, which are
 * answered with its error. */
static int check_rows(const dynqd_registry_t *r, const char *name, const dynq__model_t *m,
                      const int *ranks, int64_t (*dims)[DYNQ_MAX_RANK], int warmed,
                      dynqd_rows_t *ret) {
  const dynq__model_sig_t *sig = dynq__model_signature(m);
  int batch_max = 0, delay = 0;
  if (r->cfg == NULL) return 0;
  dynqd__batch_config(r->cfg, name, &batch_max, &delay);
  dynq__model_stats_t st;
  dynq__model_get_stats(m, &st);
  if ((batch_max <= 1 && r->cfg->coalesce_max <= 1) || st.per_tensor) return 0;
  if (!warmed) {
    log_info("model '%s': requests are not merged: the row check needs a warm-up run", name);
    return 0;
  }
  int na = sig->n_inputs + sig->n_outputs;
  int8_t *axes = malloc((size_t)(na > 0 ? na : 1));
  if (axes == NULL) return -ENOMEM;
  char err[256];
  int rc = 0;
  if (dynqd__batch_axes(sig, dynqd__batch_rule(r->cfg, name), NULL, axes, err,
                        sizeof(err)) == 0) {
    rc = dynqd__rows_check(m, ranks, dims, axes, r->max_value_bytes, max_run_ms(r), ret);
    if (rc == 0 && !ret->ok)
      log_info("model '%s': requests are not merged (batching, coalescing): %s", name,
               ret->why);
  }
  free(axes);
  return rc;
}

void dynqd__prepared_clear(dynqd_prepared_t *p) {
  if (p == NULL) return;
  dynq__model_unref(p->model);
  dynqd__rows_clear(&p->rows);
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
  const dynq__model_sig_t *sig = dynq__model_signature(ret->model);
  int n = sig->n_inputs > 0 ? sig->n_inputs : 1, warmed = 0;
  int *ranks = calloc((size_t)n, sizeof(*ranks));
  int64_t(*dims)[DYNQ_MAX_RANK] = calloc((size_t)n, sizeof(*dims));
  rc = ranks != NULL && dims != NULL ? 0 : -ENOMEM;
  if (rc == 0) rc = warm_up(r, name, ret->model, ranks, dims, &warmed, err, errlen);
  if (rc == 0) rc = check_rows(r, name, ret->model, ranks, dims, warmed, &ret->rows);
  if (rc == -ENOMEM) snprintf(err, errlen, "out of memory warming the model");
  free(ranks);
  free(dims);
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
  r->gen++;
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
  dynqd__plan_unref(e->plan);  /* the old version's: its requests hold it */
  e->plan = NULL;
  dynq__model_unref(e->model);
  e->model = p->model;
  p->model = NULL;
  dynqd__rows_clear(&e->rows);
  e->rows = p->rows;
  memset(&p->rows, 0, sizeof(p->rows));
  free(e->file);
  e->file = nfile;
  e->version++;
  e->f_dev = p->f_dev;
  e->f_ino = p->f_ino;
  e->f_size = p->f_size;
  e->f_mtime_ns = p->f_mtime_ns;
  if (ret_version) *ret_version = e->version;
  const dynq__model_sig_t *sig = dynq__model_signature(e->model);
  dynq__model_stats_t st;
  dynq__model_get_stats(e->model, &st);
  log_info("loaded model '%s' version %d from %s (%zu bytes, %d nodes, %d inputs, "
           "%d outputs)", e->name, e->version, p->path, dynq__model_file_size(e->model),
           st.n_nodes, sig->n_inputs, sig->n_outputs);
  return 0;

oom:
  snprintf(err, errlen, "out of memory");
  free(nname);
  free(nfile);
  return -ENOMEM;
}

int dynqd__registry_unload(dynqd_registry_t *r, const char *name) {
  int i = find_index(r, name, strlen(name), NULL);
  if (i < 0) return DYNQ_ENOMODEL;
  log_info("model '%s' version %d unloaded", r->v[i].name, r->v[i].version);
  r->gen++;
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

int dynqd__registry_init(dynqd_registry_t *r, const char *dir) {
  if (dir == NULL) {
    log_warn("no model directory given (--models or models_dir): serving no models");
    return 0;
  }
  char real[PATH_MAX];
  if (realpath(dir, real) == NULL) {
    int e = errno;
    log_err("cannot open model directory %s: %s; serving no models", dir, strerror(e));
    return -e;
  }
  r->dir = strdup(real);
  if (r->dir == NULL) {
    log_err("out of memory");
    return -ENOMEM;
  }
  return 0;
}

void dynqd__scan_free(dynqd_scan_t *sc) {
  free(sc->v);
  memset(sc, 0, sizeof(*sc));
}

static int scan_add(dynqd_scan_t *sc, int *cap, const char *name, const char *file,
                    int reload) {
  if (sc->n == *cap) {
    int ncap = *cap ? *cap * 2 : 16;
    dynqd_scan_item_t *nv = realloc(sc->v, (size_t)ncap * sizeof(*nv));
    if (nv == NULL) return -ENOMEM;
    sc->v = nv;
    *cap = ncap;
  }
  dynqd_scan_item_t *it = &sc->v[sc->n++];
  snprintf(it->name, sizeof(it->name), "%s", name);
  snprintf(it->file, sizeof(it->file), "%s", file);
  it->reload = reload;
  return 0;
}

void dynqd__registry_scan(dynqd_registry_t *r, dynqd_scan_t *ret) {
  memset(ret, 0, sizeof(*ret));
  int cap = 0;
  char *seen = NULL;
  DIR *d = NULL;
  if (r->dir == NULL) goto out;
  d = opendir(r->dir);
  if (d == NULL) {
    log_err("cannot open model directory %s: %s; models unchanged", r->dir,
            strerror(errno));
    ret->failed++;
    goto out;
  }
  /* seen[i]: entry i still has its file (the array does not change
   * during the scan: loads are only listed). */
  seen = calloc((size_t)r->n + 1, 1);
  if (seen == NULL) {
    log_err("out of memory rescanning %s; models unchanged", r->dir);
    ret->failed++;
    goto out;
  }
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    const char *fn = de->d_name;
    size_t nl;
    if (!model_file_name(fn, &nl)) continue;
    if (!dynqd__model_name_ok(fn, nl) || strlen(fn) >= sizeof(ret->v[0].file)) {
      log_err("skipping model file %s/%s: model name must be 1-63 characters "
              "of [A-Za-z0-9_.-]", r->dir, fn);
      ret->failed++;
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
      ret->failed++;
      continue;
    }
    if (idx >= 0) {
      dynqd_model_entry_t *e = &r->v[idx];
      int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
      seen[idx] = 1;  /* a failed reload keeps the loaded version */
      if (e->file && strcmp(e->file, fn) != 0) continue;  /* model.load chose another file */
      if (e->f_dev == (uint64_t)st.st_dev && e->f_ino == (uint64_t)st.st_ino &&
          e->f_size == (uint64_t)st.st_size && e->f_mtime_ns == mt &&
          !dynq__model_broken(e->model))
        continue;  /* unchanged (and not broken by a change in place) */
    }
    if (scan_add(ret, &cap, name, fn, idx >= 0) != 0) {
      log_err("out of memory rescanning %s", r->dir);
      ret->failed++;
      break;
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
    ret->unloaded++;
  }
out:
  if (d) closedir(d);
  free(seen);
}
