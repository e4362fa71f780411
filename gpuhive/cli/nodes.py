"""`gpuhive nodes`: list, inspect, remove, add and run commands on nodes."""

from __future__ import annotations

import sys
import time
from typing import Any

import typer

from gpuhive.cli import common
from gpuhive.cli.nodes_show import bench_line, probe_line, rank_lines, show_lines
from gpuhive.cli.render import err, nodes_table, out, print_json
from gpuhive.controller import admin_api as api
from gpuhive.core.units import parse_size_mib
from gpuhive.errors import ConfigError

# no help= here: the group's help is list_'s docstring, which explains the columns
app = typer.Typer()


_WIDE_HELP = "every column: each GPU, software, link, overlay address or error, reason"


@app.callback(invoke_without_command=True)
def list_(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
    all_: bool = typer.Option(False, "--all", help="include removed nodes"),
    wide: bool = typer.Option(False, "--wide", help=_WIDE_HELP),
) -> None:
    """The machines in the hive. Alone, `gpuhive nodes` lists them: status, hardware, free
    memory, REL, overlay, last heartbeat.

    REL is the node's earned reliability, 0 to 1: a new node starts at 0.30, steady
    heartbeats take it up to 0.70, finished tasks higher; failed tasks, missed heartbeats
    and going offline lower it. Among similar nodes, work goes to the more reliable.

    OVERLAY is the node's WireGuard spoke: up; down (`gpuhive nodes show NAME` has the
    error); off when the controller runs no overlay.
    """
    if ctx.invoked_subcommand is None:
        ls(json_out, all_, wide)


@app.command("ls")
def ls(json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
       all_: bool = typer.Option(False, "--all", help="include removed nodes"),
       wide: bool = typer.Option(False, "--wide", help=_WIDE_HELP)) -> None:
    """List every node: the same as `gpuhive nodes`."""
    nodes = common.admin(api.NodesList(include_removed=all_))
    if json_out:
        print_json(nodes)
        return
    if not nodes:
        out.print("no nodes yet: invite a friend with `gpuhive invite --name NAME`")
        return
    out.print(nodes_table(nodes, wide=wide, legend=True))


@app.command()
def show(name: str, json_out: bool = typer.Option(False, "--json", help="machine-readable "
                                                  "output")) -> None:
    """One node in detail: connection, overlay, reliability, hardware, software, history."""
    n = common.admin(api.NodesShow(name=name))
    if json_out:
        print_json(n)
        return
    for line in show_lines(n, time.time()):
        out.print(line)


@app.command()
def rm(name: str) -> None:
    """Remove a node: its sessions close, its forward goes, its key stops working at once."""
    r = common.admin(api.NodesRemove(name=name))
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

    results = common.admin(api.NodesExec(target=target, argv=tuple(command), fresh=fresh),
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
    n = common.admin(api.NodesAdd(address=address, name=name))
    out.print(f"node {n['name']} added ({n['address']}); host key {n['host_key_fingerprint']} "
              "pinned")


@app.command()
def rank(
    for_: str = typer.Option("train", "--for", help="train or serve"),
    nodes: str = typer.Option("1", "--nodes", help="train: the job's N or MIN:MAX nodes; "
                              "serve: the replicas"),
    gpus: str = typer.Option("auto", "--gpus", help="GPUs per node; auto: GPU nodes when "
                             "enough fit, else CPU nodes, as train and serve choose; 0: CPU"),
    min_vram: str = typer.Option("0", "--min-vram", help="VRAM needed per GPU (RAM on CPU "
                                 "nodes), e.g. 12G"),
    backend: str = typer.Option("auto", "--backend", help="train: auto, nccl or gloo"),
    precision: str = typer.Option("fp16", help="fp16, bf16 or fp32 (training needs the "
                                  "compute capability for it)"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """The nodes a job would get, best first, and why each other node cannot take it.

    The same choice `gpuhive train` (and `gpuhive serve`) makes with the same flags.
    Exits 1 when fewer nodes fit than the request needs; `--json` still prints the
    ranking.
    """
    try:
        need = parse_size_mib(min_vram)
    except ValueError as exc:
        raise ConfigError(str(exc), key="min-vram") from exc
    r = common.admin(api.NodesRank(gpus=gpus, min_vram_mib=need, purpose=for_,
                                   precision=precision, nodes=nodes, backend=backend))
    if json_out:
        print_json(r)
    else:
        for line in rank_lines(r):
            out.print(line)
        if not r["fits"]:
            err.print(f"[red]only {len(r['ranked'])} node(s) can take this request; it "
                      f"needs {r['need']}[/red]")
    raise typer.Exit(0 if r["fits"] else 1)


@app.command()
def probe(
    target: str = typer.Argument("all", help="node name(s), comma-separated, or all"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Probe hardware and software on nodes now (GPUs, drivers, torch, NCCL, llama.cpp)."""
    with err.status("probing…"):
        results = common.admin(api.NodesProbe(target=target), timeout=None)
    if json_out:
        print_json(results)
    else:
        for r in results:
            out.print(probe_line(r) if r["ok"] else f"[red]{r['node']}: {r['error']}[/red]")
    raise typer.Exit(1 if any(not r["ok"] for r in results) else 0)


@app.command()
def bench(
    target: str = typer.Argument("all", help="node name(s), comma-separated, or all"),
    no_gpu: bool = typer.Option(False, "--no-gpu", help="skip the GPU micro-benchmark"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Measure each node's link (RTT, throughput through its tunnel) and GPU (TFLOPS, GB/s).

    A node without a GPU gets the link measurement only, and says so.
    """
    with err.status("measuring…"):
        results = common.admin(api.NodesBench(target=target, gpu=not no_gpu),
                               timeout=None)
    if json_out:
        print_json(results)
    else:
        for r in results:
            out.print(bench_line(r) if r["ok"] else f"[red]{r['node']}: {r['error']}[/red]")
    raise typer.Exit(1 if any(not r["ok"] for r in results) else 0)
