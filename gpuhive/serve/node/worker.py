"""``python -m gpuhive.serve.node.worker``: one replica on a node, run by the controller.

The controller starts this over its SSH session to the node and reads one JSON status
line per change (``starting``/``ready``/``failed``… with the engine's port). The replica
lives as long as that channel: `serve stop`, node removal or a lost controller close it,
and the agent stops this process and the engine with it (``agent.reaper``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

from gpuhive.errors import GpuhiveError
from gpuhive.ports import free_port
from gpuhive.serve.node.engine import EngineSpec, detect_host
from gpuhive.serve.node.supervisor import WorkerStatus, WorkerSupervisor


def _emit(status: WorkerStatus) -> None:
    sys.stdout.write(json.dumps(status.to_dict()) + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> int:
    spec = EngineSpec(Path(args.model), args.port or free_port(), args.alias, n_ctx=args.ctx,
                      chat_format=args.chat_format or None, no_repack=args.no_repack)
    sup = WorkerSupervisor(spec, args.sha256, detect_host(), on_status=_emit,
                           log_path=Path(args.log) if args.log else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sup.start()
    except GpuhiveError as exc:  # e.g. a file whose sha256 does not match is never loaded
        sys.stdout.write(json.dumps({"state": "failed", "port": 0, "error": exc.message}) + "\n")
        sys.stdout.flush()
        return 3
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await sup.stop()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m gpuhive.serve.node.worker")
    p.add_argument("--model", required=True)
    p.add_argument("--sha256", required=True)
    p.add_argument("--alias", required=True)
    p.add_argument("--ctx", type=int, default=2048)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--chat-format", default="")
    p.add_argument("--no-repack", action="store_true")
    p.add_argument("--log", default="")
    return asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
