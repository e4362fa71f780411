"""The WireGuard overlay on the namespace lab: a hub on the controller, spokes behind NAT.

Each test builds its own lab (fresh prefix) and removes everything in ``finally``,
wireguard-go daemons and their /var/run/wireguard sockets included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gpuhive
from gpuhive.lab import labnet, netcheck, netns
from gpuhive.lab.labnet import lab_overlay, leftovers, pings, sh, wait_until
from gpuhive.overlay import check, driver
from gpuhive.overlay.check_io import Target

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the namespace lab needs root"),
]


def targets(ov: labnet.LabOverlay) -> list[Target[str | None]]:
    return [Target(h.name, h.overlay_ip, h.ns) for h in ov.hosts()]


def test_all_pairs_reach_each_other_through_the_hub(tmp_path: Path) -> None:
    with lab_overlay(tmp_path / "wg", 3) as ov:
        hub = ov.hub
        assert hub.device is not None and hub.device.kind in ("kernel", "userspace")
        # Every spoke is behind NAT: the hub sees it at its router's public address.
        seen = {p.public_key: p.endpoint for p in driver.status(hub.iface, ns=hub.ns)}
        wait_until("every spoke handshakes",
                   lambda: all(p.latest_handshake for p in driver.status(hub.iface, ns=hub.ns)),
                   15)
        for s in ov.spokes.values():
            assert seen[s.keys.public_key] == f"{s.public_address}:51820"
        if hub.device.kind == "userspace":  # 7 MiB socket buffers, as newer wireguard-go sets
            assert "rb14680064" in sh(hub.ns, "ss", "-uamn", "sport", "=", ":51820")
        # Ping every ordered pair, hub included; a 50 MB TCP transfer between the spokes.
        pings_only = netcheck.run_checks(targets(ov), nbytes=0)
        m = check.build_matrix([h.name for h in ov.hosts()], pings_only)
        assert all(c.summary != "no ping" for c in m.cells.values()), check.render(m)
        spokes = [t for t in targets(ov) if t.name != "ctl"]
        results = netcheck.run_checks(spokes, nbytes=50_000_000)
        m = check.build_matrix([t.name for t in spokes], results)
        print("\n" + check.render(m))
        assert m.ok, check.render(m)
        # The hub forwards; the spokes have no other route to each other.
        assert sh(ov.spoke("friend1").ns, "ip", "route", "get", ov.spoke("friend2").overlay_ip
                  ).split()[2] == ov.spoke("friend1").iface
        # Teardown removes the interfaces, the daemons and their sockets.
        labnet.stop_overlay(ov)
        for h in ov.hosts():
            assert not driver.link_exists(h.iface, ns=h.ns)
        assert leftovers(ov.plan.prefix) == []


def test_removed_peer_is_dropped_within_seconds_others_unaffected(tmp_path: Path) -> None:
    with lab_overlay(tmp_path / "wg", 3) as ov:
        hub, a, b, gone = ov.hub, ov.spoke("friend1"), ov.spoke("friend2"), ov.spoke("friend3")
        assert pings(gone.ns, a.overlay_ip) and pings(a.ns, b.overlay_ip)
        before = {p.public_key: p.latest_handshake for p in driver.status(hub.iface, ns=hub.ns)}
        # A steady ping between the others runs across the removal.
        steady = subprocess.Popen(netns.exec_argv(a.ns, ["ping", "-c", "20", "-i", "0.2",
                                                         "-W", "1", b.overlay_ip]),
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        t0 = time.monotonic()
        assert driver.remove_peer(hub.iface, gone.keys.public_key, ns=hub.ns)
        took = time.monotonic() - t0
        assert not driver.remove_peer(hub.iface, gone.keys.public_key, ns=hub.ns)
        out, _ = steady.communicate(timeout=30)
        print(f"\nremoved in {took * 1000:.0f} ms")
        # Its packets are dropped at once, in both directions and towards other spokes.
        assert not pings(gone.ns, hub.overlay_ip)
        assert not pings(hub.ns, gone.overlay_ip)
        assert not pings(gone.ns, a.overlay_ip)
        assert "20 received, 0% packet loss" in out, out
        after = {p.public_key: p.latest_handshake for p in driver.status(hub.iface, ns=hub.ns)}
        assert gone.keys.public_key not in after
        for s in (a, b):  # the others kept their sessions: no restart, no new handshake
            assert after[s.keys.public_key] == before[s.keys.public_key]


def test_public_ip_change_heals_after_next_keepalive(tmp_path: Path) -> None:
    with lab_overlay(tmp_path / "wg", 2) as ov:
        hub, a, b = ov.hub, ov.spoke("friend1"), ov.spoke("friend2")
        router = ov.plan.routers[0]
        assert pings(b.ns, a.overlay_ip)
        # The ISP hands friend1's router a new address. Its masquerade follows the interface
        # address and drops the old mappings; the router needs no default route (ctl is on
        # the same /24).
        sh(router.namespace, "ip", "addr", "del", f"{router.wan_address}/24", "dev",
           router.wan_iface)
        sh(router.namespace, "ip", "addr", "add", "198.18.0.51/24", "dev", router.wan_iface)

        def hub_sees_new_endpoint() -> bool:
            peer = driver.read_dump(hub.iface, ns=hub.ns).peer(a.keys.public_key)
            return peer is not None and peer.endpoint == "198.18.0.51:51820"

        # Nothing is done on friend1: its PersistentKeepalive (25 s) carries the new
        # address to the hub, which takes it from the authenticated packet.
        took = wait_until("hub learns friend1's new public address", hub_sees_new_endpoint, 40)
        print(f"\nhub learned the new endpoint after {took:.1f}s")
        assert pings(hub.ns, a.overlay_ip, count=2)
        assert pings(b.ns, a.overlay_ip, count=2)


def test_mtu_limited_underlay_passes_bulk_and_allreduce(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    assert torch.__version__.startswith("2.13.0")
    with lab_overlay(tmp_path / "wg", 2, mtu=1340) as ov:
        a, b = ov.spoke("friend1"), ov.spoke("friend2")
        router = ov.plan.routers[0].namespace
        # The underlay really is 1340: a 1341-byte DF packet does not pass, 1340 does.
        sh(router, "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1312", "198.18.0.1")
        assert subprocess.run(netns.exec_argv(router, ["ping", "-c", "1", "-W", "1", "-M", "do",
                                                       "-s", "1313", "198.18.0.1"]),
                              capture_output=True).returncode != 0
        t = netcheck.transfer(Target(a.name, a.overlay_ip, a.ns),
                              Target(b.name, b.overlay_ip, b.ns), nbytes=100_000_000,
                              timeout_s=60)
        assert t.ok and t.received == 100_000_000, t
        ranks = labnet.allreduce(a, b, mb=100)
        print(f"\n1340-byte underlay: TCP {t.mb_per_s:.1f} MB/s, gloo all-reduce 100 MB "
              f"in {ranks[0]['seconds']:.2f}s ({ranks[0]['mb_per_s']:.1f} MB/s)")
        assert all(r["ok"] for r in ranks), ranks


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")
def test_unprivileged_bring_up_says_so_plainly(tmp_path: Path) -> None:
    """A real process without root or CAP_NET_ADMIN gets OverlayPermissionError and a hint."""
    tmp_path.chmod(0o755)
    key = tmp_path / "k"
    key.write_text("x")
    code = (
        "from gpuhive.overlay import config, driver\n"
        "from gpuhive.overlay.errors import OverlayError\n"
        f"i = config.spoke_interface('ghnopriv0', {str(key)!r}, '10.77.0.2', '10.77.0.0/16')\n"
        "try:\n"
        "    driver.bring_up(i, subnet='10.77.0.0/16')\n"
        "except OverlayError as e:\n"
        "    print(e.code, '|', e.message, '|', e.hint)\n"
    )
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          "--inh-caps=-all", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60, cwd="/",
                         env={**os.environ, "PYTHONPATH": str(Path(gpuhive.__file__).parents[1])})
    assert out.stdout.startswith("overlay_permission | "), out.stdout + out.stderr
    assert "root or CAP_NET_ADMIN" in out.stdout and "without the overlay" in out.stdout
    assert not driver.link_exists("ghnopriv0")
