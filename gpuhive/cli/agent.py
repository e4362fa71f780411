"""`gpuhive enroll` and `gpuhive agent`: the friend's side."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import typer

from gpuhive.agent.policy import load_policy, policy_to_dict, save_policy
from gpuhive.agent.state import AgentHome, AgentIdentity
from gpuhive.cli import common
from gpuhive.cli.render import age, out, print_json
from gpuhive.core.ranking import OwnerPolicy
from gpuhive.core.units import parse_size_mib
from gpuhive.errors import CommandFailed, ConfigError, StateError
from gpuhive.pids import alive
from gpuhive.probe import probe_hardware, probe_software

app = typer.Typer(help="Run or inspect this machine's agent.")


def enroll(
    token: str = typer.Argument(..., help="join token from the owner's `gpuhive invite`"),
    name: str = typer.Option("", help="node name (default: this machine's hostname)"),
    service: bool = typer.Option(False, "--service", help="install and start a systemd user "
                                 "unit instead of running in the foreground"),
    no_start: bool = typer.Option(False, "--no-start", help="enroll only; start later with "
                                  "`gpuhive agent`"),
) -> None:
    """Join a hive: verify the controller, register this machine, then run the agent."""
    from gpuhive.agent.enroll import enroll as do_enroll
    root = common.home()
    settings = common.settings()
    ident = asyncio.run(do_enroll(root, token, name, timeout=settings.connect_timeout,
                                  settings=settings))
    out.print(f"enrolled as {ident.name} ({ident.node_id}) with controller "
              f"{ident.controller_host}:{ident.controller_port}")
    if service:
        install_service(root)
        return
    if no_start:
        out.print("start the agent with `gpuhive agent`")
        return
    _run_foreground(root)


@app.callback(invoke_without_command=True)
def agent(ctx: typer.Context) -> None:
    """Run the agent in the foreground from the state stored by `gpuhive enroll`."""
    if ctx.invoked_subcommand is None:
        _run_foreground(common.home())


@app.command()
def status(json_out: bool = typer.Option(False, "--json", help="machine-readable output")) \
        -> None:
    """Whether the agent runs and is connected to the controller, and since when."""
    home = AgentHome(common.home())
    ident = AgentIdentity.load(home)
    try:
        st = json.loads(home.status_file.read_text())
    except (OSError, ValueError):
        st = {}
    pid = st.get("pid")
    running = bool(pid) and alive(int(pid))
    connected = running and bool(st.get("connected"))
    data = {"node_id": ident.node_id, "name": ident.name, "running": running,
            "connected": connected, "since": st.get("since"),
            "controller": f"{ident.controller_host}:{ident.controller_port}",
            "last_error": st.get("last_error", ""), "pid": pid if running else None}
    if json_out:
        print_json(data)
    elif not running:
        out.print(f"agent {ident.name} is not running (start it with `gpuhive agent`)")
    elif connected:
        out.print(f"agent {ident.name} connected to {data['controller']} since "
                  f"{age(data['since'])}")
    else:
        out.print(f"agent {ident.name} running but disconnected since {age(data['since'])}: "
                  f"{data['last_error'] or 'connecting'}")
    raise typer.Exit(0 if connected else 1)


@app.command()
def pause() -> None:
    """Stop taking work. Running work finishes first (the node shows draining, then paused)."""
    _update_policy(paused=True)
    out.print("paused: the controller will place no new work here "
              "(takes effect at the next heartbeat)")


@app.command()
def resume() -> None:
    """Take work again after `gpuhive agent pause`."""
    _update_policy(paused=False)
    out.print("resumed: this machine takes work again")


@app.command()
def policy(
    max_gpus: int = typer.Option(None, help="offer at most this many GPUs to the hive"),
    reserve_vram: str = typer.Option(None, help="VRAM per GPU kept for yourself, e.g. 4G"),
    schedule: str = typer.Option(None, help='when the hive may use this machine, local time, '
                                 'e.g. "22:00-08:00" or "22:00-08:00,12:00-13:00"; "" = always'),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Show or change what this machine offers: GPU limit, reserved VRAM, schedule."""
    changes: dict[str, object] = {}
    if max_gpus is not None:
        changes["max_gpus"] = max_gpus if max_gpus >= 0 else None
    if reserve_vram is not None:
        try:
            changes["reserve_vram_mib"] = parse_size_mib(reserve_vram)
        except ValueError as exc:
            raise ConfigError(str(exc), key="reserve_vram") from exc
    if schedule is not None:
        changes["schedule"] = schedule
    p = _update_policy(**changes) if changes else load_policy(common.home())
    if json_out:
        print_json(policy_to_dict(p))
        return
    out.print(f"paused {p.paused} · max GPUs {p.max_gpus if p.max_gpus is not None else 'all'}"
              f" · reserved VRAM {p.reserve_vram_mib} MiB per GPU · schedule "
              f"{p.schedule or 'always'}")


@app.command()
def probe(json_out: bool = typer.Option(False, "--json", help="machine-readable output")) \
        -> None:
    """Probe this machine's hardware and software now (what `gpuhive nodes probe` runs)."""
    hw = probe_hardware()
    sw = probe_software(refresh=True)
    if json_out:
        print_json({"hardware": hw.to_dict(), "software": sw.to_dict()})
        return
    out.print(f"{hw.hostname}: {hw.cpu.cores} cores, {hw.memory_total_mib} MiB RAM, "
              f"GPUs via {hw.probe_source}: {len(hw.gpus)}")
    for g in hw.gpus:
        out.print(f"  gpu{g.index} {g.name} {g.memory_total_mib} MiB, cc {g.compute_capability}, "
                  f"driver {g.driver_version}")
    out.print(f"python {sw.python} · torch {sw.torch or '-'} · NCCL {sw.nccl or '-'} · "
              f"llama-server {sw.llama_server or '-'} · llama-cpp-python {sw.llama_cpp_python}")
    for note in hw.probe_notes + sw.notes:
        out.print(f"  note: {note}")


def _update_policy(**changes: object) -> OwnerPolicy:
    root = common.home()
    p = dataclasses.replace(load_policy(root), **changes)  # type: ignore[arg-type]
    save_policy(root, p)
    return p


def _run_foreground(root: Path) -> None:
    from gpuhive.agent import runner
    from gpuhive.cli.main import setup_logging
    setup_logging(daemon=True)
    asyncio.run(runner.serve(AgentHome(root), common.settings()))


def install_service(root: Path) -> None:
    if not shutil.which("systemctl"):
        raise StateError("systemctl is not available, so no systemd unit can be installed",
                         hint="run `gpuhive agent` under your own supervisor instead")
    template = resources.files("gpuhive").joinpath("templates/gpuhive-agent.service")
    unit = template.read_text().format(python=sys.executable, home=root)
    unit_dir = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / \
        "systemd" / "user"
    unit_dir.mkdir(parents=True, exist_ok=True)
    (unit_dir / "gpuhive-agent.service").write_text(unit)
    for argv in (["systemctl", "--user", "daemon-reload"],
                 ["systemctl", "--user", "enable", "--now", "gpuhive-agent.service"]):
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CommandFailed(argv, proc.returncode, proc.stdout + proc.stderr,
                                hint="is a systemd user session running? (`loginctl "
                                     "enable-linger $USER`)")
    out.print(f"agent installed as a systemd user unit ({unit_dir / 'gpuhive-agent.service'})")




