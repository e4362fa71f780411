"""`gpuhive train` refuses, before submitting, a script the nodes could not run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gpuhive.errors import ConfigError
from gpuhive.train import precheck
from gpuhive.train.spec import JobSpec


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    d = tmp_path / "proj"
    (d / "sub").mkdir(parents=True)
    (d / "train.py").write_text("print('hi')\n")
    (d / "sub" / "inner.py").write_text("x = 1\n")
    (tmp_path / "outside.py").write_text("y = 2\n")
    return d


def test_a_script_is_found_in_the_workdir_or_from_the_current_directory(proj: Path) -> None:
    home = proj.parent
    assert precheck.locate_script("train.py", proj, home) == "train.py"  # in the workdir
    assert precheck.locate_script("proj/train.py", proj, home) == "train.py"  # from cwd
    assert precheck.locate_script(str(proj / "sub/inner.py"), proj, home) == "sub/inner.py"
    assert precheck.locate_script("../train.py", proj, proj / "sub") == "train.py"


def test_a_missing_script_or_one_outside_the_workdir_is_refused(proj: Path) -> None:
    with pytest.raises(ConfigError, match=r"training script nope.py does not exist") as e:
        precheck.locate_script("nope.py", proj, proj.parent)
    assert str(proj) in e.value.hint
    with pytest.raises(ConfigError, match=r"outside.py is outside the workdir") as e:
        precheck.locate_script("outside.py", proj, proj.parent)
    assert "--workdir" in e.value.hint


def test_a_syntax_error_names_file_line_and_column() -> None:
    problem = precheck.syntax_problem(b"import os\n\ndef f(:\n    pass\n", "proj/train.py")
    assert problem is not None
    assert problem.where == "proj/train.py:3:7"
    assert problem.what == "SyntaxError: invalid syntax"
    assert problem.line == "def f(:"
    bad_indent = precheck.syntax_problem(b"if True:\nx = 1\n", "t.py")
    assert bad_indent is not None and bad_indent.what.startswith("IndentationError")
    assert precheck.syntax_problem(b"from __future__ import annotations\nx: 'T' = 1\n",
                                   "ok.py") is None
    assert precheck.syntax_problem(b"x = '\\d'\n", "warns.py") is None  # a warning only


def _spec(proj: Path, script: str = "train.py", requirements: str | None = None) -> JobSpec:
    return JobSpec(script=script, workdir=str(proj), requirements=requirements)


def test_check_refuses_what_would_only_fail_on_the_nodes(proj: Path) -> None:
    precheck.check(_spec(proj), proj)  # fine as it is
    (proj / "train.py").write_text("for x in range(3)\n    print(x)\n")
    with pytest.raises(ConfigError, match=r"training script train.py:1:\d+ does not compile: "
                                          r"SyntaxError") as e:
        precheck.check(_spec(proj), proj)
    assert "for x in range(3)" in e.value.hint
    precheck.check(_spec(proj), proj, compiles=False)  # --no-check
    with pytest.raises(ConfigError, match=r"requirements file req.txt does not exist"):
        precheck.check(_spec(proj, requirements="req.txt"), proj, compiles=False)


def test_an_ignored_script_is_refused_with_the_pattern(proj: Path) -> None:
    (proj / ".gpuhiveignore").write_text("# local only\nsub\n")
    with pytest.raises(ConfigError, match=r"script sub/inner.py would not be synced to the "
                                          r"nodes: .gpuhiveignore excludes its folder sub "
                                          r"\(pattern 'sub'\)"):
        precheck.check(_spec(proj, "sub/inner.py"), proj)
    (proj / ".gpuhiveignore").write_text("*.py\n")
    with pytest.raises(ConfigError, match=r"excludes it \(pattern '\*.py'\)"):
        precheck.check(_spec(proj), proj)
    (proj / ".gpuhiveignore").write_text("")
    (proj / "__pycache__").mkdir()
    (proj / "__pycache__" / "x.py").write_text("")
    with pytest.raises(ConfigError, match=r"gpuhive never syncs '__pycache__'"):
        precheck.check(_spec(proj, "__pycache__/x.py"), proj)
    precheck.check(_spec(proj), proj)


def test_an_untracked_script_in_a_git_checkout_is_refused(proj: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(proj), *args], check=True, capture_output=True)
    git("init", "-q")
    git("add", "train.py")
    precheck.check(_spec(proj), proj)
    with pytest.raises(ConfigError, match=r"script sub/inner.py would not be synced to the "
                                          r"nodes: git does not track it") as e:
        precheck.check(_spec(proj, "sub/inner.py"), proj)
    assert e.value.hint == "`git add sub/inner.py`"


def test_shown_paths_are_relative_to_the_current_directory_when_below_it(proj: Path) -> None:
    assert precheck.shown_path(proj / "train.py", proj.parent) == "proj/train.py"
    assert precheck.shown_path(proj / "train.py", proj / "sub") == str(proj / "train.py")


def test_the_reason_agrees_with_what_the_sync_sends(tmp_path: Path) -> None:
    from gpuhive.train import sync
    files = ["a.py", "data/x.bin", "data/keep.py", "logs/run1/out.txt", "src/m.py",
             "src/__pycache__/m.cpython-311.pyc", "notes.md", "deep/er/file.py"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x\n")
    (tmp_path / ".gpuhiveignore").write_text("data/*.bin\nlogs\n*.md\ner\n")
    sent = set(sync.list_files(tmp_path))
    patterns = sync.ignore_patterns(tmp_path)
    for f in files:
        reason = sync.exclusion_reason(f, [], patterns)
        assert (reason is None) == (f in sent), (f, reason)
    assert sent == {"a.py", "data/keep.py", "src/m.py", ".gpuhiveignore"}
