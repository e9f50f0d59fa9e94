#!/usr/bin/python3
"""Write the ONNX graphs bench.js times, one pair per K x N:

  fp32_KxN.onnx  Y = X @ W + bias                        (MatMul, Add)
  dq_KxN.onnx    com.microsoft.DynamicQuantizeMatMul(X, Wq, scale[N],
                 zero_point[N] = 0, bias)                (ORT's dynamic INT8)

X is [M, K] with M symbolic.  W is uniform(+-1/sqrt(K)) like dynq-bench,
quantized per output channel, symmetric int8 in [-127, 127].
Run with Debian's python (/usr/bin/python3) which has python3-onnx.
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_KN = ["768x768", "768x3072", "3072x768", "4096x4096"]


def make(out, k, n, seed):
    rng = np.random.default_rng(seed)
    r = 1.0 / np.sqrt(k)
    w = rng.uniform(-r, r, size=(k, n)).astype(np.float32)
    bias = (rng.standard_normal(n) * 0.1).astype(np.float32)
    scale = np.abs(w).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    wq = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    scale = scale.astype(np.float32)

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", k])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])

    g = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]),
         helper.make_node("Add", ["XW", "bias"], ["Y"])],
        "fp32", [x], [y],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(bias, "bias")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(m, os.path.join(out, f"fp32_{k}x{n}.onnx"))

    g = helper.make_graph(
        [helper.make_node("DynamicQuantizeMatMul",
                          ["X", "Wq", "scale", "zp", "bias"], ["Y"],
                          domain="com.microsoft")],
        "dq", [x], [y],
        [numpy_helper.from_array(wq, "Wq"),
         numpy_helper.from_array(scale, "scale"),
         numpy_helper.from_array(np.zeros(n, np.int8), "zp"),
         numpy_helper.from_array(bias, "bias")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid("com.microsoft", 1)])
    onnx.save(m, os.path.join(out, f"dq_{k}x{n}.onnx"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="directory for the .onnx files")
    ap.add_argument("--kn", action="append", help="KxN (repeatable)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for i, kn in enumerate(a.kn or DEFAULT_KN):
        k, n = (int(v) for v in kn.split("x"))
        make(a.out, k, n, 1234 + i)


if __name__ == "__main__":
    main()
