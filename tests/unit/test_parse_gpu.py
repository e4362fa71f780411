"""NVIDIA parsers against real H100 output (tests/data/nvidia/h100-80gb-hbm3)."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhive.core.parse_gpu import (
    NVIDIA_SMI_QUERY_FIELDS,
    GpuParseError,
    decode_clock_event_reasons,
    is_thermal,
    nvidia_smi_csv_clock_events,
    nvidia_smi_xml_clock_events,
    nvml_clock_events,
    parse_nvidia_smi_csv,
    parse_nvidia_smi_xml,
    parse_nvml,
)
from gpuhive.errors import GpuhiveError

H100 = Path(__file__).parents[1] / "data" / "nvidia" / "h100-80gb-hbm3"
UUID = "GPU-ccdd1af9-26d7-f6fb-4a71-b0bffe10e71b"


def read(name: str) -> str:
    return (H100 / name).read_text()


def test_query_field_constant_is_the_fixture_command() -> None:
    readme = read("README.md")
    m = re.search(r"--query-gpu=([\w.,]+)", readme)
    assert m is not None
    assert tuple(m.group(1).split(",")) == NVIDIA_SMI_QUERY_FIELDS


def test_csv_h100() -> None:
    [g] = parse_nvidia_smi_csv(read("nvidia-smi-query.csv"))
    assert g.index == 0
    assert g.uuid == UUID
    assert g.name == "NVIDIA H100 80GB HBM3"
    assert (g.memory_total_mib, g.memory_used_mib, g.memory_free_mib) == (81559, 0, 81559)
    assert g.utilization_pct == 0.0
    assert g.temperature_c == 37.0
    assert g.power_w == 111.57
    assert g.power_limit_w == 700.0
    assert g.driver_version == "580.159.04"
    assert g.compute_capability == "9.0"
    assert g.vendor == "nvidia"
    assert g.cuda_version is None  # not a --query-gpu field
    assert nvidia_smi_csv_clock_events(read("nvidia-smi-query.csv")) == {0: ["gpu_idle"]}


def test_xml_h100() -> None:
    [g] = parse_nvidia_smi_xml(read("nvidia-smi-q.xml"))
    assert g.name == "NVIDIA H100 80GB HBM3"
    assert g.uuid == UUID
    assert (g.memory_total_mib, g.memory_used_mib) == (81559, 0)
    assert g.utilization_pct == 0.0
    assert g.temperature_c == 37.0
    assert g.power_w == 114.77  # average_power_draw
    assert g.power_limit_w == 700.0
    assert g.driver_version == "580.159.04"
    assert g.cuda_version == "13.0"
    assert g.compute_capability is None  # the XML does not carry it
    assert nvidia_smi_xml_clock_events(read("nvidia-smi-q.xml")) == {0: ["gpu_idle"]}


def test_nvml_fixture_flat_shape() -> None:
    data = json.loads(read("nvml.json"))
    [g] = parse_nvml(data)
    assert g.name == "NVIDIA H100 80GB HBM3"
    assert g.uuid == UUID
    assert g.compute_capability == "9.0"
    assert g.cuda_version == "13.0"  # 13000
    assert g.driver_version == "580.159.04"
    assert g.temperature_c == 37.0
    assert g.utilization_pct == 0.0  # from pynvml's repr string
    assert g.power_w == 101.334  # 101334 mW
    assert g.memory_total_mib == 0  # "mem": {} in the capture
    assert nvml_clock_events(data) == {0: ["gpu_idle"]}


def test_nvml_list_shape_with_memory() -> None:
    data = {"driver": "550.54.15", "cuda": 12040, "gpus": [
        {"index": 0, "name": b"NVIDIA GeForce RTX 4090", "uuid": "GPU-a",
         "mem": {"total": 25757220864, "used": 1073741824, "free": 24683479040},
         "cc": [8, 9], "temp": 61, "util": {"gpu": 93, "memory": 40},
         "power": 412345, "power_limit": 450000, "throttle": 0x20 | 0x4},
        {"index": 1, "name": "NVIDIA GeForce RTX 4090", "mem": {}},
    ]}
    a, b = parse_nvml(data)
    assert (a.name, a.memory_total_mib, a.memory_used_mib) == ("NVIDIA GeForce RTX 4090",
                                                               24564, 1024)
    assert a.compute_capability == "8.9" and a.cuda_version == "12.4"
    assert (a.utilization_pct, a.power_w, a.power_limit_w) == (93.0, 412.345, 450.0)
    assert b.index == 1 and b.memory_total_mib == 0 and b.utilization_pct is None
    ev = nvml_clock_events(data)
    assert ev == {0: ["sw_power_cap", "sw_thermal_slowdown"], 1: []}
    assert is_thermal(ev[0]) and not is_thermal(ev[1])


def test_csv_multi_gpu_na_and_old_driver_fields() -> None:
    fields = tuple(f for f in NVIDIA_SMI_QUERY_FIELDS
                   if f not in ("compute_cap", "clocks_throttle_reasons.active"))
    text = ("0, GPU-1, Tesla T4, 15360, 100, 15260, 12, 45, 27.5, 70.00, 470.57.02, "
            "00000000:00:04.0\n"
            "1, GPU-2, Tesla T4, 15360, [N/A], 15000, [N/A], [N/A], [N/A], [N/A], 470.57.02, "
            "00000000:00:05.0\n")
    a, b = parse_nvidia_smi_csv(text, fields)
    assert (a.index, a.memory_used_mib, a.power_w, a.compute_capability) == (0, 100, 27.5, None)
    assert b.memory_used_mib == 360  # from total - free when used is N/A
    assert b.utilization_pct is None and b.temperature_c is None and b.power_w is None


def test_decode_reasons() -> None:
    assert decode_clock_event_reasons(0) == []
    assert decode_clock_event_reasons(0x40 | 0x8) == ["hw_slowdown", "hw_thermal_slowdown"]
    assert decode_clock_event_reasons(1 << 40) == []


@pytest.mark.parametrize("text", [
    "0, GPU-x, name",  # too few columns
    "x, GPU-x, A, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0x0",  # bad index
    "-1, GPU-x, A, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0x0",
])
def test_csv_errors(text: str) -> None:
    with pytest.raises(GpuParseError):
        parse_nvidia_smi_csv(text)


def test_empty_inputs() -> None:
    assert parse_nvidia_smi_csv("") == []
    assert parse_nvidia_smi_csv("\n\n") == []
    assert parse_nvidia_smi_xml("") == []
    assert parse_nvml({}) == []
    assert parse_nvml({"count": 0, "driver": "1"}) == []


@pytest.mark.parametrize("text", ["<nope", "<other/>", "not xml at all"])
def test_xml_errors(text: str) -> None:
    with pytest.raises(GpuParseError):
        parse_nvidia_smi_xml(text)


@pytest.mark.parametrize("data", [[], {"gpus": 3}, {"gpus": [1]}, {"count": "one"},
                                  {"gpus": [{"index": -2}]}, {"gpus": [{"mem": 5}]}])
def test_nvml_errors(data: object) -> None:
    with pytest.raises(GpuParseError):
        parse_nvml(data)  # type: ignore[arg-type]


def test_parse_error_is_a_gpuhive_error() -> None:
    with pytest.raises(GpuhiveError) as ei:
        parse_nvidia_smi_csv("1,2")
    assert ei.value.data["source"] == "nvidia-smi"


# Parsers never crash on garbage: a GpuParseError or a list.

@settings(max_examples=300, deadline=None)
@given(st.text())
def test_csv_garbage(text: str) -> None:
    with contextlib.suppress(GpuParseError):
        assert isinstance(parse_nvidia_smi_csv(text), list)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=12),
                min_size=len(NVIDIA_SMI_QUERY_FIELDS), max_size=len(NVIDIA_SMI_QUERY_FIELDS)))
def test_csv_garbage_with_the_right_column_count(cells: list[str]) -> None:
    line = ", ".join(c.replace(",", ";").replace('"', "") for c in cells)
    with contextlib.suppress(GpuParseError):
        assert isinstance(parse_nvidia_smi_csv(line), list)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_xml_garbage(text: str) -> None:
    with contextlib.suppress(GpuParseError):
        assert isinstance(parse_nvidia_smi_xml(text), list)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
gpu_dicts = st.fixed_dictionaries({}, optional={
    k: json_values for k in ("index", "name", "uuid", "mem", "cc", "temp", "util", "power",
                             "power_limit", "throttle")})


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values,
                 st.fixed_dictionaries({"gpus": st.lists(gpu_dicts, max_size=3)},
                                       optional={"driver": json_values, "cuda": json_values}),
                 gpu_dicts))
def test_nvml_garbage(data: object) -> None:
    with contextlib.suppress(GpuParseError):
        assert isinstance(parse_nvml(data), list)  # type: ignore[arg-type]
