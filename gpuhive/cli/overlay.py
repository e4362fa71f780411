"""`gpuhive overlay status|check`: the WireGuard overlay between the friends."""

from __future__ import annotations

import time
from typing import Any

import typer

from gpuhive.cli import common
from gpuhive.cli.render import age, err, out, plain_table, print_json
from gpuhive.controller import admin_api as api
from gpuhive.core.spoke_report import SpokeReport

app = typer.Typer(help="The WireGuard overlay that carries rank-to-rank training traffic.")


@app.command()
def status(json_out: bool = typer.Option(False, "--json", help="machine-readable output")) \
        -> None:
    """Each peer of the hub (overlay IP, endpoint, last handshake, bytes, its spoke's state),
    then every pair of spokes: direct, trying, or through the hub."""
    st = common.admin(api.OverlayStatus())
    if json_out:
        print_json(st)
        return
    if not st["up"]:
        out.print(f"the overlay is not running ({st.get('hint', '')})")
        raise typer.Exit(1)
    out.print(f"hub {st['iface']} {st['hub_ip']} udp/{st['port']} ({st['kind']})")
    table = plain_table("NODE", "OVERLAY IP", "ENDPOINT", "HANDSHAKE", "RX", "TX", "SPOKE")
    now = time.time()
    for p in st["peers"]:
        spoke = SpokeReport.from_dict(p.get("spoke") or {})  # its agent's last report
        state = "up" if spoke.up else (spoke.error or "not reported")
        hs = age(p["latest_handshake"], now) if p["latest_handshake"] else "never"
        table.add_row(p["node"], p["overlay_ip"] or "-", p["endpoint"] or "-", hs,
                      _bytes(p["rx_bytes"]), _bytes(p["tx_bytes"]), state)
    out.print(table)
    _print_pairs(st.get("pairs") or [])


def _print_pairs(pairs: list[dict]) -> None:
    if not pairs:
        return
    direct = [p for p in pairs if p["mode"] == "direct"]
    out.print(f"\n{len(direct)} of {len(pairs)} spoke pair(s) direct, the rest through the hub")
    table = plain_table("PAIR", "PATH", "DIRECT POSSIBLE BY")
    for p in pairs:
        table.add_row(f"{p['a']} ↔ {p['b']}", p["mode"],
                      p["direct_by"] if p["direct_by"] != "hub" else "-")
    out.print(table)


@app.command()
def check(
    nodes: str = typer.Argument("all", help="node names, comma-separated, or all"),
    megabytes: int = typer.Option(50, help="size of the TCP transfer per pair"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Pairwise reachability (ping and a TCP transfer) as a matrix; failing pairs explained.

    Pairs are measured one at a time (a few seconds each); each is reported on stderr as
    it finishes.
    """
    with err.status("checking every pair…") as spinner:
        def show(ev: dict[str, Any]) -> None:
            if ev.get("event") != "pair":
                return
            if ev["phase"] == "start":
                spinner.update(f"[{ev['n']}/{ev['total']}] {ev['src']} → {ev['dst']}: ping "
                               f"and {megabytes} MB over TCP…")
            else:
                err.print(pair_progress_line(ev))

        r = common.admin(api.OverlayCheck(target=nodes, nbytes=megabytes * 1_000_000),
                         on_event=show, timeout=None)
    if json_out:
        print_json(r)
    else:
        out.print(r["text"])
    raise typer.Exit(0 if r["ok"] else 1)


def pair_progress_line(ev: dict[str, Any]) -> str:
    """'[2/6] friend1 → friend2: 1.4 ms, 28 MB/s' for a finished pair."""
    parts = [f"{ev['rtt_ms']:.1f} ms" if ev.get("rtt_ms") is not None else "ping ok"] \
        if ev.get("ping_ok") else ["[red]no ping[/red]"]
    if ev.get("transfer_ok") and ev.get("mb_per_s") is not None:
        parts.append(f"{ev['mb_per_s']:.0f} MB/s")
    elif ev.get("transfer_ok") is False:
        parts.append("[red]tcp failed[/red]")
    return f"[{ev['n']}/{ev['total']}] {ev['src']} → {ev['dst']}: {', '.join(parts)}"


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f}{unit}"
        n = n / 1000  # type: ignore[assignment]
    return f"{n:.0f}TB"
