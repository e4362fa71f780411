"""Records shared by the controller, the agent and the CLI. Plain dataclasses, no I/O.

Every record converts to and from plain JSON-able dicts (``to_dict`` / ``from_dict``)
because it crosses the wire (heartbeats), the registry (JSON columns) and ``--json``.
``from_dict`` ignores unknown keys so newer agents can talk to older controllers.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from dataclasses import dataclass, field
from typing import Any

from gpuhive.core.node_facts import LinkMeasure, OverlayFacts, SoftwareFacts


class NodeStatus(str, enum.Enum):
    """Liveness as the controller judges it from heartbeats."""

    ONLINE = "online"
    DEGRADED = "degraded"  # one heartbeat missed
    OFFLINE = "offline"  # three heartbeats missed
    REMOVED = "removed"


class AgentState(str, enum.Enum):
    """What the agent says about itself in each heartbeat."""

    AVAILABLE = "available"
    BUSY = "busy"
    DEGRADED = "degraded"
    DRAINING = "draining"
    PAUSED = "paused"


class NodeKind(str, enum.Enum):
    AGENT = "agent"  # enrolled with a token, dials home, embedded SSH server
    SSH = "ssh"  # added with `nodes add user@host`, reached with its own sshd


@dataclass
class GpuInfo:
    index: int
    name: str
    memory_total_mib: int
    memory_used_mib: int = 0
    utilization_pct: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    uuid: str = ""
    vendor: str = "nvidia"
    compute_capability: str | None = None  # "9.0"
    driver_version: str | None = None
    cuda_version: str | None = None
    clock_event_reasons: list[str] = field(default_factory=list)  # sw_thermal_slowdown…

    @property
    def memory_free_mib(self) -> int:
        return max(0, self.memory_total_mib - self.memory_used_mib)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GpuInfo:
        return cls(**_known(cls, d))


@dataclass
class CpuInfo:
    cores: int
    model: str = ""
    flags: list[str] = field(default_factory=list)  # avx, avx2, avx512f… (only those we rank on)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CpuInfo:
        return cls(**_known(cls, d))


@dataclass
class Hardware:
    """A hardware snapshot, sent at enroll and in every heartbeat."""

    hostname: str
    cpu: CpuInfo
    memory_total_mib: int
    memory_available_mib: int = 0
    gpus: list[GpuInfo] = field(default_factory=list)
    load_1m: float = 0.0
    os: str = ""
    probe_source: str = "cpu"  # which probe produced the GPU list: nvml, nvidia-smi, rocm-smi…
    probe_notes: list[str] = field(default_factory=list)  # why earlier probes were skipped
    utc_offset_s: int = 0  # the node's local time offset, for its owner's schedule

    def to_dict(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "cpu": self.cpu.to_dict(),
            "memory_total_mib": self.memory_total_mib,
            "memory_available_mib": self.memory_available_mib,
            "gpus": [g.to_dict() for g in self.gpus],
            "load_1m": self.load_1m,
            "os": self.os,
            "probe_source": self.probe_source,
            "probe_notes": list(self.probe_notes),
            "utc_offset_s": self.utc_offset_s,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hardware:
        kw = _known(cls, d)
        kw["cpu"] = CpuInfo.from_dict(d.get("cpu") or {"cores": 0})
        kw["gpus"] = [GpuInfo.from_dict(g) for g in d.get("gpus") or []]
        return cls(**kw)


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = _field_names(cls)
    return {k: v for k, v in d.items() if k in names}


@dataclass
class NodeRecord:
    """A node as the registry knows it. Holds public keys only, never a secret."""

    id: str
    name: str
    kind: NodeKind
    status: NodeStatus
    registered_at: float
    public_key: str = ""  # node key (agent) — what the hive endpoint accepts for this node
    host_key: str = ""  # pinned host key of the node's SSH server (embedded or own sshd)
    forward_port: int | None = None  # controller 127.0.0.1 port of the reverse forward (agent)
    address: str = ""  # user@host:port (ssh nodes)
    hostname: str = ""
    hardware: Hardware | None = None
    agent_state: str = ""
    status_reason: str = ""
    last_heartbeat: float | None = None
    connected_since: float | None = None
    public_addr: str = ""  # where the agent's link comes from, as the controller sees it
    removed_at: float | None = None
    # what the controller has learned: typed facts (core/node_facts.py; None: not known),
    # and JSON facts read where they are used (core/nodeview.py)
    software: SoftwareFacts | None = None  # the agent's software probe
    policy: dict[str, Any] = field(default_factory=dict)  # the owner's OwnerPolicy
    reliability: dict[str, Any] = field(default_factory=dict)  # core.reliability.Reliability
    tasks: dict[str, Any] = field(default_factory=dict)  # {"finished": [...], "failed": [...]}
    thermal_events: list[float] = field(default_factory=list)  # onsets of thermal slowdown
    link: LinkMeasure | None = None  # the last `nodes bench`: RTT, Mbit/s, GPU bench
    overlay: OverlayFacts | None = None  # wg key, overlay ip, the spoke's report

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "kind": self.kind.value,
            "status": self.status.value, "status_reason": self.status_reason,
            "agent_state": self.agent_state, "registered_at": self.registered_at,
            "last_heartbeat": self.last_heartbeat, "connected_since": self.connected_since,
            "forward_port": self.forward_port, "address": self.address,
            "hostname": self.hostname, "public_addr": self.public_addr,
            "hardware": self.hardware.to_dict() if self.hardware else None,
            "removed_at": self.removed_at, "software": _json(self.software),
            "policy": self.policy, "reliability": self.reliability, "tasks": self.tasks,
            "thermal_events": self.thermal_events, "link": _json(self.link),
            "overlay": _json(self.overlay),
        }


def _json(fact: SoftwareFacts | LinkMeasure | OverlayFacts | None) -> dict[str, Any]:
    """A typed fact as the JSON it is stored and shown as: ``{}`` when not known."""
    return fact.to_dict() if fact is not None else {}


@dataclass(frozen=True)
class NodeEvent:
    node_id: str
    at: float
    event: str  # registered, online, degraded, offline, removed, connected, disconnected
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
