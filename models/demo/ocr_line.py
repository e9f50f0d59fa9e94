#!/usr/bin/python3
"""The two ends of the OCR demo (models/demo/ocr.sh) that are not dynqctl's:
turning a text line into PP-OCRv4's input tensor, and its output into text.

  ocr_line.py render TEXT OUT.npy [--font FILE] [--size PX] [--png FILE]
  ocr_line.py image FILE OUT.npy
  ocr_line.py decode PROBS.npy KEYS.txt

render draws TEXT in black on white with a Debian font (Noto CJK when the
text has CJK characters, else DejaVu Sans) at height 48; image reads a
picture of one line (any size PIL opens) and scales it to height 48.  Both
then do what PaddleOCR's recogniser does before the network (and what
tests/test-ocr.c does): grey copied to the three channels, x -> (x / 255 -
0.5) / 0.5, zeros on the right to a width of at least 320, as float32
[1, 3, 48, W].

decode is PaddleOCR's greedy CTC: argmax per time step, repeats collapsed,
blank (class 0) dropped, class i -> line i of the key file, and the class
after the last line is a space (use_space_char).  It prints the text.
Uses only Debian's python3-numpy and python3-pil.
"""
import argparse
import math
import os
import sys

import numpy as np

H, MIN_W = 48, 320
# The widest line accepted: PP-OCRv4 reads one line at a time, and a
# picture this wide at height 48 is a paragraph, not a line.
MAX_W = 48 * 50
FONT_LATIN = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
FONT_CJK = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"


def die(msg):
    sys.stderr.write("ocr_line: %s\n" % msg)
    sys.exit(2)


def to_tensor(gray):
    """[48, w] uint8 -> float32 [1, 3, 48, max(w, 320)] as PaddleOCR's resize_norm_img."""
    w = gray.shape[1]
    x = np.zeros((1, 3, H, max(w, MIN_W)), np.float32)
    x[0, :, :, :w] = (gray.astype(np.float32) / 255.0 - 0.5) / 0.5
    return x


def render(text, font_path, size):
    from PIL import Image, ImageDraw, ImageFont
    if not text.strip():
        die("nothing to render: the text is empty")
    if font_path is None:
        font_path = FONT_CJK if any(ord(c) > 0x2e80 for c in text) else FONT_LATIN
    try:
        font = ImageFont.truetype(font_path, size)
    except OSError as e:
        die("cannot open font %s: %s (apt-get install fonts-dejavu-core fonts-noto-cjk, "
            "or pass --font)" % (font_path, e))
    x0, y0, x1, y1 = font.getbbox(text)
    margin = 8
    w = x1 - x0 + 2 * margin
    if w > MAX_W:
        die("the rendered line is %d pixels wide (at most %d): use shorter text" % (w, MAX_W))
    img = Image.new("L", (w, H), 255)
    ImageDraw.Draw(img).text((margin - x0, (H - (y1 - y0)) // 2 - y0), text, fill=0, font=font)
    return img


def load_image(path):
    from PIL import Image, UnidentifiedImageError
    try:
        img = Image.open(path)
        img.load()
    except (OSError, UnidentifiedImageError) as e:
        die("cannot read image %s: %s" % (path, e))
    if img.width < 1 or img.height < 1:
        die("image %s is empty" % path)
    # the line keeps its aspect ratio at height 48, as PaddleOCR resizes it
    w = max(1, math.ceil(img.width * H / img.height))
    if w > MAX_W:
        die("image %s is %dx%d: at height 48 it would be %d wide (at most %d); crop it to "
            "one line" % (path, img.width, img.height, w, MAX_W))
    return img.convert("L").resize((w, H), Image.BILINEAR)


def decode(probs_path, keys_path):
    try:
        p = np.load(probs_path)
    except (OSError, ValueError) as e:
        die("cannot read %s: %s" % (probs_path, e))
    try:
        with open(keys_path, encoding="utf-8") as fh:
            keys = [l.rstrip("\n") for l in fh] + [" "]
    except OSError as e:
        die("cannot read key file %s: %s" % (keys_path, e))
    if p.ndim != 3 or p.shape[0] != 1 or p.shape[2] != len(keys) + 1:
        die("%s has shape %s; expected [1, T, %d] (the key file's %d lines + space + blank)"
            % (probs_path, list(p.shape), len(keys) + 1, len(keys) - 1))
    out, prev = [], 0
    for k in p[0].argmax(axis=-1):
        if k != prev and k != 0:
            out.append(keys[k - 1])
        prev = k
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("text")
    r.add_argument("out")
    r.add_argument("--font")
    r.add_argument("--size", type=int, default=30)
    r.add_argument("--png")
    i = sub.add_parser("image")
    i.add_argument("path")
    i.add_argument("out")
    d = sub.add_parser("decode")
    d.add_argument("probs")
    d.add_argument("keys")
    a = ap.parse_args()
    if a.cmd == "decode":
        print(decode(a.probs, a.keys))
        return
    if a.cmd == "render":
        if not 8 <= a.size <= 44:
            die("--size %d: a glyph size from 8 to 44 pixels fits a 48-pixel line" % a.size)
        img = render(a.text, a.font, a.size)
        if a.png:
            img.save(a.png)
    else:
        img = load_image(a.path)
    np.save(a.out, to_tensor(np.asarray(img, dtype=np.uint8)))


if __name__ == "__main__":
    main()
