"""The systemd units, snippets, example config and man pages as this build renders them.

There is no systemd to drive here (tests run in containers and on CI
machines whose PID 1 is not systemd), so a stop/restart cycle cannot run;
these checks pin the unit properties that make one work, and
docs/DAEMON.md ("Restarts keep the socket") gives the manual systemctl
check.  meson sets DYNQ_BUILDDIR, DYNQ_CONFDIR and DYNQ_SBINDIR.
"""
import configparser
import os
import re
import shutil
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
