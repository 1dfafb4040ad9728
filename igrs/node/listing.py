"""Describing many devices at once, as a control point's listing does (``igrs services``,
``igrs discover --describe``): concurrently, each within a deadline, and one device's
failure -- garbage, a reset, silence -- never fails the others (specs/description.md,
"Describing many devices")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from igrs.constants import DESCRIBE_CONCURRENCY, DESCRIBE_DEADLINE
from igrs.core.discovery import DeviceRecord
from igrs.wire import description as ddesc

if TYPE_CHECKING:
    from igrs.node.control import ControlPoint

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Described:
    """One device of a listing: its description, or why there is none."""

    record: DeviceRecord
    description: ddesc.DeviceDescription | None
    error: str | None = None


async def describe_all(cp: ControlPoint, records: Iterable[DeviceRecord], *,
                       deadline: float = DESCRIBE_DEADLINE,
                       concurrency: int = DESCRIBE_CONCURRENCY) -> list[Described]:
    """The descriptions of ``records``, in their order: at most ``concurrency`` fetched at
    once, each given up after ``deadline`` seconds."""
    gate = asyncio.Semaphore(concurrency)

    async def one(record: DeviceRecord) -> Described:
        async with gate:
            try:
                async with asyncio.timeout(deadline):
                    return Described(record, await cp.describe(record))
            except TimeoutError:
                return Described(record, None, f"no description within {deadline:g} s")
            except Exception as exc:  # whatever the device answered, it fails alone
                log.debug("describing %s failed", record.device_id, exc_info=True)
                return Described(record, None, f"{type(exc).__name__}: {exc}")

    return list(await asyncio.gather(*(one(record) for record in records)))
