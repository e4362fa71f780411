"""A small HTTP/1.1 client on asyncio streams, with a keep-alive pool: the gateway's upstream.

Why not httpx: on the gateway's hot path httpx (httpcore + anyio + h11) costs about
0.5-0.9 ms per request on these CPUs, against about 0.05 ms for this; the gateway's whole
budget is 2 ms added at p50. Replicas speak plain HTTP/1.1 on loopback (through an SSH
forward) or the overlay, so the client needs only: ``http://`` URLs, a JSON body with a
Content-Length, and answers framed by Content-Length, chunked encoding or connection
close. Anything else is an ``Http1Error``.

A kept-alive connection the server has closed in the meantime shows only when used; a
request that gets no byte of answer on a *reused* connection is sent once more on a new
one (``Http1Error.stale``): it was never read, so that is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_LINE = 1 << 20  # longest header line accepted
MAX_HEADERS = 100


class Http1Error(Exception):
    def __init__(self, why: str, *, stale: bool = False) -> None:
        super().__init__(why)
        self.stale = stale


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    key: tuple[str, int]
    reused: bool = False
    idle_since: float = 0.0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass
class Http1Response:
    status: int
    headers: dict[str, str]
    _conn: _Conn | None
    _pool: Http1Pool
    _remaining: int | None = None  # Content-Length left; None: chunked or until close
    _decoder: ChunkedDecoder | None = None
    _done: bool = False

    async def read(self) -> bytes:
        """The whole body (then the connection goes back to the pool)."""
        parts = []
        while (block := await self.next_block()) is not None:
            parts.append(block)
        return b"".join(parts)

    async def aclose(self) -> None:
        """Done with the answer: the connection is reused if the body was read to its end,
        else closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def next_block(self) -> bytes | None:
        """The next piece of the body as it arrives (everything already received, in one
        piece); None at its end."""
        conn = self._conn
        while not self._done and conn is not None:
            try:
                raw = await conn.reader.read(1 << 16)
            except OSError as exc:
                await self.aclose()
                raise Http1Error(f"reading the answer failed: {exc!r}") from None
            if self._decoder is not None:
                if not raw:
                    await self.aclose()
                    raise Http1Error("the connection closed inside a chunked body")
                try:
                    block = self._decoder.feed(raw)
                except ValueError as exc:
                    await self.aclose()
                    raise Http1Error(f"malformed chunked body: {exc}") from None
                if self._decoder.done:
                    self._finish(reusable=not self._decoder.extra)
                    return block or None
            elif self._remaining is not None:
                if not raw:
                    await self.aclose()
                    raise Http1Error("the connection closed inside the body")
                block = raw[:self._remaining]
                self._remaining -= len(block)
                if self._remaining == 0:
                    self._finish(reusable=len(raw) == len(block))
            else:  # until the server closes
                if not raw:
                    self._finish(reusable=False)
                    return None
                block = raw
            if block:
                return block
        return None

    def _finish(self, *, reusable: bool) -> None:
        self._done = True
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if reusable and self.headers.get("connection", "").lower() != "close":
            self._pool._release(conn)
        else:
            conn.close()


class Http1Pool:
    def __init__(self, *, connect_timeout_s: float = 5.0, keepalive_s: float = 4.0,
                 max_idle_per_host: int = 512) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s  # under uvicorn's 5 s, so idle ones are rarely stale
        self.max_idle = max_idle_per_host
        self._idle: dict[tuple[str, int], list[_Conn]] = {}

    async def request(self, base_url: str, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/json") -> Http1Response:
        """Send a request; returns once the status line and headers are in."""
        host, port, prefix = _split(base_url)
        head = (f"{method} {prefix}{path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                f"Accept: */*\r\n\r\n").encode("latin-1")
        for _ in range(2):
            conn = await self._get((host, port))
            try:
                return await self._exchange(conn, head + body)
            except Http1Error as exc:
                conn.close()
                if not (exc.stale and conn.reused):
                    raise
            except BaseException:  # cancelled half-way: the connection is in an unknown state
                conn.close()
                raise
        raise Http1Error("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()

    async def _exchange(self, conn: _Conn, data: bytes) -> Http1Response:
        try:
            conn.writer.write(data)
            await conn.writer.drain()
            status_line = await conn.reader.readuntil(b"\r\n")
        except asyncio.IncompleteReadError as exc:
            raise Http1Error("the server closed the connection without answering",
                             stale=not exc.partial) from None
        except (OSError, asyncio.LimitOverrunError) as exc:
            raise Http1Error(f"sending the request failed: {exc!r}", stale=True) from None
        try:
            parts = status_line.split(b" ", 2)
            if not parts[0].startswith(b"HTTP/1."):
                raise ValueError(status_line[:40])
            status = int(parts[1])
            headers: dict[str, str] = {}
            for _ in range(MAX_HEADERS):
                line = await conn.reader.readuntil(b"\r\n")
                if line == b"\r\n":
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            else:
                raise ValueError("too many headers")
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as exc:
            raise Http1Error(f"malformed answer: {exc!r}") from None
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        remaining = None if chunked or length is None else int(length)
        resp = Http1Response(status, headers, conn, self, remaining,
                             ChunkedDecoder() if chunked else None)
        if remaining == 0:
            resp._finish(reusable=True)
        return resp

    async def _get(self, key: tuple[str, int]) -> _Conn:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < self.keepalive_s and not conn.reader.at_eof():
                conn.reused = True
                return conn
            conn.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(key[0], key[1], limit=MAX_LINE), self.connect_timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            raise Http1Error(f"cannot connect to {key[0]}:{key[1]}: {exc!r}") from None
        return _Conn(reader, writer, key)

    def _release(self, conn: _Conn) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self.max_idle or conn.reader.at_eof():
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)


class ChunkedDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoder. Pure: bytes in, body bytes out."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._left = 0  # bytes of the current chunk still to come
        self._state = "size"  # size | data | crlf | trailer | done
        self.extra = False  # bytes after the end (the connection is then not reusable)

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, raw: bytes) -> bytes:
        if self._state == "done":
            self.extra = self.extra or bool(raw)
            return b""
        buf = self._buf
        buf += raw
        out = bytearray()
        while True:
            if self._state == "data":
                take = min(self._left, len(buf))
                out += buf[:take]
                del buf[:take]
                self._left -= take
                if self._left:
                    break
                self._state = "crlf"
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > 4096:
                    raise ValueError("a chunk header line over 4 KiB")
                break
            line = bytes(buf[:end])
            del buf[:end + 2]
            if self._state == "crlf":
                if line:
                    raise ValueError("no CRLF after a chunk")
                self._state = "size"
            elif self._state == "size":
                size = int(line.split(b";", 1)[0].strip() or b"x", 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                self._left, self._state = size, ("data" if size else "trailer")
            elif self._state == "trailer" and not line:
                self._state = "done"
                self.extra = bool(buf)
                break
        return bytes(out)


def _split(base_url: str) -> tuple[str, int, str]:
    u = urlsplit(base_url)
    if u.scheme != "http" or not u.hostname:
        raise Http1Error(f"only http://host:port replica URLs are supported, not {base_url!r}")
    return u.hostname, u.port or 80, u.path.rstrip("/")
