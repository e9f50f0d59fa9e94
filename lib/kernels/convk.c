/*
 * The reference conv kernels (the oracle the ISA variants are held to,
 * bit for bit; see convk.h) and their dispatch table.
 */
#include "convk.h"

#include <string.h>

#include "cpu.h"

static int always(void) { return 1; }

/* One value through the epilogue; the clamps are written in the operand
 * order of maxps/minps ("0 > h ? 0 : h") so that GCC vectorizes them. */
static inline float epi1(const dynq__conv_epi_t *e, float v) {
  if (e->pre) v = v * e->pm, v = v + e->pa;
  float h;
  switch (e->act) {
  case DYNQ_EPI_RELU: v = v > 0.0f || v != v ? v : 0.0f; break;
  case DYNQ_EPI_CLIP: v = v < e->lo ? e->lo : v, v = v > e->hi ? e->hi : v; break;
  case DYNQ_EPI_HARDSIGMOID:
  case DYNQ_EPI_HARDSWISH:
    h = e->al * v, h = h + e->be, h = 0.0f > h ? 0.0f : h, h = 1.0f < h ? 1.0f : h;
    v = e->act == DYNQ_EPI_HARDSWISH ? v * h : h;
    break;
  default: break;
  }
  if (e->post) v = v * e->qm, v = v + e->qa;
  return v;
}

static void epi_ref(const dynq__conv_epi_t *e, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = epi1(e, y[i]);
}

static void dw_row_ref(const dynq__dw_row_t *r) {
  const int64_t na = r->na, kw = r->kw, rs = r->rs, ow = r->ow;
  const float *const x = r->x, *const w = r->w;
  const int64_t *const off = r->off;
  float *restrict y = r->y;
  for (int64_t ox = 0; ox < ow; ox++) {
    float acc = r->bias;
    for (int64_t a = 0; a < na; a++)
      for (int64_t b = 0; b < kw; b++) {
        const float t = w[a * kw + b] * x[a * rs + off[b] + ox];
        acc = acc + t;
      }
    y[ox] = r->epi ? epi1(r->epi, acc) : acc;
  }
}

static void transpose_ref(const float *src, int64_t lds, float *dst, int64_t ldd, int64_t rows,
                          int64_t cols, const dynq__conv_epi_t *e) {
  for (int64_t c = 0; c < cols; c++)
    for (int64_t r = 0; r < rows; r++) {
      const float v = src[r * lds + c];
      dst[c * ldd + r] = e ? epi1(e, v) : v;
    }
}

const dynq__conv_kernel_t dynq__conv_kernel_ref = {
  .name = "ref",
  .supported = always,
  .dw_row = dw_row_ref,
  .epi = epi_ref,
  .transpose = transpose_ref,
};

#ifdef DYNQ_HAVE_KERNEL_AVX512VNNI
extern const dynq__conv_kernel_t dynq__conv_kernel_avx512;
#endif
#ifdef DYNQ_HAVE_KERNEL_AVX2
extern const dynq__conv_kernel_t dynq__conv_kernel_avx2;
#endif

static const dynq__conv_kernel_t *const conv_table[] = {
#ifdef DYNQ_HAVE_KERNEL_AVX512VNNI
  &dynq__conv_kernel_avx512,
#endif
#ifdef DYNQ_HAVE_KERNEL_AVX2
  &dynq__conv_kernel_avx2,
#endif
  &dynq__conv_kernel_ref,
};
#define CONV_COUNT ((int)(sizeof(conv_table) / sizeof(conv_table[0])))

/* Which conv kernel each INT8 kernel's ISA level runs: the INT8 kernel
 * was chosen (or forced) for this CPU, so its partner's instructions are
 * there too (avx512vnni implies AVX-512 F/BW/DQ/VL; avx2 and avxvnni
 * AVX2 + FMA). */
static const struct { const char *gemm, *conv; } pairs[] = {
  {"avx512vnni", "avx512"},
  {"avxvnni", "avx2"},
  {"avx2", "avx2"},
};

const dynq__conv_kernel_t *dynq__conv_kernel_for(const dynq__kernel_t *k) {
  if (k == NULL || k->name == NULL) return &dynq__conv_kernel_ref;
  for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
    if (strcmp(pairs[i].gemm, k->name) != 0) continue;
    for (int j = 0; j < CONV_COUNT; j++)
      if (strcmp(conv_table[j]->name, pairs[i].conv) == 0 && conv_table[j]->supported())
        return conv_table[j];
  }
  return &dynq__conv_kernel_ref;
}

const dynq__conv_kernel_t *const *dynq__conv_kernel_list(int *ret_n) {
  *ret_n = CONV_COUNT;
  return conv_table;
}
