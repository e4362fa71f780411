"""`gpuhive init`, `gpuhive up`, `gpuhive down`, `gpuhive status`: the owner's controller."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import typer

from gpuhive.cli import common, status_view
from gpuhive.cli.render import out, print_json
from gpuhive.controller import admin_api as api
from gpuhive.errors import ControllerUnavailable, StateError
from gpuhive.pids import alive


def init(
    endpoint: str = typer.Option("", help="host:port friends dial (put in join tokens); "
                                 "default: this machine's primary address and the listen port"),
    listen_port: int = typer.Option(None, help="port of the hive SSH endpoint (default 2222)"),
    show_key: bool = typer.Option(False, "--show-key", help="print the controller's client "
                                  "public key (for `nodes add` hosts) and exit"),
) -> None:
    """Create $GPUHIVE_HOME: controller keys, registry (SQLite) and config.toml."""
    from gpuhive.controller.home import init_controller
    from gpuhive.transport import keys
    root = common.home()
    if show_key:
        h = common.controller_home().require()
        out.print(keys.public_text(keys.load_key(h.client_key)) + " gpuhive-controller")
        return
    values: dict[str, object] = {}
    if endpoint:
        values["endpoint"] = endpoint
    if listen_port is not None:
        values["listen_port"] = listen_port
    home, created = init_controller(root, values)
    common.settings()  # validate what was written
    fp = keys.fingerprint(keys.load_key(home.host_key))
    verb = "created" if created else "already initialized"
    out.print(f"controller home {root} {verb}; host key {fp}")
    out.print("next: `gpuhive up --detach`, then `gpuhive invite --name FRIEND`")


def up(
    detach: bool = typer.Option(False, "--detach", "-d", help="run in the background"),
    listen: str = typer.Option(None, help="host:port for the hive SSH endpoint "
                               "(default 0.0.0.0:2222)"),
    heartbeat_interval: float = typer.Option(None, help="seconds between agent heartbeats"),
    overlay: bool = typer.Option(False, "--overlay", help="also run the WireGuard hub (needs "
                                 "root or CAP_NET_ADMIN; kernel module or wireguard-go)"),
) -> None:
    """Run the controller daemon: hive SSH endpoint, registry, heartbeats, admin API."""
    overrides: dict[str, object] = {"heartbeat_interval": heartbeat_interval,
                                    "overlay": True if overlay else None}
    if listen:
        host, _, port = listen.rpartition(":")
        overrides.update(listen_host=host or "0.0.0.0", listen_port=port)
    settings = common.settings(**overrides)
    home = common.controller_home().require()
    if _running(home.pid_file):
        raise StateError(f"a controller already runs for {home.root} (pid "
                         f"{home.pid_file.read_text().strip()})",
                         hint="stop it with `gpuhive down`")
    if detach:
        argv = [sys.executable, "-m", "gpuhive", "up"]
        if listen:
            argv += ["--listen", listen]
        if heartbeat_interval is not None:
            argv += ["--heartbeat-interval", str(heartbeat_interval)]
        if overlay:
            argv.append("--overlay")
        with open(home.log_file, "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = home.log_file.read_text(errors="replace").strip().splitlines()[-1:]
                raise StateError(f"the controller exited at start: {' '.join(tail)}",
                                 hint=f"see {home.log_file}")
            try:
                st = common.admin(api.Status(), timeout=2)
                out.print(f"controller running (pid {st['pid']}), hive endpoint "
                          f"{st['listen']}, log {home.log_file}")
                return
            except ControllerUnavailable:
                time.sleep(0.1)
        proc.terminate()
        raise StateError("the controller did not come up within 20 s",
                         hint=f"see {home.log_file}")
    from gpuhive.cli.logs import setup_logging
    from gpuhive.controller import daemon  # heavy (asyncssh, FastAPI): only when serving
    setup_logging(daemon=True)
    asyncio.run(daemon.serve(home, settings))


def down(timeout: float = typer.Option(10.0, help="seconds to wait before SIGKILL")) -> None:
    """Stop the controller started with `gpuhive up --detach`."""
    home = common.controller_home()
    pid = _running(home.pid_file)
    if not pid:
        out.print("no controller running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    out.print(f"controller (pid {pid}) stopped")


def status(
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
    once: bool = typer.Option(False, "--once", help="print once instead of a live view"),
    interval: float = typer.Option(2.0, help="seconds between refreshes of the live view"),
) -> None:
    """The hive at a glance: controller, nodes, jobs, serving, recent events. Live in a
    terminal (q or Ctrl-C quits); --once or a pipe prints it once."""
    if json_out:
        print_json(common.admin(api.Overview()))
        return
    if once or not sys.stdout.isatty():
        out.print(status_view.render(common.admin(api.Overview())))
        return
    status_view.live(lambda: common.admin(api.Overview()), interval)


def _running(pid_file: os.PathLike[str]) -> int | None:
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None

