"""What the controller knows about nodes, in the lab: probes, link measurement, ranking,
owner controls. Friend links are shaped to 20 Mbit/s (tbf on the router, as root)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from gpuhive.lab.hive import Lab, LabOptions
from tests.integration.labs import running_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from running_lab(
        tmp_path_factory, LabOptions(friends=2, bandwidth="20mbit", heartbeat_interval=0.5))


def _ok(proc) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode == 0, proc.stderr
    return str(proc.stdout)


def test_link_measurement_of_a_shaped_node(lab: Lab) -> None:
    if lab.state.mode != "netns":
        pytest.skip("link shaping needs the network-namespace lab (root)")
    results = json.loads(_ok(lab.cli("nodes", "bench", "friend1", "--json")))
    (r,) = results
    assert r["ok"] and 15.0 <= r["down_mbps"] <= 25.0 and 15.0 <= r["up_mbps"] <= 25.0, r
    assert 0 < r["rtt_ms"] < 100
    assert r["gpu_skipped"] == "no GPU on this node (a CPU node)"  # said, not silent
    assert "GPU bench skipped: no GPU" in _ok(lab.cli("nodes", "bench", "friend2"))
    node = {n["name"]: n for n in lab.nodes()}["friend1"]
    assert node["link"]["down_mbps"] == r["down_mbps"]  # stored, shown by `nodes`
    assert "Mb/s" in _ok(lab.cli("nodes", "--wide"))  # the LINK column


def test_probe_stores_software(lab: Lab) -> None:
    out = _ok(lab.cli("nodes", "probe"))
    assert "friend1: 0 GPU(s) via cpu" in out and " · torch " in out and "NCCL" in out
    probed = json.loads(_ok(lab.cli("nodes", "probe", "friend1", "--json")))
    assert probed[0]["software"]["python"].count(".") == 2
    node = {n["name"]: n for n in lab.nodes()}["friend2"]
    assert node["software"]["python"].count(".") == 2
    assert node["hardware"]["probe_notes"]  # why each GPU probe was skipped


def test_owner_pause_and_policy_reach_the_ranking(lab: Lab) -> None:
    def rank() -> dict:
        return json.loads(_ok(lab.cli("nodes", "rank", "--gpus", "0", "--min-vram", "1G",
                                      "--json")))

    assert {n["name"] for n in rank()["ranked"]} == {"friend1", "friend2"}
    _ok(lab.cli("agent", "pause", host="friend2"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = rank()
        if [n["name"] for n in r["ranked"]] == ["friend1"]:
            break
        time.sleep(0.3)
    (excluded,) = r["excluded"]
    assert excluded["name"] == "friend2"
    assert {"paused", "owner_paused"} & {x["code"] for x in excluded["reasons"]}
    text = _ok(lab.cli("nodes", "rank", "--gpus", "0"))
    assert "✗ friend2" in text and "paused" in text
    assert "(paused)" in _ok(lab.cli("nodes", "--wide"))
    assert any(line.split()[:2] == ["friend2", "paused"]
               for line in _ok(lab.cli("nodes")).splitlines())
    _ok(lab.cli("agent", "resume", host="friend2"))
    _ok(lab.cli("agent", "policy", "--schedule", "00:00-00:01", host="friend1"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(rank()["ranked"]) != 1:
        time.sleep(0.3)
    r = rank()
    now_minute = time.gmtime().tm_hour * 60 + time.gmtime().tm_min
    if now_minute > 1:  # the window is closed right now (the lab's clock is UTC)
        assert [n["name"] for n in r["ranked"]] == ["friend2"]
        assert "schedule" in {x["code"] for x in r["excluded"][0]["reasons"]}
    _ok(lab.cli("agent", "policy", "--schedule", "", host="friend1"))


def test_rank_explains_when_nothing_fits(lab: Lab) -> None:
    nothing = lab.cli("nodes", "rank", "--gpus", "1", "--min-vram", "12G", "--for", "train",
                      "--json")
    assert nothing.returncode == 1  # nothing fits; the ranking is still printed
    r = json.loads(nothing.stdout)
    assert r["ranked"] == [] and not r["fits"]
    for e in r["excluded"]:
        assert e["reasons"] and all(x["message"] for x in e["reasons"])
    bad = lab.cli("nodes", "rank", "--min-vram", "lots")
    assert bad.returncode == 2 and "not a size" in bad.stderr
