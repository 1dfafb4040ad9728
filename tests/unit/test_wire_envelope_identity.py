"""Fast serialisation paths give the bytes of the general (tree) path."""

from __future__ import annotations

import copy
import os

import pytest
from lxml import etree

from igrs.constants import IGRS_NS, SOAP12_NS
from igrs.wire import soap
from igrs.wire.bodies.pipes import SecureMessage
from igrs.wire.bodies.sessions import InvokeServiceRequest, InvokeServiceResponse
from igrs.wire.messages import ErrorResponse, Status


@pytest.mark.parametrize("body", [
    InvokeServiceRequest(1, 2, 3, "Echo", (("text", "é<&>\t x"), ("n", 5), ("b", b"\x00")), 7).body(),
    InvokeServiceResponse(Status(3, 200, "ok"), 2, 1, (("l", [1, "a", {"k": 2.5}]),)).body(),
    ErrorResponse(Status(0, 400, "bad")).body(),
    etree.Element(f"{{{IGRS_NS}}}X", nsmap={"s": SOAP12_NS}),  # declares the SOAP namespace
    etree.Element("NoNamespace"),
])
def test_envelope_fast_path_matches_tree(body: etree._Element) -> None:
    assert soap.build_envelope(copy.deepcopy(body)) == soap._build_envelope_tree(copy.deepcopy(body))


@pytest.mark.parametrize("record", [os.urandom(n) for n in (1, 25, 4000)], ids=["1B", "25B", "4000B"])
@pytest.mark.parametrize("pipe_id", [1, 42, 0xFFFFFFFF])
def test_secure_message_wire_body_matches_tree(pipe_id: int, record: bytes) -> None:
    msg = SecureMessage(pipe_id, record, "InvokeServiceRequest")
    assert msg.wire_body() == etree.tostring(msg.body())
