"""Incremental parser of a server-sent-events body: bytes in, ``data`` payloads out. Pure.

Only ``data:`` fields matter here; comments (``: ping``) and other fields are skipped.
Lines end in ``\\n``, ``\\r\\n`` or ``\\r``; an empty line ends an event; several ``data:``
lines of one event are joined with ``\\n`` (the SSE rules).
"""

from __future__ import annotations


class SseParser:
    def __init__(self, max_event: int = 1 << 20) -> None:
        self._buf = bytearray()
        self._data: list[str] = []
        self.max_event = max_event

    def feed(self, block: bytes) -> None:
        self._buf += block
        if len(self._buf) > self.max_event and b"\n" not in self._buf:
            raise ValueError("an event line over the size limit")

    def next_event(self) -> str | None:
        """The next complete event's data, or None until more bytes are fed."""
        buf = self._buf
        while True:
            nl = buf.find(b"\n")
            cr = buf.find(b"\r")
            if cr >= 0 and (nl < 0 or cr < nl):
                if cr + 1 == len(buf):
                    return None  # "\r" at the end: wait to see whether "\n" follows
                end, skip = cr, 2 if buf[cr + 1:cr + 2] == b"\n" else 1
            elif nl >= 0:
                end, skip = nl, 1
            else:
                return None
            line = bytes(buf[:end])
            del buf[:end + skip]
            if not line:
                if self._data:
                    data, self._data = "\n".join(self._data), []
                    return data
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                self._data.append((value[1:] if value.startswith(b" ") else value)
                                  .decode(errors="replace"))

    def finish(self) -> str | None:
        """At the end of the body: an event left without its blank line, if any."""
        if self._buf:
            self.feed(b"\n\n")
            return self.next_event()
        if self._data:
            data, self._data = "\n".join(self._data), []
            return data
        return None
