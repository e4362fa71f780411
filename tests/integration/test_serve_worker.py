"""WorkerSupervisor with a real llama-cpp-python engine serving the generated tiny model."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from gpuhive.pids import group_alive
from gpuhive.serve.errors import ChecksumMismatch, WorkerFailed
from gpuhive.serve.models.hashing import sha256_file
from gpuhive.serve.models.tinymodel import write_tiny_model
from gpuhive.serve.node.engine import EngineSpec, detect_host
from gpuhive.serve.node.supervisor import SupervisorConfig, WorkerState, WorkerSupervisor

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
T = TypeVar("T")
FAST = SupervisorConfig(health_interval_s=0.2, startup_poll_s=0.05, backoff_base_s=0.2,
                        backoff_cap_s=1.0, max_restarts=3, start_timeout_s=60)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 120))


def supervisor(path: Path, sha: str, tmp: Path, **kw: Any) -> WorkerSupervisor:
    host = detect_host()
    host = type(host)(cores=1, has_gpu=False, llama_server=None)  # llama-cpp-python, 1 thread
    return WorkerSupervisor(EngineSpec(path, 0, "tiny-test", n_ctx=256), sha, host,
                            config=kw.pop("config", FAST), log_path=tmp / "engine.log", **kw)


async def wait_for(check: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_starts_serves_restarts_after_a_crash_and_stops_cleanly(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "tiny.gguf")
    states: list[str] = []
    sup = supervisor(model, sha256_file(model), tmp_path,
                     on_status=lambda s: states.append(s.state.value))
    pids: list[int] = []

    async def go() -> None:
        try:
            await sup.start()
            st = await sup.wait_ready(60)
            assert st.state is WorkerState.READY and st.port > 0 and st.pid
            async with httpx.AsyncClient(base_url=sup.base_url) as c:
                r = await c.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 5,
                                                          "temperature": 0})
                assert r.status_code == 200 and len(r.json()["choices"][0]["text"]) == 5
            port, pids[:] = st.port, [st.pid]
            os.killpg(st.pid, signal.SIGKILL)  # the engine crashes
            await wait_for(lambda: sup.status().restarts == 1
                           and sup.status().state is WorkerState.READY)
            assert sup.status().port == port  # the controller's forward still points at it
            assert sup.status().pid != pids[0]
            pids.append(sup.status().pid or 0)
        finally:
            await sup.stop()
    run(go())
    assert sup.status().state is WorkerState.STOPPED
    assert not any(group_alive(p) for p in pids)
    changes = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    assert changes == ["starting", "ready", "starting", "ready", "stopped"]


def test_refuses_a_file_that_does_not_hash_right(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "tiny.gguf")
    good = sha256_file(model)
    partial = tmp_path / "partial.gguf"
    partial.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    sup = supervisor(partial, good, tmp_path)
    with pytest.raises(ChecksumMismatch, match="refusing"):
        run(sup.start())
    assert sup.status().state is WorkerState.STOPPED and sup.status().pid is None


def test_a_file_changed_under_a_running_replica_is_not_reloaded(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "tiny.gguf")
    sup = supervisor(model, sha256_file(model), tmp_path)

    async def go() -> None:
        try:
            await sup.start()
            st = await sup.wait_ready(60)
            shutil.copy(write_tiny_model(tmp_path / "other.gguf", seed=9), model)
            os.killpg(st.pid or 0, signal.SIGKILL)
            await wait_for(lambda: sup.status().state is WorkerState.FAILED)
            assert "expected" in sup.status().error
        finally:
            await sup.stop()
    run(go())


def test_gives_up_after_max_restarts(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF but not really" * 100)
    cfg = SupervisorConfig(health_interval_s=0.2, startup_poll_s=0.05, backoff_base_s=0.05,
                           backoff_cap_s=0.1, max_restarts=2, start_timeout_s=60)
    sup = supervisor(junk, sha256_file(junk), tmp_path, config=cfg)

    async def go() -> None:
        try:
            await sup.start()
            with pytest.raises(WorkerFailed) as info:
                await sup.wait_ready(60)
            st = sup.status()
            assert st.state is WorkerState.FAILED and st.restarts == 2
            assert "gave up" in st.error and "engine.log" in info.value.hint
        finally:
            await sup.stop()
    run(go())
