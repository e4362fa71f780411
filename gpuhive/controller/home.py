"""The controller's $GPUHIVE_HOME: what `gpuhive init` creates and where each file lives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuhive.config import write_settings
from gpuhive.errors import StateError
from gpuhive.fsutil import ensure_private_dir


@dataclass(frozen=True)
class ControllerHome:
    root: Path

    @property
    def host_key(self) -> Path:
        return self.root / "controller_host_key"

    @property
    def client_key(self) -> Path:
        return self.root / "controller_client_key"

    @property
    def registry(self) -> Path:
        return self.root / "registry.db"

    @property
    def admin_socket(self) -> Path:
        return self.root / "admin.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "controller.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "controller.log"

    def initialized(self) -> bool:
        return self.host_key.exists() and self.client_key.exists() and self.registry.exists()

    def require(self) -> ControllerHome:
        if not self.initialized():
            raise StateError(f"{self.root} is not an initialized controller home",
                             hint="run `gpuhive init` first (or set GPUHIVE_HOME)",
                             home=str(self.root))
        return self


def init_controller(root: Path, settings: dict[str, Any]) -> tuple[ControllerHome, bool]:
    """Create keys, registry and config; keep what exists. Returns (home, created_anything)."""
    from gpuhive.controller.registry import Registry
    from gpuhive.transport import keys
    home = ControllerHome(ensure_private_dir(root))
    created = False
    for path, comment in ((home.host_key, "gpuhive controller host key"),
                          (home.client_key, "gpuhive controller client key")):
        if not path.exists():
            keys.create_key(path, comment)
            created = True
    if not home.registry.exists():
        created = True
    Registry(home.registry).close()
    config = root / "config.toml"
    if settings or not config.exists():
        write_settings(config, settings)
    return home, created
