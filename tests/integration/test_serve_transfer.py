"""push_model over SFTP (transport.sftp_files) against a real asyncssh server on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest

from gpuhive.serve.errors import ChecksumMismatch, TransferError
from gpuhive.serve.models.transfer import push_model
from gpuhive.transport.sftp_files import SftpFiles

T = TypeVar("T")
DATA = os.urandom(3 * 1024 * 1024 + 12345)
SHA = hashlib.sha256(DATA).hexdigest()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


class _Open(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False  # no authentication: a test server on loopback


class CuttingSFTP(asyncssh.SFTPServer):
    """Drops the whole SSH connection once ``cut_after`` bytes were written (a cable pulled)."""

    cut_after: int | None = None
    written = 0

    def write(self, file_obj: object, offset: int, data: bytes) -> Any:
        cls = type(self)
        if cls.cut_after is not None and cls.written + len(data) > cls.cut_after:
            self.channel.get_connection().abort()
            raise asyncssh.SFTPFailure("connection cut")
        cls.written += len(data)
        return super().write(file_obj, offset, data)


class FlippingSFTP(asyncssh.SFTPServer):
    """Flips one byte of everything written at offset 1 MiB: a disk that lies."""

    def write(self, file_obj: object, offset: int, data: bytes) -> Any:
        if offset <= (1 << 20) < offset + len(data):
            i = (1 << 20) - offset
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        return super().write(file_obj, offset, data)


async def _shell(process: asyncssh.SSHServerProcess[bytes]) -> None:
    proc = await asyncio.create_subprocess_shell(process.command or "true",
                                                 stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    process.stdout.write(out)
    process.stderr.write(err)
    process.exit(proc.returncode or 0)


@contextlib.asynccontextmanager
async def sftp(factory: Any = True) -> AsyncIterator[tuple[asyncssh.SSHClientConnection,
                                                              asyncssh.SFTPClient]]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    acceptor = await asyncssh.create_server(_Open, "127.0.0.1", 0, server_host_keys=[key],
                                            sftp_factory=factory, process_factory=_shell,
                                            encoding=None)
    port = acceptor.sockets[0].getsockname()[1]
    try:
        async with asyncssh.connect("127.0.0.1", port, known_hosts=None, username="t",
                                    client_keys=None) as conn, \
                conn.start_sftp_client() as client:
            yield conn, client
    finally:
        acceptor.close()
        await acceptor.wait_closed()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    p = tmp_path / "local" / "model.gguf"
    p.parent.mkdir()
    p.write_bytes(DATA)
    return p


def test_push_then_skip_when_already_there(tmp_path: Path, model: Path) -> None:
    remote = str(tmp_path / "node" / "models" / "model.gguf")
    seen: list[tuple[int, int]] = []

    async def go() -> None:
        async with sftp() as (conn, client):
            r = await push_model(SftpFiles(conn, client, "node"), model, remote, SHA,
                                 progress=lambda d, t: seen.append((d, t)))
            assert (r.sent, r.resumed_from, r.skipped) == (len(DATA), 0, False)
            again = await push_model(SftpFiles(conn, client, "node"), model, remote, SHA)
            assert again.skipped and again.sent == 0
    run(go())
    assert Path(remote).read_bytes() == DATA and not Path(remote + ".part").exists()
    assert seen[0] == (0, len(DATA)) and seen[-1] == (len(DATA), len(DATA))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_an_interrupted_push_resumes_from_the_partial_file(tmp_path: Path, model: Path) -> None:
    remote = str(tmp_path / "node" / "model.gguf")
    CuttingSFTP.cut_after, CuttingSFTP.written = 1_500_000, 0

    async def first() -> None:
        async with sftp(CuttingSFTP) as (conn, client):
            await push_model(SftpFiles(conn, client, "node"), model, remote, SHA)
    with pytest.raises(TransferError) as info:
        run(first())
    assert "resumes" in info.value.hint
    partial = Path(remote + ".part").stat().st_size
    assert 0 < partial <= 1_500_000 and not Path(remote).exists()

    CuttingSFTP.cut_after = None

    async def second() -> None:
        async with sftp(CuttingSFTP) as (conn, client):
            r = await push_model(SftpFiles(conn, client, "node"), model, remote, SHA)
            assert r.resumed_from == partial and r.sent == len(DATA) - partial
    run(second())
    assert Path(remote).read_bytes() == DATA


def test_a_partial_file_with_a_wrong_prefix_is_not_kept(tmp_path: Path, model: Path) -> None:
    remote = tmp_path / "model.gguf"
    Path(str(remote) + ".part").write_bytes(b"\0" * 100_000)

    async def go() -> None:
        async with sftp() as (conn, client):
            r = await push_model(SftpFiles(conn, client, "node"), model, str(remote), SHA)
            assert r.resumed_from == 0 and r.sent == len(DATA)
    run(go())
    assert remote.read_bytes() == DATA


def test_a_corrupt_arrival_is_refused_and_never_placed(tmp_path: Path, model: Path) -> None:
    remote = tmp_path / "model.gguf"
    remote.write_bytes(b"the old, good file")

    async def go() -> None:
        async with sftp(FlippingSFTP) as (conn, client):
            await push_model(SftpFiles(conn, client, "node"), model, str(remote), SHA)
    with pytest.raises(ChecksumMismatch, match="arrived corrupt"):
        run(go())
    assert remote.read_bytes() == b"the old, good file"  # untouched
    assert not Path(str(remote) + ".part").exists()


def test_a_local_file_that_does_not_match_is_not_pushed(tmp_path: Path, model: Path) -> None:
    async def go() -> None:
        async with sftp() as (conn, client):
            await push_model(SftpFiles(conn, client, "node"), model, str(tmp_path / "x.gguf"),
                             "0" * 64)
    with pytest.raises(ChecksumMismatch, match="refusing to push"):
        run(go())
    assert not (tmp_path / "x.gguf.part").exists()
