"""A friend whose WireGuard spoke fails for real, in the overlay lab: another program holds
the spoke's UDP port in that friend's namespace, so the agent's `wg set … listen-port`
fails with "Address already in use". `nodes`, `nodes show`, `nodes --json` and the
dashboard must say so, `nodes rank --for train` must leave the node out of a multi-node
job with that error, and `train` must run on the others (or name that error, not tell
the owner to start an overlay that is running)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuhive.lab.hive import Lab, LabOptions
from gpuhive.overlay import driver
from tests.integration.labs import running_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the namespace lab needs root"),
    pytest.mark.skipif(os.environ.get("GPUHIVE_LAB_LOOPBACK") == "1",
                       reason="the overlay needs the namespace lab, not loopback"),
]
DATA = Path(__file__).resolve().parents[1] / "data" / "train"
SPOKE_PORT = 51821  # overlay_spoke_port's default, what every lab agent binds
SQUAT = ("import socket, sys, time\n"
         "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
         f"s.bind(('0.0.0.0', {SPOKE_PORT}))\n"
         "print('bound', flush=True)\n"
         "time.sleep(3600)\n")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from running_lab(
        tmp_path_factory, LabOptions(friends=3, heartbeat_interval=0.5, overlay=True))


def _wait(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s (last: {last!r})")


def _node(lab: Lab, name: str) -> dict[str, Any]:
    return {n["name"]: n for n in lab.nodes()}[name]


def _spoke(lab: Lab, name: str) -> dict[str, Any]:
    return dict(_node(lab, name).get("overlay_state") or {})


def _stop_agent(lab: Lab, name: str) -> None:
    lab.kill_agent(name, hard=False)  # SIGTERM: the agent takes its spoke down
    # whatever a stopped agent left behind must not keep the port or the interface
    driver.bring_down(lab.overlay_iface(name), ns=lab.host(name).namespace)


@pytest.fixture
def friend1_port_taken(lab: Lab) -> Iterator[int]:
    """friend1's spoke port held by another program, its agent restarted; undone after."""
    _stop_agent(lab, "friend1")
    pid = lab.spawn_on("friend1", [sys.executable, "-c", SQUAT], "squatter.log")
    try:
        _wait("the squatter binds the port", lambda: "bound" in (
            lab.dir / "squatter.log").read_text(errors="replace"), 20)
        lab.start_agent("friend1")
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _stop_agent(lab, "friend1")
        lab.start_agent("friend1")
        lab.wait_for({"friend1": "online"}, timeout=60)
        lab.wait_for_overlay(timeout=60)


def test_a_node_whose_spoke_failed_is_shown_down_and_trains_without_it(
        lab: Lab, friend1_port_taken: int, tmp_path: Path) -> None:
    st = _wait("friend1 reports its spoke down",
               lambda: (s := _spoke(lab, "friend1")).get("state") == "down" and s, 60)
    assert "Address already in use" in st["error"] and "wg set" in st["error"], st
    assert _spoke(lab, "friend2")["state"] == "up"

    # nodes: a short cell; nodes show: the line with the error; the dashboard's data
    table = lab.cli("nodes", check=True).stdout
    row = next(line for line in table.splitlines() if line.startswith("friend1 "))
    assert " down " in f" {row} " and "online" in row
    show = lab.cli("nodes", "show", "friend1", check=True).stdout
    assert "overlay down" in show and "Address already in use" in show
    assert "connected True" not in show
    url = lab.http_url + "/api/overview"
    page = lab.run_on("ctl", [sys.executable, "-c", "import sys, urllib.request; "
                              "print(urllib.request.urlopen(sys.argv[1]).read().decode())",
                              url]).stdout
    dash = {n["name"]: n for n in json.loads(page)["nodes"]}
    assert dash["friend1"]["overlay_state"]["state"] == "down"
    assert "Address already in use" in dash["friend1"]["overlay_state"]["error"]

    # rank --for train over three nodes: friend1 is out, with the spoke's own error; exit 1
    three = lab.cli("nodes", "rank", "--for", "train", "--nodes", "3", "--json")
    assert three.returncode == 1, three.stderr
    r = json.loads(three.stdout)
    assert not r["fits"] and r["request"]["needs_overlay"]
    [out] = r["excluded"]
    assert out["name"] == "friend1" and out["reasons"][0]["code"] == "overlay"
    assert "Address already in use" in out["reasons"][0]["message"]
    two = json.loads(lab.cli("nodes", "rank", "--for", "train", "--nodes", "2", "--json",
                             check=True).stdout)
    assert sorted(two["chosen"]) == ["friend2", "friend3"]

    # train picks the two nodes whose spokes work, and runs
    shutil.copy(DATA / "allreduce.py", tmp_path / "train.py")
    job = subprocess.run([sys.executable, "-m", "gpuhive", "train", "train.py", "--nodes",
                          "2", "--", "3"], cwd=tmp_path, env=lab.env(lab.controller_home),
                         capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr
    ran = json.loads(lab.cli("jobs", "--json", check=True).stdout)[0]
    assert sorted(ran["nodes"]) == ["friend2", "friend3"]

    # three nodes cannot be had: the error names friend1's real cause and the command
    refused = subprocess.run([sys.executable, "-m", "gpuhive", "train", "train.py",
                              "--nodes", "3", "--", "3"], cwd=tmp_path,
                             env=lab.env(lab.controller_home), capture_output=True,
                             text=True, timeout=120)
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0, said
    assert "Address already in use" in said and "gpuhive up --overlay" not in said
    assert "gpuhive nodes rank --for train --nodes 3" in said


def test_overlay_check_reports_each_pair_as_it_goes(lab: Lab) -> None:
    lab.wait_for_overlay(timeout=60)
    proc = lab.cli("overlay", "check", "--megabytes", "1", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == 6, proc.stderr  # every ordered pair of three friends
    assert progress[0].startswith("[1/6] friend1 → friend2: ") and " ms" in progress[0]
    assert progress[-1].startswith("[6/6] ") and "MB/s" in progress[-1]
    assert "friend1" in proc.stdout  # the matrix itself stays on stdout
