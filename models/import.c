/*
 * The importer's common machinery (models/import.h): allocation pool,
 * graph builder, reading the ONNX file and its tensors and attributes,
 * per-channel weight quantization, and assembling the final graph.
 *
 * Everything read from the ONNX file is untrusted: sizes are checked
 * against the bytes present and against DYNQ_MAX_RANK / DYNQ_MAX_ELEMS
 * before any copy, and a bad file gives an error naming what was wrong.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "import.h"
#include "kernels/kernels.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "raw_data in ONNX is little-endian; this reader copies it as is"
#endif

/* ONNX files larger than this are refused before reading (protobuf-c needs
 * the whole message in memory, and protobuf itself caps messages at 2 GiB):
 * larger models keep their tensors in external data files. */
#define MAX_ONNX_BYTES ((int64_t)2 << 30)

/* ------------------------------------------------------------------ */
/* Allocation pool: everything the builder allocates lives until exit of
 * main's conversion, then goes in one sweep. */


void *dynq__imp_pool_alloc(dynq__imp_pool_t *pl, size_t n) {
  if (pl->n == pl->cap) {
    size_t cap = pl->cap ? pl->cap * 2 : 256;
    void **np = realloc(pl->p, cap * sizeof(*np));
    if (np == NULL) return NULL;
    pl->p = np;
    pl->cap = cap;
  }
  void *m = calloc(1, n ? n : 1);
  if (m == NULL) return NULL;
  pl->p[pl->n++] = m;
  return m;
}

char *dynq__imp_pool_printf(dynq__imp_pool_t *pl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
char *dynq__imp_pool_printf(dynq__imp_pool_t *pl, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  char *s = dynq__imp_pool_alloc(pl, (size_t)n + 1);
  if (s == NULL) return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

void dynq__imp_pool_free(dynq__imp_pool_t *pl) {
  for (size_t i = 0; i < pl->n; i++) free(pl->p[i]);
  free(pl->p);
  memset(pl, 0, sizeof(*pl));
}

/* ------------------------------------------------------------------ */
/* Builder: the graph under construction. */



uint64_t dynq__imp_fnv1a(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

int32_t dynq__imp_lookup(const dynq__builder_t *b, const char *name) {
  if (b->hcap == 0) return -1;
  size_t h = (size_t)dynq__imp_fnv1a(name, strlen(name)) & (b->hcap - 1);
  for (;;) {
    int32_t v = b->htab[h];
    if (v < 0) return -1;
    if (strcmp(b->values[v].name, name) == 0) return v;
    h = (h + 1) & (b->hcap - 1);
  }
}

static int rehash(dynq__builder_t *b, size_t cap) {
  int32_t *t = malloc(cap * sizeof(*t));
  if (t == NULL) return -ENOMEM;
  for (size_t i = 0; i < cap; i++) t[i] = -1;
  for (int v = 0; v < b->n_values; v++) {
    size_t h = (size_t)dynq__imp_fnv1a(b->values[v].name, strlen(b->values[v].name)) & (cap - 1);
    while (t[h] >= 0) h = (h + 1) & (cap - 1);
    t[h] = v;
  }
  free(b->htab);
  b->htab = t;
  b->hcap = cap;
  return 0;
}

/* Add a value named `name` (kept by pointer: must outlive the builder).
 * Returns its index, or -1 on allocation failure. */
int32_t dynq__imp_add_value(dynq__builder_t *b, const char *name, dynq_dtype_t dt, int rank,
                         const int64_t *dims) {
  if (b->n_values == b->cap_values) {
    int cap = b->cap_values ? b->cap_values * 2 : 64;
    dynq__value_t *nv = realloc(b->values, (size_t)cap * sizeof(*nv));
    if (nv == NULL) return -1;
    b->values = nv;
    int32_t *np = realloc(b->producer, (size_t)cap * sizeof(*np));
    if (np == NULL) return -1;
    b->producer = np;
    b->cap_values = cap;
  }
  if ((size_t)(b->n_values + 1) * 2 >= b->hcap &&
      rehash(b, b->hcap ? b->hcap * 2 : 128) != 0)
    return -1;
  int32_t v = b->n_values++;
  dynq__value_t *val = &b->values[v];
  memset(val, 0, sizeof(*val));
  val->name = name;
  val->dtype = dt;
  val->rank = rank;
  for (int i = 0; i < rank && i < DYNQ_MAX_RANK; i++) val->dims[i] = dims ? dims[i] : -1;
  b->producer[v] = -1;
  size_t h = (size_t)dynq__imp_fnv1a(name, strlen(name)) & (b->hcap - 1);
  while (b->htab[h] >= 0) h = (h + 1) & (b->hcap - 1);
  b->htab[h] = v;
  return v;
}

/* A name not yet used, derived from base (for constants we synthesize). */
const char *dynq__imp_fresh_name(dynq__builder_t *b, const char *base, const char *suffix) {
  char *s = dynq__imp_pool_printf(&b->pool, "%s%s", base, suffix);
  for (int i = 1; s != NULL && dynq__imp_lookup(b, s) >= 0; i++)
    s = dynq__imp_pool_printf(&b->pool, "%s%s.%d", base, suffix, i);
  return s;
}

/* A new constant holding a pool-owned copy-free buffer `data`. */
int32_t dynq__imp_add_const(dynq__builder_t *b, const char *base, const char *suffix,
                         dynq_dtype_t dt, int rank, const int64_t *dims,
                         const void *data, size_t nbytes) {
  const char *name = dynq__imp_fresh_name(b, base, suffix);
  if (name == NULL) return -1;
  int32_t v = dynq__imp_add_value(b, name, dt, rank, dims);
  if (v < 0) return -1;
  b->values[v].data = data;
  b->values[v].nbytes = nbytes;
  return v;
}

dynq__bnode_t *dynq__imp_add_node(dynq__builder_t *b, int op, const char *name) {
  if (b->n_nodes == b->cap_nodes) {
    int cap = b->cap_nodes ? b->cap_nodes * 2 : 64;
    dynq__bnode_t *nn = realloc(b->nodes, (size_t)cap * sizeof(*nn));
    if (nn == NULL) return NULL;
    b->nodes = nn;
    b->cap_nodes = cap;
  }
  dynq__bnode_t *n = &b->nodes[b->n_nodes++];
  memset(n, 0, sizeof(*n));
  n->op = op;
  n->name = name;
  return n;
}

/* Arity beyond the bounds is a converter bug, not bad input: converters
 * emit at most what the ONNX op allows, which is below these bounds. */
void dynq__imp_node_in(dynq__bnode_t *n, int32_t v) {
  if (n->n_in < DYNQ_IMP_MAX_IN) n->in[n->n_in++] = v;
}

void dynq__imp_node_out(dynq__builder_t *b, dynq__bnode_t *n, int32_t v) {
  if (n->n_out >= DYNQ_IMP_MAX_OUT) return;
  n->out[n->n_out++] = v;
  if (v >= 0) b->producer[v] = (int32_t)(n - b->nodes);
}

int32_t dynq__imp_add_temp(dynq__builder_t *b, const char *base, const char *suffix,
                           dynq_dtype_t dt) {
  const char *name = dynq__imp_fresh_name(b, base, suffix);
  if (name == NULL) return -1;
  return dynq__imp_add_value(b, name, dt, -1, NULL);
}

void dynq__imp_node_attr_s(dynq__bnode_t *n, const char *name, const char *s) {
  if (n->n_attr >= DYNQ_IMP_MAX_ATTR) return;
  dynq__attr_t *a = &n->attr[n->n_attr++];
  a->name = name;
  a->type = DYNQ_ATTR_STRING;
  a->s = s;
}

int dynq__imp_node_attr_ints(dynq__builder_t *b, dynq__bnode_t *n, const char *name,
                             const int64_t *v, size_t count) {
  if (n->n_attr >= DYNQ_IMP_MAX_ATTR) return -1;
  int64_t *d = dynq__imp_pool_alloc(&b->pool, (count ? count : 1) * sizeof(int64_t));
  if (d == NULL) return -1;
  if (count) memcpy(d, v, count * sizeof(int64_t));
  int64_t dims[1] = {(int64_t)count};
  int32_t cv = dynq__imp_add_const(b, n->name ? n->name : "node", name, DYNQ_DT_I64, 1, dims,
                                   d, count * sizeof(int64_t));
  if (cv < 0) return -1;
  dynq__attr_t *a = &n->attr[n->n_attr++];
  a->name = name;
  a->type = DYNQ_ATTR_INTS;
  a->i = cv;
  return 0;
}

int dynq__imp_front_has(const conv_t *c, const char *name) {
  if (name == NULL || name[0] == 0) return 0;
  for (int i = 0; i < c->n_front; i++)
    if (strcmp(c->front[i], name) == 0) return 1;
  return 0;
}

int dynq__imp_front_add(conv_t *c, const char *name) {
  if (name == NULL || name[0] == 0 || dynq__imp_front_has(c, name)) return 0;
  if (c->n_front == DYNQ_IMP_MAX_FRONT) return 0;
  if (c->n_front == c->cap_front) {
    int cap = c->cap_front ? c->cap_front * 2 : 16;
    const char **nf = realloc(c->front, (size_t)cap * sizeof(*nf));
    if (nf == NULL) {
      dynq__imp_errorf("out of memory");
      return -1;
    }
    c->front = nf;
    c->cap_front = cap;
  }
  c->front[c->n_front++] = name;
  return 0;
}

const char *dynq__imp_front_reader(conv_t *c, const char *x) {
  if (c->opt.no_auto_fp32 || !dynq__imp_front_has(c, x)) return NULL;
  return "reads the signal front end's output (auto rule, see --no-auto-fp32)";
}

const char *dynq__imp_keep_fp32(conv_t *c, const char *nname) {
  const char *why = NULL;
  size_t nl = nname ? strlen(nname) : 0;
  for (int i = 0; nname != NULL && i < c->opt.n_keep_exact; i++)
    if (strcmp(nname, c->opt.keep_exact[i]) == 0) why = c->opt.keep_exact_why;
  for (int i = 0; i < c->opt.n_keep; i++) {
    size_t kl = strlen(c->opt.keep[i]);
    if (kl <= nl && strcmp(nname + nl - kl, c->opt.keep[i]) == 0) {
      c->opt.keep_hits[i]++;
      why = "--keep-fp32";
    }
  }
  return why;
}

static const char *const quantizable[] = {"MatMul", "Gemm", "Conv", "ConvTranspose",
                                          "LSTM", "GRU", "RNN", "Gather"};
const char dynq__imp_quantizable_list[] = "MatMul, Gemm, Conv, ConvTranspose, LSTM, GRU, RNN, Gather";

int dynq__imp_quantizable(const char *op_type) {
  for (size_t i = 0; i < sizeof(quantizable) / sizeof(quantizable[0]); i++)
    if (strcmp(op_type, quantizable[i]) == 0) return 1;
  return 0;
}

const char *dynq__imp_op_excluded(const conv_t *c, const char *op_type) {
  if (c->opt.n_op_types == 0) return NULL;
  for (int i = 0; i < c->opt.n_op_types; i++)
    if (strcmp(c->opt.op_types[i], op_type) == 0) return NULL;
  return "op type not in --op-types";
}

void dynq__imp_progress(const dynq__imp_options_t *opt, const char *fmt, ...) {
  static struct timespec t0;
  static int started;
  if (!opt->progress || opt->quiet) return;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (!started) t0 = now, started = 1;
  double s = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) * 1e-9;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: [%7.2f s] ", dynq__imp_progname, s);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

dynq__layer_report_t *dynq__imp_add_layer(conv_t *c, const char *nname, const char *op) {
  if (c->n_layers == c->cap_layers) {
    int cap = c->cap_layers ? c->cap_layers * 2 : 16;
    dynq__layer_report_t *nl = realloc(c->layers, (size_t)cap * sizeof(*nl));
    if (nl == NULL) return NULL;
    c->layers = nl;
    c->cap_layers = cap;
  }
  dynq__layer_report_t *L = &c->layers[c->n_layers++];
  memset(L, 0, sizeof(*L));
  L->name = nname;
  L->op = op;
  L->k = L->n = -1;
  return L;
}

void dynq__imp_node_attr_i(dynq__bnode_t *n, const char *name, int64_t i) {
  if (n->n_attr >= DYNQ_IMP_MAX_ATTR) return;
  dynq__attr_t *a = &n->attr[n->n_attr++];
  a->name = name;
  a->type = DYNQ_ATTR_INT;
  a->i = i;
}

void dynq__imp_node_attr_f(dynq__bnode_t *n, const char *name, float f) {
  if (n->n_attr >= DYNQ_IMP_MAX_ATTR) return;
  dynq__attr_t *a = &n->attr[n->n_attr++];
  a->name = name;
  a->type = DYNQ_ATTR_FLOAT;
  a->f = f;
}

void dynq__imp_builder_free(dynq__builder_t *b) {
  free(b->values);
  free(b->producer);
  free(b->nodes);
  free(b->htab);
  free(b->inputs);
  free(b->outputs);
  dynq__imp_pool_free(&b->pool);
  memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------------ */
/* Errors and reading the ONNX file. */

const char *dynq__imp_progname = "dynq-quantize";

void dynq__imp_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dynq__imp_errorf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: error: ", dynq__imp_progname);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* Read the whole file (at most MAX_ONNX_BYTES). */
int dynq__imp_read_file(const char *path, uint8_t **ret_buf, size_t *ret_n) {
  uint8_t *buf = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    dynq__imp_errorf("cannot open '%s': %s", path, strerror(errno));
    return -errno;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    dynq__imp_errorf("cannot stat '%s': %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    dynq__imp_errorf("'%s' is not a regular file", path);
    goto fail;
  }
  if (st.st_size == 0) {
    dynq__imp_errorf("'%s' is empty (0 bytes)", path);
    goto fail;
  }
  if ((int64_t)st.st_size > MAX_ONNX_BYTES) {
    dynq__imp_errorf("'%s' is %" PRId64 " bytes; the limit is %" PRId64
           " (a model this large keeps its weights in external data: onnx.save_model(m, path, "
           "save_as_external_data=True))",
           path, (int64_t)st.st_size, MAX_ONNX_BYTES);
    goto fail;
  }
  size_t n = (size_t)st.st_size;
  buf = malloc(n);
  if (buf == NULL) {
    dynq__imp_errorf("out of memory reading '%s' (%zu bytes)", path, n);
    goto fail;
  }
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      dynq__imp_errorf("cannot read '%s': %s", path, strerror(errno));
      goto fail;
    }
    if (r == 0) {
      dynq__imp_errorf("'%s' shrank while reading", path);
      goto fail;
    }
    got += (size_t)r;
  }
  close(fd);
  *ret_buf = buf;
  *ret_n = n;
  return 0;
fail:
  free(buf);
  close(fd);
  return DYNQ_EFORMAT;
}

dynq_dtype_t dynq__imp_dtype_from_onnx(int32_t t) {
  switch (t) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return DYNQ_DT_F32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return DYNQ_DT_I8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return DYNQ_DT_U8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return DYNQ_DT_I32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return DYNQ_DT_I64;
  /* ONNX bool is one byte, 0 or 1: carried as uint8 (docs/FORMAT.md). */
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return DYNQ_DT_U8;
  default: return DYNQ_DT_INVALID;
  }
}

int dynq__imp_dtype_widened(int32_t t) {
  return t == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16 ||
         t == ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16 ||
         t == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
}

const char *dynq__imp_onnx_dtype_name(int32_t t) {
  static const char *const names[] = {
      "UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
      "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64",
      "COMPLEX128", "BFLOAT16"};
  if (t >= 0 && t < (int32_t)(sizeof(names) / sizeof(names[0]))) return names[t];
  return "unknown";
}

/* ---- external data ----
 *
 * A tensor saved with onnx's save_as_external_data keeps its bytes in a
 * file next to the model: external_data entries `location` (relative to
 * the model's directory), `offset` and `length` (decimal, optional).  This
 * is how models over protobuf's 2 GiB message limit are stored.  The file
 * is untrusted like the model: the location may not leave the model's
 * directory (no absolute path, no "..", no symlink out of it), and the
 * range must lie inside the file and match the tensor's size. */

typedef struct ext {
  int fd;          /* open data file, closed by external_read; -1 none */
  int64_t offset;
  const char *location; /* proto-owned */
} ext_t;

/* A decimal int64 >= 0 with nothing else; -1 otherwise. */
static int64_t parse_u63(const char *v) {
  if (v == NULL || v[0] == 0) return -1;
  int64_t x = 0;
  for (const char *p = v; *p; p++) {
    if (*p < '0' || *p > '9' || x > (INT64_MAX - (*p - '0')) / 10) return -1;
    x = x * 10 + (*p - '0');
  }
  return x;
}

/* An absolute path or one with a ".." component. */
static int leaves_dir(const char *loc) {
  if (loc[0] == '/') return 1;
  for (const char *p = loc; p != NULL; p = strchr(p, '/'), p = p ? p + 1 : NULL)
    if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == 0)) return 1;
  return 0;
}

static int external_open(const dynq__builder_t *b, const Onnx__TensorProto *t, const char *name,
                         const char *what, size_t nbytes, ext_t *ret) {
  const char *loc = NULL;
  int64_t off = 0, len = -1;
  for (size_t i = 0; i < t->n_external_data; i++) {
    const char *k = t->external_data[i]->key, *v = t->external_data[i]->value;
    if (k == NULL) continue;
    if (strcmp(k, "location") == 0) {
      loc = v;
    } else if (strcmp(k, "offset") == 0 || strcmp(k, "length") == 0) {
      int64_t x = parse_u63(v);
      if (x < 0) {
        dynq__imp_errorf("%s '%s': external data %s '%s' is not a byte count", what, name, k,
                         v ? v : "");
        return -1;
      }
      *(k[0] == 'o' ? &off : &len) = x;
    } /* checksum and keys ONNX may add later do not change where the bytes are */
  }
  if (loc == NULL || loc[0] == 0) {
    dynq__imp_errorf("%s '%s' keeps its data in an external file but names none (no "
                     "'location' entry)", what, name);
    return -1;
  }
  if (b->ext_dir == NULL) {
    dynq__imp_errorf("%s '%s' keeps its data in an external file ('%s'), and there is no "
                     "model directory to read it from", what, name, loc);
    return -1;
  }
  if (leaves_dir(loc)) {
    dynq__imp_errorf("%s '%s': external data location '%s' leaves the model's directory "
                     "(it must be a path below it)", what, name, loc);
    return -1;
  }
  if (len >= 0 && (uint64_t)len != nbytes) {
    dynq__imp_errorf("%s '%s': external data length %" PRId64 " but dtype and shape need "
                     "%zu bytes", what, name, len, nbytes);
    return -1;
  }
  /* Symlinks are resolved before the check, so a link inside the
   * directory cannot point out of it. */
  char *full = malloc(strlen(b->ext_dir) + strlen(loc) + 2);
  char *rdir = realpath(b->ext_dir, NULL), *rfile = NULL;
  int rc = -1, fd = -1;
  if (full == NULL || rdir == NULL) {
    dynq__imp_errorf("%s '%s': cannot resolve the model's directory '%s': %s", what, name,
                     b->ext_dir, full == NULL ? "out of memory" : strerror(errno));
    goto out;
  }
  sprintf(full, "%s/%s", b->ext_dir, loc);
  rfile = realpath(full, NULL);
  if (rfile == NULL) {
    dynq__imp_errorf("%s '%s': cannot open external data file '%s': %s", what, name, full,
                     strerror(errno));
    goto out;
  }
  size_t dl = strlen(rdir);
  if (strncmp(rfile, rdir, dl) != 0 || (rfile[dl] != '/' && strcmp(rdir, "/") != 0)) {
    dynq__imp_errorf("%s '%s': external data file '%s' resolves to '%s', outside the model's "
                     "directory", what, name, loc, rfile);
    goto out;
  }
  fd = open(rfile, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    dynq__imp_errorf("%s '%s': cannot open external data file '%s': %s", what, name, full,
                     strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    dynq__imp_errorf("%s '%s': external data file '%s' is not a regular file", what, name, full);
    goto out;
  }
  if (off > (int64_t)st.st_size || (uint64_t)(st.st_size - off) < nbytes) {
    dynq__imp_errorf("%s '%s': external data needs bytes %" PRId64 "..%" PRId64 " of '%s', "
                     "which holds %" PRId64, what, name, off, off + (int64_t)nbytes, full,
                     (int64_t)st.st_size);
    goto out;
  }
  ret->fd = fd;
  ret->offset = off;
  ret->location = loc;
  fd = -1;
  rc = 0;
out:
  if (fd >= 0) close(fd);
  free(full);
  free(rdir);
  free(rfile);
  return rc;
}

static int external_read(ext_t *e, const char *name, const char *what, void *dst, size_t n) {
  size_t got = 0;
  int rc = 0;
  while (got < n) {
    ssize_t r = pread(e->fd, (char *)dst + got, n - got, (off_t)(e->offset + (int64_t)got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      dynq__imp_errorf("%s '%s': cannot read external data from '%s': %s", what, name,
                       e->location, r < 0 ? strerror(errno) : "the file shrank");
      rc = -1;
      break;
    }
    got += (size_t)r;
  }
  close(e->fd);
  e->fd = -1;
  return rc;
}

/* Convert an ONNX TensorProto into constant value `name`.  `what` says
 * where it came from for messages ("initializer", "Constant node"). */
/* IEEE half -> float, exactly (every half is a float). */
static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu, bits;
  if (e == 0x1f) {
    bits = sign | 0x7f800000u | (m << 13); /* inf, NaN (payload kept) */
  } else if (e != 0) {
    bits = sign | ((e + 112) << 23) | (m << 13);
  } else if (m == 0) {
    bits = sign;
  } else { /* subnormal: m * 2^-24, normalised */
    int sh = 0;
    while (!(m & 0x400u)) m <<= 1, sh++;
    bits = sign | ((uint32_t)(113 - sh) << 23) | ((m & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* float16, bfloat16 and float64 tensors become float32 ones: the engine
 * computes in FP32, so a model.half() export, a bfloat16 one or an
 * fp16-converted graph runs with its weights widened exactly (bfloat16 is
 * the top half of a float32's bits), and the float64 constants an export
 * without constant folding leaves (torch.clamp's bounds) are rounded to
 * float32 (a finite value beyond float32's range is refused). */
static int32_t import_widened(dynq__builder_t *b, const Onnx__TensorProto *t, const char *name,
                              const char *what) {
  const int bf16 = t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16;
  const int half = bf16 || t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
  const size_t esz = half ? 2 : 8;
  const char *tn = bf16 ? "bfloat16" : half ? "float16" : "float64";
  Onnx__TensorProto w = *t;
  int rank = (int)t->n_dims;
  if (t->n_dims > DYNQ_MAX_RANK) {
    dynq__imp_errorf("%s '%s' has rank %zu; the limit is %d", what, name, t->n_dims, DYNQ_MAX_RANK);
    return -1;
  }
  int64_t numel = dynq__shape_numel(rank, t->dims);
  if (numel < 0) {
    dynq__imp_errorf("%s '%s' has a negative dimension or more than %" PRId64 " elements", what,
                     name, (int64_t)DYNQ_MAX_ELEMS);
    return -1;
  }
  int external =
      t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  const uint8_t *raw = NULL;
  if (external) {
    ext_t ext = {.fd = -1};
    uint8_t *ext_buf = dynq__imp_pool_alloc(&b->pool, (size_t)numel * esz + 1);
    if (ext_buf == NULL) {
      dynq__imp_errorf("out of memory for %s '%s'", what, name);
      return -1;
    }
    if (external_open(b, t, name, what, (size_t)numel * esz, &ext) != 0 ||
        external_read(&ext, name, what, ext_buf, (size_t)numel * esz) != 0)
      return -1;
    raw = ext_buf;
  } else if (t->has_raw_data) {
    if (t->raw_data.len != (size_t)numel * esz) {
      dynq__imp_errorf("%s '%s': raw_data holds %zu bytes but a %s tensor of this shape "
                       "needs %" PRId64, what, name, t->raw_data.len, tn, numel * (int64_t)esz);
      return -1;
    }
    raw = t->raw_data.data;
  } else if ((half ? t->n_int32_data : t->n_double_data) != (size_t)numel) {
    /* float16 and bfloat16 travel as their 16 bits in int32_data */
    dynq__imp_errorf("%s '%s': %s holds %zu values but the shape needs %" PRId64, what, name,
                     half ? "int32_data" : "double_data",
                     half ? t->n_int32_data : t->n_double_data, numel);
    return -1;
  }
  float *f = dynq__imp_pool_alloc(&b->pool, (size_t)(numel ? numel : 1) * sizeof(float));
  if (f == NULL) {
    dynq__imp_errorf("out of memory for %s '%s'", what, name);
    return -1;
  }
  for (int64_t i = 0; i < numel; i++) {
    if (half) {
      if (raw == NULL && (t->int32_data[i] < 0 || t->int32_data[i] > 0xffff)) {
        dynq__imp_errorf("%s '%s': value %" PRId32 " at index %" PRId64 " is not a %s's "
                         "bits", what, name, t->int32_data[i], i, tn);
        return -1;
      }
      uint16_t h = raw != NULL ? (uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8)
                               : (uint16_t)t->int32_data[i];
      if (bf16) {
        uint32_t u = (uint32_t)h << 16;
        memcpy(&f[i], &u, sizeof(float));
      } else {
        f[i] = half_to_float(h);
      }
    } else {
      double d;
      if (raw != NULL) {
        uint64_t u = 0;
        for (int k = 7; k >= 0; k--) u = u << 8 | raw[8 * i + k]; /* little-endian */
        memcpy(&d, &u, sizeof d);
      } else {
        d = t->double_data[i];
      }
      f[i] = (float)d;
      if (isinf(f[i]) && !isinf(d)) {
        dynq__imp_errorf("%s '%s': float64 value %g at index %" PRId64 " is beyond float32's "
                         "range (the engine computes in float32)", what, name, d, i);
        return -1;
      }
    }
  }
  /* the converted copy goes through the float32 path */
  w.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  w.has_data_location = 0;
  w.n_external_data = 0;
  w.has_raw_data = 1;
  w.raw_data.len = (size_t)numel * sizeof(float);
  w.raw_data.data = (uint8_t *)f;
  w.n_int32_data = 0;
  w.n_double_data = 0;
  return dynq__imp_import_tensor(b, &w, name, what);
}

int32_t dynq__imp_import_tensor(dynq__builder_t *b, const Onnx__TensorProto *t, const char *name,
                             const char *what) {
  if (dynq__imp_dtype_widened(t->data_type) && t->segment == NULL)
    return import_widened(b, t, name, what);
  int external =
      t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  if (!external && t->n_external_data > 0) {
    dynq__imp_errorf("%s '%s' has external_data entries but its data_location is not EXTERNAL",
                     what, name);
    return -1;
  }
  if (external && (t->has_raw_data || t->n_float_data || t->n_int32_data || t->n_int64_data)) {
    dynq__imp_errorf("%s '%s' keeps its data in an external file and in the model too", what,
                     name);
    return -1;
  }
  if (t->segment != NULL) {
    dynq__imp_errorf("%s '%s' is segmented: not supported", what, name);
    return -1;
  }
  dynq_dtype_t dt = dynq__imp_dtype_from_onnx(t->data_type);
  if (dt == DYNQ_DT_INVALID) {
    dynq__imp_errorf("%s '%s' has dtype %s (%d): only float32, int8, uint8, int32 and int64 "
           "are supported", what, name, dynq__imp_onnx_dtype_name(t->data_type), (int)t->data_type);
    return -1;
  }
  if (t->n_dims > DYNQ_MAX_RANK) {
    dynq__imp_errorf("%s '%s' has rank %zu; the limit is %d", what, name, t->n_dims, DYNQ_MAX_RANK);
    return -1;
  }
  for (size_t i = 0; i < t->n_dims; i++) {
    if (t->dims[i] < 0) {
      dynq__imp_errorf("%s '%s' has a negative dimension (%" PRId64 ")", what, name, t->dims[i]);
      return -1;
    }
  }
  int rank = (int)t->n_dims;
  int64_t numel = dynq__shape_numel(rank, t->dims);
  if (numel < 0) {
    dynq__imp_errorf("%s '%s' has more than %" PRId64 " elements", what, name, (int64_t)DYNQ_MAX_ELEMS);
    return -1;
  }
  size_t esz = dynq__dtype_size(dt);
  size_t nbytes = (size_t)numel * esz;
  /* The data must be present before anything is allocated for it: a few
   * bytes of dims could otherwise ask for gigabytes (found by fuzz-onnx). */
  ext_t ext = {.fd = -1};
  if (external) {
    if (external_open(b, t, name, what, nbytes, &ext) != 0) return -1;
  } else if (t->has_raw_data) {
    if (t->raw_data.len != nbytes) {
      dynq__imp_errorf("%s '%s': raw_data holds %zu bytes but shape and dtype need %zu", what, name,
             t->raw_data.len, nbytes);
      return -1;
    }
  } else if (dt == DYNQ_DT_F32) {
    if (t->n_float_data != (size_t)numel) {
      dynq__imp_errorf("%s '%s': float_data holds %zu values but the shape needs %" PRId64, what, name,
             t->n_float_data, numel);
      return -1;
    }
  } else if (dt == DYNQ_DT_I64) {
    if (t->n_int64_data != (size_t)numel) {
      dynq__imp_errorf("%s '%s': int64_data holds %zu values but the shape needs %" PRId64, what, name,
             t->n_int64_data, numel);
      return -1;
    }
  } else if (t->n_int32_data != (size_t)numel) {
    /* int8, uint8 and int32 travel widened in int32_data. */
    dynq__imp_errorf("%s '%s': int32_data holds %zu values but the shape needs %" PRId64, what, name,
           t->n_int32_data, numel);
    return -1;
  }
  void *data = dynq__imp_pool_alloc(&b->pool, nbytes);
  if (data == NULL) {
    dynq__imp_errorf("out of memory for %s '%s' (%zu bytes)", what, name, nbytes);
    if (ext.fd >= 0) close(ext.fd);
    return -1;
  }
  if (external) {
    if (external_read(&ext, name, what, data, nbytes) != 0) return -1;
  } else if (t->has_raw_data) {
    if (nbytes) memcpy(data, t->raw_data.data, nbytes);
  } else if (dt == DYNQ_DT_F32) {
    if (nbytes) memcpy(data, t->float_data, nbytes);
  } else if (dt == DYNQ_DT_I64) {
    if (nbytes) memcpy(data, t->int64_data, nbytes);
  } else {
    for (int64_t i = 0; i < numel; i++) {
      int32_t x = t->int32_data[i];
      if (dt == DYNQ_DT_I32) {
        ((int32_t *)data)[i] = x;
      } else if (dt == DYNQ_DT_I8 && x >= -128 && x <= 127) {
        ((int8_t *)data)[i] = (int8_t)x;
      } else if (dt == DYNQ_DT_U8 && x >= 0 && x <= 255) {
        ((uint8_t *)data)[i] = (uint8_t)x;
      } else {
        dynq__imp_errorf("%s '%s': value %" PRId32 " at index %" PRId64 " does not fit %s", what, name,
               x, i, dynq__dtype_name(dt));
        return -1;
      }
    }
  }
  if (dynq__imp_lookup(b, name) >= 0) {
    dynq__imp_errorf("%s '%s': the name is defined twice", what, name);
    return -1;
  }
  int32_t v = dynq__imp_add_value(b, name, dt, rank, t->dims);
  if (v < 0) {
    dynq__imp_errorf("out of memory");
    return -1;
  }
  b->values[v].data = data;
  b->values[v].nbytes = nbytes;
  return v;
}

/* dtype and shape of a graph input/output declaration. */
int dynq__imp_import_value_info(dynq__builder_t *b, const Onnx__ValueInfoProto *vi, const char *what,
                             dynq_dtype_t *ret_dt, int *ret_rank, int64_t *dims) {
  const char *name = vi->name ? vi->name : "";
  const Onnx__TypeProto *tp = vi->type;
  if (tp == NULL || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
      tp->tensor_type == NULL) {
    dynq__imp_errorf("graph %s '%s' is not a tensor (sequences, maps and optionals are not supported)",
           what, name);
    return -1;
  }
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  /* float16, bfloat16 and float64 inputs and outputs are served as
   * float32 (the engine computes in FP32; the summary says so) */
  dynq_dtype_t dt = dynq__imp_dtype_from_onnx(tt->elem_type);
  switch (tt->elem_type) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: dt = DYNQ_DT_F32, b->half_io++; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: dt = DYNQ_DT_F32, b->bf16_io++; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: dt = DYNQ_DT_F32, b->double_io++; break;
  default: break;
  }
  if (dt == DYNQ_DT_INVALID) {
    dynq__imp_errorf("graph %s '%s' has dtype %s (%d): only float32, int8, uint8, int32, int64 "
           "and bool (float16, bfloat16 and float64 as float32) are supported", what, name, dynq__imp_onnx_dtype_name(tt->elem_type), (int)tt->elem_type);
    return -1;
  }
  int rank = -1;
  if (tt->shape != NULL) {
    if (tt->shape->n_dim > DYNQ_MAX_RANK) {
      dynq__imp_errorf("graph %s '%s' has rank %zu; the limit is %d", what, name, tt->shape->n_dim,
             DYNQ_MAX_RANK);
      return -1;
    }
    rank = (int)tt->shape->n_dim;
    for (int i = 0; i < rank; i++) {
      const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
      dims[i] = -1;
      if (d != NULL && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
        if (d->dim_value < 0 || d->dim_value > DYNQ_MAX_ELEMS) {
          dynq__imp_errorf("graph %s '%s': dimension %d is %" PRId64, what, name, i, d->dim_value);
          return -1;
        }
        dims[i] = d->dim_value;
      }
    }
  }
  *ret_dt = dt;
  *ret_rank = rank;
  return 0;
}

/* ------------------------------------------------------------------ */
/* ONNX attributes. */

const Onnx__AttributeProto *dynq__imp_find_attr(const Onnx__NodeProto *n, const char *name) {
  for (size_t i = 0; i < n->n_attribute; i++)
    if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0)
      return n->attribute[i];
  return NULL;
}

int dynq__imp_attr_is_int(const Onnx__AttributeProto *a) {
  return a->has_i && (!a->has_type || a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
}

int dynq__imp_attr_is_float(const Onnx__AttributeProto *a) {
  return a->has_f && (!a->has_type || a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
}

int64_t dynq__imp_attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt) {
  const Onnx__AttributeProto *a = dynq__imp_find_attr(n, name);
  return a && dynq__imp_attr_is_int(a) ? a->i : dflt;
}

float dynq__imp_attr_f(const Onnx__NodeProto *n, const char *name, float dflt) {
  const Onnx__AttributeProto *a = dynq__imp_find_attr(n, name);
  return a && dynq__imp_attr_is_float(a) ? a->f : dflt;
}
const dynq__value_t *dynq__imp_const_of(const conv_t *c, const char *name) {
  if (name == NULL || name[0] == 0) return NULL;
  int32_t v = dynq__imp_lookup(&c->b, name);
  if (v < 0 || c->b.values[v].data == NULL) return NULL;
  return &c->b.values[v];
}

/* ------------------------------------------------------------------ */
/* Quantization of one linear layer. */

/* Build the QLINEAR constants for effective weights W'[n][k] = alpha *
 * src, where src is B [K, N] (trans_b = 0) or [N, K] (trans_b = 1). */

int dynq__imp_quantize_weights(conv_t *c, const char *base, const float *src, int64_t K,
                            int64_t N, int trans_b, float alpha, dynq__qlayer_t *ret) {
  dynq__builder_t *b = &c->b;
  int64_t Kp = dynq__round_up(K, DYNQ_QGEMM_KG), Np = dynq__round_up(N, DYNQ_QGEMM_NR);
  size_t packed = (size_t)Kp * (size_t)Np;
  float *wref = dynq__imp_pool_alloc(&b->pool, (size_t)(K * N) * sizeof(float));
  int8_t *q = dynq__imp_pool_alloc(&b->pool, (size_t)(K * N));
  int8_t *wq = dynq__imp_pool_alloc(&b->pool, packed);
  int32_t *colsum = dynq__imp_pool_alloc(&b->pool, (size_t)N * sizeof(int32_t));
  float *scale = dynq__imp_pool_alloc(&b->pool, (size_t)N * sizeof(float));
  if (!wref || !q || !wq || !colsum || !scale) {
    dynq__imp_errorf("out of memory quantizing '%s'", base);
    return -1;
  }
  /* Wref is [K, N] with alpha folded; quantize from exactly those floats
   * so both paths use the same matrix. */
  for (int64_t k = 0; k < K; k++) {
    for (int64_t n = 0; n < N; n++) {
      float w = trans_b ? src[n * K + k] : src[k * N + n];
      w = alpha * w;
      if (!isfinite(w)) {
        dynq__imp_errorf("node '%s': weight [%" PRId64 ", %" PRId64 "] is not finite", base, k, n);
        return -1;
      }
      wref[k * N + n] = w;
    }
  }
  for (int64_t n = 0; n < N; n++) {
    float amax = 0.0f;
    for (int64_t k = 0; k < K; k++) amax = fmaxf(amax, fabsf(wref[k * N + n]));
    float s = dynq__imp_wscale(amax);
    int32_t sum = 0;
    for (int64_t k = 0; k < K; k++) {
      q[n * K + k] = dynq__imp_q8(wref[k * N + n] / s);
      sum += q[n * K + k];
    }
    scale[n] = s;
    colsum[n] = sum;
  }
  dynq__pack_weights(N, K, q, wq);
  int64_t d_packed[1] = {(int64_t)packed}, d_n[1] = {N}, d_kn[2] = {K, N};
  ret->wq = dynq__imp_add_const(b, base, ".wq", DYNQ_DT_I8, 1, d_packed, wq, packed);
  ret->colsum = dynq__imp_add_const(b, base, ".colsum", DYNQ_DT_I32, 1, d_n, colsum,
                          (size_t)N * sizeof(int32_t));
  ret->wscale = dynq__imp_add_const(b, base, ".wscale", DYNQ_DT_F32, 1, d_n, scale,
                          (size_t)N * sizeof(float));
  ret->wref = -1;
  if (!c->opt.no_reference)
    ret->wref = dynq__imp_add_const(b, base, ".wref", DYNQ_DT_F32, 2, d_kn, wref,
                          (size_t)(K * N) * sizeof(float));
  ret->packed_bytes = packed;
  if (ret->wq < 0 || ret->colsum < 0 || ret->wscale < 0 ||
      (!c->opt.no_reference && ret->wref < 0)) {
    dynq__imp_errorf("out of memory");
    return -1;
  }
  return 0;
}

int32_t dynq__imp_value_of(conv_t *c, const char *name) {
  if (name == NULL || name[0] == 0) return -1;
  return dynq__imp_lookup(&c->b, name);
}

/* The node's output value: the float32 placeholder pass 1 entered for it
 * (shape decided at run time unless the graph declares it as an output). */
int32_t dynq__imp_claim_output(conv_t *c, const char *name, int32_t producer) {
  int32_t v = dynq__imp_lookup(&c->b, name);
  if (v < 0 || c->b.values[v].data != NULL || c->b.producer[v] >= 0) {
    dynq__imp_errorf("internal error: no placeholder for node output '%s'", name);
    return -1;
  }
  c->b.producer[v] = producer;
  return v;
}

/* ------------------------------------------------------------------ */
/* Assembling the final graph: drop dead (folded) nodes and constants
 * nothing reads (the FP32 weights a QLINEAR replaced), then renumber. */

int dynq__imp_finish_graph(conv_t *c, dynq__graph_t *g, const char *producer, uint64_t hash) {
  dynq__builder_t *b = &c->b;
  int32_t *remap = calloc((size_t)b->n_values + 1, sizeof(*remap));
  char *keep = calloc((size_t)b->n_values + 1, 1);
  dynq__value_t *vals = NULL;
  dynq__node_t *nodes = NULL;
  if (remap == NULL || keep == NULL) goto oom;
  for (int i = 0; i < b->n_inputs; i++) keep[b->inputs[i]] = 1;
  for (int i = 0; i < b->n_outputs; i++) keep[b->outputs[i]] = 1;
  int nn = 0;
  for (int i = 0; i < b->n_nodes; i++) {
    const dynq__bnode_t *s = &b->nodes[i];
    if (s->dead) continue;
    nn++;
    for (int j = 0; j < s->n_in; j++)
      if (s->in[j] >= 0) keep[s->in[j]] = 1;
    for (int j = 0; j < s->n_out; j++)
      if (s->out[j] >= 0) keep[s->out[j]] = 1;
    for (int j = 0; j < s->n_attr; j++)
      if (s->attr[j].type == DYNQ_ATTR_INTS) keep[s->attr[j].i] = 1;
  }
  /* If branch ranges were recorded as builder node counts: recount the
   * nodes that survive (folding kills some). */
  for (int i = 0; i < b->n_nodes; i++) {
    dynq__bnode_t *s = &b->nodes[i];
    if (s->dead || s->op != DYNQ_OP_IF) continue;
    dynq__attr_t *ta = NULL, *ea = NULL;
    for (int j = 0; j < s->n_attr; j++) {
      if (strcmp(s->attr[j].name, "then_nodes") == 0) ta = &s->attr[j];
      if (strcmp(s->attr[j].name, "else_nodes") == 0) ea = &s->attr[j];
    }
    if (ta == NULL || ea == NULL) continue;
    int64_t t = 0, e = 0, tr = ta->i, er = ea->i;
    for (int64_t k = i + 1; k < i + 1 + tr + er && k < b->n_nodes; k++)
      if (!b->nodes[k].dead) *(k < i + 1 + tr ? &t : &e) += 1;
    ta->i = t;
    ea->i = e;
  }
  /* Likewise a loop's body (both ends carry the count). */
  for (int i = 0; i < b->n_nodes; i++) {
    dynq__bnode_t *s = &b->nodes[i];
    if (s->dead || s->op != DYNQ_OP_LOOP) continue;
    dynq__attr_t *la = NULL, *ea = NULL;
    for (int j = 0; j < s->n_attr; j++)
      if (strcmp(s->attr[j].name, "body_nodes") == 0) la = &s->attr[j];
    if (la == NULL || i + 1 + la->i >= b->n_nodes) continue;
    dynq__bnode_t *end = &b->nodes[i + 1 + la->i];
    for (int j = 0; j < end->n_attr; j++)
      if (strcmp(end->attr[j].name, "body_nodes") == 0) ea = &end->attr[j];
    if (ea == NULL || end->op != DYNQ_OP_LOOP_END) continue;
    int64_t live = 0;
    for (int64_t k = i + 1; k < i + 1 + la->i; k++) live += !b->nodes[k].dead;
    la->i = ea->i = live;
  }
  vals = dynq__imp_pool_alloc(&b->pool, (size_t)b->n_values * sizeof(*vals));
  nodes = dynq__imp_pool_alloc(&b->pool, (size_t)(nn + 1) * sizeof(*nodes));
  if (vals == NULL || nodes == NULL) goto oom;
  int nv = 0;
  for (int v = 0; v < b->n_values; v++) {
    remap[v] = keep[v] ? nv : -1;
    if (keep[v]) vals[nv++] = b->values[v];
  }
  int k = 0;
  for (int i = 0; i < b->n_nodes; i++) {
    const dynq__bnode_t *s = &b->nodes[i];
    if (s->dead) continue;
    int32_t *in = dynq__imp_pool_alloc(&b->pool, (size_t)(s->n_in + 1) * sizeof(int32_t));
    int32_t *out = dynq__imp_pool_alloc(&b->pool, (size_t)(s->n_out + 1) * sizeof(int32_t));
    dynq__attr_t *at = dynq__imp_pool_alloc(&b->pool, (size_t)(s->n_attr + 1) * sizeof(*at));
    if (in == NULL || out == NULL || at == NULL) goto oom;
    for (int j = 0; j < s->n_in; j++) in[j] = s->in[j] >= 0 ? remap[s->in[j]] : -1;
    for (int j = 0; j < s->n_out; j++) out[j] = s->out[j] >= 0 ? remap[s->out[j]] : -1;
    memcpy(at, s->attr, (size_t)s->n_attr * sizeof(*at));
    for (int j = 0; j < s->n_attr; j++)
      if (at[j].type == DYNQ_ATTR_INTS) at[j].i = remap[at[j].i];
    nodes[k++] = (dynq__node_t){.op = s->op, .name = s->name, .n_in = s->n_in,
                                .n_out = s->n_out, .in = in, .out = out,
                                .n_attr = s->n_attr, .attr = at};
  }
  for (int i = 0; i < b->n_inputs; i++) b->inputs[i] = remap[b->inputs[i]];
  for (int i = 0; i < b->n_outputs; i++) b->outputs[i] = remap[b->outputs[i]];
  *g = (dynq__graph_t){.n_values = nv, .values = vals, .n_nodes = nn,
                       .nodes = nodes, .n_inputs = b->n_inputs, .inputs = b->inputs,
                       .n_outputs = b->n_outputs, .outputs = b->outputs,
                       .producer = producer, .source_hash = hash};
  free(remap);
  free(keep);
  return 0;
oom:
  free(remap);
  free(keep);
  dynq__imp_errorf("out of memory");
  return -1;
}
