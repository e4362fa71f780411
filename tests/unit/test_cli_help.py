"""Every `gpuhive … --help` as a user sees it: no `<bool>` on flags, no docstring wrapping
turned into line breaks, `--version`, and the `ls` listings every group has."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gpuhive import __version__
from gpuhive.cli.helpfmt import tidy_help
from gpuhive.cli.main import app

WIDE = {"COLUMNS": "400", "TERMINAL_WIDTH": "400"}  # wide enough that nothing wraps


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        yield from _walk(sub, (*path, name))


def _tree() -> list[tuple[tuple[str, ...], Any]]:
    return list(_walk(typer.main.get_command(app)))


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env=WIDE, prog_name="gpuhive")
    assert result.exit_code == 0, (path, result.output)
    return result.output


def test_the_tree_has_every_group_and_command() -> None:
    paths = {" ".join(p) for p, _ in _tree()}
    for expected in ("init", "up", "status", "invite", "invite ls", "invite revoke", "nodes",
                     "nodes ls", "nodes rm", "serve", "serve ls", "keys ls", "keys revoke",
                     "lab status", "overlay status", "jobs", "agent"):
        assert expected in paths


@pytest.mark.parametrize("path", [p for p, _ in _tree()], ids=lambda p: " ".join(p) or "-")
def test_no_flag_shows_a_value_type(path: tuple[str, ...]) -> None:
    text = _help(*path)
    assert "<bool>" not in text and "BOOLEAN" not in text
    assert "--help" in text


def test_command_listings_keep_each_summary_on_one_line() -> None:
    """A group's listing shows each subcommand's first paragraph unbroken; the source
    docstrings are wrapped (serve start, serve ls, overlay status), the screen must not be."""
    checked = 0
    for path, command in _tree():
        subs = getattr(command, "commands", None) or {}
        if not subs:
            continue
        text = _help(*path)
        for name, sub in subs.items():
            if sub.hidden or not sub.help:
                continue
            summary = tidy_help(sub.help).split("\n\n")[0]
            assert summary in text, (" ".join((*path, name)), summary, text)
            checked += 1
    assert checked > 30


def test_tidy_help_joins_wrapped_lines_but_keeps_paragraphs_and_verbatim_blocks() -> None:
    src = """First line wraps
        onto a second.

        Second paragraph
        also wraps.

        \b
        keep
        these lines
        """
    assert tidy_help(src) == ("First line wraps onto a second.\n\n"
                              "Second paragraph also wraps.\n\n\b\nkeep\nthese lines")
    assert tidy_help(None) is None and tidy_help("") == ""


def test_version_flag_and_command() -> None:
    for args in (["--version"], ["-V"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0 and result.output.strip() == f"gpuhive {__version__}"
    assert CliRunner().invoke(app, ["version"]).output.strip() == __version__


def test_every_listing_group_answers_to_ls() -> None:
    paths = {p for p, _ in _tree()}
    assert {(group, "ls") for group in ("nodes", "invite", "serve", "keys")} <= paths
