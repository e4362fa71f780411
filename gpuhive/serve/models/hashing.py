"""sha256 of model files (whole or a prefix), and the check that refuses a wrong file."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gpuhive.serve.errors import ChecksumMismatch

CHUNK = 1 << 20


def sha256_file(path: Path, limit: int | None = None) -> str:
    """Hex sha256 of ``path``, or of its first ``limit`` bytes."""
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as f:
        while left is None or left > 0:
            block = f.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise ``ChecksumMismatch`` unless ``path`` hashes to ``expected``."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumMismatch(
            f"{path} has sha256 {actual[:16]}…, expected {expected[:16]}…; refusing to use it",
            hint="the file is partial or corrupt (or the catalog's sha256 is wrong): "
            "delete it and fetch or push it again",
            path=str(path), expected=expected, actual=actual)
