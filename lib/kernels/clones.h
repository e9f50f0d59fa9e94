/*
 * Functions built once per ISA and picked when the library loads (GCC's
 * target_clones, resolved by an ifunc).  Every clone runs the same IEEE
 * operations in the same order, so the choice changes speed, not bits.
 *
 * ThreadSanitizer cannot run an ifunc resolver: it is called by the
 * dynamic loader before TSan's runtime is set up, and every binary would
 * crash before main.  A TSan build therefore compiles the baseline clone
 * only, which gives the same results.
 *
 * Neither does clang (14, Debian 12's): it refuses, as an ABI change, every
 * call that passes a 32- or 64-byte vector between a clone and the
 * always_inline helpers it inlines (lib/kernels/gvec.h), so a clang build
 * -- the fuzzing build among them (docs/FUZZING.md) -- takes the baseline
 * clone too: the same bits, the vector-extension ops at SSE2 speed.
 */
#ifndef DYNQ_KERNELS_CLONES_H
#define DYNQ_KERNELS_CLONES_H

#if defined(__SANITIZE_THREAD__) || defined(__clang__)
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

/* For the element-wise row functions: vectorized at O3 whatever the build
 * type; no-trapping-math lets GCC if-convert selects and clamps (results
 * unchanged: it only stops assuming FP exceptions are observed).  GCC's
 * attribute; clang has no per-function optimize and would ignore it. */
#if defined(__clang__)
#define DYNQ_VEC_OPT
#else
#define DYNQ_VEC_OPT __attribute__((optimize("O3", "tree-vectorize", "no-trapping-math")))
#endif

#endif
