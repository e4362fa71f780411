"""Checkpoints on one process: the resume plan, atomic writes, pruning, refusing bad files."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest

pytest.importorskip("torch")
import torch

from gpuhive.train import checkpoint
from gpuhive.train.checkpoint import Offer, Plan, plan_resume
from gpuhive.train.errors import CheckpointError


def test_plan_nothing_anywhere() -> None:
    assert plan_resume([Offer(0, "a"), Offer(1, "b")]) is None


def test_plan_newest_wins_and_those_without_it_receive() -> None:
    offers = [Offer(0, "a", 100, "x"), Offer(1, "b", 300, "z"), Offer(2, "c"),
              Offer(3, "b", 300, "z")]
    assert plan_resume(offers) == Plan(step=300, source_rank=1, source_node="b", digest="z",
                                       receivers=(0, 2))


def test_plan_same_step_different_bytes_takes_the_lowest_rank() -> None:
    offers = [Offer(0, "a", 200, "p"), Offer(1, "b", 200, "q"), Offer(2, "c", 200, "p")]
    assert plan_resume(offers) == Plan(200, 0, "a", "p", (1,))


def test_plan_everyone_has_it_means_no_transfer() -> None:
    plan = plan_resume([Offer(0, "a", 5, "d"), Offer(1, "b", 5, "d")])
    assert plan is not None and plan.receivers == ()


def test_save_is_rank_zero_only_atomic_and_pruned(tmp_path: Path) -> None:
    state = {"w": torch.arange(4.0), "step_note": "x"}
    assert checkpoint.save(state, 10, tmp_path, rank=1) is None
    assert list(tmp_path.iterdir()) == []
    for step in (10, 20, 30):
        checkpoint.save(state, step, tmp_path, rank=0, keep=2)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [20, 30]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000020.pt",
                                                          "ckpt-00000030.pt"]


def test_stale_temp_files_are_ignored_and_cleaned(tmp_path: Path) -> None:
    stale = tmp_path / ".ckpt-00000050.pt.tmp-999999-abcd1234"
    stale.write_bytes(b"half a file")
    assert checkpoint.list_checkpoints(tmp_path) == []
    checkpoint.save({"w": torch.zeros(1)}, 5, tmp_path, rank=0)
    assert not stale.exists()


def test_resume_single_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    fresh = checkpoint.resume(tmp_path / "none-yet", node="n")
    assert (fresh.step, fresh.state) == (0, None)
    checkpoint.save({"w": torch.ones(3)}, 7, tmp_path, rank=0)
    checkpoint.save({"w": torch.full((3,), 2.0)}, 9, tmp_path, rank=0)
    got = checkpoint.resume(tmp_path, node="n")
    assert got.step == 9 and got.source_node == "n" and not got.received
    assert got.state is not None and torch.equal(got.state["w"], torch.full((3,), 2.0))


def test_unreadable_or_foreign_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        checkpoint.deserialize(b"not a checkpoint", origin="x")
    assert err.value.hint
    buf = checkpoint.serialize(1, {"w": torch.zeros(1)})
    assert checkpoint.deserialize(buf)["w"].shape == (1,)
    foreign = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError):  # a torch file, not ours
        checkpoint.deserialize(foreign.getvalue())


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_received_bytes_are_not_unpickled_blindly() -> None:
    with pytest.raises(CheckpointError):
        checkpoint.deserialize(pickle.dumps({"format": 1, "step": 1, "state": _Evil()},
                                             protocol=2))


def test_write_failure_is_a_checkpoint_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError) as err:
        checkpoint.save({"w": torch.zeros(1)}, 1, blocker / "sub", rank=0)
    assert "GPUHIVE_CHECKPOINT_DIR" in err.value.hint
