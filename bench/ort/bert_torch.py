#!/usr/bin/python3
"""PyTorch 1.13 quantize_dynamic on the BERT-base-sized encoder (the
module make_zoo.py exports, same seeded weights), one thread unless
--threads: prints one
JSON line with the median time of --reps runs on the given batch's inputs
and the output's relL2 against --ref (ORT FP32's output) when given.

  bert_torch.py WORK_DIR BATCH [--reps N] [--threads T] [--ref FILE]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "fixtures"))
import make_zoo  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("batch", type=int)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ref")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m, _ = make_zoo.bert_base_module()
    q = torch.quantization.quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)
    ids = torch.from_numpy(np.fromfile(f"{a.work}/input_ids_b{a.batch}.i64", np.int64)
                           .reshape(a.batch, -1))
    am = torch.from_numpy(np.fromfile(f"{a.work}/attention_mask_b{a.batch}.i64", np.int64)
                          .reshape(a.batch, -1))
    times = []
    with torch.no_grad():
        y = q(ids, am)
        for _ in range(a.reps):
            t0 = time.perf_counter()
            q(ids, am)
            times.append((time.perf_counter() - t0) * 1e6)
    r = {"model": "torch quantize_dynamic", "engine": torch.backends.quantized.engine,
         "reps": a.reps, "median_us": round(sorted(times)[len(times) // 2], 1)}
    if a.ref:
        f = np.fromfile(a.ref, np.float32)
        y = y.numpy().ravel()
        r["rel_l2"] = round(float(np.linalg.norm(y - f) / np.linalg.norm(f)), 5)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
