#!/usr/bin/python3
"""Side-by-side A/B of the headline benchmarks for two build trees.

    /usr/bin/python3 bench/ab.py OLD_BUILD NEW_BUILD [--rounds R] [--quick]

Each round runs every figure once per build, alternating which build goes
first, so drifting load on a shared machine lands on both sides alike. It
prints per figure the median of each side and the median of the per-round
ratios new/old (< 1 is faster for times, > 1 is faster for rates), with the
ratio's range.  Each build quantizes its own copies of the models with its
own dynq-quantize.  Engine benches are pinned to CPU 1; the request-path
ones (ipc-bench) use both CPUs, as dynqd does.  --ipc-bench BIN runs the same
ipc-bench against both builds' dynqd.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SILERO = os.path.expanduser("~/.cache/dynq/silero_vad_v5.onnx")
CLIP = os.path.join(SRC, "tests/fixtures/vad/speech.wav")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit("ab: %s failed (%d):\n%s" % (" ".join(cmd), r.returncode, r.stderr[-2000:]))
    return r.stdout


def prepare(build, tmp):
    """Models for one build, made by its own quantizer."""
    d = os.path.join(tmp, os.path.basename(os.path.abspath(build)) + "-%d" % abs(hash(build)))
    os.makedirs(os.path.join(d, "m"), exist_ok=True)
    q = os.path.join(build, "models/dynq-quantize")
    run([q, os.path.join(tmp, "lin.onnx"), os.path.join(d, "m/linear.dynq")])
    vad = None
    if os.path.exists(SILERO):
        vad = os.path.join(d, "vad.dynq")
        run([q, "--set", "sr=16000", SILERO, vad])
    return {"models": os.path.join(d, "m"), "vad": vad}


def figures(build, models, quick, ipc_bench=None):
    out = {}
    b = lambda name: os.path.join(build, "bench", name)
    pin = ["taskset", "-c", "1"]
    shapes = ["64x768x768", "256x768x3072"]
    for line in run(pin + [b("dynq-bench"), "gemm", "--json"] +
                    sum((["--shape", s] for s in shapes), [])).splitlines():
        j = json.loads(line)
        out["gemm %dx%dx%d int8 us" % (j["m"], j["k"], j["n"])] = j["int8_us"]
    j = json.loads(run(pin + [b("rnn-bench"), "--op", "lstm", "--input", "256", "--hidden", "512",
                              "--seq", "50", "--only", "int8", "--json"]).strip().splitlines()[-1])
    out["lstm 256->512 seq50 int8 ms"] = j["int8_ms"]
    if models["vad"]:
        for line in run(pin + [b("vad-bench"), "--model", models["vad"], "--wav", CLIP,
                               "--passes", "2", "--batch", "32", "--json"]).splitlines():
            j = json.loads(line)
            if j.get("bench") == "silero-vad-chunk" and "INT8" in j["path"]:
                key = "vad chunk int8 us" if "batch" not in j["path"] else "vad chunk int8 batch32 us/chunk"
                out[key] = j["median_us"]
    txt = run([ipc_bench or b("ipc-bench"), "--dynqd", os.path.join(build, "daemon/dynqd"), "--models",
               models["models"], "--seconds", "1" if quick else "2"])
    pats = {
        "ping p50 us (back to back)": r"back to back.*dynq_ping p50 ([\d.]+)",
        "infer [1,768] p50 us (spin 50)": r"spin 50 us: dynq_ping p50 [\d.]+ us; dynq_infer \[1,768\] p50 ([\d.]+)",
        "64 clients req/s (raw, batching off)": r"throughput, 64 clients, batching off: (\d+)",
        "bare 64-pair socket ping-pong round trips/s": r"bare socketpair ping-pong, 64 pairs, [\d/]+ bytes: (\d+)",
        "64 clients % of bare ping-pong": r"64 clients, batching off: .*; (\d+)% of the bare",
        "pipelined 4x32 req/s": r"pipelined 4 conns x 32 in flight .*: (\d+) req/s",
        "pipelined 4x32 % of engine": r"pipelined 4x32: (\d+)% of its rate",
        "engine in-process runs/s": r"engine in-process, 2 threads: (\d+)",
        "dynqd CPU us/req (64 raw clients)": r"64 clients, batching off: \d+ req/s \(dynqd CPU ([\d.]+)",
    }
    for k, p in pats.items():
        m = re.search(p, txt)
        if m:
            out[k] = float(m.group(1))
    return out


def callgrind(build, models):
    """Instruction counts of the engine benches: repeatable on a loaded machine."""
    out = {}
    b = lambda name: os.path.join(build, "bench", name)
    cg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    cmds = {"lstm 256->512 seq50 int8, 5 iters": [b("rnn-bench"), "--op", "lstm", "--input", "256",
                                                   "--hidden", "512", "--seq", "50", "--only", "int8",
                                                   "--iters", "5"]}
    if models["vad"]:
        # The first second of the clip: valgrind runs ~50x slower than the CPU.
        import wave
        short = os.path.join(os.path.dirname(models["vad"]), "short.wav")
        with wave.open(CLIP) as w, wave.open(short, "wb") as o:
            o.setparams(w.getparams())
            o.writeframes(w.readframes(w.getframerate()))
        cmds["vad-bench 1 s of the clip, 1 pass, batch 32"] = [b("vad-bench"), "--model", models["vad"],
                                                          "--wav", short, "--passes", "1", "--batch", "32"]
    for k, cmd in cmds.items():
        r = subprocess.run(cg + cmd, capture_output=True, text=True)
        m = re.search(r"Collected : (\d+)", r.stderr)
        if not m:
            sys.exit("ab: callgrind gave no count for %s:\n%s" % (k, r.stderr[-2000:]))
        out[k + " (M instr)"] = int(m.group(1)) / 1e6
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="1 s ipc-bench phases")
    ap.add_argument("--callgrind", action="store_true",
                    help="also count the engine benches' instructions (once per build)")
    ap.add_argument("--ipc-bench", metavar="BIN",
                    help="one ipc-bench binary for both sides (each still starts its own dynqd), "
                         "e.g. when OLD's ipc-bench lacks a figure")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dynq-ab.")
    run(["/usr/bin/python3", os.path.join(SRC, "bench/make_linear.py"), os.path.join(tmp, "lin.onnx")])
    builds = {"old": a.old, "new": a.new}
    models = {k: prepare(v, tmp) for k, v in builds.items()}
    res = {"old": [], "new": []}
    for r in range(a.rounds):
        order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
        for side in order:
            res[side].append(figures(builds[side], models[side], a.quick, a.ipc_bench))
        print("round %d/%d done" % (r + 1, a.rounds), file=sys.stderr)
    if a.callgrind:
        print("| figure (callgrind) | old | new | new/old |")
        print("|---|---|---|---|")
        c = {side: callgrind(builds[side], models[side]) for side in ("old", "new")}
        for k in c["old"]:
            print("| %s | %.1f | %.1f | %.4f |" % (k, c["old"][k], c["new"][k], c["new"][k] / c["old"][k]))
        print()
    keys = [k for k in res["old"][0] if all(k in x for x in res["old"] + res["new"])]
    print("| figure | old median | new median | new/old (median of rounds) | range |")
    print("|---|---|---|---|---|")
    for k in keys:
        o = [x[k] for x in res["old"]]
        n = [x[k] for x in res["new"]]
        ratios = [nn / oo for nn, oo in zip(n, o) if oo]
        print("| %s | %.4g | %.4g | %.3f | %.3f–%.3f |" % (
            k, statistics.median(o), statistics.median(n), statistics.median(ratios),
            min(ratios), max(ratios)))


if __name__ == "__main__":
    main()
