"""rocm-smi and macOS system_profiler parsers on the hand-written fixtures (see READMEs)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhive.core.parse_apple import (
    metal_budget_mib,
    parse_memsize,
    parse_system_profiler_data,
    parse_system_profiler_json,
)
from gpuhive.core.parse_gpu import GpuParseError
from gpuhive.core.parse_rocm import parse_rocm_smi_data, parse_rocm_smi_json

DATA = Path(__file__).parents[1] / "data"


def test_rocm_mi210_pair() -> None:
    a, b = parse_rocm_smi_json((DATA / "amd" / "rocm-smi-mi210x2.json").read_text())
    assert (a.index, a.name, a.vendor) == (0, "AMD Instinct MI210", "amd")
    assert a.memory_total_mib == 68702699520 // 2**20 == 65520
    assert a.memory_used_mib == 10960896 // 2**20 == 10
    assert (a.utilization_pct, a.temperature_c) == (0.0, 38.0)
    assert (b.index, b.memory_used_mib, b.utilization_pct, b.temperature_c) == (1, 40960,
                                                                                 87.0, 52.0)
    assert a.compute_capability is None and a.driver_version is None


def test_rocm_newer_keys_with_warning_prefix() -> None:
    text = (DATA / "amd" / "rocm-smi-rx7900xtx.txt").read_text()
    with pytest.raises(GpuParseError):
        parse_rocm_smi_json(text)  # the parser wants JSON; the probe strips the warning
    [g] = parse_rocm_smi_json(text[text.index("{"):])
    assert g.name == "Radeon RX 7900 XTX"  # "Device Name" beats "Card Series"
    assert (g.memory_total_mib, g.memory_used_mib) == (24560, 1024)
    assert g.driver_version == "6.7.0"


def test_rocm_orders_cards_numerically_and_ignores_other_keys() -> None:
    data = {"card10": {"Card series": "B"}, "card2": {"Card series": "A"}, "system": {}}
    assert [(g.index, g.name) for g in parse_rocm_smi_data(data)] == [(2, "A"), (10, "B")]


def test_apple_silicon_unified_memory() -> None:
    memsize = parse_memsize((DATA / "apple" / "m2pro-32gb.memsize").read_text())
    assert memsize == 34359738368
    [g] = parse_system_profiler_json((DATA / "apple" / "m2pro-32gb.json").read_text(), memsize)
    assert (g.name, g.vendor) == ("Apple M2 Pro", "apple")
    assert g.memory_total_mib == 32768 * 2 // 3 == 21845  # 2/3 of 32 GiB
    assert g.compute_capability is None


def test_apple_without_memsize_has_unknown_memory() -> None:
    [g] = parse_system_profiler_json((DATA / "apple" / "m2pro-32gb.json").read_text())
    assert g.memory_total_mib == 0


def test_intel_mac_two_gpus() -> None:
    igpu, dgpu = parse_system_profiler_json(
        (DATA / "apple" / "intel-mac-radeon.json").read_text())
    assert (igpu.index, igpu.name, igpu.vendor, igpu.memory_total_mib) == (
        0, "Intel UHD Graphics 630", "intel", 1536)
    assert (dgpu.index, dgpu.name, dgpu.vendor, dgpu.memory_total_mib) == (
        1, "AMD Radeon Pro 5500M", "amd", 8192)


def test_metal_budget() -> None:
    assert metal_budget_mib(0) == 0
    assert metal_budget_mib(16 * 2**30) == 10922
    assert metal_budget_mib(64 * 2**30) == 49152  # 3/4 above 36 GiB


@pytest.mark.parametrize("text", ["", "abc", "hw.memsize: -1"])
def test_memsize_errors(text: str) -> None:
    with pytest.raises(GpuParseError):
        parse_memsize(text)


def test_memsize_named_form() -> None:
    assert parse_memsize("hw.memsize: 17179869184\n") == 17179869184


@pytest.mark.parametrize("text", ["[]", "{", '"s"', '{"card0": 3}'])
def test_rocm_errors(text: str) -> None:
    with pytest.raises(GpuParseError):
        parse_rocm_smi_json(text)


@pytest.mark.parametrize("text", ["[]", "{", '{"SPDisplaysDataType": 4}'])
def test_apple_errors(text: str) -> None:
    with pytest.raises(GpuParseError):
        parse_system_profiler_json(text)


def test_empty() -> None:
    assert parse_rocm_smi_json("") == [] == parse_rocm_smi_json("{}")
    assert parse_system_profiler_json("") == [] == parse_system_profiler_json("{}")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
rocm_keys = st.sampled_from(["card0", "card1", "card12", "system", "cardX", "x"])
rocm_fields = st.sampled_from(["Card series", "Device Name", "VRAM Total Memory (B)",
                               "VRAM Total Used Memory (B)", "GPU use (%)",
                               "Temperature (Sensor edge) (C)", "Unique ID"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.builds(json.dumps, json_values),
                 st.builds(json.dumps, st.dictionaries(
                     rocm_keys, st.dictionaries(rocm_fields, json_values, max_size=5),
                     max_size=3))))
def test_rocm_garbage(text: str) -> None:
    with contextlib.suppress(GpuParseError):
        assert isinstance(parse_rocm_smi_json(text), list)


sp_fields = st.sampled_from(["_name", "sppci_model", "spdisplays_vendor", "spdisplays_vram",
                             "spdisplays_vram_shared", "sppci_device_type"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values,
                 st.fixed_dictionaries({"SPDisplaysDataType": st.lists(
                     st.one_of(json_values, st.dictionaries(sp_fields, json_values)),
                     max_size=3)})),
       st.integers(min_value=-10, max_value=2**50))
def test_apple_garbage(data: object, memsize: int) -> None:
    with contextlib.suppress(GpuParseError):
        assert isinstance(parse_system_profiler_data(data, memsize), list)
