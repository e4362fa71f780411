"""`gpuhive enroll --service` writes the systemd user unit and enables it via systemctl."""

import os
import stat
import sys
from pathlib import Path

import pytest

from gpuhive.cli.agent import install_service
from gpuhive.errors import CommandFailed, StateError


def _fake_systemctl(bin_dir: Path, log: Path, exit_code: int = 0) -> None:
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit {exit_code}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_unit_is_written_and_enabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls"
    _fake_systemctl(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    install_service(tmp_path / "home")
    unit = (tmp_path / "config/systemd/user/gpuhive-agent.service").read_text()
    assert f"Environment=GPUHIVE_HOME={tmp_path / 'home'}" in unit
    assert f"ExecStart={sys.executable} -m gpuhive agent" in unit
    assert "Restart=always" in unit and "{" not in unit
    assert log.read_text().splitlines() == ["--user daemon-reload",
                                            "--user enable --now gpuhive-agent.service"]


def test_failing_systemctl_is_a_clear_error(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_systemctl(tmp_path / "bin", tmp_path / "calls", exit_code=1)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    with pytest.raises(CommandFailed, match="exited with 1") as info:
        install_service(tmp_path / "home")
    assert "enable-linger" in info.value.hint


def test_no_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StateError, match="systemctl is not available"):
        install_service(tmp_path / "home")
