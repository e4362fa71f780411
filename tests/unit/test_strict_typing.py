"""The seams stay under mypy's strict set: dropping a flag from pyproject fails here, not
months later when a protocol and its fake have drifted apart untyped."""

from __future__ import annotations

from pathlib import Path

import tomllib

STRICT = {"disallow_untyped_defs", "disallow_any_generics", "disallow_untyped_calls",
          "disallow_incomplete_defs", "warn_return_any"}


def test_controller_and_transport_are_checked_strictly() -> None:
    config = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    overrides = config["tool"]["mypy"]["overrides"]
    for package in ("gpuhive.controller.*", "gpuhive.transport.*"):
        flags = {k for o in overrides if package in o["module"] for k, v in o.items()
                 if v is True}
        assert flags >= STRICT, f"{package} lost {sorted(STRICT - flags)}"
