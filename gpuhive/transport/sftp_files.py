"""``transport.api.RemoteFiles`` over one asyncssh connection: SFTP for the bytes, the
node's own ``sha256sum`` (``shasum -a 256`` on macOS) for hashes, so only a digest comes
back instead of the file."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import AsyncIterator

import asyncssh

from gpuhive.errors import NodeUnreachable, RemoteFileError


class SftpFiles:
    def __init__(self, conn: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient,
                 node: str) -> None:
        self._conn = conn
        self._sftp = sftp
        self._node = node

    def _broke(self, what: str, exc: Exception) -> NodeUnreachable:
        return NodeUnreachable(f"{what} on {self._node} failed: {exc}", node=self._node,
                               hint="run it again: pushes resume where they stopped")

    async def size(self, path: str) -> int | None:
        try:
            attrs = await self._sftp.stat(path)
        except asyncssh.SFTPNoSuchFile:
            return None
        except (OSError, asyncssh.Error) as exc:
            raise self._broke(f"stat {path}", exc) from exc
        return attrs.size

    async def sha256(self, path: str, length: int) -> str:
        q = shlex.quote(path)
        cmd = (f"head -c {int(length)} {q} | (sha256sum 2>/dev/null || shasum -a 256) "
               f"| cut -c1-64")
        try:
            result = await self._conn.run(cmd, check=False)
        except (OSError, asyncssh.Error) as exc:
            raise self._broke(f"hashing {path}", exc) from exc
        out, err = _text(result.stdout).strip(), _text(result.stderr).strip()
        if result.exit_status != 0 or len(out) != 64:
            raise RemoteFileError(f"cannot hash {path} on {self._node}: {err or out}",
                                  hint="the node needs sha256sum (coreutils) or shasum",
                                  path=path, node=self._node)
        return out

    async def makedirs(self, path: str) -> None:
        try:
            await self._sftp.makedirs(path, exist_ok=True)
        except (OSError, asyncssh.Error) as exc:
            raise self._broke(f"mkdir {path}", exc) from exc

    @contextlib.asynccontextmanager
    async def open_write(self, path: str, *, keep: bool) -> AsyncIterator[_SftpFile]:
        try:
            async with self._sftp.open(path, "r+b" if keep else "wb") as f:
                yield _SftpFile(f)
        except (OSError, asyncssh.Error) as exc:
            raise self._broke(f"writing {path}", exc) from exc

    async def replace(self, src: str, dst: str) -> None:
        try:
            try:
                await self._sftp.posix_rename(src, dst)
            except asyncssh.SFTPOpUnsupported:
                if await self.size(dst) is not None:
                    await self._sftp.remove(dst)
                await self._sftp.rename(src, dst)
        except (OSError, asyncssh.Error) as exc:
            raise self._broke(f"renaming {src}", exc) from exc

    async def remove(self, path: str) -> None:
        try:
            await self._sftp.remove(path)
        except asyncssh.SFTPNoSuchFile:
            pass
        except (OSError, asyncssh.Error) as exc:
            raise self._broke(f"removing {path}", exc) from exc


class _SftpFile:
    def __init__(self, f: asyncssh.SFTPClientFile) -> None:
        self._f = f

    async def write(self, data: bytes, offset: int) -> None:
        await self._f.write(data, offset)  # asyncssh pipelines a big write internally


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""
