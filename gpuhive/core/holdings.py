"""Holdings: what each job and serving replica holds on a node, from placement until the node
confirms its processes are gone. Pure: the registry stores them (``controller/holding_store``).

A **job** holds whole GPUs (no other job or replica may use them) or, on a CPU-only node,
one of the node's CPU job slots (one unless the friend allows more), plus the RAM and number
of processes it was placed with. A **replica** holds GPU indices and its VRAM estimate per
GPU (replicas may share a GPU while the VRAM lasts), or RAM on a CPU node.

Placement reads a node's free capacity as what the heartbeat reports *and* what holdings
say, whichever is less: a replica's model counts before it has loaded, and memory a
friend's own programs use counts as soon as the heartbeat sees it
(``free_vram_mib`` / ``free_ram_mib``). ``NodeHeld`` is one node's holdings, summarised
once per placement so that ranking thousands of nodes reads a few fields per node.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class HolderKind(str, enum.Enum):
    JOB = "job"
    REPLICA = "replica"


@dataclass(frozen=True)
class Holding:
    """One holder (a job or a replica) on one node."""

    id: str
    kind: HolderKind
    owner: str  # the job id or the replica id
    node_id: str
    node: str  # the node's name when placed (for messages and the ledger)
    gpus: tuple[int, ...] = ()
    vram_mib: int = 0  # per GPU; replicas only (a job's GPUs are whole)
    ram_mib: int = 0
    processes: int = 0
    placed_at: float = 0.0
    released_at: float | None = None
    release_reason: str = ""
    client: str = "owner"  # who asked for the work: the owner's CLI, or an API key's id

    @property
    def live(self) -> bool:
        return self.released_at is None

    @property
    def label(self) -> str:
        """How messages name the holder: ``job j-1a2b3c`` / ``replica tiny@friend1#0``."""
        return f"{self.kind.value} {self.owner}"

    def gpu_seconds(self, since: float, until: float) -> float:
        """GPU-seconds held within [since, until] (a CPU-node holding counts 0)."""
        start = max(self.placed_at, since)
        end = min(self.released_at if self.released_at is not None else until, until)
        return max(0.0, end - start) * len(self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind.value, "owner": self.owner,
                "node_id": self.node_id, "node": self.node, "gpus": list(self.gpus),
                "vram_mib": self.vram_mib, "ram_mib": self.ram_mib,
                "processes": self.processes, "placed_at": self.placed_at,
                "released_at": self.released_at, "release_reason": self.release_reason,
                "client": self.client}


@dataclass(frozen=True, slots=True)
class NodeHeld:
    """One node's live holdings, as placement reads them.

    ``exclusive``: GPU index → the job holding it whole. ``shared_mib``: GPU index → VRAM
    held by replicas on it. ``ram_mib``: RAM held by everything on the node.
    ``cpu_jobs``: training jobs on the node without a GPU.
    """

    exclusive: dict[int, str] = field(default_factory=dict)
    shared_mib: dict[int, int] = field(default_factory=dict)
    shared_by: dict[int, tuple[str, ...]] = field(default_factory=dict)
    ram_mib: int = 0
    cpu_jobs: int = 0
    cpu_job_owners: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.exclusive or self.shared_mib or self.ram_mib or self.cpu_jobs)

    @property
    def gpus_in_use(self) -> int:
        """Distinct GPUs held by anything (what the friend's ``max_gpus`` counts)."""
        return len(self.exclusive.keys() | self.shared_mib.keys())

    def holder_of(self, index: int) -> str:
        """Who holds GPU ``index``, in words ("" when nobody does)."""
        if index in self.exclusive:
            return f"job {self.exclusive[index]}"
        owners = self.shared_by.get(index, ())
        return ", ".join(f"replica {o}" for o in owners)


NOTHING_HELD = NodeHeld()


def summarize(holdings: Iterable[Holding]) -> dict[str, NodeHeld]:
    """Live holdings by node id (released ones are skipped)."""
    parts: dict[str, dict[str, Any]] = {}
    for h in holdings:
        if not h.live:
            continue
        p = parts.setdefault(h.node_id, {"exclusive": {}, "shared_mib": {}, "shared_by": {},
                                         "ram_mib": 0, "cpu_jobs": 0, "cpu_job_owners": []})
        p["ram_mib"] += h.ram_mib
        if h.kind is HolderKind.JOB:
            if h.gpus:
                for i in h.gpus:
                    p["exclusive"][i] = h.owner
            else:
                p["cpu_jobs"] += 1
                p["cpu_job_owners"].append(h.owner)
        else:
            for i in h.gpus:
                p["shared_mib"][i] = p["shared_mib"].get(i, 0) + h.vram_mib
                p["shared_by"][i] = (*p["shared_by"].get(i, ()), h.owner)
    return {nid: NodeHeld(p["exclusive"], p["shared_mib"], p["shared_by"], p["ram_mib"],
                          p["cpu_jobs"], tuple(p["cpu_job_owners"]))
            for nid, p in parts.items()}


def free_vram_mib(total_mib: int, used_mib: int, held_mib: int, reserve_mib: int) -> int:
    """What one GPU offers: total less the larger of what is used and what is held, less
    the friend's reserve. (A loaded replica shows in both; counting it once is right.)"""
    return total_mib - max(used_mib, held_mib) - reserve_mib


def free_ram_mib(available_mib: int, total_mib: int, held_mib: int) -> int:
    """What a node's RAM offers: the lesser of what the heartbeat says is available and
    what holdings leave of the total."""
    return min(available_mib, total_mib - held_mib)


def conflicts(new: Iterable[Holding], live: Iterable[Holding]) -> list[str]:
    """Why ``new`` cannot be held next to ``live`` (empty: it can): a GPU a job holds
    whole is never held twice, and a job never takes a GPU a replica holds."""
    taken: dict[tuple[str, int], Holding] = {}
    for h in live:
        if h.live:
            for i in h.gpus:
                prior = taken.get((h.node_id, i))
                if prior is None or h.kind is HolderKind.JOB:
                    taken[(h.node_id, i)] = h
    out = []
    for h in new:
        for i in h.gpus:
            prior = taken.get((h.node_id, i))
            if prior is not None and (h.kind is HolderKind.JOB
                                      or prior.kind is HolderKind.JOB):
                out.append(f"GPU {i} of {h.node} is held by {prior.label}")
            taken[(h.node_id, i)] = h
    return out
