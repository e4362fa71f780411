"""The agent's embedded SSH server on 127.0.0.1: exec, SFTP and local port forwards.

It accepts exactly one key, the controller's client key, and only on loopback; the
controller reaches it through the agent's reverse forward. Each command runs in its own
process group, killed when the channel closes, so an interrupted `nodes exec` leaves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets

import asyncssh

from gpuhive.agent import reaper
from gpuhive.transport.keys import CIPHERS, public_text

log = logging.getLogger(__name__)
STOP_GRACE_S = 10.0  # SIGTERM → SIGKILL: time for torchrun to stop workers, scripts to save
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class _EmbeddedConnection(asyncssh.SSHServer):
    def __init__(self, authorized_key: str) -> None:
        self.authorized_key = authorized_key

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return public_text(key) == self.authorized_key

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:
        # direct-tcpip to services on this node's loopback (a llama-server, say), nowhere else
        return dest_host in _LOCAL_HOSTS

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False


async def _run_process(process: asyncssh.SSHServerProcess[bytes]) -> None:
    command = process.command or os.environ.get("SHELL", "/bin/sh")
    env = dict(os.environ)
    env.update({k: v for k, v in (process.env or {}).items() if isinstance(k, str)
                and isinstance(v, str)})
    exec_id = secrets.token_hex(8)
    env[reaper.EXEC_ID_VAR] = exec_id
    try:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, env=env)
    except OSError as exc:
        process.stderr.write(f"gpuhive agent: cannot start command: {exc}\n".encode())
        process.exit(127)
        return
    feeder = asyncio.ensure_future(_feed_stdin(process, proc))
    work = asyncio.ensure_future(_relay(process, proc))
    # A command that prints nothing would never notice its channel closing; watch for it.
    hangup = asyncio.ensure_future(process.channel.wait_closed())
    try:
        await asyncio.wait({work, hangup}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (feeder, work, hangup):
            task.cancel()
        if proc.returncode is None or (hangup.done() and not work.done()):
            # the channel went away first (controller interrupted): stop everything the
            # command started, including children in their own sessions (torchrun workers)
            await reaper.stop_all(proc.pid, exec_id, STOP_GRACE_S)
            with contextlib.suppress(Exception):
                await proc.wait()


async def _relay(process: asyncssh.SSHServerProcess[bytes],
                 proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None and proc.stderr is not None
    try:
        await asyncio.gather(_copy(proc.stdout, process.stdout),
                             _copy(proc.stderr, process.stderr))
        status = await proc.wait()
        process.exit(status if status >= 0 else 128 - status)
    except (asyncssh.Error, ConnectionError, BrokenPipeError):
        pass


async def _copy(src: asyncio.StreamReader, dst: asyncssh.SSHWriter[bytes]) -> None:
    while data := await src.read(65536):
        dst.write(data)
        await dst.drain()


async def _feed_stdin(process: asyncssh.SSHServerProcess[bytes],
                      proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    try:
        while data := await process.stdin.read(65536):
            proc.stdin.write(data)
            await proc.stdin.drain()
    except (asyncssh.Error, ConnectionError, BrokenPipeError):
        pass
    finally:
        with contextlib.suppress(Exception):
            proc.stdin.close()


async def start_embedded_server(host_key: asyncssh.SSHKey, controller_client_key: str,
                                port: int = 0) -> tuple[asyncssh.SSHAcceptor, int]:
    acceptor = await asyncssh.create_server(
        lambda: _EmbeddedConnection(controller_client_key), "127.0.0.1", port,
        server_host_keys=[host_key], process_factory=_run_process, encoding=None,
        encryption_algs=CIPHERS,
        sftp_factory=True, allow_scp=True, agent_forwarding=False, x11_forwarding=False,
        server_version="gpuhive-agent", keepalive_interval=30)
    return acceptor, acceptor.get_port()
