"""In-process observers of a service's attributes: the UPnP bridge follows an igrs renderer or
media server this way (its LastChange / SystemUpdateID events) without a session to itself."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Watcher = Callable[[str], None]


class Watchable:
    """Mixin for a :class:`~igrs.node.service.Service`: ``watch(callback)`` calls
    ``callback(name)`` after every assignment to one of its IGRS attributes (changed or not;
    the callback compares). Returns the function that stops watching."""

    igrs_attributes: dict[str, Any]

    def watch(self, callback: Watcher) -> Callable[[], None]:
        watchers: list[Watcher] = self.__dict__.setdefault("_watchers", [])
        watchers.append(callback)

        def stop() -> None:
            if callback in watchers:
                watchers.remove(callback)

        return stop

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        watchers = self.__dict__.get("_watchers")
        if watchers and name in self.igrs_attributes:
            for callback in list(watchers):
                try:
                    callback(name)
                except Exception:
                    log.exception("attribute watcher failed")
