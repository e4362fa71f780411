"""`gpuhive lab up|down|status`: a whole hive on this one machine, for demos and tests."""

from __future__ import annotations

from pathlib import Path

import typer

from gpuhive.cli.render import err, nodes_table, out, plain_table, print_json
from gpuhive.lab import hive, procs
from gpuhive.lab import status as lab_status
from gpuhive.lab.netns import lab_prefixes, teardown

app = typer.Typer(help="An emulated hive on this machine: NAT'd friends in network "
                  "namespaces (as root) or local processes (otherwise).")

DirOpt = typer.Option(hive.DEFAULT_DIR, "--dir", help="lab directory (env GPUHIVE_LAB_DIR)")


@app.command()
def up(
    nodes: int = typer.Option(3, "--nodes", "-n", help="number of friend hosts"),
    bandwidth: str = typer.Option(None, help="shape each friend's link, e.g. 20mbit"),
    mtu: int = typer.Option(None, help="MTU of the lab's internet links"),
    heartbeat_interval: float = typer.Option(1.0, help="seconds between heartbeats"),
    loopback: bool = typer.Option(False, help="no namespaces, even as root"),
    overlay: bool = typer.Option(False, help="WireGuard hub and spokes (network namespaces "
                                 "only)"),
    same_router: int = typer.Option(0, "--same-router", help="extra friends behind friend1's "
                                    "router (one household: same public address)"),
    lab_dir: Path = DirOpt,
) -> None:
    """Build the lab, start a controller and enroll every friend; wait until all are online."""
    total = nodes + same_router
    with out.status(f"building a lab with {total} friend(s)…"):
        lab = hive.up(hive.LabOptions(friends=nodes, bandwidth=bandwidth, mtu=mtu,
                                      heartbeat_interval=heartbeat_interval,
                                      loopback=loopback, overlay=overlay,
                                      same_router=same_router), lab_dir)
    out.print(f"lab {lab.state.prefix} up ({lab.state.mode}), {total} node(s) online")
    out.print(f"use it with:  export GPUHIVE_HOME={lab.controller_home}")


@app.command()
def down(
    lab_dir: Path = DirOpt,
    all_: bool = typer.Option(False, "--all", help="also remove stray lab namespaces of "
                              "earlier runs"),
) -> None:
    """Stop every lab process; remove its namespaces and files. Safe to repeat."""
    removed = hive.down(lab_dir)
    if all_:
        for prefix in lab_prefixes():
            removed += [f"namespace {ns}" for ns in teardown(prefix)]
    out.print(f"lab down: removed {len(removed)} object(s)" if removed else "no lab running")


@app.command()
def status(lab_dir: Path = DirOpt,
           json_out: bool = typer.Option(False, "--json", help="machine-readable output")) \
        -> None:
    """The lab's hosts (namespace, addresses), its processes (pid, alive, what) and its nodes.

    Hosts and processes come from the lab's state file, so they show even when the lab's
    controller is down; then it says so and exits 1.
    """
    lab = hive.load(lab_dir)
    r = lab_status.report(lab.state, procs.alive, lab_status.cmdline, lab.nodes)
    ctl = r["controller"]
    if json_out:
        print_json(r)
        raise typer.Exit(0 if ctl["up"] else 1)
    out.print(f"lab {lab.state.prefix} ({lab.state.mode}) in {lab.dir}")
    hosts = plain_table("HOST", "NAMESPACE", "ADDRESS", "PUBLIC")
    for h in lab.state.hosts:
        hosts.add_row(h.name, h.namespace or "-", h.address, h.public_address)
    out.print(hosts)
    table = plain_table("PROCESS", "PID", "ALIVE", "WHAT", "COMMAND")
    for p in r["processes"]:
        table.add_row(p["role"], str(p["pid"]), "[green]yes[/green]" if p["alive"]
                      else "[red]no[/red]", p["what"], _short(p["command"]))
    out.print(table)
    if not ctl["up"]:
        err.print(f"[red]controller down:[/red] {ctl['error']}", markup=True)
        err.print(f"  hint: its log is {lab.dir / 'ctl.log'}; `gpuhive lab down` removes the "
                  "lab, `gpuhive lab up` builds a new one")
        raise typer.Exit(1)
    out.print(nodes_table(r["nodes"]))
    out.print(f"use it with:  export GPUHIVE_HOME={lab.controller_home}")


def _short(command: str, width: int = 70) -> str:
    return command if len(command) <= width else command[:width - 1] + "…"
