"""Shared-memory tensors: sealed memfds, references, in-place outputs, errors."""
import fcntl
import mmap
import os

import numpy as np
import pytest

import dynq

WIRE = ["float32", "int8", "uint8", "int32", "int64"]


def test_shm_input_and_output(client):
    x = np.random.default_rng(4).standard_normal((2, 768)).astype(np.float32)
    want = client.infer("linear", {"x": x})["y"]
    with client.shm(4 * 768 * 4) as reg:
        assert reg.size == 4 * 768 * 4 and isinstance(reg.id, int)
        xin = reg.ndarray((2, 768), np.float32, 0)
        xin[:] = x
        yout = reg.ndarray((2, 768), np.float32, 2 * 768 * 4)
        r = client.infer("linear", {"x": xin}, out={"y": yout})
        assert r["y"] is yout
        assert np.array_equal(yout, want)
        # Input by reference, output inline.
        assert np.array_equal(client.infer("linear", {"x": xin})["y"], want)
        assert client.stats()["shm_regions"] >= 1


def test_shm_every_dtype_large(client):
    n = (10 << 20) // 8
    with client.shm(24 << 20) as reg:
        inputs, outs, off = {}, {}, 0
        for d in WIRE:
            a = reg.ndarray((1, 1024), d, off)
            a[:] = np.arange(1024) % 100
            inputs[f"i_{d}"] = a
            off += a.nbytes
        big = reg.ndarray((1, n), np.int64, off)
        big[:] = np.arange(n)
        inputs["i_int64"] = big
        out = reg.ndarray((1, n), np.int64, off + big.nbytes)
        r = client.infer("dtypes", inputs, out={"o_int64": out})
        assert r["o_int64"] is out and np.array_equal(out, big)
        assert np.array_equal(r["o_uint8"], np.arange(1024).reshape(1, -1) % 100)


def test_region_closes_and_unregisters(client):
    before = client.stats()["shm_regions"]
    reg = client.shm(4096)
    assert client.stats()["shm_regions"] == before + 1
    rid = reg.id
    reg.close()
    reg.close()  # idempotent
    assert client.stats()["shm_regions"] == before
    with pytest.raises(dynq.ENOREGION):
        client.shm_unregister(rid)
    with pytest.raises(dynq.EINVAL):
        reg.ndarray((1,), np.float32)


def test_unsealed_memfd_is_refused(client):
    fd = os.memfd_create("unsealed", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, 4096)
        with pytest.raises(dynq.ESEAL):
            client.shm_register(fd, 4096)
    finally:
        os.close(fd)
    client.ping()


def test_region_smaller_than_declared(client):
    fd = os.memfd_create("small", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, 4096)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
        with pytest.raises(dynq.DynqError):
            client.shm_register(fd, 8192)
        rid = client.shm_register(fd, 4096)
        # A reference outside the region.
        params = {"model": "linear", "inputs": {"x": {"dtype": "float32", "shape": [1, 768],
                  "shm": {"region": rid, "offset": 4096, "size": 768 * 4}}}}
        with pytest.raises(dynq.DynqError) as ei:
            client.call("infer", params)
        assert ei.value.name in ("EPARAMS", "EDATA", "ELIMIT")
        params["inputs"]["x"]["shm"]["region"] = rid + 1000
        with pytest.raises(dynq.ENOREGION):
            client.call("infer", params)
        client.shm_unregister(rid)
    finally:
        os.close(fd)


def test_local_shm_checks(client):
    with pytest.raises(dynq.EINVAL):
        client.shm(0)
    with pytest.raises(dynq.EINVAL):
        client.shm_register(-1, 4096)
    with pytest.raises(dynq.EPARAMS):
        client.shm_register(0, 0)
    x = np.zeros((1, 768), np.float32)
    with pytest.raises(dynq.EPARAMS, match="out\\['y'\\]"):
        client.infer("linear", {"x": x}, out={"y": np.zeros((1, 768), np.float32)})
    with client.shm(1024) as reg:
        with pytest.raises(dynq.EPARAMS, match="do not fit"):
            reg.ndarray((1, 768), np.float32)
        with pytest.raises(dynq.EPARAMS, match="dtype"):
            reg.ndarray((4,), np.float64)
        with pytest.raises(dynq.EPARAMS):
            reg.ndarray((4,), np.float32, offset=-4)


def test_regions_belong_to_their_connection(daemon):
    with dynq.Client(daemon.sock, timeout=60) as a, dynq.Client(daemon.sock, timeout=60) as b:
        reg = a.shm(768 * 4)
        params = {"model": "linear", "inputs": {"x": {"dtype": "float32", "shape": [1, 768],
                  "shm": {"region": reg.id, "offset": 0, "size": 768 * 4}}}}
        with pytest.raises(dynq.ENOREGION):
            b.call("infer", params)
        a.call("infer", params)
