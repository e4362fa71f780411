"""Owner availability windows, e.g. ``"22:00-08:00"``, in the friend's local time. Pure.

Grammar: comma-separated ``HH:MM-HH:MM`` windows. The start is inclusive and the end
exclusive; a window whose end is earlier than its start crosses midnight
(``22:00-08:00`` covers 22:00…23:59 and 00:00…07:59). ``24:00`` may end a window.
Empty, ``always`` or ``*`` means always available; ``never`` means never.

The caller passes the node's local time (``local_minute``); nothing here reads a clock.
``local_minute_of(now, utc_offset_s)`` turns the controller's epoch time and the offset
the agent reports in its heartbeat (``time.localtime().tm_gmtoff``, DST included) into one.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from gpuhive.errors import ConfigError

MINUTES_PER_DAY = 24 * 60
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class Window:
    start: int  # minute of day, 0..1439
    end: int  # minute of day, 1..1440; < start means the window crosses midnight

    def contains(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


@dataclass(frozen=True)
class Schedule:
    windows: tuple[Window, ...]
    always: bool = False
    text: str = ""

    def allows(self, local_minute: int) -> bool:
        if self.always:
            return True
        m = local_minute % MINUTES_PER_DAY
        for w in self.windows:
            if (w.start <= m < w.end) if w.start < w.end else (m >= w.start or m < w.end):
                return True
        return False


ALWAYS = Schedule((), always=True, text="always")


def _minute(h: str, m: str, text: str, *, end: bool) -> int:
    hh, mm = int(h), int(m)
    if mm > 59 or hh > 24 or (hh == 24 and (mm != 0 or not end)):
        raise ConfigError(f"schedule {text!r}: {h}:{m} is not a time of day",
                          hint='write windows like "22:00-08:00"', key="schedule", value=text)
    return hh * 60 + mm


@functools.lru_cache(maxsize=1024)
def parse_schedule(text: str | None) -> Schedule:
    """Parse a schedule string; ConfigError (key ``schedule``) when it is malformed."""
    t = (text or "").strip()
    if t.lower() in ("", "always", "*"):
        return ALWAYS
    if t.lower() == "never":
        return Schedule((), text=t)
    windows: list[Window] = []
    for part in t.split(","):
        m = _WINDOW.match(part.strip())
        if not m:
            raise ConfigError(f"schedule {t!r}: cannot read window {part.strip()!r}",
                              hint='write windows like "22:00-08:00" (comma-separated)',
                              key="schedule", value=t)
        start = _minute(m.group(1), m.group(2), t, end=False)
        end = _minute(m.group(3), m.group(4), t, end=True)
        if start == end or (start == 0 and end == MINUTES_PER_DAY):
            if start == 0 and end == MINUTES_PER_DAY:
                return Schedule((), always=True, text=t)
            raise ConfigError(f"schedule {t!r}: window {part.strip()!r} is empty",
                              hint='use "always" (or "00:00-24:00") for all day',
                              key="schedule", value=t)
        windows.append(Window(start, end))
    return Schedule(tuple(windows), text=t)


def local_minute_of(now: float, utc_offset_s: int) -> int:
    """Minute of the local day for epoch ``now`` at a fixed UTC offset."""
    return int(((now + utc_offset_s) // 60) % MINUTES_PER_DAY)


def minutes_until_open(schedule: Schedule, local_minute: int) -> int | None:
    """How long until the schedule next allows work (0 if now); None if never."""
    if schedule.always:
        return 0
    if not schedule.windows:
        return None
    for d in range(MINUTES_PER_DAY):
        if schedule.allows(local_minute + d):
            return d
    return None
