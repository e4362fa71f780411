"""The state file of a running lab, so `gpuhive lab down` can find everything later."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from gpuhive.errors import LabError
from gpuhive.lab.topology import Host

STATE_FILE = "lab.json"
VERSION = 1
Mode = Literal["netns", "loopback"]


@dataclass
class LabState:
    prefix: str
    mode: Mode
    dir: Path
    hosts: list[Host] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)  # role ("ctl", "agent-friend1") -> pid
    env: dict[str, str] = field(default_factory=dict)  # GPUHIVE_* settings every process gets

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "prefix": self.prefix, "mode": self.mode,
                "dir": str(self.dir), "hosts": [asdict(h) for h in self.hosts],
                "pids": dict(self.pids), "env": dict(self.env)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabState:
        mode = d["mode"]
        if mode not in ("netns", "loopback"):
            raise ValueError(f"unknown mode {mode!r}")
        return cls(prefix=str(d["prefix"]), mode=mode, dir=Path(d["dir"]),
                   hosts=[Host(**h) for h in d.get("hosts", [])],
                   pids={str(k): int(v) for k, v in d.get("pids", {}).items()},
                   env={str(k): str(v) for k, v in d.get("env", {}).items()})


def state_path(lab_dir: Path) -> Path:
    return lab_dir / STATE_FILE


def save(state: LabState, path: Path | None = None) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a file."""
    path = path or state_path(state.dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".lab-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: Path) -> LabState:
    try:
        data = json.loads(path.read_text())
        return LabState.from_dict(data)
    except FileNotFoundError as exc:
        raise LabError(f"no lab state at {path}",
                       hint="no lab runs from that directory: start one with `gpuhive lab "
                            "up`, or name the right one with --dir (or GPUHIVE_LAB_DIR)") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabError(f"unreadable lab state {path}: {exc}",
                       hint="delete it; namespaces can still be removed by prefix") from exc
