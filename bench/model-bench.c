/*
 * model-bench: a whole .dynq model in-process, INT8 and FP32 paths timed in
 * interleaved rounds on the same inputs (one thread unless --threads), and
 * optionally its output compared with a reference output file.
 *
 *   model-bench MODEL.dynq --input NAME:DTYPE:DxDx..=FILE ... [--rounds N]
 *               [--threads T] [--ref FILE] [--only int8|fp32] [--profile] [--json]
 *
 * DTYPE is f32 or i64; FILE holds raw little-endian values.  --ref is the
 * first output's expected values (float32, e.g. ONNX Runtime FP32's from
 * bench/ort/run.js): relL2 and max rel of both paths are printed.  Times
 * are medians in microseconds; pin the process yourself (taskset -c 1).
 * --profile adds each op type's share of the run (per-node wall time from
 * the executor's observer), e.g. the QLinear (INT8 GEMM) share; --nodes K
 * also the K costliest nodes with their input and output shapes.
 * --cpu times the thread's CPU time instead of wall time (see now_us).
 * --stop-limit MS runs with a run-time cap of MS ms (dynq__run_opts_t.stop,
 * as dynqd's max_run_ms), for the cost of the executor's stop checks.
 *
 * --scaling T: how T threads scale, measured so that other processes on
 * the machine barely change it.  The rounds alternate one thread and T
 * threads (INT8, or FP32 with --only fp32), and per op type it prints the
 * one-thread run's CPU time, the T-thread run's CPU time over all its
 * threads (the work, inflated by splitting) and its critical path: the
 * caller's CPU time outside parallel calls plus each call's tasks
 * list-scheduled on T threads from their own CPU times (lib/parallel.h,
 * profiling).  Scaling = one-thread CPU / critical path: what T dedicated
 * cores would give, less the helpers' wake-ups (counted: "woken") and
 * shared-cache effects the T-thread tasks did not meet.  The wall-clock
 * ratio is printed too; it only means something on a quiet machine.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dynq/errors.h"
#include "engine.h"
#include "model.h"
#include "ops.h"
#include "parallel.h"
#include "tensor.h"

#define MAX_IN 8
#define MAX_ROUNDS 1001

/* --cpu: the calling thread's CPU time instead of wall time.  On a loaded
 * shared machine it leaves out the time the thread sat preempted (so
 * before/after comparisons of one thread's work are steadier); it also
 * leaves out helper threads' work, so use it with --threads 1 only. */
static clockid_t clock_id = CLOCK_MONOTONIC;
static int stop_ms; /* --stop-limit */

static double clock_us(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double now_us(void) { return clock_us(clock_id); }

/* --profile: wall time between successive on_node calls (each node's
 * own time: the executor calls back right after a node), summed per op. */
typedef struct prof {
  double last_us;
  double op_us[DYNQ_OP__COUNT];
  int64_t op_n[DYNQ_OP__COUNT];
  /* --scaling: the caller's CPU time per op, and the parallel calls'
   * profile (lib/parallel.h) per op */
  int scaling;
  double last_cpu;
  double cpu_us[DYNQ_OP__COUNT], task_us[DYNQ_OP__COUNT], span_us[DYNQ_OP__COUNT];
  double call_us[DYNQ_OP__COUNT];
  int64_t calls[DYNQ_OP__COUNT], woken[DYNQ_OP__COUNT], gaps[DYNQ_OP__COUNT];
  int64_t tasks[DYNQ_OP__COUNT], htasks[DYNQ_OP__COUNT];
  int n_nodes;           /* --nodes: per node index, NULL without */
  double *node_us;       /* [n_nodes] owned, summed over rounds */
  char (*node_desc)[160]; /* [n_nodes] owned: op, name, shapes (first call) */
} prof_t;

static void on_node(void *user, const dynq__graph_t *g, int index, const dynq__node_t *node,
                    int precision, const dynq__tensor_t *const *inputs,
                    const dynq__tensor_t *outputs) {
  (void)g, (void)precision;
  prof_t *p = user;
  double t = now_us();
  if (node->op > 0 && node->op < DYNQ_OP__COUNT) {
    p->op_us[node->op] += t - p->last_us;
    p->op_n[node->op]++;
  }
  if (p->scaling) {
    double c = clock_us(CLOCK_THREAD_CPUTIME_ID);
    dynq__parallel_prof_t pp;
    dynq__parallel_prof_take(&pp);
    if (node->op > 0 && node->op < DYNQ_OP__COUNT) {
      p->cpu_us[node->op] += c - p->last_cpu;
      p->task_us[node->op] += pp.task_ns / 1e3;
      p->span_us[node->op] += pp.span_ns / 1e3;
      p->call_us[node->op] += pp.call_ns / 1e3;
      p->calls[node->op] += pp.calls;
      p->woken[node->op] += pp.woken;
      p->gaps[node->op] += pp.long_gaps;
      p->tasks[node->op] += pp.tasks;
      p->htasks[node->op] += pp.helper_tasks;
    }
  }
  if (p->node_us && index >= 0 && index < p->n_nodes) {
    p->node_us[index] += t - p->last_us;
    if (p->node_desc[index][0] == 0) {
      char a[64] = "-", b[64] = "-";
      if (node->n_in > 0 && inputs[0])
        dynq__shape_str(a, sizeof a, inputs[0]->rank, inputs[0]->dims);
      if (node->n_out > 0 && outputs)
        dynq__shape_str(b, sizeof b, outputs[0].rank, outputs[0].dims);
      snprintf(p->node_desc[index], sizeof p->node_desc[index], "%-8s g%-4lld act%lld pre%d post%d %-18s %s -> %s",
               dynq__op_name(node->op), (long long)dynq__node_attr_i(node, "group", 1), (long long)dynq__node_attr_i(node, "act", 0), dynq__node_attr(node, "pre_mul") != NULL, dynq__node_attr(node, "post_mul") != NULL,
               node->name ? node->name : "?", a, b);
    }
  }
  if (p->scaling) p->last_cpu = clock_us(CLOCK_THREAD_CPUTIME_ID);
  p->last_us = now_us();
}

/* --scaling's table: pass 0 ran one thread, pass 1 `threads`. */
enum { SC_CPU1, SC_WORK, SC_SERIAL, SC_PATH, SC_WALL1, SC_WALL, SC_CALLS, SC_HELP, SC_WOKEN,
       SC_GAPS, SC__N };

static void print_scaling_row(const char *name, const char *nodes, const double *v) {
  printf("  %-14s %5s %8.2f %8.2f %6.3f %7.2f %8.2f %6.3f %7.2f %7.2f %6.3f %5.0f %5.2f %5.0f %5.0f\n",
         name, nodes, v[SC_CPU1], v[SC_WORK], v[SC_WORK] / v[SC_CPU1], v[SC_SERIAL], v[SC_PATH],
         v[SC_CPU1] / v[SC_PATH], v[SC_WALL1], v[SC_WALL],
         v[SC_WALL] > 0 ? v[SC_WALL1] / v[SC_WALL] : 0.0, v[SC_CALLS], v[SC_HELP], v[SC_WOKEN],
         v[SC_GAPS]);
}

static void print_scaling(const prof_t *pr, int threads, int rounds, const double *med) {
  printf("scaling, 1 vs %d threads, per round, ms:\n"
         "  cpu1 = the 1-thread run's CPU time; work = the %d-thread run's CPU time in all threads\n"
         "  (outside tasks: the caller's only); serial = the caller's CPU time outside parallel\n"
         "  calls; path = the critical path, serial + the calls' tasks list-scheduled;\n"
         "  x = cpu1 / path; calls to\n"
         "  the team, helper = share of their tasks the helpers ran, woken = calls that woke a\n"
         "  sleeping helper, gaps = calls after over 50 us of the caller's own CPU time (a helper\n"
         "  sleeps even on an idle machine)\n",
         threads, threads);
  printf("  %-14s %5s %8s %8s %6s %7s %8s %6s %7s %7s %6s %5s %5s %5s %5s\n", "op", "nodes", "cpu1",
         "work", "work/1", "serial", "path", "x", "wall1", "wall", "wallx", "calls", "help", "woken",
         "gaps");
  double tot[SC__N] = {0}, ht = 0;
  int done[DYNQ_OP__COUNT] = {0};
  const prof_t *q = &pr[1];
  for (;;) { /* largest first */
    int op = -1;
    for (int k = 0; k < DYNQ_OP__COUNT; k++)
      if (!done[k] && pr[0].op_n[k] > 0 && (op < 0 || pr[0].cpu_us[k] > pr[0].cpu_us[op])) op = k;
    if (op < 0) break;
    done[op] = 1;
    double serial = (q->cpu_us[op] - q->call_us[op]) / rounds / 1e3, v[SC__N];
    v[SC_CPU1] = pr[0].cpu_us[op] / rounds / 1e3;
    v[SC_WORK] = serial + q->task_us[op] / rounds / 1e3;
    v[SC_SERIAL] = serial;
    v[SC_PATH] = serial + q->span_us[op] / rounds / 1e3;
    v[SC_WALL1] = pr[0].op_us[op] / rounds / 1e3;
    v[SC_WALL] = q->op_us[op] / rounds / 1e3;
    v[SC_CALLS] = (double)q->calls[op] / rounds;
    v[SC_HELP] = q->tasks[op] ? (double)q->htasks[op] / q->tasks[op] : 0.0;
    v[SC_WOKEN] = (double)q->woken[op] / rounds;
    v[SC_GAPS] = (double)q->gaps[op] / rounds;
    for (int k = 0; k < SC__N; k++) tot[k] += v[k];
    ht += (double)q->htasks[op] / rounds;
    char nodes[24];
    snprintf(nodes, sizeof nodes, "%lld", (long long)(pr[0].op_n[op] / rounds));
    if (v[SC_CPU1] >= 0.05) print_scaling_row(dynq__op_name(op), nodes, v); /* the rest: in the total */
  }
  double tasks = 0;
  for (int k = 0; k < DYNQ_OP__COUNT; k++) tasks += (double)q->tasks[k] / rounds;
  tot[SC_HELP] = tasks > 0 ? ht / tasks : 0.0;
  print_scaling_row("all nodes", "", tot);
  printf("  whole runs, wall-clock medians: %.2f / %.2f ms = %.3fx (meaningful only on a quiet "
         "machine)\n", med[0] / 1e3, med[1] / 1e3, med[1] > 0 ? med[0] / med[1] : 0.0);
}

static void *read_all(const char *path, size_t *ret_n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *p = n > 0 ? malloc((size_t)n) : NULL;
  if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
    free(p);
    p = NULL;
  }
  fclose(f);
  *ret_n = (size_t)(n > 0 ? n : 0);
  return p;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void usage(void) {
  fprintf(stderr, "usage: model-bench MODEL.dynq --input NAME:f32|i64:DxD..=FILE ... "
                  "[--rounds N] [--threads T] [--ref FILE] [--only int8|fp32] [--profile] [--nodes K] [--cpu] [--stop-limit MS] "
                  "[--scaling T] [--json]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *path = NULL, *ref_path = NULL;
  char *in_spec[MAX_IN];
  int n_spec = 0, rounds = 20, threads = 1, json = 0, only = -1, profile = 0, top = 0;
  int scaling = 0; /* --scaling T: T */
  /* the process set-up dynqd does (kernel from DYNQ_KERNEL, OpenBLAS,
   * allocator), so the figures are the daemon's */
  const char *kmsg = NULL;
  if (dynq__engine_init(getenv("DYNQ_KERNEL"), &kmsg) != 0) {
    fprintf(stderr, "model-bench: %s\n", kmsg ? kmsg : "no usable kernel");
    return 1;
  }
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--input") == 0 && i + 1 < argc && n_spec < MAX_IN)
      in_spec[n_spec++] = argv[++i];
    else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--ref") == 0 && i + 1 < argc)
      ref_path = argv[++i];
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
      only = strcmp(argv[++i], "fp32") == 0; /* a model without Wref: int8 */
    else if (strcmp(argv[i], "--profile") == 0)
      profile = 1;
    else if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc)
      profile = 1, top = atoi(argv[++i]);
    else if (strcmp(argv[i], "--scaling") == 0 && i + 1 < argc)
      profile = 1, scaling = atoi(argv[++i]);
    else if (strcmp(argv[i], "--cpu") == 0)
      clock_id = CLOCK_THREAD_CPUTIME_ID;
    else if (strcmp(argv[i], "--stop-limit") == 0 && i + 1 < argc)
      stop_ms = atoi(argv[++i]);
    else if (strcmp(argv[i], "--json") == 0)
      json = 1;
    else if (argv[i][0] != '-' && !path)
      path = argv[i];
    else
      usage();
  }
  if (!path || rounds < 1 || rounds > MAX_ROUNDS || threads < 1) usage();
  if (clock_id != CLOCK_MONOTONIC && threads != 1) {
    fprintf(stderr, "model-bench: --cpu times one thread: use it with --threads 1\n");
    return 2;
  }
  if (scaling && (scaling < 2 || scaling > DYNQ_PARALLEL_MAX_THREADS || clock_id != CLOCK_MONOTONIC ||
                  threads != 1 || ref_path || json)) {
    fprintf(stderr, "model-bench: --scaling T needs 2 <= T <= %d and none of --threads, --cpu, "
                    "--ref, --json\n", DYNQ_PARALLEL_MAX_THREADS);
    return 2;
  }
  char err[512];
  dynq__model_t *m = NULL;
  int rc = dynq__model_open(path, &m, err, sizeof err);
  if (rc) {
    fprintf(stderr, "model-bench: %s\n", err);
    return 1;
  }
  const dynq__graph_t *g = dynq__model_graph(m);
  if (n_spec != g->n_inputs) {
    fprintf(stderr, "model-bench: the model has %d inputs, %d given\n", g->n_inputs, n_spec);
    return 2;
  }
  dynq__tensor_t in[MAX_IN];
  memset(in, 0, sizeof in);
  for (int k = 0; k < n_spec; k++) {
    char *s = in_spec[k], *c1 = strchr(s, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    char *eq = c2 ? strchr(c2, '=') : NULL;
    if (!eq) usage();
    *c1 = *c2 = *eq = 0;
    int idx = dynq__model_input_index(m, s);
    if (idx < 0) {
      fprintf(stderr, "model-bench: no input named '%s'\n", s);
      return 2;
    }
    dynq__tensor_t *t = &in[idx];
    t->dtype = strcmp(c1 + 1, "i64") == 0 ? DYNQ_DT_I64 : DYNQ_DT_F32;
    for (char *p = c2 + 1; *p && t->rank < DYNQ_MAX_RANK; t->rank++) {
      t->dims[t->rank] = strtoll(p, &p, 10);
      if (*p == 'x') p++;
    }
    size_t n = 0;
    t->data = read_all(eq + 1, &n);
    if (!t->data || n != dynq__tensor_nbytes(t)) {
      fprintf(stderr, "model-bench: %s: %zu bytes, shape needs %zu\n", eq + 1, n,
              dynq__tensor_nbytes(t));
      return 2;
    }
  }
  static double times[2][MAX_ROUNDS];
  static prof_t prof[2];
  for (int p = 0; top > 0 && p < 2; p++) {
    prof[p].n_nodes = g->n_nodes;
    prof[p].node_us = calloc((size_t)g->n_nodes + 1, sizeof(double));
    prof[p].node_desc = calloc((size_t)g->n_nodes + 1, sizeof(*prof[p].node_desc));
    if (!prof[p].node_us || !prof[p].node_desc) {
      fprintf(stderr, "model-bench: out of memory\n");
      return 1;
    }
  }
  dynq__tensor_t out[2][16];
  memset(out, 0, sizeof out);
  int nout = g->n_outputs < 16 ? g->n_outputs : 16;
  /* --scaling: pass 0 one thread, pass 1 T threads, at one precision */
  const int sc_prec = only == 1 ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8;
  if (scaling) {
    prof[0].scaling = prof[1].scaling = 1;
    dynq__parallel_prof_enable(1);
  }
  for (int r = -1; r < rounds; r++)      /* round -1: warm-up, keeps outputs */
    for (int p = 0; p < 2; p++) {
      if (!scaling && only >= 0 && p != only) continue;
      dynq__run_opts_t o = {.precision = p ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8,
                            .threads = threads};
      if (scaling) o.precision = sc_prec, o.threads = p ? scaling : 1;
      dynq__run_stop_t stop = {0};
      if (stop_ms > 0) {
        dynq__run_stop_cap(&stop, stop_ms);
        o.stop = &stop;
      }
      dynq__tensor_t tmp[16];
      memset(tmp, 0, sizeof tmp);
      if (profile && r >= 0) {
        o.on_node = on_node;
        o.on_node_user = &prof[p];
        o.on_node_times_only = 1; /* storage donated as in a plain run */
      }
      dynq__parallel_prof_t drop;
      dynq__parallel_prof_take(&drop); /* what ran before the model */
      prof[p].last_cpu = clock_us(CLOCK_THREAD_CPUTIME_ID);
      double t0 = now_us();
      prof[p].last_us = t0;
      rc = dynq__model_run(m, &o, in, r < 0 ? out[p] : tmp, err, sizeof err);
      double t1 = now_us();
      if (rc) {
        fprintf(stderr, "model-bench: %s run: %s\n",
                scaling ? (p ? "T-thread" : "1-thread") : p ? "fp32" : "int8", err);
        return 1;
      }
      if (r >= 0) {
        times[p][r] = t1 - t0;
        for (int k = 0; k < nout; k++) dynq__tensor_clear(&tmp[k]);
      }
    }
  double med[2] = {0, 0};
  for (int p = 0; p < 2; p++) {
    if (!scaling && only >= 0 && p != only) continue;
    qsort(times[p], (size_t)rounds, sizeof(double), cmp_d);
    med[p] = times[p][rounds / 2];
  }
  double e[2][2] = {{-1, -1}, {-1, -1}};
  if (ref_path) {
    size_t n = 0;
    float *ref = read_all(ref_path, &n);
    int p0 = only > 0 ? 1 : 0;
    if (!ref || out[p0][0].dtype != DYNQ_DT_F32 || n != dynq__tensor_nbytes(&out[p0][0])) {
      fprintf(stderr, "model-bench: --ref %s does not match output 0 (%zu bytes)\n", ref_path, n);
      return 2;
    }
    for (int p = 0; p < 2; p++) {
      if (only >= 0 && p != only) continue;
      const float *y = out[p][0].data;
      double num = 0, den = 0, mx = 0, mr = 0;
      for (size_t i = 0; i < n / 4; i++) {
        double d = (double)y[i] - ref[i];
        num += d * d, den += (double)ref[i] * ref[i];
        mx = fabs(d) > mx ? fabs(d) : mx, mr = fabs(ref[i]) > mr ? fabs(ref[i]) : mr;
      }
      e[p][0] = sqrt(num / (den > 0 ? den : 1));
      e[p][1] = mx / (mr > 0 ? mr : 1);
    }
    free(ref);
  }
  if (scaling)
    printf("%s: %s, 1 vs %d threads, %d interleaved rounds\n", path,
           sc_prec == DYNQ_PRECISION_FP32 ? "fp32" : "int8", scaling, rounds);
  else if (json)
    printf("{\"model\": \"%s\", \"threads\": %d, \"rounds\": %d, \"int8_us\": %.1f, "
           "\"fp32_us\": %.1f, \"int8_rel_l2\": %.6f, \"fp32_max_rel\": %.3g}\n",
           path, threads, rounds, med[0], med[1], e[0][0], e[1][1]);
  else
    printf("%s: %d thread(s), %d rounds: int8 %.1f us, fp32 %.1f us (median)%s",
           path, threads, rounds, med[0], med[1], ref_path ? "" : "\n");
  if (ref_path && !json)
    printf("; vs ref: int8 relL2 %.5f, fp32 relL2 %.2e max rel %.2e\n", e[0][0], e[1][0],
           e[1][1]);
  if (scaling) {
    print_scaling(prof, scaling, rounds, med);
    int same = 1;
    for (int k = 0; k < nout; k++)
      same = same && out[0][k].dtype == out[1][k].dtype &&
             dynq__tensor_nbytes(&out[0][k]) == dynq__tensor_nbytes(&out[1][k]) &&
             memcmp(out[0][k].data, out[1][k].data, dynq__tensor_nbytes(&out[0][k])) == 0;
    printf("  outputs of 1 and %d threads: %s\n", scaling, same ? "bit-identical" : "DIFFERENT");
  }
  for (int p = 0; profile && p < 2; p++) {
    const char *label = scaling ? (p ? "T-thread" : "1-thread") : p ? "fp32" : "int8";
    double tot = 0;
    for (int op = 0; op < DYNQ_OP__COUNT; op++) tot += prof[p].op_us[op];
    if (tot <= 0) continue;
    if (!scaling)
      printf("%s path, time per op (per round; the observer adds its own cost):\n", label);
    for (; !scaling;) { /* largest first */
      int best = -1;
      for (int op = 0; op < DYNQ_OP__COUNT; op++)
        if (prof[p].op_n[op] > 0 && (best < 0 || prof[p].op_us[op] > prof[p].op_us[best])) best = op;
      if (best < 0) break;
      printf("  %-20s %6lld nodes %12.1f us %5.1f %%\n", dynq__op_name(best),
             (long long)prof[p].op_n[best] / rounds, prof[p].op_us[best] / rounds,
             100.0 * prof[p].op_us[best] / tot);
      prof[p].op_n[best] = 0;
    }
    if (top > 0) printf("%s path, the %d costliest nodes (per round):\n", label, top);
    for (int k = 0; k < top && prof[p].node_us; k++) {
      int best = -1;
      for (int i = 0; i < prof[p].n_nodes; i++)
        if (prof[p].node_us[i] > 0 && (best < 0 || prof[p].node_us[i] > prof[p].node_us[best]))
          best = i;
      if (best < 0) break;
      printf("  %4d %9.1f us %5.1f %%  %s\n", best, prof[p].node_us[best] / rounds,
             100.0 * prof[p].node_us[best] / tot, prof[p].node_desc[best]);
      prof[p].node_us[best] = 0;
    }
  }
  for (int p = 0; p < 2; p++) {
    free(prof[p].node_us);
    free(prof[p].node_desc);
  }
  for (int p = 0; p < 2; p++)
    for (int k = 0; k < nout; k++) dynq__tensor_clear(&out[p][k]);
  for (int k = 0; k < n_spec; k++) free(in[k].data);
  dynq__model_unref(m);
  return 0;
}
