"""Interface and peer records, wg-quick text, and the argv that apply them live. Pure.

Hub and spoke:

* the hub (controller) has every spoke as a peer with ``allowed-ips <overlay ip>/32`` and no
  endpoint (it learns each spoke's NAT mapping from its authenticated packets, and follows
  it when it changes) and forwards between spokes (``net.ipv4.ip_forward=1``);
* a spoke has one hub peer with ``allowed-ips <overlay subnet>``, ``endpoint`` = the
  controller's public address:port and ``persistent-keepalive 25`` (keeps its NAT mapping
  open; no inbound port needed), plus optional direct peers with ``<ip>/32`` which beat the
  hub's subnet in WireGuard's longest-prefix match.

MTU 1280 by default: WireGuard adds 60 (IPv4) or 80 (IPv6) bytes, and home PPPoE / DS-Lite
links are often 1492 / 1460, so 1420 (WireGuard's own default) fragments or black-holes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gpuhive.overlay.addressing import hub_address, interface_address, parse_subnet
from gpuhive.overlay.errors import OverlayError

DEFAULT_MTU = 1280
DEFAULT_LISTEN_PORT = 51820
KEEPALIVE_S = 25
USERSPACE_ENV = {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
_IFACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # IFNAMSIZ-1, no "/" or spaces


@dataclass(frozen=True)
class Peer:
    public_key: str
    allowed_ips: tuple[str, ...]
    endpoint: str | None = None  # host:port; None = learn it from the peer's packets
    keepalive: int | None = None  # seconds; None = off


@dataclass(frozen=True)
class Interface:
    name: str
    private_key_path: str
    address: str  # "10.77.0.2/16"
    listen_port: int | None = DEFAULT_LISTEN_PORT  # None: WireGuard picks one
    mtu: int = DEFAULT_MTU

    def __post_init__(self) -> None:
        check_iface_name(self.name)
        if not 576 <= self.mtu <= 9000:
            raise OverlayError(f"overlay mtu must be 576..9000, got {self.mtu}",
                               hint="1280 is safe behind PPPoE/DS-Lite; raise it on clean links")
        if self.listen_port is not None and not 1 <= self.listen_port <= 65535:
            raise OverlayError(f"bad WireGuard listen port {self.listen_port}")


def check_iface_name(name: str) -> str:
    if not _IFACE_RE.fullmatch(name):
        raise OverlayError(f"bad interface name {name!r}",
                           hint="1-15 characters of letters, digits, '_', '.', '-'")
    return name


# ---------------------------------------------------------------- roles


def hub_interface(name: str, private_key_path: str, subnet: str, *,
                  listen_port: int = DEFAULT_LISTEN_PORT, mtu: int = DEFAULT_MTU) -> Interface:
    return Interface(name, private_key_path, interface_address(hub_address(subnet), subnet),
                     listen_port, mtu)


def spoke_interface(name: str, private_key_path: str, overlay_ip: str, subnet: str, *,
                    listen_port: int | None = DEFAULT_LISTEN_PORT,
                    mtu: int = DEFAULT_MTU) -> Interface:
    return Interface(name, private_key_path, interface_address(overlay_ip, subnet),
                     listen_port, mtu)


def hub_peer(spoke_public_key: str, spoke_overlay_ip: str) -> Peer:
    """The hub's entry for one spoke."""
    return Peer(spoke_public_key, (f"{spoke_overlay_ip}/32",))


def hub_peers(spokes: Iterable[tuple[str, str]]) -> list[Peer]:
    """The hub's whole peer list from (public key, overlay ip) pairs."""
    return [hub_peer(pub, ip) for pub, ip in spokes]


def spoke_hub_peer(hub_public_key: str, hub_endpoint: str, subnet: str,
                   keepalive: int = KEEPALIVE_S) -> Peer:
    """A spoke's entry for the hub: the whole overlay goes there unless a /32 says otherwise."""
    return Peer(hub_public_key, (str(parse_subnet(subnet)),), hub_endpoint, keepalive)


def direct_peer(public_key: str, overlay_ip: str, endpoint: str | None, *, routed: bool,
                keepalive: int = KEEPALIVE_S) -> Peer:
    """A spoke-to-spoke peer. Unrouted (no allowed-ips) it only handshakes: a trial that
    cannot black-hole traffic, which keeps going through the hub until the path is proven."""
    return Peer(public_key, (f"{overlay_ip}/32",) if routed else (), endpoint, keepalive)


# ---------------------------------------------------------------- wg-quick text


def render_config(iface: Interface, peers: Sequence[Peer], *, subnet: str,
                  hub: bool = False, private_key: str | None = None) -> str:
    """wg-quick style text for humans and tunnels/ templates.

    Without ``private_key`` the key stays in its file and a PostUp line loads it.
    """
    lines = ["[Interface]", f"# gpuhive overlay {'hub' if hub else 'spoke'} {iface.name}"]
    if private_key is not None:
        lines.append(f"PrivateKey = {private_key}")
    lines.append(f"Address = {iface.address}")
    if iface.listen_port is not None:
        lines.append(f"ListenPort = {iface.listen_port}")
    lines.append(f"MTU = {iface.mtu}")
    if private_key is None:
        lines.append(f"PostUp = wg set %i private-key {iface.private_key_path}")
    if hub:
        lines.append("PostUp = sysctl -qw net.ipv4.ip_forward=1")
    lines.append(f"# overlay subnet {parse_subnet(subnet)}")
    for p in peers:
        lines += ["", "[Peer]", f"PublicKey = {p.public_key}"]
        if p.allowed_ips:
            lines.append(f"AllowedIPs = {', '.join(p.allowed_ips)}")
        if p.endpoint:
            lines.append(f"Endpoint = {p.endpoint}")
        if p.keepalive:
            lines.append(f"PersistentKeepalive = {p.keepalive}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- argv to apply live


def link_add_argv(name: str) -> list[str]:
    return ["ip", "link", "add", check_iface_name(name), "type", "wireguard"]


def userspace_argv(name: str) -> list[str]:
    # -f: stay in the foreground, so the pid we spawn is the daemon's and we can stop it.
    return ["wireguard-go", "-f", check_iface_name(name)]


def link_del_argv(name: str) -> list[str]:
    return ["ip", "link", "del", "dev", name]


def interface_argv(iface: Interface, *, subnet: str, hub: bool) -> list[list[str]]:
    """Everything after the device exists: key, port, address, mtu, up, route (, forward)."""
    key = ["wg", "set", iface.name, "private-key", iface.private_key_path]
    if iface.listen_port is not None:
        key += ["listen-port", str(iface.listen_port)]
    cmds = [
        key,
        ["ip", "-4", "addr", "replace", iface.address, "dev", iface.name],
        ["ip", "link", "set", "mtu", str(iface.mtu), "up", "dev", iface.name],
        # The address already implies this route; replace makes it explicit and idempotent.
        ["ip", "-4", "route", "replace", str(parse_subnet(subnet)), "dev", iface.name],
    ]
    if hub:
        cmds += [
            ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
            # Spoke-to-spoke traffic leaves by the interface it came in on; the kernel would
            # answer each packet with an ICMP redirect. The effective value is all OR iface.
            ["sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0"],
            ["sysctl", "-qw", f"net.ipv4.conf.{iface.name}.send_redirects=0"],
        ]
    return cmds


def peer_set_argv(iface: str, peer: Peer, *, endpoint: bool = True,
                  keepalive: bool = True) -> list[str]:
    argv = ["wg", "set", iface, "peer", peer.public_key,
            "allowed-ips", ",".join(peer.allowed_ips)]
    if endpoint and peer.endpoint:
        argv += ["endpoint", peer.endpoint]
    if keepalive:
        argv += ["persistent-keepalive", str(peer.keepalive or 0)]
    return argv


def peer_remove_argv(iface: str, public_key: str) -> list[str]:
    return ["wg", "set", iface, "peer", public_key, "remove"]


def host_route_argv(iface: str, cidr: str, *, add: bool) -> list[str]:
    return ["ip", "-4", "route", "replace" if add else "del", cidr, "dev", iface]


def show_dump_argv(iface: str) -> list[str]:
    return ["wg", "show", iface, "dump"]


def show_routes_argv(iface: str) -> list[str]:
    return ["ip", "-4", "route", "show", "dev", iface]
