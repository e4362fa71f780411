"""The overlay's reachability check between lab hosts: ``overlay.check_io`` in namespaces.

A target's handle is its network namespace (None: this one). ``run_checks`` and
``transfer`` are plain functions for the tests and benches, which are synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from subprocess import DEVNULL, PIPE, STDOUT

from gpuhive.overlay import check_io
from gpuhive.overlay.check import PairResult, TransferResult
from gpuhive.overlay.check_io import DEFAULT_BYTES, DEFAULT_PORT, CheckOptions, Outcome, Target
from gpuhive.sysrun import exec_argv

__all__ = ["NetnsRunner", "Target", "run_checks", "transfer"]

NsTarget = Target[str | None]


class NetnsRunner:
    """``check_io.Runner`` for lab hosts: each command in its own session in the namespace,
    so stopping it stops what it started too."""

    async def run(self, node: str | None, argv: list[str]) -> Outcome:
        try:
            proc = await asyncio.create_subprocess_exec(
                *exec_argv(node, argv), stdin=DEVNULL, stdout=PIPE, stderr=STDOUT,
                start_new_session=True)
        except OSError as exc:
            return None, str(exc)
        try:
            out, _ = await proc.communicate()
        finally:
            if proc.returncode is None:  # cancelled (a timeout, or the check is done)
                await _stop(proc)
        return proc.returncode, out.decode(errors="replace")


async def _stop(proc: asyncio.subprocess.Process, grace_s: float = 2.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
            return
        except TimeoutError:
            continue


def run_checks(targets: Sequence[NsTarget], *, nbytes: int = DEFAULT_BYTES,
               port: int = DEFAULT_PORT) -> list[PairResult]:
    """Every ordered pair of lab hosts, one at a time; ``nbytes`` 0 pings only."""
    return asyncio.run(check_io.check_pairs(NetnsRunner(), targets,
                                            opts=CheckOptions(nbytes=nbytes),
                                            pick_port=lambda: port))


def transfer(src: NsTarget, dst: NsTarget, *, nbytes: int = DEFAULT_BYTES,
             port: int = DEFAULT_PORT, timeout_s: float = 30.0) -> TransferResult:
    """``nbytes`` over TCP from src to dst's overlay address (no ping first)."""
    opts = CheckOptions(nbytes=nbytes, timeout_s=timeout_s)
    return asyncio.run(check_io.transfer(NetnsRunner(), src, dst, port=port, opts=opts))
