"""`gpuhive serve MODEL --replicas N` on a model already served scales it in place, and asking
for more replicas than nodes that fit says so and exits non-zero: two NAT'd nodes, the real
llama.cpp engine on the generated tiny-test model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuhive.agent import reaper
from gpuhive.lab.hive import Lab, LabOptions
from tests.integration.labs import running_lab

pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed by scripts/setup.sh")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from running_lab(tmp_path_factory, LabOptions(friends=2, heartbeat_interval=0.5))


def _engines(lab: Lab, node: str) -> list[int]:
    """Serving processes (worker, engine) running on a node: they carry its GPUHIVE_HOME."""
    pids = reaper.tagged(str(lab.node_home(node)), var="GPUHIVE_HOME")
    return [p for p in pids if _cmd(p).find("gpuhive.serve.node.worker") >= 0
            or "llama" in _cmd(p)]


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _rows(lab: Lab) -> list[dict]:
    return list(json.loads(lab.cli("serve", "ls", "--json", check=True).stdout))


def _wait_engines(lab: Lab, want: dict[str, bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    seen: dict[str, bool] = {}
    while time.monotonic() < deadline:
        seen = {n: bool(_engines(lab, n)) for n in want}
        if seen == want:
            return
        time.sleep(0.3)
    raise AssertionError(f"engines running {seen}, wanted {want}")


@pytest.mark.timeout(600)
def test_partial_placement_then_scale_down_and_up_in_place(lab: Lab) -> None:
    three = lab.cli("serve", "tiny-test", "--replicas", "3", timeout=300)
    assert three.returncode == 1, three.stdout + three.stderr
    assert ("2 of 3 placed (friend1 and friend2: already serving it (one replica per node))"
            in three.stdout), three.stdout
    assert "2 of 3 placed" in three.stderr  # said again where a script's errors go
    rows = _rows(lab)
    assert sorted(r["node"] for r in rows) == ["friend1", "friend2"]
    assert all(r["state"] == "ready" for r in rows), rows

    one = lab.cli("serve", "tiny-test", "--replicas", "1", timeout=120)
    assert one.returncode == 0, one.stdout + one.stderr
    rows = _rows(lab)
    assert len(rows) == 1 and rows[0]["state"] == "ready", rows
    kept, kept_id = rows[0]["node"], rows[0]["id"]
    gone = "friend2" if kept == "friend1" else "friend1"
    assert f"scaled 2 → 1: stopped {gone}" in one.stdout
    _wait_engines(lab, {kept: True, gone: False})  # the stopped node runs nothing any more

    again = lab.cli("serve", "tiny-test", "--replicas", "1")
    assert again.returncode == 0 and "nothing to change" in again.stdout

    two = lab.cli("serve", "tiny-test", "--replicas", "2", timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    assert f"scaled 1 → 2: started on {gone}" in two.stdout
    rows = _rows(lab)
    assert sorted(r["node"] for r in rows) == ["friend1", "friend2"]
    assert all(r["state"] == "ready" for r in rows), rows
    # the replica that kept serving was not restarted
    assert [r["id"] for r in rows if r["node"] == kept] == [kept_id]

    assert lab.cli("serve", "stop", "tiny-test", check=True).returncode == 0
    _wait_engines(lab, {"friend1": False, "friend2": False})
    missing = lab.cli("serve", "stop", "tiny-tset")
    assert missing.returncode == 5 and "tiny-tset is not served" in missing.stderr
