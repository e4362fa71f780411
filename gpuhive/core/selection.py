"""Which nodes a job or a model gets: the one choice `gpuhive train`, `gpuhive serve` and
`gpuhive nodes rank` share, so what `nodes rank` shows is what the scheduler does. Pure.

Training (``select_for_training``): with a GPU wanted (GPUs per node not 0, backend not
gloo) the GPU ranking; when it has fewer than ``min_nodes`` and both backend and GPUs per
node are auto, the CPU ranking instead (gloo). A job that spans nodes while the controller
runs the overlay needs every chosen node's WireGuard spoke up (``Request.needs_overlay``).

Serving (``select_for_serving``): one GPU per replica when enough GPU nodes fit, else the
CPU nodes with the RAM for it (llama.cpp runs on either).

Either way the best ``take`` ranked nodes are chosen, and it fits with at least ``need``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from gpuhive.core.holdings import NOTHING_HELD
from gpuhive.core.model import AgentState, NodeStatus
from gpuhive.core.parse_tables import DriverBlacklist, ThroughputTable
from gpuhive.core.ranking import (
    EMPTY_BLACKLIST,
    EMPTY_TABLE,
    NodeView,
    Purpose,
    Ranked,
    Ranking,
    Request,
    TaskHistory,
    rank_nodes,
)


@dataclass(frozen=True)
class TrainNeed:
    """What a training job asks of the nodes (``train.placement.need_of`` builds it)."""

    min_nodes: int = 1
    max_nodes: int = 1
    gpus_per_node: int | None = None  # None: auto
    min_vram_mib: int = 0
    backend: str = "auto"  # auto | nccl | gloo
    precision: str = "fp16"
    overlay: bool = False  # the controller runs the overlay hub

    @property
    def wants_gpu(self) -> bool:
        return self.gpus_per_node != 0 and self.backend != "gloo"

    @property
    def may_fall_back_to_cpu(self) -> bool:
        return self.wants_gpu and self.backend == "auto" and self.gpus_per_node is None


@dataclass(frozen=True)
class Selection:
    """The ranking the choice was made from, and how many nodes it needs and takes.

    ``gpu_ranking`` is the GPU ranking that had too few nodes when the choice fell back to
    CPU nodes (it says why each GPU node was left out); None otherwise.
    """

    request: Request
    ranking: Ranking
    need: int
    take: int
    gpu_ranking: Ranking | None = None
    # ``--gpus-per-node auto``: each eligible node's free GPUs (name → count), from which
    # the GPUs per node were chosen; empty otherwise
    free_gpus: dict[str, int] = field(default_factory=dict)

    @property
    def chosen(self) -> list[Ranked]:
        return self.ranking.ranked[: self.take]

    @property
    def fits(self) -> bool:
        return len(self.ranking.ranked) >= self.need

    @property
    def fell_back_to_cpu(self) -> bool:
        return self.gpu_ranking is not None

    def to_dict(self) -> dict[str, Any]:
        r = self.request
        out = {"request": {"gpus": r.gpus, "min_vram_mib": r.need_vram_mib,
                           "purpose": r.purpose.value, "precision": r.precision,
                           "needs_overlay": r.needs_overlay},
               "need": self.need, "take": self.take, "fits": self.fits,
               "chosen": [c.name for c in self.chosen],
               "cpu_fallback": self.fell_back_to_cpu, **self.ranking.to_dict()}
        if self.free_gpus:
            out["free_gpus"] = dict(self.free_gpus)
        if self.gpu_ranking is not None:
            out["gpu_excluded"] = [e.to_dict() for e in self.gpu_ranking.excluded]
        return out


def select_for_training(views: Iterable[NodeView], need: TrainNeed, now: float, *,
                        throughput: ThroughputTable = EMPTY_TABLE,
                        blacklist: DriverBlacklist = EMPTY_BLACKLIST,
                        cpu_fallback: bool | None = None) -> Selection:
    """``cpu_fallback``: None falls back to CPU nodes when too few GPU nodes fit *now*;
    True/False decides it (the scheduler decides from what the hardware could ever fit,
    so a GPU job waits for busy GPUs instead of running on CPUs)."""
    views = list(views)
    overlay = need.overlay and need.max_nodes > 1

    def rank(request: Request) -> Ranking:
        return rank_nodes(views, request, now, throughput=throughput, blacklist=blacklist)

    if need.wants_gpu:
        request = Request(need_vram_mib=need.min_vram_mib, gpus=max(1, need.gpus_per_node or 1),
                          purpose=Purpose.TRAIN, precision=need.precision,
                          needs_overlay=overlay)
    else:  # gloo on whatever the nodes have: their RAM must hold what was asked
        request = Request(need_vram_mib=need.min_vram_mib, gpus=0, purpose=Purpose.TRAIN,
                          precision=need.precision, needs_overlay=overlay)
    if cpu_fallback and need.may_fall_back_to_cpu:
        ranking = None
    else:
        ranking = rank(request)
        fits = len(ranking.ranked) >= need.min_nodes
        if fits and need.wants_gpu and need.gpus_per_node is None:
            return _every_free_gpu(rank, request, ranking, need)
        if cpu_fallback is False or fits or not need.may_fall_back_to_cpu:
            return Selection(request, ranking, need.min_nodes, need.max_nodes)
    cpu = Request(need_vram_mib=0, gpus=0, purpose=Purpose.TRAIN, precision=need.precision,
                  needs_overlay=overlay)
    return Selection(cpu, rank(cpu), need.min_nodes, need.max_nodes,
                     gpu_ranking=ranking or Ranking([], []))


def best_split(free: list[int], lo: int, hi: int) -> tuple[int, int]:
    """(nodes, GPUs per node) that run the most GPUs when every node must run the same
    count (torchrun's rule): the best ``k`` nodes in ``lo..hi`` times the fewest free among
    them. Ties go to fewer nodes (the same GPUs, less traffic between machines)."""
    ranked = sorted(free, reverse=True)
    best = (0, 0)
    for k in range(max(1, lo), min(hi, len(ranked)) + 1):
        per = ranked[k - 1]
        if k * per > best[0] * best[1]:
            best = (k, per)
    return best


def _every_free_gpu(rank: Callable[[Request], Ranking], one: Request, ranking: Ranking,
                    need: TrainNeed) -> Selection:
    """``--gpus-per-node auto``: every free GPU of the chosen nodes (see ``best_split``);
    ranking again at that count picks the GPUs on each node."""
    free = {r.name: max(1, r.free_gpus) for r in ranking.ranked}
    nodes, per = best_split(list(free.values()), need.min_nodes, need.max_nodes)
    if per <= 1:
        return Selection(one, ranking, need.min_nodes, need.max_nodes, free_gpus=free)
    request = replace(one, gpus=per)
    return Selection(request, rank(request), need.min_nodes, nodes, free_gpus=free)


def hardware_only(view: NodeView) -> NodeView:
    """``view`` as if the node were online, idle and shared: what its hardware could take
    once its friend and the queue allow. A request no such view fits never will."""
    # a spoke not heard from (the node is offline) may well come up; one that reported an
    # error is a configuration to fix, not a wait
    spoke = replace(view.spoke, reported=True, up=True) \
        if view.spoke.ip and not view.spoke.reported else view.spoke
    return replace(view, status=NodeStatus.ONLINE, agent_state=AgentState.AVAILABLE,
                   policy=replace(view.policy, paused=False, schedule=""), held=NOTHING_HELD,
                   thermal_events=(), tasks=TaskHistory(), spoke=spoke)


def select_for_serving(views: Iterable[NodeView], need_mib: int, replicas: int, now: float,
                       *, gpus: int | None = None, throughput: ThroughputTable = EMPTY_TABLE,
                       blacklist: DriverBlacklist = EMPTY_BLACKLIST) -> Selection:
    """``gpus``: None tries one GPU per replica, then CPU nodes; a number fixes it."""
    views = list(views)

    def rank(request: Request) -> Ranking:
        return rank_nodes(views, request, now, throughput=throughput, blacklist=blacklist)

    request = Request(need_vram_mib=need_mib, gpus=1 if gpus is None else gpus,
                      purpose=Purpose.SERVE)
    ranking = rank(request)
    if gpus is not None or len(ranking.ranked) >= replicas:
        return Selection(request, ranking, 1, replicas)
    cpu = Request(need_vram_mib=need_mib, gpus=0, purpose=Purpose.SERVE)
    return Selection(cpu, rank(cpu), 1, replicas, gpu_ranking=ranking)
