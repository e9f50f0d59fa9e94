"""Every error name dynqd can put on the wire has an exception class."""
import errno
import os
import re

import numpy as np
import pytest

import dynq
from conftest import SRC

HEADER = os.path.join(SRC, "client", "include", "dynq", "errors.h")
ERRORS_C = os.path.join(SRC, "lib", "errors.c")


def wire_names():
    with open(HEADER, encoding="utf-8") as f:
        own = re.findall(r'X\(\s*(E[A-Z0-9_]+)\s*,\s*(\d+)\s*,\s*([01])\s*,', f.read())
    with open(ERRORS_C, encoding="utf-8") as f:
        sysnames = re.findall(r'\{\s*E[A-Z0-9_]+\s*,\s*"(E[A-Z0-9_]+)"\s*\}', f.read())
    return own, sysnames


def test_every_dynq_error_has_a_class():
    own, _ = wire_names()
    assert len(own) >= 31
    for name, off, retry in own:
        cls = getattr(dynq, name)
        assert dynq.ERRORS[name] is cls
        assert issubclass(cls, dynq.DynqError)
        assert cls.code == -10000 - int(off), name
        assert cls.retryable is (retry == "1"), name
        assert issubclass(cls, dynq.RetryableError) is (retry == "1"), name


def test_every_system_error_name_has_a_class():
    _, sysnames = wire_names()
    assert "ENOENT" in sysnames and "EACCES" in sysnames
    for name in sysnames + ["ESYSTEM"]:
        cls = dynq.ERRORS[name]
        assert issubclass(cls, dynq.DynqError)
        if name != "ESYSTEM":
            assert cls.code == -getattr(errno, name)
    assert dynq.ENOMEM.retryable and dynq.EAGAIN.retryable and not dynq.ENOENT.retryable


def test_no_class_without_a_wire_name():
    own, sysnames = wire_names()
    assert set(dynq.ERRORS) == {n for n, _, _ in own} | set(sysnames) | {"ESYSTEM"}


def test_error_map_becomes_its_class():
    from dynq.client import _server_error
    e = _server_error({"code": -10014, "name": "EOVERLOAD", "message": "queue full",
                       "retryable": True})
    assert type(e) is dynq.EOVERLOAD and e.retryable and e.message == "queue full"
    assert str(e) == "EOVERLOAD: queue full"
    # A name from a newer dynqd: still an error, with its name kept.
    e = _server_error({"code": -10999, "name": "ENEWTHING", "message": "m", "retryable": True})
    assert type(e) is dynq.DynqError and e.name == "ENEWTHING" and e.retryable
    e = _server_error("not a map")
    assert isinstance(e, dynq.ESERVER)


def test_server_error_raises_named_class(client):
    with pytest.raises(dynq.ENOMODEL) as ei:
        client.model_info("no-such-model")
    assert ei.value.name == "ENOMODEL" and not ei.value.retryable
    assert "no-such-model" in ei.value.message
    with pytest.raises(dynq.ENOMETHOD):
        client.call("no.such.method")


def test_deadline_stops_a_running_request(client):
    """timeout_ms ends a request's run, not only its wait: an Einsum over
    1e10 pairs (runlimit_sum.onnx) answers EDEADLINE, retryable, naming the
    node, instead of computing for minutes; the connection serves on."""
    a = np.linspace(0, 1, 100000, dtype=np.float32).reshape(1, -1)
    with pytest.raises(dynq.EDEADLINE) as ei:
        client.infer("pairs", {"a": a, "b": a}, timeout_ms=300)
    assert ei.value.retryable
    assert "node 'pairs' (Einsum): run stopped after" in ei.value.message
    small = np.ones((1, 3), np.float32)
    y = client.infer("pairs", {"a": small, "b": small})["y"]
    assert y.shape == (1, 1) and y[0, 0] == 9.0
