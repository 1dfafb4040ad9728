"""Where the command line keeps identities (keys and pairings). By default under a root
(``$IGRS_STATE_DIR``, else ``~/.local/state/igrs``) with one folder per role: ``controller``
(the identity ``igrs pair``, ``call``, ``group join`` ... act as) and ``devices/<name>`` (a
device run by ``igrs device run --name`` or ``igrs group create --device-name``). A
``--state-dir`` given is that folder itself."""

from __future__ import annotations

import argparse


def slug(name: str) -> str:
    """A device name as a folder name."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "device"


def state_dir(args: argparse.Namespace, role: str) -> str:
    """--state-dir, else <$IGRS_STATE_DIR or ~/.local/state/igrs>/<role>."""
    from igrs.node.keystore import default_state_dir

    return args.state_dir or str(default_state_dir() / role)


def state_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", help="where identity keys and pairings live (default: "
                                       "$IGRS_STATE_DIR or ~/.local/state/igrs, one folder per role)")
