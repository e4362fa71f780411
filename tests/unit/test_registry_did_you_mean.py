"""A misspelt node name gets the closest real names in its hint (`nodes show`, `exec`…)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuhive.controller.registry import Registry
from gpuhive.core.model import CpuInfo, Hardware
from gpuhive.errors import NodeNotFound

HW = Hardware(hostname="box", cpu=CpuInfo(cores=4), memory_total_mib=8192)


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "registry.db")
    for name in ("friend1", "friend2", "alice-desktop"):
        reg.add_ssh_node(name=name, address=f"u@{name}:22", host_key="ssh-ed25519 K",
                         hostname=name, hardware=HW, now=1.0)
    return reg


def test_a_close_misspelling_suggests_the_closest_names(reg: Registry) -> None:
    with pytest.raises(NodeNotFound) as exc:
        reg.get_node("freind1")
    assert exc.value.message == "no node named 'freind1'"
    assert exc.value.hint.startswith("did you mean friend1 or friend2? ")
    assert "`gpuhive nodes` lists the enrolled nodes" in exc.value.hint
    with pytest.raises(NodeNotFound) as sel:
        reg.select("friend1,Alice-Desktop")
    assert sel.value.hint.startswith("did you mean alice-desktop? ")


def test_nothing_close_suggests_nothing(reg: Registry) -> None:
    with pytest.raises(NodeNotFound) as exc:
        reg.get_node("zzz")
    assert "did you mean" not in exc.value.hint


def test_a_removed_node_is_not_suggested(reg: Registry) -> None:
    reg.remove_node("alice-desktop", now=2.0)
    with pytest.raises(NodeNotFound) as exc:
        reg.get_node("alice-destkop")
    assert "did you mean" not in exc.value.hint
