#!/usr/bin/env python3
"""The phone of the IGRS demo as its own process: finds the PC and the TV, pairs with them,
puts a photo and then a video from the PC on the TV (three-box), has the PC record the TV's
live programme, and copies a file into the PC's inbox. Narrates on stdout; the last line is
{"event": "done", ...results} (or {"event": "failed", "error"}; exit 1).

    python examples/phone.py --interface eth0                  # asks for each PIN
    python examples/phone.py --interface lo --port 3999 --pins-from tv.jsonl --pins-from pc.jsonl

PINs: a device shows a fresh PIN when the phone asks to pair. The phone takes it from
``--pin DEVICE=PIN`` (a PIN still on display; DEVICE is a name, type or id prefix), else from
the JSON lines tv.py / pc.py print (``--pins-from FILE``: their stdout saved to a file), else
asks on stdin (a bare PIN or one of those JSON lines). Pairings are remembered with
``--state-dir`` (this phone's and the devices'), so later runs skip pairing.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _example import emit, info, parser

from igrs.apps.demo import Phone
from igrs.apps.sample_media import night_photo, write_png
from igrs.node.control import ControlPoint
from igrs.node.pin_text import pin_prompt, pin_shown
from igrs.wire.ids import DeviceId

PIN_WAIT = 60.0  # s to wait for a PIN line in --pins-from files


def matches(record: Any, key: str) -> bool:
    key = key.strip().lower()
    return bool(key) and (
        key in (record.name.lower(), record.device_type.name.lower())
        or str(record.device_id).lower().startswith(key)
        or str(record.device_id.uuid).lower().startswith(key)
    )


def pin_of_line(line: str, device_id: DeviceId) -> str | None:
    line = line.strip()
    if line.isdigit():
        return line
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if isinstance(obj, dict) and obj.get("event") == "pin" and obj.get("id") == str(device_id):
        return str(obj.get("pin", ""))
    return None


class Pins:
    """Where the phone gets each device's PIN (see the module doc)."""

    def __init__(self, given: list[str], files: list[Path]) -> None:
        self.given = given
        self.files = files
        self.offsets: dict[Path, int] = {}

    def mark(self) -> None:
        """Only lines written from now on count (called before each pairing)."""
        self.offsets = {f: f.stat().st_size if f.exists() else 0 for f in self.files}

    def provider(self, record: Any):  # type: ignore[no-untyped-def]
        async def provide(digits: int) -> str:
            for spec in self.given:
                key, sep, pin = spec.rpartition("=")
                if not sep or matches(record, key):
                    info(f"      using the PIN given for {record.name}")
                    return pin
            if self.files:
                deadline = time.monotonic() + PIN_WAIT
                while time.monotonic() < deadline:
                    for f in self.files:
                        if not f.exists():
                            continue
                        with f.open("rb") as fh:
                            fh.seek(self.offsets.get(f, 0))
                            data = fh.read()
                        for line in data.decode(errors="replace").splitlines():
                            pin = pin_of_line(line, record.device_id)
                            if pin and not line.strip().isdigit():
                                print(f"      {pin_shown(record.name, pin, f'read from {f}')}", flush=True)
                                return pin
                    await asyncio.sleep(0.1)
                raise TimeoutError(f"no PIN line for {record.name} in {', '.join(map(str, self.files))}")
            while True:
                line = await asyncio.to_thread(input, pin_prompt(record.name, digits))
                pin = pin_of_line(line, record.device_id)
                if pin:
                    return pin

        return provide


async def find(cp: ControlPoint, pc_key: str, tv_key: str, timeout: float) -> tuple[Any, Any]:
    deadline = time.monotonic() + timeout
    pc = tv = None
    while time.monotonic() < deadline:
        records = await cp.search(timeout=1.0, mx=1)
        pc = pc or next((r for r in records if matches(r, pc_key)), None)
        tv = tv or next((r for r in records if matches(r, tv_key)), None)
        if pc and tv:
            return pc, tv
    missing = " and ".join(k for k, r in ((pc_key, pc), (tv_key, tv)) if r is None)
    raise TimeoutError(f"no {missing} answered within {timeout:g} s")


async def main() -> int:
    p = parser(__doc__.split("\n\n")[0], "Alice's phone")
    p.add_argument("--pc", default="PC", help="the PC: name, type or id prefix (default: type PC)")
    p.add_argument("--tv", default="TV", help="the TV: name, type or id prefix (default: type TV)")
    p.add_argument("--pin", action="append", default=[], metavar="[DEVICE=]PIN", help="a PIN on display")
    p.add_argument(
        "--pins-from",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="read PINs from the JSON lines tv.py / pc.py write (their stdout, saved to FILE)",
    )
    p.add_argument("--send", type=Path, help="the file to copy to the PC's inbox (default: a snapshot)")
    p.add_argument("--record-seconds", type=float, default=3.0, help="seconds of the TV programme to record")
    p.add_argument("--photo-seconds", type=float, default=2.0, help="seconds the photo stays on the TV")
    p.add_argument("--search-timeout", type=float, default=15.0, help="seconds to look for the PC and TV")
    args = p.parse_args()
    pins = Pins(args.pin, args.pins_from)
    n = 0

    def step(text: str) -> None:
        nonlocal n
        n += 1
        print(f"{n}. {text}", flush=True)

    with tempfile.TemporaryDirectory(prefix="igrs-phone-") as tmp:
        send = args.send or write_png(Path(tmp) / "IMG_0001.png", 320, 240, night_photo)
        async with ControlPoint(
            interfaces=args.interface,
            port=args.port,
            state_dir=args.state_dir,
            name=args.name,
            keepalive_interval=0,
        ) as cp:
            try:
                step("The phone searches the network for the PC and the TV:")
                pc, tv = await find(cp, args.pc, args.tv, args.search_timeout)
                for rec in (pc, tv):
                    print(f"      found {rec.name} ({rec.device_type.name}) at {rec.location}", flush=True)
                step("The phone pairs with them:")
                for rec in (pc, tv):
                    if cp.keystore.get(rec.device_id) is not None:
                        print(f"      already paired with {rec.name}", flush=True)
                        continue
                    pins.mark()
                    paired = await cp.pair(rec.device_id, pins.provider(rec))
                    print(
                        f"      paired with {rec.name} (its key fingerprint {paired.fingerprint[:19]})",
                        flush=True,
                    )
                phone = Phone(cp, pc.device_id, tv.device_id, out=lambda t: print(t, flush=True))
                results = await phone.scenario(
                    step, phone_file=send, record_seconds=args.record_seconds, photo_seconds=args.photo_seconds
                )
            except Exception as exc:
                emit("failed", error=f"{type(exc).__name__}: {exc}")
                return 1
    emit("done", pc=str(pc.device_id), tv=str(tv.device_id), **results)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
