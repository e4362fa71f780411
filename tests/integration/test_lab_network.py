"""The namespace lab on the real kernel: NAT, isolation, shaping, teardown, sshd.

Traffic stays inside the lab's own namespaces (198.18.0.0/24, 192.168.x.0/24 there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuhive.errors import CommandFailed, LabError
from gpuhive.lab import netns, procs
from gpuhive.lab.topology import CTL_ADDRESS, LabPlan, new_prefix, plan_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the namespace lab needs root"),
]

PORT = 5001

# Accepts one connection, reads to EOF, answers with who connected and how fast it came.
SERVER = """
import json, socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
c, peer = s.accept(); n = 0; first = last = time.monotonic()
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    if n == 0:
        first = time.monotonic()
    n += len(b); last = time.monotonic()
c.sendall(json.dumps({"peer": peer[0], "bytes": n, "seconds": last - first}).encode())
c.close()
"""

# Connects (retrying while the server starts), sends N bytes, prints the server's answer.
CLIENT = """
import socket, sys, time
deadline = time.monotonic() + 10
while True:
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30); break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
left = int(sys.argv[3]); chunk = b"x" * 65536
while left > 0:
    c.sendall(chunk[:left]); left -= len(chunk)
c.shutdown(socket.SHUT_WR)
print(c.makefile().read())
"""


def _build(plan: LabPlan) -> Iterator[LabPlan]:
    try:
        netns.build(plan)
        yield plan
    finally:
        netns.teardown(plan.prefix)


@pytest.fixture(scope="module")
def lab() -> Iterator[LabPlan]:
    yield from _build(plan_lab(new_prefix(), 2))


@pytest.fixture
def shaped_lab() -> Iterator[LabPlan]:
    yield from _build(plan_lab(new_prefix(), 1, bandwidth="20mbit"))


def in_ns(ns: str | None, *argv: str, check: bool = True) -> str:
    return netns.run(netns.exec_argv(ns, list(argv)), check=check, timeout_s=60)


def transfer(plan: LabPlan, src: str, nbytes: int, tmp_path: Path) -> dict:
    """Send ``nbytes`` from host ``src`` to a server on the controller; return its report."""
    ctl = plan.ctl.namespace
    pid = procs.spawn([sys.executable, "-c", SERVER, CTL_ADDRESS, str(PORT)], ns=ctl,
                      env=None, log_path=tmp_path / "server.log")
    try:
        out = in_ns(plan.host(src).namespace, sys.executable, "-c", CLIENT,
                    CTL_ADDRESS, str(PORT), str(nbytes))
        return dict(json.loads(out))
    finally:
        procs.stop(pid, grace_s=1)


def test_friend_reaches_controller(lab: LabPlan) -> None:
    for friend in lab.friend_hosts:
        in_ns(friend.namespace, "ping", "-c", "1", "-W", "2", CTL_ADDRESS)


def test_controller_sees_router_public_address(lab: LabPlan, tmp_path: Path) -> None:
    report = transfer(lab, "friend1", 1000, tmp_path)
    assert report["peer"] == "198.18.0.11" == lab.host("friend1").public_address
    assert report["bytes"] == 1000


def test_no_inbound_through_nat(lab: LabPlan) -> None:
    ctl, friend = lab.ctl.namespace, lab.host("friend1")
    # No route at all from the internet to a private LAN...
    with pytest.raises(CommandFailed):
        in_ns(ctl, "ping", "-c", "1", "-W", "1", friend.address)
    # ...and even with one pointing at the router, the router drops unsolicited inbound.
    in_ns(ctl, "ip", "route", "add", "192.168.1.0/24", "via", friend.public_address)
    try:
        with pytest.raises(CommandFailed):
            in_ns(ctl, "ping", "-c", "1", "-W", "1", friend.address)
    finally:
        in_ns(ctl, "ip", "route", "del", "192.168.1.0/24")


def test_friends_have_no_route_to_each_other(lab: LabPlan) -> None:
    with pytest.raises(CommandFailed):
        in_ns(lab.host("friend1").namespace, "ping", "-c", "1", "-W", "1",
              lab.host("friend2").address)


def test_bandwidth_is_shaped(shaped_lab: LabPlan, tmp_path: Path) -> None:
    report = transfer(shaped_lab, "friend1", 5 * 10**6, tmp_path)
    mbit = report["bytes"] * 8 / report["seconds"] / 1e6
    print(f"shaped transfer: {mbit:.1f} Mbit/s")
    assert report["bytes"] == 5 * 10**6
    assert 10 <= mbit <= 30, f"{mbit:.1f} Mbit/s"


def test_teardown_kills_processes_and_is_idempotent(tmp_path: Path) -> None:
    plan = plan_lab(new_prefix(), 1)
    try:
        netns.build(plan)
        pid = procs.spawn(["sleep", "300"], ns=plan.host("friend1").namespace, env=None,
                          log_path=tmp_path / "sleep.log")
        assert procs.alive(pid)
        assert set(netns.teardown(plan.prefix)) == set(plan.namespaces)
        assert not procs.alive(pid)
        assert not [ns for ns in netns.list_namespaces() if ns.startswith(plan.prefix + "-")]
        assert netns.teardown(plan.prefix) == []
    finally:
        netns.teardown(plan.prefix)


def test_failed_build_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_lab(new_prefix(), 2)
    bad = next(c for c in plan.setup_commands()
               if "masquerade" in c and f"{plan.prefix}-r2" in c)
    real_run = netns.run

    def run(argv: list[str], **kw: Any) -> str:
        if argv == bad:
            raise CommandFailed(argv, 1, "injected failure")
        return real_run(argv, **kw)

    monkeypatch.setattr(netns, "run", run)
    try:
        with pytest.raises(LabError, match="masquerade") as err:
            netns.build(plan)
        assert err.value.data["step"] == plan.setup_commands().index(bad) + 1
        assert not [ns for ns in netns.list_namespaces() if ns.startswith(plan.prefix + "-")]
    finally:
        netns.teardown(plan.prefix)


def test_build_refuses_existing_prefix(lab: LabPlan) -> None:
    with pytest.raises(LabError, match="already exists"):
        netns.build(plan_lab(lab.prefix, 1))
    assert len(netns.list_lab_namespaces()) >= len(lab.namespaces)  # the lab is untouched
    in_ns(lab.host("friend1").namespace, "ping", "-c", "1", "-W", "2", CTL_ADDRESS)


def _keypair(path: Path) -> str:
    netns.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)])
    return path.with_suffix(".pub").read_text()


def _ssh(ns: str | None, key: Path, known_hosts: Path, port: int) -> subprocess.CompletedProcess:
    argv = ["ssh", "-F", "/dev/null", "-i", str(key), "-p", str(port),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", f"root@{CTL_ADDRESS}", "true"]
    return subprocess.run(netns.exec_argv(ns, argv), capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def test_sshd_in_namespace(lab: LabPlan, tmp_path: Path) -> None:
    ctl = lab.ctl.namespace
    assert ctl is not None
    good, other = tmp_path / "id_good", tmp_path / "id_other"
    pub = _keypair(good)
    _keypair(other)
    handle = procs.start_sshd(ctl, workdir=tmp_path / "sshd", port=2222, listen=CTL_ADDRESS,
                              authorized_keys=[pub])
    try:
        assert handle.host_key.startswith("ssh-ed25519 ")
        kh = tmp_path / "known_hosts"
        kh.write_text(handle.known_hosts_line())
        ok = _ssh(ctl, good, kh, 2222)
        assert ok.returncode == 0, ok.stderr
        # Key-only: a key not in authorized_keys is refused.
        assert _ssh(ctl, other, kh, 2222).returncode != 0
        # The host key is really checked: a wrong pin fails.
        wrong = tmp_path / "wrong_known_hosts"
        wrong.write_text(f"[{CTL_ADDRESS}]:2222 {other.with_suffix('.pub').read_text()}")
        bad = _ssh(ctl, good, wrong, 2222)
        assert bad.returncode != 0 and "HOST IDENTIFICATION HAS CHANGED" in bad.stderr
    finally:
        handle.stop()
    assert not procs.alive(handle.pid)
    assert procs.pids_running(str(handle.config_path)) == []
    assert netns.namespace_pids(ctl) == []
