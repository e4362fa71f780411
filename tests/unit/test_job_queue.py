"""The training queue over FakeNodes and a real registry: jobs hold their GPUs, wait when the
nodes are taken, start when they free up, and only node faults move a node's reliability."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest

from gpuhive.controller.jobs import JobSupervisor
from gpuhive.core.model import NodeStatus
from gpuhive.testing import Script
from gpuhive.testing.registry import NOW
from gpuhive.train.placement import PlacementError
from tests.unit.test_controller_jobs import FAST, SWEEP, TORCHRUN, Clock, Hive, kinds, until

QUICK = dataclasses.replace(FAST, queue_poll_s=0.01, queue_tell_s=0.0)


def busy(hive: Hive) -> asyncio.Event:
    """alice's and bob's torchrun run until the returned event is set."""
    release = asyncio.Event()
    for name in ("alice", "bob"):
        hive.nodes[name].on(TORCHRUN, lambda call: Script().err("[rank0]:working")
                            .wait_for(release).exit(0))
    return release


def queued_hive(tmp_path: Path) -> Hive:
    hive = Hive(tmp_path)
    hive.jobs.options = QUICK
    return hive


async def state_of(hive: Hive, job_id: str, state: str) -> dict[str, Any]:
    """The job once in ``state``; "queued" means waiting in the queue with a reason."""
    def there() -> bool:
        job = hive.jobs.show(job_id)
        return job["state"] == state and (state != "queued" or bool(job.get("queue_position")))
    await until(there, f"{job_id} {state}")
    return hive.jobs.show(job_id)


def test_a_job_waits_for_held_gpus_and_starts_when_they_are_released(tmp_path: Path) -> None:
    hive = queued_hive(tmp_path)

    async def go() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        release = busy(hive)
        first = hive.jobs.submit(hive.spec())
        await state_of(hive, first["id"], "running")
        second = hive.jobs.submit(hive.spec())
        waiting = await state_of(hive, second["id"], "queued")
        await asyncio.sleep(0.05)  # several scheduler passes: still nothing free
        assert hive.jobs.show(second["id"])["state"] == "queued"
        release.set()
        await asyncio.wait_for(asyncio.shield(hive.jobs.tasks[second["id"]]), 10)
        return hive.jobs.show(first["id"]), waiting, hive.jobs.show(second["id"])
    first, waiting, second = asyncio.run(go())
    assert waiting["queue_position"] == 1
    assert first["id"] in waiting["reason"]  # it names who holds the GPUs
    assert "waiting" in kinds(waiting)
    assert first["state"] == second["state"] == "succeeded"
    assert kinds(second)[:3] == ["queued", "waiting", "placed"]
    # the second held the GPUs only after the first had let them go
    f_end = max(h["released_at"] for h in first["holdings"])
    assert min(h["placed_at"] for h in second["holdings"]) >= f_end
    assert hive.jobs.holdings.live() == []


def test_no_wait_fails_at_once_with_the_reason(tmp_path: Path) -> None:
    hive = queued_hive(tmp_path)

    async def go() -> dict[str, Any]:
        release = busy(hive)
        first = hive.jobs.submit(hive.spec())
        await state_of(hive, first["id"], "running")
        second = hive.jobs.submit(hive.spec(wait=False))
        done = await state_of(hive, second["id"], "failed")
        release.set()
        await asyncio.wait_for(asyncio.shield(hive.jobs.tasks[first["id"]]), 10)
        return done
    job = asyncio.run(go())
    assert job["reason"].startswith("no room now: ")
    assert "without --no-wait the job waits in the queue" in job["reason"]
    assert job["holdings"] == [] and not hive.nodes["carol"].ran(TORCHRUN)


def test_a_queue_timeout_gives_up_and_a_queued_job_can_be_cancelled(tmp_path: Path) -> None:
    hive = queued_hive(tmp_path)

    async def go() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        release = busy(hive)
        first = hive.jobs.submit(hive.spec())
        await state_of(hive, first["id"], "running")
        timed = hive.jobs.submit(hive.spec(queue_timeout="0.2s"))
        other = hive.jobs.submit(hive.spec())
        gave_up = await state_of(hive, timed["id"], "failed")
        await state_of(hive, other["id"], "queued")
        cancelled = await hive.jobs.cancel(other["id"])
        release.set()
        await asyncio.wait_for(asyncio.shield(hive.jobs.tasks[first["id"]]), 10)
        return gave_up, cancelled, hive.jobs.show(first["id"])
    gave_up, cancelled, first = asyncio.run(go())
    assert gave_up["reason"].startswith("gave up after 0 s in the queue: ")
    assert f"held by job {first['id']}" in gave_up["reason"]
    assert cancelled["state"] == "cancelled" and cancelled["holdings"] == []
    assert first["state"] == "succeeded"


def test_priority_then_first_come_decides_who_gets_freed_nodes(tmp_path: Path) -> None:
    hive = queued_hive(tmp_path)

    async def go() -> list[str]:
        release = busy(hive)
        first = hive.jobs.submit(hive.spec())
        await state_of(hive, first["id"], "running")
        low = hive.jobs.submit(hive.spec(name="low"))
        high = hive.jobs.submit(hive.spec(name="high", priority=5))
        low2 = hive.jobs.submit(hive.spec(name="low2"))
        for j in (low, high, low2):
            await state_of(hive, j["id"], "queued")
        positions = {hive.jobs.show(j["id"])["name"]: hive.jobs.show(j["id"])["queue_position"]
                     for j in (low, high, low2)}
        assert positions == {"high": 1, "low": 2, "low2": 3}
        release.set()
        for j in (low, high, low2):
            await asyncio.wait_for(asyncio.shield(hive.jobs.tasks[j["id"]]), 10)
        order = sorted((low, high, low2), key=lambda j: min(
            h["placed_at"] for h in hive.jobs.show(j["id"])["holdings"]))
        return [hive.jobs.show(j["id"])["name"] for j in order]
    assert asyncio.run(go()) == ["high", "low", "low2"]


def test_more_gpus_per_node_than_any_node_has_is_refused_at_submit(tmp_path: Path) -> None:
    hive = queued_hive(tmp_path)
    with pytest.raises(PlacementError, match="could ever take it") as exc:
        hive.jobs.submit(hive.spec(gpus_per_node=3))
    assert "--gpus 3" in exc.value.hint


def test_queued_jobs_survive_a_controller_restart(tmp_path: Path) -> None:
    hive = queued_hive(tmp_path)

    async def before() -> tuple[str, str]:
        busy(hive)
        first = hive.jobs.submit(hive.spec())
        await state_of(hive, first["id"], "running")
        second = hive.jobs.submit(hive.spec(name="waits"))
        await state_of(hive, second["id"], "queued")
        await hive.jobs.stop()  # the controller goes down
        return first["id"], second["id"]
    first_id, second_id = asyncio.run(before())
    assert hive.jobs.store.get(second_id).state == "queued"

    # a new controller on the same registry: the running job's sessions died with the old
    # one; the queued job is back in the queue and runs
    jobs = JobSupervisor(hive.registry, hive.nodes, hive.ops, tmp_path / "jobs", Clock(),
                         random.Random(3), options=QUICK)
    hive.jobs = jobs
    for name in ("alice", "bob"):
        hive.nodes[name].on(TORCHRUN, Script().err("[rank0]:ok").exit(0))

    async def after() -> dict[str, Any]:
        assert jobs.resume() == [second_id]
        # what the dead controller's job held is released once its node confirms (or goes
        # offline); here the old holdings are released as the registry learns it
        for h in jobs.holdings.of(first_id):
            jobs.holdings.release(first_id, node_id=h.node_id, now=h.placed_at + 1,
                                  reason="test: confirmed gone")
        await asyncio.wait_for(asyncio.shield(jobs.tasks[second_id]), 10)
        return jobs.show(second_id)
    job = asyncio.run(after())
    assert job["state"] == "succeeded" and "requeued" in kinds(job)
    assert jobs.store.get(first_id).state == "failed"


def test_a_script_that_raises_leaves_the_node_reliability_alone(tmp_path: Path) -> None:
    hive = queued_hive(tmp_path)
    for name in ("alice", "bob"):
        hive.nodes[name].on(TORCHRUN, Script().err(
            "[rank0]:Traceback (most recent call last):",
            '[rank0]:  File "train.py", line 3, in <module>',
            "[rank0]:SystemExit: boom from rank 1").exit(1))
    job = asyncio.run(hive.run(hive.spec()))
    assert job["state"] == "failed" and "boom from rank 1" in job["reason"]
    for name in ("alice", "bob"):
        assert hive.registry.get_node(name).tasks == {}  # no task recorded either way
    assert "node_fault" not in kinds(job)


def test_a_lost_node_and_a_killed_worker_are_node_faults(tmp_path: Path) -> None:
    hive = queued_hive(tmp_path)
    # first job: bob ends well, then alice's worker is SIGKILLed (the kernel's OOM killer)
    hive.nodes["bob"].on(TORCHRUN, Script().err("[rank1]:done").exit(0))
    hive.nodes["alice"].on(TORCHRUN, Script().err("[rank0]:step 1").sleep(0.1).err(
        "torch.distributed.elastic.multiprocessing.api: failed (exitcode: -9) local_rank: 0",
        "Signal 9 (SIGKILL) received by PID 4242").exit(1))
    killed = asyncio.run(hive.run(hive.spec()))
    # second job: alice ends well, then bob's link drops and it cannot be asked afterwards
    hive.nodes["alice"].on(TORCHRUN, Script().err("[rank0]:done").exit(0))
    hive.nodes["bob"].on(TORCHRUN, Script().err("[rank1]:step 1").sleep(0.1).drop())
    hive.nodes["bob"].on(SWEEP, Script().drop())
    lost = asyncio.run(hive.run(hive.spec()))

    def faults(job: dict[str, Any]) -> dict[str, str]:
        return {e["node"]: e["fault"] for e in job["events"] if e["event"] == "node_fault"}
    assert killed["state"] == lost["state"] == "failed"
    assert list(faults(killed)) == ["alice"] and faults(killed)["alice"].startswith(
        "a process was killed")
    assert list(faults(lost)) == ["bob"] and faults(lost)["bob"].startswith("the link was lost")
    for name in ("alice", "bob"):  # one fault each: the other job's failure was not theirs
        assert len(hive.registry.get_node(name).tasks["failed"]) == 1

    # bob never confirmed its processes gone: its GPU stays held until it goes offline
    assert [h.node for h in hive.jobs.holdings.live()] == ["bob"]
    assert hive.jobs.reconcile() == []  # still online: it may still run them
    bob = hive.registry.get_node("bob")
    hive.registry.set_status(bob.id, NodeStatus.OFFLINE, "missed 3 heartbeats", NOW)
    assert hive.jobs.reconcile() == ["bob"]
    assert hive.jobs.holdings.live() == []
    (held,) = [h for h in hive.jobs.show(lost["id"])["holdings"] if h["node"] == "bob"]
    assert held["release_reason"] == "the node went offline"


@pytest.mark.parametrize(("exit_status", "tail", "fault"), [
    (0, [], None),
    (1, ["ValueError: bad batch"], None),  # the script raised: the job's failure
    (1, ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"], None),
    (1, ["RuntimeError: CUDA error: an illegal memory access was encountered"], "a CUDA"),
    (1, ["NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error"], "a CUDA"),
    (137, ["Signal 9 (SIGKILL) received by PID 12"], "a process was killed"),
    (None, [], "the link was lost"),
])
def test_only_machine_faults_count_against_the_node(exit_status: int | None, tail: list[str],
                                                     fault: str | None) -> None:
    from gpuhive.train.failure import node_fault
    got = node_fault(exit_status, tail)
    assert (got is None) if fault is None else (got is not None and got.startswith(fault))


WINDOW = "its friend's sharing window closed"


def stoppable(hive: Hive, names: tuple[str, ...], after_stop: int = 143) -> dict[str, Any]:
    """torchrun on ``names`` runs until that node's job processes are swept (as the reaper
    would SIGTERM them), then exits ``after_stop``; the second run on a node exits 0."""
    state: dict[str, Any] = {"runs": {n: 0 for n in names}, "events": {}}
    for name in names:
        ev = asyncio.Event()
        state["events"][name] = ev

        def run(call: Any, name: str = name, ev: asyncio.Event = ev) -> Script:
            state["runs"][name] += 1
            if state["runs"][name] > 1:
                return Script().err("[rank0]:again").exit(0)
            return Script().err("[rank0]:working").wait_for(ev).exit(after_stop)

        def sweep(call: Any, ev: asyncio.Event = ev) -> str:
            ev.set()
            return "found 1 killed 0"
        hive.nodes[name].on(TORCHRUN, run)
        hive.nodes[name].on(SWEEP, sweep)
    return state


def test_a_closing_window_stops_a_fixed_job_with_its_grace_and_requeues_it(
        tmp_path: Path) -> None:
    hive = queued_hive(tmp_path)
    state = stoppable(hive, ("alice", "bob"))

    async def go() -> dict[str, Any]:
        job = hive.jobs.submit(hive.spec(requeue=True, grace=45))
        await state_of(hive, job["id"], "running")
        assert await hive.jobs.stop_on("alice", WINDOW) == [job["id"]]
        assert await hive.jobs.stop_on("alice", WINDOW) == []  # once is enough
        await asyncio.wait_for(asyncio.shield(hive.jobs.tasks[job["id"]]), 10)
        return hive.jobs.show(job["id"])
    job = asyncio.run(go())
    assert job["state"] == "succeeded"
    assert state["runs"] == {"alice": 2, "bob": 2}  # stopped once, then run again
    k = kinds(job)
    assert k.count("node_left") == 2 and "requeued" in k and k.count("placed") == 2
    requeued = next(e for e in job["events"] if e["event"] == "requeued")
    assert requeued["detail"].startswith(f"alice stopped: {WINDOW}")
    # SIGTERM with the job's own grace, on both nodes (a fixed-size job cannot shrink)
    for name in ("alice", "bob"):
        grace = [c for c in hive.nodes[name].ran(SWEEP) if c.command.endswith(" 45")]
        assert len(grace) == 1
        # a friend taking the machine back is not the machine failing
        assert hive.registry.get_node(name).tasks["failed"] == []


def test_a_closing_window_shrinks_an_elastic_job(tmp_path: Path) -> None:
    hive = queued_hive(tmp_path)
    stoppable(hive, ("alice",))
    release = asyncio.Event()
    hive.nodes["bob"].on(TORCHRUN, Script().err("[rank1]:working").wait_for(release).exit(0))

    async def go() -> dict[str, Any]:
        job = hive.jobs.submit(hive.spec(nodes="1:2"))
        await state_of(hive, job["id"], "running")
        await hive.jobs.stop_on("alice", WINDOW)
        await until(lambda: "node_left" in kinds(hive.jobs.show(job["id"])), "alice left")
        assert hive.jobs.show(job["id"])["state"] == "running"
        release.set()
        await asyncio.wait_for(asyncio.shield(hive.jobs.tasks[job["id"]]), 10)
        return hive.jobs.show(job["id"])
    job = asyncio.run(go())
    assert job["state"] == "succeeded" and "requeued" not in kinds(job)
    assert not [c for c in hive.nodes["bob"].ran(SWEEP) if c.command.endswith(" 60")]
    assert hive.registry.get_node("alice").tasks.get("failed", []) == []


def test_without_requeue_a_stopped_job_fails_saying_why(tmp_path: Path) -> None:
    hive = queued_hive(tmp_path)
    stoppable(hive, ("alice", "bob"))

    async def go() -> dict[str, Any]:
        job = hive.jobs.submit(hive.spec())
        await state_of(hive, job["id"], "running")
        await hive.jobs.stop_on("bob", WINDOW)
        await asyncio.wait_for(asyncio.shield(hive.jobs.tasks[job["id"]]), 10)
        return hive.jobs.show(job["id"])
    job = asyncio.run(go())
    assert job["state"] == "failed" and f"bob stopped: {WINDOW}" in job["reason"]
    assert "node_fault" not in kinds(job)


def test_work_a_friend_stopped_with_pause_now_is_not_the_node_failing(tmp_path: Path) -> None:
    hive = queued_hive(tmp_path)
    stop = asyncio.Event()
    hive.nodes["alice"].on(TORCHRUN, Script().err("[rank0]:working").wait_for(stop).err(
        "Signal 9 (SIGKILL) received by PID 77").exit(1))
    hive.nodes["bob"].on(TORCHRUN, Script().err("[rank1]:working").hang())

    async def go() -> dict[str, Any]:
        job = hive.jobs.submit(hive.spec())
        await state_of(hive, job["id"], "running")
        alice = hive.registry.get_node("alice")
        # the friend ran `agent pause --now`: its heartbeat says paused, its processes die
        hive.registry.save_heartbeats([(alice.id, NOW, "paused", None, None)])
        stop.set()
        await asyncio.wait_for(asyncio.shield(hive.jobs.tasks[job["id"]]), 10)
        return hive.jobs.show(job["id"])
    job = asyncio.run(go())
    assert job["state"] == "failed"
    assert "alice stopped by its friend (agent pause)" in job["reason"]
    assert "node_fault" not in kinds(job)
    assert hive.registry.get_node("alice").tasks.get("failed", []) == []
