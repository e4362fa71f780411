"""`gpuhive lab status` on a real lab: hosts, namespaces and processes, then the same with the
lab's controller killed (it says so and exits 1, the agents still listed as running)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from gpuhive.lab import procs
from gpuhive.lab.hive import Lab, LabOptions
from gpuhive.lab.labnet import wait_until
from tests.integration.labs import running_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from running_lab(tmp_path_factory, LabOptions(friends=2, heartbeat_interval=0.5))


def _status(lab: Lab, *extra: str) -> subprocess.CompletedProcess[str]:
    # run from outside the lab, as the person who started it: no GPUHIVE_HOME needed
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUHIVE_")}
    return subprocess.run([sys.executable, "-m", "gpuhive", "lab", "status", "--dir",
                           str(lab.dir), *extra], env=env, capture_output=True, text=True,
                          timeout=60)


def test_status_shows_hosts_processes_and_nodes_then_a_dead_controller(lab: Lab) -> None:
    up = _status(lab, "--json")
    assert up.returncode == 0, up.stderr
    r = json.loads(up.stdout)
    assert r["controller"]["up"] and r["controller"]["pid"] == lab.state.pids["ctl"]
    assert sorted(n["name"] for n in r["nodes"]) == ["friend1", "friend2"]
    roles = {p["role"]: p for p in r["processes"]}
    assert set(roles) == {"ctl", "agent-friend1", "agent-friend2"}
    assert all(p["alive"] for p in roles.values())
    assert "gpuhive" in roles["agent-friend1"]["command"]
    assert {h["name"]: h["namespace"] for h in r["hosts"]} == {
        h.name: h.namespace for h in lab.state.hosts}
    text = _status(lab)
    assert text.returncode == 0 and "friend2" in text.stdout
    assert "controller (gpuhive up)" in text.stdout and "export GPUHIVE_HOME=" in text.stdout
    if lab.state.mode == "netns":
        assert f"{lab.state.prefix}-f1" in text.stdout  # friend1's namespace

    ctl = lab.state.pids["ctl"]
    os.killpg(ctl, signal.SIGTERM)  # the controller dies; the state file still names it
    wait_until("the lab's controller exited", lambda: not procs.alive(ctl), 20)
    down = _status(lab)
    assert down.returncode == 1, down.stdout + down.stderr
    assert f"controller down: the lab's controller (pid {ctl}) is not running" in down.stderr
    assert "Traceback" not in down.stderr
    lines = {line.split()[0]: line.split() for line in down.stdout.splitlines()
             if line.strip()}
    assert lines["ctl"][1:3] == [str(ctl), "no"]
    assert lines["agent-friend1"][2] == "yes" and lines["agent-friend2"][2] == "yes"
    as_json = _status(lab, "--json")
    assert as_json.returncode == 1
    r = json.loads(as_json.stdout)
    assert r["controller"] == {"pid": ctl, "alive": False, "up": False,
                               "error": f"the lab's controller (pid {ctl}) is not running"}
    assert r["nodes"] == [] and len(r["processes"]) == 3
