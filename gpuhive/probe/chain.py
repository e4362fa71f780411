"""The GPU probe chain: NVML → nvidia-smi → rocm-smi → macOS → CPU only.

Each step runs in a daemon thread and is waited on for at most its share of the
time budget. A step that raises, or hangs, is recorded in the notes (with why) and
the next one runs; a machine where no step finds a GPU is a CPU node, not an error.

A thread cannot be killed, so a step that hung stays hung in its thread. The chain
remembers it and skips that step ("still hung") until the thread ends, so a wedged
driver costs one thread, not one thread per heartbeat. Subprocess steps kill their
child at the timeout, so their threads always end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from gpuhive.probe import apple, nvml, smi
from gpuhive.probe.api import (
    ChainResult,
    GpuProbe,
    GpuProbeResult,
    ProbeTimeout,
    ProbeUnavailable,
)

Clock = Callable[[], float]


def default_steps() -> list[GpuProbe]:
    return [
        GpuProbe("nvml", nvml.probe),
        GpuProbe("nvidia-smi", smi.nvidia_smi),
        GpuProbe("rocm-smi", smi.rocm_smi),
        GpuProbe("macos", apple.macos),
    ]


class _Box:
    __slots__ = ("error", "result")

    def __init__(self) -> None:
        self.result: GpuProbeResult | None = None
        self.error: BaseException | None = None


class ProbeChain:
    """Runs ``steps`` in order; keeps track of steps whose threads are still hung."""

    def __init__(self, steps: Sequence[GpuProbe] | None = None, *,
                 clock: Clock = time.monotonic) -> None:
        self.steps = list(steps) if steps is not None else default_steps()
        self.clock = clock
        self._hung: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def run(self, timeout_s: float = 5.0, per_step_s: float | None = None) -> ChainResult:
        """Probe GPUs within ``timeout_s`` in all (each step at most ``per_step_s``)."""
        notes: list[str] = []
        deadline = self.clock() + timeout_s
        fallback: tuple[str, GpuProbeResult] | None = None
        for step in self.steps:
            remaining = deadline - self.clock()
            if remaining <= 0:
                notes.append(f"{step.name}: skipped, the {timeout_s:g} s probe budget is spent")
                continue
            budget = min(remaining, per_step_s) if per_step_s else remaining
            try:
                result = self._run_step(step, budget)
            except ProbeUnavailable as exc:
                notes.append(f"{step.name}: {exc.message}")
                continue
            except Exception as exc:
                notes.append(f"{step.name}: failed: {_describe(exc)}")
                continue
            if result.note:
                notes.append(f"{step.name}: {result.note}")
            if not result.gpus:
                notes.append(f"{step.name}: no GPUs")
                continue
            if not result.complete:
                notes.append(f"{step.name}: incomplete, trying the next probe")
                fallback = fallback or (step.name, result)
                continue
            return ChainResult(result.gpus, step.name, notes, result.clock_events)
        if fallback is not None:
            name, result = fallback
            notes.append(f"using the incomplete {name} result")
            return ChainResult(result.gpus, name, notes, result.clock_events)
        return ChainResult([], "cpu", notes)

    def _run_step(self, step: GpuProbe, timeout_s: float) -> GpuProbeResult:
        with self._lock:
            hung = self._hung.get(step.name)
            if hung is not None:
                if hung.is_alive():
                    raise ProbeTimeout(f"still hung since an earlier probe (> {timeout_s:g} s)")
                del self._hung[step.name]
        box = _Box()

        def target() -> None:
            try:
                box.result = step.run(timeout_s)
            except BaseException as exc:  # handed to the caller's thread
                box.error = exc

        t = threading.Thread(target=target, name=f"gpuhive-probe-{step.name}", daemon=True)
        t.start()
        t.join(timeout_s)
        if t.is_alive():
            with self._lock:
                self._hung[step.name] = t
            raise ProbeTimeout(f"timed out after {timeout_s:.1f} s", step=step.name,
                               timeout_s=timeout_s)
        if box.error is not None:
            raise box.error
        assert box.result is not None
        return box.result


def _describe(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return msg if hasattr(exc, "message") else f"{type(exc).__name__}: {msg}"
