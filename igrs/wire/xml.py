"""The one place that configures lxml: no DTDs, no entities, no network, bounded trees.

lxml loads with the first XML built or parsed (igrs.wire.lazy_import): the wire modules
take ``etree`` from here, so an idle device does not load it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NoReturn

from igrs.constants import MAX_HTTP_BODY, MAX_XML_DEPTH, MAX_XML_ELEMENTS
from igrs.errors import LimitExceeded, ProtocolError
from igrs.wire.lazy_import import lazy_import
from igrs.wire.memo import Memo

if TYPE_CHECKING:
    from lxml import etree

    Element = etree._Element
else:
    etree = lazy_import("lxml.etree")
    Element = "lxml.etree._Element"  # in annotations only, which stay strings at run time

_FORBIDDEN = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def _new_parser() -> etree.XMLParser:
    class _RefuseEverything(etree.Resolver):
        """No external resource is ever loaded, whatever a document declares."""

        def resolve(self, system_url: str | None, public_id: str | None, context: object) -> NoReturn:
            raise ProtocolError("external resources are not loaded")

    parser = etree.XMLParser(
        # The byte check for DOCTYPE below only holds if lxml reads those same bytes: a
        # fixed encoding stops an encoding declaration (UTF-16, UTF-7, ...) from hiding one.
        encoding="utf-8",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
    parser.resolvers.add(_RefuseEverything())
    return parser


_PARSER: etree.XMLParser | None = None  # made with the first document parsed


def parse_xml(
    data: bytes,
    *,
    max_bytes: int = MAX_HTTP_BODY,
    max_depth: int = MAX_XML_DEPTH,
    max_elements: int = MAX_XML_ELEMENTS,
) -> Element:
    """Parse untrusted XML; any problem becomes a ProtocolError with a reason."""
    if len(data) > max_bytes:
        raise LimitExceeded(f"XML of {len(data)} bytes exceeds {max_bytes}")
    # The plain substring scan first (far cheaper); only exact bytes may skip the pattern.
    if (type(data) is not bytes or b"<!" in data) and _FORBIDDEN.search(data):
        # Document type declarations are never needed by IGRS; refusing them outright
        # closes entity expansion (billion laughs) and external entities (XXE) for good.
        raise ProtocolError("XML document type declarations are not accepted")
    try:
        root = etree.fromstring(data, _PARSER or _first_parser())
    except etree.XMLSyntaxError as exc:
        raise ProtocolError(f"malformed XML: {exc.msg}") from None
    except (etree.LxmlError, ValueError) as exc:
        raise ProtocolError(f"unparseable XML: {exc}") from None
    if root is None:
        raise ProtocolError("empty XML document")
    _check_shape(root, max_depth, max_elements)
    return root


def _first_parser() -> etree.XMLParser:
    global _PARSER, _COUNT_ELEMENTS
    _PARSER = _new_parser()
    _COUNT_ELEMENTS = etree.XPath("count(descendant-or-self::*)")
    return _PARSER


_DEPTH_PROBES: Memo[int, etree.XPath] = Memo(16)
_COUNT_ELEMENTS: etree.XPath  # made with the parser


def _depth_probe(max_depth: int) -> etree.XPath:
    """XPath true when an element lies deeper than ``max_depth`` (the root is depth 1)."""
    probe = _DEPTH_PROBES.get(max_depth)
    if probe is None:
        probe = _DEPTH_PROBES.remember(max_depth, etree.XPath("boolean(" + "/".join(["*"] * max_depth) + ")")
                                       if max_depth > 0 else etree.XPath("true()"))
    return probe


def _check_shape(root: Element, max_depth: int, max_elements: int) -> None:
    # A tree of n elements is at most n deep: a message small enough needs only a count.
    small = min(max_depth, max_elements)
    for n, _ in enumerate(root.iter(), 1):
        if n > small:
            break
    else:
        return
    # Larger trees: both walks run inside libxml2 (one pass each, bounded by the parser's own
    # depth limit), much cheaper than an iterwalk in Python.
    if _depth_probe(max_depth)(root):
        raise LimitExceeded(f"XML nested deeper than {max_depth}")
    if _COUNT_ELEMENTS(root) > max_elements:
        raise LimitExceeded(f"XML has more than {max_elements} elements")


def to_bytes(root: Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def qname(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


def local_name(el: Element) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def child_text(parent: Element, ns: str, local: str, *, required: bool = True,
               max_len: int = 1024) -> str | None:
    """Text of the first child ``{ns}local`` (whitespace stripped), length-capped."""
    # iterchildren(tag) filters in C; find() goes through ElementPath for the same answer.
    el = next(parent.iterchildren(qname(ns, local)), None)
    if el is None:
        if required:
            raise ProtocolError(f"missing element {local}")
        return None
    text = (el.text or "").strip()
    if len(text) > max_len:
        raise LimitExceeded(f"element {local} longer than {max_len}")
    return text
