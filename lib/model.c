/*
 * Model lifecycle (open -> shared by refcount -> unmapped by the last
 * unref) and the graph executor.
 *
 * The executor keeps one tensor slot per value.  Constants are views into
 * the mapping, graph inputs are views of the caller's tensors, everything
 * else is owned and freed right after its last reader ran (last_use[],
 * computed once at open), so peak memory is the live set, not the graph.
 */
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "format.h"
#include "ops.h"
#include "validate.h"

struct dynq__model {
  /* Alone in its cache line: dynqd's loop takes and drops a reference
   * per request while workers read the fields that would share it. */
  _Alignas(64) atomic_int refs;
  _Alignas(64) char *path; /* owned */
  void *map;             /* PROT_READ MAP_SHARED of the whole file */
  size_t map_size;
  dynq__fgraph_t fg;     /* arrays owned, data in map */
  int *last_use;         /* owned [n_values]: last node reading it, or
                            INT_MAX for graph outputs, -1 if never read */
  dynq__tensor_t *slot0; /* owned [n_values + 1]: a run's slots before
                            the first node (constants as views into the
                            mapping, the rest cleared), copied per run */
  dynq__opstate_t *state; /* owned [n_nodes]: each node's prepared attributes */
  dynq__io_t *io;         /* owned [n_inputs + n_outputs]: the signature's entries */
  dynq__model_sig_t sig;
  dynq__model_stats_t stats;
  /* The file as loaded.  The fd stays open so that runs can check
   * (fstat, never the path) that the file it maps was not truncated or
   * rewritten in place since: a shorter file turns reads of the lost
   * pages into SIGBUS, a rewritten one feeds unchecked bytes to the
   * kernels.  O_NONBLOCK: a FIFO swapped in cannot block the open.
   * An fstat costs 1-5 us in a VM, as much as a small model's whole run,
   * so it is made at most once per FILE_CHECK_NS per model; truncation is
   * caught at once anyway (the SIGBUS handler marks the model broken
   * during the run that touched a lost page). */
  int fd;
  int64_t f_size, f_mtime_ns;
  _Atomic int64_t f_checked_ns; /* CLOCK_MONOTONIC of the last fstat */
  atomic_int broken;     /* 1: the file changed under the mapping */
  atomic_int reported;   /* 1: dynq__model_broken_report said so once */
  int guard_slot;        /* index in the fault table, or -1 */
};

/* ---- the fault table: mappings a SIGBUS handler may repair ----
 *
 * dynq__model_fault() runs in a signal handler, so the table is a fixed
 * array of slots read without locks.  Each slot has a sequence number
 * (odd while being written) so that a reader never trusts a half-written
 * range.  A model takes a slot after mmap and gives it back before
 * munmap, so a slot always describes a live mapping; a thread that
 * faults inside one holds a reference to that model. */
#define GUARD_SLOTS 16384
typedef struct guard_slot {
  atomic_uint seq;
  atomic_uintptr_t base;
  atomic_size_t size;
  _Atomic(dynq__model_t *) model;
  atomic_int used;
} guard_slot_t;
static guard_slot_t guard[GUARD_SLOTS];

static int guard_add(dynq__model_t *m) {
  for (int i = 0; i < GUARD_SLOTS; i++) {
    int zero = 0;
    if (!atomic_compare_exchange_strong(&guard[i].used, &zero, 1)) continue;
    atomic_fetch_add(&guard[i].seq, 1);  /* odd: being written */
    atomic_store(&guard[i].base, (uintptr_t)m->map);
    atomic_store(&guard[i].size, m->map_size);
    atomic_store(&guard[i].model, m);
    atomic_fetch_add(&guard[i].seq, 1);
    return i;
  }
  return -1;  /* table full: this model is served unguarded */
}

static void guard_remove(int i) {
  if (i < 0) return;
  atomic_fetch_add(&guard[i].seq, 1);
  atomic_store(&guard[i].size, 0);
  atomic_store(&guard[i].model, NULL);
  atomic_fetch_add(&guard[i].seq, 1);
  atomic_store(&guard[i].used, 0);
}

int dynq__model_fault(const void *addr) {
  uintptr_t a = (uintptr_t)addr;
  for (int i = 0; i < GUARD_SLOTS; i++) {
    if (!atomic_load(&guard[i].used)) continue;
    unsigned s1 = atomic_load(&guard[i].seq);
    if (s1 & 1) continue;
    uintptr_t base = atomic_load(&guard[i].base);
    size_t size = atomic_load(&guard[i].size);
    dynq__model_t *m = atomic_load(&guard[i].model);
    if (atomic_load(&guard[i].seq) != s1 || m == NULL) continue;
    if (a < base || a - base >= size) continue;
    /* Zero pages over the whole mapping: the faulting read and every
     * later one see zeros instead of a signal.  The run finishes on
     * garbage and is refused afterwards (broken). */
    atomic_store(&m->broken, 1);
    void *p = mmap((void *)base, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                   -1, 0);
    return p != MAP_FAILED;
  }
  return 0;
}

int dynq__model_broken(const dynq__model_t *m) { return atomic_load(&m->broken); }

int dynq__model_broken_report(dynq__model_t *m) {
  return atomic_load(&m->broken) && atomic_exchange(&m->reported, 1) == 0;
}

/* A rewrite in place is seen by runs starting at most this long after
 * it (and after the previous check). */
#define FILE_CHECK_NS 1000000

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The file still as loaded?  Otherwise mark the model broken. */
static int file_unchanged(const dynq__model_t *m) {
  if (atomic_load_explicit(&m->broken, memory_order_relaxed)) return 0;
  dynq__model_t *mm = (dynq__model_t *)m;
  int64_t now = mono_ns();
  if (now - atomic_load_explicit(&m->f_checked_ns, memory_order_relaxed) < FILE_CHECK_NS)
    return 1;
  atomic_store_explicit(&mm->f_checked_ns, now, memory_order_relaxed);
  struct stat st;
  if (m->fd < 0 || fstat(m->fd, &st) != 0) return 1;  /* nothing to compare with */
  int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  if ((int64_t)st.st_size == m->f_size && mt == m->f_mtime_ns) return 1;
  atomic_store(&mm->broken, 1);
  return 0;
}

static int broken_error(const dynq__model_t *m, char *err, size_t errlen) {
  snprintf(err, errlen, "model file %s was truncated or rewritten in place after it "
           "was loaded; this version cannot serve until the model is reloaded "
           "(SIGHUP or model.reload)", m->path);
  return DYNQ_EFORMAT;
}

const char *dynq__qkind_name(int kind) {
  static const char *const names[DYNQ_QKIND__COUNT] = {"QLinear", "QConv", "QLSTM", "QGRU",
                                                                "QRNN"};
  return kind >= 0 && kind < DYNQ_QKIND__COUNT ? names[kind] : "?";
}

/* Where a quantized op keeps its constants (graph.h, rnn.h): the packed
 * int8 weight inputs and the FP32 reference inputs.  -1 ends a list. */
typedef struct qlayout {
  int op, kind;
  int packed[2], ref[2];
} qlayout_t;
static const qlayout_t qlayouts[] = {
  {DYNQ_OP_QLINEAR, DYNQ_QKIND_LINEAR, {1, -1}, {5, -1}},
  {DYNQ_OP_QCONV, DYNQ_QKIND_CONV, {1, -1}, {5, -1}},
  {DYNQ_OP_QCONV_TRANSPOSE, DYNQ_QKIND_CONV, {1, -1}, {5, -1}},
  {DYNQ_OP_QLSTM, DYNQ_QKIND_LSTM, {1, 4}, {12, 13}},
  {DYNQ_OP_QGRU, DYNQ_QKIND_GRU, {1, 4}, {10, 11}},
  {DYNQ_OP_QRNN, DYNQ_QKIND_RNN, {1, 4}, {10, 11}},
};

static void compute_stats(dynq__model_t *m) {
  const dynq__graph_t *g = &m->fg.g;
  dynq__model_stats_t *s = &m->stats;
  memset(s, 0, sizeof(*s));
  s->n_nodes = g->n_nodes;
  s->has_reference = 1;
  /* per constant: 0 FP32 on the INT8 path, 1 packed int8, 2 reference */
  unsigned char *qconst = calloc((size_t)g->n_values + 1, 1);
  for (int i = 0; i < g->n_nodes; i++) {
    const dynq__node_t *n = &g->nodes[i];
    const qlayout_t *L = NULL;
    for (size_t j = 0; j < sizeof(qlayouts) / sizeof(qlayouts[0]); j++)
      if (qlayouts[j].op == n->op) L = &qlayouts[j];
    if (L == NULL) continue;
    s->n_quantized++;
    s->n_quant[L->kind]++;
    if (dynq__node_attr_i(n, "per_tensor", 0)) s->per_tensor = 1;
    for (int j = 0; j < 2; j++) {
      int k = L->packed[j];
      if (k < 0 || k >= n->n_in || n->in[k] < 0) continue;
      size_t nb = g->values[n->in[k]].nbytes;
      s->int8_weight_bytes += nb;
      s->quant_int8_bytes[L->kind] += nb;
      if (qconst) qconst[n->in[k]] = 1;
    }
    for (int j = 0; j < 2; j++) {
      int k = L->ref[j];
      if (k < 0) continue;
      if (k >= n->n_in || n->in[k] < 0) {
        s->has_reference = 0;
        continue;
      }
      s->ref_weight_bytes += g->values[n->in[k]].nbytes;
      if (qconst) qconst[n->in[k]] = 2;
    }
  }
  for (int v = 0; v < g->n_values; v++)
    if (g->values[v].data != NULL && (qconst == NULL || !qconst[v]))
      s->fp32_weight_bytes += g->values[v].nbytes;
  free(qconst);
}

/* The signature from the graph (after validation: indices are sound). */
static int build_signature(dynq__model_t *m) {
  const dynq__graph_t *g = &m->fg.g;
  dynq__io_t *io = calloc((size_t)(g->n_inputs + g->n_outputs) + 1, sizeof(*io));
  if (io == NULL) return -ENOMEM;
  for (int i = 0; i < g->n_inputs + g->n_outputs; i++) {
    int v = i < g->n_inputs ? g->inputs[i] : g->outputs[i - g->n_inputs];
    const dynq__value_t *val = &g->values[v];
    io[i].name = val->name;
    io[i].dtype = val->dtype;
    io[i].rank = val->rank;
    memcpy(io[i].dims, val->dims, sizeof(io[i].dims));
    io[i].state_peer = -1;
  }
  for (int p = 0; p < g->n_state; p++)
    for (int i = 0; i < g->n_inputs; i++)
      for (int o = 0; o < g->n_outputs; o++)
        if (g->inputs[i] == g->state[2 * p] && g->outputs[o] == g->state[2 * p + 1]) {
          io[i].state_peer = o;
          io[g->n_inputs + o].state_peer = i;
        }
  m->io = io;
  m->sig = (dynq__model_sig_t){.n_inputs = g->n_inputs, .n_outputs = g->n_outputs,
                               .n_state = g->n_state, .inputs = io,
                               .outputs = io + g->n_inputs,
                               .producer = g->producer ? g->producer : "",
                               .source_hash = g->source_hash};
  return 0;
}

/* A value a loop body reads but does not compute (an outer value, or the
 * LOOP node's own outputs) is read again by every iteration: it lives
 * until the loop's LOOP_END at least.  0 or -ENOMEM. */
static int loops_last_use(const dynq__graph_t *g, int *last_use) {
  int have = 0;
  for (int i = 0; i < g->n_nodes && !have; i++) have = g->nodes[i].op == DYNQ_OP_LOOP;
  if (!have) return 0;
  int *prod = malloc(sizeof(int) * ((size_t)g->n_values + 1));
  if (prod == NULL) return -ENOMEM;
  for (int v = 0; v < g->n_values; v++) prod[v] = -1;
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_out; k++)
      if (g->nodes[i].out[k] >= 0) prod[g->nodes[i].out[k]] = i;
  for (int l = 0; l < g->n_nodes; l++) {
    if (g->nodes[l].op != DYNQ_OP_LOOP) continue;
    int e = l + 1 + (int)dynq__node_attr_i(&g->nodes[l], "body_nodes", 0); /* validated */
    for (int j = l + 1; j <= e; j++)
      for (int k = 0; k < g->nodes[j].n_in; k++) {
        int v = g->nodes[j].in[k];
        if (v >= 0 && !(prod[v] > l && prod[v] < e) && last_use[v] < e) last_use[v] = e;
      }
  }
  free(prod);
  return 0;
}

int dynq__model_open(const char *path, dynq__model_t **ret_model, char *err,
                     size_t errlen) {
  int rc = 0, fd = -1;
  dynq__model_t *m = calloc(1, sizeof(*m));
  if (m == NULL) return -ENOMEM;
  atomic_init(&m->refs, 1);
  atomic_init(&m->broken, 0);
  atomic_init(&m->reported, 0);
  m->map = MAP_FAILED;
  m->fd = -1;
  m->guard_slot = -1;
  m->path = strdup(path);
  if (m->path == NULL) {
    rc = -ENOMEM;
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    rc = -errno;
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    goto fail;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = -errno;
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = DYNQ_EFORMAT;
    snprintf(err, errlen, "%s: not a regular file", path);
    goto fail;
  }
  if (st.st_size < (off_t)sizeof(dynq__fhdr_t)) {
    rc = DYNQ_EFORMAT;
    snprintf(err, errlen, "%s: %lld bytes is too short for a model (truncated?)", path, (long long)st.st_size);
    goto fail;
  }
  m->map_size = (size_t)st.st_size;
  m->map = mmap(NULL, m->map_size, PROT_READ, MAP_SHARED, fd, 0);
  if (m->map == MAP_FAILED) {
    rc = -errno;
    snprintf(err, errlen, "%s: mmap: %s", path, strerror(errno));
    goto fail;
  }
  char msg[384];
  rc = dynq__format_decode(m->map, m->map_size, fd, &m->fg, msg, sizeof(msg));
  if (rc != 0) {
    snprintf(err, errlen, "%s: %s", path, msg);
    goto fail;
  }
  m->fd = fd;
  fd = -1;
  m->f_size = (int64_t)st.st_size;
  m->f_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  m->guard_slot = guard_add(m);
  const dynq__graph_t *g = &m->fg.g;
  m->last_use = malloc(sizeof(int) * ((size_t)g->n_values + 1));
  if (m->last_use == NULL) {
    rc = -ENOMEM;
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  for (int v = 0; v < g->n_values; v++) m->last_use[v] = -1;
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++)
      if (g->nodes[i].in[k] >= 0) m->last_use[g->nodes[i].in[k]] = i;
  for (int i = 0; i < g->n_outputs; i++) m->last_use[g->outputs[i]] = g->n_nodes;
  if ((rc = loops_last_use(g, m->last_use)) != 0) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  m->slot0 = calloc((size_t)g->n_values + 1, sizeof(*m->slot0));
  if (m->slot0 == NULL) {
    rc = -ENOMEM;
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  for (int v = 0; v < g->n_values; v++) {
    const dynq__value_t *val = &g->values[v];
    if (val->data == NULL) continue;
    m->slot0[v].dtype = val->dtype;
    m->slot0[v].rank = val->rank;
    memcpy(m->slot0[v].dims, val->dims, sizeof(m->slot0[v].dims));
    m->slot0[v].data = (void *)val->data;  /* read-only mapping; ops never write inputs */
  }
  m->state = calloc((size_t)g->n_nodes + 1, sizeof(*m->state));
  if (m->state == NULL) {
    rc = -ENOMEM;
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  for (int i = 0; i < g->n_nodes; i++) {
    rc = dynq__opdef(g->nodes[i].op)->prepare(g, &g->nodes[i], &m->state[i], msg, sizeof(msg));
    if (rc != 0) {
      snprintf(err, errlen, "%s: %s", path, msg);
      goto fail;
    }
  }
  if (build_signature(m) != 0) {
    rc = -ENOMEM;
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  compute_stats(m);
  *ret_model = m;
  return 0;
fail:
  if (fd >= 0) close(fd);
  dynq__model_unref(m);
  return rc;
}

dynq__model_t *dynq__model_ref(dynq__model_t *m) {
  atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
  return m;
}

dynq__model_t *dynq__model_unref(dynq__model_t *m) {
  if (m == NULL) return NULL;
  if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1) return NULL;
  if (m->state != NULL)
    for (int i = 0; i < m->fg.g.n_nodes; i++) dynq__opstate_release(&m->fg.g.nodes[i], &m->state[i]);
  dynq__format_free(&m->fg);
  guard_remove(m->guard_slot);
  if (m->map != MAP_FAILED) munmap(m->map, m->map_size);
  if (m->fd >= 0) close(m->fd);
  free(m->last_use);
  free(m->slot0);
  free(m->state);
  free(m->io);
  free(m->path);
  free(m);
  return NULL;
}

const dynq__graph_t *dynq__model_graph(const dynq__model_t *m) { return &m->fg.g; }
const char *dynq__model_path(const dynq__model_t *m) { return m->path; }
size_t dynq__model_file_size(const dynq__model_t *m) { return m->map_size; }

void dynq__model_get_stats(const dynq__model_t *m, dynq__model_stats_t *ret) {
  *ret = m->stats;
}

const dynq__model_sig_t *dynq__model_signature(const dynq__model_t *m) { return &m->sig; }

int dynq__model_output_index(const dynq__model_t *m, const char *name) {
  const dynq__graph_t *g = &m->fg.g;
  for (int i = 0; i < g->n_outputs; i++)
    if (strcmp(g->values[g->outputs[i]].name, name) == 0) return i;
  return -1;
}

int dynq__model_input_index(const dynq__model_t *m, const char *name) {
  const dynq__graph_t *g = &m->fg.g;
  for (int i = 0; i < g->n_inputs; i++)
    if (strcmp(g->values[g->inputs[i]].name, name) == 0) return i;
  return -1;
}

static int check_input(const dynq__value_t *decl, const dynq__tensor_t *t,
                       char *err, size_t errlen) {
  char a[128], b[128];
  if (t->dtype != decl->dtype) {
    snprintf(err, errlen, "input '%s': dtype %s, model expects %s", decl->name,
             dynq__dtype_name(t->dtype), dynq__dtype_name(decl->dtype));
    return DYNQ_EDTYPE;
  }
  int ok = t->rank == decl->rank;
  for (int d = 0; ok && d < t->rank; d++)
    if (decl->dims[d] >= 0 ? t->dims[d] != decl->dims[d] : t->dims[d] < 1) ok = 0;
  if (!ok) {
    snprintf(err, errlen, "input '%s': shape %s, model expects %s (-1 = any size >= 1)",
             decl->name, dynq__shape_str(a, sizeof(a), t->rank, t->dims),
             dynq__shape_str(b, sizeof(b), decl->rank, decl->dims));
    return DYNQ_ESHAPE;
  }
  if (t->data == NULL && dynq__tensor_nbytes(t) > 0) {
    snprintf(err, errlen, "input '%s': no data", decl->name);
    return DYNQ_EDATA;
  }
  return 0;
}

static int copy_tensor(dynq__tensor_t *dst, const dynq__tensor_t *src) {
  int rc = dynq__tensor_alloc(dst, src->dtype, src->rank, src->dims);
  if (rc == 0) memcpy(dst->data, src->data, dynq__tensor_nbytes(src));
  return rc;
}

/* ---- the loop back edge (lib/ops/control.c describes LOOP / LOOP_END) ---- */

/* Is value v computed by a node of the body (l, e)? */
static int in_body(const dynq__graph_t *g, int l, int e, int v) {
  for (int j = l + 1; j < e; j++)
    for (int k = 0; k < g->nodes[j].n_out; k++)
      if (g->nodes[j].out[k] == v) return 1;
  return 0;
}

/* LOOP_END input k's value as an owned tensor in *ret: moved out of its
 * slot when the body computed it for this node alone, else copied. */
static int loop_take(const dynq__model_t *m, int l, int e, dynq__tensor_t *slot, int k,
                     dynq__tensor_t *ret, char *err, size_t errlen) {
  const dynq__graph_t *g = &m->fg.g;
  const dynq__node_t *n = &g->nodes[e];
  int v = n->in[k], twice = 0;
  dynq__tensor_t *s = &slot[v];
  if (s->dtype == DYNQ_DT_INVALID) {
    snprintf(err, errlen, "node '%s' (LoopEnd): the body did not compute '%s'", n->name,
             g->values[v].name);
    return DYNQ_EGRAPH;
  }
  for (int j = 3; j < n->n_in; j++) twice |= j != k && n->in[j] == v;
  if (s->owned && !twice && m->last_use[v] == e && in_body(g, l, e, v)) {
    *ret = *s;
    memset(s, 0, sizeof(*s));
    return 0;
  }
  if (copy_tensor(ret, s) != 0) {
    snprintf(err, errlen, "node '%s' (LoopEnd): out of memory", n->name);
    return -ENOMEM;
  }
  return 0;
}

/* Appends s as row iter of the scan output *acc, whose storage holds
 * (*cap) rows; the first iteration starts it. */
static int scan_append(dynq__op_ctx_t *c, dynq__tensor_t *acc, int64_t *cap,
                       const dynq__tensor_t *s, int64_t iter, const char *name) {
  if (s->dtype == DYNQ_DT_INVALID || s->rank >= DYNQ_MAX_RANK)
    return dynq__op_fail(c, DYNQ_ESHAPE, "scan output '%s' must be a tensor of rank < %d",
                         name, DYNQ_MAX_RANK);
  size_t row = dynq__tensor_nbytes(s);
  if (iter == 0) {
    dynq__tensor_clear(acc);
    *cap = 0;
    acc->dtype = s->dtype;
    acc->rank = s->rank + 1;
    for (int d = 0; d < s->rank; d++) acc->dims[d + 1] = s->dims[d];
  } else {
    int same = acc->dtype == s->dtype && acc->rank == s->rank + 1;
    for (int d = 0; same && d < s->rank; d++) same = acc->dims[d + 1] == s->dims[d];
    if (!same)
      return dynq__op_fail(c, DYNQ_ESHAPE, "scan output '%s' changes dtype or shape at "
                           "iteration %lld", name, (long long)iter);
  }
  int64_t count = acc->dims[0];
  if (count == *cap) {  /* grow: double, within the value and element caps */
    int64_t elems = dynq__tensor_numel(s), want = count > 0 ? 2 * count : 1;
    int64_t lim = elems > 0 ? DYNQ_MAX_ELEMS / elems : INT64_MAX;
    if (c->max_bytes > 0 && row > 0 && (int64_t)(c->max_bytes / (int64_t)row) < lim)
      lim = c->max_bytes / (int64_t)row;
    if (want > lim) want = lim;
    if (want <= count)
      return dynq__op_fail(c, DYNQ_ELIMIT, "scan output '%s' would pass %lld rows of %zu "
                           "bytes (the value cap)", name, (long long)count + 1, row);
    void *p = row > 0 ? dynq__aligned_alloc((size_t)want * row) : NULL;
    if (row > 0 && p == NULL) return dynq__op_fail(c, -ENOMEM, "out of memory");
    if (count > 0) memcpy(p, acc->data, (size_t)count * row);
    if (acc->owned) dynq__aligned_free(acc->data);
    acc->data = p;
    acc->owned = p != NULL;
    *cap = want;
  }
  if (row > 0) memcpy((uint8_t *)acc->data + (size_t)count * row, s->data, row);
  acc->dims[0] = count + 1;
  return 0;
}

/* The LOOP_END at node e, its LOOP at l: after an iteration (zero: the
 * loop takes none; LOOP just ran), either sets LOOP's outputs for the
 * next one (*again = 1) or the node's own outputs.  caps: per value, the
 * rows a scan output's storage holds (allocated by the caller). */
static int loop_end(const dynq__model_t *m, dynq__op_ctx_t *c, int l, int e,
                    dynq__tensor_t *slot, int64_t *caps, int zero, int *again) {
  const dynq__graph_t *g = &m->fg.g;
  const dynq__node_t *lp = &g->nodes[l], *n = &g->nodes[e];
  const int nc = (int)m->state[e].loop.n_carried, ns = n->n_out - nc;
  dynq__tensor_t next[DYNQ_FILE_MAX_ARITY];
  int rc = 0, taken = 0;
  *again = 0;
  c->node = n;
  if (c->stop != NULL && (rc = dynq__op_stop_before(c)) != 0) return rc;
  int64_t iter = *(const int64_t *)slot[n->in[0]].data;
  if (!zero) {
    for (int j = 0; j < ns; j++) {
      int v = n->in[3 + nc + j], o = n->out[nc + j];
      if ((rc = scan_append(c, &slot[o], &caps[o], &slot[v], iter, g->values[o].name)) != 0)
        return rc;
    }
    const dynq__tensor_t *mt = n->in[1] >= 0 ? &slot[n->in[1]] : NULL;
    const dynq__tensor_t *co = n->in[2] >= 0 ? &slot[n->in[2]] : NULL;
    if (co != NULL && (co->dtype == DYNQ_DT_INVALID || dynq__tensor_numel(co) != 1))
      return dynq__op_fail(c, DYNQ_ESHAPE, "the body's condition must hold exactly one "
                           "element");
    *again = dynq__loop_again(iter, mt, co);
  } else {
    for (int j = 0; j < ns; j++) {  /* no iteration: empty scan outputs */
      const dynq__value_t *d = &g->values[n->out[nc + j]];
      int64_t dims[DYNQ_MAX_RANK] = {0};
      int rank = d->rank >= 1 ? d->rank : 1;
      for (int k = 1; k < rank; k++) dims[k] = d->dims[k] > 0 ? d->dims[k] : 0;
      dynq__tensor_clear(&slot[n->out[nc + j]]);
      dynq_dtype_t dt = dynq__dtype_size(d->dtype) ? d->dtype : DYNQ_DT_F32;
      if ((rc = dynq__op_alloc(c, &slot[n->out[nc + j]], dt, rank, dims, 1)) != 0) return rc;
    }
  }
  /* the carried values: all taken first (a body may swap them) */
  for (; taken < nc; taken++) {
    if (zero) {  /* LOOP's own copies of v_init */
      next[taken] = slot[lp->out[2 + taken]];
      memset(&slot[lp->out[2 + taken]], 0, sizeof(next[0]));
      continue;
    }
    if ((rc = loop_take(m, l, e, slot, 3 + taken, &next[taken], c->err, c->errlen)) != 0) {
      for (int k = 0; k < taken; k++) dynq__tensor_clear(&next[k]);
      return rc;
    }
  }
  for (int k = 0; k < nc; k++) {
    dynq__tensor_t *dst = &slot[*again ? lp->out[2 + k] : n->out[k]];
    dynq__tensor_clear(dst);
    *dst = next[k];
  }
  if (*again) {
    *(int64_t *)slot[lp->out[0]].data = iter + 1;
    *(uint8_t *)slot[lp->out[1]].data = 1;  /* cond_out was true, or the body has none */
  }
  return 0;
}

int dynq__model_run(const dynq__model_t *m, const dynq__run_opts_t *opts,
                    const dynq__tensor_t *inputs, dynq__tensor_t *outputs,
                    char *err, size_t errlen) {
  const dynq__graph_t *g = &m->fg.g;
  int rc = 0;
  /* one copy of the prepared slots, not a pass over every value */
  dynq__tensor_t *slot = malloc(((size_t)g->n_values + 1) * sizeof(*slot));
  unsigned char *skip = NULL; /* nodes of If branches not taken; allocated on first If */
  int64_t *caps = NULL;       /* rows a scan output holds; allocated on first Loop */
  if (slot == NULL) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  if (!file_unchanged(m)) {
    free(slot);
    return broken_error(m, err, errlen);
  }
  memcpy(slot, m->slot0, ((size_t)g->n_values + 1) * sizeof(*slot));
  for (int i = 0; i < g->n_inputs; i++) {
    const dynq__value_t *decl = &g->values[g->inputs[i]];
    if ((rc = check_input(decl, &inputs[i], err, errlen)) != 0) goto out;
    slot[g->inputs[i]] = inputs[i];
    slot[g->inputs[i]].owned = 0;
  }
  dynq__op_ctx_t ctx = {
    .kernel = opts && opts->kernel ? opts->kernel : dynq__kernel(),
    .precision = opts ? opts->precision : DYNQ_PRECISION_INT8,
    .threads = opts ? opts->threads : 1,
    .err = err,
    .errlen = errlen,
    .max_bytes = opts ? opts->max_value_bytes : 0,
    .stop = opts ? opts->stop : NULL,
  };
  dynq__run_result_t *res = opts ? opts->result : NULL;
  const dynq__on_node_fn on_node = opts ? opts->on_node : NULL;
  const int keep_inputs = on_node != NULL && !opts->on_node_times_only;
  dynq__layer_quant_t lq;
  if (res != NULL) {
    res->splits = 0;
    res->nodes_run = 0;
    res->int8_macs = 0;
    res->n_quant = 0;
  }
  /* Optional inputs beyond n_in read as omitted (NULL): zeroed once
   * here, and each node puts back the NULLs it overwrote (zeroing all 64
   * per node was a quarter of the executor's own time). */
  const dynq__tensor_t *in[DYNQ_FILE_MAX_ARITY] = {0};
  /* Likewise out is all zeros between nodes: a node's outputs are zeroed
   * once moved to their slots, so an op that touches an output past its
   * node's count (an optional one) finds nothing of another node's. */
  dynq__tensor_t out[DYNQ_FILE_MAX_ARITY] = {0};
  for (int i = 0; i < g->n_nodes; i++) {
    const dynq__node_t *n = &g->nodes[i];
    if (skip != NULL && skip[i]) continue;
    for (int k = 0; k < n->n_in; k++) {
      in[k] = n->in[k] >= 0 ? &slot[n->in[k]] : NULL;
      /* A value written only inside an If branch that was skipped has no
       * tensor; only PHI may see it (a crafted file could try others). */
      if (in[k] != NULL && in[k]->dtype == DYNQ_DT_INVALID && n->op != DYNQ_OP_PHI) {
        snprintf(err, errlen, "node '%s' (%s): input '%s' was not computed (If branch not taken)",
                 n->name, dynq__op_name(n->op), g->values[n->in[k]].name);
        rc = DYNQ_EGRAPH;
        goto out;
      }
    }
    ctx.node = n;
    /* every fourth node (a coarse clock read is ~9 ns here, ~1 % of a
     * small model's nodes); ops that can run long poll inside */
    if (ctx.stop != NULL && (i & 3) == 0 && (rc = dynq__op_stop_before(&ctx)) != 0) goto out;
    if (opts != NULL && opts->node_precision != NULL) ctx.precision = opts->node_precision[i];
    ctx.st = &m->state[i];
    if (res != NULL) {
      memset(&lq, 0, sizeof(lq));
      ctx.lq = &lq;
    }
    /* Offer the storage of inputs this node reads last (ops.h: donor):
     * Reshape, Squeeze, Identity, Phi, ... then move instead of copying,
     * elementwise ops run in place.  Not for a value the node reads
     * twice (Mul(x, x)): its other reader would see it overwritten; not
     * with an observer that reads the inputs after the node ran. */
    for (int k = 0; k < 3; k++) {
      int v = k < n->n_in ? n->in[k] : -1;
      ctx.donor[k] = NULL;
      if (v < 0 || m->last_use[v] != i || !slot[v].owned || keep_inputs) continue;
      int twice = 0;
      for (int j = 0; j < n->n_in; j++) twice |= j != k && n->in[j] == v;
      if (!twice) ctx.donor[k] = &slot[v];
    }
    if (n->op == DYNQ_OP_LOOP_END) {
      int l = i - 1 - (int)m->state[i].loop.body_nodes, again;
      for (int k = 0; k < n->n_in; k++) in[k] = NULL;
      if (caps == NULL && (caps = calloc((size_t)g->n_values + 1, sizeof(*caps))) == NULL) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
      }
      if ((rc = loop_end(m, &ctx, l, i, slot, caps, 0, &again)) != 0) goto out;
      if (res != NULL) res->nodes_run++;
      if (again) {
        i = l;  /* the loop's i++ enters the body again */
        continue;
      }
      for (int k = 0; k < n->n_in; k++) {
        int v = n->in[k];
        if (v >= 0 && m->last_use[v] == i) dynq__tensor_clear(&slot[v]);
      }
      continue;
    }
    rc = dynq__opdef(n->op)->run(&ctx, in, out);
    if (rc == 0 && on_node != NULL)
      on_node(opts->on_node_user, g, i, n, ctx.precision, in, out);
    for (int k = 0; k < n->n_in; k++) in[k] = NULL;
    if (rc != 0) {
      for (int k = 0; k < n->n_out; k++) dynq__tensor_clear(&out[k]);
      goto out;
    }
    if (res != NULL) {
      res->nodes_run++;
      if (lq.rows > 0) {
        lq.node = i;
        lq.op = n->op;
        res->int8_macs += lq.macs;
        if (res->quant != NULL && res->n_quant < res->cap_quant) res->quant[res->n_quant] = lq;
        res->n_quant++;
      }
    }
    for (int k = 0; k < n->n_out; k++) {
      /* in a loop body, the previous iteration's value */
      if (slot[n->out[k]].owned) dynq__tensor_clear(&slot[n->out[k]]);
      slot[n->out[k]] = out[k];
    }
    memset(out, 0, sizeof(dynq__tensor_t) * (size_t)n->n_out);
    if (n->op == DYNQ_OP_IF) {
      /* If: the branch not taken is a node range right after this node
       * (lib/ops/control.c; the range was checked at load).  Its outputs
       * stay unset and PHI nodes pick the taken branch's values. */
      int64_t first, count;
      dynq__if_skip_range(&m->state[i], &slot[n->out[0]], &first, &count);
      if (skip == NULL && count > 0 && (skip = calloc((size_t)g->n_nodes + 1, 1)) == NULL) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
      }
      /* both ranges: in a loop body the branch taken may change */
      int64_t t = m->state[i].branch.then_nodes, el = m->state[i].branch.else_nodes;
      for (int64_t k = 1; skip != NULL && k <= t + el && i + k < g->n_nodes; k++)
        skip[i + k] = k >= first && k < first + count;
    }
    if (n->op == DYNQ_OP_LOOP) {
      const dynq__tensor_t *mt = n->in[0] >= 0 ? &slot[n->in[0]] : NULL;
      const dynq__tensor_t *ct = n->in[1] >= 0 ? &slot[n->in[1]] : NULL;
      if (!dynq__loop_enters(mt, ct)) {  /* no iteration: straight to LOOP_END's outputs */
        int e = i + 1 + (int)m->state[i].loop.body_nodes, again;
        if (caps == NULL && (caps = calloc((size_t)g->n_values + 1, sizeof(*caps))) == NULL) {
          snprintf(err, errlen, "out of memory");
          rc = -ENOMEM;
          goto out;
        }
        for (int k = 0; k < n->n_in; k++) {  /* LOOP's inputs end here as usual */
          int v = n->in[k];
          if (v >= 0 && m->last_use[v] == i) dynq__tensor_clear(&slot[v]);
        }
        if ((rc = loop_end(m, &ctx, i, e, slot, caps, 1, &again)) != 0) goto out;
        for (int k = 0; k < g->nodes[e].n_in; k++) {
          int v = g->nodes[e].in[k];
          if (v >= 0 && m->last_use[v] == e) dynq__tensor_clear(&slot[v]);
        }
        i = e;
        continue;
      }
    }
    for (int k = 0; k < n->n_in; k++) {
      int v = n->in[k];
      if (v >= 0 && m->last_use[v] == i) dynq__tensor_clear(&slot[v]);
    }
  }
  if (res != NULL) res->splits = ctx.splits;
  for (int i = 0; i < g->n_outputs; i++) {
    dynq__tensor_t *s = &slot[g->outputs[i]];
    if (s->dtype == DYNQ_DT_INVALID) {
      for (int j = 0; j < i; j++) dynq__tensor_clear(&outputs[j]);
      snprintf(err, errlen, "graph output '%s' was not computed (If branch not taken)",
               g->values[g->outputs[i]].name);
      rc = DYNQ_EGRAPH;
      goto out;
    }
    if (s->owned) {
      outputs[i] = *s;
      memset(s, 0, sizeof(*s));
    } else if ((rc = copy_tensor(&outputs[i], s)) != 0) {
      for (int j = 0; j < i; j++) dynq__tensor_clear(&outputs[j]);
      snprintf(err, errlen, "out of memory copying output");
      goto out;
    }
  }
  if (atomic_load(&m->broken)) {  /* a page vanished during the run (SIGBUS repaired) */
    for (int i = 0; i < g->n_outputs; i++) dynq__tensor_clear(&outputs[i]);
    rc = broken_error(m, err, errlen);
  }
out:
  for (int v = 0; v < g->n_values; v++) /* the array goes: free storage only */
    if (slot[v].owned) dynq__aligned_free(slot[v].data);
  free(slot);
  free(skip);
  free(caps);
  return rc;
}
