"""`gpuhive serve`: replicas of a model on the nodes that fit, behind the gateway.

For each replica the controller pushes the GGUF to the node over SFTP (resumable,
sha256-checked, renamed into place only when whole), then runs
``python -m gpuhive.serve.node.worker`` over its SSH session. The worker prints a JSON
status line per change; when it says ready on port P the controller opens a local port
forward to the node's 127.0.0.1:P and the replica joins the gateway's ``ReplicaSource``.
Closing that session (serve stop, node removal, pause) stops the engine with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from gpuhive.config import Settings
from gpuhive.controller.node_ops import NodeOps
from gpuhive.controller.registry import Registry
from gpuhive.core import nodeview
from gpuhive.core import reliability as rel
from gpuhive.core.model import NodeRecord
from gpuhive.core.names import did_you_mean
from gpuhive.core.remote_probe import NODE_PYTHON
from gpuhive.errors import ConfigError, GpuhiveError, ModelNotServed, NodeUnreachable
from gpuhive.serve.api import ModelProfile, Replica
from gpuhive.serve.models.catalog import load_catalog, resolve
from gpuhive.serve.models.fetch import materialize
from gpuhive.serve.models.gguf_fit import estimate_for, read_gguf_info
from gpuhive.serve.models.profiles import model_profile
from gpuhive.serve.models.transfer import push_model
from gpuhive.serve.placement import ENDED, ReplicaInfo, ScalePlan, Unfit, plan_scale
from gpuhive.transport.node_conn import NodeConnections

log = logging.getLogger(__name__)


class ServeError(GpuhiveError):
    code = "serve"


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
    listener: asyncssh.SSHListener | None = None

    def view(self) -> dict[str, Any]:
        return {"id": self.replica_id, "model": self.model, "node": self.node,
                "state": self.state, "port": self.port, "error": self.error,
                "restarts": self.restarts}


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


class ServeManager:
    """The gateway's ``ReplicaSource``: ready replicas of every served model."""

    def __init__(self, registry: Registry, nodes: NodeConnections, ops: NodeOps,
                 settings: Settings, home: Path, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.nodes = nodes
        self.ops = ops
        self.settings = settings
        self.home = home
        self.clock = clock
        self.deployments: dict[str, Deployment] = {}
        self.gateway: Any = None  # set by the daemon: in-flight counts and tokens/s

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
            raise ServeError(f"{ref.name} is served with --ctx {dep.profile.ctx}, not {ctx}",
                             hint=f"`gpuhive serve stop {ref.name}`, then serve it again with "
                                  f"--ctx {ctx}", model=ref.name)
        if dep is None:
            if ctx:
                from dataclasses import replace
                ref = replace(ref, ctx=ctx)
            local = await materialize(ref, self.home / "models")
            info = read_gguf_info(local.path)
            dep = Deployment(ref.name, model_profile(ref, info), local.sha256, local.path,
                             estimate_for(info, ref.ctx).need_mib())
            if ref.name in self.deployments:  # another `serve` won the race meanwhile
                dep = self.deployments[ref.name]
        plan = self._plan(dep, replicas)
        if plan.placed == 0:
            raise ServeError(f"no node can hold {dep.model} (needs about {dep.need_mib} MiB): "
                             f"{plan.why_not()}",
                             hint="see `gpuhive nodes rank --for serve`", model=dep.model)
        self.deployments[dep.model] = dep
        stopped = await self._apply(dep, plan)
        return {"model": dep.model, "need_mib": dep.need_mib, "wanted": replicas,
                "before": plan.before, "started": list(plan.start_on), "stopped": stopped,
                "unplaced": plan.unplaced,
                "unfit": [{"node": u.node, "reason": u.reason} for u in plan.unfit],
                "summary": plan.summary(stopped),
                "nodes": [r.node for r in dep.live()],
                "replicas": [r.view() for r in dep.replicas.values()]}

    def _plan(self, dep: Deployment, want: int) -> ScalePlan:
        ranking = self.ops.rank(gpus=1, min_vram_mib=dep.need_mib, purpose="serve")
        if len(ranking["ranked"]) < want:  # not enough GPUs fit: CPU nodes with enough RAM
            ranking = self.ops.rank(gpus=0, min_vram_mib=dep.need_mib, purpose="serve")
        health = dict(self.gateway.health) if self.gateway is not None else {}
        current = [ReplicaInfo(r.replica_id, r.node, r.state, self._reliability(r.node),
                               getattr(health.get(r.replica_id), "in_flight", 0))
                   for r in dep.replicas.values()]
        return plan_scale(dep.model, want, current, [r["name"] for r in ranking["ranked"]],
                          [Unfit(e["name"], e["reasons"][0]["message"])
                           for e in ranking["excluded"] if e["reasons"]])

    async def _apply(self, dep: Deployment, plan: ScalePlan) -> list[str]:
        """Carry out ``plan``; returns the nodes whose replica was stopped."""
        for replica_id in plan.forget:
            dep.replicas.pop(replica_id, None)
        doomed = [dep.replicas.pop(i) for i in plan.stop if i in dep.replicas]
        for r in doomed:
            if r.task is not None:
                r.task.cancel()
        await asyncio.gather(*(r.task for r in doomed if r.task), return_exceptions=True)
        for node in plan.start_on:
            run = ReplicaRun(f"{dep.model}@{node}#{dep.started}", dep.model, node)
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
        health = dict(self.gateway.health) if self.gateway is not None else {}
        out = []
        for dep in self.deployments.values():
            for r in dep.replicas.values():
                h = health.get(r.replica_id)
                rate = h.tokens_per_s if h is not None else None
                out.append({**r.view(), "in_flight": h.in_flight if h is not None else 0,
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

    # ---- one replica ------------------------------------------------------------------

    async def _run_replica(self, dep: Deployment, run: ReplicaRun) -> None:
        try:
            node = self.registry.get_node(run.node)
            conn = await self.nodes.get(node)
            home = (await conn.run('printf %s "${GPUHIVE_HOME:-$HOME/.gpuhive}"',
                                   check=True)).stdout
            remote = f"{str(home).strip()}/models/{dep.sha256}.gguf"
            await conn.run(f"mkdir -p {shlex.quote(str(Path(remote).parent))}", check=True)
            async with self.nodes.files(node) as files:
                pushed = await push_model(files, dep.path, remote, dep.sha256)
            log.info("%s: model on %s (%d bytes sent)", run.replica_id, run.node, pushed.sent)
            run.state = "starting"
            await self._supervise(node, conn, dep, run, remote)
        except asyncio.CancelledError:
            run.state = "stopped"
            raise
        except (GpuhiveError, OSError, asyncssh.Error) as exc:
            run.state, run.error = "failed", getattr(exc, "message", None) or str(exc)
            log.warning("%s failed: %s", run.replica_id, run.error)
        finally:
            if run.listener is not None:
                run.listener.close()
                run.listener = None
            run.base_url = ""

    async def _supervise(self, node: NodeRecord, conn: asyncssh.SSHClientConnection,
                         dep: Deployment, run: ReplicaRun, remote: str) -> None:
        argv = ["--model", remote, "--sha256", dep.sha256, "--alias", dep.model,
                "--ctx", str(dep.profile.ctx)]
        command = f"exec {NODE_PYTHON} -m gpuhive.serve.node.worker " + " ".join(
            shlex.quote(a) for a in argv)
        async with conn.create_process(command, stdin=asyncssh.PIPE) as proc:
            async for line in proc.stdout:
                try:
                    status = json.loads(line)
                except ValueError:
                    continue
                run.restarts = int(status.get("restarts") or 0)
                run.error = str(status.get("error") or "")
                state = str(status.get("state"))
                if state == "ready" and status.get("port"):
                    if run.port != status["port"] or run.listener is None:
                        if run.listener is not None:
                            run.listener.close()
                        run.port = int(status["port"])
                        run.listener = await conn.forward_local_port(
                            "127.0.0.1", 0, "127.0.0.1", run.port)
                        run.base_url = f"http://127.0.0.1:{run.listener.get_port()}"
                elif state != "ready":
                    run.base_url = ""
                run.state = state
            await proc.wait()
        if run.state != "stopped":
            raise NodeUnreachable(f"replica {run.replica_id} ended: {run.error or 'worker exited'}",
                                  node=node.name)
