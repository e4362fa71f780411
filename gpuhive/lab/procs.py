"""Background processes of the lab (agents, controller, sshd), each in its own session."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpuhive import pids as _pids
from gpuhive.errors import LabError
from gpuhive.sysrun import exec_argv, run

SSHD = "/usr/sbin/sshd"
alive = _pids.alive


def spawn(argv: list[str], *, ns: str | None, env: Mapping[str, str] | None = None,
          log_path: Path) -> int:
    """Start ``argv`` detached (new session), output appended to ``log_path``; return its pid.

    ``env`` None inherits ours. ``ip netns exec`` execs in place, so the pid is the program's.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full = exec_argv(ns, argv)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env=dict(env) if env is not None else None)
        except OSError as exc:
            raise LabError(f"could not start `{' '.join(full)}`: {exc}") from exc
    return proc.pid


def stop(pid: int, grace_s: float = 5.0) -> None:
    """SIGTERM the process group of ``pid``, wait, then SIGKILL it. Quiet if already gone."""
    _pids.terminate([pid], grace_s, group=True)


@dataclass(frozen=True)
class SshdHandle:
    """A running OpenSSH server: stands in for a friend's box that already has one."""

    pid: int
    port: int
    listen: str
    namespace: str | None
    host_key: str  # "ssh-ed25519 AAAA…", no comment
    config_path: Path
    log_path: Path

    def known_hosts_line(self, host: str | None = None) -> str:
        host = host or self.listen
        name = host if self.port == 22 else f"[{host}]:{self.port}"
        return f"{name} {self.host_key}\n"

    def stop(self, grace_s: float = 5.0) -> None:
        stop(self.pid, grace_s)


def sshd_config(*, workdir: Path, port: int, listen: str, user: str) -> str:
    """A private, key-only sshd_config whose every file lives in ``workdir``."""
    return "\n".join([
        f"Port {port}",
        f"ListenAddress {listen}",
        f"HostKey {workdir / 'ssh_host_ed25519_key'}",
        f"PidFile {workdir / 'sshd.pid'}",
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        f"AllowUsers {user}",
        # The files live in a test's tmp dir, not in ~user/.ssh with sshd's modes.
        "StrictModes no",
        # No PAM: the lab host is not a login system; root's "*" password is not "locked".
        "UsePAM no",
        "AllowTcpForwarding yes",
        "X11Forwarding no",
        "PrintMotd no",
        "Subsystem sftp internal-sftp",
        "LogLevel VERBOSE",
        "",
    ])


def start_sshd(ns: str | None, *, workdir: Path, port: int, listen: str,
               authorized_keys: list[str], user: str = "root",
               ready_timeout_s: float = 10.0) -> SshdHandle:
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "ssh_host_ed25519_key"
    for old in (key, key.with_suffix(".pub")):
        old.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gpuhive-lab", "-f", str(key)])
    keys = workdir / "authorized_keys"
    keys.write_text("".join(k.strip() + "\n" for k in authorized_keys))
    keys.chmod(0o600)
    config = workdir / "sshd_config"
    config.write_text(sshd_config(workdir=workdir, port=port, listen=listen, user=user))
    # sshd refuses to start without its privilege-separation dir.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    run([SSHD, "-t", "-f", str(config)])  # a bad config fails here, with sshd's reason
    log = workdir / "sshd.log"
    pid = spawn([SSHD, "-D", "-e", "-f", str(config)], ns=ns, env=None, log_path=log)
    _wait_listening(pid, log, ready_timeout_s)
    host_key = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    return SshdHandle(pid, port, listen, ns, host_key, config, log)


def _wait_listening(pid: int, log: Path, timeout_s: float) -> None:
    # sshd -e logs "Server listening on ADDR port N." once bound; watching the log
    # avoids having to connect from inside the namespace.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if "Server listening on" in text:
            return
        if not alive(pid):
            break
        time.sleep(0.05)
    stop(pid, 1.0)
    tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:]) \
        if log.exists() else ""
    raise LabError(f"sshd did not start listening: {tail or 'no output'}",
                   hint=f"see {log}", log=str(log))


def pids_running(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (e.g. a config path), for checks."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmd and alive(int(entry)):
            found.append(int(entry))
    return found
