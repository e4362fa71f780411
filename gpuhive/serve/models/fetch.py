"""Make a catalog entry's GGUF file exist locally, hash-checked: the controller's model cache.

* ``path`` entries: the file as it is; hashed when the catalog gives no sha256 (it is the
  owner's own file), checked when it does.
* ``generate`` entries: written by the generator into the cache once, then hashed.
* ``url`` entries: need a sha256 (``ChecksumRequired`` otherwise), download into
  ``CACHE/NAME-SHA12.gguf.part`` resuming with an HTTP Range request from what is there,
  and are renamed into place only when the whole file hashes right.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from gpuhive.serve.errors import CatalogError, ChecksumMismatch, TransferError
from gpuhive.serve.models.catalog import ModelRef
from gpuhive.serve.models.hashing import sha256_file, verify_sha256
from gpuhive.serve.models.tinymodel import write_tiny_model

Progress = Callable[[int, int], None]  # (bytes done, bytes total; 0 when unknown)


@dataclass(frozen=True)
class LocalModel:
    ref: ModelRef
    path: Path
    sha256: str
    size: int


async def materialize(ref: ModelRef, cache_dir: Path, *, client: httpx.AsyncClient | None = None,
                      progress: Progress | None = None) -> LocalModel:
    if ref.path is not None:
        if not ref.path.is_file():
            raise CatalogError(f"model {ref.name!r}: no such file {ref.path}",
                               hint=f"fix models.{ref.name}.path in {ref.origin}",
                               model=ref.name, path=str(ref.path))
        return _checked(ref, ref.path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if ref.generate is not None:
        path = cache_dir / f"{ref.name}.gguf"
        if not path.exists():
            write_tiny_model(path)
        return _checked(ref, path)
    assert ref.url is not None
    sha = ref.require_sha256()
    path = cache_dir / f"{ref.name}-{sha[:12]}.gguf"
    if not path.exists():
        if client is None:
            async with httpx.AsyncClient(follow_redirects=True, timeout=60) as own:
                await download(own, ref.url, path, sha, progress)
        else:
            await download(client, ref.url, path, sha, progress)
    return _checked(ref, path)


def _checked(ref: ModelRef, path: Path) -> LocalModel:
    if ref.sha256:
        verify_sha256(path, ref.sha256)
        sha = ref.sha256
    else:
        sha = sha256_file(path)
    return LocalModel(ref, path, sha, path.stat().st_size)


async def download(client: httpx.AsyncClient, url: str, dest: Path, sha256: str,
                   progress: Progress | None = None) -> None:
    """Fetch ``url`` to ``dest`` via ``dest.part``, resuming; rename only if the hash matches."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        async with client.stream("GET", url, headers=headers) as resp:
            if resp.status_code == 416:  # the partial file is already complete (or bigger)
                have = -1
            elif resp.status_code not in (200, 206):
                raise TransferError(f"GET {url} answered {resp.status_code}",
                                    hint="check the URL in the catalog", url=url,
                                    status=resp.status_code)
            else:
                if resp.status_code == 200:
                    have = 0  # the server ignored the range: start over
                total = have + int(resp.headers.get("content-length", 0) or 0)
                with open(part, "r+b" if have else "wb") as f:
                    f.seek(have)
                    f.truncate()
                    async for block in resp.aiter_bytes(1 << 20):
                        f.write(block)
                        have += len(block)
                        if progress:
                            progress(have, total)
    except httpx.HTTPError as exc:
        raise TransferError(f"download of {url} failed after {max(have, 0)} bytes: {exc}",
                            hint="run the command again: the download resumes", url=url) from exc
    try:
        verify_sha256(part, sha256)
    except ChecksumMismatch:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
