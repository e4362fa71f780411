"""Live peer changes are minimal diffs: unchanged peers get no command at all."""

from __future__ import annotations

import pytest

from gpuhive.overlay.config import Peer
from gpuhive.overlay.errors import OverlayError
from gpuhive.overlay.parse import PeerStatus
from gpuhive.overlay.sync import endpoint_is_literal, peer_changes, route_changes

A, B, C = "A" * 43 + "=", "B" * 43 + "=", "C" * 43 + "="


def status(pub: str, ips: tuple[str, ...], endpoint: str | None = None,
           keepalive: int | None = None) -> PeerStatus:
    return PeerStatus(pub, endpoint, ips, 1700000000, 10, 20, keepalive)


def test_no_change_no_command() -> None:
    cur = [status(A, ("10.77.0.2/32",), "198.18.0.11:40000")]
    # The hub learned A's endpoint by roaming; a desired None must not override it.
    assert peer_changes("w", cur, [Peer(A, ("10.77.0.2/32",))]) == []


def test_add_remove_and_change() -> None:
    cur = [status(A, ("10.77.0.2/32",)), status(B, ("10.77.0.3/32",))]
    want = [Peer(A, ("10.77.0.2/32", "10.77.0.9/32")), Peer(C, ("10.77.0.4/32",))]
    assert peer_changes("w", cur, want) == [
        ["wg", "set", "w", "peer", B, "remove"],
        ["wg", "set", "w", "peer", A, "allowed-ips", "10.77.0.2/32,10.77.0.9/32"],
        ["wg", "set", "w", "peer", C, "allowed-ips", "10.77.0.4/32",
         "persistent-keepalive", "0"],
    ]


def test_allowed_ips_compared_as_sets_of_networks() -> None:
    cur = [status(A, ("10.77.0.3/32", "10.77.0.2/32"))]
    assert peer_changes("w", cur, [Peer(A, ("10.77.0.2/32", "10.77.0.3"))]) == []


def test_endpoint_and_keepalive_changes() -> None:
    cur = [status(A, ("10.77.0.0/16",), "198.18.0.1:51820", 25)]
    assert peer_changes("w", cur, [Peer(A, ("10.77.0.0/16",), "198.18.0.2:51820", 25)]) == [
        ["wg", "set", "w", "peer", A, "allowed-ips", "10.77.0.0/16",
         "endpoint", "198.18.0.2:51820"]]
    assert peer_changes("w", cur, [Peer(A, ("10.77.0.0/16",), None, None)]) == [
        ["wg", "set", "w", "peer", A, "allowed-ips", "10.77.0.0/16",
         "persistent-keepalive", "0"]]
    # A hostname resolves when set; WireGuard then shows the address: not a change.
    assert peer_changes("w", cur, [Peer(A, ("10.77.0.0/16",), "hub.example:51820", 25)]) == []


def test_duplicate_desired_peer() -> None:
    with pytest.raises(OverlayError, match="twice"):
        peer_changes("w", [], [Peer(A, ()), Peer(A, ())])


def test_endpoint_literal() -> None:
    assert endpoint_is_literal("1.2.3.4:5") and endpoint_is_literal("[fd00::1]:51820")
    assert not endpoint_is_literal("hub.example:51820")


def test_route_changes() -> None:
    want = [Peer(A, ("10.77.0.0/16",)), Peer(B, ("10.77.0.3/32",)), Peer(C, ())]
    assert route_changes("w", {"10.77.0.9/32", "10.77.0.3/32"}, want) == [
        ["ip", "-4", "route", "del", "10.77.0.9/32", "dev", "w"]]
    assert route_changes("w", set(), want) == [
        ["ip", "-4", "route", "replace", "10.77.0.3/32", "dev", "w"]]
