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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuhive.controller.holding_store import HoldingConflict, HoldingStore, new_holding
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
from gpuhive.core.holdings import HolderKind, Holding
from gpuhive.core.model import NodeRecord, NodeStatus
from gpuhive.core.ranking import NodeView
from gpuhive.core.selection import Selection, hardware_only
from gpuhive.errors import ConfigError, GpuhiveError, JobAlreadyEnded
from gpuhive.train import launch, output, queueing, sync
from gpuhive.train.failure import node_fault, telling_line
from gpuhive.train.output import LogFilter
from gpuhive.train.placement import (
    Candidate,
    PlacementError,
    addresses,
    candidates,
    need_of,
    not_enough_nodes,
    processes_per_node,
    rank_command,
    version_mismatch,
)
from gpuhive.train.spec import JobSpec, build_spec
from gpuhive.transport.api import ExecResult, NodeSessions

log = logging.getLogger(__name__)
# torchrun's own (warning-level) line when a worker group fails; with attempts left the
# elastic agent restarts it, at the new size when a node was lost
RESTART_HINTS = ("failed (exitcode:",)

Emit = Callable[[dict[str, Any]], None]


class QueueTimedOut(GpuhiveError):
    code = "queue_timeout"


@dataclass
class _Waiting:
    """A queued job: the scheduler resolves ``placed`` once its nodes are held."""

    job: JobRecord
    spec: JobSpec
    placed: asyncio.Future[_Placed]
    reason: str = ""
    told_at: float = 0.0  # when the job's followers last heard why it waits


@dataclass(frozen=True)
class _Placed:
    chosen: list[Candidate]
    nproc: int
    backend: str
    holdings: list[Holding]
    note: str = ""  # ``--gpus-per-node auto``: how many GPUs each node runs, and why


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
        self.holdings = HoldingStore(registry.connection)
        self.waiting: dict[str, _Waiting] = {}
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False
        # job → node → why its part is being stopped (its friend took the machine back)
        self._leaving: dict[str, dict[str, str]] = {}
        self._side: set[asyncio.Task[None]] = set()
        self.store.interrupted(clock())  # queued jobs stay queued: `resume` restarts them

    # ---- API --------------------------------------------------------------------------

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        job_spec = build_spec(spec)
        self._could_ever_fit(job_spec)
        job_id = "j-" + secrets.token_hex(3)
        job = JobRecord(job_id, job_spec.name, "queued", job_spec.to_dict(), self.clock())
        self.store.create(job)
        (self.jobs_dir / job_id).mkdir(parents=True, exist_ok=True)
        self._event(job, "queued", f"{Path(job_spec.script).name} on {job_spec.nodes_text} "
                    "node(s)")
        self.tasks[job_id] = asyncio.ensure_future(self._run(job, job_spec))
        return job.to_dict()

    def resume(self) -> list[str]:
        """Restart the queued jobs a previous controller left (they hold nothing yet)."""
        resumed = []
        for job in self.store.queued():
            spec = JobSpec.from_dict(job.spec)
            self._event(job, "requeued", "back in the queue after a controller restart")
            self.tasks[job.id] = asyncio.ensure_future(self._run(job, spec))
            resumed.append(job.id)
        return resumed

    def list_jobs(self) -> list[dict[str, Any]]:
        return [self._with_queue(j.to_dict()) for j in self.store.recent()]

    def show(self, job: str) -> dict[str, Any]:
        return self._with_queue(self.store.get(job).to_dict())

    def _with_queue(self, job: dict[str, Any]) -> dict[str, Any]:
        """A job as shown, with its place in the queue and, once placed, its holdings."""
        if job["state"] == "queued":
            job["queue_position"] = self._positions().get(job["id"])
        job["holdings"] = [h.to_dict() for h in self.holdings.of(job["id"],
                                                                 include_released=True)]
        return job

    def _positions(self) -> dict[str, int]:
        return queueing.positions(
            queueing.QueueEntry(w.job.id, w.spec.priority, w.job.created_at)
            for w in self.waiting.values() if not w.placed.done())

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
            return self.show(rec.id)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return self.show(rec.id)

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
        return self.show(rec.id)

    async def stop(self) -> None:
        self._stopping = True  # queued jobs stay queued for the next controller
        if self._poller is not None:
            self._poller.cancel()
        for task in list(self.tasks.values()):
            task.cancel()
        for task in list(self.tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ---- one job ----------------------------------------------------------------------

    async def _run(self, job: JobRecord, spec: JobSpec) -> None:
        while await self._attempt(job, spec):  # True: back to the queue (--requeue)
            self._state(job, "queued")

    async def _attempt(self, job: JobRecord, spec: JobSpec) -> bool:
        """Queue, place, prepare and run the job once; True when it goes back to the queue
        (a friend's window closed on it and it asked for ``requeue``)."""
        placed: _Placed | None = None
        launched = False
        try:
            placed = await self._queue(job, spec)
            self._state(job, "preflight")
            chosen, nproc, backend = placed.chosen, placed.nproc, placed.backend
            self._event(job, "placed", _placed_text(placed), holdings={
                h.node: list(h.gpus) for h in placed.holdings})
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
            launched = True  # from here the sweep decides what is released
            return await self._watch(job, spec, plan, [records[c.name] for c in chosen])
        except asyncio.CancelledError:
            if self._stopping and placed is None:
                raise  # still queued: the next controller picks it up (`resume`)
            if self._stopping:
                self._finish(job, "failed", "the controller stopped while the job ran")
            else:
                self._finish(job, "cancelled", "cancelled by the owner")
            raise
        except GpuhiveError as exc:
            self._finish(job, "failed", exc.message + (f" ({exc.hint})" if exc.hint else ""))
        except Exception as exc:
            log.exception("job %s crashed", job.id)
            self._finish(job, "failed", f"controller error: {exc}")
        finally:
            self._leaving.pop(job.id, None)
            if placed is not None and not launched:
                # it ended before anything ran under its holdings (preflight, sync…)
                self._release(job, "the job ended before it started")
        return False

    # ---- a friend takes the machine back ----------------------------------------------

    async def stop_on(self, node: str, why: str) -> list[str]:
        """Stop ``node``'s part of every job running there (its friend's window closed, or
        the friend stopped it): SIGTERM, the job's grace period, then SIGKILL. An elastic job
        that keeps enough nodes goes on without it; any other job ends, and with
        ``requeue`` goes back to the queue. Not the node's fault: nothing is recorded
        against it. Returns the jobs touched."""
        touched = []
        for job_id, task in list(self.tasks.items()):
            if task.done() or job_id in self.waiting:
                continue
            rec = self.store.get(job_id)
            if rec.state != "running" or node not in rec.nodes:
                continue
            leaving = self._leaving.setdefault(job_id, {})
            if node in leaving:
                continue
            spec = JobSpec.from_dict(rec.spec)
            left = [n for n in rec.nodes if n not in leaving and n != node]
            shrink = spec.elastic and len(left) >= spec.min_nodes
            targets = [node] if shrink else [n for n in rec.nodes if n not in leaving]
            for n in targets:
                leaving[n] = why if n == node else f"stopped with {node} ({why})"
            self._event(rec, "node_leaving", f"{node}: {why}; " + (
                f"the job goes on on {len(left)} node(s)" if shrink else
                f"stopping the job (SIGTERM, {spec.grace_s} s grace)"
                + ("; it goes back to the queue" if spec.requeue else "")), node=node)
            touched.append(job_id)
            records = {n.name: n for n in self.registry.list_nodes()}
            for n in targets:
                if n in records:
                    self._later(self._stop_part(rec, records[n], spec.grace_s))
        return touched

    async def _stop_part(self, job: JobRecord, node: NodeRecord, grace_s: int) -> None:
        with contextlib.suppress(GpuhiveError):
            await within(grace_s + self.options.sweep_s, self.nodes.output(
                node, launch.sweep_command(job.id, grace_s)), node=node.name,
                what="stopping the job")

    def _later(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    # ---- the queue --------------------------------------------------------------------

    def _could_ever_fit(self, spec: JobSpec) -> None:
        """Refuse at submit what no node's hardware could ever take (`--gpus-per-node 3`
        on nodes with 2 GPUs): waiting for it would be for ever."""
        self.choose(spec, self.ops.views(self.clock()))

    async def _queue(self, job: JobRecord, spec: JobSpec) -> _Placed:
        """Wait until the scheduler holds nodes for ``job``; ``--no-wait`` fails at once."""
        waiting = _Waiting(job, spec, asyncio.get_running_loop().create_future())
        self.waiting[job.id] = waiting
        try:
            self.schedule()
            if not waiting.placed.done():
                if not spec.wait:
                    raise PlacementError(f"no room now: {waiting.reason}",
                                         hint="without --no-wait the job waits in the queue; "
                                         f"`{rank_command(spec)}` shows each node")
                job.reason = waiting.reason
                self._event(job, "waiting", waiting.reason)
                waiting.told_at = self.clock()
                self._start_poller()
            try:
                return await asyncio.wait_for(asyncio.shield(waiting.placed),
                                              spec.queue_timeout_s)
            except asyncio.TimeoutError:
                if waiting.placed.done() and not waiting.placed.exception():
                    return waiting.placed.result()  # placed as the time ran out
                raise QueueTimedOut(f"gave up after {spec.queue_timeout_s or 0:.0f} s in the "
                                    f"queue: {waiting.reason}",
                                    hint="raise --queue-timeout, or free nodes",
                                    job=job.id) from None
        except BaseException:
            if waiting.placed.done() and not waiting.placed.cancelled() \
                    and waiting.placed.exception() is None:
                self._release_holdings(waiting.placed.result().holdings, "never started")
            raise
        finally:
            self.waiting.pop(job.id, None)
            job.reason = ""

    def _start_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        # capacity frees when heartbeats show it or a job releases its nodes; the latter
        # schedules at once, this catches the former within a tick of the flush
        while self.waiting:
            await asyncio.sleep(self.options.queue_poll_s)
            try:
                self.schedule()
            except Exception:  # the queue must outlive one bad pass
                log.exception("scheduling the queue failed")

    def schedule(self) -> list[str]:
        """Try the queued jobs in order (priority, then first come); those that fit get
        their nodes held and start. Synchronous: no placement interleaves with another."""
        pending = [w for w in self.waiting.values() if not w.placed.done()]
        if not pending:
            return []
        order = queueing.queue_order(queueing.QueueEntry(w.job.id, w.spec.priority,
                                                         w.job.created_at) for w in pending)
        views = self.ops.views(self.clock())
        started = []
        for entry in order:
            w = self.waiting[entry.job_id]
            try:
                placed = self._try_place(w, views)
            except GpuhiveError as exc:
                w.placed.set_exception(exc)
                continue
            if placed is not None:
                w.placed.set_result(placed)
                started.append(w.job.id)
                views = self.ops.with_holdings(views)
        return started

    def choose(self, spec: JobSpec, views: list[NodeView]) -> tuple[Selection, list[Candidate]]:
        """The selection for ``spec`` over ``views`` (what `nodes rank --for train` shows)
        and, when it fits, the chosen nodes; ``PlacementError`` when no node's hardware
        ever could take it."""
        overlay = self.ops.settings.overlay
        need = need_of(spec, overlay)
        capable = self.ops.select_for_training(need, [hardware_only(v) for v in views])
        if not capable.fits:
            raise not_enough_nodes(spec, capable, ever=True)
        sel = self.ops.select_for_training(need, views,
                                           cpu_fallback=capable.fell_back_to_cpu)
        if not sel.fits:
            return sel, []
        return sel, candidates(sel, self.registry.list_nodes(), overlay)

    def _try_place(self, w: _Waiting, views: list[NodeView]) -> _Placed | None:
        spec, job = w.spec, w.job
        sel, chosen = self.choose(spec, views)
        if not chosen:
            self._waits(w, queueing.queue_reason(spec, sel))
            return None
        nproc, backend = processes_per_node(spec, chosen)
        now = self.clock()
        holdings = [new_holding(HolderKind.JOB, job.id, c.node_id, c.name, now=now,
                                gpus=c.gpu_indices[:nproc], processes=nproc,
                                ram_mib=0 if c.gpu_indices else spec.min_vram_mib)
                    for c in chosen]
        try:
            self.holdings.hold(holdings)
        except HoldingConflict as exc:  # another process placed meanwhile
            self._waits(w, exc.message)
            return None
        note = ""
        if sel.free_gpus and spec.gpus_per_node is None:
            note = "auto: " + queueing.summarize_gpus(
                [(c.name, sel.free_gpus.get(c.name, nproc)) for c in chosen], nproc)
        return _Placed(chosen, nproc, backend, holdings, note)

    def _waits(self, w: _Waiting, reason: str) -> None:
        if reason == w.reason:
            return
        w.reason = reason
        if w.told_at and self.clock() - w.told_at >= self.options.queue_tell_s:
            w.job.reason = reason
            self._publish(w.job, {"event": "job", "kind": "waiting", "detail": reason})
            self.store.save(w.job)
            w.told_at = self.clock()

    # ---- holdings ---------------------------------------------------------------------

    def _release(self, job: JobRecord, reason: str, nodes: set[str] | None = None) -> None:
        """Release the job's holdings (on ``nodes`` only, when given) and let the queue
        use them at once."""
        live = [h for h in self.holdings.of(job.id) if nodes is None or h.node in nodes]
        self._release_holdings(live, reason)

    def _release_holdings(self, holdings: list[Holding], reason: str) -> None:
        now = self.clock()
        for h in holdings:
            self.holdings.release(h.owner, node_id=h.node_id, now=now, reason=reason)
        if holdings and self.waiting:
            self.schedule()

    def reconcile(self) -> list[str]:
        """Release what ended jobs still hold on nodes that went offline (their processes
        went with the node's link). Returns the node names released."""
        live = [h for h in self.holdings.live() if h.kind is HolderKind.JOB]
        if not live:
            return []
        status = {r.id: r.status for r in self.registry.liveness()}
        active = {job_id for job_id, t in self.tasks.items() if not t.done()}
        gone = [h for h in live if h.owner not in active
                and status.get(h.node_id, NodeStatus.OFFLINE) in
                (NodeStatus.OFFLINE, NodeStatus.REMOVED)]
        self._release_holdings(gone, "the node went offline")
        return [h.node for h in gone]

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
                     nodes: list[NodeRecord]) -> bool:
        """Run the job's torchrun on every node until it ends; True when it goes back to
        the queue (``requeue``, a friend's window closed on it)."""
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
        stopped: list[str] = []  # parts stopped because a friend took the machine back
        faults: dict[str, str] = {}  # node → what the node did wrong
        try:
            for done in asyncio.as_completed(list(tasks.values())):
                res = await done
                alive.discard(res.node)
                leaving = self._leaving.get(job.id, {})
                if res.node in leaving and res.exit_status != 0:
                    # its friend took the machine back: not a failure of the node
                    left = leaving[res.node]
                    self._event(job, "node_left", f"{res.node}: {left}", node=res.node,
                                left=left)
                    if not (spec.elastic and len(alive) >= spec.min_nodes):
                        stopped.append(f"{res.node} stopped: {left}")
                elif res.exit_status is None:
                    self._event(job, "node_lost", f"{res.node}: {res.error}; "
                                f"{len(alive)} node(s) left", node=res.node,
                                lost=res.error or "the session ended without an exit status")
                    lost_ok = spec.elastic and len(alive) >= spec.min_nodes
                    faults[res.node] = node_fault(None, (), res.error or "") or "lost"
                    if not lost_ok:
                        failed.append(f"{res.node} lost")
                elif res.exit_status != 0:
                    why = telling_line(tails[res.node])
                    failed.append(f"{res.node} exited {res.exit_status}"
                                  + (f" ({why})" if why else ""))
                    self._event(job, "node_failed", f"{res.node}: exit status {res.exit_status}",
                                node=res.node, exit=res.exit_status)
                    fault = node_fault(res.exit_status, tails[res.node])
                    if fault is not None:
                        faults[res.node] = fault
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
        # only what the node itself did wrong counts against it; the script's own failure
        # is the job's (issue 12, part 8)
        outcomes: dict[str, bool] = {}
        # a friend who stopped the work (`agent pause --now`) shows paused by now (the
        # sweep took a heartbeat or more): what broke there is not the machine's fault
        paused = self._paused_now({n.name for n in nodes})
        for name in paused:
            faults.pop(name, None)
            for i, why in enumerate(failed):
                if why.startswith(name + " "):
                    stopped.append(f"{name} stopped by its friend (agent pause)")
                    failed[i] = ""
        failed = [f for f in failed if f]
        for n in nodes:
            fault = faults.get(n.name)
            if fault is not None:
                outcomes[n.name] = False
                self._event(job, "node_fault", f"{n.name}: {fault}", node=n.name, fault=fault)
            elif not failed and not stopped:
                outcomes[n.name] = True
        if stopped and not failed and spec.requeue:
            outcomes = {n: ok for n, ok in outcomes.items() if not ok}  # no credit either
            self._event(job, "requeued", "; ".join(stopped) + "; back in the queue")
            return True
        if failed or stopped:
            self._finish(job, "failed", "; ".join(failed + stopped), outcomes)
        else:
            self._finish(job, "succeeded", "", outcomes,
                         detail=success_text(job, self.clock()))
        return False

    def _paused_now(self, names: set[str]) -> set[str]:
        return {n.name for n in self.registry.list_nodes()
                if n.name in names and n.agent_state in ("paused", "draining")}

    async def _sweep(self, job: JobRecord, nodes: list[NodeRecord]) -> None:
        """Make sure nothing of the job is left on its nodes; each node that confirms it
        is released. A node that cannot be asked keeps its holding until it is (or goes
        offline): its processes may still run."""
        confirmed: set[str] = set()

        async def one(node: NodeRecord) -> str:
            try:
                text = await within(self.options.sweep_s, self.nodes.output(
                    node, launch.sweep_command(job.id)), node=node.name, what="the sweep")
            except GpuhiveError as exc:
                return f"{node.name}: not checked ({exc.message})"
            confirmed.add(node.name)
            return f"{node.name}: {text.strip()}"
        results = await asyncio.gather(*(one(n) for n in nodes))
        self._event(job, "cleaned", "; ".join(results))
        self._release(job, "its processes are gone (swept)", confirmed)

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


def _placed_text(placed: _Placed) -> str:
    """``friend1 GPUs 0,1; friend2 GPUs 0,1 (2 processes each, nccl)``."""
    parts = [f"{h.node} GPU{'s' if len(h.gpus) != 1 else ''} {','.join(map(str, h.gpus))}"
             if h.gpus else f"{h.node} (CPU)" for h in placed.holdings]
    return (f"holds {'; '.join(parts)} ({placed.nproc} process"
            f"{'es' if placed.nproc != 1 else ''} per node, {placed.backend})"
            + (f"; {placed.note}" if placed.note else ""))


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
