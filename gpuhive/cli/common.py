"""What every CLI group needs: the home directory, settings, the admin client."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from gpuhive.config import Settings, home_dir, load_settings
from gpuhive.controller import admin_api as api
from gpuhive.controller import admin_client
from gpuhive.controller.home import ControllerHome
from gpuhive.errors import StateError


def home() -> Path:
    return home_dir()


def settings(**overrides: Any) -> Settings:
    return load_settings(home(), overrides=overrides)


def controller_home() -> ControllerHome:
    return ControllerHome(home())


R = TypeVar("R")


def admin(req: api.Request[R], *, on_event: admin_client.OnEvent | None = None,
          timeout: float | None = 120.0) -> R:
    """Ask the controller of this home: ``req`` is a request of the admin contract, the
    answer its response type."""
    h = controller_home()
    if not h.initialized() and not h.admin_socket.exists():
        raise not_a_controller_home(h.root, home_set="GPUHIVE_HOME" in os.environ,
                                    agent_home=(h.root / "agent.json").exists(),
                                    labs=_running_lab_homes())
    return admin_client.request(h.admin_socket, req, on_event=on_event, timeout=timeout)


def not_a_controller_home(root: Path, *, home_set: bool, agent_home: bool,
                          labs: list[Path]) -> StateError:
    """Why the owner's commands cannot run with ``root`` as $GPUHIVE_HOME, and the real next
    step: `gpuhive init` for a new controller, the lab's export line for a lab, the
    controller's machine for a friend's agent home."""
    where = f"$GPUHIVE_HOME ({root})" if home_set else f"{root} (no GPUHIVE_HOME is set)"
    if agent_home:
        return StateError(f"{root} is an agent's home, not a controller's",
                          hint="the owner's commands run where `gpuhive init` was run; here "
                               "`gpuhive agent status` shows this machine's agent",
                          home=str(root))
    if labs:
        exports = " or ".join(f"`export GPUHIVE_HOME={p}`" for p in labs)
        return StateError(f"{where} is not a controller home",
                          hint=f"a lab is running: {exports}; or create a controller with "
                               "`gpuhive init`", home=str(root))
    return StateError(f"{where} is not a controller home",
                      hint="create one with `gpuhive init --endpoint HOST:2222`, then "
                           "`gpuhive up --detach`; or set GPUHIVE_HOME to an existing one",
                      home=str(root))


def _running_lab_homes() -> list[Path]:
    """Controller homes of labs whose state file is in the default lab directory."""
    from gpuhive.lab.hive import DEFAULT_DIR  # only on this error path: the lab is heavy
    from gpuhive.lab.state import state_path
    return [DEFAULT_DIR / "controller"] if state_path(DEFAULT_DIR).exists() else []
