"""Per-key rate limits as token buckets. Pure: every function takes ``now`` and returns values.

* requests per minute: a bucket of ``rpm`` requests refilling at rpm/60 per second; a request
  costs 1 and is refused (429) when less than 1 is left;
* tokens per day: a bucket of ``tokens_per_day`` refilling at tokens_per_day/86400 per
  second; a request is admitted while the bucket is positive and charged its real usage
  afterwards (the bucket may go negative: the debt is paid back before the next admission).

``Retry-After`` is the time until the bucket holds what the refused request needs.
"""

from __future__ import annotations

from dataclasses import dataclass

MINUTE = 60.0
DAY = 86400.0


@dataclass(frozen=True)
class KeyLimits:
    rpm: int | None = None
    tokens_per_day: int | None = None


@dataclass(frozen=True)
class Bucket:
    level: float
    updated: float


@dataclass(frozen=True)
class RateState:
    requests: Bucket | None = None
    tokens: Bucket | None = None


@dataclass(frozen=True)
class Admission:
    allowed: bool
    state: RateState
    retry_after_s: float = 0.0
    limit: str = ""  # "rpm" or "tokens_per_day" when refused


def refill(b: Bucket | None, capacity: float, per_s: float, now: float) -> Bucket:
    if b is None:
        return Bucket(capacity, now)
    dt = max(0.0, now - b.updated)
    return Bucket(min(capacity, b.level + dt * per_s), max(now, b.updated))


def admit(state: RateState, limits: KeyLimits, now: float) -> Admission:
    """Decide one request: take 1 from the request bucket, require a positive token bucket."""
    req, tok = state.requests, state.tokens
    if limits.tokens_per_day is not None:
        cap = float(limits.tokens_per_day)
        tok = refill(tok, cap, cap / DAY, now)
        if tok.level < 1.0:
            return Admission(False, RateState(req, tok), (1.0 - tok.level) / (cap / DAY),
                             "tokens_per_day")
    if limits.rpm is not None:
        cap = float(limits.rpm)
        req = refill(req, cap, cap / MINUTE, now)
        if req.level < 1.0:
            return Admission(False, RateState(req, tok), (1.0 - req.level) / (cap / MINUTE),
                             "rpm")
        req = Bucket(req.level - 1.0, req.updated)
    return Admission(True, RateState(req, tok))


def charge_tokens(state: RateState, limits: KeyLimits, tokens: int, now: float) -> RateState:
    """Charge a finished request's token usage against the daily bucket."""
    if limits.tokens_per_day is None or tokens <= 0:
        return state
    cap = float(limits.tokens_per_day)
    tok = refill(state.tokens, cap, cap / DAY, now)
    return RateState(state.requests, Bucket(tok.level - tokens, tok.updated))
