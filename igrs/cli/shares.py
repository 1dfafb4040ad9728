"""The ``--share-folder`` option, the same for ``igrs device run`` and ``igrs file serve``."""

from __future__ import annotations

import argparse

METAVAR = "[NAME=]PATH[:rw][:quota=SIZE]"
HELP = ("share a folder with paired devices (File profile; repeatable): read-only unless :rw; "
        "quota=SIZE caps what the share may hold (files and unfinished uploads; more is refused "
        "with 507), SIZE in bytes or with K, M, G or T (powers of 1024), e.g. "
        "inbox=/srv/inbox:rw:quota=20G")


def add_share_folder(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument("--share-folder", action="append", required=required, metavar=METAVAR, help=HELP)
