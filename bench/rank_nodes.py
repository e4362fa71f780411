"""Rank 10,000 synthetic nodes for one request and print how long it took.

    python bench/rank_nodes.py [--nodes 10000] [--repeat 5] [--seed 1] [--healthy]

Target: under 50 ms for 10,000 nodes. By default nodes mix GPU models from the
throughput table, owner policies, schedules, thermal events and task histories, so every
eligibility rule fires somewhere (most nodes end up excluded). ``--healthy`` makes every
node eligible (all checks run in full, all nodes are sorted): the slow case.
Prints the best of ``--repeat`` runs and the median.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from gpuhive.core.model import AgentState, CpuInfo, GpuInfo, Hardware, NodeStatus
from gpuhive.core.ranking import (
    NodeView,
    OwnerPolicy,
    Purpose,
    Request,
    TaskHistory,
    TaskRecord,
    rank_nodes,
)
from gpuhive.data import load_driver_blacklist, load_gpu_throughput

MODELS = [
    ("NVIDIA H100 80GB HBM3", 81559, "9.0"),
    ("NVIDIA A100-SXM4-40GB", 40960, "8.0"),
    ("NVIDIA GeForce RTX 4090", 24564, "8.9"),
    ("NVIDIA GeForce RTX 3090", 24576, "8.6"),
    ("NVIDIA GeForce RTX 3080", 10240, "8.6"),
    ("Tesla T4", 15360, "7.5"),
    ("NVIDIA GeForce GTX 1080 Ti", 11264, "6.1"),
    ("NVIDIA GeForce RTX 4070", 12282, "8.9"),
]
DRIVERS = ["580.159.04", "550.54.15", "535.104.05", "440.33.01"]


def synth(n: int, now: float, rng: random.Random, healthy: bool = False) -> list[NodeView]:
    nodes = []
    for i in range(n):
        name, mem, cc = rng.choice(MODELS)
        driver = rng.choice(DRIVERS)
        gpus = [GpuInfo(index=j, name=name, memory_total_mib=mem,
                        memory_used_mib=rng.choice((0, 0, 512, 4096)),
                        utilization_pct=rng.choice((0.0, 5.0, 50.0, 97.0)),
                        compute_capability=cc, driver_version=driver)
                for j in range(rng.choice((1, 1, 2, 4, 8)))]
        hw = Hardware(hostname=f"n{i}", cpu=CpuInfo(cores=16, flags=["avx2"]),
                      memory_total_mib=65536, memory_available_mib=60000, gpus=gpus)
        tasks = [TaskRecord(now - rng.uniform(0, 10 * 86400), rng.random() > 0.03)
                 for _ in range(rng.choice((0, 5, 20, 50)))]
        tasks.sort()
        if healthy:
            tasks = [t._replace(ok=True) for t in tasks]
            for g in gpus:
                g.driver_version = DRIVERS[0]
                g.compute_capability = "8.0"
            nodes.append(NodeView(
                node_id=f"id{i:05d}", name=f"node-{i:05d}", hardware=hw,
                reliability=rng.random(), rtt_ms=rng.uniform(2, 200),
                tasks=TaskHistory.of(tasks),
                thermal_events=[now - rng.uniform(0, 2 * 86400) for _ in range(2)],
                policy=OwnerPolicy(schedule="00:00-23:59", reserve_vram_mib=512)))
            continue
        nodes.append(NodeView(
            node_id=f"id{i:05d}", name=f"node-{i:05d}", hardware=hw,
            status=rng.choice([NodeStatus.ONLINE] * 18 + [NodeStatus.DEGRADED,
                                                          NodeStatus.OFFLINE]),
            agent_state=rng.choice([AgentState.AVAILABLE] * 8 + [AgentState.BUSY,
                                                                 AgentState.PAUSED]),
            reliability=rng.random(), rtt_ms=rng.uniform(2, 200),
            thermal_events=[now - rng.uniform(0, 2 * 86400)
                            for _ in range(rng.choice((0, 0, 2, 4)))],
            tasks=TaskHistory.of(tasks),
            policy=OwnerPolicy(max_gpus=rng.choice((None, None, 1, 2)),
                               reserve_vram_mib=rng.choice((0, 0, 2048)),
                               schedule=rng.choice(("", "", "22:00-08:00", "09:00-17:00")),
                               paused=rng.random() < 0.02),
            utc_offset_s=rng.choice((0, 3600, -5 * 3600, 9 * 3600)),
        ))
    return nodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--healthy", action="store_true", help="every node eligible")
    args = ap.parse_args()
    now = 1_800_000_000.0
    nodes = synth(args.nodes, now, random.Random(args.seed), args.healthy)
    need = 8_000 if args.healthy else 20_000
    req = Request(need_vram_mib=need, gpus=1, purpose=Purpose.TRAIN)
    table, blacklist = load_gpu_throughput(), load_driver_blacklist()
    cal = []
    for _ in range(5):
        t0 = time.perf_counter()
        sum(range(1_000_000))
        cal.append(time.perf_counter() - t0)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = rank_nodes(nodes, req, now, throughput=table, blacklist=blacklist)
        times.append(time.perf_counter() - t0)
    print(f"ranked {args.nodes} nodes: {len(result.ranked)} eligible, "
          f"{len(result.excluded)} excluded")
    print(f"best {min(times) * 1000:.1f} ms, median {statistics.median(times) * 1000:.1f} ms "
          f"over {args.repeat} runs (target < 50 ms)")
    print(f"machine speed: sum(range(10**6)) takes {min(cal) * 1000:.1f} ms "
          "(compare figures from different machines by this)")
    for r in result.ranked[:3]:
        print("  ", r.name, r.why)
    for e in result.excluded[:3]:
        print("  ", e.name, "; ".join(x.message for x in e.reasons))


if __name__ == "__main__":
    main()
