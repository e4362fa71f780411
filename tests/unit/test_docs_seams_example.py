"""The ten-line example in docs/architecture.md ("Testing a new controller operation") runs
as written, so the documented way to test over the fake cannot rot."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from gpuhive.config import Settings
from gpuhive.controller.hive import Hive
from gpuhive.controller.registry import Registry
from gpuhive.controller.service import HiveService
from gpuhive.testing import FakeNodes, Script
from gpuhive.testing.registry import enroll_agent
from gpuhive.transport.keys import PublicKeyInfo

DOC = Path(__file__).parents[2] / "docs" / "architecture.md"


def test_the_documented_example_passes(tmp_path: Path) -> None:
    text = DOC.read_text()
    section = text[text.index("### Testing a new controller operation"):]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    scope: dict[str, Any] = {
        "asyncio": asyncio, "Registry": Registry, "enroll_agent": enroll_agent,
        "FakeNodes": FakeNodes, "Script": Script, "Hive": Hive, "Settings": Settings,
        "HiveService": HiveService,
        "HOST_KEY": PublicKeyInfo("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDocsHostKey",
                                  "SHA256:" + "D" * 43)}
    exec(compile(block.group(1), str(DOC), "exec"), scope)
    scope["test_exec_reports_the_node_that_failed"](tmp_path)
