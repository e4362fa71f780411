"""The small hardware probe run over SSH on nodes added with `nodes add` (no agent there)."""

from __future__ import annotations

from gpuhive.core.model import CpuInfo, Hardware

# The interpreter gpuhive runs under on a node, for commands the controller runs there: the
# agent exports GPUHIVE_PYTHON to them; a plain sshd host falls back to python3.
NODE_PYTHON = '"${GPUHIVE_PYTHON:-python3}"'

# POSIX sh; prints one key=value per line. nvidia-smi is optional.
PROBE_COMMAND = (
    "echo hostname=$(hostname); echo cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN); "
    "awk '/^MemTotal:/{print \"mem_kib=\"$2} /^MemAvailable:/{print \"avail_kib=\"$2}' "
    "/proc/meminfo 2>/dev/null; echo os=$(uname -sr)"
)


def parse_probe(text: str) -> Hardware:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()

    def num(key: str) -> int:
        try:
            return int(values.get(key, "0"))
        except ValueError:
            return 0

    return Hardware(hostname=values.get("hostname", ""), cpu=CpuInfo(cores=num("cores")),
                    memory_total_mib=num("mem_kib") // 1024,
                    memory_available_mib=num("avail_kib") // 1024, os=values.get("os", ""),
                    probe_source="ssh")
