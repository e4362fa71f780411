"""Checkpoints without shared storage.

Rank 0 writes ``ckpt-<step>.pt`` into GPUHIVE_CHECKPOINT_DIR on its own node, atomically
(temp file, fsync, rename), so a crash never leaves a half-written checkpoint under the
real name. Nothing is copied to other nodes while training runs.

At start, and again after every elastic restart (when the group may now be made of other
nodes, and rank 0 may be somewhere else), ``resume`` is collective:

1. every rank offers what its own directory holds: (step, sha256, node);
2. ``plan_resume`` (pure) picks the newest step, the lowest rank holding it as the source,
   and every rank whose copy differs as a receiver;
3. the source broadcasts the file's bytes in chunks (plain uint8 tensors, so gloo works as
   well as NCCL); receivers check the sha256, store the file in their own directory and
   load it. Received bytes are unpickled with ``weights_only=True``.

All ranks reach the same decision from the same gathered offers, so they agree on the
step to resume from without any further round.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from gpuhive.train.errors import CheckpointError
from gpuhive.train.world import comm_device, distributed_active, world_from_env

FORMAT = 1
CHUNK_BYTES = 8 << 20
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
_TEMP = re.compile(r"^\.ckpt-\d+\.pt\.tmp-(\d+)-[0-9a-f]+$")


@dataclass(frozen=True)
class Offer:
    """What one rank's checkpoint directory holds (step -1: nothing)."""

    rank: int
    node: str
    step: int = -1
    digest: str = ""


@dataclass(frozen=True)
class Plan:
    """Which checkpoint the group resumes from and who must receive it."""

    step: int
    source_rank: int
    source_node: str
    digest: str
    receivers: tuple[int, ...]


@dataclass(frozen=True)
class Resumed:
    step: int                          # the step to resume from (0: start fresh)
    state: dict[str, Any] | None       # what was saved, None when starting fresh
    source_node: str = ""
    received: bool = False             # this rank got the bytes from a peer


def plan_resume(offers: Sequence[Offer]) -> Plan | None:
    """Newest step wins; among equals the lowest rank is the source. Pure."""
    held = [o for o in offers if o.step >= 0]
    if not held:
        return None
    best = min(held, key=lambda o: (-o.step, o.rank))
    receivers = tuple(sorted(o.rank for o in offers
                             if (o.step, o.digest) != (best.step, best.digest)))
    return Plan(best.step, best.rank, best.node, best.digest, receivers)


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"ckpt-{step:08d}.pt"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of every finished checkpoint, oldest first."""
    try:
        entries = list(Path(directory).iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CheckpointError(f"cannot list checkpoint directory {directory}: {exc}",
                              hint="check GPUHIVE_CHECKPOINT_DIR and its permissions",
                              path=str(directory)) from exc
    found = [(int(m.group(1)), p) for p in entries if (m := _NAME.match(p.name))]
    return sorted(found)


def serialize(step: int, state: Mapping[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "step": step, "state": dict(state)}, buf)
    return buf.getvalue()


def deserialize(data: bytes, *, map_location: Any = "cpu", origin: str = "") -> dict[str, Any]:
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad file
        raise CheckpointError(f"checkpoint {origin} is not readable: {exc}",
                              hint="delete the file; the next newest checkpoint is used",
                              path=origin) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {origin} was not written by gpuhive.train",
                              hint="delete the file or point GPUHIVE_CHECKPOINT_DIR elsewhere",
                              path=origin)
    return dict(payload["state"])


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CheckpointError(f"cannot write checkpoint {path}: {exc}",
                              hint="check free space and permissions of GPUHIVE_CHECKPOINT_DIR",
                              path=str(path)) from exc


def prune(directory: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints; drop temp files other processes left behind."""
    for _, old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        with contextlib.suppress(OSError):
            old.unlink()
    with contextlib.suppress(OSError):
        for p in Path(directory).iterdir():
            m = _TEMP.match(p.name)
            if m and int(m.group(1)) != os.getpid():
                with contextlib.suppress(OSError):
                    p.unlink()


def save(state: Mapping[str, Any], step: int, directory: Path | None = None, *,
         rank: int | None = None, keep: int = 2) -> Path | None:
    """Rank 0 writes the checkpoint of ``step``; other ranks do nothing. Not collective."""
    if rank is None:
        rank = dist.get_rank() if distributed_active() else 0
    if rank != 0:
        return None
    directory = Path(directory) if directory is not None else world_from_env().checkpoint_dir
    path = checkpoint_path(directory, step)
    write_atomic(path, serialize(step, state))
    prune(directory, keep)
    return path


def resume(directory: Path | None = None, *, node: str | None = None, map_location: Any = "cpu",
           keep: int = 2, chunk_bytes: int = CHUNK_BYTES) -> Resumed:
    """Agree on the newest checkpoint among all ranks' directories, fetch it where missing,
    return it. Collective when a process group is up: every rank must call it."""
    world = world_from_env()
    directory = Path(directory) if directory is not None else world.checkpoint_dir
    node = node or world.node_name
    rank = dist.get_rank() if distributed_active() else 0

    local = list_checkpoints(directory)
    data = local[-1][1].read_bytes() if local else b""
    mine = Offer(rank, node, local[-1][0], hashlib.sha256(data).hexdigest()) if local \
        else Offer(rank, node)
    offers: list[Any] = [mine]
    if distributed_active():
        offers = [None] * dist.get_world_size()
        dist.all_gather_object(offers, mine)
    plan = plan_resume(offers)
    if plan is None:
        return Resumed(0, None)

    received = False
    if plan.receivers:
        got = _broadcast_bytes(data if rank == plan.source_rank else b"", plan.source_rank,
                               chunk_bytes)
        if rank in plan.receivers:
            if hashlib.sha256(got).hexdigest() != plan.digest:
                raise CheckpointError(
                    f"checkpoint of step {plan.step} from {plan.source_node} arrived corrupted",
                    hint="restart the job; if it repeats, check the overlay link",
                    step=plan.step, source=plan.source_node)
            data, received = got, True
            write_atomic(checkpoint_path(directory, plan.step), data)
            prune(directory, keep)
    origin = f"{plan.source_node}:{checkpoint_path(directory, plan.step).name}"
    state = deserialize(data, map_location=map_location, origin=origin)
    return Resumed(plan.step, state, plan.source_node, received)


def _broadcast_bytes(data: bytes, src: int, chunk_bytes: int) -> bytes:
    """Send ``data`` from rank ``src`` to every rank, ``chunk_bytes`` at a time."""
    device = comm_device()
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, src)
    total = int(size.item())
    out = bytearray(data) if dist.get_rank() == src else bytearray(total)
    if total == 0:
        return bytes(out)
    view = torch.frombuffer(out, dtype=torch.uint8)
    for off in range(0, total, chunk_bytes):
        n = min(chunk_bytes, total - off)
        chunk = view[off:off + n].to(device, copy=True)
        dist.broadcast(chunk, src)
        view[off:off + n].copy_(chunk)
    return bytes(out)
