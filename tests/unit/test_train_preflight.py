"""The rendezvous preflight's listener and dialler, run for real on loopback.

The listener must be gone by the time it has seen every node: torchrun binds the same port
right after, and a listener still winding down made the host fail with "address in use".
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from gpuhive.ports import free_port
from gpuhive.train import launch


def _sh(command: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["/bin/sh", "-c", command],
                            env={**os.environ, "GPUHIVE_PYTHON": sys.executable})


def test_the_listener_exits_once_every_node_reached_it_and_frees_the_port() -> None:
    port = free_port()
    listener = _sh(launch.listen_command("127.0.0.1", port, expect=2, seconds=600))
    try:
        dialers = [_sh(launch.connect_command("127.0.0.1", port)) for _ in range(2)]
        assert [d.wait(timeout=20) for d in dialers] == [0, 0]
        assert listener.wait(timeout=60) == 0  # by itself: its deadline is 600 s away
    finally:
        listener.kill()
    with socket.socket() as s:  # what torchrun's store does next
        s.bind(("127.0.0.1", port))
        s.listen(1)


def test_a_node_that_cannot_reach_the_port_fails_its_dial() -> None:
    port = free_port()  # nobody listens there
    dialer = _sh(launch.connect_command("127.0.0.1", port, patience_s=0.3))
    assert dialer.wait(timeout=20) != 0
