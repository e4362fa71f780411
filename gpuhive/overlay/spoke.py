"""The spoke's direct-path loop: read ``wg show``, ask ``paths``, apply with ``wg set``. I/O.

The agent calls ``DirectPaths.tick`` every few seconds with the hub peer and the direct
candidates the controller sent (``direct.plan_direct``); everything else is decided in
``paths`` and applied by ``driver`` without touching the other peers.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpuhive.overlay import driver, paths
from gpuhive.overlay.config import Peer
from gpuhive.overlay.direct import DirectCandidate
from gpuhive.overlay.paths import Action, PathState, Timing


class DirectPaths:
    def __init__(self, iface: str, *, ns: str | None = None, timing: Timing = Timing()) -> None:
        self.iface = iface
        self.ns = ns
        self.timing = timing
        self.states: dict[str, PathState] = {}
        self.candidates: list[DirectCandidate] = []

    def tick(self, hub: Peer, candidates: Sequence[DirectCandidate], now: float,
             rand: float) -> dict[str, Action]:
        """One round; ``now`` is unix time (``wg`` handshake times are), ``rand`` in [0, 1)."""
        dump = driver.read_dump(self.iface, ns=self.ns)
        handshakes = {p.public_key: p.latest_handshake for p in dump.peers}
        new, actions = paths.step_all(self.states, candidates, handshakes, now, rand,
                                       self.timing)
        for pub, action in actions.items():
            if action is Action.FALL_BACK:
                driver.remove_peer(self.iface, pub, ns=self.ns)
        driver.apply_peers(self.iface, [hub, *paths.peers_for(candidates, new)], ns=self.ns)
        self.states, self.candidates = new, list(candidates)
        return actions

    def summary(self) -> dict[str, str]:
        return paths.summary(self.candidates, self.states)
