"""Replicas as engine processes on this machine's loopback, behind one ``ReplicaSource``.

For a one-machine hive (and for the tests and benchmarks): ``local_replicas`` starts
``count`` supervised engines for a model file, waits until all are ready, yields a
``LocalPool`` whose ``source`` the gateway routes to, and stops every engine (and its
process group) on the way out, whatever happened inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from gpuhive.serve.api import ModelProfile, Replica, StaticReplicas
from gpuhive.serve.node.engine import EngineHost, EngineSpec, detect_host
from gpuhive.serve.node.supervisor import SupervisorConfig, WorkerSupervisor


@dataclass
class LocalPool:
    model: str
    supervisors: list[WorkerSupervisor]
    profile: ModelProfile
    source: StaticReplicas = field(default_factory=StaticReplicas)

    def refresh(self) -> None:
        """Publish the supervisors' current ports as replicas (call after a restart)."""
        self.source.items[:] = [
            Replica(f"{self.model}-{i}", self.model, "local", s.base_url, 0.5)
            for i, s in enumerate(self.supervisors)]
        self.source.profiles[self.model] = self.profile

    def kill(self, index: int) -> int:
        """SIGKILL replica ``index``'s engine (a crash, as a test sees it); returns its pid."""
        pid = self.supervisors[index].status().pid
        assert pid is not None, "that replica is not running"
        os.killpg(pid, signal.SIGKILL)
        return pid


@contextlib.asynccontextmanager
async def local_replicas(model_path: Path, sha256: str, profile: ModelProfile, count: int = 1,
                         *, n_ctx: int = 2048, n_threads: int | None = None,
                         embeddings: bool = False, host: EngineHost | None = None,
                         log_dir: Path | None = None,
                         config: SupervisorConfig = SupervisorConfig(),
                         ready_timeout_s: float = 120.0) -> AsyncIterator[LocalPool]:
    host = host or detect_host()
    sups = [WorkerSupervisor(EngineSpec(model_path, 0, profile.name, n_ctx=n_ctx,
                                        n_threads=n_threads, embeddings=embeddings),
                             sha256, host, config=config,
                             log_path=(log_dir / f"{profile.name}-{i}.log") if log_dir else None)
            for i in range(count)]
    pool = LocalPool(profile.name, sups, profile)
    try:
        for s in sups:
            await s.start()
        await asyncio.gather(*(s.wait_ready(ready_timeout_s) for s in sups))
        pool.refresh()
        yield pool
    finally:
        await asyncio.gather(*(s.stop() for s in sups), return_exceptions=True)
