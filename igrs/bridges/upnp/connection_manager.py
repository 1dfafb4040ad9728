"""ConnectionManager:1 of an exposed MediaServer or MediaRenderer (specs/upnp-bridge.md §3.3;
public source: UPnP ConnectionManager:1 Service Template). Only the default connection 0: no
PrepareForConnection, as for every HTTP-GET-only device."""

# No ``from __future__ import annotations``: async-upnp-client compares the action methods'
# annotations with its Python types.

import xml.etree.ElementTree as ET

from async_upnp_client.const import ServiceInfo
from async_upnp_client.server import callable_action, create_event_var, create_state_var

from igrs.bridges.upnp import errors
from igrs.bridges.upnp.constants import MAX_PROTOCOL_INFOS, UPNP_PREFIX
from igrs.bridges.upnp.hosting import BridgeService

CM_TYPE = "urn:schemas-upnp-org:service:ConnectionManager:1"
CM_ID = "urn:upnp-org:serviceId:ConnectionManager"


def service_info(role: str) -> ServiceInfo:
    base = f"{UPNP_PREFIX}{role}/ConnectionManager"
    return ServiceInfo(CM_ID, CM_TYPE, f"{base}/control", f"{base}/event", f"{base}/scpd.xml",
                       ET.Element("server_service"))


class ConnectionManager(BridgeService):
    """Connection 0 only; ``source``/``sink``: the protocolInfo lists (``set_protocols``)."""

    DIRECTION = "Output"
    STATE_VARIABLE_DEFINITIONS = {
        "SourceProtocolInfo": create_event_var("string", default=""),
        "SinkProtocolInfo": create_event_var("string", default=""),
        "CurrentConnectionIDs": create_event_var("string", default="0"),
        "A_ARG_TYPE_ConnectionStatus": create_state_var(
            "string", allowed=["OK", "ContentFormatMismatch", "InsufficientBandwidth", "UnreliableChannel",
                               "Unknown"], default="OK"),
        "A_ARG_TYPE_ConnectionManager": create_state_var("string"),
        "A_ARG_TYPE_Direction": create_state_var("string", allowed=["Input", "Output"], default="Output"),
        "A_ARG_TYPE_ProtocolInfo": create_state_var("string"),
        "A_ARG_TYPE_ConnectionID": create_state_var("i4"),
        "A_ARG_TYPE_AVTransportID": create_state_var("i4"),
        "A_ARG_TYPE_RcsID": create_state_var("i4"),
    }

    def set_protocols(self, source: list[str], sink: list[str]) -> None:
        self.state_variable("SourceProtocolInfo").value = ",".join(dict.fromkeys(source[:MAX_PROTOCOL_INFOS]))
        self.state_variable("SinkProtocolInfo").value = ",".join(dict.fromkeys(sink[:MAX_PROTOCOL_INFOS]))

    @callable_action(name="GetProtocolInfo", in_args={},
                     out_args={"Source": "SourceProtocolInfo", "Sink": "SinkProtocolInfo"})
    async def get_protocol_info(self) -> dict[str, object]:
        source, sink = self.state_variable("SourceProtocolInfo"), self.state_variable("SinkProtocolInfo")
        return {"Source": source, "Sink": sink}

    @callable_action(name="GetCurrentConnectionIDs", in_args={},
                     out_args={"ConnectionIDs": "CurrentConnectionIDs"})
    async def get_current_connection_ids(self) -> dict[str, object]:
        return {"ConnectionIDs": self.state_variable("CurrentConnectionIDs")}

    @callable_action(
        name="GetCurrentConnectionInfo",
        in_args={"ConnectionID": "A_ARG_TYPE_ConnectionID"},
        out_args={"RcsID": "A_ARG_TYPE_RcsID", "AVTransportID": "A_ARG_TYPE_AVTransportID",
                  "ProtocolInfo": "A_ARG_TYPE_ProtocolInfo",
                  "PeerConnectionManager": "A_ARG_TYPE_ConnectionManager",
                  "PeerConnectionID": "A_ARG_TYPE_ConnectionID", "Direction": "A_ARG_TYPE_Direction",
                  "Status": "A_ARG_TYPE_ConnectionStatus"},
    )
    async def get_current_connection_info(self, ConnectionID: int) -> dict[str, object]:
        if ConnectionID != 0:
            raise errors.fault(errors.INVALID_CONNECTION, "only connection 0")
        return {"RcsID": 0 if self.DIRECTION == "Input" else -1,
                "AVTransportID": 0 if self.DIRECTION == "Input" else -1,
                "ProtocolInfo": "", "PeerConnectionManager": "", "PeerConnectionID": -1,
                "Direction": self.DIRECTION, "Status": "OK"}


class ServerConnectionManager(ConnectionManager):
    SERVICE_DEFINITION = service_info("server")
    DIRECTION = "Output"


class RendererConnectionManager(ConnectionManager):
    SERVICE_DEFINITION = service_info("renderer")
    DIRECTION = "Input"
