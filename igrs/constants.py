"""Every protocol constant in one place (mirrored in specs/; provenance noted per value).

When the official ISO/IEC 14543-5 text becomes available a conformance fix is a change here.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

# --- transport (public source: IANA port 3880 tcp/udp "igrs"; group 224.0.0.110 "IGRS") ---
IGRS_PORT: Final = 3880
IPV4_GROUP: Final = "224.0.0.110"  # public source: IANA multicast registry
IPV4_GROUP_ALT: Final = "239.255.255.250"  # public source: ezbox libezcfg (accepted on input)
IPV6_GROUP: Final = "ff02::c"  # public source: ezbox libezcfg (link-local scope)
MULTICAST_TTL: Final = 2  # project choice: as UPnP UDA; groups are link-local anyway

# --- framing (public source: ezbox ezcfg-igrs.h, RFC 2774) ---
IGRS_VERSION: Final = "IGRS/1.0"
IGRS_EXT_URI: Final = "http://www.igrs.org/spec1.0"
IGRS_EXT_URI_ALT: Final = "http://www.igrs.org/session"  # public source: ezbox 2010 (accepted)
IGRS_PATH: Final = "/IGRS"
DESCRIPTION_PATH: Final = "/IGRS/description.xml"  # project choice: plain GET of the same doc

# --- XML namespaces ---
SOAP12_NS: Final = "http://www.w3.org/2003/05/soap-envelope"  # project choice (emitted)
SOAP12_DRAFT_NS: Final = "http://www.w3.org/2002/12/soap-envelope"  # public source: ezbox
SOAP11_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"  # accepted on input
SOAP_NAMESPACES: Final = (SOAP12_NS, SOAP12_DRAFT_NS, SOAP11_NS)
# public source: ezbox (EZ-CS) puts it on its Envelope; ignored on input, emitted only by the
# conformance cases that speak ezbox's exact framing (SES-007, SES-008)
SOAP_ENCODING_STYLE: Final = "http://schemas.xmlsoap.org/soap/encoding/"
IGRS_NS: Final = "http://www.igrs.org/spec1.0"  # public source: ezbox message bodies
SESSION_ELEMENT: Final = "Session"  # public source: ezbox (EZ-CS, EZ-IS): body element of 10.5/10.6
DEVICE_TEMPLATE_NS: Final = "http://www.igrs.org/igrs/DeviceTemplate"  # public source: ezbox
SERVICE_DESCRIPTION_NS: Final = "http://www.igrs.org/igrs/ServiceDescription"

# --- ISDP values (project choice: SSDP-shaped, "isdp:" tokens from ezbox comments) ---
NTS_ALIVE: Final = "isdp:alive"
NTS_BYEBYE: Final = "isdp:byebye"
NTS_UPDATE: Final = "isdp:update"
MAN_DISCOVER: Final = '"isdp:discover"'
MAN_DISCOVER_ACCEPTED: Final = ("isdp:discover", "ssdp:discover")
ST_ALL: Final = "isdp:all"
ST_ALL_ACCEPTED: Final = ("isdp:all", "ssdp:all")
SERVER_PRODUCT: Final = "igrs-python/0.1"

# --- timers (project choice; public record silent) ---
DEFAULT_MAX_AGE: Final = 1800  # s, CACHE-CONTROL max-age
MIN_MAX_AGE: Final = 2  # s, smallest accepted (tests shorten max-age)
MAX_MAX_AGE: Final = 86400  # s, larger values are clamped
STARTUP_COPIES: Final = 2  # each announcement sent twice at start-up against loss
COPY_SPACING: Final = 0.1  # s between the copies
REANNOUNCE_FRACTION: Final = 0.5  # re-announce before max-age * this ...
REANNOUNCE_JITTER: Final = 0.1  # ... minus up to this fraction of max-age at random
DEFAULT_MX: Final = 2  # s
MAX_MX: Final = 5  # s, MX above is clamped
SEARCH_RETRIES: Final = 2  # a control point's search sends the M-SEARCH this many times
DESCRIBE_DEADLINE: Final = 5.0  # s a listing waits for one device's description
DESCRIBE_CONCURRENCY: Final = 16  # descriptions a listing fetches at once
LOCATION_CHECK_TIMEOUT: Final = 0.5  # s a remembered location has to confirm its device
LOCATION_CACHE_TTL: Final = 600  # s a located device's location is remembered (at most its max-age)
LOCATION_CACHE_ENTRIES: Final = 32  # locations remembered; the oldest are forgotten first

# --- limits (project choice: anti-DoS caps) ---
MAX_DATAGRAM: Final = 4096  # bytes; larger ISDP datagrams are dropped
ISDP_RECV_BUFFER: Final = 1024 * 1024  # bytes of receive buffer asked for each ISDP socket
MAX_HEADER_LINE: Final = 1024  # bytes per header line
MAX_HEADERS: Final = 48  # header lines per message
MAX_HTTP_BODY: Final = 256 * 1024  # bytes of an M-POST body
MAX_XML_DEPTH: Final = 48
MAX_XML_ELEMENTS: Final = 20_000
MAX_ID_LENGTH: Final = 256
MAX_NAME_LENGTH: Final = 128  # characters of a device or service name
MAX_REASON: Final = 256  # characters of a Reason text in a response
MAX_URL_LENGTH: Final = 512
REGISTRY_MAX_DEVICES: Final = 4096  # remote devices remembered by a control point
SOURCE_RATE: Final = 50.0  # datagrams/s accepted from one source address ...
SOURCE_BURST: Final = 200.0  # ... with this burst
MAX_TRACKED_SOURCES: Final = 1024  # rate-limiter state entries (oldest evicted)
RESPONDER_RATE: Final = 5.0  # search responses/s sent to one requester ...
RESPONDER_BURST: Final = 10.0  # ... with this burst
MAX_RESPONSE_BYTES_PER_REQUEST: Final = 2048  # bytes answered to one search, all datagrams
SEARCH_AMPLIFICATION: Final = 4  # ... and at most this many times the search's own size
MAX_PENDING_RESPONSES: Final = 256  # delayed search responses queued at once
REPOINT_MAX_CANDIDATES: Final = 4  # unproven other addresses kept beside a known device's own
REPOINT_PROBE_INTERVAL: Final = 30.0  # s between probes of a known device's LOCATION
REPOINT_PROBE_TIMEOUT: Final = 5.0  # s a probe of a known device's LOCATION may take

# --- the device's HTTP server (project choice; specs/transport.md, specs/timers-and-limits.md) ---
HTTP_MAX_LINE: Final = 8190  # bytes of a request line or one header line
HTTP_MAX_HEADER_FIELDS: Final = 64  # header lines of one request
HTTP_MAX_HEAD: Final = 65536  # bytes of a request line plus headers
HTTP_MAX_CONNECTIONS: Final = 256  # open TCP connections (more are answered 503 and closed)
HTTP_MAX_CONNECTIONS_PER_ADDRESS: Final = 32  # open TCP connections from one source address
HTTP_MAX_REFUSING: Final = 64  # refused connections kept open at once so that their 503 arrives
HTTP_MAX_PIPELINE: Final = 16  # requests read ahead on one connection before the answers are written
HTTP_HEADER_TIMEOUT: Final = 10.0  # s from a request's first byte to the end of its headers
HTTP_BODY_TIMEOUT: Final = 30.0  # s from the end of the headers to the end of the body
HTTP_IDLE_TIMEOUT: Final = 75.0  # s a kept-alive connection may stay idle between requests
HTTP_SEND_TIMEOUT: Final = 60.0  # s an answer may make no progress (the peer stopped reading)
HTTP_LINGER_TIME: Final = 2.0  # s input is still read (and dropped) after an error answer
HTTP_MALFORMED_LOG_INTERVAL: Final = 60.0  # s: one log line per peer for malformed requests
HTTP_ACCEPT_RETRY_DELAY: Final = 1.0  # s a TLS port waits when accept fails for want of descriptors
HTTP_HANDOFF_BUFFER: Final = 256 * 1024  # bytes of a handed-off request body buffered (pauses at 2x)


# --- pipes and pairing (clause 9.2; project choices, specs/pipes.md) ---
MAX_HANDSHAKE_DATA: Final = 4096  # bytes of one decoded HandshakeData
MAX_PIPES: Final = 256  # established pipes a device keeps (all peers)
MAX_PIPES_PER_PEER: Final = 8  # established pipes per peer device
MAX_PENDING_HANDSHAKES: Final = 32  # half-open pipe handshakes
MAX_PENDING_HANDSHAKES_PER_ADDRESS: Final = 4  # ... started from one source address
MAX_PENDING_HANDSHAKES_PER_PEER: Final = 8  # ... claiming one device id
HANDSHAKE_TIMEOUT: Final = 10.0  # s a half-open handshake may take
KEEPALIVE_INTERVAL: Final = 15.0  # s between DeviceOnlineDetectionRequests on an idle pipe
KEEPALIVE_MISSES: Final = 3  # unanswered keep-alives before the peer is declared gone
PIPE_IDLE_TIMEOUT: Final = 60.0  # s without traffic after which a device drops a pipe


class ReturnCode(IntEnum):
    """IGRS ReturnCode values (public source: 200; the rest project choice, HTTP-like)."""

    SUCCESS = 200
    BAD_MESSAGE = 400
    NOT_AUTHENTICATED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404
    CONFLICT = 409
    PRECONDITION_FAILED = 412
    PAYLOAD_TOO_LARGE = 413
    TOO_MANY_REQUESTS = 429
    INTERNAL_ERROR = 500
    NOT_IMPLEMENTED = 501
    BUSY = 503
    VERSION_NOT_SUPPORTED = 505

# --- device groups (clauses 9.5, 9.8) ---
# Values: project choice (public record silent, facts §12.8); commentary in specs/groups.md.
GROUP_ST_ALL: Final = "urn:IGRS:DeviceGroup:all"  # ST of a search for every group
GROUP_MAX_MEMBERS: Final = 64  # members in one group's table (master table, peer view, registry)
GROUP_MAX_LOCAL: Final = 32  # groups one device creates or joins (= joinedGroupList cap)
GROUP_REGISTRY_MAX: Final = 1024  # remote groups a searcher remembers
GROUP_LEASE: Final = 1800  # s, membership lease a master grants; slaves renew at half of it
GROUP_JOIN_TIMEOUT: Final = 10.0  # s to wait for a JoinCentralisedDeviceGroupResponse
GROUP_RETRY_DELAY: Final = 30.0  # s before a failed lease renewal is tried again
GROUP_REJOIN_WINDOW: Final = 300.0  # s a slave waits for a lost master to come back

# --- services, sessions and events (clauses 9.7, 10.x) ---
# Values: project choice (public record silent, facts §8/§12.2) unless noted; commentary in
# specs/sessions.md, specs/services.md and specs/events.md.
MAX_USER_ID_LENGTH: Final = 127  # public source: EZ-H (SourceUserId <= 127 characters)
MAX_TOKEN_LENGTH: Final = 4096  # characters of a UserInfo Token
MAX_SESSIONS_PER_PEER: Final = 64  # open sessions one peer device may hold on this device
MAX_SESSIONS: Final = 1024  # open sessions on this device in total
SEQUENCE_WINDOW: Final = 1024  # recent SequenceIds remembered per session (duplicates -> 409)
MAX_OPEN_SESSIONS_PER_ADDRESS: Final = 16  # open sessions (no pipe, a service shared openly) per source address
MAX_OPEN_SESSIONS: Final = 256  # open sessions in total (the rest of MAX_SESSIONS stays for paired peers)
OPEN_SESSION_IDLE_TIMEOUT: Final = 300.0  # s an open session may stay unused before it ends
MAX_ARGUMENTS: Final = 64  # arguments of one invocation / attributes of one notification
MAX_VALUE_DEPTH: Final = 4  # nesting of list/dict values
MAX_VALUE_ITEMS: Final = 4096  # items in all lists/dicts of one value
MAX_STRING_VALUE: Final = 65536  # characters of one string (or base64 text) value
MAX_SERVICES: Final = 64  # services one ServiceHost holds
DEFAULT_SUBSCRIPTION: Final = 1800  # s, subscription lifetime when none is asked for
MIN_SUBSCRIPTION: Final = 5  # s, shorter requests are raised to this
MAX_SUBSCRIPTION: Final = 86400  # s, longer requests are clamped
MAX_SUBSCRIPTIONS_PER_SUBSCRIBER: Final = 32  # live subscriptions of one subscriber device
MAX_SUBSCRIPTIONS: Final = 512  # live subscriptions on this device in total
MAX_CALLBACK_URL: Final = 256  # characters of an event callback location (CallStranger rule)
EVENT_QUEUE_LIMIT: Final = 1024  # queued changes per subscription before coalescing
EVENT_BATCH_MAX: Final = 256  # changes carried by one notification
NOTIFY_TIMEOUT: Final = 10.0  # s for one notification delivery
NOTIFY_MAX_FAILURES: Final = 3  # consecutive failed deliveries end a subscription
NOTIFY_RETRY_DELAY: Final = 1.0  # s before a failed delivery is retried (doubles each time)
SLOW_SUBSCRIBER_GRACE: Final = 60.0  # s a subscription may stay coalesced before it is ended
RECENTLY_ENDED: Final = 1024  # ended subscription ids remembered (renew -> 412, not 404)
AGENT_EVENT_QUEUE: Final = 1024  # changes buffered per subscription iterator on the client
EVENT_READER_LIMIT: Final = 1024  # events queued per application events() reader (oldest dropped)

# --- file profile (14543-5-22) ---
# Values: project choice (public record silent, facts §6); commentary in specs/file-profile.md.
# Return codes beyond ReturnCode (receivers treat unknown codes by their first digit):
FILE_PATH_REFUSED: Final = 422  # hostile/malformed path or a symlink escape (RFC 4918 422)
FILE_CHECKSUM_MISMATCH: Final = 460  # upload's SHA-256 differs (tus checksum extension 460)
FILE_QUOTA_EXCEEDED: Final = 507  # share quota or disk space exceeded (RFC 4918 507)
FILE_RANGE_NOT_SATISFIABLE: Final = 416  # HTTP status of a GET range beyond the file (RFC 9110)
# Limits and timers:
FILE_MAX_PATH: Final = 4096  # bytes of a virtual path (Linux PATH_MAX)
FILE_MAX_COMPONENT: Final = 255  # bytes of one path component (NAME_MAX)
FILE_BROWSE_LIMIT: Final = 250  # entries per browse page at most (fits MAX_HTTP_BODY)
FILE_BROWSE_BYTES: Final = 96 * 1024  # estimated body bytes per browse page at most
FILE_MAX_UPLOAD: Final = 1 << 40  # bytes of one upload unless the server sets less (413 above)
FILE_TOKEN_LIFETIME: Final = 300.0  # s a transfer capability URL may be first used / resumed
FILE_MAX_TOKENS: Final = 1024  # live capability URLs per server (oldest dropped)
FILE_MAX_UPLOADS_PER_PEER: Final = 16  # partial uploads one peer may keep per share
FILE_PARTIAL_LIFETIME: Final = 7 * 86400  # s an untouched partial upload is kept for resumption
FILE_HTTP_PREFIX: Final = "/files/"  # the mounted transfer prefix on the device's HTTP port
FILE_WRITE_BATCH: Final = 1 << 20  # bytes a transfer hands its writer thread at once (one more may fill)
FILE_IO_THREADS: Final = 4  # worker threads writing and hashing the bytes of transfers
FILE_STALL_TIMEOUT: Final = 60.0  # s a client transfer may move no byte (or wait for its answer)
TLS_CLIENT_CONTEXTS: Final = 64  # client TLS contexts one identity keeps (one per pinned peer key)
