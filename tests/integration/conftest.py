"""Shared fixtures: an in-process controller on loopback and agents for it."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpuhive.agent.enroll import enroll
from gpuhive.agent.runner import Agent
from gpuhive.agent.state import AgentHome, AgentIdentity
from gpuhive.config import Settings
from gpuhive.controller.daemon import Controller
from gpuhive.controller.home import init_controller
from gpuhive.ports import free_port


def fast_settings(port: int) -> Settings:
    base = random.randrange(10000, 20000, 100)  # concurrent test runs must not share ports
    return Settings(listen_host="127.0.0.1", listen_port=port, endpoint=f"127.0.0.1:{port}",
                    heartbeat_interval=0.3, backoff_base=0.1, backoff_cap=0.5,
                    keepalive_interval=5, connect_timeout=5, http_port=0,
                    forward_port_min=base, forward_port_max=base + 99)


@dataclass
class Hive:
    """An in-process controller plus helpers to enroll and run agents against it."""

    root: Path
    settings: Settings
    ctl: Controller

    def invite(self, name: str = "", ttl: str = "1h", uses: int = 1) -> str:
        return str(self.ctl.service.invite_create(name, ttl, uses)["token"])

    async def enroll(self, name: str) -> AgentIdentity:
        return await enroll(self.root / name, self.invite(name), name)

    @contextlib.asynccontextmanager
    async def agent(self, name: str, *, enroll_first: bool = True) -> AsyncIterator[Agent]:
        if enroll_first:
            await self.enroll(name)
        agent = Agent(AgentHome(self.root / name), self.settings)
        task = asyncio.ensure_future(agent.run())
        try:
            yield agent
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_status(self, name: str, status: str, timeout: float = 10.0) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        node: dict = {}
        while asyncio.get_running_loop().time() < deadline:
            nodes = {n["name"]: n for n in self.ctl.service.nodes_list()}
            node = nodes.get(name, {})
            if node.get("status") == status:
                return node
            await asyncio.sleep(0.05)
        raise AssertionError(f"{name} did not become {status}: {node.get('status')}")


@contextlib.asynccontextmanager
async def running_hive(root: Path) -> AsyncIterator[Hive]:
    port = free_port()
    settings = fast_settings(port)
    home, _ = init_controller(root / "controller", {})
    ctl = Controller(home, settings)
    await ctl.start()
    try:
        yield Hive(root, settings, ctl)
    finally:
        await ctl.stop()


@pytest.fixture
def tmp_home(tmp_path: Path) -> Path:
    return tmp_path
