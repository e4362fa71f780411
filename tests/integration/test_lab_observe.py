"""Observing a running lab: a real Prometheus scrapes the controller, and the dashboard
renders in headless Chromium and shows a node going offline. Both run on the lab's
controller host; a screenshot is kept in test-artifacts/."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuhive.lab.hive import Lab, LabOptions
from gpuhive.ports import free_port
from tests.integration.labs import running_lab

PROMETHEUS = shutil.which("prometheus")
CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from running_lab(tmp_path_factory, LabOptions(friends=2, heartbeat_interval=0.5))


def _fetch(lab: Lab, url: str) -> str:
    code = f"import urllib.request,sys; sys.stdout.write(urllib.request.urlopen({url!r}, " \
           "timeout=5).read().decode())"
    return lab.run_on("ctl", [sys.executable, "-c", code]).stdout


@pytest.mark.skipif(PROMETHEUS is None, reason="Debian package prometheus not installed")
def test_prometheus_scrapes_the_lab(lab: Lab, tmp_path: Path) -> None:
    port = free_port()
    target = lab.http_url.removeprefix("http://")
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                   "scrape_configs:\n"
                   f"  - job_name: gpuhive\n    static_configs: [{{targets: ['{target}']}}]\n")
    assert PROMETHEUS is not None
    lab.spawn_on("ctl", [PROMETHEUS, f"--config.file={cfg}",
                         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                         f"--web.listen-address=127.0.0.1:{port}"], "prometheus.log")
    api = f"http://127.0.0.1:{port}/api/v1/query?query="
    deadline = time.monotonic() + 40
    nodes: set[str] = set()
    while time.monotonic() < deadline:
        try:
            result = json.loads(_fetch(lab, api + "gpuhive_node_up"))["data"]["result"]
            nodes = {r["metric"]["node"] for r in result if r["value"][1] == "1"}
            if nodes == {"friend1", "friend2"}:
                break
        except Exception:  # Prometheus still starting
            pass
        time.sleep(1)
    assert nodes == {"friend1", "friend2"}
    cores = json.loads(_fetch(lab, api + "gpuhive_node_cpu_cores"))["data"]["result"]
    assert {r["metric"]["node"]: float(r["value"][1]) for r in cores} == {
        "friend1": os.cpu_count(), "friend2": os.cpu_count()}
    up = json.loads(_fetch(lab, api + 'up{job="gpuhive"}'))["data"]["result"]
    assert up and up[0]["value"][1] == "1"


def _chromium(lab: Lab, tmp_path: Path, *args: str) -> str:
    assert CHROMIUM is not None
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'chrome'}",
            "--virtual-time-budget=6000", "--window-size=1280,900", *args, lab.http_url + "/"]
    return lab.run_on("ctl", argv, timeout=90).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed")
def test_dashboard_lists_nodes_and_shows_one_going_offline(lab: Lab, tmp_path: Path) -> None:
    dom = _chromium(lab, tmp_path, "--dump-dom")
    assert 'data-node="friend1"' in dom and 'data-node="friend2"' in dom
    assert '<span class="status online">online</span>' in dom
    lab.kill_agent("friend2")
    lab.wait_for({"friend2": "offline"}, timeout=20)
    dom = _chromium(lab, tmp_path, "--dump-dom")
    row = dom[dom.index('data-node="friend2"'):]
    row = row[: row.index("</tr>")]
    assert '<span class="status offline">offline</span>' in row
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    _chromium(lab, tmp_path, f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 5000
