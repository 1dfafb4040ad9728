"""Safe mapping of virtual file-profile paths onto shared folders (specs/file-profile.md §3).

A virtual path is ``/<share>/<component>/...``: ``/`` separated, UTF-8, no empty, ``.`` or
``..`` component, no NUL / control characters / backslash, no reserved name. It is resolved
against the share's root with every symlink followed; the result must stay inside the
(real path of the) root, else the path is refused (``FILE_PATH_REFUSED``). Pure functions:
no I/O except ``os.path.realpath`` / ``lstat``.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from igrs.constants import FILE_MAX_COMPONENT, FILE_MAX_PATH, FILE_PATH_REFUSED, ReturnCode
from igrs.errors import IGRSError

PARTIAL_DIR = ".igrs-partial"  # uploads in progress, at each share's root (hidden, reserved)
RESERVED = frozenset({PARTIAL_DIR})


class PathRefused(IGRSError):
    """A hostile or malformed path, or one that resolves outside its share."""

    return_code = FILE_PATH_REFUSED


def split(path: str) -> list[str]:
    """The components of a virtual path; PathRefused if any is unsafe. ``/`` -> []."""
    if not isinstance(path, str) or len(path.encode("utf-8", "surrogatepass")) > FILE_MAX_PATH:
        raise PathRefused("path too long")
    if "\x00" in path or "\\" in path:
        raise PathRefused("path contains NUL or backslash")
    parts = [p for p in path.split("/") if p != ""]  # leading, trailing and doubled / are fine
    for part in parts:
        if part in (".", ".."):
            raise PathRefused("path contains . or ..")
        if any(unicodedata.category(c) == "Cc" for c in part):
            raise PathRefused("path contains control characters")
        try:
            encoded = part.encode("utf-8")
        except UnicodeEncodeError:
            raise PathRefused("path is not valid UTF-8") from None
        if len(encoded) > FILE_MAX_COMPONENT:
            raise PathRefused("path component too long")
        if part in RESERVED:
            raise PathRefused(f"{part} is reserved")
    return parts


def join(*parts: str) -> str:
    return "/" + "/".join(p for p in parts if p)


def within(root_real: str, candidate: str) -> bool:
    return candidate == root_real or candidate.startswith(root_real.rstrip(os.sep) + os.sep)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A virtual path resolved inside one share: ``real`` is the absolute filesystem path
    (symlinks resolved), ``rel`` the components below the share root (empty: the root)."""

    share: str
    rel: tuple[str, ...]
    real: Path

    @property
    def virtual(self) -> str:
        return join(self.share, *self.rel)

    @property
    def is_root(self) -> bool:
        return not self.rel


def resolve(root: str | os.PathLike[str], share: str, rel: list[str] | tuple[str, ...]) -> Resolved:
    """Resolve ``rel`` below ``root`` following symlinks (the final component may not exist);
    PathRefused if the result leaves the root (a symlink escape)."""
    root_real = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(root_real, *rel))
    if not within(root_real, candidate):
        raise PathRefused("path leaves the shared folder (symlink)")
    probe = candidate
    while within(root_real, probe) and probe != root_real:
        if os.path.islink(probe):  # still a link after resolution: a loop (ELOOP)
            raise PathRefused("symlink loop")
        probe = os.path.dirname(probe)
    inside = os.path.relpath(candidate, root_real)
    if inside != "." and PARTIAL_DIR in Path(inside).parts:
        raise PathRefused(f"{PARTIAL_DIR} is reserved")
    return Resolved(share, tuple(rel), Path(candidate))


def not_found(what: str) -> IGRSError:
    return IGRSError(f"no such {what}", return_code=ReturnCode.NOT_FOUND)
