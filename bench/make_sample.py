#!/usr/bin/python3
"""GridSample and RoiAlign at the sizes models run them, for the op benchmark
against ONNX Runtime (BENCHMARKS.md):

  gs.onnx   GridSample bilinear, zeros, align_corners 0 (a spatial
            transformer's or a flow warp's resampling): X [1, 64, 128, 128],
            grid [1, 128, 128, 2] (an affine warp: a small rotation and zoom)
  roi.onnx  RoiAlign avg, half_pixel, 7 x 7, sampling_ratio 2, spatial_scale
            1/16 (a Mask R-CNN box head on one FPN level): X [1, 256, 50, 68],
            100 ROIs inside an 800 x 1088 image

  /usr/bin/python3 bench/make_sample.py [OUTDIR]
writes the two models and their inputs: gs_x.f32, gs_grid.f32, roi_x.f32,
roi_rois.f32, roi_bi.i64 (raw little-endian, C order), seeded.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

out = sys.argv[1] if len(sys.argv) > 1 else "."
rng = np.random.default_rng(16)


def save(name, node, inputs, output, opset=16):
    g = helper.make_graph([node], name, inputs, [output])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(out, name + ".onnx"))


f32 = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)

# GridSample: an affine warp of the output grid
H = W = 128
x = rng.standard_normal((1, 64, H, W)).astype(np.float32)
ys, xs = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")
a = 0.2
gx = 0.9 * (np.cos(a) * xs - np.sin(a) * ys)
gy = 0.9 * (np.sin(a) * xs + np.cos(a) * ys)
grid = np.stack([gx, gy], -1)[None].astype(np.float32)
save("gs", helper.make_node("GridSample", ["X", "grid"], ["Y"], name="gs"),
     [f32("X", [1, 64, H, W]), f32("grid", [1, H, W, 2])], f32("Y", [1, 64, H, W]))
x.tofile(os.path.join(out, "gs_x.f32"))
grid.tofile(os.path.join(out, "gs_grid.f32"))

# RoiAlign: 100 boxes in an 800 x 1088 image, features at stride 16
R = 100
x = rng.standard_normal((1, 256, 50, 68)).astype(np.float32)
w = rng.uniform(16, 400, R)
h = rng.uniform(16, 400, R)
x1 = rng.uniform(0, 1088 - w)
y1 = rng.uniform(0, 800 - h)
rois = np.stack([x1, y1, x1 + w, y1 + h], 1).astype(np.float32)
save("roi", helper.make_node("RoiAlign", ["X", "rois", "batch_indices"], ["Y"], name="roi",
                             output_height=7, output_width=7, sampling_ratio=2,
                             spatial_scale=1.0 / 16),
     [f32("X", [1, 256, 50, 68]), f32("rois", [R, 4]),
      helper.make_tensor_value_info("batch_indices", TensorProto.INT64, [R])],
     f32("Y", [R, 256, 7, 7]))
x.tofile(os.path.join(out, "roi_x.f32"))
rois.tofile(os.path.join(out, "roi_rois.f32"))
np.zeros(R, np.int64).tofile(os.path.join(out, "roi_bi.i64"))
