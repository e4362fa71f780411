"""Owner availability windows (local time, across midnight)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuhive.core.schedule import local_minute_of, minutes_until_open, parse_schedule
from gpuhive.errors import ConfigError


def hm(h: int, m: int = 0) -> int:
    return h * 60 + m


@pytest.mark.parametrize(("text", "minute", "open_"), [
    ("22:00-08:00", hm(21, 59), False),
    ("22:00-08:00", hm(22), True),  # start inclusive
    ("22:00-08:00", hm(23, 59), True),
    ("22:00-08:00", hm(0), True),
    ("22:00-08:00", hm(7, 59), True),
    ("22:00-08:00", hm(8), False),  # end exclusive
    ("09:00-17:00", hm(12), True),
    ("09:00-17:00", hm(17), False),
    ("18:00-24:00", hm(23, 59), True),
    ("22:00-00:00", hm(0), False),
    ("22:00-00:00", hm(23), True),
    ("12:00-13:00, 22:00-06:00", hm(12, 30), True),
    ("12:00-13:00, 22:00-06:00", hm(3), True),
    ("12:00-13:00, 22:00-06:00", hm(14), False),
    ("", hm(3), True),
    ("always", hm(3), True),
    ("00:00-24:00", hm(23, 59), True),
    ("never", hm(3), False),
])
def test_windows(text: str, minute: int, open_: bool) -> None:
    assert parse_schedule(text).allows(minute) is open_


@pytest.mark.parametrize("text", ["22-08", "25:00-08:00", "22:00-08:60", "24:00-08:00",
                                  "10:00-10:00", "nonsense", "22:00-08:00,"])
def test_bad_schedules_name_the_key(text: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_schedule(text)
    assert ei.value.data["key"] == "schedule"


def test_local_minute() -> None:
    now = 1_767_268_800.0  # 2026-01-01 12:00 UTC
    assert local_minute_of(now, 0) == hm(12)
    assert local_minute_of(now, 10 * 3600) == hm(22)
    assert local_minute_of(now, -13 * 3600) == hm(23)
    assert local_minute_of(now, 5 * 3600 + 30 * 60) == hm(17, 30)


def test_minutes_until_open() -> None:
    s = parse_schedule("22:00-08:00")
    assert minutes_until_open(s, hm(12)) == 600
    assert minutes_until_open(s, hm(23)) == 0
    assert minutes_until_open(parse_schedule("never"), 0) is None
    assert minutes_until_open(parse_schedule(""), 0) == 0


@given(st.integers(0, 23), st.integers(0, 59), st.integers(0, 23), st.integers(0, 59),
       st.integers(0, 1439))
def test_crossing_window_is_the_complement_of_its_reverse(h1: int, m1: int, h2: int, m2: int,
                                                           minute: int) -> None:
    if (h1, m1) == (h2, m2):
        return
    a = parse_schedule(f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}")
    b = parse_schedule(f"{h2:02d}:{m2:02d}-{h1:02d}:{m1:02d}")
    assert a.allows(minute) != b.allows(minute)
