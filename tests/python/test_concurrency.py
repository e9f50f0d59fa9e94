"""One connection shared by threads, and pipelined calls matched by msgid."""
import threading

import numpy as np
import pytest

import dynq

WIRE = ["float32", "int8", "uint8", "int32", "int64"]


def dtype_inputs(k):
    ins = {f"i_{d}": np.zeros((1, 4), d) for d in WIRE}
    ins["i_int64"] = np.arange(4, dtype=np.int64).reshape(1, 4) + 1000 * k
    return ins


def test_threads_share_one_client(client):
    errors, done = [], []

    def worker(t):
        try:
            for i in range(40):
                k = t * 1000 + i
                r = client.infer("dtypes", dtype_inputs(k))
                if not np.array_equal(r["o_int64"], dtype_inputs(k)["i_int64"]):
                    errors.append((t, i, r["o_int64"]))
            done.append(t)
        except Exception as e:  # reported below; a thread cannot fail the test itself
            errors.append((t, repr(e)))

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors[:3]
    assert sorted(done) == list(range(8))


def test_pipelined_answers_match_their_requests(client):
    pend = [client.submit("dtypes", dtype_inputs(k)) for k in range(64)]
    assert len({p.msgid for p in pend}) == 64
    # Collected in reverse: every answer read on the way is filed by msgid.
    for k in reversed(range(64)):
        r = pend[k].result()
        assert np.array_equal(r["o_int64"], dtype_inputs(k)["i_int64"])
    # A second result() returns the same answer.
    assert np.array_equal(pend[0].result()["o_int64"], dtype_inputs(0)["i_int64"])


def test_pipelined_errors_stay_with_their_call(client):
    x = np.zeros((1, 768), np.float32)
    good = client.submit("linear", {"x": x})
    bad = client.submit("nope", {"x": x})
    raw = client.send("ping")
    with pytest.raises(dynq.ENOMODEL):
        bad.result()
    assert raw.result() == "pong"
    assert good.result()["y"].shape == (1, 768)


def test_dropped_pending_is_forgotten(client):
    for _ in range(10):
        client.submit("linear", {"x": np.zeros((1, 768), np.float32)})
    client.ping()
    assert not client._pending and not client._replies


def test_threads_collect_each_others_answers(client):
    # Many threads waiting at once on one connection: whichever reads files
    # the others' answers.
    pend = [client.submit("dtypes", dtype_inputs(k)) for k in range(32)]
    out = [None] * 32

    def collect(k):
        out[k] = pend[k].result()["o_int64"]

    ts = [threading.Thread(target=collect, args=(k,)) for k in range(32)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    for k in range(32):
        assert np.array_equal(out[k], dtype_inputs(k)["i_int64"]), k


def test_closed_client_raises_eclosed(daemon):
    c = dynq.Client(daemon.sock, timeout=60)
    c.close()
    with pytest.raises(dynq.ECLOSED):
        c.ping()
    assert dynq.ECLOSED.retryable
