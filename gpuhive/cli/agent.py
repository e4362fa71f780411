"""`gpuhive enroll` and `gpuhive agent`: the friend's side."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import typer

from gpuhive.agent.console import seconds
from gpuhive.agent.lock import AgentLock
from gpuhive.agent.policy import (
    describe_policy,
    load_policy,
    parse_max_gpus,
    policy_to_dict,
    save_policy,
)
from gpuhive.agent.state import AgentHome, AgentIdentity
from gpuhive.cli import common
from gpuhive.cli.render import age, out, print_json
from gpuhive.core.ranking import OwnerPolicy
from gpuhive.core.units import parse_size_mib
from gpuhive.errors import CommandFailed, ConfigError, StateError
from gpuhive.fsutil import ensure_private_dir
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
    from gpuhive.core.tokens import parse_token
    root = common.home()
    settings = common.settings()
    parse_token(token)  # a garbled token is the first thing to say, agent running or not
    # a running agent's identity and keys must not change under it: refuse before any I/O
    lock = AgentLock.acquire(AgentHome(ensure_private_dir(root)))
    try:
        ident = asyncio.run(do_enroll(root, token, name, timeout=settings.connect_timeout,
                                      settings=settings))
        out.print(f"enrolled as {ident.name} ({ident.node_id}) with controller "
                  f"{ident.controller_host}:{ident.controller_port}")
        if service or no_start:
            lock.release()  # the service's agent takes it
        if service:
            install_service(root)
            return
        if no_start:
            out.print("start the agent with `gpuhive agent`")
            return
        _run_foreground(root, lock)
    finally:
        lock.release()


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
    data = status_view(ident, st, _pid_alive(st.get("pid")))
    if json_out:
        print_json(data)
    else:
        out.print(status_line(data, time.time()))
    raise typer.Exit(0 if data["connected"] else 1)


def _pid_alive(pid: Any) -> bool:
    return isinstance(pid, int) and pid > 0 and alive(pid)


def status_view(ident: AgentIdentity, st: dict[str, Any], running: bool) -> dict[str, Any]:
    """What `agent status` reports, from the agent's status file. Pure."""
    stored = str(st.get("state") or ("connected" if st.get("connected") else ""))
    if stored == "removed":
        state = "removed"  # whether or not a process still lingers, this is what matters
    elif not running:
        state = "stopped"
    else:
        state = stored or "connecting"
    connected = running and state == "connected"
    return {"node_id": ident.node_id, "name": ident.name, "state": state, "running": running,
            "connected": connected, "since": st.get("since"),
            "controller": f"{ident.controller_host}:{ident.controller_port}",
            "last_error": st.get("last_error", ""),
            "retry_at": st.get("retry_at") if running and not connected else None,
            "updated_at": st.get("updated_at"), "pid": st.get("pid") if running else None}


def status_line(d: dict[str, Any], now: float) -> str:
    """The sentence `agent status` prints. Pure."""
    name, state = d["name"], d["state"]
    if state == "removed":
        return (f"this machine ({name}) was removed from the hive by its owner: ask the owner "
                "for a new token, then run `gpuhive enroll TOKEN`")
    if state == "stopped":
        when = f"; it stopped {age(d['updated_at'], now)}" if d.get("updated_at") else ""
        return f"agent {name} is not running (start it with `gpuhive agent`){when}"
    if state == "connected":
        return f"agent {name} connected to {d['controller']} since {age(d['since'], now)}"
    if state == "connecting" or not d["last_error"]:
        return f"agent {name} running, connecting to {d['controller']}"
    retry = d.get("retry_at")
    then = f"; retrying in {seconds(retry - now)}" if retry and retry > now else ""
    return (f"agent {name} running but disconnected since {age(d['since'], now)}: "
            f"{d['last_error']}{then}")


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
    max_gpus: str = typer.Option(None, help="offer at most this many GPUs to the hive, "
                                 "or `all`"),
    reserve_vram: str = typer.Option(None, help="VRAM per GPU kept for yourself, e.g. 4G"),
    schedule: str = typer.Option(None, help='when the hive may use this machine, local time, '
                                 'e.g. "22:00-08:00" or "22:00-08:00,12:00-13:00"; "" = always'),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Show or change what this machine offers: GPU limit, reserved VRAM, schedule."""
    changes: dict[str, object] = {}
    if max_gpus is not None:
        changes["max_gpus"] = parse_max_gpus(max_gpus)
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
    out.print(describe_policy(p))


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


def _run_foreground(root: Path, lock: AgentLock | None = None) -> None:
    """Run the agent here, printing a few plain lines; Ctrl-C exits 130, SIGTERM 0."""
    from gpuhive.agent import runner
    from gpuhive.agent.console import Console
    _agent_logging()
    home = AgentHome(root)
    console = Console(AgentIdentity.load(home).name)
    ended = asyncio.run(runner.serve(home, common.settings(), lock=lock, console=console))
    if ended.signal == signal.SIGINT:
        raise typer.Exit(130)


def _agent_logging() -> None:
    """Logs only with GPUHIVE_LOG (info, debug); otherwise warnings, as plain lines."""
    from gpuhive.cli.logs import setup_logging
    if os.environ.get("GPUHIVE_LOG"):
        setup_logging(daemon=True)
        return
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")


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
