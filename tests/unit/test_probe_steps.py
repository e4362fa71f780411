"""Probe steps with fake tools: nvidia-smi / rocm-smi runners, a fake pynvml, macOS."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gpuhive.core.parse_gpu import NVIDIA_SMI_QUERY_FIELDS
from gpuhive.errors import CommandFailed
from gpuhive.probe import apple, nvml, smi
from gpuhive.probe.api import ProbeError, ProbeTimeout, ProbeUnavailable

DATA = Path(__file__).parents[1] / "data"
H100 = DATA / "nvidia" / "h100-80gb-hbm3"


class FakeRun:
    def __init__(self, *answers: tuple[int, str]) -> None:
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout_s: float) -> tuple[int, str]:
        self.calls.append(list(argv))
        return self.answers.pop(0)


def test_tool_not_on_path_spawns_nothing() -> None:
    run = FakeRun()
    with pytest.raises(ProbeUnavailable):
        smi.nvidia_smi(1.0, which=lambda _: None, run=run)
    with pytest.raises(ProbeUnavailable):
        smi.rocm_smi(1.0, which=lambda _: None, run=run)
    assert run.calls == []


def test_nvidia_smi_query() -> None:
    run = FakeRun((0, (H100 / "nvidia-smi-query.csv").read_text()))
    r = smi.nvidia_smi(1.0, which=lambda _: "/usr/bin/nvidia-smi", run=run)
    assert run.calls == [["/usr/bin/nvidia-smi",
                          "--query-gpu=" + ",".join(NVIDIA_SMI_QUERY_FIELDS),
                          "--format=csv,noheader,nounits"]]
    assert r.gpus[0].compute_capability == "9.0"
    assert r.clock_events == {0: ["gpu_idle"]}


def test_old_driver_retries_without_compute_cap() -> None:
    run = FakeRun((2, 'Field "compute_cap" is not a valid field to query.'),
                  (0, "0, GPU-1, Tesla T4, 15360, 0, 15360, 0, 40, 20.0, 70.0, 450.80.02, "
                      "00000000:00:04.0\n"))
    r = smi.nvidia_smi(1.0, which=lambda _: "nvidia-smi", run=run)
    assert "compute_cap" not in run.calls[1][1]
    assert r.gpus[0].name == "Tesla T4" and r.gpus[0].compute_capability is None


def test_xml_is_the_last_resort() -> None:
    run = FakeRun((2, "is not a valid field"), (2, "is not a valid field"),
                  (0, (H100 / "nvidia-smi-q.xml").read_text()))
    r = smi.nvidia_smi(1.0, which=lambda _: "nvidia-smi", run=run)
    assert run.calls[2][1:] == ["-q", "-x"]
    assert r.gpus[0].cuda_version == "13.0"
    assert "used -q -x" in r.note


def test_driver_not_loaded() -> None:
    run = FakeRun((9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
                      "driver."))
    with pytest.raises(CommandFailed) as ei:
        smi.nvidia_smi(1.0, which=lambda _: "nvidia-smi", run=run)
    assert ei.value.data["returncode"] == 9 and "driver" in ei.value.hint


def test_rocm_skips_warning_lines() -> None:
    run = FakeRun((0, (DATA / "amd" / "rocm-smi-rx7900xtx.txt").read_text()))
    r = smi.rocm_smi(1.0, which=lambda _: "/opt/rocm/bin/rocm-smi", run=run)
    assert run.calls[0][1:] == ["--showproductname", "--showmeminfo", "vram", "--showuse",
                                "--showtemp", "--json"]
    assert r.gpus[0].name == "Radeon RX 7900 XTX"


def test_run_command_kills_at_timeout() -> None:
    with pytest.raises(ProbeTimeout):
        smi.run_command([sys.executable, "-c", "import time; time.sleep(30)"], 0.3)
    with pytest.raises(ProbeUnavailable):
        smi.run_command(["/nonexistent/gpuhive-tool"], 1.0)
    assert smi.run_command([sys.executable, "-c", "print('hi')"], 10.0) == (0, "hi\n")


class FakeNvml:
    """Just enough of pynvml for ``nvml.collect``."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, fail_memory: bool = False, fail_init: bool = False) -> None:
        self.fail_memory, self.fail_init = fail_memory, fail_init
        self.inits = 0

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.fail_init:
            raise OSError("NVML Shared Library Not Found")

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 13000

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return "GPU-ccdd1af9-26d7-f6fb-4a71-b0bffe10e71b"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        if self.fail_memory:
            raise RuntimeError("Function Not Found")
        return SimpleNamespace(total=81559 * 2**20, used=0, free=81559 * 2**20)

    def nvmlDeviceGetCudaComputeCapability(self, h: int) -> tuple[int, int]:
        return (9, 0)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return 37

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=0, memory=0)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 101334

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return 700000

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return 1


@pytest.fixture(autouse=True)
def _fresh_nvml_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvml, "_initialised", False)


def test_nvml_probe_with_fake_module() -> None:
    nv = FakeNvml()
    r = nvml.probe(1.0, nv)
    [g] = r.gpus
    assert (g.name, g.memory_total_mib, g.compute_capability, g.cuda_version) == (
        "NVIDIA H100 80GB HBM3", 81559, "9.0", "13.0")
    assert (g.power_w, g.power_limit_w) == (101.334, 700.0)
    assert r.complete and r.clock_events == {0: ["gpu_idle"]}
    nvml.probe(1.0, nv)
    assert nv.inits == 1  # initialised once, kept


def test_nvml_missing_memory_is_incomplete() -> None:
    r = nvml.probe(1.0, FakeNvml(fail_memory=True))
    assert not r.complete and "memory" in r.note


def test_nvml_init_failure_is_translated() -> None:
    with pytest.raises(ProbeError) as ei:
        nvml.probe(1.0, FakeNvml(fail_init=True))
    assert "NVML Shared Library Not Found" in ei.value.message
    assert isinstance(ei.value.__cause__, OSError)


def test_nvml_not_installed_here() -> None:
    # nvidia-ml-py is not a dependency; without it the step says so and the chain moves on.
    if nvml._installed():
        pytest.skip("pynvml is installed on this machine")
    with pytest.raises(ProbeUnavailable, match="pynvml"):
        nvml.probe(1.0)


def test_macos_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProbeUnavailable):
        apple.macos(1.0, platform="linux")
    monkeypatch.setattr(apple, "_cached", None)
    run = FakeRun((0, (DATA / "apple" / "m2pro-32gb.json").read_text()),
                  (0, (DATA / "apple" / "m2pro-32gb.memsize").read_text()))
    r = apple.macos(1.0, platform="darwin", run=run)
    assert r.gpus[0].memory_total_mib == 21845
    assert apple.macos(1.0, platform="darwin", run=FakeRun()) is r  # cached: nothing spawned
    assert json.loads((DATA / "apple" / "m2pro-32gb.json").read_text())
