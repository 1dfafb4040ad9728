"""mypy over igrs/ with the settings in pyproject's [tool.mypy]: zero errors."""

from __future__ import annotations

from static_support import ROOT, run_python, tool_cache


def test_mypy_finds_no_error_in_igrs() -> None:
    config = str(ROOT / "pyproject.toml")
    cp = run_python("-m", "mypy", "--cache-dir", str(tool_cache("mypy")), "--config-file", config)
    assert cp.returncode == 0, f"mypy reports errors in igrs/:\n{cp.stdout}{cp.stderr}"
    assert "Success: no issues found" in cp.stdout, cp.stdout
