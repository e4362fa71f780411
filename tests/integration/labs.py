"""The lab every lab test module starts the same way."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import pytest

from gpuhive.lab import hive
from gpuhive.lab.hive import Lab, LabOptions


def running_lab(factory: pytest.TempPathFactory, options: LabOptions) -> Iterator[Lab]:
    """A lab for a test module (``yield from`` it in a fixture), removed after, also on
    failure. GPUHIVE_LAB_LOOPBACK=1 runs it on the no-root fallback."""
    lab_dir = factory.mktemp("lab") / "hive"
    if os.environ.get("GPUHIVE_LAB_LOOPBACK") == "1":
        options = dataclasses.replace(options, loopback=True)
    lab = hive.up(options, lab_dir)
    try:
        yield lab
    finally:
        hive.down(lab_dir)
        assert not lab_dir.exists()
