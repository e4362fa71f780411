"""Choosing nodes, processes per node and addresses for a job. Pure.

Processes per node must be the same on every node (torch elastic requires it), so a mix
of GPU counts runs at the smallest. Addresses: every node's overlay address when all have
one; when all nodes are this same machine (the loopback lab) 127.0.0.1; otherwise the job
cannot run and the error names the nodes without an overlay address.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuhive.errors import GpuhiveError
from gpuhive.train.launch import Placement
from gpuhive.train.spec import JobSpec


class PlacementError(GpuhiveError):
    code = "placement"


@dataclass(frozen=True)
class Candidate:
    name: str
    gpus: int  # usable GPUs for this job (after the owner's limits)
    overlay_ip: str | None
    overlay_iface: str | None
    public_host: str  # the address the controller sees its link come from
    torch: str | None
    nccl: str | None


def processes_per_node(spec: JobSpec, chosen: list[Candidate]) -> tuple[int, str]:
    """(nproc per node, backend)."""
    gpu_counts = [c.gpus for c in chosen]
    all_gpu = all(g > 0 for g in gpu_counts)
    backend = spec.backend
    if backend == "auto":
        backend = "nccl" if all_gpu else "gloo"
    if backend == "nccl" and not all_gpu:
        names = ", ".join(c.name for c in chosen if c.gpus == 0)
        raise PlacementError(f"--backend nccl needs a GPU on every node; {names} has none",
                             hint="use --backend gloo or pick GPU nodes")
    if spec.gpus_per_node is not None:
        if spec.gpus_per_node > 0 and min(gpu_counts) < spec.gpus_per_node:
            short = min(chosen, key=lambda c: c.gpus)
            raise PlacementError(f"node {short.name} offers {short.gpus} GPU(s), "
                                 f"--gpus-per-node asks for {spec.gpus_per_node}",
                                 hint="lower --gpus-per-node or use auto")
        return max(1, spec.gpus_per_node), backend
    return (min(gpu_counts) if all_gpu else 1), backend


def addresses(chosen: list[Candidate]) -> list[Placement]:
    if all(c.overlay_ip for c in chosen):
        return [Placement(c.name, str(c.overlay_ip), c.overlay_iface or "ghv0") for c in chosen]
    if len(chosen) == 1 or all(c.public_host in ("127.0.0.1", "::1") for c in chosen):
        return [Placement(c.name, "127.0.0.1", "lo") for c in chosen]
    missing = ", ".join(c.name for c in chosen if not c.overlay_ip)
    raise PlacementError(
        f"nodes {missing} have no overlay address, so their ranks cannot reach each other",
        hint="start the controller with `gpuhive up --overlay` and give the agents "
             "CAP_NET_ADMIN (see docs/networking.md), or train on one node")


def version_mismatch(chosen: list[Candidate], backend: str) -> str | None:
    """A sentence naming the odd node out when torch (or NCCL) versions differ."""
    for attr, label in (("torch", "torch"), ("nccl", "NCCL")):
        if attr == "nccl" and backend != "nccl":
            continue
        values = [getattr(c, attr) for c in chosen]
        missing = [c.name for c, v in zip(chosen, values, strict=True) if not v]
        if attr == "torch" and missing:
            return f"node {missing[0]} has no torch installed"
        if len(set(values)) > 1:
            common = max(set(values), key=values.count)
            odd = next(c for c, v in zip(chosen, values, strict=True) if v != common)
            return (f"node {odd.name} has {label} {getattr(odd, attr)} but the others have "
                    f"{common}")
    return None
