"""Reliability: rises with work and uptime, falls on failures, drifts back; explicit times."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhive.core.reliability import (
    DAY,
    HOUR,
    Reliability,
    decay,
    is_flapping,
    new_node,
    on_heartbeats,
    on_missed_heartbeat,
    on_offline,
    on_task,
    score_at,
)

T0 = 1_800_000_000.0


def test_new_node_starts_low() -> None:
    assert new_node(T0).score == 0.30


def test_completed_tasks_raise_it() -> None:
    r = new_node(T0)
    scores = []
    for i in range(25):
        r = on_task(r, True, T0 + i * 60)
        scores.append(r.score)
    assert scores == sorted(scores)
    assert scores[9] == pytest.approx(0.70, abs=0.01)  # ~10 clean tasks: 0.30 → 0.70
    assert scores[24] == pytest.approx(0.91, abs=0.01)


def test_failures_cost_more_than_successes_earn() -> None:
    r = Reliability(0.8, T0)
    assert on_task(r, False, T0).score == pytest.approx(0.6)
    assert on_task(r, True, T0).score == pytest.approx(0.816)
    r = Reliability(0.6, T0)
    for i in range(40):  # one failure in four: loses ground
        r = on_task(r, i % 4 != 0, T0)
    assert r.score < 0.6


def test_steady_heartbeats_raise_it_to_the_uptime_ceiling_only() -> None:
    r = new_node(T0)
    r12 = on_heartbeats(r, 12 * HOUR, T0 + 12 * HOUR)
    assert 0.50 < r12.score < 0.52  # half-way to 0.70 (idle drift toward 0.5 helps a bit too)
    month = on_heartbeats(r, 30 * DAY, T0 + 30 * DAY)
    assert month.score == pytest.approx(0.70)
    high = Reliability(0.9, T0)
    assert on_heartbeats(high, 3600, T0).score == 0.9  # uptime never lowers, never lifts >0.7


def test_healthy_idle_node_settles_under_the_ceiling() -> None:
    r = new_node(T0)
    t = T0
    for _ in range(24 * 60):  # 60 days of hourly heartbeat credit
        t += HOUR
        r = on_heartbeats(r, HOUR, t)
    assert 0.65 < r.score < 0.70


def test_idle_time_drifts_back_toward_half() -> None:
    good, bad = Reliability(0.9, T0), Reliability(0.1, T0)
    assert score_at(good, T0 + 3 * DAY) == pytest.approx(0.7)  # one half-life
    assert score_at(bad, T0 + 3 * DAY) == pytest.approx(0.3)
    assert score_at(good, T0 + 60 * DAY) == pytest.approx(0.5, abs=1e-3)
    assert score_at(good, T0 - DAY) == 0.9  # time running backwards changes nothing
    assert decay(good, T0).updated_at == T0


def test_missed_heartbeats_and_offline_lower_it() -> None:
    r = Reliability(0.8, T0)
    assert on_missed_heartbeat(r, T0).score == pytest.approx(0.784)
    assert on_missed_heartbeat(r, T0, missed=3).score == pytest.approx(0.8 * 0.98**3)
    assert on_offline(r, T0).score == pytest.approx(0.72)


def test_flapping_costs_extra() -> None:
    r = Reliability(0.8, T0)
    r = on_offline(r, T0)
    r = on_offline(r, T0 + 600)
    assert not is_flapping(r, T0 + 600)
    before = score_at(r, T0 + 1200)
    r = on_offline(r, T0 + 1200)  # third within the hour
    assert is_flapping(r, T0 + 1200)
    assert r.score == pytest.approx(before * 0.9 * 0.8)
    assert not is_flapping(r, T0 + 1200 + 2 * HOUR)
    spread = Reliability(0.8, T0)
    for k in range(3):  # three offline transitions, two hours apart: no flapping penalty
        spread = on_offline(spread, T0 + k * 2 * HOUR)
    assert not is_flapping(spread, T0 + 4 * HOUR)


def test_round_trip_dict() -> None:
    r = on_offline(Reliability(0.8, T0), T0 + 5)
    assert Reliability.from_dict(r.to_dict()) == r
    assert Reliability.from_dict({}).score == 0.30
    assert Reliability.from_dict({"score": "x", "offline_transitions": "bad"}).score == 0.30


events = st.lists(st.tuples(
    st.sampled_from(["ok", "fail", "miss", "offline", "beat", "idle"]),
    st.floats(min_value=0, max_value=30 * DAY)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=1), events)
def test_score_stays_in_unit_interval(start: float, evs: list[tuple[str, float]]) -> None:
    r = Reliability(start, T0)
    t = T0
    for kind, dt in evs:
        t += dt
        if kind == "ok":
            r = on_task(r, True, t)
        elif kind == "fail":
            r = on_task(r, False, t)
        elif kind == "miss":
            r = on_missed_heartbeat(r, t)
        elif kind == "offline":
            r = on_offline(r, t)
        elif kind == "beat":
            r = on_heartbeats(r, dt, t)
        else:
            r = decay(r, t)
        assert 0.0 <= r.score <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=1), st.floats(min_value=0, max_value=DAY))
def test_success_never_hurts_failure_never_helps(start: float, dt: float) -> None:
    r = Reliability(start, T0)
    base = score_at(r, T0 + dt)
    assert on_task(r, True, T0 + dt).score >= base - 1e-12
    assert on_task(r, False, T0 + dt).score <= base + 1e-12
