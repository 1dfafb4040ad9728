"""DIDL-Lite: the metadata format of Browse/Search results (UPnP-AV compatible; specs/av-profile.md §4).

:class:`Entry` is one object as a control point sees it; :func:`to_didl` / :func:`from_didl`
convert a list of entries to and from a DIDL-Lite document. python-didl-lite and
async-upnp-client read what :func:`to_didl` writes (tested).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from igrs.errors import ProtocolError
from igrs.profiles.av.media import format_duration, parse_duration

NS_DIDL = "urn:schemas-upnp-org:metadata-1-0/DIDL-Lite/"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_UPNP = "urn:schemas-upnp-org:metadata-1-0/upnp/"
NS_DLNA = "urn:schemas-dlna-org:metadata-1-0/"
NSMAP = {None: NS_DIDL, "dc": NS_DC, "upnp": NS_UPNP, "dlna": NS_DLNA}
MAX_DIDL_BYTES = 1 << 20  # what from_didl parses at most
MAX_PROTOCOL_INFO = 1024  # characters of a kept res@protocolInfo (project choice)


@dataclass(frozen=True, slots=True)
class Entry:
    """One content-directory object: a container or an item with one resource."""

    id: str
    parent_id: str
    title: str
    cls: str
    url: str = ""  # the resource (items)
    mime: str = ""
    size: int | None = None
    duration: float | None = None
    resolution: str = ""
    bitrate: int | None = None
    thumbnail: str = ""
    date: str = ""  # ISO 8601 (file modification time)
    child_count: int | None = None  # containers
    # res@protocolInfo as given (a server's, kept through a relay so DLNA.ORG_PN survives);
    # "" means "http-get:*:<mime>:*"
    protocol: str = ""
    sample_rate: int | None = None  # res@sampleFrequency, Hz
    channels: int | None = None  # res@nrAudioChannels

    @property
    def is_container(self) -> bool:
        return self.cls.startswith("object.container")

    @property
    def protocol_info(self) -> str:
        return self.protocol or f"http-get:*:{self.mime or 'application/octet-stream'}:*"

    @property
    def dlna_features(self) -> str:
        """The 4th protocolInfo field ("*" when none): what ``contentFeatures.dlna.org`` says."""
        parts = self.protocol_info.split(":", 3)
        return parts[3] if len(parts) == 4 else "*"


def _sub(parent: etree._Element, ns: str, tag: str, text: str) -> etree._Element:
    el = etree.SubElement(parent, f"{{{ns}}}{tag}")
    el.text = text
    return el


def entry_element(entry: Entry) -> etree._Element:
    tag = "container" if entry.is_container else "item"
    el = etree.Element(f"{{{NS_DIDL}}}{tag}", nsmap=NSMAP)
    el.set("id", entry.id)
    el.set("parentID", entry.parent_id)
    el.set("restricted", "1")
    if entry.is_container:
        el.set("searchable", "1")
        if entry.child_count is not None:
            el.set("childCount", str(entry.child_count))
    _sub(el, NS_DC, "title", entry.title)
    _sub(el, NS_UPNP, "class", entry.cls)
    if entry.cls == "object.container.storageFolder":
        _sub(el, NS_UPNP, "storageUsed", "-1")  # required by the class; -1: unknown
    if entry.date:
        _sub(el, NS_DC, "date", entry.date)
    if entry.thumbnail:
        art = _sub(el, NS_UPNP, "albumArtURI", entry.thumbnail)
        art.set(f"{{{NS_DLNA}}}profileID", "JPEG_TN")
    if entry.url:
        res = _sub(el, NS_DIDL, "res", entry.url)
        res.set("protocolInfo", entry.protocol_info)
        if entry.size is not None:
            res.set("size", str(entry.size))
        if entry.duration is not None:
            res.set("duration", format_duration(entry.duration))
        if entry.resolution:
            res.set("resolution", entry.resolution)
        if entry.bitrate:
            res.set("bitrate", str(entry.bitrate // 8))  # UPnP: bytes per second
        if entry.sample_rate:
            res.set("sampleFrequency", str(entry.sample_rate))
        if entry.channels:
            res.set("nrAudioChannels", str(entry.channels))
    return el


def to_didl(entries: Iterable[Entry]) -> str:
    root = etree.Element(f"{{{NS_DIDL}}}DIDL-Lite", nsmap=NSMAP)
    for entry in entries:
        root.append(entry_element(entry))
    return etree.tostring(root, encoding="unicode")


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


_WRAP_OPEN = (
    f'<DIDL-Lite xmlns="{NS_DIDL}" xmlns:dc="{NS_DC}" xmlns:upnp="{NS_UPNP}" xmlns:dlna="{NS_DLNA}">'
)
_XML_DECL = re.compile(r"\A\s*<\?xml[^>]*\?>")
_BARE_OBJECT = re.compile(r"\s*<(?:[A-Za-z_][\w.-]*:)?(?:item|container)[\s/>]")


def _parse(text: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        return etree.fromstring(text.encode(), parser)
    except etree.XMLSyntaxError as exc:
        raise ProtocolError(f"not XML: {exc}") from None


def _kept_protocol(raw: str, fields: list[str]) -> str:
    """A 4-field protocolInfo worth keeping (not the plain ``http-get:*:<mime>:*``)."""
    if len(fields) < 4 or len(raw) > MAX_PROTOCOL_INFO or raw == f"http-get:*:{fields[2]}:*":
        return ""
    return raw


def from_didl(text: str) -> list[Entry]:
    """Entries of a DIDL-Lite document (ProtocolError if it is not one). A bare ``<item>`` or
    ``<container>`` (some control points send one as metadata, its prefixes possibly
    undeclared) is read as if wrapped in ``<DIDL-Lite>`` with the usual namespaces."""
    if len(text) > MAX_DIDL_BYTES:
        raise ProtocolError("DIDL-Lite document too large")
    bare = _XML_DECL.sub("", text)
    if _BARE_OBJECT.match(bare):
        root = _parse(_WRAP_OPEN + bare + "</DIDL-Lite>")
    else:
        root = _parse(text)
        if root.tag != f"{{{NS_DIDL}}}DIDL-Lite":
            raise ProtocolError("not a DIDL-Lite document")
    entries = []
    for el in root:
        if el.tag not in (f"{{{NS_DIDL}}}item", f"{{{NS_DIDL}}}container"):
            continue
        res = el.find(f"{{{NS_DIDL}}}res")
        raw = (res.get("protocolInfo") or "").strip() if res is not None else ""
        proto = raw.split(":")
        bitrate = _int(res.get("bitrate")) if res is not None else None
        entries.append(
            Entry(
                id=el.get("id", ""),
                parent_id=el.get("parentID", ""),
                title=el.findtext(f"{{{NS_DC}}}title") or "",
                cls=el.findtext(f"{{{NS_UPNP}}}class") or "",
                url=(res.text or "").strip() if res is not None else "",
                mime=proto[2] if len(proto) >= 3 else "",
                size=_int(res.get("size")) if res is not None else None,
                duration=parse_duration(res.get("duration", "")) if res is not None else None,
                resolution=res.get("resolution", "") if res is not None else "",
                bitrate=bitrate * 8 if bitrate else None,
                thumbnail=el.findtext(f"{{{NS_UPNP}}}albumArtURI") or "",
                date=el.findtext(f"{{{NS_DC}}}date") or "",
                child_count=_int(el.get("childCount")),
                protocol=_kept_protocol(raw, proto),
                sample_rate=_int(res.get("sampleFrequency")) if res is not None else None,
                channels=_int(res.get("nrAudioChannels")) if res is not None else None,
            )
        )
    return entries
