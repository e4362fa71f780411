"""Overlay addresses: hub at .1, lowest free, never a taken or retired one (property tests)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from gpuhive.overlay import addressing
from gpuhive.overlay.errors import AddressPoolExhausted, OverlayError


def test_hub_and_first_allocations() -> None:
    assert addressing.hub_address("10.77.0.0/16") == "10.77.0.1"
    assert addressing.allocate("10.77.0.0/16", [], []) == "10.77.0.2"
    assert addressing.allocate("10.77.0.0/16", ["10.77.0.2"], ["10.77.0.3"]) == "10.77.0.4"
    # A hole left by an address that is neither taken nor retired is filled first.
    assert addressing.allocate("10.77.0.0/16", ["10.77.0.3"], []) == "10.77.0.2"
    assert addressing.interface_address("10.77.0.9", "10.77.0.0/16") == "10.77.0.9/16"


def test_addresses_outside_the_subnet_are_ignored() -> None:
    assert addressing.allocate("10.77.0.0/16", ["10.78.0.2", "192.168.1.2"], []) == "10.77.0.2"


def test_exhaustion_is_a_clear_error() -> None:
    net = "10.9.0.0/29"  # .1 hub, .2-.6 nodes, .7 broadcast
    with pytest.raises(AddressPoolExhausted, match="no free overlay address") as err:
        addressing.allocate(net, [f"10.9.0.{i}" for i in (2, 3, 4)], ["10.9.0.5", "10.9.0.6"])
    assert "larger" in err.value.hint


@pytest.mark.parametrize("bad", ["10.77.0.1/16", "nonsense", "fd00::/64", "10.0.0.0/30"])
def test_bad_subnets(bad: str) -> None:
    with pytest.raises(OverlayError):
        addressing.parse_subnet(bad)


def test_bad_registry_address() -> None:
    with pytest.raises(OverlayError, match="bad overlay address"):
        addressing.allocate("10.77.0.0/16", ["10.77.0.x"], [])


def test_assign_keeps_current_and_rejects_invalid_current() -> None:
    net = "10.77.0.0/16"
    assert addressing.assign(net, "10.77.0.9", ["10.77.0.9", "10.77.0.2"], []) == "10.77.0.9"
    assert addressing.assign(net, None, ["10.77.0.2"], []) == "10.77.0.3"
    # The hub's address, one outside the subnet, or a retired one is replaced.
    assert addressing.assign(net, "10.77.0.1", [], []) == "10.77.0.2"
    assert addressing.assign(net, "10.99.0.5", [], []) == "10.77.0.2"
    assert addressing.assign(net, "10.77.0.5", [], ["10.77.0.5"]) == "10.77.0.2"
    # Held by two rows (a corrupted registry): this node gets a fresh one.
    assert addressing.assign(net, "10.77.0.2", ["10.77.0.2", "10.77.0.2"], []) == "10.77.0.3"


@given(st.sets(st.integers(2, 254)), st.sets(st.integers(2, 254)))
def test_allocate_is_lowest_free(taken: set[int], retired: set[int]) -> None:
    free = sorted(set(range(2, 255)) - taken - retired)
    args = ([f"10.1.2.{i}" for i in taken], [f"10.1.2.{i}" for i in retired])
    if not free:
        with pytest.raises(AddressPoolExhausted):
            addressing.allocate("10.1.2.0/24", *args)
        return
    assert addressing.allocate("10.1.2.0/24", *args) == f"10.1.2.{free[0]}"


class Registry(RuleBasedStateMachine):
    """A model registry: enroll, re-enroll (passes its address back), remove, in any order."""

    SUBNET = "10.5.0.0/27"  # 29 node addresses: small enough to run out
    nodes = Bundle("nodes")

    def __init__(self) -> None:
        super().__init__()
        self.addr: dict[int, str] = {}  # live node -> address
        self.retired: set[str] = set()
        self.ever: set[str] = set()
        self.next_id = 0

    def _assign(self, current: str | None) -> str | None:
        try:
            return addressing.assign(self.SUBNET, current, self.addr.values(), self.retired)
        except AddressPoolExhausted:
            assert len(self.addr) + len(self.retired) >= 29
            return None

    @rule(target=nodes)
    def enroll(self) -> int:
        got = self._assign(None)
        node = self.next_id
        self.next_id += 1
        if got is not None:
            assert got not in self.ever, "a new node got an address used before"
            self.addr[node] = got
            self.ever.add(got)
        return node

    @precondition(lambda self: bool(self.addr))
    @rule(node=nodes)
    def re_enroll(self, node: int) -> None:
        if node in self.addr:
            assert self._assign(self.addr[node]) == self.addr[node]

    @rule(node=consumes(nodes))
    def remove(self, node: int) -> None:
        if node in self.addr:
            self.retired.add(self.addr.pop(node))

    @invariant()
    def unique_valid_never_reused(self) -> None:
        live = list(self.addr.values())
        assert len(live) == len(set(live))
        assert not set(live) & self.retired
        net = ipaddress.ip_network(self.SUBNET)
        for a in live:
            assert ipaddress.ip_address(a) in net
            assert a != addressing.hub_address(self.SUBNET)


TestRegistry = Registry.TestCase
TestRegistry.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
