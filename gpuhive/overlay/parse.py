"""Pure parsers for ``wg show IFACE dump`` and ``ip -4 route show dev IFACE``.

``wg show IFACE dump`` prints tab-separated lines: first the interface
(private-key, public-key, listen-port, fwmark), then one per peer (public-key,
preshared-key, endpoint, allowed-ips, latest-handshake, transfer-rx, transfer-tx,
persistent-keepalive). "(none)", "off" and 0 mean absent. The private key is read past
and never kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuhive.overlay.errors import OverlayError


@dataclass(frozen=True)
class InterfaceStatus:
    public_key: str
    listen_port: int
    fwmark: str | None


@dataclass(frozen=True)
class PeerStatus:
    public_key: str
    endpoint: str | None
    allowed_ips: tuple[str, ...]
    latest_handshake: int | None  # unix seconds; None: never
    rx_bytes: int
    tx_bytes: int
    keepalive: int | None

    def handshake_age(self, now: float) -> float | None:
        return None if self.latest_handshake is None else max(0.0, now - self.latest_handshake)


@dataclass(frozen=True)
class Dump:
    interface: InterfaceStatus
    peers: tuple[PeerStatus, ...]

    def peer(self, public_key: str) -> PeerStatus | None:
        return next((p for p in self.peers if p.public_key == public_key), None)


def _none(field: str) -> str | None:
    return None if field in ("(none)", "off", "") else field


def _int(field: str, line_no: int) -> int:
    try:
        return int(field)
    except ValueError as exc:
        raise OverlayError(f"wg dump line {line_no}: {field!r} is not a number",
                           hint="is this `wg show IFACE dump` output?") from exc


def parse_dump(text: str) -> Dump:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise OverlayError("empty `wg show dump` output", hint="is the interface up?")
    head = lines[0].split("\t")
    if len(head) != 4:
        raise OverlayError(f"wg dump line 1 has {len(head)} fields, expected 4",
                           hint="is this `wg show IFACE dump` (not `wg show all dump`)?")
    iface = InterfaceStatus(head[1], _int(head[2], 1), _none(head[3]))
    peers = []
    for n, line in enumerate(lines[1:], 2):
        f = line.split("\t")
        if len(f) != 8:
            raise OverlayError(f"wg dump line {n} has {len(f)} fields, expected 8",
                               hint="is this `wg show IFACE dump` output?")
        allowed = _none(f[3])
        handshake = _int(f[4], n)
        keepalive = _none(f[7])
        peers.append(PeerStatus(
            public_key=f[0],
            endpoint=_none(f[2]),
            allowed_ips=tuple(a for a in (allowed or "").split(",") if a),
            latest_handshake=handshake or None,
            rx_bytes=_int(f[5], n),
            tx_bytes=_int(f[6], n),
            keepalive=_int(keepalive, n) if keepalive else None,
        ))
    return Dump(iface, tuple(peers))


def parse_host_routes(text: str) -> set[str]:
    """Host routes (``10.77.0.3`` or ``10.77.0.3/32``) in ``ip -4 route show dev IFACE``."""
    out = set()
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        dst = words[0]
        if "/" not in dst and dst[0].isdigit():
            out.add(f"{dst}/32")
        elif dst.endswith("/32"):
            out.add(dst)
    return out


CAP_NET_ADMIN = 12


def has_net_admin(proc_status: str) -> bool:
    """Whether a ``/proc/PID/status`` text shows CAP_NET_ADMIN in the effective set."""
    for line in proc_status.splitlines():
        if line.startswith("CapEff:"):
            try:
                return bool(int(line.split(":", 1)[1].strip(), 16) >> CAP_NET_ADMIN & 1)
            except ValueError:
                return False
    return False
