/*
 * LSTM, GRU and the plain RNN, FP32 and dynamically quantized (inputs in
 * rnn.h).
 *
 * One driver serves the six ops: a direction first computes X*W^T (+ the
 * biases that can be folded) for every time step in one GEMM, then walks
 * the steps computing h_{t-1}*R^T (one GEMM of batch rows) and the FP32
 * cell.  The two GEMMs are either OpenBLAS on FP32 weights or the INT8
 * kernel on per-gate-row packed weights with per-row activation scales.
 * Rows of the batch whose sequence is shorter than the step are left
 * alone: their state stays, their Y rows stay zero (ONNX semantics; a
 * reverse direction starts at each row's own last valid step).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dynq/errors.h"
#include "kernels/clones.h"
#include "rnn.h"
#include "vmath.h"

static int rnn_dirs(const dynq__node_t *n) {
  const dynq__attr_t *a = dynq__node_attr(n, "direction");
  if (a == NULL) return 1;
  if (a->type != DYNQ_ATTR_STRING || a->s == NULL) return 0;
  if (strcmp(a->s, "forward") == 0) return 1;
  if (strcmp(a->s, "reverse") == 0) return 2;
  if (strcmp(a->s, "bidirectional") == 0) return 3;
  return 0;
}

/* One weight matrix of one direction, [N, K] row-major (row = gate row). */
typedef struct mat {
  int64_t N, K;
  const float *ref;        /* FP32 weights; when non-NULL the FP32 path runs */
  const int8_t *packed;    /* else: kernels.h panel layout */
  const int32_t *colsum;
  const float *scale;
} mat_t;

/* Scratch for quantized activations, sized for the largest call. */
typedef struct qbuf {
  dynq__op_ctx_t *c; /* for the quantization statistics */
  uint8_t *a;       /* rows * kp, owned (aligned) */
  float *scale;     /* rows, owned */
  int32_t *zp;      /* rows, owned */
} qbuf_t;

/* Column chunk of the recurrent GEMM walked in alternating order. */
#define SERPENTINE_COLS 256

/* Y[m, n0..n1) = X[m, :] . W[n, :] (+ bias[n]) for M rows.  The INT8 path
 * writes columns from n0 rounded down to 16 (the kernel's panel edge).
 * rev: walk the weights in column chunks from the end.  The recurrent
 * step alternates it: a weight matrix a little larger than L2 (R of an
 * LSTM with H = 512 is 1 MiB) then finds the chunks it read last still
 * in cache, instead of missing on every line of a cyclic stream. */
static void mat_apply(const dynq__kernel_t *kr, const mat_t *w, int64_t M,
                      const float *X, int64_t ldx, float *Y, int64_t ldy,
                      int64_t n0, int64_t n1, const float *bias, int per_tensor,
                      qbuf_t *q, int rev) {
  if (M == 0 || n1 <= n0) return;
  if (w->ref != NULL) {
    dynq__sgemm(0, 1, M, n1 - n0, w->K, 1.0f, X, ldx, w->ref + n0 * w->K, w->K,
                0.0f, Y + n0, ldy);
    if (bias != NULL)
      for (int64_t m = 0; m < M; m++)
        for (int64_t n = n0; n < n1; n++) Y[m * ldy + n] += bias[n];
    return;
  }
  const int64_t kp = dynq__round_up(w->K, DYNQ_QGEMM_KG);
  dynq__quantize_rows(kr, M, w->K, X, (size_t)ldx, q->a, (size_t)kp, per_tensor,
                      q->scale, q->zp);
  dynq__op_note_quant(q->c, M, w->K, n1 - n0 / DYNQ_QGEMM_NR * DYNQ_QGEMM_NR, q->scale, per_tensor ? 1 : M);
  dynq__qgemm_args_t a = {
    .M = M, .N = w->N, .K = w->K,
    .A = q->a, .lda = (size_t)kp,
    .B = w->packed, .colsum = w->colsum, .w_scale = w->scale,
    .a_scale = q->scale, .a_zp = q->zp,
    .bias = bias, .act = DYNQ_ACT_NONE,
    .C = Y, .ldc = (size_t)ldy,
    .n0 = n0 / DYNQ_QGEMM_NR * DYNQ_QGEMM_NR, .n1 = n1,
  };
  if (!rev) {
    kr->qgemm(&a);
    return;
  }
  const int64_t start = a.n0;
  int64_t nc = (n1 - start + SERPENTINE_COLS - 1) / SERPENTINE_COLS;
  for (int64_t i = nc - 1; i >= 0; i--) {
    a.n0 = start + i * SERPENTINE_COLS;
    a.n1 = a.n0 + SERPENTINE_COLS < n1 ? a.n0 + SERPENTINE_COLS : n1;
    kr->qgemm(&a);
  }
}

/* Which cell a node runs: its gate count G is 4, 3, 1. */
enum { CELL_LSTM, CELL_GRU, CELL_PLAIN };

/* One activation function: DYNQ_RNN_ACT_* with its alpha and beta. */
typedef struct act_fn {
  int code;
  float alpha, beta;
} act_fn_t;

typedef struct rnn {
  dynq__op_ctx_t *c;
  int gru, plain, lbr, D, dirs, layout, input_forget, has_clip, per_tensor;
  float clip;
  int custom;          /* LSTM/GRU: some function is not the default */
  act_fn_t fn[2][3];   /* [direction][f, g, h] (RNN: f; GRU: f, g) */
  int64_t T, B, K, H, G;
  mat_t W[2], R[2];
  const float *bias;   /* [D, 2GH] or NULL */
  const float *P;      /* [D, 3H] or NULL (LSTM peepholes i, o, f) */
  int64_t *len;        /* [B], owned */
  const float *X, *h0, *c0;
  float *Y, *Yh, *Yc;
} rnn_t;

/* ---- gate functions over arrays ----
 *
 * libm's expf/tanhf per element cost more than the INT8 GEMMs of a step,
 * so the cell math runs as array passes the compiler vectorizes (baseline
 * ISA: no -m flags outside lib/kernels), with the shared vector math of
 * vmath.h (the Sigmoid and Tanh ops give the same bits). */
/* no-trapping-math lets GCC if-convert the clamps (results are unchanged:
 * it only stops assuming FP exceptions are observed). */
#define VEC DYNQ_VEC_OPT
#define CLONES DYNQ_CLONES
#define VECI VEC inline __attribute__((always_inline))

VECI static void vsig(float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] = dynq_vsigmoid(x[i]);
}
VECI static void vtanh(const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = dynq_vtanh(x[i]);
}
VECI static void vadd(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
VECI static void vclip(float *x, int64_t n, float c) {
  for (int64_t i = 0; i < n; i++) x[i] = x[i] < -c ? -c : x[i] > c ? c : x[i];
}
VECI static void vfma(float *y, const float *a, const float *b, int64_t n) { /* y += a*b */
  for (int64_t i = 0; i < n; i++) y[i] += a[i] * b[i];
}

/* y = f(x) over n values (y may be x), f any of the eleven activations
 * (ONNX's formulas; Tanh and Sigmoid are vmath.h's, as in the default
 * cells): the plain RNN's f and the LSTM/GRU functions when a node names
 * others than the defaults. */
VECI static void vact(const act_fn_t *f, const float *x, float *y, int64_t n) {
  const float a = f->alpha, be = f->beta;
  switch (f->code) {
  case DYNQ_RNN_ACT_TANH: vtanh(x, y, n); break;
  case DYNQ_RNN_ACT_RELU:
    for (int64_t j = 0; j < n; j++) y[j] = x[j] < 0.0f ? 0.0f : x[j];
    break;
  case DYNQ_RNN_ACT_SIGMOID:
    for (int64_t j = 0; j < n; j++) y[j] = dynq_vsigmoid(x[j]);
    break;
  case DYNQ_RNN_ACT_AFFINE:
    for (int64_t j = 0; j < n; j++) y[j] = a * x[j] + be;
    break;
  case DYNQ_RNN_ACT_LEAKY_RELU:
    for (int64_t j = 0; j < n; j++) y[j] = x[j] < 0.0f ? a * x[j] : x[j];
    break;
  case DYNQ_RNN_ACT_THRESHOLDED_RELU:
    for (int64_t j = 0; j < n; j++) y[j] = x[j] >= a ? x[j] : 0.0f;
    break;
  case DYNQ_RNN_ACT_SCALED_TANH:
    for (int64_t j = 0; j < n; j++) y[j] = a * dynq_vtanh(be * x[j]);
    break;
  case DYNQ_RNN_ACT_HARD_SIGMOID:
    for (int64_t j = 0; j < n; j++) {
      float v = a * x[j] + be;
      y[j] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
    break;
  case DYNQ_RNN_ACT_ELU:
    for (int64_t j = 0; j < n; j++) y[j] = x[j] < 0.0f ? a * expm1f(x[j]) : x[j];
    break;
  case DYNQ_RNN_ACT_SOFTSIGN:
    for (int64_t j = 0; j < n; j++) y[j] = x[j] / (1.0f + fabsf(x[j]));
    break;
  case DYNQ_RNN_ACT_SOFTPLUS: /* log(1 + e^x) without overflow */
    for (int64_t j = 0; j < n; j++)
      y[j] = x[j] > 0.0f ? x[j] + log1pf(expf(-x[j])) : log1pf(expf(x[j]));
    break;
  default: /* refused at load */
    break;
  }
}

/* LSTM cell for one row: gate pre-activations [i, o, f, c] are x + g
 * (without peepholes); c updated in place, h written; t is H floats of
 * scratch.  fn NULL: the default functions (sigmoid, tanh, tanh) as
 * vsig/vtanh; else fn[0..2] are f, g, h.  Inlined into lstm_cell with
 * fn NULL, so the default cell is the code it always was, and into
 * lstm_cell_act.  Compiled for AVX-512 / AVX2 / baseline and picked at
 * load (target_clones): elementwise IEEE operations in the same order, so
 * every clone gives the same bits. */
VECI static void lstm_body(const rnn_t *r, const act_fn_t *fn, const float *P, const float *x,
                           float *g, float *c, float *h, float *t) {
  const int64_t H = r->H;
  vadd(g, x, 4 * H);
  float *gi = g, *go = g + H, *gf = g + 2 * H, *gc = g + 3 * H;
  if (P) {
    vfma(gi, P, c, H);
    vfma(gf, P + 2 * H, c, H);
  }
  if (r->has_clip) {
    vclip(gi, H, r->clip);
    vclip(gf, 2 * H, r->clip); /* f and c */
  }
  if (fn) vact(&fn[0], gi, gi, H);
  else vsig(gi, H);
  if (r->input_forget) {
    for (int64_t j = 0; j < H; j++) gf[j] = 1.0f - gi[j];
  } else if (fn) {
    vact(&fn[0], gf, gf, H);
  } else {
    vsig(gf, H);
  }
  if (fn) vact(&fn[1], gc, gc, H);
  else vtanh(gc, gc, H);
  for (int64_t j = 0; j < H; j++) c[j] = gf[j] * c[j] + gi[j] * gc[j];
  if (P) vfma(go, P + H, c, H);
  if (r->has_clip) vclip(go, H, r->clip);
  if (fn) vact(&fn[0], go, go, H);
  else vsig(go, H);
  if (fn) vact(&fn[2], c, t, H);
  else vtanh(c, t, H);
  for (int64_t j = 0; j < H; j++) h[j] = go[j] * t[j];
}
CLONES VEC static void lstm_cell(const rnn_t *r, const float *P, const float *x, float *g,
                                 float *c, float *h, float *t) {
  lstm_body(r, NULL, P, x, g, c, h, t);
}
CLONES VEC static void lstm_cell_act(const rnn_t *r, const act_fn_t *fn, const float *P,
                                     const float *x, float *g, float *c, float *h, float *t) {
  lstm_body(r, fn, P, x, g, c, h, t);
}

/* GRU, first half for one row: z and r = f(x + g) in g[0, 2H), f
 * sigmoid (fn NULL) or fn[0]; without linear_before_reset also rh = r * h
 * for the second GEMM.  As lstm_body: inlined into the default and the
 * generic clones. */
VECI static void gru_gates_body(const rnn_t *r, const act_fn_t *fn, const float *x, float *g,
                                const float *h, float *rh) {
  const int64_t H = r->H;
  vadd(g, x, 2 * H);
  if (r->has_clip) vclip(g, 2 * H, r->clip);
  if (fn) vact(&fn[0], g, g, 2 * H);
  else vsig(g, 2 * H);
  if (!r->lbr)
    for (int64_t j = 0; j < H; j++) rh[j] = g[H + j] * h[j];
}
CLONES VEC static void gru_gates(const rnn_t *r, const float *x, float *g, const float *h,
                                 float *rh) {
  gru_gates_body(r, NULL, x, g, h, rh);
}
CLONES VEC static void gru_gates_act(const rnn_t *r, const act_fn_t *fn, const float *x,
                                     float *g, const float *h, float *rh) {
  gru_gates_body(r, fn, x, g, h, rh);
}

/* GRU, second half: hh = g(x_h + r * (g_h + Rb_h)) with
 * linear_before_reset, else g(x_h + a_h) where a = (r * h) R^T, g tanh
 * (fn NULL) or fn[1]; then h = (1 - z) * hh + z * h.  t is H floats of
 * scratch. */
VECI static void gru_out_body(const rnn_t *r, const act_fn_t *fn, const float *x, const float *g,
                              const float *a, const float *rb, float *h, float *t) {
  const int64_t H = r->H;
  const float *xh = x + 2 * H, *gr = g + H, *gh = g + 2 * H;
  if (a == NULL) {
    for (int64_t j = 0; j < H; j++) t[j] = gh[j] + (rb ? rb[2 * H + j] : 0.0f);
    for (int64_t j = 0; j < H; j++) t[j] = xh[j] + gr[j] * t[j];
  } else {
    for (int64_t j = 0; j < H; j++) t[j] = xh[j] + a[2 * H + j];
  }
  if (r->has_clip) vclip(t, H, r->clip);
  if (fn) vact(&fn[1], t, t, H);
  else vtanh(t, t, H);
  for (int64_t j = 0; j < H; j++) h[j] = (1.0f - g[j]) * t[j] + g[j] * h[j];
}
CLONES VEC static void gru_out(const rnn_t *r, const float *x, const float *g, const float *a,
                               const float *rb, float *h, float *t) {
  gru_out_body(r, NULL, x, g, a, rb, h, t);
}
CLONES VEC static void gru_out_act(const rnn_t *r, const act_fn_t *fn, const float *x,
                                   const float *g, const float *a, const float *rb, float *h,
                                   float *t) {
  gru_out_body(r, fn, x, g, a, rb, h, t);
}

/* Plain RNN for one row: h = f(clip(x + g)), f the direction's activation
 * (ONNX's formulas; Tanh and Sigmoid are vmath.h's, as in LSTM/GRU). */
CLONES VEC static void plain_cell(const rnn_t *r, int d, const float *x, float *g, float *h) {
  const int64_t H = r->H;
  vadd(g, x, H);
  if (r->has_clip) vclip(g, H, r->clip);
  vact(&r->fn[d][0], g, h, H);
}

static int64_t xrow(const rnn_t *r, int64_t t, int64_t b) {
  return r->layout ? b * r->T + t : t * r->B + b;
}
static int64_t yoff(const rnn_t *r, int64_t t, int d, int64_t b) {
  return (r->layout ? (b * r->T + t) * r->D + d : (t * r->D + d) * r->B + b) * r->H;
}
static int64_t hoff(const rnn_t *r, int d, int64_t b) {
  return (r->layout ? b * r->D + d : d * r->B + b) * r->H;
}

static int compute(rnn_t *r) {
  const int64_t T = r->T, B = r->B, H = r->H, GH = r->G * r->H;
  const int quant = r->W[0].ref == NULL;
  const dynq__kernel_t *kr = r->c->kernel;
  int rc;
  /* X*W for every step, the per-step rows (B * GH floats, three of them;
   * B need not be small when T is 0) and the quantized rows: checked
   * against the run's byte limit like an output */
  if ((rc = dynq__op_check_bytes(r->c, T * B * GH, (int64_t)sizeof(float), "the input projection X*W")) ||
      (rc = dynq__op_check_bytes(r->c, B * GH, (int64_t)sizeof(float), "the recurrent step")))
    return rc;
  if (quant && (rc = dynq__op_check_bytes(r->c, (T * B > B ? T * B : B) *
                                                    dynq__round_up(r->K > H ? r->K : H, DYNQ_QGEMM_KG),
                                          1, "the quantized input rows")))
    return rc;
  float *xw = malloc(sizeof(float) * (size_t)(T * B * GH > 0 ? T * B * GH : 1));
  float *hr = malloc(sizeof(float) * (size_t)(B * GH + 1));
  float *hr2 = malloc(sizeof(float) * (size_t)(B * GH + 1));
  float *h = malloc(sizeof(float) * (size_t)(B * H + 1));
  float *cs = malloc(sizeof(float) * (size_t)(B * H + 1));
  float *rh = malloc(sizeof(float) * (size_t)(B * H + 1));
  float *fb = malloc(sizeof(float) * (size_t)GH);
  float *tmp = malloc(sizeof(float) * (size_t)(H + 1));
  qbuf_t q = {.c = r->c};
  if (quant) {
    int64_t rows = T * B > B ? T * B : B;
    int64_t kp = dynq__round_up(r->K > H ? r->K : H, DYNQ_QGEMM_KG);
    q.a = dynq__aligned_alloc((size_t)(rows * kp + 1));
    q.scale = malloc(sizeof(float) * (size_t)(rows + 1));
    q.zp = malloc(sizeof(int32_t) * (size_t)(rows + 1));
    if (q.a == NULL || q.scale == NULL || q.zp == NULL) goto oom;
  }
  if (!xw || !hr || !hr2 || !h || !cs || !rh || !fb || !tmp) goto oom;

  for (int d = 0; d < r->D; d++) {
    const int fwd = r->dirs == 1 || (r->dirs == 3 && d == 0);
    const float *wb = r->bias ? r->bias + d * 2 * GH : NULL;
    const float *rb = wb ? wb + GH : NULL;
    const float *P = r->P ? r->P + d * 3 * H : NULL;
    /* Biases folded into the X*W GEMM: all of them except GRU's R_bh
     * under linear_before_reset, which r multiplies. */
    for (int64_t j = 0; j < GH; j++)
      fb[j] = wb ? wb[j] + (r->gru && r->lbr && j >= 2 * H ? 0.0f : rb[j]) : 0.0f;
    mat_apply(kr, &r->W[d], T * B, r->X, r->K, xw, GH, 0, GH, fb, r->per_tensor, &q, 0);
    for (int64_t b = 0; b < B; b++) {
      for (int64_t j = 0; j < H; j++) {
        h[b * H + j] = r->h0 ? r->h0[hoff(r, d, b) + j] : 0.0f;
        cs[b * H + j] = r->c0 ? r->c0[hoff(r, d, b) + j] : 0.0f;
      }
    }
    for (int64_t s = 0; s < T; s++) {
      if ((s & 63) == 63 && (rc = dynq__op_poll(r->c)) != 0) goto out;
      if (s == 0 && r->h0 == NULL) /* h = 0: the product is exactly 0 on both paths */
        memset(hr, 0, sizeof(float) * (size_t)(B * GH));
      else
        mat_apply(kr, &r->R[d], B, h, H, hr, GH, 0, r->gru && !r->lbr ? 2 * H : GH,
                  NULL, r->per_tensor, &q, (int)(s & 1));
      if (r->plain) {
        for (int64_t b = 0; b < B; b++) {
          if (s >= r->len[b]) continue;
          int64_t t = fwd ? s : r->len[b] - 1 - s;
          plain_cell(r, d, xw + xrow(r, t, b) * GH, hr + b * GH, h + b * H);
        }
      } else if (!r->gru) {
        for (int64_t b = 0; b < B; b++) {
          if (s >= r->len[b]) continue;
          int64_t t = fwd ? s : r->len[b] - 1 - s;
          if (r->custom)
            lstm_cell_act(r, r->fn[d], P, xw + xrow(r, t, b) * GH, hr + b * GH, cs + b * H,
                          h + b * H, tmp);
          else
            lstm_cell(r, P, xw + xrow(r, t, b) * GH, hr + b * GH, cs + b * H, h + b * H, tmp);
        }
      } else {
        for (int64_t b = 0; b < B; b++) {
          float *g = hr + b * GH;
          if (s >= r->len[b]) {
            memset(rh + b * H, 0, sizeof(float) * (size_t)H);
            continue;
          }
          int64_t t = fwd ? s : r->len[b] - 1 - s;
          if (r->custom)
            gru_gates_act(r, r->fn[d], xw + xrow(r, t, b) * GH, g, h + b * H, rh + b * H);
          else
            gru_gates(r, xw + xrow(r, t, b) * GH, g, h + b * H, rh + b * H);
        }
        if (!r->lbr)
          mat_apply(kr, &r->R[d], B, rh, H, hr2, GH, 2 * H, 3 * H, NULL, r->per_tensor, &q, (int)(s & 1));
        for (int64_t b = 0; b < B; b++) {
          if (s >= r->len[b]) continue;
          int64_t t = fwd ? s : r->len[b] - 1 - s;
          if (r->custom)
            gru_out_act(r, r->fn[d], xw + xrow(r, t, b) * GH, hr + b * GH,
                        r->lbr ? NULL : hr2 + b * GH, rb, h + b * H, tmp);
          else
            gru_out(r, xw + xrow(r, t, b) * GH, hr + b * GH, r->lbr ? NULL : hr2 + b * GH,
                    rb, h + b * H, tmp);
        }
      }
      for (int64_t b = 0; b < B; b++) {
        if (s >= r->len[b]) continue;
        int64_t t = fwd ? s : r->len[b] - 1 - s;
        memcpy(r->Y + yoff(r, t, d, b), h + b * H, sizeof(float) * (size_t)H);
      }
    }
    for (int64_t b = 0; b < B; b++) {
      memcpy(r->Yh + hoff(r, d, b), h + b * H, sizeof(float) * (size_t)H);
      if (r->Yc) memcpy(r->Yc + hoff(r, d, b), cs + b * H, sizeof(float) * (size_t)H);
    }
  }
  goto out;
oom:
  rc = dynq__op_fail(r->c, -ENOMEM, "out of memory");
out:
  free(xw);
  free(hr);
  free(hr2);
  free(h);
  free(cs);
  free(rh);
  free(fb);
  free(tmp);
  dynq__aligned_free(q.a);
  free(q.scale);
  free(q.zp);
  return rc;
}

/* ---- input checks and setup ---- */

static int need(dynq__op_ctx_t *c, const dynq__tensor_t *t, const char *what,
                dynq_dtype_t dt, int rank, int64_t d0, int64_t d1, int64_t d2) {
  char s[128];
  const int64_t want[3] = {d0, d1, d2};
  if (t->dtype != dt)
    return dynq__op_fail(c, DYNQ_EDTYPE, "%s is %s, expected %s", what,
                         dynq__dtype_name(t->dtype), dynq__dtype_name(dt));
  int ok = t->rank == rank;
  for (int i = 0; ok && i < rank; i++) ok = t->dims[i] == want[i];
  char w[128];
  if (!ok)
    return dynq__op_fail(c, DYNQ_ESHAPE, "%s has shape %s, expected %s", what,
                         dynq__shape_str(s, sizeof(s), t->rank, t->dims),
                         dynq__shape_str(w, sizeof(w), rank, want));
  return 0;
}

/* A 1-D int8 constant holding D packed blocks of (N x K) weights. */
static int need_packed(dynq__op_ctx_t *c, const dynq__tensor_t *t, const char *what,
                       int D, int64_t N, int64_t K) {
  int64_t blk = dynq__round_up(N, DYNQ_QGEMM_NR) * dynq__round_up(K, DYNQ_QGEMM_KG);
  return need(c, t, what, DYNQ_DT_I8, 1, D * blk, 0, 0);
}

static int setup(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out,
                 int quant, int cell, rnn_t *r) {
  const dynq__tensor_t *x = in[0];
  const int lstm = cell == CELL_LSTM;
  char s[128];
  int rc;
  memset(r, 0, sizeof(*r));
  r->c = c;
  r->gru = cell == CELL_GRU;
  r->plain = cell == CELL_PLAIN;
  r->G = lstm ? 4 : r->gru ? 3 : 1;
  const dynq__rnn_attrs_t *at = &c->st->rnn;
  const int F = lstm ? 3 : r->gru ? 2 : 1;
  r->dirs = at->dirs;
  r->D = r->dirs == 3 ? 2 : 1;
  r->custom = at->custom;
  for (int d = 0; d < r->D; d++)
    for (int k = 0; k < F; k++) {
      int i = d * F + k;
      if (at->act[i] < 0) return dynq__op_fail(c, DYNQ_EGRAPH, "act%d is not an activation code", i);
      r->fn[d][k] = (act_fn_t){at->act[i], at->act_alpha[i], at->act_beta[i]};
    }
  r->layout = at->layout;
  r->lbr = at->lbr;
  r->input_forget = at->input_forget;
  r->per_tensor = at->per_tensor;
  r->has_clip = at->has_clip;
  r->clip = at->clip;
  r->H = at->hidden_size;
  if (r->dirs == 0) return dynq__op_fail(c, DYNQ_EGRAPH, "bad direction attribute");
  if (r->H < 1 || r->H > DYNQ_RNN_MAX_HIDDEN)
    return dynq__op_fail(c, DYNQ_EGRAPH, "hidden_size %lld outside [1, %d]",
                         (long long)r->H, DYNQ_RNN_MAX_HIDDEN);
  if (x->dtype != DYNQ_DT_F32 || x->rank != 3)
    return dynq__op_fail(c, x->dtype != DYNQ_DT_F32 ? DYNQ_EDTYPE : DYNQ_ESHAPE,
                         "X must be float32 of rank 3, got %s %s", dynq__dtype_name(x->dtype),
                         dynq__shape_str(s, sizeof(s), x->rank, x->dims));
  r->T = r->layout ? x->dims[1] : x->dims[0];
  r->B = r->layout ? x->dims[0] : x->dims[1];
  r->K = x->dims[2];
  r->X = x->data;
  const int64_t D = r->D, H = r->H, GH = r->G * r->H, B = r->B, T = r->T, K = r->K;
  if (K < 1 || K > DYNQ_RNN_MAX_HIDDEN)
    return dynq__op_fail(c, DYNQ_ESHAPE, "input size %lld outside [1, %d]", (long long)K,
                         DYNQ_RNN_MAX_HIDDEN);
  int64_t big[3] = {T, B, GH}, step[2] = {B, GH}; /* T may be 0, B anything then */
  if (dynq__shape_numel(3, big) < 0 || dynq__shape_numel(2, step) < 0)
    return dynq__op_fail(c, DYNQ_ELIMIT, "sequence too large: %lld steps x %lld rows x %lld gates",
                         (long long)T, (long long)B, (long long)GH);
  const int base = quant ? 7 : 3;
  const int iref = base + (lstm ? 5 : 3);
  const int use_ref = !quant || c->precision == DYNQ_PRECISION_FP32;
  const dynq__tensor_t *W = NULL, *R = NULL;
  if (!quant) {
    W = in[1];
    R = in[2];
  } else if (use_ref) {
    W = in[iref];
    R = in[iref + 1];
    if (W == NULL || R == NULL)
      return dynq__op_fail(c, DYNQ_ENOREF, "model has no FP32 reference weights (quantized with --no-reference)");
  }
  if (use_ref) {
    if ((rc = need(c, W, "W", DYNQ_DT_F32, 3, D, GH, K)) ||
        (rc = need(c, R, "R", DYNQ_DT_F32, 3, D, GH, H)))
      return rc;
  } else {
    int64_t ki = at->input_size;
    if (ki != K)
      return dynq__op_fail(c, DYNQ_ESHAPE, "X has %lld features, weights were quantized for %lld",
                           (long long)K, (long long)ki);
    if ((rc = need_packed(c, in[1], "packed W", r->D, GH, K)) ||
        (rc = need(c, in[2], "W column sums", DYNQ_DT_I32, 2, D, GH, 0)) ||
        (rc = need(c, in[3], "W scales", DYNQ_DT_F32, 2, D, GH, 0)) ||
        (rc = need_packed(c, in[4], "packed R", r->D, GH, H)) ||
        (rc = need(c, in[5], "R column sums", DYNQ_DT_I32, 2, D, GH, 0)) ||
        (rc = need(c, in[6], "R scales", DYNQ_DT_F32, 2, D, GH, 0)))
      return rc;
  }
  for (int d = 0; d < r->D; d++) {
    r->W[d] = (mat_t){.N = GH, .K = K};
    r->R[d] = (mat_t){.N = GH, .K = H};
    if (use_ref) {
      r->W[d].ref = (const float *)W->data + d * GH * K;
      r->R[d].ref = (const float *)R->data + d * GH * H;
    } else {
      r->W[d].packed = (const int8_t *)in[1]->data +
                       d * dynq__round_up(GH, DYNQ_QGEMM_NR) * dynq__round_up(K, DYNQ_QGEMM_KG);
      r->W[d].colsum = (const int32_t *)in[2]->data + d * GH;
      r->W[d].scale = (const float *)in[3]->data + d * GH;
      r->R[d].packed = (const int8_t *)in[4]->data +
                       d * dynq__round_up(GH, DYNQ_QGEMM_NR) * dynq__round_up(H, DYNQ_QGEMM_KG);
      r->R[d].colsum = (const int32_t *)in[5]->data + d * GH;
      r->R[d].scale = (const float *)in[6]->data + d * GH;
    }
  }
  const dynq__tensor_t *tb = in[base], *tl = in[base + 1], *th = in[base + 2];
  const dynq__tensor_t *tc = lstm ? in[base + 3] : NULL, *tp = lstm ? in[base + 4] : NULL;
  const int64_t sd0 = r->layout ? B : D, sd1 = r->layout ? D : B;
  if (tb && (rc = need(c, tb, "B", DYNQ_DT_F32, 2, D, 2 * GH, 0))) return rc;
  if (th && (rc = need(c, th, "initial_h", DYNQ_DT_F32, 3, sd0, sd1, H))) return rc;
  if (tc && (rc = need(c, tc, "initial_c", DYNQ_DT_F32, 3, sd0, sd1, H))) return rc;
  if (tp && (rc = need(c, tp, "P", DYNQ_DT_F32, 2, D, 3 * H, 0))) return rc;
  r->bias = tb ? tb->data : NULL;
  r->h0 = th ? th->data : NULL;
  r->c0 = tc ? tc->data : NULL;
  r->P = tp ? tp->data : NULL;
  r->len = malloc(sizeof(int64_t) * (size_t)(B + 1));
  if (r->len == NULL) return dynq__op_fail(c, -ENOMEM, "out of memory");
  for (int64_t b = 0; b < B; b++) r->len[b] = T;
  if (tl) {
    if ((tl->dtype != DYNQ_DT_I32 && tl->dtype != DYNQ_DT_I64) || tl->rank != 1 || tl->dims[0] != B) {
      rc = dynq__op_fail(c, DYNQ_ESHAPE, "sequence_lens must be int32 [%lld], got %s %s",
                         (long long)B, dynq__dtype_name(tl->dtype),
                         dynq__shape_str(s, sizeof(s), tl->rank, tl->dims));
      goto fail;
    }
    for (int64_t b = 0; b < B; b++) {
      int64_t v = tl->dtype == DYNQ_DT_I32 ? ((const int32_t *)tl->data)[b]
                                           : ((const int64_t *)tl->data)[b];
      if (v < 0 || v > T) {
        rc = dynq__op_fail(c, DYNQ_EDATA, "sequence_lens[%lld] = %lld outside [0, %lld]",
                           (long long)b, (long long)v, (long long)T);
        goto fail;
      }
      r->len[b] = v;
    }
  }
  int64_t yd[4], hd[3];
  if (r->layout) {
    yd[0] = B, yd[1] = T, yd[2] = D, yd[3] = H;
    hd[0] = B, hd[1] = D, hd[2] = H;
  } else {
    yd[0] = T, yd[1] = D, yd[2] = B, yd[3] = H;
    hd[0] = D, hd[1] = B, hd[2] = H;
  }
  int nout = lstm ? 3 : 2;
  for (int i = 0; i < nout; i++) {
    /* zeroed: Y past a row's sequence length stays 0 */
    rc = i == 0 ? dynq__op_alloc(c, &out[0], DYNQ_DT_F32, 4, yd, 1)
                : dynq__op_alloc(c, &out[i], DYNQ_DT_F32, 3, hd, 1);
    if (rc != 0) goto fail;
  }
  r->Y = out[0].data;
  r->Yh = out[1].data;
  r->Yc = lstm ? out[2].data : NULL;
  return 0;
fail:
  free(r->len);
  r->len = NULL;
  return rc;
}

static int run(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out,
               int quant, int cell) {
  rnn_t r;
  int rc = setup(c, in, out, quant, cell, &r);
  if (rc == 0) rc = compute(&r);
  free(r.len);
  if (rc != 0)
    for (int i = 0; i < (cell == CELL_LSTM ? 3 : 2); i++) dynq__tensor_clear(&out[i]);
  return rc;
}

int dynq__run_lstm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  return run(c, in, out, 0, CELL_LSTM);
}
int dynq__run_gru(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  return run(c, in, out, 0, CELL_GRU);
}
int dynq__run_rnn(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  return run(c, in, out, 0, CELL_PLAIN);
}
int dynq__run_qlstm(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  return run(c, in, out, 1, CELL_LSTM);
}
int dynq__run_qgru(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  return run(c, in, out, 1, CELL_GRU);
}
int dynq__run_qrnn(dynq__op_ctx_t *c, const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  return run(c, in, out, 1, CELL_PLAIN);
}

/* ---- the plain RNN's activations ---- */

static const struct {
  const char *name;
  int takes_alpha, takes_beta;
  float alpha, beta;   /* defaults: the ONNX op's of the same name */
} acts[DYNQ_RNN_ACT__COUNT] = {
  [DYNQ_RNN_ACT_TANH] = {"Tanh", 0, 0, 0.0f, 0.0f},
  [DYNQ_RNN_ACT_RELU] = {"Relu", 0, 0, 0.0f, 0.0f},
  [DYNQ_RNN_ACT_SIGMOID] = {"Sigmoid", 0, 0, 0.0f, 0.0f},
  [DYNQ_RNN_ACT_AFFINE] = {"Affine", 1, 1, 1.0f, 0.0f},
  [DYNQ_RNN_ACT_LEAKY_RELU] = {"LeakyRelu", 1, 0, 0.01f, 0.0f},
  [DYNQ_RNN_ACT_THRESHOLDED_RELU] = {"ThresholdedRelu", 1, 0, 1.0f, 0.0f},
  [DYNQ_RNN_ACT_SCALED_TANH] = {"ScaledTanh", 1, 1, 1.0f, 1.0f},
  [DYNQ_RNN_ACT_HARD_SIGMOID] = {"HardSigmoid", 1, 1, 0.2f, 0.5f},
  [DYNQ_RNN_ACT_ELU] = {"Elu", 1, 0, 1.0f, 0.0f},
  [DYNQ_RNN_ACT_SOFTSIGN] = {"Softsign", 0, 0, 0.0f, 0.0f},
  [DYNQ_RNN_ACT_SOFTPLUS] = {"Softplus", 0, 0, 0.0f, 0.0f},
};

int dynq__rnn_act(const char *name, int *ret_takes_alpha, int *ret_takes_beta,
                  float *ret_alpha, float *ret_beta) {
  for (int i = 0; i < DYNQ_RNN_ACT__COUNT; i++) {
    if (name == NULL || strcasecmp(name, acts[i].name) != 0) continue;
    if (ret_takes_alpha) *ret_takes_alpha = acts[i].takes_alpha;
    if (ret_takes_beta) *ret_takes_beta = acts[i].takes_beta;
    if (ret_alpha) *ret_alpha = acts[i].alpha;
    if (ret_beta) *ret_beta = acts[i].beta;
    return i;
  }
  return -1;
}

const char *dynq__rnn_act_name(int act) {
  return act >= 0 && act < DYNQ_RNN_ACT__COUNT ? acts[act].name : "?";
}

/* ---- load-time check ---- */

#define CHECK DYNQ_OP_CHECK

static int const_is(const dynq__graph_t *g, const dynq__node_t *n, int i,
                    dynq_dtype_t dt, int rank, int64_t d0, int64_t d1, int64_t d2) {
  if (i >= n->n_in || n->in[i] < 0) return 0;
  const dynq__value_t *v = &g->values[n->in[i]];
  const int64_t want[3] = {d0, d1, d2};
  if (v->data == NULL || v->dtype != dt || v->rank != rank) return 0;
  for (int k = 0; k < rank; k++)
    if (v->dims[k] != want[k]) return 0;
  return 1;
}

int dynq__check_rnn(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  const int quant = n->op == DYNQ_OP_QLSTM || n->op == DYNQ_OP_QGRU || n->op == DYNQ_OP_QRNN;
  const int gru = n->op == DYNQ_OP_GRU || n->op == DYNQ_OP_QGRU;
  const int plain = n->op == DYNQ_OP_RNN || n->op == DYNQ_OP_QRNN;
  const int dirs = rnn_dirs(n);
  const int64_t H = dynq__node_attr_i(n, "hidden_size", -1);
  CHECK(dirs != 0, "direction must be forward, reverse or bidirectional");
  CHECK(H >= 1 && H <= DYNQ_RNN_MAX_HIDDEN, "hidden_size %lld outside [1, %d]",
        (long long)H, DYNQ_RNN_MAX_HIDDEN);
  int64_t lay = dynq__node_attr_i(n, "layout", 0);
  CHECK(lay == 0 || lay == 1, "layout must be 0 or 1");
  if (!plain) {
    int64_t f = dynq__node_attr_i(n, gru ? "linear_before_reset" : "input_forget", 0);
    CHECK(f == 0 || f == 1, "%s must be 0 or 1", gru ? "linear_before_reset" : "input_forget");
  }
  const int F = plain ? 1 : gru ? 2 : 3;
  for (int i = 0; i < (dirs == 3 ? 2 : 1) * F; i++) {
    char an[16];
    snprintf(an, sizeof(an), "act%d", i);
    int64_t a = dynq__node_attr_i(n, an, 0);
    CHECK(a >= 0 && a < DYNQ_RNN_ACT__COUNT, "act%d = %lld is not an activation code (0 to %d)", i,
          (long long)a, DYNQ_RNN_ACT__COUNT - 1);
  }
  const dynq__attr_t *cl = dynq__node_attr(n, "clip");
  CHECK(cl == NULL || (cl->type == DYNQ_ATTR_FLOAT && cl->f > 0.0f), "clip must be a positive float");
  if (!quant) return 0;
  const int64_t D = dirs == 3 ? 2 : 1, GH = (plain ? 1 : gru ? 3 : 4) * H;
  const int64_t K = dynq__node_attr_i(n, "input_size", -1);
  int64_t pt = dynq__node_attr_i(n, "per_tensor", 0);
  CHECK(pt == 0 || pt == 1, "per_tensor must be 0 or 1");
  CHECK(K >= 1 && K <= DYNQ_RNN_MAX_HIDDEN, "input_size %lld outside [1, %d]", (long long)K,
        DYNQ_RNN_MAX_HIDDEN);
  const int64_t wb = D * dynq__round_up(GH, DYNQ_QGEMM_NR) * dynq__round_up(K, DYNQ_QGEMM_KG);
  const int64_t rbk = D * dynq__round_up(GH, DYNQ_QGEMM_NR) * dynq__round_up(H, DYNQ_QGEMM_KG);
  CHECK(const_is(g, n, 1, DYNQ_DT_I8, 1, wb, 0, 0), "packed W must be a constant int8 [%lld]", (long long)wb);
  CHECK(const_is(g, n, 2, DYNQ_DT_I32, 2, D, GH, 0), "W column sums must be a constant int32 [%lld, %lld]", (long long)D, (long long)GH);
  CHECK(const_is(g, n, 3, DYNQ_DT_F32, 2, D, GH, 0), "W scales must be a constant float32 [%lld, %lld]", (long long)D, (long long)GH);
  CHECK(const_is(g, n, 4, DYNQ_DT_I8, 1, rbk, 0, 0), "packed R must be a constant int8 [%lld]", (long long)rbk);
  CHECK(const_is(g, n, 5, DYNQ_DT_I32, 2, D, GH, 0), "R column sums must be a constant int32 [%lld, %lld]", (long long)D, (long long)GH);
  CHECK(const_is(g, n, 6, DYNQ_DT_F32, 2, D, GH, 0), "R scales must be a constant float32 [%lld, %lld]", (long long)D, (long long)GH);
  const int iref = n->op == DYNQ_OP_QLSTM ? 12 : 10;
  CHECK(n->n_in <= iref || n->in[iref] < 0 || const_is(g, n, iref, DYNQ_DT_F32, 3, D, GH, K),
        "reference W must be a constant float32 [%lld, %lld, %lld]", (long long)D, (long long)GH, (long long)K);
  CHECK(n->n_in <= iref + 1 || n->in[iref + 1] < 0 || const_is(g, n, iref + 1, DYNQ_DT_F32, 3, D, GH, H),
        "reference R must be a constant float32 [%lld, %lld, %lld]", (long long)D, (long long)GH, (long long)H);
  CHECK((n->n_in > iref && n->in[iref] >= 0) == (n->n_in > iref + 1 && n->in[iref + 1] >= 0),
        "reference W and R must be both present or both absent");
  return 0;
}

int dynq__prep_rnn(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                   char *err, size_t errlen) {
  (void)g, (void)err, (void)errlen;
  dynq__rnn_attrs_t *a = &st->rnn;
  a->dirs = rnn_dirs(n);
  a->layout = (int)dynq__node_attr_i(n, "layout", 0);
  a->lbr = (int)dynq__node_attr_i(n, "linear_before_reset", 0);
  a->input_forget = (int)dynq__node_attr_i(n, "input_forget", 0);
  a->per_tensor = (int)dynq__node_attr_i(n, "per_tensor", 0);
  a->has_clip = dynq__node_attr(n, "clip") != NULL;
  a->clip = dynq__node_attr_f(n, "clip", 0.0f);
  a->hidden_size = dynq__node_attr_i(n, "hidden_size", -1);
  a->input_size = dynq__node_attr_i(n, "input_size", -1);
  /* act<i>, act_alpha<i>, act_beta<i> for i = d * F + k; absent: the
   * op's default function (files written before LSTM/GRU had them), and
   * each function's ONNX alpha and beta */
  const int lstm = n->op == DYNQ_OP_LSTM || n->op == DYNQ_OP_QLSTM;
  const int gru = n->op == DYNQ_OP_GRU || n->op == DYNQ_OP_QGRU;
  static const int defs[3][3] = {
    {DYNQ_RNN_ACT_TANH},                                          /* RNN: f */
    {DYNQ_RNN_ACT_SIGMOID, DYNQ_RNN_ACT_TANH},                    /* GRU: f, g */
    {DYNQ_RNN_ACT_SIGMOID, DYNQ_RNN_ACT_TANH, DYNQ_RNN_ACT_TANH}, /* LSTM: f, g, h */
  };
  const int F = lstm ? 3 : gru ? 2 : 1;
  const int *def = defs[F - 1];
  a->custom = 0;
  for (int i = 0; i < DYNQ_RNN_MAX_ACTS; i++) {
    char an[3][24];
    snprintf(an[0], sizeof(an[0]), "act%d", i);
    snprintf(an[1], sizeof(an[1]), "act_alpha%d", i);
    snprintf(an[2], sizeof(an[2]), "act_beta%d", i);
    const int dk = i < 2 * F ? def[i % F] : DYNQ_RNN_ACT_TANH;
    int64_t k = dynq__node_attr_i(n, an[0], dk);
    int ok = k >= 0 && k < DYNQ_RNN_ACT__COUNT;
    a->act[i] = ok ? (int)k : -1; /* refused by the check, and by setup() for run1 */
    a->act_alpha[i] = dynq__node_attr_f(n, an[1], ok ? acts[k].alpha : 0.0f);
    a->act_beta[i] = dynq__node_attr_f(n, an[2], ok ? acts[k].beta : 0.0f);
    if (i < 2 * F && k != dk) a->custom = 1;
  }
  return 0;
}
