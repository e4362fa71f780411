"""Drive a WireGuard interface with ``ip``, ``wg`` and ``wireguard-go``. I/O only.

Every function takes ``ns``: None runs on this host, a name runs the same commands inside
that network namespace (``ip netns exec``), which is how the lab drives its hosts.

Kernel WireGuard is used when ``ip link add … type wireguard`` works, otherwise
``wireguard-go -f IFACE``. Its control socket ``/var/run/wireguard/IFACE.sock`` lives on the
filesystem every namespace shares, so interface names must be unique per machine: two lab
hosts with the same name would silently drive each other's device.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gpuhive import pids as _pids
from gpuhive.errors import CommandFailed
from gpuhive.overlay import config as cfg
from gpuhive.overlay.config import Interface, Peer
from gpuhive.overlay.errors import OverlayError, OverlayPermissionError, OverlayUnavailable
from gpuhive.overlay.parse import Dump, PeerStatus, has_net_admin, parse_dump, parse_host_routes
from gpuhive.overlay.sockbuf import grow_udp_buffers
from gpuhive.overlay.sync import peer_changes, route_changes
from gpuhive.sysrun import exec_argv, run

SOCKET_DIR = Path("/var/run/wireguard")
PRIVILEGE_HINT = ("run the agent as root, or give it CAP_NET_ADMIN (systemd: "
                  "AmbientCapabilities=CAP_NET_ADMIN); everything else works without the overlay")
_DENIED = ("Operation not permitted", "Permission denied", "must be run as root")
_NO_KERNEL = ("Unknown device type", "not supported", "Not supported")
# Daemons started by this process, kept so they are reaped (no zombie, no ResourceWarning).
_started: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Device:
    """A WireGuard interface that is up. ``pid``: the wireguard-go daemon, if userspace."""

    name: str
    ns: str | None
    kind: Literal["kernel", "userspace"]
    pid: int | None
    listen_port: int
    public_key: str


# ---------------------------------------------------------------- commands


def _run(ns: str | None, argv: list[str], *, timeout_s: float = 30.0) -> str:
    try:
        return run(exec_argv(ns, argv), timeout_s=timeout_s)
    except CommandFailed as exc:
        tail = " | ".join(exc.data.get("output_tail", []))
        where = f" in namespace {ns}" if ns else ""
        if any(d in tail for d in _DENIED):
            raise OverlayPermissionError(
                f"`{' '.join(argv)}`{where} was refused: {tail}", hint=PRIVILEGE_HINT,
                argv=argv, ns=ns) from exc
        raise OverlayError(f"`{' '.join(argv)}`{where} failed: {tail or exc.message}",
                           hint=exc.hint, argv=argv, ns=ns, output_tail=tail) from exc


def _ok(ns: str | None, argv: list[str]) -> bool:
    try:
        _run(ns, argv)
    except OverlayError:
        return False
    return True


def check_privileges() -> None:
    """Raise OverlayPermissionError unless this process may create network interfaces."""
    if os.geteuid() == 0:
        return
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    if not has_net_admin(status):
        raise OverlayPermissionError(
            "the WireGuard overlay needs root or CAP_NET_ADMIN, and this process has neither",
            hint=PRIVILEGE_HINT, uid=os.geteuid())


def _need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        raise OverlayUnavailable(f"`{tool}` is not installed", hint=f"install {package}",
                                 tool=tool)


def link_exists(name: str, *, ns: str | None = None) -> bool:
    return _ok(ns, ["ip", "link", "show", "dev", name])


# ---------------------------------------------------------------- wireguard-go


def socket_path(name: str) -> Path:
    return SOCKET_DIR / f"{name}.sock"


def _socket_alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def _netns_inode(ns: str | None) -> int | None:
    try:
        return os.stat(f"/run/netns/{ns}" if ns else "/proc/self/ns/net").st_ino
    except OSError:
        return None


def daemon_pids(name: str, *, ns: str | None = None) -> list[int]:
    """wireguard-go processes started by this module (``wireguard-go -f NAME``) in ``ns``."""
    want = _netns_inode(ns)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            inode = os.stat(f"/proc/{entry}/ns/net").st_ino
        except OSError:
            continue
        if (len(argv) >= 3 and os.path.basename(argv[0]) == b"wireguard-go"
                and argv[1:3] == [b"-f", name.encode()] and inode == want
                and _pids.alive(int(entry))):
            found.append(int(entry))
    return found


def _tail(path: Path | None) -> str:
    if path is None or not path.exists():
        return ""
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-5:])


def _start_userspace(name: str, ns: str | None, log_path: Path | None,
                     timeout_s: float) -> int:
    _need("wireguard-go", "wireguard-go (or load the kernel module: modprobe wireguard)")
    if not Path("/dev/net/tun").exists():
        raise OverlayUnavailable("/dev/net/tun is missing: wireguard-go cannot make a device",
                                 hint="load the tun module (modprobe tun) or give the "
                                      "container /dev/net/tun")
    sock = socket_path(name)
    if sock.exists():
        if _socket_alive(sock):
            raise OverlayError(
                f"WireGuard interface name {name} is already served by a wireguard-go "
                f"(its socket {sock} answers), perhaps in another network namespace",
                hint="use a unique interface name on this machine", iface=name)
        sock.unlink(missing_ok=True)  # stale, from a daemon that died
    env = {**os.environ, **cfg.USERSPACE_ENV}
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path or os.devnull, "ab") as log:
        try:
            proc = subprocess.Popen(exec_argv(ns, cfg.userspace_argv(name)), env=env,
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise OverlayError(f"could not start wireguard-go: {exc}") from exc
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OverlayError(f"wireguard-go {name} exited with {proc.returncode}: "
                               f"{_tail(log_path) or 'no output'}",
                               hint=f"see {log_path}" if log_path else "pass log_path to see why",
                               iface=name)
        if sock.exists() and link_exists(name, ns=ns):
            _started[proc.pid] = proc
            return proc.pid
        time.sleep(0.05)
    _pids.terminate([proc.pid], 2.0, group=True)
    raise OverlayError(f"wireguard-go {name} did not make its device in {timeout_s:g}s",
                       hint=_tail(log_path), iface=name)


# ---------------------------------------------------------------- public


def bring_up(iface: Interface, *, subnet: str, hub: bool = False, ns: str | None = None,
             userspace: bool | None = None, log_path: Path | None = None,
             timeout_s: float = 10.0) -> Device:
    """Create (or adopt) the interface and give it key, port, address, mtu, route; up.

    ``userspace``: None tries the kernel module first; True/False forces one. An existing
    WireGuard interface of that name is reconfigured in place, keeping its peers.
    """
    check_privileges()
    _need("wg", "wireguard-tools")
    _need("ip", "iproute2")
    if not Path(iface.private_key_path).is_file():
        raise OverlayError(f"private key file {iface.private_key_path} is missing",
                           hint="make it with gpuhive.overlay.keys.load_or_create")
    name = iface.name
    created = True
    pid: int | None = None
    kind: Literal["kernel", "userspace"] = "kernel"
    if link_exists(name, ns=ns):
        if not _ok(ns, cfg.show_dump_argv(name)):
            raise OverlayError(f"interface {name} exists and is not a WireGuard device",
                               hint="choose another overlay interface name", iface=name)
        created = False
        pids = daemon_pids(name, ns=ns)
        pid = pids[0] if pids else None
        kind = "userspace" if socket_path(name).exists() else "kernel"
    elif userspace is True or not _try_kernel(name, ns, force=userspace is False):
        pid = _start_userspace(name, ns, log_path, timeout_s)
        kind = "userspace"
    try:
        for argv in cfg.interface_argv(iface, subnet=subnet, hub=hub):
            _run(ns, argv)
        dump = read_dump(name, ns=ns)
        if pid is not None:
            # Its UDP sockets exist once it is up with a port; old builds keep 208 KiB.
            grow_udp_buffers(pid)
    except OverlayError:
        if created:
            bring_down(name, ns=ns, pid=pid)
        raise
    return Device(name, ns, kind, pid, dump.interface.listen_port, dump.interface.public_key)


def _try_kernel(name: str, ns: str | None, *, force: bool) -> bool:
    try:
        _run(ns, cfg.link_add_argv(name))
    except OverlayPermissionError:
        raise
    except OverlayError as exc:
        if force or not any(s in exc.message for s in _NO_KERNEL):
            raise
        return False
    return True


def bring_down(name: str, *, ns: str | None = None, pid: int | None = None,
               grace_s: float = 3.0) -> None:
    """Remove the interface, stop the wireguard-go it runs on, remove a stale socket.

    Idempotent. Only daemons this module starts (``wireguard-go -f NAME`` in ``ns``) are
    stopped, plus ``pid`` if given.
    """
    victims = set(daemon_pids(name, ns=ns))
    if pid is not None and _pids.alive(pid):
        victims.add(pid)
    _pids.terminate(sorted(victims), grace_s)
    for p in victims:
        proc = _started.pop(p, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1.0)
    if link_exists(name, ns=ns):
        with contextlib.suppress(OverlayError):
            _run(ns, cfg.link_del_argv(name))
    sock = socket_path(name)
    if sock.exists() and not _socket_alive(sock):
        sock.unlink(missing_ok=True)


def read_dump(name: str, *, ns: str | None = None) -> Dump:
    return parse_dump(_run(ns, cfg.show_dump_argv(name)))


def status(name: str, *, ns: str | None = None) -> list[PeerStatus]:
    return list(read_dump(name, ns=ns).peers)


def apply_peers(name: str, desired: list[Peer], *, ns: str | None = None,
                routes: bool = True) -> list[list[str]]:
    """Make the live peer list equal ``desired`` with ``wg set`` only; return what ran.

    ``routes`` also keeps one /32 route per single-address peer (direct peers) in step.
    """
    cmds = peer_changes(name, read_dump(name, ns=ns).peers, desired)
    for argv in cmds:
        _run(ns, argv)
    if routes:
        have = parse_host_routes(_run(ns, cfg.show_routes_argv(name)))
        for argv in route_changes(name, have, desired):
            _run(ns, argv)
            cmds.append(argv)
    return cmds


def remove_peer(name: str, public_key: str, *, ns: str | None = None) -> bool:
    """Remove one peer (and its /32 routes) live. False if it was not there."""
    peer = read_dump(name, ns=ns).peer(public_key)
    if peer is None:
        return False
    _run(ns, cfg.peer_remove_argv(name, public_key))
    have = parse_host_routes(_run(ns, cfg.show_routes_argv(name)))
    for cidr in peer.allowed_ips:
        if cidr in have:
            _run(ns, cfg.host_route_argv(name, cidr, add=False))
    return True


def local_address_towards(host: str) -> str:
    """This host's source address for packets to ``host`` (its LAN address behind NAT).

    No packet is sent: connecting a UDP socket only picks the route.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, 9))
        except OSError as exc:
            raise OverlayError(f"no route to {host}: {exc}") from exc
        return str(s.getsockname()[0])
