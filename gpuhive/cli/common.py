"""What every CLI group needs: the home directory, settings, the admin client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpuhive.config import Settings, home_dir, load_settings
from gpuhive.controller import admin_client
from gpuhive.controller.home import ControllerHome


def home() -> Path:
    return home_dir()


def settings(**overrides: Any) -> Settings:
    return load_settings(home(), overrides=overrides)


def controller_home() -> ControllerHome:
    return ControllerHome(home())


def admin(method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
    return admin_client.call(controller_home().admin_socket, method, params, **kw)
