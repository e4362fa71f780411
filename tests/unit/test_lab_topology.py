"""The lab plan is pure data: check names, addresses and rules without touching the system."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gpuhive.errors import LabError
from gpuhive.lab import netns, state
from gpuhive.lab.topology import (
    IFNAMSIZ,
    MAX_FRIENDS,
    NAMESPACE_RE,
    new_prefix,
    plan_lab,
    port_forward_commands,
)


def _joined(cmds: list[list[str]]) -> list[str]:
    return [" ".join(c) for c in cmds]


def test_new_prefix_is_short_hex_and_seeded() -> None:
    a, b = new_prefix(random.Random(1)), new_prefix(random.Random(1))
    assert a == b
    assert len(a) == 6 and a.startswith("gh")
    int(a[2:], 16)
    assert plan_lab(a, 1).prefix == a  # a generated prefix is always accepted


def test_new_prefix_default_source_varies() -> None:
    assert len({new_prefix() for _ in range(20)}) > 1


def test_namespaces_and_hosts() -> None:
    plan = plan_lab("gh00aa", 2)
    assert plan.namespaces == ["gh00aa-net", "gh00aa-ctl", "gh00aa-r1", "gh00aa-f1",
                               "gh00aa-r2", "gh00aa-f2"]
    assert all(NAMESPACE_RE.match(ns) for ns in plan.namespaces)
    assert [(h.name, h.namespace, h.address, h.public_address) for h in plan.hosts] == [
        ("ctl", "gh00aa-ctl", "198.18.0.1", "198.18.0.1"),
        ("friend1", "gh00aa-f1", "192.168.1.2", "198.18.0.11"),
        ("friend2", "gh00aa-f2", "192.168.2.2", "198.18.0.12"),
    ]
    assert plan.ctl.name == "ctl"
    assert [h.name for h in plan.friend_hosts] == ["friend1", "friend2"]
    with pytest.raises(LabError):
        plan.host("friend3")


@pytest.mark.parametrize("prefix", ["gh", "gh00aa", "ghabcdefgh"])
def test_interface_names_fit_and_are_unique(prefix: str) -> None:
    plan = plan_lab(prefix, MAX_FRIENDS)
    names = plan.interfaces()
    assert len(names) == len(set(names))
    assert max(len(n) for n in names) <= IFNAMSIZ
    assert all(n.startswith(prefix + "-") for n in names + plan.namespaces)
    # Every interface the commands name is one the plan knows about.
    for cmd in plan.setup_commands():
        if "dev" in cmd:
            assert cmd[cmd.index("dev") + 1] in names


def test_every_object_is_created_inside_a_lab_namespace() -> None:
    plan = plan_lab("gh00aa", 3)
    for cmd in plan.setup_commands():
        if cmd[:3] == ["ip", "netns", "add"]:
            continue
        # ip -n NS / tc -n NS / ip netns exec NS: never the host's own namespace.
        ns = cmd[2] if cmd[1] == "-n" else cmd[3]
        assert cmd[1] == "-n" or cmd[1:3] == ["netns", "exec"], cmd
        assert ns in plan.namespaces, cmd


def test_addresses_and_routes() -> None:
    cmds = _joined(plan_lab("gh00aa", 2).setup_commands())
    assert "ip -n gh00aa-ctl addr add 198.18.0.1/24 dev gh00aa-ctl" in cmds
    assert "ip -n gh00aa-r2 addr add 198.18.0.12/24 dev gh00aa-w2" in cmds
    assert "ip -n gh00aa-r2 addr add 192.168.2.1/24 dev gh00aa-l2" in cmds
    assert "ip -n gh00aa-f2 addr add 192.168.2.2/24 dev gh00aa-f2" in cmds
    assert "ip -n gh00aa-f1 route add default via 192.168.1.1" in cmds
    # Friends reach each other only through public addresses: no LAN routes anywhere.
    assert not [c for c in cmds if "route add 192.168." in c]
    assert not [c for c in cmds if "-n gh00aa-ctl route" in c]


def test_routers_forward_and_masquerade() -> None:
    cmds = _joined(plan_lab("gh00aa", 2).setup_commands())
    for i in (1, 2):
        ns = f"gh00aa-r{i}"
        assert f"ip netns exec {ns} sysctl -qw net.ipv4.ip_forward=1" in cmds
        assert (f'ip netns exec {ns} nft add rule ip gh00aa postrouting '
                f'oifname "gh00aa-w{i}" masquerade') in cmds
        assert f'ip netns exec {ns} nft add rule ip gh00aa forward iifname "gh00aa-w{i}" drop' \
            in cmds
    # The nat chain exists before its rule.
    chain = next(n for n, c in enumerate(cmds) if "add chain ip gh00aa postrouting" in c)
    rule = next(n for n, c in enumerate(cmds) if "masquerade" in c)
    assert chain < rule


def test_ordering_namespaces_first_links_before_addresses() -> None:
    cmds = plan_lab("gh00aa", 2).setup_commands()
    adds = [n for n, c in enumerate(cmds) if c[:3] == ["ip", "netns", "add"]]
    assert adds == list(range(len(adds)))
    created: set[str] = {"lo"}
    for c in cmds:
        if "link" in c and "add" in c and c[0] == "ip":
            created.add(c[c.index("add") + 1])
            if "peer" in c:
                created.add(c[c.index("name") + 1])
        if "dev" in c:
            assert c[c.index("dev") + 1] in created, c


def test_tbf_only_with_bandwidth() -> None:
    assert not [c for c in plan_lab("gh00aa", 2).setup_commands() if c[0] == "tc"]
    tc = [c for c in plan_lab("gh00aa", 2, bandwidth="20mbit").setup_commands() if c[0] == "tc"]
    assert _joined(tc) == [
        f"tc -n gh00aa-r{i} qdisc add dev gh00aa-{side}{i} root tbf rate 20mbit "
        "burst 32kbit latency 400ms"
        for i in (1, 2) for side in ("w", "l")
    ]


def test_fast_links_get_a_bigger_bucket() -> None:
    tc = [c for c in plan_lab("gh00aa", 1, bandwidth="1gbit").setup_commands() if c[0] == "tc"]
    assert tc[0][tc[0].index("burst") + 1] == "500000b"


def test_mtu_on_every_bridge_link_only() -> None:
    assert not [c for c in plan_lab("gh00aa", 1).setup_commands() if "mtu" in c]
    cmds = plan_lab("gh00aa", 2, mtu=1380).setup_commands()
    with_mtu = {c[c.index("set") + 1] for c in cmds if "mtu" in c}
    assert with_mtu == {"gh00aa-nc", "gh00aa-ctl", "gh00aa-n1", "gh00aa-w1",
                        "gh00aa-n2", "gh00aa-w2"}
    assert all(c[c.index("mtu") + 1] == "1380" for c in cmds if "mtu" in c)


def test_teardown_deletes_every_namespace() -> None:
    plan = plan_lab("gh00aa", 2)
    assert plan.teardown_commands() == [["ip", "netns", "del", ns]
                                        for ns in reversed(plan.namespaces)]


@pytest.mark.parametrize("kwargs", [
    {"prefix": "x1", "friends": 1},
    {"prefix": "gh-a", "friends": 1},
    {"prefix": "GH00", "friends": 1},
    {"prefix": "gh123456789", "friends": 1},
    {"prefix": "gh00", "friends": 0},
    {"prefix": "gh00", "friends": MAX_FRIENDS + 1},
    {"prefix": "gh00", "friends": 1, "bandwidth": "fast"},
    {"prefix": "gh00", "friends": 1, "bandwidth": "0mbit"},
    {"prefix": "gh00", "friends": 1, "bandwidth": "20mbit; rm"},
    {"prefix": "gh00", "friends": 1, "mtu": 100},
])
def test_rejects_bad_input(kwargs: dict) -> None:
    with pytest.raises(LabError):
        plan_lab(**kwargs)


def test_namespace_pattern_separates_prefixes() -> None:
    m = NAMESPACE_RE.match("gh12ab-f3")
    assert m and m.group(1) == "gh12ab"
    assert not NAMESPACE_RE.match("gh12ab-f3x")
    assert not NAMESPACE_RE.match("docker-net")


def test_exec_argv() -> None:
    assert netns.exec_argv(None, ["true"]) == ["true"]
    assert netns.exec_argv("gh00-f1", ["true"]) == ["ip", "netns", "exec", "gh00-f1", "true"]


def test_state_roundtrip(tmp_path: Path) -> None:
    plan = plan_lab("gh00aa", 1)
    st = state.LabState("gh00aa", "netns", tmp_path, list(plan.hosts), {"ctl": 123})
    path = state.save(st)
    assert path == tmp_path / state.STATE_FILE
    assert state.load(path) == st
    assert [p.name for p in tmp_path.iterdir()] == [state.STATE_FILE]  # no temp left


def test_state_errors(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="no lab state"):
        state.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"prefix": "gh00", "mode": "vm", "dir": "/x"}')
    with pytest.raises(LabError, match="unreadable"):
        state.load(bad)


def test_same_router_friends_share_router_one() -> None:
    plan = plan_lab("gh00aa", 2, bandwidth="20mbit", same_router=1)
    mate = plan.host("friend3")
    assert mate.namespace == "gh00aa-f3" and mate.address == "192.168.3.2"
    assert mate.public_address == plan.host("friend1").public_address
    assert "gh00aa-f3" in plan.namespaces and "gh00aa-l3" in plan.interfaces()
    cmds = _joined(plan.setup_commands())
    assert "ip -n gh00aa-r1 link add gh00aa-l3 type veth peer name gh00aa-f3 netns gh00aa-f3" \
        in cmds
    assert any(c.startswith("ip netns exec gh00aa-r1 nft insert rule") and "gh00aa-l3" in c
               for c in cmds)
    assert "tc -n gh00aa-r1 qdisc add dev gh00aa-l3 root tbf rate 20mbit burst 32kbit " \
           "latency 400ms" in cmds
    assert all(len(i) <= IFNAMSIZ for i in plan.interfaces())


def test_same_router_is_bounded() -> None:
    with pytest.raises(LabError, match="same_router"):
        plan_lab("gh00aa", MAX_FRIENDS, same_router=1)


def test_port_forward_is_a_dnat_and_a_forward_accept() -> None:
    cmds = [" ".join(c) for c in port_forward_commands("gh00aa", "gh00aa-w2", "udp", 51821,
                                                         "192.168.2.2", 51821)]
    assert any("prerouting" in c and "type nat hook prerouting priority dstnat" in c
               for c in cmds)
    assert 'iifname "gh00aa-w2" udp dport 51821 dnat to 192.168.2.2:51821' in cmds[1]
    assert cmds[2].startswith("nft insert rule ip gh00aa forward") and "ct status dnat" in cmds[2]
    with pytest.raises(LabError, match="protocol"):
        port_forward_commands("gh00aa", "gh00aa-w2", "icmp", 1, "192.168.2.2", 1)
    with pytest.raises(LabError, match="port forward"):
        port_forward_commands("gh00aa", "gh00aa-w2", "udp", 0, "192.168.2.2", 1)
