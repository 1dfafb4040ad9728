"""The active runner: the tool acts as a test device against the device under test (DUT),
runs the catalogue's cases (``cases.py`` holds one check per case id) and records every
exchanged message as evidence.

Verdicts: ``pass``; ``fail`` (the DUT broke the rule); ``skip`` (a precondition or a
capability is missing — never counted as a failure); ``error`` (the tool could not carry
out the case, e.g. the DUT did not answer at all where an answer was needed to go on);
``na`` (not applicable: the rule concerns something the DUT does not offer, e.g. a sealed
case against a device that offers no secure pipe).
A run fails when a mandatory case is ``fail`` or ``error``. Each case rests on a ``basis``
(``public``: a cited public source; ``project``: a documented project choice). A run with
``basis="public"`` counts only failures of public-basis rules; the rest is advisory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from igrs.conformance.catalogue import CaseSpec, load_cases, select
from igrs.conformance.rawnet import Exchange, GroupListener, Recorder, UnicastSocket, http_exchange
from igrs.constants import DESCRIPTION_PATH, IGRS_PATH, IGRS_PORT, IPV4_GROUP
from igrs.core.discovery import Interface
from igrs.errors import IGRSError
from igrs.net import interfaces as netifaces
from igrs.wire import isdp
from igrs.wire.httpu import Headers
from igrs.wire.ids import DeviceId

PASS, FAIL, SKIP, ERROR, NA = "pass", "fail", "skip", "error", "na"
VERDICT_TEXT = {NA: "not applicable"}  # how reports spell a verdict (else the verdict itself)
BASIS_MODES = ("all", "public")  # what a run counts: every rule, or public-basis rules only
# Run after everything else, in this order: SEC-006's failed pairings count towards the DUT's
# lock-out; DISC-006 stops the DUT.
RUN_LAST = ("SEC-006", "DISC-006")


class CaseFailed(Exception):
    """The DUT broke the case's rule (verdict fail)."""


class CaseSkipped(Exception):
    """A precondition is missing (verdict skip)."""


class CaseNotApplicable(Exception):
    """The rule concerns something the DUT does not offer (verdict na)."""


class ProjectRuleFailed(CaseFailed):
    """The DUT broke a project-choice detail of a case whose main rule is public (an IGRS
    ErrorResponse body where the public record shows a bare HTTP status): a failure, advisory
    under ``--basis public``."""


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
    failed_basis: str = ""  # a fail or error: the basis of the rule broken ("public" / "project")


@dataclass
class Report:
    target: str
    profile: str
    device_id: str = ""
    location: str = ""
    started: float = field(default_factory=time.time)
    results: list[CaseResult] = field(default_factory=list)
    error: str = ""  # the target could not be resolved: no case ran
    basis: str = "all"  # "public": only failures of public-basis rules count (the rest advisory)
    open_services: list[str] = field(default_factory=list)  # shared openly, as SES-007 found them
    secure_pipe: str = ""  # what the probe found: offered, or why not (sealed cases not applicable)

    def counts(self) -> dict[str, int]:
        out = {PASS: 0, FAIL: 0, SKIP: 0, ERROR: 0, NA: 0}
        for r in self.results:
            out[r.verdict] += 1
        return out

    def advisory(self, r: CaseResult) -> bool:
        """Under ``basis="public"``: a project-basis case, or a failure of a project-choice
        detail of a public case -- reported, never counted."""
        return self.basis == "public" and (r.case.basis == "project" or r.failed_basis == "project")

    @property
    def mandatory_failures(self) -> list[CaseResult]:
        return [r for r in self.results
                if r.case.mandatory and r.verdict in (FAIL, ERROR) and not self.advisory(r)]

    @property
    def passed(self) -> bool:
        """No mandatory failure, and something was actually checked: a run whose every case
        was skipped (no --pin, no such service) certifies nothing."""
        checked = any(r.verdict in (PASS, FAIL) for r in self.results
                      if self.basis != "public" or r.case.basis == "public")
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


_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


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
    """Find the DUT: ``host:port`` of its HTTP endpoint, or a device id / UUID prefix / name."""
    from igrs.wire import description as ddesc

    m = _ADDRESS.match(target)
    if m and not target.lower().startswith("urn:"):
        ctx.host, ctx.port = m.group(1).strip("[]"), int(m.group(2))
        ctx.location = f"http://{m.group(1)}:{ctx.port}{IGRS_PATH}"  # where its messages go
        res = await http_exchange(ctx.host, ctx.port, _get(DESCRIPTION_PATH, ctx), ctx.rec)
        if res.status == 200:
            ctx.device_id = ddesc.from_bytes(res.body).device_id
            return
        # GET of the document is this project's addition (messages.md §7); a peer that takes
        # M-POST only (ezbox) is asked by the message of clause 9.3, naming no target.
        frame = await _post_description_request(ctx)
        if frame is None:
            raise LookupError(f"GET {DESCRIPTION_PATH} at {target} answered {res.status}, "
                              "and GetDeviceDescriptionRequest gave no description")
        ctx.device_id = frame.device_id
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
        ctx.facts["advertised_location"] = msg.location
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


async def _post_description_request(ctx: Context) -> Any:
    """The DeviceDescription a GetDeviceDescriptionRequest (no target named) answers, or None."""
    from igrs.wire import messages

    headers, body = messages.encode(messages.GetDeviceDescriptionRequest(), source=ctx.searcher_id,
                                    target=None, sequence_id=1)
    data = messages.build_request(f"{ctx.host}:{ctx.port}", [*headers, ("Connection", "close")], body)
    try:
        res = await http_exchange(ctx.host, ctx.port, data, ctx.rec, note="the description by M-POST")
        reply = messages.decode(Headers(res.headers), res.body).message
    except (OSError, TimeoutError, ValueError, IGRSError):
        return None
    if not isinstance(reply, messages.GetDeviceDescriptionResponse):
        return None
    return reply.description


async def _probe_secure_pipe(ctx: Context) -> str:
    """Whether the DUT offers secure pipes: a secure CreatePipeRequest from a fresh, unpaired
    identity. A device with pipes refuses it with an IGRS answer (403: not paired); one without
    answers 501, or a bare HTTP status with no IGRS message (ezbox). Returns "" when offered
    (or when the answer says nothing either way), else why not; sealed cases are then not
    applicable."""
    from igrs.core.security import LocalIdentity, PipeInitiator
    from igrs.wire import messages
    from igrs.wire.bodies import pipes as pb

    assert ctx.device_id is not None
    pretend = LocalIdentity.generate(ctx.device_id).public_key  # our side goes ahead; the DUT knows us not
    init = PipeInitiator(LocalIdentity.generate(ctx.searcher_id), ctx.device_id, peers=lambda _d: pretend,
                         secure=True)
    headers, body = messages.encode(pb.CreatePipeRequest(True, init.create_pipe_request()),
                                    source=ctx.searcher_id, target=ctx.device_id, sequence_id=1)
    data = messages.build_request(f"{ctx.host}:{ctx.port}", [*headers, ("Connection", "close")], body)
    try:
        res = await http_exchange(ctx.host, ctx.port, data, ctx.rec, note="probe: does it offer secure pipes?")
    except (OSError, TimeoutError, ValueError):
        return ""
    if res.status == 501:
        return "CreatePipeRequest answered 501 Not Implemented"
    try:
        messages.decode(Headers(res.headers), res.body)
    except IGRSError:
        if res.status != 200:
            return f"CreatePipeRequest answered HTTP {res.status} without an IGRS message"
    return ""


async def run_suite(target: str, profile: str = "core",
                    pin: str | Callable[[int], Awaitable[str]] | None = None,
                    interfaces: list[str] | None = None, port: int = IGRS_PORT, *,
                    lifecycle: Lifecycle | None = None, only: list[str] | None = None,
                    case_timeout: float = 20.0, off_subnet_source: str | None = None,
                    basis: str = "all") -> Report:
    """Run the catalogue's cases of ``profile`` against ``target``; never raises for a DUT fault.
    ``basis="public"``: only failures of public-basis rules fail the run."""
    if basis not in BASIS_MODES:
        raise ValueError(f"basis must be one of {', '.join(BASIS_MODES)}, not {basis!r}")
    load_checks()
    specs = select(load_cases(), profile)
    if only:
        specs = [c for c in specs if c.id in only]
    report = Report(target, profile, basis=basis)
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
        if any(c.sealed for c in specs):
            no_pipe = await _probe_secure_pipe(ctx)
            ctx.rec.take()
            report.secure_pipe = f"not offered: {no_pipe}" if no_pipe else "offered"
            if no_pipe:
                ctx.facts["no_secure_pipe"] = no_pipe
        ordered = sorted(specs, key=lambda c: RUN_LAST.index(c.id) if c.id in RUN_LAST else -1)
        for case in ordered:
            report.results.append(await _run_case(ctx, case, case_timeout))
        report.results.sort(key=lambda r: specs.index(r.case))
        report.open_services = list(ctx.facts.get("open_services", []))
    finally:
        for close in reversed(ctx.closers):
            await close()
        await ctx.listener.close()
    return report


async def _run_case(ctx: Context, case: CaseSpec, timeout: float) -> CaseResult:
    t0 = time.monotonic()
    if case.sealed and "no_secure_pipe" in ctx.facts:
        return CaseResult(case, NA, f"not applicable: no secure pipe offered ({ctx.facts['no_secure_pipe']})")
    missing = [r for r in case.requires if r not in ctx.capabilities]
    if missing:
        return CaseResult(case, SKIP, f"needs {', '.join(missing)}")
    fn = CHECKS.get(case.id)
    if fn is None:
        return CaseResult(case, SKIP, "no check implemented for this case yet")
    failed_basis = ""
    try:
        await asyncio.wait_for(fn(ctx), timeout)
        verdict, reason = PASS, ""
    except ProjectRuleFailed as exc:
        verdict, reason, failed_basis = FAIL, f"{exc} [a project-choice detail]", "project"
    except CaseFailed as exc:
        verdict, reason, failed_basis = FAIL, str(exc), case.basis
    except CaseSkipped as exc:
        verdict, reason = SKIP, str(exc)
    except CaseNotApplicable as exc:
        verdict, reason = NA, f"not applicable: {exc}"
    except TimeoutError:
        verdict, reason, failed_basis = ERROR, f"case did not finish within {timeout:.0f} s", case.basis
    except Exception as exc:
        verdict, reason, failed_basis = ERROR, f"{type(exc).__name__}: {exc}", case.basis
    return CaseResult(case, verdict, reason, ctx.rec.take(), time.monotonic() - t0, failed_basis)
