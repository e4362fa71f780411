"""Pick, from the last lines a failed node printed, the one that says why it failed.

torchrun ends a failed run with a summary whose useful part is the root-cause exception, and
a worker's traceback ends with ``SomeError: message``; the owner should see that line in
`gpuhive jobs` without opening the logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_EXCEPTION = re.compile(r"\b([A-Z]\w*(Error|Exception|Exit)|error)\b:?\s")
# torchrun's own summary names only itself; the worker's exception printed before it is the cause
_NOISE = re.compile(r"^\s*(File \"|Traceback|\^+$|~+$|raise |return )|ChildFailedError|"
                    r"To enable traceback")
MAX_LEN = 300


def telling_line(lines: Iterable[str]) -> str | None:
    """The last line that names an exception or error, else the last non-blank line."""
    kept = [line.strip() for line in lines if line.strip()]
    for line in reversed(kept):
        if _EXCEPTION.search(line) and not _NOISE.match(line):
            return _clip(line)
    return _clip(kept[-1]) if kept else None


def _clip(line: str) -> str:
    return line if len(line) <= MAX_LEN else line[: MAX_LEN - 1] + "…"
