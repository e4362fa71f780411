"""Data files shipped with gpuhive and their loaders (the only I/O for ranking tables).

* ``gpu_throughput.csv``: peak dense FP16 TFLOPS per GPU model, each row citing its
  vendor datasheet.
* ``driver_blacklist.txt``: driver versions ranking refuses, with reasons.

Parsing is pure and lives in ``gpuhive.core.parse_tables``; this module only reads files.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from gpuhive.core.parse_tables import (
    DriverBlacklist,
    ThroughputTable,
    parse_driver_blacklist,
    parse_gpu_throughput,
)
from gpuhive.errors import ConfigError


def _read_packaged(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def _read_user(path: Path, key: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {key} file {path}: {exc.strerror or exc}",
                          hint="fix the path or remove the setting", key=key,
                          path=str(path)) from exc


@functools.lru_cache(maxsize=1)
def _packaged_blacklist() -> DriverBlacklist:
    return parse_driver_blacklist(_read_packaged("driver_blacklist.txt"), origin="packaged")


@functools.lru_cache(maxsize=1)
def _packaged_throughput() -> ThroughputTable:
    return parse_gpu_throughput(_read_packaged("gpu_throughput.csv"), origin="packaged")


def load_driver_blacklist(extra_path: Path | str | None = None) -> DriverBlacklist:
    """The packaged blacklist, plus the rules in ``extra_path`` when given."""
    base = _packaged_blacklist()
    if extra_path is None:
        return base
    extra = parse_driver_blacklist(_read_user(Path(extra_path), "driver_blacklist"),
                                   origin=str(extra_path))
    return base.merged(extra)


def load_gpu_throughput(extra_path: Path | str | None = None) -> ThroughputTable:
    """The packaged throughput table; rows in ``extra_path`` come first (they win)."""
    base = _packaged_throughput()
    if extra_path is None:
        return base
    extra = parse_gpu_throughput(_read_user(Path(extra_path), "gpu_throughput"),
                                 origin=str(extra_path))
    return extra.merged(base)


__all__ = ["load_driver_blacklist", "load_gpu_throughput"]
