"""Pairwise overlay reachability as a matrix, failing pairs explained. Pure.

``check_io.check_pairs`` produces one ``PairResult`` per ordered pair (ping, then a TCP
bulk transfer from src to dst's overlay address), wherever the commands run: on the nodes
over the controller's sessions, or in lab namespaces. This module holds what it decides:
the argv it runs, how their output reads (``parse_ping``, ``parse_transfer``), and
``build_matrix``, which turns the results, plus what the hub knows about each node
(``NodeHint``), into cells with a one-line explanation for every failure.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

STALE_HANDSHAKE_S = 180.0  # WireGuard drops a session this long after its handshake
_LOSS_RE = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT_RE = re.compile(r"= [\d.]+/([\d.]+)/")


@dataclass(frozen=True)
class PairResult:
    src: str
    dst: str
    ping_sent: int = 0
    ping_received: int = 0
    rtt_ms: float | None = None
    transfer_ok: bool | None = None  # None: not attempted
    mb_per_s: float | None = None
    error: str = ""  # why a step failed, as the tool said it
    receiver_error: str = ""  # the transfer failed because its receiver on dst did not run

    @property
    def ping_ok(self) -> bool:
        return self.ping_received > 0


@dataclass(frozen=True)
class TransferResult:
    """One bulk transfer, as its sender reported it (or why there is no report)."""

    ok: bool
    received: int | None = None  # bytes the receiver counted
    mb_per_s: float | None = None
    error: str = ""
    receiver_error: str = ""  # set when the receiver on dst could not run


@dataclass(frozen=True)
class NodeHint:
    """What the hub's ``wg show`` says about a node, to explain failures."""

    handshake_age_s: float | None  # None: never
    endpoint: str | None = None


@dataclass(frozen=True)
class Cell:
    src: str
    dst: str
    ok: bool
    summary: str  # "1.2 ms, 31 MB/s"
    explanation: str = ""


@dataclass(frozen=True)
class Matrix:
    names: tuple[str, ...]
    cells: Mapping[tuple[str, str], Cell] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cells.values())

    def failing(self) -> list[Cell]:
        return [c for c in self.cells.values() if not c.ok]


def parse_ping(text: str) -> tuple[int, int, float | None]:
    """(sent, received, average rtt ms) from iputils ``ping`` output."""
    m = _LOSS_RE.search(text)
    sent, received = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    r = _RTT_RE.search(text)
    return sent, received, float(r.group(1)) if r else None


def parse_transfer(status: int | None, output: str, nbytes: int) -> TransferResult:
    """Read ``python -m gpuhive.overlay.bulk send``'s last line (one JSON object).

    ``status`` None: the sender could not run or its session broke (``output`` says why).
    """
    text = output.strip()
    if not text:
        why = "its session broke" if status is None else f"it exited with {status}"
        return TransferResult(False, error=f"the sender printed nothing ({why})")
    try:
        data = json.loads(text.splitlines()[-1])
    except ValueError:
        data = None
    if not isinstance(data, dict):
        lines = text.splitlines()
        # A broken session's reason is the last line; otherwise show what the tool said.
        said = lines[-1] if status is None else " | ".join(lines[-3:])
        return TransferResult(False, error=said[-200:])
    received = data.get("received")
    received = received if isinstance(received, int) and not isinstance(received, bool) \
        else None
    rate = data.get("mb_per_s")
    mb_per_s = float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) \
        else None
    error = data.get("error")
    if isinstance(error, str) and error:
        return TransferResult(False, received, mb_per_s, error)
    if status == 0 and received == nbytes:
        return TransferResult(True, received, mb_per_s)
    if received is not None and received != nbytes:
        error = f"received {received} of {nbytes} bytes"
    elif status is None:
        error = "the sender's session broke"
    elif status != 0:
        error = f"the sender exited with {status}"
    else:
        error = "the sender's report has no byte count"
    return TransferResult(False, received, mb_per_s, error)


def receiver_failure(status: int | None, output: str) -> str:
    """Why ``bulk recv`` failed ("" when it exited 0): its JSON error, else its last words."""
    if status == 0:
        return ""
    lines = output.strip().splitlines()
    with contextlib.suppress(ValueError, IndexError):
        data = json.loads(lines[-1])
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return str(data["error"])
    return (" | ".join(lines[-3:]) or f"it exited with {status}")[-200:]


def ping_argv(address: str) -> list[str]:
    return ["ping", "-c", "3", "-W", "1", address]


def recv_argv(address: str, port: int, *, python: str = sys.executable,
              timeout_s: float = 30.0) -> list[str]:
    return [python, "-m", "gpuhive.overlay.bulk", "recv", address, str(port),
            "--timeout", f"{timeout_s:g}"]


def send_argv(address: str, port: int, nbytes: int, *, python: str = sys.executable,
              timeout_s: float = 30.0) -> list[str]:
    return [python, "-m", "gpuhive.overlay.bulk", "send", address, str(port), str(nbytes),
            "--timeout", f"{timeout_s:g}"]


def _tunnel_down(name: str, hint: NodeHint | None) -> str:
    if hint is None:
        return ""
    if hint.handshake_age_s is None:
        return (f"{name} has never completed a WireGuard handshake with the hub: its overlay "
                "is not up (no root/CAP_NET_ADMIN on it?) or UDP to the controller's "
                "WireGuard port is blocked on its side")
    if hint.handshake_age_s > STALE_HANDSHAKE_S:
        return (f"{name}'s last handshake with the hub was {hint.handshake_age_s:.0f} s ago: "
                "its tunnel is down (agent stopped, node removed, or its keepalives no "
                "longer get out)")
    return ""


def explain(r: PairResult, hints: Mapping[str, NodeHint], *, nbytes: int) -> str:
    """Why the pair failed, or "" when it did not."""
    size = f"{nbytes / 1e6:g} MB"
    if not r.ping_ok:
        if r.ping_sent == 0 and r.error:
            return f"could not run ping on {r.src}: {r.error}"
        for name in (r.dst, r.src):
            why = _tunnel_down(name, hints.get(name))
            if why:
                return why
        if r.dst in hints and r.src in hints:
            return (f"{r.src} and {r.dst} both handshake with the hub but packets do not "
                    "cross: check forwarding on the controller (net.ipv4.ip_forward=1, "
                    f"FORWARD firewall rules) and any firewall on {r.dst}")
        return (f"no ping reply from {r.dst}: its overlay is down, or a firewall drops "
                "overlay traffic on the way")
    if r.transfer_ok is False:
        if r.receiver_error:
            return (f"ping passes but the TCP receiver could not run on {r.dst}: "
                    f"{r.receiver_error}")
        err = r.error.lower()
        if "timed out" in err or "timeout" in err:
            return (f"ping passes but a {size} TCP transfer stalls: large packets are lost. "
                    "Path MTU: lower the overlay mtu (1280 is the default) or fix the "
                    "underlay's")
        if "refused" in err:
            return (f"ping passes but TCP to {r.dst} is refused: a firewall on {r.dst} "
                    "rejects overlay TCP")
        return f"ping passes but the {size} TCP transfer failed: {r.error or 'short transfer'}"
    return ""


def _summary(r: PairResult) -> str:
    parts = []
    if r.ping_ok:
        rtt = f"{r.rtt_ms:.1f} ms" if r.rtt_ms is not None else "ping ok"
        lost = r.ping_sent - r.ping_received
        parts.append(rtt + (f" ({lost}/{r.ping_sent} lost)" if lost > 0 else ""))
    else:
        parts.append("no ping")
    if r.transfer_ok and r.mb_per_s is not None:
        parts.append(f"{r.mb_per_s:.0f} MB/s")
    elif r.transfer_ok is False:
        parts.append("tcp failed")
    return ", ".join(parts)


def build_matrix(names: Sequence[str], results: Sequence[PairResult], *,
                 hints: Mapping[str, NodeHint] | None = None,
                 nbytes: int = 50_000_000) -> Matrix:
    hints = hints or {}
    cells: dict[tuple[str, str], Cell] = {}
    for r in results:
        ok = r.ping_ok and r.transfer_ok is not False
        cells[(r.src, r.dst)] = Cell(r.src, r.dst, ok, _summary(r),
                                     "" if ok else explain(r, hints, nbytes=nbytes))
    for a in names:
        for b in names:
            if a != b and (a, b) not in cells:
                cells[(a, b)] = Cell(a, b, False, "not checked", "no result for this pair")
    return Matrix(tuple(names), cells)


def render(matrix: Matrix) -> str:
    """Plain text: a src × dst grid, then one line per failing pair."""
    names = matrix.names
    grid = [["from \\ to", *names]]
    for a in names:
        row = [a]
        for b in names:
            cell = matrix.cells.get((a, b))
            row.append("-" if cell is None else ("ok " if cell.ok else "FAIL ") + cell.summary)
        grid.append(row)
    widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
             for r in grid]
    for c in matrix.failing():
        lines.append(f"{c.src} -> {c.dst}: {c.explanation}")
    return "\n".join(lines)
