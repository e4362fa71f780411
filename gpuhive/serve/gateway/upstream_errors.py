"""A replica's 4xx answer as the gateway's own OpenAI-style error. Pure.

Engines answer in OpenAI's shape (``{"error": {...}}``) or FastAPI's (``{"detail": ...}``);
a 422 becomes a 400, as OpenAI reports invalid fields.
"""

from __future__ import annotations

import json
from typing import Any

from gpuhive.serve.errors import EngineRejected


def from_upstream(status: int, content: bytes) -> EngineRejected:
    message, code, param, type_ = f"the model server refused the request ({status})", None, \
        None, "invalid_request_error"
    try:
        doc: Any = json.loads(content)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = err.get("code") if isinstance(err.get("code"), str) else None
            param = err.get("param") if isinstance(err.get("param"), str) else None
            if isinstance(err.get("type"), str) and err["type"] != "internal_server_error":
                type_ = err["type"]
        elif isinstance(err, str):
            message = err
        elif "detail" in doc:
            message = str(doc["detail"])
    elif content:
        message = content[:500].decode(errors="replace")
    return EngineRejected(message, status=400 if status == 422 else status, api_code=code,
                          param=param, error_type=type_)
