"""The control plane end to end in the lab: real processes, real CLI, NAT'd friends.

As root the friends sit in network namespaces behind nft-masquerade routers; without root
the lab falls back to local processes on loopback and the NAT-specific checks are skipped.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuhive.lab import procs
from gpuhive.lab.hive import Lab, LabOptions
from gpuhive.lab.labnet import wait_until
from gpuhive.ports import free_port
from tests.integration.labs import running_lab

INTERVAL = 0.5


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    # GPUHIVE_LAB_LOOPBACK=1 runs the same tests on the no-root fallback
    yield from running_lab(
        tmp_path_factory, LabOptions(friends=3, heartbeat_interval=INTERVAL, backoff_cap=1.0))


def _json(lab: Lab, *args: str, host: str = "ctl") -> object:
    proc = lab.cli(*args, host=host)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_three_nated_friends_are_online_with_hardware(lab: Lab) -> None:
    nodes = _json(lab, "nodes", "--json")
    assert isinstance(nodes, list)
    assert sorted(n["name"] for n in nodes) == ["friend1", "friend2", "friend3"]
    for n in nodes:
        assert n["status"] == "online" and n["connected"]
        assert n["hardware"]["cpu"]["cores"] == os.cpu_count()
        assert n["hardware"]["memory_total_mib"] > 0
        if lab.state.mode == "netns":
            # the controller sees each friend only as its router's public address
            assert n["public_addr"].split(":")[0] == lab.host(n["name"]).public_address
    table = lab.cli("nodes").stdout
    assert "friend2" in table and "online" in table


def test_exec_all_reports_each_node_and_its_failure(lab: Lab) -> None:
    script = 'case "$GPUHIVE_HOME" in */friend2) echo broken; exit 7;; esac; echo fine'
    proc = lab.cli("nodes", "exec", "all", "--", "sh", "-c", script)
    assert proc.returncode == 1
    out = proc.stdout.splitlines()
    assert "[friend1] fine" in out and "[friend3] fine" in out and "[friend2] broken" in out
    assert "[friend2] exit status 7" in proc.stderr
    assert "1 of 3 node(s) failed" in proc.stderr
    ok = lab.cli("nodes", "exec", "friend1,friend3", "--json", "--", "true")
    assert ok.returncode == 0
    results = json.loads(ok.stdout)["results"]
    assert sorted((r["node"], r["exit_status"]) for r in results) == [("friend1", 0),
                                                                      ("friend3", 0)]


def test_agent_status_on_a_friend(lab: Lab) -> None:
    st = _json(lab, "agent", "status", "--json", host="friend1")
    assert isinstance(st, dict) and st["connected"] and st["name"] == "friend1"


def test_killed_agent_goes_degraded_then_offline_then_back(lab: Lab) -> None:
    before = {n["name"]: n for n in lab.nodes()}["friend3"]
    lab.kill_agent("friend3")
    t0 = time.monotonic()
    lab.wait_for({"friend3": "degraded"}, timeout=10)
    t_degraded = time.monotonic() - t0
    lab.wait_for({"friend3": "offline"}, timeout=10)
    t_offline = time.monotonic() - t0
    # one missed heartbeat (+ half an interval of slack, + a tracker tick) → degraded,
    # three missed → offline
    assert t_degraded <= 2.5 * INTERVAL + 1.0
    assert 2.0 * INTERVAL <= t_offline <= 4.5 * INTERVAL + 1.0
    assert lab.nodes() and {n["name"]: n["status"] for n in lab.nodes()}["friend1"] == "online"
    lab.start_agent("friend3")
    after = {n["name"]: n for n in lab.wait_for({"friend3": "online"}, timeout=20)}["friend3"]
    assert after["id"] == before["id"] and after["forward_port"] == before["forward_port"]
    shown = _json(lab, "nodes", "show", "friend3", "--json")
    assert isinstance(shown, dict)
    events = [e["event"] for e in shown["events"]]
    i = events.index("degraded", events.index("online"))
    assert events[i:].index("offline") < events[i:].index("online", 1)


def test_controller_restart_brings_every_agent_back(lab: Lab) -> None:
    lab.stop_controller()
    restarted = time.time()
    lab.start_controller()
    deadline = time.monotonic() + 30
    nodes: list[dict] = []
    while time.monotonic() < deadline:
        nodes = lab.nodes()
        if all(n["connected"] and n["status"] == "online" and
               (n["connected_since"] or 0) > restarted for n in nodes):
            break
        time.sleep(0.2)
    assert len(nodes) == 3
    assert all(n["connected"] and (n["connected_since"] or 0) > restarted for n in nodes), nodes
    exec_ = lab.cli("nodes", "exec", "all", "--", "true")
    assert exec_.returncode == 0, exec_.stderr


def test_bad_tokens_give_one_clear_line(lab: Lab, tmp_path: Path) -> None:
    used = lab.admin("invite.create", {"name": "x", "ttl": "1h", "uses": 1})["token"]
    lab.admin("invite.revoke", {"token_id": lab.admin("invite.list")[-1]["id"]})
    # friend1's agent runs: a garbled token is still what it hears first, not the lock
    for token, words in ((used[:20], "garbled"), ("hello", "must start")):
        proc = lab.cli("enroll", token, "--name", "intruder", host="friend1", timeout=60)
        assert proc.returncode == 3, proc.stderr
        assert words in proc.stderr and "Traceback" not in proc.stderr
        assert "hint:" in proc.stderr
    # a well-formed but revoked token needs the controller; a second home on that machine
    # (no agent there) asks it
    proc = lab.cli("enroll", used, "--name", "intruder", host="friend1", timeout=60,
                   home=tmp_path / "second-user")
    assert proc.returncode == 3, proc.stderr
    assert "was revoked" in proc.stderr and "hint:" in proc.stderr
    # with the agent running, a valid-looking token is refused by the lock, loudly
    locked = lab.cli("enroll", used, "--name", "intruder", host="friend1", timeout=60)
    assert locked.returncode != 0 and "Traceback" not in locked.stderr
    assert "agent" in locked.stderr
    assert "intruder" not in {n["name"] for n in lab.nodes()}


def test_no_controller_is_a_clear_error(lab: Lab, tmp_path: Path) -> None:
    import subprocess
    import sys
    env = lab.env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "gpuhive", "nodes"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "is not a controller home" in proc.stderr and "Traceback" not in proc.stderr
    assert "gpuhive init" in proc.stderr  # the next step, not `gpuhive up`


def test_nodes_add_against_real_openssh(lab: Lab, tmp_path: Path) -> None:
    pub = lab.cli("init", "--show-key", check=True).stdout.strip()
    if lab.state.mode == "netns":
        # a "cloud VM" with a public address: sshd on the internet side of router 1
        ns, listen, port, user = f"{lab.state.prefix}-r1", lab.host("friend1").public_address, \
            22, "root"
    else:
        ns, listen, port, user = None, "127.0.0.1", free_port(), getpass.getuser()
    sshd = procs.start_sshd(ns, workdir=tmp_path / "sshd", port=port, listen=listen,
                            authorized_keys=[pub], user=user)
    try:
        added = lab.cli("nodes", "add", f"{user}@{listen}:{port}", "--name", "vm")
        assert added.returncode == 0, added.stderr
        assert "pinned" in added.stdout
        nodes = {n["name"]: n for n in lab.nodes()}
        assert nodes["vm"]["kind"] == "ssh" and nodes["vm"]["status"] == "online"
        assert nodes["vm"]["hardware"]["cpu"]["cores"] >= 1
        proc = lab.cli("nodes", "exec", "vm", "--", "echo", "from-openssh")
        assert proc.returncode == 0 and "[vm] from-openssh" in proc.stdout
        assert lab.cli("nodes", "rm", "vm").returncode == 0
    finally:
        sshd.stop()
    # sshd is gone: the port is closed, and the hint is about sshd, not about keys
    refused = lab.cli("nodes", "add", f"{user}@{listen}:{port}", "--name", "vm2")
    assert refused.returncode == 1, refused.stderr
    assert f"connection refused: is sshd running on {listen}:{port}?" in refused.stderr
    assert "authorized_keys" not in refused.stderr


def test_removed_node_cannot_come_back(lab: Lab) -> None:
    rm = lab.cli("nodes", "rm", "friend2")
    assert rm.returncode == 0 and "removed" in rm.stdout
    assert "friend2" not in {n["name"] for n in lab.nodes()}
    status: dict = {}

    def refused() -> bool:  # its next dial is refused (when depends on the machine's load)
        nonlocal status
        proc = lab.cli("agent", "status", "--json", host="friend2")
        status = json.loads(proc.stdout)
        return proc.returncode == 1 and status["state"] == "removed"
    wait_until("friend2's agent refused", refused, 30)
    # told it was removed, it stops instead of retrying: the state is written just before
    # the process exits, so give the exit a moment rather than reading the two at once
    wait_until("friend2's agent exited", lambda: refused() and not status["running"], 15)
    assert "friend2" not in {n["name"] for n in lab.nodes()}


def test_interrupted_exec_leaves_no_process_on_any_node(lab: Lab) -> None:
    import signal
    import subprocess
    import sys
    marker = "sleep 313.25"
    argv = [sys.executable, "-m", "gpuhive", "nodes", "exec", "all", "--", "sh", "-c",
            f"{marker}; echo never"]
    proc = subprocess.Popen(argv, env=lab.env(lab.controller_home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    nodes = len(lab.nodes())

    def sleepers() -> list[int]:
        return [p for p in procs.pids_running(marker)
                if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"sleep")]

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(sleepers()) < nodes:
        time.sleep(0.1)
    assert len(sleepers()) == nodes  # one per node
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130 and "Traceback" not in err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and procs.pids_running(marker):
        time.sleep(0.1)
    assert procs.pids_running(marker) == []
