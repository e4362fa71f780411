"""The owner's commands as a user types them: init, up --detach, status, invite ls/revoke,
down — and nothing left running afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gpuhive.pids import alive
from gpuhive.ports import free_port


def _gh(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUHIVE_")}
    env.update(GPUHIVE_HOME=str(home), GPUHIVE_HTTP_PORT="0")
    return subprocess.run([sys.executable, "-m", "gpuhive", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_owner_lifecycle(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    init = _gh(home, "init", "--endpoint", f"127.0.0.1:{port}", "--listen-port", str(port))
    assert init.returncode == 0 and "host key SHA256:" in init.stdout
    assert oct((home / "controller_host_key").stat().st_mode & 0o777) == "0o600"
    up = _gh(home, "up", "--detach", "--listen", f"127.0.0.1:{port}")
    assert up.returncode == 0, up.stderr
    pid = int((home / "controller.pid").read_text())
    try:
        again = _gh(home, "up", "--detach")
        assert again.returncode == 1 and "already runs" in again.stderr
        st = json.loads(_gh(home, "status", "--json").stdout)
        assert st["status"]["pid"] == pid and st["nodes"] == []
        inv = json.loads(_gh(home, "invite", "--name", "alice", "--json").stdout)
        assert inv["command"].startswith("gpuhive enroll ghv1_") and inv["state"] == "valid"
        listed = json.loads(_gh(home, "invite", "ls", "--json").stdout)
        assert [(t["id"], t["state"]) for t in listed] == [(inv["id"], "valid")]
        assert "token" not in listed[0]  # the secret is not kept, so it cannot be listed
        assert _gh(home, "invite", "revoke", inv["id"]).returncode == 0
        assert json.loads(_gh(home, "invite", "ls", "--json").stdout)[0]["state"] == "revoked"
        unknown = _gh(home, "invite", "revoke", "000000000000")
        assert unknown.returncode == 5 and "no join token" in unknown.stderr  # not found
        bad = _gh(home, "invite", "--anyone", "--ttl", "forever")
        assert bad.returncode == 2 and "not a duration" in bad.stderr
    finally:
        down = _gh(home, "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not alive(pid)
    assert not (home / "admin.sock").exists()
    gone = _gh(home, "status")
    assert gone.returncode == 1 and "no controller is running" in gone.stderr
