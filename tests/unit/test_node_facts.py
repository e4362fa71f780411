"""Typed node facts (core/node_facts, core/spoke_report, core/fact_codec): what they read
from the JSON the registry, agents and 0.1.0 databases hold, and that writing it back gives
the same JSON."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gpuhive.core import fact_codec
from gpuhive.core.model import NodeKind, NodeRecord, NodeStatus
from gpuhive.core.node_facts import GpuBench, LinkMeasure, OverlayFacts, SoftwareFacts
from gpuhive.core.spoke_report import MAX_PATHS, SpokeReport
from gpuhive.core.spoke_state import Spoke, SpokeView
from gpuhive.probe.software import SoftwareInfo

NOW = 1_000_000.0
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "registry" / "0.1.0" / "registry.db"
FACT_TYPES: list[Any] = [OverlayFacts, SpokeReport, LinkMeasure, GpuBench, SoftwareFacts]

# today's shapes, as the code that writes them writes them (nulls included)
SPOKE = {"up": True, "iface": "ghv0", "error": "", "since": 1000.5, "lan": "192.168.1.2",
         "endpoint": None, "paths": {"bob": "direct", "carol": "hub"}}
OVERLAY = {"wg_public_key": "K" * 43 + "=", "lan": "192.168.1.2", "listen_port": None,
           "ip": "10.77.0.2", "subnet": "10.77.0.0/16", "status": SPOKE}
BENCH = {"available": True, "device": "NVIDIA H100 80GB HBM3", "matmul_tflops": 612.3,
         "matmul_size": 8192, "memory_gbps": 2650.1, "torch": "2.13.0"}
LINK = {"rtt_ms": 12.35, "down_mbps": 80.0, "up_mbps": 16.0, "measured_at": 1000.0,
        "gpu": BENCH}
SOFTWARE = SoftwareInfo(python="3.11.7", torch="2.13.0", torch_cuda_available=None,
                        notes=["nccl: none"]).to_dict()


@pytest.mark.parametrize(("cls", "d"), [
    (OverlayFacts, OVERLAY), (SpokeReport, SPOKE), (LinkMeasure, LINK), (GpuBench, BENCH),
    (SoftwareFacts, SOFTWARE),
    # partial shapes: what 0.1.0 and the tests stored, and what older agents sent
    (OverlayFacts, {"ip": "10.77.0.4"}), (SpokeReport, {"up": False}),
    (LinkMeasure, {"rtt_ms": 21, "measured_at": 5}), (SoftwareFacts, {"torch": "2.13.0"}),
    (LinkMeasure, {"gpu": {"available": False, "reason": "torch sees no CUDA device"}}),
    (OverlayFacts, {}),
])
def test_a_dict_read_and_written_back_is_the_same_dict(cls: Any, d: dict[str, Any]) -> None:
    fact = cls.from_dict(d)
    assert fact.to_dict() == d
    assert json.dumps(fact.to_dict(), sort_keys=True) == json.dumps(d, sort_keys=True)
    assert cls.from_dict(fact.to_dict()) == fact


def test_fields_read_typed() -> None:
    ov = OverlayFacts.from_dict(OVERLAY)
    assert ov.ip == "10.77.0.2" and ov.listen_port is None and ov.status is not None
    assert ov.status.up and ov.status.paths == {"bob": "direct", "carol": "hub"}
    assert ov.status.direct == 1
    link = LinkMeasure.from_dict(LINK)
    assert link.rtt_ms == 12.35 and link.gpu is not None and link.gpu.matmul_tflops == 612.3
    sw = SoftwareFacts.from_dict(SOFTWARE)
    assert sw.torch == "2.13.0" and sw.nccl is None and sw.notes == ("nccl: none",)


def test_missing_keys_read_as_defaults_and_stay_missing() -> None:
    sw = SoftwareFacts.from_dict({})
    assert (sw.python, sw.torch, sw.llama_cpp_python, sw.notes) == (None, None, False, ())
    assert sw.to_dict() == {}
    spoke = SpokeReport.from_dict({"up": True})
    assert spoke.error == "" and spoke.paths == {} and spoke.to_dict() == {"up": True}


def test_a_null_that_was_stored_is_written_back_and_an_absent_key_is_not() -> None:
    assert OverlayFacts.from_dict({"listen_port": None}).to_dict() == {"listen_port": None}
    assert "listen_port" not in OverlayFacts.from_dict({"ip": "10.77.0.9"}).to_dict()


def test_unknown_keys_are_kept_as_they_were() -> None:
    d = {"rtt_ms": 3.5, "jitter_ms": [1, 2], "gpu": {"available": True, "fp8_tflops": 9}}
    link = LinkMeasure.from_dict(d)
    assert link.extra == {"jitter_ms": [1, 2]}
    assert link.gpu is not None and link.gpu.extra == {"fp8_tflops": 9}
    assert link.to_dict() == d


@pytest.mark.parametrize(("cls", "d", "field", "default"), [
    (LinkMeasure, {"rtt_ms": "fast", "up_mbps": 2.0}, "rtt_ms", None),
    (LinkMeasure, {"rtt_ms": True, "up_mbps": 2.0}, "rtt_ms", None),  # a bool is no number
    (LinkMeasure, {"gpu": [1, 2], "up_mbps": 2.0}, "gpu", None),
    (OverlayFacts, {"listen_port": "51820", "ip": "10.77.0.2"}, "listen_port", None),
    (OverlayFacts, {"listen_port": 51820.5, "ip": "10.77.0.2"}, "listen_port", None),
    (OverlayFacts, {"status": "up", "ip": "10.77.0.2"}, "status", None),
    (SpokeReport, {"up": "yes", "error": "x"}, "up", False),
    (SpokeReport, {"paths": {"b": 3}, "error": "x"}, "paths", {}),
    (SoftwareFacts, {"notes": "torch: none", "python": "3.11"}, "notes", ()),
    (SoftwareFacts, {"torch": 2.1, "python": "3.11"}, "torch", None),
])
def test_a_value_of_the_wrong_type_reads_as_missing_and_is_not_written_back(
        cls: Any, d: dict[str, Any], field: str, default: Any) -> None:
    fact = cls.from_dict(d)
    assert getattr(fact, field) == default
    assert fact.to_dict() == {k: v for k, v in d.items() if k != field}


@pytest.mark.parametrize("cls", FACT_TYPES)
def test_every_field_has_a_reader_and_a_default(cls: Any) -> None:
    fields = {f.name for f in dataclasses.fields(cls)} - fact_codec.META
    # a field without a reader would never be read; a reader without a field would raise
    assert cls.from_dict({}).to_dict() == {}
    everything = cls.from_dict({name: None for name in fields})
    assert everything.present <= fields
    for f in dataclasses.fields(cls):
        assert f.default is not dataclasses.MISSING or \
            f.default_factory is not dataclasses.MISSING, f.name


def test_software_facts_and_the_agent_s_probe_record_have_the_same_fields() -> None:
    probe = {f.name for f in dataclasses.fields(SoftwareInfo)}
    facts = {f.name for f in dataclasses.fields(SoftwareFacts)} - fact_codec.META
    assert probe == facts
    full = SoftwareInfo(python="3.12.1", torch="2.13.0", torch_cuda_available=True,
                        torch_cuda="12.4", nccl="2.21.5", llama_server="/usr/bin/llama-server",
                        llama_cpp_python=True, notes=["x"]).to_dict()
    sw = SoftwareFacts.from_dict(full)
    assert sw.llama_server == "/usr/bin/llama-server" and sw.to_dict() == full


def test_replace_drops_a_cleared_field_instead_of_writing_null() -> None:
    ov = OverlayFacts.from_dict(OVERLAY)
    cleared = fact_codec.replace(ov, status=None)
    assert "status" not in cleared.to_dict()
    assert cleared.to_dict() == {k: v for k, v in OVERLAY.items() if k != "status"}
    back = fact_codec.replace(cleared, status=SpokeReport.from_dict(SPOKE))
    assert back.to_dict() == OVERLAY


def test_stored_reads_an_empty_or_non_object_column_as_not_known() -> None:
    assert fact_codec.stored(LinkMeasure.from_dict, {}) is None
    assert fact_codec.stored(LinkMeasure.from_dict, None) is None
    assert fact_codec.stored(LinkMeasure.from_dict, [1]) is None
    got = fact_codec.stored(LinkMeasure.from_dict, {"rtt_ms": 1.0})
    assert got is not None and got.rtt_ms == 1.0


# ---- the 0.1.0 database ----------------------------------------------------------------


def test_the_0_1_0_fixture_s_fact_columns_read_and_write_back_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    shutil.copy(FIXTURE, db)
    con = sqlite3.connect(str(db))
    try:
        rows = con.execute("SELECT name, software, link, overlay FROM nodes").fetchall()
    finally:
        con.close()
    assert len(rows) == 3
    seen = 0
    for name, *columns in rows:
        for cls, text in zip((SoftwareFacts, LinkMeasure, OverlayFacts), columns, strict=True):
            stored = json.loads(text)
            fact = cls.from_dict(stored)
            assert fact.to_dict() == stored, (name, cls.__name__)
            seen += bool(stored)
    assert seen >= 7  # every node's software and overlay, and alice's link
    alice = {r[0]: r for r in rows}["alice"]
    ov = OverlayFacts.from_dict(json.loads(alice[3]))
    assert ov.ip == "10.77.0.2" and ov.subnet == "10.77.0.0/16"
    # 0.1.0's fixture named the key and port differently: kept, not lost
    assert ov.wg_public_key is None and ov.extra == {"public_key": "wgkeyalice=", "port": 51820}
    assert LinkMeasure.from_dict(json.loads(alice[2])).rtt_ms == 21.5


def test_a_record_without_facts_shows_empty_objects() -> None:
    rec = NodeRecord(id="n-1", name="box", kind=NodeKind.SSH, status=NodeStatus.ONLINE,
                     registered_at=NOW)
    d = rec.to_dict()
    assert (d["software"], d["link"], d["overlay"]) == ({}, {}, {})


def test_spoke_reports_from_agents_are_bounded() -> None:
    st = SpokeReport.from_heartbeat({
        "up": 1, "iface": "x" * 16, "error": "e" * 500, "since": True,
        "paths": {f"n{i}": "direct" for i in range(MAX_PATHS + 10)}})
    assert st is not None
    assert st.up is False and st.iface is None and len(st.error) == 300 and st.since is None
    assert len(st.paths) == MAX_PATHS
    assert SpokeReport.from_heartbeat("up") is None


def test_the_spoke_view_is_what_nodes_json_carries() -> None:
    overlay = OverlayFacts.from_dict({"ip": "10.77.0.2", "status": {"up": False,
                                                                    "error": "no root"}})
    d = Spoke.of(overlay).to_dict(overlay_on=True)
    assert d == {"state": "down", "ip": "10.77.0.2", "iface": None, "error": "no root",
                 "direct": 0, "problem": "its WireGuard spoke is down: no root"}
    assert SpokeView.from_dict(d).to_dict() == d
    assert SpokeView.from_dict({"state": 3, "direct": "2"}) == SpokeView()
