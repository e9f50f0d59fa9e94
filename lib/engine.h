/*
 * Process-wide engine set-up, so that a program embedding the engine
 * (dynqd, the benches) needs nothing of OpenBLAS or the kernel dispatch.
 */
#ifndef DYNQ_ENGINE_H
#define DYNQ_ENGINE_H

/*
 * Once, before models run on several threads: picks the INT8 kernel
 * (kernel_override: a kernel name such as "avx2", or NULL/"" for the best
 * the CPU supports), makes each OpenBLAS call single-threaded (several
 * workers call it at once; a multithreaded OpenBLAS called from several
 * threads has given wrong results) and warms OpenBLAS (its buffers cost
 * 4-27 ms on the first call).  0, or DYNQ_E* with *ret_msg saying why
 * the kernel cannot be used.
 */
int dynq__engine_init(const char *kernel_override, const char **ret_msg);

/* For logs and server.info: the INT8 kernel's name and ISA, and the
 * OpenBLAS core (never NULL: "unknown"). */
const char *dynq__engine_kernel_name(void);
const char *dynq__engine_kernel_isa(void);
const char *dynq__engine_blas_core(void);

#endif
