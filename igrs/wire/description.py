"""The device description document (namespace http://www.igrs.org/igrs/DeviceTemplate).

Element names and order: public source (ezbox IGRS_1_0_DeviceDescriptionTemplate.xml);
schema: specs/schemas/device-description.xsd.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from igrs.constants import DEVICE_TEMPLATE_NS, MAX_NAME_LENGTH, MAX_URL_LENGTH
from igrs.errors import LimitExceeded, ProtocolError
from igrs.wire.ids import DeviceId, DeviceType, check_name, is_digits, parse_uint32
from igrs.wire.xml import Element, child_text, etree, parse_xml, qname

NS = DEVICE_TEMPLATE_NS
MAX_GROUPS = 32
MAX_SERVICES = 64
MAX_DEVICE_SECURITY_IDS = 5  # public source: ezbox template maxOccurs
MAX_SERVICE_SECURITY_IDS = 3  # public source: ezbox template maxOccurs


@dataclass(frozen=True, slots=True)
class GroupRef:
    group_id: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class ServiceRef:
    service_type: str
    service_id: int
    name: str = ""
    security_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceDescription:
    device_id: DeviceId
    device_type: DeviceType
    name: str
    manufacturer: str = "igrs-python"
    model_name: str = "igrs-python device"
    icon_url: str = ""
    manufacturer_url: str | None = None
    model_description: str | None = None
    model_number: str | None = None
    model_url: str | None = None
    serial_number: str | None = None
    groups: tuple[GroupRef, ...] = ()
    security_ids: tuple[str, ...] = ()
    services: tuple[ServiceRef, ...] = field(default_factory=tuple)
    template_version: tuple[int, int] = (1, 0)
    protocol_version: tuple[int, int] = (1, 0)


def _sub(parent: Element, local: str, text: str | None = None) -> Element:
    el = etree.SubElement(parent, qname(NS, local))
    if text is not None:
        el.text = text
    return el


def _version(parent: Element, local: str, version: tuple[int, int]) -> None:
    el = _sub(parent, local)
    _sub(el, "major", str(version[0]))
    _sub(el, "minor", str(version[1]))


def to_element(desc: DeviceDescription) -> Element:
    root = etree.Element(qname(NS, "root"), nsmap={None: NS})
    _version(root, "deviceTemplateVersion", desc.template_version)
    dev = _sub(root, "device")
    _sub(dev, "deviceType", str(desc.device_type))
    _sub(dev, "deviceName", check_name(desc.name))
    _sub(dev, "manufacturer", desc.manufacturer)
    if desc.manufacturer_url is not None:
        _sub(dev, "manufacturerURL", desc.manufacturer_url)
    if desc.model_description is not None:
        _sub(dev, "modelDescription", desc.model_description)
    _sub(dev, "modelName", desc.model_name)
    if desc.model_number is not None:
        _sub(dev, "modelNumber", desc.model_number)
    if desc.model_url is not None:
        _sub(dev, "modelURL", desc.model_url)
    if desc.serial_number is not None:
        _sub(dev, "serialNumber", desc.serial_number)
    _sub(dev, "UDN", str(desc.device_id))
    _sub(dev, "DeviceIconURL", desc.icon_url)
    if desc.groups:
        groups = _sub(dev, "joinedGroupList")
        for g in desc.groups:
            gel = _sub(groups, "deviceGroup")
            _sub(gel, "deviceGroupId", g.group_id)
            _sub(gel, "deviceGroupName", g.name)
    sec = _sub(dev, "deviceSecurityIdList")
    for sid in desc.security_ids:
        _sub(sec, "deviceSecurityId", sid)
    if desc.services:
        services = _sub(dev, "serviceList")
        for s in desc.services:
            sel = _sub(services, "service")
            _sub(sel, "serviceType", s.service_type)
            _sub(sel, "serviceId", str(s.service_id))
            _sub(sel, "serviceName", s.name)
            ssec = _sub(sel, "serviceSecurityIdList")
            for sid in s.security_ids:
                _sub(ssec, "serviceSecurityId", sid)
    _version(root, "protocolVersion", desc.protocol_version)
    return root


def to_bytes(desc: DeviceDescription) -> bytes:
    return etree.tostring(to_element(desc), xml_declaration=True, encoding="utf-8")


def _text(parent: Element, local: str, *, required: bool = True,
          max_len: int = MAX_NAME_LENGTH) -> str | None:
    return child_text(parent, NS, local, required=required, max_len=max_len)


def _parse_version(parent: Element, local: str) -> tuple[int, int]:
    el = parent.find(qname(NS, local))
    if el is None:
        raise ProtocolError(f"missing element {local}")
    major, minor = _text(el, "major", max_len=4), _text(el, "minor", max_len=4)
    if not (major and is_digits(major) and minor and is_digits(minor)):
        raise ProtocolError(f"malformed {local}")
    return int(major), int(minor)


def _list(parent: Element, container: str, item: str, limit: int) -> list[Element]:
    el = parent.find(qname(NS, container))
    if el is None:
        return []
    items = el.findall(qname(NS, item))
    if len(items) > limit:
        raise LimitExceeded(f"more than {limit} {item} entries")
    return items


def from_element(root: Element) -> DeviceDescription:
    if root.tag != qname(NS, "root"):
        raise ProtocolError("not an IGRS device description (root element)")
    dev = root.find(qname(NS, "device"))
    if dev is None:
        raise ProtocolError("device description without device element")
    udn = _text(dev, "UDN", max_len=256)
    assert udn is not None
    groups = tuple(
        GroupRef(_text(g, "deviceGroupId", max_len=MAX_URL_LENGTH) or "",
                 _text(g, "deviceGroupName", required=False) or "")
        for g in _list(dev, "joinedGroupList", "deviceGroup", MAX_GROUPS)
    )
    security_ids = tuple(
        (s.text or "").strip()
        for s in _list(dev, "deviceSecurityIdList", "deviceSecurityId", MAX_DEVICE_SECURITY_IDS)
    )
    services = []
    for s in _list(dev, "serviceList", "service", MAX_SERVICES):
        sid = parse_uint32(_text(s, "serviceId", max_len=10) or "", "serviceId")
        services.append(ServiceRef(
            _text(s, "serviceType", max_len=MAX_URL_LENGTH) or "",
            sid,
            _text(s, "serviceName", required=False) or "",
            tuple((x.text or "").strip() for x in _list(
                s, "serviceSecurityIdList", "serviceSecurityId", MAX_SERVICE_SECURITY_IDS)),
        ))
    return DeviceDescription(
        device_id=DeviceId.parse(udn),
        device_type=DeviceType.parse(_text(dev, "deviceType", max_len=256) or ""),
        name=_text(dev, "deviceName") or "",
        manufacturer=_text(dev, "manufacturer") or "",
        model_name=_text(dev, "modelName") or "",
        icon_url=_text(dev, "DeviceIconURL", required=False, max_len=MAX_URL_LENGTH) or "",
        manufacturer_url=_text(dev, "manufacturerURL", required=False, max_len=MAX_URL_LENGTH),
        model_description=_text(dev, "modelDescription", required=False, max_len=1024),
        model_number=_text(dev, "modelNumber", required=False),
        model_url=_text(dev, "modelURL", required=False, max_len=MAX_URL_LENGTH),
        serial_number=_text(dev, "serialNumber", required=False),
        groups=groups,
        security_ids=security_ids,
        services=tuple(services),
        template_version=_parse_version(root, "deviceTemplateVersion"),
        protocol_version=_parse_version(root, "protocolVersion"),
    )


def from_bytes(data: bytes) -> DeviceDescription:
    return from_element(parse_xml(data))
