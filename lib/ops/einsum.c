/*
 * Einsum on float32: one or two operands, letters as labels, explicit or
 * implicit output, an ellipsis ('...': the dimensions not named, numpy's
 * rule: right-aligned across operands, broadcast where one is 1, first in
 * an implicit output) and a label repeated within one operand (its
 * diagonal).  A label repeated in the output, an ellipsis in the output
 * without one in an operand or the reverse are refused at load, naming
 * the equation.
 *
 * Two operands whose labels are each in both operands and the output
 * (batch), or in one operand and the output (m from the first, n from
 * the second), or in both operands only (k, summed) are a batched matrix
 * product: the forms attention exports ("bhid,bhjd->bhij",
 * "bhij,bhjd->bhid", "bid,jd->bij", "...id,...jd->...ij").  They run as
 * one OpenBLAS GEMM per batch index, with an operand copied into
 * [batch, m, k] / [batch, k, n] order only when neither it nor its
 * transpose is already in that order, and the result permuted only when
 * the output orders labels otherwise.  Everything else (one operand, a
 * label summed within one operand, a diagonal, a broadcast ellipsis)
 * runs as the plain sum over the summed labels, accumulated in double.
 */
#include "ops.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"

static int is_label(char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }

int dynq__einsum_parse(const char *eq, dynq__einsum_t *ret, const char **why) {
  dynq__einsum_t e;
  memset(&e, 0, sizeof(e));
  e.ell[0] = e.ell[1] = e.ell[2] = -1;
  int cur = 0, arrow = 0; /* cur: the operand being read; 2 after "->" */
  for (const char *p = eq ? eq : ""; *p; p++) {
    char ch = *p;
    if (ch == ' ' || ch == '\t') continue;
    if (ch == '.') {
      if (p[1] != '.' || p[2] != '.') return *why = "a '.' that is not part of '...'", -1;
      if (e.ell[cur] >= 0) return *why = "more than one '...' in one operand", -1;
      e.ell[cur] = e.rank[cur];
      p += 2;
      continue;
    }
    if (ch == ',') {
      if (arrow || cur == 1) return *why = "only one or two operands are supported", -1;
      cur = 1;
      continue;
    }
    if (ch == '-' && p[1] == '>') {
      if (arrow) return *why = "more than one '->'", -1;
      e.nin = cur + 1;
      arrow = 1;
      cur = 2;
      p++;
      continue;
    }
    if (!is_label(ch)) return *why = "labels must be letters", -1;
    if (e.rank[cur] >= DYNQ_MAX_RANK) return *why = "an operand has more than 8 labels", -1;
    if (cur == 2 && memchr(e.lab[cur], ch, (size_t)e.rank[cur]) != NULL)
      return *why = "a label repeated in the output", -1;
    e.lab[cur][e.rank[cur]++] = ch;
  }
  int any_ell = e.ell[0] >= 0 || (cur >= 1 && e.ell[1] >= 0);
  if (!arrow) {
    e.nin = cur + 1;
    /* implicit output: the ellipsis, then the labels used exactly once
     * (a repeated label within one operand counts as twice), in ASCII
     * order */
    if (any_ell) e.ell[2] = 0;
    for (int ch = 'A'; ch <= 'z'; ch++) {
      if (!is_label((char)ch)) continue;
      int uses = 0;
      for (int k = 0; k < e.nin; k++)
        for (int i = 0; i < e.rank[k]; i++) uses += e.lab[k][i] == ch;
      if (uses == 1) {
        if (e.rank[2] >= DYNQ_MAX_RANK) return *why = "the output has more than 8 labels", -1;
        e.lab[2][e.rank[2]++] = (char)ch;
      }
    }
  }
  for (int i = 0; i < e.rank[2]; i++) {
    int found = 0;
    for (int k = 0; k < e.nin; k++) found |= memchr(e.lab[k], e.lab[2][i], (size_t)e.rank[k]) != NULL;
    if (!found) return *why = "an output label appears in no operand", -1;
  }
  if (e.ell[2] >= 0 && !any_ell) return *why = "'...' in the output but in no operand", -1;
  if (e.ell[2] < 0 && any_ell)
    return *why = "an operand has '...' but the output does not (say where it goes)", -1;
  *ret = e;
  return 0;
}

static const char *attr_eq(const dynq__node_t *n) {
  const dynq__attr_t *a = dynq__node_attr(n, "equation");
  return a != NULL && a->type == DYNQ_ATTR_STRING ? a->s : NULL;
}

int dynq__check_einsum(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g;
  dynq__einsum_t e;
  const char *why = NULL, *eq = attr_eq(n);
  DYNQ_OP_CHECK(eq != NULL, "the equation attribute is missing");
  DYNQ_OP_CHECK(dynq__einsum_parse(eq, &e, &why) == 0, "equation '%s': %s", eq, why);
  DYNQ_OP_CHECK(e.nin == n->n_in, "equation '%s' has %d operands, the node %d inputs", eq,
                e.nin, n->n_in);
  return 0;
}

int dynq__prep_einsum(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                      char *err, size_t errlen) {
  (void)g;
  const char *why = "the equation attribute is missing", *eq = attr_eq(n);
  if (eq == NULL || dynq__einsum_parse(eq, &st->einsum, &why) != 0) {
    snprintf(err, errlen, "node '%s' (Einsum): %s", n->name ? n->name : "?", why);
    return DYNQ_EGRAPH;
  }
  return 0;
}

/* Position of label ch in operand k's labels, or -1. */
static int pos(const dynq__einsum_t *e, int k, char ch) {
  const char *p = memchr(e->lab[k], ch, (size_t)e->rank[k]);
  return p ? (int)(p - e->lab[k]) : -1;
}

/* dst (labels to[0..r)) = src (labels from, dims of each label in
 * size[] by label char) transposed. */
static void permute(const float *src, const char *from, const char *to, int r,
                    const int64_t *size, float *dst) {
  int64_t st[DYNQ_MAX_RANK], dims[DYNQ_MAX_RANK], cnt[DYNQ_MAX_RANK] = {0}, e = 1, n = 1, off = 0;
  int64_t sst[DYNQ_MAX_RANK];
  for (int d = r - 1; d >= 0; d--) {
    sst[d] = e;
    e *= size[(unsigned char)from[d]];
  }
  for (int d = 0; d < r; d++) {
    const char *p = memchr(from, to[d], (size_t)r);
    st[d] = sst[p - from];
    dims[d] = size[(unsigned char)to[d]];
    n *= dims[d];
  }
  for (int64_t i = 0; i < n; i++) {
    dst[i] = src[off];
    for (int d = r - 1; d >= 0; d--) {
      off += st[d];
      if (++cnt[d] < dims[d]) break;
      off -= st[d] * dims[d];
      cnt[d] = 0;
    }
  }
}

static int same(const char *a, const char *b, int r) { return memcmp(a, b, (size_t)r) == 0; }

/* The batched-GEMM form; returns 1 when the equation is not one. */
static int run_gemm(dynq__op_ctx_t *c, const dynq__einsum_t *e, const dynq__tensor_t *const *in,
                    dynq__tensor_t *out, const int64_t *size, int *ret_rc) {
  char bat[DYNQ_MAX_RANK], ml[DYNQ_MAX_RANK], nl[DYNQ_MAX_RANK], kl[DYNQ_MAX_RANK];
  int nb = 0, nm = 0, nn = 0, nk = 0;
  for (int i = 0; i < e->rank[2]; i++) {
    char ch = e->lab[2][i];
    int a = pos(e, 0, ch) >= 0, b = pos(e, 1, ch) >= 0;
    if (a && b) bat[nb++] = ch;
    else if (a) ml[nm++] = ch;
    else nl[nn++] = ch;
  }
  for (int i = 0; i < e->rank[0]; i++) {
    char ch = e->lab[0][i];
    if (pos(e, 2, ch) >= 0) continue;
    if (pos(e, 1, ch) < 0) return 1; /* summed within A alone */
    kl[nk++] = ch;
  }
  for (int i = 0; i < e->rank[1]; i++)
    if (pos(e, 2, e->lab[1][i]) < 0 && pos(e, 0, e->lab[1][i]) < 0) return 1;
  int64_t Bn = 1, M = 1, N = 1, K = 1;
  for (int i = 0; i < nb; i++) Bn *= size[(unsigned char)bat[i]];
  for (int i = 0; i < nm; i++) M *= size[(unsigned char)ml[i]];
  for (int i = 0; i < nn; i++) N *= size[(unsigned char)nl[i]];
  for (int i = 0; i < nk; i++) K *= size[(unsigned char)kl[i]];
  /* canonical orders */
  char amk[DYNQ_MAX_RANK], akm[DYNQ_MAX_RANK], bkn[DYNQ_MAX_RANK], bnk[DYNQ_MAX_RANK],
      cmn[DYNQ_MAX_RANK];
  memcpy(amk, bat, (size_t)nb), memcpy(akm, bat, (size_t)nb), memcpy(bkn, bat, (size_t)nb);
  memcpy(bnk, bat, (size_t)nb), memcpy(cmn, bat, (size_t)nb);
  memcpy(amk + nb, ml, (size_t)nm), memcpy(amk + nb + nm, kl, (size_t)nk);
  memcpy(akm + nb, kl, (size_t)nk), memcpy(akm + nb + nk, ml, (size_t)nm);
  memcpy(bkn + nb, kl, (size_t)nk), memcpy(bkn + nb + nk, nl, (size_t)nn);
  memcpy(bnk + nb, nl, (size_t)nn), memcpy(bnk + nb + nn, kl, (size_t)nk);
  memcpy(cmn + nb, ml, (size_t)nm), memcpy(cmn + nb + nm, nl, (size_t)nn);
  const float *A = in[0]->data, *B = in[1]->data;
  float *ta_buf = NULL, *tb_buf = NULL, *c_buf = NULL;
  int ta = 0, tb = 0, rc = 0;
  int64_t na = Bn * M * K, nbv = Bn * K * N, nc = 0;
  int copy_a = 0, copy_b = 0;
  if (!same(e->lab[0], amk, e->rank[0])) {
    ta = same(e->lab[0], akm, e->rank[0]);
    copy_a = !ta;
  }
  if (!same(e->lab[1], bkn, e->rank[1])) {
    tb = same(e->lab[1], bnk, e->rank[1]);
    copy_b = !tb;
  }
  int direct = same(e->lab[2], cmn, e->rank[2]);
  int64_t od[DYNQ_MAX_RANK];
  for (int i = 0; i < e->rank[2]; i++) od[i] = size[(unsigned char)e->lab[2][i]];
  /* The product before its permutation has the output's size: checked
   * against the run's limit before it is allocated, as the output is.
   * Two inputs' free axes multiply, so their count may pass int64. */
  if ((nc = dynq__shape_numel(e->rank[2], od)) < 0)
    rc = dynq__op_fail(c, DYNQ_ELIMIT, "output too large");
  else if (!direct) rc = dynq__op_check_bytes(c, nc, (int64_t)sizeof(float), "the product");
  if (rc != 0) {
    *ret_rc = rc;
    return 0;
  }
  if ((copy_a && (ta_buf = malloc((size_t)(na ? na : 1) * sizeof(float))) == NULL) ||
      (copy_b && (tb_buf = malloc((size_t)(nbv ? nbv : 1) * sizeof(float))) == NULL) ||
      (!direct && (c_buf = malloc((size_t)(nc ? nc : 1) * sizeof(float))) == NULL))
    rc = dynq__op_fail(c, -ENOMEM, "out of memory");
  if (rc == 0 && copy_a) permute(A, e->lab[0], amk, e->rank[0], size, ta_buf), A = ta_buf;
  if (rc == 0 && copy_b) permute(B, e->lab[1], bkn, e->rank[1], size, tb_buf), B = tb_buf;
  if (rc == 0) rc = dynq__op_alloc(c, out, DYNQ_DT_F32, e->rank[2], od, 0);
  if (rc == 0) {
    float *C = direct ? out->data : c_buf;
    /* a transposed operand is [K, M] (or [N, K]) within each batch block */
    for (int64_t bi = 0; bi < Bn; bi++) {
      float *cb = C + (size_t)(bi * M * N);
      if (K == 0) {
        memset(cb, 0, (size_t)(M * N) * sizeof(float));
        continue;
      }
      if (M == 0 || N == 0) continue;
      dynq__sgemm(ta, tb, M, N, K, 1.0f, A + (size_t)(bi * M * K), ta ? M : K,
                  B + (size_t)(bi * K * N), tb ? K : N, 0.0f, cb, N);
    }
    if (!direct) permute(c_buf, cmn, e->lab[2], e->rank[2], size, out->data);
  }
  free(ta_buf);
  free(tb_buf);
  free(c_buf);
  *ret_rc = rc;
  return 0;
}

/* Any equation: out[o] = sum over the summed labels of the product. */
static int run_sum(dynq__op_ctx_t *c, const dynq__einsum_t *e, const dynq__tensor_t *const *in,
                   dynq__tensor_t *out, const int64_t *size) {
  char all[2 * DYNQ_MAX_RANK];
  int na = 0;
  memcpy(all, e->lab[2], (size_t)e->rank[2]);
  na = e->rank[2];
  for (int k = 0; k < e->nin; k++)
    for (int i = 0; i < e->rank[k]; i++)
      if (memchr(all, e->lab[k][i], (size_t)na) == NULL) all[na++] = e->lab[k][i];
  int64_t st[2][2 * DYNQ_MAX_RANK] = {{0}}, dims[2 * DYNQ_MAX_RANK], cnt[2 * DYNQ_MAX_RANK] = {0};
  for (int k = 0; k < e->nin; k++) {
    int64_t s = 1;
    for (int i = e->rank[k] - 1; i >= 0; i--) {
      int j = (int)((const char *)memchr(all, e->lab[k][i], (size_t)na) - all);
      /* a repeated label walks the diagonal; a broadcast dim (1) stays */
      if (in[k]->dims[i] == size[(unsigned char)e->lab[k][i]]) st[k][j] += s;
      s *= in[k]->dims[i];
    }
  }
  int64_t inner = 1;
  for (int j = 0; j < na; j++) {
    dims[j] = size[(unsigned char)all[j]];
    if (j >= e->rank[2]) inner *= dims[j];
  }
  int64_t od[DYNQ_MAX_RANK];
  for (int i = 0; i < e->rank[2]; i++) od[i] = dims[i];
  int rc = dynq__op_alloc(c, out, DYNQ_DT_F32, e->rank[2], od, 1);
  if (rc) return rc;
  if (inner > 0 && dynq__tensor_numel(out) > INT64_MAX / inner)
    return dynq__op_fail(c, DYNQ_ELIMIT, "the sum takes more than 2^63 steps (%lld outputs x "
                         "%lld terms each)", (long long)dynq__tensor_numel(out),
                         (long long)inner);
  /* The output labels lead `all`, so walking every label combination in
   * row-major order visits output element t / inner, inner times in a row. */
  int64_t total = dynq__tensor_numel(out) * inner, off[2] = {0, 0};
  const float *A = in[0]->data, *B = e->nin > 1 ? in[1]->data : NULL;
  float *Y = out->data;
  double acc = 0;
  for (int64_t t = 0; t < total; t++) {
    /* the product of every label's size: far more steps than the
     * operands and the output hold */
    if ((t & 0xfffff) == 0 && (rc = dynq__op_poll(c)) != 0) return rc;
    acc += B ? (double)A[off[0]] * (double)B[off[1]] : (double)A[off[0]];
    if ((t + 1) % inner == 0) {
      Y[t / inner] = (float)acc;
      acc = 0;
    }
    for (int j = na - 1; j >= 0; j--) {
      off[0] += st[0][j], off[1] += st[1][j];
      if (++cnt[j] < dims[j]) break;
      off[0] -= st[0][j] * dims[j], off[1] -= st[1][j] * dims[j];
      cnt[j] = 0;
    }
  }
  return 0;
}

/* The equation for these operands' ranks: each '...' replaced by the
 * labels '0'.. of the dims it stands for, right-aligned over the longest
 * (numpy's broadcasting); 0, or an error naming the operand. */
static int expand(dynq__op_ctx_t *c, const dynq__einsum_t *e, const dynq__tensor_t *const *in,
                  dynq__einsum_t *x) {
  int len[2] = {0, 0}, E = 0;
  for (int k = 0; k < e->nin; k++) {
    int r = in[k]->rank;
    if (e->ell[k] < 0 ? r != e->rank[k] : r < e->rank[k])
      return dynq__op_fail(c, DYNQ_ESHAPE, "operand %d has rank %d; the equation gives it %d "
                           "labels%s", k, r, e->rank[k], e->ell[k] < 0 ? "" : " and '...'");
    len[k] = e->ell[k] < 0 ? 0 : r - e->rank[k];
    E = len[k] > E ? len[k] : E;
  }
  if (E + e->rank[2] > DYNQ_MAX_RANK)
    return dynq__op_fail(c, DYNQ_ESHAPE, "the output would have rank %d (at most %d)",
                         E + e->rank[2], DYNQ_MAX_RANK);
  *x = *e;
  for (int k = 0; k < 3; k++) {
    if (e->ell[k] < 0) continue;
    int L = k < 2 ? len[k] : E, at = e->ell[k];
    x->rank[k] = e->rank[k] + L;
    memcpy(x->lab[k], e->lab[k], (size_t)at);
    for (int i = 0; i < L; i++) x->lab[k][at + i] = (char)('0' + E - L + i);
    memcpy(x->lab[k] + at + L, e->lab[k] + at, (size_t)(e->rank[k] - at));
    x->ell[k] = -1;
  }
  return 0;
}

int dynq__run_einsum(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  dynq__einsum_t ex;
  const dynq__einsum_t *e = &ex;
  int rc, plain = 1;  /* plain: every label one size, none repeated in an operand */
  int64_t size[128];
  for (int i = 0; i < 128; i++) size[i] = -1;
  for (int k = 0; k < c->st->einsum.nin; k++)
    if ((rc = dynq__op_need_present(c, in[k], k)) || (rc = dynq__op_need_f32(c, in[k], k)))
      return rc;
  if ((rc = expand(c, &c->st->einsum, in, &ex))) return rc;
  for (int k = 0; k < e->nin; k++)
    for (int i = 0; i < e->rank[k]; i++) {
      unsigned char ch = (unsigned char)e->lab[k][i];
      int64_t d = in[k]->dims[i];
      if (memchr(e->lab[k], ch, (size_t)i) != NULL) plain = 0;
      if (size[ch] < 0 || size[ch] == d) {
        size[ch] = d;
        continue;
      }
      /* only the dims of an ellipsis broadcast, and only from 1 */
      if (ch >= '0' && ch <= '9' && (size[ch] == 1 || d == 1)) {
        size[ch] = size[ch] == 1 ? d : size[ch]; /* 1 against 0 gives 0 */
        plain = 0;
        continue;
      }
      if (ch >= '0' && ch <= '9')
        return dynq__op_fail(c, DYNQ_ESHAPE, "the '...' dims do not broadcast: %lld against "
                             "%lld in operand %d", (long long)size[ch], (long long)d, k);
      return dynq__op_fail(c, DYNQ_ESHAPE, "label '%c' is %lld in one operand and %lld in "
                           "operand %d", ch, (long long)size[ch], (long long)d, k);
    }
  if (e->nin == 2 && plain && run_gemm(c, e, in, out, size, &rc) == 0) return rc;
  return run_sum(c, e, in, out, size);
}
