"""Push a model file to a node: resumable, hash-checked, atomically placed.

    REMOTE.part exists with k bytes ──▶ sha256(first k bytes) equal on both sides?
        yes: append from k            no: start over (truncate)
    upload the rest (progress callback after each block)
    sha256(REMOTE.part) == expected ──▶ rename to REMOTE (POSIX rename: atomic)
                          otherwise ──▶ delete REMOTE.part, ChecksumMismatch

It works on ``transport.api.RemoteFiles`` (SFTP on a real node, memory in
``gpuhive.testing``); hashes are computed on the node, so only a digest comes back. A final
file that is already there with the right hash is not sent again.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpuhive.errors import NodeUnreachable, RemoteFileError
from gpuhive.serve.errors import ChecksumMismatch, TransferError
from gpuhive.serve.models.hashing import sha256_file
from gpuhive.transport.api import RemoteFiles

BLOCK = 1 << 20
Progress = Callable[[int, int], None]  # (bytes present on the node, total bytes)


@dataclass(frozen=True)
class PushResult:
    remote_path: str
    size: int
    sent: int  # bytes uploaded by this call
    resumed_from: int  # bytes already on the node that were kept
    skipped: bool  # the final file was already there and right


async def push_model(files: RemoteFiles, local: Path, remote: str, sha256: str, *,
                     progress: Progress | None = None,
                     verify_local: bool = True) -> PushResult:
    """Make ``remote`` on the node a byte-exact copy of ``local`` (whose hash is ``sha256``)."""
    sha256 = sha256.lower()
    if verify_local and sha256_file(local) != sha256:
        raise ChecksumMismatch(f"{local} does not match its sha256; refusing to push it",
                               hint="fetch the model again", path=str(local), expected=sha256)
    total = local.stat().st_size
    part = remote + ".part"
    try:
        parent = posixpath.dirname(remote)
        if parent:
            await files.makedirs(parent)
        if await files.size(remote) == total and await files.sha256(remote, total) == sha256:
            if progress:
                progress(total, total)
            return PushResult(remote, total, 0, total, skipped=True)
        offset = await _resumable_prefix(files, local, part, total)
        if progress:
            progress(offset, total)
        sent = await _upload(files, local, part, offset, total, progress)
        remote_sha = await files.sha256(part, total)
        if remote_sha != sha256 or await files.size(part) != total:
            await files.remove(part)
            raise ChecksumMismatch(
                f"{remote} arrived corrupt on the node (sha256 {remote_sha[:16]}…, expected "
                f"{sha256[:16]}…); refused and deleted",
                hint="push again; if it repeats, check the node's disk and memory",
                path=remote, expected=sha256, actual=remote_sha)
        await files.replace(part, remote)
    except (NodeUnreachable, RemoteFileError) as exc:
        raise TransferError(f"pushing {local.name} to {remote} failed: {exc.message}",
                            hint="run it again: the transfer resumes where it stopped",
                            path=remote) from exc
    return PushResult(remote, total, sent, offset, skipped=False)


async def _resumable_prefix(files: RemoteFiles, local: Path, part: str, total: int) -> int:
    """How many bytes of ``part`` can be kept: its size if that prefix matches, else 0."""
    have = await files.size(part)
    if not have or have > total:
        return 0
    if await files.sha256(part, have) == sha256_file(local, have):
        return have
    return 0


async def _upload(files: RemoteFiles, local: Path, part: str, offset: int, total: int,
                  progress: Progress | None) -> int:
    sent = 0
    # a fresh open truncates a part that could not be kept; keep=True keeps the prefix
    async with files.open_write(part, keep=bool(offset)) as dst:
        with open(local, "rb") as src:
            src.seek(offset)
            pos = offset
            while pos < total:
                block = src.read(BLOCK)
                if not block:
                    break
                await dst.write(block, pos)
                pos += len(block)
                sent += len(block)
                if progress:
                    progress(pos, total)
    return sent
