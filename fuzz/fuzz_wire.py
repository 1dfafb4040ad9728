#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris / libFuzzer) of the wire parsers.

Targets: ``igrs.wire.isdp.decode`` (ISDP datagrams) and ``igrs.wire.messages.parse_http``
(M-POST requests and responses, hence the SOAP/XML bodies too); the first input byte picks
the target. The only accepted failure is ``igrs.errors.ProtocolError`` (and subclasses);
any other exception is a finding: libFuzzer stops and writes the input as ``crash-<sha1>``.

Run (not part of the test suite; needs ``pip install atheris``):

    python fuzz/fuzz_wire.py -max_total_time=60                  # one minute, built-in seeds
    python fuzz/fuzz_wire.py -max_total_time=600 -jobs=2 corpus/ # ten minutes, keep a corpus
    python fuzz/fuzz_wire.py crash-1234abcd                      # replay one finding

``-max_len`` defaults to 8192 here (datagrams are capped at 4096 bytes; longer HTTP messages
mostly exercise the size caps). Seeds are valid messages of every kind, written to a temporary
corpus directory unless you pass one, with a dictionary of protocol tokens (``-dict``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["igrs"]):
    from igrs.errors import ProtocolError
    from igrs.wire import description as ddesc
    from igrs.wire import isdp, messages
    from igrs.wire.ids import DeviceId, DeviceType
    from igrs.wire.isdp import SearchTarget

TARGETS = (isdp.decode, messages.parse_http)


def seeds() -> list[bytes]:
    d1 = DeviceId.parse("urn:IGRS:Device:DeviceId:6f1b6c2e-8d7a-4c1e-9a55-0a3f2b9c1d01")
    d2 = DeviceId.parse("urn:IGRS:Device:DeviceId:0c9e7d52-3b1f-4a8e-b7d4-55aa6e0f9e02")
    tv = DeviceType("TV", 1)
    loc = "http://192.168.1.20:3880/IGRS"
    host = "224.0.0.110:3880"
    datagrams = [
        isdp.encode(isdp.DeviceOnlineAdvertisement(d1, tv, loc, 1800, "Living room TV 电视"), host=host),
        isdp.encode(isdp.DeviceOfflineAdvertisement(d1, tv), host=host),
        isdp.encode(isdp.SearchDeviceRequest(SearchTarget.all(), 2, d2), host=host),
        isdp.encode(
            isdp.SearchDeviceResponse(d1, tv, loc, 1800, SearchTarget("device", device_id=d1), "TV", d2),
            host="",
        ),
    ]
    desc = ddesc.DeviceDescription(
        d1, tv, "TV", services=(ddesc.ServiceRef("urn:IGRS:ServiceType:X:1", 1, "x"),)
    )
    soap: list[bytes] = []
    bodies: list[tuple[messages.SoapMessage, bool]] = [
        (messages.GetDeviceDescriptionRequest(), False),
        (messages.GetDeviceDescriptionResponse(messages.Status(3), desc), True),
        (messages.SearchDeviceRequestOnDevice(SearchTarget("device_type", device_type=tv)), False),
        (messages.SearchDeviceResponseOnDevice(messages.Status(4), True, tv, "TV"), True),
        (messages.ErrorResponse(messages.Status(0, 400, "bad")), True),
    ]
    for msg, response in bodies:
        headers, body = messages.encode(msg, source=d2, target=d1, sequence_id=3)
        soap.append(
            messages.build_response(headers, body)
            if response
            else messages.build_request("192.168.1.20:3880", headers, body)
        )
    return [bytes([0]) + d for d in datagrams] + [bytes([1]) + s for s in soap]


DICTIONARY = [
    "\r\n",
    "\r\n\r\n",
    "NOTIFY * HTTP/1.1",
    "M-SEARCH * HTTP/1.1",
    "HTTP/1.1 200 OK",
    "M-POST /IGRS HTTP/1.1",
    "HOST:",
    "NT:",
    "NTS:",
    "USN:",
    "ST:",
    "MX:",
    "MAN:",
    "LOCATION:",
    "CACHE-CONTROL:",
    "Content-Length:",
    "max-age=",
    "isdp:alive",
    "isdp:byebye",
    "isdp:update",
    "isdp:all",
    '"isdp:discover"',
    '"http://www.igrs.org/spec1.0"; ns=',
    "01-IGRSVersion:",
    "01-IGRSMessageType:",
    "01-SourceDeviceId:",
    "01-TargetDeviceId:",
    "01-SequenceId:",
    "01-DeviceName:",
    "01-DeviceType:",
    "02-SoapAction:",
    "urn:IGRS:Device:DeviceId:",
    "urn:IGRS:DeviceType:",
    "urn:IGRS:ServiceType:",
    "IGRS/1.0",
    "%",
    '<?xml version="1.0"?>',
    "<!DOCTYPE",
    "<!ENTITY",
    "<![CDATA[",
    "]]>",
    "&amp;",
    "&#",
    "xmlns=",
    "xmlns:",
    "<soap:Envelope",
    "<soap:Body>",
    "http://www.w3.org/2003/05/soap-envelope",
    "http://www.igrs.org/spec1.0",
    "<AcknowledgeId>",
    "<ReturnCode>",
    "<Reason>",
    "<root",
    "<device>",
    "<UDN>",
    "<serviceId>",
]


def _dict_file(directory: Path) -> Path:
    """The tokens in libFuzzer's dictionary syntax (printable ASCII, everything else as \\xNN)."""

    def quoted(token: str) -> str:
        return "".join(
            chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02x}" for b in token.encode()
        )

    path = directory / "wire.dict"
    path.write_text("".join(f'"{quoted(t)}"\n' for t in DICTIONARY))
    return path


def test_one_input(data: bytes) -> None:
    if not data:
        return
    target = TARGETS[data[0] % len(TARGETS)]
    with contextlib.suppress(ProtocolError):
        target(data[1:])


def main() -> None:
    argv = list(sys.argv)
    if not any(a.startswith("-max_len") for a in argv):
        argv.append("-max_len=8192")
    work = Path(tempfile.mkdtemp(prefix="igrs-fuzz-"))
    if not any(a.startswith("-dict") for a in argv):
        argv.append(f"-dict={_dict_file(work)}")
    positional = [a for a in argv[1:] if not a.startswith("-")]
    if not positional:  # no corpus given: start from the built-in seeds
        corpus = work / "corpus"
        corpus.mkdir()
        for i, seed in enumerate(seeds()):
            (corpus / f"seed-{i}").write_bytes(seed)
        argv.append(str(corpus))
        print(f"fuzz_wire: seed corpus in {corpus}", file=sys.stderr)
    elif len(positional) == 1 and Path(positional[0]).is_dir() and not os.listdir(positional[0]):
        for i, seed in enumerate(seeds()):
            (Path(positional[0]) / f"seed-{i}").write_bytes(seed)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
