"""Push a model file to a node over SFTP: resumable, hash-checked, atomically placed.

    REMOTE.part exists with k bytes ──▶ sha256(first k bytes) equal on both sides?
        yes: append from k            no: start over (truncate)
    upload the rest (progress callback after each block)
    sha256(REMOTE.part) == expected ──▶ rename to REMOTE (POSIX rename: atomic)
                          otherwise ──▶ delete REMOTE.part, ChecksumMismatch

The remote hash comes from a ``RemoteHasher``. The default reads the file back over the
same SFTP session (correct anywhere, but it moves the bytes twice); the controller should
pass ``exec_hasher(conn)``, which runs ``sha256sum`` on the node through the same SSH
connection, so only a hex digest comes back. A final file that is already there with the
right hash is not sent again.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from gpuhive.serve.errors import ChecksumMismatch, TransferError
from gpuhive.serve.hashing import sha256_file

BLOCK = 1 << 20
Progress = Callable[[int, int], None]  # (bytes present on the node, total bytes)
RemoteHasher = Callable[[str, int], Awaitable[str]]  # (remote path, first n bytes) -> hex


@dataclass(frozen=True)
class PushResult:
    remote_path: str
    size: int
    sent: int  # bytes uploaded by this call
    resumed_from: int  # bytes already on the node that were kept
    skipped: bool  # the final file was already there and right


def sftp_readback_hasher(sftp: asyncssh.SFTPClient) -> RemoteHasher:
    async def hasher(path: str, length: int) -> str:
        h = hashlib.sha256()
        async with sftp.open(path, "rb") as f:
            done = 0
            while done < length:
                block = await f.read(min(4 * BLOCK, length - done), done)
                if not block:
                    break
                h.update(block if isinstance(block, bytes) else block.encode())
                done += len(block)
        return h.hexdigest()

    return hasher


def exec_hasher(conn: asyncssh.SSHClientConnection) -> RemoteHasher:
    """Hash on the node (``head -c N FILE | sha256sum``, or ``shasum -a 256`` on macOS)."""

    async def hasher(path: str, length: int) -> str:
        q = shlex.quote(path)
        cmd = (f"head -c {int(length)} {q} | (sha256sum 2>/dev/null || shasum -a 256) "
               f"| cut -c1-64")
        result = await conn.run(cmd, check=False)
        out, err = _text(result.stdout).strip(), _text(result.stderr).strip()
        if result.exit_status != 0 or len(out) != 64:
            raise TransferError(f"cannot hash {path} on the node: {err or out}",
                                hint="the node needs sha256sum (coreutils) or shasum",
                                path=path)
        return out

    return hasher


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


async def push_model(sftp: asyncssh.SFTPClient, local: Path, remote: str, sha256: str, *,
                     progress: Progress | None = None, remote_hasher: RemoteHasher | None = None,
                     verify_local: bool = True) -> PushResult:
    """Make ``remote`` on the node a byte-exact copy of ``local`` (whose hash is ``sha256``)."""
    sha256 = sha256.lower()
    if verify_local and sha256_file(local) != sha256:
        raise ChecksumMismatch(f"{local} does not match its sha256; refusing to push it",
                               hint="fetch the model again", path=str(local), expected=sha256)
    hasher = remote_hasher or sftp_readback_hasher(sftp)
    total = local.stat().st_size
    part = remote + ".part"
    try:
        parent = posixpath.dirname(remote)
        if parent:
            await sftp.makedirs(parent, exist_ok=True)
        if await _size(sftp, remote) == total and await hasher(remote, total) == sha256:
            if progress:
                progress(total, total)
            return PushResult(remote, total, 0, total, skipped=True)
        offset = await _resumable_prefix(sftp, hasher, local, part, total)
        if progress:
            progress(offset, total)
        sent = await _upload(sftp, local, part, offset, total, progress)
        remote_sha = await hasher(part, total)
        if remote_sha != sha256 or await _size(sftp, part) != total:
            await sftp.remove(part)
            raise ChecksumMismatch(
                f"{remote} arrived corrupt on the node (sha256 {remote_sha[:16]}…, expected "
                f"{sha256[:16]}…); refused and deleted",
                hint="push again; if it repeats, check the node's disk and memory",
                path=remote, expected=sha256, actual=remote_sha)
        await _rename_into_place(sftp, part, remote)
    except (asyncssh.Error, OSError) as exc:
        raise TransferError(f"pushing {local.name} to {remote} failed: {exc}",
                            hint="run it again: the transfer resumes where it stopped",
                            path=remote) from exc
    return PushResult(remote, total, sent, offset, skipped=False)


async def _size(sftp: asyncssh.SFTPClient, path: str) -> int | None:
    try:
        attrs = await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile:
        return None
    return attrs.size


async def _resumable_prefix(sftp: asyncssh.SFTPClient, hasher: RemoteHasher, local: Path,
                            part: str, total: int) -> int:
    """How many bytes of ``part`` can be kept: its size if that prefix matches, else 0."""
    have = await _size(sftp, part)
    if not have or have > total:
        return 0
    if await hasher(part, have) == sha256_file(local, have):
        return have
    return 0


async def _upload(sftp: asyncssh.SFTPClient, local: Path, part: str, offset: int, total: int,
                  progress: Progress | None) -> int:
    sent = 0
    # "wb" truncates a part that could not be kept; "r+b" keeps the verified prefix
    async with sftp.open(part, "r+b" if offset else "wb") as dst:
        with open(local, "rb") as src:
            src.seek(offset)
            pos = offset
            while pos < total:
                block = src.read(BLOCK)
                if not block:
                    break
                await dst.write(block, pos)  # asyncssh pipelines a big write internally
                pos += len(block)
                sent += len(block)
                if progress:
                    progress(pos, total)
    return sent


async def _rename_into_place(sftp: asyncssh.SFTPClient, part: str, remote: str) -> None:
    try:
        await sftp.posix_rename(part, remote)
    except asyncssh.SFTPOpUnsupported:
        if await _size(sftp, remote) is not None:
            await sftp.remove(remote)
        await sftp.rename(part, remote)
