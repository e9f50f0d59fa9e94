"""pytest fixtures: a real dynqd from the build directory serving models made
with dynq-quantize, as tests/testutil.c does for the C suites.

meson test sets DYNQ_SRCDIR and DYNQ_BUILDDIR (and PYTHONPATH to the
package copy in the build directory); run by hand with

    PYTHONPATH=build/client/python /usr/bin/python3 -m pytest tests/python
"""
import contextlib
import grp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

SRC = os.environ.get("DYNQ_SRCDIR") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.environ.get("DYNQ_BUILDDIR") or os.path.join(SRC, "build")
sys.path.insert(0, os.path.join(BUILD, "client", "python"))

import dynq  # noqa: E402


def build_path(rel):
    p = os.path.join(BUILD, rel)
    if not os.path.exists(p):
        pytest.fail(f"{p} is missing: build first (ninja -C {BUILD})")
    return p


def quantize(onnx_path, out, *args):
    r = subprocess.run([build_path("models/dynq-quantize"), *args, onnx_path, out],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"dynq-quantize {onnx_path} failed:\n{r.stdout}{r.stderr}"


def make_dtypes_onnx(path):
    """One Identity per wire dtype: i_<dtype> [batch, n] -> o_<dtype>."""
    import onnx
    from onnx import TensorProto, helper
    kinds = {"float32": TensorProto.FLOAT, "int8": TensorProto.INT8,
             "uint8": TensorProto.UINT8, "int32": TensorProto.INT32,
             "int64": TensorProto.INT64}
    nodes, ins, outs = [], [], []
    for name, tp in kinds.items():
        nodes.append(helper.make_node("Identity", [f"i_{name}"], [f"o_{name}"], name=f"id_{name}"))
        ins.append(helper.make_tensor_value_info(f"i_{name}", tp, ["batch", f"n_{name}"]))
        outs.append(helper.make_tensor_value_info(f"o_{name}", tp, ["batch", f"n_{name}"]))
    graph = helper.make_graph(nodes, "dtypes", ins, outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="dynq tests/python")
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    onnx_dir = tmp_path_factory.mktemp("onnx")
    lin = str(onnx_dir / "linear.onnx")
    subprocess.run([sys.executable, os.path.join(SRC, "bench", "make_linear.py"), lin],
                   check=True, capture_output=True)
    quantize(lin, str(d / "linear.dynq"))
    quantize(lin, str(d / "linear_noref.dynq"), "--no-reference")
    dt = str(onnx_dir / "dtypes.onnx")
    make_dtypes_onnx(dt)
    quantize(dt, str(d / "dtypes.dynq"))
    quantize(os.path.join(SRC, "tests", "fixtures", "stateful.onnx"), str(d / "stateful.dynq"))
    quantize(os.path.join(SRC, "tests", "fixtures", "runlimit_sum.onnx"), str(d / "pairs.dynq"))
    return d


class Daemon:
    def __init__(self, sock, log, proc, models):
        self.sock, self.log, self.proc, self.models = sock, log, proc, models

    def log_text(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()


@contextlib.contextmanager
def root_only_socket():
    """A listening socket root:root 0660 in a directory anyone may search
    (pytest's own are 0700), for clients run as nobody: yields (path,
    group name)."""
    d = tempfile.mkdtemp(prefix="dynq-perm-", dir="/tmp")
    s = socket.socket(socket.AF_UNIX)
    try:
        os.chmod(d, 0o755)
        path = os.path.join(d, "s.sock")
        s.bind(path)
        s.listen(1)
        os.chown(path, 0, 0)
        os.chmod(path, 0o660)
        yield path, grp.getgrgid(0).gr_name
    finally:
        s.close()
        shutil.rmtree(d)


def as_nobody():
    """preexec_fn: drop to uid/gid 65534 with no supplementary groups."""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def start_daemon(tmp, models, *extra):
    sock = str(tmp / "dynqd.sock")
    log = str(tmp / "dynqd.log")
    with open(log, "wb") as lf:
        proc = subprocess.Popen([build_path("daemon/dynqd"), "--socket", sock, "--models",
                                 str(models), *extra], stdout=lf, stderr=lf)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log, encoding="utf-8", errors="replace") as f:
                pytest.fail(f"dynqd exited with {proc.returncode}:\n{f.read()}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(sock)
            return Daemon(sock, log, proc, models)
        except OSError:
            time.sleep(0.01)
        finally:
            s.close()
    proc.kill()
    proc.wait()
    pytest.fail("dynqd did not listen within 20 s")


def stop_daemon(d):
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(30)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait()
    assert d.proc.returncode == 0, f"dynqd exited with {d.proc.returncode}:\n{d.log_text()}"


@pytest.fixture(scope="session")
def daemon(tmp_path_factory, model_dir):
    d = start_daemon(tmp_path_factory.mktemp("dynqd"), model_dir)
    yield d
    stop_daemon(d)


@pytest.fixture
def client(daemon):
    with dynq.Client(daemon.sock, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def linear_ref():
    """W and b of bench/make_linear.py's model (same seed), for numpy references."""
    K = N = 768
    rng = np.random.default_rng(20240607)
    w = rng.uniform(-1 / np.sqrt(K), 1 / np.sqrt(K), size=(K, N)).astype(np.float32)
    b = rng.uniform(-1 / np.sqrt(K), 1 / np.sqrt(K), size=(N,)).astype(np.float32)
    return w, b
