"""Carry one request to replicas and the answer back, failing over as ``failover`` decides.

``complete``: non-streaming (also embeddings); any failure before the answer is invisible.

``StreamRelay``: ``open()`` runs before the client's response starts, until some replica
has produced its first event, so failures up to there are invisible and a request the
engine refuses gets the engine's status as a JSON error. ``body()`` is then the SSE body:
chunks of the first replica as they came; after a mid-stream failure, the continuation's
chunks rewritten to the first stream's id (nothing repeated, nothing lost); or, where the
stream cannot go on, an OpenAI-style error event; always ``data: [DONE]`` last.

Both work with the ``pool.ReplicaPool`` only (candidates, each attempt's outcome, the HTTP
client, limits, counters); the key's token bill goes back through ``Call.charge``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from gpuhive.serve.api import ModelProfile, Replica
from gpuhive.serve.errors import ApiError, NoReplica, UpstreamFailed
from gpuhive.serve.gateway.apikeys import ApiKey
from gpuhive.serve.gateway.chunks import (
    DONE,
    ChunkMeta,
    build_chunk,
    error_event,
    meta_of,
    read_delta,
    sse,
    sse_json,
)
from gpuhive.serve.gateway.continuation import ContinuationImpossible, continuation_body
from gpuhive.serve.gateway.failover import (
    FinishLength,
    GiveUp,
    Progress,
    TryContinue,
    TryFresh,
    is_continuable,
    is_replica_fault,
    plan_next,
)
from gpuhive.serve.gateway.pool import ReplicaPool
from gpuhive.serve.gateway.upstream import UpstreamAnswered, UpstreamBroken, UpstreamStream, dumps
from gpuhive.serve.gateway.upstream_errors import from_upstream

COOL_STATUSES = (502, 503, 504)  # an answered 500 is an alive engine refusing this request


@dataclass
class Call:
    route: str  # "chat" | "completions" | "embeddings"
    path: str  # the engine's path
    model: str
    body: dict[str, Any]
    raw: bytes  # the body as forwarded
    profile: ModelProfile
    key: ApiKey | None
    started: float  # the pool's clock
    usage: tuple[int, int] | None = None  # (prompt, completion) the engine reported
    # bills the key for a stream's tokens once it ended (the gateway's per-key limits)
    charge: Callable[[int], None] = lambda tokens: None

    @property
    def chat(self) -> bool:
        return self.route == "chat"

    def prompt_tokens_estimate(self) -> int:
        """For streams, whose chunks carry no usage: about 4 bytes a token."""
        source = self.body.get("messages") if self.chat else self.body.get("prompt")
        return max(1, len(json.dumps(source)) // 4)


def give_up(call: Call, reason: str, attempts: int, last: str) -> ApiError:
    if attempts == 0:
        return NoReplica(f"model {call.model!r} has no ready replica", api_code="no_replica",
                         hint="`gpuhive serve` it, or wait for its replicas to start",
                         model=call.model)
    return UpstreamFailed(f"{reason} (last error: {last})", api_code="upstream_failed",
                          hint="retry later; the hive owner can check `gpuhive serve status`",
                          model=call.model, attempts=attempts)


def answered(replica: Replica, exc: UpstreamAnswered) -> str:
    return (f"{replica.replica_id} answered {exc.status}: "
            f"{from_upstream(exc.status, exc.content).message[:200]}")


async def complete(pool: ReplicaPool, call: Call) -> bytes:
    """The replica's 200 body, after failing over as needed; else an ``ApiError``."""
    tried: set[str] = set()
    attempts, last = 0, ""
    while True:
        step = plan_next(pool.candidates(call.model, tried), Progress(), attempts=attempts,
                         max_attempts=pool.cfg.max_attempts, continuable=False, max_tokens=None)
        if not isinstance(step, TryFresh):
            raise give_up(call, step.reason if isinstance(step, GiveUp) else "", attempts, last)
        replica = step.replica
        if attempts:
            pool.metrics.failover(call.model, "before_first_byte")
        tried.add(replica.replica_id)
        attempts += 1
        t0 = pool.clock()
        pool.begin(replica)
        try:
            _, content = await pool.upstream.watched(
                pool.upstream.post(replica, call.path, call.raw, pool.cfg.request_timeout_s),
                replica, pool.cfg.token_gap_timeout_s)
        except UpstreamAnswered as exc:
            if not is_replica_fault(exc.status):
                pool.succeeded(replica, pool.clock() - t0)
                raise from_upstream(exc.status, exc.content) from None
            pool.failed(replica, cool=exc.status in COOL_STATUSES)
            last = answered(replica, exc)
            continue
        except UpstreamBroken as exc:
            pool.failed(replica, cool=exc.cool)
            last = f"{replica.replica_id}: {exc.why}"
            continue
        finally:
            pool.end(replica)
        seconds = pool.clock() - t0
        pool.succeeded(replica, seconds)
        call.usage = usage_of(content)
        if call.usage is not None:
            pool.generated(replica, call.usage[1], seconds)
        return content


def usage_of(content: bytes) -> tuple[int, int] | None:
    """(prompt, completion) tokens from a non-streamed answer's ``usage``; None without."""
    try:
        usage = json.loads(content).get("usage") or {}
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (ValueError, TypeError, AttributeError):
        return None


class StreamRelay:
    def __init__(self, pool: ReplicaPool, call: Call) -> None:
        self.pool = pool
        self.call = call
        self.parts: list[str] = []  # content sent to the client
        self.tokens = 0
        self.tried: set[str] = set()
        self.attempts = 0
        self.last = ""
        self.meta: ChunkMeta | None = None
        self.native = True  # forwarding the first replica's own chunks
        self.finished = False  # a finish_reason went out
        self.ended_ok = False  # the stream ended complete (not with an error event)
        self.stream: UpstreamStream | None = None
        self.replica: Replica | None = None
        self.pending: str | None = None  # first data of a freshly opened stream
        self.first_token_at: float | None = None
        # this replica's share of the stream, for its tokens/s: (first token at, tokens)
        self.on_replica: tuple[float, int] | None = None
        self.sent: tuple[str, dict[str, Any]] = (call.path, call.body)  # the last attempt's
        self.continuable = is_continuable(call.body, chat=call.chat,
                                          has_template=bool(call.profile.chat_template))
        mt = call.body.get("max_tokens")
        self.max_tokens: int | None = mt if isinstance(mt, int) else None

    # ---- before the response ----------------------------------------------------------

    async def open(self) -> None:
        """Find a replica whose stream has begun; else raise the ``ApiError`` to answer."""
        try:
            await self._open()
        except BaseException:
            await self._drop(failed=False)  # nothing half-open left behind, also if cancelled
            raise

    async def _open(self) -> None:
        while True:
            step = self._plan()
            if isinstance(step, GiveUp):
                raise give_up(self.call, step.reason, self.attempts, self.last)
            assert isinstance(step, TryFresh)
            if self.attempts:
                self.pool.metrics.failover(self.call.model, "before_first_byte")
            try:
                await self._attempt(step)
                return
            except UpstreamAnswered as exc:
                if not is_replica_fault(exc.status):
                    raise from_upstream(exc.status, exc.content) from None
            except UpstreamBroken as exc:
                if exc.why == EMPTY_STREAM:
                    refused = await self._diagnose(step.replica)
                    if refused is not None:
                        raise refused from None

    async def _diagnose(self, replica: Replica) -> ApiError | None:
        """A stream that ended before its first event: ask the same replica the same thing
        without streaming (1 token) to learn whether the request is at fault (llama-cpp-
        python ends a stream silently when the prompt is over the context)."""
        path, body = self.sent
        probe = dict(body, stream=False, max_tokens=1)
        probe.pop("stream_options", None)
        try:
            await self.pool.upstream.watched(
                self.pool.upstream.post(replica, path, dumps(probe),
                                      self.pool.cfg.first_token_timeout_s),
                replica, self.pool.cfg.token_gap_timeout_s)
        except UpstreamAnswered as exc:
            if not is_replica_fault(exc.status):
                return from_upstream(exc.status, exc.content)
        except UpstreamBroken:
            self.pool.failed(replica, cool=True)  # it cannot answer at all
        return None

    # ---- the response body ------------------------------------------------------------

    async def body(self) -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    while True:
                        data, self.pending = self.pending, None
                        assert self.stream is not None
                        if data is None:
                            data = await self.stream.next_data(self.pool.cfg.token_gap_timeout_s)
                        if data is None and not self.finished:
                            raise UpstreamBroken("the stream ended before it was complete")
                        if data is None or data == "[DONE]":
                            self.ended_ok = True
                            yield DONE
                            return
                        batch, broken = self._relay_batch(data)
                        if batch:
                            yield batch
                        if broken is not None:
                            raise broken
                except UpstreamBroken as exc:
                    self.last = f"{self.replica.replica_id if self.replica else '?'}: {exc.why}"
                    await self._drop(failed=True, cool=exc.cool)
                async for chunk in self._recover():
                    yield chunk
                if self.stream is None:
                    return
        finally:
            await self._drop(failed=False)
            self._account()

    async def _recover(self) -> AsyncIterator[bytes]:
        """After a failure: open the next stream (sets ``self.stream``) or end this one."""
        self.pool.metrics.failover(self.call.model,
                                 "mid_stream" if self.tokens else "before_first_byte")
        self.native = False
        while True:
            step = self._plan()
            if isinstance(step, FinishLength):
                assert self.meta is not None
                self.ended_ok = True
                yield sse_json(build_chunk(self.meta, "", "length"))
                yield DONE
                return
            if isinstance(step, GiveUp):
                self.pool.metrics.stream_errors[(self.call.model, "gave_up")] += 1
                yield error_event(f"{step.reason} (last error: {self.last})")
                yield DONE
                return
            refused: ApiError | None = None
            try:
                await self._attempt(step)
                return
            except UpstreamAnswered as exc:
                if not is_replica_fault(exc.status):
                    refused = from_upstream(exc.status, exc.content)
            except UpstreamBroken as exc:
                if exc.why == EMPTY_STREAM:
                    refused = await self._diagnose(step.replica)
            except ContinuationImpossible as exc:
                self.continuable = False
                self.last = str(exc)
            if refused is not None and refused.api_code == CONTEXT_FULL and self.meta:
                # the text sent fills the context: where an engine ends such an answer
                self.ended_ok = True
                yield sse_json(build_chunk(self.meta, "", "length"))
                yield DONE
                return
            if refused is not None:  # the continuation itself is refused
                self.continuable = False
                self.last = refused.message

    # ---- one attempt ------------------------------------------------------------------

    def _plan(self) -> Any:
        progress = Progress(tokens=self.tokens, started=self.meta is not None)
        return plan_next(self.pool.candidates(self.call.model, self.tried), progress,
                         attempts=self.attempts, max_attempts=self.pool.cfg.max_attempts,
                         continuable=self.continuable, max_tokens=self.max_tokens)

    async def _attempt(self, step: TryFresh | TryContinue) -> None:
        """Open a stream on ``step.replica`` and read its first event into ``pending``."""
        replica, call, pool = step.replica, self.call, self.pool
        if isinstance(step, TryContinue):
            cont = continuation_body(call.body, chat=call.chat, profile=call.profile,
                                     sent_text="".join(self.parts), max_tokens=step.max_tokens)
            self.sent = ("/v1/completions", cont)
            path, body = "/v1/completions", dumps(cont)
        else:
            self.sent = (call.path, call.body)
            body, path = call.raw, call.path
        self.tried.add(replica.replica_id)
        self.attempts += 1
        t0 = pool.clock()
        pool.begin(replica)
        self.replica = replica
        try:
            stream = await pool.upstream.watched(
                pool.upstream.open_stream(replica, path, body, pool.cfg.first_token_timeout_s),
                replica, pool.cfg.token_gap_timeout_s)
        except UpstreamAnswered as exc:
            self.last = answered(replica, exc)
            pool.end(replica)
            if is_replica_fault(exc.status):
                pool.failed(replica, cool=exc.status in COOL_STATUSES)
            else:
                pool.succeeded(replica, pool.clock() - t0)
            self.replica = None
            raise
        except UpstreamBroken as exc:
            self.last = f"{replica.replica_id}: {exc.why}"
            pool.end(replica)
            pool.failed(replica, cool=exc.cool)
            self.replica = None
            raise
        self.stream = stream
        try:
            first = await pool.upstream.watched(
                stream.next_data(max(0.1, pool.cfg.first_token_timeout_s - (pool.clock() - t0))),
                replica, pool.cfg.token_gap_timeout_s)
            if first is None:
                raise UpstreamBroken(EMPTY_STREAM, cool=False)
        except UpstreamBroken as exc:
            # hung up before saying anything: the request itself may be at fault (open()
            # asks); gone silent: the replica is
            err = exc if exc.silent else UpstreamBroken(EMPTY_STREAM, cool=False)
            self.last = f"{replica.replica_id}: {exc.why}"
            await self._drop(failed=True, cool=err.cool)
            raise err from None
        pool.succeeded(replica, pool.clock() - t0)
        self.pending = first

    async def _drop(self, *, failed: bool, cool: bool = True) -> None:
        stream, self.stream = self.stream, None
        replica, self.replica = self.replica, None
        share, self.on_replica = self.on_replica, None
        if stream is not None:
            await stream.aclose()
        if replica is not None:
            if share is not None:  # the tokens after its first, over the time they took
                self.pool.generated(replica, share[1] - 1, self.pool.clock() - share[0])
            self.pool.end(replica)
            if failed:
                self.pool.failed(replica, cool=cool)

    # ---- chunks -----------------------------------------------------------------------

    def _relay_batch(self, data: str) -> tuple[bytes, UpstreamBroken | None]:
        """``data`` and whatever else has already arrived, as one write to the client (a
        relay that fell behind catches up in fewer, larger writes)."""
        assert self.stream is not None
        parts: list[bytes] = []
        try:
            while True:
                out = self._relay(data)
                if out:
                    parts.append(out)
                more = self.stream.buffered_data()
                if more is None:
                    break
                if more == "[DONE]":
                    self.pending = more
                    break
                data = more
        except UpstreamBroken as exc:
            return b"".join(parts), exc
        return b"".join(parts), None

    def _relay(self, data: str) -> bytes | None:
        try:
            obj = json.loads(data)
        except ValueError:
            raise UpstreamBroken(f"garbled chunk from the engine: {data[:80]!r}") from None
        if not isinstance(obj, dict):
            raise UpstreamBroken(f"unexpected chunk from the engine: {data[:80]!r}")
        if "error" in obj:
            raise UpstreamBroken(f"the engine reported an error mid-stream: {obj['error']}",
                                 cool=False)
        d = read_delta(obj)
        if self.meta is None:
            self.meta = meta_of(obj, chat=self.call.chat, fallback_model=self.call.model,
                                fallback_id=f"gh-{id(self):x}", now=int(time.time()))
        if d.text:
            if self.first_token_at is None:
                self.first_token_at = self.pool.clock()
                self.pool.metrics.first_token(self.call.model,
                                            self.first_token_at - self.call.started)
            self.parts.append(d.text)
            self.tokens += 1
            at, n = self.on_replica or (self.pool.clock(), 0)
            self.on_replica = (at, n + 1)
        if d.finish_reason:
            self.finished = True
        if self.native:
            return sse(data)
        if not d.text and not d.finish_reason:
            return None  # role-only or usage chunks of a continuation
        return sse_json(build_chunk(self.meta, d.text, d.finish_reason))

    def _account(self) -> None:
        pool, call = self.pool, self.call
        pool.metrics.request_done(call.model, call.route, 200, pool.clock() - call.started)
        if not self.ended_ok:
            pool.metrics.stream_errors[(call.model, "incomplete")] += 1
        prompt = call.prompt_tokens_estimate()
        pool.metrics.add_tokens(call.model, prompt, self.tokens)
        call.charge(prompt + self.tokens)


EMPTY_STREAM = "the stream ended before its first event"
CONTEXT_FULL = "context_length_exceeded"
