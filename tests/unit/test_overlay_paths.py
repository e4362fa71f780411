"""Direct path lifecycle: try unrouted, promote on handshake, fall back silently, retry."""

from __future__ import annotations

from gpuhive.overlay.config import Peer
from gpuhive.overlay.direct import DirectCandidate
from gpuhive.overlay.paths import (
    STALE_S,
    TRY_WINDOW_S,
    Action,
    Mode,
    PathState,
    pair_modes,
    peers_for,
    step,
    step_all,
    summary,
)

T0 = 1_700_000_000.0
CAND = DirectCandidate("a", "b", "B=", "10.77.0.3", "192.168.1.3:51820", "same-lan")


def test_first_step_tries_at_once() -> None:
    action, st = step(PathState("B="), None, T0, 0.5)
    assert action is Action.TRY and st.mode is Mode.TRYING and st.since == T0


def test_handshake_within_window_promotes() -> None:
    trying = PathState("B=", Mode.TRYING, T0)
    assert step(trying, None, T0 + 3, 0.5) == (Action.NONE, trying)
    action, st = step(trying, T0 + 2, T0 + 4, 0.5)
    assert action is Action.PROMOTE and st == PathState("B=", Mode.DIRECT, T0 + 4, 0, 0.0)


def test_old_handshake_does_not_promote_a_new_attempt() -> None:
    trying = PathState("B=", Mode.TRYING, T0)
    assert step(trying, T0 - 100, T0 + 1, 0.5)[0] is Action.NONE


def test_no_handshake_falls_back_and_backs_off() -> None:
    trying = PathState("B=", Mode.TRYING, T0, failures=0)
    action, st = step(trying, None, T0 + TRY_WINDOW_S, 0.0)
    assert action is Action.FALL_BACK
    assert st.mode is Mode.HUB and st.failures == 1 and st.retry_at == T0 + TRY_WINDOW_S + 30
    # Waits until retry_at, then tries again; each failure doubles the wait (capped).
    assert step(st, None, st.retry_at - 1, 0.0)[0] is Action.NONE
    action, again = step(st, None, st.retry_at, 0.0)
    assert action is Action.TRY
    _, st2 = step(again, None, again.since + TRY_WINDOW_S, 0.0)
    assert st2.failures == 2 and st2.retry_at - st2.since == 60
    many = PathState("B=", Mode.TRYING, T0, failures=20)
    _, capped = step(many, None, T0 + TRY_WINDOW_S, 0.0)
    assert capped.retry_at - capped.since == 900


def test_jitter_shortens_the_wait() -> None:
    _, st = step(PathState("B=", Mode.TRYING, T0), None, T0 + TRY_WINDOW_S, 0.999)
    assert 22 < st.retry_at - st.since < 30


def test_passive_side_promotes_when_the_other_dials_in() -> None:
    waiting = PathState("B=", Mode.HUB, T0, failures=1, retry_at=T0 + 500)
    action, st = step(waiting, T0 + 10, T0 + 11, 0.5)
    assert action is Action.PROMOTE and st.mode is Mode.DIRECT


def test_direct_kept_while_handshakes_are_fresh_then_falls_back() -> None:
    direct = PathState("B=", Mode.DIRECT, T0)
    assert step(direct, T0 + 100, T0 + 200, 0.5)[0] is Action.NONE
    action, st = step(direct, T0 + 100, T0 + 100 + STALE_S + 1, 0.5)
    assert action is Action.FALL_BACK and st.mode is Mode.HUB and st.failures == 1


def test_peers_for_each_mode() -> None:
    assert peers_for([CAND], {}) == [Peer("B=", ())]
    trying = {"B=": PathState("B=", Mode.TRYING, T0)}
    assert peers_for([CAND], trying) == [Peer("B=", (), "192.168.1.3:51820", 25)]
    direct = {"B=": PathState("B=", Mode.DIRECT, T0)}
    assert peers_for([CAND], direct) == [Peer("B=", ("10.77.0.3/32",), "192.168.1.3:51820",
                                              25)]


def test_step_all_and_summaries() -> None:
    states, actions = step_all({"gone=": PathState("gone=")}, [CAND], {"B=": None}, T0, 0.5)
    assert set(states) == {"B="} and actions == {"B=": Action.TRY}
    assert summary([CAND], states) == {"b": "trying"}
    reports = {"a": {"b": "direct", "c": "hub"}, "b": {"a": "direct"}, "c": {"a": "trying"}}
    assert pair_modes(["c", "b", "a"], reports) == {
        ("a", "b"): "direct", ("a", "c"): "trying", ("b", "c"): "hub"}
