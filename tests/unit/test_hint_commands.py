"""Every `gpuhive …` command that a message, hint or help text in the code tells the user to
run exists, with the options it names: a hint that names `keys list` (it is `keys ls`) or a
flag that was renamed fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import typer

import gpuhive
from gpuhive.cli.main import app

PACKAGE = Path(gpuhive.__file__).resolve().parent
COMMAND = re.compile(r"`gpuhive ([^`]*)`")


def _resolve(root: Any, words: list[str]) -> tuple[Any, int]:
    """The command ``words`` name and how many words named it (0: none)."""
    cmd, used = root, 0
    for word in words:
        subs = getattr(cmd, "commands", None) or {}
        if word in subs:
            cmd, used = subs[word], used + 1
        elif subs and "start" in subs and not word.startswith("-") and used:
            cmd, used = subs["start"], used + 1  # `gpuhive serve MODEL` is `serve start`
        else:
            break
    return cmd, used


def _options(cmd: Any) -> set[str]:
    names = {"--help"}
    for param in cmd.params:
        names |= set(getattr(param, "opts", ())) | set(getattr(param, "secondary_opts", ()))
    return names


def _variants(words: list[str]) -> list[list[str]]:
    """`gpuhive lab up|down|status` (or `jobs show/logs`) names several commands: one word
    list for each."""
    for i, word in enumerate(words):
        alts = re.split(r"[|/]", word)
        if len(alts) > 1 and not word.startswith(("-", ".", "/")) and all(alts):
            return [v for alt in alts for v in _variants([*words[:i], alt, *words[i + 1:]])]
    return [words]


def problems(root: Any, text: str) -> list[str]:
    found = []
    for m in COMMAND.finditer(text):
        if "…" in m.group(1):  # "any command" (a template, or prose about all of them)
            continue
        for words in _variants(m.group(1).split()):
            found += _check(root, m.group(1), words)
    return found


def _check(root: Any, text: str, words: list[str]) -> list[str]:
    named = f"`gpuhive {text}`"
    cmd, used = _resolve(root, words)
    if not used and not (words and words[0].startswith("-")):  # `gpuhive --version` is fine
        return [f"{named}: no such command"]
    rest = words[used:]
    rest = rest[:rest.index("--")] if "--" in rest else rest  # the rest is not ours
    if getattr(cmd, "commands", None) and rest and not rest[0].startswith("-"):
        return [f"{named}: no such command {rest[0]!r}"]
    bad = [w for w in rest if w.startswith("-") and w.split("=")[0] not in _options(cmd)]
    return [f"{named}: no option {', '.join(bad)}"] if bad else []


def test_every_command_named_in_the_code_exists() -> None:
    root = typer.main.get_command(app)
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                wrong += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {p}"
                          for p in problems(root, node.value)]
    assert not wrong, "\n".join(wrong)


def test_every_command_named_in_the_docs_exists() -> None:
    root = typer.main.get_command(app)
    docs = [PACKAGE.parent / "README.md", *sorted((PACKAGE.parent / "docs").glob("*.md"))]
    wrong = [f"{doc.name}:{i}: {p}" for doc in docs
             for i, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
             for p in problems(root, line)]
    assert not wrong, "\n".join(wrong)


def test_the_checker_catches_wrong_commands_and_options() -> None:
    root = typer.main.get_command(app)
    assert problems(root, "see `gpuhive keys list`") == [
        "`gpuhive keys list`: no such command 'list'"]
    assert problems(root, "`gpuhive kyes ls`") == ["`gpuhive kyes ls`: no such command"]
    assert problems(root, "`gpuhive --version`, `gpuhive … --help`") == []
    assert problems(root, "`gpuhive --verison`") == ["`gpuhive --verison`: no option "
                                                     "--verison"]
    assert problems(root, "`gpuhive invite --nmae x`") == ["`gpuhive invite --nmae x`: no "
                                                           "option --nmae"]
    assert problems(root, "`gpuhive keys ls`, `gpuhive serve tiny -r 2`, "
                          "`gpuhive train x.py -- --steps 3`, `gpuhive lab up|down`") == []
    assert problems(root, "`gpuhive lab up|dwon`") == [
        "`gpuhive lab up|dwon`: no such command 'dwon'"]
