"""The answer to ``GET``/``HEAD`` ``/IGRS/description.xml``, seen passively
(specs/conformance/passive.md §4)."""

from __future__ import annotations

from igrs.conformance.cases import schema_errors
from igrs.conformance.passive.violations import Problem
from igrs.constants import DESCRIPTION_PATH
from igrs.wire.httpu import Headers
from igrs.wire.xml import parse_xml


def check_description(status: int | None, headers: Headers, body: bytes, *,
                      with_body: bool = True) -> list[Problem]:
    """The answer to ``GET`` (or, without its body, ``HEAD``) ``/IGRS/description.xml``."""
    if status != 200:
        return [(f"GET {DESCRIPTION_PATH} answered {status}, not 200", "messages.md §7")]
    content_type = headers.get("Content-Type") or ""
    out: list[Problem] = []
    if not content_type.lower().startswith("text/xml"):
        out.append((f"description served as {content_type[:60]!r}, not text/xml", "messages.md §7"))
    if not with_body:
        return out
    try:
        doc = parse_xml(body)
    except Exception as exc:
        return [*out, (f"description does not parse: {exc}", "description.md")]
    errors = schema_errors(doc)
    if errors:
        out.append((f"description not valid against device-description.xsd: {errors}", "description.md"))
    return out
