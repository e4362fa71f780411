"""Keep a direct path, fall back to the hub, or retry later. Pure: ``now``, ``rand`` in.

One ``PathState`` per (this spoke, direct candidate). The agent polls ``wg show`` and asks
``step`` what to do; ``peers_for`` turns the states into the peer list to apply
(``spoke.DirectPaths`` is that loop).

    HUB ──retry_at──▶ TRYING ──handshake──▶ DIRECT
     │ ▲                │                     │
     │ └─no handshake───┘                     │
     │ └─────────handshake older than stale───┘
     └──────────handshake (the other side dialled us)──▶ DIRECT

The peer is configured in every mode, never with traffic before it has proven itself:

* HUB: passive (no endpoint, no keepalive, no allowed-ips): it only lets the other side's
  handshake in, so two sides on independent retry schedules still meet;
* TRYING: endpoint and keepalive, still no allowed-ips: it handshakes without taking any
  traffic, so a path that never opens costs nothing — the pair stays on the hub, silently,
  and is tried again after a capped exponential backoff;
* DIRECT: its /32, which beats the hub's subnet route.

On FALL_BACK the executor removes the peer before re-adding it passive: ``wg set`` cannot
clear an endpoint, and removal also stops WireGuard's handshake retries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum

from gpuhive.core.backoff import backoff_delay
from gpuhive.overlay.config import KEEPALIVE_S, Peer, direct_peer
from gpuhive.overlay.direct import DirectCandidate

TRY_WINDOW_S = 15.0  # a handshake normally completes in well under a second
# WireGuard re-handshakes every 120 s while packets flow (keepalives count), and gives a
# session up after 180 s: a direct peer with no handshake for this long is dead.
STALE_S = 180.0 + TRY_WINDOW_S
RETRY_BASE_S = 30.0
RETRY_CAP_S = 900.0


class Mode(str, Enum):
    HUB = "hub"
    TRYING = "trying"
    DIRECT = "direct"


class Action(str, Enum):
    NONE = "none"  # nothing to change
    TRY = "try"  # add the direct peer, unrouted
    PROMOTE = "promote"  # give it its /32: traffic goes direct
    FALL_BACK = "fall_back"  # remove it: traffic goes through the hub again


@dataclass(frozen=True)
class PathState:
    peer: str
    mode: Mode = Mode.HUB
    since: float = 0.0  # when the current mode began
    failures: int = 0  # attempts in a row that got no (or lost their) handshake
    retry_at: float = 0.0  # HUB only: earliest next attempt


def step(state: PathState, latest_handshake: float | None, now: float, rand: float, *,
         window_s: float = TRY_WINDOW_S, stale_s: float = STALE_S,
         retry_base_s: float = RETRY_BASE_S,
         retry_cap_s: float = RETRY_CAP_S) -> tuple[Action, PathState]:
    """The next action for one candidate, given its latest handshake (unix s) and ``now``."""
    fresh = latest_handshake is not None and now - latest_handshake <= stale_s

    def fall_back() -> tuple[Action, PathState]:
        failures = state.failures + 1
        delay = backoff_delay(failures - 1, rand, base=retry_base_s, cap=retry_cap_s)
        return Action.FALL_BACK, PathState(state.peer, Mode.HUB, now, failures, now + delay)

    if state.mode is Mode.HUB:
        if fresh and latest_handshake is not None and latest_handshake >= state.since - 1:
            return Action.PROMOTE, PathState(state.peer, Mode.DIRECT, now, 0, 0.0)
        if now >= state.retry_at:
            return Action.TRY, replace(state, mode=Mode.TRYING, since=now)
        return Action.NONE, state
    if state.mode is Mode.TRYING:
        if fresh and latest_handshake is not None and latest_handshake >= state.since - 1:
            return Action.PROMOTE, PathState(state.peer, Mode.DIRECT, now, 0, 0.0)
        if now - state.since >= window_s:
            return fall_back()
        return Action.NONE, state
    if not fresh and now - state.since >= stale_s:
        return fall_back()
    return Action.NONE, state


@dataclass(frozen=True)
class Timing:
    window_s: float = TRY_WINDOW_S
    stale_s: float = STALE_S
    retry_base_s: float = RETRY_BASE_S
    retry_cap_s: float = RETRY_CAP_S


def step_all(states: Mapping[str, PathState], candidates: Iterable[DirectCandidate],
             handshakes: Mapping[str, float | None], now: float, rand: float,
             timing: Timing = Timing()) -> tuple[dict[str, PathState], dict[str, Action]]:
    """Step every candidate (keyed by peer public key); forget states of vanished ones."""
    new: dict[str, PathState] = {}
    actions: dict[str, Action] = {}
    for c in candidates:
        st = states.get(c.peer_public_key, PathState(c.peer_public_key))
        actions[c.peer_public_key], new[c.peer_public_key] = step(
            st, handshakes.get(c.peer_public_key), now, rand, window_s=timing.window_s,
            stale_s=timing.stale_s, retry_base_s=timing.retry_base_s,
            retry_cap_s=timing.retry_cap_s)
    return new, actions


def peers_for(candidates: Iterable[DirectCandidate], states: Mapping[str, PathState], *,
              keepalive: int = KEEPALIVE_S) -> list[Peer]:
    """Direct peers to configure now (add to the hub peer for the full desired list)."""
    out = []
    for c in candidates:
        st = states.get(c.peer_public_key, PathState(c.peer_public_key))
        if st.mode is Mode.HUB:
            out.append(Peer(c.peer_public_key, ()))
        else:
            out.append(direct_peer(c.peer_public_key, c.peer_overlay_ip, c.endpoint,
                                   routed=st.mode is Mode.DIRECT, keepalive=keepalive))
    return out


def summary(candidates: Iterable[DirectCandidate],
            states: Mapping[str, PathState]) -> dict[str, str]:
    """peer node → "direct" / "trying" / "hub": what an agent reports in its heartbeat."""
    return {c.peer: states.get(c.peer_public_key, PathState(c.peer_public_key)).mode.value
            for c in candidates}


def pair_modes(nodes: Iterable[str],
               reports: Mapping[str, Mapping[str, str]]) -> dict[tuple[str, str], str]:
    """(a, b), a < b → "direct" only when both sides report it, else "trying" or "hub".

    For ``overlay status``: ``reports`` maps each node to its heartbeat's ``summary``.
    """
    names = sorted(set(nodes))
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ma, mb = reports.get(a, {}).get(b, "hub"), reports.get(b, {}).get(a, "hub")
            if ma == mb == "direct":
                out[(a, b)] = "direct"
            elif "trying" in (ma, mb) or "direct" in (ma, mb):
                out[(a, b)] = "trying"
            else:
                out[(a, b)] = "hub"
    return out
