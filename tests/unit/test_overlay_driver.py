"""Driver behaviour that needs no root: privilege errors are clear and come first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpuhive.overlay import config, driver, sockbuf
from gpuhive.overlay.errors import OverlayError, OverlayPermissionError


def test_without_net_admin_bring_up_says_so(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setattr(driver.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(driver, "has_net_admin", lambda text: False)
    iface = config.spoke_interface("ghtest0", str(tmp_path / "k"), "10.77.0.2", "10.77.0.0/16")
    with pytest.raises(OverlayPermissionError, match="root or CAP_NET_ADMIN") as err:
        driver.bring_up(iface, subnet="10.77.0.0/16")
    assert "CAP_NET_ADMIN" in err.value.hint and "without the overlay" in err.value.hint
    assert isinstance(err.value, OverlayError) and err.value.code == "overlay_permission"


def test_refused_command_becomes_permission_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpuhive.errors import CommandFailed

    def refuse(argv: list[str], **kw: object) -> str:
        raise CommandFailed(argv, 2, "RTNETLINK answers: Operation not permitted")

    monkeypatch.setattr(driver, "run", refuse)
    with pytest.raises(OverlayPermissionError, match="refused"):
        driver.read_dump("ghtest0")


def test_missing_key_file(tmp_path: Path) -> None:
    iface = config.spoke_interface("ghtest0", str(tmp_path / "nope"), "10.77.0.2",
                                   "10.77.0.0/16")
    if driver.os.geteuid() != 0:
        pytest.skip("privilege check comes first without root")
    with pytest.raises(OverlayError, match="private key file"):
        driver.bring_up(iface, subnet="10.77.0.0/16")


@pytest.mark.skipif(os.geteuid() != 0, reason="SO_RCVBUFFORCE needs CAP_NET_ADMIN")
def test_grow_udp_buffers_of_another_process() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
         "s.bind(('127.0.0.1', 0)); print('ready', flush=True); input(); "
         "print(s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), "
         "s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF), flush=True)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        assert sockbuf.grow_udp_buffers(child.pid, 3 << 20) == 1
        out, _ = child.communicate("\n", timeout=10)
        assert out.split() == [str(6 << 20), str(6 << 20)]  # the kernel doubles the size
    finally:
        child.kill()
        child.wait()


def test_grow_udp_buffers_of_a_gone_process_is_a_no_op() -> None:
    p = subprocess.Popen(["true"])
    p.wait()
    assert sockbuf.grow_udp_buffers(p.pid) == 0
