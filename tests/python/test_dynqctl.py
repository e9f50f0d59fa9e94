"""dynqctl's operator-facing behaviour against a real dynqd: typed JSON
inputs and the EDTYPE hint, stream --set for a folded input, --precision and
the header line, hints that name dynqctl commands."""
import os
import shutil
import subprocess
import wave

import numpy as np
import pytest

from conftest import (SRC, as_nobody, build_path, quantize, root_only_socket, start_daemon,
                      stop_daemon)

CHUNK, CONTEXT = 60, 4


def make_stream_onnx(path):
    """A streaming cell with a sample-rate input, as Silero VAD has:
    inputs input [1, 64], state [1, 4], sr int64 scalar;
    y = tanh(input W * (sr / 16000) + state), stateN = y."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(7)
    w = rng.uniform(-0.2, 0.2, size=(CHUNK + CONTEXT, 4)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["xw"]),
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["srf", "inv"], ["scale"]),
        helper.make_node("Mul", ["xw", "scale"], ["xs"]),
        helper.make_node("Add", ["xs", "state"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["output"]),
        helper.make_node("Identity", ["output"], ["stateN"]),
    ]
    g = helper.make_graph(
        nodes, "stream",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, CHUNK + CONTEXT]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(w, "W"),
         numpy_helper.from_array(np.array(1 / 16000, np.float32), "inv")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    onnx.save(m, path)


@pytest.fixture(scope="module")
def ctl_daemon(tmp_path_factory, model_dir):
    d = tmp_path_factory.mktemp("ctl")
    models = d / "models"
    models.mkdir()
    onnx_path = str(d / "stream.onnx")
    make_stream_onnx(onnx_path)
    quantize(onnx_path, str(models / "stream.dynq"))
    quantize(onnx_path, str(models / "stream_sr.dynq"), "--set", "sr=16000")
    shutil.copy(model_dir / "dtypes.dynq", models / "dtypes.dynq")
    # Three INT8 Conv layers and no MatMul/Gemm.
    r = subprocess.run([build_path("models/dynq-quantize"),
                        os.path.join(SRC, "tests", "fixtures", "conv_2d.onnx"),
                        str(models / "conv.dynq")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    conv_summary = r.stdout + r.stderr
    wav = str(d / "tone.wav")
    t = np.arange(16000 // 4)
    pcm = (np.sin(2 * np.pi * 440 * t / 16000) * 12000).astype("<i2")
    with wave.open(wav, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(pcm.tobytes())
    daemon = start_daemon(d, models)
    daemon.wav = wav
    daemon.conv_summary = conv_summary
    yield daemon
    stop_daemon(daemon)


def ctl(daemon, *args):
    r = subprocess.run([build_path("client/dynqctl"), "--socket", daemon.sock, *args],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


def stream_args(daemon, model, *more):
    return ("stream", model, "--input", f"input={daemon.wav}", "--chunk", str(CHUNK),
            "--context", str(CONTEXT), *more)


def test_set_for_a_folded_input_is_ignored_with_a_note(ctl_daemon):
    rc, out, err = ctl(ctl_daemon, *stream_args(ctl_daemon, "stream_sr", "--set", "sr=16000"))
    assert rc == 0, err
    assert "has no input 'sr'" in err and "ignoring --set sr" in err
    rows = [l for l in out.splitlines() if not l.startswith("#")]
    assert len(rows) == (16000 // 4 + CHUNK - 1) // CHUNK
    # The same values as the model that takes sr as an input.
    rc2, out2, err2 = ctl(ctl_daemon, *stream_args(ctl_daemon, "stream", "--set", "sr=16000"))
    assert rc2 == 0 and "note" not in err2, err2
    assert out2.splitlines()[2:] == out.splitlines()[2:]


def test_stream_without_a_scalar_input_says_how_to_give_it(ctl_daemon):
    rc, out, err = ctl(ctl_daemon, *stream_args(ctl_daemon, "stream"))
    assert rc != 0
    assert "missing input 'sr'" in err and "ENOINPUT" in err, err
    assert "--set NAME=VALUE" in err and "--set sr=16000" in err, err


def test_stream_header_and_precision(ctl_daemon):
    rc, out, err = ctl(ctl_daemon, *stream_args(ctl_daemon, "stream", "--set", "sr=16000",
                                                "--precision", "fp32"))
    assert rc == 0, err
    head = out.splitlines()[:2]
    assert head[0].startswith("# stream: input = ") and "precision fp32" in head[0]
    assert "16000 Hz" in head[0] and "chunk 60 + context 4" in head[0] and "'output'" in head[0]
    assert head[1].split() == ["#chunk", "time_s", "values"]
    rc, out8, _ = ctl(ctl_daemon, *stream_args(ctl_daemon, "stream", "--set", "sr=16000"))
    assert "precision int8" in out8.splitlines()[0]
    # JSON lines carry no header.
    rc, js, _ = ctl(ctl_daemon, "--json", *stream_args(ctl_daemon, "stream", "--set", "sr=16000",
                                                      "--precision", "fp32"))
    assert rc == 0 and js.startswith('{"chunk": 0')
    rc, _, err = ctl(ctl_daemon, *stream_args(ctl_daemon, "stream", "--precision", "fp16"))
    assert rc == 2 and "--precision must be int8 or fp32" in err


def test_typed_json_inputs(ctl_daemon):
    big = 9007199254740993  # 2^53 + 1: not representable in float32 or float64
    rc, out, err = ctl(ctl_daemon, "--json", "infer", "dtypes",
                       "--input", "i_float32=[[0.5]]", "--input", "i_int8:int8=[[-128]]",
                       "--input", "i_uint8:uint8=[[255]]", "--input", "i_int32:int32=[[-7]]",
                       "--input", f"i_int64:int64=[[{big}, 3]]")
    assert rc == 0, err
    assert f'"o_int64": {{"dtype": "int64", "shape": [1, 2], "data": [{big}, 3]}}' in out
    assert '"o_uint8": {"dtype": "uint8", "shape": [1, 1], "data": [255]}' in out


def test_edtype_hint_says_how(ctl_daemon):
    rc, _, err = ctl(ctl_daemon, "infer", "dtypes", "--input", "i_float32=[[0.5]]",
                     "--input", "i_int8=[[1]]", "--input", "i_uint8:uint8=[[1]]",
                     "--input", "i_int32:int32=[[1]]", "--input", "i_int64:int64=[[1]]")
    assert rc == 1 and "(EDTYPE)" in err
    assert "hint: JSON inputs are float32 unless typed: --input NAME:int64=VALUE" in err


def test_scalar_input_for_stream_models(ctl_daemon):
    x = ",".join(["0.1"] * (CHUNK + CONTEXT))
    rc, out, err = ctl(ctl_daemon, "infer", "stream", "--input", f"input=[[{x}]]",
                       "--input", "state=[[0,0,0,0]]", "--input", "sr:int64=16000")
    assert rc == 0, err
    assert "output: float32 [1, 4]" in out


def test_compare_takes_typed_inputs_as_its_usage_says(ctl_daemon):
    rc, out, err = ctl(ctl_daemon, "help")
    assert rc == 0, err
    line = [l for l in out.splitlines() if l.lstrip().startswith("compare MODEL")]
    assert line and "--input [NAME[:DTYPE]=]FILE|JSON" in line[0], out
    x = ",".join(["0.1"] * (CHUNK + CONTEXT))
    rc, out, err = ctl(ctl_daemon, "compare", "stream", "--input", f"input=[[{x}]]",
                       "--input", "state=[[0,0,0,0]]", "--input", "sr:int64=16000")
    assert rc == 0, err
    assert out.startswith("output ") and "relL2" in out, out


def test_hints_name_dynqctl_commands(ctl_daemon):
    rc, _, err = ctl(ctl_daemon, "infer", "nope", "--input", "x=[[1]]")
    assert rc == 1 and "hint: 'dynqctl list' shows the loaded models" in err
    rc, _, err = ctl(ctl_daemon, "infer", "stream", "--input", "nope=[[1]]")
    assert rc == 1 and "'dynqctl info MODEL'" in err


def test_admin_and_connect_hints(ctl_daemon, tmp_path):
    # A path refusal is not about who runs dynqctl.
    rc, _, err = ctl(ctl_daemon, "load", "escape", "../stream.dynq")
    assert rc == 1 and "(EDENIED)" in err
    assert "hint: give a path relative to dynqd's model directory" in err
    assert "run as root" not in err
    r = subprocess.run([build_path("client/dynqctl"), "--socket", str(tmp_path / "none.sock"),
                        "status"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "is dynqd running?" in r.stderr
    assert "permission" not in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run dynqctl as another uid")
def test_permission_hint_names_the_sockets_group():
    """A socket dynqctl may not open is named with its real group (it said
    'group dynq' whatever the group was)."""
    with root_only_socket() as (path, group):
        assert group != "dynq"
        r = subprocess.run([build_path("client/dynqctl"), "--socket", path, "ping"],
                           capture_output=True, text=True, timeout=60, preexec_fn=as_nobody)
    assert r.returncode == 1, r.stderr
    assert "Permission denied" in r.stderr, r.stderr
    assert f"the socket belongs to group {group} (mode 0660)" in r.stderr, r.stderr


def test_info_and_list_count_every_quantized_layer(ctl_daemon):
    """A Conv model's INT8 layers count as quantized, as dynq-quantize's
    summary counts them (model.info counted MatMul/Gemm only: '0 quantized')."""
    import re
    m = re.search(r"(\d+) linear layers, (\d+) quantized", ctl_daemon.conv_summary)
    assert m, ctl_daemon.conv_summary
    want = int(m.group(2))
    assert want == 3
    rc, out, err = ctl(ctl_daemon, "info", "conv")
    assert rc == 0, err
    assert f"({want} quantized)" in out, out
    rc, out, err = ctl(ctl_daemon, "list")
    assert rc == 0, err
    row = [l.split() for l in out.splitlines() if l.startswith("conv ")]
    assert row and row[0][-1] == str(want), out
