"""SOAP envelopes: emit SOAP 1.2, accept SOAP 1.2, its 2002/12 draft and SOAP 1.1."""

from __future__ import annotations

from typing import overload

from igrs.constants import SOAP12_NS, SOAP_NAMESPACES
from igrs.errors import ProtocolError
from igrs.wire.xml import Element, etree, parse_xml, qname


def _build_envelope_tree(body_child: Element) -> bytes:
    env = etree.Element(qname(SOAP12_NS, "Envelope"), nsmap={"soap": SOAP12_NS})
    body = etree.SubElement(env, qname(SOAP12_NS, "Body"))
    body.append(body_child)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


# The constant halves of the envelope as lxml serialises it around a body child
# (tests/unit/test_wire_envelope_identity.py compares with the tree path): written
# out, so that importing this module does not load lxml.
_ENV_PREFIX = (b"<?xml version='1.0' encoding='utf-8'?>\n"
               b'<soap:Envelope xmlns:soap="' + SOAP12_NS.encode() + b'"><soap:Body>')
_ENV_SUFFIX = b"</soap:Body></soap:Envelope>"


def envelope_frame() -> tuple[bytes, bytes]:
    """The bytes of the envelope before and after its body element, as built here."""
    return _ENV_PREFIX, _ENV_SUFFIX


def build_envelope(body_child: Element) -> bytes:
    # The envelope around the body is constant: serialise the body alone between its
    # pre-serialised halves. Same bytes as the tree: a parentless body child declares all the
    # namespaces it uses; one that (re)declares the SOAP namespace, or has a parent, takes the
    # general path so namespace reconciliation stays lxml's.
    if body_child.getparent() is None and SOAP12_NS not in body_child.nsmap.values() \
            and not body_child.tail:
        return build_envelope_around(etree.tostring(body_child, encoding="utf-8", xml_declaration=False))
    return _build_envelope_tree(body_child)


def build_envelope_around(body_xml: bytes) -> bytes:
    """The envelope around an already serialised, self-contained body element."""
    return b"".join((_ENV_PREFIX, body_xml, _ENV_SUFFIX))


@overload
def parse_envelope(data: bytes) -> Element: ...
@overload
def parse_envelope(data: bytes, *, allow_empty: bool) -> Element | None: ...


def parse_envelope(data: bytes, *, allow_empty: bool = False) -> Element | None:
    """Return the single child element of the SOAP Body (None for an empty Body when
    ``allow_empty``: a message without fields, messages.md §5)."""
    root = parse_xml(data)
    ns, _, local = str(root.tag).lstrip("{").partition("}")
    if local != "Envelope" or ns not in SOAP_NAMESPACES:
        raise ProtocolError("not a SOAP envelope")
    body = next(root.iterchildren(qname(ns, "Body")), None)  # = find(), without ElementPath
    if body is None:
        raise ProtocolError("SOAP envelope without Body")
    children = [c for c in body if isinstance(c.tag, str)]
    if not children and allow_empty and not (body.text or "").strip():
        return None
    if len(children) != 1:
        raise ProtocolError(f"SOAP Body must hold one element, found {len(children)}")
    return children[0]
