"""Code sync: pack a workdir deterministically and name it by its content.

In a git repository only tracked files are sent (their working-tree contents); elsewhere
everything except what ``.gpuhiveignore`` (fnmatch patterns, one per line) excludes. The
hash covers paths, executable bits and contents, so an unchanged tree has the same hash on
every launch and a node that has it receives nothing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from gpuhive.core import humanize
from gpuhive.errors import ConfigError

ALWAYS_SKIP = (".git", "__pycache__", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache",
               "*.pyc")
MAX_BUNDLE = 512 * 1024 * 1024


@dataclass(frozen=True)
class Bundle:
    digest: str  # sha256 over (path, mode, content) of every file
    files: tuple[str, ...]
    data: bytes  # a deterministic .tar.gz

    @property
    def short(self) -> str:
        return self.digest[:16]


def list_files(workdir: Path) -> list[str]:
    if not workdir.is_dir():
        raise ConfigError(f"workdir {workdir} is not a directory", key="workdir")
    tracked = git_tracked(workdir)
    if tracked:
        return sorted(p for p in tracked if (workdir / p).is_file())
    patterns = ignore_patterns(workdir)
    files = []
    for root, dirs, names in os.walk(workdir):
        rel_root = Path(root).relative_to(workdir)
        dirs[:] = sorted(d for d in dirs if not _ignored(str(rel_root / d), d, patterns))
        for name in names:
            rel = str(rel_root / name) if str(rel_root) != "." else name
            if not _ignored(rel, name, patterns):
                files.append(rel)
    return sorted(files)


def git_tracked(workdir: Path) -> list[str]:
    """The files git tracks under ``workdir`` (relative to it); [] outside a checkout."""
    try:
        out = subprocess.run(["git", "-C", str(workdir), "ls-files", "-z", "--cached"],
                             capture_output=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []  # not a git checkout (or no git): the ignore file decides
    return [p for p in out.decode().split("\0") if p]


def ignore_patterns(workdir: Path) -> list[str]:
    patterns = list(ALWAYS_SKIP)
    ignore = workdir / ".gpuhiveignore"
    if ignore.exists():
        patterns += [line.strip() for line in ignore.read_text().splitlines()
                     if line.strip() and not line.startswith("#")]
    return patterns


def exclusion_reason(rel: str, tracked: list[str], patterns: list[str]) -> str | None:
    """Why the file ``rel`` (relative to the workdir) is not synced, or None if it is.

    ``tracked`` and ``patterns`` are what ``list_files`` decides by: git's tracked files
    when there are any, else the ignore patterns, which also skip whole folders.
    """
    if tracked:
        return None if rel in tracked else "git does not track it (only tracked files are " \
            "synced from a git checkout)"
    parts = Path(rel).parts
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        hit = _matching(prefix, parts[depth - 1], patterns)
        if hit is not None:
            what = "it" if depth == len(parts) else f"its folder {prefix}"
            if hit in ALWAYS_SKIP:
                return f"gpuhive never syncs {hit!r} ({what} matches)"
            return f".gpuhiveignore excludes {what} (pattern {hit!r})"
    return None


def _ignored(rel: str, name: str, patterns: list[str]) -> bool:
    return _matching(rel, name, patterns) is not None


def _matching(rel: str, name: str, patterns: list[str]) -> str | None:
    return next((p for p in patterns if fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p)
                 or fnmatch.fnmatch(rel, p.rstrip("/") + "/*")), None)


def pack(workdir: Path) -> Bundle:
    files = list_files(workdir)
    h = hashlib.sha256()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for rel in files:
            path = workdir / rel
            data = path.read_bytes()
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            h.update(rel.encode() + b"\0" + str(mode).encode() + b"\0" +
                     hashlib.sha256(data).digest())
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
            if buf.tell() > MAX_BUNDLE:
                raise ConfigError(f"workdir {workdir} packs to more than 512 MiB",
                                  hint="add large data to .gpuhiveignore (or untrack it)",
                                  key="workdir")
    # gzip stores a timestamp; zero it so equal trees give equal bytes
    packed = bytearray(buf.getvalue())
    packed[4:8] = b"\0\0\0\0"
    return Bundle(h.hexdigest(), tuple(files), bytes(packed))


def requirements_digest(text: str, code_digest: str = "") -> str:
    """The key of a job's venv: its requirements, and the code when they name local files.

    A line such as ``./wheels/x.whl`` or ``-e .`` installs from the synced code, so a new
    version of that code must build a new venv instead of reusing a stale one.
    """
    lines = sorted(line.strip() for line in text.splitlines()
                   if line.strip() and not line.strip().startswith("#"))
    if code_digest and any(_names_local_path(line) for line in lines):
        lines.append(f"# code {code_digest}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _names_local_path(line: str) -> bool:
    words = line.split()
    if words[0] in ("-r", "-c", "--requirement", "--constraint") and len(words) > 1:
        return "://" not in words[1]  # another requirements file, read from the code
    if words[0] in ("-e", "--editable") and len(words) > 1:
        words = words[1:]
    return words[0].startswith((".", "/", "~", "file:"))


def sync_summary(short: str, size: int, sent_to: list[str], had: list[str]) -> str:
    """The ``synced`` event: what went where; a cache hit must not read like a failure."""
    total = len(sent_to) + len(had)
    if not sent_to:
        where = had[0] if total == 1 else "both nodes" if total == 2 else f"all {total} nodes"
        return f"code {short} already on {where} (nothing sent)"
    text = f"code {short}: {humanize.size(size)} sent to {len(sent_to)} of {total} node(s)"
    return text + (f"; {', '.join(had)} already had it" if had else "")
