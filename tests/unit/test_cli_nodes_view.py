"""What `gpuhive nodes`, `nodes show`, `rank`, `probe` and `bench` print, from API answers
built the way the controller builds them (``NodeRecord.to_dict`` plus the view fields)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text

from gpuhive.cli.nodes_show import bench_line, probe_line, rank_lines, show_lines
from gpuhive.cli.render import nodes_table
from gpuhive.core.model import CpuInfo, GpuInfo, Hardware, NodeKind, NodeRecord, NodeStatus
from gpuhive.core.node_facts import LinkMeasure, OverlayFacts, SoftwareFacts
from gpuhive.core.spoke_state import Spoke

NOW = time.time()
WG_ERROR = ("`wg set ghvw3 listen-port 51821 private-key /k` failed: Unable to modify "
            "interface: Address already in use")


def _gpu(i: int, name: str, total: int, used: int = 0) -> GpuInfo:
    return GpuInfo(index=i, name=name, memory_total_mib=total, memory_used_mib=used,
                   utilization_pct=37.0, temperature_c=61.0, power_w=212.0,
                   compute_capability="8.9", driver_version="550.54.15", cuda_version="12.4")


def view(name: str, gpus: list[GpuInfo], *, status: NodeStatus = NodeStatus.ONLINE,
         agent_state: str = "available", overlay: dict[str, Any] | None = None,
         overlay_on: bool = True, cores: int = 16, kind: NodeKind = NodeKind.AGENT) \
        -> dict[str, Any]:
    hw = Hardware(hostname=f"{name}-box", cpu=CpuInfo(cores=cores, model="AMD Ryzen 9 7950X"),
                  memory_total_mib=65536, memory_available_mib=60000, gpus=gpus)
    rec = NodeRecord(id=f"n-{name}", name=name, kind=kind, status=status, registered_at=NOW,
                     hardware=hw, agent_state=agent_state, last_heartbeat=NOW - 2,
                     connected_since=NOW - 300, public_addr="198.18.0.13:40012",
                     hostname=f"{name}-box",
                     software=SoftwareFacts.from_dict({
                         "python": "3.11.7", "torch": "2.13.0", "nccl": "2.21.5",
                         "torch_cuda": "12.4", "llama_server": None, "llama_cpp_python": True}),
                     link=LinkMeasure.from_dict({"rtt_ms": 12.3, "down_mbps": 95.0,
                                                 "up_mbps": 40.0}),
                     overlay=OverlayFacts.from_dict(overlay if overlay is not None else {
                         "ip": "10.77.0.2", "status": {"up": True, "iface": "ghv0"}}))
    d = rec.to_dict()
    d.update(reliability_score=0.71, reason="", connected=True,
             overlay_state=Spoke.of(rec.overlay).to_dict(overlay_on))
    return d


NODES = [
    view("alice-workstation", [_gpu(0, "NVIDIA GeForce RTX 4090", 24564, 2000),
                               _gpu(1, "NVIDIA GeForce RTX 4090", 24564)]),
    view("bob", [_gpu(0, "NVIDIA H100 80GB HBM3", 81559, 480)], agent_state="paused"),
    view("carol", [], cores=8, overlay={"ip": "10.77.0.4", "status": {
        "up": False, "error": WG_ERROR}}),
    view("dave", [_gpu(0, "NVIDIA GeForce RTX 4090", 24564),
                  _gpu(1, "NVIDIA GeForce RTX 3090", 24576)], status=NodeStatus.DEGRADED),
]


def plain(lines: list[str]) -> list[str]:
    """The markup lines as the terminal shows them."""
    return [Text.from_markup(line).plain for line in lines]


def _render(renderable: object, width: int) -> list[str]:
    c = Console(width=width, record=True, color_system=None)
    c.print(renderable)
    return c.export_text().rstrip("\n").splitlines()


def test_the_default_table_fits_80_columns_without_wrapping_or_cutting() -> None:
    lines = _render(nodes_table(NODES, legend=True), 80)
    headers = ["NAME", "STATUS", "HARDWARE", "FREE", "REL", "OVERLAY", "SEEN"]
    assert lines[0].split() == headers  # every header on the one first line
    assert all(len(line) <= 80 for line in lines)
    assert not any("…" in line for line in lines)
    rows = {line.split()[0]: line for line in lines[1:5]}  # one line per node
    assert set(rows) == {"alice-workstation", "bob", "carol", "dave"}
    assert rows["alice-workstation"].split()[1:6] == ["online", "2×RTX", "4090", "46/48G",
                                                      "0.71"]
    assert "paused" in rows["bob"] and "H100 80GB HBM3" in rows["bob"]
    assert "cpu 8c" in rows["carol"] and " down " in rows["carol"]
    assert "RTX 4090+RTX 3090" in rows["dave"] and "degraded" in rows["dave"]
    legend = " ".join(lines[5:])
    assert "REL: earned reliability" in legend and "--wide" in legend


def test_wide_is_the_full_view_with_the_overlay_and_a_rel_legend() -> None:
    lines = _render(nodes_table(NODES, wide=True, legend=True), 250)
    assert lines[0].split()[:4] == ["NAME", "STATUS", "GPUS", "(free/total"]
    text = "\n".join(lines)
    for cell in ("torch 2.13.0", "nccl 2.21.5", "12.3ms", "16c/64.0G", "198.18.0.13:40012",
                 "up 10.77.0.2", "Address already in use", "online (paused)"):
        assert cell in text, cell
    assert "REL: earned reliability, 0 to 1: a new node starts at 0.30" in text


def test_overlay_off_reads_off_everywhere() -> None:
    n = view("erin", [], overlay_on=False)
    assert " off " in _render(nodes_table([n]), 80)[1] + " "
    assert "  overlay off (the controller runs without `gpuhive up --overlay`)" in plain(
        show_lines(n, NOW))


def test_show_says_how_the_node_is_connected_and_why_its_spoke_is_down() -> None:
    lines = plain(show_lines(NODES[2] | {"events": [{"at": NOW - 5, "event": "online",
                                                     "detail": "heard again"}]}, NOW))
    text = "\n".join(lines)
    assert "connected True" not in text
    assert "· connected 5m ago from 198.18.0.13:40012 ·" in text
    assert f"  overlay down (10.77.0.4): {WG_ERROR}" in lines
    assert "reliability 0.71 (REL: earned, 0 to 1" in text
    assert ("software python 3.11.7 · torch 2.13.0 (CUDA 12.4) · NCCL 2.21.5 · llama.cpp: "
            "llama-cpp-python") in text
    gone = plain(show_lines(NODES[0] | {"connected": False, "events": []}, NOW))
    assert any("· not connected ·" in line for line in gone)
    ssh = plain(show_lines(view("lan", [], kind=NodeKind.SSH, overlay={}) | {"events": []}, NOW))
    assert any("reachable over ssh at 198.18.0.13:40012" in line for line in ssh)
    assert any("no overlay address" in line for line in ssh)


def test_probe_lines_name_torch_nccl_and_llama_cpp() -> None:
    line = probe_line({"node": "friend1", "ok": True, "gpus": 1, "source": "nvml",
                       "hardware": {"gpus": [{"name": "NVIDIA H100 80GB HBM3"}]},
                       "software": {"python": "3.11.7", "torch": "2.13.0", "nccl": None,
                                    "llama_server": "/usr/local/bin/llama-server"}})
    assert line == ("friend1: 1 GPU(s) via nvml (H100 80GB HBM3) · python 3.11.7 · torch "
                    "2.13.0 · no NCCL · llama.cpp: llama-server (/usr/local/bin/llama-server)")
    assert probe_line({"node": "lan", "ok": True, "gpus": 0, "source": "cpu",
                       "hardware": {}, "software": {}}).endswith("software not probed (ssh node)")


@pytest.mark.parametrize(("extra", "tail"), [
    ({"gpu_skipped": "no GPU on this node (a CPU node)"},
     "; GPU bench skipped: no GPU on this node (a CPU node)"),
    ({"gpu": {"available": True, "device": "NVIDIA H100", "matmul_tflops": 612.0,
              "memory_gbps": 2900.0}}, "; NVIDIA H100: 612.0 TFLOPS fp16, 2900.0 GB/s"),
])
def test_bench_lines_say_what_was_measured_or_skipped(extra: dict, tail: str) -> None:
    r = {"node": "friend1", "ok": True, "rtt_ms": 1.25, "down_mbps": 19.4, "up_mbps": 18.9,
         **extra}
    assert bench_line(r) == "friend1: rtt 1.2 ms, down 19.4 Mbit/s, up 18.9 Mbit/s" + tail


def test_rank_lines_mark_the_chosen_and_explain_a_cpu_fallback() -> None:
    r = {"request": {"purpose": "train"}, "need": 2, "take": 2, "fits": True,
         "cpu_fallback": True, "chosen": ["f1", "f2"],
         "gpu_excluded": [{"name": n, "reasons": [{"code": "gpu_count",
                                                   "message": "has 0 GPU(s); request needs 1"}]}
                          for n in ("f1", "f2", "f3")],
         "ranked": [{"name": n, "why": "gpus cpu: …"} for n in ("f1", "f2")],
         "excluded": [{"name": "f3", "reasons": [{"code": "overlay", "message":
                                                  f"its WireGuard spoke is down: {WG_ERROR}"}]}]}
    lines = plain(rank_lines(r))
    assert lines[0] == "fewer than 2 GPU nodes fit, so CPU nodes (gloo):"
    assert "too few GPUs: f1, f2, f3" in lines[1]
    assert lines[2].startswith("  1.*f1") and lines[3].startswith("  2.*f2")
    assert "✗ f3" in lines[4] and "Address already in use" in lines[4]
    assert lines[-1] == "* chosen: f1, f2"


def test_rank_lines_mark_nothing_chosen_when_too_few_fit() -> None:
    r = {"request": {"purpose": "serve"}, "need": 1, "take": 1, "fits": False,
         "cpu_fallback": True, "chosen": [], "gpu_excluded": [], "ranked": [],
         "excluded": [{"name": "f1", "reasons": [{"code": "ram", "message": "too little"}]}]}
    lines = plain(rank_lines(r))
    assert lines[0] == "no GPU node fits, so CPU nodes:"
    assert not any("chosen" in line for line in lines)
    r = {**r, "fits": False, "chosen": ["f1"], "ranked": [{"name": "f1", "why": "w"}]}
    assert plain(rank_lines(r))[1] == "  1. f1               w"


def test_nodes_help_explains_rel_and_overlay() -> None:
    from typer.testing import CliRunner

    from gpuhive.cli.main import app
    res = CliRunner().invoke(app, ["nodes", "--help"],
                             env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
    assert res.exit_code == 0
    assert "REL is the node's earned reliability, 0 to 1: a new node starts at 0.30" in \
        res.output
    assert "OVERLAY is the node's WireGuard spoke" in res.output
    assert "--wide" in res.output
