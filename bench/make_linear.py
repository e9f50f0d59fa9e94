#!/usr/bin/python3
"""Write the ipc-bench model: y = x W + b, x [batch, K], W [K, N] (default 768 x 768).

    /usr/bin/python3 bench/make_linear.py OUT.onnx [K [N]]

Seeded (weights uniform in +-1/sqrt(K)); convert with dynq-quantize.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

K = int(sys.argv[2]) if len(sys.argv) > 2 else 768
N = int(sys.argv[3]) if len(sys.argv) > 3 else K
rng = np.random.default_rng(20240607)
w = rng.uniform(-1 / np.sqrt(K), 1 / np.sqrt(K), size=(K, N)).astype(np.float32)
b = rng.uniform(-1 / np.sqrt(K), 1 / np.sqrt(K), size=(N,)).astype(np.float32)
graph = helper.make_graph(
    [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
    f"linear{K}" if K == N else f"linear{K}x{N}",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", K])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", N])],
    [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="dynq bench/make_linear.py")
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
