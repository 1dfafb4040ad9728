"""Shared folders of the File profile and the ``--share-folder`` syntax (specs/file-profile.md §7).

Apart from the server (igrs.profiles.file.server) so that reading the command line, or a
device that is not yet asked for a transfer, needs neither aiohttp nor the server's code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from igrs.constants import FILE_MAX_UPLOAD
from igrs.profiles.file import paths

RO, RW, NONE = "ro", "rw", "none"


@dataclass
class SharedFolder:
    """A folder shared under ``name``. Access of a paired device: ``peers[device_id]`` if
    set ("ro", "rw" or "none"), else "rw" when ``writable``, else "ro" (the default policy:
    paired devices read, nobody writes unless the share says so)."""

    name: str
    path: str | os.PathLike[str]
    writable: bool = False
    peers: dict[str, str] = field(default_factory=dict)
    quota: int | None = None  # bytes the share may hold in total (files + partial uploads)
    max_upload: int = FILE_MAX_UPLOAD

    def __post_init__(self) -> None:
        paths.split("/" + self.name)  # PathRefused if the name is not one safe component
        if "/" in self.name or not self.name:
            raise ValueError(f"bad share name {self.name!r}")
        self.root = Path(os.path.realpath(self.path))
        if not self.root.is_dir():
            raise ValueError(f"{self.path} is not a directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise ValueError(f"{self.path} cannot be read by this process (permission denied)")
        if self.writable and not os.access(self.root, os.W_OK):
            read_only = os.statvfs(self.root).f_flag & os.ST_RDONLY
            why = "read-only file system" if read_only else "permission denied"
            raise ValueError(f"{self.path} is shared writable but this process cannot write there ({why})")
        for access in self.peers.values():
            if access not in (RO, RW, NONE):
                raise ValueError(f"access must be ro, rw or none, not {access!r}")

    def access(self, device_id: str, *, secure: bool = True) -> str:
        """A paired device's access; read-only for a caller outside a secure pipe (a File server
        shared openly: its device id is only claimed, so no per-device entry applies and
        nothing may be written; specs/file-profile.md)."""
        if not secure:
            return RO
        return self.peers.get(device_id, RW if self.writable else RO)


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``1048576``, ``512K``, ``20G``, ``1.5T`` (powers of 1024; a trailing ``B``/``iB`` is
    allowed). ValueError otherwise."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _SIZE_UNITS else ""
    number = t[: len(t) - len(unit)]
    try:
        value = float(number) if "." in number else int(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (bytes, or a number with K, M, G or T)") from None
    if value < 0:
        raise ValueError(f"not a size: {text!r}")
    return int(value * _SIZE_UNITS[unit])


def parse_share_spec(text: str) -> SharedFolder:
    """``[NAME=]PATH[:rw|:ro][:quota=SIZE]`` (the CLI's ``--share-folder``; specs/file-profile.md §7):
    read-only unless ``:rw``; ``quota=SIZE`` caps what the share may hold (``parse_size``)."""
    name, sep, rest = text.partition("=")
    if not sep or "/" in name:
        name, rest = "", text
    writable, quota = False, None
    while True:  # trailing options, in any order
        base, colon, option = rest.rpartition(":")
        if colon and option in (RO, RW):
            writable = option == RW
        elif colon and option.startswith("quota="):
            quota = parse_size(option.removeprefix("quota="))
        else:
            break
        rest = base
    name = name or Path(os.path.realpath(rest)).name or "files"
    return SharedFolder(name, rest, writable=writable, quota=quota)


__all__ = ["NONE", "RO", "RW", "SharedFolder", "parse_share_spec", "parse_size"]
