"""What an agent reports about its WireGuard spoke in each heartbeat (``overlay`` in the
message, ``agent/overlay_spoke.Spoke.report``), as the controller keeps it in the node's
overlay facts (``OverlayFacts.status``). Pure.

The report comes from a friend's machine: ``from_heartbeat`` keeps only known fields with
bounded sizes and well-formed values before anything is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpuhive.core import fact_codec as codec
from gpuhive.core.endpoints import is_address, valid_endpoint

MAX_PATHS = 256  # peers a spoke may report paths for
PATH_MODES = ("hub", "trying", "direct")


def _paths(v: Any) -> dict[str, str]:
    if not isinstance(v, Mapping) or not all(isinstance(k, str) and isinstance(m, str)
                                             for k, m in v.items()):
        raise codec.WrongType
    return dict(v)


@dataclass(frozen=True, kw_only=True)
class SpokeReport:
    up: bool = False
    iface: str | None = None
    error: str = ""  # why the spoke is not up, in the agent's words
    since: float | None = None  # when it came up
    lan: str | None = None  # the spoke's LAN address (same-router direct paths)
    endpoint: str | None = None  # host:port the friend declared others can dial
    paths: Mapping[str, str] = field(default_factory=dict)  # peer → hub | trying | direct
    present: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SpokeReport:
        values, present, extra = codec.read(d, _READERS)
        return cls(**values, present=present, extra=extra)

    @classmethod
    def from_heartbeat(cls, report: object) -> SpokeReport | None:
        """The report an agent sent, cleaned (None when it sent none). Every field is
        written when stored, as the controller always has."""
        if not isinstance(report, Mapping):
            return None
        iface, lan, endpoint = report.get("iface"), report.get("lan"), report.get("endpoint")
        since, paths = report.get("since"), report.get("paths")
        return cls.from_dict({
            "up": report.get("up") is True,
            "iface": iface if isinstance(iface, str) and len(iface) <= 15 else None,
            "error": str(report.get("error") or "")[:300],
            "since": since if isinstance(since, (int, float)) and not isinstance(since, bool)
            else None,
            "lan": lan if is_address(lan) else None,
            "endpoint": endpoint if isinstance(endpoint, str) and valid_endpoint(endpoint)
            else None,
            "paths": {str(k)[:63]: v for k, v in list(paths.items())[:MAX_PATHS]
                      if v in PATH_MODES} if isinstance(paths, Mapping) else {}})

    def to_dict(self) -> dict[str, Any]:
        return codec.write(self)

    @property
    def direct(self) -> int:
        """Other spokes this one reaches without the hub."""
        return sum(1 for mode in self.paths.values() if mode == "direct")


_READERS: dict[str, codec.Reader] = {
    "up": codec.flag, "iface": codec.opt_text, "error": codec.text,
    "since": codec.opt_number, "lan": codec.opt_text, "endpoint": codec.opt_text,
    "paths": _paths,
}
