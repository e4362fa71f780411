"""The probe interface: GPU probe steps, their results, and their errors.

A step is any callable ``(timeout_s) -> GpuProbeResult`` with a name (``GpuProbe``).
It raises ``ProbeUnavailable`` when it does not apply here (tool not on PATH, module
not installed, not macOS): cheap, expected, recorded as a note. Any other exception,
or running past its time, is a failure the chain records before trying the next step.

    GpuhiveError
    └── ProbeError                 a probe step failed
        ├── ProbeUnavailable       the step does not apply on this machine
        └── ProbeTimeout           the step ran past its time and was cut off
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gpuhive.core.model import GpuInfo
from gpuhive.errors import GpuhiveError


class ProbeError(GpuhiveError):
    code = "probe"


class ProbeUnavailable(ProbeError):
    code = "probe_unavailable"


class ProbeTimeout(ProbeError):
    code = "probe_timeout"


@dataclass
class GpuProbeResult:
    gpus: list[GpuInfo]
    clock_events: dict[int, list[str]] = field(default_factory=dict)  # index → reasons
    # False when the step found GPUs but missed something ranking needs (e.g. NVML gave no
    # memory figures): the chain tries the next step and falls back to this result.
    complete: bool = True
    note: str = ""


@dataclass(frozen=True)
class GpuProbe:
    name: str  # "nvml", "nvidia-smi", "rocm-smi", "macos"
    run: Callable[[float], GpuProbeResult]


@dataclass
class ChainResult:
    gpus: list[GpuInfo]
    source: str  # the step that produced ``gpus``, or "cpu"
    notes: list[str]  # one line per step that was skipped, failed or fell short
    clock_events: dict[int, list[str]] = field(default_factory=dict)
