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
    try:
        out = subprocess.run(["git", "-C", str(workdir), "ls-files", "-z", "--cached"],
                             capture_output=True, check=True, timeout=30).stdout
        tracked = [p for p in out.decode().split("\0") if p]
        if tracked:
            return sorted(p for p in tracked if (workdir / p).is_file())
    except (OSError, subprocess.SubprocessError):
        pass  # not a git checkout (or no git): fall back to the ignore file
    patterns = list(ALWAYS_SKIP)
    ignore = workdir / ".gpuhiveignore"
    if ignore.exists():
        patterns += [line.strip() for line in ignore.read_text().splitlines()
                     if line.strip() and not line.startswith("#")]
    files = []
    for root, dirs, names in os.walk(workdir):
        rel_root = Path(root).relative_to(workdir)
        dirs[:] = sorted(d for d in dirs if not _ignored(str(rel_root / d), d, patterns))
        for name in names:
            rel = str(rel_root / name) if str(rel_root) != "." else name
            if not _ignored(rel, name, patterns):
                files.append(rel)
    return sorted(files)


def _ignored(rel: str, name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) or
               fnmatch.fnmatch(rel, p.rstrip("/") + "/*") for p in patterns)


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
