"""One agent per $GPUHIVE_HOME: an exclusive flock held for the agent's whole life.

A second agent on the same home would fight the first for its reverse forward, reap the
first one's commands as "orphans" and delete its pid file; it must stop before touching
anything. The kernel drops the lock when the holder dies, however it dies, so a stale lock
file never blocks a restart. The file keeps the holder's pid for the error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from gpuhive.agent.errors import AgentAlreadyRunning
from gpuhive.agent.state import AgentHome


class AgentLock:
    def __init__(self, home: AgentHome, fd: int) -> None:
        self.home = home
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, home: AgentHome) -> AgentLock:
        """Take the lock or raise ``AgentAlreadyRunning``; never waits."""
        # O_CLOEXEC: commands the agent starts must not keep the lock after the agent died
        fd = os.open(home.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f" (pid {pid})" if pid else ""
            raise AgentAlreadyRunning(
                f"an agent is already running for {home.root}{who}",
                hint="see `gpuhive agent status`; to restart it, stop it first (Ctrl-C in its "
                     "terminal, or `systemctl --user stop gpuhive-agent`)",
                pid=pid, home=str(home.root)) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(home, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let go (the file stays: removing it would let two agents lock different files)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> AgentLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
