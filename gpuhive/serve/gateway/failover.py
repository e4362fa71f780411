"""What the gateway does after a replica fails. Pure: each decision is a value.

    nothing sent to the client yet          → TryFresh: the same request on the next replica
                                              (the client never sees the failure)
    text sent, request can be continued     → TryContinue: "prompt + text sent" as a
                                              completion on the next replica, for the tokens
                                              still allowed; the client's stream goes on
    text sent, the token budget is used up  → FinishLength: end the stream normally
    text sent, cannot continue / no replica
      left / too many attempts              → GiveUp: end the stream with an error event
                                              (or, before the first byte, an error answer)

A request can be continued when it asks for one choice and nothing whose state a new
replica could not rebuild from text (tools, response_format, logprobs), and, for chat,
when the gateway knows the model's chat template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpuhive.serve.api import Replica

UNCONTINUABLE_FIELDS = ("tools", "functions", "tool_choice", "function_call",
                        "response_format", "grammar", "logprobs", "top_logprobs", "echo",
                        "suffix", "best_of")


@dataclass(frozen=True)
class Progress:
    text: str = ""  # content already sent to the client
    tokens: int = 0  # content chunks sent (one token each, as engines stream them)
    started: bool = False  # the response (status line, first event) has gone out


@dataclass(frozen=True)
class TryFresh:
    replica: Replica


@dataclass(frozen=True)
class TryContinue:
    replica: Replica
    max_tokens: int | None  # what is left of the budget (None: no limit was given)


@dataclass(frozen=True)
class FinishLength:
    pass


@dataclass(frozen=True)
class GiveUp:
    reason: str


Step = TryFresh | TryContinue | FinishLength | GiveUp


def plan_next(candidates: Sequence[Replica], progress: Progress, *, attempts: int,
              max_attempts: int, continuable: bool, max_tokens: int | None) -> Step:
    """The next step of one request; ``candidates`` are the untried replicas, best first."""
    if progress.tokens == 0:
        if attempts >= max_attempts:
            return GiveUp(f"{attempts} replicas failed before answering")
        if not candidates:
            return GiveUp("every replica of the model failed before answering"
                          if attempts else "the model has no replica")
        return TryFresh(candidates[0])
    remaining = None if max_tokens is None else max_tokens - progress.tokens
    if remaining is not None and remaining <= 0:
        return FinishLength()
    if not continuable:
        return GiveUp("the replica failed mid-stream and this request cannot be continued "
                      "elsewhere")
    if attempts >= max_attempts:
        return GiveUp(f"the stream failed on {attempts} replicas")
    if not candidates:
        return GiveUp("the replica failed mid-stream and no other replica is left")
    return TryContinue(candidates[0], remaining)


def is_continuable(body: Mapping[str, Any], *, chat: bool, has_template: bool) -> bool:
    if body.get("n", 1) not in (1, None):
        return False
    if any(body.get(k) not in (None, False, 0) for k in UNCONTINUABLE_FIELDS):
        return False
    if chat:
        return has_template
    return isinstance(body.get("prompt"), str)


def is_replica_fault(status: int) -> bool:
    """An upstream answer that says "try elsewhere" rather than "your request is wrong"."""
    return status >= 500 or status in (408, 409, 425, 429)
