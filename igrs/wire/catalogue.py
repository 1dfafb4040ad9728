"""The message catalogue of ISO/IEC 14543-5-1 clauses 9.1-10.6 (specs/messages.md).

Names and clause numbers: public source (ezbox ezcfg-igrs.h, which quotes the draft).
SOAP actions: public source where ezbox defines one (``public``), otherwise the same
``IGRS-<Base>-<Kind>`` pattern as a project choice (``project``). Delivery and framing are
project choices inferred from which messages ezbox gives a SOAP action.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Delivery(StrEnum):
    MULTICAST = "multicast"
    UNICAST = "unicast"


class Framing(StrEnum):
    ISDP = "isdp"  # HTTPU/HTTPMU datagram on UDP 3880, headers only
    SOAP = "soap"  # HTTP M-POST /IGRS with a SOAP envelope


class Kind(StrEnum):
    ADVERTISEMENT = "advertisement"
    REQUEST = "request"
    RESPONSE = "response"
    NOTIFY = "notify"


@dataclass(frozen=True, slots=True)
class MessageSpec:
    name: str
    clause: str
    kind: Kind
    delivery: Delivery
    framing: Framing
    soap_action: str
    action_source: str  # "public" (ezbox) or "project"
    response: str | None = None  # the message that answers this one, if any

    @property
    def ext_header_type(self) -> str:
        """Value of the ``01-IGRSMessageType`` header (the message name)."""
        return self.name


def _s(name: str, clause: str, kind: Kind, delivery: Delivery, framing: Framing,
       action: str, public: bool, response: str | None = None) -> MessageSpec:
    return MessageSpec(name, clause, kind, delivery, framing, action,
                       "public" if public else "project", response)


A, RQ, RS, N = Kind.ADVERTISEMENT, Kind.REQUEST, Kind.RESPONSE, Kind.NOTIFY
MC, UC = Delivery.MULTICAST, Delivery.UNICAST
ISDP, SOAP = Framing.ISDP, Framing.SOAP

_SPECS: tuple[MessageSpec, ...] = (
    # 9.1 Device advertisement
    _s("DeviceOnlineAdvertisement", "9.1", A, MC, ISDP, "IGRS-DeviceOnline-Advertisement", False),
    _s("DeviceOfflineAdvertisement", "9.1", A, MC, ISDP, "IGRS-DeviceOffline-Advertisement", False),
    # 9.2 Device pipe management
    _s("CreatePipeRequest", "9.2", RQ, UC, SOAP, "IGRS-CreatePipe-Request", False, "CreatePipeResponse"),
    _s("CreatePipeResponse", "9.2", RS, UC, SOAP, "IGRS-CreatePipe-Response", False),
    _s("AuthenticateRequest", "9.2", RQ, UC, SOAP, "IGRS-Authenticate-Request", False, "AuthenticateResponse"),
    _s("AuthenticateResponse", "9.2", RS, UC, SOAP, "IGRS-Authenticate-Response", False),
    _s("AuthenticateResultRequest", "9.2", RQ, UC, SOAP, "IGRS-AuthenticateResult-Request", False,
       "AuthenticateResultResponse"),
    _s("AuthenticateResultResponse", "9.2", RS, UC, SOAP, "IGRS-AuthenticateResult-Response", False),
    _s("CreatePipeResultRequest", "9.2", RQ, UC, SOAP, "IGRS-CreatePipeResult-Request", False,
       "CreatePipeResultResponse"),
    _s("CreatePipeResultResponse", "9.2", RS, UC, SOAP, "IGRS-CreatePipeResult-Response", False),
    _s("DetachPipeNotify", "9.2", N, UC, SOAP, "IGRS-DetachPipe-Notify", False),
    _s("DeviceOnlineDetectionRequest", "9.2", RQ, UC, SOAP, "IGRS-DeviceOnlineDetection-Request", False,
       "DeviceOnlineDetectionResponse"),
    _s("DeviceOnlineDetectionResponse", "9.2", RS, UC, SOAP, "IGRS-DeviceOnlineDetection-Response", False),
    # 9.3 / 9.4 Device description retrieval (9.4: over a non-secure pipe, same messages)
    _s("GetDeviceDescriptionRequest", "9.3", RQ, UC, SOAP, "IGRS-GetDeviceDescription-Request", True,
       "GetDeviceDescriptionResponse"),
    _s("GetDeviceDescriptionResponse", "9.3", RS, UC, SOAP, "IGRS-GetDeviceDescription-Response", True),
    # 9.5 Device group set-up
    _s("PeerDeviceGroupAdvertisement", "9.5", A, MC, ISDP, "IGRS-PeerDeviceGroup-Advertisement", True),
    _s("QuitPeerDeviceGroupNotify", "9.5", N, MC, ISDP, "IGRS-QuitPeerDeviceGroup-Notify", False),
    _s("CentralisedDeviceGroupAdvertisement", "9.5", A, MC, ISDP,
       "IGRS-CentralisedDeviceGroup-Advertisement", True),
    _s("JoinCentralisedDeviceGroupRequest", "9.5", RQ, UC, SOAP, "IGRS-JoinCentralisedDeviceGroup-Request",
       False, "JoinCentralisedDeviceGroupResponse"),
    _s("JoinCentralisedDeviceGroupResponse", "9.5", RS, UC, SOAP,
       "IGRS-JoinCentralisedDeviceGroup-Response", False),
    _s("QuitCentralisedDeviceGroupAdvertisement", "9.5", A, MC, ISDP,
       "IGRS-QuitCentralisedDeviceGroup-Advertisement", False),
    _s("QuitCentralisedDeviceGroupNotify", "9.5", N, UC, SOAP, "IGRS-QuitCentralisedDeviceGroup-Notify", False),
    # 9.6 Device search
    _s("SearchDeviceRequest", "9.6", RQ, MC, ISDP, "IGRS-SearchDevice-Request", False, "SearchDeviceResponse"),
    _s("SearchDeviceResponse", "9.6", RS, UC, ISDP, "IGRS-SearchDevice-Response", True),
    _s("SearchDeviceRequestOnDevice", "9.6", RQ, UC, SOAP, "IGRS-SearchDevice-Request-OnDevice", True,
       "SearchDeviceResponseOnDevice"),
    _s("SearchDeviceResponseOnDevice", "9.6", RS, UC, SOAP, "IGRS-SearchDevice-Response-OnDevice", True),
    # 9.7 Device online/offline event subscription
    _s("SubscribeDeviceEventRequest", "9.7", RQ, UC, SOAP, "IGRS-SubscribeDeviceEvent-Request", True,
       "SubscribeDeviceEventResponse"),
    _s("RenewSubscriptionDeviceEventRequest", "9.7", RQ, UC, SOAP,
       "IGRS-RenewSubscriptionDeviceEvent-Request", True, "SubscribeDeviceEventResponse"),
    _s("SubscribeDeviceEventResponse", "9.7", RS, UC, SOAP, "IGRS-SubscribeDeviceEvent-Response", True),
    _s("UnSubscribeDeviceEventNotify", "9.7", N, UC, SOAP, "IGRS-UnSubscribeDeviceEvent-Notify", True),
    _s("NotifyDeviceEvent", "9.7", N, UC, SOAP, "IGRS-DeviceEvent-Notify", True),
    # 9.8 Device group search
    _s("SearchDeviceGroupRequest", "9.8", RQ, MC, ISDP, "IGRS-SearchDeviceGroup-Request", False,
       "SearchDeviceGroupResponse"),
    _s("SearchDeviceGroupResponse", "9.8", RS, UC, ISDP, "IGRS-SearchDeviceGroup-Response", True),
    # 10.1 Service online/offline advertisement
    _s("ServiceOnlineAdvertisement", "10.1", A, MC, ISDP, "IGRS-ServiceOnline-Advertisement", False),
    _s("ServiceOfflineAdvertisement", "10.1", A, MC, ISDP, "IGRS-ServiceOffline-Advertisement", False),
    _s("RegisterServiceNotify", "10.1", N, UC, SOAP, "IGRS-RegisterService-Notify", True),
    _s("UnRegisterServiceNotify", "10.1", N, UC, SOAP, "IGRS-UnRegisterService-Notify", True),
    # 10.2 Service search
    _s("SearchServiceRequest", "10.2", RQ, MC, ISDP, "IGRS-SearchService-Request", False,
       "SearchServiceResponse"),
    _s("SearchServiceResponse", "10.2", RS, UC, ISDP, "IGRS-SearchService-Response", True),
    _s("SearchServiceRequestOnDevice", "10.2", RQ, UC, SOAP, "IGRS-SearchService-Request-OnDevice", True,
       "SearchServiceResponseOnDevice"),
    _s("SearchServiceResponseOnDevice", "10.2", RS, UC, SOAP, "IGRS-SearchService-Response-OnDevice", True),
    # 10.3 Service online/offline event subscription
    _s("SubscribeServiceEventRequest", "10.3", RQ, UC, SOAP, "IGRS-SubscribeServiceEvent-Request", True,
       "SubscribeServiceEventResponse"),
    _s("RenewSubscriptionServiceEventRequest", "10.3", RQ, UC, SOAP,
       "IGRS-RenewSubscriptionServiceEvent-Request", True, "SubscribeServiceEventResponse"),
    _s("SubscribeServiceEventResponse", "10.3", RS, UC, SOAP, "IGRS-SubscribeServiceEvent-Response", True),
    # ezbox reuses "UnSubscribeDeviceEventNotify" here (sic); we name it for the service.
    _s("UnSubscribeServiceEventNotify", "10.3", N, UC, SOAP, "IGRS-UnSubscribeServiceEvent-Notify", False),
    _s("NotifyServiceEvent", "10.3", N, UC, SOAP, "IGRS-ServiceEvent-Notify", True),
    # 10.4 Service description retrieval
    _s("GetServiceDescriptionRequest", "10.4", RQ, UC, SOAP, "IGRS-GetServiceDescription-Request", True,
       "GetServiceDescriptionResponse"),
    _s("GetServiceDescriptionResponse", "10.4", RS, UC, SOAP, "IGRS-GetServiceDescription-Response", True),
    # 10.5 Session
    _s("CreateSessionRequest", "10.5", RQ, UC, SOAP, "IGRS-CreateSession-Request", True,
       "CreateSessionResponse"),
    _s("CreateSessionResponse", "10.5", RS, UC, SOAP, "IGRS-CreateSession-Response", True),
    _s("DestroySessionNotify", "10.5", N, UC, SOAP, "IGRS-DestroySession-Notify", True),
    _s("ApplySessionKeyRequest", "10.5", RQ, UC, SOAP, "IGRS-ApplySessionKey-Request", True,
       "ApplySessionKeyResponse"),
    _s("ApplySessionKeyResponse", "10.5", RS, UC, SOAP, "IGRS-ApplySessionKey-Response", True),
    _s("TransferSessionKeyRequest", "10.5", RQ, UC, SOAP, "IGRS-TransferSessionKey-Request", True,
       "TransferSessionKeyResponse"),
    _s("TransferSessionKeyResponse", "10.5", RS, UC, SOAP, "IGRS-TransferSessionKey-Response", True),
    # 10.6 Service invocation
    _s("InvokeServiceRequest", "10.6", RQ, UC, SOAP, "IGRS-InvokeService-Request", True,
       "InvokeServiceResponse"),
    _s("InvokeServiceResponse", "10.6", RS, UC, SOAP, "IGRS-InvokeService-Response", True),
    _s("SendNotification", "10.6", N, UC, SOAP, "IGRS-Send-Notification", True),
)

CATALOGUE: dict[str, MessageSpec] = {spec.name: spec for spec in _SPECS}

# Project extensions (not in 14543-5-1): PIN pairing, for which no message is public.
# Clause "ext"; listed in specs/messages.md §1.1 and specs/pipes.md.
_EXTENSIONS: tuple[MessageSpec, ...] = (
    _s("PairingModeRequest", "ext", RQ, UC, SOAP, "IGRS-X-PairingMode-Request", False, "PairingModeResponse"),
    _s("PairingModeResponse", "ext", RS, UC, SOAP, "IGRS-X-PairingMode-Response", False),
    _s("PairingStartRequest", "ext", RQ, UC, SOAP, "IGRS-X-PairingStart-Request", False,
       "PairingStartResponse"),
    _s("PairingStartResponse", "ext", RS, UC, SOAP, "IGRS-X-PairingStart-Response", False),
    _s("PairingConfirmRequest", "ext", RQ, UC, SOAP, "IGRS-X-PairingConfirm-Request", False,
       "PairingConfirmResponse"),
    _s("PairingConfirmResponse", "ext", RS, UC, SOAP, "IGRS-X-PairingConfirm-Response", False),
)
EXTENSIONS: dict[str, MessageSpec] = {spec.name: spec for spec in _EXTENSIONS}
BY_SOAP_ACTION: dict[str, MessageSpec] = {spec.soap_action: spec for spec in (*_SPECS, *_EXTENSIONS)}
# Other spellings accepted on input (none yet; ezbox reused the 9.7 name for 10.3).
ALIASES: dict[str, str] = {}


def spec_for(name: str) -> MessageSpec | None:
    name = ALIASES.get(name, name)
    return CATALOGUE.get(name) or EXTENSIONS.get(name)
