"""An igrs MediaServer as a UPnP ``MediaServer:1`` (ContentDirectory:1 + ConnectionManager:1),
specs/upnp-bridge.md §3.1. Browse/Search answer with the igrs server's own DIDL-Lite (already
DLNA-correct: protocolInfo 4th field, res attributes) and its ``/av/`` URLs, so media bytes go
straight from the igrs HTTP server to the renderer."""

# No ``from __future__ import annotations`` (async-upnp-client checks the annotations).

import xml.etree.ElementTree as ET

from async_upnp_client.const import DeviceInfo, ServiceInfo
from async_upnp_client.server import UpnpServerDevice, callable_action, create_event_var, create_state_var

from igrs.bridges.upnp import errors
from igrs.bridges.upnp.connection_manager import ServerConnectionManager
from igrs.bridges.upnp.constants import UPNP_PREFIX
from igrs.bridges.upnp.hosting import BridgeService
from igrs.profiles.av.content import SEARCH_PROPERTIES, SORT_PROPERTIES, ContentError, parse_search, parse_sort
from igrs.profiles.av.server import MediaServer

MEDIA_SERVER_TYPE = "urn:schemas-upnp-org:device:MediaServer:1"
CDS_TYPE = "urn:schemas-upnp-org:service:ContentDirectory:1"
BASE = f"{UPNP_PREFIX}server"


class ContentDirectory(BridgeService):
    """ContentDirectory:1 over an igrs MediaServer (``bind``). Filter is ignored (every
    property is returned, as CDS:1 allows)."""

    SERVICE_DEFINITION = ServiceInfo(
        "urn:upnp-org:serviceId:ContentDirectory", CDS_TYPE, f"{BASE}/ContentDirectory/control",
        f"{BASE}/ContentDirectory/event", f"{BASE}/ContentDirectory/scpd.xml", ET.Element("server_service"))
    STATE_VARIABLE_DEFINITIONS = {
        "SystemUpdateID": create_event_var("ui4", default="0"),
        "SearchCapabilities": create_state_var("string"),
        "SortCapabilities": create_state_var("string"),
        "A_ARG_TYPE_ObjectID": create_state_var("string"),
        "A_ARG_TYPE_Result": create_state_var("string"),
        "A_ARG_TYPE_SearchCriteria": create_state_var("string"),
        "A_ARG_TYPE_BrowseFlag": create_state_var("string", allowed=["BrowseMetadata", "BrowseDirectChildren"]),
        "A_ARG_TYPE_Filter": create_state_var("string"),
        "A_ARG_TYPE_SortCriteria": create_state_var("string"),
        "A_ARG_TYPE_Index": create_state_var("ui4"),
        "A_ARG_TYPE_Count": create_state_var("ui4"),
        "A_ARG_TYPE_UpdateID": create_state_var("ui4"),
    }
    server: MediaServer

    def bind(self, server: MediaServer) -> None:
        self.server = server
        self.state_variable("SearchCapabilities").value = ",".join(SEARCH_PROPERTIES)
        self.state_variable("SortCapabilities").value = ",".join(SORT_PROPERTIES)
        self.update()

    def update(self) -> None:
        """Follow the igrs server's SystemUpdateID (evented)."""
        self.state_variable("SystemUpdateID").value = int(self.server.SystemUpdateID) & 0xFFFFFFFF

    @callable_action(name="GetSearchCapabilities", in_args={}, out_args={"SearchCaps": "SearchCapabilities"})
    async def get_search_capabilities(self) -> dict[str, object]:
        return {"SearchCaps": self.state_variable("SearchCapabilities")}

    @callable_action(name="GetSortCapabilities", in_args={}, out_args={"SortCaps": "SortCapabilities"})
    async def get_sort_capabilities(self) -> dict[str, object]:
        return {"SortCaps": self.state_variable("SortCapabilities")}

    @callable_action(name="GetSystemUpdateID", in_args={}, out_args={"Id": "SystemUpdateID"})
    async def get_system_update_id(self) -> dict[str, object]:
        return {"Id": self.state_variable("SystemUpdateID")}

    @callable_action(
        name="Browse",
        in_args={"ObjectID": "A_ARG_TYPE_ObjectID", "BrowseFlag": "A_ARG_TYPE_BrowseFlag",
                 "Filter": "A_ARG_TYPE_Filter", "StartingIndex": "A_ARG_TYPE_Index",
                 "RequestedCount": "A_ARG_TYPE_Count", "SortCriteria": "A_ARG_TYPE_SortCriteria"},
        out_args={"Result": "A_ARG_TYPE_Result", "NumberReturned": "A_ARG_TYPE_Count",
                  "TotalMatches": "A_ARG_TYPE_Count", "UpdateID": "A_ARG_TYPE_UpdateID"},
    )
    async def browse(self, ObjectID: str, BrowseFlag: str, Filter: str, StartingIndex: int,
                     RequestedCount: int, SortCriteria: str) -> dict[str, object]:
        self._check(ObjectID, container=BrowseFlag == "BrowseDirectChildren", sort=SortCriteria)
        return await self._answer(self.server.Browse(ObjectID, BrowseFlag, StartingIndex, RequestedCount,
                                                     SortCriteria))

    @callable_action(
        name="Search",
        in_args={"ContainerID": "A_ARG_TYPE_ObjectID", "SearchCriteria": "A_ARG_TYPE_SearchCriteria",
                 "Filter": "A_ARG_TYPE_Filter", "StartingIndex": "A_ARG_TYPE_Index",
                 "RequestedCount": "A_ARG_TYPE_Count", "SortCriteria": "A_ARG_TYPE_SortCriteria"},
        out_args={"Result": "A_ARG_TYPE_Result", "NumberReturned": "A_ARG_TYPE_Count",
                  "TotalMatches": "A_ARG_TYPE_Count", "UpdateID": "A_ARG_TYPE_UpdateID"},
    )
    async def search(self, ContainerID: str, SearchCriteria: str, Filter: str, StartingIndex: int,
                     RequestedCount: int, SortCriteria: str) -> dict[str, object]:
        self._check(ContainerID, container=True, sort=SortCriteria)
        try:
            parse_search(SearchCriteria or "*")
        except ContentError as exc:
            raise errors.fault(errors.BAD_SEARCH_CRITERIA, exc.reason) from None
        return await self._answer(self.server.Search(ContainerID, SearchCriteria or "*", StartingIndex,
                                                     RequestedCount, SortCriteria))

    def _check(self, object_id: str, *, container: bool, sort: str) -> None:
        """The UPnP error codes the igrs server's 404/400 stand for, checked first."""
        obj = self.server.directory.objects.get(object_id)
        if obj is None:
            raise errors.fault(errors.NO_SUCH_OBJECT, "no such object")
        if container and not obj.is_container:
            raise errors.fault(errors.NO_SUCH_CONTAINER, "not a container")
        try:
            parse_sort(sort)
        except ContentError as exc:
            raise errors.fault(errors.BAD_SORT_CRITERIA, exc.reason) from None

    @staticmethod
    async def _answer(call: object) -> dict[str, object]:
        try:
            raw = await call  # type: ignore[misc]
        except ContentError as exc:
            raise errors.fault(errors.CANNOT_PROCESS, exc.reason) from None
        return {"Result": raw["Result"], "NumberReturned": int(raw["NumberReturned"]),
                "TotalMatches": int(raw["TotalMatches"]), "UpdateID": int(raw["UpdateID"]) & 0xFFFFFFFF}


def media_server_device(info: DeviceInfo) -> type[UpnpServerDevice]:
    """The UPnP root device class of one exposed media server (``info``: its identity)."""
    return type("ExposedMediaServer", (UpnpServerDevice,), {
        "DEVICE_DEFINITION": info._replace(device_type=MEDIA_SERVER_TYPE, url=f"{BASE}/description.xml"),
        "EMBEDDED_DEVICES": [], "SERVICES": [ContentDirectory, ServerConnectionManager]})


def source_protocols(server: MediaServer) -> list[str]:
    """The distinct protocolInfo values of the items (GetProtocolInfo's Source)."""
    seen: dict[str, None] = {}
    for obj in list(server.directory.objects.values()):
        if not obj.is_container and obj.info is not None:
            seen.setdefault(f"http-get:*:{obj.info.mime}:{server.features(obj)}", None)
    return list(seen)
