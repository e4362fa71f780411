"""Run one engine replica on this machine and keep it alive (the agent's side of serving).

    start() ─ sha256 check (refuses a wrong file) ─▶ STARTING ─ health ok ─▶ READY
       ▲                                               │                    │ exits, or
       │                                               │ exits / no health  │ N failed checks
       └──── backoff 1, 2, 4 … cap s (restart_plan) ◀──┴────────────────────┘
                   │ max_restarts used up (or the file changed and no longer hashes right)
                   ▼
                 FAILED                     stop() ─▶ STOPPED (the process group is gone)

The engine runs in its own session (process group), so stopping it takes down anything it
started. Its port stays the same across restarts when that port is still free (the
controller's forward points at it); ``status().port`` is always the current one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from gpuhive.core.backoff import backoff_delay
from gpuhive.pids import group_alive
from gpuhive.ports import free_port, port_is_free
from gpuhive.serve.errors import ChecksumMismatch, WorkerFailed
from gpuhive.serve.models.hashing import verify_sha256
from gpuhive.serve.node.engine import EngineCommand, EngineHost, EngineSpec, build_engine_command


class WorkerState(str, enum.Enum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class WorkerStatus:
    state: WorkerState
    port: int
    restarts: int = 0
    pid: int | None = None
    error: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"state": self.state.value, "port": self.port, "restarts": self.restarts,
                "pid": self.pid, "error": self.error}


@dataclass(frozen=True)
class SupervisorConfig:
    health_interval_s: float = 2.0
    startup_poll_s: float = 0.1
    health_timeout_s: float = 5.0
    start_timeout_s: float = 300.0  # loading a big model from a slow disk takes a while
    unhealthy_after: int = 3  # consecutive failed checks of a READY engine
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 30.0
    max_restarts: int | None = 10  # consecutive; None: never give up
    stable_after_s: float = 120.0  # this long READY resets the consecutive count
    stop_grace_s: float = 5.0


def restart_plan(consecutive: int, ready_for_s: float, cfg: SupervisorConfig,
                 rand: float) -> tuple[int, float | None]:
    """After the engine died: (new consecutive count, delay before restarting or None to
    give up). A replica that was READY for ``stable_after_s`` starts the schedule over."""
    if ready_for_s >= cfg.stable_after_s:
        consecutive = 0
    if cfg.max_restarts is not None and consecutive >= cfg.max_restarts:
        return consecutive, None
    return consecutive + 1, backoff_delay(consecutive, rand, base=cfg.backoff_base_s,
                                          cap=cfg.backoff_cap_s)


class WorkerSupervisor:
    def __init__(self, spec: EngineSpec, sha256: str, host: EngineHost, *,
                 config: SupervisorConfig = SupervisorConfig(), log_path: Path | None = None,
                 on_status: Callable[[WorkerStatus], None] | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        self.spec = spec
        self.sha256 = sha256.lower()
        self.host = host
        self.cfg = config
        self.log_path = log_path
        self.on_status = on_status
        self.rand = rand
        self._status = WorkerStatus(WorkerState.STOPPED, spec.port)
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
        self._verified: tuple[int, int] | None = None  # (size, mtime_ns) of the checked file
        self._http: httpx.AsyncClient | None = None

    # ---- public ---------------------------------------------------------------------

    def status(self) -> WorkerStatus:
        return self._status

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._status.port}"

    @property
    def command(self) -> EngineCommand:
        return build_engine_command(replace(self.spec, port=self._status.port), self.host)

    async def start(self) -> None:
        """Check the file, then start supervising; returns at once (see ``wait_ready``)."""
        if self._task is not None:
            return
        await self._check_file()
        self._stopping.clear()
        port = self.spec.port or free_port()
        self._set(WorkerStatus(WorkerState.STARTING, port))
        self._http = httpx.AsyncClient(timeout=self.cfg.health_timeout_s, trust_env=False)
        self._task = asyncio.ensure_future(self._run())

    async def wait_ready(self, timeout: float | None = None) -> WorkerStatus:
        async def until_settled() -> WorkerStatus:
            while self._status.state not in (WorkerState.READY, WorkerState.FAILED,
                                             WorkerState.STOPPED):
                self._changed.clear()
                await self._changed.wait()
            return self._status

        st = await asyncio.wait_for(until_settled(), timeout)
        if st.state is not WorkerState.READY:
            raise WorkerFailed(f"engine for {self.spec.alias} is {st.state.value}: {st.error}",
                               hint=self._log_hint(), **st.to_dict())
        return st

    async def stop(self) -> None:
        """Stop the engine and its whole process group; idempotent."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._kill()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._set(replace(self._status, state=WorkerState.STOPPED, pid=None))

    # ---- the loop -------------------------------------------------------------------

    async def _run(self) -> None:
        consecutive = 0
        while not self._stopping.is_set():
            try:
                await self._check_file()
            except ChecksumMismatch as exc:
                self._set(replace(self._status, state=WorkerState.FAILED, error=exc.message))
                return
            port = self._status.port if port_is_free(self._status.port) else free_port()
            self._set(replace(self._status, state=WorkerState.STARTING, port=port, pid=None))
            why, ready_for = await self._run_once()
            await self._kill()
            if self._stopping.is_set():
                return
            consecutive, delay = restart_plan(consecutive, ready_for, self.cfg, self.rand())
            if delay is None:
                self._set(replace(self._status, state=WorkerState.FAILED, pid=None,
                                  error=f"{why}; gave up after {consecutive} restarts"))
                return
            self._set(replace(self._status, state=WorkerState.STARTING, pid=None, error=why,
                              restarts=self._status.restarts + 1))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _run_once(self) -> tuple[str, float]:
        """Start the engine and watch it until it dies or turns unhealthy: (why, s ready)."""
        cmd = self.command
        out = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *cmd.argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=out or asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True, env={**os.environ, **cmd.env},
                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        except OSError as exc:
            return f"cannot start {cmd.argv[0]}: {exc}", 0.0
        finally:
            if out:
                out.close()
        proc = self._proc
        self._set(replace(self._status, pid=proc.pid))
        started = time.monotonic()
        ready_at: float | None = None
        bad = 0
        while True:
            interval = self.cfg.health_interval_s if ready_at else self.cfg.startup_poll_s
            with contextlib.suppress(asyncio.TimeoutError):
                rc = await asyncio.wait_for(proc.wait(), interval)
                return f"engine exited with {rc}", _since(ready_at)
            if await self._healthy(cmd.alive_path if ready_at else cmd.health_path):
                bad = 0
                if ready_at is None:
                    ready_at = time.monotonic()
                    self._set(replace(self._status, state=WorkerState.READY, error=""))
            elif ready_at is not None:
                bad += 1
                if bad >= self.cfg.unhealthy_after:
                    return f"engine failed {bad} health checks", _since(ready_at)
            elif time.monotonic() - started > self.cfg.start_timeout_s:
                return f"engine not healthy after {self.cfg.start_timeout_s:.0f} s", 0.0

    async def _healthy(self, path: str) -> bool:
        assert self._http is not None
        try:
            r = await self._http.get(self.base_url + path)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pgid = proc.pid  # its own session: group id == its pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), self.cfg.stop_grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        await proc.wait()
        for _ in range(100):  # children of the engine die a moment after their leader
            if not group_alive(pgid):
                return
            await asyncio.sleep(0.02)

    async def _check_file(self) -> None:
        path = self.spec.model_path
        try:
            st = path.stat()
        except OSError as exc:
            raise ChecksumMismatch(f"model file {path} is missing: {exc}",
                                   hint="push the model to this node again",
                                   path=str(path)) from exc
        stamp = (st.st_size, st.st_mtime_ns)
        if stamp != self._verified:
            await asyncio.to_thread(verify_sha256, path, self.sha256)
            self._verified = stamp

    def _set(self, st: WorkerStatus) -> None:
        self._status = st
        self._changed.set()
        if self.on_status:
            self.on_status(st)

    def _log_hint(self) -> str:
        return f"see the engine log {self.log_path}" if self.log_path else \
            "give the supervisor a log_path to see the engine's output"


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it if the supervising process dies (Linux), so a
    crashed agent or test run leaves no engine behind holding memory and a port."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _since(t: float | None) -> float:
    return time.monotonic() - t if t is not None else 0.0
