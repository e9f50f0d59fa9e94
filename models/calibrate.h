/*
 * Error-budget quantization (dynq-quantize --calibrate DIR --error-budget E):
 * choose which quantizable layers stay FP32 so that the converted model's
 * INT8 path stays within E of its FP32 path on a directory of recorded
 * calls (one .npz per call, in name order; a stateful model's files are a
 * stream and the declared state pairs are carried as a dynqd session does).
 * docs/NUMERICS.md describes the search and what it guarantees.
 */
#ifndef DYNQ_MODELS_CALIBRATE_H
#define DYNQ_MODELS_CALIBRATE_H

#include <stddef.h>
#include <stdint.h>

#include "import.h"

enum { DYNQ_CALIB_MAX_ABS = 0, DYNQ_CALIB_REL_L2 = 1 };

typedef struct dynq__calib_opts {
  const char *dir;      /* the calibration directory */
  double budget;        /* >= 0, finite */
  int metric;           /* DYNQ_CALIB_* */
  int json;             /* the report as JSON on stdout (no human summary) */
  int force;            /* write the all-FP32 selection even when it misses */
  int have_budget;      /* --error-budget given */
} dynq__calib_opts_t;

/* dynq-quantize's option parser hands each argument here first:
 * --calibrate DIR, --error-budget E, --metric max-abs|relL2, --json,
 * --force (also as --opt=value).  Returns 1 when argv[*i] was ours (*i
 * advanced past a separate value), 0 when not, -1 after a usage message. */
int dynq__calib_arg(dynq__calib_opts_t *co, int argc, char **argv, int *i);
/* After parsing: -1 (message printed) when the options do not go
 * together, e.g. --error-budget without --calibrate or with --fp32. */
int dynq__calib_check(const dynq__calib_opts_t *co, const dynq__imp_options_t *imp);
/* Help text lines for dynq-quantize --help. */
extern const char dynq__calib_usage[];

/* Convert buf[0, len) (ONNX, named `in`) to `out` with the layer
 * selection the budget needs.  Returns the exit status: 0 written and
 * within budget (or --force), 1 failed (message printed; nothing written
 * unless --force). */
int dynq__calibrate(const dynq__imp_options_t *imp, const dynq__calib_opts_t *co,
                    const uint8_t *buf, size_t len, const char *in, const char *out);

/* The default conversion (unless --fp32, --calibrate or --no-self-check):
 * convert with the FP32 reference, run both paths on synthetic inputs
 * derived from the declared inputs, and convert again with the small
 * layers that carry a large share of the INT8 error kept FP32 (calibrate.c
 * says which).  A model that cannot be measured (streaming state, inputs
 * that synthetic values do not fit) is converted as with --no-self-check,
 * with a note.  Returns the exit status (0 written, 1 failed). */
int dynq__selfcheck(const dynq__imp_options_t *imp, const uint8_t *buf, size_t len,
                    const char *in, const char *out);

/* The error of one output over a run of calls, as the metric defines it:
 * max |a - r| (max-abs), or ||a - r|| / ||r|| over every element of every
 * call (relL2; 0 when both are zero, +inf when only r is).  NaN anywhere
 * counts as +inf. */
typedef struct dynq__calib_acc {
  double max_abs, sum_d2, sum_r2;
  int nan;
} dynq__calib_acc_t;
void dynq__calib_acc_add(dynq__calib_acc_t *a, const float *x, const float *ref, size_t n);
double dynq__calib_acc_value(const dynq__calib_acc_t *a, int metric);

#endif
