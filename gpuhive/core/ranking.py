"""Which nodes can take a request, and in what order. Pure: ``now`` and tables are passed in.

**Eligibility.** A node is excluded, with every reason that applies (``Reason.code``):

* ``offline`` / ``degraded``: controller status is not ONLINE (missed heartbeats);
* ``paused`` / ``draining`` / ``agent_degraded``: what the agent says; ``owner_paused``
  (the friend lending the machine paused sharing; the code keeps its 0.1.0 name);
* ``schedule``: outside the friend's window (``"22:00-08:00"``, node's local time);
* ``thermal``: ≥ 3 thermal clock-slowdown events in the last 24 h;
* ``error_rate``: > 5 % of its last 50 tasks failed (tasks within 7 days, ≥ 10 of them;
  fewer than that is the reliability score's business, and the age limit lets an
  excluded node earn its way back instead of being shut out for ever);
* ``driver``: a GPU driver on the blacklist (``gpuhive/data/driver_blacklist.txt`` + user file);
* ``gpu_count``: fewer GPUs than asked for, counting the friend's ``max_gpus``;
* ``vram``: fewer than ``gpus`` GPUs with free VRAM − the friend's reserve ≥ need + 512 MiB
  headroom (exactly at the boundary is eligible);
* ``compute_capability``: fp16 training needs NVIDIA compute capability ≥ 7.0 (bf16: 8.0);
  an unknown capability is looked up in the throughput table, and allowed if still unknown;
* ``ram``: CPU-only requests (``gpus=0``) need available RAM ≥ need + headroom;
* ``held``: holdings (``NodeView.held``, core/holdings) leave too few GPUs: a training job
  takes only GPUs nothing holds, a replica also a GPU other replicas hold (its VRAM then
  counts what they hold, loaded or not); the friend's ``max_gpus`` counts every held GPU;
  a CPU-only node runs at most ``OwnerPolicy.cpu_jobs`` training jobs, and RAM counts
  what its work holds;
* ``overlay``: with ``Request.needs_overlay`` (the controller runs the overlay and the job
  spans nodes), a node whose WireGuard spoke cannot carry traffic, with the spoke's own
  error (``core/spoke_state``).

**Order** (best first), each step deciding only ties of the one before:

1. capability class: ⌊log2(fp16 TFLOPS)⌋ of the weakest GPU the request would use
   (measured figure, else the datasheet table; unknown GPUs rank after known ones), so
   GPUs within a factor of two compete on the next keys; CPU nodes: avx512 > avx2 > none;
2. reliability, in steps of 0.1;
3. load (mean GPU utilization of the chosen GPUs, else load_1m / cores), in quarters;
4. round-trip time to the controller, whole ms (unknown last);
5. for serving, the tighter VRAM fit (keeps big GPUs free for big models); then name, id.

``rank_nodes`` returns ``Ranking(ranked, excluded)``. It judges an excluded node only up
to its first failing check; ``Excluded.reasons`` works out the full list when read.
Speed (bench/rank_nodes.py, 10,000 nodes): about 2x the time of ``sum(range(10**6))``
on the same machine for a typical mix, about 4x when every node is eligible.
"""

from __future__ import annotations

import enum
import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from gpuhive.core.holdings import NOTHING_HELD, NodeHeld, free_ram_mib
from gpuhive.core.model import AgentState, GpuInfo, Hardware, NodeStatus
from gpuhive.core.parse_tables import DriverBlacklist, ThroughputTable
from gpuhive.core.schedule import local_minute_of, parse_schedule
from gpuhive.core.spoke_state import Spoke

DAY = 86400.0


class Purpose(str, enum.Enum):
    TRAIN = "train"
    SERVE = "serve"


@dataclass(frozen=True)
class Request:
    need_vram_mib: int  # per GPU (per node when gpus == 0: RAM)
    gpus: int = 1  # per node; 0 = CPU only
    purpose: Purpose = Purpose.SERVE
    precision: str = "fp16"  # fp16 | bf16 | fp32
    headroom_mib: int = 512
    needs_overlay: bool = False  # ranks on several nodes talk over the WireGuard overlay


@dataclass(frozen=True)
class OwnerPolicy:
    """What the friend lending the machine allows (``gpuhive agent policy`` there)."""

    max_gpus: int | None = None  # at most this many GPUs for the hive at once
    reserve_vram_mib: int = 0  # per GPU, kept for the friend's own use
    schedule: str = ""  # "22:00-08:00" in the friend's local time; "" = always
    paused: bool = False
    cpu_jobs: int = 1  # training jobs at once on a node without a GPU


class TaskRecord(NamedTuple):
    finished_at: float
    ok: bool


@dataclass(frozen=True)
class TaskHistory:
    """A node's finished tasks as two sorted tuples of times: all of them, and the failed.

    Ranking reads only a few entries of each (bisect) instead of every record; build it
    when a task finishes (``added``), not per ranking. Equal timestamps at the edge of
    the 50-task window may count a neighbour's outcome; that is within the rule's slack.
    """

    finished: tuple[float, ...] = ()
    failed: tuple[float, ...] = ()

    @classmethod
    def of(cls, records: Iterable[TaskRecord]) -> TaskHistory:
        recs = sorted(records)
        return cls(tuple(r.finished_at for r in recs),
                   tuple(r.finished_at for r in recs if not r.ok))

    def added(self, finished_at: float, ok: bool, keep: int = 200) -> TaskHistory:
        """With one more task (times kept sorted; only the last ``keep`` are kept)."""
        fin = _insort(self.finished, finished_at)[-keep:]
        failed = _insort(self.failed, finished_at) if not ok else self.failed
        oldest = fin[0] if fin else finished_at
        return TaskHistory(fin, tuple(t for t in failed if t >= oldest))

    def __len__(self) -> int:
        return len(self.finished)


def _insort(times: tuple[float, ...], t: float) -> tuple[float, ...]:
    if not times or t >= times[-1]:
        return (*times, t)
    i = bisect_left(times, t)
    return (*times[:i], t, *times[i:])


@dataclass(frozen=True, slots=True)
class NodeView:
    """What ranking needs to know about one node (the registry assembles it)."""

    node_id: str
    name: str
    hardware: Hardware
    status: NodeStatus = NodeStatus.ONLINE
    agent_state: AgentState = AgentState.AVAILABLE
    reliability: float = 0.3  # reliability.score_at(rel, now)
    load: float | None = None  # 0..1; None: derived from the hardware snapshot
    rtt_ms: float | None = None
    thermal_events: Sequence[float] = ()  # epoch seconds of thermal slowdown onsets
    tasks: TaskHistory = field(default_factory=TaskHistory)
    policy: OwnerPolicy = field(default_factory=OwnerPolicy)
    utc_offset_s: int = 0  # the node's, from its heartbeat
    measured_tflops: float | None = None  # per GPU, overrides the datasheet table
    spoke: Spoke = field(default_factory=Spoke)  # its WireGuard spoke, as last reported
    held: NodeHeld = NOTHING_HELD  # what jobs and replicas hold there now (core/holdings)


@dataclass(frozen=True)
class RankRules:
    thermal_max_events: int = 3
    thermal_window_s: float = DAY
    error_rate_max: float = 0.05
    error_window_tasks: int = 50
    error_min_tasks: int = 10
    error_max_age_s: float = 7 * DAY
    fp16_train_min_cc: tuple[int, int] = (7, 0)
    bf16_train_min_cc: tuple[int, int] = (8, 0)


DEFAULT_RULES = RankRules()
EMPTY_TABLE = ThroughputTable(())
EMPTY_BLACKLIST = DriverBlacklist(())


@dataclass(slots=True)
class Reason:
    """Why a node was excluded: a stable ``code`` and a sentence for people.

    ``message`` is built on first use from ``text`` and ``args`` (``text.format(*args)``),
    so ranking thousands of nodes does not format thousands of sentences nobody reads.
    """

    code: str
    text: str
    args: tuple[Any, ...] = ()

    @property
    def message(self) -> str:
        return self.text.format(*self.args) if self.args else self.text

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


_CPU_CLASS = {1: "avx512", 0: "avx2", -1: "no avx2"}  # _cpu_verdict's classes


@dataclass(slots=True)
class Ranked:
    """An eligible node, where it ranks and why. ``key`` is the sort key (smaller is better)."""

    node: NodeView
    gpu_indices: tuple[int, ...]
    tflops: float | None  # per GPU, the weakest chosen
    capability_class: int
    load: float
    spare_vram_mib: int  # on the tightest chosen GPU, after need + headroom
    key: tuple[Any, ...]
    # GPUs of the node that could each take the request (free of holdings, within the
    # friend's max_gpus): what ``--gpus-per-node auto`` may use there
    free_gpus: int = 0

    @property
    def node_id(self) -> str:
        return self.node.node_id

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def reliability(self) -> float:
        return self.node.reliability

    @property
    def rtt_ms(self) -> float | None:
        return self.node.rtt_ms

    @property
    def why(self) -> str:
        rtt = f"{self.rtt_ms:.0f} ms" if self.rtt_ms is not None else "rtt unknown"
        if self.gpu_indices:
            cap = f"{self.tflops:g} TFLOPS" if self.tflops else "throughput unknown"
            what = (f"gpus {','.join(map(str, self.gpu_indices))}: {cap} (class "
                    f"{self.capability_class})")
        else:
            what = f"cpu only ({_CPU_CLASS.get(self.capability_class, '?')})"
        return f"{what}, reliability {self.reliability:.2f}, load {self.load:.0%}, {rtt}"

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "name": self.name, "gpus": list(self.gpu_indices),
                "tflops": self.tflops, "capability_class": self.capability_class,
                "reliability": self.reliability, "load": self.load, "rtt_ms": self.rtt_ms,
                "spare_vram_mib": self.spare_vram_mib, "free_gpus": self.free_gpus,
                "why": self.why}


class Excluded:
    """A node that cannot take the request, with every reason that applies.

    Ranking stops judging an excluded node at its first failing check; the full list of
    reasons is worked out (from the same inputs, so the same answer) when first read.
    """

    __slots__ = ("_ctx", "_node", "_now", "_reasons", "name", "node_id")

    def __init__(self, node_id: str, name: str, reasons: tuple[Reason, ...] | None = None,
                 *, _lazy: tuple[NodeView, float, _Ctx] | None = None) -> None:
        self.node_id, self.name = node_id, name
        self._reasons = reasons
        self._node: NodeView | None = None
        self._ctx: _Ctx | None = None
        self._now = 0.0
        if _lazy is not None:
            self._node, self._now, self._ctx = _lazy

    @property
    def reasons(self) -> tuple[Reason, ...]:
        if self._reasons is None:
            assert self._node is not None and self._ctx is not None
            v = _evaluate(self._node, self._now, self._ctx, collect=True)
            self._reasons = v.reasons if isinstance(v, Excluded) else ()
            self._node = self._ctx = None
        return self._reasons

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def __repr__(self) -> str:
        return f"Excluded({self.node_id!r}, {self.name!r}, {self.reasons!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Excluded) and (self.node_id, self.name, self.reasons)
                == (other.node_id, other.name, other.reasons))

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "name": self.name,
                "reasons": [r.to_dict() for r in self.reasons]}


@dataclass(frozen=True)
class Ranking:
    ranked: list[Ranked]
    excluded: list[Excluded]

    def to_dict(self) -> dict[str, Any]:
        return {"ranked": [r.to_dict() for r in self.ranked],
                "excluded": [e.to_dict() for e in self.excluded]}


# ---------------------------------------------------------------- helpers


def parse_cc(text: str | None) -> tuple[int, int] | None:
    """'8.6' → (8, 6); None or junk → None."""
    if not text:
        return None
    major, _, minor = text.strip().partition(".")
    if major.isdigit() and (minor.isdigit() or not minor):
        return int(major), int(minor or 0)
    return None


def capability_class(tflops: float | None) -> int:
    return math.floor(math.log2(tflops)) if tflops and tflops > 0 else -100


def count_recent(times: Sequence[float], now: float, window_s: float) -> int:
    cutoff = now - window_s
    return sum(1 for t in times if cutoff <= t <= now)


def error_rate(tasks: TaskHistory, now: float,
               rules: RankRules = DEFAULT_RULES) -> tuple[int, int]:
    """(failed, counted) over the last ``error_window_tasks`` tasks within the age limit."""
    fin = tasks.finished
    lo = max(0, len(fin) - rules.error_window_tasks)
    lo = bisect_left(fin, now - rules.error_max_age_s, lo=lo)
    counted = len(fin) - lo
    if not counted or not tasks.failed:
        return 0, counted
    failed = len(tasks.failed) - bisect_left(tasks.failed, fin[lo])
    return failed, counted


_STATE_REASONS = {
    AgentState.PAUSED: Reason("paused", "the agent is paused"),
    AgentState.DRAINING: Reason("draining", "the node is draining: it takes no new work"),
    AgentState.DEGRADED: Reason("agent_degraded", "the agent reports itself degraded"),
}
_STATUS_REASONS = {
    NodeStatus.DEGRADED: Reason("degraded", "missed a heartbeat: degraded"),
    NodeStatus.OFFLINE: Reason("offline", "offline: three heartbeats missed"),
    NodeStatus.REMOVED: Reason("offline", "removed from the hive"),
}
_OWNER_PAUSED = Reason("owner_paused", "the friend paused sharing this machine")


# ---------------------------------------------------------------- evaluation


class _Ctx:
    """Per-call constants and memo tables (GPU model facts repeat across thousands of nodes)."""

    __slots__ = ("blacklist", "exclusive", "gpu_memo", "min_cc", "need", "req", "rules",
                 "table")

    def __init__(self, req: Request, table: ThroughputTable, blacklist: DriverBlacklist,
                 rules: RankRules) -> None:
        self.req, self.table, self.blacklist, self.rules = req, table, blacklist, rules
        self.need = req.need_vram_mib + req.headroom_mib
        # training jobs hold whole GPUs; serving replicas share one while its VRAM lasts
        self.exclusive = req.purpose is Purpose.TRAIN
        self.min_cc: tuple[int, int] | None = None
        if req.purpose is Purpose.TRAIN:
            if req.precision == "fp16":
                self.min_cc = rules.fp16_train_min_cc
            elif req.precision == "bf16":
                self.min_cc = rules.bf16_train_min_cc
        self.gpu_memo: dict[tuple[str, str, str | None, str | None], _GpuFacts] = {}

    def gpu_facts(self, g: GpuInfo) -> _GpuFacts:
        key = (g.vendor, g.name, g.compute_capability, g.driver_version)
        try:
            return self.gpu_memo[key]
        except KeyError:
            pass
        row = self.table.lookup(g.name) if self.table.rows else None
        low: tuple[int, int] | None = None
        if self.min_cc is not None and g.vendor == "nvidia":
            cc = parse_cc(g.compute_capability) or (
                parse_cc(row.compute_capability) if row is not None else None)
            if cc is not None and cc < self.min_cc:
                low = cc
        bad = None
        if g.driver_version and self.blacklist.rules:
            rule = self.blacklist.check(g.vendor, g.driver_version)
            if rule is not None:
                bad = Reason("driver", "{0} driver {1} is blacklisted ({2}): {3}",
                             (g.vendor, g.driver_version, rule.spec, rule.reason))
        facts = (row.fp16_tflops if row is not None else 0.0, low, bad)
        self.gpu_memo[key] = facts
        return facts


# (datasheet TFLOPS or 0.0, compute capability when below the minimum, blacklisted driver)
_GpuFacts = tuple[float, "tuple[int, int] | None", "Reason | None"]


def evaluate(node: NodeView, req: Request, now: float, *,
             throughput: ThroughputTable = EMPTY_TABLE,
             blacklist: DriverBlacklist = EMPTY_BLACKLIST,
             rules: RankRules = DEFAULT_RULES) -> Ranked | Excluded:
    """Judge one node for one request: ``Ranked`` (with its sort key) or ``Excluded``."""
    return _evaluate(node, now, _Ctx(req, throughput, blacklist, rules), collect=True)


def _evaluate(node: NodeView, now: float, ctx: _Ctx, collect: bool) -> Ranked | Excluded:
    """With ``collect`` False, return at the first failing check (a lazy ``Excluded``)."""
    reasons: list[Reason] = []
    rules = ctx.rules
    if node.status is not NodeStatus.ONLINE:
        reasons.append(_STATUS_REASONS[node.status])
    r = _STATE_REASONS.get(node.agent_state)
    if r is not None:
        reasons.append(r)
    pol = node.policy
    if pol.paused:
        reasons.append(_OWNER_PAUSED)
    if pol.schedule:
        sched = parse_schedule(pol.schedule)
        minute = local_minute_of(now, node.utc_offset_s)
        if not sched.allows(minute):
            reasons.append(Reason(
                "schedule", "outside the friend's window {0!r} (local time {1:02d}:{2:02d})",
                (sched.text, minute // 60, minute % 60)))
    if ctx.req.needs_overlay and not node.spoke.usable:
        reasons.append(Reason("overlay", "{0}", (node.spoke.problem(),)))
    if reasons and not collect:
        return Excluded(node.node_id, node.name, _lazy=(node, now, ctx))

    verdict = (_gpu_verdict(node, ctx, reasons, collect) if ctx.req.gpus > 0
               else _cpu_verdict(node, ctx, reasons))
    if verdict is None and not collect:
        return Excluded(node.node_id, node.name, _lazy=(node, now, ctx))

    if len(node.thermal_events) >= rules.thermal_max_events:
        n = count_recent(node.thermal_events, now, rules.thermal_window_s)
        if n >= rules.thermal_max_events:
            reasons.append(Reason(
                "thermal", "{0} thermal slowdown events in the last {1:g} h (excluded at {2})",
                (n, rules.thermal_window_s / 3600, rules.thermal_max_events)))
    if len(node.tasks) >= rules.error_min_tasks:
        failed, counted = error_rate(node.tasks, now, rules)
        if counted >= rules.error_min_tasks and failed > rules.error_rate_max * counted:
            reasons.append(Reason(
                "error_rate", "{0} of its last {1} tasks failed ({2:.1%} > {3:.0%})",
                (failed, counted, failed / counted, rules.error_rate_max)))
    if reasons or verdict is None:
        if not collect:
            return Excluded(node.node_id, node.name, _lazy=(node, now, ctx))
        return Excluded(node.node_id, node.name, tuple(reasons))
    return verdict


def _cpu_verdict(node: NodeView, ctx: _Ctx, reasons: list[Reason]) -> Ranked | None:
    hw = node.hardware
    req = ctx.req
    held = node.held
    avail = hw.memory_available_mib
    if held is not NOTHING_HELD:
        if req.purpose is Purpose.TRAIN and held.cpu_jobs >= node.policy.cpu_jobs:
            reasons.append(Reason(
                "held", "runs {0} training job(s) without a GPU ({1}); its friend allows {2}",
                (held.cpu_jobs, ", ".join(held.cpu_job_owners), node.policy.cpu_jobs)))
            return None
        avail = free_ram_mib(avail, hw.memory_total_mib, held.ram_mib)
    if avail < ctx.need:
        reasons.append(Reason(
            "ram", "{0} MiB RAM available < {1} + {2} MiB headroom{3}",
            (avail, req.need_vram_mib, req.headroom_mib,
             f" ({held.ram_mib} MiB held by its work)" if held.ram_mib else "")))
        return None
    flags = hw.cpu.flags
    cls = 1 if "avx512f" in flags else 0 if "avx2" in flags else -1
    load = node.load if node.load is not None else min(
        1.0, hw.load_1m / hw.cpu.cores if hw.cpu.cores else 1.0)
    return _ranked(node, req, (), None, cls, load, avail - ctx.need)


def _gpu_verdict(node: NodeView, ctx: _Ctx, reasons: list[Reason],
                 collect: bool) -> Ranked | None:
    """Pick the GPUs for the request, or add why not to ``reasons`` and return None."""
    req = ctx.req
    gpus: Sequence[GpuInfo] = node.hardware.gpus
    pol = node.policy
    want = req.gpus
    held = node.held
    shared: dict[int, int] = held.shared_mib
    cap = len(gpus) if pol.max_gpus is None else min(len(gpus), max(0, pol.max_gpus))
    if held is not NOTHING_HELD and cap >= want:
        gpus, cap = _unheld(gpus, held, pol, ctx.exclusive)
        if cap < want:
            if collect:
                reasons.append(_held_reason(node, held, pol, want))
            return None
    if cap < want:
        if collect:
            for g in gpus:
                bad = ctx.gpu_facts(g)[2]
                if bad is not None and bad not in reasons:
                    reasons.append(bad)
        if pol.max_gpus is not None and pol.max_gpus < min(len(gpus), want):
            reasons.append(Reason("gpu_count",
                                  "the friend shares at most {0} GPU(s); request needs {1}",
                                  (pol.max_gpus, want)))
        else:
            reasons.append(Reason("gpu_count", "has {0} GPU(s); request needs {1}",
                                  (len(gpus), want)))
        return None

    need = ctx.need
    reserve = pol.reserve_vram_mib
    measured = node.measured_tflops
    memo = ctx.gpu_memo
    usable: list[tuple[float, int, int, GpuInfo]] = []  # (TFLOPS, offered MiB, -index, gpu)
    best: GpuInfo | None = None  # the pick when want == 1: fastest, most free, lowest index
    best_tf = 0.0
    best_free = 0
    n_usable = 0
    best_offer = 0
    vram_ok = cc_ok = 0
    worst: tuple[tuple[int, int], str] | None = None
    bad_drivers: list[Reason] = []
    for g in gpus:
        facts = memo.get((g.vendor, g.name, g.compute_capability, g.driver_version))
        tf, low_cc, bad = facts if facts is not None else ctx.gpu_facts(g)
        if bad is not None:
            if not collect:
                return None
            if bad not in bad_drivers:
                bad_drivers.append(bad)
        used = g.memory_used_mib
        if shared and g.index in shared and shared[g.index] > used:
            used = shared[g.index]  # a replica's model counts before it has loaded
        offer = g.memory_total_mib - used - reserve
        if offer > best_offer:
            best_offer = offer
        if low_cc is not None:
            if worst is None or low_cc < worst[0]:
                worst = (low_cc, g.name)
            if offer >= need:
                vram_ok += 1
            continue
        cc_ok += 1
        if offer >= need:
            vram_ok += 1
            n_usable += 1
            tf = measured or tf
            if want != 1:
                usable.append((tf, offer, -g.index, g))
            elif (best is None or tf > best_tf or (tf == best_tf and (
                    offer > best_free or (offer == best_free and g.index < best.index)))):
                best, best_tf, best_free = g, tf, offer
    reasons.extend(bad_drivers)
    if n_usable < want:
        if not collect:
            return None
        if vram_ok < want:
            reasons.append(Reason(
                "vram", "needs {0} GPU(s) with {1} + {2} MiB headroom free; {3} qualify, "
                        "the best offers {4} MiB{5}",
                (want, req.need_vram_mib, req.headroom_mib, vram_ok, best_offer,
                 f" after the friend's {reserve} MiB reserve" if reserve else "")))
        if cc_ok < want and worst is not None and ctx.min_cc is not None:
            reasons.append(Reason(
                "compute_capability",
                "{0} has compute capability {1[0]}.{1[1]}; {2} training needs "
                "{3[0]}.{3[1]} or newer", (worst[1], worst[0], req.precision, ctx.min_cc)))
        if vram_ok >= want and cc_ok >= want:
            reasons.append(Reason(
                "vram", "only {0} GPU(s) meet both the VRAM and compute capability needs; "
                        "request needs {1}", (n_usable, want)))
        return None
    if bad_drivers:
        return None

    # The fastest GPUs, then the most free memory, then the lowest index.
    if best is not None:
        tf_min, spare = best_tf, best_free - need
        idx: tuple[int, ...] = (best.index,)
        util = best.utilization_pct
        load = node.load if node.load is not None else (util / 100.0 if util else 0.0)
    else:
        usable.sort(key=_usable_key, reverse=True)
        del usable[want:]
        tf_min = min(u[0] for u in usable)
        spare = min(u[1] for u in usable) - need
        idx = tuple(sorted(u[3].index for u in usable))
        if node.load is not None:
            load = node.load
        else:
            utils = [u[3].utilization_pct for u in usable if u[3].utilization_pct is not None]
            load = (sum(utils) / len(utils) / 100.0) if utils else 0.0
    return _ranked(node, req, idx, tf_min or None, capability_class(tf_min), load, spare,
                   min(n_usable, cap))


def _unheld(gpus: Sequence[GpuInfo], held: NodeHeld, pol: OwnerPolicy,
            exclusive: bool) -> tuple[Sequence[GpuInfo], int]:
    """The GPUs holdings leave for a request, and how many of them it may use at once.

    Jobs (``exclusive``) take only GPUs nothing holds; replicas also share a GPU other
    replicas hold, while its VRAM lasts. The friend's ``max_gpus`` counts every GPU held
    by anything: a replica may join a GPU already counted, not start a new one past it.
    """
    taken = held.exclusive
    busy = held.shared_mib
    if exclusive:
        left = [g for g in gpus if g.index not in taken and g.index not in busy]
    else:
        left = [g for g in gpus if g.index not in taken]
    if pol.max_gpus is None:
        return left, len(left)
    budget = max(0, pol.max_gpus - held.gpus_in_use)
    if exclusive:
        return left, min(len(left), budget)
    joined = [g for g in left if g.index in busy]
    if budget == 0:
        return joined, len(joined)
    return left, min(len(left), budget + len(joined))


def _held_reason(node: NodeView, held: NodeHeld, pol: OwnerPolicy, want: int) -> Reason:
    """Why holdings leave too few GPUs: each held GPU and what holds it."""
    idx = sorted(held.exclusive.keys() | held.shared_mib.keys())
    who = "; ".join(f"GPU {i} held by {held.holder_of(i)}" for i in idx)
    total = len(node.hardware.gpus)
    if pol.max_gpus is not None and pol.max_gpus < total:
        return Reason("held", "{0} of the {1} GPU(s) its friend shares are held ({2}); "
                              "request needs {3} free", (len(idx), pol.max_gpus, who, want))
    return Reason("held", "{0} of its {1} GPU(s) are held ({2}); request needs {3} free",
                  (len(idx), total, who, want))


def _usable_key(u: tuple[float, int, int, GpuInfo]) -> tuple[float, int, int]:
    return u[0], u[1], u[2]


def _ranked(node: NodeView, req: Request, idx: tuple[int, ...], tflops: float | None,
            cls: int, load: float, spare: int, free_gpus: int = 0) -> Ranked:
    rel = node.reliability
    rtt = node.rtt_ms
    key = (
        -cls,
        -int(rel * 10 + 1e-9),
        min(int(max(load, 0.0) * 4), 3),
        round(rtt) if rtt is not None else math.inf,
        spare if req.purpose is Purpose.SERVE else 0,
        node.name,
        node.node_id,
    )
    return Ranked(node, idx, tflops, cls, load, spare, key, free_gpus)


def rank_nodes(nodes: Iterable[NodeView], request: Request, now: float, *,
               throughput: ThroughputTable = EMPTY_TABLE,
               blacklist: DriverBlacklist = EMPTY_BLACKLIST,
               rules: RankRules = DEFAULT_RULES) -> Ranking:
    """Eligible nodes best first, and the excluded ones with their reasons (input order)."""
    ctx = _Ctx(request, throughput, blacklist, rules)
    ranked: list[Ranked] = []
    excluded: list[Excluded] = []
    for node in nodes:
        v = _evaluate(node, now, ctx, collect=False)
        if type(v) is Ranked:
            ranked.append(v)
        else:
            excluded.append(v)  # type: ignore[arg-type]
    ranked.sort(key=_key)
    return Ranking(ranked, excluded)


def _key(r: Ranked) -> tuple[Any, ...]:
    return r.key
