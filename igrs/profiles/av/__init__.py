"""AV profile (ISO/IEC 14543-5-21): media server, stream transport, media renderer, live
streams and recording, AV multicast device group, dynamic service invocation module.
specs/av-profile.md.

    server = await attach_media_server(pc, {"Videos": "/srv/videos"})
    tv = await attach_renderer(tv_device)
    await AvController(cp).play(pc.device_id, tv_device.device_id, item_id)
"""

from igrs.profiles.av.content import ContentDirectory, ContentError
from igrs.profiles.av.controller import AvController, BrowseResult, local_resolver
from igrs.profiles.av.didl import Entry, from_didl, to_didl
from igrs.profiles.av.fetch_policy import FetchPolicy, FetchRefused
from igrs.profiles.av.live import LiveSource
from igrs.profiles.av.multicast import (
    AV_MULTICAST_GROUP,
    AVMulticastGroup,
    MulticastReceiver,
    MulticastSender,
    attach_multicast_group,
)
from igrs.profiles.av.recorder import MEDIA_RECORDER, MediaRecorder, attach_recorder, record_stream
from igrs.profiles.av.renderer import (
    MEDIA_RENDERER,
    FfmpegOutput,
    MediaRenderer,
    OutputBackend,
    Track,
    VirtualOutput,
    attach_renderer,
)
from igrs.profiles.av.server import MEDIA_SERVER, MediaServer, attach_media_server

__all__ = [
    "AV_MULTICAST_GROUP",
    "MEDIA_RECORDER",
    "MEDIA_RENDERER",
    "MEDIA_SERVER",
    "AVMulticastGroup",
    "AvController",
    "BrowseResult",
    "ContentDirectory",
    "ContentError",
    "Entry",
    "FetchPolicy",
    "FetchRefused",
    "FfmpegOutput",
    "LiveSource",
    "MediaRecorder",
    "MediaRenderer",
    "MediaServer",
    "MulticastReceiver",
    "MulticastSender",
    "OutputBackend",
    "Track",
    "VirtualOutput",
    "attach_media_server",
    "attach_multicast_group",
    "attach_recorder",
    "attach_renderer",
    "from_didl",
    "local_resolver",
    "record_stream",
    "to_didl",
]
