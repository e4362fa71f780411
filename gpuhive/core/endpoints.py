"""``host:port`` endpoints as users and agents write them. Pure."""

from __future__ import annotations

import ipaddress
import re

_DNS_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")


def is_address(text: object) -> bool:
    """A literal IPv4 or IPv6 address (no brackets, no port)."""
    try:
        ipaddress.ip_address(text if isinstance(text, str) else "")
    except ValueError:
        return False
    return True


def host_of(endpoint: str) -> str:
    """The host of ``host:port`` / ``[v6]:port`` (brackets dropped)."""
    return endpoint.rsplit(":", 1)[0].strip("[]")


def valid_endpoint(endpoint: str) -> bool:
    """``host:port`` or ``[v6]:port``, host an address or a DNS name (a dynamic-DNS name
    follows a changing home IP), port in 1..65535."""
    host, sep, port = endpoint.rpartition(":")  # not host_of: the brackets matter here
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return False
    if _DNS_NAME.fullmatch(host) and not host.replace(".", "").isdigit():
        return True
    return is_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
