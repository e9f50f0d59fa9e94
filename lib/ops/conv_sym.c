/*
 * FP32 Conv 1-D over one input channel whose kernel rows are mirror
 * symmetric about the middle tap: half the multiply-adds of the plain
 * im2col + GEMM (lib/conv.c).
 *
 * Speech models export their STFT front end as such a Conv: the weights
 * are a windowed DFT basis, W[k, j] = w[j] cos(2 pi k j / N) for the real
 * rows and +-w[j] sin(2 pi k j / N) for the imaginary ones.  With a
 * periodic window (w[N - j] == w[j]) every cosine row is even,
 * W[m, N - j] == W[m, j], and every sine row odd, W[m, N - j] == -W[m, j],
 * for j = 1 .. N-1 (tap 0 has no mirror).  Then, for one frame x:
 *
 *   even row: sum_j W[m,j] x[j] = W[m,0] x[0] + W[m,N/2] x[N/2]
 *                                 + sum_{j=1}^{N/2-1} W[m,j] (x[j] + x[N-j])
 *   odd row:  sum_j W[m,j] x[j] = W[m,0] x[0]
 *                                 + sum_{j=1}^{N/2-1} W[m,j] (x[j] - x[N-j])
 *
 * (an odd row has W[m,N/2] == -W[m,N/2] == 0).  So each frame is folded
 * once into u = [x0, x1+x(N-1), ..., x(N/2)] (N/2+1 values) and
 * v = [x0, x1-x(N-1), ...] (N/2 values), and two GEMMs read only the
 * first half of each weight row (lda = N): no extra weights are stored.
 *
 * The rule is exact symmetry, bit for bit (Silero VAD v5's basis is), so
 * the result differs from the plain conv only by float rounding of the
 * folded sums.  The importer detects it (dynq__conv_sym_split) and marks
 * the node with attribute sym_split = E (rows [0, E) even, [E, M) odd);
 * the loader checks the weights again (a file cannot claim it falsely).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conv_sym.h"
#include "opkit.h"


static int row_is(const float *r, int64_t N, int odd) {
  for (int64_t j = 1; j < N; j++) {
    float m = odd ? -r[N - j] : r[N - j];
    if (r[j] != m) return 0;  /* exact: also false for any NaN */
  }
  return 1;
}

int64_t dynq__conv_sym_split(const float *w, int64_t M, int64_t N) {
  if (w == NULL || M < 1 || N < DYNQ_CONV_SYM_MIN_TAPS || N % 2 != 0) return -1;
  int64_t m = 0;
  while (m < M && row_is(w + m * N, N, 0)) m++;
  int64_t E = m;
  while (m < M && row_is(w + m * N, N, 1)) m++;
  return m == M ? E : -1;
}

/* x[i] of one frame starting at s, zero outside [0, L). */
static inline float at(const float *x, int64_t L, int64_t i) {
  return i >= 0 && i < L ? x[i] : 0.0f;
}

int dynq__conv_sym_f32(const dynq__conv_sym_t *g, const float *X, const float *w,
                       const float *bias, float *Y) {
  const int64_t N = g->N, H = N / 2, P = g->P, L = g->L, E = g->E, M = g->M;
  const int64_t frames = g->n_img * P;
  /* folded frames: u rows [frames, H+1], then v rows [frames, H] */
  float *u = malloc(sizeof(float) * (size_t)(frames * (2 * H + 1)));
  if (u == NULL) return -ENOMEM;
  float *v = u + frames * (H + 1);
  for (int64_t n = 0; n < g->n_img; n++) {
    const float *x = X + n * L;
    for (int64_t p = 0; p < P; p++) {
      const int64_t s = p * g->stride - g->pad_begin, f = n * P + p;
      float *uf = u + f * (H + 1), *vf = v + f * H;
      if (s >= 0 && s + N <= L) {  /* inside the signal: no bounds checks */
        const float *xs = x + s;
        uf[0] = vf[0] = xs[0];
        for (int64_t j = 1; j < H; j++) {
          uf[j] = xs[j] + xs[N - j];
          vf[j] = xs[j] - xs[N - j];
        }
        uf[H] = xs[H];
      } else {
        uf[0] = vf[0] = at(x, L, s);
        for (int64_t j = 1; j < H; j++) {
          float a = at(x, L, s + j), b = at(x, L, s + N - j);
          uf[j] = a + b;
          vf[j] = a - b;
        }
        uf[H] = at(x, L, s + H);
      }
    }
  }
  for (int64_t n = 0; n < g->n_img; n++) {
    float *y = Y + n * M * P;
    if (E > 0)
      dynq__sgemm(0, 1, E, P, H + 1, 1.0f, w, N, u + n * P * (H + 1), H + 1, 0.0f, y, P);
    if (E < M)
      dynq__sgemm(0, 1, M - E, P, H, 1.0f, w + E * N, N, v + n * P * H, H, 0.0f, y + E * P, P);
    if (bias)
      for (int64_t m = 0; m < M; m++)
        for (int64_t p = 0; p < P; p++) y[m * P + p] += bias[m];
  }
  free(u);
  return 0;
}
