"""The agent's end of the overlay: one spoke interface, the hub its first peer.

Brought up when the controller's ``welcome`` carries an overlay config. Without root or
CAP_NET_ADMIN it cannot be: the agent says so once, plainly, reports it in every heartbeat,
and everything else (heartbeats, exec, serving) keeps working over SSH.

Direct paths: the controller pushes ``peers`` (the other spokes this one may reach
without the hub, ``overlay.direct``); a loop here tries each one every ``DIRECT_TICK_S``
(``overlay.spoke.DirectPaths``) and the heartbeat reports which are direct.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from pathlib import Path
from typing import Any

from gpuhive.config import Settings
from gpuhive.errors import GpuhiveError
from gpuhive.overlay import config as wg_config
from gpuhive.overlay import direct, driver, keys
from gpuhive.overlay.paths import Action
from gpuhive.overlay.spoke import DirectPaths

log = logging.getLogger(__name__)
KEY_FILE = "wg_key"
DIRECT_TICK_S = 2.0  # how often the direct-path loop reads `wg show` and acts
MAX_CANDIDATES = 256


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
        self.lan: str | None = None
        self.hub: wg_config.Peer | None = None
        self.paths = DirectPaths(self.iface)
        self.candidates: list[direct.DirectCandidate] = []
        self._wake = asyncio.Event()
        self._loop: asyncio.Future[None] | None = None
        self._loop_error = ""

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
            self.hub = hub
            with contextlib.suppress(OSError, GpuhiveError):
                self.lan = await asyncio.to_thread(driver.local_address_towards,
                                                   self.controller_host)
        except (GpuhiveError, KeyError, OSError) as exc:
            message = getattr(exc, "message", str(exc))
            if message != self.error:
                log.error("overlay: cannot bring up %s: %s — everything else keeps working "
                          "without the overlay", self.iface, message)
            self.error = message
            return
        self.config, self.error, self.since = cfg, "", time.time()
        self.paths = DirectPaths(self.iface)  # a fresh interface has no direct peers yet
        if self._loop is None or self._loop.done():
            self._loop = asyncio.ensure_future(self._direct_loop())
        log.info("overlay spoke %s up as %s (%s)", self.iface, cfg["ip"], self.device.kind)

    def set_direct(self, items: list[object]) -> None:
        """The controller's current direct candidates for this node (``peers`` message)."""
        out = []
        for item in items[:MAX_CANDIDATES]:
            try:
                out.append(direct.from_wire("", item))
            except ValueError as exc:
                log.warning("overlay: ignoring a direct candidate: %s", exc)
        self.candidates = out
        self._wake.set()

    async def _direct_loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), DIRECT_TICK_S)
            self._wake.clear()
            if self.device is None or self.hub is None:
                continue
            if not self.candidates and not self.paths.candidates:
                continue
            try:
                actions = await asyncio.to_thread(self.paths.tick, self.hub, self.candidates,
                                                  time.time(), random.random())
            except Exception as exc:  # keep trying: the hub carries everything meanwhile
                message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                if message != self._loop_error:
                    log.warning("overlay: direct paths: %s (traffic stays on the hub)", message)
                self._loop_error = message
                continue
            self._loop_error = ""
            names = {c.peer_public_key: c.peer for c in self.candidates}
            for pub, action in actions.items():
                if action is not Action.NONE:
                    log.info("overlay: direct path to %s: %s", names.get(pub, pub[:8]),
                             action.value)

    def report(self) -> dict[str, Any]:
        """Sent in heartbeats: whether jobs can use the overlay on this node."""
        return {"up": self.device is not None, "iface": self.iface, "error": self.error,
                "ip": (self.config or {}).get("ip"), "since": self.since, "lan": self.lan,
                "endpoint": self.settings.overlay_endpoint or None,
                "paths": self.paths.summary()}

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop
            self._loop = None
        if self.device is not None:
            device, self.device = self.device, None
            await asyncio.to_thread(driver.bring_down, device.name, pid=device.pid)
