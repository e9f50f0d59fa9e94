/*
 * Functions built once per ISA and picked when the library loads (GCC's
 * target_clones, resolved by an ifunc).  Every clone runs the same IEEE
 * operations in the same order, so the choice changes speed, not bits.
 *
 * ThreadSanitizer cannot run an ifunc resolver: it is called by the
 * dynamic loader before TSan's runtime is set up, and every binary would
 * crash before main.  A TSan build therefore compiles the baseline clone
 * only, which gives the same results.
 */
#ifndef DYNQ_KERNELS_CLONES_H
#define DYNQ_KERNELS_CLONES_H

#if defined(__SANITIZE_THREAD__)
#define DYNQ_NO_CLONES 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DYNQ_NO_CLONES 1
#endif
#endif

#ifdef DYNQ_NO_CLONES
#define DYNQ_CLONES
#else
#define DYNQ_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

#endif
