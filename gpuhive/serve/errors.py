"""Errors of the serving library, all under ``gpuhive.errors.GpuhiveError``.

Each carries the data that explains it and a hint. The gateway turns the ``ApiError``
branch into OpenAI-style error JSON (``status``, ``type``, ``code``); everything else is
for the controller, the agent and the CLI.

    GpuhiveError
    └── ServeError
        ├── CatalogError            models.yaml is invalid (names the key) or a name is unknown
        ├── ChecksumRequired        a catalog entry has no sha256 and one is needed now
        ├── ChecksumMismatch        a model file's sha256 is not the expected one
        ├── GgufError               a file is not a readable GGUF model
        ├── EngineUnavailable       no inference engine (llama-server, llama_cpp) is installed
        ├── WorkerFailed            the engine would not start or keeps dying
        ├── TransferError           pushing a model file to a node failed
        ├── DeploymentRefused       `serve` cannot do what was asked (no node fits, other --ctx)
        └── ApiError                an OpenAI-style error answer of the gateway
            ├── InvalidRequest        400 (bad JSON, bad field, prompt over the context)
            ├── AuthError             401 (missing, unknown or revoked key)
            ├── PermissionDenied      403 (key not scoped to the model)
            ├── ModelNotFound         404
            ├── BodyTooLarge          413
            ├── RateLimited           429 (+ Retry-After)
            ├── UpstreamFailed        502 (every replica failed)
            ├── NoReplica             503 (the model has no healthy replica)
            └── EngineRejected        the replica's own 4xx (e.g. prompt over the context)
"""

from __future__ import annotations

import math
from typing import Any

from gpuhive.errors import GpuhiveError


class ServeError(GpuhiveError):
    code = "serve"


class CatalogError(ServeError):
    code = "catalog"
    exit_code = 2


class ChecksumRequired(ServeError):
    code = "checksum_required"


class ChecksumMismatch(ServeError):
    code = "checksum_mismatch"


class GgufError(ServeError):
    code = "gguf"


class EngineUnavailable(ServeError):
    code = "engine_unavailable"


class WorkerFailed(ServeError):
    code = "worker_failed"


class TransferError(ServeError):
    code = "transfer"


class DeploymentRefused(ServeError):
    code = "deployment_refused"


class ApiError(ServeError):
    """An error the gateway answers with; ``body()`` is the OpenAI error object."""

    code = "api_error"
    status = 500
    error_type = "server_error"

    def __init__(self, message: str, *, hint: str = "", api_code: str | None = None,
                 param: str | None = None, **data: Any) -> None:
        super().__init__(message, hint=hint, **data)
        self.api_code = api_code
        self.param = param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type,
                          "param": self.param, "code": self.api_code}}

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(ApiError):
    code = "invalid_request"
    status = 400
    error_type = "invalid_request_error"


class AuthError(ApiError):
    code = "auth"
    status = 401
    error_type = "invalid_request_error"


class PermissionDenied(ApiError):
    code = "permission_denied"
    status = 403
    error_type = "permission_error"


class ModelNotFound(ApiError):
    code = "model_not_found"
    status = 404
    error_type = "invalid_request_error"


class BodyTooLarge(ApiError):
    code = "body_too_large"
    status = 413
    error_type = "invalid_request_error"


class RateLimited(ApiError):
    code = "rate_limited"
    status = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after_s: float, hint: str = "",
                 api_code: str | None = "rate_limit_exceeded", **data: Any) -> None:
        super().__init__(message, hint=hint, api_code=api_code, retry_after_s=retry_after_s,
                         **data)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class UpstreamFailed(ApiError):
    code = "upstream_failed"
    status = 502
    error_type = "server_error"


class NoReplica(ApiError):
    code = "no_replica"
    status = 503
    error_type = "server_error"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class EngineRejected(ApiError):
    """A replica refused the request itself (4xx): passed on with the engine's status."""

    code = "engine_rejected"
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, status: int, api_code: str | None = None,
                 param: str | None = None, error_type: str = "invalid_request_error") -> None:
        super().__init__(message, api_code=api_code, param=param, status=status)
        self.status = status
        self.error_type = error_type
