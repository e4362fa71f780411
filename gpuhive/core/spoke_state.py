"""A node's WireGuard spoke as its agent last reported it, in the words the scheduler,
`gpuhive nodes` and the dashboard share. Pure.

The agent sends its spoke's report in every heartbeat (``agent/overlay_spoke.report``);
the controller keeps it in ``node.overlay.status`` (a ``SpokeReport``) next to the address
it assigned at enroll (``node.overlay.ip``) and forgets it when the link closes.
``SpokeView`` is the judgement as `nodes --json` (``overlay_state``) and the CLI read it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpuhive.core import fact_codec as codec
from gpuhive.core.node_facts import OverlayFacts


class SpokeState(str, enum.Enum):
    UP = "up"
    DOWN = "down"  # the agent tried and failed; ``error`` says why
    WAITING = "waiting"  # reported, not up, no error: the agent has no overlay config yet
    UNKNOWN = "unknown"  # no report: not connected, or no heartbeat since it connected
    NO_ADDRESS = "no address"  # the overlay runs but this node has no overlay address
    OFF = "off"  # the controller runs no overlay hub


@dataclass(frozen=True, slots=True)
class Spoke:
    ip: str | None = None  # the overlay address assigned at enroll
    reported: bool = False
    up: bool = False
    error: str = ""
    iface: str | None = None
    direct: int = 0  # other spokes this one reaches without the hub

    @classmethod
    def of(cls, overlay: OverlayFacts | None) -> Spoke:
        if overlay is None:
            return cls()
        ip, status = overlay.ip or None, overlay.status
        if status is None:
            return cls(ip=ip)
        return cls(ip=ip, reported=True, up=status.up, error=status.error,
                   iface=status.iface or None, direct=status.direct)

    @property
    def usable(self) -> bool:
        """Whether a job's ranks can use the overlay on this node."""
        return self.up and self.ip is not None

    def state(self, overlay_on: bool) -> SpokeState:
        if not overlay_on:
            return SpokeState.OFF
        if self.ip is None:
            return SpokeState.NO_ADDRESS
        if not self.reported:
            return SpokeState.UNKNOWN
        if self.up:
            return SpokeState.UP
        return SpokeState.DOWN if self.error else SpokeState.WAITING

    def problem(self) -> str:
        """Why the overlay cannot carry a job's traffic on this node ("" when it can),
        assuming the controller runs the hub."""
        state = self.state(overlay_on=True)
        if state is SpokeState.UP:
            return ""
        return _PROBLEMS[state].format(error=self.error)

    def view(self, overlay_on: bool) -> SpokeView:
        return SpokeView(state=self.state(overlay_on).value, ip=self.ip, iface=self.iface,
                         error=self.error, direct=self.direct,
                         problem=self.problem() if overlay_on else "")

    def to_dict(self, overlay_on: bool) -> dict[str, Any]:
        return self.view(overlay_on).to_dict()


@dataclass(frozen=True, slots=True, kw_only=True)
class SpokeView:
    """A node's spoke as the controller judged it (``overlay_state``). ``state`` is a
    ``SpokeState`` value, kept as text: a newer controller may send one this CLI lacks."""

    state: str = SpokeState.UNKNOWN.value
    ip: str | None = None
    iface: str | None = None
    error: str = ""
    direct: int = 0
    problem: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SpokeView:
        values, _present, _extra = codec.read(d, _VIEW_READERS)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        # a judgement, not stored facts: always every key
        return {"state": self.state, "ip": self.ip, "iface": self.iface, "error": self.error,
                "direct": self.direct, "problem": self.problem}


def _count(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise codec.WrongType
    return v


_VIEW_READERS: dict[str, codec.Reader] = {
    "state": codec.text, "ip": codec.opt_text, "iface": codec.opt_text,
    "error": codec.text, "direct": _count, "problem": codec.text,
}


_PROBLEMS = {
    SpokeState.DOWN: "its WireGuard spoke is down: {error}",
    SpokeState.WAITING: "its WireGuard spoke is not up yet (the agent has not brought it "
                        "up since it connected)",
    SpokeState.UNKNOWN: "its WireGuard spoke has not reported (the agent is not connected)",
    SpokeState.NO_ADDRESS: "it has no overlay address (an ssh node, or an agent enrolled "
                           "without a WireGuard key)",
}
