"""The daemon is the one composition root: every part gets what it uses through its
constructor, the same overlay hub reaches every part that reads one, and nothing is
attached after construction (start() only starts what __init__ built)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from gpuhive.config import Settings
from gpuhive.controller import daemon
from gpuhive.controller.daemon import Controller
from gpuhive.controller.home import init_controller


@pytest.mark.parametrize("overlay", [False, True])
def test_one_hub_reaches_every_part_through_constructors(tmp_path: Path,
                                                         overlay: bool) -> None:
    home, _ = init_controller(tmp_path / "controller", {})
    ctl = Controller(home, dataclasses.replace(Settings(), overlay=overlay))
    try:
        assert (ctl.hub is not None) is overlay
        assert ctl.hive.hub is ctl.hub and ctl.overlay.hub is ctl.hub
        assert ctl.service.hub is ctl.hub
        if ctl.hub is not None:  # built, not started: it answers as a hub that is down
            assert ctl.hub.device is None and ctl.hub.desired() == []
        assert ctl.service.status()["http"] == ""  # asked when shown: no server yet
    finally:
        ctl.registry.close()


def test_no_part_is_attached_after_construction() -> None:
    tree = ast.parse(inspect.getsource(daemon))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Controller")
    attached = []
    for fn in cls.body:
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or fn.name == "__init__":
            continue
        for node in ast.walk(fn):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
            for t in targets:
                # self.part.field = … reaches into a part; self.own_state = … is the daemon's
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Attribute):
                    attached.append(f"{fn.name}: {ast.unparse(t)}")
    assert attached == []
