#!/usr/bin/python3
"""One-op ONNX models at the sizes CNNs and transformers run them, for an
op-by-op sweep of dynq against ONNX Runtime (bench/ops/sweep.sh).

    /usr/bin/python3 bench/ops/make_ops.py OUTDIR

Writes OUTDIR/NAME.onnx, NAME.json (run.js's spec) and NAME_INPUT.f32 for
each op (float32 inputs, seeded).  "ident" is ONNX Runtime's floor: an
Identity of a [1, 64, 56, 56] tensor costs what run.js spends moving
inputs and outputs between JavaScript and the session.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def mk(name, nodes, inputs, inits=(), opset=13):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                          [helper.make_tensor_value_info("y", F, None)], list(inits))
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), name + ".onnx")
    spec = {"inputs": []}
    for n, s in inputs:
        np.random.default_rng(1).standard_normal(s).astype(np.float32).tofile(f"{name}_{n}.f32")
        spec["inputs"].append({"name": n, "dtype": "float32", "shape": s,
                               "file": f"{name}_{n}.f32"})
    with open(name + ".json", "w") as f:
        json.dump(spec, f)


def C(n, a):
    return numpy_helper.from_array(np.array(a), n)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    os.makedirs(sys.argv[1], exist_ok=True)
    os.chdir(sys.argv[1])
    rng = np.random.default_rng(2)
    x4 = [1, 64, 56, 56]
    mk("ident", [helper.make_node("Identity", ["x"], ["y"])], [("x", x4)])
    mk("add_bc",[helper.make_node("Add",["x","b"],["y"])],[("x",x4)],[C("b",rng.random((1,64,1,1)).astype(np.float32))])
    mk("mul_ew",[helper.make_node("Mul",["x","z"],["y"])],[("x",x4),("z",x4)])
    mk("relu",[helper.make_node("Relu",["x"],["y"])],[("x",x4)])
    mk("sigmoid",[helper.make_node("Sigmoid",["x"],["y"])],[("x",x4)])
    mk("hswish",[helper.make_node("HardSwish",["x"],["y"])],[("x",x4)],opset=14)
    mk("erf",[helper.make_node("Erf",["x"],["y"])],[("x",[1,128,768])])
    mk("tanh",[helper.make_node("Tanh",["x"],["y"])],[("x",[1,128,768])])
    mk("softmax",[helper.make_node("Softmax",["x"],["y"],axis=-1)],[("x",[12,128,128])])
    mk("layernorm",[helper.make_node("LayerNormalization",["x","g","b"],["y"],axis=-1)],[("x",[1,128,768])],[C("g",np.ones(768,np.float32)),C("b",np.zeros(768,np.float32))],opset=17)
    mk("transpose",[helper.make_node("Transpose",["x"],["y"],perm=[0,2,1,3])],[("x",[1,128,12,64])])
    mk("transpose_nchw",[helper.make_node("Transpose",["x"],["y"],perm=[0,2,3,1])],[("x",x4)])
    mk("concat",[helper.make_node("Concat",["x","z"],["y"],axis=1)],[("x",x4),("z",x4)])
    mk("resize_near",[helper.make_node("Resize",["x","","s"],["y"],mode="nearest")],[("x",[1,128,40,40])],[C("s",np.array([1,1,2,2],np.float32))])
    mk("resize_lin",[helper.make_node("Resize",["x","","s"],["y"],mode="linear")],[("x",[1,128,40,40])],[C("s",np.array([1,1,2,2],np.float32))])
    mk("reducemean",[helper.make_node("ReduceMean",["x"],["y"],axes=[2,3],keepdims=1)],[("x",x4)])
    mk("gap",[helper.make_node("GlobalAveragePool",["x"],["y"])],[("x",[1,512,14,14])])
    mk("pad",[helper.make_node("Pad",["x","p"],["y"])],[("x",x4)],[C("p",np.array([0,0,1,1,0,0,1,1],np.int64))])
    mk("slice",[helper.make_node("Slice",["x","st","en","ax"],["y"])],[("x",x4)],[C("st",np.array([1],np.int64)),C("en",np.array([55],np.int64)),C("ax",np.array([2],np.int64))])
    mk("split",[helper.make_node("Split",["x"],["y","y2"],axis=1)],[("x",x4)])
    mk("gather",[helper.make_node("Gather",["e","i"],["y"])],[("e",[30522//10,768])],[C("i",np.arange(128,dtype=np.int64))])
    mk("batchnorm",[helper.make_node("BatchNormalization",["x","s","b","m","v"],["y"])],[("x",x4)],[C(n,rng.random((64)).astype(np.float32)+0.5) for n in "sbmv"])
    mk("dwconv",[helper.make_node("Conv",["x","w"],["y"],group=64,pads=[1,1,1,1],kernel_shape=[3,3])],[("x",x4)],[C("w",rng.random((64,1,3,3)).astype(np.float32))])
    mk("maxpool_s1",[helper.make_node("MaxPool",["x"],["y"],kernel_shape=[5,5],pads=[2,2,2,2])],[("x",[1,128,20,20])])
    mk("reducesum_last",[helper.make_node("ReduceSum",["x","a"],["y"],keepdims=1)],[("x",[1,128,768])],[C("a",np.array([-1],np.int64))])
    mk("where",[helper.make_node("Greater",["x","z"],["c"]),helper.make_node("Where",["c","x","z"],["y"])],[("x",x4),("z",x4)])
    mk("expand",[helper.make_node("Expand",["x","s"],["y"])],[("x",[1,64,1,56])],[C("s",np.array([1,64,56,56],np.int64))])
    mk("instnorm",[helper.make_node("InstanceNormalization",["x","s","b"],["y"])],[("x",x4)],[C("s",np.ones(64,np.float32)),C("b",np.zeros(64,np.float32))])
    mk("depth2space",[helper.make_node("DepthToSpace",["x"],["y"],blocksize=2)],[("x",[1,256,28,28])])
    mk("gelu_chain",[helper.make_node("Div",["x","r2"],["a"]),helper.make_node("Erf",["a"],["b"]),helper.make_node("Add",["b","one"],["c"]),helper.make_node("Mul",["x","c"],["d"]),helper.make_node("Mul",["d","half"],["y"])],[("x",[1,128,3072])],[C("r2",np.float32(1.4142135)),C("one",np.float32(1)),C("half",np.float32(0.5))])


if __name__ == "__main__":
    main()
