"""Checkpoints across ranks that do not share storage (one checkpoint dir per rank = per node)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
import torch

from gpuhive.train import checkpoint, localgroup
from gpuhive.train.world import init_distributed, shutdown


def _per_rank_dirs(root: Path) -> Any:
    def env(rank: int) -> dict[str, str]:
        return {"GPUHIVE_CHECKPOINT_DIR": str(root / f"node-{rank}"),
                "GPUHIVE_NODE_NAME": f"node-{rank}"}
    return env


def _resume_then_save(rank: int, chunk_bytes: int, save_step: int) -> dict[str, Any]:
    init_distributed()
    try:
        got = checkpoint.resume(chunk_bytes=chunk_bytes)
        w = None if got.state is None else got.state["w"]
        checkpoint.save({"w": torch.full((3,), float(save_step))}, save_step)
        return {"step": got.step, "source": got.source_node, "received": got.received,
                "w": w}
    finally:
        shutdown()


def _seed(root: Path, node: int, step: int, w: torch.Tensor) -> bytes:
    checkpoint.save({"w": w}, step, root / f"node-{node}", rank=0)
    return checkpoint.checkpoint_path(root / f"node-{node}", step).read_bytes()


def test_newest_wins_and_nodes_without_it_receive_it(tmp_path: Path) -> None:
    big = torch.arange(300_000, dtype=torch.float32)  # 1.2 MB: many 64 KiB chunks
    _seed(tmp_path, 0, 100, torch.zeros(10))
    newest = _seed(tmp_path, 1, 200, big)
    # node-2 has nothing at all (a node that just joined)
    results = localgroup.run(_resume_then_save, 3, 64 << 10, 300,
                             env=_per_rank_dirs(tmp_path))
    for r in results:
        assert r.exitcode == 0, r.error
    out = [r.value for r in results]
    assert [o["step"] for o in out] == [200, 200, 200]
    assert {o["source"] for o in out} == {"node-1"}
    assert [o["received"] for o in out] == [True, False, True]
    assert all(torch.equal(o["w"], big) for o in out)
    for node in (0, 2):  # the received file is stored on the receiving node, byte for byte
        assert checkpoint.checkpoint_path(tmp_path / f"node-{node}", 200).read_bytes() == newest
    # and saving is rank 0's job only
    assert checkpoint.checkpoint_path(tmp_path / "node-0", 300).exists()
    for node in (1, 2):
        assert not checkpoint.checkpoint_path(tmp_path / f"node-{node}", 300).exists()


def test_nothing_anywhere_starts_fresh(tmp_path: Path) -> None:
    results = localgroup.run(_resume_then_save, 2, 1 << 20, 10, env=_per_rank_dirs(tmp_path))
    assert [(r.exitcode, r.value["step"], r.value["w"]) for r in results] == [(0, 0, None)] * 2


def test_same_step_different_bytes_converge_on_the_lowest_rank(tmp_path: Path) -> None:
    _seed(tmp_path, 0, 50, torch.ones(4))
    _seed(tmp_path, 1, 50, torch.full((4,), 9.0))
    results = localgroup.run(_resume_then_save, 2, 1 << 20, 60, env=_per_rank_dirs(tmp_path))
    out = [r.value for r in results]
    assert [o["received"] for o in out] == [False, True]
    assert all(torch.equal(o["w"], torch.ones(4)) for o in out)
