"""Time from `gpuhive train` to the first training step on 3 lab nodes, against torchrun
started by hand on the same nodes with the code already in place — in one run.

    python bench/train_launch.py [--rounds 3]

As root: 3 NAT'd friends with the WireGuard overlay (netns lab). Prints both medians, the
ratio (target ≤ 1.3x) and the bytes of code a second launch of unchanged code sent (0).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpuhive.lab import hive
from gpuhive.lab.hive import Lab, LabOptions

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "data" / "train" / "allreduce.py"
FIRST_STEP = re.compile(r"step 0 loss")


def until_first_step(argv: list[str], env: dict[str, str] | None, cwd: Path) -> tuple[float, str]:
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    out = []
    elapsed = float("nan")
    for line in proc.stdout:
        out.append(line)
        if FIRST_STEP.search(line) and elapsed != elapsed:
            elapsed = time.monotonic() - t0
    proc.wait(timeout=300)
    return elapsed, "".join(out)


def by_hand(lab: Lab, job: dict, code: str, port: int) -> float:
    """torchrun on each node exactly as gpuhive would start it, code already there."""
    nodes = job["nodes"]
    overlay = {n["name"]: n["overlay"] for n in lab.nodes()}
    host_ip = overlay[nodes[0]]["ip"]
    procs = []
    t0 = time.monotonic()
    for i, name in enumerate(nodes):
        ov = overlay[name]
        home = lab.node_home(name)
        argv = ["ip", "netns", "exec", str(lab.host(name).namespace), "env",
                f"GLOO_SOCKET_IFNAME={ov['status']['iface']}",
                "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1", sys.executable, "-m",
                "torch.distributed.run", "--nnodes", "3", "--nproc-per-node", "1",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{host_ip}:{port}",
                "--rdzv-id", f"hand-{port}", "--rdzv-conf", f"is_host={1 if i == 0 else 0}",
                "--local-addr", ov["ip"], "train.py", "10"]
        procs.append(subprocess.Popen(argv, cwd=home / "code" / code, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    elapsed = float("nan")
    for p in procs:
        assert p.stdout is not None
        for line in p.stdout:
            if FIRST_STEP.search(line) and elapsed != elapsed:
                elapsed = time.monotonic() - t0
        p.wait(timeout=300)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    lab_dir = Path(tempfile.mkdtemp(prefix="gh-bench-")) / "lab"
    work = Path(tempfile.mkdtemp(prefix="gh-bench-work-"))
    shutil.copy(SCRIPT, work / "train.py")
    lab = hive.up(LabOptions(friends=3, overlay=True, heartbeat_interval=1.0), lab_dir)
    try:
        env = lab.env(lab.controller_home)
        argv = [sys.executable, "-m", "gpuhive", "train", "train.py", "--nodes", "3", "--", "10"]
        first, out = until_first_step(argv, env, work)  # the first launch syncs the code
        m = re.search(r"synced: code (\w+): (\d+) bytes", out)
        assert m, out
        sent_first = int(m.group(2))
        job = json.loads(lab.cli("jobs", "--json", check=True).stdout)[0]
        code = next(p.name for p in (lab.node_home(job["nodes"][0]) / "code").iterdir()
                    if p.name.startswith(m.group(1)))
        ours, hand, sent_again = [], [], []
        for r in range(a.rounds):
            t, out = until_first_step(argv, env, work)
            ours.append(t)
            sent_again.append(int(re.search(r"synced: code \w+: (\d+) bytes", out).group(1)))
            hand.append(by_hand(lab, job, code, 29300 + r))
        g, h = statistics.median(ours), statistics.median(hand)
        print(f"first launch (code sent: {sent_first} bytes): {first:.2f} s to the first step")
        print(f"gpuhive train, unchanged code: median {g:.2f} s to the first step "
              f"({', '.join(f'{x:.2f}' for x in ours)}); code sent {sent_again}")
        print(f"torchrun by hand:              median {h:.2f} s "
              f"({', '.join(f'{x:.2f}' for x in hand)})")
        verdict = "PASS" if g / h <= 1.3 else "FAIL"
        print(f"ratio {g / h:.2f}x (target <= 1.3x): {verdict}; second launch sent "
              f"{max(sent_again)} bytes (target 0): {'PASS' if max(sent_again) == 0 else 'FAIL'}")
    finally:
        hive.down(lab_dir)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(lab_dir.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
