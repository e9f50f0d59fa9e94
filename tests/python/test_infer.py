"""infer and the informational calls against a real dynqd."""
import numpy as np
import pytest

import dynq

WIRE = ["float32", "int8", "uint8", "int32", "int64"]


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_linear_int8_and_fp32(client, linear_ref):
    w, b = linear_ref
    x = np.random.default_rng(1).standard_normal((3, 768)).astype(np.float32)
    ref = x.astype(np.float64) @ w + b
    r = client.infer("linear", {"x": x})
    assert set(r) == {"y"} and r["y"].dtype == np.float32 and r["y"].shape == (3, 768)
    assert rel_l2(r["y"], ref) < 0.02
    assert isinstance(r.compute_us, int) and r.compute_us >= 0
    f = client.infer("linear", {"x": x}, precision="fp32")
    assert rel_l2(f["y"], ref) < 1e-5
    i8 = client.infer("linear", {"x": x}, precision="int8", timeout_ms=10000)
    assert np.array_equal(i8["y"], r["y"])


@pytest.mark.parametrize("dtype", WIRE)
def test_round_trip_every_dtype(client, dtype):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x = np.random.default_rng(2).standard_normal((4, 5)).astype(dt)
    else:
        info = np.iinfo(dt)
        x = np.array([[info.min, info.max, 0, 1, -1 if info.min < 0 else 7]] * 4, dtype=dt)
        x[1:] = np.random.default_rng(3).integers(info.min, info.max, size=(3, 5), dtype=dt,
                                                  endpoint=True)
    inputs = {f"i_{d}": np.zeros((4, 5), d) for d in WIRE}
    inputs[f"i_{dtype}"] = x
    r = client.infer("dtypes", inputs)
    assert r[f"o_{dtype}"].dtype == dt
    assert np.array_equal(r[f"o_{dtype}"], x)


def test_round_trip_empty_and_noncontiguous(client):
    # Empty tensors encode (a zero-length bin); dynqd takes symbolic dims >= 1.
    inputs = {f"i_{d}": np.zeros((0, 3), d) for d in WIRE}
    with pytest.raises(dynq.ESHAPE, match=r"\[0, 3\]"):
        client.infer("dtypes", inputs)
    big = np.arange(60, dtype=np.int64).reshape(6, 10)
    inputs = {f"i_{d}": np.zeros((3, 5), d) for d in WIRE}
    inputs["i_int64"] = big[::2, ::2]                  # strided view
    inputs["i_float32"] = np.ones((3, 5), ">f4") * 2.5  # big-endian
    r = client.infer("dtypes", inputs)
    assert np.array_equal(r["o_int64"], big[::2, ::2])
    assert np.array_equal(r["o_float32"], np.full((3, 5), 2.5, np.float32))


def test_lists_become_float32_and_int64(client):
    inputs = {f"i_{d}": np.zeros((1, 2), d) for d in WIRE}
    inputs["i_float32"] = [[1.5, -2.0]]
    inputs["i_int64"] = [[7, -9]]
    r = client.infer("dtypes", inputs)
    assert r["o_float32"].tolist() == [[1.5, -2.0]] and r["o_int64"].tolist() == [[7, -9]]


def test_local_input_checks(client):
    with pytest.raises(dynq.EDTYPE, match="float64"):
        client.infer("linear", {"x": np.zeros((1, 768))})
    with pytest.raises(dynq.EDTYPE):
        client.infer("linear", {"x": np.zeros((1, 768), np.float16)})
    with pytest.raises(dynq.ESHAPE, match="rank 9"):
        client.infer("linear", {"x": np.zeros((1,) * 9, np.float32)})
    with pytest.raises(dynq.EPARAMS, match="precision"):
        client.infer("linear", {"x": np.zeros((1, 768), np.float32)}, precision="fp16")
    with pytest.raises(dynq.EPARAMS):
        client.infer("linear", {"": np.zeros((1, 768), np.float32)})
    with pytest.raises(dynq.EPARAMS):
        client.infer("linear", [np.zeros((1, 768), np.float32)])
    with pytest.raises(dynq.EPARAMS, match="timeout_ms"):
        client.infer("linear", {"x": np.zeros((1, 768), np.float32)}, timeout_ms=-1)


def test_server_errors(client):
    x = np.zeros((1, 768), np.float32)
    with pytest.raises(dynq.ENOMODEL):
        client.infer("nope", {"x": x})
    with pytest.raises(dynq.ENOINPUT):
        client.infer("linear", {"nope": x})
    with pytest.raises(dynq.ESHAPE):
        client.infer("linear", {"x": np.zeros((1, 767), np.float32)})
    with pytest.raises(dynq.EDTYPE):
        client.infer("linear", {"x": np.zeros((1, 768), np.int32)})
    with pytest.raises(dynq.ENOREF):
        client.infer("linear_noref", {"x": x}, precision="fp32")
    # The connection is still usable after errors.
    client.ping()


def test_info_calls(client, model_dir):
    info = client.server_info()
    assert info["protocol"] == 1 and info["workers"] >= 1
    names = {m["name"] for m in client.models()}
    assert {"linear", "dtypes", "stateful", "linear_noref"} <= names
    mi = client.model_info("linear")
    assert mi["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 768]}]
    assert mi["has_reference"] is True
    assert client.model_info("linear_noref")["has_reference"] is False
    h = client.health()
    assert h["live"] and h["ready"] and h["models"] >= 4
    assert h["quality"] == []  # no shadow alert configured
    client.infer("linear", {"x": np.zeros((1, 768), np.float32)})
    st = client.stats()
    assert st["models"]["linear"]["requests"] >= 1 and st["connections"] >= 1


def test_admin_load_unload_reload(client, model_dir):
    import shutil
    shutil.copy(model_dir / "linear.dynq", model_dir / "copy.dynq")
    try:
        v = client.load("lin_copy", "copy.dynq")
        assert v >= 1
        x = np.ones((1, 768), np.float32)
        assert np.array_equal(client.infer("lin_copy", {"x": x})["y"],
                              client.infer("linear", {"x": x})["y"])
        assert client.reload("lin_copy") == v + 1
        client.unload("lin_copy")
        with pytest.raises(dynq.ENOMODEL):
            client.infer("lin_copy", {"x": x})
        with pytest.raises(dynq.EDENIED):
            client.load("escape", "../linear.dynq")
    finally:
        (model_dir / "copy.dynq").unlink()
