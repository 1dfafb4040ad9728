"""Value types of ``igrs`` options: argparse checks each value as it parses the command line,
so a bad one is a usage error with argparse's message (exit 2), never a traceback or a
failure found later. Each reuses the library's own check."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable
from typing import Any


def _checked(what: str, check: Callable[[str], Any]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        from igrs.errors import IGRSError

        try:
            check(text)
        except (IGRSError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"not {what}: {getattr(exc, 'reason', exc)}") from None
        return text

    convert.__name__ = what  # argparse names the type in its message
    return convert


def port_number(text: str) -> int:
    """A UDP/TCP port, 0..65535 (0: any free one where that makes sense)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0..65535): {port}")
    return port


def _device_id(text: str) -> None:
    from igrs.wire.ids import DeviceId

    DeviceId.parse(text)


def _device_type(text: str) -> None:
    from igrs.wire.ids import DeviceType

    DeviceType.parse(text)


def _device_name(text: str) -> None:
    from igrs.wire.ids import check_name

    check_name(text)


def key_value(text: str) -> str:
    """A ``KEY=VALUE`` word (``igrs call`` arguments): its value is read later, by the type the
    service declares; only its form is checked here, before anything touches the network."""
    key, sep, _ = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"argument {text!r} is not KEY=VALUE")
    return text


device_id = _checked("a device id (urn:IGRS:Device:DeviceId:<uuid>)", _device_id)
device_type = _checked("a device type (TV, PC, ... or a URN)", _device_type)
device_name = _checked("a device name", _device_name)
ip_address = _checked("an IP address", ipaddress.ip_address)
