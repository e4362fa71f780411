"""The gateway with real replicas: llama-cpp-python engines serving the generated tiny model,
driven by the official ``openai`` client (and raw httpx for malformed requests).

The engines and the gateway run in one background thread's event loop for the whole module
(``ServeStack``); the module fixture stops every engine process group on the way out,
pass or fail, and the engines die with this process in any case (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest

from gpuhive.ports import free_port
from gpuhive.serve.api import ModelProfile, Replica
from gpuhive.serve.gateway.apikeys import ApiKeyStore
from gpuhive.serve.gateway.app import Gateway, GatewayServer
from gpuhive.serve.gateway.pool import GatewayConfig, ReplicaPool
from gpuhive.serve.models.gguf_fit import read_gguf_info
from gpuhive.serve.models.hashing import sha256_file
from gpuhive.serve.models.tinymodel import write_tiny_model
from gpuhive.serve.node.local import LocalPool, local_replicas
from gpuhive.serve.node.supervisor import SupervisorConfig, WorkerState

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
T = TypeVar("T")
MODEL, EMBED, BARE = "tiny-test", "tiny-embed", "tiny-bare"
CONFIG = GatewayConfig(first_token_timeout_s=5.0, token_gap_timeout_s=1.5,
                       max_body_bytes=256 * 1024, cooldown_base_s=10.0, cooldown_cap_s=20.0)
SUPERVISE = SupervisorConfig(health_interval_s=0.3, startup_poll_s=0.05, backoff_base_s=0.2,
                             backoff_cap_s=1.0, max_restarts=None)
LONG = 400  # tokens: the tiny engine is still generating when a test strikes...
STRIKE_AT = 3  # ...after this many content chunks reached the client


@dataclass
class Source:
    """The ReplicaSource: the pools' replicas, or a test's own list while it is set."""

    pools: list[LocalPool] = field(default_factory=list)
    profiles: dict[str, ModelProfile] = field(default_factory=dict)
    override: list[Replica] | None = None

    def replicas(self) -> Sequence[Replica]:
        if self.override is not None:
            return self.override
        return [r for p in self.pools for r in p.source.items]

    def profile(self, model: str) -> ModelProfile | None:
        return self.profiles.get(model)


class ServeStack:
    def __init__(self, root: Path, n_ctx: int = 512) -> None:
        self.root = root
        self.n_ctx = n_ctx
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.exit = contextlib.AsyncExitStack()
        self.source = Source()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.call(self._start())

    async def _start(self) -> None:
        model = write_tiny_model(self.root / "tiny.gguf")
        sha, info = sha256_file(model), read_gguf_info(model)
        ctx = self.n_ctx
        tiny = ModelProfile(MODEL, ctx, info.chat_template, info.bos_token, info.eos_token)
        embed = ModelProfile(EMBED, ctx, embeddings=True)
        self.source.profiles = {MODEL: tiny, EMBED: embed, BARE: ModelProfile(BARE, ctx)}
        self.pool = await self.exit.enter_async_context(local_replicas(
            model, sha, tiny, 2, n_ctx=ctx, n_threads=1, log_dir=self.root, config=SUPERVISE))
        self.embed = await self.exit.enter_async_context(local_replicas(
            model, sha, embed, 1, n_ctx=ctx, n_threads=1, embeddings=True, log_dir=self.root,
            config=SUPERVISE))
        self.source.pools = [self.pool, self.embed]
        self.keys = ApiKeyStore(self.root / "keys.db")
        self.exit.callback(self.keys.close)
        self.gw = Gateway(ReplicaPool(self.source, config=CONFIG), keys=self.keys)
        self.server = GatewayServer(self.gw, port=0)
        await self.server.start()
        self.exit.push_async_callback(self.server.stop)
        self.url = self.server.base_url
        self.token, _ = self.keys.create("tests", now=time.time())

    def stop(self) -> None:
        try:
            self.call(self.exit.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def heal(self) -> None:
        """Back to two ready replicas, no cooldowns, the pools' own replica list."""
        async def wait() -> None:
            for _ in range(600):
                if all(s.status().state is WorkerState.READY for s in self.pool.supervisors):
                    break
                await asyncio.sleep(0.05)
            self.pool.refresh()
            self.gw.health.clear()
        self.source.override = None
        self.call(wait())

    def client(self, token: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=token or self.token,
                             max_retries=0, timeout=30)

    def direct(self, index: int = 0) -> str:
        return self.pool.supervisors[index].base_url

    def rates(self) -> list[float]:
        """tokens/s of every replica that has one."""
        return [h.tokens_per_s for h in self.gw.health.values() if h.tokens_per_s is not None]

    def serving(self) -> int:
        """Index of the tiny-test replica with a request in flight."""
        for i, r in enumerate(self.pool.source.items):
            h = self.gw.health.get(r.replica_id)
            if h is not None and h.in_flight:
                return i
        raise AssertionError("no replica is serving")

    def freeze(self, index: int) -> int:
        pid = self.pool.supervisors[index].status().pid
        assert pid
        os.killpg(pid, signal.SIGSTOP)
        return pid

    def failovers(self, kind: str) -> int:
        return self.gw.metrics.failovers[(MODEL, kind)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeStack]:
    s = ServeStack(tmp_path_factory.mktemp("serve"))
    try:
        s.start()
        yield s
    finally:
        s.stop()
        engines = [sup for p in (getattr(s, "pool", None), getattr(s, "embed", None)) if p
                   for sup in p.supervisors]
        assert all(sup.status().pid is None for sup in engines)


@pytest.fixture
def healthy(stack: ServeStack) -> Iterator[ServeStack]:
    stack.heal()
    yield stack
    stack.heal()


CHAT = [{"role": "user", "content": "Hi there"}]


def reference(stack: ServeStack, *, chat: bool, max_tokens: int) -> str:
    """The uninterrupted answer, straight from one engine (temperature 0: greedy)."""
    with httpx.Client(base_url=stack.direct(0), timeout=30) as c:
        if chat:
            r = c.post("/v1/chat/completions", json={"model": MODEL, "messages": CHAT,
                                                     "max_tokens": max_tokens,
                                                     "temperature": 0})
            return str(r.json()["choices"][0]["message"]["content"])
        r = c.post("/v1/completions", json={"model": MODEL, "prompt": "Once upon",
                                            "max_tokens": max_tokens, "temperature": 0})
        return str(r.json()["choices"][0]["text"])


def stream(stack: ServeStack, *, chat: bool, max_tokens: int, strike: Any = None,
           at: int = 0, client: openai.OpenAI | None = None,
           model: str = MODEL) -> tuple[str, list[Any]]:
    """Stream through the gateway; call ``strike()`` after ``at`` content chunks."""
    c = client or stack.client()
    if chat:
        it: Any = c.chat.completions.create(model=model, messages=CHAT,  # type: ignore[arg-type]
                                            max_tokens=max_tokens, temperature=0, stream=True)
    else:
        it = c.completions.create(model=model, prompt="Once upon", max_tokens=max_tokens,
                                  temperature=0, stream=True)
    parts, chunks = [], []
    at = at or STRIKE_AT
    for ch in it:
        chunks.append(ch)
        if not ch.choices:
            continue
        text = ch.choices[0].delta.content if chat else ch.choices[0].text
        if text:
            parts.append(text)
            if len(parts) == at and strike is not None:
                strike()
    return "".join(parts), chunks


# ---- answers --------------------------------------------------------------------------

@pytest.mark.parametrize("chat", [False, True], ids=["completion", "chat"])
def test_plain_and_streamed_answers_match_the_engine(healthy: ServeStack, chat: bool) -> None:
    want = reference(healthy, chat=chat, max_tokens=40)
    c = healthy.client()
    if chat:
        r = c.chat.completions.create(model=MODEL, messages=CHAT,  # type: ignore[arg-type]
                                      max_tokens=40, temperature=0)
        got = r.choices[0].message.content
    else:
        got = c.completions.create(model=MODEL, prompt="Once upon", max_tokens=40,
                                   temperature=0).choices[0].text
    assert got == want and len(want) == 40
    assert r.usage.completion_tokens == 40 if chat else True
    plain_rates = healthy.rates()
    assert len(plain_rates) == 1 and plain_rates[0] > 0  # from the engine's usage count
    healthy.gw.health.clear()
    text, chunks = stream(healthy, chat=chat, max_tokens=40)
    assert text == want
    assert len({ch.id for ch in chunks}) == 1
    assert chunks[-1].choices[0].finish_reason == "length"
    stream_rates = healthy.rates()  # from the tokens relayed, as `serve ls` shows
    assert len(stream_rates) == 1 and stream_rates[0] > 0


def test_models_health_and_embeddings(healthy: ServeStack) -> None:
    c = healthy.client()
    assert {m.id for m in c.models.list()} == {MODEL, EMBED}
    h = httpx.get(healthy.url + "/health").json()
    assert h["status"] == "ok" and h["replicas"] == {MODEL: 2, EMBED: 1}
    e = c.embeddings.create(model=EMBED, input="hello", encoding_format="float")
    assert e.data and e.data[0].embedding
    with pytest.raises(openai.BadRequestError) as info:
        c.embeddings.create(model=MODEL, input="hello", encoding_format="float")
    assert info.value.code == "embeddings_unsupported"


# ---- failover -------------------------------------------------------------------------

def struck_mid_stream(stack: ServeStack, scenario: Any, tries: int = 4) -> Any:
    """Run ``scenario()`` until its strike lands while the engine is still generating.

    On a loaded machine the tiny engine can finish all its tokens before the client has
    read the first few; then nothing was struck mid-stream and the scenario returns None
    (or raises ``NotStruck``): heal and run it again."""
    for _ in range(tries):
        with contextlib.suppress(NotStruck):
            result = scenario()
            if result is not None:
                return result
        stack.heal()
    raise AssertionError(f"the strike never landed mid-stream in {tries} tries")


class NotStruck(Exception):
    pass


@pytest.mark.parametrize("chat", [False, True], ids=["completion", "chat"])
def test_replica_killed_mid_stream_the_client_sees_one_whole_stream(
        healthy: ServeStack, chat: bool) -> None:
    want = reference(healthy, chat=chat, max_tokens=LONG)

    def scenario() -> tuple[str, list[Any]] | None:
        before = healthy.failovers("mid_stream")

        def kill() -> None:
            pid = healthy.freeze(healthy.serving())  # stop it generating this instant, then
            os.killpg(pid, signal.SIGKILL)  # it dies

        text, chunks = stream(healthy, chat=chat, max_tokens=LONG, strike=kill)
        return (text, chunks) if healthy.failovers("mid_stream") == before + 1 else None

    text, chunks = struck_mid_stream(healthy, scenario)
    assert text == want  # nothing repeated, nothing lost
    assert len({ch.id for ch in chunks}) == 1
    assert chunks[-1].choices[0].finish_reason == "length"


def test_a_stalled_replica_counts_as_failed_after_the_token_gap(healthy: ServeStack) -> None:
    want = reference(healthy, chat=False, max_tokens=LONG)

    def scenario() -> str | None:
        before = healthy.failovers("mid_stream")
        frozen: list[int] = []
        try:
            text, _ = stream(healthy, chat=False, max_tokens=LONG,
                             strike=lambda: frozen.append(healthy.freeze(healthy.serving())))
        finally:
            for pid in frozen:
                os.killpg(pid, signal.SIGCONT)
        return text if healthy.failovers("mid_stream") == before + 1 else None

    assert struck_mid_stream(healthy, scenario) == want


def test_failures_before_the_first_byte_are_invisible(healthy: ServeStack) -> None:
    real = healthy.pool.source.items[0]
    dead_port = free_port()
    with socket.socket() as hung:  # accepts connections (backlog), never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        hung_url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        healthy.source.override = [
            Replica("dead", MODEL, "gone", f"http://127.0.0.1:{dead_port}", 0.9),
            Replica("hung", MODEL, "stuck", hung_url, 0.8),
            real]
        want = reference(healthy, chat=False, max_tokens=20)
        before = healthy.failovers("before_first_byte")
        c = healthy.client()
        assert c.completions.create(model=MODEL, prompt="Once upon", max_tokens=20,
                                    temperature=0).choices[0].text == want
        assert healthy.failovers("before_first_byte") == before + 2
        healthy.gw.health.clear()
        text, _ = stream(healthy, chat=False, max_tokens=20)
        assert text == want and healthy.failovers("before_first_byte") == before + 4
        # the two bad replicas now cool down: the next request goes straight to the good one
        assert c.completions.create(model=MODEL, prompt="Once upon", max_tokens=5,
                                    temperature=0).choices[0].text == want[:5]
        assert healthy.failovers("before_first_byte") == before + 4


def test_no_replica_left_is_a_clean_502_and_none_at_all_a_503(healthy: ServeStack) -> None:
    healthy.source.override = [Replica("dead", MODEL, "gone",
                                       f"http://127.0.0.1:{free_port()}", 0.9)]
    c = healthy.client()
    with pytest.raises(openai.APIStatusError) as info:
        c.completions.create(model=MODEL, prompt="x", max_tokens=3)
    assert info.value.status_code == 502 and info.value.code == "upstream_failed"
    healthy.source.override = []
    with pytest.raises(openai.APIStatusError) as info:
        c.completions.create(model=MODEL, prompt="x", max_tokens=3, stream=True)
    assert info.value.status_code == 503 and info.value.code == "no_replica"


def test_a_stream_that_cannot_go_on_ends_with_an_error_event(healthy: ServeStack) -> None:
    want = reference(healthy, chat=False, max_tokens=LONG)

    def scenario() -> tuple[list[str], openai.APIError]:
        # one replica only: when it dies mid-stream there is nowhere to continue
        healthy.source.override = [healthy.pool.source.items[0]]
        got: list[str] = []
        try:
            for ch in healthy.client().completions.create(
                    model=MODEL, prompt="Once upon", max_tokens=LONG, temperature=0,
                    stream=True):
                got.append(ch.choices[0].text)
                if len(got) == STRIKE_AT:
                    os.killpg(healthy.freeze(0), signal.SIGKILL)
        except openai.APIError as exc:
            return got, exc
        raise NotStruck

    got, exc = struck_mid_stream(healthy, scenario)
    assert "failed" in str(exc)
    assert want.startswith("".join(got)) and len(got) < LONG


def test_a_chat_without_a_known_template_is_not_continued(healthy: ServeStack) -> None:
    def scenario() -> openai.APIError:
        # same engines, but the gateway does not know this model's chat template
        healthy.source.override = [Replica(f"bare-{i}", BARE, "local", r.base_url)
                                   for i, r in enumerate(healthy.pool.source.items)]

        def kill() -> None:
            for i, r in enumerate(healthy.source.override or []):
                h = healthy.gw.health.get(r.replica_id)
                if h and h.in_flight:
                    os.killpg(healthy.freeze(i), signal.SIGKILL)

        try:
            stream(healthy, chat=True, max_tokens=LONG, strike=kill, model=BARE)
        except openai.APIError as exc:
            return exc
        raise NotStruck

    assert "cannot be continued" in str(struck_mid_stream(healthy, scenario))


# ---- keys and limits -----------------------------------------------------------------

def test_keys_missing_invalid_scoped_and_revoked(healthy: ServeStack) -> None:
    def ask(token: str | None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(healthy.url + "/v1/completions", headers=headers,
                          json={"model": MODEL, "prompt": "x", "max_tokens": 2})

    r = ask(None)
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    assert ask("ghk_nope").json()["error"]["code"] == "invalid_api_key"
    scoped, _ = healthy.keys.create("embed-only", now=time.time(), models=(EMBED,))
    r = ask(scoped)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    assert [m.id for m in healthy.client(scoped).models.list()] == [EMBED]
    token, key = healthy.keys.create("soon-gone", now=time.time())
    assert ask(token).status_code == 200
    cli = ApiKeyStore(healthy.root / "keys.db")  # the CLI, another connection
    cli.revoke(key.key_id, now=time.time())
    cli.close()
    r = ask(token)
    assert r.status_code == 401 and r.json()["error"]["code"] == "revoked_api_key"
    with pytest.raises(openai.AuthenticationError):
        healthy.client(token).models.list()


def test_requests_per_minute_and_tokens_per_day(healthy: ServeStack) -> None:
    rpm, _ = healthy.keys.create("rpm", now=time.time(), rpm=2)
    c = healthy.client(rpm)
    for _ in range(2):
        c.completions.create(model=MODEL, prompt="x", max_tokens=2)
    with pytest.raises(openai.RateLimitError) as info:
        c.completions.create(model=MODEL, prompt="x", max_tokens=2)
    assert info.value.code == "rate_limit_exceeded"
    assert 1 <= int(info.value.response.headers["Retry-After"]) <= 30
    tpd, _ = healthy.keys.create("tpd", now=time.time(), tokens_per_day=20)
    c = healthy.client(tpd)
    text, _ = stream(healthy, chat=False, max_tokens=30, client=c)  # 30 tokens > 20
    assert len(text) == 30
    with pytest.raises(openai.RateLimitError) as info:
        c.completions.create(model=MODEL, prompt="x", max_tokens=2)
    assert info.value.code == "tokens_per_day_exceeded"
    assert int(info.value.response.headers["Retry-After"]) > 3600


# ---- bad input ------------------------------------------------------------------------

def test_bad_input_gets_openai_errors_and_the_gateway_keeps_serving(
        healthy: ServeStack) -> None:
    auth = {"Authorization": f"Bearer {healthy.token}"}
    url = healthy.url

    def post(path: str, **kw: Any) -> httpx.Response:
        return httpx.post(url + path, headers={**auth, **kw.pop("headers", {})}, timeout=30,
                          **kw)

    def err(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
        assert r.status_code == status, r.text
        e: dict[str, Any] = r.json()["error"]
        assert {"message", "type", "param", "code"} <= set(e)
        if code:
            assert e["code"] == code
        return e

    err(post("/v1/chat/completions", content=b"{not json"), 400, "invalid_json")
    err(post("/v1/chat/completions", content=b"\xff\xfe"), 400, "invalid_json")
    err(post("/v1/completions", json=[1, 2]), 400)
    err(post("/v1/completions", json={"model": "nope", "prompt": "x"}), 404, "model_not_found")
    e = err(post("/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": "9"}),
            400, "invalid_value")
    assert e["param"] == "max_tokens"
    err(post("/v1/chat/completions", json={"model": MODEL, "messages": []}), 400)
    big = {"model": MODEL, "prompt": "x" * (300 * 1024)}
    err(post("/v1/completions", json=big), 413, "body_too_large")

    def chunked() -> Iterator[bytes]:
        yield b'{"model": "tiny-test", "prompt": "'
        for _ in range(40):
            yield b"y" * 8192
        yield b'"}'
    err(post("/v1/completions", content=chunked()), 413, "body_too_large")
    over = {"model": MODEL, "prompt": "word " * 600, "max_tokens": 5}
    err(post("/v1/completions", json=over), 400, "context_length_exceeded")
    err(post("/v1/completions", json={**over, "stream": True}), 400, "context_length_exceeded")
    chat_over = {"model": MODEL, "messages": [{"role": "user", "content": "w " * 600}],
                 "stream": True}
    err(post("/v1/chat/completions", json=chat_over), 400, "context_length_exceeded")
    assert all(h.failures == 0 for h in healthy.gw.health.values())  # nobody blamed
    err(httpx.get(url + "/v1/nothing-here"), 404, "not_found")
    assert httpx.get(url + "/v1/completions").status_code == 405
    # and still serving
    assert healthy.client().completions.create(model=MODEL, prompt="x", max_tokens=3,
                                               temperature=0).choices[0].text


def test_metrics_are_counted(healthy: ServeStack) -> None:
    stream(healthy, chat=True, max_tokens=5)
    httpx.post(healthy.url + "/v1/completions", json={"model": "nope", "prompt": "x"},
               headers={"Authorization": f"Bearer {healthy.token}"})
    for _ in range(100):  # the relay finishes its books just after the client's [DONE]
        if healthy.gw.metrics.in_flight == 0:
            break
        time.sleep(0.02)
    snap = healthy.gw.metrics.snapshot()
    routes = {(r["model"], r["route"], r["status"]) for r in snap["requests"]}
    assert (MODEL, "chat", 200) in routes and ("-", "completions", 404) in routes
    assert snap["ttft_seconds"][MODEL]["count"] >= 1
    assert {t["kind"] for t in snap["tokens"] if t["model"] == MODEL} == {"prompt",
                                                                         "completion"}
    assert snap["in_flight"] == 0
    json.dumps(snap)
