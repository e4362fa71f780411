"""Run a function as N ranks on this machine (gloo over loopback), without torchrun.

For tests and benchmarks of the in-script helpers: each rank is a spawned process with
torchrun's variables set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...) plus any extra
environment per rank, so ``init_distributed()`` and the helpers behave as under torchrun.
``fn(rank, *args)`` must be importable (a module-level function); its return value comes
back pickled by value (tensors too: no shared memory that dies with the rank). A rank may
leave on purpose (``os._exit``): its result is then ``None`` with its exit code.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch.multiprocessing as mp

from gpuhive.ports import free_port
from gpuhive.train.errors import TrainError


@dataclass(frozen=True)
class RankResult:
    rank: int
    exitcode: int | None
    value: Any = None
    error: str = ""           # the traceback when fn raised


def run(fn: Callable[..., Any], world_size: int, *args: Any,
        env: Callable[[int], Mapping[str, str]] | None = None,
        timeout_s: float = 240.0) -> list[RankResult]:
    """Start ``world_size`` ranks of ``fn``; wait for all; return one result per rank."""
    port = free_port()
    ctx = mp.get_context("spawn")
    results: Any = ctx.Queue()
    procs = []
    for rank in range(world_size):
        rank_env = {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                    "LOCAL_WORLD_SIZE": str(world_size), "GROUP_RANK": "0",
                    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                    "OMP_NUM_THREADS": "1", **(env(rank) if env else {})}
        p = ctx.Process(target=_child, args=(fn, rank, rank_env, args, results), daemon=True)
        p.start()
        procs.append(p)
    got: dict[int, tuple[Any, str]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < world_size and time.monotonic() < deadline:
            try:
                rank, value, error = results.get(timeout=0.2)
                got[rank] = (pickle.loads(value), error)
            except queue.Empty:
                if all(not p.is_alive() for p in procs):
                    with contextlib.suppress(queue.Empty):  # a last message in flight
                        while True:
                            rank, value, error = results.get(timeout=0.5)
                            got[rank] = (pickle.loads(value), error)
                    break
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        if any(p.is_alive() for p in procs):
            raise TrainError(f"local ranks still running after {timeout_s:.0f} s",
                             hint="a collective is probably waiting for a rank that left",
                             alive=[r for r, p in enumerate(procs) if p.is_alive()])
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    return [RankResult(r, procs[r].exitcode, *got.get(r, (None, ""))) for r in range(world_size)]


def _child(fn: Callable[..., Any], rank: int, env: Mapping[str, str], args: tuple[Any, ...],
           results: Any) -> None:
    os.environ.update(env)
    try:
        value = fn(rank, *args)
    except BaseException:
        results.put((rank, pickle.dumps(None), traceback.format_exc()))
        raise SystemExit(1) from None
    results.put((rank, pickle.dumps(value), ""))
    # The work is done and its result on the way: leave without interpreter finalization.
    # There, torch's gloo objects still referenced (a DDP reducer, pending work) are torn
    # down with worker threads alive, and on a loaded machine that now and then aborts
    # ("terminate called without an active exception", SIGABRT) after a clean run; a rank's
    # exit code should say whether ``fn`` finished, not how that teardown went.
    results.close()
    results.join_thread()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
