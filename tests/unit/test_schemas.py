"""What the stack emits is valid against specs/schemas/, and specs/ stays in sync with the code.

* every typed message body and the device description, built with the real encoders, validate
  against the XSDs (with xmlschema and with lxml, the validator available at run time);
* deliberately broken documents fail, so these tests can fail;
* the XSD caps equal the code's caps;
* every catalogue message appears in specs/messages.md with its clause, kind, delivery,
  framing, SOAP action, action provenance and response;
* every upper-case constant of igrs/constants.py and every ReturnCode is in specs/.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import xmlschema
from lxml import etree

from igrs import constants
from igrs.constants import DEVICE_TEMPLATE_NS, IGRS_NS, SOAP12_NS, ReturnCode
from igrs.wire import description as ddesc
from igrs.wire import messages
from igrs.wire.catalogue import CATALOGUE
from igrs.wire.httpu import Headers
from igrs.wire.ids import DeviceId, DeviceType
from igrs.wire.isdp import SearchTarget

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
SCHEMAS = SPECS / "schemas"
DESCRIPTION_XSD = SCHEMAS / "device-description.xsd"
MESSAGES_XSD = SCHEMAS / "igrs-messages.xsd"

DEV = DeviceId(uuid.UUID("6f1c2a9e-3b7d-4e25-9a41-0c8d5e7f1b22"))
CP = DeviceId(uuid.UUID("0b9e4d33-71a2-4c6f-8e15-2f4a6c8d9e10"))
TV = DeviceType("TV", 1)

Validator = Callable[[etree._Element], bool]


# --- validators: xmlschema (tests) and lxml (run time) ---------------------------------------
@pytest.fixture(scope="module")
def xs_description() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(DESCRIPTION_XSD))


@pytest.fixture(scope="module")
def xs_messages() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(MESSAGES_XSD))


def _lxml_schema(path: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(path)))


@pytest.fixture(scope="module", params=["xmlschema", "lxml"])
def validators(request: pytest.FixtureRequest) -> tuple[Validator, Validator]:
    """(description validator, message-body validator) for one XSD implementation."""
    if request.param == "xmlschema":
        d = xmlschema.XMLSchema(str(DESCRIPTION_XSD))
        m = xmlschema.XMLSchema(str(MESSAGES_XSD))
        return d.is_valid, m.is_valid
    ld, lm = _lxml_schema(DESCRIPTION_XSD), _lxml_schema(MESSAGES_XSD)
    return ld.validate, lm.validate


# --- sample documents built with the real code -----------------------------------------------
def minimal_description() -> ddesc.DeviceDescription:
    return ddesc.DeviceDescription(DEV, TV, "TV")


def full_description() -> ddesc.DeviceDescription:
    return ddesc.DeviceDescription(
        device_id=DEV,
        device_type=DeviceType("MediaServer", 2),
        name="Wohnzimmer-Fernseher 客厅电视 & <friends>",
        manufacturer="ACME",
        model_name="X-1",
        icon_url="http://192.168.1.20:3880/icon.png",
        manufacturer_url="http://acme.example/",
        model_description="A television that shares its screen.",
        model_number="X-1-2024",
        model_url="http://acme.example/x1",
        serial_number="SN-0001",
        groups=(
            ddesc.GroupRef(f"urn:IGRS:DeviceGroup:{uuid.UUID(int=1)}", "Living room"),
            ddesc.GroupRef(f"urn:IGRS:DeviceGroup:{uuid.UUID(int=2)}", ""),
        ),
        security_ids=tuple(f"urn:IGRS:DeviceSecurity:{i}" for i in range(ddesc.MAX_DEVICE_SECURITY_IDS)),
        services=(
            ddesc.ServiceRef(
                "urn:IGRS:ServiceType:MediaServer:1",
                1,
                "Media server",
                tuple(f"urn:IGRS:ServiceSecurity:{i}" for i in range(ddesc.MAX_SERVICE_SECURITY_IDS)),
            ),
            ddesc.ServiceRef("urn:IGRS:ServiceType:FileServer:1", 0xFFFF_FFFF, "Files"),
        ),
    )


DESCRIPTIONS = {"minimal": minimal_description, "full": full_description}


def typed_messages() -> dict[str, messages.SoapMessage]:
    st = messages.Status
    return {
        "GetDeviceDescriptionRequest": messages.GetDeviceDescriptionRequest(),
        "GetDeviceDescriptionResponse/ok": messages.GetDeviceDescriptionResponse(st(7), full_description()),
        "GetDeviceDescriptionResponse/minimal": messages.GetDeviceDescriptionResponse(
            st(7), minimal_description()
        ),
        "GetDeviceDescriptionResponse/error": messages.GetDeviceDescriptionResponse(
            st(7, ReturnCode.INTERNAL_ERROR, "description unavailable")
        ),
        "SearchDeviceRequestOnDevice/all": messages.SearchDeviceRequestOnDevice(SearchTarget.all()),
        "SearchDeviceRequestOnDevice/device": messages.SearchDeviceRequestOnDevice(
            SearchTarget.parse(str(DEV))
        ),
        "SearchDeviceRequestOnDevice/type": messages.SearchDeviceRequestOnDevice(
            SearchTarget.parse("urn:IGRS:DeviceType:TV:1")
        ),
        "SearchDeviceRequestOnDevice/service": messages.SearchDeviceRequestOnDevice(
            SearchTarget.parse("urn:IGRS:ServiceType:MediaServer:1")
        ),
        "SearchDeviceResponseOnDevice/match": messages.SearchDeviceResponseOnDevice(
            st(8), True, TV, "Living-room TV"
        ),
        "SearchDeviceResponseOnDevice/nomatch": messages.SearchDeviceResponseOnDevice(st(8), False),
        "ErrorResponse": messages.ErrorResponse(
            st(9, ReturnCode.NOT_IMPLEMENTED, "InvokeServiceRequest is not served")
        ),
    }


def body_of(message: messages.SoapMessage, sequence_id: int = 5) -> etree._Element:
    """Encode with the real code, check the SOAP 1.2 envelope, return the Body's child."""
    headers, payload = messages.encode(message, source=DEV, target=CP, sequence_id=sequence_id)
    env = etree.fromstring(payload)
    assert env.tag == f"{{{SOAP12_NS}}}Envelope"
    children = [c for c in env if isinstance(c.tag, str)]
    assert [c.tag for c in children] == [f"{{{SOAP12_NS}}}Body"]
    body_children = [c for c in children[0] if isinstance(c.tag, str)]
    assert len(body_children) == 1
    child = body_children[0]
    assert child.tag == f"{{{IGRS_NS}}}{message.message_type}"
    action = dict((k.lower(), v) for k, v in headers)["02-soapaction"]
    assert action == f'"{messages.soap_action(message.message_type)}"'
    return child


# --- valid documents -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DESCRIPTIONS))
def test_description_is_valid(name: str, validators: tuple[Validator, Validator]) -> None:
    validate_description, _ = validators
    doc = etree.fromstring(ddesc.to_bytes(DESCRIPTIONS[name]()))
    assert doc.tag == f"{{{DEVICE_TEMPLATE_NS}}}root"
    assert validate_description(doc)


@pytest.mark.parametrize("name", sorted(typed_messages()))
def test_message_body_is_valid(name: str, validators: tuple[Validator, Validator]) -> None:
    _, validate_body = validators
    assert validate_body(body_of(typed_messages()[name]))


@pytest.mark.parametrize("name", sorted(typed_messages()))
def test_valid_body_round_trips(name: str) -> None:
    """What validates is also what the decoder accepts, unchanged."""
    message = typed_messages()[name]
    headers, payload = messages.encode(message, source=DEV, target=CP, sequence_id=5)
    frame = messages.decode(Headers(headers), payload)
    assert frame.message == message
    assert frame.routing.source == DEV
    assert frame.routing.target == CP
    assert frame.routing.sequence_id == 5


def test_error_response_with_unknown_request_id_is_valid(xs_messages: xmlschema.XMLSchema) -> None:
    """specs/messages.md: AcknowledgeId 0 when the request's SequenceId was unreadable."""
    body = body_of(messages.ErrorResponse(messages.Status(0, ReturnCode.BAD_MESSAGE, "bad")))
    assert xs_messages.is_valid(body)


def test_every_body_element_is_declared(xs_messages: xmlschema.XMLSchema) -> None:
    """Every registered typed body is declared in one of the igrs-*.xsd schemas."""
    assert set(xs_messages.elements) <= set(messages.BODY_TYPES)
    declared: set[str] = set()
    for xsd in sorted(SCHEMAS.glob("igrs-*.xsd")):
        declared |= set(xmlschema.XMLSchema(str(xsd)).elements)
    from igrs.wire.bodies import load_all  # what the first decode does

    load_all()
    missing = set(messages.BODY_TYPES) - declared
    assert not missing, f"bodies without a schema: {sorted(missing)}"


# --- invalid documents must fail -------------------------------------------------------------
def _desc_tree() -> etree._Element:
    return etree.fromstring(ddesc.to_bytes(full_description()))


def _find(root: etree._Element, path: str) -> etree._Element:
    el = root.find(path, namespaces={"d": DEVICE_TEMPLATE_NS, "i": IGRS_NS})
    assert el is not None, path
    return el


def _drop(path: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        el = _find(root, path)
        parent = el.getparent()
        assert parent is not None
        parent.remove(el)

    return mutate


def _set(path: str, text: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        _find(root, path).text = text

    return mutate


def _duplicate(path: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        el = _find(root, path)
        el.addnext(copy.deepcopy(el))

    return mutate


BAD_DESCRIPTIONS: dict[str, Callable[[etree._Element], None]] = {
    "no protocolVersion": _drop("d:protocolVersion"),
    "no UDN": _drop("d:device/d:UDN"),
    "no deviceSecurityIdList": _drop("d:device/d:deviceSecurityIdList"),
    "UDN not a device id": _set("d:device/d:UDN", "uuid:6f1c2a9e-3b7d-4e25-9a41-0c8d5e7f1b22"),
    "deviceType not a URN": _set("d:device/d:deviceType", "television"),
    "serviceId zero": _set("d:device/d:serviceList/d:service/d:serviceId", "0"),
    "serviceId not a number": _set("d:device/d:serviceList/d:service/d:serviceId", "one"),
    "deviceName too long": _set("d:device/d:deviceName", "x" * (constants.MAX_NAME_LENGTH + 1)),
    "sixth deviceSecurityId": _duplicate("d:device/d:deviceSecurityIdList/d:deviceSecurityId"),
    "elements out of order": _duplicate("d:device/d:deviceName"),
}


@pytest.mark.parametrize("name", sorted(BAD_DESCRIPTIONS))
def test_broken_description_fails(name: str, validators: tuple[Validator, Validator]) -> None:
    validate_description, _ = validators
    root = _desc_tree()
    assert validate_description(root)  # the unbroken document is valid ...
    BAD_DESCRIPTIONS[name](root)
    assert not validate_description(root)  # ... and the mutation breaks it


def test_over_cap_description_emitted_by_code_fails(xs_description: xmlschema.XMLSchema) -> None:
    """The encoder does not enforce the caps itself; the schema catches it."""
    desc = ddesc.DeviceDescription(DEV, TV, "TV", security_ids=tuple(f"urn:x:{i}" for i in range(6)))
    assert not xs_description.is_valid(etree.fromstring(ddesc.to_bytes(desc)))


BAD_BODIES: dict[str, tuple[str, Callable[[etree._Element], None]]] = {
    "Matched not a literal": ("SearchDeviceResponseOnDevice/match", _set("i:Matched", "yes")),
    "ReturnCode four digits": ("GetDeviceDescriptionResponse/ok", _set("i:ReturnCode", "2000")),
    "AcknowledgeId zero": ("SearchDeviceResponseOnDevice/match", _set("i:AcknowledgeId", "0")),
    "no ReturnCode": ("ErrorResponse", _drop("i:ReturnCode")),
    "bad SearchTarget": ("SearchDeviceRequestOnDevice/all", _set("i:SearchTarget", "upnp:rootdevice")),
    "UDN broken inside response": (
        "GetDeviceDescriptionResponse/ok",
        _set("d:root/d:device/d:UDN", "not-an-id"),
    ),
    "Reason too long": ("ErrorResponse", _set("i:Reason", "r" * 257)),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_broken_body_fails(name: str, validators: tuple[Validator, Validator]) -> None:
    _, validate_body = validators
    sample, mutate = BAD_BODIES[name]
    body = copy.deepcopy(body_of(typed_messages()[sample]))
    assert validate_body(body)
    mutate(body)
    assert not validate_body(body)


def test_body_in_wrong_namespace_fails(validators: tuple[Validator, Validator]) -> None:
    _, validate_body = validators
    bad = etree.fromstring(b'<GetDeviceDescriptionRequest xmlns="urn:other"/>')
    assert not validate_body(bad)


# --- XSD caps equal the code's caps ----------------------------------------------------------
def test_description_caps_match_code(xs_description: xmlschema.XMLSchema) -> None:
    types = xs_description.types
    assert types["name128"].max_length == constants.MAX_NAME_LENGTH
    assert types["url512"].max_length == constants.MAX_URL_LENGTH
    assert types["id256"].max_length == constants.MAX_ID_LENGTH

    def max_occurs(type_name: str) -> int | None:
        return types[type_name].content[0].max_occurs

    assert max_occurs("deviceSecurityIdListType") == ddesc.MAX_DEVICE_SECURITY_IDS
    assert max_occurs("serviceSecurityIdListType") == ddesc.MAX_SERVICE_SECURITY_IDS
    assert max_occurs("joinedGroupListType") == ddesc.MAX_GROUPS
    assert max_occurs("serviceListType") == ddesc.MAX_SERVICES


def test_message_caps_match_code(xs_messages: xmlschema.XMLSchema) -> None:
    assert xs_messages.types["reason"].max_length == messages.MAX_REASON
    assert xs_messages.types["name128"].max_length == constants.MAX_NAME_LENGTH


# --- specs/ in sync with the code ------------------------------------------------------------
def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"\|\s*-", line):
            rows.append([cell.strip().strip("`").strip() for cell in line.strip("|").split("|")])
    return rows


def test_catalogue_matches_messages_md() -> None:
    rows = {r[1]: r for r in _table_rows((SPECS / "messages.md").read_text()) if len(r) >= 8}
    assert len(CATALOGUE) == 58
    for name, spec in CATALOGUE.items():
        assert name in rows, f"{name} missing from specs/messages.md"
        clause, _, kind, delivery, framing, action, source, response = rows[name][:8]
        assert clause == spec.clause, name
        assert kind == spec.kind.value, name
        assert delivery == spec.delivery.value, name
        assert framing == spec.framing.value, name
        assert action == spec.soap_action, name
        assert source == spec.action_source, name
        assert response == (spec.response or "—"), name
    documented = {name for name, r in rows.items() if re.fullmatch(r"\d+\.\d+", r[0])}
    assert documented == set(CATALOGUE), "messages.md lists messages the catalogue lacks"


def _specs_text() -> str:
    return "\n".join(p.read_text() for p in sorted(SPECS.rglob("*.md")))


def test_every_constant_is_in_specs() -> None:
    """By name; a string constant may instead appear by value (numbers must be named)."""
    text = _specs_text()
    names = [n for n in vars(constants) if n.isupper() and not n.startswith("_")]
    assert len(names) > 40
    missing = []
    for name in names:
        value = getattr(constants, name)
        by_value = isinstance(value, str) and len(value) >= 4 and value in text
        if not (re.search(rf"\b{name}\b", text) or by_value):
            missing.append(name)
    assert not missing, f"constants not described in specs/: {missing}"


def test_every_return_code_is_in_return_codes_md() -> None:
    rows = {r[0]: r for r in _table_rows((SPECS / "return-codes.md").read_text())}
    for code in ReturnCode:
        assert str(code.value) in rows, code
        assert rows[str(code.value)][1] == code.name, code


def test_every_spec_file_states_provenance() -> None:
    for path in sorted(SPECS.glob("*.md")):
        if path.name == "README.md":
            continue
        text = path.read_text()
        assert "public source" in text and "project choice" in text, path.name


def test_packaged_schemas_match_specs() -> None:
    """igrs/schemas/ (run-time copies, shipped as package data) equal specs/schemas/."""
    packaged = ROOT / "igrs" / "schemas"
    if not packaged.is_dir():
        pytest.skip("igrs/schemas/ not created yet")
    for xsd in sorted(SCHEMAS.glob("*.xsd")):
        copy_ = packaged / xsd.name
        assert copy_.is_file(), f"{xsd.name} missing from igrs/schemas/"
        assert copy_.read_bytes() == xsd.read_bytes(), f"igrs/schemas/{xsd.name} is stale"
