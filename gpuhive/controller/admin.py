"""The admin API: JSON lines over a unix socket (0600) in $GPUHIVE_HOME.

Request: one line ``{"method": "...", "params": {...}}``, decoded through the contract
(`admin_api`, `admin_codec`) into a typed request for the handler bound to it
(`admin_handlers`). Reply: zero or more event lines ``{"event": ...}`` (for the methods that
declare events: `nodes exec` output, job logs, overlay check progress), then one final line
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {code, message, hint, data}}``.
File permissions are the authentication: only the owner's user can connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any

from gpuhive.controller import admin_api as api
from gpuhive.controller.admin_api import Emit, Handler
from gpuhive.controller.admin_codec import parse_line, too_long
from gpuhive.controller.admin_handlers import controller_handlers
from gpuhive.controller.jobs import JobSupervisor
from gpuhive.controller.node_ops import NodeOps
from gpuhive.controller.overlay_ops import OverlayOps
from gpuhive.controller.service import HiveService
from gpuhive.controller.serving import ServeManager
from gpuhive.errors import GpuhiveError
from gpuhive.serve.gateway.apikeys import ApiKeyStore

log = logging.getLogger(__name__)


class _HungUp(Exception):
    pass


async def _unless_hung_up(work: Awaitable[Any], reader: asyncio.StreamReader) -> Any:
    """Run ``work``; cancel it if the client closes its end (Ctrl-C on `nodes exec`)."""
    task = asyncio.ensure_future(work)
    eof = asyncio.ensure_future(reader.read(1))
    try:
        done, _ = await asyncio.wait({task, eof}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise _HungUp
        return task.result()
    finally:
        eof.cancel()


async def start_admin_server(svc: HiveService, ops: NodeOps, jobs: JobSupervisor,
                             overlay: OverlayOps, serving: ServeManager, keys: ApiKeyStore,
                             path: Path) -> asyncio.AbstractServer:
    return await serve_admin(controller_handlers(svc, ops, jobs, overlay, serving, keys),
                             path)


def _no_events(method: str) -> Emit:
    def emit(_obj: dict[str, Any]) -> None:
        raise RuntimeError(f"{method} streams no events in the admin contract")
    return emit


async def serve_admin(handlers: Mapping[str, Handler], path: Path) -> asyncio.AbstractServer:
    """Answer admin requests on a unix socket at ``path`` (0600) with ``handlers``: each
    line decoded through the contract (a `BadRequest` before any handler runs otherwise)."""
    kinds = {name: h.kind for name, h in handlers.items()}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def emit(obj: dict[str, Any]) -> None:
            if not writer.is_closing():
                writer.write(json.dumps(obj).encode() + b"\n")

        method = "?"
        try:
            try:
                line = await reader.readline()
            except ValueError as exc:  # the stream's limit: no newline within MAX_REQUEST
                raise too_long() from exc
            req = parse_line(line, kinds)
            method = req.method
            events = emit if req.streams() else _no_events(method)
            result = await _unless_hung_up(handlers[method].fn(req, events), reader)
            emit({"ok": True, "result": result})
        except _HungUp:
            log.info("admin client went away; cancelled %s", method)
        except GpuhiveError as exc:
            emit({"ok": False, "error": exc.to_dict()})
        except Exception as exc:
            log.exception("admin request failed")
            emit({"ok": False, "error": {"code": "error", "message": f"controller error: {exc}",
                                         "hint": "see the controller log", "data": {}}})
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
                writer.close()

    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(handle, str(path), limit=api.MAX_REQUEST)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server
