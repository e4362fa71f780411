"""The serving gateway against its replicas, side by side in one run.

    python bench/gateway.py [--requests 400] [--streams 200] [--reps 5]

Sets up on loopback, in a temp dir: the tiny test model, two llama-cpp-python engines
(A, B; one thread each), two more (C1, C2) with a bigger model of the same kind, and the
gateway in its own process (``bench/gateway_proc.py``, API keys on; model ``tiny-test``
on A and B, A more reliable so the gateway routes to A; models ``tiny-a``, ``tiny-b``,
``paced-1``, ``paced-2`` pinned to one engine each). Measures:

  (a) added latency of short non-streaming requests (1 token): p50 and p99 through the
      gateway minus direct to engine A, interleaved;           target: p50 added <= 2 ms
  (b) streaming tokens/s through the gateway / direct. The machine's load swings the
      engines' speed by tens of percent from one stream to the next, so each measurement
      is a pair run at the same time on two identical engines, one stream direct and one
      through the gateway, sides swapped every rep; the ratio is the median over --reps
      pairs. Two kinds of engine:                               target: >= 0.97
        paced: engines C1, C2 serve an 8-layer, n_embd 512 model of the same kind at
               roughly 50-100 tokens/s on one thread, the pace of a real 7B model on a
               GPU: what the gateway costs a real stream (this ratio is the PASS/FAIL);
        tiny:  engines A, B at several hundred tokens/s. Engines, gateway and client share
               two cores here, so every cycle the gateway spends per token is taken from
               an engine: a CPU-bound worst case, shown for information.
  (c) failover: engine A is SIGKILLed mid-stream; the longest wait for a token the
      client sees after the kill (the stream continues on B), and the stream's text
      checked against the uninterrupted run;
                                                                target: <= 2 s (worst)
  (d) --streams concurrent streams (16 tokens each) held by the one gateway: errors,
      and per-stream completion p50 / p99 through the gateway vs the same load sent
      straight to A and B;                                      target: no error

Everything started is stopped and the temp dir removed at the end, also on failure or
Ctrl-C. Exit status 0 when every target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _harness import Cleanup, free_port, machine_line, tail, verdict, wait_until

from gpuhive.serve.gateway.apikeys import ApiKeyStore
from gpuhive.serve.models.tinymodel import TinyShape, write_tiny_model
from gpuhive.serve.node.engine import EngineHost, EngineSpec, build_engine_command

MODEL = "tiny-test"
TARGET_ADDED_P50_MS = 2.0
TARGET_STREAM_RATIO = 0.97
TARGET_FAILOVER_S = 2.0
STREAM_TOKENS = 480  # the tiny engine runs at n_ctx 512


PACED_SHAPE = TinyShape(n_layer=8, n_embd=512, n_head=8, n_head_kv=4, n_ff=1536)
PACED_TOKENS = 120


@dataclass
class Engine:
    name: str
    port: int
    log: Path
    alias: str = MODEL
    proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, cl: Cleanup, model: Path, *, gpu: bool = False) -> None:
        spec = EngineSpec(model, self.port, self.alias, n_ctx=512, n_threads=1)
        cmd = build_engine_command(spec, EngineHost(cores=1, has_gpu=gpu, llama_server=None))
        self.proc = cl.spawn(f"engine-{self.name}", cmd.argv, env={**os.environ, **cmd.env},
                             log=self.log)
        wait_until(f"engine {self.name}", self.ready, 120, interval=0.1,
                   on_timeout=lambda: tail(self.log))

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/v1/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# ---- (a) latency ------------------------------------------------------------------------

def bench_latency(direct: str, gw: str, auth: dict[str, str], n: int) -> dict[str, float]:
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 1, "temperature": 0}
    d: list[float] = []
    g: list[float] = []
    with httpx.Client(timeout=30) as c:
        def one(url: str, headers: dict[str, str]) -> float:
            t = time.perf_counter()
            r = c.post(url + "/v1/completions", json=body, headers=headers)
            dt = time.perf_counter() - t
            if r.status_code != 200:
                raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
            return dt
        for _ in range(30):
            one(direct, {})
            one(gw, auth)
        for _ in range(n):
            d.append(one(direct, {}))
            g.append(one(gw, auth))
    return {"direct_p50": statistics.median(d) * 1e3, "gw_p50": statistics.median(g) * 1e3,
            "direct_p99": pct(d, 0.99) * 1e3, "gw_p99": pct(g, 0.99) * 1e3}


# ---- (b) streaming throughput -------------------------------------------------------------

def stream_once(url: str, headers: dict[str, str], *, max_tokens: int = STREAM_TOKENS,
                on_token: Any = None, model: str = MODEL) -> tuple[str, list[float]]:
    """One completion stream; (text, arrival time of each content chunk)."""
    body = {"model": model, "prompt": "Once upon", "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    parts: list[str] = []
    times: list[float] = []
    with httpx.stream("POST", url + "/v1/completions", json=body, headers=headers,
                      timeout=60) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code} {r.read()[:200]!r}")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"error event: {chunk['error']}")
            text = chunk["choices"][0]["text"]
            if text:
                parts.append(text)
                times.append(time.perf_counter())
                if on_token:
                    on_token(len(parts))
    return "".join(parts), times


def tokens_per_s(url: str, headers: dict[str, str], model: str, tokens: int) -> float:
    _, times = stream_once(url, headers, max_tokens=tokens, model=model)
    return (len(times) - 1) / (times[-1] - times[0])


def bench_stream(engines: tuple[Engine, Engine], gw: str, auth: dict[str, str], reps: int,
                 *, models: tuple[str, str], tokens: int) -> tuple[float, float, float]:
    """Pairs at the same time: one engine direct, the other through the gateway (its own
    model name pins it), sides swapped every rep. (median direct tok/s, median gateway
    tok/s, median of the per-pair ratios)."""
    d: list[float] = []
    g: list[float] = []
    with ThreadPoolExecutor(2) as pool:
        for rep in range(reps):
            i = rep % 2
            direct = pool.submit(tokens_per_s, engines[i].url, {}, models[i], tokens)
            via = pool.submit(tokens_per_s, gw, auth, models[1 - i], tokens)
            d.append(direct.result())
            g.append(via.result())
    return (statistics.median(d), statistics.median(g),
            statistics.median(b / a for a, b in zip(d, g, strict=True)))


# ---- (c) failover -------------------------------------------------------------------------

def one_failover(a: Engine, gw: str, auth: dict[str, str], reference: str) -> float:
    """Stream through the gateway, SIGKILL engine A after 20 tokens: the longest the client
    then waits for a token (from the kill to the next arrival, or between two arrivals).
    Tokens A sent before it died may still be in flight and arrive at once; the pause
    while the stream moves to B shows as the longest gap after the kill."""
    killed: list[float] = []

    def strike(n: int) -> None:
        if n == 20:
            os.killpg(a.proc.pid, signal.SIGKILL)
            killed.append(time.perf_counter())

    text, times = stream_once(gw, auth, on_token=strike)
    if text != reference:
        raise RuntimeError("the failed-over stream differs from the reference")
    after = [killed[0], *(t for t in times if t > killed[0])]
    return max(later - earlier for earlier, later in itertools.pairwise(after))


def bench_failover(cl: Cleanup, model: Path, a: Engine, gw: str, auth: dict[str, str],
                   reference: str, reps: int) -> list[float]:
    out: list[float] = []
    for rep in range(reps):
        # the gateway rests a failed replica 1, 2, 4 s: wait it out so A serves again
        time.sleep(2 ** rep + 0.5)
        httpx.post(gw + "/v1/completions", headers=auth, timeout=30,
                   json={"model": MODEL, "prompt": "x", "max_tokens": 1})
        out.append(one_failover(a, gw, auth, reference))
        cl.stop(a.proc, grace_s=1)
        a.start(cl, model)
    return out


# ---- (d) many concurrent streams ----------------------------------------------------------

async def many_streams(urls: list[str], headers: dict[str, str], n: int) -> dict[str, Any]:
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 16, "temperature": 0, "stream": True}
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    errors: list[str] = []
    durations: list[float] = []
    async with httpx.AsyncClient(limits=limits, timeout=120) as c:
        async def one(i: int) -> None:
            t = time.perf_counter()
            done = False
            try:
                async with c.stream("POST", urls[i % len(urls)] + "/v1/completions",
                                    json=body, headers=headers) as r:
                    if r.status_code != 200:
                        errors.append(f"status {r.status_code}")
                        return
                    async for line in r.aiter_lines():
                        if line == "data: [DONE]":
                            done = True
                        elif line.startswith("data: ") and '"error"' in line[:20]:
                            errors.append(line[:200])
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
                return
            if not done:
                errors.append("no [DONE]")
            durations.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    return {"errors": errors, "wall_s": wall,
            "p50_s": statistics.median(durations) if durations else float("nan"),
            "p99_s": pct(durations, 0.99) if durations else float("nan")}


# ---- main ---------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--failovers", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--gpu", action="store_true", help="offload every layer to the GPU "
                    "(scripts/gpu-serve-check.sh)")
    args = ap.parse_args()
    print(machine_line())
    with Cleanup("gpuhive-bench-gw-", keep=args.keep) as cl:
        model = write_tiny_model(cl.dir / "tiny.gguf")
        paced_model = write_tiny_model(cl.dir / "paced.gguf", shape=PACED_SHAPE)
        a = Engine("A", free_port(), cl.dir / "engine-a.log")
        b = Engine("B", free_port(), cl.dir / "engine-b.log")
        c1 = Engine("C1", free_port(), cl.dir / "engine-c1.log")
        c2 = Engine("C2", free_port(), cl.dir / "engine-c2.log")
        for e in (a, b):
            e.start(cl, model, gpu=args.gpu)
        for e in (c1, c2):
            e.start(cl, paced_model, gpu=args.gpu)
        keys = ApiKeyStore(cl.dir / "keys.db")
        token, _ = keys.create("bench", now=time.time())
        keys.close()
        auth = {"Authorization": f"Bearer {token}"}
        gw_port = free_port()
        gw_log = cl.dir / "gateway.log"
        cl.spawn("gateway", [sys.executable, str(Path(__file__).with_name("gateway_proc.py")),
                             "--port", str(gw_port), "--gguf", str(model),
                             "--keys", str(cl.dir / "keys.db"),
                             "--replica", f"A={a.url}@0.9", "--replica", f"B={b.url}@0.5",
                             "--replica", f"a={a.url}@0.5#tiny-a",
                             "--replica", f"b={b.url}@0.5#tiny-b",
                             "--replica", f"c1={c1.url}@0.5#paced-1",
                             "--replica", f"c2={c2.url}@0.5#paced-2"],
                 log=gw_log)
        gw = f"http://127.0.0.1:{gw_port}"
        wait_until("the gateway", lambda: _up(gw), 60, interval=0.1,
                   on_timeout=lambda: tail(gw_log))

        lat = bench_latency(a.url, gw, auth, args.requests)
        added50, added99 = lat["gw_p50"] - lat["direct_p50"], lat["gw_p99"] - lat["direct_p99"]
        print(f"(a) short requests, {args.requests} each, interleaved")
        print(f"    direct p50 {lat['direct_p50']:.2f} ms  p99 {lat['direct_p99']:.2f} ms")
        print(f"    gateway p50 {lat['gw_p50']:.2f} ms  p99 {lat['gw_p99']:.2f} ms")
        print(f"    added: p50 {added50:.2f} ms, p99 {added99:.2f} ms "
              f"(target p50 <= {TARGET_ADDED_P50_MS} ms)  "
              f"{verdict(added50 <= TARGET_ADDED_P50_MS)}")

        print(f"(b) streaming, {args.reps} simultaneous pairs (direct | via gateway)")
        pd, pg, ratio = bench_stream((c1, c2), gw, auth, args.reps,
                                     models=("paced-1", "paced-2"), tokens=PACED_TOKENS)
        print(f"    paced, {PACED_TOKENS} tokens: direct {pd:.1f} tok/s, gateway {pg:.1f} "
              f"tok/s, ratio {ratio:.3f} (target >= {TARGET_STREAM_RATIO})  "
              f"{verdict(ratio >= TARGET_STREAM_RATIO)}")
        td, tg, tratio = bench_stream((a, b), gw, auth, args.reps, models=("tiny-a", "tiny-b"),
                                      tokens=STREAM_TOKENS)
        print(f"    tiny, {STREAM_TOKENS} tokens (CPU-bound, for information): direct "
              f"{td:.0f} tok/s, gateway {tg:.0f} tok/s, ratio {tratio:.3f}")

        direct_many = asyncio.run(many_streams([a.url, b.url], {}, args.streams))
        gw_many = asyncio.run(many_streams([gw], auth, args.streams))
        print(f"(d) {args.streams} concurrent streams of 16 tokens")
        for name, res in (("direct A+B", direct_many), ("gateway", gw_many)):
            print(f"    {name:<10}: {len(res['errors'])} errors, all done in "
                  f"{res['wall_s']:.2f} s, per stream p50 {res['p50_s'] * 1e3:.0f} ms "
                  f"p99 {res['p99_s'] * 1e3:.0f} ms")
        if gw_many["errors"]:
            print(f"    first errors: {gw_many['errors'][:3]}")
        print(f"    added per-stream p50 "
              f"{(gw_many['p50_s'] - direct_many['p50_s']) * 1e3:+.0f} ms  "
              f"{verdict(not gw_many['errors'])}")

        reference, _ = stream_once(a.url, {})
        fo = bench_failover(cl, model, a, gw, auth, reference, args.failovers)
        worst = max(fo)
        print(f"(c) failover, engine A killed after 20 tokens, {len(fo)} times")
        print(f"    longest wait for a token after the kill: "
              f"{', '.join(f'{x * 1e3:.0f} ms' for x in fo)}; "
              f"text identical to the uninterrupted run")
        print(f"    worst {worst * 1e3:.0f} ms (target <= {TARGET_FAILOVER_S:.0f} s)  "
              f"{verdict(worst <= TARGET_FAILOVER_S)}")
        ok = (added50 <= TARGET_ADDED_P50_MS and ratio >= TARGET_STREAM_RATIO
              and worst <= TARGET_FAILOVER_S and not gw_many["errors"])
        print(f"overall: {verdict(ok)}")
        return 0 if ok else 1


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
