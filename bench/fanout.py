"""`nodes exec all -- true` on N embedded agents vs. a loop of OpenSSH `ssh`, in one run.

    python bench/fanout.py [--nodes 50] [--repeat 7] [--baseline-repeat 3] [--profile DIR]

Sets up on loopback, in a temp dir: a controller home and a real controller process
(`python -m gpuhive up`), N agents enrolled with real join tokens, and all N agents running
in ONE helper process (one asyncio loop, N ``Agent.run()`` tasks: N embedded asyncssh
servers, each reached by the controller through its agent's real reverse forward).
Then measures, interleaved, ``--repeat`` times each (median reported):

  (a) admin ``nodes.exec`` all ``true`` on fresh sessions (close all, dial all, run)
  (b) the same over the controller's already-open sessions
  (c) the real CLI ``gpuhive nodes exec all -- true`` as a subprocess (Python start-up included)
  (d) baseline: a sequential loop of OpenSSH ``ssh … true`` to the same N embedded servers
      through their forward ports, host keys pinned (StrictHostKeyChecking=yes)

Targets: (d)/(a) >= 20x; (a) < 0.5 s for 50 nodes; (b) < 100 ms. Everything started is
stopped and the temp dir removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import (
    BenchError,
    Cleanup,
    ControllerProc,
    clean_env,
    cpu_seconds,
    exit_status,
    free_port_range,
    machine_line,
    median,
    print_profiles,
    profile_argv,
    tail,
    verdict,
    wait_until,
)

TARGET_RATIO = 20.0
TARGET_FRESH_S = 0.5
TARGET_OPEN_S = 0.100


# ---- the agents' helper process ------------------------------------------------------

def run_agents(agents_dir: Path) -> None:
    """All enrolled agents under ``agents_dir`` in one asyncio loop, until SIGTERM."""
    from gpuhive.agent.runner import Agent
    from gpuhive.agent.state import AgentHome
    from gpuhive.config import Settings

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(backoff_base=0.5, backoff_cap=2.0, connect_timeout=10.0)

    async def main() -> None:
        homes = sorted(p for p in agents_dir.iterdir() if (p / "agent.json").exists())
        tasks = [asyncio.ensure_future(Agent(AgentHome(h), settings).run()) for h in homes]
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"{len(tasks)} agents running", file=sys.stderr, flush=True)
        done = asyncio.ensure_future(asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION))
        await asyncio.wait([done, asyncio.ensure_future(stop.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception():
                print(f"agent task died: {t.exception()!r}", file=sys.stderr, flush=True)
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


# ---- setup ---------------------------------------------------------------------------

async def _enroll_all(agents_dir: Path, tokens: dict[str, str]) -> None:
    from gpuhive.agent.enroll import enroll

    sem = asyncio.Semaphore(10)

    async def one(name: str, token: str) -> None:
        async with sem:
            await enroll(agents_dir / name, token, name)

    await asyncio.gather(*(one(n, t) for n, t in tokens.items()))


def setup(cl: Cleanup, n: int, profile: Path | None = None,
          ) -> tuple[ControllerProc, Path, list[dict[str, Any]]]:
    ports = free_port_range(n + 20)
    ctl = ControllerProc(cl, cl.dir / "controller", forward_ports=ports,
                         env={"GPUHIVE_HEARTBEAT_INTERVAL": "2"})
    ctl.start(profile_argv(profile, "controller"))
    names = [f"node{i:03d}" for i in range(n)]
    tokens = {name: ctl.call("invite.create", {"name": name, "ttl": "1h", "uses": 1})["token"]
              for name in names}
    agents_dir = cl.dir / "agents"
    agents_dir.mkdir(mode=0o700)
    t0 = time.perf_counter()
    asyncio.run(_enroll_all(agents_dir, tokens))
    print(f"  enrolled {n} agents in {time.perf_counter() - t0:.1f} s", flush=True)
    agents_log = cl.dir / "agents.log"
    agents = cl.spawn("agents", [*profile_argv(profile, "agents"), str(Path(__file__).resolve()),
                                 "--run-agents", str(agents_dir)], env=clean_env(agents_dir),
                      log=agents_log)
    t0 = time.perf_counter()

    def all_online() -> list[dict[str, Any]] | None:
        if agents.poll() is not None:
            raise BenchError(f"the agents' process exited (rc {agents.returncode}):\n"
                             f"{tail(agents_log)}")
        nodes = ctl.call("nodes.list")
        ok = len(nodes) == n and all(x["status"] == "online" and x["connected"] for x in nodes)
        return nodes if ok else None

    def progress() -> str:
        nodes = ctl.call("nodes.list")
        states: dict[str, int] = {}
        for x in nodes:
            key = f"{x['status']}{'' if x['connected'] else '/unlinked'}"
            states[key] = states.get(key, 0) + 1
        return f"{states}\n{tail(agents_log)}\n{tail(ctl.log)}"

    nodes = wait_until(f"{n} nodes online", all_online, 120, on_timeout=progress)
    print(f"  all {n} online {time.perf_counter() - t0:.1f} s after the agents' process "
          "started", flush=True)
    return ctl, agents_dir, nodes


def write_known_hosts(path: Path, agents_dir: Path, nodes: list[dict[str, Any]]) -> None:
    """Pin each embedded server's host key at its forward port, from the agent homes."""
    lines = []
    for node in nodes:
        pub = (agents_dir / node["name"] / "embedded_host_key.pub").read_text().split()
        lines.append(f"[127.0.0.1]:{node['forward_port']} {pub[0]} {pub[1]}\n")
    path.write_text("".join(lines))


# ---- the four measurements -----------------------------------------------------------

def admin_exec(ctl: ControllerProc, fresh: bool, n: int) -> None:
    results = ctl.call("nodes.exec", {"target": "all", "argv": ["true"], "fresh": fresh})
    _check(results, n, "fresh" if fresh else "open")


def cli_exec(ctl: ControllerProc, cli: list[str]) -> None:
    # exits non-zero if `true` failed or could not run on any node
    proc = subprocess.run([*cli, "nodes", "exec", "all", "--", "true"], env=ctl.env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or proc.stderr.strip():
        raise BenchError(f"CLI exited {proc.returncode}: {proc.stderr.strip()[-800:]}")


def ssh_loop(ctl: ControllerProc, known_hosts: Path, nodes: list[dict[str, Any]]) -> None:
    base = ["ssh", "-F", "/dev/null", "-i", str(ctl.home.client_key),
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", "ControlMaster=no", "-o", "ConnectTimeout=10"]
    for node in nodes:
        proc = subprocess.run([*base, "-p", str(node["forward_port"]), "gpuhive@127.0.0.1",
                               "true"], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise BenchError(f"ssh to {node['name']} (port {node['forward_port']}) exited "
                             f"{proc.returncode}: {proc.stderr.strip()[-500:]}")


def _check(results: list[dict[str, Any]], n: int, what: str) -> None:
    bad = [r for r in results if r["exit_status"] != 0]
    if len(results) != n or bad:
        raise BenchError(f"{what} exec: {len(results)} results, {len(bad)} failed: {bad[:3]}")


def cli_argv() -> list[str]:
    """The installed `gpuhive` entry script next to this Python (no pyenv shim in front)."""
    script = Path(sys.executable).parent / "gpuhive"
    if script.exists():
        return [str(script)]
    found = shutil.which("gpuhive")
    return [found] if found else [sys.executable, "-m", "gpuhive"]


@dataclass
class Series:
    """Wall time and the CPU the controller and the agents' process spent, per run."""

    wall: list[float] = field(default_factory=list)
    ctl_cpu: list[float] = field(default_factory=list)
    agents_cpu: list[float] = field(default_factory=list)

    def run(self, fn: Callable[[], None], pids: tuple[int, int]) -> float:
        c0, a0 = cpu_seconds(pids[0]), cpu_seconds(pids[1])
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
        self.ctl_cpu.append(cpu_seconds(pids[0]) - c0)
        self.agents_cpu.append(cpu_seconds(pids[1]) - a0)
        self.wall.append(wall)
        return wall


def measure(ctl: ControllerProc, agents_pid: int, known_hosts: Path,
            nodes: list[dict[str, Any]], repeat: int, baseline_repeat: int,
            ) -> dict[str, Series]:
    n = len(nodes)
    cli = cli_argv()
    pids = (ctl.pid, agents_pid)
    out = {k: Series() for k in ("fresh", "open", "cli", "ssh")}
    admin_exec(ctl, False, n)  # warm-up: opens every session once
    admin_exec(ctl, False, n)
    for i in range(repeat):
        msg = [f"fresh {out['fresh'].run(lambda: admin_exec(ctl, True, n), pids) * 1000:.0f} ms",
               f"open {out['open'].run(lambda: admin_exec(ctl, False, n), pids) * 1000:.1f} ms",
               f"CLI {out['cli'].run(lambda: cli_exec(ctl, cli), pids) * 1000:.0f} ms"]
        if i < baseline_repeat:
            wall = out["ssh"].run(lambda: ssh_loop(ctl, known_hosts, nodes), pids)
            msg.append(f"ssh loop {wall:.2f} s")
        print(f"  round {i + 1}/{repeat}: {', '.join(msg)}", flush=True)
    return out


def report(n: int, m: dict[str, Series], setup_s: float) -> bool:
    fresh, opn, cli, ssh = (median(m[k].wall) for k in ("fresh", "open", "cli", "ssh"))
    rows = [
        ("(a) nodes.exec, fresh sessions", m["fresh"]),
        ("(b) nodes.exec, open sessions", m["open"]),
        ("(c) CLI `gpuhive nodes exec all -- true`", m["cli"]),
        ("(d) loop of OpenSSH `ssh … true`", m["ssh"]),
    ]
    checks = [
        (f"(d)/(a) >= {TARGET_RATIO:.0f}x", ssh / fresh >= TARGET_RATIO, f"{ssh / fresh:.1f}x"),
        (f"(d)/(b) >= {TARGET_RATIO:.0f}x", ssh / opn >= TARGET_RATIO, f"{ssh / opn:.0f}x"),
        (f"(a) < {TARGET_FRESH_S * 1000:.0f} ms for {n} nodes", fresh < TARGET_FRESH_S,
         f"{fresh * 1000:.0f} ms"),
        (f"(b) < {TARGET_OPEN_S * 1000:.0f} ms", opn < TARGET_OPEN_S, f"{opn * 1000:.1f} ms"),
    ]
    print()
    print(f"fan-out of `true` to {n} embedded agents, median of runs ({machine_line()}; "
          f"setup {setup_s:.0f} s)")
    print(f"  {'':<42} {'wall':>9} {'min':>9} {'max':>9} {'runs':>4}   "
          f"{'ctl CPU':>9} {'agents CPU':>10}")
    for label, ser in rows:
        print(f"  {label:<42} {_ms(median(ser.wall)):>9} {_ms(min(ser.wall)):>9} "
              f"{_ms(max(ser.wall)):>9} {len(ser.wall):>4}   {_cpu(median(ser.ctl_cpu)):>9} "
              f"{_cpu(median(ser.agents_cpu)):>10}")
    print(f"  per node: (a) {fresh / n * 1000:.1f} ms, (b) {opn / n * 1000:.2f} ms, "
          f"(d) {ssh / n * 1000:.0f} ms;  ratios (d)/(a) {ssh / fresh:.1f}x, "
          f"(d)/(b) {ssh / opn:.0f}x, (d)/(c) {ssh / cli:.1f}x")
    print("  note: all N agents share ONE process and the 2 cores with the controller; the")
    print("  CPU columns are what the controller / the agents' process spent during each run.")
    print()
    for label, ok, value in checks:
        print(f"  {verdict(ok)}  {label:<28} measured {value}")
    ok_all = all(ok for _, ok, _ in checks)
    print()
    print("figures for docs/benchmarks.md:")
    print("```")
    print(f"$ python bench/fanout.py --nodes {n}    # {machine_line()}")
    print(f"  {'':<42} {'median':>9}   {'ctl CPU':>9} {'agents CPU':>10}")
    for label, ser in rows:
        print(f"  {label:<42} {_ms(median(ser.wall)):>9}   {_cpu(median(ser.ctl_cpu)):>9} "
              f"{_cpu(median(ser.agents_cpu)):>10}")
    print(f"  (d)/(a) = {ssh / fresh:.1f}x   (d)/(b) = {ssh / opn:.0f}x")
    for label, ok, value in checks:
        print(f"  {verdict(ok)}  {label:<28} {value}")
    print("```")
    return ok_all


def _cpu(s: float) -> str:
    return f"{s * 1000:.0f} ms"  # /proc counts CPU in 10 ms ticks


def _ms(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=7, help="rounds of (a), (b), (c)")
    ap.add_argument("--baseline-repeat", type=int, default=3,
                    help="rounds of (d), the slow ssh loop (at most --repeat)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (for debugging)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="run the controller and the agents under cProfile, write DIR/*.prof "
                         "and print the top functions (slows everything down)")
    ap.add_argument("--run-agents", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_agents:
        run_agents(args.run_agents)
        return 0
    if shutil.which("ssh") is None:
        print("error: OpenSSH `ssh` is needed for the baseline", file=sys.stderr)
        return 2
    with Cleanup("gpuhive-bench-fanout-", keep=args.keep) as cl:
        def run() -> bool:
            t0 = time.perf_counter()
            print(f"setting up {args.nodes} agents in {cl.dir}", flush=True)
            ctl, agents_dir, nodes = setup(cl, args.nodes, args.profile)
            known_hosts = cl.dir / "known_hosts"
            write_known_hosts(known_hosts, agents_dir, nodes)
            setup_s = time.perf_counter() - t0
            agents_pid = next(p.pid for role, p in cl.procs if role == "agents")
            m = measure(ctl, agents_pid, known_hosts, nodes, args.repeat,
                        max(1, min(args.baseline_repeat, args.repeat)))
            ok = report(args.nodes, m, setup_s)
            if args.profile:
                cl.stop_all()  # SIGTERM first: both processes exit cleanly and write profiles
                print_profiles(args.profile)
            return ok
        return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())
