/*
 * Error-budget quantization (calibrate.h).  One conversion with every
 * quantizable layer INT8 (and its FP32 reference weights) gives a model
 * the executor can run with any per-node precision mix; the search runs
 * the calibration calls through it in-process, then the chosen layers are
 * kept FP32 in a second conversion whose written file is verified end to
 * end before it replaces `out`.
 *
 * Ownership: the calib_t owns every input tensor (aligned copies of the
 * files' arrays), the reference outputs, the layer table and the names.
 */
#include "calibrate.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "model.h"
#include "calls.h"
#include "npz.h"


void dynq__calib_acc_add(dynq__calib_acc_t *a, const float *x, const float *ref, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double d = (double)x[i] - (double)ref[i];
    if (isnan(d)) {
      a->nan = 1;
      continue;
    }
    if (fabs(d) > a->max_abs) a->max_abs = fabs(d);
    a->sum_d2 += d * d;
    a->sum_r2 += (double)ref[i] * (double)ref[i];
  }
}

double dynq__calib_acc_value(const dynq__calib_acc_t *a, int metric) {
  if (a->nan) return INFINITY;
  if (metric == DYNQ_CALIB_MAX_ABS) return a->max_abs;
  if (a->sum_d2 == 0) return 0;
  if (a->sum_r2 == 0) return INFINITY;
  return sqrt(a->sum_d2 / a->sum_r2);
}

typedef struct layer {
  char *name;             /* owned */
  char *op;               /* owned */
  char *fixed_why;        /* owned: why the first conversion kept it FP32, or NULL */
  int64_t k, n;
  size_t bytes;           /* FP32 weight bytes */
  int node;               /* its quantized node in the search model, -1 if none */
  int attention;          /* the pseudo-layer of every INT8 attention product (StridedMatMul) */
  double alone;           /* error with only this layer INT8 */
  double without;         /* error with every other layer INT8, this one FP32 */
  int kept;               /* selected to stay FP32 */
  int pruned;             /* selected, then found unnecessary */
} layer_t;

typedef struct calib {
  const dynq__calib_opts_t *co;
  dynq__calls_t c;          /* the calibration calls */
  int n_eval;
  int *ev_out;              /* owned [n_eval]: output positions compared */
  dynq__tensor_t *ref;      /* owned [n_files * n_eval]: the FP32 path's outputs */
  layer_t *L;               /* owned [nL] */
  int nL;
  long evaluations;
  int64_t *macs;            /* owned [n_nodes] or NULL: INT8 multiply-adds per node,
                               summed by run_all over the calls (the self-check) */
  dynq__layer_quant_t *lq;  /* owned [n_nodes] with macs: run_all's scratch */
  int keep_errors;          /* run_all's failures go to run_err, not stderr */
  int64_t run_cap_ms;       /* 0, or each run stops (ELIMIT) after this long */
  int64_t max_value_bytes;  /* 0, or the most bytes one computed value may take */
  char run_err[400];
} calib_t;

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: calibrate: ", dynq__imp_progname);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void collect_layers(void *ctx, const dynq__layer_report_t *R, int n) {
  calib_t *k = ctx;
  if (k->L != NULL) return;
  k->L = calloc((size_t)n + 1, sizeof(*k->L));
  if (k->L == NULL) return;
  k->nL = n;
  for (int i = 0; i < n; i++) {
    layer_t *l = &k->L[i];
    l->name = strdup(R[i].name ? R[i].name : "?");
    l->op = strdup(R[i].op ? R[i].op : "?");
    l->fixed_why = R[i].quantized ? NULL : strdup(R[i].why ? R[i].why : "not quantizable");
    l->k = R[i].k;
    l->n = R[i].n;
    l->bytes = R[i].fp32_bytes;
    l->node = -1;
  }
}

static void calib_free(calib_t *k) {
  if (k->ref != NULL)
    for (size_t i = 0; i < (size_t)k->c.n_files * (size_t)k->n_eval; i++)
      dynq__tensor_clear(&k->ref[i]);
  free(k->ref);
  dynq__calls_free(&k->c);
  free(k->ev_out);
  for (int i = 0; i < k->nL; i++) {
    free(k->L[i].name);
    free(k->L[i].op);
    free(k->L[i].fixed_why);
  }
  free(k->L);
  free(k->macs);
  free(k->lq);
}

/* A StridedMatMul or Attention node the search model runs INT8: attention's
 * products. */
static int is_int8_attention(const dynq__node_t *n) {
  return (n->op == DYNQ_OP_STRIDED_MATMUL || n->op == DYNQ_OP_ATTENTION) &&
         dynq__node_attr_i(n, "int8", 0) != 0;
}

/* Layer l's nodes in the precision mix: its one node, or for the
 * attention pseudo-layer every INT8 attention product. */
static void set_prec(const dynq__graph_t *g, unsigned char *prec, const layer_t *l, int p) {
  if (!l->attention) {
    prec[l->node] = (unsigned char)p;
    return;
  }
  for (int n = 0; n < g->n_nodes; n++)
    if (is_int8_attention(&g->nodes[n])) prec[n] = (unsigned char)p;
}

/* Attention's activation x activation products take part in the search
 * as one more layer, so they stay INT8 only when the budget allows it
 * (unless --int8-attention forces them).  0, or -1 out of memory. */
static int add_attention_layer(calib_t *k, const dynq__graph_t *g, const dynq__imp_options_t *imp) {
  int first = -1, count = 0;
  for (int n = 0; n < g->n_nodes; n++)
    if (is_int8_attention(&g->nodes[n])) {
      if (first < 0) first = n;
      count++;
    }
  if (count == 0 || imp->int8_attention) return 0;
  layer_t *L = realloc(k->L, sizeof(*L) * (size_t)(k->nL + 2));
  if (L == NULL) return -1;
  k->L = L;
  layer_t *l = &L[k->nL];
  memset(l, 0, sizeof(*l) * 2);
  char name[64];
  snprintf(name, sizeof(name), "(%d attention products)", count);
  l->name = strdup(name);
  l->op = strdup("StridedMatMul");
  if (l->name == NULL || l->op == NULL) {
    free(l->name);
    free(l->op);
    return -1;
  }
  l->k = l->n = -1;
  l->node = first;
  l->attention = 1;
  k->nL++;
  return 0;
}

/* Run every call in order (state carried) with precision mix `prec` (NULL:
 * everything at `precision`).  With store 1, the non-state outputs
 * become the reference; with 2 they are dropped (a pass that only counts
 * MACs); else *ret_err is the metric against it (the largest over the
 * compared outputs). */
static int run_all(calib_t *k, const dynq__model_t *m, int precision, const unsigned char *prec,
                   int store, double *ret_err) {
  const dynq__graph_t *g = dynq__model_graph(m);
  dynq__run_opts_t ro = { precision, NULL, 1, prec };
  dynq__run_result_t res = { 0 };
  dynq__run_stop_t stop;
  ro.max_value_bytes = k->max_value_bytes;
  if (k->run_cap_ms > 0) ro.stop = &stop;
  if (k->macs != NULL) {
    res.cap_quant = g->n_nodes;
    res.quant = k->lq;
    ro.result = &res;
  }
  dynq__tensor_t *state = calloc((size_t)k->c.n_state + 1, sizeof(*state));
  dynq__tensor_t *ins = calloc((size_t)k->c.n_in + 1, sizeof(*ins));
  dynq__tensor_t *outs = calloc((size_t)g->n_outputs + 1, sizeof(*outs));
  dynq__calib_acc_t *acc = calloc((size_t)k->n_eval + 1, sizeof(*acc));
  int rc = 0;
  char err[512];
  if (state == NULL || ins == NULL || outs == NULL || acc == NULL) {
    dynq__imp_errorf("out of memory");
    rc = -1;
    goto out;
  }
  k->evaluations++;
  for (int f = 0; f < k->c.n_files; f++) {
    if (dynq__calls_inputs(&k->c, g, f, state, ins) != 0) {
      rc = -1;
      goto out;
    }
    if (k->run_cap_ms > 0) {
      memset(&stop, 0, sizeof(stop));
      dynq__run_stop_cap(&stop, k->run_cap_ms);
    }
    if (dynq__model_run(m, &ro, ins, outs, err, sizeof(err)) != 0) {
      if (k->keep_errors)
        snprintf(k->run_err, sizeof(k->run_err), "%.40s: %.300s", k->c.files[f], err);
      else
        dynq__imp_errorf("--calibrate: %s: the model failed on this call: %s", k->c.files[f],
                         err);
      rc = -1;
      goto out;
    }
    dynq__calls_carry(&k->c, state, outs);
    for (int q = 0; k->macs != NULL && q < res.n_quant && q < res.cap_quant; q++)
      if (res.quant[q].node >= 0 && res.quant[q].node < g->n_nodes)
        k->macs[res.quant[q].node] += res.quant[q].macs;
    for (int j = 0; j < k->n_eval; j++) {
      dynq__tensor_t *o = &outs[k->ev_out[j]];
      dynq__tensor_t *r = &k->ref[(size_t)f * (size_t)k->n_eval + (size_t)j];
      if (store == 2) continue; /* only counting (the self-check's MACs) */
      if (store) {
        *r = *o;
        memset(o, 0, sizeof(*o));
        continue;
      }
      int64_t n = dynq__shape_numel(o->rank, o->dims);
      if (o->dtype != r->dtype || n != dynq__shape_numel(r->rank, r->dims)) {
        dynq__imp_errorf("internal error: output '%s' of %s changed shape between precisions",
                         g->values[g->outputs[k->ev_out[j]]].name, k->c.files[f]);
        rc = -1;
        goto out;
      }
      dynq__calib_acc_add(&acc[j], o->data, r->data, (size_t)n);
    }
    for (int j = 0; j < g->n_outputs; j++) dynq__tensor_clear(&outs[j]);
  }
  if (!store) {
    double e = 0;
    for (int j = 0; j < k->n_eval; j++) {
      double v = dynq__calib_acc_value(&acc[j], k->co->metric);
      if (!(v <= e)) e = v; /* NaN/inf propagate */
    }
    *ret_err = e;
  }
out:
  if (state != NULL)
    for (int s = 0; s < k->c.n_state; s++) dynq__tensor_clear(&state[s]);
  if (outs != NULL)
    for (int j = 0; j < g->n_outputs; j++) dynq__tensor_clear(&outs[j]);
  free(state);
  free(ins);
  free(outs);
  free(acc);
  return rc;
}

/* The outputs compared: float32 and not a state output (ev_out allocated
 * by the caller, [n_outputs]). */
static void eval_outputs(calib_t *k, const dynq__graph_t *g) {
  for (int j = 0; j < g->n_outputs; j++) {
    int is_state = 0;
    for (int s = 0; s < g->n_state; s++) is_state |= k->c.st_out[s] == j;
    if (!is_state && g->values[g->outputs[j]].dtype == DYNQ_DT_F32) k->ev_out[k->n_eval++] = j;
  }
}

/* Each quantized layer's node in g (by name); order[] gets their layer
 * indices.  Returns how many. */
static int map_layers(calib_t *k, const dynq__graph_t *g, int *order) {
  int nq = 0;
  for (int i = 0; i < k->nL; i++) {
    if (k->L[i].fixed_why != NULL) continue;
    for (int n = 0; n < g->n_nodes; n++) {
      int op = g->nodes[n].op;
      if ((op == DYNQ_OP_QLINEAR || op == DYNQ_OP_QCONV || op == DYNQ_OP_QLSTM ||
           op == DYNQ_OP_QGRU || op == DYNQ_OP_QRNN || op == DYNQ_OP_QCONV_TRANSPOSE) && g->nodes[n].name != NULL &&
          strcmp(g->nodes[n].name, k->L[i].name) == 0)
        k->L[i].node = n;
    }
    if (k->L[i].node >= 0) order[nq++] = i;
  }
  return nq;
}

static const char *metric_name(int m) { return m == DYNQ_CALIB_MAX_ABS ? "max-abs" : "relL2"; }

/* Convert with the layers marked kept as FP32 into path (quiet). */
static int convert_kept(calib_t *k, const dynq__imp_options_t *imp, const uint8_t *buf,
                        size_t len, const char *in, const char *path, int quiet) {
  const char **names = calloc((size_t)k->nL + 1, sizeof(*names));
  if (names == NULL) {
    dynq__imp_errorf("out of memory");
    return -1;
  }
  int n = 0, attention_fp32 = 0;
  for (int i = 0; i < k->nL; i++)
    if (k->L[i].kept && k->L[i].attention) attention_fp32 = 1;
    else if (k->L[i].kept) names[n++] = k->L[i].name;
  dynq__imp_options_t o = *imp;
  o.fp32_attention |= attention_fp32;
  o.keep_exact = names;
  o.n_keep_exact = n;
  o.keep_exact_why = "error budget (calibrated)";
  o.no_auto_fp32 = 1; /* the search decided; the hand rule does not add to it */
  o.quiet = quiet;
  o.on_layers = NULL;
  int r = dynq__imp_convert_buffer(&o, buf, len, in, path);
  free(names);
  return r == 0 ? 0 : -1;
}

static const layer_t *sort_base;
static int cmp_layer(const void *a, const void *b) {
  const layer_t *x = &sort_base[*(const int *)a], *y = &sort_base[*(const int *)b];
  /* most harmful alone first; then the one whose FP32 helps most */
  if (x->alone != y->alone) return x->alone > y->alone || isnan(x->alone) ? -1 : 1;
  if (x->without != y->without) return x->without < y->without ? -1 : 1;
  return *(const int *)a - *(const int *)b;
}

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
    else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
    else fputc(*p, f);
  }
  fputc('"', f);
}

static void json_num(FILE *f, double v) {
  if (isfinite(v)) fprintf(f, "%.9g", v);
  else fputs("null", f);
}

static const char *layer_why(const calib_t *k, const layer_t *l, char *buf, size_t cap) {
  if (l->node < 0) return l->fixed_why ? l->fixed_why : "not quantizable";
  if (l->kept) {
    snprintf(buf, cap, "kept FP32: needed to meet the budget (alone %.3g)", l->alone);
    return buf;
  }
  if (l->pruned) return "quantized: tried FP32, the budget holds without it";
  return "quantized: within the budget";
}

static void report(const calib_t *k, double e_all, double e_final, int met, double secs) {
  const dynq__calib_opts_t *co = k->co;
  int nk = 0, nq = 0;
  char why[160];
  for (int i = 0; i < k->nL; i++) {
    nk += k->L[i].node >= 0 && k->L[i].kept;
    nq += k->L[i].node >= 0 && !k->L[i].kept;
  }
  if (co->json) {
    printf("{\"metric\": \"%s\", \"budget\": ", metric_name(co->metric));
    json_num(stdout, co->budget);
    printf(", \"calls\": %d, \"state_pairs\": %d, \"layers\": [", k->c.n_files, k->c.n_state);
    for (int i = 0; i < k->nL; i++) {
      const layer_t *l = &k->L[i];
      printf("%s{\"name\": ", i ? ", " : "");
      json_str(stdout, l->name);
      printf(", \"op\": ");
      json_str(stdout, l->op);
      printf(", \"k\": %" PRId64 ", \"n\": %" PRId64 ", \"weight_bytes\": %zu, \"error_alone\": ",
             l->k, l->n, l->bytes);
      if (l->node >= 0) json_num(stdout, l->alone);
      else fputs("null", stdout);
      printf(", \"error_without\": ");
      if (l->node >= 0) json_num(stdout, l->without);
      else fputs("null", stdout);
      printf(", \"mode\": \"%s\", \"why\": ", l->node >= 0 && !l->kept ? "int8" : "fp32");
      json_str(stdout, layer_why(k, l, why, sizeof(why)));
      printf("}");
    }
    printf("], \"error_all_int8\": ");
    json_num(stdout, e_all);
    printf(", \"error\": ");
    json_num(stdout, e_final);
    printf(", \"met\": %s, \"kept_fp32\": %d, \"quantized\": %d, \"evaluations\": %ld, "
           "\"seconds\": %.3f}\n", met ? "true" : "false", nk, nq, k->evaluations, secs);
    return;
  }
  printf("calibration: %d call%s from %s%s, metric %s, budget %g\n", k->c.n_files,
         k->c.n_files == 1 ? "" : "s", co->dir, k->c.n_state ? " (a stream: state carried)" : "",
         metric_name(co->metric), co->budget);
  int w = 24;
  for (int i = 0; i < k->nL; i++)
    if ((int)strlen(k->L[i].name) > w) w = (int)strlen(k->L[i].name);
  printf("%-*s %-7s %15s %12s %11s %11s  %-4s  %s\n", w, "layer", "op", "K x N", "fp32 bytes",
         "err alone", "err w/o", "mode", "why");
  for (int i = 0; i < k->nL; i++) {
    const layer_t *l = &k->L[i];
    char kn[48], ea[24], ew[24];
    if (l->k >= 0) snprintf(kn, sizeof(kn), "%" PRId64 " x %" PRId64, l->k, l->n);
    else snprintf(kn, sizeof(kn), "?");
    if (l->node >= 0) {
      snprintf(ea, sizeof(ea), "%.4g", l->alone);
      snprintf(ew, sizeof(ew), "%.4g", l->without);
    } else {
      snprintf(ea, sizeof(ea), "-");
      snprintf(ew, sizeof(ew), "-");
    }
    printf("%-*s %-7s %15s %12zu %11s %11s  %-4s  %s\n", w, l->name, l->op, kn, l->bytes, ea, ew,
           l->node >= 0 && !l->kept ? "int8" : "fp32", layer_why(k, l, why, sizeof(why)));
  }
  printf("all layers INT8: %s %.4g; written model (INT8 path vs FP32 path): %.4g %s %g%s; "
         "%d layer%s kept FP32, %d quantized (%ld passes over the calls, %.1f s)\n",
         metric_name(co->metric), e_all, e_final, met ? "<=" : ">", co->budget,
         met ? " (budget met)" : " (budget MISSED)", nk, nk == 1 ? "" : "s", nq, k->evaluations,
         secs);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int dynq__calibrate(const dynq__imp_options_t *imp, const dynq__calib_opts_t *co,
                    const uint8_t *buf, size_t len, const char *in, const char *out) {
  calib_t k;
  memset(&k, 0, sizeof(k));
  k.co = co;
  int ret = 1;
  double t0 = now_s();
  dynq__model_t *m = NULL, *fm = NULL;
  unsigned char *prec = NULL;
  int *order = NULL;
  char search_path[4096], cand_path[4096], err[512];
  if ((size_t)snprintf(search_path, sizeof(search_path), "%s.calib-search", out) >=
          sizeof(search_path) ||
      (size_t)snprintf(cand_path, sizeof(cand_path), "%s.calib-candidate", out) >=
          sizeof(cand_path)) {
    dynq__imp_errorf("%s: path too long", out);
    return 1;
  }
  if (dynq__calls_list(&k.c, "--calibrate", co->dir) != 0) goto done;

  /* 1. every quantizable layer INT8, with FP32 reference weights */
  dynq__imp_options_t o = *imp;
  o.quiet = 1;
  o.no_auto_fp32 = 1; /* measured, not assumed: the search decides */
  o.on_layers = collect_layers;
  o.on_layers_ctx = &k;
  progress("converting %s with every layer INT8 for the search", in);
  if (dynq__imp_convert_buffer(&o, buf, len, in, search_path) != 0) goto done;
  if (k.L == NULL && k.nL == 0) {
    /* no layer report: nothing to choose */
  }
  if (dynq__model_open(search_path, &m, err, sizeof(err)) != 0) {
    dynq__imp_errorf("internal error: cannot reopen the search model: %s", err);
    goto done;
  }
  unlink(search_path);
  const dynq__graph_t *g = dynq__model_graph(m);

  /* the calls (state pairs from the model), and the outputs compared
   * (float32, not state) */
  if (dynq__calls_load(&k.c, g) != 0) goto done;
  k.ev_out = calloc((size_t)g->n_outputs + 1, sizeof(int));
  prec = calloc((size_t)g->n_nodes + 1, 1);
  order = calloc((size_t)k.nL + 1, sizeof(int));
  if (k.ev_out == NULL || prec == NULL || order == NULL) {
    dynq__imp_errorf("out of memory");
    goto done;
  }
  eval_outputs(&k, g);
  if (k.n_eval == 0) {
    dynq__imp_errorf("--calibrate: the model has no float32 output besides its state to "
                     "measure the error on");
    goto done;
  }
  int nq = map_layers(&k, g, order);
  if (add_attention_layer(&k, g, imp) != 0) {
    dynq__imp_errorf("out of memory");
    goto done;
  }
  if (k.nL > 0 && k.L[k.nL - 1].attention) {
    int *o2 = realloc(order, sizeof(int) * (size_t)(k.nL + 1));
    if (o2 == NULL) {
      dynq__imp_errorf("out of memory");
      goto done;
    }
    order = o2;
    order[nq++] = k.nL - 1;
  }
  k.ref = calloc((size_t)k.c.n_files * (size_t)k.n_eval, sizeof(*k.ref));
  if (k.ref == NULL) {
    dynq__imp_errorf("out of memory");
    goto done;
  }

  /* 2. the reference, and each layer's own contribution */
  progress("%d calls, %d quantizable layers; FP32 reference pass", k.c.n_files, nq);
  if (run_all(&k, m, DYNQ_PRECISION_FP32, NULL, 1, NULL) != 0) goto done;
  double e_all;
  if (run_all(&k, m, DYNQ_PRECISION_INT8, NULL, 0, &e_all) != 0) goto done;
  progress("all %d layers INT8: %s %.4g (budget %g)", nq, metric_name(co->metric), e_all,
           co->budget);
  for (int q = 0; q < nq; q++) {
    layer_t *l = &k.L[order[q]];
    memset(prec, DYNQ_PRECISION_FP32, (size_t)g->n_nodes);
    set_prec(g, prec, l, DYNQ_PRECISION_INT8);
    if (run_all(&k, m, DYNQ_PRECISION_FP32, prec, 0, &l->alone) != 0) goto done;
    memset(prec, DYNQ_PRECISION_INT8, (size_t)g->n_nodes);
    set_prec(g, prec, l, DYNQ_PRECISION_FP32);
    if (run_all(&k, m, DYNQ_PRECISION_INT8, prec, 0, &l->without) != 0) goto done;
    progress("[%d/%d] %s (%s): alone %.4g, all others INT8 %.4g", q + 1, nq, l->name, l->op,
             l->alone, l->without);
  }
  sort_base = k.L;
  qsort(order, (size_t)nq, sizeof(int), cmp_layer);

  /* 3. greedy: keep the most harmful layers FP32 until the budget holds,
   * then give back every kept layer the budget does not need */
  double e = e_all;
  int next = 0;
  while (!(e <= co->budget) && next < nq) {
    k.L[order[next++]].kept = 1;
    memset(prec, DYNQ_PRECISION_INT8, (size_t)g->n_nodes);
    for (int q = 0; q < nq; q++)
      if (k.L[order[q]].kept) set_prec(g, prec, &k.L[order[q]], DYNQ_PRECISION_FP32);
    if (run_all(&k, m, DYNQ_PRECISION_INT8, prec, 0, &e) != 0) goto done;
    progress("keep %s FP32 -> %.4g", k.L[order[next - 1]].name, e);
  }
  for (int q = next - 1; q >= 0 && next > 1; q--) {
    layer_t *l = &k.L[order[q]];
    if (!l->kept) continue;
    l->kept = 0;
    memset(prec, DYNQ_PRECISION_INT8, (size_t)g->n_nodes);
    for (int r = 0; r < nq; r++)
      if (k.L[order[r]].kept) set_prec(g, prec, &k.L[order[r]], DYNQ_PRECISION_FP32);
    double e2;
    if (run_all(&k, m, DYNQ_PRECISION_INT8, prec, 0, &e2) != 0) goto done;
    if (e2 <= co->budget) {
      l->pruned = 1;
      e = e2;
      progress("%s not needed after all -> %.4g", l->name, e2);
    } else {
      l->kept = 1;
    }
  }

  /* 4. write the selection and verify the written file end to end; when
   * its FP32 layers do not reproduce the search's numbers closely enough,
   * keep the next layer and try again */
  double e_final = INFINITY;
  int met = 0;
  for (;;) {
    if (convert_kept(&k, imp, buf, len, in, cand_path, 1) != 0) goto done;
    if (dynq__model_open(cand_path, &fm, err, sizeof(err)) != 0) {
      dynq__imp_errorf("internal error: cannot reopen %s: %s", cand_path, err);
      goto done;
    }
    const dynq__graph_t *fg = dynq__model_graph(fm);
    if (fg->n_inputs != g->n_inputs || fg->n_outputs != g->n_outputs ||
        fg->n_state != g->n_state) {
      dynq__imp_errorf("internal error: the written model's interface differs from the search's");
      goto done;
    }
    if (run_all(&k, fm, DYNQ_PRECISION_INT8, NULL, 0, &e_final) != 0) goto done;
    fm = dynq__model_unref(fm);
    progress("written selection verified: %.4g", e_final);
    if (e_final <= co->budget) {
      met = 1;
      break;
    }
    while (next < nq && k.L[order[next]].kept) next++;
    int added = 0;
    for (int q = 0; q < nq && !added; q++)
      if (!k.L[order[q]].kept) {
        k.L[order[q]].kept = 1;
        k.L[order[q]].pruned = 0;
        added = 1;
      }
    if (!added) break;
  }
  report(&k, e_all, e_final, met, now_s() - t0);
  if (!met && !co->force) {
    unlink(cand_path);
    dynq__imp_errorf("--error-budget %g cannot be met on %s even with every layer FP32 (%s "
                     "%.4g): raise the budget, or pass --force to write the all-FP32 model "
                     "anyway; nothing written", co->budget, co->dir, metric_name(co->metric),
                     e_final);
    goto done;
  }
  if (rename(cand_path, out) != 0) {
    dynq__imp_errorf("cannot rename %s to %s: %s", cand_path, out, strerror(errno));
    unlink(cand_path);
    goto done;
  }
  if (!co->json) {
    struct stat st;
    if (stat(out, &st) == 0) printf("wrote %s (%lld bytes)\n", out, (long long)st.st_size);
  }
  ret = 0;
  if (!met) fprintf(stderr, "%s: warning: the budget is missed; %s written anyway (--force)\n",
                    dynq__imp_progname, out);
done:
  unlink(search_path);
  dynq__model_unref(m);
  dynq__model_unref(fm);
  free(prec);
  free(order);
  calib_free(&k);
  return ret;
}

/* ---- The conversion-time self-check (the default; --no-self-check) ----
 *
 * Every layer INT8 except those whose measured share of the model's INT8
 * error is large for their share of its INT8 work.  Why this catches what
 * it catches: rounding noise added before a wide reduction (a
 * GlobalAveragePool over H x W positions, a K-long dot product of the next
 * layer) averages out, while the last layers' noise reaches the outputs
 * whole: a CNN classifier's final Gemm (a few thousand MACs of millions)
 * measured 40-70 % of the output error on torchvision kinds.  Keeping a
 * tiny layer FP32 costs little time; a large one is never a candidate.
 *
 * The inputs are synthetic, derived from the graph's declared inputs and
 * a fixed seed (the choice is deterministic): float inputs normal draws
 * and uniform draws of unit variance (8 draws: with fewer, a single
 * layer's measured gain wandered by +-10 % from the noise of the
 * estimate alone), integer inputs ids below the
 * consuming Gather's table size (else 1), symbolic dims SC_BATCH for the
 * first and SC_DIM for the others.  A graph that cannot run at SC_DIM (an
 * audio model whose front end needs hundreds of samples: a 256-tap
 * Conv, an STFT frame) is tried again at the larger sizes of sc_dims, up
 * to SC_MAX_ELEMS elements per input, then with every symbolic dim the
 * same. */
enum { SC_DRAWS = 8, SC_BATCH = 2, SC_DIM = 32, SC_MAX_CAND = 16 };
/* {leading, other} symbolic dims, tried in turn until the model runs.  The
 * last ones give every symbolic dim one value: a model whose batch is not
 * every input's first axis (an input [batch, features] beside a state
 * [layers, batch, hidden]) runs only when they agree. */
#define SC_MAX_DIM 16384
#define SC_MAX_EQUAL 1024
static const int64_t sc_dims[][2] = {
  {SC_BATCH, SC_DIM}, {SC_BATCH, 512}, {SC_BATCH, 4096}, {SC_BATCH, SC_MAX_DIM},
  {SC_DIM, SC_DIM}, {512, 512}, {SC_MAX_EQUAL, SC_MAX_EQUAL},
};
#define SC_MAX_ELEMS ((int64_t)1 << 22)
/* Each synthetic run stops after SC_RUN_CAP_MS, and a value over
 * SC_VALUE_BYTES stops it too: the larger shapes tried (every symbolic dim
 * 1024 makes an attention's scores 4 Gi elements) must not make the
 * conversion allocate gigabytes or compute for minutes. */
#define SC_RUN_CAP_MS 20000
#define SC_VALUE_BYTES ((int64_t)1 << 30)
#define SC_CAND_SHARE 0.005   /* a candidate does at most 0.5 % of the INT8 MACs */
#define SC_TOTAL_SHARE 0.01   /* at most 1 % of the INT8 MACs moved to FP32 */
#define SC_GAIN_PER_SHARE 10.0 /* keep when (error removed) >= 10 x (MAC share) */
#define SC_MIN_GAIN 0.10      /* and it removes at least 10 % of the error */

static uint64_t sc_next(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double sc_unif(uint64_t *s) { return ((double)(sc_next(s) >> 11) + 0.5) * 0x1p-53; }

/* Rows of the table a Gather/QGather reading value v as its indices
 * gathers from, or 0. */
static int64_t sc_table_rows(const dynq__graph_t *g, int32_t v) {
  for (int n = 0; n < g->n_nodes; n++) {
    const dynq__node_t *nd = &g->nodes[n];
    int idx = nd->op == DYNQ_OP_GATHER ? 1 : nd->op == DYNQ_OP_QGATHER ? 0 : -1;
    int tab = nd->op == DYNQ_OP_GATHER ? 0 : 1;
    if (idx < 0 || nd->n_in <= tab || nd->in[idx] != v || nd->in[tab] < 0) continue;
    const dynq__value_t *t = &g->values[nd->in[tab]];
    if (t->rank >= 1 && t->dims[0] > 0) return t->dims[0];
  }
  return 0;
}

/* The value an integer input is tested against (an Equal with a constant,
 * as a model's sample-rate switch `sr == 16000` feeding an If), in *ret;
 * 0 when it has one, -1 otherwise. */
static int sc_compared(const dynq__graph_t *g, int32_t v, int64_t *ret) {
  for (int n = 0; n < g->n_nodes; n++) {
    const dynq__node_t *nd = &g->nodes[n];
    if (nd->op != DYNQ_OP_EQUAL || nd->n_in != 2) continue;
    int32_t other = nd->in[0] == v ? nd->in[1] : nd->in[1] == v ? nd->in[0] : -1;
    if (other < 0) continue;
    const dynq__value_t *c = &g->values[other];
    if (c->data == NULL || c->nbytes < dynq__dtype_size(c->dtype) ||
        (c->dtype != DYNQ_DT_I64 && c->dtype != DYNQ_DT_I32))
      continue;
    *ret = c->dtype == DYNQ_DT_I64 ? *(const int64_t *)c->data : *(const int32_t *)c->data;
    return 0;
  }
  return -1;
}

/* The synthetic calls into k->c, a symbolic first axis `lead` and the other
 * symbolic dims `dim`; 0, -2 when an input would pass SC_MAX_ELEMS, or -1
 * with why in err. */
static int sc_inputs(calib_t *k, const dynq__graph_t *g, int64_t lead, int64_t dim, char *err,
                     size_t errlen) {
  dynq__calls_t *c = &k->c;
  c->what = "self-check";
  c->src = "(synthetic inputs)";
  c->n_files = SC_DRAWS;
  c->n_in = g->n_inputs;
  c->files = calloc(SC_DRAWS, sizeof(char *));
  c->in = calloc((size_t)SC_DRAWS * (size_t)(g->n_inputs ? g->n_inputs : 1), sizeof(*c->in));
  c->st_in = calloc(1, sizeof(int));
  c->st_out = calloc(1, sizeof(int));
  if (c->files == NULL || c->in == NULL || c->st_in == NULL || c->st_out == NULL) goto oom;
  for (int f = 0; f < SC_DRAWS; f++) {
    char name[48];
    snprintf(name, sizeof(name), "synthetic draw %d", f + 1);
    if ((c->files[f] = strdup(name)) == NULL) goto oom;
    uint64_t seed = 0x64796e71u + (uint64_t)f; /* fixed: the same choice every time */
    for (int i = 0; i < g->n_inputs; i++) {
      const dynq__value_t *d = &g->values[g->inputs[i]];
      dynq__tensor_t *t = &c->in[(size_t)f * (size_t)g->n_inputs + (size_t)i];
      int64_t dims[DYNQ_MAX_RANK];
      if (d->rank < 0) {
        snprintf(err, errlen, "input '%s' has no declared rank", d->name);
        return -1;
      }
      for (int r = 0; r < d->rank; r++) dims[r] = d->dims[r] >= 0 ? d->dims[r] : r == 0 ? lead : dim;
      int64_t numel = dynq__shape_numel(d->rank, dims);
      if (dim > SC_DIM && (numel < 0 || numel > SC_MAX_ELEMS)) return -2;
      int rc = dynq__tensor_alloc(t, d->dtype, d->rank, dims);
      if (rc != 0) {
        snprintf(err, errlen, "input '%s': %s", d->name, rc == -ENOMEM ? "out of memory" :
                 "too large a synthetic input");
        return -1;
      }
      int64_t n = dynq__tensor_numel(t), rows = sc_table_rows(g, g->inputs[i]), fixed = 1;
      /* ids below a table's size; else the value a comparison tests, else 1 */
      if (rows <= 0) sc_compared(g, g->inputs[i], &fixed);
      for (int64_t e = 0; e < n; e++) {
        if (d->dtype == DYNQ_DT_F32) {
          float *x = t->data;
          if (f % 2 == 0) /* Box-Muller: a normal draw */
            x[e] = (float)(sqrt(-2 * log(sc_unif(&seed))) * cos(6.283185307179586 * sc_unif(&seed)));
          else /* uniform of variance 1 */
            x[e] = (float)((2 * sc_unif(&seed) - 1) * 1.7320508075688772);
        } else if (d->dtype == DYNQ_DT_I64) {
          ((int64_t *)t->data)[e] = rows > 0 ? (int64_t)(sc_next(&seed) % (uint64_t)rows) : fixed;
        } else if (d->dtype == DYNQ_DT_I32) {
          ((int32_t *)t->data)[e] = rows > 0 ? (int32_t)(sc_next(&seed) % (uint64_t)rows)
                                             : (int32_t)fixed;
        } else {
          snprintf(err, errlen, "input '%s' is %s (synthetic inputs are float32, int64 or int32)",
                   d->name, dynq__dtype_name(d->dtype));
          return -1;
        }
      }
    }
  }
  return 0;
oom:
  snprintf(err, errlen, "out of memory");
  return -1;
}

typedef struct sc_cand {
  int layer;
  double share, gain; /* of the INT8 MACs; of the all-INT8 error removed */
} sc_cand_t;

static int cmp_cand(const void *a, const void *b) {
  const sc_cand_t *x = a, *y = b;
  /* the most error removed per MAC first; ties by layer order */
  double rx = x->gain / (x->share > 0 ? x->share : 1e-12), ry = y->gain / (y->share > 0 ? y->share : 1e-12);
  if (rx != ry) return rx > ry ? -1 : 1;
  return x->layer - y->layer;
}

static const layer_t *cand_layers;
static int cmp_late(const void *a, const void *b) {
  const sc_cand_t *x = a, *y = b;
  return cand_layers[y->layer].node - cand_layers[x->layer].node;
}

int dynq__selfcheck(const dynq__imp_options_t *imp, const uint8_t *buf, size_t len,
                    const char *in, const char *out) {
  static const dynq__calib_opts_t co = { .metric = DYNQ_CALIB_REL_L2 };
  calib_t k;
  memset(&k, 0, sizeof(k));
  k.co = &co;
  double t0 = now_s();
  dynq__model_t *m = NULL;
  unsigned char *prec = NULL;
  int *order = NULL, ret = -1, nc = 0, nkept = 0, measured = 0, sized = 0;
  sc_cand_t *cand = NULL;
  k.keep_errors = 1;
  /* synthetic shapes can make a graph far larger than any real call */
  k.run_cap_ms = SC_RUN_CAP_MS;
  k.max_value_bytes = SC_VALUE_BYTES;
  char search_path[4096], err[1024] = "";
  double e_all = 0, e_kept = 0, kept_share = 0;
  if (imp->fp32) return dynq__imp_convert_buffer(imp, buf, len, in, out);
  if ((size_t)snprintf(search_path, sizeof(search_path), "%s.self-check", out) >=
      sizeof(search_path)) {
    dynq__imp_errorf("%s: path too long", out);
    return 1;
  }
  /* The measured model is the plain conversion plus the FP32 reference,
   * always written to a side file: `out` is touched once, by a rename or
   * the final conversion, so a failed run leaves it as it was and a
   * watcher never sees the intermediate model.  With the reference wanted
   * the side file is the answer when no layer is kept (its summary is
   * printed under the name `out`). */
  dynq__imp_options_t o = *imp;
  int is_plain = !imp->no_reference;
  const char *mpath = search_path;
  o.quiet = imp->quiet || !is_plain;
  o.shown_path = out;
  o.no_reference = 0; /* the FP32 path is the measure */
  o.on_layers = collect_layers;
  o.on_layers_ctx = &k;
  if (dynq__imp_convert_buffer(&o, buf, len, in, mpath) != 0) {
    calib_free(&k);
    return 1; /* the conversion itself failed (nothing written): its errors are printed */
  }
  if (dynq__model_open(mpath, &m, err, sizeof(err)) != 0) goto skip;
  const dynq__graph_t *g = dynq__model_graph(m);
  if (g->n_state > 0) {
    snprintf(err, sizeof(err), "a streaming model (--state): calibrate on recorded streams "
             "with --calibrate instead");
    goto skip;
  }
  k.ev_out = calloc((size_t)g->n_outputs + 1, sizeof(int));
  prec = calloc((size_t)g->n_nodes + 1, 1);
  order = calloc((size_t)k.nL + 1, sizeof(int));
  cand = calloc((size_t)k.nL + 1, sizeof(*cand));
  k.macs = calloc((size_t)g->n_nodes + 1, sizeof(*k.macs));
  k.lq = calloc((size_t)g->n_nodes + 1, sizeof(*k.lq));
  if (k.ev_out == NULL || prec == NULL || order == NULL || cand == NULL || k.macs == NULL ||
      k.lq == NULL) {
    snprintf(err, sizeof(err), "out of memory");
    goto skip;
  }
  eval_outputs(&k, g);
  int nq = map_layers(&k, g, order);
  if (nq == 0 || k.n_eval == 0) goto plain; /* nothing to choose or to measure */
  k.ref = calloc((size_t)SC_DRAWS * (size_t)k.n_eval, sizeof(*k.ref));
  if (k.ref == NULL) {
    snprintf(err, sizeof(err), "out of memory");
    goto skip;
  }
  /* each layer's share of the INT8 MACs, on the first draw: a model with
   * no small layer (BERT: every GEMM >= 0.7 %) needs nothing more.  It is
   * also the try of the synthetic shapes: the first size that runs. */
  int rc = -1;
  int64_t lead = 0, dim = 0;
  for (size_t t = 0; t < sizeof(sc_dims) / sizeof(sc_dims[0]) && rc != 0; t++) {
    dynq__calls_free(&k.c);
    memset(k.macs, 0, ((size_t)g->n_nodes + 1) * sizeof(*k.macs));
    int ri = sc_inputs(&k, g, sc_dims[t][0], sc_dims[t][1], err, sizeof(err));
    if (ri == -2) continue;  /* too large; a later, uniform try may fit */
    if (ri != 0) goto skip;
    k.c.n_files = 1;
    rc = run_all(&k, m, DYNQ_PRECISION_INT8, NULL, 2, NULL);
    k.c.n_files = SC_DRAWS;
    lead = sc_dims[t][0];
    dim = sc_dims[t][1];
  }
  if (rc != 0) goto skip_quiet;
  if (lead != SC_BATCH && !imp->quiet)
    printf("self-check: every symbolic dimension %lld (the model does not run with a first "
           "axis of %d and the others up to %d)\n", (long long)dim, SC_BATCH, SC_MAX_DIM);
  else if (dim > SC_DIM && !imp->quiet)
    printf("self-check: symbolic dimensions of %lld (the model does not run at %d)\n",
           (long long)dim, SC_DIM);
  sized = 1;
  double total = 0;
  for (int n = 0; n < g->n_nodes; n++) total += (double)k.macs[n];
  for (int q = 0; q < nq && total > 0; q++) {
    const layer_t *l = &k.L[order[q]];
    double share = (double)k.macs[l->node] / total;
    if (share <= SC_CAND_SHARE) cand[nc++] = (sc_cand_t){ order[q], share, 0 };
  }
  if (nc == 0) goto plain;
  /* the reference and the all-INT8 error */
  if (run_all(&k, m, DYNQ_PRECISION_FP32, NULL, 1, NULL) != 0) goto skip_quiet;
  free(k.macs);
  k.macs = NULL; /* counted once */
  if (run_all(&k, m, DYNQ_PRECISION_INT8, NULL, 0, &e_all) != 0) goto skip_quiet;
  measured = 1;
  if (!(e_all > 0) || !isfinite(e_all)) goto plain;
  /* the ones nearest the outputs: no reduction after them averages their
   * noise away */
  if (nc > SC_MAX_CAND) {
    cand_layers = k.L;
    qsort(cand, (size_t)nc, sizeof(*cand), cmp_late);
    nc = SC_MAX_CAND;
  }
  dynq__imp_progress(imp, "self-check: all INT8 relL2 %.4g; measuring %d small layers", e_all, nc);
  for (int c = 0; c < nc; c++) {
    layer_t *l = &k.L[cand[c].layer];
    memset(prec, DYNQ_PRECISION_INT8, (size_t)g->n_nodes);
    set_prec(g, prec, l, DYNQ_PRECISION_FP32);
    if (run_all(&k, m, DYNQ_PRECISION_INT8, prec, 0, &l->without) != 0) goto skip_quiet;
    cand[c].gain = (e_all - l->without) / e_all;
    dynq__imp_progress(imp, "self-check: [%d/%d] %s FP32: %.4g (removes %.1f%% of the error, "
                       "%.3f%% of the MACs)", c + 1, nc, l->name, l->without,
                       100 * cand[c].gain, 100 * cand[c].share);
  }
  qsort(cand, (size_t)nc, sizeof(*cand), cmp_cand);
  /* greedy, each step verified: gains measured alone need not add up
   * (two layers' noise may partly cancel), so a layer is kept only when
   * the set with it removes SC_MIN_GAIN more of the all-INT8 error */
  e_kept = e_all;
  for (int c = 0; c < nc; c++) {
    layer_t *l = &k.L[cand[c].layer];
    if (!(cand[c].gain >= SC_MIN_GAIN && cand[c].gain >= SC_GAIN_PER_SHARE * cand[c].share &&
          kept_share + cand[c].share <= SC_TOTAL_SHARE))
      continue;
    double e2 = l->without;
    if (nkept > 0) {
      memset(prec, DYNQ_PRECISION_INT8, (size_t)g->n_nodes);
      for (int i = 0; i < k.nL; i++)
        if (k.L[i].kept || i == cand[c].layer) set_prec(g, prec, &k.L[i], DYNQ_PRECISION_FP32);
      if (run_all(&k, m, DYNQ_PRECISION_INT8, prec, 0, &e2) != 0) goto skip_quiet;
    }
    if (!(e_kept - e2 >= SC_MIN_GAIN * e_all)) continue;
    l->kept = 1;
    kept_share += cand[c].share;
    e_kept = e2;
    nkept++;
  }
  if (nkept == 0) goto plain;
  {
    const char **names = calloc((size_t)nkept + 1, sizeof(*names));
    if (names == NULL) {
      snprintf(err, sizeof(err), "out of memory");
      goto skip;
    }
    int n = 0;
    for (int c = 0; c < nc; c++)
      if (k.L[cand[c].layer].kept) names[n++] = k.L[cand[c].layer].name;
    if (is_plain && !imp->quiet)
      printf("self-check: %d small layer%s much of the INT8 error; converting again "
             "with %s FP32:\n", nkept, nkept == 1 ? " carries" : "s carry",
             nkept == 1 ? "it" : "them");
    dynq__imp_options_t f = *imp;
    f.keep_exact = names;
    f.n_keep_exact = n;
    f.keep_exact_why = "self-check: much of the INT8 error for little of the work "
                       "(--no-self-check quantizes it)";
    ret = dynq__imp_convert_buffer(&f, buf, len, in, out) == 0 ? 0 : 1;
    free(names);
  }
  if (ret == 0 && !imp->quiet) {
    printf("self-check (%d synthetic draws): all layers INT8 relL2 %.4g; kept FP32:", SC_DRAWS,
           e_all);
    for (int c = 0; c < nc; c++)
      if (k.L[cand[c].layer].kept)
        printf(" %s (%.0f%% of the error, %.2g%% of the MACs)", k.L[cand[c].layer].name,
               100 * cand[c].gain, 100 * cand[c].share);
    printf("; relL2 with them FP32 %.4g (%.2f s)\n", e_kept, now_s() - t0);
  }
  goto done;
skip_quiet:
  if (sized)
    snprintf(err, sizeof(err), "the model ran on synthetic inputs (symbolic dimensions of "
             "%lld, %lld on an input's first axis) but then failed (%s)", (long long)dim,
             (long long)lead, k.run_err[0] ? k.run_err : "out of memory");
  else
    snprintf(err, sizeof(err), "the model did not run on synthetic inputs shaped from its "
             "declared inputs, symbolic dimensions %d to %d after a first axis of %d, or "
             "%d to %d on every axis (%s)", SC_DIM, SC_MAX_DIM, SC_BATCH, SC_DIM, SC_MAX_EQUAL,
             k.run_err[0] ? k.run_err : "out of memory");
skip:
  if (!imp->quiet)
    fprintf(stderr, "%s: note: self-check skipped: %s; every layer quantized as by "
            "--no-self-check\n", dynq__imp_progname, err);
plain:
  /* with the reference, the side file holds the plain conversion */
  if (is_plain) {
    ret = 0;
    if (rename(search_path, out) != 0) {
      dynq__imp_errorf("cannot rename %s to %s: %s", search_path, out, strerror(errno));
      ret = 1;
    }
  } else {
    ret = dynq__imp_convert_buffer(imp, buf, len, in, out) == 0 ? 0 : 1;
  }
  if (ret == 0 && !imp->quiet && err[0] == 0 && sized) {
    if (measured)
      printf("self-check (%d synthetic draws): all layers INT8 relL2 %.4g; no layer kept FP32 "
             "(%.2f s)\n", SC_DRAWS, e_all, now_s() - t0);
    else
      printf("self-check: no layer small enough to keep FP32 (each <= %g%% of the INT8 MACs)\n",
             100 * SC_CAND_SHARE);
  }
done:
  unlink(search_path);
  dynq__model_unref(m);
  free(prec);
  free(order);
  free(cand);
  calib_free(&k);
  return ret;
}

const char dynq__calib_usage[] =
    "  --calibrate DIR --error-budget E [--metric max-abs|relL2] [--json] [--force]\n"
    "                  choose the layers kept FP32 by measurement: run the calls in DIR\n"
    "                  (one .npz per call, in name order, as dynqctl infer/stream\n"
    "                  --record writes them; a stateful model's files are one stream)\n"
    "                  and keep the fewest layers FP32 so that the INT8 path stays\n"
    "                  within E of the FP32 path on every output (default metric\n"
    "                  max-abs); replaces the signal front-end rule.  --json prints\n"
    "                  the per-layer report as JSON; --force writes the all-FP32\n"
    "                  selection even when the budget cannot be met\n";

int dynq__calib_arg(dynq__calib_opts_t *co, int argc, char **argv, int *i) {
  const char *a = argv[*i];
  static const char *const with_value[] = { "--calibrate", "--error-budget", "--metric" };
  for (int w = 0; w < 3; w++) {
    size_t n = strlen(with_value[w]);
    if (strncmp(a, with_value[w], n) != 0 || (a[n] != 0 && a[n] != '=')) continue;
    const char *v = a[n] == '=' ? a + n + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
    if (v == NULL || v[0] == 0) {
      fprintf(stderr, "%s: %s needs a value (%s)\n", dynq__imp_progname, with_value[w],
              w == 0 ? "a directory of .npz calls" : w == 1 ? "e.g. 0.02" : "max-abs or relL2");
      return -1;
    }
    if (w == 0) {
      co->dir = v;
    } else if (w == 1) {
      char *end;
      errno = 0;
      double e = strtod(v, &end);
      if (errno != 0 || *end != 0 || !isfinite(e) || e < 0) {
        fprintf(stderr, "%s: --error-budget must be a finite number >= 0, not '%s'\n",
                dynq__imp_progname, v);
        return -1;
      }
      co->budget = e;
      co->have_budget = 1;
    } else if (strcmp(v, "max-abs") == 0) {
      co->metric = DYNQ_CALIB_MAX_ABS;
    } else if (strcmp(v, "relL2") == 0 || strcmp(v, "rel-l2") == 0) {
      co->metric = DYNQ_CALIB_REL_L2;
    } else {
      fprintf(stderr, "%s: --metric must be max-abs or relL2, not '%s'\n", dynq__imp_progname, v);
      return -1;
    }
    return 1;
  }
  if (strcmp(a, "--json") == 0) {
    co->json = 1;
    return 1;
  }
  if (strcmp(a, "--force") == 0) {
    co->force = 1;
    return 1;
  }
  return 0;
}

int dynq__calib_check(const dynq__calib_opts_t *co, const dynq__imp_options_t *imp) {
  const char *p = dynq__imp_progname;
  if (co->dir == NULL) {
    if (co->have_budget || co->json || co->force) {
      fprintf(stderr, "%s: --error-budget, --json and --force go with --calibrate DIR\n", p);
      return -1;
    }
    return 0;
  }
  if (!co->have_budget) {
    fprintf(stderr, "%s: --calibrate needs --error-budget E (the largest acceptable error of "
            "the INT8 path against the FP32 path, e.g. 0.02)\n", p);
    return -1;
  }
  if (imp->fp32 || imp->no_reference) {
    fprintf(stderr, "%s: --calibrate cannot go with %s: the search runs both precisions\n", p,
            imp->fp32 ? "--fp32" : "--no-reference");
    return -1;
  }
  return 0;
}
