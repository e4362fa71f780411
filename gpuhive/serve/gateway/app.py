"""The OpenAI-compatible gateway: FastAPI on uvicorn, in the controller process.

    POST /v1/chat/completions   POST /v1/completions   (stream true/false)
    POST /v1/embeddings         (models whose replicas run with embeddings on)
    GET  /v1/models             GET /health            GET /openapi.json

Each request: size cap → Bearer key → JSON → schema → model known → key scope → rate
limit → replicas (``routing``) → relay (``relay``: failover, streaming). Every refusal is
an OpenAI-style error object with the right status; nothing a client sends takes the
gateway down.

The gateway knows replicas only through its ``pool.ReplicaPool`` (the controller's
``ReplicaSource``, the passive view of each replica, the HTTP client), which it shares with
the relay; what is the gateway's own is keys, per-key limits and the HTTP app.

    pool = ReplicaPool(source, config=GatewayConfig(...))
    server = GatewayServer(Gateway(pool, keys=ApiKeyStore(path)), port=8088)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpuhive.serve.errors import (
    ApiError,
    BodyTooLarge,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
)
from gpuhive.serve.gateway.apikeys import ApiKey, ApiKeyStore
from gpuhive.serve.gateway.metrics import GatewayMetrics
from gpuhive.serve.gateway.pool import ReplicaPool
from gpuhive.serve.gateway.ratelimit import RateState, admit, charge_tokens
from gpuhive.serve.gateway.relay import Call, StreamRelay, complete
from gpuhive.serve.gateway.routing import ReplicaHealth
from gpuhive.serve.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_body,
)
from gpuhive.serve.gateway.upstream import dumps

log = logging.getLogger(__name__)

ROUTES: dict[str, tuple[str, Any]] = {
    "chat": ("/v1/chat/completions", ChatCompletionRequest),
    "completions": ("/v1/completions", CompletionRequest),
    "embeddings": ("/v1/embeddings", EmbeddingRequest),
}
OPENAI_COMPLETIONS_DEFAULT_MAX_TOKENS = 16
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Gateway:
    def __init__(self, pool: ReplicaPool, *, keys: ApiKeyStore | None) -> None:
        """``keys=None`` turns authentication off (a gateway on loopback for one user)."""
        self.pool = pool
        self.keys = keys
        self.cfg = pool.cfg
        self.clock = pool.clock
        self.rates: dict[str, RateState] = {}

    @property
    def metrics(self) -> GatewayMetrics:
        return self.pool.metrics

    @property
    def health(self) -> dict[str, ReplicaHealth]:
        """The pool's passive view of each replica, by replica id."""
        return self.pool.health

    async def aclose(self) -> None:
        await self.pool.aclose()

    # ---- keys and limits ----------------------------------------------------------------

    def authorize(self, header: str | None) -> ApiKey | None:
        if self.keys is None:
            return None
        token = None
        if header:
            scheme, _, value = header.partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
        return self.keys.authenticate(token)

    def admit(self, key: ApiKey | None) -> None:
        if key is None or (key.limits.rpm is None and key.limits.tokens_per_day is None):
            return
        decision = admit(self.rates.get(key.key_id, RateState()), key.limits, self.clock())
        self.rates[key.key_id] = decision.state
        if not decision.allowed:
            what = ("requests per minute" if decision.limit == "rpm" else "tokens per day")
            raise RateLimited(f"rate limit reached: {what} for this key",
                              retry_after_s=decision.retry_after_s,
                              api_code="tokens_per_day_exceeded"
                              if decision.limit == "tokens_per_day" else "rate_limit_exceeded",
                              hint="wait for Retry-After seconds", key=key.key_id)

    def charge(self, key: ApiKey | None, tokens: int) -> None:
        if key is None or key.limits.tokens_per_day is None:
            return
        self.rates[key.key_id] = charge_tokens(self.rates.get(key.key_id, RateState()),
                                               key.limits, tokens, self.clock())

    # ---- requests -----------------------------------------------------------------------

    async def handle(self, request: Request, route: str) -> Response:
        t0 = self.clock()
        model, status = "-", 500
        streaming = False
        try:
            key = self.authorize(request.headers.get("authorization"))
            raw = await read_capped(request, self.cfg.max_body_bytes)
            path, schema = ROUTES[route]
            try:
                data = json.loads(raw)
            except ValueError:
                raise InvalidRequest("the request body is not valid JSON",
                                     api_code="invalid_json",
                                     hint="send a JSON object") from None
            body = parse_body(schema, data)
            profile = self.pool.profile(body["model"])
            if profile is None:
                raise ModelNotFound(f"the model {body['model']!r} does not exist",
                                    api_code="model_not_found", param="model",
                                    hint="GET /v1/models lists the models served")
            model = profile.name
            if key is not None:
                key.check_model(model)
            if route == "embeddings" and not profile.embeddings:
                raise InvalidRequest(f"the model {model!r} does not serve embeddings",
                                     api_code="embeddings_unsupported", param="model",
                                     hint="serve it with embeddings on")
            self.admit(key)
            if route == "completions" and "max_tokens" not in body:
                body["max_tokens"] = OPENAI_COMPLETIONS_DEFAULT_MAX_TOKENS  # same on any engine
            try:
                raw_out = dumps(body)
            except UnicodeEncodeError:  # "\ud800" escapes: valid JSON, not valid text
                raise InvalidRequest("the request contains invalid Unicode (lone surrogates)",
                                     api_code="invalid_unicode", hint="send UTF-8 text") \
                    from None
            call = Call(route, path, model, body, raw_out, profile, key, t0,
                        charge=lambda tokens: self.charge(key, tokens))
            if body.get("stream") and route != "embeddings":
                relay = StreamRelay(self.pool, call)
                await relay.open()
                streaming, status = True, 200
                return StreamingResponse(relay.body(), media_type="text/event-stream",
                                         headers=SSE_HEADERS)
            content = await complete(self.pool, call)
            status = 200
            self._account_usage(call)
            return Response(content, media_type="application/json")
        except ApiError as exc:
            status = exc.status
            raise
        finally:
            if not streaming:
                self.metrics.request_done(model, route, status, self.clock() - t0)

    def _account_usage(self, call: Call) -> None:
        prompt, completion = call.usage or (call.prompt_tokens_estimate(), 0)
        self.metrics.add_tokens(call.model, prompt, completion)
        self.charge(call.key, prompt + completion)

    def models(self, key: ApiKey | None) -> dict[str, Any]:
        names = sorted({r.model for r in self.pool.ready()})
        return {"object": "list", "data": [
            {"id": n, "object": "model", "created": 0, "owned_by": "gpuhive"}
            for n in names if key is None or key.allows(n)]}

    def health_report(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.pool.ready():
            counts[r.model] = counts.get(r.model, 0) + 1
        return {"status": "ok", "replicas": counts, "in_flight": self.metrics.in_flight}


async def read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge(f"the request body is over {cap} bytes", api_code="body_too_large",
                           hint="send a shorter prompt")
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > cap:
            raise BodyTooLarge(f"the request body is over {cap} bytes",
                               api_code="body_too_large", hint="send a shorter prompt")
        parts.append(part)
    return b"".join(parts)


# ---- the FastAPI app --------------------------------------------------------------------

def _error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


def create_app(gw: Gateway) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await gw.aclose()

    app = FastAPI(title="gpuhive gateway", version="1", docs_url=None, redoc_url=None,
                  lifespan=lifespan)
    app.state.gateway = gw

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {"error": {"message": str(exc.detail), "type": "invalid_request_error",
                          "param": None, "code": "not_found" if exc.status_code == 404 else None}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("gateway bug on %s", request.url.path)
        body = {"error": {"message": "internal gateway error", "type": "server_error",
                          "param": None, "code": "internal_error"}}
        return JSONResponse(body, status_code=500)

    for route, (path, schema) in ROUTES.items():
        _add_route(app, gw, route, path, schema)

    @app.get("/v1/models", openapi_extra=_SECURED, responses=_ERRORS)
    async def list_models(request: Request) -> JSONResponse:
        key = gw.authorize(request.headers.get("authorization"))
        return JSONResponse(gw.models(key))

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse(gw.health_report())

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
        comps = doc.setdefault("components", {})
        schemas = comps.setdefault("schemas", {})
        for model in (ChatCompletionRequest, CompletionRequest, EmbeddingRequest):
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(js.pop("$defs", {}))
            schemas[model.__name__] = js
        schemas["Error"] = _ERROR_SCHEMA
        comps["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_SECURED: dict[str, Any] = {"security": [{"bearer": []}]}
_ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                     "param": {"type": ["string", "null"]},
                                     "code": {"type": ["string", "null"]}}}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"description": d, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}
    for s, d in ((400, "invalid request"), (401, "missing or invalid API key"),
                 (403, "key not scoped to the model"), (404, "unknown model"),
                 (413, "body too large"), (429, "rate limited (see Retry-After)"),
                 (502, "every replica failed"), (503, "no ready replica"))}


def _add_route(app: FastAPI, gw: Gateway, route: str, path: str, schema: Any) -> None:
    async def endpoint(request: Request) -> Response:
        return await gw.handle(request, route)

    extra = {**_SECURED, "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema.__name__}"}}}}}
    ok_content: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if route != "embeddings":
        ok_content["text/event-stream"] = {"schema": {"type": "string"}}
    app.add_api_route(path, endpoint, methods=["POST"], name=route, openapi_extra=extra,
                      responses={200: {"description": "OK", "content": ok_content}, **_ERRORS})


# ---- running it -------------------------------------------------------------------------

class GatewayServer:
    """uvicorn serving the gateway inside the current event loop (the controller's)."""

    def __init__(self, gw: Gateway, host: str = "127.0.0.1", port: int = 8088) -> None:
        self.gateway = gw
        self.app = create_app(gw)
        self.config = uvicorn.Config(self.app, host=host, port=port, log_level="warning",
                                     access_log=False, lifespan="on",
                                     timeout_graceful_shutdown=5, backlog=2048)
        self.server = uvicorn.Server(self.config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start
                raise OSError("the gateway did not start")
            await asyncio.sleep(0.01)

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
