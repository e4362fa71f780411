"""The lab's topology as data: which namespaces, links, addresses and rules to create.

Pure: nothing here touches the system. ``netns.build`` runs the argv lists.

    {p}-ctl [{p}-ctl 198.18.0.1] ── [{p}-nc] ┐
                                            {p}-br  (in {p}-net, the "internet")
    {p}-r1  [{p}-w1 198.18.0.11] ── [{p}-n1] ┘
    {p}-r1  [{p}-l1 192.168.1.1] ── [{p}-f1 192.168.1.2] {p}-f1  (friend 1, behind NAT)

``same_router`` friends N+1.. sit behind router 1 too, each on its own LAN port
(``{p}-l{n}`` 192.168.n.1 ── ``{p}-f{n}`` 192.168.n.2): one public address for several
friends, as in one household; the router routes between its LAN ports without NAT.

Every name starts with the prefix, so teardown finds everything without a state file.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from gpuhive.errors import LabError

NET_CIDR = "198.18.0.0/24"  # RFC 2544 benchmark range: never routed on the real internet
CTL_ADDRESS = "198.18.0.1"
PREFIX_PATTERN = r"gh[a-z0-9]{0,8}"
# A lab namespace: "<prefix>-<role>". Used to find stray labs.
NAMESPACE_RE = re.compile(rf"^({PREFIX_PATTERN})-(net|ctl|r\d+|f\d+)$")
MAX_FRIENDS = 244  # router WAN address is 198.18.0.(10+i)
IFNAMSIZ = 15  # kernel limit on interface names (16 with the NUL)
_RATE_RE = re.compile(r"^(\d+)(bit|kbit|mbit|gbit)$")
_RATE_UNIT = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}


@dataclass(frozen=True)
class Host:
    """A machine in the lab. ``namespace`` is None in loopback fallback mode."""

    name: str  # "ctl", "friend1", ...
    namespace: str | None
    address: str  # the host's own address
    public_address: str  # where its traffic appears to come from on the internet


@dataclass(frozen=True)
class Router:
    index: int
    namespace: str
    wan_iface: str
    wan_address: str
    lan_iface: str
    lan_address: str


@dataclass(frozen=True)
class LabPlan:
    prefix: str
    friends: int
    bandwidth: str | None
    mtu: int | None
    hosts: tuple[Host, ...]
    routers: tuple[Router, ...]
    same_router: int = 0  # extra friends behind router 1, numbered after the others

    @property
    def lan_mates(self) -> list[int]:
        """Host numbers of the extra friends behind router 1."""
        return list(range(self.friends + 1, self.friends + 1 + self.same_router))

    @property
    def net_namespace(self) -> str:
        return f"{self.prefix}-net"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    @property
    def namespaces(self) -> list[str]:
        out = [self.net_namespace, f"{self.prefix}-ctl"]
        for r in self.routers:
            out += [r.namespace, f"{self.prefix}-f{r.index}"]
        out += [f"{self.prefix}-f{n}" for n in self.lan_mates]
        return out

    @property
    def ctl(self) -> Host:
        return self.host("ctl")

    @property
    def friend_hosts(self) -> list[Host]:
        return [h for h in self.hosts if h.name != "ctl"]

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(f"no lab host named {name!r}", hint="hosts: "
                       + ", ".join(h.name for h in self.hosts))

    def interfaces(self) -> list[str]:
        p = self.prefix
        names = [self.bridge, f"{p}-nc", f"{p}-ctl"]
        for r in self.routers:
            names += [f"{p}-n{r.index}", r.wan_iface, r.lan_iface, f"{p}-f{r.index}"]
        for n in self.lan_mates:
            names += [f"{p}-l{n}", f"{p}-f{n}"]
        return names

    def setup_commands(self) -> list[list[str]]:
        return _setup(self)

    def teardown_commands(self) -> list[list[str]]:
        # Deleting a namespace removes its links, bridge, qdiscs and nft tables with it.
        return [["ip", "netns", "del", ns] for ns in reversed(self.namespaces)]


def router_namespace(prefix: str, index: int) -> str:
    return f"{prefix}-r{index}"


def wan_iface(prefix: str, index: int) -> str:
    """Router ``index``'s port on the lab's internet (where NAT and port forwards act)."""
    return f"{prefix}-w{index}"


def new_prefix(rng: random.Random | None = None) -> str:
    """A short per-run prefix like ``gh3fa9``."""
    rng = rng or random.SystemRandom()
    return f"gh{rng.getrandbits(16):04x}"


def plan_lab(prefix: str, friends: int, bandwidth: str | None = None,
             mtu: int | None = None, same_router: int = 0) -> LabPlan:
    if not re.fullmatch(PREFIX_PATTERN, prefix):
        raise LabError(f"bad lab prefix {prefix!r}",
                       hint="use 'gh' + up to 8 lowercase letters/digits, e.g. from new_prefix()")
    if not 1 <= friends <= MAX_FRIENDS:
        raise LabError(f"friends must be 1..{MAX_FRIENDS}, got {friends}")
    if not 0 <= same_router <= MAX_FRIENDS - friends:
        raise LabError(f"same_router must be 0..{MAX_FRIENDS - friends} with {friends} "
                       f"friend(s), got {same_router}")
    if bandwidth is not None:
        rate_bits(bandwidth)  # validates
    if mtu is not None and not 576 <= mtu <= 9000:
        raise LabError(f"mtu must be 576..9000, got {mtu}")
    hosts = [Host("ctl", f"{prefix}-ctl", CTL_ADDRESS, CTL_ADDRESS)]
    routers = []
    for i in range(1, friends + 1):
        wan = f"198.18.0.{10 + i}"
        routers.append(Router(i, router_namespace(prefix, i), wan_iface(prefix, i), wan,
                              f"{prefix}-l{i}", f"192.168.{i}.1"))
        hosts.append(Host(f"friend{i}", f"{prefix}-f{i}", f"192.168.{i}.2", wan))
    for n in range(friends + 1, friends + 1 + same_router):
        hosts.append(Host(f"friend{n}", f"{prefix}-f{n}", f"192.168.{n}.2",
                          routers[0].wan_address))
    return LabPlan(prefix, friends, bandwidth, mtu, tuple(hosts), tuple(routers), same_router)


def rate_bits(rate: str) -> int:
    """Bits per second of a tc rate like "20mbit"."""
    m = _RATE_RE.fullmatch(rate.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise LabError(f"bad bandwidth {rate!r}", hint="use tc units, e.g. 20mbit, 500kbit, 1gbit")
    return int(m.group(1)) * _RATE_UNIT[m.group(2)]


def tbf_burst(rate: str) -> str:
    # 32kbit is plenty up to ~25 Mbit/s; faster links need ~4 ms worth of bucket or
    # timer granularity caps the rate well below what was asked for.
    bits = rate_bits(rate)
    return "32kbit" if bits <= 25 * 10**6 else f"{bits // 8 // 250}b"


def masquerade_commands(table: str, wan_iface: str, lan_iface: str) -> list[list[str]]:
    """nft argv that make a home-router-like NAT: masquerade out, stateful in."""
    nft = ["nft", "add"]
    wan, lan = f'"{wan_iface}"', f'"{lan_iface}"'  # quoted: nft joins argv and parses it
    return [
        [*nft, "table", "ip", table],
        [*nft, "chain", "ip", table, "postrouting",
         "{ type nat hook postrouting priority srcnat ; policy accept ; }"],
        [*nft, "rule", "ip", table, "postrouting", "oifname", wan, "masquerade"],
        # Without this, a WAN peer that adds a route to the LAN would reach the friend.
        [*nft, "chain", "ip", table, "forward",
         "{ type filter hook forward priority filter ; policy accept ; }"],
        [*nft, "rule", "ip", table, "forward", "iifname", wan, "oifname", lan,
         "ct", "state", "established,related", "accept"],
        [*nft, "rule", "ip", table, "forward", "iifname", wan, "drop"],
    ]


def port_forward_commands(table: str, wan_iface: str, proto: str, port: int,
                          lan_address: str, lan_port: int) -> list[list[str]]:
    """nft argv for a home router's port forward: ``proto`` ``port`` on the WAN side to a
    LAN host, and the forward filter letting those new connections through (run in the
    router's namespace after ``masquerade_commands``)."""
    if proto not in ("tcp", "udp"):
        raise LabError(f"cannot forward protocol {proto!r}", hint="use tcp or udp")
    if not (0 < port < 65536 and 0 < lan_port < 65536):
        raise LabError(f"bad port forward {port} -> {lan_port}", hint="ports are 1..65535")
    wan = f'"{wan_iface}"'
    return [
        ["nft", "add", "chain", "ip", table, "prerouting",
         "{ type nat hook prerouting priority dstnat ; policy accept ; }"],
        ["nft", "add", "rule", "ip", table, "prerouting", "iifname", wan, proto, "dport",
         str(port), "dnat", "to", f"{lan_address}:{lan_port}"],
        # before the router's final drop of everything new from the WAN
        ["nft", "insert", "rule", "ip", table, "forward", "iifname", wan, "ct", "status",
         "dnat", "accept"],
    ]


def _veth(in_ns: str, name: str, peer: str, peer_ns: str) -> list[str]:
    # Created inside a lab namespace with the peer placed straight into the other one,
    # so no name ever appears in the host's own namespace.
    return ["ip", "-n", in_ns, "link", "add", name, "type", "veth",
            "peer", "name", peer, "netns", peer_ns]


def _link_up(ns: str, iface: str, mtu: int | None = None) -> list[str]:
    extra = ["mtu", str(mtu)] if mtu else []
    return ["ip", "-n", ns, "link", "set", iface, *extra, "up"]


def _addr(ns: str, iface: str, cidr: str) -> list[str]:
    return ["ip", "-n", ns, "addr", "add", cidr, "dev", iface]


def _tbf(ns: str, iface: str, rate: str) -> list[str]:
    return ["tc", "-n", ns, "qdisc", "add", "dev", iface, "root", "tbf",
            "rate", rate, "burst", tbf_burst(rate), "latency", "400ms"]


def _setup(plan: LabPlan) -> list[list[str]]:
    p, net, br, mtu = plan.prefix, plan.net_namespace, plan.bridge, plan.mtu
    ctl = f"{p}-ctl"
    cmds = [["ip", "netns", "add", ns] for ns in plan.namespaces]
    cmds += [_link_up(ns, "lo") for ns in plan.namespaces]
    cmds += [["ip", "-n", net, "link", "add", br, "type", "bridge"], _link_up(net, br)]
    # The mtu goes on every port of the bridge, ctl included: a bridge silently
    # drops frames larger than the egress port's mtu.
    cmds += [
        _veth(net, f"{p}-nc", f"{p}-ctl", ctl),
        ["ip", "-n", net, "link", "set", f"{p}-nc", "master", br],
        _link_up(net, f"{p}-nc", mtu),
        _addr(ctl, f"{p}-ctl", f"{CTL_ADDRESS}/24"),
        _link_up(ctl, f"{p}-ctl", mtu),
    ]
    for r in plan.routers:
        i, fns = r.index, f"{p}-f{r.index}"
        cmds += [
            _veth(net, f"{p}-n{i}", r.wan_iface, r.namespace),
            ["ip", "-n", net, "link", "set", f"{p}-n{i}", "master", br],
            _link_up(net, f"{p}-n{i}", mtu),
            _addr(r.namespace, r.wan_iface, f"{r.wan_address}/24"),
            _link_up(r.namespace, r.wan_iface, mtu),
            _veth(r.namespace, r.lan_iface, f"{p}-f{i}", fns),
            _addr(r.namespace, r.lan_iface, f"{r.lan_address}/24"),
            _link_up(r.namespace, r.lan_iface),
            _addr(fns, f"{p}-f{i}", f"192.168.{i}.2/24"),
            _link_up(fns, f"{p}-f{i}"),
            ["ip", "-n", fns, "route", "add", "default", "via", r.lan_address],
            ["ip", "netns", "exec", r.namespace, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ]
        cmds += [["ip", "netns", "exec", r.namespace, *c]
                 for c in masquerade_commands(p, r.wan_iface, r.lan_iface)]
        if plan.bandwidth:
            # Egress shaping on both router ports shapes upload and download.
            cmds += [_tbf(r.namespace, r.wan_iface, plan.bandwidth),
                     _tbf(r.namespace, r.lan_iface, plan.bandwidth)]
    r1 = plan.routers[0]
    for n in plan.lan_mates:
        fns, lan = f"{p}-f{n}", f"{p}-l{n}"
        cmds += [
            _veth(r1.namespace, lan, f"{p}-f{n}", fns),
            _addr(r1.namespace, lan, f"192.168.{n}.1/24"),
            _link_up(r1.namespace, lan),
            _addr(fns, f"{p}-f{n}", f"192.168.{n}.2/24"),
            _link_up(fns, f"{p}-f{n}"),
            ["ip", "-n", fns, "route", "add", "default", "via", f"192.168.{n}.1"],
            # replies from the internet may reach this LAN port too (inserted before the
            # router's final drop of everything else from the WAN)
            ["ip", "netns", "exec", r1.namespace, "nft", "insert", "rule", "ip", p, "forward",
             "iifname", f'"{r1.wan_iface}"', "oifname", f'"{lan}"', "ct", "state",
             "established,related", "accept"],
        ]
        if plan.bandwidth:
            cmds.append(_tbf(r1.namespace, lan, plan.bandwidth))
    return cmds
