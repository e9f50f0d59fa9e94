/*
 * The op registry: one row per op, the only place an op is declared.
 *
 *   X(NAME, code, "Name", since, until, min_in, max_in, min_out, max_out,
 *     check, prepare, run)
 *
 * code      the op's number in .dynq files: never renumber, never reuse.
 * "Name"    the ONNX op type (engine-only ops such as QLinear have
 *           since = 0 and are never matched by name).
 * since, until  the ONNX opsets whose semantics the op implements
 *           (until 0: no upper bound known).
 * min_in .. max_out  arity; inputs past min_in may be omitted (-1).
 * check     load-time check of constants and attributes (check_none).
 * prepare   parses attributes into the node's dynq__opstate_t once at
 *           load (prep_none).
 * run       computes the outputs.
 *
 * The three functions are dynq__check_<check>, dynq__prep_<prepare> and
 * dynq__run_<run>, defined in a family file of lib/ops/ (elementwise,
 * shape, reduce, matmul, norm, control, rnn, conv, spectral, misc, ...); the row declares
 * them.  docs/HACKING.md shows adding an op.
 */
#ifndef DYNQ_OPS_OPS_H
#define DYNQ_OPS_OPS_H

#include "opkit.h"

#define DYNQ_OPS(X)                                                                        \
  /* matmul.c */                                                                           \
  X(QLINEAR, 1, "QLinear", 0, 0, 4, 6, 1, 1, qlinear, qlinear, qlinear)                    \
  X(MATMUL, 2, "MatMul", 1, 0, 2, 3, 1, 1, matmul, matmul, matmul)                         \
  X(GEMM, 3, "Gemm", 1, 0, 2, 3, 1, 1, gemm, gemm, gemm)                                   \
  /* elementwise.c */                                                                      \
  X(ADD, 4, "Add", 1, 0, 2, 2, 1, 1, none, none, add)                                      \
  X(MUL, 5, "Mul", 1, 0, 2, 2, 1, 1, none, none, mul)                                      \
  X(RELU, 6, "Relu", 1, 0, 1, 1, 1, 1, none, none, relu)                                   \
  X(SIGMOID, 7, "Sigmoid", 1, 0, 1, 1, 1, 1, none, none, sigmoid)                          \
  X(TANH, 8, "Tanh", 1, 0, 1, 1, 1, 1, none, none, tanh)                                   \
  /* norm.c */                                                                             \
  X(SOFTMAX, 9, "Softmax", 1, 0, 1, 1, 1, 1, none, softmax, softmax)                       \
  /* shape.c */                                                                            \
  X(FLATTEN, 10, "Flatten", 1, 0, 1, 1, 1, 1, none, axis_one, flatten)                     \
  X(RESHAPE, 11, "Reshape", 1, 0, 2, 2, 1, 1, reshape, reshape, reshape)                   \
  X(SUB, 12, "Sub", 1, 0, 2, 2, 1, 1, none, none, sub)                                     \
  X(DIV, 13, "Div", 1, 0, 2, 2, 1, 1, none, none, div)                                     \
  X(IDENTITY, 14, "Identity", 1, 0, 1, 1, 1, 1, none, none, identity)                      \
  X(CONSTANT_OF_SHAPE, 15, "ConstantOfShape", 9, 0, 1, 2, 1, 1, none, none, constant_of_shape) \
  X(SHAPE, 16, "Shape", 1, 0, 1, 1, 1, 1, none, shape, shape)                              \
  X(SIZE, 17, "Size", 1, 0, 1, 1, 1, 1, none, none, size)                                  \
  X(GATHER, 18, "Gather", 1, 0, 2, 2, 1, 1, none, axis_zero, gather)                       \
  X(SLICE, 19, "Slice", 1, 0, 3, 5, 1, 1, none, none, slice)                               \
  X(CONCAT, 20, "Concat", 1, 0, 1, 64, 1, 1, none, axis_zero, concat)                      \
  X(SQUEEZE, 21, "Squeeze", 1, 0, 1, 2, 1, 1, none, none, squeeze)                         \
  X(UNSQUEEZE, 22, "Unsqueeze", 1, 0, 2, 2, 1, 1, none, none, unsqueeze)                   \
  X(TRANSPOSE, 23, "Transpose", 1, 0, 1, 2, 1, 1, none, none, transpose)                   \
  X(CAST, 24, "Cast", 1, 0, 1, 1, 1, 1, none, cast, cast)                                  \
  X(EQUAL, 25, "Equal", 1, 0, 2, 2, 1, 1, none, none, binary_any)                          \
  X(NOT, 26, "Not", 1, 0, 1, 1, 1, 1, none, none, unary_any)                               \
  X(WHERE, 27, "Where", 9, 0, 3, 3, 1, 1, none, none, where)                               \
  X(POW, 28, "Pow", 1, 0, 2, 2, 1, 1, none, none, binary_any)                              \
  X(SQRT, 29, "Sqrt", 1, 0, 1, 1, 1, 1, none, none, unary_any)                             \
  X(NEG, 30, "Neg", 1, 0, 1, 1, 1, 1, none, none, unary_any)                               \
  X(LOG, 31, "Log", 1, 0, 1, 1, 1, 1, none, none, unary_any)                               \
  X(EXP, 32, "Exp", 1, 0, 1, 1, 1, 1, none, none, unary_any)                               \
  /* reduce.c */                                                                           \
  X(REDUCE_MEAN, 33, "ReduceMean", 1, 0, 1, 2, 1, 1, none, reduce, reduce)                 \
  X(REDUCE_SUM, 34, "ReduceSum", 1, 0, 1, 2, 1, 1, none, reduce, reduce)                   \
  X(PAD, 35, "Pad", 1, 0, 2, 4, 1, 1, none, pad, pad)                                      \
  X(CLIP, 36, "Clip", 1, 0, 1, 3, 1, 1, none, none, clip)                                  \
  X(EXPAND, 37, "Expand", 8, 0, 2, 2, 1, 1, none, none, expand)                            \
  /* control.c: If runs as a flag plus two inlined node ranges, Phi picks */              \
  X(IF, 38, "If", 1, 0, 1, 1, 1, 1, if, if, if)                                            \
  X(LESS, 39, "Less", 1, 0, 2, 2, 1, 1, none, none, binary_any)                            \
  X(GREATER, 40, "Greater", 1, 0, 2, 2, 1, 1, none, none, binary_any)                      \
  X(AND, 41, "And", 1, 0, 2, 2, 1, 1, none, none, binary_any)                              \
  X(OR, 42, "Or", 1, 0, 2, 2, 1, 1, none, none, binary_any)                                \
  X(RANGE, 43, "Range", 11, 0, 3, 3, 1, 1, none, none, range)                              \
  X(ABS, 44, "Abs", 1, 0, 1, 1, 1, 1, none, none, unary_any)                               \
  X(PHI, 45, "Phi", 0, 0, 3, 3, 1, 1, none, none, phi)                                     \
  /* pool.c */                                                                             \
  X(MAXPOOL, 46, "MaxPool", 1, 0, 1, 1, 1, 2, pool, pool, maxpool)                         \
  X(AVERAGEPOOL, 47, "AveragePool", 1, 0, 1, 1, 1, 1, pool, pool, avgpool)                 \
  X(GLOBAL_AVERAGEPOOL, 48, "GlobalAveragePool", 1, 0, 1, 1, 1, 1, none, none, global_avgpool) \
  X(GLOBAL_MAXPOOL, 49, "GlobalMaxPool", 1, 0, 1, 1, 1, 1, none, none, global_maxpool)     \
  /* rnn.c and conv.c */                                                                   \
  X(LSTM, 50, "LSTM", 1, 0, 3, 8, 3, 3, rnn, rnn, lstm)                                    \
  X(GRU, 51, "GRU", 1, 0, 3, 6, 2, 2, rnn, rnn, gru)                                       \
  X(CONV, 52, "Conv", 1, 0, 2, 3, 1, 1, conv, conv, conv)                                  \
  X(QLSTM, 53, "QLSTM", 0, 0, 7, 14, 3, 3, rnn, rnn, qlstm)                                \
  X(QGRU, 54, "QGRU", 0, 0, 7, 12, 2, 2, rnn, rnn, qgru)                                   \
  X(QCONV, 55, "QConv", 0, 0, 4, 6, 1, 1, conv, conv, qconv)                               \
  /* norm.c */                                                                             \
  X(LAYERNORM, 56, "LayerNormalization", 17, 0, 2, 3, 1, 3, none, layernorm, layernorm)    \
  X(BATCHNORM, 57, "BatchNormalization", 1, 0, 5, 5, 1, 1, none, batchnorm, batchnorm)     \
  /* elementwise.c */                                                                      \
  X(HARD_SIGMOID, 58, "HardSigmoid", 1, 0, 1, 1, 1, 1, none, hard, hardsigmoid)            \
  X(HARD_SWISH, 59, "HardSwish", 14, 0, 1, 1, 1, 1, none, none, hardswish)                \
  X(ERF, 60, "Erf", 9, 0, 1, 1, 1, 1, none, none, erf)                                     \
  /* embed.c: Gather on an int8 embedding table (import-time form) */                     \
  X(QGATHER, 61, "QGather", 0, 0, 3, 4, 1, 1, qgather, none, qgather)                      \
  /* resize.c, convt.c, einsum.c */                                                        \
  X(RESIZE, 62, "Resize", 10, 0, 1, 3, 1, 1, resize, resize, resize)                       \
  X(CONV_TRANSPOSE, 63, "ConvTranspose", 1, 0, 2, 3, 1, 1, convt, convt, convt)            \
  X(EINSUM, 64, "Einsum", 12, 0, 1, 2, 1, 1, einsum, einsum, einsum)                       \
  /* shape.c */                                                                            \
  X(TILE, 65, "Tile", 6, 0, 2, 2, 1, 1, none, none, tile)                                  \
  X(SPLIT, 66, "Split", 1, 0, 1, 2, 1, 64, split, split, split)                            \
  /* reduce.c */                                                                           \
  X(ARGMAX, 67, "ArgMax", 1, 0, 1, 1, 1, 1, none, argmax, argmax)                          \
  X(REDUCE_MAX, 68, "ReduceMax", 1, 0, 1, 2, 1, 1, none, reduce, reduce_minmax)            \
  X(REDUCE_MIN, 69, "ReduceMin", 1, 0, 1, 2, 1, 1, none, reduce, reduce_minmax)            \
  X(CUMSUM, 70, "CumSum", 11, 0, 2, 2, 1, 1, none, cumsum, cumsum)                         \
  /* convt.c: ConvTranspose with int8 weights (import-time form) */                       \
  X(QCONV_TRANSPOSE, 71, "QConvTranspose", 0, 0, 4, 6, 1, 1, qconvt, convt, qconvt)        \
  /* norm.c: LayerNorm(A + B), the residual Add fused in (import-time form) */            \
  X(ADD_LAYERNORM, 72, "AddLayerNorm", 0, 0, 3, 4, 1, 2, none, layernorm, add_layernorm)   \
  /* activation.c: activations and small float ops, LogSoftmax, variadic ops */          \
  X(LEAKY_RELU, 73, "LeakyRelu", 6, 0, 1, 1, 1, 1, act, act, act)                        \
  X(PRELU, 74, "PRelu", 7, 0, 2, 2, 1, 1, none, none, prelu)                             \
  X(ELU, 75, "Elu", 6, 0, 1, 1, 1, 1, act, act, act)                                     \
  X(SELU, 76, "Selu", 6, 0, 1, 1, 1, 1, act, act, act)                                   \
  X(CELU, 77, "Celu", 12, 0, 1, 1, 1, 1, act, act, act)                                  \
  X(THRESHOLDED_RELU, 78, "ThresholdedRelu", 10, 0, 1, 1, 1, 1, act, act, act)           \
  X(SOFTPLUS, 79, "Softplus", 1, 0, 1, 1, 1, 1, act, act, act)                           \
  X(SOFTSIGN, 80, "Softsign", 1, 0, 1, 1, 1, 1, act, act, act)                           \
  X(MISH, 81, "Mish", 18, 0, 1, 1, 1, 1, act, act, act)                                  \
  X(RECIPROCAL, 82, "Reciprocal", 6, 0, 1, 1, 1, 1, act, act, act)                       \
  X(FLOOR, 83, "Floor", 6, 0, 1, 1, 1, 1, act, act, act)                                 \
  X(CEIL, 84, "Ceil", 6, 0, 1, 1, 1, 1, act, act, act)                                   \
  X(ROUND, 85, "Round", 11, 0, 1, 1, 1, 1, act, act, act)                                \
  X(SIGN, 86, "Sign", 9, 0, 1, 1, 1, 1, act, act, act)                                   \
  X(SIN, 87, "Sin", 7, 0, 1, 1, 1, 1, act, act, act)                                     \
  X(COS, 88, "Cos", 7, 0, 1, 1, 1, 1, act, act, act)                                     \
  X(LOG_SOFTMAX, 89, "LogSoftmax", 1, 0, 1, 1, 1, 1, none, softmax, logsoftmax)          \
  X(MIN, 90, "Min", 8, 0, 1, 3, 1, 1, none, none, variadic)                              \
  X(MAX, 91, "Max", 8, 0, 1, 3, 1, 1, none, none, variadic)                              \
  X(SUM, 92, "Sum", 8, 0, 1, 3, 1, 1, none, none, variadic)                              \
  X(MEAN, 93, "Mean", 8, 0, 1, 3, 1, 1, none, none, variadic)                            \
  /* elementwise.c */                                                                    \
  X(GREATER_OR_EQUAL, 94, "GreaterOrEqual", 12, 0, 2, 2, 1, 1, none, none, binary_any)   \
  X(LESS_OR_EQUAL, 95, "LessOrEqual", 12, 0, 2, 2, 1, 1, none, none, binary_any)    \
  /* attention, import-time forms (models/fuse.c): codes 96..99 */                        \
  /* matmul.c: MatMul with its operands' and result's Transposes folded in */             \
  X(STRIDED_MATMUL, 96, "StridedMatMul", 0, 0, 2, 5, 1, 1, none, smatmul, smatmul)         \
  /* norm.c: Softmax(X + Mask) over the last axis */                                      \
  X(MASKED_SOFTMAX, 97, "MaskedSoftmax", 0, 0, 2, 2, 1, 1, none, none, masked_softmax) \
  /* attention.c: the two products and the masked softmax between them */                \
  X(ATTENTION, 98, "Attention", 0, 0, 4, 8, 1, 1, none, smatmul, attention)               \
  /* select.c: index-driven ops */                                                        \
  X(TOPK, 100, "TopK", 10, 0, 2, 2, 2, 2, none, topk, topk)                                 \
  X(GATHER_ELEMENTS, 101, "GatherElements", 11, 0, 2, 2, 1, 1, none, axis_zero, gather_elements) \
  X(SCATTER_ELEMENTS, 102, "ScatterElements", 11, 0, 3, 3, 1, 1, none, scatter, scatter_elements) \
  X(TRILU, 103, "Trilu", 14, 0, 1, 2, 1, 1, none, trilu, trilu)                             \
  X(NONZERO, 104, "NonZero", 9, 0, 1, 1, 1, 1, none, none, nonzero)                         \
  /* instnorm.c */                                                                          \
  X(INSTANCE_NORM, 105, "InstanceNormalization", 6, 0, 3, 3, 1, 1, none, instnorm, instnorm) \
  /* reduce.c */                                                                            \
  X(REDUCE_PROD, 106, "ReduceProd", 1, 0, 1, 2, 1, 1, none, reduce, reduce)                  \
  X(REDUCE_L1, 107, "ReduceL1", 1, 0, 1, 2, 1, 1, none, reduce, reduce)                      \
  X(REDUCE_L2, 108, "ReduceL2", 1, 0, 1, 2, 1, 1, none, reduce, reduce)                      \
  X(REDUCE_SUM_SQUARE, 109, "ReduceSumSquare", 1, 0, 1, 2, 1, 1, none, reduce, reduce)       \
  X(REDUCE_LOG_SUM, 110, "ReduceLogSum", 1, 0, 1, 2, 1, 1, none, reduce, reduce)             \
  X(REDUCE_LOG_SUM_EXP, 111, "ReduceLogSumExp", 1, 0, 1, 2, 1, 1, none, reduce, reduce)      \
  /* activation.c */                                                                        \
  X(MOD, 112, "Mod", 10, 0, 2, 2, 1, 1, none, mod, mod) \
  /* select.c */                                                                            \
  X(SCATTER_ND, 113, "ScatterND", 11, 0, 3, 3, 1, 1, none, scatter, scatter_nd)            \
  /* quant.c */                                                                            \
  X(QUANTIZE_LINEAR, 114, "QuantizeLinear", 10, 0, 2, 3, 1, 1, none, qaxis, quantize_linear) \
  X(DEQUANTIZE_LINEAR, 115, "DequantizeLinear", 10, 0, 2, 3, 1, 1, none, qaxis, dequantize_linear) \
  X(DYNAMIC_QUANTIZE_LINEAR, 116, "DynamicQuantizeLinear", 11, 0, 1, 1, 3, 3, none, none, dynamic_quantize_linear) \
  /* shape.c */                                                                            \
  X(DEPTH_TO_SPACE, 117, "DepthToSpace", 1, 0, 1, 1, 1, 1, space, space, space)             \
  X(SPACE_TO_DEPTH, 118, "SpaceToDepth", 1, 0, 1, 1, 1, 1, space, space, space)             \
  /* select.c, reduce.c */                                                                 \
  X(GATHER_ND, 119, "GatherND", 11, 0, 2, 2, 1, 1, gather_nd, gather_nd, gather_nd)          \
  X(ARGMIN, 120, "ArgMin", 1, 0, 1, 1, 1, 1, none, argmax, argmax)                         \
  /* instnorm.c (Upsample is Resize: models/import_ops.c) */                                \
  X(LRN, 121, "LRN", 1, 0, 1, 1, 1, 1, lrn, lrn, lrn)                                       \
  /* elementwise.c */                                                                      \
  X(XOR, 122, "Xor", 7, 0, 2, 2, 1, 1, none, none, binary_any)                              \
  /* activation.c */                                                                       \
  X(HARDMAX, 123, "Hardmax", 1, 0, 1, 1, 1, 1, none, softmax, hardmax)                      \
  X(IS_NAN, 124, "IsNaN", 9, 0, 1, 1, 1, 1, none, none, isclass)                            \
  X(IS_INF, 125, "IsInf", 10, 0, 1, 1, 1, 1, none, isinf, isclass)                          \
  X(SHRINK, 126, "Shrink", 9, 0, 1, 1, 1, 1, act, act, act)                                 \
  X(TAN, 127, "Tan", 7, 0, 1, 1, 1, 1, act, act, act)                                       \
  X(ASIN, 128, "Asin", 7, 0, 1, 1, 1, 1, act, act, act)                                     \
  X(ACOS, 129, "Acos", 7, 0, 1, 1, 1, 1, act, act, act)                                     \
  X(ATAN, 130, "Atan", 7, 0, 1, 1, 1, 1, act, act, act)                                     \
  X(SINH, 131, "Sinh", 9, 0, 1, 1, 1, 1, act, act, act)                                     \
  X(COSH, 132, "Cosh", 9, 0, 1, 1, 1, 1, act, act, act)                                     \
  X(ASINH, 133, "Asinh", 9, 0, 1, 1, 1, 1, act, act, act)                                   \
  X(ACOSH, 134, "Acosh", 9, 0, 1, 1, 1, 1, act, act, act)                                   \
  X(ATANH, 135, "Atanh", 9, 0, 1, 1, 1, 1, act, act, act)                                   \
  /* select.c */                                                                           \
  X(ONE_HOT, 136, "OneHot", 9, 0, 3, 3, 1, 1, none, onehot, onehot)                         \
  /* shape.c */                                                                            \
  X(EYE_LIKE, 137, "EyeLike", 9, 0, 1, 1, 1, 1, eyelike, eyelike, eyelike)                  \
  /* reduce.c */                                                                           \
  X(MVN, 138, "MeanVarianceNormalization", 9, 0, 1, 2, 1, 1, none, mvn, mvn)                \
  /* activation.c */                                                                       \
  X(GELU, 139, "Gelu", 20, 0, 1, 1, 1, 1, act, act, act)                                   \
  /* rnn.c: the plain RNN and its quantized form (import-time form) */                     \
  X(RNN, 140, "RNN", 7, 0, 3, 6, 2, 2, rnn, rnn, rnn)                                        \
  X(QRNN, 141, "QRNN", 0, 0, 7, 12, 2, 2, rnn, rnn, qrnn)                                  \
  /* spectral.c: the audio front end (opset 17; DFT's axis became an input at 20) */        \
  X(DFT, 144, "DFT", 17, 19, 1, 2, 1, 1, spectral, spectral, dft)                           \
  X(STFT, 145, "STFT", 17, 0, 2, 4, 1, 1, spectral, spectral, stft)                         \
  X(HANN_WINDOW, 146, "HannWindow", 17, 0, 1, 1, 1, 1, spectral, spectral, window)          \
  X(HAMMING_WINDOW, 147, "HammingWindow", 17, 0, 1, 1, 1, 1, spectral, spectral, window)    \
  X(BLACKMAN_WINDOW, 148, "BlackmanWindow", 17, 0, 1, 1, 1, 1, spectral, spectral, window)  \
  X(MEL_WEIGHT_MATRIX, 149, "MelWeightMatrix", 17, 0, 5, 5, 1, 1, spectral, spectral,       \
    melweightmatrix)                                                                       \
  /* misc.c (MaxUnpool's attributes are the pools': pool.c) */                             \
  X(NON_MAX_SUPPRESSION, 152, "NonMaxSuppression", 10, 0, 2, 5, 1, 1, nms, nms, nms)        \
  X(UNIQUE, 153, "Unique", 11, 0, 1, 1, 1, 4, none, unique, unique)                         \
  X(COMPRESS, 154, "Compress", 9, 0, 2, 2, 1, 1, none, unique, compress)                    \
  X(REVERSE_SEQUENCE, 155, "ReverseSequence", 10, 0, 2, 2, 1, 1, revseq, revseq, revseq)    \
  X(BIT_SHIFT, 156, "BitShift", 11, 0, 2, 2, 1, 1, bitshift, bitshift, bitshift)            \
  X(DET, 157, "Det", 11, 0, 1, 1, 1, 1, none, none, det)                                    \
  X(MAX_UNPOOL, 158, "MaxUnpool", 9, 0, 2, 3, 1, 1, pool, pool, maxunpool)                  \
  /* sample.c */                                                                           \
  X(GRID_SAMPLE, 159, "GridSample", 16, 0, 2, 2, 1, 1, gridsample, gridsample, gridsample)   \
  X(ROI_ALIGN, 160, "RoiAlign", 10, 0, 3, 3, 1, 1, roialign, roialign, roialign)          \
  X(AFFINE_GRID, 180, "AffineGrid", 20, 0, 2, 2, 1, 1, affinegrid, affinegrid, affinegrid) \
  /* sample.c: deformable convolution (opsets 19 and 22), 2-D, FP32 */                    \
  X(DEFORM_CONV, 184, "DeformConv", 19, 0, 3, 5, 1, 1, deform, convt, deform)                \
  /* convt.c: ConvTranspose's col2im as an op (PyTorch's fold) */                           \
  X(COL2IM, 181, "Col2Im", 18, 0, 3, 3, 1, 1, col2im, convt, col2im)                       \
  /* attention.c: rotary position embedding (opset 23) */                                  \
  X(ROTARY, 182, "RotaryEmbedding", 23, 0, 3, 4, 1, 1, rotary, rotary, rotary)             \
  /* attention.c: ONNX's Attention (opset 23; 24 without nonpad_kv_seqlen) */              \
  X(ATTENTION23, 183, "Attention", 23, 24, 3, 6, 1, 4, attention23, attention23, attention23) \
  /* pool.c: the Lp pools (p in the pools' state); norm.c: LpNormalization */             \
  X(LP_POOL, 161, "LpPool", 1, 0, 1, 1, 1, 1, pool, pool, lppool)                           \
  X(GLOBAL_LP_POOL, 162, "GlobalLpPool", 1, 0, 1, 1, 1, 1, lp, pool, global_lppool)         \
  X(LP_NORM, 163, "LpNormalization", 1, 0, 1, 1, 1, 1, lp, lpnorm, lpnorm)                  \
  /* sample.c */                                                                           \
  X(MAX_ROI_POOL, 164, "MaxRoiPool", 1, 0, 2, 2, 1, 1, roipool, roipool, roipool)          \
  /* control.c: Loop's body is a node range closed by LOOP_END (the executor jumps) */     \
  X(LOOP, 165, "Loop", 1, 0, 0, 64, 2, 16, loop, loop, loop)                                \
  X(LOOP_END, 166, "LoopEnd", 0, 0, 1, 64, 1, 16, loop_end, loop, loop_end)            \
  /* norm.c: GroupNormalization (opsets 18 and 21: "per_channel" says which form of    \
   * scale and bias the node carries), RMSNormalization (opset 23) */                    \
  X(GROUP_NORM, 167, "GroupNormalization", 18, 0, 3, 3, 1, 1, groupnorm, groupnorm,       \
    groupnorm)                                                                             \
  X(RMS_NORM, 168, "RMSNormalization", 23, 0, 2, 2, 1, 1, rmsnorm, rmsnorm, rmsnorm)       \
  /* misc.c: the integer bitwise ops (opset 18), BitShift's neighbours */                  \
  X(BITWISE_AND, 170, "BitwiseAnd", 18, 0, 2, 2, 1, 1, none, none, bitwise)                 \
  X(BITWISE_OR, 171, "BitwiseOr", 18, 0, 2, 2, 1, 1, none, none, bitwise)                   \
  X(BITWISE_XOR, 172, "BitwiseXor", 18, 0, 2, 2, 1, 1, none, none, bitwise)                 \
  X(BITWISE_NOT, 173, "BitwiseNot", 18, 0, 1, 1, 1, 1, none, none, bitwise_not)           \
  /* shape.c: axes as n_axes + axis0.. (the importer's form of the list) */                \
  X(CENTER_CROP_PAD, 174, "CenterCropPad", 18, 0, 2, 2, 1, 1, ccp, none, center_crop_pad)

typedef enum dynq_op {
  DYNQ_OP_INVALID = 0,
#define DYNQ__OP_ENUM(NAME, code, ...) DYNQ_OP_##NAME = code,
  DYNQ_OPS(DYNQ__OP_ENUM)
#undef DYNQ__OP_ENUM
  DYNQ_OP__END
} dynq_op_t;
#define DYNQ_OP__COUNT 192 /* codes are below this */

typedef struct dynq__opdef {
  int code;
  const char *name;
  int since, until;
  int min_in, max_in, min_out, max_out;
  dynq__op_check_t *check;
  dynq__op_prepare_t *prepare;
  dynq__op_run_t *run;
} dynq__opdef_t;

/* The row of an op code; NULL when unknown. */
const dynq__opdef_t *dynq__opdef(int op);
/* The row of an ONNX op type (engine-only ops excluded); NULL if none. */
const dynq__opdef_t *dynq__opdef_onnx(const char *type);
int dynq__op_from_name(const char *s); /* any row's name; DYNQ_OP_INVALID when unknown */

/* Run one node on its own: prepare its state, then run it (the importer
 * folds constants so; tests call ops so).  g may be NULL when no
 * attribute is an INTS.  ctx supplies node, kernel, precision, threads,
 * err; its state pointer is set here. */
int dynq__op_run1(const dynq__graph_t *g, dynq__op_ctx_t *ctx, const dynq__tensor_t *const *in,
                  dynq__tensor_t *out);

/* Declarations of every row's functions, and the two defaults. */
#define DYNQ__OP_DECL(NAME, code, str, since, until, mi, xi, mo, xo, check, prepare, run) \
  dynq__op_check_t dynq__check_##check;                                                  \
  dynq__op_prepare_t dynq__prep_##prepare;                                               \
  dynq__op_run_t dynq__run_##run;
DYNQ_OPS(DYNQ__OP_DECL)
#undef DYNQ__OP_DECL

/* Loop (control.c).  LOOP(M?, cond?, v_init...) -> (iter, cond_in, v_in...)
 * is followed by the body (st->loop.body_nodes nodes) and
 * LOOP_END(iter, M?, cond_out?, v_out..., scan...) -> (v_final...,
 * scan_all...), n_carried v's each; the executor (lib/model.c) runs the
 * back edge.  Whether a loop entered with these LOOP inputs (M, cond, the
 * first two; NULL when omitted) runs its body at all. */
int dynq__loop_enters(const dynq__tensor_t *m, const dynq__tensor_t *cond);
/* Whether the body runs again after iteration iter (0-based), given the
 * LOOP_END's M and cond_out (NULL when omitted). */
int dynq__loop_again(int64_t iter, const dynq__tensor_t *m, const dynq__tensor_t *cond_out);

/* For an IF node's output flag: the node range (relative to the IF node,
 * first >= 1) the executor must skip. */
void dynq__if_skip_range(const dynq__opstate_t *st, const dynq__tensor_t *flag,
                         int64_t *ret_first, int64_t *ret_count);

/* Attribute values the engine implements, shared with the importer so
 * that it refuses the others up front, naming them. */
/* Resize's string attributes (NULL: the ONNX default) as DYNQ_RESIZE_*,
 * DYNQ_CTM_*, DYNQ_NEAREST_*; 0, or -1 with why naming the attribute, the
 * value and what is supported. */
int dynq__resize_codes(const char *mode, const char *ctm, const char *nearest, int *ret_mode,
                       int *ret_ctm, int *ret_nearest, char *why, size_t whylen);
/* A recurrent op's activation, by its ONNX name (any case), as
 * DYNQ_RNN_ACT_*: whether it takes activation_alpha / activation_beta and
 * their defaults (the ONNX op's of the same name; Affine 1, 0; ScaledTanh
 * 1, 1).  -1 when the engine has no such function. */
int dynq__rnn_act(const char *name, int *ret_takes_alpha, int *ret_takes_beta,
                  float *ret_alpha, float *ret_beta);
const char *dynq__rnn_act_name(int act); /* "Tanh"; "?" out of range */
/* RoiAlign's bounds (sample.c): sampling_ratio in [0, MAX_RATIO], each
 * output side in [1, MAX_OUT]. */
#define DYNQ_ROI_MAX_RATIO 4096
#define DYNQ_ROI_MAX_OUT 65536
/* LpPool's and GlobalLpPool's p (pool.c): within [1, DYNQ_LP_MAX_P]
 * (LpNormalization's is 1 or 2, as ONNX defines it). */
#define DYNQ_LP_MAX_P 64

/* Keys' cubic convolution kernel at distance d (>= 0) with coefficient A
 * (Resize's cubic_coeff_a; GridSample's bicubic takes -0.75). */
double dynq__keys_cubic(double d, double A);
/* The equation ("bhid,bhjd->bhij"; blanks ignored, implicit output as
 * ONNX defines it) into *ret; 0, or -1 with why (static) naming what is
 * not supported. */
int dynq__einsum_parse(const char *eq, dynq__einsum_t *ret, const char **why);

/* The longest DFT or STFT frame (dft_length, frame_length) the engine
 * takes: 2^20 points is over a minute of 16 kHz audio in one transform; a
 * prime length near it takes Bluestein's 2^22-point convolution, ~150 MB
 * of plan and as much scratch (checked against the run's cap first). */
#define DYNQ_FFT_MAX_LEN ((int64_t)1 << 20)

/* Free the FFT plan a DFT or STFT node's prepare made (spectral.c). */
void dynq__spectral_release(dynq__opstate_t *st);

/* The exponential MaskedSoftmax uses (attention.c), for x <= 0: e^x
 * within 3e-7 relative above -87, e^-87 below.  Exposed for its test. */
float dynq__softmax_exp(float x);

#endif
