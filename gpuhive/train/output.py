"""A job's output lines: who printed each, the one known noise line, `jobs logs` filters. Pure.

The controller keeps every line as ``node/rankN | text`` (a worker: torchrun prefixes its
lines ``[rankN]:``) or ``node | text`` (torchrun's own agent on that node).

One line is dropped from what the owner sees (it stays in the raw per-node log):
torch's c10d socket code names every peer it accepts with ``getnameinfo`` (no
``NI_NUMERICHOST``): an overlay address is in no ``/etc/hosts``, and where the resolver
cannot be reached (network namespaces, offline boxes) glibc answers EAI_AGAIN (-3) instead
of the number, so each store and process group warns ``[c10d] The hostname of the client
socket cannot be retrieved. err=-3``. It changes nothing (torch uses the number), and the
agent, unprivileged, cannot make overlay addresses resolvable on a friend's box; why this
is filtered rather than fixed is in docs/architecture.md.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

_RANK_PREFIX = re.compile(r"^\[rank(\d+)\]:(.*)$")
_KEPT = re.compile(r"^(?P<node>[^\s/|]+)(?:/rank(?P<rank>\d+))? \| (?P<text>.*)$")
# e.g. "[W1202 00:01:29.249612675 socket.cpp:207] [c10d] The hostname of the client socket
# cannot be retrieved. err=-3"; anchored, so only this one warning is ever dropped
_NO_REVERSE_DNS = re.compile(r"^\[W[^\]]*\bsocket\.cpp:\d+\] \[c10d\] The hostname of the "
                             r"client socket cannot be retrieved[.,] (err=|error code: )-?\d+\s*$")


@dataclass(frozen=True)
class OutputLine:
    node: str
    rank: int | None  # None: torchrun's agent, not a worker
    text: str

    @property
    def kept(self) -> str:
        """The line as the controller keeps and shows it."""
        who = self.node if self.rank is None else f"{self.node}/rank{self.rank}"
        return f"{who} | {self.text}"


def from_node(node: str, raw: str) -> OutputLine:
    """A raw line of ``node``'s torchrun (its workers' lines carry ``[rankN]:``)."""
    m = _RANK_PREFIX.match(raw)
    return OutputLine(node, int(m.group(1)), m.group(2)) if m else OutputLine(node, None, raw)


def parse_kept(line: str) -> OutputLine | None:
    """The inverse of ``OutputLine.kept``; None for a line that is not in that form."""
    m = _KEPT.match(line)
    if not m:
        return None
    rank = m.group("rank")
    return OutputLine(m.group("node"), int(rank) if rank is not None else None, m.group("text"))


def is_noise(text: str) -> bool:
    """The c10d reverse-DNS warning (see the module docstring), and nothing else."""
    return bool(_NO_REVERSE_DNS.match(text))


@dataclass(frozen=True)
class LogFilter:
    """What `gpuhive jobs logs --node NAME --rank K --tail N` keeps."""

    node: str | None = None
    rank: int | None = None  # a worker's global rank; torchrun's own lines have none
    tail: int | None = None  # of the lines already kept; lines that follow all pass

    def matches(self, line: str) -> bool:
        parsed = parse_kept(line)
        if parsed is None:  # not from a node (nothing writes such lines today): keep it
            return self.node is None and self.rank is None
        if is_noise(parsed.text):
            return False  # logs written before the noise was filtered still hold it
        return (self.node is None or parsed.node == self.node) and \
            (self.rank is None or parsed.rank == self.rank)

    def history(self, lines: Iterable[str]) -> list[str]:
        """The kept lines of a job's log that pass, only the last ``tail`` with a tail."""
        passing = (line for line in lines if self.matches(line))
        if self.tail is None:
            return list(passing)
        return list(deque(passing, maxlen=self.tail)) if self.tail > 0 else []
