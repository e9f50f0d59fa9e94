/*
 * Per-node diagnosis of a .dynq (dynq-quantize --diagnose MODEL.dynq
 * --input DIR|FILE.npz [--json]), on the executor's on_node observer:
 *
 *  - local error: during an FP32 run, each quantized node (QLinear, QConv,
 *    QLSTM, QGRU) is run once more on its own at INT8 with the very inputs
 *    the FP32 path gave it, and its outputs are compared: the error that
 *    node adds by itself;
 *  - accumulated error: an INT8 run of the same call, each node's outputs
 *    compared with the FP32 run's: the error carried to that point.
 *
 * Both over every call (state carried per path for a stream), as relL2
 * and max |d| over all elements.  Only float32 outputs are compared.
 */
#include "diagnose.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "calls.h"
#include "import.h"
#include "kernels/kernels.h"
#include "model.h"
#include "ops.h"

typedef struct diag {
  const dynq__graph_t *g;
  int *off;                   /* owned [n_nodes + 1]: first ref slot of node i */
  dynq__tensor_t *ref;        /* owned [off[n_nodes]]: this call's FP32 outputs */
  dynq__calib_acc_t *local;   /* owned [n_nodes] */
  dynq__calib_acc_t *accum;   /* owned [n_nodes] */
  unsigned char *seen;        /* owned [n_nodes]: ran and had a float output */
  int failed;
  char err[512];
} diag_t;

static int is_quantized(int op) {
  return op == DYNQ_OP_QLINEAR || op == DYNQ_OP_QCONV || op == DYNQ_OP_QLSTM ||
         op == DYNQ_OP_QGRU || op == DYNQ_OP_QRNN || op == DYNQ_OP_QCONV_TRANSPOSE;
}

static void add(dynq__calib_acc_t *a, const dynq__tensor_t *x, const dynq__tensor_t *r) {
  if (x->dtype != DYNQ_DT_F32 || r->dtype != DYNQ_DT_F32) return;
  int64_t n = dynq__tensor_numel(x);
  if (n < 0 || n != dynq__tensor_numel(r)) return;
  dynq__calib_acc_add(a, x->data, r->data, (size_t)n);
}

static void on_fp32(void *user, const dynq__graph_t *g, int i, const dynq__node_t *node,
                    int precision, const dynq__tensor_t *const *in, const dynq__tensor_t *out) {
  (void)precision;
  diag_t *d = user;
  for (int k = 0; k < node->n_out && d->off[i] + k < d->off[i + 1]; k++) {
    dynq__tensor_t *r = &d->ref[d->off[i] + k];
    dynq__tensor_clear(r);
    if (out[k].dtype != DYNQ_DT_F32) continue;
    if (dynq__tensor_alloc_uninit(r, out[k].dtype, out[k].rank, out[k].dims) != 0) {
      d->failed = 1;
      continue;
    }
    memcpy(r->data, out[k].data, dynq__tensor_nbytes(&out[k]));
    d->seen[i] = 1;
  }
  if (!is_quantized(node->op)) return;
  /* the node alone at INT8, on the FP32 path's inputs */
  dynq__tensor_t q[DYNQ_IMP_MAX_OUT];
  memset(q, 0, sizeof(q));
  dynq__op_ctx_t ctx = {.node = node, .kernel = dynq__kernel(), .precision = DYNQ_PRECISION_INT8,
                        .threads = 1, .err = d->err, .errlen = sizeof(d->err)};
  if (node->n_out > DYNQ_IMP_MAX_OUT || dynq__op_run1(g, &ctx, in, q) != 0) {
    d->failed = 1;
    return;
  }
  for (int k = 0; k < node->n_out; k++) {
    add(&d->local[i], &q[k], &out[k]);
    dynq__tensor_clear(&q[k]);
  }
}

static void on_int8(void *user, const dynq__graph_t *g, int i, const dynq__node_t *node,
                    int precision, const dynq__tensor_t *const *in, const dynq__tensor_t *out) {
  (void)g;
  (void)precision;
  (void)in;
  diag_t *d = user;
  for (int k = 0; k < node->n_out && d->off[i] + k < d->off[i + 1]; k++) {
    const dynq__tensor_t *r = &d->ref[d->off[i] + k];
    if (r->dtype != DYNQ_DT_INVALID) add(&d->accum[i], &out[k], r);
  }
}

static double val(const dynq__calib_acc_t *a, int metric) {
  return dynq__calib_acc_value(a, metric);
}

static void json_num(double v) {
  if (isfinite(v)) printf("%.9g", v);
  else printf("null");
}

static void json_str(const char *s) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') printf("\\%c", *p);
    else if (*p < 0x20) printf("\\u%04x", *p);
    else putchar(*p);
  }
  putchar('"');
}

static void report(const diag_t *d, const dynq__calls_t *c, const char *model, int json) {
  const dynq__graph_t *g = d->g;
  if (json) {
    printf("{\"model\": ");
    json_str(model);
    printf(", \"calls\": %d, \"nodes\": [", c->n_files);
    int first = 1;
    for (int i = 0; i < g->n_nodes; i++) {
      if (!d->seen[i]) continue;
      const dynq__node_t *n = &g->nodes[i];
      printf("%s{\"index\": %d, \"name\": ", first ? "" : ", ", i);
      json_str(n->name ? n->name : "");
      printf(", \"op\": ");
      json_str(dynq__op_name(n->op));
      printf(", \"quantized\": %s", is_quantized(n->op) ? "true" : "false");
      if (is_quantized(n->op)) {
        printf(", \"local_rel_l2\": ");
        json_num(val(&d->local[i], DYNQ_CALIB_REL_L2));
        printf(", \"local_max_abs\": ");
        json_num(val(&d->local[i], DYNQ_CALIB_MAX_ABS));
      }
      printf(", \"accumulated_rel_l2\": ");
      json_num(val(&d->accum[i], DYNQ_CALIB_REL_L2));
      printf(", \"accumulated_max_abs\": ");
      json_num(val(&d->accum[i], DYNQ_CALIB_MAX_ABS));
      printf("}");
      first = 0;
    }
    printf("]}\n");
    return;
  }
  int w = 20;
  for (int i = 0; i < g->n_nodes; i++)
    if (d->seen[i] && g->nodes[i].name && (int)strlen(g->nodes[i].name) > w)
      w = (int)strlen(g->nodes[i].name);
  if (w > 60) w = 60;
  printf("diagnose %s on %d call%s from %s: INT8 vs FP32 per node\n", model, c->n_files,
         c->n_files == 1 ? "" : "s", c->src);
  printf("  local = the node alone at INT8 on the FP32 path's inputs; accumulated = the INT8 "
         "path's output there\n");
  printf("%5s %-*s %-10s %12s %12s %12s %12s\n", "node", w, "name", "op", "local relL2",
         "local max|d|", "accum relL2", "accum max|d|");
  for (int i = 0; i < g->n_nodes; i++) {
    if (!d->seen[i]) continue;
    const dynq__node_t *n = &g->nodes[i];
    char l1[24] = "-", l2[24] = "-";
    if (is_quantized(n->op)) {
      snprintf(l1, sizeof l1, "%.4g", val(&d->local[i], DYNQ_CALIB_REL_L2));
      snprintf(l2, sizeof l2, "%.4g", val(&d->local[i], DYNQ_CALIB_MAX_ABS));
    }
    printf("%5d %-*.*s %-10s %12s %12s %12.4g %12.4g\n", i, w, w, n->name ? n->name : "", 
           dynq__op_name(n->op), l1, l2, val(&d->accum[i], DYNQ_CALIB_REL_L2),
           val(&d->accum[i], DYNQ_CALIB_MAX_ABS));
  }
  /* the quantized nodes that add the most by themselves */
  int best[3] = {-1, -1, -1};
  for (int i = 0; i < g->n_nodes; i++) {
    if (!d->seen[i] || !is_quantized(g->nodes[i].op)) continue;
    double v = val(&d->local[i], DYNQ_CALIB_REL_L2);
    for (int b = 0; b < 3; b++)
      if (best[b] < 0 || v > val(&d->local[best[b]], DYNQ_CALIB_REL_L2)) {
        for (int m = 2; m > b; m--) best[m] = best[m - 1];
        best[b] = i;
        break;
      }
  }
  if (best[0] >= 0) {
    printf("largest local errors:");
    for (int b = 0; b < 3 && best[b] >= 0; b++)
      printf(" %s (%.3g)", g->nodes[best[b]].name ? g->nodes[best[b]].name : "?",
             val(&d->local[best[b]], DYNQ_CALIB_REL_L2));
    printf("; keep them FP32 with dynq-quantize --keep-fp32 NAME, or let --calibrate choose\n");
  }
}

static int run_diag(const char *model, const char *input, int json) {
  dynq__model_t *m = NULL;
  dynq__calls_t c;
  diag_t d;
  char err[512];
  int ret = 1;
  memset(&c, 0, sizeof(c));
  memset(&d, 0, sizeof(d));
  dynq__tensor_t *st32 = NULL, *st8 = NULL, *ins = NULL, *outs = NULL;
  if (dynq__model_open(model, &m, err, sizeof(err)) != 0) {
    dynq__imp_errorf("--diagnose: %s", err);
    return 1;
  }
  const dynq__graph_t *g = dynq__model_graph(m);
  dynq__model_stats_t ms;
  dynq__model_get_stats(m, &ms);
  if (!ms.has_reference) {
    dynq__imp_errorf("--diagnose: %s has no FP32 reference weights (converted with "
                     "--no-reference): convert it again without that option", model);
    goto done;
  }
  if (dynq__calls_list(&c, "--diagnose --input", input) != 0 || dynq__calls_load(&c, g) != 0)
    goto done;
  d.g = g;
  d.off = calloc((size_t)g->n_nodes + 1, sizeof(int));
  d.local = calloc((size_t)g->n_nodes + 1, sizeof(*d.local));
  d.accum = calloc((size_t)g->n_nodes + 1, sizeof(*d.accum));
  d.seen = calloc((size_t)g->n_nodes + 1, 1);
  st32 = calloc((size_t)c.n_state + 1, sizeof(*st32));
  st8 = calloc((size_t)c.n_state + 1, sizeof(*st8));
  ins = calloc((size_t)c.n_in + 1, sizeof(*ins));
  outs = calloc((size_t)g->n_outputs + 1, sizeof(*outs));
  if (d.off == NULL || d.local == NULL || d.accum == NULL || d.seen == NULL || st32 == NULL ||
      st8 == NULL || ins == NULL || outs == NULL)
    goto oom;
  for (int i = 0; i < g->n_nodes; i++) d.off[i + 1] = d.off[i] + g->nodes[i].n_out;
  d.ref = calloc((size_t)d.off[g->n_nodes] + 1, sizeof(*d.ref));
  if (d.ref == NULL) goto oom;

  for (int f = 0; f < c.n_files; f++) {
    for (int pass = 0; pass < 2; pass++) {
      dynq__tensor_t *st = pass == 0 ? st32 : st8;
      dynq__run_opts_t ro = {.precision = pass == 0 ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8,
                             .threads = 1, .on_node = pass == 0 ? on_fp32 : on_int8,
                             .on_node_user = &d};
      if (dynq__calls_inputs(&c, g, f, st, ins) != 0) goto done;
      if (dynq__model_run(m, &ro, ins, outs, err, sizeof(err)) != 0) {
        dynq__imp_errorf("--diagnose: %s: the model failed on this call: %s", c.files[f], err);
        goto done;
      }
      if (d.failed) {
        dynq__imp_errorf("--diagnose: %s: a node could not be run alone: %s", c.files[f],
                         d.err[0] ? d.err : "out of memory");
        goto done;
      }
      dynq__calls_carry(&c, st, outs);
      for (int j = 0; j < g->n_outputs; j++) dynq__tensor_clear(&outs[j]);
    }
    for (int r = 0; r < d.off[g->n_nodes]; r++) dynq__tensor_clear(&d.ref[r]);
    if (!json && c.n_files >= 20 && (f + 1) % (c.n_files / 10) == 0)
      fprintf(stderr, "%s: diagnose: %d/%d calls\n", dynq__imp_progname, f + 1, c.n_files);
  }
  report(&d, &c, model, json);
  ret = 0;
  goto done;
oom:
  dynq__imp_errorf("out of memory");
done:
  if (d.ref != NULL)
    for (int r = 0; r < d.off[g->n_nodes]; r++) dynq__tensor_clear(&d.ref[r]);
  for (int s = 0; s < c.n_state; s++) {
    if (st32) dynq__tensor_clear(&st32[s]);
    if (st8) dynq__tensor_clear(&st8[s]);
  }
  if (outs != NULL)
    for (int j = 0; j < g->n_outputs; j++) dynq__tensor_clear(&outs[j]);
  free(st32);
  free(st8);
  free(ins);
  free(outs);
  free(d.ref);
  free(d.off);
  free(d.local);
  free(d.accum);
  free(d.seen);
  dynq__calls_free(&c);
  dynq__model_unref(m);
  return ret;
}

int dynq__diagnose_main(int argc, char **argv) {
  const char *model = NULL, *input = NULL;
  int json = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--diagnose") == 0 && i + 1 < argc) model = argv[++i];
    else if (strncmp(a, "--diagnose=", 11) == 0) model = a + 11;
    else if (strcmp(a, "--input") == 0 && i + 1 < argc) input = argv[++i];
    else if (strncmp(a, "--input=", 8) == 0) input = a + 8;
    else if (strcmp(a, "--json") == 0) json = 1;
    else {
      fprintf(stderr, "%s: --diagnose: unexpected argument '%s' (usage: dynq-quantize "
              "--diagnose MODEL.dynq --input DIR|FILE.npz [--json])\n", dynq__imp_progname, a);
      return 2;
    }
  }
  if (model == NULL || input == NULL || model[0] == 0 || input[0] == 0) {
    fprintf(stderr, "%s: usage: dynq-quantize --diagnose MODEL.dynq --input DIR|FILE.npz "
            "[--json]\n", dynq__imp_progname);
    return 2;
  }
  return run_diag(model, input, json);
}
