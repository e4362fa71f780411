"""The probe chain: NVML → nvidia-smi → rocm-smi → macOS → CPU, with injected steps."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from gpuhive.core.model import GpuInfo
from gpuhive.core.parse_gpu import nvidia_smi_csv_clock_events, parse_nvidia_smi_csv
from gpuhive.probe import ProbeChain, probe_gpus, probe_hardware
from gpuhive.probe.api import ChainResult, GpuProbe, GpuProbeResult, ProbeUnavailable

CSV = (Path(__file__).parents[1] / "data" / "nvidia" / "h100-80gb-hbm3"
       / "nvidia-smi-query.csv").read_text()


def smi_ok(timeout_s: float) -> GpuProbeResult:
    return GpuProbeResult(parse_nvidia_smi_csv(CSV), nvidia_smi_csv_clock_events(CSV))


def nvml_raises(timeout_s: float) -> GpuProbeResult:
    raise RuntimeError("NVML_ERROR_DRIVER_NOT_LOADED")


def unavailable(timeout_s: float) -> GpuProbeResult:
    raise ProbeUnavailable("not on PATH")


def empty(timeout_s: float) -> GpuProbeResult:
    return GpuProbeResult([])


def test_nvml_raises_falls_back_to_nvidia_smi() -> None:
    chain = ProbeChain([GpuProbe("nvml", nvml_raises), GpuProbe("nvidia-smi", smi_ok),
                        GpuProbe("rocm-smi", unavailable)])
    r = chain.run(timeout_s=2.0)
    assert r.source == "nvidia-smi"
    assert [g.name for g in r.gpus] == ["NVIDIA H100 80GB HBM3"]
    assert r.notes == ["nvml: failed: RuntimeError: NVML_ERROR_DRIVER_NOT_LOADED"]
    assert r.clock_events == {0: ["gpu_idle"]}


def test_nvml_hangs_is_cut_off_and_next_step_runs() -> None:
    release, returned = threading.Event(), threading.Event()
    calls = []

    def nvml_hangs(timeout_s: float) -> GpuProbeResult:
        calls.append(timeout_s)
        release.wait(30)
        returned.set()
        return GpuProbeResult([])

    chain = ProbeChain([GpuProbe("nvml", nvml_hangs), GpuProbe("nvidia-smi", smi_ok)])
    r = chain.run(timeout_s=3.0, per_step_s=0.2)
    assert not returned.is_set()  # the chain did not wait for the hung call
    assert r.source == "nvidia-smi" and len(r.gpus) == 1
    assert r.notes == ["nvml: failed: timed out after 0.2 s"]
    # The hung call is remembered: the next probe does not start a second one.
    r2 = chain.run(timeout_s=3.0, per_step_s=0.2)
    assert len(calls) == 1
    assert r2.source == "nvidia-smi"
    assert "still hung" in r2.notes[0]
    release.set()
    for _ in range(100):
        if not any(t.name == "gpuhive-probe-nvml" and t.is_alive()
                   for t in threading.enumerate()):
            break
        time.sleep(0.01)
    r3 = chain.run(timeout_s=3.0, per_step_s=0.2)  # the thread ended: NVML is tried again
    assert len(calls) == 2
    assert r3.notes[0] == "nvml: no GPUs"


def test_no_gpu_is_a_cpu_node_not_an_error() -> None:
    chain = ProbeChain([GpuProbe("nvml", unavailable), GpuProbe("nvidia-smi", unavailable),
                        GpuProbe("rocm-smi", empty), GpuProbe("macos", unavailable)])
    r = chain.run()
    assert (r.gpus, r.source) == ([], "cpu")
    assert r.notes == ["nvml: not on PATH", "nvidia-smi: not on PATH", "rocm-smi: no GPUs",
                       "macos: not on PATH"]


def test_incomplete_result_tries_next_then_falls_back() -> None:
    gpu = GpuInfo(index=0, name="X", memory_total_mib=0)

    def partial(timeout_s: float) -> GpuProbeResult:
        return GpuProbeResult([gpu], complete=False, note="no memory figures")

    r = ProbeChain([GpuProbe("nvml", partial), GpuProbe("nvidia-smi", smi_ok)]).run()
    assert r.source == "nvidia-smi"
    r = ProbeChain([GpuProbe("nvml", partial), GpuProbe("nvidia-smi", nvml_raises)]).run()
    assert r.source == "nvml" and r.gpus == [gpu]
    assert r.notes[-1] == "using the incomplete nvml result"


def test_budget_spent_skips_the_rest() -> None:
    now = [0.0]

    def slow(timeout_s: float) -> GpuProbeResult:
        now[0] += 10.0  # a fake clock: this step "took" 10 s
        return GpuProbeResult([])

    chain = ProbeChain([GpuProbe("nvml", slow), GpuProbe("nvidia-smi", smi_ok)],
                       clock=lambda: now[0])
    r = chain.run(timeout_s=5.0)
    assert r.source == "cpu"
    assert r.notes[-1] == "nvidia-smi: skipped, the 5 s probe budget is spent"


def test_probe_hardware_with_injected_chain() -> None:
    chain = ProbeChain([GpuProbe("nvml", nvml_raises), GpuProbe("nvidia-smi", smi_ok)])
    hw = probe_hardware(chain=chain)
    assert hw.probe_source == "nvidia-smi"
    assert hw.gpus[0].memory_total_mib == 81559
    assert "nvml: failed: RuntimeError: NVML_ERROR_DRIVER_NOT_LOADED" in hw.probe_notes
    assert hw.cpu.cores >= 1 and hw.memory_total_mib > 0


def test_probe_gpus_never_raises() -> None:
    class Broken(ProbeChain):
        def run(self, timeout_s: float = 5.0,
                per_step_s: float | None = None) -> ChainResult:
            raise ValueError("boom")

    r = probe_gpus(chain=Broken([]))
    assert r.source == "cpu" and "boom" in r.notes[0]


def test_probe_hardware_on_this_machine_is_cheap_and_sane() -> None:
    hw = probe_hardware()  # real chain; this test machine has no GPU tools
    assert hw.hostname
    assert hw.cpu.cores >= 1
    assert hw.memory_total_mib >= hw.memory_available_mib > 0
    assert hw.os
    t0 = time.perf_counter()
    for _ in range(10):
        probe_hardware()
    assert (time.perf_counter() - t0) / 10 < 0.5  # heartbeat path: cheap
    assert hw.to_dict()["probe_source"] == hw.probe_source
