"""The controller daemon: hive SSH endpoint, registry, liveness tracking, admin API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable

from fastapi import FastAPI

from gpuhive.config import Settings
from gpuhive.controller.admin import start_admin_server
from gpuhive.controller.hive import Hive
from gpuhive.controller.home import ControllerHome
from gpuhive.controller.jobs import JobSupervisor
from gpuhive.controller.node_ops import NodeOps
from gpuhive.controller.overlay_hub import OverlayHub
from gpuhive.controller.overlay_ops import OverlayOps
from gpuhive.controller.registry import Registry
from gpuhive.controller.service import HiveService
from gpuhive.controller.serving import ServeManager
from gpuhive.controller.tracker import Tracker
from gpuhive.controller.web.app import create_app
from gpuhive.controller.web.metrics import HiveCollector, Metrics
from gpuhive.controller.web.server import HttpServer, start_http
from gpuhive.controller.web.work_metrics import GatewayCollector, JobsCollector
from gpuhive.errors import GpuhiveError, StateError
from gpuhive.serve.gateway.apikeys import ApiKeyStore
from gpuhive.serve.gateway.app import Gateway
from gpuhive.serve.gateway.app import create_app as create_gateway_app
from gpuhive.serve.gateway.pool import ReplicaPool
from gpuhive.serve.gateway.routing import ReplicaHealth
from gpuhive.transport import keys
from gpuhive.transport.hive_server import HiveEndpoint, start_hive_server
from gpuhive.transport.node_conn import NodeConnections

log = logging.getLogger(__name__)
# how often agents are sent their changed direct-path candidates (overlay)
DIRECT_PUSH_S = 2.0


class Controller:
    def __init__(self, home: ControllerHome, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self.home = home.require()
        self.settings = settings
        self.clock = clock
        # the composition root: every part is built here, in dependency order, from
        # constructor arguments; start() only starts what is built, nothing is attached later
        self.registry = Registry(home.registry)
        self.host_key = keys.load_key(home.host_key)
        self.client_key = keys.load_key(home.client_key)
        # None is what every part reads as "no overlay"; until start() brings the device up
        # the hub answers as down (no welcome, no peers), as no hub did before
        self.hub = (OverlayHub(settings, self.registry, self.home.root / "wg_hub_key")
                    if settings.overlay else None)
        self.hive = Hive(self.registry, settings, keys.public_text(self.client_key), clock,
                         hub=self.hub)
        self.nodes = NodeConnections(self.client_key, connect_timeout=settings.connect_timeout)
        self.ops = NodeOps(self.registry, self.nodes, settings, clock)
        self.overlay = OverlayOps(self.registry, self.nodes, self.hub)
        self.tracker = Tracker(self.registry, self.hive, settings)
        self.jobs = JobSupervisor(self.registry, self.nodes, self.ops, home.root / "jobs", clock)
        replica_health: dict[str, ReplicaHealth] = {}  # the gateway writes, `serve ls` reads
        self.serving = ServeManager(self.registry, self.nodes, self.ops, settings, home.root,
                                    clock, health=replica_health)
        self.apikeys = ApiKeyStore(home.root / "apikeys.db")
        self.pool = ReplicaPool(self.serving, health=replica_health)
        self.gateway = Gateway(self.pool, keys=self.apikeys)
        self.http: HttpServer | None = None
        self.service = HiveService(self.registry, self.hive, self.nodes, settings,
                                   keys.describe(self.host_key), clock, jobs=self.jobs,
                                   serving=self.serving, hub=self.hub,
                                   http_address=self._http_address)
        self._tasks: list[asyncio.Task[None]] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._endpoint: HiveEndpoint | None = None
        self.metrics = Metrics()
        self.port = 0

    def _http_address(self) -> str:
        return self.http.address if self.http is not None else ""

    async def start(self) -> None:
        try:
            self._endpoint = await start_hive_server(
                self.hive, self.settings.listen_host, self.settings.listen_port, self.host_key,
                keepalive_interval=self.settings.keepalive_interval)
        except OSError as exc:
            raise StateError(f"cannot listen on {self.settings.listen_host}:"
                             f"{self.settings.listen_port}: {exc.strerror or exc}",
                             hint="another controller may be running; stop it or set "
                                  "listen_port") from exc
        self.port = self._endpoint.port
        if self.hub is not None:
            try:
                await self.hub.start()
            except GpuhiveError as exc:
                await self._endpoint.close()
                raise StateError(f"cannot bring up the overlay hub: {exc.message}",
                                 hint=exc.hint or "run the controller as root (or with "
                                 "CAP_NET_ADMIN), or start it without --overlay") from exc
        self._servers.append(await start_admin_server(
            self.service, self.ops, self.jobs, self.overlay, self.serving, self.apikeys,
            self.home.admin_socket))
        self.metrics.register(HiveCollector(self.registry, self.hive, self.clock))
        self.metrics.register(JobsCollector(self.jobs.store, self.clock))
        self.metrics.register(GatewayCollector(self.gateway.metrics,
                                               lambda: set(self.serving.deployments)))
        self.http = await start_http(self.app(), self.settings.http_host,
                                     self.settings.http_port)
        self.jobs.resume()  # the queue a previous controller left
        self._tasks.append(asyncio.ensure_future(self._track()))
        self.home.pid_file.write_text(f"{os.getpid()}\n")
        log.info("controller up: hive endpoint %s:%s, admin %s", self.settings.listen_host,
                 self.port, self.home.admin_socket)

    async def _track(self) -> None:
        """Flush heartbeats and move nodes between online/degraded/offline."""
        tick = min(1.0, self.settings.heartbeat_interval / 4)
        last_ssh_poll = last_direct = 0.0
        while True:
            await asyncio.sleep(tick)
            try:
                now = self.clock()
                self.tracker.tick(now)
                if self.serving.deployments:
                    await self.serving.respect_owners()
                if self.hub is not None and now - last_direct >= DIRECT_PUSH_S:
                    last_direct = now
                    try:
                        await self.hive.push_direct()
                    except Exception:  # direct paths are an optimisation: never stop liveness
                        log.exception("overlay: planning direct paths failed; all traffic "
                                      "stays on the hub until it works again")
                if now - last_ssh_poll >= self.settings.heartbeat_interval:
                    last_ssh_poll = now
                    self.jobs.reconcile()
                    self.serving.reconcile()
                    self._tasks.append(asyncio.ensure_future(self._poll_ssh(now)))
                    self._tasks = [t for t in self._tasks if not t.done()]
            except GpuhiveError as exc:
                log.error("tracker: %s", exc)

    async def _poll_ssh(self, now: float) -> None:
        await self.service.poll_ssh_nodes()  # it stores each ssh node's status

    def app(self) -> FastAPI:
        return create_app(self.service, self.metrics, admin_token=self.settings.admin_token,
                          base=create_gateway_app(self.gateway))

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.stop()
        await self.jobs.stop()
        await self.serving.stop_all()
        with contextlib.suppress(Exception):
            await self.gateway.aclose()
        if self.hub is not None:
            with contextlib.suppress(GpuhiveError):
                await self.hub.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for server in self._servers:
            server.close()
        await self.nodes.close_all()
        if self._endpoint is not None:
            await self._endpoint.close()
        with contextlib.suppress(GpuhiveError):
            self.hive.flush()
        self.registry.close()
        for path in (self.home.admin_socket, self.home.pid_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


async def serve(home: ControllerHome, settings: Settings,
                ready: Callable[[Controller], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM."""
    ctl = Controller(home, settings)
    await ctl.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready:
        ready(ctl)
    try:
        await stop.wait()
    finally:
        await ctl.stop()
