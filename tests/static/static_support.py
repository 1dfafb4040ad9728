"""What the static checks share: the checkout's root and a command runner for the tools."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: pyproject.toml and igrs/


def tool_cache(name: str) -> Path:
    """A cache folder for ``name`` inside the venv (fresh with every CI venv), or in /tmp when
    the interpreter's prefix is not writable."""
    base = Path(sys.prefix)
    if not os.access(base, os.W_OK):
        base = Path(tempfile.gettempdir()) / f"igrs-{os.getuid()}"
    return base / f"{name}-cache"


def run_python(*args: str, cwd: Path = ROOT, pythonpath: Path | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """This interpreter with ``args``, output captured as text; ``pythonpath`` first on the
    path (a copy of the package shadows the installed one), else PYTHONPATH unset."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def lint_imports(root: Path = ROOT) -> tuple[int, str]:
    """``lint-imports`` with ``root``'s pyproject on the ``igrs`` package under ``root``."""
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    cp = run_python("-c", code, "--no-cache", cwd=root, pythonpath=root)
    return cp.returncode, cp.stdout + cp.stderr
