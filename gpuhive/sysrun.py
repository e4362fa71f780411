"""Run a system command here, optionally inside a network namespace. I/O.

The overlay driver runs ``ip``/``wg`` this way on a node (``ns`` None) and on lab hosts
(``ns`` a namespace name); the lab builds its namespaces with the same two functions.
"""

from __future__ import annotations

import subprocess

from gpuhive.errors import CommandFailed

_TOOL_PACKAGE = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables", "sysctl": "procps"}


def exec_argv(ns: str | None, argv: list[str]) -> list[str]:
    """argv run inside namespace ``ns``; None means the current one."""
    return list(argv) if ns is None else ["ip", "netns", "exec", ns, *argv]


def run(argv: list[str], *, input: str | None = None, check: bool = True,
        timeout_s: float = 60.0) -> str:
    """Run a command, return stdout+stderr; raise CommandFailed when it fails and check."""
    try:
        proc = subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout_s,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError as exc:
        pkg = _TOOL_PACKAGE.get(argv[0], argv[0])
        raise CommandFailed(argv, 127, str(exc), hint=f"install {pkg}") from exc
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else ""
        raise CommandFailed(argv, -1, out + f"\ntimed out after {timeout_s:g}s") from exc
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stdout)
    return proc.stdout
