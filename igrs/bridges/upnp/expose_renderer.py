"""An igrs MediaRenderer as a UPnP ``MediaRenderer:1`` (AVTransport:1 + RenderingControl:1 +
ConnectionManager:1), specs/upnp-bridge.md §3.2. The UPnP actions drive the igrs renderer's
own transport state machine (one queue: SetAVTransportURI replaces it, SetNextAVTransportURI
sets the track after the current); its attribute changes become LastChange events. A URI a
control point sets follows the device's fetch policy for that control point's address."""

# No ``from __future__ import annotations`` (async-upnp-client checks the annotations).

import xml.etree.ElementTree as ET
from collections import OrderedDict

from async_upnp_client.const import DeviceInfo, ServiceInfo, StateVariableTypeInfo
from async_upnp_client.server import UpnpServerDevice, callable_action, create_event_var, create_state_var

from igrs.bridges.upnp import errors
from igrs.bridges.upnp.connection_manager import RendererConnectionManager
from igrs.bridges.upnp.constants import MAX_KEPT_METADATA, UPNP_PREFIX
from igrs.bridges.upnp.hosting import BridgeService, request_origin
from igrs.bridges.upnp.lastchange import AVT_EVENT_NS, RCS_EVENT_NS, LastChange, State
from igrs.constants import ReturnCode
from igrs.errors import IGRSError
from igrs.profiles.av.didl import Entry, to_didl
from igrs.profiles.av.fetch_policy import FetchRefused
from igrs.profiles.av.media import media_class, parse_duration
from igrs.profiles.av.renderer import NO_MEDIA, PAUSED, PLAYING, MediaRenderer, Track, track_from

MEDIA_RENDERER_TYPE = "urn:schemas-upnp-org:device:MediaRenderer:1"
BASE = f"{UPNP_PREFIX}renderer"
NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
PRESETS = "FactoryDefaults"
IID = {"InstanceID": "A_ARG_TYPE_InstanceID"}
CHANNEL = {**IID, "Channel": "A_ARG_TYPE_Channel"}


def _not_implemented() -> StateVariableTypeInfo:
    return create_state_var("string", allowed=[NOT_IMPLEMENTED], default=NOT_IMPLEMENTED)


def hms(seconds: float | None) -> str:
    """AVTransport time: H+:MM:SS (whole seconds)."""
    s = max(0, int(seconds or 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _info(name: str, kind: str) -> ServiceInfo:
    base = f"{BASE}/{name}"
    return ServiceInfo(f"urn:upnp-org:serviceId:{name}", f"urn:schemas-upnp-org:service:{name}:1",
                       f"{base}/control", f"{base}/event", f"{base}/scpd.xml", ET.Element(kind))


def _instance(instance_id: int, code: int = errors.INVALID_INSTANCE_ID) -> None:
    if instance_id != 0:
        raise errors.fault(code, "only InstanceID 0")


def _transport_fault(exc: IGRSError, *, seek: bool = False) -> Exception:
    if isinstance(exc, FetchRefused):
        return errors.fault(errors.RESOURCE_NOT_FOUND, exc.reason)
    if exc.return_code == ReturnCode.PRECONDITION_FAILED:
        return errors.fault(errors.TRANSITION_NOT_AVAILABLE, exc.reason)
    if exc.return_code == ReturnCode.BAD_MESSAGE:
        return errors.fault(errors.ILLEGAL_SEEK_TARGET if seek else errors.RESOURCE_NOT_FOUND, exc.reason)
    return errors.fault(errors.ACTION_FAILED, exc.reason)


class LastChangeService(BridgeService):
    """A service evented through LastChange only (full state in a subscriber's first event)."""

    lastchange: LastChange

    def event_properties(self, initial: bool) -> dict[str, str]:
        value = self.lastchange.full() if initial else self.state_variable("LastChange").upnp_value
        return {"LastChange": value}

    def _publish(self, xml: str) -> None:
        self.state_variable("LastChange").value = xml


class AVTransport(LastChangeService):
    SERVICE_DEFINITION = _info("AVTransport", "server_service")
    STATE_VARIABLE_DEFINITIONS = {
        "LastChange": create_event_var("string", default=""),
        "TransportState": create_state_var(
            "string", allowed=["STOPPED", "PLAYING", "PAUSED_PLAYBACK", "TRANSITIONING", "NO_MEDIA_PRESENT"],
            default=NO_MEDIA),
        "TransportStatus": create_state_var("string", allowed=["OK", "ERROR_OCCURRED"], default="OK"),
        "PlaybackStorageMedium": create_state_var("string", allowed=["NONE", "NETWORK"], default="NONE"),
        "RecordStorageMedium": _not_implemented(),
        "PossiblePlaybackStorageMedia": create_state_var("string", default="NETWORK"),
        "PossibleRecordStorageMedia": create_state_var("string", default=NOT_IMPLEMENTED),
        "CurrentPlayMode": create_state_var("string", allowed=["NORMAL"], default="NORMAL"),
        "TransportPlaySpeed": create_state_var("string", default="1"),
        "RecordMediumWriteStatus": _not_implemented(),
        "CurrentRecordQualityMode": _not_implemented(),
        "PossibleRecordQualityModes": create_state_var("string", default=NOT_IMPLEMENTED),
        "NumberOfTracks": create_state_var("ui4", default="0"),
        "CurrentTrack": create_state_var("ui4", default="0"),
        "CurrentTrackDuration": create_state_var("string", default="0:00:00"),
        "CurrentMediaDuration": create_state_var("string", default="0:00:00"),
        "CurrentTrackMetaData": create_state_var("string", default=""),
        "CurrentTrackURI": create_state_var("string", default=""),
        "AVTransportURI": create_state_var("string", default=""),
        "AVTransportURIMetaData": create_state_var("string", default=""),
        "NextAVTransportURI": create_state_var("string", default=""),
        "NextAVTransportURIMetaData": create_state_var("string", default=""),
        "RelativeTimePosition": create_state_var("string", default="0:00:00"),
        "AbsoluteTimePosition": create_state_var("string", default="0:00:00"),
        "RelativeCounterPosition": create_state_var("i4", default="2147483647"),
        "AbsoluteCounterPosition": create_state_var("i4", default="2147483647"),
        "CurrentTransportActions": create_state_var("string", default=""),
        "A_ARG_TYPE_SeekMode": create_state_var("string", allowed=["TRACK_NR", "REL_TIME", "ABS_TIME"]),
        "A_ARG_TYPE_SeekTarget": create_state_var("string"),
        "A_ARG_TYPE_InstanceID": create_state_var("ui4"),
    }
    renderer: MediaRenderer

    def bind(self, renderer: MediaRenderer) -> None:
        self.renderer = renderer
        self.metadata: OrderedDict[str, str] = OrderedDict()  # URI -> the DIDL a control point gave
        self.lastchange = LastChange(AVT_EVENT_NS, self.state, self._publish)

    # --- state ----------------------------------------------------------------------------------
    def _next(self) -> Track | None:
        r, i = self.renderer, self.renderer.QueueIndex + 1
        return r.queue[i] if r.current is not None and 0 < i < len(r.queue) else None

    def _meta(self, track: Track | None) -> str:
        if track is None:
            return ""
        kept = self.metadata.get(track.uri)
        if kept is not None:
            return kept
        return to_didl([Entry(track.item_id or "0", "-1", track.title or track.uri.rsplit("/", 1)[-1],
                              media_class(track.mime) if track.mime else "object.item", url=track.uri,
                              mime=track.mime, duration=track.duration, protocol=track.protocol_info)])

    def transport_actions(self) -> str:
        r = self.renderer
        state = r.TransportState
        if r.current is None:
            return ""
        by_state = {PLAYING: ["Pause", "Stop", "Seek"], PAUSED: ["Play", "Stop", "Seek"]}
        acts = by_state.get(state, ["Play", "Seek"])
        if r.QueueIndex + 1 < len(r.queue):
            acts.append("Next")
        if r.QueueIndex > 0:
            acts.append("Previous")
        return ",".join(acts)

    def state(self) -> State:
        r = self.renderer
        current, nxt = r.current, self._next()
        uri = current.uri if current is not None else ""
        meta = self._meta(current)
        duration = hms(r.Duration)
        plain = {
            "TransportState": r.TransportState, "TransportStatus": "OK",
            "PlaybackStorageMedium": "NETWORK" if current is not None else "NONE",
            "RecordStorageMedium": NOT_IMPLEMENTED, "PossiblePlaybackStorageMedia": "NETWORK",
            "PossibleRecordStorageMedia": NOT_IMPLEMENTED, "CurrentPlayMode": "NORMAL",
            "TransportPlaySpeed": "1",
            "RecordMediumWriteStatus": NOT_IMPLEMENTED, "CurrentRecordQualityMode": NOT_IMPLEMENTED,
            "PossibleRecordQualityModes": NOT_IMPLEMENTED,
            "NumberOfTracks": str(r.QueueLength if current is not None else 0),
            "CurrentTrack": str(r.QueueIndex + 1 if current is not None else 0),
            "CurrentTrackDuration": duration, "CurrentMediaDuration": duration,
            "CurrentTrackMetaData": meta, "CurrentTrackURI": uri, "AVTransportURI": uri,
            "AVTransportURIMetaData": meta, "NextAVTransportURI": nxt.uri if nxt else "",
            "NextAVTransportURIMetaData": self._meta(nxt), "CurrentTransportActions": self.transport_actions(),
        }
        return {k: (v, ()) for k, v in plain.items()}

    async def _track(self, uri: str, metadata: str) -> Track:
        """The admitted track of a URI a control point set (liberal about its metadata: empty,
        a bare <item> or garbage are all accepted; only the URI must be good)."""
        try:
            track = track_from(uri, metadata, "")
        except IGRSError as exc:
            if "Metadata" not in exc.reason:
                raise _transport_fault(exc) from None
            track = track_from(uri, "", "")
        if metadata:
            self.metadata[uri] = metadata[:65536]
            self.metadata.move_to_end(uri)
            while len(self.metadata) > MAX_KEPT_METADATA:
                self.metadata.popitem(last=False)
        try:
            return await self.renderer.admit(track, request_origin.get())
        except IGRSError as exc:
            raise _transport_fault(exc) from None

    # --- actions ------------------------------------------------------------------------------
    @callable_action(name="SetAVTransportURI",
                     in_args={**IID, "CurrentURI": "AVTransportURI",
                              "CurrentURIMetaData": "AVTransportURIMetaData"}, out_args={})
    async def set_av_transport_uri(
        self, InstanceID: int, CurrentURI: str, CurrentURIMetaData: str
    ) -> dict[str, object]:
        _instance(InstanceID)
        track = await self._track(CurrentURI.strip(), CurrentURIMetaData)
        playing = self.renderer.TransportState == PLAYING
        await self.renderer.play_track(track, auto_play=playing)  # a playing transport keeps playing
        return {}

    @callable_action(name="SetNextAVTransportURI",
                     in_args={**IID, "NextURI": "NextAVTransportURI",
                              "NextURIMetaData": "NextAVTransportURIMetaData"}, out_args={})
    async def set_next_av_transport_uri(
        self, InstanceID: int, NextURI: str, NextURIMetaData: str
    ) -> dict[str, object]:
        _instance(InstanceID)
        try:
            await self.renderer.set_next_track(await self._track(NextURI.strip(), NextURIMetaData))
        except IGRSError as exc:
            raise _transport_fault(exc) from None
        return {}

    @callable_action(name="GetMediaInfo", in_args=IID,
                     out_args={"NrTracks": "NumberOfTracks", "MediaDuration": "CurrentMediaDuration",
                               "CurrentURI": "AVTransportURI", "CurrentURIMetaData": "AVTransportURIMetaData",
                               "NextURI": "NextAVTransportURI", "NextURIMetaData": "NextAVTransportURIMetaData",
                               "PlayMedium": "PlaybackStorageMedium", "RecordMedium": "RecordStorageMedium",
                               "WriteStatus": "RecordMediumWriteStatus"})
    async def get_media_info(self, InstanceID: int) -> dict[str, object]:
        _instance(InstanceID)
        s = {k: v for k, (v, _) in self.state().items()}
        return {"NrTracks": int(s["NumberOfTracks"]), "MediaDuration": s["CurrentMediaDuration"],
                "CurrentURI": s["AVTransportURI"], "CurrentURIMetaData": s["AVTransportURIMetaData"],
                "NextURI": s["NextAVTransportURI"], "NextURIMetaData": s["NextAVTransportURIMetaData"],
                "PlayMedium": s["PlaybackStorageMedium"], "RecordMedium": NOT_IMPLEMENTED,
                "WriteStatus": NOT_IMPLEMENTED}

    @callable_action(name="GetTransportInfo", in_args=IID,
                     out_args={"CurrentTransportState": "TransportState",
                               "CurrentTransportStatus": "TransportStatus",
                               "CurrentSpeed": "TransportPlaySpeed"})
    async def get_transport_info(self, InstanceID: int) -> dict[str, object]:
        _instance(InstanceID)
        await self.renderer.tick()
        return {"CurrentTransportState": self.renderer.TransportState, "CurrentTransportStatus": "OK",
                "CurrentSpeed": "1"}

    @callable_action(name="GetPositionInfo", in_args=IID,
                     out_args={"Track": "CurrentTrack", "TrackDuration": "CurrentTrackDuration",
                               "TrackMetaData": "CurrentTrackMetaData", "TrackURI": "CurrentTrackURI",
                               "RelTime": "RelativeTimePosition", "AbsTime": "AbsoluteTimePosition",
                               "RelCount": "RelativeCounterPosition", "AbsCount": "AbsoluteCounterPosition"})
    async def get_position_info(self, InstanceID: int) -> dict[str, object]:
        _instance(InstanceID)
        position = (await self.renderer.GetPosition())["Position"]
        r, current = self.renderer, self.renderer.current
        return {"Track": r.QueueIndex + 1 if current is not None else 0, "TrackDuration": hms(r.Duration),
                "TrackMetaData": self._meta(current), "TrackURI": current.uri if current is not None else "",
                "RelTime": hms(position), "AbsTime": hms(position), "RelCount": 2147483647,
                "AbsCount": 2147483647}

    @callable_action(name="GetDeviceCapabilities", in_args=IID,
                     out_args={"PlayMedia": "PossiblePlaybackStorageMedia",
                               "RecMedia": "PossibleRecordStorageMedia",
                               "RecQualityModes": "PossibleRecordQualityModes"})
    async def get_device_capabilities(self, InstanceID: int) -> dict[str, object]:
        _instance(InstanceID)
        return {"PlayMedia": "NETWORK", "RecMedia": NOT_IMPLEMENTED, "RecQualityModes": NOT_IMPLEMENTED}

    @callable_action(name="GetTransportSettings", in_args=IID,
                     out_args={"PlayMode": "CurrentPlayMode", "RecQualityMode": "CurrentRecordQualityMode"})
    async def get_transport_settings(self, InstanceID: int) -> dict[str, object]:
        _instance(InstanceID)
        return {"PlayMode": "NORMAL", "RecQualityMode": NOT_IMPLEMENTED}

    @callable_action(name="GetCurrentTransportActions", in_args=IID,
                     out_args={"Actions": "CurrentTransportActions"})
    async def get_current_transport_actions(self, InstanceID: int) -> dict[str, object]:
        _instance(InstanceID)
        return {"Actions": self.transport_actions()}

    @callable_action(name="Play", in_args={**IID, "Speed": "TransportPlaySpeed"}, out_args={})
    async def play(self, InstanceID: int, Speed: str) -> dict[str, object]:
        _instance(InstanceID)
        if Speed.strip() not in ("1", "1/1"):
            raise errors.fault(errors.PLAY_SPEED_NOT_SUPPORTED, "only speed 1")
        try:
            await self.renderer.Play()
        except IGRSError as exc:
            raise _transport_fault(exc) from None
        return {}

    @callable_action(name="Pause", in_args=IID, out_args={})
    async def pause(self, InstanceID: int) -> dict[str, object]:
        _instance(InstanceID)
        try:
            await self.renderer.Pause()
        except IGRSError as exc:
            raise _transport_fault(exc) from None
        return {}

    @callable_action(name="Stop", in_args=IID, out_args={})
    async def stop(self, InstanceID: int) -> dict[str, object]:
        _instance(InstanceID)
        await self.renderer.Stop()
        return {}

    @callable_action(name="Seek", in_args={**IID, "Unit": "A_ARG_TYPE_SeekMode",
                                           "Target": "A_ARG_TYPE_SeekTarget"}, out_args={})
    async def seek(self, InstanceID: int, Unit: str, Target: str) -> dict[str, object]:
        _instance(InstanceID)
        try:
            if Unit == "TRACK_NR":
                if not Target.strip().isdigit():
                    raise errors.fault(errors.ILLEGAL_SEEK_TARGET, "TRACK_NR: a track number")
                await self._to_track(int(Target) - 1)
            else:
                position = parse_duration(Target.split("/", 1)[0])
                if position is None:
                    raise errors.fault(errors.ILLEGAL_SEEK_TARGET, f"{Target[:20]!r} is not H:MM:SS")
                await self.renderer.Seek(position)
        except IGRSError as exc:
            raise _transport_fault(exc, seek=True) from None
        return {}

    async def _to_track(self, index: int) -> None:
        r = self.renderer
        if r.current is None:
            raise errors.fault(errors.TRANSITION_NOT_AVAILABLE, "no media")
        if not 0 <= index < len(r.queue):
            raise errors.fault(errors.ILLEGAL_SEEK_TARGET, "no such track")
        while r.QueueIndex != index:
            await (r.Next() if r.QueueIndex < index else r.Previous())

    @callable_action(name="Next", in_args=IID, out_args={})
    async def next(self, InstanceID: int) -> dict[str, object]:
        _instance(InstanceID)
        try:
            await self.renderer.Next()
        except IGRSError as exc:
            raise _transport_fault(exc, seek=True) from None
        return {}

    @callable_action(name="Previous", in_args=IID, out_args={})
    async def previous(self, InstanceID: int) -> dict[str, object]:
        _instance(InstanceID)
        try:
            await self.renderer.Previous()
        except IGRSError as exc:
            raise _transport_fault(exc, seek=True) from None
        return {}


class RenderingControl(LastChangeService):
    SERVICE_DEFINITION = _info("RenderingControl", "server_service")
    STATE_VARIABLE_DEFINITIONS = {
        "LastChange": create_event_var("string", default=""),
        "PresetNameList": create_state_var("string", default=PRESETS),
        "Mute": create_state_var("boolean", default="0"),
        "Volume": create_state_var("ui2", allowed_range={"min": "0", "max": "100", "step": "1"}, default="50"),
        "A_ARG_TYPE_Channel": create_state_var("string", allowed=["Master"]),
        "A_ARG_TYPE_InstanceID": create_state_var("ui4"),
        "A_ARG_TYPE_PresetName": create_state_var("string", allowed=[PRESETS]),
    }
    renderer: MediaRenderer

    def bind(self, renderer: MediaRenderer) -> None:
        self.renderer = renderer
        self.lastchange = LastChange(RCS_EVENT_NS, self.state, self._publish)

    def state(self) -> State:
        master = (("channel", "Master"),)
        mute = "1" if self.renderer.Mute else "0"
        return {"Volume": (str(self.renderer.Volume), master), "Mute": (mute, master),
                "PresetNameList": (PRESETS, ())}

    @callable_action(name="ListPresets", in_args=IID,
                     out_args={"CurrentPresetNameList": "PresetNameList"})
    async def list_presets(self, InstanceID: int) -> dict[str, object]:
        _instance(InstanceID, errors.RCS_INVALID_INSTANCE_ID)
        return {"CurrentPresetNameList": PRESETS}

    @callable_action(name="SelectPreset",
                     in_args={**IID, "PresetName": "A_ARG_TYPE_PresetName"},
                     out_args={})
    async def select_preset(self, InstanceID: int, PresetName: str) -> dict[str, object]:
        _instance(InstanceID, errors.RCS_INVALID_INSTANCE_ID)
        await self.renderer.SetVolume(50)
        await self.renderer.SetMute(False)
        return {}

    @callable_action(name="GetMute", in_args=CHANNEL, out_args={"CurrentMute": "Mute"})
    async def get_mute(self, InstanceID: int, Channel: str) -> dict[str, object]:
        _instance(InstanceID, errors.RCS_INVALID_INSTANCE_ID)
        return {"CurrentMute": bool(self.renderer.Mute)}

    @callable_action(name="SetMute", in_args={**CHANNEL, "DesiredMute": "Mute"}, out_args={})
    async def set_mute(self, InstanceID: int, Channel: str, DesiredMute: bool) -> dict[str, object]:
        _instance(InstanceID, errors.RCS_INVALID_INSTANCE_ID)
        await self.renderer.SetMute(DesiredMute)
        return {}

    @callable_action(name="GetVolume", in_args=CHANNEL, out_args={"CurrentVolume": "Volume"})
    async def get_volume(self, InstanceID: int, Channel: str) -> dict[str, object]:
        _instance(InstanceID, errors.RCS_INVALID_INSTANCE_ID)
        return {"CurrentVolume": int(self.renderer.Volume)}

    @callable_action(name="SetVolume", in_args={**CHANNEL, "DesiredVolume": "Volume"}, out_args={})
    async def set_volume(self, InstanceID: int, Channel: str, DesiredVolume: int) -> dict[str, object]:
        _instance(InstanceID, errors.RCS_INVALID_INSTANCE_ID)
        await self.renderer.SetVolume(DesiredVolume)
        return {}


def media_renderer_device(info: DeviceInfo) -> type[UpnpServerDevice]:
    """The UPnP root device class of one exposed renderer (``info``: its identity)."""
    return type("ExposedMediaRenderer", (UpnpServerDevice,), {
        "DEVICE_DEFINITION": info._replace(device_type=MEDIA_RENDERER_TYPE, url=f"{BASE}/description.xml"),
        "EMBEDDED_DEVICES": [], "SERVICES": [AVTransport, RenderingControl, RendererConnectionManager]})


def sink_protocols() -> list[str]:
    """What the igrs renderer plays (ffmpeg decodes them all): GetProtocolInfo's Sink."""
    from igrs.profiles.av.media import MIME_TYPES, is_media

    return [f"http-get:*:{mime}:*" for mime in dict.fromkeys(MIME_TYPES.values()) if is_media(mime)]


__all__ = ["AVTransport", "RenderingControl", "hms", "media_renderer_device", "sink_protocols"]
