"""Sessions: state kept by dynqd between steps."""
import os

import numpy as np
import pytest

import dynq
from conftest import SRC


def fixture_f32(name, shape):
    return np.fromfile(os.path.join(SRC, "tests", "fixtures", name), dtype="<f4").reshape(shape)


def test_session_recurrence(client):
    xs = fixture_f32("stateful_x.f32", (5, 1, 8))
    ys = fixture_f32("stateful_y.f32", (5, 1, 8))
    with client.session("stateful") as s:
        assert isinstance(s.id, int)
        assert "state" in s.bindings
        for t in range(5):
            r = s.step({"x": xs[t]}, precision="fp32")
            assert np.allclose(r["y"], ys[t], atol=1e-5), t
        # reset: back to the zero state, so step 0 again.
        s.reset()
        assert np.allclose(s.step({"x": xs[0]}, precision="fp32")["y"], ys[0], atol=1e-5)
        sid = s.id
    assert s.closed
    with pytest.raises(dynq.ENOSESSION):
        client.infer(None, {"x": xs[0]}, session=sid)


def test_sessions_are_independent(client):
    xs = fixture_f32("stateful_x.f32", (5, 1, 8))
    ys = fixture_f32("stateful_y.f32", (5, 1, 8))
    with client.session("stateful") as a, client.session("stateful") as b:
        a.step({"x": xs[0]}, precision="fp32")
        a.step({"x": xs[1]}, precision="fp32")
        assert np.allclose(b.step({"x": xs[0]}, precision="fp32")["y"], ys[0], atol=1e-5)
        assert np.allclose(a.step({"x": xs[2]}, precision="fp32")["y"], ys[2], atol=1e-5)


def test_session_errors(client):
    with pytest.raises(dynq.ENOMODEL):
        client.session("nope")
    with pytest.raises(dynq.ENOINPUT):
        client.session("stateful", bindings={"nope": "y"})
    with pytest.raises(dynq.ENOSESSION):
        client.call("session.reset", {"session": 987654321})
