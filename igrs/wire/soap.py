"""SOAP envelopes: emit SOAP 1.2, accept SOAP 1.2, its 2002/12 draft and SOAP 1.1."""

from __future__ import annotations

from lxml import etree

from igrs.constants import SOAP12_NS, SOAP_NAMESPACES
from igrs.errors import ProtocolError
from igrs.wire.xml import Element, parse_xml, qname


def build_envelope(body_child: Element) -> bytes:
    env = etree.Element(qname(SOAP12_NS, "Envelope"), nsmap={"soap": SOAP12_NS})
    body = etree.SubElement(env, qname(SOAP12_NS, "Body"))
    body.append(body_child)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def parse_envelope(data: bytes) -> Element:
    """Return the single child element of the SOAP Body."""
    root = parse_xml(data)
    ns, _, local = str(root.tag).lstrip("{").partition("}")
    if local != "Envelope" or ns not in SOAP_NAMESPACES:
        raise ProtocolError("not a SOAP envelope")
    body = root.find(qname(ns, "Body"))
    if body is None:
        raise ProtocolError("SOAP envelope without Body")
    children = [c for c in body if isinstance(c.tag, str)]
    if len(children) != 1:
        raise ProtocolError(f"SOAP Body must hold one element, found {len(children)}")
    return children[0]
