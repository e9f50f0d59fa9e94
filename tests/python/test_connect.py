"""Finding dynqd's socket: the same search as dynqctl."""
import os

import pytest

import dynq


def test_socket_paths_order(monkeypatch):
    monkeypatch.delenv("DYNQ_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/4242")
    assert dynq.socket_paths() == ["/run/user/4242/dynq/dynqd.sock", dynq.SYSTEM_SOCKET]
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert dynq.socket_paths() == [dynq.SYSTEM_SOCKET]
    monkeypatch.setenv("DYNQ_SOCKET", "/tmp/x.sock")
    assert dynq.socket_paths() == ["/tmp/x.sock"]
    assert dynq.socket_paths("/explicit.sock") == ["/explicit.sock"]


def test_connect_error_names_every_path_tried(monkeypatch, tmp_path):
    monkeypatch.delenv("DYNQ_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr(dynq.client, "SYSTEM_SOCKET", str(tmp_path / "system.sock"))
    with pytest.raises(dynq.ConnectError) as ei:
        dynq.Client()
    e = ei.value
    assert [t[0] for t in e.tried] == [str(tmp_path / "dynq" / "dynqd.sock"),
                                       str(tmp_path / "system.sock")]
    assert e.name == "ENOENT" and "is dynqd running" in str(e)
    assert str(tmp_path / "system.sock") in str(e)


def test_search_falls_through_to_the_system_path(monkeypatch, tmp_path, daemon):
    monkeypatch.delenv("DYNQ_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr(dynq.client, "SYSTEM_SOCKET", daemon.sock)
    with dynq.Client() as c:
        assert c.path == daemon.sock
        c.ping()


def test_env_socket(monkeypatch, daemon):
    monkeypatch.setenv("DYNQ_SOCKET", daemon.sock)
    with dynq.Client() as c:
        c.ping()


@pytest.mark.skipif(os.geteuid() == 0, reason="root passes the permission check")
def test_permission_error_says_so(tmp_path, monkeypatch):
    import socket
    p = str(tmp_path / "locked.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(p)
    s.listen(1)
    os.chmod(p, 0)
    try:
        with pytest.raises(dynq.ConnectError) as ei:
            dynq.Client(p)
        import grp
        group = grp.getgrgid(os.stat(p).st_gid).gr_name
        assert ei.value.name == "EACCES" and f"the socket is group {group}:" in str(ei.value)
    finally:
        s.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
def test_permission_error_names_the_sockets_group():
    """The group named is the socket's own (it said 'group dynq' whatever
    the group was): a root:root 0660 socket, a client running as nobody."""
    import subprocess
    import sys
    from conftest import as_nobody, root_only_socket
    with root_only_socket() as (path, group):
        assert group != "dynq"
        code = ("import dynq\n"
                "try:\n"
                f"    dynq.Client({path!r})\n"
                "except dynq.ConnectError as e:\n"
                "    print(e.name, e)\n")
        pkg = os.path.dirname(os.path.dirname(dynq.__file__))   # the dynq under test
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60, preexec_fn=as_nobody, env=dict(os.environ, PYTHONPATH=pkg))
    assert r.stdout.startswith("EACCES "), r.stdout + r.stderr
    assert f"the socket is group {group}:" in r.stdout, r.stdout


def test_only_nobody_there_moves_on(monkeypatch, daemon):
    # A path that fails otherwise (here: too long for sun_path) stops the
    # search even though the system path would answer, as in libdynqclient.
    monkeypatch.delenv("DYNQ_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/tmp/" + "d" * 200)
    monkeypatch.setattr(dynq.client, "SYSTEM_SOCKET", daemon.sock)
    with pytest.raises(dynq.ConnectError) as ei:
        dynq.Client()
    assert ei.value.name == "ENAMETOOLONG" and len(ei.value.tried) == 1
