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


# What only the machine can be blamed for. A Python exception, a non-zero exit and a CUDA
# *out of memory* (the script's batch size) are the job's own failures.
_NODE_FAULTS = (
    (re.compile(r"Signal 9 \(SIGKILL\)|exitcode\s*:\s*-9\b|Killed process|oom-kill", re.I),
     "a process was killed (SIGKILL: the node's kernel out of memory?)"),
    (re.compile(r"CUDA error(?!: out of memory)|cudaError|CUBLAS_STATUS_(?!ALLOC)|"
                r"NCCL error|unspecified launch failure|uncorrectable ECC|\bXid\b|"
                r"driver/library version mismatch|no CUDA-capable device", re.I),
     "a CUDA or driver error"),
)


def node_fault(exit_status: int | None, tail: Iterable[str], lost: str = "") -> str | None:
    """Why a node's part of a job failed *because of the node*, or None when the job's own
    code did (it raised or exited non-zero) or nothing failed. Only node faults move the
    node's reliability (issue 12, part 8)."""
    if exit_status is None:
        return f"the link was lost ({lost})" if lost else "the link was lost"
    if exit_status == 0:
        return None
    text = "\n".join(tail)
    for pattern, why in _NODE_FAULTS:
        if pattern.search(text):
            return why
    return None
