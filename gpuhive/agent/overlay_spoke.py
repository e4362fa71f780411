"""The agent's end of the overlay: one spoke interface whose only peer is the hub.

Brought up when the controller's ``welcome`` carries an overlay config. Without root or
CAP_NET_ADMIN it cannot be: the agent says so once, plainly, reports it in every heartbeat,
and everything else (heartbeats, exec, serving) keeps working over SSH.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from gpuhive.config import Settings
from gpuhive.errors import GpuhiveError
from gpuhive.overlay import config as wg_config
from gpuhive.overlay import driver, keys

log = logging.getLogger(__name__)
KEY_FILE = "wg_key"


def wireguard_identity(home: Path, controller_host: str, settings: Settings) -> dict[str, Any]:
    """What enroll sends about this node's WireGuard side (the private key stays here)."""
    pair = keys.load_or_create(home / KEY_FILE)
    try:
        lan = driver.local_address_towards(controller_host)
    except (OSError, GpuhiveError):
        lan = ""
    return {"wg_public_key": pair.public_key, "lan_address": lan,
            "wg_listen_port": settings.overlay_spoke_port}


class Spoke:
    def __init__(self, home: Path, settings: Settings, controller_host: str) -> None:
        self.key_path = home / KEY_FILE
        self.log_path = home / "wireguard.log"
        self.settings = settings
        self.controller_host = controller_host
        self.iface = settings.overlay_iface
        self.config: dict[str, Any] | None = None
        self.device: driver.Device | None = None
        self.error = ""
        self.since: float | None = None

    async def ensure(self, cfg: dict[str, Any]) -> None:
        """Bring the spoke up for ``cfg`` (from welcome); a no-op when already so."""
        if self.device is not None and cfg == self.config:
            return
        try:
            keys.load_or_create(self.key_path)
            iface = wg_config.spoke_interface(self.iface, str(self.key_path), cfg["ip"],
                                              cfg["subnet"],
                                              listen_port=self.settings.overlay_spoke_port,
                                              mtu=int(cfg.get("mtu") or self.settings.overlay_mtu))
            hub = wg_config.spoke_hub_peer(cfg["hub_public_key"],
                                           f"{self.controller_host}:{cfg['hub_port']}",
                                           cfg["subnet"])
            self.device = await asyncio.to_thread(driver.bring_up, iface, subnet=cfg["subnet"],
                                                  log_path=self.log_path)
            await asyncio.to_thread(driver.apply_peers, self.iface, [hub])
        except (GpuhiveError, KeyError, OSError) as exc:
            message = getattr(exc, "message", str(exc))
            if message != self.error:
                log.error("overlay: cannot bring up %s: %s — everything else keeps working "
                          "without the overlay", self.iface, message)
            self.error = message
            return
        self.config, self.error, self.since = cfg, "", time.time()
        log.info("overlay spoke %s up as %s (%s)", self.iface, cfg["ip"], self.device.kind)

    def report(self) -> dict[str, Any]:
        """Sent in heartbeats: whether jobs can use the overlay on this node."""
        return {"up": self.device is not None, "iface": self.iface, "error": self.error,
                "ip": (self.config or {}).get("ip"), "since": self.since}

    async def stop(self) -> None:
        if self.device is not None:
            device, self.device = self.device, None
            await asyncio.to_thread(driver.bring_down, device.name, pid=device.pid)
