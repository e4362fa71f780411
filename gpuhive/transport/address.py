"""``user@host[:port]``: how `gpuhive nodes add` names a machine's own sshd (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SshAddress:
    user: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def parse_address(text: str, default_user: str = "root") -> SshAddress:
    """``user@host[:port]`` / ``host`` / ``user@[v6]:port`` → SshAddress."""
    user, _, rest = text.rpartition("@")
    user = user or default_user
    host, port = rest, 22
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = int(tail[1:])
    elif rest.count(":") == 1:
        host, port_s = rest.split(":")
        if not port_s.isdigit():
            raise ValueError(f"bad port in {text!r}")
        port = int(port_s)
    if not host or not 0 < port < 65536:
        raise ValueError(f"not a user@host[:port] address: {text!r}")
    return SshAddress(user, host, port)
