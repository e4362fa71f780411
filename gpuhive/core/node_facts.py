"""What the controller has learned about a node, typed: its overlay facts, its link
measurement and its software. Pure.

They travel as JSON (the registry's columns, the enroll message, `nodes --json` and the
admin answers); ``from_dict`` / ``to_dict`` follow ``core/fact_codec``'s rules, so a dict
read and written back is the dict it was, 0.1.0's included. A node without a fact has None
in ``NodeRecord`` and ``{}`` in the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpuhive.core import fact_codec as codec
from gpuhive.core.spoke_report import SpokeReport


@dataclass(frozen=True, kw_only=True)
class OverlayFacts:
    """A node's WireGuard identity (sent at enroll), the address the controller assigned,
    and its spoke's last report (``status``: only while its agent is connected)."""

    wg_public_key: str | None = None
    lan: str | None = None  # its LAN address towards the controller, as it said at enroll
    listen_port: int | None = None  # its spoke's UDP port
    ip: str | None = None  # its overlay address
    subnet: str | None = None
    status: SpokeReport | None = None
    present: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OverlayFacts:
        values, present, extra = codec.read(d, _OVERLAY_READERS)
        return cls(**values, present=present, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return codec.write(self)


@dataclass(frozen=True, kw_only=True)
class GpuBench:
    """What ``python -m gpuhive.probe.gpubench`` printed on the node."""

    available: bool | None = None  # False: no torch or no CUDA device (``reason`` says)
    reason: str | None = None
    device: str | None = None
    matmul_tflops: float | None = None  # fp16; replaces the datasheet figure in ranking
    matmul_size: int | None = None
    memory_gbps: float | None = None
    torch: str | None = None
    present: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GpuBench:
        values, present, extra = codec.read(d, _GPU_READERS)
        return cls(**values, present=present, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return codec.write(self)


@dataclass(frozen=True, kw_only=True)
class LinkMeasure:
    """The last `gpuhive nodes bench` of a node: its link through the tunnel and its GPU.
    (Not ``gpuhive.testing.LinkFacts``: that is what a fake node's link pretends.)"""

    rtt_ms: float | None = None
    down_mbps: float | None = None
    up_mbps: float | None = None
    measured_at: float | None = None
    gpu: GpuBench | None = None
    present: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LinkMeasure:
        values, present, extra = codec.read(d, _LINK_READERS)
        return cls(**values, present=present, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return codec.write(self)


@dataclass(frozen=True, kw_only=True)
class SoftwareFacts:
    """The agent's software probe (``probe.software.SoftwareInfo``, the same field names)."""

    python: str | None = None
    torch: str | None = None
    torch_cuda_available: bool | None = None
    torch_cuda: str | None = None  # the CUDA torch was built with
    nccl: str | None = None
    llama_server: str | None = None  # its path, when on PATH
    llama_cpp_python: bool = False
    notes: tuple[str, ...] = ()  # what could not be learned, and why
    present: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SoftwareFacts:
        values, present, extra = codec.read(d, _SOFTWARE_READERS)
        return cls(**values, present=present, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return codec.write(self)


_OVERLAY_READERS: dict[str, codec.Reader] = {
    "wg_public_key": codec.opt_text, "lan": codec.opt_text, "listen_port": codec.opt_int,
    "ip": codec.opt_text, "subnet": codec.opt_text,
    "status": codec.nested(SpokeReport.from_dict),
}
_GPU_READERS: dict[str, codec.Reader] = {
    "available": codec.opt_flag, "reason": codec.opt_text, "device": codec.opt_text,
    "matmul_tflops": codec.opt_number, "matmul_size": codec.opt_int,
    "memory_gbps": codec.opt_number, "torch": codec.opt_text,
}
_LINK_READERS: dict[str, codec.Reader] = {
    "rtt_ms": codec.opt_number, "down_mbps": codec.opt_number, "up_mbps": codec.opt_number,
    "measured_at": codec.opt_number, "gpu": codec.nested(GpuBench.from_dict),
}
_SOFTWARE_READERS: dict[str, codec.Reader] = {
    "python": codec.opt_text, "torch": codec.opt_text, "torch_cuda_available": codec.opt_flag,
    "torch_cuda": codec.opt_text, "nccl": codec.opt_text, "llama_server": codec.opt_text,
    "llama_cpp_python": codec.flag, "notes": codec.texts,
}
