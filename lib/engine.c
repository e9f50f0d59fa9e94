/* Process-wide engine set-up (engine.h). */
#include "engine.h"

#include <cblas.h>

#include "kernels/kernels.h"

int dynq__engine_init(const char *kernel_override, const char **ret_msg) {
  int rc = dynq__kernels_init(kernel_override, ret_msg);
  if (rc != 0) return rc;
  openblas_set_num_threads(1);
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
