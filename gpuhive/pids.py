"""Signalling and waiting on processes by pid: the lab, the overlay driver, the agent's
reaper, serving workers and the CLI all ask the same questions."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable


def alive(pid: int) -> bool:
    """True while ``pid`` runs. Zombies count as dead (and are reaped if they are ours)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The state letter follows the ")" that closes the command name.
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) said it exists
    return state not in ("Z", "X")


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` runs (someone else's counts)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_pids(pids: Iterable[int], sig: int, *, group: bool = False) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            (os.killpg if group else os.kill)(pid, sig)


def wait_gone(pids: Iterable[int], timeout_s: float) -> list[int]:
    """Wait until every pid is dead; return those still alive at the deadline."""
    left = list(pids)
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in left if alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def terminate(pids: Iterable[int], grace_s: float = 5.0, *, group: bool = False) -> None:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL whatever is left."""
    pids = list(pids)
    signal_pids(pids, signal.SIGTERM, group=group)
    left = wait_gone(pids, grace_s)
    # With group=True the group may outlive its leader: kill it in any case.
    signal_pids(pids if group else left, signal.SIGKILL, group=group)
    wait_gone(left, 2.0)
