import pytest

from gpuhive.core.backoff import backoff_delay
from gpuhive.core.liveness import judge, missed_heartbeats, plan_transitions
from gpuhive.core.model import NodeStatus


def test_nominal_schedule_doubles_to_the_cap() -> None:
    delays = [backoff_delay(a, 0.0) for a in range(9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_jitter_only_shortens_and_stays_within_bounds() -> None:
    for attempt in range(12):
        nominal = backoff_delay(attempt, 0.0)
        for r in (0.0, 0.3, 0.999, 1.0, 5.0, -1.0):
            d = backoff_delay(attempt, r)
            assert 0.75 * nominal <= d <= nominal <= 60


def test_jitter_spreads_agents_apart() -> None:
    assert backoff_delay(3, 0.1) != backoff_delay(3, 0.9)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert backoff_delay(10_000, 0.5, cap=60) <= 60


def test_negative_attempt_is_a_bug() -> None:
    with pytest.raises(ValueError):
        backoff_delay(-1, 0.5)


@pytest.mark.parametrize(
    ("age", "status", "missed"),
    [(0.0, NodeStatus.ONLINE, 0), (5.0, NodeStatus.ONLINE, 0), (7.5, NodeStatus.ONLINE, 0),
     (7.6, NodeStatus.DEGRADED, 1), (12.4, NodeStatus.DEGRADED, 1),
     (12.6, NodeStatus.DEGRADED, 2), (17.5, NodeStatus.OFFLINE, 3),
     (3600.0, NodeStatus.OFFLINE, 719)],
)
def test_status_from_heartbeat_age(age: float, status: NodeStatus, missed: int) -> None:
    live = judge(1000.0, 1000.0 + age, 5.0)
    assert (live.status, live.missed) == (status, missed)
    assert (live.reason == "") == (status == NodeStatus.ONLINE)


def test_never_heard_is_offline() -> None:
    assert judge(None, 50.0, 5.0).status == NodeStatus.OFFLINE


def test_offline_threshold_is_configurable() -> None:
    assert judge(0.0, 17.6, 5.0, offline_after=5).status == NodeStatus.DEGRADED


def test_missed_counts_whole_intervals() -> None:
    assert missed_heartbeats(0.0, 7.0, 5.0) == 0
    assert missed_heartbeats(0.0, 100.0, 5.0) == 19


def test_plan_transitions_only_reports_changes() -> None:
    current = {"a": NodeStatus.ONLINE, "b": NodeStatus.ONLINE, "c": NodeStatus.OFFLINE,
               "d": NodeStatus.DEGRADED}
    heard: dict[str, float | None] = {"a": 99.0, "b": 91.0, "c": 99.5, "d": None}
    moves = {t.node_id: t.new.status for t in plan_transitions(current, heard, 100.0, 5.0)}
    assert moves == {"b": NodeStatus.DEGRADED, "c": NodeStatus.ONLINE, "d": NodeStatus.OFFLINE}
