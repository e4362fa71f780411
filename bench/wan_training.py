"""DDP vs DiLoCo to the same target loss: wall clock, bytes per sample, final loss.

    python bench/wan_training.py [--target-loss 1.0] [--sync-every 50] [--nproc 2]
                                 [--launch TEMPLATE] [--link-mbit 20 --link-rtt-ms 40]

Runs examples/llm.py twice, once with ``--mode ddp --compress none`` and once with
``--mode diloco --sync-every H`` (bf16 pseudo-gradients), both with ``--target-loss`` so
each stops at the first held-out evaluation at or below the target. DDP evaluates every
``--ddp-eval-every`` steps (10: it stops close to the target); DiLoCo can only evaluate
synced weights, every H steps. Each run is one command from ``--launch``; the default is a
local ``torchrun --standalone`` with ``--nproc`` gloo processes on loopback. For shaped lab
nodes pass a template, e.g.::

    --launch 'gpuhive train examples/llm.py --nodes 3 -- {args}'

``{args}`` is replaced by the script's arguments (shell-quoted), ``{python}``, ``{script}``
and ``{nproc}`` as named. Figures come from the script's own output (``stats``, ``target
loss ... reached``, ``final loss`` lines; any prefix before them is fine).

Bytes per sample are exact: the payload every rank hands to all-reduce (counted in the DDP
hooks / the DiLoCo wrapper) divided by the samples each rank trained on. A ring all-reduce
puts about 2(N-1)/N times that on each rank's link.

With ``--lab DIR`` (a lab from ``gpuhive lab up --dir DIR``) the bytes each friend's router
sent out of its WAN port during each run are counted too (interface counters: WireGuard,
UDP and IP overhead, the control channel and retransmits included) and reported per
training sample next to the payload figure.

Targets: DiLoCo reaches the target >= 5x sooner than DDP, and its final loss is within 3 %
of DDP's (of the target, when DDP stopped below it): this fails when DiLoCo hits the step
cap short of the target. On loopback the network costs little, so the measured ratio
there mostly reflects steps to the target, not the link; the "projected" line adds, as a
model and not a measurement, what each run's all-reduces would cost on a link of
``--link-mbit`` and ``--link-rtt-ms``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _harness import BenchError, Cleanup, exit_status, machine_line, tail, verdict

from gpuhive.errors import GpuhiveError
from gpuhive.lab import netns
from gpuhive.lab import state as lab_state
from gpuhive.lab.topology import router_namespace, wan_iface

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "llm.py"
LOCAL = "{python} -m torch.distributed.run --standalone --nproc-per-node {nproc} {script} {args}"
SPEEDUP_TARGET = 5.0
LOSS_TOLERANCE = 0.03

STATS = re.compile(r"stats (mode=.*)$", re.M)
REACHED = re.compile(r"target loss \S+ reached at step (\d+) after (\d+\.\d+) s")
FINAL = re.compile(r"final loss (\d+\.\d+) weights_sha256 ([0-9a-f]{64})")


@dataclass(frozen=True)
class Run:
    label: str
    mode: str
    compress: str
    reached: bool
    steps: int
    seconds: float            # training loop, from the script (to target or to the cap)
    wall: float               # the whole command, start-up included
    world: int
    bytes_per_sample: float
    train_bytes: int
    train_calls: int
    final_loss: float
    ranks_agree: bool         # every rank printed the same weights_sha256
    samples: int = 0          # every rank's together
    wire_bytes: int | None = None  # sent out of the friends' WAN ports (--lab), else None

    @property
    def wire_per_sample(self) -> float | None:
        return self.wire_bytes / self.samples if self.wire_bytes and self.samples else None

    def projected(self, mbit: float, rtt_ms: float) -> float:
        """Model: measured time + ring all-reduce cost of every training call on the link."""
        if self.world <= 1:
            return self.seconds
        hops = 2 * (self.world - 1)
        wire = self.train_bytes * hops / self.world          # bytes each rank sends
        return (self.seconds + wire * 8 / (mbit * 1e6)
                + self.train_calls * hops * rtt_ms / 2000)


def wan_tx_bytes(lab_dir: Path | None) -> int | None:
    """Bytes sent out of every lab friend's router WAN port so far (None without a lab)."""
    if lab_dir is None:
        return None
    try:
        prefix = lab_state.load(lab_state.state_path(lab_dir)).prefix
    except GpuhiveError as exc:
        raise BenchError(f"--lab {lab_dir}: {exc.message}") from None
    total = 0
    for index in itertools.count(1):  # friends with a router of their own: 1, 2, … N
        ns = router_namespace(prefix, index)
        if ns not in netns.list_namespaces():
            return total
        link = netns.run(["ip", "-n", ns, "-s", "-j", "link", "show", wan_iface(prefix, index)])
        total += int(json.loads(link)[0]["stats64"]["tx"]["bytes"])
    return total


def run_one(cl: Cleanup, label: str, template: str, nproc: int, script_args: list[str],
            timeout: float, lab_dir: Path | None = None) -> Run:
    ckpt = cl.dir / label / "ckpt"
    ckpt.mkdir(parents=True)
    log = cl.dir / f"{label}.log"
    command = template.format(python=shlex.quote(sys.executable), nproc=nproc,
                              script=shlex.quote(str(SCRIPT)),
                              args=" ".join(shlex.quote(a) for a in script_args))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUHIVE_")}
    env.update(GPUHIVE_CHECKPOINT_DIR=str(ckpt), GPUHIVE_NODE_NAME=label,
               PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    print(f"  {label}: {command}", flush=True)
    tx0 = wan_tx_bytes(lab_dir)
    t0 = time.perf_counter()
    proc = cl.spawn(label, ["bash", "-c", command], env=env, log=log)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{label} did not finish within {timeout:.0f} s:\n{tail(log)}") from None
    wall = time.perf_counter() - t0
    tx1 = wan_tx_bytes(lab_dir)
    cl.stop(proc, grace_s=1.0)
    out = log.read_text(errors="replace")
    stats = STATS.search(out)
    finals = FINAL.findall(out)
    if rc != 0 or not stats or not finals:
        raise BenchError(f"{label} exited with {rc} or printed no stats:\n{tail(log)}")
    fields = dict(kv.split("=", 1) for kv in stats.group(1).split())
    reached = REACHED.search(out)
    return Run(label=label, mode=fields["mode"], compress=fields["compress"],
               reached=reached is not None, steps=int(fields["steps"]),
               seconds=float(reached.group(2)) if reached else float(fields["seconds"]),
               wall=wall, world=int(fields["world"]),
               bytes_per_sample=float(fields["bytes_per_sample"]),
               train_bytes=int(fields["train_bytes"]), train_calls=int(fields["train_calls"]),
               final_loss=float(finals[0][0]), ranks_agree=len({s for _, s in finals}) == 1,
               samples=int(fields.get("samples", 0)),
               wire_bytes=tx1 - tx0 if tx0 is not None and tx1 is not None else None)


def report(args: argparse.Namespace, ddp: Run, dl: Run) -> bool:
    print()
    print(f"DDP vs DiLoCo (H={args.sync_every}) to held-out loss {args.target_loss:.4f}, "
          f"{ddp.world} ranks, batch {args.batch_size}/rank ({machine_line()})")
    print(f"  {'run':<8} {'compress':<9} {'reached':<8} {'steps':>6} {'train s':>8} "
          f"{'wall s':>7} {'bytes/sample':>13} {'all-reduces':>11} {'final loss':>10} "
          f"{'ranks agree':>11}")
    for r in (ddp, dl):
        print(f"  {r.label:<8} {r.compress:<9} {'yes' if r.reached else 'NO':<8} {r.steps:>6} "
              f"{r.seconds:>8.2f} {r.wall:>7.1f} {r.bytes_per_sample:>13.2f} "
              f"{r.train_calls:>11} {r.final_loss:>10.4f} {'yes' if r.ranks_agree else 'NO':>11}")
    speedup = ddp.seconds / dl.seconds if dl.seconds > 0 else math.inf
    byte_ratio = (ddp.bytes_per_sample / dl.bytes_per_sample if dl.bytes_per_sample
                  else math.inf)
    reference = max(ddp.final_loss, args.target_loss)  # where DDP stopped, or the target
    loss_gap = (dl.final_loss - reference) / reference
    hops = 2 * (ddp.world - 1) / ddp.world if ddp.world > 1 else 0.0
    print(f"  bytes per sample DDP / DiLoCo: {byte_ratio:.1f}x   (ring all-reduce sends "
          f"{hops:.2f}x these bytes per rank)")
    if ddp.wire_per_sample and dl.wire_per_sample:
        print(f"  on the wire (friends' WAN ports, whole run): DDP {ddp.wire_per_sample:,.0f} "
              f"B/sample ({(ddp.wire_bytes or 0) / 1e6:,.1f} MB), DiLoCo {dl.wire_per_sample:,.0f} "
              f"B/sample ({(dl.wire_bytes or 0) / 1e6:,.1f} MB), "
              f"{ddp.wire_per_sample / dl.wire_per_sample:.1f}x")
    mbit, rtt = args.link_mbit, args.link_rtt_ms
    p_ddp, p_dl = ddp.projected(mbit, rtt), dl.projected(mbit, rtt)
    print(f"  projected on {mbit:g} Mbit/s, {rtt:g} ms RTT (model: train s + ring all-reduce "
          f"bytes / rate + calls x RTT): DDP {p_ddp:.1f} s, DiLoCo {p_dl:.1f} s, "
          f"{p_ddp / p_dl:.1f}x")
    checks = [
        (f"DiLoCo reaches the target >= {SPEEDUP_TARGET:g}x sooner (measured)",
         dl.reached and speedup >= SPEEDUP_TARGET, f"{speedup:.2f}x"),
        (f"DiLoCo final loss within {LOSS_TOLERANCE:.0%} of DDP's",
         loss_gap <= LOSS_TOLERANCE,
         f"{(dl.final_loss - ddp.final_loss) / ddp.final_loss:+.1%} vs DDP "
         f"({ddp.final_loss:.4f} → {dl.final_loss:.4f}; {loss_gap:+.1%} vs "
         f"{'the target' if reference != ddp.final_loss else 'DDP'})"),
        ("every rank ends with identical weights", ddp.ranks_agree and dl.ranks_agree,
         "yes" if ddp.ranks_agree and dl.ranks_agree else "no"),
    ]
    print()
    for label, ok, value in checks:
        print(f"  {verdict(ok)}  {label:<58} {value}")
    print(f"  (info) projected speed-up on the modelled link: {p_ddp / p_dl:.1f}x "
          f"(target {SPEEDUP_TARGET:g}x; a model, not a measurement)")
    return all(ok for _, ok, _ in checks)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-loss", type=float, default=1.0)
    ap.add_argument("--sync-every", type=int, default=50, help="DiLoCo H")
    ap.add_argument("--ddp-eval-every", type=int, default=10)
    ap.add_argument("--max-steps", type=int, default=2000, help="cap per run")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nproc", type=int, default=2, help="local processes (default launch)")
    ap.add_argument("--launch", default=LOCAL, help="command template, see the docstring")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--link-mbit", type=float, default=20.0, help="for the projection")
    ap.add_argument("--link-rtt-ms", type=float, default=40.0, help="for the projection")
    ap.add_argument("--keep", action="store_true", help="keep logs and the temp dir")
    ap.add_argument("--lab", type=Path, default=None,
                    help="lab directory: also count bytes on the friends' WAN ports")
    args = ap.parse_args()
    common = ["--steps", str(args.max_steps), "--batch-size", str(args.batch_size),
              "--lr", str(args.lr), "--seed", str(args.seed), "--checkpoint-every", "0",
              "--target-loss", str(args.target_loss)]
    with Cleanup("gpuhive-bench-wan-training-", keep=args.keep) as cl:
        def both() -> bool:
            print(f"runs in {cl.dir}", flush=True)
            ddp = run_one(cl, "ddp", args.launch, args.nproc,
                          [*common, "--mode", "ddp", "--compress", "none",
                           "--eval-every", str(args.ddp_eval_every)], args.timeout, args.lab)
            dl = run_one(cl, "diloco", args.launch, args.nproc,
                         [*common, "--mode", "diloco", "--sync-every", str(args.sync_every),
                          "--compress", "bf16", "--eval-every", str(args.sync_every)],
                         args.timeout, args.lab)
            return report(args, ddp, dl)
        return exit_status(both)


if __name__ == "__main__":
    sys.exit(main())
