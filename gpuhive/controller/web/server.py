"""Run the controller's FastAPI app with uvicorn inside the daemon's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from gpuhive.errors import StateError

log = logging.getLogger(__name__)


class _QuietServer(uvicorn.Server):
    """uvicorn takes over SIGINT/SIGTERM while it serves; the daemon owns those signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], sock: socket.socket):
        self.server = server
        self.task = task
        host, port = sock.getsockname()[:2]
        self.address = f"{host}:{port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self.task), 5)
        self.task.cancel()


async def start_http(app: FastAPI, host: str, port: int) -> HttpServer:
    # Bind ourselves so a busy port is a clear error now, not a log line later.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StateError(f"cannot listen for HTTP on {host}:{port}: {exc.strerror or exc}",
                         hint="set http_port in config.toml (or GPUHIVE_HTTP_PORT)",
                         key="http_port") from exc
    sock.listen(512)
    sock.setblocking(False)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                            timeout_graceful_shutdown=3)
    server = _QuietServer(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    return HttpServer(server, task, sock)
