"""The passive checker's limits (specs/conformance/passive.md §6). Project choice: a hostile
capture or a flood must not exhaust memory."""

from __future__ import annotations

from typing import Final

from igrs.constants import MAX_HEADER_LINE, MAX_HEADERS, MAX_HTTP_BODY, REGISTRY_MAX_DEVICES

MAX_SEARCHERS: Final = 1024  # searcher endpoints remembered (least recently used evicted)
SEARCHES_PER_SEARCHER: Final = 16  # recent searches remembered per endpoint
MAX_ANNOUNCERS: Final = REGISTRY_MAX_DEVICES  # announcement schedules tracked (oldest evicted)
MAX_TCP_STREAMS: Final = 256  # TCP directions reassembled at once; later ones are not checked
HEAD_LIMIT: Final = (MAX_HEADERS + 1) * (MAX_HEADER_LINE + 2) + 2  # bytes of one HTTP head
STREAM_BUFFER: Final = MAX_HTTP_BODY + HEAD_LIMIT  # bytes buffered per TCP direction, at most
MAX_PENDING_REQUESTS: Final = 64  # pipelined requests awaiting their responses, per connection
MAX_NOTES: Final = 100  # notes kept (further ones are counted)
