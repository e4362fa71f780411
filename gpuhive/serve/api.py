"""What the gateway needs from the rest of gpuhive: replicas, and how to continue a chat.

The controller implements ``ReplicaSource``. A replica is an engine on a node bound to that
node's 127.0.0.1; the controller reaches it through an SSH local forward and hands the
gateway the forward's local ``base_url`` (``http://127.0.0.1:NNNNN``). The gateway never
learns more than a ``Replica``: it does not know about SSH, nodes' states or placement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Replica:
    replica_id: str
    model: str  # the name clients ask for (catalog name)
    node: str
    base_url: str  # no trailing slash; ".../v1/..." paths are appended
    reliability: float = 0.5  # the node's earned score in [0, 1] (core.reliability)


@dataclass(frozen=True)
class ModelProfile:
    """What the gateway knows about a model beyond its replicas.

    ``chat_template`` (Jinja, as in ``tokenizer.chat_template``) with ``bos_token`` and
    ``eos_token`` lets the gateway continue a chat stream on another replica as a plain
    completion of "rendered prompt + text sent"; without it a chat stream that loses its
    replica mid-way ends with an error event. ``embeddings`` says whether the replicas were
    started with embeddings on. Build it with ``gpuhive.serve.models.profiles.model_profile``.
    """

    name: str
    ctx: int | None = None
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""
    embeddings: bool = False


class ReplicaSource(Protocol):
    """What the controller gives the gateway. Both are called on every request: keep them
    cheap in-memory reads."""

    def replicas(self) -> Sequence[Replica]:
        """Replicas the controller believes are ready now."""
        ...

    def profile(self, model: str) -> ModelProfile | None:
        """The model's profile, or None when the model is not served (unknown: 404)."""
        ...


@dataclass
class StaticReplicas:
    """A ReplicaSource held in memory (tests, benchmarks, one local engine). Models with
    replicas but no profile get a bare one."""

    items: list[Replica] = field(default_factory=list)
    profiles: dict[str, ModelProfile] = field(default_factory=dict)

    def replicas(self) -> Sequence[Replica]:
        return self.items

    def profile(self, model: str) -> ModelProfile | None:
        found = self.profiles.get(model)
        if found is None and any(r.model == model for r in self.items):
            return ModelProfile(model)
        return found
