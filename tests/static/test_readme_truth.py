"""The README says what is true: its apt list is `.ci/run`'s, every command is in it, and its
Python examples run to the end by themselves (issue 13, item 10)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _apt_packages(text: str) -> set[str]:
    """Package names after `apt-get install` (options and line continuations skipped)."""
    found: set[str] = set()
    for m in re.finditer(r"apt-get install((?:[^\n]*\\\n)*[^\n]*)", text):
        words = m.group(1).replace("\\\n", " ").split()
        found |= {w for w in words if not w.startswith(("-", "$", "#")) and re.fullmatch(r"[a-z0-9.+-]+", w)}
    return found


def test_readme_apt_list_is_ci_apt_list() -> None:
    ci = _apt_packages((ROOT / ".ci" / "run").read_text())
    readme = _apt_packages(README)
    assert ci, "no apt-get install line found in .ci/run"
    assert readme == ci, f"README lacks {sorted(ci - readme)}, has extra {sorted(readme - ci)}"


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    out: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                cmd = f"{prefix} {name}"
                out.append(cmd)
                out.extend(_commands(sub, cmd))
    return out


def test_every_command_is_in_the_readme() -> None:
    from igrs.cli.main import build_parser

    missing = []
    for cmd in _commands(build_parser(relay=True, file=True), "igrs"):
        words = cmd.split()
        # "igrs file ls|stat|get ..." names several subcommands on one line
        pattern = r"\s+".join(re.escape(w) for w in words[:-1]) + \
            rf"\s+(?:[\w-]+\|)*{re.escape(words[-1])}(?:\|[\w-]+)*\b"
        if not re.search(pattern, README):
            missing.append(cmd)
    assert not missing, f"commands the README never shows: {missing}"


PY_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.mark.parametrize("n", range(len(PY_BLOCKS)))
def test_readme_python_example_ends_by_itself(n: int, tmp_path: Path) -> None:
    """Each example runs on loopback in a fresh interpreter and exits 0 on its own."""
    script = tmp_path / f"example{n}.py"
    script.write_text(PY_BLOCKS[n])
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path,
                          env={"IGRS_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip(), "the example printed nothing"


def test_spec_to_code_table_names_existing_paths() -> None:
    """specs/README.md's "How specs map to code" table names files that exist."""
    text = (ROOT / "specs" / "README.md").read_text()
    table = text[text.index("## How specs map to code"):]
    paths = re.findall(r"`(igrs/[\w/.]+)`", table)
    assert len(paths) > 20
    assert [p for p in paths if not (ROOT / p).exists()] == []
