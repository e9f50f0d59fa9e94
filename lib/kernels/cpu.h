/*
 * CPU feature probes shared by the ISA kernel files (private to kernels/).
 *
 * They are defined in cpu.c, which is compiled without ISA flags, so a
 * probe can never itself execute an instruction the CPU lacks.  Each ISA
 * file points its dynq__kernel_t.supported at one of these.
 */
#ifndef DYNQ_KERNELS_CPU_H
#define DYNQ_KERNELS_CPU_H

int dynq__cpu_has_avx2(void);       /* AVX2 + FMA + F16C, OS saves YMM */
int dynq__cpu_has_avxvnni(void);    /* the above + AVX-VNNI (VEX) */
int dynq__cpu_has_avx512vnni(void); /* AVX512 F/BW/VL/DQ/VNNI, OS saves ZMM */

#endif
