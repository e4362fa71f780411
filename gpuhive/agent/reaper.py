"""Find and stop every process a command started, even those that left its process group.

torchrun starts each worker in a new session, so killing a command's process group is
not enough. Every command the embedded server runs gets ``GPUHIVE_EXEC_ID`` in its
environment, which children inherit; ``tagged`` finds them all through /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from gpuhive.pids import group_alive

EXEC_ID_VAR = "GPUHIVE_EXEC_ID"


def tagged(exec_id: str, proc_root: Path = Path("/proc"), var: str = EXEC_ID_VAR) -> list[int]:
    """Pids whose environment carries ``<var>=<exec_id>`` (Linux; else [])."""
    needle = f"{var}={exec_id}".encode()
    found = []
    try:
        entries = os.listdir(proc_root)
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = (proc_root / entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        if needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


async def stop_all(pgid: int, exec_id: str, grace_s: float = 10.0) -> list[int]:
    """SIGTERM the group and every tagged process; SIGKILL what is left after ``grace_s``.

    SIGTERM first lets torchrun stop its workers and a script save a checkpoint.
    Returns the pids that needed SIGKILL.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    for pid in tagged(exec_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while loop.time() < deadline:
        if not tagged(exec_id) and not group_alive(pgid):
            return []
        await asyncio.sleep(0.1)
    left = tagged(exec_id)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return left


def orphans(home: str, proc_root: Path = Path("/proc")) -> list[int]:
    """Processes an earlier agent of this $GPUHIVE_HOME started and left behind (it died)."""
    home_tag = f"GPUHIVE_HOME={home}".encode()
    out = []
    for pid in tagged(home, proc_root, var="GPUHIVE_HOME"):
        try:
            env = (proc_root / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if home_tag in env and any(e.startswith(EXEC_ID_VAR.encode() + b"=") for e in env):
            out.append(pid)
    return out


async def sweep(var: str, value: str, grace_s: float = 15.0) -> tuple[int, int]:
    """Wait up to ``grace_s`` for every process tagged ``var=value`` to end; SIGKILL the rest.

    Returns (found at first, killed). Used after a job ends or is cancelled, as proof that
    nothing of it is left on this node.
    """
    first = tagged(value, var=var)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while (left := tagged(value, var=var)) and loop.time() < deadline:
        await asyncio.sleep(0.2)
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(first), len(left)


def main(argv: list[str] | None = None) -> int:
    """``python -m gpuhive.agent.reaper VAR=VALUE [GRACE_S]``: prints "found N killed M"."""
    import sys
    args = sys.argv[1:] if argv is None else argv
    var, _, value = args[0].partition("=")
    grace = float(args[1]) if len(args) > 1 else 15.0
    found, killed = asyncio.run(sweep(var, value, grace))
    print(f"found {found} killed {killed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
