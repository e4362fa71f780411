"""A short GPU micro-benchmark: fp16 matmul TFLOPS and device memory bandwidth.

Run on a node as ``python -m gpuhive.probe.gpubench``; prints one JSON object. Without
torch or a CUDA device it prints ``{"available": false, "reason": …}`` and exits 0, so
the controller can tell "no GPU" from "benchmark broke" (non-zero exit).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def run(size: int = 8192, iters: int = 20, copy_mib: int = 1024) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"available": False, "reason": "torch is not installed"}
    if not torch.cuda.is_available():
        return {"available": False, "reason": "torch sees no CUDA device"}
    dev = torch.device("cuda:0")
    a = torch.randn(size, size, device=dev, dtype=torch.float16)
    b = torch.randn(size, size, device=dev, dtype=torch.float16)
    for _ in range(3):  # warm-up: cuBLAS picks its kernels on the first calls
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        a @ b
    end.record()
    torch.cuda.synchronize()
    matmul_s = start.elapsed_time(end) / 1000
    tflops = 2 * size**3 * iters / matmul_s / 1e12
    del a, b
    n = copy_mib * (1 << 20) // 4
    src = torch.empty(n, device=dev, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    copy_s = start.elapsed_time(end) / 1000
    bandwidth = 2 * n * 4 * iters / copy_s / 1e9  # read + write
    return {"available": True, "device": torch.cuda.get_device_name(0),
            "matmul_tflops": round(tflops, 1), "matmul_size": size,
            "memory_gbps": round(bandwidth, 1), "torch": torch.__version__}


def main() -> None:
    print(json.dumps(run()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
