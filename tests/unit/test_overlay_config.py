"""Interface/peer records, wg-quick text and the live argv: pure data, checked as text."""

from __future__ import annotations

import pytest

from gpuhive.overlay import config
from gpuhive.overlay.config import Peer
from gpuhive.overlay.errors import OverlayError

SUB = "10.77.0.0/16"
HUB_PUB = "H" * 43 + "="
A_PUB, B_PUB = "A" * 43 + "=", "B" * 43 + "="


def test_hub_interface_and_peers() -> None:
    iface = config.hub_interface("ghv0", "/k/hub.key", SUB)
    assert (iface.address, iface.listen_port, iface.mtu) == ("10.77.0.1/16", 51820, 1280)
    peers = config.hub_peers([(A_PUB, "10.77.0.2"), (B_PUB, "10.77.0.3")])
    assert peers == [Peer(A_PUB, ("10.77.0.2/32",)), Peer(B_PUB, ("10.77.0.3/32",))]
    assert all(p.endpoint is None and p.keepalive is None for p in peers)


def test_spoke_hub_peer_takes_whole_subnet_with_keepalive() -> None:
    p = config.spoke_hub_peer(HUB_PUB, "203.0.113.5:51820", SUB)
    assert p == Peer(HUB_PUB, ("10.77.0.0/16",), "203.0.113.5:51820", 25)


def test_direct_peer_routed_or_trial() -> None:
    routed = config.direct_peer(A_PUB, "10.77.0.2", "192.168.1.2:51820", routed=True)
    trial = config.direct_peer(A_PUB, "10.77.0.2", "192.168.1.2:51820", routed=False)
    assert routed.allowed_ips == ("10.77.0.2/32",) and trial.allowed_ips == ()
    assert routed.keepalive == trial.keepalive == 25


def test_interface_argv_spoke_and_hub() -> None:
    spoke = config.spoke_interface("ghv0", "/k/s.key", "10.77.0.2", SUB, mtu=1300)
    cmds = [" ".join(c) for c in config.interface_argv(spoke, subnet=SUB, hub=False)]
    assert cmds == [
        "wg set ghv0 private-key /k/s.key listen-port 51820",
        "ip -4 addr replace 10.77.0.2/16 dev ghv0",
        "ip link set mtu 1300 up dev ghv0",
        "ip -4 route replace 10.77.0.0/16 dev ghv0",
    ]
    hub = config.hub_interface("ghv0", "/k/h.key", SUB)
    hub_cmds = [" ".join(c) for c in config.interface_argv(hub, subnet=SUB, hub=True)]
    assert "sysctl -qw net.ipv4.ip_forward=1" in hub_cmds
    assert "sysctl -qw net.ipv4.conf.ghv0.send_redirects=0" in hub_cmds


def test_random_listen_port_is_left_out() -> None:
    spoke = config.spoke_interface("ghv0", "/k", "10.77.0.2", SUB, listen_port=None)
    assert config.interface_argv(spoke, subnet=SUB, hub=False)[0] == [
        "wg", "set", "ghv0", "private-key", "/k"]


def test_peer_argv() -> None:
    p = Peer(A_PUB, ("10.77.0.2/32", "10.77.0.9/32"), "192.168.1.2:51820", 25)
    assert config.peer_set_argv("ghv0", p) == [
        "wg", "set", "ghv0", "peer", A_PUB, "allowed-ips", "10.77.0.2/32,10.77.0.9/32",
        "endpoint", "192.168.1.2:51820", "persistent-keepalive", "25"]
    assert config.peer_set_argv("ghv0", Peer(A_PUB, ())) == [
        "wg", "set", "ghv0", "peer", A_PUB, "allowed-ips", "", "persistent-keepalive", "0"]
    assert config.peer_remove_argv("ghv0", A_PUB) == ["wg", "set", "ghv0", "peer", A_PUB,
                                                      "remove"]
    assert config.host_route_argv("ghv0", "10.77.0.2/32", add=True) == [
        "ip", "-4", "route", "replace", "10.77.0.2/32", "dev", "ghv0"]
    assert config.userspace_argv("ghv0") == ["wireguard-go", "-f", "ghv0"]
    assert config.link_add_argv("ghv0") == ["ip", "link", "add", "ghv0", "type", "wireguard"]


def test_render_spoke_config() -> None:
    spoke = config.spoke_interface("ghv0", "/k/s.key", "10.77.0.2", SUB)
    text = config.render_config(spoke, [config.spoke_hub_peer(HUB_PUB, "h.example:51820", SUB)],
                                subnet=SUB)
    assert "Address = 10.77.0.2/16" in text and "MTU = 1280" in text
    assert "PostUp = wg set %i private-key /k/s.key" in text and "PrivateKey" not in text
    assert f"[Peer]\nPublicKey = {HUB_PUB}\nAllowedIPs = 10.77.0.0/16\n" in text
    assert "Endpoint = h.example:51820\nPersistentKeepalive = 25" in text


def test_render_hub_config_with_inline_key() -> None:
    hub = config.hub_interface("ghv0", "/k/h.key", SUB)
    text = config.render_config(hub, config.hub_peers([(A_PUB, "10.77.0.2")]), subnet=SUB,
                                hub=True, private_key="PRIV")
    assert "PrivateKey = PRIV" in text and "ip_forward=1" in text
    assert "AllowedIPs = 10.77.0.2/32" in text and "Endpoint" not in text


@pytest.mark.parametrize("name", ["", "a" * 16, "has space", "a/b"])
def test_bad_interface_names(name: str) -> None:
    with pytest.raises(OverlayError, match="interface name"):
        config.Interface(name, "/k", "10.77.0.2/16")


def test_bad_mtu() -> None:
    with pytest.raises(OverlayError, match="mtu"):
        config.Interface("ghv0", "/k", "10.77.0.2/16", mtu=100)
