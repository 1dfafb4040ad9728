"""How every tool words PIN pairing (``igrs device run``, ``igrs file serve``, ``igrs group``,
``igrs pair``, ``igrs conformance run --pin -``, the demo, the examples, the bridges): one
wording, so a user (or a script reading the lines) meets the same sentence everywhere.

    pin_shown("Living room TV", "123456")
    -> "Living room TV shows PIN 123456: type it on the device asking to pair"
    pin_prompt("Living room TV", 6)
    -> "Type the 6-digit PIN Living room TV shows: "
"""

from __future__ import annotations

TYPE_IT = "type it on the device asking to pair"


def pin_shown(device_name: str, pin: str, then: str = TYPE_IT) -> str:
    """The line of the device that "shows" a PIN (its ``on_pin``); ``then``: what to do with it."""
    return f"{device_name} shows PIN {pin}: {then}"


def pin_prompt(device_name: str, digits: int) -> str:
    """The prompt of the side where the user types the PIN ``device_name`` shows."""
    return f"Type the {digits}-digit PIN {device_name} shows: "


__all__ = ["TYPE_IT", "pin_prompt", "pin_shown"]
