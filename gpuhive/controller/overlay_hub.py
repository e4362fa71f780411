"""The controller's end of the WireGuard overlay: the hub interface and its peer list.

Every enrolled node with a WireGuard key is a peer with its overlay /32; the hub forwards
between spokes. Peers change live (``wg set`` through ``overlay.driver.apply_peers``),
never by restarting the interface. The wg/ip commands block, so they run in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from gpuhive.config import Settings
from gpuhive.controller.registry import Registry
from gpuhive.overlay import config as wg_config
from gpuhive.overlay import driver, keys
from gpuhive.overlay.addressing import hub_address

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

    def welcome_for(self, overlay: dict[str, Any]) -> dict[str, Any] | None:
        """What a node needs to bring its spoke up (None when it has no address)."""
        if self.device is None or not overlay.get("ip"):
            return None
        return {"ip": overlay["ip"], "subnet": self.settings.overlay_subnet,
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
        spokes = [(n.overlay["wg_public_key"], n.overlay["ip"]) for n in self.registry.list_nodes()
                  if n.overlay.get("wg_public_key") and n.overlay.get("ip")]
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

    async def status(self) -> dict[str, Any]:
        if self.device is None:
            return {"up": False, "iface": self.iface, "peers": []}
        peers = await asyncio.to_thread(driver.status, self.iface)
        by_key = {n.overlay.get("wg_public_key"): n for n in self.registry.list_nodes()}
        out = []
        for p in peers:
            node = by_key.get(p.public_key)
            out.append({"node": node.name if node else "?", "public_key": p.public_key,
                        "overlay_ip": node.overlay.get("ip") if node else None,
                        "endpoint": p.endpoint, "latest_handshake": p.latest_handshake,
                        "rx_bytes": p.rx_bytes, "tx_bytes": p.tx_bytes,
                        "spoke": (node.overlay.get("status") or {}) if node else {}})
        return {"up": True, "iface": self.iface, "kind": self.device.kind,
                "hub_ip": hub_address(self.settings.overlay_subnet),
                "port": self.settings.overlay_port, "public_key": self.public_key,
                "peers": out}

    async def stop(self) -> None:
        if self.device is not None:
            await asyncio.to_thread(driver.bring_down, self.iface, pid=self.device.pid)
            self.device = None
