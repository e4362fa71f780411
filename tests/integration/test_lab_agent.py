"""The friend's agent in the lab: one per machine, a clean stop, a removed friend, plain output.

Each agent here is a real `python -m gpuhive agent` in its friend's namespace (loopback
without root), started the way a friend starts it, so exit statuses and output are real.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuhive.agent.errors import REMOVED_EXIT
from gpuhive.lab import netns, procs
from gpuhive.lab.hive import Lab, LabOptions
from gpuhive.lab.labnet import wait_until
from tests.integration.labs import running_lab

INTERVAL = 0.5


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from running_lab(
        tmp_path_factory, LabOptions(friends=3, heartbeat_interval=INTERVAL, backoff_cap=1.0))


def _node(lab: Lab, name: str) -> dict:
    return {n["name"]: n for n in lab.nodes()}[name]


def _status(lab: Lab, name: str) -> tuple[int, dict]:
    proc = lab.cli("agent", "status", "--json", host=name)
    return proc.returncode, json.loads(proc.stdout)


class Foreground:
    """`gpuhive agent` in a friend's terminal: its own process, its output kept."""

    def __init__(self, lab: Lab, name: str, log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                netns.exec_argv(lab.host(name).namespace,
                                [sys.executable, "-m", "gpuhive", "agent"]),
                env=lab.host_env(name), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, words: str, timeout: float = 30) -> None:
        wait_until(f"agent printed {words!r}", lambda: words in self.output, timeout, 0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def foreground(lab: Lab, tmp_path: Path) -> Iterator[list[Foreground]]:
    started: list[Foreground] = []
    yield started
    for fg in started:
        fg.stop()


def _swap_to_foreground(lab: Lab, name: str, tmp_path: Path,
                        started: list[Foreground]) -> Foreground:
    lab.kill_agent(name, hard=False)  # SIGTERM: the lab's agent says goodbye
    lab.wait_for({name: "offline"}, timeout=10)
    fg = Foreground(lab, name, tmp_path / f"{name}-foreground.log")
    started.append(fg)
    return fg


def test_second_agent_is_refused_and_touches_nothing(lab: Lab) -> None:
    home = lab.node_home("friend1")
    pid_file = (home / "agent.pid").read_text()
    code, before = _status(lab, "friend1")
    assert code == 0 and before["connected"]
    marker = "sleep 271.5"
    exec_ = subprocess.Popen([sys.executable, "-m", "gpuhive", "nodes", "exec", "friend1", "--",
                              "sh", "-c", f"{marker}; true"],
                             env=lab.env(lab.controller_home), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)

    def sleepers() -> list[int]:
        return [p for p in procs.pids_running(marker)
                if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"sleep")]

    try:
        wait_until("the command runs on friend1", lambda: len(sleepers()) == 1, 15, 0.1)
        second = lab.cli("agent", host="friend1", timeout=60)
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert lines[0] == (f"error: an agent is already running for {home} "
                            f"(pid {before['pid']})"), second.stderr
        assert len(lines) == 2 and lines[1].startswith("  hint:")
        assert "Traceback" not in second.stderr
        # enroll on a box whose agent runs says the same, before using the token
        invite = lab.admin("invite.create", {"name": "again", "ttl": "1h", "uses": 1})
        enroll = lab.cli("enroll", invite["token"], "--name", "again", host="friend1",
                         timeout=60)
        assert enroll.returncode == 1 and "already running" in enroll.stderr
        assert [t["uses"] for t in lab.admin("invite.list") if t["id"] == invite["id"]] == [0]
        # nothing of the running agent was touched: its command, pid file, link
        assert len(sleepers()) == 1
        assert (home / "agent.pid").read_text() == pid_file
        code, after = _status(lab, "friend1")
        assert code == 0 and after["connected"] and after["pid"] == before["pid"]
        assert after["since"] == before["since"]
        assert _node(lab, "friend1")["status"] == "online"
        assert "again" not in {n["name"] for n in lab.nodes()}
    finally:
        exec_.send_signal(signal.SIGINT)
        exec_.communicate(timeout=20)
    wait_until("the command is gone", lambda: not sleepers(), 20, 0.1)


def test_foreground_agent_speaks_plainly_and_stops_cleanly(
        lab: Lab, tmp_path: Path, foreground: list[Foreground]) -> None:
    before = _node(lab, "friend2")
    fg = _swap_to_foreground(lab, "friend2", tmp_path, foreground)
    stopped = _node(lab, "friend2")  # the lab's agent got SIGTERM: a clean stop
    assert stopped["reason"].startswith("agent stopped"), stopped["reason"]
    assert stopped["reliability"]["score"] >= before["reliability"]["score"]
    fg.wait_for_line("connected to ")
    lab.wait_for({"friend2": "online"}, timeout=20)
    out = fg.output
    assert "connecting to the controller at " in out
    assert "as friend2" in out
    assert " INFO " not in out and "asyncssh" not in out  # no raw logging by default
    fg.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert fg.proc.wait(timeout=20) == 130
    assert "agent stopped" in fg.output and "Traceback" not in fg.output
    node = lab.wait_for({"friend2": "offline"}, timeout=5)
    node2 = {n["name"]: n for n in node}["friend2"]
    assert node2["reason"].startswith("agent stopped")
    events = [e["event"] for e in lab.admin("nodes.show", {"name": "friend2"})["events"]]
    last_online = len(events) - 1 - events[::-1].index("online")
    assert "degraded" not in events[last_online:]  # no missed heartbeats on the way out
    code, st = _status(lab, "friend2")
    assert code == 1 and st["state"] == "stopped"
    lab.start_agent("friend2")
    lab.wait_for({"friend2": "online"}, timeout=20)


def test_removed_friend_is_told_and_the_agent_exits(
        lab: Lab, tmp_path: Path, foreground: list[Foreground]) -> None:
    fg = _swap_to_foreground(lab, "friend3", tmp_path, foreground)
    fg.wait_for_line("connected to ")
    lab.wait_for({"friend3": "online"}, timeout=20)
    assert lab.cli("nodes", "rm", "friend3").returncode == 0
    started = time.monotonic()
    assert fg.proc.wait(timeout=30) == REMOVED_EXIT  # by itself, no retrying
    assert time.monotonic() - started < 30
    out = fg.output
    assert "error: this machine (friend3) was removed from the hive by its owner" in out
    assert "hint: ask the owner for a new token" in out
    assert "Traceback" not in out and "Permission denied" not in out
    proc = lab.cli("agent", "status", host="friend3")
    assert proc.returncode == 1
    assert "was removed from the hive by its owner" in proc.stdout
    assert "denied" not in proc.stdout
    code, st = _status(lab, "friend3")
    assert code == 1 and st["state"] == "removed" and not st["running"]
    # started again (a reboot, a friend who did not read it): it stops again at once
    again = lab.cli("agent", host="friend3", timeout=60)
    assert again.returncode == REMOVED_EXIT and "removed from the hive" in again.stderr
    assert "friend3" not in {n["name"] for n in lab.nodes()}
