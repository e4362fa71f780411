"""The job supervisor's watch, cancel and logs, with scripted nodes and a real registry.

The nodes print what torch 2.13 printed in the lab; the supervisor must keep each node's exit
status in the record, drop only the c10d reverse-DNS warning from what the owner sees (the
raw per-node log keeps it), refuse to cancel an ended job, and filter `jobs logs`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpuhive.controller.job_store import JobRecord
from gpuhive.controller.jobs import JobSupervisor
from gpuhive.controller.registry import Registry
from gpuhive.core.model import NodeKind, NodeRecord, NodeStatus
from gpuhive.errors import ConfigError, JobAlreadyEnded
from gpuhive.train import launch
from gpuhive.train.spec import JobSpec
from gpuhive.transport.api import ExecResult

NOISE = ("[W1202 00:01:29.249612675 socket.cpp:207] [c10d] The hostname of the client "
         "socket cannot be retrieved. err=-3")


class ScriptedNodes:
    """What each node's torchrun prints and how it exits; the sweep finds nothing."""

    def __init__(self, lines: dict[str, list[str]], exits: dict[str, int | None]) -> None:
        self.lines, self.exits = lines, exits

    async def run(self, node: NodeRecord, argv: list[str],
                  sink: Callable[[str, str, str], None]) -> ExecResult:
        for line in self.lines[node.name]:
            sink(node.name, "err", line)
            await asyncio.sleep(0)
        status = self.exits[node.name]
        return ExecResult(node.name, status, "" if status is not None else "session broke")

    async def output(self, node: NodeRecord, command: str, **kw: Any) -> str:
        assert "gpuhive.agent.reaper" in command
        return "found 0 killed 0"


class Ops:
    def __init__(self) -> None:
        self.tasks: list[tuple[str, bool]] = []

    def record_task(self, node: str, ok: bool) -> None:
        self.tasks.append((node, ok))


def _node(name: str) -> NodeRecord:
    return NodeRecord(id=f"n-{name}", name=name, kind=NodeKind("agent"),
                      status=NodeStatus("online"), registered_at=0.0)


def _setup(tmp_path: Path, nodes: ScriptedNodes) -> tuple[JobSupervisor, Ops]:
    ops = Ops()
    clock = iter(float(t) for t in range(1000, 100000))
    sup = JobSupervisor(Registry(tmp_path / "registry.db"), nodes,  # type: ignore[arg-type]
                        ops, tmp_path / "jobs", clock=lambda: next(clock))  # type: ignore[arg-type]
    return sup, ops


async def _watched(sup: JobSupervisor, names: list[str], spec: JobSpec) -> JobRecord:
    job = JobRecord("j-abc123", "", "running", spec.to_dict(), 999.0, nodes=names,
                    started_at=1000.0)
    sup.store.create(job)
    (sup.jobs_dir / job.id).mkdir(parents=True)
    plan = launch.LaunchPlan(job.id, spec, "c0de", None, tuple(
        launch.Placement(n, "127.0.0.1", "lo") for n in names), 1, "gloo", 29500)
    await sup._watch(job, spec, plan, [_node(n) for n in names])
    return sup.store.get(job.id)


def test_a_finished_job_keeps_exit_codes_and_no_noise(tmp_path: Path) -> None:
    nodes = ScriptedNodes({"friend1": [NOISE, "[rank1]:" + NOISE, "[rank1]:done"],
                           "friend2": [NOISE, "[rank0]:step 0 loss 1.0", "[rank0]:done"]},
                          {"friend1": 0, "friend2": 0})
    sup, ops = _setup(tmp_path, nodes)
    job = asyncio.run(_watched(sup, ["friend1", "friend2"], JobSpec(script="t.py")))
    assert job.state == "succeeded" and job.reason == ""
    assert job.exits == {"friend1": 0, "friend2": 0} and job.lost == {}
    done = job.events[-1]
    assert done["event"] == "succeeded"
    assert re.fullmatch(r"friend1, friend2 exited 0 after \d+s", done["detail"]), done
    kept = (tmp_path / "jobs" / job.id / "output.log").read_text()
    assert "socket.cpp" not in kept
    assert "friend2/rank0 | step 0 loss 1.0" in kept and "friend1/rank1 | done" in kept
    raw = (tmp_path / "jobs" / job.id / "nodes" / "friend1.log").read_text().splitlines()
    assert raw == [NOISE, "[rank1]:" + NOISE, "[rank1]:done"]
    assert sorted(ops.tasks) == [("friend1", True), ("friend2", True)]


def test_a_failed_and_a_lost_node_are_both_recorded(tmp_path: Path) -> None:
    nodes = ScriptedNodes({"friend1": ["[rank0]:ValueError: no shard 7"], "friend2": [],
                           "friend3": []}, {"friend1": 1, "friend2": None, "friend3": 0})
    sup, _ = _setup(tmp_path, nodes)
    spec = JobSpec(script="t.py", min_nodes=1, max_nodes=3)  # elastic: a loss is survivable
    job = asyncio.run(_watched(sup, ["friend1", "friend2", "friend3"], spec))
    assert job.state == "failed"
    assert job.exits.get("friend1") == 1
    assert "friend1 exited 1 (ValueError: no shard 7)" in job.reason
    d = job.to_dict()
    assert d["exits"] == job.exits and d["lost"] == job.lost
    assert all(e["detail"] for e in job.events)  # never "failed: " with nothing after it


def test_cancelling_an_ended_job_is_an_error_with_its_own_exit_code(tmp_path: Path) -> None:
    sup, _ = _setup(tmp_path, ScriptedNodes({"friend1": []}, {"friend1": 0}))
    job = asyncio.run(_watched(sup, ["friend1"], JobSpec(script="t.py")))
    with pytest.raises(JobAlreadyEnded, match=rf"job {job.id} has already ended: succeeded") \
            as e:
        asyncio.run(sup.cancel(job.id))
    assert e.value.exit_code not in (0, 1, 2) and e.value.data["state"] == "succeeded"


def test_logs_replay_with_node_rank_and_tail(tmp_path: Path) -> None:
    lines = {"friend1": ["agent up", "[rank0]:a", "[rank0]:b", "[rank0]:c"],
             "friend2": ["[rank1]:x", NOISE]}
    sup, _ = _setup(tmp_path, ScriptedNodes(lines, {"friend1": 0, "friend2": 0}))
    job = asyncio.run(_watched(sup, ["friend1", "friend2"], JobSpec(script="t.py")))

    def logs(**kw: Any) -> list[str]:
        got: list[dict[str, Any]] = []
        asyncio.run(sup.logs(job.id, False, got.append, **kw))
        return [e["line"] for e in got]
    assert logs(node="friend1", tail=2) == ["friend1/rank0 | b", "friend1/rank0 | c"]
    assert logs(rank=1) == ["friend2/rank1 | x"]
    assert len(logs()) == 5  # everything but the noise
    with pytest.raises(ConfigError, match=r"did not run on 'friend9'") as e:
        logs(node="friend9")
    assert "friend1, friend2" in e.value.hint
    with pytest.raises(ConfigError, match=r"tail=-1 is not a whole number"):
        logs(tail=-1)


def test_following_applies_the_filter_to_live_lines(tmp_path: Path) -> None:
    sup, _ = _setup(tmp_path, ScriptedNodes({}, {}))
    job = JobRecord("j-live01", "", "running", JobSpec(script="t.py").to_dict(), 999.0,
                    nodes=["friend1", "friend2"], started_at=1000.0)
    sup.store.create(job)
    sup.store.save(job)

    async def follow() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        watching = asyncio.ensure_future(sup.logs(job.id, True, got.append, node="friend2"))
        while not sup.watchers.get(job.id):
            await asyncio.sleep(0)
        for line in ("friend1/rank0 | a", "friend2/rank1 | b", f"friend2 | {NOISE}"):
            sup._publish(job, {"event": "log", "line": line})
        sup._event(job, "node_done", "friend1: exit status 0", node="friend1", exit=0)
        sup._finish(job, "succeeded", "", detail="friend1, friend2 exited 0 after 3s")
        await watching
        return got
    got = asyncio.run(follow())
    assert [e["line"] for e in got if e["event"] == "log"] == ["friend2/rank1 | b"]
    assert [e["kind"] for e in got if e["event"] == "job"] == ["node_done", "succeeded"]


def test_a_mistyped_job_id_gets_a_suggestion_and_exit_code_5(tmp_path: Path) -> None:
    from gpuhive.controller.job_store import JobNotFound
    sup, _ = _setup(tmp_path, ScriptedNodes({"friend1": []}, {"friend1": 0}))
    asyncio.run(_watched(sup, ["friend1"], JobSpec(script="t.py")))
    with pytest.raises(JobNotFound, match=r"no job 'j-abc132'") as e:
        sup.show("j-abc132")
    assert e.value.hint.startswith("did you mean j-abc123?") and e.value.exit_code == 5
