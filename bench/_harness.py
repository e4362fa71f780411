"""Shared plumbing for the benchmarks: a temp dir, a real controller process, cleanup.

Every process a benchmark starts runs in its own session (its own process group) and is
registered with a ``Cleanup``; leaving the ``with`` block, by success, error, Ctrl-C or
SIGTERM, kills every group (SIGTERM, then SIGKILL) and removes the temp dir.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from gpuhive.controller import admin_client
from gpuhive.controller.home import init_controller
from gpuhive.errors import ControllerUnavailable
from gpuhive.ports import free_port, port_is_free

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark could not set up or measure what it meant to."""


class Cleanup:
    """Owns the temp dir and every child process group; tears all down on exit."""

    def __init__(self, prefix: str, keep: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(self.dir, 0o700)
        self.keep = keep
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._old_handlers: dict[int, Any] = {}

    def __enter__(self) -> Cleanup:
        # SIGTERM/SIGHUP behave like Ctrl-C: unwind through every finally block. SIGINT is
        # set explicitly too: a shell starts background jobs with it ignored.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, _raise_interrupt)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        # A second Ctrl-C (or SIGTERM) during teardown must not leave processes behind.
        for sig in self._old_handlers:
            signal.signal(sig, signal.SIG_IGN)
        try:
            self.stop_all()
            if self.keep:
                print(f"(kept {self.dir})", file=sys.stderr)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
        finally:
            for sig, handler in self._old_handlers.items():
                signal.signal(sig, handler)

    def spawn(self, role: str, argv: list[str], *, env: dict[str, str] | None = None,
              log: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        self.procs.append((role, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
        kill_group(proc, grace_s)
        self.procs = [(r, p) for r, p in self.procs if p is not proc]

    def stop_all(self) -> None:
        # Agents and simulators first, the controller (spawned first) last.
        for _role, proc in reversed(self.procs):
            kill_group(proc, 5.0)
        self.procs.clear()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def kill_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the process group, wait ``grace_s``, then SIGKILL the group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace_s)
    # The group can outlive its leader (a child of an agent's command): kill it in any case.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def free_port_range(width: int, tries: int = 50) -> tuple[int, int]:
    """A run of ``width`` consecutive loopback ports that are free now (best effort)."""
    rng = random.SystemRandom()
    for _ in range(tries):
        base = rng.randrange(20000, 32000 - width)
        if all(port_is_free(p) for p in range(base, base + width)):
            return base, base + width - 1
    raise BenchError(f"no run of {width} free ports found in 20000-32000")


def clean_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUHIVE_")}
    env["GPUHIVE_HOME"] = str(home)
    env.update(extra or {})
    return env


class ControllerProc:
    """A controller home plus a real `python -m gpuhive up` process."""

    def __init__(self, cleanup: Cleanup, root: Path, *, forward_ports: tuple[int, int],
                 env: dict[str, str] | None = None) -> None:
        self.cleanup = cleanup
        self.port = free_port()
        self.root = root
        self.home, _ = init_controller(root, {
            "endpoint": f"127.0.0.1:{self.port}", "listen_host": "127.0.0.1",
            "listen_port": self.port, "forward_port_min": forward_ports[0],
            "forward_port_max": forward_ports[1]})
        self.env = clean_env(root, env)
        self.log = root.parent / "controller.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def sock(self) -> Path:
        return self.home.admin_socket

    def start(self, argv_prefix: list[str] | None = None, timeout: float = 30.0) -> None:
        argv = [*(argv_prefix or [sys.executable]), "-m", "gpuhive", "up"]
        self.proc = self.cleanup.spawn("controller", argv, env=self.env, log=self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the controller exited at start (rc {self.proc.returncode})"
                                 f":\n{tail(self.log)}")
            try:
                self.call("status", timeout=2)
                return
            except ControllerUnavailable:
                time.sleep(0.1)
        raise BenchError(f"the controller did not answer `status` within {timeout:.0f} s:\n"
                         f"{tail(self.log)}")

    def call(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        return admin_client.call(self.sock, method, params, **kw)

    def stop(self) -> None:
        """SIGTERM and wait: the daemon shuts down cleanly (needed for --profile output)."""
        if self.proc is not None:
            self.cleanup.stop(self.proc, grace_s=20.0)
            self.proc = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of the man page); utime and stime are fields 14, 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no {path})"
    return "\n".join("    " + ln for ln in text.strip().splitlines()[-lines:])


def wait_until(what: str, check: Callable[[], Any], timeout: float, *,
               interval: float = 0.25, on_timeout: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = on_timeout() if on_timeout else ""
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}"
                             + (f": {detail}" if detail else ""))
        time.sleep(interval)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def exit_status(run: Callable[[], bool]) -> int:
    """A bench's exit status: 0 every target met, 1 some missed, 2 it could not measure,
    130 interrupted. Call it inside ``Cleanup`` so whatever started is stopped after."""
    try:
        ok = run()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    return 0 if ok else 1


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def machine_line() -> str:
    load = Path("/proc/loadavg").read_text().split()[:3]
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} cores {model}, load {' '.join(load)}, Python "
            f"{sys.version.split()[0]}")


def profile_argv(profile_dir: Path | None, role: str) -> list[str]:
    """``python`` or ``python -m cProfile -o DIR/ROLE.prof`` (written at a clean exit)."""
    if profile_dir is None:
        return [sys.executable]
    profile_dir.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-m", "cProfile", "-o", str(profile_dir / f"{role}.prof")]


def print_profiles(profile_dir: Path, top: int = 25) -> None:
    import pstats

    for prof in sorted(profile_dir.glob("*.prof")):
        print(f"\n---- {prof} (top {top} by own time) ----")
        pstats.Stats(str(prof)).strip_dirs().sort_stats("tottime").print_stats(top)
