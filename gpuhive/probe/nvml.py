"""NVML probe through nvidia-ml-py (``import pynvml``), imported lazily.

NVML is initialised once per process and kept (heartbeats call this every 5 s).
``collect`` builds the plain dict that ``gpuhive.core.parse_gpu.parse_nvml`` reads;
a field NVML refuses for one GPU is left out rather than failing the whole probe.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import threading
from collections.abc import Callable
from typing import Any

from gpuhive.core.parse_gpu import nvml_clock_events, parse_nvml
from gpuhive.probe.api import GpuProbeResult, ProbeError, ProbeUnavailable

_init_lock = threading.Lock()
_initialised = False


@functools.lru_cache(maxsize=1)
def _installed() -> bool:
    return importlib.util.find_spec("pynvml") is not None


def _pynvml() -> Any:
    if not _installed():
        raise ProbeUnavailable("nvidia-ml-py (pynvml) is not installed",
                               hint="pip install nvidia-ml-py for faster, richer GPU probes")
    return importlib.import_module("pynvml")


def _ensure_init(nv: Any) -> None:
    global _initialised
    with _init_lock:
        if not _initialised:
            nv.nvmlInit()
            _initialised = True


def _call(fn: Callable[..., Any] | None, *args: Any) -> Any:
    """``fn(*args)``, or None when NVML refuses (one unsupported query must not sink the probe)."""
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception:
        return None


def _s(v: Any) -> Any:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def collect(nv: Any) -> dict[str, Any]:
    """Query NVML (module ``nv``) into the dict ``parse_nvml`` reads."""
    _ensure_init(nv)
    cuda_fn = getattr(nv, "nvmlSystemGetCudaDriverVersion_v2", None) or getattr(
        nv, "nvmlSystemGetCudaDriverVersion", None)
    out: dict[str, Any] = {
        "driver": _s(_call(nv.nvmlSystemGetDriverVersion)),
        "cuda": _call(cuda_fn),
        "gpus": [],
    }
    reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
    for i in range(int(nv.nvmlDeviceGetCount())):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        mem = _call(nv.nvmlDeviceGetMemoryInfo, h)
        util = _call(nv.nvmlDeviceGetUtilizationRates, h)
        cc = _call(nv.nvmlDeviceGetCudaComputeCapability, h)
        reasons = _call(reasons_fn, h)
        gpu: dict[str, Any] = {
            "index": i,
            "name": _s(_call(nv.nvmlDeviceGetName, h)),
            "uuid": _s(_call(nv.nvmlDeviceGetUUID, h)),
            "mem": ({"total": int(mem.total), "used": int(mem.used), "free": int(mem.free)}
                    if mem is not None else {}),
            "cc": list(cc) if cc is not None else None,
            "temp": _call(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU),
            "util": {"gpu": util.gpu, "memory": util.memory} if util is not None else None,
            "power": _call(nv.nvmlDeviceGetPowerUsage, h),
            "power_limit": _call(nv.nvmlDeviceGetEnforcedPowerLimit, h),
            "throttle": int(reasons) if reasons is not None else None,
        }
        out["gpus"].append(gpu)
    return out


def probe(timeout_s: float, nv: Any = None) -> GpuProbeResult:
    """The NVML chain step. ``timeout_s`` is enforced by the chain (NVML calls block)."""
    nv = nv if nv is not None else _pynvml()
    try:
        data = collect(nv)
    except ProbeError:
        raise
    except Exception as exc:  # pynvml.NVMLError_* and friends: translate at the boundary
        raise ProbeError(f"NVML failed: {type(exc).__name__}: {exc}",
                         hint="is the NVIDIA driver loaded? `nvidia-smi` says more") from exc
    gpus = parse_nvml(data)
    missing = [g.index for g in gpus if g.memory_total_mib <= 0]
    note = f"NVML gave no memory figures for GPU {missing}" if missing else ""
    return GpuProbeResult(gpus, nvml_clock_events(data), complete=not missing, note=note)
