"""What `gpuhive lab status` shows: the lab's hosts and processes from its state file, and its
nodes when the lab's controller answers.

The state file is enough to show hosts and processes, so a lab whose controller died still
says what is (and is not) running; only the node list needs the controller. ``report`` is
pure: how to tell whether a pid lives, what its command line is, and the nodes (or the error
asking for them) are passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gpuhive.errors import GpuhiveError
from gpuhive.lab.state import LabState


@dataclass(frozen=True)
class LabProcess:
    role: str  # the key in the state file: "ctl", "agent-friend1", "extra-sshd.log"
    pid: int
    alive: bool
    what: str  # the role in words
    command: str  # its command line while it runs, else ""


def describe(role: str) -> str:
    if role == "ctl":
        return "controller (gpuhive up)"
    if role.startswith("agent-"):
        return f"agent of {role.removeprefix('agent-')} (gpuhive enroll / agent)"
    if role.startswith("extra-"):
        return f"started by a test or by hand (log {role.removeprefix('extra-')})"
    return role


def processes(state: LabState, alive: Callable[[int], bool],
              cmdline: Callable[[int], str]) -> list[LabProcess]:
    rows = []
    for role, pid in sorted(state.pids.items(), key=lambda kv: (kv[0] != "ctl", kv[0])):
        up = alive(pid)
        rows.append(LabProcess(role, pid, up, describe(role), cmdline(pid) if up else ""))
    return rows


def report(state: LabState, alive: Callable[[int], bool], cmdline: Callable[[int], str],
           nodes: Callable[[], list[dict[str, Any]]]) -> dict[str, Any]:
    """Everything `lab status` prints; ``controller.up`` false means the exit code is 1."""
    procs = processes(state, alive, cmdline)
    ctl = next((p for p in procs if p.role == "ctl"), None)
    controller: dict[str, Any] = {"pid": ctl.pid if ctl else None,
                                  "alive": bool(ctl and ctl.alive), "up": False, "error": ""}
    listed: list[dict[str, Any]] = []
    if ctl is None:
        controller["error"] = "the lab has no controller process (it was stopped)"
    elif not ctl.alive:
        controller["error"] = f"the lab's controller (pid {ctl.pid}) is not running"
    else:
        try:
            listed = nodes()
            controller["up"] = True
        except GpuhiveError as exc:
            controller["error"] = (f"the lab's controller (pid {ctl.pid}) does not answer: "
                                   f"{exc.message}")
    return {**state.to_dict(), "processes": [asdict(p) for p in procs],
            "controller": controller, "nodes": listed}


def cmdline(pid: int) -> str:
    """The command line of ``pid`` as one string ("" when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
