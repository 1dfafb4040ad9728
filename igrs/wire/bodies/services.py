"""Clause 10.1 (register/unregister notifies), 10.2 (search on a device) and 10.4 (service
description) bodies, and the WSDL 1.1 service description they carry.

WSDL shape: public source: EZ-SDT (``IGRSportType``, ``serviceAttribute`` with ``mutability``
and ``notifiable``, ``staticServiceAttributeValues``, the standard operations
findServiceAttribute / subscribe / renewSubscription / unsubscribe / sendNotification) and
EZ-TBT (binding ``transport="http://www.igrs.org/igrs/igrspipe"``, ``operation@soapAction``,
``body@use``, ``address@location``). How a Python service maps onto it (``valueType`` type
expressions, one request/response element per action) is project choice (specs/services.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from igrs.constants import (
    IGRS_NS,
    IGRS_PATH,
    MAX_ARGUMENTS,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SERVICES,
    SERVICE_DESCRIPTION_NS,
)
from igrs.errors import LimitExceeded, ProtocolError
from igrs.wire.bodies.sessions import check_name, el, expect, opt_uint, sub, uint
from igrs.wire.ids import ServiceType, parse_uint32
from igrs.wire.isdp import SearchTarget
from igrs.wire.messages import Status, register
from igrs.wire.xml import Element, child_text, etree, qname

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"  # WSDL 1.1 (public source: EZ-SDT 1.1 variant)
XSD_NS = "http://www.w3.org/2001/XMLSchema"
BINDING_NS = "http://www.igrs.org/igrs/"  # public source: EZ-TBT
IGRSPIPE_TRANSPORT = "http://www.igrs.org/igrs/igrspipe"  # public source: EZ-TBT
SD = SERVICE_DESCRIPTION_NS

# Standard operations of every IGRS service (public source: EZ-SDT) and the port type that
# declares each.
STANDARD_OPERATIONS: dict[str, str] = {
    "findServiceAttribute": "findServiceAttributePortType",
    "subscribe": "subscribeServiceAttributePortType",
    "renewSubscription": "subscribeServiceAttributePortType",
    "unsubscribe": "subscribeServiceAttributePortType",
    "sendNotification": "notifyServiceAttributePortType",
}
ONE_WAY = frozenset({"sendNotification"})
# Static attributes of IGRSDataType (public source: EZ-SDT).
STANDARD_ATTRIBUTES = ("ServiceId", "ServiceName", "ServiceType", "ServiceSecurityId")

# --- type expressions -----------------------------------------------------------------------
SCALAR_TYPES: dict[str, str] = {
    "int": "xsd:long",
    "float": "xsd:double",
    "bool": "xsd:boolean",
    "string": "xsd:string",
    "bytes": "xsd:base64Binary",
}
_TYPE_RE = re.compile(r"(list|dict)\[(.+)\]\Z")


def check_type_expr(expr: str, depth: int = 0) -> str:
    """``int|float|bool|string|bytes|list[T]|dict[T]`` (dict keys are strings)."""
    if depth > 4 or len(expr) > 64:
        raise ProtocolError(f"type expression too complex: {expr[:40]!r}")
    if expr in SCALAR_TYPES:
        return expr
    m = _TYPE_RE.match(expr)
    if not m:
        raise ProtocolError(f"unknown type {expr[:40]!r}")
    check_type_expr(m.group(2), depth + 1)
    return expr


def xsd_type(expr: str) -> str:
    return SCALAR_TYPES.get(expr, "xsd:anyType")


# --- the service description ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ParamDesc:
    name: str
    type: str
    required: bool = True


@dataclass(frozen=True, slots=True)
class ActionDesc:
    name: str
    params: tuple[ParamDesc, ...] = ()
    result: str | None = None  # type expression, None = no result


@dataclass(frozen=True, slots=True)
class AttributeDesc:
    name: str
    type: str
    mutability: str = "dynamic"
    notifiable: bool = False


@dataclass(frozen=True, slots=True)
class ServiceDescription:
    service_type: str
    name: str
    service_id: int
    actions: tuple[ActionDesc, ...] = ()
    attributes: tuple[AttributeDesc, ...] = ()
    security_ids: tuple[str, ...] = ()

    @property
    def type_name(self) -> str:
        return ServiceType.parse(self.service_type).name.replace(".", "_").replace("-", "_")

    def action(self, name: str) -> ActionDesc | None:
        return next((a for a in self.actions if a.name == name), None)

    def attribute(self, name: str) -> AttributeDesc | None:
        return next((a for a in self.attributes if a.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """Its actions (arguments with their types) and attributes, as ``igrs services DEVICE
        SERVICE --json`` and the relay gateway's ``describe`` show them."""
        return {
            "service_id": self.service_id, "name": self.name, "service_type": self.service_type,
            "actions": [{"name": a.name, "result": a.result,
                         "params": [{"name": p.name, "type": p.type, "required": p.required} for p in a.params]}
                        for a in self.actions],
            "attributes": [{"name": a.name, "type": a.type, "mutability": a.mutability,
                            "notifiable": a.notifiable} for a in self.attributes],
        }

    # -- emit ---------------------------------------------------------------------------
    def to_wsdl(self) -> Element:
        tns = self.service_type
        base = self.type_name
        nsmap = {"wsdl": WSDL_NS, "xsd": XSD_NS, "igrs": SD, "igrsb": BINDING_NS, "tns": tns}
        root = etree.Element(qname(WSDL_NS, "definitions"), nsmap=nsmap)
        root.set("name", base)
        root.set("targetNamespace", tns)

        def w(parent: Element, local: str, **attrs: str) -> Element:
            node = etree.SubElement(parent, qname(WSDL_NS, local))
            for k, v in attrs.items():
                node.set(k, v)
            return node

        def x(parent: Element, local: str, **attrs: str) -> Element:
            node = etree.SubElement(parent, qname(XSD_NS, local))
            for k, v in attrs.items():
                node.set(k, v)
            return node

        types = w(root, "types")
        schema = x(types, "schema", targetNamespace=tns, elementFormDefault="qualified")
        for act in self.actions:
            for elname, fields in (
                (act.name, [(p.name, p.type, p.required) for p in act.params]),
                (f"{act.name}Response", [("result", act.result, True)] if act.result else []),
            ):
                seq = x(x(x(schema, "element", name=elname), "complexType"), "sequence")
                for fname, ftype, required in fields:
                    assert ftype is not None
                    node = x(seq, "element", name=fname, type=xsd_type(ftype))
                    node.set(qname(SD, "valueType"), ftype)
                    if not required:
                        node.set("minOccurs", "0")
        for act in self.actions:
            msg = w(root, "message", name=f"{act.name}Input")
            w(msg, "part", name="parameters", element=f"tns:{act.name}")
            msg = w(root, "message", name=f"{act.name}Output")
            w(msg, "part", name="parameters", element=f"tns:{act.name}Response")
        for op in STANDARD_OPERATIONS:
            msg = w(root, "message", name=f"{op}Input")
            w(msg, "part", name="parameters", element=f"igrs:{op}")
            if op not in ONE_WAY:
                msg = w(root, "message", name=f"{op}Output")
                out = "subscribeResponse" if op in ("subscribe", "renewSubscription") else f"{op}Response"
                w(msg, "part", name="parameters", element=f"igrs:{out}")

        port = etree.SubElement(root, qname(SD, "IGRSportType"))
        port.set("name", f"{base}PortType")
        port.set("extends", " ".join(f"igrs:{p}" for p in dict.fromkeys(STANDARD_OPERATIONS.values())))
        operations = [a.name for a in self.actions] + list(STANDARD_OPERATIONS)
        for op in operations:
            node = w(port, "operation", name=op)
            w(node, "input", message=f"tns:{op}Input")
            if op not in ONE_WAY:
                w(node, "output", message=f"tns:{op}Output")
        std_types = ("xsd:unsignedInt", "xsd:string", "xsd:anyURI", "xsd:anyURI")
        for std, xtype in zip(STANDARD_ATTRIBUTES, std_types, strict=True):
            node = etree.SubElement(port, qname(SD, "serviceAttribute"))
            node.set("name", std)
            node.set("type", xtype)
            node.set("mutability", "static")
            if std == "ServiceSecurityId":
                node.set("minOccurs", "0")
                node.set("maxOccurs", "3")
        for attr in self.attributes:
            node = etree.SubElement(port, qname(SD, "serviceAttribute"))
            node.set("name", attr.name)
            node.set("type", xsd_type(attr.type))
            node.set("valueType", attr.type)
            node.set("mutability", attr.mutability)
            node.set("notifiable", "true" if attr.notifiable else "false")
        values = etree.SubElement(port, qname(SD, "staticServiceAttributeValues"))
        for name, value in (
            ("ServiceId", str(self.service_id)),
            ("ServiceName", self.name),
            ("ServiceType", self.service_type),
        ):
            node = etree.SubElement(values, qname(SD, "serviceAttributeValue"))
            node.set("name", name)
            node.text = value
        for sec in self.security_ids:
            node = etree.SubElement(values, qname(SD, "serviceAttributeValue"))
            node.set("name", "ServiceSecurityId")
            node.text = sec

        binding = w(root, "binding", name=f"{base}Binding", type=f"tns:{base}PortType")
        b = etree.SubElement(binding, qname(BINDING_NS, "binding"))
        b.set("transport", IGRSPIPE_TRANSPORT)
        b.set("style", "rpc")
        for op in operations:
            node = w(binding, "operation", name=op)
            action = "IGRS-Send-Notification" if op in ONE_WAY else "IGRS-InvokeService-Request"
            etree.SubElement(node, qname(BINDING_NS, "operation")).set("soapAction", action)
            for io in ("input",) if op in ONE_WAY else ("input", "output"):
                body = etree.SubElement(w(node, io), qname(BINDING_NS, "body"))
                body.set("use", "literal")
                body.set("namespace", IGRS_NS)
        service = w(root, "service", name=base)
        p = w(service, "port", name=f"{base}Port", binding=f"tns:{base}Binding")
        etree.SubElement(p, qname(BINDING_NS, "address")).set(
            "location", f"{IGRS_PATH}?serviceId={self.service_id}"
        )
        return root

    def to_bytes(self) -> bytes:
        return etree.tostring(self.to_wsdl(), xml_declaration=True, encoding="utf-8")

    # -- parse --------------------------------------------------------------------------
    @classmethod
    def from_wsdl(cls, root: Element) -> ServiceDescription:
        """Parse a WSDL this module emits (and close relatives); ProtocolError otherwise."""
        if root.tag != qname(WSDL_NS, "definitions"):
            raise ProtocolError("service description is not a WSDL 1.1 definitions element")
        tns = root.get("targetNamespace") or ""
        port = root.find(qname(SD, "IGRSportType"))
        if port is None:
            port = root.find(qname(WSDL_NS, "IGRSportType"))  # EZ-SDT writes it unprefixed
        if port is None:
            raise ProtocolError("service description without IGRSportType")
        statics: dict[str, list[str]] = {}
        values = port.find(qname(SD, "staticServiceAttributeValues"))
        if values is not None:
            for node in values.iterchildren(qname(SD, "serviceAttributeValue")):
                statics.setdefault(node.get("name") or "", []).append((node.text or "").strip())
        stype = (statics.get("ServiceType") or [tns])[0]
        ServiceType.parse(stype)
        sid_text = (statics.get("ServiceId") or [""])[0]
        service_id = parse_uint32(sid_text, "ServiceId")
        name = (statics.get("ServiceName") or [""])[0]
        if len(name) > MAX_NAME_LENGTH:
            raise LimitExceeded("ServiceName too long")
        attributes = []
        for node in port.iterchildren(qname(SD, "serviceAttribute")):
            aname = node.get("name") or ""
            if aname in STANDARD_ATTRIBUTES:
                continue
            mut = node.get("mutability", "dynamic")
            if mut not in ("static", "dynamic"):
                raise ProtocolError("mutability must be static or dynamic")
            attributes.append(
                AttributeDesc(
                    check_name(aname, "attribute name"),
                    check_type_expr(node.get("valueType") or "string"),
                    mut,
                    node.get("notifiable", "false") in ("true", "1"),
                )
            )
        elements: dict[str, Element] = {}
        types = root.find(qname(WSDL_NS, "types"))
        if types is not None:
            for schema in types.iterchildren(qname(XSD_NS, "schema")):
                for node in schema.iterchildren(qname(XSD_NS, "element")):
                    elements[node.get("name") or ""] = node

        def fields(elname: str) -> list[tuple[str, str, bool]]:
            node = elements.get(elname)
            if node is None:
                return []
            out = []
            for f in node.iter(qname(XSD_NS, "element")):
                if f is node:
                    continue
                ftype = check_type_expr(f.get(qname(SD, "valueType")) or "string")
                out.append(
                    (check_name(f.get("name") or "", "parameter name"), ftype, f.get("minOccurs", "1") != "0")
                )
            return out

        actions = []
        for op in port.iterchildren(qname(WSDL_NS, "operation")):
            oname = op.get("name") or ""
            if oname in STANDARD_OPERATIONS:
                continue
            params = tuple(ParamDesc(n, t, r) for n, t, r in fields(oname))
            if len(params) > MAX_ARGUMENTS:
                raise LimitExceeded("too many parameters")
            res = fields(f"{oname}Response")
            actions.append(ActionDesc(check_name(oname, "operation name"), params, res[0][1] if res else None))
        return cls(
            stype,
            name,
            service_id,
            tuple(actions),
            tuple(attributes),
            tuple(statics.get("ServiceSecurityId", ())),
        )


# --- 10.1 register / unregister notifies ----------------------------------------------------
@dataclass(frozen=True, slots=True)
class ServiceInfo:
    service_id: int
    service_type: str
    name: str = ""
    security_ids: tuple[str, ...] = ()

    def write(self, parent: Element) -> None:
        node = sub(parent, "Service")
        sub(node, "ServiceId", str(self.service_id))
        sub(node, "ServiceType", self.service_type)
        if self.name:
            sub(node, "ServiceName", self.name)
        for sec in self.security_ids:
            sub(node, "ServiceSecurityId", sec)

    @classmethod
    def read(cls, node: Element) -> ServiceInfo:
        stype = child_text(node, IGRS_NS, "ServiceType", max_len=MAX_ID_LENGTH) or ""
        ServiceType.parse(stype)
        secs = tuple((s.text or "").strip() for s in node.iterchildren(qname(IGRS_NS, "ServiceSecurityId")))
        if len(secs) > 3 or any(not s or len(s) > MAX_ID_LENGTH for s in secs):
            raise ProtocolError("bad ServiceSecurityId list")
        name = child_text(node, IGRS_NS, "ServiceName", required=False, max_len=MAX_NAME_LENGTH) or ""
        return cls(uint(node, "ServiceId"), stype, name, secs)


@dataclass(frozen=True, slots=True)
class RegisterServiceNotify:
    service: ServiceInfo
    message_type: ClassVar[str] = "RegisterServiceNotify"

    def body(self) -> Element:
        root = el(self.message_type)
        self.service.write(root)
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type)
        node = body.find(qname(IGRS_NS, "Service"))
        if node is None:
            raise ProtocolError("missing element Service")
        return cls(ServiceInfo.read(node))


@dataclass(frozen=True, slots=True)
class UnRegisterServiceNotify:
    service_id: int
    service_type: str
    message_type: ClassVar[str] = "UnRegisterServiceNotify"

    def body(self) -> Element:
        root = el(self.message_type)
        sub(root, "ServiceId", str(self.service_id))
        sub(root, "ServiceType", self.service_type)
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type)
        stype = child_text(body, IGRS_NS, "ServiceType", max_len=MAX_ID_LENGTH) or ""
        ServiceType.parse(stype)
        return cls(uint(body, "ServiceId"), stype)


# --- 10.2 service search on one device ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SearchServiceRequestOnDevice:
    """``SearchTarget``: ``isdp:all`` or a service type URN (isdp.md §6)."""

    target: SearchTarget
    message_type: ClassVar[str] = "SearchServiceRequestOnDevice"

    def body(self) -> Element:
        root = el(self.message_type)
        sub(root, "SearchTarget", str(self.target))
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type)
        return cls(SearchTarget.parse(child_text(body, IGRS_NS, "SearchTarget", max_len=MAX_ID_LENGTH) or ""))


@dataclass(frozen=True, slots=True)
class SearchServiceResponseOnDevice:
    status: Status
    services: tuple[ServiceInfo, ...] = ()
    message_type: ClassVar[str] = "SearchServiceResponseOnDevice"

    def body(self) -> Element:
        root = el(self.message_type)
        self.status.write(root)
        for info in self.services:
            info.write(root)
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type)
        services = []
        for node in body.iterchildren(qname(IGRS_NS, "Service")):
            services.append(ServiceInfo.read(node))
            if len(services) > MAX_SERVICES:
                raise LimitExceeded("too many services in a search response")
        return cls(Status.read(body), tuple(services))


# --- 10.4 service description ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GetServiceDescriptionRequest:
    service_id: int
    message_type: ClassVar[str] = "GetServiceDescriptionRequest"

    def body(self) -> Element:
        root = el(self.message_type)
        sub(root, "TargetServiceId", str(self.service_id))
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type)
        return cls(uint(body, "TargetServiceId"))


@dataclass(frozen=True, slots=True)
class GetServiceDescriptionResponse:
    """Status, ``SourceServiceId``, then the WSDL ``wsdl:definitions`` (when 200)."""

    status: Status
    service_id: int | None = None
    description: ServiceDescription | None = None
    message_type: ClassVar[str] = "GetServiceDescriptionResponse"

    def body(self) -> Element:
        root = el(self.message_type)
        self.status.write(root)
        if self.service_id is not None:
            sub(root, "SourceServiceId", str(self.service_id))
        if self.description is not None:
            root.append(self.description.to_wsdl())
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type)
        status = Status.read(body)
        wsdl = body.find(qname(WSDL_NS, "definitions"))
        if status.ok and wsdl is None:
            raise ProtocolError("successful GetServiceDescriptionResponse without a WSDL")
        return cls(
            status,
            opt_uint(body, "SourceServiceId"),
            ServiceDescription.from_wsdl(wsdl) if wsdl is not None else None,
        )


for _cls in (
    RegisterServiceNotify,
    UnRegisterServiceNotify,
    SearchServiceRequestOnDevice,
    SearchServiceResponseOnDevice,
    GetServiceDescriptionRequest,
    GetServiceDescriptionResponse,
):
    register(_cls)

__all__ = [
    "BINDING_NS",
    "IGRSPIPE_TRANSPORT",
    "STANDARD_ATTRIBUTES",
    "STANDARD_OPERATIONS",
    "WSDL_NS",
    "ActionDesc",
    "AttributeDesc",
    "GetServiceDescriptionRequest",
    "GetServiceDescriptionResponse",
    "ParamDesc",
    "RegisterServiceNotify",
    "SearchServiceRequestOnDevice",
    "SearchServiceResponseOnDevice",
    "ServiceDescription",
    "ServiceInfo",
    "UnRegisterServiceNotify",
    "check_type_expr",
]
