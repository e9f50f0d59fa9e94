"""A hostile or broken server: the Python client turns every bad answer
into a clear exception, never a hang (the client's timeout bounds every
wait here) and never a crash, and keeps the connection usable when the
stream of frames was still whole (the C client's twin is
tests/test-client-wire.c)."""
import array
import os
import socket
import struct
import threading
import time

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
    bytes, (bytes, "close") to hang up after them, (bytes, "drip", gap_s) to
    send them a byte at a time, (bytes, "fds", [fd, ...]) to send them with
    file descriptors attached, None to hang up at once, or "silent" to send
    nothing and keep the connection open."""

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
                    if isinstance(a, tuple) and a[1] == "drip":
                        for k in range(len(a[0])):
                            conn.sendall(a[0][k:k + 1])
                            time.sleep(a[2])
                        continue
                    if isinstance(a, tuple) and a[1] == "fds":
                        conn.sendmsg([a[0]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                               array.array("i", a[2]))])
                        continue
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
    # a declared length is refused as its header arrives (msgpack's
    # unpacker alone would wait for the bytes)
    ("bin of 4 GiB declared, nothing follows",
     lambda i: result_head(i) + b"\x81\xa7outputs\xc6\xff\xff\xff\xff",
     dynq.ETOOBIG, "declares a bin of 4294967295 bytes", False),
    ("str of 2 GiB declared, a little follows",
     lambda i: result_head(i) + b"\xdb\x7f\xff\xff\xffabc",
     dynq.ETOOBIG, "declares a str of 2147483647 bytes", False),
    ("ext of 1 GiB declared",
     lambda i: result_head(i) + b"\xc9\x40\x00\x00\x00\x05",
     dynq.ETOOBIG, "declares an ext of 1073741824 bytes", False),
    ("array count 2^32 - 1", lambda i: result_head(i) + b"\xdd\xff\xff\xff\xff\x01",
     (dynq.EPROTO, dynq.ELIMIT), "4294967295", False),
    ("map count 2^31 - 1, one key", lambda i: result_head(i) + b"\xdf\x7f\xff\xff\xff\xa1k",
     (dynq.EPROTO, dynq.ELIMIT), "2147483647", False),
    ("array count 2^22 + 1, two elements",
     lambda i: result_head(i) + b"\xdd\x00\x40\x00\x01\x01\x02",
     (dynq.EPROTO, dynq.ELIMIT), "4194305", False),
    ("40 nested arrays, incomplete", lambda i: result_head(i) + b"\x91" * 40,
     dynq.EDEPTH, "deeper than 32 levels", False),
    ("4000 nested arrays", lambda i: result_head(i) + b"\x91" * 4000 + b"\xc0",
     (dynq.EPROTO, dynq.EDEPTH), "", False),
    ("str past the end, then hang-up",
     lambda i: (result_head(i) + b"\xdb\x00\x00\x10\x00ab", "close"),
     dynq.ECLOSED, "in the middle of an answer (11 bytes", False),
    ("msgid -1", lambda i: mp([1, -1, None, {}]), dynq.EPROTO, "malformed response", False),
    ("msgid 2^32 + ticket", lambda i: mp([1, (1 << 32) + i, None, {}]), dynq.EPROTO,
     "malformed response", False),
    ("message type 3", lambda i: mp([3, i, None, {}]), dynq.EPROTO, "malformed response", False),
    ("message type a string", lambda i: mp(["1", i, None, {}]), dynq.EPROTO,
     "malformed response", False),
    ("a request from the server, then the answer",
     lambda i: mp([0, i, "ping", {}]) + good(i), None, None, True),
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
    ("dtype an integer", lambda i: bad_output(i, {"dtype": 1, "shape": [1], "data": b"abcd"}),
     dynq.EPROTO, "unknown dtype 1", True),
    ("shape a map", lambda i: bad_output(i, {"dtype": "int8", "shape": {}, "data": b"a"}),
     dynq.EPROTO, "'shape' is not an array", True),
    ("float32 [1] in 8 bytes",
     lambda i: bad_output(i, {"dtype": "float32", "shape": [1], "data": b"abcdefgh"}),
     dynq.EPROTO, "8 bytes of data, shape [1] needs 4", True),
    ("outputs an array", lambda i: mp([1, i, None, {"outputs": []}]), dynq.EPROTO,
     "'outputs'", True),
    ("compute_us a string",
     lambda i: mp([1, i, None, {"outputs": {}, "compute_us": "3"}]), dynq.EPROTO,
     "'compute_us' is not an integer", True),
    ("error an integer", lambda i: mp([1, i, -10006, None]), dynq.ESERVER, "not a map", True),
    ("error fields of wrong types",
     lambda i: mp([1, i, {"name": 5, "code": "ENOMODEL", "message": []}, None]),
     dynq.DynqError, "", True),
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


def test_timeout_then_late_answer_dropped(tmp_path):
    """A call past its timeout raises ETIMEDOUT (retryable) and abandons the
    request; its answer, coming late with the next one, is dropped by msgid
    and the next call gets its own answer."""
    path = str(tmp_path / "fake.sock")
    y2 = lambda i: mp([1, i, None, {"outputs": {"y": {"dtype": "int8", "shape": [1],
                                                      "data": b"\x07"}}}])
    srv = FakeServer(path, [lambda i: "silent", lambda i: good(i - 1) + y2(i)])
    try:
        c = dynq.Client(path, timeout=0.2)
        t0 = time.monotonic()
        with pytest.raises(dynq.ETIMEDOUT) as ei:
            c.infer("m", X)
        assert time.monotonic() - t0 >= 0.19
        assert isinstance(ei.value, dynq.RetryableError) and ei.value.retryable
        assert "no answer from dynqd within 0.2 s" in str(ei.value)
        r = c.infer("m", X)
        assert r["y"].dtype == np.int8 and r["y"][0] == 7
        assert not c._pending and not c._replies
        c.close()
    finally:
        srv.close()


def test_per_call_timeout(tmp_path):
    """timeout= on one call bounds that call on a client with no timeout;
    a bad timeout is EPARAMS before anything is sent."""
    path = str(tmp_path / "fake.sock")
    srv = FakeServer(path, [lambda i: "silent", good])
    try:
        c = dynq.Client(path, timeout=None)
        with pytest.raises(dynq.EPARAMS):
            c.infer("m", X, timeout=-1)
        with pytest.raises(dynq.ETIMEDOUT):
            c.infer("m", X, timeout=0.1)
        assert c.infer("m", X, timeout=5)["y"][0, 0] == 0.5
        c.close()
    finally:
        srv.close()
    with pytest.raises(dynq.EPARAMS):
        dynq.Client(path, timeout=0)


def test_slow_drip(tmp_path):
    """Bytes dripping in are no progress toward the timeout; a drip that
    ends in time is just an answer, and after a timed-out drip the stream
    is still whole."""
    path = str(tmp_path / "fake.sock")
    srv = FakeServer(path, [lambda i: (good(i), "drip", 0.001),
                            lambda i: (good(i), "drip", 0.01), good])
    try:
        c = dynq.Client(path, timeout=None)
        assert c.infer("m", X)["y"][0, 1] == -1.0
        with pytest.raises(dynq.ETIMEDOUT):
            c.infer("m", X, timeout=0.15)
        assert c.infer("m", X, timeout=10)["y"][0, 1] == -1.0
        c.close()
    finally:
        srv.close()


def test_answer_with_fds_leaks_none(tmp_path):
    """Descriptors riding on an answer are never taken in (recv, not
    recvmsg: the kernel closes them)."""
    path = str(tmp_path / "fake.sock")
    r, w = os.pipe()
    srv = FakeServer(path, [lambda i: (good(i), "fds", [r, w])] * 4)
    try:
        c = dynq.Client(path, timeout=5)
        c.infer("m", X)                       # the fake has surely accepted by now
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(3):
            assert c.infer("m", X)["y"].shape == (1, 2)
        assert len(os.listdir("/proc/self/fd")) == before
        c.close()
    finally:
        srv.close()
        os.close(r)
        os.close(w)


def test_send_stall_closes(tmp_path):
    """A server that stops reading: the send times out mid-request, so the
    connection is unusable afterwards."""
    path = str(tmp_path / "fake.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(1)
    try:
        c = dynq.Client(path, timeout=0.2)
        conn, _ = lsock.accept()
        big = {"x": np.zeros(8 << 20, np.int8)}
        with pytest.raises(dynq.ETIMEDOUT) as ei:
            c.infer("m", big)
        assert "took no bytes of a request" in str(ei.value)
        with pytest.raises(dynq.ETIMEDOUT):
            c.ping()                          # refused at once: the stream is gone
        c.close()
        conn.close()
    finally:
        lsock.close()


def test_connect_queue_full(tmp_path, monkeypatch):
    """A listener that never accepts, its queue full (a stopped dynqd): the
    connect gives up after the timeout with ETIMEDOUT; the environment gives
    the default timeout."""
    path = str(tmp_path / "full.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(0)
    held = []
    try:
        for _ in range(64):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:
                s.close()
                break
            held.append(s)
        else:
            pytest.fail("the listen queue never filled")
        t0 = time.monotonic()
        with pytest.raises(dynq.ConnectError) as ei:
            dynq.Client(path, timeout=0.15)
        assert time.monotonic() - t0 >= 0.14
        assert ei.value.name == "ETIMEDOUT" and "accepted no connection" in str(ei.value), \
            str(ei.value)
        monkeypatch.setenv("DYNQ_CLIENT_TIMEOUT_MS", "120")
        with pytest.raises(dynq.ConnectError) as ei:
            dynq.Client(path)
        assert ei.value.name == "ETIMEDOUT"
    finally:
        for s in held:
            s.close()
        lsock.close()


def test_env_timeout(tmp_path, monkeypatch):
    path = str(tmp_path / "fake.sock")
    srv = FakeServer(path, [lambda i: "silent"])
    try:
        monkeypatch.setenv("DYNQ_CLIENT_TIMEOUT_MS", "150")
        c = dynq.Client(path)
        with pytest.raises(dynq.ETIMEDOUT) as ei:
            c.ping()
        assert "within 0.15 s" in str(ei.value)
        c.close()
    finally:
        srv.close()
    monkeypatch.setenv("DYNQ_CLIENT_TIMEOUT_MS", "15ms")    # a typo: no limit
    srv = FakeServer(path + "2", [good])
    try:
        c = dynq.Client(path + "2")
        assert c._timeout is None
        c.close()
    finally:
        srv.close()


TYPED = [
    ("ping answered 5", lambda c: c.ping(), 5, "ping"),
    ("server.info an array", lambda c: c.server_info(), [], "server.info"),
    ("models.list a map", lambda c: c.models(), {"a": 1}, "models.list"),
    ("model.info an integer", lambda c: c.model_info("m"), 5, "model.info"),
    ("stats a string", lambda c: c.stats(), "x", "stats"),
    ("health.live an array", lambda c: c.health(), [], "health"),
    ("session.open session a string", lambda c: c.session("m"), {"session": "1"},
     "session.open"),
    ("shm.register region a string", lambda c: c.shm_register(0, 16), {"region": "1"},
     "shm.register"),
]


@pytest.mark.parametrize("what,call,result,needle", TYPED, ids=[t[0] for t in TYPED])
def test_typed_call_bad_result(tmp_path, what, call, result, needle):
    """Each typed call refuses a result of the wrong shape with EPROTO naming
    the method; the stream stays whole (the next call is answered)."""
    path = str(tmp_path / "fake.sock")
    bad = lambda i: mp([1, i, None, result])
    n_req = 2 if what.startswith("health") else 1     # health asks live and ready at once
    srv = FakeServer(path, [bad] * n_req + [lambda i: mp([1, i, None, "pong"])])
    try:
        c = dynq.Client(path, timeout=5)
        with pytest.raises(dynq.EPROTO) as ei:
            call(c)
        assert needle in str(ei.value), str(ei.value)
        c.ping()
        c.close()
    finally:
        srv.close()
