"""CPU/memory parsing and the software probe (torch runs in a child process)."""

from __future__ import annotations

from collections.abc import Sequence

from gpuhive.probe import cpu, software

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD Ryzen 9 7950X 16-Core Processor
flags\t\t: fpu vme sse sse2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_bf16 xsave
processor\t: 1
model name\t: AMD Ryzen 9 7950X 16-Core Processor
flags\t\t: fpu
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp
CPU implementer\t: 0x41
"""
MEMINFO = """MemTotal:       24683520 kB
MemFree:         1000000 kB
MemAvailable:   24413184 kB
Buffers:          100000 kB
Cached:          2000000 kB
"""


def test_parse_cpuinfo_x86() -> None:
    model, flags = cpu.parse_cpuinfo(X86)
    assert model == "AMD Ryzen 9 7950X 16-Core Processor"
    assert flags == ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                     "avx512_bf16"]


def test_parse_cpuinfo_arm() -> None:
    model, flags = cpu.parse_cpuinfo(ARM)
    assert model == ""  # no model line on many ARM kernels; platform fills it in
    assert flags == ["asimd"]


def test_parse_meminfo() -> None:
    assert cpu.parse_meminfo(MEMINFO) == (24683520 // 1024, 24413184 // 1024)
    old_kernel = "\n".join(line for line in MEMINFO.splitlines() if "Available" not in line)
    assert cpu.parse_meminfo(old_kernel) == (24105, (1000000 + 100000 + 2000000) // 1024)
    assert cpu.parse_meminfo("garbage\n:::\n") == (0, 0)


def test_cpu_static_is_cached() -> None:
    assert cpu.cpu_static() is cpu.cpu_static()


class Recorder:
    def __init__(self, rc: int, out: str) -> None:
        self.rc, self.out, self.calls = rc, out, 0

    def __call__(self, argv: Sequence[str], timeout_s: float) -> tuple[int, str]:
        self.calls += 1
        assert "import json, torch" in argv[-1] and timeout_s == 30.0
        return self.rc, self.out


def test_software_with_torch() -> None:
    out = ('some warning\nGPUHIVE_TORCH {"torch": "2.5.1+cu124", "cuda_available": true, '
           '"cuda": "12.4", "nccl": "2.21.5"}\n')
    run = Recorder(0, out)
    info = software.probe_software(30.0, refresh=True, run=run,
                                   which=lambda n: "/usr/local/bin/llama-server",
                                   find_spec=lambda n: object())
    assert (info.torch, info.torch_cuda_available, info.torch_cuda, info.nccl) == (
        "2.5.1+cu124", True, "12.4", "2.21.5")
    assert info.llama_server == "/usr/local/bin/llama-server" and info.llama_cpp_python
    assert software.probe_software() is info  # cached
    assert run.calls == 1


def test_software_torch_missing_spawns_nothing() -> None:
    run = Recorder(0, "")
    info = software.probe_software(30.0, refresh=True, run=run, which=lambda n: None,
                                   find_spec=lambda n: None)
    assert info.torch is None and run.calls == 0
    assert info.notes == ["torch: not installed"]
    assert info.python


def test_software_torch_import_broken() -> None:
    run = Recorder(1, "Traceback...\nImportError: libcudart.so.12: cannot open shared object")
    info = software.probe_software(30.0, refresh=True, run=run, which=lambda n: None,
                                   find_spec=lambda n: object())
    assert info.torch is None
    assert "libcudart" in info.notes[0]


def test_software_torch_timeout() -> None:
    from gpuhive.probe.api import ProbeTimeout

    def hang(argv: Sequence[str], timeout_s: float) -> tuple[int, str]:
        raise ProbeTimeout("`python -c …` ran past 30.0 s and was killed")

    info = software.probe_software(30.0, refresh=True, run=hang, which=lambda n: None,
                                   find_spec=lambda n: object())
    assert info.torch is None and "ran past" in info.notes[0]
    assert software.SoftwareInfo.from_dict(info.to_dict()) == info


def test_parse_torch_probe() -> None:
    assert software.parse_torch_probe("") == {}
    assert software.parse_torch_probe("GPUHIVE_TORCH {bad") == {}
    assert software.parse_torch_probe("GPUHIVE_TORCH [1]") == {}
    assert software.parse_torch_probe('GPUHIVE_TORCH {"torch": "2.4"}') == {"torch": "2.4"}
