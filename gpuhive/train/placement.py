"""Choosing nodes, processes per node and addresses for a job. Pure.

Which nodes: ``core/selection.select_for_training`` over ``need_of(spec)``, the same call
`gpuhive nodes rank --for train` makes (``rank_command`` spells that command for a spec).
Processes per node must be the same on every node (torch elastic requires it), so a mix
of GPU counts runs at the smallest. Addresses: every node's overlay address when all have
a working spoke; when all nodes are this same machine (the loopback lab) 127.0.0.1;
otherwise the job cannot run and the error names the nodes and why each has no overlay.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from gpuhive.core.endpoints import host_of
from gpuhive.core.model import NodeRecord
from gpuhive.core.selection import Selection, TrainNeed
from gpuhive.core.spoke_state import Spoke
from gpuhive.errors import GpuhiveError
from gpuhive.train.launch import Placement
from gpuhive.train.spec import JobSpec


class PlacementError(GpuhiveError):
    code = "placement"


@dataclass(frozen=True)
class Candidate:
    name: str
    gpus: int  # usable GPUs for this job (after the friend's limits)
    overlay_ip: str | None
    overlay_iface: str | None
    public_host: str  # the address the controller sees its link come from
    torch: str | None
    nccl: str | None
    # why the overlay cannot carry this node's ranks while the controller runs it ("": it
    # can, or the controller runs no overlay)
    overlay_problem: str = ""
    node_id: str = ""
    gpu_indices: tuple[int, ...] = ()  # the GPUs ranking chose (the job holds these)
    vendor: str = "nvidia"  # of its GPUs: how processes are pinned to them


def need_of(spec: JobSpec, overlay: bool) -> TrainNeed:
    """What ``spec`` asks of the nodes; ``overlay``: the controller runs the overlay hub."""
    return TrainNeed(min_nodes=spec.min_nodes, max_nodes=spec.max_nodes,
                     gpus_per_node=spec.gpus_per_node, min_vram_mib=spec.min_vram_mib,
                     backend=spec.backend, overlay=overlay)


def rank_command(spec: JobSpec) -> str:
    """The `gpuhive nodes rank` command that ranks the nodes exactly as ``spec`` selects."""
    argv = ["gpuhive", "nodes", "rank", "--for", "train", "--nodes", spec.nodes_text]
    if spec.gpus_per_node is not None:
        argv += ["--gpus", str(spec.gpus_per_node)]
    if spec.min_vram_mib:
        mib = spec.min_vram_mib
        argv += ["--min-vram", f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"]
    if spec.backend != "auto":
        argv += ["--backend", spec.backend]
    return shlex.join(argv)


def not_enough_nodes(spec: JobSpec, sel: Selection, *, ever: bool = False) -> PlacementError:
    """``ever``: judged on the nodes' hardware alone, so waiting would not help."""
    ranked = len(sel.ranking.ranked)
    reasons = "; ".join(f"{e.name}: {e.reasons[0].message}"
                        for e in sel.ranking.excluded[:5] if e.reasons)
    hint = f"`{rank_command(spec)}` shows why each node is left out"
    if not ever:
        return PlacementError(f"the job needs {spec.min_nodes} node(s) but only {ranked} "
                              "can take it" + (f" ({reasons})" if reasons else ""), hint=hint)
    return PlacementError(f"the job needs {spec.min_nodes} node(s) but only {ranked} could "
                          "ever take it" + (f" ({reasons})" if reasons else ""),
                          hint=hint + "; ask less of each node (--gpus-per-node, --min-vram)"
                          " or enroll more")


def candidates(sel: Selection, nodes: list[NodeRecord], overlay: bool) -> list[Candidate]:
    """The chosen nodes as the launch needs them; ``overlay``: the controller runs it."""
    by_name = {n.name: n for n in nodes}
    gpu_job = sel.request.gpus > 0
    out = []
    for r in sel.chosen:
        node = by_name[r.name]
        spoke, sw = Spoke.of(node.overlay), node.software
        out.append(Candidate(
            node.name, len(r.gpu_indices) if gpu_job else 0,
            spoke.ip if spoke.usable else None, spoke.iface if spoke.usable else None,
            host_of(node.public_addr), sw.torch if sw else None, sw.nccl if sw else None,
            overlay_problem=spoke.problem() if overlay else "", node_id=node.id,
            gpu_indices=tuple(r.gpu_indices) if gpu_job else (),
            vendor=_vendor(node)))
    return out


def _vendor(node: NodeRecord) -> str:
    gpus = node.hardware.gpus if node.hardware else []
    return gpus[0].vendor if gpus else "cpu"


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
    missing = [c for c in chosen if not c.overlay_ip]
    names = ", ".join(c.name for c in missing)
    broken = [c for c in missing if c.overlay_problem]
    if broken:  # the overlay runs: name what is wrong on each node, not the overlay
        why = "; ".join(f"{c.name}: {c.overlay_problem}" for c in broken)
        raise PlacementError(
            f"nodes {names} cannot use the overlay, so their ranks cannot reach each other "
            f"({why})", hint=f"fix the spoke on {broken[0].name} (`gpuhive nodes show "
            f"{broken[0].name}` has its error; docs/troubleshooting.md), or leave it out")
    raise PlacementError(
        f"nodes {names} have no overlay address, so their ranks cannot reach each other",
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
