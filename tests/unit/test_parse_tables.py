"""Throughput table and driver blacklist: packaged files and the parsers."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuhive.core.parse_tables import (
    parse_driver_blacklist,
    parse_gpu_throughput,
    parse_version,
)
from gpuhive.data import load_driver_blacklist, load_gpu_throughput
from gpuhive.errors import ConfigError


def test_packaged_throughput_rows_all_cite_a_source() -> None:
    table = load_gpu_throughput()
    assert len(table.rows) >= 15
    for row in table.rows:
        assert row.source and ("datasheet" in row.source.lower()
                               or "whitepaper" in row.source.lower()
                               or "data sheet" in row.source.lower()), row.model
        assert "https://" in row.source
        assert row.fp16_tflops > 0


@pytest.mark.parametrize(("name", "model", "tflops"), [
    ("NVIDIA H100 80GB HBM3", "H100 SXM5", 989.5),  # the fixture machine
    ("NVIDIA H100 PCIe", "H100 PCIe", 756.5),
    ("NVIDIA A100-SXM4-80GB", "A100", 312),
    ("NVIDIA A100 80GB PCIe", "A100", 312),
    ("NVIDIA A10", "A10", 125),
    ("Tesla V100S-PCIE-32GB", "V100S PCIe", 130),
    ("Tesla V100-SXM2-16GB", "V100 SXM2", 125),
    ("Tesla T4", "T4", 65),
    ("NVIDIA L40S", "L40S", 362.05),
    ("NVIDIA L40", "L40", 181.05),
    ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090", 165.2),
    ("NVIDIA GeForce RTX 3090", "GeForce RTX 3090", 71),
    ("AMD Instinct MI210", "Instinct MI210", 181),
    ("AMD Instinct MI250X", "Instinct MI250X", 383),
])
def test_lookup(name: str, model: str, tflops: float) -> None:
    row = load_gpu_throughput().lookup(name)
    assert row is not None and (row.model, row.fp16_tflops) == (model, tflops)


@pytest.mark.parametrize("name", ["NVIDIA A10G", "NVIDIA GeForce RTX 3090 Ti", "Apple M2 Pro",
                                  "NVIDIA GeForce RTX 4070"])
def test_lookup_unknown(name: str) -> None:
    assert load_gpu_throughput().lookup(name) is None


def test_user_throughput_file_wins(tmp_path: Path) -> None:
    f = tmp_path / "tp.csv"
    f.write_text("pattern,vendor,model,compute_capability,fp16_tflops,source\n"
                 "rtx 4090,nvidia,My 4090,8.9,150,measured with bench/matmul.py\n")
    row = load_gpu_throughput(f).lookup("NVIDIA GeForce RTX 4090")
    assert row is not None and row.fp16_tflops == 150


@pytest.mark.parametrize("text", [
    "a,b\n",
    "pattern,vendor,model,compute_capability,fp16_tflops,source\nx,nvidia,X,,fast,src\n",
    "pattern,vendor,model,compute_capability,fp16_tflops,source\nx,nvidia,X,,1,\n",
    "pattern,vendor,model,compute_capability,fp16_tflops,source\n(,nvidia,X,,1,s\n",
    "pattern,vendor,model,compute_capability,fp16_tflops,source\nx,nvidia\n",
])
def test_bad_throughput(text: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_gpu_throughput(text, origin="user.csv")
    assert ei.value.data["key"] == "gpu_throughput"


def test_version_parse() -> None:
    assert parse_version("535.104.05") == (535, 104, 5)
    assert parse_version("6.7.0") == (6, 7, 0)
    assert parse_version("535.x") is None


BL = parse_driver_blacklist("""
# comment
nvidia 545.23.06   flaky under load (our own notes)
nvidia 550.40.*    glob rule
nvidia <470        too old
amd    >=6.8       not yet tested
*      ==1.2.3     any vendor
""")


@pytest.mark.parametrize(("vendor", "version", "spec"), [
    ("nvidia", "545.23.06", "545.23.06"),
    ("nvidia", "550.40.07", "550.40.*"),
    ("nvidia", "465.19.01", "<470"),
    ("amd", "6.8.1", ">=6.8"),
    ("apple", "1.2.3", "==1.2.3"),
    ("nvidia", "545.23.08", None),
    ("nvidia", "470.0.0", None),  # (470, 0, 0) > (470,)
    ("amd", "5.7.1", None),
    ("apple", "545.23.06", None),  # vendor must match
    ("nvidia", "weird", None),
])
def test_blacklist_rules(vendor: str, version: str, spec: str | None) -> None:
    rule = BL.check(vendor, version)
    assert (rule.spec if rule else None) == spec


def test_packaged_blacklist_and_user_extension(tmp_path: Path) -> None:
    base = load_driver_blacklist()
    assert base.check("nvidia", "440.33.01") is not None
    assert base.check("nvidia", "580.159.04") is None  # the fixture H100's driver is fine
    f = tmp_path / "bl.txt"
    f.write_text("nvidia 580.159.04 test rule\n")
    both = load_driver_blacklist(f)
    rule = both.check("nvidia", "580.159.04")
    assert rule is not None and rule.reason == "test rule" and rule.origin == str(f)
    assert both.check("nvidia", "440.33.01") is not None


def test_blacklist_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        parse_driver_blacklist("nvidia 535\n")  # no reason
    with pytest.raises(ConfigError):
        parse_driver_blacklist("nvidia <abc reason\n")
    with pytest.raises(ConfigError) as ei:
        load_driver_blacklist(tmp_path / "missing.txt")
    assert ei.value.data["key"] == "driver_blacklist"
