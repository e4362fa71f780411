"""Direct spoke-to-spoke paths on the namespace lab, the hub as fallback.

Two friends behind the same router go direct (the hub's counters do not move); a blocked
direct path stays on the hub without a lost packet and is retried; a declared endpoint
(port forward) is dialled; NAT-to-NAT hole punching is attempted and its outcome recorded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from gpuhive.lab import netcheck, netns
from gpuhive.lab.labnet import LabOverlay, lab_overlay, pings, sh, wait_until
from gpuhive.overlay import direct, driver, paths
from gpuhive.overlay.check import TransferResult
from gpuhive.overlay.check_io import Target
from gpuhive.overlay.direct import NodeNet
from gpuhive.overlay.paths import Action, Mode, Timing
from gpuhive.overlay.spoke import DirectPaths

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the namespace lab needs root"),
]

FAST = Timing(window_s=4, retry_base_s=2, retry_cap_s=4)


class Spokes:
    """Every spoke's direct-path loop, ticked together as the agents would."""

    def __init__(self, ov: LabOverlay, nets: list[NodeNet], *, punch: bool = False,
                 timing: Timing = FAST) -> None:
        self.ov = ov
        self.plans = direct.plan_direct(nets, punch=punch)
        self.loops = {n: DirectPaths(ov.spoke(n).iface, ns=ov.spoke(n).ns, timing=timing)
                      for n in self.plans}
        self.rng = random.Random(7)
        self.actions: list[tuple[str, str, Action]] = []

    def tick(self) -> None:
        for name, loop in self.loops.items():
            acts = loop.tick(self.ov.hub_peer(), self.plans[name], time.time(),
                             self.rng.random())
            self.actions += [(name, pub, a) for pub, a in acts.items() if a is not Action.NONE]

    def modes(self) -> dict[tuple[str, str], str]:
        return paths.pair_modes(self.loops, {n: lp.summary() for n, lp in self.loops.items()})

    def until(self, what: str, cond: str, pair: tuple[str, str], timeout_s: float) -> float:
        def check() -> bool:
            self.tick()
            return self.modes()[pair] == cond
        return wait_until(what, check, timeout_s, 0.5)


def hub_bytes(ov: LabOverlay, *names: str) -> int:
    pubs = {ov.spoke(n).keys.public_key for n in names}
    return sum(p.rx_bytes + p.tx_bytes for p in driver.status(ov.hub.iface, ns=ov.hub.ns)
               if p.public_key in pubs)


def send(ov: LabOverlay, src: str, dst: str, nbytes: int) -> TransferResult:
    a, b = ov.spoke(src), ov.spoke(dst)
    return netcheck.transfer(Target(a.name, a.overlay_ip, a.ns),
                             Target(b.name, b.overlay_ip, b.ns), nbytes=nbytes)


def test_friends_behind_one_router_go_direct_and_bypass_the_hub(tmp_path: Path) -> None:
    with lab_overlay(tmp_path / "wg", 2, lan_hosts=(1,)) as ov:
        nets = ov.node_nets()
        spokes = Spokes(ov, nets)
        assert [(c.peer, c.endpoint, c.reason) for c in spokes.plans["friend1"]] == [
            ("friend1b", "192.168.101.2:51820", "same-lan")]
        assert spokes.plans["friend2"] == []
        took = spokes.until("friend1 <-> friend1b direct", "direct",
                            ("friend1", "friend1b"), 20)
        print(f"\ndirect after {took:.1f}s; modes {spokes.modes()}")
        assert spokes.modes()[("friend1", "friend2")] == "hub"
        a = ov.spoke("friend1")
        assert "192.168.101.2:51820" in sh(a.ns, "wg", "show", a.iface, "endpoints")
        assert sh(a.ns, "ip", "-4", "route", "show", "dev", a.iface).splitlines()[1].startswith(
            f"{ov.spoke('friend1b').overlay_ip} ")  # the /32 next to the subnet route
        before = hub_bytes(ov, "friend1", "friend1b")
        t = send(ov, "friend1", "friend1b", 50_000_000)
        grew = hub_bytes(ov, "friend1", "friend1b") - before
        print(f"direct 50 MB at {t.mb_per_s:.1f} MB/s; hub counters +{grew} bytes")
        assert t.received == 50_000_000
        assert grew < 1_000_000, f"the hub carried {grew} bytes of a direct transfer"
        # The hub still carries everything else.
        assert pings(ov.spoke("friend2").ns, a.overlay_ip, count=2)


def test_blocked_direct_path_stays_on_hub_silently_and_is_retried(tmp_path: Path) -> None:
    with lab_overlay(tmp_path / "wg", 1, lan_hosts=(1,)) as ov:
        p, r = ov.plan.prefix, ov.plan.routers[0].namespace
        # The router stops forwarding between its two LAN ports (as a guest Wi-Fi would).
        sh(r, "nft", "add", "table", "ip", "blk")
        sh(r, "nft", "add", "chain", "ip", "blk", "guest",
           "{ type filter hook forward priority filter ; policy accept ; }")
        sh(r, "nft", "add", "rule", "ip", "blk", "guest", "iifname", f'"{p}-l1"', "oifname",
           f'"{p}-l1b"', "drop")
        sh(r, "nft", "add", "rule", "ip", "blk", "guest", "iifname", f'"{p}-l1b"', "oifname",
           f'"{p}-l1"', "drop")
        a, b = ov.spoke("friend1"), ov.spoke("friend1b")
        steady = subprocess.Popen(netns.exec_argv(a.ns, ["ping", "-c", "60", "-i", "0.2",
                                                         "-W", "1", b.overlay_ip]),
                                  stdout=subprocess.PIPE, text=True)
        spokes = Spokes(ov, ov.node_nets())

        def both_fell_back() -> bool:
            spokes.tick()
            fell = {n for n, _pub, act in spokes.actions if act is Action.FALL_BACK}
            return fell == {"friend1", "friend1b"}

        wait_until("both sides give the direct path up", both_fell_back, 20)
        assert spokes.modes()[("friend1", "friend1b")] != "direct"
        out, _ = steady.communicate(timeout=60)
        # Not a single packet lost meanwhile: the trial never took traffic.
        assert "60 received, 0% packet loss" in out, out
        sh(r, "nft", "delete", "table", "ip", "blk")
        took = spokes.until("retried and direct", "direct", ("friend1", "friend1b"), 30)
        print(f"\nactions {[(n, a.value) for n, _p, a in spokes.actions]}; "
              f"direct {took:.1f}s after unblocking")
        before = hub_bytes(ov, "friend1", "friend1b")
        assert send(ov, "friend1", "friend1b", 20_000_000).received == 20_000_000
        assert hub_bytes(ov, "friend1", "friend1b") - before < 1_000_000


def test_declared_endpoint_behind_a_port_forward(tmp_path: Path) -> None:
    with lab_overlay(tmp_path / "wg", 2) as ov:
        p, r2 = ov.plan.prefix, ov.plan.routers[1]
        # friend2's owner forwards UDP 51820 on the router to the box, and declares it.
        sh(r2.namespace, "nft", "add", "chain", "ip", p, "prerouting",
           "{ type nat hook prerouting priority dstnat ; policy accept ; }")
        sh(r2.namespace, "nft", "add", "rule", "ip", p, "prerouting", "iifname",
           f'"{r2.wan_iface}"', "udp", "dport", "51820", "dnat", "to", "192.168.2.2")
        sh(r2.namespace, "nft", "insert", "rule", "ip", p, "forward", "iifname",
           f'"{r2.wan_iface}"', "ct", "status", "dnat", "accept")
        nets = [dataclasses.replace(n, declared_endpoint="198.18.0.12:51820")
                if n.node == "friend2" else n for n in ov.node_nets()]
        spokes = Spokes(ov, nets)
        assert spokes.plans["friend1"][0].endpoint == "198.18.0.12:51820"
        assert spokes.plans["friend2"][0].endpoint is None  # learned from friend1's packets
        spokes.until("friend1 -> friend2 direct", "direct", ("friend1", "friend2"), 20)
        before = hub_bytes(ov, "friend1", "friend2")
        assert send(ov, "friend2", "friend1", 20_000_000).received == 20_000_000
        assert hub_bytes(ov, "friend1", "friend2") - before < 1_000_000
        b = ov.spoke("friend2")
        # friend2 reaches friend1 at its NAT mapping, learned from the authenticated packets.
        assert "198.18.0.11:" in sh(b.ns, "wg", "show", b.iface, "endpoints")


def test_nat_to_nat_hole_punching_attempt_is_recorded(tmp_path: Path) -> None:
    """Not a promise: record what happens, and that the hub carries the pair regardless."""
    with lab_overlay(tmp_path / "wg", 2) as ov:
        a, b = ov.spoke("friend1"), ov.spoke("friend2")
        assert pings(a.ns, b.overlay_ip)  # both have talked to the hub: mappings observed
        nets = ov.node_nets()
        spokes = Spokes(ov, nets, punch=True, timing=Timing(window_s=6, retry_base_s=2,
                                                            retry_cap_s=4))
        plan = {n: [(c.endpoint, c.reason) for c in cs] for n, cs in spokes.plans.items()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and spokes.modes()[("friend1", "friend2")] != "direct":
            spokes.tick()
            time.sleep(0.5)
        outcome = spokes.modes()[("friend1", "friend2")]
        record = {
            "plan": plan, "outcome": outcome,
            "attempts": sum(1 for _n, _p, act in spokes.actions if act is Action.TRY),
            "endpoints_seen_by_spokes": {
                h.name: sh(h.ns, "wg", "show", h.iface, "endpoints").strip() for h in (a, b)},
        }
        (tmp_path / "punch.json").write_text(json.dumps(record, indent=2))
        print("\nNAT-to-NAT punch:", json.dumps(record))
        assert outcome in ("direct", "hub", "trying")
        # Whatever happened, the pair is reachable (direct or through the hub).
        for _ in range(int(FAST.retry_cap_s) + 8):
            spokes.tick()
            if all(st.mode is not Mode.TRYING for lp in spokes.loops.values()
                   for st in lp.states.values()):
                break
            time.sleep(0.5)
        assert pings(a.ns, b.overlay_ip, count=3) and pings(b.ns, a.overlay_ip, count=3)
