"""``nvidia-smi`` and ``rocm-smi`` probes: one subprocess each, with a timeout.

A tool that is not on PATH is skipped without spawning anything. ``nvidia-smi`` from
drivers older than ~510 refuses the ``compute_cap`` field: then the query runs again
without it, and the XML report is the last resort.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence

from gpuhive.core.parse_gpu import (
    NVIDIA_SMI_QUERY_FIELDS,
    nvidia_smi_csv_clock_events,
    nvidia_smi_xml_clock_events,
    parse_nvidia_smi_csv,
    parse_nvidia_smi_xml,
)
from gpuhive.core.parse_rocm import ROCM_SMI_ARGS, parse_rocm_smi_json
from gpuhive.errors import CommandFailed
from gpuhive.probe.api import GpuProbeResult, ProbeTimeout, ProbeUnavailable

Runner = Callable[[Sequence[str], float], tuple[int, str]]
Which = Callable[[str], "str | None"]


def run_command(argv: Sequence[str], timeout_s: float) -> tuple[int, str]:
    """Run ``argv``; (exit code, stdout + stderr). The child is killed at the timeout."""
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, errors="replace",
                           timeout=max(0.1, timeout_s), check=False,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise ProbeTimeout(f"`{' '.join(argv)}` ran past {timeout_s:.1f} s and was killed",
                           argv=list(argv), timeout_s=timeout_s) from exc
    except FileNotFoundError as exc:
        raise ProbeUnavailable(f"{argv[0]} not found", argv=list(argv)) from exc
    out = p.stdout if p.returncode == 0 else (p.stdout + p.stderr)
    return p.returncode, out


def _tool(name: str, which: Which) -> str:
    path = which(name)
    if not path:
        raise ProbeUnavailable("not on PATH", tool=name)
    return path


def query_argv(exe: str, fields: Sequence[str] = NVIDIA_SMI_QUERY_FIELDS) -> list[str]:
    return [exe, "--query-gpu=" + ",".join(fields), "--format=csv,noheader,nounits"]


def nvidia_smi(timeout_s: float, *, which: Which = shutil.which,
               run: Runner = run_command) -> GpuProbeResult:
    exe = _tool("nvidia-smi", which)
    fields: tuple[str, ...] = NVIDIA_SMI_QUERY_FIELDS
    argv = query_argv(exe, fields)
    rc, out = run(argv, timeout_s)
    if rc != 0 and "not a valid field" in out.lower():
        fields = tuple(f for f in fields if f not in ("compute_cap",
                                                      "clocks_throttle_reasons.active"))
        argv = query_argv(exe, fields)
        rc, out = run(argv, timeout_s)
        if rc != 0:
            argv = [exe, "-q", "-x"]
            rc, out = run(argv, timeout_s)
            if rc == 0:
                return GpuProbeResult(parse_nvidia_smi_xml(out), nvidia_smi_xml_clock_events(out),
                                      note="nvidia-smi: CSV query refused, used -q -x")
    if rc != 0:
        raise CommandFailed(argv, rc, out,
                            hint="is the NVIDIA driver loaded? (nvidia-smi could not talk to it)")
    events = (nvidia_smi_csv_clock_events(out, fields)
              if "clocks_throttle_reasons.active" in fields else {})
    return GpuProbeResult(parse_nvidia_smi_csv(out, fields), events)


def rocm_smi(timeout_s: float, *, which: Which = shutil.which,
             run: Runner = run_command) -> GpuProbeResult:
    exe = _tool("rocm-smi", which)
    argv = [exe, *ROCM_SMI_ARGS]
    rc, out = run(argv, timeout_s)
    if rc != 0:
        raise CommandFailed(argv, rc, out, hint="is the amdgpu driver loaded? try `rocm-smi`")
    start = out.find("{")  # some releases print warnings before the JSON
    return GpuProbeResult(parse_rocm_smi_json(out[start:] if start >= 0 else ""))
