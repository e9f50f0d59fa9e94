#!/usr/bin/python3
"""Pin Silero VAD v5's symbolic input dims to one 16 kHz stream chunk:
input [1, 576], state [2, 1, 128].

Why: dynqd warms every model with one run on zero inputs whose symbolic
dims are 1 (docs/DAEMON.md); Silero's STFT Conv needs at least 256 samples,
so the unpinned model is refused at load ("warm-up run on zero inputs
failed ... smaller than the dilated kernel 256").  Until the warm-up can
take real shapes, bench/vad/run.sh serves this pinned copy (same weights,
same outputs for these shapes).

usage: /usr/bin/python3 bench/vad/fix_shapes.py IN.onnx OUT.onnx
"""
import sys

import onnx


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    m = onnx.load(sys.argv[1])
    want = {"input": [1, 576], "state": [2, 1, 128]}
    seen = set()
    for vi in m.graph.input:
        if vi.name not in want:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != len(want[vi.name]):
            sys.exit("fix_shapes: input %r has rank %d, expected %d (not Silero VAD v5?)"
                     % (vi.name, len(dims), len(want[vi.name])))
        for d, v in zip(dims, want[vi.name]):
            if d.HasField("dim_value") and d.dim_value != v:
                sys.exit("fix_shapes: input %r dim %d is %d, expected %d"
                         % (vi.name, list(dims).index(d), d.dim_value, v))
            d.dim_value = v
        seen.add(vi.name)
    if seen != set(want):
        sys.exit("fix_shapes: missing inputs %s (not Silero VAD v5?)" % sorted(set(want) - seen))
    onnx.save(m, sys.argv[2])


if __name__ == "__main__":
    main()
