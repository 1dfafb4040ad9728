"""Every value and limit of the UPnP bridge, the fetch policy and the DLNA module is written in
specs/ (by name), as test_schemas.py checks it for igrs.constants."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

SPECS = Path(__file__).resolve().parents[2] / "specs"
MODULES = ["igrs.profiles.av.fetch_policy", "igrs.profiles.av.fetch_proxy", "igrs.profiles.av.dlna",
           "igrs.bridges.upnp.constants"]


@pytest.mark.parametrize("module", MODULES)
def test_constants_are_in_specs(module: str) -> None:
    if module.startswith("igrs.bridges.upnp"):
        pytest.importorskip("async_upnp_client")
    mod = importlib.import_module(module)
    text = "\n".join(p.read_text() for p in sorted(SPECS.rglob("*.md")))
    names = [n for n, v in vars(mod).items() if n.isupper() and not n.startswith("_")
             and isinstance(v, int | float | str | tuple) and not isinstance(v, bool)]
    assert names
    missing = [n for n in names if not re.search(rf"\b{n}\b", text)]
    assert not missing, f"{module}: not described in specs/: {missing}"
