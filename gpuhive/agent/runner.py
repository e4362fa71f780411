"""The agent on a friend's box: embedded SSH server + the link home + heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import asdict
from typing import Any

from gpuhive.agent import reaper
from gpuhive.agent.overlay_spoke import Spoke
from gpuhive.agent.policy import agent_state, load_policy, policy_to_dict
from gpuhive.agent.state import AgentHome, AgentIdentity
from gpuhive.config import Settings
from gpuhive.core.messages import Message
from gpuhive.core.model import AgentState
from gpuhive.core.ranking import OwnerPolicy
from gpuhive.errors import GpuhiveError
from gpuhive.fsutil import write_json
from gpuhive.probe import probe_hardware
from gpuhive.transport import keys
from gpuhive.transport.agent_link import AgentLink, LinkStatus, LinkTarget
from gpuhive.transport.embedded_server import start_embedded_server

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, home: AgentHome, settings: Settings) -> None:
        self.home = home
        self.settings = settings
        self.identity = AgentIdentity.load(home)
        self.node_key = keys.load_key(home.node_key)
        self.host_key = keys.load_key(home.embedded_host_key)
        self.state = AgentState.AVAILABLE
        self.link: AgentLink | None = None
        self.embedded_port = 0
        self.spoke = Spoke(home.root, settings, self.identity.controller_host)

    async def heartbeat_payload(self) -> dict[str, Any]:
        hw = await asyncio.to_thread(probe_hardware)
        try:
            policy = load_policy(self.home.root)
        except GpuhiveError as exc:  # a broken policy file must not silence the heartbeat
            log.warning("%s", exc)
            policy = OwnerPolicy()
        self.state = agent_state(policy, running_tasks=0)
        return {"state": self.state.value, "hardware": hw.to_dict(), "jobs": [], "models": [],
                "policy": policy_to_dict(policy), "overlay": self.spoke.report()}

    async def on_welcome(self, welcome: Message) -> None:
        overlay = welcome.get("overlay")
        if isinstance(overlay, dict):
            await self.spoke.ensure(overlay)

    def on_message(self, msg: Message) -> None:
        if msg.type == "peers":
            self.spoke.set_direct(msg["direct"])

    def _write_status(self, status: LinkStatus) -> None:
        data = {**asdict(status), "pid": os.getpid(), "node_id": self.identity.node_id,
                "name": self.identity.name, "controller": f"{self.identity.controller_host}:"
                f"{self.identity.controller_port}", "embedded_port": self.embedded_port,
                "updated_at": time.time()}
        with contextlib.suppress(OSError):
            write_json(self.home.status_file, data, private=False)

    async def run(self) -> None:
        # commands the controller runs here find this interpreter (and so gpuhive) by it
        os.environ["GPUHIVE_PYTHON"] = sys.executable
        os.environ["GPUHIVE_HOME"] = str(self.home.root)
        # an earlier agent that died left its commands running: nobody can reach them now
        left = reaper.orphans(str(self.home.root))
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if left:
            log.warning("stopped %d process(es) an earlier agent left running", len(left))
        acceptor, self.embedded_port = await start_embedded_server(
            self.host_key, self.identity.controller_client_key)
        ident = self.identity
        self.link = AgentLink(
            LinkTarget(ident.controller_host, ident.controller_port, ident.node_id,
                       ident.forward_port, ident.controller_host_key),
            self.node_key, self.embedded_port, self.settings,
            heartbeat=self.heartbeat_payload, on_status=self._write_status,
            on_welcome=self.on_welcome, on_message=self.on_message)
        self.home.pid_file.write_text(f"{os.getpid()}\n")
        self._write_status(self.link.status)
        log.info("agent %s up: embedded server 127.0.0.1:%s, dialing %s:%s", ident.name,
                 self.embedded_port, ident.controller_host, ident.controller_port)
        try:
            await self.link.run()
        finally:
            acceptor.close()
            with contextlib.suppress(Exception):
                await self.spoke.stop()
            with contextlib.suppress(FileNotFoundError):
                self.home.pid_file.unlink()
            status = self.link.status
            status.connected = False
            status.last_error = "agent stopped"
            self._write_status(status)


async def serve(home: AgentHome, settings: Settings) -> None:
    """Run the agent until SIGINT/SIGTERM."""
    agent = Agent(home, settings)
    task = asyncio.ensure_future(agent.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
