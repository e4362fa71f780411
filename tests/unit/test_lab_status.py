"""`gpuhive lab status` from the state file alone: hosts and processes always, nodes only
when the lab's controller answers."""

from __future__ import annotations

import os
from pathlib import Path

from gpuhive.errors import ControllerUnavailable
from gpuhive.lab.state import LabState
from gpuhive.lab.status import cmdline, describe, report
from gpuhive.lab.topology import Host


def _state() -> LabState:
    return LabState("gh1234", "loopback", Path("/tmp/lab"),
                    [Host("ctl", None, "127.0.0.1", "127.0.0.1"),
                     Host("friend1", None, "127.0.0.1", "127.0.0.1")],
                    {"agent-friend1": 202, "ctl": 101, "extra-sshd.log": 303})


def _nodes() -> list[dict]:
    return [{"name": "friend1", "status": "online"}]


def _down() -> list[dict]:
    raise ControllerUnavailable("no controller is running for /tmp/lab/controller")


def test_running_lab_lists_processes_controller_first_and_its_nodes() -> None:
    r = report(_state(), lambda pid: True, lambda pid: f"cmd {pid}", _nodes)
    assert [p["role"] for p in r["processes"]] == ["ctl", "agent-friend1", "extra-sshd.log"]
    assert r["processes"][0] == {"role": "ctl", "pid": 101, "alive": True,
                                 "what": "controller (gpuhive up)", "command": "cmd 101"}
    assert r["controller"] == {"pid": 101, "alive": True, "up": True, "error": ""}
    assert r["nodes"] == _nodes() and [h["name"] for h in r["hosts"]] == ["ctl", "friend1"]


def test_dead_controller_is_reported_and_nodes_are_not_asked_for() -> None:
    asked = []
    r = report(_state(), lambda pid: pid != 101, lambda pid: "x",
               lambda: asked.append(1) or _nodes())
    assert asked == [] and r["controller"]["up"] is False
    assert r["controller"]["error"] == "the lab's controller (pid 101) is not running"
    alive = {p["role"]: (p["alive"], p["command"]) for p in r["processes"]}
    assert alive["ctl"] == (False, "") and alive["agent-friend1"] == (True, "x")


def test_controller_that_does_not_answer_and_one_that_was_stopped() -> None:
    r = report(_state(), lambda pid: True, lambda pid: "", _down)
    assert not r["controller"]["up"] and "does not answer: no controller" in \
        r["controller"]["error"]
    st = _state()
    del st.pids["ctl"]
    stopped = report(st, lambda pid: True, lambda pid: "", _nodes)
    assert stopped["controller"] == {"pid": None, "alive": False, "up": False,
                                     "error": "the lab has no controller process (it was "
                                              "stopped)"}


def test_describe_and_cmdline_of_this_process() -> None:
    assert describe("agent-friend2").startswith("agent of friend2")
    assert "pytest" in cmdline(os.getpid())
    assert cmdline(2 ** 22 + 12345) == ""
