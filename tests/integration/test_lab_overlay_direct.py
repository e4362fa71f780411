"""Direct paths end to end in a lab hive: the controller plans them, agents try them.

friend1 and friend3 share a router (one household), friend2 is behind its own NAT. With
real agents and a real controller, friend1 ↔ friend3 must go direct by themselves (the
controller's ``peers`` message, each agent's direct-path loop), traffic between them must
bypass the hub, every other pair stays on the hub, and `gpuhive overlay status` says so.
Then friend2 declares a port-forwarded endpoint and both its pairs go direct too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from gpuhive.lab import netcheck
from gpuhive.lab.hive import Lab, LabOptions
from gpuhive.lab.labnet import pings, sh, wait_until
from gpuhive.overlay.check_io import Target
from tests.integration.labs import running_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the namespace lab needs root"),
    pytest.mark.skipif(os.environ.get("GPUHIVE_LAB_LOOPBACK") == "1",
                       reason="routers and the overlay need the namespace lab, not loopback"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from running_lab(tmp_path_factory, LabOptions(friends=2, same_router=1,
                                                        heartbeat_interval=0.5, overlay=True))


def _status(lab: Lab) -> dict:
    return json.loads(lab.cli("overlay", "status", "--json", check=True).stdout)


def _modes(lab: Lab) -> dict[tuple[str, str], str]:
    return {(p["a"], p["b"]): p["mode"] for p in _status(lab)["pairs"]}


def _peer(lab: Lab, name: str) -> dict:
    return next(p for p in _status(lab)["peers"] if p["node"] == name)


def _target(lab: Lab, name: str) -> Target[str | None]:
    return Target(name, _peer(lab, name)["overlay_ip"], lab.host(name).namespace)


def test_one_household_goes_direct_and_bypasses_the_hub(lab: Lab) -> None:
    took = wait_until("friend1 <-> friend3 direct",
                      lambda: _modes(lab).get(("friend1", "friend3")) == "direct", 40)
    print(f"\ndirect {took:.1f} s after the lab was up")
    pairs = {(p["a"], p["b"]): p for p in _status(lab)["pairs"]}
    assert pairs[("friend1", "friend3")]["direct_by"] == "same-lan"
    assert pairs[("friend1", "friend2")] == {"a": "friend1", "b": "friend2", "mode": "hub",
                                             "direct_by": "hub"}
    assert pairs[("friend2", "friend3")]["mode"] == "hub"

    # friend1 dials friend3's LAN address, and the /32 routes friend3's overlay IP to it
    f1, f3 = _target(lab, "friend1"), _target(lab, "friend3")
    iface = lab.overlay_iface("friend1")
    assert f"{lab.host('friend3').address}:" in sh(f1.node, "wg", "show", iface, "endpoints")
    assert f"{f3.overlay_ip}/32" in sh(f1.node, "wg", "show", iface, "allowed-ips")

    def hub_bytes() -> int:
        return sum(_peer(lab, n)["rx_bytes"] + _peer(lab, n)["tx_bytes"]
                   for n in ("friend1", "friend3"))

    before = hub_bytes()
    t = netcheck.transfer(f1, f3, nbytes=20_000_000)
    grew = hub_bytes() - before
    print(f"direct 20 MB at {t.mb_per_s:.1f} MB/s; hub counters +{grew} bytes")
    assert t.received == 20_000_000
    assert grew < 1_000_000, f"the hub carried {grew} bytes of a direct transfer"
    assert pings(lab.host("friend2").namespace, f1.overlay_ip, count=2)  # hub still works

    text = lab.cli("overlay", "status", check=True).stdout
    assert "1 of 3 spoke pair(s) direct" in text, text
    assert "same-lan" in text


def test_a_departed_peer_is_dropped_and_a_returning_one_goes_direct_again(lab: Lab) -> None:
    wait_until("friend1 <-> friend3 direct",
               lambda: _modes(lab).get(("friend1", "friend3")) == "direct", 40)
    f3_key = _peer(lab, "friend3")["public_key"]
    ns1, iface = lab.host("friend1").namespace, lab.overlay_iface("friend1")
    lab.kill_node("friend3")
    lab.wait_for({"friend3": "offline"}, timeout=30)
    # no longer a candidate: friend1's agent removes the direct peer (and its /32)
    wait_until("friend1 forgets friend3",
               lambda: f3_key not in sh(ns1, "wg", "show", iface, "peers"), 20)
    assert _modes(lab)[("friend1", "friend3")] == "hub"
    lab.start_agent("friend3")
    lab.wait_for({"friend3": "online"}, timeout=30)
    started = time.monotonic()
    wait_until("friend1 <-> friend3 direct again",
               lambda: _modes(lab).get(("friend1", "friend3")) == "direct", 60)
    print(f"\ndirect again {time.monotonic() - started:.1f} s after friend3 came back")
    ok = pings(ns1, _peer(lab, "friend3")["overlay_ip"], count=2)
    assert ok, _wg_both(lab, "friend1", "friend3")


def _wg_both(lab: Lab, *names: str) -> str:
    """Both ends' `wg show` and the controller's view: what a failed check needs to say why."""
    out = [f"{n}: {sh(lab.host(n).namespace, 'wg', 'show', lab.overlay_iface(n))}"
           for n in names]
    return "\n".join([*out, json.dumps(_status(lab), indent=1)])


def test_a_declared_endpoint_behind_a_port_forward_is_dialled_by_everyone(lab: Lab) -> None:
    # friend2's owner forwards UDP 51821 on the home router and declares it
    public = lab.forward_port("friend2", "udp", 51821, 51821)
    lab.set_config("friend2", overlay_endpoint=public)
    lab.kill_agent("friend2", hard=False)
    lab.start_agent("friend2")
    lab.wait_for({"friend2": "online"}, timeout=30)
    took = wait_until("friend2 direct with both others",
                      lambda: all(_modes(lab).get(p) == "direct"
                                  for p in (("friend1", "friend2"), ("friend2", "friend3"))), 60)
    print(f"\nboth pairs direct {took:.1f} s after friend2 came back")
    pairs = {(p["a"], p["b"]): p["direct_by"] for p in _status(lab)["pairs"]}
    assert pairs[("friend1", "friend2")] == pairs[("friend2", "friend3")] == "declared-endpoint"
    # friend1 dials the declared endpoint; friend2 learned friend1's NAT mapping from its packets
    ns1, iface1 = lab.host("friend1").namespace, lab.overlay_iface("friend1")
    assert public in sh(ns1, "wg", "show", iface1, "endpoints")
    f1, f2 = _target(lab, "friend1"), _target(lab, "friend2")
    hub_before = _peer(lab, "friend2")["rx_bytes"] + _peer(lab, "friend2")["tx_bytes"]
    t = netcheck.transfer(f2, f1, nbytes=10_000_000)  # and back the other way
    grew = _peer(lab, "friend2")["rx_bytes"] + _peer(lab, "friend2")["tx_bytes"] - hub_before
    print(f"friend2 -> friend1 10 MB at {t.mb_per_s:.1f} MB/s; hub counters +{grew} bytes")
    assert t.received == 10_000_000 and grew < 1_000_000
