"""Training jobs, owned by the controller daemon: select, preflight, sync, launch, watch.

A job's processes on a node live exactly as long as the controller's SSH channel that
started them: cancelling the job (or losing the controller) closes the channels, and each
agent stops everything the command started (see ``agent.reaper``). Logs fan in here,
prefixed ``node/rankN |``, are appended to ``$GPUHIVE_HOME/jobs/<id>/output.log`` and
pushed to every attached ``gpuhive train`` / ``jobs logs -f``.

Nodes are reached only through ``transport.api.NodeSessions``: the daemon hands in SSH
sessions, the tests ``gpuhive.testing.FakeNodes`` (``tests/unit/test_controller_jobs.py``).
Timings and the rendezvous port range are ``JobOptions``; clock and rng are injected too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpuhive.controller.job_steps import (
    JobOptions,
    JobStepFailed,
    all_or_cancel,
    within,
)
from gpuhive.controller.job_store import ACTIVE, JobRecord, JobStore
from gpuhive.controller.node_ops import NodeOps
from gpuhive.controller.registry import Registry
from gpuhive.core import humanize
from gpuhive.core.model import NodeRecord
from gpuhive.errors import ConfigError, GpuhiveError, JobAlreadyEnded
from gpuhive.train import launch, output, sync
from gpuhive.train.failure import telling_line
from gpuhive.train.output import LogFilter
from gpuhive.train.placement import (
    Candidate,
    PlacementError,
    addresses,
    candidates,
    need_of,
    not_enough_nodes,
    processes_per_node,
    version_mismatch,
)
from gpuhive.train.spec import JobSpec, build_spec
from gpuhive.transport.api import ExecResult, NodeSessions

log = logging.getLogger(__name__)
# torchrun's own (warning-level) line when a worker group fails; with attempts left the
# elastic agent restarts it, at the new size when a node was lost
RESTART_HINTS = ("failed (exitcode:",)

Emit = Callable[[dict[str, Any]], None]


class JobSupervisor:
    def __init__(self, registry: Registry, nodes: NodeSessions, ops: NodeOps,
                 jobs_dir: Path, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None, *,
                 options: JobOptions | None = None) -> None:
        self.registry = registry
        self.store = JobStore(registry.connection)
        self.nodes = nodes
        self.ops = ops
        self.jobs_dir = jobs_dir
        self.clock = clock
        self.rng = rng or random.Random()
        self.options = options or JobOptions()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.watchers: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = {}
        self.store.interrupted(clock())

    # ---- API --------------------------------------------------------------------------

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        job_spec = build_spec(spec)
        job_id = "j-" + secrets.token_hex(3)
        job = JobRecord(job_id, job_spec.name, "queued", job_spec.to_dict(), self.clock())
        self.store.create(job)
        (self.jobs_dir / job_id).mkdir(parents=True, exist_ok=True)
        self._event(job, "queued", f"{Path(job_spec.script).name} on {job_spec.nodes_text} "
                    "node(s)")
        self.tasks[job_id] = asyncio.ensure_future(self._run(job, job_spec))
        return job.to_dict()

    def list_jobs(self) -> list[dict[str, Any]]:
        return [j.to_dict() for j in self.store.recent()]

    def show(self, job: str) -> dict[str, Any]:
        return self.store.get(job).to_dict()

    async def cancel(self, job: str) -> dict[str, Any]:
        rec = self.store.get(job)
        if rec.state not in ACTIVE:
            raise JobAlreadyEnded(
                f"job {rec.id} has already ended: {rec.state}"
                + (f" ({rec.reason})" if rec.reason else ""),
                hint=f"nothing to cancel; `gpuhive jobs show {rec.id}` has its timeline",
                job=rec.id, state=rec.state)
        task = self.tasks.get(rec.id)
        if task is None or task.done():
            return rec.to_dict()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return self.store.get(rec.id).to_dict()

    async def logs(self, job: str, follow: bool, emit: Emit, tail: int | None = None,
                   node: str | None = None, rank: int | None = None) -> dict[str, Any]:
        """Replay a job's kept output (filtered), then with ``follow`` stream it to the end."""
        rec = self.store.get(job)
        wanted = log_filter(rec, tail, node, rank)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        if follow and rec.state in ACTIVE:
            self.watchers.setdefault(rec.id, set()).add(queue)
        try:
            path = self.jobs_dir / rec.id / "output.log"
            if path.exists():
                for line in wanted.history(path.read_text(errors="replace").splitlines()):
                    emit({"event": "log", "line": line})
            if follow and rec.state in ACTIVE:
                while (item := await queue.get()) is not None:
                    if item["event"] != "log" or wanted.matches(item["line"]):
                        emit(item)
        finally:
            self.watchers.get(rec.id, set()).discard(queue)
        return self.store.get(rec.id).to_dict()

    async def stop(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        for task in list(self.tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ---- one job ----------------------------------------------------------------------

    async def _run(self, job: JobRecord, spec: JobSpec) -> None:
        try:
            self._state(job, "preflight")
            chosen = self._select(spec)
            nproc, backend = processes_per_node(spec, chosen)
            placements = addresses(chosen)
            job.nodes = [c.name for c in chosen]
            if (why := version_mismatch(chosen, backend)) is not None:
                raise PlacementError(why, hint="install the same torch (and NCCL) on every "
                                     "node, or leave that node out")
            records = {n.name: n for n in self.registry.list_nodes()}
            port = self.rng.randrange(*self.options.rdzv_ports)
            await self._preflight(job, [records[c.name] for c in chosen], placements, port)
            self._state(job, "syncing")
            bundle = await asyncio.to_thread(sync.pack, Path(spec.workdir))
            if spec.script not in bundle.files:
                raise PlacementError(f"script {spec.script} is not in the synced workdir "
                                     f"{spec.workdir}", hint="git add it, or check "
                                     ".gpuhiveignore and the path (relative to the workdir)")
            env_digest = await self._sync(job, [records[c.name] for c in chosen], bundle, spec)
            last_call = launch.elastic_last_call_s(spec, len(chosen))
            plan = launch.LaunchPlan(job.id, spec, bundle.digest, env_digest, tuple(placements),
                                     nproc, backend, port, last_call)
            self._state(job, "running")
            job.started_at = self.clock()
            rendezvous = f"{plan.host.node}:{port}"
            self._event(job, "started", f"{len(chosen)} node(s) × {nproc} process(es), "
                        f"{backend}, rendezvous {rendezvous}", backend=backend,
                        nproc_per_node=nproc, rendezvous=rendezvous)
            if last_call is not None:
                self._event(job, "elastic", launch.elastic_wait_text(spec, len(chosen),
                                                                     last_call))
            await self._watch(job, spec, plan, [records[c.name] for c in chosen])
        except asyncio.CancelledError:
            self._finish(job, "cancelled", "cancelled by the owner")
            raise
        except GpuhiveError as exc:
            self._finish(job, "failed", exc.message + (f" ({exc.hint})" if exc.hint else ""))
        except Exception as exc:
            log.exception("job %s crashed", job.id)
            self._finish(job, "failed", f"controller error: {exc}")

    def _select(self, spec: JobSpec) -> list[Candidate]:
        # the same selection `gpuhive nodes rank --for train` shows (core/selection)
        overlay = self.ops.settings.overlay
        sel = self.ops.select_for_training(need_of(spec, overlay))
        if not sel.fits:
            raise not_enough_nodes(spec, sel)
        return candidates(sel, self.registry.list_nodes(), overlay)

    async def _preflight(self, job: JobRecord, nodes: list[NodeRecord],
                         placements: list[launch.Placement], port: int) -> None:
        async def disk(node: NodeRecord) -> None:
            answer = await within(self.options.preflight_s, self.nodes.output(
                node, launch.disk_free_command()), node=node.name, what="the disk check")
            fields = answer.split()
            free_mib = int(fields[3]) // 1024 if len(fields) > 3 and fields[3].isdigit() else 0
            if free_mib < 1024:
                raise PlacementError(f"node {node.name} has only {free_mib} MiB free for code "
                                     "and environment", hint="free some disk on that node")
        checks = [disk(n) for n in nodes]
        if len(nodes) > 1:
            checks.append(self._check_reach(nodes, placements, port))
        await all_or_cancel(*checks)
        self._event(job, "preflight", "probed versions agree, disk ok, rendezvous reachable")

    async def _check_reach(self, nodes: list[NodeRecord], placements: list[launch.Placement],
                           port: int) -> None:
        host, addr = nodes[0], placements[0].address
        listen = asyncio.ensure_future(self.nodes.output(
            host, launch.listen_command(addr, port, expect=len(nodes) - 1)))
        try:
            results = await asyncio.gather(
                *(within(self.options.preflight_s,
                         self.nodes.output(n, launch.connect_command(addr, port)),
                         node=n.name, what="the rendezvous check") for n in nodes[1:]),
                return_exceptions=True)
            for n, r in zip(nodes[1:], results, strict=True):
                if isinstance(r, BaseException):
                    cause = r.message if isinstance(r, GpuhiveError) else repr(r)
                    raise PlacementError(
                        f"node {n.name} cannot reach the rendezvous {addr}:{port} on "
                        f"{host.name}: {cause}", hint="check `gpuhive overlay check`; the "
                        "overlay must carry traffic between friends", node=n.name)
            # every node got through, so the listener exits by itself: wait until it has,
            # or torchrun may find the port still taken
            with contextlib.suppress(asyncio.TimeoutError, GpuhiveError):
                await asyncio.wait_for(listen, self.options.listener_exit_s)
        finally:
            listen.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listen

    async def _sync(self, job: JobRecord, nodes: list[NodeRecord], bundle: sync.Bundle,
                    spec: JobSpec) -> str | None:
        sha = hashlib.sha256(bundle.data).hexdigest()

        async def one(node: NodeRecord) -> int:
            state = await within(self.options.preflight_s, self.nodes.output(
                node, launch.code_check_command(bundle.digest)), node=node.name,
                what="whether it has the code")
            if state.strip() == "have":
                return 0

            def progress(sent: int) -> None:
                self._publish(job, {"event": "progress", "node": node.name, "sent": sent,
                                    "total": len(bundle.data)})
            try:
                await self.nodes.output(node, launch.code_receive_command(bundle.digest, sha),
                                        stdin=bundle.data, progress=progress)
            except GpuhiveError as exc:
                raise JobStepFailed(
                    f"sending the code ({humanize.size(len(bundle.data))}) to {node.name} "
                    f"failed: {exc.message}", hint="run the job again: a node that has the "
                    "code whole receives nothing, the others get all of it",
                    node=node.name, step="code") from exc
            return len(bundle.data)

        sent = await all_or_cancel(*(one(n) for n in nodes))
        self._event(job, "synced", sync.sync_summary(
            bundle.short, len(bundle.data), [n.name for n, s in zip(nodes, sent, strict=True) if s],
            [n.name for n, s in zip(nodes, sent, strict=True) if not s]))
        digest = await self._environment(job, nodes, spec, bundle.digest)
        await self._check_torch(job, nodes, digest)
        return digest

    async def _environment(self, job: JobRecord, nodes: list[NodeRecord], spec: JobSpec,
                           code_digest: str) -> str | None:
        """Build (once per hash) the requirements venv on every node; its digest, or None."""
        if not spec.requirements:
            return None
        req_path = Path(spec.workdir) / spec.requirements
        try:
            text = req_path.read_text()
        except OSError as exc:
            raise PlacementError(f"cannot read requirements {req_path}: {exc.strerror}") \
                from exc
        digest = sync.requirements_digest(text, code_digest)[:16]

        async def one(node: NodeRecord) -> str:
            try:
                state = await self.nodes.output(node, launch.env_command(digest, code_digest),
                                                stdin=text.encode())
            except GpuhiveError as exc:
                raise PlacementError(
                    f"building the job's environment from {spec.requirements} failed on "
                    f"{node.name}: {exc.message}", hint="try the same `pip install -r` on "
                    "that node; a node without internet access can only install what the "
                    "synced code folder holds (./wheels/…)") from exc
            return state.strip().splitlines()[-1] if state.strip() else "?"
        states = await all_or_cancel(*(one(n) for n in nodes))
        self._event(job, "environment", f"venv {digest}: " + ", ".join(
            f"{n.name} {s}" for n, s in zip(nodes, states, strict=True)))
        return digest

    async def _check_torch(self, job: JobRecord, nodes: list[NodeRecord],
                           env_digest: str | None) -> None:
        """torch must import, at one version, with the interpreter each node really uses.

        The probe's answer describes the agent's own interpreter; a requirements venv can
        differ from it (an upgrade, a broken layer), so this asks the job's interpreter.
        """
        where = f"the job's venv {env_digest}" if env_digest else "the agent's python"

        async def one(node: NodeRecord) -> str:
            answer = await within(self.options.torch_check_s, self.nodes.output(
                node, launch.torch_check_command(env_digest)), node=node.name,
                what="the torch check")
            try:
                found = json.loads(answer.strip().splitlines()[-1])
            except (ValueError, IndexError):
                found = {"error": f"unreadable answer {answer[-120:]!r}"}
            if "torch" not in found:
                raise PlacementError(
                    f"torch cannot be imported on {node.name} in {where}: "
                    f"{found.get('error', '?')}",
                    hint="add torch to the job's requirements" if env_digest else
                    "install torch in the environment the agent runs from")
            return str(found["torch"])
        versions = await all_or_cancel(*(one(n) for n in nodes))
        if len(set(versions)) > 1:
            common = max(set(versions), key=versions.count)
            odd = next(n for n, v in zip(nodes, versions, strict=True) if v != common)
            raise PlacementError(
                f"node {odd.name} imports torch {versions[nodes.index(odd)]} in {where} but "
                f"the others import {common}", hint="pin the same torch in the requirements "
                "(or on every node), or leave that node out")
        self._event(job, "torch", f"torch {versions[0]} imports in {where} on "
                    f"{'every node' if len(nodes) > 1 else nodes[0].name}")

    async def _watch(self, job: JobRecord, spec: JobSpec, plan: launch.LaunchPlan,
                     nodes: list[NodeRecord]) -> None:
        job_dir = self.jobs_dir / job.id
        (job_dir / "nodes").mkdir(parents=True, exist_ok=True)
        out = (job_dir / "output.log").open("a", buffering=1)
        # every line as the node printed it, the filtered noise included
        raw = {n.name: (job_dir / "nodes" / f"{n.name}.log").open("a", buffering=1)
               for n in nodes}
        tails: dict[str, deque[str]] = {n.name: deque(maxlen=self.options.tail_lines)
                                        for n in nodes}

        def sink(node: str, stream: str, line: str) -> None:
            raw[node].write(line + "\n")
            kept = output.from_node(node, line)
            if output.is_noise(kept.text):
                return
            tails[node].append(kept.text)
            out.write(kept.kept + "\n")
            self._publish(job, {"event": "log", "line": kept.kept})
            if any(h in line for h in RESTART_HINTS):
                code = re.search(r"exitcode: (-?\d+)", line)
                self._event(job, "workers_failed", f"{node}: a worker exited with "
                            f"{code.group(1) if code else '?'}; torch elastic restarts the "
                            "group while --max-restarts allows")

        tasks: dict[str, asyncio.Task[ExecResult]] = {
            n.name: asyncio.ensure_future(self.nodes.run(n, [plan.command(n.name)], sink))
            for n in nodes}
        alive = set(tasks)
        failed: list[str] = []
        try:
            for done in asyncio.as_completed(list(tasks.values())):
                res = await done
                alive.discard(res.node)
                if res.exit_status is None:
                    self._event(job, "node_lost", f"{res.node}: {res.error}; "
                                f"{len(alive)} node(s) left", node=res.node,
                                lost=res.error or "the session ended without an exit status")
                    lost_ok = spec.elastic and len(alive) >= spec.min_nodes
                    if not lost_ok:
                        failed.append(f"{res.node} lost")
                elif res.exit_status != 0:
                    why = telling_line(tails[res.node])
                    failed.append(f"{res.node} exited {res.exit_status}"
                                  + (f" ({why})" if why else ""))
                    self._event(job, "node_failed", f"{res.node}: exit status {res.exit_status}",
                                node=res.node, exit=res.exit_status)
                else:
                    self._event(job, "node_done", f"{res.node}: exit status 0", node=res.node,
                                exit=0)
                if failed and alive:
                    for name in alive:  # without elasticity the rest would only hang
                        tasks[name].cancel()
                    break
        finally:
            out.close()
            for f in raw.values():
                f.close()
            for t in tasks.values():
                t.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            # proof that nothing of the job is left on any node (also after a cancel)
            await asyncio.shield(self._sweep(job, nodes))
        outcomes = {n.name: not any(f.startswith(n.name + " ") for f in failed) for n in nodes}
        if failed:
            self._finish(job, "failed", "; ".join(failed), outcomes)
        else:
            self._finish(job, "succeeded", "", outcomes,
                         detail=success_text(job, self.clock()))

    async def _sweep(self, job: JobRecord, nodes: list[NodeRecord]) -> None:
        async def one(node: NodeRecord) -> str:
            try:
                text = await within(self.options.sweep_s, self.nodes.output(
                    node, launch.sweep_command(job.id)), node=node.name, what="the sweep")
            except GpuhiveError as exc:
                return f"{node.name}: not checked ({exc.message})"
            return f"{node.name}: {text.strip()}"
        results = await asyncio.gather(*(one(n) for n in nodes))
        self._event(job, "cleaned", "; ".join(results))

    # ---- bookkeeping ------------------------------------------------------------------

    def _state(self, job: JobRecord, state: str) -> None:
        job.state = state
        self.store.save(job)
        self._publish(job, {"event": "state", "state": state})

    def _event(self, job: JobRecord, event: str, detail: str, **data: object) -> None:
        """One timeline entry; ``data`` (node, exit…) is kept with it for `jobs show`."""
        job.events.append({"at": self.clock(), "event": event, "detail": detail, **data})
        self.store.save(job)
        self._publish(job, {"event": "job", "kind": event, "detail": detail})

    def _finish(self, job: JobRecord, state: str, reason: str,
                outcomes: dict[str, bool] | None = None, detail: str = "") -> None:
        job.state, job.reason, job.ended_at = state, reason, self.clock()
        self._event(job, state, detail or reason)
        for node, ok in (outcomes or {}).items():  # feeds each node's earned reliability
            with contextlib.suppress(GpuhiveError):
                self.ops.record_task(node, ok=ok)
        for q in self.watchers.pop(job.id, set()):
            q.put_nowait(None)

    def _publish(self, job: JobRecord, item: dict[str, Any]) -> None:
        for q in self.watchers.get(job.id, set()):
            q.put_nowait(item)


def success_text(job: JobRecord, now: float) -> str:
    """The ``succeeded`` event's detail: which nodes ended well, and after how long."""
    ran = humanize.duration(now - (job.started_at or job.created_at))
    exited = [n for n in job.nodes if n in job.exits] or list(job.exits)
    text = f"{', '.join(exited) or 'the job'} exited 0 after {ran}"
    return text + (f"; lost on the way: {', '.join(job.lost)}" if job.lost else "")


def log_filter(rec: JobRecord, tail: object = None, node: object = None,
               rank: object = None) -> LogFilter:
    """What `jobs logs` asked to see (values as they came over the admin socket); a node
    the job never ran on is an error, not silence."""
    if node is not None and (not isinstance(node, str) or node not in rec.nodes):
        raise ConfigError(f"job {rec.id} did not run on {node!r}",
                          hint=f"its nodes: {', '.join(rec.nodes)}" if rec.nodes else
                          "it ended before any node was placed", key="node")
    return LogFilter(node=node, rank=_count("rank", rank), tail=_count("tail", tail))


def _count(key: str, value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{key}={value!r} is not a whole number of at least 0", key=key)
    return value
