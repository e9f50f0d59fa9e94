#!/usr/bin/python3
"""Regenerate the fuzz targets' seed corpora in tests/fuzz/corpus/<target>/.

    /usr/bin/python3 tests/fuzz/gen-corpus.py BUILD_DIR [TARGET...]

BUILD_DIR is any build of this tree (dynq-quantize from it converts the
small ONNX fixtures into .dynq seeds for fuzz-model).  Seeds are small valid
inputs (plus a few near misses) so the fuzzers start past the magic numbers.
"""
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
FIX = os.path.join(SRC, "tests", "fixtures")
OUT = os.path.join(HERE, "corpus")


# ---- a tiny msgpack writer (the wire format, docs/PROTOCOL.md) ----
def mp(o):
    if o is None:
        return b"\xc0"
    if o is True:
        return b"\xc3"
    if o is False:
        return b"\xc2"
    if isinstance(o, int):
        if 0 <= o < 128:
            return bytes([o])
        if -32 <= o < 0:
            return struct.pack("b", o)
        if 0 <= o < 1 << 32:
            return b"\xce" + struct.pack(">I", o)
        return b"\xd3" + struct.pack(">q", o)
    if isinstance(o, float):
        return b"\xcb" + struct.pack(">d", o)
    if isinstance(o, str):
        b = o.encode()
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(o, bytes):
        return b"\xc4" + bytes([len(o)]) + o if len(o) < 256 else b"\xc5" + struct.pack(">H", len(o)) + o
    if isinstance(o, list):
        return bytes([0x90 | len(o)]) + b"".join(mp(x) for x in o)
    if isinstance(o, dict):
        return bytes([0x80 | len(o)]) + b"".join(mp(k) + mp(v) for k, v in o.items())
    raise TypeError(o)


def tensor(dtype, shape, fmt):
    n = 1
    for d in shape:
        n *= d
    return {"dtype": dtype, "shape": shape, "data": struct.pack("<%d%s" % (n, fmt), *range(n))}


def rpc_seeds():
    t = tensor("float32", [2, 3], "f")
    yield "req-hello", mp([0, 1, "hello", {"protocol": 1, "client": "fuzz"}])
    yield "req-run", mp([0, 7, "model.run", {"model": "mlp", "inputs": {"x": t}}])
    yield "req-run-i8", mp([0, 8, "model.run", {"model": "m", "inputs": {"x": tensor("int8", [4], "b")},
                                                  "precision": "int8"}])
    yield "req-run-i64", mp([0, 9, "model.run", {"inputs": [tensor("int64", [1, 2], "q")]}])
    yield "resp-ok", mp([1, 7, None, {"outputs": {"y": t}}])
    yield "resp-err", mp([1, 3, {"code": -1007, "name": "DYNQ_ESHAPE", "message": "bad shape",
                                 "retryable": False}, None])
    yield "notify", mp([2, "session.closed", {"session": 5, "reason": "idle"}])
    yield "two-frames", mp([0, 1, "ping", None]) + mp([0, 2, "stats", {}])
    yield "float-int", mp([0, 4294967295, "x", [1.5, -3, 2 ** 40, "s", b"b", True, None]])


def client_seeds():
    """dynqd's side of the stream to fuzz-client's four tickets: infers 1-3
    and a ping, 4."""
    y = tensor("float32", [1, 3], "f")
    ok = lambda i, extra={}: mp([1, i, None, dict({"outputs": {"y": y}, "compute_us": 5}, **extra)])
    err = lambda i, name, code: mp([1, i, {"code": code, "name": name, "message": "no",
                                           "retryable": name == "DYNQ_EOVERLOAD"}, None])
    pong = mp([1, 4, None, "pong"])
    yield "in-order", ok(1) + ok(2) + ok(3) + pong
    yield "reversed", pong + ok(3) + ok(2) + ok(1)
    yield "errors", err(1, "DYNQ_ESHAPE", -1007) + err(2, "DYNQ_EOVERLOAD", -1012) + \
        err(3, "DYNQ_EWHAT", -5) + pong
    yield "unknown-keys", ok(1, {"queue_us": 3, "decode_us": 1, "batch": [1.5, None]}) + pong
    yield "shm-output", mp([1, 2, None, {"outputs": {"y": {"dtype": "float32", "shape": [4],
                                                           "shm": {"region": 1, "offset": 0,
                                                                   "size": 16}}}}]) + ok(1)
    yield "two-outputs", mp([1, 1, None, {"outputs": {"a": tensor("int8", [2, 2], "b"),
                                                       "b": tensor("int64", [3], "q")}}]) + ok(2)
    yield "noise", mp([2, "session.closed", {"session": 1}]) + ok(9) + ok(1) + ok(1) + pong
    yield "msgid0", mp([1, 0, {"code": -1001, "name": "DYNQ_EPROTO", "message": "bad"}, None])
    yield "array16", b"\xdc\x00\x04" + mp(1) + mp(3) + mp(None) + mp({"outputs": {}}) + pong
    yield "truncated", (ok(1) + ok(2))[:-7]
    # what a hostile server sends: each must fail its ticket or the stream
    shm_bad = {"dtype": "int32", "shape": [2], "shm": {"region": 1, "offset": 0, "size": 4}}
    yield "shm-size-lie", mp([1, 1, None, {"outputs": {"y": shm_bad}}]) + ok(2) + ok(3) + pong
    yield "server-request", mp([0, 1, "ping", {}]) + ok(1) + ok(2) + ok(3) + pong
    yield "msgid-range", mp([1, -1, None, {}]) + mp([1, (1 << 32) + 2, None, {}]) + pong
    yield "bin-4g", b"\x94\x01\x01\xc0\x81\xa7outputs\xc6\xff\xff\xff\xff"
    yield "deep", b"\x94\x01\x02\xc0" + b"\x91" * 40 + b"\xc0" + pong
    yield "error-types", mp([1, 1, 5, None]) + mp([1, 2, {"name": 5, "message": []}, None]) + \
        ok(3) + pong
    yield "timings-types", ok(1, {"compute_us": "5", "queue_us": -1.5}) + ok(2) + pong


# ---- client file formats ----
def npy(descr, shape, payload, version=1):
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join("%d," % d for d in shape) if len(shape) != 1 else "%d," % shape[0])
    pre = 10 if version == 1 else 12
    pad = (64 - (pre + len(hdr) + 1) % 64) % 64
    hdr = hdr + " " * pad + "\n"
    ln = struct.pack("<H", len(hdr)) if version == 1 else struct.pack("<I", len(hdr))
    return b"\x93NUMPY" + bytes([version, 0]) + ln + hdr.encode() + payload


def wav(samples, rate=16000, channels=1, bits=16):
    data = struct.pack("<%dh" % len(samples), *samples)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8,
                      channels * bits // 8, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 4) + b"INFO"
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def io_seeds():
    yield "npy-f4", npy("<f4", [2, 3], struct.pack("<6f", *range(6)))
    yield "npy-i1", npy("|i1", [5], bytes(range(5)))
    yield "npy-u1-0d", npy("|u1", [], b"\x07")
    yield "npy-i8", npy("<i8", [1, 2], struct.pack("<2q", 1, -1), version=2)
    yield "npy-i4-v3", npy("<i4", [0, 4], b"", version=3)
    yield "json-2d", b"[[1, 2.5, -3e2], [0, 1e-3, 4]]"
    yield "json-scalarish", b" [ 1 ] "
    yield "json-deep", b"[[[[[[1,2]]]]]]"
    yield "json-empty", b"[[], []]"
    yield "wav-pcm16", wav([0, 1000, -1000, 32767, -32768, 5])
    yield "wav-empty", wav([])
    for name in os.listdir(FIX):
        p = os.path.join(FIX, name)
        if name.endswith(".npy") and os.path.getsize(p) <= 1024:
            yield "fixture-" + name, open(p, "rb").read()


def config_seeds():
    yield "keys", (b"# dynqd.conf\nsocket = /run/dynq/dynqd.sock\nmodels_dir = \"/var/lib/dynq\"\n"
                   b"workers = 2\nqueue = 64\nmax_frame = 64M  # bytes\nmax_depth = 32\n"
                   b"max_elems = 1M\nlog_level = debug\nlog_rate = 0\nwatchdog = no\n"
                   b"admin_group = dynq\nbatch_max = 4\nbatch_delay_us = 200\n")
    yield "batch", (b"batch_max = 8\n\n[batch.vad]\nmax_batch = 16\nmax_delay_us = 500\n"
                    b"axes = input:0, state:1, output:0, stateN:1\n; comment\n"
                    b"[ batch.mlp ]\nmax_batch = 1\n")
    yield "errors", b"workers = -1\n[batch]\nnope\n"
    yield "sizes", b"max_output = 4096\nmax_shm_bytes = 1G\nmax_tensor_elems = 2G\ninline_max_us=10\n"


def onnx_seeds():
    for name in sorted(os.listdir(FIX)):
        p = os.path.join(FIX, name)
        if name.endswith(".onnx") and os.path.getsize(p) <= 12800:  # logmel, rnn_plain_*
            yield name, open(p, "rb").read()


def model_seeds(build):
    q = os.path.join(build, "models", "dynq-quantize")
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in onnx_seeds():
            if name.startswith("bad_") or "_bad_" in name or name == "unsupported.onnx":
                continue
            for flags, suffix in (([], ""), (["--fp32"], "-fp32"), (["--no-reference"], "-noref")):
                out = os.path.join(tmp, "m.dynq")
                r = subprocess.run([q] + flags + [os.path.join(FIX, name), out],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if r.returncode == 0 and os.path.getsize(out) <= 24576:
                    yield name[:-5] + suffix + ".dynq", open(out, "rb").read()


def write(target, seeds):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    # the generated seeds are replaced; "regress-*" files are committed
    # by hand (a finding's reproducer) and stay
    for name in os.listdir(d):
        if not name.startswith("regress-"):
            os.remove(os.path.join(d, name))
    n = 0
    for name, data in seeds:
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        n += 1
    print("%-18s %d seeds" % (target, n))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    targets = {
        "fuzz-scan-rpc": rpc_seeds,
        "fuzz-npy-json-wav": io_seeds,
        "fuzz-config": config_seeds,
        "fuzz-onnx": onnx_seeds,
        "fuzz-model": lambda: model_seeds(sys.argv[1]),
        "fuzz-client": client_seeds,
    }
    for name in sys.argv[2:] or targets:
        if name not in targets:
            sys.exit("unknown target %s (one of %s)" % (name, " ".join(targets)))
        write(name, targets[name]())


if __name__ == "__main__":
    main()
