"""The overlay on a namespace lab: hub in ``<p>-ctl``, a spoke per friend. I/O, for tests
and benchmarks only.

Also grows the lab by what the overlay tests need and ``lab.topology`` does not plan: a
second friend behind an existing router (``add_lan_host``: same public address, another
LAN port on the router). Every name starts with the lab prefix, so ``netns.teardown``
removes it too; ``stop_overlay`` stops the wireguard-go daemons and removes their sockets.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gpuhive.lab import netns
from gpuhive.lab.topology import CTL_ADDRESS, Host, LabPlan, new_prefix, plan_lab
from gpuhive.overlay import addressing, config, driver, keys
from gpuhive.overlay.config import Peer
from gpuhive.overlay.direct import NodeNet
from gpuhive.overlay.errors import OverlayError
from gpuhive.sysrun import exec_argv, run


@dataclass
class OverlayHost:
    name: str
    ns: str
    iface: str
    overlay_ip: str
    lan_address: str
    public_address: str
    keys: keys.KeyPair
    key_path: Path
    device: driver.Device | None = None


@dataclass
class LabOverlay:
    plan: LabPlan
    subnet: str
    workdir: Path
    hub_endpoint: str
    hub: OverlayHost
    spokes: dict[str, OverlayHost] = field(default_factory=dict)

    def spoke(self, name: str) -> OverlayHost:
        return self.spokes[name]

    def hosts(self) -> list[OverlayHost]:
        return [self.hub, *self.spokes.values()]

    def hub_peer(self) -> Peer:
        """What every spoke has for the hub."""
        return config.spoke_hub_peer(self.hub.keys.public_key, self.hub_endpoint, self.subnet)

    def hub_peers(self) -> list[Peer]:
        return config.hub_peers((s.keys.public_key, s.overlay_ip) for s in self.spokes.values())

    def node_nets(self) -> list[NodeNet]:
        """What the controller would know about each spoke, read from the lab and the hub."""
        seen = {p.public_key: p.endpoint for p in driver.status(self.hub.iface, ns=self.hub.ns)}
        out = []
        for s in self.spokes.values():
            port = s.device.listen_port if s.device else config.DEFAULT_LISTEN_PORT
            out.append(NodeNet(s.name, s.keys.public_key, s.overlay_ip, s.public_address,
                               s.lan_address, port,
                               observed_endpoint=seen.get(s.keys.public_key)))
        return out


def iface_name(prefix: str, host: str) -> str:
    """A per-lab-host WireGuard name (the wireguard-go socket is machine-wide)."""
    tag = "c" if host == "ctl" else host.removeprefix("friend")
    return config.check_iface_name(f"{prefix}-w{tag}")


def _ns(ns: str, *argv: str) -> None:
    run(exec_argv(ns, list(argv)))


def add_lan_host(plan: LabPlan, router_index: int, suffix: str = "b") -> Host:
    """Another friend behind router ``router_index``: same public address, own LAN port.

    Host ``friend{i}{suffix}`` in ``<p>-f{i}{suffix}`` at 192.168.(100+i).2; the router
    routes between its LAN ports (it masquerades only towards the WAN).
    """
    p, i = plan.prefix, router_index
    router = next(r for r in plan.routers if r.index == i)
    ns, lan, peer = f"{p}-f{i}{suffix}", f"{p}-l{i}{suffix}", f"{p}-f{i}{suffix}"
    net = 100 + i
    cmds = [
        ["ip", "netns", "add", ns],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
        ["ip", "-n", router.namespace, "link", "add", lan, "type", "veth", "peer", "name",
         peer, "netns", ns],
        ["ip", "-n", router.namespace, "addr", "add", f"192.168.{net}.1/24", "dev", lan],
        ["ip", "-n", router.namespace, "link", "set", lan, "up"],
        ["ip", "-n", ns, "addr", "add", f"192.168.{net}.2/24", "dev", peer],
        ["ip", "-n", ns, "link", "set", peer, "up"],
        ["ip", "-n", ns, "route", "add", "default", "via", f"192.168.{net}.1"],
        # The router lets replies in only towards the LAN ports it knows: add this one.
        ["ip", "netns", "exec", router.namespace, "nft", "insert", "rule", "ip", p, "forward",
         "iifname", f'"{router.wan_iface}"', "oifname", f'"{lan}"', "ct", "state",
         "established,related", "accept"],
    ]
    for argv in cmds:
        run(argv)
    return Host(f"friend{i}{suffix}", ns, f"192.168.{net}.2", router.wan_address)


def _host(plan: LabPlan, h: Host, ip: str, workdir: Path) -> OverlayHost:
    assert h.namespace is not None, "the overlay lab needs namespaces (root)"
    key_path = workdir / f"{h.name}.key"
    pair = keys.load_or_create(key_path)
    return OverlayHost(h.name, h.namespace, iface_name(plan.prefix, h.name), ip, h.address,
                       h.public_address, pair, key_path)


def start_overlay(plan: LabPlan, workdir: Path, *, friends: list[Host] | None = None,
                  subnet: str = addressing.DEFAULT_SUBNET, mtu: int = config.DEFAULT_MTU,
                  port: int = config.DEFAULT_LISTEN_PORT) -> LabOverlay:
    """Hub on the controller, a spoke on every friend (or ``friends``), all peered."""
    workdir.mkdir(parents=True, exist_ok=True)
    hub = _host(plan, plan.ctl, addressing.hub_address(subnet), workdir)
    ov = LabOverlay(plan, subnet, workdir, f"{CTL_ADDRESS}:{port}", hub)
    taken: list[str] = []
    for h in friends if friends is not None else plan.friend_hosts:
        ip = addressing.allocate(subnet, taken, [])
        taken.append(ip)
        ov.spokes[h.name] = _host(plan, h, ip, workdir)
    try:
        iface = config.hub_interface(hub.iface, str(hub.key_path), subnet, listen_port=port,
                                     mtu=mtu)
        hub.device = driver.bring_up(iface, subnet=subnet, hub=True, ns=hub.ns,
                                     log_path=workdir / f"{hub.iface}.log")
        driver.apply_peers(hub.iface, ov.hub_peers(), ns=hub.ns)
        for s in ov.spokes.values():
            start_spoke(ov, s, mtu=mtu, port=port)
    except BaseException:
        stop_overlay(ov)
        raise
    return ov


def start_spoke(ov: LabOverlay, s: OverlayHost, *, mtu: int = config.DEFAULT_MTU,
                port: int = config.DEFAULT_LISTEN_PORT) -> None:
    iface = config.spoke_interface(s.iface, str(s.key_path), s.overlay_ip, ov.subnet,
                                   listen_port=port, mtu=mtu)
    s.device = driver.bring_up(iface, subnet=ov.subnet, ns=s.ns,
                               log_path=ov.workdir / f"{s.iface}.log")
    driver.apply_peers(s.iface, [ov.hub_peer()], ns=s.ns)


def stop_overlay(ov: LabOverlay) -> None:
    """Bring every interface down; keep going past errors, raise the first at the end."""
    first: OverlayError | None = None
    for h in ov.hosts():
        try:
            driver.bring_down(h.iface, ns=h.ns, pid=h.device.pid if h.device else None)
        except OverlayError as exc:
            first = first or exc
        with contextlib.suppress(OSError):
            driver.socket_path(h.iface).unlink(missing_ok=True)
    if first:
        raise first


def allreduce(a: OverlayHost | tuple[str, str, str], b: OverlayHost | tuple[str, str, str], *,
              mb: float = 100.0, port: int = 29511, timeout_s: float = 240.0,
              python: str | None = None) -> list[dict[str, object]]:
    """A 2-rank gloo all-reduce of ``mb`` MB between two lab hosts; each rank's JSON.

    A host is an ``OverlayHost`` (its overlay address and interface) or (ns, ip, iface)
    for any other path, e.g. a plain veth. Rank 0 runs on ``a`` and hosts the rendezvous.
    """
    hosts = [h if isinstance(h, tuple) else (h.ns, h.overlay_ip, h.iface) for h in (a, b)]
    init = f"tcp://{hosts[0][1]}:{port}"
    procs = []
    for rank, (ns, _ip, iface) in enumerate(hosts):
        env = {**os.environ, "GLOO_SOCKET_IFNAME": iface}
        argv = [python or sys.executable, "-m", "gpuhive.overlay.gloo_probe", "--rank",
                str(rank), "--world-size", "2", "--init", init, "--mb", f"{mb:g}"]
        procs.append(subprocess.Popen(exec_argv(ns, argv), env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True,
                                      stdin=subprocess.DEVNULL, start_new_session=True))
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout_s)
            lines = stdout.strip().splitlines()
            if p.returncode != 0 or not lines:
                raise OverlayError(f"gloo all-reduce rank exited {p.returncode}: "
                                   + " | ".join(stderr.strip().splitlines()[-5:]))
            out.append(dict(json.loads(lines[-1])))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


# ---------------------------------------------------------------- test and bench helpers


def sh(ns: str | None, *argv: str, check: bool = True) -> str:
    return run(exec_argv(ns, list(argv)), check=check, timeout_s=120)


def pings(ns: str | None, ip: str, *, count: int = 1, wait_s: int = 1) -> bool:
    argv = exec_argv(ns, ["ping", "-c", str(count), "-W", str(wait_s), ip])
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          stdin=subprocess.DEVNULL).returncode == 0


def wait_until(what: str, check: Callable[[], bool], timeout_s: float,
               interval_s: float = 0.5) -> float:
    """Seconds it took for ``check`` to hold; AssertionError at the deadline."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s:g}s")
        time.sleep(interval_s)


def leftovers(prefix: str) -> list[str]:
    """wireguard-go daemons or control sockets of lab ``prefix`` that still exist."""
    left = []
    marker = f"{prefix}-w".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                if (os.path.basename(argv[0]) == b"wireguard-go"
                        and any(a.startswith(marker) for a in argv[1:])):
                    left.append(f"pid {entry}")
    left += [str(s) for s in driver.SOCKET_DIR.glob(f"{prefix}-*.sock")]
    return left


@contextlib.contextmanager
def lab_overlay(workdir: Path, friends: int, *, mtu: int | None = None,
                lan_hosts: tuple[int, ...] = ()) -> Iterator[LabOverlay]:
    """A fresh lab (own prefix), the hub on ctl and a spoke on every friend, plus one more
    friend behind router i for each i in ``lan_hosts`` (``friend{i}b``). Everything is
    removed on the way out, also on failure; a clean exit checks nothing is left."""
    plan = plan_lab(new_prefix(), friends, mtu=mtu)
    ov: LabOverlay | None = None
    try:
        netns.build(plan)
        extra = [add_lan_host(plan, i) for i in lan_hosts]
        ov = start_overlay(plan, workdir, friends=[*plan.friend_hosts, *extra])
        yield ov
    finally:
        try:
            if ov is not None:
                stop_overlay(ov)
        finally:
            netns.teardown(plan.prefix)
    left = leftovers(plan.prefix)
    if left:
        raise OverlayError(f"lab {plan.prefix} left behind: {', '.join(left)}")
