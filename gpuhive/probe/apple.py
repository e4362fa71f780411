"""macOS GPU probe: ``system_profiler SPDisplaysDataType -json`` + ``sysctl -n hw.memsize``.

system_profiler takes about a second, and a Mac's GPUs do not change while it runs,
so the first good answer is kept for the life of the process.
"""

from __future__ import annotations

import sys
import threading

from gpuhive.core.parse_apple import parse_memsize, parse_system_profiler_json
from gpuhive.errors import CommandFailed
from gpuhive.probe.api import GpuProbeResult, ProbeUnavailable
from gpuhive.probe.smi import Runner, run_command

_lock = threading.Lock()
_cached: GpuProbeResult | None = None


def macos(timeout_s: float, *, platform: str | None = None,
          run: Runner = run_command, use_cache: bool = True) -> GpuProbeResult:
    global _cached
    if (platform or sys.platform) != "darwin":
        raise ProbeUnavailable("not macOS")
    with _lock:
        if use_cache and _cached is not None:
            return _cached
    argv = ["/usr/sbin/system_profiler", "SPDisplaysDataType", "-json"]
    rc, out = run(argv, timeout_s)
    if rc != 0:
        raise CommandFailed(argv, rc, out)
    memsize = 0
    rc2, out2 = run(["/usr/sbin/sysctl", "-n", "hw.memsize"], timeout_s)
    if rc2 == 0:
        memsize = parse_memsize(out2)
    result = GpuProbeResult(
        parse_system_profiler_json(out, memsize),
        note="" if memsize else "sysctl hw.memsize failed: unified memory unknown")
    with _lock:
        if use_cache:
            _cached = result
    return result
