"""The reaper finds a command's processes through its environment tag, across sessions."""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from gpuhive.agent import reaper

CHILD = """import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").close()
time.sleep(300)
"""
PARENT = """import subprocess, sys, time
subprocess.Popen([sys.executable, sys.argv[1], sys.argv[2]], start_new_session=True)
time.sleep(300)
"""


def test_stop_all_reaches_children_in_other_sessions(tmp_path: Path) -> None:
    env = {**os.environ, reaper.EXEC_ID_VAR: "test-exec-1"}
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "parent.py").write_text(PARENT)
    ready = tmp_path / "ready"
    # the child escapes into its own session (like torchrun's workers) and ignores
    # SIGTERM, so only SIGKILL after the grace period ends it
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py"),
                               str(tmp_path / "child.py"), str(ready)],
                              env=env, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not ready.exists():
        time.sleep(0.05)
    pids = reaper.tagged("test-exec-1")
    assert len(pids) == 2 and parent.pid in pids
    killed = asyncio.run(reaper.stop_all(parent.pid, "test-exec-1", grace_s=1.0))
    parent.wait(5)
    assert len(killed) == 1  # the SIGTERM-ignoring one needed SIGKILL
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and reaper.tagged("test-exec-1"):
        time.sleep(0.05)
    assert reaper.tagged("test-exec-1") == []


def test_tagged_ignores_other_ids() -> None:
    assert reaper.tagged("no-such-exec-id") == []
