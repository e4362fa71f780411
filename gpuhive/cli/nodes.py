"""`gpuhive nodes`: list, inspect, remove, add and run commands on nodes."""

from __future__ import annotations

import sys
from typing import Any

import typer

from gpuhive.cli import common
from gpuhive.cli.render import age, gib, nodes_table, out, print_json, status_text
from gpuhive.core.units import parse_size_mib
from gpuhive.errors import ConfigError

app = typer.Typer(help="The machines in the hive.")


@app.callback(invoke_without_command=True)
def list_(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
    all_: bool = typer.Option(False, "--all", help="include removed nodes"),
) -> None:
    """List every node: status, hardware, last heartbeat."""
    if ctx.invoked_subcommand is None:
        ls(json_out, all_)


@app.command("ls")
def ls(json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
       all_: bool = typer.Option(False, "--all", help="include removed nodes")) -> None:
    """List every node: the same as `gpuhive nodes`."""
    nodes = common.admin("nodes.list", {"include_removed": all_})
    if json_out:
        print_json(nodes)
        return
    if not nodes:
        out.print("no nodes yet: invite a friend with `gpuhive invite --name NAME`")
        return
    out.print(nodes_table(nodes))


@app.command()
def show(name: str, json_out: bool = typer.Option(False, "--json", help="machine-readable "
                                                  "output")) -> None:
    """One node in detail, with its history (registered, online, degraded, offline…)."""
    n = common.admin("nodes.show", {"name": name})
    if json_out:
        print_json(n)
        return
    hw = n.get("hardware") or {}
    out.print(f"[bold]{n['name']}[/bold] ({n['id']}, {n['kind']}) {status_text(n['status'])}"
              f" {n['status_reason']}")
    out.print(f"  hostname {n['hostname'] or '-'} · connected {n['connected']} · from "
              f"{n['public_addr'] or n['address'] or '-'} · last heartbeat "
              f"{age(n['last_heartbeat'])}")
    cpu = hw.get("cpu") or {}
    out.print(f"  cpu {cpu.get('cores', '?')} cores {cpu.get('model', '')} · ram "
              f"{gib(hw.get('memory_total_mib'))} · {hw.get('os', '')}")
    for g in hw.get("gpus") or []:
        out.print(f"  gpu{g['index']} {g['name']} {gib(g['memory_total_mib'])} "
                  f"({gib(g.get('memory_used_mib'))} used)")
    out.print("  history:")
    for e in n["events"][-20:]:
        out.print(f"    {age(e['at']):>10}  {e['event']:<13} {e['detail']}")


@app.command()
def rm(name: str) -> None:
    """Remove a node: its sessions close, its forward goes, its key stops working at once."""
    r = common.admin("nodes.remove", {"name": name})
    out.print(f"node {r['name']} removed ({r['closed_links']} link(s) closed)")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec(  # the subcommand is called exec
    target: str = typer.Argument(..., help="node name, comma-separated names, or 'all'"),
    command: list[str] = typer.Argument(..., help="the command, after `--`"),
    fresh: bool = typer.Option(False, "--fresh", help="open new sessions instead of reusing"),
    json_out: bool = typer.Option(False, "--json", help="print results as JSON at the end"),
) -> None:
    """Run a command on nodes in parallel; output is prefixed by node.

    Exits non-zero if the command failed or could not run on any node.
    """
    lines: list[dict[str, Any]] = []

    def show_line(ev: dict[str, Any]) -> None:
        if json_out:
            lines.append(ev)
            return
        stream = sys.stderr if ev["stream"] == "err" else sys.stdout
        stream.write(f"[{ev['node']}] {ev['line']}\n")
        stream.flush()

    results = common.admin("nodes.exec", {"target": target, "argv": command, "fresh": fresh},
                           on_event=show_line, timeout=None)
    failed = [r for r in results if r["exit_status"] != 0]
    if json_out:
        print_json({"results": results, "output": lines})
    else:
        for r in results:
            if r["exit_status"] is None:
                sys.stderr.write(f"[{r['node']}] could not run: {r['error']}\n")
            elif r["exit_status"] != 0:
                sys.stderr.write(f"[{r['node']}] exit status {r['exit_status']}\n")
        if failed:
            sys.stderr.write(f"{len(failed)} of {len(results)} node(s) failed\n")
    raise typer.Exit(1 if failed else 0)


@app.command()
def add(
    address: str = typer.Argument(..., help="user@host[:port] of a machine running sshd"),
    name: str = typer.Option("", help="node name (default: its hostname)"),
) -> None:
    """Add a machine that already runs its own sshd (no agent).

    The controller's client key must be in that user's authorized_keys
    (print it with `gpuhive init --show-key`). The host key is pinned on first contact.
    """
    n = common.admin("nodes.add", {"address": address, "name": name})
    out.print(f"node {n['name']} added ({n['address']}); host key {n['host_key_fingerprint']} "
              "pinned")


@app.command()
def rank(
    gpus: int = typer.Option(1, "--gpus", help="GPUs needed per node (0: CPU only)"),
    min_vram: str = typer.Option("0", "--min-vram", help="VRAM needed per GPU, e.g. 12G"),
    for_: str = typer.Option("serve", "--for", help="train or serve"),
    precision: str = typer.Option("fp16", help="fp16, bf16 or fp32 (training needs the "
                                  "compute capability for it)"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """The nodes that can take a request, best first, and why the others cannot."""
    try:
        need = parse_size_mib(min_vram)
    except ValueError as exc:
        raise ConfigError(str(exc), key="min-vram") from exc
    r = common.admin("nodes.rank", {"gpus": gpus, "min_vram_mib": need, "purpose": for_,
                                    "precision": precision})
    if json_out:
        print_json(r)
        return
    if not r["ranked"]:
        out.print("[red]no node can take this request[/red]")
    for i, n in enumerate(r["ranked"], 1):
        out.print(f"{i:>3}. {n['name']:<16} {n.get('why', '')}")
    for n in r["excluded"]:
        reasons = "; ".join(x["message"] for x in n["reasons"])
        out.print(f"  [dim]✗ {n['name']:<16} {reasons}[/dim]")


@app.command()
def probe(target: str = typer.Argument("all", help="node name(s), comma-separated, or all"))\
        -> None:
    """Probe hardware and software on nodes now (GPUs, drivers, torch, NCCL, llama.cpp)."""
    failed = 0
    for r in common.admin("nodes.probe", {"target": target}, timeout=None):
        if r["ok"]:
            out.print(f"{r['node']}: {r['gpus']} GPU(s) via {r['source']}")
        else:
            failed += 1
            out.print(f"[red]{r['node']}: {r['error']}[/red]")
    raise typer.Exit(1 if failed else 0)


@app.command()
def bench(
    target: str = typer.Argument("all", help="node name(s), comma-separated, or all"),
    no_gpu: bool = typer.Option(False, "--no-gpu", help="skip the GPU micro-benchmark"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Measure each node's link (RTT, throughput through its tunnel) and GPU (TFLOPS, GB/s)."""
    with out.status("measuring…"):
        results = common.admin("nodes.bench", {"target": target, "gpu": not no_gpu},
                               timeout=None)
    if json_out:
        print_json(results)
    for r in results if not json_out else []:
        if not r["ok"]:
            out.print(f"[red]{r['node']}: {r['error']}[/red]")
            continue
        line = (f"{r['node']}: rtt {r['rtt_ms']:.1f} ms, down {r['down_mbps']:.1f} Mbit/s, "
                f"up {r['up_mbps']:.1f} Mbit/s")
        g = r.get("gpu") or {}
        if g.get("available"):
            line += f"; {g['device']}: {g['matmul_tflops']} TFLOPS fp16, {g['memory_gbps']} GB/s"
        elif g:
            line += f"; no GPU benchmark: {g.get('reason')}"
        out.print(line)
    raise typer.Exit(1 if any(not r["ok"] for r in results) else 0)
