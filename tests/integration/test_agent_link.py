"""The agent's side of the link with a real in-process controller: removal, goodbye, lock."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gpuhive.agent.errors import AgentAlreadyRunning
from gpuhive.agent.runner import Agent
from gpuhive.agent.state import AgentHome
from gpuhive.transport.agent_link import LinkEnd
from tests.integration.conftest import Hive, running_hive


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _until(what: str, check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _status(hive: Hive, name: str) -> dict:
    return json.loads((hive.root / name / "agent_status.json").read_text())


def test_removed_node_stops_its_agent_for_good(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive:
            await hive.enroll("alice")
            agent = Agent(AgentHome(hive.root / "alice"), hive.settings)
            task = asyncio.ensure_future(agent.run())
            await hive.wait_status("alice", "online")
            await hive.ctl.service.node_remove("alice")
            assert await asyncio.wait_for(task, 15) == LinkEnd.REMOVED  # by itself
            st = _status(hive, "alice")
            assert st["state"] == "removed" and not st["connected"]
            assert "removed from the hive" in st["last_error"]
            assert not (hive.root / "alice" / "agent.pid").exists()
    run(go())


def test_an_unknown_key_is_not_taken_for_removal(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive:
            await hive.enroll("bob")
            ident = tmp_path / "bob" / "agent.json"
            data = json.loads(ident.read_text())
            ident.write_text(json.dumps({**data, "node_id": "n-unknown"}))
            agent = Agent(AgentHome(hive.root / "bob"), hive.settings)
            task = asyncio.ensure_future(agent.run())
            try:
                await _until("a few refused dials",
                             lambda: agent.link is not None and agent.link.status.attempts >= 3)
                assert not task.done()  # still retrying: only the controller's word stops it
                st = _status(hive, "bob")
                assert st["state"] == "disconnected"
                assert "refused this machine's key" in st["last_error"]
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
    run(go())


def test_goodbye_is_a_clean_stop(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive:
            await hive.enroll("carol")
            home = AgentHome(hive.root / "carol")
            agent = Agent(home, hive.settings)
            task = asyncio.ensure_future(agent.run())
            online = await hive.wait_status("carol", "online")
            assert await agent.leave()  # the controller confirmed
            assert await asyncio.wait_for(task, 5) == LinkEnd.STOPPED
            node = await hive.wait_status("carol", "offline", timeout=3)
            assert node["reason"].startswith("agent stopped")
            assert node["reliability"] == online["reliability"]  # no penalty
            events = [e["event"] for e in hive.ctl.service.node_show("carol")["events"]]
            assert "degraded" not in events
            assert _status(hive, "carol")["state"] == "stopped"
            again = asyncio.ensure_future(Agent(home, hive.settings).run())
            try:
                await hive.wait_status("carol", "online")
            finally:
                again.cancel()
    run(go())


def test_second_agent_on_one_home_touches_nothing(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive, hive.agent("dave") as first:
            await hive.wait_status("dave", "online")
            home = AgentHome(hive.root / "dave")
            pid_before = home.pid_file.read_text()
            status_before = home.status_file.read_text()
            with pytest.raises(AgentAlreadyRunning):
                await Agent(home, hive.settings).run()
            assert home.pid_file.read_text() == pid_before
            assert home.status_file.read_text() == status_before
            assert first.link is not None and first.link.status.connected
    run(go())
