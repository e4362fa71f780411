"""DiLoCo and the DDP hooks across real gloo ranks on loopback (spawned processes)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

pytest.importorskip("torch")
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from gpuhive.train import localgroup
from gpuhive.train.compression import comm_hook
from gpuhive.train.diloco import DiLoCo
from gpuhive.train.errors import PeerLost
from gpuhive.train.meter import GRADIENTS, PSEUDO_GRADIENTS, CommMeter
from gpuhive.train.world import Compress, init_distributed, shutdown


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _loss(model: torch.nn.Module, rank: int, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * rank + step)  # each rank its own data
    x, y = torch.randn(8, 6, generator=g), torch.randn(8, 3, generator=g)
    return torch.nn.functional.mse_loss(model(x), y)


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _sha(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _results(results: list[localgroup.RankResult]) -> list[Any]:
    for r in results:
        assert r.exitcode == 0 and not r.error, f"rank {r.rank} failed:\n{r.error}"
    return [r.value for r in results]


# --- H=1, outer lr 1, no momentum: DiLoCo is data-parallel averaging ----------------------

def _h1_vs_averaging(rank: int, steps: int) -> float:
    """Inner AdamW: compare with averaging the parameters after every local step."""
    init_distributed()
    try:
        a, b = _model(), _model()
        diloco = DiLoCo(a, torch.optim.AdamW(a.parameters(), lr=1e-2), sync_every=1,
                        outer_lr=1.0, outer_momentum=0.0, comm_dtype="fp32")
        opt_b = torch.optim.AdamW(b.parameters(), lr=1e-2)
        worst = 0.0
        for step in range(steps):
            diloco.inner_optimizer.zero_grad()
            _loss(a, rank, step).backward()
            diloco.step()
            opt_b.zero_grad()
            _loss(b, rank, step).backward()
            opt_b.step()
            with torch.no_grad():
                for p in b.parameters():
                    dist.all_reduce(p)
                    p.div_(dist.get_world_size())
            worst = max(worst, float((_flat(a) - _flat(b)).abs().max()))
        return worst
    finally:
        shutdown()


def _h1_vs_ddp(rank: int, steps: int) -> float:
    """Inner SGD: averaging parameters after a step is averaging gradients, i.e. DDP."""
    init_distributed()
    try:
        a, b = _model(), _model()
        diloco = DiLoCo(a, torch.optim.SGD(a.parameters(), lr=0.05), sync_every=1,
                        outer_lr=1.0, outer_momentum=0.0, comm_dtype="fp32")
        ddp = DDP(b)
        opt_b = torch.optim.SGD(b.parameters(), lr=0.05)
        worst = 0.0
        for step in range(steps):
            diloco.inner_optimizer.zero_grad()
            _loss(a, rank, step).backward()
            diloco.step()
            opt_b.zero_grad()
            _loss(ddp, rank, step).backward()
            opt_b.step()
            worst = max(worst, float((_flat(a) - _flat(b)).abs().max()))
        return worst
    finally:
        shutdown()


@pytest.mark.parametrize("worker", [_h1_vs_averaging, _h1_vs_ddp])
def test_h1_lr1_no_momentum_equals_data_parallel(worker: Any) -> None:
    worst = _results(localgroup.run(worker, 2, 25))
    assert max(worst) < 1e-5


# --- every outer step leaves identical global weights on every rank ------------------------

def _identical_after_every_round(rank: int, rounds: int, h: int) -> dict[str, Any]:
    init_distributed()
    try:
        model = _model(seed=rank)  # different starting weights: sync_from must fix that
        diloco = DiLoCo(model, torch.optim.AdamW(model.parameters(), lr=1e-2), sync_every=h)
        diloco.sync_from(0)
        start = _sha(diloco.global_weights)
        after, midway, local_is_global = [], [], []
        for step in range(rounds * h):
            diloco.inner_optimizer.zero_grad()
            _loss(model, rank, step).backward()
            if diloco.step():
                after.append(_sha(diloco.global_weights, diloco.momentum))
                local_is_global.append(torch.equal(_flat(model), diloco.global_weights))
            elif diloco.pending == h // 2:
                midway.append(_sha(_flat(model)))
        return {"start": start, "after": after, "midway": midway, "local": local_is_global,
                "rounds": diloco.rounds, "bytes": diloco.meter.bytes[PSEUDO_GRADIENTS],
                "numel": diloco.global_weights.numel()}
    finally:
        shutdown()


def test_all_ranks_hold_identical_global_weights_after_every_outer_step() -> None:
    out = _results(localgroup.run(_identical_after_every_round, 3, 5, 4))
    assert len({o["start"] for o in out}) == 1
    assert all(len(o["after"]) == 5 for o in out)
    assert out[0]["after"] == out[1]["after"] == out[2]["after"]
    assert len(set(out[0]["after"])) == 5  # and they do move
    assert all(all(o["local"]) for o in out)
    for i in range(5):  # between outer steps every rank drifts its own way
        assert len({o["midway"][i] for o in out}) == 3
    # bf16 on the wire: 2 bytes per weight per round, counted exactly
    assert all(o["bytes"] == 5 * o["numel"] * 2 for o in out)


# --- a peer leaving mid-round --------------------------------------------------------------

def _peer_leaves(rank: int, h: int) -> dict[str, Any]:
    init_distributed(timeout_s=60)
    model = _model()
    diloco = DiLoCo(model, torch.optim.SGD(model.parameters(), lr=0.1), sync_every=h)
    for step in range(h):  # round 1 completes on both ranks
        diloco.inner_optimizer.zero_grad()
        _loss(model, rank, step).backward()
        diloco.step()
    before = diloco.global_weights.clone()
    if rank == 1:
        os._exit(0)  # the node goes away mid-round 2
    for step in range(h, 2 * h - 1):
        diloco.inner_optimizer.zero_grad()
        _loss(model, rank, step).backward()
        diloco.step()
    diloco.inner_optimizer.zero_grad()
    _loss(model, rank, 2 * h).backward()
    try:
        diloco.step()
    except PeerLost as exc:
        return {"lost": True, "hint": exc.hint, "global_kept": torch.equal(
            diloco.global_weights, before), "local_reset": torch.equal(_flat(model), before),
            "rounds": diloco.rounds, "finite": bool(torch.isfinite(before).all())}
    return {"lost": False}


def test_a_peer_leaving_mid_round_discards_the_round_and_keeps_the_weights() -> None:
    results = localgroup.run(_peer_leaves, 2, 4, timeout_s=180)
    assert results[1].exitcode == 0 and results[1].value is None
    r0 = results[0]
    assert r0.exitcode == 0, r0.error
    assert r0.value["lost"] and "restarts" in r0.value["hint"]
    assert r0.value["global_kept"] and r0.value["local_reset"] and r0.value["finite"]
    assert r0.value["rounds"] == 1


# --- DDP hooks: the byte count is exactly what reaches all_reduce -------------------------

def _hook_bytes(rank: int, steps: int) -> dict[str, tuple[int, int, int]]:
    init_distributed()
    seen = {"bytes": 0}
    real_all_reduce = dist.all_reduce

    def counting(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen["bytes"] += tensor.numel() * tensor.element_size()
        return real_all_reduce(tensor, *args, **kwargs)

    dist.all_reduce = counting  # torch's hooks look up dist.all_reduce at each call
    try:
        out = {}
        for compress in Compress:
            model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(),
                                        torch.nn.Linear(64, 32), torch.nn.Linear(32, 4))
            meter = CommMeter()
            ddp = DDP(model, bucket_cap_mb=1000)  # one bucket (see compression.wrap_model)
            ddp.register_comm_hook(*comm_hook(compress, meter, powersgd_start=2))
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            seen["bytes"] = 0
            for step in range(steps):
                opt.zero_grad()
                g = torch.Generator().manual_seed(step * 10 + rank)
                ddp(torch.randn(4, 32, generator=g)).pow(2).mean().backward()
                opt.step()
            numel = sum(p.numel() for p in model.parameters())
            out[compress.value] = (meter.bytes[GRADIENTS], seen["bytes"], numel)
        return out
    finally:
        dist.all_reduce = real_all_reduce
        shutdown()


def test_ddp_hook_byte_counts_are_exact() -> None:
    out = _results(localgroup.run(_hook_bytes, 2, 6))
    for per_rank in out:
        for compress, (counted, reached_all_reduce, _) in per_rank.items():
            assert counted == reached_all_reduce, compress
        numel = per_rank["none"][2]
        assert per_rank["none"][0] == 6 * numel * 4
        assert per_rank["bf16"][0] == per_rank["fp16"][0] == 6 * numel * 2
        # PowerSGD: plain fp32 for the first 2 steps, then far fewer bytes
        assert 2 * numel * 4 < per_rank["powersgd"][0] < 3 * numel * 4
