"""The live view's loop: `q` quits, other keys refresh, Ctrl-C quits quietly, the footer says
how; the terminal is put back as it was."""

from __future__ import annotations

import io
import os
import pty
import termios

from rich.console import Console
from rich.text import Text

from gpuhive.cli.live_view import TerminalKeys, keys_of, run_live


class Scripted:
    def __init__(self, *keys: str | type[BaseException] | None) -> None:
        self.keys = list(keys)
        self.waits: list[float] = []

    def wait(self, timeout_s: float) -> str | None:
        self.waits.append(timeout_s)
        key = self.keys.pop(0)
        if isinstance(key, type):
            raise key()
        return key


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=100, force_terminal=False), buf


def test_q_quits_after_refreshing_on_timeouts_and_other_keys() -> None:
    frames: list[int] = []

    def frame() -> Text:
        frames.append(1)
        return Text(f"frame {len(frames)}")

    keys = Scripted(None, " ", "q", "never read")
    console, buf = _console()
    run_live(Text("first"), frame, 2.0, console=console, keys=keys)
    assert len(frames) == 2 and keys.waits == [2.0, 2.0, 2.0] and keys.keys == ["never read"]
    assert "q or Ctrl-C to quit · refreshed every 2s" in buf.getvalue()


def test_ctrl_c_leaves_quietly() -> None:
    console, buf = _console()
    run_live(Text("first"), lambda: Text("x"), 0.5, console=console,
             keys=Scripted(None, KeyboardInterrupt))  # no exception escapes
    assert "x" in buf.getvalue() and "Ctrl-C to quit" in buf.getvalue()


def test_keys_of_a_real_terminal_reads_one_key_and_restores_the_mode() -> None:
    master, slave = pty.openpty()
    try:
        stream = os.fdopen(slave, "r", closefd=False)
        before = termios.tcgetattr(slave)
        with keys_of(stream) as keys:
            assert isinstance(keys, TerminalKeys)
            assert not termios.tcgetattr(slave)[3] & termios.ICANON  # cbreak: no Enter needed
            assert keys.wait(0.01) is None
            os.write(master, b"q")
            assert keys.wait(5) == "q"
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)
