"""Training jobs end to end in-process: ``JobSupervisor`` over FakeNodes and a real registry.

Each fake node answers the job's shell lines the way a real one does (disk, the rendezvous
listener and connects, code check and receive, the requirements venv, the torch check,
torchrun's streamed output and exit status, the sweep); a test changes one answer to play a
failure. The supervisor runs unchanged; the tests look at what the owner sees (state, reason,
timeline, the watchers' stream) and at what ran on which node.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import re
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpuhive.config import Settings
from gpuhive.controller.job_steps import JobOptions
from gpuhive.controller.job_store import JobNotFound
from gpuhive.controller.jobs import JobSupervisor
from gpuhive.controller.node_ops import NodeOps
from gpuhive.controller.registry import Registry
from gpuhive.errors import ConfigError, JobAlreadyEnded
from gpuhive.testing import FakeNode, FakeNodes, Script
from gpuhive.testing.registry import NOW, enroll_agent, machine
from gpuhive.train import sync
from gpuhive.train.placement import PlacementError

DISK = r"df -Pk"
LISTEN = r"s\.listen\(64\)"
CONNECT = r"socket\.create_connection"
HAVE_CODE = r"/\.complete && echo have"
RECEIVE = r"sha256sum -c"
ENV = r"gpuhive\.train\.jobenv create"
TORCH_CHECK = r"import torch"
TORCHRUN = r"-m torch\.distributed\.run "
SWEEP = r"-m gpuhive\.agent\.reaper GPUHIVE_JOB_ID="
REQUIREMENTS = "numpy==2.1.0\n"
# short deadlines, so the timeout paths take a fraction of a second
FAST = JobOptions(listener_exit_s=0.05, preflight_s=0.2, torch_check_s=0.2, sweep_s=0.2)
GPUS = {"alice": [("RTX 4090", 24564)], "bob": [("RTX 3090", 24576)],
        "carol": [("GTX 1060", 6144)], "dave": []}


class Clock:
    """The supervisor's clock: every reading one second later than the last."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class Hive:
    """Four online overlay spokes in a real registry (two fit a 12 GiB job), their fakes
    answering every step of a job, a workdir with a script, requirements and 600 KiB of
    data (so the bundle streams in more than one piece), and the supervisor."""

    def __init__(self, tmp_path: Path, names: tuple[str, ...] = ("alice", "bob", "carol",
                                                                  "dave")) -> None:
        self.registry = Registry(tmp_path / "registry.db")
        self.nodes = FakeNodes()
        self.ops = NodeOps(self.registry, self.nodes, Settings(overlay=True), lambda: NOW)
        self.jobs = JobSupervisor(self.registry, self.nodes, self.ops, tmp_path / "jobs",
                                  Clock(), random.Random(7), options=FAST)
        self.jobs_dir = tmp_path / "jobs"
        self.ips: dict[str, str] = {}
        for name in names:
            self.node(name)
        self.workdir = tmp_path / "project"
        self.workdir.mkdir()
        (self.workdir / "train.py").write_text("print('training')\n")
        (self.workdir / "requirements.txt").write_text(REQUIREMENTS)
        (self.workdir / "data.bin").write_bytes(random.Random(1).randbytes(600 * 1024))

    def node(self, name: str) -> FakeNode:
        rec = enroll_agent(self.registry, name, wg_public_key=f"WG{name}",
                           hardware=machine(name, gpus=GPUS.get(name, [])))
        # facts planted as the registry stores them: the address enroll assigned, and a
        # spoke that reports up on ghv0
        overlay = self.registry.fact(rec.id, "overlay")
        self.ips[name] = overlay["ip"]
        self.registry.set_facts(rec.id, software={"torch": "2.13.0"},
                                overlay={**overlay, "status": {"up": True, "iface": "ghv0"}})
        fake = self.nodes.add(name)
        fake.on(DISK, "/dev/sda1 999999999 1 99999999 1% /home")
        fake.on(LISTEN, "")
        fake.on(CONNECT, "")
        fake.on(HAVE_CODE, "need")
        fake.on(RECEIVE, "")
        fake.on(ENV, "built")
        fake.on(TORCH_CHECK, json.dumps({"torch": "2.13.0"}))
        fake.on(TORCHRUN, lambda call: Script().err(
            "[rank0]:step 1 loss 2.0", "[rank0]:done").exit(0))
        fake.on(SWEEP, "found 0 killed 0")
        return fake

    def spec(self, **kw: Any) -> dict[str, Any]:
        return {"script": "train.py", "workdir": str(self.workdir), "nodes": 2,
                "min_vram": "12G", **kw}

    async def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Submit and wait for the job's end; its record as `jobs show` gives it."""
        job = self.jobs.submit(spec)
        await ended(self, job["id"])
        return self.jobs.show(job["id"])


async def ended(hive: Hive, job_id: str) -> None:
    """The job's task is done; a job still going after 10 s fails the test, not hangs it."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(hive.jobs.tasks[job_id]), 10)


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


def kinds(job: dict[str, Any]) -> list[str]:
    return [e["event"] for e in job["events"]]


def everything_ran(hive: Hive) -> list[str]:
    return [c.command for n in hive.nodes.nodes.values() for c in n.calls]


# ---- submit ------------------------------------------------------------------------------


def test_submit_places_syncs_builds_checks_launches_and_records_each_exit(
        tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    job = asyncio.run(hive.run(hive.spec(requirements="requirements.txt", name="run-1")))

    assert job["state"] == "succeeded" and job["reason"] == "" and job["name"] == "run-1"
    # carol's 6 GiB and dave's CPU do not fit a 12 GiB job: nothing ran there
    assert sorted(job["nodes"]) == ["alice", "bob"]
    assert hive.nodes["carol"].calls == [] and hive.nodes["dave"].calls == []
    assert job["exits"] == {"alice": 0, "bob": 0} and job["lost"] == {}
    assert kinds(job) == ["queued", "placed", "preflight", "synced", "environment", "torch",
                          "started", "node_done", "node_done", "cleaned", "succeeded"]
    # each node held one GPU from placement until the sweep confirmed it clean
    assert {h["node"]: h["gpus"] for h in job["holdings"]} == {"alice": [0], "bob": [0]}
    assert all(h["released_at"] and h["release_reason"] == "its processes are gone (swept)"
               for h in job["holdings"])
    assert hive.jobs.holdings.live() == []
    host, other = job["nodes"]
    port = int(job["launch"]["rendezvous"].split(":")[1])
    assert job["launch"] == {"backend": "nccl", "nproc_per_node": 1,
                             "rendezvous": f"{host}:{port}"}
    assert 29400 <= port < 30000

    # preflight: the listener on the rendezvous host, a connect from the other node
    (listen,) = hive.nodes[host].ran(LISTEN)
    assert hive.ips[host] in listen.command and f"{port}))" in listen.command
    assert hive.nodes[other].ran(LISTEN) == [] and hive.nodes[host].ran(CONNECT) == []
    (connect,) = hive.nodes[other].ran(CONNECT)
    assert hive.ips[host] in connect.command and f"{port}), 2)" in connect.command

    # the code bundle, whole, to each node, checked against its sha256 there
    bundle = sync.pack(hive.workdir)
    with tarfile.open(fileobj=io.BytesIO(bundle.data)) as tar:
        names = tar.getnames()
    assert {"train.py", "requirements.txt", "data.bin"} <= set(names)
    synced = job["events"][3]["detail"]
    assert synced.startswith(f"code {bundle.short}: ") and "sent to 2 of 2 node(s)" in synced
    for name in (host, other):
        (received,) = hive.nodes[name].ran(RECEIVE)
        assert received.stdin == bundle.data
        assert f"code/{bundle.digest}" in received.command
        # the environment: the requirements on stdin, a venv named by their digest
        (env,) = hive.nodes[name].ran(ENV)
        digest = sync.requirements_digest(REQUIREMENTS, bundle.digest)[:16]
        assert env.stdin == REQUIREMENTS.encode() and f"envs/{digest}" in env.command
        (check,) = hive.nodes[name].ran(TORCH_CHECK)
        assert f'envs/{digest}/bin/python' in check.command
        (swept,) = hive.nodes[name].ran(SWEEP)
        assert f"GPUHIVE_JOB_ID={job['id']}" in swept.command
    assert f"venv {digest}: alice built, bob built" in job["events"][4]["detail"]
    assert job["events"][5]["detail"] == (f"torch 2.13.0 imports in the job's venv {digest} "
                                          "on every node")

    # one torchrun per node: same rendezvous, host 1 on the first node, its own address
    for name, is_host in ((host, 1), (other, 0)):
        (torchrun,) = hive.nodes[name].ran(TORCHRUN)
        line = torchrun.command
        assert f"--rdzv-endpoint {hive.ips[host]}:{port}" in line
        assert f"--rdzv-conf is_host={is_host},join_timeout=120" in line
        assert f"--local-addr {hive.ips[name]}" in line
        assert "--nnodes 2 --nproc-per-node 1" in line and f"--rdzv-id {job['id']}" in line
        assert "GLOO_SOCKET_IFNAME=ghv0" in line and "GPUHIVE_BACKEND=nccl" in line
        assert f"envs/{digest}/bin/python" in line and not torchrun.cancelled
        raw = (hive.jobs_dir / job["id"] / "nodes" / f"{name}.log").read_text()
        assert raw == "[rank0]:step 1 loss 2.0\n[rank0]:done\n"
    kept = (hive.jobs_dir / job["id"] / "output.log").read_text().splitlines()
    assert sorted(kept) == sorted(f"{n}/rank0 | {t}" for n in (host, other)
                                  for t in ("step 1 loss 2.0", "done"))
    assert re.fullmatch(r"alice, bob exited 0 after \d+s", job["events"][-1]["detail"])


def test_code_a_node_already_has_is_not_sent_again(tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    hive.nodes["alice"].on(HAVE_CODE, "have")
    job = asyncio.run(hive.run(hive.spec()))
    assert job["state"] == "succeeded"
    assert hive.nodes["alice"].ran(RECEIVE) == [] and len(hive.nodes["bob"].ran(RECEIVE)) == 1
    assert re.search(r"sent to 1 of 2 node\(s\); alice already had it$",
                     job["events"][3]["detail"])
    # no requirements: no venv, torch checked with the agent's own python
    assert everything_ran(hive) and not any(re.search(ENV, c) for c in everything_ran(hive))
    assert kinds(job)[4] == "torch" and "the agent's python" in job["events"][4]["detail"]


# ---- list / show -------------------------------------------------------------------------


def test_list_and_show_by_id_or_name_and_a_mistyped_id_gets_a_suggestion(
        tmp_path: Path) -> None:
    hive = Hive(tmp_path)

    async def two() -> tuple[dict[str, Any], dict[str, Any]]:
        return (await hive.run(hive.spec(name="first")),
                await hive.run(hive.spec(requirements="missing.txt")))
    first, second = asyncio.run(two())
    listed = hive.jobs.list_jobs()
    assert [j["id"] for j in listed] == [second["id"], first["id"]]  # newest first
    assert [j["state"] for j in listed] == ["failed", "succeeded"]
    assert hive.jobs.show("first") == first == listed[1]
    # swap the last two characters (or, when they are equal, change the last one)
    jid = first["id"]
    typo = jid[:-2] + jid[-1] + jid[-2] if jid[-1] != jid[-2] else \
        jid[:-1] + ("0" if jid[-1] != "0" else "1")
    with pytest.raises(JobNotFound, match=f"no job '{typo}'") as e:
        hive.jobs.show(typo)
    assert f"did you mean {first['id']}?" in e.value.hint


# ---- cancel ------------------------------------------------------------------------------


def test_cancel_stops_every_node_sweeps_them_and_an_ended_job_cannot_be_cancelled(
        tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    for name in ("alice", "bob"):
        hive.nodes[name].on(TORCHRUN, Script().err("[rank0]:step 1").hang())

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        job = hive.jobs.submit(hive.spec())
        await until(lambda: all(hive.nodes[n].ran(TORCHRUN) for n in ("alice", "bob")),
                    "torchrun running on both nodes")
        assert hive.jobs.show(job["id"])["state"] == "running"
        answer = await hive.jobs.cancel(job["id"])
        return answer, hive.jobs.show(job["id"])
    answer, job = asyncio.run(go())
    assert answer == job
    assert job["state"] == "cancelled" and job["reason"] == "cancelled by the owner"
    for name in ("alice", "bob"):
        (torchrun,) = hive.nodes[name].ran(TORCHRUN)
        assert torchrun.cancelled  # its channel closed: the agent stops the process group
        assert len(hive.nodes[name].ran(SWEEP)) == 1  # and the sweep proves nothing is left
    assert kinds(job)[-2:] == ["cleaned", "cancelled"]
    assert job["events"][-2]["detail"] == "alice: found 0 killed 0; bob: found 0 killed 0"
    with pytest.raises(JobAlreadyEnded, match=rf"job {job['id']} has already ended: "
                       r"cancelled \(cancelled by the owner\)") as e:
        asyncio.run(hive.jobs.cancel(job["id"]))
    assert e.value.data == {"job": job["id"], "state": "cancelled"}


# ---- logs and watching -------------------------------------------------------------------


def test_logs_replay_with_tail_node_and_rank_filters(tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    hive.nodes["alice"].on(TORCHRUN, Script().err(
        "agent up", "[rank0]:a", "[rank1]:b", "[rank0]:c").exit(0))
    hive.nodes["bob"].on(TORCHRUN, Script().err("[rank2]:x", "[rank3]:y").exit(0))

    async def go() -> dict[str, Any]:
        return await hive.run(hive.spec())
    job = asyncio.run(go())
    assert job["state"] == "succeeded"

    def logs(**kw: Any) -> list[str]:
        got: list[dict[str, Any]] = []
        final = asyncio.run(hive.jobs.logs(job["id"], False, got.append, **kw))
        assert final["state"] == "succeeded"
        return [e["line"] for e in got]
    assert logs(node="alice", tail=2) == ["alice/rank1 | b", "alice/rank0 | c"]
    assert logs(rank=0) == ["alice/rank0 | a", "alice/rank0 | c"]
    assert logs(node="bob") == ["bob/rank2 | x", "bob/rank3 | y"]
    assert logs(tail=0) == [] and len(logs()) == 6
    assert "alice | agent up" in logs(node="alice")
    with pytest.raises(ConfigError, match=r"did not run on 'carol'"):
        logs(node="carol")
    with pytest.raises(ConfigError, match=r"rank=True is not a whole number"):
        logs(rank=True)


def test_a_follower_sees_states_progress_lines_and_its_stream_ends_with_the_job(
        tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    gate, finish = asyncio.Event(), asyncio.Event()
    hive.nodes["bob"].on(DISK, Script().wait_for(gate).out("fs 1 1 99999999 1% /"))
    hive.nodes["alice"].on(TORCHRUN, Script().err("[rank0]:step 1").wait_for(finish)
                           .err("[rank0]:step 2").exit(0))

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        job = hive.jobs.submit(hive.spec(nodes="1:2"))
        watched: list[dict[str, Any]] = []
        late: list[dict[str, Any]] = []
        follow = asyncio.ensure_future(hive.jobs.logs(job["id"], True, watched.append))
        await until(lambda: bool(hive.jobs.watchers.get(job["id"])), "the follower attached")
        gate.set()
        await until(lambda: any(e.get("line") == "alice/rank0 | step 1" for e in watched),
                    "the first line streamed")
        # a second follower attaching now first gets the kept lines, then the live ones
        late_follow = asyncio.ensure_future(hive.jobs.logs(job["id"], True, late.append,
                                                           node="alice"))
        await until(lambda: len(hive.jobs.watchers.get(job["id"], ())) == 2, "second follower")
        finish.set()
        final = await asyncio.wait_for(follow, 5)
        assert await asyncio.wait_for(late_follow, 5) == final
        return watched, late, final
    watched, late, final = asyncio.run(go())
    assert final["state"] == "succeeded"
    states = [e["state"] for e in watched if e["event"] == "state"]
    assert states == ["syncing", "running"]
    events = [e["kind"] for e in watched if e["event"] == "job"]
    assert events[:3] == ["preflight", "synced", "torch"] and events[-1] == "succeeded"
    assert "elastic" in events and "cleaned" in events
    total = len(sync.pack(hive.workdir).data)
    for name in ("alice", "bob"):
        sent = [e["sent"] for e in watched if e["event"] == "progress" and e["node"] == name]
        assert len(sent) >= 3 and sent == sorted(sent) and sent[-1] == total
        assert {e["total"] for e in watched if e.get("node") == name} == {total}
    lines = [e["line"] for e in watched if e["event"] == "log"]
    assert lines.count("alice/rank0 | step 1") == 1 and "alice/rank0 | step 2" in lines
    assert [e["line"] for e in late if e["event"] == "log"] == ["alice/rank0 | step 1",
                                                                "alice/rank0 | step 2"]


# ---- failures ----------------------------------------------------------------------------


def test_a_node_unreachable_at_preflight_fails_the_job_before_anything_is_sent(
        tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    hive.nodes["bob"].unreachable("the agent is not connected")
    job = asyncio.run(hive.run(hive.spec()))
    assert job["state"] == "failed"
    assert job["reason"] == ("a command on node bob failed: cannot open a session to node "
                             "bob: the agent is not connected (see `gpuhive nodes show bob`)")
    assert kinds(job) == ["queued", "placed", "failed"]
    assert job["events"][-1]["detail"] == job["reason"]
    # nothing ran, so nothing stays held
    assert job["holdings"] and all(h["release_reason"] == "the job ended before it started"
                                   for h in job["holdings"])
    ran = everything_ran(hive)
    assert not any(re.search(p, c) for p in (HAVE_CODE, RECEIVE, TORCHRUN) for c in ran)
    assert hive.nodes["alice"].ran(DISK)  # alice was asked; nothing reached bob
    assert hive.nodes["bob"].calls == []


def test_a_session_dropped_mid_sync_names_the_node_and_launches_nothing(
        tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    hive.nodes["bob"].cut_stdin_after(300 * 1024)
    job = asyncio.run(hive.run(hive.spec()))
    size = len(sync.pack(hive.workdir).data)
    assert job["state"] == "failed"
    assert job["reason"].startswith(
        f"sending the code ({sync.humanize.size(size)}) to bob failed: a command on node bob "
        "failed: session to bob broke: connection lost while sending stdin (run the job again")
    (partial,) = hive.nodes["bob"].ran(RECEIVE)
    assert len(partial.stdin) == 300 * 1024 < size and hive.nodes["bob"].closed == 1
    assert "synced" not in kinds(job) and "started" not in kinds(job)
    assert not any(re.search(p, c) for p in (ENV, TORCH_CHECK, TORCHRUN)
                   for c in everything_ran(hive))


def test_a_non_zero_exit_on_one_node_fails_the_job_naming_it_and_stops_the_others(
        tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    for name in ("alice", "bob"):  # the survivor would wait for its peer for ever
        hive.nodes[name].on(TORCHRUN, Script().err("[rank0]:step 1").hang())
    hive.nodes["bob"].on(TORCHRUN, Script().err(
        "[rank1]:Traceback (most recent call last):",
        '[rank1]:  File "train.py", line 3, in <module>',
        "[rank1]:ValueError: no shard 7 in the dataset",
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:").exit(1))
    job = asyncio.run(hive.run(hive.spec()))
    assert job["state"] == "failed"
    assert job["reason"] == "bob exited 1 (ValueError: no shard 7 in the dataset)"
    assert job["exits"] == {"bob": 1}
    assert [e["detail"] for e in job["events"] if e["event"] == "node_failed"] == \
        ["bob: exit status 1"]
    (alice_run,) = hive.nodes["alice"].ran(TORCHRUN)
    assert alice_run.cancelled
    assert all(len(hive.nodes[n].ran(SWEEP)) == 1 for n in ("alice", "bob"))
    assert kinds(job)[-2:] == ["cleaned", "failed"]


def test_a_node_that_never_reaches_the_rendezvous_listener_times_out(tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    hive.nodes["bob"].on(CONNECT, Script().hang())
    hive.nodes["alice"].on(LISTEN, Script().hang())  # it waits for bob, who never comes
    job = asyncio.run(hive.run(hive.spec()))
    port = int(re.search(r":(\d+) on alice", job["reason"]).group(1))  # type: ignore[union-attr]
    assert job["state"] == "failed"
    assert job["reason"].startswith(
        f"node bob cannot reach the rendezvous {hive.ips['alice']}:{port} on alice: node bob "
        "did not answer the rendezvous check within 0.2 s (check `gpuhive overlay check`")
    (connect,) = hive.nodes["bob"].ran(CONNECT)
    (listen,) = hive.nodes["alice"].ran(LISTEN)
    assert connect.cancelled and listen.cancelled  # nothing of the check is left running
    assert not any(re.search(RECEIVE, c) for c in everything_ran(hive))


def test_a_listener_that_lingers_delays_the_launch_only_by_its_exit_deadline(
        tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    hive.nodes["alice"].on(LISTEN, Script().hang())
    job = asyncio.run(hive.run(hive.spec()))
    assert job["state"] == "succeeded"
    (listen,) = hive.nodes["alice"].ran(LISTEN)
    assert listen.cancelled and len(hive.nodes["alice"].ran(TORCHRUN)) == 1


def test_a_hanging_torch_check_times_out_naming_the_node(tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    hive.nodes["alice"].on(TORCH_CHECK, Script().hang())
    job = asyncio.run(hive.run(hive.spec()))
    assert job["state"] == "failed"
    assert job["reason"].startswith("node alice did not answer the torch check within 0.2 s")
    assert "see `gpuhive nodes show alice`" in job["reason"]
    assert not any(re.search(TORCHRUN, c) for c in everything_ran(hive))


def test_a_requirement_that_fails_to_install_names_the_node_and_pip_s_words(
        tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    hive.nodes["bob"].on(ENV, Script().err(
        "ERROR: Could not find a version that satisfies the requirement numpy==2.1.0",
        "ERROR: No matching distribution found for numpy==2.1.0").exit(1))
    job = asyncio.run(hive.run(hive.spec(requirements="requirements.txt")))
    assert job["state"] == "failed"
    assert job["reason"].startswith(
        "building the job's environment from requirements.txt failed on bob: a command on "
        "node bob failed: ERROR: Could not find a version")
    assert "No matching distribution found for numpy==2.1.0" in job["reason"]
    assert "./wheels/" in job["reason"]  # the hint: what an offline node can install
    assert kinds(job)[-2:] == ["synced", "failed"]
    assert not any(re.search(p, c) for p in (TORCH_CHECK, TORCHRUN)
                   for c in everything_ran(hive))


def test_more_nodes_than_could_ever_fit_is_refused_at_submit(tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    # two nodes fit on GPUs, all four on CPUs (gloo): five fit nowhere, ever
    with pytest.raises(PlacementError) as exc:
        hive.jobs.submit(hive.spec(nodes=5))
    assert exc.value.message.startswith("the job needs 5 node(s) but only 4 could ever take it")
    assert "`gpuhive nodes rank --for train --nodes 5 --min-vram 12G`" in exc.value.hint
    assert hive.jobs.list_jobs() == [] and everything_ran(hive) == []


def test_a_torch_that_will_not_import_on_one_node_is_named(tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    hive.nodes["bob"].on(TORCH_CHECK, json.dumps(
        {"error": "ImportError: libcudart.so.12: cannot open shared object file"}))
    job = asyncio.run(hive.run(hive.spec()))
    assert job["state"] == "failed"
    assert job["reason"].startswith("torch cannot be imported on bob in the agent's python: "
                                    "ImportError: libcudart.so.12")
    assert not any(re.search(TORCHRUN, c) for c in everything_ran(hive))


def test_the_rendezvous_port_comes_from_the_injected_rng_and_range(tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    hive.jobs.options = JobOptions(listener_exit_s=0.05, rdzv_ports=(31000, 31001))
    job = asyncio.run(hive.run(hive.spec()))
    assert job["launch"]["rendezvous"].endswith(":31000")
    assert os.path.isdir(hive.jobs_dir / job["id"])


# ---- the seam ----------------------------------------------------------------------------


def test_jobs_and_everything_they_import_stay_off_asyncssh_and_the_ssh_sessions() -> None:
    """The supervisor reaches nodes only through ``NodeSessions``: neither it nor any module
    it imports (transitively, within gpuhive) imports asyncssh or ``transport.node_conn``."""
    import ast

    import gpuhive
    root = Path(gpuhive.__file__).resolve().parent.parent
    seen: set[str] = set()
    outside: set[str] = set()
    todo = ["gpuhive.controller.jobs"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        base = root.joinpath(*name.split("."))
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names] \
                if isinstance(node, ast.ImportFrom) else []  # `from pkg import module`
            for target in names:
                if not target.startswith("gpuhive"):
                    outside.add(target.partition(".")[0])
                    continue
                parts = target.split(".")  # the module itself and the packages above it
                todo += [".".join(parts[:i]) for i in range(1, len(parts) + 1)
                         if root.joinpath(*parts[:i]).with_suffix(".py").exists()
                         or root.joinpath(*parts[:i], "__init__.py").exists()]
    assert {"gpuhive.controller.jobs", "gpuhive.train.launch", "gpuhive.train.sync",
            "gpuhive.transport.api", "gpuhive.controller.node_ops"} <= seen  # it did look
    assert "asyncssh" not in outside
    assert "gpuhive.transport.node_conn" not in seen
