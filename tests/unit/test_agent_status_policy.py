"""`gpuhive agent status` and `agent policy` as the friend reads them."""

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpuhive.agent.errors import REMOVED_EXIT
from gpuhive.agent.policy import describe_policy, parse_max_gpus
from gpuhive.agent.state import AgentIdentity
from gpuhive.cli.agent import install_service, status_line, status_view
from gpuhive.cli.main import app
from gpuhive.core.ranking import OwnerPolicy
from gpuhive.errors import ConfigError

IDENT = AgentIdentity("n-1", "alice", "vps.example", 2222, "ssh-ed25519 A", "ssh-ed25519 B",
                      24000, 0.0)
NOW = 1000.0


def _line(st: dict, running: bool) -> tuple[dict, str]:
    d = status_view(IDENT, st, running)
    return d, status_line(d, NOW)


def test_removed_is_said_in_words_not_as_an_ssh_error() -> None:
    d, line = _line({"state": "removed", "last_error": "Permission denied", "pid": 5}, False)
    assert d["state"] == "removed" and not d["connected"]
    assert "removed from the hive by its owner" in line and "new token" in line
    assert "denied" not in line


def test_connected_disconnected_and_stopped() -> None:
    d, line = _line({"state": "connected", "connected": True, "since": NOW - 180}, True)
    assert d["connected"] and line == "agent alice connected to vps.example:2222 since 3m ago"
    d, line = _line({"state": "disconnected", "since": NOW - 20, "retry_at": NOW + 4,
                     "last_error": "nothing listens at vps.example:2222: is the controller up?"},
                    True)
    assert not d["connected"] and line.endswith("is the controller up?; retrying in 4.0 s")
    d, line = _line({"state": "connected", "connected": True, "updated_at": NOW - 30}, False)
    assert d["state"] == "stopped" and not d["connected"] and d["pid"] is None
    assert line == ("agent alice is not running (start it with `gpuhive agent`); "
                    "it stopped 30s ago")


@pytest.mark.parametrize(("text", "value"), [("all", None), ("ALL", None), ("0", 0), ("2", 2)])
def test_max_gpus_accepts_all(text: str, value: int | None) -> None:
    assert parse_max_gpus(text) == value


@pytest.mark.parametrize("bad", ["-1", "two", "", "1.5"])
def test_max_gpus_refuses_the_rest(bad: str) -> None:
    with pytest.raises(ConfigError, match="neither a number nor `all`"):
        parse_max_gpus(bad)


def test_policy_line_says_sharing_not_python_booleans() -> None:
    assert describe_policy(OwnerPolicy()) == \
        "sharing on · max GPUs all · reserved VRAM 0 MiB per GPU · schedule always"
    assert describe_policy(OwnerPolicy(paused=True, max_gpus=1)).startswith(
        "sharing paused (no new work) · max GPUs 1")
    assert "False" not in describe_policy(OwnerPolicy())


def test_policy_command_round_trips_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUHIVE_HOME", str(tmp_path))
    runner = CliRunner()
    one = runner.invoke(app, ["agent", "policy", "--max-gpus", "1"])
    assert one.exit_code == 0 and "max GPUs 1" in one.output
    back = runner.invoke(app, ["agent", "policy", "--max-gpus", "all"])
    assert back.exit_code == 0, back.output
    assert "max GPUs all" in back.output and "False" not in back.output
    assert json.loads((tmp_path / "policy.json").read_text())["max_gpus"] is None


def test_unit_does_not_restart_a_removed_agent(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    install_service(tmp_path / "home")
    unit = (tmp_path / "config/systemd/user/gpuhive-agent.service").read_text()
    assert f"RestartPreventExitStatus={REMOVED_EXIT}" in unit
    assert f"ExecStart={sys.executable} -m gpuhive agent" in unit
