#!/usr/bin/python3
"""Train and export the bundled dynq demo model: a small MLP that tells
which kind of waveform a 64-sample window holds.

Classes (labels.txt order): sine, square, triangle, sawtooth, noise.
Each window has a random frequency (1.5 to 8 cycles), phase, amplitude
(0.3 to 2.0), DC offset and added Gaussian noise; "noise" is Gaussian
noise alone.  Training is plain numpy (Adam, seeded) and takes a few
seconds.

    /usr/bin/python3 models/demo/make_demo.py

writes, next to this script: demo.onnx (input "x" [batch, 64]; outputs
"probs" [batch, 5] = Softmax(logits) and "logits" [batch, 5]), labels.txt,
and examples/<class>.json (one [[64 floats]] window per class).
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = ["sine", "square", "triangle", "sawtooth", "noise"]
T = 64
HIDDEN = [64, 32]


def make_batch(rng, n):
    y = rng.integers(0, len(CLASSES), size=n)
    t = np.arange(T, dtype=np.float64) / T
    cycles = rng.uniform(1.5, 8.0, size=(n, 1))
    phase = rng.uniform(0.0, 1.0, size=(n, 1))
    amp = rng.uniform(0.3, 2.0, size=(n, 1))
    offset = rng.uniform(-0.3, 0.3, size=(n, 1))
    u = (cycles * t[None, :] + phase) % 1.0  # position inside the period, [0, 1)
    waves = {
        0: np.sin(2 * np.pi * u),
        1: np.where(u < 0.5, 1.0, -1.0),
        2: 4.0 * np.abs(u - 0.5) - 1.0,
        3: 2.0 * u - 1.0,
    }
    x = np.empty((n, T))
    for c in range(4):
        x[y == c] = waves[c][y == c]
    x[y == 4] = rng.standard_normal((int((y == 4).sum()), T))
    noise = rng.uniform(0.02, 0.15, size=(n, 1)) * rng.standard_normal((n, T))
    x = amp * (x + noise) + offset
    return x.astype(np.float32), y


def init_params(rng):
    sizes = [T] + HIDDEN + [len(CLASSES)]
    params = []
    for k, n in zip(sizes[:-1], sizes[1:]):
        w = rng.standard_normal((n, k)) * np.sqrt(2.0 / k)  # [out, in] like torch Linear
        params.append([w, np.zeros(n)])
    return params


def forward(params, x):
    acts = [x]
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w.T + b
        if i < len(params) - 1:
            h = np.maximum(h, 0.0)
        acts.append(h)
    return acts


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def train(rng, steps=5000, batch=256, lr=2e-3):
    params = init_params(rng)
    m = [[np.zeros_like(p) for p in layer] for layer in params]
    v = [[np.zeros_like(p) for p in layer] for layer in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        x, y = make_batch(rng, batch)
        acts = forward(params, x.astype(np.float64))
        p = softmax(acts[-1])
        g = p.copy()
        g[np.arange(batch), y] -= 1.0
        g /= batch
        for i in range(len(params) - 1, -1, -1):
            w, _ = params[i]
            gw = g.T @ acts[i]
            gb = g.sum(axis=0)
            if i > 0:
                g = (g @ w) * (acts[i] > 0)
            for j, gp in enumerate((gw, gb)):
                m[i][j] = b1 * m[i][j] + (1 - b1) * gp
                v[i][j] = b2 * v[i][j] + (1 - b2) * gp * gp
                mh = m[i][j] / (1 - b1 ** step)
                vh = v[i][j] / (1 - b2 ** step)
                params[i][j] -= lr * mh / (np.sqrt(vh) + eps)
    return params


def accuracy(params, x, y):
    return float((forward(params, x.astype(np.float64))[-1].argmax(axis=1) == y).mean())


def export(params, path):
    nodes, inits = [], []
    cur = "x"
    for i, (w, b) in enumerate(params):
        wn, bn, out = "fc%d.weight" % (i + 1), "fc%d.bias" % (i + 1), "fc%d" % (i + 1)
        inits += [numpy_helper.from_array(w.astype(np.float32), wn),
                  numpy_helper.from_array(b.astype(np.float32), bn)]
        last = i == len(params) - 1
        nodes.append(helper.make_node("Gemm", [cur, wn, bn], ["logits" if last else out],
                                      name=out, transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [out + "_relu"], name=out + "_relu"))
            cur = out + "_relu"
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1))
    graph = helper.make_graph(
        nodes, "waveform_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", T])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", len(CLASSES)]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(CLASSES)])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="dynq make_demo.py")
    model.doc_string = "Waveform classifier (dynq demo): " + ", ".join(CLASSES)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    rng = np.random.default_rng(12345)
    params = train(rng)
    xtr, ytr = make_batch(rng, 4000)
    xte, yte = make_batch(rng, 4000)
    print("training-distribution accuracy: %.4f" % accuracy(params, xtr, ytr))
    print("held-out accuracy:              %.4f" % accuracy(params, xte, yte))
    export(params, os.path.join(here, "demo.onnx"))
    with open(os.path.join(here, "labels.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    os.makedirs(os.path.join(here, "examples"), exist_ok=True)
    ex_rng = np.random.default_rng(99)
    for c, name in enumerate(CLASSES):
        # Draw until the model gets it right, so the examples demonstrate
        # the classes rather than the model's rare mistakes.
        for _ in range(100):
            x, y = make_batch(ex_rng, 64)
            sel = x[(y == c)]
            ok = sel[forward(params, sel.astype(np.float64))[-1].argmax(axis=1) == c]
            if len(ok):
                break
        ex = [[round(float(v), 5) for v in ok[0]]]
        with open(os.path.join(here, "examples", name + ".json"), "w") as f:
            json.dump(ex, f)
            f.write("\n")
    print("wrote demo.onnx, labels.txt and examples/ in", here)


if __name__ == "__main__":
    main()
