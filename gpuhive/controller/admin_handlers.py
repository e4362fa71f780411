"""The admin contract's methods bound to the controller's parts: one handler per request
class of `admin_api`, each getting the decoded request (typed) and an emit for its events.

``Request.handled_by`` is where mypy holds each handler to its request's fields and its
response type; `handler_table` refuses a method bound twice, bound without being in the
contract, or left unbound.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping

from gpuhive.controller import admin_api as api
from gpuhive.controller.admin_api import Emit, Handler, Json, JsonRows
from gpuhive.controller.jobs import JobSupervisor
from gpuhive.controller.node_ops import NodeOps
from gpuhive.controller.overlay_ops import OverlayOps
from gpuhive.controller.service import HiveService
from gpuhive.controller.serving import ServeManager
from gpuhive.serve.gateway.apikeys import ApiKeyStore


def handler_table(bound: Iterable[Handler],
                  contract: Mapping[str, type[api.Request[object]]] = api.METHODS,
                  ) -> dict[str, Handler]:
    table: dict[str, Handler] = {}
    for h in bound:
        if h.kind.method in table:
            raise ValueError(f"admin method {h.kind.method} is bound twice")
        if contract.get(h.kind.method) is not h.kind:
            raise ValueError(f"{h.kind.__name__} ({h.kind.method}) is not in the contract")
        table[h.kind.method] = h
    unbound = sorted(set(contract) - set(table))
    if unbound:
        raise ValueError(f"admin methods without a handler: {', '.join(unbound)}")
    return table


def job_values(spec: api.TrainSpec) -> dict[str, object]:
    """A submitted spec as the job.yaml mapping `JobSupervisor.submit` validates: unset
    keys stay unset, so the job spec applies (and checks) its own defaults."""
    values = {k: v for k, v in dataclasses.asdict(spec).items() if v is not None}
    if "args" in values:
        values["args"] = list(values["args"])
    return values


def controller_handlers(svc: HiveService, ops: NodeOps, jobs: JobSupervisor,
                        overlay: OverlayOps, serving: ServeManager,
                        keys: ApiKeyStore) -> dict[str, Handler]:
    async def status(req: api.Status, emit: Emit) -> Json:
        return svc.status()

    async def overview(req: api.Overview, emit: Emit) -> Json:
        return svc.overview()

    async def invite_create(req: api.InviteCreate, emit: Emit) -> Json:
        return svc.invite_create(req.name, req.ttl, req.uses)

    async def invite_list(req: api.InviteList, emit: Emit) -> JsonRows:
        return svc.invite_list()

    async def invite_revoke(req: api.InviteRevoke, emit: Emit) -> Json:
        return svc.invite_revoke(req.token, req.token_id)

    async def nodes_list(req: api.NodesList, emit: Emit) -> JsonRows:
        return svc.nodes_list(include_removed=req.include_removed)

    async def nodes_show(req: api.NodesShow, emit: Emit) -> Json:
        return svc.node_show(req.name)

    async def nodes_remove(req: api.NodesRemove, emit: Emit) -> Json:
        return await svc.node_remove(req.name)

    async def nodes_add(req: api.NodesAdd, emit: Emit) -> Json:
        return await svc.node_add(req.address, req.name)

    async def nodes_exec(req: api.NodesExec, emit: Emit) -> JsonRows:
        def sink(node: str, stream: str, line: str) -> None:
            emit({"event": "line", "node": node, "stream": stream, "line": line})
        return await svc.nodes_exec(req.target, list(req.argv), sink, fresh=req.fresh)

    async def nodes_rank(req: api.NodesRank, emit: Emit) -> Json:
        return ops.rank(req.gpus, req.min_vram_mib, req.purpose, req.precision, req.nodes,
                        req.backend)

    async def nodes_probe(req: api.NodesProbe, emit: Emit) -> JsonRows:
        return await ops.probe(req.target)

    async def nodes_bench(req: api.NodesBench, emit: Emit) -> JsonRows:
        return await ops.bench(req.target, req.gpu)

    async def jobs_submit(req: api.JobsSubmit, emit: Emit) -> Json:
        return jobs.submit(job_values(req.spec))

    async def jobs_list(req: api.JobsList, emit: Emit) -> JsonRows:
        return jobs.list_jobs()

    async def jobs_show(req: api.JobsShow, emit: Emit) -> Json:
        return jobs.show(req.job)

    async def jobs_cancel(req: api.JobsCancel, emit: Emit) -> Json:
        return await jobs.cancel(req.job)

    async def jobs_logs(req: api.JobsLogs, emit: Emit) -> Json:
        return await jobs.logs(req.job, req.follow, emit, tail=req.tail, node=req.node,
                               rank=req.rank)

    async def overlay_status(req: api.OverlayStatus, emit: Emit) -> Json:
        return await overlay.status()

    async def overlay_check(req: api.OverlayCheck, emit: Emit) -> Json:
        return await overlay.check(req.target, req.nbytes, progress=emit)

    async def serve_start(req: api.ServeStart, emit: Emit) -> Json:
        started = await serving.start(req.model, req.replicas, req.ctx)
        if req.wait:
            started["replicas"] = await serving.wait_ready(started["model"])
        return started

    async def serve_list(req: api.ServeList, emit: Emit) -> JsonRows:
        return serving.list_replicas()

    async def serve_stop(req: api.ServeStop, emit: Emit) -> Json:
        return await serving.stop(req.model)

    async def keys_create(req: api.KeysCreate, emit: Emit) -> Json:
        token, key = keys.create(req.name, now=time.time(), models=req.models or ("*",),
                                 rpm=req.rpm, tokens_per_day=req.tokens_per_day)
        return {**key.to_dict(), "token": token}

    async def keys_list(req: api.KeysList, emit: Emit) -> JsonRows:
        return [k.to_dict() for k in keys.list(include_revoked=True)]

    async def keys_revoke(req: api.KeysRevoke, emit: Emit) -> Json:
        return keys.revoke(req.key, now=time.time()).to_dict()

    return handler_table([
        api.Status.handled_by(status),
        api.Overview.handled_by(overview),
        api.InviteCreate.handled_by(invite_create),
        api.InviteList.handled_by(invite_list),
        api.InviteRevoke.handled_by(invite_revoke),
        api.NodesList.handled_by(nodes_list),
        api.NodesShow.handled_by(nodes_show),
        api.NodesRemove.handled_by(nodes_remove),
        api.NodesAdd.handled_by(nodes_add),
        api.NodesExec.handled_by(nodes_exec),
        api.NodesRank.handled_by(nodes_rank),
        api.NodesProbe.handled_by(nodes_probe),
        api.NodesBench.handled_by(nodes_bench),
        api.JobsSubmit.handled_by(jobs_submit),
        api.JobsList.handled_by(jobs_list),
        api.JobsShow.handled_by(jobs_show),
        api.JobsCancel.handled_by(jobs_cancel),
        api.JobsLogs.handled_by(jobs_logs),
        api.OverlayStatus.handled_by(overlay_status),
        api.OverlayCheck.handled_by(overlay_check),
        api.ServeStart.handled_by(serve_start),
        api.ServeList.handled_by(serve_list),
        api.ServeStop.handled_by(serve_stop),
        api.KeysCreate.handled_by(keys_create),
        api.KeysList.handled_by(keys_list),
        api.KeysRevoke.handled_by(keys_revoke),
    ])
