"""The AV content directory: shared folders as a tree of containers and items, with Browse
and Search (paging, sorting, a UPnP-style search-criteria subset). Pure logic plus a scanner;
no networking. specs/av-profile.md §3-§5.

    cd = ContentDirectory({"Videos": "/srv/videos"})
    await cd.scan()
    page = cd.browse("0", start=0, count=10, sort="+dc:title")
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from igrs.constants import ReturnCode
from igrs.errors import IGRSError
from igrs.profiles.av.media import (
    CLASS_BROADCAST,
    CLASS_CONTAINER,
    MediaInfo,
    is_media,
    media_class,
    mime_type,
    probe_file,
)

ROOT_ID = "0"
LIVE_ID = "live"
MAX_DEPTH = 32  # folder nesting scanned (project choice)
MAX_ITEMS = 200_000  # objects one directory holds (project choice)
MAX_CRITERIA = 1024  # characters of SearchCriteria / SortCriteria (project choice)
PROBE_CONCURRENCY = 4  # ffprobe processes at once while scanning


class ContentError(IGRSError):
    """Bad Browse/Search input (400) or an unknown object (404)."""

    return_code = ReturnCode.BAD_MESSAGE


def not_found(object_id: str) -> ContentError:
    return ContentError(f"no such object {object_id[:80]!r}", return_code=ReturnCode.NOT_FOUND)


@dataclass(slots=True)
class MediaObject:
    id: str
    parent_id: str
    title: str
    cls: str
    path: Path | None = None  # the file (items from folders)
    root: Path | None = None  # the shared folder it lies in
    info: MediaInfo | None = None
    mtime: float = 0.0
    live: str = ""  # live source name (broadcast items)
    children: list[str] = field(default_factory=list)

    @property
    def is_container(self) -> bool:
        return self.cls.startswith("object.container")


@dataclass(frozen=True, slots=True)
class Page:
    objects: list[MediaObject]
    total: int


def object_id(root_index: int, rel: str) -> str:
    """Stable id of a file or folder: never contains its path (so no traversal by id)."""
    return hashlib.sha1(f"{root_index}\0{rel}".encode()).hexdigest()[:16]


# --- sort and search properties -------------------------------------------------------------------
def _prop(obj: MediaObject, name: str) -> Any:
    info = obj.info
    match name:
        case "dc:title":
            return obj.title.casefold()
        case "upnp:class":
            return obj.cls
        case "dc:date":
            return obj.mtime
        case "@id":
            return obj.id
        case "@parentID":
            return obj.parent_id
        case "res@size":
            return info.size if info else None
        case "res@duration":
            return info.duration if info else None
        case "res@resolution":
            return info.width * info.height if info and info.width and info.height else None
        case "res@protocolInfo" | "res@mime":
            return info.mime if info else None
    raise ContentError(f"unknown property {name[:40]!r}")


SORT_PROPERTIES = ("dc:title", "upnp:class", "dc:date", "res@size", "res@duration", "res@resolution", "@id")
SEARCH_PROPERTIES = (*SORT_PROPERTIES, "@parentID", "res@protocolInfo")


def _by_prop(name: str, obj: MediaObject) -> Any:
    return _prop(obj, name)


def _any_of(predicates: tuple[Predicate, ...], obj: MediaObject) -> bool:
    return any(p(obj) for p in predicates)


def _all_of(predicates: tuple[Predicate, ...], obj: MediaObject) -> bool:
    return all(p(obj) for p in predicates)


def parse_sort(criteria: str) -> list[tuple[str, bool]]:
    """``"+dc:title,-res@size"`` -> [("dc:title", False), ("res@size", True)] (True: descending)."""
    if len(criteria) > MAX_CRITERIA:
        raise ContentError("SortCriteria too long")
    keys = []
    for part in (p.strip() for p in criteria.split(",")):
        if not part:
            continue
        desc = part.startswith("-")
        name = part[1:] if part[:1] in "+-" else part
        if name not in SORT_PROPERTIES:
            raise ContentError(f"cannot sort by {name[:40]!r} (sortable: {', '.join(SORT_PROPERTIES)})")
        keys.append((name, desc))
    return keys


def sort_objects(objects: list[MediaObject], criteria: str) -> list[MediaObject]:
    keys = parse_sort(criteria)
    # default order: containers first, then title, then id (deterministic)
    out = sorted(objects, key=lambda o: (not o.is_container, o.title.casefold(), o.id))
    for name, desc in reversed(keys):
        present = [o for o in out if _prop(o, name) is not None]
        missing = [o for o in out if _prop(o, name) is None]
        present.sort(key=functools.partial(_by_prop, name), reverse=desc)
        out = present + missing  # unknown values last either way
    return out


_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>!=|<=|>=|[=<>()])|(?P<word>[^\s()"=<>!]+))')
_OPS = {"=", "!=", "<", "<=", ">", ">=", "contains", "doesnotcontain", "derivedfrom", "exists"}
Predicate = Callable[[MediaObject], bool]


def parse_search(criteria: str) -> Predicate:
    """A UPnP ContentDirectory SearchCriteria subset: ``*``; ``prop op "value"`` with =, !=,
    <, <=, >, >=, contains, doesNotContain, derivedfrom; ``prop exists true|false``; and/or;
    parentheses. String comparison is case-insensitive. ContentError (400) on bad syntax."""
    if len(criteria) > MAX_CRITERIA:
        raise ContentError("SearchCriteria too long")
    text = criteria.strip()
    if text in ("", "*"):
        return lambda o: True
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ContentError(f"bad SearchCriteria near {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    idx = 0

    def peek() -> tuple[str, str] | None:
        return tokens[idx] if idx < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal idx
        if idx >= len(tokens):
            raise ContentError("SearchCriteria ends too early")
        idx += 1
        return tokens[idx - 1]

    def expr() -> Predicate:
        parts = [conj()]
        while (t := peek()) and t[0] == "word" and t[1].lower() == "or":
            take()
            parts.append(conj())
        return parts[0] if len(parts) == 1 else functools.partial(_any_of, tuple(parts))

    def conj() -> Predicate:
        parts = [term()]
        while (t := peek()) and t[0] == "word" and t[1].lower() == "and":
            take()
            parts.append(term())
        return parts[0] if len(parts) == 1 else functools.partial(_all_of, tuple(parts))

    def term() -> Predicate:
        kind, value = take()
        if (kind, value) == ("op", "("):
            inner = expr()
            if take() != ("op", ")"):
                raise ContentError("SearchCriteria: ')' expected")
            return inner
        if kind != "word" or value not in SEARCH_PROPERTIES:
            raise ContentError(f"SearchCriteria: unknown property {value[:40]!r}")
        prop = value
        _, op = take()
        op = op.lower()
        if op not in _OPS:
            raise ContentError(f"SearchCriteria: unknown operator {op[:20]!r}")
        kind, raw = take()
        if op == "exists":
            if raw.lower() not in ("true", "false"):
                raise ContentError("SearchCriteria: exists takes true or false")
            want = raw.lower() == "true"
            return lambda o: (_prop(o, prop) is not None) == want
        if kind != "str":
            raise ContentError("SearchCriteria: a quoted value is expected")
        operand = re.sub(r"\\(.)", r"\1", raw[1:-1])
        return _compare(prop, op, operand)

    pred = expr()
    if idx != len(tokens):
        raise ContentError(f"SearchCriteria: unexpected {tokens[idx][1][:20]!r}")
    return pred


def _compare(prop: str, op: str, operand: str) -> Predicate:
    numeric = prop in ("res@size", "res@duration", "res@resolution", "dc:date")
    want: Any = operand.casefold()
    if numeric and op not in ("contains", "doesnotcontain", "derivedfrom"):
        try:
            want = float(operand)
        except ValueError:
            raise ContentError(f"SearchCriteria: {prop} needs a number") from None

    def pred(o: MediaObject) -> bool:
        value = _prop(o, prop)
        if value is None:
            return op == "!="
        have = value if numeric and not isinstance(want, str) else str(value).casefold()
        match op:
            case "=":
                return bool(have == want)
            case "!=":
                return bool(have != want)
            case "<":
                return bool(have < want)
            case "<=":
                return bool(have <= want)
            case ">":
                return bool(have > want)
            case ">=":
                return bool(have >= want)
            case "contains":
                return str(want) in str(have)
            case "doesnotcontain":
                return str(want) not in str(have)
            case "derivedfrom":
                return str(have) == want or str(have).startswith(str(want) + ".")
        return False

    return pred


# --- the directory -------------------------------------------------------------------------------
class ContentDirectory:
    """Shared folders as a content tree. ``folders``: paths (titled by their names) or a
    mapping title -> path. Hidden files (leading dot) and symlinks leaving their shared
    folder are not shared. ``update_id`` grows by one on every change of the tree."""

    def __init__(
        self,
        folders: Sequence[str | os.PathLike[str]] | Mapping[str, str | os.PathLike[str]] = (),
        *,
        use_ffprobe: bool = True,
        media_only: bool = True,
        max_items: int = MAX_ITEMS,
    ) -> None:
        pairs = (
            list(folders.items())
            if isinstance(folders, Mapping)
            else [(Path(p).name or str(p), p) for p in folders]
        )
        self.folders = [(title, Path(p).resolve()) for title, p in pairs]
        self.use_ffprobe = use_ffprobe
        self.media_only = media_only
        self.max_items = max_items
        self.update_id = 0
        self.objects: dict[str, MediaObject] = {}
        self._live: dict[str, MediaObject] = {}
        self._lock = asyncio.Lock()
        self._rebuild([], {})

    # -- building ---
    def _rebuild(self, files: list[tuple[int, str, Path, os.stat_result]], infos: dict[str, MediaInfo]) -> None:
        objs: dict[str, MediaObject] = {ROOT_ID: MediaObject(ROOT_ID, "-1", "Root", CLASS_CONTAINER)}
        for i, (title, path) in enumerate(self.folders):
            fid = object_id(i, "")
            objs[fid] = MediaObject(fid, ROOT_ID, title, CLASS_CONTAINER, path=path, root=path)
            objs[ROOT_ID].children.append(fid)
        for i, rel, path, st in files:
            parts = rel.split("/")
            parent = object_id(i, "")
            for depth in range(1, len(parts)):  # intermediate folders
                sub = "/".join(parts[:depth])
                oid = object_id(i, sub)
                if oid not in objs:
                    objs[oid] = MediaObject(
                        oid,
                        parent,
                        parts[depth - 1],
                        CLASS_CONTAINER,
                        path=self.folders[i][1] / sub,
                        root=self.folders[i][1],
                    )
                    objs[parent].children.append(oid)
                parent = oid
            oid = object_id(i, rel)
            info = infos[oid]
            objs[oid] = MediaObject(
                oid,
                parent,
                Path(parts[-1]).stem,
                media_class(info.mime),
                path=path,
                root=self.folders[i][1],
                info=info,
                mtime=st.st_mtime,
            )
            objs[parent].children.append(oid)
        if self._live:
            objs[LIVE_ID] = MediaObject(LIVE_ID, ROOT_ID, "Live", CLASS_CONTAINER)
            objs[ROOT_ID].children.append(LIVE_ID)
            for obj in self._live.values():
                objs[obj.id] = obj
                objs[LIVE_ID].children.append(obj.id)
        self.objects = objs

    def _walk(self) -> list[tuple[int, str, Path, os.stat_result]]:
        found: list[tuple[int, str, Path, os.stat_result]] = []
        for i, (_, root) in enumerate(self.folders):
            stack: list[tuple[Path, int]] = [(root, 0)]
            while stack:
                folder, depth = stack.pop()
                try:
                    entries = list(os.scandir(folder))
                except OSError:
                    continue
                for de in entries:
                    if de.name.startswith(".") or len(found) >= self.max_items:
                        continue
                    path = Path(de.path)
                    try:
                        if de.is_symlink() and not inside(path.resolve(), root):
                            continue  # a symlink escaping the shared folder is not shared
                        if de.is_dir():
                            if depth + 1 < MAX_DEPTH:
                                stack.append((path, depth + 1))
                            continue
                        if not de.is_file():
                            continue
                        st = de.stat()
                    except OSError:
                        continue
                    if self.media_only and not is_media(mime_type(path)):
                        continue
                    found.append((i, path.relative_to(root).as_posix(), path, st))
        return found

    async def scan(self) -> bool:
        """Walk the shared folders again; True (and ``update_id`` + 1) if anything changed."""
        async with self._lock:
            files = await asyncio.to_thread(self._walk)
            old = {o.id: o for o in self.objects.values() if o.info is not None and o.path is not None}
            infos: dict[str, MediaInfo] = {}
            todo = []
            for i, rel, path, st in files:
                oid = object_id(i, rel)
                prev = old.get(oid)
                if (
                    prev is not None
                    and prev.info
                    and prev.info.size == st.st_size
                    and prev.mtime == st.st_mtime
                ):
                    infos[oid] = prev.info
                else:
                    todo.append((oid, path, st.st_size))
            sem = asyncio.Semaphore(PROBE_CONCURRENCY)

            async def probe(oid: str, path: Path, size: int) -> None:
                async with sem:
                    infos[oid] = await probe_file(path, use_ffprobe=self.use_ffprobe, size=size)

            await asyncio.gather(*(probe(*t) for t in todo))
            before = self._signature()
            self._rebuild(files, infos)
            changed = self._signature() != before
            if changed:
                self.update_id += 1
            return changed

    def _signature(self) -> frozenset[tuple[str, float, int]]:
        return frozenset((o.id, o.mtime, o.info.size if o.info else -1) for o in self.objects.values())

    def add_live(self, name: str, title: str | None = None, mime: str = "video/mp2t") -> MediaObject:
        """A live broadcast item (served at ``/av/live/<name>``) under the ``live`` container."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ValueError(f"bad live stream name {name!r}")
        obj = MediaObject(
            f"live-{name}",
            LIVE_ID,
            title or name,
            CLASS_BROADCAST,
            info=MediaInfo(mime, 0),
            mtime=time.time(),
            live=name,
        )
        self._live[name] = obj
        self._rebuild_keep()
        return obj

    def remove_live(self, name: str) -> None:
        if self._live.pop(name, None) is not None:
            self._rebuild_keep()

    def _rebuild_keep(self) -> None:
        files = [
            (i, o.path.relative_to(self.folders[i][1]).as_posix(), o.path, o)
            for o in self.objects.values()
            if o.info is not None and o.path is not None
            for i, (_, r) in enumerate(self.folders)
            if o.root == r
        ]
        infos = {o.id: o.info for *_, o in files if o.info is not None}
        stats = [(i, rel, p, _Stat(o.mtime)) for i, rel, p, o in files]
        self._rebuild(stats, infos)  # type: ignore[arg-type]
        self.update_id += 1

    # -- queries ---
    def get(self, oid: str) -> MediaObject:
        obj = self.objects.get(oid)
        if obj is None:
            raise not_found(oid)
        return obj

    def browse(
        self, oid: str, *, metadata: bool = False, start: int = 0, count: int = 0, sort: str = ""
    ) -> Page:
        """Children of container ``oid`` (or the object itself with ``metadata``), sorted, paged;
        ``count`` 0 means all."""
        _check_page(start, count)
        obj = self.get(oid)
        if metadata:
            return Page([obj], 1)
        if not obj.is_container:
            raise ContentError(f"{oid[:80]!r} is not a container")
        children = sort_objects([self.objects[c] for c in obj.children], sort)
        return Page(_slice(children, start, count), len(children))

    def search(self, container: str, criteria: str, *, start: int = 0, count: int = 0, sort: str = "") -> Page:
        """Objects below ``container`` (at any depth) matching ``criteria``."""
        _check_page(start, count)
        pred = parse_search(criteria)
        obj = self.get(container)
        if not obj.is_container:
            raise ContentError(f"{container[:80]!r} is not a container")
        found = [o for o in self._descendants(obj) if pred(o)]
        found = sort_objects(found, sort)
        return Page(_slice(found, start, count), len(found))

    def _descendants(self, obj: MediaObject) -> Iterable[MediaObject]:
        stack = list(reversed(obj.children))
        while stack:
            child = self.objects[stack.pop()]
            yield child
            stack.extend(reversed(child.children))


@dataclass(frozen=True, slots=True)
class _Stat:
    st_mtime: float


def inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _check_page(start: int, count: int) -> None:
    if start < 0 or count < 0:
        raise ContentError("StartingIndex and RequestedCount must be >= 0")


def _slice(objs: list[MediaObject], start: int, count: int) -> list[MediaObject]:
    return objs[start : start + count] if count else objs[start:]
