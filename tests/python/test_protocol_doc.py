"""docs/PROTOCOL.md, taken at its word by a client written from it alone.

Everything here speaks to a real dynqd through a raw Unix socket with
python3-msgpack, numpy and the standard library: no `dynq` package, no
libdynqclient.  Each test quotes the rule of the document it checks, so a
failure says which sentence and dynqd no longer agree.  Frames a different
encoder could legally produce (other integer widths, str8/str16 headers,
other key orders, float32 for a float, ext values) are built by hand.
"""
import fcntl
import mmap
import os
import pathlib
import shutil
import socket
import struct
import tempfile
import time

import msgpack
import numpy as np
import pytest

from conftest import SRC, start_daemon, stop_daemon

ERROR_KEYS = {"code", "name", "message", "retryable"}
WIRE_DTYPES = {"float32": "<f4", "int8": "i1", "uint8": "u1", "int32": "<i4", "int64": "<i8"}


# ---- the client: msgpack-RPC as the document describes it ----

def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


class Conn:
    """One connection: frames are bare msgpack objects back to back."""

    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.timeout = timeout
        # Strict decoding: every string dynqd sends is valid UTF-8.
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                         max_buffer_size=256 << 20)
        self.pending = []  # decoded messages not yet asked for
        self.next_id = 1

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def request(self, method, params=None, msgid=None):
        if msgid is None:
            msgid = self.next_id
            self.next_id += 1
        self.send_raw(pack([0, msgid, method, {} if params is None else params]))
        return msgid

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer from dynqd")
        self.sock.settimeout(left)
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("dynqd closed the connection")
        self.unpacker.feed(data)
        for m in self.unpacker:
            self.pending.append(m)

    def next_message(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.pending:
            self._fill(deadline)
        return self.pending.pop(0)

    def response(self, msgid, timeout=None):
        """The response whose msgid is msgid (others stay pending)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, m in enumerate(self.pending):
                if m[0] == 1 and m[1] == msgid:
                    return check_response(self.pending.pop(i))
            self._fill(deadline)

    def call(self, method, params=None):
        """The result, or the error map as an RpcError."""
        r = self.response(self.request(method, params))
        if r[2] is not None:
            raise RpcError(r[2])
        return r[3]

    def error(self, method, params=None):
        """The error map of a call that must fail."""
        r = self.response(self.request(method, params))
        assert r[2] is not None, f"{method} succeeded: {r[3]!r:.300}"
        return r[2]

    def closed_by_peer(self, timeout=5.0):
        """True once dynqd has closed its end (anything it sent is kept)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._fill(deadline)
        except ConnectionError:
            return True
        except (TimeoutError, socket.timeout):
            return False
        return False


class RpcError(Exception):
    def __init__(self, err):
        super().__init__(f"{err.get('name')}: {err.get('message')}")
        self.err = err
        self.name = err["name"]


def check_response(m):
    """`[1, msgid, error, result]`, exactly one of error and result nil,
    the error a map of code, name, message, retryable."""
    assert isinstance(m, list) and len(m) == 4 and m[0] == 1, m
    assert isinstance(m[1], int) and 0 <= m[1] <= 0xFFFFFFFF
    assert (m[2] is None) != (m[3] is None), f"exactly one of error and result nil: {m!r}"
    if m[2] is not None:
        e = m[2]
        assert isinstance(e, dict) and set(e) == ERROR_KEYS, e
        assert isinstance(e["code"], int) and e["code"] < 0
        assert isinstance(e["name"], str) and e["name"].startswith("E")
        assert isinstance(e["message"], str) and e["message"]
        assert isinstance(e["retryable"], bool)
    return m


def tensor(a):
    """{dtype, shape, data}: data little-endian, row-major."""
    name = np.dtype(a.dtype.type).name  # float32, int8, ... (byte order aside)
    assert name in WIRE_DTYPES, name
    return {"dtype": name, "shape": list(a.shape),
            "data": np.ascontiguousarray(a, dtype=WIRE_DTYPES[name]).tobytes()}


def array_of(t):
    assert set(t) >= {"dtype", "shape", "data"}, t
    assert isinstance(t["data"], bytes), "data must come back as bin"
    a = np.frombuffer(t["data"], dtype=WIRE_DTYPES[t["dtype"]])
    return a.reshape(t["shape"])


# ---- hand-built msgpack, for encodings msgpack-python would not choose ----

def _fixed(code, fmt):
    """An encoder of one msgpack type with a fixed-size big-endian body."""
    return lambda v: code + struct.pack(fmt, v)


def _sized(code, fmt):
    """An encoder of a str, array or map header of that width, then its body:
    text or bytes (str), encoded objects (array) or (key, value) pairs of
    encoded objects (map)."""
    def enc(x):
        if isinstance(x, str):
            x = x.encode()
        if isinstance(x, bytes):
            body = x
        else:
            body = b"".join(b"".join(i) if isinstance(i, tuple) else i for i in x)
        return code + struct.pack(fmt, len(x)) + body
    return enc


u8, u16, u32, u64 = (_fixed(c, f) for c, f in ((b"\xcc", ">B"), (b"\xcd", ">H"),
                                                (b"\xce", ">I"), (b"\xcf", ">Q")))
i8, i32, i64 = (_fixed(c, f) for c, f in ((b"\xd0", ">b"), (b"\xd2", ">i"), (b"\xd3", ">q")))
str8, str16, str32 = (_sized(c, f) for c, f in ((b"\xd9", ">B"), (b"\xda", ">H"),
                                                (b"\xdb", ">I")))
arr16, arr32 = _sized(b"\xdc", ">H"), _sized(b"\xdd", ">I")  # items: encoded objects
map16, map32 = _sized(b"\xde", ">H"), _sized(b"\xdf", ">I")  # items: (key, value) pairs


# ---- the daemon ----

@pytest.fixture(scope="module")
def pd(tmp_path_factory, model_dir):
    """A dynqd of this module's own (its counters, sessions and admin calls
    touch no other test), serving a copy of the fixture models.  Its socket
    sits in a directory anyone may enter, so a child process that dropped
    root can reach it (the admin check)."""
    models = tmp_path_factory.mktemp("docmodels")
    for f in os.listdir(model_dir):
        shutil.copy(os.path.join(model_dir, f), models / f)
    run = tempfile.mkdtemp(prefix="dynq-doc-")
    os.chmod(run, 0o755)
    d = start_daemon(pathlib.Path(run), models)
    yield d
    stop_daemon(d)
    shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
def conn(pd):
    with Conn(pd.sock) as c:
        yield c


# ---- envelope and framing ----

def test_ping_and_every_empty_params_form(conn):
    # "params is a map (an empty map, nil or [] where a method takes none).
    #  An array holding one map is accepted too."
    for params in ({}, None, [], [{}]):
        conn.send_raw(pack([0, 41, "ping", params]))
        m = conn.response(41)
        assert m == [1, 41, None, "pong"], params


def test_msgid_any_integer_width(conn):
    # "msgid is a uint32 chosen by the client": any msgpack integer encoding
    # of a value in 0..2^32-1 is that uint32.
    cases = [(b"\x07", 7), (u8(200), 200), (u16(60000), 60000), (u32(0xFFFFFFFF), 0xFFFFFFFF),
             (u64(123456), 123456), (i8(9), 9), (i32(70000), 70000), (i64(0x12345678), 0x12345678),
             (b"\x00", 0)]
    for raw, want in cases:
        conn.send_raw(b"\x94\x00" + raw + b"\xa4ping\x80")
        assert conn.response(want) == [1, want, None, "pong"], raw
    # Message type 0 in other widths is still a request.
    for t in (u8(0), i8(0), u64(0)):
        conn.send_raw(b"\x94" + t + b"\x05\xa4ping\x80")
        assert conn.response(5)[3] == "pong", t


def test_msgid_out_of_range_is_eproto_and_connection_stays(conn):
    # "A frame that is valid msgpack but a wrong envelope is answered with
    #  EPROTO (using its msgid when one can be read) and the connection stays open."
    for bad in (u64(1 << 32), i8(-1), b"\xc0", b"\xa1x", b"\xcb" + struct.pack(">d", 3.0)):
        conn.send_raw(b"\x94\x00" + bad + b"\xa4ping\x80")
        m = conn.response(0)
        assert m[2]["name"] == "EPROTO", bad
    assert conn.call("ping") == "pong"


def test_method_string_encodings(conn):
    # A string is a string whatever its header (fixstr, str8, str16, str32).
    for enc in (str8, str16, str32):
        conn.send_raw(b"\x94\x00\x11" + enc("ping") + b"\x80")
        assert conn.response(0x11)[3] == "pong", enc


def test_method_length_limit(conn):
    # "method is a string of at most 63 bytes": 63 is a method name (unknown
    # here), 64 is not one.
    e = conn.error("m" * 63)
    assert e["name"] == "ENOMETHOD"
    e = conn.error("m" * 64)
    assert e["name"] == "EPROTO"
    assert conn.call("ping") == "pong"


def test_method_as_bin_is_refused(conn):
    # "method is a string"; "Bytes go in bin": a bin is not a method name.
    conn.send_raw(b"\x94\x00\x12\xc4\x04ping\x80")
    m = conn.response(0x12)
    assert m[2]["name"] == "EPROTO"
    assert conn.call("ping") == "pong"


def test_unknown_method_is_enomethod(conn):
    e = conn.error("no.such.method")
    assert e["name"] == "ENOMETHOD" and e["retryable"] is False


def test_wrong_envelopes_keep_the_connection(conn):
    # "valid msgpack but a wrong envelope is answered with EPROTO (using its
    #  msgid when one can be read) and the connection stays open."
    conn.send_raw(pack([0, 77, "ping"]))             # 3 elements
    assert conn.response(77)[2]["name"] == "EPROTO"
    conn.send_raw(pack([0, 78, "ping", {}, 1]))     # 5 elements
    assert conn.response(78)[2]["name"] == "EPROTO"
    conn.send_raw(pack([0, 79, 5, {}]))             # method not a string
    assert conn.response(79)[2]["name"] == "EPROTO"
    for junk in ("hello", {"a": 1}, [], [3, 1, "ping", {}], 12):
        conn.send_raw(pack(junk))
        assert conn.response(0)[2]["name"] == "EPROTO", junk
    assert conn.call("ping") == "pong"


def test_notifications_get_no_response(conn):
    # "Notifications are accepted and ignored (no response) in version 1."
    conn.send_raw(pack([2, "ping", {}]) + pack([2, "model.unload", {"model": "linear"}]) +
                  pack([2, "no.such", []]))
    conn.send_raw(pack([0, 90, "ping", {}]))
    assert conn.next_message() == [1, 90, None, "pong"]
    # The notification to unload was ignored, not run; nor is an infer one.
    assert any(m["name"] == "linear" for m in conn.call("models.list"))
    before = conn.call("stats")["requests_total"]
    t = tensor(np.ones((1, 768), np.float32))
    conn.send_raw(pack([2, "infer", {"model": "linear", "inputs": {"x": t}}]))
    assert conn.call("ping") == "pong"
    assert conn.call("stats")["requests_total"] == before


def test_pipelined_requests_in_one_write_and_split_frames(conn):
    # "Requests may be pipelined; responses may come back in any order and
    #  are matched by msgid."  Frames are bare objects back to back.
    x = np.ones((1, 768), np.float32)
    blob = b"".join(pack([0, 1000 + i, "infer", {"model": "linear", "inputs": {"x": tensor(x * i)}}])
                    for i in range(8))
    blob += pack([0, 2000, "ping", []]) + pack([0, 2001, "server.info", None])
    conn.send_raw(blob)
    seen = {}
    for _ in range(10):
        m = check_response(conn.next_message())
        assert m[1] not in seen
        seen[m[1]] = m
    assert set(seen) == {1000 + i for i in range(8)} | {2000, 2001}
    assert seen[2000][3] == "pong"
    assert seen[2001][3]["protocol"] == 1
    y0 = array_of(seen[1001][3]["outputs"]["y"])
    for i in range(8):
        assert seen[1000 + i][2] is None
    # The same frames one byte at a time: a stream, not messages.
    one = pack([0, 3000, "infer", {"model": "linear", "inputs": {"x": tensor(x)}}])
    for b in range(len(one)):
        conn.send_raw(one[b:b + 1])
        if b % 997 == 0:
            time.sleep(0.001)
    assert np.array_equal(array_of(conn.response(3000)[3]["outputs"]["y"]), y0)


def test_same_msgid_twice_answers_both(conn):
    # msgids are the client's; dynqd only echoes them.
    conn.send_raw(pack([0, 5, "ping", {}]) + pack([0, 5, "ping", {}]))
    assert conn.next_message() == [1, 5, None, "pong"]
    assert conn.next_message() == [1, 5, None, "pong"]


def test_responses_sent_to_dynqd_are_not_answered(conn):
    # A response is a message of the protocol, but dynqd asked nothing.
    conn.send_raw(pack([1, 61, None, "pong"]) + pack([1, 62, {"name": "EX"}, None]))
    conn.send_raw(pack([0, 63, "ping", {}]))
    assert conn.next_message() == [1, 63, None, "pong"]


def test_unreadable_msgids_are_answered_as_msgid_0(conn):
    # "(using its msgid when one can be read)": when it cannot be, the answer
    # carries msgid 0, so a client numbering its requests from 1 can tell.
    conn.send_raw(b"\x94\x00\xd4\x01\x07\xa4ping\x80")     # msgid a fixext1
    assert conn.next_message()[:2] == [1, 0]
    conn.send_raw(pack([2, 5, {}]))                        # a notification's method not a string
    m = conn.next_message()
    assert m[:2] == [1, 0] and m[2]["name"] == "EPROTO"
    assert conn.call("ping") == "pong"


def test_names_are_str_not_bin(conn):
    # Keys are names, names are text: a bin key is not the key.
    e = conn.error("model.info", {b"model": "linear"})
    assert e["name"] == "EPARAMS" and "params.model" in e["message"]


def test_a_name_holding_nul_matches_nothing(conn):
    # U+0000 is valid UTF-8, but no name holds it: such a name reaches no
    # model, input or dtype, and the error quotes it whole (\\0 for the NUL),
    # not as the text before the NUL (which would name what is loaded).
    t = tensor(np.zeros((1, 768), np.float32))
    cases = [("model.info", {"model": "linear\0x"}, "ENOMODEL", "'linear\\0x'"),
             ("infer", {"model": "linear\0x", "inputs": {"x": t}}, "ENOMODEL", "'linear\\0x'"),
             ("infer", {"model": "linear", "inputs": {"x\0y": t}}, "ENOINPUT", "'x\\0y'"),
             ("infer", {"model": "linear", "inputs": {"x": dict(t, dtype="float32\0")}},
              "EDTYPE", "'float32\\0'"),
             ("infer", {"model": "linear", "inputs": {"x": t}, "precision": "fp32\0"},
              "EPARAMS", "'fp32\\0'")]
    for method, params, name, quoted in cases:
        e = conn.error(method, params)
        assert e["name"] == name and quoted in e["message"], (params, e)
    assert conn.error("ping\0", {})["name"] == "EPROTO"
    # A long name is cut at a character boundary, never inside one.
    e = conn.error("model.info", {"model": "a" * 63 + "\u00e9"})
    assert e["name"] == "ENOMODEL" and "'" + "a" * 63 + "...'" in e["message"], e


# ---- undecodable frames: msgid 0 and the connection closes ----

def expect_fatal(conn, name):
    m = conn.next_message(timeout=10)
    check_response(m)
    assert m[1] == 0 and m[2]["name"] == name, m
    assert conn.closed_by_peer(), "the connection must be closed"


def test_not_msgpack_is_eproto_and_closes(pd):
    with Conn(pd.sock) as c:
        c.send_raw(b"\xc1")
        expect_fatal(c, "EPROTO")


def test_huge_declared_length_refused_at_its_header(pd):
    # "A string, bin or ext whose declared length alone exceeds the frame cap
    #  is refused as soon as its header arrives" (default cap 64 MiB).
    for hdr in (b"\xc6" + struct.pack(">I", 0xFFFFFFF0),      # bin32
                b"\xdb" + struct.pack(">I", (64 << 20) + 1),  # str32
                b"\xc9" + struct.pack(">I", 0x7FFFFFFF) + b"\x05"):  # ext32 (its header holds the type)
        with Conn(pd.sock) as c:
            c.send_raw(b"\x94\x00\x01\xa4ping\x81\xa1k" + hdr)
            expect_fatal(c, "ETOOBIG")


def test_nesting_depth_32(pd):
    # "nesting depth 32": the request array is level 1 and its params map
    # level 2; an unknown key is ignored whatever it holds.
    def frame(depth):
        inner = b"\x90"  # an empty array: one level
        for _ in range(depth - 3):
            inner = b"\x91" + inner
        return b"\x94\x00\x09\xa4ping\x81\xa1k" + inner
    with Conn(pd.sock) as c:
        c.send_raw(frame(32))
        assert c.response(9)[3] == "pong"
        c.send_raw(frame(33))
        expect_fatal(c, "EDEPTH")


def test_element_limit(pd):
    # "2^20 declared array elements and map entries in total", counted over
    # the whole frame: the envelope's 4 and the map's 1 count too.
    def frame(n):
        return b"\x94\x00\x0a\xa4ping\x81\xa1k" + arr32([b"\xc0"] * n)
    with Conn(pd.sock) as c:
        c.send_raw(frame((1 << 20) - 5))
        assert c.response(10)[3] == "pong"
        # Over it by one: refused from the array's header alone (the
        # elements never need to arrive).
        c.send_raw(frame((1 << 20) - 4)[:-((1 << 20) - 4)])
        expect_fatal(c, "ELIMIT")


# ---- Errors ----

def test_error_map_example(conn):
    # The document's own example, literally.
    e = conn.error("model.info", {"model": "foo"})
    assert e == {"code": -10006, "name": "ENOMODEL",
                 "message": "no model named 'foo' (models.list shows what is loaded)",
                 "retryable": False}


def test_eparams_example_names_method_and_param(conn):
    # `infer: params.timeout_ms must be a non-negative integer (milliseconds), got a string`
    e = conn.error("infer", {"model": "linear", "inputs": {}, "timeout_ms": "soon"})
    assert e["name"] == "EPARAMS"
    assert e["message"] == ("infer: params.timeout_ms must be a non-negative integer "
                            "(milliseconds), got a string")


def test_params_rule(conn):
    # "A nil value counts as absent. Keys a method does not know are ignored.
    #  A param of the wrong kind, out of its bounds, or a required one
    #  missing is EPARAMS, naming the method and the param."
    info = conn.call("model.info", {"model": "linear", "extra": [1, {"x": b"\x00"}],
                                    "ext": msgpack.ExtType(5, b"abc")})
    assert info["name"] == "linear"
    assert conn.call("model.info", [{"model": "linear"}])["name"] == "linear"
    for params in ({}, {"model": None}, None, []):
        e = conn.error("model.info", params)
        assert e["name"] == "EPARAMS" and "model.info" in e["message"] and \
            "params.model" in e["message"], (params, e)
    for bad in (5, b"linear", ["linear"], True, msgpack.ExtType(1, b"linear")):
        e = conn.error("model.info", {"model": bad})
        assert e["name"] == "EPARAMS" and "params.model" in e["message"], bad
    # Not a map at all.
    for params in ("linear", 7, [1, 2]):
        e = conn.error("model.info", params)
        assert e["name"] == "EPARAMS", params
    # *any params*: not looked at.
    for params in ("garbage", 7, [1, 2, 3], {"x": msgpack.ExtType(3, b"")}):
        assert conn.call("health.live", params) == {"status": "ok"}
        assert "ready" in conn.call("health.ready", params)
        assert "uptime_s" in conn.call("stats", params)


def test_params_key_order_and_encodings(conn):
    # A map is a map in any key order and with any header; a key is a str
    # of any width.
    x = np.random.default_rng(1).standard_normal((2, 768)).astype(np.float32)
    ref = array_of(conn.call("infer", {"model": "linear", "inputs": {"x": tensor(x)}})["outputs"]["y"])
    t = tensor(x)
    tens = map16([(str16("data"), b"\xc6" + struct.pack(">I", len(t["data"])) + t["data"]),
                  (str8("shape"), arr32([u64(2), i32(768)])),
                  (str32("dtype"), str16("float32"))])
    params = map32([(str8("inputs"), map16([(str16("x"), tens)])),
                    (str32("precision"), str8("int8")),
                    (str8("model"), str32("linear")),
                    (str8("timeout_ms"), u64(60000))])
    conn.send_raw(b"\x94" + u8(0) + u32(4242) + str8("infer") + params)
    r = conn.response(4242)
    assert r[2] is None, r[2]
    assert np.array_equal(array_of(r[3]["outputs"]["y"]), ref)


def text_cases():
    return [b"\xc0\xaf",           # overlong '/'
            b"\xe0\x80\xaf",       # overlong, 3 bytes
            b"\xed\xa0\x80",       # a surrogate (U+D800)
            b"\xf4\x90\x80\x80",   # above U+10FFFF
            b"\xff",               # never valid
            b"ab\xe2\x82"]         # truncated sequence


def test_strict_utf8(conn):
    # "A string dynqd reads (the method, names, string params, a tensor's
    #  dtype) that is not [strict UTF-8] is refused with EPARAMS, and never
    #  echoed back in a message."  The Unpacker is strict: every reply decodes.
    for bad in text_cases():
        msgs = [b"\x94\x00\x20" + str8(b"m" + bad) + b"\x80",
                b"\x94\x00\x20\xaamodel.info\x81\xa5model" + str8(b"lin" + bad),
                b"\x94\x00\x20\xa5infer\x82\xa5model\xa6linear\xa6inputs\x81\xa1x\x83"
                b"\xa5dtype" + str8(b"float32" + bad) + b"\xa5shape\x92\x01\xcd\x03\x00"
                b"\xa4data\xc6" + struct.pack(">I", 3072) + bytes(3072)]
        for frame in msgs:
            conn.send_raw(frame)
            e = conn.response(0x20)[2]
            assert e is not None and e["name"] == "EPARAMS", (bad, frame[:20], e)
            assert "\ufffd" not in e["message"]
    # Valid multi-byte text is text: a 4-byte character in a model name is
    # simply no model.
    e = conn.error("model.info", {"model": "mod\U0001F600"})
    assert e["name"] == "ENOMODEL"


def test_system_errors_are_minus_errno(conn):
    # "system errors are -errno": the ones dynq's own names do not cover.
    e = conn.error("model.load", {"model": "missing", "path": "missing.dynq"})
    assert e["name"] == "ENOENT" and e["code"] == -2, e


# ---- server, models, health, stats ----

def test_server_info(conn):
    info = conn.call("server.info")
    for k in ("version", "protocol", "kernel", "kernels", "openblas_core", "workers",
              "models", "uptime_s"):
        assert k in info, k
    assert info["protocol"] == 1
    assert isinstance(info["version"], str) and isinstance(info["kernel"], str)
    assert isinstance(info["kernels"], list) and info["kernel"] in info["kernels"]
    assert isinstance(info["workers"], int) and info["workers"] >= 1
    assert isinstance(info["models"], int) and info["models"] >= 4
    assert isinstance(info["uptime_s"], float) and info["uptime_s"] >= 0


def test_models_list(conn):
    ms = conn.call("models.list")
    assert isinstance(ms, list)
    by = {m["name"]: m for m in ms}
    assert {"linear", "linear_noref", "dtypes", "stateful"} <= set(by)
    for m in ms:
        assert set(m) >= {"name", "version", "path", "file_bytes", "inputs", "outputs"}
    lin = by["linear"]
    assert lin["version"] >= 1 and lin["inputs"] == 1 and lin["outputs"] == 1
    assert lin["file_bytes"] == os.path.getsize(lin["path"])
    assert by["dtypes"]["inputs"] == 5 and by["stateful"]["inputs"] == 2


def test_model_info(conn):
    info = conn.call("model.info", {"model": "linear"})
    for k in ("name", "version", "path", "file_bytes", "producer", "inputs", "outputs",
              "nodes", "quantized_layers", "int8_weight_bytes", "fp32_weight_bytes",
              "reference_weight_bytes", "has_reference", "activation_scales", "source_hash"):
        assert k in info, k
    assert info["name"] == "linear"
    assert info["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 768]}]
    assert conn.call("model.info", {"model": "dtypes"})["inputs"][0] == \
        {"name": "i_float32", "dtype": "float32", "shape": [-1, -1]}
    assert info["outputs"] == [{"name": "y", "dtype": "float32", "shape": [-1, 768]}]
    assert info["has_reference"] is True
    assert info["activation_scales"] in ("per-row", "per-tensor")
    assert isinstance(info["source_hash"], int) and 0 <= info["source_hash"] < 1 << 64
    assert info["source_hash"] != 0  # converted from an ONNX file here
    v = info["version"]
    assert conn.call("model.info", {"model": f"linear@{v}"})["version"] == v
    assert conn.error("model.info", {"model": f"linear@{v + 1}"})["name"] == "ENOMODEL"
    assert conn.call("model.info", {"model": "linear_noref"})["has_reference"] is False


def test_source_hash_is_fnv1a_of_the_onnx(pd, tmp_path):
    # "source_hash is the FNV-1a 64-bit hash of the ONNX file the model was
    #  converted from": computed here from the file itself.
    import subprocess
    import sys
    onnx_path = str(tmp_path / "lin.onnx")
    subprocess.run([sys.executable, os.path.join(SRC, "bench", "make_linear.py"), onnx_path],
                   check=True, capture_output=True)
    h = 0xcbf29ce484222325
    with open(onnx_path, "rb") as f:
        for byte in f.read():
            h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    with Conn(pd.sock) as c:
        assert c.call("model.info", {"model": "linear"})["source_hash"] == h


def test_health(conn):
    assert conn.call("health.live") == {"status": "ok"}
    r = conn.call("health.ready")
    assert r["ready"] is True and r["models"] >= 4


def test_health_ready_needs_a_model(tmp_path, model_dir):
    # "Ready = at least one model loaded and warmed, not draining."
    models = tmp_path / "none"
    models.mkdir()
    d = start_daemon(tmp_path, models)
    try:
        with Conn(d.sock) as c:
            r = c.call("health.ready")
            assert r["ready"] is False and r["models"] == 0
            assert isinstance(r["reason"], str) and r["reason"]
            assert c.call("health.live") == {"status": "ok"}
            assert c.call("models.list") == [] and c.call("server.info")["models"] == 0
            shutil.copy(os.path.join(model_dir, "linear.dynq"), models / "linear.dynq")
            assert c.call("model.load", {"model": "linear"}) == {"model": "linear", "version": 1}
            r = c.call("health.ready")
            assert r["ready"] is True and r["models"] == 1
    finally:
        stop_daemon(d)


def test_stats(conn):
    x = np.zeros((1, 768), np.float32)
    conn.call("infer", {"model": "linear", "inputs": {"x": tensor(x)}})
    s = conn.call("stats")
    for k in ("uptime_s", "connections", "queue_depth", "queue_cap", "inflight", "sessions",
              "shm_regions", "bytes_mapped", "requests_total", "errors_total",
              "overloads_total", "timeouts_total", "inline_total", "models"):
        assert k in s, k
    assert s["connections"] >= 1 and s["requests_total"] >= 1
    m = s["models"]["linear"]
    assert set(m) >= {"version", "requests", "errors", "queue_us", "compute_us"}
    for h in (m["queue_us"], m["compute_us"]):
        assert set(h) >= {"count", "p50", "p90", "p99", "sum", "buckets"}
        assert h["count"] == sum(c for _, c in h["buckets"])
        uppers = [u for u, _ in h["buckets"]]
        assert uppers == sorted(uppers) and len(set(uppers)) == len(uppers)
        assert all(c > 0 for _, c in h["buckets"])
        assert h["p50"] <= h["p90"] <= h["p99"]


# ---- infer ----

def test_infer_linear_and_result_fields(conn, linear_ref):
    w, b = linear_ref
    x = np.random.default_rng(2).standard_normal((3, 768)).astype(np.float32)
    r = conn.call("infer", {"model": "linear", "inputs": {"x": tensor(x)}})
    assert set(r) >= {"outputs", "compute_us", "queue_us", "decode_us"}
    for k in ("compute_us", "queue_us", "decode_us"):
        assert isinstance(r[k], int) and r[k] >= 0
    y = r["outputs"]["y"]
    assert y["dtype"] == "float32" and y["shape"] == [3, 768]
    want = x @ w + b
    got = array_of(y)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.05
    r32 = conn.call("infer", {"model": "linear", "inputs": {"x": tensor(x)}, "precision": "fp32"})
    assert np.allclose(array_of(r32["outputs"]["y"]), want, atol=1e-4)
    # "int8" is the default.
    r8 = conn.call("infer", {"model": "linear", "inputs": {"x": tensor(x)}, "precision": "int8"})
    assert np.array_equal(array_of(r8["outputs"]["y"]), got)


def test_infer_every_dtype(conn):
    # dtypes: float32, int8, uint8, int32, int64, little-endian, row-major.
    rng = np.random.default_rng(3)
    arrays = {
        "float32": rng.standard_normal((2, 5)).astype(np.float32),
        "int8": np.array([[-128, -1, 0, 1, 127]] * 2, np.int8),
        "uint8": np.array([[0, 1, 127, 128, 255]] * 2, np.uint8),
        "int32": np.array([[-2**31, -1, 0, 1, 2**31 - 1]] * 2, np.int32),
        "int64": np.array([[-2**63, -1, 0, 1, 2**63 - 1]] * 2, np.int64),
    }
    r = conn.call("infer", {"model": "dtypes",
                            "inputs": {f"i_{k}": tensor(v) for k, v in arrays.items()}})
    for k, v in arrays.items():
        o = r["outputs"][f"o_{k}"]
        assert o["dtype"] == k and o["shape"] == [2, 5]
        assert o["data"] == v.astype(WIRE_DTYPES[k]).tobytes(), k


def test_infer_errors(conn):
    x = np.zeros((1, 768), np.float32)

    def err(params):
        return conn.error("infer", params)["name"]

    assert err({"model": "nope", "inputs": {"x": tensor(x)}}) == "ENOMODEL"
    assert err({"model": "linear", "inputs": {"z": tensor(x)}}) == "ENOINPUT"
    assert err({"model": "linear", "inputs": {}}) == "ENOINPUT"
    assert err({"model": "linear", "inputs": {"x": tensor(x.astype(np.int32))}}) == "EDTYPE"
    assert err({"model": "linear", "inputs": {"x": tensor(np.zeros((1, 767), np.float32))}}) == "ESHAPE"
    # "-1 in a shape is a dimension chosen per request": any size >= 1.
    assert err({"model": "linear", "inputs": {"x": tensor(np.zeros((0, 768), np.float32))}}) == "ESHAPE"
    assert err({"model": "linear", "inputs": {"x": tensor(np.zeros((768,), np.float32))}}) == "ESHAPE"
    # ELIMIT (tensor too large): by its declared shape, before any data.
    huge = {"dtype": "float32", "shape": [1 << 31, 768], "data": b""}
    assert err({"model": "linear", "inputs": {"x": huge}}) == "ELIMIT"
    assert err({"model": "linear", "inputs": {"x": dict(huge, shape=[1 << 62, 1 << 62])}}) == "ELIMIT"
    t = tensor(x)
    assert err({"model": "linear", "inputs": {"x": dict(t, data=t["data"][:-1])}}) == "EDATA"
    assert err({"model": "linear", "inputs": {"x": dict(t, data=t["data"] + b"\0")}}) == "EDATA"
    assert err({"model": "linear", "inputs": {"x": t}, "precision": "fp16"}) == "EPARAMS"
    assert err({"model": "linear_noref", "inputs": {"x": t}, "precision": "fp32"}) == "ENOREF"
    assert err({"model": "linear", "inputs": {"x": t}, "timeout_ms": -1}) == "EPARAMS"
    assert err({"model": "linear", "inputs": {"x": t}, "session": "s"}) == "EPARAMS"
    assert err({"model": "linear", "inputs": [t]}) == "EPARAMS"
    assert err({"model": "linear"}) == "EPARAMS"
    # "Bytes go in bin": data as a str is not data.
    assert err({"model": "linear", "inputs": {"x": dict(t, data=t["data"].decode("latin-1"))}}) \
        in ("EPARAMS", "EDATA")
    # Dtypes are the five documented names: numpy's float64 default is not one.
    for dt in ("float16", "float64", "FLOAT32", "f4", "bool"):
        assert err({"model": "linear", "inputs": {"x": dict(t, dtype=dt)}}) == "EDTYPE", dt
    # "Rank <= 8": a rank-9 tensor is refused whatever the model wants.
    nine = {"dtype": "float32", "shape": [1] * 9, "data": bytes(4)}
    assert err({"model": "linear", "inputs": {"x": nine}}) in ("ESHAPE", "EPARAMS", "ELIMIT")
    # Shapes hold non-negative integers.
    assert err({"model": "linear", "inputs": {"x": dict(t, shape=[-1, 768])}}) in ("ESHAPE", "EPARAMS")
    # A model omitted without a session names no model.
    assert err({"inputs": {"x": t}}) in ("EPARAMS", "ENOMODEL")
    assert conn.call("ping") == "pong"


def test_timeout_ms_values(conn):
    # "values above a day mean no deadline"; any uint encoding is a uint.
    t = tensor(np.zeros((1, 768), np.float32))
    for v in (86400001, 2**63 - 1, 60000):
        r = conn.call("infer", {"model": "linear", "inputs": {"x": t}, "timeout_ms": v})
        assert "outputs" in r, v
    # Where a uint is documented, a float is not one.
    e = conn.error("infer", {"model": "linear", "inputs": {"x": t}, "timeout_ms": 1000.0})
    assert e["name"] == "EPARAMS" and "params.timeout_ms" in e["message"]


def test_infer_shape_entries_any_integer_width(conn):
    x = np.arange(768, dtype=np.float32).reshape(1, 768) / 768
    ref = conn.call("infer", {"model": "linear", "inputs": {"x": tensor(x)}})["outputs"]["y"]
    body = x.tobytes()
    for d0, d1 in ((u8(1), u16(768)), (i8(1), i32(768)), (u64(1), i64(768))):
        tens = b"\x83\xa5dtype\xa7float32\xa5shape\x92" + d0 + d1 + b"\xa4data\xc5" + \
            struct.pack(">H", len(body)) + body
        frame = b"\x94\x00\x30\xa5infer\x82\xa5model\xa6linear\xa6inputs\x81\xa1x" + tens
        conn.send_raw(frame)
        r = conn.response(0x30)
        assert r[2] is None, r[2]
        assert r[3]["outputs"]["y"] == ref


# ---- sessions ----

def fixture_f32(name, shape):
    return np.fromfile(os.path.join(SRC, "tests", "fixtures", name), dtype="<f4").reshape(shape)


def test_session_lifecycle(conn):
    xs = fixture_f32("stateful_x.f32", (5, 1, 8))
    ys = fixture_f32("stateful_y.f32", (5, 1, 8))
    o = conn.call("session.open", {"model": "stateful"})
    assert set(o) >= {"session", "inputs", "bindings"}
    assert o["inputs"] == ["x"] and o["bindings"] == {"state": "stateN"}
    sid = o["session"]
    for t in range(3):
        r = conn.call("infer", {"session": sid, "inputs": {"x": tensor(xs[t])}, "precision": "fp32"})
        assert set(r["outputs"]) == {"y", "stateN"}
        assert np.allclose(array_of(r["outputs"]["y"]), ys[t], atol=1e-5), t
    assert conn.call("session.reset", {"session": sid}) == {"session": sid}
    r = conn.call("infer", {"model": "stateful", "session": sid, "inputs": {"x": tensor(xs[0])},
                            "precision": "fp32"})
    assert np.allclose(array_of(r["outputs"]["y"]), ys[0], atol=1e-5)
    # Passing a bound input too is not "only the unbound inputs".
    e = conn.error("infer", {"session": sid, "inputs": {"x": tensor(xs[1]),
                                                         "state": tensor(xs[1])}})
    assert e["name"] == "EPARAMS" and "'state'" in e["message"]
    # `model` "may be omitted with session"; given, it names the session's
    # model, as name or name@N, and nothing else.
    r = conn.call("infer", {"model": "stateful@1", "session": sid, "inputs": {"x": tensor(xs[1])},
                            "precision": "fp32"})
    assert np.allclose(array_of(r["outputs"]["y"]), ys[1], atol=1e-5)
    for other in ("linear", "stateful@2", "stateful@", "statefu"):
        e = conn.error("infer", {"model": other, "session": sid, "inputs": {"x": tensor(xs[2])}})
        assert e["name"] == "EPARAMS" and f"'{other}'" in e["message"], (other, e)
    assert conn.call("session.close", {"session": sid}) == {"session": sid}
    assert conn.error("session.close", {"session": sid})["name"] == "ENOSESSION"
    assert conn.error("session.reset", {"session": sid})["name"] == "ENOSESSION"
    assert conn.error("infer", {"session": sid, "inputs": {"x": tensor(xs[0])}})["name"] == "ENOSESSION"


def test_one_request_per_session(conn):
    # "One request per session at a time (EBUSY if another is in flight)":
    # pipelined steps of one session are not queued behind each other.
    sid = conn.call("session.open", {"model": "stateful"})["session"]
    x = tensor(np.zeros((1, 8), np.float32))
    conn.send_raw(b"".join(pack([0, 500 + i, "infer", {"session": sid, "inputs": {"x": x}}])
                           for i in range(4)))
    errs = [conn.response(500 + i)[2] for i in range(4)]
    assert errs[0] is None
    busy = [e for e in errs if e is not None]
    assert busy and all(e["name"] == "EBUSY" and e["retryable"] is True for e in busy)
    conn.call("session.close", {"session": sid})


def test_session_ids_are_64_bit(conn):
    # "A session id is an opaque uint below 2^63 that may use all those bits" (a
    # client whose numbers are doubles must keep it as an integer).
    ids = [conn.call("session.open", {"model": "stateful"})["session"] for _ in range(4)]
    for sid in ids:
        assert isinstance(sid, int) and 0 < sid < 1 << 63
        assert conn.call("session.reset", {"session": sid}) == {"session": sid}
        conn.call("session.close", {"session": sid})


def test_session_open_params(conn):
    assert conn.error("session.open", {"model": "nope"})["name"] == "ENOMODEL"
    assert conn.error("session.open", {"model": "m" * 128})["name"] == "EPARAMS"
    assert conn.error("session.open", {"model": "stateful", "idle_timeout_ms": 0})["name"] == "EPARAMS"
    assert conn.error("session.open", {"model": "stateful", "detached": 1})["name"] == "EPARAMS"
    o = conn.call("session.open", {"model": "stateful", "bindings": {"state": "stateN"},
                                   "idle_timeout_ms": 1, "detached": False})
    assert o["inputs"] == ["x"]
    # "idle sessions close after idle_timeout_ms"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            conn.call("session.reset", {"session": o["session"]})
        except RpcError as e:
            assert e.name == "ENOSESSION"
            break
        time.sleep(0.05)
    else:
        pytest.fail("a session idle for 1 ms was still open after 10 s")


def test_sessions_close_with_their_connection_unless_detached(pd):
    # "Sessions close with their connection unless detached: true"; a
    # detached one answers another connection of the same uid.
    with Conn(pd.sock) as b:
        before = b.call("stats")["sessions"]
        with Conn(pd.sock) as a:
            kept = a.call("session.open", {"model": "stateful", "detached": True})["session"]
            a.call("session.open", {"model": "stateful"})
            assert b.call("stats")["sessions"] == before + 2
        deadline = time.monotonic() + 10
        while b.call("stats")["sessions"] != before + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b.call("stats")["sessions"] == before + 1
        x = tensor(np.zeros((1, 8), np.float32))
        assert "outputs" in b.call("infer", {"session": kept, "inputs": {"x": x}})
        b.call("session.close", {"session": kept})
        assert b.call("stats")["sessions"] == before


# ---- shared memory ----

def memfd(size, seal=True):
    fd = os.memfd_create("dynq-doc", os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    if seal:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    return fd


def shm_register(conn, fd, size, msgid=700):
    frame = pack([0, msgid, "shm.register", {"size": size}])
    # "one fd, in the same sendmsg as the frame's first byte"
    conn.sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
    return conn.response(msgid)


def test_shm(conn):
    size = 4 * 768 * 4
    fd = memfd(size)
    try:
        r = shm_register(conn, fd, size)
        assert r[2] is None, r[2]
        rid = r[3]["region"]
        mm = mmap.mmap(fd, size)
        x = np.random.default_rng(5).standard_normal((2, 768)).astype(np.float32)
        mm[:x.nbytes] = x.tobytes()
        want = conn.call("infer", {"model": "linear", "inputs": {"x": tensor(x)}})["outputs"]["y"]
        ref = {"region": rid, "offset": 0, "size": x.nbytes}
        out = {"region": rid, "offset": x.nbytes, "size": x.nbytes}
        r = conn.call("infer", {"model": "linear",
                                "inputs": {"x": {"dtype": "float32", "shape": [2, 768], "shm": ref}},
                                "outputs_shm": {"y": out}})
        # "its result entry is then the same shm reference"
        assert r["outputs"]["y"]["shm"] == out
        assert mm[x.nbytes:2 * x.nbytes] == want["data"]
        r = conn.call("infer", {"model": "linear",
                                "inputs": {"x": {"dtype": "float32", "shape": [2, 768], "shm": ref}}})
        assert r["outputs"]["y"]["data"] == want["data"]

        def err(shm):
            return conn.error("infer", {"model": "linear", "inputs": {
                "x": {"dtype": "float32", "shape": [2, 768], "shm": shm}}})["name"]
        # "size must equal the tensor's byte size" (EDATA, as for inline data);
        # "offset + size checked for overflow and against the region" (EPARAMS).
        assert err(dict(ref, size=x.nbytes - 4)) == "EDATA"
        assert err(dict(ref, offset=size - 4)) == "EPARAMS"
        assert err(dict(ref, offset=2**64 - 4)) == "EPARAMS"
        e = conn.error("infer", {"model": "linear", "inputs": {"x": tensor(x)},
                                 "outputs_shm": {"y": dict(out, size=8)}})
        assert e["name"] == "EDATA"
        assert err(dict(ref, region=rid + 1000)) == "ENOREGION"
        mm.close()
        assert conn.call("shm.unregister", {"region": rid}) == {"region": rid}
        assert conn.error("shm.unregister", {"region": rid})["name"] == "ENOREGION"
    finally:
        os.close(fd)


def test_shm_register_rules(conn):
    fd = memfd(4096, seal=False)
    try:
        assert shm_register(conn, fd, 4096)[2]["name"] == "ESEAL"
    finally:
        os.close(fd)
    fd = memfd(4096)
    try:
        # "be at least size bytes"
        assert shm_register(conn, fd, 8192)[2]["name"] == "EPARAMS"
        assert shm_register(conn, fd, 0)[2]["name"] == "EPARAMS"
    finally:
        os.close(fd)
    # No descriptor at all.
    assert conn.error("shm.register", {"size": 4096})["name"] == "EPARAMS"
    assert conn.call("ping") == "pong"


# ---- admin ----

def test_admin_load_reload_unload(conn, pd):
    # Pipelined: "a pipelined infer after a model.load sees the model".
    x = tensor(np.ones((1, 768), np.float32))
    conn.send_raw(pack([0, 801, "model.load", {"model": "lin2", "path": "linear.dynq"}]) +
                  pack([0, 802, "infer", {"model": "lin2", "inputs": {"x": x}}]))
    r = conn.response(801)
    assert r[2] is None, r[2]
    assert r[3] == {"model": "lin2", "version": 1}
    assert conn.response(802)[2] is None
    assert conn.call("model.info", {"model": "lin2@1"})["version"] == 1
    r = conn.call("model.reload", {"model": "lin2"})
    assert r == {"model": "lin2", "version": 2}
    by = {m["name"]: m for m in conn.call("models.list")}
    assert by["lin2"]["version"] == 2
    assert conn.call("stats")["models"]["lin2"]["version"] == 2
    assert conn.call("model.info", {"model": "lin2@2"})["version"] == 2
    assert conn.error("model.info", {"model": "lin2@1"})["name"] == "ENOMODEL"
    assert conn.call("model.unload", {"model": "lin2"}) == {"model": "lin2"}
    assert conn.error("model.info", {"model": "lin2"})["name"] == "ENOMODEL"
    # shadow_rate is a float: any msgpack number in 0..1 (float32, float64, int).
    for rate in (b"\xca" + struct.pack(">f", 0.5), b"\xcb" + struct.pack(">d", 0.25), b"\x01"):
        conn.send_raw(b"\x94\x00\xcd\x03\x21\xaamodel.load\x83\xa5model\xa4lin3"
                      b"\xa4path\xablinear.dynq\xabshadow_rate" + rate)
        r = conn.response(0x321)
        assert r[2] is None, (rate, r[2])
        conn.call("model.unload", {"model": "lin3"})
    assert conn.error("model.load", {"model": "lin3", "shadow_rate": 1.5})["name"] == "EPARAMS"


def test_shadow_stats(conn):
    # A model loaded with shadow_rate has a `shadow` map in stats: rate, runs,
    # dropped, decisions_changed, alerts, and rel_l2 / max_abs histograms
    # whose values are whole numbers of millionths.
    assert conn.call("model.load", {"model": "shd", "path": "linear.dynq",
                                    "shadow_rate": 1.0})["version"] == 1
    try:
        rng = np.random.default_rng(8)
        for _ in range(10):
            x = rng.standard_normal((2, 768)).astype(np.float32)
            conn.call("infer", {"model": "shd", "inputs": {"x": tensor(x)}})
            time.sleep(0.005)
        deadline = time.monotonic() + 10
        while True:
            st = conn.call("stats")
            sh = st["models"]["shd"]["shadow"]
            if sh["runs"] + sh["dropped"] >= 10 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert sh["rate"] == 1.0 and sh["runs"] >= 1 and sh["runs"] + sh["dropped"] == 10
        assert isinstance(sh["decisions_changed"], int) and isinstance(sh["alerts"], int)
        for k in ("shadow_runs_total", "shadow_dropped_total", "shadow_decisions_changed_total"):
            assert isinstance(st[k], int), k
        for name in ("rel_l2", "max_abs"):
            h = sh[name]
            assert set(h) >= {"count", "p50", "p90", "p99", "max", "sum", "buckets"}, name
            assert h["count"] == sh["runs"] == sum(c for _, c in h["buckets"])
            values = [h[k] for k in ("p50", "p90", "p99", "max", "sum")] + \
                [u for u, _ in h["buckets"]]
            for v in values:
                assert abs(v * 1e6 - round(v * 1e6)) < 1e-3, (name, v)
            assert 0 < h["p50"] <= h["p99"] <= h["max"]
        assert sh["rel_l2"]["max"] < 0.05  # INT8 against FP32 on this model
    finally:
        conn.call("model.unload", {"model": "shd"})


def test_load_of_a_loaded_name_reloads_it(conn):
    # "Each successful (re)load of a name increments its version".
    assert conn.call("model.load", {"model": "lin4", "path": "linear.dynq"})["version"] == 1
    assert conn.call("model.load", {"model": "lin4", "path": "linear.dynq"})["version"] == 2
    assert conn.call("model.info", {"model": "lin4"})["version"] == 2
    conn.call("model.unload", {"model": "lin4"})


def test_sessions_keep_their_version(conn):
    # An open session keeps the version it was opened on through a reload
    # and an unload of its model, until it closes.
    xs = fixture_f32("stateful_x.f32", (5, 1, 8))
    ys = fixture_f32("stateful_y.f32", (5, 1, 8))
    conn.call("model.load", {"model": "st2", "path": "stateful.dynq"})
    sid = conn.call("session.open", {"model": "st2"})["session"]

    def step(t, **more):
        r = conn.call("infer", dict(session=sid, inputs={"x": tensor(xs[t])}, precision="fp32",
                                    **more))
        assert np.allclose(array_of(r["outputs"]["y"]), ys[t], atol=1e-5), t
    step(0)
    assert conn.call("model.reload", {"model": "st2"})["version"] == 2
    step(1, model="st2@1")
    step(2, model="st2")
    conn.call("model.unload", {"model": "st2"})
    step(3)
    assert conn.error("model.info", {"model": "st2"})["name"] == "ENOMODEL"
    conn.call("session.close", {"session": sid})


def test_admin_refusals(conn, pd):
    assert conn.error("model.load", {"model": "abs", "path": "/etc/passwd"})["name"] == "EDENIED"
    assert conn.error("model.load", {"model": "up", "path": "../linear.dynq"})["name"] == "EDENIED"
    for bad in (".hidden", "a/b", "", "x" * 64, "sp ace"):
        assert conn.error("model.load", {"model": bad})["name"] == "EPARAMS", bad
    assert conn.error("model.unload", {"model": "nope"})["name"] == "ENOMODEL"
    assert conn.error("model.reload", {"model": "nope"})["name"] == "ENOMODEL"


def test_admin_needs_an_admin_peer(pd):
    # "the peer must be uid 0, dynqd's own uid, or a member of the configured
    #  admin group, checked before the params, else EDENIED."
    if os.getuid() != 0:
        pytest.skip("needs root to become another user")
    os.chmod(pd.sock, 0o666)
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: nobody, then three admin calls with bad params
        try:
            os.close(rd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with Conn(pd.sock, timeout=10) as c:
                names = [c.error(m, {"model": 5})["name"]
                         for m in ("model.load", "model.unload", "model.reload")]
                names.append(c.call("ping"))
            os.write(wr, ",".join(names).encode())
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            os.write(wr, repr(e).encode())
        os._exit(0)
    os.close(wr)
    out = b""
    while True:
        b = os.read(rd, 4096)
        if not b:
            break
        out += b
    os.close(rd)
    os.waitpid(pid, 0)
    assert out.decode() == "EDENIED,EDENIED,EDENIED,pong"


# ---- configured limits ----

def extra_daemon(name, *args):
    """A module fixture: a dynqd of its own started with args."""
    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory, model_dir):
        d = start_daemon(tmp_path_factory.mktemp(name), model_dir, *args)
        yield d
        stop_daemon(d)
    return fixture


# A 4 KiB frame cap and two sessions.
small = extra_daemon("docsmall", "--max-frame", "4K", "--max-sessions", "2")


def test_frame_cap_counts_whole_frames(small):
    # "at most --max-frame bytes": a frame of small items over the cap is
    # as fatal as one long string.
    with Conn(small.sock) as c:
        ok = pack([0, 1, "ping", {"pad": "x" * 3000}])
        c.send_raw(ok)
        assert c.response(1)[3] == "pong"
        big = pack([0, 2, "ping", {"pad": ["0123456789"] * 400}])
        assert len(big) > 4096
        c.send_raw(big)
        expect_fatal(c, "ETOOBIG")


def test_max_sessions_is_elimit(small):
    # "at most max_sessions (ELIMIT)"
    with Conn(small.sock) as c:
        a = c.call("session.open", {"model": "stateful"})["session"]
        c.call("session.open", {"model": "stateful"})
        assert c.error("session.open", {"model": "stateful"})["name"] == "ELIMIT"
        c.call("session.close", {"session": a})
        c.call("session.open", {"model": "stateful"})


def test_count_the_frame_cap_cannot_hold(small):
    # A container "declaring more items than the rest of the frame cap could
    #  hold at one byte each" is refused at its header with EPROTO: 4100
    #  declared items under a 4 KiB cap, none of them sent.
    with Conn(small.sock) as c:
        c.send_raw(b"\x94\x00\x03\xa4ping\x81\xa3pad" + b"\xdc" + struct.pack(">H", 4100))
        expect_fatal(c, "EPROTO")


def test_threads_only_when_a_gemm_split(conn):
    # "threads": N is in the answer of a request that ran alone and whose
    # large INT8 GEMMs (at least 2M multiply-adds) were split over the workers.
    workers = conn.call("server.info")["workers"]
    small_x = tensor(np.ones((1, 768), np.float32))       # 590k multiply-adds
    assert "threads" not in conn.call("infer", {"model": "linear", "inputs": {"x": small_x}})
    if workers < 2:
        pytest.skip("one worker: nothing to split over")
    big = tensor(np.ones((64, 768), np.float32))          # 38M multiply-adds
    # "Alone" is decided when the request is scheduled: the worker that
    # answered the previous call may not have counted itself idle yet (on a
    # loaded machine it can be descheduled between its answer and that), so
    # a few tries; any "threads" given must be the worker count.
    seen = []
    for _ in range(10):
        r = conn.call("infer", {"model": "linear", "inputs": {"x": big}})
        seen.append(r.get("threads"))
        if seen[-1] == workers:
            break
        time.sleep(0.02)
    assert seen[-1] == workers, seen
    assert all(t in (None, workers) for t in seen), seen


# One worker, a queue of one, one request in flight per connection.
tight = extra_daemon("doctight", "--workers", "1", "--queue", "1", "--max-inflight", "1",
                     "--inline-max", "0")


def test_inflight_cap_pauses_reading(tight):
    # A connection at its in-flight cap is not refused: dynqd reads its next
    # request once one is answered, so a pipelining client is never told
    # EOVERLOAD for its own pipeline depth.
    x = tensor(np.ones((64, 768), np.float32))
    with Conn(tight.sock) as c:
        c.send_raw(b"".join(pack([0, 100 + i, "infer", {"model": "linear", "inputs": {"x": x}}])
                            for i in range(12)))
        assert [c.response(100 + i)[2] for i in range(12)] == [None] * 12


def test_timeout_ms_0_is_no_deadline(tight):
    # "0 ... means no deadline": on a worker (this dynqd never runs a
    # request on its loop, so a deadline already due would always be
    # EDEADLINE) every such request runs.
    t = tensor(np.ones((1, 768), np.float32))
    with Conn(tight.sock) as c:
        for _ in range(3):
            assert "outputs" in c.call("infer", {"model": "linear", "inputs": {"x": t},
                                                 "timeout_ms": 0})


def test_full_queue_is_eoverload(tight):
    # "EOVERLOAD (retryable: true: the global queue is full ...)": eight
    # connections at once against one worker and a queue of one.
    x = tensor(np.ones((256, 768), np.float32))
    conns = [Conn(tight.sock) for _ in range(8)]
    try:
        frames = [pack([0, 7, "infer", {"model": "linear", "inputs": {"x": x}}]) for _ in conns]
        for c, f in zip(conns, frames):
            c.send_raw(f)
        errs = [c.response(7)[2] for c in conns]
    finally:
        for c in conns:
            c.close()
    refused = [e for e in errs if e is not None]
    assert refused, "no request was refused"
    assert all(e["name"] == "EOVERLOAD" and e["retryable"] is True for e in refused), refused


batching = extra_daemon("docbatch", "--batch-max", "4", "--batch-delay", "200000")


def test_batched_answers_are_marked_and_bit_identical(batching):
    # "merged answers carry "batch": N"; "Results are bit-identical to unbatched".
    xs = [np.random.default_rng(10 + i).standard_normal((2, 768)).astype(np.float32)
          for i in range(4)]
    with Conn(batching.sock) as c:
        c.send_raw(b"".join(pack([0, 20 + i, "infer", {"model": "linear",
                                                        "inputs": {"x": tensor(xs[i])}}])
                            for i in range(4)))
        merged = [c.response(20 + i)[3] for i in range(4)]
        alone = [c.call("infer", {"model": "linear", "inputs": {"x": tensor(x)}}) for x in xs]
    assert any(r.get("batch", 1) >= 2 for r in merged), [r.get("batch") for r in merged]
    for m, a in zip(merged, alone):
        assert m["outputs"]["y"]["data"] == a["outputs"]["y"]["data"]
        assert m["outputs"]["y"]["shape"] == [2, 768]


def test_sigterm_answers_what_was_read_then_closes(tmp_path, model_dir):
    # "## Shutdown": every request dynqd read is answered (a result, or
    # ESHUTDOWN for an infer not yet queued); then the connection closes,
    # and a request sent after SIGTERM is never answered.  The client reads
    # all the time but slower than dynqd finishes answers, so its unsent
    # output grows while it moves: it must not be taken for one that does
    # not read (dropped, with answers lost).
    import signal
    import threading
    d = start_daemon(tmp_path, model_dir, "--workers", "1")
    try:
        c = Conn(d.sock, timeout=60)
        got = []

        def reader():
            up = msgpack.Unpacker(raw=False, max_buffer_size=256 << 20)
            c.sock.settimeout(60)
            while True:
                try:
                    data = c.sock.recv(128 << 10)
                except OSError:
                    return
                if not data:
                    return
                up.feed(data)
                got.extend(up)
                time.sleep(0.01)  # about 12 MB/s: slower than one worker answers
        big = tensor(np.ones((512, 768), np.float32))
        c.send_raw(b"".join(pack([0, 10 + i, "infer", {"model": "linear", "inputs": {"x": big}}])
                            for i in range(16)))
        th = threading.Thread(target=reader)
        th.start()
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        try:
            c.send_raw(pack([0, 99, "ping", {}]))
        except OSError:
            pass  # already closed: as good
        th.join(60)
        assert not th.is_alive(), "the connection was not closed"
        c.close()
        answered = {m[1]: m for m in got}
        assert set(answered) == {10 + i for i in range(16)}, \
            (sorted(answered), d.log_text()[-300:])
        for m in answered.values():
            assert m[2] is None or m[2]["name"] == "ESHUTDOWN", m[2]
        assert d.proc.wait(60) == 0
    finally:
        stop_daemon(d)


def test_frame_of_exactly_max_frame_bytes(pd):
    # "at most --max-frame bytes (default 64 MiB)": a frame of 64 MiB
    # exactly is served, one byte more is ETOOBIG.
    small_ins = {f"i_{d}": tensor(np.zeros((1, 1), WIRE_DTYPES[d])) for d in WIRE_DTYPES
                 if d != "int8"}

    def frame(n, data=None):
        t = {"dtype": "int8", "shape": [1, n], "data": data if data is not None else bytes(n)}
        return pack([0, 3, "infer", {"model": "dtypes", "inputs": dict(small_ins, i_int8=t)}])
    cap = 64 << 20
    n = cap - (len(frame(1 << 20)) - (1 << 20))  # same header widths at both sizes
    payload = np.random.default_rng(9).integers(-128, 128, n, dtype=np.int8).tobytes()
    exact = frame(n, payload)
    assert len(exact) == cap
    with Conn(pd.sock, timeout=120) as c:
        c.send_raw(exact)
        r = c.response(3)
        assert r[2] is None, r[2]
        assert r[3]["outputs"]["o_int8"]["data"] == payload
        del r
        over = frame(n + 1)
        try:  # refused at the bin's header: dynqd may close before it all goes
            c.send_raw(over)
        except (BrokenPipeError, ConnectionResetError):
            pass
        expect_fatal(c, "ETOOBIG")


idle = extra_daemon("docidle", "--idle-timeout", "1")


def test_idle_connections_close_silently(idle):
    # "A connection with nothing in flight that has sent no complete request
    #  for idle_timeout_s is closed without a message; bytes of an unfinished
    #  frame do not count."
    with Conn(idle.sock) as c, Conn(idle.sock) as partial:
        assert c.call("ping") == "pong"
        t0 = time.monotonic()
        frame = pack([0, 1, "ping", {"pad": "x" * 40}])
        try:  # a frame trickling in a byte at a time, never finished
            for k in range(20):
                partial.send_raw(frame[k:k + 1])
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.closed_by_peer(timeout=5) and not c.pending
        assert partial.closed_by_peer(timeout=5) and not partial.pending
        assert 0.9 < time.monotonic() - t0 < 5
    with Conn(idle.sock) as busy:  # requests keep it open
        for _ in range(15):
            assert busy.call("ping") == "pong"
            time.sleep(0.1)


shadowed = extra_daemon("docshadow", "--shadow-rate", "1", "--shadow-alert", "0.000001")


def test_health_ready_quality_is_a_warning(shadowed):
    # "quality (only when non-empty) lists models whose shadow FP32 re-runs
    #  crossed shadow_alert within the alert window: {model, rel_l2, alert,
    #  message}; a warning, not a readiness failure."
    with Conn(shadowed.sock) as c:
        assert "quality" not in c.call("health.ready")
        rng = np.random.default_rng(12)
        deadline = time.monotonic() + 10
        while True:
            x = rng.standard_normal((2, 768)).astype(np.float32)
            c.call("infer", {"model": "linear", "inputs": {"x": tensor(x)}})
            r = c.call("health.ready")
            if "quality" in r or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert r["ready"] is True
        q = r["quality"]
        assert [e["model"] for e in q] == ["linear"]
        assert set(q[0]) == {"model", "rel_l2", "alert", "message"}
        assert q[0]["alert"] == 1e-6 and q[0]["rel_l2"] > q[0]["alert"]
        assert isinstance(q[0]["message"], str) and q[0]["message"]
