"""Overlay address allocation. Pure: the registry passes in what is taken and retired.

The hub is always the subnet's first host address (.1 in 10.77.0.0/16). Nodes get the
lowest free host address above it. An address that belonged to a removed node is
*retired* and never handed out again, so a stale peer entry or a firewall rule somewhere
can never start matching a different machine. Re-enrollment keeps the node's address:
the caller passes it back as ``current`` (``assign``).

Uniqueness under concurrent enrollment is the caller's part: call ``assign`` inside the
registry transaction that also stores the result (SQLite ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from gpuhive.overlay.errors import AddressPoolExhausted, OverlayError

DEFAULT_SUBNET = "10.77.0.0/16"


def parse_subnet(subnet: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(subnet.strip(), strict=True)
    except ValueError as exc:
        raise OverlayError(f"bad overlay subnet {subnet!r}: {exc}",
                           hint="use an IPv4 network like 10.77.0.0/16", subnet=subnet) from exc
    if not isinstance(net, ipaddress.IPv4Network):
        raise OverlayError(f"overlay subnet {subnet!r} is not IPv4",
                           hint="use an IPv4 network like 10.77.0.0/16", subnet=subnet)
    if net.prefixlen > 29:
        raise OverlayError(f"overlay subnet {subnet!r} is too small",
                           hint="use at most /29 (a hub and a few nodes); /16 is the default",
                           subnet=subnet)
    return net


def hub_address(subnet: str) -> str:
    return str(parse_subnet(subnet).network_address + 1)


def interface_address(address: str, subnet: str) -> str:
    """``address`` with the subnet's prefix length, as ``ip addr`` wants it: 10.77.0.2/16."""
    return f"{address}/{parse_subnet(subnet).prefixlen}"


def in_subnet(subnet: str, address: str) -> bool:
    net = parse_subnet(subnet)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip in net and ip not in (net.network_address, net.broadcast_address)


def _set(addresses: Iterable[str], net: ipaddress.IPv4Network) -> set[int]:
    out = set()
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError as exc:
            raise OverlayError(f"bad overlay address {a!r} in the registry",
                               hint="fix or remove that node's overlay address") from exc
        if ip in net:
            out.add(int(ip))
    return out


def allocate(subnet: str, taken: Iterable[str], retired: Iterable[str]) -> str:
    """The lowest host address that is not the hub, not ``taken`` and not ``retired``."""
    net = parse_subnet(subnet)
    used = _set(taken, net) | _set(retired, net)
    first = int(net.network_address) + 2  # +1 is the hub
    last = int(net.broadcast_address) - 1
    for n in range(first, last + 1):
        if n not in used:
            return str(ipaddress.IPv4Address(n))
    raise AddressPoolExhausted(
        f"no free overlay address left in {subnet}",
        hint="configure a larger overlay subnet (addresses of removed nodes are never reused)",
        subnet=subnet)


def assign(subnet: str, current: str | None, taken: Iterable[str],
           retired: Iterable[str]) -> str:
    """The address for an enrolling node: its ``current`` one if still valid, else a new one.

    ``taken`` may include ``current`` itself (the node's own row); it is not a clash.
    """
    taken, retired = list(taken), list(retired)
    if (current is not None and in_subnet(subnet, current) and current != hub_address(subnet)
            and current not in retired and taken.count(current) <= 1):
        return current
    return allocate(subnet, taken, retired)
