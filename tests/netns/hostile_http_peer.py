"""A hostile HTTP peer and a legitimate client, run as processes in the namespaces of a test
bed against a device's HTTP port (tests/netns/test_http_lockout_netns.py).

    python hostile_http_peer.py attack MODE HOST PORT MEDIA_PATH SECONDS CONNECTIONS
    python hostile_http_peer.py client HOST PORT MEDIA_PATH SECONDS

``attack`` keeps CONNECTIONS connections open from this host's one address for SECONDS,
re-opening every one the server closes, in one of four ways (issue 12, item 1):

* ``idle``: connect and send nothing;
* ``slow``: drip a request head one byte every 0.1 s: half on fresh connections, half after
  a complete GET of a small range of MEDIA_PATH (so on a connection handed to aiohttp);
* ``pipeline``: pipeline thousands of ``GET /IGRS/description.xml`` and never read;
* ``media``: GET MEDIA_PATH (a large file) and never read.

It prints ``{"event": "holding"}`` once all connections were opened, then at the end one JSON
object of counts: ``opened``, ``refused_503`` (a connection whose first answer was a 503),
``reset_unanswered`` (reset before any byte of an answer although a request was sent),
``cut`` (accepted connections the server closed), ``cut_after`` (their ages in seconds when
closed), ``handoff_cut_after`` (seconds from the first byte of a dripped head to the close,
on handed-off connections).

``client`` sends one request after the other for SECONDS, each on a new connection with a
3 s deadline, alternating ``GET /IGRS/description.xml`` and a range of MEDIA_PATH, and prints
``{"served": n, "total": m, "failures": {reason: count}}``.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import socket
import sys
import time
from collections import Counter

ESTABLISHED = 1
HEAD_DRIP = b"GET /IGRS/description.xml HTTP/1.1\r\nHost: device\r\nX-Pad: " + b"a" * 4000
PIPELINED = b"GET /IGRS/description.xml HTTP/1.1\r\nHost: device\r\n\r\n" * 4000


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


class Conn:
    def __init__(self, host: str, port: int, mode: str, media: str, index: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=3)
        self.sock.setblocking(False)
        self.opened = time.monotonic()
        self.mode = mode
        self.handoff = mode == "slow" and index % 2 == 1
        self.out = b""
        self.sent_request = False
        self.answered = False  # some bytes of an answer arrived
        self.consumed = bytearray()  # what this peer read (the handed-off variant only)
        self.drip_at = 0.0
        self.drip_pos = 0
        self.drip_started: float | None = None
        if mode == "pipeline":
            self.out = PIPELINED
        elif mode == "media":
            self.out = f"GET {media} HTTP/1.1\r\nHost: device\r\n\r\n".encode()
        elif self.handoff:
            self.out = f"GET {media} HTTP/1.1\r\nHost: device\r\nRange: bytes=0-99\r\n\r\n".encode()
        self.sent_request = bool(self.out) or mode == "slow"
        self.push()

    def push(self) -> None:
        while self.out:
            try:
                n = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.out = b""
                return
            self.out = self.out[n:]

    def peek(self) -> bytes:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            return self.sock.recv(16, socket.MSG_PEEK)
        return b"?"  # nothing to read yet (still open)

    def step(self, now: float) -> None:
        """Send what is due: the rest of a request, the next byte of a dripped head, or (a
        non-reader) an empty line now and then, which the server answers with a reset once
        it has dropped the connection without telling (a kernel send timeout)."""
        self.push()
        if now < self.drip_at:
            return
        if self.mode in ("pipeline", "media"):
            if not self.out:
                with contextlib.suppress(OSError):
                    self.sock.send(b"\r\n")
            self.drip_at = now + 0.5
            return
        if self.mode != "slow":
            return
        if self.handoff and self.drip_started is None:
            with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
                self.consumed += self.sock.recv(65536)
            head_end = self.consumed.find(b"\r\n\r\n")
            if head_end < 0 or len(self.consumed) < head_end + 4 + 100:
                return  # the first (ranged) answer is not complete yet
        if self.drip_pos < len(HEAD_DRIP):
            with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
                self.sock.send(HEAD_DRIP[self.drip_pos:self.drip_pos + 1])
                self.drip_pos += 1
                if self.drip_started is None:
                    self.drip_started = now
        self.drip_at = now + 0.1


def attack(mode: str, host: str, port: int, media: str, seconds: float, count: int) -> None:
    stats: Counter[str] = Counter()
    cut_after: list[float] = []
    cut_age: list[float] = []
    conns: list[Conn] = []
    end = time.monotonic() + seconds
    announced = False
    index = 0
    while time.monotonic() < end:
        now = time.monotonic()
        opened_now = 0
        while len(conns) < count and opened_now < 20:  # re-open what the server closed
            try:
                conns.append(Conn(host, port, mode, media, index))
                stats["opened"] += 1
            except OSError:
                stats["connect_failed"] += 1
                break
            index += 1
            opened_now += 1
        if not announced and len(conns) >= count:
            print(json.dumps({"event": "holding"}), flush=True)
            announced = True
        alive = []
        for c in conns:
            try:
                state = tcp_state(c.sock)
                first = c.peek() if not c.consumed else bytes(c.consumed[:16])
            except ConnectionResetError:
                state, first = 0, b""
            except OSError as exc:
                state, first = 0, b"" if exc.errno == errno.ECONNRESET else b"?"
            if first and first != b"?":
                c.answered = True
            if first.startswith(b"HTTP/1.1 503"):
                stats["refused_503"] += 1
                c.sock.close()
                continue
            if state != ESTABLISHED:
                if not c.answered and c.sent_request and not first:
                    stats["reset_unanswered"] += 1
                else:
                    stats["cut"] += 1
                    cut_age.append(round(now - c.opened, 2))
                    if c.handoff and c.drip_started is not None:
                        cut_after.append(round(now - c.drip_started, 2))
                c.sock.close()
                continue
            c.step(now)
            alive.append(c)
        conns = alive
        time.sleep(0.02)
    for c in conns:
        c.sock.close()
    print(json.dumps({"event": "done", **stats, "cut_after": cut_age, "handoff_cut_after": cut_after}),
          flush=True)


def client(host: str, port: int, media: str, seconds: float) -> None:
    served, total = 0, 0
    failures: Counter[str] = Counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ranged = total % 2 == 1
        path, headers = (media, {"Range": "bytes=0-1023"}) if ranged else ("/IGRS/description.xml", {})
        total += 1
        conn = http.client.HTTPConnection(host, port, timeout=3)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == (206 if ranged else 200) and body:
                served += 1
            else:
                failures[f"status {resp.status}"] += 1
        except (OSError, http.client.HTTPException) as exc:
            failures[type(exc).__name__] += 1
        finally:
            conn.close()
        time.sleep(0.02)
    print(json.dumps({"served": served, "total": total, "failures": failures}), flush=True)


def main() -> None:
    if sys.argv[1] == "attack":
        mode, host, port, media, seconds, count = sys.argv[2:8]
        attack(mode, host, int(port), media, float(seconds), int(count))
    else:
        host, port, media, seconds = sys.argv[2:6]
        client(host, int(port), media, float(seconds))


if __name__ == "__main__":
    main()
