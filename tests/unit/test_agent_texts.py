"""What the friend reads: the foreground agent's lines, link failures, the removal banner."""

import asyncio
import socket

import asyncssh
import pytest

from gpuhive.agent.console import Console, line_for
from gpuhive.core import messages
from gpuhive.errors import ProtocolError
from gpuhive.transport.agent_link import Connected, Connecting, Disconnected
from gpuhive.transport.link_errors import describe_failure

WHERE = "198.18.0.1:2222"


def test_removed_banner_names_the_node_and_nothing_else_matches() -> None:
    banner = messages.removed_banner("n-4d2a9c1e")
    assert messages.removed_node(banner) == "n-4d2a9c1e"
    assert "ask the owner for a new token" in banner
    for other in ("", "welcome to my server\r\n", "gpuhive: node  was removed",
                  "xgpuhive: node n-1 was removed from this hive"):
        assert messages.removed_node(other) is None


def test_goodbye_round_trips_and_is_checked() -> None:
    msg = messages.decode(messages.encode("goodbye", reason="stopped").rstrip(b"\n"))
    assert msg.type == "goodbye" and msg["reason"] == "stopped"
    with pytest.raises(ProtocolError, match="lacks field 'reason'"):
        messages.decode(b'{"type":"goodbye"}')


def test_foreground_lines() -> None:
    assert line_for(Connecting(WHERE), "alice") == \
        f"connecting to the controller at {WHERE} …"
    assert line_for(Connected(WHERE, "n-1"), "alice") == f"connected to {WHERE} as alice"
    assert line_for(Disconnected(WHERE, "the connection to the controller was lost", 1.5,
                                 True), "alice") == \
        "disconnected: the connection to the controller was lost; retrying in 1.5 s"
    assert line_for(Disconnected(WHERE, "x", 42.4, False), "alice") == \
        "could not connect: x; retrying in 42 s"


def test_console_stamps_each_line() -> None:
    lines: list[str] = []
    Console("alice", lines.append, clock=lambda: 0.0).on_event(Connected(WHERE, "n-1"))
    assert len(lines) == 1 and lines[0].endswith(f" connected to {WHERE} as alice")
    assert lines[0][2] == ":" and lines[0][5] == ":"  # HH:MM:SS first


@pytest.mark.parametrize(("exc", "words"), [
    (asyncssh.PermissionDenied("Permission denied"), "refused this machine's key"),
    (ConnectionRefusedError(111, "Connect call failed"), f"nothing listens at {WHERE}"),
    (asyncio.TimeoutError(), f"no answer from {WHERE} within 15 s"),
    (socket.gaierror(-2, "Name or service not known"), "cannot resolve 198.18.0.1"),
    (OSError(101, "Network is unreachable"), "Network is unreachable"),
    (asyncssh.ChannelListenError("Failed to create remote TCP listener"), "reverse tunnel"),
    (asyncssh.ConnectionLost("Connection lost"), "connection to the controller was lost"),
    (ConnectionError("controller closed the agent channel"),
     "controller closed the agent channel"),
    (ProtocolError("controller refused: bad hello"), "controller refused: bad hello"),
])
def test_link_failures_in_words(exc: BaseException, words: str) -> None:
    text = describe_failure(exc, WHERE, 15.0)
    assert words in text
    assert "Errno" not in text and "Connect call failed" not in text
