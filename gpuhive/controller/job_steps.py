"""How a training job's remote steps are bounded, fanned out and worded when they fail.

Every step before the launch (disk, rendezvous reach, code, environment, torch check) and
the sweep after it is one command per node over ``NodeSessions``. A node that never
answers must not hold the job for ever, so each such command has a deadline
(``JobOptions``; the daemon uses the defaults, tests pass short ones). A fan-out that
fails on one node cancels the others' commands instead of leaving them running
unwatched (``all_or_cancel``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from gpuhive.errors import GpuhiveError

T = TypeVar("T")


@dataclass(frozen=True)
class JobOptions:
    """The supervisor's timings and knobs; one place, so tests need no patching."""

    # the preflight listener's own exit once every node reached it: torchrun binds the
    # same port next
    listener_exit_s: float = 10.0
    # one preflight command (disk check, a connect to the rendezvous port); the connect
    # itself retries for 8 s on the node and the listener waits 20 s, so 30 s is generous
    preflight_s: float = 30.0
    # importing torch on a busy box can take tens of seconds
    torch_check_s: float = 120.0
    # the reaper waits up to 20 s for the job's processes before it kills them
    sweep_s: float = 60.0
    tail_lines: int = 40  # per node, to name the cause when it fails
    rdzv_ports: tuple[int, int] = (29400, 30000)  # [low, high) for the rendezvous
    # a queued job is tried again this often (and at once when a job releases nodes);
    # heartbeats land every heartbeat_interval, so capacity they free is seen within one
    queue_poll_s: float = 1.0
    # a queued job's followers hear a changed reason at most this often
    queue_tell_s: float = 10.0


class JobStepFailed(GpuhiveError):
    """A step of a job failed on one node: which node, which step, what it said."""

    code = "job_step"


class StepTimedOut(GpuhiveError):
    """A node did not answer one of a job's steps in time."""

    code = "job_step_timeout"


async def within(seconds: float, step: Awaitable[T], *, node: str, what: str) -> T:
    """``step``'s result, or ``StepTimedOut`` naming ``node`` and ``what`` it was doing."""
    try:
        return await asyncio.wait_for(step, seconds)
    except asyncio.TimeoutError:
        raise StepTimedOut(f"node {node} did not answer {what} within {seconds:g} s",
                           hint=f"see `gpuhive nodes show {node}`; a node that hangs can be "
                           "left out of the job", node=node, step=what) from None


async def all_or_cancel(*steps: Coroutine[Any, Any, T]) -> list[T]:
    """Every step's result in order; when one fails the others are cancelled (and awaited,
    so nothing of theirs still runs on a node) and its error is raised."""
    tasks = [asyncio.ensure_future(s) for s in steps]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
