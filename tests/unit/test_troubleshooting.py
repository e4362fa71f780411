"""docs/troubleshooting.md lists exactly the error messages the code can raise."""

from __future__ import annotations

import textwrap
from collections import Counter

from gpuhive import errors_catalog as cat

HOW_TO_FIX = ("run `python -m gpuhive.errors_catalog --stale` to see the difference, "
              "then add or remove entries in docs/troubleshooting.md")


def _doc_entries() -> list[tuple[str, str, str]]:
    return cat.parse_entries(cat.DOC_PATH.read_text(encoding="utf-8"))


def test_every_message_in_the_code_is_documented() -> None:
    messages = cat.scan_package()
    documented = {t for t, _c, _f in _doc_entries()}
    missing = sorted({m for m in messages if m.template not in documented})
    lines = [f"{cat.doc_entry(m.template)}   # {m.error} at {m.where}" for m in missing]
    assert not missing, (f"{len(missing)} message(s) raised in gpuhive/ are not in "
                         "docs/troubleshooting.md:\n" + "\n".join(lines) + "\n" + HOW_TO_FIX)


def test_every_documented_message_exists_in_the_code() -> None:
    in_code = cat.templates(cat.scan_package())
    stale = sorted({t for t, _c, _f in _doc_entries()} - in_code)
    assert not stale, (f"{len(stale)} message(s) in docs/troubleshooting.md are no longer "
                       "raised anywhere in gpuhive/:\n"
                       + "\n".join(cat.doc_entry(t) for t in stale) + "\n" + HOW_TO_FIX)


def test_doc_entries_are_unique_and_have_cause_and_fix() -> None:
    entries = _doc_entries()
    assert len(entries) > 100
    twice = sorted(t for t, n in Counter(t for t, _c, _f in entries).items() if n > 1)
    assert not twice, f"documented more than once: {twice}"
    incomplete = [t for t, cause, fix in entries if not cause or not fix]
    assert not incomplete, f"entries without a cause: or fix: line: {incomplete}"


SNIPPET_ERRORS = textwrap.dedent('''
    class GpuhiveError(Exception):
        pass

    class ConfigError(GpuhiveError):
        pass

    class CommandFailed(GpuhiveError):
        pass
''')

SNIPPET_MOD = textwrap.dedent('''
    from pkg import errors
    from pkg.errors import ConfigError as CE

    class OverlayError(errors.GpuhiveError):
        pass

    class DeepError(OverlayError):
        pass

    class NotAnError(ValueError):
        pass

    def f(name, n, argv):
        raise CE(f"bad {name!r} in {n + 1:>4}")
        raise DeepError("prefix " + f"{name} " + "suffix")
        raise DeepError(name + " failed")
        raise errors.ConfigError("a" if n else f"b {n}", hint=f"ignored {n}")
        raise OverlayError(name)
        raise NotAnError("not a gpuhive error")
        raise errors.CommandFailed(argv, 1, "out")
        raise DeepError()
''')


def test_scanner_renders_fstrings_concatenations_and_finds_subclasses() -> None:
    msgs = cat.scan_sources({"pkg/errors.py": SNIPPET_ERRORS, "pkg/mod.py": SNIPPET_MOD})
    got = {(m.template, m.error) for m in msgs}
    assert got == {
        ("bad {…} in {…}", "ConfigError"),                  # f-string, alias resolved
        ("prefix {…} suffix", "DeepError"),                 # concatenation, 2-level subclass
        ("{…} failed", "DeepError"),                        # non-literal operand of a +
        ("a", "ConfigError"),                               # both branches of a conditional
        ("b {…}", "ConfigError"),
        ("`{…}` exited with {…}", "CommandFailed"),         # fixed template
    }
    assert all(m.where.startswith("pkg/mod.py:") for m in msgs)
    assert [m.template for m in msgs] == sorted(m.template for m in msgs)


def test_doc_entry_round_trips_through_the_parser() -> None:
    templates = ["plain {…}", "`{…}` exited with {…}", "a ``double`` tick", "x `y` z"]
    text = "\n".join(f"{cat.doc_entry(t)}\n  - cause: c\n  - fix: f" for t in templates)
    text += "\n\n```\n- `inside a code block`\n```\n"
    assert cat.parse_entries(text) == [(t, "c", "f") for t in templates]
