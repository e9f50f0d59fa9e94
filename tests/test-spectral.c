/*
 * The audio front-end ops (lib/ops/spectral.c): DFT and STFT against a
 * direct DFT in long double at many lengths (radix 2, mixed radix and
 * Bluestein's), the windows against their formula, the log-mel fixture
 * (tests/fixtures/logmel.onnx, make_logmel.py) converted by dynq-quantize
 * and run at FP32 and INT8 against numpy, and every hostile input refused
 * by an error naming the node and the value.
 *
 * Metrics:
 *   max_rel = max_i |out_i - ref_i| / max_i |ref_i|
 *   rel_l2  = ||out - ref||_2 / ||ref||_2
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "graph.h"
#include "model.h"
#include "ops.h"
#include "tensor.h"
#include "testutil.h"

static char err[512];
static int64_t g_max_bytes;

/* One node on its own (dynq__op_run1), inputs by position. */
static int run_k(int op, const dynq__attr_t *attrs, int n_attr, int n_in,
                 const dynq__tensor_t *const *in, dynq__tensor_t *out) {
  static const int32_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  dynq__node_t n = {.op = op, .name = "t", .n_in = n_in, .n_out = 1, .in = idx, .out = idx,
                    .n_attr = n_attr, .attr = attrs};
  dynq__op_ctx_t c = {.node = &n, .kernel = &dynq__kernel_ref, .err = err,
                      .errlen = sizeof(err), .max_bytes = g_max_bytes};
  memset(out, 0, sizeof(*out));
  err[0] = 0;
  return dynq__op_run1(NULL, &c, in, out);
}

#define AI(nm, v) {.name = nm, .type = DYNQ_ATTR_INT, .i = (v)}

static dynq__tensor_t tf(int rank, const int64_t *dims, float *data) {
  dynq__tensor_t t = {.dtype = DYNQ_DT_F32, .rank = rank, .data = data};
  memcpy(t.dims, dims, sizeof(int64_t) * (size_t)rank);
  return t;
}

/* A scalar int64 (rank 0). */
static dynq__tensor_t ts(int64_t *v) {
  return (dynq__tensor_t){.dtype = DYNQ_DT_I64, .rank = 0, .data = v};
}

static uint32_t g_rng = 12345;
static float frand(void) {
  g_rng = g_rng * 1664525u + 1013904223u;
  return (float)((g_rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* The DFT of x[0..n) (complex, interleaved; only the first len values,
 * zero past them) in long double; sign -1 forward, +1 inverse (scaled 1/n). */
static void dft_ref(const float *x, int64_t len, int64_t n, int sign, long double *y) {
  long double *c = malloc((size_t)n * sizeof(long double));
  long double *s = malloc((size_t)n * sizeof(long double));
  ck_assert(c != NULL && s != NULL);
  for (int64_t j = 0; j < n; j++) {
    long double a = 2.0L * 3.14159265358979323846264338327950288L * (long double)j / (long double)n;
    c[j] = cosl(a);
    s[j] = sinl(a);
  }
  for (int64_t k = 0; k < n; k++) {
    long double re = 0, im = 0;
    for (int64_t j = 0; j < len && j < n; j++) {
      int64_t e = (j * k) % n;
      long double xr = x[2 * j], xi = x[2 * j + 1];
      re += xr * c[e] - sign * xi * s[e];
      im += sign * xr * s[e] + xi * c[e];
    }
    y[2 * k] = sign > 0 ? re / n : re;
    y[2 * k + 1] = sign > 0 ? im / n : im;
  }
  free(c);
  free(s);
}

/* max |got - ref| / max |ref| over m values. */
static double max_rel_ld(const float *got, const long double *ref, int64_t m) {
  long double d = 0, r = 0;
  for (int64_t i = 0; i < m; i++) {
    long double e = fabsl((long double)got[i] - ref[i]);
    if (!(e <= d)) d = e;
    if (fabsl(ref[i]) > r) r = fabsl(ref[i]);
  }
  return (double)(r > 0 ? d / r : d);
}

/* The FFT against the direct DFT: every length 1..70 (radices 2, 3, 4, 5,
 * 7, ..., 31 and Bluestein for the primes past 31), and the audio sizes
 * 400 (4 4 5 5), 512, 997 (prime: Bluestein), 1000 and 2 x 37; real and
 * complex input, forward and inverse.  Float32 outputs of a double FFT:
 * measured max_rel <= 5.3e-8 (n = 67; under one float rounding of the
 * largest value), bound 5e-7. */
START_TEST(dft_vs_direct) {
  static const int64_t extra[] = {74, 400, 512, 997, 1000};
  double worst = 0;
  int64_t worst_n = 0;
  for (int t = 0; t < 70 + 5; t++) {
    const int64_t n = t < 70 ? t + 1 : extra[t - 70];
    float *x = malloc((size_t)n * 2 * sizeof(float)), *xr = malloc((size_t)n * sizeof(float));
    long double *ref = malloc((size_t)n * 2 * sizeof(long double));
    ck_assert(x && xr && ref);
    for (int64_t j = 0; j < 2 * n; j++) x[j] = frand();
    for (int inverse = 0; inverse < 2; inverse++)
      for (int cplx = 0; cplx < 2; cplx++) {
        float *in = x;
        if (!cplx) {
          for (int64_t j = 0; j < n; j++) xr[j] = x[2 * j], x[2 * j + 1] = 0;
          in = xr;
        }
        dynq__tensor_t X = tf(3, (int64_t[]){1, n, cplx ? 2 : 1}, in), o;
        const dynq__attr_t at[] = {AI("inverse", inverse)};
        const dynq__tensor_t *ins[2] = {&X, NULL};
        ck_assert_msg(run_k(DYNQ_OP_DFT, at, 1, 1, ins, &o) == 0, "n %lld: %s", (long long)n, err);
        ck_assert_int_eq(o.rank, 3);
        ck_assert_int_eq(o.dims[1], n);
        ck_assert_int_eq(o.dims[2], 2);
        dft_ref(x, n, n, inverse ? 1 : -1, ref);
        double e = max_rel_ld(o.data, ref, 2 * n);
        if (e > worst) worst = e, worst_n = n;
        ck_assert_msg(e <= 5e-7, "n %lld inverse %d complex %d: max_rel %.3g", (long long)n,
                      inverse, cplx, e);
        dynq__tensor_clear(&o);
      }
    free(x);
    free(xr);
    free(ref);
  }
  printf("dft_vs_direct: worst max_rel %.3g (n = %lld)\n", worst, (long long)worst_n);
}
END_TEST

/* dft_length pads and truncates; onesided keeps n / 2 + 1 bins; axis 2
 * of a [2, 3, 5, 1] input transforms each of the 2 x 3 rows of 5; a
 * negative axis counts from the back. */
START_TEST(dft_length_axis_onesided) {
  float x[30];
  for (int i = 0; i < 30; i++) x[i] = frand();
  long double ref[2 * 64];
  float row[2 * 16];
  /* [1, 10, 1] padded to 16 and truncated to 7, onesided */
  for (int k = 0; k < 2; k++) {
    int64_t L = k == 0 ? 16 : 7;
    dynq__tensor_t X = tf(3, (int64_t[]){1, 10, 1}, x), DL = ts(&L), o;
    const dynq__tensor_t *ins[2] = {&X, &DL};
    const dynq__attr_t at[] = {AI("onesided", 1)};
    ck_assert_int_eq(run_k(DYNQ_OP_DFT, at, 1, 2, ins, &o), 0);
    ck_assert_int_eq(o.dims[1], L / 2 + 1);
    for (int j = 0; j < 10; j++) row[2 * j] = x[j], row[2 * j + 1] = 0;
    dft_ref(row, 10, L, -1, ref);
    ck_assert(max_rel_ld(o.data, ref, 2 * (L / 2 + 1)) <= 5e-7);
    dynq__tensor_clear(&o);
  }
  /* axis 2 (and -2, the same axis of a rank-4 input) over [2, 3, 5, 1] */
  for (int k = 0; k < 2; k++) {
    dynq__tensor_t X = tf(4, (int64_t[]){2, 3, 5, 1}, x), o;
    const dynq__attr_t at[] = {AI("axis", k == 0 ? 2 : -2)};
    const dynq__tensor_t *ins[2] = {&X, NULL};
    ck_assert_int_eq(run_k(DYNQ_OP_DFT, at, 1, 1, ins, &o), 0);
    ck_assert_int_eq(o.dims[2], 5);
    const float *y = o.data;
    for (int r = 0; r < 6; r++) {
      for (int j = 0; j < 5; j++) row[2 * j] = x[r * 5 + j], row[2 * j + 1] = 0;
      dft_ref(row, 5, 5, -1, ref);
      ck_assert(max_rel_ld(y + r * 10, ref, 10) <= 5e-7);
    }
    dynq__tensor_clear(&o);
  }
  /* axis 1 of the same: the 3 values along axis 1 for each (batch, column) */
  dynq__tensor_t X = tf(4, (int64_t[]){2, 3, 5, 1}, x), o;
  const dynq__attr_t at[] = {AI("axis", 1)};
  const dynq__tensor_t *ins[2] = {&X, NULL};
  ck_assert_int_eq(run_k(DYNQ_OP_DFT, at, 1, 1, ins, &o), 0);
  const float *y = o.data;
  for (int b = 0; b < 2; b++)
    for (int col = 0; col < 5; col++) {
      for (int j = 0; j < 3; j++) row[2 * j] = x[(b * 3 + j) * 5 + col], row[2 * j + 1] = 0;
      dft_ref(row, 3, 3, -1, ref);
      for (int k = 0; k < 3; k++) {
        ck_assert(fabsl(y[((b * 3 + k) * 5 + col) * 2] - ref[2 * k]) < 1e-5L);
        ck_assert(fabsl(y[((b * 3 + k) * 5 + col) * 2 + 1] - ref[2 * k + 1]) < 1e-5L);
      }
    }
  dynq__tensor_clear(&o);
}
END_TEST

/* A plan made at load: from the input's static axis length (DFT without
 * dft_length) and from a constant dft_length; a run of another length
 * (a symbolic axis) makes its own.  Each result against the direct DFT. */
START_TEST(dft_prepared_plan) {
  float x[2 * 24];
  for (int i = 0; i < 48; i++) x[i] = frand();
  int64_t dl = 9;
  dynq__value_t vals[2] = {{.name = "x", .dtype = DYNQ_DT_F32, .rank = 3, .dims = {1, 12, 2}},
                           {.name = "len", .dtype = DYNQ_DT_I64, .rank = 0, .data = &dl,
                            .nbytes = sizeof dl}};
  dynq__graph_t g = {.n_values = 2, .values = vals};
  static const int32_t idx[2] = {0, 1};
  long double ref[2 * 24];
  for (int k = 0; k < 3; k++) {
    /* k 0: static 12 (the plan), k 1: a run of 24 against that plan, k 2: dft_length 9 */
    const int64_t len = k == 1 ? 24 : 12, n = k == 2 ? 9 : len;
    dynq__node_t nd = {.op = DYNQ_OP_DFT, .name = "d", .n_in = k == 2 ? 2 : 1, .n_out = 1,
                       .in = idx, .out = idx};
    dynq__op_ctx_t c = {.node = &nd, .kernel = &dynq__kernel_ref, .err = err, .errlen = sizeof err};
    dynq__tensor_t X = tf(3, (int64_t[]){1, len, 2}, x), L = ts(&dl), o = {0};
    const dynq__tensor_t *ins[2] = {&X, &L};
    ck_assert_msg(dynq__op_run1(&g, &c, ins, &o) == 0, "%s", err);
    ck_assert_int_eq(o.dims[1], n);
    dft_ref(x, len, n, -1, ref);
    ck_assert(max_rel_ld(o.data, ref, 2 * n) <= 5e-7);
    dynq__tensor_clear(&o);
  }
}
END_TEST

/* STFT: complex signal with onesided 0, a window, frames stepping by 3;
 * each frame against the direct DFT of the windowed samples. */
START_TEST(stft_frames) {
  enum { L = 40, F = 12, STEP = 3 };
  float s[2 * L * 2], w[F];
  for (int i = 0; i < 2 * L * 2; i++) s[i] = frand();
  for (int j = 0; j < F; j++) w[j] = 0.5f + 0.5f * frand();
  int64_t step = STEP;
  dynq__tensor_t S = tf(3, (int64_t[]){2, L, 2}, s), W = tf(1, (int64_t[]){F}, w);
  dynq__tensor_t ST = ts(&step), o;
  const dynq__tensor_t *ins[4] = {&S, &ST, &W, NULL};
  const dynq__attr_t at[] = {AI("onesided", 0)};
  ck_assert_int_eq(run_k(DYNQ_OP_STFT, at, 1, 3, ins, &o), 0);
  const int64_t frames = (L - F) / STEP + 1;
  ck_assert_int_eq(o.rank, 4);
  ck_assert_int_eq(o.dims[1], frames);
  ck_assert_int_eq(o.dims[2], F);
  float fr[2 * F];
  long double ref[2 * F];
  for (int b = 0; b < 2; b++)
    for (int64_t f = 0; f < frames; f++) {
      for (int j = 0; j < F; j++) {
        const float *e = s + (b * L + f * STEP + j) * 2;
        fr[2 * j] = e[0] * w[j];
        fr[2 * j + 1] = e[1] * w[j];
      }
      dft_ref(fr, F, F, -1, ref);
      ck_assert(max_rel_ld((float *)o.data + (b * frames + f) * F * 2, ref, 2 * F) <= 5e-7);
    }
  dynq__tensor_clear(&o);
  /* the default onesided 1 on the complex signal is refused */
  ck_assert_int_eq(run_k(DYNQ_OP_STFT, NULL, 0, 3, ins, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (STFT): onesided output needs a real signal"));
}
END_TEST

/* The windows against the schema's formula (double, pi), periodic and
 * symmetric, at sizes 1, 2, 10 and 400; integer output truncates. */
START_TEST(windows_formula) {
  static const int ops[3] = {DYNQ_OP_HANN_WINDOW, DYNQ_OP_HAMMING_WINDOW, DYNQ_OP_BLACKMAN_WINDOW};
  static const double co[3][3] = {{0.5, 0.5, 0}, {25.0 / 46, 21.0 / 46, 0}, {0.42, 0.5, 0.08}};
  static const int64_t sizes[4] = {1, 2, 10, 400};
  for (int w = 0; w < 3; w++)
    for (int per = 0; per < 2; per++)
      for (int z = 0; z < 4; z++) {
        int64_t size = sizes[z];
        dynq__tensor_t S = ts(&size), o;
        const dynq__tensor_t *ins[1] = {&S};
        const dynq__attr_t at[] = {AI("periodic", per)};
        ck_assert_int_eq(run_k(ops[w], at, 1, 1, ins, &o), 0);
        ck_assert_int_eq(o.dtype, DYNQ_DT_F32);
        ck_assert_int_eq(o.dims[0], size);
        const int64_t N = per ? size : size - 1;
        for (int64_t k = 0; k < size; k++) {
          double a = N > 0 ? 2 * M_PI * (double)k / (double)N : 0;
          double want = co[w][0] - co[w][1] * cos(a) + co[w][2] * cos(2 * a);
          ck_assert_msg(fabs(((float *)o.data)[k] - want) <= 1e-7, "op %d periodic %d size %lld "
                        "[%lld] %.9g want %.9g", ops[w], per, (long long)size, (long long)k,
                        ((float *)o.data)[k], want);
        }
        dynq__tensor_clear(&o);
      }
  /* int64 output: every value but the peak truncates to 0 */
  int64_t size = 9;
  dynq__tensor_t S = ts(&size), o;
  const dynq__tensor_t *ins[1] = {&S};
  const dynq__attr_t at[] = {AI("periodic", 0), AI("dtype", DYNQ_DT_I64)};
  ck_assert_int_eq(run_k(DYNQ_OP_HANN_WINDOW, at, 2, 1, ins, &o), 0);
  ck_assert_int_eq(o.dtype, DYNQ_DT_I64);
  for (int k = 0; k < 9; k++) ck_assert_int_eq(((int64_t *)o.data)[k], k == 4 ? 1 : 0);
  dynq__tensor_clear(&o);
}
END_TEST

/* Hostile inputs: an error naming the node and the value, never a crash
 * and never an allocation past the run's cap. */
START_TEST(hostile_inputs) {
  float sig[2 * 100], w[64];
  for (int i = 0; i < 200; i++) sig[i] = frand();
  for (int i = 0; i < 64; i++) w[i] = 1;
  int64_t step = 10, fl = 120, zero = 0, neg = -3, huge = (int64_t)1 << 40, two[2] = {4, 4};
  dynq__tensor_t S = tf(3, (int64_t[]){2, 100, 1}, sig), ST = ts(&step), FL = ts(&fl), o;
  const dynq__tensor_t *ins[5] = {&S, &ST, NULL, &FL, NULL};
  /* frame_length longer than the signal */
  ck_assert_int_eq(run_k(DYNQ_OP_STFT, NULL, 0, 4, ins, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (STFT): frame_length 120 is longer than the signal "
                                    "(100 samples)"));
  /* frame_step 0 and negative */
  fl = 32;
  ST = ts(&zero);
  ck_assert_int_eq(run_k(DYNQ_OP_STFT, NULL, 0, 4, ins, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (STFT): frame_step 0 must be at least 1"));
  ST = ts(&neg);
  ck_assert_int_eq(run_k(DYNQ_OP_STFT, NULL, 0, 4, ins, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "frame_step -3 must be at least 1"));
  ST = ts(&step);
  /* a window of the wrong length */
  dynq__tensor_t W = tf(1, (int64_t[]){64}, w);
  ins[2] = &W;
  ck_assert_int_eq(run_k(DYNQ_OP_STFT, NULL, 0, 4, ins, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (STFT): window has 64 values, frame_length is 32"));
  /* neither window nor frame_length */
  ck_assert_int_eq(run_k(DYNQ_OP_STFT, NULL, 0, 2, ins, &o), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "needs a window or a frame_length"));
  /* frame_length 0, absurd */
  fl = 0;
  ck_assert_int_eq(
      run_k(DYNQ_OP_STFT, NULL, 0, 4, (const dynq__tensor_t *[]){&S, &ST, NULL, &FL}, &o),
      DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "frame_length 0 is not within [1, 1048576]"));
  /* a non-scalar frame_step */
  dynq__tensor_t ST2 = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {2}, .data = two};
  ck_assert_int_eq(run_k(DYNQ_OP_STFT, NULL, 0, 2, (const dynq__tensor_t *[]){&S, &ST2}, &o),
                   DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (STFT): frame_step must be a scalar, has shape [2]"));
  /* an int32 signal */
  int32_t isig[8] = {0};
  dynq__tensor_t SI = {.dtype = DYNQ_DT_I32, .rank = 3, .dims = {1, 8, 1}, .data = isig};
  ck_assert_int_eq(run_k(DYNQ_OP_STFT, NULL, 0, 2, (const dynq__tensor_t *[]){&SI, &ST}, &o),
                   DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (STFT): input 0 is int32, expected float32"));

  /* DFT: dft_length 0, negative, absurd; a last dim of 3; axis out of range */
  const dynq__tensor_t *din[2] = {&S, NULL};
  dynq__tensor_t DL = ts(&zero);
  din[1] = &DL;
  ck_assert_int_eq(run_k(DYNQ_OP_DFT, NULL, 0, 2, din, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (DFT): dft_length 0 is not within [1, 1048576]"));
  DL = ts(&neg);
  ck_assert_int_eq(run_k(DYNQ_OP_DFT, NULL, 0, 2, din, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "dft_length -3 is not within"));
  DL = ts(&huge);
  ck_assert_int_eq(run_k(DYNQ_OP_DFT, NULL, 0, 2, din, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "dft_length 1099511627776 is not within"));
  dynq__tensor_t S3 = tf(3, (int64_t[]){2, 10, 3}, sig);
  din[0] = &S3, din[1] = NULL;
  ck_assert_int_eq(run_k(DYNQ_OP_DFT, NULL, 0, 1, din, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (DFT): input [2, 10, 3] must be [batch, signal..., 1 "
                                    "or 2]"));
  din[0] = &S;
  const dynq__attr_t ax[] = {AI("axis", 2)};
  ck_assert_int_eq(run_k(DYNQ_OP_DFT, ax, 1, 1, din, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (DFT): axis 2 is not an axis of input [2, 100, 1]"));
  /* under a 1 MB cap: a 2^20-point transform (its plan alone is 16 MB)
   * and 2^20 windows are refused before they are built */
  g_max_bytes = 1 << 20;
  int64_t big = (int64_t)1 << 20;
  DL = ts(&big);
  din[1] = &DL;
  dynq__tensor_t S1 = tf(3, (int64_t[]){1, 4, 1}, sig);
  din[0] = &S1;
  ck_assert_int_eq(run_k(DYNQ_OP_DFT, NULL, 0, 2, din, &o), DYNQ_ELIMIT);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (DFT): "));
  ck_assert_ptr_nonnull(strstr(err, "over the limit of 1048576 bytes"));
  dynq__tensor_t WS = ts(&big);
  ck_assert_int_eq(run_k(DYNQ_OP_HANN_WINDOW, NULL, 0, 1, (const dynq__tensor_t *[]){&WS}, &o),
                   DYNQ_ELIMIT);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (HannWindow): an output of 1048576 elements"));
  /* a prime length: its direct plan would fit (263 kB), Bluestein's
   * (n + 3 m values, m = 65536: 3.4 MB) does not */
  int64_t prime = 16411;
  DL = ts(&prime);
  ck_assert_int_eq(run_k(DYNQ_OP_DFT, NULL, 0, 2, din, &o), DYNQ_ELIMIT);
  ck_assert_ptr_nonnull(strstr(err, "an FFT plan of"));
  g_max_bytes = 0;

  /* windows: a non-scalar size, a float size, a negative size */
  dynq__tensor_t SZ2 = {.dtype = DYNQ_DT_I64, .rank = 1, .dims = {2}, .data = two};
  ck_assert_int_eq(run_k(DYNQ_OP_BLACKMAN_WINDOW, NULL, 0, 1, (const dynq__tensor_t *[]){&SZ2}, &o),
                   DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (BlackmanWindow): size must be a scalar, has shape "
                                    "[2]"));
  float fsz = 10;
  dynq__tensor_t SZF = {.dtype = DYNQ_DT_F32, .rank = 0, .data = &fsz};
  ck_assert_int_eq(run_k(DYNQ_OP_HAMMING_WINDOW, NULL, 0, 1, (const dynq__tensor_t *[]){&SZF}, &o),
                   DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (HammingWindow): size must be int32 or int64, is "
                                    "float32"));
  dynq__tensor_t SZN = ts(&neg);
  ck_assert_int_eq(run_k(DYNQ_OP_HANN_WINDOW, NULL, 0, 1, (const dynq__tensor_t *[]){&SZN}, &o),
                   DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "size -3 is not within"));
  /* an output dtype the op does not make */
  int64_t ten = 10;
  dynq__tensor_t SZ = ts(&ten);
  const dynq__attr_t bad_dt[] = {AI("dtype", 77)};
  ck_assert_int_eq(run_k(DYNQ_OP_HANN_WINDOW, bad_dt, 1, 1, (const dynq__tensor_t *[]){&SZ}, &o),
                   DYNQ_EDTYPE);
  ck_assert_ptr_nonnull(strstr(err, "dtype 77 is not float32"));
  const dynq__opdef_t *def = dynq__opdef(DYNQ_OP_HANN_WINDOW);
  static const int32_t idx[1] = {0};
  dynq__node_t nd = {.op = DYNQ_OP_HANN_WINDOW, .name = "w", .n_in = 1, .n_out = 1, .in = idx,
                     .out = idx, .n_attr = 1, .attr = bad_dt};
  ck_assert_int_eq(def->check(NULL, &nd, err, sizeof err), DYNQ_EGRAPH);
  ck_assert_ptr_nonnull(strstr(err, "node 'w' (HannWindow): dtype 77 is not float32"));

  /* MelWeightMatrix: an upper edge past Nyquist puts a band past the last
   * bin; zero mel bins; a negative lower edge */
  int64_t nmel = 8, dftl = 16, sr = 8000;
  float lo = 0, hi = 16000;
  dynq__tensor_t M0 = ts(&nmel), M1 = ts(&dftl), M2 = ts(&sr),
                 M3 = {.dtype = DYNQ_DT_F32, .rank = 0, .data = &lo},
                 M4 = {.dtype = DYNQ_DT_F32, .rank = 0, .data = &hi};
  const dynq__tensor_t *mel[5] = {&M0, &M1, &M2, &M3, &M4};
  ck_assert_int_eq(run_k(DYNQ_OP_MEL_WEIGHT_MATRIX, NULL, 0, 5, mel, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "node 't' (MelWeightMatrix): band edge"));
  ck_assert_ptr_nonnull(strstr(err, "past the 9 bins of dft_length 16 at sample_rate 8000 "
                                    "(upper_edge_hertz 16000)"));
  hi = 4000;
  ck_assert_int_eq(run_k(DYNQ_OP_MEL_WEIGHT_MATRIX, NULL, 0, 5, mel, &o), 0);
  ck_assert_int_eq(o.dims[0], 9);
  ck_assert_int_eq(o.dims[1], 8);
  dynq__tensor_clear(&o);
  M0 = ts(&zero);
  ck_assert_int_eq(run_k(DYNQ_OP_MEL_WEIGHT_MATRIX, NULL, 0, 5, mel, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "num_mel_bins 0 is not within"));
  M0 = ts(&nmel);
  lo = -5;
  ck_assert_int_eq(run_k(DYNQ_OP_MEL_WEIGHT_MATRIX, NULL, 0, 5, mel, &o), DYNQ_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err, "the edges -5 and 4000 Hz must be finite"));
}
END_TEST

/* ---- the log-mel fixture ---- */

static float *load_fixture(const char *name, size_t want) {
  char rel[256];
  snprintf(rel, sizeof rel, "tests/fixtures/%s", name);
  size_t nb = 0;
  float *d = tu_read_file(tu_src(rel), &nb);
  ck_assert_msg(d != NULL, "cannot read %s", rel);
  ck_assert_msg(nb == want * sizeof(float), "%s: %zu bytes, expected %zu", rel, nb,
                want * sizeof(float));
  return d;
}

static dynq__model_t *convert_logmel(void) {
  char in[1024], out[1024];
  snprintf(in, sizeof in, "%s", tu_src("tests/fixtures/logmel.onnx"));
  snprintf(out, sizeof out, "%s/logmel.dynq", tu_tmp);
  char *log = NULL;
  ck_assert_msg(tu_quantize_log(&log, in, out, NULL) == 0, "dynq-quantize: %s", log);
  free(log);
  dynq__model_t *m = NULL;
  char e[512] = "";
  ck_assert_msg(dynq__model_open(out, &m, e, sizeof e) == 0, "open: %s", e);
  return m;
}

enum { BATCH = 2, HEAD = 16, NSPEC = 997 / 2 + 1 };
static const int64_t lengths[3] = {512, 1237, 4000};

/* The windows and mel matrices have constant inputs: folded at import,
 * the STFTs and the DFT left to run.  The mel MatMuls read the spectra:
 * they stay FP32 (the signal front-end rule), the heads are INT8. */
START_TEST(logmel_folded) {
  dynq__model_t *m = convert_logmel();
  const dynq__graph_t *g = dynq__model_graph(m);
  int stft = 0, dft = 0, fp32 = 0, int8 = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const int op = g->nodes[i].op;
    ck_assert_msg(op != DYNQ_OP_HANN_WINDOW && op != DYNQ_OP_MEL_WEIGHT_MATRIX && op != DYNQ_OP_PAD,
                  "node '%s' (%s) was not folded", g->nodes[i].name, dynq__op_name(op));
    stft += op == DYNQ_OP_STFT;
    dft += op == DYNQ_OP_DFT;
    fp32 += op == DYNQ_OP_MATMUL;
    int8 += op == DYNQ_OP_QLINEAR;
  }
  ck_assert_int_eq(fp32, 2);
  ck_assert_int_eq(int8, 2);
  ck_assert_int_eq(stft, 2);
  ck_assert_int_eq(dft, 1);
  dynq__model_unref(m);
}
END_TEST

/* Run the fixture on the waveform of S samples; outputs ya, yb, spec. */
static int run_logmel(const dynq__model_t *m, int precision, float *wave, int64_t S,
                      dynq__tensor_t *outs, char *e, size_t el) {
  dynq__tensor_t X = tf(2, (int64_t[]){BATCH, S}, wave);
  dynq__run_opts_t opts = {.precision = precision};
  memset(outs, 0, 3 * sizeof(*outs));
  return dynq__model_run(m, &opts, &X, outs, e, el);
}

/* FP32 against numpy (float64) at 512, 1237 and 4000 samples: the three
 * outputs by max_rel.  Measured: ya <= 7.3e-7, yb <= 1.4e-6 (the power
 * spectrum's float32 rounding through the mel sums and the log), spec
 * (997 points, Bluestein) <= 2e-16 (numpy's and dynq's double FFTs round
 * to the same floats but in the smallest values); bound 5e-6.  INT8 (the
 * heads quantized; the mel MatMuls stay FP32 by the front-end rule) by
 * rel_l2: measured 0.0075 to 0.0087, bound 0.02 (the INT8 bound of the
 * other suites); the DFT output is FP32's (no layer on its path).  With
 * --no-auto-fp32 the mel MatMuls are quantized too and ya's rel_l2 at
 * 512 samples is 3.8: per-row u8 zeroes the quiet bins and the log turns
 * them into -13.8. */
START_TEST(logmel_vs_numpy) {
  dynq__model_t *m = convert_logmel();
  const char *names[3] = {"ya", "yb", "spec"};
  double worst_fp32[3] = {0}, worst_int8[3] = {0};
  for (int li = 0; li < 3; li++) {
    const int64_t S = lengths[li];
    const int64_t fa = (S - 400) / 160 + 1, fb = (S - 512) / 160 + 1;
    const size_t n[3] = {(size_t)(BATCH * fa * HEAD), (size_t)(BATCH * fb * HEAD),
                         (size_t)(BATCH * NSPEC * 2)};
    char nm[64];
    snprintf(nm, sizeof nm, "logmel_wave_%lld.f32", (long long)S);
    float *wave = load_fixture(nm, (size_t)(BATCH * S)), *ref[3];
    for (int k = 0; k < 3; k++) {
      snprintf(nm, sizeof nm, "logmel_%s_%lld.f32", names[k], (long long)S);
      ref[k] = load_fixture(nm, n[k]);
    }
    for (int prec = 0; prec < 2; prec++) {
      dynq__tensor_t y[3];
      char e[512] = "";
      const int precision = prec == 0 ? DYNQ_PRECISION_FP32 : DYNQ_PRECISION_INT8;
      ck_assert_msg(run_logmel(m, precision, wave, S, y, e, sizeof e) == 0, "run: %s", e);
      for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(dynq__tensor_numel(&y[k]), (int64_t)n[k]);
        if (prec == 0) {
          double r = tu_rel_max(y[k].data, ref[k], n[k]);
          printf("logmel S=%lld FP32 %s max_rel %.3g\n", (long long)S, names[k], r);
          worst_fp32[k] = fmax(worst_fp32[k], r);
          ck_assert_msg(r <= 5e-6, "S %lld FP32 %s: max_rel %.3g", (long long)S, names[k], r);
        } else {
          double r = tu_rel_l2(y[k].data, ref[k], n[k]);
          printf("logmel S=%lld INT8 %s rel_l2 %.3g\n", (long long)S, names[k], r);
          worst_int8[k] = fmax(worst_int8[k], r);
          ck_assert_msg(r <= (k == 2 ? 5e-6 : 0.02), "S %lld INT8 %s: rel_l2 %.3g",
                        (long long)S, names[k], r);
        }
      }
      for (int k = 0; k < 3; k++) dynq__tensor_clear(&y[k]);
    }
    free(wave);
    for (int k = 0; k < 3; k++) free(ref[k]);
  }
  printf("logmel worst: FP32 max_rel %.3g %.3g %.3g, INT8 rel_l2 %.3g %.3g %.3g\n",
         worst_fp32[0], worst_fp32[1], worst_fp32[2], worst_int8[0], worst_int8[1],
         worst_int8[2]);
  dynq__model_unref(m);
}
END_TEST

/* Through the model: a waveform shorter than a frame, and the run's
 * value cap, each an error naming the node. */
START_TEST(logmel_hostile) {
  dynq__model_t *m = convert_logmel();
  float wave[2 * 300] = {0};
  dynq__tensor_t y[3];
  char e[512] = "";
  ck_assert_int_eq(run_logmel(m, DYNQ_PRECISION_FP32, wave, 300, y, e, sizeof e), DYNQ_ESHAPE);
  ck_assert_msg(strstr(e, "node 'stft_a' (STFT): frame_length 400 is longer than the signal "
                          "(300 samples)") != NULL, "%s", e);
  for (int k = 0; k < 3; k++) dynq__tensor_clear(&y[k]);
  /* 4000 samples under a 40 kB cap: the waveform (32 kB) passes, the
   * STFTs' outputs (2 x 23 x 201 x 2 floats, 74 kB; 90 kB) do not */
  float *w4 = load_fixture("logmel_wave_4000.f32", 2 * 4000);
  dynq__tensor_t X = tf(2, (int64_t[]){BATCH, 4000}, w4);
  dynq__run_opts_t opts = {.precision = DYNQ_PRECISION_FP32, .max_value_bytes = 40000};
  memset(y, 0, sizeof y);
  ck_assert_int_eq(dynq__model_run(m, &opts, &X, y, e, sizeof e), DYNQ_ELIMIT);
  ck_assert_msg(strstr(e, "(STFT): an output of") != NULL, "%s", e);
  for (int k = 0; k < 3; k++) dynq__tensor_clear(&y[k]);
  free(w4);
  dynq__model_unref(m);
}
END_TEST

/* Import-time refusals (bad_spectral.onnx, make_logmel.py): each node
 * named with its attribute or value, all in one report. */
START_TEST(import_refusals) {
  char in[1024], out[1024];
  snprintf(in, sizeof in, "%s", tu_src("tests/fixtures/bad_spectral.onnx"));
  snprintf(out, sizeof out, "%s/bad.dynq", tu_tmp);
  char *log = NULL;
  ck_assert_int_ne(tu_quantize_log(&log, in, out, NULL), 0);
  ck_assert_ptr_nonnull(log);
  static const char *const want[] = {
      "5 nodes cannot be converted",
      "node 'hann_f16' (op HannWindow): output_datatype FLOAT16 is not supported",
      "node 'dft_inv2' (op DFT): inverse = 2 is not supported (0 or 1)",
      "node 'stft_one3' (op STFT): onesided = 3 is not supported (0 or 1)",
      "node 'stft_step0' (op STFT): frame_step 0 must be at least 1",
      "node 'dft_len0' (op DFT): dft_length 0 is not within [1, 1048576]",
      NULL};
  for (int i = 0; want[i]; i++)
    ck_assert_msg(strstr(log, want[i]) != NULL, "no '%s' in:\n%s", want[i], log);
  free(log);
  /* opset 20: the axis must be a constant input */
  snprintf(in, sizeof in, "%s", tu_src("tests/fixtures/bad_spectral20.onnx"));
  ck_assert_int_ne(tu_quantize_log(&log, in, out, NULL), 0);
  static const char *const want20[] = {
      "3 nodes cannot be converted",
      "node 'dft_axis_attr' (op DFT): axis is an input from opset 20 on, not an attribute",
      "node 'dft_axis_input' (op DFT): the axis input 'ax' must be a constant int scalar",
      "node 'dft_axis_99' (op DFT): axis 99 is out of range",
      NULL};
  for (int i = 0; want20[i]; i++)
    ck_assert_msg(strstr(log, want20[i]) != NULL, "no '%s' in:\n%s", want20[i], log);
  free(log);
}
END_TEST

/* Opset 20's DFT (dft20.onnx, make_logmel.py): the axis as an input,
 * absent (-2, the last signal axis), 1, and -3 with a dft_length and
 * inverse; against numpy's float64 FFT (ONNX Runtime 1.30 agrees with
 * those references within 1.2e-5). */
START_TEST(dft_opset20) {
  char in[1024], out[1024], e[512] = "";
  snprintf(in, sizeof in, "%s", tu_src("tests/fixtures/dft20.onnx"));
  snprintf(out, sizeof out, "%s/dft20.dynq", tu_tmp);
  char *log = NULL;
  ck_assert_msg(tu_quantize_log(&log, in, out, NULL) == 0, "dynq-quantize: %s", log);
  free(log);
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(out, &m, e, sizeof e) == 0, "open: %s", e);
  float *x = load_fixture("dft20_x.f32", 2 * 12 * 3);
  dynq__tensor_t X = tf(4, (int64_t[]){2, 12, 3, 1}, x), y[3];
  memset(y, 0, sizeof y);
  dynq__run_opts_t opts = {.precision = DYNQ_PRECISION_FP32};
  ck_assert_msg(dynq__model_run(m, &opts, &X, y, e, sizeof e) == 0, "run: %s", e);
  static const struct { const char *file; int64_t dims[4]; } want[3] = {
      {"dft20_d_def.f32", {2, 12, 3, 2}},
      {"dft20_d_ax1.f32", {2, 7, 3, 2}},
      {"dft20_d_inv.f32", {2, 8, 3, 2}}};
  for (int k = 0; k < 3; k++) {
    ck_assert_int_eq(y[k].rank, 4);
    for (int d = 0; d < 4; d++) ck_assert_int_eq(y[k].dims[d], want[k].dims[d]);
    size_t n = (size_t)dynq__tensor_numel(&y[k]);
    float *ref = load_fixture(want[k].file, n);
    double r = tu_rel_max(y[k].data, ref, n);
    printf("dft_opset20 %s max_rel %.3g\n", want[k].file, r);
    ck_assert_msg(r <= 5e-6, "%s: max_rel %.3g", want[k].file, r);
    free(ref);
    dynq__tensor_clear(&y[k]);
  }
  free(x);
  dynq__model_unref(m);
}
END_TEST

/* The engine's load check refuses the same constants in a .dynq graph
 * (a file not written by the importer). */
START_TEST(load_check_constants) {
  int64_t zero = 0, big = DYNQ_FFT_MAX_LEN + 1, ok = 16;
  dynq__value_t vals[4] = {{.name = "x", .dtype = DYNQ_DT_F32, .rank = 3, .dims = {1, 64, 1}},
                           {.name = "zero", .dtype = DYNQ_DT_I64, .rank = 0, .data = &zero,
                            .nbytes = 8},
                           {.name = "big", .dtype = DYNQ_DT_I64, .rank = 0, .data = &big,
                            .nbytes = 8},
                           {.name = "ok", .dtype = DYNQ_DT_I64, .rank = 0, .data = &ok,
                            .nbytes = 8}};
  dynq__graph_t g = {.n_values = 4, .values = vals};
  static const int32_t step0[4] = {0, 1, -1, 3}, len_big[4] = {0, 3, -1, 2},
                       dft0[2] = {0, 1}, dftbig[2] = {0, 2};
  const struct {
    int op, n_in;
    const int32_t *in;
    const char *want;
  } cases[] = {
      {DYNQ_OP_STFT, 4, step0, "node 'c' (STFT): frame_step 0 must be at least 1"},
      {DYNQ_OP_STFT, 4, len_big, "node 'c' (STFT): frame_length 1048577 is not within"},
      {DYNQ_OP_DFT, 2, dft0, "node 'c' (DFT): dft_length 0 is not within"},
      {DYNQ_OP_DFT, 2, dftbig, "node 'c' (DFT): dft_length 1048577 is not within"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dynq__node_t nd = {.op = cases[i].op, .name = "c", .n_in = cases[i].n_in, .n_out = 1,
                       .in = cases[i].in, .out = cases[i].in};
    ck_assert_int_eq(dynq__opdef(cases[i].op)->check(&g, &nd, err, sizeof err), DYNQ_EGRAPH);
    ck_assert_msg(strstr(err, cases[i].want) != NULL, "%s", err);
  }
  static const int32_t fine[4] = {0, 3, -1, 3};
  dynq__node_t nd = {.op = DYNQ_OP_STFT, .name = "c", .n_in = 4, .n_out = 1, .in = fine,
                     .out = fine};
  ck_assert_int_eq(dynq__opdef(DYNQ_OP_STFT)->check(&g, &nd, err, sizeof err), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("spectral");
  TCase *tc = tcase_create("ops");
  tcase_add_test(tc, dft_vs_direct);
  tcase_add_test(tc, dft_length_axis_onesided);
  tcase_add_test(tc, dft_prepared_plan);
  tcase_add_test(tc, stft_frames);
  tcase_add_test(tc, windows_formula);
  tcase_add_test(tc, hostile_inputs);
  tcase_add_test(tc, load_check_constants);
  suite_add_tcase(s, tc);
  TCase *tm = tcase_create("logmel");
  tcase_add_checked_fixture(tm, tu_tmp_setup, tu_tmp_teardown);
  tcase_add_test(tm, logmel_folded);
  tcase_add_test(tm, logmel_vs_numpy);
  tcase_add_test(tm, logmel_hostile);
  tcase_add_test(tm, import_refusals);
  tcase_add_test(tm, dft_opset20);
  suite_add_tcase(s, tm);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf == 0 ? 0 : 1;
}
