/*
 * Recurrent (LSTM, GRU, RNN) and convolution operators (rnn.c, conv.c).
 * Inputs by position:
 *
 * LSTM (FP32, ONNX inputs as they are):
 *   0 X [T,B,K] (layout 0) or [B,T,K] (layout 1)   1 W [D,4H,K]   2 R [D,4H,H]
 *   3 B [D,8H]  4 sequence_lens int32/int64 [B]  5 initial_h  6 initial_c
 *   7 P [D,3H]  (3..7 optional)
 *   outputs Y [T,D,B,H] / [B,T,D,H], Y_h and Y_c [D,B,H] / [B,D,H]
 * GRU: same with 3 gates (z, r, h), inputs 0..5, outputs Y, Y_h.
 * RNN (the plain cell, h = f(x W^T + h R^T + Wb + Rb)): as GRU with one
 *   gate: W [D,H,K], R [D,H,H], B [D,2H]; inputs 0..5, outputs Y, Y_h.
 * QLSTM: 0 X, 1 Wq int8 packed (D blocks of round_up(4H,16)*round_up(K,4)),
 *   2 W colsum int32 [D,4H], 3 W scale f32 [D,4H], 4 Rq (D blocks of
 *   round_up(4H,16)*round_up(H,4)), 5 R colsum, 6 R scale, then the LSTM
 *   optionals shifted: 7 B, 8 sequence_lens, 9 initial_h, 10 initial_c,
 *   11 P, and 12 Wref [D,4H,K], 13 Rref [D,4H,H] (FP32 reference weights,
 *   used when a request asks for precision "fp32").
 * QGRU: 0..6 as QLSTM (3 gates), 7 B, 8 sequence_lens, 9 initial_h,
 *   10 Wref, 11 Rref.
 * QRNN: as QGRU with one gate.
 * Attributes: "hidden_size" (required), "direction" string (forward,
 * reverse, bidirectional), "layout" 0/1, "clip" float (absent: none),
 * "input_forget" (LSTM), "linear_before_reset" (GRU), "input_size" K
 * (required on QLSTM/QGRU/QRNN), "per_tensor" 0/1 (Q ops); all six:
 * "act<i>" (DYNQ_RNN_ACT_* of function k of direction d, i = d * F + k,
 * F functions per direction: RNN 1 (f), GRU 2 (f, g), LSTM 3 (f, g, h),
 * ONNX's order) and "act_alpha<i>", "act_beta<i>" floats.  Absent: the
 * op's default function (RNN Tanh; GRU Sigmoid, Tanh; LSTM Sigmoid, Tanh,
 * Tanh: files written before LSTM/GRU had these run as they did) and the
 * function's ONNX alpha and beta.  The importer resolves ONNX's
 * activations / activation_alpha / activation_beta lists into them.  An
 * LSTM/GRU whose functions are all the defaults runs the vectorized
 * default cell; any other function, the generic one (vact).
 *
 * Gate order is ONNX's: LSTM i, o, f, c; GRU z, r, h; RNN one.  The quantized ops
 * quantize W and R per gate row (per output channel), X per row (per time
 * step and batch item; X*W for every step is one GEMM, which gives the
 * same numbers as quantizing x_t step by step) and h_{t-1} per row at
 * every step; the cell math stays FP32.
 *
 * CONV: 0 X [N,C,L] or [N,C,H,W], 1 W [M,C/group,k...], 2 B [M] optional.
 * QCONV: 0 X, 1 Wq int8 packed (group blocks of round_up(M/group,16) *
 *   round_up(C/group*prod(k),4)), 2 colsum int32 [M], 3 w scale f32 [M],
 *   4 B [M] optional, 5 Wref [M,C/group,k...] optional.
 * Conv attributes (ints, one per spatial axis a = 0, 1 so that no graph
 * lookup is needed at run time): "strides<a>", "dilations<a>",
 * "pad_begin<a>", "pad_end<a>", "group", "auto_pad" string (NOTSET,
 * SAME_UPPER, SAME_LOWER, VALID); QCONV also "kernel_shape<a>",
 * "in_channels", "out_channels", "spatial" (1 or 2).
 * QCONV quantizes each patch (im2col row: one output position's values)
 * with its own scale and zero point, so an output depends only on the
 * values under its window (docs/NUMERICS.md); with the optional "per_tensor"
 * attribute 1, each image of the batch as a whole, gathering u8 patches.
 */
#ifndef DYNQ_RNN_H
#define DYNQ_RNN_H

#include "ops.h"

/* Largest hidden size / input size / kernel patch accepted: keeps every
 * GEMM inside DYNQ_QGEMM_MAX_K and every per-step buffer small. */
#define DYNQ_RNN_MAX_HIDDEN 65536

#endif
