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


# One small interpreter per worker imports nothing itself and forks a child per module: each
# child starts from the interpreter's start-up state, as `python -c "import MODULE"` would,
# without paying for a whole interpreter start each time (about a fifth less CPU).
_FORK_EACH = """
import os, sys
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            __import__(name)
        except BaseException:
            import traceback
            sys.stderr.write(f"--- {name}\\n{traceback.format_exc()[-1500:]}\\n")
            sys.stderr.flush()
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(name)
print(" ".join(failed))
"""


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    modules = ["igrs", *_modules()]
    assert len(modules) > 100, modules  # the walk found the package
    workers = max(2, os.cpu_count() or 2)

    def imported(share: list[str]) -> tuple[list[str], str]:
        cp = run_python("-c", _FORK_EACH, *share, timeout=300)
        assert cp.returncode == 0, cp.stderr
        return cp.stdout.split(), cp.stderr

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(imported, [modules[i::workers] for i in range(workers)]))
    failed = sorted(name for names, _ in results for name in names)
    assert not failed, f"modules that do not import alone: {failed}\n" + "".join(err for _, err in results)


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
