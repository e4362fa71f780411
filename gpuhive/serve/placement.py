"""How many replicas of a model go where: the decision behind `gpuhive serve MODEL -r N`.

Pure: the replicas that exist, the nodes the ranking found eligible (best first) and the
ones it excluded (with a reason) come in; a ``ScalePlan`` comes out. One replica per node.

* Fewer live replicas than wanted: start on the best eligible nodes that hold none yet. When
  there are not enough of them, the plan says how many stay unplaced and why each other node
  cannot take one ("2 of 3 placed (friend3: …)").
* More than wanted: stop the surplus, least healthy first (not ready, then lower
  reliability), then the most loaded (requests in flight), so the best ones keep serving.
* Replicas that already ended (failed, stopped) are forgotten either way; their nodes may
  get a fresh one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

ENDED = frozenset({"failed", "stopped"})


@dataclass(frozen=True)
class ReplicaInfo:
    """What the plan needs to know of one existing replica."""

    replica_id: str
    node: str
    state: str
    reliability: float = 0.0
    in_flight: int = 0


@dataclass(frozen=True)
class Unfit:
    """A node that cannot take another replica, and why."""

    node: str
    reason: str


@dataclass(frozen=True)
class ScalePlan:
    model: str
    want: int
    before: int  # live replicas before the plan
    keep: tuple[str, ...] = ()  # replica ids
    start_on: tuple[str, ...] = ()  # node names, best first
    stop: tuple[str, ...] = ()  # replica ids, the first to go first
    forget: tuple[str, ...] = ()  # replica ids that had already ended
    unfit: tuple[Unfit, ...] = field(default=())  # only when some stay unplaced

    @property
    def placed(self) -> int:
        return len(self.keep) + len(self.start_on)

    @property
    def unplaced(self) -> int:
        return self.want - self.placed

    def summary(self, stopped_nodes: Sequence[str] = ()) -> str:
        """One line for the owner: what was placed, started or stopped, and why not all."""
        if self.unplaced > 0:
            return f"{self.placed} of {self.want} placed ({self.why_not()})"
        if self.stop:
            names = ", ".join(stopped_nodes) or ", ".join(self.stop)
            return f"scaled {self.before} → {self.want}: stopped {names}"
        if self.start_on and self.before:
            return (f"scaled {self.before} → {self.want}: started on "
                    f"{', '.join(self.start_on)}")
        if self.start_on:
            return f"{self.want} of {self.want} placed on {', '.join(self.start_on)}"
        return f"already {self.want} replica(s): nothing to change"

    def why_not(self) -> str:
        if not self.unfit:
            return "no other node in the hive"
        return "; ".join(f"{u.node}: {u.reason}" for u in self.unfit)


def _first_to_go(r: ReplicaInfo) -> tuple[bool, float, int, str]:
    # ready ones last; among equals the less reliable (in ranking's 0.1 steps), then the
    # busier, go first
    return (r.state == "ready", round(r.reliability, 1), -r.in_flight, r.replica_id)


def plan_scale(model: str, want: int, replicas: Sequence[ReplicaInfo], eligible: Sequence[str],
               excluded: Sequence[Unfit]) -> ScalePlan:
    """Reach ``want`` live replicas of ``model`` (one per node) from ``replicas``.

    ``eligible``: nodes the ranking says can hold the model, best first. ``excluded``: the
    others, each with the ranking's first reason.
    """
    if want < 1:
        raise ValueError(f"want must be at least 1, not {want}")
    live = [r for r in replicas if r.state not in ENDED]
    forget = tuple(r.replica_id for r in replicas if r.state in ENDED)
    if len(live) >= want:
        doomed = sorted(live, key=_first_to_go)[:len(live) - want]
        gone = {r.replica_id for r in doomed}
        return ScalePlan(model, want, len(live),
                         keep=tuple(r.replica_id for r in live if r.replica_id not in gone),
                         stop=tuple(r.replica_id for r in doomed), forget=forget)
    holding = {r.node for r in live}
    free = [n for n in eligible if n not in holding]
    start_on = tuple(free[:want - len(live)])
    plan = ScalePlan(model, want, len(live), keep=tuple(r.replica_id for r in live),
                     start_on=start_on, forget=forget)
    if plan.unplaced <= 0:
        return plan
    serving = sorted(holding | set(start_on))
    unfit = [u for u in excluded if u.node not in holding]
    if serving:
        unfit.append(Unfit(_names(serving), "already serving it (one replica per node)"))
    return ScalePlan(model, want, len(live), keep=plan.keep, start_on=start_on, forget=forget,
                     unfit=tuple(unfit))


def _names(nodes: Sequence[str]) -> str:
    return nodes[0] if len(nodes) == 1 else ", ".join(nodes[:-1]) + " and " + nodes[-1]
