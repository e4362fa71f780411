"""The admin API: JSON lines over a unix socket (0600) in $GPUHIVE_HOME.

Request: one line ``{"method": "...", "params": {...}}``. Reply: zero or more event lines
``{"event": ...}`` (streamed output of `nodes exec`), then one final line
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {code, message, hint, data}}``.
File permissions are the authentication: only the owner's user can connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gpuhive.controller.jobs import JobSupervisor
from gpuhive.controller.node_ops import NodeOps
from gpuhive.controller.overlay_ops import OverlayOps
from gpuhive.controller.service import HiveService
from gpuhive.controller.serving import ServeManager
from gpuhive.errors import GpuhiveError
from gpuhive.serve.gateway.apikeys import ApiKeyStore

log = logging.getLogger(__name__)
MAX_REQUEST = 1024 * 1024

Emit = Callable[[dict[str, Any]], None]


def _methods(svc: HiveService, ops: NodeOps, jobs: JobSupervisor, overlay: OverlayOps,
             serving: ServeManager,
             keys: ApiKeyStore) -> dict[str, Callable[[dict[str, Any], Emit], Awaitable[Any]]]:
    async def exec_(p: dict[str, Any], emit: Emit) -> Any:
        def sink(node: str, stream: str, line: str) -> None:
            emit({"event": "line", "node": node, "stream": stream, "line": line})
        return await svc.nodes_exec(str(p["target"]), [str(a) for a in p["argv"]], sink,
                                    fresh=bool(p.get("fresh")))

    async def serve_start(model: str, replicas: int = 1, ctx: int | None = None,
                          wait: bool = True) -> Any:
        started = await serving.start(model, replicas, ctx)
        if wait:
            started["replicas"] = await serving.wait_ready(started["model"])
        return started

    def keys_create(name: str, models: list[str] | None = None, rpm: int | None = None,
                    tokens_per_day: int | None = None) -> Any:
        token, key = keys.create(name, now=time.time(), models=tuple(models or ("*",)),
                                 rpm=rpm, tokens_per_day=tokens_per_day)
        return {**key.to_dict(), "token": token}

    async def overlay_check(p: dict[str, Any], emit: Emit) -> Any:
        return await overlay.check(**p, progress=emit)

    async def logs(p: dict[str, Any], emit: Emit) -> Any:
        return await jobs.logs(str(p["job"]), bool(p.get("follow")), emit, tail=p.get("tail"),
                               node=p.get("node"), rank=p.get("rank"))

    def sync(fn: Callable[..., Any]) -> Callable[[dict[str, Any], Emit], Awaitable[Any]]:
        async def call(p: dict[str, Any], emit: Emit) -> Any:
            return fn(**p)
        return call

    def asyn(fn: Callable[..., Awaitable[Any]]) -> Callable[[dict[str, Any], Emit],
                                                           Awaitable[Any]]:
        async def call(p: dict[str, Any], emit: Emit) -> Any:
            return await fn(**p)
        return call

    return {
        "status": sync(svc.status),
        "overview": sync(svc.overview),
        "invite.create": sync(svc.invite_create),
        "invite.list": sync(svc.invite_list),
        "invite.revoke": sync(svc.invite_revoke),
        "nodes.list": sync(svc.nodes_list),
        "nodes.show": sync(svc.node_show),
        "nodes.remove": asyn(svc.node_remove),
        "nodes.add": asyn(svc.node_add),
        "nodes.exec": exec_,
        "nodes.rank": sync(ops.rank),
        "nodes.probe": asyn(ops.probe),
        "nodes.bench": asyn(ops.bench),
        "jobs.submit": sync(jobs.submit),
        "jobs.list": sync(jobs.list_jobs),
        "jobs.show": sync(jobs.show),
        "jobs.cancel": asyn(jobs.cancel),
        "jobs.logs": logs,
        "overlay.status": asyn(overlay.status),
        "overlay.check": overlay_check,
        "serve.start": asyn(serve_start),
        "serve.list": sync(serving.list_replicas),
        "serve.stop": asyn(serving.stop),
        "keys.create": sync(keys_create),
        "keys.list": sync(lambda: [k.to_dict() for k in keys.list(include_revoked=True)]),
        "keys.revoke": sync(lambda key: keys.revoke(key, now=time.time()).to_dict()),
    }


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
    methods = _methods(svc, ops, jobs, overlay, serving, keys)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def emit(obj: dict[str, Any]) -> None:
            if not writer.is_closing():
                writer.write(json.dumps(obj).encode() + b"\n")

        req: dict[str, Any] = {}
        try:
            line = await reader.readline()
            req = json.loads(line)
            method = methods[req["method"]]
            params = req.get("params") or {}
            if not isinstance(params, dict):
                raise TypeError("params must be an object")
            result = await _unless_hung_up(method(params, emit), reader)
            emit({"ok": True, "result": result})
        except _HungUp:
            log.info("admin client went away; cancelled %s", req.get("method"))
        except GpuhiveError as exc:
            emit({"ok": False, "error": exc.to_dict()})
        except (ValueError, KeyError, TypeError) as exc:
            emit({"ok": False, "error": {"code": "error", "message": f"bad admin request: "
                                         f"{exc!r}", "hint": "", "data": {}}})
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
        server = await asyncio.start_unix_server(handle, str(path), limit=MAX_REQUEST)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server
