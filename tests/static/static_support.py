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


def run_tool(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m <tool> args`` with this interpreter, output captured as text."""
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
