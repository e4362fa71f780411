"""Request bodies the gateway accepts: checked here, before any replica sees them.

Strict types (no "1" for 1), OpenAI's ranges, and the llama.cpp sampling extras. Unknown
fields are dropped rather than forwarded: an engine answers a field it cannot parse with
a 500, which would look like a broken replica. The gateway forwards
``model_dump(exclude_unset=True, exclude_none=True)``: what the client sent, minus what
is unknown and the nulls (null means "the default").

These models also make the gateway's OpenAPI schema (``/openapi.json``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpuhive.serve.errors import InvalidRequest

Prob = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
Stop = str | Annotated[list[str], Field(max_length=8)]
ShortText = Annotated[str, Field(max_length=64)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class ChatMessage(_Body):
    # Text only: chat templates concatenate content as a string (an engine answers a list
    # of parts or null with a 500); "developer" is OpenAI's newer name for "system".
    role: Literal["system", "user", "assistant", "developer"]
    content: Annotated[str, Field(max_length=1 << 20)]


class StreamOptions(_Body):
    include_usage: bool = False


class _Generation(_Body):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1 << 20)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Prob | None = None
    top_k: Annotated[int, Field(ge=0, le=1000)] | None = None
    min_p: Prob | None = None
    typical_p: Prob | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None  # engines make one choice
    stop: Stop | None = None
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    repeat_penalty: Annotated[float, Field(ge=0.0, le=10.0)] | None = None
    user: ShortText | None = None


class ChatCompletionRequest(_Generation):
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=4096)]


class CompletionRequest(_Generation):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    echo: bool | None = None


class EmbeddingRequest(_Body):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float"] | None = None
    user: ShortText | None = None


def parse_body(model: type[_Body], data: Any) -> dict[str, Any]:
    """The validated body as a dict of the fields the client set, or ``InvalidRequest``."""
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object",
                             hint="send Content-Type: application/json with an object")
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"invalid field {loc or 'body'}: {first['msg']}",
                             param=loc or None, api_code="invalid_value",
                             hint="see /openapi.json for the accepted fields") from None
    body = parsed.model_dump(exclude_unset=True, exclude_none=True)  # null = the default
    if isinstance(body.get("prompt"), list):  # engines take one prompt: unwrap ["text"]
        body["prompt"] = body["prompt"][0]
    for m in body.get("messages") or ():
        if m["role"] == "developer":
            m["role"] = "system"
    return body
