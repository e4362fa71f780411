"""Apply a ``LabPlan`` to the machine with ip/nft/tc, and take labs down again."""

from __future__ import annotations

import os

from gpuhive import pids as _pids
from gpuhive.errors import CommandFailed, LabError
from gpuhive.lab.topology import NAMESPACE_RE, LabPlan
from gpuhive.sysrun import exec_argv, run

# exec_argv and run are the product's (gpuhive.sysrun); the lab's callers find them here too.
__all__ = ["build", "exec_argv", "is_root", "lab_prefixes", "list_lab_namespaces",
           "list_namespaces", "namespace_pids", "run", "teardown"]


def is_root() -> bool:
    return os.geteuid() == 0


def list_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"])
    # Lines look like "gh12ab-net (id: 3)" or just "gh12ab-net".
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def list_lab_namespaces() -> list[str]:
    """Namespaces that look like any lab's (``gh…-net``, ``gh…-f1``…), to find stray labs."""
    return [ns for ns in list_namespaces() if NAMESPACE_RE.match(ns)]


def lab_prefixes() -> list[str]:
    """Prefixes of every lab that has namespaces on this machine."""
    found = {m.group(1) for ns in list_namespaces() if (m := NAMESPACE_RE.match(ns))}
    return sorted(found)


def build(plan: LabPlan) -> None:
    """Create the lab; on any failure remove what was made and raise LabError."""
    if not is_root():
        raise LabError("the network lab needs root",
                       hint="run as root, or use the loopback lab (no namespaces)")
    clash = [ns for ns in list_namespaces() if ns.startswith(plan.prefix + "-")]
    if clash:
        raise LabError(f"lab {plan.prefix} already exists ({', '.join(clash)})",
                       hint="tear that lab down first, or use a new prefix")
    cmds = plan.setup_commands()
    for n, argv in enumerate(cmds, 1):
        try:
            run(argv)
        except CommandFailed as exc:
            teardown(plan.prefix)
            raise LabError(f"lab setup failed at step {n}/{len(cmds)}: `{' '.join(argv)}`",
                           hint=exc.message, step=n, argv=argv) from exc


def namespace_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False)
    return [int(tok) for tok in out.split() if tok.isdigit()]


def teardown(prefix: str, grace_s: float = 3.0) -> list[str]:
    """Kill every process in the lab's namespaces and delete them. Idempotent.

    Returns the namespaces removed. Raises LabError only if one is still there afterwards.
    """
    if not prefix:
        raise LabError("refusing to tear down an empty prefix")
    doomed = [ns for ns in list_namespaces() if ns.startswith(prefix + "-")]
    # Processes first: a namespace whose processes live on keeps its links and
    # addresses after `ip netns del`, just invisible.
    victims = {pid for ns in doomed for pid in namespace_pids(ns)} - {os.getpid()}
    _pids.terminate(sorted(victims), grace_s)
    for ns in reversed(doomed):
        run(["ip", "netns", "del", ns], check=False)
    left = [ns for ns in list_namespaces() if ns in doomed]
    if left:
        raise LabError(f"could not delete namespaces {', '.join(left)}",
                       hint="see `ip netns pids NS` and delete them by hand")
    return doomed
