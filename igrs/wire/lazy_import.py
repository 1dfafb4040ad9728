"""The one way igrs imports a module on its first use: ``etree = lazy_import("lxml.etree")``.

An idle device must not pay for what only a message needs (lxml alone is 4 MB of RSS;
issue 15, benchmarks/README.md "Footprint"). The stand-in returned is an empty module; the
first attribute looked up on it imports the real module and copies its namespace in, after
which the stand-in is a plain module: lookups cost what they cost on the real one (no proxy
on the hot path). Unlike ``importlib.util.LazyLoader`` nothing is created or put in
``sys.modules`` before that first use (an extension module is not even loaded), so
``"lxml.etree" in sys.modules`` says whether it was used. Only for modules whose public
names are not rebound after import (the copy would not see it). Write the real import under
``TYPE_CHECKING`` beside it, so type checkers and the import contracts still see it.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class _OnFirstUse(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)
        self.__class__ = types.ModuleType  # type: ignore[assignment]  # from now on an ordinary module
        return getattr(real, attr)


def lazy_import(name: str) -> types.ModuleType:
    """A stand-in for the module ``name`` that imports it on the first attribute lookup."""
    return _OnFirstUse(name)
