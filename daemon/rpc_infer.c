/*
 * The infer method: decode and validate a request on the loop (tensor
 * bytes are copied out of the read buffer, or viewed in a registered shm
 * region), then hand it to the scheduler; the answer is encoded on the
 * worker that ran it (encoding big tensors is real work) and sent when
 * the job is back on the loop.
 *
 * An answer its worker may write itself (dynqd__conn_direct_write) is
 * encoded without its output bytes: it has holes where they go, and they
 * are sent from the run's outputs (one iovec each), so the only copy of
 * them is the kernel's.  An answer the write did not take whole gets them
 * copied in before its outputs are let go, and the loop sends it.
 *
 * A small lone request runs on the loop instead (the scheduler's inline
 * policy): two thread hand-offs (a condvar wake-up of a worker, an eventfd
 * wake-up of the loop) cost more than such a run.  Session steps may run
 * inline too; their state is kept as after a worker run.
 *
 * No allocation per request once warm: a request's block goes back to a
 * pool on the server (the loop both takes and returns blocks) with two
 * buffers it keeps, one for the input bytes copied out of the read buffer
 * and one the answer is encoded into, each up to POOL_BUF_MAX.  Those are
 * the large allocations: served from glibc's bins rather than its
 * per-thread caches, allocated on one thread and freed on the other, they
 * took the arena locks and, through the merged batches' big chunks,
 * malloc_consolidate.
 *
 * Input bytes go first to the server's slab: a ring of SLAB_CHUNKS chunks
 * back to back in one allocation, filled in decode order, so requests
 * decoded one after another (what a coalesced batch mostly is) lie
 * adjacent and a merged run reads them in place instead of copying them
 * together (infer.c).  A request holds a reference on every chunk its
 * bytes touch until infer_free; the cursor enters a chunk only when no
 * request holds it, else jumps to a free one, else the block's own buffer
 * serves.  The slab is counted whole in the connections' total
 * (max_buffers_total) from its allocation: whatever a slow request pins
 * of it is always counted, and the requests in it are charged only for
 * their blocks.  It takes at most an eighth of that limit; a reload that
 * lowers the limit below that retires it once its requests are done.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "dynq/errors.h"
#include "dynqd.h"

/* Longest identifier we echo back in an error message. */
#define ECHO_MAX 64
/* Requests predicted to compute longer than this are not coalesced: the
 * fixed per-run costs merging shares are small next to theirs, and alone
 * they keep their own latency and may split their GEMMs. */
#define COALESCE_MAX_US 200.0
/* Longest timeout_ms honoured (a day); larger values mean "no deadline". */
#define MAX_TIMEOUT_MS (24ull * 3600 * 1000)
/* Blocks the pool keeps, and the largest buffer a kept block keeps: at
 * most 256 * 2 * 16 KiB = 8 MiB held for reuse. */
#define POOL_MAX 256
#define POOL_BUF_MAX ((size_t)16 << 10)
/* The slab: SLAB_CHUNKS chunks of 256 KiB (smaller when max_buffers_total
 * is: the slab takes at most an eighth of it). */
#define SLAB_CHUNKS 4
#define SLAB_SHIFT_MAX 18
#define SLAB_SHIFT_MIN 12

typedef struct slab {
  uint8_t *base;           /* owned (dynq__aligned_alloc): the chunks */
  size_t size;             /* SLAB_CHUNKS << shift bytes at base */
  int shift;               /* a chunk is 1 << shift bytes */
  size_t pos;              /* offset of the next free byte (size: at the end) */
  size_t lim;              /* end of the chunks the cursor has entered
                              (pos <= lim; 0 with pos 0: none yet) */
  int live;                /* requests with bytes in the slab */
  int refs[SLAB_CHUNKS];   /* requests with bytes in each chunk */
} slab_t;

/* Output tensors an answer may send from where they lie (below), and the
 * smallest worth an iovec of its own rather than a copy. */
#define HOLE_MAX 4
#define HOLE_MIN 256

/* An infer request and what answering it needs. */
typedef struct rpc_infer {
  dynqd_infer_t x;            /* first: the scheduler's job is first in it */
  dynqd_req_t rq;             /* deferred when submitted */
  dynqd_server_t *srv;
  dynqd_mstats_t *mstats;     /* loop-owned per-model record; not owned */
  size_t max_resp;            /* bigger answers become ELIMIT (max_output) */
  int64_t decode_us;
  uint8_t *resp;              /* owned: the encoded answer */
  size_t resp_len;
  size_t charged;             /* bytes counted against its connection while
                                 it waits for and runs on a worker */
  int coalesce;               /* batch_max is coalesce_max (may run inline) */
  int direct;                 /* the worker may write the answer itself */
  int tried;                  /* worker: answer() looked at it */
  int wrote;                  /* worker: its direct write ran */
  size_t sent;                /* worker: bytes of resp that write took */
  int shadow;                 /* sampled for an FP32 re-run (shadow.c) */
  dynq__tensor_t *shadow_out; /* owned: its INT8 outputs, kept by encode */
  size_t resp_cap;            /* bytes allocated at resp */
  int axes_n;                 /* entries allocated at x.axes */
  dynqd_plan_t *plan;         /* one ref, or NULL; when set, x.model and
                                 (if batched) x.axes are the plan's */
  /* Kept across uses of the block (the pool's): */
  struct rpc_infer *pool_next;
  uint8_t *inbuf;             /* owned (dynq__aligned_alloc): input bytes of
                                 the request, views of it in x.inputs */
  size_t inbuf_cap, inbuf_used;
  uint8_t *rbuf;              /* owned: where the next answer is encoded */
  size_t rbuf_cap;
  void *in_arr;               /* owned: the next request's x.inputs array
                                 (in_arr_cap entries), NULL while in use */
  int in_arr_cap;
  void *axes_arr;             /* owned: the next request's x.axes (axes_cap
                                 entries), NULL while in use */
  int axes_cap;
  /* Its input bytes in the server's slab: [slab_lo, slab_hi) when
   * in_slab, with a reference on each chunk c0..c1 that range touches. */
  int in_slab;
  size_t slab_lo, slab_hi;
  int slab_c0, slab_c1;
  /* Worker only, from encode_begin until its write is over (after
   * pool_next: the loop's clearing of a block does not touch these lines):
   * output bytes resp has room for but does not hold yet (hole[i].at, .n),
   * sent from where they lie (.p, the run's outputs, alive until then);
   * copied in only when the answer did not go out whole (settle), so that
   * nothing else sees the holes. */
  int n_holes;
  struct {
    size_t at, n;
    const void *p;
  } hole[HOLE_MAX];
} rpc_infer_t;

static rpc_infer_t *block_get(dynqd_server_t *s) {
  rpc_infer_t *r = s->infer_pool;
  if (r == NULL) return calloc(1, sizeof(*r));
  s->infer_pool = r->pool_next;
  s->infer_pooled--;
  /* Everything before pool_next is the last request's; the rest is kept. */
  memset(r, 0, offsetof(rpc_infer_t, pool_next));
  r->pool_next = NULL;
  r->inbuf_used = 0;
  r->in_slab = 0;
  return r;
}

static slab_t slab_none;  /* s->infer_slab after a failed allocation */

/* The server's slab, allocated (and counted) at first use; NULL when it
 * could not be (tried once). */
static void slab_free(dynqd_server_t *s);

static slab_t *slab_of(dynqd_server_t *s) {
  slab_t *sl = s->infer_slab;
  if (sl != NULL && sl != &slab_none && sl->size <= s->cfg->max_buffers_total / 8) return sl;
  if (sl == &slab_none) return NULL;
  if (sl != NULL) {
    /* A reload lowered max_buffers_total under the slab's share: unused
     * until its requests are done, then made again to the new size. */
    if (sl->live > 0) return NULL;
    slab_free(s);
  }
  int shift = SLAB_SHIFT_MAX;
  while (shift > SLAB_SHIFT_MIN &&
         ((uint64_t)SLAB_CHUNKS << shift) > s->cfg->max_buffers_total / 8)
    shift--;
  s->infer_slab = &slab_none;
  if (((uint64_t)SLAB_CHUNKS << shift) > s->cfg->max_buffers_total / 8 ||
      (sl = calloc(1, sizeof(*sl))) == NULL)
    return NULL;
  sl->shift = shift;
  sl->size = (size_t)SLAB_CHUNKS << shift;
  if ((sl->base = dynq__aligned_alloc(sl->size)) == NULL) {
    free(sl);
    return NULL;
  }
  s->infer_slab = sl;
  s->buffers += sl->size;
  s->slab_bytes = sl->size;
  return sl;
}

/* Room for n (aligned) input bytes of r in the slab, or NULL.  A
 * request's bytes are one range: its later inputs follow its first, or
 * go elsewhere. */
static void *slab_space(rpc_infer_t *r, size_t n) {
  slab_t *sl = slab_of(r->srv);
  if (sl == NULL || n > ((size_t)1 << sl->shift)) return NULL;
  size_t p = sl->pos;
  if (r->in_slab && p != r->slab_hi) return NULL;
  if (p + n > sl->lim) {
    /* It enters chunks: they must be free, else (for a request's first
     * bytes) a free chunk is taken, those after the cursor's first (the
     * one after the last is the first: the ring's adjacency breaks there
     * only). */
    size_t c = sl->lim >> sl->shift, end = p + n;
    int ok = end <= sl->size;
    for (; ok && (c << sl->shift) < end; c++) ok = sl->refs[c] == 0;
    if (!ok) {
      if (r->in_slab) return NULL;
      size_t cur = sl->lim == 0 ? SLAB_CHUNKS - 1 : (sl->lim >> sl->shift) - 1;
      int k = 1;
      while (k <= SLAB_CHUNKS && sl->refs[(cur + (size_t)k) % SLAB_CHUNKS] != 0) k++;
      if (k > SLAB_CHUNKS) return NULL;
      p = ((cur + (size_t)k) % SLAB_CHUNKS) << sl->shift;
      end = p + n;
    }
    sl->lim = (((end - 1) >> sl->shift) + 1) << sl->shift;
  }
  /* a reference on each chunk the range touches that r does not hold */
  int c1 = (int)((p + n - 1) >> sl->shift);
  if (!r->in_slab) {
    r->in_slab = 1;
    r->slab_lo = p;
    r->slab_c0 = r->slab_c1 = (int)(p >> sl->shift);
    sl->refs[r->slab_c0]++;
    sl->live++;
  }
  while (r->slab_c1 < c1) sl->refs[++r->slab_c1]++;
  r->slab_hi = p + n;
  sl->pos = p + n;
  return sl->base + p;
}

/* r's references on the slab go (its bytes are no longer read). */
static void slab_release(rpc_infer_t *r) {
  if (!r->in_slab) return;
  slab_t *sl = r->srv->infer_slab;
  for (int c = r->slab_c0; c <= r->slab_c1; c++) sl->refs[c]--;
  r->in_slab = 0;
  /* an idle slab starts again at its beginning, where the caches are
   * warm; one a reload made too big goes */
  if (--sl->live == 0) {
    sl->pos = sl->lim = 0;
    if (sl->size > r->srv->cfg->max_buffers_total / 8) slab_free(r->srv);
  }
}

static void slab_free(dynqd_server_t *s) {
  slab_t *sl = s->infer_slab;
  if (sl != NULL && sl != &slab_none) {
    s->buffers -= sl->size;
    dynq__aligned_free(sl->base);
    free(sl);
  }
  s->infer_slab = NULL;
  s->slab_bytes = 0;
}

void dynqd__rpc_infer_limits_changed(dynqd_server_t *s) {
  slab_t *sl = s->infer_slab;
  /* an idle slab over its new share goes now, not at its next use: until
   * then it would count against the connections and shed one; a slab that
   * could not be made is tried again */
  if (sl == &slab_none || (sl != NULL && sl->live == 0 &&
                           sl->size > s->cfg->max_buffers_total / 8))
    slab_free(s);
}

static void block_release(rpc_infer_t *r) {
  dynq__aligned_free(r->inbuf);
  free(r->rbuf);
  free(r->in_arr);
  free(r->axes_arr);
  free(r);
}

/* An array of n elements of size es for r's request: the block's kept one
 * (*slot, *cap elements) when it is big enough, else a new one (kept in
 * its place by infer_free); zeroed when zero is set. */
static void *array_get(void **slot, int cap, int n, size_t es, int zero) {
  if (*slot == NULL || cap < n) return zero ? calloc((size_t)n, es) : malloc((size_t)n * es);
  void *a = *slot;
  *slot = NULL;
  if (zero) memset(a, 0, (size_t)n * es);
  return a;
}

/* n zeroed input slots for r's request. */
static dynq__tensor_t *inputs_get(rpc_infer_t *r, int n) {
  return array_get(&r->in_arr, r->in_arr_cap, n < 1 ? 1 : n, sizeof(dynq__tensor_t), 1);
}

void dynqd__rpc_infer_pool_free(dynqd_server_t *s) {
  for (rpc_infer_t *r = s->infer_pool, *n; r != NULL; r = n) {
    n = r->pool_next;
    block_release(r);
  }
  s->infer_pool = NULL;
  s->infer_pooled = 0;
  slab_free(s);
}

/* arr (n entries, owned) becomes the block's kept array *slot (*cap
 * entries) when that is missing or smaller; else it is freed. */
static void keep_array(void **slot, int *cap, void *arr, int n) {
  if (*slot == NULL || *cap < n) {
    free(*slot);
    *slot = arr;
    *cap = n;
  } else {
    free(arr);
  }
}

static void infer_free(rpc_infer_t *r) {
  if (r == NULL) return;
  dynqd_server_t *s = r->srv;
  if (r->shadow_out != NULL)
    for (int i = 0; i < dynq__model_signature(r->x.model)->n_outputs; i++)
      dynq__tensor_clear(&r->shadow_out[i]);
  free(r->shadow_out);
  r->shadow_out = NULL;
  dynqd_infer_t *x = &r->x;
  dynqd_plan_t *plan = r->plan;
  if (plan != NULL) {  /* x's model and axes are borrowed from it */
    dynqd__infer_out_done(x);  /* the last use of x->model */
    if (x->axes == plan->axes) x->axes = NULL;
    x->model = NULL;
    r->plan = NULL;
  }
  if (x->inputs != NULL && s != NULL && s->infer_pooled < POOL_MAX) {
    /* The array stays with the block for its next request. */
    for (int i = 0; i < x->n_inputs; i++) dynq__tensor_clear(&x->inputs[i]);
    keep_array(&r->in_arr, &r->in_arr_cap, x->inputs, x->n_inputs > 0 ? x->n_inputs : 1);
    x->inputs = NULL;
    x->n_inputs = 0;
    if (x->axes != NULL)  /* likewise its batch axes */
      keep_array(&r->axes_arr, &r->axes_cap, x->axes, r->axes_n);
    x->axes = NULL;
  }
  dynqd__infer_clear(x);  /* the inputs' views into inbuf go first */
  slab_release(r);
  /* The answer's buffer (not handed to the connection) is the next one's. */
  if (r->resp != NULL) {
    if (r->resp_cap <= POOL_BUF_MAX && r->resp_cap > r->rbuf_cap) {
      free(r->rbuf);
      r->rbuf = r->resp;
      r->rbuf_cap = r->resp_cap;
    } else {
      free(r->resp);
    }
    r->resp = NULL;
  }
  dynqd__plan_unref(plan);
  if (s == NULL || s->infer_pooled >= POOL_MAX) {
    block_release(r);
    return;
  }
  r->pool_next = s->infer_pool;
  s->infer_pool = r;
  s->infer_pooled++;
}

/* Room for n input bytes in r's input buffer (aligned), or NULL: the
 * tensor then gets its own allocation.  The buffer is (re)sized only while
 * nothing in it is used. */
static void *in_space(rpc_infer_t *r, size_t n) {
  size_t need = r->inbuf_used + ((n + DYNQ_ALIGN - 1) & ~(size_t)(DYNQ_ALIGN - 1));
  if (need > r->inbuf_cap) {
    if (r->inbuf_used > 0 || need > POOL_BUF_MAX) return NULL;
    size_t cap = (need + 4095) & ~(size_t)4095;
    uint8_t *nb = dynq__aligned_alloc(cap);
    if (nb == NULL) return NULL;
    dynq__aligned_free(r->inbuf);
    r->inbuf = nb;
    r->inbuf_cap = cap;
  }
  void *p = r->inbuf + r->inbuf_used;
  r->inbuf_used = need;
  return p;
}

/* The answers of one merged batch differ only in their msgid, output
 * bytes, queue_us and decode_us (compute_us, batch and threads are the
 * batch's) when their outputs have the same dtypes
 * and shapes: the first answer, with where those parts lie in it, is the
 * pattern the others are copied from around their own parts. */
#define LIKE_OUT_MAX 4
typedef struct like {
  const uint8_t *p;              /* the first answer (its request's resp) */
  size_t len;
  size_t body;                   /* just past [1, msgid, nil */
  int n_out;
  size_t data[LIKE_OUT_MAX];     /* where each output's bytes begin */
  size_t nbytes[LIKE_OUT_MAX];
  int dtype[LIKE_OUT_MAX], rank[LIKE_OUT_MAX];
  int64_t dims[LIKE_OUT_MAX][DYNQ_MAX_RANK];
  size_t q, q_end, d, d_end;     /* the queue_us and decode_us values */
  int64_t compute_us;
  int batched, threads;
} like_t;

/* After the answer is in w: sessions keep their state, a shadowed
 * request its outputs (the rest are freed by settle, once the answer no
 * longer needs them) and w becomes r->resp (or a small error when it
 * could not be written). */
static void encode_done(rpc_infer_t *r, dynq__wbuf_t *w) {
  dynqd_infer_t *x = &r->x;
  const dynq__model_sig_t *g = dynq__model_signature(x->model);
  /* The session keeps its bound outputs as the next state (the loop
   * swaps them in); the rest is freed now. */
  if (x->status == 0) dynqd__infer_take_state(x);
  if (x->out != NULL && r->shadow && x->status == 0 &&
      (r->shadow_out = calloc((size_t)g->n_outputs, sizeof(*r->shadow_out))) != NULL) {
    /* a shadowed request keeps its INT8 outputs for the comparison */
    memcpy(r->shadow_out, x->out, (size_t)g->n_outputs * sizeof(*x->out));
    memset(x->out, 0, (size_t)g->n_outputs * sizeof(*x->out));
  }
  if (w->err != 0) {  /* try once more with a small error response */
    dynq__wbuf_free(w);
    dynq__wbuf_init(w);
    r->n_holes = 0;
    x->status = -ENOMEM;
    dynq__w_error_response(w, r->rq.msgid, -ENOMEM, "out of memory encoding the result");
  }
  if (w->err == 0) {
    r->resp_cap = w->cap;
    r->resp = dynq__wbuf_steal(w, &r->resp_len);
  }
  dynq__wbuf_free(w);
}

static void put_bytes(dynq__wbuf_t *w, const void *p, size_t n) {
  uint8_t *dst = dynq__wbuf_reserve(w, n);
  if (dst == NULL || n == 0) return;
  memcpy(dst, p, n);
  w->len += n;
}

/* A tensor's bytes p[0..n) next in r's answer: a hole when its worker may
 * send them from where they lie (the user-space copy of an answer that
 * goes out whole is saved), else copied. */
static void put_data(rpc_infer_t *r, dynq__wbuf_t *w, const void *p, size_t n) {
  if (!r->direct || n < HOLE_MIN || r->n_holes == HOLE_MAX) {
    put_bytes(w, p, n);
    return;
  }
  if (dynq__wbuf_reserve(w, n) == NULL) return;
  r->hole[r->n_holes].at = w->len;
  r->hole[r->n_holes].n = n;
  r->hole[r->n_holes++].p = p;
  w->len += n;
}

/* A writer on the block's buffer (grown by realloc if need be). */
static void encode_begin(rpc_infer_t *r, dynq__wbuf_t *w) {
  dynq__wbuf_init(w);
  r->n_holes = 0;
  w->data = r->rbuf;
  w->cap = r->rbuf_cap;
  r->rbuf = NULL;
  r->rbuf_cap = 0;
}

/* Encode x's result (its outputs are taken and freed) into r->resp.  With
 * pat: a successful answer of inline tensors is noted there as the
 * pattern of its batch (pat->p set). */
static void encode(rpc_infer_t *r, like_t *pat) {
  dynqd_infer_t *x = &r->x;
  const dynq__model_sig_t *g = dynq__model_signature(x->model);
  dynq__wbuf_t w;
  encode_begin(r, &w);
  if (pat != NULL) {
    pat->p = NULL;
    pat->n_out = g->n_outputs;
  }
  if (pat != NULL && (x->status != 0 || x->out_shm != NULL || g->n_outputs > LIKE_OUT_MAX))
    pat = NULL;
  if (x->status != 0) {
    dynq__w_error_response(&w, r->rq.msgid, x->status, x->err);
  } else {
    /* Counted maps: a self-counting one would move the whole answer,
     * tensors included, behind its header when it closes. */
    dynq__w_result_head(&w, r->rq.msgid);
    if (pat != NULL) pat->body = w.len;
    dynq__w_map(&w, 4 + (x->batched > 1) + (x->job.threads > 1));
    dynq__w_str(&w, "outputs");
    dynq__w_map(&w, (uint32_t)g->n_outputs);
    for (int i = 0; i < g->n_outputs; i++) {
      dynq__w_str(&w, g->outputs[i].name);
      const dynqd_shm_ref_t *sr = x->out_shm ? &x->out_shm[i] : NULL;
      if (sr != NULL && sr->region != NULL) {
        const dynq__tensor_t *t = &x->out[i];
        dynq__w_map(&w, 3);
        dynq__w_str(&w, "dtype");
        dynq__w_str(&w, dynq__dtype_name(t->dtype));
        dynq__w_str(&w, "shape");
        dynq__w_array(&w, (uint32_t)t->rank);
        for (int d = 0; d < t->rank; d++) dynq__w_int(&w, t->dims[d]);
        dynq__w_str(&w, "shm");
        dynq__w_map(&w, 3);
        dynq__w_str(&w, "region");
        dynq__w_uint(&w, sr->region_id);
        dynq__w_str(&w, "offset");
        dynq__w_uint(&w, sr->offset);
        dynq__w_str(&w, "size");
        dynq__w_uint(&w, sr->size);
      } else {
        const dynq__tensor_t *t = &x->out[i];
        dynq__w_tensor_head(&w, t);
        if (w.err == 0) put_data(r, &w, t->data, dynq__tensor_nbytes(t));
        if (pat != NULL) {  /* the tensor's bytes end what it wrote */
          pat->nbytes[i] = dynq__tensor_nbytes(t);
          pat->data[i] = w.len - pat->nbytes[i];
          pat->dtype[i] = t->dtype;
          pat->rank[i] = t->rank;
          memcpy(pat->dims[i], t->dims, sizeof(pat->dims[i]));
        }
      }
    }
    dynq__w_str(&w, "compute_us");
    dynq__w_int(&w, x->compute_us);
    dynq__w_str(&w, "queue_us");
    if (pat != NULL) pat->q = w.len;
    dynq__w_int(&w, x->job.queue_us);
    if (pat != NULL) pat->q_end = w.len;
    dynq__w_str(&w, "decode_us");
    if (pat != NULL) pat->d = w.len;
    dynq__w_int(&w, r->decode_us);
    if (pat != NULL) pat->d_end = w.len;
    if (x->batched > 1) {  /* ran merged with this many requests */
      dynq__w_str(&w, "batch");
      dynq__w_int(&w, x->batched);
    }
    if (x->job.threads > 1) {  /* ran alone (or its batch did), its GEMMs split */
      dynq__w_str(&w, "threads");
      dynq__w_int(&w, x->job.threads);
    }
    if (w.err == 0 && w.len > r->max_resp) {
      size_t big = w.len;
      char msg[160];
      dynq__wbuf_reset(&w);
      r->n_holes = 0;
      snprintf(msg, sizeof(msg), "result of %zu bytes exceeds the %zu-byte output limit "
               "(--max-output)", big, r->max_resp);
      x->status = DYNQ_ELIMIT;
      dynq__w_error_response(&w, r->rq.msgid, DYNQ_ELIMIT, msg);
      pat = NULL;
    }
  }
  if (pat != NULL && w.err == 0) {
    pat->len = w.len;
    pat->compute_us = x->compute_us;
    pat->batched = x->batched;
    pat->threads = x->job.threads;
  } else {
    pat = NULL;
  }
  encode_done(r, &w);
  if (pat != NULL && r->resp != NULL && x->status == 0) pat->p = r->resp;
}

/* Encode r's answer from its batch's pattern (the same bytes encode would
 * write); -1 when its answer does not fit the pattern: encode it then. */
static int encode_like(rpc_infer_t *r, const like_t *pat) {
  dynqd_infer_t *x = &r->x;
  if (pat->p == NULL || x->status != 0 || x->out_shm != NULL || x->job.threads != pat->threads ||
      x->batched != pat->batched || x->compute_us != pat->compute_us ||
      dynq__model_signature(x->model)->n_outputs != pat->n_out ||
      pat->len + 32 > r->max_resp)  /* the limit is encode's to report */
    return -1;
  for (int i = 0; i < pat->n_out; i++) {
    const dynq__tensor_t *t = &x->out[i];
    if ((int)t->dtype != pat->dtype[i] || t->rank != pat->rank[i]) return -1;
    for (int d = 0; d < t->rank; d++)
      if (t->dims[d] != pat->dims[i][d]) return -1;
  }
  dynq__wbuf_t w;
  encode_begin(r, &w);
  dynq__wbuf_reserve(&w, pat->len + 32);
  dynq__w_result_head(&w, r->rq.msgid);
  size_t at = pat->body;
  for (int i = 0; i < pat->n_out; i++) {
    put_bytes(&w, pat->p + at, pat->data[i] - at);
    put_data(r, &w, x->out[i].data, pat->nbytes[i]);
    at = pat->data[i] + pat->nbytes[i];
  }
  put_bytes(&w, pat->p + at, pat->q - at);
  dynq__w_int(&w, x->job.queue_us);
  put_bytes(&w, pat->p + pat->q_end, pat->d - pat->q_end);
  dynq__w_int(&w, r->decode_us);
  put_bytes(&w, pat->p + pat->d_end, pat->len - pat->d_end);
  encode_done(r, &w);
  return 0;
}

static int may_write(const rpc_infer_t *r) {
  return r->direct && r->resp != NULL && !atomic_load(&r->rq.conn->dead);
}

/* r's answer as pieces into iov (at most 2 * HOLE_MAX + 1): its encoded
 * bytes around the holes, and the output bytes that fill them. */
static int answer_iov(const rpc_infer_t *r, struct iovec *iov) {
  int n = 0;
  size_t at = 0;
  for (int h = 0; h < r->n_holes; h++) {
    if (r->hole[h].at > at) iov[n++] = (struct iovec){r->resp + at, r->hole[h].at - at};
    iov[n++] = (struct iovec){(void *)r->hole[h].p, r->hole[h].n};
    at = r->hole[h].at + r->hole[h].n;
  }
  if (r->resp_len > at || n == 0) iov[n++] = (struct iovec){r->resp + at, r->resp_len - at};
  return n;
}

/* Worker: the answers of v[0..n) are encoded; those that may be written
 * here go out together, one write per connection. */
static void answer(rpc_infer_t **v, int n) {
  enum { PIECES = 2 * HOLE_MAX + 1 };
  for (int k = 0; k < n; k++) {
    if (!may_write(v[k]) || v[k]->tried) continue;
    dynqd_conn_t *c = v[k]->rq.conn;
    rpc_infer_t *grp[DYNQD_DIRECT_MAX];
    struct iovec iov[DYNQD_DIRECT_IOV];
    int niov[DYNQD_DIRECT_MAX];
    size_t sent[DYNQD_DIRECT_MAX];
    int m = 0, used = 0;
    for (int i = k; i < n && m < DYNQD_DIRECT_MAX && used + PIECES <= DYNQD_DIRECT_IOV; i++) {
      if (v[i]->rq.conn != c || !may_write(v[i]) || v[i]->tried) continue;
      v[i]->tried = 1;
      grp[m] = v[i];
      niov[m] = answer_iov(v[i], iov + used);
      used += niov[m++];
    }
    if (dynqd__conn_direct_write(c, iov, niov, m, sent) != 0) continue;  /* the loop writes */
    for (int i = 0; i < m; i++) {
      grp[i]->wrote = 1;
      grp[i]->sent = sent[i];
    }
  }
}

/* Worker, after answer: an answer that did not go out whole gets the
 * bytes of its holes (the loop sends it, or its rest, from resp); then
 * the run's outputs are let go, before the worker's next merged run. */
static void settle(rpc_infer_t *r) {
  if (r->resp != NULL && !(r->wrote && r->sent == r->resp_len))
    for (int h = 0; h < r->n_holes; h++)
      memcpy(r->resp + r->hole[h].at, r->hole[h].p, r->hole[h].n);
  r->n_holes = 0;
  dynqd__infer_out_done(&r->x);
}

/* Loop: x's run on the loop outgrew its prediction (job.requeue).  Its
 * model's cost estimates are raised to at least twice the inline limit at
 * this size, so requests like it go to the workers until the runs the
 * workers measure bring the estimates back down. */
static void overran(rpc_infer_t *r) {
  dynqd_mstats_t *ms = r->mstats;
  if (ms == NULL || r->x.in_elems <= 0) return;
  double floor = 2000.0 * (double)r->srv->cfg->inline_max_us / (double)r->x.in_elems;
  if (ms->ns_per_elem < floor) ms->ns_per_elem = floor;
  if (ms->ns_per_elem_merged < floor) ms->ns_per_elem_merged = floor;
}

static void job_run(dynqd_job_t *j) {
  rpc_infer_t *r = (rpc_infer_t *)j;
  dynqd__infer_run(&r->x);
  if (j->requeue) {
    overran(r);
    return;
  }
  encode(r, NULL);
  answer(&r, 1);
  settle(r);
}

static int job_run_batch(dynqd_job_t **v, int n) {
  dynq__tensor_t *keep;  /* merged outputs the answers' views point into */
  if (dynqd__infer_run_merged((dynqd_infer_t **)v, n, &keep) != 0) {
    if (v[0]->requeue) overran((rpc_infer_t *)v[0]);
    return -1;
  }
  like_t pat = {0};
  for (int k = 0; k < n; k++) {
    rpc_infer_t *r = (rpc_infer_t *)v[k];
    if (encode_like(r, &pat) != 0) encode(r, pat.p == NULL ? &pat : NULL);
  }
  answer((rpc_infer_t **)v, n);
  for (int k = 0; k < n; k++) settle((rpc_infer_t *)v[k]);
  dynqd__infer_keep_free(((rpc_infer_t *)v[0])->x.model, keep);
  return 0;
}

static int job_compatible(const dynqd_job_t *a, const dynqd_job_t *b) {
  return dynqd__infer_compatible((const dynqd_infer_t *)a, (const dynqd_infer_t *)b);
}

static void job_expire(dynqd_job_t *j, const char *msg) {
  rpc_infer_t *r = (rpc_infer_t *)j;
  r->x.status = DYNQ_EDEADLINE;
  snprintf(r->x.err, sizeof(r->x.err), "%s", msg);
  encode(r, NULL);
  answer(&r, 1);
  settle(r);
}

/* The inputs that are views into the slab or the block's buffer get
 * their own copy (they leave with the request: the shadow service frees
 * them). */
static int own_inputs(rpc_infer_t *r) {
  dynqd_infer_t *x = &r->x;
  for (int i = 0; i < x->n_inputs; i++) {
    dynq__tensor_t *t = &x->inputs[i];
    const uint8_t *d = t->data;
    const slab_t *sl = r->in_slab ? r->srv->infer_slab : NULL;
    int in_block = r->inbuf != NULL && d >= r->inbuf && d < r->inbuf + r->inbuf_cap;
    int in_slab = sl != NULL && d >= sl->base + r->slab_lo && d < sl->base + r->slab_hi;
    if (t->owned || d == NULL || (!in_block && !in_slab))
      continue;  /* owned, absent, session state or shm: as before */
    dynq__tensor_t c;
    if (dynq__tensor_alloc_uninit(&c, t->dtype, t->rank, t->dims) != 0) return -ENOMEM;
    memcpy(c.data, d, dynq__tensor_nbytes(t));
    *t = c;
  }
  return 0;
}

/* Back on the loop (from a worker, or inline): stats, session, answer. */
static void job_done(dynqd_job_t *j) {
  rpc_infer_t *r = (rpc_infer_t *)j;
  dynqd_infer_t *x = &r->x;
  dynqd_server_t *s = r->srv;
  if (r->charged > 0) dynqd__conn_uncharge(r->rq.conn, r->charged);
  dynqd__registry_check_broken(x->model, r->mstats ? r->mstats->name : NULL);
  if (!j->skipped) {  /* nobody was there to answer: not counted */
    dynqd_run_sample_t smp = {x->status, j->queue_us, x->compute_us, x->batched,
                              j->threads, x->in_elems};
    dynqd__stats_run(&s->stats, r->mstats, &smp);
  }
  if (x->session != NULL)
    dynqd__session_done(&s->sessions, x->session, x->status == 0 && !j->skipped, x->sess_new);
  size_t sent = r->wrote ? r->sent : 0;
  if (r->direct)  /* what the worker left of a frame it began goes first */
    dynqd__conn_direct_end(r->rq.conn, r->wrote, sent > 0 ? r->resp + sent : NULL,
                           sent > 0 ? r->resp_len - sent : 0);
  if (sent > 0) {
    dynqd__reply_done(&r->rq);  /* the worker wrote it, or began to */
  } else if (r->resp != NULL) {
    dynqd__reply_frame(&r->rq, r->resp, r->resp_len);  /* the connection's now */
    r->resp = NULL;
  } else {
    dynqd__reply_error(&r->rq, -ENOMEM, "out of memory encoding the result");
  }
  if (r->shadow) {
    /* answered: the inputs and INT8 outputs move to the shadow service */
    if (r->shadow_out != NULL && x->status == 0 && !j->skipped && own_inputs(r) == 0) {
      int no = dynq__model_signature(x->model)->n_outputs;
      if (x->session != NULL)
        dynqd__shadow_submit_step(&s->shadow, r->mstats, x->model, x->session->shadow,
                                  x->inputs, x->n_inputs, r->shadow_out, no);
      else
        dynqd__shadow_submit(&s->shadow, r->mstats, x->model, x->inputs, x->n_inputs,
                             r->shadow_out, no);
      x->inputs = NULL;
      x->n_inputs = 0;
      r->shadow_out = NULL;
    } else {
      /* not run: a session's twin would miss a step it did not see; an
       * INT8 step that failed left the session's state alone, and so
       * does the twin */
      if (x->session != NULL && (x->status == 0 || j->skipped))
        dynqd__shadow_sess_abandon(x->session->shadow);
      if (r->mstats != NULL) {
        r->mstats->shadow.dropped++;
        s->shadow.dropped_total++;
      }
    }
  }
  infer_free(r);
}

static const dynqd_job_ops_t infer_ops = {job_run, job_run_batch, job_compatible, job_expire,
                                          job_done, sizeof(rpc_infer_t)};

/* An error answered while decoding: counted in stats, then `fail`. */
#define FAIL(code, ...)                                \
  do {                                                 \
    ecode = (code);                                    \
    dynqd__reply_error(rq, ecode, __VA_ARGS__);        \
    goto fail;                                         \
  } while (0)

/* {region, offset, size} of this connection: a ref held by the request. */
static int shm_ref_obj(rpc_infer_t *r, dynq__obj_t o, dynqd_shm_ref_t *ret, char *err,
                       size_t errlen) {
  int64_t id, off, size;
  if (dynq__obj_kind(o) != DYNQ_OBJ_MAP) {
    snprintf(err, errlen, "shm reference must be a map {region, offset, size}");
    return DYNQ_EPARAMS;
  }
  if (dynq__obj_int(dynq__obj_get(o, "region"), &id) != 0 || id < 0) {
    snprintf(err, errlen, "shm.region must be a region id");
    return DYNQ_EPARAMS;
  }
  if (dynq__obj_int(dynq__obj_get(o, "offset"), &off) != 0 || off < 0 ||
      dynq__obj_int(dynq__obj_get(o, "size"), &size) != 0 || size < 0) {
    snprintf(err, errlen, "shm.offset and shm.size must be non-negative integers");
    return DYNQ_EPARAMS;
  }
  return dynqd__shm_ref(&r->rq.conn->shm, &r->x.shm, (uint64_t)id, (uint64_t)off,
                        (uint64_t)size, ret, err, errlen);
}

/* One input tensor: inline {dtype, shape, data} or {dtype, shape, shm}. */
static int decode_tensor(rpc_infer_t *r, dynq__obj_t tv, dynq__tensor_t *ret, char *err,
                         size_t errlen) {
  dynqd_server_t *s = r->srv;
  dynq__tensor_limits_t tl = {DYNQ_MAX_RANK, s->cfg->max_tensor_elems};
  static const dynq__key_t shm_key = DYNQ__KEY("shm");
  dynq__obj_t so;
  dynq__obj_lookup(tv, &shm_key, 1, &so);
  if (dynq__obj_is_absent(so)) {
    dynq__wtensor_t v;
    int rc = dynq__obj_wtensor(tv, &tl, &v, err, errlen);
    if (rc != 0) return rc;
    /* Into the slab or the block's buffer (a view the block frees), else
     * its own. */
    void *p = NULL;
    if (v.nbytes > 0) {
      size_t an = (v.nbytes + DYNQ_ALIGN - 1) & ~(size_t)(DYNQ_ALIGN - 1);
      if ((p = slab_space(r, an)) == NULL) p = in_space(r, v.nbytes);
    }
    if (p == NULL) return dynq__obj_tensor(tv, &tl, ret, err, errlen);
    memcpy(p, v.data, v.nbytes);
    memset(ret, 0, sizeof(*ret));
    ret->dtype = (dynq_dtype_t)v.dtype;
    ret->rank = v.rank;
    memcpy(ret->dims, v.dims, sizeof(ret->dims));
    ret->data = p;
    ret->owned = 0;
    return 0;
  }
  char dts[16];
  if (dynq__obj_strcpy(dynq__obj_get(tv, "dtype"), dts, sizeof(dts)) != 0) {
    snprintf(err, errlen, "dtype must be a string such as \"float32\"");
    return DYNQ_EPARAMS;
  }
  dynq_dtype_t dt = dynq__dtype_from_name(dts);
  if (dt == DYNQ_DT_INVALID) {
    snprintf(err, errlen, "unknown dtype '%s'", dts);
    return DYNQ_EDTYPE;
  }
  dynq__obj_t sh = dynq__obj_get(tv, "shape");
  if (dynq__obj_kind(sh) != DYNQ_OBJ_ARRAY) {
    snprintf(err, errlen, "shape must be an array of dimensions");
    return DYNQ_EPARAMS;
  }
  uint32_t rank = dynq__obj_len(sh);
  if (rank > (uint32_t)tl.max_rank) {
    snprintf(err, errlen, "rank %u exceeds the limit of %d", rank, tl.max_rank);
    return DYNQ_ESHAPE;
  }
  int64_t dims[DYNQ_MAX_RANK];
  for (uint32_t i = 0; i < rank; i++) {
    if (dynq__obj_int(dynq__obj_at(sh, i), &dims[i]) != 0 || dims[i] < 0) {
      snprintf(err, errlen, "shape[%u] must be a non-negative integer", i);
      return DYNQ_ESHAPE;
    }
  }
  int64_t numel = dynq__shape_numel((int)rank, dims);
  if (numel < 0 || numel > tl.max_elems) {
    snprintf(err, errlen, "tensor has more than %lld elements", (long long)tl.max_elems);
    return DYNQ_ELIMIT;
  }
  dynqd_shm_ref_t ref;
  int rc = shm_ref_obj(r, so, &ref, err, errlen);
  if (rc != 0) return rc;
  return dynqd__shm_tensor(&ref, dt, (int)rank, dims, tl.max_elems, ret, err, errlen);
}

/* Inputs by name into graph order; 0 or answered. */
static int decode_inputs(rpc_infer_t *r, dynq__obj_t in, const char *mname,
                         const dynqd_session_t *ss) {
  dynqd_req_t *rq = &r->rq;
  dynqd_infer_t *x = &r->x;
  const dynq__model_sig_t *g = dynq__model_signature(x->model);
  uint32_t nin = dynq__obj_len(in);
  for (uint32_t i = 0; i < nin; i++) {
    const char *ks;
    size_t kn;
    dynq__obj_t ko = dynq__obj_key_at(in, i);
    if (dynq__obj_str(ko, &ks, &kn) != 0) {
      dynqd__reply_error(rq, DYNQ_EPARAMS, "infer: input names must be strings, got %s",
                         dynq__obj_kind_name(dynq__obj_kind(ko)));
      return DYNQ_EPARAMS;
    }
    char name[256];
    int idx = -1;
    if (kn < sizeof(name) && memchr(ks, 0, kn) == NULL) {
      memcpy(name, ks, kn);
      name[kn] = '\0';
      idx = dynq__model_input_index(x->model, name);
    }
    if (idx < 0 || idx >= g->n_inputs) {
      char list[256] = "";
      size_t used = 0;
      for (int k = 0; k < g->n_inputs && used < sizeof(list); k++)
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s'%s'",
                                 k ? ", " : "", g->inputs[k].name);
      char shown[2 * ECHO_MAX + 8];
      dynqd__reply_error(rq, DYNQ_ENOINPUT, "model '%s' has no input named '%s' (its inputs: %s)",
                         mname, dynq__echo(shown, sizeof shown, ks, kn, ECHO_MAX), list);
      return DYNQ_ENOINPUT;
    }
    if (ss != NULL) {
      for (int k = 0; k < ss->n_bind; k++) {
        if (ss->bind_in[k] == idx) {
          dynqd__reply_error(rq, DYNQ_EPARAMS, "infer: input '%s' is bound to session state "
                             "(it comes from the previous call's '%s'); do not send it", name,
                             g->outputs[ss->bind_out[k]].name);
          return DYNQ_EPARAMS;
        }
      }
    }
    if (x->inputs[idx].dtype != DYNQ_DT_INVALID) {
      dynqd__reply_error(rq, DYNQ_EPARAMS, "infer: input '%s' given twice", name);
      return DYNQ_EPARAMS;
    }
    char terr[256] = "";
    int rc = decode_tensor(r, dynq__obj_val_at(in, i), &x->inputs[idx], terr, sizeof(terr));
    if (rc != 0) {
      dynqd__reply_error(rq, rc, "input '%s': %s", name, terr[0] ? terr : dynq_strerror(rc));
      return rc;
    }
  }
  for (int k = 0; k < g->n_inputs; k++) {
    if (x->inputs[k].dtype != DYNQ_DT_INVALID) x->in_elems += dynq__tensor_numel(&x->inputs[k]);
    int bound = ss != NULL && dynqd__session_binds_input(ss, k);
    if (!bound && x->inputs[k].dtype == DYNQ_DT_INVALID) {
      dynqd__reply_error(rq, DYNQ_ENOINPUT, "missing input '%s' for model '%s'",
                         g->inputs[k].name, mname);
      return DYNQ_ENOINPUT;
    }
  }
  return 0;
}

/* outputs_shm {output name: {region, offset, size}}; 0 or answered. */
static int decode_outputs_shm(rpc_infer_t *r, dynq__obj_t oso, const char *mname) {
  dynqd_req_t *rq = &r->rq;
  dynqd_infer_t *x = &r->x;
  const dynq__model_sig_t *g = dynq__model_signature(x->model);
  x->out_shm = calloc((size_t)(g->n_outputs > 0 ? g->n_outputs : 1), sizeof(*x->out_shm));
  if (x->out_shm == NULL) {
    dynqd__reply_error(rq, -ENOMEM, "out of memory decoding the request");
    return -ENOMEM;
  }
  uint32_t no = dynq__obj_len(oso);
  for (uint32_t i = 0; i < no; i++) {
    char oname[128];
    if (dynq__obj_strcpy(dynq__obj_key_at(oso, i), oname, sizeof(oname)) != 0) {
      dynqd__reply_error(rq, DYNQ_EPARAMS, "infer: outputs_shm keys must be output names");
      return DYNQ_EPARAMS;
    }
    int oi = -1;
    for (int k = 0; k < g->n_outputs && oi < 0; k++)
      if (strcmp(g->outputs[k].name, oname) == 0) oi = k;
    if (oi < 0) {
      dynqd__reply_error(rq, DYNQ_EPARAMS, "infer: outputs_shm names '%s', which is not an "
                         "output of model '%s'", oname, mname);
      return DYNQ_EPARAMS;
    }
    char terr[256] = "";
    int rc = shm_ref_obj(r, dynq__obj_val_at(oso, i), &x->out_shm[oi], terr, sizeof(terr));
    if (rc != 0) {
      dynqd__reply_error(rq, rc, "outputs_shm '%s': %s", oname, terr);
      return rc;
    }
    if (!x->out_shm[oi].region->writable) {
      dynqd__reply_error(rq, DYNQ_EPARAMS, "outputs_shm '%s': region %llu is read-only "
                         "(F_SEAL_WRITE)", oname, (unsigned long long)x->out_shm[oi].region_id);
      return DYNQ_EPARAMS;
    }
  }
  return 0;
}

/* dynqd__batch_axes said rc (why: msg) for r's request: answered when
 * the config does not fit the model, else it runs alone. */
static int not_batched(rpc_infer_t *r, const char *mname, int rc, const char *msg) {
  if (rc == DYNQ_EPARAMS) {
    dynqd__reply_error(&r->rq, rc, "model '%s': %s", mname, msg);
    return rc;
  }
  log_debug("model '%s': not batched: %s", mname, msg);  /* no safe batch axis */
  r->x.job.batch_max = 0;
  return 0;
}

/* Batching for this request: batch_max and axes, or left off. */
static int decide_batching(rpc_infer_t *r, const char *mname) {
  dynqd_infer_t *x = &r->x;
  const dynqd_config_t *cfg = r->srv->cfg;
  /* Per-tensor scales, fp32 and outputs_shm would make a row depend on
   * its batch mates or need a region per batch: never batched. */
  if (x->out_shm != NULL || x->precision != DYNQ_PRECISION_INT8) return 0;
  const dynqd_plan_t *pl = r->plan;  /* a plain request's: decided per model */
  if (pl != NULL) {
    x->job.batch_max = pl->batch_max;
    x->job.batch_delay_us = pl->batch_delay_us;
  } else {
    dynqd__batch_config(cfg, mname, &x->job.batch_max, &x->job.batch_delay_us);
  }
  if (x->job.batch_max <= 1 && cfg->coalesce_max > 1 && r->mstats != NULL &&
      r->mstats->ns_per_elem > 0 &&
      r->mstats->ns_per_elem * (double)x->in_elems <= COALESCE_MAX_US * 1000.0) {
    /* Batching off: still merge small requests that already wait together
     * (a pipelining client's burst, requests queued behind busy workers),
     * never waiting for more: their per-run costs are shared. */
    x->job.batch_max = cfg->coalesce_max;
    x->job.batch_delay_us = 0;
    r->coalesce = 1;
  }
  if (x->job.batch_max <= 1) return 0;
  if (pl != NULL) {
    if (pl->per_tensor || pl->axes == NULL) {
      x->job.batch_max = 0;
      return 0;
    }
    if (pl->axes_rc == 0) {
      x->axes = pl->axes;  /* shared by its requests; nobody writes it */
      return 0;
    }
    return not_batched(r, mname, pl->axes_rc, pl->axes_err);
  }
  dynq__model_stats_t mst;
  dynq__model_get_stats(x->model, &mst);
  if (mst.per_tensor) {
    x->job.batch_max = 0;
    return 0;
  }
  const dynq__model_sig_t *g = dynq__model_signature(x->model);
  int na = g->n_inputs + g->n_outputs > 0 ? g->n_inputs + g->n_outputs : 1;
  x->axes = array_get(&r->axes_arr, r->axes_cap, na, 1, 0);
  r->axes_n = na;
  if (x->axes == NULL) {
    dynqd__reply_error(&r->rq, -ENOMEM, "out of memory decoding the request");
    return -ENOMEM;
  }
  char aerr[256] = "";
  int rc = dynqd__batch_axes(dynq__model_signature(x->model), dynqd__batch_rule(cfg, mname),
                             x->session, x->axes, aerr, sizeof(aerr));
  /* A session's merge is as safe as its model version's row check says
   * (a plain request without its plan, only after running out of
   * memory, is not merged). */
  if (rc == 0 && (x->session == NULL ||
                  !dynqd__rows_allow(&x->session->rows, x->axes, g->n_inputs, g->n_outputs))) {
    rc = DYNQ_ESHAPE;
    snprintf(aerr, sizeof(aerr), "the row check at load did not allow these axes");
  }
  if (rc == 0) return 0;
  free(x->axes);
  x->axes = NULL;
  return not_batched(r, mname, rc, aerr);
}

/* The model named s[0..n) and its stats record (NULL: answered
 * ENOMODEL).  A connection mostly names the same model: its last one is
 * kept with the registry's generation and compared first. */
static const dynqd_model_entry_t *model_of(dynqd_req_t *rq, const char *s, size_t n,
                                           dynqd_mstats_t **ret_ms) {
  dynqd_conn_t *c = rq->conn;
  dynqd_server_t *srv = rq->srv;
  const dynqd_model_entry_t *e = c->last_model;
  if (e != NULL && c->last_model_gen == srv->reg.gen && c->last_model_len == n &&
      memcmp(e->name, s, n) == 0) {
    *ret_ms = c->last_mstats;
    return e;
  }
  e = dynqd__rpc_model(rq, s, n);
  if (e == NULL) return NULL;
  *ret_ms = dynqd__stats_model(&srv->stats, e->name);
  if (*ret_ms == NULL) return e;  /* out of memory: not kept, tried again */
  c->last_model = e;
  c->last_model_gen = srv->reg.gen;
  c->last_model_len = strlen(e->name);
  c->last_mstats = *ret_ms;
  return e;
}

int dynqd__m_infer(dynqd_req_t *rq, const dynq__params_t *pp) {
  const dynq__p_infer_t *p = &pp->infer;
  dynqd_server_t *s = rq->srv;
  uint64_t t0 = uv_hrtime();
  rpc_infer_t *r = NULL;
  dynqd_mstats_t *ms = NULL;
  dynqd_session_t *ss = NULL;
  dynqd_plan_t *plan = NULL;
  int ecode = 0;
  if (s->draining) FAIL(DYNQ_ESHUTDOWN, "dynqd is shutting down; not accepting new requests");

  dynq__model_t *model;
  const char *mname;
  if (p->has_session) {
    ss = dynqd__session_find(&s->sessions, rq->conn, rq->conn->uid, p->session);
    if (ss == NULL)
      FAIL(DYNQ_ENOSESSION, "no session %llu (closed, timed out, opened by another "
           "connection without detached: true, or by another uid)",
           (unsigned long long)p->session);
    if (ss->busy)
      FAIL(DYNQ_EBUSY, "session %llu is running another request; one request per session "
           "at a time", (unsigned long long)p->session);
    model = ss->model;
    mname = ss->model_name;
    if (p->has_model) {  /* may be omitted; given, it names the session's model */
      char at[256], shown[2 * ECHO_MAX + 8];
      snprintf(at, sizeof(at), "%s@%d", mname, ss->version);
      if (!dynq__pstr_eq(p->model, mname) && !dynq__pstr_eq(p->model, at))
        FAIL(DYNQ_EPARAMS, "infer: session %llu runs model '%s' (version %d), but "
             "params.model names '%s'", (unsigned long long)p->session, mname, ss->version,
             dynq__echo(shown, sizeof shown, p->model.p, p->model.n, ECHO_MAX));
    }
  } else {
    if (!p->has_model)
      FAIL(DYNQ_EPARAMS, "infer: params.model must be a string naming a model, got nothing "
           "(or params.session, a session id)");
    const dynqd_model_entry_t *e = model_of(rq, p->model.p, p->model.n, &ms);
    if (e == NULL) {
      ecode = DYNQ_ENOMODEL;  /* answered; counted as an error */
      goto fail;
    }
    model = e->model;
    mname = e->name;
    plan = dynqd__registry_plan(&s->reg, e, s->cfg);  /* NULL: decided here */
  }
  if (ss != NULL) ms = dynqd__stats_model(&s->stats, mname);

  int precision = DYNQ_PRECISION_INT8;
  if (p->has_precision) {
    if (dynq__pstr_eq(p->precision, "int8"))
      precision = DYNQ_PRECISION_INT8;
    else if (dynq__pstr_eq(p->precision, "fp32"))
      precision = DYNQ_PRECISION_FP32;
    else {
      char shown[2 * ECHO_MAX + 8];
      FAIL(DYNQ_EPARAMS, "infer: unknown precision '%s' (expected \"int8\" or \"fp32\")",
           dynq__echo(shown, sizeof shown, p->precision.p, p->precision.n, ECHO_MAX));
    }
  }
  uint64_t deadline = 0;
  /* 0 means no deadline, as in dynq's clients (a deadline already due
   * would run or fail the same request by load alone) */
  if (p->has_timeout_ms && p->timeout_ms > 0 && p->timeout_ms <= MAX_TIMEOUT_MS)
    deadline = t0 + p->timeout_ms * 1000000ull;
  dynq__obj_t in = p->inputs.obj;

  const dynq__model_sig_t *g = dynq__model_signature(model);
  r = block_get(s);
  if (r == NULL) goto oom;
  r->srv = s;
  dynqd_infer_t *x = &r->x;
  if (plan != NULL) {
    r->plan = dynqd__plan_ref(plan);
    x->model = plan->model;
  } else {
    x->model = dynq__model_ref(model);
  }
  x->inputs = inputs_get(r, g->n_inputs);
  if (x->inputs == NULL) goto oom;
  x->n_inputs = g->n_inputs;
  x->precision = precision;
  x->max_value_bytes = dynqd__value_cap(s->cfg);
  x->max_run_ms = s->cfg->max_run_ms;
  x->job.ops = &infer_ops;
  x->job.cancel = &rq->conn->dead;
  x->job.t_arrive_ns = t0;
  x->job.deadline_ns = deadline;
  r->rq = *rq;
  r->srv = s;
  r->mstats = ms;
  r->max_resp = s->cfg->max_output;

  if ((ecode = decode_inputs(r, in, mname, ss)) != 0) goto fail_answered;
  if (p->has_outputs_shm && (ecode = decode_outputs_shm(r, p->outputs_shm.obj, mname)) != 0)
    goto fail_answered;
  if (ss != NULL) {
    char serr[256] = "";
    int rc = dynqd__session_bind(ss, x->inputs, x->n_inputs, &x->sess_new, serr, sizeof(serr));
    if (rc != 0) FAIL(rc, "session: %s", serr);
    x->session = ss;
  }
  if ((ecode = decide_batching(r, mname)) != 0) goto fail_answered;
  /* Shadow FP32 re-runs: INT8 requests with their own inputs (no session
   * state, no shm views: those do not outlive the answer) */
  if (precision == DYNQ_PRECISION_INT8 && x->shm.n == 0 && x->out_shm == NULL) {
    if (ss == NULL)
      x->keep_inputs = r->shadow = dynqd__shadow_sample(&s->shadow, ms);
    else if (dynqd__shadow_sess_live(ss->shadow))
      x->keep_inputs = r->shadow = 1; /* a shadowed session: every step */
  } else if (ss != NULL && ss->shadow != NULL) {
    dynqd__shadow_sess_abandon(ss->shadow); /* a step its twin cannot follow */
  }

  uint64_t t1 = uv_hrtime();  /* decoded: also when it is queued */
  r->decode_us = (int64_t)((t1 - t0) / 1000);
  /* Small (predicted within inline_max_us), plain INT8: it may run on
   * the loop, alone when the loop is quiet, or in the batch the loop
   * keeps for itself at the flush (dynqd__sched_flush). */
  int small = (x->job.batch_max <= 1 || r->coalesce) && x->shm.n == 0 &&
              x->out_shm == NULL && precision == DYNQ_PRECISION_INT8 && ms != NULL;
  if (small && dynqd__sched_inline_ok(&s->sched, s->cfg->inline_max_us, ms->ns_per_elem,
                                      x->in_elems, s->frames_iter, s->frames_prev)) {
    x->job.cost_ns = (int64_t)(ms->ns_per_elem * (double)x->in_elems);  /* the loop's caps */
    /* answered through job_done, or handed to a worker (r stays ours
     * until then) */
    if (dynqd__sched_run_inline(&s->sched, &x->job) == 0) s->stats.inline_total++;
    return 0;
  }
  x->job.loop_ok = 0;
  x->job.cost_ns = 0;
  if (ms != NULL && precision == DYNQ_PRECISION_INT8) {
    /* in a batch, what a merged run costs it (the one-thread figure of a
     * lone run may be the cold first request's: merged runs never update
     * it) */
    double ns = x->job.batch_max > 1 && ms->ns_per_elem_merged > 0 ? ms->ns_per_elem_merged
                                                                    : ms->ns_per_elem;
    x->job.cost_ns = ns > 0 ? (int64_t)(ns * (double)x->in_elems) : 0;
    x->job.loop_ok = small && x->job.cost_ns > 0 &&
                     x->job.cost_ns <= (int64_t)s->cfg->inline_max_us * 1000;
  }
  /* What it holds until answered counts with the connections' buffers:
   * a pipelining peer cannot park more than max_buffers_total in the
   * queue (the read buffer it came from is reused at once).  Its bytes in
   * the slab are counted with the slab. */
  size_t held = sizeof(*r) + (size_t)x->n_inputs * sizeof(*x->inputs) + r->inbuf_used;
  for (int k = 0; k < x->n_inputs; k++)
    if (x->inputs[k].owned) held += dynq__tensor_nbytes(&x->inputs[k]);
  if (dynqd__conn_charge(rq->conn, held) != 0)
    FAIL(DYNQ_EOVERLOAD, "queued requests and connection buffers would hold more than "
         "max_buffers_total (%llu bytes) with this request's %zu; retry later",
         (unsigned long long)s->cfg->max_buffers_total, held);
  /* Without session state or shm (whose bookkeeping a client may rely on
   * as soon as it has the answer): its worker may write the answer.  Set
   * before the job is submitted: its worker reads it. */
  if (x->session == NULL && x->shm.n == 0 && x->out_shm == NULL)
    r->direct = dynqd__conn_direct_begin(rq->conn);
  if (dynqd__sched_submit_at(&s->sched, &x->job, t1) != 0) {
    if (r->direct) dynqd__conn_direct_end(rq->conn, 0, NULL, 0);
    r->direct = 0;
    dynqd__conn_uncharge(rq->conn, held);
    FAIL(DYNQ_EOVERLOAD, "request queue is full (%d waiting); retry later", s->cfg->queue);
  }
  r->charged = held;
  return dynqd__req_defer(rq, &r->rq);

oom:
  ecode = -ENOMEM;
  dynqd__reply_error(rq, -ENOMEM, "out of memory decoding the request");
fail:
fail_answered:
  dynqd__stats_count(&s->stats, ms, ecode);
  if (r != NULL) {
    if (r->x.session != NULL) r->x.session->busy = 0;
    infer_free(r);
  }
  return 0;
}
#undef FAIL
