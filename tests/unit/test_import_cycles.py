"""No import cycles anywhere in gpuhive/: the module graph, read from the source with ``ast``.

The rule: every import statement counts, wherever it is — at module level, under
``if TYPE_CHECKING:`` and inside functions. A cycle through a type-only or a deferred import
is still two modules that each need the other to be understood and changed (the relay's
type-only import of the gateway was one); deferring an import hides a cycle, it does not
remove it. An edge goes to the module named: ``from a.b import c`` is ``a.b.c`` when that is
a module, else ``a.b``. The parent packages Python runs first are not edges: their
``__init__`` files re-export at most, and that cannot close a cycle by itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import gpuhive

ROOT = Path(gpuhive.__file__).resolve().parent


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(tree: ast.AST, module: str, is_package: bool,
             mods: dict[str, Path]) -> Iterator[str]:
    """Every dotted name an import in ``tree`` refers to (relative ones resolved)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            for alias in node.names:  # a submodule, or a name defined in ``base``
                full = f"{base}.{alias.name}"
                yield full if full in mods else base


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        for target in imported(tree, name, path.name == "__init__.py", mods):
            while target and target not in mods:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def path_within(edges: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete loop through a component, to name in the failure: a → b → … → a."""
    members = set(component)
    start = component[0]
    trail, seen = [start], {start}
    while True:
        nxt = min(edges[trail[-1]] & members)
        if nxt in seen:
            return [*trail[trail.index(nxt):], nxt]
        trail.append(nxt)
        seen.add(nxt)


def test_gpuhive_has_no_import_cycles() -> None:
    edges = graph()
    loops = [" → ".join(path_within(edges, c)) for c in cycles(edges)]
    assert loops == [], "import cycles:\n  " + "\n  ".join(loops)


def test_the_graph_sees_what_it_must() -> None:
    edges = graph()
    # a plain import, a relative one, one inside a function and a type-only one
    assert "gpuhive.serve.gateway.pool" in edges["gpuhive.serve.gateway.relay"]
    assert "gpuhive.controller.daemon" in edges["gpuhive.cli.controller"]  # in a function
    assert "gpuhive.transport.api" in edges["gpuhive.testing"]  # under TYPE_CHECKING
    assert "gpuhive.serve" not in edges["gpuhive.serve.gateway.app"]
    made_up = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(made_up) == [["a", "b", "c"]]
    assert path_within(made_up, ["a", "b", "c"]) == ["a", "b", "c", "a"]
