"""Import direction and import circles.

The contracts live in pyproject's [tool.importlinter] (layers, sans-IO, optional extras out of
the device layer); ``lint-imports`` checks them. A planted violation in a copy of the package
shows that each contract catches an arrow running the wrong way, TYPE_CHECKING and
function-level imports included. The circle check uses grimp, the graph library of
import-linter, on the same graph.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterable
from pathlib import Path

import grimp
from static_support import ROOT, lint_imports

# The arrows pyproject's layers contract ignores for now (see the comment there): the circle
# check leaves out the same ones.
IGNORED = [
    tuple(line.split(" -> "))
    for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    if c["id"] == "layers"
    for line in c.get("ignore_imports", ())
]


def test_import_contracts_are_kept() -> None:
    rc, out = lint_imports(ROOT)
    assert rc == 0, f"import contracts broken:\n{out}"
    assert "Contracts: 3 kept, 0 broken." in out, out


def _plant(pkg: Path, module: str, text: str) -> None:
    path = pkg.joinpath(*module.split(".")[1:]).with_suffix(".py")
    if not path.exists():
        path = path.with_suffix("") / "__init__.py"
    path.write_text(path.read_text() + "\n" + text)


def test_a_planted_arrow_back_up_breaks_the_contracts(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "igrs", tmp_path / "igrs", ignore=shutil.ignore_patterns("__pycache__", "*.mp4"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    rc, out = lint_imports(tmp_path)
    assert rc == 0, f"the untouched copy should keep every contract:\n{out}"

    pkg = tmp_path / "igrs"
    # Each kind of arrow the contracts must catch, in a different layer.
    _plant(pkg, "igrs.wire.ids", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                 "    from igrs.node.device import Device\n")
    _plant(pkg, "igrs.net.driver", "def _late() -> None:\n    import igrs.profiles.av.server\n")
    _plant(pkg, "igrs.relay.ids", "def _sideways() -> None:\n    from igrs.bridges import dnssd\n")
    _plant(pkg, "igrs.core.sessions", "import asyncio\n")
    _plant(pkg, "igrs.net.interfaces", "def _extra() -> None:\n    import zeroconf\n")
    (pkg / "plugins").mkdir()
    (pkg / "plugins" / "__init__.py").write_text('"""A new top-level package without a layer."""\n')

    rc, out = lint_imports(tmp_path)
    assert rc != 0, out
    assert "Contracts: 0 kept, 3 broken." in out, out
    for arrow in ("igrs.wire.ids -> igrs.node.device", "igrs.net.driver -> igrs.profiles.av.server",
                  "igrs.relay.ids -> igrs.bridges.dnssd", "igrs.core.sessions -> asyncio",
                  "igrs.net.interfaces -> zeroconf", "igrs.plugins"):
        assert arrow in out, f"{arrow} not reported:\n{out}"


# --- circles -------------------------------------------------------------------------------


def import_cycles(graph: grimp.ImportGraph, modules: Iterable[str],
                  ignored: Iterable[tuple[str, str]] = ()) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing
    itself): every import circle, each as the sorted modules that form it."""
    skip = set(ignored)
    edges = {m: sorted(n for n in graph.find_modules_directly_imported_by(m) if (m, n) not in skip)
             for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1 or node in edges[node]:
                        found.append(sorted(comp))
            elif child not in edges:
                continue
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(edges[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_circle_in_igrs() -> None:
    graph = grimp.build_graph("igrs", cache_dir=None)
    cycles = import_cycles(graph, graph.modules, IGNORED)
    shown = []
    for comp in cycles:
        arrows = [f"{a} -> {b}" for a in comp for b in graph.find_modules_directly_imported_by(a)
                  if b in comp and (a, b) not in IGNORED]
        shown.append("  " + ", ".join(comp) + "\n    " + "\n    ".join(arrows))
    assert not cycles, "import circles among igrs modules:\n" + "\n".join(shown)


def test_the_circle_check_finds_planted_circles() -> None:
    graph = grimp.ImportGraph()
    for a, b in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"),  # a three-module circle
                 ("p.d", "p.e"), ("p.e", "p.d"),                    # a pair
                 ("p.f", "p.a"), ("p.g", "p.g"),                    # into a circle; itself
                 ("p.x", "p.y")]:
        graph.add_import(importer=a, imported=b)
    assert sorted(import_cycles(graph, graph.modules)) == [["p.a", "p.b", "p.c"], ["p.d", "p.e"], ["p.g"]]
    assert import_cycles(graph, graph.modules, [("p.e", "p.d"), ("p.c", "p.a"), ("p.g", "p.g")]) == []
