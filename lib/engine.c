/* Process-wide engine set-up (engine.h). */
#include "engine.h"

#include <cblas.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "kernels/kernels.h"

int dynq__engine_init(const char *kernel_override, const char **ret_msg) {
  int rc = dynq__kernels_init(kernel_override, ret_msg);
  if (rc != 0) return rc;
  openblas_set_num_threads(1);
#ifdef __GLIBC__
  /* A graph allocates and frees its activations node by node (a CNN's are
   * 1-4 MiB each).  With glibc's defaults such blocks go back to the
   * kernel (mmap'd, or the heap trimmed) and every run faults the pages in
   * again: 40 % of a PP-OCR line's CPU time on a VM.  Blocks up to 32 MiB
   * come from the heap and up to 32 MiB of free heap is kept for reuse;
   * larger ones are still mapped and unmapped. */
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
#endif
  float a[16] = {0}, b[16] = {0}, c[16];
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 4, 4, 4, 1.0f, a, 4, b, 4, 0.0f, c, 4);
  return 0;
}

const char *dynq__engine_kernel_name(void) { return dynq__kernel()->name; }

const char *dynq__engine_kernel_isa(void) {
  const char *isa = dynq__kernel()->isa;
  return isa ? isa : "";
}

const char *dynq__engine_blas_core(void) {
  const char *core = openblas_get_corename();
  return core ? core : "unknown";
}
