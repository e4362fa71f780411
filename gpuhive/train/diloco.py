"""DiLoCo: local steps, then one all-reduce of the pseudo-gradient (arXiv 2311.08105).

Every rank trains its own copy of the model with the inner optimizer (AdamW in the paper)
for H steps. Then, in one outer step::

    delta   = global - local                  # the pseudo-gradient, one flat buffer
    delta   = all_reduce(delta / N)           # bf16 on the wire by default (fp32 option)
    m       = mu * m + delta                  # outer Nesterov SGD (lr 0.7, mu 0.9)
    global  = global - lr * (delta + mu * m)
    local   = global

so the network carries one model-sized buffer every H steps instead of one every step.
The global weights and outer momentum are fp32 master copies, identical on every rank
(every rank applies the same update to the same all-reduced bytes).

Membership changes: a node that joins gets the global weights, the outer momentum and the
step counters from rank 0 (``sync_from``). A node that leaves mid-round makes the
all-reduce fail; the round is discarded (local weights go back to the last global ones)
and ``PeerLost`` is raised, so torchrun restarts the group, which resumes from the last
checkpoint of ``state_dict()`` (global weights + momentum) through ``checkpoint.resume``.

With H=1, outer lr 1 and no momentum, ``global = mean(local)``: plain parameter averaging.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gpuhive.train.errors import PeerLost, TrainConfigError
from gpuhive.train.meter import PSEUDO_GRADIENTS, SETUP, CommMeter
from gpuhive.train.world import comm_device, distributed_active

COMM_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class DiLoCo:
    """Wraps a model and its inner optimizer; call ``step()`` instead of ``optimizer.step()``."""

    def __init__(self, model: nn.Module, inner_optimizer: torch.optim.Optimizer, *,
                 sync_every: int = 50, outer_lr: float = 0.7, outer_momentum: float = 0.9,
                 nesterov: bool = True, comm_dtype: str = "bf16",
                 meter: CommMeter | None = None) -> None:
        if sync_every < 1:
            raise TrainConfigError(f"DiLoCo sync_every={sync_every} must be at least 1",
                                   hint="set GPUHIVE_SYNC_EVERY / --sync-every to H >= 1",
                                   key="sync_every")
        if comm_dtype not in COMM_DTYPES:
            raise TrainConfigError(f"DiLoCo comm_dtype={comm_dtype!r} is not one of "
                                   f"{'|'.join(COMM_DTYPES)}",
                                   hint="use bf16 (default) or fp32", key="comm_dtype")
        self.model = model
        self.inner_optimizer = inner_optimizer
        self.sync_every = sync_every
        self.outer_lr = outer_lr
        self.outer_momentum = outer_momentum
        self.nesterov = nesterov
        self.comm_dtype = COMM_DTYPES[comm_dtype]
        self.meter = meter if meter is not None else CommMeter()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.global_weights = self._flat_local()
        self.momentum = torch.zeros_like(self.global_weights)
        self.inner_steps = 0          # inner steps taken in total (the training step)
        self.rounds = 0               # outer steps done
        self.synced_at = 0            # inner_steps at the last outer step

    @property
    def pending(self) -> int:
        """Inner steps since the last outer step (0: local weights are the global ones)."""
        return self.inner_steps - self.synced_at

    def step(self) -> bool:
        """One inner optimizer step; every ``sync_every`` steps also the outer step.
        Returns True when the weights were synchronized (identical on all ranks now)."""
        self.inner_optimizer.step()
        self.inner_steps += 1
        if self.inner_steps % self.sync_every == 0:
            self.sync()
            return True
        return False

    @torch.no_grad()
    def sync(self) -> None:
        """The outer step, now. Collective: every rank must call it."""
        delta = self.global_weights - self._flat_local()
        world = dist.get_world_size() if distributed_active() else 1
        if world > 1:
            payload = (delta / world).to(comm_device(), self.comm_dtype)
            self.meter.add(PSEUDO_GRADIENTS, payload.numel() * payload.element_size())
            try:
                dist.all_reduce(payload)
            except (RuntimeError, ConnectionError) as exc:  # DistBackendError is a RuntimeError
                self._load_global_into_model()
                raise PeerLost(
                    f"the pseudo-gradient all-reduce of round {self.rounds + 1} failed: {exc}",
                    hint="a peer left; the round is discarded and torchrun restarts the group "
                         "from the last checkpoint", round=self.rounds + 1) from exc
            delta = payload.to(self.global_weights.device, torch.float32)
        self._outer_update(delta)
        self.rounds += 1
        self.synced_at = self.inner_steps
        self._load_global_into_model()

    @torch.no_grad()
    def adopt_local(self, inner_steps: int = 0) -> None:
        """Start over from the model's current weights (e.g. a checkpoint written in DDP
        mode): global := local, no momentum, counters at ``inner_steps``."""
        self.global_weights.copy_(self._flat_local())
        self.momentum.zero_()
        self.inner_steps = self.synced_at = inner_steps
        self.rounds = inner_steps // self.sync_every

    def finish(self) -> bool:
        """A last outer step if inner steps are pending, so all ranks end identical."""
        if self.pending:
            self.sync()
            return True
        return False

    @torch.no_grad()
    def sync_from(self, src: int = 0) -> None:
        """Take global weights, outer momentum and counters from rank ``src`` (a joining
        node's catch-up, also after a restart). Collective; local weights := global."""
        if distributed_active() and dist.get_world_size() > 1:
            device = comm_device()
            packed = torch.cat([self.global_weights, self.momentum]).to(device)
            counters = torch.tensor([self.inner_steps, self.rounds, self.synced_at],
                                    dtype=torch.int64, device=device)
            self.meter.add(SETUP, packed.numel() * packed.element_size()
                           + counters.numel() * counters.element_size())
            dist.broadcast(packed, src)
            dist.broadcast(counters, src)
            n = self.global_weights.numel()
            self.global_weights.copy_(packed[:n])
            self.momentum.copy_(packed[n:])
            self.inner_steps, self.rounds, self.synced_at = (int(x) for x in counters.tolist())
        self._load_global_into_model()

    def state_dict(self) -> dict[str, Any]:
        """Global weights and outer momentum (the model's local weights are not needed:
        after loading, local = global)."""
        return {"global_weights": self.global_weights.detach().cpu().clone(),
                "momentum": self.momentum.detach().cpu().clone(),
                "inner_steps": self.inner_steps, "rounds": self.rounds,
                "synced_at": self.synced_at, "sync_every": self.sync_every}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        weights, momentum = state["global_weights"], state["momentum"]
        if weights.numel() != self.global_weights.numel():
            raise TrainConfigError(
                f"DiLoCo state holds {weights.numel()} weights, the model has "
                f"{self.global_weights.numel()}",
                hint="the checkpoint belongs to another model; use another checkpoint dir",
                key="global_weights")
        self.global_weights.copy_(weights)
        self.momentum.copy_(momentum)
        self.inner_steps = int(state["inner_steps"])
        self.rounds = int(state["rounds"])
        self.synced_at = int(state.get("synced_at", self.inner_steps))
        self._load_global_into_model()

    def _outer_update(self, delta: torch.Tensor) -> None:
        """torch.optim.SGD's momentum/Nesterov rule on the flat master copy."""
        mu = self.outer_momentum
        if mu:
            self.momentum.mul_(mu).add_(delta)
            step = delta.add(self.momentum, alpha=mu) if self.nesterov else self.momentum
        else:
            step = delta
        self.global_weights.add_(step, alpha=-self.outer_lr)

    def _flat_local(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1).to(torch.float32) for p in self.params])

    def _load_global_into_model(self) -> None:
        offset = 0
        with torch.no_grad():
            for p in self.params:
                n = p.numel()
                p.copy_(self.global_weights[offset:offset + n].view_as(p))
                offset += n
