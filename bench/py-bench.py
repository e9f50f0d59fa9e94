#!/usr/bin/python3
"""py-bench: the Python client (package dynq) next to libdynqclient, in one run.

    PYTHONPATH=build/client/python /usr/bin/python3 bench/py-bench.py [BUILD_DIR] [--rounds N]

1. infer [1, 768] round trip p50 on bench/make_linear.py's Linear: the Python
   client, and libdynqclient through bench/ipc-bench --latency-only (which
   starts its own dynqd with the same model), in alternating rounds so both
   see the same machine load; the ratio of the medians (target <= 3).
2. a 10 MB float32 tensor through an Identity model, inline (10 MB each way
   on the socket) vs shared memory (input by reference, output written into
   the region): p50 of each and the speed-up (target >= 5).
Prints one line per figure.  A benchmark, not a test: figures depend on the load.
"""
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def build_dir():
    args = [a for a in sys.argv[1:] if not a.startswith("--") and not a.isdigit()]
    return os.path.abspath(args[0] if args else os.path.join(HERE, "..", "build"))


def opt_rounds():
    if "--rounds" in sys.argv:
        return int(sys.argv[sys.argv.index("--rounds") + 1])
    return 3


def make_models(tmp, build):
    import onnx
    from onnx import TensorProto, helper
    models = os.path.join(tmp, "models")
    os.mkdir(models)
    lin = os.path.join(tmp, "linear.onnx")
    subprocess.run([sys.executable, os.path.join(HERE, "make_linear.py"), lin], check=True)
    ident = os.path.join(tmp, "ident.onnx")
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "ident",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "n"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "n"])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), ident)
    q = os.path.join(build, "models", "dynq-quantize")
    for src, name in ((lin, "linear"), (ident, "ident")):
        subprocess.run([q, src, os.path.join(models, name + ".dynq")], check=True,
                       stdout=subprocess.DEVNULL)
    return models


def start_dynqd(build, models, sock):
    proc = subprocess.Popen([os.path.join(build, "daemon", "dynqd"), "--socket", sock,
                             "--models", models, "--workers", "2"],
                            stderr=subprocess.DEVNULL)
    for _ in range(2000):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(sock)
            return proc
        except OSError:
            time.sleep(0.01)
        finally:
            s.close()
    proc.kill()
    raise SystemExit("dynqd did not start")


def p50_us(f, n, warm=200):
    for _ in range(warm):
        f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e6


def c_client_p50(build, models):
    out = subprocess.run([os.path.join(build, "bench", "ipc-bench"), "--dynqd",
                          os.path.join(build, "daemon", "dynqd"), "--models", models,
                          "--latency-only", "--seconds", "0.5"],
                         check=True, capture_output=True, text=True).stdout
    spin0 = re.search(r"spin 0: .*dynq_infer \[1,768\] p50 ([\d.]+) us", out)
    spin = re.search(r"spin \d+ us: .*dynq_infer \[1,768\] p50 ([\d.]+) us", out)
    if not spin0 or not spin:
        raise SystemExit("could not read ipc-bench's output:\n" + out)
    return float(spin0.group(1)), float(spin.group(1))


def main():
    build = build_dir()
    sys.path.insert(0, os.path.join(build, "client", "python"))
    import dynq

    tmp = tempfile.mkdtemp(prefix="py-bench.")
    proc = None
    try:
        models = make_models(tmp, build)
        sock = os.path.join(tmp, "dynqd.sock")
        proc = start_dynqd(build, models, sock)
        c = dynq.Client(sock)
        x = np.random.default_rng(1).standard_normal((1, 768)).astype(np.float32)
        py, c0, cs = [], [], []
        for _ in range(opt_rounds()):
            a, b = c_client_p50(build, models)
            c0.append(a)
            cs.append(b)
            py.append(p50_us(lambda: c.infer("linear", {"x": x}), 3000))
        pm, c0m, csm = statistics.median(py), statistics.median(c0), statistics.median(cs)
        print(f"infer [1,768] round trip p50: python {pm:.1f} us "
              f"(rounds {', '.join(f'{v:.1f}' for v in py)})")
        print(f"  libdynqclient spin 0: {c0m:.1f} us, spin 50 us: {csm:.1f} us "
              f"(rounds {', '.join(f'{v:.1f}' for v in cs)})")
        print(f"  python / libdynqclient (spin 50): {pm / csm:.2f}x; "
              f"python / libdynqclient (spin 0): {pm / c0m:.2f}x (target <= 3x)")

        n = (10 << 20) // 4
        big = np.random.default_rng(2).standard_normal((1, n)).astype(np.float32)
        inline = p50_us(lambda: c.infer("ident", {"x": big}), 15, warm=3)
        with c.shm(2 * big.nbytes) as reg:
            xin = reg.ndarray(big.shape, np.float32, 0)
            xin[:] = big
            yout = reg.ndarray(big.shape, np.float32, big.nbytes)
            shm = p50_us(lambda: c.infer("ident", {"x": xin}, out={"y": yout}), 15, warm=3)
            ok = np.array_equal(yout, big)
        print(f"10 MB float32 tensor round trip p50: inline {inline / 1e3:.2f} ms, "
              f"shm {shm / 1e3:.3f} ms: {inline / shm:.1f}x faster (target >= 5x)"
              f"{'' if ok else '  RESULT MISMATCH'}")
        c.close()
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
