"""`gpuhive serve` start / scale / stop / supervise over scripted nodes and a real registry.

The controller's ``ServeManager`` runs unchanged over ``gpuhive.testing.FakeNodes``: each
node answers the two shell lines before the push, takes the model file (cut or corrupted
where a test says so) and plays the worker's JSON status lines; a ready worker's port is
"forwarded" to a local port. The last test routes a real request through the gateway to a
small HTTP engine on 127.0.0.1 behind such a forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpuhive.config import Settings
from gpuhive.controller.node_ops import NodeOps
from gpuhive.controller.registry import Registry
from gpuhive.controller.serving import ServeManager, parse_worker_line
from gpuhive.core.model import CpuInfo, Hardware, NodeStatus
from gpuhive.errors import ModelNotServed
from gpuhive.serve.errors import DeploymentRefused
from gpuhive.serve.gateway.app import Gateway, create_app
from gpuhive.serve.gateway.pool import ReplicaPool
from gpuhive.serve.gateway.routing import ReplicaHealth
from gpuhive.testing import FakeNode, FakeNodes, Script

NOW = 1_000_000.0
MODEL = "tiny-test"
WORKER = r"-m gpuhive\.serve\.node\.worker "


def status(state: str, port: int = 0, restarts: int = 0, error: str = "") -> str:
    return json.dumps({"state": state, "port": port, "restarts": restarts, "pid": 4242,
                       "error": error})


class Hive:
    """A temporary registry with online agents, FakeNodes for them, a ServeManager."""

    def __init__(self, tmp_path: Path, names: tuple[str, ...] = ("alice", "bob")) -> None:
        self.registry = Registry(tmp_path / "registry.db")
        self.nodes = FakeNodes()
        self.health: dict[str, ReplicaHealth] = {}
        settings = Settings()
        self.ops = NodeOps(self.registry, self.nodes, settings, lambda: NOW)
        self.serving = ServeManager(self.registry, self.nodes, self.ops, settings,
                                    tmp_path / "home", lambda: NOW, health=self.health)
        for i, name in enumerate(names):
            self.enroll(name, i)

    def enroll(self, name: str, i: int, *, online: bool = True) -> FakeNode:
        rec, secret = self.registry.create_token(name, 3600, 1, NOW)
        hw = Hardware(hostname=name, cpu=CpuInfo(cores=8, flags=["avx2"]),
                      memory_total_mib=32768, memory_available_mib=24576)
        node = self.registry.enroll(token_id=rec.token_id, secret=secret, name=name,
                                    name_given=True, hostname=name,
                                    public_key=f"ssh-ed25519 NODEKEY{name}",
                                    host_key=f"ssh-ed25519 HOSTKEY{name}", hardware=hw,
                                    public_addr="198.51.100.7:40000",
                                    port_range=(24000, 24999), now=NOW)
        if online:
            self.registry.save_heartbeats([(node.id, NOW, "available", None, None)])
            self.registry.set_status(node.id, NodeStatus.ONLINE, "", NOW)
        fake = self.nodes.add(name)
        fake.on(r"^printf %s", f"/home/{name}/.gpuhive")
        fake.on(r"^mkdir -p ", "")
        port = 8100 + i
        fake.on(WORKER, Script().out(status("starting", port), status("ready", port)).hang())
        fake.listen(port, 41000 + i)
        return fake

    def remote(self, name: str) -> str:
        sha = self.serving.deployments[MODEL].sha256
        return f"/home/{name}/.gpuhive/models/{sha}.gguf"

    def local_model(self) -> bytes:
        return self.serving.deployments[MODEL].path.read_bytes()

    def runs(self) -> dict[str, Any]:
        return {r.node: r for r in self.serving.deployments[MODEL].replicas.values()}


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def ready_on(hive: Hive, *names: str) -> Callable[[], bool]:
    return lambda: sorted(r.node for r in hive.serving.replicas()) == sorted(names)


def ended(hive: Hive, node: str) -> Callable[[], bool]:
    return lambda: hive.runs()[node].state in ("failed", "stopped")


def test_serve_pushes_starts_the_worker_and_forwards_once_ready(tmp_path: Path) -> None:
    hive = Hive(tmp_path)

    async def go() -> dict[str, Any]:
        out = await hive.serving.start(MODEL, replicas=2)
        await until(ready_on(hive, "alice", "bob"), "both replicas ready")
        assert_both_serving(hive)
        return out
    out = asyncio.run(go())
    assert out["summary"] == "2 of 2 placed on alice, bob" and out["unplaced"] == 0


def assert_both_serving(hive: Hive) -> None:
    for i, name in enumerate(("alice", "bob")):
        fake = hive.nodes[name]
        assert fake.files[hive.remote(name)] == hive.local_model()  # whole, renamed in place
        assert hive.remote(name) + ".part" not in fake.files
        (worker,) = fake.ran(WORKER)
        sha = hive.serving.deployments[MODEL].sha256
        assert worker.process and f"--sha256 {sha}" in worker.command
        assert f"--model {hive.remote(name)}" in worker.command and "--ctx 512" in worker.command
        run = hive.runs()[name]
        assert (run.state, run.port, run.base_url) == ("ready", 8100 + i,
                                                       f"http://127.0.0.1:{41000 + i}")
    assert {r.base_url for r in hive.serving.replicas()} == {"http://127.0.0.1:41000",
                                                             "http://127.0.0.1:41001"}
    # `serve ls` reads the gateway's view of each replica
    alice_id = hive.runs()["alice"].replica_id
    hive.health[alice_id] = ReplicaHealth(in_flight=2, tokens_per_s=12.345)
    rows = {r["node"]: r for r in hive.serving.list_replicas()}
    assert (rows["alice"]["in_flight"], rows["alice"]["tokens_per_s"]) == (2, 12.3)
    assert (rows["bob"]["in_flight"], rows["bob"]["tokens_per_s"]) == (0, None)


def test_a_push_cut_mid_transfer_fails_the_replica_and_the_next_serve_resumes_it(
        tmp_path: Path) -> None:
    hive = Hive(tmp_path, ("alice",))
    alice = hive.nodes["alice"].cut_writes_after(300_000)

    async def first() -> None:
        await hive.serving.start(MODEL)
        await until(ended(hive, "alice"), "the cut push ended the replica")
    asyncio.run(first())
    run = hive.runs()["alice"]
    assert run.state == "failed" and "pushing" in run.error and "failed" in run.error
    assert alice.ran(WORKER) == []  # no worker without the whole file
    kept = len(alice.files[hive.remote("alice") + ".part"])
    assert 0 < kept <= 300_000
    # room for exactly what is missing: only a resumed push gets through
    alice.cut_writes_after(len(hive.local_model()) - kept)

    async def again() -> dict[str, Any]:
        out = await hive.serving.start(MODEL)
        await until(ready_on(hive, "alice"), "the resumed replica ready")
        return out
    out = asyncio.run(again())
    assert out["started"] == ["alice"]
    assert alice.files[hive.remote("alice")] == hive.local_model()
    assert len(alice.ran(WORKER)) == 1


def test_a_corrupt_arrival_is_refused_deleted_and_never_started(tmp_path: Path) -> None:
    hive = Hive(tmp_path, ("alice",))
    alice = hive.nodes["alice"].corrupt_write_at(1000)

    async def go() -> None:
        await hive.serving.start(MODEL)
        await until(ended(hive, "alice"), "the corrupt push ended the replica")
    asyncio.run(go())
    run = hive.runs()["alice"]
    assert run.state == "failed" and "arrived corrupt" in run.error
    assert alice.files == {} and alice.ran(WORKER) == []
    assert hive.serving.replicas() == []


def test_worker_status_lines_drive_the_replica_restarts_reopen_the_forward(
        tmp_path: Path) -> None:
    hive = Hive(tmp_path, ("alice",))
    alice = hive.nodes["alice"].listen(8200, 42000)
    crashed = asyncio.Event()
    alice.on(WORKER, Script().out("llama.cpp says hello", status("starting", 8100),
                                  status("ready", 8100)).wait_for(crashed)
             .out(status("starting", 8200, restarts=1, error="engine exited (signal 9)"),
                  status("ready", 8200, restarts=1)).hang())

    async def go() -> None:
        await hive.serving.start(MODEL)
        await until(ready_on(hive, "alice"), "first ready")
        run = hive.runs()["alice"]
        assert (run.base_url, run.restarts) == ("http://127.0.0.1:41000", 0)
        first = run.forward
        crashed.set()
        await until(lambda: run.port == 8200 and run.state == "ready", "ready again")
        assert first is not None and first.closed
        assert (run.base_url, run.restarts, run.error) == ("http://127.0.0.1:42000", 1, "")
    asyncio.run(go())


def test_a_worker_that_exits_fails_the_replica_with_its_error(tmp_path: Path) -> None:
    hive = Hive(tmp_path, ("alice",))
    hive.nodes["alice"].on(WORKER, Script().out(
        status("starting", 8100),
        status("failed", 8100, restarts=5, error="the engine keeps dying: out of memory"))
        .exit(3))

    async def go() -> None:
        await hive.serving.start(MODEL)
        await until(ended(hive, "alice"), "the worker's exit")
    asyncio.run(go())
    run = hive.runs()["alice"]
    assert run.state == "failed" and run.restarts == 5
    assert run.error == ("replica tiny-test@alice#0 ended: the engine keeps dying: "
                         "out of memory")
    assert hive.serving.replicas() == [] and not hive.nodes["alice"].calls[-1].cancelled


def test_an_unreachable_node_fails_its_replica_and_the_other_serves(tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    hive.nodes["bob"].unreachable("the agent is not connected")

    async def go() -> list[dict[str, Any]]:
        await hive.serving.start(MODEL, replicas=2)
        await until(lambda: ready_on(hive, "alice")() and ended(hive, "bob")(), "settled")
        return await hive.serving.wait_ready(MODEL, timeout=5)
    views = {v["node"]: v for v in asyncio.run(go())}
    assert views["alice"]["state"] == "ready"
    assert views["bob"]["state"] == "failed"
    assert "cannot open a session to node bob" in views["bob"]["error"]
    assert hive.nodes["bob"].calls == []


def test_a_session_dropped_mid_stream_takes_the_replica_out_of_the_gateway(
        tmp_path: Path) -> None:
    hive = Hive(tmp_path, ("alice",))
    pulled = asyncio.Event()
    hive.nodes["alice"].on(WORKER, Script().out(status("starting", 8100),
                                                status("ready", 8100))
                           .wait_for(pulled).drop("cable pulled"))

    async def go() -> None:
        await hive.serving.start(MODEL)
        await until(ready_on(hive, "alice"), "ready")
        forward = hive.runs()["alice"].forward
        pulled.set()
        await until(ended(hive, "alice"), "the drop")
        assert forward is not None and forward.closed
    asyncio.run(go())
    run = hive.runs()["alice"]
    assert run.state == "failed" and "broke: cable pulled" in run.error
    assert (run.base_url, run.forward) == ("", None) and hive.serving.replicas() == []


def test_stop_cancels_every_worker_and_closes_every_forward(tmp_path: Path) -> None:
    hive = Hive(tmp_path)

    async def go() -> dict[str, Any]:
        await hive.serving.start(MODEL, replicas=2)
        await until(ready_on(hive, "alice", "bob"), "ready")
        forwards = [r.forward for r in hive.runs().values()]
        out = await hive.serving.stop(MODEL)
        assert all(f is not None and f.closed for f in forwards)
        return out
    assert asyncio.run(go()) == {"model": MODEL, "stopped": 2}
    for name in ("alice", "bob"):
        (worker,) = hive.nodes[name].ran(WORKER)
        assert worker.cancelled  # the channel closed: the agent stops the engine with it
    assert hive.serving.deployments == {} and hive.serving.replicas() == []
    with pytest.raises(ModelNotServed, match="tiny-test is not served"):
        asyncio.run(hive.serving.stop(MODEL))


def test_partial_placement_then_scaling_in_place(tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    hive.enroll("carol", 2, online=False)

    async def go() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        three = await hive.serving.start(MODEL, replicas=3)
        await until(ready_on(hive, "alice", "bob"), "two ready")
        hive.health[hive.runs()["bob"].replica_id] = ReplicaHealth(in_flight=3)
        one = await hive.serving.start(MODEL, replicas=1)
        two = await hive.serving.start(MODEL, replicas=2)
        await until(ready_on(hive, "alice", "bob"), "two ready again")
        # alice kept her one worker, untouched, all along
        assert len(hive.nodes["alice"].ran(WORKER)) == 1
        assert not hive.nodes["alice"].ran(WORKER)[0].cancelled
        return three, one, two
    three, one, two = asyncio.run(go())
    assert three["unplaced"] == 1 and three["summary"].startswith("2 of 3 placed (carol: ")
    assert [u["node"] for u in three["unfit"]] == ["carol", "alice and bob"]
    # the busier replica goes; scaling up again starts a fresh one where there is room
    assert one["stopped"] == ["bob"] and one["nodes"] == ["alice"]
    assert hive.nodes["bob"].ran(WORKER)[0].cancelled
    assert two["started"] == ["bob"] and len(hive.nodes["bob"].ran(WORKER)) == 2


def test_a_paused_or_removed_node_stops_its_replica(tmp_path: Path) -> None:
    hive = Hive(tmp_path)

    async def go() -> list[str]:
        await hive.serving.start(MODEL, replicas=2)
        await until(ready_on(hive, "alice", "bob"), "ready")
        bob = hive.registry.get_node("bob")
        hive.registry.save_heartbeats([(bob.id, NOW + 5, "paused", None, None)])
        stopped = await hive.serving.respect_owners()
        await until(ended(hive, "bob"), "bob's replica stopped")
        await hive.serving.node_gone("alice")
        await until(ended(hive, "alice"), "alice's replica stopped")
        return stopped
    assert asyncio.run(go()) == [hive.runs()["bob"].replica_id]
    assert hive.runs()["bob"].error == "the node's owner paused it"
    assert all(hive.nodes[n].ran(WORKER)[0].cancelled for n in ("alice", "bob"))
    assert hive.serving.replicas() == []


def test_a_worker_that_never_gets_ready_is_reported_starting(tmp_path: Path) -> None:
    hive = Hive(tmp_path, ("alice",))
    hive.nodes["alice"].on(WORKER, Script().out(status("starting", 8100)).hang())

    async def go() -> list[dict[str, Any]]:
        await hive.serving.start(MODEL)
        await until(lambda: hive.runs()["alice"].state == "starting", "starting")
        views = await hive.serving.wait_ready(MODEL, timeout=0.3)
        await hive.serving.stop_all()
        return views
    assert [v["state"] for v in asyncio.run(go())] == ["starting"]
    assert hive.nodes["alice"].ran(WORKER)[0].cancelled


def test_refusals_no_node_fits_another_ctx_and_bad_replica_counts(tmp_path: Path) -> None:
    hive = Hive(tmp_path, ())
    hive.enroll("carol", 0, online=False)
    with pytest.raises(DeploymentRefused, match="no node can hold tiny-test") as info:
        asyncio.run(hive.serving.start(MODEL))
    assert info.value.code == "deployment_refused" and "carol: " in info.value.message
    assert hive.serving.deployments == {}

    hive.enroll("alice", 1)

    async def other_ctx() -> None:
        await hive.serving.start(MODEL)
        try:
            await hive.serving.start(MODEL, ctx=1024)
        finally:
            await hive.serving.stop_all()
    with pytest.raises(DeploymentRefused, match="served with --ctx 512, not 1024"):
        asyncio.run(other_ctx())


def test_worker_lines_parse_and_anything_else_is_ignored() -> None:
    line = parse_worker_line(status("ready", 8100, restarts=2, error="x"))
    assert line is not None and (line.state, line.port, line.restarts, line.error) == (
        "ready", 8100, 2, "x")
    for noise in ("llama.cpp says hello", "[1, 2]", '{"state": "ready", "port": "x"}', ""):
        assert parse_worker_line(noise) is None


# ---- a request through the gateway to an engine behind a forward -----------------------

@contextlib.asynccontextmanager
async def tiny_engine() -> AsyncIterator[tuple[int, list[bytes]]]:
    """An HTTP/1.1 "engine" on 127.0.0.1 answering every request with one completion."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length:")), 0)
                seen.append(await reader.readexactly(length))
                body = json.dumps({"id": "c1", "object": "text_completion", "model": MODEL,
                                   "choices": [{"index": 0, "text": "hello from alice",
                                                "finish_reason": "stop"}],
                                   "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body.encode()))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        await server.wait_closed()


def test_the_gateway_routes_to_a_ready_replica_through_its_forward(tmp_path: Path) -> None:
    hive = Hive(tmp_path, ("alice",))

    async def go() -> tuple[httpx.Response, list[bytes]]:
        async with tiny_engine() as (port, seen):
            hive.nodes["alice"].listen(8100, port)
            pool = ReplicaPool(hive.serving, health=hive.health)
            app = create_app(Gateway(pool, keys=None))
            await hive.serving.start(MODEL)
            await until(ready_on(hive, "alice"), "ready")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://gateway") as client:
                answer = await client.post("/v1/completions",
                                           json={"model": MODEL, "prompt": "hi"})
            await hive.serving.stop_all()
            await pool.aclose()
            return answer, seen
    answer, seen = asyncio.run(go())
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["text"] == "hello from alice"
    assert json.loads(seen[0]) == {"model": MODEL, "prompt": "hi", "max_tokens": 16}
    replica_id = f"{MODEL}@alice#0"
    assert hive.health[replica_id].in_flight == 0  # the pool's view the controller reads
    assert hive.health[replica_id].latency_ms is not None


def test_each_replica_holds_its_memory_until_its_worker_is_gone(tmp_path: Path) -> None:
    hive = Hive(tmp_path)

    async def go() -> list[Any]:
        await hive.serving.start(MODEL, replicas=2)
        await until(ready_on(hive, "alice", "bob"), "ready")
        live = hive.serving.holdings.live()
        await hive.serving.stop(MODEL)
        return live
    live = asyncio.run(go())
    need = live[0].ram_mib
    assert sorted((h.node, h.kind.value, h.gpus) for h in live) == [
        ("alice", "replica", ()), ("bob", "replica", ())]  # CPU nodes: RAM, no GPU
    assert need > 0 and all(h.ram_mib == need and h.processes == 1 for h in live)
    assert hive.serving.holdings.live() == []
    released = [hive.serving.holdings.of(h.owner, include_released=True)[0] for h in live]
    assert {h.release_reason for h in released} == {"the replica stopped"}
    # the worker is tagged, so the agent can say what runs on it
    (worker,) = hive.nodes["alice"].ran(WORKER)
    alice = next(h.owner for h in live if h.node == "alice")
    assert f"GPUHIVE_REPLICA_ID='{alice}'" in worker.command
    assert f"GPUHIVE_MODEL={MODEL}" in worker.command


def test_a_crashed_engine_counts_against_its_node(tmp_path: Path) -> None:
    hive = Hive(tmp_path, ("alice",))
    hive.nodes["alice"].on(WORKER, Script().out(status("starting", 8100)).exit(139))

    async def go() -> None:
        await hive.serving.start(MODEL)
        await until(ended(hive, "alice"), "the worker's exit")
    asyncio.run(go())
    tasks = hive.registry.get_node("alice").tasks
    assert len(tasks["failed"]) == 1
    assert hive.serving.holdings.live() == [] and hive.serving.reconcile() == []
