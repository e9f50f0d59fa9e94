/*
 * dynq-quantize --diagnose MODEL.dynq --input DIR|FILE.npz [--json]: per
 * node, the INT8-vs-FP32 error a node adds on its own (run alone at INT8
 * on the FP32 path's inputs) and the error accumulated at its output on
 * the INT8 path (models/diagnose.c; docs/NUMERICS.md).
 */
#ifndef DYNQ_MODELS_DIAGNOSE_H
#define DYNQ_MODELS_DIAGNOSE_H

/* The whole subcommand (argv as dynq-quantize got it): exit status 0,
 * 1 failed (message printed), 2 usage. */
int dynq__diagnose_main(int argc, char **argv);

#endif
