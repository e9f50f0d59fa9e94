/*
 * dynqctl's accuracy tools, kept out of dynqctl.c: recording calls as
 * .npz files (--record DIR, the input of dynq-quantize --calibrate) and
 * the INT8-vs-FP32 comparison metrics of `dynqctl compare` and
 * `dynqctl stream --compare`.  Private to dynqctl.
 */
#ifndef DYNQ_CTL_ACC_H
#define DYNQ_CTL_ACC_H

#include <stddef.h>
#include <stdio.h>

#include "dynq/dynqclient.h"

/* ---- --record DIR ---- */

typedef struct dynq__rec {
  char *dir;        /* owned */
  unsigned next;    /* index of the next file */
} dynq__rec_t;

/* Open DIR for recording (created if missing; its parent must exist).
 * Numbering continues after the highest NNNNNN.npz already there, so
 * repeated `dynqctl infer --record DIR` calls append.  0 or -1 after a
 * message on stderr. */
int dynq__rec_open(dynq__rec_t *r, const char *dir);
/* Write DIR/NNNNNN.npz holding inputs[0..n) by name. 0 or -1 (message). */
int dynq__rec_write(dynq__rec_t *r, const dynq_tensor_t *inputs, int n);
void dynq__rec_close(dynq__rec_t *r);

/* ---- INT8 vs FP32 ---- */

typedef struct dynq__cmp {
  size_t n;                 /* elements compared */
  double sum_d2, sum_r2, sum_x2, dot, max_abs;
  int nan;                  /* a NaN/Inf on either side */
  size_t argmax_changed;    /* rows whose arg-max differs (last axis) */
  size_t rows;
  size_t thr_changed;       /* elements on different sides of the threshold */
} dynq__cmp_t;

/* Accumulate x (INT8 path) against r (FP32 path), float32 of n elements
 * in rows of `row` (the last dimension; arg-max per row when row > 1). */
void dynq__cmp_add(dynq__cmp_t *c, const float *x, const float *r, size_t n, size_t row,
                   double threshold);
double dynq__cmp_rel_l2(const dynq__cmp_t *c);  /* ||x - r|| / ||r|| */
double dynq__cmp_cosine(const dynq__cmp_t *c);  /* 1 when both are zero */
/* One output's line (human) or JSON object (name included). */
void dynq__cmp_print(FILE *f, const char *name, const dynq__cmp_t *c, int json);

#endif
