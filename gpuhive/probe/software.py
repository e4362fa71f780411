"""Software probe: Python, torch (version, CUDA, NCCL), llama-server, llama-cpp-python.

Importing torch takes seconds and can hang on a broken CUDA install, so it happens in a
child process with a timeout, and the answer is cached for the life of the process
(``refresh=True`` asks again). Nothing here is meant for the 5 s heartbeat path;
send it at enroll and when the agent starts.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import platform
import shutil
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpuhive.probe.smi import run_command

TORCH_SCRIPT = """\
import json, torch
d = {"torch": torch.__version__, "cuda_available": bool(torch.cuda.is_available()),
     "cuda": torch.version.cuda, "nccl": None}
try:
    v = torch.cuda.nccl.version()
    d["nccl"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
except Exception:
    pass
print("GPUHIVE_TORCH " + json.dumps(d))
"""


@dataclass
class SoftwareInfo:
    python: str
    torch: str | None = None
    torch_cuda_available: bool | None = None
    torch_cuda: str | None = None  # CUDA version torch was built with
    nccl: str | None = None
    llama_server: str | None = None  # path, when on PATH
    llama_cpp_python: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SoftwareInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def parse_torch_probe(output: str) -> dict[str, Any]:
    """The dict TORCH_SCRIPT prints (the last GPUHIVE_TORCH line); {} if absent or garbled."""
    for line in reversed(output.splitlines()):
        if line.startswith("GPUHIVE_TORCH "):
            try:
                d = json.loads(line[len("GPUHIVE_TORCH "):])
            except ValueError:
                return {}
            return d if isinstance(d, dict) else {}
    return {}


Runner = Callable[[Sequence[str], float], tuple[int, str]]

_lock = threading.Lock()
_cached: SoftwareInfo | None = None


def probe_software(timeout_s: float = 60.0, *, refresh: bool = False,
                   run: Runner = run_command,
                   which: Callable[[str], str | None] = shutil.which,
                   find_spec: Callable[[str], object] = importlib.util.find_spec
                   ) -> SoftwareInfo:
    """Never raises; what could not be learned is in ``notes``."""
    global _cached
    with _lock:
        if _cached is not None and not refresh:
            return _cached
    info = SoftwareInfo(python=platform.python_version())
    info.llama_server = which("llama-server")
    try:
        info.llama_cpp_python = find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        info.llama_cpp_python = False
    try:
        has_torch = find_spec("torch") is not None
    except (ImportError, ValueError):
        has_torch = False
    if not has_torch:
        info.notes.append("torch: not installed")
    else:
        try:
            rc, out = run([sys.executable, "-c", TORCH_SCRIPT], timeout_s)
        except Exception as exc:
            info.notes.append(f"torch: {getattr(exc, 'message', None) or exc}")
        else:
            d = parse_torch_probe(out)
            if rc != 0 or not d:
                tail = " | ".join(out.strip().splitlines()[-2:])
                info.notes.append(f"torch: import failed (exit {rc}): {tail}")
            else:
                info.torch = _str(d.get("torch"))
                ca = d.get("cuda_available")
                info.torch_cuda_available = ca if isinstance(ca, bool) else None
                info.torch_cuda = _str(d.get("cuda"))
                info.nccl = _str(d.get("nccl"))
    with _lock:
        _cached = info
    return info


def _str(v: Any) -> str | None:
    return str(v) if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None
