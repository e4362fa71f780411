"""The controller's side of agent links: enrollment, who is connected, heartbeats.

Heartbeats land in memory (``last_heard`` and a pending batch) and reach SQLite in one
transaction per tracker tick, so a thousand agents beating once a second cost a thousand
dict writes and one commit per tick rather than a thousand commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from gpuhive.config import Settings
from gpuhive.controller.overlay_hub import OverlayHub
from gpuhive.controller.registry import Registry
from gpuhive.core import fact_codec, tokens
from gpuhive.core.messages import Message
from gpuhive.core.model import Hardware, NodeKind, NodeRecord, NodeStatus
from gpuhive.core.node_facts import OverlayFacts, SoftwareFacts
from gpuhive.core.nodeview import prune_thermal, thermal_onsets
from gpuhive.core.spoke_report import SpokeReport
from gpuhive.errors import EnrollRefused, GpuhiveError
from gpuhive.overlay.direct import to_wire
from gpuhive.overlay.keys import is_valid_key
from gpuhive.transport import keys
from gpuhive.transport.api import AgentLink, Send

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Beat:
    """The latest heartbeat of a node, waiting to be written."""

    at: float
    state: str
    hardware: Hardware | None
    policy: dict[str, Any] | None
    overlay: SpokeReport | None = None  # the spoke's own report: up, iface, error


class Hive:
    """The ``HiveHandler`` of the hive endpoint. ``hub`` is the overlay hub when the
    overlay runs (built by the daemon; down until it starts; None without --overlay)."""

    def __init__(self, registry: Registry, settings: Settings, client_key_public: str,
                 clock: Callable[[], float] = time.time, *,
                 hub: OverlayHub | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.client_key_public = client_key_public
        self.clock = clock
        self.hub = hub
        self.links: dict[str, set[AgentLink]] = {}  # node id → its open links
        # After a controller restart every agent needs a moment to redial: judge nodes that
        # were not already offline from our own start, not from their last stored heartbeat.
        started = clock()
        self.last_heard: dict[str, float | None] = {
            n.id: (started if n.status != NodeStatus.OFFLINE else n.last_heartbeat)
            for n in registry.list_nodes() if n.kind == NodeKind.AGENT}
        self.pending: dict[str, Beat] = {}
        # node id → when its agent said goodbye (a clean stop), until it connects again
        self.stopped: dict[str, float] = {}
        self.last_hw: dict[str, Hardware] = {}  # for thermal onsets between snapshots
        self.thermal_onsets: dict[str, list[float]] = {}  # not yet stored
        self.spoke_status: dict[str, SpokeReport] = {}  # last stored overlay report
        self.heartbeats_received = 0
        self.senders: dict[str, tuple[AgentLink, Send]] = {}  # the newest link's sender
        self.sent_direct: dict[str, list[dict[str, Any]]] = {}  # what each agent last got
        self._background: set[asyncio.Future[Any]] = set()

    def _later(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- HiveHandler ------------------------------------------------------------------

    def node_for_key(self, node_id: str, public_key: str) -> NodeRecord | None:
        return self.registry.node_for_key(node_id, public_key)

    def node_removed(self, node_id: str, public_key: str) -> bool:
        try:
            node = self.registry.get_node(node_id, include_removed=True)
        except GpuhiveError:
            return False
        return node.id == node_id and node.public_key == public_key \
            and node.removed_at is not None

    async def enroll(self, credential: str, request: Message, peer: str) -> dict[str, Any]:
        token_id, secret = tokens.split_credential(credential)
        for field in ("node_key", "embedded_host_key"):
            try:
                keys.import_public(request[field])
            except GpuhiveError as exc:
                raise EnrollRefused(f"enroll request has an invalid {field}") from exc
        name = request["name"].strip() or request["hostname"].strip() or "node"
        if len(name) > 63 or not all(c.isalnum() or c in "-_." for c in name):
            raise EnrollRefused(f"node name {name[:70]!r} is not allowed",
                                hint="use letters, digits, '-', '_' or '.' (at most 63)")
        node = self.registry.enroll(
            token_id=token_id, secret=secret, name=name, name_given=bool(request["name"]),
            hostname=request["hostname"][:255], public_key=request["node_key"],
            host_key=request["embedded_host_key"],
            hardware=Hardware.from_dict(request["hardware"]), public_addr=peer,
            port_range=(self.settings.forward_port_min, self.settings.forward_port_max),
            now=self.clock(), software=SoftwareFacts.from_dict(request.get("software") or {}),
            overlay=_overlay_request(request), overlay_subnet=self.settings.overlay_subnet)
        if self.hub is not None:
            self._later(self.hub.sync())
        self.last_heard.setdefault(node.id, None)
        log.info("enrolled node %s (%s) from %s with token %s", node.name, node.id, peer,
                 token_id)
        assert node.forward_port is not None
        return {"node_id": node.id, "name": node.name, "forward_port": node.forward_port,
                "controller_client_key": self.client_key_public,
                "heartbeat_interval": self.settings.heartbeat_interval}

    def link_opened(self, node: NodeRecord, link: AgentLink, peer: str,
                    send: Send) -> dict[str, Any]:
        now = self.clock()
        self.links.setdefault(node.id, set()).add(link)
        self.senders[node.id] = (link, send)
        self.sent_direct.pop(node.id, None)  # a new link starts with no direct candidates
        self.stopped.pop(node.id, None)
        self.last_heard[node.id] = now
        self.pending[node.id] = Beat(now, node.agent_state or "available", None, None)
        self.registry.set_connection(node.id, connected_since=now, public_addr=peer, now=now,
                                     event="connected")
        assert node.forward_port is not None
        welcome: dict[str, Any] = {"node_id": node.id,
                                   "heartbeat_interval": self.settings.heartbeat_interval,
                                   "forward_port": node.forward_port}
        overlay = self.hub.welcome_for(node.overlay) \
            if self.hub is not None and node.overlay is not None else None
        if overlay is not None:
            welcome["overlay"] = overlay
        return welcome

    def heartbeat(self, node: NodeRecord, msg: Message) -> None:
        now = self.clock()
        self.heartbeats_received += 1
        self.last_heard[node.id] = now
        try:
            hw: Hardware | None = Hardware.from_dict(msg["hardware"])
        except (TypeError, ValueError, KeyError, AttributeError):
            hw = None  # a bad snapshot must not cost the node its liveness
        if hw is not None:
            onsets = thermal_onsets(self.last_hw.get(node.id), hw, now)
            if onsets:
                self.thermal_onsets.setdefault(node.id, []).extend([now] * onsets)
            self.last_hw[node.id] = hw
        policy = msg.get("policy")
        self.pending[node.id] = Beat(now, msg["state"][:32], hw,
                                     policy if isinstance(policy, dict) else None,
                                     SpokeReport.from_heartbeat(msg.get("overlay")))

    def goodbye(self, node: NodeRecord, msg: Message) -> None:
        """A clean stop: offline at the next tick, reason ``agent stopped``, no penalty.

        The goodbye is the last thing heard from the node, so SEEN and the reason's age
        both count from it."""
        now = self.clock()
        self.stopped[node.id] = now
        self.last_heard[node.id] = now
        beat = self.pending.get(node.id)
        self.pending[node.id] = replace(beat, at=now) if beat is not None else \
            Beat(now, node.agent_state or "available", None, None)
        log.info("node %s: agent stopped (%s)", node.name, str(msg["reason"])[:80])

    def link_closed(self, node: NodeRecord, link: AgentLink) -> None:
        links = self.links.get(node.id)
        if links is None:
            return
        links.discard(link)
        sender = self.senders.get(node.id)
        if sender is not None and sender[0] is link:
            del self.senders[node.id]
        if not links:
            del self.links[node.id]
            with contextlib.suppress(GpuhiveError):
                self.registry.set_connection(node.id, connected_since=None, public_addr="",
                                             now=self.clock(), event="disconnected")
            self.sent_direct.pop(node.id, None)
            self._forget_spoke(node.id)

    def _forget_spoke(self, node_id: str) -> None:
        """Drop a disconnected node's spoke report: what comes back may be a fresh agent
        with no direct peers yet, and its old report must not read as direct meanwhile."""
        self.spoke_status.pop(node_id, None)
        beat = self.pending.get(node_id)
        if beat is not None:
            self.pending[node_id] = replace(beat, overlay=None)
        with contextlib.suppress(GpuhiveError):
            current = self.registry.overlay_of(node_id)
            if current is not None and current.status is not None:
                self.registry.set_facts(node_id,
                                        overlay=fact_codec.replace(current, status=None))

    # ---- controller side --------------------------------------------------------------

    def flush(self) -> None:
        batch, self.pending = self.pending, {}
        self.registry.save_heartbeats((nid, b.at, b.state, b.hardware, b.policy)
                                      for nid, b in batch.items())
        # a spoke's report rarely changes: compare in memory, touch the registry only on change
        changed = [(nid, b.overlay) for nid, b in batch.items()
                   if b.overlay is not None and self.spoke_status.get(nid) != b.overlay]
        if changed:
            rows: list[tuple[str, dict[str, object]]] = []
            for nid, status in changed:
                with contextlib.suppress(GpuhiveError):
                    current = self.registry.overlay_of(nid) or OverlayFacts()
                    rows.append((nid, {"overlay": fact_codec.replace(current, status=status)}))
                    self.spoke_status[nid] = status
            if rows:
                self.registry.set_facts_many(rows)
        onsets, self.thermal_onsets = self.thermal_onsets, {}
        if onsets:
            now = self.clock()
            rows = []
            for nid, times in onsets.items():
                with contextlib.suppress(GpuhiveError):
                    node = self.registry.get_node(nid)
                    rows.append((nid, {"thermal_events": prune_thermal(
                        [*node.thermal_events, *times], now)}))
            self.registry.set_facts_many(rows)

    def disconnect(self, node_id: str) -> int:
        """Close every connection of a node (its forward goes with it)."""
        links = self.links.pop(node_id, set())
        self.senders.pop(node_id, None)
        self.sent_direct.pop(node_id, None)
        for link in links:
            link.close()
        self.last_heard.pop(node_id, None)
        self.pending.pop(node_id, None)
        self.stopped.pop(node_id, None)
        self.spoke_status.pop(node_id, None)
        return len(links)

    def connected(self, node_id: str) -> bool:
        return bool(self.links.get(node_id))

    async def push_direct(self) -> int:
        """Send each connected agent its direct-path candidates when they changed.

        Called every ``DIRECT_PUSH_S`` (a new link has no list, so it gets one on the next
        call): a friend's public or LAN address can change at any time, and so can who else
        is online. Returns messages sent.
        """
        if self.hub is None or not self.senders:
            return 0
        nodes = self.registry.list_nodes()
        plan = await self.hub.direct_plan(nodes)
        names = {n.id: n.name for n in nodes}
        sent = 0
        for node_id, (_conn, send) in list(self.senders.items()):
            direct = [to_wire(c) for c in plan.get(names.get(node_id, ""), [])]
            if self.sent_direct.get(node_id) != direct:
                send("peers", direct=direct)
                self.sent_direct[node_id] = direct
                sent += 1
        return sent


def _overlay_request(request: Message) -> OverlayFacts | None:
    """The WireGuard facts an enroll request carries (None from an agent without them)."""
    key = request.get("wg_public_key")
    if not key or not is_valid_key(key):
        return None
    # the three are stored together, a missing port as null, as they always have been
    return OverlayFacts.from_dict({"wg_public_key": key,
                                   "lan": str(request.get("lan_address") or "")[:64],
                                   "listen_port": request.get("wg_listen_port")})
