"""XML namespaces of the XMPP binding, each with its provenance (specs/relay-xmpp.md, "Names").

Vendor names come from the only public trace of the deployed IGRS 2.0 platform: the IGRSLab
SDK header ``igrs_config.h`` (IGRSLab 2010; public-code index id 40012768791, ``IGRS_NS_*``
constants; see shared/reference/xmpp-binding.md §1). Their payload schemas are not public, so
the elements inside them are project choices. Names the vendor trace does not give are
project choices in ``urn:igrs:xmpp:...``.
"""

from __future__ import annotations

# --- vendor names (IGRSLab SDK igrs_config.h, IGRS_NS_*) --------------------------------------
SPEC2_BASIC = "http://www.igrs.org/spec2.0/basic"
DEVICE_BIND = SPEC2_BASIC + "#devicebind"  # IGRS_NS_BINDDEVICE: user binds a device (verify code)
USER_BIND = SPEC2_BASIC + "#userbind"  # the device side of a bind
UNBIND = SPEC2_BASIC + "#unbind"
QUERY_BIND = SPEC2_BASIC + "#querybind"  # which users a device is bound to
DEVICES_INFO = SPEC2_BASIC + "#devicesinfo"  # a user's bound devices
LINKED_DEVICES_INFO = SPEC2_BASIC + "#linkeddevicesinfo"  # device-device links
MOBILE_VERIFY_CODE = "http://www.igrs.org/spec2.0/mobile#verifycode"  # set/reset a device's code
AV_PLAYTO = "http://www.igrs.org/av/playto"
AV_CONTROL = "http://www.igrs.org/av/control"
AV_BROWSE = "http://www.igrs.org/av/browse"
# The vendor's generic extension payload namespace, spelled as in the SDK (sic "extenstion").
EXTENSION = "http://www.igrs.org/spec2.0/extenstion"

VENDOR = (
    DEVICE_BIND, USER_BIND, UNBIND, QUERY_BIND, DEVICES_INFO, LINKED_DEVICES_INFO,
    MOBILE_VERIFY_CODE, AV_PLAYTO, AV_CONTROL, AV_BROWSE, EXTENSION,
)

# --- project names ------------------------------------------------------------------------------
# Every IGRS message travels as <message><payload xmlns=PAYLOAD ns="<IGRS namespace>"
# class="realtime|normal">base64 body</payload></message>: one element to match, whatever the
# application namespace (the relay's MESSAGE namespace field, specs/relay.md).
PAYLOAD = "urn:igrs:xmpp:payload:0"
# Requests to the binding component or between parties that the vendor trace does not name.
REQUEST = "urn:igrs:xmpp:request:0"
# Node name prefix for online storage (relay item_put/get) in PEP.
ITEM_NODE_PREFIX = "urn:igrs:xmpp:item:0:"

# --- standard XMPP names used (XSF registry) ------------------------------------------------------
HINTS = "urn:xmpp:hints"  # XEP-0334: <no-store/>, <store/>
ADDRESS = "http://jabber.org/protocol/address"  # XEP-0033 extended addressing
STANZA_ID = "urn:xmpp:sid:0"  # XEP-0359 stanza-id (MAM de-duplication)
MAM = "urn:xmpp:mam:2"  # XEP-0313
DELAY = "urn:xmpp:delay"  # XEP-0203
RECEIPTS = "urn:xmpp:receipts"  # XEP-0184 message delivery receipts (send() -> "delivered")
