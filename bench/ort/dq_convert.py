#!/usr/bin/python3
"""Rewrite an FP32 ONNX model into ONNX Runtime's dynamic-INT8 form, the
baseline dynq's INT8 path is compared with:

  MatMul(A, B const 2-D [K, N])            -> com.microsoft.DynamicQuantizeMatMul
  Gemm(A, B const, C const [N] or scalar)     (A quantized per tensor at run time,
                                              B int8 symmetric per column, zp 0,
                                              bias = beta * C)

as onnxruntime.quantization.quantize_dynamic does with per_channel=True
(followed by ORT's MatMulIntegerToFloat fusion).  A MatMul whose only reader
is an Add of a constant [N] gets that Add folded into the bias.  With --conv,
Conv with a constant weight becomes DynamicQuantizeLinear -> ConvInteger ->
Cast -> Mul(per-channel scale) -> Add(bias), quantize_dynamic's Conv form,
so CNNs are compared layer for layer with dynq's QConv.

With --integer, MatMul/Gemm become DynamicQuantizeLinear -> MatMulInteger ->
Cast -> Mul(x scale * w scale) (-> Add bias): the file quantize_dynamic writes
(ORT fuses it into DynamicQuantizeMatMul when it loads it).

usage: dq_convert.py in.onnx out.onnx [--conv] [--integer] [--keep NODE,...]
Run with Debian's python (/usr/bin/python3), which has python3-onnx.
"""
import argparse
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def quant_cols(w):
    """w [K, N] float -> (int8 [K, N], scale [N]) symmetric per column."""
    amax = np.abs(w).max(axis=0)
    scale = (amax / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def all_nodes(graph):
    """The graph's nodes and those of its subgraphs (Loop, Scan and If bodies)."""
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(a.g)


def convert(model, conv=False, keep=(), integer=False):
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consts = {}
    for n in all_nodes(g):  # Constant nodes count as initializers
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)

    for n in all_nodes(g):  # torch's exporter shares equal initializers through Identity
        if n.op_type == "Identity" and (n.input[0] in inits or n.input[0] in consts):
            src = n.input[0]
            consts[n.output[0]] = (numpy_helper.to_array(inits[src]) if src in inits
                                   else consts[src])

    def const(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        return consts.get(name)

    readers = {}
    for n in all_nodes(g):
        for i in n.input:
            readers.setdefault(i, []).append(n)
    graph_outs = {o.name for o in g.output}

    new_inits, dropped = [], set()
    done = {"matmul": 0, "gemm": 0, "conv": 0, "bias_folded": 0}

    def rewrite(graph):  # a (sub)graph's nodes, rewritten in place
        new_nodes = []
        for n in graph.node:
            if id(n) in dropped:
                continue
            for a in n.attribute:  # a loop body's layers too (new weights go to g)
                if a.type == onnx.AttributeProto.GRAPH:
                    rewrite(a.g)
            convert_node(n, new_nodes)
        del graph.node[:]
        graph.node.extend(new_nodes)

    def convert_node(n, new_nodes):
        nonlocal new_inits
        name = n.name or n.output[0]
        if name in keep:
            new_nodes.append(n)
            return
        if n.op_type in ("MatMul", "Gemm"):
            b = const(n.input[1])
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            if b is None or b.ndim != 2 or b.dtype != np.float32 or attrs.get("transA", 0):
                new_nodes.append(n)
                return
            w = b.T if attrs.get("transB", 0) else b
            w = w * np.float32(attrs.get("alpha", 1.0))
            bias = None
            out = n.output[0]
            if n.op_type == "Gemm" and len(n.input) > 2 and n.input[2]:
                c = const(n.input[2])
                if c is None or c.size not in (1, w.shape[1]) or (c.ndim == 2 and c.shape[0] != 1):
                    new_nodes.append(n)
                    return
                bias = np.broadcast_to(c.reshape(-1) * np.float32(attrs.get("beta", 1.0)),
                                       (w.shape[1],)).astype(np.float32)
            elif n.op_type == "MatMul":
                rd = readers.get(out, [])
                if len(rd) == 1 and rd[0].op_type == "Add" and out not in graph_outs:
                    add = rd[0]
                    other = add.input[1] if add.input[0] == out else add.input[0]
                    c = const(other)
                    if c is not None and c.dtype == np.float32 and c.shape == (w.shape[1],):
                        bias = c.astype(np.float32)
                        out = add.output[0]
                        dropped.add(id(add))
                        done["bias_folded"] += 1
            q, s = quant_cols(w.astype(np.float32))
            base = f"dq_{len(new_inits)}"
            if integer:  # the file quantize_dynamic writes, before ORT fuses it at load
                xq, xs, xz, acc, accf, sc = (base + t for t in
                                              ("_xq", "_xs", "_xz", "_acc", "_accf", "_sc"))
                new_inits += [numpy_helper.from_array(q, base + "_w"),
                              numpy_helper.from_array(s, base + "_s")]
                mo = base + "_mo" if bias is not None else out
                new_nodes += [
                    helper.make_node("DynamicQuantizeLinear", [n.input[0]], [xq, xs, xz]),
                    helper.make_node("MatMulInteger", [xq, base + "_w", xz], [acc], name=name + "_mi"),
                    helper.make_node("Cast", [acc], [accf], to=onnx.TensorProto.FLOAT),
                    helper.make_node("Mul", [xs, base + "_s"], [sc]),
                    helper.make_node("Mul", [accf, sc], [mo])]
                if bias is not None:
                    new_inits.append(numpy_helper.from_array(bias, base + "_b"))
                    new_nodes.append(helper.make_node("Add", [mo, base + "_b"], [out]))
                done["matmul" if n.op_type == "MatMul" else "gemm"] += 1
                return
            ins = [n.input[0], base + "_w", base + "_s", base + "_zp"]
            new_inits += [numpy_helper.from_array(q, base + "_w"),
                          numpy_helper.from_array(s, base + "_s"),
                          numpy_helper.from_array(np.zeros(w.shape[1], np.int8), base + "_zp")]
            if bias is not None:
                ins.append(base + "_b")
                new_inits.append(numpy_helper.from_array(bias, base + "_b"))
            new_nodes.append(helper.make_node("DynamicQuantizeMatMul", ins, [out],
                                              name=name + "_dq", domain="com.microsoft"))
            done["matmul" if n.op_type == "MatMul" else "gemm"] += 1
        elif conv and n.op_type == "Conv" and const(n.input[1]) is not None:
            w = const(n.input[1]).astype(np.float32)
            co = w.shape[0]
            q, s = quant_cols(w.reshape(co, -1).T)
            q = q.T.reshape(w.shape)
            base = f"dqc_{len(new_inits)}"
            new_inits += [numpy_helper.from_array(q, base + "_w"),
                          numpy_helper.from_array(
                              s.reshape((1, co) + (1,) * (w.ndim - 2)), base + "_s")]
            xq, xs, xz, acc, accf, sc = (base + t for t in
                                          ("_xq", "_xs", "_xz", "_acc", "_accf", "_sc"))
            new_nodes += [
                helper.make_node("DynamicQuantizeLinear", [n.input[0]], [xq, xs, xz]),
                helper.make_node("ConvInteger", [xq, base + "_w", xz], [acc],
                                 name=name + "_ci", **{a.name: helper.get_attribute_value(a)
                                                       for a in n.attribute}),
                helper.make_node("Cast", [acc], [accf], to=onnx.TensorProto.FLOAT),
                helper.make_node("Mul", [base + "_s", xs], [sc]),
            ]
            has_b = len(n.input) > 2 and n.input[2]
            mo = base + "_mo" if has_b else n.output[0]
            new_nodes.append(helper.make_node("Mul", [accf, sc], [mo]))
            if has_b:
                b = const(n.input[2])
                new_inits.append(numpy_helper.from_array(
                    b.reshape((1, co) + (1,) * (w.ndim - 2)).astype(np.float32), base + "_b"))
                new_nodes.append(helper.make_node("Add", [mo, base + "_b"], [n.output[0]]))
            done["conv"] += 1
        else:
            new_nodes.append(n)

    rewrite(g)

    g.initializer.extend(new_inits)
    if (any(n.domain == "com.microsoft" for n in g.node) and
            not any(o.domain == "com.microsoft" for o in model.opset_import)):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    # Drop initializers nothing reads any more (the FP32 weights).
    used = {i for n in all_nodes(g) for i in n.input} | graph_outs
    keep_inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep_inits)
    return done


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--conv", action="store_true", help="also Conv -> ConvInteger")
    ap.add_argument("--keep", default="", help="node names left FP32, comma separated")
    ap.add_argument("--integer", action="store_true",
                    help="MatMul/Gemm as DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul "
                         "(quantize_dynamic's file) instead of DynamicQuantizeMatMul")
    a = ap.parse_args()
    m = onnx.load(a.inp)
    done = convert(m, a.conv, set(filter(None, a.keep.split(","))), a.integer)
    onnx.save(m, a.out)
    print(f"dq_convert: {a.out}: " + ", ".join(f"{k} {v}" for k, v in done.items()),
          file=sys.stderr)


if __name__ == "__main__":
    main()
