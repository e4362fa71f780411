"""How `--help` reads, fixed once for the whole command tree.

Two things Typer gets wrong for this app, whatever the Typer/Click version:

* Typer 0.29 (which vendors its own Click) shows the value type of every option in the rich
  help panel, flags included, so each `--json` read `--json <bool>` as if it took a value.
  Older Typers skipped Click's `BOOLEAN` metavar; 0.29's `display_type_rich` lost that check.
  A flag takes no value, so it gets an empty metavar here, which every version prints as
  nothing.
* In rich markup mode a command's help keeps the single newlines of its docstring in the
  command listings (`gpuhive serve --help`), so a docstring wrapped at 100 columns in the
  source broke mid-sentence on screen. Here every paragraph is joined into one line and the
  terminal wraps it; a paragraph that starts with ``\\b`` (Click's "keep as written" marker)
  is left alone.

``HiveGroup`` is the root command's class: when Typer builds the tree (for the `gpuhive`
entry point, ``python -m gpuhive`` and ``typer.testing`` alike) it polishes every command
below it before anything is parsed or printed.
"""

from __future__ import annotations

import inspect
from typing import Any

from typer.core import TyperGroup

KEEP = "\b"  # Click: a paragraph that starts with this is printed as written


def tidy_help(text: str | None) -> str | None:
    """``text`` with each paragraph on one line: blank lines separate paragraphs, single
    newlines inside one are the source's wrapping, not the author's."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    joined = [p if p.startswith(KEEP) else " ".join(line.strip() for line in p.splitlines())
              for p in paragraphs]
    return "\n\n".join(p for p in joined if p.strip())


def is_flag(param: Any) -> bool:
    """An option that takes no value (`--json`, `--detach`, `--help`)."""
    return bool(getattr(param, "is_flag", False)) and not getattr(param, "count", False)


def polish(command: Any, ctx: Any = None, name: str | None = None) -> None:
    """Tidy the help of ``command`` and of every command below it; give flags no metavar.

    ``ctx`` is a context like the one Click makes when it runs ``command`` (same parent,
    same context settings), so the help option cached by newer Clicks gets the same names
    (`--help`, or whatever ``help_option_names`` says) it would get at run time.
    """
    command.help = tidy_help(command.help)
    command.short_help = tidy_help(command.short_help)
    ctx = command.context_class(command, info_name=name or command.name, parent=ctx,
                                **(command.context_settings or {}))
    for param in command.get_params(ctx):
        if is_flag(param) and param.metavar is None:
            param.metavar = ""
    for sub_name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        polish(sub, ctx, sub_name)


class HiveGroup(TyperGroup):
    """The root `gpuhive` group: polishes the whole tree as soon as Typer has built it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        polish(self)
