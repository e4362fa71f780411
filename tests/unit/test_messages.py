import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhive.core import messages
from gpuhive.errors import ProtocolError

HW = {"hostname": "h", "cpu": {"cores": 2}, "memory_total_mib": 1024}


def test_round_trip_heartbeat() -> None:
    line = messages.encode("heartbeat", seq=3, state="available", hardware=HW, jobs=[])
    msg = messages.decode(line.rstrip(b"\n"))
    assert msg.type == "heartbeat" and msg["seq"] == 3 and msg["hardware"] == HW
    assert msg.get("jobs") == []


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"\xff\xfe", "UTF-8 JSON"),
        (b"{not json", "UTF-8 JSON"),
        (b"[1,2]", "not a JSON object"),
        (b'{"type":"reboot"}', "unknown message type"),
        (b'{"seq":1}', "unknown message type"),
        (b'{"type":"heartbeat","seq":1,"state":"x"}', "lacks field 'hardware'"),
        (b'{"type":"heartbeat","seq":"1","state":"x","hardware":{}}', "wrong type"),
        (b'{"type":"heartbeat","seq":true,"state":"x","hardware":{}}', "wrong type"),
        (b'{"type":"heartbeat","seq":1,"state":"x","hardware":{},"jobs":5}', "wrong type"),
        (b"[" * 100_000, "UTF-8 JSON"),  # deep nesting must not blow the stack
    ],
)
def test_malformed_messages_are_protocol_errors(line: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        messages.decode(line)


def test_oversized_message_is_refused() -> None:
    big = json.dumps({"type": "hello", "version": 1, "agent_started_at": 0,
                      "pad": "x" * messages.MAX_LINE}).encode()
    with pytest.raises(ProtocolError, match="exceeds"):
        messages.decode(big)


def test_encode_refuses_what_decode_would_refuse() -> None:
    with pytest.raises(ValueError):
        messages.encode("nope")
    with pytest.raises(ValueError):
        messages.encode("hello", version=1, agent_started_at=0, pad="x" * messages.MAX_LINE)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)


@settings(max_examples=400)
@given(st.binary(max_size=2000))
def test_decoder_never_crashes_on_bytes(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        messages.decode(data)


@settings(max_examples=400)
@given(st.sampled_from(sorted(messages._SCHEMA)), st.dictionaries(
    st.sampled_from(["seq", "state", "hardware", "jobs", "code", "message", "name",
                     "node_key", "version", "heartbeat_interval", "node_id", "x"]),
    json_values, max_size=8))
def test_decoder_never_crashes_on_plausible_objects(type_: str, fields: dict) -> None:
    line = json.dumps({"type": type_, **fields}).encode()
    try:
        msg = messages.decode(line)
    except ProtocolError:
        return
    assert msg.type == type_


@given(st.lists(st.binary(max_size=50), max_size=20))
def test_line_buffer_reassembles_any_split(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    buf = messages.LineBuffer(limit=10_000)
    lines: list[bytes] = []
    for chunk in chunks:
        lines += buf.feed(chunk)
    assert lines == data.split(b"\n")[:-1]


def test_line_buffer_refuses_endless_line() -> None:
    buf = messages.LineBuffer(limit=100)
    with pytest.raises(ProtocolError):
        buf.feed(b"x" * 101)
    assert buf.feed(b"ok\n") == [b"ok"]  # and recovers
