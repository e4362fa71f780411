"""The shipped fake nodes behave like real sessions, failures included."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from gpuhive.core.model import NodeKind, NodeRecord, NodeStatus
from gpuhive.errors import NodeUnreachable
from gpuhive.serve.errors import ChecksumMismatch, TransferError
from gpuhive.serve.models.transfer import push_model
from gpuhive.testing import FakeHost, FakeNodes, Script


def record(name: str) -> NodeRecord:
    return NodeRecord(id=f"n-{name}", name=name, kind=NodeKind.AGENT,
                      status=NodeStatus.ONLINE, registered_at=0.0, forward_port=1)


def lines_of(nodes: FakeNodes, name: str, command: str) -> tuple[int | None, list[str], str]:
    got: list[str] = []

    async def go() -> tuple[int | None, str]:
        res = await nodes.run(record(name), [command], lambda n, s, line:
                              got.append(f"{n}:{s}:{line}"))
        return res.exit_status, res.error
    status, error = asyncio.run(go())
    return status, got, error


def test_commands_stream_lines_and_exit_codes_and_the_last_handler_wins() -> None:
    nodes = FakeNodes()
    alice = nodes.add("alice")
    alice.on(r"^echo", "one\ntwo")
    alice.on(r"^echo boom", Script().out("half").err("boom").exit(3))
    assert lines_of(nodes, "alice", "echo hi") == (0, ["alice:out:one", "alice:out:two"], "")
    assert lines_of(nodes, "alice", "echo boom") == (3, ["alice:out:half", "alice:err:boom"],
                                                     "")
    status, got, _ = lines_of(nodes, "alice", "rm -rf /")
    assert status == 127 and "no script for" in got[0]
    assert [c.command for c in alice.calls] == ["echo hi", "echo boom", "rm -rf /"]


def test_unreachable_and_dropped_sessions_fail_like_real_ones() -> None:
    nodes = FakeNodes()
    nodes.add("bob").unreachable("agent offline")
    nodes.add("carol").on("train", Script().out("step 1").drop("cable pulled"))
    assert lines_of(nodes, "bob", "true")[0] is None
    status, got, error = lines_of(nodes, "carol", "train")
    assert status is None and got == ["carol:out:step 1"] and "cable pulled" in error
    with pytest.raises(NodeUnreachable, match="agent offline"):
        asyncio.run(nodes.output(record("bob"), "true"))
    with pytest.raises(NodeUnreachable, match="no such node"):
        asyncio.run(nodes.output(record("nobody"), "true"))


def test_output_raises_with_the_stderr_tail_and_stdin_reaches_the_script() -> None:
    nodes = FakeNodes()
    alice = nodes.add("alice")
    alice.on("cat", lambda call: Script().out(call.stdin.decode().upper()).exit(0))
    alice.on("fail", Script().err("disk full").exit(1))
    sent: list[int] = []
    assert asyncio.run(nodes.output(record("alice"), "cat", stdin=b"abc",
                                    progress=sent.append)) == "ABC"
    assert sent == [3]
    with pytest.raises(NodeUnreachable, match="disk full"):
        asyncio.run(nodes.output(record("alice"), "fail"))


def test_stdin_cut_part_way_breaks_the_session_after_the_bytes_that_arrived() -> None:
    nodes = FakeNodes()
    alice = nodes.add("alice").on("cat", Script().out("got it").exit(0))
    alice.cut_stdin_after(600 * 1024)
    sent: list[int] = []
    data = os.urandom(1024 * 1024)

    async def go() -> tuple[int | None, str]:
        res = await nodes.run(record("alice"), ["cat"], lambda *a: None, stdin=data,
                              progress=sent.append)
        return res.exit_status, res.error
    status, error = asyncio.run(go())
    assert status is None and "broke: connection lost while sending stdin" in error
    assert sent == [256 * 1024, 512 * 1024, 600 * 1024]  # progress stops at the cut
    assert alice.calls[0].stdin == data[:600 * 1024] and alice.closed == 1
    with pytest.raises(NodeUnreachable, match="connection lost"):
        asyncio.run(nodes.output(record("alice"), "cat", stdin=data))
    alice.cut_stdin_after(None)
    assert asyncio.run(nodes.output(record("alice"), "cat", stdin=data)) == "got it"
    assert alice.calls[-1].stdin == data


def test_a_hanging_command_is_marked_cancelled_when_the_controller_gives_up() -> None:
    nodes = FakeNodes()
    alice = nodes.add("alice").on("sleep", Script().out("started").hang())

    async def go() -> None:
        task = asyncio.ensure_future(nodes.run(record("alice"), ["sleep"], lambda *a: None))
        while not alice.calls:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(go())
    assert alice.calls[0].cancelled


def test_a_process_yields_lines_records_stdin_and_reports_its_exit() -> None:
    nodes = FakeNodes()
    alice = nodes.add("alice").on("worker", Script().out('{"state": "ready"}', "done")
                                  .exit(0))

    async def go() -> tuple[list[str], int | None]:
        async with nodes.process(record("alice"), "worker") as proc:
            proc.write(b"stop\n")
            got = [line async for line in proc.lines()]
            return got, await proc.wait()
    assert asyncio.run(go()) == (['{"state": "ready"}', "done"], 0)
    assert bytes(alice.calls[0].written) == b"stop\n" and alice.calls[0].process

    nodes.add("bob").on("worker", Script().out("x").drop())

    async def dropped() -> None:
        async with nodes.process(record("bob"), "worker") as proc:
            async for _ in proc.lines():
                pass
    with pytest.raises(NodeUnreachable, match="broke"):
        asyncio.run(dropped())


def test_a_push_cut_mid_transfer_resumes_and_a_lying_disk_is_refused(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 7)
    sha = hashlib.sha256(data).hexdigest()
    local = tmp_path / "m.gguf"
    local.write_bytes(data)
    nodes = FakeNodes()
    alice = nodes.add("alice").cut_writes_after(1_500_000)

    async def push() -> object:
        async with nodes.files(record("alice")) as files:
            return await push_model(files, local, "/h/models/m.gguf", sha)
    with pytest.raises(TransferError, match="failed"):
        asyncio.run(push())
    kept = len(alice.files["/h/models/m.gguf.part"])
    assert 0 < kept <= 1_500_000
    alice.cut_writes_after(None)
    done = asyncio.run(push())
    assert (done.resumed_from, done.sent) == (kept, len(data) - kept)  # type: ignore[attr-defined]
    assert alice.files["/h/models/m.gguf"] == data and "/h/models/m.gguf.part" not in alice.files
    assert asyncio.run(push()).skipped  # type: ignore[attr-defined]

    bob = nodes.add("bob").corrupt_write_at(1 << 20)

    async def push_bob() -> object:
        async with nodes.files(record("bob")) as files:
            return await push_model(files, local, "/h/m.gguf", sha)
    with pytest.raises(ChecksumMismatch, match="arrived corrupt"):
        asyncio.run(push_bob())
    assert bob.files == {}


def test_forwards_and_first_contact_with_an_sshd() -> None:
    nodes = FakeNodes()
    nodes.add("alice").listen(8080, 41234)
    assert asyncio.run(nodes.forward(record("alice"), 8080)).local_port == 41234
    with pytest.raises(NodeUnreachable, match="nothing listens"):
        asyncio.run(nodes.forward(record("alice"), 9))
    nodes.hosts[("lan-box", 22)] = FakeHost(probe_output="hostname=lan-box")
    nodes.hosts[("shut", 22)] = FakeHost(refuse="login")
    info = asyncio.run(nodes.inspect_host("me", "lan-box", 22, "probe"))
    assert info.probe_output == "hostname=lan-box" and info.host_key.startswith("ssh-ed25519")
    with pytest.raises(NodeUnreachable, match="refused the controller's key"):
        asyncio.run(nodes.inspect_host("me", "shut", 22, "probe"))
    with pytest.raises(NodeUnreachable, match="connection refused"):
        asyncio.run(nodes.inspect_host("me", "nowhere", 22, "probe"))
