"""One rank of a gloo all-reduce over the overlay, for checks and benchmarks.

    GLOO_SOCKET_IFNAME=IFACE python -m gpuhive.overlay.gloo_probe \\
        --rank R --world-size N --init tcp://RANK0_IP:PORT [--mb 100] [--iters 1]

Prints one JSON line per rank: {"rank", "mb", "seconds", "cpu_s", "mb_per_s", "ok"} where
``seconds`` is the fastest timed all-reduce of ``mb`` MB (float32), ``cpu_s`` the CPU time
this rank used in it, and ``ok`` says the sum was right. Needs torch (not a gpuhive
dependency); imported only here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gpuhive.overlay.gloo_probe")
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--world-size", type=int, required=True)
    ap.add_argument("--init", required=True, help="tcp://RANK0_IP:PORT")
    ap.add_argument("--mb", type=float, default=100.0)
    ap.add_argument("--iters", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=180.0)
    a = ap.parse_args(argv)

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=a.init, rank=a.rank, world_size=a.world_size,
                            timeout=datetime.timedelta(seconds=a.timeout))
    try:
        warm = torch.ones(1024)
        dist.all_reduce(warm)  # opens the pairwise connections
        n = int(a.mb * 1e6 / 4)
        expect = float(a.world_size * (a.world_size + 1) // 2)
        best, cpu, ok = float("inf"), float("inf"), True
        for _ in range(a.iters):
            t = torch.full((n,), float(a.rank + 1))
            dist.barrier()
            start, cpu0 = time.perf_counter(), time.process_time()
            dist.all_reduce(t)
            if time.perf_counter() - start < best:
                best, cpu = time.perf_counter() - start, time.process_time() - cpu0
            ok = ok and bool(t[0] == expect) and bool(t[-1] == expect)
    finally:
        dist.destroy_process_group()
    print(json.dumps({"rank": a.rank, "mb": a.mb, "seconds": best, "cpu_s": cpu,
                      "mb_per_s": a.mb / best, "ok": ok}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
