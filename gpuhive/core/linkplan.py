"""How many bytes to send to measure a link: enough for ~1.5 s at its speed. Pure."""

from __future__ import annotations

PROBE_BYTES = 256 * 1024
MIN_BYTES = 1 << 20
MAX_BYTES = 64 << 20


def transfer_size(probe_mbps: float, target_s: float = 1.5) -> int:
    """Bytes for a measurement lasting about ``target_s`` at ``probe_mbps``."""
    want = int(max(probe_mbps, 0.1) * 1e6 / 8 * target_s)
    return max(MIN_BYTES, min(MAX_BYTES, want))
