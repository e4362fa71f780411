"""Run the reachability checks: ping and a TCP bulk transfer between overlay addresses. I/O.

How a command reaches a node is a ``Runner``: ``NetnsRunner`` runs it in a lab namespace
(or locally), the controller's runner would use its SSH sessions to the nodes.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gpuhive import pids as _pids
from gpuhive.lab.netns import exec_argv
from gpuhive.overlay import check
from gpuhive.overlay.check import PairResult

DEFAULT_PORT = 47001
DEFAULT_BYTES = 50_000_000


@dataclass(frozen=True)
class Target:
    name: str
    overlay_ip: str
    host: str | None = None  # the runner's handle for the node (a namespace in the lab)


class Runner(Protocol):
    def run(self, target: Target, argv: list[str], timeout_s: float) -> tuple[int, str]: ...

    def start(self, target: Target, argv: list[str]) -> int: ...

    def stop(self, handle: int) -> None: ...


class NetnsRunner:
    """Commands in the target's network namespace (``host``), or here when it is None."""

    def __init__(self) -> None:
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def run(self, target: Target, argv: list[str], timeout_s: float) -> tuple[int, str]:
        try:
            p = subprocess.run(exec_argv(target.host, argv), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=timeout_s,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return 124, f"timed out after {timeout_s:g}s"
        except OSError as exc:
            return 127, str(exc)
        return p.returncode, p.stdout

    def start(self, target: Target, argv: list[str]) -> int:
        proc = subprocess.Popen(exec_argv(target.host, argv), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        self._procs[proc.pid] = proc
        return proc.pid

    def stop(self, handle: int) -> None:
        _pids.terminate([handle], 2.0, group=True)
        proc = self._procs.pop(handle, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2.0)


def ping(runner: Runner, src: Target, dst: Target) -> tuple[int, int, float | None, str]:
    _rc, out = runner.run(src, check.ping_argv(dst.overlay_ip), 15.0)
    sent, received, rtt = check.parse_ping(out)
    return sent, received, rtt, "" if sent else out.strip()[-200:]


def transfer(runner: Runner, src: Target, dst: Target, *, nbytes: int = DEFAULT_BYTES,
             port: int = DEFAULT_PORT, python: str = sys.executable,
             timeout_s: float = 30.0) -> dict[str, object]:
    """Send ``nbytes`` from src to a receiver on dst's overlay address; the sender's JSON."""
    handle = runner.start(dst, check.recv_argv(dst.overlay_ip, port, python=python,
                                               timeout_s=timeout_s))
    try:
        time.sleep(0.2)  # the sender retries connecting anyway; this saves a round
        _rc, out = runner.run(src, check.send_argv(dst.overlay_ip, port, nbytes,
                                                   python=python, timeout_s=timeout_s),
                              timeout_s + 30.0)
    finally:
        runner.stop(handle)
    line = out.strip().splitlines()[-1] if out.strip() else "{}"
    try:
        return dict(json.loads(line))
    except json.JSONDecodeError:
        return {"error": out.strip()[-200:] or "no output"}


def check_pair(runner: Runner, src: Target, dst: Target, *, nbytes: int = DEFAULT_BYTES,
               port: int = DEFAULT_PORT, python: str = sys.executable) -> PairResult:
    sent, received, rtt, err = ping(runner, src, dst)
    if received == 0 or nbytes <= 0:
        return PairResult(src.name, dst.name, sent, received, rtt, None, None, err)
    t = transfer(runner, src, dst, nbytes=nbytes, port=port, python=python)
    ok = "error" not in t and t.get("received") == nbytes
    rate = t.get("mb_per_s")
    return PairResult(src.name, dst.name, sent, received, rtt, ok,
                      float(rate) if isinstance(rate, int | float) else None,
                      str(t.get("error", "" if ok else f"received {t.get('received')}")))


def run_checks(targets: Sequence[Target], runner: Runner | None = None, *,
               nbytes: int = DEFAULT_BYTES, port: int = DEFAULT_PORT,
               python: str = sys.executable) -> list[PairResult]:
    """Every ordered pair, one at a time (concurrent transfers would share the CPU)."""
    runner = runner or NetnsRunner()
    return [check_pair(runner, a, b, nbytes=nbytes, port=port, python=python)
            for a in targets for b in targets if a.name != b.name]
