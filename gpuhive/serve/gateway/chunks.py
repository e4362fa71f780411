"""OpenAI streaming chunks: read the text out of one, write one, and the SSE framing. Pure.

The gateway forwards the first replica's chunks as they came. After a failover it writes
its own chunks with the first stream's id, created time, model and object type, so the
client sees one unbroken stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DONE = b"data: [DONE]\n\n"
CHAT_OBJECT = "chat.completion.chunk"
TEXT_OBJECT = "text_completion"


@dataclass(frozen=True)
class ChunkMeta:
    id: str
    created: int
    model: str
    object: str


@dataclass(frozen=True)
class Delta:
    text: str
    finish_reason: str | None
    has_choices: bool


def read_delta(chunk: dict[str, Any]) -> Delta:
    """Text and finish reason of choice 0 of a chat or completion chunk."""
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return Delta("", None, False)
    c = choices[0]
    if "delta" in c:
        delta = c.get("delta") or {}
        text = delta.get("content") if isinstance(delta, dict) else None
    else:
        text = c.get("text")
    fr = c.get("finish_reason")
    return Delta(text if isinstance(text, str) else "", fr if isinstance(fr, str) else None,
                 True)


def meta_of(chunk: dict[str, Any], *, chat: bool, fallback_model: str,
            fallback_id: str, now: int) -> ChunkMeta:
    created = chunk.get("created")
    return ChunkMeta(id=str(chunk.get("id") or fallback_id),
                     created=created if isinstance(created, int) else now,
                     model=str(chunk.get("model") or fallback_model),
                     object=CHAT_OBJECT if chat else TEXT_OBJECT)


def build_chunk(meta: ChunkMeta, text: str, finish_reason: str | None = None) -> dict[str, Any]:
    if meta.object == CHAT_OBJECT:
        delta: dict[str, Any] = {"content": text} if text else {}
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None,
                                  "finish_reason": finish_reason}
    else:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
    return {"id": meta.id, "object": meta.object, "created": meta.created, "model": meta.model,
            "choices": [choice]}


def sse(payload: str | bytes) -> bytes:
    raw = payload.encode() if isinstance(payload, str) else payload
    return b"data: " + raw + b"\n\n"


def sse_json(obj: dict[str, Any]) -> bytes:
    return sse(json.dumps(obj, separators=(",", ":")))


def error_event(message: str, *, code: str = "upstream_failed",
                type_: str = "server_error") -> bytes:
    """An OpenAI-style error inside a stream (the ``openai`` client raises ``APIError``)."""
    return sse_json({"error": {"message": message, "type": type_, "param": None, "code": code}})
