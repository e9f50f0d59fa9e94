"""More model kinds for zoo_try.py: detection and segmentation nets,
speech front ends, classics, and the export variants (opsets 11 to 17,
constant folding off, einsum/where/gather/pad/flip/cumsum forms).  Random
seeded weights at small sizes; nothing is downloaded."""
import torch, torch.nn as nn, torch.nn.functional as F


def cbs(ci, co, k=1, s=1, g=1, d=1):  # Conv-BN-SiLU (YOLOv5/v8)
    return nn.Sequential(nn.Conv2d(ci, co, k, s, d * (k // 2), dilation=d, groups=g, bias=False),
                         nn.BatchNorm2d(co), nn.SiLU())


class C2f(nn.Module):
    def __init__(s, c):
        super().__init__(); s.cv1 = cbs(c, c); s.m = cbs(c // 2, c // 2, 3); s.cv2 = cbs(c + c // 2, c)
    def forward(s, x):
        a, b = s.cv1(x).split(x.shape[1] // 2, 1)
        return s.cv2(torch.cat([a, b, s.m(b)], 1))


class SPPF(nn.Module):
    def __init__(s, c):
        super().__init__(); s.cv1 = cbs(c, c // 2); s.cv2 = cbs(2 * c, c); s.m = nn.MaxPool2d(5, 1, 2)
    def forward(s, x):
        x = s.cv1(x); y1 = s.m(x); y2 = s.m(y1)
        return s.cv2(torch.cat([x, y1, y2, s.m(y2)], 1))


class Yolo(nn.Module):
    """YOLOv5-style: SiLU, Split, Concat, SPPF, nearest upsampling, sigmoid
    heads decoded with a grid (Mul, Add, Pow)."""
    def __init__(s, c=16, na=3, nc=4):
        super().__init__(); s.na, s.no = na, nc + 5
        s.stem = cbs(3, c, 3, 2); s.d1 = cbs(c, 2 * c, 3, 2); s.c1 = C2f(2 * c)
        s.d2 = cbs(2 * c, 2 * c, 3, 2); s.sppf = SPPF(2 * c)
        s.lat = cbs(4 * c, 2 * c)
        s.h1 = nn.Conv2d(2 * c, na * s.no, 1); s.h2 = nn.Conv2d(2 * c, na * s.no, 1)
        s.register_buffer("anchors", torch.tensor([[10., 13], [16, 30], [33, 23]]).view(1, na, 1, 1, 2))
    def decode(s, p, stride):
        b, _, h, w = p.shape
        p = p.view(b, s.na, s.no, h, w).permute(0, 1, 3, 4, 2).sigmoid()
        gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        grid = torch.stack((gx, gy), 2).view(1, 1, h, w, 2).float()
        xy = (p[..., 0:2] * 2 - 0.5 + grid) * stride
        wh = (p[..., 2:4] * 2) ** 2 * s.anchors
        return torch.cat((xy, wh, p[..., 4:]), -1).view(b, -1, s.no)
    def forward(s, x):
        a = s.c1(s.d1(s.stem(x))); b = s.sppf(s.d2(a))
        u = F.interpolate(b, scale_factor=2.0, mode="nearest")
        a = s.lat(torch.cat([u, a], 1))
        return torch.cat([s.decode(s.h1(a), 4), s.decode(s.h2(b), 8)], 1)


def dwsep(ci, co, s=1):
    return nn.Sequential(nn.Conv2d(ci, ci, 3, s, 1, groups=ci, bias=False), nn.BatchNorm2d(ci), nn.ReLU6(),
                         nn.Conv2d(ci, co, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU6())


class SSDLite(nn.Module):
    """SSD-lite: depthwise separable backbone, box and class heads on two
    scales, Permute/Reshape/Concat, Softmax scores."""
    def __init__(s, c=16, na=4, nc=5):
        super().__init__(); s.nc = nc
        s.b1 = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1), nn.ReLU6(), dwsep(c, 2 * c, 2))
        s.b2 = dwsep(2 * c, 4 * c, 2)
        s.box = nn.ModuleList([nn.Conv2d(2 * c, na * 4, 3, padding=1), nn.Conv2d(4 * c, na * 4, 3, padding=1)])
        s.cls = nn.ModuleList([nn.Conv2d(2 * c, na * nc, 3, padding=1), nn.Conv2d(4 * c, na * nc, 3, padding=1)])
    def forward(s, x):
        f1 = s.b1(x); f2 = s.b2(f1); boxes, scores = [], []
        for f, bh, ch in zip((f1, f2), s.box, s.cls):
            b = f.shape[0]
            boxes.append(bh(f).permute(0, 2, 3, 1).reshape(b, -1, 4))
            scores.append(ch(f).permute(0, 2, 3, 1).reshape(b, -1, s.nc))
        return torch.cat([torch.cat(boxes, 1), F.softmax(torch.cat(scores, 1), -1)], 2)


class DeepLab(nn.Module):
    """DeepLab-style: dilated convs, ASPP with an image-pooling branch
    upsampled bilinear, align_corners resize of the logits."""
    def __init__(s, c=16, nc=3):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1), nn.BatchNorm2d(c), nn.ReLU(),
                               nn.Conv2d(c, 2 * c, 3, 2, 1), nn.BatchNorm2d(2 * c), nn.ReLU(),
                               nn.Conv2d(2 * c, 2 * c, 3, 1, 2, dilation=2), nn.ReLU())
        s.aspp = nn.ModuleList([nn.Conv2d(2 * c, c, 1)] +
                               [nn.Conv2d(2 * c, c, 3, padding=d, dilation=d) for d in (2, 4)])
        s.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(2 * c, c, 1), nn.ReLU())
        s.proj = nn.Sequential(nn.Conv2d(4 * c, c, 1), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, nc, 1))
    def forward(s, x):
        f = s.stem(x); h, w = f.shape[2:]
        p = F.interpolate(s.pool(f), size=(h, w), mode="bilinear", align_corners=False)
        y = s.proj(torch.cat([F.relu(a(f)) for a in s.aspp] + [p], 1))
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=True)


class Wav2Vec2FE(nn.Module):
    """wav2vec2's conv feature extractor (Conv1d + GroupNorm(c, c) + GELU),
    feature LayerNorm and projection, grouped positional conv."""
    def __init__(s, c=32, d=32):
        super().__init__()
        s.c0 = nn.Conv1d(1, c, 10, 5, bias=False); s.gn = nn.GroupNorm(c, c)
        s.cs = nn.ModuleList([nn.Conv1d(c, c, k, st, bias=False) for k, st in ((3, 2), (3, 2), (2, 2))])
        s.ln = nn.LayerNorm(c); s.proj = nn.Linear(c, d)
        s.pos = nn.Conv1d(d, d, 8, padding=4, groups=4); s.ln2 = nn.LayerNorm(d)
    def forward(s, wav):
        x = F.gelu(s.gn(s.c0(wav.unsqueeze(1))))
        for cv in s.cs: x = F.gelu(cv(x))
        x = s.proj(s.ln(x.transpose(1, 2)))
        p = F.gelu(s.pos(x.transpose(1, 2))[:, :, :-1]).transpose(1, 2)
        return s.ln2(x + p)


class WhisperEnc(nn.Module):
    """Whisper-style encoder: two Conv1d + GELU on log-mel frames, sinusoid
    positions, pre-LN attention blocks."""
    def __init__(s, mels=16, d=32, h=4, layers=2, n=32):
        super().__init__(); s.h = h
        s.c1 = nn.Conv1d(mels, d, 3, padding=1); s.c2 = nn.Conv1d(d, d, 3, 2, 1)
        s.register_buffer("pos", torch.sin(torch.arange(n // 2)[:, None] * torch.arange(d)[None] * 0.1))
        s.blocks = nn.ModuleList([nn.ModuleDict(dict(ln1=nn.LayerNorm(d), qkv=nn.Linear(d, 3 * d), o=nn.Linear(d, d),
                                                     ln2=nn.LayerNorm(d), f1=nn.Linear(d, 4 * d), f2=nn.Linear(4 * d, d)))
                                  for _ in range(layers)])
        s.lnp = nn.LayerNorm(d)
    def forward(s, mel):
        x = F.gelu(s.c2(F.gelu(s.c1(mel)))).permute(0, 2, 1)
        x = x + s.pos[: x.shape[1]]
        b, t, d = x.shape
        for blk in s.blocks:
            q, k, v = blk["qkv"](blk["ln1"](x)).view(b, t, 3, s.h, d // s.h).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-1, -2) / (d // s.h) ** 0.5, -1)
            x = x + blk["o"]((a @ v).transpose(1, 2).reshape(b, t, d))
            x = x + blk["f2"](F.gelu(blk["f1"](blk["ln2"](x))))
        return s.lnp(x)


class CRNN(nn.Module):
    """CRNN / DeepSpeech: Conv2d-BN-ReLU-MaxPool over a spectrogram, the
    height folded into channels, a bidirectional LSTM, CTC log-probs."""
    def __init__(s, c=8, h=24, nc=10):
        super().__init__()
        s.cnn = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.Hardtanh(0, 20),
                              nn.MaxPool2d((2, 1)))
        s.rnn = nn.LSTM(2 * c * 4, h, batch_first=True, bidirectional=True); s.fc = nn.Linear(2 * h, nc)
    def forward(s, x):
        f = s.cnn(x); b, c, hh, w = f.shape
        o, _ = s.rnn(f.reshape(b, c * hh, w).permute(0, 2, 1))
        return F.log_softmax(s.fc(o), -1)


class AlexLRN(nn.Module):
    """AlexNet/CaffeNet-era: Conv + ReLU + LocalResponseNorm + MaxPool,
    Dropout, Linear."""
    def __init__(s, c=16, nc=10):
        super().__init__()
        s.f = nn.Sequential(nn.Conv2d(3, c, 5, 2, 2), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0),
                            nn.MaxPool2d(3, 2), nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(),
                            nn.LocalResponseNorm(3), nn.MaxPool2d(3, 2, ceil_mode=True))
        s.cls = nn.Sequential(nn.Dropout(0.5), nn.Linear(2 * c * 4 * 4, 32), nn.ReLU(), nn.Linear(32, nc))
    def forward(s, x):
        return s.cls(torch.flatten(s.f(x), 1))


class Inception(nn.Module):
    """GoogLeNet-style inception blocks: 1x1 / 3x3 / 5x5 / pool branches,
    AveragePool with and without count_include_pad, ceil_mode MaxPool."""
    def __init__(s, c=16, nc=10):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True))
        s.b1 = nn.Conv2d(c, 8, 1); s.b2 = nn.Sequential(nn.Conv2d(c, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        s.b3 = nn.Sequential(nn.Conv2d(c, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 5, padding=2))
        s.b4 = nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), nn.Conv2d(c, 8, 1))
        s.b5 = nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=True), nn.Conv2d(c, 8, 1))
        s.fc = nn.Linear(40, nc)
    def forward(s, x):
        x = s.stem(x)
        y = torch.cat([F.relu(b(x)) for b in (s.b1, s.b2, s.b3, s.b4, s.b5)], 1)
        y = F.avg_pool2d(y, 3, 2, ceil_mode=True)
        return s.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


class DenseNet(nn.Module):
    """DenseNet block: BN-ReLU-Conv (BN before the conv, not foldable),
    growing Concat, transition with AvgPool."""
    def __init__(s, c=16, g=8, n=3, nc=10):
        super().__init__()
        s.stem = nn.Conv2d(3, c, 3, 2, 1)
        s.layers = nn.ModuleList([nn.Sequential(nn.BatchNorm2d(c + i * g), nn.ReLU(), nn.Conv2d(c + i * g, 2 * g, 1),
                                                nn.BatchNorm2d(2 * g), nn.ReLU(), nn.Conv2d(2 * g, g, 3, padding=1))
                                  for i in range(n)])
        s.trans = nn.Sequential(nn.BatchNorm2d(c + n * g), nn.ReLU(), nn.Conv2d(c + n * g, c, 1), nn.AvgPool2d(2))
        s.fc = nn.Linear(c, nc)
    def forward(s, x):
        x = s.stem(x)
        for l in s.layers: x = torch.cat([x, l(x)], 1)
        return s.fc(F.adaptive_avg_pool2d(s.trans(x), 1).flatten(1))


class Fire(nn.Module):
    def __init__(s, ci, sq, e):
        super().__init__(); s.s = nn.Conv2d(ci, sq, 1); s.e1 = nn.Conv2d(sq, e, 1); s.e3 = nn.Conv2d(sq, e, 3, padding=1)
    def forward(s, x):
        x = F.relu(s.s(x)); return torch.cat([F.relu(s.e1(x)), F.relu(s.e3(x))], 1)


class Squeeze(nn.Module):
    def __init__(s, nc=10):
        super().__init__()
        s.f = nn.Sequential(nn.Conv2d(3, 16, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
                            Fire(16, 8, 16), Fire(32, 8, 16), nn.MaxPool2d(3, 2, ceil_mode=True), Fire(32, 8, 16))
        s.c = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(32, nc, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    def forward(s, x):
        return torch.flatten(s.c(s.f(x)), 1)


class Mixer(nn.Module):
    """MLP-Mixer: patch embedding conv, token-mixing MLP over the
    transposed sequence, channel-mixing MLP, GELU, LayerNorm."""
    def __init__(s, p=4, d=32, n=16, layers=2, nc=10):
        super().__init__()
        s.pe = nn.Conv2d(3, d, p, p)
        s.blocks = nn.ModuleList([nn.ModuleDict(dict(ln1=nn.LayerNorm(d), t1=nn.Linear(n, 2 * n), t2=nn.Linear(2 * n, n),
                                                     ln2=nn.LayerNorm(d), c1=nn.Linear(d, 4 * d), c2=nn.Linear(4 * d, d)))
                                  for _ in range(layers)])
        s.ln = nn.LayerNorm(d); s.fc = nn.Linear(d, nc)
    def forward(s, x):
        x = s.pe(x).flatten(2).transpose(1, 2)
        for b in s.blocks:
            y = b["ln1"](x).transpose(1, 2)
            x = x + b["t2"](F.gelu(b["t1"](y))).transpose(1, 2)
            x = x + b["c2"](F.gelu(b["c1"](b["ln2"](x))))
        return s.fc(s.ln(x).mean(1))


class Variants(nn.Module):
    """The forms export options and everyday torch code emit: masked_fill
    and where, interpolate by scale_factor, gather, Embedding with
    padding_idx, reflect/replicate pads, flip, cumsum, argmax, einsum."""
    def __init__(s, d=16, v=20):
        super().__init__(); s.emb = nn.Embedding(v, d, padding_idx=0); s.fc = nn.Linear(d, d); s.fc2 = nn.Linear(d, 4)
        s.w = nn.Parameter(torch.randn(d, d) * 0.2)
    def forward(s, x, ids):
        b, t, d = x.shape
        y = s.fc(x) + s.emb(ids)
        y = y.masked_fill(ids.unsqueeze(-1) == 0, 0.0)
        y = torch.where(y > 1.0, torch.tanh(y), y)
        y = torch.einsum("btd,de->bte", y, s.w) + torch.einsum("bsd,btd->bst", y, y).softmax(-1) @ y
        c = y.transpose(1, 2)
        c = F.pad(c, (2, 2), mode="reflect") + F.pad(c, (2, 2), mode="replicate")
        c = F.interpolate(c, scale_factor=0.5, mode="linear", align_corners=False)
        y = torch.flip(c.transpose(1, 2), [1]).cumsum(1)
        i = torch.argmax(y[:, :, 0], 1, keepdim=True)
        g = torch.gather(y, 1, i.unsqueeze(-1).expand(b, 1, d))
        z = torch.einsum("btd,btd->bt", y, g.expand_as(y)).unsqueeze(-1)
        return s.fc2(y * torch.sigmoid(z))


B = 4
def img(n=32): return [("x", torch.randn(B, 3, n, n))]
DYN = {"x": {0: "b"}}
KINDS = {
    "yolo": (Yolo, lambda: img(32), DYN),
    "ssdlite": (SSDLite, lambda: img(32), DYN),
    "deeplab": (DeepLab, lambda: img(32), DYN),
    "wav2vec2": (Wav2Vec2FE, lambda: [("wav", torch.randn(B, 400))], {"wav": {0: "b", 1: "n"}}),
    "whisper": (WhisperEnc, lambda: [("mel", torch.randn(B, 16, 32))], {"mel": {0: "b"}}),
    "crnn": (CRNN, lambda: [("x", torch.randn(B, 1, 16, 20))], {"x": {0: "b", 3: "w"}}),
    "alexlrn": (AlexLRN, lambda: img(40), DYN),
    "inception": (Inception, lambda: img(32), DYN),
    "densenet_s": (DenseNet, lambda: img(32), DYN),
    "squeeze_s": (Squeeze, lambda: img(48), DYN),
    "mixer": (Mixer, lambda: img(16), DYN),
    "variants": (Variants, lambda: [("x", torch.randn(B, 12, 16)), ("ids", torch.randint(0, 20, (B, 12)))],
                 {"x": {0: "b", 1: "s"}, "ids": {0: "b", 1: "s"}}),
}
