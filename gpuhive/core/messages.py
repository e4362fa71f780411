"""Agent ↔ controller messages: one JSON object per line on an SSH channel.

The decoder is the only thing that turns untrusted bytes into messages, so it validates
everything (size, encoding, type, fields and their types) and raises ``ProtocolError``
for anything else. It never raises anything but ``ProtocolError``.

Channels and what flows on them::

    subsystem gpuhive-enroll   agent → enroll       controller → enrolled | error
    subsystem gpuhive-agent    agent → hello        controller → welcome | error
                               agent → heartbeat    (no reply: each would cost an
                                                     encryption and a send per beat)
                                                    controller → peers (the overlay's
                                                     direct-path candidates, on change)
                               agent → goodbye      controller records a clean stop and
                                                     closes the channel

A removed node's key is refused at authentication, where no channel exists yet; the
controller says why in an SSH auth banner (``removed_banner``), which only the controller
whose host key the agent pinned can send, so ``removed_node`` lets the agent know for sure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from gpuhive.errors import ProtocolError

MAX_LINE = 256 * 1024  # a heartbeat with 8 GPUs is ~4 KiB; anything near this is abuse
PROTOCOL_VERSION = 1

ENROLL_SUBSYSTEM = "gpuhive-enroll"
AGENT_SUBSYSTEM = "gpuhive-agent"

# type name → {field: accepted python types}; fields not listed are ignored on decode.
_SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "enroll": {"name": (str,), "hostname": (str,), "node_key": (str,),
               "embedded_host_key": (str,), "hardware": (dict,)},
    "enrolled": {"node_id": (str,), "name": (str,), "forward_port": (int,),
                 "controller_client_key": (str,), "heartbeat_interval": (int, float)},
    "hello": {"version": (int,), "agent_started_at": (int, float)},
    "welcome": {"node_id": (str,), "heartbeat_interval": (int, float),
                "forward_port": (int,)},
    "heartbeat": {"seq": (int,), "state": (str,), "hardware": (dict,)},
    "peers": {"direct": (list,)},
    "goodbye": {"reason": (str,)},
    "error": {"code": (str,), "message": (str,)},
}
_OPTIONAL: dict[str, dict[str, tuple[type, ...]]] = {
    "enroll": {"wg_public_key": (str,), "software": (dict,), "lan_address": (str,),
               "wg_listen_port": (int,)},
    "heartbeat": {"jobs": (list,), "models": (list,), "sent_at": (int, float),
                  "policy": (dict,), "overlay": (dict,)},
    "welcome": {"overlay": (dict,)},
    "error": {"hint": (str,)},
}


_REMOVED = re.compile(r"^gpuhive: node (\S{1,64}) was removed from this hive\b")


def removed_banner(node_id: str) -> str:
    """What the hive endpoint tells a removed node's agent (a person reads it too)."""
    return (f"gpuhive: node {node_id} was removed from this hive by its owner; "
            "ask the owner for a new token\r\n")


def removed_node(banner: str) -> str | None:
    """The node id a ``removed_banner`` names, or None for any other banner."""
    match = _REMOVED.match(banner)
    return match.group(1) if match else None


@dataclass(frozen=True)
class Message:
    type: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def encode(type_: str, **fields: Any) -> bytes:
    if type_ not in _SCHEMA:
        raise ValueError(f"unknown message type {type_!r}")
    line = json.dumps({"type": type_, **fields}, separators=(",", ":")).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise ValueError(f"{type_} message of {len(line)} bytes exceeds {MAX_LINE}")
    return line


def decode(line: bytes | str) -> Message:
    """Validate one line and return the message; raise ``ProtocolError`` otherwise."""
    if isinstance(line, str):
        try:
            line = line.encode("utf-8", "surrogatepass")
        except UnicodeError as exc:
            raise ProtocolError("message is not valid text") from exc
    if len(line) > MAX_LINE:
        raise ProtocolError(f"message of {len(line)} bytes exceeds the {MAX_LINE}-byte limit")
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("message is not valid UTF-8 JSON") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("message is not a JSON object")
    type_ = obj.get("type")
    if not isinstance(type_, str) or type_ not in _SCHEMA:
        raise ProtocolError(f"unknown message type {str(type_)[:40]!r}")
    out: dict[str, Any] = {}
    for name, types in _SCHEMA[type_].items():
        if name not in obj:
            raise ProtocolError(f"{type_} message lacks field {name!r}")
        out[name] = _typed(type_, name, obj[name], types)
    for name, types in _OPTIONAL.get(type_, {}).items():
        if name in obj and obj[name] is not None:
            out[name] = _typed(type_, name, obj[name], types)
    return Message(type_, out)


def _typed(type_: str, name: str, value: Any, types: tuple[type, ...]) -> Any:
    # bool is an int subclass in Python; a heartbeat seq of `true` is still garbage.
    if isinstance(value, bool) or not isinstance(value, types):
        raise ProtocolError(f"{type_} field {name!r} has the wrong type")
    return value


class LineBuffer:
    """Splits a byte stream into lines, refusing any line longer than ``MAX_LINE``."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        self._buf.extend(data)
        lines: list[bytes] = []
        while True:
            idx = self._buf.find(b"\n")
            if idx < 0:
                break
            lines.append(bytes(self._buf[:idx]))
            del self._buf[: idx + 1]
        if len(self._buf) > self._limit:
            self._buf.clear()
            raise ProtocolError(f"message exceeds the {self._limit}-byte limit")
        return lines
