"""`gpuhive status` in a real terminal (a pty) against a real controller: the live view shows
its footer, and `q` ends it with exit code 0, the terminal mode restored."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

from gpuhive.ports import free_port


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUHIVE_")}
    env.update(GPUHIVE_HOME=str(home), GPUHIVE_HTTP_PORT="0", COLUMNS="120", TERM="xterm")
    return env


def _gh(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpuhive", *args], env=_env(home),
                          capture_output=True, text=True, timeout=60)


def _read_until(fd: int, wanted: bytes, timeout_s: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout_s
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the other side closed
                break
    return seen


def test_live_status_quits_on_q(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    assert _gh(home, "init", "--endpoint", f"127.0.0.1:{port}", "--listen-port",
               str(port)).returncode == 0
    assert _gh(home, "up", "--detach", "--listen", f"127.0.0.1:{port}").returncode == 0
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        proc = subprocess.Popen([sys.executable, "-m", "gpuhive", "status", "--interval",
                                 "0.5"], env=_env(home), stdin=slave, stdout=slave,
                                stderr=slave, close_fds=True)
        shown = _read_until(master, b"q or Ctrl-C to quit", 30)
        assert b"q or Ctrl-C to quit" in shown, shown[-2000:]
        assert b"controller pid" in shown
        os.write(master, b"q")
        assert proc.wait(timeout=15) == 0
        assert termios.tcgetattr(slave) == before  # cbreak mode undone
    finally:
        os.close(master)
        os.close(slave)
        _gh(home, "down")
