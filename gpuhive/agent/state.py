"""What a friend's machine keeps in $GPUHIVE_HOME after enrolling."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gpuhive.errors import StateError
from gpuhive.fsutil import write_json


@dataclass(frozen=True)
class AgentHome:
    root: Path

    @property
    def node_key(self) -> Path:
        return self.root / "node_key"

    @property
    def embedded_host_key(self) -> Path:
        return self.root / "embedded_host_key"

    @property
    def identity_file(self) -> Path:
        return self.root / "agent.json"

    @property
    def status_file(self) -> Path:
        return self.root / "agent_status.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "agent.lock"

    @property
    def pid_file(self) -> Path:
        return self.root / "agent.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "agent.log"


@dataclass(frozen=True)
class AgentIdentity:
    node_id: str
    name: str
    controller_host: str
    controller_port: int
    controller_host_key: str  # full public key, verified against the token's pin at enroll
    controller_client_key: str  # the only key the embedded server accepts
    forward_port: int
    enrolled_at: float

    def save(self, home: AgentHome) -> None:
        write_json(home.identity_file, asdict(self))

    @classmethod
    def load(cls, home: AgentHome) -> AgentIdentity:
        try:
            data: dict[str, Any] = json.loads(home.identity_file.read_text())
            return cls(**data)
        except FileNotFoundError as exc:
            raise StateError(f"this machine is not enrolled ({home.identity_file} is missing)",
                             hint="run `gpuhive enroll TOKEN` with the token from the owner",
                             home=str(home.root)) from exc
        except (OSError, ValueError, TypeError) as exc:
            raise StateError(f"cannot read {home.identity_file}: {exc}",
                             hint="enroll again with a fresh token") from exc
