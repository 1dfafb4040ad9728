"""Every value and limit of the UPnP AV / DLNA bridge, each described in specs/upnp-bridge.md
with its provenance."""

from __future__ import annotations

from typing import Final

# --- SSDP (public source: UPnP Device Architecture 1.0/1.1 §1) -------------------------------------
SSDP_GROUP: Final = "239.255.255.250"
SSDP_PORT: Final = 1900
SSDP_TTL: Final = 2  # public source: UDA 1.1 §1 (async-upnp-client sets it)
SSDP_MAX_AGE: Final = 1800  # s, CACHE-CONTROL max-age (public source: UDA's recommended minimum)
SSDP_SERVER: Final = "Linux/1 UPnP/1.0 igrs-upnp-bridge/0.1"  # project choice, UDA's OS/ver UPnP/1.0 p/ver
SSDP_SEARCH_RATE: Final = 5.0  # M-SEARCHes answered per s per source address (project choice)
SSDP_SEARCH_BURST: Final = 20.0  # ... with this burst (project choice)
SSDP_MAX_SOURCES: Final = 1024  # sources the rate limiter tracks (project choice)

# --- description and hosting (public source: UDA 1.0 §2, DLNA guidelines 7.2.10) -------------------
UPNP_PREFIX: Final = "/upnp/"  # project choice: mounted on the device's own HTTP port
DLNA_DOC_NS: Final = "urn:schemas-dlna-org:device-1-0"
DMS_DLNADOC: Final = "DMS-1.50"
DMR_DLNADOC: Final = "DMR-1.50"
MANUFACTURER: Final = "igrs-python"
MODEL_NAME: Final = "igrs UPnP bridge"
MODEL_URL: Final = "https://github.com/igrs-python/igrs"  # project choice
UDN_NAMESPACE: Final = "4f9d0c7e-8a61-5b2e-9c34-1d5e8f0a7b21"  # project choice: uuid5 namespace of UDNs

# --- eventing (public source: UDA 1.0 §4 GENA; AVTransport:1 §2.2.1 LastChange 0.2 s) --------------
LASTCHANGE_INTERVAL: Final = 0.2  # s, minimum between two LastChange events (max-rate)
SUBSCRIPTION_TIMEOUT_MAX: Final = 1800  # s granted at most (project choice; TIMEOUT may ask more)
SUBSCRIPTION_TIMEOUT_MIN: Final = 60  # s granted at least (project choice)
MAX_SUBSCRIPTIONS: Final = 64  # per UPnP service (project choice; 503 beyond)
MAX_SUBSCRIPTIONS_PER_PEER: Final = 8  # per UPnP service and source address (project choice)
NOTIFY_TIMEOUT: Final = 5.0  # s for one event delivery (project choice)

# --- control (project choice) ----------------------------------------------------------------------
MAX_SOAP_BODY: Final = 64 * 1024  # bytes of a control request (413 beyond)
MAX_PROTOCOL_INFOS: Final = 64  # entries of Source/SinkProtocolInfo
MAX_KEPT_METADATA: Final = 16  # DIDL documents remembered for the URIs control points set
INTERFACE_CHECK: Final = 5.0  # s between checks of an exposed device's interfaces (as its own watch)

# --- import side: DLNA devices seen as IGRS devices (project choice) -------------------------------
IMPORT_SEARCH_INTERVAL: Final = 30.0  # s between M-SEARCHes for DLNA servers and renderers
IMPORT_SEARCH_MX: Final = 2  # s, MX of those searches
IMPORT_MISSES: Final = 3  # searches a device may miss before its virtual device goes
MAX_IMPORTED: Final = 32  # DLNA devices represented at once
UPNP_HTTP_TIMEOUT: Final = 10  # s for one request to a DLNA device
MAX_UPNP_BODY: Final = 2 * 1024 * 1024  # bytes of one answer from a DLNA device
POLL_INTERVAL: Final = 1.0  # s between GetTransportInfo/GetPositionInfo polls of a renderer
POLL_INTERVAL_UNEVENTED: Final = 0.5  # s, the same for a renderer that refused to subscribe
END_GRACE: Final = 5.0  # s after Play a renderer that never showed PLAYING may show STOPPED before that ends it
