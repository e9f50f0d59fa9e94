#!/usr/bin/python3
"""Benchmark model for Loop (BENCHMARKS.md): torch.jit.script of a recurrent
cell, exported by torch as ONNX Loop with two 256 x 256 Linear layers in the
body (quantized by dynq inside the loop):

    h = tanh(W x[t] + U h), t < x.size(0)

    /usr/bin/python3 bench/make_loop.py OUTDIR [T]

Writes OUTDIR/loop.onnx, OUTDIR/loop_x.f32 (x [T, 1, 256], default T 200)
and OUTDIR/spec_loop.json for bench/ort/run.js.
"""
import json
import os
import sys

import numpy as np
import torch


class Cell(torch.nn.Module):
    def __init__(self, n=256):
        super().__init__()
        torch.manual_seed(7)
        self.n = n
        self.W = torch.nn.Linear(n, n)
        self.U = torch.nn.Linear(n, n, bias=False)

    def forward(self, x):
        h = torch.zeros(x.size(1), self.n)
        for t in range(x.size(0)):
            h = torch.tanh(self.W(x[t]) + self.U(h))
        return h


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    os.makedirs(out, exist_ok=True)
    x = np.random.default_rng(1).standard_normal((steps, 1, 256)).astype(np.float32)
    torch.onnx.export(torch.jit.script(Cell()), (torch.from_numpy(x),),
                      os.path.join(out, "loop.onnx"), input_names=["x"], output_names=["h"],
                      dynamic_axes={"x": {0: "T", 1: "B"}}, opset_version=13)
    x.tofile(os.path.join(out, "loop_x.f32"))
    with open(os.path.join(out, "spec_loop.json"), "w") as f:
        json.dump({"inputs": [{"name": "x", "dtype": "float32", "shape": list(x.shape),
                               "file": "loop_x.f32"}]}, f)


if __name__ == "__main__":
    main()
