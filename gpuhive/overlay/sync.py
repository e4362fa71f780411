"""What to change on a live interface to reach a desired peer list. Pure.

Only differences become ``wg set`` commands, so the peers that did not change keep their
sessions: nothing is ever applied by restarting the interface.

* a peer that is not desired any more is removed;
* a new peer is set with all its fields;
* a changed peer is set with only what changed: allowed-ips (compared as sets),
  persistent-keepalive, and the endpoint only when the desired one is an IP literal that
  differs. A desired endpoint of None never overrides what WireGuard learned by roaming,
  and a hostname endpoint is set once (WireGuard resolves it when set, not later).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from gpuhive.core.endpoints import host_of, is_address
from gpuhive.overlay.config import Peer, host_route_argv, peer_remove_argv, peer_set_argv
from gpuhive.overlay.errors import OverlayError
from gpuhive.overlay.parse import PeerStatus


def _cidrs(ips: Iterable[str]) -> frozenset[str]:
    out = set()
    for ip in ips:
        try:
            out.add(str(ipaddress.ip_network(ip, strict=False)))
        except ValueError as exc:
            raise OverlayError(f"bad allowed-ips entry {ip!r}") from exc
    return frozenset(out)


def endpoint_is_literal(endpoint: str) -> bool:
    return is_address(host_of(endpoint))


def _endpoint_changed(want: str | None, have: str | None) -> bool:
    if want is None:
        return False
    if have is None:
        return True
    return endpoint_is_literal(want) and want != have


def peer_changes(iface: str, current: Sequence[PeerStatus],
                 desired: Sequence[Peer]) -> list[list[str]]:
    """``wg set`` argv that turn ``current`` into ``desired``: removals first, then sets."""
    seen: set[str] = set()
    for p in desired:
        if p.public_key in seen:
            raise OverlayError(f"peer {p.public_key} is listed twice",
                               hint="each node may appear once in the desired peer list")
        seen.add(p.public_key)
    have = {p.public_key: p for p in current}
    cmds = [peer_remove_argv(iface, pub) for pub in have if pub not in seen]
    for want in desired:
        cur = have.get(want.public_key)
        if cur is None:
            cmds.append(peer_set_argv(iface, want))
            continue
        ips_changed = _cidrs(want.allowed_ips) != _cidrs(cur.allowed_ips)
        ep_changed = _endpoint_changed(want.endpoint, cur.endpoint)
        ka_changed = (want.keepalive or 0) != (cur.keepalive or 0)
        if ips_changed or ep_changed or ka_changed:
            cmds.append(peer_set_argv(iface, want, endpoint=ep_changed, keepalive=ka_changed))
    return cmds


def desired_host_routes(desired: Sequence[Peer]) -> set[str]:
    """/32 routes for peers reached by a single address (direct peers, the hub's spokes)."""
    return {c for p in desired for c in _cidrs(p.allowed_ips) if c.endswith("/32")}


def route_changes(iface: str, current: set[str], desired: Sequence[Peer]) -> list[list[str]]:
    want = desired_host_routes(desired)
    return ([host_route_argv(iface, c, add=False) for c in sorted(current - want)]
            + [host_route_argv(iface, c, add=True) for c in sorted(want - current)])
