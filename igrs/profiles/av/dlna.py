"""DLNA on top of UPnP AV (public source: DLNA guidelines, as minidlna, gerbera and rygel apply
them; specs/av-profile.md §4 and §6): the media format profile (``DLNA.ORG_PN``) of an item
from the codecs ffprobe reported, the 4th ``protocolInfo`` field — sent identically as the
``contentFeatures.dlna.org`` HTTP header — and the ``transferMode.dlna.org`` /
``TimeSeekRange.dlna.org`` answers of the stream transport.
"""

from __future__ import annotations

from aiohttp import web

from igrs.profiles.av.media import MediaInfo

# DLNA.ORG_FLAGS (public source: DLNA guidelines 7.3.37, as minidlna/gerbera/rygel send them):
# streaming transfer mode 0x01000000, interactive 0x00800000, background 0x00400000, connection
# stalling 0x00200000, DLNA v1.5 0x00100000; 24 more hex digits of reserved zeros.
DLNA_FLAGS_AV = "01700000" + "0" * 24  # streaming + background + stalling + v1.5
DLNA_FLAGS_IMAGE = "00D00000" + "0" * 24  # interactive + background + v1.5
DLNA_OP_RANGE = "01"  # DLNA.ORG_OP: byte seek (Range) yes, time seek (TimeSeekRange) no
DLNA_OP_NONE = "00"  # a live stream: no seek at all
SD_MAX = (720, 576)  # DLNA SD resolution bound (PAL); larger is HD


def _within(info: MediaInfo, bound: tuple[int, int]) -> bool:
    w, h = info.width, info.height
    return w is not None and h is not None and 0 < w <= bound[0] and 0 < h <= bound[1]


def dlna_profile(info: MediaInfo) -> str | None:
    """The DLNA.ORG_PN media format profile of ``info`` from the codecs ffprobe reported, or
    None (no DLNA profile fits: PN is left out). Project choice: a size/profile class table
    after minidlna's (metadata.c) and the DLNA profile names; bit-rate and level limits of the
    profiles are not checked."""
    mime, fmt = info.mime, info.container
    if mime == "image/jpeg":
        for bound, name in (((640, 480), "JPEG_SM"), ((1024, 768), "JPEG_MED"), ((4096, 4096), "JPEG_LRG")):
            if _within(info, bound):
                return name
        return None
    if mime == "image/png":
        return "PNG_LRG" if _within(info, (4096, 4096)) else None
    v, a = info.video_codec, info.audio_codec
    if not v:
        if a == "mp3" and fmt == "mp3":
            return "MP3"
        if a == "aac":
            small = (info.channels or 2) <= 2 and (info.bitrate or 0) <= 320_000
            if "mp4" in fmt:
                return "AAC_ISO_320" if small else "AAC_ISO"
            if fmt == "aac":
                return "AAC_ADTS_320" if small else "AAC_ADTS"
        return None
    sd = _within(info, SD_MAX)
    eu = info.fps is not None and round(info.fps) in (25, 50)  # PAL rates; else NTSC
    if "mp4" in fmt and v == "h264" and a == "aac":
        profile = info.video_profile.lower()
        if "high" in profile:
            return "AVC_MP4_HP_HD_AAC"
        if "baseline" in profile:
            if _within(info, (352, 288)):
                return "AVC_MP4_BL_CIF15_AAC_520"
            return "AVC_MP4_BL_L3L_SD_AAC" if sd else None
        if "main" in profile:
            if sd:
                return "AVC_MP4_MP_SD_AAC_MULT5"
            return "AVC_MP4_MP_HD_720p_AAC" if _within(info, (1280, 720)) else "AVC_MP4_MP_HD_1080i_AAC"
        return None
    if fmt == "mpegts" and v == "mpeg2video" and a in ("mp2", "ac3", ""):
        return f"MPEG_TS_{'SD' if sd else 'HD'}_{'EU' if eu else 'NA'}_ISO"
    if fmt == "mpegts" and v == "h264" and a == "aac":
        return "AVC_TS_MP_SD_AAC_MULT5_ISO" if sd else "AVC_TS_MP_HD_AAC_MULT5_ISO"
    if fmt == "mpeg" and v == "mpeg2video":
        return "MPEG_PS_PAL" if eu else "MPEG_PS_NTSC"
    if fmt == "mpeg" and v == "mpeg1video":
        return "MPEG1"
    return None


def dlna_features(info: MediaInfo, *, live: bool = False) -> str:
    """The 4th field of ``protocolInfo`` — the same value is sent as the HTTP header
    ``contentFeatures.dlna.org``: ``DLNA.ORG_PN=<profile>;DLNA.ORG_OP=..;DLNA.ORG_CI=0;
    DLNA.ORG_FLAGS=..`` (PN left out when no profile fits)."""
    pn = dlna_profile(info)
    flags = DLNA_FLAGS_IMAGE if info.mime.startswith("image/") else DLNA_FLAGS_AV
    op = DLNA_OP_NONE if live else DLNA_OP_RANGE
    head = f"DLNA.ORG_PN={pn};" if pn else ""
    return f"{head}DLNA.ORG_OP={op};DLNA.ORG_CI=0;DLNA.ORG_FLAGS={flags}"


def transfer_mode(request: web.BaseRequest, *, streaming: bool) -> str | web.Response:
    """The DLNA transfer mode to answer with (the one asked for in ``transferMode.dlna.org``
    if the item allows it, else the item's default), or the 406 answer: a mode the item does
    not allow, or time seek / play speed, which these resources do not offer (DLNA.ORG_OP
    time-seek bit 0). Project choice after DLNA guidelines 7.4.49-7.4.70 (public source)."""
    for header in ("TimeSeekRange.dlna.org", "PlaySpeed.dlna.org"):
        if header in request.headers:
            return web.Response(status=406, text=f"{header} is not offered (DLNA.ORG_OP=01)\n")
    default = "Streaming" if streaming else "Interactive"
    asked = request.headers.get("transferMode.dlna.org", "").strip().lower()
    if not asked:
        return default
    allowed = {default.lower(): default, "background": "Background"}
    if asked not in allowed:
        return web.Response(status=406, text=f"transfer mode {asked[:20]!r} is not offered for this item\n")
    return allowed[asked]
