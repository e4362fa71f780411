"""A node leaves mid-round: two torchrun agents on loopback (c10d rendezvous, --nnodes 1:2),
each with its own checkpoint dir; the second "node" is killed, agent and workers alike."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpuhive.ports import free_port

pytest.importorskip("torch")

LLM = Path(__file__).resolve().parents[2] / "examples" / "llm.py"


def _start_node(tmp: Path, name: str, addr: str, port: int, is_host: bool
                ) -> tuple[subprocess.Popen[bytes], Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUHIVE_")}
    env.update(GPUHIVE_CHECKPOINT_DIR=str(tmp / name / "ckpt"), GPUHIVE_NODE_NAME=name,
               GLOO_SOCKET_IFNAME="lo", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1:2",
            "--nproc-per-node", "1", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "elastic-test",
            "--rdzv-conf", f"is_host={int(is_host)},last_call_timeout=2",
            "--local-addr", addr, "--max-restarts", "3", "--monitor-interval", "0.5",
            str(LLM), "--mode", "diloco", "--sync-every", "10", "--steps", "150",
            "--batch-size", "8", "--checkpoint-every", "10", "--eval-every", "10"]
    log = tmp / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, log


def _kill_node(proc: subprocess.Popen[bytes]) -> None:
    """The agent's group and every worker's group: torchrun starts workers in sessions of
    their own, so killing the agent's group alone leaves them training."""
    groups = [proc.pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        groups += [int(c) for c in children]
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def _wait_for(log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, log.read_text(errors="replace")):
            return
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} in {log} after {timeout:.0f} s")


def test_killed_node_mid_round_leaves_weights_intact_and_the_job_finishes(
        tmp_path: Path) -> None:
    port = free_port()
    a, a_log = _start_node(tmp_path, "node-a", "127.0.0.1", port, is_host=True)
    b, b_log = None, None
    try:
        time.sleep(0.5)
        b, b_log = _start_node(tmp_path, "node-b", "127.0.0.2", port, is_host=False)
        # rendezvous ranks sort by address: node-a (127.0.0.1) is rank 0 and saves
        _wait_for(a_log, r"step 40 loss", a, timeout=240)
        before_kill = a_log.read_text()
        assert "world=" not in before_kill
        _kill_node(b)
        assert a.wait(timeout=240) == 0, a_log.read_text()[-3000:]
    finally:
        for proc in (a, b):
            if proc is not None:
                _kill_node(proc)
    out = a_log.read_text()
    after = out[len(before_kill):]
    assert "a peer left; the round is discarded" in after
    m = re.search(r"resumed from step (\d+) \(checkpoint of node-a\), held-out loss "
                  r"(\d+\.\d+)", after)
    assert m and int(m.group(1)) >= 30 and int(m.group(1)) % 10 == 0, after[-3000:]
    # the survivor took up the global weights of that step, uncorrupted: its held-out loss
    # is the one printed at that step before the kill (same weights, same windows)
    assert f"step {m.group(1)} loss {m.group(2)}" in before_kill
    assert "stats mode=diloco compress=bf16 world=1" in after
    final = re.search(r"final loss (\d+\.\d+) weights_sha256 [0-9a-f]{64}", after)
    first = re.search(r"step 10 loss (\d+\.\d+)", out)
    assert final and first and float(final.group(1)) < float(first.group(1))
    assert b_log is not None and "final loss" not in b_log.read_text()
