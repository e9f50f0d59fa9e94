"""The systemd units, snippets, example config and man pages as this build renders them.

There is no systemd to drive here (tests run in containers and on CI
machines whose PID 1 is not systemd), so systemctl cannot run a stop/restart
cycle; these checks pin the unit properties that make one work, and
test_restart_cycle_behind_a_held_socket plays systemd's part by hand (it
holds the listening socket as dynqd.socket does and starts dynqd with it,
again and again).  docs/DAEMON.md ("Restarts keep the socket") gives the
manual systemctl check.  meson sets DYNQ_BUILDDIR, DYNQ_CONFDIR and
DYNQ_SBINDIR.
"""
import configparser
import os
import re
import shutil
import signal
import socket
import subprocess

import pytest

BUILD = os.environ["DYNQ_BUILDDIR"]
CONFDIR = os.environ["DYNQ_CONFDIR"]
SBINDIR = os.environ["DYNQ_SBINDIR"]
SRC = os.environ["DYNQ_SRCDIR"]
RENDERED = ["dynqd.service", "dynq-tmpfiles.conf", "dynqd.conf.example", "dynqd.8",
            "dynqd.conf.5", "dynqctl.1"]


def path(name):
    p = os.path.join(BUILD, "systemd", name)
    assert os.path.exists(p), f"{p} was not generated"
    return p


def read(name):
    with open(path(name), encoding="utf-8") as f:
        return f.read()


def unit(name, file=None):
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str
    with open(file or path(name), encoding="utf-8") as f:
        cp.read_string(f.read())
    return cp


def test_socket_survives_service_stop_restart_and_crash():
    svc = unit("dynqd.service")["Service"]
    sock = unit(None, os.path.join(SRC, "systemd", "dynqd.socket"))["Socket"]
    listen = sock["ListenStream"]
    rundir = svc["RuntimeDirectory"]
    # The socket lives in the service's runtime directory ...
    assert os.path.dirname(listen) == "/run/" + rundir
    # ... so that directory must outlive the service's stop/restart/crash.
    assert svc["RuntimeDirectoryPreserve"] == "yes"
    assert svc["Restart"] == "on-failure"
    assert unit("dynqd.service")["Unit"]["Requires"] == "dynqd.socket"


def _activated_dynqd(lfd, workdir):
    """dynqd started as systemd starts it from dynqd.socket: the listening
    socket as fd 3, LISTEN_FDS=1 and LISTEN_PID its own pid (the shell's $$
    is the pid exec keeps)."""
    dynqd = os.path.join(BUILD, "daemon", "dynqd")
    models = os.path.join(workdir, "models")
    os.makedirs(models, exist_ok=True)
    log = open(os.path.join(workdir, "dynqd.log"), "ab")
    script = ('exec 3<&%d %d<&-; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --socket "$1" '
              '--models "$2"' % (lfd, lfd))
    # bash, not sh: dash takes only one-digit descriptors in redirections
    return subprocess.Popen(["/bin/bash", "-c", script, dynqd,
                             os.path.join(workdir, "not-used.sock"), models],
                            pass_fds=(lfd,), stdout=subprocess.DEVNULL, stderr=log)


def _ping(sock, msgid):
    import msgpack
    sock.sendall(msgpack.packb([0, msgid, "ping", {}]))
    up = msgpack.Unpacker(raw=False)
    while True:
        data = sock.recv(4096)
        assert data, "dynqd closed the connection"
        up.feed(data)
        for msg in up:
            return msg


def test_restart_cycle_behind_a_held_socket(tmp_path):
    # systemd's part: the socket unit owns the listening socket, so it
    # exists before, between and after the service's runs.
    path = str(tmp_path / "dynqd.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(16)
    procs = []
    try:
        for cycle, how in enumerate(["stop", "crash", "stop"]):
            # A client that arrives while no dynqd runs (between a stop or a
            # crash and the restart) waits in the backlog, as it does under
            # systemd, and is answered by the next run.
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(60)
            c.connect(path)
            procs.append(_activated_dynqd(lsock.fileno(), str(tmp_path)))
            assert _ping(c, cycle + 1) == [1, cycle + 1, None, "pong"]
            c.close()
            p = procs[-1]
            p.send_signal(signal.SIGTERM if how == "stop" else signal.SIGKILL)
            p.wait(timeout=60)
            if how == "stop":
                assert p.returncode == 0
            # the service going away (even killed) leaves the socket file
            assert os.path.exists(path), f"the socket file went with the {how}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        lsock.close()


def test_python_package_installs_where_debian_python_looks():
    # meson install must put package dynq in a directory Debian's python3
    # searches for this prefix (/usr/local/lib/python3.X/dist-packages for
    # /usr/local, /usr/lib/python3/dist-packages for /usr): read what this
    # build would install and ask the interpreter.
    meson = shutil.which("meson")
    if meson is None:
        pytest.skip("meson is not on PATH")
    import json
    r = subprocess.run([meson, "introspect", BUILD, "--installed"], capture_output=True,
                       text=True, check=True)
    dests = [d for d in json.loads(r.stdout).values()
             if os.path.basename(os.path.dirname(d)) == "dynq" and d.endswith(".py")]
    names = sorted(os.path.basename(d) for d in dests)
    assert "__init__.py" in names and "client.py" in names and "_errors.py" in names, names
    pkgdirs = {os.path.dirname(os.path.dirname(d)) for d in dests}
    assert len(pkgdirs) == 1, pkgdirs
    # -E: the interpreter's own path, not the test environment's PYTHONPATH
    r = subprocess.run(["/usr/bin/python3", "-E", "-c", "import sys; print('\\n'.join(sys.path))"],
                       capture_output=True, text=True, check=True)
    paths = r.stdout.split("\n")
    assert pkgdirs.pop() in paths


def test_no_placeholder_left():
    for name in RENDERED:
        text = read(name)
        assert not re.search(r"@[a-z_]+@", text), f"{name} keeps a @placeholder@"


def test_paths_follow_sysconfdir_and_prefix():
    conf = CONFDIR + "/dynqd.conf"
    assert conf in read("dynqd.service")
    assert f"ExecStart={SBINDIR}/dynqd " in read("dynqd.service")
    assert f"d {CONFDIR} 0755 root root -" in read("dynq-tmpfiles.conf").splitlines()
    assert f"# Copy to {conf}." in read("dynqd.conf.example")
    for page in ("dynqd.8", "dynqd.conf.5"):
        text = read(page)
        assert conf in text, page
        if CONFDIR != "/etc/dynq":
            assert not re.search(r"(?<![\w/])/etc/dynq", text.replace(CONFDIR, "")), page
    # dynqd itself reads the same file by default.
    out = subprocess.run([os.path.join(BUILD, "daemon", "dynqd"), "--help"],
                         capture_output=True, text=True).stdout
    assert f"default {conf} " in out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path):
    # Only the not-yet-installed dynqd may be reported.
    for name in ("dynqd.service",):
        shutil.copy(path(name), tmp_path / name)
    shutil.copy(os.path.join(SRC, "systemd", "dynqd.socket"), tmp_path / "dynqd.socket")
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", "./dynqd.socket",
                        "./dynqd.service"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    bad = [l for l in lines if "is not executable" not in l]
    assert not bad, "\n".join(lines)
