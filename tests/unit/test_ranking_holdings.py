"""Ranking with holdings: what jobs and replicas hold is not offered again."""

from __future__ import annotations

from gpuhive.core.holdings import HolderKind, Holding, summarize
from gpuhive.core.ranking import Excluded, OwnerPolicy, Purpose, Ranked, Request, evaluate
from tests.unit.test_ranking import NOW, gpu, node

TRAIN1 = Request(need_vram_mib=4000, gpus=1, purpose=Purpose.TRAIN)
SERVE8 = Request(need_vram_mib=8000)


def held(*hs: Holding) -> dict[str, object]:
    return {"held": summarize(hs)["id-a"]}


def job(owner: str, *gpus: int, ram: int = 0) -> Holding:
    return Holding(f"h-{owner}", HolderKind.JOB, owner, "id-a", "a", gpus=gpus, ram_mib=ram)


def replica(owner: str, index: int, vram: int) -> Holding:
    return Holding(f"h-{owner}", HolderKind.REPLICA, owner, "id-a", "a", gpus=(index,),
                   vram_mib=vram)


def four(**kw: object) -> object:
    return node("a", *(gpu(index=i) for i in range(4)), **kw)


def test_a_job_takes_only_gpus_nothing_holds() -> None:
    v = evaluate(four(**held(job("j-1", 0, 1), replica("r#0", 2, 2000))), TRAIN1, NOW)
    assert isinstance(v, Ranked)
    assert v.gpu_indices == (3,) and v.free_gpus == 1


def test_a_fully_held_node_says_which_gpu_holds_what() -> None:
    v = evaluate(four(**held(job("j-1", 0, 1, 2, 3))), TRAIN1, NOW)
    assert isinstance(v, Excluded)
    assert v.codes == ["held"]
    assert "GPU 0 held by job j-1" in v.reasons[0].message
    assert "4 of its 4 GPU(s) are held" in v.reasons[0].message


def test_a_replica_shares_a_gpu_while_its_vram_lasts() -> None:
    # GPU 0: 24564 MiB, a replica holds 14000 (not loaded yet: the heartbeat says 0 used)
    one = node("a", gpu(index=0), **held(replica("r#0", 0, 14000)))
    ok = evaluate(one, Request(need_vram_mib=9000), NOW)
    assert isinstance(ok, Ranked) and ok.gpu_indices == (0,)
    full = evaluate(one, Request(need_vram_mib=11000), NOW)
    assert isinstance(full, Excluded) and full.codes == ["vram"]
    # a job never takes a GPU a replica holds
    assert isinstance(evaluate(one, TRAIN1, NOW), Excluded)


def test_max_gpus_counts_every_held_gpu() -> None:
    pol = OwnerPolicy(max_gpus=1)
    v = evaluate(four(policy=pol, **held(replica("r#0", 2, 2000))), TRAIN1, NOW)
    assert isinstance(v, Excluded) and v.codes == ["held"]
    assert "1 of the 1 GPU(s) its friend shares are held" in v.reasons[0].message
    # another replica may join the GPU already counted, not start a second one
    s = evaluate(four(policy=pol, **held(replica("r#0", 2, 2000))), SERVE8, NOW)
    assert isinstance(s, Ranked) and s.gpu_indices == (2,)


def test_a_cpu_node_runs_as_many_training_jobs_as_its_friend_allows() -> None:
    cpu_train = Request(need_vram_mib=1000, gpus=0, purpose=Purpose.TRAIN)
    busy = node("a", **held(job("j-1", ram=1000)))
    v = evaluate(busy, cpu_train, NOW)
    assert isinstance(v, Excluded) and v.codes == ["held"] and "j-1" in v.reasons[0].message
    two = node("a", policy=OwnerPolicy(cpu_jobs=2), **held(job("j-1", ram=1000)))
    assert isinstance(evaluate(two, cpu_train, NOW), Ranked)


def test_ram_counts_what_work_holds() -> None:
    # 65536 total, 60000 available by heartbeat, 60000 held: 5536 left
    big = node("a", policy=OwnerPolicy(cpu_jobs=5), **held(job("j-1", ram=60000)))
    v = evaluate(big, Request(need_vram_mib=6000, gpus=0, purpose=Purpose.TRAIN), NOW)
    assert isinstance(v, Excluded) and v.codes == ["ram"]
    assert "60000 MiB held by its work" in v.reasons[0].message


def test_hardware_too_small_is_still_a_gpu_count_error_when_something_is_held() -> None:
    v = evaluate(four(**held(job("j-1", 0))), Request(need_vram_mib=1, gpus=5,
                                                       purpose=Purpose.TRAIN), NOW)
    assert isinstance(v, Excluded) and v.codes == ["gpu_count"]


def test_free_gpus_counts_what_auto_may_use() -> None:
    v = evaluate(four(**held(job("j-1", 1))), TRAIN1, NOW)
    assert isinstance(v, Ranked) and v.free_gpus == 3
    capped = evaluate(four(policy=OwnerPolicy(max_gpus=2)), TRAIN1, NOW)
    assert isinstance(capped, Ranked) and capped.free_gpus == 2
