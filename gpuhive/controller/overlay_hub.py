"""The controller's end of the WireGuard overlay: the hub interface and its peer list.

Every enrolled node with a WireGuard key is a peer with its overlay /32; the hub forwards
between spokes. Peers change live (``wg set`` through ``overlay.driver.apply_peers``),
never by restarting the interface. The wg/ip commands block, so they run in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gpuhive.config import Settings
from gpuhive.controller.registry import Registry
from gpuhive.core.endpoints import host_of
from gpuhive.core.model import NodeRecord
from gpuhive.core.node_facts import OverlayFacts
from gpuhive.errors import GpuhiveError
from gpuhive.overlay import config as wg_config
from gpuhive.overlay import driver, keys
from gpuhive.overlay.addressing import hub_address
from gpuhive.overlay.direct import DirectCandidate, NodeNet, pair_routes, plan_direct
from gpuhive.overlay.paths import pair_modes

log = logging.getLogger(__name__)


class OverlayHub:
    def __init__(self, settings: Settings, registry: Registry, key_path: Path) -> None:
        self.settings = settings
        self.registry = registry
        self.key_path = key_path
        self.keypair = keys.load_or_create(key_path)
        self.iface = settings.overlay_iface
        self.device: driver.Device | None = None
        self._lock = asyncio.Lock()

    @property
    def public_key(self) -> str:
        return self.keypair.public_key

    def welcome_for(self, overlay: OverlayFacts) -> dict[str, Any] | None:
        """What a node needs to bring its spoke up (None when it has no address)."""
        if self.device is None or not overlay.ip:
            return None
        return {"ip": overlay.ip, "subnet": self.settings.overlay_subnet,
                "mtu": self.settings.overlay_mtu, "hub_public_key": self.public_key,
                "hub_port": self.settings.overlay_port,
                "hub_ip": hub_address(self.settings.overlay_subnet)}

    async def start(self) -> None:
        iface = wg_config.hub_interface(self.iface, str(self.key_path),
                                        self.settings.overlay_subnet,
                                        listen_port=self.settings.overlay_port,
                                        mtu=self.settings.overlay_mtu)
        self.device = await asyncio.to_thread(
            driver.bring_up, iface, subnet=self.settings.overlay_subnet, hub=True,
            log_path=self.key_path.parent / "wireguard-hub.log")
        await self.sync()
        log.info("overlay hub %s up at %s (%s), port %s", self.iface,
                 hub_address(self.settings.overlay_subnet), self.device.kind,
                 self.settings.overlay_port)

    def desired(self) -> list[wg_config.Peer]:
        spokes = [(ov.wg_public_key, ov.ip) for n in self.registry.list_nodes()
                  if (ov := n.overlay) is not None and ov.wg_public_key and ov.ip]
        return wg_config.hub_peers(spokes)

    async def sync(self) -> list[list[str]]:
        """Make the hub's peers match the registry (after enroll and removal)."""
        if self.device is None:
            return []
        async with self._lock:
            cmds = await asyncio.to_thread(driver.apply_peers, self.iface, self.desired())
        if cmds:
            log.info("overlay hub: applied %d peer change(s)", len(cmds))
        return cmds

    async def direct_plan(self, nodes: Iterable[NodeRecord]) -> dict[str, list[DirectCandidate]]:
        """Node name → the direct peers it should try (``overlay.direct`` decides)."""
        observed: dict[str, str] = {}
        if self.settings.overlay_punch and self.device is not None:
            with contextlib.suppress(GpuhiveError, OSError):
                observed = {p.public_key: p.endpoint
                            for p in await asyncio.to_thread(driver.status, self.iface)
                            if p.endpoint}
        nets = [net for n in nodes if (net := node_net(n, observed)) is not None]
        return plan_direct(nets, punch=self.settings.overlay_punch)

    async def status(self) -> dict[str, Any]:
        if self.device is None:
            return {"up": False, "iface": self.iface, "peers": []}
        peers = await asyncio.to_thread(driver.status, self.iface)
        by_key = {n.overlay.wg_public_key: (n, n.overlay) for n in self.registry.list_nodes()
                  if n.overlay is not None}
        out = []
        for p in peers:
            node, ov = by_key.get(p.public_key) or (None, None)
            out.append({"node": node.name if node else "?", "public_key": p.public_key,
                        "overlay_ip": ov.ip if ov else None,
                        "endpoint": p.endpoint, "latest_handshake": p.latest_handshake,
                        "rx_bytes": p.rx_bytes, "tx_bytes": p.tx_bytes,
                        "spoke": ov.status.to_dict() if ov and ov.status else {}})
        return {"up": True, "iface": self.iface, "kind": self.device.kind,
                "hub_ip": hub_address(self.settings.overlay_subnet),
                "port": self.settings.overlay_port, "public_key": self.public_key,
                "peers": out, "pairs": self.pairs()}

    def pairs(self) -> list[dict[str, Any]]:
        """Every pair of spokes: how their traffic goes now, and why it could go direct."""
        nodes = [n for n in self.registry.list_nodes() if n.overlay and n.overlay.ip]
        nets = [net for n in nodes if (net := node_net(n, {})) is not None]
        routes = pair_routes(nets, punch=self.settings.overlay_punch)
        reports = {n.name: dict(n.overlay.status.paths)
                   if n.overlay and n.overlay.status else {} for n in nodes}
        modes = pair_modes([n.name for n in nodes], reports)
        live = {net.node for net in nets}  # a gone node has no paths, whatever it last said
        return [{"a": a, "b": b, "mode": mode if {a, b} <= live else "hub",
                 "direct_by": routes.get((a, b), "hub")}
                for (a, b), mode in sorted(modes.items())]

    async def stop(self) -> None:
        if self.device is not None:
            await asyncio.to_thread(driver.bring_down, self.iface, pid=self.device.pid)
            self.device = None


def node_net(node: NodeRecord, observed: dict[str, str]) -> NodeNet | None:
    """What the direct-path plan needs of a node; None unless its spoke is up and connected."""
    ov = node.overlay
    status = ov.status if ov is not None else None
    if ov is None or status is None:
        return None
    key, ip = ov.wg_public_key, ov.ip
    if not key or not ip or not status.up or not node.public_addr:
        return None
    return NodeNet(node.name, key, ip,
                   public_ip=host_of(node.public_addr),
                   lan_address=status.lan or ov.lan or None,
                   listen_port=ov.listen_port,
                   declared_endpoint=status.endpoint or None,
                   observed_endpoint=observed.get(key))
