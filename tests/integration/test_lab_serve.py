"""gpuhive serve in the lab: llama.cpp replicas on two NAT'd nodes, the official openai client
against the controller's gateway, a node killed mid-stream, nothing left after stop."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuhive.lab import procs
from gpuhive.lab.hive import Lab, LabOptions
from tests.integration.labs import running_lab

CLIENT = Path(__file__).resolve().parents[1] / "data" / "serve" / "client.py"
pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed by scripts/setup.sh")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from running_lab(tmp_path_factory, LabOptions(friends=2, heartbeat_interval=0.5))


def _client(lab: Lab, key: str, mode: str, *kill: str) -> dict:
    proc = lab.run_on("ctl", [sys.executable, str(CLIENT), lab.http_url + "/v1", key, mode,
                              *kill], timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.timeout(600)
def test_two_replicas_failover_and_clean_stop(lab: Lab) -> None:
    served = lab.cli("serve", "tiny-test", "--replicas", "2", timeout=300)
    assert served.returncode == 0, served.stdout + served.stderr
    rows = json.loads(lab.cli("serve", "ls", "--json", check=True).stdout)
    assert sorted(r["node"] for r in rows) == ["friend1", "friend2"]
    assert all(r["state"] == "ready" for r in rows)
    key = next(w for w in lab.cli("keys", "create", "tests", check=True).stdout.split()
               if w.startswith("ghk_"))
    assert _client(lab, key, "models")["models"] == ["tiny-test"]
    assert _client(lab, "ghk_wrong", "badkey")["error"] == "AuthenticationError"
    chat = _client(lab, key, "chat")
    assert chat["finish"] in ("stop", "length") and isinstance(chat["text"], str)
    reference = _client(lab, key, "reference")["text"]
    assert reference
    # one node vanishes while the answer streams: the client still gets the same text
    kill = [sys.executable, "-c", "from gpuhive.lab import hive; from pathlib import Path; "
            f"hive.load(Path({str(lab.dir)!r})).kill_node('friend2')"]
    streamed = _client(lab, key, "stream", *kill)
    assert streamed["text"] == reference
    lab.wait_for({"friend2": "offline"}, timeout=20)
    # the owner of friend1 pauses sharing: its replica stops and leaves the gateway
    assert lab.cli("agent", "pause", host="friend1").returncode == 0
    deadline = time.monotonic() + 20
    rows = []
    while time.monotonic() < deadline:
        rows = json.loads(lab.cli("serve", "ls", "--json", check=True).stdout)
        if all(r["state"] != "ready" for r in rows if r["node"] == "friend1"):
            break
        time.sleep(0.3)
    assert [r["state"] for r in rows if r["node"] == "friend1"] == ["stopped"], rows
    assert lab.cli("agent", "resume", host="friend1").returncode == 0
    assert lab.cli("serve", "stop", "tiny-test", check=True).returncode == 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (procs.pids_running("gpuhive.serve.node.worker")
                                           or procs.pids_running("llama_cpp.server")):
        time.sleep(0.2)
    assert procs.pids_running("gpuhive.serve.node.worker") == []
    assert procs.pids_running("llama_cpp.server") == []
    revoked = lab.cli("keys", "revoke", "tests", check=True)
    assert "revoked" in revoked.stdout
