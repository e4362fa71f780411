import asyncio
import hashlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from gpuhive.serve.errors import ChecksumMismatch, ChecksumRequired
from gpuhive.serve.models.catalog import ModelRef
from gpuhive.serve.models.fetch import LocalModel, download, materialize

T = TypeVar("T")

DATA = bytes(range(256)) * 4000  # ~1 MB
SHA = hashlib.sha256(DATA).hexdigest()


def server(data: bytes, log: list[str], *, honour_range: bool = True) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        rng = request.headers.get("range")
        log.append(rng or "")
        if rng and honour_range:
            start = int(rng.split("=")[1].rstrip("-"))
            return httpx.Response(206, content=data[start:])
        return httpx.Response(200, content=data)
    return httpx.MockTransport(handler)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_download_resumes_from_the_partial_file(tmp_path: Path) -> None:
    dest = tmp_path / "m.gguf"
    (tmp_path / "m.gguf.part").write_bytes(DATA[:300_000])
    log: list[str] = []
    seen: list[tuple[int, int]] = []

    async def go() -> None:
        async with httpx.AsyncClient(transport=server(DATA, log)) as c:
            await download(c, "https://x/m.gguf", dest, SHA, lambda d, t: seen.append((d, t)))
    run(go())
    assert log == ["bytes=300000-"] and dest.read_bytes() == DATA
    assert seen[-1] == (len(DATA), len(DATA)) and not (tmp_path / "m.gguf.part").exists()


def test_a_server_ignoring_range_starts_over(tmp_path: Path) -> None:
    dest = tmp_path / "m.gguf"
    (tmp_path / "m.gguf.part").write_bytes(b"junk" * 1000)
    log: list[str] = []

    async def go() -> None:
        async with httpx.AsyncClient(transport=server(DATA, log, honour_range=False)) as c:
            await download(c, "https://x/m.gguf", dest, SHA)
    run(go())
    assert dest.read_bytes() == DATA


def test_a_corrupt_download_is_refused_and_removed(tmp_path: Path) -> None:
    dest = tmp_path / "m.gguf"
    bad = DATA[:1000] + b"X" + DATA[1001:]

    async def go() -> None:
        async with httpx.AsyncClient(transport=server(bad, [])) as c:
            await download(c, "https://x/m.gguf", dest, SHA)
    with pytest.raises(ChecksumMismatch):
        run(go())
    assert not dest.exists() and not (tmp_path / "m.gguf.part").exists()


def test_materialize_generate_path_and_url(tmp_path: Path) -> None:
    gen = run(materialize(ModelRef("tiny-test", generate="tiny-llama"), tmp_path))
    assert gen.path == tmp_path / "tiny-test.gguf"
    assert gen.sha256 == hashlib.sha256(gen.path.read_bytes()).hexdigest()
    own = run(materialize(ModelRef("own", path=gen.path), tmp_path))
    assert own.sha256 == gen.sha256
    with pytest.raises(ChecksumMismatch):
        run(materialize(ModelRef("own", path=gen.path, sha256="0" * 64), tmp_path))
    with pytest.raises(ChecksumRequired):
        run(materialize(ModelRef("u", url="https://x/u.gguf"), tmp_path))

    async def go() -> LocalModel:
        async with httpx.AsyncClient(transport=server(DATA, [])) as c:
            return await materialize(ModelRef("u", url="https://x/u.gguf", sha256=SHA),
                                     tmp_path, client=c)
    got = run(go())
    assert got.path.read_bytes() == DATA and got.path.name == f"u-{SHA[:12]}.gguf"
