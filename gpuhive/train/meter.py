"""Count the bytes each rank hands to collectives, by kind.

The count is the payload this rank puts into each all-reduce or broadcast (tensor elements
times element size), counted where the helpers call torch.distributed, so it is exact for
what the training loop asks of the network. What a backend then puts on the wire depends on
its algorithm: a ring all-reduce sends about 2·(N-1)/N times the payload per rank.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Kinds used by gpuhive.train.
GRADIENTS = "gradients"                 # DDP buckets, after compression
PSEUDO_GRADIENTS = "pseudo_gradients"   # DiLoCo outer step
SETUP = "setup"                         # initial broadcast of weights / outer state
CONTROL = "control"                     # small flags (stop at target loss)
TRAINING_KINDS = (GRADIENTS, PSEUDO_GRADIENTS)


@dataclass
class CommMeter:
    bytes: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, nbytes: int, calls: int = 1) -> None:
        self.bytes[kind] += nbytes
        self.calls[kind] += calls

    @property
    def training_bytes(self) -> int:
        """Bytes of gradient or pseudo-gradient exchange: what scales with training."""
        return sum(self.bytes[k] for k in TRAINING_KINDS)

    @property
    def training_calls(self) -> int:
        """All-reduce calls for gradients or pseudo-gradients (each pays a round trip)."""
        return sum(self.calls[k] for k in TRAINING_KINDS)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    def ring_wire_bytes(self, world_size: int) -> float:
        """Bytes a ring all-reduce would send per rank for the training payload."""
        if world_size <= 1:
            return 0.0
        return self.training_bytes * 2 * (world_size - 1) / world_size
