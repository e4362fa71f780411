"""Reachability matrix: results in, cells and explanations out; ping output parsing."""

from __future__ import annotations

from gpuhive.overlay.check import (
    NodeHint,
    PairResult,
    TransferResult,
    build_matrix,
    parse_ping,
    parse_transfer,
    receiver_failure,
    recv_argv,
    render,
    send_argv,
)

PING_OK = """PING 10.77.0.3 (10.77.0.3) 56(84) bytes of data.
64 bytes from 10.77.0.3: icmp_seq=1 ttl=63 time=1.32 ms

--- 10.77.0.3 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 2002ms
rtt min/avg/max/mdev = 1.167/1.220/1.315/0.067 ms
"""
PING_LOST = """--- 10.77.0.4 ping statistics ---
3 packets transmitted, 0 received, 100% packet loss, time 2040ms
"""


def test_parse_ping() -> None:
    assert parse_ping(PING_OK) == (3, 3, 1.22)
    assert parse_ping(PING_LOST) == (3, 0, None)
    assert parse_ping("ping: connect: Network is unreachable") == (0, 0, None)


def test_argv() -> None:
    assert recv_argv("10.77.0.3", 47001, python="py")[:6] == [
        "py", "-m", "gpuhive.overlay.bulk", "recv", "10.77.0.3", "47001"]
    assert send_argv("10.77.0.3", 47001, 50_000_000, python="py")[6] == "50000000"


def ok(src: str, dst: str) -> PairResult:
    return PairResult(src, dst, 3, 3, 1.2, True, 31.0)


def test_all_ok() -> None:
    m = build_matrix(["a", "b"], [ok("a", "b"), ok("b", "a")])
    assert m.ok and m.cells[("a", "b")].summary == "1.2 ms, 31 MB/s"


def test_missing_pair_is_a_failure() -> None:
    m = build_matrix(["a", "b"], [ok("a", "b")])
    assert not m.ok and m.cells[("b", "a")].explanation == "no result for this pair"


def test_explanations() -> None:
    hints = {"a": NodeHint(5.0), "b": NodeHint(5.0), "c": NodeHint(None),
             "d": NodeHint(900.0)}
    results = [
        PairResult("a", "c", 3, 0),
        PairResult("a", "d", 3, 0),
        PairResult("a", "b", 3, 0),
        PairResult("b", "a", 3, 3, 1.0, False, None, "TimeoutError: timed out"),
        PairResult("c", "a", 0, 0, error="exec failed: no such node"),
        PairResult("d", "a", 3, 3, 1.0, False, None, "ConnectionRefusedError: refused"),
    ]
    m = build_matrix(["a", "b", "c", "d"], results, hints=hints)
    why = {(c.src, c.dst): c.explanation for c in m.failing()}
    assert "never completed a WireGuard handshake" in why[("a", "c")]
    assert "900 s ago" in why[("a", "d")]
    assert "ip_forward" in why[("a", "b")]
    assert "MTU" in why[("b", "a")] and "50 MB" in why[("b", "a")]
    assert why[("c", "a")].startswith("could not run ping on c")
    assert "firewall on a" in why[("d", "a")]


def test_no_hints_generic_and_render() -> None:
    m = build_matrix(["a", "b"], [ok("a", "b"), PairResult("b", "a", 3, 0)])
    text = render(m)
    assert "FAIL no ping" in text and "ok 1.2 ms, 31 MB/s" in text
    assert text.splitlines()[-1].startswith("b -> a: no ping reply from a")


REPORT = '{"bytes": 1000, "received": 1000, "seconds": 0.5, "mb_per_s": 2.0}'


def test_parse_transfer_reads_the_senders_last_line() -> None:
    assert parse_transfer(0, "noise\n" + REPORT, 1000) == TransferResult(True, 1000, 2.0)
    short = parse_transfer(1, REPORT.replace('"received": 1000', '"received": 7'), 1000)
    assert not short.ok and short.received == 7 and short.error == "received 7 of 1000 bytes"
    err = parse_transfer(2, '{"error": "ConnectionRefusedError: refused"}', 1000)
    assert not err.ok and err.error == "ConnectionRefusedError: refused"
    assert parse_transfer(139, "a\nb\nc\nSegmentation fault", 1000).error == \
        "b | c | Segmentation fault"
    assert parse_transfer(None, "sending\nsession to a broke: cable", 1000).error == \
        "session to a broke: cable"
    assert parse_transfer(None, "", 1000).error == "the sender printed nothing (its session " \
        "broke)"
    assert parse_transfer(0, '{"received": true, "mb_per_s": "fast"}', 1000) == \
        TransferResult(False, None, None, "the sender's report has no byte count")
    assert parse_transfer(None, REPORT, 1000).error == "the sender's session broke"
    assert parse_transfer(0, "[1, 2]", 1000).error == "[1, 2]"


def test_receiver_failure() -> None:
    assert receiver_failure(0, "") == ""
    assert receiver_failure(2, '{"error": "OSError: [Errno 98] in use"}') == \
        "OSError: [Errno 98] in use"
    assert receiver_failure(None, "cannot open a session") == "cannot open a session"
    assert receiver_failure(1, "") == "it exited with 1"


def test_a_failed_receiver_is_explained_as_such() -> None:
    r = PairResult("a", "b", 3, 3, 1.0, False, None, "refused", "session to b broke")
    m = build_matrix(["a", "b"], [r, ok("b", "a")])
    assert m.cells[("a", "b")].explanation == (
        "ping passes but the TCP receiver could not run on b: session to b broke")
