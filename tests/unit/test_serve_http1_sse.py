"""The pure parsers under the gateway's upstream client: chunked bodies and SSE events."""

import pytest

from gpuhive.serve.gateway.http1 import ChunkedDecoder, Http1Error, _split
from gpuhive.serve.gateway.sse import SseParser

BODY = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n"


@pytest.mark.parametrize("step", [1, 2, 3, 7, len(BODY)])
def test_chunked_body_in_any_split(step: int) -> None:
    d = ChunkedDecoder()
    out = b"".join(d.feed(BODY[i:i + step]) for i in range(0, len(BODY), step))
    assert out == b"Wikipedia in \r\n\r\nchunks." and d.done and not d.extra


def test_chunked_bytes_after_the_end_make_the_connection_unusable() -> None:
    d = ChunkedDecoder()
    d.feed(b"0\r\n\r\nHTTP/1.1 200")
    assert d.done and d.extra


@pytest.mark.parametrize("bad", [b"zz\r\n", b"\r\n", b"3\r\nabcX\r\n", b"-1\r\n"])
def test_malformed_chunked_bodies(bad: bytes) -> None:
    with pytest.raises(ValueError):
        ChunkedDecoder().feed(bad)


def test_sse_events_lines_and_comments() -> None:
    p = SseParser()
    p.feed(b": ping\r\n\r\ndata: {\"a\": 1}\r\n\r\ndata: x\ndata: y\n\nevent: e\ndata:z\r\r\n")
    assert [p.next_event(), p.next_event(), p.next_event(), p.next_event()] == [
        '{"a": 1}', "x\ny", "z", None]


def test_sse_split_anywhere_including_between_cr_and_lf() -> None:
    raw = b"data: one\r\n\r\ndata: two\r\n\r\ndata: [DONE]\r\n\r\n"
    for step in range(1, len(raw) + 1):
        p, got = SseParser(), []
        for i in range(0, len(raw), step):
            p.feed(raw[i:i + step])
            while (ev := p.next_event()) is not None:
                got.append(ev)
        assert got == ["one", "two", "[DONE]"], step


def test_sse_last_event_without_its_blank_line() -> None:
    p = SseParser()
    p.feed(b"data: end")
    assert p.next_event() is None and p.finish() == "end" and p.finish() is None


def test_replica_urls() -> None:
    assert _split("http://127.0.0.1:8123") == ("127.0.0.1", 8123, "")
    assert _split("http://10.77.0.5:80/engine/") == ("10.77.0.5", 80, "/engine")
    with pytest.raises(Http1Error):
        _split("https://example.com")
