"""dynq.Client: one connection to dynqd, safe to share between threads.

Requests are msgpack-RPC frames ``[0, msgid, method, params]``; answers
``[1, msgid, error, result]`` may come back in any order.  Any number of
calls may be in flight on one connection: ``submit()``/``send()`` return a
Pending at once, and ``Pending.result()`` waits for that msgid's answer.

No reader thread: the first caller that waits becomes the reader, files
every answer it reads under its msgid and wakes the callers they belong to;
when its own answer is in it hands the reading over to a caller still
waiting.  A lone caller therefore reads its answer itself, with no thread
hand-off on the way (a hand-off costs more than a small request).
"""
import array
import errno
import grp
import itertools
import os
import socket
import struct
import threading
import time

import msgpack

from . import _errors
from ._errbase import ConnectError, DynqError
from ._errors import ECLOSED, EPARAMS, EPROTO, ETIMEDOUT, ETOOBIG
from ._scan import MAX_ELEMS, _Scan
from ._tensor import as_input, decode, encode_inline
from .shm import ShmRegion

SYSTEM_SOCKET = "/run/dynq/dynqd.sock"

# The largest answer we buffer, as libdynqclient (DYNQ__CLIENT_MAX_FRAME).
MAX_FRAME = 1 << 30
_READ_CHUNK = 1 << 18
_PRECISIONS = ("int8", "fp32")
# The largest client timeout, as libdynqclient's DYNQ_CLIENT_TIMEOUT_MAX_MS.
_TIMEOUT_MAX_MS = 24 * 3600 * 1000
_ENV = object()   # Client(timeout=...) not given: $DYNQ_CLIENT_TIMEOUT_MS decides


def _env_timeout():
    """$DYNQ_CLIENT_TIMEOUT_MS in seconds when it holds 1..the maximum; else
    None (no limit), as libdynqclient reads it: a typo must not stop a
    program connecting."""
    v = os.environ.get("DYNQ_CLIENT_TIMEOUT_MS", "")
    if not v.isdigit() or not 0 < int(v) <= _TIMEOUT_MAX_MS:
        return None
    return int(v) / 1000


def _check_timeout(timeout):
    if timeout is None:
        return None
    if type(timeout) not in (int, float) or not 0 < timeout <= _TIMEOUT_MAX_MS / 1000:
        raise EPARAMS(f"timeout {timeout!r} is not a number of seconds in (0, "
                      f"{_TIMEOUT_MAX_MS // 1000}] (None: no limit)")
    return timeout


def socket_paths(path=None):
    """The socket paths Client(path) tries, in order.

    An explicit path, else $DYNQ_SOCKET, is the only one tried.  Otherwise the
    per-user path $XDG_RUNTIME_DIR/dynq/dynqd.sock comes first, then the
    system service's /run/dynq/dynqd.sock (a login session sets
    XDG_RUNTIME_DIR even when dynqd runs as the system service).  As in
    libdynqclient, only ENOENT and ECONNREFUSED move on to the next path.
    """
    if path:
        return [os.fspath(path)]
    env = os.environ.get("DYNQ_SOCKET")
    if env:
        return [env]
    out = []
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        out.append(os.path.join(xdg, "dynq", "dynqd.sock"))
    out.append(SYSTEM_SOCKET)
    return out


def _errno_name(e):
    if e.errno is None and "too long" in str(e):
        return "ENAMETOOLONG"  # Python's own check of sun_path sets no errno
    return errno.errorcode.get(e.errno, "ESYSTEM") if e.errno else "ESYSTEM"


def _connect_one(p, timeout):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        if timeout is not None:
            # A Unix connect sleeps while the listener's queue is full (a
            # stopped dynqd) for as long as the send timeout allows, then
            # fails with EAGAIN; a socket in Python's timeout mode would
            # fail at once instead.
            sec = int(timeout)
            usec = max(int((timeout - sec) * 1e6), 0 if sec else 1)  # 0/0 would mean forever
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", sec, usec))
        try:
            s.connect(p)
        except BlockingIOError:
            if timeout is None:
                raise
            raise TimeoutError(errno.ETIMEDOUT, f"dynqd accepted no connection within "
                               f"{timeout} s") from None
        s.settimeout(timeout)
        return s
    except BaseException:
        s.close()
        raise


def _socket_group(path):
    """The group of the socket at path, by name; "dynq" (the system
    socket's) when it cannot be looked at."""
    try:
        return grp.getgrgid(os.stat(path).st_gid).gr_name
    except (OSError, KeyError):
        return "dynq"


def _connect(paths, timeout):
    tried = []
    for p in paths:
        try:
            return _connect_one(p, timeout), p
        except OSError as e:
            tried.append((p, _errno_name(e), e.strerror or str(e)))
            # Only "nobody there" moves on (as libdynqclient): a socket we
            # may not open is dynqd's, and a later path would hide why.
            if e.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                break
    names = [t[1] for t in tried]
    name = names[-1]
    msg = "cannot connect to dynqd: " + "; ".join(f"{p}: {why}" for p, _, why in tried)
    if name == "EACCES":
        msg += f" (the socket is group {_socket_group(tried[-1][0])}: join that group, " \
               "or set DYNQ_SOCKET)"
    elif name == "ETIMEDOUT":
        msg += " (dynqd is stopped or its queue is full: `systemctl status dynqd`)"
    elif all(n in ("ENOENT", "ECONNREFUSED") for n in names):
        msg += " (is dynqd running? `systemctl status dynqd.socket`)"
    raise ConnectError(msg, tried, name)


def _server_error(err):
    """The exception for an error map {code, name, message, retryable}."""
    if not isinstance(err, dict):
        return _errors.ESERVER(f"dynqd answered an error that is not a map: {err!r}")
    name = err.get("name")
    msg = err.get("message") or ""
    code = err.get("code")
    cls = _errors.BY_NAME.get(name) if isinstance(name, str) else None
    retry = err.get("retryable")
    if cls is None:
        # A name this client does not know (a newer dynqd): keep it.
        return DynqError(str(msg), name=name if isinstance(name, str) else "ESERVER",
                         code=code if type(code) is int else None,
                         retryable=retry if isinstance(retry, bool) else None)
    return cls(str(msg), code=code if type(code) is int else None,
               retryable=retry if isinstance(retry, bool) else None)


def _timed_out(timeout):
    # Retryable: the same request may well be answered in time later.
    return ETIMEDOUT(f"no answer from dynqd within {timeout} s (client timeout): request "
                     f"abandoned, a late answer is discarded", retryable=True)


class InferResult(dict):
    """Outputs by name (numpy arrays), plus dynqd's timings of the request.

    Inline outputs are read-only views of the received bytes (``.copy()``
    one to modify it); shared-memory outputs are views of the region.
    """

    compute_us = queue_us = decode_us = 0
    batch = threads = None


class Pending:
    """An answer not collected yet; result() waits for it (any thread may)."""

    __slots__ = ("_client", "msgid", "_decode", "_done", "_value", "__weakref__")

    def __init__(self, client, msgid, decode):
        self._client = client
        self.msgid = msgid
        self._decode = decode
        self._done = False
        self._value = None

    def result(self, timeout=None):
        if not self._done:
            err, res = self._client._wait(self.msgid, timeout)
            self._done = True
            self._value = (err, res)
        err, res = self._value
        if err is not None:
            raise _server_error(err)
        return self._decode(res) if self._decode else res

    def __del__(self):
        # Dropped before its answer was collected: stop keeping it.
        if not self._done:
            try:
                self._client._forget(self.msgid)
            except Exception:
                pass


class Session:
    """Streaming state kept by dynqd between calls (session.open).

    ``with client.session("vad") as s: s.step({"input": chunk})``; the bound
    state inputs come from the previous step, so pass only the others.
    """

    def __init__(self, client, sid, inputs, bindings):
        self._client = client
        self.id = sid
        self.inputs = inputs
        self.bindings = bindings
        self.closed = False

    def step(self, inputs, *, precision=None, timeout_ms=None, out=None):
        return self._client.infer(None, inputs, precision=precision, timeout_ms=timeout_ms,
                                  out=out, session=self.id)

    infer = step

    def reset(self):
        self._client.call("session.reset", {"session": self.id})

    def close(self):
        if self.closed:
            return
        self.closed = True
        if not self._client.closed:
            self._client.call("session.close", {"session": self.id})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Client:
    """A connection to dynqd.

    path: the socket; None searches as dynqctl does (see socket_paths()).
    timeout: seconds the connect, each send and each call's wait for its
    answer may take before ETIMEDOUT (None: no limit; not given:
    $DYNQ_CLIENT_TIMEOUT_MS when set, as libdynqclient).  A call that times
    out abandons its request (a late answer is dropped) and the connection
    stays usable; a send that times out closes it.  dynqd's own deadline
    for starting an infer is infer's timeout_ms.
    """

    def __init__(self, path=None, *, timeout=_ENV):
        timeout = _env_timeout() if timeout is _ENV else _check_timeout(timeout)
        self._sock, self.path = _connect(socket_paths(path), timeout)
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._wlock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._reading = False
        self._pending = set()       # msgids whose answer someone may collect
        self._replies = {}          # msgid -> (error, result), not collected yet
        self._broken = None         # exception once the stream is unusable
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_FRAME,
                                          max_array_len=MAX_ELEMS, max_map_len=MAX_ELEMS)
        self._fed = 0               # bytes fed to the unpacker
        self._frame_end = 0         # ... up to the end of the last whole answer
        self._scan = None           # the incomplete answer's header check, if one is pending
        self._rbuf = bytearray(_READ_CHUNK)
        self._regions = {}
        self.closed = False

    # ---- plumbing ----

    def _next_id(self):
        i = next(self._ids) & 0xFFFFFFFF
        return i if i else self._next_id()

    def _send(self, method, params, fds=None):
        if self._broken is not None:
            raise self._broken
        msgid = self._next_id()
        frame = msgpack.packb([0, msgid, method, params], use_bin_type=True)
        with self._cond:
            self._pending.add(msgid)
        try:
            with self._wlock:
                if self._broken is not None:
                    raise self._broken
                try:
                    if fds:
                        # The descriptor rides on the frame's first byte(s).
                        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                        sent = self._sock.sendmsg([frame], anc)
                        if sent < len(frame):
                            self._sock.sendall(memoryview(frame)[sent:])
                    else:
                        self._sock.sendall(frame)
                except OSError as e:
                    # Part of a frame may be out: the stream is unusable.
                    if isinstance(e, (BrokenPipeError, ConnectionResetError)):
                        exc = ECLOSED("connection closed by dynqd while sending")
                    elif isinstance(e, socket.timeout):
                        exc = ETIMEDOUT(f"dynqd took no bytes of a request for "
                                        f"{self._sock.gettimeout()} s (client timeout): "
                                        f"connection closed", retryable=True)
                    else:
                        exc = _errors.BY_NAME.get(_errno_name(e), _errors.ESYSTEM)(
                            f"send to dynqd: {e.strerror or e}")
                    self._fail(exc)
                    raise exc from None
        except BaseException:
            self._forget(msgid)
            raise
        return msgid

    def _forget(self, msgid):
        with self._cond:
            self._pending.discard(msgid)
            self._replies.pop(msgid, None)

    def _fail(self, exc):
        with self._cond:
            if self._broken is None:
                self._broken = exc
            self._cond.notify_all()

    def _file(self, msg):
        """File one decoded frame; call with _cond held."""
        if not isinstance(msg, list) or not msg or type(msg[0]) is not int or \
                msg[0] not in (0, 1, 2):
            raise EPROTO(f"malformed response from dynqd: {str(msg)[:80]}")
        if msg[0] != 1:
            return  # requests and notifications are not answers to us (as libdynqclient)
        if len(msg) != 4 or type(msg[1]) is not int or not 0 <= msg[1] <= 0xFFFFFFFF:
            raise EPROTO(f"malformed response envelope from dynqd: {str(msg)[:80]}")
        msgid, err, res = msg[1], msg[2], msg[3]
        if msgid == 0 and err is not None:
            # dynqd could not decode a frame of ours and closes the stream.
            raise _server_error(err)
        if msgid in self._pending:
            self._pending.discard(msgid)
            self._replies[msgid] = (err, res)

    def _wait(self, msgid, timeout=None):
        timeout = self._timeout if timeout is None else _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if msgid in self._replies:
                    return self._replies.pop(msgid)
                if self._broken is not None:
                    self._pending.discard(msgid)
                    raise self._broken
                if msgid not in self._pending:
                    raise EPARAMS(f"msgid {msgid} is not awaiting an answer on this connection")
                if not self._reading:
                    self._reading = True
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self._pending.discard(msgid)
                    raise _timed_out(timeout)
                self._cond.wait(left)
        return self._read_until(msgid, deadline, timeout)

    def _read_until(self, msgid, deadline, timeout):
        sock, buf = self._sock, self._rbuf
        try:
            while True:
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise socket.timeout()
                    sock.settimeout(left)
                n = sock.recv_into(buf)
                if n == 0:
                    part = self._fed - self._frame_end
                    raise ECLOSED(f"connection closed by dynqd in the middle of an answer "
                                  f"({part} bytes of it came)" if part else
                                  "connection closed by dynqd")
                chunk = memoryview(buf)[:n]
                self._unpacker.feed(chunk)
                self._fed += n
                with self._cond:
                    filed = False
                    for msg in self._unpacker:
                        self._file(msg)
                        filed = True
                        # (tell() counts the headers of an incomplete answer
                        # too: only right after an answer is it a boundary)
                        self._frame_end = self._unpacker.tell()
                    self._check_partial(chunk, filed)
                    if msgid in self._replies:
                        self._reading = False
                        self._cond.notify_all()
                        return self._replies.pop(msgid)
                    if filed:
                        self._cond.notify_all()
        except socket.timeout:
            # The stream is intact (whole frames are buffered): only this call gives up.
            with self._cond:
                self._reading = False
                self._pending.discard(msgid)
                self._cond.notify_all()
            raise _timed_out(timeout) from None
        except DynqError as e:
            self._reading_failed(e)
            raise
        except msgpack.exceptions.BufferFull:
            e = ETOOBIG(f"response larger than {MAX_FRAME} bytes")
            self._reading_failed(e)
            raise e from None
        except (ValueError, msgpack.exceptions.UnpackException) as e:
            e2 = EPROTO(f"undecodable response from dynqd: {e}")
            self._reading_failed(e2)
            raise e2 from None
        except ConnectionResetError:
            e = ECLOSED("connection reset by dynqd")
            self._reading_failed(e)
            raise e from None
        except OSError as e:
            e2 = _errors.BY_NAME.get(_errno_name(e), _errors.ESYSTEM)(
                f"read from dynqd: {e.strerror or e}")
            self._reading_failed(e2)
            raise e2 from None
        finally:
            if deadline is not None:
                try:
                    sock.settimeout(self._timeout)
                except OSError:
                    pass

    def _check_partial(self, chunk, filed):
        """Bound what the answer still incomplete after this read declares
        (see _scan.py): a whole answer, the common case, costs nothing."""
        start = self._frame_end
        if start == self._fed:
            self._scan = None
            return
        if filed or self._scan is None:
            # the incomplete answer began in this chunk
            self._scan = _Scan(MAX_FRAME)
            chunk = chunk[len(chunk) - (self._fed - start):]
        self._scan.feed(chunk)

    def _reading_failed(self, exc):
        with self._cond:
            self._reading = False
            if self._broken is None:
                self._broken = exc
            self._cond.notify_all()

    # ---- generic calls ----

    def send(self, method, params=None, *, decode=None, fds=None):
        """Send one request now; the Pending's result() waits for its answer."""
        if not isinstance(method, str) or not 0 < len(method.encode()) <= 63:
            raise EPARAMS("method name must be 1 to 63 bytes")
        return Pending(self, self._send(method, {} if params is None else params, fds), decode)

    def call(self, method, params=None, *, fds=None, timeout=None):
        """Send a request and wait for its result (the decoded msgpack object);
        timeout: seconds, for this call instead of the client's."""
        _check_timeout(timeout)                 # refused before anything is sent
        return self.send(method, params, fds=fds).result(timeout)

    # ---- typed calls ----

    def ping(self):
        r = self.call("ping")
        if r != "pong":
            raise EPROTO(f"ping: dynqd answered {r!r} instead of \"pong\"")

    def server_info(self):
        return self._map("server.info", self.call("server.info"))

    def models(self):
        """One map per model: name, path, file_bytes, inputs, outputs (counts), version."""
        r = self.call("models.list")
        if not isinstance(r, list):
            raise EPROTO("models.list: reply is not an array")
        return r

    def model_info(self, model):
        return self._map("model.info", self.call("model.info", {"model": model}))

    def health(self):
        """{"live", "ready", "models", "reason", "quality"}; live is answered even
        when every worker is busy.  quality lists the models whose INT8 answers
        crossed shadow_alert within the alert window, each {"model", "rel_l2",
        "alert", "message"} (a warning: such a daemon is still ready)."""
        live = self.send("health.live")
        ready = self.send("health.ready")
        lv = self._map("health.live", live.result())
        rd = self._map("health.ready", ready.result())
        quality = rd.get("quality", [])
        if not isinstance(quality, list) or not all(isinstance(q, dict) for q in quality):
            raise EPROTO("health.ready: quality is not a list of maps")
        return {"live": lv.get("status") == "ok", "ready": bool(rd.get("ready")),
                "models": rd.get("models", 0), "reason": rd.get("reason", ""),
                "quality": quality}

    def stats(self):
        return self._map("stats", self.call("stats"))

    @staticmethod
    def _map(method, r):
        if not isinstance(r, dict):
            raise EPROTO(f"{method}: reply is not a map")
        return r

    # ---- admin (root, dynqd's uid or the admin group; else EDENIED) ----

    def load(self, model, path=None, **batch):
        """Load (and warm) `path` (relative to dynqd's model directory; default
        MODEL.dynq) as `model`; returns the version now serving.  batch:
        max_batch=, max_delay_us= for dynamic batching."""
        p = {"model": model}
        if path is not None:
            p["path"] = path
        p.update(batch)
        return self._map("model.load", self.call("model.load", p)).get("version")

    def unload(self, model):
        self.call("model.unload", {"model": model})

    def reload(self, model):
        return self._map("model.reload", self.call("model.reload", {"model": model})).get("version")

    # ---- inference ----

    def _infer_params(self, model, inputs, precision, timeout_ms, out, session):
        if not isinstance(inputs, dict):
            raise EPARAMS("inputs must be a dict of name -> array")
        p = {}
        if model is not None:
            if not isinstance(model, str) or not model:
                raise EPARAMS(f"model name {model!r} is not a non-empty string")
            p["model"] = model
        ins = {}
        for name, value in inputs.items():
            wname, arr = as_input(name, value)
            # A view into one of our regions travels as a reference (as_input
            # returns the caller's array itself when it needs no conversion).
            ref = self._region_ref(arr) if arr is value else None
            if ref is not None:
                ins[name] = {"dtype": wname, "shape": list(arr.shape), "shm": ref}
            else:
                ins[name] = encode_inline(wname, arr)
        p["inputs"] = ins
        if precision is not None:
            if precision not in _PRECISIONS:
                raise EPARAMS(f"unknown precision {precision!r} (int8 or fp32)")
            p["precision"] = precision
        if timeout_ms:
            if type(timeout_ms) is not int or timeout_ms < 0 or timeout_ms > 0xFFFFFFFF:
                raise EPARAMS(f"timeout_ms {timeout_ms!r} is not a whole number of milliseconds")
            p["timeout_ms"] = timeout_ms
        if session is not None:
            p["session"] = session
        if out:
            refs = {}
            for name, view in out.items():
                if not isinstance(name, str) or not name:
                    raise EPARAMS(f"out: output name {name!r} is not a non-empty string")
                ref = self._region_ref(view) if hasattr(view, "__array_interface__") else None
                if ref is None:
                    raise EPARAMS(f"out['{name}'] is not a contiguous view of a shared-memory "
                                  f"region of this client (Client.shm(size).ndarray(...))")
                refs[name] = ref
            p["outputs_shm"] = refs
        return p

    def _region_ref(self, arr):
        for region in self._regions.values():
            ref = region.ref_of(arr)
            if ref is not None:
                return ref
        return None

    def _decode_infer(self, res, out=None):
        if not isinstance(res, dict) or not isinstance(res.get("outputs"), dict):
            raise EPROTO("infer: reply field 'outputs' is missing or has the wrong type")
        r = InferResult()
        for name, t in res["outputs"].items():
            a = decode(name, t, self._regions)
            if out and "shm" in t:
                # The caller's own view when the output filled it as given.
                mine = out.get(name)
                if mine is not None and mine.shape == a.shape and mine.dtype == a.dtype and \
                        mine.__array_interface__["data"][0] == a.__array_interface__["data"][0]:
                    a = mine
            r[name] = a
        for k in ("compute_us", "queue_us", "decode_us", "batch", "threads"):
            if k in res:
                v = res[k]
                if type(v) is not int and v is not None:
                    raise EPROTO(f"infer: reply field '{k}' is not an integer")
                setattr(r, k, v)
        return r

    def submit(self, model, inputs, *, precision=None, timeout_ms=None, out=None, session=None):
        """infer() without waiting: returns a Pending whose result() is the InferResult."""
        p = self._infer_params(model, inputs, precision, timeout_ms, out, session)
        dec = self._decode_infer if not out else (lambda res: self._decode_infer(res, out))
        return Pending(self, self._send("infer", p), dec)

    def infer(self, model, inputs, *, precision=None, timeout_ms=None, out=None, session=None,
              timeout=None):
        """Run `model` on inputs {name: array}; returns {name: array} (an InferResult).

        precision: None (dynqd's default, int8), "int8" or "fp32" (the FP32
        reference path).  timeout_ms: dynqd answers EDEADLINE if the request
        has not started by then.  timeout: seconds this call waits for the
        answer (ETIMEDOUT after; default: the client's).  out: {output name:
        view of a shared-memory region} to have outputs written in place.
        """
        _check_timeout(timeout)                 # refused before anything is sent
        return self.submit(model, inputs, precision=precision, timeout_ms=timeout_ms,
                           out=out, session=session).result(timeout)

    # ---- sessions ----

    def session(self, model, *, bindings=None, detached=False, idle_timeout_ms=None):
        p = {"model": model}
        if bindings is not None:
            p["bindings"] = dict(bindings)
        if detached:
            p["detached"] = True
        if idle_timeout_ms is not None:
            p["idle_timeout_ms"] = idle_timeout_ms
        r = self._map("session.open", self.call("session.open", p))
        sid = r.get("session")
        if type(sid) is not int:
            raise EPROTO("session.open: reply field 'session' is missing or has the wrong type")
        return Session(self, sid, r.get("inputs", []), r.get("bindings", {}))

    # ---- shared memory ----

    def shm(self, size):
        """A new sealed shared-memory region of `size` bytes registered on this connection."""
        return ShmRegion(self, size)

    def shm_register(self, fd, size):
        """Hand your own memfd to dynqd (it must carry F_SEAL_SHRINK); returns the region id."""
        if type(fd) is not int or fd < 0:
            raise _errors.EINVAL("shm.register: no file descriptor")
        if type(size) is not int or size <= 0:
            raise EPARAMS(f"shm.register: size {size!r} is not a positive byte count")
        r = self._map("shm.register", self.call("shm.register", {"size": size}, fds=[fd]))
        rid = r.get("region")
        if type(rid) is not int or rid < 0:
            raise EPROTO("shm.register: reply field 'region' is missing or has the wrong type")
        return rid

    def shm_unregister(self, region):
        self.call("shm.unregister", {"region": region})

    # ---- lifetime ----

    def close(self):
        if self.closed:
            return
        self.closed = True
        for region in list(self._regions.values()):
            region._release()
        self._regions.clear()
        self._fail(ECLOSED("connection closed by this client"))
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<dynq.Client {self.path}{' closed' if self.closed else ''}>"
