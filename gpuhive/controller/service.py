"""What the owner can ask of the controller: the operations behind the admin API.

Each method returns plain JSON-able data and raises ``GpuhiveError`` for expected failures;
the admin server relays both to the CLI unchanged. Nodes are reached through
``transport.api.NodeSessions`` only (``gpuhive.testing.FakeNodes`` in tests); the parts it
tells about node changes (jobs, serving, the overlay hub) are the small protocols below.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from gpuhive import __version__
from gpuhive.config import Settings
from gpuhive.controller.hive import Hive
from gpuhive.controller.registry import Registry
from gpuhive.core import names, nodeview, remote_probe, tokens
from gpuhive.core import reliability as rel
from gpuhive.core.model import NodeKind, NodeRecord, NodeStatus
from gpuhive.core.spoke_state import Spoke
from gpuhive.errors import ConfigError, GpuhiveError, NodeNotFound, NodeUnreachable
from gpuhive.transport.address import parse_address
from gpuhive.transport.api import ExecResult, LineSink, NodeSessions
from gpuhive.transport.keys import PublicKeyInfo

SSH_POLL_FAILED = "ssh session failed"  # an ssh node's offline reason


class JobsView(Protocol):
    """What the service reads of the job supervisor (``controller.jobs``)."""

    def list_jobs(self) -> list[dict[str, Any]]: ...


class ServingView(Protocol):
    """What the service reads of, and tells, the serve manager (``controller.serving``)."""

    def list_replicas(self) -> list[dict[str, Any]]: ...

    async def node_gone(self, node: str) -> None: ...


class PeerSync(Protocol):
    """The overlay hub (``controller.overlay_hub``): its peers follow the registry."""

    async def sync(self) -> object: ...


class HiveService:
    """``host_key`` is the hive endpoint's key: join tokens pin its fingerprint. ``hub`` is
    None without the overlay. ``http_address`` says where the dashboard listens, asked at
    status time because the HTTP server starts after the service is built."""

    def __init__(self, registry: Registry, hive: Hive, nodes: NodeSessions,
                 settings: Settings, host_key: PublicKeyInfo,
                 clock: Callable[[], float] = time.time, *, jobs: JobsView | None = None,
                 serving: ServingView | None = None, hub: PeerSync | None = None,
                 http_address: Callable[[], str] = lambda: "") -> None:
        self.registry = registry
        self.hive = hive
        self.nodes = nodes
        self.settings = settings
        self.host_key = host_key
        self.clock = clock
        self.started_at = clock()
        self.http_address = http_address
        self.jobs = jobs
        self.serving = serving
        self.hub = hub

    # ---- status -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        nodes = self.registry.list_nodes()
        counts: dict[str, int] = {}
        for n in nodes:
            counts[n.status.value] = counts.get(n.status.value, 0) + 1
        return {"version": __version__, "pid": os.getpid(), "started_at": self.started_at,
                "endpoint": self.endpoint(), "listen": f"{self.settings.listen_host}:"
                f"{self.settings.listen_port}",
                "host_key_fingerprint": self.host_key.fingerprint, "nodes": counts,
                "connected": len(self.hive.links),
                "heartbeats_received": self.hive.heartbeats_received,
                "http": self.http_address()}

    def endpoint(self) -> str:
        if self.settings.endpoint:
            return self.settings.endpoint
        return f"{_primary_address()}:{self.settings.listen_port}"

    def recent_events(self, limit: int = 50) -> list[dict[str, Any]]:
        return [{"node": name, **e.to_dict()} for name, e in self.registry.recent_events(limit)]

    def overview(self) -> dict[str, Any]:
        jobs = self.jobs.list_jobs()[:20] if self.jobs is not None else []
        replicas = self.serving.list_replicas() if self.serving is not None else []
        return {"status": self.status(), "nodes": self.nodes_list(),
                "events": self.recent_events(30), "jobs": jobs, "replicas": replicas}

    # ---- invites ----------------------------------------------------------------------

    def invite_create(self, name: str, ttl: str, uses: int) -> dict[str, Any]:
        try:
            ttl_s = tokens.parse_duration(ttl)
        except ValueError as exc:
            raise ConfigError(str(exc), hint="e.g. --ttl 24h", key="ttl") from exc
        if not 1 <= uses <= 10_000:
            raise ConfigError(f"--uses {uses} is out of range", hint="use 1 to 10000",
                              key="uses")
        rec, secret = self.registry.create_token(name, ttl_s, uses, self.clock())
        host, port = tokens.split_endpoint(self.endpoint())
        token = tokens.JoinToken(rec.token_id, secret, host, port,
                                 self.host_key.fingerprint).encode()
        name_flag = f" --name {name}" if name else ""
        return {**_token_view(rec, self.clock()), "token": token,
                "command": f"gpuhive enroll {token}{name_flag}"}

    def invite_list(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [_token_view(r, now) for r in self.registry.list_tokens()]

    def invite_revoke(self, token: str = "", token_id: str = "") -> dict[str, Any]:
        """Revoke a join token by its id or by its name (the one valid token of that name).
        ``token_id`` is the 0.1.0 name of the parameter."""
        now = self.clock()
        rec = names.pick_token(self.registry.list_tokens(), token or token_id, now)
        return _token_view(self.registry.revoke_token(rec.token_id, now), now)

    # ---- nodes ------------------------------------------------------------------------

    def nodes_list(self, include_removed: bool = False) -> list[dict[str, Any]]:
        return [self._view(n) for n in self.registry.list_nodes(include_removed=include_removed)]

    def node_show(self, name: str) -> dict[str, Any]:
        node = self.registry.get_node(name, include_removed=True)
        view = self._view(node)
        view["events"] = [e.to_dict() for e in self.registry.events(node.id)]
        return view

    def _view(self, node: NodeRecord) -> dict[str, Any]:
        view = node.to_dict()
        now = self.clock()
        view["reliability_score"] = round(rel.score_at(nodeview.reliability_of(node), now), 3)
        view["reason"] = nodeview.status_reason(node, now)
        view["connected"] = self.hive.connected(node.id) if node.kind == NodeKind.AGENT \
            else node.status == NodeStatus.ONLINE
        view["overlay_state"] = Spoke.of(node.overlay).to_dict(overlay_on=self.hub is not None)
        return view

    async def node_remove(self, name: str) -> dict[str, Any]:
        node = self.registry.get_node(name)
        removed = self.registry.remove_node(node.id, self.clock())
        closed = self.hive.disconnect(node.id)
        await self.nodes.close(node.id)
        if self.hub is not None:
            await self.hub.sync()  # its WireGuard peer goes too: its packets are dropped
        if self.serving is not None:
            await self.serving.node_gone(node.name)
        return {**removed.to_dict(), "closed_links": closed}

    async def nodes_exec(self, target: str, argv: list[str], sink: LineSink, *,
                         fresh: bool = False) -> list[dict[str, Any]]:
        if not argv:
            raise ConfigError("no command given", hint="gpuhive nodes exec all -- uname -a")
        live = self.registry.select(target)
        if not live:
            raise NodeNotFound("the hive has no nodes yet",
                               hint="invite one with `gpuhive invite`")
        if fresh:
            await asyncio.gather(*(self.nodes.close(n.id) for n in live))
        results: list[ExecResult] = await asyncio.gather(
            *(self.nodes.run(n, argv, sink) for n in live))
        return [{"node": r.node, "exit_status": r.exit_status, "error": r.error}
                for r in results]

    async def node_add(self, address: str, name: str) -> dict[str, Any]:
        try:
            addr = parse_address(address)
        except ValueError as exc:
            raise ConfigError(str(exc), hint="use user@host[:port]", key="address") from exc
        # a closed port, a refused key, a silent host: each its own message (ssh_login)
        host = await self.nodes.inspect_host(addr.user, addr.host, addr.port,
                                             remote_probe.PROBE_COMMAND)
        if host.probe_exit != 0:
            raise NodeUnreachable(f"probe on {addr} failed: {host.probe_error}",
                                  hint="the node needs a POSIX shell", address=str(addr))
        hardware = remote_probe.parse_probe(host.probe_output)
        node = self.registry.add_ssh_node(
            name=name or hardware.hostname or addr.host, address=str(addr),
            host_key=host.host_key, hostname=hardware.hostname,
            hardware=hardware, now=self.clock())
        return {**self._view(node), "host_key_fingerprint": host.fingerprint}

    async def poll_ssh_nodes(self) -> list[tuple[str, bool]]:
        """An ssh node's liveness is whether a trivial command still runs there (within
        ``connect_timeout``): online if it does, offline with reason ``ssh session failed``
        if not. Returns (node id, ok) per ssh node."""
        nodes = self.registry.list_by_kind(NodeKind.SSH)

        async def one(n: NodeRecord) -> tuple[str, bool]:
            try:
                res = await asyncio.wait_for(self.nodes.run(n, ["true"], lambda *a: None),
                                             self.settings.connect_timeout)
            except (asyncio.TimeoutError, GpuhiveError):
                return n.id, False
            return n.id, res.exit_status == 0

        results = list(await asyncio.gather(*(one(n) for n in nodes)))
        now = self.clock()
        for node_id, ok in results:
            # read again: the node may have been removed while the poll ran
            node = self.registry.get_node(node_id, include_removed=True)
            new = NodeStatus.ONLINE if ok else NodeStatus.OFFLINE
            if node.status != new and node.removed_at is None:
                self.registry.set_status(node_id, new, "" if ok else SSH_POLL_FAILED, now)
        return results


def _token_view(rec: tokens.TokenRecord, now: float) -> dict[str, Any]:
    return {"id": rec.token_id, "name": rec.name, "state": rec.state(now),
            "created_at": rec.created_at, "expires_at": rec.expires_at, "uses": rec.uses,
            "max_uses": rec.max_uses, "revoked_at": rec.revoked_at}


def _primary_address() -> str:
    """The address this machine uses for its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"
