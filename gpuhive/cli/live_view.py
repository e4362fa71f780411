"""A view refreshed in place until the user presses `q` (or Ctrl-C): what `gpuhive status`
runs in a terminal.

The keyboard is read in cbreak mode (one key at a time, no echo; Ctrl-C still interrupts)
and restored on the way out, whatever happens. ``run_live`` takes the key source as an
argument, so the loop is tested with scripted keys and the terminal part with a real pty.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from typing import Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

QUIT_KEYS = frozenset({"q", "Q"})


class Keys(Protocol):
    def wait(self, timeout_s: float) -> str | None:
        """The key pressed within ``timeout_s`` seconds, or None when none was."""
        ...


class NoKeys:
    """stdin is not a terminal: nothing to read, only the clock."""

    def wait(self, timeout_s: float) -> str | None:
        time.sleep(timeout_s)
        return None


class TerminalKeys:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def wait(self, timeout_s: float) -> str | None:
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return None
        data = os.read(self.fd, 32)
        if not data:  # the terminal went away: nothing will ever be typed again
            time.sleep(timeout_s)
            return None
        return data.decode(errors="replace")[-1:]


@contextlib.contextmanager
def keys_of(stream: TextIO) -> Iterator[Keys]:
    """Keys typed on ``stream`` while the view runs, the terminal put back afterwards."""
    if not stream.isatty():
        yield NoKeys()
        return
    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield TerminalKeys(fd)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def footer(interval_s: float) -> Text:
    return Text(f"q or Ctrl-C to quit · refreshed every {interval_s:g}s", style="dim")


def run_live(first: RenderableType, frame: Callable[[], RenderableType], interval_s: float, *,
             console: Console, keys: Keys | None = None) -> None:
    """Show ``first``, then ``frame()`` every ``interval_s`` until `q` or Ctrl-C."""
    with contextlib.ExitStack() as stack:
        if keys is None:
            keys = stack.enter_context(keys_of(sys.stdin))
        view = stack.enter_context(Live(Group(first, footer(interval_s)), console=console,
                                        refresh_per_second=4, screen=False))
        try:
            while keys.wait(interval_s) not in QUIT_KEYS:
                view.update(Group(frame(), footer(interval_s)))
        except KeyboardInterrupt:
            pass  # Ctrl-C is how the footer says to leave: not an error
