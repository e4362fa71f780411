"""The dashboard shows each node's WireGuard spoke (in-process controller, no overlay)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.integration.conftest import running_hive


def test_dashboard_rows_carry_the_overlay_state(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive, hive.agent("alice"):
            await hive.wait_status("alice", "online")
            base = f"http://{hive.ctl.http.address}"  # type: ignore[union-attr]
            async with httpx.AsyncClient(base_url=base) as http:
                [alice] = (await http.get("/api/overview")).json()["nodes"]
                # this controller runs no hub: the spoke reads "off", not up or unknown
                assert alice["overlay_state"]["state"] == "off"
                assert alice["overlay_state"]["problem"] == ""
                page = (await http.get("/")).text
                assert "<th>Overlay</th>" in page and "n.overlay_state" in page
    asyncio.run(asyncio.wait_for(go(), 60))
