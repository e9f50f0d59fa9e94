/*
 * dynqctl's accuracy tools (ctl-acc.h): the call recorder and the
 * INT8-vs-FP32 metrics.
 */
#include "ctl-acc.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "npz.h"

#define REC_MAX_INDEX 999999u

int dynq__rec_open(dynq__rec_t *r, const char *dir) {
  memset(r, 0, sizeof(*r));
  struct stat st;
  if (stat(dir, &st) != 0) {
    if (errno != ENOENT || mkdir(dir, 0755) != 0) {
      fprintf(stderr, "dynqctl: --record %s: %s (the parent directory must exist)\n", dir,
              strerror(errno));
      return -1;
    }
  } else if (!S_ISDIR(st.st_mode)) {
    fprintf(stderr, "dynqctl: --record %s: not a directory\n", dir);
    return -1;
  }
  DIR *d = opendir(dir);
  if (d == NULL) {
    fprintf(stderr, "dynqctl: --record %s: %s\n", dir, strerror(errno));
    return -1;
  }
  struct dirent *de;
  long next = 0;
  while ((de = readdir(d)) != NULL) {
    const char *s = de->d_name;
    size_t n = strlen(s);
    if (n != 10 || strcmp(s + 6, ".npz") != 0 || strspn(s, "0123456789") != 6) continue;
    long v = strtol(s, NULL, 10);
    if (v + 1 > next) next = v + 1;
  }
  closedir(d);
  r->dir = strdup(dir);
  if (r->dir == NULL) {
    fprintf(stderr, "dynqctl: out of memory\n");
    return -1;
  }
  r->next = (unsigned)next;
  return 0;
}

int dynq__rec_write(dynq__rec_t *r, const dynq_tensor_t *inputs, int n) {
  char path[4096 + 16], err[512];
  if (r->next > REC_MAX_INDEX) {
    fprintf(stderr, "dynqctl: --record %s: the directory is full (%06u.npz exists); record "
            "into a new one\n", r->dir, REC_MAX_INDEX);
    return -1;
  }
  snprintf(path, sizeof(path), "%s/%06u.npz", r->dir, r->next);
  if (dynq__npz_write(path, n, inputs, err, sizeof(err)) != 0) {
    fprintf(stderr, "dynqctl: --record: %s\n", err);
    return -1;
  }
  r->next++;
  return 0;
}

void dynq__rec_close(dynq__rec_t *r) {
  free(r->dir);
  r->dir = NULL;
}

void dynq__cmp_add(dynq__cmp_t *c, const float *x, const float *r, size_t n, size_t row,
                   double threshold) {
  if (row == 0) row = 1;
  for (size_t i = 0; i < n; i++) {
    double a = x[i], b = r[i];
    if (!isfinite(a) || !isfinite(b)) {
      c->nan = 1;
      continue;
    }
    double d = a - b;
    c->sum_d2 += d * d;
    c->sum_r2 += b * b;
    c->sum_x2 += a * a;
    c->dot += a * b;
    if (fabs(d) > c->max_abs) c->max_abs = fabs(d);
    if (row == 1 && (a >= threshold) != (b >= threshold)) c->thr_changed++;
  }
  c->n += n;
  if (row > 1) {
    for (size_t s = 0; s + row <= n; s += row) {
      size_t ia = s, ib = s;
      for (size_t i = s + 1; i < s + row; i++) {
        if (x[i] > x[ia]) ia = i;
        if (r[i] > r[ib]) ib = i;
      }
      c->argmax_changed += ia != ib;
      c->rows++;
    }
  } else {
    c->rows += n;
  }
}

double dynq__cmp_rel_l2(const dynq__cmp_t *c) {
  if (c->nan) return NAN;
  if (c->sum_d2 == 0) return 0;
  return c->sum_r2 > 0 ? sqrt(c->sum_d2 / c->sum_r2) : INFINITY;
}

double dynq__cmp_cosine(const dynq__cmp_t *c) {
  if (c->nan) return NAN;
  if (c->sum_x2 == 0 && c->sum_r2 == 0) return 1;
  if (c->sum_x2 == 0 || c->sum_r2 == 0) return 0;
  return c->dot / (sqrt(c->sum_x2) * sqrt(c->sum_r2));
}

static void num(FILE *f, double v, int json) {
  if (json && !isfinite(v)) fputs("null", f);
  else fprintf(f, json ? "%.9g" : "%.4g", v);
}

void dynq__cmp_print(FILE *f, const char *name, const dynq__cmp_t *c, int json) {
  int by_row = c->rows != c->n; /* rows of several values: arg-max */
  if (json) {
    fputs("{\"name\": \"", f);
    for (const char *p = name; *p; p++) {
      if (*p == '"' || *p == '\\') fputc('\\', f);
      if ((unsigned char)*p >= 0x20) fputc(*p, f);
    }
    fprintf(f, "\", \"elements\": %zu, \"rel_l2\": ", c->n);
    num(f, dynq__cmp_rel_l2(c), 1);
    fputs(", \"max_abs\": ", f);
    num(f, c->nan ? NAN : c->max_abs, 1);
    fputs(", \"cosine\": ", f);
    num(f, dynq__cmp_cosine(c), 1);
    if (by_row)
      fprintf(f, ", \"rows\": %zu, \"argmax_changed\": %zu}", c->rows, c->argmax_changed);
    else
      fprintf(f, ", \"threshold_changed\": %zu}", c->thr_changed);
    return;
  }
  fprintf(f, "%-20s relL2 ", name);
  num(f, dynq__cmp_rel_l2(c), 0);
  fputs("  max|d| ", f);
  num(f, c->nan ? NAN : c->max_abs, 0);
  fputs("  cosine ", f);
  fprintf(f, "%.6f", dynq__cmp_cosine(c));
  if (by_row)
    fprintf(f, "  arg-max changed %zu/%zu rows", c->argmax_changed, c->rows);
  else
    fprintf(f, "  threshold decisions changed %zu/%zu", c->thr_changed, c->n);
  if (c->nan) fputs("  (NaN/Inf seen)", f);
  fputc('\n', f);
}
