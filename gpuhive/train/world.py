"""Who am I in the job: rank and world from torchrun's environment plus gpuhive's own.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
MASTER_PORT and TORCHELASTIC_RESTART_COUNT for every worker; gpuhive's launcher adds the
GPUHIVE_* variables below. Without torchrun (``python examples/llm.py``) the script is
rank 0 of a world of one and no process group is started, so every helper here also works
single-process.

Parsing is pure (``world_from_env`` takes the mapping) and imports no torch, so the
launcher can share the variable names; ``init_distributed`` is the only part with effects.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from gpuhive.train.errors import DistributedError, TrainConfigError

if TYPE_CHECKING:
    import torch

# What gpuhive's launcher sets for every worker (torchrun's own variables are read as well).
ENV_JOB_ID = "GPUHIVE_JOB_ID"
ENV_CHECKPOINT_DIR = "GPUHIVE_CHECKPOINT_DIR"
ENV_NODE_NAME = "GPUHIVE_NODE_NAME"
ENV_MODE = "GPUHIVE_MODE"
ENV_SYNC_EVERY = "GPUHIVE_SYNC_EVERY"
ENV_COMPRESS = "GPUHIVE_COMPRESS"
ENV_BACKEND = "GPUHIVE_BACKEND"
GPUHIVE_ENV = (ENV_JOB_ID, ENV_CHECKPOINT_DIR, ENV_NODE_NAME, ENV_MODE, ENV_SYNC_EVERY,
               ENV_COMPRESS, ENV_BACKEND)
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT")

DEFAULT_SYNC_EVERY = 50

E = TypeVar("E", bound=Enum)
D = TypeVar("D")


class Mode(str, Enum):
    DDP = "ddp"          # gradients all-reduced every step
    DILOCO = "diloco"    # local steps, pseudo-gradient all-reduced every H steps


class Compress(str, Enum):
    NONE = "none"
    BF16 = "bf16"
    FP16 = "fp16"
    POWERSGD = "powersgd"


class Backend(str, Enum):
    AUTO = "auto"
    NCCL = "nccl"
    GLOO = "gloo"


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node_rank: int = 0                  # torchrun's GROUP_RANK
    master_addr: str = ""
    master_port: int = 0
    restart_count: int = 0              # > 0 after an elastic restart
    launched: bool = False              # started by torchrun (a process group is expected)
    job_id: str = "local"
    checkpoint_dir: Path = Path("checkpoints/local")
    node_name: str = ""
    mode: Mode = Mode.DDP
    sync_every: int = DEFAULT_SYNC_EVERY
    compress: Compress | None = None    # None: the mode's default (ddp: none, diloco: bf16)
    backend: Backend = Backend.AUTO

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.launched or self.world_size > 1

    @property
    def effective_compress(self) -> Compress:
        if self.compress is not None:
            return self.compress
        return Compress.BF16 if self.mode is Mode.DILOCO else Compress.NONE


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """Parse torchrun's and gpuhive's variables; errors name the offending key."""
    env = os.environ if env is None else env
    launched = "RANK" in env or "WORLD_SIZE" in env
    if launched:
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
                   if not env.get(k)]
        if missing:
            raise TrainConfigError(
                f"torchrun environment incomplete: {', '.join(missing)} not set",
                hint="start the script with torchrun (or `gpuhive train`), or unset RANK and "
                     "WORLD_SIZE to run it as a single process", keys=missing)
    world_size = _int(env, "WORLD_SIZE", 1, minimum=1)
    rank = _int(env, "RANK", 0, minimum=0)
    if rank >= world_size:
        raise TrainConfigError(f"RANK={rank} is not below WORLD_SIZE={world_size}",
                               hint="check the launcher's torchrun arguments", key="RANK")
    job_id = env.get(ENV_JOB_ID) or "local"
    return World(
        rank=rank,
        world_size=world_size,
        local_rank=_int(env, "LOCAL_RANK", 0, minimum=0),
        local_world_size=_int(env, "LOCAL_WORLD_SIZE", 1, minimum=1),
        node_rank=_int(env, "GROUP_RANK", 0, minimum=0),
        master_addr=env.get("MASTER_ADDR", ""),
        master_port=_int(env, "MASTER_PORT", 0, minimum=0),
        restart_count=_int(env, "TORCHELASTIC_RESTART_COUNT", 0, minimum=0),
        launched=launched,
        job_id=job_id,
        checkpoint_dir=Path(env.get(ENV_CHECKPOINT_DIR) or Path("checkpoints") / job_id),
        node_name=env.get(ENV_NODE_NAME) or socket.gethostname(),
        mode=_enum(env, ENV_MODE, Mode, Mode.DDP),
        sync_every=_int(env, ENV_SYNC_EVERY, DEFAULT_SYNC_EVERY, minimum=1),
        compress=_enum(env, ENV_COMPRESS, Compress, None),
        backend=_enum(env, ENV_BACKEND, Backend, Backend.AUTO),
    )


def choose_backend(requested: Backend, *, cuda_devices: int, local_world_size: int) -> Backend:
    """NCCL when asked or when every local rank can have its own GPU; gloo otherwise."""
    if requested is not Backend.AUTO:
        return requested
    return Backend.NCCL if cuda_devices >= local_world_size > 0 else Backend.GLOO


def init_distributed(world: World | None = None, *, timeout_s: float = 600.0) -> World:
    """Start the process group (when launched by torchrun) and return the world with the
    backend resolved. Idempotent; a plain ``python script.py`` starts nothing."""
    import torch
    import torch.distributed as dist

    world = world or world_from_env()
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    backend = choose_backend(world.backend, cuda_devices=cuda,
                             local_world_size=world.local_world_size)
    world = replace(world, backend=backend)
    if backend is Backend.NCCL:
        if cuda == 0:
            raise DistributedError("GPUHIVE_BACKEND=nccl but this node has no CUDA device",
                                   hint="use GPUHIVE_BACKEND=gloo or auto", node=world.node_name)
        torch.cuda.set_device(world.local_rank % cuda)
    if not world.distributed or dist.is_initialized():
        return world
    try:
        dist.init_process_group(backend.value, rank=world.rank, world_size=world.world_size,
                                timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(
            f"could not start the {backend.value} process group as rank {world.rank} of "
            f"{world.world_size} via {world.master_addr}:{world.master_port}: {exc}",
            hint="check that every node reaches the rendezvous address over the overlay and "
                 "that GLOO_SOCKET_IFNAME/NCCL_SOCKET_IFNAME name the overlay interface",
            rank=world.rank, master=f"{world.master_addr}:{world.master_port}") from exc
    return world


def device_for(world: World) -> torch.device:
    """The device this rank computes on: its own GPU when there is one, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", world.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def distributed_active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def comm_device() -> torch.device:
    """Where tensors for collectives must live: the current GPU under NCCL, else the CPU."""
    import torch
    import torch.distributed as dist

    if distributed_active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shutdown() -> None:
    import torch.distributed as dist

    if distributed_active():
        dist.destroy_process_group()


def _int(env: Mapping[str, str], key: str, default: int, *, minimum: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise TrainConfigError(f"{key}={raw!r} is not an integer",
                               hint=f"set {key} to a whole number", key=key) from None
    if value < minimum:
        raise TrainConfigError(f"{key}={value} is below {minimum}",
                               hint=f"set {key} to at least {minimum}", key=key)
    return value


def _enum(env: Mapping[str, str], key: str, cls: type[E], default: D) -> E | D:
    raw = env.get(key)
    if not raw:
        return default
    try:
        return cls(raw.strip().lower())
    except ValueError:
        choices = "|".join(str(m.value) for m in cls)
        raise TrainConfigError(f"{key}={raw!r} is not one of {choices}",
                               hint=f"set {key} to one of {choices}", key=key) from None
