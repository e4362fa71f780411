"""The agent on a friend's box: embedded SSH server + the link home + heartbeats.

One agent per $GPUHIVE_HOME (``agent.lock``): the lock comes before anything else, so a
second agent touches nothing of the first. A stop by SIGINT/SIGTERM says goodbye to the
controller first, which records a clean stop rather than missed heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from gpuhive.agent import reaper
from gpuhive.agent.console import Console
from gpuhive.agent.errors import NodeRemoved
from gpuhive.agent.lock import AgentLock
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
from gpuhive.transport.agent_link import AgentLink, LinkEnd, LinkEvent, LinkStatus, LinkTarget
from gpuhive.transport.embedded_server import start_embedded_server

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, home: AgentHome, settings: Settings, *,
                 on_event: Callable[[LinkEvent], None] = lambda e: None,
                 say: Callable[[str], None] = lambda text: None) -> None:
        self.home = home
        self.settings = settings
        self.on_event = on_event  # link events, for the foreground agent's lines
        self.say = say  # anything else the friend should read
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

    async def run(self, lock: AgentLock | None = None) -> LinkEnd:
        """Run until cancelled, removed or stopped; ``lock``: one the caller already holds
        (enroll takes it before enrolling), else it is taken here, first of all."""
        held = lock or AgentLock.acquire(self.home)
        try:
            return await self._run()
        finally:
            if lock is None:
                held.release()

    async def _run(self) -> LinkEnd:
        # commands the controller runs here find this interpreter (and so gpuhive) by it
        os.environ["GPUHIVE_PYTHON"] = sys.executable
        os.environ["GPUHIVE_HOME"] = str(self.home.root)
        # an earlier agent that died left its commands running: nobody can reach them now
        # (we hold the lock, so no other agent of this home is alive to own them)
        left = reaper.orphans(str(self.home.root))
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if left:
            log.warning("stopped %d process(es) an earlier agent left running", len(left))
            self.say(f"stopped {len(left)} process(es) an earlier agent left running")
        acceptor, self.embedded_port = await start_embedded_server(
            self.host_key, self.identity.controller_client_key)
        ident = self.identity
        self.link = AgentLink(
            LinkTarget(ident.controller_host, ident.controller_port, ident.node_id,
                       ident.forward_port, ident.controller_host_key),
            self.node_key, self.embedded_port, self.settings,
            heartbeat=self.heartbeat_payload, on_status=self._write_status,
            on_welcome=self.on_welcome, on_message=self.on_message, on_event=self.on_event)
        pid_text = f"{os.getpid()}\n"
        self.home.pid_file.write_text(pid_text)
        self._write_status(self.link.status)
        log.info("agent %s up: embedded server 127.0.0.1:%s, dialing %s:%s", ident.name,
                 self.embedded_port, ident.controller_host, ident.controller_port)
        try:
            return await self.link.run()
        finally:
            acceptor.close()
            with contextlib.suppress(Exception):
                await self.spoke.stop()
            _remove_if_ours(self.home.pid_file, pid_text)
            status = self.link.status
            if status.state != LinkEnd.REMOVED.value:
                status.state = LinkEnd.STOPPED.value
                status.last_error = "agent stopped"
            status.connected = False
            status.retry_at = None
            self._write_status(status)

    async def leave(self) -> bool:
        """Say goodbye to the controller; True if it confirmed the clean stop."""
        return self.link is not None and await self.link.goodbye()


def _remove_if_ours(path: Any, text: str) -> None:
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            path.unlink()


@dataclass(frozen=True)
class AgentExit:
    """How the agent ended: by a signal (SIGINT → exit 130, SIGTERM → 0) or on its own."""

    signal: int | None = None


async def serve(home: AgentHome, settings: Settings, *, lock: AgentLock | None = None,
                console: Console | None = None) -> AgentExit:
    """Run the agent until SIGINT/SIGTERM (goodbye first; a second signal stops at once).

    Raises ``NodeRemoved`` when the controller says this machine was removed."""
    agent = Agent(home, settings, on_event=console.on_event if console else lambda e: None,
                  say=console.say if console else lambda text: None)
    task = asyncio.ensure_future(agent.run(lock))
    loop = asyncio.get_running_loop()
    signals: list[int] = []

    async def leave() -> None:
        if console is not None:
            console.say("stopping: telling the controller this is a clean stop")
        if await agent.leave():  # confirmed: the link ends by itself, give it a moment
            await asyncio.wait({task}, timeout=5)
        task.cancel()

    leaving: list[asyncio.Future[None]] = []

    def on_signal(sig: int) -> None:
        signals.append(sig)
        if len(signals) == 1 and agent.link is not None and agent.link.status.connected:
            leaving.append(asyncio.ensure_future(leave()))
        else:  # not connected, or a second Ctrl-C: stop now
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        end = await task
    except asyncio.CancelledError:
        end = LinkEnd.STOPPED
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for pending in leaving:
            pending.cancel()
    if end == LinkEnd.REMOVED and not signals:
        ident = agent.identity
        raise NodeRemoved(f"this machine ({ident.name}) was removed from the hive by its owner",
                          hint="ask the owner for a new token, then run `gpuhive enroll TOKEN`",
                          node_id=ident.node_id, name=ident.name)
    if console is not None:
        console.say("agent stopped")
    return AgentExit(signals[0] if signals else None)
