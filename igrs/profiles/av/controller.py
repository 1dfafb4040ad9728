"""The dynamic service invocation module (5-21; the phone in the three-box model): browse a
media server and make a media renderer play an item. It may live in any device with a
paired ``ControlPoint``. specs/av-profile.md §10.

    av = AvController(cp)
    page = await av.browse(pc, "0")
    await av.play(pc, tv, item_id)         # Browse(BrowseMetadata) on the PC, PlayTo on the TV
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from igrs.constants import ReturnCode
from igrs.errors import IGRSError
from igrs.profiles.av.didl import Entry, from_didl, to_didl
from igrs.profiles.av.renderer import MEDIA_RENDERER, Resolver, Track
from igrs.profiles.av.server import MEDIA_SERVER

if TYPE_CHECKING:
    from igrs.core.discovery import DeviceRecord
    from igrs.node.control import ControlPoint
    from igrs.profiles.av.server import MediaServer
    from igrs.wire.ids import DeviceId

    DeviceRef = DeviceId | str | DeviceRecord


BROWSE_ALL_LIMIT = 200_000  # objects browse_all collects at most (= a directory's cap, §11)


@dataclass(frozen=True, slots=True)
class BrowseResult:
    entries: list[Entry]
    total: int
    update_id: int


def _result(raw: dict[str, str]) -> BrowseResult:
    return BrowseResult(from_didl(raw["Result"]), int(raw["TotalMatches"]), int(raw["UpdateID"]))


class AvController:
    def __init__(self, cp: ControlPoint) -> None:
        self.cp = cp

    async def browse(
        self, server: DeviceRef, object_id: str = "0", *, start: int = 0, count: int = 0, sort: str = ""
    ) -> BrowseResult:
        async with self.cp.session(server, MEDIA_SERVER) as ms:
            return _result(
                await ms.Browse(
                    ObjectID=object_id, StartingIndex=start, RequestedCount=count, SortCriteria=sort
                )
            )

    async def browse_all(
        self, server: DeviceRef, object_id: str = "0", *, sort: str = "", limit: int = BROWSE_ALL_LIMIT
    ) -> list[Entry]:
        """Every child of a container (at most ``limit``), page after page: until an empty
        page, or the total once a server states one (CDS:1 lets ``TotalMatches`` be 0 for
        "unknown", so 0 never ends the listing)."""
        entries: list[Entry] = []
        async with self.cp.session(server, MEDIA_SERVER) as ms:
            while len(entries) < limit:
                page = _result(
                    await ms.Browse(ObjectID=object_id, StartingIndex=len(entries), SortCriteria=sort)
                )
                entries += page.entries
                if not page.entries or 0 < page.total <= len(entries):
                    break
        return entries[:limit]

    async def metadata(self, server: DeviceRef, object_id: str) -> Entry:
        async with self.cp.session(server, MEDIA_SERVER) as ms:
            entries = _result(await ms.Browse(ObjectID=object_id, BrowseFlag="BrowseMetadata")).entries
        if not entries:
            raise IGRSError(f"no such object {object_id!r}", return_code=ReturnCode.NOT_FOUND)
        return entries[0]

    async def search(
        self,
        server: DeviceRef,
        criteria: str,
        *,
        container: str = "0",
        start: int = 0,
        count: int = 0,
        sort: str = "",
    ) -> BrowseResult:
        async with self.cp.session(server, MEDIA_SERVER) as ms:
            return _result(
                await ms.Search(
                    ContainerID=container,
                    SearchCriteria=criteria,
                    StartingIndex=start,
                    RequestedCount=count,
                    SortCriteria=sort,
                )
            )

    async def play(self, server: DeviceRef, renderer: DeviceRef, item_id: str) -> str:
        """The three-box step: look the item up on the server, PlayTo its URI (with its DIDL-Lite
        metadata) on the renderer. Returns the renderer's transport state."""
        entry = await self.metadata(server, item_id)
        if entry.is_container or not entry.url:
            raise IGRSError(f"{item_id!r} is not a playable item", return_code=ReturnCode.BAD_MESSAGE)
        return await self.play_uri(renderer, entry.url, to_didl([entry]), entry.title)

    async def play_uri(self, renderer: DeviceRef, uri: str, metadata: str = "", title: str = "") -> str:
        async with self.cp.session(renderer, MEDIA_RENDERER) as tv:
            return str(await tv.PlayTo(URI=uri, Metadata=metadata, Title=title))


def local_resolver(server: MediaServer) -> Resolver:
    """A renderer resolver for ``PlayTo(ItemID=…)`` when the server is on the same device/process."""

    async def resolve(item_id: str) -> Track | None:
        obj = server.directory.objects.get(item_id)
        if obj is None or obj.is_container:
            return None
        return Track.from_entry(server.entry(obj))

    return resolve
