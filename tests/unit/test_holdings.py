"""Holdings: the pure summary and the registry store that never lets one GPU be held twice."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gpuhive.controller.holding_store import HoldingConflict, HoldingStore, new_holding
from gpuhive.controller.registry import Registry
from gpuhive.core.holdings import (
    HolderKind,
    conflicts,
    free_ram_mib,
    free_vram_mib,
    summarize,
)

JOB, REPLICA = HolderKind.JOB, HolderKind.REPLICA


def test_summary_splits_whole_gpus_shared_vram_and_cpu_slots() -> None:
    hs = [new_holding(JOB, "j-1", "n-a", "alice", now=1, gpus=(0, 1), ram_mib=100),
          new_holding(REPLICA, "m@alice#0", "n-a", "alice", now=1, gpus=(2,), vram_mib=3000),
          new_holding(REPLICA, "m@alice#1", "n-a", "alice", now=1, gpus=(2,), vram_mib=1000),
          new_holding(JOB, "j-2", "n-b", "bob", now=1, ram_mib=2048)]
    held = summarize(hs)
    a, b = held["n-a"], held["n-b"]
    assert a.exclusive == {0: "j-1", 1: "j-1"} and a.shared_mib == {2: 4000}
    assert a.gpus_in_use == 3 and a.ram_mib == 100 and a.cpu_jobs == 0
    assert a.holder_of(0) == "job j-1" and "m@alice#1" in a.holder_of(2)
    assert b.cpu_jobs == 1 and b.ram_mib == 2048 and b.cpu_job_owners == ("j-2",)


def test_released_holdings_hold_nothing() -> None:
    from dataclasses import replace
    h = replace(new_holding(JOB, "j-1", "n-a", "a", now=1, gpus=(0,)), released_at=5.0)
    assert summarize([h]) == {}
    assert h.gpu_seconds(0, 100) == 4.0


def test_free_capacity_takes_the_larger_of_used_and_held() -> None:
    # a replica that has not loaded yet counts; once loaded it counts once, not twice
    assert free_vram_mib(24000, used_mib=0, held_mib=6000, reserve_mib=0) == 18000
    assert free_vram_mib(24000, used_mib=6500, held_mib=6000, reserve_mib=4000) == 13500
    assert free_ram_mib(available_mib=9000, total_mib=16000, held_mib=8000) == 8000


def test_conflicts_name_the_gpu_and_who_holds_it() -> None:
    live = [new_holding(JOB, "j-1", "n-a", "alice", now=1, gpus=(0,)),
            new_holding(REPLICA, "m@alice#0", "n-a", "alice", now=1, gpus=(1,), vram_mib=9)]
    assert conflicts([new_holding(JOB, "j-2", "n-a", "alice", now=2, gpus=(0,))], live) == \
        ["GPU 0 of alice is held by job j-1"]
    assert conflicts([new_holding(JOB, "j-2", "n-a", "alice", now=2, gpus=(1,))], live) == \
        ["GPU 1 of alice is held by replica m@alice#0"]
    # replicas may share a GPU; a job's GPUs on another node do not matter
    assert conflicts([new_holding(REPLICA, "m@alice#1", "n-a", "alice", now=2, gpus=(1,))],
                     live) == []
    assert conflicts([new_holding(JOB, "j-2", "n-b", "bob", now=2, gpus=(0,))], live) == []
    # two new holdings of one placement may not overlap either
    twice = [new_holding(JOB, "j-3", "n-c", "c", now=2, gpus=(0,)),
             new_holding(JOB, "j-4", "n-c", "c", now=2, gpus=(0,))]
    assert conflicts(twice, []) == ["GPU 0 of c is held by job j-3"]


@pytest.fixture
def store(tmp_path: Path) -> HoldingStore:
    return HoldingStore(Registry(tmp_path / "registry.db").connection)


def test_the_store_holds_releases_and_keeps_history(store: HoldingStore) -> None:
    store.hold([new_holding(JOB, "j-1", "n-a", "alice", now=10, gpus=(0, 1), processes=2),
                new_holding(JOB, "j-1", "n-b", "bob", now=10, gpus=(0, 1), processes=2)])
    assert {h.node for h in store.live()} == {"alice", "bob"}
    assert store.held_by_node()["n-a"].exclusive == {0: "j-1", 1: "j-1"}
    with pytest.raises(HoldingConflict, match="GPU 1 of bob is held by job j-1"):
        store.hold([new_holding(JOB, "j-2", "n-c", "carol", now=11, gpus=(0,)),
                    new_holding(JOB, "j-2", "n-b", "bob", now=11, gpus=(1,))])
    assert store.of("j-2") == []  # all or nothing: carol was not held either
    released = store.release("j-1", node_id="n-a", now=20, reason="processes gone")
    assert [h.node for h in released] == ["alice"]
    assert [h.node for h in store.live()] == ["bob"]
    store.release_node("n-b", now=30, reason="node offline")
    assert store.live() == []
    history = store.overlapping(0, 100)
    assert sorted((h.node, h.released_at, h.release_reason) for h in history) == [
        ("alice", 20, "processes gone"), ("bob", 30, "node offline")]
    assert store.overlapping(25, 100)[0].node == "bob"


def test_two_processes_racing_for_one_gpu_cannot_both_win(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    Registry(path).close()
    wins: list[str] = []
    losses: list[str] = []
    barrier = threading.Barrier(8)

    def one(i: int) -> None:
        reg = Registry(path)  # its own connection, as a second process would have
        try:
            barrier.wait()
            HoldingStore(reg.connection).hold(
                [new_holding(JOB, f"j-{i}", "n-a", "alice", now=i, gpus=(0,))])
            wins.append(f"j-{i}")
        except HoldingConflict as exc:
            losses.append(exc.message)
        finally:
            reg.close()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7
    assert all(f"held by job {wins[0]}" in m for m in losses)
