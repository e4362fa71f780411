"""A whole hive in the lab: controller plus N enrolled agents, each behind its own NAT.

As root the hosts are network namespaces (see ``topology``); otherwise every process runs
on loopback. Every process is a real ``python -m gpuhive`` started the way a user would
start it, with its own $GPUHIVE_HOME under the lab directory.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuhive.agent import reaper
from gpuhive.config import update_settings
from gpuhive.controller import admin_client
from gpuhive.errors import ControllerUnavailable, GpuhiveError, LabError
from gpuhive.lab import netns, procs
from gpuhive.lab import state as lab_state
from gpuhive.lab.topology import (
    CTL_ADDRESS,
    Host,
    new_prefix,
    plan_lab,
    port_forward_commands,
    router_namespace,
    wan_iface,
)
from gpuhive.ports import free_port

HIVE_PORT = 2222
DEFAULT_DIR = Path(os.environ.get("GPUHIVE_LAB_DIR", "/tmp/gpuhive-lab"))


@dataclass(frozen=True)
class LabOptions:
    friends: int = 3
    bandwidth: str | None = None
    mtu: int | None = None
    heartbeat_interval: float = 1.0
    backoff_cap: float = 2.0
    loopback: bool = False  # force the no-root fallback
    overlay: bool = False  # WireGuard hub on the controller, a spoke on every friend (netns)
    same_router: int = 0  # extra friends behind friend1's router (one household, netns)
    wait_s: float = 60.0


class Lab:
    """A running lab, from its state file; what tests and the CLI drive."""

    def __init__(self, st: lab_state.LabState) -> None:
        self.state = st

    # ---- where things are -------------------------------------------------------------

    @property
    def dir(self) -> Path:
        return self.state.dir

    @property
    def controller_home(self) -> Path:
        return self.dir / "controller"

    def node_home(self, name: str) -> Path:
        return self.dir / "nodes" / name

    def host(self, name: str) -> Host:
        for h in self.state.hosts:
            if h.name == name:
                return h
        raise LabError(f"no lab host named {name!r}")

    @property
    def friends(self) -> list[str]:
        return [h.name for h in self.state.hosts if h.name != "ctl"]

    def overlay_iface(self, host: str) -> str:
        """Each lab host needs its own WireGuard interface name: wireguard-go's control
        sockets live in /var/run/wireguard, which every namespace shares."""
        p = self.state.prefix
        return f"{p}hub" if host == "ctl" else f"{p}w{host.removeprefix('friend')}"

    def host_env(self, host: str) -> dict[str, str]:
        home = self.controller_home if host == "ctl" else self.node_home(host)
        return self.env(home, {"GPUHIVE_OVERLAY_IFACE": self.overlay_iface(host)})

    def env(self, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUHIVE_")}
        env.update(self.state.env)
        env["GPUHIVE_HOME"] = str(home)
        env.update(extra or {})
        return env

    # ---- acting -----------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        """The controller's dashboard/API, reachable from the ctl host (see ``run_on``)."""
        return f"http://127.0.0.1:{self.state.env.get('GPUHIVE_HTTP_PORT', '8088')}"

    def run_on(self, host: str, argv: list[str], *, timeout: float = 60,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run any command on a lab host (in its namespace as root)."""
        proc = subprocess.run(netns.exec_argv(self.host(host).namespace, argv),
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise LabError(f"`{' '.join(argv)}` on {host} exited {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
        return proc

    def spawn_on(self, host: str, argv: list[str], log_name: str) -> int:
        """Start a background process on a lab host; it is stopped by `lab down`."""
        pid = procs.spawn(argv, ns=self.host(host).namespace, env=None,
                          log_path=self.dir / log_name)
        self._set_pid(f"extra-{log_name}", pid)
        return pid

    def admin(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        """By name and dict, as the lab tests write it; decoded through the admin contract
        first, so a test's wrong field fails as a `BadRequest` naming it."""
        return admin_client.call(self.controller_home / "admin.sock", method, params, **kw)

    def cli(self, *args: str, host: str = "ctl", check: bool = False,
            timeout: float = 120, home: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the gpuhive CLI as the lab's owner (host ctl) or on a friend's host.

        ``home`` runs it with another $GPUHIVE_HOME there (a second user of that machine).
        """
        argv = netns.exec_argv(self.host(host).namespace,
                               [sys.executable, "-m", "gpuhive", *args])
        env = self.host_env(host)
        if home is not None:
            env["GPUHIVE_HOME"] = str(home)
        proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise LabError(f"`gpuhive {' '.join(args)}` on {host} exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-500:]}")
        return proc

    def start_controller(self) -> int:
        h = self.host("ctl")
        argv = [sys.executable, "-m", "gpuhive", "up"]
        if self.state.env.get("GPUHIVE_OVERLAY") == "1":
            argv.append("--overlay")
        pid = procs.spawn(argv, ns=h.namespace, env=self.host_env("ctl"),
                          log_path=self.dir / "ctl.log")
        self._set_pid("ctl", pid)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.admin("status", timeout=2)
                return pid
            except ControllerUnavailable:
                if not procs.alive(pid):
                    raise LabError("the lab controller exited at start",
                                   hint=f"see {self.dir / 'ctl.log'}") from None
                time.sleep(0.1)
        raise LabError("the lab controller did not answer within 20 s",
                       hint=f"see {self.dir / 'ctl.log'}")

    def stop_controller(self) -> None:
        pid = self.state.pids.pop("ctl", None)
        if pid:
            procs.stop(pid)
        lab_state.save(self.state)

    def enroll(self, name: str, token: str | None = None) -> int:
        """Invite and enroll one friend; the enroll process goes on as its agent."""
        if token is None:
            token = self.admin("invite.create", {"name": name, "ttl": "1h", "uses": 1})["token"]
        h = self.host(name)
        pid = procs.spawn([sys.executable, "-m", "gpuhive", "enroll", token, "--name", name],
                          ns=h.namespace, env=self.host_env(name),
                          log_path=self.dir / f"{name}.log")
        self._set_pid(f"agent-{name}", pid)
        return pid

    def start_agent(self, name: str) -> int:
        h = self.host(name)
        pid = procs.spawn([sys.executable, "-m", "gpuhive", "agent"], ns=h.namespace,
                          env=self.host_env(name), log_path=self.dir / f"{name}.log")
        self._set_pid(f"agent-{name}", pid)
        return pid

    def kill_agent(self, name: str, *, hard: bool = True) -> None:
        pid = self.state.pids.pop(f"agent-{name}", None)
        if pid:
            if hard:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, 9)
            procs.stop(pid, grace_s=1)
        lab_state.save(self.state)

    def kill_node(self, name: str) -> None:
        """The whole machine vanishes: its agent and everything running there, at once."""
        pid = self.state.pids.pop(f"agent-{name}", None)
        lab_state.save(self.state)
        ns = self.host(name).namespace
        victims = set(netns.namespace_pids(ns)) if ns else set()
        victims |= set(reaper.tagged(str(self.node_home(name)), var="GPUHIVE_HOME"))
        if pid:
            victims.add(pid)
        for victim in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(victim, 9)

    def forward_port(self, friend: str, proto: str, port: int, lan_port: int) -> str:
        """Forward ``proto`` ``port`` on the friend's router to the friend (a user opening a
        port on their home router); returns the public ``host:port``. Namespaces only."""
        h = self.host(friend)
        index = friend.removeprefix("friend")
        if not index.isdigit():
            raise LabError(f"{friend} has no router of its own to forward a port on",
                           hint="port forwards are for friends (friend1, friend2, …)")
        router = router_namespace(self.state.prefix, int(index))
        wan = wan_iface(self.state.prefix, int(index))
        if self.state.mode != "netns" or router not in netns.list_namespaces():
            raise LabError(f"{friend} has no router of its own to forward a port on",
                           hint="port forwards need the namespace lab (root), and a friend "
                           "that is not a --same-router extra")
        for argv in port_forward_commands(self.state.prefix, wan, proto, port, h.address,
                                          lan_port):
            netns.run(netns.exec_argv(router, argv))
        return f"{h.public_address}:{port}"

    def set_config(self, host: str, **values: str | int | float | bool) -> None:
        """Add settings to a host's config.toml (takes effect when its process restarts)."""
        home = self.controller_home if host == "ctl" else self.node_home(host)
        update_settings(home / "config.toml", values)

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.admin("nodes.list"))

    def wait_for(self, want: dict[str, str], timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until each named node has the wanted status; return the node list."""
        deadline = time.monotonic() + timeout
        nodes: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(ControllerUnavailable):
                nodes = self.nodes()
                seen = {n["name"]: n["status"] for n in nodes}
                if all(seen.get(k) == v for k, v in want.items()):
                    return nodes
            time.sleep(0.2)
        seen = {n["name"]: n["status"] for n in nodes}
        raise LabError(f"nodes did not reach {want} within {timeout:.0f}s (now {seen})",
                       hint=f"see the logs in {self.dir}")

    def wait_for_overlay(self, timeout: float = 60.0) -> None:
        """Until every friend's spoke reports up and has handshaken with the hub."""
        deadline = time.monotonic() + timeout
        peers: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(GpuhiveError):
                peers = self.admin("overlay.status")["peers"]
                if len(peers) == len(self.friends) and all(
                        p["latest_handshake"] and (p.get("spoke") or {}).get("up")
                        for p in peers):
                    return
            time.sleep(0.3)
        raise LabError(f"the overlay did not come up within {timeout:.0f}s: {peers}",
                       hint=f"see the logs in {self.dir}")

    def _set_pid(self, role: str, pid: int) -> None:
        self.state.pids[role] = pid
        lab_state.save(self.state)


def up(options: LabOptions, lab_dir: Path = DEFAULT_DIR) -> Lab:
    """Build the lab, start the controller, enroll every friend, wait until all are online."""
    if lab_state.state_path(lab_dir).exists():
        raise LabError(f"a lab already runs from {lab_dir}",
                       hint="take it down with `gpuhive lab down` first")
    prefix = new_prefix()
    use_netns = netns.is_root() and not options.loopback
    shutil.rmtree(lab_dir, ignore_errors=True)
    lab_dir.mkdir(parents=True, mode=0o700)
    extra = {"GPUHIVE_HEARTBEAT_INTERVAL": str(options.heartbeat_interval),
             "GPUHIVE_BACKOFF_CAP": str(options.backoff_cap),
             "GPUHIVE_BACKOFF_BASE": str(min(0.5, options.backoff_cap)),
             "GPUHIVE_CONNECT_TIMEOUT": "10"}
    if use_netns and options.overlay:
        extra["GPUHIVE_OVERLAY"] = "1"
    if use_netns:
        plan = plan_lab(prefix, options.friends, options.bandwidth, options.mtu,
                        options.same_router)
        hosts = list(plan.hosts)
        endpoint = f"{CTL_ADDRESS}:{HIVE_PORT}"
    else:
        hosts = [Host("ctl", None, "127.0.0.1", "127.0.0.1")] + [
            Host(f"friend{i}", None, "127.0.0.1", "127.0.0.1")
            for i in range(1, options.friends + options.same_router + 1)]
        endpoint = f"127.0.0.1:{free_port()}"
        # several loopback labs (or a user's own controller) must not share forward ports
        base = random.SystemRandom().randrange(20000, 24000, 1000)
        extra.update(GPUHIVE_FORWARD_PORT_MIN=str(base), GPUHIVE_FORWARD_PORT_MAX=str(base + 999),
                     GPUHIVE_HTTP_PORT=str(free_port()))
    st = lab_state.LabState(prefix, "netns" if use_netns else "loopback", lab_dir, hosts, {},
                            extra)
    lab_state.save(st)
    lab = Lab(st)
    try:
        if use_netns:
            netns.build(plan)
        _, port = endpoint.rsplit(":", 1)
        lab.cli("init", "--endpoint", endpoint, "--listen-port", port, check=True)
        lab.start_controller()
        for name in lab.friends:
            lab.enroll(name)
        lab.wait_for({name: "online" for name in lab.friends}, timeout=options.wait_s)
        if use_netns and options.overlay:
            lab.wait_for_overlay(timeout=options.wait_s)
    except BaseException:
        down(lab_dir)
        raise
    return lab


def load(lab_dir: Path = DEFAULT_DIR) -> Lab:
    return Lab(lab_state.load(lab_state.state_path(lab_dir)))


def down(lab_dir: Path = DEFAULT_DIR) -> list[str]:
    """Stop every process and remove every namespace and file the lab made. Idempotent."""
    removed: list[str] = []
    try:
        st = lab_state.load(lab_state.state_path(lab_dir))
    except GpuhiveError:
        st = None
    if st is not None:
        for role, pid in sorted(st.pids.items(), key=lambda kv: kv[0] == "ctl"):
            procs.stop(pid, grace_s=3)
            removed.append(f"process {role} ({pid})")
        if st.mode == "netns":
            removed += [f"namespace {ns}" for ns in netns.teardown(st.prefix)]
            # wireguard-go's sockets live outside the namespaces
            for sock in Path("/var/run/wireguard").glob(f"{st.prefix}*.sock"):
                sock.unlink(missing_ok=True)
                removed.append(f"socket {sock}")
    if lab_dir.exists():
        shutil.rmtree(lab_dir, ignore_errors=True)
        removed.append(f"directory {lab_dir}")
    return removed
