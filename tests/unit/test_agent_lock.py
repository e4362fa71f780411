"""One agent per $GPUHIVE_HOME: the lock, across real processes."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gpuhive.agent.errors import AgentAlreadyRunning
from gpuhive.agent.lock import AgentLock
from gpuhive.agent.state import AgentHome

HOLD = ("import sys, time; from pathlib import Path; from gpuhive.agent.lock import AgentLock;"
        " from gpuhive.agent.state import AgentHome;"
        " lock = AgentLock.acquire(AgentHome(Path(sys.argv[1]))); print('held', flush=True);"
        " time.sleep(600)")


def _holder(home: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(home)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_lock_names_the_holder_and_leaves_it_alone(tmp_path: Path) -> None:
    home = AgentHome(tmp_path)
    holder = _holder(tmp_path)
    try:
        with pytest.raises(AgentAlreadyRunning) as info:
            AgentLock.acquire(home)
        assert f"(pid {holder.pid})" in info.value.message
        assert info.value.data["pid"] == holder.pid and "agent status" in info.value.hint
        assert home.lock_file.read_text().strip() == str(holder.pid)
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()


def test_a_dead_holder_never_blocks_a_restart(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with AgentLock.acquire(AgentHome(tmp_path)) as lock:
        assert lock.held
        assert AgentHome(tmp_path).lock_file.read_text().strip() == str(os.getpid())


def test_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    home = AgentHome(tmp_path)
    first = AgentLock.acquire(home)
    with pytest.raises(AgentAlreadyRunning):
        AgentLock.acquire(home)  # even from the same process: one agent per home
    first.release()
    first.release()  # idempotent
    AgentLock.acquire(home).release()


def test_commands_the_agent_starts_do_not_inherit_the_lock(tmp_path: Path) -> None:
    home = AgentHome(tmp_path)
    with AgentLock.acquire(home):
        child = subprocess.Popen(["sleep", "30"], close_fds=False)
    try:
        AgentLock.acquire(home).release()  # the agent is gone; its child must not hold it
    finally:
        child.kill()
        child.wait()
