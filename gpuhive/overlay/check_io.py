"""The pairwise reachability check: ping, then a TCP bulk transfer, per ordered pair. I/O.

One procedure for every place it runs. How a command reaches a node is a ``Runner``:
the controller's runs it over the node's session (``controller/overlay_ops``, on
``transport.api.NodeSessions``), the lab's in a network namespace (``lab/netcheck``).
What the commands are and how their output reads is ``overlay.check`` (pure).

Timeouts are this module's, the same for both: a runner only has to stop the command when
its ``run`` is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from gpuhive.overlay import check
from gpuhive.overlay.check import PairResult, TransferResult

DEFAULT_PORT = 47001
DEFAULT_BYTES = 50_000_000

N = TypeVar("N", covariant=True)
N_contra = TypeVar("N_contra", contravariant=True)
Outcome = tuple[int | None, str]  # (exit status, None: did not run or broke; its output)


@dataclass(frozen=True)
class Target(Generic[N]):
    """A node to check: its name, its overlay address, and the runner's handle for it."""

    name: str
    overlay_ip: str
    node: N


class Runner(Protocol[N_contra]):
    async def run(self, node: N_contra, argv: list[str]) -> Outcome:
        """Run ``argv`` on ``node``: exit status (None when it could not run or the session
        broke, the output saying why) and stdout+stderr. Cancelled: stop the command."""
        ...


@dataclass(frozen=True)
class CheckOptions:
    nbytes: int = DEFAULT_BYTES  # per transfer; 0 pings only
    timeout_s: float = 30.0  # the bulk tool's own timeout, on both ends
    grace_s: float = 30.0  # how much longer a transfer may take before it is stopped
    ping_timeout_s: float = 15.0  # ping -c 3 -W 1 takes about 3 s
    settle_s: float = 0.2  # head start for the receiver (the sender retries anyway)
    python: str = sys.executable  # the node's Python with gpuhive (argv[0] of the bulk tool)


@dataclass(frozen=True)
class PairProgress:
    """Before (``result`` None) and after each pair is measured."""

    n: int
    total: int
    src: str
    dst: str
    result: PairResult | None = None


async def _bounded(run: Coroutine[Any, Any, Outcome], timeout_s: float) -> Outcome:
    try:
        return await asyncio.wait_for(run, timeout_s)
    except TimeoutError:
        return None, f"timed out after {timeout_s:g}s"


async def ping(runner: Runner[N], src: Target[N], dst: Target[N],
               opts: CheckOptions) -> tuple[int, int, float | None, str]:
    """(sent, received, average rtt ms, why ping did not run) from src to dst."""
    _status, out = await _bounded(runner.run(src.node, check.ping_argv(dst.overlay_ip)),
                                  opts.ping_timeout_s)
    sent, received, rtt = check.parse_ping(out)
    return sent, received, rtt, "" if sent else out.strip()[-200:]


def _receiver_failed(recv: asyncio.Future[Outcome]) -> str:
    """Why the receiver ended by itself, if it did and that explains the pair. One that
    timed out waiting says only that no sender came: the sender says why."""
    if not recv.done():
        return ""
    why = check.receiver_failure(*recv.result())
    return "" if "timed out" in why.lower() else why


async def transfer(runner: Runner[N], src: Target[N], dst: Target[N], *, port: int,
                   opts: CheckOptions) -> TransferResult:
    """``opts.nbytes`` from src to a receiver started on dst's overlay address."""
    # No deadline of ours on the receiver: it is stopped below once the sender is done,
    # so when it ends first it ended by itself, and its reason is the pair's.
    recv = asyncio.ensure_future(runner.run(dst.node, check.recv_argv(
        dst.overlay_ip, port, python=opts.python, timeout_s=opts.timeout_s)))
    try:
        await asyncio.wait({recv}, timeout=opts.settle_s)
        if why := _receiver_failed(recv):
            return TransferResult(False, error=why, receiver_error=why)
        status, out = await _bounded(runner.run(src.node, check.send_argv(
            dst.overlay_ip, port, opts.nbytes, python=opts.python, timeout_s=opts.timeout_s)),
            opts.timeout_s + opts.grace_s)
        result = check.parse_transfer(status, out, opts.nbytes)
        if not result.ok:
            # A receiver that died explains the sender's failure better than the sender can.
            await asyncio.wait({recv}, timeout=opts.settle_s)
            if why := _receiver_failed(recv):
                return TransferResult(False, result.received, result.mb_per_s, why, why)
        return result
    finally:
        if not recv.done():
            # It exits by itself once the sender is done; stop it if it does not.
            await asyncio.wait({recv}, timeout=opts.settle_s)
        recv.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recv


async def check_pair(runner: Runner[N], src: Target[N], dst: Target[N], *, port: int,
                     opts: CheckOptions) -> PairResult:
    sent, received, rtt, err = await ping(runner, src, dst, opts)
    if received == 0 or opts.nbytes <= 0:
        # No ping fails the pair already; a transfer would only wait for its timeout.
        return PairResult(src.name, dst.name, sent, received, rtt, None, None, err)
    t = await transfer(runner, src, dst, port=port, opts=opts)
    return PairResult(src.name, dst.name, sent, received, rtt, t.ok, t.mb_per_s, t.error,
                      t.receiver_error)


async def check_pairs(runner: Runner[N], targets: Sequence[Target[N]], *,
                      opts: CheckOptions = CheckOptions(),
                      pick_port: Callable[[], int] = lambda: DEFAULT_PORT,
                      progress: Callable[[PairProgress], None] | None = None) \
        -> list[PairResult]:
    """Every ordered pair, one at a time: concurrent transfers would share the CPU and the
    hub, and measure each other. ``pick_port``: the receiver's port for each pair."""
    report = progress or (lambda _p: None)
    pairs = [(a, b) for a in targets for b in targets if a.name != b.name]
    results = []
    for n, (src, dst) in enumerate(pairs, 1):
        report(PairProgress(n, len(pairs), src.name, dst.name))
        r = await check_pair(runner, src, dst, port=pick_port(), opts=opts)
        results.append(r)
        report(PairProgress(n, len(pairs), src.name, dst.name, r))
    return results
