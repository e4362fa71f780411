"""What `gpuhive train` checks on the owner's machine before it submits a job.

Each of these would otherwise be found on the nodes, after selection, preflight and the
code sync: the script is missing, outside the workdir, left out of the sync (untracked in
git, or excluded by ``.gpuhiveignore``), does not compile, or the requirements file is not
there. All are ``ConfigError`` (exit 2) and nothing has been sent when they are raised.

``locate_script`` and ``syntax_problem`` decide; ``check`` reads the files.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from gpuhive.errors import ConfigError
from gpuhive.train import sync
from gpuhive.train.spec import JobSpec


def absolute(path: str | Path, base: Path) -> Path:
    """``path`` made absolute from ``base`` and normalised, symlinks kept as they are:
    the sync reads a linked file through its link."""
    return Path(os.path.normpath(base / path))


def locate_script(script: str, workdir: Path, cwd: Path) -> str:
    """The script's path relative to ``workdir`` (absolute), as the nodes will run it.

    A relative path is looked up in the workdir first, then from ``cwd`` (so both
    `--workdir proj train.py` and `--workdir proj proj/train.py` work); either way it must
    lie inside the workdir, which is all the nodes receive.
    """
    given = Path(script)
    candidates = [given] if given.is_absolute() else [workdir / given, cwd / given]
    found = next((absolute(c, cwd) for c in candidates if absolute(c, cwd).is_file()), None)
    if found is None:
        raise ConfigError(f"training script {script} does not exist",
                          hint=f"give a path to a .py file or a job.yaml; a relative path is "
                          f"looked for in the workdir {workdir}", key="script")
    try:
        return found.relative_to(workdir).as_posix()
    except ValueError as exc:
        raise ConfigError(f"{script} is outside the workdir {workdir}",
                          hint="pass --workdir with the project folder that holds it: the "
                          "workdir is what is synced to the nodes", key="script") from exc


@dataclass(frozen=True)
class SyntaxProblem:
    where: str  # path:line[:column]
    what: str  # e.g. "SyntaxError: invalid syntax"
    line: str  # the offending line, stripped ("" when unknown)


def syntax_problem(source: bytes, shown_as: str) -> SyntaxProblem | None:
    """Why ``source`` does not compile as Python, or None when it does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarnings are the nodes' business
        try:
            compile(source, shown_as, "exec", dont_inherit=True)
        except SyntaxError as exc:
            where = f"{shown_as}:{exc.lineno or '?'}" + (f":{exc.offset}" if exc.offset else "")
            return SyntaxProblem(where, f"{type(exc).__name__}: {exc.msg}",
                                 (exc.text or "").strip())
        except ValueError as exc:  # a NUL byte: not Python source at all
            return SyntaxProblem(shown_as, f"ValueError: {exc}", "")
    return None


def shown_path(path: Path, cwd: Path) -> str:
    """How to name a file to the owner: from the current directory when it is below it."""
    try:
        return path.relative_to(cwd).as_posix()
    except ValueError:
        return str(path)


def check(spec: JobSpec, cwd: Path, *, synced: bool = True, compiles: bool = True) -> None:
    """Refuse, before submitting, a job whose script or requirements cannot work.

    ``synced``: the script must be among the files the sync sends (not for ``--emit``, whose
    code goes into an image); ``compiles``: it must compile with this Python.
    """
    workdir = Path(spec.workdir)
    if not workdir.is_dir():
        raise ConfigError(f"workdir {workdir} is not a directory", key="workdir")
    script = workdir / spec.script
    if synced:
        tracked = sync.git_tracked(workdir)
        why = sync.exclusion_reason(spec.script, tracked, sync.ignore_patterns(workdir))
        if why is not None:
            raise ConfigError(
                f"script {spec.script} would not be synced to the nodes: {why}",
                hint=f"`git add {spec.script}`" if tracked else "remove the pattern from "
                ".gpuhiveignore, or move the script", key="script")
    if compiles:
        problem = syntax_problem(script.read_bytes(), shown_path(script, cwd))
        if problem is not None:
            py = f"{sys.version_info.major}.{sys.version_info.minor}"
            raise ConfigError(
                f"training script {problem.where} does not compile: {problem.what}",
                hint=(f"the line reads `{problem.line}`; " if problem.line else "")
                + f"fix it and run again (compiled with this machine's Python {py}; if the "
                "nodes run a newer Python that accepts it, --no-check skips this check)",
                key="script", where=problem.where)
    if spec.requirements and not (workdir / spec.requirements).is_file():
        raise ConfigError(f"requirements file {spec.requirements} does not exist in the "
                          f"workdir {workdir}", hint="the path is relative to the workdir",
                          key="requirements")
