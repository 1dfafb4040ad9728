"""The TV's "screen": a web page a renderer device serves, showing what it plays.

    renderer = await attach_renderer(tv)
    screen = attach_screen(tv, renderer)         # http://<tv>:<port>/screen/
    print(screen.url())

``GET /screen/`` is one self-contained HTML page (no external CSS or JavaScript): an
``<img>``, ``<audio>`` or ``<video>`` element pointing at the media URL the TV plays, its
title and transport state. The page polls ``GET /screen/state`` (JSON, below) every 500 ms
and updates itself; the first state is also rendered into the HTML, so it reads right
without JavaScript. Plain HTTP beside ``/IGRS`` (``IgrsHttpServer.mount``), read-only: it
changes nothing on the TV. MPEG-TS (live programmes) cannot play in a browser: the page shows
a placeholder for it.

State JSON: ``{"device", "state", "uri", "title", "mime", "kind", "item_id", "position",
"duration", "volume", "mute", "queue_index", "queue_length"}``; ``kind`` is ``image``,
``audio``, ``video``, ``stream`` (MPEG-TS or udp/rtp) or ``none``.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from igrs.profiles.av.media import mime_type

if TYPE_CHECKING:
    from igrs.node.device import Device
    from igrs.profiles.av.renderer import MediaRenderer

SCREEN_PREFIX = "/screen/"
POLL_MS = 500
NO_STORE = {"Cache-Control": "no-store"}


def media_kind(uri: str, mime: str) -> str:
    """How a browser shows ``uri``: image, audio, video, stream (not playable in a page) or none."""
    if not uri:
        return "none"
    if urlsplit(uri).scheme.lower() not in ("http", "https"):
        return "stream"
    mime = mime or mime_type(urlsplit(uri).path)
    if mime in ("video/mp2t", "video/mpeg"):
        return "stream"
    major = mime.partition("/")[0]
    return major if major in ("image", "audio", "video") else "stream"


class Screen:
    """Serves the page and the state of ``renderer`` under ``prefix`` of ``device``'s HTTP port."""

    def __init__(self, device: Device, renderer: MediaRenderer, prefix: str = SCREEN_PREFIX) -> None:
        self.device = device
        self.renderer = renderer
        self.prefix = prefix

    def url(self) -> str:
        """The page's address on the device's first interface ("" before the device starts)."""
        loc = self.device.location
        if not loc:
            return ""
        parts = urlsplit(loc)
        return f"{parts.scheme}://{parts.netloc}{self.prefix}"

    def state(self) -> dict[str, Any]:
        r = self.renderer
        return {
            "device": self.device.name,
            "state": r.TransportState,
            "uri": r.CurrentURI,
            "title": r.CurrentTitle,
            "mime": r.CurrentMime,
            "kind": media_kind(r.CurrentURI, r.CurrentMime),
            "item_id": r.CurrentItemID,
            "position": round(r.position(), 3),
            "duration": float(r.Duration),
            "volume": r.Volume,
            "mute": r.Mute,
            "queue_index": r.QueueIndex,
            "queue_length": r.QueueLength,
        }

    async def handle_http(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        rest = request.path[len(self.prefix) :]
        if rest in ("", "index.html"):
            return web.Response(
                text=render_page(self.state()), content_type="text/html", charset="utf-8", headers=NO_STORE
            )
        if rest == "state":
            return web.Response(
                text=json.dumps(self.state()), content_type="application/json", headers=NO_STORE
            )
        return web.Response(status=404, text="not found\n")


def attach_screen(device: Device, renderer: MediaRenderer, prefix: str = SCREEN_PREFIX) -> Screen:
    """Serve ``renderer``'s screen page at ``prefix`` on ``device``'s HTTP port."""
    screen = Screen(device, renderer, prefix)
    device.http.mount(prefix, screen.handle_http)
    return screen


def _media_html(state: dict[str, Any]) -> str:
    uri, kind = html.escape(state["uri"], quote=True), state["kind"]
    if kind == "image":
        return f'<img id="media" src="{uri}" alt="">'
    if kind in ("audio", "video"):
        return f'<{kind} id="media" src="{uri}" autoplay muted playsinline controls></{kind}>'
    if kind == "stream":
        return '<div id="media" class="placeholder">live stream (not shown in a browser)</div>'
    return '<div id="media" class="placeholder">no media</div>'


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


def render_page(state: dict[str, Any]) -> str:
    """The page, with ``state`` rendered in (the script keeps it current)."""
    esc = html.escape
    pos = _clock(state["position"]) + (f" / {_clock(state['duration'])}" if state["duration"] else "")
    if state["kind"] not in ("audio", "video", "stream"):
        pos = ""  # a still image has no playing time
    return PAGE.format(
        device=esc(state["device"]),
        state=esc(state["state"]),
        kind=esc(state["kind"]),
        title=esc(state["title"] or "(nothing playing)"),
        mime=esc(state["mime"]),
        position=esc(pos),
        volume=state["volume"],
        media=_media_html(state),
        initial=esc(json.dumps(state), quote=True),
        poll=POLL_MS,
    )


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{device} — screen</title>
<style>
  html, body {{ margin: 0; height: 100%; background: #111; color: #eee;
    font: 16px/1.4 system-ui, sans-serif; }}
  body {{ display: flex; flex-direction: column; }}
  header, footer {{ padding: 10px 18px; background: #1d1d1d; display: flex; gap: 18px;
    align-items: baseline; }}
  header h1 {{ margin: 0; font-size: 22px; flex: 1; overflow: hidden; text-overflow: ellipsis;
    white-space: nowrap; }}
  #stage {{ flex: 1; display: flex; align-items: center; justify-content: center; min-height: 0;
    background: #000; }}
  #stage img, #stage video {{ max-width: 100%; max-height: 100%; object-fit: contain; }}
  .placeholder {{ color: #888; font-size: 28px; }}
  #state {{ font-weight: bold; padding: 2px 10px; border-radius: 4px; background: #444; }}
  body[data-state="PLAYING"] #state {{ background: #1a7f37; }}
  body[data-state="PAUSED_PLAYBACK"] #state {{ background: #9a6700; }}
  body[data-state="STOPPED"] #state {{ background: #8b1d1d; }}
  #link {{ color: #8cf; }}
  .dim {{ color: #999; }}
</style>
</head>
<body data-state="{state}" data-kind="{kind}">
<header>
  <h1 id="title">{title}</h1>
  <span id="state">{state}</span>
</header>
<main id="stage">{media}</main>
<footer>
  <span id="device">{device}</span>
  <span id="mime" class="dim">{mime}</span>
  <span id="position">{position}</span>
  <span class="dim">volume <span id="volume">{volume}</span></span>
  <span id="conn" class="dim">live</span>
</footer>
<script id="initial" type="application/json" data-state="{initial}"></script>
<script>
"use strict";
(function () {{
  var shown = JSON.parse(document.getElementById("initial").dataset.state);
  var $ = function (id) {{ return document.getElementById(id); }};
  function clock(s) {{
    s = Math.floor(s);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }}
  function mediaElement(st) {{
    var el;
    if (st.kind === "image") {{
      el = document.createElement("img");
      el.alt = "";
    }} else if (st.kind === "audio" || st.kind === "video") {{
      el = document.createElement(st.kind);
      el.autoplay = true; el.muted = true; el.controls = true;
      el.setAttribute("playsinline", "");
    }} else {{
      el = document.createElement("div");
      el.className = "placeholder";
      el.textContent = st.kind === "stream" ? "live stream (not shown in a browser)" : "no media";
    }}
    if (st.kind === "image" || st.kind === "audio" || st.kind === "video") el.src = st.uri;
    el.id = "media";
    return el;
  }}
  function render(st) {{
    document.body.dataset.state = st.state;
    document.body.dataset.kind = st.kind;
    document.title = st.device + " \\u2014 " + (st.title || st.state);
    $("title").textContent = st.title || "(nothing playing)";
    $("state").textContent = st.state;
    $("device").textContent = st.device;
    $("mime").textContent = st.mime;
    $("volume").textContent = st.volume;
    $("position").textContent = st.kind === "image" || st.kind === "none" ? ""
      : clock(st.position) + (st.duration ? " / " + clock(st.duration) : "");
    var el = $("media");
    if (st.uri !== shown.uri || st.kind !== shown.kind || !el) {{
      var fresh = mediaElement(st);
      $("stage").replaceChildren(fresh);
      el = fresh;
    }}
    if (el && typeof el.play === "function") {{
      el.volume = st.mute ? 0 : st.volume / 100;
      if (st.state === "PLAYING" && el.paused) {{
        var p = el.play(); if (p && p.catch) p.catch(function () {{}});
      }} else if (st.state !== "PLAYING" && !el.paused) {{
        el.pause();
      }}
      if (st.state === "STOPPED" && el.currentTime > 0) el.currentTime = 0;
    }}
    shown = st;
  }}
  function poll() {{
    fetch("state", {{ cache: "no-store" }})
      .then(function (r) {{ return r.json(); }})
      .then(function (st) {{ $("conn").textContent = "live"; render(st); }})
      .catch(function () {{ $("conn").textContent = "offline"; }})
      .then(function () {{ setTimeout(poll, {poll}); }});
  }}
  render(shown);
  setTimeout(poll, {poll});
}})();
</script>
</body>
</html>
"""
