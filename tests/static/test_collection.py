"""Test collection does not depend on the order of the folders.

Every conftest.py is imported under the one module name ``conftest``; a test that writes
``from conftest import ...`` gets whichever conftest was imported last, so it breaks when
another folder is collected first. Shared helpers live in uniquely named modules instead
(tests/support.py, tests/netbed.py, tests/*/..._helpers.py).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from static_support import ROOT, run_python

TESTS = ROOT / "tests"


def _leaf_folders() -> list[str]:
    """Every folder holding test modules, relative to the checkout, in pytest's own order."""
    return sorted({str(p.parent.relative_to(ROOT)) for p in TESTS.rglob("test_*.py")})


def _collected(folders: list[str]) -> set[str]:
    cp = run_python("-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *folders)
    assert cp.returncode == 0, f"collecting {folders} failed:\n{cp.stdout[-4000:]}{cp.stderr[-2000:]}"
    return {line for line in cp.stdout.splitlines() if "::" in line}


def test_collection_is_the_same_in_reverse_folder_order() -> None:
    folders = _leaf_folders()
    assert len(folders) > 5, folders
    with ThreadPoolExecutor(max_workers=2) as pool:
        forward, backward = pool.map(_collected, [folders, folders[::-1]])
    assert len(forward) > 500, len(forward)
    assert forward == backward, (
        f"only forward: {sorted(forward - backward)[:20]}\nonly backward: {sorted(backward - forward)[:20]}")


_FROM_CONFTEST = re.compile(r"^\s*(from\s+conftest\s+import|import\s+conftest\b)", re.MULTILINE)


def test_no_test_imports_a_conftest_module() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in TESTS.rglob("*.py") if _FROM_CONFTEST.search(p.read_text())]
    assert not offenders, f"import shared helpers from a uniquely named module (tests/support.py): {offenders}"
