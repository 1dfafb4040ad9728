"""Typed SOAP bodies of the catalogue, one module per clause group.

``load_all()`` registers every typed body with ``igrs.wire.messages`` (via
``messages.register``); ``messages.decode`` calls it on first use. Importing the package
alone imports none of them, so a module that needs one body module (igrs.node.service
needs ``sessions`` and ``services``) does not load the others (issue 15, footprint). A module here defines
frozen dataclasses with ``message_type``, ``body()`` and ``from_body()`` following the
conventions of ``igrs.wire.messages`` (root element named after the message type in the
IGRS namespace; responses start with ``Status``).
"""

from __future__ import annotations

import importlib


def load_all() -> None:
    import pkgutil  # here: an idle device never lists the bodies

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
