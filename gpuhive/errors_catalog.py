"""Catalog of the error messages gpuhive can print, read from its own source.

A pure AST scan (nothing is imported or run): find every class that subclasses
``GpuhiveError`` (directly or through other subclasses, in any module of the package),
then every call constructing one of them whose first positional argument is a string
literal, an f-string, or a ``+`` concatenation of those. Each message becomes a
*template*: literal text stays, every ``{expression}`` becomes ``{…}``.
``CommandFailed(argv, code, output)`` builds its own message, so its template is fixed.

``docs/troubleshooting.md`` documents each template as a line

    - `<template>`
      cause: …
      fix: …

and ``python -m gpuhive.errors_catalog`` prints the templates the doc does not list yet
(and, with ``--stale``, the documented ones that no longer exist in the code).
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT_ERROR = "GpuhiveError"
PLACEHOLDER = "{…}"
# CommandFailed(argv, returncode, output) formats "`{argv}` exited with {code}[: tail]".
COMMAND_FAILED = "CommandFailed"
COMMAND_FAILED_TEMPLATE = f"`{PLACEHOLDER}` exited with {PLACEHOLDER}"

PACKAGE_DIR = Path(__file__).resolve().parent
DOC_PATH = PACKAGE_DIR.parent / "docs" / "troubleshooting.md"


@dataclass(frozen=True, order=True)
class Message:
    """One message-building call site."""

    template: str
    error: str      # the error class constructed
    where: str      # "path:line", path relative to the scanned root's parent


def _base_name(node: ast.expr) -> str | None:
    """``Foo`` for ``Foo``, ``mod.Foo`` and ``Foo[...]``; None otherwise."""
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _aliases(tree: ast.Module) -> dict[str, str]:
    """``{local name: imported name}`` for ``from x import Y as Z``."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.asname:
                    out[alias.asname] = alias.name
    return out


def error_classes(trees: Iterable[tuple[ast.Module, dict[str, str]]]) -> set[str]:
    """Names of every class that transitively subclasses ``GpuhiveError``."""
    bases: dict[str, set[str]] = {}
    for tree, aliases in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                names = {_base_name(b) for b in node.bases}
                bases.setdefault(node.name, set()).update(
                    aliases.get(n, n) for n in names if n)
    found = {ROOT_ERROR}
    changed = True
    while changed:
        changed = False
        for name, parents in bases.items():
            if name not in found and parents & found:
                found.add(name)
                changed = True
    return found


def render(node: ast.expr) -> list[str] | None:
    """The template(s) of a message expression, or None if it is not literal text.

    A string constant renders as itself, an f-string with ``{…}`` for each
    replacement field, ``a + b`` as the concatenation (a non-literal operand becomes
    ``{…}`` as long as one side is literal), ``a if c else b`` as both branches.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        parts: list[str] = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
            else:
                parts.append(PLACEHOLDER)
        return ["".join(parts)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = render(node.left), render(node.right)
        if left is None and right is None:
            return None
        return [a + b for a in (left or [PLACEHOLDER]) for b in (right or [PLACEHOLDER])]
    if isinstance(node, ast.IfExp):
        body, orelse = render(node.body), render(node.orelse)
        if body is None or orelse is None:
            return None
        return body + orelse
    return None


def scan_source(source: str, where: str, classes: set[str]) -> Iterator[Message]:
    """Messages constructed in one module's source; ``where`` names it in results."""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _base_name(node.func)
        name = aliases.get(name, name) if name else None
        if name not in classes:
            continue
        assert name is not None
        loc = f"{where}:{node.lineno}"
        if name == COMMAND_FAILED:
            yield Message(COMMAND_FAILED_TEMPLATE, name, loc)
            continue
        if not node.args or isinstance(node.args[0], ast.Starred):
            continue
        for template in render(node.args[0]) or ():
            # one line per doc entry: a newline in a message is written as \n
            yield Message(template.replace("\n", "\\n"), name, loc)


def scan_sources(sources: dict[str, str]) -> list[Message]:
    """Scan ``{where: source}`` together (subclasses may live in any module)."""
    trees = {where: ast.parse(src) for where, src in sources.items()}
    classes = error_classes((t, _aliases(t)) for t in trees.values())
    out: list[Message] = []
    for where, src in sources.items():
        out.extend(scan_source(src, where, classes))
    return sorted(set(out))


# Test doubles only imitate the product's messages: users never see theirs.
NOT_SHOWN_TO_USERS = ("testing",)


def scan_package(package_dir: Path = PACKAGE_DIR) -> list[Message]:
    """Every message template of the package, sorted (template, class, file:line)."""
    base = package_dir.parent
    sources = {p.relative_to(base).as_posix(): p.read_text(encoding="utf-8")
               for p in sorted(package_dir.rglob("*.py"))
               if p.relative_to(package_dir).parts[0] not in NOT_SHOWN_TO_USERS}
    return scan_sources(sources)


def templates(messages: Iterable[Message]) -> set[str]:
    return {m.template for m in messages}


# "- `template`" or "- `` template with `backticks` ``" at the start of a line
_DOC_ENTRY = re.compile(r"^- (?P<tick>`+)(?P<body>.+?)(?P=tick)\s*$")


def doc_entry(template: str) -> str:
    """The Markdown list line documenting ``template`` (a code span that survives
    backticks inside the template)."""
    longest = max((len(run) for run in re.findall(r"`+", template)), default=0)
    tick = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"- {tick}{pad}{template}{pad}{tick}"


def parse_entries(text: str) -> list[tuple[str, str, str]]:
    """``(template, cause, fix)`` for each entry of troubleshooting.md text, in order.

    An entry is a top-level list line holding only a code span, followed by indented
    ``cause:`` and ``fix:`` lines (``- `` bullets allowed). Fenced code blocks are skipped.
    """
    entries: list[list[str]] = []       # [template, cause, fix]
    fenced = False
    in_entry = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced, in_entry = not fenced, False
            continue
        if fenced:
            continue
        m = _DOC_ENTRY.match(line)
        if m:
            body = m.group("body")
            if len(body) > 2 and body.startswith(" ") and body.endswith(" "):
                body = body[1:-1]       # CommonMark strips one space each side
            entries.append([body, "", ""])
            in_entry = True
        elif in_entry and line[:1].isspace():
            item = line.strip().removeprefix("- ")
            for i, label in ((1, "cause:"), (2, "fix:")):
                if item.startswith(label):
                    entries[-1][i] = item[len(label):].strip()
        else:
            in_entry = False
    return [(t, c, f) for t, c, f in entries]


def parse_doc(text: str) -> list[str]:
    """The templates documented in troubleshooting.md text, in order."""
    return [template for template, _cause, _fix in parse_entries(text)]


def documented(doc_path: Path = DOC_PATH) -> set[str]:
    return set(parse_doc(doc_path.read_text(encoding="utf-8"))) if doc_path.exists() else set()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    messages = scan_package()
    in_doc = documented()
    missing = [m for m in messages if m.template not in in_doc]
    seen: set[str] = set()
    for m in missing:
        if m.template in seen:
            continue
        seen.add(m.template)
        print(f"{doc_entry(m.template)}\n  # {m.error} at {m.where}")
    stale = sorted(in_doc - templates(messages)) if "--stale" in args else []
    for t in stale:
        print(f"stale (no longer in code): {doc_entry(t)}")
    if not missing and not stale:
        print(f"all {len(templates(messages))} message templates are documented in {DOC_PATH}",
              file=sys.stderr)
    return 1 if missing or stale else 0


if __name__ == "__main__":
    sys.exit(main())
