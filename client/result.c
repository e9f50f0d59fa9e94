/*
 * Decoding an infer answer's result map into one dynq_infer_result_t
 * block.  Both the connection layer (answers decoded as they arrive) and
 * the blocking API (answers already framed) call it, so it lives on its
 * own: neither of them has to call into the other for it.
 */
#include "client-internal.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const dynq__tensor_limits_t output_limits = {
  .max_rank = DYNQ_CLIENT_MAX_RANK,
  .max_elems = DYNQ_MAX_ELEMS,
};

/* What an output's map held (fields absent until seen). */
typedef struct out_fields {
  const char *dt;           /* dtype string, dtn bytes; NULL: absent */
  size_t dtn;
  int dtype;                /* what dt names; 0: none */
  int has_shape;
  uint32_t rank;
  int64_t dims[DYNQ_CLIENT_MAX_RANK];
  const void *data;         /* bin payload; has_data */
  size_t nbytes;
  int has_data, has_shm;
  uint64_t shm_size;
} out_fields_t;

#define ERR(...) (snprintf(err, errlen, __VA_ARGS__), DYNQ_EPROTO)

/* The {region, offset, size} of an shm output: only size matters here. */
static int read_shm_ref(dynq__rd_t *r, out_fields_t *f, char *err, size_t errlen) {
  uint32_t n;
  int64_t v;
  int have = 0;
  if (dynq__rd_map(r, &n) < 0) return ERR("'shm' is not a map");
  for (uint32_t i = 0; i < n; i++) {
    if (DYNQ__RD_KEY(r, "size")) {
      if (dynq__rd_int(r, &v) < 0 || v < 0) break;
      f->shm_size = (uint64_t)v;
      have = 1;
    } else if (dynq__rd_skip(r) < 0 || dynq__rd_skip(r) < 0) {
      break;
    }
  }
  if (!have) return ERR("shm reference without a valid 'size'");
  f->has_shm = 1;
  return 0;
}

/* The dtype string at r: a short one naming a dtype is taken as it is
 * (such a name is ASCII, so valid UTF-8: the check can wait for the
 * others, which are errors anyway). */
static int read_dtype(dynq__rd_t *r, out_fields_t *f) {
  size_t n = r->p < r->end && (r->p[0] & 0xe0) == 0xa0 ? r->p[0] & 0x1fu : 0;
  if (n > 0 && (size_t)(r->end - r->p) > n) {
    f->dtype = dynq__dt_parsen((const char *)r->p + 1, n);
    if (f->dtype != 0) {
      f->dt = (const char *)r->p + 1;
      f->dtn = n;
      r->p += 1 + n;
      return 0;
    }
  }
  if (dynq__rd_str(r, &f->dt, &f->dtn) < 0) return -1;
  f->dtype = dynq__dt_parsen(f->dt, f->dtn);
  return 0;
}

/* One output's map: {dtype, shape, data} or {dtype?, shape?, shm}. */
static int read_out_fields(dynq__rd_t *r, out_fields_t *f, char *err, size_t errlen) {
  uint32_t n;
  /* every field but the dims, which count only up to rank */
  memset(f, 0, offsetof(out_fields_t, dims));
  f->data = NULL;
  f->nbytes = 0;
  f->has_data = f->has_shm = 0;
  f->shm_size = 0;
  if (dynq__rd_map(r, &n) < 0) return ERR("tensor is not a map");
  for (uint32_t i = 0; i < n; i++) {
    if (DYNQ__RD_KEY(r, "dtype")) {
      if (read_dtype(r, f) < 0) return ERR("tensor field 'dtype' is not a string");
    } else if (DYNQ__RD_KEY(r, "shape")) {
      if (dynq__rd_array(r, &f->rank) < 0) return ERR("tensor field 'shape' is not an array");
      if (f->rank > DYNQ_CLIENT_MAX_RANK)
        return ERR("tensor rank %u exceeds the limit of %d", f->rank, DYNQ_CLIENT_MAX_RANK);
      for (uint32_t d = 0; d < f->rank; d++) {
        if (dynq__rd_int(r, &f->dims[d]) < 0)
          return ERR("tensor shape[%u] is not an integer in int64 range", d);
        if (f->dims[d] < 0) return ERR("tensor shape[%u] is negative (%lld)", d,
                                       (long long)f->dims[d]);
      }
      f->has_shape = 1;
    } else if (DYNQ__RD_KEY(r, "data")) {
      if (dynq__rd_bin(r, &f->data, &f->nbytes) < 0) return ERR("tensor field 'data' is not bin");
      f->has_data = 1;
    } else if (DYNQ__RD_KEY(r, "shm")) {
      if (read_shm_ref(r, f, err, errlen) < 0) return DYNQ_EPROTO;
    } else if (dynq__rd_skip(r) < 0 || dynq__rd_skip(r) < 0) {
      return ERR("tensor map is not valid msgpack");
    }
  }
  return 0;
}

/* Check f as output o (data still in the frame; the caller copies it). */
static int check_output(const out_fields_t *f, dynq_tensor_t *o, char *err, size_t errlen) {
  o->dtype = 0;
  if (f->dt != NULL) {
    o->dtype = f->dtype;
    if (o->dtype == 0)
      return ERR("unknown tensor dtype '%.*s'", (int)(f->dtn > 32 ? 32 : f->dtn), f->dt);
  }
  o->rank = (int)f->rank;
  /* every dim: the result's tensors are filled field by field */
  memcpy(o->shape, f->dims, sizeof(o->shape));
  for (uint32_t d = f->rank; d < DYNQ_CLIENT_MAX_RANK; d++) o->shape[d] = 0;
  if (f->has_shm) { /* written into the caller's region: only its size here */
    if (f->shm_size > SIZE_MAX) return ERR("shm size too large");
    /* a caller reads its region by the shape it is told: the two must agree */
    if (o->dtype != 0 && f->has_shape) {
      int64_t numel = dynq__dt_numel(o->rank, o->shape);
      if (numel < 0 || (uint64_t)numel > UINT64_MAX / 8 ||
          (uint64_t)numel * dynq__dt_size(o->dtype) != f->shm_size)
        return ERR("shm reference of %llu bytes does not hold the tensor its dtype and shape "
                   "describe", (unsigned long long)f->shm_size);
    }
    o->data = NULL;
    o->nbytes = (size_t)f->shm_size;
    return 0;
  }
  if (f->dt == NULL) return ERR("tensor field 'dtype' is missing");
  if (!f->has_shape) return ERR("tensor field 'shape' is missing");
  int64_t numel = dynq__dt_numel(o->rank, o->shape);
  if (numel < 0 || numel > output_limits.max_elems)
    return ERR("tensor has more than %lld elements", (long long)output_limits.max_elems);
  if (!f->has_data) return ERR("tensor field 'data' is missing");
  if ((uint64_t)f->nbytes != (uint64_t)numel * dynq__dt_size(o->dtype))
    return ERR("tensor data has %zu bytes, shape and dtype need %llu", f->nbytes,
               (unsigned long long)((uint64_t)numel * dynq__dt_size(o->dtype)));
  o->nbytes = f->nbytes;
  return 0;
}

/* Round up to the 64-byte line output data starts on (SIMD loads over it
 * are whole lines). */
static size_t line_up(size_t n) { return (n + 63) & ~(size_t)63; }

/* Result blocks: one per answer, on a 64-byte line, from plain malloc;
 * a header just below the block holds the pointer malloc gave and the
 * block's capacity.  (glibc's posix_memalign cost several hundred
 * instructions more per answer.)
 *
 * A freed block of at most SPARE_BYTES goes to its thread's spares (at
 * most SPARE_MAX of them) and the thread's next answers reuse it: a
 * pipeline frees as many results as it decodes, all of one size, and
 * malloc + free of a block that size cost ~450 instructions per answer
 * (it is past glibc's per-thread cache).  A thread holds at most
 * SPARE_MAX * SPARE_BYTES bytes this way; they are freed when it exits
 * (a key destructor) or closes a client (dynq_close). */
#define SPARE_MAX 32
#define SPARE_BYTES ((size_t)16 << 10)

typedef struct block_head {
  void *raw;                 /* what malloc returned */
  size_t cap;                /* usable bytes from the block's start */
} block_head_t;

typedef struct spares {
  int n;
  int keyed;                 /* this thread's destructor is armed */
  char *blk[SPARE_MAX];      /* owned; freed blocks, the last freed on top */
} spares_t;

static _Thread_local spares_t spares;
static pthread_key_t spares_key;
static int spares_key_ok;
static pthread_once_t spares_once = PTHREAD_ONCE_INIT;

static block_head_t *head_of(char *blk) { return (block_head_t *)blk - 1; }

static void spares_drop(void) {
  for (int i = 0; i < spares.n; i++) free(head_of(spares.blk[i])->raw);
  spares.n = 0;
}

static void spares_exit(void *unused) {
  (void)unused;
  spares_drop();
}

static void spares_key_init(void) {
  spares_key_ok = pthread_key_create(&spares_key, spares_exit) == 0;
}

void dynq__result_spares_drop(void) { spares_drop(); }

static char *block_alloc(size_t cap) {
  spares_t *sp = &spares;  /* one TLS lookup (a call in a shared library) */
  char *raw, *blk;
  if (sp->n > 0 && head_of(sp->blk[sp->n - 1])->cap >= cap) return sp->blk[--sp->n];
  if (cap > SIZE_MAX - 64 - sizeof(block_head_t)) return NULL;
  raw = malloc(cap + 64 + sizeof(block_head_t));
  if (raw == NULL) return NULL;
  blk = raw + line_up(sizeof(block_head_t) + ((uintptr_t)raw & 63)) - ((uintptr_t)raw & 63);
  head_of(blk)->raw = raw;
  head_of(blk)->cap = cap;
  return blk;
}

static void block_free(void *p) {
  char *blk = p;
  if (blk == NULL) return;
  spares_t *sp = &spares;
  if (head_of(blk)->cap <= SPARE_BYTES && sp->n < SPARE_MAX) {
    if (!sp->keyed) {
      /* without a destructor the spares would leak when the thread ends */
      pthread_once(&spares_once, spares_key_init);
      sp->keyed = spares_key_ok && pthread_setspecific(spares_key, sp) == 0;
    }
    if (sp->keyed) {
      sp->blk[sp->n++] = blk;
      return;
    }
  }
  free(head_of(blk)->raw);
}

#define BAD_FIELD(name) \
  (snprintf(err, errlen, "infer: reply field '%s' is missing or has the wrong type", name), \
   DYNQ_EPROTO)

/* One output's name and fields at r, checked into *o (name and data still
 * point into the bytes).  0, or DYNQ_EPROTO with the reason in err. */
static int read_output(dynq__rd_t *r, dynq_tensor_t *o, out_fields_t *f, size_t *ret_klen,
                       char *err, size_t errlen) {
  const char *key;
  size_t klen;
  char why[200];
  why[0] = '\0';
  if (dynq__rd_str(r, &key, &klen) < 0 || memchr(key, '\0', klen) != NULL)
    return BAD_FIELD("outputs key");
  if (read_out_fields(r, f, why, sizeof(why)) < 0 || check_output(f, o, why, sizeof(why)) < 0) {
    snprintf(err, errlen, "infer: output '%.*s': %s", (int)(klen > 200 ? 200 : klen), key, why);
    return DYNQ_EPROTO;
  }
  o->name = key;
  o->data = (void *)f->data;
  *ret_klen = klen;
  return 0;
}

/* Outputs whose first-pass reading decode_outputs keeps for the second
 * (answers have one or a few; more are read again). */
#define KEEP_OUTPUTS 8

/* The outputs map at r into res: one block holds the result, the tensor
 * array, then each name and each output's data on its own line.  A first
 * pass checks every output and sizes the block exactly (so an answer read
 * out of a buffer holding more answers allocates only its own size), the
 * second fills it: one allocation per answer, one copy of its data.  The
 * second pass reads outputs past KEEP_OUTPUTS again, and leaves r at the
 * map's end either way. */
static int decode_outputs(dynq__rd_t *r, dynq_infer_result_t *res, char *err, size_t errlen) {
  dynq_tensor_t kept[KEEP_OUTPUTS];
  size_t kept_klen[KEEP_OUTPUTS], kept_nbytes[KEEP_OUTPUTS];
  int kept_shm[KEEP_OUTPUTS];
  uint32_t n, i;
  size_t head, cap, klen;
  dynq__rd_t start;
  char *cur, *blk;
  int rc;

  if (dynq__rd_map(r, &n) < 0) return BAD_FIELD("outputs");
  if (n > DYNQ__CLIENT_MAX_IO) {
    snprintf(err, errlen, "infer: %u outputs (limit %d)", n, DYNQ__CLIENT_MAX_IO);
    return DYNQ_ETOOBIG;
  }
  head = line_up((size_t)n * sizeof(dynq_tensor_t));
  cap = head;
  start = *r;
  for (i = 0; i < n; i++) {
    dynq_tensor_t o;
    out_fields_t f;
    if (i == KEEP_OUTPUTS) start = *r;  /* the second pass reads on from here */
    rc = read_output(r, &o, &f, &klen, err, errlen);
    if (rc < 0) return rc;
    if (i < KEEP_OUTPUTS) {
      kept[i] = o;
      kept_klen[i] = klen;
      kept_nbytes[i] = f.nbytes;
      kept_shm[i] = f.has_shm;
    }
    /* names and data are bytes of the answer: no overflow */
    cap += klen + 1;
    if (!f.has_shm) cap = line_up(cap) + f.nbytes;
  }
  blk = block_alloc(cap);
  if (blk == NULL) {
    snprintf(err, errlen, "infer: out of memory (%zu bytes)", cap);
    return -ENOMEM;
  }
  res->outputs = (dynq_tensor_t *)blk;  /* each filled whole below */
  cur = blk + head;
  for (i = 0; i < n; i++) {
    dynq_tensor_t *o = &res->outputs[i];
    const void *data;
    size_t nbytes;
    int shm;
    if (i < KEEP_OUTPUTS) {
      *o = kept[i];
      klen = kept_klen[i];
      nbytes = kept_nbytes[i];
      shm = kept_shm[i];
    } else {
      out_fields_t f;
      if (i == KEEP_OUTPUTS) *r = start;
      /* the bytes passed the first pass: this cannot fail */
      rc = read_output(r, o, &f, &klen, err, errlen);
      if (rc < 0) goto fail;
      nbytes = f.nbytes;
      shm = f.has_shm;
    }
    data = o->data;
    memcpy(cur, o->name, klen);
    cur[klen] = '\0';
    o->name = cur;
    cur += klen + 1;
    if (shm) continue;
    cur = blk + line_up((size_t)(cur - blk));
    if (nbytes > 0) memcpy(cur, data, nbytes);
    o->data = cur;
    cur += nbytes;
  }
  res->n_outputs = (int)n;
  return 0;

fail:
  block_free(blk);
  res->outputs = NULL;
  return rc;
}

int dynq__decode_infer_result(const uint8_t *p, size_t len, dynq_infer_result_t *ret,
                              size_t *ret_used, char *err, size_t errlen) {
  dynq_infer_result_t res;
  dynq__rd_t r = {p, p + len};
  uint32_t n;
  int rc = 0;

  memset(&res, 0, sizeof(res));
  if (dynq__rd_map(&r, &n) < 0) return BAD_FIELD("result");
  for (uint32_t i = 0; i < n && rc == 0; i++) {
    if (DYNQ__RD_KEY(&r, "outputs")) {
      rc = res.outputs != NULL ? BAD_FIELD("outputs")  /* twice */
                               : decode_outputs(&r, &res, err, errlen);
    } else if (DYNQ__RD_KEY(&r, "compute_us")) {
      if (!dynq__rd_nil(&r) && dynq__rd_int(&r, &res.compute_us) < 0)
        rc = BAD_FIELD("compute_us");
    } else if (dynq__rd_skip(&r) < 0 || dynq__rd_skip(&r) < 0) {
      rc = BAD_FIELD("result");
    }
  }
  if (rc == 0 && res.outputs == NULL) rc = BAD_FIELD("outputs");
  if (rc < 0) {
    block_free(res.outputs);
    return rc;
  }
  if (ret_used != NULL) *ret_used = (size_t)(r.p - p);
  *ret = res;
  return 0;
}

#undef BAD_FIELD
#undef ERR

void dynq_infer_result_free(dynq_infer_result_t *r) {
  if (r == NULL) return;
  block_free(r->outputs);  /* one block with the names and data (see decode_outputs) */
  memset(r, 0, sizeof(*r));
}
