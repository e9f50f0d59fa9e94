"""A hostile or broken server: the Python client turns every bad answer
into a clear exception, never a hang (the client's timeout bounds every
wait here) and never a crash, and keeps the connection usable when the
stream of frames was still whole (the C client's twin is
tests/test-client-wire.c)."""
import os
import socket
import struct
import threading

import msgpack
import numpy as np
import pytest

import dynq
from conftest import BUILD  # noqa: F401  (puts the package on sys.path)


def mp(o):
    return msgpack.packb(o, use_bin_type=True)


def good(msgid):
    y = np.array([[0.5, -1.0]], np.float32)
    return mp([1, msgid, None, {"outputs": {"y": {"dtype": "float32", "shape": [1, 2],
                                                  "data": y.tobytes()}},
                                "compute_us": 3}])


def result_head(msgid):
    return b"\x94\x01" + mp(msgid) + b"\xc0"


def bad_output(msgid, t):
    return mp([1, msgid, None, {"outputs": {"y": t}}])


class FakeServer:
    """Accepts one connection; answers the n-th request with answers[n](msgid):
    bytes, (bytes, "close") to hang up after them, None to hang up at once,
    or "silent" to send nothing and keep the connection open."""

    def __init__(self, path, answers):
        self.path = path
        self.answers = answers
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(path)
        self.lsock.listen(1)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            self.serve()
        except OSError:
            pass  # the client hung up first (it may, after a bad answer)

    def serve(self):
        conn, _ = self.lsock.accept()
        un = msgpack.Unpacker(raw=False)
        n = 0
        with conn:
            while n < len(self.answers):
                data = conn.recv(1 << 16)
                if not data:
                    return
                un.feed(data)
                for req in un:
                    a = self.answers[n](req[1])
                    n += 1
                    if isinstance(a, tuple):
                        conn.sendall(a[0])
                        a = None
                    if a is None:
                        conn.shutdown(socket.SHUT_RDWR)
                        return
                    if a != "silent":
                        conn.sendall(a)
            # drain until the client hangs up, so a silent answer stays silent
            while conn.recv(1 << 16):
                pass

    def close(self):
        self.lsock.close()


X = {"x": np.ones((1, 2), np.float32)}

# (what, answer, exception class, text in the message, stream still whole)
CASES = [
    ("truncated, then hang-up", lambda i: (good(i)[:-3], "close"), dynq.ECLOSED, "closed", False),
    ("hang-up", lambda i: None, dynq.ECLOSED, "closed", False),
    ("a map, not an array", lambda i: mp({"id": i}), dynq.EPROTO, "malformed response", False),
    ("an array of three", lambda i: mp([1, i, None]), dynq.EPROTO, "malformed response", False),
    ("msgid a string", lambda i: mp([1, str(i), None, {}]), dynq.EPROTO, "malformed response",
     False),
    # msgpack's unpacker checks a length when the bytes are in, so the
    # client waits for them (up to its timeout; past MAX_FRAME buffered it
    # gives up, test_answer_over_max_frame), unlike the C client's scanner
    ("bin of 4 GiB declared, nothing follows",
     lambda i: result_head(i) + b"\x81\xa7outputs\xc6\xff\xff\xff\xff",
     dynq.ETIMEDOUT, "no answer", True),
    ("array count 2^32 - 1", lambda i: result_head(i) + b"\xdd\xff\xff\xff\xff\x01",
     (dynq.EPROTO, dynq.ETOOBIG), "", False),
    ("4000 nested arrays", lambda i: result_head(i) + b"\x91" * 4000 + b"\xc0",
     (dynq.EPROTO, dynq.ETOOBIG), "", False),
    ("byte 0xc1", lambda i: result_head(i) + b"\xc1", dynq.EPROTO, "undecodable", False),
    ("shape product overflows",
     lambda i: bad_output(i, {"dtype": "float32", "shape": [1 << 40] * 3, "data": b""}),
     dynq.EPROTO, "output 'y'", True),
    ("int64 [2] in 8 bytes",
     lambda i: bad_output(i, {"dtype": "int64", "shape": [2], "data": b"12345678"}),
     dynq.EPROTO, "8 bytes of data", True),
    ("negative dim", lambda i: bad_output(i, {"dtype": "int8", "shape": [-1], "data": b""}),
     dynq.EPROTO, "'shape'[0]", True),
    ("rank 9", lambda i: bad_output(i, {"dtype": "int8", "shape": [1] * 9, "data": b"x"}),
     dynq.EPROTO, "at most 8 dims", True),
    ("unknown dtype", lambda i: bad_output(i, {"dtype": "float128", "shape": [1], "data": b""}),
     dynq.EPROTO, "unknown dtype", True),
    ("data a string", lambda i: bad_output(i, {"dtype": "int8", "shape": [1], "data": "x"}),
     dynq.EPROTO, "'data' is not bin", True),
    ("output not a map", lambda i: bad_output(i, [1, 2]), dynq.EPROTO, "not a map", True),
    ("shm naming no region",
     lambda i: bad_output(i, {"dtype": "int8", "shape": [1],
                              "shm": {"region": 9, "offset": 0, "size": 1}}),
     dynq.EPROTO, "names no region", True),
    ("result nil", lambda i: mp([1, i, None, None]), dynq.EPROTO, "'outputs'", True),
    ("error a string", lambda i: mp([1, i, "it broke", None]), dynq.ESERVER, "it broke", True),
    ("error name unknown",
     lambda i: mp([1, i, {"code": -10999, "name": "ENEWTHING", "message": "newer"}, None]),
     dynq.DynqError, "newer", True),
    ("msgid 0 error",
     lambda i: mp([1, 0, {"code": -10001, "name": "EPROTO", "message": "no sense"}, None]),
     dynq.EPROTO, "no sense", False),
    ("unknown msgid, notification, duplicate",
     lambda i: good(i + 1000) + mp([2, "event", []]) + good(i) + good(i), None, None, True),
    ("silence", lambda i: "silent", dynq.ETIMEDOUT, "no answer", True),
]


@pytest.mark.parametrize("what,answer,exc,needle,whole", CASES, ids=[c[0] for c in CASES])
def test_bad_answer(tmp_path, what, answer, exc, needle, whole):
    path = str(tmp_path / "fake.sock")
    srv = FakeServer(path, [answer, good])
    try:
        c = dynq.Client(path, timeout=3)
        if exc is None:
            r = c.infer("m", X)
            assert r["y"].shape == (1, 2) and r.compute_us == 3
        else:
            with pytest.raises(exc) as ei:
                c.infer("m", X)
            assert needle in str(ei.value), str(ei.value)
        if whole and exc is not dynq.ETIMEDOUT:
            r = c.infer("m", X)              # the next request is answered
            assert r["y"][0, 1] == -1.0
        elif not whole:
            with pytest.raises(dynq.DynqError):
                c.infer("m", X)              # the stream is gone: refused at once
        c.close()
    finally:
        srv.close()


def test_answer_over_max_frame(tmp_path, monkeypatch):
    """An answer bigger than the client buffers is ETOOBIG, not memory
    without bound (MAX_FRAME made small so the test sends little)."""
    import dynq.client
    monkeypatch.setattr(dynq.client, "MAX_FRAME", 1 << 16)
    path = str(tmp_path / "fake.sock")
    big = lambda i: bad_output(i, {"dtype": "int8", "shape": [1 << 18], "data": bytes(1 << 18)})
    srv = FakeServer(path, [big])
    try:
        c = dynq.Client(path, timeout=5)
        with pytest.raises(dynq.ETOOBIG) as ei:
            c.infer("m", X)
        assert "larger than 65536 bytes" in str(ei.value)
        with pytest.raises(dynq.ETOOBIG):
            c.infer("m", X)                  # the stream is unusable now
        c.close()
    finally:
        srv.close()


def test_answers_out_of_order_and_interleaved(tmp_path):
    """Several calls in flight: answers in reverse order find their calls."""
    path = str(tmp_path / "fake.sock")
    held = []

    def hold(i):
        held.append(i)
        if len(held) < 3:
            return b""
        return b"".join(good(j) for j in reversed(held))

    srv = FakeServer(path, [hold, hold, hold])
    try:
        c = dynq.Client(path, timeout=5)
        ps = [c.submit("m", X) for _ in range(3)]
        for p in ps:
            assert p.result()["y"].dtype == np.float32
        c.close()
    finally:
        srv.close()
