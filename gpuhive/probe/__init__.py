"""Hardware and software probes.

``probe_hardware()`` is the public entry: a ``Hardware`` snapshot that never raises.
A failing probe step is recorded in ``Hardware.probe_notes``.
"""

from __future__ import annotations

from gpuhive.core.model import CpuInfo, Hardware
from gpuhive.probe import cpu


def probe_hardware(timeout_s: float = 5.0) -> Hardware:
    """Snapshot this machine. Cheap (static facts cached); never raises."""
    notes: list[str] = []
    try:
        cpu_info = cpu.cpu_static()
    except Exception as exc:  # never raise from a heartbeat probe
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
    return Hardware(
        hostname=host, cpu=cpu_info, memory_total_mib=total, memory_available_mib=avail,
        load_1m=cpu.load_1m(), os=cpu.os_string(), probe_source="cpu", probe_notes=notes,
    )


__all__ = ["probe_hardware"]
