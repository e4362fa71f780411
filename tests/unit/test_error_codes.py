"""Every ``GpuhiveError`` class in gpuhive/ has its own ``code``.

The admin API sends an error's code and the CLI re-raises the class found by it
(``errors.error_class``), so two classes with one code would come back as whichever is found
first, with its exit code. The test imports every module of the package and walks the
class tree: each class must set ``code`` itself (an inherited one is a shared one) and no
two may share it.
"""

from __future__ import annotations

import importlib
import pkgutil

import gpuhive
from gpuhive.errors import GpuhiveError


def all_error_classes() -> list[type[GpuhiveError]]:
    for info in pkgutil.walk_packages(gpuhive.__path__, "gpuhive."):
        if not info.name.endswith("__main__"):  # `python -m` entry points run on import
            importlib.import_module(info.name)
    found: list[type[GpuhiveError]] = []
    todo: list[type[GpuhiveError]] = [GpuhiveError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("gpuhive.") and cls not in found:
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_class_has_a_code_of_its_own() -> None:
    classes = all_error_classes()
    assert len(classes) > 40  # the walk reached overlay, serve, train, agent, probe…
    inherited = [f"{c.__module__}.{c.__qualname__}" for c in classes if "code" not in vars(c)]
    assert inherited == [], f"set `code` on: {inherited}"
    by_code: dict[str, list[str]] = {}
    for c in classes:
        by_code.setdefault(c.code, []).append(f"{c.__module__}.{c.__qualname__}")
    shared = {code: names for code, names in by_code.items() if len(names) > 1}
    assert shared == {}, f"error codes used twice: {shared}"
