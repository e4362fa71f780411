"""The product does not depend on the lab: only the lab CLI imports gpuhive.lab.

Read from the source (ast), nothing imported. cli/common.py may import the lab inside a
function only (its "a lab is running" hint), so ``gpuhive`` commands never load it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gpuhive

ROOT = Path(gpuhive.__file__).parent
ALLOWED = {"cli/lab.py"}
LAZY_ONLY = {"cli/common.py"}


def package_of(path: Path) -> str:
    """The package a file's relative imports start from: gpuhive.overlay for its modules."""
    return ".".join(path.relative_to(ROOT.parent).parent.parts)


def lab_imports(source: str, package: str) -> list[tuple[int, bool]]:
    """(line, at module level) of every import of gpuhive.lab in a module of ``package``."""
    tree = ast.parse(source)
    top = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` and try blocks count as module level
        if isinstance(node, ast.If | ast.Try):
            top |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[:len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        if any(n == "gpuhive.lab" or n.startswith("gpuhive.lab.") for n in names):
            found.append((node.lineno, id(node) in top))
    return found


def test_only_the_lab_cli_imports_the_lab() -> None:
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("lab/") or rel in ALLOWED:
            continue
        for line, module_level in lab_imports(path.read_text(), package_of(path)):
            if rel not in LAZY_ONLY or module_level:
                wrong.append(f"gpuhive/{rel}:{line}")
    assert wrong == [], "gpuhive.lab imported outside the lab CLI: " + ", ".join(wrong)


def test_the_scan_sees_every_spelling() -> None:
    assert package_of(ROOT / "overlay" / "driver.py") == "gpuhive.overlay"
    assert package_of(ROOT / "overlay" / "__init__.py") == "gpuhive.overlay"
    assert lab_imports((ROOT / "overlay" / "driver.py").read_text(), "gpuhive.overlay") == []
    for text in ["import gpuhive.lab.netns", "from gpuhive.lab import netns",
                 "from gpuhive import lab", "from ..lab import netns", "from .. import lab",
                 "if True:\n    import gpuhive.lab"]:
        assert lab_imports(text + "\n", "gpuhive.overlay") == [(text.count("\n") + 1, True)], \
            text
    lazy = "def f():\n    from gpuhive.lab.state import LabState\n"
    assert lab_imports(lazy, "gpuhive.cli") == [(2, False)]
    assert lab_imports("from . import lab\n", "gpuhive.cli") == []  # that is gpuhive.cli.lab
    assert lab_imports("from .lab import hive\n", "gpuhive") == [(1, True)]
