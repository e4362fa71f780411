"""The lab's reachability runner on this host (namespace None): real ping, real bulk tool
over loopback, the same procedure the controller runs on nodes. No root needed."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sys
from pathlib import Path

import pytest

from gpuhive import pids
from gpuhive.lab import netcheck
from gpuhive.lab.netcheck import NetnsRunner
from gpuhive.overlay import check, check_io
from gpuhive.overlay.check_io import CheckOptions, Target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("ping") is None, reason="ping (iputils-ping) missing")
def test_two_local_targets_pass_ping_and_a_real_transfer() -> None:
    here = [Target("a", "127.0.0.1", None), Target("b", "127.0.0.1", None)]
    results = netcheck.run_checks(here, nbytes=2_000_000, port=free_port())
    m = check.build_matrix(["a", "b"], results)
    assert m.ok, check.render(m)
    assert all(r.ping_received == 3 and r.transfer_ok and r.mb_per_s for r in results)


MARK = "61.4242"  # a sleep no one else runs


def marked_sleeps() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep",
                                                                        MARK.encode()]:
                    found.append(int(entry.name))
    return [p for p in found if pids.alive(p)]


def test_cancelling_a_command_stops_it_and_what_it_started() -> None:
    async def go() -> tuple[list[int], list[int]]:
        child = [sys.executable, "-c", "import subprocess, time; "
                 f"subprocess.Popen(['sleep', '{MARK}']); time.sleep(60)"]
        task = asyncio.ensure_future(NetnsRunner().run(None, child))
        for _ in range(200):
            if started := marked_sleeps():
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return started, marked_sleeps()

    started, left = asyncio.run(go())
    assert started and left == []


def test_a_receiver_that_cannot_bind_is_the_reason() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = int(taken.getsockname()[1])
    try:
        # SO_REUSEADDR does not let a second listener bind a listening port.
        t = netcheck.transfer(Target("a", "127.0.0.1", None), Target("b", "127.0.0.1", None),
                              nbytes=1000, port=port, timeout_s=2)
    finally:
        taken.close()
    assert not t.ok and "Address already in use" in t.receiver_error


def test_a_command_past_its_deadline_reads_as_a_timeout() -> None:
    opts = CheckOptions(nbytes=1000, timeout_s=0.5, grace_s=0.5, settle_s=0.05)

    class Stalling(NetnsRunner):
        async def run(self, node: str | None, argv: list[str]) -> check_io.Outcome:
            if "send" in argv:
                argv = ["sleep", "30"]
            return await super().run(node, argv)

    t = asyncio.run(check_io.transfer(Stalling(), Target("a", "127.0.0.1", None),
                                      Target("b", "127.0.0.1", None), port=free_port(),
                                      opts=opts))
    assert not t.ok and t.error == "timed out after 1s"
