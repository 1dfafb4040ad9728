"""Every module of igrs imports on its own in a fresh interpreter, and ``import igrs`` stays
light.

A module that works only after another one was imported (a missing import hidden by the
test run's import order) fails here: each module is imported alone, in its own interpreter,
like python-zeroconf's test of the same name. ``__main__`` modules are left out (they run).
"""

from __future__ import annotations

import json
import os
import pkgutil
import sys
from concurrent.futures import ThreadPoolExecutor

from static_support import run_python

import igrs

# Imported only on first use: extras (zeroconf: igrs[dnssd], nats: igrs[cluster], rich:
# igrs[cli]) and aiohttp, which only the profiles and the relay use.
OPTIONAL = ("zeroconf", "nats", "rich", "aiohttp", "async_upnp_client", "slixmpp")


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(igrs.__path__, "igrs.")
                  if m.name.rpartition(".")[2] != "__main__")


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    modules = ["igrs", *_modules()]
    assert len(modules) > 100, modules  # the walk found the package

    def imported(name: str) -> tuple[str, int, str]:
        cp = run_python("-c", f"import {name}", timeout=120)
        return name, cp.returncode, cp.stderr

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        failed = [(name, err) for name, rc, err in pool.map(imported, modules) if rc != 0]
    assert not failed, "modules that do not import alone:\n" + "\n".join(
        f"--- {name}\n{err.strip()[-1500:]}" for name, err in failed)


_NEW_MODULES = """
import json, sys
before = set(sys.modules)
{statement}
new = sorted(set(sys.modules) - before)
print(json.dumps(new))
"""


def _new_top_level(statement: str) -> set[str]:
    cp = run_python("-c", _NEW_MODULES.format(statement=statement))
    assert cp.returncode == 0, cp.stderr
    return {name.partition(".")[0] for name in json.loads(cp.stdout)}


def test_import_igrs_loads_the_standard_library_only() -> None:
    # Measured: `import igrs` adds igrs, typing and collections; the public names load their
    # modules on first use.
    new = _new_top_level("import igrs")
    third_party = {m for m in new if m not in sys.stdlib_module_names and not m.startswith("_")} - {"igrs"}
    assert not third_party, f"`import igrs` loads {sorted(third_party)}"
    assert "asyncio" not in new, "`import igrs` loads asyncio"


def test_device_and_control_point_leave_the_optional_dependencies_out() -> None:
    # Measured: they bring asyncio, asyncio-dgram, lxml, cryptography, spake2 and ifaddr, and
    # none of OPTIONAL.
    new = _new_top_level("from igrs import ControlPoint, Device, Service")
    assert not new & set(OPTIONAL), f"the device layer loads {sorted(new & set(OPTIONAL))}"
    assert "igrs" in new and "asyncio" in new, new  # the statement did import the device layer
