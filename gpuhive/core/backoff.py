"""Reconnect schedule: capped exponential backoff with jitter. Pure: randomness passed in."""

from __future__ import annotations


def backoff_delay(attempt: int, rand: float, *, base: float = 1.0, cap: float = 60.0,
                  jitter: float = 0.25) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based).

    The nominal schedule is base·2^attempt capped at ``cap`` (1, 2, 4 … 60 s). ``rand`` in
    [0, 1) shortens it by up to ``jitter`` of itself, so a hundred agents cut off by one
    controller restart do not all knock at the same instant, and no delay exceeds the cap.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    nominal = min(cap, base * (2.0 ** min(attempt, 62)))
    return nominal * (1.0 - jitter * min(max(rand, 0.0), 1.0))
