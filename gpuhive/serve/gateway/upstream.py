"""HTTP to replicas: one keep-alive pool (``http1.Http1Pool``) for the whole gateway.

Waiting for an answer (a whole non-streaming one, or a stream's first event) can be long
and legitimate: prompt evaluation, generation. ``watched`` tells a slow replica from a dead
one: after ``probe_every`` seconds of waiting, and every ``probe_every`` seconds after that,
it sends ``GET /health`` on another connection; any HTTP answer, 404 included
(llama-cpp-python has no /health), proves the engine's server and the path to it (the SSH
forward) alive. No answer within the period: the
replica is declared broken and the request moves on, long before its overall limit.

Every way a replica can fail becomes one of two exceptions, so the relay decides with
values, not with the HTTP client's exceptions:

* ``UpstreamAnswered``: it answered with a non-200 status (the body is kept, up to 64 KiB);
* ``UpstreamBroken``: no usable answer (refused, reset, timed out, cut off mid-stream,
  an error event inside the stream).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

from gpuhive.serve.api import Replica
from gpuhive.serve.gateway.aio import within
from gpuhive.serve.gateway.http1 import Http1Error, Http1Pool, Http1Response
from gpuhive.serve.gateway.sse import SseParser

T = TypeVar("T")
MAX_ERROR_BODY = 64 * 1024


class UpstreamAnswered(Exception):
    def __init__(self, status: int, content: bytes) -> None:
        super().__init__(f"answered {status}")
        self.status = status
        self.content = content


class UpstreamBroken(Exception):
    """The replica gave no usable answer. ``cool`` says whether to rest it (it looks dead);
    ``silent`` that it went quiet (a timeout, an unanswered probe) rather than hanging up."""

    def __init__(self, why: str, *, cool: bool = True, silent: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.cool = cool
        self.silent = silent


class UpstreamStream:
    """The SSE events of one streaming answer. ``next_data`` returns each ``data:`` payload
    (``"[DONE]"`` included) and ``None`` at the end of the body; ``buffered_data`` the next
    one only if it has already arrived (no waiting), so a relay that fell behind can pass
    several events on in one write."""

    def __init__(self, response: Http1Response) -> None:
        self.response = response
        self._parser = SseParser()
        self._eof = False

    def buffered_data(self) -> str | None:
        return self._parser.next_event()

    async def next_data(self, timeout: float) -> str | None:
        data = self._parser.next_event()
        if data is not None:
            return data
        try:
            return await within(self._read_event(), timeout)
        except asyncio.TimeoutError:
            raise UpstreamBroken(f"no token for {timeout:g} s", silent=True) from None
        except (Http1Error, ValueError) as exc:
            raise UpstreamBroken(f"stream cut off: {exc}") from None

    async def _read_event(self) -> str | None:
        while not self._eof:
            block = await self.response.next_block()
            if block is None:
                self._eof = True
                return self._parser.finish()
            self._parser.feed(block)
            data = self._parser.next_event()
            if data is not None:
                return data
        return None

    async def aclose(self) -> None:
        await self.response.aclose()


class Upstream:
    def __init__(self, *, connect_timeout_s: float) -> None:
        self.pool = Http1Pool(connect_timeout_s=connect_timeout_s)

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def alive(self, replica: Replica, timeout_s: float) -> bool:
        async def probe() -> None:
            r = await self.pool.request(replica.base_url, "GET", "/health")
            try:
                await r.read()
            finally:
                await r.aclose()

        try:
            await within(probe(), timeout_s)
        except (asyncio.TimeoutError, Http1Error):
            return False
        return True

    async def watched(self, aw: Awaitable[T], replica: Replica, probe_every: float) -> T:
        """``await aw``, but give up (``UpstreamBroken``) once the replica stops answering
        probes. The probing starts only after ``probe_every`` seconds without an answer, so
        a quick request costs one timer."""
        task = asyncio.current_task()
        assert task is not None
        verdict: list[str] = []
        prober: list[asyncio.Task[None]] = []

        async def probe_loop() -> None:
            while True:
                if not await self.alive(replica, probe_every):
                    verdict.append(f"stopped answering (no reply to a probe within "
                                   f"{probe_every:g} s)")
                    task.cancel()
                    return
                await asyncio.sleep(probe_every)

        timer = asyncio.get_running_loop().call_later(
            probe_every, lambda: prober.append(asyncio.ensure_future(probe_loop())))
        try:
            return await aw
        except asyncio.CancelledError:
            if not verdict:
                raise
            if hasattr(task, "uncancel"):
                task.uncancel()
            raise UpstreamBroken(verdict[0], silent=True) from None
        finally:
            timer.cancel()
            for t in prober:
                t.cancel()

    async def post(self, replica: Replica, path: str, body: bytes,
                   timeout_s: float) -> tuple[int, bytes]:
        """A whole (non-streaming) answer: (200, body) or ``UpstreamAnswered``/``Broken``."""
        async def exchange() -> tuple[int, bytes]:
            r = await self.pool.request(replica.base_url, "POST", path, body)
            try:
                return r.status, await r.read()
            finally:
                await r.aclose()  # a no-op once the body was read (the connection is reused)

        try:
            status, content = await within(exchange(), timeout_s)
        except asyncio.TimeoutError:
            raise UpstreamBroken(f"no answer within {timeout_s:g} s", silent=True) from None
        except Http1Error as exc:
            raise UpstreamBroken(str(exc)) from None
        if status != 200:
            raise UpstreamAnswered(status, content[:MAX_ERROR_BODY])
        return status, content

    async def open_stream(self, replica: Replica, path: str, body: bytes,
                          timeout_s: float) -> UpstreamStream:
        """Send a streaming request and wait for its status line (within ``timeout_s``)."""
        try:
            response = await within(self.pool.request(replica.base_url, "POST", path, body),
                                    timeout_s)
        except asyncio.TimeoutError:
            raise UpstreamBroken(f"no answer within {timeout_s:g} s", silent=True) from None
        except Http1Error as exc:
            raise UpstreamBroken(str(exc)) from None
        if response.status != 200:
            try:
                content = await within(response.read(), timeout_s)
            except (asyncio.TimeoutError, Http1Error):
                content = b""
            finally:
                await response.aclose()
            raise UpstreamAnswered(response.status, content[:MAX_ERROR_BODY])
        return UpstreamStream(response)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
