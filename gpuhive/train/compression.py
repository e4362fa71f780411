"""Wrap a model for the chosen mode: DDP with a communication hook, or DiLoCo.

    ddp    + none       torch's allreduce hook (fp32 buckets)
    ddp    + bf16/fp16  torch's bf16/fp16 compress hooks (half the bytes)
    ddp    + powersgd   torch's PowerSGD hook (low-rank P and Q, error feedback)
    diloco + none       fp32 pseudo-gradient every H steps
    diloco + bf16/fp16  bf16/fp16 pseudo-gradient every H steps (bf16 is DiLoCo's default)

Every hook is torch's own (torch.distributed.algorithms.ddp_comm_hooks), wrapped only to
count the bytes it hands to all-reduce into a ``CommMeter``. ``wrap_model`` returns a
``Trainable``: the module to call, ``step()`` to use in place of ``optimizer.step()``, and
one ``state_dict`` for checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd
from torch.nn.parallel import DistributedDataParallel as DDP

from gpuhive.train.diloco import DiLoCo
from gpuhive.train.errors import TrainConfigError
from gpuhive.train.meter import CONTROL, GRADIENTS, SETUP, CommMeter
from gpuhive.train.world import Compress, Mode, comm_device, distributed_active, world_from_env

Hook = Callable[[Any, dist.GradBucket], torch.futures.Future[torch.Tensor]]


def comm_hook(compress: Compress, meter: CommMeter, *, powersgd_rank: int = 4,
              powersgd_start: int = 10) -> tuple[Any, Hook]:
    """(state, hook) for ``DDP.register_comm_hook``, counting bytes into ``meter``."""
    if compress is Compress.POWERSGD:
        state = psgd.PowerSGDState(process_group=None, matrix_approximation_rank=powersgd_rank,
                                   start_powerSGD_iter=max(2, powersgd_start))

        def powersgd(st: psgd.PowerSGDState, bucket: dist.GradBucket
                     ) -> torch.futures.Future[torch.Tensor]:
            buf = bucket.buffer()
            vanilla, before = st.iter < st.start_powerSGD_iter, st.total_numel_after_compression
            fut = psgd.powerSGD_hook(st, bucket)
            # Before start_powerSGD_iter the hook all-reduces the full bucket; after, its own
            # counter grows by exactly the elements it all-reduces, in three calls one after
            # the other (uncompressed tensors, P, Q).
            numel = buf.numel() if vanilla else st.total_numel_after_compression - before
            meter.add(GRADIENTS, numel * buf.element_size(), calls=1 if vanilla else 3)
            return fut

        return state, _annotated(powersgd)
    torch_hook, wire_bytes = {
        Compress.NONE: (default_hooks.allreduce_hook, None),
        Compress.BF16: (default_hooks.bf16_compress_hook, 2),
        Compress.FP16: (default_hooks.fp16_compress_hook, 2),
    }[compress]

    def counted(st: Any, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        buf = bucket.buffer()
        meter.add(GRADIENTS, buf.numel() * (wire_bytes or buf.element_size()))
        return torch_hook(st, bucket)

    return None, _annotated(counted)


def _annotated(hook: Hook) -> Hook:
    """DDP checks a hook's annotations against the real classes; under ``from __future__
    import annotations`` they are strings, so put the classes back."""
    hook.__annotations__ = {"state": object, "bucket": dist.GradBucket,
                            "return": torch.futures.Future[torch.Tensor]}
    return hook


@dataclass
class Trainable:
    """What the training loop needs, whatever the mode."""

    module: nn.Module                 # call this for the forward pass
    model: nn.Module                  # the bare model (state_dict, eval, generation)
    optimizer: torch.optim.Optimizer
    mode: Mode
    compress: Compress
    meter: CommMeter = field(default_factory=CommMeter)
    diloco: DiLoCo | None = None
    steps: int = 0                    # optimizer steps taken (restored from checkpoints)

    @property
    def synced(self) -> bool:
        """True when every rank holds the same weights right now."""
        return self.diloco is None or self.diloco.pending == 0

    def step(self) -> bool:
        """Use in place of ``optimizer.step()``; True when the weights are synced after it."""
        self.steps += 1
        if self.diloco is not None:
            return self.diloco.step()
        self.optimizer.step()
        return True

    def finish(self) -> None:
        """End of training: DiLoCo's last outer step, so all ranks end identical."""
        if self.diloco is not None:
            self.diloco.finish()

    def sync_from(self, src: int = 0) -> None:
        """Make every rank's weights (and DiLoCo's outer state) equal to rank ``src``'s."""
        if self.diloco is not None:
            self.diloco.sync_from(src)
        elif distributed_active() and dist.get_world_size() > 1:
            with torch.no_grad():
                for t in self.model.state_dict().values():
                    self.meter.add(SETUP, t.numel() * t.element_size())
                    dist.broadcast(t, src)

    def agree(self, flag: bool, src: int = 0) -> bool:
        """Rank ``src``'s ``flag`` on every rank (e.g. "target loss reached: stop")."""
        if not (distributed_active() and dist.get_world_size() > 1):
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.uint8, device=comm_device())
        self.meter.add(CONTROL, 1)
        dist.broadcast(t, src)
        return bool(t.item())

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "steps": self.steps}
        if self.diloco is not None:
            state["diloco"] = self.diloco.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state.get("steps", 0))
        if self.diloco is None:
            return
        if "diloco" in state:
            self.diloco.load_state_dict(state["diloco"])
        else:  # written in DDP mode: its weights become DiLoCo's first global weights
            self.diloco.adopt_local(self.steps)


def wrap_model(model: nn.Module, optimizer: torch.optim.Optimizer, *,
               mode: Mode | str | None = None, compress: Compress | str | None = None,
               sync_every: int | None = None, outer_lr: float = 0.7,
               outer_momentum: float = 0.9, powersgd_rank: int = 4, powersgd_start: int = 10,
               meter: CommMeter | None = None) -> Trainable:
    """Wrap ``model`` (already on its device) for ``mode``; unset arguments come from the
    GPUHIVE_* environment. Compression ``None`` means the mode's default."""
    world = world_from_env()
    mode = Mode(mode) if mode is not None else world.mode
    if compress is None:
        compress = world.compress
    compress = Compress(compress) if compress is not None else (
        Compress.BF16 if mode is Mode.DILOCO else Compress.NONE)
    meter = meter if meter is not None else CommMeter()
    if mode is Mode.DILOCO:
        if compress is Compress.POWERSGD:
            raise TrainConfigError(
                "PowerSGD compresses DDP gradients; DiLoCo sends one pseudo-gradient per round",
                hint="use --compress bf16 (default), fp16 or none with --mode diloco",
                key="compress")
        dtype = "fp32" if compress is Compress.NONE else compress.value
        diloco = DiLoCo(model, optimizer, sync_every=sync_every or world.sync_every,
                        outer_lr=outer_lr, outer_momentum=outer_momentum, comm_dtype=dtype,
                        meter=meter)
        return Trainable(model, model, optimizer, mode, compress, meter, diloco)
    if not distributed_active():
        return Trainable(model, model, optimizer, mode, compress, meter)
    device = next(model.parameters()).device
    for t in [*model.parameters(), *model.buffers()]:  # DDP's initial broadcast from rank 0
        meter.add(SETUP, t.numel() * t.element_size())
    kwargs: dict[str, Any] = {}
    if compress is Compress.POWERSGD and dist.get_backend() == "gloo":
        # The PowerSGD hook starts its P and Q all-reduces from future callbacks; with several
        # buckets in flight, gloo ranks can issue them in different orders (a collective
        # mismatch that aborts the job). One bucket for the whole model keeps them in order.
        nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
        kwargs["bucket_cap_mb"] = max(25, nbytes // (1 << 20) + 1)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None, **kwargs)
    state, hook = comm_hook(compress, meter, powersgd_rank=powersgd_rank,
                            powersgd_start=powersgd_start)
    ddp.register_comm_hook(state, hook)
    return Trainable(ddp, model, optimizer, mode, compress, meter)
