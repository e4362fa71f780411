"""Errors of the WireGuard overlay. All are ``GpuhiveError``s with data and a hint.

    GpuhiveError
    └── OverlayError                  an overlay step failed (names the step and device)
        ├── OverlayPermissionError    no root / CAP_NET_ADMIN: the overlay cannot run here
        ├── OverlayUnavailable        wg, wireguard-go or /dev/net/tun is missing
        └── AddressPoolExhausted      no free overlay address is left in the subnet

Callers that can live without the overlay (the agent, `gpuhive up`) catch
``OverlayError`` and carry on with the SSH control plane only.
"""

from __future__ import annotations

from gpuhive.errors import GpuhiveError


class OverlayError(GpuhiveError):
    code = "overlay"


class OverlayPermissionError(OverlayError):
    code = "overlay_permission"


class OverlayUnavailable(OverlayError):
    code = "overlay_unavailable"


class AddressPoolExhausted(OverlayError):
    code = "overlay_pool_exhausted"

