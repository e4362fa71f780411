"""Hardware and software probes.

``probe_hardware()`` is the public entry: a ``Hardware`` snapshot that never raises.
GPUs come from the first probe that finds them: NVML → nvidia-smi → rocm-smi → macOS
system_profiler; none means a CPU node. Every step skipped or failed leaves a line in
``Hardware.probe_notes``. Static facts (CPU model and flags, Mac GPUs) are cached; a
tool missing from PATH is skipped without spawning anything.

``probe_gpus()`` returns the chain's full answer, including per-GPU clock-event
(throttle) reasons, which ``Hardware`` has no field for yet. ``probe_software()`` is
slow (imports torch in a child process) and cached: call it at enroll, not per heartbeat.
"""

from __future__ import annotations

from gpuhive.core.model import CpuInfo, Hardware
from gpuhive.probe import cpu
from gpuhive.probe.api import ChainResult, GpuProbe, GpuProbeResult
from gpuhive.probe.chain import ProbeChain
from gpuhive.probe.software import SoftwareInfo, probe_software

_default_chain: ProbeChain | None = None


def _chain() -> ProbeChain:
    global _default_chain
    if _default_chain is None:
        _default_chain = ProbeChain()
    return _default_chain


def probe_gpus(timeout_s: float = 5.0, chain: ProbeChain | None = None) -> ChainResult:
    """Run the GPU chain. Never raises: a broken chain is a CPU node with a note."""
    try:
        return (chain or _chain()).run(timeout_s)
    except Exception as exc:  # the chain catches step errors; this is belt and braces
        return ChainResult([], "cpu", [f"gpu probe chain failed: {type(exc).__name__}: {exc}"])


def probe_hardware(timeout_s: float = 5.0, chain: ProbeChain | None = None) -> Hardware:
    """Snapshot this machine. Cheap (static facts cached); never raises."""
    notes: list[str] = []
    try:
        cpu_info = cpu.cpu_static()
    except Exception as exc:
        notes.append(f"cpu: {type(exc).__name__}: {exc}")
        cpu_info = CpuInfo(cores=1)
    total = avail = 0
    try:
        total, avail = cpu.memory_mib()
    except Exception as exc:
        notes.append(f"memory: {type(exc).__name__}: {exc}")
    try:
        host = cpu.hostname()
    except Exception as exc:
        notes.append(f"hostname: {type(exc).__name__}: {exc}")
        host = "unknown"
    gpus = probe_gpus(timeout_s, chain)
    notes.extend(gpus.notes)
    for gpu in gpus.gpus:
        gpu.clock_event_reasons = list(gpus.clock_events.get(gpu.index, []))
    return Hardware(
        hostname=host, cpu=cpu_info, memory_total_mib=total, memory_available_mib=avail,
        gpus=gpus.gpus, load_1m=cpu.load_1m(), os=cpu.os_string(),
        probe_source=gpus.source, probe_notes=notes, utc_offset_s=_utc_offset(),
    )


def _utc_offset() -> int:
    import time
    return int(time.localtime().tm_gmtoff)


__all__ = [
    "ChainResult",
    "GpuProbe",
    "GpuProbeResult",
    "ProbeChain",
    "SoftwareInfo",
    "probe_gpus",
    "probe_hardware",
    "probe_software",
]
