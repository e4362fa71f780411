"""The controller's HTTP app: dashboard at /, JSON at /api/*, Prometheus at /metrics.

Bound to loopback by default. With ``admin_token`` set, everything here except /health
needs ``Authorization: Bearer <token>`` (or ``?token=`` for a browser's first load, which
then sets a cookie). Routers of other parts (the OpenAI gateway) are included by the daemon.
"""

from __future__ import annotations

import hmac
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gpuhive.controller.service import HiveService
from gpuhive.controller.web.metrics import Metrics

PUBLIC_PREFIXES = ("/health", "/v1/")  # the gateway has its own API keys


def create_app(service: HiveService, metrics: Metrics, *, admin_token: str = "",
               base: FastAPI | None = None) -> FastAPI:
    """``base``: the OpenAI gateway's app; the dashboard and metrics join its routes."""
    app = base or FastAPI(title="gpuhive controller", docs_url=None, redoc_url=None)
    page = resources.files("gpuhive").joinpath("templates/dashboard.html").read_text()

    if admin_token:
        @app.middleware("http")
        async def require_token(request: Request, call_next: Any) -> Any:
            path = request.url.path
            if any(path.startswith(p) for p in PUBLIC_PREFIXES):
                return await call_next(request)
            given = (request.headers.get("authorization", "").removeprefix("Bearer ").strip()
                     or request.query_params.get("token", "")
                     or request.cookies.get("gpuhive_admin", ""))
            if not hmac.compare_digest(given.encode(), admin_token.encode()):
                return JSONResponse({"error": {"message": "admin token required",
                                               "type": "unauthorized"}}, status_code=401)
            response = await call_next(request)
            if request.query_params.get("token"):
                response.set_cookie("gpuhive_admin", admin_token, httponly=True,
                                    samesite="strict")
            return response

    if base is None:  # the gateway has its own /health
        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    async def dashboard() -> str:
        return page

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        return service.status()

    @app.get("/api/nodes")
    async def nodes() -> list[dict[str, Any]]:
        return service.nodes_list()

    @app.get("/api/events")
    async def events(limit: int = 50) -> list[dict[str, Any]]:
        return service.recent_events(min(max(limit, 1), 500))

    @app.get("/api/overview")
    async def overview() -> dict[str, Any]:
        """Everything the dashboard and `gpuhive status` show, in one request."""
        return service.overview()

    return app
