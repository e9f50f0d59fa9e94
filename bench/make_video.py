#!/usr/bin/python3
"""An R(2+1)D-18-style video classifier (torchvision's r2plus1d_18 layout:
(1 x 3 x 3) spatial then (3 x 1 x 1) temporal convs with BatchNorm and
Relu, residual blocks 64 -> 128 -> 256, global pooling, a 400-way Linear),
seeded random weights and BatchNorm statistics, exported at opset 13 with
one 1 x 3 x 8 x 112 x 112 clip; for the 3-D Conv benchmark against ONNX
Runtime (BENCHMARKS.md).  torchvision is not in Debian's python3-torch,
so the layers are written out here.

  /usr/bin/python3 bench/make_video.py [OUTDIR]
writes r2p1d.onnx, x.f32 (the clip) and y_torch.f32 (PyTorch's logits).
"""
import os
import sys

import torch
import torch.nn as nn

out = sys.argv[1] if len(sys.argv) > 1 else "."
torch.manual_seed(0)


class Conv2plus1(nn.Sequential):
    def __init__(s, cin, cout, mid, stride=1):
        super().__init__(nn.Conv3d(cin, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
                         nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
                         nn.Conv3d(mid, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False))


class Block(nn.Module):
    def __init__(s, cin, cout, stride):
        super().__init__()
        mid = (cin * cout * 27) // (cin * 9 + 3 * cout)
        s.c1 = nn.Sequential(Conv2plus1(cin, cout, mid, stride), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))
        s.c2 = nn.Sequential(Conv2plus1(cout, cout, mid), nn.BatchNorm3d(cout))
        s.down = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv3d(cin, cout, 1, stride, bias=False), nn.BatchNorm3d(cout))
        s.relu = nn.ReLU(inplace=True)
    def forward(s, x):
        r = x if s.down is None else s.down(x)
        return s.relu(s.c2(s.c1(x)) + r)


class Net(nn.Module):
    def __init__(s):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv3d(3, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(45), nn.ReLU(inplace=True),
                               nn.Conv3d(45, 64, (3, 1, 1), 1, (1, 0, 0), bias=False), nn.BatchNorm3d(64), nn.ReLU(inplace=True))
        s.layers = nn.Sequential(Block(64, 64, 1), Block(64, 128, 2), Block(128, 256, 2))
        s.pool = nn.AdaptiveAvgPool3d(1)
        s.fc = nn.Linear(256, 400)
    def forward(s, x):
        return s.fc(s.pool(s.layers(s.stem(x))).flatten(1))


m = Net().eval()
for mod in m.modules():  # non-trivial BN statistics
    if isinstance(mod, nn.BatchNorm3d):
        mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 2.0)
        mod.weight.data.uniform_(0.5, 1.5); mod.bias.data.uniform_(-0.2, 0.2)
x = torch.randn(1, 3, 8, 112, 112)
torch.onnx.export(m, (x,), os.path.join(out, "r2p1d.onnx"), input_names=["x"], output_names=["y"], opset_version=13)
with torch.no_grad(): y = m(x)
x.numpy().tofile(os.path.join(out, "x.f32"))
y.numpy().tofile(os.path.join(out, "y_torch.f32"))
print(y.shape, sum(p.numel() for p in m.parameters()))
