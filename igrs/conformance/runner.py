"""The active runner: the tool acts as a test device against the device under test (DUT),
runs the catalogue's cases (``cases.py`` holds one check per case id) and records every
exchanged message as evidence.

Verdicts: ``pass``; ``fail`` (the DUT broke the rule); ``skip`` (a precondition or a
capability is missing — never counted as a failure); ``error`` (the tool could not carry
out the case, e.g. the DUT did not answer at all where an answer was needed to go on).
A run fails when a mandatory case is ``fail`` or ``error``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from igrs.conformance.catalogue import CaseSpec, load_cases, select
from igrs.conformance.rawnet import Exchange, GroupListener, Recorder, UnicastSocket, http_exchange
from igrs.constants import DESCRIPTION_PATH, IGRS_PORT, IPV4_GROUP
from igrs.core.discovery import Interface
from igrs.net import interfaces as netifaces
from igrs.wire import isdp
from igrs.wire.endpoints import parse_endpoint
from igrs.wire.ids import DeviceId

PASS, FAIL, SKIP, ERROR = "pass", "fail", "skip", "error"
# Run after everything else, in this order: SEC-006's failed pairings count towards the DUT's
# lock-out; DISC-006 stops the DUT.
RUN_LAST = ("SEC-006", "DISC-006")


class CaseFailed(Exception):
    """The DUT broke the case's rule (verdict fail)."""


class CaseSkipped(Exception):
    """A precondition is missing (verdict skip)."""


@dataclass
class Lifecycle:
    """Start/stop hooks for cases that need to restart the DUT (a test harness has them;
    a lab points the tool at a running device and these cases are skipped)."""

    start: Callable[[], Awaitable[Any]]
    stop: Callable[[], Awaitable[Any]]


@dataclass
class CaseResult:
    case: CaseSpec
    verdict: str
    reason: str = ""
    evidence: list[Exchange] = field(default_factory=list)
    duration: float = 0.0


@dataclass
class Report:
    target: str
    profile: str
    device_id: str = ""
    location: str = ""
    started: float = field(default_factory=time.time)
    results: list[CaseResult] = field(default_factory=list)
    error: str = ""  # the target could not be resolved: no case ran

    def counts(self) -> dict[str, int]:
        out = {PASS: 0, FAIL: 0, SKIP: 0, ERROR: 0}
        for r in self.results:
            out[r.verdict] += 1
        return out

    @property
    def mandatory_failures(self) -> list[CaseResult]:
        return [r for r in self.results if r.case.mandatory and r.verdict in (FAIL, ERROR)]

    @property
    def passed(self) -> bool:
        """No mandatory failure, and something was actually checked: a run whose every case
        was skipped (no --pin, no such service) certifies nothing."""
        checked = any(r.verdict in (PASS, FAIL) for r in self.results)
        return not self.error and not self.mandatory_failures and checked

    @property
    def verdict(self) -> str:
        """PASSED, FAILED, or NOTHING CHECKED (every case skipped)."""
        if self.passed:
            return "PASSED"
        if not self.error and not self.mandatory_failures:
            return "NOTHING CHECKED"
        return "FAILED"

    def result(self, case_id: str) -> CaseResult:
        return next(r for r in self.results if r.case.id == case_id)


@dataclass
class Context:
    """What the cases share: the interface, the DUT's addresses and what earlier cases learnt."""

    iface: Interface
    isdp_port: int
    rec: Recorder
    searcher_id: DeviceId
    device_id: DeviceId | None = None
    location: str = ""
    host: str = ""
    port: int = 0
    lifecycle: Lifecycle | None = None
    pin: str | Callable[[int], Awaitable[str]] | None = None
    listener: GroupListener | None = None
    capabilities: set[str] = field(default_factory=set)
    facts: dict[str, Any] = field(default_factory=dict)
    group: str = IPV4_GROUP
    off_subnet_source: str = ""  # an address of this host outside the DUT's subnet (DISC-008)
    profile: str = "core"  # what the run was asked for (AV-001/FILE-001 only require a profile named)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # run after the last case

    @property
    def group_addr(self) -> tuple[str, int]:
        return (self.group, self.isdp_port)


CaseFn = Callable[[Context], Awaitable[None]]
CHECKS: dict[str, CaseFn] = {}


def check(case_id: str) -> Callable[[CaseFn], CaseFn]:
    def deco(fn: CaseFn) -> CaseFn:
        CHECKS[case_id] = fn
        return fn
    return deco


def load_checks() -> dict[str, CaseFn]:
    """Import every ``igrs/conformance/cases*.py`` module: each registers its checks."""
    import importlib
    import pkgutil
    from pathlib import Path

    for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if mod.name.startswith("cases"):
            importlib.import_module(f"igrs.conformance.{mod.name}")
    return CHECKS


def _decoded(data: bytes) -> Any:
    try:
        return isdp.decode(data)
    except Exception as exc:
        return exc


async def search_once(ctx: Context, st: str, mx: int, wait: float,
                      until: Callable[[Any], bool] | None = None,
                      source: str = "") -> tuple[float, list[Any]]:
    """Send one M-SEARCH from a fresh unicast socket (bound to ``source``, an address on the
    test interface, if given); return (sent time, [(Datagram, decoded|exc)])."""
    iface = dataclasses.replace(ctx.iface, address=source) if source else ctx.iface
    sock = UnicastSocket(iface, ctx.rec)
    try:
        req = isdp.SearchDeviceRequest(isdp.SearchTarget.parse(st), mx, ctx.searcher_id)
        sent = await sock.send(isdp.encode(req, host=f"{ctx.group}:{ctx.isdp_port}"), ctx.group_addr,
                               note=f"search {st} MX {mx} from {sock.address[0]}:{sock.address[1]}")
        got = await sock.collect(wait, until=(lambda data: until(_decoded(data))) if until else None)
    finally:
        sock.close()
    return sent, [(dg, _decoded(dg.data)) for dg in got]  # a decode failure is a finding


async def _resolve(ctx: Context, target: str) -> None:
    """Find the DUT: ``host:port`` of its HTTP endpoint or its LOCATION URL, or a device id /
    UUID prefix / name."""
    from igrs.wire import description as ddesc

    endpoint = parse_endpoint(target)  # host:port or LOCATION URL: igrs.wire.endpoints, as the CLI
    if endpoint is not None:
        ctx.host, ctx.port, ctx.location = endpoint.host, endpoint.port, endpoint.location
        res = await http_exchange(ctx.host, ctx.port, _get(DESCRIPTION_PATH, ctx), ctx.rec)
        if res.status != 200:
            raise LookupError(f"GET {DESCRIPTION_PATH} at {target} answered {res.status}")
        ctx.device_id = ddesc.from_bytes(res.body).device_id
        return
    wanted = target.lower()

    def matches(msg: object) -> bool:
        if not isinstance(msg, isdp.SearchDeviceResponse | isdp.DeviceOnlineAdvertisement):
            return False
        did = str(msg.device_id).lower()
        uuid = did.rsplit(":", 1)[-1]
        return wanted in (did, msg.name.lower()) or (len(wanted) >= 4 and uuid.startswith(wanted))

    def adopt(msg: isdp.SearchDeviceResponse | isdp.DeviceOnlineAdvertisement, source: str) -> None:
        from urllib.parse import urlsplit

        ctx.device_id, ctx.location = msg.device_id, msg.location
        parts = urlsplit(msg.location)
        ctx.host, ctx.port = parts.hostname or source, parts.port or IGRS_PORT

    # A search first; announcements heard meanwhile count too (a device that answers
    # searches late or not at all is still found, and its cases then fail).
    _, answers = await search_once(ctx, "isdp:all", 1, 2.0, until=lambda m: matches(m))
    for dg, msg in answers:
        if matches(msg):
            adopt(msg, dg.source[0])
            return
    assert ctx.listener is not None
    for dg in reversed(ctx.listener.heard):
        try:
            msg = isdp.decode(dg.data)
        except Exception:
            continue
        if matches(msg):
            adopt(msg, dg.source[0])  # type: ignore[arg-type]
            return
    raise LookupError(f"no device matching {target!r} answered a search on {ctx.iface.name}")


def _get(path: str, ctx: Context) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\nConnection: close\r\n\r\n".encode()


async def run_suite(target: str, profile: str = "core",
                    pin: str | Callable[[int], Awaitable[str]] | None = None,
                    interfaces: list[str] | None = None, port: int = IGRS_PORT, *,
                    lifecycle: Lifecycle | None = None, only: list[str] | None = None,
                    case_timeout: float = 20.0, off_subnet_source: str | None = None) -> Report:
    """Run the catalogue's cases of ``profile`` against ``target``; never raises for a DUT fault."""
    load_checks()
    specs = select(load_cases(), profile)
    if only:
        specs = [c for c in specs if c.id in only]
    report = Report(target, profile)
    ifaces = [i for i in netifaces.resolve(interfaces) if i.family == 4]
    if not ifaces:
        report.error = "no IPv4 interface to test on"
        return report
    ctx = Context(ifaces[0], port, Recorder(), DeviceId.new(), lifecycle=lifecycle, pin=pin, profile=profile)
    if lifecycle is not None:
        ctx.capabilities.add("lifecycle")
    if pin is not None:
        ctx.capabilities.add("pin")
    if off_subnet_source:
        ctx.off_subnet_source = off_subnet_source
        ctx.capabilities.add("second-subnet")
    ctx.listener = GroupListener(ctx.iface, ctx.group, port)
    ctx.listener.start()
    try:
        if lifecycle is not None:  # DISC-001 must see the start: the DUT is started by us
            ctx.facts["started_at"] = time.monotonic()
            await lifecycle.start()
            await asyncio.sleep(0.2)
        try:
            await _resolve(ctx, target)
        except Exception as exc:
            report.error = f"target not found: {exc}"
            report.results = [CaseResult(c, ERROR if c.mandatory else SKIP, "target not found",
                                         ctx.rec.take()) for c in specs]
            return report
        ctx.rec.take()
        report.device_id, report.location = str(ctx.device_id), ctx.location
        ordered = sorted(specs, key=lambda c: RUN_LAST.index(c.id) if c.id in RUN_LAST else -1)
        for case in ordered:
            report.results.append(await _run_case(ctx, case, case_timeout))
        report.results.sort(key=lambda r: specs.index(r.case))
    finally:
        for close in reversed(ctx.closers):
            await close()
        await ctx.listener.close()
    return report


async def _run_case(ctx: Context, case: CaseSpec, timeout: float) -> CaseResult:
    t0 = time.monotonic()
    missing = [r for r in case.requires if r not in ctx.capabilities]
    if missing:
        return CaseResult(case, SKIP, f"needs {', '.join(missing)}")
    fn = CHECKS.get(case.id)
    if fn is None:
        return CaseResult(case, SKIP, "no check implemented for this case yet")
    try:
        await asyncio.wait_for(fn(ctx), timeout)
        verdict, reason = PASS, ""
    except CaseFailed as exc:
        verdict, reason = FAIL, str(exc)
    except CaseSkipped as exc:
        verdict, reason = SKIP, str(exc)
    except TimeoutError:
        verdict, reason = ERROR, f"case did not finish within {timeout:.0f} s"
    except Exception as exc:
        verdict, reason = ERROR, f"{type(exc).__name__}: {exc}"
    return CaseResult(case, verdict, reason, ctx.rec.take(), time.monotonic() - t0)
