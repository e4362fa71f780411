"""Settings: one object, defaults in one place, file < environment ``GPUHIVE_*`` < flags.

``$GPUHIVE_HOME/config.toml`` holds the file layer. Every value is validated on load and a
bad one raises ``ConfigError`` naming the key and where it came from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuhive.core.endpoints import valid_endpoint
from gpuhive.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Settings:
    # controller
    listen_host: str = "0.0.0.0"
    listen_port: int = 2222
    endpoint: str = ""  # host:port friends dial; put in tokens. Empty: detected at invite.
    heartbeat_interval: float = 5.0
    offline_after_missed: int = 3
    # below Linux's ephemeral range (32768+), so outgoing connections never squat on them
    forward_port_min: int = 24000
    forward_port_max: int = 31999
    token_ttl: str = "24h"
    # HTTP: dashboard, JSON API, /metrics (and the OpenAI gateway). Loopback unless exposed,
    # and exposing it needs an admin token for everything but the gateway and /health.
    # WireGuard overlay: hub on the controller (`gpuhive up --overlay`), a spoke per agent
    overlay: bool = False  # run the hub (`gpuhive up --overlay`)
    overlay_subnet: str = "10.77.0.0/16"
    overlay_port: int = 51820  # the hub's UDP port; friends need nothing open
    overlay_mtu: int = 1280
    overlay_iface: str = "ghv0"  # per machine; lab hosts sharing /var/run need distinct ones
    overlay_spoke_port: int = 51821  # the spoke's own port (used for same-LAN direct paths)
    # agent: a host:port where others can reach this spoke's port (a public IP or a
    # forwarded port); then every spoke may try a direct path to this one
    overlay_endpoint: str = ""
    # controller: also try NAT-to-NAT hole punching (did not open between two nft
    # masquerade routers in the lab; failures fall back to the hub silently)
    overlay_punch: bool = False
    http_host: str = "127.0.0.1"
    http_port: int = 8088
    admin_token: str = ""
    driver_blacklist_file: str = ""  # extra rules on top of the packaged blacklist
    gpu_throughput_file: str = ""  # extra GPU rows (measured or newer) over the packaged table
    # agent
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3
    connect_timeout: float = 15.0

    def validate(self) -> Settings:
        checks: list[tuple[str, bool, str]] = [
            ("listen_port", 0 <= self.listen_port < 65536, "a TCP port (0-65535)"),
            ("http_port", 0 <= self.http_port < 65536, "a TCP port (0-65535)"),
            ("heartbeat_interval", 0.05 <= self.heartbeat_interval <= 3600, "0.05 to 3600 s"),
            ("offline_after_missed", 2 <= self.offline_after_missed <= 100, "2 to 100"),
            ("forward_port_min", 1024 <= self.forward_port_min < self.forward_port_max < 65536,
             "1024 <= forward_port_min < forward_port_max < 65536"),
            ("backoff_base", 0.01 <= self.backoff_base <= self.backoff_cap, "0.01 to backoff_cap"),
            ("backoff_cap", self.backoff_cap <= 3600, "at most 3600 s"),
            ("keepalive_interval", self.keepalive_interval > 0, "a positive number of seconds"),
            ("connect_timeout", self.connect_timeout > 0, "a positive number of seconds"),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise ConfigError(f"setting {key}={getattr(self, key)!r} is invalid",
                                  hint=f"expected {expected}", key=key)
        if self.http_host not in ("127.0.0.1", "::1", "localhost") and not self.admin_token:
            raise ConfigError(f"http_host={self.http_host} exposes the dashboard without an "
                              "admin token", hint="set admin_token (a long random string) or "
                              "keep http_host=127.0.0.1", key="admin_token")
        if self.overlay_endpoint and not valid_endpoint(self.overlay_endpoint):
            raise ConfigError(f"setting overlay_endpoint={self.overlay_endpoint!r} is invalid",
                              hint="expected host:port where this node's WireGuard port "
                              "(overlay_spoke_port) is reachable", key="overlay_endpoint")
        if self.endpoint and ":" not in self.endpoint:
            raise ConfigError(f"setting endpoint={self.endpoint!r} is invalid",
                              hint="expected host:port", key="endpoint")
        return self


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(key: str, value: Any, source: str) -> Any:
    if key not in _FIELDS:
        raise ConfigError(f"unknown setting {key!r} in {source}",
                          hint="see docs/architecture.md#settings for the valid keys", key=key)
    default = getattr(Settings(), key)
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {key}={value!r} in {source} is not a {type(default).__name__}",
                          hint=f"fix {key} in {source}", key=key) from exc


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("GPUHIVE_HOME") or Path.home() / ".gpuhive")


def load_settings(home: Path, *, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = home / "config.toml"
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}", hint="fix or delete the file") from exc
        for key, value in data.items():
            values[key] = _coerce(key, value, str(path))
    for name, value in env.items():
        if name.startswith("GPUHIVE_") and name not in ("GPUHIVE_HOME", "GPUHIVE_LOG"):
            key = name[len("GPUHIVE_"):].lower()
            if key in _FIELDS:
                values[key] = _coerce(key, value, f"environment {name}")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, "command-line flags")
    return Settings(**values).validate()


def write_settings(path: Path, values: Mapping[str, Any]) -> None:
    lines = ["# gpuhive settings; environment GPUHIVE_<KEY> and flags override these."]
    for key, value in values.items():
        _coerce(key, value, "write_settings")
        if isinstance(value, str):
            lines.append(f"{key} = {json.dumps(value)}")  # a TOML basic string, escaped
        elif isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        else:
            lines.append(f"{key} = {value}")
    path.write_text("\n".join(lines) + "\n")


def update_settings(path: Path, values: Mapping[str, Any]) -> None:
    """Set ``values`` in a config.toml, keeping the settings already there."""
    try:
        old = tomllib.loads(path.read_text()) if path.exists() else {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", hint="fix or delete the file") from exc
    write_settings(path, {**old, **values})
