"""Controller CPU per 1000 heartbeats/s: N simulated agent links beating once a second.

    python bench/heartbeat_ingest.py [--links 1000] [--seconds 30] [--simulators 2]

Pre-registers N nodes directly in a fresh controller registry (one join token with N uses,
``Registry.enroll`` N times with generated ed25519 node keys), starts the real controller
process (`python -m gpuhive up`, GPUHIVE_HEARTBEAT_INTERVAL=1), then opens the N links from
``--simulators`` separate processes, ramping up in batches: each link is a real
``AgentLink`` (asyncssh client, node key, controller host key pinned, reverse forward of the
node's own port, ``gpuhive-agent`` channel) with a cheap fixed heartbeat payload. Once all N
are connected and online, it samples the controller's utime+stime from /proc/PID/stat and
``heartbeats_received`` from the admin ``status`` call over ``--seconds``.

Target: < 25 % of one core per 1000 heartbeats/s. The simulators run on the same cores as
the controller, so the controller's figure is measured under that contention.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from _harness import (
    BenchError,
    Cleanup,
    ControllerProc,
    cpu_seconds,
    exit_status,
    free_port,
    free_port_range,
    machine_line,
    print_profiles,
    profile_argv,
    tail,
    verdict,
    wait_until,
)

TARGET_PCT_PER_1000 = 25.0


# ---- the simulator process -----------------------------------------------------------

def simulate(shard_path: Path, stats_path: Path, batch: int) -> None:
    """Run every link of one shard until SIGTERM; write stats to ``stats_path`` each second."""
    import asyncssh

    from gpuhive.config import Settings
    from gpuhive.core.model import CpuInfo, Hardware
    from gpuhive.transport.agent_link import AgentLink, LinkTarget

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    shard = json.loads(shard_path.read_text())
    settings = Settings(backoff_base=1.0, backoff_cap=10.0, connect_timeout=30.0)
    payload = {"state": "available", "jobs": [], "models": [],
               "hardware": Hardware(hostname="sim", cpu=CpuInfo(cores=2),
                                    memory_total_mib=1024).to_dict()}
    closed_port = free_port()  # bound then released: nothing listens there

    async def heartbeat() -> dict[str, Any]:
        return payload

    async def main() -> None:
        links = [AgentLink(LinkTarget(shard["host"], shard["port"], n["node_id"],
                                      n["forward_port"], shard["controller_host_key"]),
                           asyncssh.import_private_key(n["key"]), closed_port, settings,
                           heartbeat=heartbeat) for n in shard["nodes"]]
        tasks: list[asyncio.Task[None]] = []
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def write_stats() -> None:
            stats = {"links": len(links), "started": len(tasks),
                     "connected": sum(lk.status.connected for lk in links[:len(tasks)]),
                     "attempts": sum(lk.status.attempts for lk in links[:len(tasks)]),
                     "sent": sum(lk.status.heartbeats_sent for lk in links[:len(tasks)]),
                     "cpu_s": time.process_time(), "at": time.time()}
            tmp = stats_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(stats))
            os.replace(tmp, stats_path)

        async def reporter() -> None:
            while True:
                write_stats()
                await asyncio.sleep(1.0)

        rep = asyncio.ensure_future(reporter())
        # Ramp up in batches: open a batch, wait (up to 30 s) until it is connected.
        for start in range(0, len(links), batch):
            if stop.is_set():
                break
            part = links[start:start + batch]
            tasks += [asyncio.ensure_future(lk.run()) for lk in part]
            deadline = time.monotonic() + 30
            while not all(lk.status.connected for lk in part) and time.monotonic() < deadline \
                    and not stop.is_set():
                await asyncio.sleep(0.05)
        await stop.wait()
        rep.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, rep, return_exceptions=True)

    asyncio.run(main())


# ---- setup ---------------------------------------------------------------------------

def preregister(ctl: ControllerProc, n: int, ports: tuple[int, int],
                shards: int) -> list[dict[str, Any]]:
    """Enroll N nodes straight into the registry; return the simulators' shards."""
    import asyncssh

    from gpuhive.controller.registry import Registry
    from gpuhive.core.model import CpuInfo, Hardware
    from gpuhive.transport import keys

    now = time.time()
    reg = Registry(ctl.home.registry)
    try:
        rec, secret = reg.create_token("bench", 3600, n, now)
        host_key = keys.public_text(asyncssh.generate_private_key("ssh-ed25519"))
        nodes = []
        for i in range(n):
            key = asyncssh.generate_private_key("ssh-ed25519")
            name = f"sim{i:05d}"
            node = reg.enroll(token_id=rec.token_id, secret=secret, name=name, name_given=True,
                              hostname=name, public_key=keys.public_text(key),
                              host_key=host_key,
                              hardware=Hardware(hostname=name, cpu=CpuInfo(cores=2),
                                                memory_total_mib=1024),
                              public_addr="127.0.0.1", port_range=ports, now=now)
            nodes.append({"node_id": node.id, "forward_port": node.forward_port,
                          "key": key.export_private_key("openssh").decode()})
    finally:
        reg.close()
    ctl_host_key = keys.public_text(keys.load_key(ctl.home.host_key))
    return [{"host": "127.0.0.1", "port": ctl.port, "controller_host_key": ctl_host_key,
             "nodes": nodes[k::shards]} for k in range(shards)]


def read_stats(paths: list[Path]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            out.append({})
    return out


def run(args: argparse.Namespace, cl: Cleanup) -> bool:
    n = args.links
    ports = free_port_range(n + 50)
    ctl = ControllerProc(cl, cl.dir / "controller", forward_ports=ports,
                         env={"GPUHIVE_HEARTBEAT_INTERVAL": "1"})
    t0 = time.perf_counter()
    shards = preregister(ctl, n, ports, args.simulators)
    print(f"  pre-registered {n} nodes in {time.perf_counter() - t0:.1f} s", flush=True)
    ctl.start(profile_argv(args.profile, "controller"))
    sims, stats_paths, logs = [], [], []
    for k, shard in enumerate(shards):
        shard_path = cl.dir / f"shard{k}.json"
        shard_path.write_text(json.dumps(shard))
        stats_paths.append(cl.dir / f"sim{k}.stats.json")
        logs.append(cl.dir / f"sim{k}.log")
        sims.append(cl.spawn(f"sim{k}", [
            sys.executable, str(Path(__file__).resolve()), "--simulate", str(shard_path),
            "--stats", str(stats_paths[k]), "--batch", str(args.batch)],
            env=ctl.env, log=logs[k]))
    t0 = time.perf_counter()
    last_print = [0.0]

    def all_connected() -> bool:
        for k, sim in enumerate(sims):
            if sim.poll() is not None:
                raise BenchError(f"simulator {k} exited (rc {sim.returncode}):\n{tail(logs[k])}")
        st = ctl.call("status", timeout=30)
        if time.perf_counter() - last_print[0] > 5:
            last_print[0] = time.perf_counter()
            print(f"    {time.perf_counter() - t0:5.1f} s: {st['connected']} connected, "
                  f"nodes {st['nodes']}", flush=True)
        return bool(st["connected"] == n and st["nodes"].get("online") == n)

    def why() -> str:
        st = ctl.call("status", timeout=30)
        return (f"{st['connected']} connected, nodes {st['nodes']}, simulators "
                f"{read_stats(stats_paths)}\n{tail(ctl.log)}\n"
                + "\n".join(tail(p, 5) for p in logs))

    wait_until(f"{n} links connected and online", all_connected, args.connect_timeout,
               interval=1.0, on_timeout=why)
    ramp_s = time.perf_counter() - t0
    print(f"  all {n} links connected and online after {ramp_s:.1f} s; settling "
          f"{args.settle:.0f} s", flush=True)
    time.sleep(args.settle)

    # The measurement window: status calls (which cost the controller a node listing)
    # bracket it but stay outside the CPU samples.
    sim_pids = [s.pid for s in sims]
    st0 = ctl.call("status")
    h0_at = time.monotonic()
    sim0 = read_stats(stats_paths)
    c0 = cpu_seconds(ctl.pid)
    s0 = sum(cpu_seconds(p) for p in sim_pids)
    w0 = time.monotonic()
    per_second: list[float] = []
    prev_c, prev_t = c0, w0
    while (now := time.monotonic()) < w0 + args.seconds:
        time.sleep(min(1.0, w0 + args.seconds - now))
        c, t = cpu_seconds(ctl.pid), time.monotonic()
        per_second.append((c - prev_c) / (t - prev_t) * 100)
        prev_c, prev_t = c, t
    c1 = cpu_seconds(ctl.pid)
    s1 = sum(cpu_seconds(p) for p in sim_pids)
    w1 = time.monotonic()
    sim1 = read_stats(stats_paths)
    st1 = ctl.call("status")
    h1_at = time.monotonic()  # the count is read as the controller answers: time the replies

    window = w1 - w0
    rate = (st1["heartbeats_received"] - st0["heartbeats_received"]) / (h1_at - h0_at)
    ctl_pct = (c1 - c0) / window * 100
    sim_pct = (s1 - s0) / window * 100
    per_1000 = ctl_pct / (rate / 1000) if rate else float("inf")
    # each simulator's own count over its own stats timestamps (files are rewritten each second)
    sent_rate = sum((b.get("sent", 0) - a.get("sent", 0)) / max(1e-9, b["at"] - a["at"])
                    for a, b in zip(sim0, sim1, strict=True) if "at" in a and "at" in b)
    reconnects = sum(s.get("attempts", 0) for s in sim1) - sum(s.get("attempts", 0)
                                                              for s in sim0)
    ok_links = st1["connected"] == n and st1["nodes"].get("online") == n
    ok = per_1000 < TARGET_PCT_PER_1000
    per_second.sort()

    print()
    print(f"heartbeat ingest: {n} links, interval 1 s, {window:.0f} s window "
          f"({machine_line()})")
    print(f"  heartbeats received by the controller   {rate:8.0f} /s"
          f"   (simulators sent {sent_rate:.0f} /s)")
    print(f"  controller CPU                          {ctl_pct:8.1f} % of one core"
          f"   (per-second samples: min {per_second[0]:.0f} %, median "
          f"{per_second[len(per_second) // 2]:.0f} %, max {per_second[-1]:.0f} %)")
    print(f"  controller CPU per 1000 heartbeats/s    {per_1000:8.1f} % of one core")
    print(f"  simulators' CPU ({args.simulators} processes)          {sim_pct:8.1f} % of one "
          "core, on the same cores")
    print(f"  ramp-up to {n} connected + online      {ramp_s:8.1f} s")
    print(f"  after the window: {st1['connected']} connected, nodes {st1['nodes']}, "
          f"{reconnects} reconnect(s) during it")
    print(f"  note: the {args.simulators} simulator processes compete with the controller for "
          f"the same {os.cpu_count()} cores")
    print()
    print(f"  {verdict(ok)}  controller CPU < {TARGET_PCT_PER_1000:.0f} % of one core per "
          f"1000 heartbeats/s   measured {per_1000:.1f} %")
    print(f"  {verdict(ok_links)}  every link stayed connected and online through the window")
    print()
    print("figures for docs/benchmarks.md:")
    print("```")
    print(f"$ python bench/heartbeat_ingest.py --links {n} --seconds {args.seconds:.0f}"
          f"    # {machine_line()}")
    print(f"  {rate:.0f} heartbeats/s received; controller {ctl_pct:.1f} % of one core "
          f"-> {per_1000:.1f} % per 1000 heartbeats/s (target < {TARGET_PCT_PER_1000:.0f} %): "
          f"{verdict(ok)}")
    print(f"  simulators ({args.simulators} processes, same cores) {sim_pct:.0f} % of one core;"
          f" ramp-up of {n} links {ramp_s:.0f} s; {reconnects} reconnects in the window")
    print("```")
    if args.profile:
        cl.stop_all()  # SIGTERM: the controller exits cleanly and writes its profile
        print_profiles(args.profile)
    return ok and ok_links


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--links", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    ap.add_argument("--simulators", type=int, default=2, help="simulator processes")
    ap.add_argument("--batch", type=int, default=50, help="links opened per ramp-up step")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds to wait after all links are up")
    ap.add_argument("--connect-timeout", type=float, default=300.0,
                    help="seconds allowed for all links to connect")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (for debugging)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="run the controller under cProfile, write DIR/controller.prof and "
                         "print the top functions (inflates the CPU figure)")
    ap.add_argument("--simulate", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.simulate:
        simulate(args.simulate, args.stats, args.batch)
        return 0
    with Cleanup("gpuhive-bench-ingest-", keep=args.keep) as cl:
        print(f"setting up {args.links} links in {cl.dir}", flush=True)
        return exit_status(lambda: run(args, cl))


if __name__ == "__main__":
    sys.exit(main())
