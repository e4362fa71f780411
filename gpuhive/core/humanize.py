"""Durations and sizes as a person reads them: ``41s``, ``3m12s``, ``1.9 KiB``. Pure."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """``0s``, ``41s``, ``3m12s``, ``1h05m``, ``2d03h``: two units at most, never negative."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def size(nbytes: int) -> str:
    """``812 bytes``, ``1.9 KiB``, ``3.4 MiB``, ``1.2 GiB``."""
    if nbytes < 1024:
        return f"{nbytes} bytes"
    value = nbytes / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
