"""`gpuhive serve`: replicas of a model on the nodes that fit, behind the gateway.

For each replica the controller pushes the GGUF to the node (``NodeSessions.files``:
resumable, sha256-checked, renamed into place only when whole), then runs
``python -m gpuhive.serve.node.worker`` as a long-running process on the node
(``NodeSessions.process``). The worker prints a JSON status line per change; when it says
ready on port P the controller opens a forward to the node's 127.0.0.1:P
(``NodeSessions.forward``) and the replica joins the gateway's ``ReplicaSource``. Leaving
that process (serve stop, node removal, pause) stops the engine with it.

Everything here reaches nodes through ``transport.api.NodeSessions`` only, so it runs as
well over ``gpuhive.testing.FakeNodes`` (tests/unit/test_controller_serving.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gpuhive.config import Settings
from gpuhive.controller.holding_store import HoldingConflict, HoldingStore, new_holding
from gpuhive.controller.node_ops import NodeOps
from gpuhive.controller.registry import Registry
from gpuhive.core import nodeview
from gpuhive.core import reliability as rel
from gpuhive.core.holdings import HolderKind
from gpuhive.core.model import NodeRecord
from gpuhive.core.names import did_you_mean
from gpuhive.core.remote_probe import NODE_PYTHON
from gpuhive.errors import ConfigError, GpuhiveError, ModelNotServed, NodeUnreachable
from gpuhive.serve.api import ModelProfile, Replica
from gpuhive.serve.errors import DeploymentRefused
from gpuhive.serve.gateway.routing import ReplicaHealth
from gpuhive.serve.models.catalog import load_catalog, resolve
from gpuhive.serve.models.fetch import materialize
from gpuhive.serve.models.gguf_fit import estimate_for, read_gguf_info
from gpuhive.serve.models.profiles import model_profile
from gpuhive.serve.models.transfer import push_model
from gpuhive.serve.placement import ENDED, ReplicaInfo, ScalePlan, Unfit, plan_scale
from gpuhive.transport.api import Forward, NodeSessions

log = logging.getLogger(__name__)


@dataclass
class ReplicaRun:
    replica_id: str
    model: str
    node: str
    state: str = "pushing"
    port: int = 0
    base_url: str = ""
    error: str = ""
    restarts: int = 0
    task: asyncio.Task[None] | None = None
    forward: Forward | None = None  # the controller's way to the engine, once ready
    gpus: tuple[int, ...] = ()  # what it holds (and is pinned to); () on a CPU node

    def view(self) -> dict[str, Any]:
        return {"id": self.replica_id, "model": self.model, "node": self.node,
                "state": self.state, "port": self.port, "error": self.error,
                "restarts": self.restarts, "gpus": list(self.gpus)}


@dataclass
class Deployment:
    model: str
    profile: ModelProfile
    sha256: str
    path: Path
    need_mib: int
    replicas: dict[str, ReplicaRun] = field(default_factory=dict)
    started: int = 0  # replicas ever started: numbers the next replica id

    def live(self) -> list[ReplicaRun]:
        return [r for r in self.replicas.values() if r.state not in ENDED]


@dataclass(frozen=True)
class WorkerLine:
    """One status line of ``gpuhive.serve.node.worker`` (its ``WorkerStatus.to_dict``)."""

    state: str
    port: int = 0
    restarts: int = 0
    error: str = ""


def parse_worker_line(line: str) -> WorkerLine | None:
    """A status line, or None for anything else the worker printed."""
    try:
        status = json.loads(line)
        if not isinstance(status, dict):
            return None
        return WorkerLine(str(status.get("state")), int(status.get("port") or 0),
                          int(status.get("restarts") or 0), str(status.get("error") or ""))
    except (ValueError, TypeError):
        return None


class ServeManager:
    """The gateway's ``ReplicaSource``: ready replicas of every served model.

    ``health`` is the gateway's passive view of each replica (``ReplicaPool.health``):
    requests in flight and tokens/s for `serve ls`, and load for choosing what a scale-down
    stops.
    """

    def __init__(self, registry: Registry, nodes: NodeSessions, ops: NodeOps,
                 settings: Settings, home: Path, clock: Callable[[], float] = time.time, *,
                 health: Mapping[str, ReplicaHealth]) -> None:
        self.registry = registry
        self.nodes = nodes
        self.ops = ops
        self.settings = settings
        self.home = home
        self.clock = clock
        self.health = health
        self.deployments: dict[str, Deployment] = {}
        self.holdings = HoldingStore(registry.connection)

    # ---- ReplicaSource ----------------------------------------------------------------

    def replicas(self) -> list[Replica]:
        out = []
        for dep in self.deployments.values():
            for r in dep.replicas.values():
                if r.state == "ready" and r.base_url:
                    out.append(Replica(r.replica_id, r.model, r.node, r.base_url,
                                       self._reliability(r.node)))
        return out

    def profile(self, model: str) -> ModelProfile | None:
        dep = self.deployments.get(model)
        return dep.profile if dep else None

    def _reliability(self, node: str) -> float:
        with contextlib.suppress(GpuhiveError):
            return rel.score_at(nodeview.reliability_of(self.registry.get_node(node)),
                                self.clock())
        return 0.0

    # ---- owner operations -------------------------------------------------------------

    async def start(self, model: str, replicas: int = 1, ctx: int | None = None) -> dict[str, Any]:
        """Serve ``model`` on ``replicas`` nodes; on a model already served, add or stop
        replicas until it has that many (``serve.placement`` decides which)."""
        if replicas < 1:
            raise ConfigError(f"--replicas {replicas}: a served model has at least 1",
                              hint=f"`gpuhive serve stop {model}` stops every replica",
                              key="replicas")
        catalog = load_catalog(user=self.home / "models.yaml"
                               if (self.home / "models.yaml").exists() else None)
        ref = resolve(catalog, model)
        dep = self.deployments.get(ref.name)
        if dep is not None and ctx and ctx != dep.profile.ctx:
            raise DeploymentRefused(f"{ref.name} is served with --ctx {dep.profile.ctx}, "
                                    f"not {ctx}",
                                    hint=f"`gpuhive serve stop {ref.name}`, then serve it "
                                         f"again with --ctx {ctx}", model=ref.name)
        if dep is None:
            if ctx:
                ref = replace(ref, ctx=ctx)
            local = await materialize(ref, self.home / "models")
            info = read_gguf_info(local.path)
            dep = Deployment(ref.name, model_profile(ref, info), local.sha256, local.path,
                             estimate_for(info, ref.ctx).need_mib())
            if ref.name in self.deployments:  # another `serve` won the race meanwhile
                dep = self.deployments[ref.name]
        plan, gpus = self._plan(dep, replicas)
        if plan.placed == 0:
            raise DeploymentRefused(f"no node can hold {dep.model} (needs about "
                                    f"{dep.need_mib} MiB): {plan.why_not()}",
                                    hint="see `gpuhive nodes rank --for serve`",
                                    model=dep.model)
        self.deployments[dep.model] = dep
        stopped = await self._apply(dep, plan, gpus)
        return {"model": dep.model, "need_mib": dep.need_mib, "wanted": replicas,
                "before": plan.before, "started": list(plan.start_on), "stopped": stopped,
                "unplaced": plan.unplaced,
                "unfit": [{"node": u.node, "reason": u.reason} for u in plan.unfit],
                "summary": plan.summary(stopped),
                "nodes": [r.node for r in dep.live()],
                "replicas": [r.view() for r in dep.replicas.values()]}

    def _plan(self, dep: Deployment, want: int) -> tuple[ScalePlan, dict[str, tuple[int, ...]]]:
        """The plan, and the GPUs ranking chose on each eligible node (what a replica
        started there holds)."""
        # one GPU per replica when enough fit, else CPU nodes with enough RAM; what other
        # replicas and jobs hold is subtracted (core/holdings)
        ranking = self.ops.select_for_serving(dep.need_mib, want).ranking
        current = [ReplicaInfo(r.replica_id, r.node, r.state, self._reliability(r.node),
                               self._health(r.replica_id).in_flight)
                   for r in dep.replicas.values()]
        plan = plan_scale(dep.model, want, current, [r.name for r in ranking.ranked],
                          [Unfit(e.name, e.reasons[0].message)
                           for e in ranking.excluded if e.reasons])
        return plan, {r.name: tuple(r.gpu_indices) for r in ranking.ranked}

    def _health(self, replica_id: str) -> ReplicaHealth:
        return self.health.get(replica_id) or ReplicaHealth()

    async def _apply(self, dep: Deployment, plan: ScalePlan,
                     gpus: Mapping[str, tuple[int, ...]]) -> list[str]:
        """Carry out ``plan``; returns the nodes whose replica was stopped. Each replica
        started holds its GPU (and VRAM estimate) or, on a CPU node, RAM."""
        for replica_id in plan.forget:
            dep.replicas.pop(replica_id, None)
        doomed = [dep.replicas.pop(i) for i in plan.stop if i in dep.replicas]
        for r in doomed:
            if r.task is not None:
                r.task.cancel()
        await asyncio.gather(*(r.task for r in doomed if r.task), return_exceptions=True)
        for node in plan.start_on:
            run = ReplicaRun(f"{dep.model}@{node}#{dep.started}", dep.model, node,
                             gpus=gpus.get(node, ()))
            try:
                self._hold(dep, run)
            except (HoldingConflict, GpuhiveError) as exc:
                log.warning("%s: not started: %s", run.replica_id, exc)
                continue
            dep.started += 1
            dep.replicas[run.replica_id] = run
            run.task = asyncio.ensure_future(self._run_replica(dep, run))
        return [r.node for r in doomed]

    async def wait_ready(self, model: str, timeout: float = 120.0) -> list[dict[str, Any]]:
        dep = self._deployment(model)
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if all(r.state == "ready" or r.state in ENDED for r in dep.replicas.values()):
                break
            await asyncio.sleep(0.2)
        return [r.view() for r in dep.replicas.values()]

    def _deployment(self, model: str) -> Deployment:
        dep = self.deployments.get(model)
        if dep is None:
            raise ModelNotServed(f"{model} is not served",
                                 hint=did_you_mean(model, self.deployments)
                                 + "`gpuhive serve ls` shows what is", model=model)
        return dep

    def list_replicas(self) -> list[dict[str, Any]]:
        out = []
        for dep in self.deployments.values():
            for r in dep.replicas.values():
                h = self._health(r.replica_id)
                rate = h.tokens_per_s
                out.append({**r.view(), "in_flight": h.in_flight,
                            "tokens_per_s": round(rate, 1) if rate is not None else None})
        return out

    async def stop(self, model: str) -> dict[str, Any]:
        dep = self._deployment(model)
        del self.deployments[model]
        for r in dep.replicas.values():
            if r.task is not None:
                r.task.cancel()
        await asyncio.gather(*(r.task for r in dep.replicas.values() if r.task),
                             return_exceptions=True)
        return {"model": model, "stopped": len(dep.replicas)}

    async def stop_all(self) -> None:
        for model in list(self.deployments):
            with contextlib.suppress(GpuhiveError):
                await self.stop(model)

    async def respect_owners(self) -> list[str]:
        """Stop replicas on nodes whose owner paused them (or that went offline)."""
        nodes = {n.name: n for n in self.registry.list_nodes()}
        stopped = []
        for dep in self.deployments.values():
            for r in dep.replicas.values():
                node = nodes.get(r.node)
                if r.task is None or r.task.done():
                    continue
                if node is None or node.agent_state in ("paused", "draining"):
                    r.task.cancel()
                    r.error = "the node's owner paused it" if node else "node removed"
                    stopped.append(r.replica_id)
        return stopped

    async def node_gone(self, node: str) -> None:
        """A removed or paused node: its replicas stop and leave the gateway."""
        for dep in self.deployments.values():
            for r in dep.replicas.values():
                if r.node == node and r.task is not None:
                    r.task.cancel()

    # ---- holdings ---------------------------------------------------------------------

    def reconcile(self) -> list[str]:
        """Release what replicas this controller no longer runs still hold (one stopped
        before its task began, or one a previous controller started). Returns their ids."""
        running = {r.replica_id for dep in self.deployments.values() for r in dep.replicas.values()
                   if r.task is not None and not r.task.done()}
        gone = [h for h in self.holdings.live() if h.kind is HolderKind.REPLICA
                and h.owner not in running]
        for h in gone:
            self.holdings.release(h.owner, now=self.clock(), reason="the replica is not running")
        return [h.owner for h in gone]

    def _hold(self, dep: Deployment, run: ReplicaRun) -> None:
        node = self.registry.get_node(run.node)
        gpu = bool(run.gpus)
        self.holdings.hold([new_holding(
            HolderKind.REPLICA, run.replica_id, node.id, node.name, now=self.clock(),
            gpus=run.gpus, vram_mib=dep.need_mib if gpu else 0,
            ram_mib=0 if gpu else dep.need_mib, processes=1)])

    # ---- one replica ------------------------------------------------------------------

    async def _run_replica(self, dep: Deployment, run: ReplicaRun) -> None:
        try:
            node = self.registry.get_node(run.node)
            home = await self.nodes.output(node, 'printf %s "${GPUHIVE_HOME:-$HOME/.gpuhive}"')
            remote = f"{home.strip()}/models/{dep.sha256}.gguf"
            await self.nodes.output(node, f"mkdir -p {shlex.quote(str(Path(remote).parent))}")
            async with self.nodes.files(node) as files:
                pushed = await push_model(files, dep.path, remote, dep.sha256)
            log.info("%s: model on %s (%d bytes sent)", run.replica_id, run.node, pushed.sent)
            run.state = "starting"
            await self._supervise(node, dep, run, remote)
        except asyncio.CancelledError:
            run.state = "stopped"
            raise
        except (GpuhiveError, OSError) as exc:
            run.state, run.error = "failed", getattr(exc, "message", None) or str(exc)
            log.warning("%s failed: %s", run.replica_id, run.error)
            # an engine that crashed (or a node that could not take the model) is the
            # node's fault: it moves the node's reliability
            with contextlib.suppress(GpuhiveError):
                self.ops.record_task(run.node, ok=False)
        finally:
            if run.forward is not None:
                run.forward.close()
                run.forward = None
            run.base_url = ""
            # the worker's session has ended, so the node has stopped its engine (the
            # embedded server stops what a closed channel started)
            self.holdings.release(run.replica_id, now=self.clock(),
                                  reason=f"the replica {run.state}")

    async def _supervise(self, node: NodeRecord, dep: Deployment, run: ReplicaRun,
                         remote: str) -> None:
        argv = ["--model", remote, "--sha256", dep.sha256, "--alias", dep.model,
                "--ctx", str(dep.profile.ctx)]
        # the tags let the agent report what runs on it (its heartbeat's work list)
        command = (f"GPUHIVE_REPLICA_ID={shlex.quote(run.replica_id)} "
                   f"GPUHIVE_MODEL={shlex.quote(dep.model)} "
                   f"exec {NODE_PYTHON} -m gpuhive.serve.node.worker " + " ".join(
                       shlex.quote(a) for a in argv))
        async with self.nodes.process(node, command) as proc:
            async for line in proc.lines():
                status = parse_worker_line(line)
                if status is None:
                    continue
                run.restarts, run.error = status.restarts, status.error
                if status.state == "ready" and status.port:
                    if run.port != status.port or run.forward is None:
                        if run.forward is not None:
                            run.forward.close()
                        run.port = status.port
                        run.forward = await self.nodes.forward(node, run.port)
                        run.base_url = f"http://127.0.0.1:{run.forward.local_port}"
                elif status.state != "ready":
                    run.base_url = ""
                run.state = status.state
            await proc.wait()
        if run.state != "stopped":
            raise NodeUnreachable(f"replica {run.replica_id} ended: {run.error or 'worker exited'}",
                                  node=node.name)
