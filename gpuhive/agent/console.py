"""What the foreground agent tells the friend: a few plain lines, not a log.

``line_for`` is pure (an event in, a line or nothing out); ``Console`` prints them with the
time of day. Logs stay available with GPUHIVE_LOG=info or debug.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from gpuhive.transport.agent_link import Connected, Connecting, Disconnected, LinkEvent


def seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def line_for(event: LinkEvent, name: str) -> str:
    if isinstance(event, Connecting):
        return f"connecting to the controller at {event.where} …"
    if isinstance(event, Connected):
        return f"connected to {event.where} as {name}"
    if isinstance(event, Disconnected):
        verb = "disconnected" if event.was_connected else "could not connect"
        return f"{verb}: {event.why}; retrying in {seconds(event.retry_in)}"
    raise TypeError(f"not a link event: {event!r}")


class Console:
    def __init__(self, name: str, write: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.write = write or _stderr
        self.clock = clock

    def say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        self.write(f"{stamp} {text}")

    def on_event(self, event: LinkEvent) -> None:
        self.say(line_for(event, self.name))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
