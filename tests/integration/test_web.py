"""The controller's HTTP side in-process: metrics, JSON API, dashboard, admin token."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx

from gpuhive.controller.daemon import Controller
from tests.integration.conftest import running_hive


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_metrics_api_and_dashboard(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive, hive.agent("alice"):
            await hive.wait_status("alice", "online")
            await asyncio.sleep(0.5)
            base = f"http://{hive.ctl.http.address}"  # type: ignore[union-attr]
            async with httpx.AsyncClient(base_url=base) as http:
                text = (await http.get("/metrics")).text
                assert 'gpuhive_node_up{node="alice"} 1.0' in text
                assert 'gpuhive_nodes{status="online"} 1.0' in text
                assert 'gpuhive_node_cpu_cores{node="alice"}' in text
                assert "gpuhive_heartbeats_received_total" in text
                assert 'gpuhive_jobs{state="running"} 0.0' in text
                assert "gpuhive_gateway_in_flight 0.0" in text
                overview = (await http.get("/api/overview")).json()
                assert [n["name"] for n in overview["nodes"]] == ["alice"]
                assert any(e["event"] == "registered" for e in overview["events"])
                page = (await http.get("/")).text
                assert "api/overview" in page and "<table" in page
                assert (await http.get("/health")).json()["status"] == "ok"
    run(go())


def test_admin_token_guards_everything_but_health(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive:
            await hive.ctl.stop()
            settings = dataclasses.replace(hive.settings, admin_token="s3cret-token")
            hive.ctl = Controller(hive.ctl.home, settings)
            await hive.ctl.start()
            base = f"http://{hive.ctl.http.address}"  # type: ignore[union-attr]
            async with httpx.AsyncClient(base_url=base) as http:
                for path in ("/", "/metrics", "/api/nodes"):
                    assert (await http.get(path)).status_code == 401
                    ok = await http.get(path, headers={"Authorization": "Bearer s3cret-token"})
                    assert ok.status_code == 200
                assert (await http.get("/health")).status_code == 200
                first = await http.get("/?token=s3cret-token")
                assert first.status_code == 200 and "gpuhive_admin" in first.cookies
                assert (await http.get("/api/nodes")).status_code == 200  # the cookie
    run(go())
