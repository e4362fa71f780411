"""Human sizes: ``512M``, ``4G``, ``1.5GiB``, ``4096`` (MiB) → MiB."""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$")
_MIB = {"": 1.0, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0 * 1024}


def parse_size_mib(text: str) -> int:
    m = _SIZE_RE.match(text.strip().lower())
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 512M, 4G, 12G)")
    return int(float(m.group(1)) * _MIB[m.group(2)])
