/*
 * Are a model's rows independent along its batch axes?  Measured at load,
 * not assumed.
 *
 * dynqd merges requests that wait together (dynamic batching, and
 * coalescing, which is on by default) by concatenating their inputs along
 * each input's batch axis, running once and cutting every output back
 * along its own axis.  That hands each client its own answer only if
 * nothing in the model looks across that axis.  Many models do:
 *   - a reduction or a softmax over the batch axis (y = x - mean(x, 0));
 *   - a batch axis that is not the batch: BERT exported with a fixed batch
 *     of 1 declares input_ids [1, seq], so the first symbolic dim (the
 *     rule's choice) is the sequence, and two merged requests would attend
 *     to each other's tokens;
 *   - a Range or a position index built from a shape that includes it.
 * A per-op rule table would have to follow every shape computation of an
 * exported graph (Shape -> Gather -> Concat -> Reshape) to tell these
 * apart.  Instead dynqd runs the model on two different inputs A and B of
 * the warm-up shapes, then on both concatenated along the batch axes, and
 * compares the bits: for every output, each axis along which the merged
 * result is exactly A's result followed by B's is recorded.  A request is
 * merged only when every output's batch axis is one of them; a model
 * that fails (or that could not be measured) runs every request alone,
 * which is always right.  The check is the property merging relies on
 * (bit-identical answers, DESIGN.md), so it also catches a kernel whose
 * rounding would follow the batch size.
 *
 * Inputs: float32 uniform in [-1, 1), integers 0 or 1 (valid indices and
 * lengths for any table and any dim >= 1), from a fixed seed per run, so
 * the verdict is the same at every load.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "dynqd.h"

static uint64_t next(uint64_t *s) { /* xorshift64* */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1Dull;
}

static void fill(dynq__tensor_t *t, uint64_t seed) {
  uint64_t s = seed | 1;
  int64_t n = dynq__tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    uint64_t r = next(&s);
    switch (t->dtype) {
      case DYNQ_DT_F32:
        ((float *)t->data)[i] = (float)((double)(r >> 40) / (double)(1 << 23) - 1.0);
        break;
      case DYNQ_DT_I64: ((int64_t *)t->data)[i] = (int64_t)(r >> 63); break;
      case DYNQ_DT_I32: ((int32_t *)t->data)[i] = (int32_t)(r >> 63); break;
      default: ((uint8_t *)t->data)[i] = (uint8_t)(r >> 63); break; /* int8, uint8 */
    }
  }
}

/* m = a then b along axis (a and b of one shape). */
static int concat(const dynq__tensor_t *a, const dynq__tensor_t *b, int axis,
                  dynq__tensor_t *m) {
  int64_t dims[DYNQ_MAX_RANK];
  memcpy(dims, a->dims, sizeof(dims));
  dims[axis] = a->dims[axis] + b->dims[axis];
  int rc = dynq__tensor_alloc_uninit(m, a->dtype, a->rank, dims);
  if (rc != 0) return rc;
  size_t outer, inner;
  dynqd__split_shape(a, axis, &outer, &inner);
  size_t ca = (size_t)a->dims[axis] * inner, cb = (size_t)b->dims[axis] * inner;
  for (size_t o = 0; o < outer; o++) {
    uint8_t *dst = (uint8_t *)m->data + o * (ca + cb);
    if (ca) memcpy(dst, (const uint8_t *)a->data + o * ca, ca);
    if (cb) memcpy(dst + ca, (const uint8_t *)b->data + o * cb, cb);
  }
  return 0;
}

/* Is m exactly a then b along axis? */
static int splits_along(const dynq__tensor_t *m, const dynq__tensor_t *a,
                        const dynq__tensor_t *b, int axis) {
  if (m->dtype != a->dtype || m->dtype != b->dtype || m->rank != a->rank ||
      m->rank != b->rank || a->dims[axis] == 0 || b->dims[axis] == 0 ||
      m->dims[axis] != a->dims[axis] + b->dims[axis])
    return 0;
  for (int d = 0; d < m->rank; d++)
    if (d != axis && (m->dims[d] != a->dims[d] || m->dims[d] != b->dims[d])) return 0;
  size_t outer, inner;
  dynqd__split_shape(a, axis, &outer, &inner);
  size_t ca = (size_t)a->dims[axis] * inner, cb = (size_t)b->dims[axis] * inner;
  for (size_t o = 0; o < outer; o++) {
    const uint8_t *src = (const uint8_t *)m->data + o * (ca + cb);
    if (memcmp(src, (const uint8_t *)a->data + o * ca, ca) != 0 ||
        memcmp(src + ca, (const uint8_t *)b->data + o * cb, cb) != 0)
      return 0;
  }
  return 1;
}

__attribute__((format(printf, 2, 3)))
static int set_why(dynqd_rows_t *ret, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  ret->ok = 0;
  free(ret->why);
  ret->why = strdup(buf);
  return ret->why != NULL ? 0 : -ENOMEM;
}

int dynqd__rows_check(const dynq__model_t *m, const int *ranks,
                      int64_t (*dims)[DYNQ_MAX_RANK], const int8_t *axes,
                      int64_t max_value_bytes, int64_t max_run_ms, dynqd_rows_t *ret) {
  const dynq__model_sig_t *sig = dynq__model_signature(m);
  const int ni = sig->n_inputs, no = sig->n_outputs;
  memset(ret, 0, sizeof(*ret));
  if (ni == 0) return set_why(ret, "the model has no inputs");
  for (int i = 0; i < ni; i++)
    if (axes[i] < 0 || axes[i] >= ranks[i])
      return set_why(ret, "input '%s' has no dimension for its batch axis",
                     sig->inputs[i].name);
  /* in[0] A, in[1] B, in[2] merged; likewise out */
  dynq__tensor_t *in = calloc((size_t)ni * 3, sizeof(*in));
  dynq__tensor_t *out = calloc((size_t)(no > 0 ? no : 1) * 3, sizeof(*out));
  ret->out_axes = calloc((size_t)(no > 0 ? no : 1), sizeof(*ret->out_axes));
  int rc = -ENOMEM;
  if (in == NULL || out == NULL || ret->out_axes == NULL) goto out;
  for (int i = 0; i < ni; i++) {
    for (int k = 0; k < 2; k++) {
      if ((rc = dynq__tensor_alloc_uninit(&in[k * ni + i], sig->inputs[i].dtype, ranks[i],
                                          dims[i])) != 0)
        goto out;
      fill(&in[k * ni + i], 0x9e3779b97f4a7c15ull * (uint64_t)(2 * i + k + 1));
    }
    if ((rc = concat(&in[i], &in[ni + i], axes[i], &in[2 * ni + i])) != 0) goto out;
  }
  dynq__run_opts_t opts = {.precision = DYNQ_PRECISION_INT8, .threads = 1,
                           .max_value_bytes = max_value_bytes};
  static const char *const run_name[3] = {"the first input", "the second input",
                                          "both merged"};
  for (int k = 0; k < 3; k++) {
    char err[384] = "";
    dynq__run_stop_t stop = {0};  /* each run stopped like a request */
    dynq__run_stop_cap(&stop, max_run_ms);
    opts.stop = max_run_ms > 0 ? &stop : NULL;
    rc = dynq__model_run(m, &opts, &in[k * ni], &out[k * no], err, sizeof(err));
    if (rc == -ENOMEM) goto out;
    if (rc != 0) {
      rc = set_why(ret, "not measured: the check's run on %s failed: %s", run_name[k],
                   err[0] ? err : dynq_strerror(rc));
      goto out;
    }
  }
  ret->ok = 1;
  for (int o = 0; o < no; o++) {
    const dynq__tensor_t *a = &out[o], *b = &out[no + o], *mg = &out[2 * no + o];
    for (int d = 0; d < mg->rank; d++)
      if (splits_along(mg, a, b, d)) ret->out_axes[o] |= 1ull << d;
    if (ret->out_axes[o] == 0) {
      rc = set_why(ret, "output '%s' of two merged requests is not their two answers "
                   "side by side along any axis (the model looks across its batch axis, "
                   "or its answers' bits follow the batch size)", sig->outputs[o].name);
      goto out;
    }
  }
  rc = 0;
out:
  if (in != NULL)
    for (int i = 0; i < 3 * ni; i++) dynq__tensor_clear(&in[i]);
  if (out != NULL)
    for (int i = 0; i < 3 * no; i++) dynq__tensor_clear(&out[i]);
  free(in);
  free(out);
  if (rc != 0) ret->ok = 0;
  return rc == -ENOMEM ? rc : 0;
}

int dynqd__rows_allow(const dynqd_rows_t *r, const int8_t *axes, int ni, int no) {
  if (r == NULL || !r->ok || r->out_axes == NULL) return 0;
  for (int o = 0; o < no; o++) {
    int d = axes[ni + o];
    if (d < 0 || d >= 64 || !(r->out_axes[o] >> d & 1)) return 0;
  }
  return 1;
}

int dynqd__rows_copy(dynqd_rows_t *dst, const dynqd_rows_t *src, int no) {
  memset(dst, 0, sizeof(*dst));
  dst->ok = src->ok;
  if (src->out_axes != NULL) {
    dst->out_axes = malloc((size_t)(no > 0 ? no : 1) * sizeof(*dst->out_axes));
    if (dst->out_axes == NULL) return -ENOMEM;
    memcpy(dst->out_axes, src->out_axes, (size_t)no * sizeof(*dst->out_axes));
  }
  if (src->why != NULL && (dst->why = strdup(src->why)) == NULL) {
    dynqd__rows_clear(dst);
    return -ENOMEM;
  }
  return 0;
}

void dynqd__rows_clear(dynqd_rows_t *r) {
  free(r->out_axes);
  free(r->why);
  memset(r, 0, sizeof(*r));
}
