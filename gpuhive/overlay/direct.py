"""Which spoke pairs may try a direct path, and with which endpoints. Pure.

The hub is always there; a direct path is an extra peer with a /32 that beats the hub's
subnet route. A pair may try one when a packet from one side can reach the other without
an inbound hole in a home router:

``same-lan``           the controller sees both at the same public address (one router), so
                       each dials the other's LAN address and WireGuard listen port;
``declared-endpoint``  a node's owner declared a reachable host:port (public IP, forwarded
                       port): the others dial it; it learns their endpoints from their
                       authenticated packets (no endpoint on its side);
``nat-punch``          opt-in: both dial the NAT mapping the hub observes for the other.
                       Between two nft-masquerade routers this did not open in the lab
                       (docs/networking.md); ``paths`` drops it back to the hub silently.

Anything else stays on the hub.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from gpuhive.core.endpoints import is_address, valid_endpoint
from gpuhive.overlay.keys import is_valid_key

Reason = Literal["same-lan", "declared-endpoint", "nat-punch"]


@dataclass(frozen=True)
class NodeNet:
    """What the controller knows about one node's network, from enroll and heartbeats."""

    node: str
    public_key: str
    overlay_ip: str
    public_ip: str | None = None  # source address of its hive connection, as seen by us
    lan_address: str | None = None  # its own source address towards the controller
    listen_port: int | None = None  # its WireGuard listen port
    declared_endpoint: str | None = None  # host:port its owner says is reachable
    observed_endpoint: str | None = None  # its endpoint in the hub's `wg show` (NAT mapping)


@dataclass(frozen=True)
class DirectCandidate:
    """``node`` should add ``peer`` as a direct peer, dialling ``endpoint`` (None: wait)."""

    node: str
    peer: str
    peer_public_key: str
    peer_overlay_ip: str
    endpoint: str | None
    reason: Reason


def _lan_endpoint(n: NodeNet) -> str | None:
    if n.lan_address and n.listen_port:
        return f"{n.lan_address}:{n.listen_port}"
    return None


def pair_reason(a: NodeNet, b: NodeNet, *, punch: bool = False) -> Reason | None:
    if a.public_ip and a.public_ip == b.public_ip and _lan_endpoint(a) and _lan_endpoint(b):
        return "same-lan"
    if a.declared_endpoint or b.declared_endpoint:
        return "declared-endpoint"
    if punch and a.observed_endpoint and b.observed_endpoint:
        return "nat-punch"
    return None


def _endpoint_for(reason: Reason, target: NodeNet) -> str | None:
    """The endpoint to dial ``target`` by, for a pair on ``reason``."""
    if reason == "same-lan":
        return _lan_endpoint(target)
    if reason == "declared-endpoint":
        return target.declared_endpoint
    return target.observed_endpoint


def _candidate(me: NodeNet, other: NodeNet, reason: Reason) -> DirectCandidate:
    return DirectCandidate(me.node, other.node, other.public_key, other.overlay_ip,
                           _endpoint_for(reason, other), reason)


def plan_direct(nodes: Iterable[NodeNet], *,
                punch: bool = False) -> dict[str, list[DirectCandidate]]:
    """For every node, the direct peers it should try (possibly none)."""
    ordered = sorted(nodes, key=lambda n: n.node)
    out: dict[str, list[DirectCandidate]] = {n.node: [] for n in ordered}
    for a, b in combinations(ordered, 2):
        reason = pair_reason(a, b, punch=punch)
        if reason is not None:
            out[a.node].append(_candidate(a, b, reason))
            out[b.node].append(_candidate(b, a, reason))
    return out


def pair_routes(nodes: Sequence[NodeNet], *,
                punch: bool = False) -> dict[tuple[str, str], str]:
    """(a, b) with a < b → "same-lan" / "declared-endpoint" / "nat-punch" / "hub"."""
    ordered = sorted(nodes, key=lambda n: n.node)
    return {(a.node, b.node): pair_reason(a, b, punch=punch) or "hub"
            for a, b in combinations(ordered, 2)}


# ---------------------------------------------------------------- on the wire (``peers``)

_REASONS: tuple[Reason, ...] = ("same-lan", "declared-endpoint", "nat-punch")


def to_wire(c: DirectCandidate) -> dict[str, object]:
    """One candidate in the controller's ``peers`` message (``node`` is implied)."""
    return {"peer": c.peer, "public_key": c.peer_public_key, "overlay_ip": c.peer_overlay_ip,
            "endpoint": c.endpoint, "reason": c.reason}


def from_wire(node: str, item: object) -> DirectCandidate:
    """Validate one candidate from a ``peers`` message; ``ValueError`` says what is wrong."""
    if not isinstance(item, dict):
        raise ValueError("a direct candidate is not an object")
    peer, key, ip = item.get("peer"), item.get("public_key"), item.get("overlay_ip")
    endpoint, reason = item.get("endpoint"), item.get("reason")
    if not isinstance(peer, str) or not 0 < len(peer) <= 63:
        raise ValueError("a direct candidate has no peer name")
    if not isinstance(key, str) or not is_valid_key(key):
        raise ValueError(f"direct candidate {peer}: bad public key")
    if not is_address(ip):
        raise ValueError(f"direct candidate {peer}: bad overlay address {ip!r}")
    if endpoint is not None and not (isinstance(endpoint, str) and valid_endpoint(endpoint)):
        raise ValueError(f"direct candidate {peer}: bad endpoint {endpoint!r}")
    if reason not in _REASONS:
        raise ValueError(f"direct candidate {peer}: unknown reason {reason!r}")
    return DirectCandidate(node, peer, key, str(ip), endpoint, reason)
