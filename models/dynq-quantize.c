/*
 * The importer's driver: ONNX -> .dynq.
 *
 * Owns the ONNX op table (what each op type becomes, what it may carry,
 * which converter emits it), the two passes over the graph, the per-layer
 * summary.  The command line is quantize-main.c.  The builder and the ONNX
 * readers are in import.c (models/import.h); recurrent/convolution
 * converters in import_rnn.c.  Nothing is written unless the whole graph converts: every
 * unsupported node is listed in one error, and the file itself is written
 * atomically by dynq__graph_write().
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dynq-config.h"
#include "dynq/errors.h"
#include "import.h"
#include "proto/utf8.h"
#include "validate.h"
#include "kernels/kernels.h"

/* ------------------------------------------------------------------ */
/* The op table: what each ONNX op becomes and what it may carry. */

enum { K_INT = 1, K_FLOAT = 2, K_TENSOR = 3, K_INTS = 4, K_STRING = 5, K_GRAPH = 6 };

/* OPF_OWN_ATTRS: the converter checks attributes itself; OPF_OPT_IN:
 * empty input names (omitted optional inputs) are allowed. */
enum { OPF_OWN_ATTRS = 1, OPF_OPT_IN = 2 };

typedef struct attr_spec {
  const char *name;
  int kind;
} attr_spec_t;

#define MAX_ATTR_SPECS 8

typedef struct op_spec {
  const char *onnx;
  int op;             /* DYNQ_OP_*; DYNQ_OP_INVALID for Constant */
  int min_in, max_in;
  int max_out;        /* outputs 1..max_out */
  int flags;          /* OPF_* */
  attr_spec_t attrs[MAX_ATTR_SPECS];
  dynq__convert_fn convert; /* NULL for Constant (done in pass 1) */
  dynq__check_fn check;     /* optional extra pass-1 check */
} op_spec_t;

static int convert_linear(conv_t *c, const Onnx__NodeProto *n, const char *nname);
static int convert_relu(conv_t *c, const Onnx__NodeProto *n, const char *nname);
static int convert_sigmoid(conv_t *c, const Onnx__NodeProto *n, const char *nname);
static int convert_simple(conv_t *c, const Onnx__NodeProto *n, const char *nname);

#define G dynq__import_graph_op
#define GC dynq__import_graph_check
#define T dynq__import_tf
#define TC dynq__import_tf_check
#define O dynq__import_ops
#define OC dynq__import_ops_check
static const op_spec_t op_table[] = {
    {"MatMul", DYNQ_OP_MATMUL, 2, 2, 1, 0, {{0}}, convert_linear},
    {"Gemm", DYNQ_OP_GEMM, 2, 3, 1, OPF_OPT_IN,
     {{"alpha", K_FLOAT}, {"beta", K_FLOAT}, {"transA", K_INT}, {"transB", K_INT}},
     convert_linear},
    {"Add", DYNQ_OP_ADD, 2, 2, 1, 0, {{0}}, convert_simple},
    {"Sub", DYNQ_OP_SUB, 2, 2, 1, 0, {{0}}, convert_simple},
    {"Mul", DYNQ_OP_MUL, 2, 2, 1, 0, {{0}}, convert_simple},
    {"Div", DYNQ_OP_DIV, 2, 2, 1, 0, {{0}}, convert_simple},
    {"Relu", DYNQ_OP_RELU, 1, 1, 1, 0, {{0}}, convert_relu},
    {"Sigmoid", DYNQ_OP_SIGMOID, 1, 1, 1, 0, {{0}}, convert_sigmoid},
    {"Tanh", DYNQ_OP_TANH, 1, 1, 1, 0, {{0}}, convert_simple},
    {"Erf", DYNQ_OP_ERF, 1, 1, 1, 0, {{0}}, convert_simple},
    {"Softmax", DYNQ_OP_SOFTMAX, 1, 1, 1, 0, {{"axis", K_INT}}, convert_simple},
    {"Flatten", DYNQ_OP_FLATTEN, 1, 1, 1, 0, {{"axis", K_INT}}, convert_simple},
    {"Reshape", DYNQ_OP_RESHAPE, 2, 2, 1, 0, {{"allowzero", K_INT}}, convert_simple},
    {"Identity", DYNQ_OP_IDENTITY, 1, 1, 1, 0, {{0}}, convert_simple},
    {"Constant", DYNQ_OP_INVALID, 0, 0, 1, OPF_OWN_ATTRS, {{0}}, NULL},
    /* shape and graph ops (import_graph.c) */
    {"ConstantOfShape", DYNQ_OP_CONSTANT_OF_SHAPE, 1, 1, 1, 0, {{0}}, G},
    {"Shape", DYNQ_OP_SHAPE, 1, 1, 1, 0, {{"start", K_INT}, {"end", K_INT}}, G},
    {"Size", DYNQ_OP_SIZE, 1, 1, 1, 0, {{0}}, G},
    {"Gather", DYNQ_OP_GATHER, 2, 2, 1, 0, {{"axis", K_INT}}, dynq__import_gather},
    {"Slice", DYNQ_OP_SLICE, 1, 5, 1, OPF_OPT_IN, {{0}}, G},
    {"Concat", DYNQ_OP_CONCAT, 1, 64, 1, 0, {{"axis", K_INT}}, G},
    {"Squeeze", DYNQ_OP_SQUEEZE, 1, 2, 1, OPF_OPT_IN, {{0}}, G},
    {"Unsqueeze", DYNQ_OP_UNSQUEEZE, 1, 2, 1, 0, {{0}}, G},
    {"Transpose", DYNQ_OP_TRANSPOSE, 1, 1, 1, 0, {{0}}, G},
    {"Cast", DYNQ_OP_CAST, 1, 1, 1, 0, {{"to", K_INT}, {"saturate", K_INT}}, G},
    {"CastLike", DYNQ_OP_CAST, 2, 2, 1, 0, {{"saturate", K_INT}}, G, GC},
    {"Equal", DYNQ_OP_EQUAL, 2, 2, 1, 0, {{0}}, G},
    {"Less", DYNQ_OP_LESS, 2, 2, 1, 0, {{0}}, G},
    {"Greater", DYNQ_OP_GREATER, 2, 2, 1, 0, {{0}}, G},
    {"And", DYNQ_OP_AND, 2, 2, 1, 0, {{0}}, G},
    {"Or", DYNQ_OP_OR, 2, 2, 1, 0, {{0}}, G},
    {"Not", DYNQ_OP_NOT, 1, 1, 1, 0, {{0}}, G},
    {"Where", DYNQ_OP_WHERE, 3, 3, 1, 0, {{0}}, G},
    {"Pow", DYNQ_OP_POW, 2, 2, 1, 0, {{0}}, G},
    {"Sqrt", DYNQ_OP_SQRT, 1, 1, 1, 0, {{0}}, G},
    {"Neg", DYNQ_OP_NEG, 1, 1, 1, 0, {{0}}, G},
    {"Abs", DYNQ_OP_ABS, 1, 1, 1, 0, {{0}}, G},
    {"Log", DYNQ_OP_LOG, 1, 1, 1, 0, {{0}}, G},
    {"Exp", DYNQ_OP_EXP, 1, 1, 1, 0, {{0}}, G},
    {"ReduceMean", DYNQ_OP_REDUCE_MEAN, 1, 2, 1, OPF_OPT_IN,
     {{"keepdims", K_INT}, {"noop_with_empty_axes", K_INT}}, G},
    {"ReduceSum", DYNQ_OP_REDUCE_SUM, 1, 2, 1, OPF_OPT_IN,
     {{"keepdims", K_INT}, {"noop_with_empty_axes", K_INT}}, G},
    {"Pad", DYNQ_OP_PAD, 1, 4, 1, OPF_OPT_IN, {{"mode", K_STRING}}, G, GC},
    {"Clip", DYNQ_OP_CLIP, 1, 3, 1, OPF_OPT_IN, {{0}}, G},
    {"Expand", DYNQ_OP_EXPAND, 2, 2, 1, 0, {{0}}, G},
    {"Range", DYNQ_OP_RANGE, 3, 3, 1, 0, {{0}}, G},
    {"ReduceMax", DYNQ_OP_REDUCE_MAX, 1, 2, 1, OPF_OPT_IN,
     {{"keepdims", K_INT}, {"noop_with_empty_axes", K_INT}}, G},
    {"ReduceMin", DYNQ_OP_REDUCE_MIN, 1, 2, 1, OPF_OPT_IN,
     {{"keepdims", K_INT}, {"noop_with_empty_axes", K_INT}}, G},
    {"ReduceProd", DYNQ_OP_REDUCE_PROD, 1, 2, 1, OPF_OPT_IN,
     {{"keepdims", K_INT}, {"noop_with_empty_axes", K_INT}}, G},
    {"ReduceL1", DYNQ_OP_REDUCE_L1, 1, 2, 1, OPF_OPT_IN,
     {{"keepdims", K_INT}, {"noop_with_empty_axes", K_INT}}, G},
    {"ReduceL2", DYNQ_OP_REDUCE_L2, 1, 2, 1, OPF_OPT_IN,
     {{"keepdims", K_INT}, {"noop_with_empty_axes", K_INT}}, G},
    {"ReduceSumSquare", DYNQ_OP_REDUCE_SUM_SQUARE, 1, 2, 1, OPF_OPT_IN,
     {{"keepdims", K_INT}, {"noop_with_empty_axes", K_INT}}, G},
    {"ReduceLogSum", DYNQ_OP_REDUCE_LOG_SUM, 1, 2, 1, OPF_OPT_IN,
     {{"keepdims", K_INT}, {"noop_with_empty_axes", K_INT}}, G},
    {"ReduceLogSumExp", DYNQ_OP_REDUCE_LOG_SUM_EXP, 1, 2, 1, OPF_OPT_IN,
     {{"keepdims", K_INT}, {"noop_with_empty_axes", K_INT}}, G},
    {"ArgMax", DYNQ_OP_ARGMAX, 1, 1, 1, 0,
     {{"axis", K_INT}, {"keepdims", K_INT}, {"select_last_index", K_INT}}, G},
    {"ArgMin", DYNQ_OP_ARGMIN, 1, 1, 1, 0,
     {{"axis", K_INT}, {"keepdims", K_INT}, {"select_last_index", K_INT}}, G},
    {"GatherND", DYNQ_OP_GATHER_ND, 2, 2, 1, 0, {{"batch_dims", K_INT}}, G, GC},
    {"OneHot", DYNQ_OP_ONE_HOT, 3, 3, 1, 0, {{"axis", K_INT}}, G},
    {"EyeLike", DYNQ_OP_EYE_LIKE, 1, 1, 1, 0, {{"dtype", K_INT}, {"k", K_INT}}, G, GC},
    {"CumSum", DYNQ_OP_CUMSUM, 2, 2, 1, 0, {{"exclusive", K_INT}, {"reverse", K_INT}}, G},
    {"Tile", DYNQ_OP_TILE, 2, 2, 1, 0, {{0}}, G},
    {"DepthToSpace", DYNQ_OP_DEPTH_TO_SPACE, 1, 1, 1, 0, {{"blocksize", K_INT}, {"mode", K_STRING}},
     G, GC},
    {"SpaceToDepth", DYNQ_OP_SPACE_TO_DEPTH, 1, 1, 1, 0, {{"blocksize", K_INT}}, G, GC},
    {"GreaterOrEqual", DYNQ_OP_GREATER_OR_EQUAL, 2, 2, 1, 0, {{0}}, G},
    {"LessOrEqual", DYNQ_OP_LESS_OR_EQUAL, 2, 2, 1, 0, {{0}}, G},
    /* activations and small float ops (lib/ops/activation.c) */
    {"LeakyRelu", DYNQ_OP_LEAKY_RELU, 1, 1, 1, 0, {{"alpha", K_FLOAT}}, G},
    {"PRelu", DYNQ_OP_PRELU, 2, 2, 1, 0, {{0}}, G},
    {"Elu", DYNQ_OP_ELU, 1, 1, 1, 0, {{"alpha", K_FLOAT}}, G},
    {"Selu", DYNQ_OP_SELU, 1, 1, 1, 0, {{"alpha", K_FLOAT}, {"gamma", K_FLOAT}}, G},
    {"Celu", DYNQ_OP_CELU, 1, 1, 1, 0, {{"alpha", K_FLOAT}}, G, GC},
    {"ThresholdedRelu", DYNQ_OP_THRESHOLDED_RELU, 1, 1, 1, 0, {{"alpha", K_FLOAT}}, G},
    {"Softplus", DYNQ_OP_SOFTPLUS, 1, 1, 1, 0, {{0}}, G},
    {"Softsign", DYNQ_OP_SOFTSIGN, 1, 1, 1, 0, {{0}}, G},
    {"Mish", DYNQ_OP_MISH, 1, 1, 1, 0, {{0}}, G},
    {"Reciprocal", DYNQ_OP_RECIPROCAL, 1, 1, 1, 0, {{0}}, G},
    {"Floor", DYNQ_OP_FLOOR, 1, 1, 1, 0, {{0}}, G},
    {"Ceil", DYNQ_OP_CEIL, 1, 1, 1, 0, {{0}}, G},
    {"Round", DYNQ_OP_ROUND, 1, 1, 1, 0, {{0}}, G},
    {"Sign", DYNQ_OP_SIGN, 1, 1, 1, 0, {{0}}, G},
    {"Sin", DYNQ_OP_SIN, 1, 1, 1, 0, {{0}}, G},
    {"Cos", DYNQ_OP_COS, 1, 1, 1, 0, {{0}}, G},
    {"Tan", DYNQ_OP_TAN, 1, 1, 1, 0, {{0}}, G},
    {"Asin", DYNQ_OP_ASIN, 1, 1, 1, 0, {{0}}, G},
    {"Acos", DYNQ_OP_ACOS, 1, 1, 1, 0, {{0}}, G},
    {"Atan", DYNQ_OP_ATAN, 1, 1, 1, 0, {{0}}, G},
    {"Sinh", DYNQ_OP_SINH, 1, 1, 1, 0, {{0}}, G},
    {"Cosh", DYNQ_OP_COSH, 1, 1, 1, 0, {{0}}, G},
    {"Asinh", DYNQ_OP_ASINH, 1, 1, 1, 0, {{0}}, G},
    {"Acosh", DYNQ_OP_ACOSH, 1, 1, 1, 0, {{0}}, G},
    {"Atanh", DYNQ_OP_ATANH, 1, 1, 1, 0, {{0}}, G},
    {"Gelu", DYNQ_OP_GELU, 1, 1, 1, 0, {{"approximate", K_STRING}}, G, GC},
    {"Shrink", DYNQ_OP_SHRINK, 1, 1, 1, 0, {{"lambd", K_FLOAT}, {"bias", K_FLOAT}}, G},
    {"IsNaN", DYNQ_OP_IS_NAN, 1, 1, 1, 0, {{0}}, G},
    {"IsInf", DYNQ_OP_IS_INF, 1, 1, 1, 0,
     {{"detect_negative", K_INT}, {"detect_positive", K_INT}}, G},
    {"Xor", DYNQ_OP_XOR, 2, 2, 1, 0, {{0}}, G},
    {"Mod", DYNQ_OP_MOD, 2, 2, 1, 0, {{"fmod", K_INT}}, G, GC},
    {"TopK", DYNQ_OP_TOPK, 2, 2, 2, 0, {{"axis", K_INT}, {"largest", K_INT}, {"sorted", K_INT}}, G, GC},
    {"GatherElements", DYNQ_OP_GATHER_ELEMENTS, 2, 2, 1, 0, {{"axis", K_INT}}, G},
    {"ScatterElements", DYNQ_OP_SCATTER_ELEMENTS, 3, 3, 1, 0,
     {{"axis", K_INT}, {"reduction", K_STRING}}, G, GC},
    /* Scatter (opsets 9-10, deprecated) is ScatterElements without reduction */
    {"Scatter", DYNQ_OP_SCATTER_ELEMENTS, 3, 3, 1, 0, {{"axis", K_INT}}, G},
    {"ScatterND", DYNQ_OP_SCATTER_ND, 3, 3, 1, 0, {{"reduction", K_STRING}}, G, GC},
    {"Trilu", DYNQ_OP_TRILU, 1, 2, 1, OPF_OPT_IN, {{"upper", K_INT}}, G, GC},
    {"NonZero", DYNQ_OP_NONZERO, 1, 1, 1, 0, {{0}}, G},
    {"MeanVarianceNormalization", DYNQ_OP_MVN, 1, 1, 1, 0, {{0}}, G},
    /* the audio front end (lib/ops/spectral.c) */
    {"DFT", DYNQ_OP_DFT, 1, 3, 1, OPF_OPT_IN,
     {{"axis", K_INT}, {"inverse", K_INT}, {"onesided", K_INT}}, G, GC},
    {"STFT", DYNQ_OP_STFT, 2, 4, 1, OPF_OPT_IN, {{"onesided", K_INT}}, G, GC},
    {"HannWindow", DYNQ_OP_HANN_WINDOW, 1, 1, 1, 0,
     {{"periodic", K_INT}, {"output_datatype", K_INT}}, G, GC},
    {"HammingWindow", DYNQ_OP_HAMMING_WINDOW, 1, 1, 1, 0,
     {{"periodic", K_INT}, {"output_datatype", K_INT}}, G, GC},
    {"BlackmanWindow", DYNQ_OP_BLACKMAN_WINDOW, 1, 1, 1, 0,
     {{"periodic", K_INT}, {"output_datatype", K_INT}}, G, GC},
    {"MelWeightMatrix", DYNQ_OP_MEL_WEIGHT_MATRIX, 5, 5, 1, 0, {{"output_datatype", K_INT}}, G,
     GC},
    {"LRN", DYNQ_OP_LRN, 1, 1, 1, 0,
     {{"size", K_INT}, {"alpha", K_FLOAT}, {"beta", K_FLOAT}, {"bias", K_FLOAT}}, G, GC},
    {"InstanceNormalization", DYNQ_OP_INSTANCE_NORM, 3, 3, 1, 0, {{"epsilon", K_FLOAT}}, G},
    {"Dropout", DYNQ_OP_IDENTITY, 1, 3, 2, OPF_OPT_IN, {{"ratio", K_FLOAT}, {"seed", K_INT}},
     dynq__import_dropout, GC},
    {"LogSoftmax", DYNQ_OP_LOG_SOFTMAX, 1, 1, 1, 0, {{"axis", K_INT}}, convert_simple},
    {"Hardmax", DYNQ_OP_HARDMAX, 1, 1, 1, 0, {{"axis", K_INT}}, convert_simple},
    {"Min", DYNQ_OP_MIN, 1, DYNQ_IMP_MAX_IN, 1, 0, {{0}}, dynq__import_variadic},
    {"Max", DYNQ_OP_MAX, 1, DYNQ_IMP_MAX_IN, 1, 0, {{0}}, dynq__import_variadic},
    {"Sum", DYNQ_OP_SUM, 1, DYNQ_IMP_MAX_IN, 1, 0, {{0}}, dynq__import_variadic},
    {"Mean", DYNQ_OP_MEAN, 1, DYNQ_IMP_MAX_IN, 1, 0, {{0}}, dynq__import_variadic},
    /* models that arrive quantized (lib/ops/quant.c; models/import_quant.c) */
    {"QuantizeLinear", DYNQ_OP_QUANTIZE_LINEAR, 2, 3, 1, OPF_OPT_IN,
     {{"axis", K_INT}, {"saturate", K_INT}, {"block_size", K_INT}, {"output_dtype", K_INT}}, G,
     GC},
    {"DequantizeLinear", DYNQ_OP_DEQUANTIZE_LINEAR, 2, 3, 1, OPF_OPT_IN,
     {{"axis", K_INT}, {"block_size", K_INT}}, G, GC},
    {"DynamicQuantizeLinear", DYNQ_OP_DYNAMIC_QUANTIZE_LINEAR, 1, 1, 3, 0, {{0}}, G},
    {"MatMulInteger", DYNQ_OP_MATMUL, 2, 4, 1, OPF_OPT_IN, {{0}}, dynq__import_quant,
     dynq__import_quant_check},
    {"ConvInteger", DYNQ_OP_CONV, 2, 4, 1, OPF_OWN_ATTRS | OPF_OPT_IN, {{0}}, dynq__import_quant,
     dynq__import_quant_check},
    {"QLinearMatMul", DYNQ_OP_MATMUL, 8, 8, 1, OPF_OPT_IN, {{0}}, dynq__import_qlinear,
     dynq__import_qlinear_check},
    {"QLinearConv", DYNQ_OP_CONV, 8, 9, 1, OPF_OWN_ATTRS | OPF_OPT_IN, {{0}}, dynq__import_qlinear,
     dynq__import_qlinear_check},
    /* detection tails and the like (lib/ops/misc.c) */
    {"NonMaxSuppression", DYNQ_OP_NON_MAX_SUPPRESSION, 2, 5, 1, OPF_OPT_IN,
     {{"center_point_box", K_INT}}, G, GC},
    {"Unique", DYNQ_OP_UNIQUE, 1, 1, 4, 0, {{"axis", K_INT}, {"sorted", K_INT}}, G},
    {"Compress", DYNQ_OP_COMPRESS, 2, 2, 1, 0, {{"axis", K_INT}}, G},
    {"ReverseSequence", DYNQ_OP_REVERSE_SEQUENCE, 2, 2, 1, 0,
     {{"batch_axis", K_INT}, {"time_axis", K_INT}}, G, GC},
    {"BitShift", DYNQ_OP_BIT_SHIFT, 2, 2, 1, 0, {{"direction", K_STRING}}, G, GC},
    {"BitwiseAnd", DYNQ_OP_BITWISE_AND, 2, 2, 1, 0, {{0}}, G, GC},
    {"BitwiseOr", DYNQ_OP_BITWISE_OR, 2, 2, 1, 0, {{0}}, G, GC},
    {"BitwiseXor", DYNQ_OP_BITWISE_XOR, 2, 2, 1, 0, {{0}}, G, GC},
    {"BitwiseNot", DYNQ_OP_BITWISE_NOT, 1, 1, 1, 0, {{0}}, G, GC},
    {"CenterCropPad", DYNQ_OP_CENTER_CROP_PAD, 2, 2, 1, 0, {{"axes", K_INTS}}, G, GC},
    {"Det", DYNQ_OP_DET, 1, 1, 1, 0, {{0}}, G},
    {"MaxUnpool", DYNQ_OP_MAX_UNPOOL, 2, 3, 1, OPF_OWN_ATTRS | OPF_OPT_IN, {{0}}, T, TC},
    /* sampling at computed positions (lib/ops/sample.c) */
    {"GridSample", DYNQ_OP_GRID_SAMPLE, 2, 2, 1, 0,
     {{"align_corners", K_INT}, {"mode", K_STRING}, {"padding_mode", K_STRING}}, G, GC},
    {"AffineGrid", DYNQ_OP_AFFINE_GRID, 2, 2, 1, 0, {{"align_corners", K_INT}}, G, GC},
    {"Attention", DYNQ_OP_ATTENTION23, 3, 7, 4, OPF_OPT_IN,
     {{"is_causal", K_INT}, {"kv_num_heads", K_INT}, {"q_num_heads", K_INT},
      {"qk_matmul_output_mode", K_INT}, {"scale", K_FLOAT}, {"softcap", K_FLOAT},
      {"softmax_precision", K_INT}}, G, GC},
    {"RotaryEmbedding", DYNQ_OP_ROTARY, 3, 4, 1, OPF_OPT_IN,
     {{"interleaved", K_INT}, {"num_heads", K_INT}, {"rotary_embedding_dim", K_INT}}, G, GC},
    {"RoiAlign", DYNQ_OP_ROI_ALIGN, 3, 3, 1, 0,
     {{"mode", K_STRING}, {"coordinate_transformation_mode", K_STRING},
      {"output_height", K_INT}, {"output_width", K_INT}, {"sampling_ratio", K_INT},
      {"spatial_scale", K_FLOAT}}, G, GC},
    {"Split", DYNQ_OP_SPLIT, 1, 2, DYNQ_IMP_MAX_OUT, OPF_OPT_IN,
     {{"axis", K_INT}, {"num_outputs", K_INT}}, G},
    /* Resize, ConvTranspose, Einsum (import_ops.c) */
    {"Resize", DYNQ_OP_RESIZE, 1, 4, 1, OPF_OWN_ATTRS | OPF_OPT_IN, {{0}}, O, OC},
    {"ConvTranspose", DYNQ_OP_CONV_TRANSPOSE, 2, 3, 1, OPF_OWN_ATTRS | OPF_OPT_IN, {{0}}, O, OC},
    {"Upsample", DYNQ_OP_RESIZE, 1, 2, 1, OPF_OWN_ATTRS, {{0}}, O, OC},
    {"Einsum", DYNQ_OP_EINSUM, 1, DYNQ_IMP_MAX_IN, 1, OPF_OWN_ATTRS, {{0}}, O, OC},
    {"Col2Im", DYNQ_OP_COL2IM, 3, 3, 1, OPF_OWN_ATTRS, {{0}}, O, OC},
    {"DeformConv", DYNQ_OP_DEFORM_CONV, 3, 5, 1, OPF_OWN_ATTRS | OPF_OPT_IN, {{0}}, O, OC},
    /* pooling, normalizations, hard activations (import_tf.c) */
    {"MaxPool", DYNQ_OP_MAXPOOL, 1, 1, 2, OPF_OWN_ATTRS, {{0}}, T, TC},
    {"AveragePool", DYNQ_OP_AVERAGEPOOL, 1, 1, 1, OPF_OWN_ATTRS, {{0}}, T, TC},
    {"GlobalAveragePool", DYNQ_OP_GLOBAL_AVERAGEPOOL, 1, 1, 1, OPF_OWN_ATTRS, {{0}}, T, TC},
    {"GlobalMaxPool", DYNQ_OP_GLOBAL_MAXPOOL, 1, 1, 1, OPF_OWN_ATTRS, {{0}}, T, TC},
    {"LpPool", DYNQ_OP_LP_POOL, 1, 1, 1, OPF_OWN_ATTRS, {{0}}, T, TC},
    {"GlobalLpPool", DYNQ_OP_GLOBAL_LP_POOL, 1, 1, 1, OPF_OWN_ATTRS, {{0}}, T, TC},
    {"MaxRoiPool", DYNQ_OP_MAX_ROI_POOL, 2, 2, 1, OPF_OWN_ATTRS, {{0}}, T, TC},
    {"LpNormalization", DYNQ_OP_LP_NORM, 1, 1, 1, OPF_OWN_ATTRS, {{0}}, T, TC},
    {"LayerNormalization", DYNQ_OP_LAYERNORM, 2, 3, 3, OPF_OWN_ATTRS | OPF_OPT_IN, {{0}}, T, TC},
    {"BatchNormalization", DYNQ_OP_BATCHNORM, 5, 5, 3, OPF_OWN_ATTRS, {{0}}, T, TC},
    {"GroupNormalization", DYNQ_OP_GROUP_NORM, 3, 3, 1, OPF_OWN_ATTRS, {{0}}, T, TC},
    {"RMSNormalization", DYNQ_OP_RMS_NORM, 2, 2, 1, OPF_OWN_ATTRS, {{0}}, T, TC},
    {"HardSigmoid", DYNQ_OP_HARD_SIGMOID, 1, 1, 1, OPF_OWN_ATTRS, {{0}}, T, TC},
    {"HardSwish", DYNQ_OP_HARD_SWISH, 1, 1, 1, OPF_OWN_ATTRS, {{0}}, T, TC},
    {"If", DYNQ_OP_IF, 1, 1, DYNQ_IMP_MAX_OUT, 0,
     {{"then_branch", K_GRAPH}, {"else_branch", K_GRAPH}}, dynq__import_if},
    {"Loop", DYNQ_OP_LOOP, 0, DYNQ_IMP_MAX_IN, DYNQ_IMP_MAX_OUT, OPF_OPT_IN, {{"body", K_GRAPH}},
     dynq__import_loop, dynq__import_loop_check},
    {"Scan", DYNQ_OP_LOOP, 1, DYNQ_IMP_MAX_IN, DYNQ_IMP_MAX_OUT, 0,
     {{"body", K_GRAPH}, {"num_scan_inputs", K_INT}, {"scan_input_directions", K_INTS},
      {"scan_input_axes", K_INTS}, {"scan_output_directions", K_INTS},
      {"scan_output_axes", K_INTS}},
     dynq__import_scan, dynq__import_scan_check},
    /* Recurrent and convolution: models/import_rnn.c checks their
     * attributes and optional inputs. */
    {"LSTM", DYNQ_OP_LSTM, 3, 8, 3, OPF_OWN_ATTRS | OPF_OPT_IN, {{0}}, dynq__import_lstm,
     dynq__import_rnn_check},
    {"GRU", DYNQ_OP_GRU, 3, 6, 2, OPF_OWN_ATTRS | OPF_OPT_IN, {{0}}, dynq__import_gru,
     dynq__import_rnn_check},
    {"RNN", DYNQ_OP_RNN, 3, 6, 2, OPF_OWN_ATTRS | OPF_OPT_IN, {{0}}, dynq__import_rnn,
     dynq__import_rnn_check},
    {"Conv", DYNQ_OP_CONV, 2, 3, 1, OPF_OWN_ATTRS | OPF_OPT_IN, {{0}}, dynq__import_conv,
     dynq__import_rnn_check},
};
#undef G
#undef GC
#undef T
#undef TC
#undef O
#undef OC

static const op_spec_t *find_op(const char *type) {
  for (size_t i = 0; i < sizeof(op_table) / sizeof(op_table[0]); i++)
    if (strcmp(op_table[i].onnx, type) == 0) return &op_table[i];
  return NULL;
}


int dynq__imp_convert_node(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  const op_spec_t *sp = find_op(n->op_type);
  if (sp == NULL || sp->convert == NULL) {
    dynq__imp_errorf("node '%s': internal error: no converter for %s", nname, n->op_type);
    return -1;
  }
  return sp->convert(c, n, nname);
}

static int is_graph_output(const conv_t *c, const char *name) {
  for (size_t i = 0; i < c->g->n_output; i++)
    if (c->g->output[i]->name && strcmp(c->g->output[i]->name, name) == 0) return 1;
  return 0;
}

/* Why this node cannot be converted, or NULL when it can.  The returned
 * string is pool-owned or static. */
static const char *check_node(conv_t *c, const Onnx__NodeProto *n) {
  dynq__imp_pool_t *pl = &c->b.pool;
  const char *type = n->op_type ? n->op_type : "";
  if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
    return dynq__imp_pool_printf(pl, "operator domain '%s' is not supported", n->domain);
  const op_spec_t *sp = find_op(type);
  if (sp == NULL) return "";
  if ((int)n->n_input < sp->min_in || (int)n->n_input > sp->max_in)
    return dynq__imp_pool_printf(pl, "takes %d to %d inputs, has %zu", sp->min_in, sp->max_in,
                       n->n_input);
  /* ONNX marks an omitted optional input with an empty name; the first
   * min_in are required (found by fuzz-onnx: an empty B reached Gemm's
   * constant folding as a NULL tensor). */
  for (int i = 0; i < sp->min_in; i++)
    if (n->input[i] == NULL || n->input[i][0] == 0)
      return dynq__imp_pool_printf(pl, "input %d is required but has no name", i);
  if (n->n_output < 1 || (int)n->n_output > sp->max_out)
    return dynq__imp_pool_printf(pl, "must have 1 to %d outputs, has %zu", sp->max_out,
                                 n->n_output);
  if ((n->output[0] == NULL || n->output[0][0] == 0) && sp->check != dynq__import_rnn_check) return "output has no name"; /* LSTM/GRU/RNN: Y is optional */
  for (size_t i = 0; i < n->n_attribute && !(sp->flags & OPF_OWN_ATTRS); i++) {
    const Onnx__AttributeProto *a = n->attribute[i];
    const char *an = a->name ? a->name : "";
    int kind = 0;
    for (int j = 0; j < MAX_ATTR_SPECS && sp->attrs[j].name; j++)
      if (strcmp(sp->attrs[j].name, an) == 0) kind = sp->attrs[j].kind;
    if (kind == 0 && dynq__imp_rule_find(type, an) != NULL) continue; /* rules_check's */
    if (kind == 0) return dynq__imp_pool_printf(pl, "attribute '%s' is not supported", an);
    if (a->ref_attr_name) return dynq__imp_pool_printf(pl, "attribute '%s' is a function reference", an);
    if ((kind == K_INT && !dynq__imp_attr_is_int(a)) || (kind == K_FLOAT && !dynq__imp_attr_is_float(a)) ||
        (kind == K_TENSOR && a->t == NULL) ||
        (kind == K_INTS && a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS) ||
        (kind == K_STRING && !a->has_s) || (kind == K_GRAPH && a->g == NULL))
      return dynq__imp_pool_printf(pl, "attribute '%s' has the wrong type", an);
  }
  int64_t ta = dynq__imp_attr_i(n, "transA", 0), tb = dynq__imp_attr_i(n, "transB", 0);
  if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1))
    return "transA/transB must be 0 or 1";
  const char *rwhy = dynq__imp_rules_check(c, n);
  if (rwhy != NULL) return rwhy;
  if (sp->check != NULL) {
    const char *why = sp->check(c, n);
    if (why != NULL) return why;
  }
  if (strcmp(type, "Constant") == 0 &&
      (n->n_attribute != 1 || n->attribute[0]->name == NULL ||
       (strcmp(n->attribute[0]->name, "value") != 0 &&
        strcmp(n->attribute[0]->name, "value_float") != 0 &&
        strcmp(n->attribute[0]->name, "value_floats") != 0 &&
        strcmp(n->attribute[0]->name, "value_int") != 0 &&
        strcmp(n->attribute[0]->name, "value_ints") != 0)))
    return "only the value, value_float(s) and value_int(s) forms of Constant are supported";
  if (strcmp(type, "Cast") == 0 && dynq__imp_attr_i(n, "saturate", 1) != 1)
    return "saturate = 0 only matters for float8 targets, which are not supported";
  if (strcmp(type, "Reshape") == 0) {
    /* A shape computed in the graph (Shape -> Gather -> Concat) is fine;
     * one the caller supplies per request is refused: it makes the output
     * shape a request parameter.  --set fixes it at import. */
    int32_t sv = dynq__imp_value_of(c, n->input[1]);
    const dynq__value_t *s = dynq__imp_const_of(c, n->input[1]);
    for (int i = 0; i < c->b.n_inputs; i++)
      if (sv >= 0 && c->b.inputs[i] == sv)
        return dynq__imp_pool_printf(pl, "the shape input '%s' is a graph input; it must be a "
                                     "constant or computed in the graph (fix it with --set "
                                     "%s=d0,d1,...)", n->input[1], n->input[1]);
    if (s != NULL && (s->dtype != DYNQ_DT_I64 || s->rank != 1))
      return "the shape input must be a 1-D int64 tensor";
    int64_t az = dynq__imp_attr_i(n, "allowzero", 0);
    if (az != 0 && az != 1) return "allowzero must be 0 or 1";
  }
  for (size_t i = 0; i < n->n_input; i++) {
    const char *in = n->input[i];
    int optional = (sp->flags & OPF_OPT_IN) && (i > 0 || sp->min_in == 0); /* Loop: M */
    if (in == NULL || in[0] == 0) {
      if (!optional) return dynq__imp_pool_printf(pl, "input %zu is empty", i);
      continue;
    }
    if (dynq__imp_lookup(&c->b, in) < 0)
      return dynq__imp_pool_printf(pl, "input '%s' is not produced by any earlier node, "
                         "initializer or graph input", in);
  }
  return NULL;
}

/* MatMul or Gemm.  Emits a QLINEAR when the weights are a constant 2-D
 * float32 matrix and the layer fits the kernels, else the FP32 node. */
static int convert_linear(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  int is_gemm = strcmp(n->op_type, "Gemm") == 0;
  dynq__layer_report_t *L = dynq__imp_add_layer(c, nname, n->op_type);
  if (L == NULL) goto oom;
  int64_t ta = is_gemm ? dynq__imp_attr_i(n, "transA", 0) : 0;
  int64_t tb = is_gemm ? dynq__imp_attr_i(n, "transB", 0) : 0;
  float alpha = is_gemm ? dynq__imp_attr_f(n, "alpha", 1.0f) : 1.0f;
  float beta = is_gemm ? dynq__imp_attr_f(n, "beta", 1.0f) : 1.0f;
  const dynq__value_t *B = dynq__imp_const_of(c, n->input[1]);
  const char *cname = is_gemm && n->n_input > 2 ? n->input[2] : NULL;
  if (cname && !cname[0]) cname = NULL;

  if (B != NULL && B->rank == 2) {
    L->k = tb ? B->dims[1] : B->dims[0];
    L->n = tb ? B->dims[0] : B->dims[1];
    L->fp32_bytes = (size_t)(L->k * L->n) * sizeof(float);
  }
  const char *why = NULL;
  const char *kept = dynq__imp_keep_fp32(c, nname);
  if (c->opt.fp32) why = "--fp32";
  else if ((why = dynq__imp_op_excluded(c, n->op_type)) != NULL) {}
  else if (kept) why = kept;
  else if ((why = dynq__imp_front_reader(c, n->input[0])) != NULL) {}
  else if (B == NULL) why = "weights are not a constant";
  else if (B->dtype != DYNQ_DT_F32) why = "weights are not float32";
  else if (B->rank != 2) why = "weights are not 2-D";
  else if (L->k > DYNQ_QGEMM_MAX_K) why = "K > 65536 (int32 accumulator bound)";
  else if (L->k == 0 || L->n == 0) why = "empty weight matrix";

  if (why != NULL) {
    /* FP32 node, same inputs and attributes as ONNX. */
    L->why = why;
    L->stored_bytes = L->fp32_bytes;
    dynq__bnode_t *bn = dynq__imp_add_node(b, is_gemm ? DYNQ_OP_GEMM : DYNQ_OP_MATMUL, nname);
    if (bn == NULL) goto oom;
    for (size_t i = 0; i < n->n_input; i++) dynq__imp_node_in(bn, dynq__imp_value_of(c, n->input[i]));
    /* Gemm always gets its C slot (-1 when absent): an explicit omitted
     * input reads the same to every consumer of the file. */
    if (is_gemm && bn->n_in == 2) dynq__imp_node_in(bn, -1);
    if (is_gemm) {
      dynq__imp_node_attr_f(bn, "alpha", alpha);
      dynq__imp_node_attr_f(bn, "beta", beta);
      dynq__imp_node_attr_i(bn, "transA", ta);
      dynq__imp_node_attr_i(bn, "transB", tb);
    }
    int32_t out = dynq__imp_claim_output(c, n->output[0], b->n_nodes - 1);
    if (out < 0) return -1;
    dynq__imp_node_out(b, &b->nodes[b->n_nodes - 1], out);
    return 0;
  }

  int64_t K = L->k, N = L->n;
  dynq__qlayer_t ql;
  if (dynq__imp_quantize_weights(c, nname, B->data, K, N, (int)tb, alpha, &ql) != 0) return -1;
  L->quantized = 1;
  L->stored_bytes = ql.packed_bytes + (size_t)N * (sizeof(float) + sizeof(int32_t));

  /* beta * C: folded into the bias when C is a constant that broadcasts
   * as a row vector; otherwise computed after the QLINEAR. */
  int32_t bias = -1;
  int post_c = 0;
  const dynq__value_t *C = cname ? dynq__imp_const_of(c, cname) : NULL;
  if (cname != NULL && beta != 0.0f) {
    int row = 0;
    if (C != NULL && C->dtype == DYNQ_DT_F32) {
      int64_t numel = dynq__shape_numel(C->rank, C->dims);
      int lead_ones = 1;
      for (int i = 0; i + 1 < C->rank; i++) lead_ones &= C->dims[i] == 1;
      if (numel == 1 && C->rank <= 2) row = 1;
      else if (C->rank >= 1 && C->rank <= 2 && lead_ones && C->dims[C->rank - 1] == N) row = 2;
    }
    if (row) {
      float *bv = dynq__imp_pool_alloc(&b->pool, (size_t)N * sizeof(float));
      if (bv == NULL) goto oom;
      const float *cd = C->data;
      for (int64_t j = 0; j < N; j++) bv[j] = beta * cd[row == 1 ? 0 : j];
      int64_t d_n[1] = {N};
      bias = dynq__imp_add_const(b, nname, ".bias", DYNQ_DT_F32, 1, d_n, bv, (size_t)N * sizeof(float));
      if (bias < 0) goto oom;
    } else {
      post_c = 1;
      L->why = "beta*C added by separate Mul/Add nodes";
    }
  }

  dynq__bnode_t *q = dynq__imp_add_node(b, DYNQ_OP_QLINEAR, nname);
  if (q == NULL) goto oom;
  int32_t qi = b->n_nodes - 1;
  dynq__imp_node_in(q, dynq__imp_value_of(c, n->input[0]));
  dynq__imp_node_in(q, ql.wq);
  dynq__imp_node_in(q, ql.colsum);
  dynq__imp_node_in(q, ql.wscale);
  dynq__imp_node_in(q, bias);
  dynq__imp_node_in(q, ql.wref);
  dynq__imp_node_attr_i(q, "k", K);
  dynq__imp_node_attr_i(q, "n", N);
  dynq__imp_node_attr_i(q, "per_tensor", c->opt.per_tensor);
  dynq__imp_node_attr_i(q, "act", DYNQ_ACT_NONE);
  dynq__imp_node_attr_i(q, "trans_a", ta);
  if (!c->opt.no_reference) L->ref_bytes = (size_t)(K * N) * sizeof(float);

  if (!post_c) {
    int32_t out = dynq__imp_claim_output(c, n->output[0], qi);
    if (out < 0) return -1;
    dynq__imp_node_out(b, &b->nodes[qi], out);
    return 0;
  }
  const char *tmpname = dynq__imp_fresh_name(b, nname, ".qlinear");
  if (tmpname == NULL) goto oom;
  int32_t tmp = dynq__imp_add_value(b, tmpname, DYNQ_DT_F32, -1, NULL);
  if (tmp < 0) goto oom;
  dynq__imp_node_out(b, &b->nodes[qi], tmp);
  int32_t cv = dynq__imp_value_of(c, cname);
  if (beta != 1.0f) {
    float *bd = dynq__imp_pool_alloc(&b->pool, sizeof(float));
    if (bd == NULL) goto oom;
    *bd = beta;
    int64_t d1[1] = {1};
    int32_t betav = dynq__imp_add_const(b, nname, ".beta", DYNQ_DT_F32, 1, d1, bd, sizeof(float));
    const char *mname = dynq__imp_fresh_name(b, nname, ".beta_c");
    if (betav < 0 || mname == NULL) goto oom;
    int32_t mv = dynq__imp_add_value(b, mname, DYNQ_DT_F32, -1, NULL);
    dynq__bnode_t *m = dynq__imp_add_node(b, DYNQ_OP_MUL, mname);
    if (mv < 0 || m == NULL) goto oom;
    dynq__imp_node_in(m, cv);
    dynq__imp_node_in(m, betav);
    dynq__imp_node_out(b, m, mv);
    cv = mv;
  }
  const char *aname = dynq__imp_fresh_name(b, nname, ".add_c");
  dynq__bnode_t *a = aname ? dynq__imp_add_node(b, DYNQ_OP_ADD, aname) : NULL;
  if (a == NULL) goto oom;
  dynq__imp_node_in(a, tmp);
  dynq__imp_node_in(a, cv);
  int32_t out = dynq__imp_claim_output(c, n->output[0], b->n_nodes - 1);
  if (out < 0) return -1;
  dynq__imp_node_out(b, &b->nodes[b->n_nodes - 1], out);
  return 0;
oom:
  dynq__imp_errorf("out of memory");
  return -1;
}

/* A Relu or Sigmoid whose input comes straight from a QLINEAR that nothing
 * else reads becomes that QLINEAR's act; returns 1 when fused. */
static int try_fuse_act(conv_t *c, const Onnx__NodeProto *n, int act) {
  dynq__builder_t *b = &c->b;
  int32_t in = dynq__imp_value_of(c, n->input[0]);
  if (in < 0 || b->producer[in] < 0) return 0;
  dynq__bnode_t *q = &b->nodes[b->producer[in]];
  if (in >= c->n_uses || c->branch_depth > 0) return 0;
  if (q->op != DYNQ_OP_QLINEAR || q->n_out != 1 || q->out[0] != in || c->uses[in] != 1 ||
      is_graph_output(c, n->input[0]))
    return 0;
  for (int i = 0; i < q->n_attr; i++) {
    if (strcmp(q->attr[i].name, "act") != 0) continue;
    if (q->attr[i].i != DYNQ_ACT_NONE) return 0;
    int32_t out = dynq__imp_claim_output(c, n->output[0], b->producer[in]);
    if (out < 0) return -1;
    q->attr[i].i = act;
    q->out[0] = out;
    for (int l = 0; l < c->n_layers; l++)
      if (strcmp(c->layers[l].name, q->name) == 0) c->layers[l].act_fused = act;
    return 1;
  }
  return 0;
}

static int convert_relu(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  int r = try_fuse_act(c, n, DYNQ_ACT_RELU);
  if (r != 0) return r < 0 ? -1 : 0;
  return convert_simple(c, n, nname);
}

static int convert_sigmoid(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  int r = try_fuse_act(c, n, DYNQ_ACT_SIGMOID);
  if (r != 0) return r < 0 ? -1 : 0;
  return convert_simple(c, n, nname);
}

/* One ONNX node -> one dynq node with the same inputs. */
static int convert_simple(conv_t *c, const Onnx__NodeProto *n, const char *nname) {
  dynq__builder_t *b = &c->b;
  const char *type = n->op_type;
  const op_spec_t *sp = find_op(type);
  dynq__bnode_t *bn = dynq__imp_add_node(b, sp->op, nname);
  if (bn == NULL) {
    dynq__imp_errorf("out of memory");
    return -1;
  }
  for (size_t i = 0; i < n->n_input; i++) dynq__imp_node_in(bn, dynq__imp_value_of(c, n->input[i]));
  const int softmax_like = sp->op == DYNQ_OP_SOFTMAX || sp->op == DYNQ_OP_LOG_SOFTMAX ||
                           sp->op == DYNQ_OP_HARDMAX;
  if (softmax_like && c->opset < 13) {
    /* Before opset 13 Softmax is one softmax over all the axes from
     * `axis` (default 1) on, the input taken as 2-D there; the engine does
     * it over the trailing axes ("flatten"), whatever the rank. */
    dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", 1));
    dynq__imp_node_attr_i(bn, "flatten", 1);
  } else if (softmax_like) {
    dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", -1));
  } else if (sp->op == DYNQ_OP_FLATTEN) {
    dynq__imp_node_attr_i(bn, "axis", dynq__imp_attr_i(n, "axis", 1));
  } else if (sp->op == DYNQ_OP_RESHAPE) {
    dynq__imp_node_attr_i(bn, "allowzero", dynq__imp_attr_i(n, "allowzero", 0));
  }
  int32_t out = dynq__imp_claim_output(c, n->output[0], b->n_nodes - 1);
  if (out < 0) return -1;
  dynq__imp_node_out(b, &b->nodes[b->n_nodes - 1], out);
  return 0;
}

/* ------------------------------------------------------------------ */

/* Pass 1 over nodes[0..nn): every node checked before anything is
 * emitted, so the error lists all unsupported nodes at once.  Outputs are
 * entered as placeholders so later nodes' inputs resolve; Constant nodes
 * become constants right away.  Pass 2: emit; each node claims the
 * placeholders of its outputs, and nodes whose inputs are all constants
 * are folded into constants.  Used for the graph and for If branches. */
static int convert_nodes(conv_t *c, Onnx__NodeProto *const *nodes, size_t nn,
                         const char *what) {
  dynq__builder_t *b = &c->b;
  int rc = -1, n_bad = 0;
  const char **names = calloc(nn + 1, sizeof(char *));
  char **bad = calloc(nn + 1, sizeof(char *));
  if (names == NULL || bad == NULL) {
    dynq__imp_errorf("out of memory");
    goto out;
  }
  for (size_t i = 0; i < nn; i++) {
    const Onnx__NodeProto *n = nodes[i];
    const char *type = n->op_type ? n->op_type : "";
    names[i] = n->name && n->name[0]
                   ? n->name
                   : dynq__imp_pool_printf(&b->pool, "%s_%d", type, c->n_anon++);
    if (names[i] == NULL) {
      dynq__imp_errorf("out of memory");
      goto out;
    }
    const char *why = check_node(c, n);
    if (why != NULL) {
      bad[n_bad++] = why[0] ? dynq__imp_pool_printf(&b->pool, "  node '%s' (op %s): %s",
                                                    names[i], type, why)
                            : dynq__imp_pool_printf(&b->pool, "  node '%s' (op %s)", names[i],
                                                    type);
      if (bad[n_bad - 1] == NULL) bad[n_bad - 1] = (char *)"  (out of memory)";
    }
    for (size_t j = 0; j < n->n_input; j++) {
      int32_t v = dynq__imp_value_of(c, n->input[j]);
      if (v >= 0 && v < c->n_uses) c->uses[v]++;
    }
    /* Placeholders (even for unsupported nodes) keep later nodes checkable. */
    for (size_t o = 0; o < n->n_output; o++) {
      const char *on = n->output[o];
      if (on == NULL || on[0] == 0) continue;
      if (dynq__imp_lookup(b, on) >= 0) {
        if (why == NULL) {
          bad[n_bad++] = dynq__imp_pool_printf(&b->pool, "  node '%s' (op %s): output '%s' is "
                                               "already defined by an earlier node, "
                                               "initializer or graph input",
                                               names[i], type, on);
          if (bad[n_bad - 1] == NULL) bad[n_bad - 1] = (char *)"  (out of memory)";
          why = "";
        }
        continue;
      }
      if (strcmp(type, "Constant") == 0 && why == NULL) {
        if (dynq__imp_constant_node(c, n, names[i]) < 0) goto out;
      } else if (dynq__imp_add_value(b, on, DYNQ_DT_F32, -1, NULL) < 0) {
        dynq__imp_errorf("out of memory");
        goto out;
      }
    }
  }
  if (n_bad > 0) {
    fprintf(stderr, "%s: error: %s: %d node%s cannot be converted (nothing written):\n",
            dynq__imp_progname, what, n_bad, n_bad == 1 ? "" : "s");
    for (int i = 0; i < n_bad; i++) fprintf(stderr, "%s\n", bad[i]);
    fprintf(stderr, "supported ops:");
    for (size_t i = 0; i < sizeof(op_table) / sizeof(op_table[0]); i++)
      fprintf(stderr, "%s %s", i ? "," : "", op_table[i].onnx);
    fprintf(stderr, "\n");
    goto out;
  }
  for (size_t i = 0; i < nn; i++) {
    const Onnx__NodeProto *n = nodes[i];
    if (strcmp(n->op_type, "Constant") == 0) continue; /* already a constant */
    int first = b->n_nodes, layers0 = c->n_layers, front_in = 0;
    for (size_t j = 0; j < n->n_input; j++) front_in |= dynq__imp_front_has(c, n->input[j]);
    c->front_out = 0;
    if (find_op(n->op_type)->convert(c, n, names[i]) != 0) goto out;
    /* The front end's output flows through non-layer ops (Slice, Pow,
     * Sqrt...) up to the next layer, which reads it. */
    if (c->front_out || (front_in && c->n_layers == layers0))
      for (size_t o = 0; o < n->n_output; o++)
        if (dynq__imp_front_add(c, n->output[o]) != 0) goto out;
    c->front_out = 0;
    if (dynq__imp_fold(c, first) != 0) goto out;
  }
  rc = 0;
out:
  free(names);
  free(bad);
  return rc;
}

static void print_summary(const conv_t *c, const dynq__graph_t *g, const char *in,
                          const char *out) {
  printf("dynq-quantize: %s -> %s (opset %" PRId64 ", %zu ONNX nodes -> %d dynq nodes)\n",
         in, out, c->opset, c->g->n_node, g->n_nodes);
  printf("%-24s %-7s %13s  %-5s %12s %12s  %s\n", "layer", "op", "K x N", "mode",
         "fp32 bytes", "stored", "notes");
  size_t tb = 0, ta = 0, tr = 0;
  int nq = 0;
  for (int i = 0; i < c->n_layers; i++) {
    const dynq__layer_report_t *L = &c->layers[i];
    char kn[48];
    if (L->k >= 0)
      snprintf(kn, sizeof(kn), "%" PRId64 " x %" PRId64, L->k, L->n);
    else
      snprintf(kn, sizeof(kn), "?");
    char notes[256];
    if (L->quantized)
      snprintf(notes, sizeof(notes), "int8 per-channel%s%s%s%s",
               c->opt.per_tensor ? ", per-tensor activations" : "",
               L->act_fused == DYNQ_ACT_RELU ? ", relu fused" : L->act_fused == DYNQ_ACT_SIGMOID ? ", sigmoid fused" : "", L->why ? "; " : "", L->why ? L->why : "");
    else
      snprintf(notes, sizeof(notes), "stays FP32: %s%s", L->why,
               L->sym_folded ? "; mirror-symmetric rows folded: half the MACs" : "");
    printf("%-24s %-7s %13s  %-5s %12zu %12zu  %s\n", L->name, L->op, kn,
           L->quantized ? "int8" : "fp32", L->fp32_bytes, L->stored_bytes, notes);
    tb += L->fp32_bytes;
    ta += L->stored_bytes;
    tr += L->ref_bytes;
    nq += L->quantized;
  }
  printf("total: %d linear layers, %d quantized, %d fp32; weights %zu -> %zu bytes",
         c->n_layers, nq, c->n_layers - nq, tb, ta);
  if (ta > 0 && ta < tb) printf(" (%.2fx smaller)", (double)tb / (double)ta);
  printf("\n");
  if (tr > 0) printf("FP32 reference weights (Wref): %zu bytes (omit with --no-reference)\n", tr);
  if (c->n_fused_layernorm > 0)
    printf("fused: %d decomposed LayerNorm/HardSwish pattern%s into one node (--no-fuse keeps them)\n",
           c->n_fused_layernorm, c->n_fused_layernorm == 1 ? "" : "s");
  if (c->n_fused_conv > 0)
    printf("fused: %d scale/shift/activation node%s into Conv epilogues (--no-fuse keeps them)\n",
           c->n_fused_conv, c->n_fused_conv == 1 ? "" : "s");
  if (c->n_fused_bias + c->n_fused_gelu > 0)
    printf("fused: %d bias Add%s and %d GELU%s into layer epilogues (--no-fuse keeps them)\n",
           c->n_fused_bias, c->n_fused_bias == 1 ? "" : "s", c->n_fused_gelu,
           c->n_fused_gelu == 1 ? "" : "s");
  if (c->n_dql_dropped > 0)
    printf("note: %d MatMulInteger/ConvInteger read%s the float activation (DynamicQuantizeLinear's "
           "input / its scale): the engine quantizes it once, per row\n", c->n_dql_dropped,
           c->n_dql_dropped == 1 ? "s" : "");
  if (c->b.half_io > 0)
    printf("note: float16 graph inputs/outputs are served as float32 (the engine computes in "
           "FP32; float16 weights are widened exactly)\n");
  if (c->b.bf16_io > 0)
    printf("note: bfloat16 graph inputs/outputs are served as float32 (the engine computes in "
           "FP32; bfloat16 weights are widened exactly)\n");
  if (c->b.double_io > 0)
    printf("note: float64 graph inputs/outputs are served as float32 (the engine computes in "
           "FP32: clients send and receive float32)\n");
}


/* The .dynq format keeps names as UTF-8 (they reach clients as msgpack
 * str); ONNX says its strings are UTF-8 but nothing enforced it, and a
 * file the engine then refused was written (found by fuzz-onnx). */
static int check_utf8(const dynq__graph_t *g) {
  const char *bad = NULL, *what = NULL;
  for (int i = 0; i < g->n_values && bad == NULL; i++)
    if (!dynq__utf8_valid(g->values[i].name, strlen(g->values[i].name)))
      bad = g->values[i].name, what = "value";
  for (int i = 0; i < g->n_nodes && bad == NULL; i++) {
    const dynq__node_t *n = &g->nodes[i];
    if (n->name && !dynq__utf8_valid(n->name, strlen(n->name))) bad = n->name, what = "node";
    for (int a = 0; a < n->n_attr && bad == NULL; a++)
      if (n->attr[a].type == DYNQ_ATTR_STRING && n->attr[a].s &&
          !dynq__utf8_valid(n->attr[a].s, strlen(n->attr[a].s)))
        bad = n->attr[a].s, what = "attribute string";
  }
  if (bad == NULL && g->producer && !dynq__utf8_valid(g->producer, strlen(g->producer)))
    bad = g->producer, what = "input file name";
  if (bad == NULL) return 0;
  dynq__imp_errorf("%s name '%s' is not valid UTF-8 (the .dynq format stores names as UTF-8)",
                   what, bad);
  return -1;
}

/* The whole conversion of an ONNX image buf[0, len) (named `in` in
 * messages and the producer string) to a .dynq at `out`: 0 written, 1
 * failed (message printed, nothing written).  Separate from the file
 * reading so tests/fuzz/fuzz-onnx.c can drive it in-process. */
int dynq__imp_convert_buffer(const dynq__imp_options_t *opt, const uint8_t *buf, size_t len,
                             const char *in, const char *out) {
  Onnx__ModelProto *m = NULL;
  conv_t c;
  memset(&c, 0, sizeof(c));
  c.opt = *opt;
  c.convert_node = dynq__imp_convert_node;
  c.convert_nodes = convert_nodes;
  c.b.ext_dir = opt->ext_dir;
  int ret = 1;

  m = onnx__model_proto__unpack(NULL, len, buf);
  if (m == NULL) {
    dynq__imp_errorf("'%s' is not an ONNX model (protobuf decoding failed: truncated or not a "
           "ModelProto)", in);
    goto done;
  }
  if (m->graph == NULL || !m->has_ir_version) {
    dynq__imp_errorf("'%s' is not an ONNX model (no %s)", in, m->graph == NULL ? "graph" : "ir_version");
    goto done;
  }
  c.model = m;
  c.g = m->graph;
  c.opset = -1;
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = m->opset_import[i];
    if ((o->domain == NULL || o->domain[0] == 0 || strcmp(o->domain, "ai.onnx") == 0) &&
        o->has_version)
      c.opset = o->version;
  }
  if (c.opset < 0) {
    dynq__imp_errorf("'%s' declares no opset for the default ONNX domain", in);
    goto done;
  }
  const Onnx__GraphProto *g = c.g;
  dynq__builder_t *b = &c.b;
  dynq__imp_progress(opt, "parsed: opset %" PRId64 ", %zu nodes, %zu initializers", c.opset,
                     c.g->n_node, c.g->n_initializer);

  if (g->n_sparse_initializer > 0) {
    dynq__imp_errorf("sparse initializers are not supported (%zu in the graph)", g->n_sparse_initializer);
    goto done;
  }
  for (size_t i = 0; i < g->n_initializer; i++) {
    const Onnx__TensorProto *t = g->initializer[i];
    if (t->name == NULL || t->name[0] == 0) {
      dynq__imp_errorf("initializer %zu has no name", i);
      goto done;
    }
    if (dynq__imp_import_tensor(b, t, t->name, "initializer") < 0) goto done;
  }
  {
    size_t nb = 0, n_ext = 0;
    for (int i = 0; i < b->n_values; i++) nb += b->values[i].nbytes;
    for (size_t i = 0; i < g->n_initializer; i++)
      n_ext += g->initializer[i]->has_data_location &&
               g->initializer[i]->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    dynq__imp_progress(opt, "read %zu initializers (%.1f MB, %zu from external data)",
                       g->n_initializer, (double)nb / 1e6, n_ext);
  }
  b->inputs = calloc(g->n_input + 1, sizeof(int32_t));
  b->outputs = calloc(g->n_output + 1, sizeof(int32_t));
  if (b->inputs == NULL || b->outputs == NULL) {
    dynq__imp_errorf("out of memory");
    goto done;
  }
  for (size_t i = 0; i < g->n_input; i++) {
    const Onnx__ValueInfoProto *vi = g->input[i];
    if (vi->name == NULL || vi->name[0] == 0) {
      dynq__imp_errorf("graph input %zu has no name", i);
      goto done;
    }
    int32_t v = dynq__imp_lookup(b, vi->name);
    for (int k = 0; k < c.opt.n_const && v >= 0 && b->values[v].data != NULL; k++)
      if (strcmp(c.opt.const_name[k], vi->name) == 0) {
        dynq__imp_errorf("--const %s: the input already has an initializer in the model",
                         vi->name);
        goto done;
      }
    if (v >= 0 && b->values[v].data != NULL) continue; /* initializer listed as input */
    if (v >= 0) {
      dynq__imp_errorf("graph input '%s' is listed twice", vi->name);
      goto done;
    }
    int32_t bound = dynq__imp_const_input(&c, vi);
    if (bound == -1) goto done;
    if (bound >= 0) continue; /* --const: a constant (weights) now */
    int32_t fixed = dynq__imp_set_input(&c, vi);
    if (fixed == -1) goto done;
    if (fixed >= 0) continue; /* --set: a constant now */
    dynq_dtype_t dt;
    int rank;
    int64_t dims[DYNQ_MAX_RANK];
    if (dynq__imp_import_value_info(b, vi, "input", &dt, &rank, dims) != 0) goto done;
    v = dynq__imp_add_value(b, vi->name, dt, rank, dims);
    if (v < 0) {
      dynq__imp_errorf("out of memory");
      goto done;
    }
    b->inputs[b->n_inputs++] = v;
  }
  for (int i = 0; i < c.opt.n_set; i++) {
    int32_t v = dynq__imp_lookup(b, c.opt.set_name[i]);
    int is_input = 0;
    for (size_t j = 0; j < g->n_input; j++)
      is_input |= g->input[j]->name && strcmp(g->input[j]->name, c.opt.set_name[i]) == 0;
    if (v < 0 || !is_input) {
      dynq__imp_errorf("--set %s: the graph has no input of that name", c.opt.set_name[i]);
      goto done;
    }
  }
  for (int i = 0; i < c.opt.n_const; i++) {
    int is_input = 0;
    for (size_t j = 0; j < g->n_input; j++)
      is_input |= g->input[j]->name && strcmp(g->input[j]->name, c.opt.const_name[i]) == 0;
    if (!is_input) {
      dynq__imp_errorf("--const %s: the graph has no input of that name", c.opt.const_name[i]);
      goto done;
    }
  }
  /* A graph without inputs (everything constant) is allowed: it folds to
   * its outputs. */
  if (g->n_output == 0) {
    dynq__imp_errorf("the graph has no outputs");
    goto done;
  }

  /* Use counts (for Relu fusion), by value name; values added later
   * (placeholders) are counted as they appear in pass 1. */
  c.uses = calloc((size_t)b->n_values + 16 * g->n_node + 64, sizeof(int));
  c.n_uses = b->n_values + 16 * (int)g->n_node + 64;
  if (c.uses == NULL) {
    dynq__imp_errorf("out of memory");
    goto done;
  }
  if (convert_nodes(&c, g->node, g->n_node, in) != 0) goto done;
  {
    int nq = 0;
    for (int i = 0; i < c.n_layers; i++) nq += c.layers[i].quantized;
    dynq__imp_progress(opt, "converted %zu nodes: %d layers, %d quantized", g->n_node,
                       c.n_layers, nq);
  }
  for (size_t i = 0; i < g->n_output; i++) {
    const Onnx__ValueInfoProto *vi = g->output[i];
    int32_t v = vi->name ? dynq__imp_lookup(b, vi->name) : -1;
    if (v < 0) {
      dynq__imp_errorf("graph output '%s' is not produced by any node", vi->name ? vi->name : "");
      goto done;
    }
    dynq_dtype_t dt;
    int rank;
    int64_t dims[DYNQ_MAX_RANK];
    if (dynq__imp_import_value_info(b, vi, "output", &dt, &rank, dims) != 0) goto done;
    if (b->values[v].data == NULL && b->producer[v] >= 0) {
      b->values[v].dtype = dt;
      b->values[v].rank = rank;
      for (int d = 0; d < rank; d++) b->values[v].dims[d] = dims[d];
    }
    b->outputs[b->n_outputs++] = v;
  }

  for (int i = 0; i < c.opt.n_keep; i++)
    if (c.opt.keep_hits[i] == 0) {
      dynq__imp_errorf("--keep-fp32 %s: no MatMul, Gemm, Conv, LSTM, GRU or RNN node has that name "
                       "(or a name ending with it; --exclude-nodes is the same list): the layer column of the "
                       "summary lists the names",
                       c.opt.keep[i]);
      goto done;
    }
  if (!c.opt.no_fuse &&
      (dynq__imp_fuse(&c, &c.n_fused_layernorm, &c.n_fused_bias, &c.n_fused_gelu) != 0 ||
       dynq__imp_fuse_cnn(&c, &c.n_fused_conv) != 0))
    goto done;
  if (!c.opt.no_fuse) dynq__imp_progress(opt, "fusions done");
  const char *base = strrchr(in, '/') ? strrchr(in, '/') + 1 : in;
  const char *producer = dynq__imp_pool_printf(&b->pool, "dynq-quantize %s from %s%s", DYNQ_VERSION,
                                     base, opt->fp32 ? " (fp32)" : "");
  dynq__graph_t dg;
  if (producer == NULL || dynq__imp_finish_graph(&c, &dg, producer, dynq__imp_fnv1a(buf, len)) != 0) goto done;
  if (opt->n_state > 0) {
    int32_t *pairs = dynq__imp_pool_alloc(&b->pool, sizeof(int32_t) * 2 * (size_t)opt->n_state);
    if (pairs == NULL) {
      dynq__imp_errorf("out of memory");
      goto done;
    }
    for (int i = 0; i < opt->n_state; i++) {
      pairs[2 * i] = pairs[2 * i + 1] = -1;
      for (int j = 0; j < dg.n_inputs; j++)
        if (strcmp(dg.values[dg.inputs[j]].name, opt->state_in[i]) == 0) pairs[2 * i] = dg.inputs[j];
      for (int j = 0; j < dg.n_outputs; j++)
        if (strcmp(dg.values[dg.outputs[j]].name, opt->state_out[i]) == 0)
          pairs[2 * i + 1] = dg.outputs[j];
      if (pairs[2 * i] < 0 || pairs[2 * i + 1] < 0) {
        dynq__imp_errorf("--state %s=%s: the graph has no %s named '%s'", opt->state_in[i],
                         opt->state_out[i], pairs[2 * i] < 0 ? "input" : "output",
                         pairs[2 * i] < 0 ? opt->state_in[i] : opt->state_out[i]);
        goto done;
      }
      const dynq__value_t *vi = &dg.values[pairs[2 * i]], *vo = &dg.values[pairs[2 * i + 1]];
      if (vi->dtype != vo->dtype || vi->rank != vo->rank) {
        dynq__imp_errorf("--state %s=%s: input is %s rank %d, output is %s rank %d",
                         opt->state_in[i], opt->state_out[i], dynq__dtype_name(vi->dtype),
                         vi->rank, dynq__dtype_name(vo->dtype), vo->rank);
        goto done;
      }
      for (int j = 0; j < i; j++)
        if (pairs[2 * j] == pairs[2 * i]) {
          dynq__imp_errorf("--state: input '%s' is bound twice", opt->state_in[i]);
          goto done;
        }
    }
    dg.n_state = opt->n_state;
    dg.state = pairs;
  }
  if (check_utf8(&dg) != 0) goto done;
  char err[512] = "";
  int r = dynq__graph_validate(&dg, err, sizeof(err));
  if (r != 0) {
    dynq__imp_errorf("internal error: the converted graph does not validate: %s", err);
    goto done;
  }
  dynq__imp_progress(opt, "validated %d nodes; writing '%s'", dg.n_nodes, out);
  r = dynq__graph_write(&dg, out, err, sizeof(err));
  if (r != 0) {
    dynq__imp_errorf("cannot write '%s': %s (%s)", out, err[0] ? err : dynq_strerror(r),
           dynq_err_name(r));
    goto done;
  }
  if (opt->on_layers != NULL) opt->on_layers(opt->on_layers_ctx, c.layers, c.n_layers);
  if (!opt->quiet) {
    const char *shown = opt->shown_path != NULL ? opt->shown_path : out;
    print_summary(&c, &dg, in, shown);
    struct stat st;
    if (stat(out, &st) == 0) printf("wrote %s (%lld bytes)\n", shown, (long long)st.st_size);
  }
  ret = 0;
done:
  if (m != NULL) onnx__model_proto__free_unpacked(m, NULL);
  free(c.uses);
  free(c.front);
  free(c.layers);
  dynq__imp_builder_free(&c.b);
  return ret;
}
