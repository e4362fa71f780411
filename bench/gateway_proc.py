"""The gateway as its own process, for bench/gateway.py (as the controller would run it).

    python bench/gateway_proc.py --port P --gguf tiny.gguf --keys keys.db \
        --replica ID=URL@RELIABILITY[#MODEL] [--replica ...]

Serves the given replicas (static; model ``tiny-test`` unless ``#MODEL`` says otherwise),
prints ``READY`` once listening, stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from gpuhive.serve.api import ModelProfile, Replica, StaticReplicas
from gpuhive.serve.gateway.apikeys import ApiKeyStore
from gpuhive.serve.gateway.app import Gateway, GatewayServer
from gpuhive.serve.gateway.pool import GatewayConfig, ReplicaPool
from gpuhive.serve.models.gguf_fit import read_gguf_info

MODEL = "tiny-test"


def parse_replica(text: str) -> Replica:
    rid, _, rest = text.partition("=")
    url, _, rest = rest.partition("@")
    rel, _, model = rest.partition("#")
    return Replica(rid, model or MODEL, rid, url, float(rel or 0.5))


async def main(args: argparse.Namespace) -> None:
    info = read_gguf_info(Path(args.gguf))
    profile = ModelProfile(MODEL, args.ctx, info.chat_template, info.bos_token, info.eos_token)
    replicas = [parse_replica(r) for r in args.replica]
    profiles = {r.model: ModelProfile(r.model, args.ctx) for r in replicas}
    profiles[MODEL] = profile
    source = StaticReplicas(replicas, profiles)
    keys = ApiKeyStore(Path(args.keys)) if args.keys else None
    gw = Gateway(ReplicaPool(source, config=GatewayConfig(token_gap_timeout_s=args.gap)),
                 keys=keys)
    server = GatewayServer(gw, port=args.port)
    await server.start()
    print("READY", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    print(gw.metrics.snapshot()["failovers"], file=sys.stderr, flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--keys", default="")
    ap.add_argument("--gap", type=float, default=15.0)
    ap.add_argument("--replica", action="append", default=[])
    asyncio.run(main(ap.parse_args()))
